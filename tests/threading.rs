//! Parallel handler runs (`-p off|safe|full`, `--threads`) through the real
//! binary: a slow rsyncdirect handler (a script that logs when each run
//! starts and ends and which paths its include list names, then runs real
//! rsync) shows which runs overlap in time. `safe` runs batches for
//! unrelated paths at once and never two on one path; `full` may; `off`
//! never overlaps. Under a random live workload `-p safe` converges, with
//! the built-in mirror and with rsyncdirect. The status JSON reports the
//! running handlers, and TERM stops every one of them and syncs their
//! batches again before exiting.
//!
//! These tests own nothing outside their temp dirs; every wait polls a
//! condition with a deadline.

mod common;

use common::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(30);

/// One handler run as the slow script logged it.
#[derive(Debug, Clone)]
struct RunSpan {
    pid: u32,
    start: u128,
    end: Option<u128>,
    /// Include-list patterns without the leading `/` and a `/***` suffix.
    paths: Vec<String>,
}

impl RunSpan {
    fn names(&self, p: &str) -> bool {
        self.paths.iter().any(|q| q == p)
    }

    fn overlaps(&self, other: &RunSpan) -> bool {
        let (Some(e1), Some(e2)) = (self.end, other.end) else {
            return false;
        };
        self.start < e2 && other.start < e1
    }
}

/// A handler that logs `S PID NS PATHS…` when it starts, sleeps `secs`,
/// runs rsync, and logs `E PID NS` when it ends.
fn slow_handler(env: &TestEnv, secs: f64) -> (PathBuf, PathBuf) {
    let log = env.root.join("runs.log");
    let h = script(
        env,
        "slow-rsync.sh",
        &format!(
            r#"incl=; prev=
for a in "$@"; do [ "$prev" = "--include-from" ] && incl=$a; prev=$a; done
paths=$(tr '\n' ' ' < "$incl")
echo "S $$ $(date +%s%N) $paths" >> '{log}'
sleep {secs}
rsync "$@"; rc=$?
echo "E $$ $(date +%s%N)" >> '{log}'
exit $rc"#,
            log = log.display()
        ),
    );
    (h, log)
}

/// The runs logged so far, in start order.
fn runs(log: &Path) -> Vec<RunSpan> {
    let mut out: Vec<RunSpan> = Vec::new();
    for line in lines(log) {
        let mut w = line.split_whitespace();
        let (Some(kind), Some(pid), Some(ns)) = (w.next(), w.next(), w.next()) else {
            continue;
        };
        let (Ok(pid), Ok(ns)) = (pid.parse::<u32>(), ns.parse::<u128>()) else {
            continue;
        };
        match kind {
            "S" => out.push(RunSpan {
                pid,
                start: ns,
                end: None,
                paths: w
                    .map(|p| {
                        let p = p.trim_start_matches('/');
                        p.strip_suffix("/***").unwrap_or(p).to_string()
                    })
                    .collect(),
            }),
            "E" => {
                if let Some(r) = out.iter_mut().find(|r| r.pid == pid && r.end.is_none()) {
                    r.end = Some(ns);
                }
            }
            _ => {}
        }
    }
    out
}

/// The finished runs that name `p`.
fn runs_of(log: &Path, p: &str) -> Vec<RunSpan> {
    runs(log)
        .into_iter()
        .filter(|r| r.names(p) && r.end.is_some())
        .collect()
}

/// `livesync -M rsyncdirect -S HANDLER -t0 -w0 -p MODE --threads N`.
fn parallel(env: &TestEnv, handler: &Path, mode: &str, threads: &str) -> DaemonBuilder {
    Daemon::builder(env)
        .args(["-M", "rsyncdirect", "-S"])
        .arg(handler)
        .args(["-t0", "-w0", "-p", mode, "--threads", threads])
}

/// Starts livesync with the slow handler over a source holding `init`,
/// and waits until the initial sync's run has ended.
fn start_slow(env: &TestEnv, handler: &Path, extra: &[&str]) -> Daemon {
    env.write("init", "init");
    let mut d = Daemon::builder(env)
        .args(["-M", "rsyncdirect", "-t0", "-w0", "-S"])
        .arg(handler)
        .args(extra)
        .start();
    let log = env.root.join("runs.log");
    d.wait_until(LONG, "the initial sync's run ended", || {
        env.diff().is_none() && !runs(&log).is_empty() && runs(&log).iter().all(|r| r.end.is_some())
    });
    d
}

/// Writes `a`, waits until its run started, then writes `second` (and
/// changes `a` again when `rewrite_a`); returns when both are synced and
/// every run has ended.
fn two_changes(d: &mut Daemon, env: &TestEnv, log: &Path, second: &str, rewrite_a: bool) {
    env.write("a", "one");
    d.wait_until(LONG, "the run for a started", || {
        runs(log).iter().any(|r| r.names("a"))
    });
    if rewrite_a {
        env.write("a", "two");
    }
    env.write(second, "b");
    d.wait_until(LONG, "both changes synced and every run ended", || {
        env.diff().is_none()
            && runs(log).iter().all(|r| r.end.is_some())
            && !runs_of(log, second).is_empty()
            && (!rewrite_a || runs_of(log, "a").len() >= 2)
    });
}

