//! Test helpers for clsync's command modes: a recording handler and a
//! harness that runs clsync and livesync side by side on two copies of the
//! same tree, with the same options and the same changes, and collects
//! what each handed its handler.
//!
//! The recording handler is a python3 script: file names never pass through
//! a shell. Each run appends one line: the argv (hex words), the contents of
//! every argument that names a regular file outside the watch dir (list
//! files; `INDEX:hex`), and the working directory (hex).
//!
//! Include it with `#[path = "common/modes.rs"] mod modes;` next to
//! `mod common;`.

#![allow(dead_code)]

use crate::common::{poll_until, secs, BIN};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const IN_MODIFY: u32 = 0x2;
pub const IN_ATTRIB: u32 = 0x4;
pub const IN_CLOSE_WRITE: u32 = 0x8;
pub const IN_MOVED_FROM: u32 = 0x40;
pub const IN_MOVED_TO: u32 = 0x80;
pub const IN_CREATE: u32 = 0x100;
pub const IN_DELETE: u32 = 0x200;
pub const IN_DELETE_SELF: u32 = 0x400;
pub const IN_MOVE_SELF: u32 = 0x800;
pub const IN_ISDIR: u32 = 0x4000_0000;

const RECORDER: &str = r#"#!/usr/bin/python3
# Records one handler run per line: argv | list files | cwd (all hex).
import os, sys
out = os.environ.get("REC_OUT") or sys.argv[0] + ".runs"
args = [os.fsencode(a) for a in sys.argv[1:]]
cwd = os.getcwdb()
lists = []
for i, a in enumerate(args):
    if a.startswith(b"/") and not (a + b"/").startswith(cwd + b"/") and os.path.isfile(a):
        with open(a, "rb") as f:
            lists.append("%d:%s" % (i, f.read().hex()))
line = " ".join(a.hex() for a in args) + "|" + " ".join(lists) + "|" + cwd.hex() + "\n"
with open(out, "a") as f:
    f.write(line)
sys.exit(int(os.environ.get("REC_EXIT", "0")))
"#;

/// Writes the recording handler as `dir/rec.py` and returns its path.
pub fn recorder(dir: &Path) -> PathBuf {
    let p = dir.join("rec.py");
    fs::write(&p, RECORDER).expect("write recorder");
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod recorder");
    p
}

/// One recorded handler run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    pub argv: Vec<Vec<u8>>,
    /// Argument index → contents of the file it named.
    pub lists: BTreeMap<usize, Vec<u8>>,
    pub cwd: Vec<u8>,
}

impl Run {
    /// Whether `needle` occurs in an argument or a list file.
    pub fn mentions(&self, needle: &[u8]) -> bool {
        let has = |h: &[u8]| h.windows(needle.len()).any(|w| w == needle);
        self.argv.iter().any(|a| has(a)) || self.lists.values().any(|l| has(l))
    }
}

fn unhex(w: &str) -> Vec<u8> {
    (0..w.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&w[i..i + 2], 16).expect("hex"))
        .collect()
}

/// The runs recorded in `file` (none when it is missing).
pub fn read_runs(file: &Path) -> Vec<Run> {
    let text = fs::read_to_string(file).unwrap_or_default();
    text.lines()
        .filter(|l| l.matches('|').count() == 2)
        .map(|l| {
            let mut parts = l.split('|');
            let argv = parts
                .next()
                .unwrap_or("")
                .split(' ')
                .filter(|w| !w.is_empty())
                .map(unhex)
                .collect();
            let lists = parts
                .next()
                .unwrap_or("")
                .split(' ')
                .filter(|w| !w.is_empty())
                .map(|w| {
                    let (i, h) = w.split_once(':').expect("INDEX:hex");
                    (i.parse().expect("index"), unhex(h))
                })
                .collect();
            let cwd = unhex(parts.next().unwrap_or(""));
            Run { argv, lists, cwd }
        })
        .collect()
}

