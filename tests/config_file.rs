//! The config file through the real binary: a block given with `-H FILE -K
//! BLOCK` supplies the watch dir, the destination and the delays of a
//! running mirror; a bad key stops livesync with exit 2 and one line naming
//! `file:line`; `-H /NULL/` reads no file even when `~/.livesync.conf` is
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

#[test]
fn a_bad_key_is_exit_2_naming_file_and_line() {
    let env = TestEnv::new();
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
    let (code, stderr) = run_to_end(&argv(&[&"-H", &conf]), &env.root);
    assert_eq!(code, Some(2), "{stderr}");
    let line = one_line(&stderr);
    assert!(
        line.contains(&format!("{}:4: unknown option `watchdir`", conf.display())),
        "{line}"
    );
    assert!(line.contains("did you mean `watch-dir`?"), "{line}");
    assert!(!newdst.exists(), "a failing run created the destination");
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
    // Without -H the default file is read, and refused.
    let (code, stderr) = run_to_end(&args(&[]), &env.root);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        one_line(&stderr).contains(".livesync.conf:2: unknown option `bogus-key`"),
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
