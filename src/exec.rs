//! Child processes: run one external program to completion.
//!
//! This module owns spawning a handler's program from an argv (never through
//! a shell; a bare name is looked up in `PATH`), putting it in a session and
//! process group of its own, waiting for it with an optional timeout, and
//! killing the whole group (SIGTERM, then SIGKILL after a grace period) when
//! the timeout passes, so that no grandchild (an `ssh` under `rsync`, a
//! `sleep` under a script) outlives a sync. stdin is `/dev/null`, and the
//! new session has no controlling terminal: no child can ever read one (an
//! `ssh` asking for a password or a host key fails at once instead of being
//! stopped by the terminal, and the sync with it). stdout is inherited;
//! stderr too, unless the caller asks to see it ([`Spec::stderr`]).
//!
//! It must not decide what a result means for a batch (exit codes to ignore,
//! retries, re-queueing): it reports what happened as an [`Outcome`] and the
//! caller judges. It never touches the process's global settings (signal
//! handlers, uid/gid and capabilities, the logger, `exit`, a global reaper):
//! the caller's process must not reap children it did not start (no
//! `waitpid(-1)`), or the status of ours is lost.
//!
//! It keeps three pieces of bookkeeping of its own, process-wide because
//! children are started from any worker thread and a stop must reach all
//! of them:
//!
//! * the process groups of the children running now ([`running_groups`]),
//!   so that a stop can signal them without reading `/proc` (which a
//!   `--chroot` jail may lack); each entry lives exactly as long as its
//!   child's run;
//! * a `/dev/null` opened before a jail is entered ([`hold_dev_null`]), for
//!   the children's stdin where the jail has none;
//! * the [`Spawner`] the daemon may install once at start ([`set_spawner`]):
//!   from then on [`Spec::run`] goes through it, so that handlers get the
//!   identity, capabilities and no-new-privs the daemon decided, or are
//!   started by its privileged helper (`--splitting=process`). Without one,
//!   children are started here as they are.
//!
//! The spawner and the `/dev/null` are installed only by the daemon; the
//! running groups are written only here and read only by the daemon's stop.

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Starts children on behalf of [`Spec::run`] (see the module docs).
pub trait Spawner: Send + Sync {
    /// Runs `spec` to completion, as [`Spec::run_prepared`] does.
    fn run(&self, spec: &Spec) -> Result<Outcome, ExecError>;
}

static SPAWNER: OnceLock<Box<dyn Spawner>> = OnceLock::new();

/// `/dev/null`, opened before a `--chroot` jail without one is entered.
static DEV_NULL: OnceLock<std::fs::File> = OnceLock::new();

/// Opens `/dev/null` now and keeps it for the children's stdin (the
/// daemon calls this before entering a jail, where there may be none).
pub fn hold_dev_null() -> io::Result<()> {
    let f = std::fs::File::open("/dev/null")?;
    let _ = DEV_NULL.set(f);
    Ok(())
}

/// A child's stdin: the held `/dev/null` if there is one.
fn dev_null() -> Stdio {
    match DEV_NULL.get().map(std::fs::File::try_clone) {
        Some(Ok(f)) => Stdio::from(f),
        _ => Stdio::null(),
    }
}

/// The process groups of the children running here (each child leads its
/// own), so that a stop can signal them without reading `/proc` (which a
/// `--chroot` jail may lack).
static RUNNING: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// The groups of the children [`Spec::run_prepared`] is running now.
pub fn running_groups() -> Vec<i32> {
    RUNNING.lock().map(|r| r.clone()).unwrap_or_default()
}

/// Keeps a child's group in [`RUNNING`] while it runs.
struct Running(i32);

impl Running {
    fn new(pid: u32) -> Running {
        let pid = pid as i32;
        if let Ok(mut r) = RUNNING.lock() {
            r.push(pid);
        }
        Running(pid)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(mut r) = RUNNING.lock() {
            r.retain(|&p| p != self.0);
        }
    }
}

