//! The inotify watch limit (`fs.inotify.max_user_watches`, ENOSPC from
//! `inotify_add_watch`) at run time: a loud error, and the subtree that could
//! not be watched is still synced. (At start it is exit code 3: tests/cli.rs.)
//!
//! Needs root (skipped otherwise, failed under CI=true). The limit is global
//! for the user, so the test holds the test lock exclusively (every other
//! daemon test holds it shared) and restores the old value in a Drop guard,
//! also on panic. The new subtree needs 300 watches against a margin of 2,
//! so only a burst of freed watches elsewhere on the host could hide the error.

mod common;

use common::*;
use std::fs;
use std::time::Duration;

const SYSCTL: &str = "/proc/sys/fs/inotify/max_user_watches";

/// Restores the saved limit when dropped (also on panic).
struct LimitGuard {
    old: String,
}

impl LimitGuard {
    fn set(value: usize) -> LimitGuard {
        let old = fs::read_to_string(SYSCTL)
            .unwrap_or_else(|e| panic!("read {SYSCTL}: {e}"))
            .trim()
            .to_string();
        fs::write(SYSCTL, value.to_string()).unwrap_or_else(|e| panic!("write {SYSCTL}: {e}"));
        LimitGuard { old }
    }
}

impl Drop for LimitGuard {
    fn drop(&mut self) {
        if let Err(e) = fs::write(SYSCTL, &self.old) {
            eprintln!("FAILED to restore {SYSCTL} to {}: {e}", self.old);
        }
    }
}

/// inotify watches held right now by all processes (we run as root, and the
/// limit is per user): the `inotify wd:` lines of every /proc/PID/fdinfo.
fn watches_in_use() -> usize {
    let mut n = 0;
    let Ok(procs) = fs::read_dir("/proc") else {
        return 0;
    };
    for p in procs.flatten() {
        let Ok(fds) = fs::read_dir(p.path().join("fdinfo")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(text) = fs::read_to_string(fd.path()) {
                n += text
                    .lines()
                    .filter(|l| l.starts_with("inotify wd:"))
                    .count();
            }
        }
    }
    n
}

fn deep_tree(env: &TestEnv, top: &str, dirs: usize) {
    let mut p = top.to_string();
    for i in 0..dirs {
        p.push_str(&format!("/d{i}"));
        env.mkdir_p(&p);
        env.write(format!("{p}/f"), format!("file {i}"));
    }
}

#[test]
fn watch_limit_at_run_time_is_loud_and_the_subtree_still_syncs() {
    if !require_root("writes fs.inotify.max_user_watches") {
        return;
    }
    let env = TestEnv::new();
    env.write("before", "x");
    let exclusive = take_lock(libc::LOCK_EX);
    let mut d = Daemon::start_with(&env, &["-t0", "-w0"], Locking::CallerHoldsExclusive);
    d.wait_synced(&env, Duration::from_secs(20));
    {
        let _guard = LimitGuard::set(watches_in_use() + 2);
        deep_tree(&env, "late", 300);
        d.wait_for_log(Duration::from_secs(20), "max_user_watches");
        d.wait_synced(&env, Duration::from_secs(30));
    }
    drop(exclusive);
    assert!(env
        .dst_read("late/d0/d1/d2/d3/d4/d5/d6/d7/d8/d9/f")
        .is_some());
    d.assert_running();
}
