//! Differential tests: clsync 0.4.5 and livesync run side by side with the
//! same options, the same tree and the same changes, and what each hands
//! its handler (argv, list files) is compared as sets.
//!
//! The catalogue (one tree and four phases, run for every mode): the
//! initial sync of a tree with names holding spaces, `*?[]\`, a newline and
//! non-UTF-8 bytes, and rule-excluded files and directories; then new
//! directories and files, an append, more odd names; then a file rename and
//! a directory rename; then deletes of a file and of a directory tree; last
//! the delete of a renamed directory, where clsync is wrong (it names the
//! paths under the directory's old name) and our own behaviour is asserted.
//! Every deliberate difference is listed in README.md ("Compatibility with
//! clsync") and normalised or asserted here, each with its reason.

mod common;
#[path = "common/modes.rs"]
mod modes;

use common::require_tool;
use modes::*;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn rules_file() -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().expect("rules file");
    fs::write(f.path(), "-f\\.tmp$\n-d^excl$\n").expect("write rules");
    f
}

fn setup(w: &Path) {
    put(w, b"f1", b"one\n");
    put(w, b"sub/g 2", b"two");
    put(w, b"sp ace/x", b"x");
    put(w, b"a*?[]\\b", b"wild");
    put(w, b"bad\xff", b"bytes");
    put(w, b"nl\nx", b"newline");
    put(w, b"skip.tmp", b"excluded file");
    put(w, b"excl/e", b"in an excluded dir");
    put(w, b"old/o", b"deleted later");
}

fn phase_create(w: &Path) {
    fs::create_dir(abs(w, b"nd")).expect("mkdir nd");
    put(w, b"nd/x", b"new");
    put(w, b"nd/y.tmp", b"excluded in a new dir");
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(abs(w, b"f1"))
        .expect("open f1");
    std::io::Write::write_all(&mut f, b"more\n").expect("append");
    drop(f);
    put(w, b"q*?[]\\c", b"wild");
    put(w, b"new\xfe", b"bytes");
    put(w, b"nl2\ny", b"newline");
    put(w, b"n sp ace", b"space");
    put(w, b"new.tmp", b"excluded");
}

fn phase_rename(w: &Path) {
    fs::rename(abs(w, b"sub/g 2"), abs(w, b"sub/h 2")).expect("rename file");
    fs::rename(abs(w, b"nd"), abs(w, b"nd2")).expect("rename dir");
}

fn phase_delete(w: &Path) {
    fs::remove_file(abs(w, b"f1")).expect("rm f1");
    fs::remove_dir_all(abs(w, b"old")).expect("rm -r old");
}

fn phase_delete_renamed(w: &Path) {
    fs::remove_dir_all(abs(w, b"nd2")).expect("rm -r nd2");
}

const PHASES: [&dyn Fn(&Path); 4] = [
    &phase_create,
    &phase_rename,
    &phase_delete,
    &phase_delete_renamed,
];

/// The phase whose clsync output is wrong (stale paths after a rename).
const STALE_PHASE: usize = 4;

fn is_marker(p: &[u8]) -> bool {
    p.starts_with(b"zz-mark-")
}

fn has_newline(p: &[u8]) -> bool {
    p.contains(&b'\n')
}

type Masks = BTreeMap<Vec<u8>, u32>;

fn or_into(m: &mut Masks, p: Vec<u8>, bits: u32) {
    if !is_marker(&p) {
        *m.entry(p).or_default() |= norm_mask(bits);
    }
}

fn parse_mask(b: &[u8]) -> u32 {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a mask: {}", show(b)))
}

/// simple mode: `sync lab MASK ABSPATH` per run → path → mask union.
fn simple_masks(side: &Side, runs: &[Run]) -> Masks {
    let mut m = Masks::new();
    for r in runs {
        assert_eq!(r.argv.len(), 4, "{:?}: {:?}", side.prog, r.argv);
        assert_eq!(r.argv[..2], [b"sync".to_vec(), b"lab".to_vec()]);
        let rel = side
            .rel(&r.argv[3])
            .unwrap_or_else(|| panic!("{:?}: not absolute: {}", side.prog, show(&r.argv[3])));
        or_into(&mut m, rel, parse_mask(&r.argv[2]));
        assert_eq!(r.cwd, side.w.as_os_str().as_bytes(), "cwd");
    }
    m
}

