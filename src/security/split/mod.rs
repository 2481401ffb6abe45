//! `--splitting=process`: a small privileged helper that starts, kills and
//! reaps handler processes (and runs the built-in mirror) for the
//! unprivileged daemon, and `--check-execvp-arguments`, its check of every
//! argv it is asked to run.
//!
//! The helper is forked at start while the daemon is still single-threaded
//! and privileged; it closes every descriptor but its end of a
//! `SOCK_SEQPACKET` socketpair, keeps only the capabilities handlers need
//! and serves a narrow request protocol (one request or reply per packet,
//! every length checked, nothing trailing):
//!
//! - `RUN`: id u64, timeout ms u32 (0: none), grace ms u32, argc u32, each
//!   argument as u32 length + bytes, envc u32, each variable as two of those
//!   (names must start with `CLSYNC_` or `LIVESYNC_`, or be `UNISON`
//!   naming a private unison state dir). The helper checks
//!   the argv (with `--check-execvp-arguments`), runs it with the handler's
//!   identity and replies `DONE` (id, how it ended) or `FAIL` (id, error
//!   kind, message).
//! - `SIGNAL`: a u32 signal, only SIGTERM or SIGKILL: sent to the process
//!   group of every running handler. No reply.
//! - `RULES`: id, the rules as text: the built-in mirror's rules from now on
//!   (the destination is created on the first one). Replies `REPORT` or
//!   `FAIL`.
//! - `MIRROR`: id, op count, each op a kind (0 sync, 1 recursive sync,
//!   2 move) and one or two paths, each relative to the trees with no `.`,
//!   `..` or empty component and no NUL. The helper runs the mirror on them
//!   and replies `REPORT` (copied, deleted, renamed, then the paths it
//!   skipped as unreadable and the paths that failed on their own, each a
//!   count and per path a recursive flag, the path and the message) or
//!   `FAIL` (the whole batch failed, or the paths do not fit a packet; kind
//!   5 when the destination was moved or replaced: the daemon stops). The
//!   destination root opened on the first `RULES` is kept across later ones.
//!
//! Anything else ends the helper (a daemon that speaks nonsense is not
//! trusted any more). When the daemon goes away (EOF) the helper kills its
//! handlers and exits. This module must not run anything the daemon did
//! not ask for, and the helper touches the trees only through the mirror
//! engine, on the paths the daemon names.

pub use super::argv_check::{patterns, Checker, Part, Pat, PathKind};
use super::privilege::{self, Ident, Plan};
use crate::batch::{Batch, Op};
use crate::config::{Config, Destination, Mode};
use crate::exec::{self, ExecError, Outcome, Spec};
use crate::handler::mirror::{DstRoot, Mirror};
use crate::handler::PathIssue;
use crate::handler::{Handler, HandlerError, Report};
use crate::rules::Rules;
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

mod wire; // requests and replies on the helper's socket
pub use wire::*;

/// The built-in mirror as the helper runs it: the two trees (the
/// destination is created and opened on the first `RULES` request, and held
/// from then on) and the engine.
pub struct HelperMirror {
    pub src: PathBuf,
    pub dst: PathBuf,
    pub root: Option<Arc<DstRoot>>,
    /// `--xattrs`, `--acls`.
    pub xattrs: bool,
    pub acls: bool,
    pub engine: Option<Mirror>,
}

/// What the helper needs besides its socket.
pub struct HelperConfig {
    pub checker: Checker,
    /// Done in each handler child before exec (identity, caps, no-new-privs).
    pub setup: Option<exec::PreExec>,
    /// With `-M mirror`: the mirror runs here, not in the daemon.
    pub mirror: Option<HelperMirror>,
    /// With `-M unison` under `--check-execvp-arguments`: unison's state
    /// dir, made and owned here; every run's `UNISON` names it, whatever
    /// the daemon sent (its preferences could override the checked argv).
    pub unison_state: Option<PathBuf>,
}

fn report_reply(id: u64, done: Result<(Report, Vec<PathIssue>), String>) -> Reply {
    match done {
        Ok((report, failed)) => Reply::Report { id, report, failed },
        Err(message) => Reply::Fail {
            id,
            kind: FAIL_OTHER,
            message,
        },
    }
}

