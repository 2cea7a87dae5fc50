//! cgroup v2: one group for the workload, with its limits, beside a leaf for damon itself.
//!
//! The "no internal processes" rule forbids enabling controllers for the children of a
//! cgroup that holds processes (except the root). By default damon creates its group under
//! its own cgroup, so it first moves itself into a leaf `<name>.supervisor` beside the
//! workload's, enables the controllers in the parent, and undoes both when it is done (the
//! undo is the journal's: see guard.rs).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::super::host::{HostCpu, CPU_PERIOD};
use super::block_device::Disk;
use super::cpuset;
use super::file::{self, CgroupIoError};
use super::guard::{Change, Journal};
use super::hierarchy::Hierarchy;
use super::teardown;
use super::{create_parents, without_controller, GroupSettings};
use crate::config::{IoLimits, Limits};
use crate::platform::ContainerError;
use crate::stats::{Pressure, Sample};

/// Controllers damon enables; the ones a limit needs are required, the rest only feed stats.
const CONTROLLERS: [&str; 4] = ["memory", "cpu", "pids", "io"];
/// Enabled only to pin the workload to cores (its enabling has no use otherwise).
const CPUSET: &str = "cpuset";

#[derive(Debug, Clone)]
pub struct CgroupV2 {
    /// The workload's group.
    pub dir: PathBuf,
}

impl CgroupV2 {
    /// Creates the group with its limits and, with `cores`, its cpuset, every change made
    /// through `journal`: on an error, the caller undoes what was made.
    pub fn create(
        hierarchy: &Hierarchy,
        parent_path: Option<&Path>,
        name: &str,
        settings: &GroupSettings,
        journal: &mut Journal,
    ) -> Result<Self, ContainerError> {
        let GroupSettings { limits, cpu, cores, disks } = *settings;
        let parent = parent_path.map_or_else(|| hierarchy.own_dir.clone(), |p| hierarchy.dir_of(p));
        create_parents(&hierarchy.mount_point, &parent, journal)?;
        // Leave the parent if damon lives there (the root is exempt from the rule). The guard
        // waits at the root; where it could not move there, it goes into the leaf too.
        if parent == hierarchy.own_dir && parent != hierarchy.mount_point {
            let leaf = parent.join(format!("{}.supervisor", name));
            journal.apply(Change::Leaf(leaf.clone()))?;
            journal.apply(Change::Joined { parent: parent.clone(), leaf })?;
        }
        let required: Vec<&str> = [
            ("memory", limits.enforced_memory().is_some()),
            ("cpu", limits.enforced_cpu().is_some()),
            ("pids", limits.process_limit.is_some()),
            ("io", limits.io.any()),
            (CPUSET, cores.is_some()),
        ]
        .iter()
        .filter(|(_, needed)| *needed)
        .map(|(c, _)| *c)
        .collect();
        let wanted: Vec<&str> = CONTROLLERS.iter().copied().chain(cores.map(|_| CPUSET)).collect();
        // Each ancestor must pass a controller down for the group to have it.
        let mut dirs: Vec<&Path> = parent.ancestors().take_while(|d| d.starts_with(&hierarchy.mount_point)).collect();
        dirs.reverse();
        for dir in dirs {
            enable_controllers(dir, &wanted, &required, journal)?;
        }
        let group = CgroupV2 { dir: parent.join(name) };
        journal.apply(Change::Group(group.dir.clone()))?;
        group.set_limits(limits, cpu, disks)?;
        // A file of the group: removing the group undoes it.
        if let Some(cores) = cores {
            cpuset::write_v2(&group.dir, cores)?;
        }
        Ok(group)
    }

    fn set_limits(&self, limits: &Limits, cpu: Option<&HostCpu>, disks: &[Disk]) -> Result<(), ContainerError> {
        // One line per disk; the group's removal takes them with it.
        for disk in disks {
            file::write(&self.dir.join("io.max"), &io_max_line(*disk, &limits.io))?;
        }
        if let Some(memory) = limits.enforced_memory() {
            file::write(&self.dir.join("memory.max"), &memory.max_bytes().to_string())?;
            if let Some(soft) = memory.soft_bytes() {
                file::write(&self.dir.join("memory.high"), &soft.to_string())?;
            }
            // Swap would let the workload grow past the limit; the file exists only with swap accounting.
            let swap = self.dir.join("memory.swap.max");
            if swap.exists() {
                file::write(&swap, "0")?;
            }
        }
        if let (Some(limit), Some(cpu)) = (limits.enforced_cpu(), cpu) {
            let value = format!("{} {}", cpu.quota(limit).as_micros(), CPU_PERIOD.as_micros());
            file::write(&self.dir.join("cpu.max"), &value)?;
        }
        if let Some(max) = limits.process_limit {
            file::write(&self.dir.join("pids.max"), &max.to_string())?;
        }
        Ok(())
    }

