//! Tests of the mirror engine against real temporary directories. They own
//! nothing outside their own temp dirs; the tree comparison helper lives here
//! and nowhere else.

use super::*;
use crate::batch::Op;
use nix::sys::time::TimeSpec;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

// ----- helpers ------------------------------------------------------------

struct Env {
    _tmp: tempfile::TempDir,
    src: PathBuf,
    dst: PathBuf,
    /// A directory outside both trees: nothing may ever be written here.
    outside: PathBuf,
}

impl Env {
    fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().canonicalize().unwrap();
        let (src, dst, outside) = (base.join("src"), base.join("dst"), base.join("outside"));
        for d in [&src, &dst, &outside] {
            fs::create_dir(d).unwrap();
        }
        Env {
            _tmp: tmp,
            src,
            dst,
            outside,
        }
    }

    fn mirror(&self) -> Mirror {
        Mirror::new(
            self.src.clone(),
            self.dst.clone(),
            Arc::new(Rules::allow_all()),
        )
    }

    fn run(&self, ops: Vec<Op>) -> Report {
        self.run_with(&mut self.mirror(), ops)
    }

    fn run_with(&self, m: &mut Mirror, ops: Vec<Op>) -> Report {
        match m.run(&batch(ops)) {
            Ok(r) => r,
            Err(e) => panic!("batch failed: {e}"),
        }
    }

    fn s(&self, rel: &[u8]) -> PathBuf {
        path::abs(&self.src, rel)
    }

    fn d(&self, rel: &[u8]) -> PathBuf {
        path::abs(&self.dst, rel)
    }

    fn assert_equal(&self) {
        if let Err(diff) = compare_trees(&self.src, &self.dst) {
            panic!("trees differ: {diff}");
        }
        assert_outside_empty(&self.outside);
    }
}

fn batch(ops: Vec<Op>) -> Batch {
    Batch::of(ops)
}

fn sync(p: &[u8]) -> Op {
    Op::Sync {
        path: p.to_vec(),
        recursive: false,
    }
}

fn rsync(p: &[u8]) -> Op {
    Op::Sync {
        path: p.to_vec(),
        recursive: true,
    }
}

fn mv(from: &[u8], to: &[u8]) -> Op {
    Op::Move {
        from: from.to_vec(),
        to: to.to_vec(),
    }
}

fn write(p: &Path, content: &[u8]) {
    fs::write(p, content).unwrap();
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// Sets atime and mtime without following a symlink.
fn set_mtime(p: &Path, sec: i64, nsec: i64) {
    let t = TimeSpec::new(sec, nsec);
    nix::sys::stat::utimensat(
        None,
        p,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
}

fn mkfifo(p: &Path) {
    nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o640)).unwrap();
}

// `st_mode`'s file type bits as u32 (mode_t is u16 on the BSDs: the casts
// are needed there, not on Linux).
#[allow(clippy::unnecessary_cast)]
mod ifmt {
    pub const S_IFMT: u32 = libc::S_IFMT as u32;
    pub const S_IFLNK: u32 = libc::S_IFLNK as u32;
    pub const S_IFREG: u32 = libc::S_IFREG as u32;
    pub const S_IFCHR: u32 = libc::S_IFCHR as u32;
    pub const S_IFBLK: u32 = libc::S_IFBLK as u32;
    pub const S_IFDIR: u32 = libc::S_IFDIR as u32;
}
use ifmt::*;

