//! `--chroot DIR` and `--pivot-root auto|auto-ro|direct|off`: the daemon,
//! its helper and its handlers see only DIR as `/`.
//!
//! This module owns checking a configuration against the jail (at
//! configuration time, so a bad one is one line and exit 2), rewriting the
//! configuration's paths into the jail's view, entering it (chroot(2), or
//! a mount namespace of our own and pivot_root(2) with the old root
//! unmounted), and the *keeper*. Every path on the command line is given
//! as seen from outside; the ones livesync uses while running (watch dir,
//! local destination, handler and hook programs, `-L`, status, standby,
//! metrics and dump paths) must lie inside DIR and are used as `/…` inside.
//! The pid file and the control socket may lie anywhere: they are made
//! before the jail is entered, and removed at exit (each only while it is
//! still the inode the daemon made) by the keeper, a small
//! child forked just before, which stays outside with no capability but
//! the one removing them may need, ignores signals and only waits for the
//! daemon to end (end of a pipe). No descriptor of a directory outside the
//! jail is kept in the daemon: that would be a way out of it.
//!
//! It must not decide when the jail is entered (`privilege.rs` does: as
//! root, single-threaded, after the namespaces and before the helper is
//! forked, so that the helper and handlers are inside too).

use super::privilege::{self, Ident};
use super::Error;
use crate::config::{Config, Destination};
use crate::path;
use caps::{CapSet, Capability, CapsHashSet};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub use crate::config::privileges::os::{Jail, PivotRoot};

/// `cfg`'s paths as seen inside the jail (see [`Jail::check`], which made
/// sure they are inside).
pub fn rebase(cfg: &mut Config, jail: &Jail) {
    let move_in = |p: &mut PathBuf| {
        if let Ok(inner) = jail.must_be_inside("", p) {
            *p = inner;
        }
    };
    move_in(&mut cfg.watch_dir);
    if let Some(Destination::Local(d)) = &mut cfg.destination {
        move_in(d);
    }
    for p in [
        &mut cfg.lists_dir,
        &mut cfg.status_file,
        &mut cfg.standby_file,
        &mut cfg.dump_dir,
        &mut cfg.metrics_file,
    ]
    .into_iter()
    .flatten()
    {
        move_in(p);
    }
    for prog in [
        &mut cfg.handler_program,
        &mut cfg.pre_exit_hook,
        &mut cfg.exit_hook,
    ]
    .into_iter()
    .flatten()
    {
        if let Ok(inner) = jail.program("", prog) {
            *prog = inner;
        }
    }
}

fn sys(what: &str, e: impl std::fmt::Display, root: &Path) -> String {
    format!("--chroot {}: {what}: {e}", path::display_os(root))
}

/// Enters the jail (see the module docs). Root, single-threaded.
pub fn enter(jail: &Jail) -> Result<(), String> {
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    let root = &jail.root;
    // Handlers' stdin; the jail may have no /dev.
    crate::exec::hold_dev_null().map_err(|e| sys("open /dev/null", e, root))?;
    if jail.pivot != PivotRoot::Off {
        super::confine::private_mount_namespace(&format!("--pivot-root={}", jail.pivot.name()))?;
        if jail.pivot != PivotRoot::Direct {
            mount(
                Some(root.as_path()),
                root.as_path(),
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|e| sys("bind-mount it on itself", e, root))?;
        }
        if jail.pivot == PivotRoot::Direct && !is_mount_point(root) {
            return Err(format!(
                "--pivot-root=direct: {} is not a mount point; mount something there (mount --bind DIR DIR will do) or use --pivot-root=auto",
                path::display_os(root)
            ));
        }
        if jail.pivot == PivotRoot::AutoRo {
            mount(
                None::<&str>,
                root.as_path(),
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None::<&str>,
            )
            .map_err(|e| sys("make it read-only", e, root))?;
        }
        nix::unistd::chdir(root.as_path()).map_err(|e| sys("chdir", e, root))?;
        // new_root and put_old the same: the old root ends up stacked on
        // the new one, and is then detached.
        nix::unistd::pivot_root(".", ".").map_err(|e| sys("pivot_root", e, root))?;
        umount2(".", MntFlags::MNT_DETACH).map_err(|e| sys("unmount the old root", e, root))?;
    } else {
        nix::unistd::chdir(root.as_path()).map_err(|e| sys("chdir", e, root))?;
    }
    nix::unistd::chroot(".").map_err(|e| sys("chroot", e, root))?;
    nix::unistd::chdir("/").map_err(|e| sys("chdir /", e, root))?;
    log::info!(
        "confined to {}{}",
        path::display_os(root),
        match jail.pivot {
            PivotRoot::Off => String::new(),
            p => format!(" (pivot_root, {}; the old root is unmounted)", p.name()),
        }
    );
    Ok(())
}

/// Whether `dir` is a mount point, by `/proc/self/mountinfo` (a bind mount
/// of a directory on itself has the same device as its parent, so `stat`
/// cannot tell).
fn is_mount_point(dir: &Path) -> bool {
    let Ok(info) = std::fs::read("/proc/self/mountinfo") else {
        return false;
    };
    info.split(|&b| b == b'\n')
        .filter_map(|line| line.split(|&b| b == b' ').nth(4))
        .any(|m| crate::config::unescape_mountinfo(m) == dir.as_os_str().as_bytes())
}

