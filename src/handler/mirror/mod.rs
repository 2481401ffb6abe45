//! The built-in mirror engine: makes a destination directory follow a source
//! directory with plain system calls, no external tool.
//!
//! It owns what happens inside `dst` for one batch of state-based ops
//! ([`Op`]): copies, deletes, renames and metadata. It does not decide *what*
//! changed (the queue does), never writes to `src`, never retries by itself
//! (a failed batch goes back to the queue; every op is idempotent) and touches
//! no process-global state (it reads the effective uid once, nothing more).
//!
//! **Symbolic links are never followed, on either side.** Every path is
//! resolved one component at a time from a descriptor of the root, opening
//! each directory with `O_DIRECTORY | O_NOFOLLOW` and naming the final entry
//! relative to its parent's descriptor (`openat`, `fstatat`, `renameat`, …
//! with `AT_SYMLINK_NOFOLLOW`; see `sys.rs`). So:
//! - a source path whose parent chain holds a symlink or a non-directory does
//!   not exist as far as the mirror is concerned: the op becomes a delete at
//!   the destination (a source `a -> /etc` plus an event for `a/passwd` never
//!   reads `/etc/passwd`);
//! - a destination symlink (or file) where the source has a directory, even
//!   one planted by someone else (`dst/a -> /etc`), is never written through:
//!   it is *replaced* by a real directory, as rsync does, which is what the
//!   source state asks for. We chose replacing over "refuse and report an
//!   error" because an error makes the queue retry the batch forever, while
//!   replacing is both safe (unlinking a link removes the link) and correct.
//!   When the rules protect that entry the op is skipped with a warning;
//! - because writes go through descriptors of directories that were opened
//!   without following links, swapping a destination directory for a symlink
//!   while a batch runs cannot redirect writes outside `dst` either.
//!
//! Files are copied into a temporary sibling (`.livesync.<name>.<random>`,
//! `O_EXCL`, mode 0600), given their final owner, mode and times, and renamed
//! over the target, so a half-written file is never visible under its name;
//! the temporary is removed on every failure path. Holes are kept: only the
//! ranges the source reports as data (`SEEK_DATA`/`SEEK_HOLE`) are written,
//! so a sparse file stays sparse. Symlinks, fifos, sockets
//! and device nodes are built under a temporary name the same way. Device
//! nodes are created with `mknod` when the kernel lets us (root with
//! `CAP_MKNOD`); otherwise the entry is skipped with a warning, not an error,
//! because retrying cannot help.
//!
//! Hard links stay links: the first name of a multi-link source file that a
//! batch puts in place is remembered by its source inode, and each other name
//! of that inode in the same batch is made a link to it (copied only when the
//! destination cannot link). The batch must name them all: the tree adds the
//! other known names of a changed multi-link file (see `crate::tree`), and a
//! recursive sync walks them all.
//!
//! Extended attributes and POSIX ACLs of files and directories are copied
//! only when asked (`--xattrs`, `--acls`, rsync's `-X` and `-A`; off by
//! default as in clsync), read and written through descriptors; symlinks and
//! special files keep none (Linux allows `user.*` on neither). A copied
//! namespace is mirrored whole: attributes the source lost are removed.
//!
//! Directory metadata (mode, owner, times) is set after the directory's
//! contents are done: bottom-up inside a recursive sync, and at the end of the
//! batch for every directory an op created or changed entries in, so
//! directory mtimes do not drift. New directories are created 0700 and get
//! their real mode then. Ownership is copied when `preserve_owner` is on (by
//! default: when running as euid 0).
//!
//! Order: renames go first (in order), then every op whose source path is
//! gone (deletions), then the copies, so that deletions that free space
//! at a full destination are never stuck behind a copy that needs it. Ops
//! are state based and name each path once, so a path deleted and made
//! again ends as the source has it.
//!
//! Errors: a source entry that vanishes or changes type mid-op is not a
//! failure (the op re-reads it and deletes or syncs what is there now; a
//! later event follows anyway). A source entry we may not read (`EACCES`,
//! `EPERM`) is skipped and listed in the report. An error that concerns one
//! entry (a full or over-quota destination, a name too long, the injected
//! failure of the tests) fails that entry only: the batch goes on and
//! returns [`HandlerError::Paths`] naming them, so the queue retries just
//! those, each with its own backoff. Past [`MAX_FAILED`] such entries, the
//! ops not yet run fail as a whole. An error that says the destination as a
//! whole is unusable (read-only, `EIO`, a stale or lost network mount, out
//! of descriptors or memory) stops the batch at once; the queue retries the
//! whole batch.
//!
//! Rules: an entry is created, updated or deleted only when the rules permit
//! `Action::Sync` for its kind, a directory is descended only when they
//! permit `Action::Walk`, and destination entries the rules exclude are left
//! alone, never deleted (a directory that still holds such entries is kept;
//! a renamed directory takes them along). The root itself is always synced.
//!
//! The destination root is opened once, on the first batch (or handed in
//! with [`Mirror::with_root`], opened before privileges were dropped), and
//! that descriptor is held for the engine's life: every write goes through
//! it. Each batch opens the configured path again and compares device and
//! inode; when the path now leads somewhere else (someone renamed the
//! destination away and put a symlink or another directory there) or
//! nowhere, the batch fails with [`HandlerError::DestinationChanged`] and
//! nothing is written, neither through the new path nor into the old
//! directory: the caller stops syncing that destination.
//!
//! The source side never enters the destination: a source directory whose
//! device and inode are the destination root's (a bind mount of the
//! destination inside the source, or the destination itself when it lies
//! inside the source) is skipped with one warning, so a destination inside
//! the source can never nest copies of itself; likewise a destination
//! directory that is the source root is neither written nor deleted in.
//!
//! Cost: within a batch, directory descriptors are cached per relative path
//! (both sides), so a storm of files in a few directories costs about a dozen
//! system calls per file and no re-resolution of ancestors. A moved
//! directory costs one `rename` plus an `lstat` compare per entry below it.

mod dry; // --dry-run: the same questions, answered read-only and logged
mod sys;
#[cfg(test)]
mod tests;

use super::{Handler, HandlerError, Report};
use crate::batch::{Batch, Op};
use crate::path;
use crate::rules::{Action, Kind, Rules};
use nix::errno::Errno;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use sys::{errno, is_gone, raw, FileType, Meta};

/// How many directory descriptors per side one batch keeps open for reuse.
const DIR_CACHE: usize = 128;

/// How often one entry is re-read when the source keeps changing its type
/// under us before we leave it to the next event.
const ATTEMPTS: usize = 3;

/// How many entries one batch may fail on one by one before the ops it has
/// not run yet fail whole (a destination that refuses everything need not
/// be tried file by file).
pub const MAX_FAILED: usize = 64;

pub struct Mirror {
    src: PathBuf,
    dst: PathBuf,
    rules: Arc<Rules>,
    /// The destination root, held from the first batch on (shared by the
    /// engines of several worker threads and across reloads).
    root: Option<Arc<DstRoot>>,
    /// A source directory that is the destination was skipped and said so.
    warned_dst_in_src: AtomicBool,
    /// The same for a destination directory that is the source.
    warned_src_in_dst: AtomicBool,
    preserve_owner: bool,
    /// Running as euid 0: no permission bits stand in our way.
    privileged: bool,
    /// `--xattrs`: copy extended attributes (see [`Run::wants_xattr`]).
    xattrs: bool,
    /// `--acls`: copy POSIX ACLs.
    acls: bool,
    /// Bumped for every regular file put in place (read by the initial
    /// sync's progress bar).
    progress: Option<Arc<super::counts::Counts>>,
    /// `--dry-run`: log what would be done, write nothing (`dry.rs`).
    dry_run: bool,
    /// Test hook: fail the copy of this path after the temporary is written.
    #[cfg(test)]
    fail_copy_of: Option<Vec<u8>>,
    /// Test hook: called with the source file's absolute path just before it
    /// is opened for copying (to change the source "mid-copy").
    #[cfg(test)]
    before_copy: Option<fn(&Path)>,
}

