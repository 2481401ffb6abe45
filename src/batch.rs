//! The unit of work that the queue hands to a handler.
//!
//! A batch is a list of [`Op`]s. Every op is *state based*: it asks the
//! handler to make the destination equal to what the source holds *when the
//! handler runs*, so an op can never replay a stale event. A [`Op::Move`] is
//! an optimisation hint (the destination may rename instead of copying) that
//! a handler must treat as "sync `from` and `to`" when the hint does not fit.
//! This module holds data only.

use std::collections::BTreeMap;

/// inotify event bits (`linux/inotify.h`), the values clsync hands its
/// handlers as `%EVENT-MASK%`; livesync uses them whichever backend saw the
/// change.
pub mod mask {
    pub const IN_MODIFY: u32 = 0x0000_0002;
    pub const IN_ATTRIB: u32 = 0x0000_0004;
    pub const IN_CLOSE_WRITE: u32 = 0x0000_0008;
    pub const IN_MOVED_FROM: u32 = 0x0000_0040;
    pub const IN_MOVED_TO: u32 = 0x0000_0080;
    pub const IN_CREATE: u32 = 0x0000_0100;
    pub const IN_DELETE: u32 = 0x0000_0200;
    pub const IN_ISDIR: u32 = 0x4000_0000;
}

/// Which delay window a change waits in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lane {
    /// Initial sync, rescans after an overflow, retries: no collect window.
    Instant,
    /// Ordinary files and directories: `-t`.
    #[default]
    Normal,
    /// Files bigger than `-B`: `-T`.
    Big,
}

impl Lane {
    pub const ALL: [Lane; 3] = [Lane::Instant, Lane::Normal, Lane::Big];

    pub fn name(self) -> &'static str {
        match self {
            Lane::Instant => "instant",
            Lane::Normal => "normal",
            Lane::Big => "big",
        }
    }
}

/// One thing to make true at the destination.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// Make the destination's `path` equal to the source's `path`: create,
    /// update or delete it. With `recursive`, the whole subtree below a
    /// directory (a directory created or moved in, a rescan, the initial
    /// sync: `path` empty means the whole tree); without it, a directory op
    /// covers the directory itself (its existence and metadata) only.
    Sync { path: Vec<u8>, recursive: bool },
    /// `from` was renamed to `to` in the source. The destination may rename
    /// its `from` to `to` (when that still fits the source) and must then make
    /// both `to` (recursively) and `from` equal to the source.
    Move { from: Vec<u8>, to: Vec<u8> },
}

impl Op {
    /// `Op::Sync` of `path`.
    pub fn sync(path: &[u8], recursive: bool) -> Op {
        Op::Sync {
            path: path.to_vec(),
            recursive,
        }
    }

    /// The paths this op touches (one for a sync, two for a move).
    pub fn paths(&self) -> Vec<&[u8]> {
        match self {
            Op::Sync { path, .. } => vec![path],
            Op::Move { from, to } => vec![from, to],
        }
    }
}

/// A group of ops released together by one lane's window.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    /// Moves first, in the order they happened; then syncs, parents before
    /// children.
    pub ops: Vec<Op>,
    /// The lane whose window released it.
    pub lane: Lane,
    /// How many times this batch has already failed (0 on the first run).
    pub attempt: u32,
    /// Side table for handlers that report events (clsync's command
    /// modes): the union of the inotify-style [`mask`] bits of the changes
    /// the queue coalesced, per path (an op's path, or a path below a
    /// recursive op). Informational only: the ops alone say what to sync,
    /// and a path without an entry has no recorded event (the initial sync,
    /// a rescan), so a handler derives one from what the source holds.
    pub masks: BTreeMap<Vec<u8>, u32>,
}

impl Batch {
    /// `ops` as a first try in the normal lane, with no recorded masks.
    pub fn of(ops: Vec<Op>) -> Batch {
        Batch {
            ops,
            ..Batch::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }
}
