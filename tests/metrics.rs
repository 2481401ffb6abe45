//! Status and metrics of a running daemon, through the real binary: the
//! `livesync status|resync|pause|resume|metrics` clients (text for people,
//! `--json` for scripts, socket from `--socket` or from the config file),
//! the control socket's `metrics` command and `--metrics-file`, each parsed
//! as Prometheus text and checked against what the test did. And the
//! initial sync's progress bar: drawn on a terminal (a pty the test opens),
//! absent when stderr is a pipe or with `--progress never`.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

fn client(words: &[&str]) -> Run {
    let mut cmd = Command::new(BIN);
    cmd.args(words);
    run_command(cmd, secs(10.0))
}

/// Prometheus text → `name{labels}` → value; every sample's metric must
/// have a `# TYPE` line first, and every line must be a comment or a sample.
fn parse_prometheus(text: &str) -> BTreeMap<String, f64> {
    let mut typed = std::collections::BTreeSet::new();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect(line);
            assert!(matches!(kind, "gauge" | "counter"), "{line}");
            typed.insert(name.to_string());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment {line:?}");
        let (key, value) = line.rsplit_once(' ').expect(line);
        let name = key.split('{').next().unwrap();
        assert!(typed.contains(name), "{name} has no TYPE line");
        let v: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("value of {line:?}"));
        assert!(out.insert(key.to_string(), v).is_none(), "duplicate {key}");
    }
    out
}

fn metric(m: &BTreeMap<String, f64>, key: &str) -> f64 {
    *m.get(key)
        .unwrap_or_else(|| panic!("no {key} in {:?}", m.keys().collect::<Vec<_>>()))
}

