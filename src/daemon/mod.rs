//! The daemon: the one event loop that ties monitor, tree, queue and
//! handler together, plus the process-global state (logger, signals, exit).
//!
//! The loop is single-threaded and reads top to bottom: wait (poll) on the
//! backend's fd, the signal pipe and the worker's wake pipe, with a timeout at
//! the next due batch; then drain kernel events into the queue, collect a
//! finished batch, and start the next due one. A batch runs on the worker
//! thread, so the kernel queue keeps being drained while a handler copies or
//! rsync runs. A failed batch goes back to the queue with backoff; nothing is
//! dropped.

pub mod log;

use crate::batch::Batch;
use crate::config::{Config, Destination, Mode};
use crate::handler::mirror::Mirror;
use crate::handler::rsync::{RsyncConfig, RsyncDirect};
use crate::handler::{Handler, HandlerError, Report};
use crate::monitor::inotify::InotifyMonitor;
use crate::monitor::{Monitor, MonitorError, RawEvent};
use crate::path;
use crate::queue::{Change, Queue};
use crate::tree::{Tree, TreeError, UNWATCHED_RESCAN};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
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
}

impl DaemonError {
    /// The documented exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            DaemonError::WatchLimit(_) => 3,
            _ => 1,
        }
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> DaemonError {
    let what = what.into();
    move |source| DaemonError::Io { what, source }
}

/// A finished batch, sent back from the worker thread.
struct Done {
    batch: Batch,
    result: Result<Report, HandlerError>,
    elapsed: Duration,
}

/// The thread that runs handlers, one batch at a time.
struct Worker {
    to_worker: mpsc::Sender<Batch>,
    from_worker: mpsc::Receiver<Done>,
    wake: UnixStream,
    busy: bool,
}

impl Worker {
    fn spawn(mut handler: Box<dyn Handler>) -> Result<Worker, DaemonError> {
        let (wake, mut wake_tx) =
            UnixStream::pair().map_err(io_err("cannot create the worker wake-up socket"))?;
        wake.set_nonblocking(true)
            .map_err(io_err("worker wake-up socket"))?;
        let (to_worker, jobs) = mpsc::channel::<Batch>();
        let (results, from_worker) = mpsc::channel::<Done>();
        std::thread::Builder::new()
            .name("livesync-worker".into())
            // The mirror walks a subtree depth-first; paths may be up to
            // PATH_MAX deep (about 2,000 levels). Reserved, not committed.
            .stack_size(WORKER_STACK)
            .spawn(move || {
                for batch in jobs {
                    let start = Instant::now();
                    let result = handler.run(&batch);
                    let done = Done {
                        batch,
                        result,
                        elapsed: start.elapsed(),
                    };
                    if results.send(done).is_err() {
                        break;
                    }
                    let _ = wake_tx.write_all(b"x");
                }
            })
            .map_err(io_err("cannot start the worker thread"))?;
        Ok(Worker {
            to_worker,
            from_worker,
            wake,
            busy: false,
        })
    }

    fn start(&mut self, batch: Batch) -> Result<(), DaemonError> {
        self.to_worker
            .send(batch)
            .map_err(|_| DaemonError::GaveUp("the worker thread stopped unexpectedly".into()))?;
        self.busy = true;
        Ok(())
    }

    fn try_done(&mut self) -> Option<Done> {
        let mut sink = [0u8; 64];
        while matches!(self.wake.read(&mut sink), Ok(n) if n > 0) {}
        let done = self.from_worker.try_recv().ok();
        if done.is_some() {
            self.busy = false;
        }
        done
    }
}

/// Signals we act on, set from the handler, read by the loop.
struct Signals {
    stop: Arc<AtomicBool>,
    wake: UnixStream,
}

