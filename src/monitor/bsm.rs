//! The BSM audit backend: a portable parser of BSM audit records (the
//! format of FreeBSD's audit trail and `/dev/auditpipe`), the mapping of
//! file-system `AUE_*` events onto [`RawEvent`]s, and, on FreeBSD only, a
//! reader of `/dev/auditpipe` behind the [`Monitor`] trait.
//!
//! The parser reads big-endian tokens (layouts as OpenBSM writes them: the
//! header32/header32_ex/header64(_ex) headers, path, attr32/attr64,
//! arg32/arg64, subject32/subject32_ex and the other subject/process forms,
//! return32/return64, text and the trailer, plus every other token whose
//! size can be computed, so that it can be stepped over). It never panics:
//! a record whose header is broken ends the stream, a record with a broken
//! or unknown token is reported as an error and skipped as a whole (its
//! length is in its header). The mapping ignores failed system calls (a
//! non-zero return status) and paths outside the watch root; it does no I/O
//! of its own (the caller passes how to tell a directory). Nothing here
//! configures the audit system: `audit_control` is never rewritten.

use super::{EventKind, RawEvent};

// Token ids (bsm/audit_record.h).
pub const AUT_OTHER_FILE32: u8 = 0x11;
pub const AUT_TRAILER: u8 = 0x13;
pub const AUT_HEADER32: u8 = 0x14;
pub const AUT_HEADER32_EX: u8 = 0x15;
pub const AUT_DATA: u8 = 0x21;
pub const AUT_IPC: u8 = 0x22;
pub const AUT_PATH: u8 = 0x23;
pub const AUT_SUBJECT32: u8 = 0x24;
pub const AUT_PROCESS32: u8 = 0x26;
pub const AUT_RETURN32: u8 = 0x27;
pub const AUT_TEXT: u8 = 0x28;
pub const AUT_OPAQUE: u8 = 0x29;
pub const AUT_IN_ADDR: u8 = 0x2a;
pub const AUT_IP: u8 = 0x2b;
pub const AUT_IPORT: u8 = 0x2c;
pub const AUT_ARG32: u8 = 0x2d;
pub const AUT_SEQ: u8 = 0x2f;
pub const AUT_IPC_PERM: u8 = 0x32;
pub const AUT_NEWGROUPS: u8 = 0x3b;
pub const AUT_EXEC_ARGS: u8 = 0x3c;
pub const AUT_EXEC_ENV: u8 = 0x3d;
pub const AUT_ATTR32: u8 = 0x3e;
pub const AUT_EXIT: u8 = 0x52;
pub const AUT_ZONENAME: u8 = 0x60;
pub const AUT_ARG64: u8 = 0x71;
pub const AUT_RETURN64: u8 = 0x72;
pub const AUT_ATTR64: u8 = 0x73;
pub const AUT_HEADER64: u8 = 0x74;
pub const AUT_SUBJECT64: u8 = 0x75;
pub const AUT_PROCESS64: u8 = 0x77;
pub const AUT_HEADER64_EX: u8 = 0x79;
pub const AUT_SUBJECT32_EX: u8 = 0x7a;
pub const AUT_PROCESS32_EX: u8 = 0x7b;
pub const AUT_SUBJECT64_EX: u8 = 0x7c;
pub const AUT_PROCESS64_EX: u8 = 0x7d;
pub const AUT_IN_ADDR_EX: u8 = 0x7e;
pub const AUT_SOCKET_EX: u8 = 0x7f;
pub const AUT_SOCKINET32: u8 = 0x80;
pub const AUT_SOCKINET128: u8 = 0x81;
pub const AUT_SOCKUNIX: u8 = 0x82;
pub const AUT_RIGHTS: u8 = 0x83;
pub const AUT_TRAILER_MAGIC: u16 = 0xb105;
/// `AU_IPv4` / `AU_IPv6`: an address type is the address length.
pub const AU_IPV4: u32 = 4;
pub const AU_IPV6: u32 = 16;

/// The `AUE_*` event numbers this backend maps (bsm/audit_kevents.h).
pub mod aue {
    pub const CREAT: u16 = 4;
    pub const LINK: u16 = 5;
    pub const UNLINK: u16 = 6;
    pub const MKNOD: u16 = 9;
    pub const CHMOD: u16 = 10;
    pub const CHOWN: u16 = 11;
    pub const SYMLINK: u16 = 21;
    pub const FCHOWN: u16 = 38;
    pub const FCHMOD: u16 = 39;
    pub const RENAME: u16 = 42;
    pub const TRUNCATE: u16 = 43;
    pub const FTRUNCATE: u16 = 44;
    pub const MKDIR: u16 = 47;
    pub const RMDIR: u16 = 48;
    pub const UTIMES: u16 = 49;
    /// `AUE_OPEN_R` … `AUE_OPEN_RWTC` are 72..=83; odd numbers carry
    /// `O_CREAT`, and 74/75, 78/79, 82/83 carry `O_TRUNC`.
    pub const OPEN_R: u16 = 72;
    pub const OPEN_WT: u16 = 78;
    pub const OPEN_RWC: u16 = 81;
    pub const OPEN_RWTC: u16 = 83;
    pub const CLOSE: u16 = 112;
    pub const LCHOWN: u16 = 237;
    /// `AUE_OPENAT_R` … `AUE_OPENAT_RWTC`, laid out like the open range.
    pub const OPENAT_R: u16 = 270;
    pub const OPENAT_WTC: u16 = 277;
    pub const OPENAT_RW: u16 = 278;
    pub const OPENAT_RWTC: u16 = 281;
    pub const RENAMEAT: u16 = 282;
    pub const FCHOWNAT: u16 = 284;
    pub const FUTIMESAT: u16 = 285;
    pub const UNLINKAT: u16 = 286;
    pub const MKFIFO: u16 = 43011;
    pub const FUTIMES: u16 = 43013;
    pub const LCHMOD: u16 = 43044;
    pub const LUTIMES: u16 = 43052;
    pub const FCHMODAT: u16 = 43146;
    pub const LINKAT: u16 = 43147;
    pub const MKDIRAT: u16 = 43148;
    pub const MKFIFOAT: u16 = 43149;
    pub const MKNODAT: u16 = 43150;
    pub const SYMLINKAT: u16 = 43152;
}

