//! The Windows backend: the workload in a Job Object with KILL_ON_JOB_CLOSE, started inside
//! it with a console of its own, stopped with a console event (Ctrl+Break, or Ctrl+C) on that
//! console, watched through a completion port.

pub mod anchored_dir;
mod command_line;
mod console;
mod ffi;
mod host;
mod identity;
mod job;
mod notifications;
mod sandbox;
pub mod sockets;

use std::ffi::OsString;
use std::os::windows::io::OwnedHandle;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use windows_sys::Win32::Foundation::{
    ERROR_ACCESS_DENIED, ERROR_BAD_EXE_FORMAT, ERROR_FILE_NOT_FOUND, ERROR_PATH_NOT_FOUND,
};
use windows_sys::Win32::System::Console::{
    CTRL_BREAK_EVENT, CTRL_CLOSE_EVENT, CTRL_C_EVENT, CTRL_LOGOFF_EVENT, CTRL_SHUTDOWN_EVENT,
};

use self::host::HostCpu;
use self::job::JobObject;
use self::notifications::{Counters, Notifications, ReportedLimits};
use super::{
    Container, ContainerError, ContainerSpec, Event, ExitStatus, HostReport, NoSampler, OwnProcess, Sampler, Signal,
    SpawnError,
};
use crate::config::Config;
use crate::stats::Sample;

pub use self::identity::Identity;
pub use self::sandbox::Sandbox;

/// The exit code the job's processes get when damon terminates the job; the supervisor
/// reports the run as killed (137, as a SIGKILL on Linux).
const TERMINATED_EXIT_CODE: u32 = 137;

impl Signal {
    pub fn name(self) -> &'static str {
        match self.0 as u32 {
            CTRL_C_EVENT => "CTRL_C_EVENT",
            CTRL_BREAK_EVENT => "CTRL_BREAK_EVENT",
            CTRL_CLOSE_EVENT => "CTRL_CLOSE_EVENT",
            CTRL_LOGOFF_EVENT => "CTRL_LOGOFF_EVENT",
            CTRL_SHUTDOWN_EVENT => "CTRL_SHUTDOWN_EVENT",
            _ => "unknown console event",
        }
    }
}

struct Child {
    process: OwnedHandle,
    id: u32,
}

pub struct Backend {
    job: Option<Arc<JobObject>>,
    /// The cores the job is pinned to, for the log.
    cores: Option<String>,
    notifications: Option<Notifications>,
    restricted_token: bool,
    ctrl_event: OwnedHandle,
    child: Option<Child>,
    terminated: bool,
    /// The child has exited, and the rest of the job drains (a tree-scope stop): the next
    /// events are the job's emptying, a stop, or the deadline.
    draining: bool,
    /// The console event last sent to the workload, and when: a repeat within
    /// [`CONSOLE_EVENT_REPEAT`] is not sent again (each takes a helper process).
    last_console_event: Option<(u32, Instant)>,
}

/// How soon the same console event is sent to the workload again when damon gets another stop
/// (a storm of them from a terminal or a script would otherwise start a helper process each).
const CONSOLE_EVENT_REPEAT: std::time::Duration = std::time::Duration::from_secs(1);

fn console_events() -> Result<OwnedHandle, ContainerError> {
    let event = ffi::create_event().map_err(|e| ContainerError::new("cannot create an event", e))?;
    let handler_event = event.try_clone().map_err(|e| ContainerError::new("cannot duplicate an event handle", e))?;
    ffi::install_ctrl_handler(handler_event).map_err(|e| ContainerError::new("cannot handle console events", e))?;
    Ok(event)
}

impl Backend {
    fn with_job(
        job: Option<JobObject>,
        limits: ReportedLimits,
        restricted_token: bool,
    ) -> Result<Self, ContainerError> {
        let ctrl_event = console_events()?;
        let job = job.map(Arc::new);
        let notifications = match &job {
            Some(job) => match Notifications::start(Arc::clone(job), limits) {
                Ok(n) => Some(n),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch the job's notifications; limit events will not be counted");
                    None
                }
            },
            None => None,
        };
        Ok(Backend {
            job,
            cores: None,
            notifications,
            restricted_token,
            ctrl_event,
            child: None,
            terminated: false,
            draining: false,
            last_console_event: None,
        })
    }
}

