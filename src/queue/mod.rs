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
//!
//! This file holds the state and the public face; the rules live beside
//! it: `coalesce` (how a change folds into what is pending), `pop` (when a
//! lane is due and what a pop takes), `requeue` (finished and failed
//! batches) and `bookkeeping` (the counts, windows and holds every entry
//! goes in and out through).

use crate::batch::{Batch, Lane, Op};
use crate::path;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::time::{Duration, Instant};

mod bookkeeping;
mod coalesce;
mod pop;
mod requeue;

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
}

#[cfg(test)]
mod isolation;
#[cfg(test)]
mod parallel;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod storms;
#[cfg(test)]
mod tests;
