//! rsyncdirect: sync a batch by running rsync with include/exclude lists.
//!
//! This module owns clsync's `rsyncdirect` mode: for each batch it writes
//! the include list (and the exclude list unless `--rsync-prefer-include`)
//! from [`super::lists`], runs rsync through [`crate::exec`] with clsync's
//! default arguments
//! `-aH --delete --exclude-from EXCL --include-from INCL --exclude=* SRC/ DST/`
//! (plus `-X`, `-A` with `--xattrs`, `--acls`; or the user's template, rendered by [`super::template`]), judges the
//! exit code, and removes the list files. List files live in `-L`'s
//! directory or in a private 0700 directory made once per handler; each is
//! created exclusively, without following symlinks, mode 0600, and removed
//! only while it is still the file written (device and inode).
//!
//! It is also clsync's `rsyncshell` mode ([`RsyncConfig::shell`]): the same
//! lists, handed to the user's handler as
//! `rsynclist %label% %INCLUDE-LIST-PATH% [%EXCLUDE-LIST-PATH%]`, run in the
//! watch dir. With `-F` ([`RsyncConfig::full_initialsync`]) the rules
//! exclude nothing from the initial sync (the run whose `CLSYNC_STATUS` is
//! `initsync`).
//!
//! When rules are in force it walks the recursively synced subtrees (lstat
//! only, never following symlinks) to find what the rules refuse to sync, so
//! that rsync skips it; it does not otherwise read or change the trees, and
//! it never retries: a failure goes back to the daemon, which re-queues.
//!
//! In rsyncdirect it reads rsync's stderr: when a run fails and that names
//! why the destination could not be reached (ssh authentication, host key,
//! name lookup, a refused or unreachable connection, an rsync daemon's
//! login), the failure says so in one line ([`transport_cause`]) and the
//! full output goes to the debug log; otherwise the output is passed on.
//!
//! A run of several ops that rsync ends with "some files could not be
//! transferred" (23, 24) or a file I/O error (11: a full destination) is
//! split in halves, and halves of the halves that fail, so that the paths
//! that can go, go; the ops that still fail alone are returned as
//! [`HandlerError::Paths`] and only they are retried.

use super::lists::{self, Excludes, Includes, Separator, SourceKind};
use super::template::{Context, Macro, Template};
use super::{Handler, HandlerError, Report};
use crate::batch::{Batch, Op};
use crate::exec::{self, ExecError, Outcome};
use crate::path;
use crate::rules::{Action, Kind, Rules};
use std::ffi::{OsStr, OsString};
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Everything rsyncdirect needs, resolved from the command line.
#[derive(Clone, Debug)]
pub struct RsyncConfig {
    /// `-S`: the rsync binary (looked up in PATH when it has no slash).
    pub program: OsString,
    /// Handler arguments after `--` (a template); empty = clsync's defaults.
    pub args: Vec<OsString>,
    /// Canonical watch dir.
    pub src: PathBuf,
    /// Destination as given: a local dir, `host:path` or `rsync://…`.
    pub dst: OsString,
    /// `-L`: where list files go; None = a private 0700 temp dir.
    pub lists_dir: Option<PathBuf>,
    /// `-U`: keep list files after the run.
    pub keep_lists: bool,
    /// `-x`: exit codes that count as success (24 by default).
    pub ignore_exit: Vec<i32>,
    /// `-l`: the label.
    pub label: String,
    pub rules: Arc<Rules>,
    /// `--rsync-prefer-include`: no exclude-list file; exclusions go into
    /// the include list as `- /path` lines.
    pub prefer_include: bool,
    /// `--rsync-inclimit`: at most this many include lines per rsync run
    /// (a soft limit: ancestors are repeated in every part); 0 = no limit.
    pub inclimit: usize,
    /// `-k`: kill rsync's process group after this long; None = no limit.
    pub timeout: Option<Duration>,
    /// `-M rsyncshell`: `program` is the user's handler, whose default
    /// arguments are `rsynclist %label% %INCLUDE-LIST-PATH%
    /// [%EXCLUDE-LIST-PATH%]`; it runs in the watch dir.
    pub shell: bool,
    /// `-F`: the initial sync ignores the rules.
    pub full_initialsync: bool,
    /// `--xattrs`: rsync's `-X` in the default arguments.
    pub xattrs: bool,
    /// `--acls`: rsync's `-A` in the default arguments.
    pub acls: bool,
}

impl RsyncConfig {
    /// clsync's defaults for everything but the program and the two trees.
    pub fn new(
        program: impl Into<OsString>,
        src: impl Into<PathBuf>,
        dst: impl Into<OsString>,
    ) -> Self {
        RsyncConfig {
            program: program.into(),
            args: Vec::new(),
            src: src.into(),
            dst: dst.into(),
            lists_dir: None,
            keep_lists: false,
            ignore_exit: vec![24],
            label: "nolabel".to_string(),
            rules: Arc::new(Rules::allow_all()),
            prefer_include: false,
            inclimit: 20000,
            timeout: Some(Duration::from_secs(86400)),
            shell: false,
            full_initialsync: false,
            xattrs: false,
            acls: false,
        }
    }
}

/// Where list files are written.
#[derive(Debug)]
pub(crate) enum ListDir {
    /// `-L`: the user's directory; left in place.
    Given(PathBuf),
    /// Made by us; removed on drop unless lists are kept.
    Private(super::tempdir::PrivateDir),
}

impl ListDir {
    /// `-L`'s directory, or a fresh private 0700 one in the temp dir.
    pub(crate) fn new(given: Option<&Path>) -> Result<ListDir, HandlerError> {
        Ok(match given {
            Some(d) => ListDir::Given(d.to_path_buf()),
            None => {
                let tmp = std::env::temp_dir();
                ListDir::Private(
                    super::tempdir::PrivateDir::create(&tmp, "livesync-lists-")
                        .map_err(|e| list_error(&tmp, e))?,
                )
            }
        })
    }