/// `attr32` / `attr64`: the vnode's attributes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attr {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub fsid: u32,
    pub node_id: u64,
    pub device: u64,
}

/// `arg32` / `arg64`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Arg {
    pub num: u8,
    pub value: u64,
    pub text: Vec<u8>,
}

/// `subject32` / `subject32_ex` / `subject64(_ex)`: who made the call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Subject {
    pub auid: u32,
    pub euid: u32,
    pub egid: u32,
    pub ruid: u32,
    pub rgid: u32,
    pub pid: u32,
    pub sid: u32,
    pub port: u64,
    /// 4 bytes (IPv4) or 16 (IPv6).
    pub addr: Vec<u8>,
}

/// `return32` / `return64`: `status` is the BSM errno, 0 on success.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Return {
    pub status: u8,
    pub value: u64,
}

/// One audit record: its header fields and the tokens this backend uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    pub version: u8,
    pub event: u16,
    pub modifier: u16,
    pub seconds: u64,
    pub msec: u64,
    /// `header32_ex` / `header64_ex` host address (empty otherwise).
    pub host: Vec<u8>,
    /// Path tokens in order: the first is the call's first path argument,
    /// the second (rename, link) its second.
    pub paths: Vec<Vec<u8>>,
    pub attrs: Vec<Attr>,
    pub args: Vec<Arg>,
    pub texts: Vec<Vec<u8>>,
    pub subject: Option<Subject>,
    pub ret: Option<Return>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BsmError {
    /// The stream cannot be followed past this point.
    #[error("broken BSM record header at byte {offset}: {why}")]
    Header { offset: usize, why: &'static str },
    /// This record is skipped; the next one is read.
    #[error("BSM record at byte {offset} skipped: {why} (token 0x{token:02x})")]
    Token {
        offset: usize,
        token: u8,
        why: &'static str,
    },
}

/// A big-endian cursor over one record; every read is checked.
struct Cur<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cur<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let s = self.b.get(self.at..end)?;
        self.at = end;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|s| s[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|s| u16::from_be_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8).map(|s| {
            let mut a = [0u8; 8];
            a.copy_from_slice(s);
            u64::from_be_bytes(a)
        })
    }
    /// A counted string: `len` bytes, NUL included; the NUL is dropped.
    fn counted(&mut self, len: usize) -> Option<Vec<u8>> {
        let s = self.take(len)?;
        let end = s.iter().position(|&c| c == 0).unwrap_or(s.len());
        Some(s[..end].to_vec())
    }
    fn cstr(&mut self) -> Option<&'a [u8]> {
        let rest = self.b.get(self.at..)?;
        let n = rest.iter().position(|&c| c == 0)?;
        self.take(n + 1).map(|s| &s[..n])
    }
    fn addr(&mut self) -> Option<Vec<u8>> {
        match self.u32()? {
            AU_IPV4 => self.take(4).map(<[u8]>::to_vec),
            AU_IPV6 => self.take(16).map(<[u8]>::to_vec),
            _ => None,
        }
    }
}

/// The header of the record starting at `buf[0]`: its total length.
fn record_len(buf: &[u8]) -> Result<usize, &'static str> {
    let id = *buf.first().ok_or("empty")?;
    if !matches!(
        id,
        AUT_HEADER32 | AUT_HEADER32_EX | AUT_HEADER64 | AUT_HEADER64_EX
    ) {
        return Err("not a header token");
    }
    let mut c = Cur { b: buf, at: 1 };
    let len = c.u32().ok_or("truncated header")? as usize;
    if len < 18 {
        return Err("record length shorter than a header");
    }
    if len > buf.len() {
        return Err("record runs past the buffer");
    }
    Ok(len)
}

/// Parses one whole record (header to trailer).
pub fn parse_record(rec: &[u8]) -> Result<Record, (u8, &'static str, usize)> {
    let mut c = Cur { b: rec, at: 0 };
    let mut r = Record::default();
    let short = |id: u8, at: usize| (id, "truncated token", at);
    let hid = c.u8().ok_or((0, "empty record", 0))?;
    let _len = c.u32().ok_or(short(hid, 1))?;
    r.version = c.u8().ok_or(short(hid, 5))?;
    r.event = c.u16().ok_or(short(hid, 6))?;
    r.modifier = c.u16().ok_or(short(hid, 8))?;
    match hid {
        AUT_HEADER32 | AUT_HEADER64 => {}
        AUT_HEADER32_EX | AUT_HEADER64_EX => {
            r.host = c.addr().ok_or((hid, "bad host address", 10))?;
        }
        _ => return Err((hid, "record does not start with a header", 0)),
    }
    if matches!(hid, AUT_HEADER32 | AUT_HEADER32_EX) {
        r.seconds = c.u32().ok_or(short(hid, c.at))? as u64;
        r.msec = c.u32().ok_or(short(hid, c.at))? as u64;
    } else {
        r.seconds = c.u64().ok_or(short(hid, c.at))?;
        r.msec = c.u64().ok_or(short(hid, c.at))?;
    }
    loop {
        let at = c.at;
        let Some(id) = c.u8() else {
            return Err((0, "no trailer", at));
        };
        let ok = token(&mut c, id, &mut r);
        match ok {
            Some(true) => return Ok(r),
            Some(false) => {}
            None => return Err((id, "unknown or truncated token", at)),
        }
    }
}

/// Reads one token's body into `r`. `Some(true)` at the trailer.
fn token(c: &mut Cur<'_>, id: u8, r: &mut Record) -> Option<bool> {
    match id {
        AUT_TRAILER => {
            if c.u16()? != AUT_TRAILER_MAGIC {
                return None;
            }
            c.u32()?;
            return Some(true);
        }
        AUT_PATH | AUT_TEXT | AUT_ATTR32 | AUT_ATTR64 | AUT_ARG32 | AUT_ARG64 | AUT_RETURN32
        | AUT_RETURN64 => file_token(c, id, r)?,
        AUT_SUBJECT32 | AUT_SUBJECT64 | AUT_SUBJECT32_EX | AUT_SUBJECT64_EX | AUT_PROCESS32
        | AUT_PROCESS64 | AUT_PROCESS32_EX | AUT_PROCESS64_EX => subject(c, id, r)?,
        _ => skip(c, id)?,
    }
    Some(false)
}

