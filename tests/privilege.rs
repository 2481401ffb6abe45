//! Privilege dropping and hardening, tested on the running
//! processes: the daemon's, the privileged helper's and a handler's
//! `/proc/PID/status` (Uid, Gid, CapEff, CapPrm, CapBnd, CapAmb, NoNewPrivs,
//! Seccomp) for the default run and for each option; a root-owned 0700 tree
//! mirrored by nobody; a handler as nobody refused by a root-owned
//! destination, with a clear error; `--check-execvp-arguments` driven through
//! the helper's protocol; and hostile file names synced as plain names and
//! never executed. These tests need root (CI runs as root).

#![cfg(target_os = "linux")] // the privileged helper, capabilities and seccomp are Linux-only

mod common;

use common::*;
use livesync::exec::Outcome;
use livesync::security::split::{self, Checker, HelperConfig, Reply, Request};
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

/// Capability numbers (linux/capability.h).
const CHOWN: u32 = 0;
const DAC_OVERRIDE: u32 = 1;
const DAC_READ_SEARCH: u32 = 2;
const FOWNER: u32 = 3;
const FSETID: u32 = 4;
const KILL: u32 = 5;
const SETGID: u32 = 6;
const SETUID: u32 = 7;
const MKNOD: u32 = 27;

fn caps(list: &[u32]) -> u64 {
    list.iter().fold(0, |m, c| m | 1 << c)
}

const WRITER: [u32; 5] = [CHOWN, DAC_OVERRIDE, FOWNER, FSETID, MKNOD];

/// The fields of a `/proc/PID/status` text.
#[derive(Debug)]
struct Status(BTreeMap<String, String>);

impl Status {
    fn parse(text: &str) -> Status {
        Status(
            text.lines()
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.to_string(), v.trim().to_string()))
                .collect(),
        )
    }

    fn of(pid: i32) -> Status {
        Status::parse(&fs::read_to_string(format!("/proc/{pid}/status")).expect("read status"))
    }

    fn field(&self, k: &str) -> &str {
        self.0
            .get(k)
            .unwrap_or_else(|| panic!("no {k} in {:?}", self.0))
    }

    /// All four user (or group) ids, which must agree.
    fn id(&self, k: &str) -> u32 {
        let ids: Vec<u32> = self
            .field(k)
            .split_whitespace()
            .map(|n| n.parse().expect("id"))
            .collect();
        assert!(ids.iter().all(|&i| i == ids[0]), "{k}: {ids:?} differ");
        ids[0]
    }

    fn caps(&self, k: &str) -> u64 {
        u64::from_str_radix(self.field(k), 16).expect("cap mask")
    }

    fn num(&self, k: &str) -> u32 {
        self.field(k).parse().expect("number")
    }

    /// Checks identity, capability sets and flags, with a readable message.
    fn expect(&self, who: &str, uid: u32, eff: u64, bnd: Option<u64>, nnp: u32) {
        self.expect_seccomp(who, uid, eff, bnd, nnp, 0)
    }

    /// Like `expect`, with the Seccomp mode (2: filter).
    fn expect_seccomp(
        &self,
        who: &str,
        uid: u32,
        eff: u64,
        bnd: Option<u64>,
        nnp: u32,
        seccomp: u32,
    ) {
        let got = format!(
            "{who}: uid {} gid {} CapEff {:x} CapPrm {:x} CapBnd {:x} NoNewPrivs {} Seccomp {}",
            self.id("Uid"),
            self.id("Gid"),
            self.caps("CapEff"),
            self.caps("CapPrm"),
            self.caps("CapBnd"),
            self.num("NoNewPrivs"),
            self.num("Seccomp"),
        );
        assert_eq!(self.id("Uid"), uid, "{got}");
        assert_eq!(self.caps("CapEff"), eff, "{got}");
        assert_eq!(self.caps("CapPrm"), eff, "{got}");
        if let Some(b) = bnd {
            assert_eq!(self.caps("CapBnd"), b, "{got}");
        }
        assert_eq!(self.num("NoNewPrivs"), nnp, "{got}");
        assert_eq!(self.num("Seccomp"), seccomp, "{got}");
    }
}

/// A directory anyone may enter, for scripts handlers run as nobody
/// execute, with a world-writable `out/` for what they report.
struct Public {
    _t: tempfile::TempDir,
    dir: PathBuf,
    out: PathBuf,
}

impl Public {
    fn new() -> Public {
        let t = tempfile::Builder::new()
            .prefix("livesync-pub-")
            .tempdir()
            .expect("tempdir");
        let dir = t.path().canonicalize().expect("canon");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
        let out = dir.join("out");
        fs::create_dir(&out).expect("mkdir");
        fs::set_permissions(&out, fs::Permissions::from_mode(0o1777)).expect("chmod");
        Public { _t: t, dir, out }
    }

    /// A handler script that copies its own /proc status to `out/NAME`
    /// (each run replaces it) and exits 0.
    fn status_script(&self, name: &str) -> PathBuf {
        let p = self.dir.join(format!("{name}.sh"));
        let out = self.out.join(name);
        fs::write(
            &p,
            format!(
                "#!/bin/sh\ncat /proc/self/status > '{0}.tmp' && mv -f '{0}.tmp' '{0}'\n",
                out.display()
            ),
        )
        .expect("write script");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod");
        p
    }

    fn wait_status(&self, d: &mut Daemon, name: &str) -> Status {
        let p = self.out.join(name);
        d.wait_until(T, "the handler's status dump", || p.exists());
        Status::parse(&fs::read_to_string(&p).expect("read dump"))
    }
}

/// The pid of the daemon's child that is a livesync too (the helper).
fn helper_of(daemon: i32) -> Option<i32> {
    for e in fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let ppid = rest.split_whitespace().nth(1);
        if ppid == Some(&daemon.to_string()) && head.ends_with("(livesync") {
            return Some(pid);
        }
    }
    None
}

/// A root-owned 0700 source tree with files owned by other users.
fn root_tree(env: &TestEnv) {
    env.write("top.txt", "top");
    env.mkdir_p("secret/deeper");
    env.write("secret/deeper/key", "k");
    fs::set_permissions(env.src_path("secret"), fs::Permissions::from_mode(0o700)).expect("chmod");
    fs::set_permissions(
        env.src_path("secret/deeper/key"),
        fs::Permissions::from_mode(0o600),
    )
    .expect("chmod");
    std::os::unix::fs::chown(env.src_path("top.txt"), Some(1), Some(1)).expect("chown");
    fs::set_permissions(&env.src, fs::Permissions::from_mode(0o700)).expect("chmod");
}

