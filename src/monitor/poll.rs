//! The poll backend (`--monitor poll`): a periodic scan for filesystems the
//! kernel does not report changes on (NFS, FUSE, CIFS, …).
//!
//! Every `--poll-interval` it lists each watched directory again and hands
//! the listings to the shared differ ([`super::snapshot`]), which turns them
//! into the same events inotify gives (a rename found by inode). It has no
//! descriptor and no watch limit: a "watch" is a directory it lists, and
//! the cost is one lstat per entry per scan and about a hundred bytes per
//! tracked entry (bench/poll_mem.sh measures it). Changes that come and go
//! within one interval are not seen, and a file written twice with the same
//! size within the filesystem's mtime granularity looks unchanged.
//!
//! It reads the filesystem below the root only, never follows symlinks, and
//! decides nothing about which directories to watch.

use super::snapshot::{FsLister, Snapshots};
use super::{Monitor, MonitorError, MonitorOptions, RawEvent};
use crate::path;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub struct PollMonitor {
    root: PathBuf,
    snaps: Snapshots,
    interval: Duration,
    next_scan: Instant,
}

/// The factory's entry point (`--monitor poll`).
pub fn open(root: &Path, opts: &MonitorOptions) -> Result<Box<dyn Monitor>, MonitorError> {
    Ok(Box::new(PollMonitor::new(root, opts.poll_interval)?))
}

impl PollMonitor {
    pub fn new(root: &Path, interval: Duration) -> Result<Self, MonitorError> {
        if interval.is_zero() {
            return Err(MonitorError::Unavailable {
                backend: "poll",
                reason: "--poll-interval must be more than 0".to_string(),
            });
        }
        Ok(PollMonitor {
            root: root.to_path_buf(),
            snaps: Snapshots::new(),
            interval,
            next_scan: Instant::now() + interval,
        })
    }

    /// Scans now, whatever the clock says (tests, and the bench).
    pub fn scan(&mut self, out: &mut Vec<RawEvent>) {
        self.snaps.rescan_all(&mut FsLister(&self.root), out);
        self.next_scan = Instant::now() + self.interval;
    }

    /// (tracked entries, heap bytes the snapshots hold).
    pub fn footprint(&self) -> (usize, usize) {
        self.snaps.footprint()
    }
}

impl Monitor for PollMonitor {
    fn add_watch(&mut self, rel: &[u8]) -> Result<(), MonitorError> {
        if self.snaps.watch(rel, &mut FsLister(&self.root)) {
            Ok(())
        } else {
            Err(MonitorError::Gone {
                path: path::display_os(&path::abs(&self.root, rel)),
            })
        }
    }

    fn forget_subtree(&mut self, rel: &[u8]) {
        self.snaps.forget_subtree(rel);
    }

    fn read_events(&mut self, out: &mut Vec<RawEvent>) -> Result<(), MonitorError> {
        if Instant::now() >= self.next_scan {
            self.scan(out);
        }
        Ok(())
    }

    fn fd(&self) -> RawFd {
        -1
    }

    fn watch_count(&self) -> usize {
        self.snaps.len()
    }

    fn watched_under(&self, rel: &[u8]) -> Vec<Vec<u8>> {
        self.snaps.under(rel)
    }

    fn is_watched(&self, rel: &[u8]) -> bool {
        self.snaps.contains(rel)
    }

    fn next_deadline(&self) -> Option<Instant> {
        Some(self.next_scan)
    }

    fn syncing(&mut self, batch: &crate::batch::Batch) {
        self.snaps.syncing(&super::batch_paths(batch));
    }

    fn synced(&mut self) {
        self.snaps.synced();
    }

