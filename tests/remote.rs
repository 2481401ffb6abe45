//! rsyncdirect to remote destinations, for real: a `rsync --daemon` module
//! (`rsync://127.0.0.1:PORT/module/`) and `host:path` over ssh to a real
//! `sshd`, both started by the tests on free loopback ports and killed when
//! a test ends. The ssh options reach rsync the way rsync itself reads them:
//! `RSYNC_RSH` in livesync's environment (livesync passes its environment on
//! to rsync).
//!
//! Each test checks the destination's tree against the source byte for byte
//! (names, types, modes, contents, link targets) with `tree_diff`.

mod common;
#[path = "common/servers.rs"]
mod servers;

use common::*;
use servers::{Rsyncd, Sshd, SSHD};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

/// A TestEnv whose `-D` is a remote spelling; the files arrive in `dir`.
struct Remote {
    env: TestEnv,
    dir: PathBuf,
}

impl Remote {
    fn new() -> Remote {
        let env = TestEnv::new();
        let dir = env.dst.clone();
        Remote { env, dir }
    }

    /// A destination `host:dir` served by a test sshd whose files live in
    /// `work` (which must outlive the sshd).
    fn over_ssh(work: &Path) -> (Remote, Sshd) {
        let mut r = Remote::new();
        let sshd = Sshd::start(work, &[]);
        let dest = format!("{}:{}", sshd.host(), r.dir.display());
        r.set_destination(&dest);
        (r, sshd)
    }

    /// Makes the daemon's `-D` `dest` (what `Daemon::start` passes).
    fn set_destination(&mut self, dest: &str) {
        self.env.dst = PathBuf::from(dest);
    }

    fn diff(&self) -> Option<String> {
        tree_diff(&self.env.src, &self.dir)
    }

    fn has(&self, rel_path: &[u8]) -> bool {
        fs::symlink_metadata(self.dir.join(rel(rel_path))).is_ok()
    }

    /// `livesync -M rsyncdirect` to this destination, with `RSYNC_RSH`
    /// set to `rsync_rsh` or removed; the test adds its arguments.
    fn daemon(&self, rsync_rsh: Option<String>) -> DaemonBuilder {
        let b = Daemon::builder(&self.env).args(["-M", "rsyncdirect", "-t0", "-w0"]);
        match rsync_rsh {
            Some(rsh) => b.env("RSYNC_RSH", rsh),
            None => b.env_remove("RSYNC_RSH"),
        }
    }

    fn wait_synced(&self, d: &mut Daemon, what: &str) {
        d.wait_until(T, what, || self.diff());
    }
}

/// The same life of a tree whatever the transport: initial sync, create,
/// modify, delete, rename a directory, awkward names.
fn exercise(r: &Remote, d: &mut Daemon) {
    d.wait_live_in(&r.env, &r.dir, T);

    r.env.write("new.txt", "created");
    r.env.mkdir_p("dir/sub");
    r.env.write("dir/sub/deep", "deep");
    r.wait_synced(d, "created files");

    r.env.write("top.txt", "modified, and longer than before");
    r.env.write("dir/sub/deep", "DEEP"); // same size
    r.wait_synced(d, "modified files");

    fs::remove_file(r.env.src_path("new.txt")).unwrap();
    fs::remove_dir_all(r.env.src_path("gone")).unwrap();
    r.wait_synced(d, "deletions");
    assert!(!r.has(b"gone/inner"), "a deleted dir is still there");

    fs::rename(r.env.src_path("dir"), r.env.src_path("renamed dir")).unwrap();
    r.wait_synced(d, "renamed directory");
    assert!(r.has(b"renamed dir/sub/deep") && !r.has(b"dir"));

    for name in [
        &b"with space"[..],
        b"line\nbreak",
        b"latin1-\xe9\xff",
        b"-dash",
    ] {
        r.env.write(name, name);
    }
    r.env.mkdir_p(b"odd \xfe dir");
    r.env.write(b"odd \xfe dir/x\ny", "x");
    r.wait_synced(d, "awkward names");
    assert!(r.has(b"line\nbreak") && r.has(b"latin1-\xe9\xff"));
    fs::remove_file(r.env.src_path(b"line\nbreak")).unwrap();
    fs::remove_dir_all(r.env.src_path(b"odd \xfe dir")).unwrap();
    r.wait_synced(d, "awkward names removed");
}

