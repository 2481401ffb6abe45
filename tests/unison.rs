//! `-M unison`, through the binary, with the real unison: to a local dir and
//! over ssh to a real sshd on loopback (`ssh://user@127.0.0.1//path`, ssh
//! options via unison's own `-sshargs` after `--`). Each test compares the
//! destination with the source byte for byte (`tree_diff`), and checks that
//! unison's state never lands in the user's `~/.unison`.

mod common;
#[path = "common/servers.rs"]
mod servers;

use common::*;
use servers::{Sshd, SSHD};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

struct Setup {
    env: TestEnv,
    /// Where the files arrive.
    dir: PathBuf,
    /// HOME of the daemon: must stay without `.unison`.
    home: PathBuf,
    /// TMPDIR of the daemon: where its private unison state dir goes.
    tmp: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let env = TestEnv::new();
        let dir = env.dst.clone();
        let home = env.root.join("home");
        let tmp = env.root.join("tmp");
        fs::create_dir(&home).unwrap();
        fs::create_dir(&tmp).unwrap();
        Setup {
            env,
            dir,
            home,
            tmp,
        }
    }

    fn diff(&self) -> Option<String> {
        tree_diff(&self.env.src, &self.dir)
    }

    fn has(&self, rel_path: &[u8]) -> bool {
        fs::symlink_metadata(self.dir.join(rel(rel_path))).is_ok()
    }

    /// `livesync -M unison` with this setup's HOME and TMPDIR; the test
    /// adds its arguments.
    fn daemon(&self) -> DaemonBuilder {
        Daemon::builder(&self.env)
            .args(["-M", "unison", "-t0", "-w0"])
            .env("HOME", &self.home)
            .env("TMPDIR", &self.tmp)
            .env_remove("UNISON")
    }

    fn wait_synced(&self, d: &mut Daemon, what: &str) {
        d.wait_until(T, what, || self.diff());
    }

    fn assert_home_untouched(&self) {
        assert!(
            !self.home.join(".unison").exists(),
            "unison wrote into HOME/.unison"
        );
    }
}

fn seed(s: &Setup) {
    s.env.write("top.txt", "top");
    s.env.mkdir_p("gone");
    s.env.write("gone/inner", "inner");
    std::os::unix::fs::symlink("top.txt", s.env.src_path("link")).unwrap();
    // Stale at the destination only: a mirror removes it.
    fs::write(s.dir.join("stale"), "not in the source").unwrap();
}

/// Initial sync, create, modify (also same size), delete, directory
/// rename, awkward names.
fn exercise(s: &Setup, d: &mut Daemon) {
    d.wait_live_in(&s.env, &s.dir, T);
    assert!(!s.has(b"stale"), "the stale destination file survived");

    s.env.write("new.txt", "created");
    s.env.mkdir_p("dir/sub");
    s.env.write("dir/sub/deep", "deep");
    s.wait_synced(d, "created files");

    s.env.write("top.txt", "modified, and longer than before");
    s.env.write("dir/sub/deep", "DEEP");
    s.wait_synced(d, "modified files");

    fs::remove_file(s.env.src_path("new.txt")).unwrap();
    fs::remove_dir_all(s.env.src_path("gone")).unwrap();
    s.wait_synced(d, "deletions");

    fs::rename(s.env.src_path("dir"), s.env.src_path("renamed dir")).unwrap();
    s.wait_synced(d, "renamed directory");
    assert!(s.has(b"renamed dir/sub/deep") && !s.has(b"dir"));

    for name in [
        &b"with space"[..],
        b"line\nbreak",
        b"latin1-\xe9\xff",
        b"-dash",
    ] {
        s.env.write(name, name);
    }
    s.env.mkdir_p(b"odd \xfe dir");
    s.env.write(b"odd \xfe dir/x\ny", "x");
    s.wait_synced(d, "awkward names");
    fs::remove_file(s.env.src_path(b"line\nbreak")).unwrap();
    fs::rename(
        s.env.src_path(b"odd \xfe dir"),
        s.env.src_path(b"odd \xfd renamed"),
    )
    .unwrap();
    s.wait_synced(d, "awkward names removed and renamed");
    s.assert_home_untouched();
}

/// unison, ssh, ssh-keygen and sshd are installed (skip or, under CI, fail).
fn unison_and_sshd() -> bool {
    if !require_tool("unison") || !require_tool("ssh") || !require_tool("ssh-keygen") {
        return false;
    }
    if Path::new(SSHD).is_file() {
        return true;
    }
    if in_ci() {
        panic!("{SSHD} is missing (install openssh-server) and CI=true: refusing to skip");
    }
    eprintln!("SKIPPED: {SSHD} is missing");
    false
}

#[test]
fn unison_to_a_local_dir_is_a_live_mirror() {
    if !require_tool("unison") {
        return;
    }
    let s = Setup::new();
    seed(&s);
    let mut d = s.daemon().start();
    exercise(&s, &mut d);
    // unison kept its archives in one private 0700 dir under TMPDIR …
    let state: Vec<PathBuf> = fs::read_dir(&s.tmp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("livesync-unison-"))
        .collect();
    assert_eq!(state.len(), 1, "{state:?}");
    let meta = fs::symlink_metadata(&state[0]).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o700);
    assert!(fs::read_dir(&state[0]).unwrap().next().is_some());
    // … which goes away with livesync.
    let st = d.stop();
    assert!(st.is_some(), "livesync did not stop on SIGTERM");
    assert!(
        !state[0].exists(),
        "the unison state dir outlived livesync ({st:?})"
    );
}

