//! The control socket (`--socket PATH`): a unix stream socket on which local
//! clients (`livesync ctl`, `socat`, clsync-style scripts) ask the running
//! daemon questions and give it orders. This module owns the socket file, the
//! connected clients, the line protocol and the `status` JSON; it never blocks
//! and never acts on an order itself: [`ControlSocket::service`] answers
//! queries from a [`StatusReport`] snapshot and hands every order back to the event
//! loop as a [`Command`]. It touches no process-global state (no umask, no
//! signal dispositions): the socket is created in a private 0700 directory,
//! given its owner and mode there, and only then linked to its public path.
//!
//! # Protocol
//!
//! UTF-8 text, one command per line (`\n`, an optional `\r` before it is
//! ignored), one reply line per command, in order. A line may be at most
//! [`MAX_LINE`] bytes; a longer one gets an `error` reply and the connection
//! is closed. A client may send several commands on one connection. Replies
//! start with `ok` or `error`, except `status`, which replies with one line
//! holding a JSON object, and `metrics`, the one multi-line reply, whose last
//! line is `# EOF`.
//!
//! | command           | reply                                                         |
//! |-------------------|---------------------------------------------------------------|
//! | `version`         | `ok livesync VERSION`                                         |
//! | `info`            | `ok livesync VERSION pid N label "…" state "…" …` (one line)  |
//! | `status`          | `{"state":"running","pid":…,"queue":{…},…}` (see [`StatusReport::to_json`]) |
//! | `metrics`         | Prometheus text (several lines, see `metrics.rs`), then a `# EOF` line |
//! | `help`            | `ok commands: …`                                              |
//! | `resync`          | `ok resync requested`: a full rescan and sync of the tree     |
//! | `pause`           | `ok pause requested`: stop starting syncs, keep collecting    |
//! | `resume`          | `ok resume requested`                                         |
//! | `dump`            | `ok dump requested`: the daemon writes its state (clsync's signal 29) |
//! | `set KEY VALUE`   | `ok set KEY` for a key the daemon allows, else `error set KEY: not supported` |
//! | `quit`            | `ok quit requested`: sync what is pending, then exit          |
//! | `die`             | `ok die requested`: exit at once, pending changes unsynced    |
//!
//! An order's `ok` means "accepted", not "done": the loop acts on it after
//! [`ControlSocket::service`] returns. Anything else gets
//! `error unknown command "…"; try help`.
//!
//! Only peers whose uid (from the kernel, `SO_PEERCRED`) is allowed may talk:
//! by default root and the daemon's own effective uid. Others get one
//! `error permission denied …` line and are disconnected. A client must
//! finish each command line within [`CLIENT_IDLE`] of connecting or of its
//! previous command; one that does not gets `error idle …` and is
//! disconnected, so silent clients cannot hold their places. At most
//! [`MAX_CLIENTS`] clients are connected at once; when one more comes, the
//! one that has waited longest without a command gets `error too many
//! clients …` and makes room: a new client always gets in. A client that
//! does not read its replies until the kernel's socket buffer fills is
//! dropped rather than waited for. Refusals are logged at most once per
//! [`REFUSAL_LOG_EVERY`] at warn level (with how many were not), the rest
//! at debug level.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The mode of the socket file unless the user gives `--socket-mod`.
pub const DEFAULT_MODE: u32 = 0o600;
/// Longest command line a client may send, without its newline.
pub const MAX_LINE: usize = 4096;
/// Most clients connected at once.
pub const MAX_CLIENTS: usize = 16;
/// How long a client may take to finish a command line, from its
/// connection or its previous command.
pub const CLIENT_IDLE: Duration = Duration::from_secs(10);
/// At most one refusal line at warn level per this long.
pub const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(60);
/// Most bytes read from one client in one call of `service`, so that one
/// flooding client cannot hold the loop (the fd stays readable; the next
/// turn reads on).
const MAX_READ_PER_SERVICE: usize = 64 * 1024;
/// Most connections accepted in one call of `service`.
const MAX_ACCEPTS_PER_SERVICE: usize = 64;
/// Attempts at a fresh private directory name before giving up.
const TEMP_DIR_ATTEMPTS: u32 = 64;
/// Length of the private directory's name, `.ls` and eight hex digits.
const TEMP_NAME_LEN: usize = 11;

/// Why the control socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("control socket {path}: a file that is not a socket is in the way; remove it or choose another --socket path")]
    NotASocket { path: String },
    #[error("control socket {path}: not a file path; give --socket a path such as /run/livesync/NAME.sock")]
    NoFileName { path: String },
    #[error("control socket {path}: another process is listening on it; stop that livesync or choose another --socket path")]
    InUse { path: String },
    #[error("control socket {path}: the path is {len} bytes, longer than a unix socket address allows (at most {max} here); choose a shorter --socket path")]
    TooLong {
        path: String,
        len: usize,
        max: usize,
    },
    #[error("control socket {path}: {what}: {source}")]
    Io {
        path: String,
        what: &'static str,
        source: io::Error,
    },
}

fn disp(p: &Path) -> String {
    crate::path::display_os(p)
}

fn io_err(p: &Path, what: &'static str) -> impl FnOnce(io::Error) -> SocketError {
    let path = disp(p);
    move |source| SocketError::Io { path, what, source }
}

/// The outcome of the last finished sync, for `status`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LastSync {
    /// When it finished, in milliseconds since the Unix epoch.
    pub finished_unix_ms: u64,
    pub duration_ms: u64,
    /// The handler's exit code, when it ran a child.
    pub exit_code: Option<i32>,
    pub ok: bool,
}

/// A snapshot of the daemon, taken by the loop when a client asks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatusReport {
    /// clsync's words: `starting`, `initsync`, `running`, `synchandler error`,
    /// `hold on`, `rehashing`, `preexit`, `terminating`, `exiting`.
    pub state: String,
    /// Pending operations per lane.
    pub queue: Vec<(String, usize)>,
    /// Age of the oldest pending change, if any is pending.
    pub oldest_pending_age_ms: Option<u64>,
    pub last_sync: Option<LastSync>,
    /// `events`, `batches`, `paths_synced`, `failures`, `retries`, `rescans`;
    /// also gauges: `skipped_paths` (source paths skipped as unreadable),
    /// `failed_paths` (paths that failed on their own, waiting for their
    /// retries), `pending`, `iterations`, `running` (handler runs or hooks
    /// going on now) and `threads` (worker threads, `-p`/`--threads`).
    pub counters: Vec<(String, u64)>,
    pub watch_dir: String,
    pub destination: String,
    pub label: String,
    pub pid: u32,
    pub version: String,
}

