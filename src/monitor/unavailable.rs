//! The stand-in for a backend this platform has no kernel API for: it is
//! compiled under that backend's name (see the `mod` lines in
//! `monitor/mod.rs`), and its `open` only says, in one line, that the
//! backend cannot run here. It must never grow logic of its own.

use super::{Monitor, MonitorError, MonitorOptions};
use std::path::Path;

pub fn open(_root: &Path, _: &MonitorOptions) -> Result<Box<dyn Monitor>, MonitorError> {
    let backend = module_path!().rsplit("::").next().unwrap_or("this");
    Err(MonitorError::Unavailable {
        backend: match backend {
            "inotify" => "inotify",
            "fanotify" => "fanotify",
            "bsm" => "bsm",
            "kqueue" => "kqueue",
            _ => "this",
        },
        reason: format!(
            "this build for {} has no {backend}; use --monitor {} or --monitor poll",
            std::env::consts::OS,
            super::MonitorKind::platform_default().name()
        ),
    })
}
