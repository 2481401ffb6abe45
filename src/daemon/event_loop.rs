//! The loop itself: act on signals and control requests, collect finished
//! work, drain kernel events into the queue, start what is due, then wait
//! on every fd with a timeout at the next deadline. Also the status it
//! derives and reports (status file, control socket, dump).

use super::*;

/// How often the standby file is looked at while it holds syncs (and, at
/// most, while it does not).
pub(super) const STANDBY_POLL: Duration = Duration::from_millis(250);

pub(super) const STANDBY_IDLE_POLL: Duration = Duration::from_secs(1);

/// How long an unpaired `IN_MOVED_FROM` waits for its `IN_MOVED_TO`.
pub(super) const MOVE_PAIR_WAIT: Duration = Duration::from_millis(2);

/// How many reads of the kernel queue one turn of the loop may do.
pub(super) const MAX_READS_PER_TURN: usize = 64;

impl Daemon {
    pub(super) fn run(&mut self) -> Result<(), DaemonError> {
        loop {
            if self.act_on_signals() {
                return Ok(());
            }
            // Collect finished batches first and only then read the kernel:
            // every event the handlers' runs could have raced with is queued
            // by then, and the queue must see it before `finished()`.
            let dones: Vec<Done> = std::iter::from_fn(|| self.worker.try_done()).collect();
            self.drain_events()?;
            for done in dones {
                self.finish(done)?;
            }
            let now = Instant::now();
            self.keep_house(now);
            self.check_soft_end();
            if self.ending.is_some() {
                if self.advance_ending(now)? {
                    return Ok(());
                }
            } else {
                self.start_due_batches(now)?;
            }
            self.set_status(self.derived_status());
            if self.wait(now)? {
                return Ok(());
            }
        }
    }

    /// Acts on the signals caught since the last turn; true: leave now.
    fn act_on_signals(&mut self) -> bool {
        if self.signals.stop.swap(false, Ordering::SeqCst) && self.control(Control::Stop) {
            return true;
        }
        if self.signals.quit.swap(false, Ordering::SeqCst) {
            self.control(Control::Quit);
        }
        if self.signals.resync.swap(false, Ordering::SeqCst) {
            self.control(Control::Resync);
        }
        if self.signals.reload.swap(false, Ordering::SeqCst) {
            self.reload(None);
        }
        if self.signals.dump.swap(false, Ordering::SeqCst) {
            self.dump();
        }
        let blocks: Vec<String> = self
            .signals
            .custom
            .iter()
            .filter(|(_, flag, _)| flag.swap(false, Ordering::SeqCst))
            .map(|(_, _, block)| block.clone())
            .collect();
        for block in blocks {
            self.reload(Some(&block));
        }
        false
    }

    /// What is due each turn besides batches: killing handlers that
    /// ignored SIGTERM, rescanning unwatched dirs, the standby file,
    /// retrying skipped paths, a retry whose backoff is over.
    fn keep_house(&mut self, now: Instant) {
        if let Some(t) = self.kill_deadline {
            if !self.worker.busy {
                self.kill_deadline = None;
            } else if now >= t {
                ::log::warn!("running handlers ignored SIGTERM: killing them");
                privilege::signal_handlers(libc::SIGKILL);
                self.kill_deadline = None;
            }
        }
        if self.tree.has_unwatched() && now >= self.last_unwatched_rescan + UNWATCHED_RESCAN {
            self.last_unwatched_rescan = now;
            self.tree
                .rescan_unwatched(&mut self.monitor, &mut self.changes);
            for c in self.changes.drain(..) {
                self.queue.push(now, c);
            }
        }
        self.check_standby(now);
        if self.ending.is_none() {
            self.retry_skipped(now);
        }
        if self.retry_at.is_some_and(|t| t <= now) && self.worker.has_idle() {
            // Due: the retry itself is what runs next.
            self.retry_at = None;
        }
    }

    /// One batch per free worker thread (one thread with -p off).
    fn start_due_batches(&mut self, now: Instant) -> Result<(), DaemonError> {
        while self.worker.has_idle() && !self.held(now) && self.below_max_iterations() {
            let all = self.cfg.exit_on_no_events && self.initial_done;
            let due = if all {
                self.queue.next_ready(now).is_some_and(|t| t <= now)
            } else {
                self.queue.next_due().is_some_and(|t| t <= now)
            };
            if !due || self.standby_before_sync(now) {
                break;
            }
            let popped = if all {
                // Sync until nothing is pending, without windows
                // (failed paths still wait for their retries).
                self.queue.pop_ready_with_id(now)
            } else {
                self.queue.pop_due_with_id(now)
            };
            let Some((id, batch)) = popped else { break };
            self.start_batch(id, batch)?;
        }
        Ok(())
    }

