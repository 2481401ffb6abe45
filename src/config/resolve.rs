//! The resolvers: one per option group, from the merged command line
//! ([`cli::Args`]) to the typed parts of a [`Config`], each with its
//! checks and one-line errors. `Config::resolve` calls them in a fixed
//! order (so with several problems the same one is reported first) and
//! assembles the result.

use super::*;

/// `-W`: the watch dir, canonical; it must exist and be a directory.
pub(super) fn watch_dir(a: &cli::Args) -> Result<PathBuf, ConfigError> {
    let Some(watch_dir_arg) = a.watch_dir.clone() else {
        return Err(ConfigError::Invalid(
            "no watch dir: give -W DIR, or set watch-dir in the config file".to_string(),
        ));
    };
    let watch_dir = watch_dir_arg
        .canonicalize()
        .map_err(|e| ConfigError::WatchDir {
            path: path::display_os(&watch_dir_arg),
            reason: match e.kind() {
                std::io::ErrorKind::NotFound => "does not exist; create it or fix -W".to_string(),
                _ => format!("{e}; check the path and its permissions"),
            },
        })?;
    if !watch_dir.is_dir() {
        return Err(ConfigError::WatchDir {
            path: path::display_os(&watch_dir_arg),
            reason: "is not a directory; -W takes the directory to mirror".to_string(),
        });
    }
    Ok(watch_dir)
}

/// `-M`.
pub(super) fn mode(a: &cli::Args) -> Result<Mode, ConfigError> {
    let mode = match a.mode.as_deref() {
        None | Some("mirror") => Mode::Mirror,
        Some("rsyncdirect") => Mode::RsyncDirect,
        Some("simple") => Mode::Simple,
        Some("direct") => Mode::Direct,
        Some("shell") => Mode::Shell,
        Some("rsyncshell") => Mode::RsyncShell,
        // so/rsyncso: the handler is a shared object (src/handler/so.rs).
        Some("so") => Mode::So,
        Some("rsyncso") => Mode::RsyncSo,
        Some("unison") => Mode::Unison,
        Some("csync2") => Mode::Csync2,
        Some(other) => return Err(ConfigError::Mode(other.to_string())),
    };
    Ok(mode)
}

/// A local destination inside the watch dir: how it was given, and its
/// path below the watch dir (accepted only if the rules keep it out).
pub(super) type Inside = Option<(String, Vec<u8>)>;

/// `-D`: remote, or local and resolved, never the watch dir or around it;
/// required by the modes that need one.
pub(super) fn destination(
    a: &cli::Args,
    watch_dir: &Path,
    mode: &Mode,
) -> Result<(Option<Destination>, Inside), ConfigError> {
    let mode = mode.clone();
    // A local destination inside the watch dir: (display, path below it).
    let mut dst_inside: Option<(String, Vec<u8>)> = None;
    let destination = match &a.destination {
        // csync2 sends to the peers of its own config.
        Some(_) if mode == Mode::Csync2 => {
            return Err(ConfigError::Invalid(
                "-M csync2 sends to the peers named in csync2's config, not to -D; drop -D"
                    .to_string(),
            ));
        }
        None => None,
        Some(d) if d.is_empty() => {
            return Err(ConfigError::Invalid("-D must not be empty".to_string()));
        }
        Some(d) if is_remote(d) => {
            if mode == Mode::Mirror {
                return Err(ConfigError::Destination {
                    path: path::display(d.as_bytes()),
                    reason:
                        "is remote; the built-in mirror writes local dirs only: use -M rsyncdirect"
                            .to_string(),
                });
            }
            Some(Destination::Remote(d.clone()))
        }
        Some(d) => {
            let shown = path::display(d.as_bytes());
            let resolved =
                resolve_maybe_missing(Path::new(d)).map_err(|e| ConfigError::Destination {
                    path: shown.clone(),
                    reason: format!("{e}; check the path"),
                })?;
            match overlap(watch_dir, &resolved) {
                Overlap::Apart => {}
                // Accepted only when the rules keep livesync out of it;
                // checked below, once the rules are read.
                Overlap::Inside(rel) => dst_inside = Some((shown.clone(), rel)),
                Overlap::Same => {
                    return Err(ConfigError::Destination {
                        path: shown,
                        reason: format!(
                            "is the watch dir {} itself (the same device and inode, e.g. through a bind mount): give a destination outside it",
                            path::display_os(watch_dir)
                        ),
                    });
                }
                Overlap::Around => {
                    return Err(ConfigError::Destination {
                        path: shown,
                        reason: format!(
                            "contains the watch dir {} (the same device and inode, e.g. through a bind mount): mirroring would delete the source; choose a destination outside it",
                            path::display_os(watch_dir)
                        ),
                    });
                }
            }
            if watch_dir.starts_with(&resolved) {
                return Err(ConfigError::Destination {
                    path: shown,
                    reason: format!(
                        "contains the watch dir {}: mirroring would delete the source; choose a destination outside it",
                        path::display_os(watch_dir)
                    ),
                });
            }
            if resolved.exists() && !resolved.is_dir() {
                return Err(ConfigError::Destination {
                    path: shown,
                    reason: "exists and is not a directory".to_string(),
                });
            }
            Some(Destination::Local(resolved))
        }
    };
    if destination.is_none() && mode.needs_destination() {
        return Err(ConfigError::Invalid(format!(
            "no destination: give -D DIR (-M {} needs one)",
            mode.name()
        )));
    }
    Ok((destination, dst_inside))
}