/// `reply` as one packet; a report whose paths do not fit says so as a
/// failure of the whole batch instead (never a report that drops a failed
/// path, which would then count as done).
fn reply_packet(reply: &Reply) -> Vec<u8> {
    let packet = reply.encode();
    match reply {
        Reply::Report { id, failed, report } if packet.len() > MAX_PACKET => Reply::Fail {
            id: *id,
            kind: FAIL_OTHER,
            message: format!(
                "the mirror failed for {} path(s) and skipped {}, more than one reply can carry; retrying the batch whole",
                failed.len(),
                report.skipped.len()
            ),
        }
        .encode(),
        _ => packet,
    }
}

/// Stack of the thread that runs a mirror batch (it walks depth-first).
const MIRROR_STACK: usize = 256 << 20;

impl HelperMirror {
    fn rules(&mut self, text: &[u8]) -> Result<(Report, Vec<PathIssue>), String> {
        let rules = Rules::parse(text, "the daemon's rules").map_err(|e| e.to_string())?;
        // A reload keeps the destination root opened the first time.
        let root = match &self.root {
            Some(r) => Arc::clone(r),
            None => {
                let r = Arc::new(DstRoot::open(&self.dst, true).map_err(|e| e.to_string())?);
                Arc::clone(self.root.insert(r))
            }
        };
        self.engine = Some(
            Mirror::new(self.src.clone(), self.dst.clone(), Arc::new(rules))
                .with_root(root)
                .xattrs(self.xattrs, self.acls),
        );
        Ok((Report::default(), Vec::new()))
    }

    fn run(&mut self, ops: Vec<Op>) -> Result<(Report, Vec<PathIssue>), (u8, String)> {
        let Some(engine) = self.engine.as_mut() else {
            return Err((FAIL_OTHER, "the mirror got no rules yet".into()));
        };
        let batch = Batch {
            ops,
            ..Batch::default()
        };
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("livesync-helper-mirror".into())
                .stack_size(MIRROR_STACK)
                .spawn_scoped(scope, || match engine.run(&batch) {
                    Ok(report) => Ok((report, Vec::new())),
                    Err(HandlerError::Paths { failed, report }) => Ok((report, failed)),
                    Err(HandlerError::DestinationChanged(m)) => Err((FAIL_DESTINATION_CHANGED, m)),
                    Err(e) => Err((FAIL_OTHER, e.to_string())),
                })
                .map_err(|e| (FAIL_OTHER, format!("cannot start the mirror thread: {e}")))?
                .join()
                .unwrap_or_else(|_| Err((FAIL_OTHER, "the mirror thread panicked".into())))
        })
    }
}

/// Serves requests on `sock` until EOF or a bad request; returns why it
/// stopped. Runs each handler on a thread of its own and answers when it
/// ends. This is the helper's whole loop; a test can drive it directly.
pub fn serve(sock: OwnedFd, mut cfg: HelperConfig) -> Result<(), String> {
    let sock = Arc::new(sock);
    let result = loop {
        let packet = match recv_packet(sock.as_raw_fd()) {
            Ok(Some(p)) => p,
            Ok(None) => break Ok(()),
            Err(e) => break Err(format!("reading a request: {e}")),
        };
        let req = match Request::decode(&packet) {
            Ok(r) => r,
            Err(e) => break Err(format!("bad request: {e}")),
        };
        match req {
            Request::Signal(sig) => {
                super::procs::signal_child_groups(sig);
            }
            Request::Rules { id, text } => {
                let done = match cfg.mirror.as_mut() {
                    Some(m) => m.rules(&text),
                    None => Err("this helper runs no mirror".into()),
                };
                if let Err(e) =
                    send_packet(sock.as_raw_fd(), &reply_packet(&report_reply(id, done)))
                {
                    break Err(format!("answering: {e}"));
                }
            }
            Request::Mirror { id, ops } => {
                let reply = match cfg.mirror.as_mut() {
                    Some(m) => match m.run(ops) {
                        Ok((report, failed)) => Reply::Report { id, report, failed },
                        Err((kind, message)) => Reply::Fail { id, kind, message },
                    },
                    None => report_reply(id, Err("this helper runs no mirror".into())),
                };
                if let Err(e) = send_packet(sock.as_raw_fd(), &reply_packet(&reply)) {
                    break Err(format!("answering: {e}"));
                }
            }
            Request::Run {
                id,
                argv,
                env,
                timeout,
                grace,
                cwd,
            } => {
                if !cfg.checker.allows(&argv) {
                    let shown: Vec<String> = argv
                        .iter()
                        .map(|a| crate::path::display(a.as_bytes()))
                        .collect();
                    log::error!(
                        "--check-execvp-arguments: refusing to run {}",
                        shown.join(" ")
                    );
                    let reply = Reply::Fail {
                        id,
                        kind: FAIL_REFUSED,
                        message: "refused by --check-execvp-arguments: the configured handler and hooks cannot produce this argv".into(),
                    };
                    if let Err(e) = send_packet(sock.as_raw_fd(), &reply.encode()) {
                        break Err(format!("answering: {e}"));
                    }
                    continue;
                }
                let mut env = env;
                if let Some(state) = &cfg.unison_state {
                    env.retain(|(k, _)| k != "UNISON");
                    env.push(("UNISON".into(), state.clone().into_os_string()));
                }
                let spec = Spec {
                    argv,
                    env,
                    timeout,
                    grace,
                    cwd,
                    // Passed on to the helper's stderr (the daemon's).
                    stderr: None,
                };
                let sock = Arc::clone(&sock);
                let setup = cfg.setup.clone();
                let spawned = std::thread::Builder::new()
                    .name("livesync-helper-run".into())
                    .spawn(move || {
                        let reply = match spec.run_prepared(setup) {
                            Ok(outcome) => Reply::Done { id, outcome },
                            Err(e) => Reply::Fail {
                                id,
                                kind: match &e {
                                    ExecError::NotInPath { .. } | ExecError::NoSuchFile { .. } => {
                                        FAIL_NOT_FOUND
                                    }
                                    ExecError::PermissionDenied { .. } => FAIL_DENIED,
                                    _ => FAIL_OTHER,
                                },
                                message: e.to_string(),
                            },
                        };
                        let _ = send_packet(sock.as_raw_fd(), &reply.encode());
                    });
                if let Err(e) = spawned {
                    break Err(format!("cannot start a thread: {e}"));
                }
            }
        }
    };
    super::procs::signal_child_groups(libc::SIGKILL);
    result
}

