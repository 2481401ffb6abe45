//! The batching queue: coalescing per path and clsync's delay windows.
//!
//! The queue owns what is *pending*: which paths need a sync, which renames
//! must be replayed, which lane (window) each waits in, and when each lane is
//! due. It is a pure state machine driven by an injected clock: every method
//! that cares about time takes `now`, and the caller (the event loop) sleeps
//! until [`Queue::next_due`]. It must not sleep, do I/O, spawn threads or read
//! the real clock.
//!
//! What it promises, for any order of changes and pops: applying the batches
//! it hands out, in order, with a state-based handler (see [`crate::batch`])
//! makes the destination equal to the source. To keep that promise while
//! coalescing, it remembers per pending path whether the destination may
//! already hold it (`existed`): only a path the destination cannot hold may
//! vanish without an op (create + delete inside a window). It also remembers
//! the paths of batches that are in flight (popped, not yet
//! [`finished`](Queue::finished)): a handler reads the source when it runs, so
//! it may copy a path the queue believes new, or act on a path a later rename
//! moved away. A pending rename is read late the same way (a handler that
//! cannot replay it syncs both sides whole from the source as it is then),
//! so a later rename of a path that one touches syncs where it lands, whole;
//! and two renames are chained into one only when that one is a rename too.
//!
//! Windows: a lane's window opens at the first change that lands in the empty
//! lane and later changes never extend it. `Normal` is due at `window + delay`
//! (`-t`), `Big` at `window + delay_big` (`-T`), both no earlier than
//! `interval` (`-w`) after the last finished sync; `Instant` is due at once.
//! After a failure every lane waits for the retry's `not_before`, so the
//! failed ops still run before anything that came after them, and a failing
//! destination is not hammered while it backs off. When the handler can say
//! which paths failed ([`Queue::requeue_failed_id`]), only those come back,
//! each waiting for its own retry in the instant lane while everything else
//! keeps flowing (a full disk must not hold up the deletions that free it);
//! a new change to such a path ends its wait.
//!
//! What callers must keep true (the promise above rests on it):
//! - [`Change::Created`] means the path did not exist in the source just
//!   before (inotify's `IN_CREATE`). Something moved in from outside the tree
//!   may replace an existing entry: send `Modified` for a file, `Subtree` for
//!   a directory, never `Created`.
//! - Push every change the monitor has already queued before calling
//!   [`Queue::finished`]: the handler may have seen those changes, and a
//!   `Created` that arrives after `finished` is taken as new to the destination.
//! - Run batches one at a time, in the order they were popped: renames are
//!   replayed in order, and a batch may rely on the renames of the one before.
//!   The exception is the exclusive mode ([`Queue::set_exclusive`], `-p
//!   safe`): there a pop leaves pending whatever is related (the same path,
//!   an ancestor or a descendant) to a path of a batch in flight, and every
//!   rename that is related to a rename it leaves pending, so the batches in
//!   flight never share a path and may run at once, finishing in any order.
//!   Without it (`-p full`) batches may run at once too, but then races
//!   between them are the caller's to accept.
//! - Call `finished` once for every popped batch (success or failure), and
//!   [`Queue::requeue`] as well when it failed. Callers that run several
//!   batches at once use the ids: [`Queue::pop_due_with_id`],
//!   [`Queue::finished_id`] on success, [`Queue::requeue_id`] (which also
//!   finishes) on failure, [`Queue::requeue_failed_id`] (which also
//!   finishes) when only some paths failed.

use crate::batch::{Batch, Lane, Op};
use crate::path;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::time::{Duration, Instant};

/// How many of the newest pending moves a rename may look back through to
/// chain `a→b, b→c` into `a→c` (bounds the cost of a rename storm).
const CHAIN_LOOKBACK: usize = 64;

/// The windows, straight from the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueConfig {
    /// `-t`: collect window for ordinary files and directories.
    pub delay: Duration,
    /// `-T`: collect window for files bigger than `big_threshold`.
    pub delay_big: Duration,
    /// `-B`: size in bytes above which a file is big; 0 disables the big lane.
    pub big_threshold: u64,
    /// `-w`: at least this long between the end of one sync and the start of the next.
    pub interval: Duration,
}

/// A change the tree saw, as input to the queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A new entry appeared (`size` is its size when seen; 0 for dirs).
    Created {
        path: Vec<u8>,
        is_dir: bool,
        size: u64,
    },
    /// Content or metadata of an existing entry changed.
    Modified {
        path: Vec<u8>,
        is_dir: bool,
        size: u64,
    },
    Removed {
        path: Vec<u8>,
        is_dir: bool,
    },
    /// A rename inside the tree.
    Moved {
        from: Vec<u8>,
        to: Vec<u8>,
        is_dir: bool,
    },
    /// Sync the whole subtree at `path` (a dir created or moved in, a rescan,
    /// the initial sync with `path` empty). `instant`: no collect window.
    Subtree {
        path: Vec<u8>,
        instant: bool,
    },
}

/// One pending path: it will become `Op::Sync { path, recursive }`.
#[derive(Clone, Debug)]
struct Entry {
    /// The destination may hold this path (so it may not vanish without an op).
    existed: bool,
    /// Sync the whole subtree. No entry ever lies strictly below a recursive one.
    recursive: bool,
    lane: Lane,
    /// When the oldest change folded into this entry arrived.
    since: Instant,
    /// Failures already suffered by a batch that carried this entry.
    attempt: u32,
    /// A path that failed on its own ([`Queue::requeue_failed_id`]) waits
    /// for its retry until then, while the rest of the queue flows.
    not_before: Option<Instant>,
}

impl Entry {
    fn new(now: Instant, lane: Lane, existed: bool, recursive: bool) -> Self {
        Entry {
            existed,
            recursive,
            lane,
            since: now,
            attempt: 0,
            not_before: None,
        }
    }

    /// Folds another pending change for the same (or a covered) path in:
    /// the faster lane, the older time, the higher attempt win. A new
    /// change ends a failed path's wait (its next event retries it).
    fn absorb(&mut self, other: &Entry) {
        self.lane = self.lane.min(other.lane);
        self.since = self.since.min(other.since);
        self.attempt = self.attempt.max(other.attempt);
        self.not_before = match (self.not_before, other.not_before) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
    }
}

/// One pending rename, replayed in order before any sync. `from` and `to`
/// are always a rename a file system can do: neither is the root and
/// neither lies at or below the other. A handler that cannot replay a move
/// falls back to syncing both sides from the source as it is *later*, after
/// renames the queue has not replayed yet, so an impossible move would lose
/// what those renames carried away.
#[derive(Clone, Debug)]
struct MoveRec {
    from: Vec<u8>,
    to: Vec<u8>,
    /// `Normal`, or `Instant` for a rename that comes back from a failed batch.
    lane: Lane,
    since: Instant,
    attempt: u32,
}

/// The batching queue. See the module documentation for the rules.
#[derive(Debug)]
pub struct Queue {
    cfg: QueueConfig,
    /// Pending syncs by path; byte order puts parents before children and
    /// makes "everything below `p`" one range.
    entries: BTreeMap<Vec<u8>, Entry>,
    /// How many entries are recursive (0 → no ancestor lookups needed).
    recursive: usize,
    /// Pending renames by sequence number (requeued ones get negative numbers
    /// so that they come first).
    moves: BTreeMap<i64, MoveRec>,
    /// `to` of every pending rename, with multiplicity.
    move_tos: BTreeMap<Vec<u8>, usize>,
    /// `from` of every pending rename, with multiplicity.
    move_froms: BTreeMap<Vec<u8>, usize>,
    next_back: i64,
    next_front: i64,
    /// Pending ops per lane (entries and renames).
    count: [usize; 3],
    /// When each lane's window opened (None while the lane is empty).
    start: [Option<Instant>; 3],
    /// `since` of every pending op, with multiplicity (for `oldest`).
    since: BTreeMap<Instant, usize>,
    last_finished: Option<Instant>,
    /// No lane is due before this (set by `requeue`).
    hold_until: Option<Instant>,
    /// Paths of the batches in flight (`true`: the whole subtree): the
    /// union over `flights`.
    inflight: BTreeMap<Vec<u8>, bool>,
    // ----- parallel runs (-p safe|full) -----
    /// The batches in flight, by id (ids grow: the oldest comes first).
    flights: BTreeMap<u64, Flight>,
    next_id: u64,
    /// `-p safe`: a pop never hands out a path related to one in flight.
    exclusive: bool,
    /// Event masks noted per path ([`Queue::note_mask`]), handed out with
    /// the batch that carries the path (see [`Batch::masks`]).
    masks: BTreeMap<Vec<u8>, u32>,
    /// Per lane: `not_before` of every waiting failed path, with multiplicity.
    holds: [BTreeMap<Instant, usize>; 3],
    /// Per lane: how many entries wait (the sum over `holds`).
    held: [usize; 3],
}

/// The id of a popped batch, for [`Queue::finished_id`] and
/// [`Queue::requeue_id`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BatchId(u64);

/// One batch in flight.
#[derive(Clone, Debug, Default)]
struct Flight {
    /// Its paths (`true`: the whole subtree).
    paths: BTreeMap<Vec<u8>, bool>,
    /// Failures its ops had already suffered, per path (for the retry
    /// count of a path that fails on its own).
    attempts: BTreeMap<Vec<u8>, u32>,
    /// Renames handed out in later batches while this one ran, in order: if
    /// it fails, its syncs follow them as they follow pending renames.
    later_moves: Vec<(Vec<u8>, Vec<u8>)>,
}

fn lane_index(lane: Lane) -> usize {
    match lane {
        Lane::Instant => 0,
        Lane::Normal => 1,
        Lane::Big => 2,
    }
}

/// The key range strictly below `p` (everything but the root for the root).
fn below(p: &[u8]) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    if p.is_empty() {
        (Bound::Excluded(Vec::new()), Bound::Unbounded)
    } else {
        let mut lo = Vec::with_capacity(p.len() + 1);
        lo.extend_from_slice(p);
        lo.push(b'/');
        let mut hi = lo.clone();
        if let Some(last) = hi.last_mut() {
            *last = b'/' + 1;
        }
        (Bound::Included(lo), Bound::Excluded(hi))
    }
}

/// One path is the other or lies below it.
fn related(a: &[u8], b: &[u8]) -> bool {
    path::is_under(a, b) || path::is_under(b, a)
}

/// A value of a requeued sync that says whether it covers the subtree.
trait Recursive {
    fn recursive(&self) -> bool;
}

impl Recursive for bool {
    fn recursive(&self) -> bool {
        *self
    }
}

impl Recursive for (bool, u32) {
    fn recursive(&self) -> bool {
        self.0
    }
}

