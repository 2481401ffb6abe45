//! The built-in mirror engine. (Stub: API only.)

use super::{Handler, HandlerError, Report};
use crate::batch::Batch;
use crate::rules::Rules;
use std::path::PathBuf;
use std::sync::Arc;

pub struct Mirror {
    _src: PathBuf,
    _dst: PathBuf,
    _rules: Arc<Rules>,
}

impl Mirror {
    /// `src` and `dst` are absolute, canonical directories.
    pub fn new(src: PathBuf, dst: PathBuf, rules: Arc<Rules>) -> Self {
        Mirror {
            _src: src,
            _dst: dst,
            _rules: rules,
        }
    }
}

impl Handler for Mirror {
    fn name(&self) -> &str {
        "mirror"
    }
    fn run(&mut self, _batch: &Batch) -> Result<Report, HandlerError> {
        Err(HandlerError::Other("not implemented".into()))
    }
}
