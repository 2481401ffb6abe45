//! Prometheus text metrics (exposition format 0.0.4): rendering a
//! [`StatusReport`] snapshot as metric lines, and the `--metrics-file` writer
//! that replaces a file atomically (temp file in the same directory, then
//! rename) so a collector such as node_exporter's textfile collector never
//! reads half a file. The control socket's `metrics` command replies with
//! the same text followed by a `# EOF` line (a comment to Prometheus, the
//! end marker to a client). This module decides nothing about *when* to
//! write; the event loop does. It holds no process-global state.
//!
//! Metrics (all prefixed `livesync_`):
//!
//! | name | type | labels | meaning |
//! |---|---|---|---|
//! | `info` | gauge (1) | version, label, watch_dir | who this is |
//! | `state` | gauge (0/1) | state | one-hot: the clsync status word now |
//! | `events_total` | counter | | kernel events read |
//! | `batches_total` | counter | | handler runs finished (ok or not) |
//! | `paths_synced_total` | counter | | operations of successful batches |
//! | `failures_total` | counter | | failed handler runs |
//! | `retries_total` | counter | | batches queued again after a failure |
//! | `rescans_total` | counter | | rescans after lost events |
//! | `skipped_paths` | gauge | | source paths skipped because the daemon may not read them |
//! | `failed_paths` | gauge | | paths that failed on their own and wait for their retries |
//! | `queue_depth` | gauge | lane | pending operations per lane |
//! | `oldest_pending_age_seconds` | gauge | | lag of the oldest pending change (0: none) |
//! | `destination_up` | gauge (0/1) | destination | 0 while the last sync to it failed |
//! | `destination_state` | gauge (0/1) | destination, state | one-hot: `ok`, `failing` or `unknown` (no sync yet) |
//! | `destination_last_sync_timestamp_seconds` | gauge | destination | when the last sync finished |
//! | `destination_last_sync_duration_seconds` | gauge | destination | how long it took |

use super::socket::StatusReport;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often `--metrics-file` is rewritten when nothing else triggers it.
pub const FILE_INTERVAL: Duration = Duration::from_secs(10);

/// The last line of the control socket's `metrics` reply.
pub const END_MARKER: &str = "# EOF";

/// Every status word, so that `livesync_state` is one-hot over a fixed set.
pub const STATES: [&str; 9] = [
    "starting",
    "initsync",
    "running",
    "synchandler error",
    "hold on",
    "rehashing",
    "preexit",
    "terminating",
    "exiting",
];

/// Escapes a label value: backslash, double quote and line feed.
fn label(out: &mut String, v: &str) {
    out.push('"');
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP livesync_{name} {help}");
    let _ = writeln!(out, "# TYPE livesync_{name} {kind}");
}

fn counter(s: &StatusReport, name: &str) -> u64 {
    s.counters
        .iter()
        .find(|(n, _)| n == name)
        .map_or(0, |(_, v)| *v)
}

