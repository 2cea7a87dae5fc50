//! DAMON_SANDBOX on Linux: what confines a workload that may be root.
//!
//! - Paths: a Landlock domain (Linux 5.13) holding the rules of DAMON_SANDBOX_PATHS, or the
//!   defaults. Everything else is out of reach for reading, writing, executing, creating and
//!   removing, whatever the workload's uid and capabilities. The cgroup files are read-only at
//!   most: a rule that would let the workload write one is refused, so no write reaches a
//!   `cgroup.procs`, and the workload cannot leave its group or raise its limits.
//! - ptrace: a Landlock domain also keeps ptrace, /proc/PID/mem and process_vm_* within the
//!   domain: the workload may trace its own tree, not damon, its guard, or anything else.
//!   Without Landlock, the filter below refuses to attach to any process instead.
//! - Signals: from Landlock ABI 6 (Linux 6.12) the domain also scopes signals, so a root
//!   workload cannot signal (or SIGKILL) damon, its guard or any other process of the host;
//!   and abstract Unix sockets, so it cannot connect to one a process outside its domain
//!   listens on (a root service's D-Bus, containerd or systemd address).
//!   Before ABI 6 a root workload can signal them; the log
//!   and --check say so, and `strict` does not require it (it would refuse every kernel before
//!   6.12); a workload run as another user (DAMON_USER) cannot signal root's processes anyway.
//! - System calls: a seccomp filter (seccomp.rs) that refuses with EPERM mounting, modules,
//!   kexec, reboot, bpf, perf_event_open, setting the clock, new namespaces and joining others,
//!   and clone3 with ENOSYS (its CLONE_INTO_CGROUP would place a child in any group whose
//!   cgroup.procs the workload could open, and its flags cannot be filtered).
//!
//! - Capabilities: at most Docker's default set without NET_RAW ([`SANDBOX_CAPABILITIES`];
//!   DAMON_SANDBOX_CAPABILITIES adds), out of the bounding set so that no exec gives the rest
//!   back, and no_new_privs always, so that no setuid or file-capability program does either.
//!
//! Everything is decided and built before the clone: the rules' paths are opened, the ruleset
//! is made and the filter assembled in damon. Between the clone and the exec the child makes
//! a few system calls on them ([`Prepared::apply`]), after it has joined its group and before
//! it takes on its identity.
//!
//! A kernel without Landlock, or with an older ABI, gets what it allows, and [`Sandbox::gaps`]
//! says exactly what is missing; DAMON_SANDBOX=strict refuses to start instead.

pub mod init;
mod namespaces;
mod seccomp;

use std::fs::File;
use std::io;
use std::os::unix::io::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use landlock::{make_bitflags, Access as _, AccessFs, BitFlags, Ruleset, RulesetAttr, Scope, ABI};
use nix::fcntl::{openat, OFlag};
use nix::libc;
use nix::sys::stat::Mode;

use self::namespaces::{Inode, RulePlace};
pub use self::namespaces::{Namespaces, Step};
use self::seccomp::SockFilter;
use super::anchored_dir;
use super::mountinfo::{self, Mount};
use super::process::identity::{limit_capabilities, Identity};
use crate::config::{capability_names, Access, PathEntry, PathRule, SandboxMode, SandboxSettings};
use crate::platform::{IdentityError, PathError};

/// linux/landlock.h: landlock_create_ruleset(2) returns the ABI version.
const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
/// linux/landlock.h
const LANDLOCK_RULE_PATH_BENEATH: libc::c_int = 1;

/// struct landlock_path_beneath_attr (linux/landlock.h): packed.
#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}
/// The first ABI that controls truncation (Linux 6.2); before it, truncate(2) and O_TRUNC reach
/// any file the workload may open, and the rules cannot stop them.
const ABI_TRUNCATE: i64 = 3;
/// The first ABI that allows a file to be linked or renamed into another directory (Linux 5.19);
/// with ABI 1 every such link or rename is refused.
const ABI_REFER: i64 = 2;
/// The first ABI that scopes signals (Linux 6.12): a domain's processes may signal only
/// processes of the same domain.
const ABI_SCOPE_SIGNAL: i64 = 6;
/// What a root workload can still do under the sandbox, for `--check` (docs/linux.md, "Not
/// closed yet"): with the workload's own namespaces, and without them (a kernel before 5.12).
const NOT_CLOSED: &[&str] =
    &["Unix sockets with a path outside the hidden directories (/run, /var/run, /tmp, /var/tmp): Landlock \
     controls no connect(), and a root workload connects to a root service's socket wherever it lies (one under \
     /var/lib, say) if it can name it"];
const NOT_CLOSED_WITHOUT_NAMESPACES: &[&str] = &[
    "file metadata outside the rules: Landlock has no right for chmod, chown, utimensat or setxattr, and a root \
     workload owns root's files (the read-only system of the workload's mount namespace closes it, Linux 5.12)",
    "Unix sockets with a path: Landlock controls no connect(), and reaching a socket needs no rule: a root workload \
     connects to a root service's (docker.sock, /run/systemd/private) wherever the rules are",
];

/// The capabilities a sandboxed workload keeps (linux/capability.h numbers): Docker's default
/// set without NET_RAW (raw and packet sockets, which read and forge the host's traffic), as
/// podman's: CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP,
/// NET_BIND_SERVICE, SYS_CHROOT, MKNOD, AUDIT_WRITE, SETFCAP. Gone with the rest: SYS_ADMIN
/// (hostname, fanotify, the other half of mount), SYS_PTRACE and PERFMON (other processes'
/// memory and environment), NET_ADMIN (the host's interfaces and routes), SYS_RESOURCE,
/// SYS_NICE (real-time policies), SYSLOG, SYS_PACCT, SYS_MODULE, SYS_RAWIO, SYS_TIME, BPF.
/// DAMON_SANDBOX_CAPABILITIES adds to it.
const SANDBOX_CAPABILITIES: u64 = 1 << 0
    | 1 << 1
    | 1 << 3
    | 1 << 4
    | 1 << 5
    | 1 << 6
    | 1 << 7
    | 1 << 8
    | 1 << 10
    | 1 << 18
    | 1 << 27
    | 1 << 29
    | 1 << 31;
const SANDBOX_VAR: &str = "DAMON_SANDBOX";
const PATHS_VAR: &str = "DAMON_SANDBOX_PATHS";

