//! cgroup v1: one group of the same name in each hierarchy damon uses.
//!
//! v1 has a hierarchy per controller (or per set of co-mounted controllers): memory, cpu,
//! cpuacct, freezer and blkio each get the group, pids too when there is a process limit,
//! and the child joins all of them. The freezer stops the tree while it is killed, so nothing
//! forks past the kill.
//!
//! Each hierarchy costs a launch a mkdir, a join and an rmdir in the kernel (see
//! docs/cost.md). pids is joined only to enforce a limit: without one its only figures are the task
//! count, which the freezer's `tasks` file gives as well, and refusals, which are then none.
//! blkio is joined only where blk-throttle, which keeps its figures, counts on some device
//! ([`blk_throttle_counts`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::super::host::HostCpu;
use super::block_device::Disk;
use super::cpuset;
use super::file::{self, CgroupIoError};
use super::guard::{Change, Journal};
use super::hierarchy::Hierarchies;
use super::teardown;
use super::{create_parents, without_controller, GroupSettings, MOUNT_CGROUPS};
use crate::config::Limits;
use crate::platform::ContainerError;
use crate::stats::Sample;

/// Controllers damon uses; any other hierarchy is left alone.
const CONTROLLERS: [&str; 6] = ["memory", "cpu", "cpuacct", PIDS, "freezer", BLKIO];
/// Joined only with a process limit, unless it shares a hierarchy with another of CONTROLLERS.
const PIDS: &str = "pids";
/// Used only to pin the workload to cores, or where it shares a hierarchy with one above.
const CPUSET: &str = "cpuset";
/// Joined only where its figures can count anything, unless it shares a hierarchy.
const BLKIO: &str = "blkio";
/// blkio's figures: bytes and operations by device, from blk-throttle.
const BLKIO_BYTES: &str = "blkio.throttle.io_service_bytes";

#[derive(Debug, Clone)]
pub struct CgroupV1 {
    /// (controllers of the hierarchy, the group's directory in it)
    dirs: Vec<(Vec<String>, PathBuf)>,
    /// The group's twin in the cgroup2 hierarchy that a hybrid host mounts beside v1 (systemd
    /// at /sys/fs/cgroup/unified, with no controller): what the network accounting's programs
    /// attach to (bpf.rs), which the child joins as it joins the others.
    unified: Option<PathBuf>,
}