impl Mirror {
    /// `src` and `dst` are absolute, canonical directories. `dst` is created
    /// (with its parents) on the first batch if it does not exist.
    pub fn new(src: PathBuf, dst: PathBuf, rules: Arc<Rules>) -> Self {
        let privileged = nix::unistd::geteuid().is_root();
        Mirror {
            src,
            dst,
            rules,
            root: None,
            warned_dst_in_src: AtomicBool::new(false),
            warned_src_in_dst: AtomicBool::new(false),
            preserve_owner: privileged,
            privileged,
            xattrs: false,
            acls: false,
            progress: None,
            dry_run: false,
            #[cfg(test)]
            fail_copy_of: None,
            #[cfg(test)]
            before_copy: None,
        }
    }

    /// Write through `root`, the destination opened earlier (before a
    /// privilege drop, or by the engine this one replaces on a reload),
    /// instead of opening `dst` on the first batch.
    pub fn with_root(mut self, root: Arc<DstRoot>) -> Self {
        self.root = Some(root);
        self
    }

    /// Copy owner and group of every entry (default: on when running as root;
    /// turning it on as another user makes every chown fail with `EPERM`).
    pub fn preserve_owner(mut self, yes: bool) -> Self {
        self.preserve_owner = yes;
        self
    }

    /// Copy extended attributes (`xattrs`, rsync's `-X`) and POSIX ACLs
    /// (`acls`, rsync's `-A`) of files and directories; both off by default.
    pub fn xattrs(mut self, xattrs: bool, acls: bool) -> Self {
        self.xattrs = xattrs;
        self.acls = acls;
        self
    }

    /// Only log what each batch would do (`--dry-run`): nothing is
    /// written, the destination is not even created.
    pub fn dry_run(mut self, yes: bool) -> Self {
        self.dry_run = yes;
        self
    }

    /// Count every regular file put in place (copied or found identical)
    /// in `p`.
    pub fn with_progress(mut self, p: Arc<super::counts::Counts>) -> Self {
        self.progress = Some(p);
        self
    }
}

/// The destination root directory, opened once and held: the mirror writes
/// only through this descriptor, and [`DstRoot::check`] tells whether the
/// configured path still leads to it.
#[derive(Debug)]
pub struct DstRoot {
    path: PathBuf,
    fd: OwnedFd,
    id: (u64, u64),
}

impl DstRoot {
    /// Opens the directory `path` (symlinks in the configured path are
    /// followed: the user chose it). `create`: make it, with its missing
    /// parents, when it does not exist.
    pub fn open(path: &Path, create: bool) -> Result<DstRoot, HandlerError> {
        let fd = match sys::open_root(path) {
            Err(e) if create && errno(&e) == Some(Errno::ENOENT) => {
                std::fs::create_dir_all(path).map_err(|e| {
                    HandlerError::io(
                        path,
                        io::Error::new(
                            e.kind(),
                            format!("cannot create the destination directory: {e}; create it or check permissions"),
                        ),
                    )
                })?;
                sys::open_root(path)
            }
            other => other,
        }
        .map_err(|e| HandlerError::io(path, with_hint(e, "destination")))?;
        let id = sys::fstat(raw(&fd))
            .map_err(|e| HandlerError::io(path, e))?
            .id();
        Ok(DstRoot {
            path: path.to_path_buf(),
            fd,
            id,
        })
    }

    /// (device, inode) of the held directory.
    pub fn id(&self) -> (u64, u64) {
        self.id
    }

    /// Fails with [`HandlerError::DestinationChanged`] unless the configured
    /// path still leads to the held directory.
    pub fn check(&self) -> Result<(), HandlerError> {
        let now = sys::open_root(&self.path).and_then(|fd| sys::fstat(raw(&fd)));
        let why = match now {
            Ok(m) if m.id() == self.id => return Ok(()),
            Ok(m) => format!(
                "it now leads to another directory (device {} inode {}, was device {} inode {})",
                m.dev, m.ino, self.id.0, self.id.1
            ),
            Err(e) => format!("it no longer leads to the directory livesync started with ({e})"),
        };
        Err(HandlerError::DestinationChanged(format!(
            "stopped syncing to the destination {}: {why}; it was moved or replaced (a symlink?) while livesync ran, so nothing more is written there; check who changed it, then restart livesync",
            path::display_os(&self.path)
        )))
    }
}

impl Handler for Mirror {
    fn count_progress(&mut self, p: Arc<super::counts::Counts>) -> bool {
        self.progress = Some(p);
        true
    }

    fn name(&self) -> &str {
        "mirror"
    }

    fn run(&mut self, batch: &Batch) -> Result<Report, HandlerError> {
        if self.dry_run {
            return dry::run(self, batch);
        }
        if self.root.is_none() {
            self.root = Some(Arc::new(DstRoot::open(&self.dst, true)?));
        }
        let mut run = Run::start(self)?;
        let outcome = run.ops(&batch.ops);
        // Directory metadata is fixed even after a failure, so that what was
        // done is not left with 0700 placeholders until the retry.
        let fixed = run.fix_touched_dirs();
        outcome?;
        fixed?;
        let mut report = std::mem::take(&mut run.report);
        report.skipped = std::mem::take(&mut run.skipped);
        if run.failed.is_empty() {
            Ok(report)
        } else {
            Err(HandlerError::Paths {
                failed: std::mem::take(&mut run.failed),
                report,
            })
        }
    }
}

/// What an error says about the rest of the batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    /// A source entry we may not read: skip it.
    Unreadable,
    /// This entry only: fail it, go on with the others.
    Entry,
    /// The destination as a whole: stop the batch.
    Batch,
}

/// Errors about the whole destination whose kind std tells apart (a
/// read-only or stale file system, a lost connection, no memory).
const WHOLE_KINDS: [i32; 4] = [libc::EROFS, libc::ESTALE, libc::ENOTCONN, libc::ENOMEM];

fn scope(e: &HandlerError) -> Scope {
    match e {
        HandlerError::Unreadable { .. } => Scope::Unreadable,
        HandlerError::Io { source, .. } => {
            let whole = matches!(
                source.raw_os_error(),
                Some(
                    libc::EROFS
                        | libc::EIO
                        | libc::ENOTCONN
                        | libc::ESTALE
                        | libc::ENODEV
                        | libc::EMFILE
                        | libc::ENFILE
                        | libc::ENOMEM
                        | libc::EBADF
                )
            ) || WHOLE_KINDS.iter().any(|&code| {
                // An error re-worded on the way (a copy's) keeps its kind only.
                source.raw_os_error().is_none()
                    && source.kind() == io::Error::from_raw_os_error(code).kind()
            });
            if whole {
                Scope::Batch
            } else {
                Scope::Entry
            }
        }
        _ => Scope::Batch,
    }
}

/// Shared, cheaply clonable directory descriptor (the caches hand out clones,
/// so evicting an entry never closes a descriptor still in use).
type DirFd = Rc<OwnedFd>;

/// What became of one entry.
enum Outcome {
    Done,
    /// The source entry vanished or changed type while we handled it: look
    /// again.
    Changed,
}

enum Side {
    Src,
    Dst,
}

