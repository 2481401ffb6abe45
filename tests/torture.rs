//! Randomised torture: a seeded sequence of thousands of filesystem operations
//! (create, modify, append, truncate, rename and delete files; mkdir, rmdir,
//! rm -rf and rename dirs; move populated dirs in from outside the tree and out
//! of it; create-then-delete; symlinks; chmod; type changes) is applied to the
//! source directly with std::fs, as fast as possible, while the daemon runs.
//! Afterwards the destination must become byte-for-byte equal to the source.
//!
//! The generator keeps a model of the source (path → kind) only to pick
//! valid operands fast; the truth is always the real filesystem, compared by
//! `tree_diff`. On failure the seed, the configuration and the tail of the
//! operation log are printed. Replay one seed with
//! `LIVESYNC_TORTURE_SEED=<n> cargo test --test torture <name>`; change the
//! number of live operations with `LIVESYNC_TORTURE_OPS`.

mod common;

use common::*;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Operations applied before the daemon starts (the initial tree).
const INITIAL_OPS: usize = 150;
/// Operations applied while the daemon runs (split in two phases).
const LIVE_OPS: usize = 2000;
/// How long the destination may take to catch up after a phase.
const QUIESCE: Duration = Duration::from_secs(60);
/// Soft cap on the number of entries, so the tree stays small and fast to compare.
const MAX_ENTRIES: usize = 400;
/// New entries are not created deeper than this.
const MAX_DEPTH: usize = 7;

/// Base names: shell, glob and rsync-filter metacharacters, a newline, a
/// leading dash, non-UTF-8 bytes, plus plain names.
const NAMES: &[&[u8]] = &[
    b"a",
    b"b",
    b"file.txt",
    b"with space",
    b" padded ",
    b"new\nline",
    b"star*",
    b"*",
    b"q?",
    b"[",
    b"[ab]",
    b"]",
    b"back\\slash",
    b"-dash",
    b"--",
    b"\xff\xfe",
    b"caf\xe9",
    b"\xc3\xa9t\xc3\xa9",
    b".hidden",
    b"tab\tx",
    b"~",
    b"x.tmp",
];

const FILE_MODES: &[u32] = &[0o600, 0o644, 0o640, 0o664, 0o700, 0o755, 0o750];
const DIR_MODES: &[u32] = &[0o700, 0o755, 0o750, 0o711];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum K {
    File,
    Dir,
    Link,
}

fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    if parent.is_empty() {
        name.to_vec()
    } else {
        [parent, b"/", name].concat()
    }
}

fn is_under(path: &[u8], dir: &[u8]) -> bool {
    dir.is_empty() || path == dir || (path.starts_with(dir) && path.get(dir.len()) == Some(&b'/'))
}

fn depth(path: &[u8]) -> usize {
    if path.is_empty() {
        0
    } else {
        path.iter().filter(|&&b| b == b'/').count() + 1
    }
}

struct Torture<'a> {
    env: &'a TestEnv,
    rng: ChaCha8Rng,
    /// Every entry below the source root (the root itself is implicit).
    model: BTreeMap<Vec<u8>, K>,
    log: Vec<String>,
    serial: usize,
}

impl<'a> Torture<'a> {
    fn new(env: &'a TestEnv, seed: u64) -> Self {
        Torture {
            env,
            rng: ChaCha8Rng::seed_from_u64(seed),
            model: BTreeMap::new(),
            log: Vec::new(),
            serial: 0,
        }
    }

    fn abs(&self, p: &[u8]) -> PathBuf {
        self.env.src_path(p)
    }

    fn fail(&self, what: &str, p: &[u8], e: std::io::Error) -> ! {
        panic!(
            "torture op failed: {what} {:?}: {e}\n{}",
            show(p),
            self.log_tail(30)
        )
    }

    fn log_tail(&self, n: usize) -> String {
        let start = self.log.len().saturating_sub(n);
        let mut s = format!(
            "--- last {} of {} ops ---\n",
            self.log.len() - start,
            self.log.len()
        );
        for (i, l) in self.log.iter().enumerate().skip(start) {
            s.push_str(&format!("{i:5} {l}\n"));
        }
        s
    }

