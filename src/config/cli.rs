//! The raw command line, as clap parses it, with clsync's spellings.
//!
//! These are the user's words, unvalidated; [`super::Config::from_args`]
//! turns them into resolved settings. Nothing here touches the filesystem.

use clap::{ArgAction, Parser};
use std::ffi::OsString;
use std::path::PathBuf;

const EXAMPLES: &str = "\
Examples:
  Mirror a directory live with the built-in engine (no rsync needed):
    livesync -W /srv/www -D /backup/www

  The same, syncing within a second of each change:
    livesync -W /srv/www -D /backup/www -t1 -w1

  clsync's recommended rsync mode, to a local dir or over ssh:
    livesync -M rsyncdirect -S /usr/bin/rsync -W /srv/www -D backup.example.org:/srv/www

  Skip PHP sessions and caches with a rules file:
    livesync -W /srv/www -D /backup/www -R /etc/livesync/webroot.rules

Rules file lines are `[+-][fdwmsW*]regex`, matched against the path relative
to the watch dir without a leading slash (the root is the empty string); the
first matching rule decides, and a path no rule matches is permitted.

Exit codes: 0 success; 1 runtime failure (e.g. a sync handler kept failing
past --retries); 2 bad usage or input (nothing was touched); 3 the inotify
watch limit was reached at start (raise fs.inotify.max_user_watches).";

/// livesync: mirror a directory tree live, on kernel change notifications.
#[derive(Debug, Parser)]
#[command(
    name = "livesync",
    version,
    about = "Mirror a directory tree live: kernel change notifications, delay windows, regex rules, built-in mirror or rsync",
    after_long_help = EXAMPLES,
    after_help = "See --help for examples, rules and exit codes.",
    max_term_width = 100
)]
pub struct Args {
    /// Directory to watch and mirror.
    #[arg(
        short = 'W',
        long = "watch-dir",
        value_name = "DIR",
        help_heading = "Where"
    )]
    pub watch_dir: PathBuf,

    /// Destination: a local directory (created if missing), or for rsync
    /// modes also `host:path` or `rsync://host/module/path`.
    #[arg(
        short = 'D',
        long = "destination-dir",
        value_name = "DEST",
        help_heading = "Where"
    )]
    pub destination: Option<OsString>,

    /// Sync handler mode: `mirror` (built in, the default with -D) or
    /// `rsyncdirect` (runs rsync with clsync's argv).
    #[arg(short = 'M', long = "mode", value_name = "MODE", help_heading = "How")]
    pub mode: Option<String>,

    /// Sync handler program (for rsyncdirect: the rsync binary; default
    /// `rsync` from PATH).
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

    /// Seconds to collect events about ordinary files before syncing
    /// (fractions allowed).
    #[arg(
        short = 't',
        long = "delay-collect",
        value_name = "SECS",
        default_value = "30",
        help_heading = "Timing"
    )]
    pub delay_collect: f64,

    /// Seconds to collect events about big files (see -B).
    #[arg(
        short = 'T',
        long = "delay-collect-bigfile",
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

    /// Directory for list files (default: a private 0700 temp dir).
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

    #[test]
    fn long_help_has_examples() {
        let help = Args::command().render_long_help().to_string();
        assert!(help.contains("Examples:"));
        assert!(help.contains("livesync -W /srv/www -D /backup/www"));
    }
}
