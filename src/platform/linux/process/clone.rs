//! The child's clone and exec, as posix_spawn makes them: the child shares damon's memory
//! (CLONE_VM) and damon waits (CLONE_VFORK) until the child's exec or exit. Nothing of damon's
//! memory is copied: no page tables, no copy-on-write faults afterwards in damon, no address
//! space to tear down at the exec. That is most of a fork's cost, and a fork is much of a
//! launch's (docs/cost.md).
//!
//! Two ways into the group:
//! - cgroup v2: clone3(2) with CLONE_INTO_CGROUP (Linux 5.7): the kernel creates the child in
//!   its group. Nothing is moved, so the start does not wait for the RCU grace period that
//!   every move between cgroups waits for (the move takes the cgroup threadgroup lock for
//!   writing). A clone3 child that shares memory needs a stack of its own from its first
//!   instruction, which no libc wrapper gives: on x86_64 and aarch64 a few instructions of
//!   assembly start it there ([`clone3_on_stack`]); elsewhere the child gets a copy of damon's
//!   memory, as fork gives it.
//! - otherwise (cgroup v1, or clone3 refused): clone(2), and the child writes itself into each
//!   group's `cgroup.procs` (a v1 hierarchy's `tasks`) before its exec.
//!
//! Either way the child runs no instruction of the command outside its group. damon may have
//! other threads by now (the metrics server), which the child does not have, and libc does
//! not know the child exists: so until execve the child makes only system calls, on data
//! prepared before the clone, with no allocation, no lock, no libc function that keeps state
//! per thread. An error before exec comes back as the errno through a close-on-exec pipe, as
//! std's own spawn reports it.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::{AsRawFd, FromRawFd, RawFd};
use std::path::Path;

use nix::libc;
use nix::unistd::Pid;

use super::super::sandbox::{init, Namespaces, Prepared, Step};
use super::identity::Identity;

/// The sandbox's init (in a PID namespace, see sandbox/namespaces.rs). On x86_64 and aarch64 it
/// shares damon's memory, as the command does until its exec: a fork's copy of damon's page
/// tables, the copy-on-write faults after it and the copy's teardown cost a launch about 0.15
/// ms. It then runs on a stack that damon keeps until it has reaped it, and its system calls
/// after damon has gone on leave `errno`, the cloning thread's, alone (sandbox/init.rs).
/// Elsewhere no clone here runs on a stack of its own from its first instruction (see
/// [`clone3_into`]), so the init gets a copy of damon's memory.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const INIT_FLAGS: libc::c_int = libc::CLONE_VM;
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const INIT_FLAGS: libc::c_int = 0;
/// The command, as posix_spawn clones it.
const COMMAND_FLAGS: libc::c_int = libc::CLONE_VM | libc::CLONE_VFORK;

/// Why the kernel refuses the sandbox's namespaces, and the way out.
pub const NAMESPACES_REFUSED: &str = "damon needs CAP_SYS_ADMIN for them, and runs where no container or seccomp \
                                      filter refuses new namespaces; unset DAMON_SANDBOX to run without the sandbox";

/// linux/sched.h: place the child in the cgroup v2 directory given by `CloneArgs::cgroup`.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// The child's stack until its exec. It needs a few KiB (the identity's and the signals' system
/// calls); the rest is margin, and untouched pages cost nothing.
const CHILD_STACK_BYTES: usize = 256 * 1024;

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
pub enum CloneError {
    /// The kernel or a seccomp filter refuses clone3 or CLONE_INTO_CGROUP: ENOSYS (no clone3:
    /// before Linux 5.3, or a filter), E2BIG or EINVAL (before 5.7: a larger clone_args or an
    /// unknown flag), EPERM (a filter). Nothing was started; joining the group may work.
    Refused(io::Error),
    /// Nothing was started: the group could not be opened, an argument holds a NUL byte, or
    /// the clone failed otherwise (EAGAIN at the process limit...).
    Prepare(String, io::Error),
    /// The child started but could not become the command: the errno of the failed step
    /// (joining the group, taking on the identity, execve); the child is reaped.
    Child(io::Error),
    /// The sandbox's namespaces could not be made: which step, and its errno; the child is
    /// reaped.
    Namespace(String, io::Error),
}