    pub(crate) fn path(&self) -> &Path {
        match self {
            ListDir::Given(p) => p,
            ListDir::Private(d) => d.path(),
        }
    }

    /// Removes a private directory (unless lists are kept); for `Drop`.
    pub(crate) fn cleanup(&self, keep_lists: bool) {
        if let ListDir::Private(d) = self {
            let dir = d.path();
            if keep_lists {
                // Renamed out of the sweep's reach (see handler::tempdir):
                // kept means kept.
                let mut kept = dir.as_os_str().to_os_string();
                kept.push(".kept");
                match fs::rename(dir, &kept) {
                    Ok(()) => log::info!("list files kept in {}", path::display_os(Path::new(&kept))),
                    Err(e) => log::warn!("list files kept in {} (cannot rename it to *.kept: {e}; a later livesync may sweep it)", path::display_os(dir)),
                }
            } else if let Err(e) = fs::remove_dir_all(dir) {
                log::warn!("cannot remove {}: {e}", path::display_os(dir));
            }
        }
    }
}

pub struct RsyncDirect {
    cfg: RsyncConfig,
    /// None = clsync's default arguments.
    template: Option<Template>,
    lists: ListDir,
    /// Makes list file names unique within this handler.
    seq: u64,
    /// Exclusions handed in by the daemon, on top of what the walk finds.
    excluded: Vec<Vec<u8>>,
    /// Added to rsync's environment (set by the daemon before each run).
    env: Vec<(OsString, OsString)>,
    /// The next run is the initial sync (`CLSYNC_STATUS=initsync`).
    initial: bool,
}

impl RsyncDirect {
    pub fn new(cfg: RsyncConfig) -> Result<Self, HandlerError> {
        let template = if cfg.args.is_empty() {
            None
        } else {
            Some(Template::parse(&cfg.args).map_err(|e| HandlerError::Other(e.to_string()))?)
        };
        let lists = ListDir::new(cfg.lists_dir.as_deref())?;
        Ok(RsyncDirect {
            cfg,
            template,
            lists,
            seq: 0,
            excluded: Vec::new(),
            env: Vec::new(),
            initial: false,
        })
    }

    /// The directory list files are written to.
    pub fn lists_dir(&self) -> &Path {
        self.lists.path()
    }

    /// Paths (relative to the watch dir) that must never be synced, as
    /// collected by the daemon; they are added to the exclude list of every
    /// later run where they matter.
    pub fn set_excluded(&mut self, paths: Vec<Vec<u8>>) {
        self.excluded = paths;
    }

    /// Variables added to rsync's environment from the next run on (the
    /// daemon's `CLSYNC_STATUS`, `CLSYNC_ITERATION`, …).
    pub fn set_env(&mut self, env: Vec<(OsString, OsString)>) {
        self.initial = is_initial(&env);
        self.env = env;
    }

    fn program_name(&self) -> String {
        path::display(self.cfg.program.as_bytes())
    }

    /// The paths the rules refuse to sync within what `inc` covers: each op
    /// path itself, and everything below the recursively included ones
    /// (without descending into a refused directory).
    fn rule_exclusions(&self, inc: &Includes) -> Vec<Vec<u8>> {
        if self.cfg.rules.is_empty() || (self.cfg.full_initialsync && self.initial) {
            return Vec::new();
        }
        let rules = &self.cfg.rules;
        let mut out = Vec::new();
        for p in inc.op_paths() {
            if let Some(kind) = lstat_kind(&self.cfg.src, p) {
                if !p.is_empty() && !rules.permits(p, rule_kind(kind), Action::Sync) {
                    out.push(p.to_vec());
                }
            }
        }
        for root in inc.subtrees() {
            if out.iter().any(|x| path::is_under(root, x)) {
                continue;
            }
            out.extend(excluded_below(&self.cfg.src, root, |p, k| {
                rules.permits(p, k, Action::Sync)
            }));
        }
        out
    }

    /// One rsync run; with its outcome, the cause of a failure when rsync's
    /// stderr names one ([`transport_cause`]).
    fn run_part(
        &mut self,
        inc: &Includes,
        ex: &Excludes,
    ) -> Result<(Outcome, Option<String>), HandlerError> {
        let tpl = self.template.as_ref();
        let literal_from0 =
            tpl.is_some_and(|t| t.has_literal_arg(b"--from0") || t.has_literal_arg(b"-0"));
        let can_add_from0 = tpl.map_or(!self.cfg.shell, |t| t.uses(Macro::RsyncArgs));
        let needed = Separator::needed(inc.paths().chain(ex.paths()));
        let sep = if literal_from0 || (can_add_from0 && needed == Separator::Nul) {
            Separator::Nul
        } else {
            Separator::Newline
        };
        if needed == Separator::Nul && sep == Separator::Newline {
            log::warn!(
                "some paths contain a line break and the handler arguments have no --from0 or \
                 %RSYNC-ARGS%: writing them to the lists with '?' in place of the line break"
            );
        }

        let prefer_include = self.cfg.prefer_include;
        let want_excl_file = wants_exclude_file(&self.cfg, tpl);
        let inline = prefer_include.then_some(ex);
        let dir = self.lists.path();
        let (label, keep) = (self.cfg.label.as_str(), self.cfg.keep_lists);
        // The exclude list is written first: with default arguments its
        // file comes first on rsync's command line too.
        let excl = if want_excl_file {
            let bytes = lists::render_excludes(ex, sep);
            Some(write_list(
                dir,
                &mut self.seq,
                label,
                keep,
                "exclude",
                &bytes,
            )?)
        } else {
            None
        };
        let bytes = lists::render_includes(inc, inline, sep);
        let incl = write_list(dir, &mut self.seq, label, keep, "include", &bytes)?;

        let include_list: Vec<OsString> = inc.op_paths().into_iter().map(super::rel_arg).collect();
        let argv = run_argv(
            &self.cfg,
            tpl,
            &incl.path,
            excl.as_ref().map(|f| f.path.as_path()),
            sep,
            &include_list,
        );
        log::debug!(
            "running {}",
            argv.iter()
                .map(|a| path::display(a.as_bytes()))
                .collect::<Vec<_>>()
                .join(" ")
        );
        // rsync's own stderr is read for the cause of a failure (a user's
        // rsyncshell script's is left alone).
        let captured = (!self.cfg.shell).then(exec::Captured::default);
        let spec = exec::Spec {
            timeout: self.cfg.timeout,
            env: self.env.clone(),
            cwd: self.cfg.shell.then(|| self.cfg.src.clone()),
            stderr: captured.clone(),
            ..exec::Spec::new(argv)
        };
        let outcome = spec.run().map_err(|e| self.spawn_error(e))?;
        // `incl` and `excl` are removed here (unless kept).
        drop((incl, excl));
        let text = captured.map(|c| c.take()).unwrap_or_default();
        let cause = (!outcome.success(&self.cfg.ignore_exit))
            .then(|| transport_cause(&String::from_utf8_lossy(&text)))
            .flatten();
        match &cause {
            // One line says it (the daemon logs it with the failure); the
            // full output for -d.
            Some(_) => log::debug!(
                "{} said: {}",
                self.program_name(),
                String::from_utf8_lossy(&text).trim_end()
            ),
            None => {
                let _ = io::stderr().write_all(&text);
            }
        }
        Ok((outcome, cause))
    }