/// Which program a side runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prog {
    Clsync,
    Livesync,
}

/// One program watching its own copy of the tree.
pub struct Side {
    pub prog: Prog,
    pub dir: tempfile::TempDir,
    /// The watch dir (canonical).
    pub w: PathBuf,
    pub dst: PathBuf,
    pub lists: PathBuf,
    pub rec: PathBuf,
    pub out: PathBuf,
    child: Option<Child>,
    log: PathBuf,
}

impl Side {
    /// A fresh tree made by `setup`, and the program started on it with
    /// `-M mode -S recorder -l lab -t1 -w1 -L lists -D dst` plus `extra`.
    pub fn start(prog: Prog, mode: &str, extra: &[OsString], setup: &dyn Fn(&Path)) -> Side {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("canonical tempdir");
        let (w, dst, lists) = (root.join("w"), root.join("d"), root.join("L"));
        for d in [&w, &dst, &lists] {
            fs::create_dir(d).expect("mkdir");
        }
        // clsync refuses a lists dir others can read.
        fs::set_permissions(&lists, fs::Permissions::from_mode(0o700)).expect("chmod");
        setup(&w);
        let rec = recorder(&root);
        let out = root.join("runs");
        let log = root.join("log");
        let mut args: Vec<OsString> = vec![
            "-H".into(),
            "/NULL/".into(),
            "-M".into(),
            mode.into(),
            "-W".into(),
            w.clone().into(),
            "-D".into(),
            dst.clone().into(),
            "-S".into(),
            rec.clone().into(),
            "-l".into(),
            "lab".into(),
            "-t1".into(),
            "-w1".into(),
            "-L".into(),
            lists.clone().into(),
        ];
        let program = match prog {
            Prog::Clsync => {
                // As root clsync drops to nobody unless told otherwise.
                // SAFETY: geteuid has no preconditions.
                if unsafe { libc::geteuid() } == 0 {
                    args.extend(["-u0".into(), "-g0".into()]);
                }
                PathBuf::from("clsync")
            }
            Prog::Livesync => PathBuf::from(BIN),
        };
        args.extend(extra.iter().cloned());
        let logf = fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(&program);
        // SAFETY: prctl in the child before exec is async-signal-safe.
        #[cfg(target_os = "linux")] // PR_SET_PDEATHSIG is Linux's
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)
            });
        }
        let child = cmd
            .args(&args)
            .env("REC_OUT", &out)
            .stdin(Stdio::null())
            .stdout(logf.try_clone().expect("log"))
            .stderr(logf)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
        Side {
            prog,
            dir,
            w,
            dst,
            lists,
            rec,
            out,
            child: Some(child),
            log,
        }
    }

    pub fn runs(&self) -> Vec<Run> {
        read_runs(&self.out)
    }

    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    fn size(&self) -> u64 {
        fs::metadata(&self.out).map(|m| m.len()).unwrap_or(0)
    }

    /// The watch-dir-relative form of an absolute path under `w`.
    pub fn rel(&self, abs: &[u8]) -> Option<Vec<u8>> {
        let w = self.w.as_os_str().as_bytes();
        if abs == w {
            return Some(Vec::new());
        }
        abs.strip_prefix(w)
            .and_then(|r| r.strip_prefix(b"/"))
            .map(<[u8]>::to_vec)
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + secs(5.0);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn alive(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }
}

