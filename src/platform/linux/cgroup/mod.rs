//! The workload's cgroup: the hierarchies the host mounts (hierarchy.rs), the group made in
//! v2 (v2.rs) or v1 (v1.rs) with its limits, cores (cpuset.rs) and disks (block_device.rs),
//! the watches on its limits and its emptying (limit_watch.rs), and its removal (teardown.rs)
//! by the journal of every change and the guard process that undoes them (guard.rs), all
//! through the cgroup file helpers (file.rs). The group's traffic is counted by cgroup BPF
//! programs (bpf.rs).

pub(super) mod block_device;
pub(super) mod bpf;
pub(super) mod cpuset;
mod file;
pub(super) mod guard;
pub(super) mod hierarchy;
pub(super) mod limit_watch;
mod teardown;
mod v1;
mod v2;

use std::path::Path;
use std::sync::Arc;

use nix::sys::signal::Signal as NixSignal;

use self::bpf::NetworkAccounting;
use self::cpuset::{Cpuset, Plan};
use self::file::CgroupIoError;
use self::guard::{Change, Journal};
use self::hierarchy::Hierarchies;
use self::limit_watch::{EmptyWatch, OomWatch, ProcessLimitWatch};
use self::v1::CgroupV1;
use self::v2::CgroupV2;
use super::host::HostCpu;
use crate::platform::{ContainerError, ContainerSpec, Sampler};
use crate::stats::Sample;

impl From<CgroupIoError> for ContainerError {
    fn from(e: CgroupIoError) -> Self {
        ContainerError::message(e.to_string())
    }
}

/// Creates the missing directories between `mount_point` and `dir` (a DAMON_CGROUP_PARENT
/// that does not exist yet), top down, each through the journal.
fn create_parents(mount_point: &Path, dir: &Path, journal: &mut Journal) -> Result<(), CgroupIoError> {
    let mut missing: Vec<&Path> =
        dir.ancestors().take_while(|d| d.starts_with(mount_point) && *d != mount_point && !d.is_dir()).collect();
    missing.reverse();
    for parent in missing {
        journal.apply(Change::Parent(parent.to_path_buf()))?;
    }
    Ok(())
}

/// The workload's group with what counts its traffic, read from any thread.
#[derive(Clone)]
pub(super) struct CountedGroup {
    pub(super) cgroup: Cgroup,
    /// `None` where the kernel could not count (no cgroup2 hierarchy, no cgroup BPF).
    pub(super) network: Option<Arc<NetworkAccounting>>,
}

impl CountedGroup {
    /// The figures the "damon exiting" line reports, from fewer files than a full sample.
    pub(super) fn totals(&self) -> Sample {
        let totals = match &self.cgroup {
            Cgroup::V1(g) => g.totals(),
            Cgroup::V2(g) => g.totals(),
        };
        self.with_network(totals)
    }

    fn with_network(&self, sample: Sample) -> Sample {
        // A read that fails (it cannot, short of the map's descriptor being closed) is a
        // figure unknown, not a zero.
        Sample { network: self.network.as_ref().and_then(|n| n.read().ok()), ..sample }
    }
}

impl Sampler for CountedGroup {
    fn sample(&self) -> Sample {
        let sample = match &self.cgroup {
            Cgroup::V1(g) => g.sample(),
            Cgroup::V2(g) => g.sample(),
        };
        self.with_network(sample)
    }
}

/// The workload's cgroup, in whichever version the host offers.
#[derive(Debug, Clone)]
pub(super) enum Cgroup {
    V1(CgroupV1),
    V2(CgroupV2),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CgroupVersion {
    V1,
    V2,
}

impl std::fmt::Display for CgroupVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CgroupVersion::V1 => "v1",
            CgroupVersion::V2 => "v2",
        })
    }
}

/// Where the guard waits, out of the task's cgroup: the root of the hierarchy that Nomad's
/// final kill acts on (v2: the hierarchy; v1: the freezer's), when damon is not there already.
/// Nomad kills a task's cgroup once the task (damon) is dead, possibly while the guard is
/// still cleaning up: on v2 with cgroup.kill of the whole subtree, which would end the guard
/// before it has waited for the workload and removed damon's groups; on v1 by freezing the
/// task's freezer group and SIGKILLing the processes listed in that group alone, which would
/// end the guard and leave the workload in damon's nested group alive, or frozen for good if
/// the guard had just frozen it. At the root it is neither frozen, listed nor killed.
pub(super) fn guard_home(hierarchies: &Hierarchies, version: Option<CgroupVersion>) -> Option<std::path::PathBuf> {
    let hierarchy = match version? {
        CgroupVersion::V2 => hierarchies.v2.as_ref(),
        CgroupVersion::V1 => hierarchies.v1_with("freezer"),
    }?;
    Some(hierarchy).filter(|h| h.own_dir != h.mount_point).map(|h| h.mount_point.join("cgroup.procs"))
}