impl StatusReport {
    /// The one-line JSON object `status` replies with:
    ///
    /// `{"state":S,"pid":N,"version":S,"label":S,"watch_dir":S,"destination":S,`
    /// `"queue":{LANE:N,…},"queue_total":N,"oldest_pending_age_ms":N|null,`
    /// `"last_sync":{"finished_unix_ms":N,"duration_ms":N,"exit_code":N|null,"ok":B}|null,`
    /// `"counters":{NAME:N,…}}`
    pub fn to_json(&self) -> String {
        let mut o = String::with_capacity(512);
        o.push_str("{\"state\":");
        json_str(&mut o, &self.state);
        let _ = write!(o, ",\"pid\":{},\"version\":", self.pid);
        json_str(&mut o, &self.version);
        o.push_str(",\"label\":");
        json_str(&mut o, &self.label);
        o.push_str(",\"watch_dir\":");
        json_str(&mut o, &self.watch_dir);
        o.push_str(",\"destination\":");
        json_str(&mut o, &self.destination);
        o.push_str(",\"queue\":{");
        for (i, (lane, n)) in self.queue.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            json_str(&mut o, lane);
            let _ = write!(o, ":{n}");
        }
        let total: usize = self.queue.iter().map(|(_, n)| n).sum();
        let _ = write!(o, "}},\"queue_total\":{total},\"oldest_pending_age_ms\":");
        match self.oldest_pending_age_ms {
            Some(ms) => {
                let _ = write!(o, "{ms}");
            }
            None => o.push_str("null"),
        }
        o.push_str(",\"last_sync\":");
        match &self.last_sync {
            Some(l) => {
                let _ = write!(
                    o,
                    "{{\"finished_unix_ms\":{},\"duration_ms\":{},\"exit_code\":",
                    l.finished_unix_ms, l.duration_ms
                );
                match l.exit_code {
                    Some(c) => {
                        let _ = write!(o, "{c}");
                    }
                    None => o.push_str("null"),
                }
                let _ = write!(o, ",\"ok\":{}}}", l.ok);
            }
            None => o.push_str("null"),
        }
        o.push_str(",\"counters\":{");
        for (i, (name, n)) in self.counters.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            json_str(&mut o, name);
            let _ = write!(o, ":{n}");
        }
        o.push_str("}}");
        o
    }

    /// The single line `info` replies with (after `ok `).
    fn info_line(&self) -> String {
        let mut o = format!("livesync {} pid {} label ", self.version, self.pid);
        json_str(&mut o, &self.label);
        o.push_str(" state ");
        json_str(&mut o, &self.state);
        o.push_str(" watch ");
        json_str(&mut o, &self.watch_dir);
        o.push_str(" destination ");
        json_str(&mut o, &self.destination);
        let total: usize = self.queue.iter().map(|(_, n)| n).sum();
        let _ = write!(o, " queued {total}");
        o
    }
}

/// Appends `s` as a JSON string literal: quotes, backslashes and every
/// control character escaped, so the result is one line whatever `s` holds.
pub fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            // The rest of C0, DEL, and the two characters JavaScript treats
            // as line ends.
            c if (c as u32) < 0x20 || c == '\u{7f}' || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// An order for the event loop, returned by [`ControlSocket::service`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Rescan the whole tree and sync it.
    Resync,
    /// Stop starting syncs (keep collecting changes).
    Pause,
    /// Start syncing again after `Pause`.
    Resume,
    /// Exit at once.
    Die,
    /// Sync what is pending, then exit.
    Quit,
    /// Write the daemon's state out (clsync's dump).
    Dump,
    /// Change a setting at run time; only keys allowed with
    /// [`ControlSocket::allow_set`] reach the loop.
    Set(String, String),
}

/// One parsed command line.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    Version,
    Info,
    Status,
    /// Prometheus text, ended by `# EOF`.
    Metrics,
    Help,
    Order(Command),
}

const HELP: &str =
    "ok commands: version info status metrics help resync pause resume dump \"set KEY VALUE\" quit die";

/// Parses one line (without its newline) into a request, or the error reply.
fn parse(line: &[u8]) -> Result<Request, String> {
    let Ok(line) = std::str::from_utf8(line) else {
        return Err("error the command is not valid UTF-8".into());
    };
    let line = line.trim();
    let (word, rest) = match line.split_once(char::is_whitespace) {
        Some((w, r)) => (w, r.trim_start()),
        None => (line, ""),
    };
    if word.is_empty() {
        return Err("error empty command; try help".into());
    }
    if word == "set" {
        let (key, value) = match rest.split_once(char::is_whitespace) {
            Some((k, v)) => (k, v.trim_start()),
            None => (rest, ""),
        };
        if key.is_empty() || value.is_empty() {
            return Err("error usage: set KEY VALUE".into());
        }
        return Ok(Request::Order(Command::Set(key.into(), value.into())));
    }
    let req = match word {
        "version" => Request::Version,
        "info" => Request::Info,
        "status" => Request::Status,
        "metrics" => Request::Metrics,
        "help" => Request::Help,
        "resync" => Request::Order(Command::Resync),
        "pause" => Request::Order(Command::Pause),
        "resume" => Request::Order(Command::Resume),
        "dump" => Request::Order(Command::Dump),
        "quit" => Request::Order(Command::Quit),
        "die" => Request::Order(Command::Die),
        _ => {
            let mut e = String::from("error unknown command ");
            json_str(&mut e, word);
            e.push_str("; try help");
            return Err(e);
        }
    };
    if !rest.is_empty() {
        return Err(format!("error {word} takes no arguments"));
    }
    Ok(req)
}

/// The uid of the process at the other end of `stream`, from the kernel.
pub fn peer_uid(stream: &UnixStream) -> io::Result<u32> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let mut cred = libc::ucred {
            pid: 0,
            uid: 0,
            gid: 0,
        };
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        // SAFETY: `cred` and `len` are valid for writes and `len` holds the
        // size of `cred`, as SO_PEERCRED requires.
        let rc = unsafe {
            libc::getsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                (&mut cred as *mut libc::ucred).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(cred.uid)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let mut uid: libc::uid_t = 0;
        let mut gid: libc::gid_t = 0;
        // SAFETY: both out-pointers are valid for writes.
        if unsafe { libc::getpeereid(stream.as_raw_fd(), &mut uid, &mut gid) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(uid)
    }
}

/// Whether a peer with `uid` may use the socket.
pub fn uid_allowed(uid: u32, allowed: &[u32]) -> bool {
    allowed.contains(&uid)
}

/// Sends all of `bytes` without blocking and without SIGPIPE. False when the
/// peer is gone or would not take it all now.
fn send_all(stream: &UnixStream, mut bytes: &[u8]) -> bool {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    const FLAGS: libc::c_int = libc::MSG_NOSIGNAL;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    const FLAGS: libc::c_int = 0;
    while !bytes.is_empty() {
        // SAFETY: `bytes` is valid for reads of `bytes.len()` bytes.
        let n = unsafe {
            libc::send(
                stream.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                FLAGS,
            )
        };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return false;
        }
        bytes = &bytes[n as usize..];
    }
    true
}

