//! The loop's arithmetic, kept pure so it can be tested alone: the backoff
//! between retries, when the next batch is due, and how long to wait.

use super::*;

/// Longest wait between retries of a failing batch.
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The wait before try `tries + 1` of something that failed `tries`
/// times: `base` doubling, up to [`MAX_BACKOFF`].
pub(super) fn backoff(base: Duration, tries: u32) -> Duration {
    base.checked_mul(1u32 << tries.saturating_sub(1).min(16))
        .unwrap_or(MAX_BACKOFF)
        .min(MAX_BACKOFF)
}

/// The first wait after a failure: max(-w, 0.5 s).
pub(super) fn first_backoff(interval: Duration) -> Duration {
    interval.max(Duration::from_millis(500))
}

/// What decides when the next batch may start.
#[derive(Clone, Copy, Debug)]
pub(super) struct BatchState {
    /// A worker thread is free, nothing holds syncs (standby, pause) and
    /// `--max-iterations` leaves room.
    pub(super) may_start: bool,
    /// TERM/INT: everything pending goes at once.
    pub(super) hard_ending: bool,
    /// On the way out, or `--exit-on-no-events` after the initial sync:
    /// pending changes go without waiting for their windows.
    pub(super) without_windows: bool,
    /// Anything is queued at all.
    pub(super) pending: bool,
    /// Batches running now (`-p safe`: what is due may wait for them).
    pub(super) in_flight: usize,
}

/// When the next batch is due, or None when the loop need not wake for
/// one. `next_ready` (pending changes, windows ignored) and `next_due`
/// (windows respected) are asked only when needed.
pub(super) fn batch_due(
    s: &BatchState,
    now: Instant,
    next_ready: impl FnOnce() -> Option<Instant>,
    next_due: impl FnOnce() -> Option<Instant>,
) -> Option<Instant> {
    let due = if !s.may_start {
        None
    } else if s.hard_ending {
        s.pending.then_some(now)
    } else if s.without_windows {
        next_ready()
    } else {
        next_due()
    };
    // -p safe: what is due may all wait for a batch in flight; the end of
    // that batch wakes the loop, so a due time already past is no reason
    // to spin.
    due.filter(|&t| t > now || s.in_flight == 0)
}

/// The poll's timeout: until the earliest deadline (zero when one is past),
/// or None (wait for an fd) when there is none.
pub(super) fn poll_timeout(
    deadlines: impl IntoIterator<Item = Option<Instant>>,
    now: Instant,
) -> Option<Duration> {
    deadlines
        .into_iter()
        .flatten()
        .min()
        .map(|due| due.saturating_duration_since(now))
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn the_first_backoff_is_the_interval_but_at_least_half_a_second() {
        assert_eq!(first_backoff(Duration::ZERO), Duration::from_millis(500));
        assert_eq!(
            first_backoff(Duration::from_secs(3)),
            Duration::from_secs(3)
        );
    }

    fn state() -> BatchState {
        BatchState {
            may_start: true,
            hard_ending: false,
            without_windows: false,
            pending: true,
            in_flight: 0,
        }
    }

    #[test]
    fn a_batch_is_due_by_its_window_unless_the_way_out_skips_windows() {
        let now = Instant::now();
        let ready = now + Duration::from_secs(1);
        let due = now + Duration::from_secs(5);
        let s = state();
        assert_eq!(batch_due(&s, now, || Some(ready), || Some(due)), Some(due));
        let s = BatchState {
            without_windows: true,
            ..state()
        };
        assert_eq!(
            batch_due(&s, now, || Some(ready), || Some(due)),
            Some(ready)
        );
        // TERM: now, whatever the windows say, as long as anything is queued.
        let s = BatchState {
            hard_ending: true,
            without_windows: true,
            ..state()
        };
        assert_eq!(batch_due(&s, now, || None, || None), Some(now));
        let s = BatchState {
            pending: false,
            ..s
        };
        assert_eq!(batch_due(&s, now, || None, || None), None);
        // No free thread, or held: no wake-up for a batch.
        let s = BatchState {
            may_start: false,
            ..state()
        };
        assert_eq!(batch_due(&s, now, || Some(ready), || Some(due)), None);
    }

    #[test]
    fn a_past_due_time_waits_for_the_batch_in_flight() {
        let now = Instant::now();
        let past = now - Duration::from_millis(10);
        let s = BatchState {
            in_flight: 1,
            ..state()
        };
        assert_eq!(batch_due(&s, now, || None, || Some(past)), None);
        let later = now + Duration::from_secs(1);
        assert_eq!(batch_due(&s, now, || None, || Some(later)), Some(later));
        let s = state();
        assert_eq!(batch_due(&s, now, || None, || Some(past)), Some(past));
    }

    #[test]
    fn the_poll_waits_until_the_earliest_deadline() {
        let now = Instant::now();
        let d = |ms| Some(now + Duration::from_millis(ms));
        assert_eq!(
            poll_timeout([None, d(300), d(100), None], now),
            Some(Duration::from_millis(100))
        );
        assert_eq!(
            poll_timeout([Some(now - Duration::from_secs(1))], now),
            Some(Duration::ZERO)
        );
        assert_eq!(poll_timeout([None, None], now), None);
    }
}