/// The way out when the host mounts no cgroup damon can use.
const MOUNT_CGROUPS: &str = "mount cgroup v2 at /sys/fs/cgroup (systemd does), or the v1 memory, cpu and pids \
     controllers; with DAMON_ENFORCE_CPU_LIMIT=N, DAMON_ENFORCE_MEMORY_LIMIT=N and no other limit damon runs \
     the command uncontained";

/// The version damon would use here, and why not if none.
pub(super) fn choose(hierarchies: &Hierarchies) -> Result<CgroupVersion, String> {
    let v2_has_controllers = hierarchies.v2.as_ref().map_or(false, |v2| {
        let controllers = file::read(&v2.mount_point.join("cgroup.controllers")).unwrap_or_default();
        controllers.split_whitespace().any(|c| c == "memory")
    });
    if v2_has_controllers {
        Ok(CgroupVersion::V2)
    } else if ["memory", "cpu", "pids"].iter().any(|c| hierarchies.v1_with(c).is_some()) {
        Ok(CgroupVersion::V1)
    } else if let Some(v2) = &hierarchies.v2 {
        // Mounted, but given no controller: a container whose parent delegates none.
        let controllers = file::read(&v2.mount_point.join("cgroup.controllers")).unwrap_or_default();
        Err(format!(
            "cgroup v2 at {} offers no memory controller (cgroup.controllers: {:?}): enable it in its parent's \
             cgroup.subtree_control (a container must be given the controllers it is to limit); with \
             DAMON_ENFORCE_CPU_LIMIT=N, DAMON_ENFORCE_MEMORY_LIMIT=N and no other limit damon runs the command uncontained",
            v2.mount_point.display(),
            controllers.trim()
        ))
    } else {
        Err(format!("no cgroup hierarchy with the memory, cpu or pids controller is mounted: {}", MOUNT_CGROUPS))
    }
}

/// The cpuset a group created under `parent` (default: damon's own cgroup) would inherit, in
/// the hierarchy damon uses.
pub(super) fn read_cpuset(
    hierarchies: &Hierarchies,
    version: CgroupVersion,
    parent: Option<&Path>,
) -> Result<Cpuset, String> {
    let hierarchy = match version {
        CgroupVersion::V2 => hierarchies.v2.as_ref(),
        CgroupVersion::V1 => hierarchies.v1_with("cpuset"),
    };
    let start = hierarchy.map(|h| parent.map_or_else(|| h.own_dir.clone(), |p| h.dir_of(p)));
    let located = hierarchy.zip(start.as_deref()).map(|(h, start)| (h.mount_point.as_path(), start));
    Cpuset::read(located, version == CgroupVersion::V2)
}

/// A container that cannot be made by a damon that is not root: most often raw_exec's `user`
/// set to the workload's user, which runs damon itself as that user. The way out is to leave
/// damon root and give the workload its user through damon.
pub(super) fn with_way_out(e: ContainerError) -> ContainerError {
    let uid = nix::unistd::geteuid();
    if uid.is_root() {
        return e;
    }
    ContainerError::message(format!(
        "{}; damon runs as uid {}, which may not create cgroups here: run damon as root (leave raw_exec's `user` \
         unset) and the workload as that user with DAMON_USER (e.g. DAMON_USER=nobody), or DAMON_RESTRICTED_TOKEN=Y",
        e, uid
    ))
}

/// How to run without the limit that needs `controller` (v1 or v2 name), for a refusal that
/// the controller is missing.
fn without_controller(controller: &str) -> &'static str {
    match controller {
        "memory" => "DAMON_ENFORCE_MEMORY_LIMIT=N runs without the memory limit",
        "cpu" => "DAMON_ENFORCE_CPU_LIMIT=N runs without the CPU cap",
        "pids" => "unset DAMON_PROCESS_LIMIT to run without the process limit",
        "io" | "blkio" => "unset the DAMON_IO_* limits to run without them",
        "cpuset" => "unset DAMON_CPU_CORES to run on every core",
        _ => "leave out the limit that needs it",
    }
}