/// Installs the spawner every later [`Spec::run`] goes through; only the
/// first call counts (false for a later one).
pub fn set_spawner(s: Box<dyn Spawner>) -> bool {
    SPAWNER.set(s).is_ok()
}

/// Code run in the child between fork and exec; it must be
/// async-signal-safe (no allocation, no locks).
pub type PreExec = Arc<dyn Fn() -> io::Result<()> + Send + Sync>;

/// How long a timed-out child's group gets between SIGTERM and SIGKILL.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(2);

/// Why a child could not be run at all.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("nothing to run: the argument list is empty")]
    EmptyArgv,
    #[error("cannot run {program}: not found in PATH")]
    NotInPath { program: String },
    #[error("cannot run {program}: no such file")]
    NoSuchFile { program: String },
    #[error("cannot run {program}: permission denied (is it an executable file?)")]
    PermissionDenied { program: String },
    #[error("cannot run {program}: {source}")]
    Spawn { program: String, source: io::Error },
    #[error("lost track of {program} (pid {pid}): {source}")]
    Wait {
        program: String,
        pid: u32,
        source: io::Error,
    },
}

impl ExecError {
    /// The program this error is about (empty for [`ExecError::EmptyArgv`]).
    pub fn program(&self) -> &str {
        match self {
            ExecError::EmptyArgv => "",
            ExecError::NotInPath { program }
            | ExecError::NoSuchFile { program }
            | ExecError::PermissionDenied { program }
            | ExecError::Spawn { program, .. }
            | ExecError::Wait { program, .. } => program,
        }
    }

    /// The error as an [`io::Error`] of the matching kind, without the
    /// program's name (for callers that wrap it in their own message).
    pub fn into_io(self) -> io::Error {
        match self {
            ExecError::EmptyArgv => io::Error::new(io::ErrorKind::InvalidInput, "empty argv"),
            ExecError::NotInPath { .. } => {
                io::Error::new(io::ErrorKind::NotFound, "not found in PATH")
            }
            ExecError::NoSuchFile { .. } => io::Error::new(io::ErrorKind::NotFound, "no such file"),
            ExecError::PermissionDenied { .. } => io::Error::new(
                io::ErrorKind::PermissionDenied,
                "permission denied (is it an executable file?)",
            ),
            ExecError::Spawn { source, .. } | ExecError::Wait { source, .. } => source,
        }
    }
}

/// How a child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It exited by itself with this code.
    Exited(i32),
    /// It was killed by this signal (not by us).
    Signaled(i32),
    /// It ran longer than the timeout; its whole process group was killed.
    /// `signal` is what finally ended the child itself (None if it exited by
    /// itself between the timeout and our signal).
    TimedOut {
        after: Duration,
        signal: Option<i32>,
    },
}

impl Outcome {
    /// The exit code, when the child exited by itself.
    pub fn code(&self) -> Option<i32> {
        match *self {
            Outcome::Exited(c) => Some(c),
            _ => None,
        }
    }

    /// True for exit code 0 or a code listed in `ignore`; a signal or a
    /// timeout is never a success.
    pub fn success(&self, ignore: &[i32]) -> bool {
        matches!(*self, Outcome::Exited(c) if c == 0 || ignore.contains(&c))
    }

    fn from_status(status: ExitStatus) -> Outcome {
        match (status.code(), status.signal()) {
            (Some(c), _) => Outcome::Exited(c),
            (None, Some(s)) => Outcome::Signaled(s),
            // Neither: cannot happen for a terminated child; report it as a
            // failure rather than as success.
            (None, None) => Outcome::Exited(-1),
        }
    }
}

/// How it ended, for a log line after the program's name: "exited with
/// code 1", "was killed by signal 9", "was still running after 5s (the
/// timeout) and was killed with its process group".
impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Outcome::Exited(c) => write!(f, "exited with code {c}"),
            Outcome::Signaled(s) => write!(f, "was killed by signal {s}"),
            Outcome::TimedOut { after, .. } => write!(
                f,
                "was still running after {after:.0?} (the timeout) and was killed with its \
                 process group"
            ),
        }
    }
}

