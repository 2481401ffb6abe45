//! The man pages and shell completions stay in step with the CLI.
//!
//! `man/livesync.1` and `completions/{livesync.bash,_livesync,livesync.fish}`
//! are generated from the clap definition (`livesync::ctl::command_for_docs`:
//! the daemon's options plus the client subcommands) and committed; these
//! tests regenerate them and fail when the committed files differ. The man
//! page also gets its EXIT STATUS section from the exit codes in the code
//! (`livesync::exit::CODES`) and the hand-written sections (SIGNALS,
//! ENVIRONMENT, FILES, SEE ALSO) from `man/livesync.1.sections`, so editing
//! that file needs a regeneration too. After changing an option, rewrite
//! them with
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

/// Escapes text for roff: minus signs, backslashes, and a leading dot or
/// quote (which would start a request).
fn roff_text(s: &str) -> String {
    let s = s.replace('\\', "\\e").replace('-', "\\-");
    match s.chars().next() {
        Some('.') | Some('\'') => format!("\\&{s}"),
        _ => s,
    }
}

/// The EXIT STATUS section, from the daemon's exit codes and the client
/// subcommands' own three.
fn exit_status_section() -> String {
    use livesync::ctl::{EXIT_ERROR_REPLY, EXIT_NO_CONNECTION, EXIT_OK};
    let mut s = String::from(".SH \"EXIT STATUS\"\n");
    for (code, meaning) in livesync::exit::CODES {
        s.push_str(&format!(".TP\n.B {code}\n{}\n", roff_text(meaning)));
    }
    s.push_str(&format!(
        ".PP\nThe client subcommands exit {EXIT_OK} when the daemon answered, \
         {EXIT_ERROR_REPLY} when it answered with an error, and {EXIT_NO_CONNECTION} \
         when it could not be reached or their command line is wrong.\n"
    ));
    s
}

/// The end of a client subcommand's page: its exit codes, and where the
/// daemon is described.
fn client_page_tail() -> String {
    use livesync::ctl::{EXIT_ERROR_REPLY, EXIT_NO_CONNECTION, EXIT_OK};
    format!(
        ".SH \"EXIT STATUS\"\n\
         .TP\n.B {EXIT_OK}\nThe daemon answered.\n\
         .TP\n.B {EXIT_ERROR_REPLY}\nThe daemon answered with an error.\n\
         .TP\n.B {EXIT_NO_CONNECTION}\nThe daemon could not be reached or gave no usable \
         reply, or the command line is wrong.\n\
         .SH \"SEE ALSO\"\n.BR livesync (1),\n.BR livesync.conf (5)\n"
    )
}

/// livesync(1): clap's NAME, SYNOPSIS, DESCRIPTION, OPTIONS and client
/// subcommands, the examples of `--help`, EXIT STATUS from the code, the
/// hand-written sections, and the version.
fn man_page() -> Vec<u8> {
    let examples = livesync::config::cli::EXAMPLES
        .split_once('\n')
        .map_or("", |(_, rest)| rest);
    let cmd = livesync::ctl::command_for_docs()
        .subcommand_help_heading("CLIENT SUBCOMMANDS")
        .after_long_help(examples);
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd)
        .date("")
        .render(&mut page)
        .unwrap();
    // clap_mangen calls the after-help section EXTRA and ends with VERSION:
    // name the one EXAMPLES and put ours before the other.
    let page = String::from_utf8(page).unwrap();
    let (head, version) = page
        .split_once(".SH VERSION\n")
        .expect("clap_mangen's page ends with .SH VERSION");
    // The examples are laid out by line: no filling.
    let head = head.replacen(".SH EXTRA\n", ".SH EXAMPLES\n.nf\n", 1);
    assert!(
        head.contains(".SH EXAMPLES\n"),
        "no EXTRA section to rename"
    );
    let mut out = head;
    out.push_str(".fi\n");
    out.push_str(&exit_status_section());
    out.push_str(&read("man/livesync.1.sections"));
    out.push_str(".SH VERSION\n");
    out.push_str(version);
    out.into_bytes()
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
        out.extend_from_slice(client_page_tail().as_bytes());
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
        ".SH \"CLIENT SUBCOMMANDS\"",
        "livesync\\-status(1)",
        "livesync\\-ctl(1)",
        ".SH EXAMPLES",
        ".SH \"EXIT STATUS\"",
        ".SH SIGNALS",
        ".SH ENVIRONMENT",
        ".SH FILES",
        ".SH \"SEE ALSO\"",
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
        // Only pages: man/livesync.1.sections is part of livesync.1.
        if !p.extension().is_some_and(|e| e == "1" || e == "5") {
            continue;
        }
        let w = groff_warnings(&p);
        let p = p.display();
        assert!(w.is_empty(), "{p}: groff warns:\n{w}");
    }
}

/// Shell completion offers `-M`'s modes, not file names.
#[test]
fn bash_completion_offers_the_modes() {
    let mut cmd = livesync::ctl::command_for_docs();
    let mut out = Vec::new();
    clap_complete::generate(clap_complete::Shell::Bash, &mut cmd, "livesync", &mut out);
    let script = String::from_utf8(out).unwrap();
    let names: Vec<&str> = livesync::config::cli::MODES.iter().map(|m| m.0).collect();
    let want = format!("compgen -W \"{}\"", names.join(" "));
    for flag in ["-M)", "--mode)"] {
        let at = script
            .find(&format!(" {flag}\n"))
            .unwrap_or_else(|| panic!("no completion case for {flag}"));
        let case = &script[at..];
        let case = &case[..case.find(";;").unwrap_or(case.len())];
        assert!(case.contains(&want), "{flag} completes with:\n{case}");
    }
}
