//! `--chroot` and `--pivot-root` on systems other than Linux: refused at
//! configuration time with one line (the keeper and the checks are written
//! and tested for Linux only). The same public items as `jail.rs`, with a
//! [`Jail`] that cannot exist. It must not change the process.

use crate::config::Config;

pub use crate::config::privileges::Jail;

/// What the keeper would remove (unused here).
#[derive(Clone, Debug, Default)]
pub struct Leftovers {
    pub pid_file: Option<(std::path::PathBuf, (u64, u64))>,
    pub socket: Option<(std::path::PathBuf, (u64, u64))>,
}

pub fn rebase(_cfg: &mut Config, jail: &Jail) {
    match *jail {}
}

pub fn spawn_keeper(
    _cfg: &Config,
    _left: Leftovers,
    _remove: fn(&Leftovers),
) -> Result<(), super::Error> {
    Ok(())
}

pub fn finish() {}
