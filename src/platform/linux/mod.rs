//! The Linux backend: the workload in a cgroup (v2 where the host has it, else v1), started
//! into it between its clone and its exec, watched through a signalfd, and removed however damon
//! ends.

pub mod allocator;
pub mod anchored_dir;
mod cgroup;
mod descriptors;
mod host;
mod mountinfo;
mod own_limits;
mod process;
mod sandbox;
pub mod sockets;

use std::ffi::OsString;
use std::sync::Arc;
use std::time::Instant;

use nix::poll::PollFlags;
use nix::sys::signal::{kill, Signal as NixSignal};
use nix::unistd::Pid;

use self::cgroup::block_device;
use self::cgroup::bpf::{self, NetworkAccounting};
use self::cgroup::cpuset::Plan;
use self::cgroup::guard::Journal;
use self::cgroup::hierarchy::Hierarchies;
use self::cgroup::limit_watch::{EmptyWatch, OomWatch, ProcessLimitWatch};
use self::cgroup::{choose, guard_home, read_cpuset, with_way_out, Cgroup, CountedGroup};
use self::host::HostCpu;
use self::own_limits::OwnLimits;
use self::process::own_process;
use self::process::signals::{self, SignalWaiter, Wake, PASS_ON_SIGNALS, STOP_SIGNALS};
use self::process::spawn::{self, ChildProcess, Ended, Placement};
use super::{
    Container, ContainerError, ContainerSpec, Event, ExitStatus, HostReport, NoSampler, OwnProcess, Sampler, Signal,
    SpawnError,
};
use crate::config::Config;
use crate::stats::Sample;

pub use self::process::identity::Identity;
pub use self::sandbox::Sandbox;

impl Signal {
    pub fn name(self) -> &'static str {
        NixSignal::try_from(self.0).map(NixSignal::as_str).unwrap_or("unknown signal")
    }
}

pub struct Backend {
    signals: SignalWaiter,
    cgroup: Option<Cgroup>,
    /// The programs counting the workload's traffic, where the kernel allows them.
    network: Option<Arc<NetworkAccounting>>,
    /// What damon changed in the hierarchy, known to the guard; `None` when uncontained.
    journal: Option<Journal>,
    oom_watch: Option<OomWatch>,
    process_limit_watch: Option<ProcessLimitWatch>,
    /// Set while the rest of the workload drains after the child (a tree-scope stop).
    empty_watch: Option<EmptyWatch>,
    child: Option<ChildProcess>,
    /// The sandbox's init once the command has ended: it ends by itself, and is reaped by the
    /// time the groups are removed. The run's end does not wait for it (nor for its
    /// namespaces' teardown, which the kernel does in its exit).
    ended_init: Option<ChildProcess>,
    identity: Identity,
    sandbox: Arc<Sandbox>,
    /// The workload's cpuset, for the log; `None` if it could not be read.
    cpuset: Option<String>,
    /// Set once kill_all ran: a SIGKILLed child was then killed by damon.
    killed_all: bool,
    /// damon's resource limits before the child existed, raised back as each stop and the end begin.
    own_limits: OwnLimits,
}

impl Backend {
    /// Takes over the signals damon handles. First of all, so that a stop arriving while the
    /// cgroup is being made queues instead of killing damon and leaving the group behind.
    fn take_signals() -> Result<SignalWaiter, ContainerError> {
        SignalWaiter::install().map_err(|e| ContainerError::new("cannot set up signal handling", e))
    }

    fn counted_group(&self) -> Option<CountedGroup> {
        let cgroup = self.cgroup.clone()?;
        Some(CountedGroup { cgroup, network: self.network.clone() })
    }

    fn child_pid(&self) -> Option<Pid> {
        self.child.as_ref().map(ChildProcess::pid)
    }

    /// How the child ended, as the run reports it: a SIGKILL after [`Container::kill_all`] is
    /// damon's.
    fn exit_status(&self, ended: Ended) -> ExitStatus {
        match ended {
            Ended::Code(code) => ExitStatus::Code(code),
            Ended::Signal(sig) if sig == NixSignal::SIGKILL as i32 && self.killed_all => ExitStatus::Terminated,
            Ended::Signal(sig) => ExitStatus::Signal(Signal(sig)),
        }
    }

