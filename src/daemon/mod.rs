//! The daemon: the one event loop that ties monitor, tree, queue and
//! handler together, plus the process-global state (logger, signals, exit,
//! pid/status files, forking).
//!
//! The loop is single-threaded and reads top to bottom: act on signals (and
//! control requests), collect finished work, drain kernel events into the
//! queue, start the next due batch (or the next step of the way out), then
//! wait (poll) on the backend's fd, the signal pipe, the worker's wake
//! pipe and the control socket, with a timeout at the next deadline. Batches and hooks run on the
//! worker thread, so the kernel queue keeps being drained while a handler
//! copies, rsync runs or a hook runs. A failed batch goes back to the queue
//! with backoff; nothing is dropped.
//!
//! # Parallel runs (`-p`, `--threads`)
//! The worker is a pool: one thread with `-p off`, `--threads` with `safe`
//! and `full`, each with its own handler (SIGHUP gives each a new one).
//! The loop pops one batch per free thread; with `safe` the queue is
//! exclusive, so batches in flight never share a path (see `queue.rs`).
//! Results come back on one channel and are collected before the kernel
//! is read, as with one thread. Hooks and every step of the way out run
//! only when all threads are idle; TERM signals every running handler's
//! process group. An iteration is still one handler run; with parallel
//! runs `--max-iterations` starts no more runs than it has left.
//!
//! # Statuses (`--status-file`, `CLSYNC_STATUS`)
//! `starting` (watches being added), `initsync` (the initial sync runs or is
//! retried), `running`, `synchandler error` (waiting to retry a failed
//! batch, or failed paths; the rest keeps syncing meanwhile), `hold on` (standby file or pause), `rehashing` (SIGHUP),
//! `preexit` (pre-exit hook), `terminating` (the last syncs), `exiting`
//! (exit hook, cleanup).
//!
//! # Iterations (`CLSYNC_ITERATION`, `--max-iterations`)
//! An iteration is one handler run on one batch, a retry included. The runs
//! that carry the initial sync (the whole-tree sync; retries of it too) are
//! not counted. `CLSYNC_ITERATION` is the number of counted runs finished
//! before the one it is given to (0 for the first sync after the initial
//! one). `--max-iterations N` (N ≥ 1): the initial sync and at most N−1
//! counted runs; then livesync ends as below. N = 0: no limit.
//!
//! # Ways out, and their order
//! - `--exit-on-no-events`: after the initial sync, pending changes are
//!   synced without waiting for their windows until nothing is pending; then
//!   the pre-exit hook, one more sync of whatever is pending by then (e.g.
//!   what the hook changed), the exit hook, exit 0.
//! - `--max-iterations` reached: pre-exit hook, (with `--exit-on-no-events`
//!   the one more sync, not counted), exit hook, exit 0. Without
//!   `--exit-on-no-events` pending changes are left unsynced (logged).
//! - `--only-initialsync`: nothing is watched; the initial sync, pre-exit
//!   hook, exit hook, exit 0.
//! - SIGQUIT: the running batch finishes; pending changes are synced; the
//!   pre-exit hook; with `--sync-on-quit` one more sync; the exit hook; exit 0.
//! - SIGTERM/SIGINT: running handlers' process groups get SIGTERM (SIGKILL
//!   2 s later); their batch goes back to the queue; everything pending is
//!   synced (a failure now ends the run with exit 1); the exit hook; exit 0.
//!   A second TERM/INT kills running handlers and exits 0 at once, without
//!   syncing or hooks.
//! - The standby file (and a pause) holds the syncs of the way out too;
//!   remove it, or send a second TERM, to get out.
//!
//! The standby file is looked at right before a sync would start (so no
//! sync starts once it exists), and every second otherwise, to keep the
//! status up to date.
//!
//! Hooks run as `PROGRAM LABEL` with `CLSYNC_STATUS` (and the other
//! variables handlers get) in their environment, under the `-k` timeout,
//! and only if the initial sync completed. A failed pre-exit hook (a
//! non-zero exit, a signal, the timeout, or a program that cannot run)
//! ends livesync at once with exit code 1 and one error line: no more
//! syncs, no exit hook (in a server move, "start the new server" must not
//! follow a failed "stop the old one"). A failed exit hook makes the exit
//! code 1. `--ignore-hook-failures` only logs them, as clsync does.
//!
//! # Failures
//! A failed batch is re-queued with backoff (doubling from max(-w, 0.5 s) up
//! to 60 s). With `-r N`, livesync exits 1 after N failed tries of the same
//! changes, unless `--ignore-failures`: then it keeps retrying, with the same
//! backoff, and never drops the batch. `-k` (rsyncdirect) kills a handler's
//! whole process group after that many seconds; that counts as a failure.
//! A stop signal does not wait for a retry's backoff: the last sync runs at
//! once. Nothing a handler runs may ask a question: `RSYNC_RSH` defaults
//! to batch-mode ssh ([`DEFAULT_RSYNC_RSH`]), and [`crate::exec`] starts
//! every child without a controlling terminal.
//! A destination that was moved or replaced while running (the mirror's
//! [`HandlerError::DestinationChanged`]) is not retried: livesync exits 2.
//!
//! # The destination
//! The built-in mirror's missing destination (and its parents) is made
//! before privileges are dropped, so it belongs to the invoking user; a
//! start that fails before the loop removes it again. Its root is opened
//! once and shared by every mirror engine (worker threads, reloads). A
//! local destination, found by device and inode, is never walked or watched
//! from the source side.
//!
//! When the handler names the paths that failed ([`HandlerError::Paths`]:
//! the built-in mirror does), the rest of the batch counts as done and only
//! those paths are re-queued, each with its own backoff and its own count
//! for `-r`; nothing else waits for them (a full destination still takes
//! the deletions that free it). Source paths the handler may not read are
//! skipped: one warning each, counted in the status (`skipped_paths`) and
//! the metrics, synced again on their next change or every 5 minutes
//! (`SKIPPED_RETRY`); they hold up neither the initial sync, nor the
//! hooks, nor `--exit-on-no-events`.
//!
//! # Other signals
//! SIGHUP re-reads the command line and the config file (and so the rules
//! file), keeps pending changes, swaps the rules in the tree and a new
//! handler in on the worker (it takes effect from the next batch), adds
//! watches the new rules allow and syncs the whole tree at once. The watch
//! dir, destination, pid/status files and the delay windows stay as they
//! were (a restart changes them). SIGUSR2 syncs the whole tree at once.
//! The control socket (`--socket`, see `socket.rs`) is polled with the
//! other fds (and serviced at its next client deadline, so a silent client
//! is dropped on time); its orders go through [`Control`] like the signals,
//! and its `status` reply is built from [`Snapshot`] and the loop's counters.

pub mod background;
pub mod batchlog; // the per-batch info line: a few per interval, then a summary
pub mod files;
pub mod log;
pub mod metrics; // Prometheus text, --metrics-file (the operations issue)
pub mod notify; // sd_notify (the operations issue)
pub mod ops; // notifications and metrics file, driven by the loop (the operations issue)
pub mod progress; // the initial sync's progress bar (the operations issue)
pub mod socket;

