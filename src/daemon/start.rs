//! Starting: the process-wide setup in its order (open-file limit,
//! batch-mode ssh, signals, the destination, pid file and control socket,
//! the `--chroot` keeper, the privilege drop, the watches, the handlers),
//! then the loop, then the cleanup.

use super::*;

/// Runs livesync with a validated configuration until it is stopped. Every
/// error is logged (one line) before it is returned.
pub fn run(cfg: Config) -> Result<(), DaemonError> {
    // -b with syslog: warnings and errors reach the terminal until detached.
    let tee = cfg.background && cfg.output == crate::config::Output::Syslog;
    if tee {
        log::tee_until_detached();
    }
    if let Err(e) = log::init_with(cfg.log_level, cfg.output, &cfg.syslog_socket) {
        // The logger cannot carry this one, nor the configuration's.
        eprintln!("livesync: warning: {e}");
        if !tee {
            for w in &cfg.warnings {
                eprintln!("livesync: warning: {w}");
            }
        }
    }
    for w in &cfg.warnings {
        ::log::warn!("{w}");
    }
    ::log::info!("{}", startup_line(&cfg));
    let result = start_and_run(cfg);
    // --chroot: the keeper removes the pid file and the socket now.
    jail::finish();
    match &result {
        Err(e) => ::log::error!("{e}"),
        Ok(()) => ::log::info!("exiting"),
    }
    result
}

/// What rsync runs to reach a `host:path` destination when `RSYNC_RSH` is
/// not set: ssh that never asks anything (a password, a passphrase, "add
/// this host key?") and fails with a message instead. Nobody can answer a
/// daemon's handler; without a terminal the question is never seen.
pub const DEFAULT_RSYNC_RSH: &str = "ssh -o BatchMode=yes";

/// Sets `RSYNC_RSH` to [`DEFAULT_RSYNC_RSH`] for every program livesync
/// runs, unless it is set already. rsync's own `-e`/`--rsh` in a handler
/// template still win over it. Call it before any thread starts.
pub(super) fn batch_mode_ssh() {
    if std::env::var_os("RSYNC_RSH").is_none() {
        std::env::set_var("RSYNC_RSH", DEFAULT_RSYNC_RSH);
    }
}

/// The watch dir must be listable and searchable by the daemon's user (as
/// it is after dropping privileges): nothing below an unreadable one can
/// ever be synced, so that is a usage error, not a failure to retry.
pub(super) fn check_watch_dir_readable(dir: &std::path::Path) -> Result<(), DaemonError> {
    let listed = std::fs::read_dir(dir).and_then(|mut d| d.next().transpose());
    let searched = listed.and_then(|_| std::fs::symlink_metadata(dir.join(".")));
    searched.map(|_| ()).map_err(|e| {
        DaemonError::WatchDirUnreadable(format!(
            "watch dir {}: cannot read it as uid {}: {e}; make it readable and searchable by that user, or run as another (-u)",
            path::display_os(dir),
            nix::unistd::geteuid()
        ))
    })
}

/// The first info line: what is watched, how, where it goes and the delay
/// windows in force (the 30 s defaults surprise people who expect a
/// mirror to follow within a second).
pub(super) fn startup_line(cfg: &Config) -> String {
    let secs = |d: Duration| format!("{} s", d.as_secs_f64());
    let program = cfg
        .handler_program
        .as_ref()
        .map(|p| format!(" ({})", path::display(p.as_bytes())))
        .unwrap_or_default();
    let dest = match (&cfg.destination, &cfg.mode) {
        (Some(d), _) => format!("to {}", path::display(d.as_os_str().as_bytes())),
        (None, Mode::Csync2) => "to the peers in csync2's config".to_string(),
        (None, _) => "with no destination (-D)".to_string(),
    };
    let q = &cfg.queue;
    let big = if q.big_threshold == 0 {
        "no big-file lane (-B 0)".to_string()
    } else {
        format!(
            "files over {} bytes wait {} (-T)",
            q.big_threshold,
            secs(q.delay_big)
        )
    };
    format!(
        "{} {}: watch dir {} with {}, mode {}{program}, {dest}{}; changes wait {} (-t), {big}, at least {} between syncs (-w)",
        env!("CARGO_PKG_NAME"),
        env!("CARGO_PKG_VERSION"),
        path::display_os(&cfg.watch_dir),
        if cfg.only_initialsync { "nothing (--only-initialsync)" } else { cfg.monitor.name() },
        cfg.mode.name(),
        if cfg.dry_run { " (dry run: nothing is written)" } else { "" },
        secs(q.delay),
        secs(q.interval)
    )
}

