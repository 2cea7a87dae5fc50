//! Starting the child with clone3(2) and CLONE_INTO_CGROUP (Linux 5.7, cgroup v2): the kernel
//! creates the child in its group. Nothing is moved, so the start does not wait for the RCU
//! grace period that every move between cgroups waits for (the move takes the cgroup
//! threadgroup lock for writing), and the child runs no instruction outside its group.
//!
//! std has no clone3 (Rust 1.63), so this is the system call itself, with fork's semantics (no
//! CLONE_VM: the child gets a copy of damon's memory). damon may have other threads by now (the
//! metrics server), which the child has no copy of, and libc does not know the child exists:
//! so until execve the child makes only system calls on data prepared before the clone, and
//! no allocation, no lock, no libc function that keeps state per thread. An error before exec
//! comes back as the errno through a close-on-exec pipe, as std's own spawn reports it.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::{AsRawFd, FromRawFd, RawFd};
use std::path::Path;

use nix::libc;
use nix::unistd::Pid;

use super::identity::Identity;

/// linux/sched.h: place the child in the cgroup v2 directory given by `CloneArgs::cgroup`.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// struct clone_args (linux/sched.h), as of Linux 5.7 (CLONE_ARGS_SIZE_VER2, 88 bytes).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Why no child runs in its group.
#[derive(Debug)]
pub enum Clone3Error {
    /// The kernel or a seccomp filter refuses clone3 or CLONE_INTO_CGROUP: ENOSYS (no clone3:
    /// before Linux 5.3, or a filter), E2BIG or EINVAL (before 5.7: a larger clone_args or an
    /// unknown flag), EPERM (a filter). Nothing was started; the portable way may work.
    Refused(io::Error),
    /// Nothing was started: the group could not be opened, an argument holds a NUL byte, or
    /// clone3 failed otherwise (EAGAIN at the process limit...).
    Prepare(String, io::Error),
    /// The child started but could not become the command: the errno of the failed step
    /// (execve, or taking on the identity); the child is reaped.
    Child(io::Error),
}

/// The command's argv and damon's environment as execve takes them, made before the clone.
struct ExecArgs {
    program: CString,
    // The pointers below point into these.
    _argv: Vec<CString>,
    _envp: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    envp_ptrs: Vec<*const libc::c_char>,
}

fn c_string(value: &OsStr) -> io::Result<CString> {
    CString::new(value.as_bytes()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

impl ExecArgs {
    fn new(program: &Path, argv: &[OsString]) -> io::Result<ExecArgs> {
        let program = c_string(program.as_os_str())?;
        let argv: Vec<CString> = argv.iter().map(|a| c_string(a)).collect::<io::Result<_>>()?;
        // The child inherits damon's environment, as with std's Command.
        let envp: Vec<CString> = std::env::vars_os()
            .map(|(key, value)| {
                let mut pair = key;
                pair.push("=");
                pair.push(value);
                c_string(&pair)
            })
            .collect::<io::Result<_>>()?;
        let pointers = |strings: &[CString]| {
            strings.iter().map(|s| s.as_ptr()).chain(std::iter::once(std::ptr::null())).collect::<Vec<_>>()
        };
        let (argv_ptrs, envp_ptrs) = (pointers(&argv), pointers(&envp));
        Ok(ExecArgs { program, _argv: argv, _envp: envp, argv_ptrs, envp_ptrs })
    }
}

/// Starts `program` (argv[0] and the rest in `argv`) in the cgroup v2 group `group`, after
/// `prepare` (signal dispositions and mask) and as `identity`.
pub fn spawn_into(
    group: &Path,
    program: &Path,
    argv: &[OsString],
    prepare: fn() -> io::Result<()>,
    identity: &Identity,
) -> Result<Pid, Clone3Error> {
    let exec = ExecArgs::new(program, argv)
        .map_err(|e| Clone3Error::Prepare(format!("cannot pass {:?} to execve", argv[0]), e))?;
    // Opened close-on-exec, as std opens everything: the command does not inherit it.
    let dir = File::open(group).map_err(|e| Clone3Error::Prepare(format!("cannot open {}", group.display()), e))?;
    let (error_read, error_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Clone3Error::Prepare("cannot make a pipe".to_string(), io::Error::from(e)))?;
    // SAFETY: pipe2(2) just returned these descriptors; nothing else owns them.
    let (mut error_read, error_write) = unsafe { (File::from_raw_fd(error_read), File::from_raw_fd(error_write)) };
    let mut args = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: dir.as_raw_fd() as u64,
        ..CloneArgs::default()
    };
    // SAFETY: clone3(2) reads `size_of::<CloneArgs>()` bytes of a live, properly laid out
    // struct. Without CLONE_VM the child runs on a copy of this stack and memory, like fork's
    // child; it returns here with 0 and goes straight into `child`, which never returns.
    let result =
        unsafe { libc::syscall(libc::SYS_clone3, &mut args as *mut CloneArgs, std::mem::size_of::<CloneArgs>()) };
    match result {
        -1 => {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::ENOSYS | libc::E2BIG | libc::EINVAL | libc::EPERM) => Err(Clone3Error::Refused(e)),
                _ => Err(Clone3Error::Prepare(format!("cannot start {:?} in {}", argv[0], group.display()), e)),
            }
        }
        0 => child(&exec, prepare, identity, error_write.as_raw_fd()),
        pid => {
            drop(error_write);
            let pid = Pid::from_raw(pid as i32);
            // End of file: the exec closed the pipe. Four bytes: the errno of a failed step.
            let mut errno = [0u8; 4];
            let mut filled = 0;
            while filled < errno.len() {
                match error_read.read(&mut errno[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            if filled == 0 {
                return Ok(pid);
            }
            let _ = nix::sys::wait::waitpid(pid, None);
            Err(Clone3Error::Child(io::Error::from_raw_os_error(i32::from_ne_bytes(errno))))
        }
    }
}

/// The child, between clone3 and exec: system calls only (see the module's comment).
fn child(exec: &ExecArgs, prepare: fn() -> io::Result<()>, identity: &Identity, error_pipe: RawFd) -> ! {
    let result: io::Result<()> = prepare().and_then(|()| identity.apply()).and_then(|()| {
        // SAFETY: execve(2) with NUL-terminated strings and NULL-terminated pointer arrays, all
        // made before the clone and alive in this copy of damon's memory. It returns only on
        // failure.
        unsafe { libc::execve(exec.program.as_ptr(), exec.argv_ptrs.as_ptr(), exec.envp_ptrs.as_ptr()) };
        Err(io::Error::last_os_error())
    });
    let errno = result.err().and_then(|e| e.raw_os_error()).unwrap_or(libc::EINVAL).to_ne_bytes();
    // SAFETY: write(2) of a buffer on this stack to the pipe's end, then _exit(2), which ends the
    // child without running damon's exit handlers or destructors.
    unsafe {
        libc::write(error_pipe, errno.as_ptr().cast(), errno.len());
        libc::_exit(127)
    }
}
