//! SIGHUP and the custom signals of `--signal-config-block`: re-read the
//! command line and config file, swap the rules and a new handler in, keep
//! what cannot change while running, and sync the whole tree.

use super::*;

impl Daemon {
    /// SIGHUP: reads the command line and the config file again and swaps
    /// in the new rules and handler; pending changes are kept, and the
    /// whole tree is synced again under the new rules.
    /// Re-reads the command line and the config file; with `block`, that
    /// config block replaces `-K` (`--custom-signals`).
    pub(super) fn reload(&mut self, block: Option<&str>) {
        if let Some(jail) = &self.cfg.privileges.jail {
            ::log::error!(
                "reload: not possible inside --chroot {} (the command line's paths and the config file are outside the jail); restart livesync to apply changes",
                path::display_os(jail.root())
            );
            return;
        }
        self.set_status(Status::Rehashing);
        match block {
            Some(b) => ::log::info!("reloading the rules and the configuration from block [{b}]"),
            None => ::log::info!("reloading the rules and the configuration"),
        }
        let argv = match block {
            Some(b) => with_config_block(&self.argv, b),
            None => self.argv.clone(),
        };
        if let Some(d) = &self.start_dir {
            if let Err(e) = std::env::set_current_dir(d) {
                ::log::warn!("cannot return to {} to reload: {e}", path::display_os(d));
            }
        }
        let parsed = cli::Args::try_parse_from(&argv)
            .map_err(|e| {
                e.render()
                    .to_string()
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
            .and_then(|a| Config::from_args(a).map_err(|e| e.to_string()));
        if self.start_dir.is_some() {
            let _ = std::env::set_current_dir("/");
        }
        let new = match parsed {
            Ok(c) => c,
            Err(e) => {
                ::log::error!("reload failed, keeping the running configuration: {e}");
                return;
            }
        };
        if new.watch_dir != self.cfg.watch_dir || new.destination != self.cfg.destination {
            ::log::error!(
                "reload: the watch dir and the destination cannot change while running; keeping the running configuration (restart livesync to change them)"
            );
            return;
        }
        let mut new = new;
        if (new.threading, new.threads) != (self.cfg.threading, self.cfg.threads) {
            ::log::warn!("reload: new -p/--threads values take effect after a restart");
            (new.threading, new.threads) = (self.cfg.threading, self.cfg.threads);
        }
        // The event backend is not reopened on reload.
        if (new.monitor, &new.monitor_options) != (self.cfg.monitor, &self.cfg.monitor_options) {
            ::log::warn!(
                "reload: --monitor and --poll-interval cannot change while running; keeping --monitor {} (restart livesync to change them)",
                self.cfg.monitor.name()
            );
            new.monitor = self.cfg.monitor;
            new.monitor_options = self.cfg.monitor_options.clone();
        }
        let handlers = match handler::build_all(&new, &mut self.build) {
            Ok(h) => h,
            Err(e) => {
                ::log::error!("reload failed, keeping the running configuration: {e}");
                return;
            }
        };
        if let Err(e) = self.worker.replace(handlers) {
            ::log::error!("reload failed: {e}");
            return;
        }
        if new.queue != self.cfg.queue {
            ::log::warn!("reload: new -t/-T/-w/-B values take effect after a restart");
        }
        // Privileges are dropped once, at start (src/security/privilege.rs).
        if new.privileges != self.cfg.privileges || new.mode != self.cfg.mode {
            ::log::warn!(
                "reload: privilege options (and the capabilities a new -M needs) take effect after a restart"
            );
        }
        for w in &new.warnings {
            ::log::warn!("{w}");
        }
        self.tree.set_rules(Arc::clone(&new.rules));
        self.tree.record_masks(build::reports_masks(&new.mode));
        let queue = self.cfg.queue.clone();
        let (pid, status) = (self.cfg.pid_file.clone(), self.cfg.status_file.clone());
        let privileges = self.cfg.privileges.clone();
        if new.modification_signature != self.cfg.modification_signature {
            self.signatures = new
                .modification_signature
                .clone()
                .map(|m| signature::Signatures::new(&new.watch_dir, m));
        }
        self.cfg = new;
        self.cfg.queue = queue;
        self.cfg.pid_file = pid;
        self.cfg.status_file = status;
        self.cfg.privileges = privileges;
        // Directories the new rules let in need watches; and what the new
        // rules sync must reach the destination.
        let now = Instant::now();
        if !self.cfg.only_initialsync {
            if let Err(e) = self.tree.watch_subtree(&mut self.monitor, b"", false) {
                ::log::error!("reload: {e}");
            }
        }
        self.queue.push(
            now,
            Change::Subtree {
                path: Vec::new(),
                instant: true,
            },
        );
        ::log::info!("reloaded; syncing the whole tree under the new rules");
    }
}

/// `argv` with any `-K`/`--config-block` replaced by `block`.
pub(super) fn with_config_block(argv: &[OsString], block: &str) -> Vec<OsString> {
    let mut out = Vec::with_capacity(argv.len() + 2);
    let mut skip_next = false;
    let mut after_dashes = false;
    for (i, a) in argv.iter().enumerate() {
        if skip_next {
            skip_next = false;
            continue;
        }
        let b = a.as_bytes();
        if after_dashes || i == 0 {
            after_dashes |= b == b"--" && i != 0;
            out.push(a.clone());
            continue;
        }
        if b == b"--" {
            after_dashes = true;
            out.push(a.clone());
        } else if b == b"-K" || b == b"--config-block" {
            skip_next = true;
        } else if !(b.starts_with(b"-K") || b.starts_with(b"--config-block=")) {
            out.push(a.clone());
        }
    }
    let at = out.iter().position(|a| a == "--").unwrap_or(out.len());
    out.splice(at..at, [OsString::from("-K"), OsString::from(block)]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_signal_block_replaces_the_config_block() {
        let v = |x: &[&str]| x.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            with_config_block(
                &v(&[
                    "livesync",
                    "-K",
                    "a",
                    "-Kb",
                    "--config-block=c",
                    "-W",
                    "/s",
                    "--",
                    "-K",
                    "x"
                ]),
                "dbg"
            ),
            v(&["livesync", "-W", "/s", "-K", "dbg", "--", "-K", "x"])
        );
        assert_eq!(
            with_config_block(&v(&["livesync", "--config-block", "a"]), "n"),
            v(&["livesync", "-K", "n"])
        );
    }
}
