//! The `livesync` binary: parse the command line, build the Config, call
//! `daemon::run`, and turn the outcome into the documented exit code
//! (`livesync::exit`); or, for `livesync ctl ...` and
//! `livesync status|resync|pause|resume|metrics`, hand over to the control
//! socket's clients (src/ctl.rs); `livesync help [NAME]` prints the help of
//! the daemon or of one of those.

use clap::Parser;
use livesync::config::{cli::Args, Config};
use std::ffi::OsString;
use std::process::ExitCode;

use livesync::exit::USAGE as EXIT_USAGE;

fn main() -> ExitCode {
    // `livesync ctl SOCKET COMMAND`: the control socket's client, not the daemon.
    let mut argv = std::env::args_os().skip(1);
    let first = argv.next();
    if first.as_ref().is_some_and(|a| a == "ctl") {
        let rest: Vec<_> = argv.collect();
        let code = livesync::ctl::run(&rest, &mut std::io::stdout(), &mut std::io::stderr());
        return ExitCode::from(code);
    }
    // `livesync help [NAME]`: the daemon's long help, or a subcommand's.
    if first.as_ref().is_some_and(|a| a == "help") {
        let rest: Vec<_> = argv.collect();
        return ExitCode::from(help(&rest));
    }
    // `livesync status|resync|pause|resume|metrics`: clients for people.
    if first
        .as_deref()
        .is_some_and(livesync::ctl::is_client_command)
    {
        let all: Vec<_> = std::env::args_os().skip(1).collect();
        let code = livesync::ctl::run_client(&all, &mut std::io::stdout(), &mut std::io::stderr());
        return ExitCode::from(code);
    }
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // clap's first line says what is wrong (with its suggestion for
            // a misspelt option); the usage block after it is noise in a log.
            let first = livesync::config::cli::usage_error_line(&e);
            eprintln!("livesync: error: {first} (see livesync --help)");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let cfg = match Config::from_args(args) {
        Ok(c) => c,
        Err(e) => {
            for w in e.warnings() {
                eprintln!("livesync: warning: {w}");
            }
            eprintln!("livesync: error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match livesync::daemon::run(cfg) {
        Ok(()) => ExitCode::from(livesync::exit::OK),
        Err(e) => ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(livesync::exit::FAILURE)),
    }
}

/// `livesync help [NAME]`: with no NAME the daemon's `--help`; with a
/// subcommand's name that subcommand's help.
fn help(rest: &[OsString]) -> u8 {
    use clap::CommandFactory;
    let (out, err) = (&mut std::io::stdout(), &mut std::io::stderr());
    match rest {
        [] => {
            print!("{}", Args::command().render_long_help());
            livesync::exit::OK
        }
        [name] if name == "ctl" => livesync::ctl::run(&["--help".into()], out, err),
        [name] if livesync::ctl::is_client_command(name) => {
            livesync::ctl::run_client(&[name.clone(), "--help".into()], out, err)
        }
        _ => {
            let what: Vec<_> = rest.iter().map(|a| a.to_string_lossy()).collect();
            eprintln!(
                "livesync: error: no help for `{}`: give one of status, resync, pause, resume, \
                 metrics, ctl, or no name for the daemon (see livesync --help)",
                what.join(" ")
            );
            EXIT_USAGE
        }
    }
}
