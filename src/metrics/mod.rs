//! Prometheus metrics of the workload and of damon: the original Damon's families under their
//! old names (so existing dashboards and alerts keep working), conventional families beside
//! them, and damon's own process_* figures, each with the task's nomad_* labels.
//!
//! Values are read when scraped, from one sample of the container, and a sample is reused for
//! at most [`FRESHNESS`]: a burst of scrapes reads the group's files once.

mod exposition;
mod server;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use self::exposition::{render, Family, Kind};
use crate::config::{Config, Limits, MetricsConfig, VERSION};
use crate::platform::{self, HostCpu, OwnProcess, Sampler};
use crate::stats::{NetworkTraffic, Sample};

/// The longest a scrape may be served from an earlier sample.
pub const FRESHNESS: Duration = Duration::from_secs(1);

/// The metrics of one run; shared between the supervisor and the server's threads.
pub struct Metrics {
    sampler: Mutex<Arc<dyn Sampler>>,
    limits: Limits,
    host: Option<HostCpu>,
    labels: Vec<(&'static str, String)>,
    child: Mutex<ChildState>,
    cache: Mutex<Cache>,
    /// What the metrics endpoint did with its clients (damon_http_* families).
    http: Arc<server::HttpCounters>,
}

/// Whether the child runs and since when, changed together so that a scrape sees both or neither.
#[derive(Default, Clone, Copy)]
struct ChildState {
    up: bool,
    start_time: Option<f64>,
}

#[derive(Default)]
struct Cache {
    taken: Option<Instant>,
    text: String,
    /// The previous sample's time and CPU (user, system), for the original's percent and hz.
    previous: Option<(Instant, Option<Duration>, Option<Duration>)>,
    /// The last computed (user, system) share of the machine, in percent.
    percent: (Option<f64>, Option<f64>),
}

fn unix_seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// CPU time by mode, with the modes the platform could read.
fn cpu_by_mode(s: &Sample) -> Family {
    let mut family =
        Family::new("damon_cpu_seconds_total", Kind::Counter, "CPU time of the whole workload by mode, in seconds.");
    for (mode, time) in [("user", s.cpu_user), ("system", s.cpu_system)] {
        if let Some(time) = time {
            family = family.with(vec![("mode", mode.to_string())], time.as_secs_f64());
        }
    }
    family
}

impl Metrics {
    pub fn new(config: &Config) -> Arc<Metrics> {
        Arc::new(Metrics {
            sampler: Mutex::new(Arc::new(platform::NoSampler)),
            limits: config.limits.clone(),
            host: platform::host_cpu(),
            labels: config.log.labels.clone(),
            child: Mutex::new(ChildState::default()),
            cache: Mutex::new(Cache::default()),
            http: Arc::default(),
        })
    }

    /// Starts serving; a failure is logged and the run goes on without metrics.
    pub fn serve(self: &Arc<Self>, config: &MetricsConfig) {
        let metrics = Arc::clone(self);
        let render = Arc::new(move || metrics.text());
        match server::start(&config.addr, config.endpoint.clone(), render, Arc::clone(&self.http)) {
            Ok(local) => tracing::info!(addr = %local, endpoint = %config.endpoint, "serving metrics"),
            Err(e) => tracing::error!(
                addr = %config.addr,
                error = %e,
                "cannot serve metrics; the workload runs without them"
            ),
        }
    }

    pub fn container_ready(&self, sampler: Arc<dyn Sampler>) {
        if let Ok(mut current) = self.sampler.lock() {
            *current = sampler;
        }
    }

    pub fn child_started(&self) {
        if let Ok(mut child) = self.child.lock() {
            *child = ChildState { up: true, start_time: Some(unix_seconds(SystemTime::now())) };
        }
    }

    pub fn child_exited(&self) {
        if let Ok(mut child) = self.child.lock() {
            child.up = false;
        }
    }

