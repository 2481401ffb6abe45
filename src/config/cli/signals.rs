//! `--custom-signals` (`SIGNAL:BLOCK` lists, checked against the signals
//! livesync keeps for itself) and `--poll-interval`, as clap value parsers.

/// One item of a `--custom-signals` list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignalEntry {
    /// `0`: forget the custom signals given so far.
    Reset,
    /// `SIGNAL:BLOCK`.
    Block(i32, String),
}

/// One `--custom-signals` value, parsed and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignalSpec(pub Vec<SignalEntry>);

/// Signals a custom block cannot take: SIGKILL and SIGSTOP cannot be caught,
/// the fault signals must keep their default action, and livesync itself
/// stops on HUP/INT/QUIT/TERM and reaps children on CHLD.
pub(super) const RESERVED_SIGNALS: [(i32, &str); 11] = [
    (libc::SIGKILL, "SIGKILL cannot be caught"),
    (libc::SIGSTOP, "SIGSTOP cannot be caught"),
    (libc::SIGSEGV, "SIGSEGV reports a crash"),
    (libc::SIGBUS, "SIGBUS reports a crash"),
    (libc::SIGFPE, "SIGFPE reports a crash"),
    (libc::SIGILL, "SIGILL reports a crash"),
    (libc::SIGHUP, "livesync uses SIGHUP itself"),
    (libc::SIGINT, "livesync uses SIGINT itself"),
    (libc::SIGQUIT, "livesync uses SIGQUIT itself"),
    (libc::SIGTERM, "livesync uses SIGTERM itself"),
    (libc::SIGCHLD, "livesync uses SIGCHLD itself"),
];

/// A signal number, or a name with or without `SIG` (`USR1`, `SIGUSR1`,
/// `RTMIN`, `RTMIN+3`, `RTMAX-1`).
pub(super) fn parse_signal(s: &str) -> Result<i32, String> {
    let bad = || format!("{s:?} is not a signal number or name (e.g. 29, USR1 or RTMIN+1)");
    let n = if s.bytes().all(|b| b.is_ascii_digit()) && !s.is_empty() {
        s.parse::<i32>()
            .map_err(|_| format!("signal {s:?} is out of range"))?
    } else {
        let upper = s.to_ascii_uppercase();
        let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
        let offset = |rest: &str, sign: char| -> Result<i32, String> {
            match rest.strip_prefix(sign) {
                None if rest.is_empty() => Ok(0),
                Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                    n.parse::<i32>().map_err(|_| bad())
                }
                _ => Err(bad()),
            }
        };
        if let Some(rest) = bare.strip_prefix("RTMIN") {
            rt_signals().ok_or_else(bad)?.0 + offset(rest, '+')?
        } else if let Some(rest) = bare.strip_prefix("RTMAX") {
            rt_signals().ok_or_else(bad)?.1 - offset(rest, '-')?
        } else {
            format!("SIG{bare}")
                .parse::<nix::sys::signal::Signal>()
                .map(|sig| sig as i32)
                .map_err(|_| bad())?
        }
    };
    if n == 0 {
        return Ok(0);
    }
    let max = rt_signals().map_or(31, |(_, max)| max);
    if !(1..=max).contains(&n) {
        return Err(format!("signal {n} is out of range 1..={max}"));
    }
    if let Some((_, why)) = RESERVED_SIGNALS.iter().find(|(sig, _)| *sig == n) {
        return Err(format!("signal {n}: {why}; choose another signal"));
    }
    Ok(n)
}

/// Parses `SIGNAL:BLOCK[,SIGNAL:BLOCK...]`, where a lone `0` resets.
pub fn parse_custom_signals(spec: &str) -> Result<SignalSpec, String> {
    let mut out = Vec::new();
    for item in spec.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err(format!(
                "empty item in {spec:?}; write SIGNAL:BLOCK[,SIGNAL:BLOCK...]"
            ));
        }
        match item.split_once(':') {
            None if parse_signal(item) == Ok(0) => out.push(SignalEntry::Reset),
            None => {
                return Err(format!(
                    "{item:?} has no block: write SIGNAL:BLOCK (or 0 to reset)"
                ))
            }
            Some((sig, block)) => {
                let n = parse_signal(sig.trim())?;
                if n == 0 {
                    return Err(format!(
                        "signal 0 resets the list and takes no block: write 0, not {item:?}"
                    ));
                }
                let block = block.trim();
                if block.is_empty() || block.contains([':', '[', ']']) {
                    return Err(format!(
                        "{item:?}: the block name after the colon is empty or malformed"
                    ));
                }
                out.push(SignalEntry::Block(n, block.to_string()));
            }
        }
    }
    Ok(SignalSpec(out))
}

/// The custom signals that a list of `--custom-signals` values leaves in
/// force, in order of first mention: `0` forgets what came before, and a
/// signal mentioned again takes its new block.
pub fn fold_custom_signals(specs: &[SignalSpec]) -> Vec<(i32, String)> {
    let mut out: Vec<(i32, String)> = Vec::new();
    for entry in specs.iter().flat_map(|s| s.0.iter()) {
        match entry {
            SignalEntry::Reset => out.clear(),
            SignalEntry::Block(n, block) => match out.iter_mut().find(|(sig, _)| sig == n) {
                Some(slot) => slot.1 = block.clone(),
                None => out.push((*n, block.clone())),
            },
        }
    }
    out
}

/// `--poll-interval`: positive seconds, fractions allowed, at least 1 ms.
pub(super) fn parse_poll_interval(v: &str) -> Result<std::time::Duration, String> {
    let secs: f64 = v
        .trim()
        .parse()
        .map_err(|_| format!("`{v}` is not a number of seconds (e.g. 1 or 0.5)"))?;
    if !secs.is_finite() || !(0.001..=86_400.0).contains(&secs) {
        return Err(format!("`{v}` must be between 0.001 and 86400 seconds"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// The real-time signals (SIGRTMIN, SIGRTMAX) where there are any. (Portable
/// for `cargo check --target x86_64-unknown-freebsd`: the libc crate has
/// them as functions on Linux only; FreeBSD's are fixed.)
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(super) fn rt_signals() -> Option<(i32, i32)> {
    Some((libc::SIGRTMIN(), libc::SIGRTMAX()))
}
#[cfg(target_os = "freebsd")]
pub(super) fn rt_signals() -> Option<(i32, i32)> {
    Some((65, 126))
}
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
pub(super) fn rt_signals() -> Option<(i32, i32)> {
    None
}
