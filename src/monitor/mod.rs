//! Kernel change notifications, one module per backend behind [`Monitor`].
//!
//! A backend turns the kernel's notifications into [`RawEvent`]s whose paths
//! are relative to the watch root (raw bytes). It keeps the map from its own
//! watch handles to paths (and keeps it right across directory renames it
//! sees), but it decides nothing: which directories to watch is the tree's
//! business, batching is the queue's.
//!
//! [`open`] picks the backend for `--monitor` ([`MonitorKind`]); callers only
//! see `Box<dyn Monitor>`. Every backend answers in terms of watched
//! directories (`add_watch`, `watch_count`, `is_watched`), whatever it
//! holds underneath: an inotify watch, a kqueue descriptor, a listing to
//! diff. The optional methods have no-op defaults: `next_deadline` (a
//! backend without a descriptor says when to read it), `syncing`/`synced`
//! (a listing backend checks what a sync may have read) and `catch_up`
//! (read everything now, before a last sync) and `sees_everything` (a
//! filesystem mark: nothing to walk or register). `deep` names directories
//! deeper than `PATH_MAX` for the calls that take a path.

// Backends: the `cfg` sits on these lines and nowhere else. A backend that
// cannot run on this platform is the `unavailable.rs` stand-in, whose
// `open` says so. Adding a backend: its `mod` line(s), a `MonitorKind`
// variant and one arm in `open` below.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub mod inotify;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
#[path = "unavailable.rs"]
pub mod inotify;
// fanotify (Linux) and the BSM audit-trail parser (portable; its auditpipe
// reader is FreeBSD-only, and its `open` says so elsewhere).
pub mod bsm;
#[cfg(target_os = "linux")]
pub mod fanotify;
#[cfg(not(target_os = "linux"))]
#[path = "unavailable.rs"]
#[allow(clippy::duplicate_mod)] // the stand-in, once per missing backend, on purpose
pub mod fanotify;
// Directories deeper than PATH_MAX, by descriptor (Linux's O_PATH).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub mod deep;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
#[path = "deep_other.rs"]
pub mod deep;
pub mod kqueue;
pub mod notify;
pub mod poll;
pub mod snapshot;

use std::io;
use std::os::fd::RawFd;
use std::path::Path;
use std::time::{Duration, Instant};

/// Which backend watches the tree (`--monitor`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum MonitorKind {
    /// Linux inotify: one watch per directory.
    Inotify,
    /// FreeBSD/macOS kqueue: one open file per watched directory and file.
    Kqueue,
    /// A periodic scan of the watched directories (NFS, FUSE, anything the
    /// kernel does not report); see --poll-interval.
    Poll,
    /// The `notify` crate's recommended watcher (FSEvents on macOS,
    /// inotify on Linux).
    Notify,
    /// Linux fanotify: one mark per filesystem, no per-directory kernel
    /// watch (needs CAP_SYS_ADMIN; falls back to inotify without it).
    Fanotify,
    /// FreeBSD's audit trail (/dev/auditpipe).
    Bsm,
}

impl MonitorKind {
    /// The native backend of the platform this was built for.
    pub fn platform_default() -> Self {
        if cfg!(any(target_os = "linux", target_os = "android")) {
            MonitorKind::Inotify
        } else if cfg!(any(
            target_os = "freebsd",
            target_os = "macos",
            target_os = "openbsd",
            target_os = "netbsd",
            target_os = "dragonfly"
        )) {
            MonitorKind::Kqueue
        } else {
            MonitorKind::Notify
        }
    }

    /// The name as `--monitor` spells it.
    pub fn name(self) -> &'static str {
        match self {
            MonitorKind::Inotify => "inotify",
            MonitorKind::Kqueue => "kqueue",
            MonitorKind::Poll => "poll",
            MonitorKind::Notify => "notify",
            MonitorKind::Fanotify => "fanotify",
            MonitorKind::Bsm => "bsm",
        }
    }
}

/// Settings some backends take.
#[derive(Clone, Debug, PartialEq)]
pub struct MonitorOptions {
    /// `--poll-interval`: time between two scans of the poll backend.
    pub poll_interval: Duration,
}

