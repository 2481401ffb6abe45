//! Shared helpers for the integration tests: temporary source/destination
//! trees (`TestEnv`), the real `livesync` binary (or any command that execs
//! it) as a child that is always killed (`Daemon`, started through a
//! `DaemonBuilder` that takes any command line), signals sent with `nix`
//! (`kill`, `Daemon::signal`), condition polling with deadlines (`wait_until`,
//! `assert_stays`), a byte-exact tree comparison (`tree_diff`) and tool
//! checks (`require_tool`, `require_root`).
//!
//! These helpers never sleep to "give the daemon time": every wait polls a
//! condition against a deadline and, on timeout, panics with what was still
//! wrong plus the daemon's log. They never follow symlinks and never pass file
//! names through a shell. They must not contain test logic of their own.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub use nix::sys::signal::Signal;

/// Sends `sig` to process `pid` (a child the test started).
pub fn kill(pid: i32, sig: Signal) -> nix::Result<()> {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig)
}

/// Path of the daemon binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_livesync");

/// Lock file that orders daemon tests against the test that changes global
/// inotify sysctls: daemons hold it shared, tests/overflow.rs exclusively.
pub const LOCK_FILE: &str = "/tmp/livesync-tests.lock";

/// How often conditions are polled.
pub const POLL: Duration = Duration::from_millis(20);

/// Shorthand for a number of seconds (fractions allowed).
pub fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// The event backend the suite runs on: `LIVESYNC_TEST_MONITOR` (as
/// `--monitor` spells it), or None for the platform's default. scripts/test
/// runs the integration tests once per Linux backend this way.
pub fn test_monitor() -> Option<String> {
    std::env::var("LIVESYNC_TEST_MONITOR")
        .ok()
        .filter(|m| !m.is_empty())
}

/// The options that put the daemon on the backend under test:
/// `--monitor $LIVESYNC_TEST_MONITOR`, and `--poll-interval
/// $LIVESYNC_TEST_POLL_INTERVAL` (default 0.1 s for `poll`, so the tests'
/// deadlines hold). Empty when no backend is forced.
pub fn backend_args() -> Vec<OsString> {
    let Some(monitor) = test_monitor() else {
        return Vec::new();
    };
    let mut args: Vec<OsString> = vec!["--monitor".into(), monitor.clone().into()];
    let interval = std::env::var("LIVESYNC_TEST_POLL_INTERVAL").ok();
    if let Some(i) = interval.or_else(|| (monitor == "poll").then(|| "0.1".to_string())) {
        args.extend(["--poll-interval".into(), i.into()]);
    }
    args
}

/// True when running in CI (`CI=true`): missing prerequisites fail instead of skipping.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Whether `tool` is an executable on `PATH`. When it is missing the test is
/// skipped (returns false, with a note on stderr), except under `CI=true`,
/// where a missing tool is a failure.
pub fn require_tool(tool: &str) -> bool {
    if which(tool).is_some() {
        return true;
    }
    if in_ci() {
        panic!("required tool `{tool}` is not on PATH (CI=true: refusing to skip)");
    }
    eprintln!("SKIPPED: `{tool}` is not on PATH");
    false
}

/// Whether the tests run as root; same skip/fail policy as `require_tool`.
pub fn require_root(why: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if in_ci() {
        panic!("this test needs root ({why}) and CI=true: refusing to skip");
    }
    eprintln!("SKIPPED: needs root ({why})");
    false
}

/// The full path of an executable `tool` found on `PATH`.
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// A relative path given as bytes, turned into a `Path` without loss.
pub fn rel(bytes: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(bytes))
}

