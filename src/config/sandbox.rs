//! The syntax of DAMON_SANDBOX, DAMON_SANDBOX_PATHS and DAMON_SANDBOX_CAPABILITIES.
//!
//! DAMON_SANDBOX is a boolean or `strict`: Y confines the workload as far as the kernel allows
//! and says what it could not; strict refuses to start (125) unless all of it is in force.
//!
//! DAMON_SANDBOX_PATHS holds rules in the syntax of Nomad's exec2 driver (its `unveil` and
//! `unveil_paths`), `MODE:PATH`, where MODE is one or more of r (read), w (write), x (execute)
//! and c (create and remove in a directory): `rx:/usr`, `r:/etc`, `rwc:/data`. exec2 takes a
//! list from HCL; one variable holds them separated by commas or colons (`r:/etc,rx:/usr` and
//! `r:/etc:rx:/usr` are the same two rules), so a path cannot hold either. The word `defaults`
//! stands for the rules damon uses when the variable is unset, so that a task can add to them
//! (`defaults,rx:/opt/app`). Whether a path exists is the caller's to check.

use std::fmt;
use std::path::PathBuf;

use super::values;

/// How far DAMON_SANDBOX confines the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxMode {
    Off,
    /// What the kernel allows; what it does not is logged.
    On,
    /// All of it, or nothing starts.
    Strict,
}

impl fmt::Display for SandboxMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SandboxMode::Off => "N",
            SandboxMode::On => "Y",
            SandboxMode::Strict => "strict",
        })
    }
}

/// What a rule allows beneath its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Access {
    pub read: bool,
    pub write: bool,
    pub execute: bool,
    /// Create and remove entries of a directory (no meaning for a file, as in exec2).
    pub create: bool,
}

impl Access {
    /// A mode as exec2 writes it: some of `r`, `w`, `x` and `c`, in any order.
    pub fn parse(mode: &str) -> Option<Access> {
        let mut access = Access::default();
        for letter in mode.chars() {
            match letter {
                'r' => access.read = true,
                'w' => access.write = true,
                'x' => access.execute = true,
                'c' => access.create = true,
                _ => return None,
            }
        }
        Some(access).filter(|_| !mode.is_empty())
    }

    /// Whether this allows all that `other` does (for the Linux defaults: one inside another).
    #[cfg(target_os = "linux")]
    pub fn includes(self, other: Access) -> bool {
        (self.read || !other.read)
            && (self.write || !other.write)
            && (self.execute || !other.execute)
            && (self.create || !other.create)
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (on, letter) in [(self.read, 'r'), (self.write, 'w'), (self.execute, 'x'), (self.create, 'c')] {
            if on {
                write!(f, "{}", letter)?;
            }
        }
        Ok(())
    }
}

/// One rule: `access` to `path` and everything beneath it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRule {
    pub access: Access,
    pub path: PathBuf,
}

impl fmt::Display for PathRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.access, self.path.display())
    }
}

/// DAMON_SANDBOX and DAMON_SANDBOX_PATHS, read; the platform decides what it can enforce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxSettings {
    pub mode: SandboxMode,
    /// DAMON_SANDBOX_CAPABILITIES: Linux capabilities (a bit per number) the workload keeps
    /// beyond the sandbox's own set, with where they were set; `None` when unset.
    pub extra_capabilities: Option<(u64, String)>,
    /// `[Defaults]` when DAMON_SANDBOX_PATHS is unset. Every path exists (checked when read).
    pub paths: Vec<PathEntry>,
    /// `--sandbox-paths` or `DAMON_SANDBOX_PATHS`, or `None` when unset.
    pub paths_source: Option<String>,
    /// NOMAD_TASK_DIR, NOMAD_ALLOC_DIR and NOMAD_SECRETS_DIR, those set: the defaults make them
    /// writable.
    pub nomad_dirs: Vec<PathBuf>,
    /// NOMAD_TASK_DIR, if set: the defaults make the task's tmp/ beside it writable too.
    pub task_dir: Option<PathBuf>,
    /// DAMON_STOP_SIGNAL_SCOPE=tree (Linux: the sandbox's init then passes no stop on).
    pub stop_tree: bool,
    /// DAMON_STOP_SIGNAL, by number (Linux: with the tree scope, the sandbox's init tells a stop
    /// from a signal to pass on by it).
    pub stop_signal: Option<i32>,
}

