//! clsync's checks on the shared object of `-M so`/`-M rsyncso`, made at
//! configuration time (a bad object is one line and exit 2) and again by
//! the handler right before it loads the object.

use crate::path;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Why a shared object is refused.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("sync handler {path}: {source}; -S must name the handler's shared object")]
    Stat { path: String, source: io::Error },
    #[error("sync handler {path} is not a regular file; -S must name a shared object (.so)")]
    NotRegular { path: String },
    #[error(
        "sync handler {path} belongs to uid {owner}; it must belong to root or to the user \
         running livesync (uid {me}): chown it"
    )]
    Owner { path: String, owner: u32, me: u32 },
    #[error(
        "sync handler {path} has mode {mode:04o}; group/other write, setuid, setgid and sticky \
         bits are refused: chmod go-w,ug-s,o-t it"
    )]
    Mode { path: String, mode: u32 },
}

/// clsync's checks on a handler object before it is loaded: a regular file
/// (symlinks are followed, as `dlopen` does), owned by root or the current
/// user, no group/other write, setuid, setgid or sticky bit.
pub fn check_object(object: &Path) -> Result<(), ObjectError> {
    let shown = path::display_os(object);
    let m = fs::metadata(object).map_err(|source| ObjectError::Stat {
        path: shown.clone(),
        source,
    })?;
    if !m.is_file() {
        return Err(ObjectError::NotRegular { path: shown });
    }
    // SAFETY: getuid cannot fail and touches no memory of ours.
    let me = unsafe { libc::getuid() };
    if m.uid() != 0 && m.uid() != me {
        return Err(ObjectError::Owner {
            path: shown,
            owner: m.uid(),
            me,
        });
    }
    // `as u32`: mode_t is u16 on the BSDs (the same type on Linux).
    #[allow(clippy::unnecessary_cast)]
    let bad =
        (libc::S_ISUID | libc::S_ISGID | libc::S_ISVTX | libc::S_IWGRP | libc::S_IWOTH) as u32;
    if m.mode() & bad != 0 {
        return Err(ObjectError::Mode {
            path: shown,
            mode: m.mode() & 0o7777,
        });
    }
    Ok(())
}