fn seed(r: &Remote) {
    r.env.write("top.txt", "top");
    r.env.mkdir_p("gone");
    r.env.write("gone/inner", "inner");
    std::os::unix::fs::symlink("top.txt", r.env.src_path("link")).unwrap();
}

#[test]
fn rsync_daemon_module_is_mirrored_live() {
    if !require_tool("rsync") {
        return;
    }
    let mut r = Remote::new();
    let work = tempfile::tempdir().unwrap();
    let rsyncd = Rsyncd::start(work.path(), &r.dir, "livesync");
    r.set_destination(&rsyncd.url(""));
    seed(&r);
    let mut d = r.daemon(None).start();
    exercise(&r, &mut d);
    let log = d.log();
    assert!(
        !log.contains("giving up"),
        "{}\n{}",
        d.context(),
        rsyncd.log_text()
    );
}

#[test]
fn rsync_daemon_subdirectory_of_a_module() {
    if !require_tool("rsync") {
        return;
    }
    // -D rsync://host:port/module/sub/ : the sub dir must exist on the
    // daemon side (rsync creates only the last component).
    let mut r = Remote::new();
    let module_root = r.env.root.join("module");
    fs::create_dir(&module_root).unwrap();
    fs::remove_dir(&r.dir).unwrap();
    r.dir = module_root.join("sub");
    let work = tempfile::tempdir().unwrap();
    let rsyncd = Rsyncd::start(work.path(), &module_root, "m");
    r.set_destination(&rsyncd.url("sub"));
    r.env.write("a", "a");
    let mut d = r.daemon(None).start();
    r.wait_synced(&mut d, "initial sync into module/sub");
    r.env.write("b", "b");
    r.wait_synced(&mut d, "a new file in module/sub");
}

/// The daemon goes away while changes happen: the batch fails, is retried
/// with backoff, and arrives once the daemon is back.
#[test]
fn rsync_daemon_down_and_back_converges() {
    if !require_tool("rsync") {
        return;
    }
    let mut r = Remote::new();
    let work = tempfile::tempdir().unwrap();
    let mut rsyncd = Rsyncd::start(work.path(), &r.dir, "livesync");
    r.set_destination(&rsyncd.url(""));
    r.env.write("before", "1");
    let mut d = r.daemon(None).start();
    d.wait_live_in(&r.env, &r.dir, T);

    rsyncd.stop();
    r.env.write("while-down", "made while the daemon was down");
    r.env.write("before", "changed while down");
    d.wait_for_log(T, "failed (try 1)");
    // Still failing on the next try: nothing listens.
    d.wait_for_log(T, "failed (try 2)");
    assert!(r.diff().is_some(), "synced although the daemon was down");

    rsyncd.restart();
    r.wait_synced(&mut d, "the retried batch after the daemon came back");
    d.assert_running();
    let log = d.log();
    assert!(
        log.lines()
            .any(|l| l.contains("failed (try 1)") && l.contains("rsync")),
        "no failure line naming rsync\n{}",
        d.context()
    );
}

fn sshd_available() -> bool {
    if Path::new(SSHD).is_file() {
        return require_tool("ssh") && require_tool("ssh-keygen") && require_tool("rsync");
    }
    if in_ci() {
        panic!("{SSHD} is missing (install openssh-server) and CI=true: refusing to skip");
    }
    eprintln!("SKIPPED: {SSHD} is missing");
    false
}

#[test]
fn rsync_over_ssh_is_mirrored_live() {
    if !sshd_available() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (r, sshd) = Remote::over_ssh(work.path());
    seed(&r);
    let mut d = r.daemon(Some(sshd.ssh_command())).start();
    exercise(&r, &mut d);
    assert!(!d.log().contains("giving up"), "{}", d.context());
}

