//! Command line and environment to one validated [`Config`].
//!
//! Every setting is described once, in [`cli::SETTINGS`]: its flag, its `DAMON_*` variable and the
//! Nomad variable it falls back to. The flag wins over the variable, the variable over the
//! Nomad one. Nothing outside this module reads the environment or argv.
//!
//! A malformed value is an error naming where it came from (`--memory-limit` or
//! `DAMON_MEMORY_LIMIT`) and the value; the original Damon silently ignored some of them.
//! Every value is trimmed of surrounding ASCII white space. An empty variable is unset, as
//! in the original (Go's os.Getenv cannot tell them apart): the next source applies. An
//! empty flag (`--memory-limit ""`) is an error. The syntax of each value is in [`values`].

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::ArgMatches;

use crate::logging::LogSettings;

// The settings table (CPU_LIMIT, ...) and the command line built from it.
use cli::*;

mod cli;
#[cfg(test)]
mod fuzz;
mod sandbox;
mod values;

pub use cli::{BUILD_COMMIT, LONG_VERSION, VERSION};
pub use sandbox::{capability_names, PathEntry, SandboxMode, SandboxSettings};
#[cfg(target_os = "linux")]
pub use sandbox::{Access, PathRule};
pub use values::{CpuCores, IoDevice, IpPrefix, ListenAddr, PortRange, UserSpec};

/// Outside Nomad without DAMON_KILL_TIMEOUT: the original Damon's ExitTimeout.
const TERMINAL_KILL_TIMEOUT: Duration = Duration::from_secs(30);
/// Set by Nomad for every task: damon runs under Nomad.
const NOMAD_ALLOC_ID: &str = "NOMAD_ALLOC_ID";
const DEFAULT_LOG_MAX_SIZE_MIB: u64 = 10;
const DEFAULT_LOG_MAX_FILES: usize = 5;
const DEFAULT_LOG_SUFFIX: &str = ".damon.log";
const DEFAULT_METRICS_ENDPOINT: &str = "/metrics";
/// The original refused enforced CPU limits below this.
pub const MIN_ENFORCED_CPU_MHZ: u64 = 100;
const BYTES_PER_MIB: u64 = 1 << 20;

/// Nomad's task identity, which becomes the `nomad_*` field of every log line and metric.
const NOMAD_LABELS: &[(&str, &str)] = &[
    ("nomad_dc", "NOMAD_DC"),
    ("nomad_region", "NOMAD_REGION"),
    ("nomad_job_name", "NOMAD_JOB_NAME"),
    ("nomad_group_name", "NOMAD_GROUP_NAME"),
    ("nomad_task_name", "NOMAD_TASK_NAME"),
    ("nomad_alloc_id", "NOMAD_ALLOC_ID"),
    ("nomad_alloc_index", "NOMAD_ALLOC_INDEX"),
];

/// What the user asked damon to do.
#[derive(Debug)]
pub enum Invocation {
    /// `damon` with no arguments: print the version, as the original did.
    Version,
    /// `damon --check`: report what this host offers and the effective configuration.
    Check(Config),
    Run(Config),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryLimit {
    /// The hard limit: an allocation beyond it fails or is OOM-killed.
    pub max_mib: u64,
    /// Reclaim pressure starts here (Nomad's memory oversubscription).
    pub soft_mib: Option<u64>,
}

/// The parser keeps MiB x 2^20 within 64 bits; saturating keeps any other limit from wrapping.
impl MemoryLimit {
    pub fn max_bytes(&self) -> u64 {
        self.max_mib.saturating_mul(BYTES_PER_MIB)
    }
    pub fn soft_bytes(&self) -> Option<u64> {
        self.soft_mib.map(|mib| mib.saturating_mul(BYTES_PER_MIB))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuLimit {
    pub mhz: u64,
}

/// The cores the workload is pinned to (DAMON_CPU_CORES, NOMAD_CPU_CORES), and where they
/// came from: whether the host has them is known only when damon starts, and an error found
/// then names the flag or variable, as a syntax error does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cores {
    pub cores: CpuCores,
    /// `--cpu-cores`, `DAMON_CPU_CORES` or `NOMAD_CPU_CORES`.
    pub source: String,
}

/// The limits asked for, and whether each one is enforced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    pub memory: Option<MemoryLimit>,
    pub enforce_memory: bool,
    pub cpu: Option<CpuLimit>,
    pub enforce_cpu: bool,
    pub process_limit: Option<u64>,
    /// Always enforced: a pin is asked for by naming the cores.
    pub cores: Option<Cores>,
    /// Always enforced, where any is set.
    pub io: IoLimits,
    /// DAMON_NET_MAX_BANDWIDTH: Windows only.
    pub net_max_bytes_per_second: Option<u64>,
    /// DAMON_NETWORK_ACCOUNTING: count the workload's traffic where the host can (Linux).
    pub network_accounting: bool,
    /// DAMON_IP_ALLOW and DAMON_IP_DENY: Linux only.
    pub ip: IpRules,
    /// DAMON_BIND_PORTS, `nomad` resolved to the task's ports: the only ports the workload may
    /// bind (Linux only); `None`: any.
    pub bind_ports: Option<Vec<PortRange>>,
}

/// Which addresses the workload may exchange packets with (DAMON_IP_ALLOW, DAMON_IP_DENY), as
/// systemd's IPAddressAllow= and IPAddressDeny=: a packet to or from an allowed address passes,
/// else one to or from a denied address is dropped, else it passes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpRules {
    pub allow: Vec<IpPrefix>,
    pub deny: Vec<IpPrefix>,
}

impl IpRules {
    pub fn any(&self) -> bool {
        !self.allow.is_empty() || !self.deny.is_empty()
    }
}

/// DAMON_IO_*: the most each device of `devices` may serve the workload per second; None is
/// no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IoLimits {
    pub read_bytes_per_second: Option<u64>,
    pub write_bytes_per_second: Option<u64>,
    pub read_iops: Option<u64>,
    pub write_iops: Option<u64>,
    /// DAMON_IO_DEVICES as written, and where it came from; None: the disks of the task's
    /// directories (`dirs`).
    pub devices: Option<(Vec<IoDevice>, String)>,
    /// NOMAD_ALLOC_DIR and NOMAD_TASK_DIR, else the working directory: where the default
    /// devices are looked for.
    pub dirs: Vec<PathBuf>,
}

impl IoLimits {
    pub fn any(&self) -> bool {
        self.read_bytes_per_second.is_some()
            || self.write_bytes_per_second.is_some()
            || self.read_iops.is_some()
            || self.write_iops.is_some()
    }
}

impl Limits {
    pub fn enforced_memory(&self) -> Option<&MemoryLimit> {
        self.memory.as_ref().filter(|_| self.enforce_memory)
    }
    pub fn enforced_cpu(&self) -> Option<CpuLimit> {
        self.cpu.filter(|_| self.enforce_cpu)
    }
    /// Whether a container is optional: nothing would be enforced by it.
    pub fn container_optional(&self) -> bool {
        !self.enforce_memory
            && !self.enforce_cpu
            && self.process_limit.is_none()
            && self.cores.is_none()
            && !self.io.any()
            && self.net_max_bytes_per_second.is_none()
            && !self.ip.any()
            && self.bind_ports.is_none()
    }
}

/// When a stop the child does not obey ends in a kill of the whole tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillTimeout {
    /// DAMON_KILL_TIMEOUT: damon kills the tree itself this long after the stop signal.
    Set(Duration),
    /// Under Nomad without DAMON_KILL_TIMEOUT: none of damon's own. Nomad does not tell a task
    /// its kill_timeout, so any figure of damon's could cut the job's short; damon waits for the
    /// child, and Nomad's SIGKILL at the job's kill_timeout ends damon, whose guard ends the tree.
    Nomad,
    /// Outside Nomad without DAMON_KILL_TIMEOUT: this long (the original's 30 s), and a second
    /// stop signal kills the tree at once, as a person at a terminal expects of a second Ctrl+C.
    Terminal(Duration),
}

impl KillTimeout {
    /// How long after the stop signal damon kills the tree itself; `None`: never.
    pub fn after_stop(self) -> Option<Duration> {
        match self {
            KillTimeout::Set(timeout) | KillTimeout::Terminal(timeout) => Some(timeout),
            KillTimeout::Nomad => None,
        }
    }

