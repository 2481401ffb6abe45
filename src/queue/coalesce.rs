//! The coalescing rules: how a change folds into what is pending for its
//! path (and the paths above and below it), how renames are recorded and
//! chained, and the lookups that decide whether the destination may hold
//! a path.

use super::*;

impl Queue {
    pub(super) fn lane_for(&self, is_dir: bool, size: u64) -> Lane {
        if !is_dir && self.cfg.big_threshold > 0 && size > self.cfg.big_threshold {
            Lane::Big
        } else {
            Lane::Normal
        }
    }

    /// Adds (or merges) the need to sync `path`. A path below a pending
    /// recursive entry is absorbed by it; a recursive entry absorbs what lies
    /// below it. On a merge the existing `existed` stays (the first change
    /// decides whether the destination may hold the path) unless `force`;
    /// a recursive entry that absorbs entries below it may be held if any
    /// of them may.
    pub(super) fn add(&mut self, now: Instant, path: &[u8], new: Entry, force: bool) {
        if let Some(len) = self.covering(path) {
            let key = path[..len].to_vec();
            if let Some(mut anc) = self.take(&key) {
                anc.absorb(&new);
                if force {
                    anc.existed = true;
                }
                self.put(now, key, anc);
            }
            return;
        }
        let mut e = match self.take(path) {
            Some(mut old) => {
                old.absorb(&new);
                old.recursive |= new.recursive;
                if force {
                    old.existed = true;
                }
                old
            }
            None => new,
        };
        if e.recursive {
            for (_, child) in self.take_below(path) {
                // What the destination may hold below `path` it may hold
                // `path` for (as a parent), whichever change came first.
                e.existed |= child.existed;
                e.absorb(&child);
            }
        }
        self.put(now, path.to_vec(), e);
    }

    pub(super) fn removed(&mut self, now: Instant, path: &[u8], is_dir: bool) {
        let gone = Entry::new(now, Lane::Normal, true, false);
        if self.covering(path).is_some() {
            self.add(now, path, gone, false);
            return;
        }
        let lacks = self.dst_lacks(path);
        // Whatever was pending below is covered by deleting the whole path.
        let children = self.take_below(path);
        let old = self.take(path);
        let may_exist = old.as_ref().map_or(!lacks, |e| e.existed)
            || children.iter().any(|(_, c)| c.existed)
            || self.move_into(path)
            || self.inflight_touches(path);
        if !may_exist {
            return; // created and deleted inside the window: nothing to do
        }
        let mut e = old.unwrap_or(gone);
        e.existed = true;
        e.not_before = None; // a new change: retried now if it had failed
        e.recursive |= is_dir || !children.is_empty();
        e.lane = e.lane.min(Lane::Normal);
        for (_, c) in &children {
            e.absorb(c);
        }
        self.put(now, path.to_vec(), e);
    }

    pub(super) fn moved(&mut self, now: Instant, from: Vec<u8>, to: Vec<u8>, is_dir: bool) {
        if from == to {
            return;
        }
        if from.is_empty() || to.is_empty() || related(&from, &to) {
            // Not a rename a file system can do; sync both sides whole.
            for p in [&from, &to] {
                self.add(now, p, Entry::new(now, Lane::Normal, true, true), true);
            }
            return;
        }
        let from_lacks = self.dst_lacks(&from);
        let to_lacks = self.dst_lacks(&to);
        let from_entry = self.take(&from);
        let cover = self
            .covering(&from)
            .and_then(|len| self.entries.get(&from[..len]).cloned());
        let children = self.take_below(&from);
        let existed = self.inflight_touches(&from)
            || self.move_into(&from)
            || children.iter().any(|(_, c)| c.existed)
            || match (&from_entry, &cover) {
                (Some(e), _) => e.existed,
                (None, Some(c)) => c.existed,
                (None, None) => !from_lacks,
            };
        // The rename replaces whatever `to` was.
        let to_entry = self.take(&to);
        let to_children = self.take_below(&to);
        let to_existed = to_entry.as_ref().map_or(!to_lacks, |e| e.existed)
            || to_children.iter().any(|(_, c)| c.existed)
            || self.move_into(&to);

        if !existed {
            // The destination never had `from`: no rename, just a new `to`.
            // A subtree the destination may still hold at `to` must go too.
            let replaced =
                to_entry.as_ref().is_some_and(|e| e.recursive) || !to_children.is_empty();
            let mut e = Entry::new(now, Lane::Normal, to_existed, is_dir || replaced);
            if let Some(f) = from_entry.as_ref().or(cover.as_ref()) {
                e.lane = f.lane.min(Lane::Normal);
                e.since = f.since;
                e.attempt = f.attempt;
            }
            if let Some(f) = &from_entry {
                e.recursive |= f.recursive;
            }
            if e.recursive {
                for (_, c) in &children {
                    e.absorb(c);
                }
                self.add(now, &to, e, false);
            } else {
                self.add(now, &to, e, false);
                for (p, c) in children {
                    self.add(now, &path::rebase(&p, &from, &to), c, false);
                }
            }
            return;
        }

        let chained = self.chain(now, &from, &to);
        // Before this rename is recorded: it does not read `from` late.
        self.rebase_late(now, &from, &to);
        if !chained {
            self.next_back += 1;
            let rec = MoveRec {
                from: from.clone(),
                to: to.clone(),
                lane: Lane::Normal,
                since: now,
                attempt: 0,
            };
            self.put_move(now, self.next_back, rec);
        }
        if let Some(mut e) = from_entry {
            e.lane = e.lane.min(Lane::Normal);
            e.existed = true;
            e.not_before = None;
            self.add(now, &to, e, false);
        }
        for (p, c) in children {
            self.add(now, &path::rebase(&p, &from, &to), c, false);
        }
        if let Some(c) = cover {
            // A pending subtree covered `from`: its changes were folded into
            // that subtree, so the renamed copy needs a full sync where it landed.
            let mut e = Entry::new(now, c.lane.min(Lane::Normal), true, true);
            e.since = c.since;
            e.attempt = c.attempt;
            self.add(now, &to, e, true);
        }
    }

