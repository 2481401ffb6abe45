//! `-b`: becoming a real daemon.
//!
//! [`daemonize`] forks; the parent waits until the child reports that it is
//! up (pid file written, watches set) and then exits 0, or, if the child
//! ends first, exits with the child's exit code (1 if it had none), so
//! `livesync -b` returns only once the daemon runs (what init systems expect
//! of a forking service). The child starts a new session and changes to `/`;
//! it keeps stdout and stderr until it is up, so that a startup error still
//! reaches the terminal, and then points stdin, stdout and stderr at
//! `/dev/null`. It must be called while the process has a single thread
//! (before the worker is started).

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The child's end of the "I am up" pipe.
pub struct Ready(Option<std::fs::File>);

impl Ready {
    /// A token for a process that did not fork: notifying does nothing.
    pub fn none() -> Ready {
        Ready(None)
    }

    /// Whether this process is the forked daemon.
    pub fn forked(&self) -> bool {
        self.0.is_some()
    }

    /// Detaches from the terminal's stdio and tells the waiting parent
    /// that startup succeeded.
    pub fn notify(&mut self) {
        if let Some(mut f) = self.0.take() {
            super::log::detached();
            if let Err(e) = null_stdio() {
                log::warn!("{e}");
            }
            let _ = f.write_all(b"1");
        }
    }
}

fn last_err(what: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Points stdin, stdout and stderr at `/dev/null`.
fn null_stdio() -> io::Result<()> {
    // SAFETY: plain syscalls on the standard descriptors.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        if null < 0 {
            return Err(last_err("open /dev/null"));
        }
        let mut result = Ok(());
        for fd in 0..3 {
            if fd != null && libc::dup2(null, fd) < 0 {
                result = Err(last_err("redirect stdio to /dev/null"));
            }
        }
        if null > 2 {
            libc::close(null);
        }
        result
    }
}

/// Forks into the background (see the module docs). Returns in the child
/// only; the parent exits.
pub fn daemonize() -> io::Result<Ready> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid array of two ints.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(last_err("pipe"));
    }
    // SAFETY: pipe returned two fresh descriptors that we now own.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // Close-on-exec (pipe2 is not everywhere; single-threaded here, so no
    // child can be forked in between).
    for fd in [&rd, &wr] {
        // SAFETY: fcntl on a descriptor we own.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
            return Err(last_err("fcntl"));
        }
    }
    // SAFETY: the process is single-threaded here (documented requirement),
    // so the child may go on running Rust code.
    match unsafe { libc::fork() } {
        -1 => Err(last_err("fork")),
        0 => {
            drop(rd);
            // SAFETY: plain syscalls in the child.
            unsafe {
                if libc::setsid() < 0 {
                    return Err(last_err("setsid"));
                }
                if libc::chdir(c"/".as_ptr()) != 0 {
                    return Err(last_err("chdir /"));
                }
            }
            Ok(Ready(Some(std::fs::File::from(wr))))
        }
        child => {
            drop(wr);
            let mut f = std::fs::File::from(rd);
            let mut b = [0u8; 1];
            let up = loop {
                match f.read(&mut b) {
                    Ok(n) => break n == 1,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break false,
                }
            };
            if up {
                log::info!("running in the background as pid {child}");
                std::process::exit(0);
            }
            // The child ended during startup: pass its exit status on.
            let mut status = 0;
            // SAFETY: waiting for our own child.
            let code = unsafe {
                if libc::waitpid(child, &mut status, 0) == child && libc::WIFEXITED(status) {
                    libc::WEXITSTATUS(status)
                } else {
                    1
                }
            };
            std::process::exit(if code == 0 { 1 } else { code });
        }
    }
}
