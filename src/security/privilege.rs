//! Privileges: who the daemon and its handlers run as, and with which
//! capabilities (`-u/-g`, `--privileged-uid/-gid`, `--sync-handler-uid/-gid`,
//! `-C`, `--inherit-capabilities`, `--permit-new-privs`).
//!
//! The options are read into [`Privileges`] with the rest of the
//! configuration (`crate::config::privileges`); this module owns turning
//! them, at start, into a [`Plan`]
//! that it applies to the process: clear the bounding set down to the kept
//! capabilities, keep-caps, `setgroups`/`setresgid`/`setresuid`, re-raise
//! only the kept set. It also builds what every handler child does between
//! fork and exec (its identity, inheritable and ambient capabilities,
//! `PR_SET_NO_NEW_PRIVS`) and installs it as the spawner of
//! [`crate::exec`]. Started as root, the daemon runs as nobody/nogroup by
//! default and keeps only what its work needs (see [`Plan::kept`]); started
//! as another user it changes nothing but the handlers' no-new-privs and
//! inheritable set. It must not decide *when* privileges are dropped (the
//! daemon does, once, while single-threaded) and it never raises anything.

use super::confine;
use super::Error;
use crate::config::{Config, Mode};
use crate::exec;
use crate::path;
use caps::{CapSet, CapsHashSet};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// uid and gid of `nobody`/`nogroup` when the names are unknown.
const NOBODY: u32 = 65534;

/// What the built-in mirror needs to write a destination as root would:
/// create in any directory, copy owners and modes, keep set-id bits, make
/// device nodes.
pub const WRITER_CAPS: [Capability; 5] = [
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FOWNER,
    Capability::CAP_FSETID,
    Capability::CAP_MKNOD,
];

/// What starting handlers as another user needs: change identity in the
/// child, and signal the child's group when it runs too long or at stop.
pub const SWITCH_CAPS: [Capability; 3] = [
    Capability::CAP_SETUID,
    Capability::CAP_SETGID,
    Capability::CAP_KILL,
];

pub use crate::config::privileges::{Capability, DetachNetwork, Inherit, Privileges, Splitting};

pub use super::Ident;

/// What the daemon does to itself at start, and what its handlers get.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Who livesync started as.
    pub start: Ident,
    /// Who the daemon becomes (None: it stays who it is).
    pub daemon: Option<Ident>,
    /// Who handlers and hooks run as.
    pub handler: Ident,
    /// The daemon's permitted = effective set (and its bounding set) after
    /// the drop; only meaningful when `daemon` is Some.
    pub kept: Vec<Capability>,
    /// Why each kept capability is kept, for the log.
    pub reasons: Vec<(Capability, String)>,
}

/// Why each capability is kept by a daemon that came down from root to
/// `target` (its handlers running as `handler`): what its work needs, and
/// what `-C` adds.
fn reasons(cfg: &Config, handler: Ident, target: Ident) -> Vec<(Capability, String)> {
    let s = &cfg.privileges;
    let mut reasons: Vec<(Capability, String)> = vec![(
        Capability::CAP_DAC_READ_SEARCH,
        "to read and watch the whole tree".into(),
    )];
    let split = s.splitting == Splitting::Process;
    // The mirror runs in the helper when split; a shared object never;
    // --dry-run writes nothing.
    if writes_in_process(&cfg.mode) && !(split && cfg.mode == Mode::Mirror) && !cfg.dry_run {
        for c in WRITER_CAPS {
            reasons.push((
                c,
                format!("the {} handler writes the destination", cfg.mode.name()),
            ));
        }
    }
    let runs_programs =
        runs_handler_programs(&cfg.mode) || cfg.pre_exit_hook.is_some() || cfg.exit_hook.is_some();
    if runs_programs && !split {
        if handler != target {
            for c in SWITCH_CAPS {
                reasons.push((c, format!("to start handlers as {handler}")));
            }
        }
        if handler.uid == 0 {
            for c in WRITER_CAPS {
                reasons.push((c, "handlers run as root (--sync-handler-uid)".into()));
            }
        }
    }
    for d in written_dirs(cfg) {
        if !may_write_dir(&d, target) {
            reasons.push((
                Capability::CAP_DAC_OVERRIDE,
                format!("{target} cannot write {}", path::display_os(&d)),
            ));
        }
    }
    if cfg.monitor == crate::monitor::MonitorKind::Fanotify {
        reasons.push((
            Capability::CAP_SYS_ADMIN,
            "--monitor fanotify marks filesystems (also ones mounted later below the root)".into(),
        ));
    }
    for c in &s.preserve {
        reasons.push((*c, "-C".into()));
    }
    reasons
}