/// Seconds as Prometheus writes them: at most three decimals, no exponent.
fn secs_ms(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// The metrics of `s` in Prometheus text format, every line ending in `\n`.
pub fn render(s: &StatusReport) -> String {
    let mut o = String::with_capacity(2048);
    head(
        &mut o,
        "info",
        "gauge",
        "Version and identity of this livesync instance.",
    );
    o.push_str("livesync_info{version=");
    label(&mut o, &s.version);
    o.push_str(",label=");
    label(&mut o, &s.label);
    o.push_str(",watch_dir=");
    label(&mut o, &s.watch_dir);
    o.push_str("} 1\n");

    head(
        &mut o,
        "state",
        "gauge",
        "The daemon's state (clsync's status words); 1 for the current one.",
    );
    for st in STATES {
        o.push_str("livesync_state{state=");
        label(&mut o, st);
        let _ = writeln!(o, "}} {}", u8::from(s.state == st));
    }

    for (name, key, help) in [
        ("events_total", "events", "Kernel change events read."),
        (
            "batches_total",
            "batches",
            "Handler runs finished, successful or not.",
        ),
        (
            "paths_synced_total",
            "paths_synced",
            "Operations in successful batches.",
        ),
        ("failures_total", "failures", "Failed handler runs."),
        (
            "retries_total",
            "retries",
            "Batches queued again after a failure.",
        ),
        (
            "rescans_total",
            "rescans",
            "Rescans after the kernel lost events.",
        ),
    ] {
        head(&mut o, name, "counter", help);
        let _ = writeln!(o, "livesync_{name} {}", counter(s, key));
    }

    for (name, help) in [
        (
            "skipped_paths",
            "Source paths skipped because the daemon may not read them.",
        ),
        (
            "failed_paths",
            "Paths that failed on their own and wait for their retries.",
        ),
    ] {
        head(&mut o, name, "gauge", help);
        let _ = writeln!(o, "livesync_{name} {}", counter(s, name));
    }

    head(
        &mut o,
        "queue_depth",
        "gauge",
        "Pending operations per lane.",
    );
    for (lane, n) in &s.queue {
        o.push_str("livesync_queue_depth{lane=");
        label(&mut o, lane);
        let _ = writeln!(o, "}} {n}");
    }
    head(
        &mut o,
        "oldest_pending_age_seconds",
        "gauge",
        "Age of the oldest pending change (0 when nothing is pending).",
    );
    let _ = writeln!(
        o,
        "livesync_oldest_pending_age_seconds {}",
        secs_ms(s.oldest_pending_age_ms.unwrap_or(0))
    );

    destination(&mut o, s);
    o
}

/// The destination's metrics: up, state, and the last sync's time and
/// duration.
fn destination(o: &mut String, s: &StatusReport) {
    let dest = |o: &mut String, name: &str| {
        let _ = write!(o, "livesync_{name}{{destination=");
        label(o, &s.destination);
    };
    let state = match &s.last_sync {
        None => "unknown",
        Some(l) if l.ok => "ok",
        Some(_) => "failing",
    };
    head(
        o,
        "destination_up",
        "gauge",
        "0 while the last sync to the destination failed, else 1.",
    );
    dest(o, "destination_up");
    let _ = writeln!(o, "}} {}", u8::from(state != "failing"));
    head(
        o,
        "destination_state",
        "gauge",
        "State of the destination: ok, failing or unknown (no sync yet); 1 for the current one.",
    );
    for st in ["ok", "failing", "unknown"] {
        dest(o, "destination_state");
        o.push_str(",state=");
        label(o, st);
        let _ = writeln!(o, "}} {}", u8::from(st == state));
    }
    if let Some(l) = &s.last_sync {
        head(
            o,
            "destination_last_sync_timestamp_seconds",
            "gauge",
            "When the last sync to the destination finished (Unix time).",
        );
        dest(o, "destination_last_sync_timestamp_seconds");
        let _ = writeln!(o, "}} {}", secs_ms(l.finished_unix_ms));
        head(
            o,
            "destination_last_sync_duration_seconds",
            "gauge",
            "How long the last sync to the destination took.",
        );
        dest(o, "destination_last_sync_duration_seconds");
        let _ = writeln!(o, "}} {}", secs_ms(l.duration_ms));
    }
}

/// `--metrics-file`: rewrites one file atomically (see `files.rs`: a temp
/// file beside it, renamed over it; a symlink there is replaced, never
/// followed). Write errors are logged (the first at warn, later ones at
/// debug) and never stop the daemon.
#[derive(Debug)]
pub struct MetricsFile {
    path: PathBuf,
    warned: bool,
}

impl MetricsFile {
    pub fn new(path: &Path) -> MetricsFile {
        MetricsFile {
            path: path.to_path_buf(),
            warned: false,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the file with `text`.
    pub fn write(&mut self, text: &str) {
        // 0644, unlike the other control files: metrics hold counts and
        // paths, no secrets, and a collector usually runs as another user.
        // The temp file's name starts with a dot and does not end in
        // `.prom`: node_exporter's textfile collector never reads it
        // half-written.
        if let Err(e) = super::files::replace_file(&self.path, text.as_bytes(), 0o644) {
            let msg = format!(
                "cannot write the metrics file {}: {e}; check --metrics-file",
                crate::path::display_os(&self.path)
            );
            if self.warned {
                ::log::debug!("{msg}");
            } else {
                ::log::warn!("{msg}");
                self.warned = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::socket::LastSync;
    use std::collections::BTreeMap;
    use std::fs;

    fn status() -> StatusReport {
        StatusReport {
            state: "running".into(),
            queue: vec![
                ("normal".into(), 3),
                ("big".into(), 1),
                ("instant".into(), 0),
            ],
            oldest_pending_age_ms: Some(1500),
            last_sync: None,
            counters: vec![
                ("events".into(), 10),
                ("batches".into(), 4),
                ("paths_synced".into(), 7),
                ("failures".into(), 1),
                ("retries".into(), 1),
                ("rescans".into(), 0),
                ("skipped_paths".into(), 2),
                ("failed_paths".into(), 5),
            ],
            watch_dir: "/s\"x\\".into(),
            destination: "/d\nz".into(),
            label: "lab".into(),
            pid: 1,
            version: "0.1.0".into(),
        }
    }

    /// Parses sample lines into `name{labels}` → value, checking that each
    /// metric has a TYPE line before its samples.
    pub(crate) fn parse(text: &str) -> BTreeMap<String, f64> {
        let mut typed = std::collections::BTreeSet::new();
        let mut out = BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut w = rest.split(' ');
                typed.insert(w.next().unwrap().to_string());
                assert!(matches!(w.next(), Some("gauge" | "counter")), "{line}");
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let (key, value) = line.rsplit_once(' ').expect(line);
            let name = key.split('{').next().unwrap();
            assert!(typed.contains(name), "{name} has no TYPE line");
            out.insert(key.to_string(), value.parse::<f64>().expect(line));
        }
        out
    }

    #[test]
    fn every_metric_is_rendered_and_parses() {
        let m = parse(&render(&status()));
        assert_eq!(m["livesync_events_total"], 10.0);
        assert_eq!(m["livesync_batches_total"], 4.0);
        assert_eq!(m["livesync_skipped_paths"], 2.0);
        assert_eq!(m["livesync_failed_paths"], 5.0);
        assert_eq!(m["livesync_paths_synced_total"], 7.0);
        assert_eq!(m["livesync_failures_total"], 1.0);
        assert_eq!(m["livesync_retries_total"], 1.0);
        assert_eq!(m["livesync_queue_depth{lane=\"normal\"}"], 3.0);
        assert_eq!(m["livesync_queue_depth{lane=\"big\"}"], 1.0);
        assert_eq!(m["livesync_oldest_pending_age_seconds"], 1.5);
        assert_eq!(m["livesync_state{state=\"running\"}"], 1.0);
        assert_eq!(m["livesync_state{state=\"hold on\"}"], 0.0);
        let states: f64 = m
            .iter()
            .filter(|(k, _)| k.starts_with("livesync_state{"))
            .map(|(_, v)| v)
            .sum();
        assert_eq!(states, 1.0, "one-hot");
        // Label values are escaped.
        assert_eq!(m["livesync_destination_up{destination=\"/d\\nz\"}"], 1.0);
        assert_eq!(
            m["livesync_destination_state{destination=\"/d\\nz\",state=\"unknown\"}"],
            1.0
        );
        assert!(m.contains_key(
            "livesync_info{version=\"0.1.0\",label=\"lab\",watch_dir=\"/s\\\"x\\\\\"}"
        ));
        assert!(!m.keys().any(|k| k.contains("last_sync")));
    }

    #[test]
    fn a_failed_last_sync_marks_the_destination_down() {
        let mut s = status();
        s.destination = "/d".into();
        s.last_sync = Some(LastSync {
            finished_unix_ms: 1_700_000_000_123,
            duration_ms: 42,
            exit_code: Some(23),
            ok: false,
        });
        let m = parse(&render(&s));
        assert_eq!(m["livesync_destination_up{destination=\"/d\"}"], 0.0);
        assert_eq!(
            m["livesync_destination_state{destination=\"/d\",state=\"failing\"}"],
            1.0
        );
        assert_eq!(
            m["livesync_destination_last_sync_timestamp_seconds{destination=\"/d\"}"],
            1_700_000_000.123
        );
        assert_eq!(
            m["livesync_destination_last_sync_duration_seconds{destination=\"/d\"}"],
            0.042
        );
        s.last_sync.as_mut().unwrap().ok = true;
        let m = parse(&render(&s));
        assert_eq!(m["livesync_destination_up{destination=\"/d\"}"], 1.0);
    }

    #[test]
    fn the_file_is_replaced_whole_and_no_temp_is_left() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("livesync.prom");
        let mut f = MetricsFile::new(&p);
        f.write("a 1\n");
        assert_eq!(fs::read_to_string(&p).unwrap(), "a 1\n");
        f.write("b 2\n");
        assert_eq!(fs::read_to_string(&p).unwrap(), "b 2\n");
        drop(f);
        let names: Vec<_> = fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from("livesync.prom")]);
    }

    #[test]
    fn a_symlink_at_the_metrics_path_is_replaced_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let target = t.path().join("target");
        fs::write(&target, "precious\n").unwrap();
        let p = t.path().join("livesync.prom");
        std::os::unix::fs::symlink(&target, &p).unwrap();
        let mut f = MetricsFile::new(&p);
        f.write("a 1\n");
        assert_eq!(fs::read_to_string(&target).unwrap(), "precious\n");
        let m = fs::symlink_metadata(&p).unwrap();
        assert!(m.file_type().is_file(), "the link itself was replaced");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(m.permissions().mode() & 0o777, 0o644);
        assert_eq!(fs::read_to_string(&p).unwrap(), "a 1\n");
    }
}