/// The state of one batch: root descriptors, directory caches, directories
/// whose metadata must be fixed at the end, and the counts.
struct Run<'m> {
    m: &'m Mirror,
    src_root: DirFd,
    dst_root: DirFd,
    src_root_id: (u64, u64),
    dst_root_id: (u64, u64),
    src_dirs: HashMap<Vec<u8>, DirFd>,
    dst_dirs: HashMap<Vec<u8>, DirFd>,
    /// Destination directories already made writable (unprivileged only).
    writable: HashSet<Vec<u8>>,
    /// Directories whose entries or existence this batch changed outside a
    /// recursive walk; their metadata is copied from the source at the end.
    touched: BTreeSet<Vec<u8>>,
    /// Hard links: for each multi-link source file put in place in this
    /// batch, its source (dev, ino) → the destination path and (dev, ino)
    /// it got, so its other names become links to it instead of copies.
    links: HashMap<Id, (Vec<u8>, Id)>,
    report: Report,
    /// Entries that failed on their own (see [`scope`]).
    failed: Vec<super::PathIssue>,
    /// Source entries we may not read.
    skipped: Vec<super::PathIssue>,
}

type R<T> = Result<T, HandlerError>;

/// Device and inode of an entry.
type Id = (u64, u64);

impl<'m> Run<'m> {
    fn start(m: &'m Mirror) -> R<Self> {
        let src_root =
            sys::open_root(&m.src).map_err(|e| HandlerError::io(&m.src, with_hint(e, "source")))?;
        let root = m.root.as_ref().ok_or_else(|| {
            HandlerError::Other("mirror: the destination root is not open".to_string())
        })?;
        // Before anything is written: the path must still lead to the
        // directory we hold, or this destination is not ours any more.
        root.check()?;
        let dst_root = root
            .fd
            .try_clone()
            .map_err(|e| HandlerError::io(&m.dst, e))?;
        let src_root_id = sys::fstat(raw(&src_root))
            .map_err(|e| HandlerError::io(&m.src, e))?
            .id();
        let dst_root_id = root.id;
        if src_root_id == dst_root_id {
            return Err(HandlerError::Other(format!(
                "source {} and destination {} are the same directory: give two different ones",
                path::display_os(&m.src),
                path::display_os(&m.dst)
            )));
        }
        Ok(Run {
            m,
            src_root: Rc::new(src_root),
            dst_root: Rc::new(dst_root),
            src_root_id,
            dst_root_id,
            src_dirs: HashMap::new(),
            dst_dirs: HashMap::new(),
            writable: HashSet::new(),
            touched: BTreeSet::new(),
            links: HashMap::new(),
            report: Report::default(),
            failed: Vec::new(),
            skipped: Vec::new(),
        })
    }

    // ----- errors -------------------------------------------------------

    fn fail(&self, side: Side, rel: &[u8], e: io::Error) -> HandlerError {
        let root: &Path = match side {
            Side::Src => &self.m.src,
            Side::Dst => &self.m.dst,
        };
        if matches!(side, Side::Src) && matches!(errno(&e), Some(Errno::EACCES | Errno::EPERM)) {
            return HandlerError::Unreadable {
                path: path::display_os(&path::abs(root, rel)),
                source: e,
            };
        }
        HandlerError::io(path::abs(root, rel), e)
    }

    /// Takes `e`, an error about `rel` (`recursive`: its subtree), into the
    /// report when it concerns that entry only (see [`scope`]), so that the
    /// batch goes on; gives it back when it must stop the batch.
    fn isolate(&mut self, rel: &[u8], recursive: bool, e: HandlerError) -> R<()> {
        let issue = |e: &HandlerError| super::PathIssue {
            path: rel.to_vec(),
            recursive,
            message: e.to_string(),
        };
        match scope(&e) {
            Scope::Unreadable => {
                log::debug!("mirror: skipped {}: {e}", path::display(rel));
                self.skipped.push(issue(&e));
                Ok(())
            }
            Scope::Entry if self.failed.len() < MAX_FAILED => {
                log::debug!("mirror: failed {}: {e}", path::display(rel));
                self.failed.push(issue(&e));
                Ok(())
            }
            Scope::Entry | Scope::Batch => Err(e),
        }
    }

    fn serr(&self, rel: &[u8], e: io::Error) -> HandlerError {
        self.fail(Side::Src, rel, e)
    }

    fn derr(&self, rel: &[u8], e: io::Error) -> HandlerError {
        self.fail(Side::Dst, rel, e)
    }

    // ----- rules --------------------------------------------------------

    fn permits(&self, rel: &[u8], kind: Kind, action: Action) -> bool {
        rel.is_empty() || self.m.rules.permits(rel, kind, action)
    }

    // ----- resolving directories without following links ---------------

    /// The source directory `rel`, or `None` when it is not (or no longer)
    /// a real directory reachable without following a symlink.
    fn src_dir(&mut self, rel: &[u8]) -> R<Option<DirFd>> {
        if rel.is_empty() {
            return Ok(Some(self.src_root.clone()));
        }
        if let Some(fd) = self.src_dirs.get(rel) {
            return Ok(Some(fd.clone()));
        }
        let Some(parent) = self.src_dir(path::parent(rel))? else {
            return Ok(None);
        };
        match sys::open_dir(raw(&*parent), path::file_name(rel)) {
            Ok(fd) => {
                let id = sys::fstat(raw(&fd)).map_err(|e| self.serr(rel, e))?.id();
                if id == self.dst_root_id {
                    // The destination seen from the source side (a bind
                    // mount, or a destination inside the source): never
                    // entered, or copies would nest without end.
                    self.warn_dst_in_src(rel);
                    return Ok(None);
                }
                let fd = Rc::new(fd);
                cache_put(&mut self.src_dirs, rel, &fd);
                Ok(Some(fd))
            }
            Err(e) if is_gone(&e) => Ok(None),
            Err(e) => Err(self.serr(rel, e)),
        }
    }

    /// Says once per engine that the source directory `rel` is the
    /// destination and is skipped.
    fn warn_dst_in_src(&self, rel: &[u8]) {
        if !self.m.warned_dst_in_src.swap(true, Ordering::Relaxed) {
            log::warn!(
                "mirror: source directory {} is the destination {} (same device and inode, e.g. through a bind mount); skipping it and everything below it",
                path::display(rel),
                path::display_os(&self.m.dst)
            );
        }
    }

