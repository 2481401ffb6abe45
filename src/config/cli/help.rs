//! What `--help` and the man page say around the options: the examples,
//! rules and config file in brief, the subcommands, the exit codes, and
//! `-M`'s names with what each does.

use clap::builder::{PossibleValue, StringValueParser, TypedValueParser};

/// The examples of `--help` (and of the man page's EXAMPLES section).
pub const EXAMPLES: &str = "\
Examples:
  Mirror a directory live with the built-in engine (no rsync needed):
    livesync -W /srv/www -D /backup/www

  The same, syncing within a second of each change:
    livesync -W /srv/www -D /backup/www -t1 -w1

  clsync's recommended rsync mode, to a local dir or over ssh:
    livesync -M rsyncdirect -S /usr/bin/rsync -W /srv/www -D backup.example.org:/srv/www

  rsync to an rsync daemon, or over ssh on another port (rsync reads RSYNC_RSH):
    livesync -M rsyncdirect -W /srv/www -D rsync://backup.example.org/www/
    RSYNC_RSH='ssh -p 2222' livesync -M rsyncdirect -W /srv/www -D backup:/srv/www

  unison as a mirror over ssh; csync2 to the peers of its own config:
    livesync -M unison -W /srv/www -D ssh://backup//srv/www -- -sshargs '-p 2222'
    livesync -M csync2 -W /srv/www -- -N web1

  Skip PHP sessions and caches with a rules file:
    livesync -W /srv/www -D /backup/www -R /usr/share/livesync/rules/webroot.rules

  Take the settings from block [www] of a config file, but collect for 5 s:
    livesync -H /etc/livesync/livesync.conf -K www -t5";

/// Rules and config file in brief, for `--help` (the man pages
/// livesync-rules(5) and livesync.conf(5) have the whole story).
pub(super) const NOTES: &str = "\
Rules file lines are `[+-][fdwmsW*]regex`, matched against the path relative
to the watch dir without a leading slash (the root is the empty string); the
first matching rule decides, and a path no rule matches is permitted.

Config file: INI blocks of `option = value` lines (long option names without
dashes), read from -H FILE or else from the first readable of
~/.livesync.conf, /etc/livesync/livesync.conf, ~/.clsync.conf,
/etc/clsync/clsync.conf (-H /NULL/ reads none); -K picks the block
(default: [default]). The command line beats the file, option by option.";

/// The client subcommands, as `--help` lists them.
pub(super) const SUBCOMMANDS: &str = "\
Subcommands (clients of a running livesync's --socket; `livesync help NAME`):
  status, resync, pause, resume, metrics   for people (--socket PATH or -H/-K)
  ctl SOCKET COMMAND [ARGS]                any control command, the raw reply";

/// What `--help` prints after the options: examples, rules and config file
/// in brief, the subcommands and the exit codes (from [`crate::exit::CODES`]).
pub(super) fn after_long_help() -> String {
    let mut s = format!("{EXAMPLES}\n\n{NOTES}\n\n{SUBCOMMANDS}\n\nExit codes:");
    for (code, meaning) in crate::exit::CODES {
        // Wrapped by hand with a hanging indent (clap would start the
        // continuation lines at the margin).
        let mut line = format!("\n  {code}");
        for word in meaning.split(' ') {
            if line.len() + 1 + word.len() > 80 {
                s.push_str(&line);
                line = "\n    ".to_string();
            } else {
                line.push(' ');
            }
            line.push_str(word);
        }
        s.push_str(&line);
    }
    s
}

/// `-M`'s names, with what each does: clap lists them in `--help` and
/// the man page and offers them to shell completion. Parsing accepts any
/// word; [`crate::config::Config::from_args`] refuses an unknown one with its own
/// one-line error.
pub const MODES: [(&str, &str); 10] = [
    (
        "mirror",
        "the built-in engine (the default): no external program",
    ),
    ("rsyncdirect", "rsync with clsync's argv and include lists"),
    ("simple", "the -S program once per changed path"),
    (
        "direct",
        "the -S program once per batch, one argument per path",
    ),
    (
        "shell",
        "the -S program once per batch with a synclist file",
    ),
    (
        "rsyncshell",
        "the -S program once per batch with rsync include/exclude lists",
    ),
    ("so", "the -S shared object's clsyncapi_sync, in process"),
    (
        "rsyncso",
        "the -S shared object's clsyncapi_rsync with lists, in process",
    ),
    (
        "unison",
        "unison per batch, as a mirror unless told otherwise",
    ),
    ("csync2", "csync2 to the peers of its own config (no -D)"),
];

/// `-M`'s value parser: any word, with [`MODES`] as its possible values.
#[derive(Clone, Copy, Debug)]
pub(super) struct ModeName;

impl TypedValueParser for ModeName {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        StringValueParser::new().parse_ref(cmd, arg, value)
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(
            MODES
                .iter()
                .map(|(name, what)| PossibleValue::new(*name).help(*what)),
        ))
    }
}
