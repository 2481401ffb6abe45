//! rsyncdirect against the real rsync: include/exclude lists for hostile
//! file names, deletes, moves and type changes end with a destination equal
//! to the source, and only the paths in the batch are touched.
//!
//! These tests need `rsync` in PATH. Under `CI=true` a missing rsync fails
//! the test; elsewhere the test is skipped with a message. Every test works
//! in its own temp dirs and starts no process that outlives its run.

use livesync::batch::{Batch, Lane, Op};
use livesync::handler::rsync::{RsyncConfig, RsyncDirect};
use livesync::handler::Handler;
use livesync::path::display;
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// True when rsync can run; panics under CI=true when it cannot.
fn have_rsync() -> bool {
    let ok = Command::new("rsync")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("CI").as_deref() != Some(OsStr::new("true")),
            "rsync is required for these tests under CI=true: install it (apt-get install rsync)"
        );
        eprintln!("skipping: rsync is not installed");
    }
    ok
}

/// Names that break naive list writers.
const NASTY: &[&[u8]] = &[
    b"with space",
    b"trailing ",
    b"new\nline",
    b"cr\r",
    b"star*",
    b"q?mark",
    b"[bracket",
    b"]",
    b"x]y",
    b"back\\slash",
    b"-leading",
    b"#hash",
    b";semi",
    b"+ plus",
    b"- minus",
    b"!",
    b"\xff\xfe",
];

struct Env {
    _tmp: tempfile::TempDir,
    src: PathBuf,
    dst: PathBuf,
}

impl Env {
    fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let base = fs::canonicalize(tmp.path()).unwrap();
        let (src, dst) = (base.join("src"), base.join("dst"));
        fs::create_dir(&src).unwrap();
        fs::create_dir(&dst).unwrap();
        Env {
            _tmp: tmp,
            src,
            dst,
        }
    }

    fn cfg(&self) -> RsyncConfig {
        RsyncConfig::new("rsync", &self.src, self.dst.as_os_str())
    }

    fn handler(&self) -> RsyncDirect {
        RsyncDirect::new(self.cfg()).unwrap()
    }
}

fn at(root: &Path, rel: &[u8]) -> PathBuf {
    livesync::path::abs(root, rel)
}

fn write(root: &Path, rel: &[u8], contents: &[u8]) {
    let p = at(root, rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, contents).unwrap();
}

fn mkdir(root: &Path, rel: &[u8]) {
    fs::create_dir_all(at(root, rel)).unwrap();
}

fn chmod(root: &Path, rel: &[u8], mode: u32) {
    fs::set_permissions(at(root, rel), fs::Permissions::from_mode(mode)).unwrap();
}

fn join(a: &[u8], b: &[u8]) -> Vec<u8> {
    livesync::path::join(a, b)
}

fn sync(p: &[u8], recursive: bool) -> Op {
    Op::Sync {
        path: p.to_vec(),
        recursive,
    }
}

fn mv(from: &[u8], to: &[u8]) -> Op {
    Op::Move {
        from: from.to_vec(),
        to: to.to_vec(),
    }
}

fn run(h: &mut RsyncDirect, ops: Vec<Op>) {
    let batch = Batch {
        ops,
        lane: Lane::Normal,
        attempt: 0,
        ..Default::default()
    };
    let report = h
        .run(&batch)
        .unwrap_or_else(|e| panic!("rsync failed: {e}"));
    assert_eq!(report.exit_code, Some(0));
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    Dir { mode: u32 },
    File { mode: u32, size: u64, data: Vec<u8> },
    Link { target: Vec<u8> },
    Other { mode: u32 },
}

