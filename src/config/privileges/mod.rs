//! The privilege options, read and validated (`-u/-g`,
//! `--privileged-uid/-gid`, `--sync-handler-uid/-gid`, `-C`,
//! `--inherit-capabilities`, `--permit-new-privs`, `--splitting`,
//! `--check-execvp-arguments`, `--seccomp-filter`, `--detach-*`,
//! `--forbid-devices`, `--chroot`, `--pivot-root`) into [`Privileges`].
//!
//! One struct for every system; reading the options into it is the
//! platform's business (`linux.rs`, or `other.rs`, which refuses the
//! Linux-only ones). What is done with it at start belongs to
//! `crate::security`. This module only says what the settings are and
//! parses them; it must not touch the process, and (being part of the
//! configuration) it imports nothing from the daemon or the security code.

#[cfg(target_os = "linux")]
#[path = "linux.rs"]
pub mod os; // every option
#[cfg(not(target_os = "linux"))]
#[path = "other.rs"]
pub mod os; // the portable options; the Linux-only ones are refused
#[cfg(all(test, target_os = "linux"))]
#[path = "other.rs"]
#[allow(dead_code)] // only its tests are used here
mod other; // its tests, run here too
pub mod users; // -u/-g and friends: names or numbers (portable)

pub use os::{from_args, jail_from_args, Capability, Jail};

/// `--detach-network`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DetachNetwork {
    Off,
    /// The daemon, the helper and the handlers: no network at all.
    Everywhere,
    /// The daemon only (with `--splitting=process`; otherwise nothing).
    NonPrivileged,
}

/// `--inherit-capabilities`: what a handler inherits of the daemon's
/// capabilities (clsync's words).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inherit {
    /// All the permitted capabilities, as ambient ones.
    Permitted,
    /// The inheritable set is left as it is; no ambient capabilities.
    DontTouch,
    /// The daemon's effective set, as ambient capabilities.
    Clsync,
    /// Nothing (the default).
    Empty,
}

/// `--splitting`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Splitting {
    Off,
    /// A privileged helper process starts, kills and reaps handlers.
    Process,
}

/// The privilege options, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Privileges {
    /// `-u`/`-g`: None = nobody/nogroup when started as root.
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// `--privileged-uid/-gid`: None = the identity livesync started as.
    pub privileged_uid: Option<u32>,
    pub privileged_gid: Option<u32>,
    /// `--sync-handler-uid/-gid`: None = the privileged identity.
    pub handler_uid: Option<u32>,
    pub handler_gid: Option<u32>,
    /// `-C`: kept on top of CAP_DAC_READ_SEARCH and what the mode needs.
    pub preserve: Vec<Capability>,
    pub inherit: Inherit,
    /// Handlers get `PR_SET_NO_NEW_PRIVS` (unless `--permit-new-privs`).
    pub no_new_privs: bool,
    pub splitting: Splitting,
    /// `--check-execvp-arguments`.
    pub check_execvp: bool,
    /// `--seccomp-filter` (implied by `--secure-splitting`).
    pub seccomp: bool,
    pub detach_network: DetachNetwork,
    pub detach_ipc: bool,
    pub detach_misc: bool,
    /// `--forbid-devices`.
    pub forbid_devices: bool,
    /// `--chroot`, `--pivot-root` (entered by src/security/jail.rs).
    pub jail: Option<Jail>,
}

impl Default for Privileges {
    fn default() -> Self {
        Privileges {
            uid: None,
            gid: None,
            privileged_uid: None,
            privileged_gid: None,
            handler_uid: None,
            handler_gid: None,
            preserve: Vec::new(),
            inherit: Inherit::Empty,
            no_new_privs: true,
            splitting: Splitting::Off,
            check_execvp: false,
            seccomp: false,
            detach_network: DetachNetwork::Off,
            detach_ipc: false,
            detach_misc: false,
            forbid_devices: false,
            jail: None,
        }
    }
}
