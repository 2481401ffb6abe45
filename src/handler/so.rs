//! clsync's `so` and `rsyncso` modes: hand each batch to a C shared object.
//!
//! This module owns loading a sync handler built against clsync's plugin ABI
//! (`<clsync/clsync.h>`, `CLSYNC_API_VERSION` 2) and calling it:
//!
//! * before loading, clsync's checks on the file: a regular file, owned by
//!   root or by the user running livesync, no group/other write bit, no
//!   setuid, setgid or sticky bit ([`check_object`]);
//! * `dlopen(RTLD_NOW | RTLD_LOCAL)`, so a symbol the object needs and nobody
//!   provides is an error at start, not a crash at the first call; then
//!   `clsyncapi_sync` (`so`) or `clsyncapi_rsync` (`rsyncso`) must exist,
//!   `clsyncapi_init` and `clsyncapi_deinit` are optional, as in clsync;
//! * `clsyncapi_init(ctx, indexes)` once, with a `struct ctx` laid out as
//!   `<clsync/ctx.h>` of clsync 0.4.5 compiled without optional features (what
//!   a handler built against the packaged headers sees), the fields a handler
//!   reads filled in ([`Ctx`]); `indexes` is NULL: clsync's hash tables have
//!   no counterpart here;
//! * `so`: one `clsyncapi_sync(n, api_eventinfo_t *)` per batch, paths
//!   relative to the watch dir (the dir itself is the empty path), a
//!   recursive op listed path by path as clsync does unless
//!   `--have-recursive-sync` ([`event_entries`]); `rsyncso`:
//!   include/exclude list files (mode 0600, in `-L` or a private 0700
//!   directory, removed afterwards unless `-U`) and one
//!   `clsyncapi_rsync(inclist, exclist)` per list part. A non-zero return is
//!   a handler failure: the daemon re-queues the batch;
//! * `clsyncapi_deinit()` when the handler is dropped.
//!
//! The handler's code runs inside livesync's process, with its privileges,
//! and can crash or corrupt it: that is the deal clsync's ABI makes, and why
//! the file checks exist. All calls into the object happen on the thread
//! that owns the handler (the daemon's worker thread), never on the event
//! loop, and never two at once. On the first use of an object the init runs
//! where the handler is built (at start, so a refusing handler stops livesync
//! before anything is synced); when a handler for an object that is still
//! initialised is built (a reload), its init waits for its first batch, which
//! runs after the old handler's deinit.
//!
//! Event masks: the batch carries state-based ops, not kernel events, so the
//! mask of each entry is derived by [`mask_for`] from the op and the source's
//! `lstat` at run time. That one function is where the batch's recorded
//! masks can be used instead once batches carry them.
//!
//! This module must not touch process-global state beyond the dynamic
//! loader, and never passes a path through a shell. It keeps one static,
//! the set of objects whose init has run and whose deinit has not: the
//! dynamic loader is itself process-wide (a second `dlopen` of the same
//! file returns the same handle and the same copy of the object's globals),
//! so whether an object is initialised is a property of the process, not
//! of one handler. A reload builds the new handler while the old one still
//! lives; only a process-wide record lets the new one see that the old
//! one's deinit has not run yet and hold its own init back until it has.

use super::lists::{self, Excludes, Includes, Separator, SourceKind};
use super::rsync::{write_list, ListDir};
use super::{Handler, HandlerError, Report};
use crate::batch::{Batch, Op};
pub use crate::config::so_object::{check_object, ObjectError};
use crate::path;
use crate::rules::{Action, Kind, Rules};
use std::collections::HashSet;
use std::ffi::{c_char, c_int, c_short, c_uint, c_void, CStr, CString, OsString};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The plugin ABI version livesync implements (`CLSYNC_API_VERSION`).
pub const API_VERSION: c_int = 2;

/// What `clsyncapi_getapiversion()` returns to a handler that asks.
#[no_mangle]
pub extern "C" fn clsyncapi_getapiversion() -> c_int {
    API_VERSION
}

/// `clsyncapi_fork(ctx)`: clsync's wrapper for `fork()` that handlers use
/// to run a program; here it is plain `fork()` (livesync does not track the
/// child: the handler waits for it, as clsync's examples do).
#[no_mangle]
pub extern "C" fn clsyncapi_fork(_ctx: *mut c_void) -> libc::pid_t {
    // SAFETY: called by the handler on its own thread; the child is the
    // handler's to exec (or to _exit).
    unsafe { libc::fork() }
}

/// `api_eventinfo_t.flags`: sync the path recursively.
pub const EVIF_RECURSIVELY: u32 = 0x1;
/// `eventobjtype_t` values.
pub const EOT_UNKNOWN: c_int = 0;
pub const EOT_DOESNTEXIST: c_int = 1;
pub const EOT_FILE: c_int = 2;
pub const EOT_DIR: c_int = 3;

/// `struct api_eventinfo` of `<clsync/clsync.h>`.
#[repr(C)]
#[derive(Debug)]
pub struct ApiEventInfo {
    /// inotify mask (`IN_*` of `<linux/inotify.h>`).
    pub evmask: u32,
    /// `EVIF_*`.
    pub flags: u32,
    /// `strlen(path)`.
    pub path_len: usize,
    /// NUL-terminated, relative to the watch dir (empty for the dir itself).
    pub path: *const c_char,
    pub objtype_old: c_int,
    pub objtype_new: c_int,
}

/// Which of the two modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SoMode {
    /// `-M so`: `clsyncapi_sync` with event entries.
    Sync,
    /// `-M rsyncso`: `clsyncapi_rsync` with list files.
    Rsync,
}

impl SoMode {
    fn name(self) -> &'static str {
        match self {
            SoMode::Sync => "so",
            SoMode::Rsync => "rsyncso",
        }
    }

    /// The function the mode cannot do without.
    fn required(self) -> &'static str {
        match self {
            SoMode::Sync => "clsyncapi_sync",
            SoMode::Rsync => "clsyncapi_rsync",
        }
    }

    /// `enum mode_id` of `<clsync/ctx.h>`.
    fn clsync_id(self) -> c_int {
        match self {
            SoMode::Rsync => 6,
            SoMode::Sync => 7,
        }
    }
}