use crate::batch::{Batch, Lane, Op};
use crate::config::{cli, Config, Destination, Mode, Threading};
use crate::exec;
use crate::handler::{self, build, BuildError, Handler, HandlerError, Report};
use crate::monitor::{Monitor, MonitorError, RawEvent};
use crate::path;
use crate::queue::{BatchId, Change, Queue};
use crate::rules::Rules;
use crate::security::{jail, privilege, procs, split};
use crate::signature;
use crate::tree::{Tree, TreeError, UNWATCHED_RESCAN};
use clap::Parser;
use files::{Status, StatusFile};
use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long an unpaired `IN_MOVED_FROM` waits for its `IN_MOVED_TO`.
const MOVE_PAIR_WAIT: Duration = Duration::from_millis(2);
/// Stack of the worker thread that runs handlers.
const WORKER_STACK: usize = 256 << 20;
/// How many reads of the kernel queue one turn of the loop may do.
const MAX_READS_PER_TURN: usize = 64;
/// Longest wait between retries of a failing batch.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How often source paths skipped as unreadable are tried again when no
/// change to them comes first.
const SKIPPED_RETRY: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The watch limit was reached while setting up (exit code 3).
    #[error("{0}")]
    WatchLimit(MonitorError),
    #[error("{0}")]
    Monitor(#[from] MonitorError),
    #[error("{0}")]
    Tree(#[from] TreeError),
    #[error("{0}")]
    Handler(#[from] HandlerError),
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("{0}")]
    GaveUp(String),
    /// A start-up security step (privilege drop, namespaces, jail, helper).
    #[error("{0}")]
    Security(#[from] crate::security::Error),
    /// so/rsyncso: the shared object was refused or failed to start (exit code 2).
    #[error("{0}")]
    SharedObject(#[from] crate::handler::so::SoError),
    /// The destination was moved or replaced while running (exit code 2:
    /// a restart would write through whatever replaced it, so systemd's
    /// `RestartPreventExitStatus=2` leaves it to a human).
    #[error("{0}")]
    DestinationChanged(String),
    /// The watch dir cannot be read by the daemon's user (exit code 2).
    #[error("{0}")]
    WatchDirUnreadable(String),
}

impl DaemonError {
    /// The documented exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            DaemonError::WatchLimit(_) => 3,
            DaemonError::SharedObject(_)
            | DaemonError::DestinationChanged(_)
            | DaemonError::WatchDirUnreadable(_) => 2,
            _ => 1,
        }
    }
}

/// What the `--chroot` keeper does at the end: removes the pid file and
/// the control socket, each only while it is still the one livesync made.
fn remove_leftovers(left: &jail::Leftovers) {
    if let Some((p, ident)) = &left.pid_file {
        files::remove_pid_file(p, *ident);
    }
    if let Some((p, ident)) = &left.socket {
        socket::remove_socket_file(p, *ident);
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> DaemonError {
    let what = what.into();
    move |source| DaemonError::Io { what, source }
}

/// Which hook a hook job runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hook {
    PreExit,
    Exit,
}

impl Hook {
    fn option(self) -> &'static str {
        match self {
            Hook::PreExit => "--pre-exit-hook",
            Hook::Exit => "--exit-hook",
        }
    }
}

/// Work for a worker thread, done in the order sent.
enum Job {
    Batch {
        id: BatchId,
        batch: Batch,
        env: Vec<(OsString, OsString)>,
        /// It carries the initial sync.
        initial: bool,
    },
    Hook {
        which: Hook,
        spec: exec::Spec,
    },
    /// Use this handler from the next batch on (SIGHUP).
    Replace(Box<dyn Handler>),
}

/// Finished work, sent back from a worker thread.
enum Done {
    Batch {
        id: BatchId,
        batch: Batch,
        result: Result<Report, HandlerError>,
        elapsed: Duration,
        initial: bool,
    },
    Hook {
        which: Hook,
        result: Result<exec::Outcome, exec::ExecError>,
    },
}

/// The threads that run handlers and hooks: one with `-p off`, `--threads`
/// with `-p safe|full`. Each thread owns its own handler and runs one job
/// at a time; results come back on one channel, with a byte on the wake
/// socket for the loop's poll.
struct Worker {
    slots: Vec<Slot>,
    from_worker: mpsc::Receiver<(usize, Done)>,
    wake: UnixStream,
    /// At least one thread runs a job.
    busy: bool,
}

/// One worker thread, as the loop sees it.
struct Slot {
    to_worker: mpsc::Sender<Job>,
    busy: bool,
    /// Receives once the worker thread has dropped its handler (so that an
    /// so handler's clsyncapi_deinit runs before livesync exits).
    gone: mpsc::Receiver<()>,
}

impl Worker {
    /// Starts one thread per handler.
    fn spawn(handlers: Vec<Box<dyn Handler>>) -> Result<Worker, DaemonError> {
        let (wake, wake_tx) =
            UnixStream::pair().map_err(io_err("cannot create the worker wake-up socket"))?;
        wake.set_nonblocking(true)
            .map_err(io_err("worker wake-up socket"))?;
        let (results, from_worker) = mpsc::channel::<(usize, Done)>();
        let mut slots = Vec::with_capacity(handlers.len());
        for (n, mut handler) in handlers.into_iter().enumerate() {
            let (to_worker, jobs) = mpsc::channel::<Job>();
            let (gone_tx, gone) = mpsc::channel::<()>();
            let results = results.clone();
            let mut wake_tx = wake_tx
                .try_clone()
                .map_err(io_err("worker wake-up socket"))?;
            std::thread::Builder::new()
                .name(format!("livesync-worker-{n}"))
                // The mirror walks a subtree depth-first; paths may be up to
                // PATH_MAX deep (about 2,000 levels). Reserved, not committed.
                .stack_size(WORKER_STACK)
                .spawn(move || {
                    for job in jobs {
                        let done = match job {
                            Job::Replace(h) => {
                                handler = h;
                                continue;
                            }
                            Job::Batch {
                                id,
                                batch,
                                env,
                                initial,
                            } => {
                                let start = Instant::now();
                                handler.set_env(env);
                                let result = handler.run(&batch);
                                Done::Batch {
                                    id,
                                    batch,
                                    result,
                                    elapsed: start.elapsed(),
                                    initial,
                                }
                            }
                            Job::Hook { which, spec } => Done::Hook {
                                which,
                                result: spec.run(),
                            },
                        };
                        if results.send((n, done)).is_err() {
                            break;
                        }
                        let _ = wake_tx.write_all(b"x");
                    }
                    drop(handler);
                    let _ = gone_tx.send(());
                })
                .map_err(io_err("cannot start a worker thread"))?;
            slots.push(Slot {
                to_worker,
                busy: false,
                gone,
            });
        }
        Ok(Worker {
            slots,
            from_worker,
            wake,
            busy: false,
        })
    }

    /// A thread is free for a batch or a hook.
    fn has_idle(&self) -> bool {
        self.slots.iter().any(|s| !s.busy)
    }

    /// Jobs running now.
    fn running(&self) -> usize {
        self.slots.iter().filter(|s| s.busy).count()
    }

    /// Hands a batch or a hook to a free thread (check [`Worker::has_idle`]).
    fn send(&mut self, job: Job) -> Result<(), DaemonError> {
        let stopped = || DaemonError::GaveUp("a worker thread stopped unexpectedly".into());
        let slot = self
            .slots
            .iter_mut()
            .find(|s| !s.busy)
            .ok_or_else(|| DaemonError::GaveUp("no free worker thread for a job".into()))?;
        slot.to_worker.send(job).map_err(|_| stopped())?;
        slot.busy = true;
        self.busy = true;
        Ok(())
    }

    /// SIGHUP: one new handler per thread, used from its next batch on.
    fn replace(&mut self, handlers: Vec<Box<dyn Handler>>) -> Result<(), DaemonError> {
        for (slot, h) in self.slots.iter().zip(handlers) {
            slot.to_worker
                .send(Job::Replace(h))
                .map_err(|_| DaemonError::GaveUp("a worker thread stopped unexpectedly".into()))?;
        }
        Ok(())
    }

    fn try_done(&mut self) -> Option<Done> {
        let mut sink = [0u8; 64];
        while matches!(self.wake.read(&mut sink), Ok(n) if n > 0) {}
        let (n, done) = self.from_worker.try_recv().ok()?;
        if let Some(slot) = self.slots.get_mut(n) {
            slot.busy = false;
        }
        self.busy = self.slots.iter().any(|s| s.busy);
        Some(done)
    }
}

impl Drop for Worker {
    /// Closes the job channels, which ends the workers' loops and drops
    /// their handlers, and waits a little (5 s in all) for the idle ones (a
    /// running sync is never waited for).
    fn drop(&mut self) {
        for slot in &mut self.slots {
            let (closed, _) = mpsc::channel();
            drop(std::mem::replace(&mut slot.to_worker, closed));
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for slot in self.slots.iter().filter(|s| !s.busy) {
            let left = deadline.saturating_duration_since(Instant::now());
            let _ = slot.gone.recv_timeout(left);
        }
    }
}

/// Signals we act on: each sets its flag and wakes the loop.
struct Signals {
    /// TERM or INT.
    stop: Arc<AtomicBool>,
    /// QUIT.
    quit: Arc<AtomicBool>,
    /// HUP.
    reload: Arc<AtomicBool>,
    /// USR2 (clsync's signal 12).
    resync: Arc<AtomicBool>,
    /// Signal 29 (SIGIO): dump the state.
    dump: Arc<AtomicBool>,
    /// `--custom-signals`: a flag per signal, and the config block to load.
    custom: Vec<(i32, Arc<AtomicBool>, String)>,
    wake: UnixStream,
}

impl Signals {
    fn install(custom: &[(i32, String)]) -> Result<Signals, DaemonError> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGIO, SIGQUIT, SIGTERM, SIGUSR2};
        let (wake, tx) = UnixStream::pair().map_err(io_err("cannot create the signal socket"))?;
        wake.set_nonblocking(true)
            .map_err(io_err("signal socket"))?;
        let s = Signals {
            stop: Arc::new(AtomicBool::new(false)),
            quit: Arc::new(AtomicBool::new(false)),
            reload: Arc::new(AtomicBool::new(false)),
            resync: Arc::new(AtomicBool::new(false)),
            dump: Arc::new(AtomicBool::new(false)),
            custom: custom
                .iter()
                .map(|(sig, block)| (*sig, Arc::new(AtomicBool::new(false)), block.clone()))
                .collect(),
            wake,
        };
        let builtin = [
            (SIGTERM, &s.stop),
            (SIGINT, &s.stop),
            (SIGQUIT, &s.quit),
            (SIGHUP, &s.reload),
            (SIGUSR2, &s.resync),
            (SIGIO, &s.dump),
        ];
        let custom = s.custom.iter().map(|(sig, flag, _)| (*sig, flag));
        for (sig, flag) in builtin.into_iter().chain(custom) {
            signal_hook::flag::register(sig, Arc::clone(flag))
                .map_err(io_err("cannot install a signal handler"))?;
            let tx = tx.try_clone().map_err(io_err("signal socket"))?;
            signal_hook::low_level::pipe::register(sig, tx)
                .map_err(io_err("cannot install a signal handler"))?;
        }
        Ok(s)
    }

    fn drain(&mut self) {
        let mut sink = [0u8; 64];
        while matches!(self.wake.read(&mut sink), Ok(n) if n > 0) {}
    }
}

/// Waits until one of `fds` is readable or `timeout` passes.
fn wait_readable(fds: &[RawFd], timeout: Option<Duration>) -> io::Result<Vec<bool>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms: libc::c_int = match timeout {
        None => -1,
        // Round up so we never wake a hair before a batch is due.
        Some(t) => t.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int,
    };
    // SAFETY: `pfds` is a valid, initialised array of `pfds.len()` pollfd
    // structs that lives across the call.
    let rc = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(vec![false; fds.len()]);
        }
        return Err(e);
    }
    Ok(pfds.iter().map(|p| p.revents != 0).collect())
}

/// Whether the mode hands event bits (`%EVENT-MASK%`, shell lists) to its
/// program: only clsync's command modes do.
fn reports_masks(mode: &Mode) -> bool {
    matches!(mode, Mode::Simple | Mode::Direct | Mode::Shell)
}

/// What building handlers needs from the daemon (see
/// `handler::build::Context`); called after the privileges are dropped.
fn build_context() -> build::Context {
    build::Context {
        dst_root: None,
        preserve_owner: privilege::dropped_from_root(),
        helper_mirror: Some(helper_mirror),
    }
}

/// The client of the mirror the `--splitting=process` helper runs.
fn helper_mirror(rules: &Rules) -> Option<Result<Box<dyn Handler>, HandlerError>> {
    split::mirror_client(rules).map(|r| r.map(|c| Box::new(c) as Box<dyn Handler>))
}

impl From<BuildError> for DaemonError {
    fn from(e: BuildError) -> Self {
        match e {
            BuildError::Handler(e) => DaemonError::Handler(e),
            BuildError::SharedObject(e) => DaemonError::SharedObject(e),
            BuildError::Invalid(why) => DaemonError::GaveUp(why),
        }
    }
}

/// One step of the way out. Each waits for the worker to be idle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Sync everything pending, batch after batch, until nothing is.
    Sync,
    /// Run `--pre-exit-hook` (only after a completed initial sync).
    PreExit,
    /// Run `--exit-hook` (only after a completed initial sync).
    ExitHook,
}

