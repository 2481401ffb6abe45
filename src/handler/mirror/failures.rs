//! Per-path failure isolation: what an error says about the rest of the
//! batch ([`Scope`]), and how a failed entry is recorded so that the batch
//! goes on and the queue retries only that entry.

use super::sys::errno;
use super::{Run, Side, MAX_FAILED, R};
use crate::handler::HandlerError;
use crate::path;
use nix::errno::Errno;
use std::io;
use std::path::Path;

/// What an error says about the rest of the batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Scope {
    /// A source entry we may not read: skip it.
    Unreadable,
    /// This entry only: fail it, go on with the others.
    Entry,
    /// The destination as a whole: stop the batch.
    Batch,
}

/// Errors about the whole destination whose kind std tells apart (a
/// read-only or stale file system, a lost connection, no memory).
const WHOLE_KINDS: [i32; 4] = [libc::EROFS, libc::ESTALE, libc::ENOTCONN, libc::ENOMEM];

pub(super) fn scope(e: &HandlerError) -> Scope {
    match e {
        HandlerError::Unreadable { .. } => Scope::Unreadable,
        HandlerError::Io { source, .. } => {
            let whole = matches!(
                source.raw_os_error(),
                Some(
                    libc::EROFS
                        | libc::EIO
                        | libc::ENOTCONN
                        | libc::ESTALE
                        | libc::ENODEV
                        | libc::EMFILE
                        | libc::ENFILE
                        | libc::ENOMEM
                        | libc::EBADF
                )
            ) || WHOLE_KINDS.iter().any(|&code| {
                // An error re-worded on the way (a copy's) keeps its kind only.
                source.raw_os_error().is_none()
                    && source.kind() == io::Error::from_raw_os_error(code).kind()
            });
            if whole {
                Scope::Batch
            } else {
                Scope::Entry
            }
        }
        _ => Scope::Batch,
    }
}

impl Run<'_> {
    pub(super) fn fail(&self, side: Side, rel: &[u8], e: io::Error) -> HandlerError {
        let root: &Path = match side {
            Side::Src => &self.m.src,
            Side::Dst => &self.m.dst,
        };
        if matches!(side, Side::Src) && matches!(errno(&e), Some(Errno::EACCES | Errno::EPERM)) {
            return HandlerError::Unreadable {
                path: path::display_os(&path::abs(root, rel)),
                source: e,
            };
        }
        HandlerError::io(path::abs(root, rel), e)
    }

    /// Takes `e`, an error about `rel` (`recursive`: its subtree), into the
    /// report when it concerns that entry only (see [`scope`]), so that the
    /// batch goes on; gives it back when it must stop the batch.
    pub(super) fn isolate(&mut self, rel: &[u8], recursive: bool, e: HandlerError) -> R<()> {
        let issue = |e: &HandlerError| crate::handler::PathIssue {
            path: rel.to_vec(),
            recursive,
            message: e.to_string(),
        };
        match scope(&e) {
            Scope::Unreadable => {
                log::debug!("mirror: skipped {}: {e}", path::display(rel));
                self.skipped.push(issue(&e));
                Ok(())
            }
            Scope::Entry if self.failed.len() < MAX_FAILED => {
                log::debug!("mirror: failed {}: {e}", path::display(rel));
                self.failed.push(issue(&e));
                Ok(())
            }
            Scope::Entry | Scope::Batch => Err(e),
        }
    }

    pub(super) fn serr(&self, rel: &[u8], e: io::Error) -> HandlerError {
        self.fail(Side::Src, rel, e)
    }

    pub(super) fn derr(&self, rel: &[u8], e: io::Error) -> HandlerError {
        self.fail(Side::Dst, rel, e)
    }
}
