//! The inotify backend (Linux).
//!
//! Owns one inotify instance and the two-way map between its watch
//! descriptors and directory paths relative to the watch root: the
//! directories are [`Nodes`] (parent and name each, one arena of names, no
//! full path stored), and a watch descriptor maps to its node; the path of
//! an event is rebuilt from the names. It turns the
//! kernel's records into [`RawEvent`]s and keeps that map right on its own
//! when a watched directory is renamed inside the tree (a paired
//! `IN_MOVED_FROM`/`IN_MOVED_TO` for a directory re-labels the whole
//! subtree *before* any later record is translated, so events that follow a
//! rename in the same read already carry the new path). It decides nothing
//! about which directories to watch: that is the tree's job.
//!
//! Watches are added with `IN_DONT_FOLLOW | IN_ONLYDIR`, so a symlink in the
//! tree is never followed to a directory outside it. A directory deeper
//! than `PATH_MAX` is watched through `/proc/self/fd/N` of a descriptor
//! reached one component at a time without following links (`deep.rs`).

use super::{EventKind, Monitor, MonitorError, RawEvent};
use crate::path;
use crate::tree::nodes::{self, Nodes};
use inotify::{EventMask, Inotify, WatchMask};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// How many bytes one read may take from the kernel queue.
const READ_BUFFER: usize = 256 * 1024;
/// Moves whose `IN_MOVED_FROM` we have seen but whose `IN_MOVED_TO` has not
/// come yet; old entries are dropped so a move out of the tree cannot grow
/// this without bound.
const MAX_PENDING_DIR_MOVES: usize = 1024;

pub struct InotifyMonitor {
    root: PathBuf,
    inotify: Inotify,
    /// The watched directories; a node's value is its watch descriptor.
    dirs: Nodes,
    /// Watch descriptor → node (always the node whose value it is).
    by_wd: HashMap<i32, nodes::Id>,
    /// cookie → source path of a directory whose move is half seen.
    dir_moves: Vec<(u32, Vec<u8>)>,
    buf: Vec<u8>,
}

fn mask() -> WatchMask {
    WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::MODIFY
        | WatchMask::CLOSE_WRITE
        | WatchMask::ATTRIB
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF
        | WatchMask::DONT_FOLLOW
        | WatchMask::ONLYDIR
        | WatchMask::EXCL_UNLINK
}

