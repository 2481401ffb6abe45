//! Kernel change notifications, one module per backend behind [`Monitor`].
//!
//! A backend turns the kernel's notifications into [`RawEvent`]s whose paths
//! are relative to the watch root (raw bytes). It keeps the map from its own
//! watch handles to paths (and keeps it right across directory renames it
//! sees), but it decides nothing: which directories to watch is the tree's
//! business, batching is the queue's.

pub mod inotify;
// h/fanotify: the fanotify backend (Linux) and the BSM audit-trail parser
// (portable; its auditpipe reader is FreeBSD-only).
pub mod bsm;
#[cfg(target_os = "linux")]
pub mod fanotify;

use std::io;
use std::os::fd::RawFd;

/// What happened to a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    Created,
    /// Content written (or closed after writing).
    Modified,
    /// Metadata only: mode, owner, times, link count.
    Attrib,
    Removed,
    /// First half of a rename; `cookie` pairs it with its `MovedTo`.
    MovedFrom,
    MovedTo,
    /// The kernel lost events under `path`: list it again.
    Rescan,
    /// The watched directory `path` itself went away or was unmounted; its
    /// watch is gone.
    WatchGone,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawEvent {
    /// Relative to the watch root; empty for the root itself.
    pub path: Vec<u8>,
    pub kind: EventKind,
    pub is_dir: bool,
    /// Rename pairing cookie (0 when the backend has none).
    pub cookie: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// The per-user watch limit is reached (inotify ENOSPC).
    #[error("cannot watch {path}: the inotify watch limit is reached; raise it with `sysctl fs.inotify.max_user_watches=N` (now {limit})")]
    WatchLimit { path: String, limit: String },
    /// Too many inotify instances or open files (EMFILE).
    #[error("cannot start inotify: too many instances or open files; raise `fs.inotify.max_user_instances` or the open-file limit ({source})")]
    InstanceLimit { source: io::Error },
    /// The path vanished or is not a directory: not an error for the caller.
    #[error("{path} is gone")]
    Gone { path: String },
    #[error("cannot watch {path}: {source}")]
    Watch { path: String, source: io::Error },
    #[error("cannot read kernel events: {0}")]
    Read(io::Error),
    // h/fanotify: a backend that cannot run here at all (no privilege, old
    // kernel, a filesystem without what it needs); the caller may fall back
    // to another backend with a warning.
    #[error("cannot use the {backend} backend: {reason}")]
    Unavailable {
        backend: &'static str,
        reason: String,
    },
}

/// One kernel notification API.
pub trait Monitor {
    /// Starts watching the directory `rel` (relative to the root). Watching
    /// an already watched directory is not an error.
    fn add_watch(&mut self, rel: &[u8]) -> Result<(), MonitorError>;
    /// Forgets `rel` and every watched directory below it (they were removed
    /// or moved out of the tree).
    fn forget_subtree(&mut self, rel: &[u8]);
    /// Appends whatever events are ready, without blocking.
    fn read_events(&mut self, out: &mut Vec<RawEvent>) -> Result<(), MonitorError>;
    /// A descriptor that polls readable when events are ready.
    fn fd(&self) -> RawFd;
    /// How many directories are watched.
    fn watch_count(&self) -> usize;
    /// Every watched directory at or below `rel`.
    fn watched_under(&self, rel: &[u8]) -> Vec<Vec<u8>>;
    /// Whether the directory `rel` itself is watched.
    fn is_watched(&self, rel: &[u8]) -> bool;
}
