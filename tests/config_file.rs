//! The config file through the real binary: a block given with `-H FILE -K
//! BLOCK` supplies the watch dir, the destination and the delays of a
//! running mirror; an unknown key is a warning naming `file:line` (clsync's
//! own example config runs); `-K` with no config file warns and goes on; `-H /NULL/` reads no file even when `~/.livesync.conf` is
//! there. Every child is killed at the end, whatever happens.

mod common;

use common::*;
use std::ffi::OsString;
use std::fs;
use std::path::Path;
use std::process::Command;

/// `livesync ARGS` with `HOME=home`, as a daemon.
fn daemon(args: &[OsString], home: &Path) -> Daemon {
    Daemon::bare().args(args).env("HOME", home).start()
}

/// Runs `livesync ARGS` with `HOME=home` to its end (at most 10 s):
/// (exit code, stderr).
fn run_to_end(args: &[OsString], home: &Path) -> (Option<i32>, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env("HOME", home);
    let r = run_command(cmd, secs(10.0));
    (r.code, r.stderr)
}

/// The single error line of a failed run (asserting there is exactly one).
fn one_line(stderr: &str) -> &str {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one error line, got:\n{stderr}");
    lines[0]
}

#[test]
fn a_config_block_drives_a_live_mirror() {
    let env = TestEnv::new();
    env.write("before", "old");
    let conf = env.root.join("livesync.conf");
    // [default] would fail (no such watch dir): only -K fast is used. The
    // delays are the file's: with the defaults (30 s) "after" would not
    // arrive within the deadline below.
    fs::write(
        &conf,
        format!(
            "# test config\n\
             [default]\n\
             watch-dir = {root}/no-such-dir\n\
             \n\
             [base]\n\
             destination-dir = {dst}\n\
             delay-sync = 0\n\
             \n\
             [fast]\n\
             config-block-inherits = base\n\
             watch-dir = {src}\n\
             delay-collect = 0\n",
            root = env.root.display(),
            src = env.src.display(),
            dst = env.dst.display(),
        ),
    )
    .expect("write config");
    let mut d = daemon(&argv(&[&"-H", &conf, &"-K", &"fast"]), &env.root);
    d.wait_until(secs(20.0), "the initial sync of `before`", || {
        env.dst_read("before").as_deref() == Some(b"old")
    });
    env.write("after", "new");
    d.wait_until(secs(10.0), "`after` to be mirrored", || {
        env.dst_read("after").as_deref() == Some(b"new")
    });
    let st = d.signal_and_wait(Signal::SIGTERM, secs(10.0));
    assert!(
        st.is_some_and(|s| s.success()),
        "livesync did not exit cleanly on SIGTERM ({st:?})\n{}",
        d.log()
    );
}

/// An unknown key is ignored with a warning naming `file:line` (and a
/// suggestion), as clsync ignores keys it does not know; the run goes on.
#[test]
fn an_unknown_key_is_a_warning_naming_file_and_line() {
    let env = TestEnv::new();
    env.write("f", "f");
    let newdst = env.root.join("not-yet");
    let conf = env.root.join("bad.conf");
    fs::write(
        &conf,
        format!(
            "[default]\nwatch-dir = {}\ndestination-dir = {}\nwatchdir = /oops\n",
            env.src.display(),
            newdst.display()
        ),
    )
    .expect("write config");
    let (code, stderr) = run_to_end(&argv(&[&"-H", &conf, &"--only-initialsync"]), &env.root);
    assert_eq!(code, Some(0), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("WARN"))
        .unwrap_or_else(|| panic!("no warning:\n{stderr}"));
    assert!(
        line.contains(&format!("{}:4: unknown option `watchdir`", conf.display())),
        "{line}"
    );
    assert!(line.contains("did you mean `watch-dir`?"), "{line}");
    assert_eq!(fs::read(newdst.join("f")).ok().as_deref(), Some(&b"f"[..]));
}

