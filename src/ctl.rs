//! The clients of the control socket (see `daemon/socket.rs` for the
//! protocol):
//!
//! - `livesync ctl SOCKET COMMAND [ARGS]`, the raw client: it joins COMMAND
//!   and ARGS with spaces into one line, sends it and prints the reply as it
//!   came (one line; `metrics` is the one multi-line reply, read up to its
//!   `# EOF` line);
//! - `livesync status|resync|pause|resume|metrics [--socket PATH | -H FILE
//!   -K BLOCK] [--json]`, for people: the socket comes from `--socket` or
//!   from the config file's `socket` key, and replies are printed as plain
//!   text (or, with `--json`, as one JSON object for scripts).
//!
//! Both turn the reply into an exit code: 0 for `ok …`, a JSON object or
//! metrics, 1 for `error …`, 2 when the daemon could not be reached or gave
//! no usable reply (or the command line itself is wrong). This module only
//! talks to the socket; it must not know the daemon's internals or touch
//! process-global state. [`command_for_docs`] is the whole command line
//! (daemon options and these subcommands) for the man page and completions.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The daemon answered `ok …` or with a JSON object.
pub const EXIT_OK: u8 = 0;
/// The daemon answered `error …`.
pub const EXIT_ERROR_REPLY: u8 = 1;
/// No answer: the socket could not be reached, the daemon went away or said
/// something outside the protocol, or the command line was wrong.
pub const EXIT_NO_CONNECTION: u8 = 2;

/// How long to wait for the reply.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest reply accepted.
const MAX_REPLY: usize = 1 << 20;

const USAGE: &str = "usage: livesync ctl SOCKET COMMAND [ARGS]
Sends COMMAND to the livesync daemon listening on SOCKET (its --socket) and
prints the reply. Commands: version, info, status (JSON), metrics (Prometheus
text), help, resync, pause, resume, dump, set KEY VALUE, quit (sync pending
changes, then exit), die (exit at once). For people: livesync status.
Exit codes: 0 ok, 1 the daemon replied with an error, 2 no connection or
usage error.";

/// Why no reply came back.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("cannot connect to the control socket {path}: {source} (is livesync running with --socket {path}?)")]
    Connect { path: String, source: io::Error },
    #[error("control socket {path}: cannot send the command: {source}")]
    Send { path: String, source: io::Error },
    #[error("control socket {path}: no reply within {} s (is the daemon stuck?)", .timeout.as_secs_f64())]
    Timeout { path: String, timeout: Duration },
    #[error("control socket {path}: cannot read the reply: {source}")]
    Receive { path: String, source: io::Error },
    #[error("control socket {path}: the daemon closed the connection without a reply")]
    NoReply { path: String },
    #[error("control socket {path}: the reply is longer than {MAX_REPLY} bytes or not UTF-8")]
    BadReply { path: String },
}

/// Sends one command line (without newline) to the socket at `socket` and
/// returns the reply line (without newline).
pub fn request(socket: &Path, line: &str, timeout: Duration) -> Result<String, CtlError> {
    request_until(socket, line, timeout, END_OF_LINE)
}

/// Where a reply ends: after its first line, or (for `metrics`) after the
/// line `# EOF`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyEnd {
    FirstLine,
    EofMarker,
}
const END_OF_LINE: ReplyEnd = ReplyEnd::FirstLine;

/// The marker line that ends the `metrics` reply.
pub const METRICS_END: &str = "# EOF";

/// [`request`], reading the reply up to `end`. With [`ReplyEnd::EofMarker`]
/// the reply is every line before the marker (or a single `error …` line).
pub fn request_until(
    socket: &Path,
    line: &str,
    timeout: Duration,
    end: ReplyEnd,
) -> Result<String, CtlError> {
    let path = crate::path::display_os(socket);
    let mut stream = UnixStream::connect(socket).map_err(|source| CtlError::Connect {
        path: path.clone(),
        source,
    })?;
    let timeouts = stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)));
    if let Err(source) = timeouts {
        return Err(CtlError::Connect { path, source });
    }
    let mut msg = Vec::with_capacity(line.len() + 1);
    msg.extend_from_slice(line.as_bytes());
    msg.push(b'\n');
    // A daemon that refuses us writes its error line and hangs up, maybe
    // before we are done sending: read the reply even when sending failed.
    let sent = stream.write_all(&msg);
    let reply = read_reply(&mut stream, &path, timeout, end);
    match (reply, sent) {
        (Ok(r), _) => Ok(r),
        (Err(_), Err(source)) => Err(CtlError::Send { path, source }),
        (Err(e), Ok(())) => Err(e),
    }
}

