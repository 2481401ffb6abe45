//! Control files: the pid file (`-z`), the status file (`--status-file`)
//! and the standby file (`--standby-file`).
//!
//! This module owns creating, rewriting and removing those files safely: the
//! pid file is created exclusively without following symlinks (a stale one,
//! naming a process that no longer runs, is replaced; a live one is an
//! error), the status file is replaced atomically (temp file + rename), and
//! both are removed when their guard is dropped, the pid file only while it
//! still holds our pid. It must not decide *when* a status changes; that is
//! the event loop's business.
//!
//! Every file created here is mode 0600 (readable by its owner, and root),
//! created with `O_EXCL|O_NOFOLLOW`. After the privilege drop the daemon
//! still replaces and removes these files as nobody: where nobody cannot
//! write their directory, `privilege.rs` keeps CAP_DAC_OVERRIDE for it.

use crate::path;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

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

/// The pid file; removed on drop if it still holds our pid.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    pid: u32,
}

/// The pid a pid file names, if it holds one.
fn read_pid(p: &Path) -> io::Result<Option<i32>> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
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

/// Creates `path` (which must not exist; symlinks are not followed) with
/// mode 0600 and writes `data` to it.
pub fn write_new_private(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    f.write_all(data)
}

impl PidFile {
    /// Creates `path` exclusively (mode 0600, symlinks not followed) and
    /// writes our pid to it. A file naming a process that runs is an error;
    /// a stale one is replaced.
    pub fn create(path: &Path) -> Result<PidFile, String> {
        let pid = std::process::id();
        for _ in 0..3 {
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(path)
            {
                Ok(mut f) => {
                    let guard = PidFile {
                        path: path.to_path_buf(),
                        pid,
                    };
                    f.write_all(format!("{pid}\n").as_bytes())
                        .map_err(|e| format!("cannot write pid file {}: {e}", shown(path)))?;
                    return Ok(guard);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    match read_pid(path) {
                        Ok(Some(other)) if other as u32 != pid && process_runs(other) => {
                            return Err(format!(
                                "pid file {} names process {other}, which is running: is another livesync using it? Stop it or choose another -z",
                                shown(path)
                            ));
                        }
                        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                            return Err(format!(
                                "pid file {} is a symlink; remove it or choose another -z",
                                shown(path)
                            ));
                        }
                        _ => {}
                    }
                    log::warn!("replacing stale pid file {}", shown(path));
                    match fs::remove_file(path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => {
                            return Err(format!(
                                "cannot remove stale pid file {}: {e}",
                                shown(path)
                            ))
                        }
                    }
                }
                Err(e) => {
                    return Err(format!(
                        "cannot create pid file {}: {e}; check the directory and its permissions",
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
    /// The path and the pid it holds, for whoever removes it instead of
    /// this guard (the `--chroot` keeper).
    pub fn keeper_view(&self) -> (PathBuf, u32) {
        (self.path.clone(), self.pid)
    }

    /// Leaves the removal to someone else (see [`PidFile::keeper_view`]).
    pub fn disown(self) {
        std::mem::forget(self);
    }
}

/// Removes the pid file `path` if it still holds `pid`.
pub fn remove_pid_file(path: &Path, pid: u32) {
    match read_pid(path) {
        Ok(Some(p)) if p as u32 == pid => {
            if let Err(e) = fs::remove_file(path) {
                log::warn!("cannot remove pid file {}: {e}", shown(path));
            }
        }
        Ok(_) => log::warn!(
            "pid file {} no longer holds our pid; left in place",
            shown(path)
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => log::warn!("cannot read pid file {}: {e}", shown(path)),
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        remove_pid_file(&self.path, self.pid);
    }
}

/// The status file; each [`StatusFile::set`] replaces it atomically, and it
/// is removed on drop.
#[derive(Debug)]
pub struct StatusFile {
    path: PathBuf,
    tmp: PathBuf,
    current: Option<Status>,
    /// Only the first write error is logged at warn level.
    warned: bool,
}

/// The status file's temp file, beside it.
fn tmp_beside(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "status".to_string());
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

impl StatusFile {
    pub fn new(path: &Path) -> StatusFile {
        StatusFile {
            path: path.to_path_buf(),
            tmp: tmp_beside(path),
            current: None,
            warned: false,
        }
    }

    /// The same file, now reached by `path` (after `--chroot`): nothing is
    /// written or removed.
    pub fn moved_to(&mut self, path: &Path) {
        self.tmp = tmp_beside(path);
        self.path = path.to_path_buf();
    }

    /// Writes `status` unless it is already the current one.
    pub fn set(&mut self, status: Status) {
        if self.current == Some(status) {
            return;
        }
        self.current = Some(status);
        if let Err(e) = self.write(status) {
            let msg = format!("cannot write status file {}: {e}", shown(&self.path));
            if self.warned {
                log::debug!("{msg}");
            } else {
                log::warn!("{msg}");
                self.warned = true;
            }
        }
    }

    fn write(&self, status: Status) -> io::Result<()> {
        match fs::remove_file(&self.tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&self.tmp)?;
        let r = f
            .write_all(format!("{}\n", status.as_str()).as_bytes())
            .and_then(|()| fs::rename(&self.tmp, &self.path));
        if r.is_err() {
            let _ = fs::remove_file(&self.tmp);
        }
        r
    }
}

impl Drop for StatusFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.tmp);
        match fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => log::warn!("cannot remove status file {}: {e}", shown(&self.path)),
        }
    }
}

/// Whether the standby file exists (a symlink counts; it is not followed).
pub fn standby(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
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
        // A file naming a live process (pid 1) is refused and left alone.
        fs::write(&p, "1\n").expect("write");
        let e = PidFile::create(&p).expect_err("live");
        assert!(e.contains("names process 1"), "{e}");
        assert_eq!(fs::read_to_string(&p).expect("read"), "1\n");
        // A stale one (garbage, or a pid that does not run) is replaced.
        fs::write(&p, "not a pid\n").expect("write");
        let g = PidFile::create(&p).expect("stale");
        // Someone else's pid in it by now: left in place.
        fs::write(&p, "1\n").expect("write");
        drop(g);
        assert!(p.exists());
        // A symlink is never followed.
        fs::remove_file(&p).expect("rm");
        std::os::unix::fs::symlink(t.path().join("target"), &p).expect("symlink");
        assert!(PidFile::create(&p).is_err());
        assert!(!t.path().join("target").exists());
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
