//! unison: sync a batch by running the real `unison` between the watch dir
//! and the destination (a local dir, or `ssh://…` / `host:path`).
//!
//! This module owns `-M unison`: it turns a batch into one unison run per
//! chunk of paths, `unison SRC DST -batch -auto -silent … -path P …` (no
//! `-path` at all when the whole tree is to be synced; ssh gets
//! `-sshargs -oBatchMode=yes` unless the arguments set their own), with unison's state
//! (archives, `default.prf`) in a private 0700 directory made once per
//! handler and named by the `UNISON` variable, so the user's `~/.unison` is
//! never read or written. By default it adds `-force SRC`, which makes unison
//! a mirror (every difference is resolved in favour of the watch dir:
//! deletions and renames propagate, changes made at the destination are
//! undone) as the batch contract asks; handler arguments after `--` are
//! appended (with `%watch-dir%`, `%destination-dir%` and `%label%` filled
//! in), and if they choose the direction themselves (`-force`,
//! `-prefer`, `-noupdate`, …) livesync adds no `-force`, which is how to run
//! unison two-way.
//!
//! It must not retry, walk or change the trees itself: unison does the work,
//! the exit code is judged here, and a failure goes back to the daemon.

use super::template::{Context, Template};
use super::{Handler, HandlerError, Report};
use crate::batch::Batch;
use crate::exec::{self, ExecError};
use crate::path;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// At most this many bytes of `-path` arguments per unison run (far below
/// the kernel's argv limit); more paths mean more runs.
const MAX_PATH_BYTES: usize = 64 * 1024;

/// Options that decide the direction of the sync: when the user's
/// arguments hold one, livesync adds no `-force SRC`.
const DIRECTION_OPTIONS: [&str; 4] = ["-force", "-prefer", "-noupdate", "-nodeletion"];

/// Everything the unison handler needs, resolved from the command line.
#[derive(Clone, Debug)]
pub struct UnisonConfig {
    /// `-S`: the unison binary (looked up in PATH when it has no slash).
    pub program: OsString,
    /// Handler arguments after `--`, appended to every run.
    pub args: Vec<OsString>,
    /// Canonical watch dir.
    pub src: PathBuf,
    /// Destination as given: a local dir, `ssh://…`/`socket://…` (passed
    /// on), or `[user@]host:path` (turned into `ssh://[user@]host/path`).
    pub dst: OsString,
    /// The destination is a local directory (created when missing).
    pub local: bool,
    /// `-x`: exit codes that count as success (none by default).
    pub ignore_exit: Vec<i32>,
    /// `-k`: kill unison's process group after this long.
    pub timeout: Option<Duration>,
    /// `-l`: the label (`%label%` in the handler arguments).
    pub label: String,
}

impl UnisonConfig {
    pub fn new(
        program: impl Into<OsString>,
        src: impl Into<PathBuf>,
        dst: impl Into<OsString>,
        local: bool,
    ) -> Self {
        UnisonConfig {
            program: program.into(),
            args: Vec::new(),
            src: src.into(),
            dst: dst.into(),
            local,
            ignore_exit: Vec::new(),
            timeout: None,
            label: "nolabel".to_string(),
        }
    }
}

pub struct Unison {
    cfg: UnisonConfig,
    /// The second root as unison reads it.
    root2: OsString,
    /// The private UNISON directory; removed on drop.
    state: super::tempdir::PrivateDir,
    /// Added to unison's environment (set by the daemon before each run).
    env: Vec<(OsString, OsString)>,
}

impl Unison {
    /// Checks the destination, creates a local one when missing, and makes
    /// the private state directory.
    pub fn new(mut cfg: UnisonConfig) -> Result<Self, HandlerError> {
        cfg.args = render_args(&cfg.args, &cfg.src, &cfg.dst, &cfg.label)?;
        let root2 = second_root(&cfg)?;
        if cfg.local {
            let d = Path::new(&cfg.dst);
            fs::create_dir_all(d).map_err(|e| {
                HandlerError::Other(format!(
                    "cannot create the destination {}: {e}; create it or check permissions",
                    path::display_os(d)
                ))
            })?;
        }
        let state = private_dir(&std::env::temp_dir())?;
        Ok(Unison {
            cfg,
            root2,
            state,
            env: Vec::new(),
        })
    }

    /// Variables added to unison's environment from the next run on.
    pub fn set_env(&mut self, env: Vec<(OsString, OsString)>) {
        self.env = env;
    }

