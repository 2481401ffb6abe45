//! The watched tree: which directories are walked and watched, and how the
//! backend's raw events become the queue's changes.
//!
//! The tree asks the [`Rules`] which directories to walk (descend into) and
//! monitor (watch), and which paths to sync. When a directory is created or
//! moved in, it adds the watch *first and then lists the directory*, because
//! files can appear in it before the watch exists; the new directory is then
//! queued as a whole subtree, so whatever the listing raced with is synced.
//! Directories deleted or moved out are forgotten (no ghost watches), and a
//! directory re-created under an old name is watched afresh. Rename halves are
//! paired by cookie; an unpaired half becomes a delete or a create. A lost
//! event (queue overflow) becomes a rescan of the subtree. A directory that
//! cannot be watched (the watch limit, or any other refusal) is listed and
//! synced all the same and rescanned every [`UNWATCHED_RESCAN`] until it
//! can be. Directories deeper than `PATH_MAX` are listed through a
//! descriptor (`monitor::deep`), so depth does not matter.
//!
//! A directory whose device and inode are the local destination's
//! ([`Tree::never_enter`]) is never walked or watched, whatever its path: a
//! destination bind-mounted inside the source would otherwise feed the
//! mirror's own writes back as changes, nesting copies without end.
//!
//! Hard links: the tree knows the names of every file with more than one
//! link (from the walk and from events, one `lstat` per file, kept only while
//! a file has several links, so memory stays small). When such a file
//! changes, its other known names are queued as changed too, so every handler
//! syncs all of them and none is left stale at the destination. A link made
//! at runtime is learnt from its creation and from the link-count change
//! (`IN_ATTRIB`) the old name reports. `--cancel-syscalls=mon_stat` turns
//! this off with the other `lstat`s.
//!
//! A backend that sees every directory without a watch each (fanotify's
//! filesystem mark, [`Monitor::sees_everything`]) is given only the root:
//! the tree then checks per event that the event's directory is one it
//! would have watched (the rules up the path, not the destination; the
//! answers for recent directories are kept), and it walks the tree at start
//! only to learn hard links, and not at all with
//! [`Tree::walk_at_start`] off (`--skip-initialsync`).
//!
//! The tree does no syncing and no batching, and it never follows symlinks.
//! It keeps no per-directory state of its own: the backend holds the
//! watched directories once, compactly ([`nodes`]: parent and name per
//! directory, full paths rebuilt only for events).

pub mod nodes;

use crate::monitor::{EventKind, Monitor, MonitorError, RawEvent};
use crate::path;
use crate::queue::Change;
use crate::rules::{Action, Kind, Rules};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Whether `rel` is a directory reachable below `root` without following
/// a symlink (at any depth, PATH_MAX or not).
fn is_real_dir(root: &std::path::Path, rel: &[u8]) -> bool {
    let at = crate::monitor::deep::dir_path(root, rel);
    match at {
        Ok(p) if p.via_descriptor() => true, // opened O_DIRECTORY|O_NOFOLLOW
        Ok(p) => std::fs::symlink_metadata(p.path()).is_ok_and(|m| m.is_dir()),
        Err(_) => false,
    }
}

/// How often directories that could not be watched (watch limit) are
/// rescanned and watching them is tried again.
pub const UNWATCHED_RESCAN: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("the watch dir {0} was deleted, moved or unmounted; restart livesync once it is back")]
    RootGone(String),
    #[error(transparent)]
    Monitor(#[from] MonitorError),
}

/// Counters for logs and status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TreeStats {
    pub rescans: u64,
    pub watch_failures: u64,
}

pub struct Tree {
    root: PathBuf,
    rules: Arc<Rules>,
    big_threshold: u64,
    /// A `MovedFrom` that was the last event of a read: its `MovedTo` may
    /// be in the next one.
    held: Option<RawEvent>,
    /// Directories that could not be watched: the watch limit was reached
    /// (nothing below them is watched either), or adding the watch failed
    /// otherwise; rescanned every [`UNWATCHED_RESCAN`] until watching them
    /// works.
    unwatched: BTreeSet<Vec<u8>>,
    /// The watch-limit error was logged loudly once already.
    limit_reported: bool,
    /// Directories whose watch failed for another reason, logged loudly
    /// once each.
    watch_failed: BTreeSet<Vec<u8>>,
    pub stats: TreeStats,
    /// inotify-style event bits per raw event, in order, until
    /// [`Tree::take_masks`] (the queue keeps them for `%EVENT-MASK%`).
    masks: Vec<(Vec<u8>, u32)>,
    /// Whether to record `masks` at all (only handlers that report them).
    record_masks: bool,
    /// (device, inode) of the local destination: never walked or watched.
    never_enter: Option<(u64, u64)>,
    /// Skipping the destination was logged once already.
    never_enter_reported: bool,
    /// The known names of multi-link files.
    links: Links,
    /// Whether to learn them at all (each costs an `lstat` per file).
    track_links: bool,
    /// With a backend that sees everything: whether events in a directory
    /// count (the rules and the destination, checked up the path), for
    /// the directories events came from lately.
    dir_counts: HashMap<Vec<u8>, bool>,
    /// With such a backend, whether walking the whole tree at start (and
    /// at a rescan of the root) to learn its hard links is worth it.
    walk_at_start: bool,
}

/// How many directories [`Tree::dir_counts`] remembers before starting over.
const DIR_COUNTS_MAX: usize = 4096;

/// Source (dev, ino) of a file.
type FileId = (u64, u64);

