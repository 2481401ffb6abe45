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
}