/// Bytes shown with escapes (`\n`, `\xff`), for messages.
pub fn show(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

// ---------------------------------------------------------------------------
// TestEnv
// ---------------------------------------------------------------------------

/// A temporary root holding `src/` (watched), `dst/` (destination) and
/// `outside/` (a sibling for moving things into and out of the tree). All
/// paths are canonical, so the daemon sees the same spelling as the test.
pub struct TestEnv {
    _tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub src: PathBuf,
    pub dst: PathBuf,
    pub outside: PathBuf,
}

impl TestEnv {
    pub fn new() -> TestEnv {
        let tmp = tempfile::Builder::new()
            .prefix("livesync-test-")
            .tempdir()
            .expect("create temp dir");
        let root = tmp.path().canonicalize().expect("canonicalise temp dir");
        let env = TestEnv {
            src: root.join("src"),
            dst: root.join("dst"),
            outside: root.join("outside"),
            root,
            _tmp: tmp,
        };
        for d in [&env.src, &env.dst, &env.outside] {
            fs::create_dir(d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
        }
        env
    }

    /// Absolute path of `rel` under the source tree.
    pub fn src_path(&self, rel_path: impl AsRef<[u8]>) -> PathBuf {
        self.src.join(rel(rel_path.as_ref()))
    }

    /// Absolute path of `rel` under the destination tree.
    pub fn dst_path(&self, rel_path: impl AsRef<[u8]>) -> PathBuf {
        self.dst.join(rel(rel_path.as_ref()))
    }

    /// Absolute path of `rel` under the outside area.
    pub fn outside_path(&self, rel_path: impl AsRef<[u8]>) -> PathBuf {
        self.outside.join(rel(rel_path.as_ref()))
    }

    /// Writes a source file (parents must exist).
    pub fn write(&self, rel_path: impl AsRef<[u8]>, content: impl AsRef<[u8]>) {
        let p = self.src_path(rel_path);
        fs::write(&p, content).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    }

    /// `mkdir -p` in the source tree.
    pub fn mkdir_p(&self, rel_path: impl AsRef<[u8]>) {
        let p = self.src_path(rel_path);
        fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir -p {}: {e}", p.display()));
    }

    /// Whether something (anything, links not followed) exists at `rel` in the destination.
    pub fn dst_has(&self, rel_path: impl AsRef<[u8]>) -> bool {
        fs::symlink_metadata(self.dst_path(rel_path)).is_ok()
    }

    /// Contents of a destination file, if it is a readable regular file.
    pub fn dst_read(&self, rel_path: impl AsRef<[u8]>) -> Option<Vec<u8>> {
        let p = self.dst_path(rel_path);
        let md = fs::symlink_metadata(&p).ok()?;
        if !md.is_file() {
            return None;
        }
        fs::read(&p).ok()
    }

    /// `tree_diff(src, dst)`.
    pub fn diff(&self) -> Option<String> {
        tree_diff(&self.src, &self.dst)
    }
}

impl Default for TestEnv {
    fn default() -> Self {
        TestEnv::new()
    }
}

// ---------------------------------------------------------------------------
// Waiting
// ---------------------------------------------------------------------------

/// What a polled condition returns: `None` when satisfied, otherwise why not.
pub trait Pending {
    fn pending(self) -> Option<String>;
}

impl Pending for bool {
    fn pending(self) -> Option<String> {
        if self {
            None
        } else {
            Some("condition is still false".to_string())
        }
    }
}

/// `None` means done (this is what `tree_diff` returns when trees are equal).
impl Pending for Option<String> {
    fn pending(self) -> Option<String> {
        self
    }
}

/// Polls `cond` every `POLL` until it is satisfied or `timeout` has passed;
/// `Err` carries the last reason it was not.
pub fn poll_until<R: Pending>(
    timeout: Duration,
    mut cond: impl FnMut() -> R,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let reason = match cond().pending() {
            None => return Ok(()),
            Some(r) => r,
        };
        if Instant::now() >= deadline {
            return Err(reason);
        }
        thread::sleep(POLL);
    }
}

/// Like `poll_until`, but panics with `what` and the last reason on timeout.
pub fn wait_until<R: Pending>(timeout: Duration, what: &str, cond: impl FnMut() -> R) {
    if let Err(reason) = poll_until(timeout, cond) {
        panic!("timed out after {timeout:?} waiting for: {what}\n{reason}");
    }
}

/// Asserts that `cond` holds at every poll during `period` (a negative check
/// done by polling, e.g. "not synced before the delay window ends").
pub fn assert_stays(period: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    loop {
        assert!(cond(), "{what}: broken after {:?}", start.elapsed());
        if start.elapsed() >= period {
            return;
        }
        thread::sleep(POLL);
    }
}

// ---------------------------------------------------------------------------
// Daemon
// ---------------------------------------------------------------------------

/// Whether a daemon takes the shared test lock (see `LOCK_FILE`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Locking {
    /// Hold `LOCK_FILE` shared while running (the normal case).
    Shared,
    /// The caller already holds the lock exclusively (tests/overflow.rs).
    CallerHoldsExclusive,
}