/// `-S`: the handler program (or shared object) the mode runs, checked.
pub(super) fn handler_program(a: &cli::Args, mode: &Mode) -> Result<Option<OsString>, ConfigError> {
    let handler_program = match (mode, &a.sync_handler) {
        // so/rsyncso: always a file path (dlopen would search the
        // library path for a bare name; the checks look at this file).
        (Mode::So | Mode::RsyncSo, Some(p)) => Some(absolute(Path::new(p)).into_os_string()),
        (_, Some(p)) => Some(program_path(p)),
        (Mode::RsyncDirect, None) => Some(OsString::from("rsync")),
        (Mode::Unison, None) => Some(OsString::from("unison")),
        (Mode::Csync2, None) => Some(OsString::from("csync2")),
        (Mode::Mirror, None) => None,
        (Mode::So | Mode::RsyncSo, None) => {
            return Err(ConfigError::Invalid(
                "-M so and -M rsyncso need -S /path/to/handler.so (the shared object to load)"
                    .to_string(),
            ))
        }
        (other, None) => {
            return Err(ConfigError::Invalid(format!(
                "-M {}: give the handler program with -S",
                other.name()
            )))
        }
    };
    match (mode, &handler_program) {
        // so/rsyncso: clsync's checks on the object instead of PATH lookup.
        (Mode::So | Mode::RsyncSo, Some(p)) => {
            so_object::check_object(Path::new(p))
                .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        }
        (_, Some(p)) => {
            find_program(p)?;
        }
        (_, None) => {}
    }
    if *mode == Mode::Mirror && a.sync_handler.is_some() {
        return Err(ConfigError::Invalid(
            "-S names a handler program, which the built-in mirror does not use; add -M rsyncdirect or drop -S".to_string(),
        ));
    }
    Ok(handler_program)
}

/// `-R`, `--exclude`/`--include`, `--one-file-system`/`-X`: the rules,
/// which must keep a destination inside the watch dir out.
pub(super) fn rules(
    a: &cli::Args,
    watch_dir: &Path,
    dst_inside: Inside,
) -> Result<Rules, ConfigError> {
    let mut rules = match &a.rules_file {
        Some(f) => Rules::from_file(f)?,
        None => Rules::allow_all(),
    };
    // --exclude/--include: rsync-style globs, in the order given, in
    // front of the rules file's rules.
    if !a.given.filters().is_empty() {
        let mut text = Vec::new();
        for (include, glob) in a.given.filters() {
            let line = crate::rules::glob::rule_line(*include, glob.as_bytes()).map_err(|why| {
                ConfigError::Invalid(format!(
                    "--{} {}: {why}; fix the glob",
                    if *include { "include" } else { "exclude" },
                    path::display(glob.as_bytes())
                ))
            })?;
            text.extend_from_slice(line.as_bytes());
            text.push(b'\n');
        }
        text.extend_from_slice(&rules.to_text());
        rules = Rules::parse(&text, "the --exclude/--include globs and the rules file")?;
    }
    if a.one_file_system || a.exclude_mount_points {
        let mountinfo = std::fs::read("/proc/self/mountinfo").map_err(|e| {
            ConfigError::Invalid(format!(
                "--one-file-system/-X: cannot read /proc/self/mountinfo: {e}"
            ))
        })?;
        let points = mount_points_under(watch_dir, &mountinfo);
        if !points.is_empty() {
            let mut text = mount_rules(&points, a.exclude_mount_points);
            text.extend_from_slice(&rules.to_text());
            rules = Rules::parse(&text, "the rules file with mount point exclusions")?;
        }
    }

    if let Some((shown, rel)) = dst_inside {
        if !keeps_out(&rules, &rel) {
            let shown_rel = path::display(&rel);
            return Err(ConfigError::Destination {
                path: shown,
                reason: format!(
                    "is inside the watch dir {} (as {shown_rel}): it would mirror into itself; exclude it with a rule such as -d^{}$ in -R, or choose a destination outside it",
                    path::display_os(watch_dir),
                    regex::escape(&shown_rel),
                ),
            });
        }
    }
    Ok(rules)
}

