//! Live scenarios through the real binary: the daemon is started on a temp
//! tree, we wait for the initial sync, mutate the source with std::fs and
//! wait (by polling with a deadline) until the destination matches again.
//! Every scenario runs against the built-in `mirror` and against
//! `rsyncdirect` (real rsync; skipped when rsync is missing unless CI=true).
//! Delay windows are off (`-t0 -w0`) except in the tests about them.
//! This file owns no daemon logic; it only observes the binary from outside.

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

/// Generous deadline for anything to reach the destination.
const SYNC: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, Debug)]
enum Mode {
    Mirror,
    Rsync,
}

impl Mode {
    fn args(self) -> Vec<&'static str> {
        match self {
            Mode::Mirror => vec!["-M", "mirror"],
            Mode::Rsync => vec!["-M", "rsyncdirect"],
        }
    }
}

/// Starts the daemon in `mode` with `extra` args and waits until it is live:
/// initial sync done and live changes flowing (see `Daemon::wait_live`).
fn start(env: &TestEnv, mode: Mode, extra: &[&str]) -> Daemon {
    let mut args = mode.args();
    args.extend_from_slice(extra);
    let mut d = Daemon::start(env, &args);
    d.wait_live(env, SYNC);
    d
}

/// Starts with no delay windows (`-t0 -w0`) and waits for the initial sync.
fn start_now(env: &TestEnv, mode: Mode) -> Daemon {
    start(env, mode, &["-t0", "-w0"])
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
}

// ---------------------------------------------------------------------------
// Scenarios, each run for both modes (see the macro at the bottom).
// ---------------------------------------------------------------------------

fn file_lifecycle(mode: Mode) {
    let env = TestEnv::new();
    env.write("pre", "existed before start");
    let mut d = start_now(&env, mode);

    env.write("a.txt", "hello");
    d.wait_synced(&env, SYNC);

    env.write("a.txt", "HELLO, rewritten and longer");
    d.wait_synced(&env, SYNC);

    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(env.src_path("a.txt"))
        .unwrap();
    std::io::Write::write_all(&mut f, b" + appended").unwrap();
    drop(f);
    d.wait_synced(&env, SYNC);

    // Same size, different bytes: a size-only check would miss this.
    let same_len = vec![b'z'; fs::metadata(env.src_path("a.txt")).unwrap().len() as usize];
    env.write("a.txt", &same_len);
    d.wait_synced(&env, SYNC);

    fs::OpenOptions::new()
        .write(true)
        .open(env.src_path("a.txt"))
        .unwrap()
        .set_len(3)
        .unwrap();
    d.wait_synced(&env, SYNC);

    fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(env.src_path("a.txt"))
        .unwrap();
    d.wait_synced(&env, SYNC);
    assert_eq!(env.dst_read("a.txt").as_deref(), Some(&b""[..]));

    env.write("empty", "");
    d.wait_synced(&env, SYNC);
    assert_eq!(env.dst_read("empty").as_deref(), Some(&b""[..]));

    fs::remove_file(env.src_path("a.txt")).unwrap();
    fs::remove_file(env.src_path("pre")).unwrap();
    d.wait_synced(&env, SYNC);
    assert!(!env.dst_has("a.txt") && !env.dst_has("pre"));
}

fn deep_tree_created_fast(mode: Mode) {
    let env = TestEnv::new();
    let mut d = start_now(&env, mode);
    // Files land in each new directory before the daemon can possibly have
    // put a watch on it: they must still arrive (the tree lists new dirs).
    for branch in ["x", "y", "z"] {
        let mut p = String::from(branch);
        for level in 0..12 {
            p.push_str(&format!("/l{level}"));
            env.mkdir_p(&p);
            env.write(format!("{p}/f{level}"), format!("{p} {level}"));
        }
    }
    fs::create_dir_all(env.src_path("p/q/r/s/t/u/v/w")).unwrap();
    env.write("p/q/r/s/t/u/v/w/leaf", "deepest");
    d.wait_synced(&env, SYNC);

    // And later changes inside the deep dirs are watched.
    env.write("x/l0/l1/l2/l3/l4/l5/l6/l7/l8/l9/l10/l11/late", "late");
    env.write("p/q/r/s/t/u/v/w/leaf", "changed");
    d.wait_synced(&env, SYNC);
}

