//! The platform-neutral run: create the container, start the child, pass stops on, kill the
//! tree after the timeout, remove the container, and turn the ending into an exit status.
//! Everything that must happen at shutdown happens in [`run`], before `main` exits.

use std::ffi::OsString;
use std::time::{Instant, SystemTime};

mod stop;

use crate::config::{Config, SandboxMode, BUILD_COMMIT, LONG_VERSION, VERSION};
use crate::logging::{self, LogGuard, LogSettings};
use crate::metrics::Metrics;
use crate::platform::{
    self, Backend, Container, ContainerSpec, Event, ExitStatus, Identity, Sandbox, Signal, SpawnError,
};
use crate::stats::Sample;

use self::stop::{Phase, Stop};

/// Exit status when damon itself failed (configuration, container), as `docker run` and `env`.
pub const EXIT_DAMON_FAILED: i32 = 125;
pub const EXIT_CANNOT_EXECUTE: i32 = 126;
pub const EXIT_NOT_FOUND: i32 = 127;
const SIGKILL: i32 = 9;

/// How a run ended, as the "damon exiting" line tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Exited(i32),
    Signaled(Signal),
    /// The kernel's OOM killer ended the child.
    OutOfMemory,
    /// The child ignored the stop and was killed when the kill timeout passed.
    KilledAfterTimeout,
    /// The child ignored the stop and was killed on a second stop signal (outside Nomad).
    KilledOnSecondStop,
    /// The command was never started (or damon failed around it).
    NotStarted(i32),
}

impl Ending {
    pub fn exit_code(self) -> i32 {
        match self {
            Ending::Exited(code) | Ending::NotStarted(code) => code,
            Ending::Signaled(signal) => 128 + signal.0,
            Ending::OutOfMemory | Ending::KilledAfterTimeout | Ending::KilledOnSecondStop => 128 + SIGKILL,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Ending::Exited(_) => "exited",
            Ending::Signaled(_) => "killed by a signal",
            Ending::OutOfMemory => "killed by the OOM killer",
            Ending::KilledAfterTimeout => "killed after the kill timeout",
            Ending::KilledOnSecondStop => "killed on a second stop signal",
            Ending::NotStarted(_) => "not started",
        }
    }

    /// Classifies a child's exit status; `killed_for` is why damon killed the tree, if it did.
    fn of(status: ExitStatus, oom_kills: u64, killed_for: Ending) -> Ending {
        match status {
            ExitStatus::Code(code) => Ending::Exited(code),
            ExitStatus::Signal(Signal(SIGKILL)) if oom_kills > 0 => Ending::OutOfMemory,
            ExitStatus::Signal(signal) => Ending::Signaled(signal),
            ExitStatus::Terminated => killed_for,
        }
    }
}

fn command_line(command: &[OsString]) -> String {
    command.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ")
}

/// A name that says what the group is and is unique on the host: task, allocation and pid.
fn container_name(config: &Config) -> String {
    let mut name = String::from("damon");
    for part in [config.task_name.as_deref(), config.alloc_id.as_deref()].iter().flatten() {
        name.push('-');
        name.extend(part.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '.' { c } else { '_' }));
    }
    name.push_str(&format!("-{}", std::process::id()));
    name
}

/// `damon --check`: prints the host's facts and the effective configuration; 0 if a
/// contained child could run here, 125 with the reason if not.
pub fn check(config: &Config) -> i32 {
    let mut report = platform::host_report(config);
    match Identity::resolve(config.user.as_ref(), config.restricted_token) {
        Ok(identity) => {
            report.facts.push(("child runs as", identity.describe_user()));
            report.facts.push(("child privileges", identity.describe_privileges().to_string()));
            match Sandbox::resolve(&config.sandbox, &identity) {
                Ok(sandbox) => report.facts.extend(sandbox.describe()),
                Err(e) => report.problem = report.problem.or_else(|| Some(e.to_string())),
            }
        }
        Err(e) => report.problem = report.problem.or_else(|| Some(e.to_string())),
    }
    // Written whole, once, and not with println!, which panics when stdout is closed or a
    // pipe whose reader is gone (`damon --check | head -1`).
    let mut out = format!("damon {}\n", LONG_VERSION);
    for (name, value) in report.facts.iter().chain(config.describe().iter()) {
        out.push_str(&format!("{:<28} {}\n", format!("{}:", name), value));
    }
    let code = match &report.problem {
        None => {
            out.push_str("ok: damon can run a contained child here\n");
            0
        }
        Some(problem) => {
            out.push_str(&format!("not ok: {}\n", problem));
            EXIT_DAMON_FAILED
        }
    };
    let _ = std::io::Write::write_all(&mut std::io::stdout(), out.as_bytes());
    code
}

