//! `--chroot` and `--pivot-root`, tested on the running
//! processes: the daemon's root (`/proc/PID/root`), its mount namespace and
//! mounts (`/proc/PID/mountinfo`), the keeper that stays outside and removes
//! the pid file and the control socket (also after a SIGKILL), handlers
//! started and stopped inside a jail without `/proc`, rsync run inside a
//! jail with `/usr` bind-mounted, and the one-line refusals of what cannot
//! work. These tests need root (CI runs as root); the mounts they make are
//! under their own temp dirs and undone by a guard.

#![cfg(target_os = "linux")] // chroot jails and pivot_root are Linux-only here

mod common;

use common::*;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

/// A bind mount made by a test, undone (lazily) when dropped.
struct Mount(PathBuf);

impl Mount {
    fn bind(from: &Path, to: &Path, read_only: bool) -> Mount {
        fs::create_dir_all(to).expect("mount point");
        let ok = Command::new("mount")
            .arg("--bind")
            .arg(from)
            .arg(to)
            .status()
            .expect("mount")
            .success();
        assert!(ok, "mount --bind {} {}", from.display(), to.display());
        let m = Mount(to.to_path_buf());
        if read_only {
            let ok = Command::new("mount")
                .args(["-o", "remount,bind,ro"])
                .arg(to)
                .status()
                .expect("remount")
                .success();
            assert!(ok, "remount ro {}", to.display());
        }
        m
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// `livesync -t0 -w0 --chroot <env.root> EXTRA…` (`-W`/`-D` from `env`).
fn jailed(env: &TestEnv, extra: &[&dyn AsRef<OsStr>]) -> Daemon {
    let mut args = argv(&[&"-t0", &"-w0", &"--chroot", &env.root]);
    args.extend(argv(extra));
    Daemon::start(env, &args)
}

/// A private dir outside the jail for the pid file and the socket.
fn outside_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("livesync-chroot-out-")
        .tempdir()
        .expect("tempdir")
}

fn root_of(pid: i32) -> PathBuf {
    fs::read_link(format!("/proc/{pid}/root")).expect("read /proc/PID/root")
}

/// Mount points (field 5) of `/proc/PID/mountinfo`, as that process sees them.
fn mount_points(pid: i32) -> Vec<String> {
    fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .expect("mountinfo")
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .collect()
}

/// The pid of the daemon's child named `livesync-keep`.
fn keeper_of(pid: i32) -> Option<i32> {
    let children = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    children
        .split_whitespace()
        .filter_map(|c| c.parse::<i32>().ok())
        .find(|c| {
            fs::read_to_string(format!("/proc/{c}/comm")).is_ok_and(|n| n.trim() == "livesync-keep")
        })
}

fn status_field(pid: i32, key: &str) -> String {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("status")
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{key}:"))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default()
}

#[test]
fn mirror_runs_in_a_chroot_and_the_keeper_cleans_up_outside() {
    if !require_root("chroot(2)") {
        return;
    }
    let env = TestEnv::new();
    let out = outside_dir();
    let pid_file = out.path().join("livesync.pid");
    let sock = out.path().join("livesync.sock");
    let status = env.root.join("status");
    // systemd's notification socket, outside the jail.
    let notify_path = out.path().join("notify");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).expect("bind");
    notify.set_read_timeout(Some(T)).expect("timeout");
    env.write("before", "1");
    let mut d = Daemon::builder(&env)
        .args(argv(&[
            &"-t0",
            &"-w0",
            &"--chroot",
            &env.root,
            &"-z",
            &pid_file,
            &"--socket",
            &sock,
            &"--status-file",
            &status,
        ]))
        .env("NOTIFY_SOCKET", &notify_path)
        .start();
    d.wait_synced(&env, T);
    let pid = d.pid();
    // READY=1 is sent from inside the jail, through the socket connected
    // before entering it.
    let mut buf = [0u8; 4096];
    let mut got = String::new();
    while !got.contains("READY=1") {
        let n = notify
            .recv(&mut buf)
            .expect("a notification before the timeout");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert_eq!(root_of(pid), env.root, "the daemon's root is the jail");
    // Inside it, the privileges are dropped as without a jail.
    assert_eq!(
        status_field(pid, "Uid")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["65534"; 4]
    );
    assert_eq!(status_field(pid, "NoNewPrivs"), "1");
    let bnd = u64::from_str_radix(&status_field(pid, "CapBnd"), 16).expect("CapBnd");
    assert_eq!(bnd & (1 << 18), 0, "CAP_SYS_CHROOT is gone for good");
    d.wait_until(T, "status file says running", || {
        fs::read_to_string(&status).is_ok_and(|s| s.trim() == "running")
    });
    // Live changes still arrive.
    env.mkdir_p("sub");
    env.write("sub/after", "2");
    d.wait_synced(&env, T);
    // The socket outside the jail answers.
    let mut c = Command::new(env!("CARGO_BIN_EXE_livesync"));
    c.args(["status", "--socket"]).arg(&sock);
    let r = run_command(c, T);
    assert_eq!(r.code, Some(0), "status: {}", r.stderr);
    assert!(r.stdout.contains("running"), "{}", r.stdout);
    // The keeper: outside, unprivileged, nothing to do but wait.
    let keeper = keeper_of(pid).expect("a livesync-keep child");
    assert_eq!(root_of(keeper), Path::new("/"), "the keeper stays outside");
    assert_eq!(
        status_field(keeper, "Uid").split_whitespace().next(),
        Some("65534"),
        "the keeper runs as nobody"
    );
    let eff = u64::from_str_radix(&status_field(keeper, "CapEff"), 16).expect("CapEff");
    assert_eq!(
        eff,
        1 << 1,
        "only CAP_DAC_OVERRIDE (nobody cannot write the 0700 dir of the pid file)"
    );
    assert_eq!(status_field(keeper, "NoNewPrivs"), "1");
    // SIGHUP cannot reload in a jail: said, and the daemon goes on.
    let _ = kill(pid, Signal::SIGHUP);
    d.wait_for_log(T, "reload: not possible inside --chroot");
    env.write("after-hup", "3");
    d.wait_synced(&env, T);
    let st = d.signal_and_wait(Signal::SIGTERM, T).expect("exits");
    assert_eq!(st.code(), Some(0), "{}", d.log_tail(20));
    // livesync waits for its keeper: once it is gone, so are the files.
    assert!(!pid_file.exists(), "pid file removed");
    assert!(!sock.exists(), "socket removed");
    assert!(!status.exists(), "status file removed");
    assert!(!Path::new(&format!("/proc/{keeper}")).exists());
}

#[test]
fn a_killed_daemon_leaves_no_pid_file_or_socket_behind() {
    if !require_root("chroot(2)") {
        return;
    }
    let env = TestEnv::new();
    let out = outside_dir();
    let pid_file = out.path().join("p.pid");
    let sock = out.path().join("s.sock");
    let mut d = jailed(&env, &[&"-z", &pid_file, &"--socket", &sock]);
    d.wait_until(T, "pid file and socket made", || {
        pid_file.exists() && sock.exists()
    });
    let st = d.signal_and_wait(Signal::SIGKILL, T).expect("killed");
    assert!(st.code().is_none());
    wait_until(T, "the keeper removes the pid file and the socket", || {
        !pid_file.exists() && !sock.exists()
    });
}

#[test]
fn pivot_root_auto_leaves_only_the_jail_mounted() {
    if !require_root("pivot_root(2)") {
        return;
    }
    let env = TestEnv::new();
    env.write("a", "1");
    let mut d = jailed(&env, &[&"--pivot-root", &"auto"]);
    d.wait_synced(&env, T);
    let pid = d.pid();
    assert_ne!(
        fs::read_link(format!("/proc/{pid}/ns/mnt")).expect("ns"),
        fs::read_link("/proc/self/ns/mnt").expect("ns"),
        "a mount namespace of its own"
    );
    let mounts = mount_points(pid);
    assert!(
        mounts.iter().all(|at| at == "/"),
        "only the jail is mounted (no /proc, /sys, /dev of the host): {mounts:?}"
    );
    assert!(
        !mounts.iter().any(|at| at == "/proc"),
        "the host's /proc is gone"
    );
    env.write("b", "2");
    d.wait_synced(&env, T);
    assert_eq!(
        d.stop().and_then(|s| s.code()),
        Some(0),
        "{}",
        d.log_tail(20)
    );
}

#[test]
fn pivot_root_auto_ro_needs_a_destination_mount_of_its_own() {
    if !require_root("pivot_root(2), mount(8)") {
        return;
    }
    let env = TestEnv::new();
    // Without one: refused once inside, with one line.
    let mut d = jailed(&env, &[&"--pivot-root", &"auto-ro"]);
    let st = d.wait_exit(T);
    assert_ne!(st.code(), Some(0));
    let log = d.log();
    assert!(
        log.contains("--pivot-root=auto-ro: the destination")
            && log.contains("is read-only inside the jail"),
        "{log}"
    );
    // With the destination bind-mounted on itself, it stays writable while
    // the rest of the jail (the watch dir too) is read-only.
    let _dst = Mount::bind(&env.dst, &env.dst, false);
    env.write("x", "1");
    let mut d = jailed(&env, &[&"--pivot-root", &"auto-ro"]);
    d.wait_synced(&env, T);
    let info = fs::read_to_string(format!("/proc/{}/mountinfo", d.pid())).expect("mountinfo");
    let opts = |at: &str| {
        info.lines()
            .find(|l| l.split_whitespace().nth(4) == Some(at))
            .and_then(|l| l.split_whitespace().nth(5).map(str::to_string))
            .unwrap_or_else(|| panic!("no mount at {at}: {info}"))
    };
    assert!(opts("/").split(',').any(|o| o == "ro"), "{info}");
    assert!(opts("/dst").split(',').any(|o| o == "rw"), "{info}");
    env.write("y", "2");
    d.wait_synced(&env, T);
    d.stop();
}

#[test]
fn pivot_root_direct_needs_a_mount_point() {
    if !require_root("pivot_root(2), mount(8)") {
        return;
    }
    let env = TestEnv::new();
    let mut d = jailed(&env, &[&"--pivot-root", &"direct"]);
    assert_ne!(d.wait_exit(T).code(), Some(0));
    assert!(d.log().contains("is not a mount point"), "{}", d.log());
    let _jail = Mount::bind(&env.root, &env.root, false);
    env.write("z", "1");
    let mut d = jailed(&env, &[&"--pivot-root", &"direct"]);
    d.wait_synced(&env, T);
    assert!(mount_points(d.pid()).iter().all(|at| at == "/"));
    d.stop();
}

/// `/usr` (read-only) and the merged-/usr links, so that programs run in
/// the jail; and a world-writable `/tmp` for list files.
fn furnish(root: &Path) -> Mount {
    let usr = Mount::bind(Path::new("/usr"), &root.join("usr"), true);
    for l in ["bin", "lib", "lib64", "sbin"] {
        if let Ok(target) = fs::read_link(Path::new("/").join(l)) {
            let _ = std::os::unix::fs::symlink(target, root.join(l));
        }
    }
    let tmp = root.join("tmp");
    fs::create_dir_all(&tmp).expect("tmp");
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777)).expect("chmod");
    usr
}