fn rm_rf_populated(mode: Mode) {
    let env = TestEnv::new();
    for i in 0..5 {
        env.mkdir_p(format!("big/d{i}/sub"));
        for j in 0..10 {
            env.write(format!("big/d{i}/f{j}"), format!("{i}/{j}"));
            env.write(format!("big/d{i}/sub/g{j}"), "g");
        }
    }
    env.mkdir_p("keep");
    env.write("keep/k", "k");
    let mut d = start_now(&env, mode);
    fs::remove_dir_all(env.src_path("big")).unwrap();
    d.wait_synced(&env, SYNC);
    assert!(!env.dst_has("big"));
    assert!(env.dst_has("keep/k"));

    // Created and removed again right away: must not linger in dst.
    env.mkdir_p("flash/a/b");
    env.write("flash/a/b/c", "c");
    fs::remove_dir_all(env.src_path("flash")).unwrap();
    env.write("marker", "m");
    d.wait_synced(&env, SYNC);
}

fn rename_file_and_dir(mode: Mode) {
    let env = TestEnv::new();
    env.mkdir_p("d1/inner");
    env.mkdir_p("d2");
    env.write("d1/f", "f");
    env.write("d1/inner/g", "g");
    env.write("top", "top");
    let mut d = start_now(&env, mode);

    fs::rename(env.src_path("top"), env.src_path("top-renamed")).unwrap();
    d.wait_synced(&env, SYNC);

    fs::rename(env.src_path("top-renamed"), env.src_path("d2/moved")).unwrap();
    d.wait_synced(&env, SYNC);

    // Rename over an existing file.
    env.write("d2/other", "other");
    d.wait_synced(&env, SYNC);
    fs::rename(env.src_path("d2/moved"), env.src_path("d2/other")).unwrap();
    d.wait_synced(&env, SYNC);

    fs::rename(env.src_path("d1"), env.src_path("d2/d1-renamed")).unwrap();
    d.wait_synced(&env, SYNC);
    assert!(!env.dst_has("d1"));

    // The renamed dir is still watched, under its new name.
    env.write("d2/d1-renamed/inner/new", "new");
    env.write("d2/d1-renamed/f", "f changed");
    d.wait_synced(&env, SYNC);

    // Swap names through a temporary, quickly.
    env.mkdir_p("s1");
    env.mkdir_p("s2");
    env.write("s1/one", "1");
    env.write("s2/two", "2");
    fs::rename(env.src_path("s1"), env.src_path("tmp")).unwrap();
    fs::rename(env.src_path("s2"), env.src_path("s1")).unwrap();
    fs::rename(env.src_path("tmp"), env.src_path("s2")).unwrap();
    d.wait_synced(&env, SYNC);
    env.write("s1/after-swap", "x");
    env.write("s2/after-swap", "y");
    d.wait_synced(&env, SYNC);
}

fn move_dir_in_and_out(mode: Mode) {
    let env = TestEnv::new();
    let mut d = start_now(&env, mode);

    // Built outside (unwatched), then moved in whole.
    let staged = env.outside_path("staged");
    fs::create_dir_all(staged.join("a/b")).unwrap();
    fs::write(staged.join("f"), "f").unwrap();
    fs::write(staged.join("a/b/g"), "g").unwrap();
    fs::rename(&staged, env.src_path("moved-in")).unwrap();
    d.wait_synced(&env, SYNC);

    // The moved-in dir and its subdirs are watched now.
    env.write("moved-in/a/b/h", "h");
    env.write("moved-in/a/new", "new");
    d.wait_synced(&env, SYNC);

    // Moved out: gone from dst.
    fs::rename(env.src_path("moved-in"), env.outside_path("moved-out")).unwrap();
    d.wait_synced(&env, SYNC);
    assert!(!env.dst_has("moved-in"));

    // Changes in the moved-out dir are not ours any more.
    fs::write(env.outside_path("moved-out/a/b/after"), "after").unwrap();
    fs::create_dir(env.outside_path("moved-out/newdir")).unwrap();
    env.write("marker", "marker");
    d.wait_synced(&env, SYNC);
    assert!(!env.dst_has("moved-out") && !env.dst_has("a/b/after") && !env.dst_has("after"));

    // A file moved in and out.
    fs::write(env.outside_path("lone"), "lone").unwrap();
    fs::rename(env.outside_path("lone"), env.src_path("lone")).unwrap();
    d.wait_synced(&env, SYNC);
    fs::rename(env.src_path("lone"), env.outside_path("lone")).unwrap();
    d.wait_synced(&env, SYNC);
}

