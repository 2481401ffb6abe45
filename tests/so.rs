//! clsync's `so` and `rsyncso` modes against a real shared object.
//!
//! Each test builds tests/data/so/recorder.c with `cc -shared -fPIC` against
//! the headers of Debian's libclsync-dev into its own temp dir, runs the real
//! `livesync` binary with `-M so`/`-M rsyncso -S recorder.so` on a live tree,
//! and reads what the handler recorded (every call, its entries, its list
//! files). The refusal tests check each of clsync's rules on the object with
//! the exact one-line error and exit code 2. The layout test compiles a probe
//! against the same headers and compares every offset livesync relies on.
//!
//! Needs `cc` and /usr/include/clsync (package libclsync-dev): skipped when
//! missing, failed under CI=true.

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

const RECORDER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/so/recorder.c");
const HEADER: &str = "/usr/include/clsync/ctx.h";

/// cc and the clsync headers are here (or, under CI, a failure).
fn prerequisites() -> bool {
    if !require_tool("cc") {
        return false;
    }
    if Path::new(HEADER).exists() {
        return true;
    }
    if in_ci() {
        panic!("{HEADER} is missing (CI=true: refusing to skip); apt-get install libclsync-dev");
    }
    eprintln!("SKIPPED: {HEADER} is missing; apt-get install libclsync-dev");
    false
}

/// Compiles C `source` (a file) into `dir/name` as a shared object.
fn cc_shared(source: &Path, dir: &Path, name: &str, defines: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let st = Command::new("cc")
        .args(["-shared", "-fPIC", "-Wall", "-o"])
        .arg(&out)
        .args(defines)
        .arg(source)
        .status()
        .expect("run cc");
    assert!(st.success(), "cc failed for {}", source.display());
    out
}

/// The recorder built with `defines`, mode 0755, owned by us.
fn recorder(env: &TestEnv, name: &str, defines: &[&str]) -> PathBuf {
    let so = cc_shared(Path::new(RECORDER), &env.root, name, defines);
    fs::set_permissions(&so, fs::Permissions::from_mode(0o755)).expect("chmod");
    so
}

fn record_path(env: &TestEnv) -> PathBuf {
    env.root.join("record")
}

/// Starts livesync with the recorder's environment.
fn start(env: &TestEnv, args: &[&str], extra_env: &[(&str, &str)]) -> Daemon {
    let mut b = Daemon::builder(env)
        .args(args)
        .env("LIVESYNC_SO_RECORD", record_path(env));
    for (k, v) in extra_env {
        b = b.env(k, v);
    }
    b.start()
}

fn has_line(env: &TestEnv, line: &str) -> Option<String> {
    let lines = lines(&record_path(env));
    if lines.iter().any(|l| l == line) {
        None
    } else {
        Some(format!(
            "no record line {line:?}; record so far:\n{}",
            lines.join("\n")
        ))
    }
}

/// The watch dir's own entry in the initial sync.
const ROOT_ENTRY: &str = "ev path= len=0 mask=0x40000100 flags=0 old=0 new=3";

fn s(p: &Path) -> String {
    path_str(p)
}

#[test]
fn ctx_and_eventinfo_layouts_match_the_clsync_headers() {
    if !prerequisites() {
        return;
    }
    let env = TestEnv::new();
    let mut c = String::from(
        "#include <stddef.h>\n#include <stdint.h>\n#include <stdio.h>\n#include <pthread.h>\n\
         #include <signal.h>\n#include <time.h>\n#include <sys/types.h>\n\
         #include <clsync/configuration.h>\n#include <clsync/clsync.h>\n#include <clsync/ctx.h>\n\
         int main(void) {\n",
    );
    let ctx = livesync::handler::so::ctx_layout();
    let ei = livesync::handler::so::eventinfo_layout();
    for (ty, fields) in [("struct ctx", &ctx), ("api_eventinfo_t", &ei)] {
        for (f, _) in fields.iter() {
            let expr = if *f == "sizeof" {
                format!("sizeof({ty})")
            } else {
                format!("offsetof({ty}, {f})")
            };
            c.push_str(&format!("printf(\"{ty} {f} %zu\\n\", {expr});\n"));
        }
    }
    c.push_str("return 0;\n}\n");
    let src = env.root.join("probe.c");
    fs::write(&src, c).unwrap();
    let exe = env.root.join("probe");
    let st = Command::new("cc")
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .status()
        .unwrap();
    assert!(st.success(), "the probe did not compile");
    let out = Command::new(&exe).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let mut want = Vec::new();
    for (ty, fields) in [("struct ctx", &ctx), ("api_eventinfo_t", &ei)] {
        for (f, off) in fields.iter() {
            want.push(format!("{ty} {f} {off}"));
        }
    }
    let got: Vec<String> = text.lines().map(str::to_string).collect();
    assert_eq!(got, want, "C (left) and Rust (right) layouts differ");
}