/// One connected, permitted client.
struct Client {
    stream: UnixStream,
    /// Bytes received that do not yet end in a newline.
    pending: Vec<u8>,
    uid: u32,
    /// When it connected or last had a command answered.
    since: Instant,
}

/// Refusal lines, rate-limited: one at warn level per
/// [`REFUSAL_LOG_EVERY`], the others at debug level and counted.
#[derive(Default)]
struct Refusals {
    last_warned: Option<Instant>,
    unlogged: u64,
}

impl Refusals {
    fn log(&mut self, msg: String) {
        let now = Instant::now();
        if self
            .last_warned
            .is_some_and(|t| now.duration_since(t) < REFUSAL_LOG_EVERY)
        {
            self.unlogged += 1;
            ::log::debug!("{msg}");
            return;
        }
        if self.unlogged > 0 {
            ::log::warn!(
                "{msg} (and {} more refusal{} since the last such line)",
                self.unlogged,
                if self.unlogged == 1 { "" } else { "s" }
            );
        } else {
            ::log::warn!("{msg}");
        }
        self.unlogged = 0;
        self.last_warned = Some(now);
    }
}

/// The listening control socket and its clients. Dropping it closes every
/// connection and removes the socket file (if it is still the one we made).
pub struct ControlSocket {
    path: PathBuf,
    listener: UnixListener,
    /// Device and inode of the socket file we linked, so that Drop never
    /// removes a file someone else put there.
    ident: (u64, u64),
    clients: Vec<Client>,
    allowed_uids: Vec<u32>,
    settable: Vec<String>,
    /// [`CLIENT_IDLE`], shorter in tests.
    idle: Duration,
    refusals: Refusals,
}

/// Longest socket path the platform's `sockaddr_un` holds (without its NUL).
fn max_socket_path() -> usize {
    // SAFETY: sockaddr_un is plain old data; all zeroes is a valid value.
    let addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_path.len() - 1
}

/// A private directory beside the socket, removed with what is in it when
/// this goes out of scope.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_file(self.0.join("s"));
        let _ = fs::remove_dir(&self.0);
    }
}

fn make_temp_dir(parent: &Path, path: &Path) -> Result<TempDir, SocketError> {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let pid = std::process::id();
    for _ in 0..TEMP_DIR_ATTEMPTS {
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let name = format!(".ls{:08x}", (pid << 8) ^ seq);
        let dir = parent.join(name);
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(TempDir(dir)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(io_err(
                    path,
                    "cannot create a private directory beside it (is its directory writable?)",
                )(e))
            }
        }
    }
    Err(SocketError::Io {
        path: disp(path),
        what: "cannot find a free name for a private directory beside it",
        source: io::Error::from(io::ErrorKind::AlreadyExists),
    })
}