    fn catch_up(&mut self) {
        self.next_scan = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::testutil::*;
    use crate::monitor::EventKind;

    fn setup() -> (tempfile::TempDir, PollMonitor) {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("canonical");
        let mon = PollMonitor::new(&root, Duration::from_secs(3600)).expect("poll");
        (dir, mon)
    }

    #[test]
    fn a_scan_reports_what_changed_since_the_last_one() {
        let (dir, mut mon) = setup();
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        std::fs::write(dir.path().join("sub/old"), b"x").expect("write");
        mon.add_watch(b"").expect("watch");
        mon.add_watch(b"sub").expect("watch");
        let mut evs = Vec::new();
        mon.scan(&mut evs);
        assert!(evs.is_empty(), "nothing changed yet: {evs:?}");
        std::fs::write(dir.path().join("sub/new"), b"y").expect("write");
        std::fs::write(dir.path().join("sub/old"), b"longer").expect("write");
        std::fs::rename(dir.path().join("sub"), dir.path().join("moved")).expect("mv");
        mon.scan(&mut evs);
        let pos = |k: EventKind, p: &str| {
            evs.iter()
                .position(|e| e.kind == k && e.path == p.as_bytes())
                .unwrap_or_else(|| panic!("no {k:?} {p} in {evs:?}"))
        };
        let (from, to) = (
            pos(EventKind::MovedFrom, "sub"),
            pos(EventKind::MovedTo, "moved"),
        );
        assert_eq!(to, from + 1, "a pair is adjacent: {evs:?}");
        assert!(evs[from].is_dir && evs[from].cookie != 0);
        assert_eq!(evs[from].cookie, evs[to].cookie);
        assert!(pos(EventKind::Created, "moved/new") > to);
        assert!(pos(EventKind::Modified, "moved/old") > to);
        assert!(mon.is_watched(b"moved") && !mon.is_watched(b"sub"));
        assert_eq!(mon.watch_count(), 2);
    }

    fn batch(ops: Vec<crate::batch::Op>) -> crate::batch::Batch {
        crate::batch::Batch {
            ops,
            ..Default::default()
        }
    }

    /// Regression (torture under poll): the tree syncs a new dir whole, from
    /// its live state; an entry made and gone between two scans while that
    /// ran was copied and never removed. A dir synced whole whose mtime
    /// moved since the sync started is synced whole again.
    #[test]
    fn a_dir_that_changed_while_it_was_synced_whole_is_synced_again() {
        let (dir, mut mon) = setup();
        std::fs::create_dir(dir.path().join("new")).expect("mkdir");
        mon.add_watch(b"").expect("watch");
        mon.add_watch(b"new").expect("watch");
        let mut evs = Vec::new();
        mon.scan(&mut evs);
        mon.syncing(&batch(vec![crate::batch::Op::Sync {
            path: b"new".to_vec(),
            recursive: true,
        }]));
        std::fs::write(dir.path().join("new/blink"), b"").expect("write");
        std::fs::remove_file(dir.path().join("new/blink")).expect("rm");
        mon.synced();
        mon.scan(&mut evs);
        assert_eq!(
            evs,
            vec![RawEvent {
                path: b"new".to_vec(),
                kind: EventKind::MovedTo,
                is_dir: true,
                cookie: 0
            }]
        );
        let mut quiet = Vec::new();
        mon.scan(&mut quiet);
        assert!(quiet.is_empty(), "{quiet:?}");
    }

    /// Regression (torture under poll): `x` was reported removed and the
    /// sync of `x` found a directory that came and went between two scans,
    /// and copied it. A path a sync made equal that is absent afterwards is
    /// reported removed again, once.
    #[test]
    fn a_synced_path_that_is_absent_afterwards_is_reported_removed_again() {
        let (dir, mut mon) = setup();
        std::fs::write(dir.path().join("x"), b"").expect("write");
        mon.add_watch(b"").expect("watch");
        let mut evs = Vec::new();
        mon.scan(&mut evs);
        std::fs::remove_file(dir.path().join("x")).expect("rm");
        mon.scan(&mut evs);
        assert_eq!(evs.len(), 1, "{evs:?}");
        mon.syncing(&batch(vec![crate::batch::Op::Sync {
            path: b"x".to_vec(),
            recursive: false,
        }]));
        mon.synced();
        let mut echo = Vec::new();
        mon.scan(&mut echo);
        assert_eq!(echo, evs, "the same removal once more");
        let mut quiet = Vec::new();
        mon.scan(&mut quiet);
        assert!(quiet.is_empty(), "{quiet:?}");
        // The sync of that removal is not echoed in turn (it looped: the
        // same deletion synced every few milliseconds, forever).
        mon.syncing(&batch(vec![crate::batch::Op::Sync {
            path: b"x".to_vec(),
            recursive: false,
        }]));
        mon.synced();
        let mut again = Vec::new();
        mon.scan(&mut again);
        assert!(again.is_empty(), "{again:?}");
        // Once x is listed again, a later transient x may be echoed again.
        std::fs::write(dir.path().join("x"), b"").expect("write");
        let mut created = Vec::new();
        mon.scan(&mut created);
        std::fs::remove_file(dir.path().join("x")).expect("rm");
        let mut removed = Vec::new();
        mon.scan(&mut removed);
        mon.syncing(&batch(vec![crate::batch::Op::Sync {
            path: b"x".to_vec(),
            recursive: false,
        }]));
        mon.synced();
        let mut echo2 = Vec::new();
        mon.scan(&mut echo2);
        assert_eq!(echo2, removed, "echoed again after being listed");
    }

    #[test]
    fn the_root_going_away_is_reported_and_nothing_else() {
        let (dir, mut mon) = setup();
        let root = dir.path().canonicalize().expect("canonical");
        mon.add_watch(b"").expect("watch");
        std::fs::remove_dir(&root).expect("rmdir");
        let mut evs = Vec::new();
        mon.scan(&mut evs);
        assert!(has(&evs, "", EventKind::WatchGone), "{evs:?}");
    }

    #[test]
    fn watching_a_file_or_a_symlink_is_gone_and_the_deadline_follows_the_interval() {
        let (dir, mut mon) = setup();
        std::fs::write(dir.path().join("f"), b"").expect("write");
        std::os::unix::fs::symlink("/tmp", dir.path().join("l")).expect("symlink");
        assert!(matches!(
            mon.add_watch(b"f"),
            Err(MonitorError::Gone { .. })
        ));
        assert!(matches!(
            mon.add_watch(b"l"),
            Err(MonitorError::Gone { .. })
        ));
        assert_eq!(mon.fd(), -1);
        let due = mon.next_deadline().expect("deadline");
        assert!(due > Instant::now() + Duration::from_secs(3000));
        let mut evs = Vec::new();
        mon.read_events(&mut evs).expect("read");
        assert!(evs.is_empty());
        assert!(PollMonitor::new(dir.path(), Duration::ZERO).is_err());
    }
}