/// How livesync is leaving.
#[derive(Debug)]
struct Ending {
    steps: VecDeque<Step>,
    /// TERM/INT: a failed sync ends the run (exit 1) instead of being
    /// retried, and running handlers were told to stop.
    hard: bool,
    /// The hook of the front step has been started.
    hook_started: bool,
}

/// A request from outside the signal path: the control socket
/// (src/daemon/socket.rs) maps its commands onto these and calls
/// [`Daemon::control`]; signals go through the same function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Sync the whole tree now (SIGUSR2).
    Resync,
    /// Hold every sync (like the standby file) until `Resume`.
    Pause,
    Resume,
    /// Stop running handlers, sync what is pending, exit hook, exit
    /// (SIGTERM/SIGINT); a second one exits at once.
    Stop,
    /// Let the running handler finish, sync what is pending, pre-exit hook,
    /// (with --sync-on-quit one more sync), exit hook, exit (SIGQUIT).
    Quit,
    /// Exit at once: kill running handlers, no syncs, no hooks.
    Die,
}

/// What the loop is doing, for a status report (the control socket).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub status: Status,
    /// Pending ops (syncs and renames).
    pub pending: usize,
    /// A handler or hook is running.
    pub busy: bool,
    /// Handler runs finished after the initial sync (`CLSYNC_ITERATION`).
    pub iterations: u64,
    pub initial_done: bool,
    pub paused: bool,
}

/// The state of one run: everything the loop owns.
struct Daemon {
    cfg: Config,
    /// What handlers are built with; it holds the built-in mirror's
    /// destination root for the daemon's life (handlers built on reload
    /// write through it too).
    build: build::Context,
    /// The backend `--monitor` chose (src/monitor/mod.rs `open`).
    monitor: Box<dyn Monitor>,
    tree: Tree,
    queue: Queue,
    worker: Worker,
    signals: Signals,
    raw: Vec<RawEvent>,
    changes: Vec<Change>,
    /// When directories the watch limit left unwatched were last rescanned.
    last_unwatched_rescan: Instant,
    /// The original command line, for reloading (SIGHUP).
    argv: Vec<OsString>,
    /// The working directory at start (`-b` moves to `/`), for reloading.
    start_dir: Option<PathBuf>,
    status: Status,
    status_file: Option<StatusFile>,
    /// The initial sync has completed (or was skipped).
    initial_done: bool,
    /// A batch running now carries the initial sync.
    initial_running: bool,
    /// Handler runs finished after the initial sync (CLSYNC_ITERATION).
    iterations: u64,
    /// A failed batch waits to be retried until then.
    retry_at: Option<Instant>,
    /// The standby file existed when last checked.
    standby: bool,
    next_standby_check: Instant,
    /// Held by [`Control::Pause`].
    paused: bool,
    ending: Option<Ending>,
    /// Handlers were signalled to stop since the running batch started: its
    /// failure is ours, not the destination's.
    killed: bool,
    /// Ops of the batches handed to the worker and not finished yet.
    ops_in_flight: usize,
    /// When to SIGKILL handler groups that ignored our SIGTERM.
    kill_deadline: Option<Instant>,
    /// `--modification-signature`.
    signatures: Option<signature::Signatures>,
    /// `--socket`.
    socket: Option<socket::ControlSocket>,
    counters: Counters,
    /// Source paths the handler skipped because it may not read them
    /// (`true`: with their subtree), until a sync of them works.
    skipped: std::collections::BTreeMap<Vec<u8>, bool>,
    /// When the skipped paths are tried again, changed or not.
    next_skipped_retry: Option<Instant>,
    last_sync: Option<socket::LastSync>,
    /// systemd notifications and the metrics file (the operations issue).
    ops: ops::Ops,
    /// Which batch lines go out at info (a few per interval, then a summary).
    batch_log: batchlog::BatchLog,
}

/// What the loop counts, for `status` on the control socket.
#[derive(Clone, Debug, Default)]
struct Counters {
    events: u64,
    batches: u64,
    paths_synced: u64,
    failures: u64,
    retries: u64,
}

/// How often the standby file is looked at while it holds syncs (and, at
/// most, while it does not).
const STANDBY_POLL: Duration = Duration::from_millis(250);
const STANDBY_IDLE_POLL: Duration = Duration::from_secs(1);
/// Time between SIGTERM and SIGKILL for running handlers at shutdown.
const KILL_GRACE: Duration = Duration::from_secs(2);

/// Shell mode with `--have-recursive-sync` hands a new directory to
/// `initialsync` at once, as clsync does: its subtree skips the `-t` window
/// (issue #3).
fn at_once(cfg: &Config, c: Change) -> Change {
    match c {
        Change::Subtree { path, .. } if cfg.mode == Mode::Shell && cfg.have_recursive_sync => {
            Change::Subtree {
                path,
                instant: true,
            }
        }
        c => c,
    }
}

/// The wait before try `tries + 1` of something that failed `tries`
/// times: `base` doubling, up to [`MAX_BACKOFF`].
fn backoff(base: Duration, tries: u32) -> Duration {
    base.checked_mul(1u32 << tries.saturating_sub(1).min(16))
        .unwrap_or(MAX_BACKOFF)
        .min(MAX_BACKOFF)
}

/// A change to a directory that was skipped as unreadable (a chmod, say)
/// syncs what it holds too: its contents were never seen.
fn skipped_dir_changed(
    skipped: &std::collections::BTreeMap<Vec<u8>, bool>,
    c: &Change,
) -> Option<Change> {
    match c {
        Change::Modified {
            path, is_dir: true, ..
        } if skipped.get(path) == Some(&true) => Some(Change::Subtree {
            path: path.clone(),
            instant: false,
        }),
        _ => None,
    }
}

/// Whether a batch carries the whole-tree sync.
fn is_full_sync(batch: &Batch) -> bool {
    batch
        .ops
        .iter()
        .any(|op| matches!(op, Op::Sync { path, recursive: true } if path.is_empty()))
}

impl Daemon {
    /// Reads every ready kernel event into the queue.
    fn drain_events(&mut self) -> Result<(), DaemonError> {
        // Bounded, so that an endless storm cannot starve the start of due
        // batches; the fd stays readable and the next poll returns at once.
        for _ in 0..MAX_READS_PER_TURN {
            self.raw.clear();
            self.monitor.read_events(&mut self.raw)?;
            if self.raw.is_empty() && self.tree.has_held() {
                // The other half of a rename is queued right behind the first
                // one by the kernel; give it a moment before calling it a move
                // out of the tree.
                wait_readable(&[self.monitor.fd()], Some(MOVE_PAIR_WAIT))
                    .map_err(io_err("poll"))?;
                self.monitor.read_events(&mut self.raw)?;
                if self.raw.is_empty() {
                    self.tree.flush_held(&mut self.monitor, &mut self.changes);
                }
            }
            if self.raw.is_empty() {
                break;
            }
            self.counters.events += self.raw.len() as u64;
            if ::log::log_enabled!(::log::Level::Trace) {
                for ev in &self.raw {
                    ::log::trace!(
                        "event {:?} {} dir={} cookie={}",
                        ev.kind,
                        path::display(&ev.path),
                        ev.is_dir,
                        ev.cookie
                    );
                }
            }
            self.tree
                .process(&mut self.monitor, &self.raw, &mut self.changes)?;
            // Event bits for the command modes' %EVENT-MASK% (issue #3).
            for (p, m) in self.tree.take_masks() {
                self.queue.note_mask(&p, m);
            }
            let now = Instant::now();
            for c in self.changes.drain(..) {
                ::log::trace!("change {c:?}");
                let again = skipped_dir_changed(&self.skipped, &c);
                self.queue.push(now, at_once(&self.cfg, c));
                if let Some(again) = again {
                    self.queue.push(now, again);
                }
            }
        }
        let now = Instant::now();
        for c in self.changes.drain(..) {
            let again = skipped_dir_changed(&self.skipped, &c);
            self.queue.push(now, at_once(&self.cfg, c));
            if let Some(again) = again {
                self.queue.push(now, again);
            }
        }
        Ok(())
    }

    /// Sets the status (and the status file) to `s`.
    fn set_status(&mut self, s: Status) {
        if self.status != s {
            ::log::debug!("status: {}", s.as_str());
        }
        self.status = s;
        if let Some(f) = self.status_file.as_mut() {
            f.set(s);
        }
        self.ops.on_status(s);
    }

    /// The status that follows from the state of the loop.
    fn derived_status(&self) -> Status {
        if let Some(e) = &self.ending {
            return match e.steps.front() {
                Some(Step::Sync) => Status::Terminating,
                Some(Step::PreExit) => Status::PreExit,
                Some(Step::ExitHook) | None => Status::Exiting,
            };
        }
        if self.standby || self.paused {
            Status::HoldOn
        } else if self.retry_at.is_some() || self.queue.waiting() > 0 {
            // A failed batch, or failed paths, wait for their retries.
            Status::HandlerError
        } else if !self.initial_done {
            Status::InitSync
        } else {
            Status::Running
        }
    }