/// Regression: a directory deleted and re-created under the same name must be
/// watched again ("ghost" watch left on the old inode, new one never added).
fn recreated_dir_is_watched(mode: Mode) {
    let env = TestEnv::new();
    env.mkdir_p("d/sub");
    env.write("d/sub/f", "1");
    let mut d = start_now(&env, mode);

    // Slow: the deletion is synced before the re-creation.
    fs::remove_dir_all(env.src_path("d")).unwrap();
    d.wait_synced(&env, SYNC);
    env.mkdir_p("d/sub");
    d.wait_synced(&env, SYNC);
    env.write("d/sub/f", "2");
    env.write("d/g", "g");
    d.wait_synced(&env, SYNC);

    // Fast: deleted and re-created in one burst, then changed after the sync.
    fs::remove_dir_all(env.src_path("d")).unwrap();
    env.mkdir_p("d/sub");
    d.wait_synced(&env, SYNC);
    env.write("d/sub/f", "3");
    d.wait_synced(&env, SYNC);
    env.write("d/sub/f2", "4");
    env.write("d/h", "h");
    d.wait_synced(&env, SYNC);
}

fn symlinks_not_followed(mode: Mode) {
    let env = TestEnv::new();
    fs::create_dir(env.outside_path("secret")).unwrap();
    fs::write(env.outside_path("secret/content"), "must not be copied").unwrap();
    env.write("target", "t");
    env.mkdir_p("dir");
    let mut d = start_now(&env, mode);

    symlink("target", env.src_path("to-file")).unwrap();
    symlink("dir", env.src_path("to-dir")).unwrap();
    symlink("does/not/exist", env.src_path("dangling")).unwrap();
    symlink(env.outside_path("secret"), env.src_path("to-outside")).unwrap();
    symlink(rel(b"weird \xff name\n*?["), env.src_path("weird-target")).unwrap();
    symlink("../../../../escape", env.src_path("dir/up")).unwrap();
    d.wait_synced(&env, SYNC);
    let md = fs::symlink_metadata(env.dst_path("to-outside")).unwrap();
    assert!(md.file_type().is_symlink(), "to-outside was followed");

    // Re-pointing a link is a change too.
    fs::remove_file(env.src_path("to-file")).unwrap();
    symlink("elsewhere", env.src_path("to-file")).unwrap();
    // A symlink replaced by a file and a file replaced by a symlink.
    fs::remove_file(env.src_path("dangling")).unwrap();
    env.write("dangling", "now a file");
    fs::remove_file(env.src_path("target")).unwrap();
    symlink("to-file", env.src_path("target")).unwrap();
    d.wait_synced(&env, SYNC);

    fs::remove_file(env.src_path("to-dir")).unwrap();
    d.wait_synced(&env, SYNC);
}

fn modes_are_kept(mode: Mode) {
    let env = TestEnv::new();
    env.write("exec", "#!/bin/sh\n");
    chmod(&env.src_path("exec"), 0o755);
    env.write("private", "p");
    chmod(&env.src_path("private"), 0o600);
    env.mkdir_p("closed");
    chmod(&env.src_path("closed"), 0o700);
    let mut d = start_now(&env, mode);

    // Attribute-only changes must be synced.
    chmod(&env.src_path("exec"), 0o750);
    chmod(&env.src_path("private"), 0o640);
    chmod(&env.src_path("closed"), 0o755);
    d.wait_synced(&env, SYNC);

    env.write("new-exec", "x");
    chmod(&env.src_path("new-exec"), 0o711);
    fs::create_dir(env.src_path("newdir")).unwrap();
    chmod(&env.src_path("newdir"), 0o750);
    d.wait_synced(&env, SYNC);
}

/// Names that break shells, globs, rsync filter lists and UTF-8 assumptions.
const WEIRD: &[&[u8]] = &[
    b"with space",
    b" leading and trailing ",
    b"new\nline",
    b"star*",
    b"*",
    b"question?",
    b"[",
    b"[abc]",
    b"lone]",
    b"]",
    b"back\\slash",
    b"\\",
    b"-leading-dash",
    b"--",
    b"-",
    b"tab\there",
    b"non-utf8-\xff\xfe",
    b"latin1-caf\xe9",
    b"\xc3\xa9t\xc3\xa9",
    b"***",
];

