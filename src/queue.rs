//! Coalescing per path and clsync's delay windows. (Stub: API only.)

use crate::batch::{Batch, Lane};
use std::time::{Duration, Instant};

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

#[derive(Debug)]
pub struct Queue {
    _cfg: QueueConfig,
}

impl Queue {
    pub fn new(cfg: QueueConfig) -> Self {
        Queue { _cfg: cfg }
    }
    pub fn push(&mut self, _now: Instant, _change: Change) {}
    pub fn next_due(&self) -> Option<Instant> {
        None
    }
    pub fn pop_due(&mut self, _now: Instant) -> Option<Batch> {
        None
    }
    pub fn pop_all(&mut self) -> Option<Batch> {
        None
    }
    pub fn finished(&mut self, _now: Instant) {}
    pub fn requeue(&mut self, _now: Instant, _batch: Batch, _not_before: Instant) {}
    pub fn is_empty(&self) -> bool {
        true
    }
    pub fn len(&self) -> usize {
        0
    }
    pub fn lane_len(&self, _lane: Lane) -> usize {
        0
    }
}
