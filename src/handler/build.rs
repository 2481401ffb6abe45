//! Building the handler a configuration asks for: one function per mode
//! from [`Config`] to the handler's own settings, and [`build`], which
//! turns a configuration into a `Box<dyn Handler>`. The daemon builds its
//! handlers here (one per worker thread, again on each reload), and
//! `security::argv_check` derives from the same settings the argv the
//! privileged helper allows, so the two cannot disagree. Adding a mode
//! touches this room and the command line only.
//!
//! What only the daemon knows comes in a [`Context`]: the built-in
//! mirror's destination root, shared by every engine built (so all write
//! through the directory livesync started with), whether the daemon came
//! down from root keeping the writer capabilities, and the client of the
//! mirror the `--splitting=process` helper runs. This module touches no
//! process-global state.

use super::command::{CommandConfig, CommandHandler, CommandMode};
use super::csync2::{Csync2, Csync2Config};
use super::mirror::{DstRoot, Mirror};
use super::rsync::{RsyncConfig, RsyncDirect};
use super::so::{SoConfig, SoError, SoHandler, SoMode};
use super::unison::{Unison, UnisonConfig};
use super::{Handler, HandlerError};
use crate::config::{Config, Destination, Mode};
use crate::rules::Rules;
use std::ffi::OsString;
use std::sync::Arc;