fn weird_names(mode: Mode) {
    let env = TestEnv::new();
    let names: Vec<&[u8]> = WEIRD.to_vec();
    // Some exist before start (initial sync), some are created live.
    for n in &names[..names.len() / 2] {
        env.write(n, n);
    }
    let mut d = start_now(&env, mode);
    for n in &names[names.len() / 2..] {
        env.write(n, n);
    }
    d.wait_synced(&env, SYNC);

    // Dirs with weird names, containing weird names.
    for n in &names {
        let dir = [b"dir ".as_slice(), n].concat();
        env.mkdir_p(&dir);
        env.write([dir.as_slice(), b"/", n].concat(), "inner");
    }
    d.wait_synced(&env, SYNC);

    // Modify, rename, delete weird names: a glob `*` must not match others.
    env.write("*", "only the star changes");
    fs::remove_file(env.src_path("[abc]")).unwrap();
    fs::remove_file(env.src_path("question?")).unwrap();
    fs::rename(env.src_path("new\nline"), env.src_path("renamed\nline")).unwrap();
    fs::rename(
        env.src_path(b"dir non-utf8-\xff\xfe"),
        env.src_path(b"dir \xff renamed"),
    )
    .unwrap();
    fs::remove_dir_all(env.src_path("dir *")).unwrap();
    d.wait_synced(&env, SYNC);
    assert!(env.dst_has("star*") && env.dst_has("***") && env.dst_has("dir ***"));
}

/// Names at the limits: 255 bytes (NAME_MAX, so a temp name cannot just
/// add to it), a path over 2,000 bytes deep, and names that look like a sync
/// tool's own temporaries.
fn names_at_the_limits(mode: Mode) {
    let env = TestEnv::new();
    let long = "L".repeat(255);
    let mut d = start_now(&env, mode);
    env.write(&long, "longest name");
    let long_dir = "D".repeat(255);
    env.mkdir_p(&long_dir);
    env.write(format!("{long_dir}/{long}"), "inside");
    let mut deep = String::new();
    for i in 0..10 {
        deep.push_str(&format!("{i}{}/", "d".repeat(200)));
    }
    env.mkdir_p(&deep);
    env.write(format!("{deep}leaf"), "deep");
    for name in [
        ".livesync.x.0123456789abcdef",
        ".livesync.",
        ".x.AbC123",
        ".~tmp~",
    ] {
        env.write(name, name);
    }
    d.wait_synced(&env, SYNC);
    env.write(&long, "changed");
    env.write(format!("{deep}leaf"), "changed too");
    fs::remove_file(env.src_path(".livesync.x.0123456789abcdef")).unwrap();
    d.wait_synced(&env, SYNC);
}

/// A dir moved out keeps its inotify watch (watches follow inodes): moved
/// back in under another name, it must be synced under the new name only.
fn dir_moved_out_and_back_in(mode: Mode) {
    let env = TestEnv::new();
    env.mkdir_p("d/sub");
    env.write("d/sub/f", "f");
    let mut d = start_now(&env, mode);
    fs::rename(env.src_path("d"), env.outside_path("d")).unwrap();
    fs::write(env.outside_path("d/sub/while-outside"), "w").unwrap();
    d.wait_synced(&env, SYNC);
    fs::rename(env.outside_path("d"), env.src_path("back")).unwrap();
    d.wait_synced(&env, SYNC);
    env.write("back/sub/after", "a");
    env.write("back/sub/f", "changed");
    d.wait_synced(&env, SYNC);
    // Out and in again, fast, under the old name.
    fs::rename(env.src_path("back"), env.outside_path("again")).unwrap();
    fs::rename(env.outside_path("again"), env.src_path("d")).unwrap();
    env.write("d/sub/last", "l");
    d.wait_synced(&env, SYNC);
}

