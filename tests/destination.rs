//! Nothing outside the destination is ever touched, and the destination is
//! never mirrored into itself: a destination swapped for a symlink by the
//! daemon's own user (nobody) mid-run stops the sync with one line and exit
//! 2; missing parents of `-D` belong to the invoking user, not to nobody; a
//! destination bind-mounted inside the source is skipped, not nested; the
//! source and the destination being one directory through a bind mount is
//! refused at start; a destination inside the source that the rules keep
//! out of (clsync's pattern) keeps working. Bind mounts live in a private
//! mount namespace the daemon enters before exec, so nothing outlives it.
//! These tests need root (CI runs as root).

#![cfg(target_os = "linux")] // mount namespaces, privilege dropping

mod common;

use common::*;
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);
const NOBODY: u32 = 65534;

fn c(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("path without NUL")
}

/// Makes `cmd` run in a private mount namespace where `from` is
/// bind-mounted on `onto` (the namespace, and the mount, end with it).
fn with_bind_mount(cmd: &mut Command, from: &Path, onto: &Path) {
    let (from, onto) = (c(from), c(onto));
    // SAFETY: between fork and exec only system calls on data prepared
    // before the fork.
    unsafe {
        cmd.pre_exec(move || {
            let fail = || Err(std::io::Error::last_os_error());
            let none = std::ptr::null();
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return fail();
            }
            if libc::mount(
                none,
                c"/".as_ptr(),
                none,
                libc::MS_REC | libc::MS_PRIVATE,
                none.cast(),
            ) != 0
            {
                return fail();
            }
            if libc::mount(
                from.as_ptr(),
                onto.as_ptr(),
                none,
                libc::MS_BIND,
                none.cast(),
            ) != 0
            {
                return fail();
            }
            Ok(())
        });
    }
}

