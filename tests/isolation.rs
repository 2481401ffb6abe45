//! One bad path never stops the rest: a full destination recovers when the
//! user deletes in the source, an unreadable file is skipped (with one
//! warning, counted in the status and the metrics) while everything else
//! is synced and `--exit-on-no-events` and the hooks still work, and an
//! unreadable watch dir is refused at start.

#![cfg(target_os = "linux")] // tmpfs mounts in a private mount namespace

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(30);

/// nobody:nogroup, for a daemon that is not root from the start (so it has
/// no capability that reads past permission bits).
const NOBODY: u32 = 65534;

/// A tmpfs of `size` mounted at `at` for the life of the guard.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let target = CString::new(at.as_os_str().as_bytes()).expect("path");
        let data = CString::new(format!("size={size},mode=0755")).expect("data");
        // SAFETY: valid NUL-terminated strings; the mount is undone by Drop.
        let rc = unsafe {
            libc::mount(
                c"none".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                data.as_ptr().cast(),
            )
        };
        assert_eq!(rc, 0, "mount tmpfs: {}", std::io::Error::last_os_error());
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let target = CString::new(self.0.as_os_str().as_bytes()).expect("path");
        // SAFETY: a valid path; detaching a mount we made.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

fn kib(n: usize) -> Vec<u8> {
    vec![b'x'; n * 1024]
}

#[test]
fn a_full_destination_recovers_when_the_user_deletes_in_the_source() {
    if !require_root("mounting a small tmpfs as the destination") {
        return;
    }
    // The mirror in the daemon, and in the privileged helper.
    for extra in [&[][..], &["--splitting=process"]] {
        let env = TestEnv::new();
        let _tmpfs = Tmpfs::mount(&env.dst, "1m");
        for f in ["f1", "f2", "f3", "f4"] {
            env.write(f, kib(200));
        }
        let status = env.root.join("status");
        let status_arg = path_str(&status);
        let mut args = vec!["-t0", "-w0", "--status-file", &status_arg];
        args.extend(extra);
        let mut d = Daemon::start(&env, &args);
        d.wait_synced(&env, LONG);

        // 800 KiB of 1 MiB are taken: big cannot be copied.
        env.write("big", kib(400));
        d.wait_for_log(LONG, "No space left on device");
        assert!(d.log().contains("/dst/big"), "{}", d.context());
        // Other changes are not stuck behind it.
        env.write("note", "n");
        d.wait_until(LONG, "note synced while big fails", || env.dst_has("note"));
        // (An early copy may have caught big half written.)
        assert!(env.dst_read("big").map_or(0, |b| b.len()) < 400 * 1024);
        d.wait_until(LONG, "status: big waits for a retry", || {
            read(&status) == "synchandler error\n"
        });

        // The user frees space in the source: the deletions reach the
        // destination, and then big goes too.
        for f in ["f1", "f2"] {
            fs::remove_file(env.src_path(f)).expect("rm");
        }
        d.wait_until(LONG, "deletions applied", || {
            !env.dst_has("f1") && !env.dst_has("f2")
        });
        d.wait_until(LONG, "big synced once there is room", || {
            env.dst_read("big").is_some_and(|b| b.len() == 400 * 1024)
        });
        d.wait_synced(&env, LONG);
        d.wait_until(LONG, "status running", || read(&status) == "running\n");
        d.assert_running();
        assert!(
            d.log().contains("1 path(s) failed"),
            "only big failed: {}",
            d.context()
        );
    }
}

