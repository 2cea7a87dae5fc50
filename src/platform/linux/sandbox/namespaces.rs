//! The workload's own mount, PID and IPC namespaces under DAMON_SANDBOX.
//!
//! damon's child is born in new namespaces (clone flags). Where Landlock does not keep the
//! workload's signals within its tree (before ABI 6, Linux 6.12), they include a PID namespace
//! and the child is its init ([`super::init`]), which makes the mount namespace and then
//! starts the command; elsewhere the child makes it and becomes the command itself (an init
//! is one more process on the launch's path: a clone and two wake-ups at the start and the
//! end, about 0.2 ms on the reference host). The mount namespace:
//! - the whole system read-only (one recursive `mount_setattr`, Linux 5.12), except the
//!   writable rules, which get back the mounts they had (cloned with `open_tree` before, so a
//!   mount that was read-only stays so): chmod, chown, utimensat and setxattr outside them
//!   fail with EROFS, whatever the workload's capabilities;
//! - /run, /tmp and /var/tmp (and /var/run where it is no link) hidden under an empty
//!   read-only tmpfs: the host's runtime sockets (docker.sock, containerd's, systemd's,
//!   D-Bus's system bus) and the other tasks' temporary files are not there to connect to or
//!   open. What a rule names beneath (the file /etc/resolv.conf leads to, a Nomad directory
//!   under /tmp) is mounted back where it was;
//! - a /dev/shm of its own (64 MiB, writable: POSIX shared memory and semaphores), where the
//!   host's held other processes' shared memory;
//! - /proc/sys and /proc/sysrq-trigger read-only, in a /proc of the PID namespace where there
//!   is one, else in the host's (whose other processes Landlock's ptrace scope keeps the
//!   workload from reading).
//!
//! The PID namespace keeps every signal of the workload within it on kernels whose Landlock
//! does not: damon, its guard and the host's processes have no pid there. The IPC namespace
//! gives the workload System V IPC and message queues of its own.
//!
//! The plan is made in damon, before the clone; the child carries it out with system calls
//! only ([`Namespaces::enter`]), as everything between a clone and an exec.

use std::cell::Cell;
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::{AsRawFd, FromRawFd, RawFd};
use std::path::{Path, PathBuf};

use nix::libc;

use super::{add_landlock_rule_at, check};

/// linux/mount.h, the same on every architecture (system calls from 424 on are numbered alike).
const SYS_OPEN_TREE: libc::c_long = 428;
const SYS_MOVE_MOUNT: libc::c_long = 429;
const SYS_MOUNT_SETATTR: libc::c_long = 442;
const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
const MOUNT_ATTR_RDONLY: u64 = 0x1;

/// The namespaces a sandboxed workload may get (`damon --check` tries them all).
pub const CLONE_FLAGS: libc::c_int = libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWIPC;

/// Hidden under an empty read-only tmpfs: the host's runtime sockets and temporary files.
const HIDDEN: &[&str] = &["/run", "/var/run", "/tmp", "/var/tmp"];
/// POSIX shared memory and semaphores: a tmpfs of the workload's own, as Docker's 64 MiB one
/// (its pages are charged to the workload's memory limit).
const SHARED_MEMORY: &str = "/dev/shm";
/// Read-only in the workload's /proc, as in Docker's default: the kernel's tunables.
const PROC_READ_ONLY: &[&str] = &["/proc/sys", "/proc/sysrq-trigger"];

/// struct mount_attr (linux/mount.h, MOUNT_ATTR_SIZE_VER0).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// A place a rule names that keeps its mount: a writable rule (with its mounts as they were)
/// or a rule under a hidden directory (read-only).
#[derive(Debug)]
struct Place {
    path: CString,
    /// The inode damon's rule opened: the child mounts only where the path still leads to it.
    dev: libc::dev_t,
    ino: libc::ino_t,
    is_dir: bool,
    /// Cloned before the system is made read-only.
    writable: bool,
    /// Under a hidden directory: the directories to make in its tmpfs, the last one the place's
    /// own mount point (a file when the place is no directory).
    mount_point: Vec<CString>,
    /// The child's descriptors: the place opened, and its cloned mount.
    opened: Cell<RawFd>,
    tree: Cell<RawFd>,
}

/// Which step of the namespaces failed, as the child reports it to damon on the error pipe (0
/// is none of them: the command's own steps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step(pub u16);