/// Runs `program ARGS` as nobody (the attacker), without a shell.
fn as_nobody(program: &str, args: &[&Path]) {
    let st = Command::new(program)
        .args(args)
        .uid(NOBODY)
        .gid(NOBODY)
        .status()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(st.success(), "{program} {args:?} as nobody: {st}");
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn destination_swapped_for_a_symlink_by_nobody_stops_the_sync_untouched() {
    if !require_root("the daemon drops to nobody; the attacker is nobody") {
        return;
    }
    // The mirror in the daemon, and in the privileged helper.
    for extra in [None, Some("--splitting=process")] {
        swap_destination(extra);
    }
}

fn swap_destination(extra: Option<&str>) {
    let mut env = TestEnv::new();
    fs::set_permissions(&env.root, fs::Permissions::from_mode(0o755)).expect("chmod");
    // The destination's parent is writable by nobody (as missing parents
    // made after the drop used to be).
    let public = env.root.join("public");
    fs::create_dir(&public).expect("mkdir");
    fs::set_permissions(&public, fs::Permissions::from_mode(0o777)).expect("chmod");
    env.dst = public.join("dst");
    fs::create_dir(&env.dst).expect("mkdir");
    // The symlink's target: root's, with a file the source does not have.
    fs::write(env.outside.join("victim"), "keep me").expect("write");
    env.write("a", "one");
    let mut args = vec!["-t0", "-w0"];
    args.extend(extra);
    let mut d = Daemon::start(&env, &args);
    d.wait_live(&env, T);
    // nobody renames the destination away and puts a symlink in its place.
    let away = public.join("dst.away");
    as_nobody("mv", &[Path::new("-T"), &env.dst, &away]);
    as_nobody("ln", &[Path::new("-s"), &env.outside, &env.dst]);
    env.write("b", "two");
    let st = d.wait_exit(T);
    assert_eq!(st.code(), Some(2), "{extra:?}: {}", d.log());
    let log = d.log();
    let stopped = format!("stopped syncing to the destination {}", env.dst.display());
    assert_eq!(log.matches(&stopped).count(), 1, "{log}");
    assert_eq!(
        names(&env.outside),
        ["victim"],
        "written through the symlink"
    );
    assert_eq!(
        fs::read_to_string(env.outside.join("victim")).expect("read"),
        "keep me"
    );
    assert_eq!(names(&away), ["a"], "written into the moved-away dir");
}

#[test]
fn missing_parents_of_the_destination_belong_to_the_invoking_user() {
    if !require_root("the daemon drops to nobody after making them") {
        return;
    }
    let mut env = TestEnv::new();
    env.dst = env.root.join("p/q/dst");
    env.write("a", "one");
    let mut d = Daemon::start(&env, &["-t0", "-w0"]);
    d.wait_synced(&env, T);
    for p in ["p", "p/q"] {
        let m = fs::metadata(env.root.join(p)).expect("stat");
        assert_eq!((m.uid(), m.gid()), (0, 0), "{p} owned by root");
    }
}

#[test]
fn destination_bind_mounted_inside_the_source_is_skipped_not_nested() {
    if !require_root("a bind mount in a private mount namespace") {
        return;
    }
    let env = TestEnv::new();
    env.mkdir_p("backup");
    env.write("f", "x");
    let (dst, inside) = (env.dst.clone(), env.src_path("backup"));
    let mut d = Daemon::builder(&env)
        .args(["-t0", "-w0"])
        .prepare(|cmd| with_bind_mount(cmd, &dst, &inside))
        .start();
    d.wait_until(T, "f synced", || env.dst_read("f").is_some());
    env.write("g", "y");
    d.wait_until(T, "g synced", || env.dst_read("g").is_some());
    // Unfixed, the mirror's own writes came back as backup/... and nested.
    assert_stays(
        Duration::from_secs(2),
        "no copy of the destination in itself",
        || !env.dst_has("backup"),
    );
    d.assert_running();
    d.wait_for_log(T, "is the destination");
    assert_eq!(names(&env.dst), ["f", "g"]);
}

#[test]
fn source_and_destination_one_directory_through_a_bind_mount_is_refused() {
    if !require_root("a bind mount in a private mount namespace") {
        return;
    }
    let mut env = TestEnv::new();
    env.write("f", "x");
    let view = env.outside.join("view");
    fs::create_dir(&view).expect("mkdir");
    let src = env.src.clone();
    env.dst = view.clone();
    let mut d = Daemon::builder(&env)
        .args(["-t0", "-w0"])
        .prepare(|cmd| with_bind_mount(cmd, &src, &view))
        .start();
    let st = d.wait_exit(T);
    assert_eq!(st.code(), Some(2), "{}", d.log());
    let log = d.log();
    assert!(log.contains("is the watch dir"), "{log}");
    assert_eq!(log.trim().lines().count(), 1, "one line: {log}");
    // Inside it, through the same bind mount: refused as well.
    let mut env2 = TestEnv::new();
    let view2 = env2.outside.join("view");
    fs::create_dir(&view2).expect("mkdir");
    let src2 = env2.src.clone();
    env2.dst = view2.join("backup");
    let mut d = Daemon::builder(&env2)
        .args(["-t0", "-w0"])
        .prepare(|cmd| with_bind_mount(cmd, &src2, &view2))
        .start();
    let st = d.wait_exit(T);
    assert_eq!(st.code(), Some(2), "{}", d.log());
    assert!(d.log().contains("inside the watch dir"), "{}", d.log());
    assert!(!env2.src_path("backup").exists(), "nothing was created");
}

#[test]
fn destination_inside_the_source_that_the_rules_exclude_keeps_working() {
    let mut env = TestEnv::new();
    env.mkdir_p("mnt/backup");
    env.mkdir_p("etc");
    env.write("etc/conf", "c");
    let rules = env.outside.join("rules");
    fs::write(&rules, "-d^mnt/backup$\n").expect("rules");
    env.dst = env.src_path("mnt/backup/mirror");
    let args = argv(&[&"-t0", &"-w0", &"-R", &rules]);
    let mut d = Daemon::start(&env, &args);
    d.wait_until(T, "etc/conf synced", || env.dst_read("etc/conf").is_some());
    env.write("etc/new", "n");
    d.wait_until(T, "etc/new synced", || env.dst_read("etc/new").is_some());
    assert_stays(
        Duration::from_secs(1),
        "no copy of the backup in itself",
        || !env.dst_has("mnt/backup"),
    );
    d.assert_running();
    assert!(!d.log().contains("WARN"), "accepted silently: {}", d.log());
}
