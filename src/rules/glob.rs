//! `--exclude GLOB` / `--include GLOB`: rsync-style globs turned into rules
//! lines of the grammar in [`super`], for users coming from rsync and
//! lsyncd (whose `exclude` takes the same patterns).
//!
//! This module owns the translation only: one glob becomes one rule line,
//! `-` for an exclude, `+` for an include; the caller puts the lines, in the
//! order given, in front of the rules file, so the first match decides, as
//! in rsync. It reads nothing and keeps no state.
//!
//! What a glob means (rsync's filter rules, as far as one path goes):
//! * `*` matches any run of characters but `/`; `?` one character but `/`;
//!   `[…]` one character of the class (`[!…]` or `[^…]` negates it; never
//!   `/`); `**` matches anything, `/` included; `\x` is `x` literally.
//! * A leading `/` anchors the glob at the watch dir: `/build` is only the
//!   top-level `build`.
//! * Without a leading `/`, the glob may match at any directory level:
//!   `*.o` is every `.o` file, `doc/*.html` is `doc/x.html` and
//!   `a/doc/x.html` (the match starts after a `/` or at the root and ends at
//!   the end of the path).
//! * A trailing `/` matches directories only (rule type `d`); otherwise the
//!   rule covers everything (type `*`). A trailing `/***` matches the
//!   directory and everything below it.
//! * An excluded directory is not walked, watched or synced, so what lies
//!   below it is left out too (rsync does not descend into it either); an
//!   include of `dir/file` needs `dir` itself not to be excluded.
//!
//! Paths are bytes: bytes that are not ASCII match themselves (`\xNN` in
//! the regex), as in rules files.

use std::fmt::Write;