/// Everything below `root` (lstat only), by relative path; the root is "".
fn snapshot(root: &Path) -> BTreeMap<Vec<u8>, Node> {
    let mut out = BTreeMap::new();
    let mut stack = vec![Vec::new()];
    while let Some(rel) = stack.pop() {
        let p = at(root, &rel);
        let m = fs::symlink_metadata(&p).unwrap();
        let mode = m.mode() & 0o7777;
        let ft = m.file_type();
        let node = if ft.is_dir() {
            for e in fs::read_dir(&p).unwrap() {
                stack.push(join(&rel, e.unwrap().file_name().as_bytes()));
            }
            Node::Dir { mode }
        } else if ft.is_symlink() {
            Node::Link {
                target: fs::read_link(&p).unwrap().into_os_string().into_vec(),
            }
        } else if ft.is_file() {
            Node::File {
                mode,
                size: m.len(),
                data: fs::read(&p).unwrap(),
            }
        } else {
            Node::Other { mode }
        };
        out.insert(rel, node);
    }
    out
}

/// Fails with a readable list of differences.
fn assert_same_maps(src: &BTreeMap<Vec<u8>, Node>, dst: &BTreeMap<Vec<u8>, Node>) {
    let mut diffs = Vec::new();
    for (k, v) in src {
        match dst.get(k) {
            None => diffs.push(format!("missing at dst: {}", display(k))),
            Some(d) if d != v => {
                diffs.push(format!("differs: {}: src {v:?} dst {d:?}", display(k)))
            }
            _ => {}
        }
    }
    for k in dst.keys().filter(|k| !src.contains_key(*k)) {
        diffs.push(format!("extra at dst: {}", display(k)));
    }
    assert!(diffs.is_empty(), "trees differ:\n{}", diffs.join("\n"));
}

fn assert_same(src: &Path, dst: &Path) {
    assert_same_maps(&snapshot(src), &snapshot(dst));
}

/// A source tree with every nasty name as a file, as a directory with
/// files of every nasty name, nested wildcards, modes and symlinks.
fn build_nasty_tree(src: &Path) {
    for &n in NASTY {
        write(src, n, n);
        let d = join(b"dirs", n);
        for &m in NASTY {
            write(src, &join(&d, m), m);
        }
    }
    write(src, b"dirs/[sub]/deep*/file?", b"deep");
    write(src, b"dirs/[sub]/deep*/x", b"x");
    write(src, b"a/tracked", b"v1");
    write(src, b"a/untracked", b"v1");
    write(src, b"a/del_untracked", b"v1");
    write(src, b"\xff\xfedir/n\nl/f", b"in a non-UTF-8 dir");
    chmod(src, b"star*", 0o640);
    chmod(src, b"-leading", 0o755);
    chmod(src, b"dirs/[sub]", 0o750);
    symlink("dirs", at(src, b"link")).unwrap();
    symlink("nowhere\\x*", at(src, b"dangling]")).unwrap();
}