/// The tokens of a file event that land in `r` as they are: the paths,
/// texts, attributes, arguments and the return value.
fn file_token(c: &mut Cur<'_>, id: u8, r: &mut Record) -> Option<()> {
    match id {
        AUT_PATH => {
            let n = c.u16()? as usize;
            r.paths.push(c.counted(n)?);
        }
        AUT_TEXT => {
            let n = c.u16()? as usize;
            r.texts.push(c.counted(n)?);
        }
        AUT_ATTR32 | AUT_ATTR64 => {
            let mode = c.u32()?;
            let uid = c.u32()?;
            let gid = c.u32()?;
            let fsid = c.u32()?;
            let node_id = c.u64()?;
            let device = if id == AUT_ATTR32 {
                c.u32()? as u64
            } else {
                c.u64()?
            };
            r.attrs.push(Attr {
                mode,
                uid,
                gid,
                fsid,
                node_id,
                device,
            });
        }
        AUT_ARG32 | AUT_ARG64 => {
            let num = c.u8()?;
            let value = if id == AUT_ARG32 {
                c.u32()? as u64
            } else {
                c.u64()?
            };
            let n = c.u16()? as usize;
            let text = c.counted(n)?;
            r.args.push(Arg { num, value, text });
        }
        AUT_RETURN32 | AUT_RETURN64 => {
            let status = c.u8()?;
            let value = if id == AUT_RETURN32 {
                c.u32()? as u64
            } else {
                c.u64()?
            };
            r.ret = Some(Return { status, value });
        }
        _ => return None,
    }
    Some(())
}

/// A subject or process token (32/64-bit, with or without an extended
/// address); only a subject names the caller and lands in `r`.
fn subject(c: &mut Cur<'_>, id: u8, r: &mut Record) -> Option<()> {
    let mut s = Subject {
        auid: c.u32()?,
        euid: c.u32()?,
        egid: c.u32()?,
        ruid: c.u32()?,
        rgid: c.u32()?,
        pid: c.u32()?,
        sid: c.u32()?,
        ..Subject::default()
    };
    s.port = if matches!(
        id,
        AUT_SUBJECT64 | AUT_SUBJECT64_EX | AUT_PROCESS64 | AUT_PROCESS64_EX
    ) {
        c.u64()?
    } else {
        c.u32()? as u64
    };
    s.addr = if matches!(
        id,
        AUT_SUBJECT32_EX | AUT_SUBJECT64_EX | AUT_PROCESS32_EX | AUT_PROCESS64_EX
    ) {
        c.addr()?
    } else {
        c.take(4)?.to_vec()
    };
    // A process token names the target of a signal, not the caller.
    if matches!(
        id,
        AUT_SUBJECT32 | AUT_SUBJECT64 | AUT_SUBJECT32_EX | AUT_SUBJECT64_EX
    ) {
        r.subject = Some(s);
    }
    Some(())
}

/// Steps over a token whose content livesync does not use (only its size
/// matters here). None for a token it does not know.
fn skip(c: &mut Cur<'_>, id: u8) -> Option<()> {
    match id {
        AUT_ZONENAME | AUT_OPAQUE => {
            let n = c.u16()? as usize;
            c.take(n)?;
        }
        AUT_OTHER_FILE32 => {
            c.take(8)?;
            let n = c.u16()? as usize;
            c.take(n)?;
        }
        AUT_DATA => {
            c.u8()?;
            let unit = c.u8()?;
            let count = c.u8()? as usize;
            let size = match unit {
                0 => 1,
                1 => 2,
                2 => 4,
                3 => 8,
                _ => return None,
            };
            c.take(size * count)?;
        }
        AUT_IPC => {
            c.take(5)?;
        }
        AUT_IN_ADDR | AUT_SEQ => {
            c.take(4)?;
        }
        AUT_IP => {
            c.take(20)?;
        }
        AUT_IPORT => {
            c.take(2)?;
        }
        AUT_IPC_PERM => {
            c.take(28)?;
        }
        AUT_EXIT => {
            c.take(8)?;
        }
        AUT_NEWGROUPS => {
            let n = c.u16()? as usize;
            c.take(n * 4)?;
        }
        AUT_EXEC_ARGS | AUT_EXEC_ENV => {
            let n = c.u32()?;
            for _ in 0..n {
                c.cstr()?;
            }
        }
        AUT_IN_ADDR_EX => {
            c.addr()?;
        }
        AUT_SOCKET_EX => {
            c.take(4)?;
            let alen = match c.u16()? as u32 {
                AU_IPV4 => 4,
                AU_IPV6 => 16,
                _ => return None,
            };
            c.take(2 + alen + 2 + alen)?;
        }
        AUT_SOCKINET32 => {
            c.take(8)?;
        }
        AUT_SOCKINET128 => {
            c.take(20)?;
        }
        AUT_SOCKUNIX => {
            c.take(2)?;
            c.cstr()?;
        }
        AUT_RIGHTS => {
            c.take(16)?;
        }
        _ => return None,
    }
    Some(())
}

/// Iterates over the records in a byte stream (a trail file, or what
/// reads of `/dev/auditpipe` returned, one record per read).
pub struct Records<'a> {
    buf: &'a [u8],
    pos: usize,
}

pub fn records(buf: &[u8]) -> Records<'_> {
    Records { buf, pos: 0 }
}

impl Iterator for Records<'_> {
    type Item = Result<Record, BsmError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let start = self.pos;
        let rest = &self.buf[start..];
        let len = match record_len(rest) {
            Ok(n) => n,
            Err(why) => {
                self.pos = self.buf.len();
                return Some(Err(BsmError::Header { offset: start, why }));
            }
        };
        self.pos = start + len;
        Some(
            parse_record(&rest[..len]).map_err(|(token, why, at)| BsmError::Token {
                offset: start + at,
                token,
                why,
            }),
        )
    }
}

/// What an event does to its path(s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Certainly new (the call fails if the name exists).
    Create {
        dir: bool,
    },
    /// Content changed, or the entry may have been created (open with
    /// `O_CREAT`, which also opens an existing file).
    Write,
    Remove {
        dir: bool,
    },
    /// Metadata only.
    Attrib,
    /// A new name for an existing object: the first path is the object
    /// (its link count changed), the second the new name.
    Link,
    /// First path renamed to the second.
    Rename,
}