/// The names of files with more than one link, both ways (names sorted, so
/// that the names below a directory are one range).
#[derive(Default)]
struct Links {
    names: HashMap<FileId, BTreeSet<Vec<u8>>>,
    ids: BTreeMap<Vec<u8>, FileId>,
}

impl Links {
    fn note(&mut self, rel: &[u8], id: FileId) {
        if self.ids.get(rel) == Some(&id) {
            return;
        }
        self.forget(rel);
        self.ids.insert(rel.to_vec(), id);
        self.names.entry(id).or_default().insert(rel.to_vec());
    }

    fn forget(&mut self, rel: &[u8]) {
        if let Some(id) = self.ids.remove(rel) {
            if let Some(set) = self.names.get_mut(&id) {
                set.remove(rel);
                if set.is_empty() {
                    self.names.remove(&id);
                }
            }
        }
    }

    fn forget_id(&mut self, id: FileId) {
        for name in self.names.remove(&id).unwrap_or_default() {
            self.ids.remove(&name);
        }
    }

    /// The names at or below `rel`, with their files.
    fn under(&self, rel: &[u8]) -> Vec<(Vec<u8>, FileId)> {
        self.ids
            .range(rel.to_vec()..)
            .take_while(|(k, _)| k.starts_with(rel))
            .filter(|(k, _)| path::is_under(k, rel))
            .map(|(k, id)| (k.clone(), *id))
            .collect()
    }

    /// Forgets every name at or below `rel`.
    fn forget_under(&mut self, rel: &[u8]) {
        for (k, _) in self.under(rel) {
            self.forget(&k);
        }
    }

    /// Renames every name at or below `from` to the same place below `to`.
    fn moved(&mut self, from: &[u8], to: &[u8]) {
        self.forget_under(to);
        for (old, id) in self.under(from) {
            self.forget(&old);
            self.note(&path::rebase(&old, from, to), id);
        }
    }