    // ---- model queries --------------------------------------------------

    fn pick(&mut self, want: impl Fn(&[u8], K) -> bool) -> Option<Vec<u8>> {
        let cands: Vec<&Vec<u8>> = self
            .model
            .iter()
            .filter(|(p, k)| want(p, **k))
            .map(|(p, _)| p)
            .collect();
        if cands.is_empty() {
            return None;
        }
        let i = self.rng.gen_range(0..cands.len());
        Some(cands[i].clone())
    }

    /// A directory (possibly the root) shallow enough to create entries in.
    fn pick_parent(&mut self) -> Vec<u8> {
        if self.rng.gen_bool(0.2) {
            return Vec::new();
        }
        self.pick(|p, k| k == K::Dir && depth(p) < MAX_DEPTH)
            .unwrap_or_default()
    }

    fn name(&mut self) -> Vec<u8> {
        let mut n = NAMES[self.rng.gen_range(0..NAMES.len())].to_vec();
        if self.rng.gen_bool(0.5) {
            n.extend_from_slice(format!("{}", self.rng.gen_range(0..10)).as_bytes());
        }
        n
    }

    /// A path in `parent` that does not exist yet.
    fn free_in(&mut self, parent: &[u8]) -> Option<Vec<u8>> {
        for _ in 0..8 {
            let p = join(parent, &self.name());
            if !self.model.contains_key(&p) {
                return Some(p);
            }
        }
        None
    }

    fn content(&mut self) -> Vec<u8> {
        let r: f64 = self.rng.gen();
        let len = if r < 0.15 {
            0
        } else if r < 0.93 {
            self.rng.gen_range(1..3000)
        } else {
            self.rng.gen_range(64 * 1024..192 * 1024)
        };
        // Random bytes are slow to make in a debug build: big files repeat
        // one random block (cut short at the end, so any size is possible).
        let block = len.min(4096);
        let mut v = vec![0u8; block];
        self.rng.fill_bytes(&mut v);
        while v.len() < len {
            let n = (len - v.len()).min(block);
            v.extend_from_within(..n);
        }
        v
    }

    fn remove_subtree(&mut self, p: &[u8]) {
        self.model.retain(|k, _| !is_under(k, p));
    }

    fn rebase_subtree(&mut self, from: &[u8], to: &[u8]) {
        let moved: Vec<(Vec<u8>, K)> = self
            .model
            .iter()
            .filter(|(k, _)| is_under(k, from))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        for (k, v) in moved {
            self.model.remove(&k);
            let rest = &k[from.len()..];
            self.model.insert([to, rest].concat(), v);
        }
    }

    /// Records what is on disk under `p` (after a move in).
    fn add_from_disk(&mut self, p: &[u8]) {
        let abs = self.abs(p);
        let md = fs::symlink_metadata(&abs).unwrap_or_else(|e| self.fail("lstat", p, e));
        let k = if md.file_type().is_symlink() {
            K::Link
        } else if md.is_dir() {
            K::Dir
        } else {
            K::File
        };
        self.model.insert(p.to_vec(), k);
        if k == K::Dir {
            let entries = fs::read_dir(&abs).unwrap_or_else(|e| self.fail("readdir", p, e));
            for e in entries {
                let e = e.unwrap_or_else(|e| self.fail("readdir", p, e));
                self.add_from_disk(&join(p, e.file_name().as_bytes()));
            }
        }
    }

    // ---- primitive actions (real filesystem + model) ---------------------

    fn write_file(&mut self, p: &[u8]) {
        let c = self.content();
        fs::write(self.abs(p), &c).unwrap_or_else(|e| self.fail("write", p, e));
        self.model.insert(p.to_vec(), K::File);
    }

    fn make_dir(&mut self, p: &[u8]) {
        fs::create_dir(self.abs(p)).unwrap_or_else(|e| self.fail("mkdir", p, e));
        self.model.insert(p.to_vec(), K::Dir);
    }

