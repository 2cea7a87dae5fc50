//! The guard: a small process that removes the workload if damon is killed.
//!
//! A parent-death signal reaches only the direct child, and SIGKILL gives damon no chance to
//! clean up, so damon forks this process before starting the child. It waits on one end of a
//! socket pair; damon holds the other. If damon dies, the read returns end-of-file and the
//! guard kills every process of the cgroup and removes it. On a normal exit damon has done
//! that itself and dismisses the guard with one byte.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;

use nix::sys::wait::waitpid;
use nix::unistd::{fork, setsid, ForkResult, Pid};

use super::Cgroup;

pub struct Guard {
    pid: Pid,
    damon_end: UnixStream,
}

impl Guard {
    /// Forks the guard. Must be called while damon has a single thread.
    pub(super) fn start(cgroup: &Cgroup) -> io::Result<Guard> {
        let (damon_end, guard_end) = UnixStream::pair()?;
        // SAFETY: damon has one thread here (the metrics server starts after the guard), so
        // the child's copy of the heap and of every lock is consistent and it may run any code.
        match unsafe { fork() }.map_err(|e| io::Error::from_raw_os_error(e as i32))? {
            ForkResult::Parent { child } => Ok(Guard { pid: child, damon_end }),
            ForkResult::Child => {
                drop(damon_end);
                guard_main(guard_end, cgroup);
                // SAFETY: _exit ends the process without running damon's atexit handlers or
                // flushing stdio buffers copied from damon, which would write their content twice.
                unsafe { nix::libc::_exit(0) }
            }
        }
    }

    /// Tells the guard that damon cleaned up, and reaps it.
    pub fn dismiss(mut self) {
        let _ = self.damon_end.write_all(b"x");
        let _ = waitpid(self.pid, None);
    }
}

fn guard_main(mut guard_end: UnixStream, cgroup: &Cgroup) {
    // Out of damon's session and process group: a kill aimed at those must not take the guard.
    let _ = setsid();
    let mut byte = [0u8; 1];
    let dismissed = loop {
        match guard_end.read(&mut byte) {
            Ok(n) => break n == 1,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break false,
        }
    };
    if dismissed {
        return;
    }
    let errors = cgroup.destroy_all();
    let location = cgroup.location();
    if errors.is_empty() {
        tracing::warn!(cgroup = %location, "damon ended without cleaning up: its guard killed the workload and removed the cgroup");
    } else {
        let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
        tracing::error!(cgroup = %location, errors = %errors.join("; "), "damon ended without cleaning up: its guard could not remove everything");
    }
}
