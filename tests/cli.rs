//! Bad input through the real binary: each case must exit 2 with a one-line
//! error on stderr (clap's own usage tail, if any, is ignored) that names what
//! is wrong, and must leave the filesystem untouched (the destination is not
//! created). Also checks that `--help` carries examples. These runs never get
//! as far as watching anything, so they take no test lock.

mod common;

use common::*;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

/// The error text without clap's trailing usage/tip block: everything up to
/// the first blank line, minus clap's indented "[possible values: …]" hints.
fn error_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| {
            !l.trim_start().starts_with("[possible values") && !l.trim_start().starts_with("tip:")
        })
        .collect()
}

/// Runs `livesync ARGS` expecting a usage error: exit 2, one error line
/// (returned), and `must_not_exist` not created.
fn expect_usage_error(args: &[OsString], must_not_exist: &Path) -> String {
    let run = run_livesync(args, secs(10.0));
    let lines = error_lines(&run.stderr);
    assert_eq!(
        run.code,
        Some(2),
        "expected exit 2 for {args:?}\nstdout: {}\nstderr: {}",
        run.stdout,
        run.stderr
    );
    assert_eq!(
        lines.len(),
        1,
        "expected exactly one error line for {args:?}, got:\n{}",
        run.stderr
    );
    assert!(
        !must_not_exist.exists(),
        "{} was created by a failing run",
        must_not_exist.display()
    );
    lines[0].to_string()
}

struct Case {
    env: TestEnv,
    newdst: PathBuf,
}

/// A temp tree with a source holding one file and a destination path that does not exist yet.
fn case() -> Case {
    let env = TestEnv::new();
    env.write("f", "f");
    let newdst = env.root.join("not-yet");
    Case { env, newdst }
}

#[test]
fn unknown_option_is_exit_2() {
    let c = case();
    let line = expect_usage_error(
        &argv(&[&"--no-such-option", &"-W", &c.env.src, &"-D", &c.newdst]),
        &c.newdst,
    );
    assert!(
        line.contains("--no-such-option"),
        "error does not name the option: {line}"
    );
}

#[test]
fn missing_watch_dir_is_exit_2() {
    let c = case();
    let missing = c.env.root.join("no-such-dir");
    let line = expect_usage_error(&argv(&[&"-W", &missing, &"-D", &c.newdst]), &c.newdst);
    assert!(
        line.contains("no-such-dir"),
        "error does not name the missing path: {line}"
    );
}

#[test]
fn watch_dir_that_is_a_file_is_exit_2() {
    let c = case();
    let file = c.env.src_path("f");
    let line = expect_usage_error(&argv(&[&"-W", &file, &"-D", &c.newdst]), &c.newdst);
    assert!(
        line.contains(&*file.to_string_lossy()),
        "error does not name the path: {line}"
    );
    assert_eq!(fs::read(&file).unwrap(), b"f");
}

#[test]
fn destination_inside_watch_dir_is_exit_2() {
    let c = case();
    let inside = c.env.src_path("mirror-here");
    expect_usage_error(&argv(&[&"-W", &c.env.src, &"-D", &inside]), &inside);
    let deeper = c.env.src_path("a/b/c");
    expect_usage_error(
        &argv(&[&"-W", &c.env.src, &"-D", &deeper]),
        &c.env.src_path("a"),
    );
    // Spelled through `..` it is still inside.
    let sneaky = c.env.src.join("../src/sneaky");
    expect_usage_error(
        &argv(&[&"-W", &c.env.src, &"-D", &sneaky]),
        &c.env.src_path("sneaky"),
    );
    // The source tree itself was not touched.
    let names: Vec<_> = fs::read_dir(&c.env.src)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![OsString::from("f")]);
}

#[test]
fn destination_equal_to_watch_dir_is_exit_2() {
    let c = case();
    expect_usage_error(&argv(&[&"-W", &c.env.src, &"-D", &c.env.src]), &c.newdst);
    let names: Vec<_> = fs::read_dir(&c.env.src)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![OsString::from("f")]);
}

#[test]
fn bad_regex_in_rules_names_file_and_line() {
    let c = case();
    let rules = c.env.root.join("bad.rules");
    fs::write(&rules, "# comment\n+f\\.txt$\n-f(unclosed\n+*\n").unwrap();
    let line = expect_usage_error(
        &argv(&[&"-W", &c.env.src, &"-D", &c.newdst, &"-R", &rules]),
        &c.newdst,
    );
    let want = format!("{}:3", rules.display());
    assert!(line.contains(&want), "error does not name {want}: {line}");
}

