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

    fn start(&self, args: &[&str], rsync_rsh: Option<String>) -> Daemon {
        let mut argv = vec!["-M", "rsyncdirect", "-t0", "-w0"];
        argv.extend_from_slice(args);
        Daemon::start_prepared(&self.env, &argv, Locking::Shared, |cmd| {
            match rsync_rsh {
                Some(rsh) => cmd.env("RSYNC_RSH", rsh),
                None => cmd.env_remove("RSYNC_RSH"),
            };
        })
    }

    fn wait_synced(&self, d: &mut Daemon, what: &str) {
        d.wait_until(T, what, || self.diff());
    }

    /// Like `Daemon::wait_live`, for a remote destination.
    fn wait_live(&self, d: &mut Daemon) {
        const SENTINEL: &[u8] = b".livesync-test-live";
        self.wait_synced(d, "initial sync");
        self.env.write(SENTINEL, "s");
        d.wait_until(T, "sentinel arrives", || self.has(SENTINEL));
        fs::remove_file(self.env.src_path(SENTINEL)).unwrap();
        d.wait_until(T, "sentinel removal arrives", || !self.has(SENTINEL));
    }
}

/// The same life of a tree whatever the transport: initial sync, create,
/// modify, delete, rename a directory, awkward names.
fn exercise(r: &Remote, d: &mut Daemon) {
    r.wait_live(d);

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
    let mut d = r.start(&[], None);
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
    let mut d = r.start(&[], None);
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
    let mut d = r.start(&[], None);
    r.wait_live(&mut d);

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
    let mut r = Remote::new();
    let work = tempfile::tempdir().unwrap();
    let sshd = Sshd::start(work.path(), &[]);
    let dest = format!("{}:{}", sshd.host(), r.dir.display());
    r.set_destination(&dest);
    seed(&r);
    let mut d = r.start(&[], Some(sshd.ssh_command()));
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
    let mut r = Remote::new();
    let work = tempfile::tempdir().unwrap();
    let mut sshd = Sshd::start(work.path(), &[]);
    let dest = format!("{}:{}", sshd.host(), r.dir.display());
    r.set_destination(&dest);
    r.env.write("before", "1");
    let mut d = r.start(&[], Some(sshd.ssh_command()));
    r.wait_live(&mut d);

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
    let mut r = Remote::new();
    let work = tempfile::tempdir().unwrap();
    let sshd = Sshd::start(work.path(), &[]);
    let dest = format!("{}:{}", sshd.host(), r.dir.display());
    r.set_destination(&dest);
    r.env.write("f", "f");
    // A port nothing listens on.
    let closed = servers::free_port();
    let rsh = format!(
        "ssh -p {closed} -o BatchMode=yes -o ConnectTimeout=5 -o StrictHostKeyChecking=no \
         -o UserKnownHostsFile=/dev/null"
    );
    let mut d = r.start(&[], Some(rsh));
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
    let mut r = Remote::new();
    let work = tempfile::tempdir().unwrap();
    let sshd = Sshd::start(work.path(), &[]);
    let dest = format!("{}:{}", sshd.host(), r.dir.display());
    r.set_destination(&dest);
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
    let mut d = r.start(&args, None);
    r.wait_synced(&mut d, "initial sync with -e");
    r.env.write(b"z\xff", "second");
    r.wait_synced(&mut d, "a live change with -e");
}
