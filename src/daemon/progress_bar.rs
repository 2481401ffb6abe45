//! The initial sync's progress bar (indicatif, on stderr): files and bytes
//! done out of the total, rate and ETA, while the built-in mirror makes the
//! destination equal to the source for the first time. It appears only
//! when [`wanted`] says so (stderr is a terminal, livesync stays in front,
//! `--progress auto`, the mirror runs); otherwise nothing extra is written.
//!
//! One thread (`livesync-progress`) walks the source under the rules to
//! find the totals, then keeps redrawing from the mirror's counter
//! ([`crate::handler::counts::Counts`]) until the initial sync ends.
//! It only reads the source tree (lstat, never following symlinks) and
//! never touches the destination; the log goes around the bar through
//! [`super::log::set_progress_bar`].

use crate::config;
use crate::handler::counts::Counts;
use crate::rules::{Action, Kind, Rules};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the bar is redrawn.
const TICK: Duration = Duration::from_millis(100);

/// Whether the initial sync shows a bar: `--progress auto`, stderr is a
/// terminal, livesync does not go into the background (its stderr would be
/// /dev/null) and the handler is the built-in mirror (rsync runs as a child
/// and cannot be counted).
pub fn wanted(
    setting: config::Progress,
    stderr_is_terminal: bool,
    background: bool,
    mode: config::Mode,
) -> bool {
    setting == config::Progress::Auto
        && stderr_is_terminal
        && !background
        && mode == config::Mode::Mirror
}

/// Regular files and their bytes under `root` that the initial sync will
/// handle: directories the rules let it walk, files the rules let it sync.
/// Stops early (with what it has) when `stop` is set.
pub fn count_tree(
    root: &Path,
    rules: &Rules,
    stop: &AtomicBool,
    mut tick: impl FnMut(),
) -> (u64, u64) {
    let (mut files, mut bytes) = (0u64, 0u64);
    let mut dirs: Vec<(PathBuf, Vec<u8>)> = vec![(root.to_path_buf(), Vec::new())];
    let mut last = Instant::now();
    while let Some((dir, rel)) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            if stop.load(Ordering::Relaxed) {
                return (files, bytes);
            }
            if last.elapsed() >= TICK {
                tick();
                last = Instant::now();
            }
            let mut r = rel.clone();
            if !r.is_empty() {
                r.push(b'/');
            }
            r.extend_from_slice(e.file_name().as_bytes());
            let Ok(md) = e.path().symlink_metadata() else {
                continue;
            };
            if md.is_dir() {
                if rules.permits(&r, Kind::Dir, Action::Walk) {
                    dirs.push((e.path(), r));
                }
            } else if md.is_file() && rules.permits(&r, Kind::File, Action::Sync) {
                files += 1;
                bytes += md.len();
            }
        }
    }
    (files, bytes)
}

/// A running progress bar; [`InitialProgress::finish`] removes it.
pub struct InitialProgress {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    bar: ProgressBar,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

impl InitialProgress {
    /// Starts the bar for an initial sync of `root` (under `rules`), fed by
    /// `counter` (reset here).
    pub fn start(root: PathBuf, rules: Arc<Rules>, counter: Arc<Counts>) -> InitialProgress {
        counter.reset();
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(style(
            "{spinner} initial sync: {msg} files, {bytes} {binary_bytes_per_sec}, counting",
        ));
        super::log::set_progress_bar(Some(bar.clone()));
        let stop = Arc::new(AtomicBool::new(false));
        let (b, s) = (bar.clone(), Arc::clone(&stop));
        let redraw = move |b: &ProgressBar, total_files: Option<u64>| {
            b.set_position(counter.bytes());
            match total_files {
                Some(t) => b.set_message(format!("{}/{t}", counter.files())),
                None => b.set_message(counter.files().to_string()),
            }
        };
        let thread = std::thread::Builder::new()
            .name("livesync-progress".into())
            .spawn(move || {
                let (files, bytes) = count_tree(&root, &rules, &s, || redraw(&b, None));
                b.set_length(bytes);
                b.set_style(style(
                    "initial sync [{wide_bar}] {msg} files, {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                ));
                while !s.load(Ordering::Relaxed) {
                    redraw(&b, Some(files));
                    std::thread::park_timeout(TICK);
                }
            })
            .ok();
        InitialProgress { stop, thread, bar }
    }

    /// Stops redrawing and clears the bar from the terminal.
    pub fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
        self.bar.finish_and_clear();
        super::log::set_progress_bar(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Mode, Progress as P};

    #[test]
    fn the_bar_shows_only_on_a_terminal_in_front_with_the_mirror() {
        assert!(wanted(P::Auto, true, false, Mode::Mirror));
        assert!(
            !wanted(P::Auto, false, false, Mode::Mirror),
            "not a terminal"
        );
        assert!(!wanted(P::Auto, true, true, Mode::Mirror), "-b");
        assert!(
            !wanted(P::Never, true, false, Mode::Mirror),
            "--progress never"
        );
        assert!(!wanted(P::Auto, true, false, Mode::RsyncDirect), "rsync");
    }

    #[test]
    fn totals_follow_the_rules_and_never_follow_symlinks() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("a/cache")).unwrap();
        std::fs::write(r.join("a/one"), "12345").unwrap();
        std::fs::write(r.join("a/cache/big"), vec![0u8; 1000]).unwrap();
        std::fs::write(r.join("two.tmp"), "xx").unwrap();
        std::fs::write(r.join("three"), "abc").unwrap();
        std::os::unix::fs::symlink("/usr", r.join("link")).unwrap();
        let all = Rules::allow_all();
        let stop = AtomicBool::new(false);
        assert_eq!(count_tree(r, &all, &stop, || {}), (4, 1010));
        let rules = Rules::parse(b"-d(^|/)cache$\n-f\\.tmp$\n", "test").unwrap();
        assert_eq!(count_tree(r, &rules, &stop, || {}), (2, 8));
        stop.store(true, Ordering::Relaxed);
        assert_eq!(count_tree(r, &all, &stop, || {}), (0, 0), "stops at once");
    }
}