#[test]
fn default_mirror_runs_as_nobody_and_mirrors_a_root_only_tree() {
    if !require_root("privilege dropping") {
        return;
    }
    let env = TestEnv::new();
    root_tree(&env);
    let mut d = Daemon::start(&env, &["-t0", "-w0"]);
    d.wait_live(&env, T);
    let kept = caps(&WRITER) | caps(&[DAC_READ_SEARCH]);
    Status::of(d.pid()).expect("daemon", 65534, kept, Some(kept), 1);
    assert_eq!(Status::of(d.pid()).id("Gid"), 65534);
    // Watched below the 0700 dir, and owners copied.
    env.write("secret/deeper/new", "n");
    d.wait_synced(&env, T);
    let m = fs::metadata(env.dst_path("top.txt")).expect("stat");
    assert_eq!((m.uid(), m.gid()), (1, 1), "ownership preserved");
    assert_eq!(
        fs::metadata(env.dst_path("secret/deeper/key"))
            .expect("stat")
            .mode()
            & 0o777,
        0o600
    );
}

#[test]
fn mirror_hooks_run_as_the_handler_user_with_no_new_privs() {
    if !require_root("privilege dropping") {
        return;
    }
    let env = TestEnv::new();
    let public = Public::new();
    let hook = public.status_script("hook");
    env.write("a", "a");
    let mut d = Daemon::start(
        &env,
        &[
            "-t0".as_ref(),
            "-w0".as_ref(),
            "--exit-hook".as_ref(),
            hook.as_os_str(),
        ],
    );
    d.wait_live(&env, T);
    // Hooks can run as root: the daemon keeps what switching needs.
    let kept = caps(&WRITER) | caps(&[DAC_READ_SEARCH, SETUID, SETGID, KILL]);
    Status::of(d.pid()).expect("daemon", 65534, kept, Some(kept), 1);
    let st = d.stop();
    assert!(st.is_some_and(|s| s.success()), "{st:?}");
    let h = Status::parse(&read(&public.out.join("hook")));
    h.expect("exit hook", 0, kept, Some(kept), 1);
}

#[test]
fn u_0_keeps_root_and_an_unknown_user_is_refused() {
    if !require_root("privilege dropping") {
        return;
    }
    let env = TestEnv::new();
    let mut d = Daemon::start(&env, &["-t0", "-w0", "-u", "0"]);
    d.wait_live(&env, T);
    let s = Status::of(d.pid());
    assert_eq!(s.id("Uid"), 0);
    assert_eq!(s.caps("CapEff"), s.caps("CapBnd"), "root keeps its caps");
    drop(d);
    let r = run_on(&env, &["-u", "no-such-livesync-user"], T);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("-u \"no-such-livesync-user\": no such user"),
        "{}",
        r.stderr
    );
}

#[test]
fn u_g_and_c_choose_the_daemons_identity_and_extra_caps() {
    if !require_root("privilege dropping") {
        return;
    }
    let env = TestEnv::new();
    env.write("a", "a");
    let mut d = Daemon::start(
        &env,
        &[
            "-t0",
            "-w0",
            "-u",
            "daemon",
            "-g",
            "nogroup",
            "-C",
            "kill,CAP_SYS_NICE",
        ],
    );
    d.wait_live(&env, T);
    let s = Status::of(d.pid());
    let kept = caps(&WRITER) | caps(&[DAC_READ_SEARCH, KILL]) | 1 << 23;
    s.expect("daemon", 1, kept, Some(kept), 1);
    assert_eq!(s.id("Gid"), 65534);
    let groups = s.field("Groups").to_string();
    assert_eq!(groups, "65534", "supplementary groups are dropped");
}

/// `livesync -t0 -w0 -M rsyncdirect -S SCRIPT EXTRA...`, the daemon most
/// tests here start (the script records the handler's credentials, or is
/// `/bin/true`).
fn rsyncdirect(env: &TestEnv, script: &Path, extra: &[&OsStr]) -> Daemon {
    Daemon::builder(env)
        .args(["-t0", "-w0", "-M", "rsyncdirect", "-S"])
        .arg(script)
        .args(extra)
        .start()
}

#[test]
fn the_helper_runs_as_the_privileged_user_and_template_argv_passes_the_check() {
    if !require_root("privilege dropping") {
        return;
    }
    let env = TestEnv::new();
    let public = Public::new();
    let script = public.status_script("tpl");
    env.write("a b", "x");
    let mut d = rsyncdirect(
        &env,
        &script,
        &[
            "--splitting".as_ref(),
            "process".as_ref(),
            "--check-execvp-arguments".as_ref(),
            "--privileged-uid".as_ref(),
            "daemon".as_ref(),
            "--privileged-gid".as_ref(),
            "daemon".as_ref(),
            "-l".as_ref(),
            "web".as_ref(),
            "--".as_ref(),
            "%RSYNC-ARGS%".as_ref(),
            "--label=%label%".as_ref(),
            "%INCLUDE-LIST%".as_ref(),
            "%watch-dir%/".as_ref(),
            "%destination-dir%/".as_ref(),
        ],
    );
    let h = public.wait_status(&mut d, "tpl");
    let helper = helper_of(d.pid()).expect("helper");
    let hs = Status::of(helper);
    // The helper is `daemon`; handlers default to the same user, so it
    // needs no capability to switch, only to stop them.
    hs.expect("helper", 1, caps(&[KILL]), Some(caps(&[KILL])), 0);
    h.expect("handler", 1, 0, Some(caps(&[KILL])), 1);
    assert!(!d.log().contains("refus"), "{}", d.log());
}

#[test]
fn rsyncdirect_handler_runs_as_root_with_no_new_privs_and_bounded_caps() {
    if !require_root("privilege dropping") {
        return;
    }
    let env = TestEnv::new();
    let public = Public::new();
    let script = public.status_script("handler");
    env.write("a", "a");
    let mut d = rsyncdirect(&env, &script, &[]);
    let h = public.wait_status(&mut d, "handler");
    let kept = caps(&WRITER) | caps(&[DAC_READ_SEARCH, SETUID, SETGID, KILL]);
    Status::of(d.pid()).expect("daemon", 65534, kept, Some(kept), 1);
    h.expect("handler", 0, kept, Some(kept), 1);
    assert_eq!(h.caps("CapAmb"), 0);
}

