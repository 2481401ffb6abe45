//! The notify backend (`--monitor notify`): the `notify` crate's
//! recommended watcher, the portable choice where there is no native
//! backend here (FSEvents on macOS, ReadDirectoryChangesW on Windows); on
//! Linux it wraps inotify.
//!
//! notify runs its own thread and hands events to a closure; the closure
//! queues them and writes a byte to a socket pair whose reading end is
//! [`Monitor::fd`], so the event loop wakes as for inotify. Translation:
//! paths become relative to the root; notify's rename halves (`From`/`To`,
//! paired by its tracker) become `MovedFrom`/`MovedTo` with the tracker as
//! cookie (its combined `Both` is dropped); its `Rescan` flag becomes a
//! rescan of the root.
//!
//! notify drops the kernel watches of a directory that is moved away, so a
//! moved directory is followed by an unpaired `MovedTo` of its new name: the
//! tree watches it again and syncs it whole, which covers whatever happened
//! inside it before the new watches existed. Events of those dropped watches
//! that were already queued carry the old names and are ignored. This module
//! decides nothing about which directories to watch.

use super::{EventKind, Monitor, MonitorError, MonitorOptions, RawEvent};
use crate::path;
use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RemoveKind, RenameMode};
use notify::{RecursiveMode, Watcher};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

type Queue = Arc<Mutex<Vec<notify::Result<notify::Event>>>>;

/// How long a read waits for the rest of a burst, and how many times.
const LINGER: std::time::Duration = std::time::Duration::from_millis(2);
const LINGER_ROUNDS: usize = 8;

pub struct NotifyMonitor {
    root: PathBuf,
    watcher: notify::RecommendedWatcher,
    queue: Queue,
    wake: UnixStream,
    watched: BTreeSet<Vec<u8>>,
}

/// The factory's entry point (`--monitor notify`).
pub fn open(root: &Path, _: &MonitorOptions) -> Result<Box<dyn Monitor>, MonitorError> {
    Ok(Box::new(NotifyMonitor::new(root)?))
}

fn start_error(e: impl std::fmt::Display) -> MonitorError {
    MonitorError::Unavailable {
        backend: "notify",
        reason: e.to_string(),
    }
}

impl NotifyMonitor {
    pub fn new(root: &Path) -> Result<Self, MonitorError> {
        let (wake, poke) = UnixStream::pair().map_err(start_error)?;
        wake.set_nonblocking(true).map_err(start_error)?;
        poke.set_nonblocking(true).map_err(start_error)?;
        let queue: Queue = Arc::default();
        let q = Arc::clone(&queue);
        let mut poke = poke;
        let handler = move |ev: notify::Result<notify::Event>| {
            // notify's inotify watches ask for opens and reads too (every
            // read of a file in the tree, our own copies included): drop
            // them here, before they wake the loop.
            if let Ok(e) = &ev {
                if matches!(e.kind, notify::EventKind::Access(k)
                    if k != AccessKind::Close(AccessMode::Write))
                {
                    return;
                }
            }
            q.lock().unwrap_or_else(|e| e.into_inner()).push(ev);
            // A full socket buffer already wakes the reader: ignore it.
            let _ = poke.write(&[1]);
        };
        let watcher = notify::recommended_watcher(handler).map_err(start_error)?;
        Ok(NotifyMonitor {
            root: root.to_path_buf(),
            watcher,
            queue,
            wake,
            watched: BTreeSet::new(),
        })
    }

    fn rel(&self, p: &Path) -> Option<Vec<u8>> {
        p.strip_prefix(&self.root)
            .ok()
            .map(|r| r.as_os_str().as_bytes().to_vec())
    }

    fn drain_wake(&mut self) -> Result<(), MonitorError> {
        let mut buf = [0u8; 4096];
        loop {
            match self.wake.read(&mut buf) {
                Ok(n) if n == buf.len() => continue,
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(MonitorError::Read(e)),
            }
        }
    }

