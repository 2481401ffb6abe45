//! clsync's command modes: `simple`, `direct` and `shell`.
//!
//! This module owns turning a batch into runs of the user's handler
//! program the way clsync 0.4.5 runs it in these modes:
//!
//! * `simple`: one run per path, `sync %label% %EVENT-MASK% %INCLUDE-LIST%`
//!   with the path absolute;
//! * `direct`: one run per batch, `%INCLUDE-LIST% %destination-dir%/` with
//!   one argument per relative path (the root is `.`), split into several
//!   runs when the arguments would pass the kernel's `ARG_MAX`;
//! * `shell`: one run per batch, `synclist %label% %INCLUDE-LIST-PATH%`,
//!   the list file holding `sync <label> <mask> <relpath>` lines (only
//!   `<relpath>` with `--synclist-simplify`); with `--have-recursive-sync`
//!   a subtree (the initial sync, a new directory) is handed over whole as
//!   `initialsync %label% %INCLUDE-LIST%` (the absolute path) instead.
//!
//! The handler runs in the watch dir, as clsync's. These handlers sync one
//! path at a time, not recursively, so a recursive op is expanded here:
//! the subtree is walked (lstat only, never following symlinks, pruned by
//! the rules unless `-F` and this is the initial sync) and every entry is
//! named. Each path carries the union of its events' inotify bits
//! ([`crate::batch::mask`]); a path without recorded events (a walked one)
//! gets `IN_CREATE`, or `IN_DELETE` when it is gone, as clsync reports them.
//!
//! List files are made as in rsyncdirect (0600, exclusive, in `-L` or a
//! private 0700 dir) and removed after the run unless `-U`. This module
//! decides nothing about batching and never retries: a failure goes back
//! to the daemon. It does not read or change file contents.

use super::rsync::{self, ListDir};
use super::template::{Context, Macro, Template};
use super::{Handler, HandlerError, Report};
use crate::batch::{mask, Batch, Op};
use crate::exec::{self, Outcome};
use crate::path;
use crate::rules::{Action, Kind, Rules};
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Which of clsync's command modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandMode {
    Simple,
    Direct,
    Shell,
}

impl CommandMode {
    pub fn name(self) -> &'static str {
        match self {
            CommandMode::Simple => "simple",
            CommandMode::Direct => "direct",
            CommandMode::Shell => "shell",
        }
    }

    /// clsync's default handler arguments for the mode.
    pub fn default_args(self) -> Vec<OsString> {
        let words: &[&str] = match self {
            CommandMode::Simple => &["sync", "%label%", "%EVENT-MASK%", "%INCLUDE-LIST%"],
            CommandMode::Direct => &["%INCLUDE-LIST%", "%destination-dir%/"],
            CommandMode::Shell => &["synclist", "%label%", "%INCLUDE-LIST-PATH%"],
        };
        words.iter().map(OsString::from).collect()
    }
}

/// clsync's default arguments of a shell-mode `initialsync` run.
pub fn default_initial_args() -> Vec<OsString> {
    ["initialsync", "%label%", "%INCLUDE-LIST%"]
        .iter()
        .map(OsString::from)
        .collect()
}

/// Everything a command mode needs, resolved from the command line.
#[derive(Clone, Debug)]
pub struct CommandConfig {
    pub mode: CommandMode,
    /// `-S`: the handler program.
    pub program: OsString,
    /// Handler arguments after `--`; empty = the mode's defaults.
    pub args: Vec<OsString>,
    /// Arguments of an `initialsync` run (shell mode with
    /// `--have-recursive-sync`; the config file's `---` key); empty =
    /// clsync's default.
    pub initial_args: Vec<OsString>,
    /// Canonical watch dir (the handler's working directory).
    pub src: PathBuf,
    /// `%destination-dir%`: the resolved local path or the remote as given.
    pub dst: Option<OsString>,
    /// `-L`: where list files go; None = a private 0700 temp dir.
    pub lists_dir: Option<PathBuf>,
    /// `-U`: keep list files after the run.
    pub keep_lists: bool,
    /// `-x`: exit codes that count as success.
    pub ignore_exit: Vec<i32>,
    /// `-l`.
    pub label: String,
    pub rules: Arc<Rules>,
    /// `-k`.
    pub timeout: Option<Duration>,
    /// `--synclist-simplify`: list lines are the bare relative path.
    pub synclist_simplify: bool,
    /// `--have-recursive-sync` (shell mode): subtrees go to `initialsync`.
    pub have_recursive_sync: bool,
    /// `-F`: the initial sync ignores the rules.
    pub full_initialsync: bool,
    /// Bytes the arguments and environment of one run may take (direct
    /// mode); 0 = the kernel's `ARG_MAX`.
    pub arg_max: usize,
}

