//! systemd's notification protocol (`sd_notify`), written by hand: when the
//! service manager sets `NOTIFY_SOCKET`, livesync sends `READY=1` once its
//! watches are in place, `STATUS=…` when its state changes, `WATCHDOG=1` at
//! half the `WATCHDOG_USEC` interval (only when `WATCHDOG_PID` is unset or
//! names us), and `STOPPING=1` on the way out. Each message is one datagram
//! on a unix socket, `KEY=VALUE` lines; an address starting with `@` is in
//! the abstract namespace. This module only formats and sends; the event
//! loop decides when. It reads the environment in [`Notifier::from_env`]
//! and must not change it (the daemon removes the variables, so that
//! handlers and hooks do not notify in our name).
//!
//! Sending never blocks the loop (the socket is non-blocking) and never
//! fails the daemon: a lost notification is logged at debug level.
//!
//! Why not the `sd-notify` crate: it reads `NOTIFY_SOCKET` and sends to the
//! path on every call, which fails inside a `--chroot`/`--pivot-root` jail
//! where the path does not exist; we connect once at start and keep the
//! socket. The protocol is a datagram of `KEY=VALUE` lines, small enough
//! to own (see also the syslog client in `log.rs`).

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// The environment variables of the protocol.
pub const ENV_SOCKET: &str = "NOTIFY_SOCKET";
pub const ENV_WATCHDOG_USEC: &str = "WATCHDOG_USEC";
pub const ENV_WATCHDOG_PID: &str = "WATCHDOG_PID";

/// Why `NOTIFY_SOCKET`/`WATCHDOG_USEC` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("NOTIFY_SOCKET={0}: not an absolute path or an @abstract name; notifications are off")]
    BadAddress(String),
    #[error("NOTIFY_SOCKET={addr}: {source}; notifications are off")]
    Socket { addr: String, source: io::Error },
}

/// A connection to the service manager's notification socket.
#[derive(Debug)]
pub struct Notifier {
    sock: UnixDatagram,
    addr: SocketAddr,
    /// Connected at start, so that a path socket is still reached from
    /// inside a `--chroot` jail, where its path means nothing.
    connected: bool,
    shown: String,
    /// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`.
    watchdog: Option<Duration>,
}

/// Half of a `WATCHDOG_USEC` value, when it is a positive number and
/// `WATCHDOG_PID` (if set) is `pid`.
pub fn watchdog_interval(
    usec: Option<&OsStr>,
    wd_pid: Option<&OsStr>,
    pid: u32,
) -> Option<Duration> {
    let usec: u64 = usec?.to_str()?.trim().parse().ok().filter(|&u| u > 0)?;
    if let Some(p) = wd_pid {
        if p.to_str()?.trim().parse::<u32>().ok()? != pid {
            return None;
        }
    }
    Some(Duration::from_micros(usec / 2))
}

fn address(raw: &OsStr) -> Result<SocketAddr, NotifyError> {
    let bytes = raw.as_bytes();
    let bad = || NotifyError::BadAddress(crate::path::display(bytes));
    match bytes.first() {
        Some(b'/') => SocketAddr::from_pathname(std::path::Path::new(raw)).map_err(|_| bad()),
        Some(b'@') => {
            #[cfg(any(target_os = "linux", target_os = "android"))]
            {
                #[cfg(target_os = "android")]
                use std::os::android::net::SocketAddrExt;
                #[cfg(target_os = "linux")]
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(&bytes[1..]).map_err(|_| bad())
            }
            #[cfg(not(any(target_os = "linux", target_os = "android")))]
            Err(bad())
        }
        _ => Err(bad()),
    }
}

impl Notifier {
    /// A notifier for socket address `socket` (a path, or `@name`), with
    /// the watchdog every `watchdog`.
    pub fn new(socket: &OsStr, watchdog: Option<Duration>) -> Result<Notifier, NotifyError> {
        let shown = crate::path::display(socket.as_bytes());
        let addr = address(socket)?;
        let sock = UnixDatagram::unbound()
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .map_err(|source| NotifyError::Socket {
                addr: shown.clone(),
                source,
            })?;
        let connected = sock.connect_addr(&addr).is_ok();
        Ok(Notifier {
            sock,
            addr,
            connected,
            shown,
            watchdog,
        })
    }

