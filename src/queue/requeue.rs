//! Ending batches: a finished batch leaves the paths in flight, a failed
//! one comes back whole ([`Queue::requeue`]) or only with the paths that
//! failed, each waiting for its own retry ([`Queue::requeue_failed_id`]);
//! either way its syncs follow the renames made since it was popped.

use super::*;

impl Queue {
    /// A sync ended at `now` (successfully or not): the `-w` interval counts
    /// from here. Call it exactly once for every popped batch, after pushing
    /// the changes the monitor has already queued. Without an id it ends the
    /// oldest batch in flight (for callers that run one at a time).
    pub fn finished(&mut self, now: Instant) {
        if let Some(&id) = self.flights.keys().next() {
            self.finished_id(BatchId(id), now);
        } else {
            self.last_finished = Some(self.last_finished.map_or(now, |t| t.max(now)));
        }
    }

    /// Batch `id` ended at `now` (successfully or not): as
    /// [`finished`](Queue::finished), for that batch; its paths are no
    /// longer in flight.
    pub fn finished_id(&mut self, id: BatchId, now: Instant) {
        self.last_finished = Some(self.last_finished.map_or(now, |t| t.max(now)));
        if self.flights.remove(&id.0).is_some() {
            self.inflight.clear();
            for f in self.flights.values() {
                for (p, &rec) in &f.paths {
                    *self.inflight.entry(p.clone()).or_default() |= rec;
                }
            }
        }
    }

    /// Batch `id` failed at `now`: finishes it and puts it back as
    /// [`requeue`](Queue::requeue) does; its syncs also follow the renames
    /// that later batches handed out while it ran.
    pub fn requeue_id(&mut self, id: BatchId, now: Instant, batch: Batch, not_before: Instant) {
        let later = self
            .flights
            .get_mut(&id.0)
            .map(|f| std::mem::take(&mut f.later_moves))
            .unwrap_or_default();
        self.finished_id(id, now);
        self.requeue_after(now, batch, not_before, &later);
    }

    /// Puts a failed batch back. Its renames go before every pending one, its
    /// syncs follow the renames that happened since it was popped, and all of
    /// it waits in the instant lane until `not_before` (every other lane
    /// waits too, so that nothing overtakes the retry). The next batch that
    /// carries any of it has `attempt` = `batch.attempt + 1`. Call
    /// [`finished`](Queue::finished) for the failed run as well.
    pub fn requeue(&mut self, now: Instant, batch: Batch, not_before: Instant) {
        self.requeue_after(now, batch, not_before, &[]);
    }

    /// Batch `id` ran at `now`, and did everything but `failed`: paths
    /// (`true`: the whole subtree) the handler could not make equal to the
    /// source. Finishes the batch and puts back only those, each waiting
    /// for its own retry at `hold(attempt)` (`attempt`: how many times it
    /// has failed now, 1 the first time) while everything else keeps
    /// flowing; a new change to such a path ends its wait. Like
    /// [`requeue_id`](Queue::requeue_id), they follow the renames that
    /// came after the batch. Returns the highest `attempt` given (0 when
    /// `failed` is empty).
    pub fn requeue_failed_id(
        &mut self,
        id: BatchId,
        now: Instant,
        failed: Vec<(Vec<u8>, bool)>,
        hold: impl Fn(u32) -> Instant,
    ) -> u32 {
        let (later, attempts) = self
            .flights
            .get_mut(&id.0)
            .map(|f| {
                (
                    std::mem::take(&mut f.later_moves),
                    std::mem::take(&mut f.attempts),
                )
            })
            .unwrap_or_default();
        self.finished_id(id, now);
        let mut syncs: BTreeMap<Vec<u8>, (bool, u32)> = BTreeMap::new();
        for (p, recursive) in failed {
            // What the op that carried it (or one above or below it) had
            // already suffered.
            let root = (!p.is_empty()).then(|| attempts.get(&b""[..])).flatten();
            let before = attempts
                .get(&p)
                .into_iter()
                .chain(root)
                .chain(path::ancestors(&p).filter_map(|a| attempts.get(a)))
                .chain(attempts.range(below(&p)).map(|(_, a)| a))
                .copied()
                .max()
                .unwrap_or(0);
            let e = syncs.entry(p).or_default();
            e.0 |= recursive;
            e.1 = e.1.max(before.saturating_add(1));
        }
        self.rebase_syncs(&mut syncs, &later, |a, b| (a.0 | b.0, a.1.max(b.1)));
        let mut highest = 0;
        for (p, (recursive, attempt)) in syncs {
            highest = highest.max(attempt);
            let mut e = Entry::new(now, Lane::Instant, true, recursive);
            e.attempt = attempt;
            e.not_before = Some(hold(attempt));
            self.add(now, &p, e, true);
        }
        self.settle();
        highest
    }

