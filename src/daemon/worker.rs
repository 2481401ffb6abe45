//! The worker pool: the threads that run handlers and hooks, off the
//! event loop. One thread with `-p off`, `--threads` with `safe` and
//! `full`, each with its own handler (a reload hands each a new one).
//! Jobs go out on one channel per thread; results come back on one shared
//! channel, and each result writes a byte to the wake pipe the loop polls.

use super::*;

/// Stack of the worker thread that runs handlers.
pub(super) const WORKER_STACK: usize = 256 << 20;

/// Which hook a hook job runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Hook {
    PreExit,
    Exit,
}

impl Hook {
    pub(super) fn option(self) -> &'static str {
        match self {
            Hook::PreExit => "--pre-exit-hook",
            Hook::Exit => "--exit-hook",
        }
    }
}

/// Work for a worker thread, done in the order sent.
pub(super) enum Job {
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
pub(super) enum Done {
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
pub(super) struct Worker {
    pub(super) slots: Vec<Slot>,
    pub(super) from_worker: mpsc::Receiver<(usize, Done)>,
    pub(super) wake: UnixStream,
    /// At least one thread runs a job.
    pub(super) busy: bool,
}

/// One worker thread, as the loop sees it.
pub(super) struct Slot {
    pub(super) to_worker: mpsc::Sender<Job>,
    pub(super) busy: bool,
    /// Receives once the worker thread has dropped its handler (so that an
    /// so handler's clsyncapi_deinit runs before livesync exits).
    pub(super) gone: mpsc::Receiver<()>,
}

impl Worker {
    /// Starts one thread per handler.
    pub(super) fn spawn(handlers: Vec<Box<dyn Handler>>) -> Result<Worker, DaemonError> {
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
    pub(super) fn has_idle(&self) -> bool {
        self.slots.iter().any(|s| !s.busy)
    }

    /// Jobs running now.
    pub(super) fn running(&self) -> usize {
        self.slots.iter().filter(|s| s.busy).count()
    }

    /// Hands a batch or a hook to a free thread (check [`Worker::has_idle`]).
    pub(super) fn send(&mut self, job: Job) -> Result<(), DaemonError> {
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
    pub(super) fn replace(&mut self, handlers: Vec<Box<dyn Handler>>) -> Result<(), DaemonError> {
        for (slot, h) in self.slots.iter().zip(handlers) {
            slot.to_worker
                .send(Job::Replace(h))
                .map_err(|_| DaemonError::GaveUp("a worker thread stopped unexpectedly".into()))?;
        }
        Ok(())
    }

    pub(super) fn try_done(&mut self) -> Option<Done> {
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