/// One child to run: argv, extra environment, timeout.
#[derive(Clone, Debug)]
pub struct Spec {
    /// `argv[0]` is the program: a path, or a bare name looked up in `PATH`.
    pub argv: Vec<OsString>,
    /// Added to (or overriding) the inherited environment.
    pub env: Vec<(OsString, OsString)>,
    /// None = wait for ever.
    pub timeout: Option<Duration>,
    /// Time between SIGTERM and SIGKILL when the timeout passes.
    pub grace: Duration,
    /// Working directory of the child (None = ours). clsync's command
    /// modes run their handler in the watch dir.
    pub cwd: Option<std::path::PathBuf>,
    /// Keep the child's stderr here instead of passing it on, so that the
    /// caller can read why it failed (up to [`CAPTURE_MAX`] bytes: a child
    /// that writes more has all of it passed on). None: inherited. Only a child started here is
    /// captured, not one the privileged helper starts.
    pub stderr: Option<Captured>,
}

/// How much of a child's stderr [`Captured`] keeps; with more, all goes to
/// ours.
pub const CAPTURE_MAX: usize = 64 * 1024;

/// A child's stderr, kept by [`Spec::run_prepared`].
#[derive(Clone, Debug)]
pub struct Captured {
    kept: Arc<Mutex<Vec<u8>>>,
    limit: usize,
}

impl Default for Captured {
    fn default() -> Captured {
        Captured::with_limit(CAPTURE_MAX)
    }
}

impl Captured {
    /// Keeps up to `limit` bytes ([`CAPTURE_MAX`] by default).
    pub fn with_limit(limit: usize) -> Captured {
        Captured {
            kept: Arc::default(),
            limit,
        }
    }

    /// What was kept, leaving it empty.
    pub fn take(&self) -> Vec<u8> {
        match self.kept.lock() {
            Ok(mut b) => std::mem::take(&mut *b),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        }
    }
}

