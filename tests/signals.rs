//! Signals through the real binary: TERM/INT (stop handlers, sync what is
//! pending, exit hook, exit 0; a second one exits at once), QUIT (finish,
//! sync, pre-exit hook, --sync-on-quit, exit hook), HUP (reload the rules
//! and config), USR2 (full resync), and -b (a real daemon). Every process
//! started is killed; waits poll with deadlines. This file owns no daemon
//! logic; it only observes the binary from outside.

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(20);

fn hook(env: &TestEnv, tag: &str, log: &Path) -> PathBuf {
    script(
        env,
        &format!("{tag}.sh"),
        &format!("echo \"{tag} $1 $CLSYNC_STATUS\" >> '{}'", log.display()),
    )
}

#[test]
fn term_syncs_a_pending_change_then_runs_the_exit_hook() {
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        stop_syncs_a_pending_change_then_runs_the_exit_hook(sig);
    }
}

fn stop_syncs_a_pending_change_then_runs_the_exit_hook(sig: Signal) {
    let env = TestEnv::new();
    let (status, log) = (env.root.join("status"), env.root.join("hooks.log"));
    let (pre, exit) = (hook(&env, "pre", &log), hook(&env, "exit", &log));
    let mut d = Daemon::start(
        &env,
        &[
            "-t30",
            "-w0",
            "--status-file",
            &path_str(&status),
            "--pre-exit-hook",
            &path_str(&pre),
            "--exit-hook",
            &path_str(&exit),
        ],
    );
    d.wait_until(LONG, "status running", || read(&status) == "running\n");
    env.write("pending", "p");
    assert_stays(Duration::from_millis(300), "held by -t30", || {
        !env.dst_has("pending")
    });
    let st = d.signal_and_wait(sig, LONG).expect("exited");
    assert_eq!(st.code(), Some(0), "signal {sig}: {}", d.context());
    assert_eq!(env.dst_read("pending").as_deref(), Some(&b"p"[..]));
    // TERM is a hard stop: no pre-exit hook, but the exit hook runs.
    assert_eq!(lines(&log), ["exit nolabel exiting"]);
}

#[test]
fn term_stops_a_running_handler_and_syncs_its_batch_again() {
    if !require_tool("rsync") {
        return;
    }
    let env = TestEnv::new();
    env.write("a", "a");
    let pids = env.root.join("pids");
    // First run: record the pid and hang; later runs: real rsync.
    let h = script(
        &env,
        "hang-once.sh",
        &format!(
            "if [ ! -s '{p}' ]; then echo $$ >> '{p}'; sleep 60 & echo $! >> '{p}'; wait; exit 1; fi\nexec rsync \"$@\"",
            p = pids.display()
        ),
    );
    let mut d = Daemon::start(
        &env,
        &["-M", "rsyncdirect", "-S", &path_str(&h), "-t0", "-w0"],
    );
    d.wait_until(LONG, "handler running", || lines(&pids).len() >= 2);
    let recorded: Vec<i32> = lines(&pids)[..2]
        .iter()
        .map(|l| l.trim().parse().expect("pid"))
        .collect();
    let st = d.signal_and_wait(Signal::SIGTERM, LONG).expect("exited");
    assert_eq!(st.code(), Some(0), "{}", d.context());
    assert!(recorded.iter().all(|&p| !alive(p)), "handler group killed");
    assert_eq!(env.diff(), None, "the stopped batch was synced again");
}

#[test]
fn a_second_term_exits_at_once() {
    if !require_tool("rsync") {
        return;
    }
    let env = TestEnv::new();
    env.write("a", "a");
    let pids = env.root.join("pids");
    // A handler that ignores SIGTERM and hangs, every time.
    let h = script(
        &env,
        "stubborn.sh",
        &format!(
            "trap '' TERM\necho $$ >> '{p}'\nwhile :; do sleep 1; done",
            p = pids.display()
        ),
    );
    let mut d = Daemon::start(
        &env,
        &["-M", "rsyncdirect", "-S", &path_str(&h), "-t0", "-w0"],
    );
    d.wait_until(LONG, "handler running", || !lines(&pids).is_empty());
    d.signal(Signal::SIGTERM);
    d.wait_for_log(LONG, "stop signal");
    let t = Instant::now();
    let st = d.signal_and_wait(Signal::SIGTERM, LONG).expect("exited");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(st.code(), Some(0), "{}", d.context());
    // The running batch (the initial sync: one op) is dropped too.
    assert!(
        d.log()
            .contains("second stop signal: exiting now, 1 pending op(s) not synced"),
        "{}",
        d.context()
    );
    let pid: i32 = lines(&pids)[0].trim().parse().expect("pid");
    wait_until(LONG, "stubborn handler killed", || !alive(pid));
}

