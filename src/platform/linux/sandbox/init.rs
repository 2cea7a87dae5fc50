//! The init of a sandboxed workload's PID namespace: damon's child, once it has started the
//! command, as tini and bubblewrap's init do.
//!
//! The kernel gives a namespace's init no default action for a signal it does not handle, so
//! the command is not pid 1: it keeps its ordinary signal semantics. The init passes on every
//! signal it gets (damon's stop, SIGHUP, SIGUSR1...) to the command, reaps every process
//! orphaned in the namespace, and ends when the command ends, with its status; the kernel then
//! kills what is left in the namespace. With DAMON_STOP_SIGNAL_SCOPE=tree damon signals every
//! process of the group itself: the init then passes on only the signals damon passes on
//! without stopping (SIGUSR1, SIGUSR2, unless DAMON_STOP_SIGNAL names one of them), takes any
//! other as the stop, and waits for the rest of the workload to end (or be killed at the
//! timeout) before it ends.
//!
//! It is a copy of damon's memory (the child of a clone without CLONE_VM) and runs system calls
//! only, as everything between a clone and an exec: damon's other threads do not exist here.

use std::io;
use std::os::unix::io::RawFd;

use nix::libc;

use crate::platform::linux::signals::PASS_ON_SIGNALS;

/// What the init passes on to the command.
#[derive(Debug, Clone, Copy, Default)]
pub struct Passing {
    /// DAMON_STOP_SIGNAL_SCOPE=tree: damon signals every process of a stop itself.
    pub tree: bool,
    /// DAMON_STOP_SIGNAL, by number.
    pub stop_signal: Option<i32>,
}

impl Passing {
    /// Whether `signal` goes on to the command, and whether it is a stop.
    fn decide(self, signal: libc::c_int) -> (bool, bool) {
        if !self.tree {
            return (true, false);
        }
        let pass_on = PASS_ON_SIGNALS.iter().any(|s| *s as libc::c_int == signal) && self.stop_signal != Some(signal);
        (pass_on, !pass_on)
    }
}

/// Runs as the namespace's init after the command's exec; never returns. `command`: its pid in
/// the namespace; `status_pipe`: where its wait status goes, for damon, as soon as it ends.
pub fn run(command: libc::pid_t, passing: Passing, status_pipe: RawFd) -> ! {
    // SAFETY: sigfillset(3) fills the zeroed set on this stack.
    let mut every_signal: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::sigfillset(&mut every_signal) };
    let mut stopping = false;
    let mut ended: Option<libc::c_int> = None;
    loop {
        loop {
            let mut status: libc::c_int = 0;
            // SAFETY: waitpid(2) fills `status` on this stack.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid == command {
                ended = Some(status);
                let bytes = status.to_ne_bytes();
                // SAFETY: write(2) of a buffer on this stack to the pipe damon reads.
                unsafe { libc::write(status_pipe, bytes.as_ptr().cast(), bytes.len()) };
            }
            if pid > 0 {
                continue;
            }
            let error = io::Error::last_os_error().raw_os_error();
            if pid == -1 && error == Some(libc::EINTR) {
                continue;
            }
            if pid == -1 && error == Some(libc::ECHILD) {
                // No process is left in the namespace.
                exit_as(ended.unwrap_or(0));
            }
            break;
        }
        if let Some(status) = ended {
            if !stopping {
                exit_as(status);
            }
        }
        // Every signal is blocked (since before the clone of the command): it waits here.
        // SAFETY: sigwaitinfo(2) reads the set on this stack; no siginfo is asked for.
        let signal = unsafe { libc::sigwaitinfo(&every_signal, std::ptr::null_mut()) };
        if signal <= 0 || signal == libc::SIGCHLD {
            continue;
        }
        let (pass_on, stop) = passing.decide(signal);
        stopping |= stop;
        if ended.is_none() && pass_on {
            // SAFETY: kill(2) with integers only.
            unsafe { libc::kill(command, signal) };
        }
    }
}

/// Ends the init with the command's status as an exit code (damon reads the status itself from
/// the pipe; a signal cannot end a namespace's init from within).
fn exit_as(status: libc::c_int) -> ! {
    let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 128 + libc::WTERMSIG(status) };
    // SAFETY: _exit(2) ends this process without running damon's exit handlers.
    unsafe { libc::_exit(code) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_init_passes_on_what_damon_does_not_send_every_process_itself() {
        let child = Passing { tree: false, stop_signal: None };
        for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGUSR1, libc::SIGHUP] {
            assert_eq!(child.decide(signal), (true, false), "child scope: {}", signal);
        }
        let tree = Passing { tree: true, stop_signal: None };
        assert_eq!(tree.decide(libc::SIGUSR1), (true, false));
        assert_eq!(tree.decide(libc::SIGTERM), (false, true));
        assert_eq!(tree.decide(libc::SIGINT), (false, true));
        // A stop signal that is also one damon passes on: it is the stop.
        let usr1_stops = Passing { tree: true, stop_signal: Some(libc::SIGUSR1) };
        assert_eq!(usr1_stops.decide(libc::SIGUSR1), (false, true));
        assert_eq!(usr1_stops.decide(libc::SIGUSR2), (true, false));
    }
}