fn read_sysctl(name: &str) -> String {
    std::fs::read_to_string(format!("/proc/sys/fs/inotify/{name}"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}

/// The factory's entry point (`--monitor inotify`).
pub fn open(root: &Path, _: &super::MonitorOptions) -> Result<Box<dyn Monitor>, MonitorError> {
    Ok(Box::new(InotifyMonitor::new(root)?))
}

impl InotifyMonitor {
    /// Starts an inotify instance for the tree at `root` (absolute). No
    /// directory is watched until [`Monitor::add_watch`] is called.
    pub fn new(root: &Path) -> Result<Self, MonitorError> {
        let inotify = Inotify::init().map_err(|e| match e.raw_os_error() {
            Some(libc::EMFILE) | Some(libc::ENFILE) => MonitorError::InstanceLimit { source: e },
            _ => MonitorError::Watch {
                path: path::display_os(root),
                source: e,
            },
        })?;
        Ok(InotifyMonitor {
            root: root.to_path_buf(),
            inotify,
            dirs: Nodes::new(),
            by_wd: HashMap::new(),
            dir_moves: Vec::new(),
            buf: vec![0; READ_BUFFER],
        })
    }

    /// Every watched path at or below `rel`, sorted.
    fn subtree_keys(&self, rel: &[u8]) -> Vec<Vec<u8>> {
        let Some(id) = self.dirs.lookup(rel) else {
            return Vec::new();
        };
        let mut keys: Vec<Vec<u8>> = self
            .dirs
            .subtree(id)
            .into_iter()
            .filter(|&k| self.dirs.val(k) != nodes::NONE)
            .map(|k| self.dirs.path(k))
            .collect();
        keys.sort();
        keys
    }

    /// Re-labels `from` and everything below it as `to`.
    fn relabel(&mut self, from: &[u8], to: &[u8]) {
        if from == to {
            return;
        }
        // Whatever was watched at the target name is gone now (replaced).
        for k in self.subtree_keys(to) {
            if !path::is_under(&k, from) {
                self.drop_path(&k, false);
            }
        }
        let Some(id) = self.dirs.lookup(from) else {
            return;
        };
        // The usual case: one node changes parent and name.
        if id != 0
            && !path::is_under(to, from)
            && !path::is_under(from, to)
            && self.dirs.lookup(to).is_none()
        {
            let (parent, name) = match to.iter().rposition(|b| *b == b'/') {
                Some(i) => (&to[..i], &to[i + 1..]),
                None => (&b""[..], to),
            };
            if let Ok(p) = self.dirs.ensure(parent) {
                if self.dirs.move_to(id, p, name).is_ok() {
                    return;
                }
                self.dirs.clear(p);
            }
        }
        // Otherwise watch by watch.
        let moved: Vec<(Vec<u8>, i32)> = self
            .dirs
            .subtree(id)
            .into_iter()
            .filter(|&k| self.dirs.val(k) != nodes::NONE)
            .map(|k| (self.dirs.path(k), self.dirs.val(k)))
            .collect();
        for (k, _) in &moved {
            self.drop_path(k, false);
        }
        for (k, wd) in moved {
            self.put(&path::rebase(&k, from, to), wd);
        }
    }

    /// Records `wd` as the watch of `rel` (replacing any other there).
    fn put(&mut self, rel: &[u8], wd: i32) {
        let Ok(id) = self.dirs.ensure(rel) else {
            // Out of room for names: forget the watch rather than misfile it.
            log::error!(
                "cannot record the watch of {}: too many directory names; restart livesync",
                path::display(rel)
            );
            self.rm_watch(wd);
            return;
        };
        let prev = self.dirs.val(id);
        if prev != nodes::NONE && prev != wd {
            // A stale watch of a directory that was replaced at this path.
            self.by_wd.remove(&prev);
        }
        self.dirs.set_val(id, wd);
        self.by_wd.insert(wd, id);
    }

    fn rm_watch(&self, wd: i32) {
        // SAFETY: removing a watch by number from our own inotify fd; EINVAL
        // means the kernel already dropped it (the dir is gone).
        let _ = unsafe { libc::inotify_rm_watch(self.inotify.as_raw_fd(), wd) };
    }

    /// Forgets one path; with `rm`, also tells the kernel.
    fn drop_path(&mut self, rel: &[u8], rm: bool) {
        let Some(id) = self.dirs.lookup(rel) else {
            return;
        };
        let wd = self.dirs.val(id);
        if wd == nodes::NONE {
            return;
        }
        self.by_wd.remove(&wd);
        self.dirs.clear(id);
        if rm {
            self.rm_watch(wd);
        }
    }

    fn translate(
        &mut self,
        wd: i32,
        mask: EventMask,
        cookie: u32,
        name: Option<&OsStr>,
        out: &mut Vec<RawEvent>,
    ) {
        if mask.contains(EventMask::Q_OVERFLOW) {
            log::warn!(
                "inotify's event queue overflowed (fs.inotify.max_queued_events = {}); raise it to make this rarer",
                read_sysctl("max_queued_events")
            );
            out.push(RawEvent {
                path: Vec::new(),
                kind: EventKind::Rescan,
                is_dir: true,
                cookie: 0,
            });
            return;
        }
        let Some(&node) = self.by_wd.get(&wd) else {
            // A watch we already forgot (its IN_IGNORED, or late events of a
            // directory moved out of the tree).
            return;
        };
        let is_dir = mask.contains(EventMask::ISDIR);
        if mask.contains(EventMask::IGNORED) {
            // The kernel removed this watch: the dir was deleted or its
            // filesystem unmounted. (A path re-created and re-watched has
            // another descriptor, and its node keeps that one.)
            self.by_wd.remove(&wd);
            if self.dirs.val(node) == wd {
                self.dirs.clear(node);
            }
            return;
        }
        let dir = &self.dirs.path(node);
        if mask.intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF | EventMask::UNMOUNT) {
            if dir.is_empty() || mask.contains(EventMask::UNMOUNT) {
                out.push(RawEvent {
                    path: dir.clone(),
                    kind: EventKind::WatchGone,
                    is_dir: true,
                    cookie: 0,
                });
            }
            // Otherwise the parent's IN_DELETE / IN_MOVED_FROM tells the story.
            return;
        }
        let Some(name) = name else { return };
        let full = path::join(dir, name.as_bytes());
        let kind = if mask.contains(EventMask::MOVED_FROM) {
            if is_dir {
                if self.dir_moves.len() >= MAX_PENDING_DIR_MOVES {
                    self.dir_moves.remove(0);
                }
                self.dir_moves.push((cookie, full.clone()));
            }
            EventKind::MovedFrom
        } else if mask.contains(EventMask::MOVED_TO) {
            if is_dir {
                if let Some(i) = self.dir_moves.iter().position(|(c, _)| *c == cookie) {
                    let (_, from) = self.dir_moves.remove(i);
                    self.relabel(&from, &full);
                }
            }
            EventKind::MovedTo
        } else if mask.contains(EventMask::CREATE) {
            EventKind::Created
        } else if mask.contains(EventMask::DELETE) {
            EventKind::Removed
        } else if mask.intersects(EventMask::MODIFY | EventMask::CLOSE_WRITE) {
            EventKind::Modified
        } else if mask.contains(EventMask::ATTRIB) {
            EventKind::Attrib
        } else {
            return;
        };
        out.push(RawEvent {
            path: full,
            kind,
            is_dir,
            cookie,
        });
    }
}

impl Monitor for InotifyMonitor {
    fn add_watch(&mut self, rel: &[u8]) -> Result<(), MonitorError> {
        let abs = path::abs(&self.root, rel);
        // Deeper than PATH_MAX: watched through a descriptor reached
        // without following links (see deep.rs), whose /proc link must
        // itself be followed.
        let added = super::deep::dir_path(&self.root, rel).and_then(|p| {
            let m = if p.via_descriptor() {
                mask() & !WatchMask::DONT_FOLLOW
            } else {
                mask()
            };
            self.inotify.watches().add(p.path(), m)
        });
        let wd = match added {
            Ok(wd) => wd,
            Err(e) => {
                return Err(match e.raw_os_error() {
                    Some(libc::ENOSPC) => MonitorError::WatchLimit {
                        path: path::display_os(&abs),
                        limit: read_sysctl("max_user_watches"),
                    },
                    Some(libc::ENOENT) | Some(libc::ENOTDIR) | Some(libc::ELOOP) => {
                        MonitorError::Gone {
                            path: path::display_os(&abs),
                        }
                    }
                    _ => MonitorError::Watch {
                        path: path::display_os(&abs),
                        source: e,
                    },
                })
            }
        };
        let id = wd.get_watch_descriptor_id();
        if let Some(&node) = self.by_wd.get(&id) {
            let old = self.dirs.path(node);
            if old != rel {
                // The same directory was watched under another name: a move we
                // could not pair. Its subtree follows it.
                self.relabel(&old, rel);
            }
        }
        self.put(rel, id);
        Ok(())
    }

    fn forget_subtree(&mut self, rel: &[u8]) {
        let Some(id) = self.dirs.lookup(rel) else {
            return;
        };
        for wd in self.dirs.remove_subtree(id) {
            self.by_wd.remove(&wd);
            self.rm_watch(wd);
        }
    }

    fn read_events(&mut self, out: &mut Vec<RawEvent>) -> Result<(), MonitorError> {
        loop {
            let mut buf = std::mem::take(&mut self.buf);
            let records: Vec<(i32, EventMask, u32, Option<std::ffi::OsString>)> =
                match self.inotify.read_events(&mut buf) {
                    Ok(events) => events
                        .map(|e| {
                            (
                                e.wd.get_watch_descriptor_id(),
                                e.mask,
                                e.cookie,
                                e.name.map(|n| n.to_os_string()),
                            )
                        })
                        .collect(),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.buf = buf;
                        return Ok(());
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                        self.buf = buf;
                        continue;
                    }
                    Err(e) => {
                        self.buf = buf;
                        return Err(MonitorError::Read(e));
                    }
                };
            self.buf = buf;
            for (wd, mask, cookie, name) in records {
                self.translate(wd, mask, cookie, name.as_deref(), out);
            }
            // Hand back what we have so the caller can act on it (and add
            // watches for new dirs promptly); it calls us again while the fd
            // stays readable.
            if out.len() >= 4096 {
                return Ok(());
            }
        }
    }

    fn fd(&self) -> RawFd {
        self.inotify.as_raw_fd()
    }

    fn watch_count(&self) -> usize {
        self.by_wd.len()
    }

    fn watched_under(&self, rel: &[u8]) -> Vec<Vec<u8>> {
        self.subtree_keys(rel)
    }

    fn is_watched(&self, rel: &[u8]) -> bool {
        self.dirs
            .lookup(rel)
            .is_some_and(|id| self.dirs.val(id) != nodes::NONE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::testutil::*;
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    /// The test binary's allocator: counts, per thread, the heap memory held
    /// as glibc's malloc charges it (size plus an 8-byte header, in 16-byte
    /// steps, at least 32).
    struct Counting;

    thread_local! {
        static HELD: Cell<isize> = const { Cell::new(0) };
    }

    fn charge(size: usize) -> isize {
        ((size + 8).div_ceil(16) * 16).max(32) as isize
    }

    fn count(delta: isize) {
        let _ = HELD.try_with(|h| h.set(h.get() + delta));
    }

    // SAFETY: every call is passed on to the system allocator unchanged.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            count(charge(l.size()));
            // SAFETY: the caller's contract, passed on.
            unsafe { System.alloc(l) }
        }
        unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
            count(-charge(l.size()));
            // SAFETY: as above.
            unsafe { System.dealloc(p, l) }
        }
        unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
            count(charge(new) - charge(l.size()));
            // SAFETY: as above.
            unsafe { System.realloc(p, l, new) }
        }
    }

    #[global_allocator]
    static ALLOC: Counting = Counting;

    /// The target: at most 100 bytes of heap per watched directory
    /// (clsync needs about 104), whatever the paths' length.
    #[test]
    fn a_watched_directory_costs_under_100_bytes_of_heap() {
        let (dir, mut mon) = setup();
        let mut rels = Vec::new();
        for i in 0..70 {
            for j in 0..70 {
                let rel = format!("t{i:04}/d{j:04}");
                std::fs::create_dir_all(dir.path().join(&rel)).expect("mkdir");
                rels.push(rel);
            }
        }
        let before = HELD.with(|h| h.get());
        mon.add_watch(b"").expect("watch root");
        for i in 0..70 {
            mon.add_watch(format!("t{i:04}").as_bytes()).expect("watch");
        }
        for rel in &rels {
            mon.add_watch(rel.as_bytes()).expect("watch");
        }
        let held = HELD.with(|h| h.get()) - before;
        let n = mon.watch_count() as isize;
        assert_eq!(n, 1 + 70 + 70 * 70);
        assert!(held / n <= 100, "{} bytes per watched directory", held / n);
        // And every one still answers to its path.
        assert!(rels.iter().all(|r| mon.is_watched(r.as_bytes())));
    }

    fn setup() -> (tempfile::TempDir, InotifyMonitor) {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("canonical");
        let mon = InotifyMonitor::new(&root).expect("inotify");
        (dir, mon)
    }

    #[test]
    fn events_carry_paths_relative_to_the_root() {
        let (dir, mut mon) = setup();
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        mon.add_watch(b"").expect("watch root");
        mon.add_watch(b"sub").expect("watch sub");
        std::fs::write(dir.path().join("sub/f"), b"x").expect("write");
        std::fs::remove_file(dir.path().join("sub/f")).expect("rm");
        let evs = collect_until(&mut mon, |e| has(e, "sub/f", EventKind::Removed));
        assert!(has(&evs, "sub/f", EventKind::Created));
        assert!(has(&evs, "sub/f", EventKind::Modified));
    }

    #[test]
    fn a_renamed_directory_reports_later_events_under_its_new_name() {
        let (dir, mut mon) = setup();
        std::fs::create_dir_all(dir.path().join("a/deep")).expect("mkdir");
        for p in [&b""[..], b"a", b"a/deep"] {
            mon.add_watch(p).expect("watch");
        }
        std::fs::rename(dir.path().join("a"), dir.path().join("b")).expect("rename");
        // Written right after the rename: the record sits behind the move in
        // the same kernel queue and must already say `b/...`.
        std::fs::write(dir.path().join("b/deep/f"), b"x").expect("write");
        let evs = collect_until(&mut mon, |e| has(e, "b/deep/f", EventKind::Created));
        let from = evs
            .iter()
            .find(|e| e.kind == EventKind::MovedFrom)
            .expect("moved from");
        let to = evs
            .iter()
            .find(|e| e.kind == EventKind::MovedTo)
            .expect("moved to");
        assert_eq!(
            (from.path.as_slice(), to.path.as_slice()),
            (&b"a"[..], &b"b"[..])
        );
        assert_eq!(from.cookie, to.cookie);
        assert!(
            !evs.iter().any(|e| e.path.starts_with(b"a/")),
            "stale path: {evs:?}"
        );
        assert_eq!(
            mon.watched_under(b"b"),
            vec![b"b".to_vec(), b"b/deep".to_vec()]
        );
        assert!(mon.watched_under(b"a").is_empty());
    }

    #[test]
    fn forgotten_and_deleted_directories_leave_no_ghosts() {
        let (dir, mut mon) = setup();
        std::fs::create_dir_all(dir.path().join("g/h")).expect("mkdir");
        for p in [&b""[..], b"g", b"g/h"] {
            mon.add_watch(p).expect("watch");
        }
        std::fs::remove_dir_all(dir.path().join("g")).expect("rm");
        let _ = collect_until(&mut mon, |e| has(e, "g", EventKind::Removed));
        mon.forget_subtree(b"g");
        assert_eq!(mon.watch_count(), 1);
        // Re-created under the old name: watched afresh, events flow.
        std::fs::create_dir(dir.path().join("g")).expect("mkdir");
        mon.add_watch(b"g").expect("watch");
        std::fs::write(dir.path().join("g/new"), b"").expect("write");
        let _ = collect_until(&mut mon, |e| has(e, "g/new", EventKind::Created));
    }

    #[test]
    fn watching_a_missing_dir_or_a_symlink_is_gone_not_fatal() {
        let (dir, mut mon) = setup();
        std::os::unix::fs::symlink("/tmp", dir.path().join("l")).expect("symlink");
        assert!(matches!(
            mon.add_watch(b"missing"),
            Err(MonitorError::Gone { .. })
        ));
        assert!(matches!(
            mon.add_watch(b"l"),
            Err(MonitorError::Gone { .. })
        ));
        assert_eq!(mon.watch_count(), 0);
    }
}