    /// The `cgroup.procs` files a new child writes itself into.
    pub fn join_files(&self) -> Vec<PathBuf> {
        vec![self.dir.join("cgroup.procs")]
    }

    /// Kills every process in the group, including those that left damon's session.
    pub fn kill_all(&self) -> Result<(), CgroupIoError> {
        teardown::kill_group(&self.dir)
    }

    /// Signals every process in the group, once each, held by cgroup.freeze meanwhile.
    pub fn signal_all(&self, signal: nix::sys::signal::Signal) -> Result<usize, CgroupIoError> {
        teardown::signal_group(&self.dir, signal)
    }

    pub fn sample(&self) -> Sample {
        let d = &self.dir;
        let cpu_stat = file::read(&d.join("cpu.stat")).unwrap_or_default();
        let usec = |key| file::keyed_value(&cpu_stat, key).map(Duration::from_micros);
        let memory_stat = file::read(&d.join("memory.stat")).unwrap_or_default();
        let io = file::read(&d.join("io.stat")).ok().map(|content| io_stat_totals(&content));
        Sample {
            cpu_user: usec("user_usec"),
            cpu_system: usec("system_usec"),
            memory_bytes: file::read_u64(&d.join("memory.current")),
            memory_peak_bytes: file::read_u64(&d.join("memory.peak")),
            page_faults: file::keyed_value(&memory_stat, "pgfault"),
            major_page_faults: file::keyed_value(&memory_stat, "pgmajfault"),
            io_read_bytes: io.map(|t| t[0]),
            io_write_bytes: io.map(|t| t[1]),
            io_read_operations: io.map(|t| t[2]),
            io_write_operations: io.map(|t| t[3]),
            processes: file::read_u64(&d.join("pids.current")),
            oom_kills: self.oom_kills(),
            process_limit_refusals: file::read_keyed(&d.join("pids.events"), "max"),
            cpu_throttled_periods: file::keyed_value(&cpu_stat, "nr_throttled"),
            cpu_throttled: usec("throttled_usec"),
            pressure: self.pressure(),
            ..Sample::default()
        }
    }

    /// The figures the "damon exiting" line reports, and no more: half the files of a full
    /// sample, and not memory.stat, the costliest.
    pub fn totals(&self) -> Sample {
        let d = &self.dir;
        let cpu_stat = file::read(&d.join("cpu.stat")).unwrap_or_default();
        let usec = |key| file::keyed_value(&cpu_stat, key).map(Duration::from_micros);
        let io = file::read(&d.join("io.stat")).ok().map(|content| io_stat_totals(&content));
        Sample {
            cpu_user: usec("user_usec"),
            cpu_system: usec("system_usec"),
            memory_peak_bytes: file::read_u64(&d.join("memory.peak")),
            io_read_bytes: io.map(|t| t[0]),
            io_write_bytes: io.map(|t| t[1]),
            oom_kills: self.oom_kills(),
            process_limit_refusals: file::read_keyed(&d.join("pids.events"), "max"),
            cpu_throttled_periods: file::keyed_value(&cpu_stat, "nr_throttled"),
            ..Sample::default()
        }
    }

    /// The PSI totals, where the kernel has them (CONFIG_PSI, not disabled at boot).
    fn pressure(&self) -> Option<Pressure> {
        let read = |name: &str| file::read(&self.dir.join(name)).ok().map(|content| pressure_totals(&content));
        let (cpu, memory, io) = (read("cpu.pressure")?, read("memory.pressure")?, read("io.pressure")?);
        Some(Pressure {
            cpu_waiting: cpu.0,
            cpu_stalled: cpu.1,
            memory_waiting: memory.0,
            memory_stalled: memory.1,
            io_waiting: io.0,
            io_stalled: io.1,
        })
    }

    pub fn oom_kills(&self) -> Option<u64> {
        file::read_keyed(&self.dir.join("memory.events"), "oom_kill")
    }
}

