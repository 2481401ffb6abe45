//! clsync's command modes through the real binary: option checks, what the
//! handler is given (%EVENT-MASK%, macros mid-argument, the destination's
//! realpath), list files (where, 0600/0700, removed unless -U), -F, and
//! --rsync-inclimit splitting rsyncshell's lists.

mod common;
#[path = "common/modes.rs"]
mod modes;

use common::{run_livesync, secs, wait_until, Daemon, TestEnv};
use modes::*;
use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;

fn runs_of(rec: &Path) -> Vec<Run> {
    read_runs(&rec.with_extension("py.runs"))
}

fn os(v: &[&str]) -> Vec<OsString> {
    v.iter().map(OsString::from).collect()
}

/// `livesync -H /NULL/ ARGS` with TMPDIR set, to completion.
fn run_with_tmp(args: &[OsString], tmp: &Path) -> common::Run {
    let mut cmd = Command::new(common::BIN);
    cmd.args(["-H", "/NULL/"]).args(args).env("TMPDIR", tmp);
    common::run_command(cmd, secs(30.0))
}

#[test]
fn command_modes_need_a_handler_program() {
    let env = TestEnv::new();
    for mode in ["simple", "direct", "shell", "rsyncshell"] {
        let src = env.src.to_str().unwrap();
        let r = run_livesync(&["-M", mode, "-W", src], secs(10.0));
        assert_eq!(r.code, Some(2), "{mode}: {}", r.stderr);
        assert!(
            r.stderr
                .contains(&format!("-M {mode}: give the handler program with -S")),
            "{}",
            r.stderr
        );
    }
    let r = run_livesync(
        &["-M", "bogus", "-W", env.src.to_str().unwrap()],
        secs(10.0),
    );
    assert_eq!(r.code, Some(2));
    assert!(
        r.stderr.contains("simple, direct, shell, rsyncshell"),
        "{}",
        r.stderr
    );
}

#[test]
fn direct_mode_runs_in_the_watch_dir_without_a_destination() {
    let env = TestEnv::new();
    put(&env.src, b"a b", b"x");
    let rec = recorder(&env.root);
    let mut args = os(&["-M", "direct", "--only-initialsync", "-S"]);
    args.push(rec.clone().into());
    args.push("-W".into());
    args.push(env.src.clone().into());
    let r = run_with_tmp(&args, &env.outside);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let runs = runs_of(&rec);
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(
        runs[0].argv,
        vec![b".".to_vec(), b"a b".to_vec(), b"/".to_vec()]
    );
    assert_eq!(runs[0].cwd, env.src.as_os_str().as_bytes());
    // No private list dir is made (or left) when no list file is needed.
    assert_eq!(fs::read_dir(&env.outside).unwrap().count(), 0);
}

#[test]
fn macros_mid_argument_event_mask_and_destination_realpath() {
    let env = TestEnv::new();
    put(&env.src, b"f", b"x");
    let rec = recorder(&env.root);
    let link = env.root.join("dst-link");
    std::os::unix::fs::symlink(&env.dst, &link).unwrap();
    let mut args = os(&["-M", "simple", "--only-initialsync", "-l", "L1", "-S"]);
    args.push(rec.clone().into());
    args.extend([
        "-W".into(),
        env.src.clone().into(),
        "-D".into(),
        link.into(),
    ]);
    args.extend(os(&[
        "--",
        "m=%EVENT-MASK%",
        "%label%:%TYPE%",
        "%INCLUDE-LIST%",
        "to=%destination-dir%/",
        "%nope%",
    ]));
    let r = run_with_tmp(&args, &env.outside);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let runs = runs_of(&rec);
    let file = runs
        .iter()
        .find(|r| r.argv[2].ends_with(b"/f"))
        .unwrap_or_else(|| panic!("{runs:?}"));
    let dst = format!("to={}/", env.dst.display());
    assert_eq!(
        file.argv,
        vec![
            format!("m={IN_CREATE}").into_bytes(),
            b"L1:sync".to_vec(),
            env.src.join("f").as_os_str().as_bytes().to_vec(),
            dst.into_bytes(),
            b"%nope%".to_vec(),
        ]
    );
}

