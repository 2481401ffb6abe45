//! The `livesync` binary: parse the command line, build the Config, call
//! `daemon::run`, and turn the outcome into the documented exit code; or,
//! for `livesync ctl ...` and `livesync status|resync|pause|resume|metrics`,
//! hand over to the control socket's clients (src/ctl.rs).

use clap::Parser;
use livesync::config::{cli::Args, Config};
use std::process::ExitCode;

/// Exit code for bad usage or input (nothing was touched).
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    // `livesync ctl SOCKET COMMAND`: the control socket's client, not the daemon.
    let mut argv = std::env::args_os().skip(1);
    let first = argv.next();
    if first.as_ref().is_some_and(|a| a == "ctl") {
        let rest: Vec<_> = argv.collect();
        let code = livesync::ctl::run(&rest, &mut std::io::stdout(), &mut std::io::stderr());
        return ExitCode::from(code);
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
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(1)),
    }
}
