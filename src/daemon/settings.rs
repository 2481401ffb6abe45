//! The privilege options, validated (`-u/-g`, `--privileged-uid/-gid`,
//! `--sync-handler-uid/-gid`, `-C`, `--inherit-capabilities`,
//! `--permit-new-privs`, `--splitting`, `--check-execvp-arguments`,
//! `--seccomp-filter`, `--detach-*`, `--forbid-devices`, `--chroot`).
//!
//! One struct for every system: reading the options into it is the
//! platform's business (`privilege.rs` on Linux, `privilege_other.rs`
//! elsewhere, which refuses the Linux-only ones), and so is what is done
//! with it at start. This module only says what the settings are; it must
//! not touch the process.

use super::privilege::{Capability, DetachNetwork};

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
pub struct Settings {
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
    /// `--chroot`, `--pivot-root` (src/daemon/jail.rs).
    pub jail: Option<super::jail::Jail>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
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
