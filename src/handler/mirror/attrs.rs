//! Metadata: owner, mode and times of entries, extended attributes and
//! ACLs (when asked), and the directory metadata fixed up after their
//! contents are done.

use super::sys::{self, errno, is_gone, raw, FileType, Meta};
use super::{differs, At, Run, R};
use crate::rules::Action;
use crate::rules::Kind;
use nix::errno::Errno;
use std::io;
use std::os::fd::AsRawFd;
use std::os::fd::RawFd;

/// Says what to do when the destination cannot take an attribute.
fn xattr_hint(e: io::Error, name: &[u8]) -> io::Error {
    let what = String::from_utf8_lossy(name);
    let fix = match errno(&e) {
        Some(Errno::ENOTSUP) => {
            "the destination file system does not support it; drop --xattrs/--acls or mount it with xattr and ACL support"
        }
        Some(Errno::EPERM | Errno::EACCES) => {
            "not permitted; run as root, or drop --xattrs/--acls"
        }
        _ => "check the destination file system",
    };
    io::Error::new(e.kind(), format!("cannot set {what}: {e}; {fix}"))
}

impl Run<'_> {
    /// Sets owner, mode and times of `name` in `dir` to the source's where
    /// they differ from `current` (all of them when `current` is `None`).
    pub(super) fn set_meta_at(
        &self,
        dir: RawFd,
        name: &[u8],
        src: &Meta,
        current: Option<&Meta>,
    ) -> io::Result<()> {
        let owner_differs =
            self.m.preserve_owner && differs(current, |d| (d.uid, d.gid) != (src.uid, src.gid));
        if owner_differs {
            sys::chown_at(dir, name, src.uid, src.gid)?;
        }
        // chown clears setuid/setgid, so the mode goes after it.
        if src.ftype != FileType::Symlink
            && (owner_differs || differs(current, |d| d.perm != src.perm))
        {
            sys::chmod_at(dir, name, src.perm)?;
        }
        if differs(current, |d| d.mtime != src.mtime) {
            sys::utimes_at(dir, name, &src.atime, &src.mtime)?;
        }
        Ok(())
    }

    pub(super) fn fix_meta_at(&self, at: &At, src: &Meta, dst: &Meta) -> R<()> {
        self.set_meta_at(at.dst, at.name, src, Some(dst))
            .map_err(|e| self.derr(at.rel, e))?;
        if (self.m.xattrs || self.m.acls) && src.ftype == FileType::Regular {
            let from = match sys::open_read(at.src, at.name) {
                Ok(f) => f,
                // Changed meanwhile: its own event follows.
                Err(e) if is_gone(&e) || errno(&e) == Some(Errno::ENXIO) => return Ok(()),
                Err(e) => return Err(self.serr(at.rel, e)),
            };
            let to = sys::open_read(at.dst, at.name).map_err(|e| self.derr(at.rel, e))?;
            self.copy_xattrs(from.as_raw_fd(), to.as_raw_fd())
                .map_err(|e| self.derr(at.rel, e))?;
        }
        Ok(())
    }

    /// Whether the extended attribute `name` is copied: the POSIX ACLs with
    /// `--acls`; with `--xattrs` the `user.*` namespace, and as root every
    /// other namespace but `system.*` (rsync's `-X` does the same).
    pub(super) fn wants_xattr(&self, name: &[u8]) -> bool {
        match name {
            b"system.posix_acl_access" | b"system.posix_acl_default" => self.m.acls,
            n if n.starts_with(b"system.") => false,
            n if n.starts_with(b"user.") => self.m.xattrs,
            _ => self.m.xattrs && self.m.privileged,
        }
    }

    /// Makes the copied extended attributes (and ACLs) of the open file or
    /// directory `to` those of `from`: missing ones set, changed ones
    /// rewritten, ones the source no longer has removed. Nothing to do when
    /// neither `--xattrs` nor `--acls` is on.
    pub(super) fn copy_xattrs(&self, from: RawFd, to: RawFd) -> io::Result<()> {
        if !self.m.xattrs && !self.m.acls {
            return Ok(());
        }
        let mut want = sys::xattr_names(from)?;
        want.retain(|n| self.wants_xattr(n));
        for name in sys::xattr_names(to)? {
            if self.wants_xattr(&name) && !want.contains(&name) {
                sys::xattr_remove(to, &name)?;
            }
        }
        for name in &want {
            let Some(value) = sys::xattr_get(from, name)? else {
                continue; // removed meanwhile
            };
            if sys::xattr_get(to, name)?.as_deref() != Some(value.as_slice()) {
                sys::xattr_set(to, name, &value).map_err(|e| xattr_hint(e, name))?;
            }
        }
        Ok(())
    }

    /// Gives the destination directory `ddir` the metadata of the source
    /// directory `sdir` (both `rel`), read now, after the contents are done.
    pub(super) fn copy_dir_meta(&self, sdir: RawFd, ddir: RawFd, rel: &[u8]) -> R<()> {
        let s = match sys::fstat(sdir) {
            Ok(m) => m,
            Err(e) => return Err(self.serr(rel, e)),
        };
        let d = sys::fstat(ddir).map_err(|e| self.derr(rel, e))?;
        let set = || -> io::Result<()> {
            let owner_differs = self.m.preserve_owner && (d.uid, d.gid) != (s.uid, s.gid);
            if owner_differs {
                sys::fchown(ddir, s.uid, s.gid)?;
            }
            self.copy_xattrs(sdir, ddir)?;
            if owner_differs || d.perm != s.perm {
                sys::fchmod(ddir, s.perm)?;
            }
            if d.mtime != s.mtime {
                sys::futimens(ddir, &s.atime, &s.mtime)?;
            }
            Ok(())
        };
        set().map_err(|e| self.derr(rel, e))
    }

    /// Copies source metadata onto every directory the batch's ops changed,
    /// deepest first (setting a directory's times does not touch its
    /// parent's, but adding an entry does).
    pub(super) fn fix_touched_dirs(&mut self) -> R<()> {
        let touched = std::mem::take(&mut self.touched);
        for rel in touched.iter().rev() {
            if !self.permits(rel, Kind::Dir, Action::Sync) {
                continue;
            }
            if let Err(e) = self.fix_dir_meta(rel) {
                self.isolate(rel, false, e)?;
            }
        }
        Ok(())
    }

    pub(super) fn fix_dir_meta(&mut self, rel: &[u8]) -> R<()> {
        let Some(s) = self.src_dir(rel)? else {
            return Ok(());
        };
        let Some(d) = self.dst_dir(rel, false)? else {
            return Ok(());
        };
        self.copy_dir_meta(raw(&*s), raw(&*d), rel)
    }
}