    /// The other known names of `id`.
    fn others(&self, rel: &[u8], id: FileId) -> Vec<Vec<u8>> {
        self.names
            .get(&id)
            .map(|set| {
                set.iter()
                    .filter(|n| n.as_slice() != rel)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Tree {
    /// `root` is the canonical watch dir; `big_threshold` is `-B` (0 = off),
    /// used to tell the queue each changed file's size.
    pub fn new(root: PathBuf, rules: Arc<Rules>, big_threshold: u64) -> Self {
        Tree {
            root,
            rules,
            big_threshold,
            held: None,
            unwatched: BTreeSet::new(),
            limit_reported: false,
            watch_failed: BTreeSet::new(),
            stats: TreeStats::default(),
            masks: Vec::new(),
            record_masks: true,
            never_enter: None,
            never_enter_reported: false,
            links: Links::default(),
            track_links: true,
            dir_counts: HashMap::new(),
            walk_at_start: true,
        }
    }

    /// With a backend that sees every directory (fanotify), whether to walk
    /// the tree at start anyway, to learn the hard links that exist already
    /// (on by default). `--skip-initialsync` turns it off: starting then
    /// costs nothing per directory, and a file hard-linked before the start
    /// syncs only through the name it was changed by, until a change of its
    /// link count tells the tree about it.
    pub fn walk_at_start(&mut self, on: bool) {
        self.walk_at_start = on;
    }

    /// Whether events in directory `dir` count, for a backend that sees
    /// every directory: it and every directory above it may be walked, it
    /// may be monitored, and none of them is the destination; what the
    /// tree would have watched, had it walked.
    fn counts_in(&mut self, dir: &[u8]) -> bool {
        if let Some(&yes) = self.dir_counts.get(dir) {
            return yes;
        }
        let mut yes = self.monitorable(dir);
        let mut end = 0;
        while yes && end < dir.len() {
            end = dir[end..]
                .iter()
                .position(|b| *b == b'/')
                .map_or(dir.len(), |i| end + i);
            let at = &dir[..end];
            yes = self.walkable(at) && !self.is_destination(at);
            end += 1;
        }
        if self.dir_counts.len() >= DIR_COUNTS_MAX {
            self.dir_counts.clear();
        }
        self.dir_counts.insert(dir.to_vec(), yes);
        yes
    }

    /// Never walk or watch the directory with this (device, inode): the
    /// local destination, wherever it shows up below the watch dir.
    pub fn never_enter(&mut self, id: (u64, u64)) {
        self.never_enter = Some(id);
    }

    /// Whether `rel` (not the root) is the destination; says so once.
    fn is_destination(&mut self, rel: &[u8]) -> bool {
        let Some(id) = self.never_enter else {
            return false;
        };
        if rel.is_empty() {
            return false;
        }
        let abs = path::abs(&self.root, rel);
        let Ok(m) = std::fs::symlink_metadata(&abs) else {
            return false;
        };
        if !m.is_dir() || (m.dev(), m.ino()) != id {
            return false;
        }
        if self.never_enter_reported {
            log::debug!("not walking {}: it is the destination", path::display(rel));
        } else {
            log::warn!(
                "not walking or watching {}: it is the destination (the same device and inode, e.g. through a bind mount); nothing below it is synced",
                path::display_os(&abs)
            );
            self.never_enter_reported = true;
        }
        true
    }

    /// Whether to record event bits for [`Tree::take_masks`]: a handler
    /// that never reports them spares a rules match per event.
    pub fn record_masks(&mut self, on: bool) {
        self.record_masks = on;
        if !on {
            self.masks.clear();
        }
    }

    /// Whether to learn the names of hard-linked files (on by default): off
    /// with `--cancel-syscalls=mon_stat`, which asks for no `lstat` of
    /// changed files; then a change reaches only the name it was made
    /// through.
    pub fn track_links(&mut self, on: bool) {
        self.track_links = on;
        if !on {
            self.links = Links::default();
        }
    }

    /// The event bits of the raw events processed since the last call,
    /// one `(path, mask)` per event, as clsync would report them (see
    /// [`crate::batch::mask`]). A write and the close after it are one
    /// event kind for the backend, so both bits are set for it.
    pub fn take_masks(&mut self) -> Vec<(Vec<u8>, u32)> {
        std::mem::take(&mut self.masks)
    }

    fn note_mask(&mut self, ev: &RawEvent) {
        use crate::batch::mask::*;
        if !self.record_masks || !self.syncable(&ev.path, ev.is_dir) {
            return;
        }
        let bits = match ev.kind {
            EventKind::Created => IN_CREATE,
            EventKind::Modified => IN_MODIFY | IN_CLOSE_WRITE,
            EventKind::Attrib => IN_ATTRIB,
            EventKind::Removed => IN_DELETE,
            EventKind::MovedFrom => IN_MOVED_FROM,
            EventKind::MovedTo => IN_MOVED_TO,
            EventKind::Rescan | EventKind::WatchGone => return,
        };
        let dir = if ev.is_dir { IN_ISDIR } else { 0 };
        self.masks.push((ev.path.clone(), bits | dir));
    }

    pub fn set_rules(&mut self, rules: Arc<Rules>) {
        self.rules = rules;
        self.dir_counts.clear();
    }

    fn walkable(&self, rel: &[u8]) -> bool {
        self.rules.permits(rel, Kind::Dir, Action::Walk)
    }

    fn monitorable(&self, rel: &[u8]) -> bool {
        self.rules.permits(rel, Kind::Dir, Action::Monitor)
    }

    fn syncable(&self, rel: &[u8], is_dir: bool) -> bool {
        let kind = if is_dir { Kind::Dir } else { Kind::File };
        self.rules.permits(rel, kind, Action::Sync)
    }

    /// Watches `rel` and every directory below it that the rules let us walk
    /// and monitor, each watch added before its directory is listed. With
    /// `strict` (at start), a watch-limit error is returned; otherwise it is
    /// logged loudly and the walk goes on (the subtree is still synced, just
    /// not watched). Returns how many directories were visited.
    pub fn watch_subtree(
        &mut self,
        mon: &mut dyn Monitor,
        rel: &[u8],
        strict: bool,
    ) -> Result<usize, MonitorError> {
        // A filesystem mark covers the tree: below the root nothing is
        // registered (the rules are applied per event instead), and the
        // tree is walked only to learn its hard links, when asked to.
        let everything = mon.sees_everything();
        let register_all = !(everything && rel.is_empty());
        if !register_all {
            self.dir_counts.clear();
            if !(self.track_links && self.walk_at_start) {
                mon.add_watch(rel)?;
                return Ok(1);
            }
        }
        let mut stack = vec![rel.to_vec()];
        let mut visited = 0usize;
        while let Some(dir) = stack.pop() {
            if !self.walkable(&dir) || self.is_destination(&dir) {
                continue;
            }
            visited += 1;
            if self.monitorable(&dir) && (register_all || dir.is_empty()) {
                match mon.add_watch(&dir) {
                    Ok(()) => {}
                    Err(MonitorError::Gone { .. }) => continue,
                    Err(e @ MonitorError::WatchLimit { .. }) if strict => return Err(e),
                    Err(e @ MonitorError::WatchLimit { .. }) => {
                        // Nothing below can be watched either: remember the
                        // subtree, rescan it periodically, and try again then.
                        self.stats.watch_failures += 1;
                        if self.limit_reported {
                            log::debug!("{e}");
                        } else {
                            log::error!(
                                "{e}; until then the directories that cannot be watched are rescanned every {} s",
                                UNWATCHED_RESCAN.as_secs()
                            );
                            self.limit_reported = true;
                        }
                        self.unwatched.insert(dir);
                        continue;
                    }
                    Err(e) => {
                        // Listed and synced all the same; what changes below
                        // it is found by the rescans of the unwatched.
                        self.stats.watch_failures += 1;
                        // (One we may not read is the sync's to report: it
                        // skips it with one warning.)
                        let denied = matches!(&e, MonitorError::Watch { source, .. }
                            if matches!(source.raw_os_error(), Some(libc::EACCES | libc::EPERM)));
                        if denied
                            || self.unwatched.contains(&dir)
                            || !self.watch_failed.insert(dir.clone())
                        {
                            log::debug!("{e}");
                        } else {
                            log::error!(
                                "{e}; changes below it are found by a rescan every {} s until it can be watched",
                                UNWATCHED_RESCAN.as_secs()
                            );
                        }
                        self.unwatched.insert(dir.clone());
                    }
                }
            }
            let abs = path::abs(&self.root, &dir);
            // (Deeper than PATH_MAX: listed through a descriptor.)
            let listed = crate::monitor::deep::dir_path(&self.root, &dir)
                .and_then(|p| std::fs::read_dir(p.path()));
            let entries = match listed {
                Ok(it) => it,
                Err(e) => {
                    if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM)) {
                        log::debug!("cannot list {}: {e}", path::display_os(&abs));
                    } else if e.kind() != std::io::ErrorKind::NotFound
                        && e.raw_os_error() != Some(libc::ENOTDIR)
                    {
                        log::warn!("cannot list {}: {e}", path::display_os(&abs));
                    }
                    continue;
                }
            };
            for entry in entries.flatten() {
                // d_type from readdir; never follows symlinks.
                let Ok(ftype) = entry.file_type() else {
                    continue;
                };
                if ftype.is_dir() {
                    stack.push(path::join(&dir, entry.file_name().as_bytes()));
                } else if self.track_links && ftype.is_file() {
                    // An lstat: only the link count tells a hard link.
                    if let Ok(m) = entry.metadata() {
                        if m.nlink() > 1 {
                            let rel = path::join(&dir, entry.file_name().as_bytes());
                            self.links.note(&rel, (m.dev(), m.ino()));
                        }
                    }
                }
            }
        }
        Ok(visited)
    }

    /// A non-directory `rel` changed: its size (for the big lane; 0 when
    /// that is off) and the other names it has as a hard link, which changed
    /// with it. One `lstat`.
    fn file_changed(&mut self, rel: &[u8]) -> (u64, Vec<(Vec<u8>, u64)>) {
        if !self.track_links && self.big_threshold == 0 {
            return (0, Vec::new());
        }
        let Ok(m) = std::fs::symlink_metadata(path::abs(&self.root, rel)) else {
            self.links.forget(rel);
            return (0, Vec::new());
        };
        let size = if self.big_threshold > 0 && m.file_type().is_file() {
            m.size()
        } else {
            0
        };
        let id = (m.dev(), m.ino());
        if !self.track_links {
            return (size, Vec::new());
        }
        if !m.file_type().is_file() || m.nlink() < 2 {
            if self.links.ids.get(rel) == Some(&id) {
                // Its only name now: the others we knew are gone.
                self.links.forget_id(id);
            }
            self.links.forget(rel);
            return (size, Vec::new());
        }
        self.links.note(rel, id);
        let mut others = Vec::new();
        for other in self.links.others(rel, id) {
            // Still that file? A name may have been replaced meanwhile.
            match std::fs::symlink_metadata(path::abs(&self.root, &other)) {
                Ok(o) if (o.dev(), o.ino()) == id => {
                    if self.syncable(&other, false) {
                        others.push((other, size));
                    }
                }
                _ => self.links.forget(&other),
            }
        }
        (size, others)
    }

    /// Queues the other names of a changed hard-linked file as modified.
    fn push_others(others: Vec<(Vec<u8>, u64)>, out: &mut Vec<Change>) {
        for (path, size) in others {
            out.push(Change::Modified {
                path,
                is_dir: false,
                size,
            });
        }
    }

    /// A directory appeared: watch it, list it, and queue it whole. `created`
    /// says it is new (`IN_CREATE`); one moved in may replace an entry the
    /// destination has, so it is only queued as a subtree.
    fn dir_appeared(
        &mut self,
        mon: &mut dyn Monitor,
        rel: &[u8],
        created: bool,
        out: &mut Vec<Change>,
    ) {
        if self.walkable(rel) {
            // Errors were logged; the subtree is queued either way.
            let _ = self.watch_subtree(mon, rel, false);
        }
        if self.syncable(rel, true) || self.walkable(rel) {
            if created {
                out.push(Change::Created {
                    path: rel.to_vec(),
                    is_dir: true,
                    size: 0,
                });
            }
            out.push(Change::Subtree {
                path: rel.to_vec(),
                instant: false,
            });
        }
    }

    /// An entry appeared. `created` (`IN_CREATE`) means nothing was at this
    /// path just before; an entry moved in may replace one, so it is
    /// reported as modified, never as created (the queue would otherwise
    /// cancel it against a later delete and leave the old one behind).
    fn entry_appeared(
        &mut self,
        mon: &mut dyn Monitor,
        rel: &[u8],
        is_dir: bool,
        created: bool,
        out: &mut Vec<Change>,
    ) {
        if is_dir {
            self.dir_appeared(mon, rel, created, out);
        } else if self.syncable(rel, false) {
            let (size, others) = self.file_changed(rel);
            let path = rel.to_vec();
            out.push(if created {
                Change::Created {
                    path,
                    is_dir: false,
                    size,
                }
            } else {
                Change::Modified {
                    path,
                    is_dir: false,
                    size,
                }
            });
            Self::push_others(others, out);
        }
    }

    fn entry_gone(
        &mut self,
        mon: &mut dyn Monitor,
        rel: &[u8],
        is_dir: bool,
        out: &mut Vec<Change>,
    ) {
        if is_dir {
            mon.forget_subtree(rel);
        }
        self.links.forget_under(rel);
        if self.syncable(rel, is_dir) {
            out.push(Change::Removed {
                path: rel.to_vec(),
                is_dir,
            });
        }
    }

    fn moved(
        &mut self,
        mon: &mut dyn Monitor,
        from: &[u8],
        to: &[u8],
        is_dir: bool,
        out: &mut Vec<Change>,
    ) {
        let from_ok = self.syncable(from, is_dir);
        let to_ok = self.syncable(to, is_dir);
        self.links.moved(from, to);
        if is_dir {
            // The backend re-labelled the subtree's watches already, but that
            // is not enough: a directory inside it that appeared just before
            // the rename may have been gone from its old name by the time we
            // tried to watch it (or the rename may be of a directory we never
            // got to watch at all). Walk the new place again; watches that
            // exist are kept as they are. The rules may also see the new
            // place differently.
            if self.walkable(to) {
                let _ = self.watch_subtree(mon, to, false);
            } else {
                mon.forget_subtree(to);
            }
        }
        match (from_ok, to_ok) {
            (true, true) => out.push(Change::Moved {
                from: from.to_vec(),
                to: to.to_vec(),
                is_dir,
            }),
            (true, false) => out.push(Change::Removed {
                path: from.to_vec(),
                is_dir,
            }),
            // Excluded before, included now: like a move in from outside.
            (false, true) => self.entry_appeared(mon, to, is_dir, false, out),
            (false, false) => {}
        }
    }

    /// Lost events below `rel`: drop watches of directories that are gone,
    /// watch what is new, and queue the subtree in the instant lane.
    pub fn rescan(&mut self, mon: &mut dyn Monitor, rel: &[u8], out: &mut Vec<Change>) {
        self.stats.rescans += 1;
        for watched in mon.watched_under(rel) {
            let still_dir = is_real_dir(&self.root, &watched);
            if !still_dir {
                mon.forget_subtree(&watched);
            }
        }
        let _ = self.watch_subtree(mon, rel, false);
        out.push(Change::Subtree {
            path: rel.to_vec(),
            instant: true,
        });
    }

    /// Whether some directories could not be watched (the watch limit).
    pub fn has_unwatched(&self) -> bool {
        !self.unwatched.is_empty()
    }

    /// Tries again to watch the directories the watch limit kept us from
    /// watching, and queues each of them as a subtree (instant), since
    /// changes below them were not seen. A directory that is gone is dropped:
    /// the event that took it away is handled on its own.
    pub fn rescan_unwatched(&mut self, mon: &mut dyn Monitor, out: &mut Vec<Change>) {
        let roots = std::mem::take(&mut self.unwatched);
        for dir in roots {
            if !is_real_dir(&self.root, &dir) {
                continue;
            }
            let _ = self.watch_subtree(mon, &dir, false);
            out.push(Change::Subtree {
                path: dir,
                instant: true,
            });
        }
        if self.unwatched.is_empty() && self.limit_reported {
            log::info!(
                "the inotify watch limit no longer stops us: every directory is watched again"
            );
            self.limit_reported = false;
        }
    }

    /// Whether a `MovedFrom` waits for its pair; the caller should read the
    /// backend once more shortly and then call [`Tree::flush_held`].
    pub fn has_held(&self) -> bool {
        self.held.is_some()
    }

    /// The held `MovedFrom` found no pair: it left the tree.
    pub fn flush_held(&mut self, mon: &mut dyn Monitor, out: &mut Vec<Change>) {
        if let Some(ev) = self.held.take() {
            self.entry_gone(mon, &ev.path, ev.is_dir, out);
        }
    }

    /// Turns raw events into changes, in order, adding and forgetting
    /// watches as directories come and go.
    pub fn process(
        &mut self,
        mon: &mut dyn Monitor,
        events: &[RawEvent],
        out: &mut Vec<Change>,
    ) -> Result<(), TreeError> {
        let sees_everything = mon.sees_everything();
        for ev in events {
            if sees_everything
                && !matches!(ev.kind, EventKind::Rescan | EventKind::WatchGone)
                && !ev.path.is_empty()
            {
                if ev.is_dir && matches!(ev.kind, EventKind::MovedFrom | EventKind::Removed) {
                    // Names below it may mean something else from now on.
                    self.dir_counts.clear();
                }
                if !self.counts_in(path::parent(&ev.path)) {
                    continue;
                }
            }
            self.note_mask(ev);
            if let Some(held) = self.held.take() {
                if ev.kind == EventKind::MovedTo && ev.cookie != 0 && ev.cookie == held.cookie {
                    self.moved(mon, &held.path, &ev.path, ev.is_dir, out);
                    continue;
                }
                // Pairs arrive back to back; anything else in between means
                // the first half left the tree.
                self.entry_gone(mon, &held.path, held.is_dir, out);
            }
            match ev.kind {
                EventKind::Rescan => {
                    log::warn!(
                        "events were lost below {} (the backend's queue overflowed); rescanning",
                        path::display(&ev.path)
                    );
                    self.rescan(mon, &ev.path, out);
                }
                EventKind::WatchGone => {
                    if ev.path.is_empty() {
                        return Err(TreeError::RootGone(path::display_os(&self.root)));
                    }
                    mon.forget_subtree(&ev.path);
                    self.rescan(mon, path::parent(&ev.path), out);
                }
                EventKind::MovedFrom => self.held = Some(ev.clone()),
                EventKind::Created => self.entry_appeared(mon, &ev.path, ev.is_dir, true, out),
                EventKind::MovedTo => self.entry_appeared(mon, &ev.path, ev.is_dir, false, out),
                EventKind::Removed => self.entry_gone(mon, &ev.path, ev.is_dir, out),
                EventKind::Modified | EventKind::Attrib => {
                    if self.syncable(&ev.path, ev.is_dir) {
                        let (size, others) = if ev.is_dir {
                            (0, Vec::new())
                        } else {
                            self.file_changed(&ev.path)
                        };
                        out.push(Change::Modified {
                            path: ev.path.clone(),
                            is_dir: ev.is_dir,
                            size,
                        });
                        Self::push_others(others, out);
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backend that records which directories are watched; like the
    /// kernel, it refuses to watch what is not a directory (any more).
    #[derive(Default)]
    struct FakeMonitor {
        root: PathBuf,
        watched: BTreeSet<Vec<u8>>,
        /// Directories it refuses to watch (as the kernel does one a
        /// daemon that is not root may not read).
        refuse: BTreeSet<Vec<u8>>,
        /// Covers every directory, like fanotify's filesystem mark.
        everything: bool,
    }

    impl Monitor for FakeMonitor {
        fn sees_everything(&self) -> bool {
            self.everything
        }
        fn add_watch(&mut self, rel: &[u8]) -> Result<(), MonitorError> {
            if self.refuse.contains(rel) {
                return Err(MonitorError::Watch {
                    path: path::display(rel),
                    source: std::io::Error::from_raw_os_error(libc::EACCES),
                });
            }
            let is_dir =
                std::fs::symlink_metadata(path::abs(&self.root, rel)).is_ok_and(|m| m.is_dir());
            if !is_dir {
                return Err(MonitorError::Gone {
                    path: path::display(rel),
                });
            }
            self.watched.insert(rel.to_vec());
            Ok(())
        }
        fn forget_subtree(&mut self, rel: &[u8]) {
            self.watched.retain(|p| !path::is_under(p, rel));
        }
        fn read_events(&mut self, _out: &mut Vec<RawEvent>) -> Result<(), MonitorError> {
            Ok(())
        }
        fn fd(&self) -> std::os::fd::RawFd {
            -1
        }
        fn watch_count(&self) -> usize {
            self.watched.len()
        }
        fn watched_under(&self, rel: &[u8]) -> Vec<Vec<u8>> {
            self.watched
                .iter()
                .filter(|p| path::is_under(p, rel))
                .cloned()
                .collect()
        }
        fn is_watched(&self, rel: &[u8]) -> bool {
            self.watched.contains(rel)
        }
    }

    fn ev(path: &str, kind: EventKind, is_dir: bool, cookie: u32) -> RawEvent {
        RawEvent {
            path: path.as_bytes().to_vec(),
            kind,
            is_dir,
            cookie,
        }
    }

    fn setup() -> (tempfile::TempDir, Tree, FakeMonitor) {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("canonical");
        let tree = Tree::new(root.clone(), Arc::new(Rules::allow_all()), 0);
        let mon = FakeMonitor {
            root,
            ..FakeMonitor::default()
        };
        (dir, tree, mon)
    }

    #[test]
    fn initial_walk_watches_every_directory() {
        let (dir, mut tree, mut mon) = setup();
        std::fs::create_dir_all(dir.path().join("a/b/c")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("d")).expect("mkdir");
        std::fs::write(dir.path().join("a/file"), b"x").expect("write");
        std::os::unix::fs::symlink("/", dir.path().join("link")).expect("symlink");
        let n = tree.watch_subtree(&mut mon, b"", true).expect("walk");
        assert_eq!(n, 5);
        let got: Vec<&[u8]> = mon.watched.iter().map(|p| p.as_slice()).collect();
        assert_eq!(got, vec![&b""[..], b"a", b"a/b", b"a/b/c", b"d"]);
    }

    /// The paths of the `Modified` changes in `out`, sorted.
    fn modified(out: &[Change]) -> Vec<String> {
        let mut v: Vec<String> = out
            .iter()
            .filter_map(|c| match c {
                Change::Modified { path, .. } => Some(String::from_utf8_lossy(path).into_owned()),
                _ => None,
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_change_to_a_hard_linked_file_queues_all_its_names() {
        let (dir, mut tree, mut mon) = setup();
        let p = dir.path();
        std::fs::create_dir(p.join("sub")).expect("mkdir");
        std::fs::write(p.join("a"), b"x").expect("write");
        std::fs::hard_link(p.join("a"), p.join("sub/b")).expect("link");
        std::fs::write(p.join("lone"), b"y").expect("write");
        tree.watch_subtree(&mut mon, b"", true).expect("walk");
        // Through either name, and for metadata changes too.
        for (name, kind) in [
            ("a", EventKind::Modified),
            ("sub/b", EventKind::Modified),
            ("sub/b", EventKind::Attrib),
        ] {
            let mut out = Vec::new();
            tree.process(&mut mon, &[ev(name, kind, false, 0)], &mut out)
                .expect("process");
            assert_eq!(modified(&out), ["a", "sub/b"], "event on {name}");
        }
        let mut out = Vec::new();
        tree.process(
            &mut mon,
            &[ev("lone", EventKind::Modified, false, 0)],
            &mut out,
        )
        .expect("process");
        assert_eq!(modified(&out), ["lone"]);

        // A link made at runtime: the new name's creation and the old name's
        // link-count change teach the tree both.
        std::fs::hard_link(p.join("lone"), p.join("c")).expect("link");
        let evs = [
            ev("c", EventKind::Created, false, 0),
            ev("lone", EventKind::Attrib, false, 0),
        ];
        tree.process(&mut mon, &evs, &mut Vec::new())
            .expect("process");
        let mut out = Vec::new();
        tree.process(
            &mut mon,
            &[ev("c", EventKind::Modified, false, 0)],
            &mut out,
        )
        .expect("process");
        assert_eq!(modified(&out), ["c", "lone"]);

        // Renamed names are followed; a removed or replaced name is dropped.
        std::fs::rename(p.join("sub"), p.join("moved")).expect("rename");
        tree.process(
            &mut mon,
            &[
                ev("sub", EventKind::MovedFrom, true, 9),
                ev("moved", EventKind::MovedTo, true, 9),
            ],
            &mut Vec::new(),
        )
        .expect("process");
        let mut out = Vec::new();
        tree.process(
            &mut mon,
            &[ev("a", EventKind::Modified, false, 0)],
            &mut out,
        )
        .expect("process");
        assert_eq!(modified(&out), ["a", "moved/b"]);
        std::fs::remove_file(p.join("moved/b")).expect("rm");
        std::fs::write(p.join("moved/b"), b"own").expect("write");
        let mut out = Vec::new();
        tree.process(
            &mut mon,
            &[ev("a", EventKind::Modified, false, 0)],
            &mut out,
        )
        .expect("process");
        assert_eq!(modified(&out), ["a"]);
        assert!(
            tree.links.names.len() <= 2,
            "only multi-link files are kept"
        );
        assert!(!tree.links.ids.contains_key(b"moved/b".as_slice()));
    }

    #[test]
    fn without_lstat_hard_links_are_not_tracked() {
        let (dir, mut tree, mut mon) = setup();
        std::fs::write(dir.path().join("a"), b"x").expect("write");
        std::fs::hard_link(dir.path().join("a"), dir.path().join("b")).expect("link");
        tree.track_links(false);
        tree.watch_subtree(&mut mon, b"", true).expect("walk");
        let mut out = Vec::new();
        tree.process(
            &mut mon,
            &[ev("a", EventKind::Modified, false, 0)],
            &mut out,
        )
        .expect("process");
        assert_eq!(modified(&out), ["a"]);
        assert!(tree.links.ids.is_empty());
    }

    #[test]
    fn the_destination_is_never_walked_or_watched_wherever_it_shows_up() {
        use std::os::unix::fs::MetadataExt;
        let (dir, mut tree, mut mon) = setup();
        std::fs::create_dir_all(dir.path().join("a/backup/deep")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("b")).expect("mkdir");
        let m = std::fs::metadata(dir.path().join("a/backup")).expect("stat");
        tree.never_enter((m.dev(), m.ino()));
        tree.watch_subtree(&mut mon, b"", true).expect("walk");
        let got: Vec<&[u8]> = mon.watched.iter().map(|p| p.as_slice()).collect();
        assert_eq!(got, vec![&b""[..], b"a", b"b"]);
        // Nor when it appears again, under another name.
        std::fs::rename(dir.path().join("a/backup"), dir.path().join("b/moved")).expect("mv");
        let mut out = Vec::new();
        tree.process(
            &mut mon,
            &[ev("b/moved", EventKind::MovedTo, true, 0)],
            &mut out,
        )
        .expect("process");
        assert!(!mon.watched.iter().any(|p| p.starts_with(b"b/moved")));
    }

    #[test]
    fn with_a_filesystem_mark_nothing_is_walked_and_events_are_filtered_by_the_rules() {
        use std::os::unix::fs::MetadataExt;
        let (dir, _, mut mon) = setup();
        for d in ["a/b", "skip/in", "dst/in"] {
            std::fs::create_dir_all(dir.path().join(d)).expect("mkdir");
        }
        let rules = Rules::parse(b"-d(^|/)skip$\n", "test").expect("rules");
        let mut tree = Tree::new(mon.root.clone(), Arc::new(rules), 0);
        let m = std::fs::metadata(dir.path().join("dst")).expect("stat");
        tree.never_enter((m.dev(), m.ino()));
        mon.everything = true;
        // Walked for the hard links, but nothing registered below the root.
        assert_eq!(tree.watch_subtree(&mut mon, b"", true).expect("walk"), 3);
        let got: Vec<&[u8]> = mon.watched.iter().map(|p| p.as_slice()).collect();
        assert_eq!(got, vec![&b""[..]], "only the root is registered");
        // Not walked at all (--skip-initialsync).
        tree.walk_at_start(false);
        assert_eq!(tree.watch_subtree(&mut mon, b"", true).expect("walk"), 1);
        let evs: Vec<RawEvent> = ["a/b/f", "a/g", "skip/f", "skip/in/f", "dst/f", "dst/in/f"]
            .iter()
            .map(|p| ev(p, EventKind::Modified, false, 0))
            .collect();
        let mut out = Vec::new();
        tree.process(&mut mon, &evs, &mut out).expect("process");
        assert_eq!(modified(&out), ["a/b/f", "a/g"]);
    }

    #[test]
    fn a_directory_that_cannot_be_watched_is_rescanned_until_it_can() {
        let (dir, mut tree, mut mon) = setup();
        std::fs::create_dir_all(dir.path().join("a/b")).expect("mkdir");
        mon.refuse.insert(b"a".to_vec());
        tree.watch_subtree(&mut mon, b"", true).expect("walk");
        let got: Vec<&[u8]> = mon.watched.iter().map(|p| p.as_slice()).collect();
        assert_eq!(got, vec![&b""[..], b"a/b"], "listed all the same");
        assert!(tree.has_unwatched());
        // The promised rescan: `a` is synced whole (a change below it was
        // not seen), and watching it is tried again.
        let mut out = Vec::new();
        tree.rescan_unwatched(&mut mon, &mut out);
        assert_eq!(
            out,
            vec![Change::Subtree {
                path: b"a".to_vec(),
                instant: true
            }]
        );
        assert!(tree.has_unwatched(), "still refused");
        mon.refuse.clear();
        out.clear();
        tree.rescan_unwatched(&mut mon, &mut out);
        assert_eq!(out.len(), 1);
        assert!(mon.is_watched(b"a"));
        assert!(!tree.has_unwatched());
    }

    #[test]
    fn new_directory_is_watched_listed_and_queued_whole() {
        let (dir, mut tree, mut mon) = setup();
        // The nested dir exists before the tree hears of its parent.
        std::fs::create_dir_all(dir.path().join("n/m")).expect("mkdir");
        let mut out = Vec::new();
        tree.process(&mut mon, &[ev("n", EventKind::Created, true, 0)], &mut out)
            .expect("process");
        assert!(
            mon.watched.contains(b"n/m".as_slice()),
            "nested dir watched"
        );
        assert!(out.contains(&Change::Subtree {
            path: b"n".to_vec(),
            instant: false
        }));
    }

    #[test]
    fn paired_move_is_one_move_and_unpaired_halves_are_delete_and_create() {
        let (_dir, mut tree, mut mon) = setup();
        let mut out = Vec::new();
        let evs = [
            ev("a", EventKind::MovedFrom, false, 7),
            ev("b", EventKind::MovedTo, false, 7),
            ev("c", EventKind::MovedFrom, false, 8),
            ev("d", EventKind::Created, false, 0),
        ];
        tree.process(&mut mon, &evs, &mut out).expect("process");
        assert_eq!(
            out,
            vec![
                Change::Moved {
                    from: b"a".to_vec(),
                    to: b"b".to_vec(),
                    is_dir: false
                },
                Change::Removed {
                    path: b"c".to_vec(),
                    is_dir: false
                },
                Change::Created {
                    path: b"d".to_vec(),
                    is_dir: false,
                    size: 0
                },
            ]
        );
        // Moved in from outside: it may replace an entry, so not "created".
        out.clear();
        tree.process(&mut mon, &[ev("m", EventKind::MovedTo, false, 3)], &mut out)
            .expect("process");
        assert_eq!(
            out,
            vec![Change::Modified {
                path: b"m".to_vec(),
                is_dir: false,
                size: 0
            }]
        );
        out.clear();
        tree.process(
            &mut mon,
            &[ev("e", EventKind::MovedFrom, false, 9)],
            &mut out,
        )
        .expect("process");
        assert!(tree.has_held() && out.is_empty());
        tree.flush_held(&mut mon, &mut out);
        assert_eq!(
            out,
            vec![Change::Removed {
                path: b"e".to_vec(),
                is_dir: false
            }]
        );
    }

    /// Regression: `mkdir d; mv d e` read in one go. The watch attempt for
    /// `d` finds it gone and the backend had nothing to re-label, so `e` must
    /// be watched when the move is processed, or every later change inside
    /// it is lost. The same holds for a directory that appeared inside a
    /// watched one just before that one was renamed (`e/sub` here).
    #[test]
    fn a_directory_renamed_right_after_creation_is_watched_at_its_new_name() {
        let (dir, mut tree, mut mon) = setup();
        std::fs::create_dir_all(dir.path().join("e/sub")).expect("mkdir");
        let mut out = Vec::new();
        let evs = [
            ev("d", EventKind::Created, true, 0),
            ev("d", EventKind::MovedFrom, true, 5),
            ev("e", EventKind::MovedTo, true, 5),
        ];
        tree.process(&mut mon, &evs, &mut out).expect("process");
        assert!(
            mon.watched.contains(b"e".as_slice()),
            "e watched: {:?}",
            mon.watched
        );
        assert!(mon.watched.contains(b"e/sub".as_slice()));
        assert!(!mon.watched.contains(b"d".as_slice()));
    }

    /// Regression (torture, seed 1 under load): `P/sub` moved in, then `P`
    /// renamed to `Q` before we got to watch `P/sub`. The backend re-labels
    /// `P` as `Q`, but `Q/sub` was never watched; the move must walk `Q`.
    #[test]
    fn a_renamed_directory_is_walked_again_for_unwatched_subdirectories() {
        let (dir, mut tree, mut mon) = setup();
        std::fs::create_dir_all(dir.path().join("Q/sub")).expect("mkdir");
        mon.watched.insert(b"Q".to_vec()); // as re-labelled by the backend
        let mut out = Vec::new();
        let evs = [
            ev("P", EventKind::MovedFrom, true, 6),
            ev("Q", EventKind::MovedTo, true, 6),
        ];
        tree.process(&mut mon, &evs, &mut out).expect("process");
        assert!(
            mon.watched.contains(b"Q/sub".as_slice()),
            "{:?}",
            mon.watched
        );
    }

    #[test]
    fn removed_directory_is_forgotten_and_recreated_one_is_watched_again() {
        let (dir, mut tree, mut mon) = setup();
        std::fs::create_dir_all(dir.path().join("g/h")).expect("mkdir");
        tree.watch_subtree(&mut mon, b"", true).expect("walk");
        let mut out = Vec::new();
        std::fs::remove_dir_all(dir.path().join("g")).expect("rm");
        tree.process(&mut mon, &[ev("g", EventKind::Removed, true, 0)], &mut out)
            .expect("process");
        assert!(
            !mon.watched.iter().any(|p| path::is_under(p, b"g")),
            "no ghost watches"
        );
        std::fs::create_dir_all(dir.path().join("g")).expect("mkdir");
        tree.process(&mut mon, &[ev("g", EventKind::Created, true, 0)], &mut out)
            .expect("process");
        assert!(mon.watched.contains(b"g".as_slice()));
    }

    #[test]
    fn overflow_rescans_and_drops_vanished_watches() {
        let (dir, mut tree, mut mon) = setup();
        std::fs::create_dir_all(dir.path().join("x")).expect("mkdir");
        tree.watch_subtree(&mut mon, b"", true).expect("walk");
        std::fs::remove_dir(dir.path().join("x")).expect("rmdir");
        std::fs::create_dir(dir.path().join("y")).expect("mkdir");
        let mut out = Vec::new();
        tree.process(&mut mon, &[ev("", EventKind::Rescan, true, 0)], &mut out)
            .expect("process");
        assert!(!mon.watched.contains(b"x".as_slice()));
        assert!(mon.watched.contains(b"y".as_slice()));
        assert_eq!(
            out,
            vec![Change::Subtree {
                path: Vec::new(),
                instant: true
            }]
        );
        assert_eq!(tree.stats.rescans, 1);
    }

    #[test]
    fn root_gone_is_an_error() {
        let (_dir, mut tree, mut mon) = setup();
        let mut out = Vec::new();
        let err = tree.process(&mut mon, &[ev("", EventKind::WatchGone, true, 0)], &mut out);
        assert!(matches!(err, Err(TreeError::RootGone(_))));
    }
}