/// The rules used when DAMON_SANDBOX_PATHS is unset (or says `defaults`), besides the Nomad
/// directories (read, write, execute, create): what a typical program needs, those that exist.
const DEFAULT_RULES: &[(&str, &str)] = &[
    ("rx", "/usr"),
    ("rx", "/bin"),
    ("rx", "/sbin"),
    ("rx", "/lib"),
    ("rx", "/lib32"),
    ("rx", "/lib64"),
    ("rx", "/libx32"),
    ("r", "/etc"),
    // Opened through its link: where systemd-resolved keeps it (/run/systemd/resolve).
    ("r", "/etc/resolv.conf"),
    // Runtimes size themselves from /proc/self/{mountinfo,cgroup}, /proc/meminfo and the
    // cgroup files: read-only, and writing a cgroup file is never allowed.
    ("r", "/proc"),
    ("r", "/sys"),
    ("rw", "/dev/null"),
    ("rw", "/dev/zero"),
    ("rw", "/dev/full"),
    ("r", "/dev/random"),
    ("r", "/dev/urandom"),
];

/// A rule as Landlock takes it.
#[derive(Debug, Clone)]
struct Rule {
    path: PathBuf,
    /// The path opened once (`O_PATH`): the checks made on it and the rule the child gets are
    /// about the same inode, and the launch does not look the path up twice.
    opened: Arc<File>,
    /// The opened inode, as the open's `fstat` saw it.
    inode: Inode,
    /// Where the path leads, when no link was on the way to it: the path itself, without `.`.
    /// `None`: the kernel's name for the opened inode is asked for when the namespaces are
    /// planned.
    located: Option<PathBuf>,
    access: BitFlags<AccessFs>,
    /// The rights as written (see [`Rule::shown`]).
    written: Access,
}

impl Rule {
    /// As written, for the log and errors.
    fn shown(&self) -> String {
        PathRule { access: self.written, path: self.path.clone() }.to_string()
    }
}

/// What the sandbox will do, decided when damon starts; `prepare` builds it for one child.
#[derive(Debug, Clone, Default)]
pub struct Sandbox {
    mode: Option<SandboxMode>,
    rules: Vec<Rule>,
    /// The kernel's Landlock ABI; 0 if it has none, with the reason.
    landlock_abi: i64,
    landlock_missing: Option<String>,
    /// Empty if the kernel runs no seccomp filter, with the reason.
    filter: Vec<SockFilter>,
    seccomp_missing: Option<String>,
    /// What the workload keeps of the capabilities (a bit per number).
    capabilities: u64,
    /// Without Landlock the cgroup files are out of reach only of a child that is not root.
    child_is_root: bool,
    /// Why the workload gets no mount, PID and IPC namespaces of its own, if it does not.
    namespaces_missing: Option<String>,
    /// What the namespaces' init passes on (DAMON_STOP_SIGNAL_SCOPE, DAMON_STOP_SIGNAL).
    init: init::Passing,
    /// Each protection as this host enforces it ([`Sandbox::derive_parts`]), derived once.
    parts: Vec<Part>,
}

/// One protection of the sandbox on this host: its name in the "child started" line, whether
/// it is in force, and, where something of it is missing that `strict` refuses for, what.
#[derive(Debug, Clone)]
struct Part {
    name: String,
    enforced: bool,
    gap: Option<String>,
}

/// The domain and filter of one child, made before its clone.
pub struct Prepared<'a> {
    ruleset: Option<OwnedFd>,
    filter: &'a [SockFilter],
    /// The sandbox is on: no_new_privs, and the capabilities kept (a bit per number).
    confine: Option<u64>,
    namespaces: Option<Namespaces>,
    init: init::Passing,
}

impl Sandbox {
    /// No sandbox (the trial group of `--check`).
    pub fn none() -> Sandbox {
        Sandbox::default()
    }

    /// Decides what the sandbox can enforce here. An error is a configuration error (125): a
    /// rule that would let the workload write a cgroup file, or `strict` on a kernel that cannot
    /// enforce all of it.
    pub fn resolve(settings: &SandboxSettings, identity: &Identity) -> Result<Sandbox, IdentityError> {
        if settings.mode == SandboxMode::Off {
            return Ok(Sandbox::none());
        }
        // A refusal names DAMON_SANDBOX_PATHS as written (formatted only for one).
        let refuse = |reason: String| IdentityError {
            source: settings.paths_source.clone().unwrap_or_else(|| format!("{} (unset: the defaults)", PATHS_VAR)),
            value: settings.paths.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
            reason,
        };
        let mut rules = Vec::new();
        // Read only for the operator's rules that may write (reading the mount table is the
        // costliest part of a sandboxed launch: the kernel formats a line per mount).
        let mut cgroup_mounts: Option<Vec<PathBuf>> = None;
        // No link is followed in or below what the workload may write (an earlier run's).
        let workload_dirs = settings.writable_dirs();
        for entry in &settings.paths {
            let opened = match entry {
                PathEntry::Defaults => {
                    let defaults = default_rules(settings.default_writable_dirs(), &workload_dirs)
                        .map_err(|e| refuse(planted_reason(&e)))?;
                    // The defaults write only to Nomad's task directories and to /dev/null,
                    // /dev/zero and /dev/full. A Nomad directory must be neither in a cgroup
                    // file system nor above the cgroup mounts (NOMAD_ALLOC_DIR=/sys/fs/cgroup,
                    // NOMAD_SECRETS_DIR=/): both are looked at through the opened directory,
                    // without the mount table (the costliest read of a sandboxed launch).
                    let above = cgroup_root_and_above();
                    let over_cgroups = |r: &Rule| {
                        above.contains(&(r.inode.dev, r.inode.ino))
                            || (could_be_cgroups(&r.inode) && in_cgroup_file_system(&r.opened))
                    };
                    if let Some(rule) = defaults.iter().find(|r| writes(r) && over_cgroups(r)) {
                        let reason = format!(
                            "{} (the defaults make the Nomad directories writable: NOMAD_TASK_DIR, NOMAD_ALLOC_DIR, \
                             NOMAD_SECRETS_DIR)",
                            cgroup_files_reason(rule, Path::new(CGROUP_ROOT))
                        );
                        return Err(refuse(reason));
                    }
                    defaults
                }
                PathEntry::Rule(rule) => {
                    let rule = landlock_rule(rule, &workload_dirs).map_err(|e| {
                        let reason = match e {
                            PathError::Planted { .. } => planted_reason(&e),
                            PathError::Io { .. } => e.to_string(),
                        };
                        refuse(reason)
                    })?;
                    if writes(&rule) {
                        let real = rule.path.canonicalize().unwrap_or_else(|_| rule.path.clone());
                        let mounts = cgroup_mounts.get_or_insert_with(cgroup_mount_points);
                        if let Some(mount) = mounts.iter().find(|m| m.starts_with(&real) || real.starts_with(m)) {
                            return Err(refuse(cgroup_files_reason(&rule, mount)));
                        }
                    }
                    vec![rule]
                }
            };
            rules.extend(opened);
        }
        let (landlock_abi, landlock_missing) = match landlock_abi() {
            Ok(abi) => (abi, None),
            Err(why) => (0, Some(why)),
        };
        let seccomp_missing = seccomp::unavailable();
        let filter = if seccomp_missing.is_none() { seccomp::program(landlock_abi == 0) } else { Vec::new() };
        let mut sandbox = Sandbox {
            mode: Some(settings.mode),
            rules,
            landlock_abi,
            landlock_missing,
            filter,
            seccomp_missing,
            capabilities: SANDBOX_CAPABILITIES | settings.extra_capabilities.as_ref().map_or(0, |(mask, _)| *mask),
            child_is_root: identity.runs_as_root(),
            namespaces_missing: namespaces::unavailable(),
            init: init::Passing { tree: settings.stop_tree, stop_signal: settings.stop_signal },
            parts: Vec::new(),
        };
        sandbox.parts = sandbox.derive_parts();
        let gaps = sandbox.gaps();
        if settings.mode == SandboxMode::Strict && !gaps.is_empty() {
            return Err(IdentityError {
                source: SANDBOX_VAR.to_string(),
                value: settings.mode.to_string(),
                reason: format!(
                    "the sandbox cannot be enforced in full here: {}; DAMON_SANDBOX=Y runs without it",
                    gaps.join("; ")
                ),
            });
        }
        Ok(sandbox)
    }

