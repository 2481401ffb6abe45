//! The fanotify backend against the real kernel, driven through the
//! library: `Fanotify` + `Tree`, real file operations, and the tree's
//! changes checked for each scenario (create/modify/delete, a new dir with
//! files, a dir rename with contents, moves in and out, events outside the
//! root, queue overflow, the pre-5.17 rename pairing, the daemon's own pid,
//! a filesystem mounted below the root).
//!
//! A filesystem mark sees every writer on the filesystem, so these tests
//! put their trees on /dev/shm (a quiet tmpfs) when fanotify works there,
//! else in the temp dir (`LIVESYNC_FANOTIFY_TEST_DIR` overrides). They need root (CAP_SYS_ADMIN): skipped without
//! it, failed under CI=true. Each waits by polling the backend's fd with a
//! deadline; nothing here sleeps blindly.

#![cfg(target_os = "linux")]

mod common;

use livesync::monitor::fanotify::{Fanotify, RenameMode};
use livesync::monitor::{EventKind, Monitor, MonitorError, RawEvent};
use livesync::queue::Change;
use livesync::rules::Rules;
use livesync::tree::Tree;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(10);

struct Rig {
    _dir: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
    mon: Fanotify,
    tree: Tree,
    raws: Vec<RawEvent>,
    changes: Vec<Change>,
}

fn base_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("LIVESYNC_FANOTIFY_TEST_DIR") {
        return PathBuf::from(d);
    }
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::tempdir_in(shm) {
            if Fanotify::new(d.path()).is_ok() {
                return shm.to_path_buf();
            }
        }
    }
    std::env::temp_dir()
}

/// A watched tree `src` next to an unwatched `out` on the same filesystem;
/// `None` (skip) without root, outside CI.
fn rig(mode: Option<RenameMode>) -> Option<Rig> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        if common::in_ci() {
            panic!("fanotify tests need root (CI=true: refusing to skip)");
        }
        eprintln!("SKIPPED: fanotify needs root");
        return None;
    }
    let dir = tempfile::tempdir_in(base_dir()).expect("tempdir");
    let top = dir.path().canonicalize().expect("canonical");
    let root = top.join("src");
    let outside = top.join("out");
    fs::create_dir(&root).expect("mkdir src");
    fs::create_dir(&outside).expect("mkdir out");
    let mut mon = Fanotify::with_mode(&root, mode).expect("fanotify starts as root");
    // This test process makes the changes itself.
    mon.set_ignored_pid(None);
    let tree = Tree::new(root.clone(), Arc::new(Rules::allow_all()), 0);
    Some(Rig {
        _dir: dir,
        root,
        outside,
        mon,
        tree,
        raws: Vec::new(),
        changes: Vec::new(),
    })
}

fn wait_readable(fd: i32, ms: i32) {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, ms) };
}

