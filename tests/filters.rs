//! `--exclude GLOB` / `--include GLOB` through the real binary: rsync-style
//! globs keep files out of a live mirror (at any depth, anchored with a
//! leading `/`, directories only with a trailing `/`), and an include put
//! first wins over a later exclude. Every daemon is stopped at the end.

mod common;

use common::*;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(30);

#[test]
fn excluded_files_are_not_mirrored() {
    let env = TestEnv::new();
    env.mkdir_p("cache");
    env.mkdir_p("sub/cache");
    env.write("keep.txt", "k");
    env.write("x.tmp", "x");
    env.write("cache/f", "c");
    env.write("sub/cache/f", "c");
    env.write("keep.tmp", "kept by --include");
    let mut d = Daemon::start(
        &env,
        &[
            "-t0",
            "-w0",
            "--include",
            "keep.tmp",
            "--exclude",
            "*.tmp",
            "--exclude",
            "/cache/",
        ],
    );
    d.wait_until(LONG, "initial sync", || env.dst_has("sub/cache/f"));
    // Live: an excluded file, then one that is not.
    env.mkdir_p("sub/deeper");
    env.write("sub/deeper/y.tmp", "y");
    env.write("sub/deeper/z.txt", "z");
    d.wait_until(LONG, "z.txt synced", || env.dst_has("sub/deeper/z.txt"));
    assert_stays(
        Duration::from_millis(300),
        "excluded entries stay out",
        || !env.dst_has("x.tmp") && !env.dst_has("cache") && !env.dst_has("sub/deeper/y.tmp"),
    );
    assert!(env.dst_has("keep.txt") && env.dst_has("sub/cache/f"));
    assert_eq!(
        env.dst_read("keep.tmp").as_deref(),
        Some(&b"kept by --include"[..])
    );
}