#[test]
fn status_clients_and_metrics_follow_the_daemon() {
    let env = TestEnv::new();
    let sock = env.outside_path("ctl.sock");
    let prom = env.outside_path("livesync.prom");
    let sock_s = path_str(&sock);
    let mut d = Daemon::start(
        &env,
        &[
            "-t0",
            "-w0",
            "-l",
            "web",
            "--socket",
            &sock_s,
            "--metrics-file",
            &path_str(&prom),
        ],
    );
    d.wait_live(&env, secs(20.0));
    for i in 0..3 {
        env.write(format!("f{i}"), "x");
    }
    d.wait_synced(&env, secs(10.0));

    // Text for people.
    let st = client(&["status", "--socket", &sock_s]);
    assert_eq!(st.code, Some(0), "{}", st.stderr);
    for want in [
        "state:          running",
        "label web",
        &format!("watch dir:      {}", env.src.display()),
        &format!("destination:    {}", env.dst.display()),
        "last sync:      ok",
    ] {
        assert!(
            st.stdout.contains(want),
            "status lacks {want:?}:\n{}",
            st.stdout
        );
    }
    assert!(!st.stdout.contains('{'), "text, not JSON: {}", st.stdout);

    // JSON for scripts.
    let js = client(&["status", "--json", "--socket", &sock_s]);
    assert_eq!(js.code, Some(0), "{}", js.stderr);
    let v: serde_json::Value = serde_json::from_str(js.stdout.trim()).expect("JSON");
    assert_eq!(v["state"], "running");
    assert_eq!(v["label"], "web");
    assert!(v["counters"]["batches"].as_u64().unwrap() >= 2, "{v}");
    assert_eq!(js.stdout.lines().count(), 1);

    // Metrics through the socket agree with the JSON.
    let m = client(&["metrics", "--socket", &sock_s]);
    assert_eq!(m.code, Some(0), "{}", m.stderr);
    let mm = parse_prometheus(&m.stdout);
    let batches = metric(&mm, "livesync_batches_total");
    assert!(batches >= v["counters"]["batches"].as_u64().unwrap() as f64);
    assert!(
        metric(&mm, "livesync_paths_synced_total") >= 4.0,
        "initial + 3 files"
    );
    assert!(metric(&mm, "livesync_events_total") >= 3.0);
    assert_eq!(metric(&mm, "livesync_failures_total"), 0.0);
    assert_eq!(metric(&mm, "livesync_state{state=\"running\"}"), 1.0);
    let dest = format!("{{destination=\"{}\"}}", env.dst.display());
    assert_eq!(metric(&mm, &format!("livesync_destination_up{dest}")), 1.0);
    assert_eq!(metric(&mm, "livesync_oldest_pending_age_seconds"), 0.0);
    // `ctl` prints the same text (raw client).
    let raw = client(&["ctl", &sock_s, "metrics"]);
    assert_eq!(raw.code, Some(0), "{}", raw.stderr);
    assert!(parse_prometheus(&raw.stdout).contains_key("livesync_batches_total"));

    // The metrics file is rewritten after each batch.
    d.wait_until(secs(10.0), "metrics file written", || prom.exists());
    let before = parse_prometheus(&read(&prom));
    env.write("more", "y");
    d.wait_until(secs(10.0), "metrics file counts the new batch", || {
        let now = parse_prometheus(&read(&prom));
        now.get("livesync_batches_total") > before.get("livesync_batches_total")
    });

    // pause / resume for people; the held change shows as queue depth and lag.
    let p = client(&["pause", "--socket", &sock_s]);
    assert_eq!(
        (p.code, p.stdout.trim()),
        (Some(0), "pause requested"),
        "{}",
        p.stderr
    );
    env.write("held", "z");
    d.wait_until(secs(10.0), "the held change is queued", || {
        let mm = parse_prometheus(&client(&["metrics", "--socket", &sock_s]).stdout);
        mm.get("livesync_queue_depth{lane=\"normal\"}") == Some(&1.0)
            && mm.get("livesync_state{state=\"hold on\"}") == Some(&1.0)
            && mm["livesync_oldest_pending_age_seconds"] > 0.0
    });
    assert!(!env.dst_has("held"));
    let r = client(&["resume", "--json", "--socket", &sock_s]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let rv: serde_json::Value = serde_json::from_str(r.stdout.trim()).expect("JSON");
    assert_eq!(rv["ok"], true);
    assert_eq!(rv["command"], "resume");
    d.wait_until(secs(10.0), "held synced after resume", || {
        env.dst_has("held")
    });

    // resync repairs what was removed behind the daemon's back.
    std::fs::remove_file(env.dst_path("f0")).unwrap();
    let r = client(&["resync", "--socket", &sock_s]);
    assert_eq!((r.code, r.stdout.trim()), (Some(0), "resync requested"));
    d.wait_until(secs(10.0), "resync restores f0", || env.dst_has("f0"));
    d.stop();
}

#[test]
fn the_socket_comes_from_the_config_file() {
    let env = TestEnv::new();
    let sock = env.outside_path("cfg.sock");
    let conf = env.outside_path("livesync.conf");
    std::fs::write(
        &conf,
        format!(
            "[web]\nwatch-dir = {}\ndestination-dir = {}\nsocket = {}\ndelay-collect = 0\ndelay-sync = 0\n",
            env.src.display(),
            env.dst.display(),
            sock.display()
        ),
    )
    .unwrap();
    let conf_s = path_str(&conf);
    // The daemon is told the same socket on its command line; the client
    // finds it in the file's [web] block.
    let mut d = Daemon::start(&env, &["-t0", "-w0", "--socket", &path_str(&sock)]);
    d.wait_live(&env, secs(20.0));
    let st = client(&["status", "--json", "-H", &conf_s, "-K", "web"]);
    assert_eq!(st.code, Some(0), "{}", st.stderr);
    assert!(st.stdout.contains("\"state\":\"running\""), "{}", st.stdout);
    // A block without `socket` names the file and the fix.
    std::fs::write(&conf, "[other]\nlabel = x\n").unwrap();
    let e = client(&["status", "-H", &conf_s, "-K", "other"]);
    assert_eq!(e.code, Some(2));
    assert!(e.stderr.contains("no `socket = PATH` line"), "{}", e.stderr);
    assert!(e.stderr.contains(&conf_s), "{}", e.stderr);
    d.stop();
}

#[test]
fn no_daemon_means_exit_2_and_one_line_naming_the_socket() {
    let t = tempfile::tempdir().unwrap();
    let sock = t.path().join("none.sock");
    for cmd in ["status", "resync", "pause", "resume", "metrics"] {
        let r = client(&[cmd, "--socket", &path_str(&sock)]);
        assert_eq!(r.code, Some(2), "{cmd}");
        assert_eq!(r.stderr.lines().count(), 1, "{cmd}: {}", r.stderr);
        assert!(r.stderr.contains(&path_str(&sock)), "{cmd}: {}", r.stderr);
        assert!(r.stdout.is_empty());
    }
    let r = client(&["metrics", "--json", "--socket", &path_str(&sock)]);
    assert_eq!(r.code, Some(2), "metrics has no --json");
    assert!(Path::new(BIN).exists());
}

/// Runs `livesync ARGS` with stderr on a new pty, returning what it drew.
fn run_on_pty(args: &[std::ffi::OsString]) -> (Option<i32>, String) {
    use std::io::Read;
    use std::os::fd::{FromRawFd, OwnedFd};
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes the two fds; the other arguments may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            // null_mut: the BSDs' termp/winp are *mut, Linux's *const.
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both fds are fresh and owned by nobody else.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let _lock = take_lock(libc::LOCK_SH);
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(slave))
        .spawn()
        .expect("spawn");
    let reader = std::thread::spawn(move || {
        let mut f = std::fs::File::from(master);
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        // EIO once the child (the last holder of the slave) is gone.
        while let Ok(n) = f.read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&got).into_owned()
    });
    let mut code = None;
    wait_until(
        secs(60.0),
        "livesync --exit-on-no-events exits",
        || match child.try_wait() {
            Ok(Some(st)) => {
                code = st.code();
                true
            }
            _ => false,
        },
    );
    (code, reader.join().expect("reader"))
}

