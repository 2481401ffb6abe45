//! Private temp dirs (list files without `-L`): a livesync killed with
//! SIGKILL cannot remove its own, so the next livesync sweeps it away, and
//! never one that a running livesync holds. The daemons run as the tests
//! start them; the sweep is checked through the binary, on the real temp
//! dir.

mod common;

use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

const T: Duration = Duration::from_secs(20);

/// The private lists dir daemon `pid` holds open (its lock).
fn held_lists_dir(pid: i32) -> Option<PathBuf> {
    let tmp = std::env::temp_dir();
    fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .flatten()
        .filter_map(|e| fs::read_link(e.path()).ok())
        .find(|p| {
            p.parent() == Some(tmp.as_path())
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("livesync-lists-"))
        })
}

/// Sets the mtime of `p` to `ago` in the past.
fn age(p: &Path, ago: Duration) {
    let f = fs::File::open(p).expect("open");
    f.set_modified(SystemTime::now() - ago).expect("set mtime");
}

#[test]
fn a_killed_daemons_lists_dir_is_swept_by_the_next_one_and_a_live_one_is_not() {
    if !require_tool("rsync") {
        return;
    }
    let env = TestEnv::new();
    env.write("a", "1");
    let args = ["-t0", "-w0", "-M", "rsyncdirect"];
    let mut first = Daemon::start(&env, &args);
    first.wait_synced(&env, T);
    let mut dir = None;
    let pid = first.pid();
    first.wait_until(T, "the daemon holds its lists dir", || {
        dir = held_lists_dir(pid);
        dir.is_some()
    });
    let stale = dir.expect("lists dir");
    // A second daemon (another destination) while the first still runs:
    // the first's dir is locked, even when old, and stays.
    age(&stale, Duration::from_secs(120));
    let env2 = TestEnv::new();
    // A file to sync, so that waiting for the sync waits for the daemon
    // (whose handler sweeps when it makes its own dir).
    env2.write("b", "2");
    let mut second = Daemon::start(&env2, &args);
    second.wait_synced(&env2, T);
    assert!(stale.exists(), "a live daemon's dir was swept");
    second.stop();
    // Killed, the first cannot clean up.
    first.signal_and_wait(Signal::SIGKILL, T).expect("killed");
    assert!(stale.exists());
    age(&stale, Duration::from_secs(120));
    env.write("c", "3");
    let mut third = Daemon::start(&env, &args);
    third.wait_synced(&env, T);
    third.wait_until(T, "the stale dir is swept", || !stale.exists());
    third.wait_for_log(T, "did not end cleanly");
    third.stop();
}
