//! The per-batch log line, kept readable under load.
//!
//! Every finished batch has a line (`synced N paths (… lane) with … in … ms:
//! …`). On a quiet tree that line is logged at info, as clsync users
//! expect. Under load a line per batch floods the log (creating 100,000
//! files made 51,811 info lines), so each [`INTERVAL`] gets at most
//! [`BURST`] batch lines at info: later batches in the same interval are
//! logged at debug only and counted, and the counts come out as one
//! summary line at info when the interval is over (at the next batch, or at
//! [`BatchLog::due`] when no batch comes). `-d` still shows every batch.
//!
//! Pure bookkeeping on a clock the caller passes in; the daemon logs what
//! it returns.

use std::time::{Duration, Instant};

/// The interval the info lines about finished batches are counted in.
pub const INTERVAL: Duration = Duration::from_secs(5);

/// Batch lines at info per interval; then one summary for the rest.
pub const BURST: u32 = 5;

/// One finished batch, as far as the log cares.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Finished {
    pub paths: u64,
    /// The built-in mirror's counts (None for a handler program, which
    /// reports an exit code instead).
    pub mirror: Option<(u64, u64, u64)>,
    pub elapsed: Duration,
}

/// What batches were logged at debug only since the last info line.
#[derive(Clone, Copy, Debug, Default)]
struct Held {
    batches: u64,
    paths: u64,
    copied: u64,
    deleted: u64,
    renamed: u64,
    any_mirror: bool,
    busy: Duration,
}

/// Decides, batch by batch, which line goes out at info.
#[derive(Debug)]
pub struct BatchLog {
    interval: Duration,
    burst: u32,
    /// When the current interval began (its first info line).
    window: Option<Instant>,
    /// Info lines in the current interval.
    lines: u32,
    held: Held,
}

/// Whether an interval that began at `self` is over at `now`.
trait Window {
    fn is_none_or_over(&self, now: Instant, interval: Duration) -> bool;
}

impl Window for Option<Instant> {
    fn is_none_or_over(&self, now: Instant, interval: Duration) -> bool {
        self.map_or(true, |t| now.saturating_duration_since(t) >= interval)
    }
}

/// How to log one batch's own line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Info,
    Debug,
}

impl Default for BatchLog {
    fn default() -> Self {
        BatchLog::new(INTERVAL, BURST)
    }
}

impl BatchLog {
    pub fn new(interval: Duration, burst: u32) -> Self {
        BatchLog {
            interval,
            burst,
            window: None,
            lines: 0,
            held: Held::default(),
        }
    }

    /// A batch finished at `now`: the level of its own line, and a summary
    /// of the batches held in the interval that just ended, if any, to log
    /// at info first.
    pub fn finished(&mut self, now: Instant, b: Finished) -> (Level, Option<String>) {
        let mut summary = self.flush(now);
        if self.window.is_none_or_over(now, self.interval) {
            self.window = Some(now);
            self.lines = 0;
        }
        if self.held.batches == 0 && self.lines < self.burst {
            self.lines += 1;
            return (Level::Info, summary.take());
        }
        self.hold(b);
        (Level::Debug, summary)
    }

    /// When the held batches are due as a summary (None: nothing held).
    pub fn due(&self) -> Option<Instant> {
        if self.held.batches == 0 {
            return None;
        }
        Some(self.window.map_or_else(Instant::now, |t| t + self.interval))
    }

    /// The summary of the held batches, when their interval is over at
    /// `now`; it opens the next interval.
    pub fn flush(&mut self, now: Instant) -> Option<String> {
        match self.due() {
            Some(d) if now >= d => {}
            _ => return None,
        }
        let h = std::mem::take(&mut self.held);
        let since = self
            .window
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        self.window = Some(now);
        self.lines = 1;
        let counts = if h.any_mirror {
            format!(
                ": copied {}, deleted {}, renamed {}",
                h.copied, h.deleted, h.renamed
            )
        } else {
            String::new()
        };
        Some(format!(
            "synced {} path{} in {} more batch{} over the last {:.1} s ({:.1} s in handlers){counts}; -d logs each batch",
            h.paths,
            if h.paths == 1 { "" } else { "s" },
            h.batches,
            if h.batches == 1 { "" } else { "es" },
            since.as_secs_f64(),
            h.busy.as_secs_f64(),
        ))
    }

    fn hold(&mut self, b: Finished) {
        let h = &mut self.held;
        h.batches += 1;
        h.paths += b.paths;
        h.busy += b.elapsed;
        if let Some((c, d, r)) = b.mirror {
            h.any_mirror = true;
            h.copied += c;
            h.deleted += d;
            h.renamed += r;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(paths: u64) -> Finished {
        Finished {
            paths,
            mirror: Some((paths, 0, 0)),
            elapsed: Duration::from_millis(10),
        }
    }

    #[test]
    fn a_quiet_tree_logs_each_batch_at_info() {
        let t0 = Instant::now();
        let mut l = BatchLog::new(Duration::from_secs(5), 3);
        for i in 0..3 {
            assert_eq!(
                l.finished(t0 + Duration::from_millis(i), batch(1)),
                (Level::Info, None)
            );
        }
        assert_eq!(
            l.finished(t0 + Duration::from_secs(6), batch(2)),
            (Level::Info, None)
        );
        assert_eq!(l.due(), None);
    }

    #[test]
    fn a_burst_is_a_few_lines_and_one_summary_per_interval() {
        let t0 = Instant::now();
        let mut l = BatchLog::new(Duration::from_secs(5), 3);
        let mut info = 0;
        let mut summaries = Vec::new();
        // 1,000 batches of 3 paths, one every 10 ms: 10 s of load.
        for i in 0..1000u64 {
            let now = t0 + Duration::from_millis(10 * i);
            let (level, summary) = l.finished(now, batch(3));
            if level == Level::Info {
                info += 1;
            }
            summaries.extend(summary);
        }
        // The rest comes out when it is due, not before.
        let due = l.due().expect("held batches");
        assert!(l.flush(due - Duration::from_millis(1)).is_none());
        summaries.extend(l.flush(due));
        assert_eq!(l.due(), None);
        // Interval 1: 3 lines; at 5 s the summary and 2 lines; at 10 s the
        // last summary.
        assert_eq!(info, 5, "batch lines at info");
        assert_eq!(summaries.len(), 2, "{summaries:?}");
        // Every batch is in exactly one info line.
        let counted: u64 = summaries
            .iter()
            .map(|s| {
                s.split(" more batch")
                    .next()
                    .and_then(|x| x.rsplit(' ').next())
                    .and_then(|n| n.parse::<u64>().ok())
                    .expect("batch count")
            })
            .sum();
        assert_eq!(counted + info, 1000);
        assert!(
            summaries[0].starts_with("synced 1491 paths in 497 more batches over the last 5.0 s"),
            "{}",
            summaries[0]
        );
        assert!(summaries[0].ends_with("copied 1491, deleted 0, renamed 0; -d logs each batch"));
    }

    #[test]
    fn handler_programs_get_no_mirror_counts() {
        let t0 = Instant::now();
        let mut l = BatchLog::new(Duration::from_secs(1), 1);
        l.finished(t0, batch(1));
        let program = Finished {
            paths: 1,
            mirror: None,
            elapsed: Duration::ZERO,
        };
        assert_eq!(l.finished(t0, program).0, Level::Debug);
        let s = l.flush(t0 + Duration::from_secs(1)).expect("summary");
        assert_eq!(
            s,
            "synced 1 path in 1 more batch over the last 1.0 s (0.0 s in handlers); -d logs each batch"
        );
    }
}
