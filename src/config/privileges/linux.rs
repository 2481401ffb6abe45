//! Reading the privilege options on Linux: every option is offered.
//! Turning them into a plan and applying it is `crate::security`'s
//! business; this module only parses them and checks a configuration
//! against the jail (`--chroot`), at configuration time.

use super::users::{resolve_group, resolve_user};
use super::{DetachNetwork, Inherit, Privileges, Splitting};
use crate::config::{cli, Config, Destination, Mode};
use crate::path;
pub use caps::Capability;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
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

impl Jail {
    /// The jail's root, as seen from outside.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `p` (absolute, as seen from outside) as seen inside, if it lies in
    /// the jail.
    pub fn inner(&self, p: &Path) -> Option<PathBuf> {
        let rest = p.strip_prefix(&self.root).ok()?;
        Some(Path::new("/").join(rest))
    }

    /// `p` as seen from inside, as a path outside (for checks made before
    /// entering).
    pub fn outer(&self, inside: &Path) -> PathBuf {
        let rel = inside.strip_prefix("/").unwrap_or(inside);
        self.root.join(rel)
    }

    pub(crate) fn must_be_inside(&self, what: &str, p: &Path) -> Result<PathBuf, String> {
        // What does not exist yet is checked through its directory.
        let abs = match std::fs::canonicalize(p) {
            Ok(c) => c,
            Err(_) => match (p.parent(), p.file_name()) {
                (Some(d), Some(n)) if !d.as_os_str().is_empty() => std::fs::canonicalize(d)
                    .map(|d| d.join(n))
                    .unwrap_or_else(|_| p.to_path_buf()),
                _ => p.to_path_buf(),
            },
        };
        self.inner(&abs).ok_or_else(|| {
            format!(
                "--chroot {}: {what} {} lies outside it; move it inside (or bind-mount it there) and name it by its path under {}",
                path::display_os(&self.root),
                path::display_os(p),
                path::display_os(&self.root)
            )
        })
    }

    /// Where `program` (a handler, a hook) is found inside the jail: an
    /// absolute path must lie inside; a bare name is looked up in `PATH`
    /// under the jail's root. Returns the name to run inside.
    pub(crate) fn program(&self, what: &str, program: &OsStr) -> Result<OsString, String> {
        if program.as_bytes().starts_with(b"/") {
            let p = Path::new(program);
            let inner = self.must_be_inside(what, p)?;
            if !p.is_file() {
                return Err(format!(
                    "{what} {}: not found; the handler must exist inside --chroot {}",
                    path::display_os(p),
                    path::display_os(&self.root)
                ));
            }
            return Ok(inner.into_os_string());
        }
        if program.as_bytes().contains(&b'/') {
            // Relative to the watch dir (handlers run there): inside.
            return Ok(program.to_os_string());
        }
        let search = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
        let found = std::env::split_paths(&search)
            .filter(|d| d.is_absolute())
            .map(|d| self.outer(&d).join(program))
            .any(|p| {
                p.metadata()
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            });
        if found {
            Ok(program.to_os_string())
        } else {
            Err(format!(
                "--chroot {}: {what} {} is not found in PATH ({}) inside it; copy or bind-mount it (and the libraries it needs) into {}",
                path::display_os(&self.root),
                path::display(program.as_bytes()),
                path::display(search.as_bytes()),
                path::display_os(&self.root)
            ))
        }
    }

    /// Checks `cfg` against the jail: what livesync uses while running lies
    /// inside, and the handler can be found there. One line per problem.
    pub fn check(&self, cfg: &Config) -> Result<(), String> {
        let r = path::display_os(&self.root);
        if cfg.monitor == crate::monitor::MonitorKind::Fanotify {
            return Err(format!(
                "--chroot {r} and --monitor fanotify do not mix: fanotify marks whole file systems and names files through /proc, which the jail has not; use --monitor inotify"
            ));
        }
        if cfg.privileges.forbid_devices {
            return Err(format!(
                "--chroot {r} and --forbid-devices do not mix: inside the jail only the devices you put in {r}/dev exist; drop --forbid-devices"
            ));
        }
        self.must_be_inside("the watch dir", &cfg.watch_dir)?;
        if let Some(Destination::Local(d)) = &cfg.destination {
            self.must_be_inside("the destination", d)?;
        }
        let named: [(&str, &Option<PathBuf>); 5] = [
            ("-L", &cfg.lists_dir),
            ("--status-file", &cfg.status_file),
            ("--standby-file", &cfg.standby_file),
            ("--dump-dir", &cfg.dump_dir),
            ("--metrics-file", &cfg.metrics_file),
        ];
        for (what, p) in named {
            if let Some(p) = p {
                self.must_be_inside(what, p)?;
            }
        }
        if let Some(p) = &cfg.handler_program {
            self.program("the handler", p)?;
        }
        for (what, hook) in [
            ("--pre-exit-hook", &cfg.pre_exit_hook),
            ("--exit-hook", &cfg.exit_hook),
        ] {
            if let Some(h) = hook {
                self.program(what, h)?;
            }
        }
        let tmp_needed = cfg.mode == Mode::Unison
            || (cfg.lists_dir.is_none() && !matches!(cfg.mode, Mode::Mirror | Mode::Csync2));
        if tmp_needed {
            let tmp = std::env::temp_dir();
            if !self.outer(&tmp).is_dir() {
                return Err(format!(
                    "--chroot {r}: -M {} keeps private files in {} inside the jail, and {} is missing; create it (mode 1777) or give -L with a directory inside {r}",
                    cfg.mode.name(),
                    path::display_os(&tmp),
                    path::display_os(&self.outer(&tmp)),
                ));
            }
        }
        Ok(())
    }
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

    #[test]
    fn paths_move_in_and_out_of_the_jail() {
        let j = Jail {
            root: PathBuf::from("/srv/jail"),
            pivot: PivotRoot::Off,
        };
        assert_eq!(
            j.inner(Path::new("/srv/jail/www")),
            Some(PathBuf::from("/www"))
        );
        assert_eq!(j.inner(Path::new("/srv/jail")), Some(PathBuf::from("/")));
        assert_eq!(j.inner(Path::new("/srv/jailbreak/x")), None);
        assert_eq!(j.inner(Path::new("/etc")), None);
        assert_eq!(
            j.outer(Path::new("/usr/bin")),
            PathBuf::from("/srv/jail/usr/bin")
        );
    }

    #[test]
    fn programs_are_found_inside_the_jail_only() {
        let t = tempfile::tempdir().expect("tempdir");
        let root = std::fs::canonicalize(t.path()).expect("canonical");
        let j = Jail {
            root: root.clone(),
            pivot: PivotRoot::Off,
        };
        std::fs::create_dir_all(root.join("usr/bin")).expect("mkdir");
        let tool = root.join("usr/bin/tool");
        std::fs::write(&tool, "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        assert_eq!(
            j.program("the handler", tool.as_os_str()),
            Ok(OsString::from("/usr/bin/tool"))
        );
        let e = j
            .program("the handler", OsStr::new("/bin/sh"))
            .expect_err("outside");
        assert!(e.contains("lies outside it"), "{e}");
        // A bare name: PATH is looked up under the root.
        let e = j
            .program("the handler", OsStr::new("livesync-no-such-tool"))
            .expect_err("missing");
        assert!(e.contains("is not found in PATH"), "{e}");
    }
}