#[test]
fn safe_runs_batches_for_unrelated_paths_at_once() {
    if !require_tool("rsync") {
        return;
    }
    let env = TestEnv::new();
    let (h, log) = slow_handler(&env, 1.5);
    let sock = env.outside_path("ctl.sock");
    let sock_arg = path_str(&sock);
    let mut d = start_slow(
        &env,
        &h,
        &["-p", "safe", "--threads", "2", "--socket", &sock_arg],
    );
    env.write("a", "one");
    d.wait_until(LONG, "the run for a started", || {
        runs(&log).iter().any(|r| r.names("a"))
    });
    env.write("b", "b");
    d.wait_until(LONG, "two handlers running, as status says", || {
        let mut cmd = Command::new(BIN);
        cmd.arg("ctl").arg(&sock).arg("status");
        let st = run_command(cmd, secs(10.0));
        st.stdout.contains("\"running\":2") && st.stdout.contains("\"threads\":2")
    });
    d.wait_until(LONG, "both synced, every run ended", || {
        env.diff().is_none()
            && runs(&log).iter().all(|r| r.end.is_some())
            && !runs_of(&log, "b").is_empty()
    });
    let (a, b) = (&runs_of(&log, "a")[0], &runs_of(&log, "b")[0]);
    assert!(
        a.overlaps(b),
        "a and b ran one after the other: {a:?} {b:?}"
    );
}

#[test]
fn safe_never_runs_two_handlers_on_one_path() {
    if !require_tool("rsync") {
        return;
    }
    let env = TestEnv::new();
    let (h, log) = slow_handler(&env, 1.0);
    let mut d = start_slow(&env, &h, &["-p", "safe", "--threads", "3"]);
    two_changes(&mut d, &env, &log, "b", true);
    let a = runs_of(&log, "a");
    assert!(a.len() >= 2, "a synced twice: {a:?}");
    for (i, x) in a.iter().enumerate() {
        for y in &a[i + 1..] {
            assert!(!x.overlaps(y), "two runs on a at once: {x:?} {y:?}");
        }
    }
    // b was free: it ran beside the first run on a (parallelism is on).
    let b = &runs_of(&log, "b")[0];
    assert!(a[0].overlaps(b), "b waited for a: {:?} {b:?}", a[0]);
}

#[test]
fn safe_holds_a_path_below_one_in_flight() {
    if !require_tool("rsync") {
        return;
    }
    let env = TestEnv::new();
    env.mkdir_p("d");
    let (h, log) = slow_handler(&env, 1.0);
    let mut d = start_slow(&env, &h, &["-p", "safe", "--threads", "3"]);
    // A subtree run on d (a dir moved in), then a file inside it.
    fs::create_dir(env.outside_path("m")).expect("mkdir");
    fs::write(env.outside_path("m/x"), "x").expect("write");
    fs::rename(env.outside_path("m"), env.src_path("d/m")).expect("move in");
    d.wait_until(LONG, "the run for d/m started", || {
        runs(&log).iter().any(|r| r.names("d/m"))
    });
    env.write("d/m/y", "y");
    d.wait_until(LONG, "synced, every run ended", || {
        env.diff().is_none()
            && runs(&log).iter().all(|r| r.end.is_some())
            && !runs_of(&log, "d/m/y").is_empty()
    });
    let first = &runs_of(&log, "d/m")[0];
    let inner = runs_of(&log, "d/m/y");
    assert!(
        inner.iter().all(|r| !r.overlaps(first)),
        "a run below d/m overlapped it: {first:?} {inner:?}"
    );
}

#[test]
fn full_may_run_two_handlers_on_one_path() {
    if !require_tool("rsync") {
        return;
    }
    let env = TestEnv::new();
    let (h, log) = slow_handler(&env, 1.0);
    let mut d = start_slow(&env, &h, &["-p", "full", "--threads", "2"]);
    two_changes(&mut d, &env, &log, "b", true);
    let a = runs_of(&log, "a");
    assert!(a.len() >= 2, "a synced twice: {a:?}");
    assert!(a[0].overlaps(&a[1]), "-p full waited: {a:?}");
}

#[test]
fn off_runs_one_handler_at_a_time() {
    if !require_tool("rsync") {
        return;
    }
    let env = TestEnv::new();
    let (h, log) = slow_handler(&env, 0.5);
    let mut d = start_slow(&env, &h, &["-p", "off"]);
    two_changes(&mut d, &env, &log, "b", false);
    let all: Vec<RunSpan> = runs(&log);
    for (i, x) in all.iter().enumerate() {
        for y in &all[i + 1..] {
            assert!(!x.overlaps(y), "-p off overlapped: {x:?} {y:?}");
        }
    }
}