/// Reads `pipe` to its end into `into`; the receiver hears when the end is
/// reached. Past its limit it gives up keeping: what it kept
/// and all that follows go to our stderr, in order.
fn capture(mut pipe: impl io::Read + Send + 'static, into: Captured) -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut passing_on = false;
        loop {
            match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let mut kept = into.kept.lock().unwrap_or_else(|p| p.into_inner());
                    if !passing_on && kept.len() + n <= into.limit {
                        kept.extend_from_slice(&buf[..n]);
                        continue;
                    }
                    passing_on = true;
                    let earlier = std::mem::take(&mut *kept);
                    drop(kept);
                    let mut err = io::stderr().lock();
                    let _ = io::Write::write_all(&mut err, &earlier);
                    let _ = io::Write::write_all(&mut err, &buf[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = tx.send(());
    });
    rx
}

/// How long a capture may go on after the child exited (a grandchild that
/// still holds the pipe): then the caller gets what is there.
const CAPTURE_LINGER: Duration = Duration::from_millis(500);

impl Spec {
    pub fn new(argv: Vec<OsString>) -> Spec {
        Spec {
            argv,
            env: Vec::new(),
            timeout: None,
            grace: DEFAULT_GRACE,
            cwd: None,
            stderr: None,
        }
    }

    /// Runs the child to completion (see the module docs), through the
    /// installed [`Spawner`] if there is one.
    pub fn run(&self) -> Result<Outcome, ExecError> {
        match SPAWNER.get() {
            Some(s) => s.run(self),
            None => self.run_prepared(None),
        }
    }

    /// Runs the child here, with `pre_exec` run in it before the program.
    pub fn run_prepared(&self, pre_exec: Option<PreExec>) -> Result<Outcome, ExecError> {
        let (program, args) = self.argv.split_first().ok_or(ExecError::EmptyArgv)?;
        let name = crate::path::display(program.as_bytes());
        let mut cmd = Command::new(program);
        cmd.args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(dev_null())
            .stdout(Stdio::inherit())
            .stderr(if self.stderr.is_some() {
                Stdio::piped()
            } else {
                Stdio::inherit()
            });
        // A session of its own: its own process group (killed as one), and
        // no controlling terminal to read from or be stopped by.
        // SAFETY: setsid is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        if let Some(f) = pre_exec {
            // SAFETY: the caller promises `f` is async-signal-safe.
            unsafe {
                cmd.pre_exec(move || f());
            }
        }
        let mut child = spawn(&mut cmd).map_err(|e| spawn_error(program, name.clone(), e))?;
        let captured = match (&self.stderr, child.stderr.take()) {
            (Some(into), Some(pipe)) => Some(capture(pipe, into.clone())),
            _ => None,
        };
        let result = self.wait(child, name);
        if let Some(done) = captured {
            let _ = done.recv_timeout(CAPTURE_LINGER);
        }
        result
    }

    /// Waits for `child` (see the module docs).
    fn wait(&self, mut child: std::process::Child, name: String) -> Result<Outcome, ExecError> {
        let pid = child.id();
        let _running = Running::new(pid);
        let wait_err = |source| ExecError::Wait {
            program: name.clone(),
            pid,
            source,
        };

        let Some(timeout) = self.timeout else {
            let status = child.wait().map_err(wait_err)?;
            return Ok(Outcome::from_status(status));
        };

        // A helper thread waits for the child to exit *without reaping it*,
        // so that its pid (which is also the group's id) cannot be reused
        // while we may still signal the group.
        let started = Instant::now();
        let exited = watch_exit(pid);
        match exited.recv_timeout(timeout) {
            Ok(Ok(())) => {
                let status = child.wait().map_err(wait_err)?;
                return Ok(Outcome::from_status(status));
            }
            Ok(Err(e)) => return Err(wait_err(e)),
            Err(_) => {}
        }

        let group = Pid::from_raw(pid as i32);
        log::warn!(
            "{name} (pid {pid}) still runs after {timeout:?}: terminating its process group"
        );
        let _ = killpg(group, Signal::SIGTERM);
        let leader_gone = matches!(exited.recv_timeout(self.grace), Ok(Ok(())));
        // The leader is at most a zombie here, so the group id is still ours:
        // SIGKILL whatever of the group is left (grandchildren that ignored
        // SIGTERM, or the leader itself).
        let _ = killpg(group, Signal::SIGKILL);
        if !leader_gone {
            if let Ok(Err(e)) = exited.recv() {
                return Err(wait_err(e));
            }
        }
        let status = child.wait().map_err(wait_err)?;
        Ok(Outcome::TimedOut {
            after: started.elapsed(),
            signal: status.signal(),
        })
    }
}

/// Runs `argv` with `env` added to the environment; see [`Spec::run`].
pub fn run(
    argv: &[OsString],
    env: &[(OsString, OsString)],
    timeout: Option<Duration>,
) -> Result<Outcome, ExecError> {
    Spec {
        argv: argv.to_vec(),
        env: env.to_vec(),
        timeout,
        grace: DEFAULT_GRACE,
        cwd: None,
        stderr: None,
    }
    .run()
}

/// Spawns, retrying briefly on ETXTBSY: an executable that was just written
/// (a replaced binary, a script) can be "busy" for a moment while another
/// thread's fork still holds the writer's descriptor.
fn spawn(cmd: &mut Command) -> io::Result<std::process::Child> {
    let mut delay = Duration::from_millis(5);
    for _ in 0..5 {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                std::thread::sleep(delay);
                delay *= 2;
            }
            r => return r,
        }
    }
    cmd.spawn()
}

fn spawn_error(program: &OsStr, name: String, e: io::Error) -> ExecError {
    let bare = !program.as_bytes().contains(&b'/');
    match e.kind() {
        io::ErrorKind::NotFound if bare => ExecError::NotInPath { program: name },
        io::ErrorKind::NotFound => ExecError::NoSuchFile { program: name },
        io::ErrorKind::PermissionDenied => ExecError::PermissionDenied { program: name },
        _ => ExecError::Spawn {
            program: name,
            source: e,
        },
    }
}

