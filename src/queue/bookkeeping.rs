//! Bookkeeping: every entry and rename goes in and out of the queue through
//! these, which keep the per-lane counts, window starts, oldest-change
//! times and failed-path holds in step.

use super::*;

impl Queue {
    pub(super) fn put(&mut self, now: Instant, key: Vec<u8>, e: Entry) {
        self.remember(now, e.lane, e.since);
        if e.recursive {
            self.recursive += 1;
        }
        if let Some(t) = e.not_before {
            let i = lane_index(e.lane);
            self.held[i] += 1;
            *self.holds[i].entry(t).or_default() += 1;
        }
        if let Some(old) = self.entries.insert(key, e) {
            self.forget(&old);
        }
    }

    pub(super) fn take(&mut self, key: &[u8]) -> Option<Entry> {
        let e = self.entries.remove(key)?;
        self.forget(&e);
        Some(e)
    }

    pub(super) fn take_below(&mut self, p: &[u8]) -> Vec<(Vec<u8>, Entry)> {
        let keys: Vec<Vec<u8>> = self
            .entries
            .range(below(p))
            .map(|(k, _)| k.clone())
            .collect();
        keys.into_iter()
            .filter_map(|k| self.take(&k).map(|e| (k, e)))
            .collect()
    }

    pub(super) fn put_move(&mut self, now: Instant, seq: i64, m: MoveRec) {
        self.remember(now, m.lane, m.since);
        *self.move_tos.entry(m.to.clone()).or_default() += 1;
        *self.move_froms.entry(m.from.clone()).or_default() += 1;
        self.moves.insert(seq, m);
    }

    pub(super) fn take_move(&mut self, seq: i64) -> Option<MoveRec> {
        let m = self.moves.remove(&seq)?;
        self.count[lane_index(m.lane)] -= 1;
        self.forget_since(m.since);
        for (set, p) in [(&mut self.move_tos, &m.to), (&mut self.move_froms, &m.from)] {
            if let Some(n) = set.get_mut(p) {
                *n -= 1;
                if *n == 0 {
                    set.remove(p);
                }
            }
        }
        Some(m)
    }

    pub(super) fn remember(&mut self, now: Instant, lane: Lane, since: Instant) {
        let i = lane_index(lane);
        self.count[i] += 1;
        if self.start[i].is_none() {
            self.start[i] = Some(now);
        }
        *self.since.entry(since).or_default() += 1;
    }

    pub(super) fn forget(&mut self, e: &Entry) {
        self.count[lane_index(e.lane)] -= 1;
        if e.recursive {
            self.recursive -= 1;
        }
        if let Some(t) = e.not_before {
            let i = lane_index(e.lane);
            self.held[i] -= 1;
            if let Some(n) = self.holds[i].get_mut(&t) {
                *n -= 1;
                if *n == 0 {
                    self.holds[i].remove(&t);
                }
            }
        }
        self.forget_since(e.since);
    }

    pub(super) fn forget_since(&mut self, since: Instant) {
        if let Some(n) = self.since.get_mut(&since) {
            *n -= 1;
            if *n == 0 {
                self.since.remove(&since);
            }
        }
    }

    /// Closes the window of every lane that ended up empty. Runs at the end
    /// of each public operation, so that an entry taken out and put back in
    /// the same operation does not reopen (extend) its lane's window.
    pub(super) fn settle(&mut self) {
        for i in 0..3 {
            if self.count[i] == 0 {
                self.start[i] = None;
            }
        }
    }
}