/// Creates a character device like /dev/null; false when not permitted.
fn mknod_null(p: &Path) -> bool {
    match nix::sys::stat::mknod(
        p,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        libc::makedev(1, 3),
    ) {
        Ok(()) => true,
        Err(Errno::EPERM) => false,
        Err(e) => panic!("mknod: {e}"),
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Every name in the tree (relative, bytes), recursively, without following
/// links.
fn all_names(root: &Path) -> Vec<Vec<u8>> {
    fn go(dir: &Path, rel: &[u8], out: &mut Vec<Vec<u8>>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let crel = path::join(rel, e.file_name().as_bytes());
            out.push(crel.clone());
            if e.file_type().unwrap().is_dir() {
                go(&e.path(), &crel, out);
            }
        }
    }
    let mut out = Vec::new();
    go(root, b"", &mut out);
    out.sort();
    out
}

fn assert_no_temp_files(root: &Path) {
    for n in all_names(root) {
        assert!(
            !path::file_name(&n).starts_with(sys::TEMP_PREFIX),
            "temporary file left behind: {}",
            path::display(&n)
        );
    }
}

fn assert_outside_empty(outside: &Path) {
    let names = all_names(outside);
    assert!(
        names.is_empty(),
        "something was written outside the trees: {names:?}"
    );
}

/// Compares two trees: names, types, permission bits, sizes, contents, link
/// targets, device numbers, mtimes (ns) of everything but the roots' own
/// mtimes is not skipped either; owners too when running as root.
fn compare_trees(a: &Path, b: &Path) -> Result<(), String> {
    fn cmp(a: &Path, b: &Path, rel: &[u8]) -> Result<(), String> {
        let here = path::display(rel);
        let (ma, mb) = (
            fs::symlink_metadata(a).map_err(|e| format!("{here}: source: {e}"))?,
            fs::symlink_metadata(b).map_err(|e| format!("{here}: destination: {e}"))?,
        );
        let (ta, tb) = (ma.mode() & S_IFMT, mb.mode() & S_IFMT);
        if ta != tb {
            return Err(format!("{here}: type {ta:o} vs {tb:o}"));
        }
        if ta != S_IFLNK && ma.mode() & 0o7777 != mb.mode() & 0o7777 {
            return Err(format!(
                "{here}: mode {:o} vs {:o}",
                ma.mode() & 0o7777,
                mb.mode() & 0o7777
            ));
        }
        if (ma.mtime(), ma.mtime_nsec()) != (mb.mtime(), mb.mtime_nsec()) {
            return Err(format!(
                "{here}: mtime {}.{:09} vs {}.{:09}",
                ma.mtime(),
                ma.mtime_nsec(),
                mb.mtime(),
                mb.mtime_nsec()
            ));
        }
        if is_root() && (ma.uid(), ma.gid()) != (mb.uid(), mb.gid()) {
            return Err(format!("{here}: owner differs"));
        }
        match ta {
            S_IFREG => {
                if ma.size() != mb.size() {
                    return Err(format!("{here}: size {} vs {}", ma.size(), mb.size()));
                }
                if fs::read(a).unwrap() != fs::read(b).unwrap() {
                    return Err(format!("{here}: contents differ"));
                }
            }
            S_IFLNK => {
                let (la, lb) = (fs::read_link(a).unwrap(), fs::read_link(b).unwrap());
                if la != lb {
                    return Err(format!("{here}: link {la:?} vs {lb:?}"));
                }
            }
            S_IFCHR | S_IFBLK if ma.rdev() != mb.rdev() => {
                return Err(format!("{here}: device numbers differ"));
            }
            S_IFDIR => {
                let list = |p: &Path| -> BTreeMap<Vec<u8>, PathBuf> {
                    fs::read_dir(p)
                        .unwrap()
                        .map(|e| {
                            let e = e.unwrap();
                            (e.file_name().as_bytes().to_vec(), e.path())
                        })
                        .collect()
                };
                let (la, lb) = (list(a), list(b));
                let (na, nb): (Vec<_>, Vec<_>) = (la.keys().collect(), lb.keys().collect());
                if na != nb {
                    let show = |v: &Vec<&Vec<u8>>| -> Vec<String> {
                        v.iter().map(|n| path::display(n)).collect()
                    };
                    return Err(format!(
                        "{here}: entries {:?} vs {:?}",
                        show(&na),
                        show(&nb)
                    ));
                }
                for (name, pa) in &la {
                    cmp(pa, &lb[name], &path::join(rel, name))?;
                }
            }
            _ => {}
        }
        Ok(())
    }
    cmp(a, b, b"")
}

// ----- file types ---------------------------------------------------------

/// Builds one of everything in `root` (devices only when permitted).
/// Returns whether a device node was made.
fn populate_all_types(env: &Env) -> bool {
    let s = |r: &[u8]| env.s(r);
    write(&s(b"file"), b"hello\n");
    write(&s(b"empty"), b"");
    fs::create_dir(s(b"dir")).unwrap();
    fs::create_dir(s(b"dir/sub")).unwrap();
    write(&s(b"dir/sub/deep"), &vec![7u8; 300_000]);
    symlink("file", s(b"rel-link")).unwrap();
    symlink("does/not/exist", s(b"dangling")).unwrap();
    write(&env.outside.join("secret"), b"secret");
    symlink(env.outside.join("secret"), s(b"out-link")).unwrap();
    symlink(&env.outside, s(b"out-dir-link")).unwrap();
    mkfifo(&s(b"fifo"));
    let sock = std::os::unix::net::UnixListener::bind(s(b"sock")).unwrap();
    drop(sock);
    let dev = mknod_null(&s(b"null"));
    set_mtime(&s(b"file"), 1_000_000_000, 123_456_789);
    set_mtime(&s(b"dangling"), 1_100_000_000, 5);
    set_mtime(&s(b"dir/sub"), 1_200_000_000, 999_999_999);
    dev
}

#[test]
fn initial_sync_mirrors_every_file_type() {
    let env = Env::new();
    let dev = populate_all_types(&env);
    let r = env.run(vec![rsync(b"")]);
    fs::remove_file(env.outside.join("secret")).unwrap();
    env.assert_equal();
    // Links are recreated as links, never followed.
    assert_eq!(
        fs::read_link(env.d(b"out-link")).unwrap(),
        env.outside.join("secret")
    );
    assert!(fs::symlink_metadata(env.d(b"out-dir-link"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(fs::read(env.d(b"empty")).unwrap(), b"");
    // file empty deep rel-link dangling out-link out-dir-link fifo sock
    // (+ null) + dir, dir/sub
    assert_eq!(r.copied, 11 + u64::from(dev));
    assert_eq!((r.deleted, r.renamed), (0, 0));
    assert_no_temp_files(&env.dst);
    if !dev {
        eprintln!("note: mknod not permitted here; device nodes untested");
    }
}

#[test]
fn explicit_ops_mirror_every_file_type() {
    let env = Env::new();
    let dev = populate_all_types(&env);
    let mut ops: Vec<Op> = [
        &b"file"[..],
        b"empty",
        b"dir",
        b"dir/sub",
        b"dir/sub/deep",
        b"rel-link",
        b"dangling",
        b"out-link",
        b"out-dir-link",
        b"fifo",
        b"sock",
    ]
    .iter()
    .map(|p| sync(p))
    .collect();
    if dev {
        ops.push(sync(b"null"));
    }
    ops.push(sync(b""));
    env.run(ops);
    fs::remove_file(env.outside.join("secret")).unwrap();
    env.assert_equal();
}

#[test]
fn device_nodes_are_skipped_when_mknod_is_refused_and_made_otherwise() {
    let env = Env::new();
    if !mknod_null(&env.s(b"null")) {
        eprintln!("note: mknod not permitted here; skipping");
        return;
    }
    let r = env.run(vec![sync(b"null")]);
    assert_eq!(r.copied, 1);
    let m = fs::symlink_metadata(env.d(b"null")).unwrap();
    assert_eq!(m.mode() & S_IFMT, S_IFCHR);
    #[allow(clippy::unnecessary_cast)] // dev_t is i32 on macOS
    let null = libc::makedev(1, 3) as u64;
    assert_eq!(m.rdev(), null);
}

#[test]
fn explicit_sync_copies_even_when_size_and_mtime_match_but_recursive_compares() {
    let env = Env::new();
    write(&env.s(b"f"), b"new!");
    write(&env.d(b"f"), b"old!");
    set_mtime(&env.s(b"f"), 1_500_000_000, 42);
    set_mtime(&env.d(b"f"), 1_500_000_000, 42);
    chmod(&env.d(b"f"), 0o644);
    chmod(&env.s(b"f"), 0o644);
    // A recursive (compare) sync trusts size + mtime: no copy.
    let r = env.run(vec![rsync(b"f")]);
    assert_eq!(r.copied, 0);
    assert_eq!(fs::read(env.d(b"f")).unwrap(), b"old!");
    // An explicit change copies.
    let r = env.run(vec![sync(b"f")]);
    assert_eq!(r.copied, 1);
    assert_eq!(fs::read(env.d(b"f")).unwrap(), b"new!");
}

#[test]
fn explicit_sync_of_an_identical_file_does_not_rewrite_it() {
    // Two-way setups: our own copy comes back as an event on the other side.
    // Rewriting it would be an event again, forever.
    let env = Env::new();
    write(&env.s(b"f"), b"same bytes");
    env.run(vec![sync(b"f")]);
    let before = fs::metadata(env.d(b"f")).unwrap().ino();
    chmod(&env.s(b"f"), 0o600);
    let r = env.run(vec![sync(b"f")]);
    assert_eq!(r.copied, 0);
    let after = fs::metadata(env.d(b"f")).unwrap();
    assert_eq!(after.ino(), before, "the file was replaced");
    assert_eq!(after.mode() & 0o7777, 0o600, "metadata still follows");
    env.assert_equal();
}

#[test]
fn recursive_sync_fixes_metadata_without_copying() {
    let env = Env::new();
    write(&env.s(b"f"), b"same");
    env.run(vec![rsync(b"")]);
    chmod(&env.s(b"f"), 0o600);
    let r = env.run(vec![rsync(b"")]);
    assert_eq!(r.copied, 0);
    assert_eq!(fs::metadata(env.d(b"f")).unwrap().mode() & 0o7777, 0o600);
    env.assert_equal();
}

// ----- type changes and deletes -------------------------------------------

#[test]
fn file_replaces_populated_dir_and_dir_replaces_file() {
    let env = Env::new();
    fs::create_dir_all(env.d(b"x/y/z")).unwrap();
    write(&env.d(b"x/y/z/f"), b"1");
    write(&env.s(b"x"), b"now a file");
    write(&env.d(b"y"), b"was a file");
    fs::create_dir(env.s(b"y")).unwrap();
    write(&env.s(b"y/inner"), b"inner");
    let r = env.run(vec![sync(b"x"), rsync(b"y")]);
    assert_eq!(fs::read(env.d(b"x")).unwrap(), b"now a file");
    assert_eq!(fs::read(env.d(b"y/inner")).unwrap(), b"inner");
    assert_eq!(r.deleted, 4 + 1); // x, x/y, x/y/z, x/y/z/f; the file y
    env.assert_equal();
}

#[test]
fn symlink_replaces_dir_and_is_updated_when_target_changes() {
    let env = Env::new();
    fs::create_dir_all(env.d(b"l/sub")).unwrap();
    symlink("t1", env.s(b"l")).unwrap();
    env.run(vec![sync(b"l")]);
    assert_eq!(fs::read_link(env.d(b"l")).unwrap(), Path::new("t1"));
    fs::remove_file(env.s(b"l")).unwrap();
    symlink("t2", env.s(b"l")).unwrap();
    let r = env.run(vec![sync(b"l")]);
    assert_eq!(r.copied, 1);
    assert_eq!(fs::read_link(env.d(b"l")).unwrap(), Path::new("t2"));
    env.assert_equal();
}

#[test]
fn deletes_files_and_populated_dirs() {
    let env = Env::new();
    write(&env.d(b"f"), b"x");
    fs::create_dir_all(env.d(b"d/a/b")).unwrap();
    write(&env.d(b"d/a/b/c"), b"x");
    write(&env.outside.join("target"), b"keep me");
    symlink(&env.outside, env.d(b"d/link")).unwrap();
    let r = env.run(vec![sync(b"f"), sync(b"d"), sync(b"never-existed")]);
    assert_eq!(r.deleted, 6); // f, d, d/a, d/a/b, d/a/b/c, d/link
    assert!(all_names(&env.dst).is_empty());
    assert_eq!(fs::read(env.outside.join("target")).unwrap(), b"keep me");
}

#[test]
fn vanished_source_parent_means_delete() {
    let env = Env::new();
    fs::create_dir_all(env.d(b"a/b")).unwrap();
    write(&env.d(b"a/b/f"), b"x");
    let r = env.run(vec![sync(b"a/b/f")]);
    assert_eq!(r.deleted, 1);
    assert!(!env.d(b"a/b/f").exists());
    assert!(env.d(b"a/b").is_dir()); // only the op's own path is deleted
}

#[test]
fn recursive_sync_deletes_extras() {
    let env = Env::new();
    fs::create_dir_all(env.s(b"keep/sub")).unwrap();
    write(&env.s(b"keep/sub/f"), b"f");
    fs::create_dir_all(env.d(b"keep/sub/extra-dir/x")).unwrap();
    write(&env.d(b"keep/sub/extra-dir/x/y"), b"y");
    write(&env.d(b"keep/extra"), b"e");
    write(&env.d(b"top-extra"), b"e");
    mkfifo(&env.d(b"keep/fifo-extra"));
    let r = env.run(vec![rsync(b"")]);
    assert_eq!(r.deleted, 6);
    env.assert_equal();
}

// ----- moves --------------------------------------------------------------

#[test]
fn moved_file_is_renamed_not_copied() {
    let env = Env::new();
    write(&env.s(b"a"), b"content");
    env.run(vec![rsync(b"")]);
    fs::create_dir(env.s(b"newdir")).unwrap();
    fs::rename(env.s(b"a"), env.s(b"newdir/b")).unwrap();
    let r = env.run(vec![mv(b"a", b"newdir/b")]);
    assert_eq!((r.renamed, r.copied, r.deleted), (1, 1, 0)); // 1 copy = newdir
    env.assert_equal();
}

#[test]
fn moved_dir_of_5000_files_is_one_rename_and_no_copies() {
    let env = Env::new();
    fs::create_dir_all(env.s(b"d/inner")).unwrap();
    for i in 0..5000 {
        write(
            &env.s(format!("d/f{i}").as_bytes()),
            format!("{i}").as_bytes(),
        );
    }
    write(&env.s(b"d/inner/x"), b"x");
    let r = env.run(vec![rsync(b"")]);
    assert_eq!(r.copied, 5000 + 3);
    fs::rename(env.s(b"d"), env.s(b"e")).unwrap();
    let r = env.run(vec![mv(b"d", b"e")]);
    assert_eq!((r.renamed, r.copied, r.deleted), (1, 0, 0));
    env.assert_equal();
}

#[test]
fn move_over_existing_destination_dir() {
    let env = Env::new();
    fs::create_dir_all(env.s(b"from")).unwrap();
    write(&env.s(b"from/f"), b"f");
    fs::create_dir_all(env.s(b"to/old")).unwrap();
    write(&env.s(b"to/old/g"), b"g");
    env.run(vec![rsync(b"")]);
    fs::remove_dir_all(env.s(b"to")).unwrap();
    fs::rename(env.s(b"from"), env.s(b"to")).unwrap();
    let r = env.run(vec![mv(b"from", b"to")]);
    assert_eq!((r.renamed, r.copied), (1, 0));
    assert_eq!(r.deleted, 3); // to, to/old, to/old/g
    env.assert_equal();
}

#[test]
fn move_whose_hint_no_longer_fits_still_ends_right() {
    let env = Env::new();
    // dst/from is a dir, but src/to is a file: no rename, just syncs.
    fs::create_dir_all(env.d(b"from/sub")).unwrap();
    write(&env.s(b"to"), b"a file now");
    let r = env.run(vec![mv(b"from", b"to")]);
    assert_eq!(r.renamed, 0);
    env.assert_equal();

    // dst/from is missing: the syncs copy.
    let env = Env::new();
    write(&env.s(b"to2"), b"x");
    let r = env.run(vec![mv(b"from2", b"to2")]);
    assert_eq!((r.renamed, r.copied), (0, 1));
    env.assert_equal();

    // src/to moved on again already: the destination loses both.
    let env = Env::new();
    write(&env.d(b"from3"), b"x");
    let r = env.run(vec![mv(b"from3", b"to3")]);
    assert_eq!((r.renamed, r.deleted), (0, 1));
    env.assert_equal();

    // into its own subtree (`a` -> `a/b`): never renamed into itself.
    let env = Env::new();
    fs::create_dir_all(env.d(b"a")).unwrap();
    write(&env.d(b"a/f"), b"f");
    fs::create_dir_all(env.s(b"a/b")).unwrap();
    write(&env.s(b"a/b/f"), b"f");
    let r = env.run(vec![mv(b"a", b"a/b")]);
    assert_eq!(r.renamed, 0);
    env.assert_equal();
}

#[test]
fn chain_of_moves_in_one_batch() {
    let env = Env::new();
    write(&env.s(b"a"), b"A");
    write(&env.s(b"b"), b"B");
    env.run(vec![rsync(b"")]);
    // swap a and b through t
    fs::rename(env.s(b"a"), env.s(b"t")).unwrap();
    fs::rename(env.s(b"b"), env.s(b"a")).unwrap();
    fs::rename(env.s(b"t"), env.s(b"b")).unwrap();
    env.run(vec![mv(b"a", b"t"), mv(b"b", b"a"), mv(b"t", b"b")]);
    env.assert_equal();
    assert_eq!(fs::read(env.d(b"a")).unwrap(), b"B");
}

// ----- metadata -----------------------------------------------------------

#[test]
fn modes_and_nanosecond_mtimes_are_copied_dirs_after_contents() {
    let env = Env::new();
    fs::create_dir(env.s(b"ro")).unwrap();
    write(&env.s(b"ro/f"), b"data");
    write(&env.s(b"ro/g"), b"");
    chmod(&env.s(b"ro/f"), 0o751);
    chmod(&env.s(b"ro/g"), 0o4755);
    set_mtime(&env.s(b"ro/f"), 1_234_567_890, 987_654_321);
    chmod(&env.s(b"ro"), 0o555);
    set_mtime(&env.s(b"ro"), 1_111_111_111, 111_111_111);
    env.run(vec![rsync(b"")]);
    env.assert_equal();
    let m = fs::metadata(env.d(b"ro/f")).unwrap();
    assert_eq!((m.mtime(), m.mtime_nsec()), (1_234_567_890, 987_654_321));
    assert_eq!(m.mode() & 0o7777, 0o751);
    assert_eq!(
        fs::metadata(env.d(b"ro/g")).unwrap().mode() & 0o7777,
        0o4755
    );
}

#[test]
fn missing_parents_get_source_metadata() {
    let env = Env::new();
    fs::create_dir_all(env.s(b"a/b/c")).unwrap();
    write(&env.s(b"a/b/c/f"), b"f");
    chmod(&env.s(b"a"), 0o750);
    chmod(&env.s(b"a/b"), 0o705);
    set_mtime(&env.s(b"a/b/c"), 1_300_000_000, 1);
    set_mtime(&env.s(b"a/b"), 1_300_000_000, 2);
    set_mtime(&env.s(b"a"), 1_300_000_000, 3);
    set_mtime(&env.src, 1_300_000_000, 4);
    let r = env.run(vec![sync(b"a/b/c/f")]);
    assert_eq!(r.copied, 4);
    env.assert_equal();
}

#[test]
fn parent_mtime_follows_after_a_single_file_op() {
    let env = Env::new();
    fs::create_dir(env.s(b"d")).unwrap();
    env.run(vec![rsync(b"")]);
    write(&env.s(b"d/new"), b"n");
    env.run(vec![sync(b"d/new")]);
    env.assert_equal();
}

#[test]
fn owner_is_preserved_when_root_and_not_when_turned_off() {
    if !is_root() {
        eprintln!("note: not root; ownership untested");
        return;
    }
    let env = Env::new();
    write(&env.s(b"f"), b"f");
    fs::create_dir(env.s(b"d")).unwrap();
    symlink("f", env.s(b"l")).unwrap();
    for p in [&b"f"[..], b"d", b"l"] {
        nix::unistd::fchownat(
            None,
            &env.s(p),
            Some(nix::unistd::Uid::from_raw(1234)),
            Some(nix::unistd::Gid::from_raw(4321)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .unwrap();
    }
    env.run(vec![rsync(b"")]);
    for p in [&b"f"[..], b"d", b"l"] {
        let m = fs::symlink_metadata(env.d(p)).unwrap();
        assert_eq!((m.uid(), m.gid()), (1234, 4321), "{}", path::display(p));
    }
    let env2 = Env::new();
    write(&env2.s(b"f"), b"f");
    nix::unistd::chown(&env2.s(b"f"), Some(nix::unistd::Uid::from_raw(1234)), None).unwrap();
    let mut m = env2.mirror().preserve_owner(false);
    env2.run_with(&mut m, vec![rsync(b"")]);
    assert_eq!(fs::metadata(env2.d(b"f")).unwrap().uid(), 0);
}

#[test]
fn unprivileged_mode_writes_into_read_only_dirs_and_restores_their_mode() {
    let env = Env::new();
    fs::create_dir(env.s(b"ro")).unwrap();
    write(&env.s(b"ro/f"), b"f");
    chmod(&env.s(b"ro"), 0o555);
    let mut m = env.mirror().preserve_owner(false);
    m.privileged = false;
    env.run_with(&mut m, vec![rsync(b"")]);
    chmod(&env.s(b"ro"), 0o755);
    write(&env.s(b"ro/g"), b"g");
    fs::remove_file(env.s(b"ro/f")).unwrap();
    chmod(&env.s(b"ro"), 0o555);
    env.run_with(&mut m, vec![sync(b"ro/g"), sync(b"ro/f")]);
    assert_eq!(fs::metadata(env.d(b"ro")).unwrap().mode() & 0o7777, 0o555);
    assert_eq!(fs::read(env.d(b"ro/g")).unwrap(), b"g");
    assert!(!env.d(b"ro/f").exists());
    let mut files = all_names(&env.dst);
    files.sort();
    assert_eq!(files, vec![b"ro".to_vec(), b"ro/g".to_vec()]);
}

// ----- names --------------------------------------------------------------

#[test]
fn odd_names_survive_byte_for_byte() {
    let env = Env::new();
    let names: [&[u8]; 6] = [
        b"new\nline",
        b"back\\slash",
        b"star*",
        b"\xff\xfe non-utf8",
        b" lead space",
        b"-dash",
    ];
    let dir: &[u8] = b"dir \xc3\x28 \n*";
    fs::create_dir(env.s(dir)).unwrap();
    for n in names {
        write(&env.s(n), n);
        write(&env.s(&path::join(dir, n)), n);
    }
    // Half of them through explicit ops, the rest through a recursive op.
    let mut ops: Vec<Op> = names.iter().map(|n| sync(n)).collect();
    ops.push(rsync(dir));
    let r = env.run(ops);
    assert_eq!(r.copied, 13);
    env.assert_equal();
    for n in names {
        let back = fs::read(env.d(&path::join(dir, n))).unwrap();
        assert_eq!(back, n);
        assert!(env.d(n).exists(), "{}", path::display(n));
    }
}

// ----- never following links ---------------------------------------------

#[test]
fn dst_symlink_in_parent_chain_is_replaced_never_followed() {
    let env = Env::new();
    fs::create_dir(env.s(b"a")).unwrap();
    write(&env.s(b"a/x"), b"payload");
    symlink(&env.outside, env.d(b"a")).unwrap();
    env.run(vec![sync(b"a/x")]);
    assert_outside_empty(&env.outside);
    assert!(fs::symlink_metadata(env.d(b"a")).unwrap().is_dir());
    assert_eq!(fs::read(env.d(b"a/x")).unwrap(), b"payload");
    env.assert_equal();

    // The same through a recursive op and a deeper chain.
    let env = Env::new();
    fs::create_dir_all(env.s(b"p/q")).unwrap();
    write(&env.s(b"p/q/x"), b"payload");
    fs::create_dir(env.d(b"p")).unwrap();
    symlink(&env.outside, env.d(b"p/q")).unwrap();
    // (`sync("")`: the setup changed the roots' mtimes, which `p/q` does not
    // cover.)
    env.run(vec![rsync(b"p/q"), sync(b"")]);
    env.assert_equal();

    // And through the move hint's parent creation.
    let env = Env::new();
    fs::create_dir(env.s(b"m")).unwrap();
    write(&env.s(b"m/moved"), b"payload");
    write(&env.d(b"orig"), b"payload");
    symlink(&env.outside, env.d(b"m")).unwrap();
    let r = env.run(vec![mv(b"orig", b"m/moved")]);
    assert_eq!(r.renamed, 1);
    env.assert_equal();
}

#[test]
fn deletes_do_not_follow_dst_symlinks() {
    let env = Env::new();
    write(&env.outside.join("x"), b"keep me");
    fs::create_dir(env.outside.join("sub")).unwrap();
    symlink(&env.outside, env.d(b"a")).unwrap();
    // src has no `a`: `a/x` is a delete; dst/a is a link, so there is no
    // dst/a/x to delete.
    env.run(vec![sync(b"a/x"), rsync(b"a/sub"), mv(b"a/x", b"y")]);
    assert_eq!(fs::read(env.outside.join("x")).unwrap(), b"keep me");
    assert!(env.outside.join("sub").is_dir());
    // Syncing `a` itself removes the link, not what it points to.
    env.run(vec![sync(b"a")]);
    assert!(fs::symlink_metadata(env.d(b"a")).is_err());
    assert_eq!(fs::read(env.outside.join("x")).unwrap(), b"keep me");
}

#[test]
fn src_symlink_in_parent_chain_is_not_read_through() {
    let env = Env::new();
    write(&env.outside.join("secret"), b"secret");
    symlink(&env.outside, env.s(b"a")).unwrap();
    fs::create_dir(env.d(b"a")).unwrap();
    write(&env.d(b"a/secret"), b"stale");
    // The event says a/secret; in the source that path crosses a link, so
    // for the mirror it does not exist.
    let r = env.run(vec![sync(b"a/secret"), rsync(b"a/secret")]);
    assert_eq!(r.copied, 0);
    assert!(!env.d(b"a/secret").exists());
    env.run(vec![rsync(b"")]);
    fs::remove_file(env.outside.join("secret")).unwrap();
    env.assert_equal();
    assert!(fs::symlink_metadata(env.d(b"a"))
        .unwrap()
        .file_type()
        .is_symlink());
}

// ----- temporary files and failures --------------------------------------

#[test]
fn no_temp_file_survives_success_or_failure() {
    let env = Env::new();
    write(&env.s(b"f"), b"new content");
    write(&env.d(b"f"), b"old content");
    write(&env.s(b"g"), b"g");
    env.run(vec![sync(b"g")]);
    assert_no_temp_files(&env.dst);

    let mut m = env.mirror();
    m.fail_copy_of = Some(b"f".to_vec());
    let err = m.run(&batch(vec![sync(b"f")])).unwrap_err();
    match &err {
        HandlerError::Paths { failed, .. } => {
            assert_eq!(failed.len(), 1, "{err}");
            assert_eq!(failed[0].path, b"f");
            assert!(failed[0].message.contains("/dst/f: "), "{err}");
        }
        other => panic!("unexpected error {other}"),
    }
    assert_no_temp_files(&env.dst);
    // The target was never touched: old content, complete.
    assert_eq!(fs::read(env.d(b"f")).unwrap(), b"old content");

    // A file target replacing a directory that the failure left alone.
    fs::remove_file(env.d(b"f")).unwrap();
    fs::create_dir(env.d(b"f")).unwrap();
    assert!(m.run(&batch(vec![sync(b"f")])).is_err());
    assert!(env.d(b"f").is_dir());
    assert_no_temp_files(&env.dst);
}

#[test]
fn source_vanishing_mid_copy_is_a_delete_not_a_failure() {
    let env = Env::new();
    write(&env.s(b"f"), b"new");
    write(&env.d(b"f"), b"old");
    let mut m = env.mirror();
    m.before_copy = Some(|p| fs::remove_file(p).unwrap());
    let r = env.run_with(&mut m, vec![sync(b"f")]);
    assert_eq!((r.copied, r.deleted), (0, 1));
    assert!(fs::symlink_metadata(env.d(b"f")).is_err());
    assert_no_temp_files(&env.dst);
}

#[test]
fn source_turning_into_a_symlink_mid_copy_is_never_read_through() {
    let env = Env::new();
    write(&env.s(b"f"), b"new");
    let mut m = env.mirror();
    m.before_copy = Some(|p| {
        fs::remove_file(p).unwrap();
        symlink("/etc/passwd", p).unwrap();
    });
    let r = env.run_with(&mut m, vec![sync(b"f"), rsync(b"")]);
    assert_eq!(r.copied, 1);
    assert_eq!(
        fs::read_link(env.d(b"f")).unwrap(),
        Path::new("/etc/passwd")
    );
    env.assert_equal();
}

#[test]
fn malformed_op_paths_are_ignored() {
    let env = Env::new();
    write(&env.s(b"f"), b"f");
    let r = env.run(vec![
        sync(b".."),
        rsync(b"../outside"),
        sync(b"a/./f"),
        sync(b"a//f"),
        mv(b"f", b".."),
        sync(b"x\0y"),
    ]);
    assert_eq!(r, Report::default());
    assert_outside_empty(&env.outside);
    assert!(all_names(&env.dst).is_empty());
}

#[test]
fn errors_name_the_path() {
    let env = Env::new();
    let m = Mirror::new(
        env.src.join("missing"),
        env.dst.clone(),
        Arc::new(Rules::allow_all()),
    );
    let mut m = m;
    let err = m.run(&batch(vec![rsync(b"")])).unwrap_err().to_string();
    assert!(err.contains("src/missing"), "{err}");
}

#[test]
fn same_source_and_destination_is_refused() {
    let env = Env::new();
    let mut m = Mirror::new(
        env.src.clone(),
        env.src.clone(),
        Arc::new(Rules::allow_all()),
    );
    assert!(m.run(&batch(vec![rsync(b"")])).is_err());
}

#[test]
fn destination_root_is_created_when_missing() {
    let env = Env::new();
    write(&env.s(b"f"), b"f");
    fs::remove_dir(&env.dst).unwrap();
    env.run(vec![rsync(b"")]);
    env.assert_equal();
}

#[test]
fn temp_names_are_hidden_unique_and_short_enough() {
    let long = vec![b'n'; 255];
    let (a, b) = (sys::temp_name(&long), sys::temp_name(&long));
    assert_ne!(a, b);
    assert!(a.starts_with(sys::TEMP_PREFIX));
    assert!(a.len() <= 255, "{}", a.len());
    assert!(!a.contains(&b'/'));
}

// ----- hard links ---------------------------------------------------------

fn ino(p: &Path) -> u64 {
    fs::symlink_metadata(p).unwrap().ino()
}

/// Asserts that the destination names `names` are one inode holding
/// `content`.
fn assert_one_file(env: &Env, names: &[&[u8]], content: &[u8]) {
    let first = ino(&env.d(names[0]));
    for n in names {
        let d = env.d(n);
        assert_eq!(fs::read(&d).unwrap(), content, "{}", d.display());
        assert_eq!(
            ino(&d),
            first,
            "{} is not a link to {:?}",
            d.display(),
            names[0]
        );
    }
}

#[test]
fn hard_links_stay_links_and_edits_through_either_name_reach_both() {
    let env = Env::new();
    fs::create_dir(env.s(b"sub")).unwrap();
    write(&env.s(b"a"), b"one");
    fs::hard_link(env.s(b"a"), env.s(b"b")).unwrap();
    fs::hard_link(env.s(b"a"), env.s(b"sub/c")).unwrap();
    write(&env.s(b"lone"), b"single");
    let progress = Arc::new(crate::handler::counts::Counts::default());
    env.run_with(
        &mut env.mirror().with_progress(Arc::clone(&progress)),
        vec![rsync(b"")],
    );
    env.assert_equal();
    assert_one_file(&env, &[b"a", b"b", b"sub/c"], b"one");
    assert_eq!(fs::symlink_metadata(env.d(b"lone")).unwrap().nlink(), 1);
    // Every name counts towards the initial sync's progress, as in its totals.
    assert_eq!((progress.files(), progress.bytes()), (4, 3 * 3 + 6));
    // An edit through one name: the batch names all of them (the tree adds
    // the other names), in any order.
    write(&env.s(b"a"), b"two, longer");
    env.run(vec![sync(b"a"), sync(b"b"), sync(b"sub/c")]);
    assert_one_file(&env, &[b"a", b"b", b"sub/c"], b"two, longer");
    write(&env.s(b"b"), b"three");
    env.run(vec![sync(b"sub/c"), sync(b"b"), sync(b"a")]);
    assert_one_file(&env, &[b"a", b"b", b"sub/c"], b"three");
    env.assert_equal();
    // Copies made before (or by a tool without links) are joined by a
    // recursive sync.
    fs::remove_file(env.d(b"b")).unwrap();
    fs::copy(env.d(b"a"), env.d(b"b")).unwrap();
    env.run(vec![rsync(b"")]);
    assert_one_file(&env, &[b"a", b"b", b"sub/c"], b"three");
    assert_no_temp_files(&env.dst);
}

#[test]
fn a_name_that_stops_being_a_link_is_copied_on_its_own() {
    let env = Env::new();
    write(&env.s(b"a"), b"shared");
    fs::hard_link(env.s(b"a"), env.s(b"b")).unwrap();
    env.run(vec![rsync(b"")]);
    assert_one_file(&env, &[b"a", b"b"], b"shared");
    // b becomes a file of its own; a keeps the old inode.
    fs::remove_file(env.s(b"b")).unwrap();
    write(&env.s(b"b"), b"own");
    env.run(vec![sync(b"a"), sync(b"b")]);
    env.assert_equal();
    assert_ne!(ino(&env.d(b"a")), ino(&env.d(b"b")));
    assert_eq!(fs::read(env.d(b"a")).unwrap(), b"shared");
}

// ----- extended attributes and ACLs ---------------------------------------
// (Linux only: elsewhere the mirror copies none.)

#[cfg(any(target_os = "linux", target_os = "android"))]
fn cpath(p: &Path) -> std::ffi::CString {
    std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// Sets the extended attribute `name` of `p` (not following a symlink);
/// false when the file system refuses (no xattr or ACL support).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn set_xattr(p: &Path, name: &str, value: &[u8]) -> bool {
    let (p, n) = (cpath(p), std::ffi::CString::new(name).unwrap());
    // SAFETY: NUL-terminated strings and a buffer of value.len() bytes.
    unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        ) == 0
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn remove_xattr(p: &Path, name: &str) {
    let (p, n) = (cpath(p), std::ffi::CString::new(name).unwrap());
    // SAFETY: NUL-terminated strings.
    assert_eq!(unsafe { libc::lremovexattr(p.as_ptr(), n.as_ptr()) }, 0);
}

/// The value of the extended attribute `name` of `p`, if it has one.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn get_xattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    let (p, n) = (cpath(p), std::ffi::CString::new(name).unwrap());
    let mut buf = vec![0u8; 4096];
    // SAFETY: NUL-terminated strings and a buffer of buf.len() bytes.
    let got =
        unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (got >= 0).then(|| {
        buf.truncate(got as usize);
        buf
    })
}

/// A POSIX access ACL in the kernel's xattr format (what `setfacl -m
/// u:12345:r,g:54321:rw` leaves on a 0644 file): owner rw, user 12345 r,
/// group r, group 54321 rw, mask rw, other r.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn acl_xattr() -> Vec<u8> {
    const UNDEFINED: u32 = u32::MAX;
    let mut v = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (0x01u16, 6u16, UNDEFINED),
        (0x02, 4, 12345),
        (0x04, 4, UNDEFINED),
        (0x08, 6, 54321),
        (0x10, 6, UNDEFINED),
        (0x20, 4, UNDEFINED),
    ] {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}

#[cfg(any(target_os = "linux", target_os = "android"))]
#[test]
#[cfg(any(target_os = "linux", target_os = "android"))]
fn xattrs_are_copied_updated_and_removed_only_with_the_option() {
    let env = Env::new();
    fs::create_dir(env.s(b"d")).unwrap();
    write(&env.s(b"f"), b"content");
    write(&env.s(b"d/g"), b"more");
    if !set_xattr(&env.s(b"f"), "user.a", b"1") {
        eprintln!("skipping: the temp dir's file system has no user xattrs");
        return;
    }
    assert!(set_xattr(&env.s(b"f"), "user.b", b"two"));
    assert!(set_xattr(&env.s(b"d"), "user.dir", b"x"));
    assert!(set_xattr(&env.s(b"d/g"), "user.g", b"\0binary\xff"));

    // Off by default.
    env.run(vec![rsync(b"")]);
    env.assert_equal();
    assert_eq!(get_xattr(&env.d(b"f"), "user.a"), None);
    assert_eq!(get_xattr(&env.d(b"d"), "user.dir"), None);

    // With --xattrs a recursive sync adds them to what is already there.
    let mut m = env.mirror().xattrs(true, false);
    env.run_with(&mut m, vec![rsync(b"")]);
    assert_eq!(
        get_xattr(&env.d(b"f"), "user.a").as_deref(),
        Some(&b"1"[..])
    );
    assert_eq!(
        get_xattr(&env.d(b"f"), "user.b").as_deref(),
        Some(&b"two"[..])
    );
    assert_eq!(
        get_xattr(&env.d(b"d"), "user.dir").as_deref(),
        Some(&b"x"[..])
    );
    assert_eq!(
        get_xattr(&env.d(b"d/g"), "user.g").as_deref(),
        Some(&b"\0binary\xff"[..])
    );

    // Changed and removed at the source: an explicit sync (an attribute
    // event) follows, for files and directories.
    assert!(set_xattr(&env.s(b"f"), "user.a", b"changed"));
    remove_xattr(&env.s(b"f"), "user.b");
    remove_xattr(&env.s(b"d"), "user.dir");
    assert!(set_xattr(&env.s(b"d"), "user.new", b"n"));
    env.run_with(&mut m, vec![sync(b"f"), sync(b"d")]);
    assert_eq!(
        get_xattr(&env.d(b"f"), "user.a").as_deref(),
        Some(&b"changed"[..])
    );
    assert_eq!(get_xattr(&env.d(b"f"), "user.b"), None);
    assert_eq!(get_xattr(&env.d(b"d"), "user.dir"), None);
    assert_eq!(
        get_xattr(&env.d(b"d"), "user.new").as_deref(),
        Some(&b"n"[..])
    );

    // A new copy carries them; a read-only source file too.
    write(&env.s(b"f"), b"rewritten");
    chmod(&env.s(b"f"), 0o444);
    env.run_with(&mut m, vec![sync(b"f")]);
    assert_eq!(fs::read(env.d(b"f")).unwrap(), b"rewritten");
    assert_eq!(
        get_xattr(&env.d(b"f"), "user.a").as_deref(),
        Some(&b"changed"[..])
    );
    env.assert_equal();
    // ACLs are not xattrs for this purpose: without --acls none is copied.
    if set_xattr(&env.s(b"d/g"), "system.posix_acl_access", &acl_xattr()) {
        env.run_with(&mut m, vec![sync(b"d/g")]);
        assert_eq!(get_xattr(&env.d(b"d/g"), "system.posix_acl_access"), None);
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
#[test]
#[cfg(any(target_os = "linux", target_os = "android"))]
fn acls_are_copied_only_with_the_option() {
    let env = Env::new();
    fs::create_dir(env.s(b"d")).unwrap();
    write(&env.s(b"f"), b"content");
    chmod(&env.s(b"f"), 0o644);
    let acl = acl_xattr();
    if !set_xattr(&env.s(b"f"), "system.posix_acl_access", &acl) {
        eprintln!("skipping: the temp dir's file system has no POSIX ACLs");
        return;
    }
    assert!(set_xattr(&env.s(b"d"), "system.posix_acl_default", &acl));
    assert!(set_xattr(&env.s(b"f"), "user.x", b"1"));
    env.run(vec![rsync(b"")]);
    assert_eq!(get_xattr(&env.d(b"f"), "system.posix_acl_access"), None);

    let mut m = env.mirror().xattrs(false, true);
    env.run_with(&mut m, vec![rsync(b"")]);
    assert_eq!(
        get_xattr(&env.d(b"f"), "system.posix_acl_access"),
        Some(acl.clone())
    );
    assert_eq!(
        get_xattr(&env.d(b"d"), "system.posix_acl_default"),
        Some(acl.clone())
    );
    // The mask became the group bits, as at the source; user.* stays out.
    assert_eq!(
        fs::metadata(env.d(b"f")).unwrap().mode() & 0o777,
        fs::metadata(env.s(b"f")).unwrap().mode() & 0o777
    );
    assert_eq!(get_xattr(&env.d(b"f"), "user.x"), None);
    // A new file in d inherits the default ACL at the destination, but the
    // source file has no ACL: it is removed.
    write(&env.s(b"d/new"), b"n");
    env.run_with(&mut m, vec![sync(b"d/new")]);
    assert_eq!(
        get_xattr(&env.s(b"d/new"), "system.posix_acl_access").is_some(),
        get_xattr(&env.d(b"d/new"), "system.posix_acl_access").is_some()
    );
    // An ACL removed at the source goes at the destination too.
    remove_xattr(&env.s(b"f"), "system.posix_acl_access");
    env.run_with(&mut m, vec![sync(b"f")]);
    assert_eq!(get_xattr(&env.d(b"f"), "system.posix_acl_access"), None);
    env.assert_equal();
}

// ----- sparse files -------------------------------------------------------

const MIB: u64 = 1024 * 1024;

/// Writes `data` bytes of 0x5a at each offset of `at` into a new file of
/// `len` bytes; everything else is a hole.
fn write_sparse(p: &Path, len: u64, at: &[u64], data: usize) {
    use std::os::unix::fs::FileExt;
    let f = fs::File::create(p).unwrap();
    f.set_len(len).unwrap();
    for &off in at {
        f.write_all_at(&vec![0x5a; data], off).unwrap();
    }
}

/// Bytes the file really occupies on disk.
fn allocated(p: &Path) -> u64 {
    fs::symlink_metadata(p).unwrap().blocks() * 512
}

#[cfg(any(target_os = "linux", target_os = "android"))]
#[test]
fn the_buffered_copy_keeps_holes_and_bytes_too() {
    let env = Env::new();
    write_sparse(&env.s(b"s"), 16 * MIB, &[3 * MIB + 17], 300_000);
    if allocated(&env.s(b"s")) > 4 * MIB {
        eprintln!("skipping: the temp dir's file system does not make sparse files");
        return;
    }
    let mut from = fs::File::open(env.s(b"s")).unwrap();
    let mut to = fs::File::create(env.d(b"s")).unwrap();
    sys::copy_sparse_via(&mut from, &mut to, false).unwrap();
    drop(to);
    assert_eq!(
        fs::read(env.d(b"s")).unwrap(),
        fs::read(env.s(b"s")).unwrap()
    );
    assert!(
        allocated(&env.d(b"s")) <= 2 * MIB,
        "{}",
        allocated(&env.d(b"s"))
    );
}

#[test]
fn sparse_files_keep_their_holes() {
    let env = Env::new();
    // 64 MiB apparent: data at the start and in the middle (holes between
    // and at the end), and one file that is all hole.
    write_sparse(
        &env.s(b"sparse"),
        64 * MIB,
        &[0, 20 * MIB],
        MIB as usize / 2,
    );
    write_sparse(&env.s(b"empty"), 64 * MIB, &[], 0);
    // A hole probe on the source: a file system that cannot make holes
    // has nothing to keep.
    if allocated(&env.s(b"sparse")) > 4 * MIB {
        eprintln!("skipping: the temp dir's file system does not make sparse files");
        return;
    }
    // Both an initial sync and an explicit copy keep the holes.
    env.run(vec![rsync(b"")]);
    env.assert_equal();
    write_sparse(&env.s(b"late"), 64 * MIB, &[MIB, 63 * MIB], 4096);
    env.run(vec![sync(b"sparse"), sync(b"late")]);
    env.assert_equal();
    for (name, data) in [("sparse", MIB), ("empty", 0), ("late", 8192)] {
        let d = env.d(name.as_bytes());
        assert_eq!(fs::metadata(&d).unwrap().len(), 64 * MIB, "{name}");
        let on_disk = allocated(&d);
        // Block rounding and file system metadata blocks: a few hundred KiB
        // at most, nowhere near the 64 MiB a dense copy takes.
        assert!(
            on_disk <= data + MIB,
            "{name}: {on_disk} bytes allocated for {data} bytes of data"
        );
    }
}

// ----- one bad path never stops the rest ---------------------------------

fn failed_paths(e: HandlerError) -> (Vec<(Vec<u8>, bool)>, Report) {
    match e {
        HandlerError::Paths { failed, report } => (
            failed.into_iter().map(|f| (f.path, f.recursive)).collect(),
            report,
        ),
        other => panic!("not a per-path failure: {other}"),
    }
}

#[test]
fn a_failing_file_fails_alone_and_the_batch_goes_on() {
    let env = Env::new();
    for f in ["a", "b", "c"] {
        write(&env.s(f.as_bytes()), f.as_bytes());
    }
    let mut m = env.mirror();
    m.fail_copy_of = Some(b"b".to_vec());
    let err = m
        .run(&batch(vec![sync(b"a"), sync(b"b"), sync(b"c")]))
        .unwrap_err();
    let (failed, report) = failed_paths(err);
    assert_eq!(failed, vec![(b"b".to_vec(), false)]);
    assert_eq!(report.copied, 2);
    assert_eq!(fs::read(env.d(b"a")).unwrap(), b"a");
    assert_eq!(fs::read(env.d(b"c")).unwrap(), b"c");
    assert!(!env.d(b"b").exists());
    assert_no_temp_files(&env.dst);
    // The retry of just that path, once it works, completes the tree.
    env.run(vec![sync(b"b")]);
    env.assert_equal();
}

#[test]
fn a_failing_entry_inside_a_subtree_fails_alone() {
    let env = Env::new();
    fs::create_dir_all(env.s(b"d/e")).unwrap();
    for f in ["d/a", "d/b", "d/e/c", "z"] {
        write(&env.s(f.as_bytes()), f.as_bytes());
    }
    write(&env.d(b"old"), b"stale");
    let mut m = env.mirror();
    m.fail_copy_of = Some(b"d/b".to_vec());
    let (failed, _) = failed_paths(m.run(&batch(vec![rsync(b"")])).unwrap_err());
    assert_eq!(failed, vec![(b"d/b".to_vec(), true)]);
    for f in ["d/a", "d/e/c", "z"] {
        assert_eq!(fs::read(env.d(f.as_bytes())).unwrap(), f.as_bytes(), "{f}");
    }
    assert!(!env.d(b"old").exists(), "deletions still happen");
    env.run(vec![rsync(b"d/b")]);
    env.assert_equal();
}

#[cfg(target_os = "linux")] // setfsuid
#[test]
fn past_the_limit_the_ops_not_run_fail_whole() {
    if !nix::unistd::geteuid().is_root() {
        return; // needs to hand the trees to nobody
    }
    let env = Env::new();
    fs::create_dir(env.s(b"ro")).unwrap();
    let names: Vec<String> = (0..MAX_FAILED + 5).map(|i| format!("ro/f{i:03}")).collect();
    for n in names.iter().map(String::as_str).chain(["zz"]) {
        write(&env.s(n.as_bytes()), b"x");
    }
    write(&env.d(b"z-gone"), b"x");
    give_to_nobody(&env);
    // Nobody may not add entries to the destination's root-owned ro.
    fs::create_dir(env.d(b"ro")).unwrap();
    let err = as_nobody(|| {
        let mut m = env.mirror().preserve_owner(false);
        m.run(&batch(vec![rsync(b"ro"), sync(b"z-gone"), sync(b"zz")]))
    })
    .unwrap_err();
    let (failed, report) = failed_paths(err);
    assert_eq!(failed.len(), MAX_FAILED + 2, "{failed:?}");
    assert!(failed[..MAX_FAILED]
        .iter()
        .all(|(p, _)| p.starts_with(b"ro/f")));
    assert_eq!(
        failed[MAX_FAILED..],
        [(b"ro".to_vec(), true), (b"zz".to_vec(), false)],
        "the op that hit the limit and the one not run"
    );
    assert_eq!(report.deleted, 1, "deletions ran first");
    assert!(!env.d(b"z-gone").exists());
    assert!(!env.d(b"zz").exists());
}

#[cfg(target_os = "linux")] // only the setfsuid tests use it
/// Gives the test's trees (and what the source holds) to nobody.
fn give_to_nobody(env: &Env) {
    let base = env.src.parent().unwrap();
    for p in [base, &env.dst, &env.outside] {
        std::os::unix::fs::chown(p, Some(65534), Some(65534)).unwrap();
    }
    for e in walkdir(&env.src) {
        std::os::unix::fs::chown(e, Some(65534), Some(65534)).unwrap();
    }
    for e in walkdir(&env.dst) {
        std::os::unix::fs::chown(e, Some(65534), Some(65534)).unwrap();
    }
}

#[cfg(target_os = "linux")] // only the setfsuid tests use it
fn walkdir(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if out[i].is_dir() {
            let mut kids: Vec<PathBuf> = fs::read_dir(&out[i])
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            out.append(&mut kids);
        }
        i += 1;
    }
    out
}

#[test]
fn deletions_run_before_copies() {
    let env = Env::new();
    write(&env.s(b"big"), b"needs the space");
    write(&env.d(b"z-gone"), b"takes the space");
    let mut m = env.mirror();
    // The copy of big sees the deletion of z-gone done already (ops come
    // sorted by path, so z-gone's would run after big's).
    m.before_copy = Some(|p| {
        let dst = p.parent().unwrap().parent().unwrap().join("dst");
        assert!(!dst.join("z-gone").exists(), "copied before deleting");
    });
    let r = env.run_with(&mut m, vec![sync(b"big"), sync(b"z-gone")]);
    assert_eq!((r.copied, r.deleted), (1, 1));
    env.assert_equal();
}

#[test]
fn renames_and_deletions_run_before_copies_and_a_remade_path_ends_as_the_source() {
    let env = Env::new();
    // The destination had a (renamed to b), g (deleted), and r, which the
    // source deleted and made again (one op: the source's r wins).
    write(&env.d(b"a"), b"moved");
    write(&env.d(b"g"), b"gone");
    write(&env.d(b"r"), b"old r");
    write(&env.s(b"b"), b"moved");
    write(&env.s(b"c"), b"new");
    write(&env.s(b"r"), b"new r");
    let mut m = env.mirror();
    m.before_copy = Some(|p| {
        let dst = p.parent().unwrap().parent().unwrap().join("dst");
        assert!(!dst.join("g").exists(), "copied before deleting");
        assert!(!dst.join("a").exists(), "copied before renaming");
    });
    let r = env.run_with(
        &mut m,
        vec![mv(b"a", b"b"), sync(b"c"), sync(b"g"), sync(b"r")],
    );
    assert_eq!((r.renamed, r.deleted), (1, 1));
    env.assert_equal();
}

#[test]
fn an_error_about_the_whole_destination_stops_the_batch() {
    let io = |code| HandlerError::io("/x", io::Error::from_raw_os_error(code));
    assert_eq!(scope(&io(libc::ENOSPC)), Scope::Entry);
    assert_eq!(scope(&io(libc::EDQUOT)), Scope::Entry);
    assert_eq!(scope(&io(libc::ENAMETOOLONG)), Scope::Entry);
    assert_eq!(scope(&io(libc::EROFS)), Scope::Batch);
    assert_eq!(scope(&io(libc::EIO)), Scope::Batch);
    assert_eq!(scope(&io(libc::ESTALE)), Scope::Batch);
    assert_eq!(scope(&HandlerError::Other("x".into())), Scope::Batch);
    // Re-worded (a copy's error keeps its kind, not its errno).
    let reworded = |code| {
        let e = io::Error::from_raw_os_error(code);
        HandlerError::io("/x", io::Error::new(e.kind(), format!("copying: {e}")))
    };
    assert_eq!(scope(&reworded(libc::ENOSPC)), Scope::Entry);
    assert_eq!(scope(&reworded(libc::EROFS)), Scope::Batch);
    assert_eq!(
        scope(&HandlerError::io("/x", io::Error::other("injected"))),
        Scope::Entry
    );
}

#[cfg(target_os = "linux")] // setfsuid
/// Runs `f` in a thread whose file system uid is nobody's: no permission
/// bits are overridden there, as for a daemon that is not root.
fn as_nobody<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setfsuid changes only the calling thread's fsuid.
            let old = unsafe { libc::setfsuid(65534) };
            let out = f();
            unsafe { libc::setfsuid(old as libc::uid_t) };
            out
        })
        .join()
        .unwrap()
    })
}