#[test]
fn missing_rules_file_is_exit_2() {
    let c = case();
    let rules = c.env.root.join("absent.rules");
    let line = expect_usage_error(
        &argv(&[&"-W", &c.env.src, &"-D", &c.newdst, &"-R", &rules]),
        &c.newdst,
    );
    assert!(
        line.contains("absent.rules"),
        "error does not name the rules file: {line}"
    );
}

/// Runs livesync with `args` to its end and returns its stderr, exit code
/// and peak resident memory in KiB (wait4's rusage of that child alone).
fn run_measured(args: &[OsString]) -> (String, Option<i32>, i64) {
    use std::io::Read;
    // Reaped by wait4 below, which also gives its rusage.
    #[allow(clippy::zombie_processes)]
    let mut child = std::process::Command::new(BIN)
        .args(["-H", "/NULL/"])
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut err = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    // SAFETY: waits for our own child; the Child is not waited on again.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    assert_eq!(rc, pid, "wait4: {}", std::io::Error::last_os_error());
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    (reader.join().expect("reader"), code, ru.ru_maxrss)
}

#[test]
fn a_huge_rules_file_is_refused_at_once_with_bounded_memory() {
    let c = case();
    // 10 MB of ordinary rules: ~350,000 of them.
    let rules = c.env.root.join("huge.rules");
    let mut text = Vec::new();
    let mut i = 0;
    while text.len() < 10 << 20 {
        text.extend_from_slice(format!("-f^dir{i}/sub/file{i}\\.tmp$\n").as_bytes());
        i += 1;
    }
    fs::write(&rules, &text).unwrap();
    let args = argv(&[&"-W", &c.env.src, &"-D", &c.newdst, &"-R", &rules]);
    let (stderr, code, peak_kib) = run_measured(&args);
    assert_eq!(code, Some(2), "{stderr}");
    let lines = error_lines(&stderr);
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains(&rules.display().to_string()) && lines[0].contains("524288"),
        "the line names the file and the limit: {}",
        lines[0]
    );
    assert!(peak_kib < 200 * 1024, "peak RSS {peak_kib} KiB");
    assert!(!c.newdst.exists());
    // Within the file limit, too many rules are refused before compiling.
    let many = c.env.root.join("many.rules");
    fs::write(&many, "-f^a$\n".repeat(10_001)).unwrap();
    let args = argv(&[&"-W", &c.env.src, &"-D", &c.newdst, &"-R", &many]);
    let (stderr, code, peak_kib) = run_measured(&args);
    assert_eq!(code, Some(2), "{stderr}");
    let lines = error_lines(&stderr);
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains("many.rules") && lines[0].contains("10000"),
        "{}",
        lines[0]
    );
    assert!(peak_kib < 200 * 1024, "peak RSS {peak_kib} KiB");
}

#[test]
fn unknown_mode_is_exit_2() {
    let c = case();
    let line = expect_usage_error(
        &argv(&[&"-W", &c.env.src, &"-D", &c.newdst, &"-M", &"no-such-mode"]),
        &c.newdst,
    );
    assert!(
        line.contains("no-such-mode"),
        "error does not name the mode: {line}"
    );
}

#[test]
fn sync_handler_that_cannot_run_is_exit_2() {
    let c = case();
    let missing = c.env.root.join("no-such-rsync");
    let line = expect_usage_error(
        &argv(&[
            &"-W",
            &c.env.src,
            &"-D",
            &c.newdst,
            &"-M",
            &"rsyncdirect",
            &"-S",
            &missing,
        ]),
        &c.newdst,
    );
    assert!(
        line.contains("no-such-rsync"),
        "error does not name the handler: {line}"
    );
}

#[test]
fn bad_number_for_delay_is_exit_2() {
    let c = case();
    let line = expect_usage_error(
        &argv(&[&"-W", &c.env.src, &"-D", &c.newdst, &"-t", &"soon"]),
        &c.newdst,
    );
    assert!(
        line.contains("soon"),
        "error does not name the bad value: {line}"
    );
}

/// A misspelt option gets clap's suggestion on the one error line.
#[test]
fn misspelt_option_suggests_the_right_one() {
    let c = case();
    let line = expect_usage_error(
        &argv(&[&"--wach-dir", &c.env.src, &"-D", &c.newdst]),
        &c.newdst,
    );
    assert!(
        line.contains("'--wach-dir'") && line.contains("did you mean '--watch-dir'?"),
        "{line}"
    );
}

/// `-t -1` is a negative number, not an unknown option: the range check
/// answers.
#[test]
fn negative_delay_gets_the_range_message() {
    let c = case();
    for (opt, name) in [("-t", "-t"), ("--delay-sync", "-w"), ("-T", "-T")] {
        let line = expect_usage_error(
            &argv(&[&"-W", &c.env.src, &"-D", &c.newdst, &opt, &"-1"]),
            &c.newdst,
        );
        assert!(
            line.contains(&format!(
                "{name} must be a number of seconds between 0 and 1e9, not -1"
            )),
            "{opt}: {line}"
        );
    }
}