#[test]
fn rsync_runs_inside_the_jail_or_is_refused_with_a_hint() {
    if !require_root("chroot(2), mount(8)") || !require_tool("rsync") {
        return;
    }
    let env = TestEnv::new();
    // An empty jail has no rsync: one line, exit 2, before anything runs.
    let r = run_livesync(
        &argv(&[
            &"-W",
            &env.src,
            &"-D",
            &env.dst,
            &"-M",
            &"rsyncdirect",
            &"--chroot",
            &env.root,
        ]),
        T,
    );
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(
        r.stderr.contains("the handler rsync is not found in PATH")
            && r.stderr.contains("inside it"),
        "{}",
        r.stderr
    );
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    let _usr = furnish(&env.root);
    env.mkdir_p("d");
    env.write("d/f", "1");
    let mut d = jailed(&env, &[&"-M", &"rsyncdirect", &"--pivot-root", &"auto"]);
    d.wait_synced(&env, T);
    env.write("d/g", "2");
    d.wait_synced(&env, T);
    assert!(d.log().contains("confined to"), "{}", d.log());
    d.stop();
}

#[test]
fn a_stop_ends_a_running_handler_in_a_jail_without_proc() {
    if !require_root("pivot_root(2), mount(8)") {
        return;
    }
    let env = TestEnv::new();
    let _usr = furnish(&env.root);
    // A handler whose first run blocks until it is killed (the stop's last
    // sync runs it again, and that run returns at once).
    let started = env.root.join("tmp/started");
    let handler = env.root.join("handler.sh");
    fs::write(
        &handler,
        "#!/bin/sh\n[ -e /tmp/started ] && exit 0\n: > /tmp/started\nexec sleep 613\n",
    )
    .expect("write");
    fs::set_permissions(&handler, fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut d = jailed(
        &env,
        &[&"-M", &"simple", &"-S", &handler, &"--pivot-root", &"auto"],
    );
    d.wait_until(T, "the handler runs", || started.exists());
    assert!(
        !Path::new(&format!("/proc/{}/root/proc/self", d.pid())).exists(),
        "no /proc inside the jail"
    );
    // The handler runs in the jail's namespace, as root (the default
    // handler user) with no-new-privs.
    let handler_pid: i32 = fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter(|e| fs::read(e.path().join("cmdline")).is_ok_and(|c| c == b"sleep\x00613\x00"))
        .find_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .expect("the handler's process");
    let ns = |p: i32| fs::read_link(format!("/proc/{p}/ns/mnt")).expect("ns");
    assert_eq!(ns(handler_pid), ns(d.pid()));
    // The jail and the /usr bound into it; nothing of the host.
    let mounts = mount_points(handler_pid);
    assert!(
        mounts.iter().all(|at| at == "/" || at == "/usr"),
        "{mounts:?}"
    );
    assert_eq!(
        status_field(handler_pid, "Uid").split_whitespace().next(),
        Some("0")
    );
    assert_eq!(status_field(handler_pid, "NoNewPrivs"), "1");
    let st = d.signal_and_wait(Signal::SIGTERM, T).expect("exits");
    assert!(st.code().is_some(), "{}", d.log_tail(20));
    let leftover: Vec<String> = fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter(|e| fs::read(e.path().join("cmdline")).is_ok_and(|c| c == b"sleep\x00613\x00"))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(leftover.is_empty(), "handler left running: {leftover:?}");
}

#[test]
fn what_cannot_work_in_a_jail_is_refused_with_one_line() {
    if !require_root("chroot(2)") {
        return;
    }
    let env = TestEnv::new();
    let jail = env.root.join("jail");
    fs::create_dir(&jail).expect("mkdir");
    let cases: Vec<(Vec<std::ffi::OsString>, &str)> = vec![
        (
            argv(&[&"-W", &env.src, &"-D", &env.dst, &"--chroot", &jail]),
            "the watch dir",
        ),
        (
            argv(&[&"-W", &env.src, &"-D", &env.dst, &"--pivot-root", &"auto"]),
            "--pivot-root=auto needs --chroot DIR",
        ),
        (
            argv(&[
                &"-W",
                &env.src,
                &"-D",
                &env.dst,
                &"--chroot",
                &env.root.join("nope"),
            ]),
            "--chroot",
        ),
        (
            argv(&[
                &"-W",
                &env.src,
                &"-D",
                &env.dst,
                &"--chroot",
                &env.root,
                &"--monitor",
                &"fanotify",
            ]),
            "--monitor fanotify do not mix",
        ),
        (
            argv(&[
                &"-W",
                &env.src,
                &"-D",
                &env.dst,
                &"--chroot",
                &env.root,
                &"--status-file",
                &"/run/livesync-test.status",
            ]),
            "--status-file /run/livesync-test.status lies outside it",
        ),
    ];
    for (args, needle) in cases {
        let r = run_livesync(&args, T);
        assert_eq!(r.code, Some(2), "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(needle), "{args:?}: {}", r.stderr);
        assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    }
}

#[test]
fn the_privileged_helper_is_in_the_jail_too() {
    if !require_root("pivot_root(2)") {
        return;
    }
    let env = TestEnv::new();
    env.write("a", "1");
    let mut d = jailed(&env, &[&"--pivot-root", &"auto", &"--secure-splitting"]);
    d.wait_synced(&env, T);
    let pid = d.pid();
    let children =
        fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).expect("children");
    let helper: i32 = children
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .find(|&c: &i32| status_field(c, "Uid").starts_with("0"))
        .expect("a root helper");
    let ns = |p: i32| fs::read_link(format!("/proc/{p}/ns/mnt")).expect("ns");
    assert_eq!(
        ns(helper),
        ns(pid),
        "the helper shares the jail's namespace"
    );
    assert!(mount_points(helper).iter().all(|at| at == "/"));
    assert_eq!(status_field(pid, "Seccomp"), "2");
    env.write("b", "2");
    d.wait_synced(&env, T);
    d.stop();
}

#[test]
fn syslog_lines_leave_the_jail() {
    if !require_root("chroot(2)") {
        return;
    }
    let env = TestEnv::new();
    let out = outside_dir();
    let log_path = out.path().join("log");
    let server = std::os::unix::net::UnixDatagram::bind(&log_path).expect("bind");
    server.set_read_timeout(Some(T)).expect("timeout");
    let mut d = jailed(&env, &[&"-Y", &"syslog", &"--syslog-socket", &log_path]);
    // "watching …" is logged after the jail is entered.
    let mut buf = [0u8; 4096];
    let mut got = String::new();
    while !got.contains("watching") {
        let n = server
            .recv(&mut buf)
            .expect("a syslog record before the timeout");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
        got.push('\n');
    }
    assert!(got.contains("confined to"), "{got}");
    d.stop();
}