    fn on(&self) -> bool {
        self.mode.is_some()
    }

    /// Whether the workload's signals stay within its tree (Landlock ABI 6).
    fn scopes_signals(&self) -> bool {
        self.landlock_missing.is_none() && self.landlock_abi >= ABI_SCOPE_SIGNAL
    }

    /// Whether the workload gets a PID namespace (and the child is its init): where it has
    /// namespaces and Landlock does not keep its signals within its tree. Where Landlock does,
    /// the PID namespace would hide only the host's process list, at about 0.2 ms a launch.
    fn pid_namespace(&self) -> bool {
        self.namespaces_missing.is_none() && !self.scopes_signals()
    }

    /// Each protection as this host enforces it, derived once when the sandbox is resolved for
    /// [`Sandbox::gaps`], [`Sandbox::enforced`] and [`Sandbox::describe`]. Empty when the
    /// sandbox is off.
    fn derive_parts(&self) -> Vec<Part> {
        if !self.on() {
            return Vec::new();
        }
        let landlock = self.landlock_missing.is_none();
        let filtered = self.seccomp_missing.is_none();
        let root = self.child_is_root;
        let paths_gap = match &self.landlock_missing {
            Some(why) => Some(format!(
                "paths: not enforced, the workload may read, write and execute anything its uid may ({})",
                why
            )),
            None if self.landlock_abi < ABI_TRUNCATE => Some(format!(
                "paths: truncation is not controlled before Landlock ABI {} (Linux 6.2), this kernel has ABI {}: \
                 truncate(2) and O_TRUNC reach any file the workload may open, even read-only",
                ABI_TRUNCATE, self.landlock_abi
            )),
            None => None,
        };
        let namespaces = self.namespaces_missing.is_none();
        let signals = self.scopes_signals();
        vec![
            Part {
                name: format!(
                    "paths (Landlock ABI {}{})",
                    self.landlock_abi,
                    if self.landlock_abi < ABI_TRUNCATE { ", truncation not controlled" } else { "" }
                ),
                enforced: landlock,
                gap: paths_gap,
            },
            Part {
                name: match (landlock, namespaces) {
                    (true, _) => "cgroup",
                    (false, true) => "cgroup (read-only mount)",
                    (false, false) => "cgroup (the child is not root)",
                }
                .to_string(),
                enforced: landlock || namespaces || !root,
                gap: (!landlock && !namespaces && root).then(|| {
                    "cgroup: not enforced, a workload running as root may write its pid to any cgroup.procs and leave \
                     its group (run it as another user with DAMON_USER or DAMON_RESTRICTED_TOKEN=Y, whom the cgroup \
                     files refuse)"
                        .to_string()
                }),
            },
            Part {
                name: if landlock { "ptrace (Landlock)" } else { "ptrace attach (seccomp)" }.to_string(),
                enforced: landlock || filtered,
                gap: (!landlock).then(|| {
                    "ptrace: only attaching is refused (by the filter); a root workload may still write any \
                     process's /proc/PID/mem"
                        .to_string()
                }),
            },
            Part {
                name: "system calls (seccomp)".to_string(),
                enforced: filtered,
                gap: self.seccomp_missing.as_ref().map(|why| format!("system calls: not filtered ({})", why)),
            },
            Part { name: "capabilities".to_string(), enforced: true, gap: None },
            Part {
                name: if self.pid_namespace() { "namespaces (mount, PID, IPC)" } else { "namespaces (mount, IPC)" }
                    .to_string(),
                enforced: namespaces,
                gap: self.namespaces_missing.as_ref().map(|why| {
                    format!(
                        "namespaces: none, so the system is writable where the paths allow, the host's runtime \
                         sockets are reachable, and signals reach damon unless Landlock scopes them ({})",
                        why
                    )
                }),
            },
            // Not a gap `strict` refuses for: see the module's documentation.
            Part {
                name: match (self.pid_namespace(), signals, root) {
                    (true, _, _) => "signals (PID namespace)",
                    (false, true, _) => "signals (Landlock)",
                    (false, false, false) => "signals (the child is not root)",
                    (false, false, true) => "signals",
                }
                .to_string(),
                enforced: namespaces || signals || !root,
                gap: None,
            },
        ]
    }