#[test]
fn simple_mode_reports_attrib_apart_from_writes() {
    let env = TestEnv::new();
    put(&env.src, b"f", b"x");
    let rec = recorder(&env.root);
    let mut args = os(&["-M", "simple", "-t0.2", "-w0", "-S"]);
    args.push(rec.clone().into());
    let mut d = Daemon::start(&env, &args);
    d.wait_until(secs(20.0), "the initial sync", || {
        runs_of(&rec).iter().any(|r| r.argv[3].ends_with(b"/f"))
    });
    let seen = runs_of(&rec).len();
    let mut perm = fs::metadata(env.src.join("f")).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o600);
    fs::set_permissions(env.src.join("f"), perm).unwrap();
    put(&env.src, b"g", b"new");
    d.wait_until(secs(20.0), "both changes", || {
        let runs = runs_of(&rec);
        let new = &runs[seen.min(runs.len())..];
        new.iter().any(|r| r.argv[3].ends_with(b"/f"))
            && new.iter().any(|r| r.argv[3].ends_with(b"/g"))
    });
    let runs = runs_of(&rec);
    let mask_of = |name: &[u8]| -> u32 {
        runs[seen..]
            .iter()
            .filter(|r| r.argv[3].ends_with(name))
            .map(|r| {
                std::str::from_utf8(&r.argv[2])
                    .unwrap()
                    .parse::<u32>()
                    .unwrap()
            })
            .fold(0, |a, m| a | m)
    };
    assert_eq!(mask_of(b"/f"), IN_ATTRIB);
    assert_eq!(
        mask_of(b"/g") & (IN_CREATE | IN_MODIFY),
        IN_CREATE | IN_MODIFY
    );
}