    /// Chains `a→b` (pending) and `b→c` (new) into `a→c` when no rename in
    /// between touches any of the three paths and `a→c` is itself a rename
    /// (`a` and `c` unrelated, or equal: there and back). The destination's
    /// old `b`, which `a→b` would have replaced, then needs a sync of its own.
    pub(super) fn chain(&mut self, now: Instant, b: &[u8], c: &[u8]) -> bool {
        let mut between = Vec::new();
        let mut cand = None;
        for (&seq, m) in self.moves.iter().rev().take(CHAIN_LOOKBACK) {
            if m.to == b {
                cand = Some(seq);
                break;
            }
            between.push(seq);
        }
        let Some(seq) = cand else { return false };
        let Some(a) = self.moves.get(&seq).map(|m| m.from.clone()) else {
            return false;
        };
        if a != c && related(&a, c) {
            // `x/y→z, z→x` (or `x→z, z→x/y`) is two renames a file system
            // can do, but `x/y→x` is none.
            return false;
        }
        for s in &between {
            if let Some(m) = self.moves.get(s) {
                for p in [&m.from, &m.to] {
                    if related(p, &a) || related(p, b) || related(p, c) {
                        return false;
                    }
                }
            }
        }
        let Some(mut m) = self.take_move(seq) else {
            return false;
        };
        // Whatever the destination held at `b` (a dir with content, even)
        // is no longer replaced by a rename: sync it whole.
        let mut old_b = Entry::new(now, m.lane.min(Lane::Normal), true, true);
        old_b.since = m.since;
        old_b.attempt = m.attempt;
        if a != c {
            m.to = c.to_vec();
            self.put_move(now, seq, m);
        }
        self.add(now, b, old_b, true);
        true
    }

    /// Some ops read the source later than the rename `from→to` happened
    /// and may leave at `from` (or below it) what the rename did not carry:
    /// a batch in flight (it may even delete there what the source no longer
    /// has), and the fallback of a pending rename (a handler that cannot
    /// replay one syncs both of its sides, whole, from the source as it is
    /// then). Replaying `from→to` carries that along, so what they touched
    /// there must be synced again, whole, where it went. Call it before
    /// recording `from→to` itself, and after chaining (a chained rename no
    /// longer names `from`).
    pub(super) fn rebase_late(&mut self, now: Instant, from: &[u8], to: &[u8]) {
        let mut hits: Vec<Vec<u8>> = Vec::new();
        let mut over = false;
        if !self.inflight.is_empty() {
            hits.extend(self.inflight.range(below(from)).map(|(k, _)| k.clone()));
            if self.inflight.contains_key(from) {
                hits.push(from.to_vec());
            }
            over |= self.inflight.get(&b""[..]) == Some(&true)
                || path::ancestors(from).any(|a| self.inflight.get(a) == Some(&true));
        }
        // A pending rename's sides are synced whole when it falls back.
        for set in [&self.move_froms, &self.move_tos] {
            hits.extend(set.range(below(from)).map(|(k, _)| k.clone()));
            if set.contains_key(from) {
                hits.push(from.to_vec());
            }
            over |= path::ancestors(from).any(|a| set.contains_key(a));
        }
        for p in hits {
            let q = path::rebase(&p, from, to);
            self.add(now, &q, Entry::new(now, Lane::Normal, true, true), true);
        }
        if over {
            self.add(now, to, Entry::new(now, Lane::Normal, true, true), true);
        }
    }

    // ----- lookups -----------------------------------------------------

    /// Length of the pending recursive entry strictly above `p`, if any.
    pub(super) fn covering(&self, p: &[u8]) -> Option<usize> {
        if self.recursive == 0 || p.is_empty() {
            return None;
        }
        let rec = |k: &[u8]| self.entries.get(k).is_some_and(|e| e.recursive);
        if rec(b"") {
            return Some(0);
        }
        path::ancestors(p).find(|a| rec(a)).map(<[u8]>::len)
    }

    /// The destination cannot hold `p`: the nearest pending entry above it
    /// is a directory the destination does not hold (created in this
    /// window), that no pending rename fills and no batch in flight touches.
    pub(super) fn dst_lacks(&self, p: &[u8]) -> bool {
        let mut a = p;
        while !a.is_empty() {
            a = path::parent(a);
            if let Some(e) = self.entries.get(a) {
                return !a.is_empty()
                    && !e.existed
                    && !self.move_into(a)
                    && !self.inflight_touches(a);
            }
        }
        false
    }

    /// A pending rename lands at or below `p`.
    pub(super) fn move_into(&self, p: &[u8]) -> bool {
        self.move_tos.contains_key(p) || self.move_tos.range(below(p)).next().is_some()
    }

    /// A batch in flight may create, delete or rename `p`: it names `p`, a
    /// path below it (whose parents it may create), or a subtree above it.
    pub(super) fn inflight_touches(&self, p: &[u8]) -> bool {
        if self.inflight.is_empty() {
            return false;
        }
        self.inflight.contains_key(p)
            || (!p.is_empty() && self.inflight.get(&b""[..]) == Some(&true))
            || path::ancestors(p).any(|a| self.inflight.get(a) == Some(&true))
            || self.inflight.range(below(p)).next().is_some()
    }
}