    /// `requeue`, with `later`: renames handed out after the batch, no
    /// longer pending, that its syncs must follow before the pending ones.
    pub(super) fn requeue_after(
        &mut self,
        now: Instant,
        batch: Batch,
        not_before: Instant,
        later: &[(Vec<u8>, Vec<u8>)],
    ) {
        let attempt = batch.attempt.saturating_add(1);
        for (p, m) in &batch.masks {
            self.note_mask(p, *m);
        }
        self.hold_until = Some(self.hold_until.map_or(not_before, |t| t.max(not_before)));
        let mut renames = Vec::new();
        let mut syncs: BTreeMap<Vec<u8>, bool> = BTreeMap::new();
        for op in batch.ops {
            match op {
                // The failed run may or may not have renamed (or may have
                // renamed and then seen `from` replaced): a bare rename on
                // retry could move the wrong thing, so both sides get a full
                // sync as well.
                Op::Move { from, to } => {
                    syncs.insert(from.clone(), true);
                    syncs.insert(to.clone(), true);
                    renames.push((from, to));
                }
                Op::Sync { path, recursive } => *syncs.entry(path).or_default() |= recursive,
            }
        }
        self.rebase_syncs(&mut syncs, later, |a, b| a | b);
        for (from, to) in renames.into_iter().rev() {
            self.next_front -= 1;
            let rec = MoveRec {
                from,
                to,
                lane: Lane::Instant,
                since: now,
                attempt,
            };
            self.put_move(now, self.next_front, rec);
        }
        for (p, recursive) in syncs {
            let mut e = Entry::new(now, Lane::Instant, true, recursive);
            e.attempt = attempt;
            self.add(now, &p, e, true);
        }
        self.settle();
    }

    /// Syncs of a batch that came back: the pending renames (and `later`,
    /// those handed out since) happened after the batch was made, so carry
    /// its paths along, and a subtree it covered that a rename took away
    /// must be synced where it landed. The value says "recursive" (first
    /// in `R`); `merge` folds two values for one path.
    pub(super) fn rebase_syncs<V: Copy + Default + Recursive>(
        &self,
        syncs: &mut BTreeMap<Vec<u8>, V>,
        later: &[(Vec<u8>, Vec<u8>)],
        merge: impl Fn(V, V) -> V,
    ) {
        let pending = self.moves.values().map(|m| (&m.from, &m.to));
        for (from, to) in later.iter().map(|(f, t)| (f, t)).chain(pending) {
            let cover = syncs
                .get(&b""[..])
                .filter(|v| !from.is_empty() && v.recursive())
                .or_else(|| {
                    path::ancestors(from)
                        .filter_map(|a| syncs.get(a))
                        .find(|v| v.recursive())
                })
                .copied();
            let mut hits: Vec<Vec<u8>> = syncs.range(below(from)).map(|(k, _)| k.clone()).collect();
            if syncs.contains_key(from) {
                hits.push(from.clone());
            }
            for k in hits {
                let v = syncs.remove(&k).unwrap_or_default();
                let slot = syncs.entry(path::rebase(&k, from, to)).or_default();
                *slot = merge(*slot, v);
            }
            if let Some(c) = cover {
                let slot = syncs.entry(to.clone()).or_default();
                *slot = merge(*slot, c);
            }
        }
    }
}