impl CgroupV1 {
    /// Creates the group in each hierarchy with its limits and, with `cores`, in the cpuset
    /// hierarchy with those cpus, every change made through `journal`: on an error, the caller
    /// undoes what was made.
    pub fn create(
        hierarchies: &Hierarchies,
        parent_path: Option<&Path>,
        name: &str,
        settings: &GroupSettings,
        journal: &mut Journal,
    ) -> Result<Self, ContainerError> {
        let GroupSettings { limits, cpu, cores, disks } = *settings;
        let mut group = CgroupV1 { dirs: Vec::new(), unified: None };
        for (controller, needed) in [
            ("memory", limits.enforced_memory().is_some()),
            ("cpu", limits.enforced_cpu().is_some()),
            (PIDS, limits.process_limit.is_some()),
            (BLKIO, limits.io.any()),
            (CPUSET, cores.is_some()),
        ] {
            if needed && hierarchies.v1_with(controller).is_none() {
                return Err(ContainerError::message(format!(
                    "the cgroup v1 {} controller is not mounted: mount it, or {}",
                    controller,
                    without_controller(controller)
                )));
            }
        }
        // An IO limit is a throttle rule, which also turns blk-throttle's counting on there.
        let counts_io = limits.io.any() || hierarchies.v1_with(BLKIO).map_or(false, blk_throttle_counts);
        let wanted = |c: &str| {
            CONTROLLERS.contains(&c) && (c != PIDS || limits.process_limit.is_some()) && (c != BLKIO || counts_io)
        };
        for hierarchy in &hierarchies.v1 {
            let has_cpuset = hierarchy.controllers.iter().any(|c| c == CPUSET);
            let used = hierarchy.controllers.iter().any(|c| wanted(c));
            if !(used || has_cpuset && cores.is_some()) {
                continue;
            }
            let parent = parent_path.map_or_else(|| hierarchy.own_dir.clone(), |p| hierarchy.dir_of(p));
            // A cpuset group nobody set up holds no task: the parents damon makes in that
            // hierarchy take their own parent's cpus and memory nodes, top down.
            let mut made: Vec<PathBuf> = parent
                .ancestors()
                .take_while(|d| has_cpuset && d.starts_with(&hierarchy.mount_point) && !d.is_dir())
                .map(Path::to_path_buf)
                .collect();
            made.reverse();
            create_parents(&hierarchy.mount_point, &parent, journal)?;
            for dir in &made {
                cpuset::fill_v1(dir, None)?;
            }
            let dir = parent.join(name);
            journal.apply(Change::Group(dir.clone()))?;
            // Files of the group: removing the group undoes them.
            if has_cpuset {
                cpuset::fill_v1(&dir, cores)?;
            }
            group.dirs.push((hierarchy.controllers.clone(), dir));
        }
        if group.dirs.is_empty() {
            return Err(ContainerError::message(format!(
                "no cgroup v1 hierarchy with memory, cpu or pids is mounted: {}",
                MOUNT_CGROUPS
            )));
        }
        group.set_limits(limits, cpu, disks)?;
        let network = limits.network_accounting || limits.ip.any() || limits.bind_ports.is_some();
        if let Some(unified) = hierarchies.v2.as_ref().filter(|_| network) {
            // Without it the run goes on uncounted (the accounting is no limit), and network
            // rules are refused.
            let parent = parent_path.map_or_else(|| unified.own_dir.clone(), |p| unified.dir_of(p));
            let dir = parent.join(name);
            match create_parents(&unified.mount_point, &parent, journal)
                .and_then(|()| journal.apply(Change::Group(dir.clone())))
            {
                Ok(()) => group.unified = Some(dir),
                Err(e) => {
                    tracing::info!(error = %e, "network accounting unavailable: no group in the cgroup2 hierarchy")
                }
            }
        }
        Ok(group)
    }

    pub fn memory_dir(&self) -> Option<&Path> {
        self.dir("memory")
    }

    fn dir(&self, controller: &str) -> Option<&Path> {
        self.dirs.iter().find(|(cs, _)| cs.iter().any(|c| c == controller)).map(|(_, d)| d.as_path())
    }

    fn set_limits(&self, limits: &Limits, cpu: Option<&HostCpu>, disks: &[Disk]) -> Result<(), ContainerError> {
        if let Some(dir) = self.dir(BLKIO) {
            // A rule per disk and limit; the group's removal takes them with it.
            for (name, value) in [
                ("blkio.throttle.read_bps_device", limits.io.read_bytes_per_second),
                ("blkio.throttle.write_bps_device", limits.io.write_bytes_per_second),
                ("blkio.throttle.read_iops_device", limits.io.read_iops),
                ("blkio.throttle.write_iops_device", limits.io.write_iops),
            ] {
                if let Some(value) = value {
                    for disk in disks {
                        file::write(&dir.join(name), &format!("{} {}", disk, value))?;
                    }
                }
            }
        }
        if let (Some(memory), Some(dir)) = (limits.enforced_memory(), self.dir("memory")) {
            let max = memory.max_bytes().to_string();
            file::write(&dir.join("memory.limit_in_bytes"), &max)?;
            // memory+swap must be at least the memory limit, so it is written second. The file
            // exists only with swap accounting: its absence (ENOENT) is no error.
            match file::write(&dir.join("memory.memsw.limit_in_bytes"), &max) {
                Err(e) if e.source.kind() == std::io::ErrorKind::NotFound => {}
                other => other?,
            }
            if let Some(soft) = memory.soft_bytes() {
                file::write(&dir.join("memory.soft_limit_in_bytes"), &soft.to_string())?;
            }
        }
        if let (Some(limit), Some(cpu), Some(dir)) = (limits.enforced_cpu(), cpu, self.dir("cpu")) {
            // A new group's cfs_period_us is the kernel's default, CPU_PERIOD (100 ms): the
            // quota alone is written.
            file::write(&dir.join("cpu.cfs_quota_us"), &cpu.quota(limit).as_micros().to_string())?;
        }
        if let (Some(max), Some(dir)) = (limits.process_limit, self.dir(PIDS)) {
            file::write(&dir.join("pids.max"), &max.to_string())?;
        }
        Ok(())
    }