/// `--modification-signature` and `--cancel-syscalls`, which exclude
/// each other.
pub(super) fn syscalls(
    a: &cli::Args,
) -> Result<(Option<Vec<crate::signature::Field>>, bool), ConfigError> {
    let modification_signature = match &a.modification_signature {
        None => None,
        Some(m) => crate::signature::parse_mask(m).map_err(ConfigError::Invalid)?,
    };
    let mut cancel_mon_stat = false;
    for item in a
        .cancel_syscalls
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
    {
        match item {
            "mon_stat" => cancel_mon_stat = true,
            other => {
                return Err(ConfigError::Invalid(format!(
                    "--cancel-syscalls: unknown value {other:?}; the only one is mon_stat"
                )))
            }
        }
    }
    if cancel_mon_stat && modification_signature.is_some() {
        return Err(ConfigError::Invalid(
            "--cancel-syscalls=mon_stat and --modification-signature exclude each other (the signature needs lstat); drop one".to_string(),
        ));
    }
    Ok((modification_signature, cancel_mon_stat))
}

/// `-t`, `-T`, `-w`, `--threshold-bigfile`.
pub(super) fn queue(a: &cli::Args, cancel_mon_stat: bool) -> Result<QueueConfig, ConfigError> {
    Ok(QueueConfig {
        delay: seconds("-t", a.delay_collect)?,
        delay_big: seconds("-T", a.delay_collect_bigfile)?,
        big_threshold: if cancel_mon_stat {
            0
        } else {
            a.threshold_bigfile
        },
        interval: seconds("-w", a.delay_sync)?,
    })
}

/// Options that do nothing with the chosen mode: one warning each (they
/// are accepted, as clsync accepts them).
pub(super) fn mode_warnings(a: &cli::Args, mode: &Mode) -> Vec<String> {
    // clsync's command modes: -F is for the modes that run
    // a handler; the built-in mirror always follows the rules.
    let mut mode_warnings = Vec::new();
    let mode = mode.clone();
    if a.full_initialsync && mode == Mode::Mirror {
        mode_warnings.push(
            "-F (--full-initialsync) has no effect with the built-in mirror, which always \
             follows the rules; drop -F or use an rsync or command mode"
                .to_string(),
        );
    }
    if a.synclist_simplify && mode != Mode::Shell {
        mode_warnings.push(format!(
            "--synclist-simplify only changes -M shell; it does nothing with -M {}",
            mode.name()
        ));
    }
    // so hands a subtree over as one flagged entry; rsyncso passes the
    // flag on to the object in its ctx.
    if a.have_recursive_sync && !matches!(mode, Mode::Shell | Mode::So | Mode::RsyncSo) {
        mode_warnings.push(format!(
            "--have-recursive-sync only changes -M shell and the so modes; it does \
             nothing with -M {}",
            mode.name()
        ));
    }
    if (a.xattrs || a.acls) && !matches!(mode, Mode::Mirror | Mode::RsyncDirect | Mode::RsyncShell)
    {
        mode_warnings.push(format!(
            "--xattrs and --acls only change -M mirror and the rsync modes; they do \
             nothing with -M {}",
            mode.name()
        ));
    }
    if a.rules_file.is_some() && matches!(mode, Mode::Unison | Mode::Csync2) {
        mode_warnings.push(format!(
            "-R rules choose which changes start a -M {0} run, but {0} syncs a directory \
             whole: rule-excluded files inside one are synced too; exclude them with {0}'s \
             own means ({1})",
            mode.name(),
            if mode == Mode::Unison {
                "-ignore after --"
            } else {
                "exclude in its config"
            }
        ));
    }
    mode_warnings
}