    /// The destination directory `rel`. With `create`, missing directories
    /// are made (and a non-directory in the way, symlinks included, is
    /// replaced) because the caller has seen the source directory; without
    /// it, `None` when it is not there as a real directory.
    fn dst_dir(&mut self, rel: &[u8], create: bool) -> R<Option<DirFd>> {
        if rel.is_empty() {
            return Ok(Some(self.dst_root.clone()));
        }
        if let Some(fd) = self.dst_dirs.get(rel) {
            return Ok(Some(fd.clone()));
        }
        let Some(parent) = self.dst_dir(path::parent(rel), create)? else {
            return Ok(None);
        };
        let pfd = raw(&*parent);
        let name = path::file_name(rel);
        let fd = match sys::open_dir(pfd, name) {
            Ok(fd) => fd,
            Err(e) if !is_gone(&e) => return Err(self.derr(rel, e)),
            Err(_) if !create => return Ok(None),
            Err(_) => {
                if !self.permits(rel, Kind::Dir, Action::Sync) {
                    log::debug!(
                        "mirror: not creating {}: excluded by the rules",
                        path::display(rel)
                    );
                    return Ok(None);
                }
                self.make_writable(&parent, path::parent(rel))?;
                if let Some(old) = sys::lstat_at(pfd, name).map_err(|e| self.derr(rel, e))? {
                    if !old.is_dir() {
                        log::info!(
                            "mirror: replacing {} {} with a directory, as in the source",
                            old.ftype.name(),
                            path::display(rel)
                        );
                        if !self.remove_entry(pfd, name, rel, &old)? {
                            log::warn!(
                                "mirror: {} is excluded by the rules but the source has a directory there; skipping what lies below it",
                                path::display(rel)
                            );
                            return Ok(None);
                        }
                    }
                }
                match sys::mkdir(pfd, name, 0o700) {
                    Ok(()) => {
                        self.report.copied += 1;
                        self.touch(rel);
                        self.touch(path::parent(rel));
                    }
                    Err(e) if errno(&e) == Some(Errno::EEXIST) => {}
                    Err(e) => return Err(self.derr(rel, e)),
                }
                sys::open_dir(pfd, name).map_err(|e| self.derr(rel, e))?
            }
        };
        let id = sys::fstat(raw(&fd)).map_err(|e| self.derr(rel, e))?.id();
        if id == self.src_root_id {
            // The source seen from the destination side (a bind mount):
            // writing or deleting there would change the source.
            if !self.m.warned_src_in_dst.swap(true, Ordering::Relaxed) {
                log::warn!(
                    "mirror: destination directory {} is the source {} (same device and inode, e.g. through a bind mount); leaving it and everything below it alone",
                    path::display(rel),
                    path::display_os(&self.m.src)
                );
            }
            return Ok(None);
        }
        let fd = Rc::new(fd);
        cache_put(&mut self.dst_dirs, rel, &fd);
        Ok(Some(fd))
    }

    /// Marks the directory `rel` for a metadata fix at the end of the batch.
    fn touch(&mut self, rel: &[u8]) {
        if !self.touched.contains(rel) {
            self.touched.insert(rel.to_vec());
        }
    }

    /// Forgets cached destination directories at or below `rel` (after it
    /// was removed or renamed).
    fn invalidate_dst(&mut self, rel: &[u8]) {
        self.dst_dirs.retain(|k, _| !path::is_under(k, rel));
        self.writable.retain(|k| !path::is_under(k, rel));
    }

    /// Without root, a destination directory copied from a read-only source
    /// directory (0555) cannot take new entries: open it up for the batch
    /// (its real mode comes back when its metadata is fixed).
    fn make_writable(&mut self, dir: &OwnedFd, rel: &[u8]) -> R<()> {
        if self.m.privileged || self.writable.contains(rel) {
            return Ok(());
        }
        let meta = sys::fstat(dir.as_raw_fd()).map_err(|e| self.derr(rel, e))?;
        if meta.perm & 0o700 != 0o700 {
            sys::fchmod(dir.as_raw_fd(), meta.perm | 0o700).map_err(|e| self.derr(rel, e))?;
            self.touch(rel);
        }
        self.writable.insert(rel.to_vec());
        Ok(())
    }

    // ----- ops ----------------------------------------------------------

    /// Runs a batch's ops: renames in order, then the paths the source no
    /// longer has (deletions), then the rest (copies). A failure of one
    /// path is isolated (see [`Run::isolate`]); past [`MAX_FAILED`], the
    /// copies not yet made fail whole, unrun.
    fn ops(&mut self, ops: &[Op]) -> R<()> {
        // What to make equal to the source once the renames are done:
        // (path, recursive).
        let mut targets: Vec<(&[u8], bool)> = Vec::new();
        for op in ops {
            if let Some(bad) = op.paths().into_iter().find(|p| !well_formed(p)) {
                // A bug upstream, not something a retry can fix: `..` would
                // leave the trees, so the op is dropped rather than failed.
                log::error!(
                    "mirror: ignoring an op on malformed path {:?}",
                    path::display(bad)
                );
                continue;
            }
            match op {
                Op::Sync { path, recursive } => targets.push((path, *recursive)),
                Op::Move { from, to } => {
                    if let Err(e) = self.move_hint(from, to) {
                        // Only a hint: the syncs of both sides below make
                        // the destination right, or fail on their own.
                        if scope(&e) == Scope::Batch {
                            return Err(e);
                        }
                        log::debug!("mirror: {e}; copying instead");
                    }
                    targets.push((to, true));
                    targets.push((from, true));
                }
            }
        }
        let mut copies = Vec::new();
        for (rel, recursive) in targets {
            let gone = match self.src_has(rel) {
                Ok(has) => !has,
                Err(e) => {
                    self.isolate(rel, recursive, e)?;
                    continue;
                }
            };
            if gone {
                if let Err(e) = self.delete_path(rel) {
                    self.isolate(rel, recursive, e)?;
                }
            } else {
                copies.push((rel, recursive));
            }
        }
        for (i, &(rel, recursive)) in copies.iter().enumerate() {
            let Err(e) = self.sync_path(rel, recursive) else {
                continue;
            };
            if scope(&e) != Scope::Entry || self.failed.len() < MAX_FAILED {
                self.isolate(rel, recursive, e)?;
                continue;
            }
            // Too many failures to go on one by one: this op and the ones
            // not run yet fail whole (the queue keeps them apart from the
            // rest, which is done).
            log::debug!("mirror: {e}; {} more op(s) not run", copies.len() - i - 1);
            for &(rel, recursive) in &copies[i..] {
                self.failed.push(super::PathIssue {
                    path: rel.to_vec(),
                    recursive,
                    message: e.to_string(),
                });
            }
            break;
        }
        Ok(())
    }

    /// Whether the source has `rel` (reachable without following a link).
    fn src_has(&mut self, rel: &[u8]) -> R<bool> {
        if rel.is_empty() {
            return Ok(true);
        }
        let Some(sdir) = self.src_dir(path::parent(rel))? else {
            return Ok(false);
        };
        let meta =
            sys::lstat_at(raw(&*sdir), path::file_name(rel)).map_err(|e| self.serr(rel, e))?;
        Ok(meta.is_some())
    }

    /// Makes `dst/rel` equal to `src/rel`. Without `recursive` a regular file
    /// is copied unless both sides hold the same bytes (the event says it
    /// changed, so size and mtime alone are not trusted) and a directory only gets
    /// its own existence and metadata; with it, everything is compared and
    /// only what differs is copied, down the whole subtree.
    fn sync_path(&mut self, rel: &[u8], recursive: bool) -> R<()> {
        if rel.is_empty() {
            return self.sync_root(recursive);
        }
        let prel = path::parent(rel);
        let name = path::file_name(rel);
        let how = if recursive {
            How::Compare
        } else {
            How::Explicit
        };
        for _ in 0..ATTEMPTS {
            let Some(sdir) = self.src_dir(prel)? else {
                return self.delete_path(rel);
            };
            let Some(smeta) = sys::lstat_at(raw(&*sdir), name).map_err(|e| self.serr(rel, e))?
            else {
                return self.delete_path(rel);
            };
            if !self.permits(rel, kind_of(&smeta), Action::Sync) {
                return Ok(());
            }
            let Some(ddir) = self.dst_dir(prel, true)? else {
                return Ok(());
            };
            self.make_writable(&ddir, prel)?;
            self.touch(prel);
            let dmeta = sys::lstat_at(raw(&*ddir), name).map_err(|e| self.derr(rel, e))?;
            let at = At {
                src: raw(&*sdir),
                dst: raw(&*ddir),
                name,
                rel,
            };
            match self.sync_entry(&at, &smeta, dmeta.as_ref(), how, recursive)? {
                Outcome::Done => return Ok(()),
                Outcome::Changed => continue,
            }
        }
        log::warn!(
            "mirror: {} keeps changing type; leaving it to its next event",
            path::display(rel)
        );
        Ok(())
    }