#[test]
fn initial_sync_then_changes_converge_and_touch_only_the_batch() {
    if !have_rsync() {
        return;
    }
    let env = Env::new();
    let (src, dst) = (env.src.as_path(), env.dst.as_path());
    build_nasty_tree(src);
    let mut h = env.handler();

    run(&mut h, vec![sync(b"", true)]);
    assert_same(src, dst);

    // Modify, chmod, delete a file, delete a populated dir, move a dir, add
    // a new tree; plus changes that are NOT in the batch.
    write(src, b"star*", b"changed");
    chmod(src, b"star*", 0o600);
    write(src, b"dirs/back\\slash/new\nline", b"changed too");
    fs::remove_file(at(src, b"]")).unwrap();
    fs::remove_file(at(src, b"dirs/x]y/\xff\xfe")).unwrap();
    fs::remove_dir_all(at(src, b"dirs/[sub]")).unwrap();
    fs::remove_dir_all(at(src, b"dirs/q?mark")).unwrap();
    fs::rename(at(src, b"\xff\xfedir"), at(src, b"moved\n[dir]")).unwrap();
    fs::rename(
        at(src, b"dirs/#hash"),
        at(src, b"dirs/-leading/#hash moved"),
    )
    .unwrap();
    write(src, b"new[dir]/x*/y?", b"new");
    write(src, b"new[dir]/]", b"new");
    write(src, b"new\\dir/sub/f", b"new");
    fs::remove_dir_all(at(src, b"dirs/star*")).unwrap();
    mkdir(src, b"empty new]dir");
    // Another size: a same-size edit within the same second is invisible
    // to rsync's default quick check (see the modify-window test).
    write(src, b"a/tracked", b"v2 longer");
    write(src, b"a/untracked", b"v2 (not in batch)");
    fs::remove_file(at(src, b"a/del_untracked")).unwrap();
    let before = snapshot(dst);

    run(
        &mut h,
        vec![
            mv(b"\xff\xfedir", b"moved\n[dir]"),
            mv(b"dirs/#hash", b"dirs/-leading/#hash moved"),
            sync(b"star*", false),
            sync(b"dirs/back\\slash/new\nline", false),
            sync(b"]", false),
            sync(b"dirs/x]y/\xff\xfe", false),
            sync(b"dirs/[sub]", false),
            sync(b"dirs/q?mark", false),
            sync(b"new[dir]", true),
            sync(b"new\\dir", true),
            sync(b"dirs/star*", false),
            sync(b"empty new]dir", true),
            sync(b"a/tracked", false),
        ],
    );

    // Everything but the untouched siblings matches the source …
    let untouched: [&[u8]; 2] = [b"a/untracked", b"a/del_untracked"];
    let strip = |mut m: BTreeMap<Vec<u8>, Node>| {
        for u in untouched {
            m.remove(u);
        }
        m
    };
    assert_same_maps(&strip(snapshot(src)), &strip(snapshot(dst)));
    // … and the siblings are exactly as they were at the destination.
    let after = snapshot(dst);
    for u in untouched {
        assert_eq!(after.get(u), before.get(u), "{} was touched", display(u));
    }
    assert!(after.contains_key(&b"a/del_untracked"[..]));

    // Syncing the parent recursively brings them in line too.
    run(&mut h, vec![sync(b"a", true)]);
    assert_same(src, dst);
}

#[test]
fn type_changes_converge() {
    if !have_rsync() {
        return;
    }
    let env = Env::new();
    let (src, dst) = (env.src.as_path(), env.dst.as_path());
    write(src, b"p*/inner/f", b"1");
    write(src, b"q]", b"file");
    write(src, b"l\\", b"file");
    let mut h = env.handler();
    run(&mut h, vec![sync(b"", true)]);
    assert_same(src, dst);

    // A populated dir becomes a file, a file becomes a populated dir, a
    // file becomes a symlink: non-recursive ops for the first and last.
    fs::remove_dir_all(at(src, b"p*")).unwrap();
    write(src, b"p*", b"now a file");
    fs::remove_file(at(src, b"q]")).unwrap();
    write(src, b"q]/sub/g", b"now a dir");
    fs::remove_file(at(src, b"l\\")).unwrap();
    symlink("q]", at(src, b"l\\")).unwrap();
    run(
        &mut h,
        vec![sync(b"p*", false), sync(b"q]", true), sync(b"l\\", false)],
    );
    assert_same(src, dst);
}

#[test]
fn initial_sync_into_a_populated_destination_deletes_extras() {
    if !have_rsync() {
        return;
    }
    let env = Env::new();
    let (src, dst) = (env.src.as_path(), env.dst.as_path());
    write(src, b"keep", b"k");
    write(dst, b"keep", b"old");
    write(dst, b"extra\n*/deep/f", b"x");
    write(dst, b"[extra]", b"x");
    run(&mut env.handler(), vec![sync(b"", true)]);
    assert_same(src, dst);
}

