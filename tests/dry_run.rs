//! `--dry-run` through the real binary: the built-in mirror logs every
//! operation it would do (copy, rename, delete, chmod, create directory) for
//! the initial sync and for live changes, the destination stays exactly as
//! it was, and started as root the daemon keeps no capability that writes.
//! Every daemon is stopped at the end, whatever happens.

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(30);

/// A copy of the destination as it was, to compare with afterwards.
fn snapshot(env: &TestEnv) -> std::path::PathBuf {
    let snap = env.root.join("dst.before");
    let r = run_livesync(
        &[
            "-W",
            &path_str(&env.dst),
            "-D",
            &path_str(&snap),
            "--only-initialsync",
        ],
        LONG,
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(tree_diff(&env.dst, &snap), None);
    snap
}

#[test]
fn dry_run_logs_every_operation_and_writes_nothing() {
    let env = TestEnv::new();
    for f in ["same", "renamed", "removed", "chmodded"] {
        env.write(f, f);
    }
    // The destination starts equal to the source...
    let r = run_livesync(
        &[
            "-W",
            &path_str(&env.src),
            "-D",
            &path_str(&env.dst),
            "--only-initialsync",
        ],
        LONG,
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    // ... but for what the initial sync of the dry run must find.
    env.write("new-at-start", "n");
    fs::write(env.dst_path("stale"), "s").expect("stale");
    let snap = snapshot(&env);
    let mut d = Daemon::start(&env, &["--dry-run", "-t0", "-w0"]);
    d.wait_for_log(LONG, "initial sync done");
    // Live changes of every kind.
    env.mkdir_p("dir");
    env.write("dir/inner", "i");
    fs::rename(env.src_path("renamed"), env.src_path("renamed-to")).expect("rename");
    fs::remove_file(env.src_path("removed")).expect("remove");
    fs::set_permissions(env.src_path("chmodded"), fs::Permissions::from_mode(0o600))
        .expect("chmod");
    let want = [
        "dry run: would copy new-at-start (1 bytes)".to_string(),
        "dry run: would delete file stale".to_string(),
        "dry run: would create directory dir".to_string(),
        "dry run: would copy dir/inner (1 bytes)".to_string(),
        "dry run: would rename renamed to renamed-to".to_string(),
        "dry run: would delete file removed".to_string(),
        "dry run: would chmod chmodded 0600".to_string(),
    ];
    for w in &want {
        d.wait_for_log(LONG, w);
    }
    // Nothing was written: the destination is as it was, and stays so.
    assert_stays(Duration::from_millis(500), "destination unchanged", || {
        tree_diff(&env.dst, &snap).is_none()
    });
    assert!(
        !d.log().contains("would copy same"),
        "an equal file is no operation"
    );
}

/// A destination that does not exist yet is not created.
#[test]
fn dry_run_does_not_create_the_destination() {
    let env = TestEnv::new();
    env.write("a", "a");
    let missing = env.root.join("not-yet");
    let r = run_livesync(
        &[
            "-W",
            &path_str(&env.src),
            "-D",
            &path_str(&missing),
            "--dry-run",
            "--only-initialsync",
        ],
        LONG,
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stderr.contains(&format!(
        "dry run: would create the destination {}",
        missing.display()
    )));
    assert!(
        r.stderr.contains("dry run: would copy a (1 bytes)"),
        "{}",
        r.stderr
    );
    assert!(!missing.exists());
}

/// Started as root, a dry run keeps CAP_DAC_READ_SEARCH (to read the
/// tree) and none of the capabilities that write a destination.
#[test]
fn dry_run_as_root_keeps_no_writer_capabilities() {
    if !require_root("privilege dropping") {
        return;
    }
    let env = TestEnv::new();
    env.write("a", "a");
    let mut d = Daemon::start(&env, &["--dry-run", "-t0", "-w0"]);
    d.wait_for_log(LONG, "initial sync done");
    let status = fs::read_to_string(format!("/proc/{}/status", d.pid())).expect("status");
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}:\t")))
            .map(|v| u64::from_str_radix(v.trim(), 16).expect("hex"))
            .unwrap_or_else(|| panic!("no {k} in {status}"))
    };
    const CAP_DAC_READ_SEARCH: u64 = 1 << 2;
    assert_eq!(field("CapEff"), CAP_DAC_READ_SEARCH, "{status}");
    assert_eq!(field("CapBnd"), CAP_DAC_READ_SEARCH, "{status}");
    assert!(!env.dst_has("a"));
}