/// direct mode: `PATH... DEST/` → the set of relative paths (`.` = root).
fn direct_paths(side: &Side, runs: &[Run]) -> BTreeSet<Vec<u8>> {
    let mut out = BTreeSet::new();
    let dst = format!("{}/", side.dst.display()).into_bytes();
    for r in runs {
        assert_eq!(r.argv.last(), Some(&dst), "{:?}: {:?}", side.prog, r.argv);
        for a in &r.argv[..r.argv.len() - 1] {
            let p = if a == b"." { Vec::new() } else { a.clone() };
            if !is_marker(&p) {
                out.insert(p);
            }
        }
        assert_eq!(r.cwd, side.w.as_os_str().as_bytes(), "cwd");
    }
    out
}

/// shell mode: `synclist lab LIST` with `sync lab MASK PATH` lines. A line
/// that does not start a record continues the previous path (a name with a
/// newline).
fn shell_masks(side: &Side, runs: &[Run]) -> Masks {
    let mut m = Masks::new();
    for r in runs {
        assert_eq!(r.argv.len(), 3, "{:?}: {:?}", side.prog, r.argv);
        assert_eq!(r.argv[..2], [b"synclist".to_vec(), b"lab".to_vec()]);
        let list = r.lists.get(&2).expect("the list file was readable");
        let mut recs: Vec<(Vec<u8>, u32)> = Vec::new();
        for line in list.split(|&b| b == b'\n') {
            if let Some(rest) = line.strip_prefix(b"sync lab ") {
                let sp = rest.iter().position(|&b| b == b' ').expect("MASK PATH");
                recs.push((rest[sp + 1..].to_vec(), parse_mask(&rest[..sp])));
            } else if let Some(last) = recs.last_mut() {
                if !line.is_empty() {
                    last.0.push(b'\n');
                    last.0.extend_from_slice(line);
                }
            }
        }
        for (p, bits) in recs {
            or_into(&mut m, p, bits);
        }
    }
    m
}

fn require() -> bool {
    require_tool("clsync") && require_tool("python3")
}

/// Entries of a directory created in the same window race with the watch
/// on it: whether their writes are seen as events or only found by the
/// listing after the watch is added depends on timing (for both programs),
/// so only their `IN_CREATE` is compared.
fn in_new_dir(p: &[u8]) -> bool {
    p.starts_with(b"nd/")
}

fn diff_masks(what: &str, clsync: &Masks, ours: &Masks) {
    let race = |m: &Masks| -> Masks {
        m.iter()
            .map(|(p, b)| (p.clone(), if in_new_dir(p) { b & IN_CREATE } else { *b }))
            .collect()
    };
    let (clsync, ours) = (&race(clsync), &race(ours));
    if clsync != ours {
        let mut lines = Vec::new();
        for p in clsync.keys().chain(ours.keys()).collect::<BTreeSet<_>>() {
            let (a, b) = (clsync.get(p), ours.get(p));
            if a != b {
                lines.push(format!("  {}: clsync {a:?} livesync {b:?}", show(p)));
            }
        }
        panic!("{what}: clsync and livesync differ:\n{}", lines.join("\n"));
    }
}

/// Our own answer for the phase where clsync is wrong: the delete of a
/// renamed directory names the paths where they are now, and nothing under
/// the old name.
fn assert_stale_phase_fixed(ours: &Masks) {
    assert_eq!(
        ours.get(&b"nd2/x"[..]).map(|m| m & IN_DELETE),
        Some(IN_DELETE),
        "{ours:?}"
    );
    assert!(
        ours.get(&b"nd2"[..])
            .is_some_and(|m| m & (IN_DELETE | IN_ISDIR) == IN_DELETE | IN_ISDIR),
        "{ours:?}"
    );
    assert!(
        !ours.keys().any(|p| p.starts_with(b"nd/")),
        "stale path: {ours:?}"
    );
}

