//! Handing batches out: when a lane is due, and which ops a pop takes
//! (in exclusive mode, only those unrelated to a batch in flight), with
//! the event masks they carry and what the batch marks as in flight.

use super::*;

impl Queue {
    pub(super) fn due(&self, lane: Lane) -> Option<Instant> {
        let i = lane_index(lane);
        if self.count[i] == 0 {
            return None;
        }
        let start = self.start[i]?;
        let mut t = match lane {
            Lane::Instant => start,
            Lane::Normal => later(start, self.cfg.delay),
            Lane::Big => later(start, self.cfg.delay_big),
        };
        if lane != Lane::Instant && !self.cfg.interval.is_zero() {
            if let Some(f) = self.last_finished {
                t = t.max(later(f, self.cfg.interval));
            }
        }
        if let Some(h) = self.hold_until {
            t = t.max(h);
        }
        if self.held[i] == self.count[i] {
            // Nothing but failed paths waiting for their retries.
            if let Some(&h) = self.holds[i].keys().next() {
                t = t.max(h);
            }
        }
        Some(t)
    }

    // ----- popping -----------------------------------------------------

    /// All pending renames, then the syncs of `lane` (all lanes for None);
    /// in exclusive mode, only what is free (see [`Queue::set_exclusive`]);
    /// with `ready`, no failed path whose retry is not due by then.
    /// None when that is nothing.
    pub(super) fn pop(
        &mut self,
        lane: Option<Lane>,
        ready: Option<Instant>,
    ) -> Option<(BatchId, Batch)> {
        let mut ops = Vec::new();
        let mut attempt = 0;
        let mut attempts: BTreeMap<Vec<u8>, u32> = BTreeMap::new();
        let label = lane.unwrap_or_else(|| {
            Lane::ALL
                .into_iter()
                .find(|&l| self.lane_len(l) > 0)
                .unwrap_or_default()
        });
        // Exclusive mode: the paths nothing popped now may be related to (in
        // flight, or a side of a rename left pending, which must go first).
        let exclusive = self.exclusive && !self.flights.is_empty();
        let mut held: BTreeMap<Vec<u8>, bool> = BTreeMap::new();
        let mut kept = BTreeMap::new();
        for (seq, m) in std::mem::take(&mut self.moves) {
            if exclusive && [&m.from, &m.to].iter().any(|p| self.busy(p, &held)) {
                held.insert(m.from.clone(), true);
                held.insert(m.to.clone(), true);
                kept.insert(seq, m);
                continue;
            }
            attempt = attempt.max(m.attempt);
            for p in [&m.from, &m.to] {
                let a = attempts.entry(p.clone()).or_default();
                *a = (*a).max(m.attempt);
            }
            self.count[lane_index(m.lane)] -= 1;
            self.forget_since(m.since);
            ops.push(Op::Move {
                from: m.from,
                to: m.to,
            });
        }
        self.moves = kept;
        self.move_tos.clear();
        self.move_froms.clear();
        for m in self.moves.values() {
            *self.move_tos.entry(m.to.clone()).or_default() += 1;
            *self.move_froms.entry(m.from.clone()).or_default() += 1;
        }
        let mut taken = Vec::new();
        let free = |k: &[u8]| !exclusive || !self.busy(k, &held);
        let due = |e: &Entry| match (e.not_before, ready) {
            (Some(t), Some(now)) => t <= now,
            _ => true,
        };
        for (k, e) in &self.entries {
            if lane.map_or(true, |l| e.lane == l) && due(e) && free(k) {
                taken.push((k.clone(), e.clone()));
            }
        }
        for (path, _) in &taken {
            self.entries.remove(path);
        }
        for (path, e) in taken {
            self.forget(&e);
            attempt = attempt.max(e.attempt);
            let a = attempts.entry(path.clone()).or_default();
            *a = (*a).max(e.attempt);
            ops.push(Op::Sync {
                path,
                recursive: e.recursive,
            });
        }
        if ops.is_empty() {
            self.settle();
            return None;
        }
        let mut flight = Flight {
            attempts,
            ..Flight::default()
        };
        for op in &ops {
            match op {
                Op::Sync { path, recursive } => {
                    *flight.paths.entry(path.clone()).or_default() |= *recursive;
                    self.touched(path, *recursive);
                }
                Op::Move { from, to } => {
                    flight.paths.insert(from.clone(), true);
                    flight.paths.insert(to.clone(), true);
                    self.touched(from, true);
                    self.touched(to, true);
                    // A batch in flight that fails comes back after this.
                    for f in self.flights.values_mut() {
                        f.later_moves.push((from.clone(), to.clone()));
                    }
                }
            }
        }
        for (p, &rec) in &flight.paths {
            *self.inflight.entry(p.clone()).or_default() |= rec;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.flights.insert(id, flight);
        self.settle();
        let masks = self.take_masks(&ops);
        Some((
            BatchId(id),
            Batch {
                ops,
                lane: label,
                attempt,
                masks,
            },
        ))
    }

    /// `p` is related (equal, ancestor, descendant) to a path in flight or
    /// to one of `held`.
    pub(super) fn busy(&self, p: &[u8], held: &BTreeMap<Vec<u8>, bool>) -> bool {
        [&self.inflight, held].into_iter().any(|set| {
            !set.is_empty()
                && (set.contains_key(p)
                    || set.contains_key(&b""[..])
                    || path::ancestors(p).any(|a| set.contains_key(a))
                    || set.range(below(p)).next().is_some())
        })
    }

    /// The noted masks of the paths `ops` carry (and, for a whole subtree,
    /// of every path below it). Once nothing is pending, masks of paths no
    /// op carried (rule-excluded, rebased by a rename) are dropped too.
    pub(super) fn take_masks(&mut self, ops: &[Op]) -> BTreeMap<Vec<u8>, u32> {
        let mut out = BTreeMap::new();
        if self.masks.is_empty() {
            return out;
        }
        let mut take = |p: &[u8], subtree: bool, masks: &mut BTreeMap<Vec<u8>, u32>| {
            if let Some(m) = masks.remove(p) {
                out.insert(p.to_vec(), m);
            }
            if subtree {
                let keys: Vec<Vec<u8>> = masks.range(below(p)).map(|(k, _)| k.clone()).collect();
                for k in keys {
                    if let Some(m) = masks.remove(&k) {
                        out.insert(k, m);
                    }
                }
            }
        };
        for op in ops {
            match op {
                Op::Sync { path, recursive } => take(path, *recursive, &mut self.masks),
                Op::Move { from, to } => {
                    take(from, false, &mut self.masks);
                    take(to, true, &mut self.masks);
                }
            }
        }
        if self.entries.is_empty() && self.moves.is_empty() {
            self.masks.clear();
        }
        out
    }

    /// The handler of a popped op may create `p`'s parents and, for a whole
    /// subtree, anything below `p`: pending entries there can no longer
    /// vanish without an op.
    pub(super) fn touched(&mut self, p: &[u8], subtree: bool) {
        for a in path::ancestors(p) {
            if let Some(e) = self.entries.get_mut(a) {
                e.existed = true;
            }
        }
        if subtree {
            if let Some(e) = self.entries.get_mut(p) {
                e.existed = true;
            }
            for (_, e) in self.entries.range_mut(below(p)) {
                e.existed = true;
            }
        }
    }
}