impl SandboxSettings {
    /// The directories `defaults` lets the workload write: the Nomad directories, and, as
    /// exec2 does, the task's tmp/ beside its local/ (NOMAD_TASK_DIR).
    pub fn default_writable_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = self.nomad_dirs.clone();
        if let Some(task_root) = self.task_dir.as_ref().and_then(|task| task.parent()) {
            dirs.push(task_root.join("tmp"));
        }
        dirs
    }

    /// Every path the sandbox lets the workload write or create in (none when it is off):
    /// damon, root, follows no link in or below them (its log).
    pub fn writable_dirs(&self) -> Vec<PathBuf> {
        if self.mode == SandboxMode::Off {
            return Vec::new();
        }
        let mut dirs = Vec::new();
        for entry in &self.paths {
            match entry {
                PathEntry::Defaults => dirs.extend(self.default_writable_dirs()),
                PathEntry::Rule(rule) if rule.access.write || rule.access.create => dirs.push(rule.path.clone()),
                PathEntry::Rule(_) => {}
            }
        }
        dirs
    }
}

/// An entry of DAMON_SANDBOX_PATHS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathEntry {
    /// `defaults`: the rules used when the variable is unset.
    Defaults,
    Rule(PathRule),
}

impl fmt::Display for PathEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathEntry::Defaults => f.write_str(DEFAULTS_WORD),
            PathEntry::Rule(rule) => rule.fmt(f),
        }
    }
}

const DEFAULTS_WORD: &str = "defaults";
const SYNTAX: &str = "rules MODE:PATH separated by commas or colons, MODE one or more of r (read), w (write), \
                      x (execute), c (create), PATH absolute, e.g. rx:/usr,r:/etc,rwc:/data; `defaults` for damon's own";

/// Linux's capabilities by number (linux/capability.h), as DAMON_SANDBOX_CAPABILITIES names
/// them: lower case, without CAP_.
pub const CAPABILITY_NAMES: &[&str] = &[
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
];

/// The names of the capabilities in `mask`, as `CAP_NET_RAW,CAP_SYS_PTRACE`.
pub fn capability_names(mask: u64) -> String {
    let names: Vec<String> = (0..CAPABILITY_NAMES.len())
        .filter(|&cap| mask & (1 << cap) != 0)
        .map(|cap| format!("CAP_{}", CAPABILITY_NAMES[cap].to_uppercase()))
        .collect();
    names.join(",")
}

/// DAMON_SANDBOX_CAPABILITIES: capability names separated by commas, with or without `CAP_`,
/// in any case (`NET_RAW`, `cap_sys_ptrace`); a bit per capability's number.
pub fn capabilities(text: &str) -> Result<u64, String> {
    let mut mask = 0u64;
    for item in text.split(',') {
        let name = item.trim().to_ascii_lowercase();
        let name = name.strip_prefix("cap_").unwrap_or(&name);
        let number = CAPABILITY_NAMES.iter().position(|known| *known == name).ok_or_else(|| {
            format!(
                "{:?} is not a Linux capability: names such as NET_RAW or CAP_SYS_PTRACE, separated by commas",
                item
            )
        })?;
        mask |= 1 << number;
    }
    Ok(mask)
}

/// Y, N (the booleans) or `strict`.
pub fn mode(text: &str) -> Result<SandboxMode, String> {
    if text.eq_ignore_ascii_case("strict") {
        return Ok(SandboxMode::Strict);
    }
    match values::boolean(text) {
        Ok(true) => Ok(SandboxMode::On),
        Ok(false) => Ok(SandboxMode::Off),
        Err(e) => Err(format!("Y, N or strict ({})", e)),
    }
}