/// The `livesync` binary running as `livesync -W src -D dst ARGS...`, with
/// stdout and stderr captured into one log buffer. Dropping it sends SIGTERM,
/// waits up to 5 s, then SIGKILLs.
pub struct Daemon {
    child: Option<Child>,
    log: Arc<Mutex<Vec<u8>>>,
    argv: Vec<OsString>,
    _lock: Option<File>,
}

/// Opens `LOCK_FILE` and takes `op` (`LOCK_SH`/`LOCK_EX`), blocking.
pub fn take_lock(op: libc::c_int) -> File {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o666)
        .open(LOCK_FILE)
        .unwrap_or_else(|e| panic!("open {LOCK_FILE}: {e}"));
    loop {
        let rc = unsafe { libc::flock(f.as_raw_fd(), op) };
        if rc == 0 {
            return f;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            panic!("flock {LOCK_FILE}: {err}");
        }
    }
}

fn spawn_reader(mut from: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) {
    thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => into
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend_from_slice(&buf[..n]),
            }
        }
    });
}

/// How a test starts a daemon: the command line, its environment, the test
/// lock and any adjustment of the command before it is spawned. Made by
/// [`Daemon::builder`] (`livesync -H /NULL/ -W SRC -D DST [backend]`, the
/// usual case), [`Daemon::bare`] (`livesync` and nothing else: the test
/// writes the whole command line) or [`Daemon::command`] (any program, such
/// as a wrapper like setpriv or an example's script that execs livesync).
/// Whatever it starts gets a death signal (it does not outlive the test
/// process), stdin `/dev/null`, and stdout and stderr captured into the
/// daemon's log.
pub struct DaemonBuilder {
    cmd: Command,
    locking: Locking,
}

impl DaemonBuilder {
    /// Appends one argument.
    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Self {
        self.cmd.arg(a);
        self
    }

    /// Appends arguments.
    pub fn args<S: AsRef<OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.cmd.args(args);
        self
    }

    /// Sets an environment variable of the daemon.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.cmd.env(key, value);
        self
    }

    /// Removes an environment variable from the daemon's environment.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.cmd.env_remove(key);
        self
    }

    /// Which test lock the daemon holds (shared unless told otherwise).
    pub fn locking(mut self, locking: Locking) -> Self {
        self.locking = locking;
        self
    }

    /// Lets `f` adjust the command (for example a `pre_exec` that enters a
    /// namespace, or a controlling terminal).
    pub fn prepare(mut self, f: impl FnOnce(&mut Command)) -> Self {
        f(&mut self.cmd);
        self
    }

    /// Spawns it.
    pub fn start(self) -> Daemon {
        let DaemonBuilder { mut cmd, locking } = self;
        let lock = match locking {
            Locking::Shared => Some(take_lock(libc::LOCK_SH)),
            Locking::CallerHoldsExclusive => None,
        };
        // If the test process dies without running Drop (killed by a
        // timeout), its daemons must not live on.
        // SAFETY: runs in the forked child before exec; prctl is
        // async-signal-safe.
        #[cfg(target_os = "linux")] // PR_SET_PDEATHSIG is Linux's
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(io::Error::from)
            });
        }
        let mut argv: Vec<OsString> = Vec::new();
        if cmd.get_program() != OsStr::new(BIN) {
            argv.push(cmd.get_program().to_os_string());
        }
        argv.extend(cmd.get_args().map(|a| a.to_os_string()));
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {argv:?}: {e}"));
        let log = Arc::new(Mutex::new(Vec::new()));
        spawn_reader(child.stdout.take().expect("piped stdout"), log.clone());
        spawn_reader(child.stderr.take().expect("piped stderr"), log.clone());
        Daemon {
            child: Some(child),
            log,
            argv,
            _lock: lock,
        }
    }
}