#[test]
fn excluded_paths_are_neither_sent_nor_deleted() {
    if !have_rsync() {
        return;
    }
    for prefer_include in [false, true] {
        let env = Env::new();
        let (src, dst) = (env.src.as_path(), env.dst.as_path());
        write(src, b"skip dir/new", b"n");
        write(src, b"ex*cl", b"e");
        write(src, b"d/ex\ncl", b"e");
        write(src, b"d/ok", b"o");
        write(src, b"top", b"t");
        write(dst, b"skip dir/old", b"o");
        let mut cfg = env.cfg();
        cfg.prefer_include = prefer_include;
        let mut h = RsyncDirect::new(cfg).unwrap();
        h.set_excluded(vec![
            b"skip dir".to_vec(),
            b"ex*cl".to_vec(),
            b"d/ex\ncl".to_vec(),
        ]);
        run(&mut h, vec![sync(b"", true)]);
        let got = snapshot(dst);
        let names: Vec<String> = got.keys().map(|k| display(k)).collect();
        assert_eq!(
            names,
            [".", "d", "d/ok", "skip dir", "skip dir/old", "top"],
            "prefer_include={prefer_include}"
        );
    }
}

#[test]
fn include_limit_splits_into_several_runs() {
    if !have_rsync() {
        return;
    }
    let env = Env::new();
    let (src, dst) = (env.src.as_path(), env.dst.as_path());
    let mut ops = Vec::new();
    for i in 0..25 {
        let p = format!("d/sub [{i}]/f*{i}").into_bytes();
        write(src, &p, &p);
        ops.push(sync(&p, false));
    }
    let mut cfg = env.cfg();
    cfg.inclimit = 7;
    run(&mut RsyncDirect::new(cfg).unwrap(), ops);
    assert_same(src, dst);
}

#[test]
fn template_with_rsync_args_gets_from0_when_needed() {
    if !have_rsync() {
        return;
    }
    let env = Env::new();
    let (src, dst) = (env.src.as_path(), env.dst.as_path());
    write(src, b"line\nbreak/f\r", b"x");
    write(src, b"plain", b"y");
    let mut cfg = env.cfg();
    cfg.args = ["%RSYNC-ARGS%", "%watch-dir%/", "%destination-dir%/"]
        .iter()
        .map(OsString::from)
        .collect();
    run(&mut RsyncDirect::new(cfg).unwrap(), vec![sync(b"", true)]);
    assert_same(src, dst);
}

fn list_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