    /// What is not enforced, each with its reason; empty when all of it is (or it is off).
    pub fn gaps(&self) -> Vec<String> {
        self.parts.iter().filter_map(|part| part.gap.clone()).collect()
    }

    /// The parts in force, for the "child started" line: e.g. "paths (Landlock ABI 7),
    /// cgroup, ptrace, system calls"; "off"; or the parts and "not: ..." with those missing.
    pub fn enforced(&self) -> String {
        let (on, off): (Vec<&Part>, Vec<&Part>) = self.parts.iter().partition(|part| part.enforced);
        let names = |parts: Vec<&Part>| parts.iter().map(|part| part.name.as_str()).collect::<Vec<_>>().join(", ");
        match (on.is_empty() && off.is_empty(), off.is_empty()) {
            (true, _) => "off".to_string(),
            (false, true) => names(on),
            (false, false) => format!("{}; not enforced: {}", names(on), names(off)),
        }
    }

    /// For `--check`: the sandbox damon would apply here.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        if !self.on() {
            return vec![("sandbox", "off".to_string())];
        }
        let mut facts = vec![("sandbox", self.enforced())];
        let landlock = match &self.landlock_missing {
            Some(why) => format!("not enforced: {}", why),
            None if self.landlock_abi < ABI_REFER => {
                format!("Landlock ABI {}: no file may be linked or renamed into another directory", self.landlock_abi)
            }
            None => format!("Landlock ABI {}", self.landlock_abi),
        };
        facts.push(("sandbox landlock", landlock));
        facts.push(("sandbox paths", self.rules.iter().map(Rule::shown).collect::<Vec<_>>().join(",")));
        facts.push((
            "sandbox capabilities",
            format!(
                "at most {} (the bounding set; DAMON_SANDBOX_CAPABILITIES adds); no_new_privs",
                capability_names(self.capabilities)
            ),
        ));
        let refused = match &self.namespaces_missing {
            None => namespaces::trial().err(),
            Some(_) => None,
        };
        facts.push((
            "sandbox namespaces",
            match (&self.namespaces_missing, refused) {
                (None, Some(e)) => format!(
                    "refused here ({}), so every start would be: {}",
                    e,
                    super::process::clone::NAMESPACES_REFUSED
                ),
                (None, None) if self.pid_namespace() => {
                    "mount, PID and IPC of the workload's own: the system read-only but for the writable rules; \
                     /run, /var/run, /tmp and /var/tmp hidden (what a rule names there mounted back); a /dev/shm of its \
                     own; a /proc of its PID namespace, /proc/sys read-only"
                        .to_string()
                }
                (None, None) => "mount and IPC of the workload's own: the system read-only but for the writable rules; \
                                 /run, /var/run, /tmp and /var/tmp hidden (what a rule names there mounted back); a \
                                 /dev/shm of its own; /proc/sys read-only; no PID namespace (Landlock keeps the \
                                 workload's signals within its tree, and its ptrace scope other processes' memory and \
                                 environment out of reach: only their list and command lines are in /proc, as to any \
                                 user of the host)"
                    .to_string(),
                (Some(why), _) => format!("none: {}", why),
            },
        ));
        facts.push((
            "sandbox signals",
            if self.pid_namespace() {
                "only within the workload's PID namespace: damon, its guard and the host's processes have no pid there"
                    .to_string()
            } else if self.scopes_signals() {
                "only within the workload's tree (Landlock ABI 6 scope): damon and its guard are out of reach".to_string()
            } else {
                format!(
                    "not scoped: a root workload may signal damon, its guard and the host's processes (Landlock ABI {} \
                     scopes signals, Linux 6.12; this kernel has {}); a workload run as another user with DAMON_USER \
                     may not",
                    ABI_SCOPE_SIGNAL,
                    if self.landlock_missing.is_some() { "none".to_string() } else { format!("ABI {}", self.landlock_abi) }
                )
            },
        ));
        facts.push((
            "sandbox abstract sockets",
            if self.scopes_signals() {
                "only the workload's own (Landlock ABI 6 scope): a root service's abstract socket is out of reach"
                    .to_string()
            } else {
                format!("not scoped (Landlock ABI {} scopes them, with signals)", ABI_SCOPE_SIGNAL)
            },
        ));
        facts.push((
            "sandbox syscalls denied",
            match &self.seccomp_missing {
                Some(why) => format!("none: {}", why),
                None if self.landlock_missing.is_some() => {
                    format!("{}, {}", seccomp::DENIED, seccomp::DENIED_WITHOUT_LANDLOCK)
                }
                None => seccomp::DENIED.to_string(),
            },
        ));
        for gap in self.gaps() {
            facts.push(("sandbox not enforced", gap));
        }
        let not_closed = if self.namespaces_missing.is_none() { NOT_CLOSED } else { NOT_CLOSED_WITHOUT_NAMESPACES };
        for open in not_closed {
            facts.push(("sandbox not closed", open.to_string()));
        }
        facts
    }

    /// The rights the ruleset handles: ABI 3's, or fewer where this kernel knows fewer.
    fn handled_access(&self) -> BitFlags<AccessFs> {
        AccessFs::from_all(match self.landlock_abi {
            1 => ABI::V1,
            2 => ABI::V2,
            _ => ABI::V3,
        })
    }

    /// Builds the domain for one child. Nothing when the sandbox is off.
    pub fn prepare(&self) -> io::Result<Prepared<'_>> {
        let ruleset = if self.on() && self.landlock_missing.is_none() { Some(self.ruleset()?) } else { None };
        let confine = if self.on() { Some(self.capabilities) } else { None };
        let namespaces = if self.on() && self.namespaces_missing.is_none() {
            // The rights this kernel's ruleset handles: a rule added with the system call
            // itself (on the workload's own mounts) may hold no other.
            let handled = self.handled_access();
            let places: Vec<RulePlace> = self
                .rules
                .iter()
                .map(|rule| RulePlace {
                    opened: &rule.opened,
                    inode: rule.inode,
                    located: rule.located.as_deref(),
                    writes: writes(rule),
                    access: (rule.access & handled).bits(),
                })
                .collect();
            let shared_memory = self.landlock_missing.is_none().then(|| {
                let rwc = Access { read: true, write: true, execute: false, create: true };
                (landlock_access(rwc, true) & handled).bits()
            });
            Some(Namespaces::plan(&places, shared_memory, self.pid_namespace())?)
        } else {
            None
        };
        Ok(Prepared { ruleset, filter: &self.filter, confine, namespaces, init: self.init })
    }

    /// The Landlock ruleset as a file descriptor, for the child to restrict itself with. The
    /// crate's `restrict_self` would also set no_new_privs and runs in the calling process:
    /// damon keeps the descriptor and the child makes the one system call.
    fn ruleset(&self) -> io::Result<OwnedFd> {
        let error = |e: &dyn std::fmt::Display| io::Error::new(io::ErrorKind::Other, e.to_string());
        // Best effort (the crate's default): the rights this kernel's ABI lacks are left out.
        // The signal scope is in the same domain, not a layer of its own: each layer costs the
        // child's restriction a copy of the rules (about 6 µs).
        let mut ruleset = Ruleset::default().handle_access(self.handled_access()).map_err(|e| error(&e))?;
        if self.scopes_signals() {
            // Abstract Unix sockets came with signals (ABI 6): one outside the domain (D-Bus,
            // containerd, systemd's) is a root service the workload must not reach.
            ruleset = ruleset.scope(Scope::Signal | Scope::AbstractUnixSocket).map_err(|e| error(&e))?;
        }
        let ruleset = ruleset.create().map_err(|e| error(&e))?;
        let ruleset =
            Option::<OwnedFd>::from(ruleset).ok_or_else(|| error(&"the kernel refused to make a Landlock ruleset"))?;
        let handled = self.handled_access();
        for rule in &self.rules {
            // What the crate's best effort would leave of the rule: the rights this kernel knows.
            // A rule's rights fit its inode already (none of a directory's on a file).
            let access = (rule.access & handled).bits();
            if access != 0 {
                add_landlock_rule_at(ruleset.as_raw_fd(), rule.opened.as_raw_fd(), access)
                    .map_err(|e| error(&format!("{}: {}", rule.shown(), e)))?;
            }
        }
        Ok(ruleset)
    }
}

