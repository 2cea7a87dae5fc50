//! Command line and environment to one validated [`Config`].
//!
//! Every setting is described once, in [`SETTINGS`]: its flag, its `DAMON_*` variable and the
//! Nomad variable it falls back to. The flag wins over the variable, the variable over the
//! Nomad one. Nothing outside this module reads the environment or argv.
//!
//! A malformed value is an error naming where it came from (`--memory-limit` or
//! `DAMON_MEMORY_LIMIT`) and the value; the original Damon silently ignored some of them.

use std::ffi::OsString;
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use clap::{Arg, ArgAction, Command};

use crate::logging::LogSettings;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// What `damon` and `damon --version` print after the name: the version, the target and the
/// commit (set by build.rs).
pub const LONG_VERSION: &str =
    concat!(env!("CARGO_PKG_VERSION"), " (", env!("DAMON_BUILD_TARGET"), ", commit ", env!("DAMON_BUILD_COMMIT"), ")");

/// One setting: spelled here and nowhere else.
pub struct Setting {
    /// Long flag name without the leading dashes; also the clap id.
    flag: &'static str,
    var: &'static str,
    /// The Nomad variable used when `var` is unset.
    nomad_var: Option<&'static str>,
    value_name: &'static str,
    help: &'static str,
}

macro_rules! settings {
    ($($name:ident: $flag:literal, $var:literal, $nomad:expr, $value:literal, $help:literal;)*) => {
        $(const $name: Setting = Setting {
            flag: $flag, var: $var, nomad_var: $nomad, value_name: $value, help: $help,
        };)*
        /// Every setting, in the order `--help` and `--check` show them.
        const SETTINGS: &[Setting] = &[$($name),*];
    };
}

settings! {
    CPU_LIMIT: "cpu-limit", "DAMON_CPU_LIMIT", Some("NOMAD_CPU_LIMIT"), "MHZ",
        "CPU limit in MHz; 0 means none";
    ENFORCE_CPU_LIMIT: "enforce-cpu-limit", "DAMON_ENFORCE_CPU_LIMIT", None, "Y|N",
        "Enforce the CPU limit as a hard cap [default: Y]";
    MEMORY_LIMIT: "memory-limit", "DAMON_MEMORY_LIMIT", Some("NOMAD_MEMORY_LIMIT"), "MIB",
        "Memory limit in MiB; 0 means none";
    MEMORY_MAX_LIMIT: "memory-max-limit", "DAMON_MEMORY_MAX_LIMIT", Some("NOMAD_MEMORY_MAX_LIMIT"), "MIB",
        "Hard memory limit in MiB when larger than the memory limit, which then becomes the soft limit";
    ENFORCE_MEMORY_LIMIT: "enforce-memory-limit", "DAMON_ENFORCE_MEMORY_LIMIT", None, "Y|N",
        "Enforce the memory limit [default: Y]";
    PROCESS_LIMIT: "process-limit", "DAMON_PROCESS_LIMIT", None, "N",
        "Most processes and threads the workload may hold [default: no limit]";
    KILL_TIMEOUT: "kill-timeout", "DAMON_KILL_TIMEOUT", None, "DURATION",
        "Time between passing a stop signal on and killing the whole tree, e.g. 500ms, 30s, 2m or plain seconds [default: 30s]";
    CGROUP_PARENT: "cgroup-parent", "DAMON_CGROUP_PARENT", None, "PATH",
        "cgroup under which damon creates its group [default: damon's own cgroup]";
    RESTRICTED_TOKEN: "restricted-token", "DAMON_RESTRICTED_TOKEN", None, "Y|N",
        "Run the child with its privileges dropped: Windows: a restricted token; Linux: no_new_privs, no capabilities, and as DAMON_USER when damon is root [default: N]";
    USER: "user", "DAMON_USER", None, "NAME|UID[:GID]",
        "Linux: run the child as this user, with its groups (needs root) [default: damon's own; nobody with --restricted-token as root]";
    ADDR: "addr", "DAMON_ADDR", Some("NOMAD_ADDR_damon"), "HOST:PORT",
        "Serve Prometheus metrics on this address [default: no metrics server]";
    METRICS_ENDPOINT: "metrics-endpoint", "DAMON_METRICS_ENDPOINT", None, "PATH",
        "Path of the metrics endpoint [default: /metrics]";
    LOG_DIR: "log-dir", "DAMON_LOG_DIR", None, "DIR",
        "Directory of damon's log [default: $NOMAD_ALLOC_DIR/logs, else the working directory]";
    LOG_NAME: "log-name", "DAMON_LOG_NAME", None, "NAME",
        "File name of damon's log [default: $NOMAD_TASK_NAME<suffix>, else damon.log]";
    NOMAD_LOG_SUFFIX: "nomad-log-suffix", "DAMON_NOMAD_LOG_SUFFIX", None, "SUFFIX",
        "Suffix appended to the task name to name the log [default: .damon.log]";
    LOG_MAX_SIZE: "log-max-size", "DAMON_LOG_MAX_SIZE", None, "MIB",
        "Size in MiB at which the log rotates [default: 10]";
    LOG_MAX_FILES: "log-max-files", "DAMON_LOG_MAX_FILES", None, "N",
        "Rotated log files kept [default: 5]";
}