fn nobody() -> u32 {
    nix::unistd::User::from_name("nobody")
        .ok()
        .flatten()
        .map_or(NOBODY, |u| u.uid.as_raw())
}

fn nogroup() -> u32 {
    ["nogroup", "nobody"]
        .iter()
        .find_map(|n| nix::unistd::Group::from_name(n).ok().flatten())
        .map_or(NOBODY, |g| g.gid.as_raw())
}

/// Whether `who` may create and remove entries in `dir`, by its mode bits
/// (ACLs are not looked at).
pub(super) fn may_write_dir(dir: &Path, who: Ident) -> bool {
    let Ok(m) = std::fs::metadata(dir) else {
        return false;
    };
    let mode = m.mode();
    let bits = if m.uid() == who.uid {
        (mode >> 6) & 0o3
    } else if m.gid() == who.gid {
        (mode >> 3) & 0o3
    } else {
        mode & 0o3
    };
    bits == 0o3
}

/// Whether `id` is mapped in `/proc/self/{uid,gid}_map` text `map`.
fn mapped(map: &str, id: u32) -> bool {
    map.lines().any(|l| {
        let f: Vec<u64> = l
            .split_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect();
        f.len() == 3 && (f[0]..f[0] + f[2]).contains(&u64::from(id))
    })
}

/// Whether this process can switch to `id` (its user namespace maps it and
/// lets setgroups run).
fn can_become(id: Ident) -> bool {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let uid_ok = read("/proc/self/uid_map").map_or(true, |m| mapped(&m, id.uid));
    let gid_ok = read("/proc/self/gid_map").map_or(true, |m| mapped(&m, id.gid));
    let groups_ok = read("/proc/self/setgroups").map_or(true, |s| s.trim() != "deny");
    uid_ok && gid_ok && groups_ok
}

/// The directories the daemon writes in after the drop: those of the pid
/// file, status file and control socket (replaced and removed there; in a
/// `--chroot` jail the keeper removes the first and the last), the dump dir
/// and the lists dir.
fn written_dirs(cfg: &Config) -> Vec<PathBuf> {
    let parent = |p: &Option<PathBuf>| {
        p.as_ref()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .filter(|d| !d.as_os_str().is_empty())
    };
    let jailed = cfg.privileges.jail.is_some();
    let outside = |p: &Option<PathBuf>| if jailed { None } else { parent(p) };
    let mut out: Vec<PathBuf> = [
        outside(&cfg.pid_file),
        parent(&cfg.status_file),
        outside(&cfg.socket),
        cfg.dump_dir.clone(),
    ]
    .into_iter()
    .flatten()
    .collect();
    if cfg.mode != Mode::Mirror {
        out.extend(cfg.lists_dir.clone());
    }
    out
}

/// Whether the mode starts a handler program (all but the in-process ones:
/// the built-in mirror and the so/rsyncso shared objects).
fn runs_handler_programs(mode: &Mode) -> bool {
    !writes_in_process(mode)
}

/// Whether the handler writes the destination from inside the daemon.
fn writes_in_process(mode: &Mode) -> bool {
    matches!(mode, Mode::Mirror | Mode::So | Mode::RsyncSo)
}