/// `livesync -H /NULL/ -W <src> [-D <dst>] [backend] [-d -d]`.
fn livesync_on(env: &TestEnv, dst: Option<&Path>) -> DaemonBuilder {
    // -H /NULL/: no config file of the host may leak into a test.
    let mut b = Daemon::bare().args(["-H", "/NULL/", "-W"]).arg(&env.src);
    if let Some(dst) = dst {
        b = b.arg("-D").arg(dst);
    }
    b = b.args(backend_args());
    if std::env::var_os("LIVESYNC_TEST_DEBUG").is_some() {
        b = b.args(["-d", "-d"]);
    }
    b
}

impl Daemon {
    /// Starts `livesync -H /NULL/ -W <src> -D <dst> [backend] ARGS...`
    /// holding the shared test lock.
    pub fn start<S: AsRef<OsStr>>(env: &TestEnv, args: &[S]) -> Daemon {
        Daemon::builder(env).args(args).start()
    }

    /// `livesync -H /NULL/ -W <src> -D <dst>`, the backend under test
    /// (`LIVESYNC_TEST_MONITOR`) and, with `LIVESYNC_TEST_DEBUG`, `-d -d`;
    /// the test adds its own arguments.
    pub fn builder(env: &TestEnv) -> DaemonBuilder {
        livesync_on(env, Some(&env.dst))
    }

    /// As [`Daemon::builder`], without `-D` (for the modes that have no
    /// destination directory, such as csync2).
    pub fn builder_without_destination(env: &TestEnv) -> DaemonBuilder {
        livesync_on(env, None)
    }

    /// The livesync binary with no argument yet.
    pub fn bare() -> DaemonBuilder {
        Daemon::command(Command::new(BIN))
    }