/// Where the reply in `got` ends (the length to keep), if it is complete.
fn reply_len(got: &[u8], end: ReplyEnd) -> Option<usize> {
    let first_nl = got.iter().position(|&b| b == b'\n')?;
    if end == ReplyEnd::FirstLine || got.starts_with(b"error") {
        return Some(first_nl);
    }
    let marker = format!("{METRICS_END}\n");
    if got.starts_with(marker.as_bytes()) {
        return Some(0);
    }
    let needle = format!("\n{METRICS_END}\n");
    got.windows(needle.len())
        .position(|w| w == needle.as_bytes())
        .map(|at| at + 1)
}

fn read_reply(
    stream: &mut UnixStream,
    path: &str,
    timeout: Duration,
    end: ReplyEnd,
) -> Result<String, CtlError> {
    let mut got: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(len) = reply_len(&got, end) {
            got.truncate(len);
            break;
        }
        if got.len() > MAX_REPLY {
            return Err(CtlError::BadReply { path: path.into() });
        }
        match stream.read(&mut buf) {
            Ok(0) if got.is_empty() => return Err(CtlError::NoReply { path: path.into() }),
            // A last line without its newline is still the reply.
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(CtlError::Timeout {
                    path: path.into(),
                    timeout,
                })
            }
            Err(source) => {
                return Err(CtlError::Receive {
                    path: path.into(),
                    source,
                })
            }
        }
    }
    if end == ReplyEnd::FirstLine && got.last() == Some(&b'\r') {
        got.pop();
    }
    String::from_utf8(got).map_err(|_| CtlError::BadReply { path: path.into() })
}

/// The exit code a reply line stands for.
pub fn reply_exit_code(reply: &str) -> u8 {
    let word = reply.split(' ').next().unwrap_or("");
    if word == "ok" || reply.starts_with('{') {
        EXIT_OK
    } else if word == "error" {
        EXIT_ERROR_REPLY
    } else {
        EXIT_NO_CONNECTION
    }
}

/// Runs `livesync ctl` with the arguments after `ctl`, writing the reply to
/// `out` and diagnostics to `err`; returns the exit code.
pub fn run(args: &[OsString], out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    if args
        .first()
        .is_some_and(|a| a == "-h" || a == "--help" || a == "help" && args.len() == 1)
    {
        let _ = writeln!(out, "{USAGE}");
        return EXIT_OK;
    }
    if args.len() < 2 {
        let _ = writeln!(
            err,
            "livesync ctl: error: give the socket path and a command\n{USAGE}"
        );
        return EXIT_NO_CONNECTION;
    }
    let socket = PathBuf::from(&args[0]);
    let mut words = Vec::with_capacity(args.len() - 1);
    for a in &args[1..] {
        match a.to_str() {
            Some(s) if !s.contains(['\n', '\r']) => words.push(s),
            _ => {
                let _ = writeln!(
                    err,
                    "livesync ctl: error: argument {} is not one line of UTF-8 text",
                    crate::path::display(std::os::unix::ffi::OsStrExt::as_bytes(a.as_os_str()))
                );
                return EXIT_NO_CONNECTION;
            }
        }
    }
    let end = if words.first() == Some(&"metrics") {
        ReplyEnd::EofMarker
    } else {
        ReplyEnd::FirstLine
    };
    match request_until(&socket, &words.join(" "), REPLY_TIMEOUT, end) {
        Ok(reply) if end == ReplyEnd::EofMarker && !reply.starts_with("error") => {
            let _ = write!(out, "{reply}");
            EXIT_OK
        }
        Ok(reply) => {
            let code = reply_exit_code(&reply);
            if code == EXIT_NO_CONNECTION {
                let _ = writeln!(
                    err,
                    "livesync ctl: error: control socket {}: unexpected reply (is this a livesync socket?): {}",
                    crate::path::display_os(&socket),
                    reply.escape_debug()
                );
            } else {
                let _ = writeln!(out, "{reply}");
            }
            code
        }
        Err(e) => {
            let _ = writeln!(err, "livesync ctl: error: {e}");
            EXIT_NO_CONNECTION
        }
    }
}

