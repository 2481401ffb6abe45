//! README.md stays true to the code: its option tables name only options
//! the command line has, each in one row, and its exit-code table lists
//! exactly the codes the daemon exits with (`livesync::exit::CODES`), each
//! once. The man pages are generated from the same definitions and checked
//! by `tests/man.rs`.

use clap::CommandFactory;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

fn readme() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("README.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The cells of one markdown table row, split at `|` but not at `\|`.
fn cells(row: &str) -> Vec<String> {
    let row = row.trim().trim_start_matches('|').trim_end_matches('|');
    let mut out = vec![String::new()];
    let mut chars = row.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                out.last_mut().unwrap().push('|');
                chars.next();
            }
            '|' => out.push(String::new()),
            c => out.last_mut().unwrap().push(c),
        }
    }
    out.into_iter().map(|c| c.trim().to_string()).collect()
}

/// A table of the README: the heading it sits under (the last `#` line
/// before it), its header cells and its body rows (as cells).
struct Table {
    heading: String,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

fn tables(text: &str) -> Vec<Table> {
    let mut out = Vec::new();
    let mut heading = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.starts_with('#') {
            heading = line.trim_start_matches('#').trim().to_string();
            continue;
        }
        if !line.starts_with('|') {
            continue;
        }
        let header = cells(line);
        let mut rows = Vec::new();
        while let Some(next) = lines.next_if(|l| l.starts_with('|')) {
            if !next.starts_with("|---") {
                rows.push(cells(next));
            }
        }
        out.push(Table {
            heading: heading.clone(),
            header,
            rows,
        });
    }
    out
}

/// The options a table cell names: `-X` and `--long` words inside its
/// backtick spans (`--` alone, the handler arguments, is not one).
fn flags_in(cell: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, span) in cell.split('`').enumerate() {
        if i % 2 == 0 {
            continue; // outside backticks
        }
        for word in span.split(|c: char| c.is_whitespace() || c == ',' || c == '/') {
            let name: String = word
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            let is_short = name.len() == 2 && name.starts_with('-') && !name.starts_with("--");
            let is_long = name.len() > 2 && name.starts_with("--");
            if is_short || is_long {
                out.push(name);
            }
        }
    }
    out
}

/// Every option the daemon's command line has (`-W`, `--watch-dir`, …,
/// with clap's `-h`/`--help` and `-V`/`--version`).
fn real_flags() -> BTreeSet<String> {
    let mut cmd = livesync::config::cli::Args::command();
    cmd.build();
    let mut out = BTreeSet::new();
    for arg in cmd.get_arguments() {
        if let Some(s) = arg.get_short() {
            out.insert(format!("-{s}"));
        }
        if let Some(l) = arg.get_long() {
            out.insert(format!("--{l}"));
        }
    }
    out
}

/// What is wrong with the option tables of `text` (tables whose header
/// starts with `option`): options that do not exist, and options named in
/// more than one place.
fn option_table_problems(text: &str) -> Vec<String> {
    let real = real_flags();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut problems = Vec::new();
    let option_tables: Vec<Table> = tables(text)
        .into_iter()
        .filter(|t| t.header.first().is_some_and(|h| h == "option"))
        .collect();
    assert!(
        option_tables.len() >= 3,
        "README.md should have its option tables (header `| option | …`); found {}",
        option_tables.len()
    );
    for t in &option_tables {
        for row in &t.rows {
            let first = row.first().map(String::as_str).unwrap_or("");
            let flags = flags_in(first);
            if flags.is_empty() && !first.starts_with("`--") {
                problems.push(format!("[{}] row names no option: {first}", t.heading));
            }
            for f in flags {
                if !real.contains(&f) {
                    problems.push(format!(
                        "[{}] {f} is not an option of livesync (row: {first})",
                        t.heading
                    ));
                }
                *seen.entry(f).or_default() += 1;
            }
        }
    }
    for (f, n) in seen {
        if n > 1 {
            problems.push(format!("{f} is listed {n} times in the option tables"));
        }
    }
    problems
}

#[test]
fn readme_option_tables_list_each_real_option_once() {
    let problems = option_table_problems(&readme());
    assert!(
        problems.is_empty(),
        "README.md's option tables disagree with the CLI:\n  {}",
        problems.join("\n  ")
    );
}