#[test]
fn handler_as_nobody_inherits_what_it_is_told_to() {
    if !require_root("privilege dropping") {
        return;
    }
    let env = TestEnv::new();
    let public = Public::new();
    env.write("a", "a");
    for (inherit, amb) in [
        ("empty", 0),
        ("permitted", caps(&[DAC_READ_SEARCH])),
        ("clsync", caps(&[DAC_READ_SEARCH])),
    ] {
        let script = public.status_script(inherit);
        let mut d = rsyncdirect(
            &env,
            &script,
            &[
                "--sync-handler-uid".as_ref(),
                "nobody".as_ref(),
                "--sync-handler-gid".as_ref(),
                "65534".as_ref(),
                "--inherit-capabilities".as_ref(),
                inherit.as_ref(),
            ],
        );
        let h = public.wait_status(&mut d, inherit);
        // The handler is the daemon's user: nothing to switch.
        let kept = caps(&[DAC_READ_SEARCH]);
        Status::of(d.pid()).expect("daemon", 65534, kept, Some(kept), 1);
        h.expect(&format!("handler ({inherit})"), 65534, amb, Some(kept), 1);
        assert_eq!(h.caps("CapAmb"), amb, "{inherit}");
    }
    // --permit-new-privs: neither the daemon nor the handler has it.
    let script = public.status_script("nnp");
    let mut d = rsyncdirect(
        &env,
        &script,
        &[
            "--sync-handler-uid".as_ref(),
            "nobody".as_ref(),
            "--permit-new-privs".as_ref(),
        ],
    );
    let h = public.wait_status(&mut d, "nnp");
    assert_eq!(h.num("NoNewPrivs"), 0);
    assert_eq!(Status::of(d.pid()).num("NoNewPrivs"), 0);
}

#[test]
fn handler_as_nobody_cannot_write_a_root_only_destination_and_says_so() {
    if !require_root("privilege dropping") || !require_tool("rsync") {
        return;
    }
    let env = TestEnv::new();
    env.write("file", "data");
    fs::set_permissions(&env.dst, fs::Permissions::from_mode(0o700)).expect("chmod");
    let mut d = Daemon::start(
        &env,
        &[
            "-t0",
            "-w0",
            "-M",
            "rsyncdirect",
            "--sync-handler-uid",
            "nobody",
            "--inherit-capabilities",
            "permitted",
        ],
    );
    d.wait_for_log(T, "the handler ran as nobody (uid 65534");
    let log = d.log();
    assert!(log.contains("rsync exited with code"), "{log}");
    assert!(log.contains("see --sync-handler-uid"), "{log}");
    assert!(!env.dst_has("file"), "nothing was written");
}

#[test]
fn handler_user_is_the_daemons_too_so_rsync_reads_its_lists() {
    if !require_root("privilege dropping") || !require_tool("rsync") {
        return;
    }
    let env = TestEnv::new();
    env.write("f", "data");
    env.mkdir_p("d");
    env.write("d/g", "more");
    // The destination belongs to `daemon` (uid 1); the path to it is
    // root-only, so the handler needs the inherited CAP_DAC_READ_SEARCH.
    std::os::unix::fs::chown(&env.dst, Some(1), Some(1)).expect("chown");
    let mut d = Daemon::start(
        &env,
        &[
            "-t0",
            "-w0",
            "-M",
            "rsyncdirect",
            "--sync-handler-uid",
            "daemon",
            "--inherit-capabilities",
            "permitted",
        ],
    );
    d.wait_for_log(T, "synced 1 path");
    assert_eq!(
        env.dst_read("d/g").as_deref(),
        Some(&b"more"[..]),
        "{}",
        d.log()
    );
    let s = Status::of(d.pid());
    assert_eq!((s.id("Uid"), s.id("Gid")), (1, 1));
    let m = fs::metadata(env.dst_path("f")).expect("stat");
    assert_eq!(m.uid(), 1, "written by the handler's user");
}

#[test]
fn secure_splitting_confines_the_daemon_and_it_still_does_everything() {
    if !require_root("privilege dropping") {
        return;
    }
    let env = TestEnv::new();
    let public = Public::new();
    // The handler appends one line per run and dumps its status.
    let runs = public.out.join("runs");
    let script = public.dir.join("split.sh");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\ncat /proc/self/status > '{0}.tmp' && mv -f '{0}.tmp' '{0}'\necho run >> '{1}'\n",
            public.out.join("split").display(),
            runs.display()
        ),
    )
    .expect("write script");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod");
    env.write("a", "a");
    let run = env.root.join("run");
    fs::create_dir(&run).expect("mkdir");
    fs::set_permissions(&run, fs::Permissions::from_mode(0o700)).expect("chmod");
    let (sock, status) = (run.join("sock"), run.join("status"));
    let mut d = rsyncdirect(
        &env,
        &script,
        &[
            "--secure-splitting".as_ref(),
            "--socket".as_ref(),
            sock.as_os_str(),
            "--status-file".as_ref(),
            status.as_os_str(),
            "--dump-dir".as_ref(),
            run.as_os_str(),
        ],
    );
    // The real argv rsyncdirect builds passes the check.
    let h = public.wait_status(&mut d, "split");
    let daemon = caps(&[DAC_READ_SEARCH, DAC_OVERRIDE]);
    Status::of(d.pid()).expect_seccomp("daemon", 65534, daemon, Some(daemon), 1, 2);
    let helper = helper_of(d.pid()).expect("a helper process");
    let hk = caps(&WRITER) | caps(&[DAC_READ_SEARCH, KILL]);
    Status::of(helper).expect("helper", 0, hk, Some(hk), 0);
    h.expect("handler", 0, hk, Some(hk), 1);
    // Under the filter: events, reload, the control socket, dumps.
    env.write("b", "b");
    d.wait_until(T, "a second handler run", || lines(&runs).len() >= 2);
    d.signal(Signal::SIGHUP);
    d.wait_for_log(T, "reloaded");
    d.wait_until(T, "the run after the reload", || lines(&runs).len() >= 3);
    let mut ctl = std::process::Command::new(BIN);
    ctl.arg("ctl").arg(&sock).arg("status");
    let r = run_command(ctl, T);
    assert_eq!(r.code, Some(0), "ctl status: {}", r.stderr);
    assert!(r.stdout.contains("running"), "{}", r.stdout);
    d.signal(Signal::SIGIO);
    d.wait_until(T, "a dump file", || {
        fs::read_dir(&run)
            .map(|rd| {
                rd.flatten()
                    .any(|e| e.file_name().to_string_lossy().ends_with(".dump"))
            })
            .unwrap_or(false)
    });
    assert!(!d.log().contains("Operation not permitted"), "{}", d.log());
    // Stopping the daemon ends the helper too.
    let st = d.stop();
    assert!(st.is_some_and(|s| s.success()), "{st:?}: {}", d.log());
    wait_until(T, "the helper to exit", || !alive(helper));
    assert!(!sock.exists() && !status.exists());
}

