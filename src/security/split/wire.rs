//! The helper's wire format: the requests the unprivileged daemon sends
//! and the replies the helper sends back, one SOCK_SEQPACKET packet each,
//! with their bounds (size, item count, paths that stay in the tree). Both
//! sides decode defensively: a packet that does not parse is refused, never
//! half-used.

use super::*;

/// Largest packet either side accepts.
pub const MAX_PACKET: usize = 1 << 20;
/// Most arguments (and environment variables) in one request.
pub const MAX_ITEMS: usize = 65536;

pub(super) const TAG_RUN: u8 = 1;
pub(super) const TAG_SIGNAL: u8 = 2;
pub(super) const TAG_DONE: u8 = 3;
pub(super) const TAG_FAIL: u8 = 4;
pub(super) const TAG_RULES: u8 = 5;
pub(super) const TAG_MIRROR: u8 = 6;
pub(super) const TAG_REPORT: u8 = 7;

/// A request from the daemon to the helper.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Run {
        id: u64,
        argv: Vec<OsString>,
        env: Vec<(OsString, OsString)>,
        timeout: Option<Duration>,
        grace: Duration,
        /// Where the handler starts (clsync's command modes run in the
        /// watch dir); absolute, or None for the helper's own.
        cwd: Option<PathBuf>,
    },
    Signal(i32),
    /// The built-in mirror's rules (rules text), from now on.
    Rules {
        id: u64,
        text: Vec<u8>,
    },
    /// Run the built-in mirror on these ops (paths relative to the trees).
    Mirror {
        id: u64,
        ops: Vec<Op>,
    },
}

/// How a run went, as the helper reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Done {
        id: u64,
        outcome: Outcome,
    },
    Fail {
        id: u64,
        kind: u8,
        message: String,
    },
    /// What a `RULES` or `MIRROR` request did (`report.skipped` too), and
    /// the paths that failed on their own while the rest was done.
    Report {
        id: u64,
        report: Report,
        failed: Vec<PathIssue>,
    },
}

/// `FAIL` kinds.
pub const FAIL_REFUSED: u8 = 1;
pub const FAIL_NOT_FOUND: u8 = 2;
pub const FAIL_DENIED: u8 = 3;
pub const FAIL_OTHER: u8 = 4;
/// The mirror's destination was moved or replaced: stop syncing to it.
pub const FAIL_DESTINATION_CHANGED: u8 = 5;

