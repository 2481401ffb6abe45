//! Command line and configuration: raw arguments ([`cli::Args`]) and the
//! config file ([`file`]) become a validated, typed [`Config`] exactly once.
//!
//! Precedence is decided here: the command line beats the config file option
//! by option (clap's `value_source`), the file beats the defaults. The
//! file's options are turned into clap words, put in front of the command
//! line's own words and parsed again, so a value from the file is checked by
//! exactly the parser that checks the command line.
//!
//! Validation reads the filesystem (the config file, the watch dir must
//! exist, a local destination must not be it, contain it or lie inside it,
//! compared by device and inode, unless the rules never walk the way to it)
//! but changes nothing: a bad input is reported as one [`ConfigError`] line
//! before anything is created or touched. Nothing here logs (the logger is not installed yet): warnings
//! are handed on in [`Config::warnings`].

pub mod cli;
pub mod file;
pub mod privileges; // -u/-g, capabilities, splitting, namespaces, --chroot: read and checked
mod resolve; // one resolver per option group: Args → the parts of a Config
pub mod so_object; // -M so/rsyncso: clsync's checks on the shared object

use crate::path;
use crate::queue::QueueConfig;
use crate::rules::Rules;
use clap::{CommandFactory, Parser};
use file::ConfigFile;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How a batch is handed on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The built-in engine: copies, renames and deletes by itself.
    Mirror,
    /// rsync with clsync's argv.
    RsyncDirect,
    // ---- clsync's command modes: src/handler/command.rs ----
    /// The -S program once per path: `sync LABEL MASK ABSPATH`.
    Simple,
    /// The -S program once per batch with the relative paths as arguments.
    Direct,
    /// The -S program once per batch with a `synclist` list file.
    Shell,
    /// The -S program once per batch with rsync include/exclude lists.
    RsyncShell,
    // --- so/rsyncso (src/handler/so.rs) ---
    /// A C shared object (`-S lib.so`) with clsync's ABI: `clsyncapi_sync`.
    So,
    /// A C shared object with clsync's ABI: `clsyncapi_rsync` with lists.
    RsyncSo,
    // -- remote handlers (src/handler/unison.rs, csync2.rs) --
    /// The real unison between the watch dir and the destination.
    Unison,
    /// The real csync2, to the peers of its own config (no -D).
    Csync2,
}

impl Mode {
    /// clsync's name of the mode.
    pub fn name(&self) -> &'static str {
        match self {
            Mode::Mirror => "mirror",
            Mode::RsyncDirect => "rsyncdirect",
            Mode::Simple => "simple",
            Mode::Direct => "direct",
            Mode::Shell => "shell",
            Mode::RsyncShell => "rsyncshell",
            Mode::So => "so",
            Mode::RsyncSo => "rsyncso",
            Mode::Unison => "unison",
            Mode::Csync2 => "csync2",
        }
    }

    /// Whether the mode must be given a destination (-D).
    pub fn needs_destination(&self) -> bool {
        matches!(self, Mode::Mirror | Mode::RsyncDirect | Mode::Unison)
    }
}

/// Where log lines go (`-Y`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Stderr,
    Stdout,
    /// Datagrams to `/dev/log` (RFC 3164, facility daemon).
    Syslog,
}

/// When the initial sync shows a progress bar (`--progress`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// When stderr is a terminal and livesync stays in front.
    Auto,
    Never,
}

/// `-p`: how handler runs may overlap (see `--threads`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Threading {
    /// One batch at a time.
    #[default]
    Off,
    /// Several at once, never two on related paths (the queue's exclusive mode).
    Safe,
    /// Several at once, no exclusion.
    Full,
}

/// Where the destination lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// A local directory, absolute and with symlinks resolved as far as it
    /// exists.
    Local(PathBuf),
    /// `host:path` or `rsync://…`: handed to the handler as given.
    Remote(OsString),
}

