//! Collecting finished work: a batch that succeeded, failed (re-queued
//! with backoff, or the end with `-r`), failed on some paths only, or
//! skipped unreadable paths; and finished hooks.

use super::*;

/// How often source paths skipped as unreadable are tried again when no
/// change to them comes first.
pub(super) const SKIPPED_RETRY: Duration = Duration::from_secs(300);

/// A change to a directory that was skipped as unreadable (a chmod, say)
/// syncs what it holds too: its contents were never seen.
pub(super) fn skipped_dir_changed(
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
pub(super) fn is_full_sync(batch: &Batch) -> bool {
    batch
        .ops
        .iter()
        .any(|op| matches!(op, Op::Sync { path, recursive: true } if path.is_empty()))
}

impl Daemon {
    /// Takes in what a worker finished: a hook or a batch.
    pub(super) fn finish(&mut self, done: Done) -> Result<(), DaemonError> {
        match done {
            Done::Hook { which, result } => self.hook_finished(which, result),
            Done::Batch {
                id,
                batch,
                result,
                elapsed,
                initial,
            } => self.batch_finished(id, batch, result, elapsed, initial),
        }
    }

    /// A hook ended: a failed pre-exit hook ends livesync at once (unless
    /// `--ignore-hook-failures`); otherwise the way out goes on.
    fn hook_finished(
        &mut self,
        which: Hook,
        result: Result<exec::Outcome, exec::ExecError>,
    ) -> Result<(), DaemonError> {
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
        Ok(())
    }

    /// A batch ended: the bookkeeping every result shares, then success,
    /// some paths failed, or the whole batch failed.
    fn batch_finished(
        &mut self,
        id: BatchId,
        batch: Batch,
        result: Result<Report, HandlerError>,
        elapsed: Duration,
        was_initial: bool,
    ) -> Result<(), DaemonError> {
        let now = Instant::now();
        self.monitor.synced();
        let n = batch.len();
        self.ops_in_flight = self.ops_in_flight.saturating_sub(n);
        if was_initial {
            self.initial_running = false;
            self.telemetry.initial_sync_ended();
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
            Ok(report) => self.batch_succeeded(&batch, &report, elapsed, was_initial, now),
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
                self.paths_failed(id, &batch, &failed, &report, was_initial, now)?;
            }
            Err(e) => self.batch_failed(id, batch, e, now)?,
        }
        // The status snapshot costs a walk over the queue: only for a file.
        if self.telemetry.writes_metrics() {
            let snapshot = self.socket_status();
            self.telemetry.after_batch(&snapshot);
        }
        Ok(())
    }

    fn batch_succeeded(
        &mut self,
        batch: &Batch,
        report: &Report,
        elapsed: Duration,
        was_initial: bool,
        now: Instant,
    ) {
        let n = batch.len();
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

    /// Everything else was done: only the failed paths come back, each
    /// with its own backoff, and the rest flows on.
    fn paths_failed(
        &mut self,
        id: BatchId,
        batch: &Batch,
        failed: &[crate::handler::PathIssue],
        report: &Report,
        was_initial: bool,
        now: Instant,
    ) -> Result<(), DaemonError> {
        let n = batch.len();
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
        let exhausted = self.cfg.retries != 0 && tries >= self.cfg.retries;
        let first = HandlerError::Paths {
            failed: failed.to_vec(),
            report: Report::default(),
        };
        if let Some(why) = self.give_up(tries, "a path failed") {
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
        Ok(())
    }

    /// Whether a failure at try `tries` ends the run: the last sync of a
    /// TERM failed, or `-r` is used up (unless `--ignore-failures`). Then
    /// the running handlers of other workers are stopped too (`-p
    /// safe|full`: they must not outlive us) and the reason is returned,
    /// starting with `what` ("sync failed", "a path failed").
    fn give_up(&self, tries: u32, what: &str) -> Option<String> {
        let hard_end = self.ending.as_ref().is_some_and(|e| e.hard);
        let exhausted = self.cfg.retries != 0 && tries >= self.cfg.retries;
        if !hard_end && (!exhausted || self.cfg.ignore_failures) {
            return None;
        }
        if self.worker.busy {
            procs::signal_child_groups(libc::SIGTERM);
        }
        Some(if hard_end {
            "the last sync before exiting failed".to_string()
        } else {
            format!(
                "{what} {tries} time(s) (-r {}), giving up",
                self.cfg.retries
            )
        })
    }

    /// The whole batch failed: back to the queue with backoff, or the end
    /// (`-r` used up, or the last sync of a TERM).
    fn batch_failed(
        &mut self,
        id: BatchId,
        batch: Batch,
        e: HandlerError,
        now: Instant,
    ) -> Result<(), DaemonError> {
        let n = batch.len();
        let tries = batch.attempt + 1;
        let exhausted = self.cfg.retries != 0 && tries >= self.cfg.retries;
        if let Some(why) = self.give_up(tries, "sync failed") {
            let paths: Vec<String> = batch
                .ops
                .iter()
                .flat_map(|op| op.paths())
                .take(10)
                .map(path::display)
                .collect();
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
        Ok(())
    }

    pub(super) fn worker_name(&self) -> &'static str {
        self.cfg.mode.name()
    }

    /// The first wait after a failure: max(-w, 0.5 s).
    pub(super) fn backoff_base(&self) -> Duration {
        first_backoff(self.cfg.queue.interval)
    }

    /// Keeps the source paths the handler skipped as unreadable: each is
    /// warned about once, counted in the status, and synced again on its
    /// next change or after [`SKIPPED_RETRY`]. What `batch` synced without
    /// skipping it again is no longer skipped.
    pub(super) fn note_skipped(
        &mut self,
        batch: &Batch,
        skipped: &[crate::handler::PathIssue],
        now: Instant,
    ) {
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
    pub(super) fn retry_skipped(&mut self, now: Instant) {
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
