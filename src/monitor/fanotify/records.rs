//! The byte layout of what `read(2)` returns from a fanotify group that
//! reports file handles (`FAN_REPORT_FID` / `FAN_REPORT_DFID_NAME`):
//! `fanotify_event_metadata` headers, each followed by info records
//! (`fanotify_event_info_fid` with an embedded `file_handle`, and for the
//! `*DFID_NAME` types a NUL-terminated entry name).
//!
//! This module only parses bytes into borrowed views. It never panics on
//! any input: a malformed header ends the buffer (its lengths cannot be
//! trusted), a malformed info record makes that one event an error. It does
//! no I/O, resolves nothing and decides nothing; that is `fanotify.rs`'s job.
//! Native byte order, as the kernel writes it.

use std::fmt;

/// `FANOTIFY_METADATA_VERSION` of every kernel since 2.6.37.
pub const METADATA_VERSION: u8 = 3;
/// `sizeof(struct fanotify_event_metadata)`.
pub const METADATA_LEN: usize = 24;
/// `sizeof(struct fanotify_event_info_header)`.
const INFO_HEADER_LEN: usize = 4;
/// `fsid` (8) + `file_handle.handle_bytes` (4) + `file_handle.handle_type` (4).
const FID_FIXED_LEN: usize = 16;
/// `MAX_HANDLE_SZ`: no file handle is longer.
pub const MAX_HANDLE_SZ: usize = 128;

/// `FAN_EVENT_INFO_TYPE_*` values this parser understands.
pub const INFO_FID: u8 = 1;
pub const INFO_DFID_NAME: u8 = 2;
pub const INFO_DFID: u8 = 3;
pub const INFO_OLD_DFID_NAME: u8 = 10;
pub const INFO_NEW_DFID_NAME: u8 = 12;

/// Which object an info record names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InfoKind {
    /// The object itself (`FAN_REPORT_FID`, or the target with
    /// `FAN_REPORT_TARGET_FID`).
    Fid,
    /// The parent directory and the entry's name.
    DfidName,
    /// The parent directory, no name.
    Dfid,
    /// `FAN_RENAME`: the directory and name the entry left.
    OldDfidName,
    /// `FAN_RENAME`: the directory and name the entry arrived at.
    NewDfidName,
}

impl InfoKind {
    fn from_type(t: u8) -> Option<InfoKind> {
        Some(match t {
            INFO_FID => InfoKind::Fid,
            INFO_DFID_NAME => InfoKind::DfidName,
            INFO_DFID => InfoKind::Dfid,
            INFO_OLD_DFID_NAME => InfoKind::OldDfidName,
            INFO_NEW_DFID_NAME => InfoKind::NewDfidName,
            _ => return None,
        })
    }

    fn has_name(self) -> bool {
        matches!(
            self,
            InfoKind::DfidName | InfoKind::OldDfidName | InfoKind::NewDfidName
        )
    }
}

/// One file-handle info record, borrowed from the read buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fid<'a> {
    pub kind: InfoKind,
    /// `__kernel_fsid_t` as raw bytes.
    pub fsid: [u8; 8],
    pub handle_type: i32,
    /// `file_handle.f_handle`, `handle_bytes` long.
    pub handle: &'a [u8],
    /// The entry name for the `*DFID_NAME` kinds (`.` for an event on the
    /// directory itself); `None` for the others.
    pub name: Option<&'a [u8]>,
}

/// One event: the metadata header and the records we understand (records
/// of other types, such as pidfd or error info, are skipped).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event<'a> {
    pub mask: u64,
    pub fd: i32,
    pub pid: i32,
    pub fids: Vec<Fid<'a>>,
}

impl<'a> Event<'a> {
    /// The first record of `kind`.
    pub fn fid(&self, kind: InfoKind) -> Option<&Fid<'a>> {
        self.fids.iter().find(|f| f.kind == kind)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordError {
    /// A header whose lengths do not fit: the rest of the buffer is skipped.
    BadHeader { offset: usize, why: &'static str },
    /// An info record that does not fit inside its event: the event is
    /// skipped, the next one is parsed.
    BadInfo { offset: usize, why: &'static str },
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::BadHeader { offset, why } => {
                write!(f, "malformed fanotify event header at byte {offset}: {why}")
            }
            RecordError::BadInfo { offset, why } => {
                write!(f, "malformed fanotify info record at byte {offset}: {why}")
            }
        }
    }
}

impl std::error::Error for RecordError {}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_ne_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

fn i32_at(b: &[u8], at: usize) -> Option<i32> {
    u32_at(b, at).map(|v| v as i32)
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_ne_bytes(a))
}