/// A configuration error: one line on stderr, the same in the log, nothing started, 125.
pub fn refuse(log: &LogSettings, error: &dyn std::fmt::Display) -> i32 {
    logging::stderr_line(&error.to_string());
    let _log: LogGuard = logging::init(log);
    let build = BuildFields::new();
    tracing::error!(version = VERSION, error = %error, "invalid configuration: nothing started");
    tracing::info!(
        json.cmdline = %build.cmdline,
        json.version = %build.version,
        revision = BUILD_COMMIT,
        exit_status = EXIT_DAMON_FAILED,
        ending = Ending::NotStarted(EXIT_DAMON_FAILED).describe(),
        "damon exiting"
    );
    EXIT_DAMON_FAILED
}

/// What the original Damon put on its "damon starting" and "damon exiting" lines about itself,
/// in its shapes: damon's own argv as an array, and its version as Go's `version.Info`.
struct BuildFields {
    cmdline: String,
    version: String,
}

impl BuildFields {
    fn new() -> BuildFields {
        let argv: Vec<String> = std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect();
        let (number, pre_release) = match VERSION.split_once('-') {
            Some((number, pre)) => (number, pre),
            None => (VERSION, ""),
        };
        BuildFields {
            cmdline: logging::json_array(argv.iter().map(String::as_str)),
            version: logging::json_object([
                ("Revision", BUILD_COMMIT),
                ("Number", number),
                ("PreRelease", pre_release),
                ("BuildMetadata", ""),
            ]),
        }
    }
}

/// Runs the configured command to its end and returns damon's exit status.
pub fn run(config: Config) -> i32 {
    // The user database is read before anything is created: a user damon cannot start the
    // child as is a configuration error.
    let identity = match Identity::resolve(config.user.as_ref(), config.restricted_token) {
        Ok(identity) => identity,
        Err(e) => return refuse(&config.log, &e),
    };
    let sandbox = match Sandbox::resolve(&config.sandbox, &identity) {
        Ok(sandbox) => sandbox,
        Err(e) => return refuse(&config.log, &e),
    };
    let _log: LogGuard = logging::init(&config.log);
    let started = SystemTime::now();
    let started_at = Instant::now();
    let limits = &config.limits;
    let build = BuildFields::new();
    tracing::info!(
        json.cmdline = %build.cmdline,
        json.version = %build.version,
        revision = BUILD_COMMIT,
        command = %command_line(&config.command),
        memory_limit_mib = limits.memory.as_ref().map(|m| m.soft_mib.unwrap_or(m.max_mib)).unwrap_or(0),
        memory_max_limit_mib = limits.memory.as_ref().map_or(0, |m| m.max_mib),
        enforce_memory_limit = limits.enforce_memory,
        cpu_limit_mhz = limits.cpu.map_or(0, |c| c.mhz),
        enforce_cpu_limit = limits.enforce_cpu,
        cpu_cores = limits.cores.as_ref().map(|c| c.cores.to_string()).as_deref(),
        process_limit = limits.process_limit.unwrap_or(0),
        kill_timeout = %config.kill_timeout,
        user = %identity.describe_user(),
        privileges = identity.describe_privileges(),
        "damon starting"
    );
    let (ending, totals) = supervise(&config, identity, sandbox);
    let ended = SystemTime::now();
    let code = ending.exit_code();
    let totals = totals.unwrap_or_default();
    let run_time = started_at.elapsed();
    tracing::info!(
        json.cmdline = %build.cmdline,
        json.version = %build.version,
        revision = BUILD_COMMIT,
        // logging's own formatter: humantime's panics on a clock before 1970.
        start = %logging::rfc3339_millis(started),
        end = %logging::rfc3339_millis(ended),
        // Milliseconds, as zerolog writes a duration (the original's key and unit).
        run_time = run_time.as_micros() as f64 / 1000.0,
        run_time_seconds = run_time.as_secs_f64(),
        exit_status = code,
        ending = ending.describe(),
        signal = match ending { Ending::Signaled(s) => Some(s.name()), _ => None },
        cpu_user_seconds = totals.cpu_user.map(|d| d.as_secs_f64()),
        cpu_system_seconds = totals.cpu_system.map(|d| d.as_secs_f64()),
        memory_peak_bytes = totals.memory_peak_bytes,
        oom_kills = totals.oom_kills,
        process_limit_refusals = totals.process_limit_refusals,
        cpu_throttled_periods = totals.cpu_throttled_periods,
        io_read_bytes = totals.io_read_bytes,
        io_write_bytes = totals.io_write_bytes,
        network_received_bytes = totals.network.map(|n| n.received_bytes),
        network_received_packets = totals.network.map(|n| n.received_packets),
        network_sent_bytes = totals.network.map(|n| n.sent_bytes),
        network_sent_packets = totals.network.map(|n| n.sent_packets),
        "damon exiting"
    );
    code
}