    /// Every deadline the loop must wake for (the poll's timeout is the
    /// earliest); the control socket's own deadline separately too.
    fn deadlines(&mut self, now: Instant) -> (Vec<Option<Instant>>, Option<Instant>) {
        let idle = self.worker.has_idle();
        let state = BatchState {
            may_start: idle && !self.held(now) && self.below_max_iterations(),
            hard_ending: self.ending.as_ref().is_some_and(|e| e.hard),
            without_windows: self.ending.is_some()
                || (self.cfg.exit_on_no_events && self.initial_done),
            pending: !self.queue.is_empty(),
            in_flight: self.queue.in_flight(),
        };
        let queue = &self.queue;
        let batch_due = batch_due(&state, now, || queue.next_ready(now), || queue.next_due());
        let rescan_due = self
            .tree
            .has_unwatched()
            .then(|| self.last_unwatched_rescan + UNWATCHED_RESCAN);
        let standby_due = self.cfg.standby_file.as_ref().map(|_| {
            if self.standby {
                now + STANDBY_POLL
            } else {
                self.next_standby_check
            }
        });
        let retry_due = self.retry_at.filter(|_| idle);
        let skipped_due = self.next_skipped_retry.filter(|_| self.ending.is_none());
        // Batches logged at debug under load: their summary, when due.
        if let Some(summary) = self.batch_log.flush(now) {
            ::log::info!("{summary}");
        }
        // The watchdog and the metrics file.
        {
            let mut telemetry =
                std::mem::replace(&mut self.telemetry, telemetry::Telemetry::new(None, None));
            telemetry.tick(now, &|| self.socket_status());
            self.telemetry = telemetry;
        }
        // A backend without a descriptor (poll) says when to read it.
        let monitor_due = self.monitor.next_deadline();
        // A control socket client that stays silent is dropped on time.
        let socket_due = self.socket.as_ref().and_then(|s| s.next_deadline());
        let all = vec![
            batch_due,
            rescan_due,
            standby_due,
            retry_due,
            skipped_due,
            self.kill_deadline,
            self.batch_log.due(),
            self.telemetry.next_due(),
            monitor_due,
            socket_due,
        ];
        (all, socket_due)
    }

    /// Waits (poll) on the backend's fd, the worker's wake pipe, the
    /// signal pipe and the control socket until the next deadline, and
    /// serves the socket; true: leave now (a control request said so).
    fn wait(&mut self, now: Instant) -> Result<bool, DaemonError> {
        let (deadlines, socket_due) = self.deadlines(now);
        let timeout = poll_timeout(deadlines, Instant::now());
        let mut fds = vec![
            self.monitor.fd(),
            self.worker.wake.as_raw_fd(),
            self.signals.wake.as_raw_fd(),
        ];
        if let Some(sock) = &self.socket {
            fds.extend(sock.fds());
        }
        let ready = wait_readable(&fds, timeout).map_err(io_err("poll"))?;
        if ready[2] {
            self.signals.drain();
        }
        // Each complete command on the control socket maps onto
        // `self.control(…)`; a status request answers from the counters.
        let socket_timed_out = socket_due.is_some_and(|t| t <= Instant::now());
        Ok((ready[3..].iter().any(|&r| r) || socket_timed_out) && self.serve_socket())
    }

    /// Reads every ready kernel event into the queue.
    pub(super) fn drain_events(&mut self) -> Result<(), DaemonError> {
        // Bounded, so that an endless storm cannot starve the start of due
        // batches; the fd stays readable and the next poll returns at once.
        for _ in 0..MAX_READS_PER_TURN {
            self.raw.clear();
            self.monitor.read_events(&mut self.raw)?;
            if self.raw.is_empty() && self.tree.has_held() {
                // The other half of a rename is queued right behind the first
                // one by the kernel; give it a moment before calling it a move
                // out of the tree.
                wait_readable(&[self.monitor.fd()], Some(MOVE_PAIR_WAIT))
                    .map_err(io_err("poll"))?;
                self.monitor.read_events(&mut self.raw)?;
                if self.raw.is_empty() {
                    self.tree.flush_held(&mut self.monitor, &mut self.changes);
                }
            }
            if self.raw.is_empty() {
                break;
            }
            self.counters.events += self.raw.len() as u64;
            if ::log::log_enabled!(::log::Level::Trace) {
                for ev in &self.raw {
                    ::log::trace!(
                        "event {:?} {} dir={} cookie={}",
                        ev.kind,
                        path::display(&ev.path),
                        ev.is_dir,
                        ev.cookie
                    );
                }
            }
            self.tree
                .process(&mut self.monitor, &self.raw, &mut self.changes)?;
            // Event bits for the command modes' %EVENT-MASK%.
            for (p, m) in self.tree.take_masks() {
                self.queue.note_mask(&p, m);
            }
            let now = Instant::now();
            for c in self.changes.drain(..) {
                ::log::trace!("change {c:?}");
                let again = skipped_dir_changed(&self.skipped, &c);
                self.queue.push(now, at_once(&self.cfg, c));
                if let Some(again) = again {
                    self.queue.push(now, again);
                }
            }
        }
        let now = Instant::now();
        for c in self.changes.drain(..) {
            let again = skipped_dir_changed(&self.skipped, &c);
            self.queue.push(now, at_once(&self.cfg, c));
            if let Some(again) = again {
                self.queue.push(now, again);
            }
        }
        Ok(())
    }