    /// What the loop is doing now (for the control socket's status command).
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            status: self.status,
            pending: self.queue.len(),
            busy: self.worker.busy,
            iterations: self.iterations,
            initial_done: self.initial_done,
            paused: self.paused,
        }
    }

    /// Syncs are held: standby file, pause, or a retry that is not due yet.
    fn held(&self, now: Instant) -> bool {
        self.standby || self.paused || self.retry_at.is_some_and(|t| t > now)
    }

    fn check_standby(&mut self, now: Instant) {
        let Some(p) = &self.cfg.standby_file else {
            return;
        };
        if now < self.next_standby_check && !self.standby {
            return;
        }
        let was = self.standby;
        self.standby = files::standby(p);
        self.next_standby_check = now + STANDBY_IDLE_POLL;
        if self.standby != was {
            if self.standby {
                ::log::info!(
                    "standby file {} exists: holding syncs until it is removed",
                    path::display_os(p)
                );
            } else {
                ::log::info!("standby file is gone: syncing again");
            }
        }
    }

    /// Looks at the standby file now, whatever the poll interval says (the
    /// last look may be a second old): no sync may start once it exists.
    /// True when syncs are held by it.
    fn standby_before_sync(&mut self, now: Instant) -> bool {
        if self.cfg.standby_file.is_some() {
            self.next_standby_check = now;
            self.check_standby(now);
        }
        self.standby
    }

    /// The environment of a handler run: clsync's variables and ours.
    fn handler_env(&self, status: Status) -> Vec<(OsString, OsString)> {
        let st = OsString::from(status.as_str());
        let it = OsString::from(self.iterations.to_string());
        vec![
            ("CLSYNC_STATUS".into(), st.clone()),
            ("CLSYNC_ITERATION".into(), it.clone()),
            ("LIVESYNC_STATUS".into(), st),
            ("LIVESYNC_ITERATION".into(), it),
        ]
    }

    fn start_batch(&mut self, id: BatchId, mut batch: Batch) -> Result<(), DaemonError> {
        if let Some(sigs) = self.signatures.as_mut() {
            let dropped = sigs.filter(&mut batch);
            if dropped > 0 {
                ::log::debug!("--modification-signature: {dropped} unchanged path(s) not synced");
            }
            if batch.is_empty() {
                // Nothing left to run: the popped batch is done already.
                self.queue.finished_id(id, Instant::now());
                return Ok(());
            }
        }
        ::log::debug!(
            "starting a batch of {} op(s) ({} lane)",
            batch.len(),
            batch.lane.name()
        );
        let initial = !self.initial_done && is_full_sync(&batch);
        self.initial_running |= initial;
        if initial {
            self.ops.initial_sync_started();
        }
        // The status file says what runs before the handler can look.
        let status = self.derived_status();
        self.set_status(status);
        let env = self.handler_env(status);
        if !self.worker.busy {
            // (With -p safe|full, runs that a stop signal hit may still be
            // finishing: their failure stays ours.)
            self.killed = false;
        }
        // Listing backends check afterwards what the handler may have read.
        self.monitor.syncing(&batch);
        self.ops_in_flight += batch.len();
        self.worker.send(Job::Batch {
            id,
            batch,
            env,
            initial,
        })
    }

    /// Starts the hook for `which` if one is set; false if there is none to run.
    fn start_hook(&mut self, which: Hook) -> Result<bool, DaemonError> {
        let program = match which {
            Hook::PreExit => self.cfg.pre_exit_hook.clone(),
            Hook::Exit => self.cfg.exit_hook.clone(),
        };
        let Some(program) = program else {
            return Ok(false);
        };
        if !self.initial_done {
            ::log::info!(
                "not running {} {}: the initial sync did not complete",
                which.option(),
                path::display(program.as_bytes())
            );
            return Ok(false);
        }
        let status = match which {
            Hook::PreExit => Status::PreExit,
            Hook::Exit => Status::Exiting,
        };
        let mut spec = exec::Spec::new(vec![program, OsString::from(&self.cfg.label)]);
        spec.env = self.handler_env(status);
        spec.timeout = self.cfg.timeout_sync;
        ::log::info!(
            "running {} {}",
            which.option(),
            path::display(spec.argv[0].as_bytes())
        );
        self.killed = false;
        self.worker.send(Job::Hook { which, spec })?;
        Ok(true)
    }

    fn finish(&mut self, done: Done) -> Result<(), DaemonError> {
        let (id, batch, result, elapsed, was_initial) = match done {
            Done::Hook { which, result } => {
                let program = match which {
                    Hook::PreExit => self.cfg.pre_exit_hook.as_ref(),
                    Hook::Exit => self.cfg.exit_hook.as_ref(),
                }
                .map(|p| path::display(p.as_bytes()))
                .unwrap_or_default();
                let failure = match result {
                    Ok(o) if o.success(&[]) => {
                        ::log::info!("{} finished", which.option());
                        None
                    }
                    Ok(o) => Some(format!("{} {program} {o}", which.option())),
                    Err(e) => Some(format!("{}: {e}", which.option())),
                };
                if let Some(failure) = failure {
                    if self.cfg.ignore_hook_failures {
                        ::log::warn!("{failure} (ignored: --ignore-hook-failures)");
                    } else if which == Hook::PreExit {
                        // A server move: "stop the old one" failed, so
                        // "start the new one" must not run.
                        let left = self.queue.len();
                        return Err(DaemonError::GaveUp(format!(
                            "{failure}: {}{}",
                            if self.cfg.exit_hook.is_some() {
                                "not running --exit-hook, exiting"
                            } else {
                                "exiting"
                            },
                            if left > 0 {
                                format!(" ({left} pending op(s) not synced)")
                            } else {
                                String::new()
                            }
                        )));
                    } else {
                        return Err(DaemonError::GaveUp(failure));
                    }
                }
                if let Some(e) = self.ending.as_mut() {
                    if e.hook_started {
                        e.hook_started = false;
                        e.steps.pop_front();
                    }
                }
                return Ok(());
            }
            Done::Batch {
                id,
                batch,
                result,
                elapsed,
                initial,
            } => (id, batch, result, elapsed, initial),
        };
        let now = Instant::now();
        self.monitor.synced();
        let n = batch.len();
        self.ops_in_flight = self.ops_in_flight.saturating_sub(n);
        if was_initial {
            self.initial_running = false;
            self.ops.initial_sync_ended();
        }
        if self.initial_done && !was_initial {
            self.iterations += 1;
        }
        if result.is_ok() {
            self.queue.finished_id(id, now);
        }
        match &result {
            Ok(report) | Err(HandlerError::Paths { report, .. }) => {
                self.note_skipped(&batch, &report.skipped, now);
            }
            Err(_) => {}
        }
        self.counters.batches += 1;
        self.last_sync = Some(socket::LastSync {
            finished_unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            duration_ms: elapsed.as_millis() as u64,
            exit_code: match &result {
                Ok(r) => r.exit_code,
                Err(HandlerError::Exit { code, .. }) => Some(*code),
                Err(_) => None,
            },
            ok: result.is_ok(),
        });
        match result {
            Ok(report) => {
                self.counters.paths_synced += n as u64;
                self.retry_at = None;
                if was_initial {
                    self.initial_done = true;
                    ::log::info!("initial sync done");
                }
                let how = match report.exit_code {
                    Some(code) => format!("exit code {code}"),
                    None => format!(
                        "copied {}, deleted {}, renamed {}",
                        report.copied, report.deleted, report.renamed
                    ),
                };
                let line = format!(
                    "synced {n} path{} ({} lane) with {} in {:.1} ms: {how}",
                    if n == 1 { "" } else { "s" },
                    batch.lane.name(),
                    self.worker_name(),
                    elapsed.as_secs_f64() * 1000.0
                );
                let (level, summary) = self.batch_log.finished(
                    now,
                    batchlog::Finished {
                        paths: n as u64,
                        mirror: report.exit_code.is_none().then_some((
                            report.copied,
                            report.deleted,
                            report.renamed,
                        )),
                        elapsed,
                    },
                );
                if let Some(s) = summary {
                    ::log::info!("{s}");
                }
                match level {
                    batchlog::Level::Info => ::log::info!("{line}"),
                    batchlog::Level::Debug => ::log::debug!("{line}"),
                }
            }
            Err(e) if self.killed => {
                // We stopped it (shutting down): not the destination's fault.
                ::log::info!("stopped a running sync of {n} op(s) ({e}); syncing them again");
                self.queue.requeue_id(id, now, batch, now);
            }
            Err(HandlerError::DestinationChanged(why)) => {
                // No retry: every retry would fail the same way, and the
                // fix (finding out who swapped the destination) is a human's.
                if self.worker.busy {
                    procs::signal_child_groups(libc::SIGTERM);
                }
                return Err(DaemonError::DestinationChanged(why));
            }
            Err(HandlerError::Paths { failed, report }) => {
                // Everything else was done: only the failed paths come
                // back, each with its own backoff, and the rest flows on.
                let paths: Vec<(Vec<u8>, bool)> = failed
                    .iter()
                    .map(|f| (f.path.clone(), f.recursive))
                    .collect();
                let base = self.backoff_base();
                let tries = self
                    .queue
                    .requeue_failed_id(id, now, paths, |attempt| now + backoff(base, attempt));
                let hard_end = self.ending.as_ref().is_some_and(|e| e.hard);
                let exhausted = self.cfg.retries != 0 && tries >= self.cfg.retries;
                let first = HandlerError::Paths {
                    failed: failed.clone(),
                    report: Report::default(),
                };
                if hard_end || (exhausted && !self.cfg.ignore_failures) {
                    let why = if hard_end {
                        "the last sync before exiting failed".to_string()
                    } else {
                        format!(
                            "a path failed {tries} time(s) (-r {}), giving up",
                            self.cfg.retries
                        )
                    };
                    if self.worker.busy {
                        procs::signal_child_groups(libc::SIGTERM);
                    }
                    return Err(DaemonError::GaveUp(format!(
                        "{why}: {first}; {} op(s) not synced; a restart resyncs everything",
                        self.queue.len()
                    )));
                }
                self.counters.paths_synced += n.saturating_sub(failed.len()) as u64;
                self.counters.failures += 1;
                self.counters.retries += 1;
                if was_initial {
                    self.initial_done = true;
                    ::log::info!(
                        "initial sync done, but for {} path(s) that are retried",
                        failed.len()
                    );
                }
                ::log::error!(
                    "sync of {n} path{} ({} lane) with {}: {} path(s) failed (try {tries}{}): {first}{}; retrying {} in {:.1} s, the rest is done (copied {}, deleted {}, renamed {})",
                    if n == 1 { "" } else { "s" },
                    batch.lane.name(),
                    self.worker_name(),
                    failed.len(),
                    if exhausted {
                        ", --ignore-failures keeps it"
                    } else {
                        ""
                    },
                    privilege::failure_hint().unwrap_or_default(),
                    if failed.len() == 1 { "it" } else { "them" },
                    backoff(base, tries).as_secs_f64(),
                    report.copied,
                    report.deleted,
                    report.renamed
                );
            }
            Err(e) => {
                let tries = batch.attempt + 1;
                let hard_end = self.ending.as_ref().is_some_and(|e| e.hard);
                let exhausted = self.cfg.retries != 0 && tries >= self.cfg.retries;
                if hard_end || (exhausted && !self.cfg.ignore_failures) {
                    let paths: Vec<String> = batch
                        .ops
                        .iter()
                        .flat_map(|op| op.paths())
                        .take(10)
                        .map(path::display)
                        .collect();
                    let why = if hard_end {
                        "the last sync before exiting failed".to_string()
                    } else {
                        format!(
                            "sync failed {tries} time(s) (-r {}), giving up",
                            self.cfg.retries
                        )
                    };
                    if self.worker.busy {
                        // -p safe|full: other runs must not outlive us.
                        procs::signal_child_groups(libc::SIGTERM);
                    }
                    return Err(DaemonError::GaveUp(format!(
                        "{why}: {e}; {} op(s) not synced, e.g. {}; a restart resyncs everything",
                        n + self.queue.len(),
                        paths.join(", ")
                    )));
                }
                let backoff = backoff(self.backoff_base(), tries);
                ::log::error!(
                    "sync of {n} path{} failed (try {tries}{}): {e}{}; retrying in {:.1} s",
                    if n == 1 { "" } else { "s" },
                    if exhausted {
                        ", --ignore-failures keeps it"
                    } else {
                        ""
                    },
                    privilege::failure_hint().unwrap_or_default(),
                    backoff.as_secs_f64()
                );
                self.counters.failures += 1;
                self.counters.retries += 1;
                // `requeue` counts this failure in the batch's attempt.
                self.retry_at = Some(now + backoff);
                self.queue.requeue_id(id, now, batch, now + backoff);
            }
        }
        // The status snapshot costs a walk over the queue: only for a file.
        if self.ops.writes_metrics() {
            let snapshot = self.socket_status();
            self.ops.after_batch(&snapshot);
        }
        Ok(())
    }

    fn worker_name(&self) -> &'static str {
        self.cfg.mode.name()
    }

    /// The first wait after a failure: max(-w, 0.5 s).
    fn backoff_base(&self) -> Duration {
        self.cfg.queue.interval.max(Duration::from_millis(500))
    }

    /// Keeps the source paths the handler skipped as unreadable: each is
    /// warned about once, counted in the status, and synced again on its
    /// next change or after [`SKIPPED_RETRY`]. What `batch` synced without
    /// skipping it again is no longer skipped.
    fn note_skipped(&mut self, batch: &Batch, skipped: &[crate::handler::PathIssue], now: Instant) {
        let mut before: std::collections::BTreeSet<Vec<u8>> = std::collections::BTreeSet::new();
        if !self.skipped.is_empty() {
            for op in &batch.ops {
                let recursive = !matches!(
                    op,
                    Op::Sync {
                        recursive: false,
                        ..
                    }
                );
                for p in op.paths() {
                    let mut gone: Vec<Vec<u8>> = Vec::new();
                    if self.skipped.contains_key(p) {
                        gone.push(p.to_vec());
                    }
                    if recursive && p.is_empty() {
                        gone.extend(self.skipped.keys().cloned());
                    } else if recursive {
                        // Everything below `p`: the keys from `p/` to `p0`.
                        let lo = [p, b"/"].concat();
                        let hi = [p, b"0"].concat();
                        gone.extend(self.skipped.range(lo..hi).map(|(k, _)| k.clone()));
                    }
                    for k in gone {
                        self.skipped.remove(&k);
                        before.insert(k);
                    }
                }
            }
        }
        for s in skipped {
            let known = before.contains(&s.path) || self.skipped.contains_key(&s.path);
            *self.skipped.entry(s.path.clone()).or_default() |= s.recursive;
            if !known {
                ::log::warn!(
                    "skipped {}: {}; it is synced when it changes (or tried again every {} s); make it readable by the daemon's user",
                    path::display(&s.path),
                    s.message,
                    SKIPPED_RETRY.as_secs()
                );
            }
        }
        if !self.skipped.is_empty() && self.next_skipped_retry.is_none() {
            self.next_skipped_retry = Some(now + SKIPPED_RETRY);
        } else if self.skipped.is_empty() {
            self.next_skipped_retry = None;
        }
    }

    /// The slow timer of the skipped paths: sync them again, changed or not.
    fn retry_skipped(&mut self, now: Instant) {
        if self.next_skipped_retry.map_or(true, |t| t > now) {
            return;
        }
        // They stay listed (and are not warned about again) until a sync
        // of them works.
        self.next_skipped_retry = Some(now + SKIPPED_RETRY);
        for p in self.skipped.keys() {
            ::log::debug!("trying skipped {} again", path::display(p));
            self.queue.push(
                now,
                Change::Subtree {
                    path: p.clone(),
                    instant: false,
                },
            );
        }
    }

    /// Acts on a request (from a signal or the control socket). Returns
    /// true when livesync must exit at once.
    fn control(&mut self, c: Control) -> bool {
        let now = Instant::now();
        match c {
            Control::Resync => {
                ::log::info!("full resync requested");
                self.queue.push(
                    now,
                    Change::Subtree {
                        path: Vec::new(),
                        instant: true,
                    },
                );
            }
            Control::Pause => {
                ::log::info!("paused: holding syncs until resumed");
                self.paused = true;
            }
            Control::Resume => {
                ::log::info!("resumed");
                self.paused = false;
            }
            Control::Stop => {
                if self.ending.as_ref().is_some_and(|e| e.hard) {
                    // What runs now is dropped too.
                    ::log::warn!(
                        "second stop signal: exiting now, {} pending op(s) not synced",
                        self.queue.len() + self.ops_in_flight
                    );
                    return self.control(Control::Die);
                }
                ::log::info!(
                    "stop signal: stopping running handlers, syncing what is pending, then exiting (send it again to exit at once)"
                );
                if self.worker.busy && privilege::signal_handlers(libc::SIGTERM) > 0 {
                    self.killed = true;
                    self.kill_deadline = Some(now + KILL_GRACE);
                }
                // The last try runs now, not after a retry's backoff (up
                // to a minute): one stop signal must end livesync promptly.
                self.retry_at = None;
                self.ending = Some(Ending {
                    steps: [Step::Sync, Step::ExitHook].into(),
                    hard: true,
                    hook_started: false,
                });
            }
            Control::Quit => {
                if self.ending.is_some() {
                    ::log::info!("quit requested, but already on the way out");
                    return false;
                }
                ::log::info!(
                    "quit signal: finishing the running sync, syncing what is pending, then exiting"
                );
                let mut steps: VecDeque<Step> = [Step::Sync, Step::PreExit].into();
                if self.cfg.sync_on_quit {
                    steps.push_back(Step::Sync);
                }
                steps.push_back(Step::ExitHook);
                self.begin_ending(steps);
            }
            Control::Die => {
                privilege::signal_handlers(libc::SIGKILL);
                return true;
            }
        }
        false
    }

    fn begin_ending(&mut self, steps: VecDeque<Step>) {
        self.ending = Some(Ending {
            steps,
            hard: false,
            hook_started: false,
        });
    }

    /// Another counted batch may start under `--max-iterations` (with -p
    /// safe|full, the runs still going on count as if finished).
    fn below_max_iterations(&self) -> bool {
        let max = u64::from(self.cfg.max_iterations);
        max == 0 || !self.initial_done || self.iterations + self.worker.running() as u64 + 1 < max
    }

    /// The soft ends that follow from the options, checked while idle.
    fn check_soft_end(&mut self) {
        if self.ending.is_some() || !self.initial_done || self.worker.busy {
            return;
        }
        if self.cfg.only_initialsync {
            if !self.queue.is_empty() {
                return; // paths of it that failed wait for their retries
            }
            ::log::info!("--only-initialsync: the initial sync is done");
            self.begin_ending([Step::PreExit, Step::ExitHook].into());
            return;
        }
        let max = u64::from(self.cfg.max_iterations);
        if max > 0 && self.iterations + 1 >= max {
            ::log::info!(
                "--max-iterations {max}: the initial sync and {} sync(s) after it are done{}",
                self.iterations,
                if self.queue.is_empty() || self.cfg.exit_on_no_events {
                    String::new()
                } else {
                    format!("; {} pending op(s) are left unsynced", self.queue.len())
                }
            );
            let mut steps: VecDeque<Step> = [Step::PreExit].into();
            if self.cfg.exit_on_no_events {
                steps.push_back(Step::Sync);
            }
            steps.push_back(Step::ExitHook);
            self.begin_ending(steps);
            return;
        }
        if self.cfg.exit_on_no_events && self.queue.is_empty() {
            ::log::info!("--exit-on-no-events: nothing is pending");
            self.begin_ending([Step::PreExit, Step::Sync, Step::ExitHook].into());
        }
    }

    /// Moves the ending on while the worker is idle. Returns true when
    /// every step is done.
    fn advance_ending(&mut self, now: Instant) -> Result<bool, DaemonError> {
        while !self.worker.busy {
            let Some(e) = self.ending.as_ref() else {
                return Ok(false);
            };
            let Some(&step) = e.steps.front() else {
                return Ok(true);
            };
            self.set_status(self.derived_status());
            match step {
                Step::Sync => {
                    if self.held(now) || self.standby_before_sync(now) {
                        return Ok(false);
                    }
                    // The last sync takes every change made up to now: a
                    // backend that scans (poll) looks now, not when due.
                    self.monitor.catch_up();
                    self.drain_events()?;
                    // A hard end tries everything once more; a soft one
                    // lets failed paths wait for their retries.
                    let hard = self.ending.as_ref().is_some_and(|e| e.hard);
                    let popped = if hard {
                        self.queue.pop_all_with_id()
                    } else {
                        self.queue.pop_ready_with_id(now)
                    };
                    match popped {
                        Some((id, batch)) => self.start_batch(id, batch)?,
                        None if !hard && !self.queue.is_empty() => return Ok(false),
                        None => {
                            if let Some(e) = self.ending.as_mut() {
                                e.steps.pop_front();
                            }
                        }
                    }
                }
                Step::PreExit | Step::ExitHook => {
                    let which = if step == Step::PreExit {
                        Hook::PreExit
                    } else {
                        Hook::Exit
                    };
                    let started = self.start_hook(which)?;
                    if let Some(e) = self.ending.as_mut() {
                        if started {
                            e.hook_started = true;
                        } else {
                            e.steps.pop_front();
                        }
                    }
                }
            }
        }
        Ok(false)
    }

    /// SIGHUP: reads the command line and the config file again and swaps
    /// in the new rules and handler; pending changes are kept, and the
    /// whole tree is synced again under the new rules.
    /// Re-reads the command line and the config file; with `block`, that
    /// config block replaces `-K` (`--custom-signals`).
    fn reload(&mut self, block: Option<&str>) {
        if let Some(jail) = &self.cfg.privileges.jail {
            ::log::error!(
                "reload: not possible inside --chroot {} (the command line's paths and the config file are outside the jail); restart livesync to apply changes",
                path::display_os(jail.root())
            );
            return;
        }
        self.set_status(Status::Rehashing);
        match block {
            Some(b) => ::log::info!("reloading the rules and the configuration from block [{b}]"),
            None => ::log::info!("reloading the rules and the configuration"),
        }
        let argv = match block {
            Some(b) => with_config_block(&self.argv, b),
            None => self.argv.clone(),
        };
        if let Some(d) = &self.start_dir {
            if let Err(e) = std::env::set_current_dir(d) {
                ::log::warn!("cannot return to {} to reload: {e}", path::display_os(d));
            }
        }
        let parsed = cli::Args::try_parse_from(&argv)
            .map_err(|e| {
                e.render()
                    .to_string()
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
            .and_then(|a| Config::from_args(a).map_err(|e| e.to_string()));
        if self.start_dir.is_some() {
            let _ = std::env::set_current_dir("/");
        }
        let new = match parsed {
            Ok(c) => c,
            Err(e) => {
                ::log::error!("reload failed, keeping the running configuration: {e}");
                return;
            }
        };
        if new.watch_dir != self.cfg.watch_dir || new.destination != self.cfg.destination {
            ::log::error!(
                "reload: the watch dir and the destination cannot change while running; keeping the running configuration (restart livesync to change them)"
            );
            return;
        }
        let mut new = new;
        if (new.threading, new.threads) != (self.cfg.threading, self.cfg.threads) {
            ::log::warn!("reload: new -p/--threads values take effect after a restart");
            (new.threading, new.threads) = (self.cfg.threading, self.cfg.threads);
        }
        // The event backend is not reopened on reload.
        if (new.monitor, &new.monitor_options) != (self.cfg.monitor, &self.cfg.monitor_options) {
            ::log::warn!(
                "reload: --monitor and --poll-interval cannot change while running; keeping --monitor {} (restart livesync to change them)",
                self.cfg.monitor.name()
            );
            new.monitor = self.cfg.monitor;
            new.monitor_options = self.cfg.monitor_options.clone();
        }
        let handlers = match handler::build_all(&new, &mut self.build) {
            Ok(h) => h,
            Err(e) => {
                ::log::error!("reload failed, keeping the running configuration: {e}");
                return;
            }
        };
        if let Err(e) = self.worker.replace(handlers) {
            ::log::error!("reload failed: {e}");
            return;
        }
        if new.queue != self.cfg.queue {
            ::log::warn!("reload: new -t/-T/-w/-B values take effect after a restart");
        }
        // Privileges are dropped once, at start (src/security/privilege.rs).
        if new.privileges != self.cfg.privileges || new.mode != self.cfg.mode {
            ::log::warn!(
                "reload: privilege options (and the capabilities a new -M needs) take effect after a restart"
            );
        }
        for w in &new.warnings {
            ::log::warn!("{w}");
        }
        self.tree.set_rules(Arc::clone(&new.rules));
        self.tree.record_masks(reports_masks(&new.mode));
        let queue = self.cfg.queue.clone();
        let (pid, status) = (self.cfg.pid_file.clone(), self.cfg.status_file.clone());
        let privileges = self.cfg.privileges.clone();
        if new.modification_signature != self.cfg.modification_signature {
            self.signatures = new
                .modification_signature
                .clone()
                .map(|m| signature::Signatures::new(&new.watch_dir, m));
        }
        self.cfg = new;
        self.cfg.queue = queue;
        self.cfg.pid_file = pid;
        self.cfg.status_file = status;
        self.cfg.privileges = privileges;
        // Directories the new rules let in need watches; and what the new
        // rules sync must reach the destination.
        let now = Instant::now();
        if !self.cfg.only_initialsync {
            if let Err(e) = self.tree.watch_subtree(&mut self.monitor, b"", false) {
                ::log::error!("reload: {e}");
            }
        }
        self.queue.push(
            now,
            Change::Subtree {
                path: Vec::new(),
                instant: true,
            },
        );
        ::log::info!("reloaded; syncing the whole tree under the new rules");
    }

    /// Writes the state (signal 29, `dump` on the control socket): the
    /// status JSON and the watched directories, to a new 0600 file in
    /// `--dump-dir`, or to the log without one.
    fn dump(&self) {
        let mut text = self.socket_status().to_json();
        text.push('\n');
        let watched = self.monitor.watched_under(b"");
        let Some(dir) = &self.cfg.dump_dir else {
            ::log::info!(
                "state: {} ({} watched directories)",
                text.trim_end(),
                watched.len()
            );
            return;
        };
        for w in &watched {
            text.push_str("watch ");
            text.push_str(&path::display(w));
            text.push('\n');
        }
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let file = dir.join(format!("livesync-{}-{millis}.dump", std::process::id()));
        match files::write_new_private(&file, text.as_bytes()) {
            Ok(()) => ::log::info!("state dumped to {}", path::display_os(&file)),
            Err(e) => ::log::error!("cannot dump the state to {}: {e}", path::display_os(&file)),
        }
    }

    /// Answers the control socket's clients and acts on their orders.
    /// Returns true when livesync must exit at once.
    fn serve_socket(&mut self) -> bool {
        let Some(mut sock) = self.socket.take() else {
            return false;
        };
        let commands = {
            let me = &*self;
            sock.service(&|| me.socket_status())
        };
        self.socket = Some(sock);
        for c in commands {
            let exit_now = match c {
                socket::Command::Resync => self.control(Control::Resync),
                socket::Command::Pause => self.control(Control::Pause),
                socket::Command::Resume => self.control(Control::Resume),
                socket::Command::Quit => self.control(Control::Quit),
                socket::Command::Die => self.control(Control::Die),
                socket::Command::Dump => {
                    self.dump();
                    false
                }
                socket::Command::Set(key, _) => {
                    ::log::warn!("control socket: set {key}: not supported");
                    false
                }
            };
            if exit_now {
                return true;
            }
        }
        false
    }

    /// The `status` reply of the control socket.
    fn socket_status(&self) -> socket::Status {
        let snap = self.snapshot();
        let now = Instant::now();
        socket::Status {
            state: snap.status.as_str().to_string(),
            queue: Lane::ALL
                .iter()
                .map(|&l| (l.name().to_string(), self.queue.lane_len(l)))
                .collect(),
            oldest_pending_age_ms: self
                .queue
                .oldest()
                .map(|t| now.saturating_duration_since(t).as_millis() as u64),
            last_sync: self.last_sync.clone(),
            counters: vec![
                ("events".into(), self.counters.events),
                ("batches".into(), self.counters.batches),
                ("paths_synced".into(), self.counters.paths_synced),
                ("failures".into(), self.counters.failures),
                ("retries".into(), self.counters.retries),
                ("rescans".into(), self.tree.stats.rescans),
                // Gauges: source paths skipped as unreadable, and paths
                // that failed on their own and wait for their retries.
                ("skipped_paths".into(), self.skipped.len() as u64),
                ("failed_paths".into(), self.queue.waiting() as u64),
                ("pending".into(), snap.pending as u64),
                ("iterations".into(), snap.iterations),
                // -p safe|full: handler runs (or hooks) going on now, of how many.
                ("running".into(), self.worker.running() as u64),
                ("threads".into(), self.worker.slots.len() as u64),
            ],
            watch_dir: path::display_os(&self.cfg.watch_dir),
            destination: self
                .cfg
                .destination
                .as_ref()
                .map(|d| path::display(d.as_os_str().as_bytes()))
                .unwrap_or_default(),
            label: self.cfg.label.clone(),
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    fn run(&mut self) -> Result<(), DaemonError> {
        loop {
            if self.signals.stop.swap(false, Ordering::SeqCst) && self.control(Control::Stop) {
                return Ok(());
            }
            if self.signals.quit.swap(false, Ordering::SeqCst) {
                self.control(Control::Quit);
            }
            if self.signals.resync.swap(false, Ordering::SeqCst) {
                self.control(Control::Resync);
            }
            if self.signals.reload.swap(false, Ordering::SeqCst) {
                self.reload(None);
            }
            if self.signals.dump.swap(false, Ordering::SeqCst) {
                self.dump();
            }
            let blocks: Vec<String> = self
                .signals
                .custom
                .iter()
                .filter(|(_, flag, _)| flag.swap(false, Ordering::SeqCst))
                .map(|(_, _, block)| block.clone())
                .collect();
            for block in blocks {
                self.reload(Some(&block));
            }

            // Collect finished batches first and only then read the kernel:
            // every event the handlers' runs could have raced with is queued
            // by then, and the queue must see it before `finished()`.
            let dones: Vec<Done> = std::iter::from_fn(|| self.worker.try_done()).collect();
            self.drain_events()?;
            for done in dones {
                self.finish(done)?;
            }

            let now = Instant::now();
            if let Some(t) = self.kill_deadline {
                if !self.worker.busy {
                    self.kill_deadline = None;
                } else if now >= t {
                    ::log::warn!("running handlers ignored SIGTERM: killing them");
                    privilege::signal_handlers(libc::SIGKILL);
                    self.kill_deadline = None;
                }
            }
            if self.tree.has_unwatched() && now >= self.last_unwatched_rescan + UNWATCHED_RESCAN {
                self.last_unwatched_rescan = now;
                self.tree
                    .rescan_unwatched(&mut self.monitor, &mut self.changes);
                for c in self.changes.drain(..) {
                    self.queue.push(now, c);
                }
            }
            self.check_standby(now);
            if self.ending.is_none() {
                self.retry_skipped(now);
            }
            if self.retry_at.is_some_and(|t| t <= now) && self.worker.has_idle() {
                // Due: the retry itself is what runs next.
                self.retry_at = None;
            }

            self.check_soft_end();
            if self.ending.is_some() {
                if self.advance_ending(now)? {
                    return Ok(());
                }
            } else {
                // One batch per free worker thread (one thread with -p off).
                while self.worker.has_idle() && !self.held(now) && self.below_max_iterations() {
                    let all = self.cfg.exit_on_no_events && self.initial_done;
                    let due = if all {
                        self.queue.next_ready(now).is_some_and(|t| t <= now)
                    } else {
                        self.queue.next_due().is_some_and(|t| t <= now)
                    };
                    if !due || self.standby_before_sync(now) {
                        break;
                    }
                    let popped = if all {
                        // Sync until nothing is pending, without windows
                        // (failed paths still wait for their retries).
                        self.queue.pop_ready_with_id(now)
                    } else {
                        self.queue.pop_due_with_id(now)
                    };
                    let Some((id, batch)) = popped else { break };
                    self.start_batch(id, batch)?;
                }
            }
            self.set_status(self.derived_status());

            let idle = self.worker.has_idle();
            let batch_due = if !idle || self.held(now) || !self.below_max_iterations() {
                None
            } else if self.ending.as_ref().is_some_and(|e| e.hard) {
                (!self.queue.is_empty()).then_some(now)
            } else if self.ending.is_some() || (self.cfg.exit_on_no_events && self.initial_done) {
                self.queue.next_ready(now)
            } else {
                self.queue.next_due()
            };
            // -p safe: what is due may all wait for a batch in flight; the
            // end of that batch wakes the loop.
            let batch_due = batch_due.filter(|&t| t > now || self.queue.in_flight() == 0);
            let rescan_due = self
                .tree
                .has_unwatched()
                .then(|| self.last_unwatched_rescan + UNWATCHED_RESCAN);
            let standby_due = self.cfg.standby_file.as_ref().map(|_| {
                if self.standby {
                    now + STANDBY_POLL
                } else {
                    self.next_standby_check
                }
            });
            let retry_due = self.retry_at.filter(|_| idle);
            let skipped_due = self.next_skipped_retry.filter(|_| self.ending.is_none());
            // Batches logged at debug under load: their summary, when due.
            if let Some(summary) = self.batch_log.flush(now) {
                ::log::info!("{summary}");
            }
            // The watchdog and the metrics file (the operations issue).
            {
                let mut ops = std::mem::replace(&mut self.ops, ops::Ops::new(None, None));
                ops.tick(now, &|| self.socket_status());
                self.ops = ops;
            }
            // A backend without a descriptor (poll) says when to read it.
            let monitor_due = self.monitor.next_deadline();
            // A control socket client that stays silent is dropped on time.
            let socket_due = self.socket.as_ref().and_then(|s| s.next_deadline());
            let timeout = [
                batch_due,
                rescan_due,
                standby_due,
                retry_due,
                skipped_due,
                self.kill_deadline,
                self.batch_log.due(),
                self.ops.next_due(),
                monitor_due,
                socket_due,
            ]
            .into_iter()
            .flatten()
            .min()
            .map(|due| due.saturating_duration_since(Instant::now()));
            // The control socket (src/daemon/socket.rs) plugs in here: its
            // listener and client fds join `fds`, and after the poll each
            // complete command maps onto `self.control(Control::…)` (resync,
            // pause, resume, die, quit; `Control::Die` returning true means
            // return Ok(()) now) and a status request answers from
            // `self.snapshot()`.
            let mut fds = vec![
                self.monitor.fd(),
                self.worker.wake.as_raw_fd(),
                self.signals.wake.as_raw_fd(),
            ];
            if let Some(sock) = &self.socket {
                fds.extend(sock.fds());
            }
            let ready = wait_readable(&fds, timeout).map_err(io_err("poll"))?;
            if ready[2] {
                self.signals.drain();
            }
            let socket_timed_out = socket_due.is_some_and(|t| t <= Instant::now());
            if (ready[3..].iter().any(|&r| r) || socket_timed_out) && self.serve_socket() {
                return Ok(());
            }
        }
    }
}

/// `argv` with any `-K`/`--config-block` replaced by `block`.
fn with_config_block(argv: &[OsString], block: &str) -> Vec<OsString> {
    let mut out = Vec::with_capacity(argv.len() + 2);
    let mut skip_next = false;
    let mut after_dashes = false;
    for (i, a) in argv.iter().enumerate() {
        if skip_next {
            skip_next = false;
            continue;
        }
        let b = a.as_bytes();
        if after_dashes || i == 0 {
            after_dashes |= b == b"--" && i != 0;
            out.push(a.clone());
            continue;
        }
        if b == b"--" {
            after_dashes = true;
            out.push(a.clone());
        } else if b == b"-K" || b == b"--config-block" {
            skip_next = true;
        } else if !(b.starts_with(b"-K") || b.starts_with(b"--config-block=")) {
            out.push(a.clone());
        }
    }
    let at = out.iter().position(|a| a == "--").unwrap_or(out.len());
    out.splice(at..at, [OsString::from("-K"), OsString::from(block)]);
    out
}

/// Runs livesync with a validated configuration until it is stopped. Every
/// error is logged (one line) before it is returned.
pub fn run(cfg: Config) -> Result<(), DaemonError> {
    // -b with syslog: warnings and errors reach the terminal until detached.
    let tee = cfg.background && cfg.output == crate::config::Output::Syslog;
    if tee {
        log::tee_until_detached();
    }
    if let Err(e) = log::init_with(cfg.log_level, cfg.output, &cfg.syslog_socket) {
        // The logger cannot carry this one, nor the configuration's.
        eprintln!("livesync: warning: {e}");
        if !tee {
            for w in &cfg.warnings {
                eprintln!("livesync: warning: {w}");
            }
        }
    }
    for w in &cfg.warnings {
        ::log::warn!("{w}");
    }
    ::log::info!("{}", startup_line(&cfg));
    let result = start_and_run(cfg);
    // --chroot: the keeper removes the pid file and the socket now.
    jail::finish();
    match &result {
        Err(e) => ::log::error!("{e}"),
        Ok(()) => ::log::info!("exiting"),
    }
    result
}

/// What rsync runs to reach a `host:path` destination when `RSYNC_RSH` is
/// not set: ssh that never asks anything (a password, a passphrase, "add
/// this host key?") and fails with a message instead. Nobody can answer a
/// daemon's handler; without a terminal the question is never seen.
pub const DEFAULT_RSYNC_RSH: &str = "ssh -o BatchMode=yes";

/// Sets `RSYNC_RSH` to [`DEFAULT_RSYNC_RSH`] for every program livesync
/// runs, unless it is set already. rsync's own `-e`/`--rsh` in a handler
/// template still win over it. Call it before any thread starts.
fn batch_mode_ssh() {
    if std::env::var_os("RSYNC_RSH").is_none() {
        std::env::set_var("RSYNC_RSH", DEFAULT_RSYNC_RSH);
    }
}

/// The watch dir must be listable and searchable by the daemon's user (as
/// it is after dropping privileges): nothing below an unreadable one can
/// ever be synced, so that is a usage error, not a failure to retry.
fn check_watch_dir_readable(dir: &std::path::Path) -> Result<(), DaemonError> {
    let listed = std::fs::read_dir(dir).and_then(|mut d| d.next().transpose());
    let searched = listed.and_then(|_| std::fs::symlink_metadata(dir.join(".")));
    searched.map(|_| ()).map_err(|e| {
        DaemonError::WatchDirUnreadable(format!(
            "watch dir {}: cannot read it as uid {}: {e}; make it readable and searchable by that user, or run as another (-u)",
            path::display_os(dir),
            nix::unistd::geteuid()
        ))
    })
}

/// The first info line: what is watched, how, where it goes and the delay
/// windows in force (the 30 s defaults surprise people who expect a
/// mirror to follow within a second).
fn startup_line(cfg: &Config) -> String {
    let secs = |d: Duration| format!("{} s", d.as_secs_f64());
    let program = cfg
        .handler_program
        .as_ref()
        .map(|p| format!(" ({})", path::display(p.as_bytes())))
        .unwrap_or_default();
    let dest = match (&cfg.destination, &cfg.mode) {
        (Some(d), _) => format!("to {}", path::display(d.as_os_str().as_bytes())),
        (None, Mode::Csync2) => "to the peers in csync2's config".to_string(),
        (None, _) => "with no destination (-D)".to_string(),
    };
    let q = &cfg.queue;
    let big = if q.big_threshold == 0 {
        "no big-file lane (-B 0)".to_string()
    } else {
        format!(
            "files over {} bytes wait {} (-T)",
            q.big_threshold,
            secs(q.delay_big)
        )
    };
    format!(
        "{} {}: watch dir {} with {}, mode {}{program}, {dest}{}; changes wait {} (-t), {big}, at least {} between syncs (-w)",
        env!("CARGO_PKG_NAME"),
        env!("CARGO_PKG_VERSION"),
        path::display_os(&cfg.watch_dir),
        if cfg.only_initialsync { "nothing (--only-initialsync)" } else { cfg.monitor.name() },
        cfg.mode.name(),
        if cfg.dry_run { " (dry run: nothing is written)" } else { "" },
        secs(q.delay),
        secs(q.interval)
    )
}

/// Raises the soft limit of open files to the hard limit: the mirror holds
/// two directory descriptors per level of a deep tree, and inotify itself
/// needs none per watch, so the default soft limit of 1,024 is the only one
/// a deep tree could hit.
fn raise_open_file_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                ::log::debug!(
                    "cannot raise the open-file limit: {}",
                    io::Error::last_os_error()
                );
            }
        }
    }
}