// ---- `livesync status|resync|pause|resume|metrics`: the client for people ----

/// Options shared by the client subcommands.
#[derive(Clone, Debug, clap::Args)]
pub struct ClientOpts {
    /// The daemon's control socket (its --socket); without it, the `socket`
    /// key of the config file (-H/-K, or the default config files).
    #[arg(long = "socket", value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Config file to take the socket path from.
    #[arg(short = 'H', long = "config-file", value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    /// Block of the config file.
    #[arg(
        short = 'K',
        long = "config-block",
        value_name = "NAME",
        default_value = "default"
    )]
    pub config_block: String,
    /// Print one JSON object (for scripts) instead of text for people.
    #[arg(long = "json")]
    pub json: bool,
}

/// Options of `livesync metrics` (no --json: the text is for machines).
#[derive(Clone, Debug, clap::Args)]
pub struct MetricsOpts {
    /// The daemon's control socket (its --socket); without it, the `socket`
    /// key of the config file.
    #[arg(long = "socket", value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Config file to take the socket path from.
    #[arg(short = 'H', long = "config-file", value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    /// Block of the config file.
    #[arg(
        short = 'K',
        long = "config-block",
        value_name = "NAME",
        default_value = "default"
    )]
    pub config_block: String,
}

/// The client subcommands.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum ClientCommand {
    /// Show what a running livesync is doing: state, queue, lag, last sync,
    /// counters.
    Status(ClientOpts),
    /// Make a running livesync rescan and sync the whole tree now.
    Resync(ClientOpts),
    /// Hold every sync (changes are still collected) until `resume`.
    Pause(ClientOpts),
    /// Start syncing again after `pause`.
    Resume(ClientOpts),
    /// Print the daemon's metrics in Prometheus text format.
    Metrics(MetricsOpts),
    /// Send COMMAND to the control socket at SOCKET and print the raw reply
    /// (version, info, status, metrics, help, resync, pause, resume, dump,
    /// set KEY VALUE, quit, die).
    #[command(disable_help_flag = true)]
    Ctl {
        /// The daemon's control socket (its --socket).
        #[arg(value_name = "SOCKET")]
        socket: PathBuf,
        /// The command and its arguments: version, info, status (JSON),
        /// metrics (Prometheus text), help, resync, pause, resume, dump,
        /// set KEY VALUE, quit (sync what is pending, then exit), die (exit
        /// at once).
        #[arg(value_name = "COMMAND", num_args = 1.., trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
}

#[derive(Debug, clap::Parser)]
#[command(name = "livesync", disable_version_flag = true)]
struct ClientCli {
    #[command(subcommand)]
    command: ClientCommand,
}

/// The first words that make `livesync` a client instead of the daemon.
pub const CLIENT_WORDS: [&str; 5] = ["status", "resync", "pause", "resume", "metrics"];

/// Whether `first` (the first argument) names a client subcommand.
pub fn is_client_command(first: &std::ffi::OsStr) -> bool {
    CLIENT_WORDS.iter().any(|w| first == *w)
}

/// The whole command line for documentation (man page, completions): the
/// daemon's options and the client subcommands.
pub fn command_for_docs() -> clap::Command {
    use clap::{CommandFactory, Subcommand};
    let subs = ClientCommand::augment_subcommands(clap::Command::new("livesync"));
    crate::config::cli::Args::command()
        .subcommands(subs.get_subcommands().cloned())
        .subcommand_help_heading("Client subcommands")
        .subcommand_value_name("CLIENT-COMMAND")
        .disable_help_subcommand(true)
        .args_conflicts_with_subcommands(true)
}