/// Turns on, in `dir`'s subtree_control, the `wanted` controllers it offers and does not yet
/// pass down, each through the journal. A required controller that cannot be enabled is an
/// error; the others are only for statistics.
fn enable_controllers(
    dir: &Path,
    wanted: &[&str],
    required: &[&str],
    journal: &mut Journal,
) -> Result<(), ContainerError> {
    let available = file::read(&dir.join("cgroup.controllers"))?;
    let subtree_control = dir.join("cgroup.subtree_control");
    let active = file::read(&subtree_control)?;
    let has = |list: &str, c: &str| list.split_whitespace().any(|w| w == c);
    let mut to_enable = Vec::new();
    for &controller in wanted {
        if has(&active, controller) {
            continue;
        }
        if !has(&available, controller) {
            if required.contains(&controller) {
                return Err(ContainerError::message(format!(
                    "the cgroup v2 {} controller is not available in {} (cgroup.controllers: {:?}): enable it in the \
                     parents' cgroup.subtree_control, or choose a DAMON_CGROUP_PARENT that has it, or {}",
                    controller,
                    dir.display(),
                    available.trim(),
                    without_controller(controller)
                )));
            }
            continue;
        }
        to_enable.push(controller);
    }
    if to_enable.is_empty() {
        return Ok(());
    }
    // All in one write, which waits for one RCU grace period rather than one per controller.
    // The kernel makes it all or nothing: where it refuses, one at a time below, so that an
    // optional controller it refuses does not keep the required ones off.
    let all =
        Change::Controllers { dir: dir.to_path_buf(), controllers: to_enable.iter().map(|c| c.to_string()).collect() };
    if journal.apply(all).is_ok() {
        return Ok(());
    }
    for controller in to_enable {
        match journal.apply(Change::Controllers { dir: dir.to_path_buf(), controllers: vec![controller.to_string()] }) {
            Ok(()) => {}
            Err(e) if required.contains(&controller) => {
                let hint = if e.source.raw_os_error() == Some(nix::libc::EBUSY) {
                    " (other processes live in that cgroup: set DAMON_CGROUP_PARENT to a cgroup of its own)"
                } else {
                    ""
                };
                return Err(ContainerError::new(format!("cannot enable the {} controller{}", controller, hint), e));
            }
            Err(_) => {}
        }
    }
    Ok(())
}

/// The `total=` of the "some" and "full" lines of a *.pressure file, in microseconds.
fn pressure_totals(content: &str) -> (Duration, Duration) {
    let total = |kind: &str| {
        content
            .lines()
            .filter(|l| l.starts_with(kind))
            .flat_map(|l| l.split_whitespace())
            .find_map(|w| w.strip_prefix("total="))
            .and_then(|v| v.parse().ok())
            .map_or(Duration::ZERO, Duration::from_micros)
    };
    (total("some "), total("full "))
}

/// Sums io.stat over devices: [rbytes, wbytes, rios, wios].
fn io_stat_totals(content: &str) -> [u64; 4] {
    let mut totals = [0u64; 4];
    for line in content.lines() {
        for word in line.split_whitespace().skip(1) {
            if let Some((key, value)) = word.split_once('=') {
                let index = match key {
                    "rbytes" => 0,
                    "wbytes" => 1,
                    "rios" => 2,
                    "wios" => 3,
                    _ => continue,
                };
                totals[index] += value.parse::<u64>().unwrap_or(0);
            }
        }
    }
    totals
}

/// An io.max line for `disk`: "8:0 rbps=10485760 wiops=100", the keys of the limits set (the
/// others stay `max`).
fn io_max_line(disk: Disk, io: &IoLimits) -> String {
    let mut line = disk.to_string();
    for (key, value) in [
        ("rbps", io.read_bytes_per_second),
        ("wbps", io.write_bytes_per_second),
        ("riops", io.read_iops),
        ("wiops", io.write_iops),
    ] {
        if let Some(value) = value {
            line.push_str(&format!(" {}={}", key, value));
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_io_max_line_names_only_the_limits_set() {
        let io = IoLimits { read_bytes_per_second: Some(10 << 20), write_iops: Some(100), ..IoLimits::default() };
        assert_eq!(io_max_line(Disk { major: 8, minor: 0 }, &io), "8:0 rbps=10485760 wiops=100");
    }

    #[test]
    fn pressure_totals_are_some_and_full() {
        let content =
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=1500\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=700\n";
        assert_eq!(pressure_totals(content), (Duration::from_micros(1500), Duration::from_micros(700)));
    }

    #[test]
    fn io_stat_is_summed_over_devices() {
        let content = "8:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n254:0 rbytes=5 wbytes=0 rios=1 wios=0\n";
        assert_eq!(io_stat_totals(content), [15, 20, 2, 2]);
    }
}