    /// The files the child writes "0" into before its exec: each v1 hierarchy's `tasks`, which
    /// moves the writing thread alone (the child has one), and the cgroup2 group's
    /// `cgroup.procs`. A write to `cgroup.procs` takes the kernel's lock on every thread group
    /// for writing, and the first after a pause waits for an RCU grace period (5 to 12 ms on the
    /// benchmark's host); a thread that moves itself takes no such lock (this host's 6.18; a
    /// kernel without that path costs what `cgroup.procs` does). A launch after a pause took
    /// 13.9 ms, and 2.8 ms through `tasks` (without network accounting, whose cgroup2 group
    /// still takes the lock). docs/cost.md has the figures.
    pub fn join_files(&self) -> Vec<PathBuf> {
        let tasks = self.dirs.iter().map(|(_, d)| d.join("tasks"));
        tasks.chain(self.unified.iter().map(|d| d.join("cgroup.procs"))).collect()
    }

    /// The group's directory in the cgroup2 hierarchy, where one was made.
    pub fn unified_dir(&self) -> Option<&Path> {
        self.unified.as_deref()
    }

    /// The directory that lists every process of the workload.
    pub fn any_dir(&self) -> &Path {
        self.dir("freezer").or_else(|| self.dir("memory")).unwrap_or(&self.dirs[0].1)
    }

    /// Kills every process of the workload, through the freezer where it is mounted.
    pub fn kill_all(&self) -> Result<(), CgroupIoError> {
        teardown::kill_group(self.any_dir())
    }

    /// Signals every process of the workload, once each, held by the freezer where it is mounted.
    pub fn signal_all(&self, signal: nix::sys::signal::Signal) -> Result<usize, CgroupIoError> {
        teardown::signal_group(self.any_dir(), signal)
    }

    pub fn sample(&self) -> Sample {
        let read = |controller: &str, name: &str| self.dir(controller).and_then(|d| file::read(&d.join(name)).ok());
        // cpuacct.stat counts USER_HZ ticks, which is 100 on every Linux architecture damon builds for.
        let ticks = |key| {
            read("cpuacct", "cpuacct.stat")
                .and_then(|c| file::keyed_value(&c, key))
                .map(|t| Duration::from_millis(t * 10))
        };
        let cpu_stat = read("cpu", "cpu.stat");
        let cpu_stat_value = |key| cpu_stat.as_deref().and_then(|c| file::keyed_value(c, key));
        let memory_stat = read("memory", "memory.stat");
        let memory_stat_value = |key| memory_stat.as_deref().and_then(|c| file::keyed_value(c, key));
        let number = |controller: &str, name: &str| read(controller, name).and_then(|c| c.trim().parse().ok());
        let blkio = |name| read(BLKIO, name).map(|c| blkio_totals(&c));
        let bytes = blkio(BLKIO_BYTES);
        let ops = blkio("blkio.throttle.io_serviced");
        Sample {
            cpu_user: ticks("user"),
            cpu_system: ticks("system"),
            memory_bytes: number("memory", "memory.usage_in_bytes"),
            memory_peak_bytes: number("memory", "memory.max_usage_in_bytes"),
            page_faults: memory_stat_value("total_pgfault"),
            major_page_faults: memory_stat_value("total_pgmajfault"),
            io_read_bytes: bytes.map(|t| t.0),
            io_write_bytes: bytes.map(|t| t.1),
            io_read_operations: ops.map(|t| t.0),
            io_write_operations: ops.map(|t| t.1),
            processes: number(PIDS, "pids.current")
                .or_else(|| file::read(&self.any_dir().join("tasks")).ok().map(|c| c.lines().count() as u64)),
            oom_kills: self.oom_kills(),
            process_limit_refusals: self.process_limit_refusals(),
            cpu_throttled_periods: cpu_stat_value("nr_throttled"),
            cpu_throttled: cpu_stat_value("throttled_time").map(Duration::from_nanos),
            ..Sample::default()
        }
    }

