//! Relative paths as raw bytes.
//!
//! Every path inside livesync is relative to the watch root, has no leading
//! slash, and is a `Vec<u8>`/`&[u8]` so that no byte of a non-UTF-8 name is
//! ever lost; the root itself is the empty path. This module owns joining,
//! parents, prefix tests and rebasing, plus an escaping `display` for logs.
//! It does no I/O.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The absolute path of `rel` under `root` (`rel` empty → `root` itself).
pub fn abs(root: &Path, rel: &[u8]) -> PathBuf {
    if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(OsStr::from_bytes(rel))
    }
}

/// `parent/name`, or `name` when `parent` is the root.
pub fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parent.len() + 1 + name.len());
    if !parent.is_empty() {
        out.extend_from_slice(parent);
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}

/// The parent of `rel` (the root's parent is the root).
pub fn parent(rel: &[u8]) -> &[u8] {
    match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => &rel[..i],
        None => &[],
    }
}

/// The last component of `rel`.
pub fn file_name(rel: &[u8]) -> &[u8] {
    match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => &rel[i + 1..],
        None => rel,
    }
}

/// True when `path` is `dir` itself or lies below it. The root contains everything.
pub fn is_under(path: &[u8], dir: &[u8]) -> bool {
    dir.is_empty()
        || (path.starts_with(dir) && (path.len() == dir.len() || path[dir.len()] == b'/'))
}

/// True when `path` lies strictly below `dir`.
pub fn is_strictly_under(path: &[u8], dir: &[u8]) -> bool {
    path.len() != dir.len() && is_under(path, dir)
}

/// Replaces the prefix `from` of `path` with `to`. `path` must be under `from`.
pub fn rebase(path: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    debug_assert!(is_under(path, from));
    let rest = &path[from.len()..];
    let rest = rest.strip_prefix(b"/").unwrap_or(rest);
    if to.is_empty() {
        rest.to_vec()
    } else if rest.is_empty() {
        to.to_vec()
    } else {
        join(to, rest)
    }
}

/// Every proper ancestor of `rel`, outermost first, not including the root.
/// `a/b/c` → `a`, `a/b`.
pub fn ancestors(rel: &[u8]) -> impl Iterator<Item = &[u8]> {
    rel.iter()
        .enumerate()
        .filter(|(_, &b)| b == b'/')
        .map(move |(i, _)| &rel[..i])
}

/// A printable form of `rel` for logs and errors: valid UTF-8 passes through,
/// control characters and invalid bytes are escaped (`\n`, `\x80`), and the
/// root is shown as `.`.
pub fn display(rel: &[u8]) -> String {
    if rel.is_empty() {
        return ".".to_string();
    }
    let mut out = String::with_capacity(rel.len());
    for chunk in rel.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// `display` for an absolute or any OS path.
pub fn display_os(p: &Path) -> String {
    let bytes = p.as_os_str().as_bytes();
    if bytes.is_empty() {
        return String::new();
    }
    display(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_and_parent_round_trip() {
        assert_eq!(join(b"", b"a"), b"a");
        assert_eq!(join(b"a/b", b"c"), b"a/b/c");
        assert_eq!(parent(b"a/b/c"), b"a/b");
        assert_eq!(parent(b"a"), b"");
        assert_eq!(file_name(b"a/b/c"), b"c");
        assert_eq!(file_name(b"c"), b"c");
    }

    #[test]
    fn under_is_component_wise() {
        assert!(is_under(b"a/b", b"a"));
        assert!(is_under(b"a", b"a"));
        assert!(!is_under(b"ab", b"a"));
        assert!(is_under(b"anything", b""));
        assert!(!is_strictly_under(b"a", b"a"));
        assert!(is_strictly_under(b"a/b", b"a"));
    }

    #[test]
    fn rebase_moves_prefix() {
        assert_eq!(rebase(b"a/b/c", b"a", b"x/y"), b"x/y/b/c");
        assert_eq!(rebase(b"a", b"a", b"z"), b"z");
        assert_eq!(rebase(b"a/b", b"", b"z"), b"z/a/b");
        assert_eq!(rebase(b"a/b", b"a", b""), b"b");
    }

    #[test]
    fn ancestors_outermost_first() {
        let v: Vec<&[u8]> = ancestors(b"a/b/c").collect();
        assert_eq!(v, vec![&b"a"[..], &b"a/b"[..]]);
        assert_eq!(ancestors(b"a").count(), 0);
    }

    #[test]
    fn display_escapes_without_losing_bytes() {
        assert_eq!(display(b""), ".");
        assert_eq!(display(b"a\nb"), "a\\nb");
        assert_eq!(display(b"x\xff"), "x\\xff");
        assert_eq!(display(b"sp ace"), "sp ace");
    }
}