/// An unknown key that leaves a needed option unset: the warning comes
/// before the error, so the user sees why.
#[test]
fn an_unknown_key_warning_comes_before_the_error_it_causes() {
    let env = TestEnv::new();
    let conf = env.root.join("typo.conf");
    fs::write(&conf, "[default]\nwatchdir = /oops\n").expect("write config");
    let (code, stderr) = run_to_end(&argv(&[&"-H", &conf]), &env.root);
    assert_eq!(code, Some(2), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(
        lines[0].starts_with("livesync: warning: ")
            && lines[0].contains(":2: unknown option `watchdir`"),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with("livesync: error: no watch dir"),
        "{stderr}"
    );
}

/// clsync's own example config (from its Debian package, copied verbatim at
/// run time) has keys livesync does not know (`syslog`, `rules-path`): each
/// is a warning naming its line, and livesync runs with the rest.
#[test]
fn clsyncs_example_config_runs_with_warnings() {
    let example = Path::new("/usr/share/doc/clsync/examples/production/etc/clsync/clsync.conf");
    if !example.exists() {
        assert!(!in_ci(), "{} is missing: install clsync", example.display());
        eprintln!(
            "SKIPPED: {} is missing (apt-get install clsync)",
            example.display()
        );
        return;
    }
    let env = TestEnv::new();
    env.mkdir_p("a");
    env.write("a/b", "bee");
    let conf = env.root.join("clsync.conf");
    fs::copy(example, &conf).expect("copy clsync's example");
    let text = fs::read_to_string(&conf).expect("read");
    let line_of = |key: &str| {
        text.lines()
            .position(|l| l.split('=').next().is_some_and(|k| k.trim() == key))
            .map(|i| i + 1)
            .unwrap_or_else(|| panic!("clsync's example has no {key} line"))
    };
    let (code, stderr) = run_to_end(
        &argv(&[
            &"-H",
            &conf,
            &"-K",
            &"lxc-rsyncshell",
            &"-W",
            &env.src,
            &"-D",
            &env.dst,
            &"-M",
            &"mirror",
            &"--background=off",
            &"--only-initialsync",
        ]),
        &env.root,
    );
    assert_eq!(code, Some(0), "{stderr}");
    for (key, hint) in [
        ("syslog", "for log lines to syslog write `output = syslog`"),
        ("rules-path", "did you mean `rules-file`?"),
    ] {
        let needle = format!(
            "{}:{}: unknown option `{key}`; {hint}",
            conf.display(),
            line_of(key)
        );
        assert!(
            stderr
                .lines()
                .any(|l| l.contains("WARN") && l.contains(&needle)),
            "no warning {needle:?}:\n{stderr}"
        );
    }
    assert_eq!(
        env.dst_read("a/b").as_deref(),
        Some(&b"bee"[..]),
        "{stderr}"
    );
}

/// clsync's example start scripts pass `-K NAME` with no config file
/// anywhere: livesync warns and goes on with the command line.
#[test]
fn config_block_without_any_config_file_warns_and_runs() {
    let env = TestEnv::new();
    env.write("f", "f");
    // HOME is the temp root: no default file there; /etc has none either
    // on a test machine (checked, so the test says what it relies on).
    for etc in ["/etc/livesync/livesync.conf", "/etc/clsync/clsync.conf"] {
        if Path::new(etc).exists() {
            eprintln!("SKIPPED: {etc} exists");
            return;
        }
    }
    let (code, stderr) = run_to_end(
        &argv(&[
            &"-K",
            &"example-simple",
            &"-W",
            &env.src,
            &"-D",
            &env.dst,
            &"--only-initialsync",
        ]),
        &env.root,
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.lines().any(|l| l.contains("WARN")
            && l.contains("-K example-simple: no config file was found")
            && l.contains("going on with the command line alone")),
        "{stderr}"
    );
    assert_eq!(env.dst_read("f").as_deref(), Some(&b"f"[..]));
}

#[test]
fn a_missing_config_file_is_exit_2() {
    let env = TestEnv::new();
    let missing = env.root.join("missing.conf");
    let (code, stderr) = run_to_end(&argv(&[&"-H", &missing]), &env.root);
    assert_eq!(code, Some(2), "{stderr}");
    let line = one_line(&stderr);
    assert!(
        line.contains(&format!("{}: cannot read it", missing.display())),
        "{line}"
    );
}

#[test]
fn null_config_file_ignores_the_default_files() {
    let env = TestEnv::new();
    let newdst = env.root.join("not-yet");
    let missing_src = env.root.join("no-such-src");
    // HOME is the temp root: its .livesync.conf is the first default file.
    fs::write(
        env.root.join(".livesync.conf"),
        "[default]\nbogus-key = 1\n",
    )
    .expect("write config");
    let args = |extra: &[&dyn AsRef<std::ffi::OsStr>]| {
        let mut v = argv(extra);
        v.extend(argv(&[&"-W", &missing_src, &"-D", &newdst]));
        v
    };
    // Without -H the default file is read: its unknown key is a warning.
    let (code, stderr) = run_to_end(&args(&[]), &env.root);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.lines().any(|l| l.starts_with("livesync: warning: ")
            && l.contains(".livesync.conf:2: unknown option `bogus-key`")),
        "{stderr}"
    );
    // With -H /NULL/ it is not: the run gets as far as the missing watch dir.
    let (code, stderr) = run_to_end(&args(&[&"-H", &"/NULL/"]), &env.root);
    assert_eq!(code, Some(2), "{stderr}");
    let line = one_line(&stderr);
    assert!(
        line.contains("no-such-src") && !line.contains(".livesync.conf"),
        "{line}"
    );
    assert!(!newdst.exists());
}

/// `--custom-signals USR1:strict`: on SIGUSR1 the configuration is reloaded
/// from block [strict], whose rules file keeps `*.tmp` out from then on.
#[test]
fn a_custom_signal_loads_its_config_block() {
    let env = TestEnv::new();
    let rules = env.root.join("strict.rules");
    fs::write(&rules, "-f\\.tmp$\n").expect("write rules");
    let conf = env.root.join("livesync.conf");
    fs::write(
        &conf,
        format!(
            "[default]\n\
             watch-dir = {src}\n\
             destination-dir = {dst}\n\
             delay-collect = 0\n\
             delay-sync = 0\n\
             custom-signals = USR1:strict\n\
             \n\
             [strict]\n\
             config-block-inherits = default\n\
             rules-file = {rules}\n",
            src = env.src.display(),
            dst = env.dst.display(),
            rules = rules.display(),
        ),
    )
    .expect("write config");
    let mut d = daemon(&argv(&[&"-H", &conf]), &env.root);
    env.write("before.tmp", "synced under [default]");
    d.wait_until(secs(20.0), "before.tmp under the default block", || {
        env.dst_has("before.tmp")
    });
    d.signal(Signal::SIGUSR1);
    d.wait_for_log(secs(10.0), "block [strict]");
    env.write("after.tmp", "kept out by [strict]");
    env.write("after.txt", "still synced");
    d.wait_until(secs(10.0), "after.txt", || env.dst_has("after.txt"));
    assert!(
        !env.dst_has("after.tmp"),
        "[strict]'s rules apply\n{}",
        d.log()
    );
}