    /// The next event, or `deadline` passed ([`Container::next_event`]).
    fn wait_for_event(&mut self, deadline: Option<Instant>) -> Result<Event, ContainerError> {
        loop {
            let oom_target = self.oom_watch.as_ref().map(OomWatch::poll_target);
            let process_limit_target = self.process_limit_watch.as_ref().map(ProcessLimitWatch::poll_target);
            // The guard never writes: its socket becomes readable only when the guard is gone.
            let guard_target = self.journal.as_ref().and_then(Journal::guard_socket).map(|fd| (fd, PollFlags::POLLIN));
            let empty_target = self.empty_watch.as_ref().and_then(EmptyWatch::poll_target);
            let command_target =
                self.child.as_ref().and_then(ChildProcess::status_pipe).map(|fd| (fd, PollFlags::POLLIN));
            // A v1 group without pidfds gives no notice of its emptying: look again now and then.
            let recheck = match (&self.empty_watch, empty_target) {
                (Some(_), None) => Some(Instant::now() + EmptyWatch::V1_RECHECK_WITHOUT_PIDFD),
                _ => None,
            };
            let wake_at = match (deadline, recheck) {
                (Some(d), Some(r)) => Some(d.min(r)),
                (d, r) => d.or(r),
            };
            let wake = self
                .signals
                .next(wake_at, &[oom_target, process_limit_target, guard_target, empty_target, command_target])
                .map_err(|e| ContainerError::new("cannot read signals", e))?;
            let signal = match wake {
                Wake::Deadline if deadline.map_or(false, |d| Instant::now() >= d) => return Ok(Event::DeadlinePassed),
                Wake::Deadline | Wake::Extra(3) => {
                    if self.empty_watch.as_mut().map_or(false, EmptyWatch::is_empty) {
                        self.empty_watch = None;
                        return Ok(Event::WorkloadEmpty);
                    }
                    continue;
                }
                Wake::Extra(0) => {
                    if let Some(watch) = self.oom_watch.as_mut() {
                        watch.acknowledge();
                    }
                    return Ok(Event::MemoryLimitHit);
                }
                Wake::Extra(1) => {
                    self.process_limit_watch = None;
                    return Ok(Event::ProcessLimitHit);
                }
                Wake::Extra(4) => {
                    // The sandbox's init wrote the command's end (or ended without: its own end
                    // then comes with its SIGCHLD).
                    if let Some(ended) = self.child.as_mut().and_then(ChildProcess::command_status) {
                        self.ended_init = self.child.take();
                        return Ok(Event::ChildExited(self.exit_status(ended)));
                    }
                    continue;
                }
                // 2: the guard's socket.
                Wake::Extra(_) => {
                    if let Some(journal) = self.journal.as_mut() {
                        journal.guard_lost();
                    }
                    continue;
                }
                Wake::Signal(signal) => signal,
            };
            if signal == NixSignal::SIGCHLD {
                // SIGCHLD also comes from the guard and the sandbox's init, and several exits
                // may share one.
                if let Some(init) = self.ended_init.as_mut() {
                    if let Ok(Some(_)) = init.try_wait() {
                        self.ended_init = None;
                    }
                }
                if let Some(child) = self.child.as_mut() {
                    if let Ok(Some(ended)) = child.try_wait() {
                        self.child = None;
                        return Ok(Event::ChildExited(self.exit_status(ended)));
                    }
                }
            } else if STOP_SIGNALS.contains(&signal) {
                return Ok(Event::Stop(Signal(signal as i32)));
            } else if PASS_ON_SIGNALS.contains(&signal) {
                return Ok(Event::PassOn(Signal(signal as i32)));
            }
        }
    }
}

