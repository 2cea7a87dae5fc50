//! The sandbox's system call filter: a classic BPF program for seccomp(2), written here rather
//! than with seccompiler, which builds with Rust 1.63 but cannot express two things this
//! filter needs: refusing the x32 ABI (on x86_64 its calls arrive with the native architecture
//! and the number plus 0x40000000, so a filter of native numbers alone lets an x32 `mount`
//! through), and a different errno for clone3 than for the rest.
//!
//! Denied calls fail with EPERM, not a kill: a workload probing for a feature gets an error it
//! can handle. clone3 fails with ENOSYS instead: its flags are in memory, which a filter
//! cannot read, and ENOSYS makes glibc fall back to clone(2), whose flags it can. A call
//! through another ABI (i386's int 0x80 on x86_64, arm32 on aarch64, x32) kills the process:
//! the filter knows only native numbers, and such a program could not run correctly anyway.

use nix::libc;

/// struct sock_filter (linux/filter.h).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SockFilter {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

/// struct sock_fprog (linux/filter.h).
#[repr(C)]
pub struct SockFprog {
    pub len: u16,
    pub filter: *const SockFilter,
}

// linux/bpf_common.h: BPF_LD | BPF_W | BPF_ABS; BPF_JMP | BPF_JEQ (BPF_JGE, BPF_JSET) | BPF_K;
// BPF_RET | BPF_K.
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x15;
const BPF_JGE_K: u16 = 0x35;
const BPF_JSET_K: u16 = 0x45;
const BPF_RET_K: u16 = 0x06;

// linux/seccomp.h
const SECCOMP_RET_KILL_PROCESS: u32 = 0x8000_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
pub const SECCOMP_SET_MODE_FILTER: libc::c_uint = 1;
const SECCOMP_GET_ACTION_AVAIL: libc::c_uint = 2;

/// Offsets in struct seccomp_data: nr, arch, then six 64-bit arguments after the instruction
/// pointer. Both architectures are little-endian: an argument's low 32 bits come first.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;
fn data_arg_low(index: u32) -> u32 {
    16 + 8 * index
}

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH_NATIVE: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH_NATIVE: u32 = 0xC000_00B7;
/// asm/unistd.h: the x32 ABI's calls carry this bit.
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// musl's aarch64 bindings lack it (asm-generic/unistd.h: 294).
#[cfg(target_arch = "aarch64")]
const SYS_KEXEC_FILE_LOAD: libc::c_long = 294;
#[cfg(target_arch = "x86_64")]
const SYS_KEXEC_FILE_LOAD: libc::c_long = libc::SYS_kexec_file_load;

/// The namespace flags of clone(2) and unshare(2) (linux/sched.h): mount, cgroup, UTS, IPC,
/// user, pid, network. CLONE_NEWTIME (0x80) exists for unshare only: in clone's flags that bit
/// is part of the exit signal.
const CLONE_NAMESPACES: u32 =
    0x0002_0000 | 0x0200_0000 | 0x0400_0000 | 0x0800_0000 | 0x1000_0000 | 0x2000_0000 | 0x4000_0000;
const CLONE_NEWTIME: u32 = 0x80;
/// linux/ptrace.h
const PTRACE_ATTACH: u32 = 16;
const PTRACE_SEIZE: u32 = 0x4206;

/// asm-generic/ioctls.h (the same on x86_64 and aarch64): push a byte into a terminal's input,
/// and the Linux console's multiplexed requests (among them the same, and the selection).
const TIOCSTI: u32 = 0x5412;
const TIOCLINUX: u32 = 0x541C;
/// The socket families a service needs: local sockets, IPv4, IPv6, and netlink (the C
/// library's getaddrinfo asks the kernel's routing netlink for the host's addresses; changing
/// anything there needs CAP_NET_ADMIN, which the sandbox takes away).
const SOCKET_FAMILIES: [u32; 4] =
    [libc::AF_UNIX as u32, libc::AF_INET as u32, libc::AF_INET6 as u32, libc::AF_NETLINK as u32];

/// The personalities a program may take, as Docker's default allows them (sys/personality.h):
/// Linux's own, PER_LINUX32, UNAME26 with either, and 0xffffffff, which only asks. Not
/// ADDR_NO_RANDOMIZE (no address randomization, for an exploit's sake) or READ_IMPLIES_EXEC.
const PERSONALITIES: [u32; 5] = [0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];

