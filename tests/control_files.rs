//! Control files in a shared directory through the real binary: the pid,
//! status and metrics files, the control socket, the dump dir and the
//! lists dir, when another local user (nobody) has planted symlinks where
//! livesync will put them, in a sticky world-writable directory like /tmp.
//! livesync must never write, truncate or remove a symlink's target, must
//! remove at exit only the files it made, and must create a missing lists
//! or dump dir (0700) but refuse a symlink in its place. This file owns no
//! daemon logic; it only observes the binary from outside.

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Generous deadline for anything to happen.
const LONG: Duration = Duration::from_secs(20);
const NOBODY: u32 = 65534;

/// A sticky, world-writable directory (like /tmp) in a test root that
/// nobody may traverse.
fn sticky_dir(env: &TestEnv) -> PathBuf {
    fs::set_permissions(&env.root, fs::Permissions::from_mode(0o755)).expect("chmod root");
    let d = env.root.join("tmp");
    fs::create_dir(&d).expect("mkdir");
    fs::set_permissions(&d, fs::Permissions::from_mode(0o1777)).expect("chmod 1777");
    d
}

/// Makes the symlink `link` -> `target` as user nobody.
fn plant_as_nobody(target: &Path, link: &Path) {
    let mut ln = Command::new("ln");
    ln.arg("-s").arg(target).arg(link).uid(NOBODY).gid(NOBODY);
    let r = run_command(ln, LONG);
    assert_eq!(r.code, Some(0), "ln -s as nobody: {}", r.stderr);
    let m = fs::symlink_metadata(link).expect("planted");
    assert!(m.file_type().is_symlink() && m.uid() == NOBODY);
}

/// A root-owned file the symlinks point at, and what it holds.
fn victim(env: &TestEnv, name: &str) -> PathBuf {
    let p = env.root.join(name);
    fs::write(&p, format!("{name}: precious\n")).expect("write victim");
    p
}

fn assert_untouched(p: &Path) {
    let name = p.file_name().expect("name").to_string_lossy().into_owned();
    let text = fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{} is gone or unreadable: {e}", p.display()));
    assert_eq!(
        text,
        format!("{name}: precious\n"),
        "{} changed",
        p.display()
    );
    assert_eq!(fs::metadata(p).expect("stat").uid(), 0);
}

#[test]
fn symlinks_planted_by_nobody_at_pid_status_and_metrics_paths_are_never_followed() {
    if !require_root("planting symlinks as nobody and dropping to nobody") {
        return;
    }
    let env = TestEnv::new();
    env.write("a", "a");
    let tmp = sticky_dir(&env);
    let (pid_v, status_v, metrics_v) = (
        victim(&env, "pid-victim"),
        victim(&env, "status-victim"),
        victim(&env, "metrics-victim"),
    );
    let (pid, status, metrics) = (
        tmp.join("ls.pid"),
        tmp.join("ls.status"),
        tmp.join("ls.prom"),
    );
    plant_as_nobody(&pid_v, &pid);
    plant_as_nobody(&status_v, &status);
    plant_as_nobody(&metrics_v, &metrics);
    let mut d = Daemon::start(
        &env,
        &[
            "-t0".as_ref(),
            "-w0".as_ref(),
            "-z".as_ref(),
            pid.as_os_str(),
            "--status-file".as_ref(),
            status.as_os_str(),
            "--metrics-file".as_ref(),
            metrics.as_os_str(),
        ],
    );
    // The status reaches "running" after the drop to nobody: rewritten by
    // rename in the sticky directory.
    d.wait_until(LONG, "status running in a file of its own", || {
        fs::symlink_metadata(&status).is_ok_and(|m| m.file_type().is_file())
            && read(&status) == "running\n"
    });
    d.wait_synced(&env, LONG);
    d.wait_until(LONG, "the metrics file", || {
        fs::symlink_metadata(&metrics).is_ok_and(|m| m.file_type().is_file())
    });
    assert!(fs::symlink_metadata(&pid)
        .expect("pid")
        .file_type()
        .is_file());
    assert_eq!(read(&pid), format!("{}\n", d.pid()));
    for v in [&pid_v, &status_v, &metrics_v] {
        assert_untouched(v);
    }
    assert!(d.log().contains("is a symlink"), "{}", d.log());
    let st = d.signal_and_wait(Signal::SIGTERM, LONG).expect("exited");
    assert_eq!(st.code(), Some(0), "{}", d.context());
    for v in [&pid_v, &status_v, &metrics_v] {
        assert_untouched(v);
    }
    assert!(fs::symlink_metadata(&pid).is_err(), "our pid file removed");
    assert!(
        fs::symlink_metadata(&status).is_err(),
        "our status file removed"
    );
    let left: Vec<_> = fs::read_dir(&tmp)
        .expect("ls")
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(left.is_empty(), "temp files left: {left:?}");
}

#[test]
fn files_put_in_place_of_ours_while_running_are_left_at_exit() {
    if !require_root("planting symlinks as nobody") {
        return;
    }
    let env = TestEnv::new();
    env.write("a", "a");
    let tmp = sticky_dir(&env);
    let (pid_v, status_v) = (victim(&env, "pid-victim"), victim(&env, "status-victim"));
    let (pid, status) = (tmp.join("ls.pid"), tmp.join("ls.status"));
    let mut d = Daemon::start(
        &env,
        &[
            "-t0".as_ref(),
            "-w0".as_ref(),
            "-z".as_ref(),
            pid.as_os_str(),
            "--status-file".as_ref(),
            status.as_os_str(),
        ],
    );
    d.wait_until(LONG, "status running", || read(&status) == "running\n");
    d.wait_synced(&env, LONG);
    // Root swaps symlinks in (a sticky dir keeps nobody from it).
    for (v, p) in [(&pid_v, &pid), (&status_v, &status)] {
        let link = tmp.join("swap");
        std::os::unix::fs::symlink(v, &link).expect("symlink");
        fs::rename(&link, p).expect("rename over");
    }
    let st = d.signal_and_wait(Signal::SIGTERM, LONG).expect("exited");
    assert_eq!(st.code(), Some(0), "{}", d.context());
    // The pid file is not ours any more: left. The status file was
    // rewritten at exit (the link replaced, not followed) and that one removed.
    assert!(
        fs::symlink_metadata(&pid).is_ok_and(|m| m.file_type().is_symlink()),
        "{} is not ours: left",
        pid.display()
    );
    assert!(fs::symlink_metadata(&status).is_err());
    assert_untouched(&pid_v);
    assert_untouched(&status_v);
}