impl Container for Backend {
    fn create(spec: &ContainerSpec) -> Result<Self, ContainerError> {
        // DAMON_RESTRICTED_TOKEN and DAMON_USER are in spec.identity, applied at spawn.
        let signals = Self::take_signals()?;
        // Before the guard's fork: the guard's record is this one.
        let own_limits = OwnLimits::record();
        // The guard exists before the first change to the hierarchy, and hears of each one first.
        let hierarchies = Hierarchies::read()?;
        let version = choose(&hierarchies);
        let mut journal =
            Journal::start(guard_home(&hierarchies, version.as_ref().ok().copied()).as_deref(), own_limits)
                .map_err(|e| ContainerError::new("cannot start the guard process", e))?;
        let created = version
            .map_err(ContainerError::message)
            .and_then(|version| Cgroup::create(spec, &hierarchies, version, &mut journal))
            .and_then(|(cgroup, cores)| {
                let network = cgroup.attach_network_programs(&spec.limits)?;
                Ok((cgroup, cores, network.map(Arc::new)))
            });
        let (cgroup, cores, network) = match created {
            Ok(created) => created,
            Err(e) => {
                for undo_error in journal.undo() {
                    tracing::error!(error = %undo_error, "cannot undo the cgroup set-up");
                }
                return Err(with_way_out(e));
            }
        };
        let oom_watch = match cgroup.oom_watch() {
            Ok(watch) => watch,
            Err(e) => {
                // Only the live report is lost: the exit still tells an OOM kill apart.
                tracing::warn!(error = %e, "cannot watch the memory limit; OOM kills are reported when the run ends");
                None
            }
        };
        let process_limit_watch = cgroup.process_limit_watch(&spec.limits).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot watch the process limit; refused forks are reported when the run ends");
            None
        });
        if let Some(cpuset) = &cores.cpuset {
            cores.plan.log(cpuset, spec.limits.cores.as_ref());
        }
        Ok(Backend {
            signals,
            cgroup: Some(cgroup),
            network,
            journal: Some(journal),
            oom_watch,
            process_limit_watch,
            empty_watch: None,
            child: None,
            ended_init: None,
            identity: spec.identity.clone(),
            sandbox: spec.sandbox.clone(),
            cpuset: cores.workload_cpus(),
            killed_all: false,
            own_limits,
        })
    }

    fn uncontained(spec: &ContainerSpec) -> Result<Self, ContainerError> {
        Ok(Backend {
            signals: Self::take_signals()?,
            cgroup: None,
            network: None,
            journal: None,
            oom_watch: None,
            process_limit_watch: None,
            empty_watch: None,
            child: None,
            ended_init: None,
            identity: spec.identity.clone(),
            sandbox: spec.sandbox.clone(),
            // The child inherits damon's own cpuset.
            cpuset: Hierarchies::read()
                .ok()
                .and_then(|h| choose(&h).ok().and_then(|version| read_cpuset(&h, version, None).ok()))
                .map(|cpuset| cpuset.effective.to_string()),
            killed_all: false,
            own_limits: OwnLimits::record(),
        })
    }

    fn location(&self) -> Option<String> {
        self.cgroup.as_ref().map(Cgroup::location)
    }

    fn cpuset(&self) -> Option<String> {
        self.cpuset.clone()
    }

    fn spawn(&mut self, command: &[OsString]) -> Result<u32, SpawnError> {
        // The child inherits damon's environment, so its PATH is the one execvp would search.
        let path_var = std::env::var_os("PATH");
        let program = spawn::resolve(&command[0], path_var.as_deref())?;
        let join_files = self.cgroup.as_ref().map(Cgroup::join_files).unwrap_or_default();
        let placement = Placement { v2_group: self.cgroup.as_ref().and_then(Cgroup::v2_dir), join_files: &join_files };
        for gap in self.sandbox.gaps() {
            tracing::warn!(gap = %gap, "sandbox: not all of it is enforced on this host");
        }
        let sandbox =
            self.sandbox.prepare().map_err(|e| SpawnError::Other("cannot prepare the sandbox".to_string(), e))?;
        let child = spawn::spawn_in(&program, command, &placement, &self.identity, &sandbox)?;
        let pid = child.id();
        self.child = Some(child);
        Ok(pid)
    }

    fn start_method(&self) -> Option<String> {
        self.cgroup.as_ref().and(self.child.as_ref()).map(|child| child.start.clone())
    }

    fn next_event(&mut self, deadline: Option<Instant>) -> Result<Event, ContainerError> {
        let event = self.wait_for_event(deadline);
        // Each step of a stop and the run's end begin with one of the other events (or a failure
        // to wait): what the workload lowered of damon's limits meanwhile, which they need
        // (descriptors for the cgroup files, file size for the log), is raised back first.
        if !matches!(event, Ok(Event::PassOn(_) | Event::MemoryLimitHit | Event::ProcessLimitHit)) {
            self.own_limits.restore("damon's");
        }
        event
    }

    fn signal_child(&mut self, signal: Signal) {
        if let (Some(pid), Ok(signal)) = (self.child_pid(), NixSignal::try_from(signal.0)) {
            let _ = kill(pid, signal);
        }
    }

    fn signal_tree(&mut self, signal: Signal) -> Result<usize, ContainerError> {
        let nix_signal =
            NixSignal::try_from(signal.0).map_err(|e| ContainerError::new("cannot pass the stop on", e))?;
        // The sandbox's init first: it must know of the stop before it reaps the command's end,
        // or it would end with the command and take the rest of the workload with it before
        // it has drained.
        if let Some(init) = self.child.as_ref().filter(|child| child.status_pipe().is_some()) {
            let _ = kill(init.pid(), nix_signal);
        }
        match &self.cgroup {
            Some(cgroup) => cgroup.signal_all(nix_signal).map_err(ContainerError::from),
            // Uncontained: only the direct child is known.
            None => {
                self.signal_child(signal);
                Ok(usize::from(self.child.is_some()))
            }
        }
    }

    fn watch_emptying(&mut self) -> bool {
        let mut watch = match self.cgroup.as_ref().map(Cgroup::empty_watch) {
            Some(Ok(watch)) => watch,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "cannot watch the rest of the workload drain: ending it now");
                return false;
            }
            None => return false,
        };
        if watch.is_empty() {
            return false;
        }
        self.empty_watch = Some(watch);
        true
    }

    fn stopping(&mut self, signal: Signal) {
        if let Some(journal) = self.journal.as_mut() {
            journal.stop_began(signal.0);
        }
    }

    fn kill_all(&mut self) -> Result<(), ContainerError> {
        self.killed_all = true;
        match &self.cgroup {
            Some(cgroup) => cgroup.kill_all().map_err(ContainerError::from),
            None => {
                // Uncontained: only the direct child is known.
                if let Some(pid) = self.child_pid() {
                    let _ = kill(pid, NixSignal::SIGKILL);
                }
                Ok(())
            }
        }
    }

    fn totals(&self) -> Sample {
        self.counted_group().map_or_else(Sample::default, |group| group.totals())
    }

    fn sampler(&self) -> Arc<dyn Sampler> {
        match self.counted_group() {
            Some(group) => Arc::new(group),
            None => Arc::new(NoSampler),
        }
    }

    fn remove(mut self) -> Vec<ContainerError> {
        let mut errors = Vec::new();
        // The sandbox's init is reaped first, so that the groups are empty for their removal.
        // It ends by itself once the command has, except in a tree-scope stop whose rest has
        // not drained: what is left is killed now in any case, and killing the init kills its
        // namespace.
        if let Some(mut init) = self.ended_init.take() {
            let _ = kill(init.pid(), NixSignal::SIGKILL);
            let _ = init.wait();
        }
        // The journal's undo kills what is left of the workload (through the freezer on v1)
        // before it removes the groups, and lists and kills nothing when they are empty.
        if let Some(journal) = self.journal.take() {
            errors.extend(journal.undo().into_iter().map(ContainerError::from));
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
        errors
    }
}

