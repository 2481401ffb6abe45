//! The config file: clsync's INI format (glib key-file style), read into
//! clap words so that file values get exactly the validation that command
//! line values get.
//!
//! This module owns the file's syntax, its blocks and their inheritance,
//! `%option%` substitution, the splitting of handler arguments, and the
//! search for a default file. It must not decide precedence against the
//! command line beyond skipping what the command line gave (that is
//! [`super::Config::from_args`]'s job), and it never writes anything.
//!
//! # Where the file comes from
//!
//! `-H FILE` (`--config-file`) names the file; a missing or unreadable FILE
//! is an error. `-H /NULL/` reads no file at all. Without `-H`, livesync
//! tries, in this order, and reads only the first one that exists and can
//! be read (clsync reads only one file too):
//!
//! 1. `~/.livesync.conf`
//! 2. `/etc/livesync/livesync.conf`
//! 3. `~/.clsync.conf`
//! 4. `/etc/clsync/clsync.conf`
//!
//! (`~` is `$HOME`; without `HOME` the two home files are skipped.) An
//! absent default file is skipped silently; one that exists but cannot be
//! read is skipped with a warning. Unlike clsync, a default file that *is*
//! read but is malformed is an error, not silently passed over. When the
//! default file has no block of the chosen name and neither `-H` nor `-K`
//! was given, nothing is taken from it (with a warning).
//!
//! # Syntax
//!
//! The file is read line by line (`\n` or `\r\n`; a leading UTF-8 byte order
//! mark is ignored). Each line is one of:
//!
//! * a blank line, or a comment: the first non-blank character is `#` or
//!   `;`. Comments are whole lines only: a `#` after a value is part of the
//!   value, as in glib.
//! * a block header `[name]`: the name is trimmed, must be non-empty UTF-8
//!   without `[`, `]` or control characters, and only whitespace may follow
//!   the `]`. Names are case-sensitive. A block name may appear only once.
//! * an assignment `key = value`: the key is everything before the first
//!   `=`, trimmed; the value is everything after it. Whitespace around the
//!   `=` is a separator. Trailing whitespace is removed from the value, with
//!   a warning naming `file:line`, because clsync keeps it and a path with an
//!   invisible trailing blank does not exist (clsync issue #148). Every
//!   assignment belongs to the block above it; one before any header is an
//!   error. A key may appear only once per block.
//!
//! Anything else is a syntax error. Values are bytes: paths need not be
//! UTF-8. There are no escapes and no quoting in values (glib's `\s`, `\n`
//! are *not* decoded, as clsync does not decode them); only the handler
//! argument keys below split and unquote.
//!
//! # Keys
//!
//! A key is the long name of a command line option without its dashes:
//! `watch-dir`, `destination-dir`, `mode`, `sync-handler`, `rules-file`,
//! `delay-collect`, `delay-collect-bigfile`, `threshold-bigfile`,
//! `delay-sync`, `retries`, `ignore-exitcode`, `label`, `lists-dir`,
//! `dont-unlink-lists`, `debug`, `quiet`, `custom-signals` — whatever
//! `livesync --help` lists, except `config-file` and `config-block`, which
//! choose the file and the block and so mean nothing inside one. An unknown
//! key is ignored with a warning naming `file:line` (with a suggestion;
//! clsync options that livesync does not support are named as such), as
//! clsync ignores keys it does not know: clsync's own example configs carry
//! keys neither program has (`syslog`, `rules-path`). The value is what the
//! option takes on the command line, checked by the same parser:
//!
//! * an option that takes a value: `delay-collect = 0.5`. An empty value
//!   (`lists-dir =`) means "not set here": the option keeps its default,
//!   and a parent block's value is *not* inherited (clsync's way to unset).
//! * a flag (`quiet`, `dont-unlink-lists`): `1`, `true`, `yes` or `on` sets
//!   it; `0`, `false`, `no`, `off` or empty leaves it unset.
//! * a repeatable option (`ignore-exitcode`, `debug`, `custom-signals`): a
//!   comma-separated list, `ignore-exitcode = 23,24`, as if the option were
//!   given once per item (glib allows a key only once per block). Blanks
//!   around items and empty items are ignored.
//!
//! `custom-signals = SIGNAL:BLOCK[,…]` names blocks of the same file (they
//! must exist and their inheritance must resolve); SIGNAL is a number or a
//! name (`USR1`, `RTMIN+2`), `0` clears the list so far, and signals that
//! cannot be caught, report crashes or that livesync itself uses (HUP, INT,
//! QUIT, TERM, CHLD) are refused.
//!
//! Three keys are special:
//!
//! * `config-block-inherits = parent`: this block inherits every key it
//!   does not set itself from block `parent`, which may inherit in turn.
//!   A chain that comes back to a block already in it is an error, as is a
//!   parent the file does not have. `--config-block-inherits NAME` on the
//!   command line replaces the chosen block's own parent (an empty NAME: no
//!   parent); the parent's own `config-block-inherits` still applies.
//! * `-- = ARGS`: the sync handler's arguments (what follows `--` on the
//!   command line). The value is split into words at blanks (spaces, tabs);
//!   `'…'` quotes text literally, `"…"` too but with `\"` and `\\` decoded
//!   inside; quoted and unquoted text next to each other form one word and
//!   `""` is an empty word. clsync splits the same way, except that it keeps
//!   the backslash of `\"`. An unclosed quote is an error.
//! * `--- = ARGS`: the arguments for the initial sync's handler run, split
//!   the same way (kept in `Config::initial_handler_args`).
//!
//! Handler arguments are not `%option%`-substituted when the file is read:
//! the handler expands `%label%`, `%watch-dir%`, `%RSYNC-ARGS%` and the
//! like each time it runs.
//!
//! # Substitution: `%option%`
//!
//! In any other value, `%name%` (a name starting with a lower-case letter)
//! is replaced by the final value of option `name`, and `%%` by one `%`:
//! `pid-file = /var/run/clsync-%label%.pid`. The final value is looked up
//! in the order a user reads precedence: the command line, then the chosen
//! block, then its parent, grandparent, …, then the option's default; a
//! value found in the file is itself substituted first. Where in the file
//! or in the chain the reference sits does not matter, so a parent block's
//! `lists-dir = /dev/shm/%label%` sees the child's (or the command line's)
//! `label`. A repeatable option's value is its comma list; `%config-file%`
//! is the file being read and `%config-block%` the block chosen with `-K`.
//!
//! A name that is not an option is an error (write `%%` for a literal `%`),
//! as is an option that is not set anywhere and has no default, and a
//! reference that comes back to itself (`label = %lists-dir%` with
//! `lists-dir = %label%`). Names starting with an upper-case letter
//! (`%RSYNC-ARGS%`, `%PID%`) are left as they are for the handler, and a `%`
//! without a closing one is kept literally. clsync differs here: it
//! substitutes values set *earlier* in its own reading order and leaves
//! unknown names in place.
//!
//! # Precedence
//!
//! The command line beats the file option by option: an option given on the
//! command line (even at its default value) ignores the file's value
//! entirely, and for repeatable options the command line's list replaces the
//! file's list rather than adding to it. Within the file, the chosen block
//! (`-K NAME`, default `default`) beats its parents. An option set nowhere
//! takes its default.
//!
//! # Errors
//!
//! Every error is one line, `FILE:LINE: what is wrong; what to do` (or
//! `FILE: …` when no single line is at fault, such as a missing block), and
//! stops livesync before it touches anything (exit code 2).
//!
//! # Example
//!
//! ```text
//! # /etc/livesync/livesync.conf
//! [default]
//! watch-dir       = /srv/www
//! destination-dir = /backup/www
//! delay-collect   = 5
//! label           = www
//! lists-dir       = /run/livesync-%label%
//!
//! [rsync]
//! config-block-inherits = default
//! mode            = rsyncdirect
//! destination-dir = backup.example.org:/srv/www
//! ignore-exitcode = 23,24
//! -- = %RSYNC-ARGS% --bwlimit=2000 %watch-dir%/ %destination-dir%/
//! ```
//!
//! `livesync -K rsync -t 1` uses block `rsync`, inherits `watch-dir`,
//! `label` and `lists-dir` from `default`, and collects for 1 second (the
//! command line beats both blocks).

