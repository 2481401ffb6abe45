//! inotify queue overflow: with `fs.inotify.max_queued_events` lowered to 16
//! for the daemon's inotify instance, a burst of 1,000 creates (plus 200
//! deletions and a dir rename) must overflow the kernel queue; the daemon
//! must log a warning containing "overflow", rescan, and end with the
//! destination equal to the source. Runs for mirror, then rsyncdirect.
//!
//! Needs root (skipped otherwise, failed under CI=true). The sysctl is global
//! and is read when an inotify instance is created, so this test: takes the
//! test lock exclusively (every other daemon test holds it shared), lowers the
//! value, starts the daemon, waits for its initial sync (its instance exists
//! by then), and restores the old value at once; a Drop guard restores it
//! even on panic. It is the only test in this binary.

mod common;

use common::*;
use std::fs;
use std::time::Duration;

const SYSCTL: &str = "/proc/sys/fs/inotify/max_queued_events";

/// Restores the saved sysctl value when dropped (also on panic).
struct SysctlGuard {
    old: String,
    restored: bool,
}

impl SysctlGuard {
    /// Sets the sysctl to `value`; `None` when it cannot be written here.
    fn set(value: &str) -> Option<SysctlGuard> {
        let old = fs::read_to_string(SYSCTL).ok()?.trim().to_string();
        if let Err(e) = fs::write(SYSCTL, value) {
            eprintln!("cannot write {SYSCTL}: {e}");
            return None;
        }
        Some(SysctlGuard {
            old,
            restored: false,
        })
    }

    fn restore(&mut self) {
        if !self.restored {
            fs::write(SYSCTL, &self.old)
                .unwrap_or_else(|e| panic!("restore {SYSCTL} to {}: {e}", self.old));
            self.restored = true;
        }
    }
}

impl Drop for SysctlGuard {
    fn drop(&mut self) {
        if !self.restored {
            // Never panic in drop (we may be unwinding already).
            if let Err(e) = fs::write(SYSCTL, &self.old) {
                eprintln!("FAILED to restore {SYSCTL} to {}: {e}", self.old);
            }
        }
    }
}

/// One run in `mode`: a burst of 1,000 creates plus deletions and a dir
/// rename, all while the kernel queue holds 16 events.
fn overflow_case(mode: &str) {
    let env = TestEnv::new();
    env.mkdir_p("burst");
    env.mkdir_p("old/sub");
    for i in 0..200 {
        env.write(format!("old/sub/gone-{i:03}"), "to be deleted in the burst");
    }
    env.write("before", "initial");

    let exclusive = take_lock(libc::LOCK_EX);
    let Some(mut guard) = SysctlGuard::set("16") else {
        if in_ci() {
            panic!("{SYSCTL} is not writable although we are root (CI=true: refusing to skip)");
        }
        eprintln!("SKIPPED: {SYSCTL} is not writable");
        return;
    };
    let mut d = Daemon::builder(&env)
        .args(["-M", mode, "-t0", "-w0"])
        .locking(Locking::CallerHoldsExclusive)
        .start();
    // Restore as soon as the daemon's inotify instance certainly exists:
    // it watches before the initial sync, so a finished initial sync proves it.
    let synced = d.try_wait_synced(&env, Duration::from_secs(20));
    guard.restore();
    drop(exclusive);
    if let Err(e) = synced {
        panic!("[{mode}] initial sync: {e}");
    }

    for i in 0..1000 {
        env.write(format!("burst/file-{i:04}"), format!("{i}"));
    }
    for i in 0..200 {
        fs::remove_file(env.src_path(format!("old/sub/gone-{i:03}"))).unwrap();
    }
    fs::rename(env.src_path("old"), env.src_path("renamed")).unwrap();
    env.write("renamed/sub/after", "after the burst");
    d.wait_synced(&env, Duration::from_secs(60));
    d.wait_for_log(Duration::from_secs(5), "overflow");
}

/// The only test in this binary (the sysctl is global): both handlers in turn.
#[test]
fn queue_overflow_rescans_and_loses_nothing() {
    if !require_root("writes fs.inotify.max_queued_events") {
        return;
    }
    overflow_case("mirror");
    if require_tool("rsync") {
        overflow_case("rsyncdirect");
    }
}