#[test]
fn rsyncdirect_splits_a_run_that_fails_for_some_paths() {
    if !require_root("mounting a small tmpfs as the destination") || !require_tool("rsync") {
        return;
    }
    if test_monitor().as_deref() == Some("poll") {
        // A scan reports a changed directory as one subtree: one op, which
        // cannot be split into the paths that can go.
        return;
    }
    let env = TestEnv::new();
    let _tmpfs = Tmpfs::mount(&env.dst, "1m");
    for f in ["f1", "f2", "f3", "f4"] {
        env.write(f, kib(200));
    }
    let mut d = Daemon::start(&env, &["-M", "rsyncdirect", "-t", "1", "-w0"]);
    d.wait_synced(&env, LONG);
    // One window: a big file that cannot fit (and sorts first, so that
    // rsync meets it first) and two small ones that can.
    fs::write(env.outside_path("a-big"), kib(400)).expect("write");
    fs::rename(env.outside_path("a-big"), env.src_path("a-big")).expect("move in");
    env.write("z1", "1");
    env.write("z2", "2");
    d.wait_until(LONG, "the small files synced while a-big fails", || {
        env.dst_has("z1") && env.dst_has("z2")
    });
    assert!(d.log().contains("in parts"), "{}", d.context());
    assert!(env.dst_read("a-big").map_or(0, |b| b.len()) < 400 * 1024);
    for f in ["f1", "f2"] {
        fs::remove_file(env.src_path(f)).expect("rm");
    }
    d.wait_until(LONG, "a-big synced once there is room", || {
        env.dst_read("a-big").is_some_and(|b| b.len() == 400 * 1024)
    });
    d.wait_synced(&env, LONG);
}

/// Makes `p` nobody's.
fn give_to_nobody(p: &Path) {
    std::os::unix::fs::chown(p, Some(NOBODY), Some(NOBODY))
        .unwrap_or_else(|e| panic!("chown {}: {e}", p.display()));
}