/// Where the child goes.
pub enum Destination<'a> {
    /// cgroup v2: born in this group's directory.
    Group(&'a Path),
    /// Writes itself ("0") into each of these open `cgroup.procs` or v1 `tasks` files.
    Join(&'a [RawFd]),
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

/// Everything the child needs between the clone and its exec, made before the clone.
struct Child<'a> {
    exec: ExecArgs,
    prepare: fn() -> io::Result<()>,
    join: &'a [RawFd],
    identity: &'a Identity,
    sandbox: &'a Prepared<'a>,
    error_pipe: RawFd,
    /// Sandboxed: the write end of the pipe for the command's wait status (see [`init`]), and
    /// the top of the stack on which the init starts the command.
    status_pipe: RawFd,
    command_stack_top: usize,
}

impl Child<'_> {
    /// damon's child, between the clone and its exec: system calls only (see the module's
    /// comment). In the sandbox's namespaces it is their init, which starts the command.
    fn run(&self) -> ! {
        match self.sandbox.namespaces() {
            None => self.command(true),
            Some(namespaces) if namespaces.has_init() => self.init(namespaces),
            Some(namespaces) => {
                if let Err((step, index, e)) = namespaces.enter(self.sandbox.ruleset_fd()) {
                    self.fail(Some(e), step.0, index);
                }
                self.command(true)
            }
        }
    }

    /// Becomes the command: joins the group (where it was not born in it), confines itself and
    /// takes on its identity, then execs.
    fn command(&self, join: bool) -> ! {
        let join = || if join { self.join_group() } else { Ok(()) };
        // The sandbox once in the group (its domain would refuse the write to cgroup.procs), and
        // before the identity: a user that is not root may install neither without no_new_privs.
        let result: io::Result<()> = (self.prepare)()
            .and_then(|()| join())
            .and_then(|()| self.sandbox.apply())
            .and_then(|()| self.identity.apply())
            .and_then(|()| {
                // SAFETY: execve(2) with NUL-terminated strings and NULL-terminated pointer arrays,
                // all made before the clone and alive: damon waits for the exec (CLONE_VFORK), or
                // this is a copy of its memory. It returns only on failure.
                unsafe {
                    libc::execve(self.exec.program.as_ptr(), self.exec.argv_ptrs.as_ptr(), self.exec.envp_ptrs.as_ptr())
                };
                Err(io::Error::last_os_error())
            });
        self.fail(result.err(), 0, 0)
    }

    /// The sandbox's init: joins the group, makes the namespaces, starts the command in them
    /// (sharing this copy's memory until its exec), then passes signals on and reaps.
    fn init(&self, namespaces: &Namespaces) -> ! {
        let check = |result: libc::c_long| if result == -1 { Err(io::Error::last_os_error()) } else { Ok(()) };
        let join = self.join_group();
        // Every signal waits for the init's sigwaitinfo, from before the command exists.
        let blocked = join.and_then(|()| {
            // SAFETY: a sigset_t is plain integers, for which zero bytes are a valid value.
            let mut every_signal: libc::sigset_t = unsafe { std::mem::zeroed() };
            // SAFETY: sigfillset(3) fills the set on this stack.
            unsafe { libc::sigfillset(&mut every_signal) };
            // SAFETY: sigprocmask(2) reads the set on this stack.
            check(unsafe { libc::sigprocmask(libc::SIG_SETMASK, &every_signal, std::ptr::null_mut()) }.into())
        });
        // A session of its own (the command's process group is then the init's, pid 1, which
        // it can see), and no dump: the workload cannot read this copy of damon's memory.
        // SAFETY: setsid(2) and prctl(2) with integer arguments only.
        let result = blocked
            .and_then(|()| check(unsafe { libc::setsid() }.into()))
            .and_then(|()| check(unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0 as libc::c_ulong, 0, 0, 0) }.into()));
        if let Err(e) = result {
            self.fail(Some(e), Step::INIT.0, 0);
        }
        if let Err((step, index, e)) = namespaces.enter(self.sandbox.ruleset_fd()) {
            self.fail(Some(e), step.0, index);
        }
        // SAFETY: clone(2) as posix_spawn uses it, as in `spawn`: the command runs
        // `command_entry` on its own stack in this process's memory, and this one waits
        // (CLONE_VFORK) until it has exec'd or exited.
        let pid = unsafe {
            libc::clone(
                command_entry,
                self.command_stack_top as *mut libc::c_void,
                libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                self as *const Child as *mut libc::c_void,
            )
        };
        if pid == -1 {
            self.fail(Some(io::Error::last_os_error()), Step::INIT.0, 0);
        }
        // Read while damon waits: once the error pipe is closed, damon goes on and `self` is gone.
        let passing = self.sandbox.init_passing();
        let status_pipe = self.status_pipe;
        // The command has exec'd, or failed and said why on the error pipe (damon then reports
        // that and reaps the init, which reaps it). The init closes its end of the error pipe,
        // so that damon reads to its end, and keeps nothing of damon's but the status pipe.
        // SAFETY: close_range(2) with integers only, on descriptors of this copy alone.
        unsafe {
            libc::syscall(
                libc::SYS_close_range,
                0 as libc::c_uint,
                (self.status_pipe - 1) as libc::c_uint,
                0 as libc::c_uint,
            );
            libc::syscall(
                libc::SYS_close_range,
                (self.status_pipe + 1) as libc::c_uint,
                libc::c_uint::MAX,
                0 as libc::c_uint,
            );
        }
        init::run(pid, passing, status_pipe)
    }

    /// Writes this process into each `cgroup.procs` or v1 `tasks` it is to join ("0" is the writer
    /// itself; in `tasks` the writing thread, which is the whole of this one-thread process).
    fn join_group(&self) -> io::Result<()> {
        self.join.iter().try_for_each(|fd| {
            nix::unistd::write(*fd, b"0").map(drop).map_err(|e| io::Error::from_raw_os_error(e as i32))
        })
    }

    /// Tells damon on the error pipe why the start failed (the errno, and the namespace step
    /// with its index, 0 for the command's own steps) and ends.
    fn fail(&self, error: Option<io::Error>, step: u16, index: u16) -> ! {
        let errno = error.and_then(|e| e.raw_os_error()).unwrap_or(libc::EINVAL);
        let mut report = [0u8; 8];
        report[..4].copy_from_slice(&errno.to_ne_bytes());
        report[4..6].copy_from_slice(&step.to_ne_bytes());
        report[6..].copy_from_slice(&index.to_ne_bytes());
        // SAFETY: write(2) of a buffer on this stack to the pipe's end, then _exit(2), which ends the
        // child without running damon's exit handlers or destructors.
        unsafe {
            libc::write(self.error_pipe, report.as_ptr().cast(), report.len());
            libc::_exit(127)
        }
    }
}

