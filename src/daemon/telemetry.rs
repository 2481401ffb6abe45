//! What the event loop reports to the outside while it runs: systemd
//! notifications ([`super::sd_notify`]), the `--metrics-file`
//! ([`super::metrics`]), the watchdog's and the metrics file's timers, and
//! the initial sync's progress bar ([`super::progress_bar`]).
//! The loop calls in at a handful of points (state changes, finished
//! batches, every turn, exit) and adds [`Telemetry::next_due`] to its poll
//! timeout; this module never decides anything about syncing and never
//! blocks (every write here is small and local).

use super::files::Status;
use super::metrics::{self, MetricsFile};
use super::progress_bar::InitialProgress;
use super::sd_notify::{self, Notifier};
use super::socket;
use crate::handler::counts::Counts;
use crate::rules::Rules;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// What the progress bar needs: the source, its rules and the handler's
/// counter (None: no bar, see [`super::progress_bar::wanted`]).
pub struct ProgressSetup {
    pub root: PathBuf,
    pub rules: Arc<Rules>,
    pub counter: Arc<Counts>,
}

pub struct Telemetry {
    notifier: Option<Notifier>,
    metrics: Option<MetricsFile>,
    next_metrics: Option<Instant>,
    next_watchdog: Option<Instant>,
    last_status: Option<Status>,
    stopping_sent: bool,
    progress_setup: Option<ProgressSetup>,
    progress: Option<InitialProgress>,
}

/// Takes the notification socket from the environment and removes the
/// protocol's variables from it, so that handlers and hooks (our children)
/// do not notify in our name. Call before any thread starts.
pub fn notifier_from_env() -> Option<Notifier> {
    let n = match Notifier::from_env() {
        Ok(n) => n,
        Err(e) => {
            ::log::warn!("{e}");
            None
        }
    };
    for var in [
        sd_notify::ENV_SOCKET,
        sd_notify::ENV_WATCHDOG_USEC,
        sd_notify::ENV_WATCHDOG_PID,
    ] {
        // Single-threaded here (see above), so changing the environment
        // cannot race with a reader.
        std::env::remove_var(var);
    }
    n
}

/// Whether a status belongs to the way out.
fn stopping(s: Status) -> bool {
    matches!(s, Status::PreExit | Status::Terminating | Status::Exiting)
}

impl Telemetry {
    pub fn new(notifier: Option<Notifier>, metrics_file: Option<&Path>) -> Telemetry {
        if let Some(n) = &notifier {
            if let Some(wd) = n.watchdog() {
                ::log::debug!("systemd watchdog: pinging every {:.1} s", wd.as_secs_f64());
            }
        }
        Telemetry {
            notifier,
            metrics: metrics_file.map(MetricsFile::new),
            next_metrics: None,
            next_watchdog: None,
            last_status: None,
            stopping_sent: false,
            progress_setup: None,
            progress: None,
        }
    }

    /// Show a progress bar during the initial sync (only called when
    /// [`super::progress_bar::wanted`]).
    pub fn with_progress(mut self, setup: ProgressSetup) -> Telemetry {
        self.progress_setup = Some(setup);
        self
    }

    /// The batch carrying the initial sync starts.
    pub fn initial_sync_started(&mut self) {
        if let Some(p) = self.progress_setup.take() {
            self.progress = Some(InitialProgress::start(p.root, p.rules, p.counter));
        }
    }

    /// The batch carrying the initial sync ended (well or not).
    pub fn initial_sync_ended(&mut self) {
        if let Some(p) = self.progress.take() {
            p.finish();
        }
    }

    /// The watches are in place and the loop is about to run.
    pub fn ready(&mut self, status: Status, now: Instant) {
        if let Some(n) = &self.notifier {
            n.ready(status.as_str());
            if let Some(wd) = n.watchdog() {
                n.watchdog_ping();
                self.next_watchdog = Some(now + wd);
            }
        }
        self.last_status = Some(status);
        if self.metrics.is_some() {
            self.next_metrics = Some(now);
        }
    }

    /// The loop's status is `s` now; tells systemd when it changed.
    pub fn on_status(&mut self, s: Status) {
        if self.last_status == Some(s) {
            return;
        }
        self.last_status = Some(s);
        let Some(n) = &self.notifier else { return };
        if stopping(s) && !self.stopping_sent {
            self.stopping_sent = true;
            n.stopping(s.as_str());
        } else {
            n.status(s.as_str());
        }
    }

    /// Every turn of the loop: the watchdog, and the metrics file when due.
    pub fn tick(&mut self, now: Instant, snapshot: &dyn Fn() -> socket::StatusReport) {
        if let (Some(n), Some(due)) = (&self.notifier, self.next_watchdog) {
            if now >= due {
                n.watchdog_ping();
                self.next_watchdog = n.watchdog().map(|wd| now + wd);
            }
        }
        if self.next_metrics.is_some_and(|t| now >= t) {
            self.write_metrics(&snapshot(), now);
        }
    }

    /// Whether there is a metrics file (so whether a batch's end needs a
    /// status snapshot for [`Telemetry::after_batch`]).
    pub fn writes_metrics(&self) -> bool {
        self.metrics.is_some()
    }

    /// A batch finished: the numbers moved, write them out now.
    pub fn after_batch(&mut self, snapshot: &socket::StatusReport) {
        if self.metrics.is_some() {
            self.write_metrics(snapshot, Instant::now());
        }
    }

    fn write_metrics(&mut self, snapshot: &socket::StatusReport, now: Instant) {
        if let Some(f) = self.metrics.as_mut() {
            f.write(&metrics::render(snapshot));
            self.next_metrics = Some(now + metrics::FILE_INTERVAL);
        }
    }

    /// When the loop must wake up for us next.
    pub fn next_due(&self) -> Option<Instant> {
        [self.next_watchdog, self.next_metrics]
            .into_iter()
            .flatten()
            .min()
    }

    /// livesync is leaving: last metrics, and STOPPING=1 if not sent yet.
    pub fn finish(&mut self, snapshot: &socket::StatusReport) {
        self.initial_sync_ended();
        self.write_metrics(snapshot, Instant::now());
        if let Some(n) = &self.notifier {
            if !self.stopping_sent {
                self.stopping_sent = true;
                n.stopping(Status::Exiting.as_str());
            }
        }
    }
}