/// The socket a client subcommand talks to.
fn client_socket(
    socket: &Option<PathBuf>,
    config_file: &Option<PathBuf>,
    block: &str,
) -> Result<PathBuf, String> {
    use crate::config::file;
    if let Some(s) = socket {
        return Ok(s.clone());
    }
    let mut warnings = Vec::new();
    let loaded = match config_file {
        Some(p) if p.as_os_str() == file::NO_FILE => None,
        Some(p) => Some(file::ConfigFile::load(p).map_err(|e| e.to_string())?),
        None => {
            let home = std::env::var_os("HOME").map(PathBuf::from);
            file::find_default(&file::default_paths(home.as_deref()), &mut warnings)
                .map_err(|e| e.to_string())?
        }
    };
    let Some(f) = loaded else {
        return Err("no control socket: give --socket PATH (the daemon's --socket), or -H FILE with a `socket = PATH` line".into());
    };
    let settings = f.settings(block, None).map_err(|e| e.to_string())?;
    match settings.get("socket") {
        Some(e) if !e.value.is_empty() => Ok(PathBuf::from(&e.value)),
        _ => Err(format!(
            "no control socket: {} [{block}] has no `socket = PATH` line; give --socket PATH",
            crate::path::display_os(f.path())
        )),
    }
}

/// Runs a client subcommand; `args` starts with the subcommand's name.
pub fn run_client(args: &[OsString], out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    use clap::Parser;
    let mut argv = vec![OsString::from("livesync")];
    argv.extend(args.iter().cloned());
    let cli = match ClientCli::try_parse_from(&argv) {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if e.kind() == ErrorKind::DisplayHelp {
                let _ = write!(out, "{}", e.render());
                return EXIT_OK;
            }
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or("invalid arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            let _ = writeln!(err, "livesync: error: {first} (see livesync status --help)");
            return EXIT_NO_CONNECTION;
        }
    };
    let (word, opts) = match &cli.command {
        ClientCommand::Status(o) => ("status", o.clone()),
        ClientCommand::Resync(o) => ("resync", o.clone()),
        ClientCommand::Pause(o) => ("pause", o.clone()),
        ClientCommand::Resume(o) => ("resume", o.clone()),
        ClientCommand::Metrics(m) => (
            "metrics",
            ClientOpts {
                socket: m.socket.clone(),
                config_file: m.config_file.clone(),
                config_block: m.config_block.clone(),
                json: false,
            },
        ),
        ClientCommand::Ctl { socket, command } => {
            let mut raw = vec![socket.clone().into_os_string()];
            raw.extend(command.iter().map(OsString::from));
            return run(&raw, out, err);
        }
    };
    let socket = match client_socket(&opts.socket, &opts.config_file, &opts.config_block) {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(err, "livesync {word}: error: {e}");
            return EXIT_NO_CONNECTION;
        }
    };
    let end = if word == "metrics" {
        ReplyEnd::EofMarker
    } else {
        ReplyEnd::FirstLine
    };
    let reply = match request_until(&socket, word, REPLY_TIMEOUT, end) {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(err, "livesync {word}: error: {e}");
            return EXIT_NO_CONNECTION;
        }
    };
    if let Some(msg) = reply.strip_prefix("error") {
        let msg = msg.trim_start();
        if opts.json {
            let v = serde_json::json!({"ok": false, "command": word, "error": msg});
            let _ = writeln!(out, "{v}");
        }
        let _ = writeln!(err, "livesync {word}: the daemon says: {msg}");
        return EXIT_ERROR_REPLY;
    }
    match word {
        "metrics" => {
            let _ = write!(out, "{reply}");
            EXIT_OK
        }
        "status" => match serde_json::from_str::<serde_json::Value>(&reply) {
            Ok(v) if v.is_object() => {
                if opts.json {
                    let _ = writeln!(out, "{v}");
                } else {
                    let _ = write!(out, "{}", status_text(&v));
                }
                EXIT_OK
            }
            _ => {
                let _ = writeln!(
                    err,
                    "livesync status: error: control socket {}: the reply is not a status object (is this a livesync socket?): {}",
                    crate::path::display_os(&socket),
                    reply.escape_debug()
                );
                EXIT_NO_CONNECTION
            }
        },
        _ => {
            let Some(text) = reply.strip_prefix("ok").map(str::trim_start) else {
                let _ = writeln!(
                    err,
                    "livesync {word}: error: control socket {}: unexpected reply (is this a livesync socket?): {}",
                    crate::path::display_os(&socket),
                    reply.escape_debug()
                );
                return EXIT_NO_CONNECTION;
            };
            if opts.json {
                let v = serde_json::json!({"ok": true, "command": word, "reply": text});
                let _ = writeln!(out, "{v}");
            } else {
                let _ = writeln!(out, "{text}");
            }
            EXIT_OK
        }
    }
}