/// Why no handler could be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{0}")]
    Handler(#[from] HandlerError),
    /// so/rsyncso: the shared object was refused or failed to start.
    #[error("{0}")]
    SharedObject(#[from] SoError),
    /// The configuration lacks what the mode needs (e.g. a destination).
    #[error("{0}")]
    Invalid(String),
}

/// Makes the client of the mirror run by the privileged helper, handing
/// it `rules`; None when no helper runs.
pub type HelperMirror = fn(&Rules) -> Option<Result<Box<dyn Handler>, HandlerError>>;

/// What building needs besides the configuration (see the module docs).
#[derive(Default)]
pub struct Context {
    /// The built-in mirror's destination root: opened by the first mirror
    /// built, then shared by every later one.
    pub dst_root: Option<Arc<DstRoot>>,
    /// The daemon came down from root with the writer capabilities kept:
    /// the mirror still copies owners.
    pub preserve_owner: bool,
    /// `--splitting=process`: the mirror runs in the helper.
    pub helper_mirror: Option<HelperMirror>,
}

/// The handler `cfg` asks for.
pub fn build(cfg: &Config, ctx: &mut Context) -> Result<Box<dyn Handler>, BuildError> {
    let no_destination = || BuildError::Invalid("no destination given".into());
    match cfg.mode {
        // csync2 has no -D: its peers come from its own config.
        Mode::Csync2 => Ok(Box::new(Csync2::new(csync2_config(cfg))?)),
        Mode::Simple => command(cfg, CommandMode::Simple),
        Mode::Direct => command(cfg, CommandMode::Direct),
        Mode::Shell => command(cfg, CommandMode::Shell),
        Mode::RsyncShell | Mode::RsyncDirect => {
            if cfg.mode == Mode::RsyncDirect && cfg.destination.is_none() {
                return Err(no_destination());
            }
            Ok(Box::new(RsyncDirect::new(rsync_config(cfg))?))
        }
        // so/rsyncso: load the shared object (checks, dlopen, init).
        Mode::So | Mode::RsyncSo => Ok(Box::new(SoHandler::new(so_config(cfg)?)?)),
        Mode::Unison => {
            let u = unison_config(cfg).ok_or_else(no_destination)?;
            Ok(Box::new(Unison::new(u)?))
        }
        Mode::Mirror => mirror(cfg, ctx),
    }
}

/// One handler per worker thread (`--threads` with `-p safe|full`).
pub fn build_all(cfg: &Config, ctx: &mut Context) -> Result<Vec<Box<dyn Handler>>, BuildError> {
    (0..cfg.threads.max(1)).map(|_| build(cfg, ctx)).collect()
}

fn command(cfg: &Config, mode: CommandMode) -> Result<Box<dyn Handler>, BuildError> {
    Ok(Box::new(CommandHandler::new(command_config(cfg, mode))?))
}

/// Whether the mode hands event bits (`%EVENT-MASK%`, shell lists) to its
/// program, so the tree must record them: only clsync's command modes do.
pub fn reports_masks(mode: &Mode) -> bool {
    matches!(mode, Mode::Simple | Mode::Direct | Mode::Shell)
}

/// Whether a new directory goes to the handler at once, without its `-t`
/// window: shell mode with `--have-recursive-sync` hands it to
/// `initialsync` at once, as clsync does.
pub fn new_dirs_at_once(cfg: &Config) -> bool {
    cfg.mode == Mode::Shell && cfg.have_recursive_sync
}

/// The so/rsyncso handler's settings for `cfg`.
pub fn so_config(cfg: &Config) -> Result<SoConfig, BuildError> {
    let mode = if cfg.mode == Mode::So {
        SoMode::Sync
    } else {
        SoMode::Rsync
    };
    let Some(object) = cfg.handler_program.clone() else {
        return Err(BuildError::Invalid(
            "-M so/rsyncso need -S /path/to/handler.so".into(),
        ));
    };
    let dest_os = cfg
        .destination
        .as_ref()
        .map(|d| d.as_os_str().to_os_string());
    let mut sc = SoConfig::new(
        mode,
        object,
        cfg.watch_dir.clone(),
        dest_os.unwrap_or_default(),
    );
    sc.label = cfg.label.clone();
    sc.lists_dir = cfg.lists_dir.clone();
    sc.keep_lists = cfg.keep_lists;
    sc.rules = Arc::clone(&cfg.rules);
    sc.prefer_include = cfg.rsync_prefer_include;
    sc.inclimit = cfg.rsync_inclimit;
    sc.recursive_sync = cfg.have_recursive_sync;
    sc.timeout_secs = cfg
        .timeout_sync
        .map_or(0, |t| u32::try_from(t.as_secs()).unwrap_or(u32::MAX));
    sc.debug = match cfg.log_level {
        ::log::LevelFilter::Debug => 1,
        ::log::LevelFilter::Trace => 2,
        _ => 0,
    };
    Ok(sc)
}

/// The built-in mirror: dry, in the helper, or here through the shared
/// destination root.
fn mirror(cfg: &Config, ctx: &mut Context) -> Result<Box<dyn Handler>, BuildError> {
    let Some(dest) = &cfg.destination else {
        return Err(BuildError::Invalid("no destination given".into()));
    };
    let Destination::Local(dst) = dest else {
        return Err(BuildError::Invalid(
            "the built-in mirror needs a local destination".into(),
        ));
    };
    if cfg.dry_run {
        // --dry-run only reads: no helper, and the destination is not
        // created.
        let mirror =
            Mirror::new(cfg.watch_dir.clone(), dst.clone(), Arc::clone(&cfg.rules)).dry_run(true);
        return Ok(Box::new(owners(mirror, ctx)));
    }
    if let Some(client) = ctx.helper_mirror.and_then(|make| make(&cfg.rules)) {
        return Ok(client?);
    }
    let root = match &ctx.dst_root {
        Some(r) => Arc::clone(r),
        None => Arc::clone(ctx.dst_root.insert(Arc::new(DstRoot::open(dst, true)?))),
    };
    let mirror = Mirror::new(cfg.watch_dir.clone(), dst.clone(), Arc::clone(&cfg.rules))
        .with_root(root)
        .xattrs(cfg.xattrs, cfg.acls);
    Ok(Box::new(owners(mirror, ctx)))
}

/// Dropped from root with the writer capabilities kept: owners are still
/// copied (src/security/privilege.rs); otherwise the mirror's own default
/// (copy owners when running as root) stands.
fn owners(mirror: Mirror, ctx: &Context) -> Mirror {
    if ctx.preserve_owner {
        mirror.preserve_owner(true)
    } else {
        mirror
    }
}

/// The command-mode handler's settings for `cfg` (also used by
/// `security::argv_check` to derive the argv the helper allows, so both
/// agree).
pub fn command_config(cfg: &Config, mode: CommandMode) -> CommandConfig {
    let program = cfg.handler_program.clone().unwrap_or_default();
    let mut cc = CommandConfig::new(mode, program, cfg.watch_dir.clone());
    cc.args = cfg.handler_args.clone();
    cc.initial_args = cfg.initial_handler_args.clone();
    // clsync's command modes may run without -D (%destination-dir% is
    // empty then).
    cc.dst = cfg
        .destination
        .as_ref()
        .map(|d| d.as_os_str().to_os_string());
    cc.lists_dir = cfg.lists_dir.clone();
    cc.keep_lists = cfg.keep_lists;
    cc.ignore_exit = cfg.ignore_exit.clone();
    cc.label = cfg.label.clone();
    cc.rules = Arc::clone(&cfg.rules);
    cc.timeout = cfg.timeout_sync;
    cc.synclist_simplify = cfg.synclist_simplify;
    cc.have_recursive_sync = cfg.have_recursive_sync;
    cc.full_initialsync = cfg.full_initialsync;
    cc
}

/// The rsync handler's settings for `cfg` (rsyncdirect, or rsyncshell
/// with the user's program); see [`command_config`].
pub fn rsync_config(cfg: &Config) -> RsyncConfig {
    let shell = cfg.mode == Mode::RsyncShell;
    let program = match &cfg.handler_program {
        Some(p) => p.clone(),
        None if shell => OsString::new(),
        None => "rsync".into(),
    };
    let dst = cfg
        .destination
        .as_ref()
        .map(|d| d.as_os_str().to_os_string())
        .unwrap_or_default();
    let mut rc = RsyncConfig::new(program, cfg.watch_dir.clone(), dst);
    rc.shell = shell;
    rc.args = cfg.handler_args.clone();
    rc.lists_dir = cfg.lists_dir.clone();
    rc.keep_lists = cfg.keep_lists;
    rc.ignore_exit = cfg.ignore_exit.clone();
    rc.label = cfg.label.clone();
    rc.rules = Arc::clone(&cfg.rules);
    rc.timeout = cfg.timeout_sync;
    rc.prefer_include = cfg.rsync_prefer_include;
    rc.inclimit = cfg.rsync_inclimit;
    rc.full_initialsync = cfg.full_initialsync;
    rc.xattrs = cfg.xattrs;
    rc.acls = cfg.acls;
    rc
}

/// The unison handler's settings for `cfg` (None without -D); see
/// [`command_config`].
pub fn unison_config(cfg: &Config) -> Option<UnisonConfig> {
    let dest = cfg.destination.as_ref()?;
    let program = cfg
        .handler_program
        .clone()
        .unwrap_or_else(|| "unison".into());
    let local = matches!(dest, Destination::Local(_));
    let mut u = UnisonConfig::new(program, cfg.watch_dir.clone(), dest.as_os_str(), local);
    u.args = cfg.handler_args.clone();
    u.ignore_exit = cfg.ignore_exit.clone();
    u.timeout = cfg.timeout_sync;
    u.label = cfg.label.clone();
    Some(u)
}

/// The csync2 handler's settings for `cfg`; see [`command_config`].
pub fn csync2_config(cfg: &Config) -> Csync2Config {
    let program = cfg
        .handler_program
        .clone()
        .unwrap_or_else(|| "csync2".into());
    let mut c = Csync2Config::new(program, cfg.watch_dir.clone());
    c.args = cfg.handler_args.clone();
    c.ignore_exit = cfg.ignore_exit.clone();
    c.timeout = cfg.timeout_sync;
    c.label = cfg.label.clone();
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn config(extra: &[&str]) -> Config {
        let mut v = vec!["livesync"];
        v.extend_from_slice(extra);
        Config::from_args(crate::config::cli::Args::try_parse_from(v).expect("clap"))
            .expect("config")
    }

    #[test]
    fn every_mirror_built_shares_one_destination_root() {
        let t = tempfile::tempdir().expect("tempdir");
        let src = t.path().join("src");
        std::fs::create_dir(&src).expect("mkdir");
        let dst = t.path().join("dst");
        let cfg = config(&[
            "-W",
            src.to_str().expect("utf8"),
            "-D",
            dst.to_str().expect("utf8"),
            "-p",
            "safe",
            "--threads",
            "3",
        ]);
        let mut ctx = Context::default();
        let handlers = build_all(&cfg, &mut ctx).expect("build");
        assert_eq!(handlers.len(), 3);
        assert!(handlers.iter().all(|h| h.name() == "mirror"));
        let root = ctx
            .dst_root
            .clone()
            .expect("the first mirror opened the root");
        build(&cfg, &mut ctx).expect("rebuild");
        let again = ctx.dst_root.as_ref().expect("kept");
        assert!(
            Arc::ptr_eq(&root, again),
            "a rebuilt mirror opened its own root"
        );
    }

    #[test]
    fn the_helper_runs_the_mirror_when_there_is_one() {
        fn helper(_: &Rules) -> Option<Result<Box<dyn Handler>, HandlerError>> {
            Some(Err(HandlerError::Other("the helper answered".into())))
        }
        let t = tempfile::tempdir().expect("tempdir");
        let (src, dst) = (t.path().join("src"), t.path().join("dst"));
        std::fs::create_dir(&src).expect("mkdir");
        let cfg = config(&[
            "-W",
            src.to_str().expect("utf8"),
            "-D",
            dst.to_str().expect("utf8"),
        ]);
        let mut ctx = Context {
            helper_mirror: Some(helper),
            ..Context::default()
        };
        match build(&cfg, &mut ctx) {
            Err(BuildError::Handler(HandlerError::Other(m))) => {
                assert_eq!(m, "the helper answered")
            }
            Err(e) => panic!("{e}"),
            Ok(h) => panic!("built {} here instead of asking the helper", h.name()),
        }
        assert!(
            ctx.dst_root.is_none(),
            "the daemon opened the destination itself"
        );
    }
}