impl Prepared<'_> {
    /// The namespaces the child makes and is the init of, if any.
    pub fn namespaces(&self) -> Option<&Namespaces> {
        self.namespaces.as_ref()
    }

    pub fn ruleset_fd(&self) -> Option<std::os::unix::io::RawFd> {
        self.ruleset.as_ref().map(|fd| fd.as_raw_fd())
    }

    /// What the init passes on.
    pub fn init_passing(&self) -> init::Passing {
        self.init
    }

    /// Confines the calling process. Runs between the child's clone and its exec: system calls
    /// only, on data made before the clone.
    pub fn apply(&self) -> io::Result<()> {
        if let Some(capabilities) = self.confine {
            // Always, whatever damon holds: no exec of a setuid or file-capability program
            // gives the workload more than it has.
            // SAFETY: prctl(2) with integer arguments only.
            check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) }.into())?;
            limit_capabilities(capabilities)?;
        }
        if let Some(ruleset) = &self.ruleset {
            // SAFETY: landlock_restrict_self(2) takes a ruleset descriptor that damon keeps open
            // until the child has exec'd, and flags 0; it reads no memory of ours.
            check(unsafe { libc::syscall(libc::SYS_landlock_restrict_self, ruleset.as_raw_fd(), 0 as libc::c_uint) })?;
        }
        if !self.filter.is_empty() {
            let program = seccomp::SockFprog { len: self.filter.len() as u16, filter: self.filter.as_ptr() };
            // SAFETY: seccomp(2) copies the program that `program` points to, alive on this stack
            // and in damon's memory (the filter), and keeps no pointer to it.
            check(unsafe {
                libc::syscall(
                    libc::SYS_seccomp,
                    seccomp::SECCOMP_SET_MODE_FILTER,
                    0 as libc::c_uint,
                    &program as *const seccomp::SockFprog,
                )
            })?;
        }
        Ok(())
    }
}

/// Adds to `ruleset` the rule giving `access` beneath the inode `place` (an `O_PATH`
/// descriptor). damon's rules are added so, not with the landlock crate's `add_rule`, which
/// looks at each inode again with an `fstat` (about 13 a launch) that damon made when it opened
/// it; the child adds the rules of its fresh mounts so too.
fn add_landlock_rule_at(ruleset: RawFd, place: RawFd, access: u64) -> io::Result<()> {
    let attr = PathBeneathAttr { allowed_access: access, parent_fd: place };
    // SAFETY: landlock_add_rule(2) reads the packed attribute on this stack and keeps no pointer.
    check(unsafe {
        libc::syscall(
            libc::SYS_landlock_add_rule,
            ruleset,
            LANDLOCK_RULE_PATH_BENEATH,
            &attr as *const PathBeneathAttr,
            0 as libc::c_uint,
        )
    })
}