    /// Whether a second stop signal kills the tree at once (otherwise it is passed on again).
    pub fn second_stop_kills(self) -> bool {
        matches!(self, KillTimeout::Terminal(_))
    }
}

impl fmt::Display for KillTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KillTimeout::Set(timeout) => write!(f, "{}", humantime::format_duration(*timeout)),
            KillTimeout::Nomad => f.write_str("none (under Nomad: the job's kill_timeout ends the stop)"),
            KillTimeout::Terminal(timeout) => {
                write!(f, "{} (a second stop signal kills at once)", humantime::format_duration(*timeout))
            }
        }
    }
}

/// Which processes a stop signal reaches (DAMON_STOP_SIGNAL_SCOPE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopScope {
    /// The child alone: the original's and Nomad's behaviour.
    Child,
    /// Every process of the workload, once each.
    Tree,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    pub addr: ListenAddr,
    pub endpoint: String,
}

#[derive(Debug)]
pub struct Config {
    /// The program and its arguments; never empty.
    pub command: Vec<OsString>,
    pub limits: Limits,
    pub kill_timeout: KillTimeout,
    pub stop_scope: StopScope,
    /// The signal passed on in place of the one damon received (DAMON_STOP_SIGNAL), by the
    /// platform's number; `None`: the one received (Windows: Ctrl+Break, always).
    pub stop_signal: Option<i32>,
    /// Path inside the cgroup hierarchy (`/` is its root), when the user chose one.
    pub cgroup_parent: Option<PathBuf>,
    pub restricted_token: bool,
    /// The user the child runs as (DAMON_USER), as written; the platform resolves it.
    pub user: Option<UserSetting>,
    pub metrics: Option<MetricsConfig>,
    pub log: LogSettings,
    pub sandbox: SandboxSettings,
    /// NOMAD_ALLOC_ID and NOMAD_TASK_NAME, used to name the container.
    pub alloc_id: Option<String>,
    pub task_name: Option<String>,
}

impl Config {
    /// The effective settings as `name = value` lines, for `--check` and the start-up log.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        let limits = &self.limits;
        let opt = |v: Option<u64>| v.map_or_else(|| "none".to_string(), |v| v.to_string());
        vec![
            (CPU_LIMIT.var, opt(limits.cpu.map(|c| c.mhz))),
            (ENFORCE_CPU_LIMIT.var, yes_no(limits.enforce_cpu)),
            (
                CPU_CORES.var,
                limits.cores.as_ref().map_or_else(
                    || "(unset: every core damon may use)".to_string(),
                    |c| format!("{} (from {})", c.cores, c.source),
                ),
            ),
            (MEMORY_LIMIT.var, opt(limits.memory.as_ref().map(|m| m.soft_mib.unwrap_or(m.max_mib)))),
            (MEMORY_MAX_LIMIT.var, opt(limits.memory.as_ref().map(|m| m.max_mib))),
            (ENFORCE_MEMORY_LIMIT.var, yes_no(limits.enforce_memory)),
            (PROCESS_LIMIT.var, opt(limits.process_limit)),
            (IO_READ_BANDWIDTH.var, bandwidth(limits.io.read_bytes_per_second)),
            (IO_WRITE_BANDWIDTH.var, bandwidth(limits.io.write_bytes_per_second)),
            (IO_READ_IOPS.var, opt(limits.io.read_iops)),
            (IO_WRITE_IOPS.var, opt(limits.io.write_iops)),
            (NET_MAX_BANDWIDTH.var, bandwidth(limits.net_max_bytes_per_second)),
            (NETWORK_ACCOUNTING.var, yes_no(limits.network_accounting)),
            (IP_ALLOW.var, prefixes(&limits.ip.allow)),
            (IP_DENY.var, prefixes(&limits.ip.deny)),
            (
                BIND_PORTS.var,
                limits.bind_ports.as_ref().map_or_else(
                    || "any".to_string(),
                    |ports| {
                        let shown: Vec<String> = ports.iter().map(ToString::to_string).collect();
                        format!("only {}", if shown.is_empty() { "port 0".to_string() } else { shown.join(",") })
                    },
                ),
            ),
            (
                IO_DEVICES.var,
                match &limits.io.devices {
                    Some((devices, source)) => format!(
                        "{} (from {})",
                        devices.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
                        source
                    ),
                    None => format!(
                        "(unset: the disks of {})",
                        limits.io.dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
                    ),
                },
            ),
            (KILL_TIMEOUT.var, self.kill_timeout.to_string()),
            (
                STOP_SIGNAL_SCOPE.var,
                match self.stop_scope {
                    StopScope::Child => "child".to_string(),
                    StopScope::Tree => "tree (every process of the workload)".to_string(),
                },
            ),
            (
                CGROUP_PARENT.var,
                self.cgroup_parent
                    .as_ref()
                    .map_or_else(|| "(damon's own cgroup)".to_string(), |p| p.display().to_string()),
            ),
            (RESTRICTED_TOKEN.var, yes_no(self.restricted_token)),
            (USER.var, self.user.as_ref().map_or_else(|| "(unset)".to_string(), |u| u.spec.to_string())),
            (ADDR.var, self.metrics.as_ref().map_or_else(|| "none".to_string(), |m| m.addr.to_string())),
            (
                METRICS_ENDPOINT.var,
                self.metrics.as_ref().map_or_else(|| DEFAULT_METRICS_ENDPOINT.to_string(), |m| m.endpoint.clone()),
            ),
            (SANDBOX.var, self.sandbox.mode.to_string()),
            (SANDBOX_PATHS.var, self.sandbox.paths.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")),
            (
                SANDBOX_CAPABILITIES.var,
                self.sandbox
                    .extra_capabilities
                    .as_ref()
                    .map_or_else(|| "none".to_string(), |(mask, _)| sandbox::capability_names(*mask)),
            ),
            ("log file", self.log.path.display().to_string()),
            (LOG_MAX_SIZE.var, format!("{} MiB", self.log.max_size_bytes / BYTES_PER_MIB)),
            (LOG_MAX_FILES.var, self.log.max_files.to_string()),
        ]
    }
}

/// `10485760 (10 MiB/s)`, or none.
fn prefixes(list: &[IpPrefix]) -> String {
    if list.is_empty() {
        return "none".to_string();
    }
    list.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
}

fn bandwidth(limit: Option<u64>) -> String {
    match limit {
        None => "none".to_string(),
        Some(bytes) => format!("{} bytes/s ({:.1} MiB/s)", bytes, bytes as f64 / BYTES_PER_MIB as f64),
    }
}

fn yes_no(b: bool) -> String {
    if b { "Y" } else { "N" }.to_string()
}

/// DAMON_USER and where it came from: the user database is read only when damon starts the
/// child, and an error found then names the flag or variable, as a syntax error does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSetting {
    pub spec: UserSpec,
    /// `--user` or `DAMON_USER`.
    pub source: String,
}

/// A configuration error: exit 125, nothing started.
#[derive(Debug)]
pub enum ConfigError {
    /// A usage error, or `--help`/`--version`, as clap renders it.
    Usage(clap::Error),
    Invalid {
        /// The flag (`--memory-limit`) or variable (`DAMON_MEMORY_LIMIT`) the value came from.
        source: String,
        value: String,
        expected: String,
    },
    /// An invalid value, with the log to report it in.
    InvalidLogged(Box<ConfigError>, LogSettings),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Usage(e) => write!(f, "{}", e.to_string().trim_end()),
            ConfigError::Invalid { source, value, expected } => {
                write!(f, "invalid value {} for {}: {}", quoted(value), source, expected)
            }
            ConfigError::InvalidLogged(error, _) => error.fmt(f),
        }
    }
}

impl std::error::Error for ConfigError {}

/// A value as the error shows it: quoted, control characters escaped (the message stays one
/// line), and a very long value cut short.
fn quoted(value: &str) -> String {
    const SHOWN_CHARS: usize = 100;
    match value.char_indices().nth(SHOWN_CHARS) {
        None => format!("{:?}", value),
        Some((cut, _)) => format!("{:?}... ({} bytes in all)", &value[..cut], value.len()),
    }
}

/// A raw value and where it came from.
struct Raw {
    /// Trimmed of surrounding white space; never empty.
    value: String,
    /// The flag (`--memory-limit`) or variable (`DAMON_MEMORY_LIMIT`).
    source: String,
}