/// sys/resource.h: setpriority's `which` for one process (c_uint in glibc, c_int in musl).
const PRIO_PROCESS: u32 = 0;

/// musl's aarch64 bindings lack it (asm-generic/unistd.h: 440); x86_64's is the same number.
const SYS_PROCESS_MADVISE: libc::c_long = 440;

/// Calls denied whatever their arguments: mounting (the old and the new mount API),
/// modules, kexec, reboot, bpf, perf_event_open, the clock, joining a namespace, swap, and
/// opening a file by handle, which would skip the path walk the path rules act on; and the
/// host's own state (process accounting, the kernel's log, the host and domain names, the
/// kernel keyrings, which root's keys live in), filesystem-wide fanotify marks, userfaultfd and
/// io_uring (whose requests no filter sees), and process_madvise (it names its target by a
/// pidfd, which a filter cannot tell from the caller's own).
fn always_denied() -> Vec<libc::c_long> {
    vec![
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_open_tree,
        libc::SYS_move_mount,
        libc::SYS_fsopen,
        libc::SYS_fsconfig,
        libc::SYS_fsmount,
        libc::SYS_fspick,
        libc::SYS_mount_setattr,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_kexec_load,
        SYS_KEXEC_FILE_LOAD,
        libc::SYS_reboot,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_clock_settime,
        libc::SYS_settimeofday,
        libc::SYS_adjtimex,
        libc::SYS_clock_adjtime,
        libc::SYS_setns,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_open_by_handle_at,
        libc::SYS_acct,
        libc::SYS_syslog,
        libc::SYS_sethostname,
        libc::SYS_setdomainname,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_fanotify_init,
        libc::SYS_userfaultfd,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        SYS_PROCESS_MADVISE,
        // Direct access to I/O ports, below every other control.
        #[cfg(target_arch = "x86_64")]
        libc::SYS_iopl,
        // Segments of its own: 16-bit code, a kernel attack surface no service needs (Docker
        // and systemd's PrivateDevices deny it too).
        #[cfg(target_arch = "x86_64")]
        libc::SYS_modify_ldt,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_ioperm,
    ]
}

/// The names of what the filter denies, for --check and docs/linux.md.
pub const DENIED: &str = "mount, umount2, pivot_root, the new mount API (open_tree, move_mount, fsopen, fsconfig, \
                          fsmount, fspick, mount_setattr), init_module, finit_module, delete_module, kexec_load, \
                          kexec_file_load, reboot, bpf, perf_event_open, clock_settime, settimeofday, adjtimex, \
                          clock_adjtime, setns, unshare and clone with namespace flags, clone3 (ENOSYS: libc falls \
                          back to clone), swapon, swapoff, open_by_handle_at, acct, syslog, sethostname, \
                          setdomainname, keyctl, add_key, request_key, fanotify_init, userfaultfd, io_uring_setup, \
                          io_uring_enter, io_uring_register, process_madvise, iopl, ioperm and modify_ldt (x86_64); \
                          personality but Linux's own, PER_LINUX32 and UNAME26 (no ADDR_NO_RANDOMIZE); on another \
                          process than the caller: prlimit64, setpriority, sched_setscheduler, sched_setparam, \
                          sched_setattr, sched_setaffinity; ioctl's TIOCSTI and TIOCLINUX; sockets but of the \
                          families AF_UNIX, AF_INET, AF_INET6 and AF_NETLINK";
/// What it adds where Landlock does not confine ptrace.
pub const DENIED_WITHOUT_LANDLOCK: &str =
    "ptrace's PTRACE_ATTACH and PTRACE_SEIZE, process_vm_readv, process_vm_writev";

/// A jump target, resolved when the program is assembled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Label {
    Next,
    /// A node of the search over the call numbers.
    Node(usize),
    Allow,
    Deny,
    NoSys,
    Kill,
    CloneFlags,
    UnshareFlags,
    PtraceRequest,
    /// The call's first argument is a pid: 0 (the caller) only.
    CallerOnly,
    /// setpriority(PRIO_PROCESS, 0, ...) only: a process group or a user (all of root's
    /// processes) is another process.
    PriorityOfCaller,
    IoctlRequest,
    SocketFamily,
    Personality,
}

