//! One batch's ops in order (renames, then deletions, then copies) and what
//! each op does to the destination path it names.

use super::sys::{self, errno, raw};
use super::{kind_of, scope, well_formed, At, How, Outcome, Run, Scope, ATTEMPTS, MAX_FAILED, R};
use crate::batch::Op;
use crate::handler::HandlerError;
use crate::path;
use crate::rules::Action;
use nix::errno::Errno;
use std::io;

impl Run<'_> {
    /// Runs a batch's ops: renames in order, then the paths the source no
    /// longer has (deletions), then the rest (copies). A failure of one
    /// path is isolated (see [`Run::isolate`]); past [`MAX_FAILED`], the
    /// copies not yet made fail whole, unrun.
    pub(super) fn ops(&mut self, ops: &[Op]) -> R<()> {
        // What to make equal to the source once the renames are done:
        // (path, recursive).
        let mut targets: Vec<(&[u8], bool)> = Vec::new();
        for op in ops {
            if let Some(bad) = op.paths().into_iter().find(|p| !well_formed(p)) {
                // A bug upstream, not something a retry can fix: `..` would
                // leave the trees, so the op is dropped rather than failed.
                log::error!(
                    "mirror: ignoring an op on malformed path {:?}",
                    path::display(bad)
                );
                continue;
            }
            match op {
                Op::Sync { path, recursive } => targets.push((path, *recursive)),
                Op::Move { from, to } => {
                    if let Err(e) = self.move_hint(from, to) {
                        // Only a hint: the syncs of both sides below make
                        // the destination right, or fail on their own.
                        if scope(&e) == Scope::Batch {
                            return Err(e);
                        }
                        log::debug!("mirror: {e}; copying instead");
                    }
                    targets.push((to, true));
                    targets.push((from, true));
                }
            }
        }
        let mut copies = Vec::new();
        for (rel, recursive) in targets {
            let gone = match self.src_has(rel) {
                Ok(has) => !has,
                Err(e) => {
                    self.isolate(rel, recursive, e)?;
                    continue;
                }
            };
            if gone {
                if let Err(e) = self.delete_path(rel) {
                    self.isolate(rel, recursive, e)?;
                }
            } else {
                copies.push((rel, recursive));
            }
        }
        for (i, &(rel, recursive)) in copies.iter().enumerate() {
            let Err(e) = self.sync_path(rel, recursive) else {
                continue;
            };
            if scope(&e) != Scope::Entry || self.failed.len() < MAX_FAILED {
                self.isolate(rel, recursive, e)?;
                continue;
            }
            // Too many failures to go on one by one: this op and the ones
            // not run yet fail whole (the queue keeps them apart from the
            // rest, which is done).
            log::debug!("mirror: {e}; {} more op(s) not run", copies.len() - i - 1);
            for &(rel, recursive) in &copies[i..] {
                self.failed.push(crate::handler::PathIssue {
                    path: rel.to_vec(),
                    recursive,
                    message: e.to_string(),
                });
            }
            break;
        }
        Ok(())
    }

    /// Whether the source has `rel` (reachable without following a link).
    pub(super) fn src_has(&mut self, rel: &[u8]) -> R<bool> {
        if rel.is_empty() {
            return Ok(true);
        }
        let Some(sdir) = self.src_dir(path::parent(rel))? else {
            return Ok(false);
        };
        let meta =
            sys::lstat_at(raw(&*sdir), path::file_name(rel)).map_err(|e| self.serr(rel, e))?;
        Ok(meta.is_some())
    }

    /// Makes `dst/rel` equal to `src/rel`. Without `recursive` a regular file
    /// is copied unless both sides hold the same bytes (the event says it
    /// changed, so size and mtime alone are not trusted) and a directory only gets
    /// its own existence and metadata; with it, everything is compared and
    /// only what differs is copied, down the whole subtree.
    pub(super) fn sync_path(&mut self, rel: &[u8], recursive: bool) -> R<()> {
        if rel.is_empty() {
            return self.sync_root(recursive);
        }
        let prel = path::parent(rel);
        let name = path::file_name(rel);
        let how = if recursive {
            How::Compare
        } else {
            How::Explicit
        };
        for _ in 0..ATTEMPTS {
            let Some(sdir) = self.src_dir(prel)? else {
                return self.delete_path(rel);
            };
            let Some(smeta) = sys::lstat_at(raw(&*sdir), name).map_err(|e| self.serr(rel, e))?
            else {
                return self.delete_path(rel);
            };
            if !self.permits(rel, kind_of(&smeta), Action::Sync) {
                return Ok(());
            }
            let Some(ddir) = self.dst_dir(prel, true)? else {
                return Ok(());
            };
            self.make_writable(&ddir, prel)?;
            self.touch(prel);
            let dmeta = sys::lstat_at(raw(&*ddir), name).map_err(|e| self.derr(rel, e))?;
            let at = At {
                src: raw(&*sdir),
                dst: raw(&*ddir),
                name,
                rel,
            };
            match self.sync_entry(&at, &smeta, dmeta.as_ref(), how, recursive)? {
                Outcome::Done => return Ok(()),
                Outcome::Changed => continue,
            }
        }
        log::warn!(
            "mirror: {} keeps changing type; leaving it to its next event",
            path::display(rel)
        );
        Ok(())
    }

    pub(super) fn sync_root(&mut self, recursive: bool) -> R<()> {
        let (s, d) = (self.src_root.clone(), self.dst_root.clone());
        if recursive {
            self.make_writable(&d, b"")?;
            self.walk(raw(&*s), raw(&*d), b"")?;
        }
        self.copy_dir_meta(raw(&*s), raw(&*d), b"")
    }

    /// The source no longer has `rel`: remove it from the destination.
    pub(super) fn delete_path(&mut self, rel: &[u8]) -> R<()> {
        let prel = path::parent(rel);
        let name = path::file_name(rel);
        let Some(ddir) = self.dst_dir(prel, false)? else {
            return Ok(());
        };
        let Some(dmeta) = sys::lstat_at(raw(&*ddir), name).map_err(|e| self.derr(rel, e))? else {
            return Ok(());
        };
        self.make_writable(&ddir, prel)?;
        self.touch(prel);
        if !self.remove_entry(raw(&*ddir), name, rel, &dmeta)? {
            log::debug!(
                "mirror: kept {}: excluded by the rules, or holds excluded entries",
                path::display(rel)
            );
        }
        Ok(())
    }

    /// `from` was renamed to `to` in the source: rename at the destination
    /// too when that fits. The caller then syncs both (cheap compares when
    /// it worked).
    pub(super) fn move_hint(&mut self, from: &[u8], to: &[u8]) -> R<()> {
        if !from.is_empty()
            && !to.is_empty()
            && !path::is_under(to, from)
            && !path::is_under(from, to)
        {
            self.rename_hint(from, to)?;
        }
        Ok(())
    }

    pub(super) fn rename_hint(&mut self, from: &[u8], to: &[u8]) -> R<()> {
        let (fname, tname) = (path::file_name(from), path::file_name(to));
        let Some(dfrom) = self.dst_dir(path::parent(from), false)? else {
            return Ok(());
        };
        let Some(dmeta) = sys::lstat_at(raw(&*dfrom), fname).map_err(|e| self.derr(from, e))?
        else {
            return Ok(());
        };
        let Some(sto) = self.src_dir(path::parent(to))? else {
            return Ok(());
        };
        let Some(smeta) = sys::lstat_at(raw(&*sto), tname).map_err(|e| self.serr(to, e))? else {
            return Ok(());
        };
        let kind = kind_of(&smeta);
        if smeta.ftype != dmeta.ftype
            || !self.permits(from, kind, Action::Sync)
            || !self.permits(to, kind, Action::Sync)
            || dmeta.id() == self.src_root_id
        {
            return Ok(());
        }
        let Some(dto) = self.dst_dir(path::parent(to), true)? else {
            return Ok(());
        };
        self.make_writable(&dfrom, path::parent(from))?;
        self.make_writable(&dto, path::parent(to))?;
        if let Some(there) = sys::lstat_at(raw(&*dto), tname).map_err(|e| self.derr(to, e))? {
            if there.id() == dmeta.id() {
                return Ok(()); // already the same entry (hard link)
            }
            // rename(2) replaces a non-directory with a non-directory
            // atomically; anything involving a directory must go first.
            if (there.is_dir() || dmeta.is_dir())
                && !self.remove_entry(raw(&*dto), tname, to, &there)?
            {
                return Ok(());
            }
        }
        match sys::rename(raw(&*dfrom), fname, raw(&*dto), tname) {
            Ok(()) => {}
            // Another file system is mounted in the destination: the syncs
            // that follow copy instead.
            Err(e) if errno(&e) == Some(Errno::EXDEV) => return Ok(()),
            Err(e) => {
                return Err(HandlerError::io(
                    path::abs(&self.m.dst, to),
                    io::Error::new(
                        e.kind(),
                        format!("renaming from {}: {e}", path::display(from)),
                    ),
                ))
            }
        }
        log::debug!(
            "mirror: renamed {} -> {}",
            path::display(from),
            path::display(to)
        );
        self.report.renamed += 1;
        self.invalidate_dst(from);
        self.invalidate_dst(to);
        self.touch(path::parent(from));
        self.touch(path::parent(to));
        Ok(())
    }
}