    /// A small random tree at absolute `root` (not in the model: used outside).
    fn build_outside(&mut self, root: &Path) {
        fs::create_dir(root)
            .unwrap_or_else(|e| self.fail("mkdir outside", root.as_os_str().as_bytes(), e));
        let mut dirs = vec![root.to_path_buf()];
        for _ in 0..self.rng.gen_range(0..3) {
            let parent = dirs[self.rng.gen_range(0..dirs.len())].clone();
            let d = parent.join(rel(&self.name()));
            if fs::create_dir(&d).is_ok() {
                dirs.push(d);
            }
        }
        for _ in 0..self.rng.gen_range(1..7) {
            let parent = dirs[self.rng.gen_range(0..dirs.len())].clone();
            let f = parent.join(rel(&self.name()));
            if fs::symlink_metadata(&f).is_err() {
                let c = self.content();
                fs::write(&f, c)
                    .unwrap_or_else(|e| self.fail("write outside", f.as_os_str().as_bytes(), e));
            }
        }
        if self.rng.gen_bool(0.3) {
            let l = dirs[0].join("link");
            let _ = symlink("../somewhere", l);
        }
    }

    // ---- operations -------------------------------------------------------

    /// Applies one random operation; returns its description, or None when
    /// no operand fit (the caller draws again).
    fn step(&mut self) -> Option<String> {
        let crowded = self.model.len() >= MAX_ENTRIES;
        // (weight, op) — creation ops are disabled when the tree is crowded.
        let table: &[(u32, u8)] = &[
            (if crowded { 0 } else { 16 }, 0), // create file
            (10, 1),                           // modify file
            (6, 2),                            // append
            (4, 3),                            // truncate
            (7, 4),                            // rename file/link
            (if crowded { 20 } else { 7 }, 5), // delete file/link
            (if crowded { 0 } else { 6 }, 6),  // mkdir (maybe populated at once)
            (if crowded { 0 } else { 2 }, 7),  // mkdir -p
            (3, 8),                            // rmdir empty
            (if crowded { 6 } else { 2 }, 9),  // rm -rf
            (4, 10),                           // rename dir
            (if crowded { 0 } else { 2 }, 11), // move populated dir in
            (2, 12),                           // move dir out
            (5, 13),                           // create then delete
            (if crowded { 0 } else { 4 }, 14), // symlink
            (4, 15),                           // chmod
            (2, 16),                           // type change
        ];
        let total: u32 = table.iter().map(|(w, _)| w).sum();
        let mut r = self.rng.gen_range(0..total);
        let mut op = 0;
        for (w, o) in table {
            if r < *w {
                op = *o;
                break;
            }
            r -= w;
        }
        match op {
            0 => {
                let parent = self.pick_parent();
                let p = self.free_in(&parent)?;
                self.write_file(&p);
                Some(format!("create {:?}", show(&p)))
            }
            1 => {
                let p = self.pick(|_, k| k == K::File)?;
                let abs = self.abs(&p);
                if self.rng.gen_bool(0.4) {
                    // Same size, different bytes.
                    let len = fs::metadata(&abs)
                        .unwrap_or_else(|e| self.fail("stat", &p, e))
                        .len() as usize;
                    let mut v = vec![0u8; len];
                    self.rng.fill_bytes(&mut v);
                    let mut f = fs::OpenOptions::new()
                        .write(true)
                        .open(&abs)
                        .unwrap_or_else(|e| self.fail("open", &p, e));
                    f.write_all(&v)
                        .unwrap_or_else(|e| self.fail("overwrite", &p, e));
                    Some(format!("overwrite-same-size {:?}", show(&p)))
                } else {
                    self.write_file(&p);
                    Some(format!("rewrite {:?}", show(&p)))
                }
            }
            2 => {
                let p = self.pick(|_, k| k == K::File)?;
                let n = self.rng.gen_range(1..200);
                let mut v = vec![0u8; n];
                self.rng.fill_bytes(&mut v);
                let mut f = fs::OpenOptions::new()
                    .append(true)
                    .open(self.abs(&p))
                    .unwrap_or_else(|e| self.fail("open", &p, e));
                f.write_all(&v)
                    .unwrap_or_else(|e| self.fail("append", &p, e));
                Some(format!("append {n} {:?}", show(&p)))
            }
            3 => {
                let p = self.pick(|_, k| k == K::File)?;
                let f = fs::OpenOptions::new()
                    .write(true)
                    .open(self.abs(&p))
                    .unwrap_or_else(|e| self.fail("open", &p, e));
                let len = f.metadata().map(|m| m.len()).unwrap_or(0);
                let to = if len == 0 {
                    0
                } else {
                    self.rng.gen_range(0..len)
                };
                f.set_len(to)
                    .unwrap_or_else(|e| self.fail("truncate", &p, e));
                Some(format!("truncate {to} {:?}", show(&p)))
            }
            4 => {
                let p = self.pick(|_, k| k != K::Dir)?;
                let parent = self.pick_parent();
                let to = join(&parent, &self.name());
                match self.model.get(&to) {
                    Some(K::Dir) => return None,
                    _ if to == p => return None,
                    _ => {}
                }
                let kind = self.model[&p];
                fs::rename(self.abs(&p), self.abs(&to))
                    .unwrap_or_else(|e| self.fail("rename", &p, e));
                self.model.remove(&p);
                self.model.insert(to.clone(), kind);
                Some(format!("rename {:?} -> {:?}", show(&p), show(&to)))
            }
            5 => {
                let p = self.pick(|_, k| k != K::Dir)?;
                fs::remove_file(self.abs(&p)).unwrap_or_else(|e| self.fail("unlink", &p, e));
                self.model.remove(&p);
                Some(format!("unlink {:?}", show(&p)))
            }
            6 => {
                let parent = self.pick_parent();
                let p = self.free_in(&parent)?;
                self.make_dir(&p);
                let n = if self.rng.gen_bool(0.4) {
                    self.rng.gen_range(1..6)
                } else {
                    0
                };
                for _ in 0..n {
                    if let Some(f) = self.free_in(&p) {
                        self.write_file(&f);
                    }
                }
                Some(format!("mkdir {:?} with {n} files", show(&p)))
            }
            7 => {
                let mut p = self.pick_parent();
                let levels = self.rng.gen_range(2..5);
                for _ in 0..levels {
                    p = self.free_in(&p)?;
                    // create_dir_all below; record as we go
                    fs::create_dir_all(self.abs(&p))
                        .unwrap_or_else(|e| self.fail("mkdir -p", &p, e));
                    self.model.insert(p.clone(), K::Dir);
                }
                let f = self.free_in(&p)?;
                self.write_file(&f);
                Some(format!("mkdir -p {:?} + file", show(&p)))
            }
            8 => {
                let empties: Vec<Vec<u8>> = self
                    .model
                    .iter()
                    .filter(|(p, k)| {
                        **k == K::Dir
                            && !self
                                .model
                                .keys()
                                .any(|c| c.len() > p.len() && is_under(c, p))
                    })
                    .map(|(p, _)| p.clone())
                    .collect();
                if empties.is_empty() {
                    return None;
                }
                let p = empties[self.rng.gen_range(0..empties.len())].clone();
                fs::remove_dir(self.abs(&p)).unwrap_or_else(|e| self.fail("rmdir", &p, e));
                self.model.remove(&p);
                Some(format!("rmdir {:?}", show(&p)))
            }
            9 => {
                let p = self.pick(|_, k| k == K::Dir)?;
                fs::remove_dir_all(self.abs(&p)).unwrap_or_else(|e| self.fail("rm -rf", &p, e));
                self.remove_subtree(&p);
                Some(format!("rm -rf {:?}", show(&p)))
            }
            10 => {
                let d = self.pick(|_, k| k == K::Dir)?;
                let parent = {
                    let d2 = d.clone();
                    if self.rng.gen_bool(0.25) {
                        Vec::new()
                    } else {
                        self.pick(move |p, k| k == K::Dir && !is_under(p, &d2))
                            .unwrap_or_default()
                    }
                };
                let to = self.free_in(&parent)?;
                fs::rename(self.abs(&d), self.abs(&to))
                    .unwrap_or_else(|e| self.fail("rename dir", &d, e));
                self.rebase_subtree(&d, &to);
                Some(format!("rename dir {:?} -> {:?}", show(&d), show(&to)))
            }
            11 => {
                self.serial += 1;
                let staged = self.env.outside_path(format!("in-{}", self.serial));
                self.build_outside(&staged);
                let parent = self.pick_parent();
                let to = self.free_in(&parent)?;
                fs::rename(&staged, self.abs(&to)).unwrap_or_else(|e| self.fail("move in", &to, e));
                self.add_from_disk(&to);
                Some(format!("move in {:?}", show(&to)))
            }
            12 => {
                let d = self.pick(|_, k| k == K::Dir)?;
                self.serial += 1;
                let out = self.env.outside_path(format!("out-{}", self.serial));
                fs::rename(self.abs(&d), &out).unwrap_or_else(|e| self.fail("move out", &d, e));
                self.remove_subtree(&d);
                // Life goes on outside: none of this may reach the destination.
                let after = self.rng.gen_range(0..3);
                if after >= 1 {
                    let _ = fs::write(out.join("written-after-move-out"), b"outside");
                }
                if after == 2 {
                    let _ = fs::remove_dir_all(&out);
                }
                Some(format!("move out {:?}", show(&d)))
            }
            13 => {
                let parent = self.pick_parent();
                let p = self.free_in(&parent)?;
                if self.rng.gen_bool(0.5) {
                    self.write_file(&p);
                    fs::remove_file(self.abs(&p)).unwrap_or_else(|e| self.fail("unlink", &p, e));
                } else {
                    self.make_dir(&p);
                    if let Some(f) = self.free_in(&p) {
                        self.write_file(&f);
                    }
                    fs::remove_dir_all(self.abs(&p)).unwrap_or_else(|e| self.fail("rm -rf", &p, e));
                }
                self.remove_subtree(&p);
                Some(format!("create+delete {:?}", show(&p)))
            }
            14 => {
                let parent = self.pick_parent();
                let p = self.free_in(&parent)?;
                let target: Vec<u8> = match self.rng.gen_range(0..4) {
                    0 => self.name(), // sibling name, maybe dangling
                    1 => {
                        // an existing entry, relative to the link's dir
                        let t = self
                            .pick(|_, _| true)
                            .unwrap_or_else(|| b"nothing".to_vec());
                        let mut s = b"../".repeat(depth(&parent));
                        s.extend_from_slice(&t);
                        s
                    }
                    2 => self.env.outside.as_os_str().as_bytes().to_vec(),
                    _ => b"../../../../../../../../etc/passwd".to_vec(),
                };
                symlink(rel(&target), self.abs(&p)).unwrap_or_else(|e| self.fail("symlink", &p, e));
                self.model.insert(p.clone(), K::Link);
                let outside = self.env.outside.as_os_str().as_bytes();
                let shown = if target == outside {
                    "<outside>".to_string()
                } else {
                    show(&target)
                };
                Some(format!("symlink {:?} -> {:?}", show(&p), shown))
            }
            15 => {
                let p = self.pick(|_, k| k != K::Link)?;
                let mode = if self.model[&p] == K::Dir {
                    DIR_MODES[self.rng.gen_range(0..DIR_MODES.len())]
                } else {
                    FILE_MODES[self.rng.gen_range(0..FILE_MODES.len())]
                };
                fs::set_permissions(self.abs(&p), fs::Permissions::from_mode(mode))
                    .unwrap_or_else(|e| self.fail("chmod", &p, e));
                Some(format!("chmod {mode:o} {:?}", show(&p)))
            }
            _ => {
                let p = self.pick(|_, _| true)?;
                if self.model[&p] == K::Dir {
                    fs::remove_dir_all(self.abs(&p)).unwrap_or_else(|e| self.fail("rm -rf", &p, e));
                    self.remove_subtree(&p);
                    self.write_file(&p);
                    Some(format!("dir -> file {:?}", show(&p)))
                } else {
                    fs::remove_file(self.abs(&p)).unwrap_or_else(|e| self.fail("unlink", &p, e));
                    self.model.remove(&p);
                    self.make_dir(&p);
                    if let Some(f) = self.free_in(&p) {
                        self.write_file(&f);
                    }
                    Some(format!("file -> dir {:?}", show(&p)))
                }
            }
        }
    }