/// A change made at the destination is undone on the path's next sync: the
/// default direction is the watch dir's (`-force`).
#[test]
fn unison_destination_changes_are_overwritten_by_default() {
    if !require_tool("unison") {
        return;
    }
    let s = Setup::new();
    s.env.write("f", "source");
    let mut d = s.daemon().start();
    d.wait_live_in(&s.env, &s.dir, T);
    fs::write(s.dir.join("f"), "edited at the destination").unwrap();
    s.env.write("f", "source, edited");
    s.wait_synced(&mut d, "the source's version wins");
}

/// With `-prefer` in the handler arguments livesync adds no `-force`:
/// unison runs two-way, so a file made at the destination comes back to the
/// source when its path is synced (here by a full resync, SIGUSR2), while
/// the default mirror would have deleted it.
#[test]
fn unison_two_way_when_the_user_picks_the_direction() {
    if !require_tool("unison") {
        return;
    }
    let s = Setup::new();
    s.env.mkdir_p("d");
    let mut d = s.daemon().args(["--", "-prefer", "%watch-dir%"]).start();
    d.wait_live_in(&s.env, &s.dir, T);
    fs::write(s.dir.join("d/from-dst"), "made at the destination").unwrap();
    d.signal(Signal::SIGUSR2);
    d.wait_until(T, "the destination's file comes back", || {
        s.env.src_path("d/from-dst").exists()
    });
    s.wait_synced(&mut d, "both sides equal");
}

/// A test sshd (files in `work`) whose unison server keeps its archives
/// in the directory returned, not in ~/.unison.
fn unison_sshd(work: &Path) -> (Sshd, PathBuf) {
    let remote_state = work.join("remote-unison");
    fs::create_dir(&remote_state).unwrap();
    (
        Sshd::start(work, &[("UNISON", &remote_state)]),
        remote_state,
    )
}

#[test]
fn unison_over_ssh_is_a_live_mirror() {
    if !unison_and_sshd() {
        return;
    }
    let mut s = Setup::new();
    let work = tempfile::tempdir().unwrap();
    let (sshd, remote_state) = unison_sshd(work.path());
    seed(&s);
    s.env.dst = PathBuf::from(format!("ssh://{}/{}", sshd.host(), s.dir.display()));
    let mut d = s
        .daemon()
        .args(["--", "-sshargs", &sshd.ssh_args()])
        .start();
    exercise(&s, &mut d);
    assert!(
        fs::read_dir(&remote_state).unwrap().next().is_some(),
        "the remote unison kept no state where sshd's SetEnv put it: did it run through sshd?"
    );
}

/// The ssh server goes away while files change: unison fails, the batch is
/// retried with backoff, and everything arrives once sshd is back.
#[test]
fn unison_over_ssh_down_and_back_converges() {
    if !unison_and_sshd() {
        return;
    }
    let mut s = Setup::new();
    let work = tempfile::tempdir().unwrap();
    let (mut sshd, _) = unison_sshd(work.path());
    s.env.write("before", "1");
    s.env.dst = PathBuf::from(format!("ssh://{}/{}", sshd.host(), s.dir.display()));
    let mut d = s
        .daemon()
        .args(["--", "-sshargs", &sshd.ssh_args()])
        .start();
    d.wait_live_in(&s.env, &s.dir, T);

    sshd.stop();
    s.env.write("while-down", "made while sshd was down");
    s.env.write("before", "changed while down");
    d.wait_for_log(T, "failed (try 2)");
    assert!(s.diff().is_some(), "synced although sshd was down");

    sshd.restart();
    s.wait_synced(&mut d, "the retried batch after sshd came back");
}

/// rsync's `host:path` spelling works for unison too.
#[test]
fn unison_over_ssh_with_host_colon_path() {
    if !unison_and_sshd() {
        return;
    }
    let mut s = Setup::new();
    let work = tempfile::tempdir().unwrap();
    let (sshd, _) = unison_sshd(work.path());
    s.env.write("a b", "x");
    s.env.dst = PathBuf::from(format!("{}:{}", sshd.host(), s.dir.display()));
    let mut d = s
        .daemon()
        .args(["--", "-sshargs", &sshd.ssh_args()])
        .start();
    s.wait_synced(&mut d, "initial sync over host:path");
    s.env.write(b"c\xff", "y");
    s.wait_synced(&mut d, "a live change over host:path");
}

/// A failing unison (destination unreachable) is retried, not dropped.
#[test]
fn unison_failure_is_retried() {
    if !require_tool("unison") {
        return;
    }
    let mut s = Setup::new();
    s.env.write("f", "f");
    let closed = servers::free_port();
    s.env.dst = PathBuf::from(format!("ssh://127.0.0.1/{}", s.dir.display()));
    let sshargs = format!("-p {closed} -o BatchMode=yes -o ConnectTimeout=5");
    let mut d = s.daemon().args(["--", "-sshargs", &sshargs]).start();
    d.wait_for_log(T, "failed (try 2)");
    assert!(
        d.log().contains("unison exited with code"),
        "{}",
        d.context()
    );
    assert!(!s.has(b"f"));
}
