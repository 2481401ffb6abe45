//! [`CommandLine`]: which options the command line itself gave, with their
//! raw values and as clap words again, and the one line printed for a
//! command line clap refused.

use super::Args;
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, CommandFactory, FromArgMatches};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

/// The options given on the command line itself (not defaults), with their
/// raw values as clap saw them, and the same again as clap words
/// (`--long=value`, `--flag`, then `--` and the handler arguments).
///
/// Filled by clap through `#[command(flatten)]`; it adds no arguments of its
/// own. The words let [`crate::config::Config::from_args`] put config-file options
/// in front of the command line and parse once more, so every value goes
/// through the same clap validation wherever it came from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommandLine {
    /// Long option name (handler arguments: `--`) → raw values in order
    /// (empty for a flag).
    given: BTreeMap<String, Vec<OsString>>,
    words: Vec<OsString>,
    /// `--include`/`--exclude` interleaved as given: the first glob that
    /// matches decides, so their relative order matters.
    filters: Vec<(bool, OsString)>,
}

/// Name under which [`CommandLine`] records the handler arguments.
pub const HANDLER_ARGS: &str = "--";

impl CommandLine {
    /// Whether option `long` (a long name without dashes, or `--` for the
    /// handler arguments) was given on the command line.
    pub fn gave(&self, long: &str) -> bool {
        self.given.contains_key(long)
    }

    /// The raw values option `long` was given on the command line with.
    pub fn raw(&self, long: &str) -> Option<&[OsString]> {
        self.given.get(long).map(Vec::as_slice)
    }

    /// The command line again, as clap words without the program name.
    pub fn words(&self) -> &[OsString] {
        &self.words
    }

    /// `--include` (true) and `--exclude` (false) globs in the order given.
    pub fn filters(&self) -> &[(bool, OsString)] {
        &self.filters
    }

    fn capture(m: &ArgMatches) -> CommandLine {
        let cmd = Args::command();
        let mut out = CommandLine::default();
        let mut tail: Vec<OsString> = Vec::new();
        let mut filters: Vec<(usize, bool, OsString)> = Vec::new();
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if m.value_source(id) != Some(ValueSource::CommandLine) {
                continue;
            }
            if let Some(long @ ("include" | "exclude")) = arg.get_long() {
                let at = m.indices_of(id).into_iter().flatten();
                let vals = m.get_raw(id).into_iter().flatten();
                let raw: Vec<OsString> = vals.map(|v| v.to_os_string()).collect();
                filters.extend(
                    at.zip(raw.iter().cloned())
                        .map(|(i, v)| (i, long == "include", v)),
                );
                out.given.insert(long.to_string(), raw);
                continue;
            }
            let raw: Vec<OsString> = if arg.get_action().takes_values() {
                m.get_raw(id)
                    .map(|vals| vals.map(|v| v.to_os_string()).collect())
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
            if arg.is_positional() {
                // Only the handler arguments are positional (`last = true`).
                tail.push(HANDLER_ARGS.into());
                tail.extend(raw.iter().cloned());
                out.given.insert(HANDLER_ARGS.to_string(), raw);
                continue;
            }
            let Some(long) = arg.get_long() else {
                continue; // every option has a long name (tested)
            };
            if arg.get_action().takes_values() {
                for v in &raw {
                    let mut w = format!("--{long}=").into_bytes();
                    w.extend_from_slice(v.as_bytes());
                    out.words.push(OsString::from_vec(w));
                }
            } else {
                let times = match arg.get_action() {
                    ArgAction::Count => usize::from(m.get_count(id)),
                    _ => 1,
                };
                for _ in 0..times {
                    out.words.push(format!("--{long}").into());
                }
            }
            out.given.insert(long.to_string(), raw);
        }
        // The globs keep their order, in the words too (a config file's come
        // first when they are parsed again).
        filters.sort_by_key(|(i, _, _)| *i);
        for (_, include, v) in filters {
            let mut w = if include {
                b"--include=".to_vec()
            } else {
                b"--exclude=".to_vec()
            };
            w.extend_from_slice(v.as_bytes());
            out.words.push(OsString::from_vec(w));
            out.filters.push((include, v));
        }
        out.words.extend(tail);
        out
    }
}

impl FromArgMatches for CommandLine {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        Ok(CommandLine::capture(m))
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = CommandLine::capture(m);
        Ok(())
    }
}

impl clap::Args for CommandLine {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        cmd
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        cmd
    }
}

/// The one line livesync prints for a command line clap refused (without
/// `error: `): clap's own first line, plus its suggestion for a misspelt
/// option (`did you mean '--watch-dir'?`), or for a clsync option that
/// livesync does not have, the same reason a config file key gets.
pub fn usage_error_line(e: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let rendered = e.render().to_string();
    let first = rendered.lines().next().unwrap_or("invalid arguments");
    let first = first.strip_prefix("error: ").unwrap_or(first).to_string();
    if e.kind() != ErrorKind::UnknownArgument {
        return first;
    }
    if let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) {
        let name = arg.trim_start_matches('-');
        let name = name.split_once('=').map_or(name, |(n, _)| n);
        if arg.starts_with("--") {
            if let Some(reason) = crate::config::file::clsync_only_reason(name) {
                return format!("{reason}; remove {arg}");
            }
        }
    }
    match e.get(ContextKind::SuggestedArg) {
        Some(ContextValue::String(s)) => format!("{first}; did you mean '{s}'?"),
        Some(ContextValue::Strings(v)) if !v.is_empty() => {
            format!("{first}; did you mean '{}'?", v.join("' or '"))
        }
        _ => first,
    }
}