#[test]
fn quit_finishes_then_pre_exit_hook_then_sync_on_quit_then_exit_hook() {
    for sync_on_quit in [true, false] {
        let env = TestEnv::new();
        let (status, log) = (env.root.join("status"), env.root.join("hooks.log"));
        let exit = hook(&env, "exit", &log);
        let pre = script(
            &env,
            "pre.sh",
            &format!(
                "echo \"pre $1 $CLSYNC_STATUS\" >> '{}'\necho late > '{}'",
                log.display(),
                env.src_path("late").display()
            ),
        );
        let mut args = vec![
            "-t30".to_string(),
            "-w0".into(),
            "-l".into(),
            "q".into(),
            "--status-file".into(),
            path_str(&status),
            "--pre-exit-hook".into(),
            path_str(&pre),
            "--exit-hook".into(),
            path_str(&exit),
        ];
        if sync_on_quit {
            args.push("--sync-on-quit".into());
        }
        let mut d = Daemon::start(&env, &args);
        d.wait_until(LONG, "status running", || read(&status) == "running\n");
        env.write("pending", "p");
        let st = d.signal_and_wait(Signal::SIGQUIT, LONG).expect("exited");
        assert_eq!(st.code(), Some(0), "{}", d.context());
        assert_eq!(lines(&log), ["pre q preexit", "exit q exiting"]);
        assert!(env.dst_has("pending"), "pending synced before the hook");
        assert_eq!(
            env.dst_has("late"),
            sync_on_quit,
            "the pre-exit hook's change is synced only with --sync-on-quit"
        );
    }
}

#[test]
fn hup_reloads_the_rules() {
    let env = TestEnv::new();
    let rules = env.root.join("rules");
    fs::write(&rules, "-f\\.tmp$\n").expect("rules");
    env.write("keep", "k");
    env.write("a.tmp", "t");
    let mut d = Daemon::start(&env, &["-t0", "-w0", "-R", &path_str(&rules)]);
    d.wait_until(LONG, "keep synced", || env.dst_has("keep"));
    d.wait_for_log(LONG, "initial sync done");
    assert!(!env.dst_has("a.tmp"), "excluded by the rules");
    fs::write(&rules, "+*\n").expect("rules");
    d.signal(Signal::SIGHUP);
    d.wait_until(LONG, "a.tmp synced under the new rules", || {
        env.dst_has("a.tmp")
    });
    env.write("b.tmp", "b");
    d.wait_until(LONG, "new .tmp files synced live", || env.dst_has("b.tmp"));
    // A broken rules file is refused and the running rules stay.
    fs::write(&rules, "?bad\n").expect("rules");
    d.signal(Signal::SIGHUP);
    d.wait_for_log(LONG, "reload failed, keeping the running configuration");
    env.write("c.tmp", "c");
    d.wait_until(LONG, "still syncing", || env.dst_has("c.tmp"));
}

#[test]
fn usr2_resyncs_what_changed_behind_the_daemons_back() {
    let env = TestEnv::new();
    env.mkdir_p("d");
    env.write("d/f", "f");
    let mut d = Daemon::start(&env, &["-t0", "-w0"]);
    d.wait_live(&env, LONG);
    fs::remove_file(env.dst_path("d/f")).expect("rm dst file");
    fs::write(env.dst_path("extra"), "x").expect("dst extra");
    d.signal(Signal::SIGUSR2);
    d.wait_synced(&env, LONG);
}

