//! `--monitor` from the outside: every Linux backend mirrors a live change,
//! a backend this platform lacks refuses to start with one line, and a bad
//! `--poll-interval` is a usage error. (The whole suite runs once more per
//! backend from scripts/test; these are the backend-specific cases.)

mod common;

use common::*;
use std::fs;

/// Each Linux backend, started explicitly (the last `--monitor` wins over
/// the one tests/common may add), sees a file, a rename and a delete.
#[test]
fn every_linux_backend_mirrors_live_changes() {
    for monitor in ["inotify", "poll", "notify"] {
        let env = TestEnv::new();
        env.write("keep", "k");
        let mut d = Daemon::start(
            &env,
            &[
                "--monitor",
                monitor,
                "--poll-interval",
                "0.05",
                "-t0",
                "-w0",
            ],
        );
        d.wait_for_log(secs(10.0), &format!("with {monitor}"));
        d.wait_synced(&env, secs(10.0));
        env.mkdir_p("dir/sub");
        env.write("dir/sub/f", "one");
        d.wait_synced(&env, secs(10.0));
        fs::rename(env.src_path("dir"), env.src_path("moved")).expect("rename");
        env.write("moved/sub/f", "two, longer");
        fs::remove_file(env.src_path("keep")).expect("rm");
        d.wait_synced(&env, secs(10.0));
        assert_eq!(
            env.dst_read("moved/sub/f").as_deref(),
            Some(&b"two, longer"[..])
        );
        assert!(!env.dst_has("keep") && !env.dst_has("dir"), "{monitor}");
        d.stop();
    }
}

#[test]
fn a_backend_this_platform_lacks_says_why_in_one_line_and_exits_1() {
    let env = TestEnv::new();
    env.write("f", "x");
    let r = run_livesync(
        &[
            "-W".as_ref(),
            env.src.as_os_str(),
            "-D".as_ref(),
            env.dst.as_os_str(),
            "--monitor".as_ref(),
            "kqueue".as_ref(),
        ],
        secs(10.0),
    );
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    let errors: Vec<&str> = r.stderr.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{}", r.stderr);
    assert!(
        errors[0].contains("--monitor kqueue cannot start") && errors[0].contains("--monitor poll"),
        "{}",
        r.stderr
    );
    assert!(!env.dst_has("f"), "nothing is synced when no backend runs");
}

#[test]
fn a_bad_poll_interval_or_backend_name_is_a_usage_error() {
    for bad in [
        &["--poll-interval", "0"][..],
        &["--poll-interval", "soon"],
        &["--monitor", "fsevents"],
    ] {
        let env = TestEnv::new();
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "-W".as_ref(),
            env.src.as_os_str(),
            "-D".as_ref(),
            env.dst.as_os_str(),
        ];
        args.extend(bad.iter().map(|a| std::ffi::OsStr::new(*a)));
        let r = run_livesync(&args, secs(10.0));
        assert_eq!(r.code, Some(2), "{bad:?}: {}", r.stderr);
        assert_eq!(r.stderr.lines().count(), 1, "{bad:?}: {}", r.stderr);
        assert!(r.stderr.contains(bad[0]), "{bad:?}: {}", r.stderr);
    }
}
