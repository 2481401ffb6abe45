//! `livesync ctl SOCKET COMMAND [ARGS]`: the client of the control socket
//! (see `daemon/socket.rs` for the protocol). It joins COMMAND and ARGS with
//! spaces into one line, sends it, prints the one reply line on stdout, and
//! turns the reply into an exit code: 0 for `ok …` or a JSON object, 1 for
//! `error …`, 2 when the daemon could not be reached or gave no usable reply
//! (or the command line itself is wrong). It only talks to the socket; it
//! must not know the daemon's internals or touch process-global state.

use std::ffi::OsString;
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
prints the reply. Commands: version, info, status (JSON), help, resync, pause,
resume, dump, set KEY VALUE, quit (sync pending changes, then exit), die
(exit at once).
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
    let reply = read_line(&mut stream, &path, timeout);
    match (reply, sent) {
        (Ok(r), _) => Ok(r),
        (Err(_), Err(source)) => Err(CtlError::Send { path, source }),
        (Err(e), Ok(())) => Err(e),
    }
}

fn read_line(stream: &mut UnixStream, path: &str, timeout: Duration) -> Result<String, CtlError> {
    let mut got: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(nl) = got.iter().position(|&b| b == b'\n') {
            got.truncate(nl);
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
    if got.last() == Some(&b'\r') {
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
    match request(&socket, &words.join(" "), REPLY_TIMEOUT) {
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