/// Everything the two modes need, resolved from the command line.
#[derive(Clone, Debug)]
pub struct SoConfig {
    pub mode: SoMode,
    /// `-S`: the shared object.
    pub object: PathBuf,
    /// Canonical watch dir.
    pub src: PathBuf,
    /// `-D` as given (local or remote); the handler decides what it means.
    pub dst: OsString,
    pub label: String,
    /// `-L`: where list files go (rsyncso); None = a private 0700 dir.
    pub lists_dir: Option<PathBuf>,
    /// `-U`: keep list files.
    pub keep_lists: bool,
    pub rules: Arc<Rules>,
    /// `--rsync-prefer-include`: exclusions go into the include list.
    pub prefer_include: bool,
    /// `--rsync-inclimit`: include lines per `clsyncapi_rsync` call; 0 = no limit.
    pub inclimit: usize,
    /// `-k` in seconds (only told to the handler, in its ctx); 0 = none.
    pub timeout_secs: u32,
    /// `-d` level, told to the handler as `ctx->flags[DEBUG]`.
    pub debug: c_int,
    /// `--have-recursive-sync` (so): a recursive op is one entry flagged
    /// `EVIF_RECURSIVELY`; without it (the default, as in clsync) the
    /// handler gets one entry per path below the directory too.
    pub recursive_sync: bool,
}

impl SoConfig {
    pub fn new(
        mode: SoMode,
        object: impl Into<PathBuf>,
        src: impl Into<PathBuf>,
        dst: impl Into<OsString>,
    ) -> Self {
        SoConfig {
            mode,
            object: object.into(),
            src: src.into(),
            dst: dst.into(),
            label: "nolabel".to_string(),
            lists_dir: None,
            keep_lists: false,
            rules: Arc::new(Rules::allow_all()),
            prefer_include: false,
            inclimit: 20000,
            timeout_secs: 86400,
            debug: 0,
            recursive_sync: false,
        }
    }
}

/// Why a shared object was refused. Each is one line naming the file and
/// the fix.
#[derive(Debug, thiserror::Error)]
pub enum SoError {
    /// The object failed clsync's checks (see [`check_object`]).
    #[error("{0}")]
    Object(#[from] ObjectError),
    #[error("sync handler {path} cannot be loaded: {reason}; build it with cc -shared -fPIC and link what it needs")]
    Load { path: String, reason: String },
    #[error(
        "sync handler {path} has no function {symbol}, which -M {mode} calls; define int {symbol}({signature}) in it"
    )]
    Symbol {
        path: String,
        symbol: &'static str,
        mode: &'static str,
        signature: &'static str,
    },
    #[error(
        "sync handler {path}: clsyncapi_init returned {code} ({reason}); the handler refused to \
         start (built for another CLSYNC_API_VERSION than {API_VERSION}, or unhappy with the \
         options; see its own messages)"
    )]
    Init {
        path: String,
        code: c_int,
        reason: String,
    },
    #[error("{0}")]
    Setup(String),
}

type InitFn = unsafe extern "C" fn(*mut Ctx, *mut c_void) -> c_int;
type SyncFn = unsafe extern "C" fn(c_int, *mut ApiEventInfo) -> c_int;
type RsyncFn = unsafe extern "C" fn(*const c_char, *const c_char) -> c_int;
type DeinitFn = unsafe extern "C" fn() -> c_int;

/// A `dlopen` handle, closed on drop.
struct Library {
    handle: *mut c_void,
}

impl Library {
    fn open(object: &Path) -> Result<Library, SoError> {
        let shown = path::display_os(object);
        let c = CString::new(object.as_os_str().as_bytes()).map_err(|_| SoError::Load {
            path: shown.clone(),
            reason: "the path contains a NUL byte".into(),
        })?;
        // SAFETY: `c` is a valid C string; dlopen runs the object's
        // constructors, which is the documented risk of this mode.
        let handle = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if handle.is_null() {
            return Err(SoError::Load {
                path: shown,
                reason: dl_error().unwrap_or_else(|| "unknown dlopen error".into()),
            });
        }
        Ok(Library { handle })
    }

    /// The address of `name`, or None.
    fn symbol(&self, name: &CStr) -> Option<*mut c_void> {
        // SAFETY: the handle is open; `name` is a C string.
        let p = unsafe { libc::dlsym(self.handle, name.as_ptr()) };
        (!p.is_null()).then_some(p)
    }
}

impl Drop for Library {
    fn drop(&mut self) {
        // SAFETY: the handle came from dlopen and is closed once.
        if unsafe { libc::dlclose(self.handle) } != 0 {
            log::warn!(
                "cannot unload the sync handler: {}",
                dl_error().unwrap_or_default()
            );
        }
    }
}