/// `t + d`, saturating at a century instead of overflowing.
fn later(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .or_else(|| t.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(t)
}

impl Queue {
    pub fn new(cfg: QueueConfig) -> Self {
        Queue {
            cfg,
            entries: BTreeMap::new(),
            recursive: 0,
            moves: BTreeMap::new(),
            move_tos: BTreeMap::new(),
            move_froms: BTreeMap::new(),
            next_back: 0,
            next_front: 0,
            count: [0; 3],
            start: [None; 3],
            since: BTreeMap::new(),
            last_finished: None,
            hold_until: None,
            inflight: BTreeMap::new(),
            flights: BTreeMap::new(),
            next_id: 0,
            exclusive: false,
            masks: BTreeMap::new(),
            holds: Default::default(),
            held: [0; 3],
        }
    }

    /// `-p safe`: from now on a pop leaves pending every op related to a
    /// path in flight (see the module documentation).
    pub fn set_exclusive(&mut self, on: bool) {
        self.exclusive = on;
    }

    /// Records the inotify-style event bits `mask` seen for `path` (what
    /// clsync's command modes report as `%EVENT-MASK%`). They are ORed
    /// together until a batch carries `path` (or a subtree above it), and
    /// are informational only: they never change what is synced.
    pub fn note_mask(&mut self, path: &[u8], mask: u32) {
        *self.masks.entry(path.to_vec()).or_default() |= mask;
    }

    /// Records one change seen at `now`.
    pub fn push(&mut self, now: Instant, change: Change) {
        match change {
            Change::Created { path, is_dir, size } => {
                let lane = self.lane_for(is_dir, size);
                // A created path is new to the destination, unless a batch in
                // flight may copy it there (the handler reads the source late).
                let existed = self.inflight_touches(&path);
                self.add(now, &path, Entry::new(now, lane, existed, false), false);
            }
            Change::Modified { path, is_dir, size } => {
                let lane = self.lane_for(is_dir, size);
                let existed = !self.dst_lacks(&path);
                self.add(now, &path, Entry::new(now, lane, existed, false), false);
            }
            Change::Removed { path, is_dir } => self.removed(now, &path, is_dir),
            Change::Moved { from, to, is_dir } => self.moved(now, from, to, is_dir),
            Change::Subtree { path, instant } => {
                let lane = if instant { Lane::Instant } else { Lane::Normal };
                let existed = !self.dst_lacks(&path);
                self.add(now, &path, Entry::new(now, lane, existed, true), false);
            }
        }
        self.settle();
    }

    /// When the next lane is due (None when nothing is pending).
    pub fn next_due(&self) -> Option<Instant> {
        Lane::ALL.iter().filter_map(|&l| self.due(l)).min()
    }

    /// The batch of the fastest lane that is due at `now`, if any. Call it
    /// until it returns None to drain every due lane.
    pub fn pop_due(&mut self, now: Instant) -> Option<Batch> {
        self.pop_due_with_id(now).map(|(_, b)| b)
    }

    /// As [`pop_due`](Queue::pop_due), with the id to finish the batch by.
    /// In exclusive mode a due lane whose every op waits for a batch in
    /// flight gives nothing (and stays due: pop again after a finish).
    pub fn pop_due_with_id(&mut self, now: Instant) -> Option<(BatchId, Batch)> {
        for lane in Lane::ALL {
            if self.due(lane).is_some_and(|t| t <= now) {
                if let Some(popped) = self.pop(Some(lane), Some(now)) {
                    return Some(popped);
                }
            }
        }
        None
    }

    /// Everything pending in one batch, ignoring every window and every
    /// failed path's wait (shutdown). None when nothing is pending (or, in
    /// exclusive mode, when all of it waits for a batch in flight).
    pub fn pop_all(&mut self) -> Option<Batch> {
        self.pop_all_with_id().map(|(_, b)| b)
    }

    /// As [`pop_all`](Queue::pop_all), with the id to finish the batch by.
    pub fn pop_all_with_id(&mut self) -> Option<(BatchId, Batch)> {
        if self.is_empty() {
            return None;
        }
        self.pop(None, None)
    }

    /// Everything pending in one batch, ignoring every window, but not the
    /// wait of a failed path whose retry is not due at `now` (exit when
    /// there are no more events: a failing path is retried with backoff,
    /// not in a tight loop). See [`next_ready`](Queue::next_ready).
    pub fn pop_ready_with_id(&mut self, now: Instant) -> Option<(BatchId, Batch)> {
        if self.is_empty() {
            return None;
        }
        self.pop(None, Some(now))
    }

    /// When [`pop_ready_with_id`](Queue::pop_ready_with_id) has something
    /// to give: `now` unless every pending op is a failed path waiting for
    /// its retry. None when nothing is pending.
    pub fn next_ready(&self, now: Instant) -> Option<Instant> {
        if self.is_empty() {
            return None;
        }
        if self.len() > self.held.iter().sum::<usize>() {
            return Some(now);
        }
        self.holds
            .iter()
            .filter_map(|h| h.keys().next().copied())
            .min()
            .map(|t| t.max(now))
    }

    /// Pending paths that failed on their own and wait for their retry.
    pub fn waiting(&self) -> usize {
        self.held.iter().sum()
    }

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
    fn requeue_after(
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
    fn rebase_syncs<V: Copy + Default + Recursive>(
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

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pending ops (syncs and renames) over all lanes.
    pub fn len(&self) -> usize {
        self.count.iter().sum()
    }

    /// Pending ops in one lane (renames count in `Normal`, or `Instant` when
    /// they come back from a failed batch).
    pub fn lane_len(&self, lane: Lane) -> usize {
        self.count[lane_index(lane)]
    }

    /// When the oldest pending change arrived (for lag metrics).
    pub fn oldest(&self) -> Option<Instant> {
        self.since.keys().next().copied()
    }

    /// Batches popped and not yet finished.
    pub fn in_flight(&self) -> usize {
        self.flights.len()
    }

    // ----- rules -------------------------------------------------------

    fn lane_for(&self, is_dir: bool, size: u64) -> Lane {
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
    fn add(&mut self, now: Instant, path: &[u8], new: Entry, force: bool) {
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

    fn removed(&mut self, now: Instant, path: &[u8], is_dir: bool) {
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

    fn moved(&mut self, now: Instant, from: Vec<u8>, to: Vec<u8>, is_dir: bool) {
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
    fn chain(&mut self, now: Instant, b: &[u8], c: &[u8]) -> bool {
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
    fn rebase_late(&mut self, now: Instant, from: &[u8], to: &[u8]) {
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
    fn covering(&self, p: &[u8]) -> Option<usize> {
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
    fn dst_lacks(&self, p: &[u8]) -> bool {
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
    fn move_into(&self, p: &[u8]) -> bool {
        self.move_tos.contains_key(p) || self.move_tos.range(below(p)).next().is_some()
    }

    /// A batch in flight may create, delete or rename `p`: it names `p`, a
    /// path below it (whose parents it may create), or a subtree above it.
    fn inflight_touches(&self, p: &[u8]) -> bool {
        if self.inflight.is_empty() {
            return false;
        }
        self.inflight.contains_key(p)
            || (!p.is_empty() && self.inflight.get(&b""[..]) == Some(&true))
            || path::ancestors(p).any(|a| self.inflight.get(a) == Some(&true))
            || self.inflight.range(below(p)).next().is_some()
    }

    fn due(&self, lane: Lane) -> Option<Instant> {
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
    fn pop(&mut self, lane: Option<Lane>, ready: Option<Instant>) -> Option<(BatchId, Batch)> {
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
    fn busy(&self, p: &[u8], held: &BTreeMap<Vec<u8>, bool>) -> bool {
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
    fn take_masks(&mut self, ops: &[Op]) -> BTreeMap<Vec<u8>, u32> {
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
    fn touched(&mut self, p: &[u8], subtree: bool) {
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

    // ----- bookkeeping -------------------------------------------------

    fn put(&mut self, now: Instant, key: Vec<u8>, e: Entry) {
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

    fn take(&mut self, key: &[u8]) -> Option<Entry> {
        let e = self.entries.remove(key)?;
        self.forget(&e);
        Some(e)
    }

    fn take_below(&mut self, p: &[u8]) -> Vec<(Vec<u8>, Entry)> {
        let keys: Vec<Vec<u8>> = self
            .entries
            .range(below(p))
            .map(|(k, _)| k.clone())
            .collect();
        keys.into_iter()
            .filter_map(|k| self.take(&k).map(|e| (k, e)))
            .collect()
    }

    fn put_move(&mut self, now: Instant, seq: i64, m: MoveRec) {
        self.remember(now, m.lane, m.since);
        *self.move_tos.entry(m.to.clone()).or_default() += 1;
        *self.move_froms.entry(m.from.clone()).or_default() += 1;
        self.moves.insert(seq, m);
    }

    fn take_move(&mut self, seq: i64) -> Option<MoveRec> {
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

    fn remember(&mut self, now: Instant, lane: Lane, since: Instant) {
        let i = lane_index(lane);
        self.count[i] += 1;
        if self.start[i].is_none() {
            self.start[i] = Some(now);
        }
        *self.since.entry(since).or_default() += 1;
    }

    fn forget(&mut self, e: &Entry) {
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

    fn forget_since(&mut self, since: Instant) {
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
    fn settle(&mut self) {
        for i in 0..3 {
            if self.count[i] == 0 {
                self.start[i] = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Data-driven cases: each script is a list of timed lines (`<ms> <what>`)
    //! and the batches expected from pops, read like a spec:
    //!
    //! ```text
    //! config delay=1000 big=100 delay_big=5000 interval=0
    //! 0    create f            # also: modify P [dir] [big], remove P [dir],
    //! 10   remove f            #       move A B [dir], subtree P [instant] (`.` = root)
    //! 2000 pop => none         # pop => LANE#ATTEMPT: op, op   (op: move A B | sync P | sync* P)
    //! 2000 due => none         # due => MS, len => N, oldest => MS, inflight => N, popall => …,
    //!                          # finished, fail NOT_BEFORE (requeue the last popped batch)
    //! ```
    use super::*;

    fn bytes(s: &str) -> Vec<u8> {
        if s == "." {
            Vec::new()
        } else {
            s.as_bytes().to_vec()
        }
    }

    pub(super) fn show(b: &Option<Batch>) -> String {
        let Some(b) = b else { return "none".into() };
        let ops: Vec<String> = b
            .ops
            .iter()
            .map(|op| match op {
                Op::Move { from, to } => {
                    format!("move {} {}", path::display(from), path::display(to))
                }
                Op::Sync { path: p, recursive } => {
                    let star = if *recursive { "*" } else { "" };
                    format!("sync{star} {}", path::display(p))
                }
            })
            .collect();
        format!("{}#{}: {}", b.lane.name(), b.attempt, ops.join(", "))
    }

    fn run(script: &str) {
        let mut cfg = QueueConfig {
            delay: Duration::from_millis(1000),
            delay_big: Duration::from_millis(5000),
            big_threshold: 100,
            interval: Duration::ZERO,
        };
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut q: Option<Queue> = None;
        let mut last: Option<Batch> = None;
        for (n, raw) in script.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            let line = if raw.contains("=>") { raw.trim() } else { line };
            if line.is_empty() {
                continue;
            }
            let (cmd, want) = match line.split_once("=>") {
                Some((c, w)) => (c.trim(), Some(w.trim())),
                None => (line, None),
            };
            let w: Vec<&str> = cmd.split_whitespace().collect();
            let ctx = format!("line {}: {raw}", n + 1);
            if w[0] == "config" {
                for kv in &w[1..] {
                    let (k, v) = kv.split_once('=').expect("key=value");
                    let v: u64 = v.parse().expect("number");
                    match k {
                        "delay" => cfg.delay = Duration::from_millis(v),
                        "delay_big" => cfg.delay_big = Duration::from_millis(v),
                        "big" => cfg.big_threshold = v,
                        "interval" => cfg.interval = Duration::from_millis(v),
                        _ => panic!("{ctx}: unknown key"),
                    }
                }
                continue;
            }
            let q = q.get_or_insert_with(|| Queue::new(cfg.clone()));
            let now = at(w[0].parse().expect("time in ms"));
            let flag = |f: &str| w.iter().skip(2).any(|x| *x == f);
            let size = if flag("big") { 1000 } else { 10 };
            match w[1] {
                "create" => q.push(
                    now,
                    Change::Created {
                        path: bytes(w[2]),
                        is_dir: flag("dir"),
                        size,
                    },
                ),
                "modify" => q.push(
                    now,
                    Change::Modified {
                        path: bytes(w[2]),
                        is_dir: flag("dir"),
                        size,
                    },
                ),
                "remove" => q.push(
                    now,
                    Change::Removed {
                        path: bytes(w[2]),
                        is_dir: flag("dir"),
                    },
                ),
                "move" => q.push(
                    now,
                    Change::Moved {
                        from: bytes(w[2]),
                        to: bytes(w[3]),
                        is_dir: flag("dir"),
                    },
                ),
                "subtree" => q.push(
                    now,
                    Change::Subtree {
                        path: bytes(w[2]),
                        instant: flag("instant"),
                    },
                ),
                "pop" | "popall" => {
                    let b = if w[1] == "pop" {
                        q.pop_due(now)
                    } else {
                        q.pop_all()
                    };
                    assert_eq!(show(&b), want.expect("=> expected batch"), "{ctx}");
                    if b.is_some() {
                        last = b;
                    }
                }
                "due" => {
                    let got = q
                        .next_due()
                        .map_or("none".to_string(), |t| (t - t0).as_millis().to_string());
                    assert_eq!(got, want.expect("=> expected time"), "{ctx}");
                }
                "oldest" => {
                    let got = q
                        .oldest()
                        .map_or("none".to_string(), |t| (t - t0).as_millis().to_string());
                    assert_eq!(got, want.expect("=> expected time"), "{ctx}");
                }
                "len" => {
                    assert_eq!(
                        q.len().to_string(),
                        want.expect("=> expected length"),
                        "{ctx}"
                    )
                }
                "inflight" => assert_eq!(
                    q.in_flight().to_string(),
                    want.expect("=> expected count"),
                    "{ctx}"
                ),
                "finished" => q.finished(now),
                "fail" => {
                    let nb = at(w[2].parse().expect("not_before in ms"));
                    let b = last.take().expect("a popped batch to fail");
                    q.requeue(now, b, nb);
                }
                other => panic!("{ctx}: unknown command {other}"),
            }
        }
    }

    // ----- 1. coalescing per path ---------------------------------------

    #[test]
    fn created_then_removed_in_one_window_emits_nothing() {
        run("
            0    create f
            10   remove f
            10   len => 0
            2000 pop => none
            2000 due => none
        ");
    }

    #[test]
    fn removing_a_file_that_existed_is_one_sync() {
        run("
            0    modify f
            10   remove f
            1000 pop => normal#0: sync f
        ");
    }

    #[test]
    fn recreated_then_removed_again_still_deletes() {
        run("
            0    remove f
            10   create f
            20   remove f
            1000 pop => normal#0: sync f
        ");
    }

    #[test]
    fn repeated_writes_are_one_op() {
        run("
            0    create f
            100  modify f
            200  modify f
            300  modify f
            300  len => 1
            1000 pop => normal#0: sync f
            5000 pop => none
        ");
    }

    #[test]
    fn created_dir_syncs_itself_not_its_subtree() {
        run("
            0    create d dir
            1    create d/f
            1000 pop => normal#0: sync d, sync d/f
        ");
    }

    #[test]
    fn atomic_save_replaces_target_and_a_later_delete_still_deletes_it() {
        // `f` existed before the rename replaced it: not a pure create.
        run("
            0    create f.tmp
            1    modify f.tmp
            2    move f.tmp f
            1000 pop => normal#0: sync f
            1100 create g.tmp
            1101 move g.tmp g
            1102 remove g
            2200 pop => normal#0: sync g
        ");
    }

    // ----- 2. subtrees ----------------------------------------------------

    #[test]
    fn subtree_absorbs_pending_and_later_changes_below_it() {
        run("
            0    modify d/a
            1    modify d/b/c
            2    modify e
            3    subtree d
            4    modify d/x
            5    remove d/b dir
            6    create d/new big
            6    len => 2
            1000 pop => normal#0: sync* d, sync e
        ");
    }

    #[test]
    fn root_subtree_covers_the_whole_tree() {
        run("
            0    modify a
            1    modify b/c
            2    subtree .
            3    create z
            3    len => 1
            1000 pop => normal#0: sync* .
        ");
    }

    #[test]
    fn a_change_below_a_subtree_may_speed_it_up() {
        run("
            0    subtree d
            10   subtree d/x instant
            10   pop => instant#0: sync* d
            10   len => 0
        ");
    }

    // ----- 3. deleting a directory ----------------------------------------

    #[test]
    fn removed_dir_is_recursive_and_covers_pending_children() {
        run("
            0    modify d/a
            1    create d/b
            2    modify d/c/e
            3    remove d dir
            3    len => 1
            1000 pop => normal#0: sync* d
        ");
    }

    #[test]
    fn dir_created_filled_and_removed_in_one_window_emits_nothing() {
        run("
            0    create d dir
            1    create d/f
            2    subtree d
            3    create d/g
            4    remove d/f
            5    remove d dir
            5    len => 0
            2000 pop => none
        ");
    }

    #[test]
    fn anything_inside_a_new_dir_vanishes_with_it() {
        // Renames and moves-in below a dir the destination does not hold
        // cannot reach the destination either.
        run("
            0    create d dir
            1    create d/tmp
            2    move d/tmp d/f
            3    modify d/in
            4    subtree d/sub
            5    remove d/f
            6    remove d/in
            7    remove d/sub dir
            8    remove d dir
            8    len => 0
            2000 pop => none
        ");
    }

    #[test]
    fn removed_new_dir_that_a_rename_filled_still_syncs() {
        // `x` moved into the new dir: the destination renames it there, so
        // the dir can no longer vanish without an op.
        run("
            0    create d dir
            1    move x d/x
            2    remove d/x
            3    remove d dir
            1000 pop => normal#0: move x d/x, sync* d
        ");
    }

    // ----- 4. lanes ---------------------------------------------------------

    #[test]
    fn big_files_wait_in_their_own_lane() {
        run("
            0    create small
            0    create big big
            1000 pop => normal#0: sync small
            1000 due => 5000
            4999 pop => none
            5000 pop => big#0: sync big
        ");
    }

    #[test]
    fn big_lane_is_off_when_threshold_is_zero() {
        run("
            config big=0
            0    create big big
            0    due => 1000
            1000 pop => normal#0: sync big
        ");
    }

    #[test]
    fn an_entry_moves_to_a_faster_lane_never_to_a_slower_one() {
        run("
            0    modify f big
            500  modify f
            500  due => 1500
            1000 pop => none
            1500 pop => normal#0: sync f
            2000 modify g
            2100 modify g big
            3000 pop => normal#0: sync g
        ");
    }

    #[test]
    fn removal_of_a_big_file_goes_to_the_normal_lane() {
        run("
            0    modify big big
            200  remove big
            1200 pop => normal#0: sync big
            1200 len => 0
        ");
    }

    #[test]
    fn instant_subtree_skips_window_and_interval() {
        run("
            config interval=3000
            0    modify a
            1000 pop => normal#0: sync a
            1100 finished
            1200 subtree d instant
            1200 pop => instant#0: sync* d
            1300 modify b
            2300 pop => none
            2300 due => 4100
            4100 pop => normal#0: sync b
        ");
    }

    #[test]
    fn fastest_lane_pops_first() {
        run("
            0    modify f
            0    modify b big
            0    subtree d instant
            6000 pop => instant#0: sync* d
            6000 pop => normal#0: sync f
            6000 pop => big#0: sync b
            6000 pop => none
        ");
    }

    // ----- 5. renames -------------------------------------------------------

    #[test]
    fn rename_of_an_existing_file_is_one_move() {
        run("
            0    move a b
            0    len => 1
            1000 pop => normal#0: move a b
        ");
    }

    #[test]
    fn rename_carries_pending_changes_to_the_new_name() {
        run("
            0    modify d/f
            1    create d/g
            2    modify d
            3    move d e dir
            1000 pop => normal#0: move d e, sync e, sync e/f, sync e/g
        ");
    }

    #[test]
    fn renamed_new_file_is_a_create_at_the_target() {
        run("
            0    create tmp
            1    modify tmp
            2    move tmp f
            1000 pop => normal#0: sync f
        ");
    }

    #[test]
    fn renamed_new_dir_is_a_subtree_at_the_target() {
        run("
            0    create d dir
            1    create d/f
            2    move d e dir
            1000 pop => normal#0: sync* e
        ");
    }

    #[test]
    fn renamed_new_file_then_removed_at_its_new_name_leaves_the_old_target_deleted() {
        run("
            0    create tmp
            1    move tmp f
            2    remove f
            1000 pop => normal#0: sync f
        ");
    }

    #[test]
    fn rename_chain_stays_one_move() {
        // The destination's old `b` (replaced by a→b) must go too.
        run("
            0    move a b
            1    move b c
            1000 pop => normal#0: move a c, sync* b
        ");
    }

    #[test]
    fn rename_there_and_back_leaves_only_the_replaced_target() {
        run("
            0    modify a
            1    move a b
            2    move b a
            1000 pop => normal#0: sync a, sync* b
        ");
    }

    #[test]
    fn rename_chain_is_not_taken_across_a_related_rename() {
        // `sync* c`: a handler that cannot replay `move a b` syncs b from the
        // source as it is then (a new `b`, maybe), which `move b c` carries.
        run("
            0    move a b
            1    move x a
            2    move b c
            1000 pop => normal#0: move a b, move x a, move b c, sync* c
        ");
    }

    #[test]
    fn regression_rename_chain_is_not_taken_when_it_would_move_a_dir_onto_its_parent() {
        // Proptest (bare renames): `a/b/a→b, b→a/b` chained into `a/b/a→a/b`,
        // which no file system can do. The handler then synced both sides
        // from a source in which `move a b` had already carried `a/b` off to
        // `b/b`: the dir was deleted and the later rename had nothing to take.
        run("
            0    move a/b/a b dir
            1    move b a/b dir
            2    move a b dir
            1000 pop => normal#0: move a/b/a b, move b a/b, move a b, sync* b/b
        ");
    }

    #[test]
    fn regression_a_renamed_dir_carries_what_a_pending_moves_fallback_put_there() {
        // Proptest (bare renames): the destination may hold a/x (moved in),
        // so `move a/x y` is a move; the destination lacks it after all, and
        // the handler falls back to syncing a/x from the source as it is
        // then: the new a/x, inside the old `a`, which `move a z` carries to
        // z/x. The rename of `a` must sync z/x whole.
        run("
            0    subtree a/x
            1    move a/x y dir
            2    move a z dir
            3    subtree a
            1000 pop => normal#0: move a/x y, move a z, sync* a, sync* y, sync* z/x
        ");
    }

    #[test]
    fn regression_a_subtree_that_absorbs_what_the_destination_may_hold_cannot_vanish() {
        // Proptest (renames that make parents): `move a b` syncs b/a/a/a
        // whole (where the pending `move b a/a/a` lands); the new subtree
        // b/a then absorbed that entry and forgot that the destination may
        // hold it, so removing b/a cancelled everything and left b/a/a/a
        // (and the parents made for it) at the destination.
        run("
            0    create a/a dir
            0    subtree a/a
            1    move b a/a/a dir
            2    move a b dir
            3    remove b/a dir
            1000 pop => normal#0: move b a/a/a, move a b, sync* b/a
        ");
    }

    #[test]
    fn a_rename_below_a_pending_rename_syncs_where_it_lands() {
        // A handler that cannot replay `move d e` syncs e whole from the
        // source as it is then, a new e/f included, which `move e/f e/g`
        // then puts at e/g.
        run("
            0    move d e dir
            1    move e/f e/g
            2    create e/f
            1000 pop => normal#0: move d e, move e/f e/g, sync e/f, sync* e/g
        ");
    }

    #[test]
    fn rename_chain_is_not_taken_when_it_would_move_a_dir_into_itself() {
        run("
            0    move x z dir
            1    create x dir
            2    move z x/w dir
            1000 pop => normal#0: move x z, move z x/w, sync x, sync* x/w
        ");
    }

    #[test]
    fn rename_over_a_pending_target_replaces_it() {
        run("
            0    modify b
            1    modify b2/x
            2    move a b
            3    move a2 b2 dir
            1000 pop => normal#0: move a b, move a2 b2
        ");
    }

    #[test]
    fn moves_come_first_in_order_then_parents_before_children() {
        // Byte order: parents come before children (`a.b` sorts before `a/b`).
        run("
            0    modify z
            1    modify a/b
            2    modify a
            3    move m n
            4    move k l
            5    modify a.b
            1000 pop => normal#0: move m n, move k l, sync a, sync a.b, sync a/b, sync z
        ");
    }

    #[test]
    fn rename_out_of_a_pending_subtree_syncs_the_target_whole() {
        run("
            0    subtree d
            1    modify d/x/f
            2    move d/x y dir
            1000 pop => normal#0: move d/x y, sync* d, sync* y
        ");
    }

    #[test]
    fn rename_inside_a_new_subtree_is_no_move() {
        run("
            0    create d dir
            1    subtree d
            2    move d/f g
            1000 pop => normal#0: sync* d, sync g
        ");
    }

    #[test]
    fn moves_ride_with_any_batch_so_renamed_paths_exist_first() {
        run("
            config delay_big=500
            0    modify d/big big
            1    move d e dir
            500  pop => big#0: move d e, sync e/big
            1001 pop => none
            1001 len => 0
        ");
    }

    // ----- 6. windows ---------------------------------------------------------

    #[test]
    fn later_events_do_not_extend_the_window() {
        run("
            0    modify a
            900  modify b
            999  modify a
            999  due => 1000
            999  pop => none
            1000 pop => normal#0: sync a, sync b
        ");
    }

    #[test]
    fn a_window_opens_at_the_first_event_after_the_lane_emptied() {
        run("
            0    modify a
            1000 pop => normal#0: sync a
            1500 modify b
            1500 due => 2500
            1000 oldest => 1500
        ");
    }

    #[test]
    fn interval_counts_from_the_end_of_the_last_sync() {
        run("
            config interval=2000
            0    modify a
            1000 pop => normal#0: sync a
            1000 modify b
            1500 finished
            2000 due => 3500
            3499 pop => none
            3500 pop => normal#0: sync b
        ");
    }

    #[test]
    fn next_due_is_the_earliest_lane() {
        run("
            config delay_big=500
            0    modify b big
            100  modify f
            100  due => 500
            500  pop => big#0: sync b
            500  due => 1100
        ");
    }

    #[test]
    fn oldest_reports_the_oldest_pending_change() {
        run("
            0    oldest => none
            100  modify a big
            500  modify b
            600  modify a
            600  oldest => 100
            1500 pop => normal#0: sync a, sync b
            1500 oldest => none
        ");
    }

    #[test]
    fn pop_all_ignores_every_window() {
        run("
            config interval=10000
            0    modify f big
            0    modify g
            0    move a b
            0    subtree d instant
            1    popall => instant#0: move a b, sync* d, sync f, sync g
            1    popall => none
            1    len => 0
        ");
    }

    // ----- 7. failures ----------------------------------------------------------

    #[test]
    fn failed_batch_comes_back_first_with_attempt_plus_one() {
        run("
            0    modify a
            0    move m n
            1000 pop => normal#0: move m n, sync a
            1100 modify b
            1100 move p q
            1200 finished
            1200 fail 3000
            1200 due => 3000
            2999 pop => none
            3000 pop => instant#1: move m n, move p q, sync a, sync* m, sync* n
            3000 pop => normal#0: sync b
            3100 finished
            3100 fail 3200
            3200 pop => instant#1: sync b
        ");
    }

    #[test]
    fn requeued_paths_follow_renames_made_while_the_batch_ran() {
        run("
            0    modify d/f
            0    modify d
            1000 pop => normal#0: sync d, sync d/f
            1100 move d e dir
            1200 finished
            1200 fail 1200
            1200 pop => instant#1: move d e, sync* e
        ");
    }

    #[test]
    fn requeued_subtree_also_syncs_what_was_renamed_out_of_it() {
        run("
            0    subtree d instant
            0    pop => instant#0: sync* d
            10   finished
            20   move d/x y dir
            30   fail 30
            30   pop => instant#1: move d/x y, sync* d, sync* y
        ");
    }

    #[test]
    fn requeue_merges_with_pending_entry_and_it_can_no_longer_vanish() {
        run("
            0    remove f
            1000 pop => normal#0: sync f
            1100 create f
            1200 finished
            1200 fail 1500
            1300 remove f
            1500 pop => instant#1: sync f
        ");
    }

    #[test]
    fn failed_attempts_keep_counting() {
        run("
            0    modify a
            1000 pop => normal#0: sync a
            1000 finished
            1000 fail 1100
            1100 pop => instant#1: sync a
            1100 finished
            1100 fail 1300
            1300 pop => instant#2: sync a
        ");
    }

    #[test]
    fn regression_retried_rename_may_move_a_new_file_so_both_sides_resync() {
        // The failed run renamed a→b, then a new `a` appeared: replaying the
        // bare rename would put the new file at b.
        run("
            0    move a b
            1000 pop => normal#0: move a b
            1100 create a
            1200 finished
            1200 fail 1200
            1200 pop => instant#1: move a b, sync* a, sync* b
        ");
    }

    #[test]
    fn regression_new_dir_made_as_a_parent_by_another_lane_is_not_cancelled() {
        // The handler of `sync* b/x` creates b at the destination, so b can
        // no longer vanish without an op.
        run("
            0    create b dir
            0    subtree b/x instant
            0    pop => instant#0: sync* b/x
            10   finished
            20   remove b/x dir
            20   remove b dir
            1000 pop => normal#0: sync* b
        ");
    }

    // ----- batches in flight ----------------------------------------------------

    #[test]
    fn a_path_created_while_a_batch_may_copy_it_is_not_cancelled() {
        // The handler of `sync* d` may run after `d/f` appears and copy it.
        run("
            0    remove d dir
            1000 pop => normal#0: sync* d
            1001 create d dir
            1002 create d/f
            1003 remove d/f
            1004 remove d dir
            2004 pop => normal#0: sync* d
            2004 inflight => 2
            2100 finished
            2100 finished
            2100 inflight => 0
            2200 create g
            2201 remove g
            5000 pop => none
        ");
    }

    #[test]
    fn a_rename_while_a_batch_is_in_flight_resyncs_what_it_touched() {
        // `sync d/f` may run after the rename and delete the destination's
        // d/f, which the later `move d e` then cannot bring to e/f.
        run("
            0    modify d/f
            1000 pop => normal#0: sync d/f
            1100 move d e dir
            2100 pop => normal#0: move d e, sync* e/f
        ");
    }
}

#[cfg(test)]
mod parallel {
    //! Several batches in flight (`-p safe` and `-p full`): which ops a pop
    //! hands out while others run, and how a failed one comes back.
    use super::tests::show;
    use super::*;

    fn queue(exclusive: bool) -> (Queue, Instant) {
        let mut q = Queue::new(QueueConfig {
            delay: Duration::ZERO,
            delay_big: Duration::ZERO,
            big_threshold: 0,
            interval: Duration::ZERO,
        });
        q.set_exclusive(exclusive);
        (q, Instant::now())
    }

    fn modify(q: &mut Queue, now: Instant, p: &str) {
        let path = p.as_bytes().to_vec();
        q.push(
            now,
            Change::Modified {
                path,
                is_dir: false,
                size: 1,
            },
        );
    }

    fn pop(q: &mut Queue, now: Instant) -> (Option<BatchId>, String) {
        let popped = q.pop_due_with_id(now);
        let id = popped.as_ref().map(|(id, _)| *id);
        (id, show(&popped.map(|(_, b)| b)))
    }

    #[test]
    fn safe_mode_holds_a_path_in_flight_and_pops_the_rest() {
        let (mut q, t) = queue(true);
        modify(&mut q, t, "a");
        let (first, got) = pop(&mut q, t);
        assert_eq!(got, "normal#0: sync a");
        modify(&mut q, t, "a");
        modify(&mut q, t, "a2");
        modify(&mut q, t, "b/c");
        let (second, got) = pop(&mut q, t);
        assert_eq!(got, "normal#0: sync a2, sync b/c");
        assert_eq!(q.in_flight(), 2);
        // `a` is due but waits for the batch that runs it.
        assert_eq!(q.next_due(), Some(t));
        assert_eq!(pop(&mut q, t).1, "none");
        q.finished_id(second.unwrap(), t);
        assert_eq!(pop(&mut q, t).1, "none");
        q.finished_id(first.unwrap(), t);
        assert_eq!(pop(&mut q, t).1, "normal#0: sync a");
    }

    #[test]
    fn safe_mode_holds_ancestors_and_descendants_of_a_path_in_flight() {
        let (mut q, t) = queue(true);
        q.push(
            t,
            Change::Subtree {
                path: b"d/e".to_vec(),
                instant: false,
            },
        );
        let (_, got) = pop(&mut q, t);
        assert_eq!(got, "normal#0: sync* d/e");
        modify(&mut q, t, "d");
        modify(&mut q, t, "d/e/f");
        modify(&mut q, t, "d/x");
        modify(&mut q, t, "de");
        assert_eq!(pop(&mut q, t).1, "normal#0: sync d/x, sync de");
        q.push(
            t,
            Change::Subtree {
                path: Vec::new(),
                instant: true,
            },
        );
        assert_eq!(
            pop(&mut q, t).1,
            "none",
            "the root is related to everything"
        );
    }

    #[test]
    fn safe_mode_keeps_a_rename_and_what_it_touches_behind_a_batch_in_flight() {
        let (mut q, t) = queue(true);
        modify(&mut q, t, "a/x");
        let (first, _) = pop(&mut q, t);
        q.push(
            t,
            Change::Moved {
                from: b"a".to_vec(),
                to: b"c".to_vec(),
                is_dir: true,
            },
        );
        q.push(
            t,
            Change::Moved {
                from: b"m".to_vec(),
                to: b"c/n".to_vec(),
                is_dir: false,
            },
        );
        q.push(
            t,
            Change::Moved {
                from: b"p".to_vec(),
                to: b"q".to_vec(),
                is_dir: false,
            },
        );
        modify(&mut q, t, "c/y");
        modify(&mut q, t, "z");
        // `m→c/n` must follow `a→c`; `p→q` is free.
        assert_eq!(pop(&mut q, t).1, "normal#0: move p q, sync z");
        q.finished_id(first.unwrap(), t);
        assert_eq!(
            pop(&mut q, t).1,
            "normal#0: move a c, move m c/n, sync* c/x, sync c/y"
        );
    }

    #[test]
    fn full_mode_pops_a_path_that_is_in_flight() {
        let (mut q, t) = queue(false);
        modify(&mut q, t, "a");
        pop(&mut q, t);
        modify(&mut q, t, "a");
        assert_eq!(pop(&mut q, t).1, "normal#0: sync a");
        assert_eq!(q.in_flight(), 2);
    }

    #[test]
    fn a_failed_batch_follows_renames_a_later_batch_took() {
        let (mut q, t) = queue(false);
        modify(&mut q, t, "a/x");
        let popped = q.pop_due_with_id(t);
        let Some((first, batch)) = popped else {
            panic!("nothing popped")
        };
        q.push(
            t,
            Change::Moved {
                from: b"a".to_vec(),
                to: b"c".to_vec(),
                is_dir: true,
            },
        );
        let (second, got) = pop(&mut q, t);
        assert_eq!(got, "normal#0: move a c, sync* c/x");
        q.finished_id(second.unwrap(), t);
        q.requeue_id(first, t, batch, t);
        assert_eq!(q.in_flight(), 0);
        assert_eq!(pop(&mut q, t).1, "instant#1: sync c/x");
    }

    #[test]
    fn finished_without_an_id_ends_the_oldest_batch() {
        let (mut q, t) = queue(true);
        modify(&mut q, t, "a");
        pop(&mut q, t);
        modify(&mut q, t, "b");
        pop(&mut q, t);
        modify(&mut q, t, "a");
        q.finished(t);
        assert_eq!(q.in_flight(), 1);
        assert_eq!(pop(&mut q, t).1, "normal#0: sync a");
    }
}

#[cfg(test)]
mod isolation {
    //! A batch that did everything but a few paths: only those come back,
    //! each waiting for its own retry, while everything else flows.
    use super::tests::show;
    use super::*;

    fn queue() -> (Queue, Instant) {
        let q = Queue::new(QueueConfig {
            delay: Duration::from_millis(100),
            delay_big: Duration::from_millis(100),
            big_threshold: 0,
            interval: Duration::ZERO,
        });
        (q, Instant::now())
    }

    fn modify(q: &mut Queue, now: Instant, p: &str) {
        let path = p.as_bytes().to_vec();
        q.push(
            now,
            Change::Modified {
                path,
                is_dir: false,
                size: 1,
            },
        );
    }

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    #[test]
    fn a_failed_path_waits_alone_and_the_rest_keeps_flowing() {
        let (mut q, t0) = queue();
        for p in ["a", "big", "c"] {
            modify(&mut q, t0, p);
        }
        let (id, b) = q.pop_due_with_id(ms(t0, 100)).expect("due");
        assert_eq!(show(&Some(b)), "normal#0: sync a, sync big, sync c");
        let tries = q.requeue_failed_id(id, ms(t0, 150), vec![(b"big".to_vec(), false)], |n| {
            ms(t0, 150 + 1000 * u64::from(n))
        });
        assert_eq!(tries, 1);
        assert_eq!((q.len(), q.waiting(), q.in_flight()), (1, 1, 0));
        assert_eq!(
            q.next_due(),
            Some(ms(t0, 1150)),
            "only the retry is pending"
        );
        assert_eq!(show(&q.pop_due(ms(t0, 1149))), "none");
        // Other changes are not held behind it (a whole-batch failure
        // would hold every lane until the retry).
        modify(&mut q, ms(t0, 200), "d");
        assert_eq!(q.next_due(), Some(ms(t0, 300)));
        assert_eq!(show(&q.pop_due(ms(t0, 300))), "normal#0: sync d");
        q.finished(ms(t0, 310));
        assert_eq!(q.next_ready(ms(t0, 400)), Some(ms(t0, 1150)));
        assert!(q.pop_ready_with_id(ms(t0, 400)).is_none());
        // Due: retried alone, and a second failure waits longer.
        let (id, b) = q.pop_due_with_id(ms(t0, 1150)).expect("retry due");
        assert_eq!(show(&Some(b)), "instant#1: sync big");
        let tries = q.requeue_failed_id(id, ms(t0, 1160), vec![(b"big".to_vec(), false)], |n| {
            ms(t0, 1160 + 1000 * u64::from(n))
        });
        assert_eq!(tries, 2);
        assert_eq!(q.next_due(), Some(ms(t0, 3160)));
        assert_eq!(q.next_ready(ms(t0, 3200)), Some(ms(t0, 3200)));
        let (_, b) = q.pop_ready_with_id(ms(t0, 3200)).expect("ready");
        assert_eq!(show(&Some(b)), "instant#2: sync big");
    }

    #[test]
    fn a_new_change_to_a_failed_path_retries_it_at_once() {
        let (mut q, t0) = queue();
        modify(&mut q, t0, "f");
        let (id, _) = q.pop_due_with_id(ms(t0, 100)).expect("due");
        q.requeue_failed_id(id, ms(t0, 100), vec![(b"f".to_vec(), false)], |_| {
            ms(t0, 60_000)
        });
        q.push(
            ms(t0, 200),
            Change::Removed {
                path: b"f".to_vec(),
                is_dir: false,
            },
        );
        assert_eq!(q.waiting(), 0);
        assert_eq!(show(&q.pop_due(ms(t0, 300))), "instant#1: sync f");
        // A subtree above it takes it along, without the wait, too.
        let (mut q, t0) = queue();
        modify(&mut q, t0, "d/f");
        let (id, _) = q.pop_due_with_id(ms(t0, 100)).expect("due");
        q.requeue_failed_id(id, ms(t0, 100), vec![(b"d/f".to_vec(), false)], |_| {
            ms(t0, 60_000)
        });
        q.push(
            ms(t0, 200),
            Change::Subtree {
                path: Vec::new(),
                instant: true,
            },
        );
        assert_eq!(show(&q.pop_due(ms(t0, 200))), "instant#1: sync* .");
    }

    #[test]
    fn failed_paths_follow_renames_and_keep_their_own_count() {
        let (mut q, t0) = queue();
        modify(&mut q, t0, "d/f");
        modify(&mut q, t0, "g");
        let (id, _) = q.pop_due_with_id(ms(t0, 100)).expect("due");
        let tries = q.requeue_failed_id(
            id,
            ms(t0, 120),
            vec![(b"d/f".to_vec(), false), (b"g".to_vec(), false)],
            |n| ms(t0, 120 + 500 * u64::from(n)),
        );
        assert_eq!(tries, 1);
        q.push(
            ms(t0, 130),
            Change::Moved {
                from: b"d".to_vec(),
                to: b"e".to_vec(),
                is_dir: true,
            },
        );
        // The rename goes now; the failed paths wait, where they are now.
        assert_eq!(show(&q.pop_due(ms(t0, 230))), "normal#0: move d e");
        q.finished(ms(t0, 240));
        assert_eq!(show(&q.pop_due(ms(t0, 619))), "none");
        let (id, b) = q.pop_due_with_id(ms(t0, 620)).expect("retry due");
        assert_eq!(show(&Some(b)), "instant#1: sync e/f, sync g");
        // Only g fails again: its count goes on, e/f is done.
        let tries = q.requeue_failed_id(id, ms(t0, 630), vec![(b"g".to_vec(), false)], |n| {
            ms(t0, 630 + 500 * u64::from(n))
        });
        assert_eq!((tries, q.len()), (2, 1));
        // A path that fails inside a whole-tree sync counts the tries of
        // that sync.
        let (mut q, t0) = queue();
        q.push(
            t0,
            Change::Subtree {
                path: Vec::new(),
                instant: true,
            },
        );
        for n in 1..=2 {
            let (_, b) = q.pop_due_with_id(ms(t0, 1000 * n)).expect("due");
            q.requeue(ms(t0, 1000 * n), b, ms(t0, 1000 * n));
            q.finished(ms(t0, 1000 * n));
        }
        let (id, b) = q.pop_due_with_id(ms(t0, 5000)).expect("due");
        assert_eq!(show(&Some(b)), "instant#2: sync* .");
        let tries = q.requeue_failed_id(id, ms(t0, 5000), vec![(b"d/f".to_vec(), true)], |_| {
            ms(t0, 9000)
        });
        assert_eq!(tries, 3);
        // A rename in flight makes the failed path's destination uncertain:
        // synced again at once.
        let (mut q, t0) = queue();
        modify(&mut q, t0, "d/f");
        let (id, _) = q.pop_due_with_id(ms(t0, 100)).expect("due");
        q.push(
            ms(t0, 110),
            Change::Moved {
                from: b"d".to_vec(),
                to: b"e".to_vec(),
                is_dir: true,
            },
        );
        q.requeue_failed_id(id, ms(t0, 120), vec![(b"d/f".to_vec(), false)], |_| {
            ms(t0, 60_000)
        });
        assert_eq!(
            show(&q.pop_due(ms(t0, 210))),
            "instant#1: move d e, sync* e/f"
        );
    }
}

#[cfg(test)]
mod storms {
    //! Event storms of 20,000 changes come out right. The time guard is
    //! not a speed measurement (bench/run.sh measures speed): it is set far
    //! above what a loaded debug build needs (tens of milliseconds here) and
    //! only catches quadratic work per event, which takes minutes at this
    //! size.
    use super::*;

    const N: usize = 20_000;
    const BOUND: Duration = Duration::from_secs(60);

    fn queue() -> Queue {
        Queue::new(QueueConfig {
            delay: Duration::from_millis(1000),
            delay_big: Duration::from_millis(5000),
            big_threshold: 1 << 20,
            interval: Duration::ZERO,
        })
    }

    fn name(dir: &str, i: usize) -> Vec<u8> {
        format!("{dir}/f{i}").into_bytes()
    }

    fn timed(what: &str, f: impl FnOnce()) {
        let t = std::time::Instant::now();
        f();
        let took = t.elapsed();
        assert!(took < BOUND, "{what}: {N} events took {took:?}");
    }

    #[test]
    fn creating_writing_and_removing_a_tree_cancels_cheaply() {
        let mut q = queue();
        let now = Instant::now();
        timed("create+write+rm -r", || {
            q.push(
                now,
                Change::Created {
                    path: b"d".to_vec(),
                    is_dir: true,
                    size: 0,
                },
            );
            for i in 0..N {
                q.push(
                    now,
                    Change::Created {
                        path: name("d", i),
                        is_dir: false,
                        size: 10,
                    },
                );
                q.push(
                    now,
                    Change::Modified {
                        path: name("d", i),
                        is_dir: false,
                        size: 20,
                    },
                );
            }
            assert_eq!(q.len(), N + 1);
            for i in 0..N {
                q.push(
                    now,
                    Change::Removed {
                        path: name("d", i),
                        is_dir: false,
                    },
                );
            }
            q.push(
                now,
                Change::Removed {
                    path: b"d".to_vec(),
                    is_dir: true,
                },
            );
        });
        assert!(q.is_empty());
    }

    #[test]
    fn writes_then_pop_then_removal_of_existing_files() {
        let mut q = queue();
        let t0 = Instant::now();
        timed("write, pop, rm -r", || {
            for i in 0..N {
                q.push(
                    t0,
                    Change::Modified {
                        path: name("d", i),
                        is_dir: false,
                        size: 10,
                    },
                );
            }
            let b = q
                .pop_due(t0 + Duration::from_secs(1))
                .expect("normal lane due");
            assert_eq!(b.len(), N);
            q.finished(t0 + Duration::from_secs(1));
            let t1 = t0 + Duration::from_secs(2);
            for i in 0..N {
                q.push(
                    t1,
                    Change::Removed {
                        path: name("d", i),
                        is_dir: false,
                    },
                );
            }
            q.push(
                t1,
                Change::Removed {
                    path: b"d".to_vec(),
                    is_dir: true,
                },
            );
        });
        assert_eq!(q.len(), 1, "one recursive sync covers the removed tree");
    }

    #[test]
    fn many_renames_and_changes_under_a_subtree() {
        let mut q = queue();
        let now = Instant::now();
        timed("renames", || {
            for i in 0..N {
                q.push(
                    now,
                    Change::Moved {
                        from: name("a", i),
                        to: name("b", i),
                        is_dir: false,
                    },
                );
            }
            q.push(
                now,
                Change::Subtree {
                    path: b"c".to_vec(),
                    instant: false,
                },
            );
            for i in 0..N {
                q.push(
                    now,
                    Change::Created {
                        path: name("c/x/y", i),
                        is_dir: false,
                        size: 1,
                    },
                );
            }
            let b = q.pop_all().expect("pending");
            assert_eq!(b.len(), N + 1);
        });
    }

    #[test]
    fn a_failed_storm_comes_back_cheaply() {
        let mut q = queue();
        let now = Instant::now();
        timed("requeue", || {
            for i in 0..N {
                q.push(
                    now,
                    Change::Modified {
                        path: name("d", i),
                        is_dir: false,
                        size: 1,
                    },
                );
            }
            let b = q.pop_all().expect("pending");
            for i in 0..N {
                q.push(
                    now,
                    Change::Moved {
                        from: name("d", i),
                        to: name("e", i),
                        is_dir: false,
                    },
                );
            }
            q.finished(now);
            q.requeue(now, b, now);
            let b = q.pop_due(now).expect("retry due");
            assert_eq!(b.attempt, 1);
            assert_eq!(b.len(), 2 * N);
        });
    }
}

#[cfg(test)]
mod proptests {
    //! The queue against a model: a source tree changed at random, events fed
    //! to the queue, batches popped at random times and applied (op by op,
    //! interleaved with more changes) by a state-based handler to a
    //! destination tree, some of them failing and coming back. At the end,
    //! after `pop_all`, the destination must equal the source, and every
    //! batch must have respected its lane's window. With parallel runs
    //! (`-p safe`), several batches are in flight at once, their ops
    //! interleave at random and they finish or fail in any order; no two of
    //! them may ever share a path.
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Node {
        Dir(u32),
        File(u32),
    }
    type Tree = BTreeMap<Vec<u8>, Node>;

    /// Metadata of a dir the handler had to create as a parent: only a sync
    /// of that dir itself sets the real value.
    const MADE_AS_PARENT: u32 = u32::MAX;

    fn at_or_below(t: &Tree, p: &[u8]) -> Vec<Vec<u8>> {
        let mut keys: Vec<Vec<u8>> = t.range(below(p)).map(|(k, _)| k.clone()).collect();
        if t.contains_key(p) {
            keys.push(p.to_vec());
        }
        keys
    }

    fn remove_tree(t: &mut Tree, p: &[u8]) {
        for k in at_or_below(t, p) {
            t.remove(&k);
        }
    }

    fn is_dir(t: &Tree, p: &[u8]) -> bool {
        p.is_empty() || matches!(t.get(p), Some(Node::Dir(_)))
    }

    /// How the model handler treats a move.
    #[derive(Clone, Copy, Debug)]
    enum Mode {
        /// A bare rename whenever the destination has `from` and the parent
        /// of `to`; otherwise full syncs of both paths. The strictest test
        /// of the queue: nothing is re-read after a rename.
        Bare,
        /// As `Bare`, but a missing parent of `to` is created.
        BareMakingParents,
        /// A rename (when possible) followed by full syncs of both paths,
        /// what batch.rs asks of handlers.
        Resync,
    }

    /// The state-based handler: every op reads the source as it is now.
    fn apply(op: &Op, src: &Tree, dst: &mut Tree, mode: Mode) {
        match op {
            Op::Sync { path: p, recursive } => sync(p, *recursive, src, dst),
            Op::Move { from, to } => {
                let mut can = dst.contains_key(from) && !related(from, to);
                if matches!(mode, Mode::BareMakingParents) && can {
                    make_parents(to, dst);
                }
                can = can && is_dir(dst, path::parent(to));
                if can {
                    let moved: Vec<(Vec<u8>, Node)> = at_or_below(dst, from)
                        .into_iter()
                        .filter_map(|k| dst.remove(&k).map(|n| (path::rebase(&k, from, to), n)))
                        .collect();
                    remove_tree(dst, to);
                    dst.extend(moved);
                }
                if !can || matches!(mode, Mode::Resync) {
                    sync(from, true, src, dst);
                    sync(to, true, src, dst);
                }
            }
        }
    }

    fn sync(p: &[u8], recursive: bool, src: &Tree, dst: &mut Tree) {
        if p.is_empty() {
            if recursive {
                *dst = src.clone();
            }
            return;
        }
        let Some(&n) = src.get(p) else {
            remove_tree(dst, p);
            return;
        };
        make_parents(p, dst);
        if recursive {
            remove_tree(dst, p);
            for k in at_or_below(src, p) {
                dst.insert(k.clone(), src[&k]);
            }
        } else {
            let both_dirs = matches!((dst.get(p), n), (Some(Node::Dir(_)), Node::Dir(_)));
            if !both_dirs {
                remove_tree(dst, p);
            }
            dst.insert(p.to_vec(), n);
        }
    }

    /// mkdir -p for the parents of `p`, with metadata the handler does not know.
    fn make_parents(p: &[u8], dst: &mut Tree) {
        for a in path::ancestors(p) {
            if !is_dir(dst, a) {
                remove_tree(dst, a);
                dst.insert(a.to_vec(), Node::Dir(MADE_AS_PARENT));
            }
        }
    }

    const NAMES: [&str; 3] = ["a", "b", "c"];

    #[derive(Clone, Debug)]
    enum Act {
        CreateFile {
            parent: usize,
            name: usize,
            big: bool,
        },
        CreateDir {
            parent: usize,
            name: usize,
            subtree: bool,
        },
        Write {
            target: usize,
            big: bool,
        },
        Chmod {
            target: usize,
        },
        Remove {
            target: usize,
        },
        MoveOut {
            target: usize,
        },
        /// Over a file: a file moved in from outside, over it. Where nothing
        /// is: a dir with `files`, made by `mkdir` and filled before its
        /// watch when `created`, else moved in. Over an empty dir, when not
        /// `created`: a dir moved in over it. Otherwise the mkdir or the
        /// rename fails and nothing changes.
        MoveIn {
            parent: usize,
            name: usize,
            files: usize,
            created: bool,
        },
        Rename {
            target: usize,
            parent: usize,
            name: usize,
        },
        Rescan {
            target: usize,
            instant: bool,
        },
        Wait {
            ms: u64,
        },
        Pop,
        /// Runs the next op of one batch in flight (`which`, modulo how many).
        Step {
            which: usize,
        },
        Finish {
            which: usize,
        },
        Fail {
            which: usize,
            keep: usize,
            backoff: u64,
        },
        /// One batch in flight ends; the ops not yet run whose bit is set
        /// in `failed` fail on their own (run anyway when their bit is set
        /// in `ran` too: a failure may come after the work), the others
        /// are done.
        FailPaths {
            which: usize,
            failed: u8,
            ran: u8,
            backoff: u64,
        },
    }

    fn act() -> impl Strategy<Value = Act> {
        let i = || 0usize..64;
        let n = || 0usize..NAMES.len();
        prop_oneof![
            3 => (i(), n(), any::<bool>()).prop_map(|(parent, name, big)| Act::CreateFile { parent, name, big }),
            2 => (i(), n(), any::<bool>()).prop_map(|(parent, name, subtree)| Act::CreateDir { parent, name, subtree }),
            3 => (i(), any::<bool>()).prop_map(|(target, big)| Act::Write { target, big }),
            1 => i().prop_map(|target| Act::Chmod { target }),
            2 => i().prop_map(|target| Act::Remove { target }),
            1 => i().prop_map(|target| Act::MoveOut { target }),
            1 => (i(), n(), 0usize..3, any::<bool>()).prop_map(|(parent, name, files, created)| Act::MoveIn { parent, name, files, created }),
            4 => (i(), i(), n()).prop_map(|(target, parent, name)| Act::Rename { target, parent, name }),
            1 => (i(), any::<bool>()).prop_map(|(target, instant)| Act::Rescan { target, instant }),
            4 => (0u64..1500).prop_map(|ms| Act::Wait { ms }),
            5 => Just(Act::Pop),
            2 => (0usize..3).prop_map(|which| Act::Step { which }),
            4 => (0usize..3).prop_map(|which| Act::Finish { which }),
            1 => (0usize..3, 0usize..4, 0u64..800).prop_map(|(which, keep, backoff)| Act::Fail { which, keep, backoff }),
        ]
    }

    /// [`act`], and batches that fail for a few paths only.
    fn act_isolating() -> impl Strategy<Value = Act> {
        prop_oneof![
            6 => act(),
            1 => (0usize..3, any::<u8>(), any::<u8>(), 0u64..800)
                .prop_map(|(which, failed, ran, backoff)| Act::FailPaths { which, failed, ran, backoff }),
        ]
    }

    fn config() -> impl Strategy<Value = QueueConfig> {
        (
            prop_oneof![Just(0u64), Just(100), Just(300), Just(1000)],
            prop_oneof![Just(0u64), Just(200), Just(700)],
            prop_oneof![Just(0u64), Just(50)],
            prop_oneof![Just(0u64), Just(0), Just(250)],
        )
            .prop_map(|(d, db, big, w)| QueueConfig {
                delay: Duration::from_millis(d),
                delay_big: Duration::from_millis(db),
                big_threshold: big,
                interval: Duration::from_millis(w),
            })
    }

    struct World {
        q: Queue,
        cfg: QueueConfig,
        now: Instant,
        src: Tree,
        dst: Tree,
        version: u32,
        mode: Mode,
        /// Actions only touch what lies below this dir (root: everything).
        scope: Vec<u8>,
        /// Batches in flight, oldest first, with how many ops already ran.
        flights: Vec<(BatchId, Batch, usize)>,
        /// How many batches may be in flight at once (1: `-p off`).
        parallel: usize,
        // What the windows should be, tracked from the outside.
        start: [Option<Instant>; 3],
        last_finished: Option<Instant>,
        hold: Option<Instant>,
    }

    impl World {
        fn bump(&mut self) -> u32 {
            self.version += 1;
            self.version
        }

        fn new(cfg: QueueConfig, mode: Mode) -> Self {
            Self::parallel(cfg, mode, 1)
        }

        /// Up to `parallel` batches in flight, exclusive (`-p safe`) when more than one.
        fn parallel(cfg: QueueConfig, mode: Mode, parallel: usize) -> Self {
            let mut q = Queue::new(cfg.clone());
            q.set_exclusive(parallel > 1);
            World {
                q,
                cfg,
                now: Instant::now(),
                src: Tree::new(),
                dst: Tree::new(),
                version: 0,
                mode,
                scope: Vec::new(),
                flights: Vec::new(),
                parallel,
                start: [None; 3],
                last_finished: None,
                hold: None,
            }
        }

        /// Entries the actions may pick (strictly inside the scope).
        fn nodes(&self) -> Vec<Vec<u8>> {
            self.src
                .range(below(&self.scope))
                .map(|(k, _)| k.clone())
                .collect()
        }

        /// Dirs inside the scope, the scope itself included.
        fn dirs(&self) -> Vec<Vec<u8>> {
            let mut v = vec![self.scope.clone()];
            v.extend(
                self.src
                    .range(below(&self.scope))
                    .filter(|(_, n)| matches!(n, Node::Dir(_)))
                    .map(|(k, _)| k.clone()),
            );
            v
        }

        /// Dirs that may receive a child (depth limited).
        fn parents(&self) -> Vec<Vec<u8>> {
            let mut v = self.dirs();
            v.retain(|k| k.iter().filter(|&&b| b == b'/').count() < 2);
            v
        }

        fn size(&self, big: bool) -> u64 {
            if big {
                self.cfg.big_threshold.max(1) * 2
            } else {
                1
            }
        }

        fn push(&mut self, c: Change) {
            self.q.push(self.now, c);
            self.track();
        }

        /// A lane's window opens when it turns non-empty (after any single
        /// change: one action may empty a lane and fill it again).
        fn track(&mut self) {
            for l in Lane::ALL {
                let i = lane_index(l);
                if self.q.lane_len(l) == 0 {
                    self.start[i] = None;
                } else if self.start[i].is_none() {
                    self.start[i] = Some(self.now);
                }
            }
        }

        fn ref_due(&self, lane: Lane) -> Option<Instant> {
            let s = self.start[lane_index(lane)]?;
            let mut t = match lane {
                Lane::Instant => s,
                Lane::Normal => s + self.cfg.delay,
                Lane::Big => s + self.cfg.delay_big,
            };
            if lane != Lane::Instant && !self.cfg.interval.is_zero() {
                if let Some(f) = self.last_finished {
                    t = t.max(f + self.cfg.interval);
                }
            }
            if let Some(h) = self.hold {
                t = t.max(h);
            }
            Some(t)
        }

        /// After every action: the public counters agree and each lane's
        /// due time follows from when its window opened.
        fn observe(&mut self) -> Result<(), TestCaseError> {
            self.track();
            let sum: usize = Lane::ALL.iter().map(|&l| self.q.lane_len(l)).sum();
            prop_assert_eq!(self.q.len(), sum);
            prop_assert_eq!(self.q.is_empty(), self.q.next_due().is_none());
            prop_assert_eq!(self.q.is_empty(), self.q.oldest().is_none());
            if let Some(o) = self.q.oldest() {
                prop_assert!(o <= self.now);
            }
            let want = Lane::ALL.iter().filter_map(|&l| self.ref_due(l)).min();
            if self.q.waiting() == 0 {
                // (Failed paths waiting for their retries are not modelled.)
                prop_assert_eq!(self.q.next_due(), want, "next_due against the windows");
            }
            // Without -w, a lane never waits longer than its delay after its
            // first change (or than a retry's hold).
            if self.cfg.interval.is_zero() {
                for l in [Lane::Normal, Lane::Big] {
                    if let (Some(s), Some(d)) = (self.start[lane_index(l)], self.q.next_due()) {
                        let delay = if l == Lane::Normal {
                            self.cfg.delay
                        } else {
                            self.cfg.delay_big
                        };
                        let bound = self.hold.map_or(s + delay, |h| h.max(s + delay));
                        prop_assert!(d <= bound, "{:?} lane waits longer than its delay", l);
                    }
                }
            }
            Ok(())
        }

        fn check_batch(&self, b: &Batch) -> Result<(), TestCaseError> {
            prop_assert!(!b.is_empty(), "empty batch");
            let mut seen = std::collections::HashSet::new();
            let mut syncs: Vec<(&[u8], bool)> = Vec::new();
            let mut in_syncs = false;
            for op in &b.ops {
                match op {
                    Op::Move { from, to } => {
                        prop_assert!(!in_syncs, "move after a sync");
                        prop_assert!(
                            !from.is_empty() && !to.is_empty() && !related(from, to),
                            "not a rename a file system can do: {:?}",
                            op
                        );
                        // One rename is one move. The same names may be
                        // renamed again later (a new `b` over `c` once more),
                        // which is another op.
                    }
                    Op::Sync { path: p, recursive } => {
                        prop_assert!(seen.insert(op.clone()), "duplicate op {:?}", op);
                        in_syncs = true;
                        if let Some((last, _)) = syncs.last() {
                            prop_assert!(*last < &p[..], "syncs not sorted");
                        }
                        for (q, r) in &syncs {
                            prop_assert!(
                                !(*r && path::is_strictly_under(p, q)),
                                "sync below a recursive sync"
                            );
                        }
                        syncs.push((p, *recursive));
                    }
                }
            }
            Ok(())
        }

        /// Runs `n` more ops of the batch in flight at index `i`.
        fn step(&mut self, i: usize, n: usize) {
            if let Some((_, b, done)) = self.flights.get_mut(i) {
                let end = done.saturating_add(n).min(b.ops.len());
                for op in &b.ops[*done..end] {
                    apply(op, &self.src, &mut self.dst, self.mode);
                }
                *done = end;
            }
        }

        /// In exclusive mode no path of `b` is related to one in flight.
        fn check_exclusive(&self, b: &Batch) -> Result<(), TestCaseError> {
            for (_, other, _) in &self.flights {
                for op in &other.ops {
                    for p in op.paths() {
                        for op2 in &b.ops {
                            for q in op2.paths() {
                                prop_assert!(
                                    !related(p, q),
                                    "{:?} popped while {:?} is in flight",
                                    op2,
                                    op
                                );
                            }
                        }
                    }
                }
            }
            Ok(())
        }

        fn run(&mut self, a: &Act) -> Result<(), TestCaseError> {
            match *a {
                Act::CreateFile { parent, name, big } => {
                    let ps = self.parents();
                    let p = path::join(&ps[parent % ps.len()], NAMES[name].as_bytes());
                    if !self.src.contains_key(&p) {
                        let v = self.bump();
                        self.src.insert(p.clone(), Node::File(v));
                        let size = self.size(big);
                        self.push(Change::Created {
                            path: p,
                            is_dir: false,
                            size,
                        });
                    }
                }
                Act::CreateDir {
                    parent,
                    name,
                    subtree,
                } => {
                    let ps = self.parents();
                    let p = path::join(&ps[parent % ps.len()], NAMES[name].as_bytes());
                    if !self.src.contains_key(&p) {
                        let v = self.bump();
                        self.src.insert(p.clone(), Node::Dir(v));
                        self.push(Change::Created {
                            path: p.clone(),
                            is_dir: true,
                            size: 0,
                        });
                        if subtree {
                            self.push(Change::Subtree {
                                path: p,
                                instant: false,
                            });
                        }
                    }
                }
                Act::Write { target, big } => {
                    let ns = self.nodes();
                    if let Some(p) = ns.get(target % ns.len().max(1)) {
                        if let Some(Node::File(_)) = self.src.get(p) {
                            let v = self.bump();
                            self.src.insert(p.clone(), Node::File(v));
                            let size = self.size(big);
                            self.push(Change::Modified {
                                path: p.clone(),
                                is_dir: false,
                                size,
                            });
                        }
                    }
                }
                Act::Chmod { target } => {
                    let ns = self.nodes();
                    if let Some(p) = ns.get(target % ns.len().max(1)) {
                        let v = self.bump();
                        let (n, is_dir) = match self.src[p] {
                            Node::Dir(_) => (Node::Dir(v), true),
                            Node::File(_) => (Node::File(v), false),
                        };
                        self.src.insert(p.clone(), n);
                        self.push(Change::Modified {
                            path: p.clone(),
                            is_dir,
                            size: 1,
                        });
                    }
                }
                Act::Remove { target } => {
                    let ns = self.nodes();
                    if let Some(p) = ns.get(target % ns.len().max(1)) {
                        // rm -r: children first, one event each.
                        let mut keys = at_or_below(&self.src, p);
                        keys.sort();
                        for k in keys.into_iter().rev() {
                            let is_dir = matches!(self.src.remove(&k), Some(Node::Dir(_)));
                            self.push(Change::Removed { path: k, is_dir });
                        }
                    }
                }
                Act::MoveOut { target } => {
                    let ns = self.nodes();
                    if let Some(p) = ns.get(target % ns.len().max(1)) {
                        let is_dir = is_dir(&self.src, p);
                        remove_tree(&mut self.src, p);
                        self.push(Change::Removed {
                            path: p.clone(),
                            is_dir,
                        });
                    }
                }
                Act::MoveIn {
                    parent,
                    name,
                    files,
                    created,
                } => {
                    let ps = self.parents();
                    let p = path::join(&ps[parent % ps.len()], NAMES[name].as_bytes());
                    let old = self.src.get(&p).copied();
                    let empty_dir = at_or_below(&self.src, &p).len() == 1;
                    match old {
                        Some(Node::File(_)) => {
                            // A file moved in over a file: not a creation.
                            let v = self.bump();
                            self.src.insert(p.clone(), Node::File(v));
                            self.push(Change::Modified {
                                path: p,
                                is_dir: false,
                                size: 1,
                            });
                        }
                        // mkdir where nothing is, or a dir moved in (which
                        // may replace an empty dir): `Created` for the mkdir
                        // only, a subtree for both.
                        None | Some(Node::Dir(_)) if old.is_none() || (!created && empty_dir) => {
                            let v = self.bump();
                            self.src.insert(p.clone(), Node::Dir(v));
                            for f in &NAMES[..files] {
                                let v = self.bump();
                                self.src.insert(path::join(&p, f.as_bytes()), Node::File(v));
                            }
                            if created {
                                self.push(Change::Created {
                                    path: p.clone(),
                                    is_dir: true,
                                    size: 0,
                                });
                            }
                            self.push(Change::Subtree {
                                path: p,
                                instant: false,
                            });
                        }
                        // mkdir over a dir, or a rename over a dir that is
                        // not empty: fails, nothing changes.
                        _ => {}
                    }
                }
                Act::Rename {
                    target,
                    parent,
                    name,
                } => {
                    let ns = self.nodes();
                    let ps = self.parents();
                    let Some(from) = ns.get(target % ns.len().max(1)).cloned() else {
                        return Ok(());
                    };
                    let to = path::join(&ps[parent % ps.len()], NAMES[name].as_bytes());
                    if related(&from, &to) {
                        return Ok(());
                    }
                    let from_dir = is_dir(&self.src, &from);
                    let ok = match self.src.get(&to) {
                        None => true,
                        Some(Node::File(_)) => !from_dir,
                        Some(Node::Dir(_)) => from_dir && at_or_below(&self.src, &to).len() == 1,
                    };
                    if ok {
                        let moved: Vec<(Vec<u8>, Node)> = at_or_below(&self.src, &from)
                            .into_iter()
                            .filter_map(|k| {
                                self.src
                                    .remove(&k)
                                    .map(|n| (path::rebase(&k, &from, &to), n))
                            })
                            .collect();
                        remove_tree(&mut self.src, &to);
                        self.src.extend(moved);
                        self.push(Change::Moved {
                            from,
                            to,
                            is_dir: from_dir,
                        });
                    }
                }
                Act::Rescan { target, instant } => {
                    let ds = self.dirs();
                    let p = ds[target % ds.len()].clone();
                    self.push(Change::Subtree { path: p, instant });
                }
                Act::Wait { ms } => self.now += Duration::from_millis(ms),
                Act::Pop => {
                    if self.flights.len() < self.parallel {
                        let due = self.q.next_due();
                        let popped = self.q.pop_due_with_id(self.now);
                        let is_due = due.is_some_and(|d| d <= self.now);
                        if self.flights.is_empty() {
                            prop_assert_eq!(popped.is_some(), is_due, "pop_due against next_due");
                        } else {
                            // Due ops may all wait for a batch in flight.
                            prop_assert!(popped.is_none() || is_due, "pop_due against next_due");
                        }
                        if let Some((id, b)) = popped {
                            let lane_due = self.ref_due(b.lane);
                            prop_assert!(
                                lane_due.is_some_and(|d| d <= self.now),
                                "{} batch popped before its window",
                                b.lane.name()
                            );
                            self.check_batch(&b)?;
                            self.check_exclusive(&b)?;
                            self.flights.push((id, b, 0));
                        }
                    }
                }
                Act::Step { which } => {
                    if !self.flights.is_empty() {
                        self.step(which % self.flights.len(), 1);
                    }
                }
                Act::Finish { which } => {
                    if !self.flights.is_empty() {
                        let i = which % self.flights.len();
                        self.step(i, usize::MAX);
                        let (id, _, _) = self.flights.remove(i);
                        self.q.finished_id(id, self.now);
                        self.last_finished = Some(self.now);
                    }
                }
                Act::Fail {
                    which,
                    keep,
                    backoff,
                } => {
                    if !self.flights.is_empty() {
                        let i = which % self.flights.len();
                        let done = self.flights[i].2;
                        self.step(i, keep.saturating_sub(done));
                        let (id, b, _) = self.flights.remove(i);
                        self.last_finished = Some(self.now);
                        let nb = self.now + Duration::from_millis(backoff);
                        self.hold = Some(self.hold.map_or(nb, |h| h.max(nb)));
                        self.q.requeue_id(id, self.now, b, nb);
                    }
                }
                Act::FailPaths {
                    which,
                    failed,
                    ran,
                    backoff,
                } => {
                    if !self.flights.is_empty() {
                        let i = which % self.flights.len();
                        let (id, b, done) = self.flights.remove(i);
                        let mut paths = Vec::new();
                        for (k, op) in b.ops.iter().enumerate().skip(done) {
                            let bit = 1u8 << (k % 8);
                            let fails = failed & bit != 0;
                            if !fails || ran & bit != 0 {
                                apply(op, &self.src, &mut self.dst, self.mode);
                            }
                            if fails {
                                let rec = !matches!(
                                    op,
                                    Op::Sync {
                                        recursive: false,
                                        ..
                                    }
                                );
                                paths.extend(op.paths().into_iter().map(|p| (p.to_vec(), rec)));
                            }
                        }
                        self.last_finished = Some(self.now);
                        let now = self.now;
                        let step = Duration::from_millis(backoff);
                        self.q.requeue_failed_id(id, now, paths, |n| now + step * n);
                    }
                }
            }
            self.observe()
        }
    }

    fn initial() -> impl Strategy<Value = Vec<(usize, usize, bool)>> {
        proptest::collection::vec((0usize..64, 0usize..NAMES.len(), any::<bool>()), 0..10)
    }

    fn converge(
        cfg: QueueConfig,
        init: Vec<(usize, usize, bool)>,
        initial_sync: bool,
        mode: Mode,
        acts: Vec<Act>,
    ) -> Result<(), TestCaseError> {
        converge_parallel(cfg, init, initial_sync, mode, acts, 1)
    }

    /// `converge` with up to `parallel` batches in flight (`-p safe`).
    fn converge_parallel(
        cfg: QueueConfig,
        init: Vec<(usize, usize, bool)>,
        initial_sync: bool,
        mode: Mode,
        acts: Vec<Act>,
        parallel: usize,
    ) -> Result<(), TestCaseError> {
        let mut w = World::parallel(cfg, mode, parallel);
        for (parent, name, dir) in init {
            let ps = w.parents();
            let p = path::join(&ps[parent % ps.len()], NAMES[name].as_bytes());
            if !w.src.contains_key(&p) {
                let v = w.bump();
                w.src
                    .insert(p, if dir { Node::Dir(v) } else { Node::File(v) });
            }
        }
        if initial_sync {
            w.push(Change::Subtree {
                path: Vec::new(),
                instant: true,
            });
        } else {
            w.dst = w.src.clone();
        }
        w.observe()?;
        for a in &acts {
            w.run(a)?;
        }
        while !w.flights.is_empty() {
            w.run(&Act::Finish { which: 0 })?;
        }
        prop_assert_eq!(w.q.in_flight(), 0);
        if let Some(b) = w.q.pop_all() {
            w.check_batch(&b)?;
            for op in &b.ops {
                apply(op, &w.src, &mut w.dst, mode);
            }
            w.q.finished(w.now);
        }
        prop_assert!(w.q.is_empty());
        prop_assert_eq!(&w.dst, &w.src, "destination differs from source");
        Ok(())
    }

    proptest! {
        // PROPTEST_CASES=20000 for a deep run; the default keeps `cargo test` quick.
        #![proptest_config(ProptestConfig {
            cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(300),
            ..ProptestConfig::default()
        })]

        #[test]
        fn destination_converges_with_bare_renames(
            cfg in config(),
            init in initial(),
            initial_sync in any::<bool>(),
            acts in proptest::collection::vec(act(), 0..80),
        ) {
            converge(cfg, init, initial_sync, Mode::Bare, acts)?;
        }

        #[test]
        fn destination_converges_with_handlers_that_resync_moves(
            cfg in config(),
            init in initial(),
            initial_sync in any::<bool>(),
            acts in proptest::collection::vec(act(), 0..80),
        ) {
            converge(cfg, init, initial_sync, Mode::Resync, acts)?;
        }

        #[test]
        fn a_tree_created_and_destroyed_in_one_window_costs_nothing(
            acts in proptest::collection::vec(act(), 0..60),
            one_event in any::<bool>(),
        ) {
            let cfg = QueueConfig {
                delay: Duration::from_millis(1000),
                delay_big: Duration::from_millis(1000),
                big_threshold: 50,
                interval: Duration::ZERO,
            };
            let mut w = World::new(cfg, Mode::Bare);
            w.src.insert(b"n".to_vec(), Node::Dir(0));
            w.push(Change::Created { path: b"n".to_vec(), is_dir: true, size: 0 });
            w.scope = b"n".to_vec();
            for a in &acts {
                if !matches!(a, Act::Pop | Act::Step { .. } | Act::Finish { .. } | Act::Fail { .. }) {
                    w.run(a)?;
                }
            }
            w.scope = Vec::new();
            if one_event {
                w.run(&Act::MoveOut { target: 0 })?;
            } else {
                w.run(&Act::Remove { target: 0 })?;
            }
            prop_assert!(w.src.is_empty());
            prop_assert!(w.q.is_empty(), "left behind: {}", tests::show(&w.q.pop_all()));
        }

        #[test]
        fn destination_converges_with_renames_that_make_parents(
            cfg in config(),
            init in initial(),
            initial_sync in any::<bool>(),
            acts in proptest::collection::vec(act(), 0..80),
        ) {
            converge(cfg, init, initial_sync, Mode::BareMakingParents, acts)?;
        }

        #[test]
        fn destination_converges_when_single_paths_fail(
            cfg in config(),
            init in initial(),
            initial_sync in any::<bool>(),
            acts in proptest::collection::vec(act_isolating(), 0..80),
            parallel in 1usize..3,
        ) {
            converge_parallel(cfg, init, initial_sync, Mode::Resync, acts, parallel)?;
        }

        #[test]
        fn parallel_safe_runs_converge_with_bare_renames(
            cfg in config(),
            init in initial(),
            initial_sync in any::<bool>(),
            acts in proptest::collection::vec(act(), 0..100),
            parallel in 2usize..4,
        ) {
            converge_parallel(cfg, init, initial_sync, Mode::Bare, acts, parallel)?;
        }

        #[test]
        fn parallel_safe_runs_converge_with_handlers_that_resync_moves(
            cfg in config(),
            init in initial(),
            initial_sync in any::<bool>(),
            acts in proptest::collection::vec(act(), 0..100),
            parallel in 2usize..4,
        ) {
            converge_parallel(cfg, init, initial_sync, Mode::Resync, acts, parallel)?;
        }

        #[test]
        fn parallel_safe_runs_converge_with_renames_that_make_parents(
            cfg in config(),
            init in initial(),
            initial_sync in any::<bool>(),
            acts in proptest::collection::vec(act(), 0..100),
            parallel in 2usize..4,
        ) {
            converge_parallel(cfg, init, initial_sync, Mode::BareMakingParents, acts, parallel)?;
        }
    }
}
