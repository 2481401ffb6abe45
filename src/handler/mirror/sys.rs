//! Descriptor-relative file system calls for the mirror engine.
//!
//! Every call here names an entry as (open directory descriptor, one name
//! without a slash) and none of them follows a symbolic link: directories are
//! opened with `O_DIRECTORY | O_NOFOLLOW`, files with `O_NOFOLLOW`, and
//! metadata is read and written with `AT_SYMLINK_NOFOLLOW` (glibc implements
//! `fchmodat(AT_SYMLINK_NOFOLLOW)` through an `O_PATH` descriptor, so a mode
//! change can never land on a link's target). This module holds no policy: it
//! does not know about rules, reports or which side (source or destination) a
//! descriptor belongs to, and it returns every error to the caller as an
//! `io::Error`.

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{self, AtFlags, OFlag};
use nix::sys::stat::{self, FchmodatFlags, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{self, Gid, Uid, UnlinkatFlags};
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStringExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Every temporary name this engine creates starts with this.
pub const TEMP_PREFIX: &[u8] = b".livesync.";

/// How many bytes of the target's name a temporary name carries (for a
/// human looking at a directory mid-copy; uniqueness comes from the suffix).
const TEMP_NAME_BYTES: usize = 40;

fn err(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// Takes ownership of a descriptor a successful system call just returned.
fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` was returned by a successful open/openat a moment ago and
    // nothing else holds it, so this is its only owner.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// The errno of `e`, if it carries one.
pub fn errno(e: &io::Error) -> Option<Errno> {
    e.raw_os_error().map(Errno::from_raw)
}

/// True when `e` says the entry is not there as a directory/file any more:
/// missing, a component is not a directory, or it is a symbolic link that we
/// refused to follow.
pub fn is_gone(e: &io::Error) -> bool {
    matches!(
        errno(e),
        Some(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP)
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileType {
    Regular,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDev,
    BlockDev,
}

impl FileType {
    pub fn name(self) -> &'static str {
        match self {
            FileType::Regular => "file",
            FileType::Dir => "directory",
            FileType::Symlink => "symlink",
            FileType::Fifo => "fifo",
            FileType::Socket => "socket",
            FileType::CharDev => "character device",
            FileType::BlockDev => "block device",
        }
    }

    fn sflag(self) -> SFlag {
        match self {
            FileType::Regular => SFlag::S_IFREG,
            FileType::Dir => SFlag::S_IFDIR,
            FileType::Symlink => SFlag::S_IFLNK,
            FileType::Fifo => SFlag::S_IFIFO,
            FileType::Socket => SFlag::S_IFSOCK,
            FileType::CharDev => SFlag::S_IFCHR,
            FileType::BlockDev => SFlag::S_IFBLK,
        }
    }
}

/// What an `lstat` says about one entry, in the engine's terms.
#[derive(Clone, Copy, Debug)]
pub struct Meta {
    pub ftype: FileType,
    /// Permission bits including setuid/setgid/sticky (`mode & 0o7777`).
    pub perm: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub atime: TimeSpec,
    pub mtime: TimeSpec,
    pub rdev: u64,
    pub dev: u64,
    pub ino: u64,
    /// How many names the inode has.
    pub nlink: u64,
}

impl Meta {
    fn from_stat(st: &libc::stat) -> io::Result<Meta> {
        let ftype = match st.st_mode & libc::S_IFMT {
            libc::S_IFREG => FileType::Regular,
            libc::S_IFDIR => FileType::Dir,
            libc::S_IFLNK => FileType::Symlink,
            libc::S_IFIFO => FileType::Fifo,
            libc::S_IFSOCK => FileType::Socket,
            libc::S_IFCHR => FileType::CharDev,
            libc::S_IFBLK => FileType::BlockDev,
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("unknown file type {other:#o}"),
                ))
            }
        };
        Ok(Meta {
            ftype,
            perm: mode_bits(st.st_mode) & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            size: st.st_size as u64,
            atime: TimeSpec::new(st.st_atime, st.st_atime_nsec),
            mtime: TimeSpec::new(st.st_mtime, st.st_mtime_nsec),
            // dev_t is i32 on macOS.
            #[allow(clippy::unnecessary_cast)]
            rdev: st.st_rdev as u64,
            #[allow(clippy::unnecessary_cast)]
            dev: st.st_dev as u64,
            ino: st.st_ino,
            // nlink_t is u16 on macOS.
            #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
            nlink: st.st_nlink as u64,
        })
    }

    pub fn is_dir(&self) -> bool {
        self.ftype == FileType::Dir
    }

    /// Device and inode: what identifies the entry on this machine.
    pub fn id(&self) -> (u64, u64) {
        (self.dev, self.ino)
    }
}

/// Opens a watch root (`src` or `dst` as configured: this one may be reached
/// through symbolic links, the user chose it).
pub fn open_root(path: &Path) -> io::Result<OwnedFd> {
    let fd = fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(err)?;
    Ok(owned(fd))
}

/// Opens the directory `name` inside `dir`, refusing anything that is not a
/// real directory (a symlink gives `ELOOP`, a file `ENOTDIR`).
pub fn open_dir(dir: RawFd, name: &[u8]) -> io::Result<OwnedFd> {
    let fd = fcntl::openat(
        Some(dir),
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(err)?;
    Ok(owned(fd))
}

/// `lstat` of `name` inside `dir`; `None` when it does not exist.
pub fn lstat_at(dir: RawFd, name: &[u8]) -> io::Result<Option<Meta>> {
    match stat::fstatat(Some(dir), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Meta::from_stat(&st).map(Some),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(err(e)),
    }
}

pub fn fstat(fd: RawFd) -> io::Result<Meta> {
    let st = stat::fstat(fd).map_err(err)?;
    Meta::from_stat(&st)
}

/// The names in the directory `dir` (without `.` and `..`), sorted bytewise.
/// Reads through a fresh open file description so that a directory descriptor
/// can be listed any number of times.
pub fn read_names(dir: RawFd) -> io::Result<Vec<Vec<u8>>> {
    let fd = open_dir(dir, b".")?;
    let mut stream = Dir::from(fd).map_err(err)?;
    let mut names = Vec::new();
    for entry in stream.iter() {
        let entry = entry.map_err(err)?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
    names.sort_unstable();
    Ok(names)
}

/// Opens a source file for reading without following a symlink and without
/// blocking if it turned into a fifo since it was looked at.
pub fn open_read(dir: RawFd, name: &[u8]) -> io::Result<File> {
    let fd = fcntl::openat(
        Some(dir),
        name,
        OFlag::O_RDONLY
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_NOCTTY
            | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(err)?;
    Ok(File::from(owned(fd)))
}

/// An unpredictable number for temporary names: std's `RandomState` is
/// seeded from the OS once per thread, so this costs no system call. A
/// collision only costs a retry (`O_EXCL`).
fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

/// `.livesync.<start of name>.<16 hex digits>`: a sibling name for building
/// `name` before renaming it into place.
pub fn temp_name(name: &[u8]) -> Vec<u8> {
    let keep = &name[..name.len().min(TEMP_NAME_BYTES)];
    let mut out = Vec::with_capacity(TEMP_PREFIX.len() + keep.len() + 17);
    out.extend_from_slice(TEMP_PREFIX);
    out.extend_from_slice(keep);
    out.extend_from_slice(format!(".{:016x}", random_u64()).as_bytes());
    out
}

/// Runs `make(temp)` with fresh temporary names until one does not collide
/// (`EEXIST`); returns the name that worked.
pub fn with_temp_name<T>(
    name: &[u8],
    mut make: impl FnMut(&[u8]) -> io::Result<T>,
) -> io::Result<(Vec<u8>, T)> {
    let mut last = io::Error::from_raw_os_error(libc::EEXIST);
    for _ in 0..16 {
        let temp = temp_name(name);
        match make(&temp) {
            Ok(v) => return Ok((temp, v)),
            Err(e) if errno(&e) == Some(Errno::EEXIST) => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// Creates a new temporary file next to `name` in `dir`: `O_EXCL`, mode 0600.
pub fn create_temp_file(dir: RawFd, name: &[u8]) -> io::Result<(Vec<u8>, File)> {
    with_temp_name(name, |temp| {
        let fd = fcntl::openat(
            Some(dir),
            temp,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(err)?;
        Ok(File::from(owned(fd)))
    })
}

/// Copies the whole of `from` into the empty file `to`, keeping holes: only
/// the ranges `SEEK_DATA`/`SEEK_HOLE` report as data are read and written,
/// and the length is set at the end, so a sparse source stays sparse (as
/// `cp` does). Where the file system does not report holes, every byte is
/// copied. The length is the source's when the copy ends.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn copy_sparse(from: &mut File, to: &mut File) -> io::Result<()> {
    copy_sparse_via(from, to, true)
}

/// [`copy_sparse`], with `in_kernel` false: through a buffer from the start
/// (what it falls back to where `copy_file_range` does not work).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(super) fn copy_sparse_via(from: &mut File, to: &mut File, in_kernel: bool) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let (ifd, mut buf, mut end) = (from.as_raw_fd(), Vec::new(), 0u64);
    let mut in_kernel = in_kernel;
    let mut off = 0u64;
    loop {
        let data = match seek(ifd, off, libc::SEEK_DATA) {
            Ok(d) => d,
            // No data at or after `off`: the rest is a hole.
            Err(e) if errno(&e) == Some(Errno::ENXIO) => break,
            // The file system cannot tell: copy everything.
            Err(e) if off == 0 && errno(&e) == Some(Errno::EINVAL) => {
                io::copy(from, to)?;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let hole = seek(ifd, data, libc::SEEK_HOLE)?;
        let mut pos = data;
        // In the kernel where it can (no copy through user space), else
        // through a buffer.
        while in_kernel && pos < hole {
            let want = usize::try_from(hole - pos)
                .unwrap_or(usize::MAX)
                .min(1 << 30);
            match copy_range(ifd, to.as_raw_fd(), pos, want) {
                Ok(0) => break, // truncated under us
                Ok(n) => pos += n as u64,
                Err(Errno::EINTR) => {}
                // Not between these two files (another file system, an
                // old kernel, a special file system): the buffer does it.
                Err(
                    Errno::EXDEV | Errno::ENOSYS | Errno::EINVAL | Errno::EOPNOTSUPP | Errno::EBADF,
                ) => in_kernel = false,
                Err(e) => return Err(err(e)),
            }
        }
        if pos < hole && buf.is_empty() {
            buf = vec![0u8; 256 * 1024];
        }
        while !in_kernel && pos < hole {
            let want = buf.len().min((hole - pos) as usize);
            let n = from.read_at(&mut buf[..want], pos)?;
            if n == 0 {
                break; // truncated under us
            }
            to.write_all_at(&buf[..n], pos)?;
            pos += n as u64;
        }
        end = end.max(pos);
        if pos < hole {
            break;
        }
        off = hole;
    }
    to.set_len(from.metadata()?.len().max(end))
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub fn copy_sparse(from: &mut File, to: &mut File) -> io::Result<()> {
    io::copy(from, to).map(|_| ())
}

/// `copy_file_range` of `len` bytes at `pos` in both files.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn copy_range(from: RawFd, to: RawFd, pos: u64, len: usize) -> Result<usize, Errno> {
    let start = libc::loff_t::try_from(pos).map_err(|_| Errno::EINVAL)?;
    let (mut i, mut o) = (start, start);
    // SAFETY: descriptors we hold and two offsets on our stack.
    let rc = unsafe { libc::copy_file_range(from, &mut i, to, &mut o, len, 0) };
    if rc < 0 {
        Err(Errno::last())
    } else {
        Ok(rc as usize)
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn seek(fd: RawFd, off: u64, whence: libc::c_int) -> io::Result<u64> {
    let off =
        libc::off_t::try_from(off).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: lseek on a descriptor we hold; no memory is passed.
    let rc = unsafe { libc::lseek(fd, off, whence) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as u64)
    }
}

pub fn unlink(dir: RawFd, name: &[u8]) -> io::Result<()> {
    unistd::unlinkat(Some(dir), name, UnlinkatFlags::NoRemoveDir).map_err(err)
}

/// `mode_t` is u32 on Linux and u16 on FreeBSD and macOS (these two keep
/// `cargo check --target x86_64-unknown-freebsd` building).
#[allow(clippy::unnecessary_cast)]
fn mode_bits(m: libc::mode_t) -> u32 {
    m as u32
}

#[allow(clippy::unnecessary_cast)]
fn mode(perm: u32) -> Mode {
    Mode::from_bits_truncate(perm as libc::mode_t)
}

pub fn rmdir(dir: RawFd, name: &[u8]) -> io::Result<()> {
    unistd::unlinkat(Some(dir), name, UnlinkatFlags::RemoveDir).map_err(err)
}

pub fn mkdir(dir: RawFd, name: &[u8], perm: u32) -> io::Result<()> {
    stat::mkdirat(Some(dir), name, mode(perm)).map_err(err)
}

pub fn rename(from_dir: RawFd, from: &[u8], to_dir: RawFd, to: &[u8]) -> io::Result<()> {
    fcntl::renameat(Some(from_dir), from, Some(to_dir), to).map_err(err)
}

/// The target of the symlink `name`, as raw bytes.
pub fn readlink(dir: RawFd, name: &[u8]) -> io::Result<Vec<u8>> {
    fcntl::readlinkat(Some(dir), name)
        .map(OsStringExt::into_vec)
        .map_err(err)
}

/// A new name `to` in `to_dir` for the entry `from` in `from_dir` (a hard
/// link; a symlink `from` is linked itself, never followed).
pub fn link(from_dir: RawFd, from: &[u8], to_dir: RawFd, to: &[u8]) -> io::Result<()> {
    unistd::linkat(Some(from_dir), from, Some(to_dir), to, AtFlags::empty()).map_err(err)
}

pub fn symlink(target: &[u8], dir: RawFd, name: &[u8]) -> io::Result<()> {
    unistd::symlinkat(target, Some(dir), name).map_err(err)
}

/// Creates a fifo, socket or device node (permissions are fixed afterwards:
/// `mknod` applies the umask).
pub fn mknod(dir: RawFd, name: &[u8], ftype: FileType, rdev: u64) -> io::Result<()> {
    let name =
        std::ffi::CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mode = ftype.sflag().bits() | 0o600;
    // dev_t is narrower than u64 on some systems (i32 on macOS): a device
    // number from this system's stat fits it.
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    let dev = rdev as libc::dev_t;
    // SAFETY: a NUL-terminated name relative to a descriptor we hold.
    let rc = unsafe { libc::mknodat(dir, name.as_ptr(), mode as libc::mode_t, dev) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn ids(uid: u32, gid: u32) -> (Option<Uid>, Option<Gid>) {
    (Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
}

pub fn fchown(fd: RawFd, uid: u32, gid: u32) -> io::Result<()> {
    let (u, g) = ids(uid, gid);
    unistd::fchown(fd, u, g).map_err(err)
}

pub fn fchmod(fd: RawFd, perm: u32) -> io::Result<()> {
    stat::fchmod(fd, mode(perm)).map_err(err)
}

pub fn futimens(fd: RawFd, atime: &TimeSpec, mtime: &TimeSpec) -> io::Result<()> {
    stat::futimens(fd, atime, mtime).map_err(err)
}

/// `lchown` relative to `dir`.
pub fn chown_at(dir: RawFd, name: &[u8], uid: u32, gid: u32) -> io::Result<()> {
    let (u, g) = ids(uid, gid);
    unistd::fchownat(Some(dir), name, u, g, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(err)
}

/// `chmod` of `name` in `dir` that never follows a symlink (never call it on
/// a symlink: Linux links have no mode and this fails with `EOPNOTSUPP`).
pub fn chmod_at(dir: RawFd, name: &[u8], perm: u32) -> io::Result<()> {
    stat::fchmodat(Some(dir), name, mode(perm), FchmodatFlags::NoFollowSymlink).map_err(err)
}

/// `lutimes` relative to `dir`, nanosecond precision.
pub fn utimes_at(dir: RawFd, name: &[u8], atime: &TimeSpec, mtime: &TimeSpec) -> io::Result<()> {
    stat::utimensat(
        Some(dir),
        name,
        atime,
        mtime,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(err)
}

/// The names of the extended attributes of the open file `fd` (any
/// namespace the caller may list). A file system without extended
/// attributes has none.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn xattr_names(fd: RawFd) -> io::Result<Vec<Vec<u8>>> {
    // SAFETY: the kernel writes at most `len` bytes into `buf`.
    let list = sized(|buf, len| unsafe { libc::flistxattr(fd, buf.cast(), len) });
    match list {
        Ok(list) => Ok(list
            .split(|&b| b == 0)
            .filter(|n| !n.is_empty())
            .map(<[u8]>::to_vec)
            .collect()),
        Err(e) if errno(&e) == Some(Errno::ENOTSUP) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// The value of the extended attribute `name` of `fd`; `None` when it has
/// none by that name.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn xattr_get(fd: RawFd, name: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let name = c_name(name)?;
    // SAFETY: a NUL-terminated name; the kernel writes at most `len` bytes.
    let got = sized(|buf, len| unsafe { libc::fgetxattr(fd, name.as_ptr(), buf.cast(), len) });
    match got {
        Ok(v) => Ok(Some(v)),
        Err(e) if errno(&e) == Some(Errno::ENODATA) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn xattr_set(fd: RawFd, name: &[u8], value: &[u8]) -> io::Result<()> {
    let name = c_name(name)?;
    // SAFETY: a NUL-terminated name and a buffer of `value.len()` bytes.
    let rc = unsafe { libc::fsetxattr(fd, name.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Removes the extended attribute `name` of `fd`; gone already is fine.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn xattr_remove(fd: RawFd, name: &[u8]) -> io::Result<()> {
    let name = c_name(name)?;
    // SAFETY: a NUL-terminated name.
    let rc = unsafe { libc::fremovexattr(fd, name.as_ptr()) };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if errno(&e) == Some(Errno::ENODATA) {
        Ok(())
    } else {
        Err(e)
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn c_name(name: &[u8]) -> io::Result<std::ffi::CString> {
    std::ffi::CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// Runs a list/get call that fills a buffer: asks for the size first and
/// grows the buffer while the value grows under us (`ERANGE`).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn sized(mut call: impl FnMut(*mut u8, usize) -> libc::ssize_t) -> io::Result<Vec<u8>> {
    for _ in 0..8 {
        let want = call(std::ptr::null_mut(), 0);
        if want < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; want as usize];
        let got = call(buf.as_mut_ptr(), buf.len());
        if got >= 0 {
            buf.truncate(got as usize);
            return Ok(buf);
        }
        let e = io::Error::last_os_error();
        if errno(&e) != Some(Errno::ERANGE) {
            return Err(e);
        }
    }
    Err(io::Error::from_raw_os_error(libc::ERANGE))
}

/// Elsewhere extended attributes are not copied (the BSDs' extattr API
/// differs): there are none to read, and nothing is ever written.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub fn xattr_names(_fd: RawFd) -> io::Result<Vec<Vec<u8>>> {
    Ok(Vec::new())
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub fn xattr_get(_fd: RawFd, _name: &[u8]) -> io::Result<Option<Vec<u8>>> {
    Ok(None)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub fn xattr_set(_fd: RawFd, _name: &[u8], _value: &[u8]) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub fn xattr_remove(_fd: RawFd, _name: &[u8]) -> io::Result<()> {
    Ok(())
}

/// The raw descriptor of anything that has one (shorthand for call sites).
pub fn raw(fd: &impl AsRawFd) -> RawFd {
    fd.as_raw_fd()
}
