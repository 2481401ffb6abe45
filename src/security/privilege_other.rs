//! Privileges on systems other than Linux: the same public items as
//! `privilege.rs`, for a system without capabilities, seccomp or
//! namespaces.
//!
//! It owns, at start, the identity change (the options are read, and the
//! Linux-only ones refused, by `crate::config::privileges`): with
//! `-u`/`-g` a root-started daemon becomes that user (setgroups/setgid/setuid, no way back) and keeps nothing, since
//! there are no capabilities to keep; without them it stays who it is (no
//! default drop to nobody: nobody could not read the tree). Handlers run
//! as `--sync-handler-uid/-gid` (or `--privileged-uid/-gid`) only while the
//! daemon is still root. Everything that needs Linux (`-C`,
//! `--inherit-capabilities`, `--splitting=process`, `--secure-splitting`,
//! `--check-execvp-arguments`, `--seccomp-filter`, `--detach-*`,
//! `--forbid-devices`) is refused at configuration time with one line; it
//! is never silently ignored. No-new-privs is a Linux prctl: it is not set
//! here, so `--permit-new-privs` changes nothing. Like `privilege.rs`, it
//! must not decide when privileges are dropped and never raises anything.

use super::Error;
use crate::config::{Config, Mode};
use crate::exec;
use std::io;
use std::sync::{Arc, OnceLock};

/// uid and gid of `nobody`/`nogroup` when the names are unknown.
const NOBODY: u32 = 65534;

pub use super::Ident;

/// Who the daemon becomes and who its handlers run as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub start: Ident,
    /// Who the daemon becomes (None: it stays who it is).
    pub daemon: Option<Ident>,
    pub handler: Ident,
}

fn primary_group(uid: u32) -> Option<u32> {
    nix::unistd::User::from_uid(uid.into())
        .ok()
        .flatten()
        .map(|u| u.gid.as_raw())
}

impl Plan {
    /// Works out the plan for `cfg`, started as `start` (euid/egid).
    pub fn new(cfg: &Config, start: Ident) -> Result<Plan, String> {
        let s = &cfg.privileges;
        if start.uid != 0 {
            let asked = [
                ("-u", s.uid, start.uid),
                ("-g", s.gid, start.gid),
                ("--privileged-uid", s.privileged_uid, start.uid),
                ("--privileged-gid", s.privileged_gid, start.gid),
                ("--sync-handler-uid", s.handler_uid, start.uid),
                ("--sync-handler-gid", s.handler_gid, start.gid),
            ];
            for (opt, v, now) in asked {
                if let Some(v) = v.filter(|&v| v != now) {
                    return Err(format!(
                        "{opt} {v}: changing identity needs root, and livesync runs as uid {}; start it as root or drop {opt}",
                        start.uid
                    ));
                }
            }
            return Ok(Plan {
                start,
                daemon: None,
                handler: start,
            });
        }
        let daemon = (s.uid.is_some() || s.gid.is_some()).then(|| Ident {
            uid: s.uid.unwrap_or_else(|| {
                nix::unistd::User::from_name("nobody")
                    .ok()
                    .flatten()
                    .map_or(NOBODY, |u| u.uid.as_raw())
            }),
            gid: s.gid.unwrap_or_else(|| {
                ["nogroup", "nobody"]
                    .iter()
                    .find_map(|n| nix::unistd::Group::from_name(n).ok().flatten())
                    .map_or(NOBODY, |g| g.gid.as_raw())
            }),
        });
        // Without capabilities a dropped daemon cannot start handlers as
        // anyone else: they run as the daemon unless one is named.
        let base = daemon.unwrap_or(start);
        let uid = s.handler_uid.or(s.privileged_uid);
        let handler = Ident {
            uid: uid.unwrap_or(base.uid),
            gid: s
                .handler_gid
                .or(s.privileged_gid)
                .or(uid.and_then(primary_group))
                .unwrap_or(base.gid),
        };
        let runs_programs = !matches!(cfg.mode, Mode::Mirror | Mode::So | Mode::RsyncSo)
            || cfg.pre_exit_hook.is_some()
            || cfg.exit_hook.is_some();
        let dropped = daemon.is_some_and(|d| d.uid != 0);
        if runs_programs && dropped && handler != base {
            return Err(format!(
                "handlers as {handler} need the daemon to stay root, and -u/-g drop it to {base} (this system has no capabilities to keep); drop -u/-g or --sync-handler-uid/--privileged-uid"
            ));
        }
        Ok(Plan {
            start,
            daemon,
            handler,
        })
    }
}