/// A system call's result: -1 is its errno.
fn check(result: libc::c_long) -> io::Result<()> {
    if result == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The defaults that exist here: the directories they write (the Nomad directories, see
/// [`SandboxSettings::default_writable_dirs`]), and [`DEFAULT_RULES`].
///
/// The Nomad directories are reached as damon reaches its log ([`anchored_dir::open_place`]):
/// another task's user can write a task's directory (Nomad makes it 0777), so a link planted
/// at NOMAD_TASK_DIR must not turn its rule into one for `/`. Such a link is the error; a
/// directory that does not exist has no rule.
fn default_rules(dirs: Vec<PathBuf>, workload_dirs: &[PathBuf]) -> Result<Vec<Rule>, PathError> {
    let all = Access { read: true, write: true, execute: true, create: true };
    let mut looked: Vec<(PathRule, Looked)> = Vec::new();
    for path in dirs {
        match Opened::walk(&path, workload_dirs) {
            Ok(opened) => looked.push((PathRule { access: all, path }, Looked::Place(opened))),
            Err(planted @ PathError::Planted { .. }) => return Err(planted),
            Err(PathError::Io { .. }) => {}
        }
    }
    let fixed = DEFAULT_RULES
        .iter()
        .filter_map(|(mode, path)| Access::parse(mode).map(|access| PathRule { access, path: PathBuf::from(path) }));
    looked.extend(fixed.filter_map(|rule| Looked::at(&rule.path).ok().map(|looked| (rule, looked))));
    // A rule lands on the inode its path leads to. On a merged-/usr system /bin leads to
    // /usr/bin, and /etc/resolv.conf is most often a file of /etc: the entry of a directory
    // whose default already grants the same beneath it adds nothing. It would cost the launch
    // its lookup (and a link's target its own) and the domain its entry, so it is left out.
    // Compared as written, byte for byte: a match is a match of the paths, and a miss (a
    // trailing slash) costs only the entry.
    let covered = |rule: &PathRule, path: &Looked| {
        let place = path.place(&rule.path);
        let parent = place.parent().map(Path::as_os_str);
        looked.iter().any(|(other, by)| {
            by.is_dir() && parent == Some(other.path.as_os_str()) && other.access.includes(rule.access)
        })
    };
    let kept: Vec<bool> = looked.iter().map(|(rule, path)| !covered(rule, path)).collect();
    Ok(looked
        .into_iter()
        .zip(kept)
        .filter(|(_, kept)| *kept)
        .filter_map(|((rule, path), _)| Some(landlock_rule_of(&rule, path.follow(&rule.path).ok()?)))
        .collect())
}

/// The rule for a path the operator wrote, which must exist, reached as the Nomad
/// directories are (see [`default_rules`]).
fn landlock_rule(rule: &PathRule, workload_dirs: &[PathBuf]) -> Result<Rule, PathError> {
    Ok(landlock_rule_of(rule, Opened::walk(&rule.path, workload_dirs)?))
}

/// Why a sandbox rule's path is refused when something was planted on it, with the way out.
fn planted_reason(planted: &PathError) -> String {
    format!("{}; remove it, or name in DAMON_SANDBOX_PATHS the directory it should lead to", planted)
}

/// A rule's rights, as exec2 gives them: r reads (and lists a directory), w writes and
/// truncates, x executes, c creates and removes entries of a directory, and renames or links
/// into it. Never the making of device nodes: a root workload's own node for a disk would
/// bypass every rule.
fn landlock_rule_of(rule: &PathRule, opened: Opened) -> Rule {
    let access = landlock_access(rule.access, opened.inode.is_dir());
    let located = opened.without_links.then(|| located(&rule.path)).flatten();
    Rule {
        path: rule.path.clone(),
        opened: Arc::new(opened.file),
        inode: opened.inode,
        access,
        written: rule.access,
        located,
    }
}

/// Where a path opened with no link on the way leads: itself, if it is absolute and has no `..`
/// (which the kernel would follow back up), with `.` and repeated or trailing slashes left out.
fn located(path: &Path) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    use std::path::Component;
    let bytes = path.as_os_str().as_bytes();
    // Most are written so already (every default is): no component to parse.
    let plain = bytes.starts_with(b"/")
        && (bytes.len() == 1 || !bytes.ends_with(b"/"))
        && !bytes.windows(2).any(|w| w == b"//" || w == b"/.");
    if plain {
        return Some(path.to_path_buf());
    }
    let clean = path.is_absolute() && !path.components().any(|c| matches!(c, Component::ParentDir));
    clean.then(|| path.components().collect())
}

/// A rule's rights as Landlock's bits (see [`landlock_rule_of`]).
fn landlock_access(a: Access, dir: bool) -> BitFlags<AccessFs> {
    let mut access = BitFlags::<AccessFs>::empty();
    if a.read {
        access |= AccessFs::ReadFile;
        if dir {
            access |= AccessFs::ReadDir;
        }
    }
    if a.write {
        access |= AccessFs::WriteFile | AccessFs::Truncate;
    }
    if a.execute {
        access |= AccessFs::Execute;
    }
    if a.create && dir {
        access |= make_bitflags!(AccessFs::{
            MakeReg | MakeDir | MakeSock | MakeFifo | MakeSym | RemoveFile | RemoveDir | Refer
        });
    }
    access
}

/// A rule's path opened as Landlock takes it (`O_PATH`, following links).
struct Opened {
    file: File,
    inode: Inode,
    /// No link was on the way to `file`, nor is it one.
    without_links: bool,
}

impl Opened {
    /// Not with std's `OpenOptions`: it takes `O_PATH` out of custom flags where the C library
    /// counts it in `O_ACCMODE`, as musl (the static release build) does. The path would then
    /// be opened for reading, which fails on a link with `O_NOFOLLOW`, and blocks on a FIFO.
    fn open(path: &Path, flags: OFlag) -> io::Result<File> {
        let flags = OFlag::O_PATH | OFlag::O_CLOEXEC | flags;
        let fd = openat(libc::AT_FDCWD, path, flags, Mode::empty()).map_err(io::Error::from)?;
        // SAFETY: openat(2) just returned this descriptor, and nothing else owns it.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    fn of(file: File, without_links: bool) -> io::Result<Opened> {
        let metadata = file.metadata()?;
        Ok(Opened { file, inode: Inode::of(&metadata), without_links })
    }

    /// The path opened as [`anchored_dir::open_place`] opens it: nothing the workload could have
    /// planted on the way is followed.
    fn walk(path: &Path, workload_dirs: &[PathBuf]) -> Result<Opened, PathError> {
        let place = anchored_dir::open_place(path, workload_dirs)?;
        Opened::of(File::from(place.fd), place.without_links).map_err(|source| PathError::Io {
            action: "look at",
            path: path.to_path_buf(),
            source,
        })
    }
}

/// A default's path as first looked at, not followed, so that a link can be judged by where it
/// leads before that is opened.
enum Looked {
    Place(Opened),
    /// A symbolic link, and where it leads as it is written.
    Link(PathBuf),
}

impl Looked {
    /// One openat2 opens a path with no link on the way (which spares the plan its lookup of
    /// where it leads), or refuses a link; then one readlink tells whether the path itself is
    /// one, and where it leads. On a merged-/usr system /bin, /sbin, /lib and /lib64 are links
    /// into /usr, whose rule covers them: opening and looking at each link itself cost the
    /// launch two system calls more.
    fn at(path: &Path) -> io::Result<Looked> {
        match anchored_dir::open_without_links(path, anchored_dir::LinkAtEnd::Refused) {
            Ok(fd) => return Ok(Looked::Place(Opened::of(File::from(fd), true)?)),
            Err(nix::errno::Errno::ELOOP) => match std::fs::read_link(path) {
                Ok(target) => return Ok(Looked::Link(target)),
                // The link was on the way.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
                Err(e) => return Err(e),
            },
            Err(e) if anchored_dir::link_or_no_openat2(e) => {}
            Err(e) => return Err(io::Error::from(e)),
        }
        let file = Opened::open(path, OFlag::O_NOFOLLOW)?;
        if file.metadata()?.file_type().is_symlink() {
            return Ok(Looked::Link(std::fs::read_link(path)?));
        }
        Ok(Looked::Place(Opened::of(file, false)?))
    }

    /// Opened, a link where it leads (most paths are not links: for them the one open without
    /// following is the same file).
    fn follow(self, path: &Path) -> io::Result<Opened> {
        match self {
            Looked::Place(opened) => Ok(opened),
            Looked::Link(_) => Opened::of(Opened::open(path, OFlag::empty())?, false),
        }
    }

    /// The path, or where it leads as the link is written.
    fn place(&self, path: &Path) -> PathBuf {
        match self {
            Looked::Link(target) => path.parent().unwrap_or_else(|| Path::new("/")).join(target),
            Looked::Place(_) => path.to_path_buf(),
        }
    }

    /// A directory, not reached through a link.
    fn is_dir(&self) -> bool {
        matches!(self, Looked::Place(opened) if opened.inode.is_dir())
    }
}

/// The kernel's Landlock ABI, or why there is none.
fn landlock_abi() -> Result<i64, String> {
    // SAFETY: landlock_create_ruleset(2) with no attributes and the VERSION flag only returns
    // the ABI version; it reads no memory.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if abi >= 1 {
        return Ok(abi);
    }
    let e = io::Error::last_os_error();
    Err(match e.raw_os_error() {
        Some(libc::ENOSYS) => {
            format!("this kernel has no Landlock (Linux 5.13 or later, CONFIG_SECURITY_LANDLOCK): {}", e)
        }
        Some(libc::EOPNOTSUPP) => format!(
            "Landlock is built into this kernel but not enabled: add landlock to the lsm= boot parameter: {}",
            e
        ),
        _ => format!("cannot ask the kernel for Landlock: {}", e),
    })
}

