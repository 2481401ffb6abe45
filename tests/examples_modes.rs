//! The command-mode examples under examples/ run as documented:
//! authorized_keys (direct mode, `cp --parents`, clsync's rules),
//! make-on-change (`make` per batch of `*.c` changes), fanout (simple- and
//! direct-mode handlers, with recording stand-ins for pdcp, pdsh and uftp
//! that copy into one directory per host) and dry-run (`-S echo`).

mod common;
#[path = "common/modes.rs"]
mod modes;

use common::{assert_stays, require_tool, secs, tree_diff, Daemon, Signal, BIN};
use modes::put;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn example(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(rel)
}

/// Starts an example's command (its script execs livesync) as a daemon.
fn start(mut cmd: Command) -> Daemon {
    cmd.env("LIVESYNC", BIN);
    Daemon::command(cmd).start()
}

fn run_to_end(mut cmd: Command) -> std::process::Output {
    cmd.env("LIVESYNC", BIN)
        .stdin(Stdio::null())
        .output()
        .expect("run the example")
}

fn files_below(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            } else {
                out.push(
                    p.strip_prefix(root)
                        .expect("below")
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    out.sort();
    out
}

#[test]
fn authorized_keys_copies_only_the_key_files() {
    let t = tempfile::tempdir().unwrap();
    let (master, homes) = (t.path().join("master"), t.path().join("homes"));
    fs::create_dir_all(&homes).unwrap();
    put(
        &master,
        b"alice/.ssh/authorized_keys",
        b"ssh-ed25519 A alice\n",
    );
    put(&master, b"bob/.ssh/authorized_keys", b"ssh-ed25519 B bob\n");
    put(&master, b"bob/.ssh/id_ed25519", b"PRIVATE");
    put(&master, b"bob/notes.txt", b"not synced");
    let script = example("authorized_keys/run.sh");

    let mut once = Command::new(&script);
    once.arg(&master)
        .arg(&homes)
        .args(["-H", "/NULL/", "--only-initialsync"]);
    let out = run_to_end(once);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        files_below(&homes),
        ["alice/.ssh/authorized_keys", "bob/.ssh/authorized_keys"]
    );
    assert_eq!(
        fs::read(homes.join("alice/.ssh/authorized_keys")).unwrap(),
        b"ssh-ed25519 A alice\n"
    );

    // Live: a changed key and a key added to an existing .ssh arrive,
    // other files do not.
    put(&master, b"dave/.ssh/known_hosts", b"not synced");
    let mut live = Command::new(&script);
    live.arg(&master)
        .arg(&homes)
        .args(["-H", "/NULL/", "-t0.2", "-w0"]);
    let mut r = start(live);
    r.wait_for_log(secs(20.0), "initial sync done");
    put(
        &master,
        b"dave/.ssh/authorized_keys",
        b"ssh-ed25519 D dave\n",
    );
    put(&master, b"bob/.ssh/known_hosts", b"not synced");
    put(
        &master,
        b"alice/.ssh/authorized_keys",
        b"ssh-ed25519 A2 alice\n",
    );
    let key = |user: &str| fs::read(homes.join(user).join(".ssh/authorized_keys")).ok();
    r.wait_until(secs(20.0), "the new and the changed key", || {
        key("dave") == Some(b"ssh-ed25519 D dave\n".to_vec())
            && key("alice") == Some(b"ssh-ed25519 A2 alice\n".to_vec())
    });
    // The rules watch only the users' .ssh directories (as in clsync): a
    // new user is found by the next full sync, here SIGUSR2.
    put(
        &master,
        b"carol/.ssh/authorized_keys",
        b"ssh-ed25519 C carol\n",
    );
    // run.sh execs livesync: the signal reaches it.
    r.signal(Signal::SIGUSR2);
    r.wait_until(secs(20.0), "the new user's key after SIGUSR2", || {
        key("carol") == Some(b"ssh-ed25519 C carol\n".to_vec())
    });
    assert_eq!(
        files_below(&homes),
        [
            "alice/.ssh/authorized_keys",
            "bob/.ssh/authorized_keys",
            "carol/.ssh/authorized_keys",
            "dave/.ssh/authorized_keys"
        ]
    );
}