/// Changes made while the initial sync is running are synced after it.
fn changes_during_initial_sync(mode: Mode) {
    let env = TestEnv::new();
    let blob = vec![b'.'; 8 * 1024];
    for i in 0..40 {
        env.mkdir_p(format!("d{i:02}"));
        for j in 0..40 {
            env.write(format!("d{i:02}/f{j:02}"), &blob);
        }
    }
    let mut args = mode.args();
    args.extend(["-t0", "-w0"]);
    let mut d = Daemon::start(&env, &args);
    // As soon as the initial sync has visibly begun, mutate all over the tree.
    d.wait_until(SYNC, "initial sync to begin", || {
        fs::read_dir(&env.dst).unwrap().next().is_some()
    });
    for i in 0..40 {
        match i % 4 {
            0 => env.write(format!("d{i:02}/f00"), "rewritten during initial sync"),
            1 => fs::remove_file(env.src_path(format!("d{i:02}/f01"))).unwrap(),
            2 => env.write(format!("d{i:02}/new"), "created during initial sync"),
            _ => fs::remove_dir_all(env.src_path(format!("d{i:02}"))).unwrap(),
        }
    }
    env.mkdir_p("late/a/b");
    env.write("late/a/b/c", "late");
    fs::rename(env.src_path("d00"), env.src_path("d00-renamed")).unwrap();
    d.wait_synced(&env, Duration::from_secs(60));
}

/// `-t1`: a change waits for the window: absent well before it, present soon after.
fn delay_window(mode: Mode) {
    let env = TestEnv::new();
    env.write("initial", "i");
    let mut d = start(&env, mode, &["-t1", "-w0"]);
    for round in 0..2 {
        let name = format!("late-{round}");
        let t0 = Instant::now();
        env.write(&name, "late");
        assert_stays(
            Duration::from_millis(300),
            &format!("{name} absent from dst before the 1 s window"),
            || !env.dst_has(&name),
        );
        // "Within ~3 s"; a little slack for a loaded 2-core machine.
        let left = Duration::from_secs(4).saturating_sub(t0.elapsed());
        d.wait_until(left, &format!("{name} in dst within the window"), || {
            env.dst_has(&name)
        });
        d.wait_synced(&env, SYNC);
    }
}

/// `-R`: excluded files and dirs are not synced (initially and live), included ones are.
fn rules_exclude(mode: Mode) {
    let env = TestEnv::new();
    let rules = env.root.join("rules");
    fs::write(
        &rules,
        "# skip editor droppings and caches\n-f\\.tmp$\n-d(^|/)cache$\n-d(^|/)\\[x\\]\\*$\n+*\n",
    )
    .unwrap();
    env.write("keep.txt", "k");
    env.write("skip.tmp", "s");
    env.mkdir_p("cache/inner");
    env.write("cache/inner/c", "c");
    env.mkdir_p("sub");
    env.write("sub/deep.tmp", "s");
    let mut args = mode.args();
    args.extend(["-t0", "-w0", "-R"]);
    let rules_s = rules.to_str().unwrap();
    args.push(rules_s);
    let mut d = Daemon::start(&env, &args);
    d.wait_until(SYNC, "keep.txt synced", || {
        env.dst_has("keep.txt") && env.dst_has("sub")
    });

    env.write("late.tmp", "excluded");
    env.write("sub/late.tmp", "excluded");
    env.write("cache/late", "excluded");
    env.write("late.txt", "included");
    env.write("sub/late.txt", "included");
    // An excluded dir whose name is a glob matching the included names around it.
    env.mkdir_p("[x]*/in");
    env.write("[x]*/in/f", "excluded");
    for glob_victim in ["x", "xyz", "[x]", "x*"] {
        env.write(glob_victim, "included");
    }
    env.mkdir_p("new/deeper");
    env.write("new/deeper/a.tmp", "excluded");
    env.write("new/deeper/a.txt", "included");
    d.wait_until(SYNC, "included files synced", || {
        [
            "late.txt",
            "sub/late.txt",
            "x",
            "xyz",
            "[x]",
            "x*",
            "new/deeper/a.txt",
        ]
        .iter()
        .all(|p| env.dst_has(p))
    });
    // The excluded ones were written first; give them the same chance to show up.
    env.write("marker", "m");
    d.wait_until(SYNC, "marker synced", || env.dst_has("marker"));
    for excluded in [
        "skip.tmp",
        "sub/deep.tmp",
        "cache",
        "late.tmp",
        "sub/late.tmp",
        "[x]*",
        "new/deeper/a.tmp",
    ] {
        assert!(
            !env.dst_has(excluded),
            "excluded {excluded} was synced\n{}",
            d.context()
        );
    }
    assert_eq!(env.dst_read("keep.txt").as_deref(), Some(&b"k"[..]));
}

