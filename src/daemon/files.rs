//! Control files: the pid file (`-z`), the status file (`--status-file`)
//! and the standby file (`--standby-file`), and the primitives every control
//! file livesync makes goes through (these, the metrics file, the dumps).
//!
//! This module owns creating, rewriting and removing those files safely.
//! Each one is reached through a descriptor on its directory, opened
//! without following a symlink in the directory's place; the file itself
//! is never opened through a symlink: it is written to a fresh temp file
//! beside it (`O_EXCL|O_NOFOLLOW`, a random name) and then renamed over it
//! (or, for the pid file, hard-linked to its name, so that creating it is
//! exclusive and atomic). A symlink at the file's name is replaced, never
//! followed. At exit a file is removed only while it is still the inode
//! livesync made (device and inode compared), never whatever someone put in
//! its place. The pid file: one naming a process that no longer runs, or a
//! process that is not a livesync, is replaced; one naming a running
//! livesync is an error. It must not decide *when* a status changes; that
//! is the event loop's business.
//!
//! Every file created here is mode 0600 (readable by its owner, and root)
//! unless its caller asks for another mode. After the privilege drop the
//! daemon still replaces and removes these files as nobody: where nobody
//! cannot write their directory, `privilege.rs` keeps CAP_DAC_OVERRIDE for
//! it.

use crate::path;
use std::collections::hash_map::RandomState;
use std::ffi::{CString, OsStr};
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Device and inode of a file livesync made: what it removes at exit must
/// still be this one.
pub type Ident = (u64, u64);

/// Attempts at a free temp name before giving up.
const TEMP_ATTEMPTS: u32 = 32;

/// A control file's directory and its name in it.
fn split(p: &Path) -> io::Result<(&Path, &OsStr)> {
    let name = p
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?;
    let dir = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    Ok((dir, name))
}

fn c_name(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the file name"))
}

/// Opens directory `dir` for `*at` calls; a symlink in its place is not
/// followed (ELOOP or ENOTDIR).
fn open_dir(dir: &Path) -> io::Result<OwnedFd> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir)?;
    Ok(OwnedFd::from(f))
}