#[cfg(target_os = "linux")] // setfsuid
#[test]
fn unreadable_source_entries_are_skipped_and_listed() {
    if !nix::unistd::geteuid().is_root() {
        return; // needs to hand the trees to nobody
    }
    let env = Env::new();
    fs::create_dir(env.s(b"locked")).unwrap();
    write(&env.s(b"locked/in"), b"x");
    for f in ["a", "secret", "z"] {
        write(&env.s(f.as_bytes()), f.as_bytes());
    }
    give_to_nobody(&env);
    chmod(&env.s(b"secret"), 0o000);
    chmod(&env.s(b"locked"), 0o000);
    let report = as_nobody(|| {
        let mut m = env.mirror().preserve_owner(false);
        m.run(&batch(vec![rsync(b"")]))
    })
    .unwrap_or_else(|e| panic!("batch failed: {e}"));
    let skipped: Vec<&[u8]> = report.skipped.iter().map(|s| &s.path[..]).collect();
    assert_eq!(skipped, vec![&b"locked"[..], b"secret"]);
    assert!(
        report.skipped[1].message.contains("/src/secret: "),
        "{:?}",
        report.skipped
    );
    assert_eq!(fs::read(env.d(b"a")).unwrap(), b"a");
    assert_eq!(fs::read(env.d(b"z")).unwrap(), b"z");
    assert!(!env.d(b"secret").exists());
    // Readable again: its next sync copies it.
    chmod(&env.s(b"secret"), 0o600);
    let report = as_nobody(|| {
        let mut m = env.mirror().preserve_owner(false);
        m.run(&batch(vec![sync(b"secret")]))
    })
    .unwrap_or_else(|e| panic!("batch failed: {e}"));
    assert!(report.skipped.is_empty());
    assert_eq!(fs::read(env.d(b"secret")).unwrap(), b"secret");
}