impl ControlSocket {
    /// Creates the control socket at `path`, owned by `owner` (uid, gid) if
    /// given, with permission bits `mode` (e.g. [`DEFAULT_MODE`]; only the
    /// 0o777 bits are used). Connecting needs write permission on it.
    ///
    /// A socket file left by a dead process is replaced; a socket someone
    /// still listens on, or any other kind of file (a symlink included), is
    /// refused. The socket is made inside a fresh 0700 directory, chowned and
    /// chmodded there, and then hard-linked to `path`, so it is never
    /// reachable with looser permissions than asked for, and a file that
    /// appears at `path` meanwhile is never overwritten.
    pub fn bind(
        path: &Path,
        owner: Option<(u32, u32)>,
        mode: u32,
    ) -> Result<ControlSocket, SocketError> {
        if path.file_name().is_none() {
            return Err(SocketError::NoFileName { path: disp(path) });
        }
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        // The socket is first made at PARENT/.lsXXXXXXXX/s, which must fit
        // the address too.
        let len = path.as_os_str().len();
        let tmp_len = parent.as_os_str().len() + 1 + TEMP_NAME_LEN + 2;
        let max = max_socket_path().saturating_sub(tmp_len.saturating_sub(len));
        if len > max {
            return Err(SocketError::TooLong {
                path: disp(path),
                len,
                max,
            });
        }
        remove_stale(path)?;

        let dir = make_temp_dir(parent, path)?;
        let tmp = dir.0.join("s");
        let listener = UnixListener::bind(&tmp).map_err(io_err(path, "cannot create it"))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::lchown(&tmp, Some(uid), Some(gid))
                .map_err(io_err(path, "cannot change its owner (--socket-own)"))?;
        }
        fs::set_permissions(&tmp, fs::Permissions::from_mode(mode & 0o777))
            .map_err(io_err(path, "cannot set its mode (--socket-mod)"))?;
        let meta = fs::symlink_metadata(&tmp).map_err(io_err(path, "cannot stat it"))?;
        match fs::hard_link(&tmp, path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(SocketError::InUse { path: disp(path) })
            }
            Err(e) => return Err(io_err(path, "cannot create it")(e)),
        }
        drop(dir);
        listener
            .set_nonblocking(true)
            .map_err(io_err(path, "cannot make it non-blocking"))?;
        // SAFETY: geteuid cannot fail and has no side effects.
        let euid = unsafe { libc::geteuid() };
        let mut allowed_uids = vec![0];
        if euid != 0 {
            allowed_uids.push(euid);
        }
        Ok(ControlSocket {
            path: path.to_path_buf(),
            listener,
            ident: (meta.dev(), meta.ino()),
            clients: Vec::new(),
            allowed_uids,
            settable: Vec::new(),
            idle: CLIENT_IDLE,
            refusals: Refusals::default(),
        })
    }

    /// The path the socket was bound at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the uids allowed to connect (default: root and the daemon's
    /// effective uid). Clients already connected stay.
    pub fn set_allowed_uids(&mut self, uids: Vec<u32>) {
        self.allowed_uids = uids;
    }

    /// The keys `set KEY VALUE` may change (default: none); for other keys
    /// the client gets `error set KEY: not supported` and the loop hears
    /// nothing.
    pub fn allow_set(&mut self, keys: &[&str]) {
        self.settable = keys.iter().map(|k| k.to_string()).collect();
    }

    /// How many clients are connected.
    pub fn client_count(&self) -> usize {
        self.clients.len()
    }

    /// Replaces [`CLIENT_IDLE`] (tests).
    pub fn set_idle_timeout(&mut self, idle: Duration) {
        self.idle = idle;
    }

    /// When the next client runs out of time (see [`CLIENT_IDLE`]): the loop
    /// must call [`service`](Self::service) by then even if no fd is ready.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.clients.iter().map(|c| c.since + self.idle).min()
    }

    /// The fds the loop must poll for readability (POLLIN) before calling
    /// [`service`](Self::service): the listener and every client. The set
    /// changes on every `service`, so ask again each turn.
    pub fn fds(&self) -> Vec<RawFd> {
        std::iter::once(self.listener.as_raw_fd())
            .chain(self.clients.iter().map(|c| c.stream.as_raw_fd()))
            .collect()
    }

    /// Accepts waiting connections, reads every complete command line from
    /// every client, replies to each, and returns the orders the loop must
    /// act on, in the order they came. Never blocks. `state` is called at
    /// most once, and only when a client asks for `status`, `info` or `metrics`.
    pub fn service(&mut self, state: &dyn Fn() -> StatusReport) -> Vec<Command> {
        self.accept();
        let mut snapshot: Option<StatusReport> = None;
        let mut orders = Vec::new();
        let mut i = 0;
        while i < self.clients.len() {
            let mut keep = self.serve_client(i, state, &mut snapshot, &mut orders);
            if keep && self.clients[i].since.elapsed() >= self.idle {
                let msg = format!(
                    "error idle for {} s without a whole command; closing\n",
                    self.idle.as_secs_f64()
                );
                send_all(&self.clients[i].stream, msg.as_bytes());
                ::log::debug!(
                    "control socket: dropped a client (uid {}) idle for {:?}",
                    self.clients[i].uid,
                    self.idle
                );
                keep = false;
            }
            if keep {
                i += 1;
            } else {
                let c = self.clients.swap_remove(i);
                ::log::debug!("control socket: client (uid {}) disconnected", c.uid);
            }
        }
        orders
    }

    fn accept(&mut self) {
        for _ in 0..MAX_ACCEPTS_PER_SERVICE {
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // ECONNABORTED, EMFILE and friends: the listener stays
                    // readable and we try again next turn.
                    ::log::warn!(
                        "control socket {}: cannot accept a connection: {e}",
                        disp(&self.path)
                    );
                    return;
                }
            };
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let uid = match peer_uid(&stream) {
                Ok(uid) => uid,
                Err(e) => {
                    self.refusals.log(format!(
                        "control socket {}: cannot read the peer's credentials, refusing it: {e}",
                        disp(&self.path)
                    ));
                    send_all(&stream, b"error cannot read your credentials\n");
                    continue;
                }
            };
            if !uid_allowed(uid, &self.allowed_uids) {
                self.refusals.log(format!(
                    "control socket {}: refused a client with uid {uid} (not allowed)",
                    disp(&self.path)
                ));
                let msg =
                    format!("error permission denied: uid {uid} may not use this control socket\n");
                send_all(&stream, msg.as_bytes());
                continue;
            }
            if self.clients.len() >= MAX_CLIENTS {
                // Room for the newcomer: the client waiting longest
                // without a command goes.
                if let Some(oldest) = (0..self.clients.len()).min_by_key(|&i| self.clients[i].since)
                {
                    let old = self.clients.swap_remove(oldest);
                    let msg = format!(
                        "error too many clients ({MAX_CLIENTS}); closing the one idle longest\n"
                    );
                    send_all(&old.stream, msg.as_bytes());
                    self.refusals.log(format!(
                        "control socket {}: {MAX_CLIENTS} clients connected; dropped the one idle longest (uid {}) for a new one",
                        disp(&self.path),
                        old.uid
                    ));
                }
            }
            ::log::debug!("control socket: client (uid {uid}) connected");
            self.clients.push(Client {
                stream,
                pending: Vec::new(),
                uid,
                since: Instant::now(),
            });
        }
    }

    /// Reads and answers what client `i` sent. False when it must go.
    fn serve_client(
        &mut self,
        i: usize,
        state: &dyn Fn() -> StatusReport,
        snapshot: &mut Option<StatusReport>,
        orders: &mut Vec<Command>,
    ) -> bool {
        let mut buf = [0u8; 4096];
        let mut total = 0;
        let mut eof = false;
        while total < MAX_READ_PER_SERVICE {
            let client = &mut self.clients[i];
            match client.stream.read(&mut buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    total += n;
                    client.pending.extend_from_slice(&buf[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
            if !self.answer_lines(i, state, snapshot, orders) {
                return false;
            }
        }
        if eof {
            // A last command without its newline still counts.
            let rest = std::mem::take(&mut self.clients[i].pending);
            if !rest.is_empty() {
                self.answer(i, &rest, state, snapshot, orders);
            }
            return false;
        }
        true
    }

    /// Answers every complete line in client `i`'s buffer. False when the
    /// client must go.
    fn answer_lines(
        &mut self,
        i: usize,
        state: &dyn Fn() -> StatusReport,
        snapshot: &mut Option<StatusReport>,
        orders: &mut Vec<Command>,
    ) -> bool {
        loop {
            let pending = &mut self.clients[i].pending;
            let Some(nl) = pending.iter().position(|&b| b == b'\n') else {
                break;
            };
            if nl > MAX_LINE {
                break;
            }
            let mut line: Vec<u8> = pending.drain(..=nl).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if !self.answer(i, &line, state, snapshot, orders) {
                return false;
            }
        }
        let pending = &self.clients[i].pending;
        let too_long = match pending.iter().position(|&b| b == b'\n') {
            Some(nl) => nl > MAX_LINE,
            None => pending.len() > MAX_LINE,
        };
        if too_long {
            let msg = format!("error line longer than {MAX_LINE} bytes; closing\n");
            send_all(&self.clients[i].stream, msg.as_bytes());
            return false;
        }
        true
    }

    /// Replies to one line from client `i`. False when the reply could not
    /// be sent.
    fn answer(
        &mut self,
        i: usize,
        line: &[u8],
        state: &dyn Fn() -> StatusReport,
        snapshot: &mut Option<StatusReport>,
        orders: &mut Vec<Command>,
    ) -> bool {
        let mut reply = match parse(line) {
            Err(e) => e,
            Ok(Request::Version) => format!("ok livesync {}", env!("CARGO_PKG_VERSION")),
            Ok(Request::Help) => HELP.to_string(),
            Ok(Request::Status) => snapshot.get_or_insert_with(state).to_json(),
            Ok(Request::Metrics) => {
                let mut text = super::metrics::render(snapshot.get_or_insert_with(state));
                text.push_str(super::metrics::END_MARKER);
                text
            }
            Ok(Request::Info) => format!("ok {}", snapshot.get_or_insert_with(state).info_line()),
            Ok(Request::Order(Command::Set(key, value))) => {
                if self.settable.contains(&key) {
                    let reply = format!("ok set {key}");
                    orders.push(Command::Set(key, value));
                    reply
                } else {
                    let mut e = String::from("error set ");
                    e.push_str(&key.escape_debug().to_string());
                    e.push_str(": not supported");
                    e
                }
            }
            Ok(Request::Order(cmd)) => {
                let word = match cmd {
                    Command::Resync => "resync",
                    Command::Pause => "pause",
                    Command::Resume => "resume",
                    Command::Die => "die",
                    Command::Quit => "quit",
                    Command::Dump => "dump",
                    Command::Set(..) => "set",
                };
                ::log::info!(
                    "control socket: {word} requested (uid {})",
                    self.clients[i].uid
                );
                orders.push(cmd);
                format!("ok {word} requested")
            }
        };
        reply.push('\n');
        self.clients[i].since = Instant::now();
        send_all(&self.clients[i].stream, reply.as_bytes())
    }
}

/// Removes a socket file at `path` that nobody listens on; refuses anything
/// else that is there.
fn remove_stale(path: &Path) -> Result<(), SocketError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(path, "cannot check what is there")(e)),
    };
    if !meta.file_type().is_socket() {
        return Err(SocketError::NotASocket { path: disp(path) });
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(SocketError::InUse { path: disp(path) }),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            ::log::info!(
                "control socket {}: removing a stale socket nobody listens on",
                disp(path)
            );
            match fs::remove_file(path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io_err(path, "cannot remove the stale socket")(e)),
            }
        }
        Err(e) => Err(io_err(
            path,
            "cannot tell whether the socket already there is in use",
        )(e)),
    }
}

