//! Putting a file in place: a regular file's bytes (holes kept, see
//! `sys.rs`) or a symlink or special file, built under a temporary name,
//! given its metadata and renamed over the target; and the same-content
//! check that spares a copy.

use super::sys::{self, errno, is_gone, FileType, Meta};
use super::{At, Outcome, Run, R};
use crate::handler::HandlerError;
use crate::path;
use nix::errno::Errno;
use std::io;
use std::os::fd::AsRawFd;
use std::os::fd::RawFd;

/// Reads until `buf` is full or the file ends; returns how many bytes.
pub(super) fn read_full(f: &mut impl io::Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

impl Run<'_> {
    /// Whether the source and destination files hold the same bytes. Any
    /// error reading either side answers "no", so the file gets copied.
    pub(super) fn same_content(&self, at: &At) -> bool {
        let (Ok(mut a), Ok(mut b)) = (
            sys::open_read(at.src, at.name),
            sys::open_read(at.dst, at.name),
        ) else {
            return false;
        };
        let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
        loop {
            let Ok(n) = read_full(&mut a, &mut ba) else {
                return false;
            };
            let Ok(m) = read_full(&mut b, &mut bb) else {
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

    /// Copies the source file at `at` through a temporary sibling renamed
    /// over the target. `dst` is the destination's `lstat`, if any.
    pub(super) fn copy_file(&mut self, at: &At, dst: Option<&Meta>) -> R<Outcome> {
        #[cfg(test)]
        if let Some(hook) = self.m.before_copy {
            hook(&path::abs(&self.m.src, at.rel));
        }
        let mut file = match sys::open_read(at.src, at.name) {
            Ok(f) => f,
            // Gone, or turned into a symlink (ELOOP) or a socket (ENXIO).
            Err(e) if is_gone(&e) || errno(&e) == Some(Errno::ENXIO) => {
                return Ok(Outcome::Changed)
            }
            Err(e) => return Err(self.serr(at.rel, e)),
        };
        let meta = sys::fstat(file.as_raw_fd()).map_err(|e| self.serr(at.rel, e))?;
        if meta.ftype != FileType::Regular {
            return Ok(Outcome::Changed);
        }
        let (temp, mut out) =
            sys::create_temp_file(at.dst, at.name).map_err(|e| self.derr(at.rel, e))?;
        let filled = (|| -> io::Result<()> {
            sys::copy_sparse(&mut file, &mut out)?;
            if self.m.preserve_owner {
                sys::fchown(out.as_raw_fd(), meta.uid, meta.gid)?;
            }
            // After chown (which drops security.capability), before chmod
            // (a read-only mode would refuse user.* attributes).
            self.copy_xattrs(file.as_raw_fd(), out.as_raw_fd())?;
            sys::fchmod(out.as_raw_fd(), meta.perm)?;
            sys::futimens(out.as_raw_fd(), &meta.atime, &meta.mtime)?;
            #[cfg(test)]
            if self.m.fail_copy_of.as_deref() == Some(at.rel) {
                return Err(io::Error::other("injected failure"));
            }
            Ok(())
        })();
        drop(out);
        let placed = filled
            .map_err(|e| {
                HandlerError::io(
                    path::abs(&self.m.dst, at.rel),
                    io::Error::new(
                        e.kind(),
                        format!(
                            "copying from {}: {e}",
                            path::display_os(&path::abs(&self.m.src, at.rel))
                        ),
                    ),
                )
            })
            .and_then(|()| self.place(at, &temp, dst));
        if !matches!(placed, Ok(true)) {
            let _ = sys::unlink(at.dst, &temp);
        }
        if placed? {
            self.report.copied += 1;
            log::debug!("mirror: copied {}", path::display(at.rel));
        }
        Ok(Outcome::Done)
    }

    /// Builds a symlink or special file at a temporary name with `make`,
    /// gives it the source's metadata and renames it over the target.
    pub(super) fn replace_with(
        &mut self,
        at: &At,
        src: &Meta,
        dst: Option<&Meta>,
        make: impl FnMut(RawFd, &[u8]) -> io::Result<()>,
    ) -> R<Outcome> {
        let mut make = make;
        let temp = match sys::with_temp_name(at.name, |temp| make(at.dst, temp)) {
            Ok((temp, ())) => temp,
            Err(e) if errno(&e) == Some(Errno::EPERM) => {
                log::warn!(
                    "mirror: cannot create {} {}: not permitted (device nodes need root with CAP_MKNOD; some file systems refuse links and special files); skipped",
                    src.ftype.name(),
                    path::display(at.rel)
                );
                return Ok(Outcome::Done);
            }
            Err(e) => return Err(self.derr(at.rel, e)),
        };
        let placed = self
            .set_meta_at(at.dst, &temp, src, None)
            .map_err(|e| self.derr(at.rel, e))
            .and_then(|()| self.place(at, &temp, dst));
        if !matches!(placed, Ok(true)) {
            let _ = sys::unlink(at.dst, &temp);
        }
        if placed? {
            self.report.copied += 1;
            log::debug!(
                "mirror: created {} {}",
                src.ftype.name(),
                path::display(at.rel)
            );
        }
        Ok(Outcome::Done)
    }

    /// Renames the finished temporary over the target, first removing a
    /// directory in the way. `false` when the rules keep that directory.
    pub(super) fn place(&mut self, at: &At, temp: &[u8], dst: Option<&Meta>) -> R<bool> {
        if let Some(d) = dst.filter(|d| d.is_dir()) {
            if !self.remove_entry(at.dst, at.name, at.rel, d)? {
                log::warn!(
                    "mirror: cannot replace directory {}: it holds entries the rules exclude",
                    path::display(at.rel)
                );
                return Ok(false);
            }
        }
        sys::rename(at.dst, temp, at.dst, at.name).map_err(|e| self.derr(at.rel, e))?;
        Ok(true)
    }
}