const CHECK_FLAG: &str = "check";
const COMMAND_ARG: &str = "command";

const DEFAULT_KILL_TIMEOUT: Duration = Duration::from_secs(30);
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

impl MemoryLimit {
    pub fn max_bytes(&self) -> u64 {
        self.max_mib * BYTES_PER_MIB
    }
    pub fn soft_bytes(&self) -> Option<u64> {
        self.soft_mib.map(|mib| mib * BYTES_PER_MIB)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuLimit {
    pub mhz: u64,
}

/// The limits asked for, and whether each one is enforced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    pub memory: Option<MemoryLimit>,
    pub enforce_memory: bool,
    pub cpu: Option<CpuLimit>,
    pub enforce_cpu: bool,
    pub process_limit: Option<u64>,
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
        !self.enforce_memory && !self.enforce_cpu && self.process_limit.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    pub addr: String,
    pub endpoint: String,
}

#[derive(Debug)]
pub struct Config {
    /// The program and its arguments; never empty.
    pub command: Vec<OsString>,
    pub limits: Limits,
    pub kill_timeout: Duration,
    /// Path inside the cgroup hierarchy (`/` is its root), when the user chose one.
    pub cgroup_parent: Option<PathBuf>,
    pub restricted_token: bool,
    /// The user the child runs as (DAMON_USER), as written; the platform resolves it.
    pub user: Option<UserSetting>,
    pub metrics: Option<MetricsConfig>,
    pub log: LogSettings,
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
            (MEMORY_LIMIT.var, opt(limits.memory.as_ref().map(|m| m.soft_mib.unwrap_or(m.max_mib)))),
            (MEMORY_MAX_LIMIT.var, opt(limits.memory.as_ref().map(|m| m.max_mib))),
            (ENFORCE_MEMORY_LIMIT.var, yes_no(limits.enforce_memory)),
            (PROCESS_LIMIT.var, opt(limits.process_limit)),
            (KILL_TIMEOUT.var, humantime::format_duration(self.kill_timeout).to_string()),
            (
                CGROUP_PARENT.var,
                self.cgroup_parent
                    .as_ref()
                    .map_or_else(|| "(damon's own cgroup)".to_string(), |p| p.display().to_string()),
            ),
            (RESTRICTED_TOKEN.var, yes_no(self.restricted_token)),
            (USER.var, self.user.as_ref().map_or_else(|| "(unset)".to_string(), |u| u.spec.to_string())),
            (ADDR.var, self.metrics.as_ref().map_or_else(|| "none".to_string(), |m| m.addr.clone())),
            (
                METRICS_ENDPOINT.var,
                self.metrics.as_ref().map_or_else(|| DEFAULT_METRICS_ENDPOINT.to_string(), |m| m.endpoint.clone()),
            ),
            ("log file", self.log.path.display().to_string()),
            (LOG_MAX_SIZE.var, format!("{} MiB", self.log.max_size_bytes / BYTES_PER_MIB)),
            (LOG_MAX_FILES.var, self.log.max_files.to_string()),
        ]
    }
}