impl Plan {
    /// Works out the plan for `cfg`, started as `start` (euid/egid).
    pub fn new(cfg: &Config, start: Ident) -> Result<Plan, String> {
        let s = &cfg.privileges;
        let root = start.uid == 0;
        let privileged = Ident {
            uid: s.privileged_uid.unwrap_or(start.uid),
            gid: s.privileged_gid.unwrap_or(start.gid),
        };
        // A handler user given without a group runs with that user's
        // primary group, not with root's.
        let primary = s.handler_uid.and_then(|u| {
            nix::unistd::User::from_uid(u.into())
                .ok()
                .flatten()
                .map(|u| u.gid.as_raw())
        });
        let handler = Ident {
            uid: s.handler_uid.unwrap_or(privileged.uid),
            gid: s.handler_gid.or(primary).unwrap_or(privileged.gid),
        };
        if !root {
            return Plan::unprivileged(cfg, start, handler);
        }
        // A non-root handler user is also the daemon's default user: list
        // files (0600, the daemon's) must be readable by the handler.
        let handler_user = s.handler_uid.filter(|&u| u != 0);
        let target = Ident {
            uid: s.uid.or(handler_user).unwrap_or_else(nobody),
            gid: s
                .gid
                .or(handler_user.map(|_| handler.gid))
                .unwrap_or_else(nogroup),
        };
        if runs_handler_programs(&cfg.mode) && handler.uid != 0 && handler.uid != target.uid {
            log::warn!(
                "handlers run as {handler} but the daemon as {target}: rsync may not read the daemon's 0600 list files; give -u {} as well",
                handler.uid
            );
        }
        let explicit = s.uid.is_some() || s.gid.is_some();
        if !explicit && !can_become(target) {
            // A user namespace that maps only root (a container, a test):
            // nobody does not exist here, so there is nothing to become.
            log::warn!(
                "cannot become {target} here (not mapped in this user namespace, or setgroups is denied): staying uid {}; give -u/-g to insist",
                start.uid
            );
            return Ok(Plan {
                start,
                daemon: None,
                handler,
                kept: Vec::new(),
                reasons: Vec::new(),
            });
        }
        if target.uid == 0 {
            // `-u 0`: the daemon stays root, as asked.
            return Ok(Plan {
                start,
                daemon: None,
                handler,
                kept: Vec::new(),
                reasons: Vec::new(),
            });
        }
        let reasons = reasons(cfg, handler, target);
        let mut kept: Vec<Capability> = Vec::new();
        for (c, _) in &reasons {
            if !kept.contains(c) {
                kept.push(*c);
            }
        }
        kept.sort_by_key(|c| c.index());
        Ok(Plan {
            start,
            daemon: Some(target),
            handler,
            kept,
            reasons,
        })
    }

    /// Not started as root: no identity can change; the plan is to stay.
    fn unprivileged(cfg: &Config, start: Ident, handler: Ident) -> Result<Plan, String> {
        let s = &cfg.privileges;
        let asked = [
            ("-u", s.uid, start.uid),
            ("-g", s.gid, start.gid),
            ("--privileged-uid", s.privileged_uid, start.uid),
            ("--privileged-gid", s.privileged_gid, start.gid),
            ("--sync-handler-uid", s.handler_uid, start.uid),
            ("--sync-handler-gid", s.handler_gid, start.gid),
        ];
        for (opt, v, now) in asked {
            if v.is_some_and(|v| v != now) {
                return Err(format!(
                    "{opt} {}: changing identity needs root, and livesync runs as uid {}; start it as root or drop {opt}",
                    v.unwrap_or(now),
                    start.uid
                ));
            }
        }
        Ok(Plan {
            start,
            daemon: None,
            handler,
            kept: Vec::new(),
            reasons: Vec::new(),
        })
    }

    /// The identity the daemon has after [`Plan::apply`].
    pub fn daemon_ident(&self) -> Ident {
        self.daemon.unwrap_or(self.start)
    }

