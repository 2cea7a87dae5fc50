//! The sample of a container's resource use that backends produce and the metrics read.

use std::time::Duration;

/// Resource use of the whole container (every process in it, past and present) at one moment.
/// A figure the platform cannot provide is `None`, never a made-up zero.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sample {
    pub cpu_user: Option<Duration>,
    pub cpu_system: Option<Duration>,
    pub memory_bytes: Option<u64>,
    pub memory_peak_bytes: Option<u64>,
    pub page_faults: Option<u64>,
    pub major_page_faults: Option<u64>,
    pub io_read_bytes: Option<u64>,
    pub io_write_bytes: Option<u64>,
    pub io_read_operations: Option<u64>,
    pub io_write_operations: Option<u64>,
    pub processes: Option<u64>,
    pub oom_kills: Option<u64>,
    pub cpu_throttled_periods: Option<u64>,
    pub cpu_throttled: Option<Duration>,
    /// Windows: committed (private) memory of the job's processes.
    pub memory_commit_bytes: Option<u64>,
    /// Windows: IO other than reads and writes (device control and the like).
    pub io_other_bytes: Option<u64>,
    pub io_other_operations: Option<u64>,
    /// Windows: limit notifications from the job, by kind.
    pub cpu_notifications: Option<u64>,
    pub memory_notifications: Option<u64>,
    pub io_notifications: Option<u64>,
    /// Windows: allocations the job's hard memory limit refused.
    pub memory_limit_hits: Option<u64>,
    /// Forks refused because the workload held as many processes as its limit allows
    /// (pids.events `max` on Linux; active-process-limit notifications of the job on Windows).
    pub process_limit_refusals: Option<u64>,
    /// cgroup v2: time tasks waited for (some) or all stalled on (full) each resource.
    pub pressure: Option<Pressure>,
    /// Linux: the traffic of the workload's sockets, where cgroup BPF counts it.
    pub network: Option<NetworkTraffic>,
}

/// What the workload's sockets received and sent since it started, IP headers included
/// (counted per packet as the kernel hands it to or takes it from a socket of the group).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetworkTraffic {
    pub received_bytes: u64,
    pub received_packets: u64,
    pub sent_bytes: u64,
    pub sent_packets: u64,
}

/// Pressure stall totals (PSI) of cgroup v2's cpu.pressure, memory.pressure, io.pressure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pressure {
    pub cpu_waiting: Duration,
    pub cpu_stalled: Duration,
    pub memory_waiting: Duration,
    pub memory_stalled: Duration,
    pub io_waiting: Duration,
    pub io_stalled: Duration,
}