impl Default for MonitorOptions {
    fn default() -> Self {
        MonitorOptions {
            poll_interval: Duration::from_secs(1),
        }
    }
}

/// Starts the backend `kind` for the tree at `root` (absolute, canonical).
/// No directory is watched until [`Monitor::add_watch`] is called.
pub fn open(
    kind: MonitorKind,
    root: &Path,
    opts: &MonitorOptions,
) -> Result<Box<dyn Monitor>, MonitorError> {
    match kind {
        MonitorKind::Inotify => inotify::open(root, opts),
        MonitorKind::Kqueue => kqueue::open(root, opts),
        MonitorKind::Poll => poll::open(root, opts),
        MonitorKind::Notify => notify::open(root, opts),
        MonitorKind::Bsm => bsm::open(root, opts),
        // Without the privilege or on a filesystem without file handles,
        // fanotify cannot run; inotify can, so use it and say so.
        MonitorKind::Fanotify => fanotify::open(root, opts).or_else(|e| match e {
            MonitorError::Unavailable { .. } if cfg!(target_os = "linux") => {
                log::warn!("{e}; falling back to --monitor inotify");
                inotify::open(root, opts)
            }
            e => Err(e),
        }),
    }
}

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
    /// The backend does not exist on this platform or cannot start here
    /// (no privilege, an old kernel, a filesystem without what it needs).
    #[error("--monitor {backend} cannot start: {reason}")]
    Unavailable {
        backend: &'static str,
        reason: String,
    },
    /// kqueue needs an open file per watched directory and file.
    #[error("cannot watch {path} with kqueue: it needs one open file per watched directory and file, {need} or more, but the open-file limit is {limit}; raise it (ulimit -n, kern.maxfilesperproc) or use --monitor poll")]
    FdBudget { path: String, need: u64, limit: u64 },
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
    /// A descriptor that polls readable when events are ready, or -1 when
    /// the backend has none (then [`Monitor::next_deadline`] says when to
    /// call [`Monitor::read_events`]).
    fn fd(&self) -> RawFd;
    /// How many directories are watched.
    fn watch_count(&self) -> usize;
    /// Every watched directory at or below `rel`.
    fn watched_under(&self, rel: &[u8]) -> Vec<Vec<u8>>;
    /// Whether the directory `rel` itself is watched.
    fn is_watched(&self, rel: &[u8]) -> bool;
    /// When [`Monitor::read_events`] wants to be called even if [`Monitor::fd`]
    /// stays quiet (the poll backend's next scan); None: only when it polls
    /// readable.
    fn next_deadline(&self) -> Option<Instant> {
        None
    }
    /// The handler starts on `batch`. A backend that only sees listings
    /// (poll, kqueue) checks, after the batch, for what the handler may have
    /// copied from a state no listing showed.
    fn syncing(&mut self, _batch: &crate::batch::Batch) {}
    /// The batch announced by [`Monitor::syncing`] is done.
    fn synced(&mut self) {}
    /// The caller is about to act on "nothing else changed" (a soft end):
    /// the next [`Monitor::read_events`] must report every change made up
    /// to now, even if a scan is not due.
    fn catch_up(&mut self) {}
    /// Whether every directory below the root is covered without a watch
    /// of its own (fanotify's filesystem mark): the tree then neither walks
    /// the tree to watch it nor registers directories, and it applies the
    /// rules (and the destination) to each event itself.
    fn sees_everything(&self) -> bool {
        false
    }
}

/// What a batch makes equal, as (path, with everything below it), for
/// [`snapshot::Snapshots::syncing`]. A move may be done as a copy of its
/// target, so both names count, the target with what is below it.
pub fn batch_paths(batch: &crate::batch::Batch) -> Vec<(Vec<u8>, bool)> {
    use crate::batch::Op;
    let mut out = Vec::with_capacity(batch.ops.len());
    for op in &batch.ops {
        match op {
            Op::Sync { path, recursive } => out.push((path.clone(), *recursive)),
            Op::Move { from, to } => {
                out.push((from.clone(), false));
                out.push((to.clone(), true));
            }
        }
    }
    out
}

