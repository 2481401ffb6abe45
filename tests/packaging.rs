//! packaging/ and the Debian metadata in Cargo.toml, checked with the real
//! tools: the .deb is built with cargo-deb (from the test's own binary, no
//! release build) and inspected with `dpkg-deb -c/-I`; the systemd units go
//! through `systemd-analyze verify`; the FreeBSD rc.d script through
//! `sh -n`; the logrotate snippet through `logrotate -d`; the RPM spec
//! through `rpmspec -P`, and its Version must be Cargo.toml's.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn out(cmd: &mut Command) -> (bool, String, String) {
    let o = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn deb_package_holds_everything_it_should() {
    if !require_tool("cargo-deb") || !require_tool("dpkg-deb") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    // cargo-deb packs target/release/livesync; hand it the binary this test
    // run built, in a target dir of its own, so no release build is needed.
    let target = t.path().join("target");
    std::fs::create_dir_all(target.join("release")).unwrap();
    std::fs::copy(BIN, target.join("release/livesync")).unwrap();
    let debs = t.path().join("debs");
    let (ok, so, se) = out(Command::new("cargo")
        .args(["deb", "--no-build", "--strip", "--fast", "--offline", "-o"])
        .arg(&debs)
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(root()));
    assert!(ok, "cargo deb failed:\n{so}\n{se}");
    let deb = debs.join(format!(
        "livesync_{}-1_{}.deb",
        env!("CARGO_PKG_VERSION"),
        deb_arch()
    ));
    assert!(deb.exists(), "no {} in {so}", deb.display());

    let (ok, list, se) = out(Command::new("dpkg-deb").arg("-c").arg(&deb));
    assert!(ok, "{se}");
    let files: Vec<&str> = list
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    let mut want: Vec<String> = [
        "./usr/bin/livesync",
        "./usr/share/man/man1/livesync.1.gz",
        "./usr/share/man/man1/livesync-status.1.gz",
        "./usr/share/man/man5/livesync.conf.5.gz",
        "./usr/share/man/man5/livesync-rules.5.gz",
        "./usr/share/bash-completion/completions/livesync",
        "./usr/share/zsh/vendor-completions/_livesync",
        "./usr/share/fish/vendor_completions.d/livesync.fish",
        "./usr/lib/systemd/system/livesync.service",
        "./usr/lib/systemd/system/livesync@.service",
        "./etc/logrotate.d/livesync",
        "./usr/share/doc/livesync/README.md",
        "./usr/share/doc/livesync/copyright",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Every rules sample and every example's README ship.
    for e in std::fs::read_dir(root().join("rules")).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        want.push(format!("./usr/share/livesync/rules/{name}"));
    }
    for e in std::fs::read_dir(root().join("examples")).unwrap() {
        let e = e.unwrap();
        if e.path().join("README.md").exists() {
            let name = e.file_name().to_string_lossy().into_owned();
            want.push(format!(
                "./usr/share/doc/livesync/examples/{name}/README.md"
            ));
        }
    }
    for w in &want {
        assert!(files.contains(&w.as_str()), "the .deb lacks {w}:\n{list}");
    }
    let bin = list
        .lines()
        .find(|l| l.ends_with("./usr/bin/livesync"))
        .unwrap();
    assert!(
        bin.starts_with("-rwxr-xr-x root/root") || bin.starts_with("-rwxr-xr-x 0/0"),
        "{bin}"
    );

    let (ok, info, se) = out(Command::new("dpkg-deb").arg("-I").arg(&deb));
    assert!(ok, "{se}");
    for w in [
        "Package: livesync",
        &format!("Version: {}-1", env!("CARGO_PKG_VERSION")),
        "Depends: libc6",
        "Recommends: rsync",
        "Section: utils",
        "conffiles",
        "postinst",
    ] {
        assert!(info.contains(w), "control lacks {w:?}:\n{info}");
    }
    let ctl = t.path().join("control");
    let (ok, _, se) = out(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&ctl));
    assert!(ok, "{se}");
    assert_eq!(
        read(&ctl.join("conffiles")).trim(),
        "/etc/logrotate.d/livesync"
    );
    assert!(read(&ctl.join("postinst")).contains("daemon-reload"));

    // The packaged binary runs.
    let x = t.path().join("x");
    let (ok, _, se) = out(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&x));
    assert!(ok, "{se}");
    let (ok, v, se) = out(Command::new(x.join("usr/bin/livesync")).arg("--version"));
    assert!(ok, "{se}");
    assert_eq!(v.trim(), format!("livesync {}", env!("CARGO_PKG_VERSION")));
}

fn deb_arch() -> String {
    let (ok, a, _) = out(Command::new("dpkg").arg("--print-architecture"));
    assert!(ok);
    a.trim().to_string()
}

/// A copy of the unit files in `dir` with ExecStart pointing at the test's
/// binary (verify checks that the program exists).
fn units_in(dir: &Path) {
    for name in ["livesync.service", "livesync@.service"] {
        let text = read(&root().join("packaging/systemd").join(name));
        assert!(text.contains("/usr/bin/livesync "), "{name}");
        std::fs::write(
            dir.join(name),
            text.replace("/usr/bin/livesync ", &format!("{BIN} ")),
        )
        .unwrap();
    }
}