/// Whether a rule gives any right to write.
fn writes(rule: &Rule) -> bool {
    rule.access.intersects(AccessFs::from_write(ABI::V3))
}

fn cgroup_files_reason(rule: &Rule, under: &Path) -> String {
    format!(
        "the rule {} would let the workload write the cgroup files under {}, and so leave its group; give it r at \
         most there",
        rule.shown(),
        under.display()
    )
}

/// Where the cgroup hierarchies are mounted on every distribution damon knows.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The device and inode of /sys/fs/cgroup and of each directory above it, up to /: a rule
/// that writes one of them writes the cgroup files beneath.
fn cgroup_root_and_above() -> Vec<(libc::dev_t, libc::ino_t)> {
    Path::new(CGROUP_ROOT)
        .ancestors()
        .filter_map(|dir| nix::sys::stat::stat(dir).ok())
        .map(|st| (st.st_dev, st.st_ino))
        .collect()
}

/// Whether the inode could be a cgroup file system's: a directory or a file on a file system
/// with no block device (major number 0, as cgroup's, tmpfs and proc have). Only those are
/// asked for their file system's type (one `fstatfs` each).
fn could_be_cgroups(inode: &Inode) -> bool {
    libc::major(inode.dev) == 0 && (inode.is_dir() || inode.file_type == libc::S_IFREG)
}

/// Whether `path` is in a cgroup (v1 or v2) file system.
fn in_cgroup_file_system(opened: &File) -> bool {
    use nix::sys::statfs::{fstatfs, CGROUP2_SUPER_MAGIC, CGROUP_SUPER_MAGIC};
    fstatfs(opened).map_or(false, |fs| [CGROUP_SUPER_MAGIC, CGROUP2_SUPER_MAGIC].contains(&fs.filesystem_type()))
}