#[test]
fn so_mode_gets_one_call_per_batch_with_masks_flags_and_types() {
    if !prerequisites() {
        return;
    }
    let env = TestEnv::new();
    env.write("keep.txt", "k");
    let so = recorder(&env, "recorder.so", &[]);
    let mut d = start(
        &env,
        &["-M", "so", "-S", &s(&so), "-t0", "-w0", "-l", "lab"],
        &[],
    );
    let (src, dst) = (s(&env.src), s(&env.dst));
    let init = format!(
        "init api=2 mode=7 debug=0 threading=0 label=lab watch={src} dest={dst} \
         watchslash={src}/ destslash={dst}/ watchlen={} destlen={} lists=(null)",
        src.len(),
        dst.len()
    );
    d.wait_until(secs(10.0), "init recorded", || has_line(&env, &init));
    // The initial sync: the watch dir itself (the empty path) and, as
    // clsync lists them without --have-recursive-sync, what is in it.
    d.wait_until(secs(10.0), "initial sync", || {
        has_line(
            &env,
            "ev path=keep.txt len=8 mask=0x100 flags=0 old=1 new=2",
        )
    });
    let first = lines(&record_path(&env));
    assert_eq!(
        first[1..4],
        [
            "sync n=2 iteration=0",
            ROOT_ENTRY,
            "ev path=keep.txt len=8 mask=0x100 flags=0 old=1 new=2"
        ],
        "{first:?}"
    );

    env.write("new file", "n");
    d.wait_until(secs(10.0), "a new file", || {
        has_line(
            &env,
            "ev path=new file len=8 mask=0x108 flags=0 old=0 new=2",
        )
    });
    env.mkdir_p("sub");
    d.wait_until(secs(10.0), "a new directory", || {
        has_line(
            &env,
            "ev path=sub len=3 mask=0x40000100 flags=0 old=0 new=3",
        )
    });
    // A populated directory moved in from outside: it and its contents.
    fs::create_dir(env.outside.join("pack")).unwrap();
    fs::write(env.outside.join("pack/inner.txt"), "i").unwrap();
    fs::rename(env.outside.join("pack"), env.src_path("pack")).unwrap();
    d.wait_until(secs(10.0), "a directory moved in, listed", || {
        has_line(
            &env,
            "ev path=pack len=4 mask=0x40000100 flags=0 old=0 new=3",
        )
        .or_else(|| {
            has_line(
                &env,
                "ev path=pack/inner.txt len=14 mask=0x100 flags=0 old=1 new=2",
            )
        })
    });
    fs::remove_file(env.src_path("new file")).unwrap();
    d.wait_until(secs(10.0), "a deleted file", || {
        has_line(
            &env,
            "ev path=new file len=8 mask=0x200 flags=0 old=0 new=1",
        )
    });
    fs::rename(env.src_path("keep.txt"), env.src_path("sub/moved.txt")).unwrap();
    d.wait_until(secs(10.0), "both ends of a rename", || {
        has_line(&env, "ev path=keep.txt len=8 mask=0x40 flags=0 old=2 new=1").or_else(|| {
            has_line(
                &env,
                "ev path=sub/moved.txt len=13 mask=0x80 flags=0 old=0 new=2",
            )
        })
    });
    // Every call's n matches the entries that follow it.
    let rec = lines(&record_path(&env));
    let (mut i, mut calls) = (1, 0);
    while i < rec.len() {
        let (n, iteration) = rec[i]
            .strip_prefix("sync n=")
            .and_then(|r| r.split_once(" iteration="))
            .unwrap_or_else(|| panic!("line {i} is not a sync call: {rec:?}"));
        let n: usize = n.parse().unwrap();
        // Each call is the next iteration.
        assert_eq!(iteration, calls.to_string(), "{rec:?}");
        calls += 1;
        assert!(n >= 1);
        for k in 1..=n {
            assert!(rec[i + k].starts_with("ev "), "{rec:?}");
        }
        i += n + 1;
    }
    let st = d.stop().expect("clean stop");
    assert!(st.success(), "{st}");
    let rec = lines(&record_path(&env));
    assert_eq!(rec.last().map(String::as_str), Some("deinit"), "{rec:?}");
    assert_eq!(rec.iter().filter(|l| *l == "deinit").count(), 1);
}