/// Directories livesync made at start (a missing destination and its
/// parents), removed again, deepest first and only while empty, when the
/// start fails before the loop: a failed start leaves nothing behind.
#[derive(Default)]
struct MadeDirs(Vec<PathBuf>);

impl MadeDirs {
    /// Makes `dir` and its missing parents (`mkdir -p`), remembering which.
    fn create(dir: &std::path::Path) -> Result<MadeDirs, DaemonError> {
        let missing: Vec<PathBuf> = dir
            .ancestors()
            .take_while(|a| std::fs::symlink_metadata(a).is_err())
            .map(std::path::Path::to_path_buf)
            .collect();
        let mut made = MadeDirs::default();
        for d in missing.into_iter().rev() {
            match std::fs::create_dir(&d) {
                Ok(()) => made.0.push(d),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(DaemonError::GaveUp(format!(
                        "cannot create the destination {}: {e}; create it or check permissions",
                        path::display_os(dir)
                    )))
                }
            }
        }
        Ok(made)
    }

    /// The start went through: they stay.
    fn keep(mut self) {
        self.0.clear();
    }
}

impl Drop for MadeDirs {
    fn drop(&mut self) {
        for d in self.0.iter().rev() {
            if let Err(e) = std::fs::remove_dir(d) {
                ::log::debug!("cannot remove {} again: {e}", path::display_os(d));
            }
        }
    }
}