/// Sends `Ok(())` once child `pid` has exited, leaving it unreaped.
#[cfg(any(
    target_os = "android",
    target_os = "freebsd",
    all(target_os = "linux", not(target_env = "uclibc")),
))]
fn watch_exit(pid: u32) -> mpsc::Receiver<io::Result<()>> {
    use nix::errno::Errno;
    use nix::sys::wait::{waitid, Id, WaitPidFlag};
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT;
        let r = loop {
            match waitid(Id::Pid(Pid::from_raw(pid as i32)), flags) {
                Err(Errno::EINTR) => continue,
                Err(e) => break Err(io::Error::from(e)),
                Ok(_) => break Ok(()),
            }
        };
        let _ = tx.send(r);
    });
    rx
}

/// Sends `Ok(())` once child `pid` has exited, leaving it unreaped: polls
/// `waitpid(WNOHANG | WNOWAIT)` on platforms where nix offers no `waitid`.
#[cfg(not(any(
    target_os = "android",
    target_os = "freebsd",
    all(target_os = "linux", not(target_env = "uclibc")),
)))]
fn watch_exit(pid: u32) -> mpsc::Receiver<io::Result<()>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = loop {
            let mut status = 0;
            // SAFETY: plain syscall on our own child's pid.
            let n = unsafe {
                libc::waitpid(
                    pid as libc::pid_t,
                    &mut status,
                    libc::WNOHANG | libc::WNOWAIT,
                )
            };
            if n > 0 {
                break Ok(());
            }
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    break Err(e);
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let _ = tx.send(r);
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    fn sh(script: &str) -> Vec<OsString> {
        os(&["/bin/sh", "-c", script])
    }

    fn alive(pid: i32) -> bool {
        // A zombie is dead for our purposes; /proc shows its state.
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(s) => !s
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
            Err(_) => false,
        }
    }

    fn wait_until(what: &str, deadline: Duration, mut f: impl FnMut() -> bool) {
        let end = Instant::now() + deadline;
        while !f() {
            assert!(Instant::now() < end, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn true_and_false() {
        assert_eq!(
            run(&os(&["/bin/true"]), &[], None).unwrap(),
            Outcome::Exited(0)
        );
        let o = run(&os(&["/bin/false"]), &[], None).unwrap();
        assert_eq!(o, Outcome::Exited(1));
        assert!(!o.success(&[]));
        assert!(o.success(&[1]));
        assert_eq!(o.code(), Some(1));
    }

    #[test]
    fn a_running_child_is_listed_by_its_group_until_it_ends() {
        let t = tempfile::tempdir().unwrap();
        let pid_file = t.path().join("pid");
        let go = t.path().join("go");
        let argv = sh(r#"echo $$ > "$0"; while [ ! -e "$1" ]; do sleep 0.01; done"#);
        let argv: Vec<OsString> = argv
            .into_iter()
            .chain([pid_file.clone().into(), go.clone().into()])
            .collect();
        let runner = std::thread::spawn(move || run(&argv, &[], None));
        let mut pid = None;
        wait_until("the child's pid", Duration::from_secs(10), || {
            pid = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok());
            pid.is_some()
        });
        let pid = pid.unwrap();
        assert!(running_groups().contains(&pid), "{:?}", running_groups());
        std::fs::write(&go, "").unwrap();
        assert_eq!(runner.join().unwrap().unwrap(), Outcome::Exited(0));
        assert!(!running_groups().contains(&pid));
    }

    #[test]
    fn bare_name_is_found_in_path() {
        assert_eq!(run(&os(&["true"]), &[], None).unwrap(), Outcome::Exited(0));
    }

    #[test]
    fn exit_code_passes_through() {
        let o = run(&sh("exit 24"), &[], Some(Duration::from_secs(30))).unwrap();
        assert_eq!(o, Outcome::Exited(24));
        assert!(o.success(&[24]));
        assert!(!o.success(&[23]));
    }

    #[test]
    fn signal_is_reported() {
        let o = run(&sh("kill -USR1 $$"), &[], None).unwrap();
        assert_eq!(o, Outcome::Signaled(libc::SIGUSR1));
        assert!(!o.success(&[0, 24]));
        assert_eq!(o.code(), None);
    }

    #[test]
    fn argv_is_not_split_or_expanded() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let mut argv = sh(r#"printf '%s|' "$@" > "$0""#);
        argv.push(out.clone().into_os_string());
        argv.extend(os(&["a b", "$HOME", "*", "-x"]));
        assert_eq!(run(&argv, &[], None).unwrap(), Outcome::Exited(0));
        assert_eq!(std::fs::read(&out).unwrap(), b"a b|$HOME|*|-x|");
    }

    #[test]
    fn env_is_added_and_stdin_is_null() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let mut argv = sh(r#"printf '%s:' "$LIVESYNC_T" > "$0"; cat >> "$0""#);
        argv.push(out.clone().into_os_string());
        let env = vec![(OsString::from("LIVESYNC_T"), OsString::from("v 1"))];
        assert_eq!(run(&argv, &env, None).unwrap(), Outcome::Exited(0));
        assert_eq!(std::fs::read(&out).unwrap(), b"v 1:");
    }

    #[test]
    fn child_has_its_own_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        // Field 5 of /proc/PID/stat is the process group id.
        let mut argv = sh(r#"cut -d' ' -f5 /proc/$$/stat > "$0"; echo $$ >> "$0""#);
        argv.push(out.clone().into_os_string());
        assert_eq!(run(&argv, &[], None).unwrap(), Outcome::Exited(0));
        let text = std::fs::read_to_string(&out).unwrap();
        let nums: Vec<i64> = text
            .split_whitespace()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(nums.len(), 2, "{text}");
        assert_eq!(nums[0], nums[1], "pgid must equal the child's pid");
        assert_ne!(nums[0], nix::unistd::getpgrp().as_raw() as i64);
    }

    #[test]
    fn child_leads_its_own_session_without_a_terminal() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        // Fields 6 and 7 of /proc/PID/stat: session id, controlling tty.
        let mut argv = sh(r#"cut -d' ' -f6,7 /proc/$$/stat > "$0"; echo $$ >> "$0""#);
        argv.push(out.clone().into_os_string());
        assert_eq!(run(&argv, &[], None).unwrap(), Outcome::Exited(0));
        let text = std::fs::read_to_string(&out).unwrap();
        let nums: Vec<i64> = text
            .split_whitespace()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(nums.len(), 3, "{text}");
        assert_eq!(nums[0], nums[2], "the child leads a session: {text}");
        assert_eq!(nums[1], 0, "no controlling terminal: {text}");
    }

    #[test]
    fn stderr_is_kept_when_asked_and_passed_on_past_the_cap() {
        let kept = Captured::default();
        let spec = Spec {
            stderr: Some(kept.clone()),
            ..Spec::new(sh("echo out; echo 'one line' >&2; exit 3"))
        };
        assert_eq!(spec.run_prepared(None).unwrap(), Outcome::Exited(3));
        assert_eq!(kept.take(), b"one line\n");
        assert!(kept.take().is_empty(), "take empties it");
        // More than the limit: nothing is kept (all of it was passed on).
        let kept = Captured::with_limit(8);
        let spec = Spec {
            stderr: Some(kept.clone()),
            ..Spec::new(sh("echo 'past the limit: passed on' >&2"))
        };
        assert_eq!(spec.run_prepared(None).unwrap(), Outcome::Exited(0));
        assert!(kept.take().is_empty());
    }

    #[test]
    fn missing_program_names_it() {
        let e = run(&os(&["livesync-no-such-program-x"]), &[], None).unwrap_err();
        assert!(matches!(e, ExecError::NotInPath { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains("livesync-no-such-program-x"), "{msg}");
        assert!(msg.contains("not found in PATH"), "{msg}");

        let e = run(&os(&["/nonexistent/dir/prog"]), &[], None).unwrap_err();
        assert!(matches!(e, ExecError::NoSuchFile { .. }), "{e:?}");
        assert!(e.to_string().contains("/nonexistent/dir/prog"));
        assert_eq!(e.into_io().kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn non_executable_is_permission_denied() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("script");
        std::fs::write(&f, "#!/bin/sh\n").unwrap();
        let e = run(&[f.into_os_string()], &[], None).unwrap_err();
        assert!(matches!(e, ExecError::PermissionDenied { .. }), "{e:?}");
    }

    #[cfg(target_os = "linux")] // no-new-privs and /proc/self/status
    #[test]
    fn pre_exec_runs_in_the_child_only_and_its_failure_is_a_spawn_error() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let mut argv = sh(r#"grep NoNewPrivs /proc/self/status > "$0""#);
        argv.push(out.clone().into_os_string());
        let nnp: PreExec = Arc::new(|| {
            // SAFETY: plain prctl in the child.
            if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
        let spec = Spec::new(argv);
        assert_eq!(spec.run_prepared(Some(nnp)).unwrap(), Outcome::Exited(0));
        let text = std::fs::read_to_string(&out).unwrap();
        assert_eq!(text.split_whitespace().nth(1), Some("1"), "{text}");
        let me = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(me
            .lines()
            .any(|l| l.starts_with("NoNewPrivs:") && l.ends_with('0')));
        let refuse: PreExec = Arc::new(|| Err(io::Error::from_raw_os_error(libc::EPERM)));
        let e = Spec::new(os(&["/bin/true"]))
            .run_prepared(Some(refuse))
            .unwrap_err();
        assert!(matches!(e, ExecError::PermissionDenied { .. }), "{e:?}");
    }

    #[test]
    fn empty_argv_is_an_error() {
        assert!(matches!(run(&[], &[], None), Err(ExecError::EmptyArgv)));
    }

    #[test]
    fn fast_child_with_timeout_is_not_killed() {
        let o = run(&sh("exit 3"), &[], Some(Duration::from_secs(60))).unwrap();
        assert_eq!(o, Outcome::Exited(3));
    }

    #[test]
    fn timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        // The grandchild ignores SIGTERM, so only the SIGKILL after the grace
        // period ends it; the shell waits for it for ever.
        let mut argv =
            sh(r#"(trap '' TERM; exec sleep 1000) & echo $! > "$0.tmp"; mv "$0.tmp" "$0"; wait"#);
        argv.push(pidfile.clone().into_os_string());
        let spec = Spec {
            argv,
            env: vec![],
            timeout: Some(Duration::from_millis(500)),
            grace: Duration::from_millis(300),
            cwd: None,
            stderr: None,
        };
        let started = Instant::now();
        let o = spec.run().unwrap();
        assert!(
            matches!(o, Outcome::TimedOut { .. }),
            "expected a timeout, got {o:?}"
        );
        assert!(!o.success(&[0]));
        assert!(started.elapsed() >= Duration::from_millis(500));
        let grandchild: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        wait_until("the grandchild to die", Duration::from_secs(10), || {
            !alive(grandchild)
        });
    }

    #[test]
    fn timeout_on_a_term_respecting_child_reports_sigterm() {
        let spec = Spec {
            argv: os(&["sleep", "1000"]),
            env: vec![],
            timeout: Some(Duration::from_millis(200)),
            grace: Duration::from_secs(20),
            cwd: None,
            stderr: None,
        };
        let started = Instant::now();
        let o = spec.run().unwrap();
        assert!(
            matches!(o, Outcome::TimedOut { signal: Some(s), .. } if s == libc::SIGTERM),
            "{o:?}"
        );
        // It did not wait for the grace period.
        assert!(started.elapsed() < Duration::from_secs(15));
    }
}