    fn sync_root(&mut self, recursive: bool) -> R<()> {
        let (s, d) = (self.src_root.clone(), self.dst_root.clone());
        if recursive {
            self.make_writable(&d, b"")?;
            self.walk(raw(&*s), raw(&*d), b"")?;
        }
        self.copy_dir_meta(raw(&*s), raw(&*d), b"")
    }

    /// The source no longer has `rel`: remove it from the destination.
    fn delete_path(&mut self, rel: &[u8]) -> R<()> {
        let prel = path::parent(rel);
        let name = path::file_name(rel);
        let Some(ddir) = self.dst_dir(prel, false)? else {
            return Ok(());
        };
        let Some(dmeta) = sys::lstat_at(raw(&*ddir), name).map_err(|e| self.derr(rel, e))? else {
            return Ok(());
        };
        self.make_writable(&ddir, prel)?;
        self.touch(prel);
        if !self.remove_entry(raw(&*ddir), name, rel, &dmeta)? {
            log::debug!(
                "mirror: kept {}: excluded by the rules, or holds excluded entries",
                path::display(rel)
            );
        }
        Ok(())
    }

    /// `from` was renamed to `to` in the source: rename at the destination
    /// too when that fits. The caller then syncs both (cheap compares when
    /// it worked).
    fn move_hint(&mut self, from: &[u8], to: &[u8]) -> R<()> {
        if !from.is_empty()
            && !to.is_empty()
            && !path::is_under(to, from)
            && !path::is_under(from, to)
        {
            self.rename_hint(from, to)?;
        }
        Ok(())
    }

    fn rename_hint(&mut self, from: &[u8], to: &[u8]) -> R<()> {
        let (fname, tname) = (path::file_name(from), path::file_name(to));
        let Some(dfrom) = self.dst_dir(path::parent(from), false)? else {
            return Ok(());
        };
        let Some(dmeta) = sys::lstat_at(raw(&*dfrom), fname).map_err(|e| self.derr(from, e))?
        else {
            return Ok(());
        };
        let Some(sto) = self.src_dir(path::parent(to))? else {
            return Ok(());
        };
        let Some(smeta) = sys::lstat_at(raw(&*sto), tname).map_err(|e| self.serr(to, e))? else {
            return Ok(());
        };
        let kind = kind_of(&smeta);
        if smeta.ftype != dmeta.ftype
            || !self.permits(from, kind, Action::Sync)
            || !self.permits(to, kind, Action::Sync)
            || dmeta.id() == self.src_root_id
        {
            return Ok(());
        }
        let Some(dto) = self.dst_dir(path::parent(to), true)? else {
            return Ok(());
        };
        self.make_writable(&dfrom, path::parent(from))?;
        self.make_writable(&dto, path::parent(to))?;
        if let Some(there) = sys::lstat_at(raw(&*dto), tname).map_err(|e| self.derr(to, e))? {
            if there.id() == dmeta.id() {
                return Ok(()); // already the same entry (hard link)
            }
            // rename(2) replaces a non-directory with a non-directory
            // atomically; anything involving a directory must go first.
            if (there.is_dir() || dmeta.is_dir())
                && !self.remove_entry(raw(&*dto), tname, to, &there)?
            {
                return Ok(());
            }
        }
        match sys::rename(raw(&*dfrom), fname, raw(&*dto), tname) {
            Ok(()) => {}
            // Another file system is mounted in the destination: the syncs
            // that follow copy instead.
            Err(e) if errno(&e) == Some(Errno::EXDEV) => return Ok(()),
            Err(e) => {
                return Err(HandlerError::io(
                    path::abs(&self.m.dst, to),
                    io::Error::new(
                        e.kind(),
                        format!("renaming from {}: {e}", path::display(from)),
                    ),
                ))
            }
        }
        log::debug!(
            "mirror: renamed {} -> {}",
            path::display(from),
            path::display(to)
        );
        self.report.renamed += 1;
        self.invalidate_dst(from);
        self.invalidate_dst(to);
        self.touch(path::parent(from));
        self.touch(path::parent(to));
        Ok(())
    }

    // ----- one entry ----------------------------------------------------

    /// Makes the destination entry `at` equal to the source entry whose
    /// `lstat` is `src`; `dst` is the destination's `lstat`, if any.
    fn sync_entry(
        &mut self,
        at: &At,
        src: &Meta,
        dst: Option<&Meta>,
        how: How,
        recursive: bool,
    ) -> R<Outcome> {
        if src.is_dir() && src.id() == self.dst_root_id {
            self.warn_dst_in_src(at.rel);
            return Ok(Outcome::Done);
        }
        if let Some(d) = dst {
            if d.is_dir() && d.id() == self.src_root_id {
                log::warn!(
                    "mirror: destination entry {} is the source itself; leaving it alone",
                    path::display(at.rel)
                );
                return Ok(Outcome::Done);
            }
        }
        if src.ftype == FileType::Regular && src.nlink > 1 {
            if let Some(done) = self.link_to_known(at, src, dst)? {
                if let Some(p) = &self.m.progress {
                    p.add_file(src.size); // every name counts, as in the totals
                }
                return Ok(done);
            }
        }
        match src.ftype {
            FileType::Dir => self.sync_dir(at, dst, recursive),
            FileType::Regular => {
                let same = dst.is_some_and(|d| {
                    d.ftype == FileType::Regular && d.size == src.size && d.mtime == src.mtime
                });
                let done = match (how, same, dst) {
                    (How::Compare, true, Some(d)) => {
                        self.fix_meta_at(at, src, d)?;
                        Ok(Outcome::Done)
                    }
                    // An event named the file but size and mtime match: it
                    // may be our own copy coming back (two-way setups) or a
                    // rewrite inside one mtime tick. Only equal content
                    // skips the copy, so neither loops nor loses a change.
                    (How::Explicit, true, Some(d)) if self.same_content(at) => {
                        self.fix_meta_at(at, src, d)?;
                        Ok(Outcome::Done)
                    }
                    _ => self.copy_file(at, dst),
                };
                if let (Ok(Outcome::Done), Some(p)) = (&done, &self.m.progress) {
                    p.add_file(src.size);
                }
                if src.nlink > 1 && matches!(done, Ok(Outcome::Done)) {
                    self.note_link(at, src)?;
                }
                done
            }
            FileType::Symlink => {
                let target = match sys::readlink(at.src, at.name) {
                    Ok(t) => t,
                    // EINVAL: not a symlink any more.
                    Err(e) if is_gone(&e) || errno(&e) == Some(Errno::EINVAL) => {
                        return Ok(Outcome::Changed)
                    }
                    Err(e) => return Err(self.serr(at.rel, e)),
                };
                if let Some(d) = dst.filter(|d| d.ftype == FileType::Symlink) {
                    let current =
                        sys::readlink(at.dst, at.name).map_err(|e| self.derr(at.rel, e))?;
                    if current == target {
                        self.fix_meta_at(at, src, d)?;
                        return Ok(Outcome::Done);
                    }
                }
                self.replace_with(at, src, dst, |dir, temp| sys::symlink(&target, dir, temp))
            }
            FileType::Fifo | FileType::Socket | FileType::CharDev | FileType::BlockDev => {
                if let Some(d) = dst.filter(|d| d.ftype == src.ftype) {
                    let is_dev = matches!(src.ftype, FileType::CharDev | FileType::BlockDev);
                    if !is_dev || d.rdev == src.rdev {
                        self.fix_meta_at(at, src, d)?;
                        return Ok(Outcome::Done);
                    }
                }
                let (ftype, rdev) = (src.ftype, src.rdev);
                self.replace_with(at, src, dst, |dir, temp| sys::mknod(dir, temp, ftype, rdev))
            }
        }
    }

