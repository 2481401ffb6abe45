//! The destination root held for the engine's life: [`DstRoot`] opens it
//! once and tells, before each batch, whether the configured path still
//! leads to it (device and inode).

use super::sys::{self, errno, raw};
use super::with_hint;
use crate::handler::HandlerError;
use crate::path;
use nix::errno::Errno;
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::path::PathBuf;

/// The destination root directory, opened once and held: the mirror writes
/// only through this descriptor, and [`DstRoot::check`] tells whether the
/// configured path still leads to it.
#[derive(Debug)]
pub struct DstRoot {
    path: PathBuf,
    pub(super) fd: OwnedFd,
    pub(super) id: (u64, u64),
}

impl DstRoot {
    /// Opens the directory `path` (symlinks in the configured path are
    /// followed: the user chose it). `create`: make it, with its missing
    /// parents, when it does not exist.
    pub fn open(path: &Path, create: bool) -> Result<DstRoot, HandlerError> {
        let fd = match sys::open_root(path) {
            Err(e) if create && errno(&e) == Some(Errno::ENOENT) => {
                std::fs::create_dir_all(path).map_err(|e| {
                    HandlerError::io(
                        path,
                        io::Error::new(
                            e.kind(),
                            format!("cannot create the destination directory: {e}; create it or check permissions"),
                        ),
                    )
                })?;
                sys::open_root(path)
            }
            other => other,
        }
        .map_err(|e| HandlerError::io(path, with_hint(e, "destination")))?;
        let id = sys::fstat(raw(&fd))
            .map_err(|e| HandlerError::io(path, e))?
            .id();
        Ok(DstRoot {
            path: path.to_path_buf(),
            fd,
            id,
        })
    }

    /// (device, inode) of the held directory.
    pub fn id(&self) -> (u64, u64) {
        self.id
    }

    /// Fails with [`HandlerError::DestinationChanged`] unless the configured
    /// path still leads to the held directory.
    pub fn check(&self) -> Result<(), HandlerError> {
        let now = sys::open_root(&self.path).and_then(|fd| sys::fstat(raw(&fd)));
        let why = match now {
            Ok(m) if m.id() == self.id => return Ok(()),
            Ok(m) => format!(
                "it now leads to another directory (device {} inode {}, was device {} inode {})",
                m.dev, m.ino, self.id.0, self.id.1
            ),
            Err(e) => format!("it no longer leads to the directory livesync started with ({e})"),
        };
        Err(HandlerError::DestinationChanged(format!(
            "stopped syncing to the destination {}: {why}; it was moved or replaced (a symlink?) while livesync ran, so nothing more is written there; check who changed it, then restart livesync",
            path::display_os(&self.path)
        )))
    }
}