fn yes_no(b: bool) -> String {
    if b { "Y" } else { "N" }.to_string()
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
                write!(f, "invalid value {:?} for {}: {}", value, source, expected)
            }
            ConfigError::InvalidLogged(error, _) => error.fmt(f),
        }
    }
}

impl std::error::Error for ConfigError {}

/// A raw value and where it came from.
struct Raw {
    value: String,
    source: String,
}

impl Raw {
    fn invalid(&self, expected: impl Into<String>) -> ConfigError {
        ConfigError::Invalid { source: self.source.clone(), value: self.value.clone(), expected: expected.into() }
    }

    fn parse_u64(&self, expected: &str) -> Result<u64, ConfigError> {
        let trimmed = self.value.trim();
        // u64's parser accepts a leading '+'; a limit written "+5" is more likely a typo.
        if trimmed.is_empty() || !trimmed.bytes().all(|b| b.is_ascii_digit()) {
            return Err(self.invalid(expected));
        }
        trimmed.parse().map_err(|_| self.invalid(format!("{} (too large)", expected)))
    }

    fn parse_mib(&self) -> Result<u64, ConfigError> {
        let expected = "a whole number of MiB";
        let mib = self.parse_u64(expected)?;
        // Limits are handed to the kernel in bytes: refuse what does not fit.
        mib.checked_mul(BYTES_PER_MIB).ok_or_else(|| self.invalid(format!("{} (too large)", expected)))?;
        Ok(mib)
    }

    fn parse_bool(&self) -> Result<bool, ConfigError> {
        match self.value.trim().to_ascii_lowercase().as_str() {
            "y" | "yes" | "true" | "1" => Ok(true),
            "n" | "no" | "false" | "0" => Ok(false),
            _ => Err(self.invalid("Y or N (also yes/no, true/false, 1/0)")),
        }
    }

    fn parse_duration(&self) -> Result<Duration, ConfigError> {
        let trimmed = self.value.trim();
        let expected = "a duration such as 500ms, 30s or 2m, or plain seconds";
        if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()) {
            return trimmed.parse().map(Duration::from_secs).map_err(|_| self.invalid(expected));
        }
        humantime::parse_duration(trimmed).map_err(|_| self.invalid(expected))
    }
}

/// The environment, injectable for tests.
pub trait Environment {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment. A value that is not UTF-8 is kept lossily and then fails to parse.
pub struct ProcessEnvironment;

impl Environment for ProcessEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
    }
}

fn cli() -> Command {
    let mut cmd = Command::new("damon")
        .version(LONG_VERSION)
        .about("Runs a program contained in a cgroup (Linux) or Job Object (Windows), enforces its CPU and memory limits, and stops its whole tree.")
        .override_usage("damon [OPTIONS] [--] COMMAND [ARGS]...")
        .after_help("Every option can also be set with the environment variable shown; the option wins.\nExit status: the command's own, 128+N if it died of signal N, 125 if damon failed,\n126 if the command cannot be run, 127 if it was not found.")
        .arg(
            Arg::new(CHECK_FLAG)
                .long(CHECK_FLAG)
                .action(ArgAction::SetTrue)
                .help("Report what damon can use on this host and the effective configuration, then exit"),
        );
    for s in SETTINGS {
        let mut help = format!("{} [env: {}", s.help, s.var);
        if let Some(nomad) = s.nomad_var {
            help.push_str(&format!(", then {}", nomad));
        }
        help.push(']');
        cmd = cmd.arg(Arg::new(s.flag).long(s.flag).value_name(s.value_name).help(help).action(ArgAction::Set));
    }
    cmd.arg(
        Arg::new(COMMAND_ARG)
            .value_name("COMMAND")
            .num_args(1..)
            .trailing_var_arg(true)
            .value_parser(clap::value_parser!(OsString)),
    )
}

