//! Sync handlers: turn a [`Batch`] into work at the destination.
//!
//! A handler runs on a worker thread, never on the event loop, and may block.
//! It reports failure with a [`HandlerError`]; the daemon then puts the batch
//! back into the queue, so a handler never needs to retry by itself. A
//! handler that can tell which paths failed does the rest of the batch and
//! says so ([`HandlerError::Paths`]): only those come back, so one bad path
//! never stops the rest. Source entries it may not read are skipped and
//! listed in [`Report::skipped`], as rsync's "some files could not be
//! transferred": retrying cannot help until someone changes them.

pub mod build; // Config → Box<dyn Handler>: one settings function per mode
pub mod command;
pub mod counts; // files/bytes a handler has put in place, read by the initial sync's progress bar
pub mod csync2;
pub mod lists;
pub mod mirror;
pub mod rsync;
pub mod so; // clsync's so/rsyncso modes (C shared-object handlers)
pub mod tempdir; // private temp dirs: locked while used, stale ones swept
pub mod template;
pub mod unison;

use crate::batch::Batch;
use std::io;

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("cannot start {program}: {source}")]
    Spawn { program: String, source: io::Error },
    #[error("{program} exited with code {code}")]
    Exit { program: String, code: i32 },
    #[error("{program} was killed by signal {signal}")]
    Signal { program: String, signal: i32 },
    /// A source entry we may not read (`EACCES`, `EPERM`): skipped, not
    /// retried until it changes.
    #[error("{path}: {source}")]
    Unreadable { path: String, source: io::Error },
    /// Everything in the batch was done but `failed`.
    #[error("{}", paths_message(failed))]
    Paths {
        failed: Vec<PathIssue>,
        report: Report,
    },
    #[error("{0}")]
    Other(String),
    /// The destination's path no longer leads to the directory the handler
    /// started with: retrying cannot help, and must not write anywhere.
    #[error("{0}")]
    DestinationChanged(String),
}

fn paths_message(failed: &[PathIssue]) -> String {
    match failed {
        [] => "no path failed".into(),
        [one] => one.message.clone(),
        [first, rest @ ..] => format!("{} (and {} more path(s))", first.message, rest.len()),
    }
}

/// One path a handler failed on or skipped, while it did the rest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathIssue {
    /// Relative to the watch root (empty: the root).
    pub path: Vec<u8>,
    /// Its whole subtree is concerned.
    pub recursive: bool,
    /// What went wrong, naming the path.
    pub message: String,
}

impl HandlerError {
    pub fn io(path: impl AsRef<std::path::Path>, source: io::Error) -> Self {
        HandlerError::Io {
            path: crate::path::display_os(path.as_ref()),
            source,
        }
    }
}

/// A handler program that could not start, with the fix in the message
/// when it is simply missing: install `tool` or name it with `-S`.
pub(crate) fn spawn_error(
    program: &std::ffi::OsStr,
    tool: &str,
    e: crate::exec::ExecError,
) -> HandlerError {
    use crate::exec::ExecError;
    use std::os::unix::ffi::OsStrExt;
    let source = match e {
        ExecError::NotInPath { .. } => io::Error::new(
            io::ErrorKind::NotFound,
            format!("not found in PATH; install {tool} or pass -S /path/to/{tool}"),
        ),
        ExecError::NoSuchFile { .. } => io::Error::new(
            io::ErrorKind::NotFound,
            format!("no such file; install {tool} or pass -S /path/to/{tool}"),
        ),
        e => e.into_io(),
    };
    HandlerError::Spawn {
        program: crate::path::display(program.as_bytes()),
        source,
    }
}

/// A relative path as an argument of a handler program (`%INCLUDE-LIST%`
/// in direct mode and in templates): `.` for the root, and `./NAME` for a
/// path that starts with `-`, so that no file name (`--rsh=…`, `-e …`) is
/// ever read as an option by the program (clsync passes such names as
/// they are). Any other path is passed as it is.
pub fn rel_arg(p: &[u8]) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStringExt;
    if p.is_empty() {
        ".".into()
    } else if p.starts_with(b"-") {
        std::ffi::OsString::from_vec([&b"./"[..], p].concat())
    } else {
        std::ffi::OsString::from_vec(p.to_vec())
    }
}

/// The paths a batch names (both sides of a move), sorted, without any
/// that lies under another: for tools whose path arguments are recursive
/// (unison's `-path`, csync2's `-r`). None when the whole tree is asked for.
pub(crate) fn top_paths(batch: &Batch) -> Option<Vec<&[u8]>> {
    let mut all: Vec<&[u8]> = batch.ops.iter().flat_map(crate::batch::Op::paths).collect();
    if all.iter().any(|p| p.is_empty()) {
        return None;
    }
    all.sort();
    all.dedup();
    let mut out: Vec<&[u8]> = Vec::new();
    for p in all {
        // `out` stays sorted (a subsequence of `all`), so search it.
        if !crate::path::ancestors(p).any(|anc| out.binary_search(&anc).is_ok()) {
            out.push(p);
        }
    }
    Some(out)
}

/// What a successful run did, for the one info line per batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Exit code of the external program, if one ran (0 also when ignored).
    pub exit_code: Option<i32>,
    /// Files copied, entries deleted, renames done (built-in mirror only).
    pub copied: u64,
    pub deleted: u64,
    pub renamed: u64,
    /// Source entries left out because we may not read them.
    pub skipped: Vec<PathIssue>,
}

pub use build::{build, build_all, BuildError};

pub trait Handler: Send {
    /// Short name for logs: "mirror", "rsyncdirect", ….
    fn name(&self) -> &str;
    /// Makes the destination equal to the source for every op in `batch`.
    fn run(&mut self, batch: &Batch) -> Result<Report, HandlerError>;
    /// The environment the next [`Handler::run`]'s programs get on top of
    /// livesync's own (`CLSYNC_STATUS`, `CLSYNC_ITERATION`, …); handlers
    /// that run no program ignore it.
    fn set_env(&mut self, _env: Vec<(std::ffi::OsString, std::ffi::OsString)>) {}
    /// Counts the files this handler puts in place into `p`, for the
    /// initial sync's progress bar; false when it cannot (only the
    /// built-in mirror counts).
    fn count_progress(&mut self, _p: std::sync::Arc<counts::Counts>) -> bool {
        false
    }
}
