//! The raw command line, as clap parses it, with clsync's spellings.
//!
//! These are the user's words, unvalidated; [`super::Config::from_args`]
//! merges the config file under them and turns them into resolved settings.
//! Besides the typed fields, [`Args::given`] records which options were given
//! on the command line and their raw values ([`CommandLine`]), so that the
//! command line can beat the config file option by option, and the order of
//! `--include`/`--exclude` (the first glob that matches decides). Nothing
//! here touches the filesystem.
//!
//! This file is the one clap derive struct, [`Args`]; around it live the
//! help texts and `-M`'s names (`help`), [`CommandLine`] and the usage
//! error line (`command_line`), and the `--custom-signals` and
//! `--poll-interval` parsers (`signals`), re-exported here.

use clap::{ArgAction, Parser};
use std::ffi::OsString;
use std::path::PathBuf;

mod command_line;
mod help;
mod signals;

pub use command_line::{usage_error_line, CommandLine, HANDLER_ARGS};
pub use help::{EXAMPLES, MODES};
pub use signals::{fold_custom_signals, parse_custom_signals, SignalEntry, SignalSpec};

use help::{after_long_help, ModeName};
use signals::parse_poll_interval;

/// livesync: mirror a directory tree live, on kernel change notifications.
#[derive(Debug, Parser)]
#[command(
    name = "livesync",
    version,
    about = "Mirror a directory tree live: kernel change notifications, delay windows, regex rules; a built-in mirror, rsync, unison, csync2 or any command syncs",
    after_long_help = after_long_help(),
    after_help = "Subcommands: status, resync, pause, resume, metrics, ctl (livesync help NAME).\n\
See --help for examples, rules, subcommands and exit codes; man livesync for the reference.",
    max_term_width = 100
)]
pub struct Args {
    /// What was given on the command line itself (filled from clap's
    /// matches). It must stay the FIRST field: the derive builds fields in
    /// order and removes each option's values from the matches as it goes.
    #[command(flatten)]
    pub given: CommandLine,