/// The effect of event `e`, or `None` for events this backend ignores.
pub fn effect(e: u16) -> Option<Effect> {
    use aue::*;
    Some(match e {
        CREAT => Effect::Write,
        OPEN_R..=OPEN_RWTC => open_effect(e - OPEN_R)?,
        OPENAT_R..=OPENAT_RWTC => open_effect(e - OPENAT_R)?,
        MKNOD | MKNODAT | MKFIFO | MKFIFOAT | SYMLINK | SYMLINKAT => Effect::Create { dir: false },
        MKDIR | MKDIRAT => Effect::Create { dir: true },
        UNLINK | UNLINKAT => Effect::Remove { dir: false },
        RMDIR => Effect::Remove { dir: true },
        LINK | LINKAT => Effect::Link,
        RENAME | RENAMEAT => Effect::Rename,
        TRUNCATE | FTRUNCATE | CLOSE => Effect::Write,
        CHMOD | FCHMOD | LCHMOD | FCHMODAT | CHOWN | FCHOWN | LCHOWN | FCHOWNAT | UTIMES
        | FUTIMES | LUTIMES | FUTIMESAT => Effect::Attrib,
        _ => return None,
    })
}

/// Within an open range: offset 0..=11 is R, RC, RT, RTC, W, WC, WT, WTC,
/// RW, RWC, RWT, RWTC. A plain read-only open changes nothing.
fn open_effect(off: u16) -> Option<Effect> {
    let creates = off % 2 == 1;
    let truncates = off % 4 >= 2;
    (creates || truncates).then_some(Effect::Write)
}

/// `abs` relative to `root` (both absolute, no trailing slash on root
/// unless it is `/`), or `None` when outside.
pub fn under_root<'a>(abs: &'a [u8], root: &[u8]) -> Option<&'a [u8]> {
    if root == b"/" {
        return abs.strip_prefix(b"/");
    }
    let rest = abs.strip_prefix(root)?;
    if rest.is_empty() {
        Some(rest)
    } else {
        rest.strip_prefix(b"/")
    }
}

/// Turns one record into events for the tree at `root`. Failed calls and
/// records without a return token are ignored, as are records caused by
/// `ignore_pid`. `is_dir` tells whether a path (relative to the root) is a
/// directory now; `cookie` numbers rename pairs.
pub fn map_record(
    rec: &Record,
    root: &[u8],
    ignore_pid: Option<u32>,
    is_dir: &dyn Fn(&[u8]) -> bool,
    cookie: u32,
    out: &mut Vec<RawEvent>,
) {
    let Some(ret) = rec.ret else { return };
    if ret.status != 0 {
        return;
    }
    if let (Some(p), Some(s)) = (ignore_pid, &rec.subject) {
        if s.pid == p {
            return;
        }
    }
    let Some(eff) = effect(rec.event) else { return };
    let rel = |i: usize| -> Option<Vec<u8>> {
        let p = rec.paths.get(i)?;
        under_root(p, root).map(<[u8]>::to_vec)
    };
    let push = |out: &mut Vec<RawEvent>, path: Vec<u8>, kind, dir: bool, cookie| {
        out.push(RawEvent {
            path,
            kind,
            is_dir: dir,
            cookie,
        });
    };
    match eff {
        Effect::Create { dir } => {
            if let Some(p) = rel(0) {
                push(out, p, EventKind::Created, dir, 0);
            }
        }
        Effect::Write => {
            if let Some(p) = rel(0) {
                let dir = is_dir(&p);
                if !dir {
                    push(out, p, EventKind::Modified, false, 0);
                }
            }
        }
        Effect::Remove { dir } => {
            if let Some(p) = rel(0) {
                push(out, p, EventKind::Removed, dir, 0);
            }
        }
        Effect::Attrib => {
            if let Some(p) = rel(0) {
                let dir = is_dir(&p);
                push(out, p, EventKind::Attrib, dir, 0);
            }
        }
        Effect::Link => {
            if let Some(p) = rel(0) {
                push(out, p, EventKind::Attrib, false, 0);
            }
            if let Some(p) = rel(1) {
                push(out, p, EventKind::Created, false, 0);
            }
        }
        Effect::Rename => match (rel(0), rel(1)) {
            (Some(from), Some(to)) => {
                let dir = is_dir(&to);
                push(out, from, EventKind::MovedFrom, dir, cookie);
                push(out, to, EventKind::MovedTo, dir, cookie);
            }
            (Some(from), None) => {
                // Left the tree: whether it was a directory is unknown now.
                push(out, from, EventKind::Removed, false, 0);
            }
            (None, Some(to)) => {
                let dir = is_dir(&to);
                push(out, to, EventKind::MovedTo, dir, 0);
            }
            (None, None) => {}
        },
    }
}

/// The backend as a trait object, for a `--monitor` factory: the
/// auditpipe reader on FreeBSD, [`MonitorError::Unavailable`] elsewhere.
pub fn open(
    root: &std::path::Path,
    _: &super::MonitorOptions,
) -> Result<Box<dyn super::Monitor>, super::MonitorError> {
    #[cfg(target_os = "freebsd")]
    {
        Ok(Box::new(reader::BsmMonitor::new(root)?))
    }
    #[cfg(not(target_os = "freebsd"))]
    {
        let _ = root;
        Err(super::MonitorError::Unavailable {
            backend: "bsm",
            reason: format!(
                "it reads FreeBSD's /dev/auditpipe, which this build for {} has not",
                std::env::consts::OS
            ),
        })
    }
}

#[cfg(target_os = "freebsd")]
pub use reader::BsmMonitor;

/// The `/dev/auditpipe` reader (FreeBSD).
#[cfg(target_os = "freebsd")]
mod reader {
    use super::*;
    use crate::monitor::{Monitor, MonitorError};
    use crate::path;
    use std::collections::BTreeSet;
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    use std::os::unix::ffi::OsStrExt;
    use std::path::{Path, PathBuf};

