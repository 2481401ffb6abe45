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

mod attrs; // owner, mode, times, xattrs, ACLs; directory metadata last
mod copy; // a file put in place through a temporary name
mod dry; // --dry-run: the same questions, answered read-only and logged
mod failures; // error scopes, per-path failure isolation
mod links; // hard links kept as links
mod ops; // a batch's ops in order, one op at a time
mod root; // the destination root held for the engine's life
mod sys;
#[cfg(test)]
mod tests;
mod walk; // one entry by type; the recursive sync

use super::{Handler, HandlerError, Report};
use crate::batch::Batch;
use crate::path;
use crate::rules::{Action, Kind, Rules};
use nix::errno::Errno;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use sys::{errno, is_gone, raw, Meta};

use copy::read_full;
use failures::{scope, Scope};
pub use root::DstRoot;

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
    before_copy: Option<fn(&std::path::Path)>,
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

fn with_hint(e: io::Error, which: &str) -> io::Error {
    io::Error::new(
        e.kind(),
        format!("cannot open the {which} directory: {e}; check that it exists and is readable"),
    )
}
