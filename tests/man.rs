//! The man pages and shell completions stay in step with the CLI.
//!
//! `man/livesync.1` and `completions/{livesync.bash,_livesync,livesync.fish}`
//! are generated from the clap definition (`livesync::ctl::command_for_docs`:
//! the daemon's options plus the client subcommands) and committed; these
//! tests regenerate them and fail when the committed files differ. After
//! changing an option, rewrite them with
//!
//! ```sh
//! LIVESYNC_BLESS=1 cargo test --test man
//! ```
//!
//! The hand-written pages `man/livesync.conf.5` and `man/livesync-rules.5`
//! are checked for coverage: every long option is a config key in
//! livesync.conf.5, every rule type is in livesync-rules.5. Every page must
//! also render without warnings (groff).

mod common;

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn bless() -> bool {
    std::env::var_os("LIVESYNC_BLESS").is_some_and(|v| v != "0" && !v.is_empty())
}

/// Compares `want` with the committed file `rel` (or writes it when blessing).
fn check_generated(rel: &str, want: &[u8]) {
    let path = root().join(rel);
    if bless() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, want).unwrap();
        return;
    }
    let have = std::fs::read(&path).unwrap_or_default();
    assert!(
        have == want,
        "{rel} is out of date with the clap definition; regenerate it with\n    LIVESYNC_BLESS=1 cargo test --test man\nand commit the result"
    );
}

fn man_page() -> Vec<u8> {
    let mut out = Vec::new();
    clap_mangen::Man::new(livesync::ctl::command_for_docs())
        .date("")
        .render(&mut out)
        .unwrap();
    out
}

#[test]
fn livesync_1_matches_the_cli() {
    check_generated("man/livesync.1", &man_page());
}

/// One page per client subcommand (`livesync-status.1`, …), which the main
/// page refers to.
#[test]
fn subcommand_pages_match_the_cli() {
    let cmd = livesync::ctl::command_for_docs();
    let mut names = Vec::new();
    for sub in cmd.get_subcommands() {
        let name = format!("livesync-{}", sub.get_name());
        let mut out = Vec::new();
        clap_mangen::Man::new(
            sub.clone()
                .name(name.clone().leak() as &str)
                .bin_name(format!("livesync {}", sub.get_name()).leak() as &str),
        )
        .date("")
        .render(&mut out)
        .unwrap();
        check_generated(&format!("man/{name}.1"), &out);
        names.push(format!("{name}.1"));
    }
    names.sort();
    let mut have: Vec<String> = std::fs::read_dir(root().join("man"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("livesync-") && n.ends_with(".1"))
        .collect();
    have.sort();
    assert_eq!(
        have, names,
        "man/ holds a page for a subcommand that is gone, or lacks one"
    );
}

#[test]
fn completions_match_the_cli() {
    use clap_complete::Shell;
    for (shell, file) in [
        (Shell::Bash, "completions/livesync.bash"),
        (Shell::Zsh, "completions/_livesync"),
        (Shell::Fish, "completions/livesync.fish"),
    ] {
        let mut cmd = livesync::ctl::command_for_docs();
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut cmd, "livesync", &mut out);
        check_generated(file, &out);
    }
}

#[test]
fn the_man_page_documents_options_subcommands_and_exit_codes() {
    let page = String::from_utf8(man_page()).unwrap();
    for want in [
        "watch\\-dir",
        "metrics\\-file",
        "status",
        "metrics",
        "Exit codes",
    ] {
        assert!(page.contains(want), "livesync.1 lacks {want}");
    }
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The long option names of the daemon (config keys are the same words).
fn long_options() -> Vec<String> {
    use clap::CommandFactory;
    livesync::config::cli::Args::command()
        .get_arguments()
        .filter_map(|a| a.get_long().map(str::to_string))
        .collect()
}

#[test]
fn livesync_conf_5_has_every_option() {
    // roff escapes a minus as `\-`; compare on the unescaped text.
    let page = read("man/livesync.conf.5").replace("\\-", "-");
    let mut missing = Vec::new();
    for long in long_options() {
        if !page.contains(&format!("\n.B {long}\n")) && !page.contains(&format!("\n.BR {long} ")) {
            missing.push(long);
        }
    }
    assert!(
        missing.is_empty(),
        "man/livesync.conf.5 does not document (as `.B KEY` lines): {missing:?}"
    );
}

#[test]
fn livesync_rules_5_has_every_rule_type() {
    let page = read("man/livesync-rules.5").replace("\\-", "-");
    for t in ["f", "d", "w", "m", "s", "W", "*"] {
        assert!(
            page.contains(&format!("\n.TP\n.B {t}\n")),
            "man/livesync-rules.5 does not document rule type {t}"
        );
    }
    for sample in [
        "webroot.rules",
        "pwdb.rules",
        "authorized_keys.rules",
        "lxc.rules",
    ] {
        assert!(page.contains(sample), "livesync-rules.5 lacks {sample}");
    }
}

fn groff_warnings(page: &Path) -> String {
    let out = std::process::Command::new("groff")
        .args(["-k", "-man", "-Tutf8", "-ww", "-z"])
        .arg(page)
        .output()
        .expect("run groff");
    assert!(out.status.success(), "groff failed on {}", page.display());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn every_page_renders_without_warnings() {
    if !common::require_tool("groff") {
        return;
    }
    let pages = std::fs::read_dir(root().join("man")).unwrap();
    for p in pages {
        let p = p.unwrap().path();
        let w = groff_warnings(&p);
        let p = p.display();
        assert!(w.is_empty(), "{p}: groff warns:\n{w}");
    }
}