/// The daemon's side: runs handlers through the helper.
pub struct HelperSpawner {
    sock: OwnedFd,
    /// One run at a time waits for its reply.
    lock: Mutex<u64>,
}

impl HelperSpawner {
    pub fn new(sock: OwnedFd) -> HelperSpawner {
        HelperSpawner {
            sock,
            lock: Mutex::new(0),
        }
    }

    /// Sends `SIGNAL sig` (no reply).
    pub fn signal(&self, sig: i32) -> io::Result<()> {
        send_packet(self.sock.as_raw_fd(), &Request::Signal(sig).encode())
    }
}

impl HelperSpawner {
    /// Sends the request `make(id)` and waits for its reply (one exchange
    /// at a time; late replies to earlier requests are skipped). A lost
    /// helper stops the daemon (see [`helper_lost`]).
    fn exchange(&self, make: impl FnOnce(u64) -> Request) -> io::Result<Reply> {
        let mut next = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        *next += 1;
        let id = *next;
        let lost = |e: io::Error| {
            helper_lost();
            io::Error::new(e.kind(), format!("the privileged helper: {e}"))
        };
        send_packet(self.sock.as_raw_fd(), &make(id).encode()).map_err(lost)?;
        loop {
            let packet = recv_packet(self.sock.as_raw_fd())
                .map_err(lost)?
                .ok_or_else(|| lost(io::Error::other("it exited")))?;
            let reply = Reply::decode(&packet)
                .map_err(|e| lost(io::Error::new(io::ErrorKind::InvalidData, e)))?;
            let got = match &reply {
                Reply::Done { id, .. } | Reply::Fail { id, .. } | Reply::Report { id, .. } => *id,
            };
            if got == id {
                return Ok(reply);
            }
        }
    }
}

impl exec::Spawner for HelperSpawner {
    fn run(&self, spec: &Spec) -> Result<Outcome, ExecError> {
        let program = spec
            .argv
            .first()
            .map(|p| crate::path::display(p.as_bytes()))
            .ok_or(ExecError::EmptyArgv)?;
        let reply = self
            .exchange(|id| Request::Run {
                id,
                argv: spec.argv.clone(),
                env: spec.env.clone(),
                timeout: spec.timeout,
                grace: spec.grace,
                cwd: spec.cwd.clone(),
            })
            .map_err(|source| ExecError::Spawn {
                program: program.clone(),
                source,
            })?;
        match reply {
            Reply::Done { outcome, .. } => Ok(outcome),
            Reply::Fail { kind, message, .. } => {
                let source = match kind {
                    FAIL_NOT_FOUND => io::Error::new(io::ErrorKind::NotFound, message),
                    FAIL_DENIED => io::Error::new(io::ErrorKind::PermissionDenied, message),
                    _ => io::Error::other(message),
                };
                Err(ExecError::Spawn { program, source })
            }
            Reply::Report { .. } => Err(ExecError::Spawn {
                program,
                source: io::Error::other("the privileged helper answered a run with a report"),
            }),
        }
    }
}