/// Options that cannot go together, or not with the chosen mode.
pub(super) fn conflicts(a: &cli::Args, mode: &Mode) -> Result<(), ConfigError> {
    if a.dry_run && *mode != Mode::Mirror {
        return Err(ConfigError::Invalid(format!(
            "--dry-run works with the built-in mirror only, not -M {}; drop it (a handler program may have its own, such as rsync's --dry-run)",
            mode.name()
        )));
    }
    if a.only_initialsync && a.skip_initialsync {
        return Err(ConfigError::Invalid(
            "--only-initialsync and --skip-initialsync together would sync nothing; drop one"
                .to_string(),
        ));
    }
    if a.only_initialsync && a.exit_on_no_events {
        return Err(ConfigError::Invalid(
            "--only-initialsync and --exit-on-no-events are two ways to end; choose one"
                .to_string(),
        ));
    }
    Ok(())
}

/// `-p`, `--threads`.
pub(super) fn threading(a: &cli::Args) -> Result<(Threading, usize), ConfigError> {
    // Parallel handler runs (-p, --threads).
    let threading = match a.threading.as_str() {
        "off" => Threading::Off,
        "safe" => Threading::Safe,
        "full" => Threading::Full,
        other => {
            return Err(ConfigError::Invalid(format!(
                "-p {other:?}: unknown threading mode; use off, safe or full"
            )))
        }
    };
    let threads = match threading {
        Threading::Off => 1,
        _ if a.threads > 0 => a.threads as usize,
        _ => std::thread::available_parallelism().map_or(2, |n| n.get().max(2)),
    };
    Ok((threading, threads))
}

/// `--pre-exit-hook`, `--exit-hook`: programs that can run.
pub(super) fn hooks(a: &cli::Args) -> Result<(), ConfigError> {
    for (name, hook) in [
        ("--pre-exit-hook", &a.pre_exit_hook),
        ("--exit-hook", &a.exit_hook),
    ] {
        if let Some(h) = hook {
            if h.is_empty() {
                return Err(ConfigError::Invalid(format!("{name} must name a program")));
            }
            if find_program(h).is_err() {
                return Err(ConfigError::Invalid(format!(
                    "{name} {}: not an executable file (or not in PATH); fix {name}",
                    path::display(h.as_bytes())
                )));
            }
        }
    }
    Ok(())
}

/// A control file option (`--pid-file`, `--status-file`, …): a file name,
/// resolved.
pub(super) fn control_file(
    name: &str,
    p: &Option<PathBuf>,
) -> Result<Option<PathBuf>, ConfigError> {
    match p {
        None => Ok(None),
        Some(p) if p.as_os_str().is_empty() => {
            Err(ConfigError::Invalid(format!("{name} must name a file")))
        }
        Some(p) => resolve_control_file(p).map(Some).map_err(|e| {
            ConfigError::Invalid(format!(
                "{name} {}: {e}; check the path",
                path::display_os(p)
            ))
        }),
    }
}

/// The files and socket livesync keeps while running.
pub(super) struct ControlFiles {
    pub(super) pid_file: Option<PathBuf>,
    pub(super) status_file: Option<PathBuf>,
    pub(super) standby_file: Option<PathBuf>,
    pub(super) dump_dir: Option<PathBuf>,
    pub(super) socket: Option<PathBuf>,
    pub(super) socket_owner: Option<(u32, u32)>,
    pub(super) socket_mode: u32,
}

/// `--pid-file`, `--status-file`, `--standby-file`, `--dump-dir`,
/// `--socket`, `--socket-own`, `--socket-mod`.
pub(super) fn control_files(a: &cli::Args) -> Result<ControlFiles, ConfigError> {
    let pid_file = control_file("--pid-file", &a.pid_file)?;
    let status_file = control_file("--status-file", &a.status_file)?;
    let standby_file = control_file("--standby-file", &a.standby_file)?;
    let dump_dir = a.dump_dir.as_deref().map(absolute);
    if let Some(d) = &dump_dir {
        check_control_dir(d, "dump dir", "--dump-dir")?;
    }
    let socket = control_file("--socket", &a.socket)?;
    let socket_owner = a.socket_own.as_deref().map(resolve_owner).transpose()?;
    let socket_mode = u32::from_str_radix(&a.socket_mod, 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| {
            ConfigError::Invalid(format!(
                "--socket-mod {:?} is not an octal mode like 600 or 660",
                a.socket_mod
            ))
        })?;
    Ok(ControlFiles {
        pid_file,
        status_file,
        standby_file,
        dump_dir,
        socket,
        socket_owner,
        socket_mode,
    })
}