    pub(super) fn start_batch(&mut self, id: BatchId, mut batch: Batch) -> Result<(), DaemonError> {
        if let Some(sigs) = self.signatures.as_mut() {
            let dropped = sigs.filter(&mut batch);
            if dropped > 0 {
                ::log::debug!("--modification-signature: {dropped} unchanged path(s) not synced");
            }
            if batch.is_empty() {
                // Nothing left to run: the popped batch is done already.
                self.queue.finished_id(id, Instant::now());
                return Ok(());
            }
        }
        ::log::debug!(
            "starting a batch of {} op(s) ({} lane)",
            batch.len(),
            batch.lane.name()
        );
        let initial = !self.initial_done && is_full_sync(&batch);
        self.initial_running |= initial;
        if initial {
            self.telemetry.initial_sync_started();
        }
        // The status file says what runs before the handler can look.
        let status = self.derived_status();
        self.set_status(status);
        let env = self.handler_env(status);
        if !self.worker.busy {
            // (With -p safe|full, runs that a stop signal hit may still be
            // finishing: their failure stays ours.)
            self.killed = false;
        }
        // Listing backends check afterwards what the handler may have read.
        self.monitor.syncing(&batch);
        self.ops_in_flight += batch.len();
        self.worker.send(Job::Batch {
            id,
            batch,
            env,
            initial,
        })
    }

    /// The environment of a handler run: clsync's variables and ours.
    pub(super) fn handler_env(&self, status: Status) -> Vec<(OsString, OsString)> {
        let st = OsString::from(status.as_str());
        let it = OsString::from(self.iterations.to_string());
        vec![
            ("CLSYNC_STATUS".into(), st.clone()),
            ("CLSYNC_ITERATION".into(), it.clone()),
            ("LIVESYNC_STATUS".into(), st),
            ("LIVESYNC_ITERATION".into(), it),
        ]
    }

    /// Sets the status (and the status file) to `s`.
    pub(super) fn set_status(&mut self, s: Status) {
        if self.status != s {
            ::log::debug!("status: {}", s.as_str());
        }
        self.status = s;
        if let Some(f) = self.status_file.as_mut() {
            f.set(s);
        }
        self.telemetry.on_status(s);
    }

    /// The status that follows from the state of the loop.
    pub(super) fn derived_status(&self) -> Status {
        if let Some(e) = &self.ending {
            return match e.steps.front() {
                Some(Step::Sync) => Status::Terminating,
                Some(Step::PreExit) => Status::PreExit,
                Some(Step::ExitHook) | None => Status::Exiting,
            };
        }
        if self.standby || self.paused {
            Status::HoldOn
        } else if self.retry_at.is_some() || self.queue.waiting() > 0 {
            // A failed batch, or failed paths, wait for their retries.
            Status::HandlerError
        } else if !self.initial_done {
            Status::InitSync
        } else {
            Status::Running
        }
    }

    /// What the loop is doing now (for the control socket's status command).
    pub(super) fn snapshot(&self) -> Snapshot {
        Snapshot {
            status: self.status,
            pending: self.queue.len(),
            busy: self.worker.busy,
            iterations: self.iterations,
            initial_done: self.initial_done,
            paused: self.paused,
        }
    }

    /// Syncs are held: standby file, pause, or a retry that is not due yet.
    pub(super) fn held(&self, now: Instant) -> bool {
        self.standby || self.paused || self.retry_at.is_some_and(|t| t > now)
    }