use super::cli::{CommandLine, HANDLER_ARGS};
use crate::path;
use clap::{ArgAction, Command};
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

mod args; // a block's settings → clap words; the default file's search
pub use args::{
    clsync_only_reason, default_paths, file_args, find_default, split_args, FileArgs, Settings,
};

/// `-H /NULL/`: read no config file.
pub const NO_FILE: &str = "/NULL/";

/// The key naming a block's parent.
pub const INHERITS: &str = "config-block-inherits";

/// The key holding the initial-sync handler arguments.
pub const INITIAL_HANDLER_ARGS: &str = "---";

/// Options that choose the file and the block: command line only.
const COMMAND_LINE_ONLY: [&str; 2] = ["config-file", "config-block"];

/// A config file larger than this is refused (it is not a config file).
const MAX_SIZE: u64 = 1 << 20;

/// clsync options that livesync does not have (yet), from clsync(1): named
/// in the error so that a clsync config fails with a clear reason.
const CLSYNC_ONLY: &[&str] = &[
    "add-permitted-hook-files",
    "auto-add-rules-w",
    "cgroup-group-name",
    "cluster-hash-dl-max",
    "cluster-hash-dl-min",
    "cluster-iface",
    "cluster-ip",
    "cluster-node-name",
    "cluster-port",
    "cluster-scan-dl-max",
    "cluster-timeout",
    "exit-on-sync-skipping",
    "forget-privthread-info",
    "fts-experimental-optimization",
    "full-initialsync",
    "have-recursive-sync",
    "monitor",
    "mountpoints",
    "permit-mprotect",
    "rsync-inclimit",
    "rsync-prefer-include",
    "shm-mprotect",
    "socket-auth",
    "synclist-simplify",
    "verbose",
];

/// One `key = value` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    /// Trimmed; bytes, not necessarily UTF-8.
    pub value: OsString,
    /// 1-based line number.
    pub line: usize,
}

/// One `[name]` block with its assignments in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    pub name: String,
    /// Line of the header.
    pub line: usize,
    pub entries: Vec<Entry>,
}

impl Block {
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }

    /// The parent named by this block's `config-block-inherits` line, with
    /// that line; `None` when it has none or it is empty.
    fn parent(&self) -> Option<(String, usize)> {
        let e = self.get(INHERITS)?;
        if e.value.is_empty() {
            return None;
        }
        Some((e.value.to_string_lossy().into_owned(), e.line))
    }
}

/// A parsed config file.
#[derive(Clone, Debug)]
pub struct ConfigFile {
    path: PathBuf,
    blocks: Vec<Block>,
    warnings: Vec<String>,
}

