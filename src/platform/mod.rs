//! The shared interface of the platform backends: a container that holds the workload and
//! enforces its limits (a cgroup on Linux, a Job Object on Windows), the events the
//! supervisor waits for, and the errors it decides on. `cfg` appears here and nowhere else.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::config::Limits;
use crate::stats::Sample;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::allocator::LockedDlmalloc;
#[cfg(target_os = "linux")]
pub use linux::anchored_dir::{AnchoredDir, FileId};
#[cfg(target_os = "linux")]
pub use linux::sockets::{defer_accept, widen_backlog, SocketPoller};
#[cfg(target_os = "linux")]
pub use linux::{
    close_inherited_on_exec, defer_signals, host_cpu, host_report, own_process, Backend, Identity, Sandbox,
};

/// damon runs as no helper of its own on Linux (see the Windows one).
#[cfg(target_os = "linux")]
pub fn helper(_args: &[std::ffi::OsString]) -> Option<i32> {
    None
}
#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::anchored_dir::{AnchoredDir, FileId};
#[cfg(windows)]
pub use windows::sockets::{defer_accept, widen_backlog, SocketPoller};
#[cfg(windows)]
pub use windows::{
    close_inherited_on_exec, defer_signals, helper, host_cpu, host_report, own_process, Backend, Identity, Sandbox,
};

/// What the container is asked to be.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    /// Unique name of the group or job, e.g. `damon-web-3f2a9c1e-1234`.
    pub name: String,
    pub limits: Limits,
    /// Where to create it (cgroup path from the hierarchy's root); `None`: under damon's own.
    #[cfg_attr(windows, allow(dead_code))]
    pub parent: Option<PathBuf>,
    /// Windows: run the child with a restricted token (Linux reads it from `identity`).
    #[cfg_attr(not(windows), allow(dead_code))]
    pub restricted_token: bool,
    /// Who the child runs as and what it may gain, resolved before anything started
    /// (Linux: DAMON_USER and DAMON_RESTRICTED_TOKEN).
    #[cfg_attr(windows, allow(dead_code))]
    pub identity: Identity,
    /// What confines the workload beyond its limits (DAMON_SANDBOX), decided before anything
    /// started; shared with the backend, not copied (its rules and filter are about 40
    /// allocations).
    pub sandbox: Arc<Sandbox>,
}

/// DAMON_USER names no user damon can start the child as, or DAMON_SANDBOX asks what this
/// host cannot give: a configuration error (125), found when damon starts, before anything
/// is created.
#[derive(Debug)]
pub struct IdentityError {
    /// `--user` or `DAMON_USER`.
    pub source: String,
    pub value: String,
    pub reason: String,
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid value {:?} for {}: {}", self.value, self.source, self.reason)
    }
}

impl std::error::Error for IdentityError {}

/// Why damon did not use a file or directory it works with as root (its log) where the
/// workload may write too ([`AnchoredDir`]).
#[derive(Debug)]
pub enum PathError {
    /// Something damon did not make stands at `path` (a link, a FIFO, a hard link, ...): it is
    /// left alone, and nothing is written or followed through it.
    Planted { path: PathBuf, found: String },
    /// The system refused.
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathError::Planted { path, found } => write!(
                f,
                "found {} at {}, which damon did not make: it follows and writes nothing through it, and leaves it there",
                found,
                path.display()
            ),
            PathError::Io { action, path, source } => write!(f, "cannot {} {}: {}", action, path.display(), source),
        }
    }
}

impl std::error::Error for PathError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PathError::Planted { .. } => None,
            PathError::Io { source, .. } => Some(source),
        }
    }
}

/// What the backends' tests of [`AnchoredDir`] share.
#[cfg(test)]
pub mod anchored_dir_tests {
    use super::PathError;
    use std::fs;
    use std::path::PathBuf;

    /// A new directory of the test's own under the temporary one (on Linux, root's and 0755:
    /// only root may change its entries, though /tmp itself is world-writable).
    pub fn fresh_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("damon-anchored-{}-{}", std::process::id(), name));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Where and what was found, of a refusal as [`PathError::Planted`]; panics otherwise.
    pub fn refused_as_planted(result: Result<impl Sized, PathError>) -> (PathBuf, String) {
        match result {
            Err(PathError::Planted { path, found }) => (path, found),
            Err(other) => panic!("not refused as planted: {}", other),
            Ok(_) => panic!("not refused"),
        }
    }
}

/// A signal damon received or passes on, by the platform's number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signal(pub i32);

/// How the child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    /// Killed by this signal (Unix).
    #[cfg_attr(windows, allow(dead_code))]
    Signal(Signal),
    /// Ended by damon's own kill of the whole container (Windows: TerminateJobObject).
    Terminated,
}

/// What woke the supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    ChildExited(ExitStatus),
    /// A request to stop (SIGINT/SIGTERM/SIGHUP/SIGQUIT, Ctrl+Break).
    Stop(Signal),
    /// A signal to pass on without stopping (SIGUSR1, SIGUSR2; Unix).
    #[cfg_attr(windows, allow(dead_code))]
    PassOn(Signal),
    /// The workload hit its memory limit; the OOM killer may have killed one of its processes
    /// (Linux; on Windows an allocation fails instead, and the backend logs it).
    #[cfg_attr(windows, allow(dead_code))]
    MemoryLimitHit,
    /// The kernel refused a fork because the workload holds its process limit (cgroup v2;
    /// v1 gives no notification, and Windows' backend logs it itself).
    #[cfg_attr(windows, allow(dead_code))]
    ProcessLimitHit,
    DeadlinePassed,
    /// The workload holds no process any more, after [`Container::watch_emptying`] (Linux).
    #[cfg_attr(windows, allow(dead_code))]
    WorkloadEmpty,
}