/// Parses arguments (including the program name) and the environment.
pub fn parse(args: Vec<OsString>, env: &dyn Environment) -> Result<Invocation, ConfigError> {
    if args.len() <= 1 {
        return Ok(Invocation::Version);
    }
    let matches = cli().try_get_matches_from(args).map_err(ConfigError::Usage)?;
    let lookup = |s: &Setting| -> Option<Raw> {
        if let Some(v) = matches.get_one::<String>(s.flag) {
            return Some(Raw { value: v.clone(), source: format!("--{}", s.flag) });
        }
        [Some(s.var), s.nomad_var]
            .iter()
            .flatten()
            .find_map(|var| env.var(var).map(|value| Raw { value, source: var.to_string() }))
    };
    let command: Vec<OsString> =
        matches.get_many::<OsString>(COMMAND_ARG).map(|v| v.cloned().collect()).unwrap_or_default();
    let check = matches.get_flag(CHECK_FLAG);
    if command.is_empty() && !check {
        return Err(ConfigError::Usage(
            cli().error(clap::error::ErrorKind::MissingRequiredArgument, "a COMMAND to run is required"),
        ));
    }
    let config = build(command, &lookup, env)
        .map_err(|e| ConfigError::InvalidLogged(Box::new(e), log_settings_for_error(&lookup, env)))?;
    Ok(if check { Invocation::Check(config) } else { Invocation::Run(config) })
}