#[test]
fn rsyncso_mode_hands_over_private_0600_list_files_and_removes_them() {
    if !prerequisites() {
        return;
    }
    let env = TestEnv::new();
    env.write("x.tmp", "excluded by the rules");
    env.mkdir_p("d");
    env.write("d/kept", "k");
    let rules = env.root.join("rules");
    fs::write(&rules, "-f\\.tmp$\n").unwrap();
    let so = recorder(&env, "recorder.so", &[]);
    let mut d = start(
        &env,
        &[
            "-M",
            "rsyncso",
            "-S",
            &s(&so),
            "-R",
            &s(&rules),
            "-t0",
            "-w0",
        ],
        &[],
    );
    d.wait_until(secs(10.0), "initial rsync call", || {
        has_line(&env, "inc /***")
    });
    let rec = lines(&record_path(&env));
    let init = &rec[0];
    assert!(init.starts_with("init api=2 mode=6 "), "{init}");
    let lists_dir = init.rsplit_once(" lists=").unwrap().1.to_string();
    assert!(
        Path::new(&lists_dir).starts_with(std::env::temp_dir()),
        "{lists_dir}"
    );
    let call = rec.iter().find(|l| l.starts_with("rsync ")).unwrap();
    let (inc, rest) = call
        .strip_prefix("rsync inc=")
        .unwrap()
        .split_once(" exc=")
        .unwrap();
    let (exc, modes) = rest.split_once(' ').unwrap();
    assert_eq!(modes, "incmode=600 dirmode=700", "{call}");
    assert!(inc.starts_with(&format!("{lists_dir}/")), "{call}");
    assert!(exc.starts_with(&format!("{lists_dir}/")), "{call}");
    assert!(rec.iter().any(|l| l == "exc /x.tmp"), "{rec:?}");
    d.wait_until(secs(5.0), "list files removed after the call", || {
        !Path::new(inc).exists() && !Path::new(exc).exists()
    });

    env.write("a b.txt", "new");
    d.wait_until(secs(10.0), "the new file's include lines", || {
        has_line(&env, "inc /a b.txt").or_else(|| has_line(&env, "inc /a b.txt/***"))
    });
    let st = d.stop().expect("clean stop");
    assert!(st.success(), "{st}");
    assert_eq!(
        lines(&record_path(&env)).last().map(String::as_str),
        Some("deinit")
    );
    assert!(
        !Path::new(&lists_dir).exists(),
        "private list dir {lists_dir} left behind"
    );
}

#[test]
fn rsyncso_keeps_lists_in_the_given_dir_with_keep_lists() {
    if !prerequisites() {
        return;
    }
    let env = TestEnv::new();
    env.write("f", "f");
    let lists_dir = env.root.join("lists");
    fs::create_dir(&lists_dir).unwrap();
    let so = recorder(&env, "recorder.so", &[]);
    let mut d = start(
        &env,
        &[
            "-M",
            "rsyncso",
            "-S",
            &s(&so),
            "-L",
            &s(&lists_dir),
            "-U",
            "-t0",
            "-w0",
        ],
        &[],
    );
    d.wait_until(secs(10.0), "initial rsync call", || {
        has_line(&env, "inc /***")
    });
    d.stop();
    let rec = lines(&record_path(&env));
    assert!(
        rec[0].ends_with(&format!(" lists={}", s(&lists_dir))),
        "{rec:?}"
    );
    let call = rec.iter().find(|l| l.starts_with("rsync ")).unwrap();
    let inc = call
        .strip_prefix("rsync inc=")
        .unwrap()
        .split_once(' ')
        .unwrap()
        .0;
    let m = fs::metadata(inc).expect("kept include list");
    assert_eq!(m.mode() & 0o777, 0o600);
    assert_eq!(fs::read_to_string(inc).unwrap(), "/***\n");
}

