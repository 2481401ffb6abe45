//! livesync: a live directory-mirroring daemon.
//!
//! The data path is `monitor → tree → queue → handler → exec`, wrapped by
//! `daemon` (see DESIGN.md). Only `main.rs` and `daemon/` touch
//! process-global state, and `security/` when the daemon calls it at start
//! (uid, capabilities, namespaces); everything else can be driven from a
//! test.

pub mod batch; // the unit of work handed from the queue to a handler
pub mod config; // command line (clap) and the validated, typed Config
pub mod ctl; // `livesync ctl SOCKET COMMAND`: the control socket's client
pub mod daemon; // the event loop, signals, logging: process-global state lives here
pub mod exec; // child processes: argv only, process group, exit codes
pub mod exit; // the daemon's exit codes, one list for the code and the docs
pub mod handler; // turns a batch into work; handler::build makes the one a Config asks for
pub mod monitor; // kernel change notifications → RawEvent (one module per backend)
pub mod path; // relative byte paths: joining, parents, rebasing, escaping for display
pub mod queue; // coalescing per path and delay windows, on an injected clock
pub mod rules; // clsync's rule grammar `[+-][fdwmsW*]regex`
pub mod security; // privilege drop, namespaces, seccomp, --chroot, the helper (SECURITY.md)
pub mod signature; // --modification-signature: skip paths whose lstat fields did not change
pub mod tree; // which dirs are walked and watched; turns raw events into changes
