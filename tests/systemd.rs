//! Running under systemd, and logging, through the real binary: sd_notify
//! messages (READY, STATUS, WATCHDOG at half WATCHDOG_USEC, STOPPING) reach
//! a datagram socket the test binds, at a path and in the abstract
//! namespace; under journald (JOURNAL_STREAM naming our stderr) lines carry
//! a `<N>` priority and no timestamp; `-Y syslog --syslog-socket PATH`
//! sends RFC 3164 datagrams there, one info line per batch.

mod common;

use common::*;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Every datagram that arrives within `timeout`, until `enough` says so.
fn collect(
    sock: &UnixDatagram,
    timeout: Duration,
    mut enough: impl FnMut(&[String]) -> bool,
) -> Vec<String> {
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    while Instant::now() < deadline && !enough(&got) {
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    got
}

#[test]
fn notify_ready_status_watchdog_stopping() {
    let env = TestEnv::new();
    let path = env.outside_path("notify.sock");
    let server = UnixDatagram::bind(&path).unwrap();
    let mut d = Daemon::start_prepared(&env, &["-t0", "-w0"], Locking::Shared, |c| {
        c.env("NOTIFY_SOCKET", &path)
            .env("WATCHDOG_USEC", "400000") // pings every 200 ms
            .env_remove("WATCHDOG_PID");
    });
    let got = collect(&server, secs(20.0), |g| {
        g.iter().filter(|m| *m == "WATCHDOG=1").count() >= 4
            && g.iter().any(|m| m.starts_with("READY=1"))
    });
    let ready = got.iter().position(|m| m.starts_with("READY=1"));
    assert!(ready.is_some(), "no READY=1 in {got:?}");
    assert!(
        got.iter().any(|m| m.contains("STATUS=")),
        "no STATUS in {got:?}"
    );
    let pings = got.iter().filter(|m| *m == "WATCHDOG=1").count();
    assert!(pings >= 4, "watchdog pings: {got:?}");
    d.wait_live(&env, secs(20.0));
    // A quiet daemon keeps pinging (the loop wakes for the watchdog).
    let quiet = collect(&server, secs(5.0), |g| {
        g.iter().filter(|m| *m == "WATCHDOG=1").count() >= 3
    });
    assert!(
        quiet.iter().filter(|m| *m == "WATCHDOG=1").count() >= 3,
        "{quiet:?}"
    );
    let st = d.signal_and_wait(libc::SIGTERM, secs(10.0));
    assert_eq!(st.and_then(|s| s.code()), Some(0), "{}", d.log_tail(20));
    let rest = collect(&server, secs(2.0), |g| {
        g.iter().any(|m| m.starts_with("STOPPING=1"))
    });
    assert!(
        rest.iter().any(|m| m.starts_with("STOPPING=1")),
        "no STOPPING=1 in {rest:?}"
    );
}

#[cfg(target_os = "linux")] // the abstract socket namespace is Linux's
#[test]
fn notify_abstract_socket_and_foreign_watchdog_pid() {
    use std::os::linux::net::SocketAddrExt;
    let env = TestEnv::new();
    let name = format!("livesync-notify-test-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let server = UnixDatagram::bind_addr(&addr).unwrap();
    let mut d = Daemon::start_prepared(&env, &["-t0", "-w0"], Locking::Shared, |c| {
        c.env("NOTIFY_SOCKET", format!("@{name}"))
            .env("WATCHDOG_USEC", "200000")
            .env("WATCHDOG_PID", "1"); // not us: no pings
    });
    let got = collect(&server, secs(20.0), |g| {
        g.iter().any(|m| m.starts_with("READY=1"))
    });
    assert!(got.iter().any(|m| m.starts_with("READY=1")), "{got:?}");
    let later = collect(&server, Duration::from_millis(600), |_| false);
    assert!(
        !got.iter().chain(&later).any(|m| m == "WATCHDOG=1"),
        "WATCHDOG_PID names another process: {got:?} {later:?}"
    );
    d.stop();
}

#[test]
fn children_do_not_inherit_notify_socket() {
    let env = TestEnv::new();
    let path = env.outside_path("notify.sock");
    let _server = UnixDatagram::bind(&path).unwrap();
    let out = env.outside_path("hook-env");
    let hook = script(&env, "hook.sh", &format!("env > '{}'", out.display()));
    let mut d = Daemon::start_prepared(
        &env,
        &[
            "-t0",
            "-w0",
            "--exit-on-no-events",
            "--exit-hook",
            &path_str(&hook),
        ],
        Locking::Shared,
        |c| {
            c.env("NOTIFY_SOCKET", &path);
        },
    );
    let st = d.wait_exit(secs(20.0));
    assert_eq!(st.code(), Some(0), "{}", d.log_tail(20));
    let env_text = read(&out);
    assert!(env_text.contains("CLSYNC_STATUS="), "hook ran: {env_text}");
    assert!(!env_text.contains("NOTIFY_SOCKET"), "{env_text}");
}

/// Runs the daemon with stderr into a file, returning the file's text once
/// `needle` is in it, after stopping the daemon.
fn run_with_stderr_file(env: &TestEnv, journal: impl Fn(&std::fs::Metadata) -> String) -> String {
    let log = env.outside_path("stderr.log");
    let f = std::fs::File::create(&log).unwrap();
    let md = f.metadata().unwrap();
    let _lock = take_lock(libc::LOCK_SH);
    let mut child = Command::new(BIN)
        .args(["-H", "/NULL/", "-t0", "-w0", "--exit-on-no-events", "-W"])
        .arg(&env.src)
        .arg("-D")
        .arg(&env.dst)
        .env("JOURNAL_STREAM", journal(&md))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(f)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + secs(20.0);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("livesync --exit-on-no-events did not exit: {}", read(&log));
        }
        std::thread::sleep(POLL);
    };
    assert_eq!(status.code(), Some(0), "{}", read(&log));
    read(&log)
}

