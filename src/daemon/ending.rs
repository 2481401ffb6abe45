//! The way out, step by step: the syncs of what is pending, the pre-exit
//! hook (whose failure ends livesync at once), one more sync where asked,
//! the exit hook; also the soft ends (`--exit-on-no-events`,
//! `--max-iterations`, `--only-initialsync`). See the module docs of
//! `daemon` for the order of each way out.

use super::*;

/// Time between SIGTERM and SIGKILL for running handlers at shutdown.
pub(super) const KILL_GRACE: Duration = Duration::from_secs(2);

/// One step of the way out. Each waits for the worker to be idle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// Sync everything pending, batch after batch, until nothing is.
    Sync,
    /// Run `--pre-exit-hook` (only after a completed initial sync).
    PreExit,
    /// Run `--exit-hook` (only after a completed initial sync).
    ExitHook,
}

/// How livesync is leaving.
#[derive(Debug)]
pub(super) struct Ending {
    pub(super) steps: VecDeque<Step>,
    /// TERM/INT: a failed sync ends the run (exit 1) instead of being
    /// retried, and running handlers were told to stop.
    pub(super) hard: bool,
    /// The hook of the front step has been started.
    pub(super) hook_started: bool,
}

impl Daemon {
    /// Starts the hook for `which` if one is set; false if there is none to run.
    pub(super) fn start_hook(&mut self, which: Hook) -> Result<bool, DaemonError> {
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

    pub(super) fn begin_ending(&mut self, steps: VecDeque<Step>) {
        self.ending = Some(Ending {
            steps,
            hard: false,
            hook_started: false,
        });
    }

    /// Another counted batch may start under `--max-iterations` (with -p
    /// safe|full, the runs still going on count as if finished).
    pub(super) fn below_max_iterations(&self) -> bool {
        let max = u64::from(self.cfg.max_iterations);
        max == 0 || !self.initial_done || self.iterations + self.worker.running() as u64 + 1 < max
    }

    /// The soft ends that follow from the options, checked while idle.
    pub(super) fn check_soft_end(&mut self) {
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
    pub(super) fn advance_ending(&mut self, now: Instant) -> Result<bool, DaemonError> {
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
}
