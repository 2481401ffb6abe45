//! csync2: hand a batch to the real `csync2`, which sends it to the peers of
//! its own cluster config.
//!
//! This module owns `-M csync2`. csync2 names files by absolute path and
//! knows its peers, keys and include rules from its config (`/etc/csync2.cfg`,
//! or what `-C NAME` / `CSYNC2_SYSTEM_DIR` select), so livesync has no `-D`
//! here. For each batch it runs `csync2 ARGS -c -r ABS…` (one run per chunk
//! of paths; the watch dir itself for a whole-tree op), which compares the
//! paths with csync2's database and marks what changed — deletions included —
//! dirty; `csync2 ARGS -m ABS…`, which marks the named paths dirty whatever
//! `-c` thought (its check compares size, mode and whole-second mtime, so a
//! same-size edit within the second after the last check looks unchanged;
//! `-u` compares contents with the peer and sends only what differs); then
//! `csync2 ARGS -u`, which sends every dirty entry to the peers.
//! ARGS are the handler arguments after `--` (`-N`, `-C`, `-D`, `-p`, `-P`,
//! `-v`, …; `%watch-dir%` and `%label%` filled in), placed first.
//!
//! Why two steps and not `csync2 -x FILES`: `-x`'s update step keeps only
//! the dirty entries whose names match the given files, and csync2 stores
//! names under a `prefix` declaration as `%prefix%/…`, so with prefixes (a
//! tree that lives at different paths on different hosts) `-x FILES` marks
//! the files dirty and then sends nothing.
//!
//! It must not retry or read the trees: csync2 does the work, the exit code
//! is judged here, and a failure goes back to the daemon.

use super::{Handler, HandlerError, Report};
use crate::batch::Batch;
use crate::exec::{self, ExecError};
use crate::path;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;

/// At most this many bytes of path arguments per `csync2 -c` run.
const MAX_PATH_BYTES: usize = 64 * 1024;

/// csync2's options of the run that checks the named paths (recursively)
/// and marks what changed dirty; then the one that marks them dirty
/// anyway; then the one that sends every dirty entry (no paths).
pub const CHECK: [&str; 2] = ["-c", "-r"];
pub const MARK: [&str; 1] = ["-m"];
pub const UPDATE: [&str; 1] = ["-u"];

/// Everything the csync2 handler needs, resolved from the command line.
#[derive(Clone, Debug)]
pub struct Csync2Config {
    /// `-S`: the csync2 binary (looked up in PATH when it has no slash).
    pub program: OsString,
    /// Handler arguments after `--`, put before csync2's mode options.
    pub args: Vec<OsString>,
    /// Canonical watch dir (csync2 wants canonical absolute names).
    pub src: PathBuf,
    /// `-x`: exit codes that count as success (none by default).
    pub ignore_exit: Vec<i32>,
    /// `-k`: kill csync2's process group after this long.
    pub timeout: Option<Duration>,
    /// `-l`: the label (`%label%` in the handler arguments).
    pub label: String,
}

impl Csync2Config {
    pub fn new(program: impl Into<OsString>, src: impl Into<PathBuf>) -> Self {
        Csync2Config {
            program: program.into(),
            args: Vec::new(),
            src: src.into(),
            ignore_exit: Vec::new(),
            timeout: None,
            label: "nolabel".to_string(),
        }
    }
}

pub struct Csync2 {
    cfg: Csync2Config,
    /// Added to csync2's environment (set by the daemon before each run).
    env: Vec<(OsString, OsString)>,
}

impl Csync2 {
    /// Fills `%watch-dir%` and `%label%` into the handler arguments; fails
    /// only on a list macro embedded in a longer argument.
    pub fn new(mut cfg: Csync2Config) -> Result<Self, HandlerError> {
        cfg.args = super::unison::render_args(&cfg.args, &cfg.src, OsStr::new(""), &cfg.label)?;
        Ok(Csync2 {
            cfg,
            env: Vec::new(),
        })
    }

    /// Variables added to csync2's environment from the next run on.
    pub fn set_env(&mut self, env: Vec<(OsString, OsString)>) {
        self.env = env;
    }

    /// The argv of each run for `batch`, in order: `-c -r` and `-m` for
    /// each chunk of paths (just `-c -r WATCHDIR` for the whole tree), then
    /// one `-u`. Empty for an empty batch.
    pub fn argvs(&self, batch: &Batch) -> Vec<Vec<OsString>> {
        if batch.is_empty() {
            return Vec::new();
        }
        // csync2's -r is recursive; the root stands for the whole tree.
        let paths = super::top_paths(batch).unwrap_or_else(|| vec![&[][..]]);
        let whole_tree = paths.first().is_some_and(|p| p.is_empty());
        let mut chunks: Vec<Vec<OsString>> = Vec::new();
        let mut chunk: Vec<OsString> = Vec::new();
        let mut bytes = 0;
        for rel in paths {
            let abs = path::abs(&self.cfg.src, rel).into_os_string();
            if !chunk.is_empty() && bytes + abs.len() > MAX_PATH_BYTES {
                chunks.push(std::mem::take(&mut chunk));
                bytes = 0;
            }
            bytes += abs.len() + 1;
            chunk.push(abs);
        }
        chunks.push(chunk);
        let mut out = Vec::new();
        for chunk in chunks {
            out.push(self.argv(&CHECK, chunk.clone()));
            if !whole_tree {
                out.push(self.argv(&MARK, chunk));
            }
        }
        out.push(self.argv(&UPDATE, Vec::new()));
        out
    }

