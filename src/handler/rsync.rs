//! rsyncdirect. (Stub: API only.)

use super::{Handler, HandlerError, Report};
use crate::batch::Batch;
use crate::rules::Rules;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;

/// Everything rsyncdirect needs, resolved from the command line.
#[derive(Clone, Debug)]
pub struct RsyncConfig {
    /// `-S`: the rsync binary (looked up in PATH when it has no slash).
    pub program: OsString,
    /// Handler arguments after `--` (a template); empty = clsync's defaults.
    pub args: Vec<OsString>,
    /// Canonical watch dir.
    pub src: PathBuf,
    /// Destination as given: a local dir, `host:path` or `rsync://…`.
    pub dst: OsString,
    /// `-L`: where list files go; None = a private 0700 temp dir.
    pub lists_dir: Option<PathBuf>,
    /// `-U`: keep list files after the run.
    pub keep_lists: bool,
    /// `-x`: exit codes that count as success (24 by default).
    pub ignore_exit: Vec<i32>,
    /// `-l`: the label.
    pub label: String,
    pub rules: Arc<Rules>,
}

pub struct RsyncDirect {
    _cfg: RsyncConfig,
}

impl RsyncDirect {
    pub fn new(cfg: RsyncConfig) -> Result<Self, HandlerError> {
        Ok(RsyncDirect { _cfg: cfg })
    }
}

impl Handler for RsyncDirect {
    fn name(&self) -> &str {
        "rsyncdirect"
    }
    fn run(&mut self, _batch: &Batch) -> Result<Report, HandlerError> {
        Err(HandlerError::Other("not implemented".into()))
    }
}