impl Container for Backend {
    fn create(spec: &ContainerSpec) -> Result<Self, ContainerError> {
        for (var, list) in [("DAMON_IP_ALLOW", &spec.limits.ip.allow), ("DAMON_IP_DENY", &spec.limits.ip.deny)] {
            if let Some(first) = list.first() {
                return Err(ContainerError::message(format!(
                    "invalid value for {} ({}...): a Job Object has no address filter (it is Linux's cgroup BPF); \
                     unset it, and filter the task's traffic with a Windows Firewall rule for its program \
                     (New-NetFirewallRule -Program PATH -RemoteAddress ... -Action Block)",
                    var, first
                )));
            }
        }
        if let Some(ports) = &spec.limits.bind_ports {
            return Err(ContainerError::message(format!(
                "invalid value for DAMON_BIND_PORTS ({} ports): a Job Object cannot limit what its processes bind (it \
                 is Linux's cgroup BPF); unset it, and limit the program with a Windows Firewall rule \
                 (New-NetFirewallRule -Program PATH -Direction Inbound -LocalPort ...)",
                ports.len()
            )));
        }
        let cpu = match spec.limits.enforced_cpu() {
            Some(_) => Some(HostCpu::read().map_err(ContainerError::message)?),
            None => None,
        };
        let job = JobObject::create(&spec.name)?;
        job.set_limits(&spec.limits, cpu.as_ref())?;
        if spec.limits.io.any() {
            tracing::info!("IO limits set: the job's IO rate control, on every volume");
        }
        if let Some(bytes) = spec.limits.net_max_bytes_per_second {
            tracing::info!(bytes_per_second = bytes, "network limit set: the job's network rate control");
        }
        if let Some(restrictions) = spec.sandbox.ui_restrictions() {
            job.restrict_ui(restrictions)?;
        }
        if let Some(cores) = &spec.limits.cores {
            tracing::info!(cores = %cores.cores, source = %cores.source, "pinned to cores {}", cores.cores);
        }
        let limits = ReportedLimits {
            memory_limit_mib: spec.limits.enforced_memory().map_or(0, |m| m.max_mib),
            process_limit: spec.limits.process_limit.unwrap_or(0),
        };
        let mut backend = Self::with_job(Some(job), limits, spec.restricted_token)?;
        backend.cores = spec.limits.cores.as_ref().map(|c| c.cores.to_string());
        Ok(backend)
    }

    fn uncontained(spec: &ContainerSpec) -> Result<Self, ContainerError> {
        Self::with_job(None, ReportedLimits { memory_limit_mib: 0, process_limit: 0 }, spec.restricted_token)
    }

    fn location(&self) -> Option<String> {
        self.job.as_ref().map(|_| "Job Object".to_string())
    }

    fn cpuset(&self) -> Option<String> {
        self.cores.clone()
    }

    fn spawn(&mut self, command: &[OsString]) -> Result<u32, SpawnError> {
        let line = command_line::join(command);
        let token = if self.restricted_token {
            Some(
                ffi::restricted_token()
                    .map_err(|e| SpawnError::Other("cannot create a restricted token".to_string(), e))?,
            )
        } else {
            None
        };
        let job_handle = self.job.as_ref().map(|job| job.handle());
        let process = ffi::create_suspended_process(&line, job_handle, token.as_ref()).map_err(|e| {
            let program = command[0].clone();
            match ffi::error_code(&e) {
                Some(ERROR_FILE_NOT_FOUND | ERROR_PATH_NOT_FOUND) => SpawnError::NotFound(program),
                Some(ERROR_ACCESS_DENIED | ERROR_BAD_EXE_FORMAT) => SpawnError::NotExecutable(program, e),
                _ => SpawnError::Other(format!("cannot start {}", program.to_string_lossy()), e),
            }
        })?;
        // The child is still suspended: if Windows did not start it inside the job (before
        // Windows 10, or the attribute was ignored), it is assigned now, before it runs.
        if let Some(job) = &self.job {
            let in_job = job.contains(&process.handle).unwrap_or(false);
            if !in_job {
                if let Err(e) = job.assign(&process.handle) {
                    let _ = ffi::terminate_process_now(&process.handle);
                    return Err(SpawnError::Other("cannot put the command in its Job Object".to_string(), e));
                }
            }
        }
        ffi::resume(&process.thread).map_err(|e| SpawnError::Other("cannot resume the command".to_string(), e))?;
        let id = process.id;
        self.child = Some(Child { process: process.handle, id });
        Ok(id)
    }