/// The backend a platform provides. One container per run; the supervisor drives it.
pub trait Container: Sized {
    /// Creates the container with its limits in force. Nothing has started yet.
    fn create(spec: &ContainerSpec) -> Result<Self, ContainerError>;
    /// A container that contains nothing: the child runs as a plain child process, still
    /// with the spec's identity.
    fn uncontained(spec: &ContainerSpec) -> Result<Self, ContainerError>;
    /// Where the workload is held, for the log (`/sys/fs/cgroup/...`); `None` if uncontained.
    fn location(&self) -> Option<String>;
    /// The cores the workload runs on, as a cpuset list, for the log: the cpuset of its group
    /// (Linux), the cores the job is pinned to (Windows); `None` where unknown or unpinned.
    fn cpuset(&self) -> Option<String>;
    /// Starts the command inside the container and returns its process id.
    fn spawn(&mut self, command: &[OsString]) -> Result<u32, SpawnError>;
    /// How the child came into the container, for the "child started" line, where the platform
    /// has more than one way (Linux: born in its cgroup v2 group, or joined it before exec).
    fn start_method(&self) -> Option<String> {
        None
    }
    /// Blocks until the next event, or `deadline`.
    fn next_event(&mut self, deadline: Option<Instant>) -> Result<Event, ContainerError>;
    /// Sends a signal to the direct child (its process group on Windows).
    fn signal_child(&mut self, signal: Signal);
    /// Sends a signal to every process of the workload, once each, processes started meanwhile
    /// included; returns how many it reached.
    fn signal_tree(&mut self, signal: Signal) -> Result<usize, ContainerError>;
    /// The child has exited during a tree-scope stop, and the rest of the workload may still be
    /// draining: whether processes remain, in which case [`Container::next_event`] reports
    /// [`Event::WorkloadEmpty`] once they are all gone. `false` where nothing can be watched.
    fn watch_emptying(&mut self) -> bool {
        false
    }
    /// The stop began with `signal`. Linux tells the guard when, so that, should Nomad's
    /// SIGKILL end damon before the workload, the guard's report says how long the stop lasted.
    fn stopping(&mut self, _signal: Signal) {}
    /// Kills every process in the container.
    fn kill_all(&mut self) -> Result<(), ContainerError>;
    fn sample(&self) -> Sample {
        self.sampler().sample()
    }
    /// The figures the "damon exiting" line and the limit reports use (CPU, peak memory, OOM
    /// kills, refused forks, throttling, IO bytes): a platform may read fewer files for them.
    fn totals(&self) -> Sample {
        self.sample()
    }
    /// Reads samples of the container from any thread (the metrics server's).
    fn sampler(&self) -> Arc<dyn Sampler>;
    /// Removes the container; every step is attempted, and each failure is reported.
    fn remove(self) -> Vec<ContainerError>;
}

/// Reads the container's resource use; shared with the metrics server.
pub trait Sampler: Send + Sync {
    fn sample(&self) -> Sample;
}

/// A sampler of nothing, for a child run uncontained.
pub struct NoSampler;

impl Sampler for NoSampler {
    fn sample(&self) -> Sample {
        Sample::default()
    }
}

/// The host's CPUs, as the CPU limit sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostCpu {
    pub cpus: u64,
    pub mhz_per_core: u64,
}

/// damon's own process figures, for the process_* metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OwnProcess {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub start_time_seconds: f64,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
}

/// A failure of the container: its creation, a limit, its removal.
#[derive(Debug)]
pub struct ContainerError {
    context: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl ContainerError {
    pub fn new(context: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        ContainerError { context: context.into(), source: Some(Box::new(source)) }
    }
    pub fn message(context: impl Into<String>) -> Self {
        ContainerError { context: context.into(), source: None }
    }
}

impl fmt::Display for ContainerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(source) => write!(f, "{}: {}", self.context, source),
            None => f.write_str(&self.context),
        }
    }
}

impl std::error::Error for ContainerError {}

/// Why the command could not be started; decides damon's exit code.
#[derive(Debug)]
pub enum SpawnError {
    /// 127, as a shell says.
    NotFound(OsString),
    /// 126: it exists but cannot be executed.
    NotExecutable(OsString, std::io::Error),
    /// 125: damon failed to start it.
    Other(String, std::io::Error),
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpawnError::NotFound(cmd) => write!(f, "command not found: {}", cmd.to_string_lossy()),
            SpawnError::NotExecutable(cmd, e) => write!(f, "cannot execute {}: {}", cmd.to_string_lossy(), e),
            SpawnError::Other(context, e) => write!(f, "{}: {}", context, e),
        }
    }
}

impl std::error::Error for SpawnError {}

/// What a socket was found ready for by [`SocketPoller::wait`] (the metrics server's event loop).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketReady {
    pub read: bool,
    pub write: bool,
    /// The peer reset or closed the connection, or the socket failed: the next read or
    /// write says which.
    pub closed: bool,
}

/// What `damon --check` reports about the host.
pub struct HostReport {
    pub facts: Vec<(&'static str, String)>,
    /// Why a contained child could not run here, if it could not.
    pub problem: Option<String>,
}