fn build(
    command: Vec<OsString>,
    lookup: &dyn Fn(&Setting) -> Option<Raw>,
    env: &dyn Environment,
) -> Result<Config, ConfigError> {
    let bool_or = |s: &Setting, default: bool| lookup(s).map_or(Ok(default), |r| r.parse_bool());
    let mib = |s: &Setting| lookup(s).map(|r| r.parse_mib()).transpose();
    let nonempty = |s: &Setting| lookup(s).map(|r| r.value).filter(|v| !v.trim().is_empty());

    let enforce_cpu = bool_or(&ENFORCE_CPU_LIMIT, true)?;
    let cpu = match lookup(&CPU_LIMIT) {
        None => None,
        Some(raw) => match raw.parse_u64("a whole number of MHz")? {
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

    let limit_mib = mib(&MEMORY_LIMIT)?.filter(|&m| m > 0);
    let max_limit_mib = mib(&MEMORY_MAX_LIMIT)?.filter(|&m| m > 0);
    let memory = match (limit_mib, max_limit_mib) {
        (Some(limit), Some(max)) if max > limit => Some(MemoryLimit { max_mib: max, soft_mib: Some(limit) }),
        (Some(limit), _) => Some(MemoryLimit { max_mib: limit, soft_mib: None }),
        (None, Some(max)) => Some(MemoryLimit { max_mib: max, soft_mib: None }),
        (None, None) => None,
    };

    let process_limit = match lookup(&PROCESS_LIMIT) {
        None => None,
        Some(raw) => match raw.parse_u64("a whole number of processes, at least 1")? {
            0 => return Err(raw.invalid("a whole number of processes, at least 1")),
            n => Some(n),
        },
    };

    let kill_timeout = lookup(&KILL_TIMEOUT).map_or(Ok(DEFAULT_KILL_TIMEOUT), |r| r.parse_duration())?;

    let cgroup_parent = match lookup(&CGROUP_PARENT) {
        None => None,
        Some(raw) => Some(cgroup_path(&raw)?),
    };

    let metrics = nonempty(&ADDR).map(|addr| MetricsConfig {
        addr: addr.trim().to_string(),
        endpoint: nonempty(&METRICS_ENDPOINT).unwrap_or_else(|| DEFAULT_METRICS_ENDPOINT.to_string()),
    });
    if let Some(m) = &metrics {
        if !m.endpoint.starts_with('/') {
            let raw = lookup(&METRICS_ENDPOINT).expect("endpoint came from a setting");
            return Err(raw.invalid("a path starting with /"));
        }
    }

    let log = log_settings(lookup, env)?;

    Ok(Config {
        command,
        limits: Limits {
            memory,
            enforce_memory: bool_or(&ENFORCE_MEMORY_LIMIT, true)?,
            cpu,
            enforce_cpu,
            process_limit,
        },
        kill_timeout,
        cgroup_parent,
        restricted_token: bool_or(&RESTRICTED_TOKEN, false)?,
        user: lookup(&USER).map(|raw| user_setting(&raw)).transpose()?,
        metrics,
        log,
        alloc_id: env.var("NOMAD_ALLOC_ID").filter(|v| !v.is_empty()),
        task_name: env.var("NOMAD_TASK_NAME").filter(|v| !v.is_empty()),
    })
}

/// Where and how damon logs: the original's placement rules.
fn log_settings(lookup: &dyn Fn(&Setting) -> Option<Raw>, env: &dyn Environment) -> Result<LogSettings, ConfigError> {
    let nonempty = |s: &Setting| lookup(s).map(|r| r.value).filter(|v| !v.trim().is_empty());
    let task_name = env.var("NOMAD_TASK_NAME").filter(|v| !v.is_empty());
    let log_dir = nonempty(&LOG_DIR).map(PathBuf::from).unwrap_or_else(|| {
        env.var("NOMAD_ALLOC_DIR")
            .filter(|v| !v.is_empty())
            .map(|alloc| Path::new(&alloc).join("logs"))
            .unwrap_or_else(|| std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")))
    });
    let log_name = nonempty(&LOG_NAME).unwrap_or_else(|| match &task_name {
        Some(task) => {
            format!("{}{}", task, lookup(&NOMAD_LOG_SUFFIX).map_or_else(|| DEFAULT_LOG_SUFFIX.to_string(), |r| r.value))
        }
        None => "damon.log".to_string(),
    });
    let log_max_size_mib = match lookup(&LOG_MAX_SIZE) {
        None => DEFAULT_LOG_MAX_SIZE_MIB,
        Some(raw) => match raw.parse_mib()? {
            0 => return Err(raw.invalid("a whole number of MiB, at least 1")),
            n => n,
        },
    };
    let log_max_files = match lookup(&LOG_MAX_FILES) {
        None => DEFAULT_LOG_MAX_FILES,
        Some(raw) => {
            let n = raw.parse_u64("a whole number of files")?;
            usize::try_from(n).map_err(|_| raw.invalid("a whole number of files (too large)"))?
        }
    };
    let labels = NOMAD_LABELS
        .iter()
        .filter_map(|(label, var)| env.var(var).filter(|v| !v.is_empty()).map(|v| (*label, v)))
        .collect();
    Ok(LogSettings {
        path: log_dir.join(log_name),
        max_size_bytes: log_max_size_mib * BYTES_PER_MIB,
        max_files: log_max_files,
        labels,
    })
}

/// The log to report a configuration error in: the configured one where its own settings
/// are valid, else the default placement.
fn log_settings_for_error(lookup: &dyn Fn(&Setting) -> Option<Raw>, env: &dyn Environment) -> LogSettings {
    log_settings(lookup, env).unwrap_or_else(|_| {
        log_settings(
            &|s: &Setting| if s.flag == LOG_MAX_SIZE.flag || s.flag == LOG_MAX_FILES.flag { None } else { lookup(s) },
            env,
        )
        .expect("only the size settings can be invalid")
    })
}

/// A user as DAMON_USER names it: a name, or numeric ids (which need no entry in the user
/// database when the group is given too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserSpec {
    Name(String),
    Id { uid: u32, gid: Option<u32> },
}

impl fmt::Display for UserSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserSpec::Name(name) => f.write_str(name),
            UserSpec::Id { uid, gid: None } => write!(f, "{}", uid),
            UserSpec::Id { uid, gid: Some(gid) } => write!(f, "{}:{}", uid, gid),
        }
    }
}