/// The built-in mirror, run by the privileged helper: the daemon's handler
/// with `--splitting=process -M mirror`. It holds no capability to write.
pub struct MirrorClient {
    helper: Arc<HelperSpawner>,
}

impl MirrorClient {
    fn answer(reply: io::Result<Reply>) -> Result<Report, HandlerError> {
        match reply {
            Ok(Reply::Report { report, failed, .. }) if failed.is_empty() => Ok(report),
            Ok(Reply::Report { report, failed, .. }) => Err(HandlerError::Paths { failed, report }),
            Ok(Reply::Fail {
                kind: FAIL_DESTINATION_CHANGED,
                message,
                ..
            }) => Err(HandlerError::DestinationChanged(message)),
            Ok(Reply::Fail { message, .. }) => Err(HandlerError::Other(message)),
            Ok(Reply::Done { .. }) => Err(HandlerError::Other(
                "the privileged helper answered a mirror batch with an exit".into(),
            )),
            Err(e) => Err(HandlerError::Other(e.to_string())),
        }
    }
}

impl Handler for MirrorClient {
    fn name(&self) -> &str {
        "mirror"
    }

    fn run(&mut self, batch: &Batch) -> Result<Report, HandlerError> {
        MirrorClient::answer(self.helper.exchange(|id| Request::Mirror {
            id,
            ops: batch.ops.clone(),
        }))
    }
}

/// The handler for `-M mirror` when the helper runs the mirror: hands it
/// `rules` (at start and on every reload) and returns the client; None
/// without a helper.
pub fn mirror_client(rules: &Rules) -> Option<Result<MirrorClient, HandlerError>> {
    let helper = Arc::clone(HELPER.get()?);
    let text = rules.to_text();
    let set = helper.exchange(|id| Request::Rules { id, text });
    Some(MirrorClient::answer(set).map(|_| MirrorClient { helper }))
}

static HELPER: OnceLock<Arc<HelperSpawner>> = OnceLock::new();

/// The helper is gone (it crashed, was killed, or refused to go on): no
/// handler can run any more, so livesync stops the way SIGTERM stops it
/// (the last syncs fail, exit code 1) instead of retrying for ever.
fn helper_lost() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        log::error!(
            "the privileged helper (--splitting=process) is gone: stopping; restart livesync"
        );
        // SAFETY: plain syscall: a signal to ourselves, handled by the loop.
        unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
    });
}

struct Shared(Arc<HelperSpawner>);

impl exec::Spawner for Shared {
    fn run(&self, spec: &Spec) -> Result<Outcome, ExecError> {
        self.0.run(spec)
    }
}

/// Sends `sig` to the helper's running handlers; 1 if there is a helper.
pub fn signal(sig: libc::c_int) -> usize {
    match HELPER.get() {
        Some(h) => usize::from(h.signal(sig).is_ok()),
        None => 0,
    }
}

/// Closes every descriptor but 0, 1, 2 and `keep`.
fn close_other_fds(keep: RawFd) {
    let fds: Vec<RawFd> = match std::fs::read_dir("/proc/self/fd") {
        Ok(d) => d
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
            .collect(),
        Err(_) => (3..1024).collect(),
    };
    for fd in fds {
        if fd > 2 && fd != keep {
            // SAFETY: closing descriptors this fresh process owns; nothing
            // in it uses them any more.
            unsafe { libc::close(fd) };
        }
    }
}