    fn next_event(&mut self, deadline: Option<Instant>) -> Result<Event, ContainerError> {
        let child = match &self.child {
            Some(child) => child,
            None => return Err(ContainerError::message("no child to wait for")),
        };
        let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let emptied = self.notifications.as_ref().map(|n| &*n.emptied);
        // Once the child has exited (draining), its handle stays signalled: it is left out.
        let woken = match (self.draining, emptied) {
            (true, Some(emptied)) => ffi::wait_any(&[&self.ctrl_event, emptied], timeout).map(|w| w.map(|i| i + 1)),
            _ => ffi::wait_any(&[&child.process, &self.ctrl_event], timeout),
        }
        .map_err(|e| ContainerError::new("cannot wait for the child", e))?;
        match woken {
            None => Ok(Event::DeadlinePassed),
            Some(0) => {
                let code =
                    ffi::exit_code(&child.process).map_err(|e| ContainerError::new("cannot read the exit code", e))?;
                Ok(Event::ChildExited(if self.terminated && code == TERMINATED_EXIT_CODE {
                    ExitStatus::Terminated
                } else {
                    ExitStatus::Code(code as i32)
                }))
            }
            Some(1) => Ok(Event::Stop(Signal(ffi::last_ctrl_type() as i32))),
            Some(_) => {
                self.draining = false;
                Ok(Event::WorkloadEmpty)
            }
        }
    }

    fn watch_emptying(&mut self) -> bool {
        // The job's notifications say when its last process has ended.
        self.draining = match (&self.job, &self.notifications) {
            (Some(job), Some(_)) => job.process_ids().map_or(false, |ids| !ids.is_empty()),
            _ => false,
        };
        self.draining
    }

    fn signal_child(&mut self, signal: Signal) {
        // The event reaches every console process of the job: Windows delivers Ctrl+C to a
        // whole console only (console.rs). The scope decides what damon waits for.
        let event = signal.0 as u32;
        let repeat =
            matches!(self.last_console_event, Some((last, at)) if last == event && at.elapsed() < CONSOLE_EVENT_REPEAT);
        if let (Some(child), false) = (&self.child, repeat) {
            if let Err(e) = console::send(event, child.id) {
                tracing::warn!(error = %e, event = signal.name(), "cannot send the console event to the workload");
            }
            self.last_console_event = Some((event, Instant::now()));
        }
    }

    fn signal_tree(&mut self, signal: Signal) -> Result<usize, ContainerError> {
        let processes = match &self.job {
            Some(job) => {
                job.process_ids().map_err(|e| ContainerError::new("cannot list the job's processes", e))?.len()
            }
            None => usize::from(self.child.is_some()),
        };
        self.signal_child(signal);
        Ok(processes)
    }

    fn kill_all(&mut self) -> Result<(), ContainerError> {
        self.terminated = true;
        match (&self.job, &self.child) {
            (Some(job), _) => {
                job.terminate(TERMINATED_EXIT_CODE).map_err(|e| ContainerError::new("cannot terminate the job", e))
            }
            (None, Some(child)) => ffi::terminate_process_now(&child.process)
                .map_err(|e| ContainerError::new("cannot terminate the child", e)),
            (None, None) => Ok(()),
        }
    }

    fn sampler(&self) -> Arc<dyn Sampler> {
        match &self.job {
            Some(job) => Arc::new(JobSampler {
                job: Arc::clone(job),
                counters: self.notifications.as_ref().map(|n| Arc::clone(&n.counters)),
            }),
            None => Arc::new(NoSampler),
        }
    }

    fn remove(mut self) -> Vec<ContainerError> {
        let mut errors = Vec::new();
        // Whatever the child left running goes with the job.
        if let Some(job) = &self.job {
            if job.process_ids().map_or(true, |ids| !ids.is_empty()) {
                if let Err(e) = job.terminate(TERMINATED_EXIT_CODE) {
                    errors.push(ContainerError::new("cannot terminate the job", e));
                }
            }
        }
        self.notifications = None;
        self.child = None;
        // Closing the last handle closes the job (KILL_ON_JOB_CLOSE ends anything left).
        self.job = None;
        errors
    }
}

/// Reads the job's accounting and its processes' memory, from any thread.
struct JobSampler {
    job: Arc<JobObject>,
    counters: Option<Arc<Counters>>,
}

