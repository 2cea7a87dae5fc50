//! The stop, as one state machine: what damon does with each event from the child's start to
//! the status the run ends with.
//!
//! ```text
//!  Running ──stop──▶ Stopping ──deadline, second stop──▶ Killed ──child exits──▶ Ended
//!     │                 │  └──child exits (tree scope, others left)──▶ Draining
//!     │                 └──child exits──▶ Ended            │ empty, deadline, second stop
//!     └──child exits──▶ Ended                              ▼
//!                                                        Ended
//! ```
//!
//! A stop passes the signal on (DAMON_STOP_SIGNAL in its place, if set) to the child or to every
//! process (DAMON_STOP_SIGNAL_SCOPE); the kill timeout starts with the first one. Under Nomad
//! there is no deadline of damon's own: Nomad's kill ends a stop the workload does not obey.
//! Outside Nomad a second stop kills at once. With the tree scope every process got the stop,
//! so when the child exits the others get the rest of the timeout to end too (Draining).

use std::time::Instant;

use crate::config::{Config, StopScope};
use crate::platform::{Backend, Container, Event, ExitStatus, Signal};

use super::Ending;

/// Where the run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The child runs; no stop came.
    Running,
    /// A stop was passed on; at `deadline` damon kills every process.
    Stopping { deadline: Option<Instant> },
    /// The child exited (`status`) during a tree-scope stop; the rest of the workload has until
    /// `deadline`.
    Draining { status: ExitStatus, deadline: Option<Instant> },
    /// damon killed every process, for `reason`; the child's end is awaited.
    Killed { reason: Ending },
    /// The run is over: the child's status (none where damon could not wait for it), and why
    /// damon killed the tree if it did.
    Ended { status: Option<ExitStatus>, killed_for: Option<Ending> },
}

impl Phase {
    /// When the next kill is due, if one is.
    pub fn deadline(self) -> Option<Instant> {
        match self {
            Phase::Stopping { deadline } | Phase::Draining { deadline, .. } => deadline,
            _ => None,
        }
    }

    fn killed_for(self) -> Option<Ending> {
        match self {
            Phase::Killed { reason } => Some(reason),
            Phase::Ended { killed_for, .. } => killed_for,
            _ => None,
        }
    }
}

/// The stop's settings, and the machine's one step.
pub struct Stop<'a> {
    pub config: &'a Config,
    /// The child's pid, for the log.
    pub pid: u32,
}

impl Stop<'_> {
    /// The phase after `event` (a change to the run's course: the child's end, a stop, the
    /// deadline, the workload empty), with what it takes done on `container`.
    pub fn next(&self, phase: Phase, event: Event, container: &mut Backend) -> Phase {
        let config = self.config;
        match (phase, event) {
            (Phase::Stopping { deadline }, Event::ChildExited(status))
                if config.stop_scope == StopScope::Tree && container.watch_emptying() =>
            {
                tracing::info!(pid = self.pid, "the child exited: waiting for the rest of the workload to stop");
                Phase::Draining { status, deadline }
            }
            (Phase::Running | Phase::Stopping { .. } | Phase::Killed { .. }, Event::ChildExited(status)) => {
                Phase::Ended { status: Some(status), killed_for: phase.killed_for() }
            }
            (Phase::Draining { status, .. }, Event::WorkloadEmpty) => {
                Phase::Ended { status: Some(status), killed_for: None }
            }
            (Phase::Running, Event::Stop(signal)) => {
                let passed = self.pass_on(container, signal);
                container.stopping(passed.signal);
                let deadline = config.kill_timeout.after_stop().map(|timeout| Instant::now() + timeout);
                let passed_on = (passed.signal != signal).then(|| passed.signal.name());
                match passed.processes {
                    None => tracing::info!(
                        signal = signal.name(),
                        passed_on,
                        kill_timeout = %config.kill_timeout,
                        "stopping: signal passed on to the child"
                    ),
                    Some(processes) => tracing::info!(
                        signal = signal.name(),
                        passed_on,
                        kill_timeout = %config.kill_timeout,
                        processes,
                        "stopping: signal passed on to every process of the workload"
                    ),
                }
                Phase::Stopping { deadline }
            }
            (Phase::Stopping { .. } | Phase::Draining { .. }, Event::Stop(signal))
                if config.kill_timeout.second_stop_kills() =>
            {
                tracing::warn!(
                    signal = signal.name(),
                    "a second stop signal: killing every process of the workload now"
                );
                self.kill(phase, container, Ending::KilledOnSecondStop)
            }
            // Under Nomad, or with a kill timeout set: passed on again, the deadline stands.
            (Phase::Stopping { .. } | Phase::Draining { .. }, Event::Stop(signal)) => {
                self.pass_on(container, signal);
                phase
            }
            (Phase::Stopping { .. } | Phase::Draining { .. }, Event::DeadlinePassed) => {
                let late =
                    if matches!(phase, Phase::Draining { .. }) { "the rest of the workload" } else { "the child" };
                tracing::warn!(kill_timeout = %config.kill_timeout, "{} did not stop in time: killing every process of the workload", late);
                self.kill(phase, container, Ending::KilledAfterTimeout)
            }
            // Nothing to do: a stop after the kill, an event that has no meaning in this phase
            // (a deadline without one, the workload empty while the child runs).
            (phase, _) => phase,
        }
    }

    /// Kills every process for `reason`: the child's end is awaited, or, where it has exited
    /// already (Draining), the run is over.
    fn kill(&self, phase: Phase, container: &mut Backend, reason: Ending) -> Phase {
        if let Err(e) = container.kill_all() {
            tracing::error!(error = %e, "cannot kill the workload");
        }
        match phase {
            Phase::Draining { status, .. } => Phase::Ended { status: Some(status), killed_for: Some(reason) },
            _ => Phase::Killed { reason },
        }
    }

    /// Passes a stop on, as DAMON_STOP_SIGNAL and DAMON_STOP_SIGNAL_SCOPE say.
    fn pass_on(&self, container: &mut Backend, received: Signal) -> PassedOn {
        let signal = self.config.stop_signal.map_or(received, Signal);
        let processes = match self.config.stop_scope {
            StopScope::Child => {
                container.signal_child(signal);
                None
            }
            StopScope::Tree => match container.signal_tree(signal) {
                Ok(processes) => Some(processes),
                Err(e) => {
                    // The child at least must hear of the stop.
                    tracing::error!(error = %e, "cannot pass the stop on to every process: passing it on to the child");
                    container.signal_child(signal);
                    None
                }
            },
        };
        PassedOn { signal, processes }
    }
}

/// What a stop became: the signal passed on, and with the tree scope how many processes it
/// reached.
struct PassedOn {
    signal: Signal,
    processes: Option<usize>,
}
