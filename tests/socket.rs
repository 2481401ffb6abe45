//! `livesync ctl` end to end: the real binary talks to a control socket
//! served by a test thread through the library's `ControlSocket` (no
//! daemon), and the tests assert what it prints and its exit codes. Also
//! checks the refusal of another uid (as root only: the client runs as
//! `nobody`). It does not test the daemon's wiring of the socket.

use livesync::daemon::socket::{Command, ControlSocket, LastSync, StatusReport, DEFAULT_MODE};
use std::fs;
use std::io::{Read, Write};
use std::os::fd::RawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_livesync");

fn status() -> StatusReport {
    StatusReport {
        state: "running".into(),
        queue: vec![("normal".into(), 2)],
        oldest_pending_age_ms: None,
        last_sync: Some(LastSync {
            finished_unix_ms: 1,
            duration_ms: 2,
            exit_code: None,
            ok: true,
        }),
        counters: vec![("events".into(), 7)],
        watch_dir: "/w \"q\"".into(),
        destination: "/d".into(),
        label: "test".into(),
        pid: 99,
        version: "0.1.0".into(),
    }
}

/// A control socket served by a thread, the way the event loop will: poll
/// its fds, then `service`. Stops and joins on drop.
struct Server {
    dir: tempfile::TempDir,
    path: PathBuf,
    orders: Arc<Mutex<Vec<Command>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(mode: u32) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctl.sock");
        let sock = ControlSocket::bind(&path, None, mode).unwrap();
        Server::serve(dir, path, sock)
    }

    fn serve(dir: tempfile::TempDir, path: PathBuf, mut sock: ControlSocket) -> Server {
        let orders = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (o, s) = (Arc::clone(&orders), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                poll_readable(&sock.fds(), 20);
                let got = sock.service(&status);
                o.lock().unwrap().extend(got);
            }
        });
        Server {
            dir,
            path,
            orders,
            stop,
            thread: Some(thread),
        }
    }

    fn orders(&self) -> Vec<Command> {
        self.orders.lock().unwrap().clone()
    }

    /// The orders once there are `n` of them: the server hands them over
    /// just after replying, so a client can be back before they are.
    fn wait_orders(&self, n: usize) -> Vec<Command> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let got = self.orders();
            if got.len() >= n {
                return got;
            }
            assert!(Instant::now() < deadline, "only {got:?} after 5 s");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn poll_readable(fds: &[RawFd], ms: i32) {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `p` is a valid array of `p.len()` pollfds.
    unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, ms) };
}

fn ctl(socket: &Path, words: &[&str]) -> Output {
    std::process::Command::new(BIN)
        .arg("ctl")
        .arg(socket)
        .args(words)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).unwrap()
}

#[test]
fn status_prints_one_json_line_and_exits_0() {
    let srv = Server::start(DEFAULT_MODE);
    let out = ctl(&srv.path, &["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{}\n", status().to_json()));
    assert!(text(&out.stdout).contains(r#""watch_dir":"/w \"q\"""#));
    assert_eq!(text(&out.stderr), "");
}

#[test]
fn orders_reach_the_server_and_print_ok() {
    let srv = Server::start(DEFAULT_MODE);
    for (i, (word, cmd)) in [
        ("pause", Command::Pause),
        ("resume", Command::Resume),
        ("resync", Command::Resync),
        ("dump", Command::Dump),
        ("quit", Command::Quit),
        ("die", Command::Die),
    ]
    .into_iter()
    .enumerate()
    {
        let out = ctl(&srv.path, &[word]);
        assert_eq!(out.status.code(), Some(0), "{word}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), format!("ok {word} requested\n"));
        assert_eq!(srv.wait_orders(i + 1).last(), Some(&cmd));
    }
    assert_eq!(srv.orders().len(), 6);
}

#[test]
fn queries_print_ok_lines() {
    let srv = Server::start(DEFAULT_MODE);
    let out = ctl(&srv.path, &["version"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        format!("ok livesync {}\n", env!("CARGO_PKG_VERSION"))
    );
    let out = ctl(&srv.path, &["info"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stdout).starts_with("ok livesync 0.1.0 pid 99 label \"test\""),
        "{}",
        text(&out.stdout)
    );
    let out = ctl(&srv.path, &["help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).starts_with("ok commands:"));
}

#[test]
fn error_replies_exit_1() {
    let srv = Server::start(DEFAULT_MODE);
    let out = ctl(&srv.path, &["set", "delay-sync", "5"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "error set delay-sync: not supported\n");
    let out = ctl(&srv.path, &["frobnicate"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stdout),
        "error unknown command \"frobnicate\"; try help\n"
    );
    let out = ctl(&srv.path, &["pause", "please"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(srv.orders().is_empty());
}

#[test]
fn no_daemon_exits_2_naming_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.sock");
    let out = ctl(&missing, &["status"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&missing.display().to_string()), "{err}");
    assert!(out.stdout.is_empty());

    // A stale socket file (nobody listening) is the same failure.
    let stale = dir.path().join("stale.sock");
    drop(UnixListener::bind(&stale).unwrap());
    let out = ctl(&stale, &["status"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("stale.sock"));
}

#[test]
fn usage_errors_exit_2() {
    let out = std::process::Command::new(BIN)
        .args(["ctl", "/x.sock"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("usage: livesync ctl SOCKET COMMAND"));
    let out = std::process::Command::new(BIN)
        .args(["ctl", "--help"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("Exit codes"));
}

/// A peer that is not livesync: what it answers, or that it answers nothing,
/// is a failure to talk (exit 2), not an error reply.
#[test]
fn foreign_or_silent_peers_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let server = std::thread::spawn(move || {
        for reply in [&b"HELLO there\n"[..], b""] {
            let (mut s, _) = listener.accept().unwrap();
            let mut line = [0u8; 64];
            let _ = s.read(&mut line);
            s.write_all(reply).unwrap();
        }
    });
    let out = ctl(&path, &["status"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("unexpected reply"),
        "{}",
        text(&out.stderr)
    );
    let out = ctl(&path, &["status"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("without a reply"),
        "{}",
        text(&out.stderr)
    );
    server.join().unwrap();
}

fn is_root() -> bool {
    // SAFETY: geteuid has no side effects.
    unsafe { libc::geteuid() == 0 }
}

fn ctl_as_nobody(socket: &Path, words: &[&str]) -> Output {
    std::process::Command::new(BIN)
        .arg("ctl")
        .arg(socket)
        .args(words)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap()
}

/// As root, a client running as `nobody` is refused twice over: by the
/// file mode (0600: cannot even connect) and, with a world-writable socket,
/// by the peer-credential check (an error line).
#[test]
fn other_uids_are_refused() {
    if !is_root() {
        eprintln!("SKIPPED: needs root to run the client as another uid");
        return;
    }
    let srv = Server::start(DEFAULT_MODE);
    fs::set_permissions(srv.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let out = ctl_as_nobody(&srv.path, &["die"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("Permission denied"));

    let open = Server::start(0o666);
    fs::set_permissions(open.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let out = ctl_as_nobody(&open.path, &["die"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "error permission denied: uid 65534 may not use this control socket\n"
    );
    assert!(open.orders().is_empty());
    assert!(srv.orders().is_empty());
    // Root itself is still served.
    let out = ctl(&open.path, &["die"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(open.wait_orders(1), [Command::Die]);
}