    /// The private directory unison keeps its archives in (`UNISON`).
    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    /// The argv of each run for `batch`: one per chunk of paths, or a single
    /// whole-tree run when the batch covers the root. Empty for an empty
    /// batch.
    pub fn argvs(&self, batch: &Batch) -> Vec<Vec<OsString>> {
        let Some(paths) = super::top_paths(batch) else {
            return vec![self.argv(&[])];
        };
        let mut out = Vec::new();
        let mut chunk: Vec<&[u8]> = Vec::new();
        let mut bytes = 0;
        for p in &paths {
            if !chunk.is_empty() && bytes + p.len() > MAX_PATH_BYTES {
                out.push(self.argv(&chunk));
                chunk.clear();
                bytes = 0;
            }
            bytes += p.len() + 1;
            chunk.push(p);
        }
        if !chunk.is_empty() {
            out.push(self.argv(&chunk));
        }
        out
    }

    fn argv(&self, paths: &[&[u8]]) -> Vec<OsString> {
        run_argv(&self.cfg, &self.root2, paths)
    }

    fn program_name(&self) -> String {
        path::display(self.cfg.program.as_bytes())
    }

    fn spawn_error(&self, e: ExecError) -> HandlerError {
        super::spawn_error(&self.cfg.program, "unison", e)
    }
}

impl Handler for Unison {
    fn set_env(&mut self, env: Vec<(OsString, OsString)>) {
        Unison::set_env(self, env);
    }

    fn name(&self) -> &str {
        "unison"
    }