/// The child's first Rust function on its own stack, for clone(2) and [`clone3_on_stack`].
extern "C" fn child_entry(child: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `child` is the `Child` that `spawn` made and keeps alive until the child has
    // exec'd or exited (CLONE_VFORK), or a copy of it in the child's own memory; the child only
    // reads it.
    let child = unsafe { &*(child as *const Child) };
    child.run()
}

/// The command's first function, started by the sandbox's init.
extern "C" fn command_entry(child: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `child` is the init's `Child`, in the memory the command shares with the init
    // until its exec; the init waits (CLONE_VFORK) and the command only reads it.
    let child = unsafe { &*(child as *const Child) };
    child.command(false)
}

/// A started child: its pid, and in the sandbox's namespaces the pipe on which its init
/// writes the command's wait status and the stack the init runs on.
pub struct Started {
    pub pid: Pid,
    pub status_pipe: Option<File>,
    /// Where the init shares damon's memory, this must stay allocated until the init is reaped.
    pub init_stack: Option<Vec<u8>>,
}

/// Starts `program` (argv[0] and the rest in `argv`) `into` its group, after `prepare`
/// (signal dispositions and mask), confined by `sandbox` and as `identity`.
pub fn spawn(
    into: Destination,
    program: &Path,
    argv: &[OsString],
    prepare: fn() -> io::Result<()>,
    identity: &Identity,
    sandbox: &Prepared,
) -> Result<Started, CloneError> {
    let exec = ExecArgs::new(program, argv)
        .map_err(|e| CloneError::Prepare(format!("cannot pass {:?} to execve", argv[0]), e))?;
    let pipe = || {
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| CloneError::Prepare("cannot make a pipe".to_string(), io::Error::from(e)))?;
        // SAFETY: pipe2(2) just returned these descriptors; nothing else owns them.
        Ok(unsafe { (File::from_raw_fd(read), File::from_raw_fd(write)) })
    };
    let (mut error_read, error_write) = pipe()?;
    // The sandbox's namespaces, and whether the child is their init.
    let namespaces = sandbox.namespaces();
    let init = namespaces.map_or(false, Namespaces::has_init);
    let (status_read, status_write) = if init {
        let (read, write) = pipe()?;
        (Some(read), Some(write))
    } else {
        (None, None)
    };
    let join = match into {
        Destination::Join(fds) => fds,
        Destination::Group(_) => &[],
    };
    // Capacity only: the pages the child does not touch are never faulted in. In the sandbox's
    // namespaces the init starts the command on a second stack.
    let mut stack: Vec<u8> = Vec::with_capacity(CHILD_STACK_BYTES);
    let mut command_stack: Vec<u8> = Vec::with_capacity(if init { CHILD_STACK_BYTES } else { 0 });
    // The stack grows down from its top, which the ABI wants 16-byte aligned.
    let stack_top = (stack.as_mut_ptr() as usize + CHILD_STACK_BYTES) & !15;
    let command_stack_top = (command_stack.as_mut_ptr() as usize + command_stack.capacity()) & !15;
    let child = Child {
        exec,
        prepare,
        join,
        identity,
        sandbox,
        error_pipe: error_write.as_raw_fd(),
        status_pipe: status_write.as_ref().map_or(-1, |f| f.as_raw_fd()),
        command_stack_top,
    };
    let child_arg = &child as *const Child as *mut libc::c_void;
    // The sandbox's init outlives the exec of the command: damon does not wait for it.
    let flags = match namespaces {
        None => COMMAND_FLAGS,
        Some(namespaces) if init => namespaces.clone_flags() | INIT_FLAGS,
        Some(namespaces) => namespaces.clone_flags() | COMMAND_FLAGS,
    };
    let result = match into {
        Destination::Group(group) => {
            // Opened close-on-exec, as std opens everything: the command does not inherit it.
            let dir =
                File::open(group).map_err(|e| CloneError::Prepare(format!("cannot open {}", group.display()), e))?;
            let pid = clone3_into(&dir, flags, stack.as_mut_ptr() as u64, stack_top as u64, &child);
            match pid {
                Err(e) if refused(&e) => return Err(CloneError::Refused(e)),
                Err(e) => {
                    return Err(CloneError::Prepare(format!("cannot start {:?} in {}", argv[0], group.display()), e))
                }
                Ok(pid) => pid,
            }
        }
        Destination::Join(_) => {
            // SAFETY: clone(2) as posix_spawn uses it. The child runs `child_entry` on `stack`, which
            // outlives it: CLONE_VFORK keeps this function here until the child has exec'd or
            // exited (without CLONE_VM, the child runs on its own copy). The child only reads
            // `child` and makes system calls.
            let pid =
                unsafe { libc::clone(child_entry, stack_top as *mut libc::c_void, flags | libc::SIGCHLD, child_arg) };
            if pid == -1 {
                let e = io::Error::last_os_error();
                let context = if namespaces.is_some() && e.raw_os_error() == Some(libc::EPERM) {
                    format!(
                        "cannot start {:?} in namespaces of its own (DAMON_SANDBOX): {}",
                        argv[0], NAMESPACES_REFUSED
                    )
                } else {
                    format!("cannot start {:?}", argv[0])
                };
                return Err(CloneError::Prepare(context, e));
            }
            Pid::from_raw(pid)
        }
    };
    drop(error_write);
    drop(status_write);
    // End of file: the exec closed the pipe (in the namespaces, the init closed it after the
    // command's exec). Eight bytes: the errno of a failed step, and which step.
    let mut report = [0u8; 8];
    let mut filled = 0;
    while filled < report.len() {
        match error_read.read(&mut report[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    drop(command_stack);
    if filled == 0 {
        let init_stack = if init { Some(stack) } else { None };
        return Ok(Started { pid: result, status_pipe: status_read, init_stack });
    }
    let _ = nix::sys::wait::waitpid(result, None);
    drop(stack);
    let mut errno = [0u8; 4];
    errno.copy_from_slice(&report[..4]);
    let error = io::Error::from_raw_os_error(i32::from_ne_bytes(errno));
    let step = u16::from_ne_bytes([report[4], report[5]]);
    let index = u16::from_ne_bytes([report[6], report[7]]);
    match sandbox.namespaces() {
        Some(namespaces) if step != 0 => Err(CloneError::Namespace(namespaces.describe(Step(step), index), error)),
        _ => Err(CloneError::Child(error)),
    }
}

/// Whether a failed clone3 means the kernel or a filter refuses it, so that joining may work.
fn refused(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::E2BIG | libc::EINVAL | libc::EPERM))
}