/// Forks the helper (the daemon must be single-threaded and still
/// privileged) and installs the spawner that talks to it.
pub fn start(cfg: &Config, plan: &Plan) -> Result<(), String> {
    let s = &cfg.privileges;
    let checker = Checker {
        patterns: if s.check_execvp {
            Some(patterns(cfg)?)
        } else {
            None
        },
        lists_dir: cfg.lists_dir.clone(),
        private_parent: std::env::temp_dir(),
    };
    let privileged = Ident {
        uid: s.privileged_uid.unwrap_or(plan.start.uid),
        gid: s.privileged_gid.unwrap_or(plan.start.gid),
    };
    // The helper keeps what starting and stopping handlers needs.
    let mut kept: Vec<caps::Capability> = Vec::new();
    if plan.handler != privileged {
        kept.extend(privilege::SWITCH_CAPS);
    }
    if plan.handler.uid == 0 {
        kept.extend(privilege::WRITER_CAPS);
        kept.push(caps::Capability::CAP_DAC_READ_SEARCH);
    }
    kept.push(caps::Capability::CAP_KILL);
    let mirror = match (&cfg.mode, &cfg.destination) {
        (Mode::Mirror, Some(Destination::Local(dst))) => {
            // The helper writes the destination as root would.
            kept.extend(privilege::WRITER_CAPS);
            kept.push(caps::Capability::CAP_DAC_READ_SEARCH);
            Some(HelperMirror {
                src: cfg.watch_dir.clone(),
                dst: dst.clone(),
                root: None,
                xattrs: cfg.xattrs,
                acls: cfg.acls,
                engine: None,
            })
        }
        _ => None,
    };
    kept.sort_by_key(|c| c.index());
    kept.dedup();
    let setup = privilege::child_setup(s, privileged, plan.handler, privilege::mask(&kept));
    let (ours, theirs) = seqpacket_pair().map_err(|e| format!("--splitting: socketpair: {e}"))?;
    // SAFETY: the daemon is single-threaded here (documented requirement).
    match unsafe { libc::fork() } {
        -1 => Err(format!(
            "--splitting: cannot fork the helper: {}",
            io::Error::last_os_error()
        )),
        0 => {
            drop(ours);
            // SAFETY: plain prctl; the helper dies with the daemon.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
            close_other_fds(theirs.as_raw_fd());
            let unison = (s.check_execvp && cfg.mode == Mode::Unison).then_some(plan.handler);
            let code = match helper_main(theirs, privileged, &kept, setup, checker, mirror, unison)
            {
                Ok(()) => 0,
                Err(e) => {
                    log::error!("privileged helper: {e}");
                    1
                }
            };
            std::process::exit(code)
        }
        pid => {
            drop(theirs);
            log::info!("--splitting=process: privileged helper is pid {pid}");
            let h = Arc::new(HelperSpawner::new(ours));
            let _ = HELPER.set(Arc::clone(&h));
            exec::set_spawner(Box::new(Shared(h)));
            Ok(())
        }
    }
}

/// Sets every signal a program may catch, but SIGCHLD and the fault
/// signals, to `how` (async-signal-safe: it runs between fork and exec too).
fn set_dispositions(how: libc::sighandler_t) {
    let keep = [
        libc::SIGKILL,
        libc::SIGSTOP,
        libc::SIGCHLD,
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGFPE,
        libc::SIGILL,
        libc::SIGABRT,
        libc::SIGTRAP,
        libc::SIGSYS,
    ];
    for sig in 1..=libc::SIGRTMAX() {
        if !keep.contains(&sig) {
            // SAFETY: plain syscall; unknown or reserved numbers just fail.
            unsafe { libc::signal(sig, how) };
        }
    }
}