    fn run(&mut self, batch: &Batch) -> Result<Report, HandlerError> {
        if batch.is_empty() {
            return Ok(Report::default());
        }
        let mut code = None;
        for argv in self.argvs(batch) {
            log::debug!(
                "running {}",
                argv.iter()
                    .map(|a| path::display(a.as_bytes()))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            let mut env = self.env.clone();
            env.push((
                "UNISON".into(),
                self.state.path().as_os_str().to_os_string(),
            ));
            let spec = exec::Spec {
                timeout: self.cfg.timeout,
                env,
                ..exec::Spec::new(argv)
            };
            let outcome = spec.run().map_err(|e| self.spawn_error(e))?;
            // unison: 1 = some paths skipped, 2 = non-fatal failures,
            // 3 = fatal error. Either way the trees may differ: retry.
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

impl Drop for Unison {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(self.state.path()) {
            log::warn!("cannot remove {}: {e}", path::display_os(self.state.path()));
        }
    }
}

/// The handler arguments with `%watch-dir%`, `%destination-dir%` and
/// `%label%` filled in (the other macros are rsync's and render empty).
pub(crate) fn render_args(
    args: &[OsString],
    src: &Path,
    dst: &OsStr,
    label: &str,
) -> Result<Vec<OsString>, HandlerError> {
    let t = Template::parse(args).map_err(|e| HandlerError::Other(e.to_string()))?;
    let label = OsString::from(label);
    Ok(t.render(&Context {
        label: Some(&label),
        watch_dir: Some(src.as_os_str()),
        destination_dir: Some(dst),
        ..Context::default()
    }))
}

/// The argv of one unison run naming `paths` (none: the whole tree);
/// `cfg.args` already rendered ([`render_args`]), `root2` from
/// [`second_root`]. `--check-execvp-arguments` renders it with
/// placeholders to learn the shape of every argv this handler can run.
pub fn run_argv(cfg: &UnisonConfig, root2: &OsStr, paths: &[&[u8]]) -> Vec<OsString> {
    let src = cfg.src.as_os_str();
    let mut a: Vec<OsString> = vec![
        cfg.program.clone(),
        src.into(),
        root2.into(),
        "-batch".into(),
        "-auto".into(),
        "-silent".into(),
        "-ui".into(),
        "text".into(),
        "-times".into(),
        "-links".into(),
        "true".into(),
        // A path whose whole contents went away is a normal change for
        // a mirror, not something to ask about (and -batch would abort).
        "-confirmbigdel=false".into(),
        "-log=false".into(),
    ];
    let user_decides = user_sets(&cfg.args, &DIRECTION_OPTIONS);
    if !user_decides {
        a.push("-force".into());
        a.push(src.into());
    }
    // ssh must never ask anything (a passphrase, "add this host key?"):
    // nobody can answer a daemon's handler, and an askpass program could pop
    // up on a desktop. The user's own -sshargs or -sshcmd replace this.
    if !user_sets(&cfg.args, &["-sshargs", "-sshcmd"]) {
        a.push("-sshargs".into());
        a.push("-oBatchMode=yes".into());
    }
    if !paths.is_empty() {
        // unison's quick check trusts size and whole-second mtimes, so a
        // same-size edit within the second after a sync would be missed
        // (the edit that triggered this very run). Named paths are few:
        // compare their contents. A whole-tree run keeps the quick check.
        a.push("-fastcheck".into());
        a.push("false".into());
    }
    for p in paths {
        a.push("-path".into());
        a.push(OsString::from_vec(p.to_vec()));
    }
    a.extend(cfg.args.iter().cloned());
    a
}

/// Whether the user's arguments hold one of `options` (`-name` or
/// `-name=value`).
fn user_sets(args: &[OsString], options: &[&str]) -> bool {
    args.iter().any(|x| {
        let b = x.as_bytes();
        options.iter().any(|o| {
            b == o.as_bytes() || b.strip_prefix(o.as_bytes()).is_some_and(|r| r[0] == b'=')
        })
    })
}

/// The second root as unison reads it: a local destination as given, a
/// remote one in unison's spelling ([`remote_root`]).
pub fn second_root(cfg: &UnisonConfig) -> Result<OsString, HandlerError> {
    if cfg.local {
        Ok(cfg.dst.clone())
    } else {
        remote_root(&cfg.dst)
    }
}

/// unison's spelling of a remote destination: `ssh://` and `socket://`
/// roots as given, `[user@]host:path` as `ssh://[user@]host/path` (an
/// absolute path keeps its slash: `ssh://host//srv/x`).
fn remote_root(dst: &OsStr) -> Result<OsString, HandlerError> {
    let b = dst.as_bytes();
    if b.starts_with(b"ssh://") || b.starts_with(b"socket://") {
        return Ok(dst.to_os_string());
    }
    if b.contains(&b':') && b.windows(3).any(|w| w == b"://") {
        return Err(HandlerError::Other(format!(
            "destination {}: unison reaches ssh://[user@]host/path, host:path and \
             socket://host:port/path roots; fix -D",
            path::display(b)
        )));
    }
    let Some(colon) = b.iter().position(|&c| c == b':') else {
        return Ok(dst.to_os_string());
    };
    let (host, rest) = (&b[..colon], &b[colon + 1..]);
    if host.is_empty() {
        return Err(HandlerError::Other(format!(
            "destination {}: no host before the colon; use host:path or ssh://host/path",
            path::display(b)
        )));
    }
    let mut out = b"ssh://".to_vec();
    out.extend_from_slice(host);
    out.push(b'/');
    out.extend_from_slice(rest);
    Ok(OsString::from_vec(out))
}

/// Makes a fresh private state directory under `parent` (see
/// [`super::private`]).
pub(crate) fn private_dir(parent: &Path) -> Result<super::tempdir::PrivateDir, HandlerError> {
    super::tempdir::PrivateDir::create(parent, "livesync-unison-").map_err(|e| {
        HandlerError::Other(format!(
            "cannot create unison's state dir in {}: {e}; check TMPDIR",
            path::display_os(parent)
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Op;
    use std::os::unix::fs::PermissionsExt;

    fn batch(ops: Vec<Op>) -> Batch {
        Batch::of(ops)
    }

    fn sync(p: &[u8]) -> Op {
        Op::sync(p, false)
    }

    fn strs(v: &[OsString]) -> Vec<String> {
        v.iter()
            .map(|a| String::from_utf8_lossy(a.as_bytes()).into_owned())
            .collect()
    }

    fn handler(args: &[&str]) -> (tempfile::TempDir, Unison) {
        let t = tempfile::tempdir().unwrap();
        let mut cfg = UnisonConfig::new("unison", t.path().join("s"), t.path().join("d"), true);
        cfg.args = args.iter().map(OsString::from).collect();
        let h = Unison::new(cfg).unwrap();
        (t, h)
    }

    #[test]
    fn root_sync_has_no_path_and_forces_the_source() {
        let (t, h) = handler(&[]);
        let v = h.argvs(&batch(vec![sync(b"a"), sync(b"")]));
        assert_eq!(v.len(), 1);
        let s = strs(&v[0]);
        let src = t.path().join("s").display().to_string();
        let dst = t.path().join("d").display().to_string();
        assert_eq!(s[..3], ["unison".to_string(), src.clone(), dst]);
        assert!(!s.contains(&"-path".to_string()), "{s:?}");
        let f = s.iter().position(|x| x == "-force").unwrap();
        assert_eq!(s[f + 1], src);
        for o in ["-batch", "-auto", "-silent", "-confirmbigdel=false"] {
            assert!(s.contains(&o.to_string()), "{o} missing: {s:?}");
        }
        assert!(t.path().join("d").is_dir(), "local destination not created");
    }

    #[test]
    fn ssh_gets_batch_mode_unless_the_user_sets_its_arguments() {
        let (_t, h) = handler(&[]);
        let s = strs(&h.argvs(&batch(vec![sync(b"a")]))[0]);
        let i = s.iter().position(|x| x == "-sshargs").expect("-sshargs");
        assert_eq!(s[i + 1], "-oBatchMode=yes");
        for own in [&["-sshargs", "-p 2222"][..], &["-sshcmd=/usr/bin/myssh"]] {
            let (_t, h) = handler(own);
            let s = strs(&h.argvs(&batch(vec![sync(b"a")]))[0]);
            assert!(!s.iter().any(|x| x == "-oBatchMode=yes"), "{own:?}: {s:?}");
        }
    }

    #[test]
    fn paths_are_relative_deduplicated_and_cover_moves() {
        let (_t, h) = handler(&["-times=false"]);
        let v = h.argvs(&batch(vec![
            sync(b"d/x"),
            sync(b"d"),
            Op::Move {
                from: b"old".to_vec(),
                to: b"new \xff".to_vec(),
            },
            sync(b"d b"),
            sync(b"-dash"),
        ]));
        let s = &v[0];
        let paths: Vec<&[u8]> = s
            .windows(2)
            .filter(|w| w[0] == "-path")
            .map(|w| w[1].as_bytes())
            .collect();
        assert_eq!(
            paths,
            [&b"-dash"[..], b"d", b"d b", b"new \xff", b"old"],
            "{s:?}"
        );
        assert_eq!(s.last().unwrap(), "-times=false", "user args go last");
    }

    #[test]
    fn user_direction_options_replace_force() {
        for arg in ["-prefer", "-force=newer", "-noupdate"] {
            let (_t, h) = handler(&[arg, "x"]);
            let s = strs(&h.argvs(&batch(vec![sync(b"a")]))[0]);
            assert_eq!(s.iter().filter(|x| x.starts_with("-force")).count(), {
                usize::from(arg.starts_with("-force"))
            });
        }
        let (_t, h) = handler(&["-forcepartial", "x"]);
        let s = strs(&h.argvs(&batch(vec![sync(b"a")]))[0]);
        assert!(s.contains(&"-force".to_string()), "{s:?}");
    }

    #[test]
    fn macros_in_handler_arguments_are_filled_in() {
        let (t, h) = handler(&["-prefer", "%watch-dir%", "-logfile=/l/%label%.log"]);
        let s = strs(&h.argvs(&batch(vec![sync(b"a")]))[0]);
        let n = s.len();
        let src = t.path().join("s").display().to_string();
        assert_eq!(
            s[n - 3..],
            ["-prefer".to_string(), src, "-logfile=/l/nolabel.log".into()]
        );
        assert!(!s.contains(&"-force".to_string()), "{s:?}");
    }

    #[test]
    fn many_paths_are_split_into_runs() {
        let (_t, h) = handler(&[]);
        let long = vec![b'x'; 1000];
        let ops: Vec<Op> = (0..200)
            .map(|i| sync(&[&long[..], format!("{i:03}").as_bytes()].concat()))
            .collect();
        let v = h.argvs(&batch(ops));
        assert!(v.len() >= 3, "{} runs", v.len());
        let n: usize = v
            .iter()
            .map(|a| a.iter().filter(|x| *x == "-path").count())
            .sum();
        assert_eq!(n, 200);
    }

    #[test]
    fn remote_roots() {
        let r = |s: &str| remote_root(OsStr::new(s)).map(|o| o.to_string_lossy().into_owned());
        assert_eq!(r("host:/srv/x").unwrap(), "ssh://host//srv/x");
        assert_eq!(r("u@h:rel").unwrap(), "ssh://u@h/rel");
        assert_eq!(r("ssh://h//a").unwrap(), "ssh://h//a");
        assert!(r("rsync://h/m").unwrap_err().to_string().contains("fix -D"));
        assert!(r(":x").is_err());
    }

    #[test]
    fn state_dir_is_private_and_removed() {
        let (_t, h) = handler(&[]);
        let d = h.state_dir().to_path_buf();
        let mode = fs::symlink_metadata(&d).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o700);
        drop(h);
        assert!(!d.exists());
    }

    #[test]
    fn missing_unison_says_what_to_do() {
        let t = tempfile::tempdir().unwrap();
        let cfg = UnisonConfig::new(
            "livesync-no-such-unison",
            t.path(),
            t.path().join("d"),
            true,
        );
        let e = Unison::new(cfg)
            .unwrap()
            .run(&batch(vec![sync(b"a")]))
            .unwrap_err();
        assert!(e.to_string().contains("pass -S /path/to/unison"), "{e}");
    }
}