    /// The argv of one run: the program, the handler arguments, `mode`
    /// (one of [`CHECK`], [`MARK`], [`UPDATE`]) and the absolute `files`.
    /// `--check-execvp-arguments` renders it with placeholders to learn
    /// the shape of every argv this handler can run.
    pub fn argv(&self, mode: &[&str], files: Vec<OsString>) -> Vec<OsString> {
        let mut a = vec![self.cfg.program.clone()];
        a.extend(self.cfg.args.iter().cloned());
        a.extend(mode.iter().map(OsString::from));
        a.extend(files);
        a
    }

    fn program_name(&self) -> String {
        path::display(self.cfg.program.as_bytes())
    }

    fn spawn_error(&self, e: ExecError) -> HandlerError {
        super::spawn_error(&self.cfg.program, "csync2", e)
    }
}

impl Handler for Csync2 {
    fn set_env(&mut self, env: Vec<(OsString, OsString)>) {
        Csync2::set_env(self, env);
    }

    fn name(&self) -> &str {
        "csync2"
    }

    fn run(&mut self, batch: &Batch) -> Result<Report, HandlerError> {
        let mut code = None;
        for argv in self.argvs(batch) {
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
                ..exec::Spec::new(argv)
            };
            let outcome = spec.run().map_err(|e| self.spawn_error(e))?;
            super::rsync::judge(
                outcome,
                &self.program_name(),
                &self.cfg.ignore_exit,
                &mut code,
            )?;
        }
        Ok(Report {
            exit_code: code,
            ..Report::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Op;

    fn batch(ops: Vec<Op>) -> Batch {
        Batch::of(ops)
    }

    fn sync(p: &[u8]) -> Op {
        Op::sync(p, true)
    }

    fn strs(v: &[OsString]) -> Vec<String> {
        v.iter()
            .map(|a| String::from_utf8_lossy(a.as_bytes()).into_owned())
            .collect()
    }

    fn handler(args: &[&str]) -> Csync2 {
        let mut cfg = Csync2Config::new("csync2", "/w");
        cfg.args = args.iter().map(OsString::from).collect();
        Csync2::new(cfg).unwrap()
    }

    #[test]
    fn check_then_update_with_user_args_first() {
        let h = handler(&["-N", "n1", "-p", "3000"]);
        let v = h.argvs(&batch(vec![
            sync(b"a/b"),
            sync(b"a"),
            Op::Move {
                from: b"x".to_vec(),
                to: b"y \xff".to_vec(),
            },
        ]));
        assert_eq!(v.len(), 3);
        assert_eq!(
            strs(&v[0]),
            [
                "csync2",
                "-N",
                "n1",
                "-p",
                "3000",
                "-c",
                "-r",
                "/w/a",
                "/w/x",
                "/w/y \u{fffd}"
            ]
        );
        assert_eq!(v[0][9].as_bytes(), b"/w/y \xff");
        assert_eq!(strs(&v[1])[5..], ["-m", "/w/a", "/w/x", "/w/y \u{fffd}"]);
        assert_eq!(strs(&v[2]), ["csync2", "-N", "n1", "-p", "3000", "-u"]);
    }

    #[test]
    fn root_op_checks_the_watch_dir() {
        let v = handler(&[]).argvs(&batch(vec![sync(b"a"), sync(b"")]));
        assert_eq!(v.len(), 2, "no -m for the whole tree");
        assert_eq!(strs(&v[0]), ["csync2", "-c", "-r", "/w"]);
        assert_eq!(strs(&v[1]), ["csync2", "-u"]);
    }

    #[test]
    fn empty_batch_runs_nothing_and_many_paths_split() {
        let h = handler(&[]);
        assert!(h.argvs(&batch(vec![])).is_empty());
        let long = "p".repeat(1000);
        let ops = (0..200)
            .map(|i| sync(format!("{long}{i:03}").as_bytes()))
            .collect();
        let v = h.argvs(&batch(ops));
        assert!(v.len() >= 7, "{} runs", v.len());
        assert_eq!(strs(v.last().unwrap()), ["csync2", "-u"]);
        let count = |mode: &str, fixed: usize| -> usize {
            v.iter()
                .filter(|a| a[1] == mode)
                .map(|a| a.len() - fixed)
                .sum()
        };
        assert_eq!((count("-c", 3), count("-m", 2)), (200, 200));
    }

    #[test]
    fn missing_csync2_says_what_to_do() {
        let mut h = Csync2::new(Csync2Config::new("livesync-no-such-csync2", "/w")).unwrap();
        let e = h.run(&batch(vec![sync(b"a")])).unwrap_err();
        assert!(e.to_string().contains("pass -S /path/to/csync2"), "{e}");
    }
}
