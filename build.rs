//! Build script: exports the functions a clsync `so`/`rsyncso` sync handler
//! may call back into (src/handler/so.rs) from the `livesync` binary's
//! dynamic symbol table, so that `dlopen(RTLD_NOW)` of such a handler finds
//! them. It does nothing else.

fn main() {
    for sym in ["clsyncapi_getapiversion", "clsyncapi_fork"] {
        // Pull the symbol into the link (the binary itself never calls it)
        // and put it in the dynamic symbol table.
        println!("cargo:rustc-link-arg-bins=-Wl,--undefined={sym}");
        println!("cargo:rustc-link-arg-bins=-Wl,--export-dynamic-symbol={sym}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