#[test]
fn simple_mode_matches_clsync() {
    if !require() {
        return;
    }
    let rules = rules_file();
    let r = rules.path().to_str().expect("utf-8");
    let out = differential("simple", &["-R", r], &setup, &PHASES);
    let [c, l] = &out.sides;
    for (n, (cr, lr)) in out.clsync.iter().zip(&out.livesync).enumerate() {
        let (cm, lm) = (simple_masks(c, cr), simple_masks(l, lr));
        if n == STALE_PHASE {
            assert_stale_phase_fixed(&lm);
            continue;
        }
        diff_masks(&format!("simple, phase {n}"), &cm, &lm);
    }
    // The initial sync names the root and every permitted entry.
    let init = simple_masks(l, &out.livesync[0]);
    assert_eq!(init.get(&b""[..]), Some(&(IN_CREATE | IN_ISDIR)));
    assert!(!init.contains_key(&b"skip.tmp"[..]) && !init.contains_key(&b"excl"[..]));
    assert!(init.contains_key(&b"nl\nx"[..]) && init.contains_key(&b"bad\xff"[..]));
}

#[test]
fn direct_mode_matches_clsync() {
    if !require() {
        return;
    }
    let rules = rules_file();
    let r = rules.path().to_str().expect("utf-8");
    let out = differential("direct", &["-R", r], &setup, &PHASES);
    let [c, l] = &out.sides;
    for (n, (cr, lr)) in out.clsync.iter().zip(&out.livesync).enumerate() {
        let (mut cs, mut ls) = (direct_paths(c, cr), direct_paths(l, lr));
        if n == STALE_PHASE {
            assert!(
                ls.contains(&b"nd2/x"[..]) && ls.contains(&b"nd2"[..]),
                "{ls:?}"
            );
            assert!(!ls.iter().any(|p| p.starts_with(b"nd/")), "{ls:?}");
            continue;
        }
        // clsync drops names with a newline from direct mode's arguments
        // (so the handler never syncs them); we pass them as they are.
        if n == 0 {
            assert!(ls.contains(&b"nl\nx"[..]), "{ls:?}");
        }
        if n == 1 {
            assert!(ls.contains(&b"nl2\ny"[..]), "{ls:?}");
        }
        ls.retain(|p| !has_newline(p));
        cs.retain(|p| !has_newline(p));
        assert_eq!(cs, ls, "direct, phase {n}");
    }
    // clsync leaves (empty) list files behind in direct mode; we do not.
    assert_eq!(fs::read_dir(&l.lists).expect("lists").count(), 0);
}

fn shell_compare(extra: &[&str]) {
    let rules = rules_file();
    let r = rules.path().to_str().expect("utf-8");
    let mut args = vec!["-R", r];
    args.extend_from_slice(extra);
    let out = differential("shell", &args, &setup, &PHASES);
    let [c, l] = &out.sides;
    for (n, (cr, lr)) in out.clsync.iter().zip(&out.livesync).enumerate() {
        let (mut cm, mut lm) = (shell_masks(c, cr), shell_masks(l, lr));
        if n == STALE_PHASE {
            assert_stale_phase_fixed(&lm);
            continue;
        }
        // clsync drops names with a newline from shell lists (so the
        // handler never syncs them); we write them as they are.
        let nl: Vec<Vec<u8>> = lm.keys().filter(|p| has_newline(p)).cloned().collect();
        if n == 0 {
            assert!(nl.contains(&b"nl\nx".to_vec()), "{lm:?}");
        }
        if n == 1 {
            assert!(nl.contains(&b"nl2\ny".to_vec()), "{lm:?}");
        }
        lm.retain(|p, _| !has_newline(p));
        cm.retain(|p, _| !has_newline(p));
        diff_masks(&format!("shell, phase {n}"), &cm, &lm);
    }
    // List files are gone after each run (-L given, no -U).
    assert_eq!(fs::read_dir(&l.lists).expect("lists").count(), 0);
}

#[test]
fn shell_mode_matches_clsync() {
    if !require() {
        return;
    }
    shell_compare(&[]);
}

