//! Confinement: namespaces (`--detach-network`, `--detach-ipc`,
//! `--detach-miscellanea`) and the seccomp allow-list (`--seccomp-filter`).
//!
//! This module owns the unshare(2) calls and the syscall allow-list of the
//! unprivileged daemon. It is called by `privilege.rs` at start, while the
//! process is single-threaded and still root: the namespaces that cover
//! handlers too before the helper is forked, the daemon-only ones after it,
//! the seccomp filter last, after the privilege drop. It must not be used
//! by anything that runs handlers itself: a seccomp filter is inherited
//! across execve, so it is only allowed with `--splitting=process` (the
//! helper, which has no filter, starts handlers).

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use std::collections::BTreeMap;
use std::io;

pub use crate::config::privileges::DetachNetwork;

fn unshare(flags: libc::c_int, what: &str) -> Result<(), String> {
    // SAFETY: plain syscall; the process is single-threaded here.
    if unsafe { libc::unshare(flags) } != 0 {
        return Err(format!(
            "{what}: unshare: {}; it needs root (CAP_SYS_ADMIN) and a kernel with namespaces",
            io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// The namespaces that cover the helper and the handlers too.
pub fn before_split(network: DetachNetwork, ipc: bool, misc: bool) -> Result<(), String> {
    if ipc {
        unshare(libc::CLONE_NEWIPC, "--detach-ipc")?;
    }
    if network == DetachNetwork::Everywhere {
        unshare(libc::CLONE_NEWNET, "--detach-network=everywhere")?;
    }
    if misc {
        // UTS (host name) and, where the kernel has it, the cgroup view.
        if unshare(
            libc::CLONE_NEWUTS | libc::CLONE_NEWCGROUP,
            "--detach-miscellanea",
        )
        .is_err()
        {
            unshare(libc::CLONE_NEWUTS, "--detach-miscellanea")?;
        }
    }
    Ok(())
}

/// The namespaces of the daemon alone (after the helper is forked).
pub fn daemon_only(network: DetachNetwork, split: bool) -> Result<(), String> {
    if network == DetachNetwork::NonPrivileged {
        if split {
            unshare(libc::CLONE_NEWNET, "--detach-network=non-privileged")?;
        } else {
            log::info!("--detach-network=non-privileged does nothing without --splitting=process");
        }
    }
    Ok(())
}

/// A mount namespace of our own whose mounts propagate nowhere (what is
/// mounted or unmounted in it stays in it). `what` names the option.
pub fn private_mount_namespace(what: &str) -> Result<(), String> {
    unshare(libc::CLONE_NEWNS, what)?;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("{what}: make the mounts private: {e}"))
}

/// The device nodes left under `/dev` by `--forbid-devices`: name, major,
/// minor (the kernel's fixed numbers for the memory devices).
const KEPT_DEVICES: [(&str, u64, u64); 4] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("random", 1, 8),
    ("urandom", 1, 9),
];

/// `--forbid-devices`: a mount namespace of our own whose `/dev` is a
/// small tmpfs with only null, zero, random and urandom (and the syslog
/// socket `/dev/log`, bind-mounted, when there is one). Every other device
/// (disks, /dev/mem, terminals, …) is gone for this process and its
/// children. Must run as root, before the drop.
pub fn forbid_devices() -> Result<(), String> {
    use nix::mount::{mount, MsFlags};
    use nix::sys::stat::{makedev, mknod, Mode, SFlag};
    let fail = |what: &str, e: nix::Error| format!("--forbid-devices: {what}: {e}");
    private_mount_namespace("--forbid-devices")?;
    let staging = nix::unistd::mkdtemp(&std::env::temp_dir().join("livesync-dev-XXXXXX"))
        .map_err(|e| fail("staging dir", e))?;
    let result = (|| -> Result<(), String> {
        mount(
            Some("tmpfs"),
            &staging,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some("mode=0755,size=64k"),
        )
        .map_err(|e| fail("tmpfs", e))?;
        for (name, major, minor) in KEPT_DEVICES {
            let p = staging.join(name);
            mknod(
                &p,
                SFlag::S_IFCHR,
                Mode::from_bits_truncate(0o666),
                makedev(major, minor),
            )
            .map_err(|e| fail(name, e))?;
            nix::sys::stat::fchmodat(
                None,
                &p,
                Mode::from_bits_truncate(0o666),
                nix::sys::stat::FchmodatFlags::NoFollowSymlink,
            )
            .map_err(|e| fail(name, e))?;
        }
        for (name, target) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ] {
            std::os::unix::fs::symlink(target, staging.join(name))
                .map_err(|e| format!("--forbid-devices: {name}: {e}"))?;
        }
        let log = std::path::Path::new("/dev/log");
        if std::fs::symlink_metadata(log).is_ok() {
            let at = staging.join("log");
            std::fs::File::create(&at).map_err(|e| format!("--forbid-devices: log: {e}"))?;
            mount(Some(log), &at, None::<&str>, MsFlags::MS_BIND, None::<&str>)
                .map_err(|e| fail("bind /dev/log", e))?;
        }
        mount(
            Some(&staging),
            "/dev",
            None::<&str>,
            MsFlags::MS_MOVE,
            None::<&str>,
        )
        .map_err(|e| fail("move the new /dev in place", e))
    })();
    // Empty once the tmpfs moved away (or never mounted); only ours.
    let _ = std::fs::remove_dir(&staging);
    result
}

/// What the unprivileged daemon may call (x86_64 and aarch64 names that
/// exist on the target; the rest are left out by `cfg`). Files: open,
/// stat, read and write, list, rename and remove (status, dump and list
/// files, the rules file on reload, the tree walk), flock (the private
/// dirs' locks, see `handler::tempdir`); inotify; poll; unix
/// sockets (control socket, helper, syslog); threads (clone with
/// CLONE_THREAD only, see [`filters`]); signals to process groups (the
/// helper is asked instead, but a stop still looks). Not: execve, fork,
/// ptrace, mount, setuid and friends, capset, module loading, bpf, ….
fn allowed() -> Vec<i64> {
    let mut v = vec![
        libc::SYS_read,
        libc::SYS_write,
        libc::SYS_readv,
        libc::SYS_writev,
        libc::SYS_pread64,
        libc::SYS_pwrite64,
        libc::SYS_openat,
        libc::SYS_close,
        libc::SYS_fstat,
        libc::SYS_newfstatat,
        libc::SYS_statx,
        libc::SYS_lseek,
        libc::SYS_getdents64,
        libc::SYS_readlinkat,
        libc::SYS_getcwd,
        libc::SYS_chdir,
        libc::SYS_fchdir,
        libc::SYS_faccessat,
        libc::SYS_faccessat2,
        libc::SYS_mkdirat,
        libc::SYS_unlinkat,
        libc::SYS_renameat,
        libc::SYS_renameat2,
        libc::SYS_fchmod,
        libc::SYS_fchmodat,
        libc::SYS_fsync,
        libc::SYS_flock,
        libc::SYS_fdatasync,
        libc::SYS_ftruncate,
        libc::SYS_fcntl,
        libc::SYS_ioctl,
        libc::SYS_dup,
        libc::SYS_dup3,
        libc::SYS_pipe2,
        libc::SYS_inotify_init1,
        libc::SYS_inotify_add_watch,
        libc::SYS_inotify_rm_watch,
        libc::SYS_ppoll,
        libc::SYS_pselect6,
        libc::SYS_epoll_create1,
        libc::SYS_epoll_ctl,
        libc::SYS_epoll_pwait,
        libc::SYS_socket,
        libc::SYS_socketpair,
        libc::SYS_connect,
        libc::SYS_accept4,
        libc::SYS_sendto,
        libc::SYS_recvfrom,
        libc::SYS_sendmsg,
        libc::SYS_recvmsg,
        libc::SYS_getsockopt,
        libc::SYS_setsockopt,
        libc::SYS_getsockname,
        libc::SYS_getpeername,
        libc::SYS_shutdown,
        libc::SYS_mmap,
        libc::SYS_munmap,
        libc::SYS_mremap,
        libc::SYS_mprotect,
        libc::SYS_madvise,
        libc::SYS_brk,
        libc::SYS_futex,
        libc::SYS_set_robust_list,
        libc::SYS_get_robust_list,
        libc::SYS_rseq,
        libc::SYS_set_tid_address,
        libc::SYS_sched_yield,
        libc::SYS_sched_getaffinity,
        libc::SYS_getrandom,
        libc::SYS_clock_gettime,
        libc::SYS_clock_getres,
        libc::SYS_clock_nanosleep,
        libc::SYS_nanosleep,
        libc::SYS_gettimeofday,
        libc::SYS_getpid,
        libc::SYS_gettid,
        libc::SYS_getppid,
        libc::SYS_getuid,
        libc::SYS_geteuid,
        libc::SYS_getgid,
        libc::SYS_getegid,
        libc::SYS_getresuid,
        libc::SYS_getresgid,
        libc::SYS_getgroups,
        libc::SYS_uname,
        libc::SYS_prlimit64,
        libc::SYS_getrlimit,
        libc::SYS_rt_sigaction,
        libc::SYS_rt_sigprocmask,
        libc::SYS_rt_sigreturn,
        libc::SYS_sigaltstack,
        libc::SYS_kill,
        libc::SYS_tgkill,
        libc::SYS_tkill,
        libc::SYS_prctl,
        libc::SYS_clone3,
        libc::SYS_exit,
        libc::SYS_exit_group,
        libc::SYS_restart_syscall,
    ];
    #[cfg(target_arch = "x86_64")]
    v.extend([
        libc::SYS_open,
        libc::SYS_stat,
        libc::SYS_lstat,
        libc::SYS_access,
        libc::SYS_readlink,
        libc::SYS_mkdir,
        libc::SYS_rmdir,
        libc::SYS_unlink,
        libc::SYS_rename,
        libc::SYS_chmod,
        libc::SYS_poll,
        libc::SYS_select,
        libc::SYS_dup2,
        libc::SYS_pipe,
        libc::SYS_epoll_wait,
        libc::SYS_arch_prctl,
        libc::SYS_time,
    ]);
    v
}

/// The two filters: the allow-list (anything else fails with EPERM; clone
/// only with CLONE_THREAD, so no new process), and one that answers clone3
/// with ENOSYS, so that the C library falls back to the clone it may
/// inspect. The kernel applies the stricter answer of the two.
pub fn filters() -> Result<Vec<BpfProgram>, String> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| format!("--seccomp-filter: {e}"))?;
    let err = |e: seccompiler::BackendError| format!("--seccomp-filter: {e}");
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        allowed().into_iter().map(|s| (s, Vec::new())).collect();
    let thread_only = SeccompCondition::new(
        0,
        SeccompCmpArgLen::Qword,
        SeccompCmpOp::MaskedEq(libc::CLONE_THREAD as u64),
        libc::CLONE_THREAD as u64,
    )
    .map_err(err)?;
    rules.insert(
        libc::SYS_clone,
        vec![SeccompRule::new(vec![thread_only]).map_err(err)?],
    );
    let allow = SeccompFilter::new(
        rules,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        arch,
    )
    .map_err(err)?;
    let no_clone3 = SeccompFilter::new(
        [(libc::SYS_clone3, Vec::new())].into_iter().collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .map_err(err)?;
    let compile = |f: SeccompFilter| -> Result<BpfProgram, String> {
        f.try_into()
            .map_err(|e: seccompiler::BackendError| format!("--seccomp-filter: {e}"))
    };
    // The allow-list has no `seccomp` in it: it goes last.
    Ok(vec![compile(no_clone3)?, compile(allow)?])
}