pub(super) fn put(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

impl Request {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Request::Run {
                id,
                argv,
                env,
                timeout,
                grace,
                cwd,
            } => {
                out.push(TAG_RUN);
                out.extend_from_slice(&id.to_le_bytes());
                let ms = |d: Duration| d.as_millis().min(u32::MAX as u128) as u32;
                out.extend_from_slice(&timeout.map_or(0, |t| ms(t).max(1)).to_le_bytes());
                out.extend_from_slice(&ms(*grace).to_le_bytes());
                out.extend_from_slice(&(argv.len() as u32).to_le_bytes());
                for a in argv {
                    put(&mut out, a.as_bytes());
                }
                out.extend_from_slice(&(env.len() as u32).to_le_bytes());
                for (k, v) in env {
                    put(&mut out, k.as_bytes());
                    put(&mut out, v.as_bytes());
                }
                put(
                    &mut out,
                    cwd.as_deref()
                        .map_or(&b""[..], |c| c.as_os_str().as_bytes()),
                );
            }
            Request::Signal(sig) => {
                out.push(TAG_SIGNAL);
                out.extend_from_slice(&(*sig as u32).to_le_bytes());
            }
            Request::Rules { id, text } => {
                out.push(TAG_RULES);
                out.extend_from_slice(&id.to_le_bytes());
                put(&mut out, text);
            }
            Request::Mirror { id, ops } => {
                out.push(TAG_MIRROR);
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&(ops.len() as u32).to_le_bytes());
                for op in ops {
                    match op {
                        Op::Sync { path, recursive } => {
                            out.push(u8::from(*recursive));
                            put(&mut out, path);
                        }
                        Op::Move { from, to } => {
                            out.push(2);
                            put(&mut out, from);
                            put(&mut out, to);
                        }
                    }
                }
            }
        }
        out
    }

    /// Parses one packet; every length is checked and nothing may trail.
    pub fn decode(b: &[u8]) -> Result<Request, String> {
        let mut r = Reader { b, at: 0 };
        let req = match r.u8()? {
            TAG_RUN => {
                let id = r.u64()?;
                let timeout = match r.u32()? {
                    0 => None,
                    ms => Some(Duration::from_millis(ms.into())),
                };
                let grace = Duration::from_millis(r.u32()?.into());
                let argc = r.count()?;
                if argc == 0 {
                    return Err("empty argv".into());
                }
                let mut argv = Vec::with_capacity(argc);
                for _ in 0..argc {
                    argv.push(OsString::from_vec(r.bytes()?.to_vec()));
                }
                let envc = r.count()?;
                let mut env = Vec::with_capacity(envc);
                for _ in 0..envc {
                    let k = r.bytes()?.to_vec();
                    let v = r.bytes()?.to_vec();
                    let ok_name = ((k.starts_with(b"CLSYNC_") || k.starts_with(b"LIVESYNC_"))
                        && k.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_'))
                        || (k == b"UNISON" && unison_state_dir(&v));
                    if !ok_name || v.contains(&0) {
                        return Err(format!(
                            "environment variable {} is not one livesync sets",
                            crate::path::display(&k)
                        ));
                    }
                    env.push((OsString::from_vec(k), OsString::from_vec(v)));
                }
                let cwd = match r.bytes()? {
                    b"" => None,
                    c if c.starts_with(b"/") && !c.contains(&0) => {
                        Some(PathBuf::from(OsString::from_vec(c.to_vec())))
                    }
                    _ => return Err("the working directory is not an absolute path".into()),
                };
                if argv.iter().any(|a| a.as_bytes().contains(&0)) {
                    return Err("an argument holds a NUL byte".into());
                }
                Request::Run {
                    id,
                    argv,
                    env,
                    timeout,
                    grace,
                    cwd,
                }
            }
            TAG_SIGNAL => {
                let sig = r.u32()? as i32;
                if sig != libc::SIGTERM && sig != libc::SIGKILL {
                    return Err(format!("signal {sig} is not SIGTERM or SIGKILL"));
                }
                Request::Signal(sig)
            }
            TAG_RULES => {
                let id = r.u64()?;
                let text = r.bytes()?.to_vec();
                Request::Rules { id, text }
            }
            TAG_MIRROR => {
                let id = r.u64()?;
                let n = r.count()?;
                let mut ops = Vec::with_capacity(n);
                for _ in 0..n {
                    let op = match r.u8()? {
                        k @ (0 | 1) => Op::Sync {
                            path: tree_path(r.bytes()?)?,
                            recursive: k == 1,
                        },
                        2 => Op::Move {
                            from: tree_path(r.bytes()?)?,
                            to: tree_path(r.bytes()?)?,
                        },
                        k => return Err(format!("unknown op {k}")),
                    };
                    ops.push(op);
                }
                Request::Mirror { id, ops }
            }
            t => return Err(format!("unknown request type {t}")),
        };
        if r.at != b.len() {
            return Err("trailing bytes after the request".into());
        }
        Ok(req)
    }
}

impl Reply {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Reply::Done { id, outcome } => {
                out.push(TAG_DONE);
                out.extend_from_slice(&id.to_le_bytes());
                let (kind, value, after, sig): (u8, i32, u64, i32) = match *outcome {
                    Outcome::Exited(c) => (0, c, 0, 0),
                    Outcome::Signaled(s) => (1, s, 0, 0),
                    Outcome::TimedOut { after, signal } => {
                        (2, 0, after.as_millis() as u64, signal.unwrap_or(-1))
                    }
                };
                out.push(kind);
                out.extend_from_slice(&value.to_le_bytes());
                out.extend_from_slice(&after.to_le_bytes());
                out.extend_from_slice(&sig.to_le_bytes());
            }
            Reply::Fail { id, kind, message } => {
                out.push(TAG_FAIL);
                out.extend_from_slice(&id.to_le_bytes());
                out.push(*kind);
                put(&mut out, message.as_bytes());
            }
            Reply::Report { id, report, failed } => {
                out.push(TAG_REPORT);
                out.extend_from_slice(&id.to_le_bytes());
                for n in [report.copied, report.deleted, report.renamed] {
                    out.extend_from_slice(&n.to_le_bytes());
                }
                for list in [&report.skipped, failed] {
                    out.extend_from_slice(&(list.len() as u32).to_le_bytes());
                    for i in list {
                        out.push(u8::from(i.recursive));
                        put(&mut out, &i.path);
                        put(&mut out, i.message.as_bytes());
                    }
                }
            }
        }
        out
    }

    pub fn decode(b: &[u8]) -> Result<Reply, String> {
        let mut r = Reader { b, at: 0 };
        let reply = match r.u8()? {
            TAG_DONE => {
                let id = r.u64()?;
                let kind = r.u8()?;
                let value = r.u32()? as i32;
                let after = r.u64()?;
                let sig = r.u32()? as i32;
                let outcome = match kind {
                    0 => Outcome::Exited(value),
                    1 => Outcome::Signaled(value),
                    2 => Outcome::TimedOut {
                        after: Duration::from_millis(after),
                        signal: (sig >= 0).then_some(sig),
                    },
                    k => return Err(format!("unknown outcome {k}")),
                };
                Reply::Done { id, outcome }
            }
            TAG_FAIL => {
                let id = r.u64()?;
                let kind = r.u8()?;
                let message = String::from_utf8_lossy(r.bytes()?).into_owned();
                Reply::Fail { id, kind, message }
            }
            TAG_REPORT => {
                let id = r.u64()?;
                let mut report = Report {
                    copied: r.u64()?,
                    deleted: r.u64()?,
                    renamed: r.u64()?,
                    ..Report::default()
                };
                report.skipped = r.issues()?;
                let failed = r.issues()?;
                Reply::Report { id, report, failed }
            }
            t => return Err(format!("unknown reply type {t}")),
        };
        if r.at != b.len() {
            return Err("trailing bytes after the reply".into());
        }
        Ok(reply)
    }
}