/// The labels other than the search's nodes, each with a slot of its own in [`assemble`]'s
/// table; the nodes follow them.
const LABEL_SLOTS: usize = 13;

impl Label {
    fn slot(self) -> usize {
        match self {
            Label::Next => 0,
            Label::Allow => 1,
            Label::Deny => 2,
            Label::NoSys => 3,
            Label::Kill => 4,
            Label::CloneFlags => 5,
            Label::UnshareFlags => 6,
            Label::PtraceRequest => 7,
            Label::CallerOnly => 8,
            Label::PriorityOfCaller => 9,
            Label::IoctlRequest => 10,
            Label::SocketFamily => 11,
            Label::Personality => 12,
            Label::Node(i) => LABEL_SLOTS + i,
        }
    }
}

enum Op {
    Load(u32),
    Jump { code: u16, k: u32, jt: Label, jf: Label },
    Return(u32),
    Here(Label),
}

/// What the filter does with each call number: (first number, action) in ascending order, each
/// range running up to the next one's first number; the first starts at 0.
fn ranges(ptrace_from_filter: bool) -> Vec<(u32, Label)> {
    let mut calls: Vec<(u32, Label)> = always_denied().into_iter().map(|nr| (nr as u32, Label::Deny)).collect();
    calls.extend([
        (libc::SYS_clone3 as u32, Label::NoSys),
        (libc::SYS_clone as u32, Label::CloneFlags),
        (libc::SYS_unshare as u32, Label::UnshareFlags),
        (libc::SYS_prlimit64 as u32, Label::CallerOnly),
        (libc::SYS_sched_setscheduler as u32, Label::CallerOnly),
        (libc::SYS_sched_setparam as u32, Label::CallerOnly),
        (libc::SYS_sched_setattr as u32, Label::CallerOnly),
        (libc::SYS_sched_setaffinity as u32, Label::CallerOnly),
        (libc::SYS_setpriority as u32, Label::PriorityOfCaller),
        (libc::SYS_ioctl as u32, Label::IoctlRequest),
        (libc::SYS_socket as u32, Label::SocketFamily),
        (libc::SYS_personality as u32, Label::Personality),
    ]);
    if ptrace_from_filter {
        calls.extend([
            (libc::SYS_process_vm_readv as u32, Label::Deny),
            (libc::SYS_process_vm_writev as u32, Label::Deny),
            (libc::SYS_ptrace as u32, Label::PtraceRequest),
        ]);
    }
    calls.sort_by_key(|&(nr, _)| nr);
    calls.dedup_by_key(|&mut (nr, _)| nr);
    // Starts a range at `first`, replacing an empty one there and merging into a previous one
    // with the same action (mount and umount2 are neighbours, so are the six new mount calls).
    let open = |ranges: &mut Vec<(u32, Label)>, first: u32, label: Label| {
        if ranges.last().map_or(false, |&(start, _)| start == first) {
            ranges.pop();
        }
        if ranges.last().map(|&(_, l)| l) != Some(label) {
            ranges.push((first, label));
        }
    };
    let mut ranges = vec![(0, Label::Allow)];
    for (nr, label) in calls {
        open(&mut ranges, nr, label);
        open(&mut ranges, nr + 1, Label::Allow);
    }
    #[cfg(target_arch = "x86_64")]
    open(&mut ranges, X32_SYSCALL_BIT, Label::Kill);
    ranges
}

/// Emits a binary search over `ranges` and returns where it starts: a node sends the numbers
/// at or above its right half's first one there, the others to its left half. A half of one
/// range is its action itself, so the last comparison jumps straight to it.
fn search(ranges: &[(u32, Label)], ops: &mut Vec<Op>, nodes: &mut usize) -> Label {
    if ranges.len() == 1 {
        return ranges[0].1;
    }
    let node = Label::Node(*nodes);
    *nodes += 1;
    let (left, right) = ranges.split_at(ranges.len() / 2);
    ops.push(Op::Here(node));
    let jump = ops.len();
    ops.push(Op::Return(0));
    let jf = search(left, ops, nodes);
    let jt = search(right, ops, nodes);
    ops[jump] = Op::Jump { code: BPF_JGE_K, k: right[0].0, jt, jf };
    node
}