/// Checks made once inside: a local destination must be writable where
/// the handler writes it (`auto-ro` makes the jail's own mount read-only).
pub fn check_inside(cfg: &Config, jail: &Jail) -> Result<(), String> {
    if jail.pivot != PivotRoot::AutoRo {
        return Ok(());
    }
    if let Some(Destination::Local(d)) = &cfg.destination {
        let probe = if d.exists() {
            d.clone()
        } else {
            d.parent()
                .map_or_else(|| PathBuf::from("/"), Path::to_path_buf)
        };
        if let Ok(st) = nix::sys::statvfs::statvfs(&probe) {
            if st.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY) {
                return Err(format!(
                    "--pivot-root=auto-ro: the destination {} is read-only inside the jail; bind-mount it on itself under {} (so it is a mount of its own, writable) or use --pivot-root=auto",
                    path::display_os(&jail.outer(d)),
                    path::display_os(&jail.root)
                ));
            }
        }
    }
    Ok(())
}

/// What the keeper removes at the end: the pid file and the control socket,
/// each only while it is still the file the daemon made (device, inode).
#[derive(Clone, Debug, Default)]
pub struct Leftovers {
    pub pid_file: Option<(PathBuf, (u64, u64))>,
    pub socket: Option<(PathBuf, (u64, u64))>,
}

struct Keeper {
    pid: nix::unistd::Pid,
    pipe: OwnedFd,
}

static KEEPER: Mutex<Option<Keeper>> = Mutex::new(None);

/// Who the keeper runs as, and whether it keeps CAP_DAC_OVERRIDE: it does
/// when that user may not remove entries where the files lie.
fn keeper_identity(cfg: &Config, left: &Leftovers) -> Option<(Ident, bool)> {
    let start = privilege::current();
    let plan = privilege::Plan::new(cfg, start).ok()?;
    let target = plan.daemon?;
    let dirs = [
        left.pid_file.as_ref().map(|(p, _)| p),
        left.socket.as_ref().map(|(p, _)| p),
    ];
    let needs_override = dirs
        .into_iter()
        .flatten()
        .filter_map(|p| p.parent())
        .any(|d| !privilege::may_write_dir(d, target));
    Some((target, needs_override))
}

/// Forks the keeper (see the module docs). Root or not, single-threaded,
/// before the jail is entered and before the privileges are dropped.
///
/// `remove` is what the keeper calls at the end to remove the files (the
/// daemon's own removal, which checks device and inode first).
pub fn spawn_keeper(cfg: &Config, left: Leftovers, remove: fn(&Leftovers)) -> Result<(), Error> {
    if left.pid_file.is_none() && left.socket.is_none() {
        return Ok(());
    }
    let who = keeper_identity(cfg, &left);
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::Keeper(format!("--chroot: cannot make the keeper's pipe: {e}")))?;
    // SAFETY: single-threaded here (privileges are not dropped yet and no
    // thread was started); the child only makes plain syscalls and exits.
    match unsafe { nix::unistd::fork() } {
        Err(e) => Err(Error::Keeper(format!(
            "--chroot: cannot fork the keeper: {e}"
        ))),
        Ok(nix::unistd::ForkResult::Child) => {
            drop(write);
            keep(read.as_raw_fd(), left, who, remove)
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            drop(read);
            if let Ok(mut k) = KEEPER.lock() {
                *k = Some(Keeper {
                    pid: child,
                    pipe: write,
                });
            }
            Ok(())
        }
    }
}

/// At the daemon's end: lets the keeper remove the files and waits for it
/// (so that when livesync is gone, they are).
pub fn finish() {
    let k = KEEPER.lock().ok().and_then(|mut k| k.take());
    if let Some(k) = k {
        drop(k.pipe);
        let _ = nix::sys::wait::waitpid(k.pid, None);
    }
}

/// The keeper's life: outside the jail, holding nothing but the pipe.
fn keep(fd: RawFd, left: Leftovers, who: Option<(Ident, bool)>, remove: fn(&Leftovers)) -> ! {
    // SAFETY: only this process's own state is changed; fd numbers are ours.
    unsafe {
        libc::prctl(
            libc::PR_SET_NAME,
            c"livesync-keep".as_ptr() as libc::c_ulong,
            0,
            0,
            0,
        );
        // Stop signals (a terminal's ^C, systemd's TERM to the whole group)
        // are the daemon's business; the keeper ends when the daemon does.
        for sig in 1..=64 {
            if ![
                libc::SIGKILL,
                libc::SIGSTOP,
                libc::SIGCHLD,
                libc::SIGSEGV,
                libc::SIGBUS,
            ]
            .contains(&sig)
            {
                libc::signal(sig, libc::SIG_IGN);
            }
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        let keep_fd = 3;
        if fd != keep_fd {
            libc::dup2(fd, keep_fd);
        }
        if libc::syscall(libc::SYS_close_range, keep_fd + 1, u32::MAX, 0) != 0 {
            for other in keep_fd + 1..4096 {
                libc::close(other);
            }
        }
    }
    // SAFETY: fd 3 is the pipe's read end, ours alone now.
    let pipe = unsafe { OwnedFd::from_raw_fd(3) };
    if let Some((target, dac)) = who {
        let kept: CapsHashSet = if dac {
            [Capability::CAP_DAC_OVERRIDE].into_iter().collect()
        } else {
            CapsHashSet::new()
        };
        if let Err(e) = privilege::drop_to(target, &kept, false) {
            log::warn!("keeper: cannot drop privileges to {target}: {e}; it stays as it is");
        }
    } else {
        let _ = caps::clear(None, CapSet::Effective);
    }
    // SAFETY: plain prctl on ourselves.
    unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    let mut buf = [0u8; 64];
    loop {
        match nix::unistd::read(pipe.as_raw_fd(), &mut buf) {
            Ok(0) => break,
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
    }
    remove(&left);
    // SAFETY: ends this process without running the parent's destructors.
    unsafe { libc::_exit(0) }
}