    /// Applies the plan to this process (see the module docs). Must be
    /// called while the process has one thread.
    pub fn apply(&self, keep_inheritable: bool) -> Result<(), Error> {
        let Some(target) = self.daemon else {
            return Ok(());
        };
        let kept: CapsHashSet = self.kept.iter().copied().collect();
        drop_to(target, &kept, keep_inheritable).map_err(|e| {
            let m = format!("cannot drop privileges to {target}: {e}; run with -u 0 to stay root");
            match e {
                // A configuration the start cannot carry out (exit code 2).
                DropError::Unmet(_) => Error::Plan(m),
                DropError::Failed(_) => Error::Drop(m),
            }
        })?;
        for c in &self.kept {
            let why: Vec<&str> = self
                .reasons
                .iter()
                .filter(|(k, _)| k == c)
                .map(|(_, w)| w.as_str())
                .collect();
            log::debug!("keeping {c}: {}", why.join("; "));
        }
        log::info!(
            "running as {target} with {}",
            if self.kept.is_empty() {
                "no capabilities".to_string()
            } else {
                self.kept
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            }
        );
        Ok(())
    }
}

/// Why [`drop_to`] did not drop.
#[derive(Debug, thiserror::Error)]
pub enum DropError {
    /// This process lacks what the change needs (capabilities that a
    /// bounding set took away): nothing was changed, and only a change of
    /// the configuration helps, not a restart.
    #[error("{0}")]
    Unmet(String),
    /// A step of the change failed.
    #[error("{0}")]
    Failed(String),
}

impl From<String> for DropError {
    fn from(s: String) -> Self {
        DropError::Failed(s)
    }
}

impl From<&str> for DropError {
    fn from(s: &str) -> Self {
        DropError::Failed(s.to_string())
    }
}

/// Bounding set down to `kept`, then the identity, then permitted and
/// effective exactly `kept`, nothing inheritable (unless `keep_inheritable`:
/// `--inherit-capabilities=dont-touch`) and nothing ambient.
///
/// The process may have been started with less (systemd's
/// `CapabilityBoundingSet=`, `setpriv --bounding-set`): a capability already
/// out of the bounding set is not dropped again (that would need
/// CAP_SETPCAP for nothing), and what is missing for the change is named
/// before anything changes.
pub fn drop_to(target: Ident, kept: &CapsHashSet, keep_inheritable: bool) -> Result<(), DropError> {
    let missing = |m: String| DropError::Unmet(m);
    let names = |set: &mut Vec<Capability>| {
        set.sort_by_key(|c| c.index());
        set.iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let bounding =
        caps::read(None, CapSet::Bounding).map_err(|e| format!("reading the bounding set: {e}"))?;
    let effective = caps::read(None, CapSet::Effective)
        .map_err(|e| format!("reading the effective set: {e}"))?;
    let permitted = caps::read(None, CapSet::Permitted)
        .map_err(|e| format!("reading the permitted set: {e}"))?;
    let mut missing_caps: Vec<Capability> = kept.difference(&permitted).copied().collect();
    if !missing_caps.is_empty() {
        return Err(missing(format!(
            "it needs {}, which this process was started without (a CapabilityBoundingSet= or \
             setpriv took it): \
             add it there",
            names(&mut missing_caps)
        )));
    }
    let mut extra: Vec<Capability> = bounding.difference(kept).copied().collect();
    if !extra.is_empty() && !effective.contains(&Capability::CAP_SETPCAP) {
        return Err(missing(format!(
            "cutting the bounding set (it holds {} too) needs CAP_SETPCAP: add CAP_SETPCAP \
             to CapabilityBoundingSet=, or leave those out of it",
            names(&mut extra)
        )));
    }
    let me = current();
    let mut switch: Vec<Capability> = Vec::new();
    if me.uid != target.uid && !effective.contains(&Capability::CAP_SETUID) {
        switch.push(Capability::CAP_SETUID);
    }
    if !effective.contains(&Capability::CAP_SETGID) {
        switch.push(Capability::CAP_SETGID);
    }
    if !switch.is_empty() {
        return Err(missing(format!(
            "changing the user needs {}: add them to CapabilityBoundingSet=",
            names(&mut switch)
        )));
    }
    for c in &extra {
        caps::drop(None, CapSet::Bounding, *c).map_err(|e| format!("bounding set: {e}"))?;
    }
    caps::securebits::set_keepcaps(true).map_err(|e| format!("keep-caps: {e}"))?;
    let gid = nix::unistd::Gid::from_raw(target.gid);
    let uid = nix::unistd::Uid::from_raw(target.uid);
    nix::unistd::setgroups(&[gid]).map_err(|e| format!("setgroups: {e}"))?;
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| format!("setresgid: {e}"))?;
    nix::unistd::setresuid(uid, uid, uid).map_err(|e| format!("setresuid: {e}"))?;
    caps::securebits::set_keepcaps(false).map_err(|e| format!("keep-caps: {e}"))?;
    // Effective first: it must stay a subset of permitted at every step.
    caps::set(None, CapSet::Effective, kept).map_err(|e| format!("effective set: {e}"))?;
    caps::set(None, CapSet::Permitted, kept).map_err(|e| format!("permitted set: {e}"))?;
    if !keep_inheritable {
        caps::clear(None, CapSet::Inheritable).map_err(|e| format!("inheritable set: {e}"))?;
    }
    let _ = caps::clear(None, CapSet::Ambient);
    // Check: no way back.
    let r = nix::unistd::getresuid().map_err(|e| format!("getresuid: {e}"))?;
    if r.real != uid || r.effective != uid || r.saved != uid {
        return Err("the user ids did not all change".into());
    }
    Ok(())
}