/// The filter. `ptrace_from_filter`: Landlock does not scope ptrace here, so the filter
/// refuses to attach to anything (a tracer may still start its own tracees: PTRACE_TRACEME).
///
/// The kernel runs a new filter once for every call number when it installs it (to learn
/// which calls it always allows, and let those through unfiltered from then on), and that is
/// on the launch's path: a binary search decides any number in six comparisons, where a list
/// of the 33 calls took up to 33 (about 25 µs less to install on the benchmark's host).
pub fn program(ptrace_from_filter: bool) -> Vec<SockFilter> {
    let mut ops = vec![
        Op::Load(DATA_ARCH),
        Op::Jump { code: BPF_JEQ_K, k: AUDIT_ARCH_NATIVE, jt: Label::Next, jf: Label::Kill },
        Op::Load(DATA_NR),
    ];
    let start = search(&ranges(ptrace_from_filter), &mut ops, &mut 0);
    if !matches!(start, Label::Node(_)) {
        // One action for every number: no search, a jump to it.
        ops.push(Op::Jump { code: BPF_JEQ_K, k: 0, jt: start, jf: start });
    }
    ops.extend([
        Op::Here(Label::CloneFlags),
        Op::Load(data_arg_low(0)),
        Op::Jump { code: BPF_JSET_K, k: CLONE_NAMESPACES, jt: Label::Deny, jf: Label::Allow },
        Op::Here(Label::UnshareFlags),
        Op::Load(data_arg_low(0)),
        Op::Jump { code: BPF_JSET_K, k: CLONE_NAMESPACES | CLONE_NEWTIME, jt: Label::Deny, jf: Label::Allow },
        // The kernel takes these arguments as 32-bit ints: their low words are what it sees.
        Op::Here(Label::CallerOnly),
        Op::Load(data_arg_low(0)),
        Op::Jump { code: BPF_JEQ_K, k: 0, jt: Label::Allow, jf: Label::Deny },
        Op::Here(Label::PriorityOfCaller),
        Op::Load(data_arg_low(0)),
        Op::Jump { code: BPF_JEQ_K, k: PRIO_PROCESS, jt: Label::Next, jf: Label::Deny },
        Op::Load(data_arg_low(1)),
        Op::Jump { code: BPF_JEQ_K, k: 0, jt: Label::Allow, jf: Label::Deny },
        Op::Here(Label::IoctlRequest),
        Op::Load(data_arg_low(1)),
        jeq(TIOCSTI, Label::Deny),
        jeq(TIOCLINUX, Label::Deny),
        Op::Return(SECCOMP_RET_ALLOW),
        Op::Here(Label::SocketFamily),
        Op::Load(data_arg_low(0)),
    ]);
    ops.extend(SOCKET_FAMILIES.iter().map(|&family| jeq(family, Label::Allow)));
    ops.push(Op::Return(SECCOMP_RET_ERRNO | libc::EPERM as u32));
    ops.push(Op::Here(Label::Personality));
    ops.push(Op::Load(data_arg_low(0)));
    ops.extend(PERSONALITIES.iter().map(|&persona| jeq(persona, Label::Allow)));
    ops.push(Op::Return(SECCOMP_RET_ERRNO | libc::EPERM as u32));
    if ptrace_from_filter {
        ops.extend([
            Op::Here(Label::PtraceRequest),
            Op::Load(data_arg_low(0)),
            jeq(PTRACE_ATTACH, Label::Deny),
            jeq(PTRACE_SEIZE, Label::Deny),
            Op::Return(SECCOMP_RET_ALLOW),
        ]);
    }
    ops.extend([
        Op::Here(Label::Allow),
        Op::Return(SECCOMP_RET_ALLOW),
        Op::Here(Label::Deny),
        Op::Return(SECCOMP_RET_ERRNO | libc::EPERM as u32),
        Op::Here(Label::NoSys),
        Op::Return(SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
        Op::Here(Label::Kill),
        Op::Return(SECCOMP_RET_KILL_PROCESS),
    ]);
    assemble(&ops)
}

fn jeq(k: u32, jt: Label) -> Op {
    Op::Jump { code: BPF_JEQ_K, k, jt, jf: Label::Next }
}

/// Resolves the labels into relative jumps (forward only, as BPF wants them), in two passes
/// over the program: where each label is, then the jumps (damon assembles the filter at every
/// start, and a search of the labels for each jump cost it about 15 µs).
fn assemble(ops: &[Op]) -> Vec<SockFilter> {
    let mut places = vec![usize::MAX; LABEL_SLOTS + ops.len()];
    let mut position = 0;
    for op in ops {
        match op {
            Op::Here(label) => places[label.slot()] = position,
            _ => position += 1,
        }
    }
    let target = |label: Label, at: usize| -> u8 {
        if label == Label::Next {
            return 0;
        }
        let to = places[label.slot()];
        assert!(to != usize::MAX, "every label is placed");
        // Every target follows its jump, and the program is short: the offset fits.
        u8::try_from(to - at - 1).expect("a jump of fewer than 256 instructions")
    };
    let mut program = Vec::with_capacity(position);
    for op in ops {
        let at = program.len();
        let instruction = match *op {
            Op::Here(_) => continue,
            Op::Load(offset) => SockFilter { code: BPF_LD_W_ABS, jt: 0, jf: 0, k: offset },
            Op::Jump { code, k, jt, jf } => SockFilter { code, jt: target(jt, at), jf: target(jf, at), k },
            Op::Return(value) => SockFilter { code: BPF_RET_K, jt: 0, jf: 0, k: value },
        };
        program.push(instruction);
    }
    program
}

/// Why the kernel cannot run the filter, if it cannot: no seccomp filters (a kernel without
/// CONFIG_SECCOMP_FILTER) or no SECCOMP_RET_KILL_PROCESS (before Linux 4.14).
pub fn unavailable() -> Option<String> {
    for action in [SECCOMP_RET_ERRNO, SECCOMP_RET_KILL_PROCESS] {
        // SAFETY: seccomp(2)'s SECCOMP_GET_ACTION_AVAIL reads the u32 `action` points to and
        // changes nothing.
        let result = unsafe {
            libc::syscall(libc::SYS_seccomp, SECCOMP_GET_ACTION_AVAIL, 0 as libc::c_uint, &action as *const u32)
        };
        if result != 0 {
            return Some(format!(
                "the kernel runs no seccomp filter with the actions the sandbox uses (Linux 4.14 with \
                 CONFIG_SECCOMP_FILTER): {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `program` on a system call as the kernel would, with the subset of classic BPF the
    /// program uses.
    fn run(program: &[SockFilter], arch: u32, nr: u32, arg0: u32) -> u32 {
        run_counting(program, arch, nr, [arg0, 0]).0
    }

    /// The same with two arguments, and the number of instructions it took.
    fn run_counting(program: &[SockFilter], arch: u32, nr: u32, args: [u32; 2]) -> (u32, usize) {
        let load = |offset: u32| match offset {
            DATA_NR => nr,
            DATA_ARCH => arch,
            16 => args[0],
            24 => args[1],
            other => panic!("load of offset {}", other),
        };
        let (mut pc, mut acc, mut steps) = (0usize, 0u32, 0usize);
        loop {
            let i = program[pc];
            pc += 1;
            steps += 1;
            match i.code {
                BPF_LD_W_ABS => acc = load(i.k),
                BPF_RET_K => return (i.k, steps),
                code => {
                    let taken = match code {
                        BPF_JEQ_K => acc == i.k,
                        BPF_JGE_K => acc >= i.k,
                        BPF_JSET_K => acc & i.k != 0,
                        other => panic!("opcode {:#x}", other),
                    };
                    pc += usize::from(if taken { i.jt } else { i.jf });
                }
            }
        }
    }

    const DENY: u32 = SECCOMP_RET_ERRNO | libc::EPERM as u32;

    #[test]
    fn the_filter_denies_what_it_lists_and_allows_the_rest() {
        for ptrace_from_filter in [false, true] {
            let p = program(ptrace_from_filter);
            let call = |nr: libc::c_long, arg0: u32| run(&p, AUDIT_ARCH_NATIVE, nr as u32, arg0);
            for nr in always_denied() {
                assert_eq!(call(nr, 0), DENY, "{}", nr);
            }
            for nr in [libc::SYS_read, libc::SYS_execve, libc::SYS_openat, libc::SYS_setresuid, libc::SYS_wait4] {
                assert_eq!(call(nr, 0), SECCOMP_RET_ALLOW, "{}", nr);
            }
            assert_eq!(call(libc::SYS_clone3, 0), SECCOMP_RET_ERRNO | libc::ENOSYS as u32);
            // A thread, a fork: allowed; a new mount or user namespace: denied.
            let thread = (libc::CLONE_VM | libc::CLONE_THREAD | libc::CLONE_SIGHAND | libc::CLONE_FS) as u32;
            assert_eq!(call(libc::SYS_clone, thread), SECCOMP_RET_ALLOW);
            assert_eq!(call(libc::SYS_clone, libc::SIGCHLD as u32), SECCOMP_RET_ALLOW);
            assert_eq!(call(libc::SYS_clone, libc::CLONE_NEWNS as u32 | libc::SIGCHLD as u32), DENY);
            assert_eq!(call(libc::SYS_clone, libc::CLONE_NEWUSER as u32), DENY);
            assert_eq!(call(libc::SYS_unshare, libc::CLONE_NEWNS as u32), DENY);
            assert_eq!(call(libc::SYS_unshare, libc::CLONE_NEWNET as u32), DENY);
            assert_eq!(call(libc::SYS_unshare, 0x80), DENY, "CLONE_NEWTIME");
            assert_eq!(call(libc::SYS_unshare, libc::CLONE_FILES as u32), SECCOMP_RET_ALLOW);
            let (attach, traceme) = (call(libc::SYS_ptrace, PTRACE_ATTACH), call(libc::SYS_ptrace, 0));
            let vm_write = call(libc::SYS_process_vm_writev, 0);
            if ptrace_from_filter {
                assert_eq!((attach, call(libc::SYS_ptrace, PTRACE_SEIZE), vm_write), (DENY, DENY, DENY));
            } else {
                assert_eq!((attach, vm_write), (SECCOMP_RET_ALLOW, SECCOMP_RET_ALLOW));
            }
            assert_eq!(traceme, SECCOMP_RET_ALLOW);
            // On the caller only: pid 0; setpriority of the caller's process (not its group or
            // its user, which for root is damon too).
            let two = |nr: libc::c_long, args: [u32; 2]| run_counting(&p, AUDIT_ARCH_NATIVE, nr as u32, args).0;
            for nr in [
                libc::SYS_prlimit64,
                libc::SYS_sched_setscheduler,
                libc::SYS_sched_setparam,
                libc::SYS_sched_setattr,
                libc::SYS_sched_setaffinity,
            ] {
                assert_eq!((call(nr, 0), call(nr, 1)), (SECCOMP_RET_ALLOW, DENY), "{}", nr);
            }
            // PRIO_PROCESS, PRIO_PGRP, PRIO_USER (the_numbers_are_the_kernels checks them).
            let (process, group, user) = (PRIO_PROCESS, 1, 2);
            assert_eq!(two(libc::SYS_setpriority, [process, 0]), SECCOMP_RET_ALLOW);
            assert_eq!(two(libc::SYS_setpriority, [process, 1]), DENY);
            assert_eq!(two(libc::SYS_setpriority, [group, 0]), DENY);
            assert_eq!(two(libc::SYS_setpriority, [user, 0]), DENY);
            assert_eq!(two(libc::SYS_ioctl, [0, TIOCSTI]), DENY);
            assert_eq!(two(libc::SYS_ioctl, [0, TIOCLINUX]), DENY);
            assert_eq!(two(libc::SYS_ioctl, [0, libc::TIOCGWINSZ as u32]), SECCOMP_RET_ALLOW);
            for family in [libc::AF_UNIX, libc::AF_INET, libc::AF_INET6, libc::AF_NETLINK] {
                assert_eq!(call(libc::SYS_socket, family as u32), SECCOMP_RET_ALLOW, "{}", family);
            }
            for family in [libc::AF_PACKET, libc::AF_VSOCK, libc::AF_ALG, 0, 4096] {
                assert_eq!(call(libc::SYS_socket, family as u32), DENY, "{}", family);
            }
            // Another ABI is killed: its numbers are not the native ones.
            assert_eq!(run(&p, 0x4000_0003, 21, 0), SECCOMP_RET_KILL_PROCESS, "i386");
            #[cfg(target_arch = "x86_64")]
            assert_eq!(call(libc::SYS_mount | X32_SYSCALL_BIT as libc::c_long, 0), SECCOMP_RET_KILL_PROCESS, "x32");
        }
    }

    #[test]
    fn every_number_gets_its_action_in_a_few_comparisons() {
        for ptrace_from_filter in [false, true] {
            let p = program(ptrace_from_filter);
            let mut special = always_denied();
            if ptrace_from_filter {
                special.extend([libc::SYS_process_vm_readv, libc::SYS_process_vm_writev, libc::SYS_ptrace]);
            }
            special.extend([libc::SYS_clone3, libc::SYS_clone, libc::SYS_unshare]);
            // With CLONE_NEWNS as their first argument: not the caller, not a family allowed.
            let checked = [
                libc::SYS_prlimit64,
                libc::SYS_sched_setscheduler,
                libc::SYS_sched_setparam,
                libc::SYS_sched_setattr,
                libc::SYS_sched_setaffinity,
                libc::SYS_setpriority,
                libc::SYS_socket,
            ];
            special.extend(checked);
            let mut most = 0;
            // Every number up to well past the last call, and the edges of the x32 range.
            let numbers = (0..2048).chain([0x3fff_ffff, 0x4000_0000, 0x4000_00a5, u32::MAX]);
            for nr in numbers {
                let (action, steps) = run_counting(&p, AUDIT_ARCH_NATIVE, nr, [libc::CLONE_NEWNS as u32, 0]);
                let n = libc::c_long::from(nr);
                let expected = if cfg!(target_arch = "x86_64") && nr >= 0x4000_0000 {
                    SECCOMP_RET_KILL_PROCESS
                } else if n == libc::SYS_clone3 {
                    SECCOMP_RET_ERRNO | libc::ENOSYS as u32
                } else if special.contains(&n) && n != libc::SYS_ptrace {
                    // clone and unshare with a namespace flag as their argument: denied.
                    DENY
                } else {
                    // ptrace with a request other than attaching, ioctl with request 0: allowed.
                    SECCOMP_RET_ALLOW
                };
                assert_eq!(action, expected, "call {} (ptrace from the filter: {})", nr, ptrace_from_filter);
                most = most.max(steps);
            }
            // The arch check and the load (3), the search (log2 of the ranges' count, rounded
            // up), an argument checked (6 at most: the socket's family); a list took up to 60.
            let ranges = ranges(ptrace_from_filter).len();
            let search = (usize::BITS - (ranges - 1).leading_zeros()) as usize;
            assert!(search <= 7, "{} ranges", ranges);
            assert!(most <= 3 + search + 6, "a call took {} instructions ({} ranges)", most, ranges);
        }
    }

    #[test]
    fn the_numbers_are_the_kernels() {
        // The constants written here, against libc's for this target.
        assert_eq!(CLONE_NAMESPACES, {
            let flags = libc::CLONE_NEWNS
                | libc::CLONE_NEWCGROUP
                | libc::CLONE_NEWUTS
                | libc::CLONE_NEWIPC
                | libc::CLONE_NEWUSER
                | libc::CLONE_NEWPID
                | libc::CLONE_NEWNET;
            flags as u32
        });
        #[cfg(all(target_arch = "x86_64", target_env = "gnu"))]
        assert_eq!(SYS_PROCESS_MADVISE, libc::SYS_process_madvise);
        assert_eq!((i64::from(TIOCSTI), i64::from(TIOCLINUX)), (libc::TIOCSTI as i64, libc::TIOCLINUX as i64));
        let which = [libc::PRIO_PROCESS, libc::PRIO_PGRP, libc::PRIO_USER].map(i64::from);
        assert_eq!(which, [i64::from(PRIO_PROCESS), 1, 2]);
        // c_uint in glibc's bindings, c_int in musl's.
        assert_eq!(i64::from(PTRACE_ATTACH), libc::PTRACE_ATTACH as i64);
        assert_eq!(i64::from(PTRACE_SEIZE), libc::PTRACE_SEIZE as i64);
    }
}
