//! rsync include- and exclude-list contents for a batch.
//!
//! This module owns the translation of a [`Batch`] into the bytes of the
//! files given to rsync's `--include-from` and `--exclude-from`, and the
//! splitting of a long include list into parts (`--rsync-inclimit`). It is
//! pure: whether a path is a directory comes from a caller's `stat` callback,
//! and it writes no file and runs nothing.
//!
//! The lists are used as `--exclude-from EXCL --include-from INCL
//! --exclude=*`: rsync takes the first rule that matches, so an excluded
//! path stays out even inside an included subtree, everything named in the
//! include list is sent (or deleted at the destination when the source no
//! longer has it), and everything else is neither sent nor deleted. For that:
//!
//! * every ancestor of a path is included (`/a`, `/a/b`), or rsync never
//!   descends to it;
//! * a path is included as `/p` and, unless it is a directory synced
//!   non-recursively, also as `/p/***` (rsync's "the directory and
//!   everything below"): that covers a recursive sync, a deleted file or
//!   populated directory (whose contents must not be protected by
//!   `--exclude=*`, or the delete fails), and a directory at the destination
//!   replaced by a file in the source (`/p/***` alone does not match a file);
//! * the whole tree is `/***`;
//! * lines are sorted bytewise, which puts parents before children, and a
//!   path below a recursively included one is left out as redundant.
//!
//! Escaping follows rsync's pattern rules: backslash escapes are honoured
//! only in a pattern that contains a wildcard (`*`, `?`, `[`); any other
//! pattern is compared literally. So `\ * ? [` are escaped exactly when the
//! final pattern (with its `/***` suffix) has a wildcard, and emitted as
//! they are otherwise. `]` is literal outside a character class and is never
//! escaped. A pattern always starts with `/`, so names starting with `#`,
//! `;`, `+ `, `- ` or `!` are never read as comments or rule prefixes. rsync
//! ends a line at `\n` or `\r`, so when a name contains either, the list must
//! be NUL-separated and read with `--from0` ([`Separator::Nul`]); where the
//! caller cannot pass `--from0` (a user template without it), such bytes are
//! written as `?` instead, which matches the name (and possibly a few
//! siblings, which is harmless for includes).

use crate::batch::{Batch, Op};
use crate::path;
use std::collections::{BTreeMap, BTreeSet};

/// What `lstat` says about a source path. Anything that is not a directory
/// (symlinks included, even to directories) is a `File`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    File,
    Dir,
}

/// How the lines of a list file are terminated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Separator {
    /// `\n`: rsync's default; names with `\n` or `\r` are written with `?`.
    #[default]
    Newline,
    /// `\0`: needs `--from0` on rsync's command line.
    Nul,
}

impl Separator {
    /// `Nul` when some path contains a byte that ends a line for rsync.
    pub fn needed<'a>(paths: impl IntoIterator<Item = &'a [u8]>) -> Separator {
        if paths.into_iter().any(breaks_line) {
            Separator::Nul
        } else {
            Separator::Newline
        }
    }

    fn byte(self) -> u8 {
        match self {
            Separator::Newline => b'\n',
            Separator::Nul => 0,
        }
    }
}

fn breaks_line(p: &[u8]) -> bool {
    p.iter().any(|&b| b == b'\n' || b == b'\r')
}

/// The rsync pattern for `path` (relative, no leading slash): `/path`, or
/// with `subtree` `/path/***` (`/***` for the root), escaped as described in
/// the module docs.
pub fn pattern(path: &[u8], subtree: bool, sep: Separator) -> Vec<u8> {
    let substitute = sep == Separator::Newline && breaks_line(path);
    let wild = subtree || substitute || path.iter().any(|b| matches!(b, b'*' | b'?' | b'['));
    let mut out = Vec::with_capacity(path.len() + 5);
    out.push(b'/');
    for &b in path {
        match b {
            b'\n' | b'\r' if substitute => out.push(b'?'),
            b'\\' | b'*' | b'?' | b'[' if wild => {
                out.push(b'\\');
                out.push(b);
            }
            _ => out.push(b),
        }
    }
    if subtree {
        if !path.is_empty() {
            out.push(b'/');
        }
        out.extend_from_slice(b"***");
    }
    out
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Cover {
    /// `/p`
    exact: bool,
    /// `/p/***`
    subtree: bool,
    /// Named by an op (not only an ancestor of one).
    op: bool,
}

/// What the include list must name, before rendering.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Includes {
    map: BTreeMap<Vec<u8>, Cover>,
}

