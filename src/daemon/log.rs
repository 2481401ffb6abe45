//! The process-wide logger: one line per record, on stderr (the default),
//! stdout, or syslog (`-Y`). stderr/stdout lines carry a UTC timestamp, the
//! pid, the level and the message; syslog records are RFC 3164 datagrams
//! sent to `/dev/log` or `--syslog-socket` (facility daemon, tag
//! `livesync[pid]`). Under journald (`JOURNAL_STREAM` names the very
//! stderr/stdout we write to) lines carry no timestamp or pid, only a
//! `<N>` syslog priority prefix, since the journal records both itself.
//! `-d` raises the level, `-q` keeps errors only. Installed once from
//! `daemon::run`; nothing else sets it.
//!
//! With `-b`, stderr points at `/dev/null` once livesync is up, so `-b`
//! without `-Y` logs to syslog (the configuration says so in a warning);
//! until the daemon detaches, its warnings and errors are also written to
//! stderr, so that a failed start still shows on the terminal. When the
//! syslog socket cannot be reached at start, [`init_with`] says so (the
//! caller prints it on stderr): lines are dropped until a syslog daemon
//! listens there.
//!
//! Why our own syslog client rather than the `syslog` crate: the socket is
//! connected at start, while `/dev/log` (or `--syslog-socket`) still means
//! what it says, and kept; inside a `--chroot` or `--pivot-root` jail the
//! path may not exist, and a client that connects on demand (or reconnects
//! by path only) loses every line there. We also need `--syslog-socket`,
//! one reconnect attempt after the syslog daemon restarts, records that
//! never block the event loop, and the journald stream detection above;
//! the format (RFC 3164, facility daemon) is a dozen lines. The same
//! reasoning keeps `notify.rs` (sd_notify) our own.

use crate::config::Output;
use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// `-b` with syslog output: warnings and errors also go to stderr until the
/// daemon detaches from the terminal.
static TEE_STDERR: AtomicBool = AtomicBool::new(false);

/// Until [`detached`], warnings and errors are written to stderr as well as
/// to syslog (`-b -Y syslog`: a failed start still shows on the terminal).
pub fn tee_until_detached() {
    TEE_STDERR.store(true, Ordering::SeqCst);
}

/// stderr no longer leads anywhere (`-b`, after start).
pub fn detached() {
    TEE_STDERR.store(false, Ordering::SeqCst);
}

/// Where syslog datagrams go.
const SYSLOG_SOCKET: &str = "/dev/log";
/// syslog facility "daemon" (3), shifted.
const FACILITY_DAEMON: u8 = 3 << 3;