impl CommandConfig {
    /// clsync's defaults for everything but the mode, program and watch dir.
    pub fn new(mode: CommandMode, program: impl Into<OsString>, src: impl Into<PathBuf>) -> Self {
        CommandConfig {
            mode,
            program: program.into(),
            args: Vec::new(),
            initial_args: Vec::new(),
            src: src.into(),
            dst: None,
            lists_dir: None,
            keep_lists: false,
            ignore_exit: Vec::new(),
            label: "nolabel".to_string(),
            rules: Arc::new(Rules::allow_all()),
            timeout: Some(Duration::from_secs(86400)),
            synclist_simplify: false,
            have_recursive_sync: false,
            full_initialsync: false,
            arg_max: 0,
        }
    }
}

/// What one batch asks the handler to name: each path (relative, sorted)
/// with its event bits, and the subtrees handed over whole.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Events {
    pub paths: BTreeMap<Vec<u8>, u32>,
    pub subtrees: Vec<Vec<u8>>,
}

pub struct CommandHandler {
    cfg: CommandConfig,
    template: Template,
    initial_template: Template,
    /// Made on first use (only shell mode and templates that name a list
    /// file need one).
    lists: Option<ListDir>,
    seq: u64,
    env: Vec<(OsString, OsString)>,
    initial: bool,
}

impl CommandHandler {
    pub fn new(cfg: CommandConfig) -> Result<Self, HandlerError> {
        let parse = |args: &[OsString], what: &str| {
            Template::parse(args).map_err(|e| HandlerError::Other(format!("{what}: {e}")))
        };
        let args = if cfg.args.is_empty() {
            cfg.mode.default_args()
        } else {
            cfg.args.clone()
        };
        let initial = if cfg.initial_args.is_empty() {
            default_initial_args()
        } else {
            cfg.initial_args.clone()
        };
        Ok(CommandHandler {
            template: parse(&args, "handler arguments")?,
            initial_template: parse(&initial, "initial sync handler arguments")?,
            cfg,
            lists: None,
            seq: 0,
            env: Vec::new(),
            initial: false,
        })
    }

    /// Variables added to the handler's environment from the next run on.
    pub fn set_env(&mut self, env: Vec<(OsString, OsString)>) {
        self.initial = rsync::is_initial(&env);
        self.env = env;
    }

    /// The directory list files are written to (made if need be).
    pub fn lists_dir(&mut self) -> Result<PathBuf, HandlerError> {
        if self.lists.is_none() {
            self.lists = Some(ListDir::new(self.cfg.lists_dir.as_deref())?);
        }
        Ok(self
            .lists
            .as_ref()
            .map(|l| l.path().to_path_buf())
            .unwrap_or_default())
    }

    fn ignore_rules(&self) -> bool {
        self.cfg.full_initialsync && self.initial
    }

    /// The paths (with event bits) and whole subtrees `batch` names.
    pub fn events(&self, batch: &Batch) -> Events {
        let mut ev = Events::default();
        let recursive_ok = self.cfg.have_recursive_sync && self.cfg.mode == CommandMode::Shell;
        for op in &batch.ops {
            match op {
                Op::Move { from, to } => {
                    let kind = lstat_dir(&self.cfg.src, to);
                    let dir = if kind == Some(true) {
                        mask::IN_ISDIR
                    } else {
                        0
                    };
                    let m = batch
                        .masks
                        .get(from)
                        .copied()
                        .unwrap_or(mask::IN_MOVED_FROM | dir);
                    *ev.paths.entry(from.clone()).or_default() |= m;
                    self.add_path(batch, to, mask::IN_MOVED_TO, true, recursive_ok, &mut ev);
                }
                Op::Sync { path, recursive } => self.add_path(
                    batch,
                    path,
                    mask::IN_CREATE,
                    *recursive,
                    recursive_ok,
                    &mut ev,
                ),
            }
        }
        ev
    }

