//! Reading the privilege options on Linux: every option is offered.
//! Turning them into a plan and applying it is `security::privilege`'s
//! business; this module only parses and cross-checks.

use super::users::{resolve_group, resolve_user};
use super::{DetachNetwork, Inherit, Privileges, Splitting};
use crate::config::cli;
use crate::path;
pub use caps::Capability;
use std::path::{Path, PathBuf};

/// `-C`'s list: capability names, with or without `CAP_`, any case,
/// separated by commas.
pub fn parse_caps(spec: &str) -> Result<Vec<Capability>, String> {
    let mut out = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let upper = item.to_ascii_uppercase();
        let name = if upper.starts_with("CAP_") {
            upper
        } else {
            format!("CAP_{upper}")
        };
        let cap: Capability = name.parse().map_err(|_| {
            format!("-C: {item:?} is not a capability name (e.g. CAP_DAC_READ_SEARCH,CAP_KILL)")
        })?;
        if !out.contains(&cap) {
            out.push(cap);
        }
    }
    Ok(out)
}

/// Reads and checks the privilege options of the command line.
pub fn from_args(a: &cli::Args) -> Result<Privileges, String> {
    let user = |opt: &str, v: &Option<String>| v.as_deref().map(|s| resolve_user(opt, s));
    let group = |opt: &str, v: &Option<String>| v.as_deref().map(|s| resolve_group(opt, s));
    let secure = a.secure_splitting;
    let splitting = match (a.splitting.as_str(), secure) {
        (_, true) | ("process", _) => Splitting::Process,
        ("off", false) => Splitting::Off,
        ("thread", false) => {
            return Err("--splitting=thread: not offered: threads share one address space and capabilities are per thread, so a compromised unprivileged thread could take over the privileged one; use --splitting=process".into())
        }
        (other, false) => {
            return Err(format!(
                "--splitting {other:?}: unknown; use off or process"
            ))
        }
    };
    let check_execvp = a.check_execvp_arguments || secure;
    if check_execvp && splitting == Splitting::Off {
        return Err(
            "--check-execvp-arguments needs --splitting=process (the helper does the check); add it"
                .into(),
        );
    }
    let inherit = match a.inherit_capabilities.as_str() {
        "permitted" => Inherit::Permitted,
        "dont-touch" => Inherit::DontTouch,
        "clsync" => Inherit::Clsync,
        "empty" => Inherit::Empty,
        other => {
            return Err(format!(
                "--inherit-capabilities {other:?}: use permitted, dont-touch, clsync or empty"
            ))
        }
    };
    let seccomp = a.seccomp_filter || secure;
    if seccomp && splitting == Splitting::Off {
        return Err(
            "--seccomp-filter needs --splitting=process (the filtered daemon cannot start handlers itself); add it"
                .into(),
        );
    }
    if seccomp && a.permit_new_privs {
        return Err("--seccomp-filter needs no-new-privs; drop --permit-new-privs".into());
    }
    if seccomp && a.monitor == Some(crate::monitor::MonitorKind::Notify) {
        return Err(
            "--seccomp-filter and --monitor notify do not mix: the notify crate starts a thread the allow-list forbids; use --monitor inotify, fanotify or poll"
                .into(),
        );
    }
    let detach_network = match a.detach_network.as_str() {
        "off" => DetachNetwork::Off,
        "everywhere" => DetachNetwork::Everywhere,
        "non-privileged" => DetachNetwork::NonPrivileged,
        other => {
            return Err(format!(
                "--detach-network {other:?}: use everywhere, non-privileged or off"
            ))
        }
    };
    Ok(Privileges {
        seccomp,
        detach_network,
        detach_ipc: a.detach_ipc,
        detach_misc: a.detach_miscellanea,
        forbid_devices: a.forbid_devices,
        uid: user("-u", &a.uid).transpose()?,
        gid: group("-g", &a.gid).transpose()?,
        privileged_uid: user("--privileged-uid", &a.privileged_uid).transpose()?,
        privileged_gid: group("--privileged-gid", &a.privileged_gid).transpose()?,
        handler_uid: user("--sync-handler-uid", &a.sync_handler_uid).transpose()?,
        handler_gid: group("--sync-handler-gid", &a.sync_handler_gid).transpose()?,
        preserve: parse_caps(a.preserve_capabilities.as_deref().unwrap_or(""))?,
        inherit,
        no_new_privs: !a.permit_new_privs,
        splitting,
        check_execvp,
        jail: jail_from_args(a)?,
    })
}