/// What is wrong, with what to do about it. Shown after `FILE:LINE: `.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    #[error("cannot read it: {0}; fix -H, or give -H /NULL/ to read no config file")]
    Read(String),
    #[error("{0}")]
    Syntax(String),
    #[error(
        "`{key} = …` comes before any [block] header; put a header such as [default] above it"
    )]
    OutsideBlock { key: String },
    #[error("{key} is set twice in [{block}] (first on line {first}); keep one line (repeatable options take a comma list, e.g. ignore-exitcode = 23,24)")]
    DuplicateKey {
        key: String,
        block: String,
        first: usize,
    },
    #[error("block [{block}] appears twice (first on line {first}); merge the two blocks")]
    DuplicateBlock { block: String, first: usize },
    #[error("unknown option `{key}`; {hint}")]
    UnknownOption { key: String, hint: String },
    #[error("`{key}` chooses the config file or block, so it cannot be set inside one; give -H/-K on the command line")]
    CommandLineOnly { key: String },
    #[error("{key} = {value}: {reason}; fix the value")]
    BadValue {
        key: String,
        value: String,
        reason: String,
    },
    #[error("{key} = {value}: a flag takes 1 or 0 (or true/false, yes/no, on/off); fix the value")]
    BadFlag { key: String, value: String },
    #[error("has no block [{block}] (it has: {have}); choose one with -K, or add the block")]
    MissingBlock { block: String, have: String },
    #[error(
        "[{block}] inherits [{parent}], which this file does not have (it has: {have}); fix {via}"
    )]
    MissingParent {
        block: String,
        parent: String,
        have: String,
        via: &'static str,
    },
    #[error("config-block-inherits goes round in a circle: {chain}; remove one of these links")]
    InheritCycle { chain: String },
    #[error("{key}: %{name}% is not an option; {hint}write %% for a literal % sign")]
    UnknownReference {
        key: String,
        name: String,
        /// `did you mean %label%? ` or empty.
        hint: String,
    },
    #[error("{key}: %{name}% refers to option {name}, which is set neither on the command line nor in the block and has no default; set it, or write %% for a literal % sign")]
    UnsetReference { key: String, name: String },
    #[error("%option% references go round in a circle: {chain}; break the circle")]
    ReferenceCycle { chain: String },
    #[error("{key} = {value}: {reason}")]
    HandlerArgs {
        key: String,
        value: String,
        reason: String,
    },
}

/// An error in a config file: where, and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileError {
    pub file: PathBuf,
    /// `None` when no single line is at fault (the file cannot be read, the
    /// chosen block is missing, `--config-block-inherits` names no block).
    pub line: Option<usize>,
    /// Boxed to keep `Result`s small.
    pub kind: Box<ErrorKind>,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = path::display_os(&self.file);
        match self.line {
            Some(line) => write!(f, "{file}:{line}: {}", self.kind),
            None => write!(f, "{file}: {}", self.kind),
        }
    }
}

impl std::error::Error for FileError {}

/// A value for messages: escaped, and shortened if long.
fn shown(bytes: &[u8]) -> String {
    const MAX: usize = 80;
    let s = path::display(bytes);
    if s.chars().count() <= MAX {
        return s;
    }
    let cut: String = s.chars().take(MAX).collect();
    format!("{cut}…")
}

fn is_blank(b: u8) -> bool {
    b.is_ascii_whitespace()
}

fn trim_start(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|&&c| is_blank(c)).count();
    &b[n..]
}

fn trim_end(b: &[u8]) -> &[u8] {
    let n = b.iter().rev().take_while(|&&c| is_blank(c)).count();
    &b[..b.len() - n]
}

/// A `[name]` line: the block it opens (a name used once, without
/// brackets or control characters).
fn block_header(path: &Path, line: usize, t: &[u8], blocks: &[Block]) -> Result<Block, FileError> {
    let at = |line: usize, kind: ErrorKind| FileError {
        file: path.to_path_buf(),
        line: Some(line),
        kind: Box::new(kind),
    };
    let syntax = |line: usize, msg: String| at(line, ErrorKind::Syntax(msg));
    let t = trim_end(t);
    let Some(inner) = t.strip_prefix(b"[").and_then(|x| x.strip_suffix(b"]")) else {
        return Err(syntax(
            line,
            format!(
                "a block header is `[name]` alone on its line, not {}; fix the header",
                shown(t)
            ),
        ));
    };
    let name = std::str::from_utf8(trim_start(trim_end(inner))).map_err(|_| {
        syntax(
            line,
            format!("block name {} is not UTF-8; rename the block", shown(inner)),
        )
    })?;
    if name.is_empty() || name.contains(['[', ']']) || name.chars().any(char::is_control) {
        return Err(syntax(
            line,
            format!(
                "block name {} is empty or has brackets or control characters; rename the block",
                shown(inner)
            ),
        ));
    }
    if let Some(b) = blocks.iter().find(|b| b.name == name) {
        return Err(at(
            line,
            ErrorKind::DuplicateBlock {
                block: name.to_string(),
                first: b.line,
            },
        ));
    }
    Ok(Block {
        name: name.to_string(),
        line,
        entries: Vec::new(),
    })
}

impl ConfigFile {
    /// Reads and parses `path`. A missing, unreadable or non-regular file
    /// is an error ([`ErrorKind::Read`]).
    pub fn load(path: &Path) -> Result<ConfigFile, FileError> {
        let read_err = |reason: String| FileError {
            file: path.to_path_buf(),
            line: None,
            kind: Box::new(ErrorKind::Read(reason)),
        };
        let md = std::fs::metadata(path).map_err(|e| {
            read_err(match e.kind() {
                std::io::ErrorKind::NotFound => "it does not exist".to_string(),
                _ => e.to_string(),
            })
        })?;
        if !md.is_file() {
            return Err(read_err("it is not a regular file".to_string()));
        }
        if md.len() > MAX_SIZE {
            return Err(read_err(format!(
                "it is larger than {MAX_SIZE} bytes, too large for a config file"
            )));
        }
        let bytes = std::fs::read(path).map_err(|e| read_err(e.to_string()))?;
        ConfigFile::parse(path, &bytes)
    }