#[test]
fn shell_mode_with_recursive_sync_and_simplified_lists() {
    if !require() {
        return;
    }
    let rules = rules_file();
    let r = rules.path().to_str().expect("utf-8");
    let args = ["-R", r, "--have-recursive-sync", "--synclist-simplify"];
    let out = differential("shell", &args, &setup, &PHASES[..2]);
    let [c, l] = &out.sides;
    // initialsync runs: the same absolute directories on both sides.
    let initial = |side: &Side, runs: &[Run]| -> BTreeSet<Vec<u8>> {
        runs.iter()
            .filter(|r| r.argv.first().is_some_and(|a| a == b"initialsync"))
            .map(|r| {
                assert_eq!(r.argv.len(), 3, "{:?}", r.argv);
                side.rel(&r.argv[2]).expect("absolute path")
            })
            .collect()
    };
    // synclist runs: bare relative paths.
    let listed = |runs: &[Run]| -> BTreeSet<Vec<u8>> {
        runs.iter()
            .filter(|r| r.argv.first().is_some_and(|a| a == b"synclist"))
            .flat_map(|r| {
                r.lists[&2]
                    .split(|&b| b == b'\n')
                    .filter(|p| !p.is_empty() && !is_marker(p))
                    .map(<[u8]>::to_vec)
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    for (n, (cr, lr)) in out.clsync.iter().zip(&out.livesync).enumerate() {
        let (ci, li) = (initial(c, cr), initial(l, lr));
        assert_eq!(ci, li, "initialsync runs, phase {n}");
        let (cl, mut ll) = (listed(cr), listed(lr));
        // A name with a newline is two lines in a simplified list (clsync
        // leaves such names out).
        for piece in [&b"nl"[..], b"x", b"nl2", b"y"] {
            ll.remove(piece);
        }
        // clsync also lists the entries of a directory it has just handed
        // to initialsync (they are synced twice); we leave them out, unless
        // they changed after the initialsync run had started (a new dir is
        // handed over at once, and its files may still be being written:
        // then they come again in the next run, as they must).
        // clsync names a directory moved in both ways too.
        let covered = |p: &Vec<u8>| {
            li.iter()
                .any(|d| p == d || (p.starts_with(d) && p.get(d.len()) == Some(&b'/')))
        };
        let cl: BTreeSet<Vec<u8>> = cl.into_iter().filter(|p| !covered(p)).collect();
        ll.retain(|p| !covered(p));
        assert_eq!(cl, ll, "synclist paths, phase {n}");
    }
    assert_eq!(
        initial(l, &out.livesync[0]),
        BTreeSet::from([Vec::new()]),
        "the initial sync is one initialsync of the root"
    );
    assert!(initial(l, &out.livesync[1]).contains(&b"nd"[..]));
}

/// What an rsync include/exclude pair makes rsync transfer among the
/// candidate paths: named (`/p`), or below a `/p/***`, and not excluded (at
/// or below an exclude line, `- /p` in the include list too).
fn rsync_effective(
    inc: &[u8],
    exc: Option<&[u8]>,
    candidates: &BTreeSet<Vec<u8>>,
) -> BTreeSet<Vec<u8>> {
    fn unescape(line: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < line.len() {
            if line[i] == b'\\' && i + 1 < line.len() {
                i += 1;
            }
            out.push(line[i]);
            i += 1;
        }
        out
    }
    let mut named = BTreeSet::new();
    let mut subtree = BTreeSet::new();
    let mut excluded = BTreeSet::new();
    let lines = |b: &[u8]| -> Vec<Vec<u8>> {
        b.split(|&c| c == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect()
    };
    for l in lines(inc) {
        if let Some(x) = l.strip_prefix(b"- ") {
            excluded.insert(unescape(x.strip_prefix(b"/").unwrap_or(x)));
            continue;
        }
        let l = l.strip_prefix(b"/").unwrap_or(&l).to_vec();
        if l == b"***" {
            subtree.insert(Vec::new());
        } else if let Some(p) = l.strip_suffix(b"/***") {
            subtree.insert(unescape(p));
        } else {
            named.insert(unescape(&l));
        }
    }
    for l in lines(exc.unwrap_or(b"")) {
        excluded.insert(unescape(l.strip_prefix(b"/").unwrap_or(&l)));
    }
    let under = |p: &[u8], set: &BTreeSet<Vec<u8>>| {
        set.iter().any(|d| {
            d.is_empty() && !p.is_empty() || (p.starts_with(d) && p.get(d.len()) == Some(&b'/'))
        })
    };
    candidates
        .iter()
        .filter(|p| named.contains(*p) || subtree.contains(*p) || under(p, &subtree))
        .filter(|p| !excluded.contains(*p) && !under(p, &excluded))
        .cloned()
        .collect()
}

fn rsyncshell_compare(extra: &[&str]) {
    let rules = rules_file();
    let r = rules.path().to_str().expect("utf-8");
    let mut args = vec!["-R", r];
    args.extend_from_slice(extra);
    let prefer = extra.contains(&"--rsync-prefer-include");
    let out = differential("rsyncshell", &args, &setup, &PHASES[..3]);
    let [c, l] = &out.sides;
    // Every path either side's lists can name, plus the rule-excluded ones.
    let mut candidates: BTreeSet<Vec<u8>> = [
        &b""[..],
        b"f1",
        b"sub",
        b"sub/g 2",
        b"sub/h 2",
        b"sp ace",
        b"sp ace/x",
        b"a*?[]\\b",
        b"bad\xff",
        b"nl\nx",
        b"skip.tmp",
        b"excl",
        b"excl/e",
        b"old",
        b"old/o",
        b"nd",
        b"nd/x",
        b"nd/y.tmp",
        b"nd2",
        b"nd2/x",
        b"nd2/y.tmp",
        b"q*?[]\\c",
        b"new\xfe",
        b"nl2\ny",
        b"n sp ace",
        b"new.tmp",
    ]
    .iter()
    .map(|p| p.to_vec())
    .collect();
    candidates.retain(|p| !has_newline(p));
    // What the source holds after each phase (newline names left out).
    let set = |v: &[&[u8]]| -> BTreeSet<Vec<u8>> { v.iter().map(|p| p.to_vec()).collect() };
    let initial = set(&[
        b"",
        b"f1",
        b"sub",
        b"sub/g 2",
        b"sp ace",
        b"sp ace/x",
        b"a*?[]\\b",
        b"bad\xff",
        b"skip.tmp",
        b"excl",
        b"excl/e",
        b"old",
        b"old/o",
    ]);
    let mut created = initial.clone();
    created.extend(set(&[
        b"nd",
        b"nd/x",
        b"nd/y.tmp",
        b"q*?[]\\c",
        b"new\xfe",
        b"n sp ace",
        b"new.tmp",
    ]));
    let mut renamed = created.clone();
    for p in [&b"sub/g 2"[..], b"nd", b"nd/x", b"nd/y.tmp"] {
        renamed.remove(p);
    }
    renamed.extend(set(&[b"sub/h 2", b"nd2", b"nd2/x", b"nd2/y.tmp"]));
    let mut deleted = renamed.clone();
    for p in [&b"f1"[..], b"old", b"old/o"] {
        deleted.remove(p);
    }
    let exists = [initial.clone(), created, renamed, deleted];
    let effective =
        |side: &Side, runs: &[Run], candidates: &BTreeSet<Vec<u8>>| -> BTreeSet<Vec<u8>> {
            let mut out = BTreeSet::new();
            for r in runs {
                assert_eq!(r.argv[..2], [b"rsynclist".to_vec(), b"lab".to_vec()]);
                assert_eq!(r.argv.len(), if prefer { 3 } else { 4 }, "{:?}", r.argv);
                assert_eq!(r.cwd, side.w.as_os_str().as_bytes(), "cwd");
                let inc = r.lists.get(&2).expect("include list");
                let exc = r.lists.get(&3).map(Vec::as_slice);
                out.extend(rsync_effective(inc, exc, candidates));
            }
            out
        };
    // Files below a directory the list takes whole that the rules exclude:
    // clsync's lists do not exclude them, so rsync would copy them.
    let rule_excluded = |p: &Vec<u8>| p.ends_with(b".tmp") || p.starts_with(b"excl");
    for (n, (cr, lr)) in out.clsync.iter().zip(&out.livesync).enumerate() {
        let cands = if n == 0 { &initial } else { &candidates };
        let (mut ce, mut le) = (effective(c, cr, cands), effective(l, lr, cands));
        // rsync always transfers the root of `src/` itself (clsync writes an
        // empty line for it, we write `/***`).
        ce.remove(&b""[..]);
        le.remove(&b""[..]);
        assert!(
            !le.iter().any(|p| rule_excluded(p) && exists[n].contains(p)),
            "phase {n}: livesync lets rsync copy a rule-excluded path: {le:?}"
        );
        let ce: BTreeSet<Vec<u8>> = ce.into_iter().filter(|p| !rule_excluded(p)).collect();
        le.retain(|p| !rule_excluded(p));
        // A directory that is gone from the source is named with `/***` by
        // us, so that rsync --delete can remove what the destination holds
        // below it; clsync names only `/dir`, whose contents `--exclude=*`
        // then protects, so rsync cannot delete the directory.
        if n == 2 {
            assert!(le.contains(&b"nd/x"[..]), "{le:?}");
        }
        le.retain(|p| exists[n].contains(p) || ce.contains(p));
        assert_eq!(ce, le, "rsyncshell {extra:?}, phase {n}");
    }
}

#[test]
fn rsyncshell_matches_clsync() {
    if !require() {
        return;
    }
    rsyncshell_compare(&[]);
}

#[test]
fn rsyncshell_prefer_include_matches_clsync() {
    if !require() {
        return;
    }
    rsyncshell_compare(&["--rsync-prefer-include"]);
}

/// clsync's own example (README: syncing `authorized_keys` files with
/// `cp --parents` in direct mode): the initial sync hands the handler the
/// same arguments. Both run once (`--only-initialsync`).
#[test]
fn authorized_keys_rules_initial_sync_matches_clsync() {
    if !require() {
        return;
    }
    let rules =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/authorized_keys/rules");
    let mut got = Vec::new();
    for prog in ["clsync", common::BIN] {
        let t = tempfile::tempdir().expect("tempdir");
        let root = t.path().canonicalize().expect("canonical");
        let (w, d) = (root.join("master"), root.join("homes"));
        fs::create_dir_all(&d).expect("mkdir");
        put(&w, b"alice/.ssh/authorized_keys", b"a");
        put(&w, b"bob/.ssh/authorized_keys", b"b");
        put(&w, b"bob/.ssh/id_rsa", b"private");
        put(&w, b"bob/docs/x", b"other");
        put(&w, b"carol/no-ssh", b"other");
        let rec = recorder(&root);
        let mut cmd = std::process::Command::new(prog);
        cmd.args(["-H", "/NULL/", "-M", "direct", "--only-initialsync", "-S"])
            .arg(&rec)
            .arg("-W")
            .arg(&w)
            .arg("-D")
            .arg(&d)
            .arg("-R")
            .arg(&rules);
        // SAFETY: geteuid has no preconditions.
        if prog == "clsync" && unsafe { libc::geteuid() } == 0 {
            cmd.args(["-u0", "-g0"]);
        }
        cmd.args([
            "--",
            "-Pfp",
            "--parents",
            "%INCLUDE-LIST%",
            "%destination-dir%",
        ]);
        let out = common::run_command(cmd, common::secs(30.0));
        assert_eq!(out.code, Some(0), "{prog}: {}", out.stderr);
        let runs = read_runs(&root.join("rec.py.runs"));
        assert_eq!(runs.len(), 1, "{prog}: {runs:?}");
        let mut argv = runs[0].argv.clone();
        assert_eq!(
            argv.last(),
            Some(&d.as_os_str().as_bytes().to_vec()),
            "{prog}"
        );
        argv.pop();
        argv.sort();
        got.push(argv);
    }
    assert_eq!(got[0], got[1]);
    assert_eq!(
        got[1],
        [
            b"--parents".to_vec(),
            b"-Pfp".to_vec(),
            b"alice/.ssh/authorized_keys".to_vec(),
            b"bob/.ssh/authorized_keys".to_vec()
        ]
    );
}