#[test]
fn journald_lines_have_priorities_and_no_timestamps() {
    let env = TestEnv::new();
    env.write("a", "1");
    let text = run_with_stderr_file(&env, |md| format!("{}:{}", md.dev(), md.ino()));
    assert!(!text.is_empty());
    for line in text.lines() {
        let (pri, msg) = line
            .strip_prefix('<')
            .and_then(|l| l.split_once('>'))
            .unwrap_or_else(|| panic!("no <N> prefix: {line:?}"));
        assert!(matches!(pri, "3" | "4" | "6" | "7"), "{line:?}");
        assert!(!msg.contains("livesync["), "no pid: {line:?}");
        assert!(!msg.starts_with("20"), "no timestamp: {line:?}");
    }
    assert!(text.contains("<6>synced "), "{text}");

    // A JOURNAL_STREAM that names another file: ordinary lines.
    let env = TestEnv::new();
    let text = run_with_stderr_file(&env, |md| format!("{}:{}", md.dev(), md.ino() + 1));
    assert!(text.lines().all(|l| l.contains(" livesync[")), "{text}");
    assert!(!text.contains("<6>"), "{text}");
}

#[test]
fn syslog_socket_gets_one_info_line_per_batch() {
    let env = TestEnv::new();
    let path = env.outside_path("log.sock");
    let server = UnixDatagram::bind(&path).unwrap();
    let mut d = Daemon::start(
        &env,
        &[
            "-t0",
            "-w0",
            "-Y",
            "syslog",
            "--syslog-socket",
            &path_str(&path),
        ],
    );
    let synced = |g: &[String]| g.iter().filter(|m| m.contains(": synced ")).count();
    let got = collect(&server, secs(20.0), |g| synced(g) >= 1);
    assert_eq!(synced(&got), 1, "the initial sync: {got:?}");
    env.write("one", "1");
    let more = collect(&server, secs(20.0), |g| synced(g) >= 1);
    let lines: Vec<&String> = more.iter().filter(|m| m.contains(": synced ")).collect();
    assert_eq!(lines.len(), 1, "{more:?}");
    let pid = d.pid();
    // <30> = facility daemon (3) * 8 + info (6).
    assert!(lines[0].starts_with("<30>"), "{}", lines[0]);
    assert!(
        lines[0].contains(&format!(" livesync[{pid}]: synced 1 path (")),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains(" with mirror in "), "{}", lines[0]);
    assert!(d.log().is_empty(), "nothing on stderr: {}", d.log());
    d.stop();
}
