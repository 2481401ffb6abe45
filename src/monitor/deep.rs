//! Directories deeper than `PATH_MAX`, for the calls that only take a path
//! (`inotify_add_watch`, listing a directory by name).
//!
//! A path of 4,096 bytes or more cannot be given to the kernel whole. Such
//! a directory is reached one component at a time from the watch root, each
//! opened `O_PATH | O_DIRECTORY | O_NOFOLLOW` relative to its parent's
//! descriptor (so no symlink is ever followed), and named by its descriptor
//! as `/proc/self/fd/N`, a short path that stays valid while the descriptor
//! is open. Shorter paths are used as they are. This module holds no state.

use crate::path;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A path to give the kernel for one directory below the root.
pub struct DirPath {
    path: PathBuf,
    /// The descriptor `path` names, when it names one.
    _fd: Option<OwnedFd>,
}

impl DirPath {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `path` is `/proc/self/fd/N`: a link to follow (the directory behind
    /// it was reached without following any).
    pub fn via_descriptor(&self) -> bool {
        self._fd.is_some()
    }
}

/// The directory `rel` below `root`: `root/rel` when it is shorter than
/// `PATH_MAX`, else `/proc/self/fd/N` of a descriptor opened component by
/// component (`ENOENT`/`ENOTDIR`/`ELOOP` when one is gone or not a real
/// directory).
pub fn dir_path(root: &Path, rel: &[u8]) -> io::Result<DirPath> {
    let abs = path::abs(root, rel);
    if abs.as_os_str().len() < libc::PATH_MAX as usize {
        return Ok(DirPath {
            path: abs,
            _fd: None,
        });
    }
    let mut fd = open_at(libc::AT_FDCWD, root.as_os_str().as_bytes(), false)?;
    for name in rel.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
        fd = open_at(fd.as_raw_fd(), name, true)?;
    }
    Ok(DirPath {
        path: PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())),
        _fd: Some(fd),
    })
}

fn open_at(dir: RawFd, name: &[u8], nofollow: bool) -> io::Result<OwnedFd> {
    let c = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let mut flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC;
    if nofollow {
        flags |= libc::O_NOFOLLOW;
    }
    // SAFETY: a valid NUL-terminated name and a descriptor we hold (or
    // AT_FDCWD); the result is checked before it is owned.
    let fd = unsafe { libc::openat(dir, c.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_deeper_than_path_max_is_reached_by_descriptor() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let name = [b'd'; 200];
        let mut rel = Vec::new();
        let mut fd = open_at(libc::AT_FDCWD, root.as_os_str().as_bytes(), false).unwrap();
        for _ in 0..25 {
            let c = CString::new(&name[..]).unwrap();
            // SAFETY: a valid name relative to a descriptor we hold.
            assert_eq!(
                unsafe { libc::mkdirat(fd.as_raw_fd(), c.as_ptr(), 0o755) },
                0
            );
            fd = open_at(fd.as_raw_fd(), &name, true).unwrap();
            rel = path::join(&rel, &name);
        }
        assert!(path::abs(&root, &rel).as_os_str().len() > 5000);
        let short = dir_path(&root, &rel[..401]).unwrap();
        assert!(!short.via_descriptor());
        let deep = dir_path(&root, &rel).unwrap();
        assert!(deep.via_descriptor());
        assert_eq!(std::fs::read_dir(deep.path()).unwrap().count(), 0);
        // A symlink on the way is not followed.
        std::os::unix::fs::symlink(&root, root.join("link")).unwrap();
        let via_link = path::join(b"link", &rel);
        let e = dir_path(&root, &via_link).err().unwrap();
        assert!(
            matches!(e.raw_os_error(), Some(libc::ENOTDIR | libc::ELOOP)),
            "{e}"
        );
        // Clean up from the deepest level up (remove_dir_all cannot).
        let mut fd = open_at(libc::AT_FDCWD, root.as_os_str().as_bytes(), false).unwrap();
        let mut fds = Vec::new();
        for _ in 0..25 {
            let next = open_at(fd.as_raw_fd(), &name, true).unwrap();
            fds.push(std::mem::replace(&mut fd, next));
        }
        let c = CString::new(&name[..]).unwrap();
        for parent in fds.iter().rev() {
            // SAFETY: a valid name relative to a descriptor we hold.
            unsafe { libc::unlinkat(parent.as_raw_fd(), c.as_ptr(), libc::AT_REMOVEDIR) };
        }
    }
}