/// A command that runs as nobody from the start (no capabilities at all).
fn as_nobody(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let gid = NOBODY as libc::gid_t;
            if libc::setgroups(1, &gid) != 0
                || libc::setgid(gid) != 0
                || libc::setuid(NOBODY as libc::uid_t) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A tree nobody may read, but for the 0000 file `secret` and directory
/// `locked`; an exit hook that leaves a mark.
fn unreadable_tree(env: &TestEnv) -> PathBuf {
    env.write("a", "a");
    env.mkdir_p("sub");
    env.write("sub/c", "c");
    env.write("secret", "s");
    env.mkdir_p("locked");
    env.write("locked/in", "i");
    let hook = script(env, "exit-hook", "touch \"$(dirname \"$0\")/hook-ran\"\n");
    for p in [&env.root, &env.src, &env.dst, &env.outside] {
        give_to_nobody(p);
    }
    for f in ["a", "sub", "sub/c", "secret", "locked", "locked/in"] {
        give_to_nobody(&env.src_path(f));
    }
    give_to_nobody(&hook);
    for f in ["secret", "locked"] {
        fs::set_permissions(env.src_path(f), fs::Permissions::from_mode(0o000)).expect("chmod");
    }
    hook
}

#[test]
fn an_unreadable_file_is_skipped_once_and_everything_else_goes_on() {
    if !require_root("running the daemon as nobody") {
        return;
    }
    let env = TestEnv::new();
    let hook = unreadable_tree(&env);
    let metrics = env.root.join("metrics.prom");
    let mut cmd = Command::new(BIN);
    as_nobody(&mut cmd);
    cmd.args(["-H", "/NULL/", "-W"])
        .arg(&env.src)
        .arg("-D")
        .arg(&env.dst)
        .args(backend_args())
        .args(["-t0", "-w0", "--exit-on-no-events", "--exit-hook"])
        .arg(&hook)
        .arg("--metrics-file")
        .arg(&metrics);
    let r = run_command(cmd, LONG);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    // Everything else is there, the hook ran.
    for f in ["a", "sub/c"] {
        assert!(env.dst_has(f), "{f} synced; {}", r.stderr);
    }
    assert!(!env.dst_has("secret"));
    assert!(!env.dst_has("locked/in"));
    assert!(env.root.join("hook-ran").exists(), "{}", r.stderr);
    // One warning naming the file, and no failure.
    let warnings: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains("skipped secret"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", r.stderr);
    assert!(warnings[0].contains("/src/secret"), "{}", warnings[0]);
    assert!(warnings[0].contains("Permission denied"), "{}", warnings[0]);
    assert!(!r.stderr.contains("failed"), "{}", r.stderr);
    // The directory: one warning too, nothing louder.
    assert_eq!(
        r.stderr.matches("skipped locked").count(),
        1,
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("ERROR"), "{}", r.stderr);
    let text = fs::read_to_string(&metrics).expect("metrics file");
    assert!(
        text.lines().any(|l| l == "livesync_skipped_paths 2"),
        "{text}"
    );

    // Live: counted in the status; synced once it is readable and changes.
    let sock = env.root.join("ctl.sock");
    let mut d = Daemon::builder(&env)
        .args(["-t0", "-w0", "--socket"])
        .arg(&sock)
        .prepare(as_nobody)
        .start();
    let status = |key: &str| -> Option<u64> {
        let out = Command::new(BIN)
            .args(["status", "--json", "--socket"])
            .arg(&sock)
            .output()
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v["counters"][key].as_u64()
    };
    d.wait_until(LONG, "status counts the skipped file and dir", || {
        status("skipped_paths") == Some(2)
    });
    assert_eq!(status("failed_paths"), Some(0));
    // Tried again (a full resync), still unreadable: no second warning.
    d.signal(Signal::SIGUSR2);
    wait_until(LONG, "the resync ran", || {
        d.log()
            .split("full resync requested")
            .nth(1)
            .is_some_and(|after| after.contains(" synced "))
    });
    assert_eq!(status("skipped_paths"), Some(2));
    assert_eq!(
        d.log().matches("skipped secret").count(),
        1,
        "{}",
        d.context()
    );
    fs::set_permissions(env.src_path("secret"), fs::Permissions::from_mode(0o644)).expect("chmod");
    fs::write(env.src_path("secret"), "readable now").expect("write");
    d.wait_until(LONG, "secret synced", || {
        env.dst_read("secret").as_deref() == Some(&b"readable now"[..])
    });
    d.wait_until(LONG, "the file no longer counted", || {
        status("skipped_paths") == Some(1)
    });
    // A directory made readable: its change syncs what it holds too.
    fs::set_permissions(env.src_path("locked"), fs::Permissions::from_mode(0o755)).expect("chmod");
    d.wait_until(LONG, "locked/in synced", || {
        env.dst_read("locked/in").as_deref() == Some(&b"i"[..])
    });
    d.wait_until(LONG, "nothing skipped", || {
        status("skipped_paths") == Some(0)
    });
    d.wait_synced(&env, LONG);
    assert_eq!(
        d.log().matches("skipped secret").count(),
        1,
        "{}",
        d.context()
    );
}

#[test]
fn an_unreadable_watch_dir_is_refused_at_start() {
    if !require_root("running the daemon as nobody") {
        return;
    }
    let env = TestEnv::new();
    env.write("a", "a");
    give_to_nobody(&env.root);
    give_to_nobody(&env.dst);
    fs::set_permissions(&env.src, fs::Permissions::from_mode(0o700)).expect("chmod");
    let mut cmd = Command::new(BIN);
    as_nobody(&mut cmd);
    cmd.args(["-H", "/NULL/", "-W"])
        .arg(&env.src)
        .arg("-D")
        .arg(&env.dst)
        .args(backend_args())
        .args(["-t0", "-w0"]);
    let r = run_command(cmd, LONG);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    let errors: Vec<&str> = r.stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "{}", r.stderr);
    assert!(
        errors[0].contains(&format!("watch dir {}", env.src.display()))
            && errors[0].contains("Permission denied"),
        "{}",
        errors[0]
    );
    assert!(!env.dst_has("a"));
}

/// `openat` of `name` in `dir` (`AT_FDCWD` for a path), as a directory
/// (created first with `mkdir`), or as a file with `flags`.
fn open_at(dir: i32, name: &[u8], flags: i32, mkdir: bool) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    let c = std::ffi::CString::new(name).expect("name");
    // SAFETY: valid NUL-terminated names, descriptors we hold; results checked.
    unsafe {
        if mkdir {
            let rc = libc::mkdirat(dir, c.as_ptr(), 0o755);
            assert!(rc == 0, "mkdir: {}", std::io::Error::last_os_error());
        }
        let fd = libc::openat(dir, c.as_ptr(), flags | libc::O_CLOEXEC, 0o644);
        assert!(fd >= 0, "open: {}", std::io::Error::last_os_error());
        std::os::fd::OwnedFd::from_raw_fd(fd)
    }
}