/// clone3 with CLONE_INTO_CGROUP. On x86_64 and aarch64 the child shares damon's memory and runs on the
/// stack `[stack, stack_top)`; elsewhere it gets a copy of damon's memory, as fork gives it,
/// and returns here on a copy of this stack, going straight into the child's steps.
fn clone3_into(dir: &File, flags: libc::c_int, stack: u64, stack_top: u64, child: &Child) -> io::Result<Pid> {
    let mut args = CloneArgs {
        flags: CLONE_INTO_CGROUP | flags as u64,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: dir.as_raw_fd() as u64,
        ..CloneArgs::default()
    };
    // The child's pid, or minus the errno.
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    let result = {
        args.stack = stack;
        args.stack_size = stack_top - stack;
        // SAFETY: see clone3_on_stack; `args` names a stack that outlives the child's use of it
        // (CLONE_VFORK: this thread waits until the child has exec'd or exited; without
        // CLONE_VM the child has its own copy of it), and `child` is what child_entry reads.
        unsafe { clone3_on_stack(&mut args, child as *const Child as *mut libc::c_void) }
    };
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let result = {
        let _ = (stack, stack_top);
        args.flags &= !(libc::CLONE_VM as u64 | libc::CLONE_VFORK as u64);
        // SAFETY: clone3(2) reads `size_of::<CloneArgs>()` bytes of a live, properly laid out
        // struct. Without CLONE_VM the child runs on a copy of this stack and memory, like fork's
        // child; it returns here with 0 and goes straight into `child.run`, which never returns.
        match unsafe { libc::syscall(libc::SYS_clone3, &mut args as *mut CloneArgs, std::mem::size_of::<CloneArgs>()) }
        {
            -1 => -(io::Error::last_os_error().raw_os_error().unwrap_or(libc::EINVAL) as isize),
            0 => child.run(),
            pid => pid as isize,
        }
    };
    if result < 0 {
        Err(io::Error::from_raw_os_error(-result as i32))
    } else {
        Ok(Pid::from_raw(result as i32))
    }
}