/// sshd goes away while files change: rsync (over ssh) fails, the batch is
/// retried, and it arrives once sshd is back.
#[test]
fn rsync_over_ssh_down_and_back_converges() {
    if !sshd_available() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (r, mut sshd) = Remote::over_ssh(work.path());
    r.env.write("before", "1");
    let mut d = r.daemon(Some(sshd.ssh_command())).start();
    d.wait_live_in(&r.env, &r.dir, T);

    sshd.stop();
    r.env.write("while-down", "made while sshd was down");
    d.wait_for_log(T, "failed (try 2)");
    assert!(r.diff().is_some(), "synced although sshd was down");

    sshd.restart();
    r.wait_synced(&mut d, "the retried batch after sshd came back");
}

/// RSYNC_RSH is what decides where ssh goes: pointed at a closed port, the
/// sync must fail (and be retried), not silently succeed — which shows the
/// passing test above really went through the test's sshd.
#[test]
fn rsync_over_ssh_to_a_closed_port_fails_and_retries() {
    if !sshd_available() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (r, _sshd) = Remote::over_ssh(work.path());
    r.env.write("f", "f");
    // A port nothing listens on.
    let closed = servers::free_port();
    let rsh = format!(
        "ssh -p {closed} -o BatchMode=yes -o ConnectTimeout=5 -o StrictHostKeyChecking=no \
         -o UserKnownHostsFile=/dev/null"
    );
    let mut d = r.daemon(Some(rsh)).start();
    d.wait_for_log(T, "failed (try 1)");
    assert!(!r.has(b"f"), "synced through a closed port?");
}

/// Handler arguments after `--` can carry `-e` too (clsync's way), with
/// `%RSYNC-ARGS%` standing for the default arguments.
#[test]
fn rsync_over_ssh_with_e_in_the_handler_arguments() {
    if !sshd_available() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (r, sshd) = Remote::over_ssh(work.path());
    r.env.write("x y", "over ssh with -e");
    let e = sshd.ssh_command();
    let args = [
        "--",
        "-e",
        e.as_str(),
        "%RSYNC-ARGS%",
        "%watch-dir%/",
        "%destination-dir%/",
    ];
    let mut d = r.daemon(None).args(args).start();
    r.wait_synced(&mut d, "initial sync with -e");
    r.env.write(b"z\xff", "second");
    r.wait_synced(&mut d, "a live change with -e");
}

/// A pseudo-terminal whose slave becomes the controlling terminal (and
/// stdin) of a command, as when livesync is started from a shell. The
/// master stays open while this lives.
struct Pty {
    _master: std::os::fd::OwnedFd,
    slave: std::ffi::CString,
}

impl Pty {
    fn open() -> Pty {
        use std::os::fd::FromRawFd;
        // SAFETY: plain libc calls on a descriptor we own.
        unsafe {
            let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
            assert!(m >= 0, "posix_openpt: {}", std::io::Error::last_os_error());
            let master = std::os::fd::OwnedFd::from_raw_fd(m);
            assert_eq!(libc::grantpt(m), 0, "grantpt");
            assert_eq!(libc::unlockpt(m), 0, "unlockpt");
            #[cfg(target_os = "linux")]
            let slave = {
                let mut name = [0 as libc::c_char; 128];
                assert_eq!(libc::ptsname_r(m, name.as_mut_ptr(), name.len()), 0);
                std::ffi::CStr::from_ptr(name.as_ptr()).to_owned()
            };
            // Elsewhere only the static-buffer form: this is the one test
            // that opens a terminal.
            #[cfg(not(target_os = "linux"))]
            let slave = {
                let name = libc::ptsname(m);
                assert!(!name.is_null(), "ptsname");
                std::ffi::CStr::from_ptr(name).to_owned()
            };
            Pty {
                _master: master,
                slave,
            }
        }
    }