#[test]
fn list_files_are_private_and_removed_unless_u() {
    let env = TestEnv::new();
    put(&env.src, b"f", b"x");
    let rec = recorder(&env.root);
    let lists = env.root.join("lists");
    fs::create_dir(&lists).unwrap();
    let base = |extra: &[&str]| {
        let mut a = os(&["-M", "shell", "--only-initialsync", "-S"]);
        a.push(rec.clone().into());
        a.extend(["-W".into(), env.src.clone().into()]);
        a.extend(os(extra));
        a
    };
    // A private dir in TMPDIR, gone afterwards.
    let r = run_with_tmp(&base(&[]), &env.outside);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let runs = runs_of(&rec);
    let list = Path::new(std::ffi::OsStr::from_bytes(&runs[0].argv[2])).to_path_buf();
    assert!(list.starts_with(&env.outside), "{}", list.display());
    assert_eq!(
        runs[0].lists[&2],
        b"sync nolabel 1073742080 \nsync nolabel 256 f\n"
    );
    assert_eq!(
        fs::read_dir(&env.outside).unwrap().count(),
        0,
        "private dir left"
    );
    // -L: the list is made there and removed; with -U it stays, 0600.
    let r = run_with_tmp(&base(&["-L", lists.to_str().unwrap()]), &env.outside);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(fs::read_dir(&lists).unwrap().count(), 0);
    let r = run_with_tmp(&base(&["-L", lists.to_str().unwrap(), "-U"]), &env.outside);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let kept: Vec<_> = fs::read_dir(&lists).unwrap().flatten().collect();
    assert_eq!(kept.len(), 1);
    let mode = std::os::unix::fs::PermissionsExt::mode(&kept[0].metadata().unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn full_initialsync_ignores_the_rules_in_direct_mode() {
    let env = TestEnv::new();
    put(&env.src, b"keep", b"x");
    put(&env.src, b"skip.tmp", b"x");
    let rules = env.root.join("rules");
    fs::write(&rules, "-f\\.tmp$\n").unwrap();
    for (full, want_tmp) in [(false, false), (true, true)] {
        let rec = recorder(&env.root);
        let _ = fs::remove_file(rec.with_extension("py.runs"));
        let mut a = os(&["-M", "direct", "--only-initialsync", "-S"]);
        a.push(rec.clone().into());
        a.extend([
            "-W".into(),
            env.src.clone().into(),
            "-R".into(),
            rules.clone().into(),
        ]);
        if full {
            a.push("-F".into());
        }
        let r = run_with_tmp(&a, &env.outside);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        let runs = runs_of(&rec);
        assert!(runs[0].argv.contains(&b"keep".to_vec()));
        assert_eq!(
            runs[0].argv.contains(&b"skip.tmp".to_vec()),
            want_tmp,
            "-F {full}"
        );
    }
}

#[test]
fn rsyncshell_inclimit_runs_once_per_part() {
    let env = TestEnv::new();
    // The files land in an existing dir, so each is its own op (a new dir
    // would be one `/d/***` line).
    fs::create_dir(env.src.join("d")).unwrap();
    let rec = recorder(&env.root);
    let lists = env.root.join("lists");
    fs::create_dir(&lists).unwrap();
    let mut args = os(&[
        "-M",
        "rsyncshell",
        "-t0.2",
        "-w0",
        "--rsync-inclimit",
        "4",
        "-S",
    ]);
    args.push(rec.clone().into());
    args.extend(["-L".into(), lists.clone().into()]);
    let mut d = Daemon::start(&env, &args);
    d.wait_until(secs(20.0), "the initial sync", || !runs_of(&rec).is_empty());
    let seen = runs_of(&rec).len();
    for i in 0..6 {
        put(&env.src, format!("d/f{i}").as_bytes(), b"x");
    }
    let all = |runs: &[Run]| -> usize {
        (0..6)
            .filter(|i| {
                let needle = format!("/d/f{i}\n");
                runs.iter().any(|r| r.mentions(needle.as_bytes()))
            })
            .count()
    };
    d.wait_until(secs(20.0), "every new file in some list", || {
        let runs = runs_of(&rec);
        all(&runs[seen.min(runs.len())..]) == 6
    });
    let runs = runs_of(&rec);
    let new = &runs[seen..];
    assert!(new.len() >= 3, "{} runs", new.len());
    for r in new {
        assert_eq!(r.argv[..2], [b"rsynclist".to_vec(), b"nolabel".to_vec()]);
        let inc = &r.lists[&2];
        let lines = inc.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count();
        // A soft limit: the ancestor `/d` is repeated in every part.
        assert!(lines <= 5, "{}", String::from_utf8_lossy(inc));
    }
    wait_until(secs(5.0), "no list left behind", || {
        fs::read_dir(&lists).unwrap().count() == 0
    });
}

#[test]
fn have_recursive_sync_hands_a_new_directory_over_at_once() {
    let env = TestEnv::new();
    put(&env.src, b"f", b"x");
    let rec = recorder(&env.root);
    // A long window: only the new directory may skip it.
    let mut args = os(&["-M", "shell", "--have-recursive-sync", "-t30", "-w0", "-S"]);
    args.push(rec.clone().into());
    let mut d = Daemon::start(&env, &args);
    d.wait_until(secs(20.0), "the initial sync", || !runs_of(&rec).is_empty());
    let runs = runs_of(&rec);
    assert_eq!(
        runs[0].argv,
        vec![
            b"initialsync".to_vec(),
            b"nolabel".to_vec(),
            env.src.as_os_str().as_bytes().to_vec()
        ]
    );
    put(&env.src, b"nd/x", b"new");
    d.wait_until(secs(10.0), "initialsync of the new directory", || {
        runs_of(&rec)
            .iter()
            .any(|r| r.argv[0] == b"initialsync" && r.argv[2].ends_with(b"/nd"))
    });
}