/// Becomes `target` for good: supplementary groups, gid, uid; then checks
/// that root cannot be regained.
fn drop_to(target: Ident) -> Result<(), String> {
    let gid = target.gid as libc::gid_t;
    // SAFETY: plain syscalls on our own process with valid arguments.
    unsafe {
        if libc::setgroups(1, &gid) != 0 {
            return Err(format!("setgroups: {}", io::Error::last_os_error()));
        }
        if libc::setgid(gid) != 0 {
            return Err(format!("setgid: {}", io::Error::last_os_error()));
        }
        if libc::setuid(target.uid as libc::uid_t) != 0 {
            return Err(format!("setuid: {}", io::Error::last_os_error()));
        }
        if target.uid != 0 && libc::setuid(0) == 0 {
            return Err("root could be regained after setuid".into());
        }
    }
    Ok(())
}

/// What a handler child does between fork and exec: switch to `ident`.
/// Only async-signal-safe calls (it runs in the forked child).
#[derive(Clone, Copy, Debug)]
pub struct ChildSetup {
    pub ident: Option<Ident>,
}

impl ChildSetup {
    /// Runs in the child after fork.
    pub fn apply(&self) -> io::Result<()> {
        let Some(id) = self.ident else {
            return Ok(());
        };
        let gid = id.gid as libc::gid_t;
        // SAFETY: plain syscalls on our own process with valid arguments.
        let failed = unsafe {
            libc::setgroups(1, &gid) != 0
                || libc::setgid(gid) != 0
                || libc::setuid(id.uid as libc::uid_t) != 0
        };
        if failed {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Runs handler children here, each with a [`ChildSetup`].
pub struct LocalSpawner {
    pub setup: ChildSetup,
}

impl exec::Spawner for LocalSpawner {
    fn run(&self, spec: &exec::Spec) -> Result<exec::Outcome, exec::ExecError> {
        let setup = self.setup;
        spec.run_prepared(Some(Arc::new(move || setup.apply())))
    }
}

static APPLIED: OnceLock<Plan> = OnceLock::new();

/// The current euid/egid.
pub fn current() -> Ident {
    Ident {
        uid: nix::unistd::geteuid().as_raw(),
        gid: nix::unistd::getegid().as_raw(),
    }
}

/// Changes the daemon's identity as `cfg` says and, when handlers run as
/// someone else, installs the spawner that switches to them. Called once,
/// single-threaded, before the watches.
pub fn apply(cfg: &mut Config) -> Result<(), Error> {
    let cfg: &Config = cfg;
    let plan = Plan::new(cfg, current()).map_err(Error::Plan)?;
    if let Some(target) = plan.daemon {
        drop_to(target).map_err(|e| {
            Error::Drop(format!(
                "cannot drop privileges to {target}: {e}; run with -u 0 to stay root"
            ))
        })?;
        log::info!("running as {target}");
    }
    let me = plan.daemon.unwrap_or(plan.start);
    if plan.handler != me {
        log::info!("handlers run as {}", plan.handler);
        let setup = ChildSetup {
            ident: Some(plan.handler),
        };
        exec::set_spawner(Box::new(LocalSpawner { setup }));
    }
    let _ = APPLIED.set(plan);
    Ok(())
}

/// Always false here: a dropped daemon keeps no capability to copy owners.
pub fn dropped_from_root() -> bool {
    false
}

/// A hint for a failed handler run: which user it ran as, when that is not
/// the user livesync started as.
pub fn failure_hint() -> Option<String> {
    let p = APPLIED.get()?;
    (p.handler.uid != p.start.uid).then(|| {
        format!(
            " (the handler ran as {}, see -u and --sync-handler-uid: check that this user may read the source and write the destination)",
            p.handler
        )
    })
}

/// Sends `sig` to every running handler's process group; returns how many
/// were signalled.
pub fn signal_handlers(sig: libc::c_int) -> usize {
    super::procs::signal_child_groups(sig)
}

// These run on Linux too: daemon/mod.rs compiles this file a second time
// under `cfg(test)`, where `Config::privileges` is Linux's `Privileges`, whose
// fields have the same names.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::cli;
    use clap::Parser;

    fn args(extra: &[&str]) -> cli::Args {
        let mut v = vec!["livesync", "-H", "/NULL/"];
        v.extend_from_slice(extra);
        cli::Args::try_parse_from(v).expect("clap")
    }

    fn config(extra: &[&str]) -> (tempfile::TempDir, Config) {
        let t = tempfile::tempdir().expect("tempdir");
        let (src, dst) = (t.path().join("src"), t.path().join("dst"));
        std::fs::create_dir(&src).expect("mkdir");
        let (src, dst) = (src.to_str().expect("utf8"), dst.to_str().expect("utf8"));
        let mut v = vec!["-W", src, "-D", dst];
        v.extend_from_slice(extra);
        let cfg = Config::from_args(args(&v)).expect("config");
        (t, cfg)
    }

    #[test]
    fn identity_plans() {
        let root = Ident { uid: 0, gid: 0 };
        let user = Ident {
            uid: 4242,
            gid: 4243,
        };
        // Defaults: nobody changes; handlers run as the daemon.
        let (_t, c) = config(&[]);
        let p = Plan::new(&c, root).expect("root");
        assert_eq!((p.daemon, p.handler), (None, root));
        let p = Plan::new(&c, user).expect("user");
        assert_eq!((p.daemon, p.handler), (None, user));
        // Not root: no other identity.
        let (_t, c) = config(&["-u", "1"]);
        let e = Plan::new(&c, user).expect_err("needs root");
        assert!(e.starts_with("-u 1: changing identity needs root"), "{e}");
        // -u/-g from root: the daemon and its handlers become that user.
        let (_t, c) = config(&["-M", "rsyncdirect", "-u", "4242", "-g", "4243"]);
        let p = Plan::new(&c, root).expect("drop");
        assert_eq!((p.daemon, p.handler), (Some(user), user));
        // A handler user other than the dropped daemon cannot be reached.
        let (_t, c) = config(&["-M", "rsyncdirect", "-u", "4242", "--sync-handler-uid", "0"]);
        let e = Plan::new(&c, root).expect_err("no way back to root");
        assert!(e.contains("need the daemon to stay root"), "{e}");
        // ... unless no handler program runs.
        let (_t, c) = config(&["-u", "4242", "--sync-handler-uid", "0"]);
        assert!(Plan::new(&c, root).is_ok());
        // -u 0: still root, with the group asked for; handlers alike.
        let (_t, c) = config(&["-M", "rsyncdirect", "-u", "0", "-g", "5"]);
        let p = Plan::new(&c, root).expect("stay root");
        let root5 = Ident { uid: 0, gid: 5 };
        assert_eq!((p.daemon, p.handler), (Some(root5), root5));
        // Root stays root and starts handlers as someone else.
        let (_t, c) = config(&["-M", "rsyncdirect", "--sync-handler-uid", "4242"]);
        let p = Plan::new(&c, root).expect("switch in the child");
        assert_eq!((p.daemon, p.handler.uid), (None, 4242));
    }
}