impl ControlSocket {
    /// The path and the identity of the socket file, for whoever removes
    /// it instead of this one (the `--chroot` keeper).
    pub fn keeper_view(&self) -> (PathBuf, (u64, u64)) {
        (self.path.clone(), self.ident)
    }

    /// Leaves the removal of the socket file to someone else (see
    /// [`ControlSocket::keeper_view`]); the socket stays open.
    pub fn disown_file(&mut self) {
        self.ident = (u64::MAX, u64::MAX);
    }
}

/// Removes the socket file `path` if it is still the one with `ident`
/// (device, inode): never a file someone else put there.
pub fn remove_socket_file(path: &Path, ident: (u64, u64)) {
    match fs::symlink_metadata(path) {
        Ok(m) if (m.dev(), m.ino()) == ident => {
            if let Err(e) = fs::remove_file(path) {
                ::log::warn!("control socket {}: cannot remove it: {e}", disp(path));
            }
        }
        _ => {}
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        self.clients.clear();
        remove_socket_file(&self.path, self.ident);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::io::Write;
    use std::os::unix::fs::symlink;
    use std::time::{Duration, Instant};

    const DEADLINE: Duration = Duration::from_secs(5);

    fn status() -> StatusReport {
        StatusReport {
            state: "running".into(),
            queue: vec![("normal".into(), 3), ("big".into(), 1)],
            oldest_pending_age_ms: Some(1500),
            last_sync: Some(LastSync {
                finished_unix_ms: 1_700_000_000_123,
                duration_ms: 42,
                exit_code: Some(0),
                ok: true,
            }),
            counters: vec![("events".into(), 10), ("failures".into(), 0)],
            watch_dir: "/srv/www".into(),
            destination: "/backup/www".into(),
            label: "web".into(),
            pid: 4242,
            version: "0.1.0".into(),
        }
    }

    struct Env {
        dir: tempfile::TempDir,
        sock: ControlSocket,
    }

    impl Env {
        fn new() -> Env {
            let dir = tempfile::tempdir().unwrap();
            let sock =
                ControlSocket::bind(&dir.path().join("ctl.sock"), None, DEFAULT_MODE).unwrap();
            Env { dir, sock }
        }

        fn connect(&self) -> UnixStream {
            let c = UnixStream::connect(self.sock.path()).unwrap();
            c.set_nonblocking(true).unwrap();
            c
        }

        /// Services the socket until `client` has a whole reply line (None
        /// when the server closed it first), collecting the orders.
        fn reply(&mut self, client: &mut UnixStream, orders: &mut Vec<Command>) -> Option<String> {
            let mut got = Vec::new();
            let start = Instant::now();
            loop {
                orders.extend(self.sock.service(&status));
                let mut buf = [0u8; 8192];
                match client.read(&mut buf) {
                    Ok(0) => return None,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return None,
                    Err(e) => panic!("read: {e}"),
                }
                if let Some(nl) = got.iter().position(|&b| b == b'\n') {
                    assert_eq!(nl + 1, got.len(), "one reply line at a time: {got:?}");
                    got.pop();
                    return Some(String::from_utf8(got).unwrap());
                }
                assert!(start.elapsed() < DEADLINE, "no reply; got {got:?}");
                std::thread::yield_now();
            }
        }

        /// Sends `line` and returns the reply and the orders it produced.
        fn ask(&mut self, client: &mut UnixStream, line: &str) -> (String, Vec<Command>) {
            client.write_all(format!("{line}\n").as_bytes()).unwrap();
            let mut orders = Vec::new();
            let r = self.reply(client, &mut orders).expect("connection closed");
            (r, orders)
        }

        /// Services until the server has closed `client` (it reads EOF).
        fn wait_closed(&mut self, client: &mut UnixStream) -> Vec<u8> {
            let mut got = Vec::new();
            let start = Instant::now();
            loop {
                self.sock.service(&status);
                let mut buf = [0u8; 8192];
                match client.read(&mut buf) {
                    Ok(0) => return got,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return got,
                    Err(e) => panic!("read: {e}"),
                }
                assert!(start.elapsed() < DEADLINE, "still open; got {got:?}");
                std::thread::yield_now();
            }
        }
    }

    /// Decodes one JSON string literal (test oracle for `json_str`).
    fn json_decode(lit: &str) -> String {
        let inner = lit.strip_prefix('"').unwrap().strip_suffix('"').unwrap();
        let mut out = String::new();
        let mut it = inner.chars();
        while let Some(c) = it.next() {
            assert!(c != '"' && (c as u32) >= 0x20, "raw {c:?} in {lit:?}");
            if c != '\\' {
                out.push(c);
                continue;
            }
            match it.next().unwrap() {
                '"' => out.push('"'),
                '\\' => out.push('\\'),
                '/' => out.push('/'),
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                'u' => {
                    let hex: String = it.by_ref().take(4).collect();
                    let v = u32::from_str_radix(&hex, 16).unwrap();
                    out.push(char::from_u32(v).unwrap());
                }
                other => panic!("bad escape \\{other} in {lit:?}"),
            }
        }
        out
    }

    #[test]
    fn json_strings_are_escaped_and_round_trip() {
        let mut o = String::new();
        json_str(&mut o, "a\"b\\c\nd\te\u{1}\u{7f}é\u{2028}🦀");
        assert_eq!(o, r#""a\"b\\c\nd\te\u0001\u007fé\u2028🦀""#);
        let mut all: String = (0u32..0x100).filter_map(char::from_u32).collect();
        all.push_str("\u{2028}\u{2029}\u{fffd}x");
        let mut o = String::new();
        json_str(&mut o, &all);
        assert!(!o.contains('\n') && !o.contains('\r'));
        assert_eq!(json_decode(&o), all);
    }

    #[test]
    fn status_json_is_exact() {
        assert_eq!(
            status().to_json(),
            concat!(
                r#"{"state":"running","pid":4242,"version":"0.1.0","label":"web","#,
                r#""watch_dir":"/srv/www","destination":"/backup/www","#,
                r#""queue":{"normal":3,"big":1},"queue_total":4,"oldest_pending_age_ms":1500,"#,
                r#""last_sync":{"finished_unix_ms":1700000000123,"duration_ms":42,"exit_code":0,"ok":true},"#,
                r#""counters":{"events":10,"failures":0}}"#
            )
        );
        let empty = StatusReport {
            state: "starting".into(),
            ..StatusReport::default()
        };
        assert_eq!(
            empty.to_json(),
            concat!(
                r#"{"state":"starting","pid":0,"version":"","label":"","watch_dir":"","destination":"","#,
                r#""queue":{},"queue_total":0,"oldest_pending_age_ms":null,"last_sync":null,"counters":{}}"#
            )
        );
        let failed = StatusReport {
            label: "we\"ird\nlabel".into(),
            watch_dir: "/a\\b".into(),
            last_sync: Some(LastSync {
                exit_code: None,
                ok: false,
                ..LastSync::default()
            }),
            ..StatusReport::default()
        };
        let j = failed.to_json();
        assert!(
            j.contains(r#""label":"we\"ird\nlabel","watch_dir":"/a\\b""#),
            "{j}"
        );
        assert!(j.contains(r#""exit_code":null,"ok":false}"#), "{j}");
        assert!(!j.contains('\n'));
    }

    #[test]
    fn every_command_gets_its_reply() {
        let mut env = Env::new();
        let mut c = env.connect();
        let version = format!("ok livesync {}", env!("CARGO_PKG_VERSION"));
        assert_eq!(env.ask(&mut c, "version"), (version, vec![]));
        let (info, orders) = env.ask(&mut c, "info");
        assert_eq!(
            info,
            r#"ok livesync 0.1.0 pid 4242 label "web" state "running" watch "/srv/www" destination "/backup/www" queued 4"#
        );
        assert!(orders.is_empty());
        assert_eq!(env.ask(&mut c, "status"), (status().to_json(), vec![]));
        let (help, _) = env.ask(&mut c, "help");
        assert!(help.starts_with("ok commands: "), "{help}");
        for word in [
            "version", "info", "status", "resync", "pause", "resume", "dump", "set", "quit", "die",
        ] {
            assert!(help.contains(word), "help lacks {word}: {help}");
        }
        let orders = [
            ("resync", Command::Resync),
            ("pause", Command::Pause),
            ("resume", Command::Resume),
            ("dump", Command::Dump),
            ("quit", Command::Quit),
            ("die", Command::Die),
        ];
        for (word, cmd) in orders {
            assert_eq!(
                env.ask(&mut c, word),
                (format!("ok {word} requested"), vec![cmd])
            );
        }
        // The connection stays usable after orders, even `die`.
        assert_eq!(env.ask(&mut c, "pause").1, vec![Command::Pause]);
    }

    #[test]
    fn metrics_reply_is_prometheus_text_ended_by_eof() {
        let mut env = Env::new();
        let mut c = env.connect();
        c.write_all(b"metrics\nversion\n").unwrap();
        let mut got = Vec::new();
        let start = Instant::now();
        let want_end = format!("{}\nok livesync ", super::super::metrics::END_MARKER);
        while !String::from_utf8_lossy(&got).contains(&want_end) {
            env.sock.service(&status);
            let mut buf = [0u8; 8192];
            match c.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("read: {e}"),
            }
            assert!(start.elapsed() < DEADLINE, "no whole reply: {got:?}");
        }
        let text = String::from_utf8(got).unwrap();
        let (metrics, after) = text.split_once("# EOF\n").expect("end marker");
        assert_eq!(metrics, super::super::metrics::render(&status()));
        assert!(metrics.contains("livesync_events_total 10\n"), "{metrics}");
        assert!(
            after.starts_with("ok livesync "),
            "next reply in order: {after}"
        );
    }

    #[test]
    fn bad_commands_get_errors_and_no_orders() {
        let mut env = Env::new();
        let mut c = env.connect();
        let cases = [
            ("bogus", r#"error unknown command "bogus"; try help"#),
            ("STATUS", r#"error unknown command "STATUS"; try help"#),
            ("", "error empty command; try help"),
            ("   ", "error empty command; try help"),
            ("pause now", "error pause takes no arguments"),
            ("set", "error usage: set KEY VALUE"),
            ("set delay", "error usage: set KEY VALUE"),
            ("set delay 5", "error set delay: not supported"),
            ("set \u{1}k v", "error set \\u{1}k: not supported"),
        ];
        for (line, want) in cases {
            assert_eq!(
                env.ask(&mut c, line),
                (want.to_string(), vec![]),
                "{line:?}"
            );
        }
        c.write_all(b"\xff\xfe\n").unwrap();
        let mut orders = Vec::new();
        assert_eq!(
            env.reply(&mut c, &mut orders).unwrap(),
            "error the command is not valid UTF-8"
        );
        assert!(orders.is_empty());
    }

    #[test]
    fn set_reaches_the_loop_only_for_allowed_keys() {
        let mut env = Env::new();
        env.sock.allow_set(&["delay-sync"]);
        let mut c = env.connect();
        assert_eq!(
            env.ask(&mut c, "set delay-sync  2.5 s"),
            (
                "ok set delay-sync".to_string(),
                vec![Command::Set("delay-sync".into(), "2.5 s".into())]
            )
        );
        assert_eq!(env.ask(&mut c, "set label x").1, vec![]);
    }

    #[test]
    fn crlf_and_pipelined_commands_answer_in_order() {
        let mut env = Env::new();
        let mut c = env.connect();
        c.write_all(b"pause\r\nresume\nbogus\n").unwrap();
        let mut orders = Vec::new();
        let mut replies = Vec::new();
        for _ in 0..3 {
            // Replies may arrive together; read them as a stream.
            replies.push(read_line_stream(&mut env, &mut c, &mut orders));
        }
        assert_eq!(
            replies,
            [
                "ok pause requested",
                "ok resume requested",
                r#"error unknown command "bogus"; try help"#
            ]
        );
        assert_eq!(orders, [Command::Pause, Command::Resume]);
    }

    /// Reads one line from a stream that may hold several.
    fn read_line_stream(env: &mut Env, c: &mut UnixStream, orders: &mut Vec<Command>) -> String {
        thread_local!(static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) });
        let start = Instant::now();
        loop {
            let line = BUF.with(|b| {
                let mut b = b.borrow_mut();
                let nl = b.iter().position(|&x| x == b'\n')?;
                let mut l: Vec<u8> = b.drain(..=nl).collect();
                l.pop();
                Some(String::from_utf8(l).unwrap())
            });
            if let Some(l) = line {
                return l;
            }
            orders.extend(env.sock.service(&status));
            let mut buf = [0u8; 4096];
            match c.read(&mut buf) {
                Ok(0) => panic!("closed"),
                Ok(n) => BUF.with(|b| b.borrow_mut().extend_from_slice(&buf[..n])),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("read: {e}"),
            }
            assert!(start.elapsed() < DEADLINE);
        }
    }

    #[test]
    fn state_is_asked_only_when_needed_and_once_per_service() {
        let mut env = Env::new();
        let mut c = env.connect();
        let calls = Cell::new(0);
        let state = || {
            calls.set(calls.get() + 1);
            status()
        };
        c.write_all(b"pause\nversion\n").unwrap();
        wait_for_data(&mut env, &c, &state);
        assert_eq!(calls.get(), 0);
        let mut sink = [0u8; 4096];
        let _ = c.read(&mut sink);
        c.write_all(b"status\ninfo\nstatus\n").unwrap();
        wait_for_data(&mut env, &c, &state);
        assert_eq!(calls.get(), 1);
    }

    /// Services with `state` until `c` has something to read.
    fn wait_for_data(env: &mut Env, c: &UnixStream, state: &dyn Fn() -> StatusReport) {
        let start = Instant::now();
        loop {
            env.sock.service(state);
            let mut b = [0u8; 1];
            // SAFETY: peeking into a valid one-byte buffer.
            let n = unsafe {
                libc::recv(
                    c.as_raw_fd(),
                    b.as_mut_ptr().cast(),
                    1,
                    libc::MSG_PEEK | libc::MSG_DONTWAIT,
                )
            };
            if n > 0 {
                return;
            }
            assert!(start.elapsed() < DEADLINE);
        }
    }

    #[test]
    fn last_command_without_newline_is_answered_at_eof() {
        let mut env = Env::new();
        let mut c = env.connect();
        c.write_all(b"pause").unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let mut orders = Vec::new();
        let reply = env.reply(&mut c, &mut orders);
        assert_eq!(reply.as_deref(), Some("ok pause requested"));
        assert_eq!(orders, [Command::Pause]);
        assert_eq!(env.wait_closed(&mut c), b"");
        assert_eq!(env.sock.client_count(), 0);
    }

    #[test]
    fn long_lines_are_refused_and_the_client_dropped() {
        let mut env = Env::new();
        // Exactly MAX_LINE bytes is still a line (an unknown command).
        let mut c = env.connect();
        let (r, _) = env.ask(&mut c, &"x".repeat(MAX_LINE));
        assert!(r.starts_with("error unknown command"), "{}", &r[..40]);
        // One more byte, newline or not, and the client goes.
        for with_newline in [true, false] {
            let mut c = env.connect();
            let mut line = "y".repeat(MAX_LINE + 1);
            if with_newline {
                line.push('\n');
            }
            c.write_all(line.as_bytes()).unwrap();
            let got = env.wait_closed(&mut c);
            assert_eq!(
                String::from_utf8(got).unwrap(),
                format!("error line longer than {MAX_LINE} bytes; closing\n")
            );
        }
        // Only the first, well-behaved client is left.
        assert_eq!(env.sock.client_count(), 1);
        assert_eq!(env.ask(&mut c, "pause").1, [Command::Pause]);
    }

    #[test]
    fn a_new_client_always_gets_in_and_the_longest_idle_one_makes_room() {
        let mut env = Env::new();
        let mut clients: Vec<UnixStream> = Vec::new();
        for _ in 0..MAX_CLIENTS {
            clients.push(env.connect());
            env.sock.service(&status);
        }
        assert_eq!(env.sock.client_count(), MAX_CLIENTS);
        assert_eq!(env.sock.fds().len(), MAX_CLIENTS + 1);
        // The last one used its place: it is not the longest idle.
        let mut orders = Vec::new();
        let last = clients.last_mut().unwrap();
        last.write_all(b"resync\n").unwrap();
        assert_eq!(env.reply(last, &mut orders).unwrap(), "ok resync requested");
        // A newcomer is served; the first (idle longest) is closed.
        let mut extra = env.connect();
        assert_eq!(
            env.ask(&mut extra, "version").0,
            format!("ok livesync {}", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(env.sock.client_count(), MAX_CLIENTS);
        let got = env.wait_closed(&mut clients[0]);
        assert_eq!(
            String::from_utf8(got).unwrap(),
            format!("error too many clients ({MAX_CLIENTS}); closing the one idle longest\n")
        );
        // The others still work.
        let last = clients.last_mut().unwrap();
        assert_eq!(env.ask(last, "pause").1, [Command::Pause]);
    }

    #[test]
    fn a_client_silent_past_its_deadline_is_dropped() {
        let mut env = Env::new();
        env.sock.set_idle_timeout(Duration::from_millis(300));
        let mut silent = env.connect();
        let mut partial = env.connect();
        let mut busy = env.connect();
        env.sock.service(&status);
        assert_eq!(env.sock.client_count(), 3);
        partial.write_all(b"stat").unwrap();
        let due = env.sock.next_deadline().expect("a deadline");
        assert!(due <= Instant::now() + Duration::from_millis(300));
        // A client that keeps asking stays while the silent ones go.
        let idle = "error idle for 0.3 s without a whole command; closing\n";
        let start = Instant::now();
        let mut got = Vec::new();
        loop {
            env.ask(&mut busy, "version");
            let mut buf = [0u8; 256];
            match silent.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("read: {e}"),
            }
            assert!(start.elapsed() < DEADLINE, "still open; got {got:?}");
        }
        assert!(
            start.elapsed() >= Duration::from_millis(250),
            "not before its time"
        );
        assert_eq!(String::from_utf8(got).unwrap(), idle);
        assert_eq!(
            String::from_utf8(env.wait_closed(&mut partial)).unwrap(),
            idle
        );
        assert_eq!(env.sock.client_count(), 1);
        env.ask(&mut busy, "version");
    }

    #[test]
    fn peers_with_other_uids_are_refused() {
        let mut env = Env::new();
        // SAFETY: geteuid has no side effects.
        let me = unsafe { libc::geteuid() };
        assert!(uid_allowed(me, &env.sock.allowed_uids));
        assert!(uid_allowed(0, &env.sock.allowed_uids));
        assert!(!uid_allowed(65534, &[0, 1000]));
        env.sock.set_allowed_uids(vec![]);
        let mut c = env.connect();
        c.write_all(b"die\n").unwrap();
        let got = env.wait_closed(&mut c);
        assert_eq!(
            String::from_utf8(got).unwrap(),
            format!("error permission denied: uid {me} may not use this control socket\n")
        );
        assert_eq!(env.sock.client_count(), 0);
        env.sock.set_allowed_uids(vec![me]);
        let mut c = env.connect();
        assert_eq!(env.ask(&mut c, "die").1, [Command::Die]);
    }

    #[test]
    fn peer_uid_comes_from_the_kernel() {
        let (a, _b) = UnixStream::pair().unwrap();
        // SAFETY: geteuid has no side effects.
        assert_eq!(peer_uid(&a).unwrap(), unsafe { libc::geteuid() });
    }

    #[test]
    fn socket_mode_and_owner_are_set_and_no_temp_dir_is_left() {
        let env = Env::new();
        let meta = fs::symlink_metadata(env.sock.path()).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
        let names: Vec<_> = fs::read_dir(env.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["ctl.sock"]);

        let other = env.dir.path().join("group.sock");
        // SAFETY: getuid/getgid have no side effects.
        let (uid, gid) = if unsafe { libc::geteuid() } == 0 {
            (65534, 65534)
        } else {
            unsafe { (libc::geteuid(), libc::getegid()) }
        };
        let s = ControlSocket::bind(&other, Some((uid, gid)), 0o660).unwrap();
        let meta = fs::symlink_metadata(s.path()).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o660);
        assert_eq!((meta.uid(), meta.gid()), (uid, gid));
    }

    #[test]
    fn stale_socket_is_replaced_and_live_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctl.sock");
        drop(UnixListener::bind(&path).unwrap());
        assert!(fs::symlink_metadata(&path).unwrap().file_type().is_socket());
        let mut s = ControlSocket::bind(&path, None, DEFAULT_MODE).unwrap();
        let mut c = UnixStream::connect(&path).unwrap();
        c.write_all(b"pause\n").unwrap();
        let start = Instant::now();
        let mut orders = Vec::new();
        while orders.is_empty() {
            orders = s.service(&status);
            assert!(start.elapsed() < DEADLINE);
        }
        assert_eq!(orders, [Command::Pause]);

        match ControlSocket::bind(&path, None, DEFAULT_MODE) {
            Err(SocketError::InUse { path: p }) => assert!(p.contains("ctl.sock")),
            other => panic!("expected InUse, got {:?}", other.map(|_| ())),
        }
        // The refused second bind must not have removed the live one.
        UnixStream::connect(&path).unwrap();
    }

    #[test]
    fn non_sockets_in_the_way_are_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        fs::write(&file, b"precious").unwrap();
        let target = dir.path().join("real.sock");
        let _live = UnixListener::bind(&target).unwrap();
        let link = dir.path().join("link");
        symlink(&target, &link).unwrap();
        let subdir = dir.path().join("dir");
        fs::create_dir(&subdir).unwrap();
        for p in [&file, &link, &subdir] {
            match ControlSocket::bind(p, None, DEFAULT_MODE) {
                Err(e @ SocketError::NotASocket { .. }) => {
                    let msg = e.to_string();
                    assert!(msg.contains(&p.display().to_string()), "{msg}");
                    assert!(msg.contains("not a socket"), "{msg}");
                }
                other => panic!(
                    "{}: expected NotASocket, got {:?}",
                    p.display(),
                    other.map(|_| ())
                ),
            }
        }
        assert_eq!(fs::read(&file).unwrap(), b"precious");
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn too_long_a_path_is_refused_with_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x".repeat(200));
        match ControlSocket::bind(&p, None, DEFAULT_MODE) {
            Err(e @ SocketError::TooLong { .. }) => {
                assert!(e.to_string().contains("shorter --socket path"), "{e}")
            }
            other => panic!("expected TooLong, got {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn path_length_limit_counts_the_private_directory() {
        let max = max_socket_path();
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().as_os_str().len();
        // A long name: the private dir is shorter, the full limit applies.
        let fits = dir.path().join("n".repeat(max - base - 1));
        assert_eq!(fits.as_os_str().len(), max);
        let s = ControlSocket::bind(&fits, None, DEFAULT_MODE).unwrap();
        UnixStream::connect(s.path()).unwrap();
        let over = dir.path().join("n".repeat(max - base));
        assert!(matches!(
            ControlSocket::bind(&over, None, DEFAULT_MODE),
            Err(SocketError::TooLong { len, max: m, .. }) if len == max + 1 && m == max
        ));
        // A short name in a deep directory: the private dir is what must fit.
        let deep = dir.path().join("d".repeat(max - base - 8));
        fs::create_dir(&deep).unwrap();
        let short = deep.join("a");
        match ControlSocket::bind(&short, None, DEFAULT_MODE) {
            Err(e @ SocketError::TooLong { .. }) => {
                let want = format!("at most {} here", max - (TEMP_NAME_LEN + 2 - 1));
                assert!(e.to_string().contains(&want), "{e}");
            }
            other => panic!("expected TooLong, got {:?}", other.map(|_| ())),
        }
        assert_eq!(fs::read_dir(&deep).unwrap().count(), 0);
    }

    #[test]
    fn a_path_without_a_file_name_is_refused() {
        assert!(matches!(
            ControlSocket::bind(Path::new("/"), None, DEFAULT_MODE),
            Err(SocketError::NoFileName { .. })
        ));
    }

    #[test]
    fn missing_directory_is_an_io_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("no/such/dir/c.sock");
        match ControlSocket::bind(&p, None, DEFAULT_MODE) {
            Err(e @ SocketError::Io { .. }) => {
                assert!(e.to_string().contains("no/such/dir/c.sock"), "{e}")
            }
            other => panic!("expected Io, got {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn drop_removes_our_socket_but_not_a_replacement() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctl.sock");
        let s = ControlSocket::bind(&path, None, DEFAULT_MODE).unwrap();
        drop(s);
        assert!(fs::symlink_metadata(&path).is_err());

        let s = ControlSocket::bind(&path, None, DEFAULT_MODE).unwrap();
        fs::remove_file(&path).unwrap();
        fs::write(&path, b"someone else's").unwrap();
        drop(s);
        assert_eq!(fs::read(&path).unwrap(), b"someone else's");
    }

    #[test]
    fn clients_that_leave_are_forgotten() {
        let mut env = Env::new();
        let c = env.connect();
        env.sock.service(&status);
        assert_eq!(env.sock.client_count(), 1);
        drop(c);
        let start = Instant::now();
        while env.sock.client_count() != 0 {
            env.sock.service(&status);
            assert!(start.elapsed() < DEADLINE);
        }
        assert_eq!(env.sock.fds().len(), 1);
    }
}
