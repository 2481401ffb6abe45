//! Private directories in the temp dir: the list files' (when there is no
//! `-L`) and unison's state (`UNISON`).
//!
//! This module owns making them (mode 0700, a random name
//! `<prefix><16 hex>`, never an existing entry), holding an advisory lock
//! (flock) on each for as long as its owner lives, and sweeping away the
//! ones a killed livesync left behind: a directory with our prefix, owned
//! by us, older than [`SWEEP_AGE`] and not locked has no living owner
//! (the lock goes with the process, across pid namespaces too), so the
//! next livesync that makes one removes it. It must not touch what is not
//! ours: another user's entries, a symbolic link, a locked directory or a
//! name without the prefix are left alone. Removing a directory at its
//! owner's end is the owner's business ([`PrivateDir::path`] and
//! `fs::remove_dir_all`).

use crate::path;
use std::collections::hash_map::RandomState;
use std::fs::{self, DirBuilder, File};
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// A directory younger than this is never swept: its owner may be between
/// making it and locking it.
pub const SWEEP_AGE: Duration = Duration::from_secs(60);

/// A private directory, locked while this value lives.
#[derive(Debug)]
pub struct PrivateDir {
    path: PathBuf,
    /// Open on the directory with the lock held (closing it unlocks).
    _lock: File,
}

fn open_dir(p: &Path) -> io::Result<File> {
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(p)
}

/// Tries to take the exclusive lock of `f` without waiting.
fn try_lock(f: &File) -> io::Result<bool> {
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// Whether `name` is `<prefix><16 hex>`: a name [`sweep`] looks at.
pub(crate) fn ours(name: &[u8], prefix: &str) -> bool {
    name.strip_prefix(prefix.as_bytes())
        .is_some_and(|h| h.len() == 16 && h.iter().all(u8::is_ascii_hexdigit))
}

impl PrivateDir {
    /// Makes a fresh private directory `<parent>/<prefix><16 hex>` (after
    /// sweeping stale ones, see the module docs).
    pub fn create(parent: &Path, prefix: &str) -> io::Result<PrivateDir> {
        let swept = sweep(parent, prefix, SWEEP_AGE);
        if swept > 0 {
            log::info!(
                "removed {swept} private director{} ({prefix}*) left in {} by a livesync that did not end cleanly",
                if swept == 1 { "y" } else { "ies" },
                path::display_os(parent)
            );
        }
        let mut last = None;
        for _ in 0..100 {
            let mut h = RandomState::new().build_hasher();
            h.write_u32(std::process::id());
            let p = parent.join(format!("{prefix}{:016x}", h.finish()));
            match DirBuilder::new().mode(0o700).create(&p) {
                Ok(()) => {
                    // The umask may have taken bits away; set exactly 0700.
                    fs::set_permissions(&p, fs::Permissions::from_mode(0o700))?;
                    let lock = open_dir(&p)?;
                    if !try_lock(&lock)? {
                        return Err(io::Error::other(
                            "a fresh directory is locked by another process",
                        ));
                    }
                    return Ok(PrivateDir {
                        path: p,
                        _lock: lock,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no free name")))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Removes the stale private directories `<parent>/<prefix><16 hex>`
/// (see the module docs); returns how many. Errors are skipped: sweeping
/// is best effort.
pub fn sweep(parent: &Path, prefix: &str, min_age: Duration) -> usize {
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let Ok(entries) = fs::read_dir(parent) else {
        return 0;
    };
    let now = SystemTime::now();
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        if !ours(name.as_encoded_bytes(), prefix) {
            continue;
        }
        let p = e.path();
        let Ok(m) = fs::symlink_metadata(&p) else {
            continue;
        };
        let old = m
            .modified()
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age >= min_age);
        if !m.is_dir() || m.uid() != me || !old {
            continue;
        }
        let Ok(dir) = open_dir(&p) else {
            continue;
        };
        // The same directory we looked at, and not in use.
        let same = dir
            .metadata()
            .is_ok_and(|d| (d.dev(), d.ino()) == (m.dev(), m.ino()));
        if !same || !matches!(try_lock(&dir), Ok(true)) {
            continue;
        }
        match fs::remove_dir_all(&p) {
            Ok(()) => removed += 1,
            Err(err) => log::debug!("cannot remove stale {}: {err}", path::display_os(&p)),
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_dir_is_0700_locked_and_named_by_its_prefix() {
        let t = tempfile::tempdir().expect("tempdir");
        let d = PrivateDir::create(t.path(), "livesync-test-").expect("create");
        let m = fs::symlink_metadata(d.path()).expect("stat");
        assert_eq!(m.permissions().mode() & 0o7777, 0o700);
        let name = d
            .path()
            .file_name()
            .expect("name")
            .as_encoded_bytes()
            .to_vec();
        assert!(ours(&name, "livesync-test-"), "{name:?}");
        // Held: another open of it cannot take the lock.
        let other = open_dir(d.path()).expect("open");
        assert!(!try_lock(&other).expect("flock"));
    }

    #[test]
    fn only_stale_unlocked_dirs_of_ours_are_swept() {
        let t = tempfile::tempdir().expect("tempdir");
        let prefix = "livesync-lists-";
        // A live one (locked), a stale one (a killed owner's: unlocked,
        // with a list file in it), a name without 16 hex digits, and a
        // symbolic link with the prefix.
        let live = PrivateDir::create(t.path(), prefix).expect("live");
        let stale = t.path().join(format!("{prefix}00000000000000aa"));
        fs::create_dir(&stale).expect("mkdir");
        fs::write(stale.join("l.1.include"), "x\n").expect("write");
        let other = t.path().join(format!("{prefix}nothex"));
        fs::create_dir(&other).expect("mkdir");
        let target = t.path().join("target");
        fs::create_dir(&target).expect("mkdir");
        let link = t.path().join(format!("{prefix}00000000000000bb"));
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        // Everything is younger than a minute: nothing goes yet.
        assert_eq!(sweep(t.path(), prefix, SWEEP_AGE), 0);
        assert!(stale.exists());
        assert_eq!(sweep(t.path(), prefix, Duration::ZERO), 1);
        assert!(!stale.exists(), "the stale dir is gone");
        assert!(live.path().exists(), "a locked dir stays");
        assert!(other.exists() && target.exists() && link.symlink_metadata().is_ok());
        // Once its owner is gone, the live one is stale too.
        let p = live.path().to_path_buf();
        drop(live);
        assert_eq!(sweep(t.path(), prefix, Duration::ZERO), 1);
        assert!(!p.exists());
    }
}