/// The initial sync makes a stale destination equal: extras deleted (also
/// deep ones), changed files replaced, type clashes resolved.
fn initial_sync_replaces_stale_destination(mode: Mode) {
    let env = TestEnv::new();
    env.mkdir_p("d/sub");
    env.write("d/sub/f", "fresh");
    env.write("changed", "new contents, longer than before");
    env.write("was-dir", "now a file");
    env.mkdir_p("was-file");
    let stale = |p: &str| env.dst.join(p);
    fs::create_dir_all(stale("d/sub/old-dir/deeper")).unwrap();
    fs::write(stale("d/sub/old-dir/deeper/x"), "x").unwrap();
    fs::write(stale("extra"), "extra").unwrap();
    fs::write(stale("changed"), "old").unwrap();
    fs::create_dir_all(stale("was-dir/inner")).unwrap();
    fs::write(stale("was-dir/inner/y"), "y").unwrap();
    fs::write(stale("was-file"), "a file where a dir belongs").unwrap();
    symlink("nowhere", stale("d/stale-link")).unwrap();
    let mut d = start_now(&env, mode);
    d.wait_synced(&env, SYNC);
}

/// FIFOs are recreated, not read (reading one would block the sync forever).
fn fifos_are_recreated(mode: Mode) {
    let env = TestEnv::new();
    let mkfifo = |p: &Path| {
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(
            unsafe { libc::mkfifo(c.as_ptr(), 0o640) },
            0,
            "mkfifo {}",
            p.display()
        );
    };
    mkfifo(&env.src_path("before"));
    env.write("f", "f");
    let mut d = start_now(&env, mode);
    mkfifo(&env.src_path("live"));
    env.write("after", "after the fifo");
    d.wait_synced(&env, SYNC);
    fs::remove_file(env.src_path("before")).unwrap();
    d.wait_synced(&env, SYNC);
}

/// SIGTERM syncs what is still waiting in a delay window, then exits 0.
fn sigterm_flushes_pending(mode: Mode) {
    let env = TestEnv::new();
    env.write("initial", "i");
    let mut args = mode.args();
    args.extend(["-t30", "-w0"]);
    let mut d = Daemon::start(&env, &args);
    // Not `start`: its sentinel would wait 30 s. A non-empty source that is
    // synced proves the watches are in place (they come before the initial sync).
    d.wait_synced(&env, SYNC);
    env.write("pending", "waits for the 30 s window");
    // Also gives the daemon time to read the event before the signal.
    assert_stays(
        Duration::from_millis(500),
        "pending absent inside the -t30 window",
        || !env.dst_has("pending"),
    );
    let st = d
        .signal_and_wait(Signal::SIGTERM, secs(10.0))
        .expect("no exit within 10 s of SIGTERM");
    assert_eq!(
        st.code(),
        Some(0),
        "SIGTERM exit status {st}\n{}",
        d.context()
    );
    assert_eq!(
        env.diff(),
        None,
        "pending change not synced before exit\n{}",
        d.context()
    );
}

/// Changes to files bigger than `-B` wait for the `-T` window; small files
/// go by `-t`. (A big file is judged by its size when the change is seen;
/// a new file is seen at size 0, so this checks changes to existing ones.)
fn big_files_use_their_own_window(mode: Mode) {
    let env = TestEnv::new();
    env.write("big.bin", vec![7u8; 64 * 1024]);
    env.write("small.txt", "small");
    let mut d = start(&env, mode, &["-t0", "-w0", "-B", "4096", "-T", "2"]);
    let t0 = Instant::now();
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(env.src_path("big.bin"))
        .unwrap();
    std::io::Write::write_all(&mut f, b"appended").unwrap();
    drop(f);
    env.write("small.txt", "small, changed");
    d.wait_until(SYNC, "small.txt change synced at once", || {
        env.dst_read("small.txt").as_deref() == Some(b"small, changed")
    });
    let big_len = 64 * 1024 + 8;
    let big_synced = || env.dst_read("big.bin").is_some_and(|c| c.len() == big_len);
    if t0.elapsed() < Duration::from_millis(1500) {
        assert!(
            !big_synced(),
            "big.bin change was synced by the -t lane\n{}",
            d.context()
        );
    }
    d.wait_until(
        secs(8.0),
        "big.bin change synced after the -T window",
        big_synced,
    );
    d.wait_synced(&env, SYNC);
}