// ----- scale --------------------------------------------------------------

#[test]
fn storm_of_20000_explicit_file_ops() {
    let env = Env::new();
    let mut ops = Vec::new();
    for d in 0..20 {
        let dir = format!("d{d}");
        fs::create_dir(env.s(dir.as_bytes())).unwrap();
        ops.push(sync(dir.as_bytes()));
    }
    for i in 0..20_000 {
        let p = format!("d{}/file{i}", i % 20);
        write(&env.s(p.as_bytes()), p.as_bytes());
        ops.push(sync(p.as_bytes()));
    }
    let start = Instant::now();
    let r = env.run(ops);
    let took = start.elapsed();
    eprintln!("20,000 explicit copies took {took:?}");
    assert_eq!(r.copied, 20_020);
    env.assert_equal();
    // Generous: a debug build on a busy 2-core machine does this in a few
    // seconds; minutes would mean a per-file cost that does not belong.
    assert!(took < Duration::from_secs(120), "took {took:?}");
}

// ----- rules --------------------------------------------------------------

#[test]
fn excluded_entries_are_neither_copied_nor_deleted() {
    let env = Env::new();
    let rules = Rules::parse(b"-f\\.tmp$\n-d^cache$\n+*\n", "test").unwrap();
    write(&env.s(b"keep"), b"k");
    write(&env.s(b"new.tmp"), b"t");
    fs::create_dir(env.s(b"cache")).unwrap();
    write(&env.s(b"cache/c"), b"c");
    write(&env.d(b"old.tmp"), b"protected");
    fs::create_dir(env.d(b"sub")).unwrap();
    write(&env.d(b"sub/x.tmp"), b"protected too");
    let mut m = Mirror::new(env.src.clone(), env.dst.clone(), Arc::new(rules));
    env.run_with(&mut m, vec![rsync(b""), sync(b"new.tmp"), sync(b"cache/c")]);
    assert_eq!(fs::read(env.d(b"keep")).unwrap(), b"k");
    assert!(!env.d(b"new.tmp").exists());
    assert!(!env.d(b"cache").exists());
    assert_eq!(fs::read(env.d(b"old.tmp")).unwrap(), b"protected");
    // `sub` is gone from the source, but holds an excluded file: it stays.
    assert_eq!(fs::read(env.d(b"sub/x.tmp")).unwrap(), b"protected too");
}