/// Reports a failure of damon itself on stderr (Nomad shows it with the task's output) and in the log.
fn fail(message: &str, error: &dyn std::fmt::Display, code: i32) -> (Ending, Option<Sample>) {
    tracing::error!(error = %error, "{}", message);
    logging::stderr_line(&format!("{}: {}", message, error));
    (Ending::NotStarted(code), None)
}

/// Runs the child to its end; returns how it ended and the workload's totals.
fn supervise(config: &Config, identity: Identity, sandbox: Sandbox) -> (Ending, Option<Sample>) {
    let spec = ContainerSpec {
        name: container_name(config),
        limits: config.limits.clone(),
        parent: config.cgroup_parent.clone(),
        restricted_token: config.restricted_token,
        identity,
        sandbox: std::sync::Arc::new(sandbox),
    };
    let mut container = match Backend::create(&spec) {
        Ok(container) => container,
        // A sandboxed workload is never run outside its container: no way out of it is part of the sandbox.
        Err(e) if config.limits.container_optional() && config.sandbox.mode == SandboxMode::Off => {
            tracing::warn!(error = %e, "cannot create a container; running the command uncontained, as no limit is enforced");
            match Backend::uncontained(&spec) {
                Ok(container) => container,
                Err(e) => return fail("cannot prepare to run the command", &e, EXIT_DAMON_FAILED),
            }
        }
        Err(e) => return fail("cannot create the container", &e, EXIT_DAMON_FAILED),
    };
    // Threads start only now: on Linux the container forks its guard while damon has one thread.
    let metrics = config.metrics.as_ref().map(|metrics_config| {
        let metrics = Metrics::new(config);
        metrics.container_ready(container.sampler());
        metrics.serve(metrics_config);
        metrics
    });
    let pid = match container.spawn(&config.command) {
        Ok(pid) => pid,
        Err(e) => {
            let code = match e {
                SpawnError::NotFound(_) => EXIT_NOT_FOUND,
                SpawnError::NotExecutable(..) => EXIT_CANNOT_EXECUTE,
                SpawnError::Other(..) => EXIT_DAMON_FAILED,
            };
            let ending = fail("cannot start the command", &e, code);
            remove(container);
            return ending;
        }
    };
    tracing::info!(
        pid,
        container = %container.location().unwrap_or_else(|| "none".to_string()),
        cpuset = container.cpuset().as_deref(),
        start = container.start_method().as_deref(),
        sandbox = %spec.sandbox.enforced(),
        "child started"
    );
    if let Some(metrics) = &metrics {
        metrics.child_started();
    }

    let mut oom = OomReporter { limit_mib: config.limits.enforced_memory().map_or(0, |m| m.max_mib), reported: 0 };
    let mut process_limit = ProcessLimitReporter { limit: config.limits.process_limit.unwrap_or(0), reported: false };
    let stop = Stop { config, pid };
    let mut phase = Phase::Running;
    let (status, killed_for) = loop {
        if let Phase::Ended { status, killed_for } = phase {
            break (status, killed_for);
        }
        phase = match container.next_event(phase.deadline()) {
            // Neither changes the run's course.
            Ok(Event::MemoryLimitHit) => {
                oom.report_new(container.totals().oom_kills);
                phase
            }
            Ok(Event::ProcessLimitHit) => {
                process_limit.report(container.totals().process_limit_refusals);
                phase
            }
            Ok(Event::PassOn(signal)) => {
                tracing::info!(signal = signal.name(), "signal passed on to the child");
                container.signal_child(signal);
                phase
            }
            Ok(event) => stop.next(phase, event, &mut container),
            Err(e) => {
                tracing::error!(error = %e, "cannot wait for the child: killing the workload");
                Phase::Ended { status: None, killed_for: None }
            }
        };
    };
    if let Some(metrics) = &metrics {
        metrics.child_exited();
    }
    // Read before removal: the group's counters go with it.
    let totals = container.totals();
    let oom_kills = totals.oom_kills.unwrap_or(0);
    remove(container);
    let status = match status {
        Some(status) => status,
        None => return (Ending::NotStarted(EXIT_DAMON_FAILED), Some(totals)),
    };
    let ending = Ending::of(status, oom_kills, killed_for.unwrap_or(Ending::KilledAfterTimeout));
    if ending == Ending::OutOfMemory {
        tracing::error!(
            pid,
            oom_kills,
            "memory limit of {} MiB exceeded: {} killed by the OOM killer",
            oom.limit_mib,
            pid
        );
    } else {
        // Kills the live watch missed (the child exited at once, or there is no watch).
        if totals.oom_kills.is_some() {
            oom.report_new(totals.oom_kills);
        }
    }
    process_limit.summarize(totals.process_limit_refusals);
    match ending {
        Ending::Exited(code) => tracing::info!(pid, exit_code = code, "child exited"),
        Ending::Signaled(signal) => tracing::warn!(pid, signal = signal.name(), "child killed by a signal"),
        _ => {}
    }
    (ending, Some(totals))
}