/// Random creates, writes, renames and removes under a few dirs, for
/// `rounds` rounds, with no pause (the daemon batches as it likes).
fn random_workload(env: &TestEnv, seed: u64, rounds: usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dirs = ["", "d1", "d2", "d1/e", "d3"];
    for d in &dirs[1..] {
        env.mkdir_p(d);
    }
    for i in 0..rounds {
        let dir = dirs[rng.gen_range(0..dirs.len())];
        let name = format!("f{}", rng.gen_range(0..8));
        let rel = if dir.is_empty() {
            name
        } else {
            format!("{dir}/{name}")
        };
        let p = env.src_path(&rel);
        match rng.gen_range(0..10) {
            0..=4 => {
                let parent_ok = p.parent().is_some_and(|q| q.is_dir());
                if parent_ok {
                    let _ = fs::write(&p, format!("{i} {}", "x".repeat(rng.gen_range(0..4000))));
                }
            }
            5 | 6 => {
                let _ = fs::remove_file(&p);
            }
            7 => {
                let to = env.src_path(format!("{}/m{}", dirs[rng.gen_range(1..dirs.len())], i));
                let _ = fs::rename(&p, to);
            }
            8 => {
                // Rename a whole dir away and back under another name.
                let d = dirs[rng.gen_range(1..dirs.len())];
                let tmp = env.src_path(format!("moved{i}"));
                if fs::rename(env.src_path(d), &tmp).is_ok() {
                    let _ = fs::rename(&tmp, env.src_path(d));
                }
            }
            _ => {
                let d = dirs[rng.gen_range(1..dirs.len())];
                let _ = fs::create_dir_all(env.src_path(d));
            }
        }
    }
}

fn converges_under_load(mode: &[&str], seed: u64) {
    let env = TestEnv::new();
    random_workload(&env, seed, 40);
    let mut args = vec!["-p", "safe", "--threads", "3", "-t0", "-w0"];
    args.extend(mode);
    let mut d = Daemon::start(&env, &args);
    d.wait_synced(&env, LONG);
    for round in 0..4 {
        random_workload(&env, seed * 10 + round, 150);
    }
    d.wait_synced(&env, LONG);
    d.assert_running();
}

#[test]
fn safe_converges_under_a_random_live_workload_with_the_mirror() {
    converges_under_load(&[], 7);
}

#[test]
fn safe_converges_under_a_random_live_workload_with_rsync() {
    if !require_tool("rsync") {
        return;
    }
    converges_under_load(&["-M", "rsyncdirect"], 11);
}

#[test]
fn term_stops_every_running_handler_and_syncs_their_batches() {
    if !require_tool("rsync") {
        return;
    }
    let env = TestEnv::new();
    env.write("init", "init");
    let (flag, pids) = (env.root.join("hang"), env.root.join("pids"));
    // While the flag exists every run hangs (recording its pids); else rsync.
    let h = script(
        &env,
        "hang.sh",
        &format!(
            "if [ -e '{f}' ]; then echo $$ >> '{p}'; sleep 60 & echo $! >> '{p}'; wait; exit 1; fi\nexec rsync \"$@\"",
            f = flag.display(),
            p = pids.display()
        ),
    );
    let mut d = parallel(&env, &h, "safe", "2").start();
    d.wait_synced(&env, LONG);
    fs::write(&flag, "").expect("flag");
    env.write("a", "a");
    d.wait_until(LONG, "a handler hanging", || lines(&pids).len() >= 2);
    env.write("b", "b");
    d.wait_until(LONG, "two handlers hanging", || lines(&pids).len() >= 4);
    fs::remove_file(&flag).expect("unflag");
    let recorded: Vec<i32> = lines(&pids)
        .iter()
        .map(|l| l.trim().parse().expect("pid"))
        .collect();
    let st = d.signal_and_wait(Signal::SIGTERM, LONG).expect("exited");
    assert_eq!(st.code(), Some(0), "{}", d.context());
    for p in recorded {
        wait_until(LONG, "a hanging handler killed", || !alive(p));
    }
    assert_eq!(env.diff(), None, "the stopped batches were synced again");
}

#[test]
fn full_retries_a_failed_run_while_others_go_on() {
    if !require_tool("rsync") {
        return;
    }
    let env = TestEnv::new();
    env.write("init", "init");
    let flag = env.root.join("fail");
    // While the flag exists a run that names `a` fails; every other run syncs.
    let h = script(
        &env,
        "fail-a.sh",
        &format!(
            "incl=; prev=\nfor x in \"$@\"; do [ \"$prev\" = \"--include-from\" ] && incl=$x; prev=$x; done\nif [ -e '{f}' ] && grep -qx '/a' \"$incl\"; then exit 3; fi\nexec rsync \"$@\"",
            f = flag.display()
        ),
    );
    let mut d = parallel(&env, &h, "full", "2").start();
    d.wait_synced(&env, LONG);
    fs::write(&flag, "").expect("flag");
    env.write("a", "a");
    d.wait_for_log(LONG, "failed (try 1");
    env.write("b", "b");
    d.wait_until(LONG, "b synced while a keeps failing", || env.dst_has("b"));
    assert!(!env.dst_has("a"), "a was synced while its run failed");
    fs::remove_file(&flag).expect("unflag");
    d.wait_synced(&env, LONG);
}