#[test]
fn make_runs_once_per_batch_of_c_changes() {
    if !require_tool("make") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let proj = t.path().join("proj");
    fs::create_dir(&proj).unwrap();
    for f in ["Makefile", "main.c"] {
        fs::copy(example("make-on-change").join(f), proj.join(f)).unwrap();
    }
    let builds = || {
        fs::read_to_string(proj.join("build.log"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    let mut cmd = Command::new(example("make-on-change/run.sh"));
    cmd.arg(&proj).args(["-H", "/NULL/"]).env("DELAY", "0.3");
    let mut r = start(cmd);
    r.wait_until(secs(20.0), "the first build", || builds() == 1);
    assert_eq!(
        fs::read(proj.join("out.txt")).unwrap(),
        fs::read(proj.join("main.c")).unwrap()
    );
    // Files that are not C sources start no build.
    fs::write(proj.join("README"), "notes").unwrap();
    assert_stays(secs(1.5), "no build for a non-C file", || builds() == 1);
    fs::write(proj.join("main.c"), "int main(void) { return 1; }\n").unwrap();
    r.wait_until(secs(20.0), "a build for the changed source", || {
        builds() == 2
    });
    assert_eq!(
        fs::read(proj.join("out.txt")).unwrap(),
        b"int main(void) { return 1; }\n"
    );
}

/// Stand-ins for pdcp, pdsh and uftp: each copies (or removes) into
/// `ROOT/<host>/<absolute destination>` for every host it is given, and
/// records its argv in `ROOT/calls`.
fn stand_ins(root: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let common = format!(
        r#"#!/usr/bin/python3
import os, shutil, sys
ROOT = {root:?}.encode()
args = [os.fsencode(a) for a in sys.argv[1:]]
with open(os.path.join(ROOT, b"calls"), "ab") as f:
    f.write(b"\0".join([os.fsencode(os.path.basename(sys.argv[0]))] + args) + b"\n")
def at(host, dest):
    return os.path.join(ROOT, host, dest.lstrip(b"/"))
def copy(src, dst):
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if os.path.isdir(src) and not os.path.islink(src):
        os.makedirs(dst, exist_ok=True)
        shutil.copystat(src, dst)
    else:
        shutil.copy2(src, dst, follow_symlinks=False)
"#,
        root = root.to_str().expect("utf-8 temp dir")
    );
    let pdcp = format!(
        "{common}\n\
         assert args[0] == b'-w' and args[2] == b'-p'\n\
         for h in args[1].split(b','):\n    copy(args[3], at(h, args[4]))\n"
    );
    let pdsh = format!(
        "{common}\n\
         assert args[0] == b'-w' and args[4] == b'--'\n\
         for h in args[1].split(b','):\n    for p in args[5:]:\n        t = at(h, p)\n        \
         if args[2] == b'mkdir': os.makedirs(t, exist_ok=True)\n        \
         elif os.path.isdir(t) and not os.path.islink(t): shutil.rmtree(t)\n        \
         elif os.path.lexists(t): os.remove(t)\n"
    );
    let uftp = format!(
        "{common}\n\
         assert args[0] == b'-H' and args[2] == b'--'\n\
         dest = os.fsencode(os.environ['FANOUT_DEST'])\n\
         for h in args[1].split(b','):\n    for p in args[3:]:\n        copy(p, at(h, os.path.join(dest, p)))\n"
    );
    let mut out = Vec::new();
    for (name, body) in [("pdcp", pdcp), ("pdsh", pdsh), ("uftp", uftp)] {
        let p = root.join(name);
        fs::write(&p, body).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        out.push(p);
    }
    (out[0].clone(), out[1].clone(), out[2].clone())
}

fn fanout(mode: &str, handler: &str, handler_args: &[&str]) {
    if !require_tool("python3") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let root = t.path().canonicalize().unwrap();
    let src = root.join("src");
    put(&src, b"etc/app.conf", b"v1");
    put(&src, b"etc/old.conf", b"old");
    put(&src, b"a b/c*d", b"odd name");
    let (pdcp, pdsh, uftp) = stand_ins(&root);
    let mut cmd = Command::new(BIN);
    cmd.args(["-H", "/NULL/", "-M", mode, "-t0.2", "-w0", "-S"])
        .arg(example(handler))
        .arg("-W")
        .arg(&src)
        .arg("--")
        .args(handler_args)
        .env("FANOUT_HOSTS", "n1,n2")
        .env("FANOUT_DEST", "/srv/conf")
        .env("FANOUT_PDCP", &pdcp)
        .env("FANOUT_PDSH", &pdsh)
        .env("FANOUT_UFTP", &uftp);
    let mut r = start(cmd);
    let hosts = [root.join("n1/srv/conf"), root.join("n2/srv/conf")];
    let mut synced = |what: &str| {
        r.wait_until(secs(20.0), what, || {
            hosts
                .iter()
                .map(|h| tree_diff(&src, h))
                .find(Option::is_some)
                .flatten()
        });
    };
    synced("the initial sync on every host");
    put(&src, b"etc/app.conf", b"v2");
    put(&src, b"new dir/x", b"new");
    fs::remove_file(src.join("etc/old.conf")).unwrap();
    synced("changes and a delete on every host");
    fs::remove_dir_all(src.join("a b")).unwrap();
    synced("a removed directory on every host");
}

#[test]
fn fanout_simple_mode_with_pdcp_and_pdsh() {
    fanout("simple", "fanout/fanout-simple.py", &[]);
}

#[test]
fn fanout_direct_mode_with_uftp_and_pdsh() {
    fanout("direct", "fanout/fanout-direct.py", &["%INCLUDE-LIST%"]);
}

#[test]
fn dry_run_prints_what_would_run() {
    let t = tempfile::tempdir().unwrap();
    let (src, dst) = (t.path().join("src"), t.path().join("dst"));
    put(&src, b"a file", b"x");
    let lists = t.path().join("lists");
    fs::create_dir(&lists).unwrap();
    let script = example("dry-run/run.sh");

    let mut cmd = Command::new(&script);
    cmd.arg("rsyncdirect")
        .arg(&src)
        .arg(&dst)
        .args(["-H", "/NULL/", "--only-initialsync", "-L"])
        .arg(&lists);
    let out = run_to_end(cmd);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().next().unwrap_or_default();
    assert!(line.starts_with("-aH --delete "), "{stdout}");
    assert!(
        line.ends_with(&format!("{}/ {}/", src.display(), dst.display())),
        "{stdout}"
    );
    // Nothing was copied; the printed include list was kept (-U).
    assert!(!dst.join("a file").exists());
    let words: Vec<&str> = line.split(' ').collect();
    let inc = words
        .iter()
        .position(|w| *w == "--include-from")
        .map(|i| words[i + 1])
        .expect("--include-from");
    assert_eq!(fs::read(inc).unwrap(), b"/***\n");

    let mut cmd = Command::new(&script);
    cmd.arg("direct")
        .arg(&src)
        .args(["-H", "/NULL/", "--only-initialsync"]);
    let out = run_to_end(cmd);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), ". a file\n");
}
