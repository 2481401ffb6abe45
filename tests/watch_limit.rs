//! The inotify watch limit (ENOSPC from `inotify_add_watch`) at run time: a
//! loud error, the subtree that could not be watched is still synced, and it
//! keeps being rescanned until it can be watched. (At start it is exit code
//! 3: tests/cli.rs.)
//!
//! The limit is lowered for the daemon alone: it runs in a fresh user
//! namespace (root mapped to root) whose own `max_inotify_watches` (Linux
//! 5.11+) is set before exec, so nothing global changes and a killed test
//! leaves nothing behind. Needs root; skipped otherwise, and a failure under
//! CI=true.

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

/// Watches the daemon may hold: the root plus four.
const LIMIT: &[u8] = b"5\n";

/// Runs the daemon with a watch limit of its own (see common).
fn limited(cmd: &mut Command) {
    limit_watches_in_user_namespace(cmd, LIMIT);
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
    if !require_root("maps root into a user namespace") {
        return;
    }
    // tree_diff recurses once per level: give the 300 levels room.
    let body = std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(run_time_limit)
        .expect("spawn test thread");
    if let Err(panic) = body.join() {
        std::panic::resume_unwind(panic);
    }
}

fn run_time_limit() {
    let env = TestEnv::new();
    env.write("before", "x");
    let mut d = Daemon::builder(&env)
        .args(["-t0", "-w0"])
        .prepare(limited)
        .start();
    d.wait_synced(&env, Duration::from_secs(20));
    // Deeper than the limit allows; created while the daemon walks it, so
    // part of it only shows up in the periodic rescans.
    deep_tree(&env, "late", 300);
    d.wait_for_log(Duration::from_secs(20), "max_user_watches");
    d.wait_synced(&env, Duration::from_secs(30));
    // Changes below the unwatched part arrive through the rescans too.
    let deep: String = (0..250).map(|i| format!("/d{i}")).collect();
    env.write(format!("late{deep}/later"), "after the walk");
    d.wait_synced(&env, Duration::from_secs(30));
    d.assert_running();
    let errors = d.log().lines().filter(|l| l.contains("ERROR")).count();
    assert_eq!(
        errors,
        1,
        "one loud error, not one per rescan:\n{}",
        d.log()
    );
}