/// DAMON_USER and where it came from: the user database is read only when damon starts the
/// child, and an error found then names the flag or variable, as a syntax error does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSetting {
    pub spec: UserSpec,
    /// `--user` or `DAMON_USER`.
    pub source: String,
}

fn user_setting(raw: &Raw) -> Result<UserSetting, ConfigError> {
    let expected = "a user name, or a uid with an optional gid (uid[:gid]), such as nobody or 1000:1000";
    let value = raw.value.trim();
    let id = |digits: &str| -> Result<u32, ConfigError> {
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(raw.invalid(expected));
        }
        // (uid_t)-1 means "leave unchanged" to setresuid(2): it is no one's id.
        match digits.parse::<u32>() {
            Ok(id) if id != u32::MAX => Ok(id),
            _ => Err(raw.invalid(format!("{} (an id is at most {})", expected, u32::MAX - 1))),
        }
    };
    let spec = match value.split_once(':') {
        Some((uid, gid)) => UserSpec::Id { uid: id(uid)?, gid: Some(id(gid)?) },
        None if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
            UserSpec::Id { uid: id(value)?, gid: None }
        }
        None if is_user_name(value) => UserSpec::Name(value.to_string()),
        None => return Err(raw.invalid(expected)),
    };
    Ok(UserSetting { spec, source: raw.source.clone() })
}

/// The portable user name characters (POSIX), `@` (directory users) and a trailing `$`
/// (Samba machine accounts); a leading `-` would read as an option to other tools.
fn is_user_name(name: &str) -> bool {
    let body = name.strip_suffix('$').unwrap_or(name);
    !body.is_empty()
        && !body.starts_with('-')
        && body.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'@'))
}

/// A cgroup path relative to the hierarchy's root; `..` could escape the hierarchy.
fn cgroup_path(raw: &Raw) -> Result<PathBuf, ConfigError> {
    let path = Path::new(raw.value.trim());
    let mut clean = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(part) => clean.push(part),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(raw.invalid("a cgroup path such as /nomad.slice/damon, without .."))
            }
        }
    }
    if raw.value.trim().is_empty() {
        return Err(raw.invalid("a cgroup path such as /nomad.slice/damon"));
    }
    Ok(clean)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct FakeEnv(HashMap<String, String>);
    impl Environment for FakeEnv {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).cloned()
        }
    }

    fn parse_with(args: &[&str], env: &[(&str, &str)]) -> Result<Invocation, ConfigError> {
        let args = std::iter::once("damon").chain(args.iter().copied()).map(OsString::from).collect();
        parse(args, &FakeEnv(env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()))
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
            (&["x"], &[("DAMON_MEMORY_LIMIT", "99999999999999999999")], "too large"),
            (&["x"], &[("DAMON_MEMORY_LIMIT", "18446744073709551")], "too large"),
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
    fn kill_timeout_takes_durations_and_seconds() {
        assert_eq!(config(&["x"], &[]).kill_timeout, Duration::from_secs(30));
        assert_eq!(config(&["x"], &[("DAMON_KILL_TIMEOUT", "500ms")]).kill_timeout, Duration::from_millis(500));
        assert_eq!(config(&["x"], &[("DAMON_KILL_TIMEOUT", "2m")]).kill_timeout, Duration::from_secs(120));
        assert_eq!(config(&["x"], &[("DAMON_KILL_TIMEOUT", "7")]).kill_timeout, Duration::from_secs(7));
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
            "",
            " ",
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
}