/// `--auto-add-rules-w` on the command line gets the line a config file key
/// gets: what it was, and what to write instead.
#[test]
fn clsync_only_option_says_what_to_do_instead() {
    let c = case();
    let line = expect_usage_error(
        &argv(&[&"-W", &c.env.src, &"-D", &c.newdst, &"--auto-add-rules-w"]),
        &c.newdst,
    );
    assert!(
        line.contains("auto-add-rules-w is a clsync option that livesync does not support")
            && line.contains("write `+w` rules"),
        "{line}"
    );
}

/// At start, running out of inotify watches is exit 3 with a message naming
/// `fs.inotify.max_user_watches`. The limit is lowered only for the daemon:
/// it runs in a fresh user namespace whose own `max_inotify_watches` is set
/// to 4 (user-namespaced since Linux 5.11) before exec, so nothing global
/// changes. Skipped when user namespaces are not available here (a failure
/// under CI=true).
#[test]
fn watch_limit_at_start_is_exit_3_naming_the_sysctl() {
    let c = case();
    for i in 0..10 {
        c.env.mkdir_p(format!("d{i}/sub"));
    }
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(["-H", "/NULL/"]);
    cmd.arg("-W").arg(&c.env.src).arg("-D").arg(&c.newdst);
    limit_watches_in_user_namespace(&mut cmd, b"4\n");
    let run = match try_run_command(cmd, secs(10.0)) {
        Ok(run) => run,
        Err(e) => {
            if in_ci() {
                panic!("cannot lower the watch limit in a user namespace: {e} (CI=true: refusing to skip)");
            }
            eprintln!("SKIPPED: cannot lower the watch limit in a user namespace: {e}");
            return;
        }
    };
    assert_eq!(run.code, Some(3), "expected exit 3\nstderr: {}", run.stderr);
    assert!(
        !c.newdst.exists(),
        "destination created although the start failed"
    );
    let lines = error_lines(&run.stderr);
    assert!(
        lines.iter().any(|l| l.contains("max_user_watches")),
        "no stderr line names fs.inotify.max_user_watches:\n{}",
        run.stderr
    );
}

#[test]
fn help_mentions_examples() {
    let run = run_livesync(&["--help"], secs(10.0));
    assert_eq!(run.code, Some(0), "--help failed: {}", run.stderr);
    assert!(
        run.stdout.to_lowercase().contains("example"),
        "--help has no examples:\n{}",
        run.stdout
    );
    for flag in ["-W", "-D", "-M", "-R", "-t"] {
        assert!(run.stdout.contains(flag), "--help does not mention {flag}");
    }
}

/// `livesync ARGS` exactly as given (`run_livesync` puts options first,
/// which would hide a subcommand).
fn run_bare(args: &[&str]) -> Run {
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(args);
    run_command(cmd, secs(10.0))
}

#[test]
fn help_lists_the_subcommands_and_livesync_help_works() {
    let long = run_bare(&["--help"]);
    assert_eq!(long.code, Some(0), "--help failed: {}", long.stderr);
    let short = run_bare(&["-h"]);
    assert_eq!(short.code, Some(0), "-h failed: {}", short.stderr);
    for out in [&long.stdout, &short.stdout] {
        for sub in ["status", "resync", "pause", "resume", "metrics", "ctl"] {
            assert!(
                out.contains(&format!(" {sub}")),
                "help does not list the subcommand {sub}:\n{out}"
            );
        }
    }
    // `livesync help` is the long help; `livesync help NAME` is NAME's.
    let help = run_bare(&["help"]);
    assert_eq!(help.code, Some(0), "livesync help failed: {}", help.stderr);
    assert_eq!(help.stdout, long.stdout);
    let status = run_bare(&["status", "--help"]);
    let help_status = run_bare(&["help", "status"]);
    assert_eq!(help_status.code, Some(0), "{}", help_status.stderr);
    assert!(help_status.stdout.contains("Usage: livesync status"));
    assert_eq!(help_status.stdout, status.stdout);
    let help_ctl = run_bare(&["help", "ctl"]);
    assert_eq!(help_ctl.code, Some(0), "{}", help_ctl.stderr);
    assert!(help_ctl
        .stdout
        .contains("usage: livesync ctl SOCKET COMMAND"));
    // An unknown name is a usage error, in one line naming what to give.
    let bad = run_bare(&["help", "bogus"]);
    assert_eq!(bad.code, Some(2), "{}", bad.stderr);
    let lines = error_lines(&bad.stderr);
    assert_eq!(lines.len(), 1, "{}", bad.stderr);
    assert!(lines[0].contains("bogus") && lines[0].contains("status"));
}