fn p(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

impl Rig {
    fn walk(&mut self) {
        self.tree
            .watch_subtree(&mut self.mon, b"", true)
            .expect("initial walk");
    }

    /// Reads and processes what is ready, the way the daemon does (a held
    /// `MovedFrom` gets one more short read before it counts as gone).
    fn pump(&mut self, wait_ms: i32) {
        wait_readable(self.mon.fd(), wait_ms);
        let mut raw = Vec::new();
        self.mon.read_events(&mut raw).expect("read events");
        self.tree
            .process(&mut self.mon, &raw, &mut self.changes)
            .expect("process");
        if self.tree.has_held() {
            wait_readable(self.mon.fd(), 50);
            let mut more = Vec::new();
            self.mon.read_events(&mut more).expect("read events");
            self.tree
                .process(&mut self.mon, &more, &mut self.changes)
                .expect("process");
            if self.tree.has_held() {
                self.tree.flush_held(&mut self.mon, &mut self.changes);
            }
            raw.extend(more);
        }
        self.raws.extend(raw);
    }

    /// Pumps until `want` holds for the changes so far.
    fn wait(&mut self, what: &str, want: impl Fn(&[Change]) -> bool) {
        let end = Instant::now() + DEADLINE;
        while !want(&self.changes) {
            assert!(
                Instant::now() < end,
                "timed out waiting for {what}; changes: {:#?}\nraw: {:#?}",
                self.changes,
                self.raws
            );
            self.pump(50);
        }
    }
}

fn created(path: &str, is_dir: bool) -> Change {
    Change::Created {
        path: p(path),
        is_dir,
        size: 0,
    }
}

fn modified(path: &str, is_dir: bool) -> Change {
    Change::Modified {
        path: p(path),
        is_dir,
        size: 0,
    }
}

fn removed(path: &str, is_dir: bool) -> Change {
    Change::Removed {
        path: p(path),
        is_dir,
    }
}

fn moved(from: &str, to: &str, is_dir: bool) -> Change {
    Change::Moved {
        from: p(from),
        to: p(to),
        is_dir,
    }
}

fn subtree(path: &str) -> Change {
    Change::Subtree {
        path: p(path),
        instant: false,
    }
}

#[test]
fn files_created_modified_and_deleted() {
    let Some(mut r) = rig(None) else { return };
    r.walk();
    fs::write(r.root.join("a"), b"1").expect("write");
    r.wait("a created", |c| c.contains(&created("a", false)));
    r.changes.clear();
    fs::OpenOptions::new()
        .append(true)
        .open(r.root.join("a"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"2"))
        .expect("append");
    r.wait("a modified", |c| c.contains(&modified("a", false)));
    r.changes.clear();
    fs::set_permissions(
        r.root.join("a"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .expect("chmod");
    r.wait("a attrib", |c| c.contains(&modified("a", false)));
    fs::remove_file(r.root.join("a")).expect("rm");
    r.wait("a removed", |c| c.contains(&removed("a", false)));
    assert!(
        !r.changes
            .iter()
            .any(|c| matches!(c, Change::Subtree { .. })),
        "no rescan was needed: {:?}",
        r.changes
    );
}

#[test]
fn a_directory_made_with_files_at_once_is_registered_and_followed() {
    let Some(mut r) = rig(None) else { return };
    r.walk();
    fs::create_dir_all(r.root.join("d/e/f")).expect("mkdir");
    fs::write(r.root.join("d/e/x"), b"x").expect("write");
    r.wait("d created and queued whole", |c| {
        c.contains(&created("d", true)) && c.contains(&subtree("d"))
    });
    for d in ["d", "d/e", "d/e/f"] {
        assert!(r.mon.is_watched(d.as_bytes()), "{d} registered");
    }
    r.changes.clear();
    fs::write(r.root.join("d/e/f/new"), b"n").expect("write");
    r.wait("a file deep in the new dir", |c| {
        c.contains(&created("d/e/f/new", false))
    });
    assert_eq!(r.mon.watch_count(), 4);
}

fn dir_rename_with_contents(mode: Option<RenameMode>) {
    let Some(mut r) = rig(mode) else { return };
    if let Some(m) = mode {
        assert_eq!(r.mon.rename_mode(), m);
    }
    fs::create_dir_all(r.root.join("d/sub")).expect("mkdir");
    fs::write(r.root.join("d/sub/file"), b"f").expect("write");
    r.walk();
    fs::rename(r.root.join("d"), r.root.join("r")).expect("rename");
    r.wait("one move of the dir", |c| {
        c.contains(&moved("d", "r", true))
    });
    assert!(r.mon.is_watched(b"r/sub") && r.mon.is_watched(b"r"));
    assert!(!r.mon.is_watched(b"d") && !r.mon.is_watched(b"d/sub"));
    r.changes.clear();
    fs::write(r.root.join("r/sub/new"), b"n").expect("write");
    fs::rename(r.root.join("r/sub/file"), r.root.join("r/renamed")).expect("rename file");
    r.wait("changes inside carry the new path", |c| {
        c.contains(&created("r/sub/new", false))
            && c.contains(&moved("r/sub/file", "r/renamed", false))
    });
}

#[test]
fn a_directory_rename_with_contents_is_one_move_and_the_cache_follows() {
    dir_rename_with_contents(None);
}

#[test]
fn moved_from_and_moved_to_are_paired_without_fan_rename() {
    dir_rename_with_contents(Some(RenameMode::MovedPair));
}

#[test]
fn moves_into_and_out_of_the_root() {
    let Some(mut r) = rig(None) else { return };
    fs::create_dir_all(r.root.join("leave/deep")).expect("mkdir");
    fs::write(r.root.join("gofile"), b"g").expect("write");
    fs::create_dir_all(r.outside.join("come/deep")).expect("mkdir");
    fs::write(r.outside.join("infile"), b"i").expect("write");
    r.walk();
    fs::rename(r.outside.join("infile"), r.root.join("infile")).expect("mv in");
    fs::rename(r.outside.join("come"), r.root.join("come")).expect("mv dir in");
    fs::rename(r.root.join("gofile"), r.outside.join("gofile")).expect("mv out");
    fs::rename(r.root.join("leave"), r.outside.join("leave")).expect("mv dir out");
    r.wait("all four moves", |c| {
        c.contains(&modified("infile", false))
            && c.contains(&subtree("come"))
            && c.contains(&removed("gofile", false))
            && c.contains(&removed("leave", true))
    });
    assert!(r.mon.is_watched(b"come/deep"), "moved-in dir registered");
    assert!(
        !r.mon.is_watched(b"leave") && !r.mon.is_watched(b"leave/deep"),
        "moved-out dir forgotten"
    );
    // The moved-out dir's later changes are not ours.
    r.changes.clear();
    fs::write(r.outside.join("leave/deep/late"), b"l").expect("write");
    fs::write(r.root.join("come/deep/marker"), b"m").expect("write");
    r.wait("marker", |c| {
        c.contains(&created("come/deep/marker", false))
    });
    assert_eq!(r.changes, vec![created("come/deep/marker", false)]);
}

/// The filesystem mark covers the tree: starting costs no walk and no
/// per-directory entry, and a change deep in a directory never named to
/// the backend is reported at its path (resolved from the handle).
#[test]
fn the_tree_is_not_walked_and_a_change_deep_in_it_is_seen() {
    let Some(mut r) = rig(None) else { return };
    for i in 0..50 {
        fs::create_dir_all(r.root.join(format!("d{i}/e/f"))).expect("mkdir");
    }
    r.walk();
    assert!(
        r.mon.watch_count() <= 1,
        "{} registered",
        r.mon.watch_count()
    );
    fs::write(r.root.join("d37/e/f/new"), b"n").expect("write");
    fs::rename(r.root.join("d12"), r.root.join("moved")).expect("rename");
    fs::write(r.root.join("moved/e/f/after"), b"a").expect("write");
    r.wait("changes deep in the tree", |c| {
        c.contains(&created("d37/e/f/new", false))
            && c.contains(&moved("d12", "moved", true))
            && c.contains(&created("moved/e/f/after", false))
    });
}

#[test]
fn events_outside_the_root_are_ignored() {
    let Some(mut r) = rig(None) else { return };
    r.walk();
    fs::create_dir(r.outside.join("x")).expect("mkdir");
    fs::write(r.outside.join("x/y"), b"y").expect("write");
    fs::rename(r.outside.join("x/y"), r.outside.join("z")).expect("mv");
    fs::remove_file(r.outside.join("z")).expect("rm");
    // A sibling whose name starts like the root's.
    let sib = r.root.with_file_name("src2");
    fs::create_dir(&sib).expect("mkdir");
    fs::write(sib.join("s"), b"s").expect("write");
    fs::write(r.root.join("marker"), b"m").expect("write");
    // Everything above is queued before the marker, so once the marker is
    // seen, all of it has been read.
    r.wait("marker", |c| c.contains(&created("marker", false)));
    assert_eq!(r.changes, vec![created("marker", false)]);
    assert!(
        r.raws.iter().all(|e| e.path == b"marker"),
        "raw events: {:?}",
        r.raws
    );
}

#[test]
fn the_daemons_own_writes_are_ignored_and_a_childs_are_not() {
    let Some(mut r) = rig(None) else { return };
    r.mon.set_ignored_pid(Some(std::process::id() as i32));
    r.walk();
    fs::write(r.root.join("mine"), b"m").expect("write");
    let st = std::process::Command::new("touch")
        .arg(r.root.join("childs"))
        .status()
        .expect("run touch");
    assert!(st.success());
    r.wait("the child's file", |c| {
        c.contains(&created("childs", false))
    });
    assert!(
        !r.raws.iter().any(|e| e.path == b"mine"),
        "own write reported: {:?}",
        r.raws
    );
}

#[test]
fn a_queue_overflow_becomes_a_rescan_and_the_cache_is_resolved_again() {
    let Some(mut r) = rig(None) else { return };
    fs::create_dir_all(r.root.join("x/inner")).expect("mkdir");
    r.walk();
    let limit: usize = fs::read_to_string("/proc/sys/fs/fanotify/max_queued_events")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(16384);
    assert!(
        limit <= 1 << 20,
        "max_queued_events {limit} too large to overflow in a test"
    );
    let flood = r.root.join("flood");
    fs::create_dir(&flood).expect("mkdir");
    for i in 0..limit + 500 {
        fs::File::create(flood.join(i.to_string())).expect("create");
    }
    // Lost for sure: the queue is full.
    fs::rename(r.root.join("x"), r.root.join("y")).expect("rename");
    let mut raw = Vec::new();
    let end = Instant::now() + DEADLINE;
    while !raw.iter().any(|e: &RawEvent| e.kind == EventKind::Rescan) {
        assert!(Instant::now() < end, "no rescan event");
        wait_readable(r.mon.fd(), 50);
        r.mon.read_events(&mut raw).expect("read");
    }
    // The backend resolved its cached handles again before the rescan:
    // the lost rename is already reflected, before the tree does anything.
    assert!(r.mon.is_watched(b"y") && r.mon.is_watched(b"y/inner"));
    assert!(!r.mon.is_watched(b"x") && !r.mon.is_watched(b"x/inner"));
    r.tree
        .process(&mut r.mon, &raw, &mut r.changes)
        .expect("process");
    assert!(r.changes.contains(&Change::Subtree {
        path: Vec::new(),
        instant: true
    }));
    assert!(r.tree.stats.rescans >= 1);
    assert!(r.mon.is_watched(b"flood"));
}

#[test]
fn a_filesystem_without_file_handles_is_reported_as_unavailable() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    match Fanotify::new(Path::new("/proc")) {
        Err(MonitorError::Unavailable { backend, reason }) => {
            assert_eq!(backend, "fanotify");
            assert!(reason.contains("/proc"), "{reason}");
        }
        Err(e) => panic!("expected Unavailable, got {e}"),
        Ok(_) => panic!("fanotify cannot mark procfs"),
    }
}

/// Unmounts on drop, so a failing test leaves no mount behind.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_filesystem_mounted_below_the_root_gets_its_own_mark() {
    let Some(mut r) = rig(None) else { return };
    if !common::require_tool("mount") {
        return;
    }
    let sub = r.root.join("sub");
    fs::create_dir(&sub).expect("mkdir");
    let st = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "livesync-test"])
        .arg(&sub)
        .status()
        .expect("run mount");
    assert!(st.success(), "mount a tmpfs at {}", sub.display());
    let _guard = Mounted(sub.clone());
    fs::create_dir(sub.join("inner")).expect("mkdir");
    r.walk();
    assert!(r.mon.is_watched(b"sub/inner"));
    fs::write(sub.join("inner/x"), b"x").expect("write");
    fs::write(r.root.join("top"), b"t").expect("write");
    r.wait("events from both filesystems", |c| {
        c.contains(&created("sub/inner/x", false)) && c.contains(&created("top", false))
    });
}
