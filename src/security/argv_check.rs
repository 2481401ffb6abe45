//! `--check-execvp-arguments`: the argv patterns a configuration can
//! produce, and the matcher the privileged helper (src/security/split.rs)
//! runs on every argv the daemon asks it to start.
//!
//! The patterns are not a second copy of the handlers' argv: [`patterns`]
//! calls the very functions the handlers build their argv with
//! (`CommandHandler::render_argv`, `rsync::run_argv`, `unison::run_argv`,
//! `Csync2::argv`) with placeholders in place of what changes from run to
//! run (list files, event bits, paths), and turns the result into a
//! pattern: a placeholder list file becomes [`Part::ListFile`] (a plain
//! name in `-L` or a private lists dir), the event bits [`Part::Number`]
//! (a decimal `u32`), the paths [`Pat::Path`] (one) or [`Pat::Repeat`]
//! (one or more, with what goes before each, as unison's `-path`). A path
//! is either relative (no empty, `.` or `..` component; `.` alone is the
//! root) or absolute under the watch dir. Everything else must be equal.
//!
//! This module is pure: it reads the configuration and builds handlers'
//! argv without running anything, creating any file or touching the trees.
//! It must not allow an argv that no handler run or hook could produce.

use crate::config::{Config, Destination, Mode};
use crate::handler::build;
use crate::handler::command::{CommandHandler, CommandMode};
use crate::handler::csync2::{self, Csync2};
use crate::handler::lists::Separator;
use crate::handler::rsync;
use crate::handler::template::Template;
use crate::handler::unison;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// One element of an argv pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pat {
    /// Exactly this argument.
    Lit(Vec<u8>),
    /// One argument made of these parts in order.
    Parts(Vec<Part>),
    /// These elements, or nothing.
    Opt(Vec<Pat>),
    /// These elements, once or more (`%INCLUDE-LIST%`, unison's
    /// `-path P …`).
    Repeat(Vec<Pat>),
    /// One argument that is a path of this kind.
    Path(PathKind),
}

/// A part of one argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    Text(Vec<u8>),
    /// The path of a list file: a plain name in one of the lists dirs.
    ListFile,
    /// A decimal `u32` as Rust prints it (`%EVENT-MASK%`): digits, no
    /// leading zero but in `0`.
    Number,
}

/// What a path argument may be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathKind {
    /// Relative to the watch dir: `.` (the root) or names joined by `/`,
    /// none empty, `.` or `..`; never starting with `-` (the handlers pass
    /// such a path as `./-…`, see `handler::rel_arg`, and that form is
    /// allowed).
    Relative,
    /// As `Relative`, but the value of an option (unison's `-path P`):
    /// it may start with `-`, as it is never read as an option.
    OptionValue,
    /// This absolute directory (the watch dir) or a relative path (as
    /// above, not `.`) below it.
    Under(Vec<u8>),
}

/// What `--check-execvp-arguments` lets the helper run.
#[derive(Clone, Debug, Default)]
pub struct Checker {
    /// None: no check.
    pub patterns: Option<Vec<Vec<Pat>>>,
    /// `-L`, or else the parent of the private lists dirs.
    pub lists_dir: Option<PathBuf>,
    /// Private lists dirs are `<tmp>/livesync-lists-<16 hex>`.
    pub private_parent: PathBuf,
}

/// Placeholders the handlers' argv builders are called with. They start
/// with a byte no configuration may hold (checked), so they cannot clash.
const MARK: u8 = 0x01;
const SENTINEL_ILP: &[u8] = b"\x01ILP\x01";
const SENTINEL_ELP: &[u8] = b"\x01ELP\x01";
const SENTINEL_MASK: &[u8] = b"\x01MASK\x01";
const SENTINEL_PATH1: &[u8] = b"\x01PATH1\x01";
const SENTINEL_PATH2: &[u8] = b"\x01PATH2\x01";

fn os(b: &[u8]) -> OsString {
    OsString::from_vec(b.to_vec())
}

/// What `%INCLUDE-LIST%` (or the path arguments) hold in one kind of run.
#[derive(Clone, Debug)]
enum Paths {
    /// No path arguments.
    None,
    /// Exactly one path.
    One(PathKind),
    /// One or more (`or_none`: or zero), each with what goes before it.
    Many { kind: PathKind, or_none: bool },
}

impl Paths {
    /// The placeholder paths to render the argv with.
    fn placeholders(&self) -> Vec<OsString> {
        match self {
            Paths::None => Vec::new(),
            Paths::One(_) => vec![os(SENTINEL_PATH1)],
            Paths::Many { .. } => vec![os(SENTINEL_PATH1), os(SENTINEL_PATH2)],
        }
    }
}