/// What a handler child does between fork and exec. Only async-signal-safe
/// calls (raw syscalls, no allocation): it runs in the forked child of a
/// threaded process.
#[derive(Clone, Copy, Debug)]
pub struct ChildSetup {
    /// Switch to this identity (None: keep the parent's).
    pub ident: Option<Ident>,
    /// New inheritable set (None: leave it).
    pub inheritable: Option<u64>,
    /// Capabilities raised as ambient (must be permitted and inheritable).
    pub ambient: u64,
    pub no_new_privs: bool,
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_V3: u32 = 0x2008_0522;

fn os_err(rc: libc::c_long) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl ChildSetup {
    /// Runs in the child after fork.
    pub fn apply(&self) -> io::Result<()> {
        // SAFETY: raw syscalls on our own process with valid arguments.
        unsafe {
            if let Some(id) = self.ident {
                let gid = id.gid as libc::gid_t;
                os_err(libc::setgroups(1, &gid) as libc::c_long)?;
                os_err(libc::syscall(libc::SYS_setresgid, gid, gid, gid))?;
                let uid = id.uid as libc::uid_t;
                os_err(libc::syscall(libc::SYS_setresuid, uid, uid, uid))?;
            }
            if let Some(inh) = self.inheritable {
                let mut hdr = CapHeader {
                    version: CAP_V3,
                    pid: 0,
                };
                let mut data = [CapData::default(); 2];
                os_err(libc::syscall(
                    libc::SYS_capget,
                    &mut hdr as *mut CapHeader,
                    data.as_mut_ptr(),
                ))?;
                data[0].inheritable = inh as u32;
                data[1].inheritable = (inh >> 32) as u32;
                os_err(libc::syscall(
                    libc::SYS_capset,
                    &mut hdr as *mut CapHeader,
                    data.as_ptr(),
                ))?;
            }
            // Clearing fails only on kernels without ambient capabilities.
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            );
            for bit in 0..64u64 {
                if self.ambient & (1 << bit) != 0 {
                    os_err(libc::prctl(
                        libc::PR_CAP_AMBIENT,
                        libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                        bit as libc::c_ulong,
                        0 as libc::c_ulong,
                        0 as libc::c_ulong,
                    ) as libc::c_long)?;
                }
            }
            if self.no_new_privs {
                os_err(libc::prctl(
                    libc::PR_SET_NO_NEW_PRIVS,
                    1 as libc::c_ulong,
                    0 as libc::c_ulong,
                    0 as libc::c_ulong,
                    0 as libc::c_ulong,
                ) as libc::c_long)?;
            }
        }
        Ok(())
    }
}

/// The mask of a list of capabilities.
pub fn mask(caps: &[Capability]) -> u64 {
    caps.iter().fold(0, |m, c| m | c.bitmask())
}