// ----- property: any source + any destination → equal -------------------

#[derive(Clone, Debug)]
enum Node {
    File {
        data: Vec<u8>,
        mode: u32,
        mtime: (i64, i64),
    },
    Dir {
        mode: u32,
        children: BTreeMap<Vec<u8>, Node>,
    },
    Link(Vec<u8>),
    Fifo,
}

fn name_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"a".to_vec()),
        Just(b"b".to_vec()),
        Just(b"c".to_vec()),
        Just(b"x y".to_vec()),
        Just(b"\xff\n*".to_vec()),
    ]
}

fn node_strategy() -> impl Strategy<Value = Node> {
    let leaf = prop_oneof![
        (
            proptest::collection::vec(any::<u8>(), 0..64),
            prop_oneof![Just(0o644u32), Just(0o600), Just(0o755), Just(0o4711)],
            (1_000_000_000i64..1_000_000_100, 0i64..1_000_000_000),
        )
            .prop_map(|(data, mode, mtime)| Node::File { data, mode, mtime }),
        prop_oneof![
            Just(b"a".to_vec()),
            Just(b"../b".to_vec()),
            Just(b"/nonexistent".to_vec())
        ]
        .prop_map(Node::Link),
        Just(Node::Fifo),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        (
            prop_oneof![Just(0o755u32), Just(0o700), Just(0o555)],
            proptest::collection::btree_map(name_strategy(), inner, 0..4),
        )
            .prop_map(|(mode, children)| Node::Dir { mode, children })
    })
}