/// Splits one rendered argument at the inline placeholders into parts.
fn parts_of(arg: &[u8]) -> Pat {
    let mut parts = Vec::new();
    let mut text = Vec::new();
    let mut i = 0;
    while i < arg.len() {
        let rest = &arg[i..];
        let found = [
            (SENTINEL_ILP, Part::ListFile),
            (SENTINEL_ELP, Part::ListFile),
            (SENTINEL_MASK, Part::Number),
        ]
        .into_iter()
        .find(|(s, _)| rest.starts_with(s));
        if let Some((s, part)) = found {
            if !text.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut text)));
            }
            parts.push(part);
            i += s.len();
        } else {
            text.push(arg[i]);
            i += 1;
        }
    }
    if parts.is_empty() {
        return Pat::Lit(text);
    }
    if !text.is_empty() {
        parts.push(Part::Text(text));
    }
    Pat::Parts(parts)
}

/// Turns an argv rendered with [`Paths::placeholders`] into a pattern. For
/// `Many`, the arguments between the two placeholders are what goes before
/// each path (none for `%INCLUDE-LIST%`, `-path` for unison), and must be
/// the ones before the first.
fn pattern_of(argv: &[OsString], paths: &Paths) -> Result<Vec<Pat>, String> {
    let cannot = || {
        "--check-execvp-arguments cannot model the handler arguments (a path list used twice?); \
         drop it or simplify the handler arguments"
            .to_string()
    };
    let mut out = Vec::new();
    let mut i = 0;
    let mut seen = false;
    while i < argv.len() {
        let a = argv[i].as_bytes();
        if a == SENTINEL_PATH1 {
            if seen {
                return Err(cannot());
            }
            seen = true;
            match paths {
                Paths::None => return Err(cannot()),
                Paths::One(kind) => {
                    out.push(Pat::Path(kind.clone()));
                    i += 1;
                }
                Paths::Many { kind, or_none } => {
                    let j = argv[i + 1..]
                        .iter()
                        .position(|x| x.as_bytes() == SENTINEL_PATH2)
                        .map(|p| i + 1 + p)
                        .ok_or_else(cannot)?;
                    let k = j - i - 1;
                    if k > i || argv[i + 1..j] != argv[i - k..i] {
                        return Err(cannot());
                    }
                    let mut group = out.split_off(out.len() - k);
                    group.push(Pat::Path(kind.clone()));
                    let rep = Pat::Repeat(group);
                    out.push(if *or_none { Pat::Opt(vec![rep]) } else { rep });
                    i = j + 1;
                }
            }
        } else if a == SENTINEL_PATH2 {
            return Err(cannot());
        } else {
            out.push(parts_of(a));
            i += 1;
        }
    }
    Ok(out)
}

fn bytes(s: &OsStr) -> &[u8] {
    s.as_bytes()
}

