//! inotify queue overflow: with `fs.inotify.max_queued_events` lowered to 16
//! for the daemon's inotify instance, a burst of 1,000 creates must overflow
//! the kernel queue; the daemon must log a warning containing "overflow",
//! rescan, and still deliver every file.
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

#[test]
fn queue_overflow_rescans_and_loses_nothing() {
    if !require_root("writes fs.inotify.max_queued_events") {
        return;
    }
    let env = TestEnv::new();
    env.mkdir_p("burst");
    env.write("before", "initial");

    let exclusive = take_lock(libc::LOCK_EX);
    let Some(mut guard) = SysctlGuard::set("16") else {
        if in_ci() {
            panic!("{SYSCTL} is not writable although we are root (CI=true: refusing to skip)");
        }
        eprintln!("SKIPPED: {SYSCTL} is not writable");
        return;
    };
    let mut d = Daemon::start_with(
        &env,
        &["-M", "mirror", "-t0", "-w0"],
        Locking::CallerHoldsExclusive,
    );
    // Restore as soon as the daemon's inotify instance certainly exists:
    // it watches before the initial sync, so a finished initial sync proves it.
    let synced = d.try_wait_synced(&env, Duration::from_secs(20));
    guard.restore();
    drop(exclusive);
    if let Err(e) = synced {
        panic!("initial sync: {e}");
    }

    for i in 0..1000 {
        env.write(format!("burst/file-{i:04}"), format!("{i}"));
    }
    d.wait_synced(&env, Duration::from_secs(60));
    d.wait_for_log(Duration::from_secs(5), "overflow");
}