/// The mirror's fidelity options work where it really writes: as nobody
/// with the writer capabilities, and in the root helper under
/// `--secure-splitting`: xattrs, ACLs, a root-owned read-only file's
/// attributes, hard links.
#[test]
fn mirror_copies_xattrs_acls_and_hard_links_with_dropped_privileges_and_in_the_helper() {
    if !require_root("privilege dropping") {
        return;
    }
    // owner rw, user 12345 r, group r, mask r, other r (setfacl's format).
    let mut acl = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (1u16, 6u16, u32::MAX),
        (2, 4, 12345),
        (4, 4, u32::MAX),
        (0x10, 4, u32::MAX),
        (0x20, 4, u32::MAX),
    ] {
        acl.extend_from_slice(&tag.to_le_bytes());
        acl.extend_from_slice(&perm.to_le_bytes());
        acl.extend_from_slice(&id.to_le_bytes());
    }
    for split in ["--splitting=off", "--secure-splitting"] {
        let env = TestEnv::new();
        env.write("f", "f");
        env.write("ro", "read-only");
        fs::hard_link(env.src_path("f"), env.src_path("g")).expect("link");
        fs::set_permissions(env.src_path("ro"), fs::Permissions::from_mode(0o444)).expect("chmod");
        if !set_xattr(&env.src_path("f"), "user.x", Some(b"1"))
            || !set_xattr(&env.src_path("f"), "system.posix_acl_access", Some(&acl))
        {
            eprintln!("skipping: the temp dir's file system has no xattrs or ACLs");
            return;
        }
        assert!(set_xattr(&env.src_path("ro"), "user.ro", Some(b"2")));
        let mut d = Daemon::start(
            &env,
            &["-t0", "-w0", "-M", "mirror", split, "--xattrs", "--acls"],
        );
        d.wait_synced(&env, T);
        let ino = |rel: &str| fs::metadata(env.dst_path(rel)).expect("dst").ino();
        d.wait_until(T, "xattrs and the ACL at the destination", || {
            xattr(&env.dst_path("f"), "user.x").as_deref() == Some(b"1")
                && xattr(&env.dst_path("f"), "system.posix_acl_access").as_ref() == Some(&acl)
                && xattr(&env.dst_path("ro"), "user.ro").as_deref() == Some(b"2")
        });
        assert_eq!(ino("f"), ino("g"), "{split}: f and g are one file");
        assert!(
            !d.log().contains("Operation not permitted"),
            "{split}: {}",
            d.log()
        );
    }
}

#[test]
fn a_dead_helper_stops_the_daemon_with_an_error() {
    if !require_root("privilege dropping") {
        return;
    }
    let env = TestEnv::new();
    let mut d = rsyncdirect(
        &env,
        Path::new("/bin/true"),
        &["--splitting".as_ref(), "process".as_ref()],
    );
    d.wait_for_log(T, "synced 1 path");
    let helper = helper_of(d.pid()).expect("helper");
    let _ = kill(helper, Signal::SIGKILL);
    env.write("after", "x");
    let st = d.wait_exit(T);
    assert_eq!(st.code(), Some(1), "{}", d.log());
    assert!(
        d.log()
            .contains("the privileged helper (--splitting=process) is gone"),
        "{}",
        d.log()
    );
}

#[test]
fn under_splitting_a_stop_and_a_timeout_reach_the_handlers_through_the_helper() {
    if !require_root("privilege dropping") {
        return;
    }
    let env = TestEnv::new();
    let public = Public::new();
    let pids = public.out.join("pids");
    let script = public.dir.join("slow.sh");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\necho $$ >> '{}'\nexec sleep 1000\n",
            pids.display()
        ),
    )
    .expect("write script");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod");
    env.write("a", "a");
    // -k 3: the helper kills the handler's group after three seconds.
    let mut d = Daemon::start(
        &env,
        &[
            "-t0".as_ref(),
            "-w0".as_ref(),
            "-k".as_ref(),
            "3".as_ref(),
            "-M".as_ref(),
            "rsyncdirect".as_ref(),
            "-S".as_ref(),
            script.as_os_str(),
            "--splitting".as_ref(),
            "process".as_ref(),
        ],
    );
    d.wait_for_log(T, "(the sync timeout, -k)");
    let first: i32 = lines(&pids)[0].parse().expect("pid");
    wait_until(T, "the timed-out handler to be gone", || !alive(first));
    // The retry runs; SIGTERM now stops it through the helper.
    d.wait_until(T, "a second run", || lines(&pids).len() >= 2);
    let second: i32 = lines(&pids)[1].parse().expect("pid");
    assert!(alive(second));
    d.signal(Signal::SIGTERM);
    // Well before its own -k timeout: the stop went through the helper.
    wait_until(
        Duration::from_secs(2),
        "the running handler to be stopped",
        || !alive(second),
    );
    let _ = d.wait_exit(T);
}

#[test]
fn split_mirror_writes_from_the_helper_and_the_daemon_holds_no_writer_caps() {
    if !require_root("privilege dropping") {
        return;
    }
    let env = TestEnv::new();
    root_tree(&env);
    let rules = env.root.join("rules");
    fs::write(&rules, "").expect("rules");
    let mut d = Daemon::start(
        &env,
        &[
            "-t0".as_ref(),
            "-w0".as_ref(),
            "--secure-splitting".as_ref(),
            "-R".as_ref(),
            rules.as_os_str(),
        ],
    );
    d.wait_live(&env, T);
    let daemon = caps(&[DAC_READ_SEARCH]);
    Status::of(d.pid()).expect_seccomp("daemon", 65534, daemon, Some(daemon), 1, 2);
    let helper = helper_of(d.pid()).expect("helper");
    let hk = caps(&WRITER) | caps(&[DAC_READ_SEARCH, KILL]);
    Status::of(helper).expect("helper", 0, hk, Some(hk), 0);
    // Owners copied by the helper; events below the 0700 dir arrive.
    let m = fs::metadata(env.dst_path("top.txt")).expect("stat");
    assert_eq!((m.uid(), m.gid()), (1, 1));
    env.write("secret/deeper/new", "n");
    env.mkdir_p("moved");
    fs::rename(env.src_path("secret/deeper/key"), env.src_path("moved/key")).expect("mv");
    d.wait_synced(&env, T);
    // A reload hands the helper the new rules.
    fs::write(&rules, "-f\\.tmp$\n").expect("rules");
    d.signal(Signal::SIGHUP);
    d.wait_for_log(T, "reloaded");
    env.write("x.tmp", "t");
    env.write("y.txt", "y");
    d.wait_until(T, "y.txt synced", || env.dst_has("y.txt"));
    assert!(
        !env.dst_has("x.tmp"),
        "the helper's mirror uses the new rules"
    );
}