impl Step {
    pub const PRIVATE: Step = Step(1);
    pub const OPEN_PLACE: Step = Step(2);
    pub const CLONE_PLACE: Step = Step(3);
    pub const READ_ONLY: Step = Step(4);
    pub const HIDE: Step = Step(5);
    pub const MOUNT_POINT: Step = Step(6);
    pub const MOVE_PLACE: Step = Step(7);
    pub const PROC: Step = Step(8);
    pub const FRESH_RULE: Step = Step(9);
    pub const WORKING_DIR: Step = Step(10);
    pub const INIT: Step = Step(11);
    pub const SHARED_MEMORY: Step = Step(12);
}

/// What the child does to make its namespaces, prepared in damon.
#[derive(Debug)]
pub struct Namespaces {
    places: Vec<Place>,
    hidden: Vec<CString>,
    proc_dir: CString,
    proc_read_only: Vec<CString>,
    /// The workload's own /dev/shm, unless a rule names the host's.
    shared_memory: Option<CString>,
    /// Landlock rules on the file systems mounted afresh (at or under /proc, and /dev/shm),
    /// opened there (a rule is an inode's, and these are new ones): path and rights.
    fresh_rules: Vec<(CString, u64)>,
    working_dir: Option<CString>,
    names: Names,
    /// A PID namespace, whose init the child is.
    pid: bool,
    proc: Proc,
}

/// The workload's /proc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proc {
    /// A /proc of its PID namespace, mounted afresh.
    Own,
    /// The host's, writable again (a rule lets the workload write there: its own files, as
    /// /proc/self/oom_score_adj, are the only ones it may).
    HostWritable,
    /// The host's, read-only with the rest of the system: no rule writes there.
    HostReadOnly,
}

/// The fixed strings the child passes to the kernel, made before the clone (C string
/// literals need a newer Rust than the crate's).
#[derive(Debug)]
struct Names {
    root: CString,
    empty: CString,
    tmpfs: CString,
    tmpfs_options: CString,
    shared_memory_options: CString,
    proc: CString,
}

impl Names {
    fn new() -> Names {
        let name = |s: &str| CString::new(s).unwrap_or_default();
        Names {
            root: name("/"),
            empty: name(""),
            tmpfs: name("tmpfs"),
            tmpfs_options: name("mode=755,size=64k"),
            shared_memory_options: name("mode=1777,size=64m"),
            proc: name("proc"),
        }
    }
}

/// A rule as the plan needs it.
pub struct RulePlace<'a> {
    pub opened: &'a File,
    /// What damon saw when it opened the rule.
    pub inode: Inode,
    /// Where the rule leads, if known without asking the kernel (no link on the way).
    pub located: Option<&'a Path>,
    pub writes: bool,
    /// Its Landlock rights (the kernel's bits, those this kernel handles).
    pub access: u64,
}

/// A rule's inode as damon's one `fstat` of it saw it (when the path was opened): the child
/// mounts only where the path still leads to it, and each further `fstat` cost the launch a
/// system call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inode {
    pub dev: libc::dev_t,
    pub ino: libc::ino_t,
    /// The `S_IFMT` bits of its mode.
    pub file_type: libc::mode_t,
}

impl Inode {
    pub fn of(metadata: &std::fs::Metadata) -> Inode {
        use std::os::unix::fs::MetadataExt;
        Inode {
            dev: metadata.dev() as libc::dev_t,
            ino: metadata.ino() as libc::ino_t,
            file_type: metadata.mode() as libc::mode_t & libc::S_IFMT,
        }
    }

    pub fn is_dir(&self) -> bool {
        self.file_type == libc::S_IFDIR
    }
}