/// A source big enough that the initial sync takes a few redraws.
fn big_source(env: &TestEnv) {
    for d in 0..20 {
        env.mkdir_p(format!("d{d}"));
        for f in 0..50 {
            env.write(format!("d{d}/f{f}"), vec![b'x'; 20_000]);
        }
    }
}

fn once_args(env: &TestEnv, extra: &[&str]) -> Vec<std::ffi::OsString> {
    let mut v: Vec<std::ffi::OsString> = vec![
        "-H".into(),
        "/NULL/".into(),
        "-W".into(),
        env.src.clone().into(),
        "-D".into(),
        env.dst.clone().into(),
        "-t0".into(),
        "-w0".into(),
        "--only-initialsync".into(),
    ];
    v.extend(extra.iter().map(|s| s.into()));
    v
}

#[test]
fn progress_bar_on_a_terminal() {
    let env = TestEnv::new();
    big_source(&env);
    let (code, screen) = run_on_pty(&once_args(&env, &[]));
    assert_eq!(code, Some(0), "{screen}");
    assert_eq!(tree_diff(&env.src, &env.dst), None);
    assert!(screen.contains("initial sync"), "no bar drawn:\n{screen}");
    assert!(screen.contains("/1000 files"), "file total:\n{screen}");
    assert!(screen.contains("MiB"), "bytes:\n{screen}");
    // The log lines are still there, whole.
    assert!(screen.contains("INFO: initial sync done"), "{screen}");

    let env = TestEnv::new();
    big_source(&env);
    let (code, screen) = run_on_pty(&once_args(&env, &["--progress", "never"]));
    assert_eq!(code, Some(0), "{screen}");
    assert!(
        !screen.contains("files,"),
        "--progress never drew a bar:\n{screen}"
    );
}

#[test]
fn no_progress_bar_when_stderr_is_not_a_terminal() {
    let env = TestEnv::new();
    big_source(&env);
    let r = run_on(&env, &["--only-initialsync"], secs(60.0));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(tree_diff(&env.src, &env.dst), None);
    assert!(!r.stderr.contains("files,"), "{}", r.stderr);
    assert!(
        !r.stderr.contains('\r') && !r.stderr.contains('\u{1b}'),
        "{:?}",
        r.stderr
    );
    // Only log lines: each one starts with a timestamp.
    for line in r.stderr.lines() {
        assert!(
            line.starts_with("20") && line.contains(" livesync["),
            "{line:?}"
        );
    }
}