    /// The exposition, from a sample no older than [`FRESHNESS`].
    pub fn text(&self) -> String {
        let mut cache = match self.cache.lock() {
            Ok(cache) => cache,
            Err(poisoned) => poisoned.into_inner(),
        };
        let now = Instant::now();
        if cache.taken.map_or(false, |taken| now.duration_since(taken) < FRESHNESS) {
            return cache.text.clone();
        }
        let sampler = self.sampler.lock().map(|s| Arc::clone(&s)).unwrap_or_else(|_| Arc::new(platform::NoSampler));
        let sample = sampler.sample();
        // The original's percent: CPU time since the previous sample over wall time x CPUs.
        if let (Some((then, user, system)), Some(host)) = (cache.previous, self.host) {
            let capacity = now.duration_since(then).as_secs_f64() * host.cpus as f64;
            if capacity > 0.0 {
                let share = |now: Option<Duration>, then: Option<Duration>| {
                    Some(now?.saturating_sub(then?).as_secs_f64() / capacity * 100.0)
                };
                cache.percent = (share(sample.cpu_user, user), share(sample.cpu_system, system));
            }
        }
        if cache.previous.is_none() {
            // No interval yet: the original reported 0 until its second sample.
            cache.percent = (sample.cpu_user.map(|_| 0.0), sample.cpu_system.map(|_| 0.0));
        }
        cache.previous = Some((now, sample.cpu_user, sample.cpu_system));
        let families = self.families(&sample, &platform::own_process(), cache.percent);
        cache.text = render(&families, &self.labels);
        cache.taken = Some(now);
        cache.text.clone()
    }