fn dl_error() -> Option<String> {
    // SAFETY: dlerror returns NULL or a NUL-terminated string valid until
    // the next dl call on this thread; it is copied at once.
    let p = unsafe { libc::dlerror() };
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

/// `dlopen` handles whose handler is initialised right now: a second
/// handler for the same object (a reload) waits with its init until the
/// first one's deinit has run.
static INITIALISED: Mutex<Option<HashSet<usize>>> = Mutex::new(None);

fn with_initialised<R>(f: impl FnOnce(&mut HashSet<usize>) -> R) -> R {
    let mut g = INITIALISED.lock().unwrap_or_else(|p| p.into_inner());
    f(g.get_or_insert_with(HashSet::new))
}

/// The `so`/`rsyncso` handler.
pub struct SoHandler {
    cfg: SoConfig,
    // Field order matters for drop: the ctx and its strings outlive the
    // library only as long as `Drop` needs them; the library goes last.
    ctx: Box<Ctx>,
    _strings: Vec<CString>,
    init: Option<InitFn>,
    sync: Option<SyncFn>,
    rsync: Option<RsyncFn>,
    deinit: Option<DeinitFn>,
    initialised: bool,
    lists: Option<ListDir>,
    seq: u64,
    lib: Library,
}

// SAFETY: the raw pointers (the library handle, the ctx strings) belong to
// this handler alone and are only used by whichever single thread owns it;
// the daemon moves it to its worker thread once and calls it from there.
unsafe impl Send for SoHandler {}

impl SoHandler {
    /// Checks and loads the object and resolves its functions; runs its
    /// init unless another handler for the same object is initialised (then
    /// the init runs before the first batch).
    pub fn new(cfg: SoConfig) -> Result<SoHandler, SoError> {
        check_object(&cfg.object)?;
        let shown = path::display_os(&cfg.object);
        let lib = Library::open(&cfg.object)?;
        // SAFETY (all four): the symbols are declared with these signatures
        // by <clsync/clsync.h>; a handler that defines them otherwise breaks
        // the ABI it was written for.
        let init = lib
            .symbol(c"clsyncapi_init")
            .map(|p| unsafe { std::mem::transmute::<*mut c_void, InitFn>(p) });
        let sync = lib
            .symbol(c"clsyncapi_sync")
            .map(|p| unsafe { std::mem::transmute::<*mut c_void, SyncFn>(p) });
        let rsync = lib
            .symbol(c"clsyncapi_rsync")
            .map(|p| unsafe { std::mem::transmute::<*mut c_void, RsyncFn>(p) });
        let deinit = lib
            .symbol(c"clsyncapi_deinit")
            .map(|p| unsafe { std::mem::transmute::<*mut c_void, DeinitFn>(p) });
        let present = match cfg.mode {
            SoMode::Sync => sync.is_some(),
            SoMode::Rsync => rsync.is_some(),
        };
        if !present {
            return Err(SoError::Symbol {
                path: shown,
                symbol: cfg.mode.required(),
                mode: cfg.mode.name(),
                signature: match cfg.mode {
                    SoMode::Sync => "int n, api_eventinfo_t *ei",
                    SoMode::Rsync => "const char *inclist, const char *exclist",
                },
            });
        }
        let lists = match cfg.mode {
            SoMode::Sync => None,
            SoMode::Rsync => Some(
                ListDir::new(cfg.lists_dir.as_deref())
                    .map_err(|e| SoError::Setup(e.to_string()))?,
            ),
        };
        let (ctx, strings) = Ctx::build(&cfg, lists.as_ref().map(ListDir::path));
        let mut h = SoHandler {
            cfg,
            ctx,
            _strings: strings,
            init,
            sync,
            rsync,
            deinit,
            initialised: false,
            lists,
            seq: 0,
            lib,
        };
        let done = h.ensure_init().map_err(|(code, reason)| SoError::Init {
            path: shown.clone(),
            code,
            reason,
        })?;
        if !done {
            log::debug!("{shown}: init deferred until the running handler is replaced");
        }
        Ok(h)
    }

    /// Runs `clsyncapi_init` once, unless another handler of the same
    /// object is initialised (then `Ok(false)`). The check and the init
    /// happen under one lock, which deinit takes too. Err: its return code
    /// and strerror.
    fn ensure_init(&mut self) -> Result<bool, (c_int, String)> {
        if self.initialised {
            return Ok(true);
        }
        let mut guard = INITIALISED.lock().unwrap_or_else(|p| p.into_inner());
        let live = guard.get_or_insert_with(HashSet::new);
        let key = self.lib.handle as usize;
        if live.contains(&key) {
            return Ok(false);
        }
        if let Some(init) = self.init {
            // SAFETY: the ctx lives as long as the handler (boxed, never
            // moved) and so do the strings it points to.
            let rc = unsafe { init(&mut *self.ctx, std::ptr::null_mut()) };
            if rc != 0 {
                let text = io::Error::from_raw_os_error(rc).to_string();
                // "Invalid argument (os error 22)": the code is shown already.
                let text = match text.rsplit_once(" (os error") {
                    Some((t, _)) => t.to_string(),
                    None => text,
                };
                return Err((rc, text));
            }
        }
        self.initialised = true;
        live.insert(key);
        Ok(true)
    }

    fn shown(&self) -> String {
        path::display_os(&self.cfg.object)
    }

    fn returned(&self, func: &str, rc: c_int) -> HandlerError {
        HandlerError::Other(format!(
            "sync handler {}: {func} returned {rc}",
            self.shown()
        ))
    }

    fn run_sync(&mut self, batch: &Batch) -> Result<(), HandlerError> {
        let Some(sync) = self.sync else {
            return Err(HandlerError::Other("clsyncapi_sync is missing".into()));
        };
        let src = self.cfg.src.clone();
        let rules = Arc::clone(&self.cfg.rules);
        let mut list = |p: &[u8]| list_below(&src, p, &rules);
        let recursion = if self.cfg.recursive_sync {
            Recursion::Flag
        } else {
            Recursion::List(&mut list)
        };
        let entries = event_entries(batch, |p| lstat_kind(&src, p), recursion);
        let paths: Vec<CString> = entries
            .iter()
            .map(|e| c_path(&e.path))
            .collect::<Result<_, _>>()?;
        let mut infos: Vec<ApiEventInfo> = entries
            .iter()
            .zip(&paths)
            .map(|(e, c)| ApiEventInfo {
                evmask: e.mask,
                flags: e.flags,
                path_len: c.as_bytes().len(),
                path: c.as_ptr(),
                objtype_old: e.objtype_old,
                objtype_new: e.objtype_new,
            })
            .collect();
        let n = c_int::try_from(infos.len())
            .map_err(|_| HandlerError::Other("batch too large for clsyncapi_sync".into()))?;
        // SAFETY: `infos` and the strings it points to live across the call;
        // the handler may not keep the pointers (clsync frees them too).
        let rc = unsafe { sync(n, infos.as_mut_ptr()) };
        drop(infos);
        if rc != 0 {
            return Err(self.returned("clsyncapi_sync", rc));
        }
        Ok(())
    }

    fn run_rsync(&mut self, batch: &Batch) -> Result<(), HandlerError> {
        let Some(rsync) = self.rsync else {
            return Err(HandlerError::Other("clsyncapi_rsync is missing".into()));
        };
        let src = self.cfg.src.clone();
        let inc = Includes::from_batch(batch, |p| lstat_kind(&src, p));
        let ex = Excludes::new(self.rule_exclusions(&inc)).relevant_to(&inc);
        for part in inc.split(self.cfg.inclimit) {
            // The C side reads lines with fgets-like code: NUL separators
            // are not an option, so line breaks in names become `?`.
            let sep = Separator::Newline;
            let dir = match &self.lists {
                Some(l) => l.path().to_path_buf(),
                None => return Err(HandlerError::Other("no list directory".into())),
            };
            let keep = self.cfg.keep_lists;
            let label = self.cfg.label.clone();
            let excl = if self.cfg.prefer_include {
                None
            } else {
                let bytes = lists::render_excludes(&ex, sep);
                Some(write_list(
                    &dir,
                    &mut self.seq,
                    &label,
                    keep,
                    "exclude",
                    &bytes,
                )?)
            };
            let inline = self.cfg.prefer_include.then_some(&ex);
            let bytes = lists::render_includes(&part, inline, sep);
            let incl = write_list(&dir, &mut self.seq, &label, keep, "include", &bytes)?;
            let incl_c = c_path(incl.path.as_os_str().as_bytes())?;
            let excl_c = match &excl {
                Some(f) => Some(c_path(f.path.as_os_str().as_bytes())?),
                None => None,
            };
            // SAFETY: both strings live across the call; exclist is NULL
            // with --rsync-prefer-include, as in clsync.
            let rc = unsafe {
                rsync(
                    incl_c.as_ptr(),
                    excl_c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
                )
            };
            drop((incl, excl));
            if rc != 0 {
                return Err(self.returned("clsyncapi_rsync", rc));
            }
        }
        Ok(())
    }

    /// What the rules refuse within what `inc` covers (as rsyncdirect does).
    fn rule_exclusions(&self, inc: &Includes) -> Vec<Vec<u8>> {
        let rules = &self.cfg.rules;
        if rules.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for p in inc.op_paths() {
            if let Some(kind) = lstat_kind(&self.cfg.src, p) {
                let k = match kind {
                    SourceKind::Dir => Kind::Dir,
                    SourceKind::File => Kind::File,
                };
                if !p.is_empty() && !rules.permits(p, k, Action::Sync) {
                    out.push(p.to_vec());
                }
            }
        }
        for root in inc.subtrees() {
            if out.iter().any(|x| path::is_under(root, x)) {
                continue;
            }
            out.extend(super::rsync::excluded_below(&self.cfg.src, root, |p, k| {
                rules.permits(p, k, Action::Sync)
            }));
        }
        out
    }
}

impl Handler for SoHandler {
    fn name(&self) -> &str {
        self.cfg.mode.name()
    }

    fn run(&mut self, batch: &Batch) -> Result<Report, HandlerError> {
        if batch.is_empty() {
            return Ok(Report::default());
        }
        let done = self.ensure_init().map_err(|(code, reason)| {
            HandlerError::Other(format!(
                "sync handler {}: clsyncapi_init returned {code} ({reason})",
                self.shown()
            ))
        })?;
        if !done {
            return Err(HandlerError::Other(format!(
                "sync handler {}: still initialised by the handler it replaces; retrying",
                self.shown()
            )));
        }
        match self.cfg.mode {
            SoMode::Sync => self.run_sync(batch)?,
            SoMode::Rsync => self.run_rsync(batch)?,
        }
        // `ctx->iteration_num`: the successful runs before the next call.
        self.ctx.iteration_num = self.ctx.iteration_num.wrapping_add(1);
        Ok(Report {
            exit_code: Some(0),
            ..Report::default()
        })
    }
}

impl Drop for SoHandler {
    fn drop(&mut self) {
        if self.initialised {
            let shown = self.shown();
            let (deinit, key) = (self.deinit, self.lib.handle as usize);
            // Under the lock the init takes: no other handler of this
            // object initialises while this one deinitialises.
            with_initialised(|live| {
                if let Some(deinit) = deinit {
                    // SAFETY: called once, after init, before dlclose.
                    let rc = unsafe { deinit() };
                    if rc != 0 {
                        log::warn!("sync handler {shown}: clsyncapi_deinit returned {rc}");
                    }
                }
                live.remove(&key);
            });
        }
        if let Some(lists) = &self.lists {
            lists.cleanup(self.cfg.keep_lists);
        }
    }
}

fn c_path(p: &[u8]) -> Result<CString, HandlerError> {
    CString::new(p)
        .map_err(|_| HandlerError::Other(format!("{}: a path with a NUL byte", path::display(p))))
}

/// The inotify event bits of `api_eventinfo_t.evmask`: clsync's API carries
/// inotify's values on every system, so they are spelled out here rather
/// than taken from libc (which has them only where inotify exists).
mod in_mask {
    pub const CLOSE_WRITE: u32 = 0x0000_0008;
    pub const MOVED_FROM: u32 = 0x0000_0040;
    pub const MOVED_TO: u32 = 0x0000_0080;
    pub const CREATE: u32 = 0x0000_0100;
    pub const DELETE: u32 = 0x0000_0200;
    pub const ISDIR: u32 = 0x4000_0000;
}

/// One `api_eventinfo_t` before it gets its C string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventEntry {
    /// Relative path; empty for the watch dir itself.
    pub path: Vec<u8>,
    pub mask: u32,
    pub flags: u32,
    pub objtype_old: c_int,
    pub objtype_new: c_int,
}