#[test]
fn helper_refuses_mirror_paths_outside_the_tree() {
    for bad in [&b"../etc"[..], b"/etc", b"a//b", b"a/./b", b"a\0b"] {
        let req = Request::Mirror {
            id: 1,
            ops: vec![livesync::batch::Op::Sync {
                path: bad.to_vec(),
                recursive: true,
            }],
        };
        let e = Request::decode(&req.encode()).expect_err("refused");
        assert!(e.contains("not a path inside the tree"), "{e}");
    }
    let ok = Request::Mirror {
        id: 2,
        ops: vec![
            livesync::batch::Op::Sync {
                path: Vec::new(),
                recursive: true,
            },
            livesync::batch::Op::Move {
                from: b"a b/c".to_vec(),
                to: b"--rsh=x".to_vec(),
            },
        ],
    };
    assert_eq!(Request::decode(&ok.encode()), Ok(ok));
}

/// The namespace `kind` of `pid` (`/proc/PID/ns/KIND` link).
fn ns(pid: &str, kind: &str) -> PathBuf {
    fs::read_link(format!("/proc/{pid}/ns/{kind}")).expect("read ns link")
}

#[test]
fn detach_and_forbid_devices_give_the_daemon_its_own_namespaces() {
    if !require_root("namespaces") {
        return;
    }
    let env = TestEnv::new();
    let mut d = rsyncdirect(
        &env,
        Path::new("/bin/true"),
        &[
            "--detach-ipc".as_ref(),
            "--detach-miscellanea".as_ref(),
            "--detach-network".as_ref(),
            "non-privileged".as_ref(),
            "--splitting".as_ref(),
            "process".as_ref(),
            "--forbid-devices".as_ref(),
        ],
    );
    d.wait_for_log(T, "synced 1 path");
    // --forbid-devices: the daemon's /dev holds only the harmless nodes.
    let dev: Vec<String> = fs::read_dir(format!("/proc/{}/root/dev", d.pid()))
        .expect("ls the daemon's /dev")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let allowed = [
        "null", "zero", "random", "urandom", "fd", "stdin", "stdout", "stderr", "log",
    ];
    assert!(dev.iter().all(|n| allowed.contains(&n.as_str())), "{dev:?}");
    assert!(dev.contains(&"null".to_string()), "{dev:?}");
    assert!(
        fs::read_dir("/dev").expect("ls /dev").count() > dev.len(),
        "ours is untouched"
    );
    let pid = d.pid().to_string();
    let helper = helper_of(d.pid()).expect("helper").to_string();
    for kind in ["ipc", "uts", "net"] {
        assert_ne!(ns(&pid, kind), ns("self", kind), "{kind}: daemon");
    }
    // IPC and UTS cover the helper (and so the handlers) too; the network
    // is taken from the daemon only.
    assert_eq!(ns(&helper, "ipc"), ns(&pid, "ipc"));
    assert_eq!(ns(&helper, "uts"), ns(&pid, "uts"));
    assert_eq!(ns(&helper, "net"), ns("self", "net"));
}

#[test]
fn helper_protocol_refuses_argv_the_templates_cannot_produce() {
    let t = tempfile::tempdir().expect("tempdir");
    let marker = t.path().join("pwned");
    let lists = std::env::temp_dir().join("livesync-lists-00112233445566aa");
    let mut pat = vec![split::Pat::Lit(b"/bin/true".to_vec())];
    pat.push(split::Pat::Lit(b"--include-from".to_vec()));
    pat.push(split::Pat::Parts(vec![split::Part::ListFile]));
    let (ours, theirs) = split::seqpacket_pair().expect("socketpair");
    let cfg = HelperConfig {
        checker: Checker {
            patterns: Some(vec![pat]),
            lists_dir: None,
            private_parent: std::env::temp_dir(),
        },
        setup: None,
        mirror: None,
        unison_state: None,
    };
    let server = std::thread::spawn(move || split::serve(theirs, cfg));
    let fd = ours.as_raw_fd();
    let ask = |id: u64, argv: Vec<OsString>| -> Reply {
        let req = Request::Run {
            id,
            argv,
            env: vec![("CLSYNC_STATUS".into(), "running".into())],
            timeout: Some(T),
            grace: Duration::from_millis(100),
            cwd: None,
        };
        split::send_packet(fd, &req.encode()).expect("send");
        let p = split::recv_packet(fd).expect("recv").expect("a reply");
        Reply::decode(&p).expect("decode")
    };
    let good: Vec<OsString> = vec![
        "/bin/true".into(),
        "--include-from".into(),
        lists.join("l.1.include").into(),
    ];
    assert_eq!(
        ask(1, good.clone()),
        Reply::Done {
            id: 1,
            outcome: Outcome::Exited(0)
        }
    );
    for (id, argv) in [
        (
            2,
            vec!["/usr/bin/touch".into(), marker.clone().into_os_string()],
        ),
        (
            3,
            vec![
                "/bin/true".into(),
                "--include-from".into(),
                "/etc/shadow".into(),
            ],
        ),
        (4, {
            let mut a = good.clone();
            a.insert(1, "--rsh=touch /tmp/x".into());
            a
        }),
    ] {
        match ask(id, argv) {
            Reply::Fail {
                id: got,
                kind,
                message,
            } => {
                assert_eq!((got, kind), (id, split::FAIL_REFUSED));
                assert!(message.contains("--check-execvp-arguments"), "{message}");
            }
            other => panic!("request {id} was not refused: {other:?}"),
        }
    }
    assert!(!marker.exists(), "a refused argv never runs");
    // An environment variable livesync does not set ends the helper.
    let bad = Request::Run {
        id: 5,
        argv: good,
        env: vec![("LD_PRELOAD".into(), "/x.so".into())],
        timeout: None,
        grace: Duration::ZERO,
        cwd: None,
    };
    split::send_packet(fd, &bad.encode()).expect("send");
    let r = server.join().expect("join");
    assert!(r.expect_err("bad request").contains("LD_PRELOAD"));
}

fn hostile_names() -> Vec<&'static str> {
    vec![
        "; rm -rf ~",
        "--rsh=touch PWNED-rsh",
        "-e touch PWNED-e",
        "$(touch PWNED-subst)",
        "`touch PWNED-tick`",
        "a\nb; touch PWNED-nl",
    ]
}

fn assert_not_pwned(dirs: &[&Path]) {
    for d in dirs {
        for e in fs::read_dir(d).expect("ls").flatten() {
            let name = e.file_name();
            let n = name.to_string_lossy();
            assert!(
                !n.starts_with("PWNED"),
                "{n} exists in {}: a name was executed",
                d.display()
            );
        }
    }
}