    /// `cmd` as it is: its own program and arguments (livesync, or a
    /// wrapper that execs it).
    pub fn command(cmd: Command) -> DaemonBuilder {
        DaemonBuilder {
            cmd,
            locking: Locking::Shared,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// Everything the daemon wrote so far (stdout and stderr interleaved).
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&self.log.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }

    /// The last `max` bytes of the log, for failure messages.
    pub fn log_tail(&self, max: usize) -> String {
        let log = self.log();
        if log.len() <= max {
            return log;
        }
        let mut start = log.len() - max;
        while !log.is_char_boundary(start) {
            start += 1;
        }
        format!("[... {start} bytes elided ...]\n{}", &log[start..])
    }

    /// Describes the command line and the log tail, for failure messages.
    pub fn context(&mut self) -> String {
        let status = match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(Some(st))) => format!("EXITED: {st}"),
            Some(Ok(None)) => "still running".to_string(),
            Some(Err(e)) => format!("unknown ({e})"),
            None => "stopped".to_string(),
        };
        let argv: Vec<String> = self.argv.iter().map(|a| show(a.as_bytes())).collect();
        format!(
            "daemon: livesync {}\nstatus: {status}\n--- daemon log (tail) ---\n{}\n--- end of log ---",
            argv.join(" "),
            self.log_tail(16 * 1024)
        )
    }

    /// Whether the daemon still runs (false once it has exited).
    pub fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Panics if the daemon has exited.
    pub fn assert_running(&mut self) {
        if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
            panic!("livesync exited unexpectedly ({st})\n{}", self.context());
        }
    }

    /// Polls `cond`; fails fast if the daemon dies; panics with its log on timeout.
    pub fn wait_until<R: Pending>(
        &mut self,
        timeout: Duration,
        what: &str,
        mut cond: impl FnMut() -> R,
    ) {
        let mut died = None;
        let res = poll_until(timeout, || {
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                died = Some(st);
                return None; // stop polling; reported below
            }
            cond().pending()
        });
        if let Some(st) = died {
            panic!(
                "livesync exited ({st}) while waiting for: {what}\n{}",
                self.context()
            );
        }
        if let Err(reason) = res {
            panic!(
                "timed out after {timeout:?} waiting for: {what}\n{reason}\n{}",
                self.context()
            );
        }
    }

    /// Waits until the destination equals the source (see `tree_diff`).
    pub fn wait_synced(&mut self, env: &TestEnv, timeout: Duration) {
        self.wait_synced_in(env, &env.dst.clone(), timeout);
    }

    /// Waits until `dir` equals the source: for a test whose `-D` is not a
    /// plain path (a remote spelling) or whose files arrive elsewhere.
    pub fn wait_synced_in(&mut self, env: &TestEnv, dir: &Path, timeout: Duration) {
        self.wait_until(timeout, "destination equal to source", || {
            tree_diff(&env.src, dir)
        });
    }

    /// Waits until the daemon is live: the destination equals the source (the
    /// initial sync is done) and a sentinel file created in the source then
    /// arrives and its removal arrives too (so the daemon is watching; with
    /// an empty source, "equal" alone would hold before it even started).
    pub fn wait_live(&mut self, env: &TestEnv, timeout: Duration) {
        self.wait_live_in(env, &env.dst.clone(), timeout);
    }

    /// As [`Daemon::wait_live`], with the files arriving in `dir`.
    pub fn wait_live_in(&mut self, env: &TestEnv, dir: &Path, timeout: Duration) {
        const SENTINEL: &str = ".livesync-test-live";
        let arrived = || fs::symlink_metadata(dir.join(SENTINEL)).is_ok();
        self.wait_synced_in(env, dir, timeout);
        env.write(SENTINEL, "sentinel");
        self.wait_until(timeout, "sentinel file synced", arrived);
        fs::remove_file(env.src_path(SENTINEL)).unwrap_or_else(|e| panic!("remove sentinel: {e}"));
        self.wait_until(timeout, "sentinel removal synced", || !arrived());
        self.wait_synced_in(env, dir, timeout);
    }

    /// Like `wait_synced` but returns the failure text instead of panicking.
    pub fn try_wait_synced(&mut self, env: &TestEnv, timeout: Duration) -> Result<(), String> {
        let mut died = None;
        let res = poll_until(timeout, || {
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                died = Some(st);
                return None;
            }
            env.diff()
        });
        if let Some(st) = died {
            return Err(format!("livesync exited ({st})\n{}", self.context()));
        }
        res.map_err(|reason| {
            format!(
                "not synced after {timeout:?}:\n{reason}\n{}",
                self.context()
            )
        })
    }

    /// Waits until the log contains `needle`.
    pub fn wait_for_log(&mut self, timeout: Duration, needle: &str) {
        let log = self.log.clone();
        let what = format!("log line containing {needle:?}");
        self.wait_until(timeout, &what, || {
            String::from_utf8_lossy(&log.lock().unwrap_or_else(|p| p.into_inner())).contains(needle)
        });
    }

    /// Sends `sig` to the daemon; panics (with its log) if that fails.
    pub fn signal(&mut self, sig: Signal) {
        if let Err(e) = kill(self.pid(), sig) {
            panic!("kill {sig}: {e}\n{}", self.context());
        }
    }

    /// Sends `sig` and waits (up to `timeout`) for the exit status.
    pub fn signal_and_wait(&mut self, sig: Signal, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        let _ = kill(child.id() as i32, sig);
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(POLL);
        }
    }

    /// Waits (polling) for the daemon to exit on its own; panics on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let mut status = None;
        let res = poll_until(timeout, || {
            status = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            status.is_some()
        });
        match (res, status) {
            (Ok(()), Some(st)) => st,
            _ => panic!(
                "livesync did not exit within {timeout:?}\n{}",
                self.context()
            ),
        }
    }

    /// SIGTERM, wait up to 5 s, SIGKILL; returns the exit status of a clean stop.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let st = self.signal_and_wait(Signal::SIGTERM, secs(5.0));
        if let Some(mut child) = self.child.take() {
            if st.is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        st
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------
// Tree comparison
// ---------------------------------------------------------------------------

const MAX_REPORTED: usize = 25;

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum EntryKind {
    File,
    Dir,
    Symlink,
    Other,
}

fn kind_of(md: &fs::Metadata) -> EntryKind {
    let ft = md.file_type();
    if ft.is_symlink() {
        EntryKind::Symlink
    } else if ft.is_dir() {
        EntryKind::Dir
    } else if ft.is_file() {
        EntryKind::File
    } else {
        EntryKind::Other
    }
}

fn names(dir: &Path) -> io::Result<BTreeSet<Vec<u8>>> {
    let mut out = BTreeSet::new();
    for e in fs::read_dir(dir)? {
        out.insert(e?.file_name().as_bytes().to_vec());
    }
    Ok(out)
}

fn join_rel(parent: &[u8], name: &[u8]) -> Vec<u8> {
    if parent.is_empty() {
        name.to_vec()
    } else {
        [parent, b"/", name].concat()
    }
}

/// Compares two trees without following symlinks: entry names (as bytes),
/// types, permission bits (not for symlinks, not for the two roots), sizes
/// and contents of files, targets of symlinks. `None` when equal; otherwise a
/// listing of (up to 25) differences, `a` is called "src" and `b` "dst".
pub fn tree_diff(a: &Path, b: &Path) -> Option<String> {
    let mut out = Vec::new();
    let mut count = 0usize;
    diff_dir(a, b, b"", &mut out, &mut count);
    if count == 0 {
        return None;
    }
    let mut s = format!(
        "{count} difference(s) between src {} and dst {}:\n",
        a.display(),
        b.display()
    );
    for line in &out {
        s.push_str("  ");
        s.push_str(line);
        s.push('\n');
    }
    if count > out.len() {
        s.push_str(&format!("  ... and {} more\n", count - out.len()));
    }
    Some(s)
}

fn diff_dir(a_root: &Path, b_root: &Path, dir: &[u8], out: &mut Vec<String>, count: &mut usize) {
    let mut report = |msg: String, out: &mut Vec<String>| {
        *count += 1;
        if out.len() < MAX_REPORTED {
            out.push(msg);
        }
    };
    let (na, nb) = match (names(&a_root.join(rel(dir))), names(&b_root.join(rel(dir)))) {
        (Ok(na), Ok(nb)) => (na, nb),
        (ea, eb) => {
            let e = ea
                .err()
                .or(eb.err())
                .map(|e| e.to_string())
                .unwrap_or_default();
            report(format!("\"{}\": cannot list: {e}", show(dir)), out);
            return;
        }
    };
    let mut subdirs = Vec::new();
    for name in na.union(&nb) {
        let p = join_rel(dir, name);
        let shown = format!("\"{}\"", show(&p));
        let pa = a_root.join(rel(&p));
        let pb = b_root.join(rel(&p));
        let (ma, mb) = match (fs::symlink_metadata(&pa), fs::symlink_metadata(&pb)) {
            (Ok(ma), Ok(mb)) => (ma, mb),
            (Ok(ma), Err(_)) => {
                report(
                    format!("{shown}: missing in dst (src has {:?})", kind_of(&ma)),
                    out,
                );
                continue;
            }
            (Err(_), Ok(mb)) => {
                report(
                    format!("{shown}: extra in dst ({:?}), absent in src", kind_of(&mb)),
                    out,
                );
                continue;
            }
            (Err(_), Err(_)) => continue, // vanished from both while listing
        };
        let (ka, kb) = (kind_of(&ma), kind_of(&mb));
        if ka != kb {
            report(
                format!("{shown}: type differs: src {ka:?}, dst {kb:?}"),
                out,
            );
            continue;
        }
        if ka != EntryKind::Symlink && ma.mode() & 0o7777 != mb.mode() & 0o7777 {
            report(
                format!(
                    "{shown}: mode differs: src {:o}, dst {:o}",
                    ma.mode() & 0o7777,
                    mb.mode() & 0o7777
                ),
                out,
            );
        }
        match ka {
            EntryKind::Dir => subdirs.push(p),
            EntryKind::File => {
                if ma.len() != mb.len() {
                    report(
                        format!("{shown}: size differs: src {}, dst {}", ma.len(), mb.len()),
                        out,
                    );
                } else {
                    match (fs::read(&pa), fs::read(&pb)) {
                        (Ok(ca), Ok(cb)) if ca != cb => report(
                            format!("{shown}: contents differ (same size {})", ma.len()),
                            out,
                        ),
                        (Ok(_), Ok(_)) => {}
                        (ra, rb) => report(
                            format!(
                                "{shown}: cannot read: src {:?}, dst {:?}",
                                ra.err(),
                                rb.err()
                            ),
                            out,
                        ),
                    }
                }
            }
            EntryKind::Symlink => match (fs::read_link(&pa), fs::read_link(&pb)) {
                (Ok(ta), Ok(tb)) if ta != tb => report(
                    format!(
                        "{shown}: symlink target differs: src \"{}\", dst \"{}\"",
                        show(ta.as_os_str().as_bytes()),
                        show(tb.as_os_str().as_bytes())
                    ),
                    out,
                ),
                (Ok(_), Ok(_)) => {}
                (ra, rb) => report(
                    format!("{shown}: cannot readlink: {:?} {:?}", ra.err(), rb.err()),
                    out,
                ),
            },
            EntryKind::Other => {}
        }
    }
    for d in subdirs {
        diff_dir(a_root, b_root, &d, out, count);
    }
}

// ---------------------------------------------------------------------------
// Running the binary for one-shot checks (no daemon lifetime)
// ---------------------------------------------------------------------------

/// Output of a finished run of the binary.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `livesync ARGS...` to completion (killing it after `timeout`).
pub fn run_livesync<S: AsRef<OsStr>>(args: &[S], timeout: Duration) -> Run {
    let mut cmd = Command::new(BIN);
    // -H /NULL/: no config file of the host may leak into a test.
    cmd.args(["-H", "/NULL/"]).args(backend_args()).args(args);
    run_command(cmd, timeout)
}

/// Runs `livesync -W <src> -D <dst> ARGS...` to completion, as
/// [`run_livesync`] does.
pub fn run_on<S: AsRef<OsStr>>(env: &TestEnv, args: &[S], timeout: Duration) -> Run {
    let mut argv: Vec<OsString> = vec!["-W".into(), env.src.clone().into()];
    argv.extend(["-D".into(), env.dst.clone().into()]);
    argv.extend(args.iter().map(|a| a.as_ref().to_os_string()));
    run_livesync(&argv, timeout)
}

/// Runs a prepared command to completion with captured output (killing it
/// after `timeout`); panics if it cannot be spawned.
pub fn run_command(cmd: Command, timeout: Duration) -> Run {
    try_run_command(cmd, timeout).unwrap_or_else(|e| panic!("spawn {BIN}: {e}"))
}

/// Like `run_command`, but a failure to spawn is returned.
pub fn try_run_command(mut cmd: Command, timeout: Duration) -> io::Result<Run> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let out = Arc::new(Mutex::new(Vec::new()));
    let err = Arc::new(Mutex::new(Vec::new()));
    spawn_reader(child.stdout.take().expect("piped stdout"), out.clone());
    spawn_reader(child.stderr.take().expect("piped stderr"), err.clone());
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} did not exit within {timeout:?}; stderr so far:\n{}",
                String::from_utf8_lossy(&err.lock().unwrap())
            );
        }
        thread::sleep(POLL);
    };
    // The pipes close when the process exits; give the readers a moment to drain.
    let _ = poll_until(secs(2.0), || {
        Arc::strong_count(&out) == 1 && Arc::strong_count(&err) == 1
    });
    let stdout = String::from_utf8_lossy(&out.lock().unwrap()).into_owned();
    let stderr = String::from_utf8_lossy(&err.lock().unwrap()).into_owned();
    Ok(Run {
        code: status.code(),
        stdout,
        stderr,
    })
}

