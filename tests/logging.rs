//! What livesync logs, through the real binary: the start-up line (what is
//! watched, the mode, the destination, the delay windows), a burst of
//! thousands of files giving a bounded number of info lines (a few batch
//! lines and one summary per interval, every batch still accounted for),
//! `-b` not throwing log lines away in silence, and `-Y syslog` saying at
//! start that its socket cannot be reached. Every daemon is stopped at the
//! end, whatever happens.

mod common;

use common::*;
use std::fs;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(30);

/// The number after `synced ` in a batch or summary line.
fn synced_paths(line: &str) -> Option<u64> {
    let rest = line.split("synced ").nth(1)?;
    rest.split(' ').next()?.parse().ok()
}

#[test]
fn the_start_up_line_says_what_where_and_when() {
    let env = TestEnv::new();
    let mut d = Daemon::start(&env, &["-t0.5", "-w", "2", "-B", "1000", "-T", "60"]);
    d.wait_for_log(LONG, "between syncs (-w)");
    let log = d.log();
    let line = log
        .lines()
        .find(|l| l.contains(" INFO: livesync "))
        .unwrap_or_else(|| panic!("no start-up line:\n{log}"));
    let want = [
        format!("watch dir {} with ", env.src.display()),
        format!(", mode mirror, to {}; ", env.dst.display()),
        "changes wait 0.5 s (-t), files over 1000 bytes wait 60 s (-T), at least 2 s between syncs (-w)".to_string(),
    ];
    for w in &want {
        assert!(line.contains(w.as_str()), "{w:?} missing from:\n{line}");
    }
}

/// 3,000 files in 60 waves, each wave synced before the next starts (so
/// there are at least 60 batches): the info lines about batches stay at
/// a few per 5 s, and the info lines together still count every path the
/// batches synced (`-d` shows each batch, to check that).
#[test]
fn a_burst_of_files_logs_a_bounded_number_of_info_lines() {
    let env = TestEnv::new();
    let mut d = Daemon::start(&env, &["-t0", "-w0", "-d"]);
    d.wait_for_log(LONG, "initial sync done");
    let start = Instant::now();
    for wave in 0..60 {
        for i in 0..50 {
            env.write(format!("f{wave}-{i}"), "x");
        }
        let last = format!("f{wave}-49");
        d.wait_until(LONG, "a wave synced", || env.dst_has(&last));
    }
    d.wait_synced(&env, LONG);
    // The summary of the last batches comes out when its interval is over:
    // then the info lines count every path the batches (at debug) synced.
    let tally = |log: &str| {
        let (mut info, mut batches, mut info_lines) = (0u64, 0u64, 0u64);
        for l in log.lines() {
            let batch_line = l.contains(" path") && l.contains(" lane) with ");
            let summary = l.contains(" over the last ");
            if !(batch_line || summary) {
                continue;
            }
            let n = synced_paths(l).unwrap_or_else(|| panic!("no count in {l}"));
            if l.contains(" INFO: ") {
                info += n;
                info_lines += 1;
            }
            if batch_line {
                batches += n;
            }
        }
        (info, batches, info_lines)
    };
    let res = poll_until(LONG, || {
        let (info, all, _) = tally(&d.log());
        (info == all).then_some(()).map_or_else(
            || Some(format!("info lines count {info} paths, the batches {all}")),
            |()| None,
        )
    });
    if let Err(e) = res {
        panic!("{e}\n{}", d.log_tail(4000));
    }
    let elapsed = start.elapsed().as_secs_f64();
    let log = d.log();
    let batches = log.lines().filter(|l| l.contains(" lane) with ")).count();
    let (_, _, info_lines) = tally(&log);
    assert!(
        batches >= 60,
        "only {batches} batches: the test proves nothing"
    );
    // At most 5 batch lines and one summary per 5 s interval (and the
    // summary that flushed the last batches).
    let bound = 6 * (1 + (elapsed / 5.0).ceil() as u64);
    assert!(
        info_lines <= bound,
        "{info_lines} info lines about {batches} batches in {elapsed:.1} s (at most {bound} wanted)"
    );
    let all_info = log.lines().filter(|l| l.contains(" INFO: ")).count();
    assert!(
        all_info as u64 <= bound + 10,
        "{all_info} info lines in all:\n{}",
        d.log_tail(4000)
    );
}

