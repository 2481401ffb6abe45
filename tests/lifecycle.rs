//! The daemon's life cycle through the real binary: control files (pid,
//! status, standby), the ways it ends (--exit-on-no-events,
//! --only-initialsync, --skip-initialsync, --max-iterations), the hooks and
//! the handler's environment, and failures (-k, --ignore-failures, -r).
//! Handlers and hooks are small shell scripts written by the test that log
//! what they saw to a file; the test reads that file. This file owns no
//! daemon logic; it only observes the binary from outside.

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Generous deadline for anything to happen.
const LONG: Duration = Duration::from_secs(20);

/// A hook that appends `TAG ARGV... CLSYNC_STATUS` to `log`.
fn hook(env: &TestEnv, tag: &str, log: &Path) -> PathBuf {
    script(
        env,
        &format!("{tag}.sh"),
        &format!(
            "echo \"{tag} $# $1 $CLSYNC_STATUS $LIVESYNC_STATUS\" >> '{}'",
            log.display()
        ),
    )
}

/// A pre-exit hook that logs like [`hook`] (tag `pre`) and then writes
/// `name` into the source with `name` as its content, so the sync after it
/// has something to carry.
fn pre_hook_writing(env: &TestEnv, log: &Path, name: &str) -> PathBuf {
    script(
        env,
        "pre.sh",
        &format!(
            "echo \"pre $# $1 $CLSYNC_STATUS $LIVESYNC_STATUS\" >> '{}'\necho {name} > '{}'",
            log.display(),
            env.src_path(name).display()
        ),
    )
}

/// An rsync wrapper that logs `sync STATUS ITERATION STATUSFILE` and then
/// runs the real rsync with its arguments.
fn logging_rsync(env: &TestEnv, log: &Path, status_file: &Path) -> PathBuf {
    script(
        env,
        "rsync-wrapper.sh",
        &format!(
            "echo \"sync $CLSYNC_STATUS $CLSYNC_ITERATION $LIVESYNC_ITERATION $(cat '{}')\" >> '{}'\nexec rsync \"$@\"",
            status_file.display(),
            log.display()
        ),
    )
}

#[test]
fn pid_and_status_files_follow_the_run_and_are_removed() {
    if !require_tool("rsync") {
        return;
    }
    let env = TestEnv::new();
    env.write("a", "a");
    let (pid_file, status) = (env.root.join("d.pid"), env.root.join("status"));
    let log = env.root.join("handler.log");
    let wrapper = logging_rsync(&env, &log, &status);
    let mut d = Daemon::start(
        &env,
        &[
            "-M",
            "rsyncdirect",
            "-S",
            &path_str(&wrapper),
            "-t0",
            "-w0",
            "-z",
            &path_str(&pid_file),
            "--status-file",
            &path_str(&status),
        ],
    );
    d.wait_until(LONG, "status running", || read(&status) == "running\n");
    d.wait_synced(&env, LONG);
    assert_eq!(read(&pid_file), format!("{}\n", d.pid()));
    // The initial sync ran while the status was initsync, and its handler
    // saw that in its environment; iterations count after it.
    assert_eq!(lines(&log), ["sync initsync 0 0 initsync"]);
    env.write("b", "b");
    d.wait_until(LONG, "b synced", || env.dst_has("b"));
    d.wait_until(LONG, "second run logged", || lines(&log).len() == 2);
    assert_eq!(lines(&log)[1], "sync running 0 0 running");
    env.write("c", "c");
    d.wait_until(LONG, "c synced", || env.dst_has("c"));
    d.wait_until(LONG, "third run logged", || lines(&log).len() == 3);
    assert_eq!(lines(&log)[2], "sync running 1 1 running");
    let st = d.signal_and_wait(Signal::SIGTERM, LONG).expect("exited");
    assert_eq!(st.code(), Some(0), "{}", d.context());
    assert!(!pid_file.exists(), "pid file removed at exit");
    assert!(!status.exists(), "status file removed at exit");
    let leftovers: Vec<_> = fs::read_dir(&env.root)
        .expect("ls")
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

#[test]
fn pid_file_in_a_root_owned_dir_is_removed_and_a_live_one_is_refused() {
    if !require_root("a pid file in a root-owned 0755 directory") {
        return;
    }
    let env = TestEnv::new();
    let run = env.root.join("run");
    fs::create_dir(&run).expect("mkdir");
    fs::set_permissions(&run, fs::Permissions::from_mode(0o755)).expect("chmod");
    let pid_file = run.join("livesync.pid");
    let status = env.root.join("status");
    let mut d = Daemon::start(
        &env,
        &[
            "-t0",
            "-w0",
            "-z",
            &path_str(&pid_file),
            "--status-file",
            &path_str(&status),
        ],
    );
    d.wait_until(LONG, "status running", || read(&status) == "running\n");
    assert_eq!(read(&pid_file), format!("{}\n", d.pid()));
    // A second instance with the same pid file refuses to start.
    let env2 = TestEnv::new();
    let r = run_on(&env2, &["-z", &path_str(&pid_file)], LONG);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr.contains("is another livesync using it"),
        "{}",
        r.stderr
    );
    assert_eq!(read(&pid_file), format!("{}\n", d.pid()), "left alone");
    assert_eq!(d.stop().and_then(|s| s.code()), Some(0));
    assert!(!pid_file.exists(), "removed at exit");
}