/// The directory `comps` below `root`, one component at a time (its path
/// is too long to name whole); None when a component is missing.
fn deep_dir(root: &Path, comps: &[Vec<u8>]) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    let mut fd = open_at(
        libc::AT_FDCWD,
        root.as_os_str().as_bytes(),
        libc::O_DIRECTORY,
        false,
    );
    for c in comps {
        let name = std::ffi::CString::new(c.clone()).expect("name");
        // SAFETY: as in open_at.
        let next = unsafe {
            libc::openat(
                fd.as_raw_fd(),
                name.as_ptr(),
                libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if next < 0 {
            return None;
        }
        // SAFETY: just opened, ours.
        fd = unsafe { std::os::fd::FromRawFd::from_raw_fd(next) };
    }
    Some(fd)
}

fn read_deep(root: &Path, comps: &[Vec<u8>], name: &str) -> Option<Vec<u8>> {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let dir = deep_dir(root, comps)?;
    let c = std::ffi::CString::new(name).expect("name");
    // SAFETY: as in open_at.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: just opened, ours.
    let mut f = unsafe { <fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let mut out = Vec::new();
    f.read_to_end(&mut out).ok()?;
    Some(out)
}

fn write_deep(root: &Path, comps: &[Vec<u8>], name: &str, content: &[u8]) {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    let dir = deep_dir(root, comps).expect("deep dir");
    let fd = open_at(
        dir.as_raw_fd(),
        name.as_bytes(),
        libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
        false,
    );
    fs::File::from(fd).write_all(content).expect("write");
}

#[test]
fn a_change_deeper_than_path_max_reaches_the_destination() {
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    if test_monitor().is_some_and(|m| m != "inotify") {
        return; // the watch below PATH_MAX is inotify's
    }
    let env = TestEnv::new();
    let mut d = Daemon::start(&env, &["-t0", "-w0"]);
    d.wait_live(&env, LONG);
    // 52 levels of 100-byte names: 5,252 bytes below the watch dir.
    let comps: Vec<Vec<u8>> = (0..52)
        .map(|i| format!("{i:02}{}", "d".repeat(98)).into_bytes())
        .collect();
    let mut fd = open_at(
        libc::AT_FDCWD,
        env.src.as_os_str().as_bytes(),
        libc::O_DIRECTORY,
        false,
    );
    for c in &comps {
        fd = open_at(fd.as_raw_fd(), c, libc::O_DIRECTORY, true);
    }
    drop(fd);
    d.wait_until(
        LONG,
        "the deepest directory made at the destination",
        || deep_dir(&env.dst, &comps).is_some(),
    );
    // A file made and changed down there afterwards is seen by the watch
    // on the deepest directory, not by a sync of a directory above it.
    write_deep(&env.src, &comps, "f", b"first");
    d.wait_until(LONG, "file at depth synced", || {
        read_deep(&env.dst, &comps, "f").as_deref() == Some(&b"first"[..])
    });
    write_deep(&env.src, &comps, "f", b"second");
    d.wait_until(LONG, "change at depth synced", || {
        read_deep(&env.dst, &comps, "f").as_deref() == Some(&b"second"[..])
    });
    let log = d.log();
    assert!(!log.contains("File name too long"), "{}", d.context());
    assert!(!log.contains("rescan"), "{}", d.context());
}
