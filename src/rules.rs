//! clsync's rule grammar `[+-][fdwmsW*]regex`: parsing, describing and matching.
//!
//! This module owns the rules text format and the one question the rest of
//! livesync asks of it: may this relative path, of this kind, take part in
//! this action ([`Rules::permits`])? It compiles every pattern once into a
//! single [`RegexSet`] plus per-rule metadata, so a decision is one set
//! match and a scan of the matching indices. It does no filesystem work
//! beyond reading a rules file, keeps no state between calls, and never
//! decides what a handler does with the answer. Its [`glob`] submodule
//! turns rsync-style globs (`--exclude`, `--include`) into rule lines.
//!
//! # Grammar
//!
//! One rule per line: a sign, one type character, then the regex (the rest
//! of the line, taken literally — trailing spaces and `#` included).
//!
//! | sign | meaning |
//! |------|---------|
//! | `+`  | include (permit) |
//! | `-`  | exclude (reject) |
//!
//! | type | applies to | actions |
//! |------|------------|---------|
//! | `f`  | non-directories (files, symlinks, fifos, devices) | all |
//! | `d`  | directories | walk, monitor, sync |
//! | `w`  | directories | walk |
//! | `m`  | directories | monitor |
//! | `s`  | directories | sync |
//! | `W`  | directories | walk, monitor |
//! | `*`  | everything | all |
//!
//! The regex is matched against the path relative to the watch directory,
//! with no leading slash; the watch directory itself is the empty path, so
//! `^$` matches it. The first rule whose type covers the (kind, action) asked
//! about and whose regex matches decides; when none does, the path is
//! permitted. Walking a directory asks [`Action::Walk`], watching it asks
//! [`Action::Monitor`], syncing it asks [`Action::Sync`]; for a file only
//! [`Action::Sync`] is ever asked.
//!
//! Lines that are empty or hold only whitespace are ignored, and so are lines
//! whose first non-whitespace byte is `#` (comments). There are no trailing
//! comments: a `#` after a rule is part of its regex. A `\r` before the `\n`
//! (CRLF files) is dropped, and the last line needs no newline.
//!
//! # Regex flavour
//!
//! Patterns are [`regex`] crate syntax (close to POSIX ERE for everyday
//! patterns; no backreferences or look-around) matched against raw bytes:
//! `.` and negated classes like `[^/]` match any single byte, newline
//! included, so names that are not UTF-8 are matched like any others.
//! Non-ASCII literals match their UTF-8 bytes, a byte can be written `\xNN`,
//! and bytes in the rules file that are not UTF-8 match themselves. Classes
//! and case folding are ASCII-only; start a pattern with `(?u)` to get
//! Unicode classes (`\w`, `\pL`, `[é]`, `(?i)` on non-ASCII) at the price of
//! `.` no longer matching bytes that are not UTF-8.
//!
//! # Limits
//!
//! A rules file may hold at most [`MAX_RULES_BYTES`] bytes and a rules list
//! at most [`MAX_RULES`] rules; more is refused before anything is
//! compiled, with one line naming the file and the limit. Compiling costs
//! memory in proportion to the rules (a few kilobytes each), and far fewer
//! than the limit already exceed the regex size limit together: without
//! these bounds a 10 MB file took over a gigabyte before it was refused.
//!
//! # Differences from clsync
//!
//! * `W` means walk + monitor, as documented; clsync lowercases the type
//!   character, so its `W` is `w` (walk only), and its `D`, `F` are `d`, `f`.
//!   Here type characters are case-sensitive and `D`, `F`, `M`, `S` are errors.
//! * A bad line (unknown sign or type, invalid regex) is an error naming
//!   `file:line`, the problem and the fix; clsync skips unknown types with a
//!   warning and rejects an indented comment or a whitespace-only line.
//! * clsync drops the last character of a final line without a newline; here
//!   it is kept.
//! * clsync's `f` means regular files only; here it covers every
//!   non-directory.
//! * The regex flavour is the `regex` crate's, not POSIX ERE (see above).

pub mod glob; // --exclude/--include: rsync-style globs as rule lines

use std::path::Path;

use regex::bytes::{RegexBuilder, RegexSet, RegexSetBuilder};

/// Most bytes a rules file may hold.
pub const MAX_RULES_BYTES: u64 = 512 << 10;
/// Most rules in one rules list.
pub const MAX_RULES: usize = 10_000;

/// What a path is, as far as rules care.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Anything that is not a directory: files, symlinks, fifos, devices.
    File,
    Dir,
}

/// What is about to be done with a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Descend into a directory (initial walk, rescans).
    Walk,
    /// Put a watch on a directory.
    Monitor,
    /// Sync the path to the destination.
    Sync,
}

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// A line that is not a rule; `message` says what is wrong and the fix.
    #[error("{origin}:{line}: {message}")]
    Bad {
        origin: String,
        line: usize,
        message: String,
    },
    #[error("cannot read rules file {path}: {source}; check the path and its permissions")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "rules file {path} is {size} bytes, more than the {limit} a rules file may hold; \
         use fewer rules (one pattern with alternatives, a|b|c, instead of many)"
    )]
    FileTooBig { path: String, size: u64, limit: u64 },
    #[error(
        "{origin}: {count} rules, more than the {limit} livesync compiles; \
         use fewer rules (one pattern with alternatives, a|b|c, instead of many)"
    )]
    TooMany {
        origin: String,
        count: usize,
        limit: usize,
    },
    /// Every pattern compiles on its own, but all of them together exceed
    /// the regex size limit.
    #[error(
        "{origin}: the {count} rules together are too big to compile ({detail}); \
         use fewer or simpler patterns (avoid large counted repetitions like .{{1000}})"
    )]
    TooBig {
        origin: String,
        count: usize,
        detail: String,
    },
}

/// Which (kind, action) pairs a rule covers: one bit per pair.
type Cover = u8;

const fn bit(kind: Kind, action: Action) -> Cover {
    let k = match kind {
        Kind::File => 0,
        Kind::Dir => 3,
    };
    let a = match action {
        Action::Walk => 0,
        Action::Monitor => 1,
        Action::Sync => 2,
    };
    1 << (k + a)
}

const FILE_ALL: Cover = bit(Kind::File, Action::Walk)
    | bit(Kind::File, Action::Monitor)
    | bit(Kind::File, Action::Sync);