/// What an op asks of one path, for [`mask_for`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpRole {
    /// `Op::Sync`.
    Sync,
    /// The old name of an `Op::Move`.
    MovedFrom,
    /// The new name of an `Op::Move`.
    MovedTo,
}

/// The inotify mask of an entry, derived from the op and the source's lstat
/// now: a present file `IN_CREATE|IN_CLOSE_WRITE`, a present directory
/// `IN_CREATE|IN_ISDIR`, a missing path `IN_DELETE`; the two ends of a move
/// `IN_MOVED_FROM`/`IN_MOVED_TO` (with `IN_ISDIR` for a directory; the old
/// name takes the kind of the new one). When batches carry the masks the
/// monitor recorded, this is the one place to use them instead.
pub fn mask_for(role: OpRole, now: Option<SourceKind>, moved_kind: Option<SourceKind>) -> u32 {
    let dir = |k: Option<SourceKind>| {
        if k == Some(SourceKind::Dir) {
            in_mask::ISDIR
        } else {
            0
        }
    };
    match role {
        OpRole::MovedFrom => in_mask::MOVED_FROM | dir(moved_kind),
        OpRole::MovedTo => in_mask::MOVED_TO | dir(now),
        OpRole::Sync => match now {
            None => in_mask::DELETE,
            Some(SourceKind::Dir) => in_mask::CREATE | in_mask::ISDIR,
            Some(SourceKind::File) => in_mask::CREATE | in_mask::CLOSE_WRITE,
        },
    }
}