    /// Directory to watch and mirror (or `watch-dir` in the config file).
    #[arg(
        short = 'W',
        long = "watch-dir",
        value_name = "DIR",
        help_heading = "Where"
    )]
    pub watch_dir: Option<PathBuf>,

    /// Destination: a local directory (created if missing), or for rsync
    /// modes also `host:path` or `rsync://host/module/path` (for unison
    /// `host:path` or `ssh://host//path`; csync2 takes none).
    #[arg(
        short = 'D',
        long = "destination-dir",
        value_name = "DEST",
        help_heading = "Where"
    )]
    pub destination: Option<OsString>,

    /// Sync handler mode: what syncs each batch (default: `mirror`, the
    /// built-in engine; clsync's modes run the -S program or load it).
    #[arg(
        short = 'M',
        long = "mode",
        value_name = "MODE",
        value_parser = ModeName,
        help_heading = "How"
    )]
    pub mode: Option<String>,

    /// Sync handler program: for rsyncdirect the rsync binary (default
    /// `rsync` from PATH), for unison and csync2 their binary (default
    /// `unison` / `csync2` from PATH), for the command modes the program to
    /// run and for so/rsyncso the shared object to load (required there).
    #[arg(
        short = 'S',
        long = "sync-handler",
        value_name = "PROGRAM",
        help_heading = "How"
    )]
    pub sync_handler: Option<OsString>,

    /// Rules file: one `[+-][fdwmsW*]regex` rule per line.
    #[arg(
        short = 'R',
        long = "rules-file",
        value_name = "FILE",
        help_heading = "How"
    )]
    pub rules_file: Option<PathBuf>,

    /// Copy extended attributes (rsync's -X): `user.*`, and as root every
    /// namespace but `system.*`. Off by default, as in clsync's rsync
    /// arguments. The built-in mirror copies them; rsync modes pass -X
    /// (in a `--` template, through %RSYNC-ARGS%).
    #[arg(long = "xattrs", help_heading = "How")]
    pub xattrs: bool,

    /// Copy POSIX ACLs (rsync's -A): the access ACL, and a directory's
    /// default ACL. Off by default, as in clsync's rsync arguments. The
    /// built-in mirror copies them; rsync modes pass -A (in a `--`
    /// template, through %RSYNC-ARGS%).
    #[arg(long = "acls", help_heading = "How")]
    pub acls: bool,

    /// rsync-style glob of paths to leave out (repeatable; with --include,
    /// the first that matches decides): `*` and `?` stay within one path
    /// component, `**` crosses `/`, a leading `/` anchors at the watch dir,
    /// a trailing `/` matches directories only; without a `/` the glob
    /// matches the last component. Put in front of the -R rules.
    #[arg(long = "exclude", value_name = "GLOB", action = ArgAction::Append, help_heading = "How")]
    pub exclude: Vec<OsString>,

    /// rsync-style glob of paths to keep even where a later --exclude (or
    /// rule) would leave them out (repeatable; see --exclude).
    #[arg(long = "include", value_name = "GLOB", action = ArgAction::Append, help_heading = "How")]
    pub include: Vec<OsString>,

    /// Built-in mirror: log every operation it would do (copy, rename,
    /// delete, chmod, …) and write nothing to the destination.
    #[arg(long = "dry-run", help_heading = "How")]
    pub dry_run: bool,

    /// Seconds to collect events about ordinary files before syncing
    /// (fractions allowed).
    #[arg(
        short = 't',
        long = "delay-collect",
        allow_negative_numbers = true,
        value_name = "SECS",
        default_value = "30",
        help_heading = "Timing"
    )]
    pub delay_collect: f64,

    /// Seconds to collect events about big files (see -B).
    #[arg(
        short = 'T',
        long = "delay-collect-bigfile",
        allow_negative_numbers = true,
        value_name = "SECS",
        default_value = "1800",
        help_heading = "Timing"
    )]
    pub delay_collect_bigfile: f64,

    /// Size in bytes above which a file is "big" and waits -T instead of
    /// -t; 0 turns big-file detection off.
    #[arg(
        short = 'B',
        long = "threshold-bigfile",
        allow_negative_numbers = true,
        value_name = "BYTES",
        default_value = "134217728",
        help_heading = "Timing"
    )]
    pub threshold_bigfile: u64,

    /// Minimal seconds between the end of one sync and the start of the
    /// next.
    #[arg(
        short = 'w',
        long = "delay-sync",
        allow_negative_numbers = true,
        value_name = "SECS",
        default_value = "30",
        help_heading = "Timing"
    )]
    pub delay_sync: f64,

    /// How many times a batch is tried before livesync gives up and exits
    /// (0 = retry forever, with backoff).
    #[arg(
        short = 'r',
        long = "retries",
        allow_negative_numbers = true,
        value_name = "N",
        default_value = "0",
        help_heading = "Failures"
    )]
    pub retries: u32,

    /// Exit code of the sync handler that counts as success (repeatable;
    /// rsyncdirect ignores 24, "files vanished", by default).
    #[arg(short = 'x', long = "ignore-exitcode", value_name = "CODE", action = ArgAction::Append, help_heading = "Failures")]
    pub ignore_exitcode: Vec<i32>,

    /// Label of this instance, passed to handlers as %label%.
    #[arg(
        short = 'l',
        long = "label",
        value_name = "LABEL",
        default_value = "nolabel",
        help_heading = "Handler lists"
    )]
    pub label: String,

    /// Directory for list files (default: a private 0700 temp dir); created
    /// (0700) if missing, refused if a symlink.
    #[arg(
        short = 'L',
        long = "lists-dir",
        value_name = "DIR",
        help_heading = "Handler lists"
    )]
    pub lists_dir: Option<PathBuf>,

    /// Keep list files after the handler ends (for debugging).
    #[arg(
        short = 'U',
        long = "dont-unlink-lists",
        help_heading = "Handler lists"
    )]
    pub dont_unlink_lists: bool,

    /// More log output; repeat (-dd) or give a level (-d3).
    #[arg(short = 'd', long = "debug", value_name = "LEVEL", num_args = 0..=1, default_missing_value = "1", action = ArgAction::Append, help_heading = "Logging")]
    pub debug: Vec<u8>,

    /// Only errors.
    #[arg(short = 'q', long = "quiet", help_heading = "Logging")]
    pub quiet: bool,

    /// Config file to read instead of the default ones; `/NULL/` reads no
    /// config file at all.
    #[arg(
        short = 'H',
        long = "config-file",
        value_name = "FILE",
        help_heading = "Config file"
    )]
    pub config_file: Option<PathBuf>,

    /// Block of the config file to use.
    #[arg(
        short = 'K',
        long = "config-block",
        value_name = "NAME",
        default_value = "default",
        help_heading = "Config file"
    )]
    pub config_block: String,

    /// Parent block for the chosen block, instead of its own
    /// `config-block-inherits` line (an empty NAME: no parent).
    #[arg(
        long = "config-block-inherits",
        value_name = "NAME",
        help_heading = "Config file"
    )]
    pub config_block_inherits: Option<String>,

    /// `SIGNAL:BLOCK[,SIGNAL:BLOCK...]`: on SIGNAL (a number or a name such
    /// as USR1 or RTMIN+1), switch to that config block; `0` clears the list
    /// so far (repeatable).
    #[arg(long = "custom-signals", value_name = "SPEC", value_parser = parse_custom_signals, action = ArgAction::Append, help_heading = "Config file")]
    pub custom_signals: Vec<SignalSpec>,

    /// Write livesync's pid to FILE once it runs (after the fork with -b);
    /// refused if FILE names a running livesync (a stale pid or another
    /// program's is replaced); removed at exit if still ours.
    #[arg(
        short = 'z',
        long = "pid-file",
        value_name = "FILE",
        help_heading = "Control files"
    )]
    pub pid_file: Option<PathBuf>,

    /// Keep the current state in FILE (starting, initsync, running,
    /// synchandler error, hold on, rehashing, preexit, terminating,
    /// exiting), replaced atomically; removed at exit.
    #[arg(
        long = "status-file",
        value_name = "FILE",
        help_heading = "Control files"
    )]
    pub status_file: Option<PathBuf>,

    /// Where signal 29 (SIGIO) and the control socket's `dump` write the
    /// daemon's state (a 0600 file per dump); without it the state is logged.
    /// Created (0700) if missing, refused if a symlink.
    #[arg(long = "dump-dir", value_name = "DIR", help_heading = "Control files")]
    pub dump_dir: Option<PathBuf>,

    /// Control socket: a unix socket answering `livesync ctl` (status,
    /// resync, pause, resume, quit, …).
    #[arg(long = "socket", value_name = "PATH", help_heading = "Control files")]
    pub socket: Option<PathBuf>,

    /// Owner of the control socket: USER[:GROUP], names or numbers.
    #[arg(
        long = "socket-own",
        value_name = "USER[:GROUP]",
        help_heading = "Control files"
    )]
    pub socket_own: Option<String>,

    /// Mode of the control socket, in octal.
    #[arg(
        long = "socket-mod",
        value_name = "MODE",
        default_value = "600",
        help_heading = "Control files"
    )]
    pub socket_mod: String,

    /// While FILE exists, hold every sync (events are still collected).
    #[arg(
        long = "standby-file",
        value_name = "FILE",
        help_heading = "Control files"
    )]
    pub standby_file: Option<PathBuf>,

    /// After the initial sync, sync until nothing is pending, run the hooks
    /// and exit 0.
    #[arg(long = "exit-on-no-events", help_heading = "Ending")]
    pub exit_on_no_events: bool,

    /// Do the initial sync, run the hooks and exit 0, watching nothing.
    #[arg(long = "only-initialsync", help_heading = "Ending")]
    pub only_initialsync: bool,

    /// Skip the initial sync: sync only what changes from now on.
    #[arg(long = "skip-initialsync", help_heading = "Ending")]
    pub skip_initialsync: bool,

    /// Stop after the initial sync and N-1 handler runs after it (0 = no
    /// limit).
    ///
    /// An iteration is one handler run on one batch, a retry included; the
    /// runs that carry the initial sync (the whole-tree sync and its
    /// retries) are not counted, and handlers see the count of those done
    /// as CLSYNC_ITERATION. When the limit is reached: the pre-exit hook,
    /// with --exit-on-no-events one more sync of what is pending, the exit
    /// hook, exit 0 (without --exit-on-no-events pending changes are left
    /// unsynced, and logged).
    #[arg(
        long = "max-iterations",
        value_name = "N",
        default_value = "0",
        help_heading = "Ending"
    )]
    pub max_iterations: u32,

    /// On SIGQUIT, sync once more after the pre-exit hook.
    #[arg(long = "sync-on-quit", help_heading = "Ending")]
    pub sync_on_quit: bool,

    /// Program run as `PROGRAM LABEL` before the last sync of a soft exit
    /// (--exit-on-no-events, --max-iterations, SIGQUIT).
    #[arg(
        long = "pre-exit-hook",
        value_name = "PROGRAM",
        help_heading = "Ending"
    )]
    pub pre_exit_hook: Option<OsString>,

    /// Program run as `PROGRAM LABEL` when livesync exits after a completed
    /// initial sync.
    #[arg(long = "exit-hook", value_name = "PROGRAM", help_heading = "Ending")]
    pub exit_hook: Option<OsString>,

    /// Carry on when a hook fails, as clsync does: a failed --pre-exit-hook
    /// still runs --exit-hook, and livesync exits 0. Without it a failed
    /// pre-exit hook ends livesync at once with exit code 1 (no exit hook),
    /// and a failed exit hook makes the exit code 1.
    #[arg(long = "ignore-hook-failures", help_heading = "Ending")]
    pub ignore_hook_failures: bool,

    /// Don't exit when syncs keep failing past --retries: keep retrying
    /// the batch (with backoff); nothing is dropped.
    #[arg(long = "ignore-failures", help_heading = "Failures")]
    pub ignore_failures: bool,

    /// Kill a sync handler or hook (its whole process group) that runs
    /// longer than SECS and count it as a failed try; 0 = no limit. The
    /// built-in mirror runs no child and is not limited.
    #[arg(
        short = 'k',
        long = "timeout-sync",
        allow_negative_numbers = true,
        value_name = "SECS",
        default_value = "86400",
        help_heading = "Failures"
    )]
    pub timeout_sync: u64,

    /// Run in the background as a daemon (fork, setsid, stdio to
    /// /dev/null, chdir /; log lines go to syslog unless -Y is given);
    /// -b0 or --background=off: stay in front.
    #[arg(short = 'b', long = "background", value_name = "BOOL", num_args = 0..=1, default_missing_value = "1", value_parser = clap::builder::BoolishValueParser::new(), help_heading = "Process")]
    pub background: Option<bool>,

    /// Where log lines go: stderr, stdout or syslog (with -b the default
    /// is syslog).
    #[arg(
        short = 'Y',
        long = "output",
        value_name = "WHERE",
        default_value = "stderr",
        value_parser = ["stderr", "stdout", "syslog"],
        help_heading = "Logging"
    )]
    pub output: String,

    // ----- Parallel handler runs (-p, --threads) -----
    /// How many batches run at once: `off` one at a time; `safe` several
    /// (up to --threads), but never two whose paths are the same or lie one
    /// inside the other, and renames in order; `full` several with no such
    /// exclusion (two runs may race on one path; a failed run is retried).
    #[arg(
        short = 'p',
        long = "threading",
        value_name = "MODE",
        default_value = "off",
        help_heading = "Parallel runs",
        long_help = "How many batches run at once (clsync's -p).\n\
  off   one handler run at a time (the default).\n\
  safe  up to --threads runs at once, each with its own handler; a batch never carries a path \
that is the same as, or lies inside or above, a path of a batch that is still running (it waits \
for that one to finish), and renames are replayed in the order they happened. The destination \
ends up equal to the source as with off.\n\
  full  up to --threads runs at once with no such exclusion: two runs may work on the same path \
at the same time, and the one that finishes last wins the race (as clsync warns). A failed run is \
still retried, never dropped. Use it only with a handler that tolerates that."
    )]
    pub threading: String,

    /// Most handler runs at once with -p safe|full (0: the number of CPUs,
    /// at least 2); -p off always runs one.
    #[arg(
        long = "threads",
        value_name = "N",
        default_value = "0",
        help_heading = "Parallel runs"
    )]
    pub threads: u32,

    /// Don't cross into other filesystems: the mount points under the watch
    /// dir (found at start and on SIGHUP) are synced as empty directories
    /// and not walked, watched or synced below.
    #[arg(long = "one-file-system", help_heading = "How")]
    pub one_file_system: bool,

    /// Like --one-file-system, and leave the mount points themselves out.
    #[arg(short = 'X', long = "exclude-mount-points", help_heading = "How")]
    pub exclude_mount_points: bool,

    /// Don't sync a file or dir whose listed lstat fields did not change
    /// since it was last synced: a comma list of dev, ino, mode, uid, gid,
    /// rdev, size, atime, mtime, ctime, blksize, blocks, nlink (`*`: the
    /// first ten).
    #[arg(
        long = "modification-signature",
        value_name = "FIELDS",
        help_heading = "How"
    )]
    pub modification_signature: Option<String>,

    /// Syscalls to skip: `mon_stat` (no lstat of changed files: the
    /// big-file lane -B/-T is off, and a hard-linked file is synced only
    /// through the name that changed). Empty: none.
    #[arg(long = "cancel-syscalls", value_name = "LIST", help_heading = "How")]
    pub cancel_syscalls: Option<String>,

    // ---- Operations: metrics, syslog socket, progress (keep new options
    // of other areas out of this block) ----
    /// Write Prometheus text metrics to FILE (replaced atomically every
    /// 10 s and after each batch), e.g. for node_exporter's textfile
    /// collector; the control socket's `metrics` command gives the same.
    #[arg(
        long = "metrics-file",
        value_name = "FILE",
        help_heading = "Operations"
    )]
    pub metrics_file: Option<PathBuf>,

    /// The unix datagram socket `-Y syslog` sends to.
    #[arg(
        long = "syslog-socket",
        value_name = "PATH",
        default_value = "/dev/log",
        help_heading = "Operations"
    )]
    pub syslog_socket: PathBuf,

    /// Progress bar (files, bytes, rate, ETA) on stderr during the built-in
    /// mirror's initial sync: auto (when stderr is a terminal and livesync
    /// stays in front) or never.
    #[arg(
        long = "progress",
        value_name = "WHEN",
        default_value = "auto",
        value_parser = ["auto", "never"],
        help_heading = "Operations"
    )]
    pub progress: String,
    // ---- end of Operations ----
    // ---- clsync's command modes ----
    /// Shell mode: list lines are the bare relative path instead of
    /// `sync LABEL MASK PATH`.
    #[arg(long = "synclist-simplify", help_heading = "Command modes")]
    pub synclist_simplify: bool,

    /// Shell and so modes: hand a whole subtree (the initial sync, a new
    /// directory) over as one: in shell mode one `initialsync LABEL PATH`
    /// run, in so mode one entry flagged EVIF_RECURSIVELY, instead of one
    /// per entry below it (an rsyncso object sees it in its ctx flags).
    #[arg(long = "have-recursive-sync", help_heading = "Command modes")]
    pub have_recursive_sync: bool,

    /// rsync modes: at most about N include-list lines per rsync run; a
    /// longer list runs rsync once per part (0 = no limit).
    #[arg(
        long = "rsync-inclimit",
        value_name = "N",
        default_value = "20000",
        help_heading = "Command modes"
    )]
    pub rsync_inclimit: usize,

    /// rsync modes: no exclude-list file; exclusions go into the include
    /// list as `- /path` lines.
    #[arg(long = "rsync-prefer-include", help_heading = "Command modes")]
    pub rsync_prefer_include: bool,

    /// The initial sync ignores the rules (later syncs follow them).
    #[arg(short = 'F', long = "full-initialsync", help_heading = "Command modes")]
    pub full_initialsync: bool,

    // ---- Privileges and hardening (read by src/config/privileges/, carried
    // out by src/security/). Long help says what each protects against and
    // what it costs; SECURITY.md has the whole threat model.
    /// Run the daemon as USER (name or number) after its privileged setup.
    ///
    /// Started as root, livesync becomes nobody by default (or the
    /// --sync-handler-uid user when that is not root, so that the handler
    /// can read the daemon's list files), keeping only the capabilities its
    /// work needs (see -C). Protects against: a bug in
    /// livesync (or a hostile file name that reaches one) acting with all of
    /// root's power. Costs: nothing for the built-in mirror; `-u 0` keeps
    /// root.
    #[arg(
        short = 'u',
        long = "uid",
        value_name = "USER",
        help_heading = "Privileges and hardening"
    )]
    pub uid: Option<String>,

    /// Run the daemon with GROUP (default when root: nogroup).
    ///
    /// Supplementary groups are always dropped.
    #[arg(
        short = 'g',
        long = "gid",
        value_name = "GROUP",
        help_heading = "Privileges and hardening"
    )]
    pub gid: Option<String>,

    /// User of the privileged helper (--splitting=process); default: the
    /// user livesync was started as.
    #[arg(
        long = "privileged-uid",
        value_name = "USER",
        help_heading = "Privileges and hardening"
    )]
    pub privileged_uid: Option<String>,

    /// Group of the privileged helper; default: the group livesync was
    /// started with.
    #[arg(
        long = "privileged-gid",
        value_name = "GROUP",
        help_heading = "Privileges and hardening"
    )]
    pub privileged_gid: Option<String>,

    /// Run sync handlers and hooks as USER; default: --privileged-uid.
    ///
    /// Protects against: a handler (rsync, a script) or what it runs doing
    /// more than USER may, e.g. writing outside a destination USER owns.
    /// Costs: USER must be able to read the source and write the
    /// destination; ownership is preserved only as root.
    #[arg(
        long = "sync-handler-uid",
        value_name = "USER",
        help_heading = "Privileges and hardening"
    )]
    pub sync_handler_uid: Option<String>,

    /// Run sync handlers and hooks with GROUP; default: the primary group
    /// of --sync-handler-uid, or else --privileged-gid.
    #[arg(
        long = "sync-handler-gid",
        value_name = "GROUP",
        help_heading = "Privileges and hardening"
    )]
    pub sync_handler_gid: Option<String>,

    /// Capabilities the daemon keeps besides CAP_DAC_READ_SEARCH and what
    /// its mode needs: a comma list such as CAP_KILL,CAP_SETUID.
    ///
    /// After dropping to -u, the daemon keeps CAP_DAC_READ_SEARCH (to read
    /// and watch a tree that root owns), for the built-in mirror CAP_CHOWN,
    /// CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_FSETID and CAP_MKNOD (to write the
    /// destination as root would), CAP_SETUID, CAP_SETGID and CAP_KILL when
    /// handlers run as another user, and CAP_DAC_OVERRIDE when a control
    /// file's directory is not writable by -u. The bounding set is cut to
    /// the same list. `-d` logs why each one is kept.
    #[arg(
        short = 'C',
        long = "preserve-capabilities",
        value_name = "LIST",
        help_heading = "Privileges and hardening"
    )]
    pub preserve_capabilities: Option<String>,

    /// What handlers inherit of the daemon's capabilities: permitted,
    /// dont-touch, clsync or empty.
    ///
    /// permitted and clsync hand the daemon's capabilities to handlers as
    /// ambient capabilities (so a handler running as nobody can read what
    /// the daemon may read); dont-touch leaves the inheritable set alone;
    /// empty (the default) gives them nothing.
    #[arg(
        long = "inherit-capabilities",
        value_name = "MODE",
        default_value = "empty",
        value_parser = ["permitted", "dont-touch", "clsync", "empty"],
        help_heading = "Privileges and hardening"
    )]
    pub inherit_capabilities: String,

    /// Let handlers gain privileges through set-user-id programs and file
    /// capabilities (no PR_SET_NO_NEW_PRIVS).
    ///
    /// By default every handler and hook runs with no-new-privs: a
    /// compromised handler cannot use a set-user-id program (sudo, su,
    /// mount) to become more than it is.
    #[arg(long = "permit-new-privs", help_heading = "Privileges and hardening")]
    pub permit_new_privs: bool,

    /// off or process: with process, a small privileged helper starts,
    /// kills and reaps handlers (and runs the built-in mirror), and the
    /// daemon keeps no capability to start them or to write.
    ///
    /// Protects against: a bug in the daemon (which reads hostile file names
    /// and runs the event loop) being used to run programs as the handler's
    /// user or to write as root. Costs: one more process and a round trip
    /// per handler run or mirror batch. clsync's thread is refused: threads
    /// share memory, so a privileged thread protects nothing.
    #[arg(
        long = "splitting",
        value_name = "MODE",
        default_value = "off",
        help_heading = "Privileges and hardening"
    )]
    pub splitting: String,

    /// The privileged helper refuses any argv that the configured handler
    /// and hooks could not have produced (needs --splitting=process; every
    /// mode).
    ///
    /// Protects against: a compromised daemon asking the helper to run
    /// arbitrary commands. Costs: the handler arguments, hooks and label
    /// cannot change on reload.
    #[arg(
        long = "check-execvp-arguments",
        help_heading = "Privileges and hardening"
    )]
    pub check_execvp_arguments: bool,

    /// Shorthand for --splitting=process --check-execvp-arguments
    /// --seccomp-filter.
    ///
    /// clsync's also implies --forbid-devices; give that yourself (it needs
    /// root).
    #[arg(long = "secure-splitting", help_heading = "Privileges and hardening")]
    pub secure_splitting: bool,

    /// Confine the unprivileged daemon to a syscall allow-list (needs
    /// --splitting=process).
    ///
    /// Allowed: files, inotify, poll, unix sockets, threads. Denied (EPERM):
    /// execve, fork, ptrace, mount, setuid and capset, bpf, module loading
    /// and everything else. Protects against: a compromised daemon running
    /// programs or attacking the kernel through rarely used syscalls.
    /// Costs: a syscall the allow-list misses fails (please report it).
    #[arg(long = "seccomp-filter", help_heading = "Privileges and hardening")]
    pub seccomp_filter: bool,

    /// Confine the daemon, its helper and its handlers to DIR as `/`.
    ///
    /// Paths are given as seen from outside; the watch dir, a local
    /// destination, -S and the hooks, -L, --status-file, --standby-file,
    /// --dump-dir and --metrics-file must lie inside DIR (a bare handler
    /// name is looked up in PATH inside it). The pid file and the control
    /// socket may lie outside: a small keeper process stays outside and
    /// removes them at exit. Protects against: a compromised daemon or
    /// handler reading or writing files outside DIR. Costs: handlers need
    /// their programs and libraries inside DIR; no reload (SIGHUP);
    /// Linux only; not with --monitor fanotify.
    #[arg(
        long = "chroot",
        value_name = "DIR",
        help_heading = "Privileges and hardening"
    )]
    pub chroot: Option<PathBuf>,

    /// How --chroot is entered: off (chroot(2)), auto (a mount namespace,
    /// DIR bind-mounted on itself, pivot_root(2), the old root unmounted),
    /// auto-ro (the same, DIR's mount read-only: bind-mount a local
    /// destination inside on itself so it stays writable) or direct (DIR
    /// must be a mount point already).
    ///
    /// Protects against what --chroot does, and also against escapes from
    /// a chroot: the host's file systems are not mounted in the daemon's
    /// namespace at all.
    #[arg(
        long = "pivot-root",
        value_name = "WAY",
        default_value = "off",
        help_heading = "Privileges and hardening"
    )]
    pub pivot_root: String,

    /// Take the network away: everywhere (daemon, helper and handlers),
    /// non-privileged (the daemon only, with --splitting=process) or off.
    ///
    /// A network namespace of its own with nothing in it. Protects against:
    /// a compromised daemon (or handler, with everywhere) talking to the
    /// network. Costs: with everywhere, rsync over ssh cannot work.
    #[arg(
        long = "detach-network",
        value_name = "MODE",
        default_value = "off",
        help_heading = "Privileges and hardening"
    )]
    pub detach_network: String,

    /// Give livesync and its handlers an IPC namespace of their own.
    ///
    /// Protects against: reaching other processes' System V IPC and POSIX
    /// message queues. Costs: none known; needs root.
    #[arg(long = "detach-ipc", help_heading = "Privileges and hardening")]
    pub detach_ipc: bool,

    /// Give livesync and its handlers their own UTS (host name) and cgroup
    /// namespaces.
    ///
    /// Costs: none known; needs root.
    #[arg(long = "detach-miscellanea", help_heading = "Privileges and hardening")]
    pub detach_miscellanea: bool,

    /// Hide every device but null, zero, random and urandom from the daemon
    /// (and, without --splitting, its handlers).
    ///
    /// A mount namespace of its own with a small /dev (the syslog socket
    /// /dev/log stays). Protects against: a compromised daemon reading raw
    /// disks, /dev/mem or terminals. Costs: needs root; nothing under /dev
    /// can be watched or be the destination.
    #[arg(long = "forbid-devices", help_heading = "Privileges and hardening")]
    pub forbid_devices: bool,
    // ---- end of privileges and hardening ----
    // --- Event backends (src/monitor/): --monitor and its settings. ---
    /// Which kernel API watches the tree: inotify (Linux default),
    /// fanotify (Linux, root; falls back to inotify where it cannot run),
    /// kqueue (FreeBSD/macOS default), bsm (FreeBSD's audit trail), poll (a
    /// periodic scan: NFS, FUSE) or notify (the notify crate's portable
    /// watcher). Any other backend that cannot start here ends livesync
    /// with one line and exit code 1.
    #[arg(
        long = "monitor",
        value_name = "BACKEND",
        value_enum,
        overrides_with = "monitor",
        help_heading = "Event backend"
    )]
    pub monitor: Option<crate::monitor::MonitorKind>,

    /// Seconds between two scans of --monitor poll (fractions allowed).
    #[arg(
        long = "poll-interval",
        value_name = "SECS",
        default_value = "1",
        overrides_with = "poll_interval",
        value_parser = parse_poll_interval,
        help_heading = "Event backend"
    )]
    pub poll_interval: std::time::Duration,

    /// Arguments for the sync handler (after `--`).
    #[arg(last = true, value_name = "HANDLER ARGS")]
    pub handler_args: Vec<OsString>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn clsync_spellings_parse() {
        let a = Args::try_parse_from([
            "livesync",
            "-W",
            "/s",
            "-D",
            "/d",
            "-M",
            "rsyncdirect",
            "-S",
            "/usr/bin/rsync",
            "-t0",
            "-T",
            "5",
            "-B0",
            "-w0.5",
            "-r3",
            "-x",
            "23",
            "-x24",
            "-l",
            "lab",
            "-L",
            "/tmp/l",
            "-U",
            "-d",
            "-d3",
            "-q",
            "--",
            "-a",
            "%RSYNC-ARGS%",
        ])
        .expect("parse");
        assert_eq!(a.delay_collect, 0.0);
        assert_eq!(a.delay_collect_bigfile, 5.0);
        assert_eq!(a.threshold_bigfile, 0);
        assert_eq!(a.delay_sync, 0.5);
        assert_eq!(a.retries, 3);
        assert_eq!(a.ignore_exitcode, vec![23, 24]);
        assert_eq!(a.debug, vec![1, 3]);
        assert!(a.quiet && a.dont_unlink_lists);
        assert_eq!(
            a.handler_args,
            vec![OsString::from("-a"), OsString::from("%RSYNC-ARGS%")]
        );
    }

    fn usage_error(args: &[&str]) -> String {
        let mut v = vec!["livesync"];
        v.extend_from_slice(args);
        let e = Args::try_parse_from(v).expect_err("refused");
        usage_error_line(&e)
    }

    #[test]
    fn misspelt_and_clsync_only_options_get_a_helpful_line() {
        let s = usage_error(&["--wach-dir", "/s"]);
        assert!(
            s.contains("'--wach-dir'") && s.ends_with("did you mean '--watch-dir'?"),
            "{s}"
        );
        let s = usage_error(&["--delay-colect=1"]);
        assert!(s.ends_with("did you mean '--delay-collect'?"), "{s}");
        let s = usage_error(&["--auto-add-rules-w"]);
        assert!(
            s.starts_with("auto-add-rules-w is a clsync option that livesync does not support")
                && s.contains("write `+w` rules")
                && s.ends_with("; remove --auto-add-rules-w"),
            "{s}"
        );
        let s = usage_error(&["--fts-experimental-optimization"]);
        assert!(
            s.contains("clsync option that livesync does not support"),
            "{s}"
        );
        // Nothing like it: clap's line alone.
        let s = usage_error(&["--zzzzzzzz"]);
        assert!(
            s.contains("'--zzzzzzzz'") && !s.contains("did you mean"),
            "{s}"
        );
    }

    #[test]
    fn include_and_exclude_keep_their_order_in_the_words() {
        let g = given(&[
            "--exclude",
            "a",
            "-W",
            "/s",
            "--include=b",
            "--exclude",
            "c",
        ]);
        let f: Vec<(bool, String)> = g
            .filters()
            .iter()
            .map(|(i, v)| (*i, v.to_string_lossy().into_owned()))
            .collect();
        assert_eq!(
            f,
            [(false, "a".into()), (true, "b".into()), (false, "c".into())]
        );
        assert_eq!(
            strs(g.words()),
            [
                "--watch-dir=/s",
                "--exclude=a",
                "--include=b",
                "--exclude=c"
            ]
        );
        let mut again = vec![OsString::from("livesync")];
        again.extend(g.words().iter().cloned());
        let b = Args::try_parse_from(again).expect("parse again").given;
        assert_eq!(b.filters(), g.filters());
    }

    #[test]
    fn negative_numbers_reach_the_range_checks() {
        let a = Args::try_parse_from(["livesync", "-t", "-1", "-w", "-2", "-T", "-3"])
            .expect("negative numbers are values");
        assert_eq!(
            (a.delay_collect, a.delay_sync, a.delay_collect_bigfile),
            (-1.0, -2.0, -3.0)
        );
        let s = usage_error(&["-r", "-1"]);
        assert!(s.contains("invalid value '-1'"), "{s}");
    }

    #[test]
    fn long_help_has_examples() {
        let help = Args::command().render_long_help().to_string();
        assert!(help.contains("Examples:"));
        assert!(help.contains("livesync -W /srv/www -D /backup/www"));
    }

    fn given(args: &[&str]) -> CommandLine {
        let mut v = vec!["livesync"];
        v.extend_from_slice(args);
        Args::try_parse_from(v).expect("parse").given
    }

    fn strs(words: &[OsString]) -> Vec<String> {
        words
            .iter()
            .map(|w| w.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn every_option_has_a_long_name() {
        for arg in Args::command().get_arguments() {
            assert!(
                arg.is_positional() || arg.get_long().is_some(),
                "{} has no long name: the config file could not set it",
                arg.get_id()
            );
        }
    }

    #[test]
    fn command_line_records_what_was_given_and_nothing_else() {
        let g = given(&[
            "-W", "/s", "-x24", "-x", "23", "-q", "-d", "-d3", "-t", "30", "--", "-a", "b c",
        ]);
        assert!(g.gave("watch-dir") && g.gave("quiet") && g.gave("debug"));
        assert!(
            g.gave("delay-collect"),
            "given at its default value still counts"
        );
        assert!(g.gave(HANDLER_ARGS));
        for not in ["destination-dir", "label", "delay-sync", "config-block"] {
            assert!(!g.gave(not), "{not} was not given");
        }
        assert_eq!(
            g.raw("ignore-exitcode"),
            Some(&[OsString::from("24"), OsString::from("23")][..])
        );
        assert_eq!(
            strs(g.words()),
            [
                "--watch-dir=/s",
                "--delay-collect=30",
                "--ignore-exitcode=24",
                "--ignore-exitcode=23",
                "--debug=1",
                "--debug=3",
                "--quiet",
                "--",
                "-a",
                "b c"
            ]
        );
        assert_eq!(given(&[]), CommandLine::default());
    }

    #[test]
    fn command_line_words_parse_back_to_the_same_values() {
        let argv = [
            "livesync",
            "-W",
            "/s",
            "-D",
            "h:/d",
            "-M",
            "rsyncdirect",
            "-S",
            "/bin/true",
            "-R",
            "/r",
            "-t0.5",
            "-T",
            "5",
            "-B0",
            "-w1",
            "-r3",
            "-x",
            "23",
            "-l",
            "lab",
            "-L",
            "/l",
            "-U",
            "-d",
            "-d2",
            "-q",
            "-H",
            "/c",
            "-K",
            "k",
            "--config-block-inherits",
            "p",
            "--custom-signals",
            "29:a",
            "--",
            "-a",
            "%RSYNC-ARGS%",
        ];
        let a = Args::try_parse_from(argv).expect("parse");
        let mut again = vec![OsString::from("livesync")];
        again.extend(a.given.words().iter().cloned());
        let b = Args::try_parse_from(again).expect("parse again");
        assert_eq!(format!("{:?}", a), format!("{:?}", b));
    }

    #[cfg(any(target_os = "linux", target_os = "android"))] // libc's SIGRTMIN()
    #[test]
    fn custom_signals_parse() {
        let spec = |s: &str| parse_custom_signals(s).map(|v| v.0);
        assert_eq!(
            spec("29:debug, USR2:normal,SIGRTMIN:rt,rtmin+2:r2,RTMAX-1:m").expect("ok"),
            [
                SignalEntry::Block(29, "debug".into()),
                SignalEntry::Block(libc::SIGUSR2, "normal".into()),
                SignalEntry::Block(libc::SIGRTMIN(), "rt".into()),
                SignalEntry::Block(libc::SIGRTMIN() + 2, "r2".into()),
                SignalEntry::Block(libc::SIGRTMAX() - 1, "m".into()),
            ]
        );
        assert_eq!(spec("0").expect("reset"), [SignalEntry::Reset]);
        for (bad, needle) in [
            ("9:x", "SIGKILL cannot be caught"),
            ("15:x", "livesync uses SIGTERM"),
            ("29", "has no block"),
            ("29:", "block name"),
            ("0:x", "takes no block"),
            ("29:a,,28:b", "empty item"),
            ("NOPE:x", "not a signal"),
            ("999:x", "out of range"),
            ("RTMAX+1:x", "not a signal"),
            ("RTMIN+99:x", "out of range"),
        ] {
            let e = spec(bad).expect_err(bad);
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn custom_signals_fold_with_resets_and_replacements() {
        let specs = |v: &[&str]| -> Vec<SignalSpec> {
            v.iter()
                .map(|s| parse_custom_signals(s).expect("spec"))
                .collect()
        };
        assert_eq!(
            fold_custom_signals(&specs(&["29:a,28:b", "29:c"])),
            [(29, "c".to_string()), (28, "b".to_string())]
        );
        assert_eq!(
            fold_custom_signals(&specs(&["29:a", "0,28:b"])),
            [(28, "b".to_string())]
        );
        assert!(fold_custom_signals(&specs(&["29:a", "0"])).is_empty());
    }
}