    fn sync_dir(&mut self, at: &At, dst: Option<&Meta>, recursive: bool) -> R<Outcome> {
        match dst {
            Some(d) if d.is_dir() => {}
            other => {
                if let Some(d) = other {
                    if !self.remove_entry(at.dst, at.name, at.rel, d)? {
                        log::warn!(
                            "mirror: cannot make {} a directory: the {} there is excluded by the rules",
                            path::display(at.rel),
                            d.ftype.name()
                        );
                        return Ok(Outcome::Done);
                    }
                }
                match sys::mkdir(at.dst, at.name, 0o700) {
                    Ok(()) => self.report.copied += 1,
                    Err(e) if errno(&e) == Some(Errno::EEXIST) => {}
                    Err(e) => return Err(self.derr(at.rel, e)),
                }
            }
        }
        let sdir = match sys::open_dir(at.src, at.name) {
            Ok(fd) => fd,
            Err(e) if is_gone(&e) => return Ok(Outcome::Changed),
            Err(e) => return Err(self.serr(at.rel, e)),
        };
        let ddir = sys::open_dir(at.dst, at.name).map_err(|e| self.derr(at.rel, e))?;
        if recursive && self.permits(at.rel, Kind::Dir, Action::Walk) {
            if !self.m.privileged {
                let d = sys::fstat(raw(&ddir)).map_err(|e| self.derr(at.rel, e))?;
                if d.perm & 0o700 != 0o700 {
                    sys::fchmod(raw(&ddir), d.perm | 0o700).map_err(|e| self.derr(at.rel, e))?;
                }
            }
            self.walk(raw(&sdir), raw(&ddir), at.rel)?;
        }
        self.copy_dir_meta(raw(&sdir), raw(&ddir), at.rel)?;
        Ok(Outcome::Done)
    }

    /// Compares the directories `sdir` and `ddir` (both `rel`) entry by entry
    /// and makes the destination equal, recursively. Deletes come first.
    fn walk(&mut self, sdir: RawFd, ddir: RawFd, rel: &[u8]) -> R<()> {
        let snames = match sys::read_names(sdir) {
            Ok(n) => n,
            Err(e) if is_gone(&e) => return Ok(()), // removed meanwhile
            Err(e) => return Err(self.serr(rel, e)),
        };
        let dnames = sys::read_names(ddir).map_err(|e| self.derr(rel, e))?;
        let in_src: HashSet<&[u8]> = snames.iter().map(Vec::as_slice).collect();
        let in_dst: HashSet<&[u8]> = dnames.iter().map(Vec::as_slice).collect();
        for name in dnames.iter().filter(|n| !in_src.contains(n.as_slice())) {
            let crel = path::join(rel, name);
            if let Err(e) = self.walk_delete(ddir, name, &crel) {
                self.isolate(&crel, true, e)?;
            }
        }
        for name in &snames {
            let crel = path::join(rel, name);
            let at = At {
                src: sdir,
                dst: ddir,
                name,
                rel: &crel,
            };
            if let Err(e) = self.walk_entry(&at, in_dst.contains(name.as_slice())) {
                self.isolate(&crel, true, e)?;
            }
        }
        Ok(())
    }

    /// `walk`: removes the destination entry `at` the source does not have.
    fn walk_delete(&mut self, ddir: RawFd, name: &[u8], crel: &[u8]) -> R<()> {
        if let Some(d) = sys::lstat_at(ddir, name).map_err(|e| self.derr(crel, e))? {
            if !self.remove_entry(ddir, name, crel, &d)? {
                log::debug!(
                    "mirror: kept {}: excluded by the rules",
                    path::display(crel)
                );
            }
        }
        Ok(())
    }

    /// `walk`: makes the destination entry `at` equal to the source's.
    fn walk_entry(&mut self, at: &At, known_in_dst: bool) -> R<()> {
        let (sdir, ddir, name, crel) = (at.src, at.dst, at.name, at.rel);
        let mut known_in_dst = known_in_dst;
        for _ in 0..ATTEMPTS {
            let dmeta = if known_in_dst {
                sys::lstat_at(ddir, name).map_err(|e| self.derr(crel, e))?
            } else {
                None
            };
            let Some(smeta) = sys::lstat_at(sdir, name).map_err(|e| self.serr(crel, e))? else {
                if let Some(d) = dmeta {
                    self.remove_entry(ddir, name, crel, &d)?;
                }
                return Ok(());
            };
            if !self.permits(crel, kind_of(&smeta), Action::Sync) {
                return Ok(());
            }
            match self.sync_entry(at, &smeta, dmeta.as_ref(), How::Compare, true)? {
                Outcome::Done => return Ok(()),
                Outcome::Changed => known_in_dst = true,
            }
        }
        log::warn!(
            "mirror: {} keeps changing type; leaving it to its next event",
            path::display(crel)
        );
        Ok(())
    }

    /// Removes the destination entry `name` (`rel`) whose `lstat` is `meta`,
    /// a directory with its contents. Entries the rules exclude stay, and so
    /// does every directory that still holds one: returns whether `rel` is
    /// gone.
    fn remove_entry(&mut self, dir: RawFd, name: &[u8], rel: &[u8], meta: &Meta) -> R<bool> {
        if !self.permits(rel, kind_of(meta), Action::Sync) {
            return Ok(false);
        }
        if !meta.is_dir() {
            return match sys::unlink(dir, name) {
                Ok(()) => {
                    self.report.deleted += 1;
                    Ok(true)
                }
                Err(e) if errno(&e) == Some(Errno::ENOENT) => Ok(true),
                Err(e) => Err(self.derr(rel, e)),
            };
        }
        if meta.id() == self.src_root_id || meta.id() == self.dst_root_id {
            log::warn!(
                "mirror: not deleting {}: it is the source or destination root",
                path::display(rel)
            );
            return Ok(false);
        }
        let sub = match sys::open_dir(dir, name) {
            Ok(fd) => fd,
            Err(e) if errno(&e) == Some(Errno::ENOENT) => return Ok(true),
            Err(e) => return Err(self.derr(rel, e)),
        };
        if !self.m.privileged && meta.perm & 0o700 != 0o700 {
            sys::fchmod(raw(&sub), meta.perm | 0o700).map_err(|e| self.derr(rel, e))?;
        }
        let mut all_gone = true;
        if self.permits(rel, Kind::Dir, Action::Walk) {
            let names = sys::read_names(raw(&sub)).map_err(|e| self.derr(rel, e))?;
            for child in &names {
                let crel = path::join(rel, child);
                if let Some(cm) =
                    sys::lstat_at(raw(&sub), child).map_err(|e| self.derr(&crel, e))?
                {
                    all_gone &= self.remove_entry(raw(&sub), child, &crel, &cm)?;
                }
            }
        }
        drop(sub);
        self.invalidate_dst(rel);
        if !all_gone {
            return Ok(false);
        }
        match sys::rmdir(dir, name) {
            Ok(()) => {
                self.report.deleted += 1;
                Ok(true)
            }
            Err(e) if errno(&e) == Some(Errno::ENOENT) => Ok(true),
            Err(e) if matches!(errno(&e), Some(Errno::ENOTEMPTY | Errno::EEXIST)) => Ok(false),
            Err(e) => Err(self.derr(rel, e)),
        }
    }