/// What a new group is given, besides its place and name.
#[derive(Clone, Copy)]
pub struct GroupSettings<'a> {
    pub limits: &'a crate::config::Limits,
    pub cpu: Option<&'a HostCpu>,
    /// The cpuset to write, where the plan makes one.
    pub cores: Option<&'a crate::config::CpuCores>,
    /// The disks the IO limits apply to.
    pub disks: &'a [block_device::Disk],
}

/// What became of the cores: the cpuset inherited (`None` where it could not be read and no
/// cores were asked for) and the plan followed.
pub(super) struct CoresOutcome {
    pub(super) cpuset: Option<Cpuset>,
    pub(super) plan: Plan,
}

impl CoresOutcome {
    /// The workload's cpuset, for the log.
    pub(super) fn workload_cpus(&self) -> Option<String> {
        self.cpuset.as_ref().map(|cpuset| self.plan.workload_cpus(cpuset).to_string())
    }
}

impl Cgroup {
    /// Creates the group with its limits, every change through `journal`; on an error the
    /// caller undoes the journal. The cores are decided first, before any change.
    pub(super) fn create(
        spec: &ContainerSpec,
        hierarchies: &Hierarchies,
        version: CgroupVersion,
        journal: &mut Journal,
    ) -> Result<(Cgroup, CoresOutcome), ContainerError> {
        let cpu = match spec.limits.enforced_cpu() {
            Some(_) => Some(HostCpu::read().map_err(ContainerError::message)?),
            None => None,
        };
        let parent = spec.parent.as_deref();
        let wanted = spec.limits.cores.as_ref();
        let cores = match (read_cpuset(hierarchies, version, parent), wanted) {
            (Ok(cpuset), _) => {
                let plan = cpuset.plan(wanted).map_err(ContainerError::message)?;
                CoresOutcome { cpuset: Some(cpuset), plan }
            }
            (Err(_), None) => CoresOutcome { cpuset: None, plan: Plan::Inherit },
            (Err(e), Some(wanted)) => {
                return Err(ContainerError::message(format!(
                    "cannot pin the workload to cores {} ({}): {}",
                    wanted.cores, wanted.source, e
                )))
            }
        };
        if let Some(bytes) = spec.limits.net_max_bytes_per_second {
            return Err(ContainerError::message(format!(
                "invalid value \"{}\" for DAMON_NET_MAX_BANDWIDTH: Linux has no cgroup controller that limits the \
                 network (it is the Windows job's network rate control); unset it, and shape the task's traffic on \
                 the host (tc on its interface)",
                bytes
            )));
        }
        let disks = block_device::limited_disks(&spec.limits.io).map_err(ContainerError::message)?;
        let apply = cores.plan.to_apply();
        let settings = GroupSettings { limits: &spec.limits, cpu: cpu.as_ref(), cores: apply, disks: &disks };
        let cgroup = match version {
            CgroupVersion::V2 => {
                let v2 = hierarchies.v2.as_ref().expect("chosen because it exists");
                CgroupV2::create(v2, parent, &spec.name, &settings, journal).map(Cgroup::V2)
            }
            CgroupVersion::V1 => CgroupV1::create(hierarchies, parent, &spec.name, &settings, journal).map(Cgroup::V1),
        }?;
        if !disks.is_empty() {
            let shown: Vec<String> = disks.iter().map(ToString::to_string).collect();
            tracing::info!(disks = %shown.join(","), "IO limits set");
        }
        Ok((cgroup, cores))
    }