/// Raises the soft limit of open files to the hard limit: the mirror holds
/// two directory descriptors per level of a deep tree, and inotify itself
/// needs none per watch, so the default soft limit of 1,024 is the only one
/// a deep tree could hit.
pub(super) fn raise_open_file_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                ::log::debug!(
                    "cannot raise the open-file limit: {}",
                    io::Error::last_os_error()
                );
            }
        }
    }
}

/// Directories livesync made at start (a missing destination and its
/// parents), removed again, deepest first and only while empty, when the
/// start fails before the loop: a failed start leaves nothing behind.
#[derive(Default)]
pub(super) struct MadeDirs(Vec<PathBuf>);

impl MadeDirs {
    /// Makes `dir` and its missing parents (`mkdir -p`), remembering which.
    pub(super) fn create(dir: &std::path::Path) -> Result<MadeDirs, DaemonError> {
        let missing: Vec<PathBuf> = dir
            .ancestors()
            .take_while(|a| std::fs::symlink_metadata(a).is_err())
            .map(std::path::Path::to_path_buf)
            .collect();
        let mut made = MadeDirs::default();
        for d in missing.into_iter().rev() {
            match std::fs::create_dir(&d) {
                Ok(()) => made.0.push(d),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(DaemonError::GaveUp(format!(
                        "cannot create the destination {}: {e}; create it or check permissions",
                        path::display_os(dir)
                    )))
                }
            }
        }
        Ok(made)
    }

    /// The start went through: they stay.
    pub(super) fn keep(mut self) {
        self.0.clear();
    }
}

impl Drop for MadeDirs {
    fn drop(&mut self) {
        for d in self.0.iter().rev() {
            if let Err(e) = std::fs::remove_dir(d) {
                ::log::debug!("cannot remove {} again: {e}", path::display_os(d));
            }
        }
    }
}

pub(super) fn start_and_run(mut cfg: Config) -> Result<(), DaemonError> {
    // Before any thread starts: it edits the environment.
    let notifier = telemetry::notifier_from_env();
    batch_mode_ssh();
    raise_open_file_limit();
    let argv: Vec<OsString> = std::env::args_os().collect();
    let start_dir = std::env::current_dir().ok();
    let mut ready = if cfg.background {
        background::daemonize().map_err(io_err("cannot go into the background (-b)"))?
    } else {
        background::Ready::none()
    };
    make_work_dirs(&cfg)?;
    // Guards: dropped (files removed) however this function returns.
    let mut pid_file = match &cfg.pid_file {
        Some(p) => Some(files::PidFile::create(p).map_err(DaemonError::GaveUp)?),
        None => None,
    };
    let mut status_file = cfg.status_file.as_deref().map(StatusFile::new);
    if let Some(f) = status_file.as_mut() {
        f.set(Status::Starting);
    }
    let signals = Signals::install(&cfg.custom_signals)?;
    let mut socket = match &cfg.socket {
        Some(p) => Some(
            socket::ControlSocket::bind(p, cfg.socket_owner, cfg.socket_mode)
                .map_err(|e| DaemonError::GaveUp(format!("control socket: {e}")))?,
        ),
        None => None,
    };
    if cfg.privileges.jail.is_some() {
        hand_to_keeper(&cfg, &mut pid_file, &mut socket)?;
    }
    // The mirror's destination and its missing parents are made now, by
    // the invoking user: made after the drop they would belong to nobody,
    // and a nobody process could swap them for a symlink.
    // A start that fails before the loop removes them again. A dry run
    // writes nothing, not even the destination.
    let made_dst = match (&cfg.mode, &cfg.destination) {
        (Mode::Mirror, Some(Destination::Local(dst))) if !cfg.dry_run => MadeDirs::create(dst)?,
        _ => MadeDirs::default(),
    };
    // Privileges are dropped here, once, single-threaded: after what needs
    // root (pid file, status file, control socket), before the tree is
    // walked and watched (src/security/privilege.rs). With --chroot, `cfg`'s
    // paths are the jail's from here on.
    privilege::apply(&mut cfg)?;
    if let (Some(f), Some(p)) = (status_file.as_mut(), &cfg.status_file) {
        f.moved_to(p);
    }
    let (monitor, tree) = watch(&cfg)?;
    let mut build = build_context();
    let mut handlers = handler::build_all(&cfg, &mut build)?;
    let telemetry = with_progress(
        &cfg,
        &mut handlers,
        telemetry::Telemetry::new(notifier, cfg.metrics_file.as_deref()),
    );
    let worker = Worker::spawn(handlers)?;
    let queue = first_queue(&cfg);
    let initial_done = cfg.skip_initialsync;
    made_dst.keep();
    let mut daemon = Daemon {
        cfg,
        build,
        monitor,
        tree,
        queue,
        worker,
        signals,
        raw: Vec::new(),
        changes: Vec::new(),
        last_unwatched_rescan: Instant::now(),
        argv,
        start_dir: start_dir.filter(|_| ready.forked()),
        status: Status::Starting,
        status_file,
        initial_done,
        initial_running: false,
        iterations: 0,
        retry_at: None,
        standby: false,
        next_standby_check: Instant::now(),
        paused: false,
        ending: None,
        killed: false,
        ops_in_flight: 0,
        kill_deadline: None,
        signatures: None,
        socket,
        counters: Counters::default(),
        skipped: std::collections::BTreeMap::new(),
        next_skipped_retry: None,
        last_sync: None,
        telemetry,
        batch_log: batchlog::BatchLog::default(),
    };
    daemon.signatures = daemon
        .cfg
        .modification_signature
        .clone()
        .map(|m| signature::Signatures::new(&daemon.cfg.watch_dir, m));
    ready.notify();
    daemon.telemetry.ready(daemon.status, Instant::now());
    let result = daemon.run();
    if result.is_ok() {
        daemon.set_status(Status::Exiting);
    }
    let snapshot = daemon.socket_status();
    daemon.telemetry.finish(&snapshot);
    result
}