    fn spawn_error(&self, e: ExecError) -> HandlerError {
        let program = self.program_name();
        if self.cfg.shell {
            return HandlerError::Spawn {
                program,
                source: e.into_io(),
            };
        }
        super::spawn_error(&self.cfg.program, "rsync", e)
    }
}

impl Handler for RsyncDirect {
    fn set_env(&mut self, env: Vec<(OsString, OsString)>) {
        RsyncDirect::set_env(self, env);
    }

    fn name(&self) -> &str {
        if self.cfg.shell {
            "rsyncshell"
        } else {
            "rsyncdirect"
        }
    }

    fn run(&mut self, batch: &Batch) -> Result<Report, HandlerError> {
        if batch.is_empty() {
            return Ok(Report::default());
        }
        let mut code = None;
        match self.run_ops(&batch.ops, &mut code) {
            Err(e) if !self.cfg.shell && partial(&e) => {
                // Some paths could not go (a full destination, a file it
                // refuses): split the run so that the others do. (One op
                // alone fails alone, and nothing else waits for it.)
                let mut failed = Vec::new();
                if let [op] = &batch.ops[..] {
                    failed.extend(issues(op, &e));
                } else {
                    log::info!(
                        "{e}: syncing the batch's {} ops in parts to find the paths that fail",
                        batch.ops.len()
                    );
                    self.bisect(&batch.ops, &mut code, &mut failed)?;
                }
                let report = Report {
                    exit_code: code,
                    ..Report::default()
                };
                if failed.is_empty() {
                    Ok(report)
                } else {
                    Err(HandlerError::Paths { failed, report })
                }
            }
            Err(e) => Err(e),
            Ok(()) => Ok(Report {
                exit_code: code,
                ..Report::default()
            }),
        }
    }
}

impl RsyncDirect {
    /// One rsync run (or one per `--rsync-inclimit` part) for `ops`.
    fn run_ops(&mut self, ops: &[Op], code: &mut Option<i32>) -> Result<(), HandlerError> {
        let src = self.cfg.src.clone();
        let inc = Includes::from_batch(&Batch::of(ops.to_vec()), |p| lstat_kind(&src, p));
        let mut excluded = self.rule_exclusions(&inc);
        excluded.extend(self.excluded.iter().cloned());
        let ex = Excludes::new(excluded).relevant_to(&inc);
        for part in inc.split(self.cfg.inclimit) {
            let (outcome, cause) = self.run_part(&part, &ex)?;
            let program = self.program_name();
            judge(outcome, &program, &self.cfg.ignore_exit, code).map_err(|e| match cause {
                Some(cause) => HandlerError::Other(format!("{program} {outcome}: {cause}")),
                None => e,
            })?;
        }
        Ok(())
    }

