//! `--modification-signature`: skip syncing a path whose chosen `lstat`
//! fields have not changed since livesync last handed it to the handler.
//!
//! This module owns the field mask (parsed from clsync's spelling,
//! `dev,ino,mode,uid,gid,rdev,size,atime,mtime,ctime,blksize,blocks,nlink`,
//! `*` = the first ten) and the table of signatures last synced. It filters
//! a batch before it runs: only single-path syncs (`Op::Sync` without
//! `recursive`) of batches that never failed are dropped; recursive syncs,
//! renames and retries always run, and a path that cannot be `lstat`ed (it
//! was deleted) always syncs and is forgotten. A path is remembered from the
//! first time it is synced, so its first change after start always syncs.
//! It never touches the destination.

use crate::batch::{Batch, Op};
use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One `lstat` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Dev,
    Ino,
    Mode,
    Uid,
    Gid,
    Rdev,
    Size,
    Atime,
    Mtime,
    Ctime,
    Blksize,
    Blocks,
    Nlink,
}

const NAMES: [(&str, Field); 13] = [
    ("dev", Field::Dev),
    ("ino", Field::Ino),
    ("mode", Field::Mode),
    ("uid", Field::Uid),
    ("gid", Field::Gid),
    ("rdev", Field::Rdev),
    ("size", Field::Size),
    ("atime", Field::Atime),
    ("mtime", Field::Mtime),
    ("ctime", Field::Ctime),
    ("blksize", Field::Blksize),
    ("blocks", Field::Blocks),
    ("nlink", Field::Nlink),
];

/// Parses a mask such as `uid,gid` or `*`; empty means "off" (None).
pub fn parse_mask(s: &str) -> Result<Option<Vec<Field>>, String> {
    let mut out: Vec<Field> = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        if item == "*" {
            out.extend(NAMES[..10].iter().map(|(_, f)| *f));
            continue;
        }
        let f = NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(item))
            .map(|(_, f)| *f)
            .ok_or_else(|| {
                format!(
                    "--modification-signature: unknown field {item:?}; use a comma list of dev, ino, mode, uid, gid, rdev, size, atime, mtime, ctime, blksize, blocks, nlink, or *"
                )
            })?;
        out.push(f);
    }
    out.dedup();
    Ok((!out.is_empty()).then_some(out))
}

fn value(md: &std::fs::Metadata, f: Field) -> i64 {
    match f {
        Field::Dev => md.dev() as i64,
        Field::Ino => md.ino() as i64,
        Field::Mode => i64::from(md.mode()),
        Field::Uid => i64::from(md.uid()),
        Field::Gid => i64::from(md.gid()),
        Field::Rdev => md.rdev() as i64,
        Field::Size => md.size() as i64,
        Field::Atime => md.atime().wrapping_mul(1_000_000_000) + md.atime_nsec(),
        Field::Mtime => md.mtime().wrapping_mul(1_000_000_000) + md.mtime_nsec(),
        Field::Ctime => md.ctime().wrapping_mul(1_000_000_000) + md.ctime_nsec(),
        Field::Blksize => md.blksize() as i64,
        Field::Blocks => md.blocks() as i64,
        Field::Nlink => md.nlink() as i64,
    }
}

/// The signatures last handed to the handler.
pub struct Signatures {
    root: PathBuf,
    mask: Vec<Field>,
    seen: HashMap<Vec<u8>, Vec<i64>>,
}

impl Signatures {
    pub fn new(root: &Path, mask: Vec<Field>) -> Signatures {
        Signatures {
            root: root.to_path_buf(),
            mask,
            seen: HashMap::new(),
        }
    }

    fn signature(&self, rel: &[u8]) -> Option<Vec<i64>> {
        let p = if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(std::ffi::OsStr::from_bytes(rel))
        };
        let md = std::fs::symlink_metadata(p).ok()?;
        Some(self.mask.iter().map(|&f| value(&md, f)).collect())
    }

    /// Drops the single-path syncs of `batch` whose signature is unchanged
    /// and remembers the others'; returns how many ops were dropped.
    pub fn filter(&mut self, batch: &mut Batch) -> usize {
        if batch.attempt > 0 {
            return 0;
        }
        let before = batch.ops.len();
        let mut keep = Vec::with_capacity(before);
        for op in std::mem::take(&mut batch.ops) {
            let Op::Sync {
                path,
                recursive: false,
            } = &op
            else {
                keep.push(op);
                continue;
            };
            match self.signature(path) {
                None => {
                    self.seen.remove(path);
                    keep.push(op);
                }
                Some(sig) if self.seen.get(path) == Some(&sig) => {}
                Some(sig) => {
                    self.seen.insert(path.clone(), sig);
                    keep.push(op);
                }
            }
        }
        batch.ops = keep;
        before - batch.ops.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Lane;

    fn sync(p: &str) -> Op {
        Op::Sync {
            path: p.as_bytes().to_vec(),
            recursive: false,
        }
    }

    #[test]
    fn masks_parse() {
        assert_eq!(parse_mask("").expect("empty"), None);
        assert_eq!(
            parse_mask("uid, gid").expect("ok"),
            Some(vec![Field::Uid, Field::Gid])
        );
        assert_eq!(parse_mask("*").expect("ok").map(|v| v.len()), Some(10));
        assert!(parse_mask("uid,colour").is_err());
    }

    #[test]
    fn unchanged_paths_are_dropped_changed_and_retried_ones_kept() {
        let t = tempfile::tempdir().expect("tempdir");
        let f = t.path().join("f");
        std::fs::write(&f, "1").expect("write");
        let mut s = Signatures::new(t.path(), vec![Field::Size]);
        let batch = |attempt| Batch {
            ops: vec![
                sync("f"),
                sync("gone"),
                Op::Sync {
                    path: Vec::new(),
                    recursive: true,
                },
            ],
            lane: Lane::Normal,
            attempt,
            ..Default::default()
        };
        let mut b = batch(0);
        assert_eq!(s.filter(&mut b), 0, "first sight syncs");
        let mut b = batch(0);
        assert_eq!(s.filter(&mut b), 1, "same size: dropped");
        assert!(!b.ops.contains(&sync("f")));
        assert!(b.ops.contains(&sync("gone")), "a missing path always syncs");
        let mut b = batch(1);
        assert_eq!(s.filter(&mut b), 0, "a retry always runs");
        std::fs::write(&f, "22").expect("write");
        let mut b = batch(0);
        assert_eq!(s.filter(&mut b), 0, "size changed: synced");
    }
}