impl Includes {
    /// The includes for every op of `batch`. `stat` tells whether a source
    /// path is a directory, a non-directory, or gone (None).
    pub fn from_batch(batch: &Batch, mut stat: impl FnMut(&[u8]) -> Option<SourceKind>) -> Self {
        let mut inc = Includes::default();
        for op in &batch.ops {
            match op {
                Op::Sync { path, recursive } => inc.add_op(path, *recursive, &mut stat),
                Op::Move { from, to } => {
                    inc.add_op(from, true, &mut stat);
                    inc.add_op(to, true, &mut stat);
                }
            }
        }
        inc
    }

    fn add_op(
        &mut self,
        p: &[u8],
        recursive: bool,
        stat: &mut impl FnMut(&[u8]) -> Option<SourceKind>,
    ) {
        if p.is_empty() {
            // The root itself is always part of an rsync transfer of `src/`;
            // only a recursive root sync needs a line.
            if recursive {
                self.add(p, true);
            }
            return;
        }
        let subtree = recursive || stat(p) != Some(SourceKind::Dir);
        self.add(p, subtree);
    }

    /// Adds `p` (with its ancestors), recursively when `subtree`.
    pub fn add(&mut self, p: &[u8], subtree: bool) {
        for a in path::ancestors(p) {
            self.map.entry(a.to_vec()).or_default().exact = true;
        }
        let c = self.map.entry(p.to_vec()).or_default();
        c.op = true;
        c.exact |= !p.is_empty();
        c.subtree |= subtree;
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// True when `p` or one of its ancestors is included recursively.
    fn covered(&self, p: &[u8]) -> bool {
        let sub = |a: &[u8]| self.map.get(a).is_some_and(|c| c.subtree);
        sub(b"") || path::ancestors(p).any(sub) || (!p.is_empty() && sub(p))
    }

    /// True when `p` lies strictly below a recursively included directory.
    fn redundant(&self, p: &[u8]) -> bool {
        if p.is_empty() {
            return false;
        }
        let sub = |a: &[u8]| self.map.get(a).is_some_and(|c| c.subtree);
        sub(b"") || path::ancestors(p).any(sub)
    }

    /// The entries that produce lines, sorted, redundant ones left out.
    fn entries(&self) -> impl Iterator<Item = (&[u8], Cover)> {
        self.map
            .iter()
            .filter(|(p, _)| !self.redundant(p))
            .map(|(p, c)| (p.as_slice(), *c))
    }

    /// The paths named by ops (not ancestors), sorted, without those below a
    /// recursively included directory: what `%INCLUDE-LIST%` lists.
    pub fn op_paths(&self) -> Vec<&[u8]> {
        self.entries()
            .filter(|(_, c)| c.op)
            .map(|(p, _)| p)
            .collect()
    }

    /// The recursively included paths (the root is the empty path), sorted,
    /// without those below another: where excluded paths can hide.
    pub fn subtrees(&self) -> Vec<&[u8]> {
        self.entries()
            .filter(|(_, c)| c.subtree)
            .map(|(p, _)| p)
            .collect()
    }

    /// Every path that gets a line (for [`Separator::needed`]).
    pub fn paths(&self) -> impl Iterator<Item = &[u8]> {
        self.entries().map(|(p, _)| p)
    }

    /// How many lines [`render_includes`] writes without inline excludes.
    pub fn line_count(&self) -> usize {
        self.entries()
            .map(|(_, c)| usize::from(c.exact) + usize::from(c.subtree))
            .sum()
    }

    /// Splits into parts of at most `max_lines` lines each (0 = no limit),
    /// every part carrying the ancestors of its own paths. A part exceeds
    /// the limit only when one path and its ancestors alone do.
    pub fn split(&self, max_lines: usize) -> Vec<Includes> {
        if max_lines == 0 || self.line_count() <= max_lines {
            return vec![self.clone()];
        }
        let mut parts = Vec::new();
        let mut cur = Includes::default();
        let mut cur_lines = 0;
        for (p, c) in self.entries().filter(|(_, c)| c.op) {
            let added = |inc: &Includes| {
                let own = usize::from(c.exact) + usize::from(c.subtree);
                own + path::ancestors(p)
                    .filter(|a| !inc.map.contains_key(*a))
                    .count()
            };
            let mut n = added(&cur);
            if cur_lines > 0 && cur_lines + n > max_lines {
                parts.push(std::mem::take(&mut cur));
                n = added(&cur);
                cur_lines = 0;
            }
            for a in path::ancestors(p) {
                cur.map.entry(a.to_vec()).or_default().exact = true;
            }
            let e = cur.map.entry(p.to_vec()).or_default();
            e.op = true;
            e.exact |= c.exact;
            e.subtree |= c.subtree;
            cur_lines += n;
        }
        if !cur.is_empty() {
            parts.push(cur);
        }
        parts
    }
}

/// Paths that must stay out of the transfer (the rules exclude them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Excludes {
    set: BTreeSet<Vec<u8>>,
}