#[test]
fn background_daemon_writes_its_pid_file_and_cleans_up() {
    let env = TestEnv::new();
    env.write("a", "a");
    let pid_file = env.root.join("bg.pid");
    let status = env.root.join("status");
    let _lock = take_lock(libc::LOCK_SH);
    let r = run_on(
        &env,
        &[
            "-t0",
            "-w0",
            "-b",
            "-z",
            &path_str(&pid_file),
            "--status-file",
            &path_str(&status),
        ],
        LONG,
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let pid: i32 = read(&pid_file).trim().parse().expect("pid in the pid file");
    // Kill it whatever happens below.
    struct Kill(i32);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = kill(self.0, Signal::SIGKILL);
        }
    }
    let _guard = Kill(pid);
    assert!(alive(pid));
    assert_eq!(
        fs::read_link(format!("/proc/{pid}/cwd")).expect("cwd"),
        Path::new("/")
    );
    let sid = unsafe { libc::getsid(pid) };
    assert_eq!(sid, pid, "a session of its own");
    wait_until(LONG, "synced", || env.diff());
    env.write("b", "b");
    wait_until(LONG, "live", || env.dst_has("b"));
    let _ = kill(pid, Signal::SIGTERM);
    wait_until(LONG, "exited", || !alive(pid));
    assert!(!pid_file.exists(), "pid file removed");
    assert!(!status.exists(), "status file removed");
}

#[test]
fn background_startup_errors_reach_the_terminal_and_the_exit_code() {
    let env = TestEnv::new();
    let pid_file = env.root.join("taken.pid");
    // A running livesync (by its name) holds it: the daemon must refuse it.
    let mut holder = std::process::Command::new("sleep");
    std::os::unix::process::CommandExt::arg0(&mut holder, "livesync");
    let mut holder = holder.arg("60").spawn().expect("sleep");
    let holder_pid = holder.id();
    fs::write(&pid_file, format!("{holder_pid}\n")).expect("write");
    let r = run_on(&env, &["-b", "-z", &path_str(&pid_file)], LONG);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("names process {holder_pid}, a running livesync")),
        "{}",
        r.stderr
    );
    assert_eq!(read(&pid_file), format!("{holder_pid}\n"), "left alone");
}

#[test]
fn a_failing_last_sync_at_term_exits_1_without_the_exit_hook() {
    if !require_tool("rsync") {
        return;
    }
    let env = TestEnv::new();
    let (status, log) = (env.root.join("status"), env.root.join("hooks.log"));
    let exit = hook(&env, "exit", &log);
    let broken = env.root.join("broken");
    // Syncs until the marker file exists, then fails.
    let h = script(
        &env,
        "breaks.sh",
        &format!(
            "if [ -e '{}' ]; then exit 12; fi\nexec rsync \"$@\"",
            broken.display()
        ),
    );
    let mut d = Daemon::start(
        &env,
        &[
            "-M",
            "rsyncdirect",
            "-S",
            &path_str(&h),
            "-t30",
            "-w0",
            "--status-file",
            &path_str(&status),
            "--exit-hook",
            &path_str(&exit),
        ],
    );
    d.wait_until(LONG, "status running", || read(&status) == "running\n");
    fs::write(&broken, "").expect("marker");
    env.write("pending", "p");
    let st = d.signal_and_wait(Signal::SIGTERM, LONG).expect("exited");
    assert_eq!(st.code(), Some(1), "{}", d.context());
    assert!(
        d.log().contains("the last sync before exiting failed"),
        "{}",
        d.context()
    );
    assert!(
        lines(&log).is_empty(),
        "no exit hook after a failed last sync"
    );
    assert!(!status.exists(), "status file removed even so");
}

/// Signal 29 (SIGIO) writes the state to a new 0600 file in `--dump-dir`.
#[test]
fn signal_29_dumps_the_state_to_the_dump_dir() {
    let env = TestEnv::new();
    env.mkdir_p("sub");
    let dumps = env.outside_path("dumps");
    fs::create_dir(&dumps).expect("mkdir dumps");
    let dumps_arg = dumps.to_string_lossy().into_owned();
    let mut d = Daemon::start(&env, &["-t0", "-w0", "--dump-dir", &dumps_arg]);
    d.wait_live(&env, secs(20.0));
    d.signal(Signal::SIGIO);
    let dumped = || -> Option<PathBuf> {
        fs::read_dir(&dumps)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .next()
    };
    d.wait_until(secs(10.0), "a dump file", || dumped().is_some());
    let file = dumped().expect("dump file");
    let text = fs::read_to_string(&file).expect("read dump");
    assert!(text.contains("\"state\":\"running\""), "{text}");
    // The watched directories: every one with a backend that watches each
    // (inotify, poll, …); with fanotify's filesystem mark only the root is
    // registered, and nothing below it costs a watch.
    let watched = if test_monitor().as_deref() == Some("fanotify") {
        "watch ."
    } else {
        "watch sub"
    };
    assert!(text.lines().any(|l| l == watched), "{text}");
    let mode = fs::metadata(&file).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    d.assert_running();
}