#[test]
fn private_list_dir_is_0700_and_list_files_0600_and_removed() {
    if !have_rsync() {
        return;
    }
    let env = Env::new();
    write(&env.src, b"f", b"x");

    // Removed after each run, and the private dir with the handler.
    let mut h = env.handler();
    let dir = h.lists_dir().to_path_buf();
    assert_eq!(mode(&dir), 0o700);
    run(&mut h, vec![sync(b"f", false)]);
    assert!(list_files(&dir).is_empty(), "{:?}", list_files(&dir));
    drop(h);
    assert!(!dir.exists());

    // Kept with keep_lists: 0600 files in the 0700 dir, with the lists.
    let mut cfg = env.cfg();
    cfg.keep_lists = true;
    let mut h = RsyncDirect::new(cfg).unwrap();
    let dir = h.lists_dir().to_path_buf();
    // Kept lists outlive the handler: clean up even when an assert fails.
    struct Cleanup(PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
    // Kept, the dir is renamed DIR.kept when the handler ends (out of the
    // reach of the next livesync's sweep of stale private dirs).
    let mut kept = dir.clone().into_os_string();
    kept.push(".kept");
    let kept = PathBuf::from(kept);
    let _cleanup = (Cleanup(dir.clone()), Cleanup(kept.clone()));
    run(&mut h, vec![sync(b"f", false)]);
    let files = list_files(&dir);
    assert_eq!(files.len(), 2, "{files:?}");
    for f in &files {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    let incl = files
        .iter()
        .find(|f| f.to_string_lossy().ends_with(".include"))
        .unwrap();
    assert_eq!(fs::read(incl).unwrap(), b"/f\n/f/***\n");
    drop(h);
    assert!(!dir.exists(), "renamed");
    assert_eq!(
        list_files(&kept).len(),
        2,
        "kept lists must survive the handler"
    );
}

#[test]
fn given_list_dir_is_used_and_a_planted_symlink_is_not_followed() {
    if !have_rsync() {
        return;
    }
    let env = Env::new();
    write(&env.src, b"f", b"x");
    let lists = tempfile::tempdir().unwrap();
    let victim = lists.path().join("victim");
    fs::write(&victim, b"precious").unwrap();
    // The first name the handler would pick.
    let planted = lists
        .path()
        .join(format!("nolabel.{}.1.exclude", std::process::id()));
    symlink(&victim, &planted).unwrap();

    let mut cfg = env.cfg();
    cfg.lists_dir = Some(lists.path().to_path_buf());
    let mut h = RsyncDirect::new(cfg).unwrap();
    assert_eq!(h.lists_dir(), lists.path());
    run(&mut h, vec![sync(b"f", false)]);
    assert_same(&env.src, &env.dst);
    assert_eq!(fs::read(&victim).unwrap(), b"precious");
    assert!(fs::symlink_metadata(&planted)
        .unwrap()
        .file_type()
        .is_symlink());
    // Only what was there before: the lists were removed.
    assert_eq!(list_files(lists.path()), vec![planted, victim]);
    drop(h);
    assert!(
        lists.path().exists(),
        "a given list dir is not ours to remove"
    );
}

#[test]
fn failing_rsync_is_an_error_naming_it() {
    if !have_rsync() {
        return;
    }
    let env = Env::new();
    write(&env.src, b"f", b"x");
    // A destination whose parent does not exist: rsync fails.
    let cfg = RsyncConfig::new(
        "rsync",
        &env.src,
        env.dst.join("no/such/parent").into_os_string(),
    );
    let batch = Batch {
        ops: vec![sync(b"f", false)],
        lane: Lane::Normal,
        attempt: 0,
        ..Default::default()
    };
    let e = RsyncDirect::new(cfg).unwrap().run(&batch).unwrap_err();
    assert!(e.to_string().contains("rsync exited with code"), "{e}");
}

/// Sets the mtime of `rel` to `secs` seconds plus `nanos`.
fn set_mtime(root: &Path, rel: &[u8], secs: u64, nanos: u32) {
    let t = std::time::UNIX_EPOCH + std::time::Duration::new(secs, nanos);
    fs::File::options()
        .write(true)
        .open(at(root, rel))
        .unwrap()
        .set_modified(t)
        .unwrap();
}

/// clsync's default arguments compare mtimes in whole seconds, so an edit
/// that keeps the size within the same second is skipped and lost. Our
/// default adds `--modify-window=-1` (nanoseconds); a template that spells
/// out clsync's exact arguments shows the loss.
#[test]
fn same_size_edit_in_the_same_second_is_synced_by_default() {
    if !have_rsync() {
        return;
    }
    let edit = |args: &[&str]| {
        let env = Env::new();
        let (src, dst) = (env.src.as_path(), env.dst.as_path());
        let mut cfg = env.cfg();
        cfg.args = args.iter().map(OsString::from).collect();
        let mut h = RsyncDirect::new(cfg).unwrap();
        write(src, b"f", b"v1");
        set_mtime(src, b"f", 1_700_000_000, 100);
        run(&mut h, vec![sync(b"f", false)]);
        write(src, b"f", b"v2");
        set_mtime(src, b"f", 1_700_000_000, 200);
        run(&mut h, vec![sync(b"f", false)]);
        fs::read(at(dst, b"f")).unwrap()
    };
    assert_eq!(edit(&[]), b"v2");
    assert_eq!(
        edit(&[
            "-aH",
            "--delete",
            "--include-from",
            "%INCLUDE-LIST-PATH%",
            "--exclude=*",
            "%watch-dir%/",
            "%destination-dir%/"
        ]),
        b"v1",
        "clsync's exact arguments miss the edit"
    );
}
