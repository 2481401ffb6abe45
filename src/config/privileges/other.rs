//! Reading the privilege options on systems other than Linux: the
//! portable ones (`-u/-g`, the handler and privileged identities,
//! `--permit-new-privs`) are read; every Linux-only one (`-C`,
//! `--inherit-capabilities`, `--splitting=process`, `--secure-splitting`,
//! `--check-execvp-arguments`, `--seccomp-filter`, `--detach-*`,
//! `--forbid-devices`, `--chroot`, `--pivot-root`) is refused here with
//! one line; it is never silently ignored.
//!
//! On Linux this file is compiled a second time under `cfg(test)` so its
//! tests run there too; `super::os` is then Linux's module, whose jail
//! parser it calls.

use super::users::{resolve_group, resolve_user};
use super::Privileges;
use crate::config::{cli, Config};

/// A capability; there are none on this system, so no value exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capability {}

/// No jail can be configured here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Jail {}

/// Reads the privilege options; refuses the Linux-only ones.
pub fn from_args(a: &cli::Args) -> Result<Privileges, String> {
    let linux_only = |opt: &str| Err(format!("{opt} is Linux-only; drop it"));
    if a.preserve_capabilities
        .as_deref()
        .is_some_and(|c| !c.trim().is_empty())
    {
        return linux_only("-C (capabilities)");
    }
    if a.inherit_capabilities != "empty" {
        return linux_only("--inherit-capabilities");
    }
    if a.secure_splitting {
        return linux_only("--secure-splitting");
    }
    if a.splitting != "off" {
        return linux_only(&format!("--splitting={}", a.splitting));
    }
    if a.check_execvp_arguments {
        return linux_only("--check-execvp-arguments");
    }
    if a.seccomp_filter {
        return linux_only("--seccomp-filter");
    }
    if a.detach_network != "off" {
        return linux_only(&format!("--detach-network={}", a.detach_network));
    }
    if a.detach_ipc {
        return linux_only("--detach-ipc");
    }
    if a.detach_miscellanea {
        return linux_only("--detach-miscellanea");
    }
    if a.forbid_devices {
        return linux_only("--forbid-devices");
    }
    let user = |opt: &str, v: &Option<String>| v.as_deref().map(|s| resolve_user(opt, s));
    let group = |opt: &str, v: &Option<String>| v.as_deref().map(|s| resolve_group(opt, s));
    Ok(Privileges {
        uid: user("-u", &a.uid).transpose()?,
        gid: group("-g", &a.gid).transpose()?,
        privileged_uid: user("--privileged-uid", &a.privileged_uid).transpose()?,
        privileged_gid: group("--privileged-gid", &a.privileged_gid).transpose()?,
        handler_uid: user("--sync-handler-uid", &a.sync_handler_uid).transpose()?,
        handler_gid: group("--sync-handler-gid", &a.sync_handler_gid).transpose()?,
        no_new_privs: !a.permit_new_privs,
        jail: super::os::jail_from_args(a)?,
        ..Privileges::default()
    })
}

/// Refuses `--chroot` and `--pivot-root` other than off.
pub fn jail_from_args(a: &cli::Args) -> Result<Option<Jail>, String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> cli::Args {
        let mut v = vec!["livesync", "-H", "/NULL/"];
        v.extend_from_slice(extra);
        cli::Args::try_parse_from(v).expect("clap")
    }

    #[test]
    fn linux_only_options_are_refused_in_one_line() {
        assert_eq!(from_args(&args(&[])), Ok(Privileges::default()));
        for (given, named) in [
            (&["-C", "CAP_KILL"][..], "-C (capabilities)"),
            (
                &["--inherit-capabilities", "permitted"],
                "--inherit-capabilities",
            ),
            (&["--splitting", "process"], "--splitting=process"),
            (&["--secure-splitting"], "--secure-splitting"),
            (&["--check-execvp-arguments"], "--check-execvp-arguments"),
            (&["--seccomp-filter"], "--seccomp-filter"),
            (
                &["--detach-network", "everywhere"],
                "--detach-network=everywhere",
            ),
            (&["--detach-ipc"], "--detach-ipc"),
            (&["--detach-miscellanea"], "--detach-miscellanea"),
            (&["--forbid-devices"], "--forbid-devices"),
        ] {
            let e = from_args(&args(given)).expect_err(named);
            assert_eq!(e, format!("{named} is Linux-only; drop it"));
        }
        let s = from_args(&args(&["-u", "0", "-g", "root", "--permit-new-privs"]))
            .expect("portable options");
        assert_eq!((s.uid, s.gid, s.no_new_privs), (Some(0), Some(0), false));
    }
}