// ---------------------------------------------------------------------------
// Small helpers shared by several test files
// ---------------------------------------------------------------------------

/// An argument vector from mixed strings and paths.
pub fn argv(parts: &[&dyn AsRef<OsStr>]) -> Vec<OsString> {
    parts.iter().map(|p| p.as_ref().to_os_string()).collect()
}

/// A temp path as a `String` for an argument (temp dirs are UTF-8 here).
pub fn path_str(p: &Path) -> String {
    p.to_str().expect("utf-8 temp path").to_string()
}

/// Writes an executable `/bin/sh` script `name` under the test root.
pub fn script(env: &TestEnv, name: &str, body: &str) -> PathBuf {
    let p = env.root.join(name);
    fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("write script");
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod script");
    p
}

/// The lines of a text file (none when it is missing).
pub fn lines(p: &Path) -> Vec<String> {
    fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// A text file's content (empty when it is missing).
pub fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_default()
}

/// Whether process `pid` runs (a zombie does not count).
pub fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Writes `data` to `path` from a forked child before exec
/// (async-signal-safe calls only).
fn write_proc(path: &std::ffi::CStr, data: &[u8]) -> io::Result<()> {
    // SAFETY: plain open/write/close on a NUL-terminated path and a buffer
    // prepared before the fork.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = libc::write(fd, data.as_ptr().cast(), data.len());
        let err = io::Error::last_os_error();
        libc::close(fd);
        if n != data.len() as isize {
            return Err(err);
        }
    }
    Ok(())
}