/// The codes of the table under the heading `Exit codes`, in order.
fn exit_table_codes(text: &str) -> Vec<u8> {
    let table = tables(text)
        .into_iter()
        .find(|t| t.heading == "Exit codes")
        .expect("README.md has a table under `### Exit codes`");
    table
        .rows
        .iter()
        .map(|row| {
            let cell = row.first().map(String::as_str).unwrap_or("");
            cell.trim_matches('`')
                .parse()
                .unwrap_or_else(|_| panic!("exit-code row does not start with a code: {row:?}"))
        })
        .collect()
}

/// What is wrong with the exit-code table of `text`: a code listed twice,
/// or a set of codes other than the daemon's.
fn exit_code_problems(text: &str) -> Vec<String> {
    let have = exit_table_codes(text);
    let want: Vec<u8> = livesync::exit::CODES.iter().map(|(c, _)| *c).collect();
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for c in &have {
        if !seen.insert(*c) {
            problems.push(format!("exit code {c} is listed twice"));
        }
    }
    let want_set: BTreeSet<u8> = want.iter().copied().collect();
    for c in seen.difference(&want_set) {
        problems.push(format!("exit code {c} is not one the daemon uses"));
    }
    for c in want_set.difference(&seen) {
        problems.push(format!("exit code {c} is missing"));
    }
    problems
}

#[test]
fn readme_exit_codes_are_the_codes_the_daemon_uses() {
    let problems = exit_code_problems(&readme());
    assert!(
        problems.is_empty(),
        "README.md's exit codes disagree with livesync::exit::CODES:\n  {}",
        problems.join("\n  ")
    );
}

/// The `--monitor` row names every backend the option takes.
#[test]
fn readme_names_every_monitor_backend() {
    let text = readme();
    let row = text
        .lines()
        .find(|l| l.starts_with("| `--monitor "))
        .expect("README.md has a `--monitor` row");
    let first = cells(row).into_iter().next().unwrap_or_default();
    let cmd = livesync::config::cli::Args::command();
    let monitor = cmd
        .get_arguments()
        .find(|a| a.get_long() == Some("monitor"))
        .expect("--monitor exists");
    for value in monitor.get_possible_values() {
        let name = value.get_name();
        assert!(
            first
                .split('|')
                .any(|w| w.trim_matches('`').ends_with(name)),
            "README.md's --monitor row does not name {name}: {first}"
        );
    }
}

/// The checks above catch what they are meant to.
#[test]
fn the_checks_catch_duplicates_unknown_options_and_wrong_codes() {
    let base = "## A\n\n| option | meaning |\n|---|---|\n| `-W, --watch-dir DIR` | x |\n\
                | `-b`, `-z FILE` | y |\n\n## B\n\n| option | meaning |\n|---|---|\n\
                | `-t SECS` | z |\n\n| option | m |\n|---|---|\n| `-- ARGS…` | handler |\n";
    assert_eq!(option_table_problems(base), Vec::<String>::new());
    let twice = base.replace("| `-t SECS` |", "| `-W, --watch-dir DIR` |");
    let p = option_table_problems(&twice);
    assert!(
        p.iter().any(|l| l.contains("-W is listed 2 times")),
        "{p:?}"
    );
    let unknown = base.replace("`-t SECS`", "`--no-such-option`");
    let p = option_table_problems(&unknown);
    assert!(p.iter().any(|l| l.contains("--no-such-option")), "{p:?}");
    let escaped = base.replace("`-b`", "`--monitor a\\|b`");
    assert_eq!(option_table_problems(&escaped), Vec::<String>::new());

    let table = |rows: &str| format!("### Exit codes\n\n| code | meaning |\n|---|---|\n{rows}");
    let good: String = livesync::exit::CODES
        .iter()
        .map(|(c, _)| format!("| {c} | x |\n"))
        .collect();
    assert_eq!(exit_code_problems(&table(&good)), Vec::<String>::new());
    let p = exit_code_problems(&table(&format!("{good}| 1 | again |\n")));
    assert_eq!(p, ["exit code 1 is listed twice"]);
    let p = exit_code_problems(&table(&format!("{good}| 9 | new |\n")));
    assert_eq!(p, ["exit code 9 is not one the daemon uses"]);
    let p = exit_code_problems(&table(&good.replace("| 3 | x |\n", "")));
    assert_eq!(p, ["exit code 3 is missing"]);
}