impl Raw {
    fn invalid(&self, expected: impl Into<String>) -> ConfigError {
        ConfigError::Invalid { source: self.source.clone(), value: self.value.clone(), expected: expected.into() }
    }

    /// Reads the value with one of the [`values`] parsers.
    fn parse<T>(&self, parser: impl Fn(&str) -> Result<T, String>) -> Result<T, ConfigError> {
        parser(&self.value).map_err(|expected| self.invalid(expected))
    }
}

/// Surrounding white space is a slip of quoting (or a template's newline); inside a value it
/// is refused by each parser.
fn trimmed(value: &str) -> &str {
    value.trim_matches(|c: char| c.is_ascii_whitespace())
}

/// The environment damon runs in, injectable for tests: its variables (main.rs answers for the
/// real one).
pub trait Environment {
    fn var_os(&self, name: &str) -> Option<OsString>;

    /// The names of every variable (those that are text).
    fn names(&self) -> Vec<String>;

    /// A variable that is set and not empty, lossily as text (for names and labels).
    fn var(&self, name: &str) -> Option<String> {
        self.var_os(name).map(|v| v.to_string_lossy().into_owned()).filter(|v| !v.is_empty())
    }
}

/// Where settings come from: the parsed flags, then the environment.
struct Sources<'a> {
    /// `None` when the command line has no flag of damon's (see [`command_stands_alone`]).
    matches: Option<&'a ArgMatches>,
    env: &'a dyn Environment,
}

impl Sources<'_> {
    /// The value of a setting and its source: the flag, else the first of its variables that
    /// is set and not empty. Refuses a value that is not text, and an empty flag.
    fn find(&self, s: &Setting) -> Result<Option<Raw>, ConfigError> {
        let text = |value: &OsStr, source: String| match value.to_str() {
            Some(text) => Ok(Raw { value: trimmed(text).to_string(), source }),
            None => Err(ConfigError::Invalid {
                source,
                value: value.to_string_lossy().into_owned(),
                expected: "text (the value is not valid UTF-8)".to_string(),
            }),
        };
        if let Some(value) = self.matches.and_then(|m| m.get_one::<OsString>(s.flag)) {
            let raw = text(value, format!("--{}", s.flag))?;
            if raw.value.is_empty() {
                return Err(raw.invalid(format!("a value (leave --{} out for the default)", s.flag)));
            }
            return Ok(Some(raw));
        }
        for var in [Some(s.var), s.nomad_var].iter().flatten() {
            if let Some(value) = self.env.var_os(var) {
                let raw = text(&value, var.to_string())?;
                if !raw.value.is_empty() {
                    return Ok(Some(raw));
                }
            }
        }
        Ok(None)
    }
}

/// Whether damon's own command line has no flag: the first argument does not start with `-`,
/// so the parser would take it and everything after it as the command (trailing, as after
/// `--`). Nomad's raw_exec runs `damon COMMAND ARGS...` with the settings in the environment,
/// and building the parser's table of some forty flags with their help was a seventh of a
/// launch's instructions (callgrind: 83k).
fn command_stands_alone(args: &[OsString]) -> bool {
    match args.get(1).map(|first| first.to_str()) {
        Some(Some(first)) => !first.starts_with('-'),
        // Not text: the parser decides (and refuses it if it is a flag).
        Some(None) | None => false,
    }
}

/// Parses arguments (including the program name) and the environment.
pub fn parse(args: Vec<OsString>, env: &dyn Environment) -> Result<Invocation, ConfigError> {
    if args.len() <= 1 {
        return Ok(Invocation::Version);
    }
    let matches = if command_stands_alone(&args) {
        None
    } else {
        Some(cli().try_get_matches_from(&args).map_err(ConfigError::Usage)?)
    };
    let sources = Sources { matches: matches.as_ref(), env };
    // What holds for every setting (text, a flag not empty) is checked for all of them first,
    // so that below a value is only read.
    let mut invalid = None;
    for s in SETTINGS {
        if let Err(e) = sources.find(s) {
            invalid = invalid.or(Some(e));
        }
    }
    let lookup = |s: &Setting| -> Option<Raw> { sources.find(s).ok().flatten() };
    let (command, check): (Vec<OsString>, bool) = match &matches {
        Some(matches) => (
            matches.get_many::<OsString>(COMMAND_ARG).map(|v| v.cloned().collect()).unwrap_or_default(),
            matches.get_flag(CHECK_FLAG),
        ),
        None => (args.into_iter().skip(1).collect(), false),
    };
    if command.is_empty() && !check {
        return Err(ConfigError::Usage(
            cli().error(clap::error::ErrorKind::MissingRequiredArgument, "a COMMAND to run is required"),
        ));
    }
    let config = match invalid {
        Some(e) => Err(e),
        None => build(command, &lookup, env),
    }
    .map_err(|e| ConfigError::InvalidLogged(Box::new(e), LogValues::read(&lookup).or_defaults(env)))?;
    Ok(if check { Invocation::Check(config) } else { Invocation::Run(config) })
}

fn build(
    command: Vec<OsString>,
    lookup: &dyn Fn(&Setting) -> Option<Raw>,
    env: &dyn Environment,
) -> Result<Config, ConfigError> {
    let bool_or = |s: &Setting, default: bool| read(lookup, s, values::boolean).map(|b| b.unwrap_or(default));

    let enforce_cpu = bool_or(&ENFORCE_CPU_LIMIT, true)?;
    let cpu = match lookup(&CPU_LIMIT) {
        None => None,
        Some(raw) => match raw.parse(values::cpu_mhz)? {
            0 => None,
            mhz if enforce_cpu && mhz < MIN_ENFORCED_CPU_MHZ => {
                return Err(raw.invalid(format!(
                    "an enforced CPU limit must be at least {} MHz (or set {}=N)",
                    MIN_ENFORCED_CPU_MHZ, ENFORCE_CPU_LIMIT.var
                )))
            }
            mhz => Some(CpuLimit { mhz }),
        },
    };

    let limit_mib = read(lookup, &MEMORY_LIMIT, values::memory_mib)?.filter(|&m| m > 0);
    let max_limit = read(lookup, &MEMORY_MAX_LIMIT, values::memory_max_mib)?;
    let memory = match (limit_mib, max_limit) {
        // Nomad 2.0's memory_max = -1: no hard limit at all (Nomad writes memory.max "max").
        (_, Some(values::MemoryMax::Unlimited)) => None,
        (Some(limit), Some(values::MemoryMax::Mib(max))) if max > limit => {
            Some(MemoryLimit { max_mib: max, soft_mib: Some(limit) })
        }
        (Some(limit), _) => Some(MemoryLimit { max_mib: limit, soft_mib: None }),
        (None, Some(values::MemoryMax::Mib(max))) if max > 0 => Some(MemoryLimit { max_mib: max, soft_mib: None }),
        (None, _) => None,
    };

    let process_limit = read(lookup, &PROCESS_LIMIT, values::process_limit)?;
    let cores = lookup(&CPU_CORES)
        .map(|raw| raw.parse(values::cpu_cores).map(|cores| Cores { cores, source: raw.source.clone() }))
        .transpose()?;
    let io = io_limits(lookup, env)?;
    let kill_timeout = match read(lookup, &KILL_TIMEOUT, values::kill_timeout)? {
        Some(timeout) => KillTimeout::Set(timeout),
        None if env.var(NOMAD_ALLOC_ID).is_some() => KillTimeout::Nomad,
        None => KillTimeout::Terminal(TERMINAL_KILL_TIMEOUT),
    };
    let stop_scope =
        lookup(&STOP_SIGNAL_SCOPE).map(|raw| raw.parse(values::stop_scope)).transpose()?.unwrap_or(StopScope::Child);
    let stop_signal = read(lookup, &STOP_SIGNAL, values::stop_signal)?.flatten().or(values::DEFAULT_STOP_SIGNAL);
    let cgroup_parent = read(lookup, &CGROUP_PARENT, values::cgroup_path)?;

    // The endpoint is checked even without an address: a bad value never passes silently.
    let endpoint = read(lookup, &METRICS_ENDPOINT, values::endpoint)?;
    let metrics = read(lookup, &ADDR, values::listen_addr)?
        .map(|addr| MetricsConfig { addr, endpoint: endpoint.unwrap_or_else(|| DEFAULT_METRICS_ENDPOINT.to_string()) });

    let mut log = LogValues::read(lookup).settings(env)?;
    let mut sandbox = sandbox_settings(lookup, env)?;
    sandbox.stop_tree = stop_scope == StopScope::Tree;
    sandbox.stop_signal = stop_signal;
    log.workload_dirs = sandbox.writable_dirs();

    Ok(Config {
        command,
        limits: Limits {
            memory,
            enforce_memory: bool_or(&ENFORCE_MEMORY_LIMIT, true)?,
            cpu,
            enforce_cpu,
            process_limit,
            cores,
            io,
            net_max_bytes_per_second: read(lookup, &NET_MAX_BANDWIDTH, values::bytes_per_second)?.filter(|n| *n > 0),
            network_accounting: bool_or(&NETWORK_ACCOUNTING, true)?,
            ip: IpRules {
                allow: read(lookup, &IP_ALLOW, values::ip_prefixes)?.unwrap_or_default(),
                deny: read(lookup, &IP_DENY, values::ip_prefixes)?.unwrap_or_default(),
            },
            bind_ports: bind_ports(lookup, env)?,
        },
        kill_timeout,
        stop_scope,
        stop_signal,
        cgroup_parent,
        restricted_token: bool_or(&RESTRICTED_TOKEN, false)?,
        user: lookup(&USER)
            .map(|raw| raw.parse(values::user).map(|spec| UserSetting { spec, source: raw.source.clone() }))
            .transpose()?,
        metrics,
        log,
        sandbox,
        alloc_id: env.var(NOMAD_ALLOC_ID),
        task_name: env.var("NOMAD_TASK_NAME"),
    })
}

