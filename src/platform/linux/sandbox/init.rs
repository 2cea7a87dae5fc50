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
//! It shares damon's memory on x86_64 and aarch64 (CLONE_VM, see process/clone.rs; elsewhere it has
//! a copy) and runs system calls only, on its own stack, as everything between a clone and an
//! exec: no allocation, no lock. Once damon has gone on, it touches nothing of damon's but
//! its stack, and its system calls leave `errno`, which it shares with a thread of damon's,
//! alone.

use std::os::unix::io::RawFd;

use nix::libc;

use crate::platform::linux::process::signals::PASS_ON_SIGNALS;

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
            let status_at = &mut status as *mut libc::c_int as usize;
            // SAFETY: wait4(2) fills `status` on this stack.
            let pid = unsafe { syscall(libc::SYS_wait4, [-1isize as usize, status_at, libc::WNOHANG as usize, 0]) };
            if pid == command as isize {
                ended = Some(status);
                let bytes = status.to_ne_bytes();
                // SAFETY: write(2) of a buffer on this stack to the pipe damon reads.
                unsafe { syscall(libc::SYS_write, [status_pipe as usize, bytes.as_ptr() as usize, bytes.len(), 0]) };
            }
            match pid {
                pid if pid > 0 => continue,
                pid if pid == -(libc::EINTR as isize) => continue,
                // No process is left in the namespace.
                pid if pid == -(libc::ECHILD as isize) => exit_as(ended.unwrap_or(0)),
                _ => break,
            }
        }
        if let Some(status) = ended {
            // A tree-scope stop signals the init before the command (see the backend's
            // signal_tree): a stop that is pending when the command's end is reaped is one the
            // init has not taken yet, and the rest of the workload must drain.
            if passing.tree && !stopping {
                stopping = pending_stop(&every_signal, passing);
            }
            if !stopping {
                exit_as(status);
            }
        }
        // Every signal is blocked (since before the clone of the command): it waits here.
        // SAFETY: rt_sigtimedwait(2) reads the set on this stack (the kernel's sigset is 8
        // bytes); no siginfo, no timeout.
        let signal = unsafe {
            syscall(
                libc::SYS_rt_sigtimedwait,
                [&every_signal as *const libc::sigset_t as usize, 0, 0, KERNEL_SIGSET_BYTES],
            )
        };
        if signal <= 0 || signal == libc::SIGCHLD as isize {
            continue;
        }
        let signal = signal as libc::c_int;
        let (pass_on, stop) = passing.decide(signal);
        stopping |= stop;
        if ended.is_none() && pass_on {
            // SAFETY: kill(2) with integers only.
            unsafe { syscall(libc::SYS_kill, [command as usize, signal as usize, 0, 0]) };
        }
    }
}

/// Takes every signal pending now, without waiting; whether one of them is a stop.
fn pending_stop(every_signal: &libc::sigset_t, passing: Passing) -> bool {
    let no_wait = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    let mut stop = false;
    loop {
        // SAFETY: rt_sigtimedwait(2) reads the set and the zero timeout on this stack; no siginfo.
        let signal = unsafe {
            syscall(
                libc::SYS_rt_sigtimedwait,
                [
                    every_signal as *const libc::sigset_t as usize,
                    0,
                    &no_wait as *const libc::timespec as usize,
                    KERNEL_SIGSET_BYTES,
                ],
            )
        };
        // EAGAIN: none is pending.
        if signal <= 0 {
            return stop;
        }
        stop |= signal != libc::SIGCHLD as isize && passing.decide(signal as libc::c_int).1;
    }
}

/// The size of the kernel's signal set (64 signals), which rt_sigtimedwait(2) is told.
const KERNEL_SIGSET_BYTES: usize = 8;

/// Ends the init with the command's status as an exit code (damon reads the status itself from
/// the pipe; a signal cannot end a namespace's init from within).
fn exit_as(status: libc::c_int) -> ! {
    let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 128 + libc::WTERMSIG(status) };
    // SAFETY: _exit(2) ends this process without running damon's exit handlers.
    unsafe { libc::_exit(code) }
}

/// A system call that returns the result or minus the errno and leaves `errno` alone. Where
/// the init shares damon's memory (x86_64, aarch64: see process/clone.rs), `errno` is the one of
/// the damon thread that cloned it, which that thread may be reading at the same moment.
///
/// # Safety
/// The arguments must be what system call `number` expects, pointers to live memory included.
#[cfg(target_arch = "x86_64")]
unsafe fn syscall(number: libc::c_long, args: [usize; 4]) -> isize {
    let result: isize;
    // SAFETY: the caller's contract; the system call clobbers rcx and r11, declared below.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") number as isize => result,
            in("rdi") args[0],
            in("rsi") args[1],
            in("rdx") args[2],
            in("r10") args[3],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    result
}

/// The same as the x86_64 [`syscall`], for aarch64.
///
/// # Safety
/// As for the x86_64 one.
#[cfg(target_arch = "aarch64")]
unsafe fn syscall(number: libc::c_long, args: [usize; 4]) -> isize {
    let result: isize;
    // SAFETY: the caller's contract; the kernel changes only x0.
    unsafe {
        std::arch::asm!(
            "svc #0",
            inlateout("x0") args[0] as isize => result,
            in("x1") args[1],
            in("x2") args[2],
            in("x3") args[3],
            in("x8") number,
            options(nostack),
        );
    }
    result
}

/// Elsewhere the init has a copy of damon's memory, and its `errno` is its own.
///
/// # Safety
/// As for the x86_64 one.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
unsafe fn syscall(number: libc::c_long, args: [usize; 4]) -> isize {
    // SAFETY: the caller's contract.
    match unsafe { libc::syscall(number, args[0], args[1], args[2], args[3]) } {
        -1 => -(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EINVAL) as isize),
        result => result as isize,
    }
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
