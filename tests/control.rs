//! The control socket wired into the running daemon: `livesync ctl` against
//! a real `livesync --socket` mirroring temp dirs. status reports the loop's
//! state as JSON, pause holds syncs while events are still collected, resume
//! releases them, resync repairs the destination behind the daemon's back,
//! and quit syncs what is pending and exits 0, removing the socket.

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

fn ctl(sock: &std::path::Path, words: &[&str]) -> Run {
    let mut cmd = Command::new(BIN);
    cmd.arg("ctl").arg(sock).args(words);
    run_command(cmd, secs(10.0))
}

#[test]
fn ctl_drives_a_running_daemon() {
    let env = TestEnv::new();
    let sock = env.outside_path("ctl.sock");
    let sock_arg = sock.to_string_lossy().into_owned();
    let mut d = Daemon::start(&env, &["-t0", "-w0", "--socket", &sock_arg, "-l", "lab"]);
    d.wait_live(&env, secs(20.0));
    let mode = std::fs::metadata(&sock)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777);
    assert_eq!(mode.ok(), Some(0o600), "socket mode");

    let st = ctl(&sock, &["status"]);
    assert_eq!(st.code, Some(0), "status: {}", st.stderr);
    for want in [
        "\"state\":\"running\"",
        "\"label\":\"lab\"",
        "\"batches\":",
        "\"queue\":",
    ] {
        assert!(
            st.stdout.contains(want),
            "status lacks {want}: {}",
            st.stdout
        );
    }

    assert_eq!(ctl(&sock, &["pause"]).code, Some(0));
    env.write("held", "while paused");
    assert_stays(
        Duration::from_millis(700),
        "held stays out while paused",
        || !env.dst_has("held"),
    );
    let st = ctl(&sock, &["status"]);
    assert!(
        st.stdout.contains("\"normal\":1"),
        "the change waits in the queue: {}",
        st.stdout
    );
    assert_eq!(ctl(&sock, &["resume"]).code, Some(0));
    d.wait_until(secs(10.0), "held synced after resume", || {
        env.dst_has("held")
    });

    // Damage the destination behind the daemon's back; resync repairs it.
    std::fs::remove_file(env.dst_path("held")).expect("rm dst file");
    assert_eq!(ctl(&sock, &["resync"]).code, Some(0));
    d.wait_synced(&env, secs(10.0));

    let bad = ctl(&sock, &["frobnicate"]);
    assert_eq!(bad.code, Some(1), "unknown command: {}", bad.stdout);

    assert_eq!(ctl(&sock, &["quit"]).code, Some(0));
    let status = d.wait_exit(secs(10.0));
    assert_eq!(status.code(), Some(0));
    assert!(!sock.exists(), "socket removed at exit");
}

#[test]
fn silent_clients_cannot_lock_status_out_and_refusals_are_not_logged_each() {
    use std::io::Read;
    use std::os::unix::net::UnixStream;
    let env = TestEnv::new();
    let sock = env.outside_path("ctl.sock");
    let sock_arg = sock.to_string_lossy().into_owned();
    let mut d = Daemon::start(&env, &["-t0", "-w0", "--socket", &sock_arg]);
    d.wait_live(&env, secs(20.0));
    // Far more silent clients than there are places.
    let silent: Vec<UnixStream> = (0..48)
        .map(|_| UnixStream::connect(&sock).expect("connect"))
        .collect();
    let started = std::time::Instant::now();
    let st = ctl(&sock, &["status"]);
    assert_eq!(st.code, Some(0), "status: {} {}", st.stdout, st.stderr);
    assert!(st.stdout.contains("\"state\""), "{}", st.stdout);
    assert!(
        started.elapsed() < secs(5.0),
        "status took {:?}",
        started.elapsed()
    );
    // The last silent one still holds a place until its deadline, with no
    // event to wake the loop: then it is closed with a reason.
    let mut last = silent.last().expect("a client").try_clone().expect("clone");
    last.set_read_timeout(Some(secs(30.0))).expect("timeout");
    let mut got = String::new();
    last.read_to_string(&mut got).expect("read until closed");
    assert!(got.starts_with("error idle for"), "{got:?}");
    let refusals = d
        .log()
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("control socket"))
        .count();
    assert!(refusals <= 1, "one refusal line at most: {}", d.log());
    assert!(
        d.log().contains("dropped the one idle longest"),
        "{}",
        d.log()
    );
    d.assert_running();
}
