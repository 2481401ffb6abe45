//! `--chroot` and `--pivot-root` on systems other than Linux: refused at
//! configuration time with one line (the keeper and the checks are written
//! and tested for Linux only). The same public items as `jail.rs`, with a
//! [`Jail`] that cannot exist. It must not change the process.

use crate::config::{cli, Config};

/// No jail can be configured here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Jail {}

/// What the keeper would remove (unused here).
#[derive(Clone, Debug, Default)]
pub struct Leftovers {
    pub pid_file: Option<(std::path::PathBuf, (u64, u64))>,
    pub socket: Option<(std::path::PathBuf, (u64, u64))>,
}

/// Refuses `--chroot` and `--pivot-root` other than off.
pub fn from_args(a: &cli::Args) -> Result<Option<Jail>, String> {
    if a.chroot.as_ref().is_some_and(|d| !d.as_os_str().is_empty()) {
        return Err("--chroot: supported on Linux only so far; drop it".into());
    }
    if a.pivot_root != "off" {
        return Err(format!(
            "--pivot-root={}: Linux only (pivot_root(2)); drop it",
            a.pivot_root
        ));
    }
    Ok(None)
}

impl Jail {
    pub fn root(&self) -> &std::path::Path {
        match *self {}
    }

    pub fn check(&self, _cfg: &Config) -> Result<(), String> {
        match *self {}
    }
}

pub fn rebase(_cfg: &mut Config, jail: &Jail) {
    match *jail {}
}

pub fn spawn_keeper(_cfg: &Config, _left: Leftovers) -> Result<(), String> {
    Ok(())
}

pub fn finish() {}
