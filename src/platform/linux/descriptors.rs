//! Descriptors damon inherited are not the workload's. Whatever started damon (Nomad's
//! executor, a shell, a service manager) may have left descriptors open without
//! close-on-exec, and the child would inherit them: one open on a cgroup.procs file lets the
//! workload leave its group, one on a socket speaks for damon's parent. damon uses none of them
//! (its own descriptors are opened close-on-exec), so at its start it marks every descriptor
//! above stderr close-on-exec, and the workload gets stdin, stdout and stderr only.

use std::os::unix::io::RawFd;

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::libc;

/// Marks every descriptor above 2 close-on-exec: one close_range(2) (Linux 5.11), else each
/// descriptor listed in /proc/self/fd.
pub fn close_inherited_on_exec() {
    // SAFETY: close_range(2) with CLOSE_RANGE_CLOEXEC only sets a flag on this process's
    // descriptors; it reads no memory.
    let marked = unsafe {
        libc::syscall(libc::SYS_close_range, 3 as libc::c_uint, libc::c_uint::MAX, libc::CLOSE_RANGE_CLOEXEC)
    };
    if marked == 0 {
        return;
    }
    let entries = match std::fs::read_dir("/proc/self/fd") {
        Ok(entries) => entries,
        Err(_) => return,
    };
    let fds: Vec<RawFd> =
        entries.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).filter(|fd| *fd > 2).collect();
    for fd in fds {
        // The listing's own descriptor is among them, closed by now: EBADF, harmless.
        let _ = fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    }
}