const DIR_WALK: Cover = bit(Kind::Dir, Action::Walk);
const DIR_MONITOR: Cover = bit(Kind::Dir, Action::Monitor);
const DIR_SYNC: Cover = bit(Kind::Dir, Action::Sync);
const DIR_ALL: Cover = DIR_WALK | DIR_MONITOR | DIR_SYNC;

/// The type characters, what they cover, and how `describe` names them.
const TYPES: [(u8, Cover, &str); 7] = [
    (b'f', FILE_ALL, "files"),
    (b'd', DIR_ALL, "dirs: walk, monitor, sync"),
    (b'w', DIR_WALK, "dirs: walk"),
    (b'm', DIR_MONITOR, "dirs: monitor"),
    (b's', DIR_SYNC, "dirs: sync"),
    (b'W', DIR_WALK | DIR_MONITOR, "dirs: walk, monitor"),
    (b'*', FILE_ALL | DIR_ALL, "everything"),
];

fn type_info(c: u8) -> Option<(Cover, &'static str)> {
    TYPES.iter().find(|t| t.0 == c).map(|t| (t.1, t.2))
}

/// One parsed line.
#[derive(Clone, Debug)]
struct Rule {
    include: bool,
    type_char: u8,
    cover: Cover,
    /// The regex exactly as written in the rules text.
    pattern: Vec<u8>,
    /// 1-based line in the rules text.
    line: usize,
}

/// A compiled rules list. Cheap to share (`Arc`) and to query from any thread.
#[derive(Clone, Debug)]
pub struct Rules {
    origin: String,
    rules: Vec<Rule>,
    /// Pattern `i` of the set is `rules[i]`'s regex.
    set: RegexSet,
    /// Union of every rule's cover: a (kind, action) outside it is permitted
    /// without running the set.
    covered: Cover,
}

impl Default for Rules {
    fn default() -> Self {
        Rules::allow_all()
    }
}

/// The regex options every pattern is compiled with (see "Regex flavour").
fn regex_builder(pattern: &str) -> RegexBuilder {
    let mut b = RegexBuilder::new(pattern);
    b.unicode(false).dot_matches_new_line(true);
    b
}

impl Rules {
    /// No rules: everything is permitted.
    pub fn allow_all() -> Self {
        Rules {
            origin: String::new(),
            rules: Vec::new(),
            set: RegexSet::empty(),
            covered: 0,
        }
    }

    /// Parses rules text; `origin` (usually the file name) prefixes every
    /// error and `describe` line.
    pub fn parse(text: &[u8], origin: &str) -> Result<Self, RulesError> {
        // Counted before anything is compiled: compiling is what costs.
        let count = text
            .split(|&b| b == b'\n')
            .filter(|l| !is_ignored(l.strip_suffix(b"\r").unwrap_or(l)))
            .count();
        if count > MAX_RULES {
            return Err(RulesError::TooMany {
                origin: origin.to_string(),
                count,
                limit: MAX_RULES,
            });
        }
        let mut rules = Vec::new();
        let mut compiled = Vec::new();
        for (i, raw) in text.split(|&b| b == b'\n').enumerate() {
            let line = raw.strip_suffix(b"\r").unwrap_or(raw);
            if is_ignored(line) {
                continue;
            }
            let bad = |message: String| RulesError::Bad {
                origin: origin.to_string(),
                line: i + 1,
                message,
            };
            let (rule, regex_text) = parse_line(line, i + 1).map_err(bad)?;
            rules.push(rule);
            compiled.push(regex_text);
        }
        let set = RegexSetBuilder::new(&compiled)
            .unicode(false)
            .dot_matches_new_line(true)
            .build()
            .map_err(|e| RulesError::TooBig {
                origin: origin.to_string(),
                count: rules.len(),
                detail: one_line_regex_error(&e),
            })?;
        let covered = rules.iter().fold(0, |acc, r| acc | r.cover);
        Ok(Rules {
            origin: origin.to_string(),
            rules,
            set,
            covered,
        })
    }

    /// Reads and parses a rules file; errors name the file.
    pub fn from_file(path: &Path) -> Result<Self, RulesError> {
        use std::io::Read;
        let shown = crate::path::display_os(path);
        let read_err = |source| RulesError::Read {
            path: shown.clone(),
            source,
        };
        let too_big = |size| RulesError::FileTooBig {
            path: shown.clone(),
            size,
            limit: MAX_RULES_BYTES,
        };
        let f = std::fs::File::open(path).map_err(read_err)?;
        let size = f.metadata().map_err(read_err)?.len();
        if size > MAX_RULES_BYTES {
            return Err(too_big(size));
        }
        // Not a regular file (a pipe), or growing: read one byte past the
        // limit at most.
        let mut text = Vec::new();
        f.take(MAX_RULES_BYTES + 1)
            .read_to_end(&mut text)
            .map_err(read_err)?;
        if text.len() as u64 > MAX_RULES_BYTES {
            return Err(too_big(text.len() as u64));
        }
        Rules::parse(&text, &shown)
    }

    /// True when `path` (relative, no leading slash, root = empty) of this
    /// `kind` may take part in `action`.
    pub fn permits(&self, path: &[u8], kind: Kind, action: Action) -> bool {
        match self.deciding_rule(path, kind, action) {
            Some(i) => self.rules[i].include,
            None => true,
        }
    }

    /// The index (into `describe()`) of the rule that decides `permits`, or
    /// `None` when no rule applies and the path is permitted by default.
    pub fn deciding_rule(&self, path: &[u8], kind: Kind, action: Action) -> Option<usize> {
        let want = bit(kind, action);
        if self.covered & want == 0 {
            return None;
        }
        self.set
            .matches(path)
            .iter()
            .find(|&i| self.rules[i].cover & want != 0)
    }