// ---------------------------------------------------------------------------
// Mode-specific and process-level tests
// ---------------------------------------------------------------------------

/// A failing handler is retried: the change still arrives and the log says so.
#[test]
fn rsyncdirect_failing_handler_is_retried() {
    if !require_tool("rsync") {
        return;
    }
    let env = TestEnv::new();
    let rsync = which("rsync").unwrap();
    let count = env.root.join("failures");
    let armed = env.root.join("armed");
    let script = env.root.join("flaky-rsync");
    let quote = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', r"'\''"));
    fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             # Fails (exit 12) the first 2 times once armed, then behaves like rsync.\n\
             if [ -e {armed} ]; then\n\
             \x20 n=$(cat {count} 2>/dev/null || echo 0)\n\
             \x20 if [ \"$n\" -lt 2 ]; then echo $((n + 1)) > {count}; exit 12; fi\n\
             fi\n\
             exec {rsync} \"$@\"\n",
            armed = quote(&armed),
            count = quote(&count),
            rsync = quote(&rsync),
        ),
    )
    .unwrap();
    chmod(&script, 0o755);
    env.write("initial", "i");
    let mut d = start(
        &env,
        Mode::Rsync,
        &["-t0", "-w0", "-S", script.to_str().unwrap()],
    );

    fs::write(&armed, "").unwrap();
    env.write("after-failures", "arrives anyway");
    d.wait_synced(&env, Duration::from_secs(30));
    assert_eq!(
        fs::read_to_string(&count).unwrap().trim(),
        "2",
        "handler was not run 3 times"
    );
    let log = d.log().to_lowercase();
    assert!(
        log.lines().any(|l| l.contains("12")
            && (l.contains("fail") || l.contains("error") || l.contains("exit"))),
        "the log does not mention the handler failure (exit 12)\n{}",
        d.context()
    );
}

/// With `-r 1` a batch that fails is not retried: the daemon exits 1 and says why.
#[test]
fn rsyncdirect_gives_up_after_r_tries_with_exit_1() {
    if !require_tool("rsync") {
        return;
    }
    let env = TestEnv::new();
    env.write("f", "f");
    let script = env.root.join("always-fails");
    fs::write(&script, "#!/bin/sh\nexit 12\n").unwrap();
    chmod(&script, 0o755);
    let mut d = Daemon::start(
        &env,
        &[
            "-M",
            "rsyncdirect",
            "-t0",
            "-w0",
            "-r",
            "1",
            "-S",
            script.to_str().unwrap(),
        ],
    );
    let st = d.wait_exit(Duration::from_secs(20));
    assert_eq!(st.code(), Some(1), "exit status {st}\n{}", d.context());
    let log = d.log();
    assert!(
        log.lines().any(|l| l.contains("12")),
        "the log does not say the handler failed with exit code 12\n{}",
        d.context()
    );
}

#[test]
fn sigterm_exits_cleanly() {
    let env = TestEnv::new();
    env.write("f", "f");
    let mut d = start_now(&env, Mode::Mirror);
    let st = d
        .signal_and_wait(Signal::SIGTERM, secs(5.0))
        .expect("no exit within 5 s of SIGTERM");
    assert_eq!(
        st.code(),
        Some(0),
        "SIGTERM exit status {st}\n{}",
        d.context()
    );
}

#[test]
fn sigint_exits_cleanly() {
    let env = TestEnv::new();
    env.write("f", "f");
    let mut d = start_now(&env, Mode::Mirror);
    let st = d
        .signal_and_wait(Signal::SIGINT, secs(5.0))
        .expect("no exit within 5 s of SIGINT");
    assert_eq!(
        st.code(),
        Some(0),
        "SIGINT exit status {st}\n{}",
        d.context()
    );
}

/// Fractional windows are accepted and honoured: `-t0.6`.
#[test]
fn fractional_delay_window() {
    let env = TestEnv::new();
    let mut d = start(&env, Mode::Mirror, &["-t0.6", "-w0"]);
    let t0 = Instant::now();
    env.write("late", "late");
    assert_stays(
        Duration::from_millis(200),
        "late absent before the 0.6 s window",
        || !env.dst_has("late"),
    );
    let left = Duration::from_secs(3).saturating_sub(t0.elapsed());
    d.wait_until(left, "late in dst soon after the 0.6 s window", || {
        env.dst_has("late")
    });
}