struct Logger {
    level: log::LevelFilter,
    output: Output,
    /// For syslog: the socket (None until the first successful connect).
    syslog: Mutex<Option<UnixDatagram>>,
    syslog_path: PathBuf,
    /// stderr/stdout is a journald stream: `<N>message` lines.
    journal: bool,
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for a time since the epoch.
fn utc_timestamp(now: SystemTime) -> String {
    let d = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil-from-days algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// RFC 3164 severity of a log level.
fn severity(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

/// `Mmm dd hh:mm:ss` in local time (RFC 3164's TIMESTAMP).
fn syslog_timestamp(now: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as libc::time_t;
    // SAFETY: localtime_r only writes the struct we pass.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&secs, &mut tm).is_null() };
    if !ok {
        return "Jan  1 00:00:00".to_string();
    }
    format!(
        "{} {:>2} {:02}:{:02}:{:02}",
        MONTHS[tm.tm_mon.clamp(0, 11) as usize],
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

/// One RFC 3164 record: `<PRI>Mmm dd hh:mm:ss livesync[PID]: MESSAGE`.
fn syslog_record(level: log::Level, now: SystemTime, pid: u32, msg: &str) -> Vec<u8> {
    // Line breaks would split the record in most syslog daemons.
    let msg = msg.replace('\n', " ");
    format!(
        "<{}>{} livesync[{pid}]: {msg}",
        FACILITY_DAEMON | severity(level),
        syslog_timestamp(now)
    )
    .into_bytes()
}

impl Logger {
    fn send_syslog(&self, record: &[u8]) {
        let mut sock = self.syslog.lock().unwrap_or_else(|p| p.into_inner());
        if sock.is_none() {
            *sock = connect(&self.syslog_path).ok();
        }
        let sent = sock.as_ref().is_some_and(|s| s.send(record).is_ok());
        if !sent {
            // The syslog daemon may have restarted: reconnect once.
            *sock = connect(&self.syslog_path).ok();
            if let Some(s) = sock.as_ref() {
                let _ = s.send(record);
            }
        }
    }
}

extern "C" {
    fn tzset();
}

fn connect(path: &Path) -> std::io::Result<UnixDatagram> {
    let s = UnixDatagram::unbound()?;
    s.connect(path)?;
    Ok(s)
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let now = SystemTime::now();
        if self.output == Output::Syslog {
            let msg = record.args().to_string();
            self.send_syslog(&syslog_record(
                record.level(),
                now,
                std::process::id(),
                &msg,
            ));
            if record.level() <= log::Level::Warn && TEE_STDERR.load(Ordering::SeqCst) {
                let what = if record.level() == log::Level::Error {
                    "error"
                } else {
                    "warning"
                };
                let _ = std::io::stderr()
                    .lock()
                    .write_all(format!("livesync: {what}: {msg}\n").as_bytes());
            }
            return;
        }
        let line = if self.journal {
            journal_line(record.level(), &record.args().to_string())
        } else {
            format!(
                "{} livesync[{}] {}: {}\n",
                utc_timestamp(now),
                std::process::id(),
                record.level(),
                record.args()
            )
        };
        // One write per line so lines from threads never interleave.
        let write = || {
            if self.output == Output::Stdout {
                let _ = std::io::stdout().lock().write_all(line.as_bytes());
            } else {
                let _ = std::io::stderr().lock().write_all(line.as_bytes());
            }
        };
        // A progress bar on the terminal: clear it, write, redraw it.
        let bar = PROGRESS_BAR
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match bar {
            Some(b) => b.suspend(write),
            None => write(),
        }
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
        let _ = std::io::stdout().flush();
    }
}

/// The initial sync's progress bar, while one is drawn on stderr (see
/// `progress.rs`): log lines are written around it.
static PROGRESS_BAR: Mutex<Option<indicatif::ProgressBar>> = Mutex::new(None);

/// Sets (or with None removes) the progress bar log lines must go around.
pub fn set_progress_bar(bar: Option<indicatif::ProgressBar>) {
    *PROGRESS_BAR.lock().unwrap_or_else(|p| p.into_inner()) = bar;
}

/// Installs the logger (a second call only changes the level).
pub fn init(level: log::LevelFilter, output: Output) -> Result<(), String> {
    init_with(level, output, Path::new(SYSLOG_SOCKET))
}

/// Installs the logger with `-Y syslog` datagrams going to `syslog_path`
/// (`--syslog-socket`). The logger is installed either way; the error says
/// that the syslog socket cannot be reached now, so that nothing logged
/// reaches anyone until a syslog daemon listens there.
pub fn init_with(
    level: log::LevelFilter,
    output: Output,
    syslog_path: &Path,
) -> Result<(), String> {
    let fd = match output {
        Output::Stdout => Some(libc::STDOUT_FILENO),
        Output::Stderr => Some(libc::STDERR_FILENO),
        Output::Syslog => None,
    };
    let stream = std::env::var_os("JOURNAL_STREAM");
    let journal = fd.is_some_and(|fd| is_journal_stream(stream.as_deref(), fd));
    // Connected (and the time zone read) now, while the paths mean what
    // they say: a `--chroot` jail may have neither /dev/log nor the zone.
    let mut problem = Ok(());
    let syslog = match output {
        Output::Syslog => {
            // SAFETY: tzset only reads the environment and the zone file.
            unsafe { tzset() };
            connect(syslog_path)
                .map_err(|e| {
                    problem = Err(format!(
                        "-Y syslog: cannot reach the syslog socket {} ({e}): log lines are lost until a syslog daemon listens there; start one, give --syslog-socket, or use -Y stderr",
                        crate::path::display_os(syslog_path)
                    ));
                })
                .ok()
        }
        _ => None,
    };
    let _ = log::set_boxed_logger(Box::new(Logger {
        level,
        output,
        syslog: Mutex::new(syslog),
        syslog_path: syslog_path.to_path_buf(),
        journal,
    }));
    log::set_max_level(level);
    problem
}

/// Whether `fd` is the journald stream `JOURNAL_STREAM` (`DEVICE:INODE`)
/// names: systemd sets the variable for the service's stdout/stderr, and a
/// child whose output went elsewhere inherits it, so the check is on the
/// fd itself.
pub fn is_journal_stream(journal_stream: Option<&std::ffi::OsStr>, fd: libc::c_int) -> bool {
    let Some((dev, ino)) = journal_stream
        .and_then(|v| v.to_str())
        .and_then(|v| v.split_once(':'))
        .and_then(|(d, i)| Some((d.trim().parse::<u64>().ok()?, i.trim().parse::<u64>().ok()?)))
    else {
        return false;
    };
    // SAFETY: fstat only writes the struct we pass.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return false;
    }
    st.st_dev as u64 == dev && st.st_ino as u64 == ino
}

/// A journald stream line: `<PRIORITY>message`, one line.
fn journal_line(level: log::Level, msg: &str) -> String {
    format!("<{}>{}\n", severity(level), msg.replace('\n', " "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        assert_eq!(utc_timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_394_521_042);
        assert_eq!(utc_timestamp(t), "2026-11-23T00:42:01.042Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(utc_timestamp(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn syslog_records_follow_rfc3164() {
        let r = syslog_record(log::Level::Warn, SystemTime::now(), 42, "a\nb");
        let s = String::from_utf8(r).expect("utf8");
        // daemon (3) * 8 + warning (4) = 28
        assert!(s.starts_with("<28>"), "{s}");
        let ts = &s[4..19];
        assert_eq!(ts.len(), 15, "{s}");
        assert!(ts.as_bytes()[3] == b' ' && ts.as_bytes()[6] == b' ', "{s}");
        assert!(s.ends_with(" livesync[42]: a b"), "{s}");
        let e = syslog_record(log::Level::Error, UNIX_EPOCH, 1, "x");
        assert!(e.starts_with(b"<27>"));
    }

    #[test]
    fn journal_lines_have_a_priority_and_no_timestamp() {
        assert_eq!(
            journal_line(log::Level::Info, "synced 1 path"),
            "<6>synced 1 path\n"
        );
        assert_eq!(journal_line(log::Level::Error, "a\nb"), "<3>a b\n");
        assert_eq!(journal_line(log::Level::Warn, "w"), "<4>w\n");
    }

    #[test]
    fn journal_stream_must_name_the_fd_itself() {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::MetadataExt;
        let t = tempfile::tempdir().expect("tempdir");
        let f = std::fs::File::create(t.path().join("out")).expect("create");
        let md = f.metadata().expect("stat");
        let fd = f.as_raw_fd();
        let v = |s: String| Some(std::ffi::OsString::from(s));
        let ok = v(format!("{}:{}", md.dev(), md.ino()));
        assert!(is_journal_stream(ok.as_deref(), fd));
        let other = v(format!("{}:{}", md.dev(), md.ino() + 1));
        assert!(!is_journal_stream(other.as_deref(), fd));
        assert!(!is_journal_stream(None, fd));
        assert!(!is_journal_stream(v("junk".into()).as_deref(), fd));
    }

    #[test]
    fn syslog_datagrams_reach_the_socket() {
        let t = tempfile::tempdir().expect("tempdir");
        let sock = t.path().join("log");
        let server = UnixDatagram::bind(&sock).expect("bind");
        let logger = Logger {
            level: log::LevelFilter::Info,
            output: Output::Syslog,
            syslog: Mutex::new(None),
            syslog_path: sock.clone(),
            journal: false,
        };
        log::Log::log(
            &logger,
            &log::Record::builder()
                .level(log::Level::Info)
                .args(format_args!("hello {}", 1))
                .build(),
        );
        let mut buf = [0u8; 512];
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let n = server.recv(&mut buf).expect("recv");
        let s = String::from_utf8_lossy(&buf[..n]);
        assert!(s.starts_with("<30>"), "{s}");
        assert!(
            s.ends_with(&format!("livesync[{}]: hello 1", std::process::id())),
            "{s}"
        );
    }
}