    pub(super) fn location(&self) -> String {
        match self {
            Cgroup::V1(g) => g
                .join_files()
                .iter()
                .filter_map(|p| p.parent())
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" "),
            Cgroup::V2(g) => g.dir.display().to_string(),
        }
    }

    pub(super) fn join_files(&self) -> Vec<std::path::PathBuf> {
        match self {
            Cgroup::V1(g) => g.join_files(),
            Cgroup::V2(g) => g.join_files(),
        }
    }

    /// The group's directory in the cgroup2 hierarchy, where cgroup BPF programs attach: the
    /// group itself on v2, its twin in the hierarchy mounted beside v1 on a hybrid host.
    pub(super) fn cgroup2_dir(&self) -> Option<&Path> {
        match self {
            Cgroup::V1(g) => g.unified_dir(),
            Cgroup::V2(g) => Some(&g.dir),
        }
    }

    /// The programs on the group: DAMON_IP_ALLOW, DAMON_IP_DENY and DAMON_BIND_PORTS, which
    /// must hold (an error refuses the start), and the network accounting unless
    /// DAMON_NETWORK_ACCOUNTING=N, which the run goes on without where the host cannot give it.
    pub(super) fn attach_network_programs(
        &self,
        limits: &crate::config::Limits,
    ) -> Result<Option<NetworkAccounting>, ContainerError> {
        let ip = &limits.ip;
        let settings: Vec<&str> = [
            ("DAMON_IP_ALLOW", !ip.allow.is_empty()),
            ("DAMON_IP_DENY", !ip.deny.is_empty()),
            ("DAMON_BIND_PORTS", limits.bind_ports.is_some()),
        ]
        .iter()
        .filter(|(_, set)| *set)
        .map(|(name, _)| *name)
        .collect();
        if settings.is_empty() {
            if !limits.network_accounting {
                return Ok(None);
            }
            let attached = self.cgroup2_dir().map(|dir| bpf::attach_network(dir, true, ip));
            return Ok(match attached {
                Some(Ok(accounting)) => accounting,
                Some(Err(e)) => {
                    tracing::info!(error = %e, "network accounting unavailable");
                    None
                }
                // Said at the twin's making (v1), or --check says it (no cgroup2 hierarchy).
                None => None,
            });
        }
        let settings = settings.join(", ");
        let dir = self.cgroup2_dir().ok_or_else(|| {
            ContainerError::message(format!(
                "{} need cgroup BPF programs on a cgroup2 group, and this host mounts no cgroup2 hierarchy: mount \
                 one (systemd's hybrid layout has it at /sys/fs/cgroup/unified), or unset {}",
                settings, settings
            ))
        })?;
        let refused = |e: bpf::BpfError| {
            ContainerError::message(format!("cannot put {} on the workload's group: {}; or unset them", settings, e))
        };
        let accounting = bpf::attach_network(dir, limits.network_accounting, ip).map_err(refused)?;
        if let Some(ports) = &limits.bind_ports {
            bpf::attach_bind_ports(dir, ports).map_err(refused)?;
        }
        Ok(accounting)
    }

    /// The group a child can be born in with clone3 (cgroup v2).
    pub(super) fn v2_dir(&self) -> Option<&Path> {
        match self {
            Cgroup::V1(_) => None,
            Cgroup::V2(g) => Some(&g.dir),
        }
    }

    pub(super) fn kill_all(&self) -> Result<(), CgroupIoError> {
        match self {
            Cgroup::V1(g) => g.kill_all(),
            Cgroup::V2(g) => g.kill_all(),
        }
    }

    /// Sends `signal` to every process of the workload, once each; returns how many.
    pub(super) fn signal_all(&self, signal: NixSignal) -> Result<usize, CgroupIoError> {
        match self {
            Cgroup::V1(g) => g.signal_all(signal),
            Cgroup::V2(g) => g.signal_all(signal),
        }
    }

    /// A watch on the process limit, where the kernel notifies it (v2) and one is set.
    pub(super) fn process_limit_watch(
        &self,
        limits: &crate::config::Limits,
    ) -> Result<Option<ProcessLimitWatch>, CgroupIoError> {
        match self {
            Cgroup::V2(g) if limits.process_limit.is_some() => ProcessLimitWatch::v2(&g.dir).map(Some),
            _ => Ok(None),
        }
    }

    /// A watch for the group to hold no process.
    pub(super) fn empty_watch(&self) -> Result<EmptyWatch, CgroupIoError> {
        match self {
            Cgroup::V1(g) => Ok(EmptyWatch::v1(g.any_dir())),
            Cgroup::V2(g) => EmptyWatch::v2(&g.dir),
        }
    }

    /// A watch on the memory limit, where the group has the memory controller.
    pub(super) fn oom_watch(&self) -> Result<Option<OomWatch>, CgroupIoError> {
        match self {
            Cgroup::V2(g) if g.dir.join("memory.events").exists() => OomWatch::v2(&g.dir).map(Some),
            Cgroup::V1(g) => g.memory_dir().map(OomWatch::v1).transpose(),
            Cgroup::V2(_) => Ok(None),
        }
    }
}