/// No `-M` with `-D`: the built-in mirror runs (no rsync needed).
#[test]
fn default_mode_is_mirror_when_d_given() {
    let env = TestEnv::new();
    env.write("f", "f");
    let mut d = Daemon::start(&env, &["-t0", "-w0"]);
    d.wait_synced(&env, SYNC);
    env.write("g", "g");
    d.wait_synced(&env, SYNC);
}

/// Two names of one inode: an edit through either reaches both names at
/// the destination (the daemon syncs every known name of a changed
/// multi-link file); the built-in mirror keeps them one inode.
fn hard_links_edited_through_either_name(mode: Mode) {
    use std::os::unix::fs::MetadataExt;
    let env = TestEnv::new();
    env.mkdir_p("sub");
    env.write("a", "one");
    fs::hard_link(env.src_path("a"), env.src_path("sub/b")).unwrap();
    let mut d = start_now(&env, mode);
    let linked = || {
        let ino = |rel: &str| {
            fs::symlink_metadata(env.dst_path(rel))
                .map(|m| m.ino())
                .ok()
        };
        ino("a").is_some() && ino("a") == ino("sub/b")
    };
    if matches!(mode, Mode::Mirror) {
        assert!(linked(), "a and sub/b are one file at the destination");
    }
    for (name, content) in [("a", "two, and longer"), ("sub/b", "three")] {
        // Rewritten in place: the same inode, so both names change.
        fs::write(env.src_path(name), content).unwrap();
        d.wait_until(SYNC, &format!("both names show {content:?}"), || {
            env.dst_read("a").as_deref() == Some(content.as_bytes())
                && env.dst_read("sub/b").as_deref() == Some(content.as_bytes())
        });
        if matches!(mode, Mode::Mirror) {
            assert!(linked(), "still one file after an edit through {name}");
        }
    }
}

/// `--xattrs`: user xattrs of files and directories reach the destination
/// at the initial sync and when they change or go later.
fn xattrs_follow_with_the_option(mode: Mode) {
    let env = TestEnv::new();
    env.mkdir_p("d");
    env.write("d/f", "content");
    if !set_xattr(&env.src_path("d/f"), "user.pre", Some(b"1")) {
        eprintln!("skipping: the temp dir's file system has no user xattrs");
        return;
    }
    assert!(set_xattr(&env.src_path("d"), "user.dir", Some(b"x")));
    let mut d = start(&env, mode, &["-t0", "-w0", "--xattrs"]);
    d.wait_until(SYNC, "the initial sync's xattrs", || {
        xattr(&env.dst_path("d/f"), "user.pre").as_deref() == Some(b"1")
            && xattr(&env.dst_path("d"), "user.dir").as_deref() == Some(b"x")
    });
    assert!(set_xattr(&env.src_path("d/f"), "user.new", Some(b"2")));
    assert!(set_xattr(&env.src_path("d/f"), "user.pre", None));
    d.wait_until(SYNC, "a new xattr added, a removed one gone", || {
        xattr(&env.dst_path("d/f"), "user.new").as_deref() == Some(b"2")
            && xattr(&env.dst_path("d/f"), "user.pre").is_none()
    });
}

macro_rules! both_modes {
    ($($name:ident),* $(,)?) => {
        mod mirror {
            $( #[test] fn $name() { super::$name(super::Mode::Mirror) } )*
        }
        mod rsyncdirect {
            $( #[test] fn $name() {
                if !super::require_tool("rsync") { return; }
                super::$name(super::Mode::Rsync)
            } )*
        }
    };
}

both_modes!(
    file_lifecycle,
    deep_tree_created_fast,
    rm_rf_populated,
    rename_file_and_dir,
    move_dir_in_and_out,
    recreated_dir_is_watched,
    symlinks_not_followed,
    modes_are_kept,
    weird_names,
    changes_during_initial_sync,
    delay_window,
    rules_exclude,
    sigterm_flushes_pending,
    big_files_use_their_own_window,
    initial_sync_replaces_stale_destination,
    fifos_are_recreated,
    names_at_the_limits,
    dir_moved_out_and_back_in,
    hard_links_edited_through_either_name,
    xattrs_follow_with_the_option,
);
