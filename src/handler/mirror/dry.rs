//! `--dry-run`: what the built-in mirror would do with a batch, one info
//! line per operation (`dry run: would copy a/b (12 bytes)`, `… delete`,
//! `… rename`, `… create directory`, `… chmod`, `… chown`, `… set the times
//! of`, `… link`), and nothing written anywhere.
//!
//! It answers the questions the engine answers, read-only and with the same
//! rules: which entries differ (type, size and mtime in a recursive
//! compare; the bytes too for a file an event named), which destination
//! entries the source no longer has (ones the rules exclude stay), and
//! whether a move can be a rename. Paths are resolved one component at a
//! time with `O_NOFOLLOW` from the two roots, as in the engine, so a
//! symlink in the tree is never followed here either. A destination that
//! does not exist yet is an empty one. Directory times are left out (the
//! engine resets them after every change inside). The engine itself is not
//! run: this module only reads, through the read-only half of `sys`.

use super::sys::{self, is_gone, raw, FileType, Meta};
use super::{kind_of, read_full, well_formed, Mirror};
use crate::batch::{Batch, Op};
use crate::handler::{HandlerError, Report};
use crate::path;
use crate::rules::{Action, Kind};
use std::collections::HashSet;
use std::io;
use std::os::fd::{OwnedFd, RawFd};

/// Plans `batch` against the two trees and logs every operation.
pub(super) fn run(m: &Mirror, batch: &Batch) -> Result<Report, HandlerError> {
    let lines = plan(m, batch)?;
    log::debug!("dry run: {} operation(s) for this batch", lines.len());
    Ok(Report::default())
}

/// The operations `batch` would take, in order, each logged as it is found
/// (`would …` without the `dry run: ` prefix).
fn plan(m: &Mirror, batch: &Batch) -> Result<Vec<String>, HandlerError> {
    let src_root = sys::open_root(&m.src).map_err(|e| HandlerError::io(&m.src, e))?;
    let dst_root = match sys::open_root(&m.dst) {
        Ok(fd) => Some(fd),
        Err(e) if is_gone(&e) => None,
        Err(e) => return Err(HandlerError::io(&m.dst, e)),
    };
    let mut plan = Plan {
        m,
        src_root,
        dst_root,
        lines: Vec::new(),
    };
    for op in &batch.ops {
        if op.paths().into_iter().any(|p| !well_formed(p)) {
            continue;
        }
        match op {
            Op::Sync { path, recursive } => plan.sync(path, *recursive)?,
            Op::Move { from, to } => plan.moved(from, to)?,
        }
    }
    Ok(plan.lines)
}

struct Plan<'m> {
    m: &'m Mirror,
    src_root: OwnedFd,
    dst_root: Option<OwnedFd>,
    lines: Vec<String>,
}

/// One entry on both sides: the source's parent and the destination's (if
/// it exists), the names in them, and the path that rules and lines use.
struct Pair<'a> {
    sdir: RawFd,
    sname: &'a [u8],
    ddir: Option<RawFd>,
    dname: &'a [u8],
    rel: &'a [u8],
}

type R<T> = Result<T, HandlerError>;