impl Signals {
    fn install() -> Result<Signals, DaemonError> {
        let (wake, tx) = UnixStream::pair().map_err(io_err("cannot create the signal socket"))?;
        wake.set_nonblocking(true)
            .map_err(io_err("signal socket"))?;
        let stop = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
            signal_hook::flag::register(sig, Arc::clone(&stop))
                .map_err(io_err("cannot install a signal handler"))?;
            let tx = tx.try_clone().map_err(io_err("signal socket"))?;
            signal_hook::low_level::pipe::register(sig, tx)
                .map_err(io_err("cannot install a signal handler"))?;
        }
        // HUP must not kill us; reloading comes with the config-file work.
        let tx = tx.try_clone().map_err(io_err("signal socket"))?;
        signal_hook::low_level::pipe::register(signal_hook::consts::SIGHUP, tx)
            .map_err(io_err("cannot install a signal handler"))?;
        Ok(Signals { stop, wake })
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

fn build_handler(cfg: &Config) -> Result<Box<dyn Handler>, DaemonError> {
    let Some(dest) = &cfg.destination else {
        return Err(DaemonError::GaveUp("no destination given".into()));
    };
    match cfg.mode {
        Mode::Mirror => {
            let Destination::Local(dst) = dest else {
                return Err(DaemonError::GaveUp(
                    "the built-in mirror needs a local destination".into(),
                ));
            };
            std::fs::create_dir_all(dst).map_err(io_err(format!(
                "cannot create the destination {}; create it or check permissions",
                path::display_os(dst)
            )))?;
            let dst = dst
                .canonicalize()
                .map_err(io_err(format!("destination {}", path::display_os(dst))))?;
            Ok(Box::new(Mirror::new(
                cfg.watch_dir.clone(),
                dst,
                Arc::clone(&cfg.rules),
            )))
        }
        Mode::RsyncDirect => {
            let program = cfg
                .handler_program
                .clone()
                .unwrap_or_else(|| "rsync".into());
            let mut rc = RsyncConfig::new(program, cfg.watch_dir.clone(), dest.as_os_str());
            rc.args = cfg.handler_args.clone();
            rc.lists_dir = cfg.lists_dir.clone();
            rc.keep_lists = cfg.keep_lists;
            rc.ignore_exit = cfg.ignore_exit.clone();
            rc.label = cfg.label.clone();
            rc.rules = Arc::clone(&cfg.rules);
            Ok(Box::new(RsyncDirect::new(rc)?))
        }
    }
}

/// The state of one run: everything the loop owns.
struct Daemon {
    cfg: Config,
    monitor: InotifyMonitor,
    tree: Tree,
    queue: Queue,
    worker: Worker,
    signals: Signals,
    raw: Vec<RawEvent>,
    changes: Vec<Change>,
    stopping: bool,
    /// The batch that flushes pending changes at shutdown has been started.
    final_flush: bool,
    /// When directories the watch limit left unwatched were last rescanned.
    last_unwatched_rescan: Instant,
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
            let now = Instant::now();
            for c in self.changes.drain(..) {
                ::log::trace!("change {c:?}");
                self.queue.push(now, c);
            }
        }
        let now = Instant::now();
        for c in self.changes.drain(..) {
            self.queue.push(now, c);
        }
        Ok(())
    }

    fn finish(&mut self, done: Done) -> Result<(), DaemonError> {
        let now = Instant::now();
        let n = done.batch.len();
        match done.result {
            Ok(report) => {
                self.queue.finished(now);
                let how = match report.exit_code {
                    Some(code) => format!("exit code {code}"),
                    None => format!(
                        "copied {}, deleted {}, renamed {}",
                        report.copied, report.deleted, report.renamed
                    ),
                };
                ::log::info!(
                    "synced {n} path{} ({} lane) with {} in {:.1} ms: {how}",
                    if n == 1 { "" } else { "s" },
                    done.batch.lane.name(),
                    self.worker_name(),
                    done.elapsed.as_secs_f64() * 1000.0
                );
            }
            Err(e) => {
                self.queue.finished(now);
                let tries = done.batch.attempt + 1;
                if self.cfg.retries != 0 && tries >= self.cfg.retries {
                    let paths: Vec<String> = done
                        .batch
                        .ops
                        .iter()
                        .flat_map(|op| op.paths())
                        .take(10)
                        .map(path::display)
                        .collect();
                    return Err(DaemonError::GaveUp(format!(
                        "sync failed {tries} time(s) (-r {}), giving up: {e}; {n} op(s) not synced, e.g. {}; a restart resyncs everything",
                        self.cfg.retries,
                        paths.join(", ")
                    )));
                }
                let base = self.cfg.queue.interval.max(Duration::from_millis(500));
                let backoff = base
                    .checked_mul(1u32 << (tries - 1).min(16))
                    .unwrap_or(MAX_BACKOFF)
                    .min(MAX_BACKOFF);
                ::log::error!(
                    "sync of {n} path{} failed (try {tries}): {e}; retrying in {:.1} s",
                    if n == 1 { "" } else { "s" },
                    backoff.as_secs_f64()
                );
                let mut batch = done.batch;
                batch.attempt = tries;
                self.queue.requeue(now, batch, now + backoff);
            }
        }
        Ok(())
    }

    fn worker_name(&self) -> &'static str {
        match self.cfg.mode {
            Mode::Mirror => "mirror",
            Mode::RsyncDirect => "rsyncdirect",
        }
    }

    fn run(&mut self) -> Result<(), DaemonError> {
        loop {
            if self.signals.stop.swap(false, Ordering::SeqCst) {
                if self.stopping {
                    ::log::warn!(
                        "second stop signal: exiting now, {} pending op(s) not synced",
                        self.queue.len()
                    );
                    return Ok(());
                }
                self.stopping = true;
                ::log::info!("stop signal: syncing what is pending, then exiting (send it again to exit at once)");
            }

            // Collect a finished batch first and only then read the kernel:
            // every event the handler's run could have raced with is queued
            // by then, and the queue must see it before `finished()`.
            let done = self.worker.try_done();
            self.drain_events()?;

            if let Some(done) = done {
                let was_final = self.final_flush;
                let failed = done.result.is_err();
                self.finish(done)?;
                if was_final {
                    if failed {
                        return Err(DaemonError::GaveUp(format!(
                            "the last sync before exiting failed; {} op(s) not synced (a restart resyncs everything)",
                            self.queue.len()
                        )));
                    }
                    return Ok(());
                }
            }

            let now = Instant::now();
            if self.tree.has_unwatched() && now >= self.last_unwatched_rescan + UNWATCHED_RESCAN {
                self.last_unwatched_rescan = now;
                self.tree
                    .rescan_unwatched(&mut self.monitor, &mut self.changes);
                for c in self.changes.drain(..) {
                    self.queue.push(now, c);
                }
            }
            if !self.worker.busy {
                if self.stopping {
                    match self.queue.pop_all() {
                        Some(batch) => {
                            self.final_flush = true;
                            self.worker.start(batch)?;
                        }
                        None => return Ok(()),
                    }
                } else if let Some(batch) = self.queue.pop_due(now) {
                    ::log::debug!(
                        "starting a batch of {} op(s) ({} lane)",
                        batch.len(),
                        batch.lane.name()
                    );
                    self.worker.start(batch)?;
                }
            }

            let batch_due = if self.worker.busy || self.stopping {
                None
            } else {
                self.queue.next_due()
            };
            let rescan_due = self
                .tree
                .has_unwatched()
                .then(|| self.last_unwatched_rescan + UNWATCHED_RESCAN);
            let timeout = [batch_due, rescan_due]
                .into_iter()
                .flatten()
                .min()
                .map(|due| due.saturating_duration_since(Instant::now()));
            let fds = [
                self.monitor.fd(),
                self.worker.wake.as_raw_fd(),
                self.signals.wake.as_raw_fd(),
            ];
            let ready = wait_readable(&fds, timeout).map_err(io_err("poll"))?;
            if ready[2] {
                self.signals.drain();
            }
        }
    }
}