impl Destination {
    pub fn as_os_str(&self) -> &OsStr {
        match self {
            Destination::Local(p) => p.as_os_str(),
            Destination::Remote(s) => s,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("watch dir {path}: {reason}")]
    WatchDir { path: String, reason: String },
    #[error("destination {path}: {reason}")]
    Destination { path: String, reason: String },
    #[error("{0}")]
    Rules(#[from] crate::rules::RulesError),
    #[error("unknown mode {0:?}: use mirror, rsyncdirect, simple, direct, shell, rsyncshell, so, rsyncso, unison or csync2")]
    Mode(String),
    #[error("{0}")]
    File(#[from] file::FileError),
    #[error("{0}")]
    Invalid(String),
    /// `error`, found after the configuration had already given these
    /// warnings (an ignored unknown key may be why): the caller shows them
    /// first, since the logger that would carry them never starts.
    #[error("{error}")]
    Warned {
        warnings: Vec<String>,
        error: Box<ConfigError>,
    },
}

impl ConfigError {
    /// The warnings to show before this error.
    pub fn warnings(&self) -> &[String] {
        match self {
            ConfigError::Warned { warnings, .. } => warnings,
            _ => &[],
        }
    }
}

/// Resolved settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Canonical watch dir.
    pub watch_dir: PathBuf,
    pub destination: Option<Destination>,
    pub mode: Mode,
    /// `-S`, resolved to the mode's default when not given.
    pub handler_program: Option<OsString>,
    pub handler_args: Vec<OsString>,
    pub rules: Arc<Rules>,
    pub rules_file: Option<PathBuf>,
    /// `--xattrs`: copy extended attributes (mirror; rsync's -X).
    pub xattrs: bool,
    /// `--acls`: copy POSIX ACLs (mirror; rsync's -A).
    pub acls: bool,
    pub queue: QueueConfig,
    /// 0 = forever.
    pub retries: u32,
    pub ignore_exit: Vec<i32>,
    pub label: String,
    pub lists_dir: Option<PathBuf>,
    pub keep_lists: bool,
    // ---- clsync's command modes ----
    /// `--synclist-simplify`.
    pub synclist_simplify: bool,
    /// `--have-recursive-sync`.
    pub have_recursive_sync: bool,
    /// `--rsync-inclimit` (0 = no limit).
    pub rsync_inclimit: usize,
    /// `--rsync-prefer-include`.
    pub rsync_prefer_include: bool,
    /// `-F`: the initial sync ignores the rules.
    pub full_initialsync: bool,
    // ---- end of the command modes' block ----
    /// `--dry-run`: the built-in mirror logs what it would do and writes
    /// nothing.
    pub dry_run: bool,
    pub log_level: log::LevelFilter,
    /// Handler arguments for the initial sync (the config file's `---`
    /// key); empty when not set. Not used by the daemon yet.
    pub initial_handler_args: Vec<OsString>,
    /// `--custom-signals` as left in force: (signal number, config block),
    /// in order of first mention. Every block exists in `config_file`.
    pub custom_signals: Vec<(i32, String)>,
    /// The config file that was read, if any.
    pub config_file: Option<PathBuf>,
    /// The block of `config_file` that settings were taken from, if any.
    pub config_block: Option<String>,
    /// `-z`: where to write our pid.
    pub pid_file: Option<PathBuf>,
    /// `--status-file`.
    pub status_file: Option<PathBuf>,
    /// `--standby-file`: while it exists, syncs are held.
    pub standby_file: Option<PathBuf>,
    /// `--dump-dir`: where state dumps go.
    pub dump_dir: Option<PathBuf>,
    /// `--socket`: the control socket's path, owner (uid, gid) and mode.
    pub socket: Option<PathBuf>,
    pub socket_owner: Option<(u32, u32)>,
    pub socket_mode: u32,
    pub exit_on_no_events: bool,
    pub only_initialsync: bool,
    pub skip_initialsync: bool,
    /// `--max-iterations`: 0 = no limit; N = the initial sync and at most
    /// N-1 handler runs after it.
    pub max_iterations: u32,
    pub sync_on_quit: bool,
    pub pre_exit_hook: Option<OsString>,
    pub exit_hook: Option<OsString>,
    /// `--ignore-hook-failures`: a failed hook is only logged (clsync).
    pub ignore_hook_failures: bool,
    /// `--ignore-failures`: never give up on a failing batch.
    pub ignore_failures: bool,
    /// `-k`: None = no limit.
    pub timeout_sync: Option<Duration>,
    /// `-b`.
    pub background: bool,
    /// `--one-file-system`: mount points found under the watch dir are
    /// kept out by rules put in front of the user's (see `rules`).
    pub one_file_system: bool,
    /// `-X`: the same, the mount points themselves included.
    pub exclude_mount_points: bool,
    /// `--modification-signature`: the lstat fields compared (None = off).
    pub modification_signature: Option<Vec<crate::signature::Field>>,
    /// `--cancel-syscalls=mon_stat`: sizes are not looked at (the big-file
    /// lane is off: `queue.big_threshold` is 0).
    pub cancel_mon_stat: bool,
    /// `-Y`.
    pub output: Output,
    // ---- Operations: metrics, syslog socket, progress ----
    /// `--metrics-file`: where Prometheus text metrics are written.
    pub metrics_file: Option<PathBuf>,
    /// `--syslog-socket`: where `-Y syslog` datagrams go.
    pub syslog_socket: PathBuf,
    /// `--progress`: when the initial sync shows a progress bar.
    pub progress: Progress,
    // ---- end of Operations ----
    // ----- Parallel handler runs (-p, --threads) -----
    /// `-p`.
    pub threading: Threading,
    /// Handler runs at once: 1 with `-p off`; `--threads` (or the CPU
    /// count, at least 2) with safe and full.
    pub threads: usize,
    // --- Event backends (src/monitor/). ---
    /// `--monitor`, or the platform's native backend.
    pub monitor: crate::monitor::MonitorKind,
    /// Settings of the backends (`--poll-interval`).
    pub monitor_options: crate::monitor::MonitorOptions,
    /// Things worth a warning found while reading the configuration (one
    /// line each, e.g. `file:line: removed trailing whitespace …`). The
    /// caller logs them once the logger is up.
    pub warnings: Vec<String>,
    // ---- privileges and hardening (config/privileges/; src/security/) ----
    /// `-u`, `-g`, `--sync-handler-uid`, `-C`, `--splitting`, ….
    pub privileges: privileges::Privileges,
}

/// What reading the config file gave besides option values.
#[derive(Default)]
struct FromFile {
    file: Option<ConfigFile>,
    block: Option<String>,
    initial_handler_args: Vec<OsString>,
    warnings: Vec<String>,
}

/// Reads the config file the command line asks for (or the first default
/// one found in `search`) and returns the arguments again with the file's
/// values put under the command line's.
fn merge_config_file(
    a: cli::Args,
    search: &[PathBuf],
) -> Result<(cli::Args, FromFile), ConfigError> {
    let mut out = FromFile::default();
    let loaded = match &a.config_file {
        Some(p) if p.as_os_str() == file::NO_FILE => None,
        Some(p) if p.as_os_str().is_empty() => {
            return Err(ConfigError::Invalid(
                "-H must name a config file (or /NULL/ to read none)".to_string(),
            ))
        }
        Some(p) => Some(ConfigFile::load(p)?),
        None => file::find_default(search, &mut out.warnings)?,
    };
    let Some(f) = loaded else {
        let block_asked = a.given.gave("config-block") || a.given.gave("config-block-inherits");
        if block_asked && a.config_file.is_none() {
            // clsync's own example scripts pass -K NAME with no config file
            // anywhere; clsync goes on with the command line, and so do we.
            let tried: Vec<String> = search.iter().map(|p| path::display_os(p)).collect();
            out.warnings.push(format!(
                "-K {}: no config file was found (tried {}); going on with the command line alone, as clsync does (give the file with -H, or -H /NULL/ to read none)",
                a.config_block,
                if tried.is_empty() {
                    "none".to_string()
                } else {
                    tried.join(", ")
                }
            ));
        } else if block_asked {
            out.warnings.push(
                "-K and --config-block-inherits have no effect with -H /NULL/ (no config file is read)"
                    .to_string(),
            );
        }
        return Ok((a, out));
    };
    out.warnings.extend(f.warnings().iter().cloned());
    let explicit = a.config_file.is_some() || a.given.gave("config-block");
    if f.block(&a.config_block).is_none() && !explicit {
        out.warnings.push(format!(
            "{}: no [{}] block, so no settings were taken from it; choose a block with -K or give -H /NULL/",
            path::display_os(f.path()),
            a.config_block
        ));
        out.file = Some(f);
        return Ok((a, out));
    }
    let settings = f.settings(&a.config_block, a.config_block_inherits.as_deref())?;
    let from_file = file::file_args(&settings, &cli::Args::command(), &a.given)?;
    out.warnings.extend(from_file.warnings);
    let mut argv: Vec<OsString> = vec![OsString::from("livesync")];
    argv.extend(from_file.words);
    argv.extend(a.given.words().iter().cloned());
    if let Some(h) = from_file.handler_args.filter(|h| !h.is_empty()) {
        argv.push(cli::HANDLER_ARGS.into());
        argv.extend(h);
    }
    let merged = cli::Args::try_parse_from(&argv).map_err(|e| {
        let rendered = e.render().to_string();
        let first = rendered.lines().next().unwrap_or("invalid arguments");
        ConfigError::Invalid(format!(
            "{} [{}] and the command line do not combine: {}; fix one of them",
            path::display_os(f.path()),
            a.config_block,
            first.strip_prefix("error: ").unwrap_or(first)
        ))
    })?;
    out.block = Some(a.config_block.clone());
    out.initial_handler_args = from_file.initial_handler_args;
    drop(settings);
    out.file = Some(f);
    Ok((merged, out))
}

/// `--custom-signals` as left in force, each block checked against the
/// config file (it must exist and its inheritance must resolve).
fn custom_signals(
    a: &cli::Args,
    file: Option<&ConfigFile>,
) -> Result<Vec<(i32, String)>, ConfigError> {
    let signals = cli::fold_custom_signals(&a.custom_signals);
    for (sig, block) in &signals {
        let Some(f) = file else {
            return Err(ConfigError::Invalid(format!(
                "--custom-signals: signal {sig} names config block [{block}], but no config file was read; give -H FILE or drop --custom-signals"
            )));
        };
        if f.block(block).is_none() {
            return Err(ConfigError::Invalid(format!(
                "--custom-signals: signal {sig} names config block [{block}], which {} does not have; add the block or fix --custom-signals",
                path::display_os(f.path())
            )));
        }
        f.chain(block, None)?;
    }
    Ok(signals)
}

fn seconds(name: &str, v: f64) -> Result<Duration, ConfigError> {
    if !v.is_finite() || !(0.0..=1.0e9).contains(&v) {
        return Err(ConfigError::Invalid(format!(
            "{name} must be a number of seconds between 0 and 1e9, not {v}"
        )));
    }
    Ok(Duration::from_secs_f64(v))
}

/// True for `host:path` and `rsync://…`: a colon before the first slash.
fn is_remote(dest: &OsStr) -> bool {
    let b = dest.as_bytes();
    let first_slash = b.iter().position(|&c| c == b'/').unwrap_or(b.len());
    b[..first_slash].contains(&b':')
}

/// Where a local destination lies with respect to the watch dir, decided
/// by device and inode, so that a bind mount cannot hide it.
#[derive(Debug, PartialEq, Eq)]
enum Overlap {
    Apart,
    /// The same directory.
    Same,
    /// Below the watch dir, at this relative path.
    Inside(Vec<u8>),
    /// An ancestor of the watch dir.
    Around,
}

/// (device, inode) of a directory (following links: the user chose these
/// paths), or `None` when it does not exist (yet).
fn dir_id(p: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p)
        .ok()
        .filter(std::fs::Metadata::is_dir)
        .map(|m| (m.dev(), m.ino()))
}

/// `dst` (absolute, canonical up to its deepest existing ancestor) and the
/// canonical `watch`: the destination is inside the watch dir when it or an
/// ancestor is the watch dir (by id, so a bind mount of the source above
/// the destination counts), around it when the watch dir or an ancestor of
/// it is the destination. A bind mount of the destination *below* the watch
/// dir cannot be seen from the paths; the tree and the mirror skip it while
/// walking.
fn overlap(watch: &Path, dst: &Path) -> Overlap {
    let Some(watch_id) = dir_id(watch) else {
        return Overlap::Apart;
    };
    for a in dst.ancestors() {
        if dir_id(a) == Some(watch_id) {
            let below = dst.strip_prefix(a).unwrap_or(Path::new(""));
            let rel = below.as_os_str().as_bytes().to_vec();
            return if rel.is_empty() {
                Overlap::Same
            } else {
                Overlap::Inside(rel)
            };
        }
    }
    if let Some(dst_id) = dir_id(dst) {
        if watch.ancestors().any(|a| dir_id(a) == Some(dst_id)) {
            return Overlap::Around;
        }
    }
    Overlap::Apart
}

/// Whether the rules keep livesync out of `rel` (a destination inside the
/// watch dir): some directory on the way, `rel` included, is never walked,
/// so nothing in it is watched, walked or mirrored into itself. This is
/// clsync's documented way of backing up `/` into `/mnt/backup/mirror`.
fn keeps_out(rules: &Rules, rel: &[u8]) -> bool {
    use crate::rules::{Action, Kind};
    rel.iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'/')
        .map(|(i, _)| &rel[..i])
        .chain(std::iter::once(rel))
        .any(|p| !rules.permits(p, Kind::Dir, Action::Walk))
}

/// The absolute form of a path that may not exist yet: its deepest existing
/// ancestor canonicalised, the rest appended.
fn resolve_maybe_missing(p: &Path) -> std::io::Result<PathBuf> {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()?.join(p)
    };
    let mut existing = abs.as_path();
    let mut rest: Vec<&OsStr> = Vec::new();
    loop {
        match existing.canonicalize() {
            Ok(c) => {
                let mut out = c;
                for part in rest.iter().rev() {
                    match part.as_bytes() {
                        b"." => {}
                        b".." => {
                            out.pop();
                        }
                        _ => out.push(part),
                    }
                }
                return Ok(out);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let (Some(parent), Some(name)) = (existing.parent(), existing.file_name()) else {
                    return Err(e);
                };
                rest.push(name);
                existing = parent;
            }
            Err(e) => return Err(e),
        }
    }
}

/// `-L` or `--dump-dir`: a directory, or nothing yet (the daemon creates
/// it at start, as clsync does); never a symlink in its place, nor another
/// kind of file.
fn check_control_dir(d: &Path, what: &str, option: &str) -> Result<(), ConfigError> {
    match std::fs::symlink_metadata(d) {
        Ok(m) if m.file_type().is_symlink() => Err(ConfigError::Invalid(format!(
            "{what} {} is a symlink, which livesync does not follow; give {option} the real directory",
            path::display_os(d)
        ))),
        Ok(m) if !m.is_dir() => Err(ConfigError::Invalid(format!(
            "{what} {} is not a directory; remove it or fix {option}",
            path::display_os(d)
        ))),
        _ => Ok(()),
    }
}

/// A control file's path (`-z`, `--status-file`, `--socket`, …) made
/// absolute: its directory resolved as [`resolve_maybe_missing`] does, its
/// own name kept as given. A symlink at that name is never resolved: the
/// daemon replaces such a link, it never writes or removes its target.
fn resolve_control_file(p: &Path) -> std::io::Result<PathBuf> {
    match (p.parent(), p.file_name()) {
        (Some(dir), Some(name)) => {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            Ok(resolve_maybe_missing(dir)?.join(name))
        }
        _ => resolve_maybe_missing(p),
    }
}

/// `p` made absolute against the current directory (unchanged if that
/// cannot be read): `-b` moves the daemon to `/`.
fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        return p.to_path_buf();
    }
    std::env::current_dir()
        .map(|d| d.join(p))
        .unwrap_or_else(|_| p.to_path_buf())
}