    /// Adds `p` (its recorded bits, or `fresh` when it exists and nothing
    /// was recorded, IN_DELETE when it is gone), and with `recursive`
    /// everything below it that exists or has recorded events.
    fn add_path(
        &self,
        batch: &Batch,
        p: &[u8],
        fresh: u32,
        recursive: bool,
        recursive_ok: bool,
        ev: &mut Events,
    ) {
        let kind = lstat_dir(&self.cfg.src, p);
        let dir_bit = |is_dir: bool| if is_dir { mask::IN_ISDIR } else { 0 };
        if recursive && kind == Some(true) && recursive_ok {
            ev.subtrees.push(p.to_vec());
            return;
        }
        let m = batch.masks.get(p).copied().unwrap_or(match kind {
            Some(d) => fresh | dir_bit(d),
            None => mask::IN_DELETE | dir_bit(recursive),
        });
        let ignore = self.ignore_rules();
        let rules = &self.cfg.rules;
        // A subtree op may stand for a directory the rules let us walk but
        // not sync (the root, under `+w` rules): it is not named then.
        let rule_kind = if kind.unwrap_or(recursive) {
            Kind::Dir
        } else {
            Kind::File
        };
        if ignore || rules.permits(p, rule_kind, Action::Sync) {
            *ev.paths.entry(p.to_vec()).or_default() |= m;
        }
        if !recursive {
            return;
        }
        if kind == Some(true) {
            walk(&self.cfg.src, p, &mut |rel, is_dir| {
                let k = if is_dir { Kind::Dir } else { Kind::File };
                if ignore || rules.permits(rel, k, Action::Sync) {
                    let m = batch
                        .masks
                        .get(rel)
                        .copied()
                        .unwrap_or(mask::IN_CREATE | dir_bit(is_dir));
                    *ev.paths.entry(rel.to_vec()).or_default() |= m;
                }
                is_dir && (ignore || rules.permits(rel, Kind::Dir, Action::Walk))
            });
        }
        // Recorded events below that the walk did not meet (gone since).
        let below: Vec<(Vec<u8>, u32)> = batch
            .masks
            .iter()
            .filter(|(k, _)| path::is_strictly_under(k, p) || (p.is_empty() && !k.is_empty()))
            .map(|(k, m)| (k.clone(), *m))
            .collect();
        for (k, m) in below {
            let kind = if m & mask::IN_ISDIR != 0 {
                Kind::Dir
            } else {
                Kind::File
            };
            if ignore || self.cfg.rules.permits(&k, kind, Action::Sync) {
                ev.paths.entry(k).or_insert(m);
            }
        }
    }

    fn program_name(&self) -> String {
        path::display(self.cfg.program.as_bytes())
    }

    /// The argv of one run: the program, then the template (`initial`: the
    /// `initialsync` one, `%TYPE%` = `initialsync`; else `sync`) with the
    /// list file (None: `%INCLUDE-LIST-PATH%` renders empty, as in an
    /// `initialsync` run), the paths and the decimal event bits filled in.
    /// `--check-execvp-arguments` renders it with placeholders to learn
    /// the shape of every argv this handler can run.
    pub fn render_argv(
        &self,
        initial: bool,
        list_path: Option<&OsStr>,
        include_list: &[OsString],
        event_mask: &OsStr,
    ) -> Vec<OsString> {
        let tpl = if initial {
            &self.initial_template
        } else {
            &self.template
        };
        let label = OsString::from(&self.cfg.label);
        let type_s = OsString::from(if initial { "initialsync" } else { "sync" });
        let ctx = Context {
            include_list_path: list_path,
            label: Some(&label),
            watch_dir: Some(self.cfg.src.as_os_str()),
            destination_dir: self.cfg.dst.as_deref(),
            include_list,
            event_mask: Some(event_mask),
            type_name: Some(&type_s),
            ..Context::default()
        };
        let mut argv = vec![self.cfg.program.clone()];
        argv.extend(tpl.render(&ctx));
        argv
    }