/// What the `--chroot` keeper does at the end: removes the pid file and
/// the control socket, each only while it is still the one livesync made.
pub(super) fn remove_leftovers(left: &jail::Leftovers) {
    if let Some((p, ident)) = &left.pid_file {
        files::remove_pid_file(p, *ident);
    }
    if let Some((p, ident)) = &left.socket {
        socket::remove_socket_file(p, *ident);
    }
}

/// What building handlers needs from the daemon (see
/// `handler::build::Context`); called after the privileges are dropped.
pub(super) fn build_context() -> build::Context {
    build::Context {
        dst_root: None,
        preserve_owner: privilege::dropped_from_root(),
        helper_mirror: Some(helper_mirror),
    }
}

/// The client of the mirror the `--splitting=process` helper runs.
pub(super) fn helper_mirror(rules: &Rules) -> Option<Result<Box<dyn Handler>, HandlerError>> {
    split::mirror_client(rules).map(|r| r.map(|c| Box::new(c) as Box<dyn Handler>))
}

/// A new directory's subtree skips the `-t` window when the handler asks
/// for that (see `handler::build::new_dirs_at_once`).
pub(super) fn at_once(cfg: &Config, c: Change) -> Change {
    match c {
        Change::Subtree { path, .. } if build::new_dirs_at_once(cfg) => Change::Subtree {
            path,
            instant: true,
        },
        c => c,
    }
}

/// A missing -L or --dump-dir is created (clsync does: /dev/shm is empty
/// after a reboot), before the privilege drop, for the user the daemon
/// becomes.
fn make_work_dirs(cfg: &Config) -> Result<(), DaemonError> {
    let owner = privilege::Plan::new(cfg, privilege::current())
        .ok()
        .and_then(|p| p.daemon)
        .map(|who| (who.uid, who.gid));
    for (dir, what) in [
        (&cfg.lists_dir, "lists dir (-L)"),
        (&cfg.dump_dir, "dump dir"),
    ] {
        if let Some(d) = dir {
            files::ensure_dir(d, what, owner).map_err(DaemonError::GaveUp)?;
        }
    }
    Ok(())
}