/// Milliseconds as people read them.
fn human_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 120_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else if ms < 7_200_000 {
        format!("{:.1} min", ms as f64 / 60_000.0)
    } else {
        format!("{:.1} h", ms as f64 / 3_600_000.0)
    }
}

/// The `status` JSON object as text for people, one `name: value` per line.
pub fn status_text(v: &serde_json::Value) -> String {
    use serde_json::Value;
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("?").to_string();
    let n = |x: Option<&Value>| x.and_then(Value::as_u64).unwrap_or(0);
    let mut o = String::new();
    let pairs = |obj: Option<&Value>| -> String {
        obj.and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, x)| format!("{k} {}", x.as_u64().unwrap_or(0)))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    let _ = writeln!(
        o,
        "livesync {} (pid {}, label {})",
        s("version"),
        n(v.get("pid")),
        s("label")
    );
    let _ = writeln!(o, "state:          {}", s("state"));
    let _ = writeln!(o, "watch dir:      {}", s("watch_dir"));
    let _ = writeln!(o, "destination:    {}", s("destination"));
    let _ = writeln!(
        o,
        "pending:        {} ({})",
        n(v.get("queue_total")),
        pairs(v.get("queue"))
    );
    let oldest = v
        .get("oldest_pending_age_ms")
        .and_then(Value::as_u64)
        .map_or_else(|| "none".to_string(), human_ms);
    let _ = writeln!(o, "oldest pending: {oldest}");
    let last = match v.get("last_sync").filter(|l| l.is_object()) {
        None => "none yet".to_string(),
        Some(l) => {
            let ok = l.get("ok").and_then(Value::as_bool).unwrap_or(false);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let ago = now.saturating_sub(n(l.get("finished_unix_ms")));
            let code = l
                .get("exit_code")
                .and_then(Value::as_i64)
                .map(|c| format!(", exit code {c}"))
                .unwrap_or_default();
            format!(
                "{}, took {}, {} ago{code}",
                if ok { "ok" } else { "FAILED" },
                human_ms(n(l.get("duration_ms"))),
                human_ms(ago)
            )
        }
    };
    let _ = writeln!(o, "last sync:      {last}");
    let _ = writeln!(o, "counters:       {}", pairs(v.get("counters")));
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_codes() {
        assert_eq!(reply_exit_code("ok"), EXIT_OK);
        assert_eq!(reply_exit_code("ok pause requested"), EXIT_OK);
        assert_eq!(reply_exit_code("{\"state\":\"running\"}"), EXIT_OK);
        assert_eq!(reply_exit_code("error unknown command"), EXIT_ERROR_REPLY);
        assert_eq!(reply_exit_code("okay"), EXIT_NO_CONNECTION);
        assert_eq!(reply_exit_code(""), EXIT_NO_CONNECTION);
    }

    #[test]
    fn usage_errors_are_exit_2() {
        let mut out = Vec::new();
        let mut err = Vec::new();
        assert_eq!(run(&["/x".into()], &mut out, &mut err), EXIT_NO_CONNECTION);
        assert!(String::from_utf8_lossy(&err).contains("give the socket path"));
        let mut err = Vec::new();
        let args = ["/x".into(), "set".into(), "a\nb".into()];
        assert_eq!(run(&args, &mut out, &mut err), EXIT_NO_CONNECTION);
        assert!(String::from_utf8_lossy(&err).contains("not one line"));
    }

    #[test]
    fn missing_socket_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("nope.sock");
        let mut out = Vec::new();
        let mut err = Vec::new();
        let code = run(
            &[sock.clone().into_os_string(), "status".into()],
            &mut out,
            &mut err,
        );
        assert_eq!(code, EXIT_NO_CONNECTION);
        let err = String::from_utf8(err).unwrap();
        assert!(err.contains(&sock.display().to_string()), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(out.is_empty());
    }
}