    fn take_queued(&self) -> Vec<notify::Result<notify::Event>> {
        std::mem::take(&mut *self.queue.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Whether the wake socket turns readable within `t`.
    fn wake_within(&self, t: std::time::Duration) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.wake.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = t.as_millis().min(1000) as libc::c_int;
        // SAFETY: one valid pollfd that lives across the call.
        unsafe { libc::poll(&mut pfd, 1, ms) > 0 }
    }

    fn is_dir(&self, rel: &[u8]) -> bool {
        std::fs::symlink_metadata(path::abs(&self.root, rel)).is_ok_and(|m| m.is_dir())
    }

    /// An event about an entry of a watched directory that we still watch
    /// under that name (not a stale one of a directory moved away).
    fn is_from_a_live_watch(&self, rel: &[u8]) -> bool {
        !rel.is_empty() && self.watched.contains(path::parent(rel))
    }

    fn translate(&mut self, ev: notify::Event, out: &mut Vec<RawEvent>) {
        let push = |out: &mut Vec<RawEvent>, path: Vec<u8>, kind, is_dir, cookie| {
            out.push(RawEvent {
                path,
                kind,
                is_dir,
                cookie,
            })
        };
        if ev.need_rescan() {
            push(out, Vec::new(), EventKind::Rescan, true, 0);
            return;
        }
        let cookie = ev.tracker().map(|t| (t as u32).max(1));
        let Some(rel) = ev.paths.first().and_then(|p| self.rel(p)) else {
            return;
        };
        use notify::EventKind as N;
        match ev.kind {
            N::Modify(ModifyKind::Name(RenameMode::From)) if cookie.is_none() => {
                // MOVE_SELF of a watched directory: the parent tells the story,
                // unless it is the root.
                if rel.is_empty() {
                    push(out, rel, EventKind::WatchGone, true, 0);
                }
            }
            N::Remove(_) if rel.is_empty() => {
                push(out, rel, EventKind::WatchGone, true, 0);
            }
            _ if !self.is_from_a_live_watch(&rel) => {}
            N::Create(kind) => {
                let is_dir = match kind {
                    CreateKind::Folder => true,
                    CreateKind::File => false,
                    _ => self.is_dir(&rel),
                };
                push(out, rel, EventKind::Created, is_dir, 0);
            }
            N::Remove(kind) => {
                let is_dir = match kind {
                    RemoveKind::Folder => true,
                    RemoveKind::File => false,
                    _ => self.watched.contains(&rel),
                };
                push(out, rel, EventKind::Removed, is_dir, 0);
            }
            N::Modify(ModifyKind::Name(RenameMode::From)) => {
                let is_dir = self.watched.contains(&rel);
                if is_dir {
                    // notify dropped the kernel watches below it.
                    for k in self.watched_under(&rel) {
                        self.watched.remove(&k);
                    }
                }
                push(out, rel, EventKind::MovedFrom, is_dir, cookie.unwrap_or(0));
            }
            N::Modify(ModifyKind::Name(RenameMode::To)) => {
                let is_dir = self.is_dir(&rel);
                push(
                    out,
                    rel.clone(),
                    EventKind::MovedTo,
                    is_dir,
                    cookie.unwrap_or(0),
                );
                if is_dir {
                    // Watched afresh and synced whole (see the module doc).
                    push(out, rel, EventKind::MovedTo, true, 0);
                }
            }
            N::Modify(ModifyKind::Name(_)) => {}
            N::Modify(ModifyKind::Metadata(_)) => {
                let is_dir = self.is_dir(&rel);
                push(out, rel, EventKind::Attrib, is_dir, 0);
            }
            N::Modify(_) | N::Access(AccessKind::Close(AccessMode::Write)) => {
                let is_dir = self.is_dir(&rel);
                push(out, rel, EventKind::Modified, is_dir, 0);
            }
            N::Access(_) | N::Any | N::Other => {}
        }
    }
}

impl Monitor for NotifyMonitor {
    fn add_watch(&mut self, rel: &[u8]) -> Result<(), MonitorError> {
        if self.watched.contains(rel) {
            return Ok(());
        }
        let abs = path::abs(&self.root, rel);
        let shown = || path::display_os(&abs);
        // notify's inotify watch follows symlinks: only real directories.
        if !std::fs::symlink_metadata(&abs).is_ok_and(|m| m.is_dir()) {
            return Err(MonitorError::Gone { path: shown() });
        }
        match self.watcher.watch(&abs, RecursiveMode::NonRecursive) {
            Ok(()) => {
                self.watched.insert(rel.to_vec());
                Ok(())
            }
            Err(e) => Err(match e.kind {
                notify::ErrorKind::PathNotFound => MonitorError::Gone { path: shown() },
                notify::ErrorKind::MaxFilesWatch => MonitorError::WatchLimit {
                    path: shown(),
                    limit: std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
                        .map(|s| s.trim().to_string())
                        .unwrap_or_else(|_| "unknown".to_string()),
                },
                notify::ErrorKind::Io(io)
                    if matches!(io.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) =>
                {
                    MonitorError::Gone { path: shown() }
                }
                notify::ErrorKind::Io(io) => MonitorError::Watch {
                    path: shown(),
                    source: io,
                },
                other => MonitorError::Watch {
                    path: shown(),
                    source: std::io::Error::other(format!("{other:?}")),
                },
            }),
        }
    }