#[test]
fn systemd_units_verify_and_fit_the_daemon() {
    for name in ["livesync.service", "livesync@.service"] {
        let text = read(&root().join("packaging/systemd").join(name));
        for w in [
            "Type=notify",
            "NotifyAccess=main",
            "WatchdogSec=",
            "ExecReload=/bin/kill -HUP $MAINPID",
            "KillMode=mixed",
            "NoNewPrivileges=yes",
            "RuntimeDirectory=livesync",
        ] {
            assert!(text.contains(w), "{name} lacks {w}");
        }
        let exec = text.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
        assert!(
            !exec.contains(" -b") && !exec.contains("--background"),
            "{exec}"
        );
    }
    let inst = read(&root().join("packaging/systemd/livesync@.service"));
    assert!(inst.contains("ExecStart=/usr/bin/livesync -H /etc/livesync/%i.conf "));
    if !require_tool("systemd-analyze") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    units_in(t.path());
    for unit in ["livesync.service", "livesync@web.service"] {
        let (ok, so, se) = out(Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(format!("./{unit}"))
            .current_dir(t.path()));
        assert!(
            ok && se.trim().is_empty(),
            "{unit}: systemd-analyze verify:\n{so}{se}"
        );
    }
    // The check can fail: a misspelled directive is reported.
    std::fs::write(
        t.path().join("livesync.service"),
        read(&t.path().join("livesync.service")).replace("NoNewPrivileges", "NoNewPrivilegez"),
    )
    .unwrap();
    let (_, _, se) = out(Command::new("systemd-analyze")
        .args(["verify", "--man=no", "./livesync.service"])
        .current_dir(t.path()));
    assert!(se.contains("NoNewPrivilegez"), "{se}");
}

#[test]
fn unit_exec_start_parses_with_the_real_cli() {
    // The ExecStart options exist: run them with --help appended.
    let inst = read(&root().join("packaging/systemd/livesync@.service"));
    let exec = inst
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart=/usr/bin/livesync "))
        .unwrap()
        .replace("%i", "web");
    let r = run_command(
        {
            let mut c = Command::new(BIN);
            c.args(exec.split_whitespace()).arg("--help");
            c
        },
        secs(10.0),
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
}

#[test]
fn freebsd_rc_script_is_valid_sh() {
    let p = root().join("packaging/freebsd/livesync");
    let text = read(&p);
    for w in [
        "# PROVIDE: livesync",
        ". /etc/rc.subr",
        "run_rc_command \"$1\"",
        "sig_reload=\"HUP\"",
    ] {
        assert!(text.contains(w), "rc.d script lacks {w}");
    }
    let (ok, _, se) = out(Command::new("sh").arg("-n").arg(&p));
    assert!(ok, "sh -n: {se}");
    // ... and sh -n does catch a broken script.
    let t = tempfile::tempdir().unwrap();
    let bad = t.path().join("bad");
    std::fs::write(&bad, text.replace("run_rc_command", "if run_rc_command")).unwrap();
    assert!(!out(Command::new("sh").arg("-n").arg(&bad)).0);
}

#[test]
fn logrotate_snippet_parses() {
    if !require_tool("logrotate") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let logs = t.path().join("log");
    std::fs::create_dir_all(logs.join("livesync")).unwrap();
    std::fs::write(logs.join("livesync/web.log"), "line\n").unwrap();
    let conf = t.path().join("livesync");
    let text = read(&root().join("packaging/logrotate/livesync"));
    std::fs::write(&conf, text.replace("/var/log", &path_str(&logs))).unwrap();
    let (ok, so, se) = out(Command::new("logrotate")
        .arg("-d")
        .arg("-s")
        .arg(t.path().join("state"))
        .arg(&conf));
    let all = format!("{so}{se}");
    assert!(ok, "{all}");
    assert!(!all.contains("error"), "{all}");
    assert!(all.contains("Handling 1 logs"), "{all}");
    assert!(all.contains("web.log"), "{all}");
}

#[test]
fn rpm_spec_parses_and_matches_the_crate() {
    let spec = root().join("packaging/rpm/livesync.spec");
    let text = read(&spec);
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("Version:"))
        .map(str::trim)
        .unwrap();
    assert_eq!(version, env!("CARGO_PKG_VERSION"), "spec Version");
    // Every file the spec installs exists in the tree.
    for line in text.lines().filter(|l| l.starts_with("install -")) {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words[1] == "-d" {
            continue;
        }
        for src in &words[2..words.len() - 1] {
            // Built by %build, not part of the source tree.
            if src.starts_with("target/") {
                continue;
            }
            let n = if src.contains('*') {
                let dir = root().join(Path::new(src).parent().unwrap());
                let ext = src.rsplit('.').next().unwrap();
                std::fs::read_dir(dir)
                    .unwrap()
                    .filter(|e| {
                        e.as_ref()
                            .unwrap()
                            .file_name()
                            .to_string_lossy()
                            .ends_with(ext)
                    })
                    .count()
            } else {
                usize::from(root().join(src).exists())
            };
            assert!(n > 0, "spec installs {src}, which is not in the tree");
        }
    }
    if !require_tool("rpmspec") {
        return;
    }
    let (ok, so, se) = out(Command::new("rpmspec").arg("-P").arg(&spec));
    assert!(ok, "rpmspec -P: {se}");
    assert!(so.contains("Name:           livesync"), "{so}");
}