fn helper_main(
    sock: OwnedFd,
    me: Ident,
    kept: &[caps::Capability],
    setup: privilege::ChildSetup,
    checker: Checker,
    mirror: Option<HelperMirror>,
    unison_for: Option<Ident>,
) -> Result<(), String> {
    let set: caps::CapsHashSet = kept.iter().copied().collect();
    // unison's state dir (see HelperConfig::unison_state), made while the
    // helper may still give it to the handler's user.
    let unison_state = match unison_for {
        Some(handler) => {
            let dir = crate::handler::unison::private_dir(&std::env::temp_dir())
                .map_err(|e| e.to_string())?;
            if handler.uid != privilege::current().uid {
                nix::unistd::chown(
                    dir.path(),
                    Some(nix::unistd::Uid::from_raw(handler.uid)),
                    Some(nix::unistd::Gid::from_raw(handler.gid)),
                )
                .map_err(|e| format!("unison state dir {}: chown: {e}", dir.path().display()))?;
            }
            Some(dir)
        }
        None => None,
    };
    if privilege::current().uid == 0 {
        privilege::drop_to(me, &set, setup.inheritable.is_none()).map_err(|e| e.to_string())?;
    }
    // The helper is never ptrace-able or dumpable by the daemon's user.
    // SAFETY: plain prctl on ourselves.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0) };
    // The daemon's signal handlers came along with the fork and would write
    // to descriptors closed above: the helper ignores what the daemon
    // catches (the daemon stops it by closing the socket; SIGKILL and its
    // death signal still end it), and handlers get the defaults back.
    set_dispositions(libc::SIG_IGN);
    let cfg = HelperConfig {
        checker,
        setup: Some(Arc::new(move || {
            set_dispositions(libc::SIG_DFL);
            setup.apply()
        })),
        mirror,
        unison_state: unison_state.as_ref().map(|d| d.path().to_path_buf()),
    };
    let result = serve(sock, cfg);
    if let Some(dir) = unison_state {
        let _ = std::fs::remove_dir_all(dir.path());
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn requests_round_trip_and_garbage_is_refused() {
        let r = Request::Run {
            id: 7,
            argv: os(&["/bin/echo", "a b", "--rsh=x"]),
            env: vec![("CLSYNC_STATUS".into(), "running".into())],
            timeout: Some(Duration::from_secs(3)),
            grace: Duration::from_millis(200),
            cwd: Some(PathBuf::from("/srv/www")),
        };
        assert_eq!(Request::decode(&r.encode()), Ok(r.clone()));
        let mut long = r.encode();
        long.push(0);
        assert!(Request::decode(&long).is_err());
        let enc = r.encode();
        assert!(Request::decode(&enc[..enc.len() - 1]).is_err());
        assert!(Request::decode(&[9]).is_err());
        assert!(Request::decode(&Request::Signal(libc::SIGUSR1).encode()).is_err());
        let Request::Run {
            id,
            argv,
            timeout,
            grace,
            ..
        } = r
        else {
            unreachable!()
        };
        let mut bad_env = Request::Run {
            id,
            argv,
            env: vec![("LD_PRELOAD".into(), "/tmp/x.so".into())],
            timeout,
            grace,
            cwd: None,
        };
        let e = Request::decode(&bad_env.encode()).expect_err("env");
        assert!(e.contains("LD_PRELOAD"), "{e}");
        // UNISON only names unison's private state dir.
        let state = std::env::temp_dir().join("livesync-unison-0123456789abcdef");
        for (v, ok) in [
            (state.clone().into_os_string(), true),
            (
                std::env::temp_dir().join("livesync-unison-zz").into(),
                false,
            ),
            ("/home/u/.unison".into(), false),
            (state.join("x").into_os_string(), false),
        ] {
            let Request::Run { env, .. } = &mut bad_env else {
                unreachable!()
            };
            *env = vec![("UNISON".into(), v.clone())];
            assert_eq!(Request::decode(&bad_env.encode()).is_ok(), ok, "{v:?}");
        }
        let d = Reply::Done {
            id: 3,
            outcome: Outcome::TimedOut {
                after: Duration::from_millis(1500),
                signal: Some(9),
            },
        };
        assert_eq!(Reply::decode(&d.encode()), Ok(d));
        // A mirror report with the paths it skipped and those that failed.
        let issue = |p: &[u8], recursive| PathIssue {
            path: p.to_vec(),
            recursive,
            message: format!("{}: no", String::from_utf8_lossy(p)),
        };
        let rep = Reply::Report {
            id: 4,
            report: Report {
                copied: 1,
                deleted: 2,
                renamed: 3,
                skipped: vec![issue(b"a/secret", false)],
                ..Report::default()
            },
            failed: vec![issue(b"", true), issue(b"big", false)],
        };
        assert_eq!(Reply::decode(&rep.encode()), Ok(rep.clone()));
        let mut bad = rep.clone();
        if let Reply::Report { failed, .. } = &mut bad {
            failed[0].path = b"../x".to_vec();
        }
        assert!(
            Reply::decode(&bad.encode()).is_err(),
            "a path outside the tree"
        );
        // Too many to carry: the whole batch fails instead.
        let mut huge = rep;
        if let Reply::Report { failed, .. } = &mut huge {
            let long = vec![b'x'; 200];
            failed.extend((0..MAX_PACKET / 200).map(|_| issue(&long, false)));
        }
        assert!(matches!(
            Reply::decode(&reply_packet(&huge)),
            Ok(Reply::Fail { id: 4, .. })
        ));
    }
}