/// Iterates over the events in one read buffer.
pub struct Events<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// Parses the events in `buf` (what one `read` returned).
pub fn parse(buf: &[u8]) -> Events<'_> {
    Events { buf, pos: 0 }
}

impl<'a> Iterator for Events<'a> {
    type Item = Result<Event<'a>, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let start = self.pos;
        let rest = &self.buf[start..];
        let header = parse_header(rest, start);
        let (event_len, metadata_len, mask, fd, pid) = match header {
            Ok(h) => h,
            Err(e) => {
                self.pos = self.buf.len();
                return Some(Err(e));
            }
        };
        self.pos = start + event_len;
        let body = &rest[metadata_len..event_len];
        Some(parse_infos(body, start + metadata_len).map(|fids| Event {
            mask,
            fd,
            pid,
            fids,
        }))
    }
}

type Header = (usize, usize, u64, i32, i32);

fn parse_header(rest: &[u8], offset: usize) -> Result<Header, RecordError> {
    let bad = |why| RecordError::BadHeader { offset, why };
    if rest.len() < METADATA_LEN {
        return Err(bad("shorter than the metadata header"));
    }
    let event_len = u32_at(rest, 0).ok_or(bad("truncated"))? as usize;
    let vers = rest[4];
    let metadata_len = u16_at(rest, 6).ok_or(bad("truncated"))? as usize;
    if vers != METADATA_VERSION {
        return Err(bad("unknown metadata version"));
    }
    if metadata_len < METADATA_LEN || metadata_len > event_len {
        return Err(bad("metadata_len out of range"));
    }
    if event_len > rest.len() {
        return Err(bad("event_len runs past the buffer"));
    }
    let mask = u64_at(rest, 8).ok_or(bad("truncated"))?;
    let fd = i32_at(rest, 16).ok_or(bad("truncated"))?;
    let pid = i32_at(rest, 20).ok_or(bad("truncated"))?;
    Ok((event_len, metadata_len, mask, fd, pid))
}

fn parse_infos(body: &[u8], offset: usize) -> Result<Vec<Fid<'_>>, RecordError> {
    let mut fids = Vec::new();
    let mut at = 0usize;
    while at < body.len() {
        let bad = |why| RecordError::BadInfo {
            offset: offset + at,
            why,
        };
        let rec = &body[at..];
        if rec.len() < INFO_HEADER_LEN {
            return Err(bad("shorter than an info header"));
        }
        let info_type = rec[0];
        let len = u16_at(rec, 2).ok_or(bad("truncated"))? as usize;
        if len < INFO_HEADER_LEN || len > rec.len() {
            return Err(bad("info record length out of range"));
        }
        if let Some(kind) = InfoKind::from_type(info_type) {
            fids.push(parse_fid(kind, &rec[INFO_HEADER_LEN..len]).map_err(bad)?);
        }
        at += len;
    }
    Ok(fids)
}

fn parse_fid(kind: InfoKind, rec: &[u8]) -> Result<Fid<'_>, &'static str> {
    if rec.len() < FID_FIXED_LEN {
        return Err("fid record shorter than fsid + handle header");
    }
    let mut fsid = [0u8; 8];
    fsid.copy_from_slice(&rec[..8]);
    let handle_bytes = u32_at(rec, 8).ok_or("truncated")? as usize;
    let handle_type = i32_at(rec, 12).ok_or("truncated")?;
    if handle_bytes > MAX_HANDLE_SZ {
        return Err("handle_bytes larger than MAX_HANDLE_SZ");
    }
    let end = FID_FIXED_LEN + handle_bytes;
    let handle = rec
        .get(FID_FIXED_LEN..end)
        .ok_or("handle runs past its record")?;
    let name = if kind.has_name() {
        let tail = &rec[end..];
        let n = tail
            .iter()
            .position(|&b| b == 0)
            .ok_or("name is not NUL-terminated")?;
        Some(&tail[..n])
    } else {
        None
    };
    Ok(Fid {
        kind,
        fsid,
        handle_type,
        handle,
        name,
    })
}

/// Test-only encoder of the same layout, so tests can feed exact bytes.
#[cfg(test)]
pub mod encode {
    use super::*;

