//! Security: who livesync runs as and what it may do, applied once at
//! start (see SECURITY.md for the threat model and what each option
//! guarantees).
//!
//! The options are read and checked by `crate::config::privileges`; this
//! room owns carrying them out: the identity and capability plan and its
//! drop (`privilege`), namespaces, `--forbid-devices` and the seccomp
//! allow-list (`confine`), `--chroot`/`--pivot-root` and the keeper that
//! removes the pid file and socket outside the jail (`jail`), the
//! privileged helper of `--splitting=process` (`split`) and the argv
//! patterns it checks (`argv_check`), and finding and signalling the
//! process groups of running handlers (`procs`). Besides `main.rs` and
//! `crate::daemon`, this is the only code that changes the process's uid,
//! gids or capabilities; the daemon decides *when* (once, single-threaded,
//! before the watches).
//!
//! Errors of the entry points the daemon calls are an [`Error`], which
//! says which step failed; its text is one line naming the option and what
//! to do.

#[cfg(target_os = "linux")]
pub mod argv_check; // --check-execvp-arguments: the argv patterns of every mode
#[cfg(target_os = "linux")]
pub mod confine; // namespaces, --forbid-devices and the seccomp allow-list
#[cfg(target_os = "linux")]
pub mod jail; // --chroot, --pivot-root and the keeper
#[cfg(not(target_os = "linux"))]
#[path = "jail_other.rs"]
pub mod jail; // --chroot is Linux-only: refused
#[cfg(target_os = "linux")]
pub mod privilege; // -u/-g, capabilities, handler identity
#[cfg(not(target_os = "linux"))]
#[path = "privilege_other.rs"]
pub mod privilege; // -u/-g and handler identity; the rest is Linux-only
#[cfg(all(test, target_os = "linux"))]
#[path = "privilege_other.rs"]
#[allow(dead_code)] // only its tests are used here
mod privilege_other; // its tests, run here too
pub mod procs; // our children's process groups: found through /proc, signalled
#[cfg(target_os = "linux")]
pub mod split; // --splitting=process: the privileged helper
#[cfg(not(target_os = "linux"))]
#[path = "split_other.rs"]
pub mod split; // no helper: --splitting=process is Linux-only

/// Why the start-up security steps failed. Each carries the one-line
/// message for the user; the variant says which step it was, so a caller
/// can tell a plan that cannot work (fix the options) from a system call
/// that failed (fix the system).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The options ask for something this start cannot do (e.g. another
    /// identity without being root).
    #[error("{0}")]
    Plan(String),
    /// Namespaces, `--forbid-devices` or the seccomp filter.
    #[error("{0}")]
    Confine(String),
    /// Entering the `--chroot` jail, or a check made inside it.
    #[error("{0}")]
    Jail(String),
    /// The jail's keeper could not be started.
    #[error("{0}")]
    Keeper(String),
    /// The `--splitting=process` helper could not be started.
    #[error("{0}")]
    Helper(String),
    /// Changing identity or capabilities (or setting no-new-privs) failed.
    #[error("{0}")]
    Drop(String),
}

/// A user and group (uid, gid): who livesync, its helper or its handlers run
/// as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ident {
    pub uid: u32,
    pub gid: u32,
}

impl std::fmt::Display for Ident {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let user = nix::unistd::User::from_uid(self.uid.into())
            .ok()
            .flatten()
            .map(|u| u.name);
        match user {
            Some(name) => write!(f, "{name} (uid {}, gid {})", self.uid, self.gid),
            None => write!(f, "uid {}, gid {}", self.uid, self.gid),
        }
    }
}