/// DAMON_BIND_PORTS, with `nomad` read from the task's NOMAD_PORT_<label> variables (each a
/// port; one that is not is an error naming it).
fn bind_ports(
    lookup: &dyn Fn(&Setting) -> Option<Raw>,
    env: &dyn Environment,
) -> Result<Option<Vec<PortRange>>, ConfigError> {
    let spec = match read(lookup, &BIND_PORTS, values::bind_ports)? {
        Some(spec) => spec,
        None => return Ok(None),
    };
    let mut ranges = spec.ranges;
    if spec.nomad {
        let mut names: Vec<String> = env.names().into_iter().filter(|n| n.starts_with(NOMAD_PORT_PREFIX)).collect();
        names.sort();
        for name in names {
            let value = env.var(&name).unwrap_or_default();
            let raw = Raw { value: trimmed(&value).to_string(), source: name };
            let port = raw.parse(values::port)?;
            ranges.push(PortRange { first: port, last: port });
        }
    }
    ranges.sort_by_key(|r| (r.first, r.last));
    ranges.dedup();
    Ok(Some(ranges))
}

/// Nomad's variable of each port it allocates to a task: NOMAD_PORT_<label>=<port>.
const NOMAD_PORT_PREFIX: &str = "NOMAD_PORT_";

/// DAMON_IO_*. A limit of 0 is none; the devices are read (and a path must exist) even
/// without a limit, so that a bad value never passes silently.
fn io_limits(lookup: &dyn Fn(&Setting) -> Option<Raw>, env: &dyn Environment) -> Result<IoLimits, ConfigError> {
    let nonzero = |v: Option<u64>| v.filter(|n| *n > 0);
    let devices = match lookup(&IO_DEVICES) {
        None => None,
        Some(raw) => {
            let devices = raw.parse(values::io_devices)?;
            for device in &devices {
                if let IoDevice::Path(path) = device {
                    if let Err(e) = std::fs::metadata(path) {
                        return Err(raw.invalid(format!("{}: {}", path.display(), e)));
                    }
                }
            }
            Some((devices, raw.source))
        }
    };
    let mut dirs: Vec<PathBuf> =
        ["NOMAD_ALLOC_DIR", "NOMAD_TASK_DIR"].iter().filter_map(|v| env.var(v)).map(PathBuf::from).collect();
    if dirs.is_empty() {
        dirs.push(std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")));
    }
    Ok(IoLimits {
        read_bytes_per_second: nonzero(read(lookup, &IO_READ_BANDWIDTH, values::bytes_per_second)?),
        write_bytes_per_second: nonzero(read(lookup, &IO_WRITE_BANDWIDTH, values::bytes_per_second)?),
        read_iops: nonzero(read(lookup, &IO_READ_IOPS, values::iops)?),
        write_iops: nonzero(read(lookup, &IO_WRITE_IOPS, values::iops)?),
        devices,
        dirs,
    })
}

/// DAMON_SANDBOX and its paths. The paths are read even with the sandbox off, so that a bad
/// value never passes silently; each must exist.
fn sandbox_settings(
    lookup: &dyn Fn(&Setting) -> Option<Raw>,
    env: &dyn Environment,
) -> Result<SandboxSettings, ConfigError> {
    let mode = read(lookup, &SANDBOX, sandbox::mode)?.unwrap_or(SandboxMode::Off);
    let (paths, paths_source) = match lookup(&SANDBOX_PATHS) {
        None => (vec![PathEntry::Defaults], None),
        Some(raw) => {
            let paths = raw.parse(sandbox::paths)?;
            for entry in &paths {
                if let PathEntry::Rule(rule) = entry {
                    if let Err(e) = std::fs::metadata(&rule.path) {
                        return Err(raw.invalid(format!(
                            "{}: {} (every path of a rule must exist)",
                            rule.path.display(),
                            e
                        )));
                    }
                }
            }
            (paths, Some(raw.source))
        }
    };
    let nomad_dirs = ["NOMAD_TASK_DIR", "NOMAD_ALLOC_DIR", "NOMAD_SECRETS_DIR"]
        .iter()
        .filter_map(|v| env.var(v))
        .map(PathBuf::from)
        .collect();
    let task_dir = env.var("NOMAD_TASK_DIR").map(PathBuf::from);
    let extra_capabilities = match lookup(&SANDBOX_CAPABILITIES) {
        Some(raw) => Some((raw.parse(sandbox::capabilities)?, raw.source)),
        None => None,
    };
    Ok(SandboxSettings {
        mode,
        extra_capabilities,
        paths,
        paths_source,
        nomad_dirs,
        task_dir,
        stop_tree: false,
        stop_signal: None,
    })
}

/// A setting's value read with one of the [`values`] parsers, if it is set.
fn read<T>(
    lookup: &dyn Fn(&Setting) -> Option<Raw>,
    s: &Setting,
    parser: fn(&str) -> Result<T, String>,
) -> Result<Option<T>, ConfigError> {
    lookup(s).map(|r| r.parse(parser)).transpose()
}

/// The log's settings, each read on its own: a configuration error is reported in the log
/// its valid settings describe.
struct LogValues {
    dir: Result<Option<PathBuf>, ConfigError>,
    name: Result<Option<String>, ConfigError>,
    suffix: Result<Option<String>, ConfigError>,
    max_size_mib: Result<Option<u64>, ConfigError>,
    max_files: Result<Option<usize>, ConfigError>,
}

impl LogValues {
    fn read(lookup: &dyn Fn(&Setting) -> Option<Raw>) -> LogValues {
        LogValues {
            dir: read(lookup, &LOG_DIR, values::log_dir),
            name: read(lookup, &LOG_NAME, values::log_name),
            suffix: read(lookup, &NOMAD_LOG_SUFFIX, values::log_suffix),
            max_size_mib: read(lookup, &LOG_MAX_SIZE, values::log_size_mib),
            max_files: read(lookup, &LOG_MAX_FILES, values::log_files),
        }
    }

    /// The settings, or the first invalid value.
    fn settings(self, env: &dyn Environment) -> Result<LogSettings, ConfigError> {
        Ok(log_settings(self.dir?, self.name?, self.suffix?, self.max_size_mib?, self.max_files?, env))
    }

    /// The settings, with the default in place of each invalid value.
    fn or_defaults(self, env: &dyn Environment) -> LogSettings {
        log_settings(
            self.dir.unwrap_or(None),
            self.name.unwrap_or(None),
            self.suffix.unwrap_or(None),
            self.max_size_mib.unwrap_or(None),
            self.max_files.unwrap_or(None),
            env,
        )
    }
}

/// Where and how damon logs: the original's placement rules.
fn log_settings(
    dir: Option<PathBuf>,
    name: Option<String>,
    suffix: Option<String>,
    max_size_mib: Option<u64>,
    max_files: Option<usize>,
    env: &dyn Environment,
) -> LogSettings {
    let dir = dir.unwrap_or_else(|| match env.var("NOMAD_ALLOC_DIR") {
        Some(alloc) => Path::new(&alloc).join("logs"),
        None => std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
    });
    let name = name.unwrap_or_else(|| match env.var("NOMAD_TASK_NAME") {
        Some(task) => format!("{}{}", task, suffix.as_deref().unwrap_or(DEFAULT_LOG_SUFFIX)),
        None => "damon.log".to_string(),
    });
    let labels = NOMAD_LABELS.iter().filter_map(|(label, var)| env.var(var).map(|v| (*label, v))).collect();
    LogSettings {
        path: dir.join(name),
        // The parser keeps the size within 64 bits in bytes.
        max_size_bytes: max_size_mib.unwrap_or(DEFAULT_LOG_MAX_SIZE_MIB).saturating_mul(BYTES_PER_MIB),
        max_files: max_files.unwrap_or(DEFAULT_LOG_MAX_FILES),
        labels,
        // Filled in once the sandbox's settings are read.
        workload_dirs: Vec::new(),
    }
}

/// The bad values the tests of the real binary try, shared with the unit tests below.
#[cfg(test)]
#[path = "../tests/common/bad_values.rs"]
mod shared_bad_values;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// An environment for a test: the variables given, nothing else.
    pub(super) struct FakeEnv(pub(super) HashMap<String, OsString>);
    impl Environment for FakeEnv {
        fn var_os(&self, name: &str) -> Option<OsString> {
            self.0.get(name).cloned()
        }
        fn names(&self) -> Vec<String> {
            self.0.keys().cloned().collect()
        }
    }

    /// damon's argv for a command line: its name, then `line`.
    fn argv(line: &[&str]) -> Vec<OsString> {
        std::iter::once("damon").chain(line.iter().copied()).map(OsString::from).collect()
    }

    fn parse_with(args: &[&str], env: &[(&str, &str)]) -> Result<Invocation, ConfigError> {
        parse(argv(args), &FakeEnv(env.iter().map(|(k, v)| (k.to_string(), OsString::from(v))).collect()))
    }

    /// The parser is skipped where the first argument is not a flag; what it would have made of
    /// such a command line is what damon takes: the whole of it as the command, no setting from a
    /// flag, no --check. Checked against the parser itself, so that a change of its rules shows.
    #[test]
    fn a_command_line_without_flags_is_the_command_as_the_parser_takes_it() {
        let lines: [&[&str]; 7] = [
            &["/bin/true"],
            &["sh", "-c", "exit 3"],
            &["prog", "--memory-limit", "5", "--check"],
            &["prog", "--", "-x"],
            &["help"],
            &["version", "--help"],
            &[""],
        ];
        for line in lines {
            let args = argv(line);
            assert!(command_stands_alone(&args), "{:?}", line);
            let matches = cli().try_get_matches_from(&args).unwrap();
            let parsed: Vec<OsString> = matches.get_many::<OsString>(COMMAND_ARG).unwrap().cloned().collect();
            assert_eq!(parsed, args[1..], "{:?}", line);
            assert!(!matches.get_flag(CHECK_FLAG), "{:?}", line);
            assert!(SETTINGS.iter().all(|s| matches.get_one::<OsString>(s.flag).is_none()), "{:?}", line);
            let c = config(line, &[("DAMON_MEMORY_LIMIT", "64")]);
            assert_eq!(c.command, args[1..], "{:?}", line);
            assert_eq!(c.limits.memory.as_ref().map(|m| m.max_mib), Some(64), "{:?}", line);
        }
        for line in [&["--check"][..], &["--memory-limit", "5", "prog"], &["-", "x"], &["--", "prog"]] {
            let args = argv(line);
            assert!(!command_stands_alone(&args), "{:?}", line);
        }
        let flagged = config(&["--memory-limit", "5", "prog"], &[("DAMON_MEMORY_LIMIT", "64")]);
        assert_eq!(flagged.limits.memory.map(|m| m.max_mib), Some(5));
    }

    fn config(args: &[&str], env: &[(&str, &str)]) -> Config {
        match parse_with(args, env) {
            Ok(Invocation::Run(c)) | Ok(Invocation::Check(c)) => c,
            other => panic!("expected a config, got {:?}", other),
        }
    }

    fn error(args: &[&str], env: &[(&str, &str)]) -> String {
        match parse_with(args, env) {
            Err(e) => e.to_string(),
            Ok(other) => panic!("expected an error, got {:?}", other),
        }
    }

    #[test]
    fn no_arguments_prints_the_version() {
        assert!(matches!(parse_with(&[], &[]), Ok(Invocation::Version)));
    }

    #[test]
    fn command_arguments_that_look_like_options_are_untouched() {
        let c = config(&["ls", "-la", "--memory-limit", "5"], &[]);
        assert_eq!(c.command, ["ls", "-la", "--memory-limit", "5"]);
        assert_eq!(c.limits.memory, None);
    }

    #[test]
    fn option_wins_over_variable_which_wins_over_nomad() {
        let env = [("DAMON_MEMORY_LIMIT", "256"), ("NOMAD_MEMORY_LIMIT", "128")];
        assert_eq!(config(&["--memory-limit", "512", "--", "x"], &env).limits.memory.unwrap().max_mib, 512);
        assert_eq!(config(&["x"], &env).limits.memory.unwrap().max_mib, 256);
        assert_eq!(config(&["x"], &env[1..]).limits.memory.unwrap().max_mib, 128);
    }

    #[test]
    fn memory_max_limit_makes_the_limit_soft() {
        let m = config(&["x"], &[("NOMAD_MEMORY_LIMIT", "100"), ("NOMAD_MEMORY_MAX_LIMIT", "300")]).limits.memory;
        assert_eq!(m, Some(MemoryLimit { max_mib: 300, soft_mib: Some(100) }));
        let m = config(&["x"], &[("NOMAD_MEMORY_LIMIT", "100"), ("NOMAD_MEMORY_MAX_LIMIT", "50")]).limits.memory;
        assert_eq!(m, Some(MemoryLimit { max_mib: 100, soft_mib: None }));
    }

    #[test]
    fn nomad_memory_max_of_minus_one_means_no_memory_limit() {
        let env = [("NOMAD_MEMORY_LIMIT", "256"), ("NOMAD_MEMORY_MAX_LIMIT", "-1")];
        assert_eq!(config(&["x"], &env).limits.memory, None);
        assert!(error(&["x"], &[("NOMAD_MEMORY_MAX_LIMIT", "-2")]).contains("or -1 for no hard limit"));
    }

    #[test]
    fn zero_limits_mean_none() {
        let c = config(&["x"], &[("NOMAD_CPU_LIMIT", "0"), ("NOMAD_MEMORY_LIMIT", "0")]);
        assert_eq!((c.limits.cpu, c.limits.memory), (None, None));
    }

    #[test]
    fn bad_values_name_their_source_and_value() {
        type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            (&["x"], &[("DAMON_MEMORY_LIMIT", "lots")], "\"lots\" for DAMON_MEMORY_LIMIT"),
            (&["x"], &[("NOMAD_MEMORY_LIMIT", "-1")], "\"-1\" for NOMAD_MEMORY_LIMIT"),
            (&["x"], &[("DAMON_MEMORY_LIMIT", "99999999999999999999")], "from 0 to 17592186044415"),
            (&["x"], &[("DAMON_MEMORY_LIMIT", "18446744073709551")], "from 0 to 17592186044415"),
            (
                &["--cpu-limit", "50", "x"],
                &[],
                "\"50\" for --cpu-limit: an enforced CPU limit must be at least 100 MHz",
            ),
            (&["x"], &[("DAMON_ENFORCE_CPU_LIMIT", "maybe")], "\"maybe\" for DAMON_ENFORCE_CPU_LIMIT"),
            (&["x"], &[("DAMON_KILL_TIMEOUT", "-3s")], "\"-3s\" for DAMON_KILL_TIMEOUT"),
            (&["x"], &[("DAMON_PROCESS_LIMIT", "0")], "\"0\" for DAMON_PROCESS_LIMIT"),
            (&["x"], &[("DAMON_LOG_MAX_SIZE", "0")], "\"0\" for DAMON_LOG_MAX_SIZE"),
            (&["x"], &[("DAMON_CGROUP_PARENT", "/a/../b")], "\"/a/../b\" for DAMON_CGROUP_PARENT"),
            (&["x"], &[("NOMAD_CPU_CORES", "0-1 ,4")], "\"0-1 ,4\" for NOMAD_CPU_CORES: a cpuset list"),
            (&["--cpu-cores", "1-0", "x"], &[], "\"1-0\" for --cpu-cores: a cpuset list"),
        ];
        for (args, env, expected) in cases {
            let message = error(args, env);
            assert!(message.contains(expected), "{:?}: {}", env, message);
        }
    }

    #[test]
    fn an_unenforced_cpu_limit_may_be_small() {
        let c = config(&["x"], &[("NOMAD_CPU_LIMIT", "50"), ("DAMON_ENFORCE_CPU_LIMIT", " no ")]);
        assert_eq!(c.limits.cpu, Some(CpuLimit { mhz: 50 }));
        assert_eq!(c.limits.enforced_cpu(), None);
    }

    #[test]
    fn cpu_cores_are_a_cpuset_list_and_damon_cpu_cores_overrides_nomads() {
        let cores = |args: &[&str], env: &[(&str, &str)]| {
            config(args, env).limits.cores.map(|c| (c.cores.to_string(), c.source))
        };
        assert_eq!(cores(&["x"], &[]), None);
        assert_eq!(
            cores(&["x"], &[("NOMAD_CPU_CORES", "4,0-1")]),
            Some(("0-1,4".to_string(), "NOMAD_CPU_CORES".to_string()))
        );
        let env = [("DAMON_CPU_CORES", "2"), ("NOMAD_CPU_CORES", "0-1")];
        assert_eq!(cores(&["x"], &env), Some(("2".to_string(), "DAMON_CPU_CORES".to_string())));
        assert_eq!(cores(&["--cpu-cores", "3", "x"], &env), Some(("3".to_string(), "--cpu-cores".to_string())));
        // An empty DAMON_CPU_CORES is unset: Nomad's cores apply.
        let env = [("DAMON_CPU_CORES", " "), ("NOMAD_CPU_CORES", "0-1")];
        assert_eq!(cores(&["x"], &env), Some(("0-1".to_string(), "NOMAD_CPU_CORES".to_string())));
        // A pin is enforced: it needs a container.
        assert!(!config(
            &["x"],
            &[("NOMAD_CPU_CORES", "0"), ("DAMON_ENFORCE_CPU_LIMIT", "N"), ("DAMON_ENFORCE_MEMORY_LIMIT", "N")]
        )
        .limits
        .container_optional());
    }

    #[test]
    fn kill_timeout_takes_durations_and_seconds() {
        let set = |text: &str, env: &[(&str, &str)]| {
            let env: Vec<(&str, &str)> = env.iter().copied().chain(Some(("DAMON_KILL_TIMEOUT", text))).collect();
            config(&["x"], &env).kill_timeout
        };
        assert_eq!(set("500ms", &[]), KillTimeout::Set(Duration::from_millis(500)));
        assert_eq!(set("2m", &[]), KillTimeout::Set(Duration::from_secs(120)));
        assert_eq!(set("7", &[]), KillTimeout::Set(Duration::from_secs(7)));
        // Set explicitly, it holds under Nomad too.
        assert_eq!(set("7", &[("NOMAD_ALLOC_ID", "a1")]), KillTimeout::Set(Duration::from_secs(7)));
    }

    #[test]
    fn kill_timeout_defaults_to_none_under_nomad_and_thirty_seconds_elsewhere() {
        let under_nomad = config(&["x"], &[("NOMAD_ALLOC_ID", "a1")]).kill_timeout;
        assert_eq!(under_nomad, KillTimeout::Nomad);
        assert_eq!(under_nomad.after_stop(), None);
        assert!(!under_nomad.second_stop_kills());
        let at_a_terminal = config(&["x"], &[]).kill_timeout;
        assert_eq!(at_a_terminal, KillTimeout::Terminal(Duration::from_secs(30)));
        assert_eq!(at_a_terminal.after_stop(), Some(Duration::from_secs(30)));
        assert!(at_a_terminal.second_stop_kills());
        // Nomad's other variables alone (a person trying damon at a terminal) are not Nomad.
        assert_eq!(config(&["x"], &[("NOMAD_MEMORY_LIMIT", "64")]).kill_timeout, at_a_terminal);
        assert!(!KillTimeout::Set(Duration::from_secs(1)).second_stop_kills());
    }

    #[test]
    fn log_placement_follows_nomad() {
        let env = [("NOMAD_ALLOC_DIR", "/alloc"), ("NOMAD_TASK_NAME", "web")];
        assert_eq!(config(&["x"], &env).log.path, Path::new("/alloc/logs/web.damon.log"));
        let env = [("NOMAD_ALLOC_DIR", "/alloc"), ("NOMAD_TASK_NAME", "web"), ("DAMON_NOMAD_LOG_SUFFIX", ".log")];
        assert_eq!(config(&["x"], &env).log.path, Path::new("/alloc/logs/web.log"));
        let env = [("DAMON_LOG_DIR", "/var/log"), ("DAMON_LOG_NAME", "d.json"), ("NOMAD_TASK_NAME", "web")];
        assert_eq!(config(&["x"], &env).log.path, Path::new("/var/log/d.json"));
        let c = config(&["x"], &[]);
        assert_eq!(c.log.path.file_name().unwrap(), "damon.log");
        assert_eq!(c.log.labels, vec![]);
    }

    #[test]
    fn nomad_labels_are_collected() {
        let c = config(&["x"], &[("NOMAD_JOB_NAME", "j"), ("NOMAD_ALLOC_INDEX", "0")]);
        assert_eq!(c.log.labels, vec![("nomad_job_name", "j".to_string()), ("nomad_alloc_index", "0".to_string())]);
    }

    #[test]
    fn cgroup_parent_is_relative_to_the_hierarchy_root() {
        assert_eq!(
            config(&["x"], &[("DAMON_CGROUP_PARENT", "nomad.slice/x")]).cgroup_parent.unwrap(),
            Path::new("/nomad.slice/x")
        );
    }

    #[test]
    fn user_is_a_name_or_ids() {
        let user = |value: &str| config(&["x"], &[("DAMON_USER", value)]).user.unwrap().spec;
        assert_eq!(user("nobody"), UserSpec::Name("nobody".to_string()));
        assert_eq!(user(" app-1.x@corp "), UserSpec::Name("app-1.x@corp".to_string()));
        assert_eq!(user("host$"), UserSpec::Name("host$".to_string()));
        assert_eq!(user("1000"), UserSpec::Id { uid: 1000, gid: None });
        assert_eq!(user("0:0"), UserSpec::Id { uid: 0, gid: Some(0) });
        assert_eq!(user("4294967294:7"), UserSpec::Id { uid: 4_294_967_294, gid: Some(7) });
        let from_flag = config(&["--user", "65534:65534", "x"], &[("DAMON_USER", "root")]).user.unwrap();
        assert_eq!((from_flag.spec.to_string(), from_flag.source), ("65534:65534".to_string(), "--user".to_string()));
        assert_eq!(config(&["x"], &[]).user, None);
    }

    #[test]
    fn malformed_users_are_refused() {
        for bad in [
            "a b",
            "-x",
            "x:",
            ":5",
            "1000:",
            "1000:abc",
            "abc:1000",
            "1:2:3",
            "+5",
            "-1",
            "4294967295",
            "1:4294967295",
            "99999999999",
            "caf\u{e9}",
            "\u{661}",
            "a/b",
            "$",
        ] {
            let message = error(&["x"], &[("DAMON_USER", bad)]);
            assert!(message.contains(&format!("{:?} for DAMON_USER", bad)), "{:?}: {}", bad, message);
        }
    }

    #[test]
    fn check_needs_no_command() {
        assert!(matches!(parse_with(&["--check"], &[]), Ok(Invocation::Check(_))));
        assert!(parse_with(&["--memory-limit", "5"], &[]).is_err());
    }

    /// Bad values by class for a setting. Classes that do not apply to a setting are absent
    /// (a log directory named "-1" or "NaN" is a directory); `accepted` lists some of those.
    pub(super) fn bad_values(s: &Setting) -> Vec<(&'static str, String)> {
        let mut bad: Vec<(&str, &str)> = vec![("empty", ""), ("empty", "  ")];
        // The classes of bad numbers and booleans, shared with the tests of the real binary.
        let (number, boolean) = (super::shared_bad_values::NUMBER.to_vec(), super::shared_bad_values::BOOLEAN.to_vec());
        match s.flag {
            "cpu-limit" => {
                bad.extend(number);
                // x 10^6 Hz no longer fits in 64 bits; below the enforced minimum.
                bad.extend([("product overflow", "18446744073710"), ("range", "50")]);
            }
            "memory-limit" | "memory-max-limit" | "log-max-size" => {
                // -1 is no hard limit for the max (Nomad 2.0); any other negative is refused.
                bad.extend(number.iter().filter(|(_, v)| s.flag != "memory-max-limit" || *v != "-1"));
                bad.extend([("product overflow", "17592186044416"), ("negative", "-2")]);
                // x 2^20 bytes
            }
            "process-limit" => {
                bad.extend(number);
                bad.extend([("range", "0"), ("overflow", "4194305")]);
            }
            "log-max-files" => bad.extend(number),
            "cpu-cores" => bad.extend([
                ("garbage", "lots"),
                ("garbage", "0,"),
                ("garbage", ",0"),
                ("garbage", "0,,1"),
                ("garbage", "0-"),
                ("garbage", "0-1-2"),
                ("garbage", "0x1"),
                ("garbage", "1.5"),
                ("garbage", "+5"),
                ("garbage", "all"),
                ("negative", "-1"),
                ("range", "3-1"),
                ("overflow", "8192"),
                ("overflow", "0-99999"),
                ("overflow", "18446744073709551616"),
                ("NaN", "NaN"),
                ("NaN", "inf"),
                ("non-ASCII digits", "٣"),
                ("non-ASCII digits", "０-１"),
                ("white space", "0, 1"),
                ("white space", "0 -1"),
                ("white space", "1\t2"),
            ]),
            "enforce-cpu-limit" | "enforce-memory-limit" | "restricted-token" | "network-accounting" => {
                bad.extend(boolean)
            }
            "kill-timeout" => bad.extend([
                ("garbage", "soon"),
                ("garbage", "30 parsecs"),
                ("garbage", "1e3s"),
                ("negative", "-3s"),
                ("negative", "-1"),
                ("overflow", "99999999999999999999"),
                ("overflow", "18446744073709551616s"),
                ("product overflow", "25h"),
                ("product overflow", "1y"),
                ("product overflow", "86401"),
                ("NaN", "NaN"),
                ("NaN", "NaNs"),
                ("NaN", "inf"),
                ("non-ASCII digits", "٣s"),
                ("non-ASCII digits", "３０"),
                ("white space", "3 0"),
                ("white space", "5\t0s"),
                ("white space", "5 s"),
            ]),
            "addr" => bad.extend([
                ("garbage", "localhost"),
                ("garbage", "not an address"),
                ("garbage", "1.2.3.4:"),
                ("garbage", ":notaport"),
                ("garbage", "[::1"),
                ("garbage", "[::1]"),
                ("garbage", "::1:80"),
                ("garbage", "*:80"),
                ("garbage", "1.2.3:80"),
                ("negative", "127.0.0.1:-1"),
                ("overflow", "host:99999"),
                ("overflow", "127.0.0.1:65536"),
                ("overflow", "256.0.0.1:80"),
                ("overflow", "127.0.0.1:18446744073709551616"),
                ("NaN", "NaN"),
                ("NaN", "127.0.0.1:NaN"),
                ("non-ASCII digits", "127.0.0.1:٨٠"),
                ("non-ASCII digits", "127.0.0.1:８０"),
                ("white space", "127.0.0.1: 80"),
                ("white space", "local host:80"),
                ("white space", "127.0.0.1:9\t0"),
            ]),
            "metrics-endpoint" => bad.extend([
                ("garbage", "metrics"),
                ("garbage", "/m?x=1"),
                ("garbage", "/m#x"),
                ("garbage", "/m\u{1}"),
                ("negative", "-1"),
                ("NaN", "NaN"),
                ("non-ASCII digits", "/٣"),
                ("non-ASCII", "/métriques"),
                ("white space", "/met rics"),
                ("white space", "/a\tb"),
            ]),
            "cgroup-parent" => {
                bad.extend([("garbage", "/a/../b"), ("garbage", ".."), ("garbage", "a\u{1}b"), ("garbage", "a\nb")])
            }
            "log-dir" => bad.extend([("garbage", "/tmp/a\u{1}b"), ("garbage", "a\nb")]),
            "log-name" => bad.extend([
                ("garbage", "."),
                ("garbage", ".."),
                ("garbage", "a/b"),
                ("garbage", "/"),
                ("garbage", "a\\b"),
                ("garbage", "a\nb"),
            ]),
            "nomad-log-suffix" => bad.extend([("garbage", "/x"), ("garbage", "\\x"), ("garbage", "a\nb")]),
            "user" => bad.extend([
                ("garbage", "-x"),
                ("garbage", "x:"),
                ("garbage", "1:2:3"),
                ("garbage", "a/b"),
                ("negative", "-1"),
                ("overflow", "4294967295"),
                ("overflow", "99999999999"),
                ("non-ASCII digits", "\u{661}"),
                ("non-ASCII", "caf\u{e9}"),
                ("white space", "a b"),
            ]),
            "stop-signal-scope" => bad.extend([("garbage", "all"), ("garbage", "children"), ("white space", "tr ee")]),
            "stop-signal" => bad.extend([("garbage", "SIGNOPE"), ("number", "15"), ("white space", "SIG TERM")]),
            "sandbox" => bad.extend(boolean.into_iter().chain([("garbage", "strictly"), ("garbage", "strict!")])),
            "sandbox-capabilities" => bad.extend([
                ("garbage", "NET RAW"),
                ("garbage", "CAP_"),
                ("garbage", "net_raw,"),
                ("negative", "-1"),
                ("NaN", "NaN"),
                ("non-ASCII", "caf\u{e9}"),
            ]),
            "sandbox-paths" => bad.extend([
                ("garbage", "/etc"),
                ("garbage", "r:etc"),
                ("garbage", "q:/etc"),
                ("garbage", "r:/etc,"),
                ("garbage", "rx"),
                ("garbage", "r:/no/such/path"),
                ("negative", "-1"),
                ("NaN", "NaN"),
                ("white space", "r:/etc, rx:/usr"),
                ("non-ASCII", "ř:/etc"),
            ]),
            "io-read-bandwidth" | "io-write-bandwidth" | "net-max-bandwidth" => {
                bad.extend(number);
                bad.extend([
                    ("garbage", "10X"),
                    ("garbage", "1.5M"),
                    ("white space", "10 M"),
                    ("product overflow", "17179869184T"),
                ]);
            }
            "io-read-iops" | "io-write-iops" => {
                bad.extend(number);
                bad.push(("overflow", "1000000001"));
            }
            "io-devices" => bad.extend([
                ("garbage", "sda"),
                ("garbage", "8:"),
                ("garbage", "/no/such/device"),
                ("negative", "-8:0"),
                ("overflow", "4294967296:0"),
                ("white space", "8 :0"),
            ]),
            "ip-allow" | "ip-deny" => bad.extend([
                ("garbage", "example.com"),
                ("garbage", "10.0.0.0/"),
                ("garbage", "localhost,"),
                ("negative", "10.0.0.0/-8"),
                ("overflow", "10.0.0.0/33"),
                ("overflow", "256.0.0.1"),
                ("non-ASCII digits", "\u{661}.0.0.1"),
                ("white space", "10.0.0.1, 10.0.0.2"),
            ]),
            "bind-ports" => bad.extend([
                ("garbage", "http"),
                ("garbage", "80-70"),
                ("garbage", "nomad,"),
                ("negative", "-80"),
                ("overflow", "65536"),
                ("overflow", "0"),
                ("non-ASCII digits", "\u{661}"),
                ("white space", "80, 81"),
            ]),
            other => panic!("no bad values for --{}: add them here and in tests/bad_input.rs", other),
        }
        let mut bad: Vec<(&str, String)> = bad.into_iter().map(|(class, value)| (class, value.to_string())).collect();
        if ["cgroup-parent", "log-name", "nomad-log-suffix"].contains(&s.flag) {
            // One byte more than a file or cgroup name may have.
            bad.push(("overflow", "x".repeat(256)));
        }
        bad
    }

    /// Values that look odd but mean something for a setting, and what they become.
    pub(super) fn accepted(s: &Setting) -> Vec<&'static str> {
        match s.flag {
            "cpu-limit" => vec!["0", " 500 ", "0100", "18446744073709"],
            "memory-limit" => vec!["0", "\t512\n", "17592186044415"],
            "memory-max-limit" => vec!["0", "\t512\n", "17592186044415", "-1"],
            "log-max-size" => vec!["1", "17592186044415"],
            "process-limit" => vec!["1", "4194304"],
            "log-max-files" => vec!["0", "18446744073709551615"],
            "cpu-cores" => vec!["0", " 0-1,4 ", "4,1,0", "1,1,0-1", "00", "0-8191"],
            "enforce-cpu-limit" | "enforce-memory-limit" | "restricted-token" | "network-accounting" => {
                vec![" YES ", "n", "True", "0"]
            }
            "kill-timeout" => vec!["0", "24h", "1m 30s", "1.5s", "86400"],
            "addr" => vec![":9000", "[::1]:0", "localhost:9000", "my-host.example.:80", "10.0.0.1:65535"],
            "metrics-endpoint" => vec!["/", "/a/b%20c", "/-1"],
            "cgroup-parent" => vec!["/", "-1", "NaN", "٣", "a b", "nomad.slice/./x//"],
            "log-dir" => vec!["-1", "NaN", "/tmp/a b", "٣"],
            "log-name" => vec!["-1", "NaN", "a b.log", "٣.log", "..log"],
            "nomad-log-suffix" => vec![".log", "-1", ".٣"],
            "user" => vec!["nobody", " 1000:1000 ", "host$", "NaN"],
            "stop-signal-scope" => vec![" child ", "CHILD"],
            #[cfg(unix)]
            "stop-signal" => vec![" SIGINT ", "quit", "ctrl_c", "SIGKILL"],
            #[cfg(windows)]
            "stop-signal" => vec![" CTRL_BREAK ", "sigbreak"],
            "sandbox" => vec!["y", " Strict ", "0"],
            "sandbox-paths" => vec!["defaults", "r:/", "rwxc:/tmp:r:/etc,defaults"],
            "sandbox-capabilities" => vec!["NET_RAW", " cap_sys_ptrace,SYS_NICE "],
            "io-read-bandwidth" | "io-write-bandwidth" | "net-max-bandwidth" => {
                vec!["0", " 10M ", "512k", "1GiB", "4194304"]
            }
            "io-read-iops" | "io-write-iops" => vec!["0", "100", "1000000000"],
            "io-devices" => vec!["8:0", " 8:0,8:16 ", "0:0"],
            "ip-allow" | "ip-deny" => vec!["any", " 10.1.2.3/8 ", "::1,LOCALHOST", "0.0.0.0/0"],
            "bind-ports" => vec!["nomad", " 80 ", "1-65535,nomad,NOMAD", "8080,8080"],
            other => panic!("no accepted values for --{}", other),
        }
    }

    /// Every source of a setting: its flag, its variable and its Nomad variable.
    fn sources(s: &Setting) -> Vec<String> {
        let mut sources = vec![format!("--{}", s.flag), s.var.to_string()];
        sources.extend(s.nomad_var.map(str::to_string));
        sources
    }

    /// The outcome of a setting given `value` through `source`, with a command.
    fn parse_one(source: &str, value: &str) -> Result<Invocation, ConfigError> {
        if source.starts_with("--") {
            parse_with(&[source, value, "--", "x"], &[])
        } else {
            parse_with(&["x"], &[(source, value)])
        }
    }

    #[test]
    fn every_setting_refuses_every_class_of_bad_value_naming_source_and_value() {
        let mut cases = 0;
        for s in SETTINGS {
            for source in sources(s) {
                for (class, value) in bad_values(s) {
                    if class == "empty" && !source.starts_with("--") {
                        continue; // an empty variable is unset: see the test below
                    }
                    cases += 1;
                    let what = format!("{} {:?} ({})", source, value, class);
                    match parse_one(&source, &value) {
                        Err(ConfigError::InvalidLogged(e, _)) => {
                            let message = e.to_string();
                            let shown = quoted(trimmed(&value));
                            assert!(
                                message.starts_with(&format!("invalid value {} for {}: ", shown, source)),
                                "{}: {}",
                                what,
                                message
                            );
                            assert!(!message.contains('\n'), "{}: not one line: {}", what, message);
                        }
                        other => panic!("{}: expected a refusal, got {:?}", what, other),
                    }
                }
            }
        }
        eprintln!("bad input (unit): {} cases", cases);
        assert!(cases > 400, "{}", cases);
    }

    #[test]
    fn odd_but_meaningful_values_are_accepted() {
        for s in SETTINGS {
            for source in sources(s) {
                for value in accepted(s) {
                    let result = parse_one(&source, value);
                    assert!(
                        matches!(result, Ok(Invocation::Run(_))),
                        "{} {:?}: expected it accepted, got {:?}",
                        source,
                        value,
                        result
                    );
                }
            }
        }
    }

    #[test]
    fn an_empty_variable_is_unset_and_the_next_source_applies() {
        for s in SETTINGS {
            for empty in ["", " ", "\t\n"] {
                let unset = format!("{:?}", config(&["x"], &[]));
                assert_eq!(format!("{:?}", config(&["x"], &[(s.var, empty)])), unset, "{}={:?}", s.var, empty);
            }
        }
        let env = [("DAMON_MEMORY_LIMIT", ""), ("NOMAD_MEMORY_LIMIT", "128")];
        assert_eq!(config(&["x"], &env).limits.memory.unwrap().max_mib, 128);
        let env = [("DAMON_ADDR", " "), ("NOMAD_ADDR_damon", "127.0.0.1:9000")];
        assert_eq!(config(&["x"], &env).metrics.unwrap().addr.to_string(), "127.0.0.1:9000");
        assert!(config(&["x"], &[("DAMON_NOMAD_LOG_SUFFIX", ""), ("NOMAD_TASK_NAME", "web")])
            .log
            .path
            .ends_with("web.damon.log"));
    }

    #[test]
    fn the_first_bad_value_is_reported_in_the_log_its_valid_settings_describe() {
        let env = [("DAMON_LOG_DIR", "/var/log/d"), ("DAMON_LOG_NAME", "a/b"), ("DAMON_MEMORY_LIMIT", "lots")];
        match parse_with(&["x"], &env) {
            Err(ConfigError::InvalidLogged(e, log)) => {
                assert!(e.to_string().contains("DAMON_MEMORY_LIMIT"), "{}", e);
                assert_eq!(log.path, Path::new("/var/log/d/damon.log"));
            }
            other => panic!("{:?}", other),
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_value_that_is_not_utf8_is_refused() {
        use std::os::unix::ffi::OsStringExt;
        let not_utf8 = OsString::from_vec(vec![b'5', 0xff]);
        let env = FakeEnv([("DAMON_LOG_DIR".to_string(), not_utf8.clone())].into_iter().collect());
        let message = parse(vec!["damon".into(), "x".into()], &env).unwrap_err().to_string();
        assert!(message.contains("DAMON_LOG_DIR") && message.contains("not valid UTF-8"), "{}", message);
        let args = vec!["damon".into(), "--memory-limit".into(), not_utf8, "x".into()];
        let message = parse(args, &FakeEnv(HashMap::new())).unwrap_err().to_string();
        assert!(message.contains("--memory-limit") && message.contains("not valid UTF-8"), "{}", message);
    }

    #[test]
    fn a_very_long_value_is_shown_cut_short_on_one_line() {
        let long = "٣".repeat(100_000);
        let message = error(&["x"], &[("DAMON_MEMORY_LIMIT", &long)]);
        assert!(message.contains("... (200000 bytes in all) for DAMON_MEMORY_LIMIT"), "{}", message);
        assert!(message.len() < 600, "{}", message.len());
    }
}