    /// Makes the terminal `cmd`'s controlling terminal and stdin.
    fn attach(&self, cmd: &mut std::process::Command) {
        use std::os::unix::process::CommandExt;
        let slave = self.slave.clone();
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let fd = libc::open(slave.as_ptr(), libc::O_RDWR);
                if fd < 0 || libc::ioctl(fd, libc::TIOCSCTTY as _, 0) < 0 || libc::dup2(fd, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

/// The `retrying in X s` delays logged so far, in order.
fn retry_delays(log: &str) -> Vec<f64> {
    log.lines()
        .filter_map(|l| l.split("retrying in ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect()
}

/// rsync over ssh to a real sshd that will not let us in, the way a new
/// deployment often starts: the cause is named in one line, the status
/// says the handler fails, retries back off, and one SIGTERM ends livesync.
fn no_usable_key(on_pty: bool, ssh_opts: &str, cause: &str) {
    if !sshd_available() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (r, sshd) = Remote::over_ssh(work.path());
    r.env.write("f", "f");
    let status = r.env.outside_path("status");
    // Only a key that does not exist: nothing sshd accepts.
    let rsh = format!(
        "ssh -p {} -o IdentitiesOnly=yes -i {} -o UserKnownHostsFile=/dev/null {ssh_opts}",
        sshd.port,
        work.path().join("no-such-key").display()
    );
    let pty = on_pty.then(Pty::open);
    let mut d = r
        .daemon(Some(rsh))
        .arg("--status-file")
        .arg(&status)
        .env_remove("SSH_AUTH_SOCK")
        .prepare(|cmd| {
            if let Some(p) = &pty {
                p.attach(cmd);
            }
        })
        .start();
    d.wait_for_log(T, cause);
    let log = d.log();
    let line = log.lines().find(|l| l.contains(cause)).unwrap_or_default();
    assert!(
        line.contains("sync of 1 path failed (try 1): rsync exited with code 255: "),
        "one line says what failed and why: {line}\n{}",
        d.context()
    );
    d.wait_until(T, "status says the handler fails", || {
        std::fs::read_to_string(&status).unwrap_or_default() == "synchandler error\n"
    });
    // Retries back off: 0.5, 1, 2, 4, 8 s.
    d.wait_for_log(T, "failed (try 5)");
    let delays = retry_delays(&d.log());
    assert!(
        delays.windows(2).all(|w| w[1] > w[0]) && delays.len() >= 5,
        "{delays:?}\n{}",
        d.context()
    );
    assert!(!r.has(b"f"));
    // One SIGTERM ends it now, not after the 8 s backoff: the last try
    // fails at once, and the exit says what was left.
    let st = d.signal_and_wait(Signal::SIGTERM, secs(5.0));
    assert!(
        st.is_some(),
        "one SIGTERM did not end livesync\n{}",
        d.context()
    );
    assert_eq!(st.and_then(|s| s.code()), Some(1), "{}", d.context());
    assert!(
        d.log().contains("the last sync before exiting failed")
            && d.log().contains("1 op(s) not synced"),
        "{}",
        d.context()
    );
}

#[test]
fn rsync_over_ssh_without_a_usable_key_on_a_terminal_names_the_cause() {
    // ssh would ask on the terminal whether to trust the unknown host key.
    no_usable_key(true, "", "ssh does not know the destination's host key");
}

#[test]
fn rsync_over_ssh_without_a_usable_key_and_no_terminal_names_the_cause() {
    no_usable_key(false, "-o StrictHostKeyChecking=no", "ssh could not log in");
}

/// Without RSYNC_RSH, rsync's ssh runs in batch mode (it never asks); a
/// RSYNC_RSH of the user's is left as it is.
#[test]
fn rsync_gets_batch_mode_ssh_unless_rsync_rsh_is_set() {
    for (given, want) in [
        (None, "ssh -o BatchMode=yes"),
        (Some("ssh -p 2222 -i /k"), "ssh -p 2222 -i /k"),
    ] {
        let env = TestEnv::new();
        env.write("a", "a");
        let seen = env.outside_path("rsync_rsh");
        // A stand-in for rsync that records what it would give ssh.
        let h = script(
            &env,
            "rsync.sh",
            &format!("printf '%s' \"$RSYNC_RSH\" > '{}'", seen.display()),
        );
        let b = Daemon::builder(&env)
            .args(["-M", "rsyncdirect", "-S"])
            .arg(&h)
            .args(["-t0", "-w0"]);
        let mut d = match given {
            Some(rsh) => b.env("RSYNC_RSH", rsh),
            None => b.env_remove("RSYNC_RSH"),
        }
        .start();
        d.wait_until(T, "the handler ran", || seen.exists());
        d.wait_until(T, "what it saw", || {
            fs::read_to_string(&seen).unwrap_or_default() == want
        });
        d.stop();
    }
}
