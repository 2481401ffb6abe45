//! The kqueue backend (`--monitor kqueue`, FreeBSD and macOS).
//!
//! kqueue reports on open files, not names: a directory's `NOTE_WRITE`
//! says only that some entry changed, a file's `NOTE_WRITE` that it was
//! written. So the backend holds one descriptor per watched directory and
//! per regular file in them, and turns a directory note into a listing
//! diff through the shared differ ([`super::snapshot`]), which names what
//! came, went or was renamed (by inode). That logic, [`KqCore`], is
//! platform independent and tested on any OS with a fake note source; only
//! the small `sys` part below talks to the kernel (through the `kqueue`
//! crate) and exists only where kqueue does.
//!
//! Descriptors are the budget: [`check_fd_budget`] refuses up front a tree
//! with more directories and files than the open-file limit allows, with an
//! error that says what to raise. Symlinks are never opened or followed.
//! This module decides nothing about which directories to watch.

use super::snapshot::{Id, Lister, Meta, Snapshots};
use super::{EventKind, Monitor, MonitorError, MonitorOptions, RawEvent};
use crate::path;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

/// Descriptors kept free for everything else the daemon opens.
pub const FD_RESERVE: u64 = 128;

/// The vnode notes of one kevent (a set: the kernel merges them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Notes {
    pub write: bool,
    pub extend: bool,
    pub attrib: bool,
    pub link: bool,
    pub delete: bool,
    pub rename: bool,
    pub revoke: bool,
}

/// The factory's entry point (`--monitor kqueue`).
pub fn open(root: &Path, opts: &MonitorOptions) -> Result<Box<dyn Monitor>, MonitorError> {
    sys::open(root, opts)
}

fn is_file(m: &Meta) -> bool {
    m.mode & super::snapshot::S_IFMT == super::snapshot::S_IFREG
}

/// Counts the directories and regular files below `root` (lstat, no
/// symlink followed), stopping once they exceed what `limit` open files
/// leave after [`FD_RESERVE`]; an error when they do.
pub fn check_fd_budget(root: &Path, limit: u64) -> Result<(), MonitorError> {
    let budget = limit.saturating_sub(FD_RESERVE);
    let mut need: u64 = 1;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                stack.push(e.path());
            } else if !t.is_file() {
                continue;
            }
            need += 1;
            if need > budget {
                return Err(MonitorError::FdBudget {
                    path: path::display_os(root),
                    need,
                    limit,
                });
            }
        }
    }
    Ok(())
}

/// What the backend knows, without the kernel: the snapshots of the watched
/// directories, from which follow the descriptors it should hold.
#[derive(Default)]
pub struct KqCore {
    snaps: Snapshots,
}