/// Makes the signals damon handles wait (blocked) from damon's first instruction on, so that a
/// stop sent while damon starts (Nomad may stop a task at any moment) is read by the
/// supervisor and passed on, instead of ending damon by the signal's default action before it
/// has a container or a child. The child gets an empty mask back before its exec.
pub fn defer_signals() {
    // Best effort: should it fail, the signal waiter's own sigprocmask reports the error.
    let _ = signals::block_handled();
}

/// Keeps what damon inherited from reaching the workload (see [`descriptors`]).
pub fn close_inherited_on_exec() {
    descriptors::close_inherited_on_exec();
}

/// The host's CPUs and MHz per core, as the CPU limit uses them.
pub fn host_cpu() -> Option<super::HostCpu> {
    HostCpu::read().ok().map(|cpu| super::HostCpu { cpus: cpu.online_cpus, mhz_per_core: cpu.mhz_per_core })
}

/// damon's own figures from /proc/self.
pub fn own_process() -> OwnProcess {
    own_process::read()
}

/// What `damon --check` reports: the cgroup set-up damon would use and a trial group.
pub fn host_report(config: &Config) -> HostReport {
    let mut facts = Vec::new();
    let mut problem = None;
    match HostCpu::read() {
        Ok(cpu) => {
            facts.push(("online CPUs", cpu.online_cpus.to_string()));
            facts.push(("MHz per core", format!("{} (from {})", cpu.mhz_per_core, cpu.mhz_source)));
        }
        Err(e) if config.limits.enforced_cpu().is_some() => problem = Some(e),
        Err(e) => facts.push(("MHz per core", format!("unknown: {}", e))),
    }
    let hierarchies = match Hierarchies::read() {
        Ok(h) => h,
        Err(e) => {
            return HostReport { facts, problem: Some(e.to_string()) };
        }
    };
    if let Some(v2) = &hierarchies.v2 {
        let controllers = std::fs::read_to_string(v2.mount_point.join("cgroup.controllers")).unwrap_or_default();
        facts.push(("cgroup v2 mount", format!("{} (controllers: {})", v2.mount_point.display(), controllers.trim())));
    }
    for h in &hierarchies.v1 {
        facts.push(("cgroup v1 mount", format!("{} ({})", h.mount_point.display(), h.controllers.join(","))));
    }
    facts.push((
        "network accounting",
        if !config.limits.network_accounting {
            "off (DAMON_NETWORK_ACCOUNTING=N)".to_string()
        } else {
            // The probe loads a map and a program: only when the accounting is asked for.
            match (bpf::unavailable(), &hierarchies.v2) {
                (None, Some(v2)) => {
                    format!("counted by cgroup BPF programs on the workload's group under {}", v2.mount_point.display())
                }
                (why, _) => format!("unavailable, the network_* figures are absent: {}", why.unwrap_or_default()),
            }
        },
    ));
    match choose(&hierarchies) {
        Err(e) => problem = problem.or(Some(e)),
        Ok(version) => {
            facts.push(("cgroup version used", version.to_string()));
            match read_cpuset(&hierarchies, version, config.cgroup_parent.as_deref()) {
                Ok(cpuset) => {
                    facts.push(("effective cpuset", cpuset.describe()));
                    match cpuset.plan(config.limits.cores.as_ref()) {
                        Ok(Plan::Inherit) => {}
                        Ok(plan) => facts.push(("workload cpuset", plan.describe(&cpuset))),
                        Err(e) => problem = problem.or(Some(e)),
                    }
                }
                Err(e) => facts.push(("effective cpuset", format!("unknown: {}", e))),
            }
            if let Ok(disks) = block_device::limited_disks(&config.limits.io) {
                if !disks.is_empty() {
                    let shown: Vec<String> = disks.iter().map(ToString::to_string).collect();
                    facts.push(("IO limits on disks", shown.join(",")));
                }
            }
            // A trial group with the configured limits proves damon may create and limit one here.
            let spec = ContainerSpec {
                name: format!("damon-check-{}", std::process::id()),
                limits: config.limits.clone(),
                parent: config.cgroup_parent.clone(),
                restricted_token: false,
                identity: Identity::unchanged(),
                sandbox: Arc::new(Sandbox::none()),
            };
            let mut journal =
                match Journal::start(guard_home(&hierarchies, Some(version)).as_deref(), OwnLimits::record()) {
                    Ok(journal) => journal,
                    Err(e) => {
                        problem = problem.or(Some(format!("cannot start the guard process: {}", e)));
                        return HostReport { facts, problem };
                    }
                };
            match Cgroup::create(&spec, &hierarchies, version, &mut journal) {
                Ok((cgroup, _)) => facts.push(("group would be created at", cgroup.location())),
                Err(e) if config.limits.container_optional() => {
                    facts.push(("containment", format!("unavailable, the command would run uncontained: {}", e)));
                }
                Err(e) => problem = problem.or(Some(with_way_out(e).to_string())),
            }
            if let Some(e) = journal.undo().first() {
                problem = problem.or(Some(format!("cannot remove the trial group: {}", e)));
            }
        }
    }
    HostReport { facts, problem }
}