    pub(super) fn check_standby(&mut self, now: Instant) {
        let Some(p) = &self.cfg.standby_file else {
            return;
        };
        if now < self.next_standby_check && !self.standby {
            return;
        }
        let was = self.standby;
        self.standby = files::standby(p);
        self.next_standby_check = now + STANDBY_IDLE_POLL;
        if self.standby != was {
            if self.standby {
                ::log::info!(
                    "standby file {} exists: holding syncs until it is removed",
                    path::display_os(p)
                );
            } else {
                ::log::info!("standby file is gone: syncing again");
            }
        }
    }

    /// Looks at the standby file now, whatever the poll interval says (the
    /// last look may be a second old): no sync may start once it exists.
    /// True when syncs are held by it.
    pub(super) fn standby_before_sync(&mut self, now: Instant) -> bool {
        if self.cfg.standby_file.is_some() {
            self.next_standby_check = now;
            self.check_standby(now);
        }
        self.standby
    }

    /// Writes the state (signal 29, `dump` on the control socket): the
    /// status JSON and the watched directories, to a new 0600 file in
    /// `--dump-dir`, or to the log without one.
    pub(super) fn dump(&self) {
        let mut text = self.socket_status().to_json();
        text.push('\n');
        let watched = self.monitor.watched_under(b"");
        let Some(dir) = &self.cfg.dump_dir else {
            ::log::info!(
                "state: {} ({} watched directories)",
                text.trim_end(),
                watched.len()
            );
            return;
        };
        for w in &watched {
            text.push_str("watch ");
            text.push_str(&path::display(w));
            text.push('\n');
        }
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let file = dir.join(format!("livesync-{}-{millis}.dump", std::process::id()));
        match files::write_new_private(&file, text.as_bytes()) {
            Ok(()) => ::log::info!("state dumped to {}", path::display_os(&file)),
            Err(e) => ::log::error!("cannot dump the state to {}: {e}", path::display_os(&file)),
        }
    }

    /// Answers the control socket's clients and acts on their orders.
    /// Returns true when livesync must exit at once.
    pub(super) fn serve_socket(&mut self) -> bool {
        let Some(mut sock) = self.socket.take() else {
            return false;
        };
        let commands = {
            let me = &*self;
            sock.service(&|| me.socket_status())
        };
        self.socket = Some(sock);
        for c in commands {
            let exit_now = match c {
                socket::Command::Resync => self.control(Control::Resync),
                socket::Command::Pause => self.control(Control::Pause),
                socket::Command::Resume => self.control(Control::Resume),
                socket::Command::Quit => self.control(Control::Quit),
                socket::Command::Die => self.control(Control::Die),
                socket::Command::Dump => {
                    self.dump();
                    false
                }
                socket::Command::Set(key, _) => {
                    ::log::warn!("control socket: set {key}: not supported");
                    false
                }
            };
            if exit_now {
                return true;
            }
        }
        false
    }

    /// The `status` reply of the control socket.
    pub(super) fn socket_status(&self) -> socket::StatusReport {
        let snap = self.snapshot();
        let now = Instant::now();
        socket::StatusReport {
            state: snap.status.as_str().to_string(),
            queue: Lane::ALL
                .iter()
                .map(|&l| (l.name().to_string(), self.queue.lane_len(l)))
                .collect(),
            oldest_pending_age_ms: self
                .queue
                .oldest()
                .map(|t| now.saturating_duration_since(t).as_millis() as u64),
            last_sync: self.last_sync.clone(),
            counters: vec![
                ("events".into(), self.counters.events),
                ("batches".into(), self.counters.batches),
                ("paths_synced".into(), self.counters.paths_synced),
                ("failures".into(), self.counters.failures),
                ("retries".into(), self.counters.retries),
                ("rescans".into(), self.tree.stats.rescans),
                // Gauges: source paths skipped as unreadable, and paths
                // that failed on their own and wait for their retries.
                ("skipped_paths".into(), self.skipped.len() as u64),
                ("failed_paths".into(), self.queue.waiting() as u64),
                ("pending".into(), snap.pending as u64),
                ("iterations".into(), snap.iterations),
                // -p safe|full: handler runs (or hooks) going on now, of how many.
                ("running".into(), self.worker.running() as u64),
                ("threads".into(), self.worker.slots.len() as u64),
            ],
            watch_dir: path::display_os(&self.cfg.watch_dir),
            destination: self
                .cfg
                .destination
                .as_ref()
                .map(|d| path::display(d.as_os_str().as_bytes()))
                .unwrap_or_default(),
            label: self.cfg.label.clone(),
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}
