//! The runnable examples examples/mirror, examples/server-move and
//! examples/two-way, run as a user would (their run.sh with LIVESYNC
//! pointing at the binary under test) against temp dirs.

mod common;

use common::*;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn example(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(rel)
}

/// A script running in its own process group, killed (group-wide) on drop.
struct Script {
    child: Child,
}

impl Script {
    fn start(cmd: &mut Command) -> Script {
        cmd.env("LIVESYNC", BIN)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        Script {
            child: cmd.spawn().expect("spawn example"),
        }
    }

    fn pgid(&self) -> i32 {
        self.child.id() as i32
    }

    /// SIGTERM to the script (its trap stops what it started); waits.
    fn stop(&mut self) -> Option<i32> {
        let _ = kill(self.pgid(), Signal::SIGTERM);
        let mut code = None;
        wait_until(secs(15.0), "the example exits on SIGTERM", || {
            match self.child.try_wait() {
                Ok(Some(st)) => {
                    code = st.code();
                    true
                }
                _ => false,
            }
        });
        code
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = kill(-self.pgid(), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

#[test]
fn mirror_example_mirrors_live_and_stops_cleanly() {
    let env = TestEnv::new();
    env.mkdir_p("before");
    env.write("before/a.txt", "already there");
    std::fs::write(env.dst_path("stale"), "only at the destination").unwrap();
    let _lock = take_lock(libc::LOCK_SH);
    let mut s = Script::start(
        Command::new(example("mirror/run.sh"))
            .arg(&env.src)
            .arg(&env.dst)
            .env("DELAY", "0")
            .args(["-l", "example"]),
    );
    wait_until(secs(20.0), "initial sync", || tree_diff(&env.src, &env.dst));
    env.mkdir_p("live");
    env.write("live/b.txt", "new");
    std::fs::remove_file(env.src_path("before/a.txt")).unwrap();
    wait_until(secs(20.0), "live changes", || tree_diff(&env.src, &env.dst));
    assert_eq!(s.stop(), Some(0), "SIGTERM: sync what is pending, exit 0");
}

#[test]
fn server_move_example_runs_hooks_around_the_last_sync() {
    let env = TestEnv::new();
    env.write("index.html", "<h1>hi</h1>");
    env.mkdir_p("img");
    env.write("img/logo.png", "png");
    let state = env.outside_path("state");
    let _lock = take_lock(libc::LOCK_SH);
    let mut cmd = Command::new(example("server-move/run.sh"));
    cmd.arg(&env.src)
        .arg(&env.dst)
        .env("SERVER_MOVE_STATE", &state)
        .env("SERVER_MOVE_CUTOVER", "quiet")
        .env("LIVESYNC", BIN);
    let r = run_command(cmd, secs(30.0));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    // What the pre-exit hook wrote into OLD reached NEW in the last sync,
    // before the exit hook ran.
    assert_eq!(
        lines(&state.join("hooks.log")),
        [
            "stop-old server-move preexit",
            "start-new server-move exiting with sessions.dump"
        ]
    );
    assert_eq!(tree_diff(&env.src, &env.dst), None);
    assert!(env.dst_has("sessions.dump"));
    assert!(
        r.stderr.contains("--exit-on-no-events: nothing is pending"),
        "{}",
        r.stderr
    );
}

#[test]
fn server_move_example_keeps_up_until_told_to_cut_over() {
    let env = TestEnv::new();
    env.write("index.html", "<h1>hi</h1>");
    let state = env.outside_path("state");
    let _lock = take_lock(libc::LOCK_SH);
    let mut s = Script::start(
        Command::new(example("server-move/run.sh"))
            .arg(&env.src)
            .arg(&env.dst)
            .env("SERVER_MOVE_STATE", &state),
    );
    wait_until(secs(20.0), "initial copy", || tree_diff(&env.src, &env.dst));
    // Quiet now, and still mirroring: changes keep arriving.
    env.write("later.html", "written after the copy");
    wait_until(secs(20.0), "a later change", || {
        tree_diff(&env.src, &env.dst)
    });
    assert!(!state.join("hooks.log").exists(), "no cut-over yet");
    let mut c = Command::new(BIN);
    c.arg("ctl").arg(state.join("livesync.sock")).arg("quit");
    let r = run_command(c, secs(10.0));
    assert_eq!(r.code, Some(0), "ctl quit: {}", r.stderr);
    let mut code = None;
    wait_until(secs(20.0), "the cut-over ends livesync", || {
        match s.child.try_wait() {
            Ok(Some(st)) => {
                code = st.code();
                true
            }
            _ => false,
        }
    });
    assert_eq!(code, Some(0));
    assert_eq!(
        lines(&state.join("hooks.log")),
        [
            "stop-old server-move preexit",
            "start-new server-move exiting with sessions.dump"
        ]
    );
    assert_eq!(tree_diff(&env.src, &env.dst), None);
}

/// The status of the instance behind `sock`, as JSON.
fn status_json(sock: &Path) -> serde_json::Value {
    let mut c = Command::new(BIN);
    c.args(["status", "--json", "--socket"]).arg(sock);
    let r = run_command(c, secs(10.0));
    assert_eq!(r.code, Some(0), "status {}: {}", sock.display(), r.stderr);
    serde_json::from_str(r.stdout.trim()).expect("json")
}

/// The instance behind `sock` is past its initial sync with nothing queued
/// and nothing running.
fn idle(sock: &Path) -> bool {
    let v = status_json(sock);
    v["state"] == "running" && v["queue_total"] == 0 && v["counters"]["running"] == 0
}

/// The `batches` counter of the instance behind `sock`.
fn batches(sock: &Path) -> u64 {
    status_json(sock)["counters"]["batches"]
        .as_u64()
        .expect("batches")
}

#[test]
fn two_way_example_converges_and_goes_quiet() {
    let env = TestEnv::new();
    let (a, b) = (&env.src, &env.dst);
    env.write("from-a-at-start", "1");
    let state = env.outside_path("state");
    let _lock = take_lock(libc::LOCK_SH);
    let mut s = Script::start(
        Command::new(example("two-way/run.sh"))
            .arg(a)
            .arg(b)
            .env("TWO_WAY_STATE", &state),
    );
    let (ab, ba) = (state.join("ab.sock"), state.join("ba.sock"));
    // Up, the initial sync done and nothing left in flight on either side:
    // a change made while A -> B still runs its whole-tree initial sync
    // would race it (A is the reference then; the example's README says so).
    wait_until(
        secs(20.0),
        "both instances up, initial sync done, idle",
        || ab.exists() && ba.exists() && tree_diff(a, b).is_none() && idle(&ab) && idle(&ba),
    );
    // Changes on both sides, files and directories, and a delete.
    std::fs::write(a.join("one"), "from a").unwrap();
    std::fs::create_dir_all(b.join("dir/sub")).unwrap();
    std::fs::write(b.join("dir/sub/two"), "from b").unwrap();
    std::fs::remove_file(b.join("from-a-at-start")).unwrap();
    wait_until(secs(20.0), "both sides converge", || {
        let ok = a.join("dir/sub/two").exists()
            && b.join("one").exists()
            && !a.join("from-a-at-start").exists();
        if ok {
            tree_diff(a, b)
        } else {
            Some("not yet".into())
        }
    });
    // Quiet: once the last bounce is done, no batch runs on either side.
    let mut last = (batches(&ab), batches(&ba));
    let mut since = Instant::now();
    wait_until(secs(30.0), "no new batch for 2 s", || {
        let now = (batches(&ab), batches(&ba));
        if now != last {
            (last, since) = (now, Instant::now());
        }
        since.elapsed() >= Duration::from_secs(2)
    });
    assert_stays(
        Duration::from_secs(3),
        "no sync ping-pong: the batch counters stay put with nothing changing",
        || (batches(&ab), batches(&ba)) == last,
    );
    assert_eq!(tree_diff(a, b), None);
    assert_eq!(
        std::fs::read_to_string(a.join("dir/sub/two")).unwrap(),
        "from b"
    );
    assert_eq!(s.stop(), Some(0));
}