    /// Runs the template once; the list file (if any) lives until it ends.
    fn run_once(
        &mut self,
        template_initial: bool,
        include_list: &[OsString],
        list_contents: Option<&[u8]>,
        event_mask: u32,
        code: &mut Option<i32>,
    ) -> Result<(), HandlerError> {
        let tpl = if template_initial {
            &self.initial_template
        } else {
            &self.template
        };
        let wants_list = tpl.uses(Macro::IncludeListPath);
        let list = match (wants_list, list_contents) {
            (true, Some(bytes)) => {
                let dir = self.lists_dir()?;
                Some(rsync::write_list(
                    &dir,
                    &mut self.seq,
                    &self.cfg.label,
                    self.cfg.keep_lists,
                    "list",
                    bytes,
                )?)
            }
            _ => None,
        };
        let mask_s = OsString::from(event_mask.to_string());
        let argv = self.render_argv(
            template_initial,
            list.as_ref().map(|f| f.path.as_os_str()),
            include_list,
            &mask_s,
        );
        log::debug!(
            "running {}",
            argv.iter()
                .map(|a| path::display(a.as_bytes()))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let spec = exec::Spec {
            timeout: self.cfg.timeout,
            env: self.env.clone(),
            cwd: Some(self.cfg.src.clone()),
            ..exec::Spec::new(argv)
        };
        let program = self.program_name();
        let outcome: Outcome = spec.run().map_err(|e| HandlerError::Spawn {
            program: program.clone(),
            source: e.into_io(),
        })?;
        drop(list);
        rsync::judge(outcome, &program, &self.cfg.ignore_exit, code)
    }

    /// How many bytes of argv one direct-mode run may use for paths.
    fn path_budget(&self) -> usize {
        let max = if self.cfg.arg_max > 0 {
            self.cfg.arg_max
        } else {
            // SAFETY: sysconf has no preconditions.
            let v = unsafe { libc::sysconf(libc::_SC_ARG_MAX) };
            if v > 0 {
                v as usize
            } else {
                128 * 1024
            }
        };
        let ptr = std::mem::size_of::<usize>();
        let env: usize = std::env::vars_os()
            .chain(self.env.iter().cloned())
            .map(|(k, v)| k.len() + v.len() + 2 + ptr)
            .sum();
        let fixed: usize = self.cfg.program.len()
            + self
                .cfg
                .args
                .iter()
                .map(|a| a.len() + 1 + ptr)
                .sum::<usize>()
            + self.cfg.src.as_os_str().len()
            + self.cfg.dst.as_ref().map_or(0, |d| d.len())
            + 64;
        // A margin for what we cannot see (auxv, the stack's own bits).
        max.saturating_sub(env + fixed + 4096)
    }
}

/// Splits `args` into runs whose total (each argument plus its NUL and
/// pointer) stays within `budget`; a single argument over it runs alone.
pub fn split_args(args: Vec<OsString>, budget: usize) -> Vec<Vec<OsString>> {
    let ptr = std::mem::size_of::<usize>();
    let mut out = Vec::new();
    let mut cur: Vec<OsString> = Vec::new();
    let mut used = 0;
    for a in args {
        let cost = a.len() + 1 + ptr;
        if !cur.is_empty() && used + cost > budget {
            out.push(std::mem::take(&mut cur));
            used = 0;
        }
        used += cost;
        cur.push(a);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// `Some(true)` for a directory, `Some(false)` for anything else (lstat),
/// None when gone.
fn lstat_dir(src: &std::path::Path, rel: &[u8]) -> Option<bool> {
    rsync::lstat_kind(src, rel).map(|k| k == super::lists::SourceKind::Dir)
}

/// Walks below `root` depth first in byte order (lstat only). `visit(rel,
/// is_dir)` returns whether to descend into a directory.
fn walk(src: &std::path::Path, root: &[u8], visit: &mut dyn FnMut(&[u8], bool) -> bool) {
    let mut stack = vec![root.to_vec()];
    while let Some(dir) = stack.pop() {
        let entries = match fs::read_dir(path::abs(src, &dir)) {
            Ok(e) => e,
            Err(e) => {
                log::debug!("not listing {}: {e}", path::display(&dir));
                continue;
            }
        };
        let mut names: Vec<(Vec<u8>, bool)> = entries
            .flatten()
            .map(|e| {
                let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
                (path::join(&dir, e.file_name().as_bytes()), is_dir)
            })
            .collect();
        names.sort();
        let mut subdirs = Vec::new();
        for (rel, is_dir) in names {
            if visit(&rel, is_dir) {
                subdirs.push(rel);
            }
        }
        stack.extend(subdirs.into_iter().rev());
    }
}

impl Handler for CommandHandler {
    fn set_env(&mut self, env: Vec<(OsString, OsString)>) {
        CommandHandler::set_env(self, env);
    }

    fn name(&self) -> &str {
        self.cfg.mode.name()
    }

    fn run(&mut self, batch: &Batch) -> Result<Report, HandlerError> {
        if batch.is_empty() {
            return Ok(Report::default());
        }
        let ev = self.events(batch);
        let mut code = None;
        for sub in &ev.subtrees {
            let abs = path::abs(&self.cfg.src, sub).into_os_string();
            let dir_mask = batch
                .masks
                .get(sub)
                .copied()
                .unwrap_or(mask::IN_CREATE | mask::IN_ISDIR);
            self.run_once(true, &[abs], None, dir_mask, &mut code)?;
        }
        if ev.paths.is_empty() {
            return Ok(Report {
                exit_code: code,
                ..Report::default()
            });
        }
        let all_mask = ev.paths.values().fold(0, |a, m| a | m);
        match self.cfg.mode {
            CommandMode::Simple => {
                for (p, m) in &ev.paths {
                    let abs = path::abs(&self.cfg.src, p).into_os_string();
                    let list = rel_lines(std::iter::once(p.as_slice()));
                    self.run_once(false, &[abs], Some(&list), *m, &mut code)?;
                }
            }
            CommandMode::Direct => {
                let rels: Vec<OsString> = ev.paths.keys().map(|p| super::rel_arg(p)).collect();
                // Only arguments that carry the paths need splitting.
                let budget = if self.template.uses(Macro::IncludeList) {
                    self.path_budget()
                } else {
                    usize::MAX
                };
                for part in split_args(rels, budget) {
                    let list = rel_lines(part.iter().map(|a| a.as_bytes()));
                    self.run_once(false, &part, Some(&list), all_mask, &mut code)?;
                }
            }
            CommandMode::Shell => {
                let mut list = Vec::new();
                let mut breaks = false;
                for (p, m) in &ev.paths {
                    breaks |= p.contains(&b'\n');
                    if !self.cfg.synclist_simplify {
                        list.extend_from_slice(b"sync ");
                        list.extend_from_slice(self.cfg.label.as_bytes());
                        list.extend_from_slice(format!(" {m} ").as_bytes());
                    }
                    list.extend_from_slice(p);
                    list.push(b'\n');
                }
                if breaks {
                    log::warn!(
                        "a path with a line break is in the shell-mode list file: a line-based \
                         handler will read it as two lines"
                    );
                }
                let rels: Vec<OsString> = ev.paths.keys().map(|p| super::rel_arg(p)).collect();
                self.run_once(false, &rels, Some(&list), all_mask, &mut code)?;
            }
        }
        Ok(Report {
            exit_code: code,
            ..Report::default()
        })
    }
}

/// Relative paths, one per line (`%INCLUDE-LIST-PATH%` in simple and
/// direct mode).
fn rel_lines<'a>(paths: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for p in paths {
        out.extend_from_slice(p);
        out.push(b'\n');
    }
    out
}

impl Drop for CommandHandler {
    fn drop(&mut self) {
        if let Some(l) = &self.lists {
            l.cleanup(self.cfg.keep_lists);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Lane;
    use std::os::unix::fs::PermissionsExt;

    fn sync(p: &[u8], recursive: bool) -> Op {
        Op::sync(p, recursive)
    }

    fn batch(ops: Vec<Op>, masks: &[(&[u8], u32)]) -> Batch {
        Batch {
            ops,
            lane: Lane::Normal,
            attempt: 0,
            masks: masks.iter().map(|(p, m)| (p.to_vec(), *m)).collect(),
        }
    }

    /// A recording handler: one NUL-separated argv per line of `runs`
    /// (hex), plus the contents of every argument that names a file
    /// outside the watch dir (the list files), and its cwd.
    struct Rec {
        dir: tempfile::TempDir,
    }

    /// One recorded run: argv, list file contents, cwd.
    type Run = (Vec<Vec<u8>>, Vec<Vec<u8>>, Vec<u8>);

    impl Rec {
        fn new(exit: i32) -> Rec {
            let dir = tempfile::tempdir().unwrap();
            let script = dir.path().join("rec.py");
            fs::write(
                &script,
                format!(
                    "#!/usr/bin/python3\nimport os, sys\nout = {out:?}\n\
                     args = [os.fsencode(a) for a in sys.argv[1:]]\n\
                     lists = [open(a, 'rb').read().hex() for a in args if a.startswith(b'/') and os.path.isfile(a) and not a.startswith(os.getcwdb() + b'/')]\n\
                     with open(out, 'a') as f:\n    f.write(' '.join(a.hex() for a in args) + '|' + ' '.join(lists) + '|' + os.getcwdb().hex() + '\\n')\n\
                     sys.exit({exit})\n",
                    out = dir.path().join("runs").display().to_string()
                ),
            )
            .unwrap();
            fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
            Rec { dir }
        }

        fn program(&self) -> OsString {
            self.dir.path().join("rec.py").into_os_string()
        }

        /// (argv, list contents, cwd) per run.
        fn runs(&self) -> Vec<Run> {
            let text = fs::read_to_string(self.dir.path().join("runs")).unwrap_or_default();
            let hex = |s: &str| -> Vec<Vec<u8>> {
                s.split(' ')
                    .filter(|w| !w.is_empty())
                    .map(|w| {
                        (0..w.len())
                            .step_by(2)
                            .map(|i| u8::from_str_radix(&w[i..i + 2], 16).unwrap())
                            .collect()
                    })
                    .collect()
            };
            text.lines()
                .map(|l| {
                    let parts: Vec<&str> = l.split('|').collect();
                    let cwd = hex(parts[2]).pop().unwrap_or_default();
                    (hex(parts[0]), hex(parts[1]), cwd)
                })
                .collect()
        }
    }

    fn tree() -> tempfile::TempDir {
        let src = tempfile::tempdir().unwrap();
        fs::create_dir_all(src.path().join("sub/deep")).unwrap();
        fs::write(src.path().join("f1"), "a").unwrap();
        fs::write(src.path().join("sub/g 2"), "b").unwrap();
        fs::write(src.path().join("sub/deep/x.tmp"), "c").unwrap();
        src
    }

    fn b(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    #[test]
    fn simple_runs_once_per_path_with_absolute_path_and_mask() {
        let rec = Rec::new(0);
        let src = tree();
        let mut cfg = CommandConfig::new(CommandMode::Simple, rec.program(), src.path());
        cfg.label = "lab".into();
        let mut h = CommandHandler::new(cfg).unwrap();
        h.run(&batch(
            vec![sync(b"f1", false), sync(b"gone", false)],
            &[(b"f1", mask::IN_MODIFY | mask::IN_CLOSE_WRITE)],
        ))
        .unwrap();
        let runs = rec.runs();
        let root = src.path().to_str().unwrap();
        assert_eq!(runs.len(), 2, "{runs:?}");
        assert_eq!(
            runs[0].0,
            vec![b("sync"), b("lab"), b("10"), b(&format!("{root}/f1"))]
        );
        assert_eq!(
            runs[1].0,
            vec![b("sync"), b("lab"), b("512"), b(&format!("{root}/gone"))]
        );
        assert_eq!(runs[0].2, b(root), "runs in the watch dir");
    }

    #[test]
    fn direct_expands_subtrees_with_root_as_dot_and_prunes_by_rules() {
        let rec = Rec::new(0);
        let src = tree();
        let mut cfg = CommandConfig::new(CommandMode::Direct, rec.program(), src.path());
        cfg.dst = Some("/dst".into());
        cfg.rules = Arc::new(Rules::parse(b"-d/deep$\n", "test").unwrap());
        let mut h = CommandHandler::new(cfg).unwrap();
        h.run(&batch(vec![sync(b"", true)], &[])).unwrap();
        let runs = rec.runs();
        assert_eq!(runs.len(), 1);
        assert_eq!(
            runs[0].0,
            vec![b("."), b("f1"), b("sub"), b("sub/g 2"), b("/dst/")]
        );
    }

    #[test]
    fn full_initialsync_ignores_rules_only_for_the_initial_sync() {
        let rec = Rec::new(0);
        let src = tree();
        let mut cfg = CommandConfig::new(CommandMode::Direct, rec.program(), src.path());
        cfg.dst = Some("/dst".into());
        cfg.rules = Arc::new(Rules::parse(b"-d/deep$\n", "test").unwrap());
        cfg.full_initialsync = true;
        let mut h = CommandHandler::new(cfg).unwrap();
        h.set_env(vec![("CLSYNC_STATUS".into(), "initsync".into())]);
        h.run(&batch(vec![sync(b"", true)], &[])).unwrap();
        h.set_env(vec![("CLSYNC_STATUS".into(), "running".into())]);
        h.run(&batch(vec![sync(b"", true)], &[])).unwrap();
        let runs = rec.runs();
        assert!(runs[0].0.contains(&b("sub/deep/x.tmp")), "{:?}", runs[0]);
        assert!(!runs[1].0.contains(&b("sub/deep")), "{:?}", runs[1]);
    }

    #[test]
    fn split_args_keeps_order_and_budget() {
        let names: Vec<OsString> = (0..35)
            .map(|i| OsString::from(format!("{i:0>100}")))
            .collect();
        let cost = 100 + 1 + std::mem::size_of::<usize>();
        let parts = split_args(names.clone(), 10 * cost);
        assert_eq!(parts.len(), 4);
        assert_eq!(parts.concat(), names);
        assert!(parts.iter().all(|p| p.len() <= 10));
        // One argument over the budget still runs (alone).
        assert_eq!(split_args(names[..2].to_vec(), 1).len(), 2);
    }

    #[test]
    fn direct_splits_under_arg_max() {
        let rec = Rec::new(0);
        let src = tempfile::tempdir().unwrap();
        let mut cfg = CommandConfig::new(CommandMode::Direct, rec.program(), src.path());
        cfg.dst = Some("/d".into());
        let mut h = CommandHandler::new(cfg).unwrap();
        // What the environment and fixed arguments take, then room for
        // ten 100-byte paths.
        h.cfg.arg_max = 1 << 40;
        let overhead = (1usize << 40) - h.path_budget();
        let cost = 100 + 1 + std::mem::size_of::<usize>();
        h.cfg.arg_max = overhead + 10 * cost;
        let ops: Vec<Op> = (0..35)
            .map(|i| sync(format!("{i:0>100}").as_bytes(), false))
            .collect();
        h.run(&batch(ops, &[])).unwrap();
        let runs = rec.runs();
        assert_eq!(runs.len(), 4, "{runs:?}");
        let all: Vec<Vec<u8>> = runs
            .iter()
            .flat_map(|r| r.0[..r.0.len() - 1].to_vec())
            .collect();
        assert_eq!(all.len(), 35);
        assert!(runs.iter().all(|r| r.0.last() == Some(&b("/d/"))));
    }

    #[test]
    fn shell_writes_synclist_lines_and_removes_the_list() {
        let rec = Rec::new(0);
        let src = tree();
        let lists = tempfile::tempdir().unwrap();
        let mut cfg = CommandConfig::new(CommandMode::Shell, rec.program(), src.path());
        cfg.label = "lab".into();
        cfg.lists_dir = Some(lists.path().to_path_buf());
        let mut h = CommandHandler::new(cfg).unwrap();
        h.run(&batch(
            vec![
                Op::Move {
                    from: b("old"),
                    to: b("f1"),
                },
                sync(b"gone", false),
            ],
            &[(b"old", mask::IN_MOVED_FROM), (b"f1", mask::IN_MOVED_TO)],
        ))
        .unwrap();
        let runs = rec.runs();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].0[..2], [b("synclist"), b("lab")]);
        assert!(runs[0].0[2].starts_with(lists.path().as_os_str().as_bytes()));
        assert_eq!(
            runs[0].1,
            vec![b("sync lab 128 f1\nsync lab 512 gone\nsync lab 64 old\n")]
        );
        assert_eq!(fs::read_dir(lists.path()).unwrap().count(), 0, "list left");
    }

    #[test]
    fn shell_simplify_and_recursive_sync() {
        let rec = Rec::new(0);
        let src = tree();
        let mut cfg = CommandConfig::new(CommandMode::Shell, rec.program(), src.path());
        cfg.synclist_simplify = true;
        cfg.have_recursive_sync = true;
        let mut h = CommandHandler::new(cfg).unwrap();
        let dir = h.lists_dir().unwrap();
        let mode = fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        h.run(&batch(vec![sync(b"sub", true), sync(b"f1", false)], &[]))
            .unwrap();
        let runs = rec.runs();
        let root = src.path().to_str().unwrap();
        assert_eq!(runs.len(), 2, "{runs:?}");
        assert_eq!(
            runs[0].0,
            vec![b("initialsync"), b("nolabel"), b(&format!("{root}/sub"))]
        );
        assert_eq!(runs[1].1, vec![b("f1\n")]);
        drop(h);
        assert!(!dir.exists(), "private dir removed");
    }

    #[test]
    fn keep_lists_keeps_them() {
        let rec = Rec::new(0);
        let src = tree();
        let lists = tempfile::tempdir().unwrap();
        let mut cfg = CommandConfig::new(CommandMode::Shell, rec.program(), src.path());
        cfg.lists_dir = Some(lists.path().to_path_buf());
        cfg.keep_lists = true;
        let mut h = CommandHandler::new(cfg).unwrap();
        h.run(&batch(vec![sync(b"f1", false)], &[])).unwrap();
        let kept: Vec<_> = fs::read_dir(lists.path()).unwrap().flatten().collect();
        assert_eq!(kept.len(), 1);
        let mode = kept[0].metadata().unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn failures_and_ignored_codes() {
        let src = tree();
        let rec = Rec::new(3);
        let cfg = CommandConfig::new(CommandMode::Direct, rec.program(), src.path());
        let e = CommandHandler::new(cfg.clone())
            .unwrap()
            .run(&batch(vec![sync(b"f1", false)], &[]))
            .unwrap_err();
        assert!(matches!(e, HandlerError::Exit { code: 3, .. }), "{e:?}");
        let mut cfg = cfg;
        cfg.ignore_exit = vec![3];
        let r = CommandHandler::new(cfg)
            .unwrap()
            .run(&batch(vec![sync(b"f1", false)], &[]))
            .unwrap();
        assert_eq!(r.exit_code, Some(3));
    }

    #[test]
    fn template_macros_and_type() {
        let rec = Rec::new(0);
        let src = tree();
        let mut cfg = CommandConfig::new(CommandMode::Direct, rec.program(), src.path());
        cfg.args = [
            "--t=%TYPE%",
            "%EVENT-MASK%",
            "%watch-dir%",
            "%unknown%",
            "%INCLUDE-LIST%",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let mut h = CommandHandler::new(cfg).unwrap();
        h.run(&batch(
            vec![sync(b"f1", false)],
            &[(b"f1", mask::IN_ATTRIB)],
        ))
        .unwrap();
        let runs = rec.runs();
        assert_eq!(
            runs[0].0,
            vec![
                b("--t=sync"),
                b("4"),
                b(src.path().to_str().unwrap()),
                b("%unknown%"),
                b("f1")
            ]
        );
    }

    /// The queue hands each batch the masks of the paths it carries, ORed
    /// over the changes it coalesced; masks below a recursive op go with
    /// it; a failed batch's masks come back with the retry.
    #[test]
    fn queue_carries_masks_with_the_batch() {
        use crate::queue::{Change, Queue, QueueConfig};
        use std::time::Instant;
        let mut q = Queue::new(QueueConfig {
            delay: Duration::ZERO,
            delay_big: Duration::ZERO,
            big_threshold: 0,
            interval: Duration::ZERO,
        });
        let now = Instant::now();
        q.note_mask(b"f", mask::IN_CREATE);
        q.push(
            now,
            Change::Created {
                path: b("f"),
                is_dir: false,
                size: 0,
            },
        );
        q.note_mask(b"f", mask::IN_MODIFY);
        q.note_mask(b"d", mask::IN_CREATE | mask::IN_ISDIR);
        q.note_mask(b"d/x", mask::IN_CREATE);
        q.push(
            now,
            Change::Subtree {
                path: b("d"),
                instant: false,
            },
        );
        q.note_mask(b"excluded", mask::IN_CREATE);
        let batch = q.pop_due(now).expect("due");
        assert_eq!(
            batch.masks.get(&b("f")),
            Some(&(mask::IN_CREATE | mask::IN_MODIFY))
        );
        assert_eq!(
            batch.masks.get(&b("d")),
            Some(&(mask::IN_CREATE | mask::IN_ISDIR))
        );
        assert_eq!(batch.masks.get(&b("d/x")), Some(&mask::IN_CREATE));
        assert!(!batch.masks.contains_key(&b("excluded")));
        q.finished(now);
        q.requeue(now, batch, now);
        let again = q.pop_due(now).expect("retry");
        assert_eq!(
            again.masks.get(&b("f")),
            Some(&(mask::IN_CREATE | mask::IN_MODIFY))
        );
        q.finished(now);
        // Nothing pending: masks no batch carried are dropped.
        q.note_mask(b"stray", mask::IN_DELETE);
        q.push(
            now,
            Change::Modified {
                path: b("g"),
                is_dir: false,
                size: 0,
            },
        );
        let last = q.pop_due(now).expect("due");
        assert!(!last.masks.contains_key(&b("stray")));
        assert!(q.is_empty());
    }
}