    /// Copies the source file at `at` through a temporary sibling renamed
    /// over the target. `dst` is the destination's `lstat`, if any.
    /// Whether the source and destination files hold the same bytes. Any
    /// error reading either side answers "no", so the file gets copied.
    fn same_content(&self, at: &At) -> bool {
        let (Ok(mut a), Ok(mut b)) = (
            sys::open_read(at.src, at.name),
            sys::open_read(at.dst, at.name),
        ) else {
            return false;
        };
        let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
        loop {
            let Ok(n) = read_full(&mut a, &mut ba) else {
                return false;
            };
            let Ok(m) = read_full(&mut b, &mut bb) else {
                return false;
            };
            if n != m || ba[..n] != bb[..m] {
                return false;
            }
            if n == 0 {
                return true;
            }
        }
    }

    fn copy_file(&mut self, at: &At, dst: Option<&Meta>) -> R<Outcome> {
        #[cfg(test)]
        if let Some(hook) = self.m.before_copy {
            hook(&path::abs(&self.m.src, at.rel));
        }
        let mut file = match sys::open_read(at.src, at.name) {
            Ok(f) => f,
            // Gone, or turned into a symlink (ELOOP) or a socket (ENXIO).
            Err(e) if is_gone(&e) || errno(&e) == Some(Errno::ENXIO) => {
                return Ok(Outcome::Changed)
            }
            Err(e) => return Err(self.serr(at.rel, e)),
        };
        let meta = sys::fstat(file.as_raw_fd()).map_err(|e| self.serr(at.rel, e))?;
        if meta.ftype != FileType::Regular {
            return Ok(Outcome::Changed);
        }
        let (temp, mut out) =
            sys::create_temp_file(at.dst, at.name).map_err(|e| self.derr(at.rel, e))?;
        let filled = (|| -> io::Result<()> {
            sys::copy_sparse(&mut file, &mut out)?;
            if self.m.preserve_owner {
                sys::fchown(out.as_raw_fd(), meta.uid, meta.gid)?;
            }
            // After chown (which drops security.capability), before chmod
            // (a read-only mode would refuse user.* attributes).
            self.copy_xattrs(file.as_raw_fd(), out.as_raw_fd())?;
            sys::fchmod(out.as_raw_fd(), meta.perm)?;
            sys::futimens(out.as_raw_fd(), &meta.atime, &meta.mtime)?;
            #[cfg(test)]
            if self.m.fail_copy_of.as_deref() == Some(at.rel) {
                return Err(io::Error::other("injected failure"));
            }
            Ok(())
        })();
        drop(out);
        let placed = filled
            .map_err(|e| {
                HandlerError::io(
                    path::abs(&self.m.dst, at.rel),
                    io::Error::new(
                        e.kind(),
                        format!(
                            "copying from {}: {e}",
                            path::display_os(&path::abs(&self.m.src, at.rel))
                        ),
                    ),
                )
            })
            .and_then(|()| self.place(at, &temp, dst));
        if !matches!(placed, Ok(true)) {
            let _ = sys::unlink(at.dst, &temp);
        }
        if placed? {
            self.report.copied += 1;
            log::debug!("mirror: copied {}", path::display(at.rel));
        }
        Ok(Outcome::Done)
    }

    /// Remembers where the multi-link source file `src` (at `at`) now is in
    /// the destination, for its other names in this batch.
    fn note_link(&mut self, at: &At, src: &Meta) -> R<()> {
        if let Some(d) = sys::lstat_at(at.dst, at.name).map_err(|e| self.derr(at.rel, e))? {
            if d.ftype == FileType::Regular {
                self.links.insert(src.id(), (at.rel.to_vec(), d.id()));
            }
        }
        Ok(())
    }

    /// Hard links: when another name of the source file `src` was put in
    /// place earlier in this batch, makes `at` a link to that destination
    /// file (built at a temporary name and renamed over the target) instead
    /// of a second copy. `None` when there is no such name or linking is not
    /// possible (another file system below the destination, the link limit,
    /// a file system without hard links): the caller copies.
    fn link_to_known(&mut self, at: &At, src: &Meta, dst: Option<&Meta>) -> R<Option<Outcome>> {
        let Some((first, first_id)) = self.links.get(&src.id()).cloned() else {
            return Ok(None);
        };
        if first == at.rel {
            return Ok(None);
        }
        let Some(fdir) = self.dst_dir(path::parent(&first), false)? else {
            return Ok(None);
        };
        let fname = path::file_name(&first);
        // Still the file this batch put there (a later op may have replaced
        // or removed it).
        match sys::lstat_at(raw(&*fdir), fname).map_err(|e| self.derr(&first, e))? {
            Some(m) if m.ftype == FileType::Regular && m.id() == first_id => {}
            _ => return Ok(None),
        }
        if dst.is_some_and(|d| d.id() == first_id) {
            return Ok(Some(Outcome::Done)); // already that file
        }
        let temp = match sys::with_temp_name(at.name, |temp| {
            sys::link(raw(&*fdir), fname, at.dst, temp)
        }) {
            Ok((temp, ())) => temp,
            Err(e) => {
                log::debug!(
                    "mirror: cannot link {} to {}: {e}; copying it",
                    path::display(at.rel),
                    path::display(&first)
                );
                return Ok(None);
            }
        };
        let placed = self.place(at, &temp, dst);
        if !matches!(placed, Ok(true)) {
            let _ = sys::unlink(at.dst, &temp);
        }
        if placed? {
            self.report.copied += 1;
            log::debug!(
                "mirror: linked {} to {}",
                path::display(at.rel),
                path::display(&first)
            );
        }
        Ok(Some(Outcome::Done))
    }

    /// Builds a symlink or special file at a temporary name with `make`,
    /// gives it the source's metadata and renames it over the target.
    fn replace_with(
        &mut self,
        at: &At,
        src: &Meta,
        dst: Option<&Meta>,
        make: impl FnMut(RawFd, &[u8]) -> io::Result<()>,
    ) -> R<Outcome> {
        let mut make = make;
        let temp = match sys::with_temp_name(at.name, |temp| make(at.dst, temp)) {
            Ok((temp, ())) => temp,
            Err(e) if errno(&e) == Some(Errno::EPERM) => {
                log::warn!(
                    "mirror: cannot create {} {}: not permitted (device nodes need root with CAP_MKNOD; some file systems refuse links and special files); skipped",
                    src.ftype.name(),
                    path::display(at.rel)
                );
                return Ok(Outcome::Done);
            }
            Err(e) => return Err(self.derr(at.rel, e)),
        };
        let placed = self
            .set_meta_at(at.dst, &temp, src, None)
            .map_err(|e| self.derr(at.rel, e))
            .and_then(|()| self.place(at, &temp, dst));
        if !matches!(placed, Ok(true)) {
            let _ = sys::unlink(at.dst, &temp);
        }
        if placed? {
            self.report.copied += 1;
            log::debug!(
                "mirror: created {} {}",
                src.ftype.name(),
                path::display(at.rel)
            );
        }
        Ok(Outcome::Done)
    }

    /// Renames the finished temporary over the target, first removing a
    /// directory in the way. `false` when the rules keep that directory.
    fn place(&mut self, at: &At, temp: &[u8], dst: Option<&Meta>) -> R<bool> {
        if let Some(d) = dst.filter(|d| d.is_dir()) {
            if !self.remove_entry(at.dst, at.name, at.rel, d)? {
                log::warn!(
                    "mirror: cannot replace directory {}: it holds entries the rules exclude",
                    path::display(at.rel)
                );
                return Ok(false);
            }
        }
        sys::rename(at.dst, temp, at.dst, at.name).map_err(|e| self.derr(at.rel, e))?;
        Ok(true)
    }

    // ----- metadata -----------------------------------------------------