#[test]
fn standby_file_holds_syncs_but_not_events() {
    let env = TestEnv::new();
    let (status, standby) = (env.root.join("status"), env.root.join("standby"));
    let mut d = Daemon::start(
        &env,
        &[
            "-t0",
            "-w0",
            "--status-file",
            &path_str(&status),
            "--standby-file",
            &path_str(&standby),
        ],
    );
    d.wait_live(&env, LONG);
    fs::write(&standby, "").expect("standby");
    d.wait_until(LONG, "status hold on", || read(&status) == "hold on\n");
    env.write("held", "x");
    assert_stays(
        Duration::from_millis(1500),
        "nothing synced in standby",
        || !env.dst_has("held"),
    );
    d.assert_running();
    fs::remove_file(&standby).expect("rm standby");
    d.wait_synced(&env, LONG);
    d.wait_until(LONG, "status running", || read(&status) == "running\n");
}

#[test]
fn exit_on_no_events_runs_hooks_in_order_with_one_more_sync() {
    if !require_tool("rsync") {
        return;
    }
    let env = TestEnv::new();
    env.mkdir_p("d/e");
    env.write("d/e/f", "f");
    env.write("top", "t");
    let log = env.root.join("order.log");
    let status = env.root.join("status");
    let wrapper = logging_rsync(&env, &log, &status);
    let exit = hook(&env, "exit", &log);
    // The pre-exit hook logs and changes the source: the sync after it
    // must carry that change.
    let pre = pre_hook_writing(&env, &log, "late");
    let r = run_on(
        &env,
        &[
            "-M",
            "rsyncdirect",
            "-S",
            &path_str(&wrapper),
            "-l",
            "lbl",
            "--status-file",
            &path_str(&status),
            "--exit-on-no-events",
            "--pre-exit-hook",
            &path_str(&pre),
            "--exit-hook",
            &path_str(&exit),
        ],
        LONG,
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(env.diff(), None);
    assert_eq!(
        lines(&log),
        [
            "sync initsync 0 0 initsync",
            "pre 1 lbl preexit preexit",
            "sync terminating 0 0 terminating",
            "exit 1 lbl exiting exiting",
        ],
        "{}",
        r.stderr
    );
    assert!(!status.exists());
}

#[test]
fn exit_on_no_events_with_the_mirror_leaves_dst_equal_to_src() {
    let env = TestEnv::new();
    for i in 0..20 {
        env.mkdir_p(format!("d{i}"));
        env.write(format!("d{i}/f"), format!("{i}"));
    }
    let r = run_on(&env, &["--exit-on-no-events"], LONG);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(env.diff(), None);
}

#[test]
fn only_initialsync_syncs_once_and_exits_with_the_hooks() {
    let env = TestEnv::new();
    env.mkdir_p("a/b");
    env.write("a/b/c", "c");
    let log = env.root.join("hooks.log");
    let (pre, exit) = (hook(&env, "pre", &log), hook(&env, "exit", &log));
    let r = run_on(
        &env,
        &[
            "--only-initialsync",
            "--pre-exit-hook",
            &path_str(&pre),
            "--exit-hook",
            &path_str(&exit),
        ],
        LONG,
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(env.diff(), None);
    assert!(r.stderr.contains("watching nothing"), "{}", r.stderr);
    assert_eq!(
        lines(&log),
        [
            "pre 1 nolabel preexit preexit",
            "exit 1 nolabel exiting exiting"
        ]
    );
}

#[test]
fn skip_initialsync_syncs_only_new_changes() {
    let env = TestEnv::new();
    env.write("old", "old");
    let status = env.root.join("status");
    let mut d = Daemon::start(
        &env,
        &[
            "-t0",
            "-w0",
            "--skip-initialsync",
            "--status-file",
            &path_str(&status),
        ],
    );
    d.wait_until(LONG, "status running", || read(&status) == "running\n");
    env.write("new", "new");
    d.wait_until(LONG, "new synced", || env.dst_has("new"));
    assert!(!env.dst_has("old"), "the initial sync was skipped");
}

#[test]
fn max_iterations_counts_syncs_after_the_initial_one() {
    // N = 1: the initial sync only.
    let env = TestEnv::new();
    env.write("a", "a");
    let log = env.root.join("hooks.log");
    let exit = hook(&env, "exit", &log);
    let mut d = Daemon::start(
        &env,
        &[
            "-t0",
            "-w0",
            "--max-iterations",
            "1",
            "--exit-hook",
            &path_str(&exit),
        ],
    );
    assert_eq!(d.wait_exit(LONG).code(), Some(0), "{}", d.context());
    assert_eq!(env.diff(), None);
    assert_eq!(lines(&log), ["exit 1 nolabel exiting exiting"]);

    // N = 2: the initial sync and exactly one sync after it.
    let env = TestEnv::new();
    let status = env.root.join("status");
    let mut d = Daemon::start(
        &env,
        &[
            "-t0",
            "-w0",
            "--max-iterations",
            "2",
            "--status-file",
            &path_str(&status),
        ],
    );
    d.wait_until(LONG, "status running", || read(&status) == "running\n");
    assert_stays(
        Duration::from_millis(1000),
        "still running after the initial sync",
        || d.pid() > 0 && alive(d.pid()),
    );
    env.write("one", "1");
    assert_eq!(d.wait_exit(LONG).code(), Some(0), "{}", d.context());
    assert!(env.dst_has("one"));
}

#[test]
fn timeout_sync_kills_the_whole_process_group() {
    if !require_tool("rsync") {
        return;
    }
    let env = TestEnv::new();
    env.write("a", "a");
    let pids = env.root.join("pids");
    // The handler records its own pid and a grandchild's, then waits.
    let slow = script(
        &env,
        "slow.sh",
        &format!(
            "echo $$ >> '{p}'\nsleep 60 &\necho $! >> '{p}'\nwait",
            p = pids.display()
        ),
    );
    let mut d = Daemon::start(
        &env,
        &[
            "-M",
            "rsyncdirect",
            "-S",
            &path_str(&slow),
            "-k",
            "1",
            "-t0",
            "-w0",
        ],
    );
    d.wait_until(LONG, "two pids recorded", || lines(&pids).len() >= 2);
    let recorded: Vec<i32> = lines(&pids)[..2]
        .iter()
        .map(|l| l.trim().parse().expect("pid"))
        .collect();
    d.wait_for_log(LONG, "killed with its process group");
    d.wait_until(LONG, "handler and grandchild gone", || {
        recorded.iter().all(|&p| !alive(p))
    });
    // Counted as a failure: retried, not fatal.
    d.wait_for_log(LONG, "retrying in");
    d.assert_running();
}

#[test]
fn ignore_failures_keeps_retrying_where_retries_would_give_up() {
    if !require_tool("rsync") {
        return;
    }
    for ignore in [false, true] {
        let env = TestEnv::new();
        env.write("a", "a");
        let count = env.root.join("count");
        // Fails its first three runs, then syncs.
        let flaky = script(
            &env,
            "flaky.sh",
            &format!(
                "echo x >> '{c}'\nif [ $(wc -l < '{c}') -le 3 ]; then exit 12; fi\nexec rsync \"$@\"",
                c = count.display()
            ),
        );
        let mut args = vec![
            "-M",
            "rsyncdirect",
            "-S",
            flaky.to_str().expect("utf8"),
            "-t0",
            "-w0",
            "-r",
            "3",
        ];
        if ignore {
            args.push("--ignore-failures");
        }
        let status = env.root.join("status");
        let status_arg = path_str(&status);
        args.extend(["--status-file", &status_arg]);
        let mut d = Daemon::start(&env, &args);
        if ignore {
            d.wait_until(LONG, "status synchandler error", || {
                read(&status) == "synchandler error\n"
            });
            d.wait_synced(&env, Duration::from_secs(30));
            d.wait_until(LONG, "status running", || read(&status) == "running\n");
            assert_eq!(lines(&count).len(), 4);
            d.assert_running();
        } else {
            assert_eq!(d.wait_exit(LONG).code(), Some(1), "{}", d.context());
            // Regression: each failure was counted twice, so -r 3 gave up
            // after two tries.
            assert_eq!(lines(&count).len(), 3, "-r 3: exactly three tries");
            assert!(d.log().contains("giving up"), "{}", d.context());
        }
    }
}

/// A tmpfs mounted at `at` for the life of the guard.
#[cfg(target_os = "linux")] // mount(2)'s Linux signature, umount2
struct Tmpfs(PathBuf);

#[cfg(target_os = "linux")]
impl Tmpfs {
    fn mount(at: &Path) -> Tmpfs {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let target = CString::new(at.as_os_str().as_bytes()).expect("path");
        let rc = unsafe {
            libc::mount(
                c"none".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "mount tmpfs: {}", std::io::Error::last_os_error());
        Tmpfs(at.to_path_buf())
    }
}

#[cfg(target_os = "linux")]
impl Drop for Tmpfs {
    fn drop(&mut self) {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let target = CString::new(self.0.as_os_str().as_bytes()).expect("path");
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

#[cfg(target_os = "linux")] // Tmpfs
#[test]
fn one_file_system_and_exclude_mount_points_stop_at_mount_points() {
    if !require_root("mounting a tmpfs inside the watch dir") {
        return;
    }
    for exclude in [false, true] {
        let env = TestEnv::new();
        env.mkdir_p("mnt");
        env.write("top", "t");
        let _m = Tmpfs::mount(&env.src_path("mnt"));
        env.mkdir_p("mnt/sub");
        env.write("mnt/sub/f", "other fs");
        let flag = if exclude { "-X" } else { "--one-file-system" };
        let r = run_on(&env, &["--only-initialsync", flag], LONG);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        assert!(env.dst_has("top"));
        assert!(
            !env.dst_has("mnt/sub"),
            "{flag}: nothing below the mount point"
        );
        assert_eq!(
            env.dst_has("mnt"),
            !exclude,
            "{flag}: the mount point itself"
        );
        // The same run watches no directory of the other filesystem.
        let mut d = Daemon::start(&env, &["-t0", "-w0", "-d", flag]);
        d.wait_for_log(LONG, "initial sync done");
        let log = d.log();
        assert!(log.contains("watching 1 directory"), "{}", d.context());
    }
}

#[test]
fn modification_signature_skips_changes_outside_the_mask() {
    let env = TestEnv::new();
    env.write("a", "1");
    let mut d = Daemon::start(&env, &["-t0", "-w0", "--modification-signature", "mode"]);
    d.wait_live(&env, LONG);
    // A change in the mask is synced and its signature remembered. (Not a
    // content write: its truncation is an event of its own, so the sync
    // could copy the empty file and then rightly skip the write.)
    fs::set_permissions(env.src_path("a"), fs::Permissions::from_mode(0o640)).expect("chmod");
    d.wait_until(LONG, "a is 0640", || {
        fs::metadata(env.dst_path("a")).is_ok_and(|m| m.permissions().mode() & 0o777 == 0o640)
    });
    // Same mode: not synced.
    env.write("a", "3");
    // The marker arrives whole (renamed in), for the same reason.
    fs::write(env.outside_path("marker"), "m").expect("write marker");
    fs::rename(env.outside_path("marker"), env.src_path("marker")).expect("move marker in");
    d.wait_until(LONG, "marker synced", || env.dst_has("marker"));
    assert_stays(Duration::from_millis(500), "a not resynced", || {
        env.dst_read("a").as_deref() == Some(&b"1"[..])
    });
    // A mode change is in the mask: synced, with the content as it is now.
    fs::set_permissions(env.src_path("a"), fs::Permissions::from_mode(0o600)).expect("chmod");
    d.wait_synced(&env, LONG);
}

#[test]
fn output_stdout_moves_the_log_off_stderr() {
    let env = TestEnv::new();
    env.write("a", "a");
    let r = run_on(&env, &["--only-initialsync", "-Y", "stdout"], LONG);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout.contains("initial sync done"), "{}", r.stdout);
    assert_eq!(r.stderr, "");
    assert_eq!(env.diff(), None);
}

#[test]
fn max_iterations_with_exit_on_no_events_runs_the_server_move_sequence() {
    // clsync's "moving a web server" example: sync while live, then the
    // pre-exit hook (stop the server), one more sync, the exit hook.
    let env = TestEnv::new();
    env.write("a", "a");
    let log = env.root.join("hooks.log");
    let exit = hook(&env, "exit", &log);
    let pre = pre_hook_writing(&env, &log, "stopped");
    let r = run_on(
        &env,
        &[
            "--exit-on-no-events",
            "--max-iterations",
            "20",
            "--pre-exit-hook",
            &path_str(&pre),
            "--exit-hook",
            &path_str(&exit),
        ],
        LONG,
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(env.diff(), None, "the pre-exit hook's change was synced");
    assert_eq!(
        lines(&log),
        [
            "pre 1 nolabel preexit preexit",
            "exit 1 nolabel exiting exiting"
        ]
    );
}

#[cfg(target_os = "linux")] // a private mount namespace
#[test]
fn output_syslog_sends_rfc3164_datagrams_to_dev_log() {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::UnixDatagram;
    use std::os::unix::process::CommandExt;
    if !require_root("a private mount namespace with our own /dev/log") {
        return;
    }
    let env = TestEnv::new();
    env.write("a", "a");
    // A stand-in for /dev: our syslog socket, and /dev/null bound in.
    let dev = env.root.join("dev");
    fs::create_dir(&dev).expect("mkdir");
    fs::write(dev.join("null"), "").expect("null placeholder");
    let server = UnixDatagram::bind(dev.join("log")).expect("bind");
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).expect("path");
    let (dev_c, null_c) = (c(&dev), c(&dev.join("null")));
    let mut cmd = std::process::Command::new(BIN);
    cmd.args([
        "-H",
        "/NULL/",
        "-W",
        &path_str(&env.src),
        "-D",
        &path_str(&env.dst),
    ])
    .args(["--only-initialsync", "-Y", "syslog", "-l", "sys"]);
    // SAFETY: between fork and exec we only make syscalls on data prepared
    // before the fork.
    unsafe {
        cmd.pre_exec(move || {
            let fail = || Err(std::io::Error::last_os_error());
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return fail();
            }
            let none = std::ptr::null();
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
                c"/dev/null".as_ptr(),
                null_c.as_ptr(),
                none,
                libc::MS_BIND,
                none.cast(),
            ) != 0
            {
                return fail();
            }
            if libc::mount(
                dev_c.as_ptr(),
                c"/dev".as_ptr(),
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
    let r = run_command(cmd, LONG);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(r.stderr, "", "nothing on stderr with -Y syslog");
    assert_eq!(env.diff(), None);
    // The daemon has exited: everything it sent is queued on the socket.
    server
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = server.recv(&mut buf) {
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let done = got
        .iter()
        .find(|m| m.contains("initial sync done"))
        .unwrap_or_else(|| panic!("no 'initial sync done' record in {got:?}"));
    // <30> = facility daemon (3) * 8 + info (6); then "Mmm dd hh:mm:ss".
    assert!(done.starts_with("<30>"), "{done}");
    let ts = done.get(4..19).unwrap_or_default().as_bytes();
    assert!(
        ts.len() == 15 && ts[3] == b' ' && ts[6] == b' ' && ts[9] == b':',
        "{done}"
    );
    assert!(
        done[19..].starts_with(" livesync[") && done.contains("]: initial sync done"),
        "{done}"
    );
}

/// `script` that logs like [`hook`] and then exits with `code`.
fn hook_exiting(env: &TestEnv, tag: &str, log: &Path, code: i32) -> PathBuf {
    script(
        env,
        &format!("{tag}.sh"),
        &format!(
            "echo \"{tag} $# $1 $CLSYNC_STATUS $LIVESYNC_STATUS\" >> '{}'\nexit {code}",
            log.display()
        ),
    )
}

/// The lines livesync logged at error level.
fn error_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.contains(" ERROR: ")).collect()
}

#[test]
fn a_failed_pre_exit_hook_aborts_the_cut_over() {
    let env = TestEnv::new();
    env.write("a", "a");
    let log = env.root.join("order.log");
    // "Stop the old server" fails: "start the new one" must not run.
    let pre = hook_exiting(&env, "pre", &log, 1);
    let exit = hook(&env, "exit", &log);
    let argv = |ignore: bool| {
        let mut a = vec![
            "-W".to_string(),
            path_str(&env.src),
            "-D".into(),
            path_str(&env.dst),
            "--exit-on-no-events".into(),
            "--pre-exit-hook".into(),
            path_str(&pre),
            "--exit-hook".into(),
            path_str(&exit),
        ];
        if ignore {
            a.push("--ignore-hook-failures".into());
        }
        a
    };
    let r = run_livesync(&argv(false), LONG);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert_eq!(
        lines(&log),
        ["pre 1 nolabel preexit preexit"],
        "{}",
        r.stderr
    );
    let errors = error_lines(&r.stderr);
    assert_eq!(errors.len(), 1, "{}", r.stderr);
    assert!(
        errors[0].contains(&format!(
            "--pre-exit-hook {} exited with code 1: not running --exit-hook",
            pre.display()
        )),
        "{}",
        errors[0]
    );
    assert!(!r.stderr.contains("Exited("), "{}", r.stderr);

    // clsync's way, asked for: the exit hook runs and livesync exits 0.
    fs::remove_file(&log).unwrap();
    let r = run_livesync(&argv(true), LONG);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        lines(&log),
        [
            "pre 1 nolabel preexit preexit",
            "exit 1 nolabel exiting exiting"
        ],
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("exited with code 1 (ignored: --ignore-hook-failures)"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_failed_exit_hook_makes_the_exit_code_non_zero() {
    let env = TestEnv::new();
    env.write("a", "a");
    let log = env.root.join("order.log");
    let exit = hook_exiting(&env, "exit", &log, 3);
    let r = run_on(
        &env,
        &["--exit-on-no-events", "--exit-hook", &path_str(&exit)],
        LONG,
    );
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert_eq!(lines(&log), ["exit 1 nolabel exiting exiting"]);
    let errors = error_lines(&r.stderr);
    assert_eq!(errors.len(), 1, "{}", r.stderr);
    assert!(
        errors[0].ends_with(&format!(
            "--exit-hook {} exited with code 3",
            exit.display()
        )),
        "{}",
        errors[0]
    );
    assert_eq!(env.diff(), None);
}

#[test]
fn standby_file_created_just_before_a_change_holds_its_sync() {
    let env = TestEnv::new();
    let standby = env.root.join("standby");
    let mut d = Daemon::start(&env, &["-t0", "-w0", "--standby-file", &path_str(&standby)]);
    d.wait_live(&env, LONG);
    // The file was looked at a moment ago; it must be looked at again
    // before the sync of this change starts, not only a second later.
    fs::write(&standby, "").expect("standby");
    env.write("held", "x");
    assert_stays(
        Duration::from_millis(1500),
        "nothing synced while the standby file exists",
        || !env.dst_has("held"),
    );
    d.assert_running();
    fs::remove_file(&standby).expect("rm standby");
    d.wait_synced(&env, LONG);
}