/// `-Y`; with `-b`, where the log goes once stderr is /dev/null (with a
/// warning in `warnings`).
pub(super) fn output(a: &cli::Args, warnings: &mut Vec<String>) -> Output {
    let mut output = match a.output.as_str() {
        "stdout" => Output::Stdout,
        "syslog" => Output::Syslog,
        _ => Output::Stderr,
    };
    // -b: stdout and stderr lead to /dev/null once livesync is up.
    if a.background == Some(true) && output != Output::Syslog {
        if a.given.gave("output") {
            warnings.push(format!(
                "-b with -Y {}: once livesync is in the background its {} is /dev/null, so every later log line is lost; use -Y syslog",
                a.output, a.output
            ));
        } else {
            output = Output::Syslog;
            warnings.push(format!(
                "-b: once livesync is in the background stderr is /dev/null, so log lines go to syslog ({}) instead; give -Y syslog to say so",
                path::display_os(&a.syslog_socket)
            ));
        }
    }
    output
}

/// `-d` (repeated), `-q`.
pub(super) fn log_level(a: &cli::Args) -> log::LevelFilter {
    let debug: u32 = a.debug.iter().map(|&d| u32::from(d)).sum();
    if a.quiet {
        log::LevelFilter::Error
    } else {
        match debug {
            0 => log::LevelFilter::Info,
            1 => log::LevelFilter::Debug,
            _ => log::LevelFilter::Trace,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> cli::Args {
        let mut v = vec!["livesync", "-H", "/NULL/"];
        v.extend_from_slice(extra);
        cli::Args::try_parse_from(v).expect("clap")
    }

    #[test]
    fn options_that_do_nothing_with_the_mode_are_warned_about() {
        let warned = |extra: &[&str], mode: Mode| mode_warnings(&args(extra), &mode);
        // What each mode uses: no warning.
        assert!(warned(&["-F"], Mode::RsyncDirect).is_empty());
        assert!(warned(&["--have-recursive-sync"], Mode::Shell).is_empty());
        assert!(warned(&["--xattrs", "--acls"], Mode::Mirror).is_empty());
        assert!(warned(&["-R", "/dev/null"], Mode::RsyncDirect).is_empty());
        // What it does not: one line each, naming the option and the mode.
        let w = warned(&["-F"], Mode::Mirror);
        assert_eq!(w.len(), 1);
        assert!(
            w[0].starts_with("-F (--full-initialsync) has no effect"),
            "{w:?}"
        );
        let w = warned(&["--synclist-simplify"], Mode::Direct);
        assert!(w[0].contains("nothing with -M direct"), "{w:?}");
        let w = warned(&["--acls"], Mode::Unison);
        assert!(w[0].starts_with("--xattrs and --acls"), "{w:?}");
        let w = warned(&["-R", "/dev/null"], Mode::Csync2);
        assert!(w[0].contains("exclude in its config"), "{w:?}");
        let w = warned(&["-R", "/dev/null"], Mode::Unison);
        assert!(w[0].contains("-ignore after --"), "{w:?}");
        assert_eq!(warned(&["-F", "--xattrs"], Mode::Simple).len(), 1);
        assert_eq!(
            warned(&["-F", "--xattrs", "--have-recursive-sync"], Mode::Mirror).len(),
            2
        );
    }

    #[test]
    fn conflicting_options_are_refused() {
        let refused = |extra: &[&str], mode: Mode| conflicts(&args(extra), &mode).err();
        assert!(refused(&["--dry-run"], Mode::Mirror).is_none());
        let e = refused(&["--dry-run"], Mode::RsyncDirect).expect("dry run with rsync");
        assert!(e.to_string().contains("not -M rsyncdirect"), "{e}");
        assert!(refused(&["--only-initialsync", "--skip-initialsync"], Mode::Mirror).is_some());
        assert!(refused(&["--only-initialsync", "--exit-on-no-events"], Mode::Mirror).is_some());
        assert!(refused(&["--only-initialsync"], Mode::Mirror).is_none());
    }
}