/// Installs the filters on this thread (and so on every thread it starts
/// later). Needs no-new-privs, which the daemon has set by then.
pub fn apply_seccomp() -> Result<(), String> {
    for f in filters()? {
        seccompiler::apply_filter(&f).map_err(|e| format!("--seccomp-filter: {e}"))?;
    }
    log::info!("--seccomp-filter: the daemon is confined to its syscall allow-list");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_compile_and_leave_out_what_must_never_run() {
        let f = filters().expect("filters");
        assert_eq!(f.len(), 2);
        let allowed = allowed();
        for bad in [
            libc::SYS_execve,
            libc::SYS_execveat,
            libc::SYS_ptrace,
            libc::SYS_mount,
            libc::SYS_setuid,
            libc::SYS_setresuid,
            libc::SYS_capset,
            libc::SYS_init_module,
            libc::SYS_bpf,
        ] {
            assert!(!allowed.contains(&bad), "syscall {bad} is allowed");
        }
    }

    #[test]
    fn a_filtered_thread_cannot_fork_or_exec_but_can_work() {
        // In a thread of its own: the filter stays with that thread.
        let r = std::thread::spawn(|| {
            // SAFETY: plain prctl on this thread.
            unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
            apply_seccomp().expect("apply");
            let t = std::env::temp_dir().join(format!("livesync-seccomp-{}", std::process::id()));
            std::fs::write(&t, b"ok").expect("files still work");
            std::fs::remove_file(&t).expect("rm");
            let spawned = std::process::Command::new("/bin/true").status();
            let inner = std::thread::spawn(|| 7).join().expect("threads still work");
            (spawned.is_err(), inner)
        })
        .join()
        .expect("join");
        assert_eq!(r, (true, 7), "no child process, but threads");
    }
}