    /// True when there are no rules (everything is permitted).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// How many rules there are (comments and blank lines not counted).
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// One line per rule, in order, for `-d` logging, e.g.
    /// `rule 1 (pwdb.rules:2): +f^passwd$ => include files`.
    pub fn describe(&self) -> Vec<String> {
        self.rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let what = type_info(r.type_char).map_or("?", |t| t.1);
                format!(
                    "rule {} ({}:{}): {}{}{} => {} {}",
                    i + 1,
                    self.origin,
                    r.line,
                    if r.include { '+' } else { '-' },
                    r.type_char as char,
                    escape(&r.pattern),
                    if r.include { "include" } else { "exclude" },
                    what
                )
            })
            .collect()
    }

    /// The rules as canonical rules text: one `\n`-terminated line per rule,
    /// patterns byte for byte as written, comments and blank lines dropped.
    /// Parsing it gives rules that decide every path the same way.
    pub fn to_text(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for r in &self.rules {
            out.push(if r.include { b'+' } else { b'-' });
            out.push(r.type_char);
            out.extend_from_slice(&r.pattern);
            if r.pattern.ends_with(b"\r") {
                // Parsing strips one CR before the newline; keep the pattern's own.
                out.push(b'\r');
            }
            out.push(b'\n');
        }
        out
    }
}

/// Blank, whitespace-only and comment lines.
fn is_ignored(line: &[u8]) -> bool {
    match line.iter().find(|b| !b.is_ascii_whitespace()) {
        None => true,
        Some(&b) => b == b'#',
    }
}

/// One rule line (no `\n`, no trailing `\r`) → the rule and the regex text to
/// compile, or a one-line message saying what is wrong and how to fix it.
fn parse_line(line: &[u8], line_no: usize) -> Result<(Rule, String), String> {
    let include = match line[0] {
        b'+' => true,
        b'-' => false,
        b if b.is_ascii_whitespace() => {
            return Err(format!(
                "leading whitespace before rule {}; start the rule in the first column",
                quote(line)
            ))
        }
        _ => {
            return Err(format!(
                "unknown sign {} in {}; a rule starts with + (include) or - (exclude), e.g. \"-f\\.tmp$\"",
                quote_byte(line[0]),
                quote(line)
            ))
        }
    };
    let Some(&type_char) = line.get(1) else {
        return Err(format!(
            "rule {} has no type; follow the sign with one of f d w m s W * (e.g. \"-*\" matches everything)",
            quote(line)
        ));
    };
    let Some((cover, _)) = type_info(type_char) else {
        let lower = type_char.to_ascii_lowercase();
        let case_hint = if type_char != lower && type_info(lower).is_some() {
            format!(
                " (types are case-sensitive: did you mean '{}'?)",
                lower as char
            )
        } else {
            String::new()
        };
        return Err(format!(
            "unknown type {} in {}{case_hint}; after the sign put one of f (files), d (dirs), \
             w (walk), m (monitor), s (sync), W (walk+monitor), * (everything)",
            quote_byte(type_char),
            quote(line)
        ));
    };
    let pattern = &line[2..];
    let regex_text = regex_text(pattern)?;
    check_dead_dollar(pattern)?;
    if let Err(e) = regex_builder(&regex_text).build() {
        return Err(regex_error_message(pattern, &e));
    }
    let rule = Rule {
        include,
        type_char,
        cover,
        pattern: pattern.to_vec(),
        line: line_no,
    };
    Ok((rule, regex_text))
}

/// The pattern as a `str` the regex crate accepts: bytes that are not UTF-8
/// become `\xNN` escapes, which (Unicode mode off) match exactly that byte.
fn regex_text(pattern: &[u8]) -> Result<String, String> {
    let mut out = String::with_capacity(pattern.len());
    for chunk in pattern.utf8_chunks() {
        out.push_str(chunk.valid());
        if let Some(&b) = chunk.invalid().first() {
            if ends_with_escape(out.as_bytes()) {
                return Err(format!(
                    "pattern {} has a backslash before the non-UTF-8 byte 0x{b:02X}; \\ cannot escape it, \
                     write the byte alone or as \\x{b:02X}",
                    quote(pattern)
                ));
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    Ok(out)
}

/// True when `s` ends in an odd number of backslashes (the next byte is escaped).
fn ends_with_escape(s: &[u8]) -> bool {
    s.iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 1
}

/// Catches the classic typo `^name$ ` (invisible trailing blank after `$`),
/// which can never match: `$` is the end of the path. Skipped when the
/// pattern sets flags (`(?x)` makes whitespace insignificant).
fn check_dead_dollar(pattern: &[u8]) -> Result<(), String> {
    let trimmed = pattern.trim_ascii_end();
    if trimmed.len() == pattern.len() || !trimmed.ends_with(b"$") {
        return Ok(());
    }
    let before_dollar = &trimmed[..trimmed.len() - 1];
    if ends_with_escape(before_dollar) || pattern.windows(2).any(|w| w == b"(?") {
        return Ok(());
    }
    Err(format!(
        "pattern {} has whitespace after '$', so it can never match; remove the trailing whitespace",
        quote(pattern)
    ))
}

/// `invalid regex "a(": unclosed group; <fix>` from a compile error.
fn regex_error_message(pattern: &[u8], e: &regex::Error) -> String {
    let what = one_line_regex_error(e);
    let fix = match e {
        regex::Error::CompiledTooBig(_) => {
            "simplify it, e.g. avoid large counted repetitions like .{1000}"
        }
        _ => regex_fix(&what),
    };
    if matches!(e, regex::Error::CompiledTooBig(_)) {
        format!("regex {} is too big ({what}); {fix}", quote(pattern))
    } else {
        format!("invalid regex {}: {what}; {fix}", quote(pattern))
    }
}

/// The regex crate's multi-line syntax error reduced to its `error:` line.
fn one_line_regex_error(e: &regex::Error) -> String {
    match e {
        regex::Error::Syntax(text) => text
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("error: "))
            .unwrap_or(text.lines().last().unwrap_or("syntax error"))
            .to_string(),
        regex::Error::CompiledTooBig(limit) if limit % (1 << 20) == 0 => {
            format!("compiled program exceeds the {} MiB limit", limit >> 20)
        }
        regex::Error::CompiledTooBig(limit) => {
            format!("compiled program exceeds the {limit}-byte limit")
        }
        other => other
            .to_string()
            .lines()
            .next()
            .unwrap_or("error")
            .to_string(),
    }
}

/// How to fix the most common mistakes, by the regex crate's error text.
fn regex_fix(what: &str) -> &'static str {
    const FIXES: [(&str, &str); 11] = [
        ("unclosed group", "fix the pattern or escape the parenthesis as \\("),
        ("unopened group", "fix the pattern or escape the parenthesis as \\)"),
        ("unclosed character class", "close it with ] or escape the bracket as \\["),
        ("repetition operator missing", "put something before it or escape it (\\*, \\+, \\?)"),
        ("counted repetition", "close it like {2,3} or escape the brace as \\{"),
        ("repetition quantifier", "write a count like {2,3} or escape the brace as \\{"),
        ("escape", "write a literal backslash as \\\\"),
        (
            "Unicode",
            "classes match bytes here: start the pattern with (?u) for Unicode classes, or write bytes as \\xNN",
        ),
        ("invalid UTF-8", "start the pattern with (?u), or match bytes explicitly with \\xNN"),
        ("look-around", "rewrite it without look-around, e.g. with a second rule before this one"),
        ("backreferences", "rewrite it without backreferences"),
    ];
    FIXES
        .iter()
        .find(|(needle, _)| what.contains(needle))
        .map_or(
            "fix the pattern (syntax: https://docs.rs/regex/latest/regex/#syntax)",
            |f| f.1,
        )
}

/// `"text"` with bytes that are not UTF-8 or are control characters escaped
/// as `\xNN`, shortened past 80 characters; for one-line messages.
fn quote(bytes: &[u8]) -> String {
    const MAX: usize = 80;
    let shown = escape(bytes);
    let mut chars = shown.chars();
    let head: String = chars.by_ref().take(MAX).collect();
    if chars.next().is_some() {
        format!("\"{head}...\"")
    } else {
        format!("\"{head}\"")
    }
}

fn quote_byte(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("'{}'", b as char)
    } else {
        format!("'\\x{b:02X}'")
    }
}