/// Where cgroup hierarchies are mounted (/proc/self/mountinfo), and /sys/fs/cgroup.
fn cgroup_mount_points() -> Vec<PathBuf> {
    let mut mounts = vec![PathBuf::from(CGROUP_ROOT)];
    let mountinfo = std::fs::read_to_string(mountinfo::PATH).unwrap_or_default();
    for mount in mountinfo.lines().filter_map(Mount::parse) {
        if mount.fs_type == "cgroup" || mount.fs_type == "cgroup2" {
            mounts.push(mount.point);
        }
    }
    mounts
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn rule(mode: &str, path: &str) -> PathRule {
        let access = Access {
            read: mode.contains('r'),
            write: mode.contains('w'),
            execute: mode.contains('x'),
            create: mode.contains('c'),
        };
        PathRule { access, path: PathBuf::from(path) }
    }

    #[test]
    fn a_rule_gets_exec2s_rights_and_never_device_nodes() {
        let dir = landlock_rule(&rule("rwxc", "/tmp"), &[]).unwrap();
        assert!(dir.access.contains(AccessFs::ReadDir | AccessFs::MakeReg | AccessFs::Truncate | AccessFs::Refer));
        assert!(!dir.access.intersects(AccessFs::MakeChar | AccessFs::MakeBlock));
        // A file takes no directory right: the kernel would refuse the rule.
        let file = landlock_rule(&rule("rwxc", "/etc/passwd"), &[]).unwrap();
        assert_eq!(file.access, AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::Truncate | AccessFs::Execute);
        assert_eq!(landlock_rule(&rule("r", "/etc"), &[]).unwrap().access, AccessFs::ReadFile | AccessFs::ReadDir);
    }

    #[test]
    fn a_path_with_no_link_on_the_way_leads_where_it_says_unless_it_climbs() {
        let at = |path: &str| located(Path::new(path));
        assert_eq!(at("/srv/alloc/./task//local/"), Some(PathBuf::from("/srv/alloc/task/local")));
        assert_eq!(at("/"), Some(PathBuf::from("/")));
        // `..` after a directory that is a mount point or was moved is not its parent's path.
        assert_eq!(at("/srv/alloc/../etc"), None);
        assert_eq!(at("srv/alloc"), None);
        // The defaults here: each one that exists is found without a lookup of its name unless
        // a link is on its way (merged /usr's /bin, a resolv.conf kept under /run).
        let defaults = default_rules(Vec::new(), &[]).unwrap();
        for rule in &defaults {
            let real = rule.path.canonicalize().unwrap();
            match &rule.located {
                Some(located) => assert_eq!(located, &real, "{}", rule.shown()),
                None => assert_ne!(rule.path, real, "{} has no link on its way", rule.shown()),
            }
        }
        assert!(defaults.iter().any(|rule| rule.located.is_some()));
    }

    #[test]
    fn a_default_is_looked_at_without_following_a_link_and_opened_where_it_leads() {
        use std::os::unix::fs::MetadataExt;
        let dir = std::env::temp_dir().join(format!("damon-sandbox-looked-{}", std::process::id()));
        let (real, file) = (dir.join("real"), dir.join("real/file"));
        std::fs::create_dir_all(&real).unwrap();
        std::fs::write(&file, "x").unwrap();
        std::os::unix::fs::symlink("real", dir.join("link")).unwrap();
        let inode = |path: &Path| {
            let m = std::fs::metadata(path).unwrap();
            (m.dev() as libc::dev_t, m.ino() as libc::ino_t)
        };
        // A link at the end: read, not opened; its place is where it leads, as written.
        let link = dir.join("link");
        let looked = Looked::at(&link).unwrap();
        assert!(matches!(&looked, Looked::Link(target) if target == Path::new("real")));
        assert_eq!(looked.place(&link), dir.join("real"));
        assert!(!looked.is_dir(), "a link is no directory that covers what lies beneath its path");
        let opened = looked.follow(&link).unwrap();
        assert!(opened.inode.is_dir() && !opened.without_links);
        assert_eq!((opened.inode.dev, opened.inode.ino), inode(&real));
        // A link on the way: opened, not a link itself, but not a path that leads where it says.
        let through = dir.join("link/file");
        match Looked::at(&through).unwrap() {
            Looked::Place(opened) => {
                assert!(!opened.without_links && !opened.inode.is_dir());
                assert_eq!((opened.inode.dev, opened.inode.ino), inode(&file));
                assert_eq!(opened.inode.file_type, libc::S_IFREG);
            }
            Looked::Link(target) => panic!("{} is no link (read {})", through.display(), target.display()),
        }
        // No link at all.
        match Looked::at(&file).unwrap() {
            Looked::Place(opened) => assert!(opened.without_links && !opened.inode.is_dir()),
            Looked::Link(target) => panic!("{} is no link (read {})", file.display(), target.display()),
        }
        let missing = Looked::at(&dir.join("missing")).err().map(|e| e.raw_os_error());
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(missing, Some(Some(libc::ENOENT)));
    }

    #[test]
    fn the_defaults_write_only_the_nomad_directories() {
        // A task directory (NOMAD_TASK_DIR is its local/) with its tmp/ beside.
        let task = std::env::temp_dir().join(format!("damon-sandbox-defaults-{}", std::process::id()));
        let (local, tmp) = (task.join("local"), task.join("tmp"));
        std::fs::create_dir_all(&local).unwrap();
        std::fs::create_dir_all(&tmp).unwrap();
        let rules = default_rules(vec![local.clone(), tmp.clone()], &[]).unwrap();
        std::fs::remove_dir_all(&task).unwrap();
        let writable: Vec<&Path> = rules
            .iter()
            .filter(|r| r.access.intersects(AccessFs::WriteFile | AccessFs::MakeReg))
            .filter(|r| !r.path.starts_with("/dev"))
            .map(|r| r.path.as_path())
            .collect();
        assert_eq!(writable, [local.as_path(), tmp.as_path()]);
        assert!(rules.iter().any(|r| r.path == Path::new("/usr") && r.access.contains(AccessFs::Execute)));
        // On a merged-/usr system /bin is a link into /usr: its rule would add nothing.
        let merged = std::fs::read_link("/bin").map_or(false, |t| t == Path::new("usr/bin"));
        assert_eq!(rules.iter().any(|r| r.path == Path::new("/bin")), !merged, "{:?}", rules);
        // Nor would /etc/resolv.conf's where it is a file of /etc, not a link out of it; and
        // where it does not exist (the VM), it has none.
        let out_of_etc =
            std::fs::canonicalize("/etc/resolv.conf").map_or(false, |file| file.parent() != Some(Path::new("/etc")));
        assert_eq!(rules.iter().any(|r| r.path == Path::new("/etc/resolv.conf")), out_of_etc, "{:?}", rules);
    }

    /// A Nomad directory at or above the cgroup mounts (a misconfigured client, or one whose
    /// variables a job can set) would make the defaults write the cgroup files: refused as an
    /// operator's rule would be.
    #[test]
    fn defaults_over_the_cgroup_mounts_are_refused() {
        for dir in ["/sys/fs/cgroup", "/sys/fs", "/"] {
            let settings = SandboxSettings {
                mode: SandboxMode::On,
                extra_capabilities: None,
                paths: vec![PathEntry::Defaults],
                paths_source: None,
                nomad_dirs: vec![PathBuf::from(dir)],
                task_dir: None,
                stop_tree: false,
                stop_signal: None,
            };
            let e = Sandbox::resolve(&settings, &Identity::unchanged()).unwrap_err().to_string();
            assert!(e.contains("would let the workload write the cgroup files"), "{}: {}", dir, e);
            assert!(e.contains("NOMAD_ALLOC_DIR"), "{}: {}", dir, e);
        }
    }

    #[test]
    fn a_rule_that_reaches_a_cgroup_file_is_refused() {
        for (mode, path) in [("rw", "/sys"), ("rwc", "/"), ("w", "/sys/fs/cgroup"), ("c", "/sys/fs")] {
            let bad = format!("{}:{}", mode, path);
            let settings = SandboxSettings {
                mode: SandboxMode::On,
                extra_capabilities: None,
                paths: vec![PathEntry::Defaults, PathEntry::Rule(rule(mode, path))],
                paths_source: Some("DAMON_SANDBOX_PATHS".to_string()),
                nomad_dirs: Vec::new(),
                task_dir: None,
                stop_tree: false,
                stop_signal: None,
            };
            let e = Sandbox::resolve(&settings, &Identity::unchanged()).unwrap_err().to_string();
            assert!(e.contains("would let the workload write the cgroup files"), "{}: {}", bad, e);
        }
    }
}