/// The argv patterns a configuration can produce: the handler's runs (see
/// the module docs) and the hooks' (`HOOK LABEL`). The built-in mirror and
/// the shared-object modes run no program: only the hooks.
///
/// unison reads its preferences (a `default.prf` may set `force`,
/// `backupdir`, `merge`, …) and archives from its state dir (`UNISON`):
/// under the check the helper makes and owns that dir and names it in
/// every run, whatever the daemon asks (see `split::HelperConfig`), so a
/// daemon that may not choose unison's argv cannot choose what it does
/// through its preferences either.
pub fn patterns(cfg: &Config) -> Result<Vec<Vec<Pat>>, String> {
    let held = [
        Some(cfg.label.as_bytes()),
        cfg.handler_program.as_deref().map(bytes),
        cfg.destination
            .as_ref()
            .map(|d| bytes(Destination::as_os_str(d))),
        Some(bytes(cfg.watch_dir.as_os_str())),
    ]
    .into_iter()
    .flatten()
    .chain(cfg.handler_args.iter().map(|a| bytes(a)))
    .chain(cfg.initial_handler_args.iter().map(|a| bytes(a)))
    .any(|b| b.contains(&MARK));
    if held {
        return Err(
            "--check-execvp-arguments: the handler, its arguments, label or directories hold a \\x01 byte; remove it or drop the option"
                .into(),
        );
    }
    let mut out = Vec::new();
    let label = cfg.label.as_bytes().to_vec();
    for hook in [&cfg.pre_exit_hook, &cfg.exit_hook].into_iter().flatten() {
        out.push(vec![
            Pat::Lit(hook.as_bytes().to_vec()),
            Pat::Lit(label.clone()),
        ]);
    }
    let src = cfg.watch_dir.clone();
    let under = PathKind::Under(src.as_os_str().as_bytes().to_vec());
    let err = |e: crate::handler::HandlerError| e.to_string();
    let mut runs: Vec<(Vec<OsString>, Paths)> = Vec::new();
    match cfg.mode {
        Mode::Mirror | Mode::So | Mode::RsyncSo => {}
        Mode::Simple | Mode::Direct | Mode::Shell => {
            // As handler::build makes it.
            let mode = match cfg.mode {
                Mode::Simple => CommandMode::Simple,
                Mode::Direct => CommandMode::Direct,
                _ => CommandMode::Shell,
            };
            let h = CommandHandler::new(build::command_config(cfg, mode)).map_err(err)?;
            let ilp = os(SENTINEL_ILP);
            let mask = os(SENTINEL_MASK);
            // simple: one run per path, absolute; direct and shell: the
            // relative paths of the batch (or a part of them).
            let paths = match mode {
                CommandMode::Simple => Paths::One(under.clone()),
                _ => Paths::Many {
                    kind: PathKind::Relative,
                    or_none: false,
                },
            };
            runs.push((
                h.render_argv(false, Some(&ilp), &paths.placeholders(), &mask),
                paths,
            ));
            // A subtree handed over whole: `initialsync`, no list file.
            if mode == CommandMode::Shell && cfg.have_recursive_sync {
                let one = Paths::One(under.clone());
                runs.push((h.render_argv(true, None, &one.placeholders(), &mask), one));
            }
        }
        Mode::RsyncDirect | Mode::RsyncShell => {
            let rc = build::rsync_config(cfg);
            let tpl = if rc.args.is_empty() {
                None
            } else {
                Some(Template::parse(&rc.args).map_err(|e| e.to_string())?)
            };
            let incl = Path::new(OsStr::from_bytes(SENTINEL_ILP));
            let excl = rsync::wants_exclude_file(&rc, tpl.as_ref())
                .then(|| Path::new(OsStr::from_bytes(SENTINEL_ELP)));
            let paths = Paths::Many {
                kind: PathKind::Relative,
                or_none: true,
            };
            for sep in [Separator::Newline, Separator::Nul] {
                let argv =
                    rsync::run_argv(&rc, tpl.as_ref(), incl, excl, sep, &paths.placeholders());
                runs.push((argv, paths.clone()));
            }
        }
        Mode::Unison => {
            let Some(mut u) = build::unison_config(cfg) else {
                return Err("-M unison needs -D".into());
            };
            // As Unison::new renders them (without making its state dir).
            u.args = unison::render_args(&u.args, &u.src, &u.dst, &cfg.label).map_err(err)?;
            let root2 = unison::second_root(&u).map_err(err)?;
            // The whole tree (no -path), or `-path P` for each path.
            runs.push((unison::run_argv(&u, &root2, &[]), Paths::None));
            let paths = Paths::Many {
                kind: PathKind::OptionValue,
                or_none: false,
            };
            let ph = paths.placeholders();
            let refs: Vec<&[u8]> = ph.iter().map(|p| p.as_bytes()).collect();
            runs.push((unison::run_argv(&u, &root2, &refs), paths));
        }
        Mode::Csync2 => {
            let h = Csync2::new(build::csync2_config(cfg)).map_err(err)?;
            // The watch dir itself stands for the whole tree.
            let paths = Paths::Many {
                kind: under.clone(),
                or_none: false,
            };
            for mode in [&csync2::CHECK[..], &csync2::MARK[..]] {
                runs.push((h.argv(mode, paths.placeholders()), paths.clone()));
            }
            runs.push((h.argv(&csync2::UPDATE, Vec::new()), Paths::None));
        }
    }
    for (argv, paths) in runs {
        let p = pattern_of(&argv, &paths)?;
        if !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

/// A relative path as the handlers name one: `.` alone, or names joined by
/// `/`, none empty, `.` or `..`.
fn relative_ok(b: &[u8], dot: bool) -> bool {
    if b == b"." {
        return dot;
    }
    !b.is_empty()
        && !b.contains(&0)
        && b.split(|&c| c == b'/')
            .all(|c| !c.is_empty() && c != b"." && c != b"..")
}

fn path_ok(kind: &PathKind, b: &[u8]) -> bool {
    match kind {
        PathKind::Relative => match b.strip_prefix(b"./") {
            Some(rest) => rest.starts_with(b"-") && relative_ok(rest, false),
            None => !b.starts_with(b"-") && relative_ok(b, true),
        },
        PathKind::OptionValue => relative_ok(b, true),
        PathKind::Under(base) => {
            if b == base.as_slice() {
                return true;
            }
            let Some(rest) = b.strip_prefix(base.as_slice()) else {
                return false;
            };
            let rest = if base.ends_with(b"/") {
                Some(rest)
            } else {
                rest.strip_prefix(b"/")
            };
            rest.is_some_and(|r| relative_ok(r, false))
        }
    }
}

/// A decimal `u32` as `to_string` prints it.
fn number_ok(b: &[u8]) -> bool {
    !b.is_empty()
        && b.iter().all(u8::is_ascii_digit)
        && (b.len() == 1 || b[0] != b'0')
        && std::str::from_utf8(b).is_ok_and(|s| s.parse::<u32>().is_ok())
}

/// One step of the compiled pattern (a regex-like program over arguments,
/// run without backtracking so a long argv costs no deep recursion).
#[derive(Clone, Debug)]
enum Step<'a> {
    /// One argument matching this element (`Lit`, `Parts` or `Path`).
    Arg(&'a Pat),
    /// Go on at both.
    Split(usize, usize),
    Accept,
}

fn compile<'a>(pats: &'a [Pat], prog: &mut Vec<Step<'a>>) {
    for p in pats {
        match p {
            Pat::Lit(_) | Pat::Parts(_) | Pat::Path(_) => prog.push(Step::Arg(p)),
            Pat::Opt(inner) => {
                let split = prog.len();
                prog.push(Step::Split(0, 0));
                compile(inner, prog);
                prog[split] = Step::Split(split + 1, prog.len());
            }
            Pat::Repeat(inner) => {
                let start = prog.len();
                compile(inner, prog);
                let split = prog.len();
                prog.push(Step::Split(start, split + 1));
            }
        }
    }
}

impl Checker {
    fn list_file_ok(&self, path: &[u8]) -> bool {
        let p = Path::new(OsStr::from_bytes(path));
        let (Some(dir), Some(name)) = (p.parent(), p.file_name()) else {
            return false;
        };
        if name.as_bytes().starts_with(b".") || path.contains(&0) || path.ends_with(b"/") {
            return false;
        }
        // `dir` must be the lists dir exactly (no `//`, `/./` on the way).
        if p.as_os_str().len() != dir.as_os_str().len() + 1 + name.len() {
            return false;
        }
        if let Some(l) = &self.lists_dir {
            return dir == l;
        }
        let (Some(parent), Some(dname)) = (dir.parent(), dir.file_name()) else {
            return false;
        };
        let d = dname.as_bytes();
        parent == self.private_parent
            && dir.as_os_str().len() == parent.as_os_str().len() + 1 + d.len()
            && d.len() == 15 + 16
            && d.starts_with(b"livesync-lists-")
            && d[15..].iter().all(|c| c.is_ascii_hexdigit())
    }

    fn arg_ok(&self, parts: &[Part], arg: &[u8]) -> bool {
        match parts.split_first() {
            None => arg.is_empty(),
            Some((Part::Text(t), rest)) => arg.starts_with(t) && self.arg_ok(rest, &arg[t.len()..]),
            Some((Part::ListFile, rest)) => (1..=arg.len())
                .any(|n| self.arg_ok(rest, &arg[n..]) && self.list_file_ok(&arg[..n])),
            Some((Part::Number, rest)) => (1..=arg.len().min(10))
                .any(|n| number_ok(&arg[..n]) && self.arg_ok(rest, &arg[n..])),
        }
    }

    fn one_ok(&self, pat: &Pat, arg: &[u8]) -> bool {
        match pat {
            Pat::Lit(l) => arg == l.as_slice(),
            Pat::Parts(parts) => self.arg_ok(parts, arg),
            Pat::Path(kind) => path_ok(kind, arg),
            Pat::Opt(_) | Pat::Repeat(_) => false,
        }
    }

    fn matches(&self, pat: &[Pat], argv: &[OsString]) -> bool {
        let mut prog = Vec::new();
        compile(pat, &mut prog);
        prog.push(Step::Accept);
        // The set of steps reachable without consuming an argument.
        let close = |start: Vec<usize>| -> Vec<bool> {
            let mut on = vec![false; prog.len()];
            let mut todo = start;
            while let Some(pc) = todo.pop() {
                if std::mem::replace(&mut on[pc], true) {
                    continue;
                }
                match prog[pc] {
                    Step::Split(a, b) => todo.extend([a, b]),
                    Step::Arg(_) | Step::Accept => {}
                }
            }
            on
        };
        let mut now = close(vec![0]);
        for a in argv {
            let next: Vec<usize> = prog
                .iter()
                .enumerate()
                .filter(|(pc, s)| {
                    now[*pc] && matches!(s, Step::Arg(p) if self.one_ok(p, a.as_bytes()))
                })
                .map(|(pc, _)| pc + 1)
                .collect();
            if next.is_empty() {
                return false;
            }
            now = close(next);
        }
        prog.iter()
            .enumerate()
            .any(|(pc, s)| now[pc] && matches!(s, Step::Accept))
    }

    /// Whether `argv` may run: always without patterns; with them, when one
    /// of them could have produced it.
    pub fn allows(&self, argv: &[OsString]) -> bool {
        match &self.patterns {
            None => true,
            Some(pats) => pats.iter().any(|p| self.matches(p, argv)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{Batch, Op};
    use crate::config::cli;
    use clap::Parser;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn o(s: &str) -> OsString {
        OsString::from(s)
    }

    /// A watch dir with awkward names, a destination, a recording handler
    /// (`printf '%s\0' "$#" "$@"` per run) and a `-L` dir.
    struct World {
        _t: tempfile::TempDir,
        src: PathBuf,
        dst: PathBuf,
        rec: PathBuf,
        lists: PathBuf,
    }

    const NAMES: [&[u8]; 6] = [b"a b", b"-x", b"--rsh=evil", b"nl\nx", b"\xff\xfe", b"f"];

    impl World {
        fn new() -> World {
            let t = tempfile::tempdir().unwrap();
            let root = t.path().canonicalize().unwrap();
            let src = root.join("src");
            fs::create_dir_all(src.join("d/e")).unwrap();
            for n in NAMES {
                fs::write(src.join(OsStr::from_bytes(n)), n).unwrap();
            }
            fs::write(src.join("d/e/g"), "g").unwrap();
            let rec = root.join("rec");
            fs::write(
                &rec,
                "#!/bin/sh\nprintf '%s\\0' \"$#\" \"$@\" >> \"$0.runs\"\n",
            )
            .unwrap();
            fs::set_permissions(&rec, fs::Permissions::from_mode(0o755)).unwrap();
            let lists = root.join("lists");
            fs::create_dir(&lists).unwrap();
            World {
                src,
                dst: root.join("dst"),
                rec,
                lists,
                _t: t,
            }
        }

        fn config(&self, args: &[OsString]) -> Config {
            let mut v: Vec<OsString> = vec![o("livesync"), o("-W"), self.src.clone().into()];
            v.extend(args.iter().cloned());
            Config::from_args_searching(cli::Args::try_parse_from(v).unwrap(), &[]).unwrap()
        }

        /// `-M mode -S <recorder> -D <dst>` and `more`.
        fn mode(&self, mode: &str, more: &[OsString]) -> Config {
            let mut v = vec![
                o("-M"),
                o(mode),
                o("-S"),
                self.rec.clone().into(),
                o("-D"),
                self.dst.clone().into(),
            ];
            v.extend(more.iter().cloned());
            self.config(&v)
        }

        /// The argvs the recorder saw, program first.
        fn runs(&self) -> Vec<Vec<OsString>> {
            let mut p = self.rec.clone().into_os_string();
            p.push(".runs");
            let b = fs::read(&p).unwrap_or_default();
            let mut words = b.split(|&c| c == 0);
            let mut out = Vec::new();
            while let Some(n) = words.next().filter(|w| !w.is_empty()) {
                let n: usize = std::str::from_utf8(n).unwrap().parse().unwrap();
                let mut argv = vec![self.rec.clone().into_os_string()];
                for _ in 0..n {
                    argv.push(os(words.next().unwrap()));
                }
                out.push(argv);
            }
            let _ = fs::remove_file(&p);
            out
        }
    }

    fn sync(p: &[u8], recursive: bool) -> Op {
        Op::sync(p, recursive)
    }

    fn batch(ops: Vec<Op>) -> Batch {
        Batch::of(ops)
    }

    /// The batches every mode is run on: the initial sync, a file, a
    /// directory, a rename, each awkward name, a deleted path.
    fn batches() -> Vec<(Batch, &'static str)> {
        let mut v = vec![
            (batch(vec![sync(b"", true)]), "initsync"),
            (batch(vec![sync(b"f", false)]), "running"),
            (batch(vec![sync(b"d", true)]), "running"),
            (
                batch(vec![Op::Move {
                    from: b"old".to_vec(),
                    to: b"a b".to_vec(),
                }]),
                "running",
            ),
            (batch(vec![sync(b"gone", false)]), "running"),
        ];
        v.push((
            batch(NAMES.iter().map(|n| sync(n, false)).collect()),
            "running",
        ));
        v
    }

    fn checker(cfg: &Config) -> Checker {
        Checker {
            patterns: Some(patterns(cfg).unwrap()),
            lists_dir: cfg.lists_dir.clone(),
            private_parent: std::env::temp_dir(),
        }
    }

    /// Runs the real handler `handler::build` makes for `cfg` on
    /// every batch and returns what it ran, each argv checked to pass.
    fn real_argvs(w: &World, cfg: &Config) -> Vec<Vec<OsString>> {
        let c = checker(cfg);
        let mut h = crate::handler::build(cfg, &mut build::Context::default()).unwrap();
        let mut all = Vec::new();
        for (b, status) in batches() {
            h.set_env(vec![(o("CLSYNC_STATUS"), o(status))]);
            h.run(&b).unwrap();
            for argv in w.runs() {
                assert!(
                    c.allows(&argv),
                    "-M {}: the handler ran {argv:?}, which the patterns {:?} refuse",
                    cfg.mode.name(),
                    c.patterns
                );
                all.push(argv);
            }
        }
        assert!(!all.is_empty(), "-M {}: nothing ran", cfg.mode.name());
        all
    }

    fn refused(c: &Checker, argv: &[OsString], what: &str) {
        assert!(!c.allows(argv), "{what}: {argv:?} was allowed");
    }

    /// Mutations every argv must fail: an extra argument, another program,
    /// a missing argument.
    fn common_mutations(c: &Checker, argv: &[OsString]) {
        let mut a = argv.to_vec();
        a.push(o("--extra"));
        refused(c, &a, "extra argument");
        let mut a = argv.to_vec();
        a[0] = o("/bin/sh");
        refused(c, &a, "swapped program");
        let mut a = argv.to_vec();
        a.pop();
        refused(c, &a, "last argument dropped");
    }

    /// Replaces the first argument equal to `from` with each of `to`, each
    /// of which must be refused.
    fn swap_refused(c: &Checker, argv: &[OsString], from: &[u8], to: &[&[u8]], what: &str) {
        let i = argv
            .iter()
            .position(|a| a.as_bytes() == from)
            .unwrap_or_else(|| panic!("{what}: no {from:?} in {argv:?}"));
        for t in to {
            let mut a = argv.to_vec();
            a[i] = os(t);
            refused(c, &a, what);
        }
    }

    fn abs(w: &World, rel: &[u8]) -> Vec<u8> {
        crate::path::abs(&w.src, rel).into_os_string().into_vec()
    }

    #[test]
    fn simple_allows_its_runs_and_refuses_forgeries() {
        let w = World::new();
        let cfg = w.config(&[o("-M"), o("simple"), o("-S"), w.rec.clone().into()]);
        let c = checker(&cfg);
        let argvs = real_argvs(&w, &cfg);
        // One run per path, `sync LABEL MASK ABS`.
        let named: Vec<&OsString> = argvs.iter().map(|a| &a[4]).collect();
        for n in NAMES {
            assert!(
                named.contains(&&os(&abs(&w, n))),
                "{n:?} not run: {argvs:?}"
            );
        }
        for argv in &argvs {
            common_mutations(&c, argv);
            let mut a = argv.clone();
            a.insert(1, o("-e"));
            a.insert(2, o("sh"));
            refused(&c, &a, "-e sh");
            let mask = argv[3].as_bytes().to_vec();
            swap_refused(
                &c,
                argv,
                &mask,
                &[b"x", b"1 2", b"01", b"", b"99999999999"],
                "mask",
            );
            let p = argv[4].as_bytes().to_vec();
            let outside = w.src.parent().unwrap().join("srcx");
            let dotdot = [abs(&w, b"d"), b"/../../etc".to_vec()].concat();
            let trailing = [abs(&w, b"d"), b"/".to_vec()].concat();
            swap_refused(
                &c,
                argv,
                &p,
                &[
                    b"/etc/shadow",
                    outside.as_os_str().as_bytes(),
                    &dotdot,
                    &trailing,
                    b"f",
                ],
                "path",
            );
        }
    }

    #[test]
    fn direct_allows_its_runs_and_refuses_forgeries() {
        let w = World::new();
        let cfg = w.mode("direct", &[]);
        let c = checker(&cfg);
        let argvs = real_argvs(&w, &cfg);
        let dst_arg = [w.dst.as_os_str().as_bytes(), b"/"].concat();
        assert!(argvs.iter().all(|a| a.last() == Some(&os(&dst_arg))));
        // Names that start with `-` reach the program as `./-…`, never as
        // an option; in their bare form they are refused.
        assert!(argvs.iter().any(|a| a.contains(&o("./--rsh=evil"))));
        assert!(!argvs.iter().any(|a| a.contains(&o("--rsh=evil"))));
        for argv in argvs.iter().filter(|a| a.contains(&o("./--rsh=evil"))) {
            swap_refused(
                &c,
                argv,
                b"./--rsh=evil",
                &[b"--rsh=evil"],
                "bare option-like name",
            );
        }
        assert!(argvs.iter().any(|a| a.contains(&o("."))), "root as .");
        for argv in &argvs {
            common_mutations(&c, argv);
            let p = argv[1].as_bytes().to_vec();
            swap_refused(
                &c,
                argv,
                &p,
                &[
                    b"/etc/shadow",
                    b"../x",
                    b"d/../../x",
                    b"d//e",
                    b"d/",
                    b"./d",
                    b"",
                ],
                "path",
            );
            swap_refused(&c, argv, &dst_arg, &[b"/tmp/", b"-e"], "destination");
        }
    }

    #[test]
    fn shell_allows_its_runs_and_refuses_forgeries() {
        let w = World::new();
        for extra in [
            &[][..],
            &[o("--synclist-simplify")],
            &[o("--have-recursive-sync"), o("-L"), w.lists.clone().into()],
        ] {
            let mut args = vec![o("-M"), o("shell"), o("-S"), w.rec.clone().into()];
            args.extend(extra.iter().cloned());
            let cfg = w.config(&args);
            let c = checker(&cfg);
            let argvs = real_argvs(&w, &cfg);
            let recursive = cfg.have_recursive_sync;
            assert_eq!(
                argvs.iter().any(|a| a[1] == "initialsync"),
                recursive,
                "{argvs:?}"
            );
            for argv in &argvs {
                common_mutations(&c, argv);
                let mut a = argv.clone();
                a.insert(1, o("-e"));
                a.insert(2, o("sh"));
                refused(&c, &a, "-e sh");
                let last = argv[3].as_bytes().to_vec();
                if argv[1] == "synclist" {
                    let elsewhere = w.src.join("list");
                    let dotted = [w.lists.as_os_str().as_bytes(), b"/.hidden"].concat();
                    swap_refused(
                        &c,
                        argv,
                        &last,
                        &[b"/etc/shadow", elsewhere.as_os_str().as_bytes(), &dotted],
                        "list file",
                    );
                } else {
                    swap_refused(&c, argv, &last, &[b"/etc", b"d"], "initialsync path");
                }
                swap_refused(
                    &c,
                    argv,
                    argv[1].as_bytes(),
                    &[b"sync", b"rsynclist"],
                    "type",
                );
            }
        }
    }

    #[test]
    fn templates_with_every_macro_follow_the_handler() {
        let w = World::new();
        let cfg = w.config(&[
            o("-M"),
            o("direct"),
            o("-S"),
            w.rec.clone().into(),
            o("-l"),
            o("lab"),
            o("--"),
            o("--mask=%EVENT-MASK%"),
            o("%TYPE%"),
            o("--list=%INCLUDE-LIST-PATH%"),
            o("%EXCLUDE-LIST-PATH%"),
            o("%label%@%watch-dir%"),
            o("%INCLUDE-LIST%"),
            o("--end"),
        ]);
        let c = checker(&cfg);
        for argv in real_argvs(&w, &cfg) {
            common_mutations(&c, &argv);
            assert_eq!(argv[2], "sync");
            assert_eq!(argv[4], "", "no exclude list in command modes");
            let m = argv[1].as_bytes().to_vec();
            swap_refused(
                &c,
                &argv,
                &m,
                &[b"--mask=", b"--mask=1x", b"--mask=-1"],
                "mask",
            );
            swap_refused(&c, &argv, b"sync", &[b"initialsync"], "type");
            let l = argv[3].as_bytes().to_vec();
            swap_refused(&c, &argv, &l, &[b"--list=/etc/passwd"], "list");
        }
    }

    #[test]
    fn rsync_modes_allow_their_runs_and_refuse_forgeries() {
        let w = World::new();
        let d = || vec![o("-D"), w.dst.clone().into()];
        let prog = || vec![o("-S"), w.rec.clone().into()];
        let cases: Vec<Vec<OsString>> = vec![
            [vec![o("-M"), o("rsyncdirect")], prog(), d()].concat(),
            [
                vec![o("-M"), o("rsyncdirect"), o("--rsync-prefer-include")],
                prog(),
                d(),
            ]
            .concat(),
            [vec![o("-M"), o("rsyncshell")], prog(), d()].concat(),
            [
                vec![o("-M"), o("rsyncdirect")],
                prog(),
                d(),
                vec![
                    o("--"),
                    o("%RSYNC-ARGS%"),
                    o("%INCLUDE-LIST%"),
                    o("%watch-dir%/"),
                    o("%destination-dir%/"),
                ],
            ]
            .concat(),
        ];
        for args in cases {
            let cfg = w.config(&args);
            let c = checker(&cfg);
            for argv in real_argvs(&w, &cfg) {
                common_mutations(&c, &argv);
                let mut a = argv.clone();
                a.insert(1, o("--rsh=touch /tmp/pwned"));
                refused(&c, &a, "injected option");
                let lf = argv
                    .iter()
                    .find(|a| {
                        a.as_bytes()
                            .starts_with(std::env::temp_dir().as_os_str().as_bytes())
                    })
                    .expect("a list file")
                    .as_bytes()
                    .to_vec();
                let fake = std::env::temp_dir().join("livesync-lists-zz/x");
                swap_refused(
                    &c,
                    &argv,
                    &lf,
                    &[b"/etc/shadow", fake.as_os_str().as_bytes()],
                    "list file",
                );
            }
        }
    }

    #[test]
    fn rsync_runs_with_xattrs_and_acls_pass_the_check() {
        let w = World::new();
        let template = vec![
            o("--"),
            o("%RSYNC-ARGS%"),
            o("%watch-dir%/"),
            o("%destination-dir%/"),
        ];
        for tail in [Vec::new(), template] {
            let args = [
                vec![o("-M"), o("rsyncdirect"), o("-S"), w.rec.clone().into()],
                vec![o("-D"), w.dst.clone().into(), o("--xattrs"), o("--acls")],
                tail,
            ]
            .concat();
            let cfg = w.config(&args);
            let c = checker(&cfg);
            for argv in real_argvs(&w, &cfg) {
                assert!(
                    argv.contains(&o("-X")) && argv.contains(&o("-A")),
                    "{argv:?}"
                );
                let without: Vec<OsString> = argv.iter().filter(|a| *a != "-X").cloned().collect();
                refused(&c, &without, "the argv without -X");
            }
        }
    }

    #[test]
    fn unison_allows_its_runs_and_refuses_forgeries() {
        let w = World::new();
        let cfg = w.mode("unison", &[]);
        let c = checker(&cfg);
        let argvs = real_argvs(&w, &cfg);
        assert!(argvs.iter().any(|a| !a.contains(&o("-path"))), "whole tree");
        assert!(argvs.iter().any(|a| a.contains(&o("-x"))), "{argvs:?}");
        for argv in &argvs {
            common_mutations(&c, argv);
            let mut a = argv.clone();
            a.insert(1, o("-servercmd"));
            a.insert(2, o("/tmp/evil"));
            refused(&c, &a, "extra option");
            swap_refused(&c, argv, w.dst.as_os_str().as_bytes(), &[b"/etc"], "root");
            if let Some(i) = argv.iter().position(|a| a == "-path") {
                let p = argv[i + 1].as_bytes().to_vec();
                swap_refused(&c, argv, &p, &[b"/etc", b"../x", b"a//b"], "-path");
                let mut a = argv.clone();
                a[i] = o("-ignore");
                refused(&c, &a, "-path swapped for another option");
            }
        }
    }

    #[test]
    fn csync2_allows_its_runs_and_refuses_forgeries() {
        let w = World::new();
        let cfg = w.config(&[
            o("-M"),
            o("csync2"),
            o("-S"),
            w.rec.clone().into(),
            o("--"),
            o("-N"),
            o("%label%"),
        ]);
        let c = checker(&cfg);
        let argvs = real_argvs(&w, &cfg);
        assert!(argvs
            .iter()
            .any(|a| a[3..] == [o("-c"), o("-r"), w.src.clone().into()]));
        for argv in &argvs {
            let mut a = argv.to_vec();
            a.push(o("/etc"));
            refused(&c, &a, "extra path");
            let mut a = argv.to_vec();
            a[0] = o("/bin/sh");
            refused(&c, &a, "swapped program");
            swap_refused(&c, argv, b"nolabel", &[b"other"], "label");
            if argv.len() > 4 {
                let p = argv[4].as_bytes().to_vec();
                let dotdot = [w.src.as_os_str().as_bytes(), b"/../etc"].concat();
                swap_refused(&c, argv, &p, &[b"/etc", &dotdot, b"f"], "path");
            }
        }
    }

    #[test]
    fn modes_without_a_program_have_only_the_hooks() {
        let w = World::new();
        let cfg = w.config(&[
            o("-D"),
            w.dst.clone().into(),
            o("--exit-hook"),
            w.rec.clone().into(),
        ]);
        let c = checker(&cfg);
        assert_eq!(c.patterns.as_ref().map(Vec::len), Some(1));
        assert!(c.allows(&[w.rec.clone().into(), o("nolabel")]));
        refused(&c, &[w.rec.clone().into(), o("x")], "hook label");
        refused(
            &c,
            &[o("rsync"), o("-aH")],
            "a program the mirror never runs",
        );
        for mode in ["so", "rsyncso"] {
            let cfg = w.mode(mode, &[]);
            assert_eq!(patterns(&cfg), Ok(Vec::new()), "-M {mode}");
        }
    }

    #[test]
    fn the_matcher_knows_numbers_paths_and_list_files() {
        for (n, ok) in [
            ("0", true),
            ("4294967295", true),
            ("4294967296", false),
            ("007", false),
        ] {
            assert_eq!(number_ok(n.as_bytes()), ok, "{n}");
        }
        let under = PathKind::Under(b"/w".to_vec());
        for (p, ok) in [
            (&b"/w"[..], true),
            (b"/w/a", true),
            (b"/w/a b/-c", true),
            (b"/wx", false),
            (b"/w/", false),
            (b"/w/./a", false),
            (b"/w/a/..", false),
            (b"/w//a", false),
        ] {
            assert_eq!(path_ok(&under, p), ok, "{p:?}");
        }
        assert!(path_ok(&PathKind::Under(b"/".to_vec()), b"/a"));
        let c = Checker {
            patterns: None,
            lists_dir: Some(PathBuf::from("/l")),
            private_parent: PathBuf::from("/tmp"),
        };
        assert!(c.list_file_ok(b"/l/x.1.include"));
        // `-L /l/` and TMPDIR=/tmp/ name the same dirs.
        let slash = Checker {
            patterns: None,
            lists_dir: Some(PathBuf::from("/l/")),
            private_parent: PathBuf::from("/tmp/"),
        };
        assert!(slash.list_file_ok(b"/l/x"));
        assert!(Checker {
            lists_dir: None,
            ..slash
        }
        .list_file_ok(b"/tmp/livesync-lists-0123456789abcdef/x"));
        for bad in [
            &b"/l//x"[..],
            b"/l/./x",
            b"/l/.x",
            b"/l/",
            b"/m/x",
            b"/l/a/b",
        ] {
            assert!(!c.list_file_ok(bad), "{bad:?}");
        }
        // A long argv is matched without deep recursion.
        let c = Checker {
            patterns: Some(vec![vec![
                Pat::Lit(b"p".to_vec()),
                Pat::Repeat(vec![Pat::Path(PathKind::Relative)]),
            ]]),
            ..c
        };
        let mut argv = vec![o("p")];
        argv.extend((0..200_000).map(|i| o(&format!("n{i}"))));
        assert!(c.allows(&argv));
        argv.push(o("../x"));
        assert!(!c.allows(&argv));
    }
}