    /// Sets owner, mode and times of `name` in `dir` to the source's where
    /// they differ from `current` (all of them when `current` is `None`).
    fn set_meta_at(
        &self,
        dir: RawFd,
        name: &[u8],
        src: &Meta,
        current: Option<&Meta>,
    ) -> io::Result<()> {
        let owner_differs =
            self.m.preserve_owner && differs(current, |d| (d.uid, d.gid) != (src.uid, src.gid));
        if owner_differs {
            sys::chown_at(dir, name, src.uid, src.gid)?;
        }
        // chown clears setuid/setgid, so the mode goes after it.
        if src.ftype != FileType::Symlink
            && (owner_differs || differs(current, |d| d.perm != src.perm))
        {
            sys::chmod_at(dir, name, src.perm)?;
        }
        if differs(current, |d| d.mtime != src.mtime) {
            sys::utimes_at(dir, name, &src.atime, &src.mtime)?;
        }
        Ok(())
    }

    fn fix_meta_at(&self, at: &At, src: &Meta, dst: &Meta) -> R<()> {
        self.set_meta_at(at.dst, at.name, src, Some(dst))
            .map_err(|e| self.derr(at.rel, e))?;
        if (self.m.xattrs || self.m.acls) && src.ftype == FileType::Regular {
            let from = match sys::open_read(at.src, at.name) {
                Ok(f) => f,
                // Changed meanwhile: its own event follows.
                Err(e) if is_gone(&e) || errno(&e) == Some(Errno::ENXIO) => return Ok(()),
                Err(e) => return Err(self.serr(at.rel, e)),
            };
            let to = sys::open_read(at.dst, at.name).map_err(|e| self.derr(at.rel, e))?;
            self.copy_xattrs(from.as_raw_fd(), to.as_raw_fd())
                .map_err(|e| self.derr(at.rel, e))?;
        }
        Ok(())
    }

    /// Whether the extended attribute `name` is copied: the POSIX ACLs with
    /// `--acls`; with `--xattrs` the `user.*` namespace, and as root every
    /// other namespace but `system.*` (rsync's `-X` does the same).
    fn wants_xattr(&self, name: &[u8]) -> bool {
        match name {
            b"system.posix_acl_access" | b"system.posix_acl_default" => self.m.acls,
            n if n.starts_with(b"system.") => false,
            n if n.starts_with(b"user.") => self.m.xattrs,
            _ => self.m.xattrs && self.m.privileged,
        }
    }

    /// Makes the copied extended attributes (and ACLs) of the open file or
    /// directory `to` those of `from`: missing ones set, changed ones
    /// rewritten, ones the source no longer has removed. Nothing to do when
    /// neither `--xattrs` nor `--acls` is on.
    fn copy_xattrs(&self, from: RawFd, to: RawFd) -> io::Result<()> {
        if !self.m.xattrs && !self.m.acls {
            return Ok(());
        }
        let mut want = sys::xattr_names(from)?;
        want.retain(|n| self.wants_xattr(n));
        for name in sys::xattr_names(to)? {
            if self.wants_xattr(&name) && !want.contains(&name) {
                sys::xattr_remove(to, &name)?;
            }
        }
        for name in &want {
            let Some(value) = sys::xattr_get(from, name)? else {
                continue; // removed meanwhile
            };
            if sys::xattr_get(to, name)?.as_deref() != Some(value.as_slice()) {
                sys::xattr_set(to, name, &value).map_err(|e| xattr_hint(e, name))?;
            }
        }
        Ok(())
    }

    /// Gives the destination directory `ddir` the metadata of the source
    /// directory `sdir` (both `rel`), read now, after the contents are done.
    fn copy_dir_meta(&self, sdir: RawFd, ddir: RawFd, rel: &[u8]) -> R<()> {
        let s = match sys::fstat(sdir) {
            Ok(m) => m,
            Err(e) => return Err(self.serr(rel, e)),
        };
        let d = sys::fstat(ddir).map_err(|e| self.derr(rel, e))?;
        let set = || -> io::Result<()> {
            let owner_differs = self.m.preserve_owner && (d.uid, d.gid) != (s.uid, s.gid);
            if owner_differs {
                sys::fchown(ddir, s.uid, s.gid)?;
            }
            self.copy_xattrs(sdir, ddir)?;
            if owner_differs || d.perm != s.perm {
                sys::fchmod(ddir, s.perm)?;
            }
            if d.mtime != s.mtime {
                sys::futimens(ddir, &s.atime, &s.mtime)?;
            }
            Ok(())
        };
        set().map_err(|e| self.derr(rel, e))
    }

    /// Copies source metadata onto every directory the batch's ops changed,
    /// deepest first (setting a directory's times does not touch its
    /// parent's, but adding an entry does).
    fn fix_touched_dirs(&mut self) -> R<()> {
        let touched = std::mem::take(&mut self.touched);
        for rel in touched.iter().rev() {
            if !self.permits(rel, Kind::Dir, Action::Sync) {
                continue;
            }
            if let Err(e) = self.fix_dir_meta(rel) {
                self.isolate(rel, false, e)?;
            }
        }
        Ok(())
    }

    fn fix_dir_meta(&mut self, rel: &[u8]) -> R<()> {
        let Some(s) = self.src_dir(rel)? else {
            return Ok(());
        };
        let Some(d) = self.dst_dir(rel, false)? else {
            return Ok(());
        };
        self.copy_dir_meta(raw(&*s), raw(&*d), rel)
    }
}

/// Whether a regular file is copied unless its content is the same
/// (`Explicit`) or only when its type, size or mtime differ (`Compare`).
#[derive(Clone, Copy)]
enum How {
    Explicit,
    Compare,
}

/// One entry: the two parent directories, its name, its relative path.
struct At<'a> {
    src: RawFd,
    dst: RawFd,
    name: &'a [u8],
    rel: &'a [u8],
}

fn kind_of(meta: &Meta) -> Kind {
    if meta.is_dir() {
        Kind::Dir
    } else {
        Kind::File
    }
}

/// Reads until `buf` is full or the file ends; returns how many bytes.
fn read_full(f: &mut impl io::Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// True when there is no `current` metadata or `test` says it differs.
fn differs(current: Option<&Meta>, test: impl Fn(&Meta) -> bool) -> bool {
    match current {
        None => true,
        Some(d) => test(d),
    }
}

/// An op path is relative, without empty, `.` or `..` components or NULs.
fn well_formed(rel: &[u8]) -> bool {
    rel.is_empty()
        || rel
            .split(|&b| b == b'/')
            .all(|c| !c.is_empty() && c != b"." && c != b".." && !c.contains(&0))
}

fn cache_put(cache: &mut HashMap<Vec<u8>, DirFd>, rel: &[u8], fd: &DirFd) {
    if cache.len() >= DIR_CACHE {
        cache.clear();
    }
    cache.insert(rel.to_vec(), fd.clone());
}

/// Says what to do when the destination cannot take an attribute.
fn xattr_hint(e: io::Error, name: &[u8]) -> io::Error {
    let what = String::from_utf8_lossy(name);
    let fix = match errno(&e) {
        Some(Errno::ENOTSUP) => {
            "the destination file system does not support it; drop --xattrs/--acls or mount it with xattr and ACL support"
        }
        Some(Errno::EPERM | Errno::EACCES) => {
            "not permitted; run as root, or drop --xattrs/--acls"
        }
        _ => "check the destination file system",
    };
    io::Error::new(e.kind(), format!("cannot set {what}: {e}; {fix}"))
}

fn with_hint(e: io::Error, which: &str) -> io::Error {
    io::Error::new(
        e.kind(),
        format!("cannot open the {which} directory: {e}; check that it exists and is readable"),
    )
}