/// A boxed backend is a backend, so callers keep passing `&mut monitor`.
impl<M: Monitor + ?Sized> Monitor for Box<M> {
    fn add_watch(&mut self, rel: &[u8]) -> Result<(), MonitorError> {
        (**self).add_watch(rel)
    }
    fn forget_subtree(&mut self, rel: &[u8]) {
        (**self).forget_subtree(rel)
    }
    fn read_events(&mut self, out: &mut Vec<RawEvent>) -> Result<(), MonitorError> {
        (**self).read_events(out)
    }
    fn fd(&self) -> RawFd {
        (**self).fd()
    }
    fn watch_count(&self) -> usize {
        (**self).watch_count()
    }
    fn watched_under(&self, rel: &[u8]) -> Vec<Vec<u8>> {
        (**self).watched_under(rel)
    }
    fn is_watched(&self, rel: &[u8]) -> bool {
        (**self).is_watched(rel)
    }
    fn next_deadline(&self) -> Option<Instant> {
        (**self).next_deadline()
    }
    fn syncing(&mut self, batch: &crate::batch::Batch) {
        (**self).syncing(batch)
    }
    fn synced(&mut self) {
        (**self).synced()
    }
    fn sees_everything(&self) -> bool {
        (**self).sees_everything()
    }
    fn catch_up(&mut self) {
        (**self).catch_up()
    }
}

/// Helpers the backends' own tests share.
#[cfg(test)]
pub(crate) mod testutil {
    use super::{EventKind, Monitor, RawEvent};
    use std::time::{Duration, Instant};

    /// Reads until `want` holds for the events collected so far (5 s).
    pub fn collect_until(
        mon: &mut dyn Monitor,
        want: impl Fn(&[RawEvent]) -> bool,
    ) -> Vec<RawEvent> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut all = Vec::new();
        while Instant::now() < deadline {
            mon.read_events(&mut all).expect("read");
            if want(&all) {
                return all;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("timed out; events so far: {all:?}");
    }

    /// Whether `evs` holds a `kind` event for `path`.
    pub fn has(evs: &[RawEvent], path: &str, kind: EventKind) -> bool {
        evs.iter()
            .any(|e| e.path == path.as_bytes() && e.kind == kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn names_are_the_monitor_values_and_the_default_is_native() {
        for kind in MonitorKind::value_variants() {
            let v = kind.to_possible_value().expect("value");
            assert_eq!(v.get_name(), kind.name());
        }
        if cfg!(target_os = "linux") {
            assert_eq!(MonitorKind::platform_default(), MonitorKind::Inotify);
        }
    }

    #[test]
    fn the_factory_opens_each_backend_or_says_in_one_line_why_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("canonical");
        std::fs::create_dir(root.join("sub")).expect("mkdir");
        for kind in MonitorKind::value_variants() {
            match open(*kind, &root, &MonitorOptions::default()) {
                Ok(mut m) => {
                    m.add_watch(b"").expect("watch root");
                    m.add_watch(b"sub").expect("watch sub");
                    assert_eq!(m.watch_count(), 2, "{kind:?}");
                    assert!(m.is_watched(b"sub") && !m.is_watched(b"nope"), "{kind:?}");
                    assert_eq!(m.watched_under(b"sub"), vec![b"sub".to_vec()], "{kind:?}");
                    m.forget_subtree(b"sub");
                    assert_eq!(m.watch_count(), 1, "{kind:?}");
                }
                Err(e) => {
                    let msg = e.to_string();
                    assert!(
                        matches!(e, MonitorError::Unavailable { .. })
                            && !msg.contains('\n')
                            && msg.contains(&format!("--monitor {}", kind.name())),
                        "{kind:?}: {msg}"
                    );
                    if cfg!(target_os = "linux") {
                        assert!(
                            matches!(kind, MonitorKind::Kqueue | MonitorKind::Bsm),
                            "{msg}"
                        );
                    }
                }
            }
        }
    }
}