fn tree_strategy() -> impl Strategy<Value = BTreeMap<Vec<u8>, Node>> {
    proptest::collection::btree_map(name_strategy(), node_strategy(), 0..5)
}

fn build(dir: &Path, children: &BTreeMap<Vec<u8>, Node>) {
    for (name, node) in children {
        let p = dir.join(OsStr::from_bytes(name));
        match node {
            Node::File { data, mode, mtime } => {
                write(&p, data);
                chmod(&p, *mode);
                set_mtime(&p, mtime.0, mtime.1);
            }
            Node::Dir { mode, children } => {
                fs::create_dir(&p).unwrap();
                build(&p, children);
                chmod(&p, *mode);
            }
            Node::Link(t) => symlink(OsStr::from_bytes(t), &p).unwrap(),
            Node::Fifo => mkfifo(&p),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn any_destination_becomes_equal_to_any_source(
        src in tree_strategy(),
        dst in tree_strategy(),
    ) {
        let env = Env::new();
        build(&env.src, &src);
        build(&env.dst, &dst);
        let r = env.run(vec![rsync(b"")]);
        if let Err(diff) = compare_trees(&env.src, &env.dst) {
            prop_assert!(false, "{}", diff);
        }
        assert_no_temp_files(&env.dst);
        // A second run finds nothing to do.
        let again = env.run(vec![rsync(b"")]);
        prop_assert_eq!((again.copied, again.deleted), (0, 0), "first run: {:?}", r);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// The same end state through explicit, non-recursive ops only: one per
    /// path that exists on either side, parents first, as the queue sends
    /// them (this exercises creation of parents and the end-of-batch fix of
    /// directory metadata instead of the recursive walk).
    #[test]
    fn explicit_ops_over_every_path_make_the_trees_equal(
        src in tree_strategy(),
        dst in tree_strategy(),
    ) {
        let env = Env::new();
        build(&env.src, &src);
        build(&env.dst, &dst);
        let mut paths: BTreeSet<Vec<u8>> = all_names(&env.src).into_iter().collect();
        paths.extend(all_names(&env.dst));
        let mut ops: Vec<Op> = paths.iter().map(|p| sync(p)).collect();
        ops.push(sync(b""));
        env.run(ops);
        if let Err(diff) = compare_trees(&env.src, &env.dst) {
            prop_assert!(false, "{}", diff);
        }
        assert_no_temp_files(&env.dst);
    }
}

// ----- the destination root is held; the source never enters it ---------

#[test]
fn destination_swapped_for_a_symlink_stops_the_mirror_before_any_write() {
    let env = Env::new();
    write(&env.s(b"a"), b"one");
    let mut m = env.mirror();
    env.run_with(&mut m, vec![rsync(b"")]);
    assert_eq!(fs::read(env.d(b"a")).unwrap(), b"one");
    // Someone renames the destination away and puts a symlink to another
    // directory, holding a file the source does not have, in its place.
    let away = env.dst.with_file_name("dst.away");
    fs::rename(&env.dst, &away).unwrap();
    write(&env.outside.join("victim"), b"keep me");
    symlink(&env.outside, &env.dst).unwrap();
    write(&env.s(b"b"), b"two");
    for ops in [vec![sync(b"b")], vec![rsync(b"")]] {
        match m.run(&batch(ops)) {
            Err(HandlerError::DestinationChanged(msg)) => {
                assert!(msg.contains("stopped syncing to the destination"), "{msg}");
                assert!(msg.contains(&*env.dst.to_string_lossy()), "{msg}");
            }
            other => panic!("expected DestinationChanged, got {other:?}"),
        }
    }
    // Nothing written through the symlink, nothing deleted there, and
    // nothing more written into the directory that was moved away.
    assert_eq!(all_names(&env.outside), vec![b"victim".to_vec()]);
    assert_eq!(fs::read(env.outside.join("victim")).unwrap(), b"keep me");
    assert_eq!(all_names(&away), vec![b"a".to_vec()]);
    // Gone altogether: the same.
    fs::remove_file(&env.dst).unwrap();
    assert!(matches!(
        m.run(&batch(vec![sync(b"b")])),
        Err(HandlerError::DestinationChanged(_))
    ));
    assert!(
        !env.dst.exists(),
        "a vanished destination is not re-created"
    );
}

#[test]
fn engines_sharing_a_root_write_through_the_directory_opened_first() {
    let env = Env::new();
    let root = Arc::new(DstRoot::open(&env.dst, false).unwrap());
    let swapped = env.dst.with_file_name("dst.new");
    fs::create_dir(&swapped).unwrap();
    fs::rename(&env.dst, env.dst.with_file_name("dst.old")).unwrap();
    fs::rename(&swapped, &env.dst).unwrap();
    write(&env.s(b"f"), b"x");
    // A new engine (a reload) with the held root sees the swap, too.
    let mut m = env.mirror().with_root(Arc::clone(&root));
    assert!(matches!(
        m.run(&batch(vec![sync(b"f")])),
        Err(HandlerError::DestinationChanged(_))
    ));
    assert!(all_names(&env.dst).is_empty());
}

#[test]
fn a_source_directory_that_is_the_destination_is_never_entered() {
    let env = Env::new();
    // The destination inside the source, as a bind mount would show it.
    let dst = env.s(b"backup");
    fs::create_dir(&dst).unwrap();
    write(&env.s(b"f"), b"x");
    let mut m = Mirror::new(env.src.clone(), dst.clone(), Arc::new(Rules::allow_all()));
    env.run_with(&mut m, vec![rsync(b"")]);
    assert_eq!(fs::read(dst.join("f")).unwrap(), b"x");
    // The mirror's own write shows up in the source as backup/f: syncing
    // it must not copy it to backup/backup/f, and so on without end.
    for op in [sync(b"backup/f"), rsync(b"backup"), mv(b"f", b"backup/g")] {
        env.run_with(&mut m, vec![op]);
        assert!(
            !dst.join("backup").exists(),
            "the destination was copied into itself"
        );
    }
    env.run_with(&mut m, vec![rsync(b"")]);
    assert!(!dst.join("backup").exists());
    assert_eq!(fs::read(dst.join("f")).unwrap(), b"x");
}

#[test]
fn a_destination_directory_that_is_the_source_is_never_written_or_deleted_in() {
    let env = Env::new();
    // The source inside the destination, as a bind mount of the source in
    // the destination would show it (the start-up check cannot see that).
    let src = env.d(b"x");
    fs::create_dir_all(src.join("x")).unwrap();
    write(&src.join("x/f"), b"source file");
    write(&src.join("keep"), b"not in the source's x/");
    let mut m = Mirror::new(src.clone(), env.dst.clone(), Arc::new(Rules::allow_all()));
    // x/f exists in the source: unfixed, it was copied to dst/x/f, which
    // is the source's own f. x/keep does not: unfixed, dst/x/keep (the
    // source's keep) was deleted.
    for op in [sync(b"x/f"), sync(b"x/keep"), mv(b"x/f", b"x/g")] {
        env.run_with(&mut m, vec![op]);
    }
    assert_eq!(
        all_names(&src),
        vec![b"keep".to_vec(), b"x".to_vec(), b"x/f".to_vec()]
    );
    assert_eq!(
        fs::read(src.join("keep")).unwrap(),
        b"not in the source's x/"
    );
}