/// The private state dir `-M unison` names in `UNISON`:
/// `<tmp>/livesync-unison-<16 hex>` (see `handler::unison`).
pub(super) fn unison_state_dir(v: &[u8]) -> bool {
    let p = Path::new(std::ffi::OsStr::from_bytes(v));
    let (Some(parent), Some(name)) = (p.parent(), p.file_name()) else {
        return false;
    };
    let n = name.as_bytes();
    parent == std::env::temp_dir()
        && v.len() == parent.as_os_str().len() + 1 + n.len()
        && n.len() == 16 + 16
        && n.starts_with(b"livesync-unison-")
        && n[16..].iter().all(|c| c.is_ascii_hexdigit())
}

/// A path relative to the trees, as the mirror takes it: empty (the root)
/// or `/`-separated names, none empty, `.` or `..`, no NUL, no leading `/`.
pub(super) fn tree_path(b: &[u8]) -> Result<Vec<u8>, String> {
    let bad = b.contains(&0)
        || (!b.is_empty()
            && b.split(|&c| c == b'/')
                .any(|c| c.is_empty() || c == b"." || c == b".."));
    if bad {
        return Err(format!(
            "{} is not a path inside the tree",
            crate::path::display(b)
        ));
    }
    Ok(b.to_vec())
}

pub(super) struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len());
        let end = end.ok_or_else(|| "truncated packet".to_string())?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    /// A count, then per path: recursive flag, path, message.
    fn issues(&mut self) -> Result<Vec<PathIssue>, String> {
        let n = self.count()?;
        let mut out = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            let recursive = match self.u8()? {
                0 => false,
                1 => true,
                f => return Err(format!("bad recursive flag {f}")),
            };
            let path = tree_path(self.bytes()?)?;
            let message = String::from_utf8_lossy(self.bytes()?).into_owned();
            out.push(PathIssue {
                path,
                recursive,
                message,
            });
        }
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a))
    }
    fn u64(&mut self) -> Result<u64, String> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    fn count(&mut self) -> Result<usize, String> {
        let n = self.u32()? as usize;
        if n > MAX_ITEMS {
            return Err(format!("{n} items is more than {MAX_ITEMS}"));
        }
        Ok(n)
    }
    fn bytes(&mut self) -> Result<&[u8], String> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

/// A socketpair of `SOCK_SEQPACKET` sockets (close-on-exec).
pub fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid array of two ints.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptors we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Sends one packet.
pub fn send_packet(fd: RawFd, b: &[u8]) -> io::Result<()> {
    loop {
        // SAFETY: `b` is a valid buffer of `b.len()` bytes.
        let n = unsafe { libc::send(fd, b.as_ptr().cast(), b.len(), libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Receives one packet; None at EOF. A packet longer than [`MAX_PACKET`]
/// is an error.
pub fn recv_packet(fd: RawFd) -> io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; MAX_PACKET + 1];
    loop {
        // SAFETY: `buf` is a valid, writable buffer of its length.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_TRUNC) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let n = n as usize;
        if n == 0 {
            return Ok(None);
        }
        if n > MAX_PACKET {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("packet of {n} bytes is over the limit"),
            ));
        }
        buf.truncate(n);
        return Ok(Some(buf));
    }
}