    fn forget_subtree(&mut self, rel: &[u8]) {
        for k in self.watched_under(rel) {
            self.watched.remove(&k);
            // notify may have dropped it already (deleted or moved away).
            let _ = self.watcher.unwatch(&path::abs(&self.root, &k));
        }
    }

    fn read_events(&mut self, out: &mut Vec<RawEvent>) -> Result<(), MonitorError> {
        self.drain_wake()?;
        let mut events = self.take_queued();
        // notify hands events over one by one from its thread, where one
        // read of inotify would have returned a burst (create, write, close)
        // at once: linger a moment while more keep coming, so the queue
        // sees them together. Bounded, so a storm cannot hold the loop.
        for _ in 0..LINGER_ROUNDS {
            if events.is_empty() || !self.wake_within(LINGER) {
                break;
            }
            self.drain_wake()?;
            events.extend(self.take_queued());
        }
        for ev in events {
            match ev {
                Ok(ev) => self.translate(ev, out),
                Err(e) => {
                    // notify reports what it could not do (e.g. a watch it
                    // wanted to add back); the events may be incomplete.
                    log::warn!("notify: {e}; rescanning");
                    out.push(RawEvent {
                        path: Vec::new(),
                        kind: EventKind::Rescan,
                        is_dir: true,
                        cookie: 0,
                    });
                }
            }
        }
        Ok(())
    }

    fn fd(&self) -> RawFd {
        self.wake.as_raw_fd()
    }

    fn watch_count(&self) -> usize {
        self.watched.len()
    }

    fn watched_under(&self, rel: &[u8]) -> Vec<Vec<u8>> {
        self.watched
            .range(rel.to_vec()..)
            .take_while(|k| k.starts_with(rel))
            .filter(|k| path::is_under(k, rel))
            .cloned()
            .collect()
    }

    fn is_watched(&self, rel: &[u8]) -> bool {
        self.watched.contains(rel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::testutil::*;

    fn setup() -> (tempfile::TempDir, NotifyMonitor) {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("canonical");
        let mon = NotifyMonitor::new(&root).expect("notify");
        (dir, mon)
    }

    #[test]
    fn events_carry_relative_paths_and_renames_carry_cookies() {
        let (dir, mut mon) = setup();
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        mon.add_watch(b"").expect("watch root");
        mon.add_watch(b"sub").expect("watch sub");
        std::fs::write(dir.path().join("sub/f"), b"x").expect("write");
        std::fs::rename(dir.path().join("sub/f"), dir.path().join("g")).expect("mv");
        std::fs::remove_file(dir.path().join("g")).expect("rm");
        let evs = collect_until(&mut mon, |e| has(e, "g", EventKind::Removed));
        assert!(has(&evs, "sub/f", EventKind::Created));
        assert!(has(&evs, "sub/f", EventKind::Modified));
        let from = evs
            .iter()
            .position(|e| e.kind == EventKind::MovedFrom)
            .expect("from");
        let to = evs
            .iter()
            .position(|e| e.kind == EventKind::MovedTo)
            .expect("to");
        assert_eq!(evs[from].path, b"sub/f");
        assert_eq!(evs[to].path, b"g");
        assert!(evs[from].cookie != 0 && evs[from].cookie == evs[to].cookie);
        // The socket woke us and is drained now.
        let mut more = Vec::new();
        mon.read_events(&mut more).expect("read");
        assert!(more.is_empty(), "{more:?}");
    }

    #[test]
    fn a_moved_directory_is_reannounced_and_its_old_watches_forgotten() {
        let (dir, mut mon) = setup();
        std::fs::create_dir_all(dir.path().join("a/deep")).expect("mkdir");
        for p in [&b""[..], b"a", b"a/deep"] {
            mon.add_watch(p).expect("watch");
        }
        std::fs::rename(dir.path().join("a"), dir.path().join("b")).expect("mv");
        let evs = collect_until(&mut mon, |e| {
            e.iter()
                .filter(|e| e.kind == EventKind::MovedTo && e.path == b"b")
                .count()
                == 2
        });
        let tos: Vec<u32> = evs
            .iter()
            .filter(|e| e.kind == EventKind::MovedTo)
            .map(|e| e.cookie)
            .collect();
        assert!(tos[0] != 0 && tos[1] == 0, "paired, then unpaired: {evs:?}");
        assert!(mon.watched_under(b"a").is_empty());
        assert_eq!(mon.watch_count(), 1);
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