/// The child setup for handlers started by a process holding `permitted`
/// as `current`.
pub fn child_setup(s: &Privileges, current: Ident, handler: Ident, permitted: u64) -> ChildSetup {
    let (inheritable, ambient) = match s.inherit {
        Inherit::Permitted | Inherit::Clsync => (Some(permitted), permitted),
        Inherit::DontTouch => (None, 0),
        Inherit::Empty => (Some(0), 0),
    };
    ChildSetup {
        ident: (handler != current).then_some(handler),
        inheritable,
        ambient,
        no_new_privs: s.no_new_privs,
    }
}

/// Runs handler children here, each with a [`ChildSetup`].
pub struct LocalSpawner {
    pub setup: ChildSetup,
}

impl exec::Spawner for LocalSpawner {
    fn run(&self, spec: &exec::Spec) -> Result<exec::Outcome, exec::ExecError> {
        let setup = self.setup;
        match spec.run_prepared(Some(Arc::new(move || setup.apply()))) {
            // EPERM may come from the setup as well as from execve.
            Err(exec::ExecError::PermissionDenied { program }) => Err(exec::ExecError::Spawn {
                program,
                source: io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    "permission denied: it is not executable, or the handler's user or capabilities could not be set (see --sync-handler-uid, -C)",
                ),
            }),
            r => r,
        }
    }
}

/// What was done at start, for hints and the handler's owner flag.
#[derive(Clone, Debug)]
struct Applied {
    plan: Plan,
}

static APPLIED: OnceLock<Applied> = OnceLock::new();

/// The current euid/egid.
pub fn current() -> Ident {
    Ident {
        uid: nix::unistd::geteuid().as_raw(),
        gid: nix::unistd::getegid().as_raw(),
    }
}

/// Drops the daemon's privileges as `cfg` says and installs the handler
/// spawner (see the module docs). Called once, single-threaded, after the
/// privileged setup (pid file, control socket) and before the watches.
/// With `--chroot` the jail is entered first and `cfg`'s paths become the
/// jail's (src/security/jail.rs); with `--splitting=process` the helper is
/// forked then, inside it.
pub fn apply(cfg: &mut Config) -> Result<(), Error> {
    let start = current();
    let plan = Plan::new(cfg, start).map_err(Error::Plan)?;
    let s = cfg.privileges.clone();
    confine::before_split(s.detach_network, s.detach_ipc, s.detach_misc).map_err(Error::Confine)?;
    if let Some(jail) = &s.jail {
        if start.uid != 0 {
            return Err(Error::Plan(format!(
                "--chroot {}: entering a jail needs root (CAP_SYS_CHROOT); start livesync as root or drop --chroot",
                path::display_os(&jail.root)
            )));
        }
        // The paths are resolved outside, then used inside.
        super::jail::rebase(cfg, jail);
        super::jail::enter(jail).map_err(Error::Jail)?;
        super::jail::check_inside(cfg, jail).map_err(Error::Jail)?;
    }
    let cfg: &Config = cfg;
    if s.splitting == Splitting::Process {
        super::split::start(cfg, &plan).map_err(Error::Helper)?;
    }
    confine::daemon_only(s.detach_network, s.splitting == Splitting::Process)
        .map_err(Error::Confine)?;
    if s.forbid_devices {
        if start.uid != 0 {
            return Err(Error::Plan(
                "--forbid-devices needs root (a mount namespace); drop it or start as root".into(),
            ));
        }
        let mut paths = vec![cfg.watch_dir.clone()];
        paths.extend(cfg.destination.iter().map(|d| PathBuf::from(d.as_os_str())));
        paths.extend(written_dirs(cfg));
        if let Some(p) = paths.iter().find(|p| p.starts_with("/dev")) {
            return Err(Error::Plan(format!(
                "--forbid-devices hides /dev, and {} lies under it; move it or drop --forbid-devices",
                path::display_os(p)
            )));
        }
        confine::forbid_devices().map_err(Error::Confine)?;
    }
    plan.apply(s.inherit == Inherit::DontTouch)?;
    if s.no_new_privs {
        // The daemon itself never needs to gain privileges either; its
        // handlers inherit this.
        // SAFETY: plain prctl on ourselves.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(Error::Drop(format!(
                "cannot set no-new-privs: {}",
                io::Error::last_os_error()
            )));
        }
    }
    if s.seccomp {
        confine::apply_seccomp().map_err(Error::Confine)?;
    }
    if s.splitting == Splitting::Off {
        let permitted = match plan.daemon {
            Some(_) => mask(&plan.kept),
            None => caps::read(None, CapSet::Permitted)
                .map(|set| set.iter().fold(0, |m, c| m | c.bitmask()))
                .unwrap_or(0),
        };
        let setup = child_setup(&s, plan.daemon_ident(), plan.handler, permitted);
        let runs_programs = runs_handler_programs(&cfg.mode)
            || cfg.pre_exit_hook.is_some()
            || cfg.exit_hook.is_some();
        if setup.ident.is_some() && runs_programs {
            log::info!("handlers run as {}", plan.handler);
        }
        exec::set_spawner(Box::new(LocalSpawner { setup }));
    }
    let _ = APPLIED.set(Applied { plan });
    Ok(())
}

