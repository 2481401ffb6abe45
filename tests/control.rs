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