/// What `name` in `dir` is (not following a symlink): its identity, and
/// whether it is a symlink. None if nothing is there.
fn stat_at(dir: RawFd, name: &CString) -> io::Result<Option<(Ident, bool)>> {
    // SAFETY: an all-zero stat is a valid value for fstatat to fill.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: name is NUL-terminated, st is ours.
    let rc = unsafe { libc::fstatat(dir, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::NotFound {
            Ok(None)
        } else {
            Err(e)
        };
    }
    let is_link = st.st_mode & libc::S_IFMT == libc::S_IFLNK;
    Ok(Some(((st.st_dev as u64, st.st_ino as u64), is_link)))
}

fn unlink_at(dir: RawFd, name: &CString) -> io::Result<()> {
    // SAFETY: name is NUL-terminated.
    if unsafe { libc::unlinkat(dir, name.as_ptr(), 0) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A fresh temp file beside `name` in `dir` (`.NAME.PID.RANDOM.tmp`,
/// `O_EXCL|O_NOFOLLOW`), holding `data`, with exactly `mode`. Returns the
/// open file and its name; on error nothing is left behind.
fn temp_with(dir: RawFd, name: &OsStr, data: &[u8], mode: u32) -> io::Result<(File, CString)> {
    let mut last = None;
    for _ in 0..TEMP_ATTEMPTS {
        let mut h = RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        let mut tmp = b".".to_vec();
        tmp.extend_from_slice(name.as_bytes());
        tmp.extend_from_slice(
            format!(".{}.{:016x}.tmp", std::process::id(), h.finish()).as_bytes(),
        );
        let tmp = c_name(OsStr::from_bytes(&tmp))?;
        match create_at(dir, &tmp, data, mode) {
            Ok(f) => return Ok((f, tmp)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AlreadyExists)))
}

/// Replaces `path` atomically with a new file holding `data` (mode `mode`):
/// a temp file in the same directory renamed over it. A symlink at `path`
/// is replaced, never followed. Returns the new file's identity.
pub fn replace_file(path: &Path, data: &[u8], mode: u32) -> io::Result<Ident> {
    let (dir, name) = split(path)?;
    let target = c_name(name)?;
    let dir = open_dir(dir)?;
    let (f, tmp) = temp_with(dir.as_raw_fd(), name, data, mode)?;
    // On disk before it takes the name: a crash never leaves an empty file
    // there (a collector would read it as no metrics).
    if let Err(e) = f.sync_data() {
        let _ = unlink_at(dir.as_raw_fd(), &tmp);
        return Err(e);
    }
    let meta = match f.metadata() {
        Ok(m) => m,
        Err(e) => {
            let _ = unlink_at(dir.as_raw_fd(), &tmp);
            return Err(e);
        }
    };
    // SAFETY: both names are NUL-terminated; both relative to our dir fd.
    let rc = unsafe {
        libc::renameat(
            dir.as_raw_fd(),
            tmp.as_ptr(),
            dir.as_raw_fd(),
            target.as_ptr(),
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        let _ = unlink_at(dir.as_raw_fd(), &tmp);
        return Err(e);
    }
    Ok((meta.dev(), meta.ino()))
}

/// Creates `path` holding `data` (mode `mode`) atomically and only if
/// nothing is there (AlreadyExists otherwise, a symlink included): a temp
/// file in the same directory hard-linked to the name. Returns its
/// identity.
pub fn create_file(path: &Path, data: &[u8], mode: u32) -> io::Result<Ident> {
    let (dir, name) = split(path)?;
    let target = c_name(name)?;
    let dir = open_dir(dir)?;
    let (f, tmp) = temp_with(dir.as_raw_fd(), name, data, mode)?;
    // SAFETY: both names are NUL-terminated; flags 0: a symlink is linked
    // as itself, never followed.
    let rc = unsafe {
        libc::linkat(
            dir.as_raw_fd(),
            tmp.as_ptr(),
            dir.as_raw_fd(),
            target.as_ptr(),
            0,
        )
    };
    let linked = if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    };
    let _ = unlink_at(dir.as_raw_fd(), &tmp);
    match linked {
        Ok(()) => {
            let meta = f.metadata()?;
            Ok((meta.dev(), meta.ino()))
        }
        // A file system without hard links (vfat, some FUSE): created in
        // place, still exclusively and never through a symlink.
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EPERM | libc::EOPNOTSUPP | libc::EMLINK)
            ) =>
        {
            let f = create_at(dir.as_raw_fd(), &target, data, mode)?;
            let meta = f.metadata()?;
            Ok((meta.dev(), meta.ino()))
        }
        Err(e) => Err(e),
    }
}

/// Creates `name` in `dir` exclusively, never through a symlink, with
/// exactly `mode`, holding `data`; removed again if writing fails.
fn create_at(dir: RawFd, name: &CString, data: &[u8], mode: u32) -> io::Result<File> {
    // SAFETY: name is NUL-terminated; the flags create a new file only.
    let fd = unsafe {
        libc::openat(
            dir,
            name.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o600 as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just opened and is ours alone.
    let mut f = unsafe { File::from_raw_fd(fd) };
    // fchmod: the umask may have taken bits away, or the caller wants more
    // than 0600.
    // SAFETY: fchmod on our own descriptor.
    let r = if unsafe { libc::fchmod(f.as_raw_fd(), mode as libc::mode_t) } == 0 {
        f.write_all(data)
    } else {
        Err(io::Error::last_os_error())
    };
    match r {
        Ok(()) => Ok(f),
        Err(e) => {
            let _ = unlink_at(dir, name);
            Err(e)
        }
    }
}

/// Removes `path` if it is still the file `ident` (never a symlink or a
/// file someone else put in its place). True if it was removed; false if
/// something else (or nothing) is there.
pub fn remove_if_same(path: &Path, ident: Ident) -> io::Result<bool> {
    let (dir, name) = split(path)?;
    let dir = match open_dir(dir) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let name = c_name(name)?;
    match stat_at(dir.as_raw_fd(), &name)? {
        Some((found, false)) if found == ident => {
            unlink_at(dir.as_raw_fd(), &name)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Creates `name` in directory `dir` exclusively (mode 0600, never through
/// a symlink, `dir` itself not a symlink) and writes `data` to it.
pub fn write_new_private_in(dir: &Path, name: &OsStr, data: &[u8]) -> io::Result<()> {
    let name = c_name(name)?;
    let d = open_dir(dir)?;
    create_at(d.as_raw_fd(), &name, data, 0o600).map(drop)
}

/// What livesync is doing, in clsync's words (see `--status-file`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Setting up: reading the config, adding watches.
    Starting,
    /// The initial sync is running (or being retried).
    InitSync,
    /// Waiting for events or syncing them.
    Running,
    /// Waiting to retry a failed sync.
    HandlerError,
    /// Syncs are held by the standby file.
    HoldOn,
    /// Reloading the rules and the config file (SIGHUP).
    Rehashing,
    /// Running the pre-exit hook.
    PreExit,
    /// Running the last syncs before exiting.
    Terminating,
    /// Running the exit hook and cleaning up.
    Exiting,
}

impl Status {
    /// The word written to the status file and to `CLSYNC_STATUS`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Starting => "starting",
            Status::InitSync => "initsync",
            Status::Running => "running",
            Status::HandlerError => "synchandler error",
            Status::HoldOn => "hold on",
            Status::Rehashing => "rehashing",
            Status::PreExit => "preexit",
            Status::Terminating => "terminating",
            Status::Exiting => "exiting",
        }
    }
}

fn shown(p: &Path) -> String {
    path::display_os(p)
}

/// The pid file; removed on drop if it is still the file we made.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    ident: Ident,
}

/// The pid a pid file names, if it holds one. A symlink is not followed
/// (ELOOP).
fn read_pid(p: &Path) -> io::Result<Option<i32>> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(p)?;
    let mut s = String::new();
    f.take(64).read_to_string(&mut s)?;
    Ok(s.trim().parse::<i32>().ok().filter(|&n| n > 0))
}

fn process_runs(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Whether process `pid` is a livesync: its command name or its program
/// is livesync's (the `--chroot` keeper and the helper are named
/// `livesync-…`). None when /proc cannot tell (hidepid, no /proc): the
/// caller must then assume it is.
pub fn is_livesync(pid: i32) -> Option<bool> {
    let ours = |name: &[u8]| name.starts_with(b"livesync");
    let comm = fs::read(format!("/proc/{pid}/comm")).ok();
    if comm.as_deref().is_some_and(|c| ours(c.trim_ascii())) {
        return Some(true);
    }
    // Our own program under another name (a copy, a symlink).
    if let (Ok(exe), Ok(me)) = (
        fs::read_link(format!("/proc/{pid}/exe")),
        fs::read_link("/proc/self/exe"),
    ) {
        let base = exe.file_name().map(|n| n.as_bytes().to_vec());
        if exe == me || base.as_deref().is_some_and(ours) {
            return Some(true);
        }
    }
    let argv0 = fs::read(format!("/proc/{pid}/cmdline"))
        .ok()
        .and_then(|c| c.split(|&b| b == 0).next().map(<[u8]>::to_vec));
    if let Some(a) = &argv0 {
        let base = a.rsplit(|&b| b == b'/').next().unwrap_or(a);
        if ours(base) {
            return Some(true);
        }
    }
    comm.map(|_| false)
}

/// Creates `path` exclusively, without following a symlink, mode 0600.
/// The dumps (`--dump-dir`) are written with it.
pub fn write_new_private(path: &Path, data: &[u8]) -> io::Result<()> {
    let (dir, name) = split(path)?;
    write_new_private_in(dir, name, data)
}

impl PidFile {
    /// Creates `path` (mode 0600, atomically, never through a symlink) and
    /// writes our pid to it. A file naming a running livesync is an error;
    /// a stale one (no pid, a process that is gone or not a livesync) and
    /// a symlink are replaced (the symlink's target is left alone).
    pub fn create(path: &Path) -> Result<PidFile, String> {
        let pid = std::process::id();
        let text = format!("{pid}\n");
        for _ in 0..3 {
            match create_file(path, text.as_bytes(), 0o600) {
                Ok(ident) => {
                    return Ok(PidFile {
                        path: path.to_path_buf(),
                        ident,
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    match read_pid(path) {
                        Ok(Some(other)) if other as u32 != pid && process_runs(other) => {
                            if is_livesync(other) != Some(false) {
                                return Err(format!(
                                    "pid file {} names process {other}, a running livesync: is another livesync using it? Stop it or choose another -z",
                                    shown(path)
                                ));
                            }
                            log::warn!(
                                "pid file {} names process {other}, which is not a livesync; replacing it",
                                shown(path)
                            );
                        }
                        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                            log::warn!(
                                "pid file {} is a symlink; replacing the link (its target is left alone)",
                                shown(path)
                            );
                        }
                        _ => log::warn!("replacing stale pid file {}", shown(path)),
                    }
                    match fs::remove_file(path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => {
                            return Err(format!(
                                "cannot remove stale pid file {}: {e}; remove it or choose another -z",
                                shown(path)
                            ))
                        }
                    }
                }
                Err(e) => {
                    return Err(format!(
                        "cannot create pid file {}: {e}; check the directory (not a symlink) and its permissions",
                        shown(path)
                    ))
                }
            }
        }
        Err(format!(
            "pid file {} keeps reappearing; is another livesync starting?",
            shown(path)
        ))
    }
}

impl PidFile {
    /// The path and the identity of the file, for whoever removes it
    /// instead of this guard (the `--chroot` keeper).
    pub fn keeper_view(&self) -> (PathBuf, Ident) {
        (self.path.clone(), self.ident)
    }

    /// Leaves the removal to someone else (see [`PidFile::keeper_view`]).
    pub fn disown(self) {
        std::mem::forget(self);
    }
}

/// Removes the pid file `path` if it is still the file `ident` we made.
pub fn remove_pid_file(path: &Path, ident: Ident) {
    match remove_if_same(path, ident) {
        Ok(true) => {}
        Ok(false) => {
            if fs::symlink_metadata(path).is_ok() {
                log::warn!(
                    "pid file {} is no longer the one livesync made; left in place",
                    shown(path)
                );
            }
        }
        Err(e) => log::warn!("cannot remove pid file {}: {e}", shown(path)),
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        remove_pid_file(&self.path, self.ident);
    }
}

/// The status file; each [`StatusFile::set`] replaces it atomically, and it
/// is removed on drop if it is still the last one written.
#[derive(Debug)]
pub struct StatusFile {
    path: PathBuf,
    current: Option<Status>,
    /// The file last written: what drop may remove.
    ident: Option<Ident>,
    /// Only the first write error is logged at warn level.
    warned: bool,
}

impl StatusFile {
    pub fn new(path: &Path) -> StatusFile {
        StatusFile {
            path: path.to_path_buf(),
            current: None,
            ident: None,
            warned: false,
        }
    }

    /// The same file, now reached by `path` (after `--chroot`): nothing is
    /// written or removed.
    pub fn moved_to(&mut self, path: &Path) {
        self.path = path.to_path_buf();
    }

    /// Writes `status` unless it is already the current one.
    pub fn set(&mut self, status: Status) {
        if self.current == Some(status) {
            return;
        }
        self.current = Some(status);
        let text = format!("{}\n", status.as_str());
        match replace_file(&self.path, text.as_bytes(), 0o600) {
            Ok(ident) => self.ident = Some(ident),
            Err(e) => {
                let msg = format!("cannot write status file {}: {e}", shown(&self.path));
                if self.warned {
                    log::debug!("{msg}");
                } else {
                    log::warn!("{msg}");
                    self.warned = true;
                }
            }
        }
    }
}

impl Drop for StatusFile {
    fn drop(&mut self) {
        if let Some(ident) = self.ident {
            if let Err(e) = remove_if_same(&self.path, ident) {
                log::warn!("cannot remove status file {}: {e}", shown(&self.path));
            }
        }
    }
}

/// Makes sure the directory `dir` (`-L`, `--dump-dir`, named `what` in
/// messages) exists, as clsync does: a missing one is created (one level,
/// mode 0700, owned by `owner` when given: the user the daemon becomes);
/// an existing one is left as it is. A symlink in its place, or anything
/// that is not a directory, is refused: livesync never follows one there.
pub fn ensure_dir(dir: &Path, what: &str, owner: Option<(u32, u32)>) -> Result<(), String> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_symlink() => Err(format!(
            "{what} {} is a symlink, which livesync does not follow; name the real directory",
            shown(dir)
        )),
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(format!(
            "{what} {} is not a directory; remove it or choose another path",
            shown(dir)
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let made = |e: io::Error| {
                format!(
                    "cannot create {what} {}: {e}; create it (mode 0700) or check its parent",
                    shown(dir)
                )
            };
            std::os::unix::fs::DirBuilderExt::mode(&mut fs::DirBuilder::new(), 0o700)
                .create(dir)
                .map_err(made)?;
            // Opened without following a symlink: what we just made, or
            // an error if it was swapped meanwhile.
            let d = open_dir(dir).map_err(made)?;
            // SAFETY: fchmod/fchown on our own descriptor.
            unsafe {
                if libc::fchmod(d.as_raw_fd(), 0o700) != 0 {
                    return Err(made(io::Error::last_os_error()));
                }
                if let Some((uid, gid)) = owner {
                    if libc::fchown(d.as_raw_fd(), uid, gid) != 0 {
                        return Err(made(io::Error::last_os_error()));
                    }
                }
            }
            log::info!("created {what} {} (mode 0700)", shown(dir));
            Ok(())
        }
        Err(e) => Err(format!(
            "{what} {}: {e}; check the path and its permissions",
            shown(dir)
        )),
    }
}

/// Whether the standby file exists (a symlink counts; it is not followed).
pub fn standby(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Renames a new file over `p` (made first, so that it cannot reuse
    /// the inode number of the file it replaces).
    fn put_another_file_at(p: &Path, text: &str) {
        let other = p.with_extension("other");
        fs::write(&other, text).expect("write");
        fs::rename(&other, p).expect("rename");
    }

    #[test]
    #[cfg(target_os = "linux")] // gettid, and /proc tells a livesync
    fn pid_file_is_exclusive_replaces_stale_and_is_removed() {
        let t = tempfile::tempdir().expect("tempdir");
        let p = t.path().join("x.pid");
        let g = PidFile::create(&p).expect("create");
        assert_eq!(
            fs::read_to_string(&p).expect("read"),
            format!("{}\n", std::process::id())
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&p).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        drop(g);
        assert!(!p.exists(), "removed on drop");
        // A file naming a running livesync is refused and left alone. (A
        // thread of ours named like one: a child process could be killed
        // by another test in this process.)
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let other = std::thread::Builder::new()
            .name("livesync-other".into())
            .spawn(move || {
                // SAFETY: gettid has no preconditions.
                let _ = tx.send(unsafe { libc::gettid() });
                let _ = stop_rx.recv();
            })
            .expect("thread");
        let opid = rx.recv().expect("tid");
        fs::write(&p, format!("{opid}\n")).expect("write");
        let e = PidFile::create(&p);
        let _ = stop_tx.send(());
        let _ = other.join();
        let e = e.expect_err("live");
        assert!(e.contains(&format!("names process {opid}")), "{e}");
        assert_eq!(fs::read_to_string(&p).expect("read"), format!("{opid}\n"));
        // A stale one (garbage, or a pid that does not run) is replaced.
        fs::write(&p, "not a pid\n").expect("write");
        let g = PidFile::create(&p).expect("stale");
        // Someone else's file in its place by now: left in place.
        put_another_file_at(&p, "1\n");
        drop(g);
        assert!(p.exists());
        // A symlink is never followed: the link is replaced, its target
        // (missing or not) is left alone.
        fs::remove_file(&p).expect("rm");
        std::os::unix::fs::symlink(t.path().join("target"), &p).expect("symlink");
        let g = PidFile::create(&p).expect("over a dangling link");
        assert!(!t.path().join("target").exists());
        drop(g);
        let target = t.path().join("precious");
        fs::write(&target, "keep me\n").expect("write");
        std::os::unix::fs::symlink(&target, &p).expect("symlink");
        let g = PidFile::create(&p).expect("over a link");
        assert!(fs::symlink_metadata(&p).expect("stat").is_file());
        assert_eq!(fs::read_to_string(&target).expect("read"), "keep me\n");
        drop(g);
        assert!(!p.exists());
        assert_eq!(fs::read_to_string(&target).expect("read"), "keep me\n");
    }

    #[test]
    fn a_pid_file_naming_a_live_process_that_is_not_livesync_is_replaced() {
        let t = tempfile::tempdir().expect("tempdir");
        let p = t.path().join("x.pid");
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let pid = child.id() as i32;
        assert_eq!(is_livesync(pid), Some(false));
        fs::write(&p, format!("{pid}\n")).expect("write");
        let g = PidFile::create(&p);
        let _ = child.kill();
        let _ = child.wait();
        let g = g.expect("replaced");
        assert_eq!(
            fs::read_to_string(&p).expect("read"),
            format!("{}\n", std::process::id())
        );
        drop(g);
    }

    #[test]
    fn a_pid_file_replaced_by_someone_else_is_not_removed() {
        let t = tempfile::tempdir().expect("tempdir");
        let p = t.path().join("x.pid");
        let g = PidFile::create(&p).expect("create");
        // Same content, another inode: not ours any more.
        put_another_file_at(&p, &format!("{}\n", std::process::id()));
        drop(g);
        assert!(p.exists(), "a file we did not make stays");
    }

    #[test]
    fn status_file_over_a_symlink_replaces_the_link_and_removes_only_its_own_file() {
        let t = tempfile::tempdir().expect("tempdir");
        let target = t.path().join("precious");
        fs::write(&target, "keep me\n").expect("write");
        let p = t.path().join("status");
        std::os::unix::fs::symlink(&target, &p).expect("symlink");
        let mut s = StatusFile::new(&p);
        s.set(Status::Starting);
        assert_eq!(fs::read_to_string(&target).expect("read"), "keep me\n");
        assert_eq!(fs::read_to_string(&p).expect("read"), "starting\n");
        drop(s);
        assert!(fs::symlink_metadata(&p).is_err(), "our own file is removed");
        assert_eq!(fs::read_to_string(&target).expect("read"), "keep me\n");
        // A link put in place of our file after the last write stays, and
        // so does its target.
        let mut s = StatusFile::new(&p);
        s.set(Status::Running);
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        fs::rename(&link, &p).expect("rename");
        drop(s);
        assert!(fs::symlink_metadata(&p)
            .expect("stat")
            .file_type()
            .is_symlink());
        assert_eq!(fs::read_to_string(&target).expect("read"), "keep me\n");
    }

    #[test]
    fn a_missing_dir_is_created_0700_and_a_symlink_or_file_refused() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().expect("tempdir");
        let d = t.path().join("lists");
        ensure_dir(&d, "lists dir", None).expect("created");
        let m = fs::symlink_metadata(&d).expect("stat");
        assert!(m.is_dir());
        assert_eq!(m.permissions().mode() & 0o7777, 0o700);
        // An existing one is left as it is.
        fs::set_permissions(&d, fs::Permissions::from_mode(0o750)).expect("chmod");
        ensure_dir(&d, "lists dir", None).expect("exists");
        let m = fs::symlink_metadata(&d).expect("stat");
        assert_eq!(m.permissions().mode() & 0o7777, 0o750);
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&d, &link).expect("symlink");
        let e = ensure_dir(&link, "dump dir", None).expect_err("symlink");
        assert!(e.contains("is a symlink") && e.contains("dump dir"), "{e}");
        let file = t.path().join("file");
        fs::write(&file, "").expect("write");
        let e = ensure_dir(&file, "dump dir", None).expect_err("file");
        assert!(e.contains("not a directory"), "{e}");
        let deep = t.path().join("no/such/dir");
        let e = ensure_dir(&deep, "lists dir", None).expect_err("no parent");
        assert!(e.contains("cannot create lists dir"), "{e}");
    }

    #[test]
    fn a_control_file_in_a_symlinked_directory_is_refused() {
        let t = tempfile::tempdir().expect("tempdir");
        let real = t.path().join("real");
        fs::create_dir(&real).expect("mkdir");
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        assert!(replace_file(&link.join("f"), b"x", 0o600).is_err());
        assert!(create_file(&link.join("f"), b"x", 0o600).is_err());
        assert!(write_new_private_in(&link, OsStr::new("f"), b"x").is_err());
        assert_eq!(fs::read_dir(&real).expect("ls").count(), 0);
    }

    #[test]
    fn status_file_is_replaced_and_removed() {
        let t = tempfile::tempdir().expect("tempdir");
        let p = t.path().join("status");
        let mut s = StatusFile::new(&p);
        s.set(Status::Starting);
        assert_eq!(fs::read_to_string(&p).expect("read"), "starting\n");
        s.set(Status::HandlerError);
        assert_eq!(fs::read_to_string(&p).expect("read"), "synchandler error\n");
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&p).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let names: Vec<_> = fs::read_dir(t.path()).expect("ls").collect();
        assert_eq!(names.len(), 1, "no temp file left behind");
        drop(s);
        assert!(!p.exists());
    }
}