#[test]
fn hostile_names_are_plain_names_for_the_mirror_and_rsync() {
    if !require_root("privilege dropping") || !require_tool("rsync") {
        return;
    }
    let rsync = path_str(&which("rsync").expect("rsync"));
    // Direct mode with rsync as the program: the names are arguments of
    // the program itself (a name starting with `-` is passed as `./-…`).
    let direct: Vec<&str> = vec![
        "-S",
        &rsync,
        "--",
        "-aR",
        "%INCLUDE-LIST%",
        "%destination-dir%/",
    ];
    for (mode, split, extra) in [
        ("mirror", "--splitting=off", &[][..]),
        ("mirror", "--secure-splitting", &[]),
        ("rsyncdirect", "--splitting=off", &[]),
        ("rsyncdirect", "--secure-splitting", &[]),
        ("direct", "--splitting=off", &direct[..]),
        ("direct", "--secure-splitting", &direct[..]),
    ] {
        let env = TestEnv::new();
        let cwd = tempfile::tempdir().expect("tempdir");
        for n in hostile_names() {
            env.write(n, n);
        }
        let cwd_path = cwd.path().to_path_buf();
        let mut args = vec!["-t0", "-w0", "-M", mode, split];
        args.extend_from_slice(extra);
        let mut d = Daemon::builder(&env)
            .args(&args)
            .prepare(|c| {
                c.current_dir(&cwd_path);
            })
            .start();
        if mode == "direct" {
            // rsync in direct mode copies but never deletes (a sentinel's
            // removal would not arrive): the first sync is enough.
            d.wait_synced(&env, T);
        } else {
            d.wait_live(&env, T);
        }
        env.mkdir_p("sub");
        for n in hostile_names() {
            env.write(format!("sub/{n}"), "x");
        }
        d.wait_synced(&env, T);
        for n in hostile_names() {
            assert_eq!(
                env.dst_read(n).as_deref(),
                Some(n.as_bytes()),
                "{mode}: {n:?}"
            );
        }
        assert_not_pwned(&[cwd.path(), &env.src, &env.dst, &env.root, Path::new("/")]);
    }
}

#[test]
fn unsupported_hardening_options_are_refused_not_ignored() {
    let env = TestEnv::new();
    for opt in [
        &["--seccomp-filter"][..],
        &["--chroot", "/"],
        &["--pivot-root", "auto"],
        &["--detach-network", "sometimes"],
        &["--splitting", "thread"],
        &["--check-execvp-arguments"],
    ] {
        let mut args = vec![
            "-W".to_string(),
            path_str(&env.src),
            "-D".into(),
            path_str(&env.dst),
        ];
        args.extend(opt.iter().map(|s| s.to_string()));
        let r = run_livesync(&args, T);
        assert_eq!(r.code, Some(2), "{opt:?}: {}", r.stderr);
        let first = r.stderr.lines().next().unwrap_or_default();
        assert!(
            first.contains(
                opt[0]
                    .trim_start_matches('-')
                    .split('=')
                    .next()
                    .unwrap_or("")
            ),
            "{opt:?}: {first}"
        );
        assert_eq!(
            r.stderr.lines().count(),
            1,
            "{opt:?}: one line: {}",
            r.stderr
        );
    }
}

#[test]
fn control_files_in_a_root_only_dir_still_work_after_the_drop() {
    if !require_root("privilege dropping") {
        return;
    }
    let env = TestEnv::new();
    let public = Public::new();
    let script = public.status_script("files");
    env.write("a", "a");
    let run = env.root.join("run");
    fs::create_dir(&run).expect("mkdir");
    fs::set_permissions(&run, fs::Permissions::from_mode(0o700)).expect("chmod");
    let (pid, status) = (run.join("l.pid"), run.join("l.status"));
    let mut d = rsyncdirect(
        &env,
        &script,
        &[
            "--sync-handler-uid".as_ref(),
            "nobody".as_ref(),
            "-z".as_ref(),
            pid.as_os_str(),
            "--status-file".as_ref(),
            status.as_os_str(),
        ],
    );
    public.wait_status(&mut d, "files");
    d.wait_until(T, "status running", || read(&status) == "running\n");
    // nobody cannot write `run/`: CAP_DAC_OVERRIDE is kept for it, and
    // nothing else beyond reading the tree.
    let kept = caps(&[DAC_READ_SEARCH, DAC_OVERRIDE]);
    Status::of(d.pid()).expect("daemon", 65534, kept, Some(kept), 1);
    for f in [&pid, &status] {
        let m = fs::symlink_metadata(f).expect("stat");
        assert_eq!(m.mode() & 0o777, 0o600, "{}", f.display());
    }
    d.stop();
    assert!(!pid.exists(), "pid file removed at exit");
    assert!(!status.exists(), "status file removed at exit");
}

// ---- --check-execvp-arguments for every mode that runs a program ----

/// A handler script that appends its argv (`printf '%s\0' "$#" "$@"`) to
/// `out/NAME`, and the list file its third argument names (if it is one)
/// to `out/NAME.lists`. Returns the script and the record.
fn argv_recorder(public: &Public, name: &str) -> (PathBuf, PathBuf) {
    let p = public.dir.join(format!("{name}.sh"));
    let out = public.out.join(name);
    fs::write(
        &p,
        format!(
            "#!/bin/sh\nprintf '%s\\0' \"$#\" \"$@\" >> '{0}'\n\
             if [ -f \"$3\" ]; then cat \"$3\" >> '{0}.lists'; fi\nexit 0\n",
            out.display()
        ),
    )
    .expect("write script");
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod");
    (p, out)
}

/// The argvs `argv_recorder` wrote, each with `program` first.
fn recorded(out: &Path, program: &Path) -> Vec<Vec<OsString>> {
    use std::os::unix::ffi::OsStringExt;
    let b = fs::read(out).unwrap_or_default();
    let mut words = b.split(|&c| c == 0);
    let mut runs = Vec::new();
    while let Some(n) = words.next().filter(|w| !w.is_empty()) {
        let n: usize = String::from_utf8_lossy(n).parse().expect("count");
        let mut argv = vec![program.as_os_str().to_os_string()];
        for _ in 0..n {
            argv.push(OsString::from_vec(words.next().expect("arg").to_vec()));
        }
        runs.push(argv);
    }
    runs
}

/// The privileged helper's loop, served on a socketpair with the patterns
/// the livesync arguments `args` configure (the same `split::patterns` the
/// daemon's helper uses).
struct Served {
    sock: std::os::fd::OwnedFd,
    server: Option<std::thread::JoinHandle<Result<(), String>>>,
    next: u64,
}