    /// Parses `text` as the contents of `path` (which is only used in
    /// messages). Warnings (trailing whitespace) are kept in
    /// [`ConfigFile::warnings`].
    pub fn parse(path: &Path, text: &[u8]) -> Result<ConfigFile, FileError> {
        let text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
        let at = |line: usize, kind: ErrorKind| FileError {
            file: path.to_path_buf(),
            line: Some(line),
            kind: Box::new(kind),
        };
        let syntax = |line: usize, msg: String| at(line, ErrorKind::Syntax(msg));
        let mut blocks: Vec<Block> = Vec::new();
        let mut warnings = Vec::new();
        for (idx, raw) in text.split(|&b| b == b'\n').enumerate() {
            let line = idx + 1;
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            let t = trim_start(raw);
            if t.is_empty() || t[0] == b'#' || t[0] == b';' {
                continue;
            }
            if t[0] == b'[' {
                blocks.push(block_header(path, line, t, &blocks)?);
                continue;
            }
            let Some(eq) = t.iter().position(|&b| b == b'=') else {
                return Err(syntax(
                    line,
                    format!(
                        "expected `option = value`, a `[block]` header, a `#` comment or a blank line, not {}; fix or comment out the line",
                        shown(trim_end(t))
                    ),
                ));
            };
            let key_bytes = trim_end(&t[..eq]);
            if key_bytes.is_empty() {
                return Err(syntax(
                    line,
                    format!(
                        "`{}` has no option name before the `=`; write `option = value`",
                        shown(trim_end(t))
                    ),
                ));
            }
            let key = std::str::from_utf8(key_bytes)
                .ok()
                .filter(|k| !k.chars().any(char::is_control))
                .ok_or_else(|| {
                    syntax(
                        line,
                        format!(
                            "option name {} has bytes no option name has; keys are long option names such as watch-dir",
                            shown(key_bytes)
                        ),
                    )
                })?
                .to_string();
            let after = trim_start(&t[eq + 1..]);
            let value = trim_end(after);
            let splits_words = key == HANDLER_ARGS || key == INITIAL_HANDLER_ARGS;
            if value.len() != after.len() && !value.is_empty() && !splits_words {
                warnings.push(format!(
                    "{}:{line}: removed trailing whitespace from the value of {key} ({}); clsync would keep it as part of the value",
                    path::display_os(path),
                    shown(value)
                ));
            }
            let Some(block) = blocks.last_mut() else {
                return Err(at(line, ErrorKind::OutsideBlock { key }));
            };
            if let Some(first) = block.get(&key) {
                return Err(at(
                    line,
                    ErrorKind::DuplicateKey {
                        key,
                        block: block.name.clone(),
                        first: first.line,
                    },
                ));
            }
            block.entries.push(Entry {
                key,
                value: OsString::from_vec(value.to_vec()),
                line,
            });
        }
        Ok(ConfigFile {
            path: path.to_path_buf(),
            blocks,
            warnings,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    pub fn block(&self, name: &str) -> Option<&Block> {
        self.blocks.iter().find(|b| b.name == name)
    }

    /// Warnings found while parsing, one line each, naming `file:line`.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    fn error(&self, line: Option<usize>, kind: ErrorKind) -> FileError {
        FileError {
            file: self.path.clone(),
            line,
            kind: Box::new(kind),
        }
    }

    fn block_names(&self) -> String {
        if self.blocks.is_empty() {
            return "no blocks".to_string();
        }
        self.blocks
            .iter()
            .map(|b| format!("[{}]", b.name))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Block `name` followed by its ancestors, nearest first. `parent`
    /// replaces `name`'s own `config-block-inherits` (`Some("")`: none).
    pub fn chain(&self, name: &str, parent: Option<&str>) -> Result<Vec<&Block>, FileError> {
        let first = self.block(name).ok_or_else(|| {
            self.error(
                None,
                ErrorKind::MissingBlock {
                    block: shown(name.as_bytes()),
                    have: self.block_names(),
                },
            )
        })?;
        let mut chain = vec![first];
        let mut next: Option<(String, Option<usize>)> = match parent {
            Some("") => None,
            Some(p) => Some((p.to_string(), None)),
            None => first.parent().map(|(p, l)| (p, Some(l))),
        };
        while let Some((pname, line)) = next {
            let child = chain.last().map_or(name, |b| b.name.as_str()).to_string();
            if let Some(pos) = chain.iter().position(|b| b.name == pname) {
                let mut names: Vec<String> = chain[pos..]
                    .iter()
                    .map(|b| format!("[{}]", b.name))
                    .collect();
                names.push(format!("[{pname}]"));
                return Err(self.error(
                    line,
                    ErrorKind::InheritCycle {
                        chain: names.join(" → "),
                    },
                ));
            }
            let Some(p) = self.block(&pname) else {
                return Err(self.error(
                    line,
                    ErrorKind::MissingParent {
                        block: child,
                        parent: shown(pname.as_bytes()),
                        have: self.block_names(),
                        via: if line.is_some() {
                            "its config-block-inherits line"
                        } else {
                            "--config-block-inherits"
                        },
                    },
                ));
            };
            chain.push(p);
            next = p.parent().map(|(n, l)| (n, Some(l)));
        }
        Ok(chain)
    }

    /// The settings block `name` ends up with after inheritance (see
    /// [`ConfigFile::chain`] for `parent`).
    pub fn settings(&self, name: &str, parent: Option<&str>) -> Result<Settings<'_>, FileError> {
        let chain = self.chain(name, parent)?;
        let mut entries: Vec<&Entry> = Vec::new();
        for block in &chain {
            for e in &block.entries {
                if e.key != INHERITS && !entries.iter().any(|x| x.key == e.key) {
                    entries.push(e);
                }
            }
        }
        Ok(Settings {
            file: self,
            chain,
            entries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::cli::Args;
    use clap::{CommandFactory, Parser};

    const FILE: &str = "/etc/livesync/test.conf";

    fn parse(text: &str) -> Result<ConfigFile, FileError> {
        ConfigFile::parse(Path::new(FILE), text.as_bytes())
    }

    fn parsed(text: &str) -> ConfigFile {
        parse(text).unwrap_or_else(|e| panic!("parse failed: {e}"))
    }

    /// The command line (after the program name) as clap records it.
    fn cli(args: &[&str]) -> CommandLine {
        let mut v = vec!["livesync"];
        v.extend_from_slice(args);
        Args::try_parse_from(v).expect("clap").given
    }

    /// `file_args` for `block` of `text` under the command line `args`.
    fn args_of(text: &str, block: &str, args: &[&str]) -> Result<FileArgs, FileError> {
        let f = parsed(text);
        let given = cli(args);
        let settings = f.settings(block, None)?;
        file_args(&settings, &Args::command(), &given)
    }

    fn words(text: &str, block: &str, args: &[&str]) -> Vec<String> {
        args_of(text, block, args)
            .unwrap_or_else(|e| panic!("{e}"))
            .words
            .iter()
            .map(|w| w.to_string_lossy().into_owned())
            .collect()
    }

    fn err_of(r: Result<FileArgs, FileError>) -> FileError {
        match r {
            Ok(a) => panic!("expected an error, got {a:?}"),
            Err(e) => e,
        }
    }

    /// The error's one line, checked to start with `FILE:line: `.
    fn line_err(e: &FileError, line: usize) -> String {
        let s = e.to_string();
        assert!(!s.contains('\n'), "error is not one line: {s:?}");
        assert!(
            s.starts_with(&format!("{FILE}:{line}: ")),
            "error does not name {FILE}:{line}: {s}"
        );
        assert_eq!(e.line, Some(line));
        s
    }

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn blocks_entries_comments_and_blank_lines() {
        let f = parsed(
            "\u{feff}# a comment\n\
             ; another comment\n\
             \n\
             [default]\n\
             \twatch-dir\t=\t/srv/www\n\
             label=www\r\n\
             lists-dir =\n\
             \x20 # indented comment\n\
             [ other block ]   \n\
             delay-collect = 5 # not a comment\n",
        );
        assert_eq!(
            f.blocks()
                .iter()
                .map(|b| b.name.as_str())
                .collect::<Vec<_>>(),
            ["default", "other block"]
        );
        let d = f.block("default").expect("default");
        assert_eq!(d.line, 4);
        let got: Vec<(&str, &str, usize)> = d
            .entries
            .iter()
            .map(|e| (e.key.as_str(), e.value.to_str().expect("utf8"), e.line))
            .collect();
        assert_eq!(
            got,
            [
                ("watch-dir", "/srv/www", 5),
                ("label", "www", 6),
                ("lists-dir", "", 7)
            ]
        );
        let o = f.block("other block").expect("other");
        assert_eq!(o.entries[0].value, "5 # not a comment");
        assert!(f.warnings().is_empty(), "{:?}", f.warnings());
    }

    #[test]
    fn values_are_bytes_not_utf8() {
        let f =
            ConfigFile::parse(Path::new(FILE), b"[b]\nwatch-dir = /srv/\xff\xfe\n").expect("parse");
        assert_eq!(
            f.block("b").expect("b").entries[0].value.as_bytes(),
            b"/srv/\xff\xfe"
        );
    }

    #[test]
    fn syntax_errors_name_file_line_and_fix() {
        let cases: &[(&str, usize, &str)] = &[
            ("[default\nlabel = x\n", 1, "block header is `[name]`"),
            ("[default] x\n", 1, "block header is `[name]`"),
            ("[]\n", 1, "empty"),
            ("[a[b]\n", 1, "brackets"),
            ("[default]\nlabel x\n", 2, "expected `option = value`"),
            ("[default]\n = x\n", 2, "no option name"),
            ("[default]\nla\x1bbel = x\n", 2, "la\\x1bbel has bytes"),
            ("# c\nlabel = x\n[default]\n", 2, "before any [block]"),
            (
                "[a]\nlabel = x\n\nlabel = y\n",
                4,
                "set twice in [a] (first on line 2)",
            ),
            ("[a]\n[b]\n[a]\n", 3, "appears twice (first on line 1)"),
        ];
        for (text, line, needle) in cases {
            let e = parse(text).expect_err(text);
            let s = line_err(&e, *line);
            assert!(s.contains(needle), "{text:?}: {s}");
            assert!(s.contains("; "), "{text:?}: no fix in {s}");
        }
    }

    #[test]
    fn trailing_whitespace_is_trimmed_with_a_warning() {
        let f = parsed("[a]\nwatch-dir = /obb/1 \t\nlabel =   x\nlists-dir =   \n-- = -a  \n");
        let a = f.block("a").expect("a");
        assert_eq!(a.get("watch-dir").expect("w").value, "/obb/1");
        assert_eq!(a.get("label").expect("l").value, "x");
        assert_eq!(a.get("lists-dir").expect("l").value, "");
        assert_eq!(
            f.warnings().len(),
            1,
            "only the value with trailing blanks warns: {:?}",
            f.warnings()
        );
        let w = &f.warnings()[0];
        assert!(w.starts_with(&format!("{FILE}:2: ")), "{w}");
        assert!(
            w.contains("trailing whitespace") && w.contains("watch-dir"),
            "{w}"
        );
    }

    const FAMILY: &str = "\
[grandparent]
label = gp
lists-dir = /gp
retries = 1

[parent]
config-block-inherits = grandparent
label = p
delay-collect = 2

[child]
config-block-inherits = parent
delay-collect = 3
rules-file =

[orphan]
config-block-inherits = nobody
";

    #[test]
    fn inheritance_child_beats_parent_beats_grandparent() {
        let f = parsed(FAMILY);
        let s = f.settings("child", None).expect("settings");
        assert_eq!(s.chain(), ["child", "parent", "grandparent"]);
        let got: Vec<(&str, &str, usize)> = s
            .entries()
            .map(|e| (e.key.as_str(), e.value.to_str().expect("utf8"), e.line))
            .collect();
        assert_eq!(
            got,
            [
                ("delay-collect", "3", 13),
                ("rules-file", "", 14),
                ("label", "p", 8),
                ("lists-dir", "/gp", 3),
                ("retries", "1", 4),
            ],
            "reading order, nearest block wins, config-block-inherits is not a setting"
        );
        assert_eq!(
            words(FAMILY, "child", &[]),
            [
                "--delay-collect=3",
                "--label=p",
                "--lists-dir=/gp",
                "--retries=1"
            ],
            "an empty value sets nothing (and hides nothing inherited)"
        );
    }

    #[test]
    fn command_line_parent_replaces_the_blocks_own() {
        let f = parsed(FAMILY);
        let s = f.settings("child", Some("grandparent")).expect("settings");
        assert_eq!(s.chain(), ["child", "grandparent"]);
        assert_eq!(s.get("label").expect("label").value, "gp");
        let s = f.settings("child", Some("")).expect("settings");
        assert_eq!(s.chain(), ["child"], "an empty parent cuts the chain");
        let e = f.settings("child", Some("nobody")).expect_err("missing");
        let s = e.to_string();
        assert_eq!(e.line, None);
        assert!(
            s.starts_with(&format!("{FILE}: ")) && s.contains("--config-block-inherits"),
            "{s}"
        );
    }

    #[test]
    fn missing_blocks_are_errors() {
        let f = parsed(FAMILY);
        let e = f.settings("nope", None).expect_err("missing");
        let s = e.to_string();
        assert!(
            s.starts_with(&format!("{FILE}: has no block [nope]")) && s.contains("-K"),
            "{s}"
        );
        assert!(
            s.contains("[grandparent], [parent], [child], [orphan]"),
            "{s}"
        );
        let e = f.settings("orphan", None).expect_err("missing parent");
        let s = line_err(&e, 17);
        assert!(s.contains("[orphan] inherits [nobody]"), "{s}");
    }

    #[test]
    fn inheritance_cycles_are_errors() {
        let f = parsed("[a]\nconfig-block-inherits = b\n[b]\nconfig-block-inherits = c\n[c]\nconfig-block-inherits = a\n[self]\nconfig-block-inherits = self\n");
        let e = f.settings("a", None).expect_err("cycle");
        let s = line_err(&e, 6);
        assert!(s.contains("[a] → [b] → [c] → [a]"), "{s}");
        let e = f.settings("b", None).expect_err("cycle from b");
        assert!(e.to_string().contains("[b] → [c] → [a] → [b]"), "{e}");
        let e = f.settings("self", None).expect_err("self");
        let s = line_err(&e, 8);
        assert!(s.contains("[self] → [self]"), "{s}");
    }

    #[test]
    fn substitution_uses_final_values() {
        let text = "\
[base]
lists-dir = /run/ls-%label%/%%/x%
label = base

[top]
config-block-inherits = base
label = top-%delay-sync%
sync-handler = %RSYNC-ARGS%-%PID%
rules-file = 50%-off
";
        // A parent's reference sees the child's value, which sees a default.
        assert_eq!(
            words(text, "top", &[]),
            [
                "--label=top-30",
                "--sync-handler=%RSYNC-ARGS%-%PID%",
                "--rules-file=50%-off",
                "--lists-dir=/run/ls-top-30/%/x%",
            ]
        );
        // The command line's value wins inside references too.
        assert_eq!(
            words(text, "top", &["-l", "cli"]),
            [
                "--sync-handler=%RSYNC-ARGS%-%PID%",
                "--rules-file=50%-off",
                "--lists-dir=/run/ls-cli/%/x%",
            ]
        );
        assert_eq!(
            words(text, "base", &["-w", "7"]),
            ["--lists-dir=/run/ls-base/%/x%", "--label=base"]
        );
    }

    #[test]
    fn substitution_of_the_config_file_and_block() {
        let text = "[b]\nlabel = %config-block%@%config-file%\n";
        assert_eq!(words(text, "b", &[]), [format!("--label=default@{FILE}")]);
        assert_eq!(
            words(text, "b", &["-K", "b", "-H", "/x.conf"]),
            ["--label=b@/x.conf"]
        );
    }

    #[test]
    fn substitution_errors() {
        let e = err_of(args_of("[b]\n\nlabel = %lable%\n", "b", &[]));
        let s = line_err(&e, 3);
        assert!(
            s.contains("%lable% is not an option") && s.contains("%label%"),
            "{s}"
        );
        let e = err_of(args_of("[b]\nlabel = %rules-file%\n", "b", &[]));
        let s = line_err(&e, 2);
        assert!(
            matches!(*e.kind, ErrorKind::UnsetReference { .. }) && s.contains("rules-file"),
            "{s}"
        );
        // Set on the command line, it resolves.
        assert_eq!(
            words("[b]\nlabel = %rules-file%\n", "b", &["-R", "/r"]),
            ["--label=/r"]
        );
    }

    #[test]
    fn substitution_cycles_are_errors() {
        let text = "[p]\nlists-dir = /x/%label%\n[c]\nconfig-block-inherits = p\nlabel = %rules-file%\nrules-file = %lists-dir%\n";
        let e = err_of(args_of(text, "c", &[]));
        assert!(matches!(*e.kind, ErrorKind::ReferenceCycle { .. }), "{e}");
        let s = e.to_string();
        assert!(!s.contains('\n'));
        assert!(s.contains("label → rules-file → lists-dir → label"), "{s}");
        let e = err_of(args_of("[s]\nlabel = a%label%\n", "s", &[]));
        let s = line_err(&e, 2);
        assert!(s.contains("label → label"), "{s}");
        // The command line breaks the cycle: its value is not substituted.
        assert_eq!(
            words("[s]\nlabel = a%label%\n", "s", &["-l", "z"]),
            Vec::<String>::new()
        );
    }

    #[test]
    fn handler_arguments_are_split_and_quoted() {
        assert_eq!(
            split_args(br#"-a  "b c" 'd "e'f "" x\y "q\"r\\s" --x='*'"#).expect("split"),
            os(&["-a", "b c", "d \"ef", "", "x\\y", "q\"r\\s", "--x=*"])
        );
        assert_eq!(split_args(b"").expect("empty"), Vec::<OsString>::new());
        assert_eq!(split_args(b" \t ").expect("blank"), Vec::<OsString>::new());
        assert!(split_args(b"a 'b").expect_err("open '").contains("byte 3"));
        assert!(split_args(b"a \"b\\\"").is_err());
    }

    #[test]
    fn double_and_triple_dash_keys() {
        let text =
            "[b]\n-- = %RSYNC-ARGS% \"%watch-dir%/\" %destination-dir%/\n--- = -a --initial\n";
        let a = args_of(text, "b", &[]).expect("args");
        assert!(a.words.is_empty());
        assert_eq!(
            a.handler_args,
            Some(os(&["%RSYNC-ARGS%", "%watch-dir%/", "%destination-dir%/"])),
            "handler arguments are not substituted when read"
        );
        assert_eq!(a.initial_handler_args, os(&["-a", "--initial"]));
        let a = args_of(text, "b", &["--", "cli"]).expect("args");
        assert_eq!(a.handler_args, None, "the command line's -- wins");
        assert_eq!(a.initial_handler_args, os(&["-a", "--initial"]));
        let e = err_of(args_of("[b]\nlabel = x\n-- = 'open\n", "b", &[]));
        let s = line_err(&e, 3);
        assert!(s.contains("never closed"), "{s}");
    }

    #[test]
    fn flags_lists_and_empty_values() {
        let text = "[p]\nignore-exitcode = 1\nlabel = parent\n[b]\nconfig-block-inherits = p\nquiet = yes\ndont-unlink-lists = 0\nignore-exitcode = 23, 24,,\ndebug = 2\ncustom-signals = 29:p,USR1:b\nlabel =\n";
        assert_eq!(
            words(text, "b", &[]),
            [
                "--quiet",
                "--ignore-exitcode=23",
                "--ignore-exitcode=24",
                "--debug=2",
                "--custom-signals=29:p",
                "--custom-signals=USR1:b",
            ]
        );
        let e = err_of(args_of("[b]\nquiet = 2\n", "b", &[]));
        let s = line_err(&e, 2);
        assert!(s.contains("quiet = 2: a flag takes 1 or 0"), "{s}");
    }

    #[test]
    fn bad_values_fail_claps_parser_with_file_and_line() {
        let cases: &[(&str, &str)] = &[
            ("delay-collect = soon", "invalid value 'soon'"),
            ("retries = -1", "-1"),
            ("ignore-exitcode = 23,x", "invalid value 'x'"),
            ("custom-signals = 9:b", "SIGKILL"),
            ("threshold-bigfile = 1e3", "1e3"),
            ("delay-sync = 1\r2", "1\\r2"),
        ];
        for (line, needle) in cases {
            let text = format!("[b]\n# padding\n{line}\n");
            let e = err_of(args_of(&text, "b", &[]));
            let s = line_err(&e, 3);
            assert!(matches!(*e.kind, ErrorKind::BadValue { .. }), "{s}");
            assert!(
                s.contains(needle) && s.ends_with("; fix the value"),
                "{line}: {s}"
            );
        }
        // A bad value the command line overrides is never used, so not checked.
        assert_eq!(
            words("[b]\ndelay-collect = soon\n", "b", &["-t", "1"]),
            Vec::<String>::new()
        );
    }

    #[test]
    fn unknown_keys_are_ignored_with_a_warning_and_a_hint() {
        let cases: &[(&str, &str)] = &[
            ("watchdir = /x", "did you mean `watch-dir`?"),
            ("--watch-dir = /x", "without dashes: `watch-dir = …`"),
            ("W = /x", "write `watch-dir = …`"),
            ("-t = 1", "write `delay-collect = …`"),
            (
                "cluster-iface = /x",
                "clsync option that livesync does not support",
            ),
            (
                "auto-add-rules-w = 1",
                "write `+w` rules for the directories",
            ),
            ("syslog = 1", "write `output = syslog`"),
            ("rules-path = /r", "did you mean `rules-file`?"),
            ("frobnicate = 1", "long option names without dashes"),
        ];
        for (line, needle) in cases {
            let text = format!("[b]\nlabel = ok\n{line}\n");
            let a = args_of(&text, "b", &[]).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(a.words, os(&["--label=ok"]), "{line}");
            assert_eq!(a.warnings.len(), 1, "{line}: {:?}", a.warnings);
            let w = &a.warnings[0];
            assert!(w.starts_with(&format!("{FILE}:3: unknown option `")), "{w}");
            assert!(
                w.contains(needle) && w.ends_with(" (the line is ignored, as clsync does)"),
                "{line}: {w}"
            );
        }
        // Keys that choose the file or the block are still errors.
        for line in ["config-file = /x", "config-block = x"] {
            let text = format!("[b]\nlabel = ok\n{line}\n");
            let s = line_err(&err_of(args_of(&text, "b", &[])), 3);
            assert!(s.contains("cannot be set inside one"), "{s}");
        }
        // Even in a parent block, and even when the command line gives it.
        let text = "[p]\ncluster-iface = /x\n[b]\nconfig-block-inherits = p\n";
        let a = args_of(text, "b", &[]).expect("ok");
        assert!(
            a.warnings[0].starts_with(&format!("{FILE}:2: ")),
            "{:?}",
            a.warnings
        );
        let a = args_of("[b]\nwatchdir = /x\n", "b", &["-W", "/y"]).expect("ok");
        assert!(
            a.warnings[0].starts_with(&format!("{FILE}:2: ")),
            "{:?}",
            a.warnings
        );
    }

    #[test]
    fn command_line_options_are_left_out() {
        let text = "[b]\nwatch-dir = /f\nlabel = f\nignore-exitcode = 1,2\nquiet = 1\n";
        assert_eq!(
            words(text, "b", &["-W", "/c", "-x", "3", "-q"]),
            ["--label=f"]
        );
        // Given on the command line at its default value still counts.
        assert_eq!(
            words(text, "b", &["-l", "nolabel"]),
            [
                "--watch-dir=/f",
                "--ignore-exitcode=1",
                "--ignore-exitcode=2",
                "--quiet"
            ]
        );
    }

    #[test]
    fn default_paths_in_order() {
        assert_eq!(
            default_paths(Some(Path::new("/home/u"))),
            [
                PathBuf::from("/home/u/.livesync.conf"),
                PathBuf::from("/etc/livesync/livesync.conf"),
                PathBuf::from("/home/u/.clsync.conf"),
                PathBuf::from("/etc/clsync/clsync.conf"),
            ]
        );
        assert_eq!(
            default_paths(None),
            [
                PathBuf::from("/etc/livesync/livesync.conf"),
                PathBuf::from("/etc/clsync/clsync.conf"),
            ]
        );
        assert_eq!(default_paths(Some(Path::new(""))).len(), 2);
    }

    #[test]
    fn find_default_takes_the_first_readable_file() {
        let t = tempfile::tempdir().expect("tempdir");
        let absent = t.path().join("absent.conf");
        let dir = t.path().join("dir.conf");
        std::fs::create_dir(&dir).expect("mkdir");
        let under_file = t.path().join("first.conf/x.conf");
        let first = t.path().join("first.conf");
        let second = t.path().join("second.conf");
        std::fs::write(&first, "[default]\nlabel = first\n").expect("write");
        std::fs::write(&second, "[default]\nlabel = second\n").expect("write");
        let mut warnings = Vec::new();
        let f = find_default(
            &[
                absent.clone(),
                under_file,
                dir.clone(),
                first.clone(),
                second,
            ],
            &mut warnings,
        )
        .expect("ok")
        .expect("found");
        assert_eq!(f.path(), first);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("dir.conf"), "{warnings:?}");
        let mut warnings = Vec::new();
        assert!(find_default(std::slice::from_ref(&absent), &mut warnings)
            .expect("ok")
            .is_none());
        assert!(warnings.is_empty());
        std::fs::write(&first, "[default]\nbroken\n").expect("write");
        let e = find_default(&[absent, first], &mut Vec::new()).expect_err("broken");
        assert_eq!(e.line, Some(2));
    }

    #[test]
    fn load_refuses_missing_and_non_regular_files() {
        let t = tempfile::tempdir().expect("tempdir");
        let missing = t.path().join("missing.conf");
        let e = ConfigFile::load(&missing).expect_err("missing");
        let s = e.to_string();
        assert!(
            s.contains("missing.conf: cannot read it: it does not exist; fix -H"),
            "{s}"
        );
        let e = ConfigFile::load(t.path()).expect_err("dir");
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }

    /// The example in the module docs does what the docs say.
    #[test]
    fn the_documented_example() {
        let text = "\
# /etc/livesync/livesync.conf
[default]
watch-dir       = /srv/www
destination-dir = /backup/www
delay-collect   = 5
label           = www
lists-dir       = /run/livesync-%label%

[rsync]
config-block-inherits = default
mode            = rsyncdirect
destination-dir = backup.example.org:/srv/www
ignore-exitcode = 23,24
-- = %RSYNC-ARGS% --bwlimit=2000 %watch-dir%/ %destination-dir%/
";
        let a = args_of(text, "rsync", &["-K", "rsync", "-t", "1"]).expect("args");
        let words: Vec<String> = a
            .words
            .iter()
            .map(|w| w.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            words,
            [
                "--mode=rsyncdirect",
                "--destination-dir=backup.example.org:/srv/www",
                "--ignore-exitcode=23",
                "--ignore-exitcode=24",
                "--watch-dir=/srv/www",
                "--label=www",
                "--lists-dir=/run/livesync-www",
            ]
        );
        assert_eq!(
            a.handler_args,
            Some(os(&[
                "%RSYNC-ARGS%",
                "--bwlimit=2000",
                "%watch-dir%/",
                "%destination-dir%/"
            ]))
        );
    }
}