#[test]
fn a_pid_file_naming_a_live_process_that_is_not_livesync_is_replaced() {
    let env = TestEnv::new();
    let pid = env.root.join("ls.pid");
    let mut sleeper = Command::new("sleep").arg("60").spawn().expect("sleep");
    fs::write(&pid, format!("{}\n", sleeper.id())).expect("write");
    let mut d = Daemon::start(&env, &["-t0", "-w0", "-z", &path_str(&pid)]);
    let ours = format!("{}\n", d.pid());
    d.wait_until(LONG, "our pid in the pid file", || read(&pid) == ours);
    d.assert_running();
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert!(d.log().contains("not a livesync"), "{}", d.log());
    // One naming a running livesync still stops a second one.
    let mut other = Daemon::start(&env, &["-t0", "-w0", "-z", &path_str(&pid)]);
    let st = other.wait_exit(LONG);
    assert_ne!(st.code(), Some(0), "{}", other.log());
    assert!(
        other.log().contains("a running livesync"),
        "{}",
        other.log()
    );
    assert_eq!(read(&pid), format!("{}\n", d.pid()));
}

#[test]
fn a_symlink_planted_at_the_socket_path_is_refused_and_its_target_kept() {
    if !require_root("planting a symlink as nobody") {
        return;
    }
    let env = TestEnv::new();
    let tmp = sticky_dir(&env);
    // A stale socket (nobody listens) of root's: what the link points at.
    let victim = env.root.join("victim.sock");
    drop(std::os::unix::net::UnixListener::bind(&victim).expect("bind"));
    let sock = tmp.join("ls.sock");
    plant_as_nobody(&victim, &sock);
    let r = run_livesync(
        &argv(&[
            &"-W",
            &env.src,
            &"-D",
            &env.dst,
            &"--socket",
            &sock,
            &"-t0",
            &"-w0",
        ]),
        LONG,
    );
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr.contains(&path_str(&sock)) && r.stderr.contains("not a socket"),
        "{}",
        r.stderr
    );
    let m = fs::symlink_metadata(&victim).expect("the stale socket is still there");
    assert!(std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()));
    assert!(fs::symlink_metadata(&sock)
        .expect("link")
        .file_type()
        .is_symlink());
}

#[test]
fn missing_lists_and_dump_dirs_are_created_private() {
    if !require_tool("rsync") {
        return;
    }
    let env = TestEnv::new();
    env.write("a", "a");
    let (lists, dumps) = (env.root.join("lists"), env.root.join("dumps"));
    let mut d = Daemon::start(
        &env,
        &[
            "-M".as_ref(),
            "rsyncdirect".as_ref(),
            "-S".as_ref(),
            "rsync".as_ref(),
            "-t0".as_ref(),
            "-w0".as_ref(),
            "-L".as_ref(),
            lists.as_os_str(),
            "--dump-dir".as_ref(),
            dumps.as_os_str(),
        ],
    );
    d.wait_synced(&env, LONG);
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let owner = if me == 0 { NOBODY } else { me };
    for dir in [&lists, &dumps] {
        let m = fs::symlink_metadata(dir).expect("created");
        assert!(m.is_dir(), "{}", dir.display());
        assert_eq!(m.permissions().mode() & 0o7777, 0o700, "{}", dir.display());
        assert_eq!(
            m.uid(),
            owner,
            "{} belongs to the daemon's user",
            dir.display()
        );
    }
    // Both work: a later sync writes its lists there, a dump lands there.
    env.write("b", "b");
    d.wait_until(LONG, "b synced", || env.dst_has("b"));
    d.signal(Signal::SIGIO);
    d.wait_until(LONG, "a dump file", || {
        fs::read_dir(&dumps).is_ok_and(|rd| {
            rd.flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".dump"))
        })
    });
    let st = d.signal_and_wait(Signal::SIGTERM, LONG).expect("exited");
    assert_eq!(st.code(), Some(0), "{}", d.context());
}

#[test]
fn a_symlink_in_place_of_the_lists_or_dump_dir_is_refused() {
    let env = TestEnv::new();
    let real = env.root.join("real");
    fs::create_dir(&real).expect("mkdir");
    let link = env.root.join("link");
    std::os::unix::fs::symlink(&real, &link).expect("symlink");
    for opt in ["-L", "--dump-dir"] {
        let r = run_livesync(
            &argv(&[
                &"-W", &env.src, &"-D", &env.dst, &opt, &link, &"-t0", &"-w0",
            ]),
            LONG,
        );
        assert_ne!(r.code, Some(0), "{opt}: {}", r.stderr);
        assert!(
            r.stderr.contains(&path_str(&link)) && r.stderr.contains("is a symlink"),
            "{opt}: {}",
            r.stderr
        );
        assert_eq!(r.stderr.trim().lines().count(), 1, "{opt}: {}", r.stderr);
    }
    assert_eq!(fs::read_dir(&real).expect("ls").count(), 0);
}