/// `-b` with `-Y stderr`: stderr is /dev/null once livesync is up, so it
/// says at start that every later line is lost. Without `-Y`, the lines go
/// to syslog instead (here a socket of the test's own), and it says so.
#[test]
fn background_says_where_its_log_lines_go() {
    let env = TestEnv::new();
    env.write("a", "a");
    let pid_file = env.root.join("bg.pid");
    let sock_path = env.root.join("log.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind a syslog socket");
    sock.set_read_timeout(Some(LONG)).expect("timeout");
    struct Kill(std::path::PathBuf);
    impl Drop for Kill {
        fn drop(&mut self) {
            if let Some(pid) = fs::read_to_string(&self.0)
                .ok()
                .and_then(|p| p.trim().parse::<i32>().ok())
            {
                let _ = kill(pid, Signal::SIGKILL);
            }
        }
    }
    let _lock = take_lock(libc::LOCK_SH);
    for (extra, want) in [
        (
            &["-Y", "stderr"][..],
            "-b with -Y stderr: once livesync is in the background its stderr is /dev/null, so every later log line is lost; use -Y syslog",
        ),
        (
            &[][..],
            "-b: once livesync is in the background stderr is /dev/null, so log lines go to syslog",
        ),
    ] {
        let _guard = Kill(pid_file.clone());
        let mut args = vec![
            "-W".to_string(),
            path_str(&env.src),
            "-D".to_string(),
            path_str(&env.dst),
            "-b".to_string(),
            "-z".to_string(),
            path_str(&pid_file),
            "--syslog-socket".to_string(),
            path_str(&sock_path),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let r = run_livesync(&args, LONG);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        assert!(r.stderr.contains(want), "{want:?} not in:\n{}", r.stderr);
        let pid: i32 = read(&pid_file).trim().parse().expect("pid");
        wait_until(LONG, "synced", || env.diff());
        if extra.is_empty() {
            // The warning went to syslog too, and the daemon's lines after
            // it went into the background follow.
            let mut buf = [0u8; 4096];
            let mut warned = false;
            let got = loop {
                let n = sock.recv(&mut buf).expect("a syslog datagram");
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                warned |= msg.contains("log lines go to syslog");
                if msg.contains("initial sync done") {
                    break msg;
                }
            };
            assert!(warned, "the warning did not reach syslog");
            assert!(got.contains(&format!("livesync[{pid}]: ")), "{got}");
        }
        let _ = kill(pid, Signal::SIGTERM);
        wait_until(LONG, "exited", || !alive(pid));
    }
}

/// `-Y syslog` with no socket to send to: said on stderr at start (before
/// this, livesync logged nothing and exited 0).
#[test]
fn syslog_without_a_socket_says_so_at_start() {
    let env = TestEnv::new();
    env.write("a", "a");
    let missing = env.root.join("no-such.sock");
    let r = run_livesync(
        &[
            "-W",
            &path_str(&env.src),
            "-D",
            &path_str(&env.dst),
            "-Y",
            "syslog",
            "--syslog-socket",
            &path_str(&missing),
            "--only-initialsync",
        ],
        LONG,
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let want = format!(
        "livesync: warning: -Y syslog: cannot reach the syslog socket {} (",
        missing.display()
    );
    assert!(r.stderr.contains(&want), "{want:?} not in:\n{}", r.stderr);
    assert!(r
        .stderr
        .contains("log lines are lost until a syslog daemon listens there"));
    assert_eq!(env.dst_read("a").as_deref(), Some(&b"a"[..]));
}
