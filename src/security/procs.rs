//! Our children's process groups: finding them and signalling them.
//!
//! Every child livesync starts (a handler, a hook) leads a process group of
//! its own (see [`crate::exec`]), but the process that runs it sits on the
//! worker thread, out of the event loop's reach. To stop running handlers on
//! SIGTERM/SIGINT, the loop finds its children through `/proc` (processes
//! whose parent is us and that lead their own group) and through
//! [`crate::exec::running_groups`] (enough where there is no `/proc`, in a
//! `--chroot` jail) and signals each whole group. This module only finds and signals; it never reaps (the worker's
//! `exec` does) and never touches a process that is not our child.

use std::fs;

/// The pids of our children that lead a process group of their own.
pub fn child_groups() -> Vec<i32> {
    let mut out = crate::exec::running_groups();
    for pid in from_proc() {
        if !out.contains(&pid) {
            out.push(pid);
        }
    }
    out
}

/// [`child_groups`] as `/proc` shows them.
fn from_proc() -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    let Ok(dir) = fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid pgrp ...`; comm may hold anything, so split
        // after its closing parenthesis.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let (Some(state), Some(ppid), Some(pgrp)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if state == "Z" {
            continue;
        }
        if ppid.parse::<i32>() == Ok(me) && pgrp.parse::<i32>() == Ok(pid) {
            out.push(pid);
        }
    }
    out
}

/// Sends `sig` to the process group of each of our children; returns how
/// many groups were signalled.
pub fn signal_child_groups(sig: libc::c_int) -> usize {
    let groups = child_groups();
    for &g in &groups {
        log::debug!("sending signal {sig} to process group {g}");
        // SAFETY: plain syscall; `g` is the group of a child of ours.
        unsafe { libc::killpg(g, sig) };
    }
    groups.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    #[test]
    fn finds_and_kills_a_child_group_only() {
        let mut own = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .expect("spawn");
        let mut shared = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn");
        let groups = child_groups();
        assert!(groups.contains(&(own.id() as i32)), "{groups:?}");
        assert!(
            !groups.contains(&(shared.id() as i32)),
            "a child in our own group is not a handler group"
        );
        assert!(signal_child_groups(libc::SIGKILL) >= 1);
        let st = own.wait().expect("wait");
        assert!(!st.success());
        let _ = shared.kill();
        let _ = shared.wait();
    }
}