    /// Appends one info record (padded to 4 bytes, like the kernel does).
    pub fn fid(out: &mut Vec<u8>, info_type: u8, f: &Fid<'_>) {
        let mut body = Vec::new();
        body.extend_from_slice(&f.fsid);
        body.extend_from_slice(&(f.handle.len() as u32).to_ne_bytes());
        body.extend_from_slice(&f.handle_type.to_ne_bytes());
        body.extend_from_slice(f.handle);
        if let Some(name) = f.name {
            body.extend_from_slice(name);
            body.push(0);
        }
        while (body.len() + INFO_HEADER_LEN) % 4 != 0 {
            body.push(0);
        }
        out.push(info_type);
        out.push(0);
        out.extend_from_slice(&((body.len() + INFO_HEADER_LEN) as u16).to_ne_bytes());
        out.extend_from_slice(&body);
    }

    pub fn kind_type(k: InfoKind) -> u8 {
        match k {
            InfoKind::Fid => INFO_FID,
            InfoKind::DfidName => INFO_DFID_NAME,
            InfoKind::Dfid => INFO_DFID,
            InfoKind::OldDfidName => INFO_OLD_DFID_NAME,
            InfoKind::NewDfidName => INFO_NEW_DFID_NAME,
        }
    }

    /// One whole event.
    pub fn event(ev: &Event<'_>) -> Vec<u8> {
        let mut infos = Vec::new();
        for f in &ev.fids {
            fid(&mut infos, kind_type(f.kind), f);
        }
        let mut out = Vec::new();
        out.extend_from_slice(&((METADATA_LEN + infos.len()) as u32).to_ne_bytes());
        out.push(METADATA_VERSION);
        out.push(0);
        out.extend_from_slice(&(METADATA_LEN as u16).to_ne_bytes());
        out.extend_from_slice(&ev.mask.to_ne_bytes());
        out.extend_from_slice(&ev.fd.to_ne_bytes());
        out.extend_from_slice(&ev.pid.to_ne_bytes());
        out.extend_from_slice(&infos);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::encode;
    use super::*;
    use proptest::prelude::*;

    fn fid<'a>(kind: InfoKind, handle: &'a [u8], name: Option<&'a [u8]>) -> Fid<'a> {
        Fid {
            kind,
            fsid: [1, 2, 3, 4, 5, 6, 7, 8],
            handle_type: 0x81,
            handle,
            name,
        }
    }

    #[test]
    fn a_rename_event_round_trips_with_all_three_records() {
        let ev = Event {
            mask: 0x1000_0000 | 0x4000_0000,
            fd: -1,
            pid: 4242,
            fids: vec![
                fid(InfoKind::OldDfidName, b"dir-a-handle", Some(b"old name")),
                fid(InfoKind::NewDfidName, b"dir-b", Some(b"n\xffew")),
                fid(InfoKind::Fid, b"child!!!", None),
            ],
        };
        let mut buf = encode::event(&ev);
        // Two events back to back: the second one must be found too.
        let second = Event {
            mask: 0x100,
            fd: -1,
            pid: 1,
            fids: vec![fid(InfoKind::DfidName, b"h", Some(b"."))],
        };
        buf.extend_from_slice(&encode::event(&second));
        let got: Vec<_> = parse(&buf).collect();
        assert_eq!(got, vec![Ok(ev.clone()), Ok(second)]);
        let first = got[0].as_ref().expect("ok");
        assert_eq!(
            first.fid(InfoKind::NewDfidName).and_then(|f| f.name),
            Some(&b"n\xffew"[..])
        );
        assert!(first.fid(InfoKind::DfidName).is_none());
    }

    #[test]
    fn unknown_info_types_are_skipped_and_empty_events_are_fine() {
        let mut infos = Vec::new();
        // A pidfd record (type 4): header + an int.
        infos.extend_from_slice(&[4, 0, 8, 0]);
        infos.extend_from_slice(&7i32.to_ne_bytes());
        encode::fid(&mut infos, INFO_FID, &fid(InfoKind::Fid, b"abcd", None));
        let mut buf = encode::event(&Event {
            mask: 2,
            fd: -1,
            pid: 9,
            fids: vec![],
        });
        let len = (METADATA_LEN + infos.len()) as u32;
        buf[..4].copy_from_slice(&len.to_ne_bytes());
        buf.extend_from_slice(&infos);
        let got: Vec<_> = parse(&buf).collect();
        assert_eq!(got.len(), 1);
        let ev = got[0].as_ref().expect("ok");
        assert_eq!(ev.fids, vec![fid(InfoKind::Fid, b"abcd", None)]);
        // The overflow event has no records at all.
        let ovf = encode::event(&Event {
            mask: 0x4000,
            fd: -1,
            pid: 0,
            fids: vec![],
        });
        let got: Vec<_> = parse(&ovf).collect();
        assert_eq!(got[0].as_ref().map(|e| e.mask), Ok(0x4000));
    }

    #[test]
    fn a_bad_info_record_costs_only_its_event() {
        let mut bad = encode::event(&Event {
            mask: 0x100,
            fd: -1,
            pid: 1,
            fids: vec![fid(InfoKind::DfidName, b"hh", Some(b"x"))],
        });
        // Claim a handle longer than the record.
        bad[METADATA_LEN + 4 + 8..METADATA_LEN + 4 + 12].copy_from_slice(&64u32.to_ne_bytes());
        let good = encode::event(&Event {
            mask: 0x200,
            fd: -1,
            pid: 1,
            fids: vec![fid(InfoKind::DfidName, b"hh", Some(b"y"))],
        });
        let mut buf = bad;
        buf.extend_from_slice(&good);
        let got: Vec<_> = parse(&buf).collect();
        assert_eq!(got.len(), 2);
        assert!(matches!(got[0], Err(RecordError::BadInfo { .. })));
        assert_eq!(got[1].as_ref().map(|e| e.mask), Ok(0x200));
    }

    #[test]
    fn a_bad_header_ends_the_buffer() {
        let mut buf = encode::event(&Event {
            mask: 1,
            fd: -1,
            pid: 1,
            fids: vec![],
        });
        buf[4] = 2; // version
        buf.extend_from_slice(&buf.clone());
        let got: Vec<_> = parse(&buf).collect();
        assert_eq!(got.len(), 1);
        assert!(matches!(got[0], Err(RecordError::BadHeader { .. })));
        // event_len past the end, and a truncated tail.
        let mut long = encode::event(&Event {
            mask: 1,
            fd: -1,
            pid: 1,
            fids: vec![],
        });
        long[..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert!(matches!(
            parse(&long).next(),
            Some(Err(RecordError::BadHeader { .. }))
        ));
        assert!(matches!(
            parse(&long[..10]).next(),
            Some(Err(RecordError::BadHeader { .. }))
        ));
        // A name without its NUL.
        let mut infos = Vec::new();
        infos.extend_from_slice(&[INFO_DFID_NAME, 0, 24, 0]);
        infos.extend_from_slice(&[0; 8]);
        infos.extend_from_slice(&2u32.to_ne_bytes());
        infos.extend_from_slice(&1i32.to_ne_bytes());
        infos.extend_from_slice(b"hhab");
        let mut ev = encode::event(&Event {
            mask: 1,
            fd: -1,
            pid: 1,
            fids: vec![],
        });
        ev[..4].copy_from_slice(&((METADATA_LEN + infos.len()) as u32).to_ne_bytes());
        ev.extend_from_slice(&infos);
        assert!(matches!(
            parse(&ev).next(),
            Some(Err(RecordError::BadInfo { .. }))
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..512)) {
            let n = parse(&buf).count();
            prop_assert!(n <= buf.len() / METADATA_LEN + 1);
        }

        /// Valid-looking headers with arbitrary bodies reach the info parser.
        #[test]
        fn arbitrary_records_after_a_valid_header_never_panic(
            body in proptest::collection::vec(any::<u8>(), 0..256),
            mask in any::<u64>(),
        ) {
            let mut buf = encode::event(&Event { mask, fd: -1, pid: 1, fids: vec![] });
            buf[..4].copy_from_slice(&((METADATA_LEN + body.len()) as u32).to_ne_bytes());
            buf.extend_from_slice(&body);
            for ev in parse(&buf).flatten() {
                prop_assert_eq!(ev.mask, mask);
            }
        }

        #[test]
        fn encoded_events_round_trip(
            handle in proptest::collection::vec(any::<u8>(), 0..=MAX_HANDLE_SZ),
            name in proptest::collection::vec(1u8..=255, 0..64),
            kind in prop_oneof![
                Just(InfoKind::Fid), Just(InfoKind::DfidName), Just(InfoKind::Dfid),
                Just(InfoKind::OldDfidName), Just(InfoKind::NewDfidName)
            ],
            pid in any::<i32>(),
        ) {
            let named = kind.has_name().then_some(name.as_slice());
            let ev = Event { mask: 0x100, fd: -1, pid, fids: vec![fid(kind, &handle, named)] };
            let buf = encode::event(&ev);
            let got: Vec<_> = parse(&buf).collect();
            prop_assert_eq!(got, vec![Ok(ev)]);
        }
    }
}