fn start_and_run(mut cfg: Config) -> Result<(), DaemonError> {
    // Before any thread starts: it edits the environment.
    let notifier = ops::notifier_from_env();
    batch_mode_ssh();
    raise_open_file_limit();
    let argv: Vec<OsString> = std::env::args_os().collect();
    let start_dir = std::env::current_dir().ok();
    let mut ready = if cfg.background {
        background::daemonize().map_err(io_err("cannot go into the background (-b)"))?
    } else {
        background::Ready::none()
    };
    // A missing -L or --dump-dir is created (clsync does: /dev/shm is empty
    // after a reboot), before the privilege drop, for the user the daemon
    // becomes.
    let owner = privilege::Plan::new(&cfg, privilege::current())
        .ok()
        .and_then(|p| p.daemon)
        .map(|who| (who.uid, who.gid));
    for (dir, what) in [
        (&cfg.lists_dir, "lists dir (-L)"),
        (&cfg.dump_dir, "dump dir"),
    ] {
        if let Some(d) = dir {
            files::ensure_dir(d, what, owner).map_err(DaemonError::GaveUp)?;
        }
    }
    // Guards: dropped (files removed) however this function returns.
    let mut pid_file = match &cfg.pid_file {
        Some(p) => Some(files::PidFile::create(p).map_err(DaemonError::GaveUp)?),
        None => None,
    };
    let mut status_file = cfg.status_file.as_deref().map(StatusFile::new);
    if let Some(f) = status_file.as_mut() {
        f.set(Status::Starting);
    }
    let signals = Signals::install(&cfg.custom_signals)?;
    let mut socket = match &cfg.socket {
        Some(p) => Some(
            socket::ControlSocket::bind(p, cfg.socket_owner, cfg.socket_mode)
                .map_err(|e| DaemonError::GaveUp(format!("control socket: {e}")))?,
        ),
        None => None,
    };
    if cfg.privileges.jail.is_some() {
        // --chroot: the pid file and the socket may lie outside the jail;
        // the keeper, which stays outside, removes them at the end.
        let left = jail::Leftovers {
            pid_file: pid_file.as_ref().map(files::PidFile::keeper_view),
            socket: socket.as_ref().map(socket::ControlSocket::keeper_view),
        };
        jail::spawn_keeper(&cfg, left, remove_leftovers)?;
        if let Some(p) = pid_file.take() {
            p.disown();
        }
        if let Some(s) = socket.as_mut() {
            s.disown_file();
        }
    }
    // The mirror's destination and its missing parents are made now, by
    // the invoking user: made after the drop they would belong to nobody,
    // and a nobody process could swap them for a symlink.
    // A start that fails before the loop removes them again. A dry run
    // writes nothing, not even the destination.
    let made_dst = match (&cfg.mode, &cfg.destination) {
        (Mode::Mirror, Some(Destination::Local(dst))) if !cfg.dry_run => MadeDirs::create(dst)?,
        _ => MadeDirs::default(),
    };
    // Privileges are dropped here, once, single-threaded: after what needs
    // root (pid file, status file, control socket), before the tree is
    // walked and watched (src/security/privilege.rs). With --chroot, `cfg`'s
    // paths are the jail's from here on.
    privilege::apply(&mut cfg)?;
    if let (Some(f), Some(p)) = (status_file.as_mut(), &cfg.status_file) {
        f.moved_to(p);
    }
    check_watch_dir_readable(&cfg.watch_dir)?;
    let mut monitor = crate::monitor::open(cfg.monitor, &cfg.watch_dir, &cfg.monitor_options)?;
    let mut tree = Tree::new(
        cfg.watch_dir.clone(),
        Arc::clone(&cfg.rules),
        cfg.queue.big_threshold,
    );
    tree.record_masks(reports_masks(&cfg.mode));
    if let Some(Destination::Local(dst)) = &cfg.destination {
        // A local destination is never walked from the source side, even
        // when a bind mount puts it below the watch dir.
        use std::os::unix::fs::MetadataExt;
        if let Ok(m) = std::fs::metadata(dst) {
            tree.never_enter((m.dev(), m.ino()));
        }
    }
    tree.track_links(!cfg.cancel_mon_stat);
    if cfg.only_initialsync {
        ::log::info!(
            "--only-initialsync: syncing {} once, watching nothing",
            path::display_os(&cfg.watch_dir)
        );
    } else {
        let started = Instant::now();
        let dirs = tree
            .watch_subtree(&mut monitor, b"", true)
            .map_err(|e| match e {
                e @ MonitorError::WatchLimit { .. } => DaemonError::WatchLimit(e),
                e => DaemonError::Monitor(e),
            })?;
        ::log::info!(
            "watching {} director{} under {} with {} ({:.0} ms)",
            monitor.watch_count(),
            if dirs == 1 { "y" } else { "ies" },
            path::display_os(&cfg.watch_dir),
            cfg.monitor.name(),
            started.elapsed().as_secs_f64() * 1000.0
        );
    }
    let mut build = build_context();
    let mut handlers = handler::build_all(&cfg, &mut build)?;
    // The initial sync's progress bar (the operations issue): every mirror
    // handler counts into one bar; only one of them runs the initial sync.
    let mut ops = ops::Ops::new(notifier, cfg.metrics_file.as_deref());
    {
        use std::io::IsTerminal;
        let tty = std::io::stderr().is_terminal();
        if progress::wanted(cfg.progress, tty, cfg.background, cfg.mode.clone())
            && !cfg.skip_initialsync
        {
            let counter = Arc::new(crate::handler::progress::Progress::default());
            let mut any = false;
            for h in &mut handlers {
                any |= h.count_progress(Arc::clone(&counter));
            }
            if any {
                ops = ops.with_progress(ops::ProgressSetup {
                    root: cfg.watch_dir.clone(),
                    rules: Arc::clone(&cfg.rules),
                    counter,
                });
            }
        }
    }
    let worker = Worker::spawn(handlers)?;
    let mut queue = Queue::new(cfg.queue.clone());
    // -p safe: batches in flight never share a path.
    queue.set_exclusive(cfg.threading == Threading::Safe);
    if cfg.skip_initialsync {
        ::log::info!("--skip-initialsync: syncing only what changes from now on");
    } else {
        // The initial sync: the whole tree, no window.
        queue.push(
            Instant::now(),
            Change::Subtree {
                path: Vec::new(),
                instant: true,
            },
        );
    }
    let initial_done = cfg.skip_initialsync;
    made_dst.keep();
    let mut daemon = Daemon {
        cfg,
        build,
        monitor,
        tree,
        queue,
        worker,
        signals,
        raw: Vec::new(),
        changes: Vec::new(),
        last_unwatched_rescan: Instant::now(),
        argv,
        start_dir: start_dir.filter(|_| ready.forked()),
        status: Status::Starting,
        status_file,
        initial_done,
        initial_running: false,
        iterations: 0,
        retry_at: None,
        standby: false,
        next_standby_check: Instant::now(),
        paused: false,
        ending: None,
        killed: false,
        ops_in_flight: 0,
        kill_deadline: None,
        signatures: None,
        socket,
        counters: Counters::default(),
        skipped: std::collections::BTreeMap::new(),
        next_skipped_retry: None,
        last_sync: None,
        ops,
        batch_log: batchlog::BatchLog::default(),
    };
    daemon.signatures = daemon
        .cfg
        .modification_signature
        .clone()
        .map(|m| signature::Signatures::new(&daemon.cfg.watch_dir, m));
    ready.notify();
    daemon.ops.ready(daemon.status, Instant::now());
    let result = daemon.run();
    if result.is_ok() {
        daemon.set_status(Status::Exiting);
    }
    let snapshot = daemon.socket_status();
    daemon.ops.finish(&snapshot);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_signal_block_replaces_the_config_block() {
        let v = |x: &[&str]| x.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            with_config_block(
                &v(&[
                    "livesync",
                    "-K",
                    "a",
                    "-Kb",
                    "--config-block=c",
                    "-W",
                    "/s",
                    "--",
                    "-K",
                    "x"
                ]),
                "dbg"
            ),
            v(&["livesync", "-W", "/s", "-K", "dbg", "--", "-K", "x"])
        );
        assert_eq!(
            with_config_block(&v(&["livesync", "--config-block", "a"]), "n"),
            v(&["livesync", "-K", "n"])
        );
    }

    #[test]
    fn a_change_to_a_skipped_directory_syncs_its_subtree() {
        let mut skipped = std::collections::BTreeMap::new();
        skipped.insert(b"locked".to_vec(), true);
        skipped.insert(b"secret".to_vec(), false);
        let modified = |p: &str, is_dir| Change::Modified {
            path: p.as_bytes().to_vec(),
            is_dir,
            size: 0,
        };
        assert_eq!(
            skipped_dir_changed(&skipped, &modified("locked", true)),
            Some(Change::Subtree {
                path: b"locked".to_vec(),
                instant: false
            })
        );
        assert_eq!(
            skipped_dir_changed(&skipped, &modified("secret", false)),
            None
        );
        assert_eq!(
            skipped_dir_changed(&skipped, &modified("other", true)),
            None
        );
    }

    #[test]
    fn backoff_doubles_from_the_base_up_to_the_cap() {
        let base = Duration::from_millis(500);
        let waits: Vec<u64> = (1..=9)
            .map(|t| backoff(base, t).as_millis() as u64)
            .collect();
        assert_eq!(
            waits,
            [500, 1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000]
        );
        assert_eq!(backoff(base, u32::MAX), MAX_BACKOFF);
    }
}