    const AUDITPIPE: &std::ffi::CStr = c"/dev/auditpipe";
    const IOC_OUT: libc::c_ulong = 0x4000_0000;
    const IOC_IN: libc::c_ulong = 0x8000_0000;
    const fn ioc(dir: libc::c_ulong, num: libc::c_ulong, len: usize) -> libc::c_ulong {
        dir | (((len as libc::c_ulong) & 0x1fff) << 16) | ((b'A' as libc::c_ulong) << 8) | num
    }
    const SET_QLIMIT: libc::c_ulong = ioc(IOC_IN, 3, 4);
    const GET_QLIMIT_MAX: libc::c_ulong = ioc(IOC_OUT, 5, 4);
    const SET_PRESELECT_FLAGS: libc::c_ulong = ioc(IOC_IN, 7, 8);
    const SET_PRESELECT_NAFLAGS: libc::c_ulong = ioc(IOC_IN, 9, 8);
    const SET_PRESELECT_MODE: libc::c_ulong = ioc(IOC_IN, 15, 4);
    const GET_DROPS: libc::c_ulong = ioc(IOC_OUT, 102, 8);
    const PRESELECT_MODE_LOCAL: libc::c_int = 2;
    /// Classes fw (write), fm (attributes), fc (create), fd (delete), cl
    /// (close), from /etc/security/audit_class.
    const CLASSES: u32 = 0x2 | 0x8 | 0x10 | 0x20 | 0x40;
    const READ_BUFFER: usize = 64 * 1024;

    #[repr(C)]
    struct AuMask {
        success: u32,
        failure: u32,
    }

    /// Watches a tree through the audit pipe. The kernel audits every
    /// process, so there are no per-directory watches: `add_watch` only
    /// remembers which directories the tree counts as watched.
    pub struct BsmMonitor {
        root: PathBuf,
        root_bytes: Vec<u8>,
        pipe: OwnedFd,
        dirs: BTreeSet<Vec<u8>>,
        drops: u64,
        cookie: u32,
        buf: Vec<u8>,
    }

    fn ioctl<T>(fd: &OwnedFd, req: libc::c_ulong, arg: *mut T) -> io::Result<()> {
        // SAFETY: req and the pointee type match the auditpipe ioctl table.
        if unsafe { libc::ioctl(fd.as_raw_fd(), req, arg) } < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    impl BsmMonitor {
        /// Opens the audit pipe with local preselection of successful
        /// file-system events. Auditing must be enabled in the kernel
        /// (auditd running); this never edits `audit_control`.
        pub fn new(root: &Path) -> Result<BsmMonitor, MonitorError> {
            let unavailable = |reason: String| MonitorError::Unavailable {
                backend: "bsm",
                reason,
            };
            // SAFETY: a constant NUL-terminated path.
            let fd = unsafe {
                libc::open(
                    AUDITPIPE.as_ptr(),
                    libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC,
                )
            };
            if fd < 0 {
                let e = io::Error::last_os_error();
                return Err(unavailable(format!(
                    "cannot open /dev/auditpipe: {e} (needs root and the audit(4) kernel option; start auditd)"
                )));
            }
            // SAFETY: fd is a fresh descriptor we own.
            let pipe = unsafe { OwnedFd::from_raw_fd(fd) };
            let setup = || -> io::Result<u64> {
                let mut mode = PRESELECT_MODE_LOCAL;
                ioctl(&pipe, SET_PRESELECT_MODE, &mut mode)?;
                let mut m = AuMask {
                    success: CLASSES,
                    failure: 0,
                };
                ioctl(&pipe, SET_PRESELECT_FLAGS, &mut m)?;
                let mut na = AuMask {
                    success: CLASSES,
                    failure: 0,
                };
                ioctl(&pipe, SET_PRESELECT_NAFLAGS, &mut na)?;
                let mut max: libc::c_uint = 0;
                if ioctl(&pipe, GET_QLIMIT_MAX, &mut max).is_ok() {
                    let _ = ioctl(&pipe, SET_QLIMIT, &mut max);
                }
                let mut drops: u64 = 0;
                ioctl(&pipe, GET_DROPS, &mut drops)?;
                Ok(drops)
            };
            let drops = setup()
                .map_err(|e| unavailable(format!("cannot configure /dev/auditpipe: {e}")))?;
            Ok(BsmMonitor {
                root: root.to_path_buf(),
                root_bytes: root.as_os_str().as_bytes().to_vec(),
                pipe,
                dirs: BTreeSet::new(),
                drops,
                cookie: 1,
                buf: vec![0; READ_BUFFER],
            })
        }
    }

    impl Monitor for BsmMonitor {
        fn add_watch(&mut self, rel: &[u8]) -> Result<(), MonitorError> {
            let abs = path::abs(&self.root, rel);
            match std::fs::symlink_metadata(&abs) {
                Ok(m) if m.is_dir() => {
                    self.dirs.insert(rel.to_vec());
                    Ok(())
                }
                _ => Err(MonitorError::Gone {
                    path: path::display_os(&abs),
                }),
            }
        }

        fn forget_subtree(&mut self, rel: &[u8]) {
            self.dirs.retain(|d| !path::is_under(d, rel));
        }

        fn read_events(&mut self, out: &mut Vec<RawEvent>) -> Result<(), MonitorError> {
            let me = std::process::id();
            loop {
                // SAFETY: buf is valid for its length.
                let n = unsafe {
                    libc::read(
                        self.pipe.as_raw_fd(),
                        self.buf.as_mut_ptr() as *mut libc::c_void,
                        self.buf.len(),
                    )
                };
                if n < 0 {
                    let e = io::Error::last_os_error();
                    match e.kind() {
                        io::ErrorKind::WouldBlock => break,
                        io::ErrorKind::Interrupted => continue,
                        _ => return Err(MonitorError::Read(e)),
                    }
                }
                if n == 0 {
                    break;
                }
                let root = self.root.clone();
                let is_dir = |rel: &[u8]| {
                    std::fs::symlink_metadata(path::abs(&root, rel)).is_ok_and(|m| m.is_dir())
                };
                for rec in records(&self.buf[..n as usize]) {
                    match rec {
                        Ok(rec) => {
                            map_record(&rec, &self.root_bytes, Some(me), &is_dir, self.cookie, out);
                            self.cookie = self.cookie.wrapping_add(1).max(1);
                        }
                        Err(e) => log::warn!("{e}"),
                    }
                }
                if out.len() >= 4096 {
                    break;
                }
            }
            let mut drops: u64 = 0;
            if ioctl(&self.pipe, GET_DROPS, &mut drops).is_ok() && drops != self.drops {
                self.drops = drops;
                out.push(RawEvent {
                    path: Vec::new(),
                    kind: EventKind::Rescan,
                    is_dir: true,
                    cookie: 0,
                });
            }
            Ok(())
        }

        fn fd(&self) -> RawFd {
            self.pipe.as_raw_fd()
        }

        fn watch_count(&self) -> usize {
            self.dirs.len()
        }

        fn watched_under(&self, rel: &[u8]) -> Vec<Vec<u8>> {
            self.dirs
                .iter()
                .filter(|d| path::is_under(d, rel))
                .cloned()
                .collect()
        }

        fn is_watched(&self, rel: &[u8]) -> bool {
            self.dirs.contains(rel)
        }
    }
}

/// A test-only encoder of the same tokens (big-endian, OpenBSM layouts).
#[cfg(test)]
pub mod encode {
    use super::*;