/// --chroot: the pid file and the socket may lie outside the jail; the
/// keeper, which stays outside, removes them at the end (and the daemon's
/// own guards no longer do).
fn hand_to_keeper(
    cfg: &Config,
    pid_file: &mut Option<files::PidFile>,
    socket: &mut Option<socket::ControlSocket>,
) -> Result<(), DaemonError> {
    let left = jail::Leftovers {
        pid_file: pid_file.as_ref().map(files::PidFile::keeper_view),
        socket: socket.as_ref().map(socket::ControlSocket::keeper_view),
    };
    jail::spawn_keeper(cfg, left, remove_leftovers)?;
    if let Some(p) = pid_file.take() {
        p.disown();
    }
    if let Some(s) = socket.as_mut() {
        s.disown_file();
    }
    Ok(())
}

/// Checks the watch dir, opens the backend and walks and watches the tree
/// (nothing is watched with `--only-initialsync`).
fn watch(cfg: &Config) -> Result<(Box<dyn Monitor>, Tree), DaemonError> {
    check_watch_dir_readable(&cfg.watch_dir)?;
    let mut monitor = crate::monitor::open(cfg.monitor, &cfg.watch_dir, &cfg.monitor_options)?;
    let mut tree = Tree::new(
        cfg.watch_dir.clone(),
        Arc::clone(&cfg.rules),
        cfg.queue.big_threshold,
    );
    tree.record_masks(build::reports_masks(&cfg.mode));
    if let Some(Destination::Local(dst)) = &cfg.destination {
        // A local destination is never walked from the source side, even
        // when a bind mount puts it below the watch dir.
        use std::os::unix::fs::MetadataExt;
        if let Ok(m) = std::fs::metadata(dst) {
            tree.never_enter((m.dev(), m.ino()));
        }
    }
    tree.track_links(!cfg.cancel_mon_stat);
    // (fanotify: no walk at start without an initial sync.)
    tree.walk_at_start(!cfg.skip_initialsync);
    if cfg.only_initialsync {
        ::log::info!(
            "--only-initialsync: syncing {} once, watching nothing",
            path::display_os(&cfg.watch_dir)
        );
    } else {
        let started = Instant::now();
        let dirs = tree
            .watch_subtree(&mut monitor, b"", true)
            .map_err(|e| match e {
                e @ MonitorError::WatchLimit { .. } => DaemonError::WatchLimit(e),
                e => DaemonError::Monitor(e),
            })?;
        ::log::info!(
            "watching {} director{} under {} with {} ({:.0} ms)",
            monitor.watch_count(),
            if dirs == 1 { "y" } else { "ies" },
            path::display_os(&cfg.watch_dir),
            cfg.monitor.name(),
            started.elapsed().as_secs_f64() * 1000.0
        );
    }
    Ok((monitor, tree))
}

/// The initial sync's progress bar, when wanted: every handler that can
/// (the mirror) counts into one bar; only one of them runs the initial
/// sync.
fn with_progress(
    cfg: &Config,
    handlers: &mut [Box<dyn Handler>],
    mut telemetry: telemetry::Telemetry,
) -> telemetry::Telemetry {
    {
        use std::io::IsTerminal;
        let tty = std::io::stderr().is_terminal();
        if progress_bar::wanted(cfg.progress, tty, cfg.background, cfg.mode.clone())
            && !cfg.skip_initialsync
        {
            let counter = Arc::new(crate::handler::counts::Counts::default());
            let mut any = false;
            for h in handlers.iter_mut() {
                any |= h.count_progress(Arc::clone(&counter));
            }
            if any {
                telemetry = telemetry.with_progress(telemetry::ProgressSetup {
                    root: cfg.watch_dir.clone(),
                    rules: Arc::clone(&cfg.rules),
                    counter,
                });
            }
        }
    }
    telemetry
}

/// The queue, with the initial sync in it unless `--skip-initialsync`.
fn first_queue(cfg: &Config) -> Queue {
    let mut queue = Queue::new(cfg.queue.clone());
    // -p safe: batches in flight never share a path.
    queue.set_exclusive(cfg.threading == Threading::Safe);
    if cfg.skip_initialsync {
        ::log::info!("--skip-initialsync: syncing only what changes from now on");
    } else {
        // The initial sync: the whole tree, no window.
        queue.push(
            Instant::now(),
            Change::Subtree {
                path: Vec::new(),
                instant: true,
            },
        );
    }
    queue
}
