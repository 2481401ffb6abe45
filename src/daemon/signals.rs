//! Signals and control requests: the flags the signal handlers set (and
//! the self-pipe that wakes the loop), the poll(2) wait itself, and
//! [`Control`], the one entry point signals and the control socket share.

use super::*;

/// Signals we act on: each sets its flag and wakes the loop.
pub(super) struct Signals {
    /// TERM or INT.
    pub(super) stop: Arc<AtomicBool>,
    /// QUIT.
    pub(super) quit: Arc<AtomicBool>,
    /// HUP.
    pub(super) reload: Arc<AtomicBool>,
    /// USR2 (clsync's signal 12).
    pub(super) resync: Arc<AtomicBool>,
    /// Signal 29 (SIGIO): dump the state.
    pub(super) dump: Arc<AtomicBool>,
    /// `--custom-signals`: a flag per signal, and the config block to load.
    pub(super) custom: Vec<(i32, Arc<AtomicBool>, String)>,
    pub(super) wake: UnixStream,
}

impl Signals {
    pub(super) fn install(custom: &[(i32, String)]) -> Result<Signals, DaemonError> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGIO, SIGQUIT, SIGTERM, SIGUSR2};
        let (wake, tx) = UnixStream::pair().map_err(io_err("cannot create the signal socket"))?;
        wake.set_nonblocking(true)
            .map_err(io_err("signal socket"))?;
        let s = Signals {
            stop: Arc::new(AtomicBool::new(false)),
            quit: Arc::new(AtomicBool::new(false)),
            reload: Arc::new(AtomicBool::new(false)),
            resync: Arc::new(AtomicBool::new(false)),
            dump: Arc::new(AtomicBool::new(false)),
            custom: custom
                .iter()
                .map(|(sig, block)| (*sig, Arc::new(AtomicBool::new(false)), block.clone()))
                .collect(),
            wake,
        };
        let builtin = [
            (SIGTERM, &s.stop),
            (SIGINT, &s.stop),
            (SIGQUIT, &s.quit),
            (SIGHUP, &s.reload),
            (SIGUSR2, &s.resync),
            (SIGIO, &s.dump),
        ];
        let custom = s.custom.iter().map(|(sig, flag, _)| (*sig, flag));
        for (sig, flag) in builtin.into_iter().chain(custom) {
            signal_hook::flag::register(sig, Arc::clone(flag))
                .map_err(io_err("cannot install a signal handler"))?;
            let tx = tx.try_clone().map_err(io_err("signal socket"))?;
            signal_hook::low_level::pipe::register(sig, tx)
                .map_err(io_err("cannot install a signal handler"))?;
        }
        Ok(s)
    }

    pub(super) fn drain(&mut self) {
        let mut sink = [0u8; 64];
        while matches!(self.wake.read(&mut sink), Ok(n) if n > 0) {}
    }
}

/// Waits until one of `fds` is readable or `timeout` passes.
pub(super) fn wait_readable(fds: &[RawFd], timeout: Option<Duration>) -> io::Result<Vec<bool>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms: libc::c_int = match timeout {
        None => -1,
        // Round up so we never wake a hair before a batch is due.
        Some(t) => t.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int,
    };
    // SAFETY: `pfds` is a valid, initialised array of `pfds.len()` pollfd
    // structs that lives across the call.
    let rc = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(vec![false; fds.len()]);
        }
        return Err(e);
    }
    Ok(pfds.iter().map(|p| p.revents != 0).collect())
}

/// A request from outside the signal path: the control socket
/// (src/daemon/socket.rs) maps its commands onto these and calls
/// [`Daemon::control`]; signals go through the same function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Sync the whole tree now (SIGUSR2).
    Resync,
    /// Hold every sync (like the standby file) until `Resume`.
    Pause,
    Resume,
    /// Stop running handlers, sync what is pending, exit hook, exit
    /// (SIGTERM/SIGINT); a second one exits at once.
    Stop,
    /// Let the running handler finish, sync what is pending, pre-exit hook,
    /// (with --sync-on-quit one more sync), exit hook, exit (SIGQUIT).
    Quit,
    /// Exit at once: kill running handlers, no syncs, no hooks.
    Die,
}

impl Daemon {
    /// Acts on a request (from a signal or the control socket). Returns
    /// true when livesync must exit at once.
    pub(super) fn control(&mut self, c: Control) -> bool {
        let now = Instant::now();
        match c {
            Control::Resync => {
                ::log::info!("full resync requested");
                self.queue.push(
                    now,
                    Change::Subtree {
                        path: Vec::new(),
                        instant: true,
                    },
                );
            }
            Control::Pause => {
                ::log::info!("paused: holding syncs until resumed");
                self.paused = true;
            }
            Control::Resume => {
                ::log::info!("resumed");
                self.paused = false;
            }
            Control::Stop => {
                if self.ending.as_ref().is_some_and(|e| e.hard) {
                    // What runs now is dropped too.
                    ::log::warn!(
                        "second stop signal: exiting now, {} pending op(s) not synced",
                        self.queue.len() + self.ops_in_flight
                    );
                    return self.control(Control::Die);
                }
                ::log::info!(
                    "stop signal: stopping running handlers, syncing what is pending, then exiting (send it again to exit at once)"
                );
                if self.worker.busy && privilege::signal_handlers(libc::SIGTERM) > 0 {
                    self.killed = true;
                    self.kill_deadline = Some(now + KILL_GRACE);
                }
                // The last try runs now, not after a retry's backoff (up
                // to a minute): one stop signal must end livesync promptly.
                self.retry_at = None;
                self.ending = Some(Ending {
                    steps: [Step::Sync, Step::ExitHook].into(),
                    hard: true,
                    hook_started: false,
                });
            }
            Control::Quit => {
                if self.ending.is_some() {
                    ::log::info!("quit requested, but already on the way out");
                    return false;
                }
                ::log::info!(
                    "quit signal: finishing the running sync, syncing what is pending, then exiting"
                );
                let mut steps: VecDeque<Step> = [Step::Sync, Step::PreExit].into();
                if self.cfg.sync_on_quit {
                    steps.push_back(Step::Sync);
                }
                steps.push_back(Step::ExitHook);
                self.begin_ending(steps);
            }
            Control::Die => {
                privilege::signal_handlers(libc::SIGKILL);
                return true;
            }
        }
        false
    }
}