impl Sampler for JobSampler {
    fn sample(&self) -> Sample {
        let job = &self.job;
        let mut sample = Sample::default();
        if let Ok(a) = job.accounting() {
            sample.cpu_user = Some(a.user);
            sample.cpu_system = Some(a.kernel);
            sample.page_faults = Some(a.page_faults);
            sample.processes = Some(a.active_processes);
            sample.io_read_operations = Some(a.read_operations);
            sample.io_write_operations = Some(a.write_operations);
            sample.io_other_operations = Some(a.other_operations);
            sample.io_read_bytes = Some(a.read_bytes);
            sample.io_write_bytes = Some(a.write_bytes);
            sample.io_other_bytes = Some(a.other_bytes);
        }
        sample.memory_peak_bytes = job.peak_memory_bytes().ok();
        // The original read only the first child's counters; the job's whole list counts.
        if let Ok(ids) = job.process_ids() {
            let (mut working_set, mut commit) = (0, 0);
            for id in ids {
                if let Some((ws, private)) = ffi::process_memory(id as u32) {
                    working_set += ws;
                    commit += private;
                }
            }
            sample.memory_bytes = Some(working_set);
            sample.memory_commit_bytes = Some(commit);
        }
        if let Some(c) = &self.counters {
            sample.cpu_notifications = Some(c.cpu_notifications.load(Ordering::Relaxed));
            sample.memory_notifications = Some(c.memory_notifications.load(Ordering::Relaxed));
            sample.io_notifications = Some(c.io_notifications.load(Ordering::Relaxed));
            sample.memory_limit_hits = Some(c.memory_limit_hits.load(Ordering::Relaxed));
            sample.process_limit_refusals = Some(c.process_limit_hits.load(Ordering::Relaxed));
        }
        sample
    }
}

/// Nothing to defer on Windows: console events reach damon's handler once it is installed,
/// and the job does not exist before then.
pub fn defer_signals() {}

/// Linux marks inherited descriptors close-on-exec. On Windows nothing is needed here: the
/// child is created with a handle list naming damon's standard handles only
/// (PROC_THREAD_ATTRIBUTE_HANDLE_LIST, ffi::create_suspended_process).
pub fn close_inherited_on_exec() {}

/// damon.exe run as its own console-event helper: its exit code (console.rs).
pub fn helper(args: &[OsString]) -> Option<i32> {
    console::helper(args)
}

/// The host's logical processors and MHz per core, as the CPU limit uses them.
pub fn host_cpu() -> Option<super::HostCpu> {
    HostCpu::read().ok().map(|cpu| super::HostCpu {
        cpus: u64::from(cpu.logical_processors),
        mhz_per_core: u64::from(cpu.mhz_per_core),
    })
}

/// damon's own figures, for the process_* metrics.
pub fn own_process() -> OwnProcess {
    ffi::own_process()
}

/// What `damon --check` reports on Windows.
pub fn host_report(config: &Config) -> HostReport {
    let mut facts = Vec::new();
    let mut problem = None;
    match HostCpu::read() {
        Ok(cpu) => {
            facts.push(("logical processors", cpu.logical_processors.to_string()));
            facts.push(("MHz per core", format!("{} (from the registry, ~MHz)", cpu.mhz_per_core)));
        }
        Err(e) if config.limits.enforced_cpu().is_some() => problem = Some(e),
        Err(e) => facts.push(("MHz per core", format!("unknown: {}", e))),
    }
    facts.push(("enclosing job", job::describe_enclosing_job()));
    // A trial job with the configured limits proves Windows accepts them here.
    let spec = ContainerSpec {
        name: format!("damon-check-{}", std::process::id()),
        limits: config.limits.clone(),
        parent: None,
        restricted_token: config.restricted_token,
        identity: Identity::unchanged(),
        sandbox: Arc::new(Sandbox::none()),
    };
    match JobObject::create(&spec.name).and_then(|job| {
        let cpu = HostCpu::read().ok();
        job.set_limits(&spec.limits, cpu.as_ref())
    }) {
        Ok(()) => {
            facts.push(("containment", "Job Object with the configured limits".to_string()));
            if let Some(cores) = &config.limits.cores {
                facts.push(("cores", format!("{} (the job's affinity)", cores.cores)));
            }
        }
        Err(e) if config.limits.container_optional() => {
            facts.push(("containment", format!("unavailable, the command would run uncontained: {}", e)))
        }
        Err(e) => problem = problem.or(Some(e.to_string())),
    }
    HostReport { facts, problem }
}