#[test]
fn a_failing_sync_is_retried_until_it_delivers() {
    if !prerequisites() {
        return;
    }
    let env = TestEnv::new();
    let so = recorder(&env, "recorder.so", &[]);
    let mut d = start(
        &env,
        &["-M", "so", "-S", &s(&so), "-t0", "-w0"],
        &[("LIVESYNC_SO_FAIL_TIMES", "2")],
    );
    d.wait_until(secs(15.0), "the initial sync after two failures", || {
        has_line(&env, ROOT_ENTRY)
    });
    let rec = lines(&record_path(&env));
    assert_eq!(
        rec[1..4],
        ["fail rc=5", "fail rc=5", "sync n=1 iteration=0"],
        "{rec:?}"
    );
    assert!(
        d.log().contains("clsyncapi_sync returned 5; retrying"),
        "{}",
        d.log()
    );
    // Still live afterwards.
    env.write("later", "l");
    d.wait_until(secs(10.0), "a later change", || {
        has_line(&env, "ev path=later len=5 mask=0x108 flags=0 old=0 new=2")
    });
}

#[test]
fn a_reload_deinits_the_old_handler_before_the_new_init() {
    if !prerequisites() {
        return;
    }
    let env = TestEnv::new();
    let so = recorder(&env, "recorder.so", &[]);
    let mut d = start(&env, &["-M", "so", "-S", &s(&so), "-t0", "-w0"], &[]);
    d.wait_until(secs(10.0), "initial sync", || {
        has_line(&env, "sync n=1 iteration=0")
    });
    d.signal(Signal::SIGHUP);
    d.wait_until(secs(10.0), "a second init after the reload", || {
        let rec = lines(&record_path(&env));
        (rec.iter().filter(|l| l.starts_with("init ")).count() == 2
            && rec.iter().filter(|l| l.starts_with("sync ")).count() >= 2)
            .then_some(())
            .map_or(Some(format!("{rec:?}")), |_| None)
    });
    let rec = lines(&record_path(&env));
    let kinds: Vec<&str> = rec
        .iter()
        .map(|l| l.split(' ').next().unwrap())
        .filter(|k| *k != "ev")
        .collect();
    assert_eq!(
        kinds[..5],
        ["init", "sync", "deinit", "init", "sync"],
        "{rec:?}"
    );
    d.stop();
    assert_eq!(
        lines(&record_path(&env)).last().map(String::as_str),
        Some("deinit")
    );
}

// ---------------------------------------------------------------------------
// Refusals: each is one line and exit code 2, and nothing is synced.
// ---------------------------------------------------------------------------

/// Runs livesync with `mode` and `so` and returns (code, stderr).
fn refused(env: &TestEnv, mode: &str, so: &Path) -> (Option<i32>, String) {
    let run = run_livesync(
        &[
            "-W",
            &s(&env.src),
            "-D",
            &s(&env.dst),
            "-M",
            mode,
            "-S",
            &s(so),
        ],
        secs(20.0),
    );
    (run.code, run.stderr)
}