    fn run(&mut self, n: usize) {
        let mut done = 0;
        while done < n {
            if let Some(desc) = self.step() {
                self.log.push(desc);
                done += 1;
            }
        }
    }
}

// ---------------------------------------------------------------------------

fn env_usize(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// One torture run: initial tree, daemon start, two phases of live ops, each
/// followed by a wait for the destination to equal the source.
fn torture(handler: &str, delays: &[&str], seed: u64) {
    if handler == "rsyncdirect" && !require_tool("rsync") {
        return;
    }
    let seed = env_usize("LIVESYNC_TORTURE_SEED").unwrap_or(seed);
    let live_ops = env_usize("LIVESYNC_TORTURE_OPS").map_or(LIVE_OPS, |n| n as usize);
    let config = format!("-M {handler} {} seed={seed}", delays.join(" "));
    eprintln!("torture: {config}, {live_ops} live ops");

    let env = TestEnv::new();
    let mut t = Torture::new(&env, seed);
    t.run(INITIAL_OPS);

    let mut args = vec!["-M", handler];
    args.extend_from_slice(delays);
    let mut d = Daemon::start(&env, &args);
    if let Err(e) = d.try_wait_synced(&env, QUIESCE) {
        panic!(
            "torture [{config}]: initial sync failed\n{e}\n{}",
            t.log_tail(20)
        );
    }

    let phases = [live_ops / 2, live_ops - live_ops / 2];
    for (i, n) in phases.into_iter().enumerate() {
        let started = Instant::now();
        t.run(n);
        let applied = started.elapsed();
        let waited = Instant::now();
        if let Err(e) = d.try_wait_synced(&env, QUIESCE) {
            panic!(
                "torture [{config}] phase {i}: destination never matched the source\n\
                 replay: LIVESYNC_TORTURE_SEED={seed} cargo test --test torture\n{e}\n{}",
                t.log_tail(60)
            );
        }
        eprintln!(
            "torture [{config}] phase {i}: {n} ops in {applied:?}, in sync {:?} later ({} entries)",
            waited.elapsed(),
            t.model.len()
        );
    }
}

const NOW: &[&str] = &["-t0", "-w0"];
const WINDOW: &[&str] = &["-t1", "-w1"];

#[test]
fn mirror_now_seed_1() {
    torture("mirror", NOW, 1);
}

#[test]
fn mirror_now_seed_2() {
    torture("mirror", NOW, 2);
}

#[test]
fn mirror_now_seed_3() {
    torture("mirror", NOW, 3);
}

#[test]
fn mirror_window_seed_4() {
    torture("mirror", WINDOW, 4);
}

#[test]
fn rsyncdirect_now_seed_5() {
    torture("rsyncdirect", NOW, 5);
}

#[test]
fn rsyncdirect_now_seed_6() {
    torture("rsyncdirect", NOW, 6);
}

#[test]
fn rsyncdirect_window_seed_7() {
    torture("rsyncdirect", WINDOW, 7);
}

/// The generator itself is deterministic and valid: the same seed gives the
/// same tree, and the model matches the disk (no daemon involved).
#[test]
fn generator_is_deterministic_and_model_matches_disk() {
    let snapshot = |seed| {
        let env = TestEnv::new();
        let mut t = Torture::new(&env, seed);
        t.run(600);
        let mut disk = BTreeMap::new();
        walk(&env.src, b"", &mut disk);
        assert_eq!(
            disk, t.model,
            "model drifted from the filesystem (seed {seed})"
        );
        (t.log.clone(), disk)
    };
    let (log_a, tree_a) = snapshot(42);
    let (log_b, tree_b) = snapshot(42);
    assert!(log_a == log_b, "same seed, different operations");
    assert!(tree_a == tree_b, "same seed, different trees");
    assert!(tree_a.values().any(|k| *k == K::Link) && tree_a.values().any(|k| *k == K::Dir));
    let weird = tree_a
        .keys()
        .filter(|p| p.iter().any(|b| b"\n*?[\\ \xff".contains(b)))
        .count();
    assert!(weird > 10, "name pool not exercised: {weird} weird paths");
}

fn walk(abs: &Path, relp: &[u8], out: &mut BTreeMap<Vec<u8>, K>) {
    for e in fs::read_dir(abs).unwrap() {
        let e = e.unwrap();
        let p = join(relp, e.file_name().as_bytes());
        let ft = e.file_type().unwrap();
        let k = if ft.is_symlink() {
            K::Link
        } else if ft.is_dir() {
            K::Dir
        } else {
            K::File
        };
        out.insert(p.clone(), k);
        if k == K::Dir {
            walk(&e.path(), &p, out);
        }
    }
}

/// `tree_diff` is what every torture verdict rests on: it must see each kind
/// of difference, including ones a size or name-as-UTF-8 check would miss.
#[test]
fn tree_diff_sees_every_kind_of_difference() {
    let env = TestEnv::new();
    let (a, b) = (&env.src, &env.dst);
    let both = |p: &[u8], content: &[u8]| {
        fs::write(a.join(rel(p)), content).unwrap();
        fs::write(b.join(rel(p)), content).unwrap();
    };
    assert_eq!(tree_diff(a, b), None);
    both(b"same", b"x");
    both(b"name \xff\n*", b"y");
    assert_eq!(tree_diff(a, b), None, "equal trees reported different");

    let expect = |what: &str, needle: &str| {
        let d = tree_diff(a, b).unwrap_or_else(|| panic!("{what}: no difference reported"));
        assert!(
            d.contains(needle),
            "{what}: report does not mention {needle:?}:\n{d}"
        );
    };
    fs::write(b.join("same"), "z").unwrap();
    expect("same size, other bytes", "contents differ");
    fs::write(b.join("same"), "x").unwrap();

    fs::set_permissions(a.join("same"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(b.join("same"), fs::Permissions::from_mode(0o640)).unwrap();
    expect("mode", "mode differs");
    fs::set_permissions(b.join("same"), fs::Permissions::from_mode(0o600)).unwrap();

    fs::write(b.join(rel(b"name \xff\n*")), "yy").unwrap();
    expect(
        "size under a non-UTF-8 name",
        r#""name \xff\n*": size differs"#,
    );
    fs::write(b.join(rel(b"name \xff\n*")), "y").unwrap();

    symlink("t1", a.join("l")).unwrap();
    symlink("t2", b.join("l")).unwrap();
    expect("symlink target", "symlink target differs");
    fs::remove_file(b.join("l")).unwrap();
    fs::write(b.join("l"), "t1").unwrap();
    expect("symlink vs file", "type differs");
    fs::remove_file(b.join("l")).unwrap();
    symlink("t1", b.join("l")).unwrap();

    fs::create_dir_all(a.join("d/e")).unwrap();
    fs::create_dir_all(b.join("d/e")).unwrap();
    fs::write(a.join("d/e/deep"), "").unwrap();
    expect("missing deep file", "missing in dst");
    fs::write(b.join("d/e/deep"), "").unwrap();
    fs::write(b.join("d/extra"), "").unwrap();
    expect("extra file", "extra in dst");
    fs::remove_file(b.join("d/extra")).unwrap();

    // Links are compared, never followed: differing targets' contents don't matter.
    fs::create_dir(a.join("ta")).unwrap();
    fs::create_dir(b.join("ta")).unwrap();
    fs::write(a.join("ta/t"), "1").unwrap();
    fs::write(b.join("ta/t"), "1").unwrap();
    symlink("ta", a.join("dirlink")).unwrap();
    symlink("ta", b.join("dirlink")).unwrap();
    assert_eq!(
        tree_diff(a, b),
        None,
        "trees made equal again are still reported different"
    );
}