    /// The figures the "damon exiting" line reports, and no more: a third of the files of a
    /// full sample, and not memory.stat, the costliest.
    pub fn totals(&self) -> Sample {
        let read = |controller: &str, name: &str| self.dir(controller).and_then(|d| file::read(&d.join(name)).ok());
        let cpuacct = read("cpuacct", "cpuacct.stat");
        let ticks =
            |key| cpuacct.as_deref().and_then(|c| file::keyed_value(c, key)).map(|t| Duration::from_millis(t * 10));
        let bytes = read(BLKIO, BLKIO_BYTES).map(|c| blkio_totals(&c));
        Sample {
            cpu_user: ticks("user"),
            cpu_system: ticks("system"),
            memory_peak_bytes: read("memory", "memory.max_usage_in_bytes").and_then(|c| c.trim().parse().ok()),
            io_read_bytes: bytes.map(|t| t.0),
            io_write_bytes: bytes.map(|t| t.1),
            oom_kills: self.oom_kills(),
            process_limit_refusals: self.process_limit_refusals(),
            cpu_throttled_periods: read("cpu", "cpu.stat").and_then(|c| file::keyed_value(&c, "nr_throttled")),
            ..Sample::default()
        }
    }

    /// pids.events' max counter; none refused where the group has no pids hierarchy, which
    /// is joined with every process limit.
    fn process_limit_refusals(&self) -> Option<u64> {
        match self.dir(PIDS) {
            Some(dir) => file::read_keyed(&dir.join("pids.events"), "max"),
            None => Some(0),
        }
    }

    /// memory.oom_control's oom_kill counter (Linux 4.13 and later).
    pub fn oom_kills(&self) -> Option<u64> {
        self.dir("memory").and_then(|d| file::read_keyed(&d.join("memory.oom_control"), "oom_kill"))
    }
}

/// Whether blk-throttle counts IO on any device, from the statistics of the hierarchy's root
/// (which has a row per device where it is on). Kernels that switch it on for a device only
/// once some group has a throttle rule there (this host's 6.18) list none without one: every
/// group's figures stay 0, and joining blkio would cost a launch its mkdir, join and rmdir
/// for nothing. Without blk-throttle in the kernel the file is missing: nothing counts either.
fn blk_throttle_counts(hierarchy: &super::hierarchy::Hierarchy) -> bool {
    let root_stats = file::read(&hierarchy.mount_point.join(BLKIO_BYTES)).unwrap_or_default();
    root_stats.lines().any(|line| !line.is_empty() && !line.starts_with("Total "))
}

/// Sums the "Read" and "Write" rows of a blkio.throttle file over devices.
fn blkio_totals(content: &str) -> (u64, u64) {
    let mut totals = (0, 0);
    for line in content.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let [_, kind, value] = words[..] {
            let value: u64 = value.parse().unwrap_or(0);
            match kind {
                "Read" => totals.0 += value,
                "Write" => totals.1 += value,
                _ => {}
            }
        }
    }
    totals
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blkio_rows_are_summed_over_devices() {
        let content = "8:0 Read 4096\n8:0 Write 100\n8:0 Sync 1\n8:16 Read 4\nTotal 4200\n";
        assert_eq!(blkio_totals(content), (4100, 100));
    }
}