/// The rules of DAMON_SANDBOX_PATHS, in their order.
pub fn paths(text: &str) -> Result<Vec<PathEntry>, String> {
    let mut entries = Vec::new();
    for item in text.split(',') {
        if item == DEFAULTS_WORD {
            entries.push(PathEntry::Defaults);
            continue;
        }
        if item.is_empty() {
            return Err(format!("an empty rule: {}", SYNTAX));
        }
        let mut tokens = item.split(':');
        while let Some(mode) = tokens.next() {
            let access = Access::parse(mode).ok_or_else(|| format!("{:?} is not a mode: {}", mode, SYNTAX))?;
            let path = match tokens.next() {
                Some(path) if path.starts_with('/') => path,
                Some(path) => return Err(format!("{:?} is not an absolute path: {}", path, SYNTAX)),
                None => return Err(format!("the mode {:?} has no path: {}", mode, SYNTAX)),
            };
            if path.chars().any(char::is_control) {
                return Err(format!("{:?} holds a control character: {}", path, SYNTAX));
            }
            entries.push(PathEntry::Rule(PathRule { access, path: PathBuf::from(path) }));
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(access: &str, path: &str) -> PathEntry {
        PathEntry::Rule(PathRule { access: Access::parse(access).unwrap(), path: PathBuf::from(path) })
    }

    #[test]
    fn capabilities_are_names_with_or_without_cap_in_any_case() {
        assert_eq!(capabilities("NET_RAW"), Ok(1 << 13));
        assert_eq!(capabilities("cap_sys_ptrace, Sys_Nice"), Ok(1 << 19 | 1 << 23));
        assert_eq!(capabilities("CAP_CHECKPOINT_RESTORE"), Ok(1 << 40));
        for bad in ["", "13", "NET RAW", "CAP_", "net_raw,", "all"] {
            assert!(capabilities(bad).is_err(), "{:?}", bad);
        }
        assert_eq!(capability_names(1 << 13 | 1 << 19), "CAP_NET_RAW,CAP_SYS_PTRACE");
    }

    #[test]
    fn modes_are_booleans_or_strict() {
        assert_eq!(mode("Y"), Ok(SandboxMode::On));
        assert_eq!(mode("no"), Ok(SandboxMode::Off));
        assert_eq!(mode("STRICT"), Ok(SandboxMode::Strict));
        assert!(mode("strictly").unwrap_err().starts_with("Y, N or strict"));
    }

    #[test]
    fn rules_are_exec2_unveil_rules_separated_by_commas_or_colons() {
        let expected = vec![rule("rx", "/usr"), rule("r", "/etc"), rule("rwc", "/data")];
        assert_eq!(paths("rx:/usr,r:/etc,rwc:/data"), Ok(expected.clone()));
        assert_eq!(paths("rx:/usr:r:/etc:rwc:/data"), Ok(expected.clone()));
        assert_eq!(paths("rx:/usr:r:/etc,rwc:/data"), Ok(expected));
        assert_eq!(paths("defaults,x:/opt/a b"), Ok(vec![PathEntry::Defaults, rule("x", "/opt/a b")]));
        assert_eq!(paths("crwx:/"), Ok(vec![rule("rwxc", "/")]));
        assert_eq!(rule("cxwr", "/d").to_string(), "rwxc:/d");
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn an_access_includes_what_it_allows() {
        let a = |mode: &str| Access::parse(mode).unwrap();
        assert!(a("rx").includes(a("r")) && a("rx").includes(a("rx")) && a("rwxc").includes(a("wc")));
        assert!(!a("rx").includes(a("rw")) && !a("r").includes(a("rx")) && !a("rwx").includes(a("c")));
    }

    #[test]
    fn malformed_rules_are_refused_saying_why() {
        for (bad, why) in [
            ("/etc", "not a mode"),
            ("r", "has no path"),
            ("r:", "not an absolute path"),
            ("r:etc", "not an absolute path"),
            ("rq:/etc", "not a mode"),
            (":/etc", "not a mode"),
            ("R:/etc", "not a mode"),
            ("r:/etc,", "an empty rule"),
            ("r:/etc,,rx:/usr", "an empty rule"),
            ("r:/etc, rx:/usr", "not a mode"),
            ("r:/a:b", "not a mode"),
            ("r:/a\tb", "control character"),
            ("default", "not a mode"),
        ] {
            let message = paths(bad).unwrap_err();
            assert!(message.contains(why), "{:?}: {}", bad, message);
        }
    }
}