/// The clone3 system call, whose child starts on the stack that `args` names and calls
/// [`child_entry`] with `child_arg` there. Returns the child's pid or minus the errno.
///
/// # Safety
/// `args` must name a stack that stays allocated and unused by anything else until the child
/// has exec'd or exited, and `child_arg` must be what `child_entry` expects.
#[cfg(target_arch = "x86_64")]
unsafe fn clone3_on_stack(args: &mut CloneArgs, child_arg: *mut libc::c_void) -> isize {
    let result: isize;
    // The child returns from the system call with 0 in rax and rsp at the top of its stack
    // (16-byte aligned: `call` then leaves the alignment the ABI gives a function's entry).
    // It never comes back: child_entry ends in execve or _exit. The parent skips to label 2.
    // SAFETY: the caller's contract; the system call clobbers rcx and r11, declared below.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "mov rdi, r12",
            "call r13",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 as isize => result,
            in("rdi") args as *mut CloneArgs,
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("r12") child_arg,
            in("r13") child_entry as extern "C" fn(*mut libc::c_void) -> libc::c_int,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    result
}

/// The same as the x86_64 [`clone3_on_stack`], for aarch64.
///
/// # Safety
/// As for the x86_64 one.
#[cfg(target_arch = "aarch64")]
unsafe fn clone3_on_stack(args: &mut CloneArgs, child_arg: *mut libc::c_void) -> isize {
    let result: isize;
    // The system call number goes in x8, the arguments in x0 and x1; the kernel changes only
    // x0. The child returns from it with 0 in x0 and sp at the top of its stack (16-byte
    // aligned, as AAPCS64 wants at every call) and the parent's other registers: x9 and x10
    // hold what it calls (x19 and x29 cannot be named here; LLVM reserves them). It never comes
    // back: child_entry ends in execve or _exit. The parent skips to label 2.
    // SAFETY: the caller's contract; only x0 changes in the parent.
    unsafe {
        std::arch::asm!(
            "svc #0",
            "cbnz x0, 2f",
            "mov x0, x9",
            "blr x10",
            "brk #0x1",
            "2:",
            inlateout("x0") args as *mut CloneArgs => result,
            in("x1") std::mem::size_of::<CloneArgs>(),
            in("x8") libc::SYS_clone3,
            in("x9") child_arg,
            in("x10") child_entry as extern "C" fn(*mut libc::c_void) -> libc::c_int,
            options(nostack),
        );
    }
    result
}