/// /proc/self/fd, for the kernel's names of the rules' descriptors.
fn open_fd_dir() -> io::Result<File> {
    let flags = nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC;
    let fd = nix::fcntl::open("/proc/self/fd", flags, nix::sys::stat::Mode::empty()).map_err(io::Error::from)?;
    // SAFETY: open(2) just returned this descriptor, and nothing else owns it.
    Ok(unsafe { File::from_raw_fd(fd) })
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

/// Whether the kernel has what the namespaces need (open_tree and move_mount, Linux 5.2;
/// mount_setattr, 5.12), or why not.
pub fn unavailable() -> Option<String> {
    // SAFETY: mount_setattr(2) on descriptor -1 with no attributes: it reads no memory and
    // fails, with ENOSYS only where the kernel lacks it.
    let result = unsafe {
        libc::syscall(
            SYS_MOUNT_SETATTR,
            -1 as libc::c_int,
            std::ptr::null::<libc::c_char>(),
            0 as libc::c_uint,
            0usize,
            0usize,
        )
    };
    let e = io::Error::last_os_error();
    match (result, e.raw_os_error()) {
        (-1, Some(libc::ENOSYS)) => Some(format!(
            "this kernel has no mount_setattr (Linux 5.12): no mount, PID and IPC namespaces of the workload's own ({})",
            e
        )),
        _ => None,
    }
}

/// For `damon --check`: whether this process may make the namespaces (a container without
/// CAP_SYS_ADMIN, or a seccomp filter, refuses them), tried in a child that ends at once.
pub fn trial() -> io::Result<()> {
    use nix::unistd::{fork, ForkResult};
    // SAFETY: the child makes two system calls and ends with _exit: it touches no lock or
    // allocation that another thread of damon's could have held at the fork.
    match unsafe { fork() }.map_err(io::Error::from)? {
        ForkResult::Child => {
            // SAFETY: unshare(2) with flags only; _exit(2) ends the child at once.
            unsafe {
                let errno = if libc::unshare(CLONE_FLAGS) == -1 { *libc::__errno_location() } else { 0 };
                libc::_exit(errno)
            }
        }
        ForkResult::Parent { child } => match nix::sys::wait::waitpid(child, None).map_err(io::Error::from)? {
            nix::sys::wait::WaitStatus::Exited(_, 0) => Ok(()),
            nix::sys::wait::WaitStatus::Exited(_, errno) => Err(io::Error::from_raw_os_error(errno)),
            other => Err(io::Error::new(io::ErrorKind::Other, format!("the trial child ended as {:?}", other))),
        },
    }
}

impl Namespaces {
    /// The plan for these rules. `shared_memory_access`: the rights on the workload's own
    /// /dev/shm (the kernel's bits), where Landlock is; `pid`: a PID namespace too, with the
    /// child as its init.
    pub fn plan(rules: &[RulePlace], shared_memory_access: Option<u64>, pid: bool) -> io::Result<Namespaces> {
        // Where each rule leads: its path, where no link was on the way; else the kernel's own
        // name for the opened inode, its link in /proc/self/fd, looked up from that directory
        // opened once (a lookup of the whole path for each rule cost the launch 1.5 µs more a
        // rule, and each of these about 2.5 µs).
        let mut located = Vec::new();
        let mut fd_dir: Option<File> = None;
        for rule in rules {
            let fd = rule.opened.as_raw_fd();
            let path = match rule.located {
                Some(path) => path.to_path_buf(),
                None => {
                    let dir = match &fd_dir {
                        Some(dir) => dir,
                        None => fd_dir.insert(open_fd_dir()?),
                    };
                    PathBuf::from(
                        nix::fcntl::readlinkat(dir.as_raw_fd(), fd.to_string().as_str()).map_err(io::Error::from)?,
                    )
                }
            };
            located.push((path, rule));
        }
        // A hidden directory that a rule names, or lies beneath, stays as it is: the operator
        // gave it.
        let hidden: Vec<PathBuf> = HIDDEN
            .iter()
            .map(PathBuf::from)
            .filter(|dir| std::fs::symlink_metadata(dir).map_or(false, |m| m.is_dir()))
            .filter(|dir| !located.iter().any(|(path, ..)| within(dir, path)))
            .collect();
        let mut places: Vec<Place> = Vec::new();
        let mut fresh_rules = Vec::new();
        for (path, rule) in &located {
            if within(path, Path::new("/proc")) {
                // On the host's /proc the rule's own inode stays.
                if pid {
                    fresh_rules.push((c_path(path)?, rule.access));
                }
                continue;
            }
            let Inode { dev, ino, file_type } = rule.inode;
            let is_dir = rule.inode.is_dir();
            // A device stays writable on a read-only mount (/dev/null).
            let writable = rule.writes && (is_dir || file_type == libc::S_IFREG);
            let under = hidden.iter().find(|dir| within(path, dir));
            if !writable && under.is_none() {
                continue;
            }
            places.push(Place::new(path, (dev, ino), is_dir, writable, under.map(PathBuf::as_path))?);
        }
        // The working directory stays where it is, read-only unless a rule says otherwise,
        // also when it lies in a hidden directory (a program reads relative paths from it).
        let working_dir = std::env::current_dir().ok();
        if let Some(dir) = &working_dir {
            let under = hidden.iter().find(|hidden| within(dir, hidden));
            let in_place = located.iter().any(|(path, ..)| within(dir, path));
            // Looked at only then: a stat of the working directory is a walk of its whole path.
            if let (Some(under), false) = (under, in_place) {
                if let Ok(st) = nix::sys::stat::stat(dir) {
                    places.push(Place::new(dir, (st.st_dev, st.st_ino), true, false, Some(under))?);
                }
            }
        }
        // A place within another writable one comes with that one's mounts.
        let writable_dirs: Vec<Vec<u8>> =
            places.iter().filter(|p| p.writable && p.is_dir).map(|p| p.path.as_bytes().to_vec()).collect();
        places.retain(|p| {
            !writable_dirs.iter().any(|dir| {
                let path = p.path.as_bytes();
                path.len() > dir.len() && path.starts_with(dir) && path[dir.len()] == b'/'
            })
        });
        // Outer places first: a place's mount point may lie in another's tree.
        places.sort_by_key(|p| p.path.as_bytes().len());
        let working_dir = working_dir.and_then(|dir| c_path(&dir).ok());
        let shm = Path::new(SHARED_MEMORY);
        let shared_memory = if shm.is_dir() && !located.iter().any(|(path, ..)| within(shm, path) || within(path, shm))
        {
            if let Some(access) = shared_memory_access {
                fresh_rules.push((c_path(shm)?, access));
            }
            Some(c_path(shm)?)
        } else {
            None
        };
        Ok(Namespaces {
            places,
            hidden: hidden.iter().map(|dir| c_path(dir)).collect::<io::Result<_>>()?,
            proc_dir: c_path(Path::new("/proc"))?,
            proc_read_only: PROC_READ_ONLY.iter().map(|p| c_path(Path::new(p))).collect::<io::Result<_>>()?,
            shared_memory,
            fresh_rules,
            working_dir,
            names: Names::new(),
            pid,
            proc: match (pid, located.iter().any(|(path, rule, ..)| within(path, Path::new("/proc")) && rule.writes)) {
                (true, _) => Proc::Own,
                (false, true) => Proc::HostWritable,
                (false, false) => Proc::HostReadOnly,
            },
        })
    }

    /// The clone flags of the child that makes the namespaces.
    pub fn clone_flags(&self) -> libc::c_int {
        if self.pid {
            CLONE_FLAGS
        } else {
            CLONE_FLAGS & !libc::CLONE_NEWPID
        }
    }

    /// Whether the child is a PID namespace's init, which starts the command.
    pub fn has_init(&self) -> bool {
        self.pid
    }

    /// What the child does in its new namespaces before it starts the command: system calls
    /// only, on the plan. `ruleset`: the Landlock ruleset the command will restrict itself
    /// with, to which the rules under /proc are added. On failure, the step and the index of
    /// the place or directory it was at.
    pub fn enter(&self, ruleset: Option<RawFd>) -> Result<(), (Step, u16, io::Error)> {
        let at = |step: Step, index: usize| move |e: io::Error| (step, index as u16, e);
        let names = &self.names;
        // Nothing mounted here reaches the host's namespace, and the host's new mounts (a
        // disk mounted later) still reach this one.
        mount(None, &names.root, None, libc::MS_REC | libc::MS_SLAVE, None).map_err(at(Step::PRIVATE, 0))?;
        // The writable places with their mounts as they are, before everything is read-only.
        for (i, place) in self.places.iter().enumerate().filter(|(_, p)| p.writable) {
            place.open().map_err(at(Step::OPEN_PLACE, i))?;
            place.clone_tree(&names.empty).map_err(at(Step::CLONE_PLACE, i))?;
        }
        let read_only = MountAttr { attr_set: MOUNT_ATTR_RDONLY, attr_clr: 0, propagation: 0, userns_fd: 0 };
        // SAFETY: mount_setattr(2) reads the path and the attributes, both alive on this stack
        // or in the plan, and keeps no pointer.
        check(unsafe {
            libc::syscall(
                SYS_MOUNT_SETATTR,
                libc::AT_FDCWD,
                names.root.as_ptr(),
                AT_RECURSIVE,
                &read_only as *const MountAttr,
                std::mem::size_of::<MountAttr>(),
            )
        })
        .map_err(at(Step::READ_ONLY, 0))?;
        // The read-only places under hidden directories, as they are now.
        for (i, place) in self.places.iter().enumerate().filter(|(_, p)| !p.writable) {
            place.open().map_err(at(Step::OPEN_PLACE, i))?;
            place.clone_tree(&names.empty).map_err(at(Step::CLONE_PLACE, i))?;
        }
        // The first hidden directory with nothing to mount back in it gets an empty read-only
        // tmpfs, and the others like it a bind of that one (read-only too): one file system
        // made and torn down instead of one each.
        let mut empty_hidden: Option<&CString> = None;
        for (i, dir) in self.hidden.iter().enumerate() {
            let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
            let beneath = |place: &&Place| place.mount_point.first().map_or(false, |first| starts_with_dir(first, dir));
            if !self.places.iter().any(|place| beneath(&place)) {
                match empty_hidden {
                    Some(first) => mount(Some(first), dir, None, libc::MS_BIND, None),
                    None => mount(
                        Some(&names.tmpfs),
                        dir,
                        Some(&names.tmpfs),
                        flags | libc::MS_RDONLY,
                        Some(&names.tmpfs_options),
                    ),
                }
                .map_err(at(Step::HIDE, i))?;
                empty_hidden = empty_hidden.or(Some(dir));
                continue;
            }
            mount(Some(&names.tmpfs), dir, Some(&names.tmpfs), flags, Some(&names.tmpfs_options))
                .map_err(at(Step::HIDE, i))?;
            for (p, place) in self.places.iter().enumerate().filter(|(_, place)| beneath(place)) {
                place.make_mount_point().map_err(at(Step::MOUNT_POINT, p))?;
            }
            mount(None, dir, None, libc::MS_REMOUNT | libc::MS_RDONLY | flags, None).map_err(at(Step::HIDE, i))?;
        }
        for (i, place) in self.places.iter().enumerate() {
            place.move_tree(&names.empty).map_err(at(Step::MOVE_PLACE, i))?;
        }
        let fresh_flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        if let Some(shm) = &self.shared_memory {
            mount(Some(&names.tmpfs), shm, Some(&names.tmpfs), fresh_flags, Some(&names.shared_memory_options))
                .map_err(at(Step::SHARED_MEMORY, 0))?;
        }
        let proc_flags = fresh_flags;
        match self.proc {
            Proc::Own => mount(Some(&names.proc), &self.proc_dir, Some(&names.proc), proc_flags, None)
                .map_err(at(Step::PROC, 0))?,
            Proc::HostWritable => {
                let writable = MountAttr { attr_set: 0, attr_clr: MOUNT_ATTR_RDONLY, propagation: 0, userns_fd: 0 };
                // SAFETY: mount_setattr(2) reads the path and the attributes, both alive on this
                // stack or in the plan, and keeps no pointer. Not recursive: what is mounted
                // under /proc stays read-only.
                check(unsafe {
                    libc::syscall(
                        SYS_MOUNT_SETATTR,
                        libc::AT_FDCWD,
                        self.proc_dir.as_ptr(),
                        0 as libc::c_uint,
                        &writable as *const MountAttr,
                        std::mem::size_of::<MountAttr>(),
                    )
                })
                .map_err(at(Step::PROC, 0))?
            }
            Proc::HostReadOnly => {}
        }
        let writable_proc = self.proc != Proc::HostReadOnly;
        for (i, path) in self.proc_read_only.iter().enumerate().filter(|_| writable_proc) {
            // Binding a path onto itself makes it a mount of its own, which may then be read-only.
            // A kernel without magic SysRq has no /proc/sysrq-trigger.
            match mount(Some(path), path, None, libc::MS_BIND, None) {
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                bound => bound
                    .and_then(|()| {
                        mount(None, path, None, libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | proc_flags, None)
                    })
                    .map_err(at(Step::PROC, i + 1))?,
            }
        }
        if let Some(ruleset) = ruleset {
            for (i, (path, access)) in self.fresh_rules.iter().enumerate() {
                add_landlock_rule(ruleset, path, *access).map_err(at(Step::FRESH_RULE, i))?;
            }
        }
        if let Some(dir) = &self.working_dir {
            // The working directory was the mount beneath a writable place's new one.
            // SAFETY: chdir(2) reads a NUL-terminated path of the plan.
            check(unsafe { libc::chdir(dir.as_ptr()) }.into()).map_err(at(Step::WORKING_DIR, 0))?;
        }
        for place in &self.places {
            close(place.opened.replace(-1));
            close(place.tree.replace(-1));
        }
        Ok(())
    }

    /// What a failed step was about, for damon's error.
    pub fn describe(&self, step: Step, index: u16) -> String {
        let index = usize::from(index);
        let place = || self.places.get(index).map_or_else(String::new, |p| p.path.to_string_lossy().into_owned());
        match step {
            Step::PRIVATE => "cannot make the workload's mounts private".to_string(),
            Step::OPEN_PLACE => format!(
                "cannot open {} again in the workload's mount namespace, or it is no longer what the sandbox's rule \
                 opened",
                place()
            ),
            Step::CLONE_PLACE => format!("cannot clone the mounts of {}", place()),
            Step::READ_ONLY => "cannot make the system read-only for the workload".to_string(),
            Step::HIDE => format!(
                "cannot hide {} from the workload",
                self.hidden.get(index).map_or_else(String::new, |p| p.to_string_lossy().into_owned())
            ),
            Step::MOUNT_POINT => format!("cannot make a mount point for {} in a hidden directory", place()),
            Step::MOVE_PLACE => format!("cannot mount {} back for the workload", place()),
            Step::PROC => match index.checked_sub(1).and_then(|i| self.proc_read_only.get(i)) {
                Some(path) => format!("cannot make {} read-only for the workload", path.to_string_lossy()),
                None if self.proc == Proc::Own => "cannot mount the workload's /proc".to_string(),
                None => "cannot make /proc writable again for the workload".to_string(),
            },
            Step::FRESH_RULE => format!(
                "cannot give the Landlock rule for {} on the workload's own mount",
                self.fresh_rules.get(index).map_or_else(String::new, |(p, _)| p.to_string_lossy().into_owned())
            ),
            Step::SHARED_MEMORY => "cannot mount the workload's own /dev/shm".to_string(),
            Step::WORKING_DIR => {
                "cannot enter the working directory again in the workload's mount namespace".to_string()
            }
            Step::INIT => "cannot start the command from the sandbox's init".to_string(),
            Step(other) => format!("cannot make the workload's namespaces (step {})", other),
        }
    }
}

impl Place {
    /// The place at `path`, the inode `(dev, ino)`; `hidden`: the hidden directory it lies in,
    /// where the child makes its mount point.
    fn new(
        path: &Path,
        (dev, ino): (libc::dev_t, libc::ino_t),
        is_dir: bool,
        writable: bool,
        hidden: Option<&Path>,
    ) -> io::Result<Place> {
        let mut mount_point = Vec::new();
        if let Some(dir) = hidden {
            let mut at = dir.to_path_buf();
            for part in path.strip_prefix(dir).unwrap_or(path).iter() {
                at.push(part);
                mount_point.push(c_path(&at)?);
            }
        }
        Ok(Place {
            path: c_path(path)?,
            dev,
            ino,
            is_dir,
            writable,
            mount_point,
            opened: Cell::new(-1),
            tree: Cell::new(-1),
        })
    }

    /// Opens the place and checks that it is the inode damon's rule opened.
    fn open(&self) -> io::Result<()> {
        // openat, not open: musl's open follows an O_CLOEXEC open with an fcntl (for kernels
        // before 2.6.23), one system call more for each place.
        let flags = libc::O_PATH | libc::O_CLOEXEC | libc::O_NOFOLLOW;
        // SAFETY: openat(2) of a NUL-terminated path of the plan.
        let fd = unsafe { libc::openat(libc::AT_FDCWD, self.path.as_ptr(), flags) };
        check(fd.into())?;
        self.opened.set(fd);
        // SAFETY: fstat(2) fills the zeroed struct on this stack.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above; `fd` was just opened.
        check(unsafe { libc::fstat(fd, &mut st) }.into())?;
        if st.st_dev != self.dev || st.st_ino != self.ino {
            return Err(io::Error::from_raw_os_error(libc::ESTALE));
        }
        Ok(())
    }

    fn clone_tree(&self, empty: &CString) -> io::Result<()> {
        // SAFETY: open_tree(2) on the descriptor just opened, with an empty path.
        let fd = unsafe {
            libc::syscall(
                SYS_OPEN_TREE,
                self.opened.get(),
                empty.as_ptr(),
                OPEN_TREE_CLONE | AT_RECURSIVE | libc::AT_EMPTY_PATH as libc::c_uint | libc::O_CLOEXEC as libc::c_uint,
            )
        };
        check(fd)?;
        self.tree.set(fd as RawFd);
        Ok(())
    }

    fn make_mount_point(&self) -> io::Result<()> {
        let last = self.mount_point.len().saturating_sub(1);
        for (i, dir) in self.mount_point.iter().enumerate() {
            let result = if i < last || self.is_dir {
                // SAFETY: mkdir(2) of a NUL-terminated path of the plan.
                unsafe { libc::mkdir(dir.as_ptr(), 0o755) }
            } else {
                // SAFETY: open(2) of a NUL-terminated path of the plan; closed at once.
                let fd = unsafe { libc::open(dir.as_ptr(), libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC, 0o644) };
                close(fd);
                fd.min(0)
            };
            match check(result.into()) {
                Err(e) if e.raw_os_error() != Some(libc::EEXIST) => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// Mounts the cloned tree where the place was: on the opened place itself, or on the mount
    /// point made in a hidden directory's tmpfs.
    fn move_tree(&self, empty: &CString) -> io::Result<()> {
        let (target_fd, target, flags) = if self.mount_point.is_empty() {
            (self.opened.get(), empty.as_ptr(), MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH)
        } else {
            (libc::AT_FDCWD, self.path.as_ptr(), MOVE_MOUNT_F_EMPTY_PATH)
        };
        // SAFETY: move_mount(2) of the cloned tree's descriptor onto a descriptor or a
        // NUL-terminated path of the plan.
        check(unsafe { libc::syscall(SYS_MOVE_MOUNT, self.tree.get(), empty.as_ptr(), target_fd, target, flags) })
    }
}

/// Whether `path` is `dir` or lies beneath it: `Path::starts_with` for the plan's paths, which
/// are the kernel's names or written without `.`, `..` and repeated or trailing slashes (see
/// sandbox.rs), compared as bytes (the plan made about 200 comparisons of components, some
/// 30 µs of a launch).
fn within(path: &Path, dir: &Path) -> bool {
    within_bytes(path.as_os_str().as_bytes(), dir.as_os_str().as_bytes())
}

fn within_bytes(path: &[u8], dir: &[u8]) -> bool {
    path.starts_with(dir) && (path.len() == dir.len() || dir == b"/" || path[dir.len()] == b'/')
}

/// Whether `path` lies strictly beneath `dir`.
fn starts_with_dir(path: &CString, dir: &CString) -> bool {
    path.as_bytes().len() > dir.as_bytes().len() && within_bytes(path.as_bytes(), dir.as_bytes())
}

fn add_landlock_rule(ruleset: RawFd, path: &CString, access: u64) -> io::Result<()> {
    // openat, not open: see [`Place::open`].
    // SAFETY: openat(2) of a NUL-terminated path of the plan.
    let fd = unsafe { libc::openat(libc::AT_FDCWD, path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    check(fd.into())?;
    let result = add_landlock_rule_at(ruleset, fd, access);
    close(fd);
    result
}

fn mount(
    source: Option<&std::ffi::CStr>,
    target: &std::ffi::CStr,
    fstype: Option<&std::ffi::CStr>,
    flags: libc::c_ulong,
    data: Option<&std::ffi::CStr>,
) -> io::Result<()> {
    let ptr = |s: Option<&std::ffi::CStr>| s.map_or(std::ptr::null(), |s| s.as_ptr());
    // SAFETY: mount(2) reads NUL-terminated strings alive in the plan or in the binary.
    check(unsafe { libc::mount(ptr(source), target.as_ptr(), ptr(fstype), flags, ptr(data).cast()) }.into())
}

fn close(fd: RawFd) {
    if fd >= 0 {
        // SAFETY: close(2) of a descriptor this plan opened and no one else uses.
        unsafe { libc::close(fd) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_is_path_starts_with_for_the_plans_paths() {
        for (path, dir) in [
            ("/proc/self/fd", "/proc"),
            ("/proc", "/proc"),
            ("/procfs", "/proc"),
            ("/run/systemd/resolve/stub-resolv.conf", "/run"),
            ("/tmp", "/"),
            ("/", "/"),
            ("/var/run", "/var/runner"),
            ("/dev/shm", "/dev/shm/x"),
        ] {
            let (path, dir) = (Path::new(path), Path::new(dir));
            assert_eq!(within(path, dir), path.starts_with(dir), "{} in {}", path.display(), dir.display());
        }
    }
}