impl Excludes {
    /// From relative paths; duplicates and paths below another excluded one
    /// (rsync does not descend into an excluded directory) are dropped, and
    /// so is the root.
    pub fn new<P: AsRef<[u8]>>(paths: impl IntoIterator<Item = P>) -> Self {
        let all: BTreeSet<Vec<u8>> = paths
            .into_iter()
            .map(|p| p.as_ref().to_vec())
            .filter(|p| !p.is_empty())
            .collect();
        let set = all
            .iter()
            .filter(|p| !path::ancestors(p).any(|a| all.contains(a)))
            .cloned()
            .collect();
        Excludes { set }
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    pub fn paths(&self) -> impl Iterator<Item = &[u8]> {
        self.set.iter().map(Vec::as_slice)
    }

    /// Only the exclusions that can matter for `inc`: those inside a
    /// recursively included directory or named by an include themselves
    /// (everything else is excluded by `--exclude=*` anyway).
    pub fn relevant_to(&self, inc: &Includes) -> Excludes {
        Excludes {
            set: self
                .set
                .iter()
                .filter(|p| inc.covered(p) || inc.map.contains_key(p.as_slice()))
                .cloned()
                .collect(),
        }
    }
}

/// The include-list file contents. With `inline_excludes` (used when there
/// is no exclude-list file, `--rsync-prefer-include`), the exclusions come
/// first as `- /p` lines, which rsync reads as excludes in an include file.
pub fn render_includes(
    inc: &Includes,
    inline_excludes: Option<&Excludes>,
    sep: Separator,
) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(ex) = inline_excludes {
        for p in ex.paths() {
            out.extend_from_slice(b"- ");
            out.extend(pattern(p, false, sep));
            out.push(sep.byte());
        }
    }
    for (p, c) in inc.entries() {
        if c.exact {
            out.extend(pattern(p, false, sep));
            out.push(sep.byte());
        }
        if c.subtree {
            out.extend(pattern(p, true, sep));
            out.push(sep.byte());
        }
    }
    out
}

