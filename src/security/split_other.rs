//! `--splitting=process` on systems other than Linux: there is no
//! privileged helper here (the option is refused by `privilege_other.rs`),
//! so this only gives the daemon the same names as `split.rs`, with
//! nothing behind them. It must not grow a helper of its own.

use crate::batch::Batch;
use crate::handler::{Handler, HandlerError, Report};
use crate::rules::Rules;

/// The mirror run by the helper; no value exists without a helper.
pub enum MirrorClient {}

impl Handler for MirrorClient {
    fn name(&self) -> &str {
        match *self {}
    }

    fn run(&mut self, _batch: &Batch) -> Result<Report, HandlerError> {
        match *self {}
    }
}

/// Always None: no helper runs the mirror here.
pub fn mirror_client(_rules: &Rules) -> Option<Result<MirrorClient, HandlerError>> {
    None
}

/// No helper, so no handlers of its own to signal.
pub fn signal(_sig: libc::c_int) -> usize {
    0
}