    /// Runs the two halves of `ops` apart, and halves of a half that
    /// fails for some paths, down to single ops: those that still fail go
    /// into `failed`. Any other failure stops it.
    fn bisect(
        &mut self,
        ops: &[Op],
        code: &mut Option<i32>,
        failed: &mut Vec<super::PathIssue>,
    ) -> Result<(), HandlerError> {
        let (a, b) = ops.split_at(ops.len() / 2);
        for half in [a, b] {
            if half.is_empty() {
                continue;
            }
            match self.run_ops(half, code) {
                Ok(()) => {}
                Err(e) if partial(&e) && half.len() > 1 => self.bisect(half, code, failed)?,
                Err(e) if partial(&e) => failed.extend(issues(&half[0], &e)),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// The paths of `op` failed with `e`.
fn issues(op: &Op, e: &HandlerError) -> Vec<super::PathIssue> {
    let sides: Vec<(&[u8], bool)> = match op {
        Op::Sync { path, recursive } => vec![(path, *recursive)],
        Op::Move { from, to } => vec![(from, true), (to, true)],
    };
    sides
        .into_iter()
        .map(|(p, recursive)| super::PathIssue {
            path: p.to_vec(),
            recursive,
            message: format!("{}: {e}", path::display(p)),
        })
        .collect()
}

/// rsync's "some files could not be transferred" (23, 24) and its file
/// I/O error (11, what a full destination gives): other paths of the same
/// run may well go.
fn partial(e: &HandlerError) -> bool {
    matches!(
        e,
        HandlerError::Exit {
            code: 11 | 23 | 24,
            ..
        }
    )
}

/// clsync's default arguments without the program and the two trees
/// (what `%RSYNC-ARGS%` stands for), plus `--modify-window=-1`: rsync's
/// quick check compares whole seconds by default, so a same-size edit
/// within the second of the previous sync would be skipped and lost
/// (clsync loses it); with -1 rsync compares nanoseconds. `-X` and `-A`
/// follow `--xattrs` and `--acls` (off by default, as in clsync).
pub fn default_args(
    cfg: &RsyncConfig,
    incl: &Path,
    excl: Option<&Path>,
    sep: Separator,
) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec!["-aH".into(), "--delete".into(), "--modify-window=-1".into()];
    if cfg.xattrs {
        a.push("-X".into());
    }
    if cfg.acls {
        a.push("-A".into());
    }
    if sep == Separator::Nul {
        a.push("--from0".into());
    }
    if let Some(excl) = excl {
        a.push("--exclude-from".into());
        a.push(excl.into());
    }
    a.push("--include-from".into());
    a.push(incl.into());
    a.push("--exclude=*".into());
    a
}

/// Whether a run writes an exclude-list file: always but with
/// `--rsync-prefer-include`, and then only for a template that names it.
pub fn wants_exclude_file(cfg: &RsyncConfig, tpl: Option<&Template>) -> bool {
    !cfg.prefer_include || tpl.is_some_and(|t| t.uses(Macro::ExcludeListPath))
}

/// The argv of one rsyncdirect or rsyncshell run: `incl` and `excl` are
/// the list files written for it (`excl` when [`wants_exclude_file`]),
/// `include_list` the op paths (`.` for the root) for `%INCLUDE-LIST%`.
/// `--check-execvp-arguments` renders it with placeholders to learn the
/// shape of every argv this handler can run.
pub fn run_argv(
    cfg: &RsyncConfig,
    tpl: Option<&Template>,
    incl: &Path,
    excl: Option<&Path>,
    sep: Separator,
    include_list: &[OsString],
) -> Vec<OsString> {
    let file_excl = if cfg.prefer_include { None } else { excl };
    let rsync_args = default_args(cfg, incl, file_excl, sep);
    let mut argv = vec![cfg.program.clone()];
    match tpl {
        None if cfg.shell => {
            argv.push("rsynclist".into());
            argv.push(OsString::from(&cfg.label));
            argv.push(incl.into());
            if let Some(f) = excl {
                argv.push(f.into());
            }
        }
        None => {
            argv.extend(rsync_args);
            argv.push(dir_arg(cfg.src.as_os_str()));
            argv.push(dir_arg(&cfg.dst));
        }
        Some(t) => {
            let label = OsString::from(&cfg.label);
            let ctx = Context {
                include_list_path: Some(incl.as_os_str()),
                exclude_list_path: excl.map(Path::as_os_str),
                rsync_args: &rsync_args,
                label: Some(&label),
                watch_dir: Some(cfg.src.as_os_str()),
                destination_dir: Some(&cfg.dst),
                include_list,
                ..Context::default()
            };
            argv.extend(t.render(&ctx));
        }
    }
    argv
}

/// Whether a handler environment is the initial sync's.
pub(crate) fn is_initial(env: &[(OsString, OsString)]) -> bool {
    env.iter()
        .any(|(k, v)| k == "CLSYNC_STATUS" && v.as_bytes() == b"initsync")
}

/// Why rsync could not reach the destination, in one line, from what it and
/// its transport (ssh, an rsync daemon) wrote to stderr: the line that
/// says it, and what to do. None when it names none of these causes.
pub fn transport_cause(stderr: &str) -> Option<String> {
    const CAUSES: &[(&[&str], &str)] = &[
        (
            &[
                "Host key verification failed",
                "REMOTE HOST IDENTIFICATION HAS CHANGED",
                "host key is not known",
                "No matching host key",
            ],
            "ssh does not know the destination's host key, or it changed: add the host to the \
             known_hosts of the user the handler runs as (ssh to it once by hand, or \
             ssh-keyscan)",
        ),
        (
            &[
                "Permission denied (",
                "Permission denied, please try again",
                "Too many authentication failures",
                "read_passphrase: can't open /dev/tty",
                "No more authentication methods",
            ],
            "ssh could not log in: give the handler's user a key without a passphrase that the \
             destination accepts (ssh -i KEY in RSYNC_RSH or rsync's -e), or an ssh-agent",
        ),
        (
            &["@ERROR: auth failed"],
            "the rsync daemon refused the login: check the user and RSYNC_PASSWORD or \
             --password-file",
        ),
        (
            &[
                "Could not resolve hostname",
                "Name or service not known",
                "Temporary failure in name resolution",
                "failed to resolve",
            ],
            "the destination's host name does not resolve: check its spelling and DNS",
        ),
        (
            &["Connection refused"],
            "the destination refused the connection: is sshd (or the rsync daemon) running \
             there, on that port?",
        ),
        (
            &[
                "Connection timed out",
                "No route to host",
                "Network is unreachable",
                "Operation timed out",
            ],
            "the destination cannot be reached: check the network and the firewall",
        ),
    ];
    for (needles, what) in CAUSES {
        let line = stderr
            .lines()
            .map(str::trim)
            .find(|l| needles.iter().any(|n| l.contains(n)));
        if let Some(line) = line {
            let mut quoted: String = line.chars().take(160).collect();
            if quoted.len() < line.len() {
                quoted.push('…');
            }
            return Some(format!("{what} (\"{quoted}\")"));
        }
    }
    None
}

/// Judges one run's outcome: Ok for success or an ignored exit code (the
/// first non-zero ignored code goes into `code`), the error otherwise.
pub(crate) fn judge(
    outcome: Outcome,
    program: &str,
    ignore_exit: &[i32],
    code: &mut Option<i32>,
) -> Result<(), HandlerError> {
    let program = program.to_string();
    match outcome {
        o if o.success(ignore_exit) => {
            let c = o.code().unwrap_or(0);
            if c != 0 {
                log::debug!("{program} exited with code {c}, which is set to be ignored");
            }
            // Keep the first non-zero (ignored) code for the report.
            if code.map_or(true, |old| old == 0) {
                *code = Some(c);
            }
            Ok(())
        }
        Outcome::Exited(c) => Err(HandlerError::Exit { program, code: c }),
        Outcome::Signaled(s) => Err(HandlerError::Signal { program, signal: s }),
        Outcome::TimedOut { after, .. } => Err(HandlerError::Other(format!(
            "{program} was still running after {:.0?} (the sync timeout, -k) and was \
             killed with its process group",
            after
        ))),
    }
}

impl Drop for RsyncDirect {
    fn drop(&mut self) {
        self.lists.cleanup(self.cfg.keep_lists);
    }
}

/// A list file on disk; removed when dropped unless kept, and only while
/// it is still the file we made (device and inode): never a file or a
/// symlink someone put in its place.
pub(crate) struct ListFile {
    pub(crate) path: PathBuf,
    keep: bool,
    ident: (u64, u64),
}

impl Drop for ListFile {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        let ours = fs::symlink_metadata(&self.path)
            .is_ok_and(|m| m.file_type().is_file() && (m.dev(), m.ino()) == self.ident);
        if !ours {
            log::warn!(
                "list file {} is no longer the one livesync wrote; left in place",
                path::display_os(&self.path)
            );
            return;
        }
        if let Err(e) = fs::remove_file(&self.path) {
            log::warn!(
                "cannot remove list file {}: {e}",
                path::display_os(&self.path)
            );
        }
    }
}

/// Writes one list file in `dir`: exclusive create, no symlink following,
/// mode 0600. `seq` makes names unique within a handler.
pub(crate) fn write_list(
    dir: &Path,
    seq: &mut u64,
    label: &str,
    keep: bool,
    kind: &str,
    contents: &[u8],
) -> Result<ListFile, HandlerError> {
    let label: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    for _ in 0..100 {
        *seq += 1;
        let p = dir.join(format!("{label}.{}.{}.{kind}", std::process::id(), seq));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&p);
        let mut file = match file {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(list_error(dir, e)),
        };
        let ident = match file.metadata() {
            Ok(m) => (m.dev(), m.ino()),
            Err(e) => {
                let _ = fs::remove_file(&p);
                return Err(HandlerError::io(&p, e));
            }
        };
        // Created by us from here on: removed on every way out.
        let guard = ListFile {
            path: p,
            keep,
            ident,
        };
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .and_then(|()| file.write_all(contents))
            .map_err(|e| HandlerError::io(&guard.path, e))?;
        return Ok(guard);
    }
    Err(HandlerError::Other(format!(
        "cannot create a list file in {}: too many name clashes",
        path::display_os(dir)
    )))
}

fn list_error(dir: &Path, e: io::Error) -> HandlerError {
    HandlerError::Other(format!(
        "cannot create a list file in {}: {e}; make sure the directory exists and is writable \
         (or fix -L)",
        path::display_os(dir)
    ))
}

/// `dir/` for rsync (a trailing slash means "the contents"), and `./-x/`
/// for a relative name that would otherwise read as an option.
fn dir_arg(dir: &OsStr) -> OsString {
    let b = dir.as_bytes();
    let mut out = Vec::with_capacity(b.len() + 3);
    if b.first() == Some(&b'-') {
        out.extend_from_slice(b"./");
    }
    out.extend_from_slice(b);
    if b.last() != Some(&b'/') {
        out.push(b'/');
    }
    OsString::from_vec(out)
}

/// lstat of a source path: None when it is gone.
pub(crate) fn lstat_kind(src: &Path, rel: &[u8]) -> Option<SourceKind> {
    match fs::symlink_metadata(path::abs(src, rel)) {
        Ok(m) if m.is_dir() => Some(SourceKind::Dir),
        Ok(_) => Some(SourceKind::File),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => None,
        // Unreadable: name it anyway (files and gone paths get the same
        // lines) and let rsync report the problem.
        Err(_) => Some(SourceKind::File),
    }
}

pub(crate) fn rule_kind(k: SourceKind) -> Kind {
    match k {
        SourceKind::Dir => Kind::Dir,
        SourceKind::File => Kind::File,
    }
}

/// Walks the source below `root` (lstat only) and returns every path that
/// `permits` refuses, without descending into a refused directory.
/// Unreadable or vanished directories are skipped: rsync reports them.
pub fn excluded_below(
    src: &Path,
    root: &[u8],
    mut permits: impl FnMut(&[u8], Kind) -> bool,
) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_vec()];
    while let Some(dir) = stack.pop() {
        let entries = match fs::read_dir(path::abs(src, &dir)) {
            Ok(e) => e,
            Err(e) => {
                log::debug!("not listing {}: {e}", path::display(&dir));
                continue;
            }
        };
        for entry in entries.flatten() {
            let rel = path::join(&dir, entry.file_name().as_bytes());
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            let kind = if is_dir { Kind::Dir } else { Kind::File };
            if !permits(&rel, kind) {
                out.push(rel);
            } else if is_dir {
                stack.push(rel);
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Op;

    fn batch(ops: Vec<Op>) -> Batch {
        Batch::of(ops)
    }

    fn sync(p: &[u8], recursive: bool) -> Op {
        Op::sync(p, recursive)
    }

    #[test]
    fn transport_causes_are_named_from_what_ssh_and_rsync_said() {
        let cases: &[(&str, &str)] = &[
            (
                "root@127.0.0.1: Permission denied (publickey).\r\n\
                 rsync: connection unexpectedly closed (0 bytes received so far) [sender]\n\
                 rsync error: unexplained error (code 255) at io.c(232) [sender=3.2.7]\n",
                "ssh could not log in",
            ),
            (
                "Host key verification failed.\nrsync: connection unexpectedly closed\n",
                "host key",
            ),
            (
                "ssh: Could not resolve hostname nowhere.invalid: Name or service not known\n",
                "does not resolve",
            ),
            (
                "ssh: connect to host 127.0.0.1 port 1: Connection refused\n",
                "refused the connection",
            ),
            (
                "@ERROR: auth failed on module m\n",
                "rsync daemon refused the login",
            ),
        ];
        for (stderr, want) in cases {
            let got = transport_cause(stderr).unwrap_or_else(|| panic!("no cause in {stderr:?}"));
            assert!(got.contains(want), "{stderr:?}: {got}");
            assert!(!got.contains('\n'), "one line: {got:?}");
        }
        // The line is quoted, so the real message is there too.
        let got = transport_cause("Host key verification failed.\n").unwrap_or_default();
        assert!(
            got.ends_with("(\"Host key verification failed.\")"),
            "{got}"
        );
        // Anything else is left to rsync's own words.
        assert_eq!(
            transport_cause("rsync: [sender] link_stat \"/x\" failed: No such file\n"),
            None
        );
        assert_eq!(transport_cause(""), None);
    }

    /// A fake rsync: a script that records its argv (NUL separated) and a
    /// copy of every file it is given (`list1`, `list2`, … across runs),
    /// then exits with a fixed code.
    struct Fake {
        dir: tempfile::TempDir,
    }

    impl Fake {
        fn new(exit: i32) -> Fake {
            let dir = tempfile::tempdir().unwrap();
            let script = dir.path().join("fake-rsync");
            let rec = dir.path().join("rec");
            fs::create_dir(&rec).unwrap();
            fs::write(
                &script,
                format!(
                    "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\0' \"$a\" >> '{rec}/argv'; \
                     if [ -f \"$a\" ]; then n=$(ls '{rec}' | grep -c '^list'); n=$((n+1)); cp \"$a\" '{rec}/list'$n; fi; done\nexit {exit}\n",
                    rec = rec.display()
                ),
            )
            .unwrap();
            fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
            Fake { dir }
        }

        fn program(&self) -> OsString {
            self.dir.path().join("fake-rsync").into_os_string()
        }

        fn argv(&self) -> Vec<Vec<u8>> {
            let b = fs::read(self.dir.path().join("rec/argv")).unwrap();
            let mut v: Vec<Vec<u8>> = b.split(|&c| c == 0).map(<[u8]>::to_vec).collect();
            v.pop();
            v
        }

        fn list(&self, n: usize) -> Vec<u8> {
            fs::read(self.dir.path().join(format!("rec/list{n}"))).unwrap()
        }
    }

    fn handler(fake: &Fake, src: &Path, dst: &str) -> RsyncDirect {
        RsyncDirect::new(RsyncConfig::new(fake.program(), src, dst)).unwrap()
    }

    fn strs(v: &[Vec<u8>]) -> Vec<String> {
        v.iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect()
    }

    #[test]
    fn xattrs_and_acls_add_rsyncs_x_and_a() {
        let fake = Fake::new(0);
        let src = tempfile::tempdir().unwrap();
        let mut cfg = RsyncConfig::new(fake.program(), src.path(), "/dst");
        cfg.xattrs = true;
        cfg.acls = true;
        let mut h = RsyncDirect::new(cfg).unwrap();
        h.run(&batch(vec![sync(b"", true)])).unwrap();
        let argv = strs(&fake.argv());
        assert_eq!(
            argv[..5],
            ["-aH", "--delete", "--modify-window=-1", "-X", "-A"],
            "{argv:?}"
        );
        assert_eq!(argv.len(), 12, "{argv:?}");
    }

    #[test]
    fn default_argv_is_clsyncs_plus_a_nanosecond_quick_check() {
        let fake = Fake::new(0);
        let src = tempfile::tempdir().unwrap();
        let mut h = handler(&fake, src.path(), "/dst");
        let lists = h.lists_dir().to_path_buf();
        let r = h.run(&batch(vec![sync(b"", true)])).unwrap();
        assert_eq!(r.exit_code, Some(0));
        let argv = strs(&fake.argv());
        assert_eq!(argv.len(), 10, "{argv:?}");
        assert_eq!(argv[0], "-aH");
        assert_eq!(argv[1], "--delete");
        assert_eq!(argv[2], "--modify-window=-1");
        assert_eq!(argv[3], "--exclude-from");
        assert!(argv[4].starts_with(lists.to_str().unwrap()), "{argv:?}");
        assert_eq!(argv[5], "--include-from");
        assert!(argv[6].starts_with(lists.to_str().unwrap()), "{argv:?}");
        assert_eq!(argv[7], "--exclude=*");
        assert_eq!(argv[8], format!("{}/", src.path().display()));
        assert_eq!(argv[9], "/dst/");
        assert_eq!(fake.list(1), b"");
        assert_eq!(fake.list(2), b"/***\n");
    }

    #[test]
    fn prefer_include_has_no_exclude_list() {
        let fake = Fake::new(0);
        let src = tempfile::tempdir().unwrap();
        let mut cfg = RsyncConfig::new(fake.program(), src.path(), "host:/d/");
        cfg.prefer_include = true;
        let mut h = RsyncDirect::new(cfg).unwrap();
        h.set_excluded(vec![b"tmp".to_vec(), b"elsewhere/x".to_vec()]);
        h.run(&batch(vec![sync(b"", true)])).unwrap();
        let argv = strs(&fake.argv());
        assert_eq!(argv[..3], ["-aH", "--delete", "--modify-window=-1"]);
        assert_eq!(argv[3], "--include-from");
        assert_eq!(
            argv[5..],
            [
                "--exclude=*",
                &format!("{}/", src.path().display()),
                "host:/d/"
            ]
        );
        assert_eq!(fake.list(1), b"- /elsewhere/x\n- /tmp\n/***\n");
    }

    #[test]
    fn line_breaks_switch_to_from0() {
        let fake = Fake::new(0);
        let src = tempfile::tempdir().unwrap();
        let mut h = handler(&fake, src.path(), "d");
        h.run(&batch(vec![sync(b"a\nb", false)])).unwrap();
        let argv = strs(&fake.argv());
        assert_eq!(
            argv[..5],
            [
                "-aH",
                "--delete",
                "--modify-window=-1",
                "--from0",
                "--exclude-from"
            ]
        );
        assert_eq!(fake.list(2), b"/a\nb\0/a\nb/***\0");
    }

    #[test]
    fn template_is_rendered() {
        let fake = Fake::new(0);
        let src = tempfile::tempdir().unwrap();
        let mut cfg = RsyncConfig::new(fake.program(), src.path(), "-odd");
        cfg.args = [
            "%RSYNC-ARGS%",
            "-l=%label%",
            "%INCLUDE-LIST%",
            "%watch-dir%/",
            "%destination-dir%/",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        cfg.label = "lab".into();
        let mut h = RsyncDirect::new(cfg).unwrap();
        h.run(&batch(vec![sync(b"x/y", false), sync(b"z", true)]))
            .unwrap();
        let argv = strs(&fake.argv());
        let n = argv.len();
        assert_eq!(
            argv[..4],
            ["-aH", "--delete", "--modify-window=-1", "--exclude-from"]
        );
        assert_eq!(argv[7], "--exclude=*");
        assert_eq!(
            argv[8..n],
            [
                "-l=lab".to_string(),
                "x/y".into(),
                "z".into(),
                format!("{}/", src.path().display()),
                "-odd/".into()
            ]
        );
    }

    #[test]
    fn template_without_from0_gets_question_marks() {
        let fake = Fake::new(0);
        let src = tempfile::tempdir().unwrap();
        let mut cfg = RsyncConfig::new(fake.program(), src.path(), "d");
        cfg.args = vec!["--include-from".into(), "%INCLUDE-LIST-PATH%".into()];
        let mut h = RsyncDirect::new(cfg).unwrap();
        h.run(&batch(vec![sync(b"a\nb", false)])).unwrap();
        assert_eq!(fake.list(1), b"/a?b\n/a?b/***\n");
    }

    #[test]
    fn bad_template_is_refused_at_start() {
        let mut cfg = RsyncConfig::new("rsync", "/src", "d");
        cfg.args = vec!["--x=%RSYNC-ARGS%".into()];
        let e = RsyncDirect::new(cfg).err().unwrap();
        assert!(e.to_string().contains("RSYNC-ARGS"), "{e}");
    }

    #[test]
    fn exit_codes_are_judged() {
        let src = tempfile::tempdir().unwrap();
        let fake = Fake::new(24);
        let r = handler(&fake, src.path(), "d")
            .run(&batch(vec![sync(b"f", false)]))
            .unwrap();
        assert_eq!(r.exit_code, Some(24));

        let fake = Fake::new(23);
        let e = handler(&fake, src.path(), "d")
            .run(&batch(vec![sync(b"f", false)]))
            .unwrap_err();
        // One op that fails for its paths fails alone.
        match &e {
            HandlerError::Paths { failed, .. } => {
                assert_eq!(failed.len(), 1, "{e:?}");
                assert_eq!(failed[0].path, b"f");
                assert!(failed[0].message.ends_with("exited with code 23"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        let other = Fake::new(12);
        let e = handler(&other, src.path(), "d")
            .run(&batch(vec![sync(b"f", false), sync(b"g", false)]))
            .unwrap_err();
        assert!(matches!(e, HandlerError::Exit { code: 12, .. }), "{e:?}");

        let mut cfg = RsyncConfig::new(fake.program(), src.path(), "d");
        cfg.ignore_exit = vec![23, 24];
        let r = RsyncDirect::new(cfg)
            .unwrap()
            .run(&batch(vec![sync(b"f", false)]))
            .unwrap();
        assert_eq!(r.exit_code, Some(23));
    }

    #[test]
    fn a_run_that_fails_for_some_paths_is_split_until_they_are_found() {
        let src = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("fake-rsync");
        let runs = dir.path().join("runs");
        // rsync that cannot transfer `bad` (or `worse`): code 23 when its
        // include list names one.
        fs::write(
            &script,
            format!(
                "#!/bin/sh\necho run >> '{runs}'\nfor a in \"$@\"; do if [ -f \"$a\" ] && grep -qE '^/(bad|worse)$' \"$a\"; then exit 23; fi; done\nexit 0\n",
                runs = runs.display()
            ),
        )
        .unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        let mut h =
            RsyncDirect::new(RsyncConfig::new(script.as_os_str(), src.path(), "d")).unwrap();
        let ops: Vec<Op> = ["a", "b", "bad", "c", "d", "e", "f", "worse"]
            .iter()
            .map(|p| sync(p.as_bytes(), false))
            .collect();
        let e = h.run(&batch(ops)).unwrap_err();
        let HandlerError::Paths { failed, .. } = &e else {
            panic!("{e:?}");
        };
        let paths: Vec<&[u8]> = failed.iter().map(|f| &f.path[..]).collect();
        assert_eq!(paths, vec![&b"bad"[..], b"worse"]);
        // 1 whole + 2 halves + 4 quarters + 4 single ops of the two
        // failing quarters: far fewer than one run per op would be if
        // many failed, and the good halves ran once.
        assert_eq!(fs::read_to_string(&runs).unwrap().lines().count(), 11);
    }

    #[test]
    fn missing_rsync_says_what_to_do() {
        let src = tempfile::tempdir().unwrap();
        let mut h =
            RsyncDirect::new(RsyncConfig::new("livesync-no-such-rsync", src.path(), "d")).unwrap();
        let e = h.run(&batch(vec![sync(b"f", false)])).unwrap_err();
        assert!(matches!(e, HandlerError::Spawn { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains("livesync-no-such-rsync"), "{msg}");
        assert!(
            msg.contains("install rsync or pass -S /path/to/rsync"),
            "{msg}"
        );
    }

    #[test]
    fn empty_batch_runs_nothing() {
        let src = tempfile::tempdir().unwrap();
        let mut h =
            RsyncDirect::new(RsyncConfig::new("livesync-no-such-rsync", src.path(), "d")).unwrap();
        assert_eq!(h.run(&batch(vec![])).unwrap(), Report::default());
    }

    #[test]
    fn inclimit_runs_once_per_part() {
        let fake = Fake::new(0);
        let src = tempfile::tempdir().unwrap();
        let mut cfg = RsyncConfig::new(fake.program(), src.path(), "d");
        cfg.inclimit = 4;
        let mut h = RsyncDirect::new(cfg).unwrap();
        h.run(&batch(vec![
            sync(b"a/1", false),
            sync(b"a/2", false),
            sync(b"a/3", false),
        ]))
        .unwrap();
        let argv = strs(&fake.argv());
        assert_eq!(argv.iter().filter(|a| *a == "-aH").count(), 3, "{argv:?}");
        assert_eq!(fake.list(2), b"/a\n/a/1\n/a/1/***\n");
        assert_eq!(fake.list(6), b"/a\n/a/3\n/a/3/***\n");
    }

    #[test]
    fn kept_private_lists_are_moved_out_of_the_sweeps_reach() {
        let src = tempfile::tempdir().unwrap();
        let mut cfg = RsyncConfig::new("rsync", src.path(), "d");
        cfg.keep_lists = true;
        let h = RsyncDirect::new(cfg).unwrap();
        let dir = h.lists_dir().to_path_buf();
        fs::write(dir.join("x.include"), "/a\n").unwrap();
        drop(h);
        let mut kept = dir.clone().into_os_string();
        kept.push(".kept");
        let kept = PathBuf::from(kept);
        assert!(!dir.exists());
        assert_eq!(fs::read(kept.join("x.include")).unwrap(), b"/a\n");
        // No sweep takes it: its name is not one a sweep looks at.
        let name = kept.file_name().unwrap().as_bytes();
        assert!(!super::super::tempdir::ours(name, "livesync-lists-"));
        let own = dir.file_name().unwrap().as_bytes();
        assert!(super::super::tempdir::ours(own, "livesync-lists-"));
        fs::remove_dir_all(&kept).unwrap();
    }

    #[test]
    fn a_list_file_is_removed_only_while_it_is_still_ours() {
        let d = tempfile::tempdir().unwrap();
        let mut seq = 0;
        let l = write_list(d.path(), &mut seq, "x", false, "include", b"/a\n").unwrap();
        let p = l.path.clone();
        drop(l);
        assert!(!p.exists());
        // A symlink put in its place (made first: no inode reuse) stays,
        // and so does its target.
        let l = write_list(d.path(), &mut seq, "x", false, "include", b"/a\n").unwrap();
        let target = d.path().join("precious");
        fs::write(&target, "keep").unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        fs::rename(&link, &l.path).unwrap();
        let p = l.path.clone();
        drop(l);
        assert!(fs::symlink_metadata(&p).unwrap().file_type().is_symlink());
        assert_eq!(fs::read(&target).unwrap(), b"keep");
    }

    #[test]
    fn private_dir_is_0700_and_removed_on_drop() {
        let src = tempfile::tempdir().unwrap();
        let h = RsyncDirect::new(RsyncConfig::new("rsync", src.path(), "d")).unwrap();
        let dir = h.lists_dir().to_path_buf();
        let mode = fs::symlink_metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o700);
        drop(h);
        assert!(!dir.exists());
    }

    #[test]
    fn excluded_below_skips_refused_dirs_and_does_not_follow_links() {
        let src = tempfile::tempdir().unwrap();
        let s = src.path();
        fs::create_dir_all(s.join("a/tmp/deep")).unwrap();
        fs::write(s.join("a/tmp/deep/x.tmp"), "").unwrap();
        fs::write(s.join("a/k.tmp"), "").unwrap();
        fs::write(s.join("a/keep"), "").unwrap();
        fs::create_dir(s.join("other")).unwrap();
        fs::write(s.join("other/o.tmp"), "").unwrap();
        std::os::unix::fs::symlink(s.join("other"), s.join("a/link")).unwrap();
        let mut seen = Vec::new();
        let got = excluded_below(s, b"a", |p, k| {
            seen.push(p.to_vec());
            !(p.ends_with(b".tmp") || (k == Kind::Dir && p.ends_with(b"tmp")))
        });
        assert_eq!(got, vec![b"a/k.tmp".to_vec(), b"a/tmp".to_vec()]);
        assert!(
            !seen.iter().any(|p| p.starts_with(b"a/tmp/")),
            "descended into a refused dir"
        );
        assert!(
            !seen.iter().any(|p| p.starts_with(b"a/link/")),
            "followed a symlink"
        );
        assert!(excluded_below(s, b"gone", |_, _| false).is_empty());
    }

    #[test]
    fn dir_arg_adds_one_slash_and_guards_dashes() {
        assert_eq!(dir_arg(OsStr::new("/s")), "/s/");
        assert_eq!(dir_arg(OsStr::new("/")), "/");
        assert_eq!(dir_arg(OsStr::new("h:/d/")), "h:/d/");
        assert_eq!(dir_arg(OsStr::new("-x")), "./-x/");
    }
}
