//! Directories deeper than `PATH_MAX`: reaching them by descriptor needs
//! Linux (`O_PATH`, `/proc/self/fd`); elsewhere the absolute path is used
//! as it is, and such a directory fails with `ENAMETOOLONG`.

use crate::path;
use std::io;
use std::path::{Path, PathBuf};

/// A path to give the kernel for one directory below the root.
pub struct DirPath {
    path: PathBuf,
}

impl DirPath {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn via_descriptor(&self) -> bool {
        false
    }
}

/// The directory `rel` below `root`: `root/rel`.
pub fn dir_path(root: &Path, rel: &[u8]) -> io::Result<DirPath> {
    Ok(DirPath {
        path: path::abs(root, rel),
    })
}