impl KqCore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn watch_dir(&mut self, rel: &[u8], lister: &mut dyn Lister) -> bool {
        self.snaps.watch(rel, lister)
    }

    pub fn forget_subtree(&mut self, rel: &[u8]) {
        self.snaps.forget_subtree(rel);
    }

    pub fn snapshots(&self) -> &Snapshots {
        &self.snaps
    }

    /// See [`Monitor::syncing`]. The check runs with the next directory
    /// note (kqueue has no scan of its own).
    pub fn syncing(&mut self, batch: &crate::batch::Batch) {
        self.snaps.syncing(&super::batch_paths(batch));
    }

    pub fn synced(&mut self) {
        self.snaps.synced();
    }

    /// Everything that should have a descriptor: the watched directories and
    /// the regular files in them, by identity.
    pub fn wanted(&self) -> HashMap<Id, Vec<u8>> {
        let mut all = self.snaps.entry_ids(is_file);
        all.extend(self.snaps.dir_ids());
        all
    }

    /// Turns the notes of one read into events: directory notes become a
    /// listing diff of the directories concerned (all in one, so a rename
    /// between two of them is paired); file notes become modified or
    /// attributes, under the names the diff leaves them.
    pub fn handle(
        &mut self,
        notes: &[(Id, Notes)],
        lister: &mut dyn Lister,
        out: &mut Vec<RawEvent>,
    ) {
        let dirs = self.snaps.dir_ids();
        let files = self.snaps.entry_ids(is_file);
        let mut check: BTreeSet<Vec<u8>> = BTreeSet::new();
        let mut dir_attrib: Vec<Id> = Vec::new();
        let mut file_notes: Vec<(Id, EventKind)> = Vec::new();
        for (id, n) in notes {
            if let Some(d) = dirs.get(id) {
                if n.write || n.extend || n.link {
                    check.insert(d.clone());
                }
                if n.delete || n.rename || n.revoke {
                    // The listing of its parent says where it went; its own
                    // says it is gone (or, for the root, that we are done).
                    check.insert(d.clone());
                    if !d.is_empty() {
                        check.insert(path::parent(d).to_vec());
                    }
                }
                if n.attrib && !d.is_empty() {
                    dir_attrib.push(*id);
                }
            } else if let Some(f) = files.get(id) {
                if n.write || n.extend {
                    file_notes.push((*id, EventKind::Modified));
                } else if n.attrib || n.link {
                    file_notes.push((*id, EventKind::Attrib));
                }
                if n.delete || n.rename || n.link {
                    check.insert(path::parent(f).to_vec());
                }
            }
        }
        self.snaps.rescan(check, lister, out);
        // Names after the diff: a file written and then renamed is reported
        // under its new name.
        let dirs = self.snaps.dir_ids();
        let files = self.snaps.entry_ids(is_file);
        for id in dir_attrib {
            if let Some(d) = dirs.get(&id) {
                out.push(RawEvent {
                    path: d.clone(),
                    kind: EventKind::Attrib,
                    is_dir: true,
                    cookie: 0,
                });
            }
        }
        for (id, kind) in file_notes {
            if let Some(f) = files.get(&id) {
                out.push(RawEvent {
                    path: f.clone(),
                    kind,
                    is_dir: false,
                    cookie: 0,
                });
            }
        }
    }
}

/// Where there is no kqueue: the backend cannot start.
#[cfg(not(any(
    target_os = "freebsd",
    target_os = "macos",
    target_os = "openbsd",
    target_os = "netbsd",
    target_os = "dragonfly"
)))]
mod sys {
    use super::{Monitor, MonitorError, MonitorOptions, Path};

    pub fn open(_: &Path, _: &MonitorOptions) -> Result<Box<dyn Monitor>, MonitorError> {
        Err(MonitorError::Unavailable {
            backend: "kqueue",
            reason: format!(
                "{} has no kqueue; use --monitor {} or --monitor poll",
                std::env::consts::OS,
                super::super::MonitorKind::platform_default().name()
            ),
        })
    }
}

/// The kernel side: one kqueue, one descriptor per directory and file.
#[cfg(any(
    target_os = "freebsd",
    target_os = "macos",
    target_os = "openbsd",
    target_os = "netbsd",
    target_os = "dragonfly"
))]
mod sys {
    use super::super::snapshot::{FsLister, Id};
    use super::{check_fd_budget, KqCore, Notes, FD_RESERVE};
    use super::{Monitor, MonitorError, MonitorOptions, Path, RawEvent};
    use crate::path;
    use kqueue::{EventData, EventFilter, FilterFlag, Ident, Vnode, Watcher};
    use std::collections::HashMap;
    use std::fs::File;
    use std::os::fd::{AsRawFd, RawFd};
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    use std::path::PathBuf;

    pub fn open(root: &Path, _: &MonitorOptions) -> Result<Box<dyn Monitor>, MonitorError> {
        Ok(Box::new(KqueueMonitor::new(root)?))
    }

    pub struct KqueueMonitor {
        root: PathBuf,
        core: KqCore,
        kq: Watcher,
        open: HashMap<Id, File>,
        by_fd: HashMap<RawFd, Id>,
        limit: u64,
        budget_warned: bool,
        /// Watches changed since the descriptors were last matched to them
        /// (done once per read, not once per directory: a start over a big
        /// tree adds thousands).
        dirty: bool,
    }