/// Runs livesync with a validated configuration until it is stopped. Every
/// error is logged (one line) before it is returned.
pub fn run(cfg: Config) -> Result<(), DaemonError> {
    log::init(cfg.log_level);
    for w in &cfg.warnings {
        ::log::warn!("{w}");
    }
    let result = start_and_run(cfg);
    match &result {
        Err(e) => ::log::error!("{e}"),
        Ok(()) => ::log::info!("exiting"),
    }
    result
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

fn start_and_run(cfg: Config) -> Result<(), DaemonError> {
    raise_open_file_limit();
    let signals = Signals::install()?;
    let mut monitor = InotifyMonitor::new(&cfg.watch_dir)?;
    let mut tree = Tree::new(
        cfg.watch_dir.clone(),
        Arc::clone(&cfg.rules),
        cfg.queue.big_threshold,
    );
    let started = Instant::now();
    let dirs = tree
        .watch_subtree(&mut monitor, b"", true)
        .map_err(|e| match e {
            e @ MonitorError::WatchLimit { .. } => DaemonError::WatchLimit(e),
            e => DaemonError::Monitor(e),
        })?;
    ::log::info!(
        "watching {} director{} under {} ({:.0} ms)",
        monitor.watch_count(),
        if dirs == 1 { "y" } else { "ies" },
        path::display_os(&cfg.watch_dir),
        started.elapsed().as_secs_f64() * 1000.0
    );
    let handler = build_handler(&cfg)?;
    let worker = Worker::spawn(handler)?;
    let mut queue = Queue::new(cfg.queue.clone());
    // The initial sync: the whole tree, no window.
    queue.push(
        Instant::now(),
        Change::Subtree {
            path: Vec::new(),
            instant: true,
        },
    );
    let mut daemon = Daemon {
        cfg,
        monitor,
        tree,
        queue,
        worker,
        signals,
        raw: Vec::new(),
        changes: Vec::new(),
        stopping: false,
        final_flush: false,
        last_unwatched_rescan: Instant::now(),
    };
    daemon.run()
}