    fn families(&self, s: &Sample, own: &OwnProcess, percent: (Option<f64>, Option<f64>)) -> Vec<Family> {
        use Kind::{Counter, Gauge};
        let secs = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
        let num = |v: Option<u64>| v.map(|v| v as f64);
        let mhz = self.host.map(|h| h.mhz_per_core as f64);
        let cpus = self.host.map(|h| h.cpus as f64);
        let limit_mhz = self.limits.enforced_cpu().map(|c| c.mhz as f64);
        let hz = |percent: Option<f64>| Some(percent? / 100.0 * cpus? * mhz? * 1e6);
        let memory = self.limits.enforced_memory();
        let sum = |values: &[Option<u64>]| {
            let known: Vec<u64> = values.iter().flatten().copied().collect();
            if known.is_empty() {
                None
            } else {
                Some(known.iter().sum::<u64>() as f64)
            }
        };
        let (io_read_bytes, io_write_bytes, io_other_bytes) = (s.io_read_bytes, s.io_write_bytes, s.io_other_bytes);
        let (io_read_ops, io_write_ops, io_other_ops) =
            (s.io_read_operations, s.io_write_operations, s.io_other_operations);
        // Linux has no limit notifications: the nearest events stand in (documented in docs/metrics.md).
        let cpu_notifications = s.cpu_notifications.or(s.cpu_throttled_periods);
        let memory_notifications = s.memory_notifications.or(s.oom_kills);
        let child = self.child.lock().map(|c| *c).unwrap_or_default();
        let net = |figure: fn(&NetworkTraffic) -> u64| s.network.as_ref().map(|n| figure(n) as f64);

        let mut families = vec![
            // The original Damon's families: same names, meanings, units and types (gauges, even the
            // ever-growing ones, except the three notification counters: prometheus.NewCounter there).
            Family::single("damon_cpu_user_seconds", Gauge, "CPU time in user mode of the whole workload, in seconds (original Damon).", secs(s.cpu_user)),
            Family::single("damon_cpu_kernel_seconds", Gauge, "CPU time in kernel mode of the whole workload, in seconds (original Damon).", secs(s.cpu_system)),
            Family::single("damon_cpu_user_percent", Gauge, "User CPU since the previous sample as a share of the whole machine, in percent (original Damon).", percent.0),
            Family::single("damon_cpu_kernel_percent", Gauge, "Kernel CPU since the previous sample as a share of the whole machine, in percent (original Damon).", percent.1),
            Family::single("damon_cpu_user_hz", Gauge, "User CPU since the previous sample, in hertz of the machine (original Damon).", hz(percent.0)),
            Family::single("damon_cpu_kernel_hz", Gauge, "Kernel CPU since the previous sample, in hertz of the machine (original Damon).", hz(percent.1)),
            Family::single("damon_cpu_limit_hz", Gauge, "The enforced CPU limit, in hertz; 0 without one (original Damon).", Some(limit_mhz.unwrap_or(0.0) * 1e6)),
            Family::single("damon_cpu_limit_percent", Gauge, "The enforced CPU limit as a share of the whole machine, in percent; 0 without one (original Damon).", cpus.zip(mhz).map(|(c, m)| limit_mhz.unwrap_or(0.0) / (c * m) * 100.0)),
            Family::single("damon_cpu_notifications_total", Counter, "CPU limit notifications (Windows); periods throttled by the CPU cap (Linux) (original Damon).", num(cpu_notifications)),
            Family::single("damon_memory_working_set_bytes", Gauge, "Memory in use by the workload, in bytes (original Damon).", num(s.memory_bytes)),
            Family::single("damon_memory_commit_charge_bytes", Gauge, "Memory committed by the workload (Windows: private bytes; Linux: charged to the cgroup), in bytes (original Damon).", num(s.memory_commit_bytes.or(s.memory_bytes))),
            Family::single("damon_memory_page_fault_total", Gauge, "Page faults of the workload (original Damon).", num(s.page_faults)),
            Family::single("damon_memory_limit_bytes", Gauge, "The enforced hard memory limit, in bytes; 0 without one (original Damon).", Some(memory.map_or(0.0, |m| m.max_bytes() as f64))),
            Family::single("damon_memory_notifications_total", Counter, "Memory limit notifications (Windows); OOM kills (Linux) (original Damon).", num(memory_notifications)),
            Family::single("damon_io_read_bytes", Gauge, "Bytes read by the workload (original Damon).", num(io_read_bytes)),
            Family::single("damon_io_write_bytes", Gauge, "Bytes written by the workload (original Damon).", num(io_write_bytes)),
            Family::single("damon_io_other_bytes", Gauge, "Bytes of other IO of the workload, Windows only (original Damon).", num(io_other_bytes)),
            Family::single("damon_io_total_bytes", Gauge, "Bytes of all IO of the workload (original Damon).", sum(&[io_read_bytes, io_write_bytes, io_other_bytes])),
            Family::single("damon_io_read_operations_total", Gauge, "Read operations of the workload (original Damon).", num(io_read_ops)),
            Family::single("damon_io_write_operations_total", Gauge, "Write operations of the workload (original Damon).", num(io_write_ops)),
            Family::single("damon_io_other_operations_total", Gauge, "Other IO operations of the workload, Windows only (original Damon).", num(io_other_ops)),
            Family::single("damon_io_operations_total", Gauge, "All IO operations of the workload (original Damon).", sum(&[io_read_ops, io_write_ops, io_other_ops])),
            Family::single("damon_io_notifications_total", Counter, "IO limit notifications, Windows only (original Damon).", num(s.io_notifications)),
            // Conventional families: base units, counters end in _total, cAdvisor's names where it has one.
            cpu_by_mode(s),
            Family::single("damon_spec_cpu_limit_cores", Gauge, "The enforced CPU limit, in cores.", limit_mhz.and_then(|m| Some(m / mhz?))),
            Family::single("damon_memory_usage_bytes", Gauge, "Memory in use by the workload now, in bytes.", num(s.memory_bytes)),
            Family::single("damon_memory_max_usage_bytes", Gauge, "The most memory the workload used, in bytes.", num(s.memory_peak_bytes)),
            Family::single("damon_spec_memory_limit_bytes", Gauge, "The enforced hard memory limit, in bytes.", memory.map(|m| m.max_bytes() as f64)),
            Family::single("damon_spec_memory_reservation_limit_bytes", Gauge, "The soft memory limit (memory.high, soft limit, notification limit), in bytes.", memory.and_then(|m| m.soft_bytes()).map(|b| b as f64)),
            Family::single("damon_io_read_bandwidth_limit_bytes_per_second", Gauge, "The most bytes per second the workload may read from each limited device (DAMON_IO_READ_BANDWIDTH).", num(self.limits.io.read_bytes_per_second)),
            Family::single("damon_io_write_bandwidth_limit_bytes_per_second", Gauge, "The most bytes per second the workload may write to each limited device (DAMON_IO_WRITE_BANDWIDTH).", num(self.limits.io.write_bytes_per_second)),
            Family::single("damon_io_read_iops_limit", Gauge, "The most read operations per second on each limited device (DAMON_IO_READ_IOPS).", num(self.limits.io.read_iops)),
            Family::single("damon_io_write_iops_limit", Gauge, "The most write operations per second on each limited device (DAMON_IO_WRITE_IOPS).", num(self.limits.io.write_iops)),
            Family::single("damon_oom_events_total", Counter, "Processes of the workload killed by the OOM killer (Linux); allocations refused by the memory limit (Windows).", num(s.oom_kills.or(s.memory_limit_hits))),
            Family::single("damon_process_limit_refusals_total", Counter, "Forks refused because the workload held as many processes as its process limit allows (Linux pids.events max; Windows active process limit).", num(s.process_limit_refusals)),
            Family::single("damon_cpu_cfs_throttled_periods_total", Counter, "Scheduler periods in which the CPU cap throttled the workload (Linux).", num(s.cpu_throttled_periods)),
            Family::single("damon_cpu_cfs_throttled_seconds_total", Counter, "Time the CPU cap held the workload back, in seconds (Linux).", s.cpu_throttled.map(|d| d.as_secs_f64())),
            Family::single("damon_fs_reads_bytes_total", Counter, "Bytes read by the workload.", num(io_read_bytes)),
            Family::single("damon_fs_writes_bytes_total", Counter, "Bytes written by the workload.", num(io_write_bytes)),
            Family::single("damon_fs_reads_total", Counter, "Read operations of the workload.", num(io_read_ops)),
            Family::single("damon_fs_writes_total", Counter, "Write operations of the workload.", num(io_write_ops)),
            Family::single("damon_network_receive_bytes_total", Counter, "Bytes the workload's sockets received, IP headers included, over every interface and loopback (Linux, cgroup BPF).", net(|n| n.received_bytes)),
            Family::single("damon_network_receive_packets_total", Counter, "Packets the workload's sockets received (Linux, cgroup BPF).", net(|n| n.received_packets)),
            Family::single("damon_network_transmit_bytes_total", Counter, "Bytes the workload's sockets sent, IP headers included, over every interface and loopback (Linux, cgroup BPF).", net(|n| n.sent_bytes)),
            Family::single("damon_network_transmit_packets_total", Counter, "Packets the workload's sockets sent (Linux, cgroup BPF).", net(|n| n.sent_packets)),
            Family::single("damon_processes", Gauge, "Processes (Windows) or tasks (Linux) in the workload now.", num(s.processes)),
            Family::single("damon_start_time_seconds", Gauge, "When the child started, in seconds since the Unix epoch.", child.start_time),
            Family::single("damon_up", Gauge, "1 while the child runs, 0 before and after.", Some(if child.up { 1.0 } else { 0.0 })),
            Family::single("damon_log_lines_lost_total", Counter, "Lines of damon's own log that could not be written (full disk, read-only or vanished directory, stderr gone).", Some(crate::logging::lines_lost() as f64)),
            Family::new("damon_build_info", Gauge, "damon's version; always 1.").with(vec![("version", VERSION.to_string())], 1.0),
            Family::single("process_cpu_seconds_total", Counter, "CPU time of damon itself, in seconds.", Some(own.cpu_seconds)),
            Family::single("process_resident_memory_bytes", Gauge, "Resident memory of damon itself, in bytes.", Some(own.resident_bytes as f64)),
            Family::single("process_virtual_memory_bytes", Gauge, "Virtual memory of damon itself (Windows: private bytes), in bytes.", Some(own.virtual_bytes as f64)),
            Family::single("process_start_time_seconds", Gauge, "When damon started, in seconds since the Unix epoch.", Some(own.start_time_seconds)),
            Family::single("process_open_fds", Gauge, "Open file descriptors (Windows: handles) of damon itself.", num(own.open_fds)),
            Family::single("process_max_fds", Gauge, "The most file descriptors damon may open.", num(own.max_fds)),
        ];
        let notifications =
            [("cpu", s.cpu_notifications), ("memory", s.memory_notifications), ("io", s.io_notifications)];
        let mut by_kind = Family::new(
            "damon_limit_notifications_total",
            Counter,
            "Limit notifications from the Job Object by kind (Windows).",
        );
        for (kind, count) in notifications.iter() {
            if let Some(count) = count {
                by_kind = by_kind.with(vec![("kind", kind.to_string())], *count as f64);
            }
        }
        families.push(by_kind);
        families.extend(self.http.families());
        if let Some(p) = &s.pressure {
            let stall = |name: &'static str, help: &'static str, waiting: Duration, stalled: Duration| {
                Family::new(name, Counter, help)
                    .with(vec![("kind", "waiting".to_string())], waiting.as_secs_f64())
                    .with(vec![("kind", "stalled".to_string())], stalled.as_secs_f64())
            };
            families.push(stall("damon_pressure_cpu_seconds_total", "Time some tasks waited for (waiting) or all were stalled on (stalled) CPU, in seconds (cgroup v2 PSI).", p.cpu_waiting, p.cpu_stalled));
            families.push(stall("damon_pressure_memory_seconds_total", "Time some tasks waited for (waiting) or all were stalled on (stalled) memory, in seconds (cgroup v2 PSI).", p.memory_waiting, p.memory_stalled));
            families.push(stall(
                "damon_pressure_io_seconds_total",
                "Time some tasks waited for (waiting) or all were stalled on (stalled) IO, in seconds (cgroup v2 PSI).",
                p.io_waiting,
                p.io_stalled,
            ));
        }
        families
    }
}
