//! Syncing one entry by its type, and the recursive sync of a directory:
//! walking both sides, deleting what the source lost, removing entries
//! bottom-up while keeping what the rules exclude.

use super::sys::{self, errno, is_gone, raw, FileType, Meta};
use super::{kind_of, At, How, Outcome, Run, ATTEMPTS, R};
use crate::path;
use crate::rules::Action;
use crate::rules::Kind;
use nix::errno::Errno;
use std::collections::HashSet;
use std::os::fd::RawFd;

impl Run<'_> {
    /// Makes the destination entry `at` equal to the source entry whose
    /// `lstat` is `src`; `dst` is the destination's `lstat`, if any.
    pub(super) fn sync_entry(
        &mut self,
        at: &At,
        src: &Meta,
        dst: Option<&Meta>,
        how: How,
        recursive: bool,
    ) -> R<Outcome> {
        if src.is_dir() && src.id() == self.dst_root_id {
            self.warn_dst_in_src(at.rel);
            return Ok(Outcome::Done);
        }
        if let Some(d) = dst {
            if d.is_dir() && d.id() == self.src_root_id {
                log::warn!(
                    "mirror: destination entry {} is the source itself; leaving it alone",
                    path::display(at.rel)
                );
                return Ok(Outcome::Done);
            }
        }
        if src.ftype == FileType::Regular && src.nlink > 1 {
            if let Some(done) = self.link_to_known(at, src, dst)? {
                if let Some(p) = &self.m.progress {
                    p.add_file(src.size); // every name counts, as in the totals
                }
                return Ok(done);
            }
        }
        match src.ftype {
            FileType::Dir => self.sync_dir(at, dst, recursive),
            FileType::Regular => {
                let same = dst.is_some_and(|d| {
                    d.ftype == FileType::Regular && d.size == src.size && d.mtime == src.mtime
                });
                let done = match (how, same, dst) {
                    (How::Compare, true, Some(d)) => {
                        self.fix_meta_at(at, src, d)?;
                        Ok(Outcome::Done)
                    }
                    // An event named the file but size and mtime match: it
                    // may be our own copy coming back (two-way setups) or a
                    // rewrite inside one mtime tick. Only equal content
                    // skips the copy, so neither loops nor loses a change.
                    (How::Explicit, true, Some(d)) if self.same_content(at) => {
                        self.fix_meta_at(at, src, d)?;
                        Ok(Outcome::Done)
                    }
                    _ => self.copy_file(at, dst),
                };
                if let (Ok(Outcome::Done), Some(p)) = (&done, &self.m.progress) {
                    p.add_file(src.size);
                }
                if src.nlink > 1 && matches!(done, Ok(Outcome::Done)) {
                    self.note_link(at, src)?;
                }
                done
            }
            FileType::Symlink => {
                let target = match sys::readlink(at.src, at.name) {
                    Ok(t) => t,
                    // EINVAL: not a symlink any more.
                    Err(e) if is_gone(&e) || errno(&e) == Some(Errno::EINVAL) => {
                        return Ok(Outcome::Changed)
                    }
                    Err(e) => return Err(self.serr(at.rel, e)),
                };
                if let Some(d) = dst.filter(|d| d.ftype == FileType::Symlink) {
                    let current =
                        sys::readlink(at.dst, at.name).map_err(|e| self.derr(at.rel, e))?;
                    if current == target {
                        self.fix_meta_at(at, src, d)?;
                        return Ok(Outcome::Done);
                    }
                }
                self.replace_with(at, src, dst, |dir, temp| sys::symlink(&target, dir, temp))
            }
            FileType::Fifo | FileType::Socket | FileType::CharDev | FileType::BlockDev => {
                if let Some(d) = dst.filter(|d| d.ftype == src.ftype) {
                    let is_dev = matches!(src.ftype, FileType::CharDev | FileType::BlockDev);
                    if !is_dev || d.rdev == src.rdev {
                        self.fix_meta_at(at, src, d)?;
                        return Ok(Outcome::Done);
                    }
                }
                let (ftype, rdev) = (src.ftype, src.rdev);
                self.replace_with(at, src, dst, |dir, temp| sys::mknod(dir, temp, ftype, rdev))
            }
        }
    }

    pub(super) fn sync_dir(&mut self, at: &At, dst: Option<&Meta>, recursive: bool) -> R<Outcome> {
        match dst {
            Some(d) if d.is_dir() => {}
            other => {
                if let Some(d) = other {
                    if !self.remove_entry(at.dst, at.name, at.rel, d)? {
                        log::warn!(
                            "mirror: cannot make {} a directory: the {} there is excluded by the rules",
                            path::display(at.rel),
                            d.ftype.name()
                        );
                        return Ok(Outcome::Done);
                    }
                }
                match sys::mkdir(at.dst, at.name, 0o700) {
                    Ok(()) => self.report.copied += 1,
                    Err(e) if errno(&e) == Some(Errno::EEXIST) => {}
                    Err(e) => return Err(self.derr(at.rel, e)),
                }
            }
        }
        let sdir = match sys::open_dir(at.src, at.name) {
            Ok(fd) => fd,
            Err(e) if is_gone(&e) => return Ok(Outcome::Changed),
            Err(e) => return Err(self.serr(at.rel, e)),
        };
        let ddir = sys::open_dir(at.dst, at.name).map_err(|e| self.derr(at.rel, e))?;
        if recursive && self.permits(at.rel, Kind::Dir, Action::Walk) {
            if !self.m.privileged {
                let d = sys::fstat(raw(&ddir)).map_err(|e| self.derr(at.rel, e))?;
                if d.perm & 0o700 != 0o700 {
                    sys::fchmod(raw(&ddir), d.perm | 0o700).map_err(|e| self.derr(at.rel, e))?;
                }
            }
            self.walk(raw(&sdir), raw(&ddir), at.rel)?;
        }
        self.copy_dir_meta(raw(&sdir), raw(&ddir), at.rel)?;
        Ok(Outcome::Done)
    }

    /// Compares the directories `sdir` and `ddir` (both `rel`) entry by entry
    /// and makes the destination equal, recursively. Deletes come first.
    pub(super) fn walk(&mut self, sdir: RawFd, ddir: RawFd, rel: &[u8]) -> R<()> {
        let snames = match sys::read_names(sdir) {
            Ok(n) => n,
            Err(e) if is_gone(&e) => return Ok(()), // removed meanwhile
            Err(e) => return Err(self.serr(rel, e)),
        };
        let dnames = sys::read_names(ddir).map_err(|e| self.derr(rel, e))?;
        let in_src: HashSet<&[u8]> = snames.iter().map(Vec::as_slice).collect();
        let in_dst: HashSet<&[u8]> = dnames.iter().map(Vec::as_slice).collect();
        for name in dnames.iter().filter(|n| !in_src.contains(n.as_slice())) {
            let crel = path::join(rel, name);
            if let Err(e) = self.walk_delete(ddir, name, &crel) {
                self.isolate(&crel, true, e)?;
            }
        }
        for name in &snames {
            let crel = path::join(rel, name);
            let at = At {
                src: sdir,
                dst: ddir,
                name,
                rel: &crel,
            };
            if let Err(e) = self.walk_entry(&at, in_dst.contains(name.as_slice())) {
                self.isolate(&crel, true, e)?;
            }
        }
        Ok(())
    }

    /// `walk`: removes the destination entry `at` the source does not have.
    pub(super) fn walk_delete(&mut self, ddir: RawFd, name: &[u8], crel: &[u8]) -> R<()> {
        if let Some(d) = sys::lstat_at(ddir, name).map_err(|e| self.derr(crel, e))? {
            if !self.remove_entry(ddir, name, crel, &d)? {
                log::debug!(
                    "mirror: kept {}: excluded by the rules",
                    path::display(crel)
                );
            }
        }
        Ok(())
    }

    /// `walk`: makes the destination entry `at` equal to the source's.
    pub(super) fn walk_entry(&mut self, at: &At, known_in_dst: bool) -> R<()> {
        let (sdir, ddir, name, crel) = (at.src, at.dst, at.name, at.rel);
        let mut known_in_dst = known_in_dst;
        for _ in 0..ATTEMPTS {
            let dmeta = if known_in_dst {
                sys::lstat_at(ddir, name).map_err(|e| self.derr(crel, e))?
            } else {
                None
            };
            let Some(smeta) = sys::lstat_at(sdir, name).map_err(|e| self.serr(crel, e))? else {
                if let Some(d) = dmeta {
                    self.remove_entry(ddir, name, crel, &d)?;
                }
                return Ok(());
            };
            if !self.permits(crel, kind_of(&smeta), Action::Sync) {
                return Ok(());
            }
            match self.sync_entry(at, &smeta, dmeta.as_ref(), How::Compare, true)? {
                Outcome::Done => return Ok(()),
                Outcome::Changed => known_in_dst = true,
            }
        }
        log::warn!(
            "mirror: {} keeps changing type; leaving it to its next event",
            path::display(crel)
        );
        Ok(())
    }

    /// Removes the destination entry `name` (`rel`) whose `lstat` is `meta`,
    /// a directory with its contents. Entries the rules exclude stay, and so
    /// does every directory that still holds one: returns whether `rel` is
    /// gone.
    pub(super) fn remove_entry(
        &mut self,
        dir: RawFd,
        name: &[u8],
        rel: &[u8],
        meta: &Meta,
    ) -> R<bool> {
        if !self.permits(rel, kind_of(meta), Action::Sync) {
            return Ok(false);
        }
        if !meta.is_dir() {
            return match sys::unlink(dir, name) {
                Ok(()) => {
                    self.report.deleted += 1;
                    Ok(true)
                }
                Err(e) if errno(&e) == Some(Errno::ENOENT) => Ok(true),
                Err(e) => Err(self.derr(rel, e)),
            };
        }
        if meta.id() == self.src_root_id || meta.id() == self.dst_root_id {
            log::warn!(
                "mirror: not deleting {}: it is the source or destination root",
                path::display(rel)
            );
            return Ok(false);
        }
        let sub = match sys::open_dir(dir, name) {
            Ok(fd) => fd,
            Err(e) if errno(&e) == Some(Errno::ENOENT) => return Ok(true),
            Err(e) => return Err(self.derr(rel, e)),
        };
        if !self.m.privileged && meta.perm & 0o700 != 0o700 {
            sys::fchmod(raw(&sub), meta.perm | 0o700).map_err(|e| self.derr(rel, e))?;
        }
        let mut all_gone = true;
        if self.permits(rel, Kind::Dir, Action::Walk) {
            let names = sys::read_names(raw(&sub)).map_err(|e| self.derr(rel, e))?;
            for child in &names {
                let crel = path::join(rel, child);
                if let Some(cm) =
                    sys::lstat_at(raw(&sub), child).map_err(|e| self.derr(&crel, e))?
                {
                    all_gone &= self.remove_entry(raw(&sub), child, &crel, &cm)?;
                }
            }
        }
        drop(sub);
        self.invalidate_dst(rel);
        if !all_gone {
            return Ok(false);
        }
        match sys::rmdir(dir, name) {
            Ok(()) => {
                self.report.deleted += 1;
                Ok(true)
            }
            Err(e) if errno(&e) == Some(Errno::ENOENT) => Ok(true),
            Err(e) if matches!(errno(&e), Some(Errno::ENOTEMPTY | Errno::EEXIST)) => Ok(false),
            Err(e) => Err(self.derr(rel, e)),
        }
    }
}