fn objtype(k: Option<SourceKind>) -> c_int {
    match k {
        None => EOT_DOESNTEXIST,
        Some(SourceKind::File) => EOT_FILE,
        Some(SourceKind::Dir) => EOT_DIR,
    }
}

/// Lists what is below a directory: (relative path, kind) pairs.
pub type Lister<'a> = dyn FnMut(&[u8]) -> Vec<(Vec<u8>, SourceKind)> + 'a;

/// How a recursive op reaches the handler in `so` mode.
pub enum Recursion<'a> {
    /// One entry flagged `EVIF_RECURSIVELY` (clsync with
    /// `--have-recursive-sync`).
    Flag,
    /// The entry itself and one entry per path below it, as clsync does
    /// without `--have-recursive-sync`: the callback lists what is below a
    /// directory (path, kind), parents before children, as the rules allow.
    List(&'a mut Lister<'a>),
}

/// The entries `clsyncapi_sync` gets for `batch`: one per synced path, two
/// per move (old name, then new name); a recursive op on a directory as
/// `recursion` says. `stat` is lstat of a source path (None when gone).
/// Paths are relative, the watch dir itself is the empty path (as in
/// clsync), and a path appears once (its first entry wins).
pub fn event_entries(
    batch: &Batch,
    mut stat: impl FnMut(&[u8]) -> Option<SourceKind>,
    mut recursion: Recursion<'_>,
) -> Vec<EventEntry> {
    let mut out = Entries::default();
    for op in &batch.ops {
        let (path, role, now, recursive) = match op {
            Op::Sync { path, recursive } => (path, OpRole::Sync, stat(path), *recursive),
            Op::Move { from, to } => {
                let to_now = stat(to);
                let from_now = stat(from);
                out.push(EventEntry {
                    path: from.clone(),
                    mask: mask_for(OpRole::MovedFrom, from_now, to_now),
                    flags: 0,
                    objtype_old: objtype(to_now),
                    objtype_new: objtype(from_now),
                });
                (to, OpRole::MovedTo, to_now, true)
            }
        };
        let flag = recursive && matches!(recursion, Recursion::Flag);
        out.push(EventEntry {
            path: path.clone(),
            mask: mask_for(role, now, None),
            flags: if flag { EVIF_RECURSIVELY } else { 0 },
            objtype_old: EOT_UNKNOWN,
            objtype_new: objtype(now),
        });
        if let (true, Recursion::List(list), Some(SourceKind::Dir)) =
            (recursive, &mut recursion, now)
        {
            for (q, kind) in list(path) {
                let isdir = if kind == SourceKind::Dir {
                    in_mask::ISDIR
                } else {
                    0
                };
                out.push(EventEntry {
                    path: q,
                    mask: in_mask::CREATE | isdir,
                    flags: 0,
                    objtype_old: EOT_DOESNTEXIST,
                    objtype_new: objtype(Some(kind)),
                });
            }
        }
    }
    out.list
}

/// Entries in order, each path once.
#[derive(Default)]
struct Entries {
    list: Vec<EventEntry>,
    seen: HashSet<Vec<u8>>,
}

impl Entries {
    fn push(&mut self, e: EventEntry) {
        if self.seen.insert(e.path.clone()) {
            self.list.push(e);
        }
    }
}

/// Everything below `root` in the source (lstat only: symlinks are not
/// followed), parents before children, sorted by name within a directory,
/// leaving out (and not descending into) what the rules do not sync.
/// Unreadable directories are skipped with a debug line.
fn list_below(src: &Path, root: &[u8], rules: &Rules) -> Vec<(Vec<u8>, SourceKind)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_vec()];
    while let Some(dir) = stack.pop() {
        let mut names: Vec<(Vec<u8>, bool)> = match fs::read_dir(path::abs(src, &dir)) {
            Ok(it) => it
                .flatten()
                .map(|e| {
                    let isdir = e.file_type().is_ok_and(|t| t.is_dir());
                    (path::join(&dir, e.file_name().as_bytes()), isdir)
                })
                .collect(),
            Err(e) => {
                log::debug!("not listing {}: {e}", path::display(&dir));
                continue;
            }
        };
        names.sort();
        let mut subdirs = Vec::new();
        for (rel, isdir) in names {
            let kind = if isdir { Kind::Dir } else { Kind::File };
            if !rules.permits(&rel, kind, Action::Sync) {
                continue;
            }
            if isdir {
                out.push((rel.clone(), SourceKind::Dir));
                subdirs.push(rel);
            } else {
                out.push((rel, SourceKind::File));
            }
        }
        // Popped in name order.
        stack.extend(subdirs.into_iter().rev());
    }
    out
}

/// lstat of a source path: None when it is gone.
fn lstat_kind(src: &Path, rel: &[u8]) -> Option<SourceKind> {
    match fs::symlink_metadata(path::abs(src, rel)) {
        Ok(m) if m.is_dir() => Some(SourceKind::Dir),
        Ok(_) => Some(SourceKind::File),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => None,
        Err(_) => Some(SourceKind::File),
    }
}

// ---------------------------------------------------------------------------
// struct ctx
// ---------------------------------------------------------------------------

/// `OPTION_FLAGS` of `<clsync/ctx.h>`: size of the `flags` arrays.
const OPTION_FLAGS: usize = 1 << 10;
const OPTION_LONGOPTONLY: usize = 1 << 9;
const MAXCHILDREN: usize = 1 << 8;
const MAXRULES: usize = 1 << 8;
const MAXSIGNALNUM: usize = 1 << 9;
const MAXARGUMENTS: usize = 1 << 8;
const QUEUE_MAX: usize = 4;
const MAX_BLOCKTHREADS: usize = 1 << 4;
const SHARGS_MAX: usize = 2;
/// `enum state_enum`: `STATE_RUNNING`.
const STATE_RUNNING: c_int = 2;