impl Served {
    fn new(args: &[OsString]) -> Served {
        use clap::Parser;
        use livesync::config::{cli, Config};
        let mut v: Vec<OsString> = vec!["livesync".into(), "-H".into(), "/NULL/".into()];
        v.extend(args.iter().cloned());
        let cfg = Config::from_args_searching(cli::Args::try_parse_from(v).expect("clap"), &[])
            .expect("config");
        let checker = Checker {
            patterns: Some(split::patterns(&cfg).expect("patterns")),
            lists_dir: cfg.lists_dir.clone(),
            private_parent: std::env::temp_dir(),
        };
        let (ours, theirs) = split::seqpacket_pair().expect("socketpair");
        let cfg = HelperConfig {
            checker,
            setup: None,
            mirror: None,
            unison_state: None,
        };
        Served {
            sock: ours,
            server: Some(std::thread::spawn(move || split::serve(theirs, cfg))),
            next: 0,
        }
    }

    fn ask(&mut self, argv: &[OsString]) -> Reply {
        self.next += 1;
        let req = Request::Run {
            id: self.next,
            argv: argv.to_vec(),
            env: vec![("CLSYNC_STATUS".into(), "running".into())],
            timeout: Some(T),
            grace: Duration::from_millis(100),
            cwd: None,
        };
        let fd = self.sock.as_raw_fd();
        split::send_packet(fd, &req.encode()).expect("send");
        let p = split::recv_packet(fd).expect("recv").expect("a reply");
        Reply::decode(&p).expect("decode")
    }

    /// `argv` runs (and exits 0).
    fn runs(&mut self, argv: &[OsString]) {
        let r = self.ask(argv);
        assert!(
            matches!(
                r,
                Reply::Done {
                    outcome: Outcome::Exited(0),
                    ..
                }
            ),
            "{argv:?}: {r:?}"
        );
    }