/// Makes `cmd` run in a new user namespace (root mapped to root) whose own
/// inotify watch limit (`/proc/sys/user/max_inotify_watches`, Linux 5.11+)
/// is `limit`: the watch limit is lowered for that process alone, nothing
/// global changes. `limit` is the text written, e.g. `b"5\n"`.
#[cfg(target_os = "linux")]
pub fn limit_watches_in_user_namespace(cmd: &mut Command, limit: &'static [u8]) {
    // SAFETY: runs in the forked child before exec; only unshare, open,
    // write and close on data prepared before the fork.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, move || {
            if libc::unshare(libc::CLONE_NEWUSER) != 0 {
                return Err(io::Error::last_os_error());
            }
            write_proc(c"/proc/self/setgroups", b"deny")?;
            write_proc(c"/proc/self/uid_map", b"0 0 1")?;
            write_proc(c"/proc/self/gid_map", b"0 0 1")?;
            write_proc(c"/proc/sys/user/max_inotify_watches", limit)
        });
    }
}

/// Elsewhere there are no user namespaces: the spawn fails, saying so.
#[cfg(not(target_os = "linux"))]
pub fn limit_watches_in_user_namespace(cmd: &mut Command, _limit: &'static [u8]) {
    // SAFETY: runs in the forked child before exec; no allocation.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, || {
            Err(io::Error::from(io::ErrorKind::Unsupported))
        });
    }
}