/// `flags[]` indexes (`enum flags_enum`) livesync fills in.
pub mod flag {
    use super::OPTION_LONGOPTONLY;
    pub const MODE: usize = b'M' as usize;
    pub const DEBUG: usize = b'd' as usize;
    pub const THREADING: usize = b'p' as usize;
    pub const DONTUNLINK: usize = b'U' as usize;
    pub const SYNCTIMEOUT: usize = b'k' as usize;
    pub const RSYNCINCLIMIT: usize = 1 | OPTION_LONGOPTONLY;
    pub const RSYNCPREFERINCLUDE: usize = 2 | OPTION_LONGOPTONLY;
    pub const HAVERECURSIVESYNC: usize = OPTION_LONGOPTONLY;
}

/// `struct rule` (regex_t is glibc's).
#[repr(C)]
struct Rule {
    num: c_int,
    expr: libc::regex_t,
    objtype: libc::mode_t,
    perm: c_int,
    mask: c_int,
}

#[repr(C)]
struct QueueInfo {
    collectdelay: c_uint,
    stime: libc::time_t,
}

#[repr(C)]
struct SyncHandlerArgs {
    v: [*mut c_char; MAXARGUMENTS],
    c: c_int,
    isexpanded: [c_char; MAXARGUMENTS],
}

/// `struct ctx` of `<clsync/ctx.h>` (clsync 0.4.5), as a handler compiled
/// against the packaged headers sees it: none of the optional
/// `CAPABILITIES_SUPPORT`, `CLUSTER_SUPPORT`, `CGROUP_SUPPORT`,
/// `UNSHARE_SUPPORT` members. Field names follow the header; what livesync
/// has no value for stays zero/NULL.
#[repr(C)]
pub struct Ctx {
    state: c_int,
    pid: libc::pid_t,
    pid_str: [c_char; 65],
    pid_str_len: usize,
    uid: libc::uid_t,
    gid: libc::gid_t,
    privileged_uid: libc::uid_t,
    privileged_gid: libc::gid_t,
    synchandler_uid: libc::uid_t,
    synchandler_gid: libc::gid_t,
    child_pid: [libc::pid_t; MAXCHILDREN],
    children: c_int,
    iteration_num: u32,
    rules: [Rule; MAXRULES],
    rules_count: usize,
    st_dev: libc::dev_t,
    flags_values_raw: [*mut c_char; OPTION_FLAGS],
    flags: [c_int; OPTION_FLAGS],
    flags_set: [c_int; OPTION_FLAGS],
    config_path: *mut c_char,
    config_block: *const c_char,
    customsignal: [*mut c_char; MAXSIGNALNUM + 1],
    label: *mut c_char,
    watchdir: *mut c_char,
    pidfile: *mut c_char,
    standbyfile: *mut c_char,
    exithookfile: *mut c_char,
    preexithookfile: *mut c_char,
    destdir: *mut c_char,
    destproto: *mut c_char,
    watchdirwslash: *mut c_char,
    destdirwslash: *mut c_char,
    statusfile: *mut c_char,
    socketpath: *mut c_char,
    dump_path: *mut c_char,
    socket: c_int,
    socketmod: libc::mode_t,
    socketuid: libc::uid_t,
    socketgid: libc::gid_t,
    watchdirlen: usize,
    destdirlen: usize,
    watchdirsize: usize,
    destdirsize: usize,
    watchdirwslashsize: usize,
    destdirwslashsize: usize,
    watchdir_dirlevel: c_short,
    handlerfpath: *mut c_char,
    handler_handle: *mut c_void,
    handler_funct: [*mut c_void; 4],
    rulfpath: *mut c_char,
    rulfpathsize: usize,
    listoutdir: *mut c_char,
    notifyenginefunct: [*mut c_void; 3],
    retries: c_int,
    bfilethreshold: usize,
    syncdelay: c_uint,
    queues: [QueueInfo; QUEUE_MAX],
    rsyncinclimit: c_uint,
    synctime: libc::time_t,
    synctimeout: c_uint,
    sigset: *mut c_void,
    isignoredexitcode: [c_char; 1 << 8],
    blockthread: [libc::pthread_t; MAX_BLOCKTHREADS],
    blockthread_count: usize,
    chroot_dir: *mut c_char,
    synchandler_args: [SyncHandlerArgs; SHARGS_MAX],
    synchandler_argf: c_int,
    indexes_p: *mut c_void,
    fsmondata: *mut c_void,
}

/// `(field, offset)` of the [`Ctx`] members a handler is likely to read, and
/// `("sizeof", size)`: compared with the C header by tests/so.rs.
pub fn ctx_layout() -> Vec<(&'static str, usize)> {
    use std::mem::offset_of;
    vec![
        ("sizeof", std::mem::size_of::<Ctx>()),
        ("state", offset_of!(Ctx, state)),
        ("pid", offset_of!(Ctx, pid)),
        ("pid_str", offset_of!(Ctx, pid_str)),
        ("uid", offset_of!(Ctx, uid)),
        ("iteration_num", offset_of!(Ctx, iteration_num)),
        ("rules", offset_of!(Ctx, rules)),
        ("flags_values_raw", offset_of!(Ctx, flags_values_raw)),
        ("flags", offset_of!(Ctx, flags)),
        ("flags_set", offset_of!(Ctx, flags_set)),
        ("label", offset_of!(Ctx, label)),
        ("watchdir", offset_of!(Ctx, watchdir)),
        ("destdir", offset_of!(Ctx, destdir)),
        ("destproto", offset_of!(Ctx, destproto)),
        ("watchdirwslash", offset_of!(Ctx, watchdirwslash)),
        ("destdirwslash", offset_of!(Ctx, destdirwslash)),
        ("watchdirlen", offset_of!(Ctx, watchdirlen)),
        ("destdirlen", offset_of!(Ctx, destdirlen)),
        ("watchdirwslashsize", offset_of!(Ctx, watchdirwslashsize)),
        ("destdirwslashsize", offset_of!(Ctx, destdirwslashsize)),
        ("handlerfpath", offset_of!(Ctx, handlerfpath)),
        ("listoutdir", offset_of!(Ctx, listoutdir)),
        ("retries", offset_of!(Ctx, retries)),
        ("rsyncinclimit", offset_of!(Ctx, rsyncinclimit)),
        ("synctimeout", offset_of!(Ctx, synctimeout)),
        ("isignoredexitcode", offset_of!(Ctx, isignoredexitcode)),
        ("synchandler_args", offset_of!(Ctx, synchandler_args)),
        ("indexes_p", offset_of!(Ctx, indexes_p)),
        ("fsmondata", offset_of!(Ctx, fsmondata)),
    ]
}

