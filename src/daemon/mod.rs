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
//! exclusive, so batches in flight never share a path (see `queue`).
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
pub mod metrics; // Prometheus text for the control socket and --metrics-file
pub mod progress_bar; // the initial sync's progress bar on a terminal (indicatif)
pub mod sd_notify; // systemd's notify socket: READY, STATUS, WATCHDOG, STOPPING
pub mod socket;
pub mod telemetry; // what the outside sees, driven by the loop: sd_notify, metrics file, progress bar

mod ending; // the way out: last syncs, pre-exit hook, exit hook, soft ends
mod event_loop; // the loop itself, and the status it derives
mod reload; // SIGHUP and the custom signals' config blocks
mod results; // collecting finished batches and hooks: retry, backoff, give up
mod signals; // signal flags, the self-pipe, the poll wait, Control
mod start; // the start-up sequence and the cleanup
mod timing; // pure arithmetic: backoff, next deadline, poll timeout
mod worker; // the threads that run handlers and hooks

use ending::*;
use results::*;
pub use signals::Control;
use signals::*;
use start::*;
pub use start::{run, DEFAULT_RSYNC_RSH};
use timing::*;
use worker::*;

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
            DaemonError::WatchLimit(_) => crate::exit::WATCH_LIMIT.into(),
            DaemonError::SharedObject(_)
            | DaemonError::DestinationChanged(_)
            | DaemonError::WatchDirUnreadable(_)
            | DaemonError::Security(crate::security::Error::Plan(_)) => crate::exit::USAGE.into(),
            _ => crate::exit::FAILURE.into(),
        }
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> DaemonError {
    let what = what.into();
    move |source| DaemonError::Io { what, source }
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
    /// systemd notifications, the metrics file and the progress bar.
    telemetry: telemetry::Telemetry,
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