/// Whether the daemon came down from root (the mirror then still copies
/// owners, with the capabilities it kept).
pub fn dropped_from_root() -> bool {
    APPLIED
        .get()
        .is_some_and(|a| a.plan.start.uid == 0 && a.plan.daemon.is_some())
}

/// A hint for a failed handler run: which user it ran as, when that is not
/// the user livesync started as.
pub fn failure_hint() -> Option<String> {
    let a = APPLIED.get()?;
    (a.plan.handler.uid != a.plan.start.uid).then(|| {
        format!(
            " (the handler ran as {}, see --sync-handler-uid: check that this user may read the source and write the destination)",
            a.plan.handler
        )
    })
}

/// Sends `sig` to every running handler's process group (ours, or the
/// helper's with `--splitting=process`); returns how many were signalled.
pub fn signal_handlers(sig: libc::c_int) -> usize {
    super::procs::signal_child_groups(sig) + super::split::signal(sig)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_maps_are_read() {
        let full = "         0          0 4294967295\n";
        assert!(mapped(full, 65534));
        let root_only = "         0          0          1\n";
        assert!(mapped(root_only, 0));
        assert!(!mapped(root_only, 65534));
        assert!(mapped("0 1000 1\n100 100000 65536\n", 65534));
    }

    #[test]
    fn child_setup_follows_the_inherit_mode() {
        let s = Privileges::default();
        let me = Ident { uid: 1, gid: 1 };
        let other = Ident { uid: 2, gid: 2 };
        let c = child_setup(&s, me, me, 0b110);
        assert_eq!((c.ident, c.inheritable, c.ambient), (None, Some(0), 0));
        assert!(c.no_new_privs);
        let s2 = Privileges {
            inherit: Inherit::Permitted,
            no_new_privs: false,
            ..Privileges::default()
        };
        let c = child_setup(&s2, me, other, 0b110);
        assert_eq!(
            (c.ident, c.inheritable, c.ambient),
            (Some(other), Some(0b110), 0b110)
        );
        assert!(!c.no_new_privs);
        let s3 = Privileges {
            inherit: Inherit::DontTouch,
            ..Privileges::default()
        };
        let c = child_setup(&s3, me, me, 0b110);
        assert_eq!((c.inheritable, c.ambient), (None, 0));
    }

    #[test]
    fn dir_writability_follows_the_mode_bits() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().expect("tempdir");
        let m = std::fs::metadata(t.path()).expect("stat");
        let owner = Ident {
            uid: m.uid(),
            gid: m.gid(),
        };
        let stranger = Ident {
            uid: m.uid().wrapping_add(4242),
            gid: m.gid().wrapping_add(4242),
        };
        std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
        assert!(may_write_dir(t.path(), owner));
        assert!(!may_write_dir(t.path(), stranger));
        std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o1777)).expect("chmod");
        assert!(may_write_dir(t.path(), stranger));
        assert!(!may_write_dir(&t.path().join("missing"), owner));
    }
}