/// The rule line (without a newline) for `glob`: `-…` when `include` is
/// false, `+…` when it is true. An empty glob, `/` alone, or one with a
/// newline is refused with the reason.
pub fn rule_line(include: bool, glob: &[u8]) -> Result<String, String> {
    if glob.contains(&b'\n') || glob.contains(&b'\r') {
        return Err("a glob cannot hold a line break".to_string());
    }
    let (everything_below, rest) = match glob.strip_suffix(b"/***") {
        Some(r) => (true, r),
        None => (false, glob),
    };
    let (anchored, rest) = match rest.strip_prefix(b"/") {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let (dirs_only, body) = match rest.strip_suffix(b"/") {
        Some(r) if !everything_below => (true, r),
        _ => (false, rest),
    };
    if body.is_empty() {
        return Err("the glob names no path (the watch dir itself cannot be left out)".to_string());
    }
    let mut re = String::from(if anchored { "^" } else { "(^|/)" });
    translate(body, &mut re);
    re.push_str(if everything_below { "(/.*)?$" } else { "$" });
    Ok(format!(
        "{}{}{re}",
        if include { '+' } else { '-' },
        if dirs_only { 'd' } else { '*' }
    ))
}

/// Appends the regex for the glob `g` (no anchors) to `re`.
fn translate(g: &[u8], re: &mut String) {
    let mut i = 0;
    while i < g.len() {
        match g[i] {
            b'*' if g.get(i + 1) == Some(&b'*') => {
                re.push_str(".*");
                i += 2;
                while g.get(i) == Some(&b'*') {
                    i += 1;
                }
            }
            b'*' => {
                re.push_str("[^/]*");
                i += 1;
            }
            b'?' => {
                re.push_str("[^/]");
                i += 1;
            }
            b'[' => match class(g, i) {
                Some((text, next)) => {
                    re.push_str(&text);
                    i = next;
                }
                None => {
                    literal(b'[', re);
                    i += 1;
                }
            },
            b'\\' if i + 1 < g.len() => {
                literal(g[i + 1], re);
                i += 2;
            }
            b => {
                literal(b, re);
                i += 1;
            }
        }
    }
}

/// The bracket expression starting at `g[start] == b'['`: its regex (never
/// matching `/`) and the index after its `]`; `None` when it is not closed
/// (then the `[` is literal, as in fnmatch).
fn class(g: &[u8], start: usize) -> Option<(String, usize)> {
    let mut i = start + 1;
    let negated = matches!(g.get(i), Some(b'!' | b'^'));
    if negated {
        i += 1;
    }
    let mut items = String::new();
    let mut first = true;
    loop {
        let b = *g.get(i)?;
        if b == b']' && !first {
            break;
        }
        first = false;
        match b {
            b'\\' if i + 1 < g.len() => {
                class_byte(g[i + 1], &mut items);
                i += 2;
            }
            b'-' => {
                items.push('-');
                i += 1;
            }
            _ => {
                class_byte(b, &mut items);
                i += 1;
            }
        }
    }
    let neg = if negated { "^" } else { "" };
    Some((format!("[[{neg}{items}]&&[^/]]"), i + 1))
}

/// One byte inside a class: letters and digits as they are, anything else
/// as `\xNN` (so `]`, `\`, `&`, `~` and `[` never act as class syntax).
fn class_byte(b: u8, out: &mut String) {
    if b.is_ascii_alphanumeric() {
        out.push(b as char);
    } else {
        let _ = write!(out, "\\x{b:02X}");
    }
}

/// One byte matched literally.
fn literal(b: u8, out: &mut String) {
    if b.is_ascii_alphanumeric() || b == b'/' || b == b'_' {
        out.push(b as char);
    } else {
        let _ = write!(out, "\\x{b:02X}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{Action, Kind, Rules};

    /// The rules the globs make, in order (`!` in front: include).
    fn rules(globs: &[&str]) -> Rules {
        let mut text = String::new();
        for g in globs {
            let (include, g) = match g.strip_prefix('!') {
                Some(g) => (true, g),
                None => (false, *g),
            };
            text.push_str(&rule_line(include, g.as_bytes()).expect("glob"));
            text.push('\n');
        }
        Rules::parse(text.as_bytes(), "globs").unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    #[track_caller]
    fn file(r: &Rules, p: &str) -> bool {
        r.permits(p.as_bytes(), Kind::File, Action::Sync)
    }

    #[track_caller]
    fn dir(r: &Rules, p: &str) -> bool {
        r.permits(p.as_bytes(), Kind::Dir, Action::Walk)
            && r.permits(p.as_bytes(), Kind::Dir, Action::Sync)
    }

    #[test]
    fn the_rule_lines() {
        let line = |inc, g: &str| rule_line(inc, g.as_bytes()).expect("glob");
        assert_eq!(line(false, "*.tmp"), r"-*(^|/)[^/]*\x2Etmp$");
        assert_eq!(line(true, "/build/"), r"+d^build$");
        assert_eq!(line(false, "a/**/b"), r"-*(^|/)a/.*/b$");
        assert_eq!(line(false, "cache/***"), r"-*(^|/)cache(/.*)?$");
        assert_eq!(line(false, "[!a-c]?"), r"-*(^|/)[[^a-c]&&[^/]][^/]$");
    }

    #[test]
    fn star_does_not_cross_a_slash_but_double_star_does() {
        let r = rules(&["/src/*.o"]);
        assert!(!file(&r, "src/a.o"));
        assert!(file(&r, "src/sub/a.o"), "* stops at /");
        assert!(file(&r, "src/a.oo"), "the match ends at the end");
        let r = rules(&["/src/**.o"]);
        assert!(!file(&r, "src/a.o") && !file(&r, "src/sub/deep/a.o"));
        assert!(file(&r, "lib/a.o"));
        let r = rules(&["a?c"]);
        assert!(!file(&r, "abc") && file(&r, "a/c"));
    }

    #[test]
    fn a_glob_without_a_slash_matches_the_last_component_at_any_depth() {
        let r = rules(&["*.tmp"]);
        for p in ["x.tmp", "a/x.tmp", "a/b/.tmp"] {
            assert!(!file(&r, p), "{p}");
        }
        assert!(file(&r, "x.tmpl") && file(&r, "tmp"));
        // A directory by that name goes too, and so what lies below it.
        assert!(!dir(&r, "d.tmp"));
    }

    #[test]
    fn a_leading_slash_anchors_at_the_watch_dir() {
        let r = rules(&["/build"]);
        assert!(!file(&r, "build") && !dir(&r, "build"));
        assert!(file(&r, "src/build") && dir(&r, "src/build"));
        assert!(file(&r, "buildx"));
        // Unanchored with a slash: at any directory level.
        let r = rules(&["doc/*.html"]);
        assert!(!file(&r, "doc/i.html") && !file(&r, "a/doc/i.html"));
        assert!(file(&r, "adoc/i.html") && file(&r, "doc/sub/i.html"));
    }

    #[test]
    fn a_trailing_slash_matches_directories_only() {
        let r = rules(&["cache/"]);
        assert!(!dir(&r, "cache") && !dir(&r, "a/cache"));
        assert!(file(&r, "cache"), "a file named cache stays");
        let r = rules(&["/logs/***"]);
        assert!(!dir(&r, "logs") && !file(&r, "logs/a/b.log"));
        assert!(file(&r, "logsx"));
    }

    #[test]
    fn the_first_glob_that_matches_decides() {
        // rsync's idiom: keep *.c, drop the rest; but secret.c first.
        let r = rules(&["secret.c", "!*/", "!*.c", "*"]);
        assert!(file(&r, "a.c") && file(&r, "d/b.c") && dir(&r, "d"));
        assert!(!file(&r, "secret.c") && !file(&r, "d/secret.c"));
        assert!(!file(&r, "a.h") && !file(&r, "d/a.h"));
    }

    #[test]
    fn classes_escapes_and_odd_bytes() {
        let r = rules(&["[ab].txt", r"\*", "x[.y", "[]]z", "é*"]);
        assert!(!file(&r, "a.txt") && !file(&r, "b.txt") && file(&r, "c.txt"));
        assert!(!file(&r, "*") && file(&r, "q"), "\\* is a literal star");
        assert!(!file(&r, "x[.y"), "an unclosed [ is literal");
        assert!(!file(&r, "]z"));
        assert!(!file(&r, "été") && file(&r, "ete"));
        let r = rules(&["a[/]b", "[!x]q"]);
        assert!(file(&r, "a/b"), "a class never matches /");
        assert!(file(&r, "/q") && !file(&r, "yq"));
        // Regex syntax in a glob is literal.
        let r = rules(&["(a|b)+$"]);
        assert!(!file(&r, "(a|b)+$") && file(&r, "a"));
    }

    #[test]
    fn globs_that_name_nothing_are_refused() {
        for g in ["", "/", "//", "a\nb", "/***"] {
            assert!(rule_line(false, g.as_bytes()).is_err(), "{g:?}");
        }
    }
}