/// A program as given: a bare name stays (looked up in PATH when run), a
/// relative path becomes absolute.
fn program_path(p: &OsStr) -> OsString {
    if p.as_bytes().contains(&b'/') {
        absolute(Path::new(p)).into_os_string()
    } else {
        p.to_os_string()
    }
}

/// Decodes the octal escapes (`\\040` …) of a /proc/self/mountinfo field.
pub(crate) fn unescape_mountinfo(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let oct = field
            .get(i + 1..i + 4)
            .filter(|d| field[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match oct {
            Some(d) => {
                let v = d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
                out.push(v as u8);
                i += 4;
            }
            None => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    out
}

/// The mount points strictly below `root`, relative to it, from the text of
/// /proc/self/mountinfo (its fifth field).
fn mount_points_under(root: &Path, mountinfo: &[u8]) -> Vec<Vec<u8>> {
    let root = root.as_os_str().as_bytes();
    let mut out: Vec<Vec<u8>> = mountinfo
        .split(|&b| b == b'\n')
        .filter_map(|line| line.split(|&b| b == b' ').nth(4))
        .map(unescape_mountinfo)
        .filter_map(|m| {
            let rest = m.strip_prefix(root)?;
            let rel = if root == b"/" {
                rest
            } else {
                rest.strip_prefix(b"/")?
            };
            (!rel.is_empty()).then(|| rel.to_vec())
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Rules lines that keep the walk, the watches and the syncs out of each
/// mount point (`exclude`: the mount point itself too).
fn mount_rules(points: &[Vec<u8>], exclude: bool) -> Vec<u8> {
    let mut text = Vec::new();
    for p in points {
        let mut re = b"^".to_vec();
        for &b in p {
            if b.is_ascii_alphanumeric() || b == b'/' || b == b'_' {
                re.push(b);
            } else {
                re.extend_from_slice(format!("\\x{b:02x}").as_bytes());
            }
        }
        if exclude {
            text.extend_from_slice(b"-*");
            text.extend_from_slice(&re);
            text.extend_from_slice(b"(/|$)\n");
        } else {
            text.extend_from_slice(b"-W");
            text.extend_from_slice(&re);
            text.extend_from_slice(b"$\n-*");
            text.extend_from_slice(&re);
            text.extend_from_slice(b"/\n");
        }
    }
    text
}

/// Checks that `program` can be run: a name without a slash must be found in
/// `PATH`, a path must be an executable file. Returns where it was found.
pub fn find_program(program: &OsStr) -> Result<PathBuf, ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let shown = path::display(program.as_bytes());
    let executable = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if program.as_bytes().contains(&b'/') {
        let p = PathBuf::from(program);
        if executable(&p) {
            return Ok(p);
        }
        return Err(ConfigError::Invalid(format!(
            "sync handler {shown} is not an executable file; fix -S"
        )));
    }
    let search = std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/bin:/bin"));
    for dir in std::env::split_paths(&search) {
        let candidate = dir.join(program);
        if executable(&candidate) {
            return Ok(candidate);
        }
    }
    Err(ConfigError::Invalid(format!(
        "sync handler {shown} is not in PATH; install it (e.g. apt-get install {shown}) or give its path with -S"
    )))
}

/// `USER[:GROUP]` (names or numbers) → (uid, gid); the group defaults to
/// the user's primary group.
fn resolve_owner(spec: &str) -> Result<(u32, u32), ConfigError> {
    use nix::unistd::{Group, User};
    let bad = |what: String| ConfigError::Invalid(format!("--socket-own {spec:?}: {what}"));
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let (uid, primary) = match user.parse::<u32>() {
        Ok(n) => (
            n,
            User::from_uid(n.into())
                .ok()
                .flatten()
                .map(|u| u.gid.as_raw()),
        ),
        Err(_) => match User::from_name(user) {
            Ok(Some(u)) => (u.uid.as_raw(), Some(u.gid.as_raw())),
            _ => return Err(bad(format!("no user {user:?}; give a user name or uid"))),
        },
    };
    let gid = match group {
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => match Group::from_name(g) {
                Ok(Some(gr)) => gr.gid.as_raw(),
                _ => return Err(bad(format!("no group {g:?}; give a group name or gid"))),
            },
        },
        None => primary
            .ok_or_else(|| bad("the user has no primary group; give USER:GROUP".to_string()))?,
    };
    Ok((uid, gid))
}

impl Config {
    /// Builds the configuration from the command line and the config file
    /// it names (or the first default config file, see [`file`]).
    pub fn from_args(a: cli::Args) -> Result<Config, ConfigError> {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        Config::from_args_searching(a, &file::default_paths(home.as_deref()))
    }

    /// [`Config::from_args`] with the default config file looked for in
    /// `search` instead (used when `-H` is not given).
    pub fn from_args_searching(a: cli::Args, search: &[PathBuf]) -> Result<Config, ConfigError> {
        let (a, from_file) = merge_config_file(a, search)?;
        let warnings = from_file.warnings.clone();
        Config::resolve(a, from_file).map_err(|error| {
            if warnings.is_empty() {
                error
            } else {
                ConfigError::Warned {
                    warnings,
                    error: Box::new(error),
                }
            }
        })
    }

    /// Validates the merged arguments into a Config: each option group's
    /// resolver (config/resolve.rs), in a fixed order, then the jail check.
    fn resolve(a: cli::Args, from_file: FromFile) -> Result<Config, ConfigError> {
        let custom_signals = custom_signals(&a, from_file.file.as_ref())?;
        let watch_dir = resolve::watch_dir(&a)?;
        let mode = resolve::mode(&a)?;
        let (destination, dst_inside) = resolve::destination(&a, &watch_dir, &mode)?;
        let handler_program = resolve::handler_program(&a, &mode)?;
        let rules = resolve::rules(&a, &watch_dir, dst_inside)?;
        let (modification_signature, cancel_mon_stat) = resolve::syscalls(&a)?;
        let queue = resolve::queue(&a, cancel_mon_stat)?;
        let mut ignore_exit = a.ignore_exitcode.clone();
        if mode == Mode::RsyncDirect && !ignore_exit.contains(&24) {
            ignore_exit.push(24);
        }
        if let Some(l) = &a.lists_dir {
            check_control_dir(l, "lists dir", "-L")?;
        }
        let mut mode_warnings = resolve::mode_warnings(&a, &mode);
        resolve::conflicts(&a, &mode)?;
        let (threading, threads) = resolve::threading(&a)?;
        resolve::hooks(&a)?;
        let files = resolve::control_files(&a)?;
        let output = resolve::output(&a, &mut mode_warnings);
        let privileges = privileges::from_args(&a).map_err(ConfigError::Invalid)?;
        let log_level = resolve::log_level(&a);
        let metrics_file = resolve::control_file("--metrics-file", &a.metrics_file)?;
        let cfg = Config {
            watch_dir,
            destination,
            mode,
            handler_program,
            handler_args: a.handler_args,
            rules: Arc::new(rules),
            rules_file: a.rules_file,
            xattrs: a.xattrs,
            acls: a.acls,
            queue,
            retries: a.retries,
            ignore_exit,
            label: a.label,
            lists_dir: a.lists_dir.map(|l| absolute(&l)),
            keep_lists: a.dont_unlink_lists,
            synclist_simplify: a.synclist_simplify,
            have_recursive_sync: a.have_recursive_sync,
            rsync_inclimit: a.rsync_inclimit,
            rsync_prefer_include: a.rsync_prefer_include,
            full_initialsync: a.full_initialsync,
            dry_run: a.dry_run,
            log_level,
            initial_handler_args: from_file.initial_handler_args,
            custom_signals,
            config_file: from_file.file.map(|f| f.path().to_path_buf()),
            config_block: from_file.block,
            warnings: from_file
                .warnings
                .into_iter()
                .chain(mode_warnings)
                .collect(),
            pid_file: files.pid_file,
            status_file: files.status_file,
            standby_file: files.standby_file,
            dump_dir: files.dump_dir,
            socket: files.socket,
            socket_owner: files.socket_owner,
            socket_mode: files.socket_mode,
            exit_on_no_events: a.exit_on_no_events,
            only_initialsync: a.only_initialsync,
            skip_initialsync: a.skip_initialsync,
            max_iterations: a.max_iterations,
            sync_on_quit: a.sync_on_quit,
            pre_exit_hook: a.pre_exit_hook.map(|h| program_path(&h)),
            exit_hook: a.exit_hook.map(|h| program_path(&h)),
            ignore_hook_failures: a.ignore_hook_failures,
            ignore_failures: a.ignore_failures,
            timeout_sync: (a.timeout_sync > 0).then(|| Duration::from_secs(a.timeout_sync)),
            background: a.background.unwrap_or(false),
            one_file_system: a.one_file_system,
            modification_signature,
            cancel_mon_stat,
            exclude_mount_points: a.exclude_mount_points,
            output,
            // Operations: metrics, syslog socket, progress.
            metrics_file,
            syslog_socket: a.syslog_socket,
            progress: match a.progress.as_str() {
                "never" => Progress::Never,
                _ => Progress::Auto,
            },
            threading,
            threads,
            privileges,
            monitor: a
                .monitor
                .unwrap_or_else(crate::monitor::MonitorKind::platform_default),
            monitor_options: crate::monitor::MonitorOptions {
                poll_interval: a.poll_interval,
            },
        };
        // --chroot: what is used while running must lie inside the jail.
        if let Some(jail) = &cfg.privileges.jail {
            jail.check(&cfg).map_err(ConfigError::Invalid)?;
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        let mut v = vec!["livesync", "-H", "/NULL/"];
        v.extend_from_slice(args);
        Config::from_args(cli::Args::try_parse_from(v).expect("clap"))
    }

    #[test]
    fn have_recursive_sync_warns_only_where_it_does_nothing() {
        let t = tempfile::tempdir().expect("tempdir");
        let s = t.path().to_str().expect("utf8");
        let warned = |mode: &str, program: &str| {
            let c = parse(&["-W", s, "-M", mode, "-S", program, "--have-recursive-sync"])
                .unwrap_or_else(|e| panic!("{mode}: {e}"));
            c.warnings
                .iter()
                .any(|w| w.contains("--have-recursive-sync"))
        };
        // so hands a subtree over as one entry, rsyncso tells its object.
        for mode in ["shell", "so", "rsyncso"] {
            assert!(!warned(mode, "/bin/true"), "{mode} uses it");
        }
        for mode in ["direct", "rsyncshell"] {
            assert!(warned(mode, "/bin/true"), "{mode} does not use it");
        }
    }

    #[test]
    fn a_control_file_that_is_a_symlink_keeps_its_own_name() {
        let t = tempfile::tempdir().expect("tempdir");
        let base = std::fs::canonicalize(t.path()).expect("canonical");
        let (src, dst) = (base.join("src"), base.join("dst"));
        std::fs::create_dir(&src).expect("mkdir");
        let target = base.join("precious");
        std::fs::write(&target, "x").expect("write");
        let link = base.join("link");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        let l = link.to_str().expect("utf8");
        let c = parse(&[
            "-W",
            src.to_str().expect("utf8"),
            "-D",
            dst.to_str().expect("utf8"),
            "-z",
            l,
            "--status-file",
            l,
            "--metrics-file",
            l,
            "--socket",
            l,
        ])
        .expect("parse");
        for p in [&c.pid_file, &c.status_file, &c.metrics_file, &c.socket] {
            assert_eq!(p.as_deref(), Some(link.as_path()));
        }
    }

    #[test]
    fn destination_inside_the_watch_dir_is_accepted_when_the_rules_keep_out_of_it() {
        let t = tempfile::tempdir().expect("tempdir");
        let src = t.path().join("src");
        std::fs::create_dir_all(src.join("mnt/backup")).expect("mkdir");
        let s = src.to_str().expect("utf8");
        let dst = format!("{s}/mnt/backup/mirror");
        let rules_at = |text: &str| {
            let r = t.path().join("rules");
            std::fs::write(&r, text).expect("rules");
            r.to_str().expect("utf8").to_string()
        };
        // clsync's pattern: the backup dir is never walked.
        for keep_out in ["-d^mnt/backup$\n", "-w^mnt$\n", "-d^mnt/backup/mirror$\n"] {
            let r = rules_at(keep_out);
            let c = parse(&["-W", s, "-D", &dst, "-R", &r])
                .unwrap_or_else(|e| panic!("{keep_out:?}: {e}"));
            assert_eq!(c.destination, Some(Destination::Local(PathBuf::from(&dst))));
        }
        // The rsync modes are held to the same check.
        let err = parse(&["-W", s, "-D", &dst, "-M", "rsyncdirect"]).expect_err("rsync");
        assert!(err.to_string().contains("inside the watch dir"), "{err}");
        // Rules that exclude something else, or only files there, do not.
        for other in ["-d^tmp$\n", "-f^mnt/backup/\n", "-s^mnt/backup$\n"] {
            let r = rules_at(other);
            let err = parse(&["-W", s, "-D", &dst, "-R", &r]).expect_err(other);
            let msg = err.to_string();
            assert!(msg.contains("inside the watch dir"), "{msg}");
            assert!(msg.contains("-d^mnt/backup/mirror$"), "{msg}");
        }
    }

    #[test]
    fn overlap_is_decided_by_device_and_inode() {
        let t = tempfile::tempdir().expect("tempdir");
        let root = t.path().canonicalize().expect("canon");
        let src = root.join("src");
        std::fs::create_dir_all(src.join("a")).expect("mkdir");
        std::fs::create_dir(root.join("other")).expect("mkdir");
        assert_eq!(overlap(&src, &src), Overlap::Same);
        assert_eq!(
            overlap(&src, &src.join("a/missing/dst")),
            Overlap::Inside(b"a/missing/dst".to_vec())
        );
        assert_eq!(overlap(&src, &root), Overlap::Around);
        assert_eq!(overlap(&src, &root.join("other")), Overlap::Apart);
        assert_eq!(overlap(&src, &root.join("missing")), Overlap::Apart);
    }

    #[test]
    fn destination_inside_or_around_watch_dir_is_refused() {
        let t = tempfile::tempdir().expect("tempdir");
        let src = t.path().join("src");
        std::fs::create_dir(&src).expect("mkdir");
        let s = src.to_str().expect("utf8");
        let inside = format!("{s}/sub/dst");
        let err = parse(&["-W", s, "-D", &inside]).expect_err("inside");
        assert!(err.to_string().contains("inside the watch dir"), "{err}");
        let err = parse(&["-W", s, "-D", s]).expect_err("same");
        assert!(err.to_string().contains("is the watch dir"), "{err}");
        let parent = t.path().to_str().expect("utf8");
        let err = parse(&["-W", s, "-D", parent]).expect_err("parent");
        assert!(err.to_string().contains("contains the watch dir"), "{err}");
        assert!(
            !src.join("sub").exists(),
            "validation must not create anything"
        );
    }

    // -- remote handlers: unison and csync2 --
    #[test]
    fn unison_and_csync2_modes_resolve() {
        let t = tempfile::tempdir().expect("tempdir");
        let s = t.path().to_str().expect("utf8");
        let sh = ["-S", "/bin/sh"];
        let c = parse(&["-W", s, "-D", "h:/x", "-M", "unison", sh[0], sh[1]]).expect("unison");
        assert_eq!(c.mode, Mode::Unison);
        assert_eq!(c.destination, Some(Destination::Remote("h:/x".into())));
        assert!(c.ignore_exit.is_empty(), "24 is rsync's, not unison's");
        let c = parse(&["-W", s, "-M", "csync2", sh[0], sh[1]]).expect("csync2 without -D");
        assert_eq!((c.mode, c.destination), (Mode::Csync2, None));
        let e = parse(&["-W", s, "-D", "/d", "-M", "csync2", sh[0], sh[1]]).expect_err("-D");
        assert!(e.to_string().contains("drop -D"), "{e}");
        let e = parse(&["-W", s, "-M", "unison", sh[0], sh[1]]).expect_err("no -D");
        assert!(e.to_string().contains("no destination"), "{e}");
        let e = parse(&["-W", s, "-D", "/d", "-M", "unisn"]).expect_err("typo");
        assert!(
            e.to_string().contains("unison") && e.to_string().contains("csync2"),
            "{e}"
        );
        // -R: said that the tools sync directories whole.
        let rules = t.path().join("rules");
        std::fs::write(&rules, "-f\\.tmp$\n").expect("rules");
        let r = rules.to_str().expect("utf8");
        for (mode, dst, hint) in [
            ("unison", Some("h:/x"), "-ignore"),
            ("csync2", None, "exclude in its config"),
        ] {
            let mut v = vec!["-W", s, "-M", mode, sh[0], sh[1], "-R", r];
            v.extend(dst.iter().flat_map(|d| ["-D", *d]));
            let c = parse(&v).expect(mode);
            assert!(
                c.warnings
                    .iter()
                    .any(|w| w.contains("-R rules choose") && w.contains(hint)),
                "{mode}: {:?}",
                c.warnings
            );
        }
        let c = parse(&["-W", s, "-D", "/d", "-R", r]).expect("mirror");
        assert!(!c.warnings.iter().any(|w| w.contains("-R rules choose")));
    }

    #[test]
    fn mirror_is_the_default_and_rsync_gets_its_defaults() {
        let t = tempfile::tempdir().expect("tempdir");
        let s = t.path().to_str().expect("utf8");
        let d = "/nonexistent-livesync-dst";
        let c = parse(&["-W", s, "-D", d]).expect("ok");
        assert_eq!(c.mode, Mode::Mirror);
        assert_eq!(c.destination, Some(Destination::Local(PathBuf::from(d))));
        let c = parse(&[
            "-W",
            s,
            "-D",
            "host:/x",
            "-M",
            "rsyncdirect",
            "-S",
            "/bin/sh",
        ])
        .expect("ok");
        assert_eq!(c.handler_program, Some(OsString::from("/bin/sh")));
        assert_eq!(c.ignore_exit, vec![24]);
        assert_eq!(
            c.destination,
            Some(Destination::Remote(OsString::from("host:/x")))
        );
        assert!(
            parse(&["-W", s, "-D", "host:/x"]).is_err(),
            "mirror cannot write remote"
        );
        assert!(matches!(
            parse(&["-W", s, "-D", d, "-M", "bogus"]),
            Err(ConfigError::Mode(_))
        ));
    }

    #[test]
    fn missing_or_file_watch_dir_is_refused() {
        let t = tempfile::tempdir().expect("tempdir");
        let f = t.path().join("f");
        std::fs::write(&f, b"").expect("write");
        let err = parse(&["-W", f.to_str().expect("utf8"), "-D", "/x"]).expect_err("file");
        assert!(err.to_string().contains("not a directory"));
        let err = parse(&["-W", "/nonexistent-livesync-src", "-D", "/x"]).expect_err("missing");
        assert!(err.to_string().contains("does not exist"));
    }

    #[test]
    fn handler_program_must_be_runnable() {
        assert!(find_program(OsStr::new("sh")).is_ok());
        assert!(find_program(OsStr::new("/bin/sh")).is_ok());
        let e = find_program(OsStr::new("no-such-livesync-tool")).expect_err("missing");
        assert!(e.to_string().contains("not in PATH"), "{e}");
        let e = find_program(OsStr::new("/etc/passwd")).expect_err("not executable");
        assert!(e.to_string().contains("not an executable"), "{e}");
    }

    #[test]
    fn mount_points_become_rules() {
        let info = b"22 1 0:21 / / rw shared:1 - ext4 /dev/sda rw\n\
            30 22 0:30 / /srv/www/a\\040b rw - tmpfs none rw\n\
            31 22 0:31 / /srv/www/c/d rw - tmpfs none rw\n\
            32 22 0:32 / /srv/wwwx rw - tmpfs none rw\n\
            33 22 0:33 / /srv/www rw - tmpfs none rw\n";
        let pts = mount_points_under(Path::new("/srv/www"), info);
        assert_eq!(pts, [b"a b".to_vec(), b"c/d".to_vec()]);
        let rules = Rules::parse(&mount_rules(&pts, false), "t").expect("rules");
        use crate::rules::{Action, Kind};
        assert!(!rules.permits(b"a b", Kind::Dir, Action::Walk));
        assert!(!rules.permits(b"a b", Kind::Dir, Action::Monitor));
        assert!(rules.permits(b"a b", Kind::Dir, Action::Sync));
        assert!(!rules.permits(b"a b/f", Kind::File, Action::Sync));
        assert!(!rules.permits(b"c/d/e", Kind::Dir, Action::Sync));
        assert!(rules.permits(b"c", Kind::Dir, Action::Walk));
        assert!(rules.permits(b"a bc", Kind::Dir, Action::Walk));
        let rules = Rules::parse(&mount_rules(&pts, true), "t").expect("rules");
        assert!(!rules.permits(b"a b", Kind::Dir, Action::Sync));
        assert!(!rules.permits(b"c/d/x", Kind::File, Action::Sync));
        assert!(rules.permits(b"c/dd", Kind::File, Action::Sync));
        assert_eq!(
            mount_points_under(Path::new("/"), info),
            [
                b"srv/www".to_vec(),
                b"srv/www/a b".to_vec(),
                b"srv/www/c/d".to_vec(),
                b"srv/wwwx".to_vec()
            ]
        );
    }

    #[test]
    fn remote_detection() {
        assert!(is_remote(OsStr::new("host:/p")));
        assert!(is_remote(OsStr::new("rsync://h/m")));
        assert!(!is_remote(OsStr::new("/a:b")));
        assert!(!is_remote(OsStr::new("./a:b")));
    }

    /// A temp tree for config file tests: `src`, `src2`, `dst`, `dst2`, two
    /// rules files, two lists dirs.
    struct Fx {
        t: tempfile::TempDir,
    }

    impl Fx {
        fn new() -> Fx {
            let t = tempfile::tempdir().expect("tempdir");
            for d in ["src", "src2", "lists1", "lists2"] {
                std::fs::create_dir(t.path().join(d)).expect("mkdir");
            }
            for r in ["r1", "r2"] {
                std::fs::write(t.path().join(r), "-f\\.tmp$\n").expect("write rules");
            }
            Fx { t }
        }

        fn p(&self, name: &str) -> String {
            self.t.path().join(name).to_str().expect("utf8").to_string()
        }

        /// Writes `text` as the config file and runs `livesync -H it ARGS`.
        fn run(&self, text: &str, args: &[&str]) -> Result<Config, ConfigError> {
            let conf = self.p("test.conf");
            std::fs::write(&conf, text).expect("write conf");
            let mut v: Vec<&str> = vec!["livesync", "-H", &conf];
            v.extend_from_slice(args);
            Config::from_args_searching(cli::Args::try_parse_from(v).expect("clap"), &[])
        }
    }

    /// One option's precedence case: `file` is the option's line in the
    /// config file, `cli` its command line words.
    struct Case {
        key: &'static str,
        file: String,
        /// The file line when the command line also gives the option (for a
        /// flag: one that unsets it, so the command line visibly wins).
        file_under_cli: Option<String>,
        cli: Vec<String>,
        /// Extra lines the option needs in the file (e.g. a mode).
        extra: &'static str,
        probe: fn(&Config) -> String,
        default: String,
        from_file: String,
        from_cli: String,
    }

    fn outcome(r: Result<Config, ConfigError>, probe: fn(&Config) -> String) -> String {
        match r {
            Ok(c) => probe(&c),
            Err(e) => format!("error: {e}"),
        }
    }

    #[test]
    fn command_line_beats_file_beats_default_for_every_option() {
        let fx = Fx::new();
        let (src, src2) = (fx.p("src"), fx.p("src2"));
        let (dst, dst2) = (fx.p("dst"), fx.p("dst2"));
        // Two jails holding the watch dirs and destinations: the fixture's
        // dir and its parent.
        let jail1 = std::fs::canonicalize(fx.t.path()).expect("canonical");
        let jail2 = jail1.parent().expect("parent").to_path_buf();
        let (jail1, jail2) = (path::display_os(&jail1), path::display_os(&jail2));
        let s = |v: &str| v.to_string();
        let dbg = |v: &dyn std::fmt::Debug| format!("{v:?}");
        let case = |key: &'static str,
                    file: String,
                    cli: &[&str],
                    probe: fn(&Config) -> String,
                    [default, from_file, from_cli]: [String; 3]| Case {
            key,
            file,
            file_under_cli: None,
            cli: cli.iter().map(|a| a.to_string()).collect(),
            extra: "",
            probe,
            default,
            from_file,
            from_cli,
        };
        let cases = vec![
            case(
                "watch-dir",
                format!("watch-dir = {src}"),
                &["-W", &src2],
                |c| path::display_os(&c.watch_dir),
                [
                    s("error: no watch dir: give -W DIR, or set watch-dir in the config file"),
                    src.clone(),
                    src2.clone(),
                ],
            ),
            case(
                "destination-dir",
                format!("destination-dir = {dst}"),
                &["-D", &dst2],
                |c| format!("{:?}", c.destination),
                [
                    s("error: no destination: give -D DIR (-M mirror needs one)"),
                    dbg(&Some(Destination::Local(PathBuf::from(&dst)))),
                    dbg(&Some(Destination::Local(PathBuf::from(&dst2)))),
                ],
            ),
            case(
                "mode",
                s("mode = rsyncdirect"),
                &["-M", "mirror"],
                |c| format!("{:?}", c.mode),
                [s("Mirror"), s("RsyncDirect"), s("Mirror")],
            ),
            Case {
                extra: "mode = rsyncdirect",
                ..case(
                    "sync-handler",
                    s("sync-handler = /bin/true"),
                    &["-S", "/bin/sh"],
                    |c| format!("{:?}", c.handler_program),
                    [
                        s("Some(\"rsync\")"),
                        s("Some(\"/bin/true\")"),
                        s("Some(\"/bin/sh\")"),
                    ],
                )
            },
            case(
                "rules-file",
                format!("rules-file = {}", fx.p("r1")),
                &["-R", &fx.p("r2")],
                |c| format!("{:?}", c.rules_file),
                [
                    s("None"),
                    dbg(&Some(PathBuf::from(fx.p("r1")))),
                    dbg(&Some(PathBuf::from(fx.p("r2")))),
                ],
            ),
            // The command line's value equals the default: value_source, not
            // the value, decides.
            case(
                "delay-collect",
                s("delay-collect = 5"),
                &["-t", "30"],
                |c| format!("{:?}", c.queue.delay),
                [s("30s"), s("5s"), s("30s")],
            ),
            case(
                "delay-collect-bigfile",
                s("delay-collect-bigfile = 60"),
                &["-T", "7"],
                |c| format!("{:?}", c.queue.delay_big),
                [s("1800s"), s("60s"), s("7s")],
            ),
            case(
                "threshold-bigfile",
                s("threshold-bigfile = 0"),
                &["-B", "10"],
                |c| c.queue.big_threshold.to_string(),
                [s("134217728"), s("0"), s("10")],
            ),
            case(
                "delay-sync",
                s("delay-sync = 0.5"),
                &["-w", "3"],
                |c| format!("{:?}", c.queue.interval),
                [s("30s"), s("500ms"), s("3s")],
            ),
            case(
                "retries",
                s("retries = 3"),
                &["-r", "0"],
                |c| c.retries.to_string(),
                [s("0"), s("3"), s("0")],
            ),
            // A repeatable option: the command line's list replaces the file's.
            case(
                "ignore-exitcode",
                s("ignore-exitcode = 23,24"),
                &["-x", "7"],
                |c| format!("{:?}", c.ignore_exit),
                [s("[]"), s("[23, 24]"), s("[7]")],
            ),
            case(
                "label",
                s("label = from-file"),
                &["-l", "from-cli"],
                |c| c.label.clone(),
                [s("nolabel"), s("from-file"), s("from-cli")],
            ),
            case(
                "lists-dir",
                format!("lists-dir = {}", fx.p("lists1")),
                &["-L", &fx.p("lists2")],
                |c| format!("{:?}", c.lists_dir),
                [
                    s("None"),
                    dbg(&Some(PathBuf::from(fx.p("lists1")))),
                    dbg(&Some(PathBuf::from(fx.p("lists2")))),
                ],
            ),
            Case {
                file_under_cli: Some(s("dont-unlink-lists = 0")),
                ..case(
                    "dont-unlink-lists",
                    s("dont-unlink-lists = 1"),
                    &["-U"],
                    |c| c.keep_lists.to_string(),
                    [s("false"), s("true"), s("true")],
                )
            },
            case(
                "debug",
                s("debug = 2"),
                &["-d"],
                |c| c.log_level.to_string(),
                [s("INFO"), s("TRACE"), s("DEBUG")],
            ),
            Case {
                file_under_cli: Some(s("quiet = off")),
                ..case(
                    "quiet",
                    s("quiet = 1"),
                    &["-q"],
                    |c| c.log_level.to_string(),
                    [s("INFO"), s("ERROR"), s("ERROR")],
                )
            },
            case(
                "custom-signals",
                s("custom-signals = 29:t,USR1:t"),
                &["--custom-signals", "28:t"],
                |c| format!("{:?}", c.custom_signals),
                [
                    s("[]"),
                    format!("[(29, \"t\"), ({}, \"t\")]", libc::SIGUSR1),
                    s("[(28, \"t\")]"),
                ],
            ),
            case(
                "pid-file",
                format!("pid-file = {}", fx.p("a.pid")),
                &["-z", &fx.p("b.pid")],
                |c| format!("{:?}", c.pid_file),
                [
                    s("None"),
                    dbg(&Some(PathBuf::from(fx.p("a.pid")))),
                    dbg(&Some(PathBuf::from(fx.p("b.pid")))),
                ],
            ),
            case(
                "status-file",
                format!("status-file = {}", fx.p("a.st")),
                &["--status-file", &fx.p("b.st")],
                |c| format!("{:?}", c.status_file),
                [
                    s("None"),
                    dbg(&Some(PathBuf::from(fx.p("a.st")))),
                    dbg(&Some(PathBuf::from(fx.p("b.st")))),
                ],
            ),
            case(
                "dump-dir",
                format!("dump-dir = {}", fx.p("lists1")),
                &["--dump-dir", &fx.p("lists2")],
                |c| format!("{:?}", c.dump_dir),
                [
                    s("None"),
                    dbg(&Some(PathBuf::from(fx.p("lists1")))),
                    dbg(&Some(PathBuf::from(fx.p("lists2")))),
                ],
            ),
            case(
                "socket",
                format!("socket = {}", fx.p("a.sock")),
                &["--socket", &fx.p("b.sock")],
                |c| format!("{:?}", c.socket),
                [
                    s("None"),
                    dbg(&Some(PathBuf::from(fx.p("a.sock")))),
                    dbg(&Some(PathBuf::from(fx.p("b.sock")))),
                ],
            ),
            case(
                "socket-own",
                s("socket-own = 0:0"),
                &["--socket-own", "65534:65534"],
                |c| format!("{:?}", c.socket_owner),
                [s("None"), s("Some((0, 0))"), s("Some((65534, 65534))")],
            ),
            case(
                "socket-mod",
                s("socket-mod = 660"),
                &["--socket-mod", "640"],
                |c| format!("{:o}", c.socket_mode),
                [s("600"), s("660"), s("640")],
            ),
            case(
                "standby-file",
                format!("standby-file = {}", fx.p("a.sb")),
                &["--standby-file", &fx.p("b.sb")],
                |c| format!("{:?}", c.standby_file),
                [
                    s("None"),
                    dbg(&Some(PathBuf::from(fx.p("a.sb")))),
                    dbg(&Some(PathBuf::from(fx.p("b.sb")))),
                ],
            ),
            Case {
                file_under_cli: Some(s("exit-on-no-events = 0")),
                ..case(
                    "exit-on-no-events",
                    s("exit-on-no-events = 1"),
                    &["--exit-on-no-events"],
                    |c| c.exit_on_no_events.to_string(),
                    [s("false"), s("true"), s("true")],
                )
            },
            Case {
                file_under_cli: Some(s("only-initialsync = 0")),
                ..case(
                    "only-initialsync",
                    s("only-initialsync = 1"),
                    &["--only-initialsync"],
                    |c| c.only_initialsync.to_string(),
                    [s("false"), s("true"), s("true")],
                )
            },
            Case {
                file_under_cli: Some(s("skip-initialsync = 0")),
                ..case(
                    "skip-initialsync",
                    s("skip-initialsync = 1"),
                    &["--skip-initialsync"],
                    |c| c.skip_initialsync.to_string(),
                    [s("false"), s("true"), s("true")],
                )
            },
            Case {
                file_under_cli: Some(s("sync-on-quit = 0")),
                ..case(
                    "sync-on-quit",
                    s("sync-on-quit = 1"),
                    &["--sync-on-quit"],
                    |c| c.sync_on_quit.to_string(),
                    [s("false"), s("true"), s("true")],
                )
            },
            Case {
                file_under_cli: Some(s("ignore-failures = 0")),
                ..case(
                    "ignore-failures",
                    s("ignore-failures = 1"),
                    &["--ignore-failures"],
                    |c| c.ignore_failures.to_string(),
                    [s("false"), s("true"), s("true")],
                )
            },
            case(
                "max-iterations",
                s("max-iterations = 20"),
                &["--max-iterations", "3"],
                |c| c.max_iterations.to_string(),
                [s("0"), s("20"), s("3")],
            ),
            case(
                "pre-exit-hook",
                s("pre-exit-hook = /bin/true"),
                &["--pre-exit-hook", "/bin/false"],
                |c| format!("{:?}", c.pre_exit_hook),
                [
                    s("None"),
                    s("Some(\"/bin/true\")"),
                    s("Some(\"/bin/false\")"),
                ],
            ),
            case(
                "exit-hook",
                s("exit-hook = /bin/true"),
                &["--exit-hook", "/bin/false"],
                |c| format!("{:?}", c.exit_hook),
                [
                    s("None"),
                    s("Some(\"/bin/true\")"),
                    s("Some(\"/bin/false\")"),
                ],
            ),
            case(
                "timeout-sync",
                s("timeout-sync = 0"),
                &["-k", "5"],
                |c| format!("{:?}", c.timeout_sync),
                [s("Some(86400s)"), s("None"), s("Some(5s)")],
            ),
            Case {
                file_under_cli: Some(s("background = 1")),
                ..case(
                    "background",
                    s("background = 1"),
                    &["-b0"],
                    |c| c.background.to_string(),
                    [s("false"), s("true"), s("false")],
                )
            },
            case(
                "output",
                s("output = syslog"),
                &["-Y", "stdout"],
                |c| format!("{:?}", c.output),
                [s("Stderr"), s("Syslog"), s("Stdout")],
            ),
            Case {
                file_under_cli: Some(s("one-file-system = 0")),
                ..case(
                    "one-file-system",
                    s("one-file-system = 1"),
                    &["--one-file-system"],
                    |c| c.one_file_system.to_string(),
                    [s("false"), s("true"), s("true")],
                )
            },
            Case {
                file_under_cli: Some(s("exclude-mount-points = 0")),
                ..case(
                    "exclude-mount-points",
                    s("exclude-mount-points = 1"),
                    &["-X"],
                    |c| c.exclude_mount_points.to_string(),
                    [s("false"), s("true"), s("true")],
                )
            },
            case(
                "modification-signature",
                s("modification-signature = uid,gid"),
                &["--modification-signature", "size"],
                |c| format!("{:?}", c.modification_signature),
                [s("None"), s("Some([Uid, Gid])"), s("Some([Size])")],
            ),
            case(
                "cancel-syscalls",
                s("cancel-syscalls = mon_stat"),
                &["--cancel-syscalls="],
                |c| format!("{} {}", c.cancel_mon_stat, c.queue.big_threshold),
                [s("false 134217728"), s("true 0"), s("false 134217728")],
            ),
            case(
                "threading",
                s("threading = full"),
                &["-p", "safe"],
                |c| format!("{:?}", c.threading),
                [s("Off"), s("Full"), s("Safe")],
            ),
            // Operations: metrics, syslog socket, progress.
            case(
                "metrics-file",
                format!("metrics-file = {}", fx.p("a.prom")),
                &["--metrics-file", &fx.p("b.prom")],
                |c| format!("{:?}", c.metrics_file),
                [
                    s("None"),
                    dbg(&Some(PathBuf::from(fx.p("a.prom")))),
                    dbg(&Some(PathBuf::from(fx.p("b.prom")))),
                ],
            ),
            case(
                "syslog-socket",
                s("syslog-socket = /run/a.sock"),
                &["--syslog-socket", "/run/b.sock"],
                |c| format!("{:?}", c.syslog_socket),
                [
                    s("\"/dev/log\""),
                    s("\"/run/a.sock\""),
                    s("\"/run/b.sock\""),
                ],
            ),
            case(
                "progress",
                s("progress = never"),
                &["--progress", "auto"],
                |c| format!("{:?}", c.progress),
                [s("Auto"), s("Never"), s("Auto")],
            ),
            // ---- privileges and hardening ----
            case(
                "uid",
                s("uid = 1"),
                &["-u", "nobody"],
                |c| format!("{:?}", c.privileges.uid),
                [s("None"), s("Some(1)"), s("Some(65534)")],
            ),
            case(
                "gid",
                s("gid = 1"),
                &["-g", "2"],
                |c| format!("{:?}", c.privileges.gid),
                [s("None"), s("Some(1)"), s("Some(2)")],
            ),
            case(
                "privileged-uid",
                s("privileged-uid = 1"),
                &["--privileged-uid", "0"],
                |c| format!("{:?}", c.privileges.privileged_uid),
                [s("None"), s("Some(1)"), s("Some(0)")],
            ),
            case(
                "privileged-gid",
                s("privileged-gid = 1"),
                &["--privileged-gid", "0"],
                |c| format!("{:?}", c.privileges.privileged_gid),
                [s("None"), s("Some(1)"), s("Some(0)")],
            ),
            case(
                "sync-handler-uid",
                s("sync-handler-uid = 1"),
                &["--sync-handler-uid", "2"],
                |c| format!("{:?}", c.privileges.handler_uid),
                [s("None"), s("Some(1)"), s("Some(2)")],
            ),
            case(
                "sync-handler-gid",
                s("sync-handler-gid = 1"),
                &["--sync-handler-gid", "2"],
                |c| format!("{:?}", c.privileges.handler_gid),
                [s("None"), s("Some(1)"), s("Some(2)")],
            ),
            case(
                "preserve-capabilities",
                s("preserve-capabilities = CAP_KILL"),
                &["-C", "setuid,setgid"],
                |c| format!("{:?}", c.privileges.preserve),
                [s("[]"), s("[CAP_KILL]"), s("[CAP_SETUID, CAP_SETGID]")],
            ),
            case(
                "inherit-capabilities",
                s("inherit-capabilities = permitted"),
                &["--inherit-capabilities", "dont-touch"],
                |c| format!("{:?}", c.privileges.inherit),
                [s("Empty"), s("Permitted"), s("DontTouch")],
            ),
            Case {
                file_under_cli: Some(s("permit-new-privs = 0")),
                ..case(
                    "permit-new-privs",
                    s("permit-new-privs = 1"),
                    &["--permit-new-privs"],
                    |c| c.privileges.no_new_privs.to_string(),
                    [s("true"), s("false"), s("false")],
                )
            },
            Case {
                extra: "mode = rsyncdirect",
                ..case(
                    "splitting",
                    s("splitting = process"),
                    &["--splitting", "off"],
                    |c| format!("{:?}", c.privileges.splitting),
                    [s("Off"), s("Process"), s("Off")],
                )
            },
            Case {
                extra: "mode = rsyncdirect\nsplitting = process",
                file_under_cli: Some(s("check-execvp-arguments = 0")),
                ..case(
                    "check-execvp-arguments",
                    s("check-execvp-arguments = 1"),
                    &["--check-execvp-arguments"],
                    |c| c.privileges.check_execvp.to_string(),
                    [s("false"), s("true"), s("true")],
                )
            },
            Case {
                extra: "mode = rsyncdirect",
                file_under_cli: Some(s("secure-splitting = 0")),
                ..case(
                    "secure-splitting",
                    s("secure-splitting = 1"),
                    &["--secure-splitting"],
                    |c| {
                        let p = &c.privileges;
                        format!("{:?} {} {}", p.splitting, p.check_execvp, p.seccomp)
                    },
                    [
                        s("Off false false"),
                        s("Process true true"),
                        s("Process true true"),
                    ],
                )
            },
            Case {
                extra: "mode = rsyncdirect\nsplitting = process",
                file_under_cli: Some(s("seccomp-filter = 0")),
                ..case(
                    "seccomp-filter",
                    s("seccomp-filter = 1"),
                    &["--seccomp-filter"],
                    |c| c.privileges.seccomp.to_string(),
                    [s("false"), s("true"), s("true")],
                )
            },
            case(
                "chroot",
                format!("chroot = {jail1}"),
                &["--chroot", &jail2],
                |c| {
                    c.privileges
                        .jail
                        .as_ref()
                        .map_or("none".to_string(), |j| path::display_os(j.root()))
                },
                [s("none"), jail1.clone(), jail2.clone()],
            ),
            case(
                "pivot-root",
                s("pivot-root = auto-ro"),
                &["--pivot-root", "off"],
                |_| "ok".to_string(),
                [
                    s("ok"),
                    s("error: --pivot-root=auto-ro needs --chroot DIR (the new root); add it or drop --pivot-root"),
                    s("ok"),
                ],
            ),
            case(
                "detach-network",
                s("detach-network = everywhere"),
                &["--detach-network", "non-privileged"],
                |c| format!("{:?}", c.privileges.detach_network),
                [s("Off"), s("Everywhere"), s("NonPrivileged")],
            ),
            Case {
                file_under_cli: Some(s("detach-ipc = 0")),
                ..case(
                    "detach-ipc",
                    s("detach-ipc = 1"),
                    &["--detach-ipc"],
                    |c| c.privileges.detach_ipc.to_string(),
                    [s("false"), s("true"), s("true")],
                )
            },
            Case {
                file_under_cli: Some(s("detach-miscellanea = 0")),
                ..case(
                    "detach-miscellanea",
                    s("detach-miscellanea = 1"),
                    &["--detach-miscellanea"],
                    |c| c.privileges.detach_misc.to_string(),
                    [s("false"), s("true"), s("true")],
                )
            },
            Case {
                file_under_cli: Some(s("forbid-devices = 0")),
                ..case(
                    "forbid-devices",
                    s("forbid-devices = 1"),
                    &["--forbid-devices"],
                    |c| c.privileges.forbid_devices.to_string(),
                    [s("false"), s("true"), s("true")],
                )
            },
            // Event backends.
            case(
                "monitor",
                s("monitor = poll"),
                &["--monitor", "notify"],
                |c| format!("{:?}", c.monitor),
                [
                    format!("{:?}", crate::monitor::MonitorKind::platform_default()),
                    s("Poll"),
                    s("Notify"),
                ],
            ),
            case(
                "poll-interval",
                s("poll-interval = 0.25"),
                &["--poll-interval", "2"],
                |c| format!("{:?}", c.monitor_options.poll_interval),
                [s("1s"), s("250ms"), s("2s")],
            ),
            // The handler arguments: the command line's `--` replaces the file's.
            case(
                "--",
                s("-- = -a 'b c'"),
                &["--", "x"],
                |c| format!("{:?}", c.handler_args),
                [s("[]"), s("[\"-a\", \"b c\"]"), s("[\"x\"]")],
            ),
            // Parallel handler runs: --threads counts with -p safe|full only.
            case(
                "threads",
                s("threading = safe\nthreads = 3"),
                &["--threads", "5"],
                |c| c.threads.to_string(),
                [s("1"), s("3"), s("5")],
            ),
            // ---- clsync's command modes ----
            Case {
                file_under_cli: Some(s("synclist-simplify = 0")),
                ..case(
                    "synclist-simplify",
                    s("synclist-simplify = 1"),
                    &["--synclist-simplify"],
                    |c| c.synclist_simplify.to_string(),
                    [s("false"), s("true"), s("true")],
                )
            },
            Case {
                file_under_cli: Some(s("have-recursive-sync = 0")),
                ..case(
                    "have-recursive-sync",
                    s("have-recursive-sync = 1"),
                    &["--have-recursive-sync"],
                    |c| c.have_recursive_sync.to_string(),
                    [s("false"), s("true"), s("true")],
                )
            },
            case(
                "rsync-inclimit",
                s("rsync-inclimit = 5"),
                &["--rsync-inclimit", "0"],
                |c| c.rsync_inclimit.to_string(),
                [s("20000"), s("5"), s("0")],
            ),
            Case {
                file_under_cli: Some(s("rsync-prefer-include = 0")),
                ..case(
                    "rsync-prefer-include",
                    s("rsync-prefer-include = 1"),
                    &["--rsync-prefer-include"],
                    |c| c.rsync_prefer_include.to_string(),
                    [s("false"), s("true"), s("true")],
                )
            },
            Case {
                file_under_cli: Some(s("full-initialsync = 0")),
                ..case(
                    "full-initialsync",
                    s("full-initialsync = 1"),
                    &["-F"],
                    |c| c.full_initialsync.to_string(),
                    [s("false"), s("true"), s("true")],
                )
            },
            Case {
                file_under_cli: Some(s("ignore-hook-failures = 0")),
                ..case(
                    "ignore-hook-failures",
                    s("ignore-hook-failures = 1"),
                    &["--ignore-hook-failures"],
                    |c| c.ignore_hook_failures.to_string(),
                    [s("false"), s("true"), s("true")],
                )
            },
            Case {
                file_under_cli: Some(s("xattrs = 0")),
                ..case(
                    "xattrs",
                    s("xattrs = 1"),
                    &["--xattrs"],
                    |c| c.xattrs.to_string(),
                    [s("false"), s("true"), s("true")],
                )
            },
            Case {
                file_under_cli: Some(s("acls = 0")),
                ..case(
                    "acls",
                    s("acls = 1"),
                    &["--acls"],
                    |c| c.acls.to_string(),
                    [s("false"), s("true"), s("true")],
                )
            },
            // --exclude/--include: rsync-style globs as rules lines.
            case(
                "exclude",
                s("exclude = *.tmp, /a/"),
                &["--exclude", "*.log"],
                |c| String::from_utf8_lossy(&c.rules.to_text()).into_owned(),
                [
                    s(""),
                    s("-*(^|/)[^/]*\\x2Etmp$\n-d^a$\n"),
                    s("-*(^|/)[^/]*\\x2Elog$\n"),
                ],
            ),
            case(
                "include",
                s("include = *.tmp"),
                &["--include", "*.log"],
                |c| String::from_utf8_lossy(&c.rules.to_text()).into_owned(),
                [
                    s(""),
                    s("+*(^|/)[^/]*\\x2Etmp$\n"),
                    s("+*(^|/)[^/]*\\x2Elog$\n"),
                ],
            ),
            Case {
                file_under_cli: Some(s("dry-run = 0")),
                ..case(
                    "dry-run",
                    s("dry-run = 1"),
                    &["--dry-run"],
                    |c| c.dry_run.to_string(),
                    [s("false"), s("true"), s("true")],
                )
            },
        ];
        let base = |skip: &str| {
            let mut lines = String::new();
            if skip != "watch-dir" {
                lines += &format!("watch-dir = {src}\n");
            }
            if skip != "destination-dir" {
                lines += &format!("destination-dir = {dst}\n");
            }
            lines
        };
        for c in &cases {
            let block = |line: &str| format!("[t]\n{}{}\n{line}\n", base(c.key), c.extra);
            let k = ["-K", "t"];
            let got = outcome(fx.run(&block(""), &k), c.probe);
            assert_eq!(got, c.default, "{}: default", c.key);
            let got = outcome(fx.run(&block(&c.file), &k), c.probe);
            assert_eq!(got, c.from_file, "{}: the file beats the default", c.key);
            let mut args: Vec<&str> = k.to_vec();
            args.extend(c.cli.iter().map(String::as_str));
            let under = c.file_under_cli.as_ref().unwrap_or(&c.file);
            let got = outcome(fx.run(&block(under), &args), c.probe);
            assert_eq!(
                got, c.from_cli,
                "{}: the command line beats the file",
                c.key
            );
        }
        // Every option is covered here, or in its own test below.
        let covered: Vec<&str> = cases.iter().map(|c| c.key).collect();
        let own_tests = ["config-file", "config-block", "config-block-inherits"];
        for arg in cli::Args::command().get_arguments() {
            let name = arg.get_long().unwrap_or("--");
            assert!(
                covered.contains(&name) || own_tests.contains(&name),
                "option {name} has no precedence case"
            );
        }
    }

    const BLOCKS: &str = "\
[one]
config-block-inherits = dirs
label = one
[two]
config-block-inherits = dirs
label = two
[t]
config-block-inherits = one
";

    /// `text` after a block [dirs] that sets the watch dir and destination.
    fn with_dirs(fx: &Fx, text: &str) -> String {
        format!(
            "[dirs]\nwatch-dir = {}\ndestination-dir = {}\n{text}",
            fx.p("src"),
            fx.p("dst"),
        )
    }

    #[test]
    fn config_block_and_its_parent_from_the_command_line() {
        let fx = Fx::new();
        let text = with_dirs(&fx, BLOCKS);
        let label = |args: &[&str]| fx.run(&text, args).map(|c| c.label);
        assert_eq!(label(&["-K", "t"]).expect("t"), "one");
        assert_eq!(label(&["-K", "two"]).expect("two"), "two");
        assert_eq!(
            label(&["-K", "t", "--config-block-inherits", "two"]).expect("t→two"),
            "two"
        );
        let c = fx.run(&text, &["-K", "two"]).expect("ok");
        assert_eq!(c.config_block.as_deref(), Some("two"));
        assert_eq!(c.config_file, Some(PathBuf::from(fx.p("test.conf"))));
        let e = fx.run(&text, &["-K", "three"]).expect_err("missing");
        assert!(matches!(e, ConfigError::File(_)), "{e}");
        assert!(e.to_string().contains("has no block [three]"), "{e}");
        // With -H, a missing [default] is an error too.
        let e = fx.run(&text, &[]).expect_err("no default");
        assert!(e.to_string().contains("has no block [default]"), "{e}");
    }

    #[test]
    fn config_file_flag_reads_or_refuses() {
        let fx = Fx::new();
        let missing = fx.p("missing.conf");
        let e = Config::from_args_searching(
            cli::Args::try_parse_from(["livesync", "-H", &missing]).expect("clap"),
            &[],
        )
        .expect_err("missing");
        assert!(matches!(e, ConfigError::File(_)), "{e}");
        assert!(
            e.to_string().contains("missing.conf: cannot read it"),
            "{e}"
        );
        let e = fx.run(
            "[default]\nwatch-dir = /nonexistent-livesync-src\n",
            &["-D", "/x"],
        );
        let e = e.expect_err("bad watch dir from the file");
        assert!(
            e.to_string()
                .contains("/nonexistent-livesync-src: does not exist"),
            "{e}"
        );
        let e = fx
            .run("[default]\n\ndelay-sync = later\n", &[])
            .expect_err("bad");
        assert!(
            e.to_string()
                .starts_with(&format!("{}:3: delay-sync = later", fx.p("test.conf"))),
            "{e}"
        );
    }

    #[test]
    fn default_config_files_are_searched_unless_h_is_given() {
        let fx = Fx::new();
        let home = fx.p("home.conf");
        let etc = fx.p("etc.conf");
        let absent = fx.p("absent.conf");
        let dirs = format!(
            "watch-dir = {}\ndestination-dir = {}\n",
            fx.p("src"),
            fx.p("dst")
        );
        std::fs::write(&home, format!("[default]\n{dirs}label = home \n")).expect("write");
        std::fs::write(&etc, format!("[default]\n{dirs}label = etc\n")).expect("write");
        let search = [
            PathBuf::from(&absent),
            PathBuf::from(&home),
            PathBuf::from(&etc),
        ];
        let run = |args: &[&str]| {
            let mut v = vec!["livesync"];
            v.extend_from_slice(args);
            Config::from_args_searching(cli::Args::try_parse_from(v).expect("clap"), &search)
        };
        let c = run(&[]).expect("home");
        assert_eq!(
            c.label, "home",
            "the first readable file is the only one read"
        );
        assert_eq!(c.config_file, Some(PathBuf::from(&home)));
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(
            c.warnings[0].starts_with(&format!("{home}:4: ")),
            "{:?}",
            c.warnings
        );
        let c = run(&["-H", &etc]).expect("etc");
        assert_eq!(c.label, "etc", "-H replaces the search");
        let e = run(&["-H", "/NULL/"]).expect_err("nothing read");
        assert!(e.to_string().contains("no watch dir"), "{e}");
        let c = run(&["-H", "/NULL/", "-W", &fx.p("src"), "-D", "/x"]).expect("null");
        assert_eq!((c.label.as_str(), c.config_file), ("nolabel", None));
        // A default file without the block is passed over, with a warning.
        std::fs::write(&home, "[other]\nlabel = x\n").expect("write");
        let c = run(&["-W", &fx.p("src"), "-D", "/x"]).expect("no [default]");
        assert_eq!(c.label, "nolabel");
        assert!(
            c.warnings.iter().any(|w| w.contains("no [default] block")),
            "{:?}",
            c.warnings
        );
        // ... unless -K asked for it.
        let e = run(&["-K", "mine"]).expect_err("-K");
        assert!(e.to_string().contains("has no block [mine]"), "{e}");
        // -K with no file at all: a warning, and the command line is used
        // alone (as clsync does); with -H /NULL/: another warning.
        let c = Config::from_args_searching(
            cli::Args::try_parse_from(["livesync", "-K", "mine", "-W", &fx.p("src"), "-D", "/x"])
                .expect("clap"),
            &[PathBuf::from(&absent)],
        )
        .expect("-K without a file goes on");
        assert!(
            c.warnings.iter().any(|w| w.contains(&format!(
                "-K mine: no config file was found (tried {absent}); going on with the command line alone"
            ))),
            "{:?}",
            c.warnings
        );
        assert_eq!(c.config_file, None);
        let c = run(&["-H", "/NULL/", "-K", "mine", "-W", &fx.p("src"), "-D", "/x"]).expect("null");
        assert!(
            c.warnings
                .iter()
                .any(|w| w.contains("no effect with -H /NULL/")),
            "{:?}",
            c.warnings
        );
        // A default file that is read but broken is an error.
        std::fs::write(&home, "[default]\nlabel\n").expect("write");
        let e = run(&[]).expect_err("broken");
        assert!(e.to_string().starts_with(&format!("{home}:2: ")), "{e}");
    }

    #[test]
    fn globs_keep_their_order_in_front_of_the_rules_file() {
        let fx = Fx::new();
        let (src, r1) = (fx.p("src"), fx.p("r1"));
        let c = Config::from_args_searching(
            cli::Args::try_parse_from([
                "livesync",
                "-W",
                &src,
                "-D",
                "/x",
                "-R",
                &r1,
                "--exclude",
                "secret.c",
                "--include",
                "*.c",
                "--exclude=*",
            ])
            .expect("clap"),
            &[],
        )
        .expect("config");
        let file = |p: &str| {
            c.rules.permits(
                p.as_bytes(),
                crate::rules::Kind::File,
                crate::rules::Action::Sync,
            )
        };
        assert!(file("a.c") && file("d/b.c"));
        assert!(!file("secret.c") && !file("a.h"));
        // The rules file's own rule comes after the globs.
        assert_eq!(c.rules.len(), 4);
        assert!(String::from_utf8_lossy(&c.rules.to_text()).ends_with("-f\\.tmp$\n"));
        // A glob that names nothing is refused, naming the option.
        let e = Config::from_args_searching(
            cli::Args::try_parse_from(["livesync", "-W", &src, "-D", "/x", "--include", "/"])
                .expect("clap"),
            &[],
        )
        .expect_err("empty glob");
        assert!(
            e.to_string()
                .starts_with("--include /: the glob names no path"),
            "{e}"
        );
    }

    #[test]
    fn background_logs_to_syslog_unless_told_otherwise() {
        let fx = Fx::new();
        let src = fx.p("src");
        let parse = |extra: &[&str]| {
            let mut v = vec!["livesync", "-W", &src, "-D", "/x"];
            v.extend_from_slice(extra);
            Config::from_args_searching(cli::Args::try_parse_from(v).expect("clap"), &[])
                .expect("config")
        };
        let c = parse(&["-b"]);
        assert_eq!(c.output, Output::Syslog);
        assert!(
            c.warnings.iter().any(|w| w.starts_with("-b: once livesync is in the background stderr is /dev/null, so log lines go to syslog (/dev/log)")),
            "{:?}",
            c.warnings
        );
        let c = parse(&["-b", "-Y", "stderr"]);
        assert_eq!(c.output, Output::Stderr);
        assert!(
            c.warnings
                .iter()
                .any(|w| w.contains("every later log line is lost; use -Y syslog")),
            "{:?}",
            c.warnings
        );
        for quiet in [&["-b", "-Y", "syslog"][..], &["-Y", "stderr"], &[]] {
            let c = parse(quiet);
            assert!(
                !c.warnings.iter().any(|w| w.contains("-b")),
                "{quiet:?}: {:?}",
                c.warnings
            );
        }
        // --dry-run is the built-in mirror's.
        let e = Config::from_args_searching(
            cli::Args::try_parse_from([
                "livesync",
                "-W",
                &src,
                "-D",
                "/x",
                "-M",
                "rsyncdirect",
                "-S",
                "/bin/true",
                "--dry-run",
            ])
            .expect("clap"),
            &[],
        )
        .expect_err("dry run with rsync");
        assert!(
            e.to_string()
                .starts_with("--dry-run works with the built-in mirror only"),
            "{e}"
        );
    }

    #[test]
    fn command_line_values_reach_file_references() {
        let fx = Fx::new();
        let text = format!(
            "[default]\nwatch-dir = {}\ndestination-dir = {}/%label%\n",
            fx.p("src"),
            fx.p("backups")
        );
        let c = fx.run(&text, &["-l", "web"]).expect("ok");
        assert_eq!(
            c.destination,
            Some(Destination::Local(PathBuf::from(fx.p("backups/web"))))
        );
    }

    #[test]
    fn initial_handler_args_and_custom_signal_blocks() {
        let fx = Fx::new();
        let text = with_dirs(&fx, "[t]\nconfig-block-inherits = dirs\n--- = -r --init\n");
        let c = fx.run(&text, &["-K", "t"]).expect("ok");
        assert_eq!(
            c.initial_handler_args,
            vec![OsString::from("-r"), OsString::from("--init")]
        );
        assert!(c.handler_args.is_empty());
        let c = fx
            .run(
                &text,
                &["-K", "t", "--custom-signals", "29:dirs,28:t,0,27:t"],
            )
            .expect("signals");
        assert_eq!(c.custom_signals, vec![(27, "t".to_string())]);
        let e = fx
            .run(&text, &["-K", "t", "--custom-signals", "29:nope"])
            .expect_err("missing block");
        assert!(
            e.to_string()
                .contains("signal 29 names config block [nope]"),
            "{e}"
        );
        let e = Config::from_args_searching(
            cli::Args::try_parse_from(["livesync", "-H", "/NULL/", "--custom-signals", "29:x"])
                .expect("clap"),
            &[],
        )
        .expect_err("no file");
        assert!(e.to_string().contains("no config file was read"), "{e}");
    }
}