/// The xattr `name` of `p` (never following a symlink), if it has one.
#[cfg(target_os = "linux")]
pub fn xattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let name = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 1024];
    // SAFETY: NUL-terminated strings and a buffer of buf.len() bytes.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (n >= 0).then(|| {
        buf.truncate(n as usize);
        buf
    })
}

/// Sets (`Some`) or removes (`None`) a user xattr; false when the file
/// system refuses.
#[cfg(target_os = "linux")]
pub fn set_xattr(p: &Path, name: &str, value: Option<&[u8]>) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let name = std::ffi::CString::new(name).unwrap();
    // SAFETY: NUL-terminated strings and a buffer of value.len() bytes.
    let rc = unsafe {
        match value {
            Some(v) => libc::lsetxattr(path.as_ptr(), name.as_ptr(), v.as_ptr().cast(), v.len(), 0),
            None => libc::lremovexattr(path.as_ptr(), name.as_ptr()),
        }
    };
    rc == 0
}

// Elsewhere the mirror copies no xattrs: the tests that use them skip.
#[cfg(not(target_os = "linux"))]
pub fn xattr(_p: &Path, _name: &str) -> Option<Vec<u8>> {
    None
}

#[cfg(not(target_os = "linux"))]
pub fn set_xattr(_p: &Path, _name: &str, _value: Option<&[u8]>) -> bool {
    false
}