impl Plan<'_> {
    fn say(&mut self, what: String) {
        log::info!("dry run: would {what}");
        self.lines.push(what);
    }

    fn permits(&self, rel: &[u8], kind: Kind, action: Action) -> bool {
        rel.is_empty() || self.m.rules.permits(rel, kind, action)
    }

    fn serr(&self, rel: &[u8], e: io::Error) -> HandlerError {
        HandlerError::io(path::abs(&self.m.src, rel), e)
    }

    fn derr(&self, rel: &[u8], e: io::Error) -> HandlerError {
        HandlerError::io(path::abs(&self.m.dst, rel), e)
    }

    /// Directory `rel` under `root`, opened without following a link;
    /// `None` when it is not (or not reachable as) a real directory.
    fn open(&self, root: RawFd, rel: &[u8], dst: bool) -> R<Option<OwnedFd>> {
        let mut cur: Option<OwnedFd> = None;
        for comp in rel.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
            let at = cur.as_ref().map_or(root, raw);
            match sys::open_dir(at, comp) {
                Ok(fd) => cur = Some(fd),
                Err(e) if is_gone(&e) || e.raw_os_error() == Some(libc::ELOOP) => return Ok(None),
                Err(e) if dst => return Err(self.derr(rel, e)),
                Err(e) => return Err(self.serr(rel, e)),
            }
        }
        match cur {
            Some(fd) => Ok(Some(fd)),
            // The root itself: a descriptor of our own to hand out.
            None => sys::open_dir(root, b".").map(Some).map_err(|e| {
                if dst {
                    self.derr(rel, e)
                } else {
                    self.serr(rel, e)
                }
            }),
        }
    }

    fn src_dir(&self, rel: &[u8]) -> R<Option<OwnedFd>> {
        self.open(raw(&self.src_root), rel, false)
    }

    fn dst_dir(&self, rel: &[u8]) -> R<Option<OwnedFd>> {
        match &self.dst_root {
            Some(root) => self.open(raw(root), rel, true),
            None => Ok(None),
        }
    }

    fn lstat(&self, dir: Option<RawFd>, name: &[u8], rel: &[u8], dst: bool) -> R<Option<Meta>> {
        let Some(dir) = dir else { return Ok(None) };
        sys::lstat_at(dir, name).map_err(|e| {
            if dst {
                self.derr(rel, e)
            } else {
                self.serr(rel, e)
            }
        })
    }

    fn sync(&mut self, rel: &[u8], recursive: bool) -> R<()> {
        if rel.is_empty() {
            let s = self.src_dir(b"")?;
            let d = self.dst_dir(b"")?;
            if self.dst_root.is_none() {
                self.say(format!(
                    "create the destination {}",
                    path::display_os(&self.m.dst)
                ));
            }
            if let (true, Some(s)) = (recursive, s) {
                self.walk(raw(&s), d.as_ref().map(raw), b"")?;
            }
            return Ok(());
        }
        let (prel, name) = (path::parent(rel), path::file_name(rel));
        let Some(sdir) = self.src_dir(prel)? else {
            return self.delete(rel);
        };
        let Some(smeta) = self.lstat(Some(raw(&sdir)), name, rel, false)? else {
            return self.delete(rel);
        };
        if !self.permits(rel, kind_of(&smeta), Action::Sync) {
            return Ok(());
        }
        let ddir = self.dst_dir(prel)?;
        let dmeta = self.lstat(ddir.as_ref().map(raw), name, rel, true)?;
        let pair = Pair {
            sdir: raw(&sdir),
            sname: name,
            ddir: ddir.as_ref().map(raw),
            dname: name,
            rel,
        };
        self.entry(&pair, &smeta, dmeta.as_ref(), recursive, !recursive)
    }

    /// The source no longer has `rel`.
    fn delete(&mut self, rel: &[u8]) -> R<()> {
        let ddir = self.dst_dir(path::parent(rel))?;
        let name = path::file_name(rel);
        if let Some(d) = self.lstat(ddir.as_ref().map(raw), name, rel, true)? {
            self.delete_entry(rel, &d);
        }
        Ok(())
    }

    fn delete_entry(&mut self, rel: &[u8], d: &Meta) {
        if !self.permits(rel, kind_of(d), Action::Sync) {
            return;
        }
        self.say(format!(
            "delete {} {}{}",
            d.ftype.name(),
            path::display(rel),
            if d.is_dir() {
                " with what the rules let go below it"
            } else {
                ""
            }
        ));
    }

    /// `from` was renamed to `to` in the source.
    fn moved(&mut self, from: &[u8], to: &[u8]) -> R<()> {
        let apart = !from.is_empty()
            && !to.is_empty()
            && !path::is_under(to, from)
            && !path::is_under(from, to);
        if apart {
            let dfrom = self.dst_dir(path::parent(from))?;
            let dmeta = self.lstat(dfrom.as_ref().map(raw), path::file_name(from), from, true)?;
            let sto = self.src_dir(path::parent(to))?;
            let smeta = self.lstat(sto.as_ref().map(raw), path::file_name(to), to, false)?;
            if let (Some(d), Some(s), Some(sto)) = (dmeta, smeta, sto.as_ref()) {
                let kind = kind_of(&s);
                if s.ftype == d.ftype
                    && self.permits(from, kind, Action::Sync)
                    && self.permits(to, kind, Action::Sync)
                {
                    self.say(format!(
                        "rename {} to {}",
                        path::display(from),
                        path::display(to)
                    ));
                    // What would then differ: the source `to` against the
                    // destination entry that was `from`.
                    let pair = Pair {
                        sdir: raw(sto),
                        sname: path::file_name(to),
                        ddir: dfrom.as_ref().map(raw),
                        dname: path::file_name(from),
                        rel: to,
                    };
                    return self.entry(&pair, &s, Some(&d), true, false);
                }
            }
        }
        self.sync(to, true)?;
        self.sync(from, true)
    }

    /// Compares one entry; `explicit`: an event named it (a regular file of
    /// equal size and mtime is compared byte for byte).
    fn entry(
        &mut self,
        p: &Pair,
        s: &Meta,
        d: Option<&Meta>,
        recursive: bool,
        explicit: bool,
    ) -> R<()> {
        let rel = p.rel;
        if let Some(d) = d.filter(|d| d.ftype != s.ftype) {
            self.delete_entry(rel, d);
        }
        let same_type = d.filter(|d| d.ftype == s.ftype);
        match s.ftype {
            FileType::Dir => {
                if same_type.is_none() {
                    self.say(format!("create directory {}", path::display(rel)));
                }
                self.meta(rel, s, same_type);
                if recursive && self.permits(rel, Kind::Dir, Action::Walk) {
                    let sdir = match sys::open_dir(p.sdir, p.sname) {
                        Ok(fd) => fd,
                        Err(e) if is_gone(&e) => return Ok(()),
                        Err(e) => return Err(self.serr(rel, e)),
                    };
                    let ddir = match (same_type, p.ddir) {
                        (Some(_), Some(dd)) => {
                            Some(sys::open_dir(dd, p.dname).map_err(|e| self.derr(rel, e))?)
                        }
                        _ => None,
                    };
                    self.walk(raw(&sdir), ddir.as_ref().map(raw), rel)?;
                }
            }
            FileType::Regular => {
                let differs = match same_type {
                    None => true,
                    Some(d) if d.size != s.size || d.mtime != s.mtime => true,
                    Some(_) => explicit && !self.same_bytes(p),
                };
                if differs {
                    self.say(format!("copy {} ({} bytes)", path::display(rel), s.size));
                } else {
                    self.meta(rel, s, same_type);
                }
            }
            FileType::Symlink => {
                let target = match sys::readlink(p.sdir, p.sname) {
                    Ok(t) => t,
                    Err(e) if is_gone(&e) => return Ok(()),
                    Err(e) => return Err(self.serr(rel, e)),
                };
                let current = match (same_type, p.ddir) {
                    (Some(_), Some(dd)) => sys::readlink(dd, p.dname).ok(),
                    _ => None,
                };
                if current.as_deref() == Some(&target[..]) {
                    self.meta(rel, s, same_type);
                } else {
                    self.say(format!(
                        "link {} -> {}",
                        path::display(rel),
                        path::display(&target)
                    ));
                }
            }
            other => {
                let is_dev = matches!(other, FileType::CharDev | FileType::BlockDev);
                match same_type {
                    Some(d) if !is_dev || d.rdev == s.rdev => self.meta(rel, s, Some(d)),
                    _ => self.say(format!("create {} {}", other.name(), path::display(rel))),
                }
            }
        }
        Ok(())
    }

    /// Owner, mode and (for non-directories) times that would be set on an
    /// existing entry; a new one gets them with its creation.
    fn meta(&mut self, rel: &[u8], s: &Meta, d: Option<&Meta>) {
        let Some(d) = d else { return };
        let owner = self.m.preserve_owner && (d.uid, d.gid) != (s.uid, s.gid);
        if owner {
            self.say(format!("chown {} {}:{}", path::display(rel), s.uid, s.gid));
        }
        if s.ftype != FileType::Symlink && (owner || d.perm != s.perm) {
            self.say(format!("chmod {} {:04o}", path::display(rel), s.perm));
        }
        if !s.is_dir() && d.mtime != s.mtime {
            self.say(format!("set the times of {}", path::display(rel)));
        }
    }

    fn same_bytes(&self, p: &Pair) -> bool {
        let Some(dd) = p.ddir else { return false };
        let (Ok(mut a), Ok(mut b)) = (sys::open_read(p.sdir, p.sname), sys::open_read(dd, p.dname))
        else {
            return false;
        };
        let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
        loop {
            let (Ok(n), Ok(m)) = (read_full(&mut a, &mut ba), read_full(&mut b, &mut bb)) else {
                return false;
            };
            if n != m || ba[..n] != bb[..m] {
                return false;
            }
            if n == 0 {
                return true;
            }
        }
    }

    /// Compares the directories `sdir` and `ddir` (None: it does not exist
    /// yet) below `rel`, recursively. Deletes come first, as in the engine.
    fn walk(&mut self, sdir: RawFd, ddir: Option<RawFd>, rel: &[u8]) -> R<()> {
        let snames = match sys::read_names(sdir) {
            Ok(n) => n,
            Err(e) if is_gone(&e) => return Ok(()),
            Err(e) => return Err(self.serr(rel, e)),
        };
        let dnames = match ddir {
            Some(d) => sys::read_names(d).map_err(|e| self.derr(rel, e))?,
            None => Vec::new(),
        };
        let in_src: HashSet<&[u8]> = snames.iter().map(Vec::as_slice).collect();
        for name in dnames.iter().filter(|n| !in_src.contains(n.as_slice())) {
            let crel = path::join(rel, name);
            if let Some(d) = self.lstat(ddir, name, &crel, true)? {
                self.delete_entry(&crel, &d);
            }
        }
        for name in &snames {
            let crel = path::join(rel, name);
            let Some(s) = self.lstat(Some(sdir), name, &crel, false)? else {
                continue;
            };
            if !self.permits(&crel, kind_of(&s), Action::Sync) {
                continue;
            }
            let d = self.lstat(ddir, name, &crel, true)?;
            let pair = Pair {
                sdir,
                sname: name,
                ddir,
                dname: name,
                rel: &crel,
            };
            self.entry(&pair, &s, d.as_ref(), true, false)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::Handler;
    use crate::rules::Rules;
    use std::fs;
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    /// Every entry below `root`: path, type, mode, size, mtime, link target
    /// and contents; what "nothing was written" is checked against.
    fn state(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let Ok(rd) = fs::read_dir(&dir) else { continue };
            for e in rd.flatten() {
                let p = e.path();
                let md = fs::symlink_metadata(&p).expect("lstat");
                let extra = if md.file_type().is_symlink() {
                    fs::read_link(&p).expect("readlink").display().to_string()
                } else if md.is_file() {
                    String::from_utf8_lossy(&fs::read(&p).expect("read")).into_owned()
                } else {
                    stack.push(p.clone());
                    String::new()
                };
                out.push(format!(
                    "{} {:o} {} {} {extra}",
                    p.strip_prefix(root).expect("under root").display(),
                    md.mode(),
                    md.size(),
                    md.mtime_nsec() + md.mtime() * 1_000_000_000,
                ));
            }
        }
        out.sort();
        out
    }

    struct Trees {
        _t: tempfile::TempDir,
        src: PathBuf,
        dst: PathBuf,
    }

    fn trees() -> Trees {
        let t = tempfile::tempdir().expect("tempdir");
        let base = t.path().canonicalize().expect("canonical");
        let (src, dst) = (base.join("src"), base.join("dst"));
        fs::create_dir(&src).expect("src");
        fs::create_dir(&dst).expect("dst");
        Trees { _t: t, src, dst }
    }

    fn mirror(t: &Trees) -> Mirror {
        Mirror::new(t.src.clone(), t.dst.clone(), Arc::new(Rules::allow_all()))
    }

    fn sync(p: &[u8], recursive: bool) -> Op {
        Op::Sync {
            path: p.to_vec(),
            recursive,
        }
    }

    #[test]
    fn every_operation_is_named_and_nothing_is_written() {
        let t = trees();
        let w = |root: &Path, rel: &str, text: &str| {
            fs::write(root.join(rel), text).expect("write");
        };
        for d in [&t.src, &t.dst] {
            fs::create_dir(d.join("moved")).expect("mkdir");
            w(d, "moved/in", "i");
            w(d, "same", "same");
        }
        // The same file on both sides: the same mtime too (two writes fall
        // into different timestamp ticks under load, and a differing mtime
        // rightly plans a copy).
        let same_mtime = fs::metadata(t.src.join("same"))
            .and_then(|m| m.modified())
            .expect("mtime");
        fs::File::options()
            .write(true)
            .open(t.dst.join("same"))
            .and_then(|f| f.set_modified(same_mtime))
            .expect("same mtime");
        fs::rename(t.src.join("moved"), t.src.join("moved-to")).expect("rename");
        w(&t.src, "new", "new!");
        w(&t.dst, "gone", "g");
        fs::create_dir(t.src.join("became-dir")).expect("mkdir");
        w(&t.dst, "became-dir", "was a file");
        symlink("same", t.src.join("link")).expect("symlink");
        w(&t.src, "chmodded", "c");
        w(&t.dst, "chmodded", "c");
        fs::set_permissions(t.src.join("chmodded"), fs::Permissions::from_mode(0o600))
            .expect("chmod");
        let mtime = fs::metadata(t.src.join("chmodded"))
            .expect("stat")
            .modified()
            .expect("mtime");
        fs::File::options()
            .write(true)
            .open(t.dst.join("chmodded"))
            .and_then(|f| f.set_modified(mtime))
            .expect("same mtime");
        let before = state(&t.dst);
        let m = mirror(&t).dry_run(true);
        let ops = [
            Op::Move {
                from: b"moved".to_vec(),
                to: b"moved-to".to_vec(),
            },
            sync(b"", true),
        ];
        let got = plan(&m, &Batch::of(ops.to_vec())).expect("plan");
        for want in [
            "rename moved to moved-to",
            "copy new (4 bytes)",
            "delete file gone",
            "delete file became-dir",
            "create directory became-dir",
            "link link -> same",
            "chmod chmodded 0600",
        ] {
            assert!(got.iter().any(|l| l == want), "{want:?} not in {got:#?}");
        }
        assert!(!got.iter().any(|l| l.contains("same (")), "{got:#?}");
        assert_eq!(state(&t.dst), before, "the destination changed");
        // Through the handler too: a report of nothing done.
        let mut m = m;
        let r = m.run(&Batch::of(ops.to_vec())).expect("run");
        assert_eq!((r.copied, r.deleted, r.renamed), (0, 0, 0));
        assert_eq!(state(&t.dst), before, "the destination changed");
    }

    /// The planner asks what the engine asks: after a real run of the same
    /// batch, a dry run finds nothing left to do.
    #[test]
    fn after_the_engine_ran_nothing_is_left_to_do() {
        let t = trees();
        fs::create_dir_all(t.src.join("a/b/c")).expect("mkdir");
        fs::write(t.src.join("a/b/c/f"), "deep").expect("write");
        fs::write(t.src.join("top"), "t").expect("write");
        symlink("/nowhere", t.src.join("a/dangling")).expect("symlink");
        fs::create_dir(t.dst.join("stale")).expect("mkdir");
        fs::write(t.dst.join("stale/x"), "x").expect("write");
        let batch = Batch::of(vec![sync(b"", true)]);
        let dry = mirror(&t).dry_run(true);
        assert!(!plan(&dry, &batch).expect("plan").is_empty());
        mirror(&t).run(&batch).expect("real run");
        let left = plan(&dry, &batch).expect("plan");
        assert!(left.is_empty(), "{left:#?}");
    }

    /// A destination that does not exist is an empty one, and stays absent.
    #[test]
    fn a_missing_destination_is_planned_not_made() {
        let t = trees();
        fs::write(t.src.join("f"), "f").expect("write");
        fs::remove_dir(&t.dst).expect("rmdir");
        let got = plan(&mirror(&t).dry_run(true), &Batch::of(vec![sync(b"", true)])).expect("plan");
        assert_eq!(
            got,
            [
                format!("create the destination {}", t.dst.display()),
                "copy f (1 bytes)".to_string()
            ]
        );
        assert!(!t.dst.exists());
    }
}