/// Logs the first time the process limit refuses a fork, as it happens (cgroup v2; Windows'
/// backend logs its own), and the total when the run ends (the only report on v1, which has
/// no notification). A fork bomb refused thousands of times is two lines; the count is a metric.
struct ProcessLimitReporter {
    limit: u64,
    reported: bool,
}

impl ProcessLimitReporter {
    fn report(&mut self, refusals: Option<u64>) {
        let refusals = match refusals {
            Some(n) if n > 0 && !self.reported => n,
            _ => return,
        };
        self.reported = true;
        tracing::error!(
            process_limit = self.limit,
            process_limit_refusals = refusals,
            "process limit of {} reached: the kernel refuses forks of the workload",
            self.limit
        );
    }

    fn summarize(&self, refusals: Option<u64>) {
        if let Some(refusals) = refusals.filter(|&n| n > 0) {
            tracing::error!(
                process_limit = self.limit,
                process_limit_refusals = refusals,
                "process limit of {} reached during the run: {} forks of the workload refused",
                self.limit,
                refusals
            );
        }
    }
}

/// Logs each OOM kill of a process of the workload once, as it happens or at the end.
struct OomReporter {
    limit_mib: u64,
    reported: u64,
}

impl OomReporter {
    /// `total` is the group's OOM kill counter, `None` where the kernel has none.
    fn report_new(&mut self, total: Option<u64>) {
        // The limit can be hit and resolved by reclaim without a kill: only a new kill counts.
        if total.map_or(false, |n| n <= self.reported) {
            return;
        }
        self.reported = total.unwrap_or(self.reported);
        tracing::error!(
            oom_kills = total,
            "memory limit of {} MiB exceeded: a process of the workload was killed by the OOM killer",
            self.limit_mib
        );
    }
}

/// Kills what is left of the workload and removes the container, logging what failed.
fn remove(container: Backend) {
    for e in container.remove() {
        tracing::error!(error = %e, "cannot remove the container");
        logging::stderr_line(&format!("cannot remove the container: {}", e));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        let timeout = Ending::KilledAfterTimeout;
        assert_eq!(Ending::of(ExitStatus::Code(3), 0, timeout).exit_code(), 3);
        assert_eq!(Ending::of(ExitStatus::Signal(Signal(15)), 0, timeout).exit_code(), 143);
        assert_eq!(Ending::of(ExitStatus::Signal(Signal(9)), 1, timeout), Ending::OutOfMemory);
        assert_eq!(Ending::of(ExitStatus::Terminated, 0, timeout), Ending::KilledAfterTimeout);
        let second_stop = Ending::KilledOnSecondStop;
        assert_eq!(Ending::of(ExitStatus::Terminated, 0, second_stop), second_stop);
        assert_eq!(second_stop.exit_code(), 137);
        assert_eq!(Ending::KilledAfterTimeout.exit_code(), 137);
        assert_eq!(Ending::OutOfMemory.exit_code(), 137);
        assert_eq!(Ending::NotStarted(EXIT_NOT_FOUND).exit_code(), 127);
    }
}