/// `(field, offset)` and `("sizeof", size)` of [`ApiEventInfo`].
pub fn eventinfo_layout() -> Vec<(&'static str, usize)> {
    use std::mem::offset_of;
    vec![
        ("sizeof", std::mem::size_of::<ApiEventInfo>()),
        ("evmask", offset_of!(ApiEventInfo, evmask)),
        ("flags", offset_of!(ApiEventInfo, flags)),
        ("path_len", offset_of!(ApiEventInfo, path_len)),
        ("path", offset_of!(ApiEventInfo, path)),
        ("objtype_old", offset_of!(ApiEventInfo, objtype_old)),
        ("objtype_new", offset_of!(ApiEventInfo, objtype_new)),
    ]
}

impl Ctx {
    /// A zeroed ctx with what livesync knows filled in; the strings it
    /// points to are returned alongside and must outlive it.
    fn build(cfg: &SoConfig, lists_dir: Option<&Path>) -> (Box<Ctx>, Vec<CString>) {
        // SAFETY: every member of `Ctx` (integers, raw pointers, arrays of
        // them, glibc's regex_t) is valid when all bits are zero; the box is
        // allocated zeroed, never on the stack (the struct is ~48 KiB).
        let mut ctx: Box<Ctx> = unsafe {
            let layout = std::alloc::Layout::new::<Ctx>();
            let p = std::alloc::alloc_zeroed(layout) as *mut Ctx;
            if p.is_null() {
                std::alloc::handle_alloc_error(layout);
            }
            Box::from_raw(p)
        };
        let mut strings = Vec::new();
        let mut keep = |bytes: &[u8]| -> *mut c_char {
            // Paths cannot hold a NUL byte; a label could: cut it there.
            let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
            let c = CString::new(&bytes[..end]).unwrap_or_default();
            let p = c.as_ptr() as *mut c_char;
            strings.push(c);
            p
        };
        let with_slash = |b: &[u8]| {
            let mut v = b.to_vec();
            if v.last() != Some(&b'/') {
                v.push(b'/');
            }
            v
        };
        let src = cfg.src.as_os_str().as_bytes();
        let dst = cfg.dst.as_bytes();
        ctx.state = STATE_RUNNING;
        // SAFETY: these calls cannot fail and touch no memory of ours.
        let (pid, uid, gid) = unsafe { (libc::getpid(), libc::getuid(), libc::getgid()) };
        ctx.pid = pid;
        let pid_s = pid.to_string();
        for (d, s) in ctx.pid_str.iter_mut().zip(pid_s.bytes()) {
            *d = s as c_char;
        }
        ctx.pid_str_len = pid_s.len();
        ctx.uid = uid;
        ctx.gid = gid;
        ctx.privileged_uid = uid;
        ctx.privileged_gid = gid;
        ctx.synchandler_uid = uid;
        ctx.synchandler_gid = gid;
        ctx.label = keep(cfg.label.as_bytes());
        ctx.watchdir = keep(src);
        ctx.destdir = keep(dst);
        ctx.watchdirwslash = keep(&with_slash(src));
        ctx.destdirwslash = keep(&with_slash(dst));
        ctx.handlerfpath = keep(cfg.object.as_os_str().as_bytes());
        if let Some(d) = lists_dir {
            ctx.listoutdir = keep(d.as_os_str().as_bytes());
        }
        ctx.watchdirlen = src.len();
        ctx.destdirlen = dst.len();
        ctx.watchdirsize = src.len() + 1;
        ctx.destdirsize = dst.len() + 1;
        ctx.watchdirwslashsize = with_slash(src).len() + 1;
        ctx.destdirwslashsize = with_slash(dst).len() + 1;
        ctx.watchdir_dirlevel = src.iter().filter(|&&b| b == b'/').count() as c_short;
        ctx.rsyncinclimit = c_uint::try_from(cfg.inclimit).unwrap_or(c_uint::MAX);
        ctx.synctimeout = cfg.timeout_secs;
        ctx.socket = -1;
        let mut set = |i: usize, v: c_int| {
            ctx.flags[i] = v;
            ctx.flags_set[i] = 1;
        };
        set(flag::MODE, cfg.mode.clsync_id());
        set(flag::DEBUG, cfg.debug);
        set(flag::THREADING, 0);
        set(flag::DONTUNLINK, c_int::from(cfg.keep_lists));
        set(flag::HAVERECURSIVESYNC, c_int::from(cfg.recursive_sync));
        set(flag::RSYNCPREFERINCLUDE, c_int::from(cfg.prefer_include));
        set(
            flag::RSYNCINCLIMIT,
            c_int::try_from(cfg.inclimit).unwrap_or(c_int::MAX),
        );
        set(
            flag::SYNCTIMEOUT,
            c_int::try_from(cfg.timeout_secs).unwrap_or(c_int::MAX),
        );
        (ctx, strings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn batch(ops: Vec<Op>) -> Batch {
        Batch::of(ops)
    }

    #[test]
    fn masks_follow_the_source_state() {
        use super::in_mask::{
            CLOSE_WRITE as IN_CLOSE_WRITE, CREATE as IN_CREATE, DELETE as IN_DELETE,
            ISDIR as IN_ISDIR, MOVED_FROM as IN_MOVED_FROM, MOVED_TO as IN_MOVED_TO,
        };
        let f = Some(SourceKind::File);
        let d = Some(SourceKind::Dir);
        assert_eq!(mask_for(OpRole::Sync, f, None), IN_CREATE | IN_CLOSE_WRITE);
        assert_eq!(mask_for(OpRole::Sync, d, None), IN_CREATE | IN_ISDIR);
        assert_eq!(mask_for(OpRole::Sync, None, None), IN_DELETE);
        assert_eq!(
            mask_for(OpRole::MovedFrom, None, d),
            IN_MOVED_FROM | IN_ISDIR
        );
        assert_eq!(mask_for(OpRole::MovedFrom, None, f), IN_MOVED_FROM);
        assert_eq!(mask_for(OpRole::MovedTo, f, None), IN_MOVED_TO);
        assert_eq!(mask_for(OpRole::MovedTo, d, None), IN_MOVED_TO | IN_ISDIR);
    }

    fn entries(b: &Batch, recursion: Recursion<'_>) -> Vec<(String, u32, u32, c_int, c_int)> {
        let e = event_entries(
            b,
            |p| match p {
                b"" | b"new" | b"new/d" => Some(SourceKind::Dir),
                b"new/d/f" | b"x" => Some(SourceKind::File),
                _ => None,
            },
            recursion,
        );
        e.iter()
            .map(|e| {
                (
                    String::from_utf8_lossy(&e.path).into_owned(),
                    e.mask,
                    e.flags,
                    e.objtype_old,
                    e.objtype_new,
                )
            })
            .collect()
    }

    #[test]
    fn entries_split_moves_and_flag_or_list_recursive_ops() {
        use super::in_mask::{
            CREATE as C, DELETE as IN_DELETE, ISDIR as D, MOVED_FROM as IN_MOVED_FROM,
            MOVED_TO as IN_MOVED_TO,
        };
        let b = batch(vec![
            Op::Move {
                from: b"old".to_vec(),
                to: b"new".to_vec(),
            },
            Op::Sync {
                path: Vec::new(),
                recursive: true,
            },
            Op::Sync {
                path: b"gone".to_vec(),
                recursive: false,
            },
            Op::Sync {
                path: b"x".to_vec(),
                recursive: false,
            },
        ]);
        let s = |p: &str| p.to_string();
        assert_eq!(
            entries(&b, Recursion::Flag),
            vec![
                (s("old"), IN_MOVED_FROM | D, 0, EOT_DIR, EOT_DOESNTEXIST),
                (
                    s("new"),
                    IN_MOVED_TO | D,
                    EVIF_RECURSIVELY,
                    EOT_UNKNOWN,
                    EOT_DIR
                ),
                (s(""), C | D, EVIF_RECURSIVELY, EOT_UNKNOWN, EOT_DIR),
                (s("gone"), IN_DELETE, 0, EOT_UNKNOWN, EOT_DOESNTEXIST),
                (s("x"), C | in_mask::CLOSE_WRITE, 0, EOT_UNKNOWN, EOT_FILE),
            ]
        );
        // Listing: what is below comes after the op's own entry, each path
        // once (x below the root is not repeated by its own op).
        let mut list = |p: &[u8]| -> Vec<(Vec<u8>, SourceKind)> {
            match p {
                b"new" => vec![
                    (b"new/d".to_vec(), SourceKind::Dir),
                    (b"new/d/f".to_vec(), SourceKind::File),
                ],
                b"" => vec![
                    (b"new".to_vec(), SourceKind::Dir),
                    (b"x".to_vec(), SourceKind::File),
                ],
                _ => panic!("listed {}", path::display(p)),
            }
        };
        let (dne, file, dir) = (EOT_DOESNTEXIST, EOT_FILE, EOT_DIR);
        assert_eq!(
            entries(&b, Recursion::List(&mut list)),
            vec![
                (s("old"), IN_MOVED_FROM | D, 0, dir, dne),
                (s("new"), IN_MOVED_TO | D, 0, EOT_UNKNOWN, dir),
                (s("new/d"), C | D, 0, dne, dir),
                (s("new/d/f"), C, 0, dne, file),
                (s(""), C | D, 0, EOT_UNKNOWN, dir),
                (s("x"), C, 0, dne, file),
                (s("gone"), IN_DELETE, 0, EOT_UNKNOWN, dne),
            ]
        );
    }

    #[test]
    fn listing_skips_what_the_rules_refuse_and_does_not_follow_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path();
        fs::create_dir_all(src.join("a/b")).unwrap();
        fs::create_dir_all(src.join("skip.d")).unwrap();
        fs::write(src.join("a/b/f"), b"f").unwrap();
        fs::write(src.join("skip.d/inner"), b"i").unwrap();
        fs::write(src.join("z.tmp"), b"t").unwrap();
        std::os::unix::fs::symlink("a", src.join("link")).unwrap();
        let rules = Rules::parse(b"-d^skip\\.d$\n-f\\.tmp$\n", "test").unwrap();
        let got: Vec<(String, SourceKind)> = list_below(src, b"", &rules)
            .into_iter()
            .map(|(p, k)| (path::display(&p), k))
            .collect();
        use SourceKind::{Dir, File};
        assert_eq!(
            got,
            vec![
                ("a".to_string(), Dir),
                ("link".to_string(), File),
                ("a/b".to_string(), Dir),
                ("a/b/f".to_string(), File),
            ]
        );
    }

    #[test]
    fn refuses_what_clsync_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let so = dir.path().join("h.so");
        fs::write(&so, b"not really").unwrap();
        for (mode, ok) in [
            (0o644, true),
            (0o755, true),
            (0o664, false),
            (0o646, false),
            (0o4755, false),
            (0o2755, false),
            (0o1755, false),
        ] {
            fs::set_permissions(&so, fs::Permissions::from_mode(mode)).unwrap();
            let r = check_object(&so);
            assert_eq!(r.is_ok(), ok, "mode {mode:o}: {r:?}");
            if let Err(e) = r {
                let msg = e.to_string();
                assert!(msg.contains(&format!("{mode:04o}")), "{msg}");
                assert!(!msg.contains('\n'));
            }
        }
        assert!(matches!(
            check_object(dir.path()),
            Err(ObjectError::NotRegular { .. })
        ));
        assert!(matches!(
            check_object(&dir.path().join("missing.so")),
            Err(ObjectError::Stat { .. })
        ));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn event_mask_bits_are_inotifys() {
        use super::in_mask;
        assert_eq!(in_mask::CLOSE_WRITE, libc::IN_CLOSE_WRITE);
        assert_eq!(in_mask::MOVED_FROM, libc::IN_MOVED_FROM);
        assert_eq!(in_mask::MOVED_TO, libc::IN_MOVED_TO);
        assert_eq!(in_mask::CREATE, libc::IN_CREATE);
        assert_eq!(in_mask::DELETE, libc::IN_DELETE);
        assert_eq!(in_mask::ISDIR, libc::IN_ISDIR);
    }
}