    /// The notifier the environment asks for: None when `NOTIFY_SOCKET` is
    /// unset or empty (not under systemd's `Type=notify`).
    pub fn from_env() -> Result<Option<Notifier>, NotifyError> {
        Self::from_vars(
            std::env::var_os(ENV_SOCKET),
            std::env::var_os(ENV_WATCHDOG_USEC),
            std::env::var_os(ENV_WATCHDOG_PID),
            std::process::id(),
        )
    }

    /// [`Notifier::from_env`] with the variables given.
    pub fn from_vars(
        socket: Option<OsString>,
        usec: Option<OsString>,
        wd_pid: Option<OsString>,
        pid: u32,
    ) -> Result<Option<Notifier>, NotifyError> {
        let Some(socket) = socket.filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        let wd = watchdog_interval(usec.as_deref(), wd_pid.as_deref(), pid);
        Notifier::new(&socket, wd).map(Some)
    }

    /// How often `WATCHDOG=1` must be sent, if the watchdog is on.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Sends one message (`KEY=VALUE` lines). Errors are logged, not
    /// returned: notifications are best effort.
    pub fn send(&self, msg: &str) {
        let sent = if self.connected {
            self.sock.send(msg.as_bytes())
        } else {
            Err(io::ErrorKind::NotConnected.into())
        };
        if sent.is_ok() {
            return;
        }
        // Not connected yet (the manager's socket came later) or the
        // connection broke: by address.
        if let Err(e) = self.sock.send_to_addr(msg.as_bytes(), &self.addr) {
            ::log::debug!("sd_notify to {}: {e} (message {msg:?})", self.shown);
        }
    }

    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={}", one_line(status)));
    }

    pub fn watchdog_ping(&self) {
        self.send("WATCHDOG=1");
    }

    pub fn stopping(&self, status: &str) {
        self.send(&format!("STOPPING=1\nSTATUS={}", one_line(status)));
    }
}

/// A status text cannot hold a line break: it would start a new variable.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recv(s: &UnixDatagram) -> String {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 4096];
        let n = s.recv(&mut buf).expect("a datagram");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn messages_reach_a_path_socket() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("notify");
        let server = UnixDatagram::bind(&p).unwrap();
        let n = Notifier::from_vars(Some(p.clone().into()), None, None, 1)
            .unwrap()
            .expect("set");
        assert_eq!(n.watchdog(), None);
        n.ready("running\nx");
        assert_eq!(recv(&server), "READY=1\nSTATUS=running x");
        n.status("hold on");
        assert_eq!(recv(&server), "STATUS=hold on");
        n.watchdog_ping();
        assert_eq!(recv(&server), "WATCHDOG=1");
        n.stopping("exiting");
        assert_eq!(recv(&server), "STOPPING=1\nSTATUS=exiting");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn messages_reach_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!(
            "livesync-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        );
        let server =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        let n = Notifier::new(OsStr::new(&format!("@{name}")), None).unwrap();
        n.ready("running");
        assert_eq!(recv(&server), "READY=1\nSTATUS=running");
    }

    #[test]
    fn unset_or_empty_socket_means_no_notifier() {
        assert!(Notifier::from_vars(None, None, None, 1).unwrap().is_none());
        assert!(Notifier::from_vars(Some("".into()), None, None, 1)
            .unwrap()
            .is_none());
        let e = Notifier::from_vars(Some("relative".into()), None, None, 1).unwrap_err();
        assert!(e.to_string().contains("NOTIFY_SOCKET=relative"), "{e}");
    }

    #[test]
    fn watchdog_is_half_the_interval_and_only_for_our_pid() {
        let v = |s: &str| Some(OsString::from(s));
        let wd = |u: Option<OsString>, p: Option<OsString>| {
            watchdog_interval(u.as_deref(), p.as_deref(), 42)
        };
        assert_eq!(wd(v("3000000"), None), Some(Duration::from_millis(1500)));
        assert_eq!(wd(v("3000000"), v("42")), Some(Duration::from_millis(1500)));
        assert_eq!(wd(v("3000000"), v("43")), None);
        assert_eq!(wd(v("0"), None), None);
        assert_eq!(wd(v("x"), None), None);
        assert_eq!(wd(None, v("42")), None);
    }

    #[test]
    fn a_missing_listener_is_not_an_error() {
        let t = tempfile::tempdir().unwrap();
        let n = Notifier::new(t.path().join("gone").as_os_str(), None).unwrap();
        n.ready("running"); // logged at debug, no panic
    }
}