/// `--pivot-root`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PivotRoot {
    /// chroot(2) only.
    Off,
    /// A mount namespace; DIR bind-mounted on itself; pivot_root into it.
    Auto,
    /// As `Auto`, the bind mount read-only (mounts below it keep theirs).
    AutoRo,
    /// A mount namespace; pivot_root into DIR, which must be a mount point.
    Direct,
}

impl PivotRoot {
    pub fn name(self) -> &'static str {
        match self {
            PivotRoot::Off => "off",
            PivotRoot::Auto => "auto",
            PivotRoot::AutoRo => "auto-ro",
            PivotRoot::Direct => "direct",
        }
    }
}

/// The jail: where, and how it is entered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Jail {
    /// Canonical, absolute, not `/`.
    pub root: PathBuf,
    pub pivot: PivotRoot,
}

/// Reads `--chroot` and `--pivot-root`.
pub fn jail_from_args(a: &cli::Args) -> Result<Option<Jail>, String> {
    let pivot = match a.pivot_root.as_str() {
        "off" => PivotRoot::Off,
        "auto" => PivotRoot::Auto,
        "auto-ro" => PivotRoot::AutoRo,
        "direct" => PivotRoot::Direct,
        other => {
            return Err(format!(
                "--pivot-root {other:?}: use auto, auto-ro, direct or off"
            ))
        }
    };
    let Some(dir) = a.chroot.as_ref().filter(|d| !d.as_os_str().is_empty()) else {
        if pivot != PivotRoot::Off {
            return Err(format!(
                "--pivot-root={} needs --chroot DIR (the new root); add it or drop --pivot-root",
                pivot.name()
            ));
        }
        return Ok(None);
    };
    let root = std::fs::canonicalize(dir).map_err(|e| {
        format!(
            "--chroot {}: {e}; create the directory or fix the path",
            path::display_os(dir)
        )
    })?;
    if !root.is_dir() {
        return Err(format!(
            "--chroot {}: not a directory",
            path::display_os(dir)
        ));
    }
    if root == Path::new("/") {
        return Err("--chroot /: that is no jail; name the directory to confine livesync to, or drop --chroot".into());
    }
    Ok(Some(Jail { root, pivot }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seccomp_refuses_the_notify_backend_at_start() {
        use clap::Parser;
        let parse = |extra: &[&str]| {
            let mut v = vec![
                "livesync",
                "-W",
                "/tmp",
                "-D",
                "/nonexistent",
                "--secure-splitting",
            ];
            v.extend_from_slice(extra);
            from_args(&cli::Args::try_parse_from(v).expect("clap"))
        };
        let e = parse(&["--monitor", "notify"]).expect_err("notify under seccomp");
        assert!(e.contains("--monitor notify"), "{e}");
        assert!(parse(&["--monitor", "poll"]).is_ok());
    }

    #[test]
    fn capability_lists_parse() {
        assert_eq!(
            parse_caps("CAP_KILL, dac_read_search,cap_setuid,KILL").expect("ok"),
            vec![
                Capability::CAP_KILL,
                Capability::CAP_DAC_READ_SEARCH,
                Capability::CAP_SETUID
            ]
        );
        assert!(parse_caps("").expect("empty").is_empty());
        let e = parse_caps("CAP_NOPE").expect_err("bad");
        assert!(e.contains("\"CAP_NOPE\" is not a capability"), "{e}");
    }
}