/// A config-time refusal: stderr is exactly `livesync: error: MSG`.
fn assert_config_refusal(env: &TestEnv, mode: &str, so: &Path, msg: &str) {
    let (code, stderr) = refused(env, mode, so);
    assert_eq!(stderr, format!("livesync: error: {msg}\n"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(!record_path(env).exists(), "the handler was loaded");
}

/// A load-time refusal: exactly one error line, whose message is `msg`.
fn assert_load_refusal(env: &TestEnv, mode: &str, so: &Path, msg: impl Fn(&str) -> bool) {
    let (code, stderr) = refused(env, mode, so);
    let errors: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.split_once(" ERROR: ").map(|(_, m)| m))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(msg(errors[0]), "unexpected error line: {}", errors[0]);
    assert_eq!(code, Some(2), "{stderr}");
}

/// The refusal of an object with `mode`.
fn mode_refusal(so: &Path, mode: u32) -> String {
    format!(
        "sync handler {} has mode {mode:04o}; group/other write, setuid, setgid and sticky \
         bits are refused: chmod go-w,ug-s,o-t it",
        s(so)
    )
}

#[test]
fn refuses_a_group_or_other_writable_object() {
    if !prerequisites() {
        return;
    }
    let env = TestEnv::new();
    let so = recorder(&env, "h.so", &[]);
    for mode in [0o775, 0o757] {
        fs::set_permissions(&so, fs::Permissions::from_mode(mode)).unwrap();
        assert_config_refusal(&env, "so", &so, &mode_refusal(&so, mode));
    }
}

#[test]
fn refuses_setuid_setgid_and_sticky_objects() {
    if !prerequisites() {
        return;
    }
    let env = TestEnv::new();
    let so = recorder(&env, "h.so", &[]);
    for mode in [0o4755, 0o2755, 0o1755] {
        fs::set_permissions(&so, fs::Permissions::from_mode(mode)).unwrap();
        assert_eq!(fs::metadata(&so).unwrap().mode() & 0o7777, mode);
        assert_config_refusal(&env, "rsyncso", &so, &mode_refusal(&so, mode));
    }
}

#[test]
fn refuses_an_object_owned_by_someone_else() {
    if !prerequisites() || !require_root("chown the object to nobody") {
        return;
    }
    let env = TestEnv::new();
    let so = recorder(&env, "h.so", &[]);
    std::os::unix::fs::chown(&so, Some(65534), None).unwrap();
    assert_config_refusal(
        &env,
        "so",
        &so,
        &format!(
            "sync handler {} belongs to uid 65534; it must belong to root or to the user running \
             livesync (uid 0): chown it",
            s(&so)
        ),
    );
}

#[test]
fn refuses_what_is_not_a_regular_file_and_a_missing_s() {
    if !prerequisites() {
        return;
    }
    let env = TestEnv::new();
    let dir = env.root.join("dir.so");
    fs::create_dir(&dir).unwrap();
    assert_config_refusal(
        &env,
        "so",
        &dir,
        &format!(
            "sync handler {} is not a regular file; -S must name a shared object (.so)",
            s(&dir)
        ),
    );
    let run = run_livesync(
        &["-W", &s(&env.src), "-D", &s(&env.dst), "-M", "so"],
        secs(20.0),
    );
    assert_eq!(
        run.stderr,
        "livesync: error: -M so and -M rsyncso need -S /path/to/handler.so (the shared object to load)\n"
    );
    assert_eq!(run.code, Some(2));
}

#[test]
fn refuses_a_handler_built_for_another_api_version() {
    if !prerequisites() {
        return;
    }
    let env = TestEnv::new();
    let so = recorder(&env, "v3.so", &["-DWANT_API=3"]);
    let record = record_path(&env);
    let mut cmd = Command::new(BIN);
    cmd.args(["-H", "/NULL/", "-W"])
        .arg(&env.src)
        .arg("-D")
        .arg(&env.dst)
        .args(["-M", "so", "-S"])
        .arg(&so)
        .env("LIVESYNC_SO_RECORD", &record);
    let run = run_command(cmd, secs(20.0));
    let want = format!(
        "sync handler {}: clsyncapi_init returned 22 (Invalid argument); the handler refused to \
         start (built for another CLSYNC_API_VERSION than 2, or unhappy with the options; see \
         its own messages)",
        s(&so)
    );
    let errors: Vec<&str> = run
        .stderr
        .lines()
        .filter_map(|l| l.split_once(" ERROR: ").map(|(_, m)| m))
        .collect();
    assert_eq!(errors, [want.as_str()], "{}", run.stderr);
    assert_eq!(run.code, Some(2));
    // It asked livesync for the version (2) and refused; nothing was synced.
    let rec = lines(&record);
    assert_eq!(rec.len(), 1, "{rec:?}");
    assert!(rec[0].starts_with("init api=2 mode=7 "), "{rec:?}");
    assert_eq!(fs::read_dir(&env.dst).unwrap().count(), 0);
}

#[test]
fn refuses_an_object_without_the_mode_s_function() {
    if !prerequisites() {
        return;
    }
    let env = TestEnv::new();
    let no_sync = recorder(&env, "no-sync.so", &["-DNO_SYNC"]);
    assert_load_refusal(&env, "so", &no_sync, |m| {
        m == format!(
            "sync handler {} has no function clsyncapi_sync, which -M so calls; define int \
             clsyncapi_sync(int n, api_eventinfo_t *ei) in it",
            s(&no_sync)
        )
    });
    let no_rsync = recorder(&env, "no-rsync.so", &["-DNO_RSYNC"]);
    assert_load_refusal(&env, "rsyncso", &no_rsync, |m| {
        m == format!(
            "sync handler {} has no function clsyncapi_rsync, which -M rsyncso calls; define \
             int clsyncapi_rsync(const char *inclist, const char *exclist) in it",
            s(&no_rsync)
        )
    });
    // Each mode needs only its own function.
    let mut d = start(
        &env,
        &["-M", "rsyncso", "-S", &s(&no_sync), "-t0", "-w0"],
        &[],
    );
    d.wait_until(secs(10.0), "rsyncso works without clsyncapi_sync", || {
        has_line(&env, "inc /***")
    });
}

#[test]
fn refuses_an_object_that_needs_an_unknown_symbol() {
    if !prerequisites() {
        return;
    }
    let env = TestEnv::new();
    let src = env.root.join("undef.c");
    fs::write(
        &src,
        "extern int no_such_function_anywhere(void);\n\
         int clsyncapi_sync(int n, void *ei) { (void)n; (void)ei; return no_such_function_anywhere(); }\n",
    )
    .unwrap();
    let so = cc_shared(&src, &env.root, "undef.so", &[]);
    assert_load_refusal(&env, "so", &so, |m| {
        m.starts_with(&format!("sync handler {} cannot be loaded: ", s(&so)))
            && m.contains("undefined symbol: no_such_function_anywhere")
            && m.ends_with("; build it with cc -shared -fPIC and link what it needs")
    });
}

#[test]
fn a_handler_runs_programs_through_clsyncapi_fork() {
    if !prerequisites() {
        return;
    }
    let env = TestEnv::new();
    let so = recorder(&env, "recorder.so", &[]);
    let marker = env.outside.join("touched");
    // Started as root the daemon (and so what the object forks) runs as
    // nobody, who cannot write the 0700 test dirs: -u 0 keeps root.
    let mut d = start(
        &env,
        &["-M", "so", "-S", &s(&so), "-t0", "-w0", "-u", "0"],
        &[("LIVESYNC_SO_TOUCH", &s(&marker))],
    );
    d.wait_until(secs(10.0), "the forked touch", || {
        has_line(&env, "touched status=0")
    });
    assert!(marker.exists());
}

#[test]
fn a_relative_s_is_taken_from_the_current_dir() {
    if !prerequisites() {
        return;
    }
    let env = TestEnv::new();
    let so = recorder(&env, "rel.so", &[]);
    fs::set_permissions(&so, fs::Permissions::from_mode(0o775)).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.current_dir(&env.root)
        .args(["-H", "/NULL/", "-W"])
        .arg(&env.src)
        .arg("-D")
        .arg(&env.dst)
        .args(["-M", "so", "-S", "rel.so"]);
    let run = run_command(cmd, secs(20.0));
    assert_eq!(
        run.stderr,
        format!(
            "livesync: error: sync handler {} has mode 0775; group/other write, setuid, setgid \
             and sticky bits are refused: chmod go-w,ug-s,o-t it\n",
            s(&so)
        )
    );
    assert_eq!(run.code, Some(2));
}