    pub enum Tok<'a> {
        Path(&'a [u8]),
        Text(&'a [u8]),
        Attr32(Attr),
        Attr64(Attr),
        Arg32(u8, u32, &'a [u8]),
        Arg64(u8, u64, &'a [u8]),
        Subject32(Subject),
        Subject32Ex(Subject),
        Return32(u8, u32),
        Return64(u8, u64),
        Zonename(&'a [u8]),
        Seq(u32),
    }

    #[derive(Clone, Copy)]
    pub enum Head<'a> {
        H32,
        H32Ex(&'a [u8]),
        H64,
    }

    fn counted(out: &mut Vec<u8>, s: &[u8]) {
        out.extend_from_slice(&((s.len() + 1) as u16).to_be_bytes());
        out.extend_from_slice(s);
        out.push(0);
    }

    fn addr(out: &mut Vec<u8>, a: &[u8]) {
        out.extend_from_slice(&(a.len() as u32).to_be_bytes());
        out.extend_from_slice(a);
    }

    fn subject_common(out: &mut Vec<u8>, s: &Subject) {
        for v in [s.auid, s.euid, s.egid, s.ruid, s.rgid, s.pid, s.sid] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(&(s.port as u32).to_be_bytes());
    }

    fn attr(out: &mut Vec<u8>, a: &Attr) {
        for v in [a.mode, a.uid, a.gid, a.fsid] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(&a.node_id.to_be_bytes());
    }

    pub fn tok(out: &mut Vec<u8>, t: &Tok<'_>) {
        match t {
            Tok::Path(p) => {
                out.push(AUT_PATH);
                counted(out, p);
            }
            Tok::Text(p) => {
                out.push(AUT_TEXT);
                counted(out, p);
            }
            Tok::Zonename(p) => {
                out.push(AUT_ZONENAME);
                counted(out, p);
            }
            Tok::Attr32(a) => {
                out.push(AUT_ATTR32);
                attr(out, a);
                out.extend_from_slice(&(a.device as u32).to_be_bytes());
            }
            Tok::Attr64(a) => {
                out.push(AUT_ATTR64);
                attr(out, a);
                out.extend_from_slice(&a.device.to_be_bytes());
            }
            Tok::Arg32(n, v, s) => {
                out.push(AUT_ARG32);
                out.push(*n);
                out.extend_from_slice(&v.to_be_bytes());
                counted(out, s);
            }
            Tok::Arg64(n, v, s) => {
                out.push(AUT_ARG64);
                out.push(*n);
                out.extend_from_slice(&v.to_be_bytes());
                counted(out, s);
            }
            Tok::Subject32(s) => {
                out.push(AUT_SUBJECT32);
                subject_common(out, s);
                out.extend_from_slice(&s.addr);
            }
            Tok::Subject32Ex(s) => {
                out.push(AUT_SUBJECT32_EX);
                subject_common(out, s);
                addr(out, &s.addr);
            }
            Tok::Return32(st, v) => {
                out.push(AUT_RETURN32);
                out.push(*st);
                out.extend_from_slice(&v.to_be_bytes());
            }
            Tok::Return64(st, v) => {
                out.push(AUT_RETURN64);
                out.push(*st);
                out.extend_from_slice(&v.to_be_bytes());
            }
            Tok::Seq(n) => {
                out.push(AUT_SEQ);
                out.extend_from_slice(&n.to_be_bytes());
            }
        }
    }

    /// A whole record: header, tokens, trailer, with both lengths right.
    pub fn record(head: Head<'_>, event: u16, secs: u32, toks: &[Tok<'_>]) -> Vec<u8> {
        let mut body = Vec::new();
        for t in toks {
            tok(&mut body, t);
        }
        let mut h = Vec::new();
        let id = match head {
            Head::H32 => AUT_HEADER32,
            Head::H32Ex(_) => AUT_HEADER32_EX,
            Head::H64 => AUT_HEADER64,
        };
        h.push(id);
        h.extend_from_slice(&[0; 4]);
        h.push(11);
        h.extend_from_slice(&event.to_be_bytes());
        h.extend_from_slice(&0u16.to_be_bytes());
        if let Head::H32Ex(a) = head {
            addr(&mut h, a);
        }
        match head {
            Head::H64 => {
                h.extend_from_slice(&(secs as u64).to_be_bytes());
                h.extend_from_slice(&250u64.to_be_bytes());
            }
            _ => {
                h.extend_from_slice(&secs.to_be_bytes());
                h.extend_from_slice(&250u32.to_be_bytes());
            }
        }
        let total = h.len() + body.len() + 7;
        h[1..5].copy_from_slice(&(total as u32).to_be_bytes());
        let mut out = h;
        out.extend_from_slice(&body);
        out.push(AUT_TRAILER);
        out.extend_from_slice(&AUT_TRAILER_MAGIC.to_be_bytes());
        out.extend_from_slice(&(total as u32).to_be_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::encode::{record, Head, Tok};
    use super::*;
    use proptest::prelude::*;

    fn subj(pid: u32) -> Subject {
        Subject {
            auid: 1001,
            euid: 0,
            egid: 0,
            ruid: 1001,
            rgid: 1001,
            pid,
            sid: 7,
            port: 0,
            addr: vec![127, 0, 0, 1],
        }
    }

    fn attr() -> Attr {
        Attr {
            mode: 0o100644,
            uid: 1001,
            gid: 1001,
            fsid: 0x5a,
            node_id: 123456789,
            device: 0xdead,
        }
    }

    fn one(buf: &[u8]) -> Record {
        let got: Vec<_> = records(buf).collect();
        assert_eq!(got.len(), 1, "{got:?}");
        got.into_iter().next().expect("one").expect("parses")
    }

    #[test]
    fn every_header_form_round_trips() {
        for (head, host) in [
            (Head::H32, vec![]),
            (Head::H32Ex(&[10, 0, 0, 1]), vec![10, 0, 0, 1]),
            (Head::H32Ex(&[0xfe; 16]), vec![0xfe; 16]),
            (Head::H64, vec![]),
        ] {
            let buf = record(
                head,
                aue::UNLINK,
                1_700_000_000,
                &[
                    Tok::Subject32(subj(42)),
                    Tok::Path(b"/w/a"),
                    Tok::Attr32(attr()),
                    Tok::Return32(0, 0),
                ],
            );
            let r = one(&buf);
            assert_eq!(r.event, aue::UNLINK);
            assert_eq!(r.version, 11);
            assert_eq!(r.seconds, 1_700_000_000);
            assert_eq!(r.msec, 250);
            assert_eq!(r.host, host);
            assert_eq!(r.paths, vec![b"/w/a".to_vec()]);
            assert_eq!(r.attrs, vec![attr()]);
            assert_eq!(r.subject, Some(subj(42)));
            assert_eq!(
                r.ret,
                Some(Return {
                    status: 0,
                    value: 0
                })
            );
        }
    }

    #[test]
    fn the_64_bit_and_ex_tokens_round_trip() {
        let mut s6 = subj(9);
        s6.addr = vec![0x20; 16];
        let mut a = attr();
        a.device = 0x1_0000_0001;
        let buf = record(
            Head::H64,
            aue::RENAMEAT,
            5,
            &[
                Tok::Subject32Ex(s6.clone()),
                Tok::Zonename(b"jail1"),
                Tok::Arg32(1, 3, b"at fd 1"),
                Tok::Arg64(2, u64::MAX, b"big"),
                Tok::Path(b"/w/from"),
                Tok::Attr64(a.clone()),
                Tok::Path(b"/w/to"),
                Tok::Text(b"note"),
                Tok::Seq(77),
                Tok::Return64(0, 1 << 40),
            ],
        );
        let r = one(&buf);
        assert_eq!(r.subject, Some(s6));
        assert_eq!(
            r.args,
            vec![
                Arg {
                    num: 1,
                    value: 3,
                    text: b"at fd 1".to_vec()
                },
                Arg {
                    num: 2,
                    value: u64::MAX,
                    text: b"big".to_vec()
                }
            ]
        );
        assert_eq!(r.attrs, vec![a]);
        assert_eq!(r.paths, vec![b"/w/from".to_vec(), b"/w/to".to_vec()]);
        assert_eq!(r.texts, vec![b"note".to_vec()]);
        assert_eq!(
            r.ret,
            Some(Return {
                status: 0,
                value: 1 << 40
            })
        );
    }

    #[test]
    fn a_bad_record_is_skipped_and_a_bad_header_ends_the_stream() {
        let good = record(
            Head::H32,
            aue::MKDIR,
            1,
            &[Tok::Path(b"/w/d"), Tok::Return32(0, 0)],
        );
        let mut bad = good.clone();
        // An unknown token id where the path token starts.
        bad[18] = 0xee;
        let mut stream = bad.clone();
        stream.extend_from_slice(&good);
        let got: Vec<_> = records(&stream).collect();
        assert_eq!(got.len(), 2);
        assert!(matches!(got[0], Err(BsmError::Token { token: 0xee, .. })));
        assert_eq!(got[1].as_ref().map(|r| r.event), Ok(aue::MKDIR));
        // A wrong trailer magic.
        let mut magic = good.clone();
        let n = magic.len();
        magic[n - 6] ^= 0xff;
        assert!(matches!(
            records(&magic).next(),
            Some(Err(BsmError::Token { .. }))
        ));
        // Not a header, and a length past the end.
        let mut junk = vec![0x23];
        junk.extend_from_slice(&good);
        let got: Vec<_> = records(&junk).collect();
        assert_eq!(got.len(), 1);
        assert!(matches!(got[0], Err(BsmError::Header { .. })));
        assert!(matches!(
            records(&good[..good.len() - 1]).next(),
            Some(Err(BsmError::Header { .. }))
        ));
    }

    fn map(rec_bytes: &[u8], dirs: &[&[u8]]) -> Vec<RawEvent> {
        let rec = one(rec_bytes);
        let mut out = Vec::new();
        let is_dir = |p: &[u8]| dirs.contains(&p);
        map_record(&rec, b"/w", Some(99), &is_dir, 5, &mut out);
        out
    }

    fn ev(path: &str, kind: EventKind, is_dir: bool, cookie: u32) -> RawEvent {
        RawEvent {
            path: path.as_bytes().to_vec(),
            kind,
            is_dir,
            cookie,
        }
    }

    fn rec(event: u16, paths: &[&[u8]], status: u8, pid: u32) -> Vec<u8> {
        let mut toks = vec![Tok::Subject32(subj(pid))];
        for p in paths {
            toks.push(Tok::Path(p));
            toks.push(Tok::Attr32(attr()));
        }
        toks.push(Tok::Return32(status, 0));
        record(Head::H32, event, 1, &toks)
    }

    #[test]
    fn file_events_map_to_raw_events() {
        use EventKind::*;
        type Case<'a> = (u16, Vec<&'a [u8]>, Vec<RawEvent>);
        let cases: Vec<Case<'_>> = vec![
            (
                aue::OPEN_RWC,
                vec![b"/w/f"],
                vec![ev("f", Modified, false, 0)],
            ),
            (
                aue::OPENAT_WTC,
                vec![b"/w/f"],
                vec![ev("f", Modified, false, 0)],
            ),
            (
                aue::OPEN_WT,
                vec![b"/w/f"],
                vec![ev("f", Modified, false, 0)],
            ),
            (aue::OPEN_R, vec![b"/w/f"], vec![]),
            (aue::OPENAT_RW, vec![b"/w/f"], vec![]),
            (aue::CREAT, vec![b"/w/f"], vec![ev("f", Modified, false, 0)]),
            (aue::CLOSE, vec![b"/w/f"], vec![ev("f", Modified, false, 0)]),
            (aue::CLOSE, vec![], vec![]),
            (
                aue::TRUNCATE,
                vec![b"/w/f"],
                vec![ev("f", Modified, false, 0)],
            ),
            (aue::UNLINK, vec![b"/w/f"], vec![ev("f", Removed, false, 0)]),
            (
                aue::UNLINKAT,
                vec![b"/w/f"],
                vec![ev("f", Removed, false, 0)],
            ),
            (aue::MKDIR, vec![b"/w/d"], vec![ev("d", Created, true, 0)]),
            (aue::MKDIRAT, vec![b"/w/d"], vec![ev("d", Created, true, 0)]),
            (aue::RMDIR, vec![b"/w/d"], vec![ev("d", Removed, true, 0)]),
            (aue::MKFIFO, vec![b"/w/p"], vec![ev("p", Created, false, 0)]),
            (
                aue::MKNODAT,
                vec![b"/w/n"],
                vec![ev("n", Created, false, 0)],
            ),
            (
                aue::SYMLINK,
                vec![b"/w/l"],
                vec![ev("l", Created, false, 0)],
            ),
            (
                aue::LINKAT,
                vec![b"/w/f", b"/w/g"],
                vec![ev("f", Attrib, false, 0), ev("g", Created, false, 0)],
            ),
            (aue::CHMOD, vec![b"/w/d"], vec![ev("d", Attrib, true, 0)]),
            (
                aue::FCHOWNAT,
                vec![b"/w/f"],
                vec![ev("f", Attrib, false, 0)],
            ),
            (
                aue::RENAME,
                vec![b"/w/d", b"/w/e"],
                vec![ev("d", MovedFrom, true, 5), ev("e", MovedTo, true, 5)],
            ),
            (
                aue::RENAMEAT,
                vec![b"/w/a", b"/elsewhere/a"],
                vec![ev("a", Removed, false, 0)],
            ),
            (
                aue::RENAMEAT,
                vec![b"/elsewhere/a", b"/w/b"],
                vec![ev("b", MovedTo, false, 0)],
            ),
            // Outside the root, or a sibling sharing its prefix.
            (aue::UNLINK, vec![b"/wx/f"], vec![]),
            (aue::UNLINK, vec![b"/elsewhere/f"], vec![]),
            // Not a file-system change.
            (aue::OPEN_R - 1, vec![b"/w/f"], vec![]),
        ];
        for (event, paths, want) in cases {
            let got = map(&rec(event, &paths, 0, 1), &[b"d", b"e"]);
            assert_eq!(got, want, "event {event} paths {paths:?}");
        }
    }

    #[test]
    fn failed_calls_and_the_daemons_own_calls_are_ignored() {
        assert!(map(&rec(aue::UNLINK, &[b"/w/f"], 2, 1), &[]).is_empty());
        assert!(map(&rec(aue::UNLINK, &[b"/w/f"], 0, 99), &[]).is_empty());
        // No return token at all: not trusted.
        let r = record(Head::H32, aue::UNLINK, 1, &[Tok::Path(b"/w/f")]);
        assert!(map(&r, &[]).is_empty());
        assert_eq!(map(&rec(aue::UNLINK, &[b"/w/f"], 0, 1), &[]).len(), 1);
    }

    #[cfg(not(target_os = "freebsd"))]
    #[test]
    fn the_reader_is_unavailable_off_freebsd() {
        match open(std::path::Path::new("/"), &Default::default()) {
            Err(crate::monitor::MonitorError::Unavailable { backend, reason }) => {
                assert_eq!(backend, "bsm");
                assert!(reason.contains("auditpipe"), "{reason}");
            }
            Err(e) => panic!("expected Unavailable, got {e}"),
            Ok(_) => panic!("no auditpipe here"),
        }
    }

    #[test]
    fn paths_are_taken_relative_to_the_root() {
        assert_eq!(under_root(b"/w", b"/w"), Some(&b""[..]));
        assert_eq!(under_root(b"/w/a/b", b"/w"), Some(&b"a/b"[..]));
        assert_eq!(under_root(b"/wa/b", b"/w"), None);
        assert_eq!(under_root(b"/x/y", b"/"), Some(&b"x/y"[..]));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..512)) {
            for r in records(&buf).flatten() {
                let mut out = Vec::new();
                map_record(&r, b"/", None, &|_| false, 1, &mut out);
            }
        }

        /// A valid header followed by arbitrary token bytes reaches every
        /// token parser.
        #[test]
        fn arbitrary_tokens_after_a_valid_header_never_panic(
            body in proptest::collection::vec(any::<u8>(), 0..512),
            first in any::<u8>(),
        ) {
            let mut buf = record(Head::H32, aue::CLOSE, 1, &[]);
            let trailer = buf.split_off(buf.len() - 7);
            buf.push(first);
            buf.extend_from_slice(&body);
            buf.extend_from_slice(&trailer);
            let total = buf.len() as u32;
            buf[1..5].copy_from_slice(&total.to_be_bytes());
            let n = records(&buf).count();
            prop_assert!(n >= 1);
        }

        #[test]
        fn encoded_records_round_trip(
            paths in proptest::collection::vec(proptest::collection::vec(1u8..=255, 0..40), 0..4),
            event in any::<u16>(),
            status in any::<u8>(),
            value in any::<u32>(),
            pid in any::<u32>(),
        ) {
            let mut toks = vec![Tok::Subject32(subj(pid))];
            for p in &paths {
                toks.push(Tok::Path(p));
            }
            toks.push(Tok::Return32(status, value));
            let buf = record(Head::H32, event, 3, &toks);
            let r = one(&buf);
            prop_assert_eq!(r.event, event);
            prop_assert_eq!(&r.paths, &paths);
            prop_assert_eq!(r.ret, Some(Return { status, value: value as u64 }));
            prop_assert_eq!(r.subject.map(|s| s.pid), Some(pid));
        }
    }
}
