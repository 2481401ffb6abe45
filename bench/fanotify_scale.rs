//! Scale benchmark of the fanotify backend against inotify (not run in CI;
//! driven by bench/fanotify_scale.sh). One process per measurement:
//!
//! - `mktree DIR N`: makes N directories below DIR (a two-level fan-out).
//! - `measure inotify|fanotify|walk DIR`: sets up the real `Tree` with
//!   the chosen backend as the daemon does with `--skip-initialsync`
//!   (inotify walks and watches every directory, fanotify registers only
//!   the root; `walk` = a backend that registers nothing, the cost of the
//!   walk alone) and prints one line of key=value
//!   pairs: setup seconds, directories registered, this process's RSS
//!   growth and the kernel's unreclaimable slab growth (system-wide, so
//!   other activity on the machine adds noise), then checks that a file
//!   created in a directory two levels down is reported.
//!
//! It only reads /proc and the tree it is given; it changes no sysctl.

// Both backends are Linux's; elsewhere only `walk` measures anything.
#[cfg(target_os = "linux")]
use livesync::monitor::fanotify::Fanotify;
#[cfg(target_os = "linux")]
use livesync::monitor::inotify::InotifyMonitor;
use livesync::monitor::{Monitor, MonitorError, RawEvent};
use livesync::rules::Rules;
use livesync::tree::Tree;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Registers nothing: what the walk itself costs.
struct Null;

impl Monitor for Null {
    fn add_watch(&mut self, _rel: &[u8]) -> Result<(), MonitorError> {
        Ok(())
    }
    fn forget_subtree(&mut self, _rel: &[u8]) {}
    fn read_events(&mut self, _out: &mut Vec<RawEvent>) -> Result<(), MonitorError> {
        Ok(())
    }
    fn fd(&self) -> i32 {
        -1
    }
    fn watch_count(&self) -> usize {
        0
    }
    fn watched_under(&self, _rel: &[u8]) -> Vec<Vec<u8>> {
        Vec::new()
    }
    fn is_watched(&self, _rel: &[u8]) -> bool {
        false
    }
}

fn kib(file: &str, key: &str) -> u64 {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn rss_kib() -> u64 {
    kib("/proc/self/status", "VmRSS:")
}

fn slab_kib() -> u64 {
    kib("/proc/meminfo", "SUnreclaim:")
}

fn mktree(dir: &Path, n: usize) -> std::io::Result<()> {
    let fan = (n as f64).sqrt().ceil().max(1.0) as usize;
    let mut made = 0;
    'outer: for i in 0..fan {
        let top = dir.join(format!("t{i:04}"));
        std::fs::create_dir_all(&top)?;
        made += 1;
        for j in 0..fan {
            if made >= n {
                break 'outer;
            }
            std::fs::create_dir(top.join(format!("d{j:04}")))?;
            made += 1;
        }
    }
    println!("made={made}");
    Ok(())
}

/// The deepest directory `mktree` makes first (or the root).
fn probe_dir(root: &Path) -> PathBuf {
    let deep = root.join("t0000").join("d0000");
    if deep.is_dir() {
        deep
    } else {
        root.to_path_buf()
    }
}

fn measure(kind: &str, root: &Path) -> Result<(), String> {
    let root = root.canonicalize().map_err(|e| e.to_string())?;
    let mut tree = Tree::new(root.clone(), Arc::new(Rules::allow_all()), 0);
    // Warm the dentry cache so every backend walks a cached tree.
    let dirs = tree
        .watch_subtree(&mut Null, b"", true)
        .map_err(|e| e.to_string())?;
    let (rss0, slab0) = (rss_kib(), slab_kib());
    let t0 = Instant::now();
    let mut mon: Box<dyn Monitor> = match kind {
        #[cfg(target_os = "linux")]
        "inotify" => Box::new(InotifyMonitor::new(&root).map_err(|e| e.to_string())?),
        #[cfg(target_os = "linux")]
        "fanotify" => {
            let mut f = Fanotify::new(&root).map_err(|e| e.to_string())?;
            // The probe below is written by this very process.
            f.set_ignored_pid(None);
            Box::new(f)
        }
        "walk" => Box::new(Null),
        other => return Err(format!("unknown backend {other}")),
    };
    let init = t0.elapsed();
    // As the daemon with --skip-initialsync: fanotify needs no walk.
    tree.walk_at_start(false);
    tree.watch_subtree(mon.as_mut(), b"", true)
        .map_err(|e| e.to_string())?;
    let setup = t0.elapsed();
    let (rss1, slab1) = (rss_kib(), slab_kib());
    let mut seen = "n/a".to_string();
    if kind != "walk" {
        let probe = probe_dir(&root).join("probe");
        std::fs::write(&probe, b"p").map_err(|e| e.to_string())?;
        let end = Instant::now() + Duration::from_secs(10);
        let mut out = Vec::new();
        let want = probe
            .strip_prefix(&root)
            .map(|p| p.as_os_str().as_encoded_bytes().to_vec())
            .unwrap_or_default();
        seen = "no".into();
        while Instant::now() < end {
            out.clear();
            let _ = mon.read_events(&mut out);
            if out.iter().any(|e| e.path == want) {
                seen = "yes".into();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_file(&probe);
    }
    let per = |kib: u64| (kib as f64 * 1024.0) / dirs.max(1) as f64;
    println!(
        "backend={kind} dirs={dirs} registered={} init_s={:.4} setup_s={:.3} rss_delta_kib={} rss_bytes_per_dir={:.0} slab_delta_kib={} slab_bytes_per_dir={:.0} event_seen={seen}",
        mon.watch_count(),
        init.as_secs_f64(),
        setup.as_secs_f64(),
        rss1.saturating_sub(rss0),
        per(rss1.saturating_sub(rss0)),
        slab1 as i64 - slab0 as i64,
        per(slab1.saturating_sub(slab0)),
    );
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let res = match args.get(1).map(String::as_str) {
        Some("mktree") if args.len() == 4 => match args[3].parse() {
            Ok(n) => mktree(Path::new(&args[2]), n).map_err(|e| e.to_string()),
            Err(e) => Err(format!("bad count {}: {e}", args[3])),
        },
        Some("measure") if args.len() == 4 => measure(&args[2], Path::new(&args[3])),
        _ => Err("usage: fanotify_scale mktree DIR N | measure inotify|fanotify|walk DIR".into()),
    };
    if let Err(e) = res {
        eprintln!("fanotify_scale: {e}");
        std::process::exit(1);
    }
}