    /// `argv` is refused by the check.
    fn refuses(&mut self, argv: &[OsString]) {
        match self.ask(argv) {
            Reply::Fail { kind, message, .. } => {
                assert_eq!(kind, split::FAIL_REFUSED, "{argv:?}: {message}");
                assert!(message.contains("--check-execvp-arguments"), "{message}");
            }
            other => panic!("{argv:?} was not refused: {other:?}"),
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        // EOF ends the helper's loop.
        // SAFETY: shutting down our own socket.
        unsafe { libc::shutdown(self.sock.as_raw_fd(), libc::SHUT_RDWR) };
        if let Some(s) = self.server.take() {
            let _ = s.join();
        }
    }
}

fn os_args(v: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<OsString> {
    v.iter().map(|a| a.as_ref().to_os_string()).collect()
}

/// `argv` with argument `i` replaced by `to`.
fn with(argv: &[OsString], i: usize, to: impl Into<OsString>) -> Vec<OsString> {
    let mut a = argv.to_vec();
    a[i] = to.into();
    a
}

#[test]
fn simple_runs_under_secure_splitting_and_the_helper_refuses_forged_argv() {
    if !require_root("privilege dropping") {
        return;
    }
    let env = TestEnv::new();
    let public = Public::new();
    let (script, out) = argv_recorder(&public, "simple");
    let marker = public.out.join("pwned");
    let args = os_args(&[&"-t0", &"-w0", &"-M", &"simple", &"-S", &script]);
    let mut d = Daemon::start(
        &env,
        &[args.clone(), vec!["--secure-splitting".into()]].concat(),
    );
    let src = env.src.clone().into_os_string();
    d.wait_until(T, "the initial sync's run", || {
        recorded(&out, &script).iter().any(|a| a[4] == src)
    });
    env.write("new file", "x");
    env.write("-e sh", "x");
    let named = |n: &str| env.src.join(n).into_os_string();
    d.wait_until(T, "a run per new file", || {
        let r = recorded(&out, &script);
        ["new file", "-e sh"]
            .iter()
            .all(|n| r.iter().any(|a| a[4] == named(n)))
    });
    assert!(!d.log().contains("refus"), "{}", d.log());
    let st = d.stop();
    assert!(st.is_some_and(|s| s.success()), "{st:?}: {}", d.log());

    let mut h = Served::new(&[os_args(&[&"-W", &env.src]), args].concat());
    let good = recorded(&out, &script)
        .into_iter()
        .find(|a| a[4] == named("new file"))
        .expect("a run");
    assert_eq!(good[1..3], [OsString::from("sync"), "nolabel".into()]);
    h.runs(&good);
    h.refuses(&with(&good, 4, "/etc/shadow"));
    h.refuses(&with(&good, 4, env.src.join("../x")));
    h.refuses(&with(&good, 3, "2;x"));
    h.refuses(&with(&good, 1, "-e"));
    h.refuses(&[good.clone(), vec!["--extra".into()]].concat());
    h.refuses(&os_args(&[&"/usr/bin/touch", &marker]));
    assert!(!marker.exists(), "a refused argv never runs");
}

#[test]
fn shell_runs_under_secure_splitting_and_the_helper_refuses_forged_argv() {
    if !require_root("privilege dropping") {
        return;
    }
    let env = TestEnv::new();
    let public = Public::new();
    let (script, out) = argv_recorder(&public, "shell");
    env.mkdir_p("sub");
    let args = os_args(&[
        &"-t0",
        &"-w0",
        &"-M",
        &"shell",
        &"-S",
        &script,
        &"--have-recursive-sync",
        &"-l",
        &"web",
    ]);
    let mut d = Daemon::start(
        &env,
        &[args.clone(), vec!["--secure-splitting".into()]].concat(),
    );
    let src = env.src.clone().into_os_string();
    // The initial sync hands the tree over whole.
    d.wait_until(T, "the initialsync run", || {
        recorded(&out, &script)
            .iter()
            .any(|a| a[1..] == [OsString::from("initialsync"), "web".into(), src.clone()])
    });
    env.write("sub/--rsh=touch x", "x");
    let lists = PathBuf::from(format!("{}.lists", out.display()));
    d.wait_until(T, "the synclist run with its list", || {
        fs::read(&lists).is_ok_and(|l| {
            l.windows(b" sub/--rsh=touch x\n".len())
                .any(|w| w == b" sub/--rsh=touch x\n")
        })
    });
    assert!(!d.log().contains("refus"), "{}", d.log());
    let st = d.stop();
    assert!(st.is_some_and(|s| s.success()), "{st:?}: {}", d.log());

    let mut h = Served::new(&[os_args(&[&"-W", &env.src]), args].concat());
    let runs = recorded(&out, &script);
    let list_run = runs
        .iter()
        .find(|a| a[1] == "synclist")
        .expect("a synclist run");
    let initial = runs
        .iter()
        .find(|a| a[1] == "initialsync")
        .expect("initialsync");
    h.runs(list_run);
    h.runs(initial);
    h.refuses(&with(list_run, 3, "/etc/shadow"));
    h.refuses(&with(list_run, 3, env.src.join("list")));
    h.refuses(&with(list_run, 2, "other"));
    h.refuses(&with(initial, 3, "/etc"));
    h.refuses(&with(initial, 1, "sync"));
    h.refuses(&[initial.clone(), vec!["-e".into(), "sh".into()]].concat());
}

/// A daemon started by hand (csync2 takes no -D, which `Daemon` always
/// passes); killed on drop.
struct Bare {
    child: std::process::Child,
    log: PathBuf,
    _lock: fs::File,
}

impl Bare {
    fn start(args: &[OsString], log: PathBuf) -> Bare {
        let lock = take_lock(libc::LOCK_SH);
        let f = fs::File::create(&log).expect("log");
        let child = std::process::Command::new(BIN)
            .arg("-H")
            .arg("/NULL/")
            .args(backend_args())
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(f.try_clone().expect("dup"))
            .stderr(f)
            .spawn()
            .expect("spawn livesync");
        Bare {
            child,
            log,
            _lock: lock,
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait(&mut self, what: &str, mut cond: impl FnMut() -> bool) {
        let end = std::time::Instant::now() + T;
        while !cond() {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("livesync exited ({st}) waiting for {what}: {}", self.log());
            }
            assert!(
                std::time::Instant::now() < end,
                "timed out waiting for {what}: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) -> bool {
        let _ = kill(self.child.id() as i32, Signal::SIGTERM);
        let mut ok = false;
        wait_until(T, "livesync to stop", || match self.child.try_wait() {
            Ok(Some(st)) => {
                ok = st.success();
                true
            }
            _ => false,
        });
        ok
    }
}

impl Drop for Bare {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn csync2_runs_under_secure_splitting_and_the_helper_refuses_forged_argv() {
    if !require_root("privilege dropping") {
        return;
    }
    // The recorder stands in for csync2 (a real cluster needs a peer; see
    // tests/csync2.rs): what is checked is the argv livesync builds.
    let env = TestEnv::new();
    let public = Public::new();
    let (script, out) = argv_recorder(&public, "csync2");
    let args = os_args(&[
        &"-W", &env.src, &"-t0", &"-w0", &"-M", &"csync2", &"-S", &script, &"--", &"-N", &"%label%",
    ]);
    let mut d = Bare::start(
        &[vec!["--secure-splitting".into()], args.clone()].concat(),
        env.root.join("log"),
    );
    let src = env.src.clone().into_os_string();
    let s = |x: &str| OsString::from(x);
    d.wait("the initial check and update", || {
        let r = recorded(&out, &script);
        r.iter().any(|a| a[3..] == [s("-c"), s("-r"), src.clone()])
            && r.iter().any(|a| a[3..] == [s("-u")])
    });
    env.write("new", "x");
    let new = env.src.join("new").into_os_string();
    d.wait("the -m run for the new file", || {
        recorded(&out, &script)
            .iter()
            .any(|a| a[3..] == [s("-m"), new.clone()])
    });
    assert!(!d.log().contains("refus"), "{}", d.log());
    assert!(d.stop(), "{}", d.log());

    let mut h = Served::new(&args);
    let runs = recorded(&out, &script);
    let mark = runs.iter().find(|a| a[3] == "-m").expect("a -m run");
    assert_eq!(mark[1..3], [s("-N"), s("nolabel")]);
    h.runs(mark);
    h.refuses(&with(mark, 4, "/etc"));
    h.refuses(&with(mark, 3, "-x"));
    h.refuses(&with(mark, 2, "other"));
    h.refuses(&os_args(&[&script, &"-N", &"nolabel", &"-u", &"/etc"]));
    h.refuses(&os_args(&[&"csync2", &"-N", &"nolabel", &"-u"]));
}

#[test]
fn unison_runs_under_splitting_and_under_the_check() {
    if !require_root("privilege dropping") || !require_tool("unison") {
        return;
    }
    // Under --splitting=process the helper passes unison its private
    // state dir (UNISON) and nothing else; under the check (here through
    // --secure-splitting) that dir is the helper's own.
    for extra in ["--splitting=process", "--secure-splitting"] {
        let env = TestEnv::new();
        env.write("a b", "x");
        env.mkdir_p("d");
        env.write("d/-x", "y");
        let mut d = Daemon::start(&env, &["-t0", "-w0", "-M", "unison", extra]);
        d.wait_synced(&env, T);
        env.write("d/later", "z");
        d.wait_synced(&env, T);
        let st = d.stop();
        assert!(
            st.is_some_and(|s| s.success()),
            "{extra}: {st:?}: {}",
            d.log()
        );
    }
}

#[test]
fn the_helper_names_its_own_unison_state_dir_whatever_the_daemon_sends() {
    let t = tempfile::tempdir().expect("tempdir");
    let out = t.path().join("seen");
    let own = t.path().join("livesync-unison-helper");
    fs::create_dir(&own).expect("mkdir");
    let (ours, theirs) = split::seqpacket_pair().expect("socketpair");
    let cfg = HelperConfig {
        checker: Checker {
            patterns: None,
            lists_dir: None,
            private_parent: std::env::temp_dir(),
        },
        setup: None,
        mirror: None,
        unison_state: Some(own.clone()),
    };
    let server = std::thread::spawn(move || split::serve(theirs, cfg));
    // What a daemon would send: a state dir of its own making.
    let daemons = std::env::temp_dir().join("livesync-unison-0123456789abcdef");
    let req = Request::Run {
        id: 1,
        argv: vec![
            "/bin/sh".into(),
            "-c".into(),
            r#"printf %s "$UNISON" > "$0""#.into(),
            out.clone().into_os_string(),
        ],
        env: vec![("UNISON".into(), daemons.into_os_string())],
        timeout: Some(T),
        grace: Duration::from_millis(100),
        cwd: None,
    };
    let fd = ours.as_raw_fd();
    split::send_packet(fd, &req.encode()).expect("send");
    let p = split::recv_packet(fd).expect("recv").expect("a reply");
    assert_eq!(
        Reply::decode(&p).expect("decode"),
        Reply::Done {
            id: 1,
            outcome: Outcome::Exited(0)
        }
    );
    assert_eq!(fs::read_to_string(&out).expect("seen"), path_str(&own));
    drop(ours);
    server.join().expect("join").expect("served");
}