    fn open_files_limit() -> u64 {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit only writes the struct we pass.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
            // rlim_t is i64 on FreeBSD, u64 on macOS.
            #[allow(clippy::unnecessary_cast)]
            let n = lim.rlim_cur as u64;
            n
        } else {
            1024
        }
    }

    fn flags() -> FilterFlag {
        FilterFlag::NOTE_WRITE
            | FilterFlag::NOTE_EXTEND
            | FilterFlag::NOTE_ATTRIB
            | FilterFlag::NOTE_LINK
            | FilterFlag::NOTE_DELETE
            | FilterFlag::NOTE_RENAME
            | FilterFlag::NOTE_REVOKE
    }

    impl KqueueMonitor {
        pub fn new(root: &Path) -> Result<Self, MonitorError> {
            let limit = open_files_limit();
            check_fd_budget(root, limit)?;
            let kq = Watcher::new().map_err(|e| MonitorError::Unavailable {
                backend: "kqueue",
                reason: e.to_string(),
            })?;
            Ok(KqueueMonitor {
                root: root.to_path_buf(),
                core: KqCore::new(),
                kq,
                open: HashMap::new(),
                by_fd: HashMap::new(),
                limit,
                budget_warned: false,
                dirty: false,
            })
        }

        /// Holds a descriptor for exactly what the core wants.
        fn reconcile(&mut self) {
            let wanted = self.core.wanted();
            let stale: Vec<Id> = self
                .open
                .keys()
                .filter(|id| !wanted.contains_key(id))
                .copied()
                .collect();
            for id in stale {
                if let Some(f) = self.open.remove(&id) {
                    let _ = self.kq.remove_fd(f.as_raw_fd(), EventFilter::EVFILT_VNODE);
                    self.by_fd.remove(&f.as_raw_fd());
                }
            }
            let mut added = false;
            for (id, rel) in wanted {
                if self.open.contains_key(&id) {
                    continue;
                }
                if self.open.len() as u64 + FD_RESERVE >= self.limit {
                    if !self.budget_warned {
                        log::error!(
                            "{}",
                            MonitorError::FdBudget {
                                path: path::display_os(&path::abs(&self.root, &rel)),
                                need: self.open.len() as u64 + FD_RESERVE + 1,
                                limit: self.limit,
                            }
                        );
                        self.budget_warned = true;
                    }
                    break;
                }
                let abs = path::abs(&self.root, &rel);
                let Ok(f) = std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                    .open(&abs)
                else {
                    continue;
                };
                // Replaced since it was listed: the next diff tells.
                if !f.metadata().is_ok_and(|m| (m.dev(), m.ino()) == id) {
                    continue;
                }
                if self
                    .kq
                    .add_fd(f.as_raw_fd(), EventFilter::EVFILT_VNODE, flags())
                    .is_ok()
                {
                    self.by_fd.insert(f.as_raw_fd(), id);
                    self.open.insert(id, f);
                    added = true;
                }
            }
            if added {
                if let Err(e) = self.kq.watch() {
                    log::error!("kqueue: cannot register descriptors: {e}");
                }
            }
        }
    }

    impl Monitor for KqueueMonitor {
        fn add_watch(&mut self, rel: &[u8]) -> Result<(), MonitorError> {
            if !self.core.watch_dir(rel, &mut FsLister(&self.root)) {
                return Err(MonitorError::Gone {
                    path: path::display_os(&path::abs(&self.root, rel)),
                });
            }
            self.dirty = true;
            Ok(())
        }

        fn forget_subtree(&mut self, rel: &[u8]) {
            self.core.forget_subtree(rel);
            self.dirty = true;
        }

        fn read_events(&mut self, out: &mut Vec<RawEvent>) -> Result<(), MonitorError> {
            if std::mem::take(&mut self.dirty) {
                self.reconcile();
            }
            let mut notes: Vec<(Id, Notes)> = Vec::new();
            while let Some(ev) = self.kq.poll(None) {
                let fd = match ev.ident {
                    Ident::Fd(fd) | Ident::Filename(fd, _) => fd,
                    _ => continue,
                };
                let Some(id) = self.by_fd.get(&fd).copied() else {
                    continue;
                };
                let mut n = Notes::default();
                match ev.data {
                    EventData::Vnode(Vnode::Write) => n.write = true,
                    EventData::Vnode(Vnode::Extend | Vnode::Truncate) => n.extend = true,
                    EventData::Vnode(Vnode::Attrib) => n.attrib = true,
                    EventData::Vnode(Vnode::Link) => n.link = true,
                    EventData::Vnode(Vnode::Delete) => n.delete = true,
                    EventData::Vnode(Vnode::Rename) => n.rename = true,
                    EventData::Vnode(Vnode::Revoke) => n.revoke = true,
                    _ => continue,
                }
                notes.push((id, n));
            }
            if !notes.is_empty() {
                self.core.handle(&notes, &mut FsLister(&self.root), out);
                self.reconcile();
            }
            Ok(())
        }

        fn fd(&self) -> RawFd {
            self.kq.as_raw_fd()
        }

        fn watch_count(&self) -> usize {
            self.core.snapshots().len()
        }

        fn watched_under(&self, rel: &[u8]) -> Vec<Vec<u8>> {
            self.core.snapshots().under(rel)
        }

        fn is_watched(&self, rel: &[u8]) -> bool {
            self.core.snapshots().contains(rel)
        }

        fn next_deadline(&self) -> Option<std::time::Instant> {
            // New watches get their descriptors at the next read: now.
            self.dirty.then(std::time::Instant::now)
        }

        fn syncing(&mut self, batch: &crate::batch::Batch) {
            self.core.syncing(batch);
        }

        fn synced(&mut self) {
            self.core.synced();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::snapshot::{FsLister, Meta};
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// The fake event source: what a kqueue would report for the descriptors
    /// the core wants, computed from lstat before and after a change.
    fn id_of(root: &Path, rel: &str) -> Id {
        let m = std::fs::symlink_metadata(root.join(rel)).expect("lstat");
        (m.dev(), m.ino())
    }

    fn note(f: impl FnOnce(&mut Notes)) -> Notes {
        let mut n = Notes::default();
        f(&mut n);
        n
    }

    fn setup() -> (tempfile::TempDir, std::path::PathBuf, KqCore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("canonical");
        std::fs::create_dir_all(root.join("a/b")).expect("mkdir");
        std::fs::write(root.join("a/f"), b"1").expect("write");
        let mut core = KqCore::new();
        for d in [&b""[..], b"a", b"a/b"] {
            assert!(core.watch_dir(d, &mut FsLister(&root)));
        }
        (dir, root, core)
    }

    #[test]
    fn the_core_wants_a_descriptor_for_each_dir_and_regular_file_only() {
        let (_d, root, core) = setup();
        std::os::unix::fs::symlink("f", root.join("a/l")).expect("symlink");
        let wanted = core.wanted();
        let mut names: Vec<&Vec<u8>> = wanted.values().collect();
        names.sort();
        assert_eq!(
            names,
            vec![
                &b"".to_vec(),
                &b"a".to_vec(),
                &b"a/b".to_vec(),
                &b"a/f".to_vec()
            ]
        );
        assert_eq!(wanted.get(&id_of(&root, "a/f")), Some(&b"a/f".to_vec()));
    }

    #[test]
    fn a_dir_write_note_becomes_a_listing_diff_and_file_notes_follow_renames() {
        let (_d, root, mut core) = setup();
        let f = id_of(&root, "a/f");
        std::fs::write(root.join("a/f"), b"longer").expect("write");
        std::fs::rename(root.join("a/f"), root.join("a/b/g")).expect("mv");
        std::fs::write(root.join("a/new"), b"").expect("write");
        let notes = [
            (f, note(|n| n.write = true)),
            (f, note(|n| n.rename = true)),
            (id_of(&root, "a"), note(|n| n.write = true)),
            (id_of(&root, "a/b"), note(|n| n.write = true)),
        ];
        let mut out = Vec::new();
        core.handle(&notes, &mut FsLister(&root), &mut out);
        let kinds: Vec<(EventKind, &[u8])> =
            out.iter().map(|e| (e.kind, e.path.as_slice())).collect();
        assert!(kinds.contains(&(EventKind::Created, b"a/new")), "{kinds:?}");
        let from = kinds
            .iter()
            .position(|k| *k == (EventKind::MovedFrom, &b"a/f"[..]))
            .expect("from");
        assert_eq!(kinds[from + 1], (EventKind::MovedTo, &b"a/b/g"[..]));
        // The write is reported under the name the file has now.
        assert!(
            kinds.contains(&(EventKind::Modified, b"a/b/g")),
            "{kinds:?}"
        );
        assert!(!kinds.contains(&(EventKind::Modified, b"a/f")), "{kinds:?}");
        assert!(core.wanted().values().any(|p| p == b"a/b/g"));
    }

    #[test]
    fn a_renamed_dir_is_relabelled_and_the_root_going_is_reported() {
        let (_d, root, mut core) = setup();
        let a = id_of(&root, "a");
        std::fs::rename(root.join("a"), root.join("z")).expect("mv");
        let notes = [
            (a, note(|n| n.rename = true)),
            (id_of(&root, ""), note(|n| n.write = true)),
        ];
        let mut out = Vec::new();
        core.handle(&notes, &mut FsLister(&root), &mut out);
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(
            (out[0].kind, out[0].path.as_slice(), out[0].is_dir),
            (EventKind::MovedFrom, &b"a"[..], true)
        );
        assert_eq!(
            (out[1].kind, out[1].path.as_slice()),
            (EventKind::MovedTo, &b"z"[..])
        );
        assert_eq!(
            core.snapshots().under(b"z"),
            vec![b"z".to_vec(), b"z/b".to_vec()]
        );
        assert!(core.snapshots().under(b"a").is_empty());

        let root_id = id_of(&root, "");
        std::fs::remove_dir_all(&root).expect("rm");
        let mut out = Vec::new();
        core.handle(
            &[(root_id, note(|n| n.delete = true))],
            &mut FsLister(&root),
            &mut out,
        );
        assert!(
            out.iter()
                .any(|e| e.kind == EventKind::WatchGone && e.path.is_empty()),
            "{out:?}"
        );
    }

    #[test]
    fn attribute_notes_name_the_entry_and_unknown_descriptors_are_ignored() {
        let (_d, root, mut core) = setup();
        let mut out = Vec::new();
        let notes = [
            (id_of(&root, "a/b"), note(|n| n.attrib = true)),
            (id_of(&root, "a/f"), note(|n| n.attrib = true)),
            ((u64::MAX, 1), note(|n| n.write = true)),
        ];
        core.handle(&notes, &mut FsLister(&root), &mut out);
        let got: Vec<(EventKind, &[u8], bool)> = out
            .iter()
            .map(|e| (e.kind, e.path.as_slice(), e.is_dir))
            .collect();
        assert_eq!(
            got,
            vec![
                (EventKind::Attrib, &b"a/b"[..], true),
                (EventKind::Attrib, &b"a/f"[..], false)
            ]
        );
        let _ = Meta::from_metadata;
    }

    #[test]
    fn the_fd_budget_is_checked_up_front_with_a_clear_error() {
        let (_d, root, _core) = setup();
        for i in 0..5 {
            std::fs::write(root.join(format!("x{i}")), b"").expect("write");
        }
        // root + a + a/b + a/f + x0..x4 = 9 descriptors.
        assert!(check_fd_budget(&root, FD_RESERVE + 9).is_ok());
        let err = check_fd_budget(&root, FD_RESERVE + 8)
            .expect_err("over budget")
            .to_string();
        assert!(
            err.contains("open-file limit") && err.contains("--monitor poll"),
            "{err}"
        );
    }
}
