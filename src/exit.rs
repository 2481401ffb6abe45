//! The daemon's exit codes: the one list that `main.rs`, the daemon's
//! errors, the man page's EXIT STATUS section and the README's table are
//! held to (the doc tests compare them). The client subcommands
//! (`livesync status`, `livesync ctl`, …) have their own three codes, in
//! `ctl.rs`.

/// Success: a stop signal after syncing what was pending, or a planned end
/// (`--exit-on-no-events`, `--only-initialsync`, `--max-iterations`).
pub const OK: u8 = 0;
/// A failure while running: a batch failed `--retries` times, the watch dir
/// vanished, an I/O error, an event backend that cannot start here, a
/// failed pre-exit or exit hook.
pub const FAILURE: u8 = 1;
/// Bad usage or input, found before anything was touched (an option, rule,
/// path or refused so/rsyncso object); or the destination was moved or
/// replaced while running. systemd's units do not restart on it.
pub const USAGE: u8 = 2;
/// The inotify watch limit was reached at start.
pub const WATCH_LIMIT: u8 = 3;

/// Every code the daemon exits with, and what it means in one line.
pub const CODES: [(u8, &str); 4] = [
    (
        OK,
        "stopped by SIGTERM, SIGINT or SIGQUIT after syncing what was pending, \
         or a planned end (--exit-on-no-events, --only-initialsync, --max-iterations)",
    ),
    (
        FAILURE,
        "a failure while running: a batch failed --retries times, the watch dir \
         vanished, an I/O error, an event backend that cannot start here, a failed \
         --pre-exit-hook or --exit-hook",
    ),
    (
        USAGE,
        "bad usage or input, found before anything was touched (an option, a rule, a \
         path, a refused so/rsyncso object, a privilege drop this start cannot \
         carry out), with one line on stderr; or the \
         destination was moved or replaced while running (not restarted by the \
         systemd units)",
    ),
    (
        WATCH_LIMIT,
        "the inotify watch limit was reached at start: raise fs.inotify.max_user_watches",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_listed_once_in_order() {
        let codes: Vec<u8> = CODES.iter().map(|(c, _)| *c).collect();
        assert_eq!(codes, [OK, FAILURE, USAGE, WATCH_LIMIT]);
        assert_eq!(codes, [0, 1, 2, 3]);
    }
}