impl Drop for Side {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Writes a file (parents made), content `c`.
pub fn put(w: &Path, rel: &[u8], c: &[u8]) {
    let p = w.join(std::ffi::OsStr::from_bytes(rel));
    if let Some(parent) = p.parent() {
        fs::create_dir_all(parent).expect("mkdir -p");
    }
    fs::write(&p, c).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
}

pub fn abs(w: &Path, rel: &[u8]) -> PathBuf {
    w.join(std::ffi::OsStr::from_bytes(rel))
}

/// What both sides recorded: the initial sync's runs, then each phase's.
pub struct Outcome {
    pub clsync: Vec<Vec<Run>>,
    pub livesync: Vec<Vec<Run>>,
    pub sides: [Side; 2],
}

/// Waits until the recording of every side stopped growing for `quiet`
/// and `done(runs)` holds for each.
fn settle(sides: &mut [Side; 2], from: [usize; 2], what: &str, done: &dyn Fn(&[Run]) -> bool) {
    let quiet = secs(0.6);
    let mut last = [(0u64, Instant::now()); 2];
    let r = poll_until(secs(30.0), || {
        let mut reasons = Vec::new();
        for (i, s) in sides.iter_mut().enumerate() {
            if !s.alive() {
                return Some(format!("{:?} died:\n{}", s.prog, s.log()));
            }
            let size = s.size();
            if size != last[i].0 {
                last[i] = (size, Instant::now());
            }
            let runs = s.runs();
            let new = runs.get(from[i]..).unwrap_or(&[]);
            if !done(new) {
                reasons.push(format!("{:?}: not done ({} new runs)", s.prog, new.len()));
            } else if last[i].1.elapsed() < quiet {
                reasons.push(format!("{:?}: still recording", s.prog));
            }
        }
        if reasons.is_empty() {
            None
        } else {
            Some(reasons.join("; "))
        }
    });
    if let Err(e) = r {
        let logs: Vec<String> = sides
            .iter()
            .map(|s| format!("--- {:?} log:\n{}", s.prog, s.log()))
            .collect();
        panic!("{what}: {e}\n{}", logs.join("\n"));
    }
}

/// Runs clsync and livesync with `-M mode` and `extra`, on trees made by
/// `setup`; waits for the initial sync, then applies each phase to both
/// trees and waits until both handlers have seen the phase's marker file
/// (`zz-mark-N`, created last).
pub fn differential(
    mode: &str,
    extra: &[&str],
    setup: &dyn Fn(&Path),
    phases: &[&dyn Fn(&Path)],
) -> Outcome {
    let extra: Vec<OsString> = extra.iter().map(OsString::from).collect();
    let mut sides = [
        Side::start(Prog::Clsync, mode, &extra, setup),
        Side::start(Prog::Livesync, mode, &extra, setup),
    ];
    settle(&mut sides, [0, 0], "the initial sync", &|r| !r.is_empty());
    let mut clsync = vec![sides[0].runs()];
    let mut livesync = vec![sides[1].runs()];
    for (n, phase) in phases.iter().enumerate() {
        let from = [sides[0].runs().len(), sides[1].runs().len()];
        let mark = format!("zz-mark-{n}");
        for s in &sides {
            phase(&s.w);
            put(&s.w, mark.as_bytes(), b"");
        }
        settle(&mut sides, from, &format!("phase {n}"), &|r| {
            r.iter().any(|run| run.mentions(mark.as_bytes()))
        });
        clsync.push(sides[0].runs()[from[0]..].to_vec());
        livesync.push(sides[1].runs()[from[1]..].to_vec());
    }
    for s in &mut sides {
        s.stop();
    }
    Outcome {
        clsync,
        livesync,
        sides,
    }
}

/// A path for messages.
pub fn show(p: &[u8]) -> String {
    format!("{:?}", OsString::from_vec(p.to_vec()))
}

/// Mask bits normalised for comparison: clsync's watch-self bits
/// (`IN_MOVE_SELF`, `IN_DELETE_SELF`) are dropped, a write is a write
/// whether or not the close was seen apart from it, and a directory moved
/// in counts as created (clsync reports it so).
pub fn norm_mask(m: u32) -> u32 {
    let mut m = m & !(IN_MOVE_SELF | IN_DELETE_SELF);
    if m & IN_CLOSE_WRITE != 0 {
        m |= IN_MODIFY;
    }
    if m & IN_ISDIR != 0 && m & IN_MOVED_TO != 0 {
        m = (m & !IN_MOVED_TO) | IN_CREATE;
    }
    m
}