/// Rule text for display: valid UTF-8 as is, control characters and bytes
/// that are not UTF-8 as `\xNN` (backslashes are left alone: it is a regex).
fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_ascii_control() {
                out.push_str(&format!("\\x{:02X}", c as u32));
            } else if c.is_control() {
                out.push_str(&format!("\\u{{{:04X}}}", c as u32));
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Rules under test, with assertions that read like the spec.
    struct Spec {
        rules: Rules,
    }

    #[track_caller]
    fn rules(text: impl AsRef<[u8]>) -> Spec {
        match Rules::parse(text.as_ref(), "test.rules") {
            Ok(rules) => Spec { rules },
            Err(e) => panic!("rules should parse: {e}"),
        }
    }

    #[track_caller]
    fn sample(name: &str) -> Spec {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/rules/");
        match Rules::from_file(Path::new(&format!("{dir}{name}"))) {
            Ok(rules) => Spec { rules },
            Err(e) => panic!("sample should parse: {e}"),
        }
    }

    /// The error message parsing `text` gives (it must fail).
    #[track_caller]
    fn parse_error(text: impl AsRef<[u8]>) -> String {
        match Rules::parse(text.as_ref(), "test.rules") {
            Ok(r) => panic!("expected an error, got rules {:?}", r.describe()),
            Err(e) => e.to_string(),
        }
    }

    const ACTIONS: [(char, Action); 3] = [
        ('w', Action::Walk),
        ('m', Action::Monitor),
        ('s', Action::Sync),
    ];

    impl Spec {
        /// A non-directory at `path` is synced.
        #[track_caller]
        fn file_passes(&self, path: impl AsRef<[u8]>) -> &Self {
            let p = path.as_ref();
            assert!(
                self.rules.permits(p, Kind::File, Action::Sync),
                "file {:?} should pass",
                crate::path::display(p)
            );
            self
        }

        /// A non-directory at `path` is not synced.
        #[track_caller]
        fn file_fails(&self, path: impl AsRef<[u8]>) -> &Self {
            let p = path.as_ref();
            assert!(
                !self.rules.permits(p, Kind::File, Action::Sync),
                "file {:?} should fail",
                crate::path::display(p)
            );
            self
        }

        /// The directory at `path` is permitted exactly the actions listed
        /// in `allowed` (`w` walk, `m` monitor, `s` sync; "" for none).
        #[track_caller]
        fn dir_allows(&self, path: impl AsRef<[u8]>, allowed: &str) -> &Self {
            let p = path.as_ref();
            let got: String = ACTIONS
                .iter()
                .filter(|(_, a)| self.rules.permits(p, Kind::Dir, *a))
                .map(|(c, _)| *c)
                .collect();
            assert_eq!(
                got,
                allowed,
                "actions allowed on dir {:?}",
                crate::path::display(p)
            );
            self
        }

        /// Same as `dir_allows`, for a non-directory (any action asked).
        #[track_caller]
        fn file_allows(&self, path: impl AsRef<[u8]>, allowed: &str) -> &Self {
            let p = path.as_ref();
            let got: String = ACTIONS
                .iter()
                .filter(|(_, a)| self.rules.permits(p, Kind::File, *a))
                .map(|(c, _)| *c)
                .collect();
            assert_eq!(
                got,
                allowed,
                "actions allowed on file {:?}",
                crate::path::display(p)
            );
            self
        }
    }

    // ---- no rules ----

    #[test]
    fn no_rules_permit_everything() {
        for r in [
            Rules::allow_all(),
            Rules::default(),
            rules("").rules,
            rules("# only\n\n  \n").rules,
        ] {
            assert!(r.is_empty());
            assert_eq!(r.len(), 0);
            assert!(r.describe().is_empty());
            for kind in [Kind::File, Kind::Dir] {
                for (_, a) in ACTIONS {
                    assert!(r.permits(b"", kind, a));
                    assert!(r.permits(b"a/b\xff", kind, a));
                }
            }
        }
    }

    #[test]
    fn a_path_no_rule_matches_is_permitted() {
        rules("-f^a$\n-d^b$")
            .file_passes("c")
            .dir_allows("c", "wms")
            .file_passes("b");
    }

    // ---- every type character ----

    #[test]
    fn type_f_covers_files_for_every_action_and_no_dir() {
        rules("-f^a$").file_allows("a", "").dir_allows("a", "wms");
        rules("+f^a$\n-*")
            .file_allows("a", "wms")
            .dir_allows("a", "");
    }

    #[test]
    fn type_d_covers_dirs_for_walk_monitor_and_sync() {
        rules("-d^a$").dir_allows("a", "").file_allows("a", "wms");
        rules("+d^a$\n-*")
            .dir_allows("a", "wms")
            .file_allows("a", "");
    }

    #[test]
    fn type_w_covers_walking_dirs_only() {
        rules("-w^a$").dir_allows("a", "ms").file_passes("a");
        rules("+w^a$\n-*").dir_allows("a", "w").file_fails("a");
    }

    #[test]
    fn type_m_covers_monitoring_dirs_only() {
        rules("-m^a$").dir_allows("a", "ws").file_passes("a");
        rules("+m^a$\n-*").dir_allows("a", "m").file_fails("a");
    }

    #[test]
    fn type_s_covers_syncing_dirs_only() {
        rules("-s^a$").dir_allows("a", "wm").file_passes("a");
        rules("+s^a$\n-*").dir_allows("a", "s").file_fails("a");
    }

    #[test]
    fn type_capital_w_covers_walk_and_monitor_unlike_clsync() {
        // clsync lowercases W into w, so its W only walks.
        rules("-W^a$").dir_allows("a", "s").file_passes("a");
        rules("+W^a$\n-*").dir_allows("a", "wm").file_fails("a");
    }

    #[test]
    fn type_star_covers_files_and_dirs_for_every_action() {
        rules("-*^a$").dir_allows("a", "").file_allows("a", "");
        rules("-*")
            .dir_allows("", "")
            .dir_allows("x/y", "")
            .file_fails("x");
        rules("+*^a$\n-*")
            .dir_allows("a", "wms")
            .file_allows("a", "wms")
            .file_fails("b");
    }

    // ---- order ----

    #[test]
    fn first_matching_rule_wins() {
        rules("+f^a\n-f^ab$").file_passes("ab").file_passes("ac");
        rules("-f^ab$\n+f^a").file_fails("ab").file_passes("ac");
        rules("-*x\n+*").file_fails("ax").dir_allows("x", "");
    }

    #[test]
    fn rules_whose_type_does_not_cover_the_question_are_skipped() {
        // The +s rule answers only sync; walk and monitor fall through to -*.
        rules("+s^a$\n-*").dir_allows("a", "s");
        // A file rule never decides for a directory of the same name.
        rules("+f^a$\n-d^a$\n+*")
            .dir_allows("a", "")
            .file_passes("a");
    }

    #[test]
    fn deciding_rule_names_the_rule_that_decided() {
        let r = rules("# c\n+f^a$\n-W^a$\n-*").rules;
        assert_eq!(r.deciding_rule(b"a", Kind::File, Action::Sync), Some(0));
        assert_eq!(r.deciding_rule(b"a", Kind::Dir, Action::Walk), Some(1));
        assert_eq!(r.deciding_rule(b"a", Kind::Dir, Action::Sync), Some(2));
        assert_eq!(r.deciding_rule(b"b", Kind::File, Action::Sync), Some(2));
        let r = rules("-f^a$").rules;
        assert_eq!(r.deciding_rule(b"a", Kind::Dir, Action::Walk), None);
        assert_eq!(r.deciding_rule(b"b", Kind::File, Action::Sync), None);
    }

    // ---- paths ----

    #[test]
    fn root_is_the_empty_path() {
        rules("+W^$\n-*")
            .dir_allows("", "wm")
            .dir_allows("a", "")
            .file_fails("a");
        rules("-d^$").dir_allows("", "").dir_allows("a", "wms");
    }

    #[test]
    fn paths_have_no_leading_slash() {
        rules("-f^/a").file_passes("a");
        rules("-f^etc/passwd$").file_fails("etc/passwd");
        rules("-f/tmp/").file_fails("x/tmp/y").file_passes("tmp/y");
    }

    #[test]
    fn patterns_are_unanchored_unless_anchored() {
        rules("-fb")
            .file_fails("abc")
            .file_fails("b")
            .file_passes("a");
    }

    #[test]
    fn dot_and_negated_classes_match_bytes_that_are_not_utf8() {
        rules("-f^tmp/.*$")
            .file_fails(b"tmp/\xff\xfe")
            .file_passes(b"tm\xff");
        rules("-f^a.$")
            .file_fails(b"a\xff")
            // a truncated UTF-8 sequence
            .file_fails(b"a\xc3");
        rules("-f^[^/]+$")
            .file_fails(b"\xff")
            .file_fails(b"\xc3")
            .file_passes(b"\xff/x");
        rules("-f^\\xff$").file_fails(b"\xff").file_passes(b"\xfe");
        rules("-f^[\\x80-\\xff]+$")
            .file_fails(b"\x80\xff")
            .file_passes("a");
    }

    #[test]
    fn dot_matches_newline_but_dollar_is_the_end_of_the_path() {
        rules("-f^a.b$").file_fails("a\nb");
        rules("-f^a$").file_passes("a\nb").file_passes("b\na");
    }

    #[test]
    fn non_ascii_literals_match_their_utf8_bytes() {
        rules("-f^café$").file_fails("café").file_passes(b"caf\xe9");
        rules("-f^caf.{2}$").file_fails("café");
    }

    #[test]
    fn raw_non_utf8_bytes_in_the_rules_text_match_themselves() {
        // A Latin-1 rules file naming a Latin-1 file name.
        rules(b"-f^caf\xe9$\n-f^x\xff+$")
            .file_fails(b"caf\xe9")
            .file_passes("café")
            .file_fails(b"x\xff\xff")
            .file_passes(b"x\xfe");
    }

    #[test]
    fn unicode_mode_is_opt_in_with_u_flag() {
        rules("-f(?u)^[é]$").file_fails("é").file_passes(b"\xe9");
        rules("-f(?u)^\\w+$")
            .file_fails("日本")
            .file_passes(b"\xff");
        rules("-f^\\w+$").file_passes("日本").file_fails("ab_1");
    }

    // ---- lines ----

    #[test]
    fn crlf_line_endings_are_stripped() {
        let r = rules("+f^a$\r\n+d^$\r\n-*\r\n");
        r.file_passes("a").file_fails("b").dir_allows("", "wms");
        assert_eq!(r.rules.to_text(), b"+f^a$\n+d^$\n-*\n");
    }

    #[test]
    fn a_carriage_return_inside_a_line_is_kept() {
        rules("-f^a\rb$\n").file_fails("a\rb").file_passes("ab");
    }

    #[test]
    fn last_line_without_newline_keeps_its_last_character() {
        // clsync would compile "^a" here, dropping the "$".
        rules("+f^b$\n-f^a$").file_fails("a").file_passes("ab");
        rules("-f^ab$").file_fails("ab").file_passes("a");
    }

    #[test]
    fn comments_and_blank_lines_are_ignored() {
        let r = rules("# header\n\n   # indented comment\n \t \n-f^a$\n#-f^b$\n");
        r.file_fails("a").file_passes("b");
        assert_eq!(r.rules.len(), 1);
        assert_eq!(
            r.rules.describe(),
            ["rule 1 (test.rules:5): -f^a$ => exclude files"]
        );
    }

    #[test]
    fn a_hash_after_a_rule_is_part_of_the_regex() {
        rules("-f^a # b$").file_fails("a # b").file_passes("a");
    }

    #[test]
    fn an_empty_regex_matches_every_path() {
        rules("-f\n+*")
            .file_fails("")
            .file_fails("a/b")
            .dir_allows("a", "wms");
    }

    // ---- errors ----

    #[test]
    fn unknown_sign_is_an_error_naming_file_and_line() {
        assert_eq!(
            parse_error("+f^a$\n\n*f^b$"),
            "test.rules:3: unknown sign '*' in \"*f^b$\"; a rule starts with + (include) or - (exclude), \
             e.g. \"-f\\.tmp$\""
        );
        assert!(parse_error(b"\xfff^b$")
            .starts_with("test.rules:1: unknown sign '\\xFF' in \"\\xFFf^b$\";"));
    }

    #[test]
    fn leading_whitespace_before_a_rule_is_an_error() {
        assert_eq!(
            parse_error("# x\n  +f^a$"),
            "test.rules:2: leading whitespace before rule \"  +f^a$\"; start the rule in the first column"
        );
    }

    #[test]
    fn a_sign_without_type_is_an_error() {
        assert_eq!(
            parse_error("-\n"),
            "test.rules:1: rule \"-\" has no type; follow the sign with one of f d w m s W * \
             (e.g. \"-*\" matches everything)"
        );
        // "+\r\n" is the same line once the CR is stripped.
        assert!(parse_error("+\r\n").starts_with("test.rules:1: rule \"+\" has no type;"));
    }

    #[test]
    fn unknown_type_is_an_error() {
        let expected_tail =
            "after the sign put one of f (files), d (dirs), w (walk), m (monitor), \
                             s (sync), W (walk+monitor), * (everything)";
        assert_eq!(
            parse_error("+x^a$"),
            format!("test.rules:1: unknown type 'x' in \"+x^a$\"; {expected_tail}")
        );
        // The forgotten type: the regex starts right after the sign.
        assert!(parse_error("-^a$").starts_with("test.rules:1: unknown type '^' in \"-^a$\";"));
    }

    #[test]
    fn type_chars_are_case_sensitive_unlike_clsync() {
        for (upper, lower) in [('F', 'f'), ('D', 'd'), ('M', 'm'), ('S', 's')] {
            let msg = parse_error(format!("-{upper}^a$"));
            assert!(
                msg.contains(&format!(
                    "(types are case-sensitive: did you mean '{lower}'?)"
                )),
                "{msg}"
            );
        }
        assert!(!parse_error("-X").contains("did you mean"));
    }

    #[test]
    fn invalid_regex_is_an_error_with_the_reason_and_the_fix() {
        assert_eq!(
            parse_error("+f^a$\n\n-fa("),
            "test.rules:3: invalid regex \"a(\": unclosed group; fix the pattern or escape the parenthesis as \\("
        );
        let cases = [
            (
                "-fa)",
                "unopened group; fix the pattern or escape the parenthesis as \\)",
            ),
            (
                "-f[a",
                "unclosed character class; close it with ] or escape the bracket as \\[",
            ),
            (
                "-f*.tmp",
                "repetition operator missing expression; put something before it or escape it",
            ),
            (
                "-fa{2",
                "unclosed counted repetition; close it like {2,3} or escape the brace as \\{",
            ),
            (
                "-f\\q",
                "unrecognized escape sequence; write a literal backslash as \\\\",
            ),
            (
                "-f\\pL",
                "Unicode not allowed here; classes match bytes here: start the pattern with (?u)",
            ),
            (
                "-f[é]",
                "Unicode not allowed here; classes match bytes here: start the pattern with (?u)",
            ),
            (
                "-f(?=a)",
                "is not supported; rewrite it without look-around",
            ),
            (
                "-f(a)\\1",
                "backreferences are not supported; rewrite it without backreferences",
            ),
            (
                "-f(?P<n>a)(?P<n>b)",
                "duplicate capture group name; fix the pattern (syntax: https://",
            ),
        ];
        for (text, tail) in cases {
            let msg = parse_error(text);
            assert!(
                msg.starts_with("test.rules:1: invalid regex \""),
                "{text}: {msg}"
            );
            assert!(msg.contains(tail), "{text}: {msg}");
            assert!(!msg.contains('\n'), "{text}: one line expected: {msg}");
        }
    }

    #[test]
    fn whitespace_after_final_dollar_is_an_error() {
        assert_eq!(
            parse_error("-f^a$ \t"),
            "test.rules:1: pattern \"^a$ \\x09\" has whitespace after '$', so it can never match; \
             remove the trailing whitespace"
        );
        // Trailing spaces are fine where they can match.
        rules("-f^a ").file_fails("a ");
        rules("-f^a\\$ ").file_fails("a$ ");
        rules("-f(?x)^a$ ").file_fails("a");
    }

    #[test]
    fn backslash_before_a_raw_non_utf8_byte_is_an_error() {
        assert_eq!(
            parse_error(b"-f^a\\\xff$"),
            "test.rules:1: pattern \"^a\\\\xFF$\" has a backslash before the non-UTF-8 byte 0xFF; \
             \\ cannot escape it, write the byte alone or as \\xFF"
        );
        // An escaped backslash before the byte is fine.
        rules(b"-f^a\\\\\xff$").file_fails(b"a\\\xff");
    }

    #[test]
    fn the_first_bad_line_is_reported() {
        assert!(parse_error("-fa(\n-x").starts_with("test.rules:1:"));
    }

    #[test]
    fn a_huge_regex_is_an_error() {
        assert_eq!(
            parse_error("+f^$\n-f.{300000}"),
            "test.rules:2: regex \".{300000}\" is too big (compiled program exceeds the 10 MiB limit); \
             simplify it, e.g. avoid large counted repetitions like .{1000}"
        );
    }

    #[test]
    fn rules_too_big_together_are_an_error() {
        let msg = parse_error("-f.{50000}\n".repeat(3));
        assert_eq!(
            msg,
            "test.rules: the 3 rules together are too big to compile (compiled program exceeds the \
             10 MiB limit); use fewer or simpler patterns (avoid large counted repetitions like .{1000})"
        );
    }

    // ---- files ----

    #[test]
    fn from_file_reads_and_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("my.rules");
        std::fs::write(&path, "# c\n-f^a$\n+*\n").unwrap();
        let r = Rules::from_file(&path).unwrap();
        assert!(!r.permits(b"a", Kind::File, Action::Sync));
        let shown = path.display().to_string();
        assert_eq!(
            r.describe()[0],
            format!("rule 1 ({shown}:2): -f^a$ => exclude files")
        );

        std::fs::write(&path, "-f^a$\n-q\n").unwrap();
        let err = Rules::from_file(&path).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{shown}:2: unknown type 'q'")),
            "{err}"
        );
    }

    #[test]
    fn too_big_a_file_or_too_many_rules_are_refused_before_compiling() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.rules");
        // Comments count toward the bytes, not the rules.
        let mut text = "# padding\n".repeat(MAX_RULES_BYTES as usize / 10 + 1);
        text.push_str("-f^a$\n");
        std::fs::write(&path, &text).unwrap();
        let err = Rules::from_file(&path).unwrap_err();
        assert!(matches!(err, RulesError::FileTooBig { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains(&path.display().to_string()) && msg.contains(&MAX_RULES_BYTES.to_string()),
            "{msg}"
        );
        // Exactly at the limit: read.
        let mut text = "#".repeat(MAX_RULES_BYTES as usize - 7);
        text.push_str("\n-f^a$\n");
        std::fs::write(&path, &text).unwrap();
        assert_eq!(Rules::from_file(&path).unwrap().len(), 1);

        let ok = "-f^a$\n# c\n\n".repeat(MAX_RULES);
        assert_eq!(Rules::parse(ok.as_bytes(), "ok").unwrap().len(), MAX_RULES);
        let many = "-f^a$\n".repeat(MAX_RULES + 1);
        let err = Rules::parse(many.as_bytes(), "many").unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "many: {} rules, more than the {MAX_RULES} livesync compiles; \
                 use fewer rules (one pattern with alternatives, a|b|c, instead of many)",
                MAX_RULES + 1
            )
        );
    }

    #[test]
    fn from_file_on_a_missing_file_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing.rules");
        let err = Rules::from_file(&path).unwrap_err();
        assert!(matches!(err, RulesError::Read { .. }));
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("cannot read rules file {}: ", path.display())),
            "{msg}"
        );
        assert!(
            msg.ends_with("; check the path and its permissions"),
            "{msg}"
        );
    }

    // ---- describe / to_text ----

    #[test]
    fn describe_gives_one_line_per_rule() {
        let r = rules(b"+f^a$\n+d^b$\n+w^c$\n# x\n+m^d$\n-s^e$\n-W^f$\n-*\n+f\x01\xff\n").rules;
        assert_eq!(
            r.describe(),
            [
                "rule 1 (test.rules:1): +f^a$ => include files",
                "rule 2 (test.rules:2): +d^b$ => include dirs: walk, monitor, sync",
                "rule 3 (test.rules:3): +w^c$ => include dirs: walk",
                "rule 4 (test.rules:5): +m^d$ => include dirs: monitor",
                "rule 5 (test.rules:6): -s^e$ => exclude dirs: sync",
                "rule 6 (test.rules:7): -W^f$ => exclude dirs: walk, monitor",
                "rule 7 (test.rules:8): -* => exclude everything",
                "rule 8 (test.rules:9): +f\\x01\\xFF => include files",
            ]
        );
        assert_eq!(r.len(), 8);
        assert!(!r.is_empty());
    }

    #[test]
    fn to_text_is_canonical_rules_text() {
        let r = rules("# c\r\n+f^a$\r\n\n-*").rules;
        assert_eq!(r.to_text(), b"+f^a$\n-*\n");
    }

    #[test]
    fn to_text_keeps_a_pattern_that_ends_in_a_carriage_return() {
        let r = rules("-fa\r\r\n").rules;
        assert!(!r.permits(b"a\r", Kind::File, Action::Sync));
        assert_eq!(r.to_text(), b"-fa\r\r\n");
        let again = Rules::parse(&r.to_text(), "again").unwrap();
        assert!(!again.permits(b"a\r", Kind::File, Action::Sync));
        assert!(again.permits(b"a", Kind::File, Action::Sync));
    }

    // ---- sample files ----

    #[test]
    fn sample_webroot_skips_php_sessions_and_caches() {
        sample("webroot.rules")
            .file_passes("index.php")
            .file_passes("src/Cache.php")
            .file_passes("lib/sessions.php")
            .file_passes("assess_me.txt")
            .dir_allows("", "wms")
            .dir_allows("wp-content/uploads", "wms")
            .file_fails("sess_0123abcd")
            .file_fails("tmp/sess_0123abcd")
            .dir_allows("storage/framework/sessions", "")
            .file_fails("storage/framework/sessions/x")
            .dir_allows("var/cache", "")
            .file_fails("var/cache/prod/url_matching.php")
            .dir_allows("wp-content/cache", "")
            .dir_allows(".cache", "");
    }

    #[test]
    fn sample_pwdb_syncs_only_the_password_database_and_sshd_config() {
        sample("pwdb.rules")
            .file_passes("passwd")
            .file_passes("group")
            .file_passes("shadow")
            .file_passes("ssh/sshd_config")
            .file_fails("passwd-")
            .file_fails("hosts")
            .file_fails("ssh/ssh_host_ed25519_key")
            .file_fails("sub/passwd")
            .dir_allows("", "wm")
            .dir_allows("ssh", "wm")
            .dir_allows("apt", "");
    }

    #[test]
    fn sample_authorized_keys_syncs_only_authorized_keys() {
        sample("authorized_keys.rules")
            .file_passes("alice/.ssh/authorized_keys")
            .file_passes("bob/.ssh/authorized_keys2")
            .file_passes(b"\xe9mile/.ssh/authorized_keys")
            .file_fails("alice/.ssh/id_ed25519")
            .file_fails("alice/.ssh/authorized_keys.bak")
            .file_fails("alice/.bashrc")
            .file_fails("alice/x/.ssh/authorized_keys")
            .dir_allows("", "wm")
            .dir_allows("alice", "wm")
            .dir_allows("alice/.ssh", "wm")
            .dir_allows("alice/Documents", "");
    }

    #[test]
    fn sample_lxc_skips_session_dirs_and_tmp_files() {
        sample("lxc.rules")
            .file_passes("web1/rootfs/etc/passwd")
            .dir_allows("web1/rootfs/var/lib/php", "wms")
            .dir_allows("web1/rootfs/var/lib/php/sessions", "")
            .dir_allows("web1/rootfs/var/lib/php/sess", "")
            .dir_allows("web1/rootfs/var/lib/php/session", "")
            .dir_allows("web1/rootfs/var/lib/php/sessionsx", "wms")
            .file_passes("web1/rootfs/var/lib/php/sessions.conf")
            .file_fails("web1/rootfs/tmp/x")
            .file_fails("web1/rootfs/var/tmp/cache/y")
            // The tmp directory itself is still walked and synced.
            .dir_allows("web1/rootfs/tmp", "wms")
            // Rules judge one path at a time: a file inside an excluded
            // directory passes by itself; it is kept out because the
            // directory is never walked or watched.
            .file_passes("web1/rootfs/var/lib/php/sessions/sess_1");
    }

    #[test]
    fn every_sample_file_is_tested() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/rules");
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "authorized_keys.rules",
                "lxc.rules",
                "pwdb.rules",
                "webroot.rules"
            ]
        );
    }

    // ---- properties ----

    /// The obvious implementation: one regex per rule, tried in order.
    fn naive_permits(text: &[u8], path: &[u8], kind: Kind, action: Action) -> bool {
        for raw in text.split(|&b| b == b'\n') {
            let line = raw.strip_suffix(b"\r").unwrap_or(raw);
            if is_ignored(line) {
                continue;
            }
            let (cover, _) = type_info(line[1]).unwrap();
            let re = regex_builder(&regex_text(&line[2..]).unwrap())
                .build()
                .unwrap();
            if cover & bit(kind, action) != 0 && re.is_match(path) {
                return line[0] == b'+';
            }
        }
        true
    }

    fn rule_line() -> impl Strategy<Value = Vec<u8>> {
        let fragment = prop::sample::select(vec![
            "^", "$", "a", "b", "/", ".", "[^/]*", "(a|b)", "\\.", "x?", "\\xff", "é", "(^|/)",
        ]);
        (
            prop::sample::select(vec![b'+', b'-']),
            prop::sample::select(b"fdwmsW*".to_vec()),
            prop::collection::vec(fragment, 0..5),
            // "x\r\r": a pattern whose own last byte is a CR (after a
            // literal, since "$\r" is rejected as never matching)
            prop::sample::select(vec!["", "\r", "x\r\r"]),
        )
            .prop_map(|(sign, ty, frags, cr)| {
                let mut l = vec![sign, ty];
                l.extend_from_slice(frags.concat().as_bytes());
                l.extend_from_slice(cr.as_bytes());
                l
            })
    }

    fn rules_text() -> impl Strategy<Value = Vec<u8>> {
        let line = prop_oneof![
            4 => rule_line(),
            1 => Just(b"# comment".to_vec()),
            1 => Just(Vec::new()),
        ];
        prop::collection::vec(line, 0..8).prop_map(|lines| lines.join(&b'\n'))
    }

    fn rel_path() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            prop::sample::select(vec![
                &b"a"[..],
                b"b",
                b"/",
                b".",
                b"\xff",
                b"x",
                "é".as_bytes(),
                b"\n",
            ]),
            0..6,
        )
        .prop_map(|parts| parts.concat())
    }

    const ALL: [(Kind, Action); 6] = [
        (Kind::File, Action::Walk),
        (Kind::File, Action::Monitor),
        (Kind::File, Action::Sync),
        (Kind::Dir, Action::Walk),
        (Kind::Dir, Action::Monitor),
        (Kind::Dir, Action::Sync),
    ];

    proptest! {
        #[test]
        fn parse_never_panics_on_arbitrary_bytes(text in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = Rules::parse(&text, "fuzz");
        }

        #[test]
        fn parse_never_panics_on_rule_shaped_lines(
            lines in prop::collection::vec(
                (prop::sample::select(b"+-# x".to_vec()),
                 prop::sample::select(b"fdwmsW*FqX ".to_vec()),
                 prop::collection::vec(any::<u8>(), 0..12)),
                0..6,
            )
        ) {
            let mut text = Vec::new();
            for (sign, ty, rest) in lines {
                text.push(sign);
                text.push(ty);
                text.extend(rest);
                text.push(b'\n');
            }
            if let Err(e) = Rules::parse(&text, "fuzz") {
                prop_assert!(!e.to_string().contains('\n'));
                prop_assert!(e.to_string().starts_with("fuzz:"));
            }
        }

        #[test]
        fn set_matching_agrees_with_trying_each_rule_in_order(
            text in rules_text(),
            paths in prop::collection::vec(rel_path(), 1..8),
        ) {
            let r = Rules::parse(&text, "p").unwrap();
            for path in &paths {
                for (kind, action) in ALL {
                    prop_assert_eq!(
                        r.permits(path, kind, action),
                        naive_permits(&text, path, kind, action),
                        "path {:?} {:?} {:?}", crate::path::display(path), kind, action
                    );
                }
            }
        }

        #[test]
        fn to_text_round_trips(text in rules_text(), paths in prop::collection::vec(rel_path(), 1..8)) {
            let r = Rules::parse(&text, "p").unwrap();
            let again = Rules::parse(&r.to_text(), "p").unwrap();
            prop_assert_eq!(again.to_text(), r.to_text());
            prop_assert_eq!(again.len(), r.len());
            for path in &paths {
                for (kind, action) in ALL {
                    prop_assert_eq!(again.permits(path, kind, action), r.permits(path, kind, action));
                }
            }
        }
    }
}