/// The exclude-list file contents: one `/p` per excluded path.
pub fn render_excludes(ex: &Excludes, sep: Separator) -> Vec<u8> {
    let mut out = Vec::new();
    for p in ex.paths() {
        out.extend(pattern(p, false, sep));
        out.push(sep.byte());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sync(p: &[u8], recursive: bool) -> Op {
        Op::sync(p, recursive)
    }

    fn batch(ops: Vec<Op>) -> Batch {
        Batch::of(ops)
    }

    /// A fake source: `dirs` are directories, `files` non-directories,
    /// anything else is gone.
    fn stat<'a>(
        dirs: &'a [&[u8]],
        files: &'a [&[u8]],
    ) -> impl FnMut(&[u8]) -> Option<SourceKind> + 'a {
        move |p| {
            if dirs.contains(&p) {
                Some(SourceKind::Dir)
            } else if files.contains(&p) {
                Some(SourceKind::File)
            } else {
                None
            }
        }
    }

    fn lines(bytes: &[u8]) -> Vec<String> {
        bytes
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect()
    }

    fn includes(ops: Vec<Op>, dirs: &[&[u8]], files: &[&[u8]]) -> Vec<String> {
        let inc = Includes::from_batch(&batch(ops), stat(dirs, files));
        lines(&render_includes(&inc, None, Separator::Newline))
    }

    #[test]
    fn initial_sync_is_everything() {
        assert_eq!(includes(vec![sync(b"", true)], &[], &[]), ["/***"]);
        // Anything else in the same batch is redundant.
        assert_eq!(
            includes(vec![sync(b"a/b", false), sync(b"", true)], &[], &[b"a/b"]),
            ["/***"]
        );
    }

    #[test]
    fn root_without_recursion_needs_no_line() {
        assert!(includes(vec![sync(b"", false)], &[b""], &[]).is_empty());
    }

    #[test]
    fn file_gets_ancestors_and_both_lines() {
        assert_eq!(
            includes(vec![sync(b"a/b/c", false)], &[b"a", b"a/b"], &[b"a/b/c"]),
            ["/a", "/a/b", "/a/b/c", "/a/b/c/***"]
        );
    }

    #[test]
    fn dir_non_recursive_is_itself_only() {
        assert_eq!(
            includes(vec![sync(b"a/d", false)], &[b"a", b"a/d"], &[]),
            ["/a", "/a/d"]
        );
    }

    #[test]
    fn dir_recursive_and_deleted_paths_are_subtrees() {
        assert_eq!(
            includes(
                vec![
                    sync(b"d", true),
                    sync(b"gone", false),
                    sync(b"x/gone", true)
                ],
                &[b"d", b"x"],
                &[]
            ),
            [
                "/d",
                "/d/***",
                "/gone",
                "/gone/***",
                "/x",
                "/x/gone",
                "/x/gone/***"
            ]
        );
    }

    #[test]
    fn move_covers_both_ends_recursively() {
        assert_eq!(
            includes(
                vec![Op::Move {
                    from: b"a/old".to_vec(),
                    to: b"b/new".to_vec()
                }],
                &[b"a", b"b", b"b/new"],
                &[]
            ),
            ["/a", "/a/old", "/a/old/***", "/b", "/b/new", "/b/new/***"]
        );
    }

    #[test]
    fn ancestors_once_sorted_parents_first_and_covered_paths_pruned() {
        assert_eq!(
            includes(
                vec![
                    sync(b"z/y/x", false),
                    sync(b"a b", false),
                    sync(b"a/b", false),
                    sync(b"z/y/w", false),
                    sync(b"a", true),
                ],
                &[b"a", b"z", b"z/y"],
                &[b"a b", b"a/b", b"z/y/x", b"z/y/w"]
            ),
            [
                "/a",
                "/a/***",
                "/a b",
                "/a b/***",
                "/z",
                "/z/y",
                "/z/y/w",
                "/z/y/w/***",
                "/z/y/x",
                "/z/y/x/***"
            ]
        );
    }

    #[test]
    fn escaping_only_in_wildcard_patterns() {
        let nl = Separator::Newline;
        // No wildcard in the pattern: literal, backslash stays single.
        assert_eq!(pattern(br"a\b", false, nl), br"/a\b");
        assert_eq!(pattern(b"]", false, nl), b"/]");
        assert_eq!(pattern(b"x]y", false, nl), b"/x]y");
        assert_eq!(pattern(b"#h", false, nl), b"/#h");
        // A wildcard in the name forces escaping of all of them.
        assert_eq!(pattern(br"q*\", false, nl), br"/q\*\\");
        assert_eq!(pattern(b"q?", false, nl), br"/q\?");
        assert_eq!(pattern(b"q[1]", false, nl), br"/q\[1]");
        // The /*** suffix is a wildcard too.
        assert_eq!(pattern(br"a\b", true, nl), br"/a\\b/***");
        assert_eq!(pattern(b"x]y", true, nl), b"/x]y/***");
        assert_eq!(pattern(b"", true, nl), b"/***");
        assert_eq!(pattern(b"d/[x", true, nl), br"/d/\[x/***");
    }

    #[test]
    fn line_breaks_need_nul_or_become_question_marks() {
        assert_eq!(pattern(b"a\nb", false, Separator::Nul), b"/a\nb");
        assert_eq!(pattern(b"a\rb*", false, Separator::Nul), b"/a\rb\\*");
        assert_eq!(pattern(b"a\nb*", false, Separator::Newline), b"/a?b\\*");
        assert_eq!(pattern(b"c\r", true, Separator::Newline), b"/c?/***");
        assert_eq!(Separator::needed([&b"a"[..], b"b\rc"]), Separator::Nul);
        assert_eq!(Separator::needed([&b"a"[..], b"b c"]), Separator::Newline);
        let inc = Includes::from_batch(&batch(vec![sync(b"d\n/f", false)]), stat(&[b"d\n"], &[]));
        assert_eq!(Separator::needed(inc.paths()), Separator::Nul);
        assert_eq!(
            render_includes(&inc, None, Separator::Nul),
            b"/d\n\0/d\n/f\0/d\n/f/***\0"
        );
    }

    #[test]
    fn non_utf8_bytes_pass_through() {
        let inc = Includes::from_batch(
            &batch(vec![sync(b"\xff/\xfe", false)]),
            stat(&[b"\xff"], &[b"\xff/\xfe"]),
        );
        assert_eq!(
            render_includes(&inc, None, Separator::Newline),
            b"/\xff\n/\xff/\xfe\n/\xff/\xfe/***\n"
        );
    }

    #[test]
    fn excludes_are_deduped_pruned_and_escaped() {
        let ex = Excludes::new([&b"a/b"[..], b"a/b/c", b"", b"x*", b"a/b", b"k"]);
        assert_eq!(
            render_excludes(&ex, Separator::Newline),
            b"/a/b\n/k\n/x\\*\n"
        );
    }

    #[test]
    fn excludes_relevant_only_inside_includes() {
        let inc = Includes::from_batch(
            &batch(vec![sync(b"d", true), sync(b"f", false)]),
            stat(&[b"d"], &[b"f"]),
        );
        let ex = Excludes::new([&b"d/tmp"[..], b"elsewhere/tmp", b"f", b"dd"]);
        let rel = ex.relevant_to(&inc);
        assert_eq!(rel.paths().collect::<Vec<_>>(), vec![&b"d/tmp"[..], b"f"]);
        let all = Includes::from_batch(&batch(vec![sync(b"", true)]), stat(&[], &[]));
        assert_eq!(ex.relevant_to(&all), ex);
    }

    #[test]
    fn inline_excludes_come_first_with_a_minus_prefix() {
        let inc = Includes::from_batch(&batch(vec![sync(b"", true)]), stat(&[], &[]));
        let ex = Excludes::new([&b"a/tmp"[..], b"- odd"]);
        assert_eq!(
            lines(&render_includes(&inc, Some(&ex), Separator::Newline)),
            ["- /- odd", "- /a/tmp", "/***"]
        );
    }

    #[test]
    fn op_paths_are_ops_not_ancestors() {
        let inc = Includes::from_batch(
            &batch(vec![
                sync(b"a/b", false),
                sync(b"c", true),
                sync(b"c/d", false),
            ]),
            stat(&[b"a", b"c"], &[b"a/b"]),
        );
        assert_eq!(inc.op_paths(), vec![&b"a/b"[..], b"c"]);
        assert_eq!(inc.subtrees(), vec![&b"a/b"[..], b"c"]);
        let dir = Includes::from_batch(&batch(vec![sync(b"a", false)]), stat(&[b"a"], &[]));
        assert!(dir.subtrees().is_empty());
    }

    #[test]
    fn split_keeps_ancestors_in_every_part() {
        let files: Vec<Vec<u8>> = (0..10)
            .map(|i| format!("top/sub/f{i}").into_bytes())
            .collect();
        let ops = files.iter().map(|f| sync(f, false)).collect();
        let refs: Vec<&[u8]> = files.iter().map(Vec::as_slice).collect();
        let inc = Includes::from_batch(&batch(ops), stat(&[b"top", b"top/sub"], &refs));
        assert_eq!(inc.line_count(), 22);
        assert_eq!(inc.split(0), vec![inc.clone()]);
        assert_eq!(inc.split(100), vec![inc.clone()]);
        let parts = inc.split(6);
        // Each part: 2 ancestors + 2 files × 2 lines.
        assert_eq!(parts.len(), 5);
        for part in &parts {
            assert!(part.line_count() <= 6, "{}", part.line_count());
            let l = lines(&render_includes(part, None, Separator::Newline));
            assert_eq!(&l[..2], ["/top", "/top/sub"]);
        }
        let mut all: Vec<Vec<u8>> = parts
            .iter()
            .flat_map(|p| p.op_paths())
            .map(<[u8]>::to_vec)
            .collect();
        all.sort();
        assert_eq!(all, files);
        // A limit smaller than one path with its ancestors still makes progress.
        assert_eq!(inc.split(1).len(), 10);
    }

    /// A tiny model of rsync's matching for our patterns: does `pattern`
    /// (rendered with `Nul`) match the relative path `p`?
    fn model_matches(pat: &[u8], p: &[u8]) -> bool {
        let pat = &pat[1..];
        let wild = pat.iter().any(|b| matches!(b, b'*' | b'?' | b'['));
        if !wild {
            return pat == p;
        }
        let (body, subtree) = match pat.strip_suffix(b"/***") {
            Some(b) => (b, true),
            None if pat == b"***" => return true,
            None => (pat, false),
        };
        let mut name = Vec::new();
        let mut it = body.iter();
        while let Some(&b) = it.next() {
            if b == b'\\' {
                name.push(*it.next().expect("dangling escape"));
            } else {
                assert!(!matches!(b, b'*' | b'?' | b'['), "unescaped wildcard");
                name.push(b);
            }
        }
        if subtree {
            path::is_under(p, &name)
        } else {
            name == p
        }
    }

    fn name_byte() -> impl Strategy<Value = u8> {
        prop_oneof![
            proptest::sample::select(b"ab*?[]\\ #;-\n\r".to_vec()),
            (1u8..=255).prop_filter("no slash", |b| *b != b'/'),
        ]
    }

    fn rel_path() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(proptest::collection::vec(name_byte(), 1..5), 1..4)
            .prop_map(|comps| comps.join(&b'/'))
    }

    proptest! {
        #[test]
        fn patterns_match_exactly_their_path(p in rel_path(), q in rel_path(), subtree: bool) {
            let pat = pattern(&p, subtree, Separator::Nul);
            prop_assert!(model_matches(&pat, &p));
            let want = if subtree { path::is_under(&q, &p) } else { q == p };
            prop_assert_eq!(model_matches(&pat, &q), want);
        }

        #[test]
        fn every_op_path_and_its_ancestors_are_included(
            ps in proptest::collection::vec((rel_path(), any::<bool>()), 1..6)
        ) {
            let ops = ps.iter().map(|(p, r)| sync(p, *r)).collect();
            let inc = Includes::from_batch(&batch(ops), |_| None);
            let text = render_includes(&inc, None, Separator::Nul);
            let pats: Vec<&[u8]> = text.split(|&b| b == 0).filter(|l| !l.is_empty()).collect();
            for (p, _) in &ps {
                for target in path::ancestors(p).chain([p.as_slice()]) {
                    prop_assert!(pats.iter().any(|pat| model_matches(pat, target)),
                        "{} not matched", path::display(target));
                }
            }
        }
    }
}
