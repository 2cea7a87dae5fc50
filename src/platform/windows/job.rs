//! The Job Object that holds the workload, its limits, and its accounting.

use std::ffi::OsStr;
use std::io;
use std::os::windows::io::OwnedHandle;
use std::time::Duration;

use windows_sys::Win32::System::JobObjects::{
    JobObjectAssociateCompletionPortInformation, JobObjectBasicAndIoAccountingInformation,
    JobObjectBasicUIRestrictions, JobObjectCpuRateControlInformation, JobObjectExtendedLimitInformation,
    JobObjectGroupInformationEx, JobObjectLimitViolationInformation, JobObjectNetRateControlInformation,
    JobObjectNotificationLimitInformation, ToleranceIntervalLong, ToleranceLow, JOBOBJECT_ASSOCIATE_COMPLETION_PORT,
    JOBOBJECT_BASIC_AND_IO_ACCOUNTING_INFORMATION, JOBOBJECT_BASIC_UI_RESTRICTIONS,
    JOBOBJECT_CPU_RATE_CONTROL_INFORMATION, JOBOBJECT_EXTENDED_LIMIT_INFORMATION,
    JOBOBJECT_LIMIT_VIOLATION_INFORMATION, JOBOBJECT_NET_RATE_CONTROL_INFORMATION,
    JOBOBJECT_NOTIFICATION_LIMIT_INFORMATION, JOB_OBJECT_CPU_RATE_CONTROL_ENABLE, JOB_OBJECT_CPU_RATE_CONTROL_HARD_CAP,
    JOB_OBJECT_LIMIT, JOB_OBJECT_LIMIT_ACTIVE_PROCESS, JOB_OBJECT_LIMIT_AFFINITY, JOB_OBJECT_LIMIT_CPU_RATE_CONTROL,
    JOB_OBJECT_LIMIT_JOB_MEMORY, JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE, JOB_OBJECT_NET_RATE_CONTROL_ENABLE,
    JOB_OBJECT_NET_RATE_CONTROL_MAX_BANDWIDTH, JOB_OBJECT_UILIMIT,
};
use windows_sys::Win32::System::SystemInformation::GROUP_AFFINITY;

use super::ffi;
use super::host::HostCpu;
use crate::config::{Cores, CpuCores, IoLimits, Limits};
use crate::platform::ContainerError;

pub struct JobObject {
    handle: OwnedHandle,
}

/// Accounting of every process that was ever in the job.
pub struct Accounting {
    pub user: Duration,
    pub kernel: Duration,
    pub page_faults: u64,
    pub active_processes: u64,
    pub read_operations: u64,
    pub write_operations: u64,
    pub other_operations: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub other_bytes: u64,
}

/// FILETIME-style counts are in 100 ns units.
fn from_100ns(value: i64) -> Duration {
    Duration::from_nanos(value.max(0) as u64 * 100)
}

/// A limit Windows refused, with the Windows error and the way to run without it.
fn limit_error(limit: &str, e: io::Error, way_out: &str) -> ContainerError {
    ContainerError::message(format!("Windows refused the {}: {}; {}", limit, e, way_out))
}

/// How to run without the IO limits.
const IO_WAY_OUT: &str =
    "unset DAMON_IO_READ_BANDWIDTH, DAMON_IO_WRITE_BANDWIDTH, DAMON_IO_READ_IOPS and DAMON_IO_WRITE_IOPS to run without it";

/// Windows 10 1607 and Windows Server 2016: from this build on, Microsoft documents the job's IO
/// rate control (SetIoRateControlInformationJobObject) as unsupported.
const IO_RATE_CONTROL_UNSUPPORTED_FROM_BUILD: u32 = 14393;

/// Why the `limit` (the IO rate control asked for) is refused on a host running `version`, or
/// `None` where it is set and Windows has the last word.
fn io_rate_control_refusal(limit: &str, version: ffi::WindowsVersion) -> Option<String> {
    if version.build < IO_RATE_CONTROL_UNSUPPORTED_FROM_BUILD {
        return None;
    }
    Some(format!(
        "the {} is refused on this Windows version: Microsoft documents it as unsupported from Windows 10 1607 / \
         Windows Server 2016 on (build {}; this host: {}); {}",
        limit, IO_RATE_CONTROL_UNSUPPORTED_FROM_BUILD, version, IO_WAY_OUT
    ))
}

/// How to run without a pin Windows refused: unset the variable it came from.
fn unpin(cores: &Cores) -> String {
    match cores.source.starts_with("NOMAD_") {
        true => {
            format!("{} comes from the job's resources.cores: ask for cpu instead to run on every core", cores.source)
        }
        false => format!("unset {} to run on every core", cores.source),
    }
}

/// The affinity masks that pin to `cores` on a host whose processor groups hold `group_sizes`
/// active logical processors: one (group, mask) per group holding a core asked for. Cores are
/// numbered across the groups in order, as a cpuset list counts them (group 0 first), and the
/// groups may differ in size. `Err` names the cores beyond the host's logical processors and
/// their count.
fn group_masks(cores: &CpuCores, group_sizes: &[u32]) -> Result<Vec<(u16, usize)>, (CpuCores, u32)> {
    // A group holds at most 64 processors, one bit each of its affinity mask.
    let sizes: Vec<u32> = group_sizes.iter().map(|&size| size.min(usize::BITS)).collect();
    let total: u32 = sizes.iter().sum();
    let beyond = cores.without(&CpuCores::from_cores(0..total));
    if !beyond.is_empty() {
        return Err((beyond, total));
    }
    let mut masks: Vec<(u16, usize)> = Vec::new();
    let mut first_of_group = 0;
    for (group, &size) in sizes.iter().enumerate() {
        let mask = cores
            .iter()
            .filter(|core| (first_of_group..first_of_group + size).contains(core))
            .fold(0usize, |mask, core| mask | 1usize << (core - first_of_group));
        if mask != 0 {
            masks.push((group as u16, mask));
        }
        first_of_group += size;
    }
    Ok(masks)
}

impl JobObject {
    pub fn create(name: &str) -> Result<JobObject, ContainerError> {
        let handle =
            ffi::create_job(OsStr::new(name)).map_err(|e| ContainerError::new("cannot create the Job Object", e))?;
        Ok(JobObject { handle })
    }

    pub fn handle(&self) -> &OwnedHandle {
        &self.handle
    }

    /// DAMON_SANDBOX: what the job's processes may not do to the desktop and the session.
    pub fn restrict_ui(&self, restrictions: JOB_OBJECT_UILIMIT) -> Result<(), ContainerError> {
        let info = JOBOBJECT_BASIC_UI_RESTRICTIONS { UIRestrictionsClass: restrictions };
        ffi::set_job_information(&self.handle, JobObjectBasicUIRestrictions, &info).map_err(|e| {
            limit_error(
                "sandbox's UI restrictions (JOBOBJECT_BASIC_UI_RESTRICTIONS)",
                e,
                "unset DAMON_SANDBOX to run without them",
            )
        })
    }

    /// Puts the limits in force, the IO and network rate control included (the run and --check
    /// alike). KILL_ON_JOB_CLOSE always: when damon's handle closes,
    /// however damon ends, every process of the job ends with it.
    pub fn set_limits(&self, limits: &Limits, cpu: Option<&HostCpu>) -> Result<(), ContainerError> {
        let mut extended: JOBOBJECT_EXTENDED_LIMIT_INFORMATION =
            ffi::query_job_information(&self.handle, JobObjectExtendedLimitInformation)
                .map_err(|e| ContainerError::new("cannot read the Job Object's limits", e))?;
        let mut flags: JOB_OBJECT_LIMIT = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
        if let Some(memory) = limits.enforced_memory() {
            flags |= JOB_OBJECT_LIMIT_JOB_MEMORY;
            extended.JobMemoryLimit = memory.max_bytes() as usize;
        }
        if let Some(max) = limits.process_limit {
            flags |= JOB_OBJECT_LIMIT_ACTIVE_PROCESS;
            extended.BasicLimitInformation.ActiveProcessLimit = max.min(u64::from(u32::MAX)) as u32;
        }
        extended.BasicLimitInformation.LimitFlags = flags;
        ffi::set_job_information(&self.handle, JobObjectExtendedLimitInformation, &extended).map_err(|e| {
            limit_error(
                "memory and process limits (JOBOBJECT_EXTENDED_LIMIT_INFORMATION)",
                e,
                "DAMON_ENFORCE_MEMORY_LIMIT=N and no DAMON_PROCESS_LIMIT run without them",
            )
        })?;
        if let Some(cores) = &limits.cores {
            self.pin(cores, &mut extended)?;
        }

        let soft_memory = limits.enforced_memory().and_then(|m| m.soft_bytes());
        let cpu_rate = match (limits.enforced_cpu(), cpu) {
            (Some(limit), Some(cpu)) => Some(cpu.cpu_rate(limit)),
            _ => None,
        };
        if let Some(rate) = cpu_rate {
            let mut info = JOBOBJECT_CPU_RATE_CONTROL_INFORMATION {
                ControlFlags: JOB_OBJECT_CPU_RATE_CONTROL_ENABLE | JOB_OBJECT_CPU_RATE_CONTROL_HARD_CAP,
                Anonymous: windows_sys::Win32::System::JobObjects::JOBOBJECT_CPU_RATE_CONTROL_INFORMATION_0 {
                    CpuRate: 0,
                },
            };
            info.Anonymous.CpuRate = rate;
            ffi::set_job_information(&self.handle, JobObjectCpuRateControlInformation, &info).map_err(|e| {
                limit_error(
                    &format!("CPU rate limit of {} (hundredths of a percent)", rate),
                    e,
                    "DAMON_ENFORCE_CPU_LIMIT=N runs without the cap",
                )
            })?;
        }
        if soft_memory.is_some() || cpu_rate.is_some() {
            // Notifications: the soft memory limit, and the original's CPU-rate tolerance
            // (low, over the long interval), both reported on the completion port.
            let mut notify_flags: JOB_OBJECT_LIMIT = 0;
            if cpu_rate.is_some() {
                notify_flags |= JOB_OBJECT_LIMIT_CPU_RATE_CONTROL;
            }
            if soft_memory.is_some() {
                notify_flags |= JOB_OBJECT_LIMIT_JOB_MEMORY;
            }
            let info = JOBOBJECT_NOTIFICATION_LIMIT_INFORMATION {
                IoReadBytesLimit: 0,
                IoWriteBytesLimit: 0,
                PerJobUserTimeLimit: 0,
                JobMemoryLimit: soft_memory.unwrap_or(0),
                RateControlTolerance: ToleranceLow,
                RateControlToleranceInterval: ToleranceIntervalLong,
                LimitFlags: notify_flags,
            };
            // Notifications only report: the hard limits above are in force without them, so a
            // refusal (Wine refuses them all) is a warning, not a start-up failure.
            if let Err(e) = ffi::set_job_information(&self.handle, JobObjectNotificationLimitInformation, &info) {
                tracing::warn!(
                    error = %e,
                    "Windows refused the limit notifications (soft memory limit, CPU rate tolerance); the hard limits are in force"
                );
            }
        }
        self.limit_io(&limits.io)?;
        self.limit_network(limits.net_max_bytes_per_second)
    }

    /// DAMON_IO_*: the job's IO rate control, one bandwidth and one rate of operations for reads
    /// and writes together on each volume. So the read and the write limit must be equal, and
    /// DAMON_IO_DEVICES (Linux's block devices) unset: anything else is refused with the way out
    /// rather than applied with another meaning. Then the host's version decides: Microsoft
    /// documents the IO rate control as unsupported from Windows 10 1607 / Server 2016 on, so
    /// there it is refused whatever the call would do; before, it is called and a Windows error
    /// refuses it.
    fn limit_io(&self, io: &IoLimits) -> Result<(), ContainerError> {
        if !io.any() {
            return Ok(());
        }
        if let Some((_, source)) = &io.devices {
            return Err(ContainerError::message(format!(
                "{} names Linux block devices; on Windows the IO limits apply to every volume: unset it",
                source
            )));
        }
        let together = |what: &str, read: Option<u64>, write: Option<u64>| match (read, write) {
            (None, None) => Ok(0),
            (Some(r), Some(w)) if r == w => Ok(i64::try_from(r).unwrap_or(i64::MAX)),
            _ => Err(ContainerError::message(format!(
                "Windows limits reads and writes together (one {} for the job): set DAMON_IO_READ_{} and \
                 DAMON_IO_WRITE_{} to the same value (read {}, write {})",
                what.to_lowercase(),
                what,
                what,
                read.map_or_else(|| "unset".to_string(), |v| v.to_string()),
                write.map_or_else(|| "unset".to_string(), |v| v.to_string())
            ))),
        };
        let bandwidth = together("BANDWIDTH", io.read_bytes_per_second, io.write_bytes_per_second)?;
        let iops = together("IOPS", io.read_iops, io.write_iops)?;
        let limit = format!(
            "IO rate control (JOBOBJECT_IO_RATE_CONTROL_INFORMATION: {} bytes/s, {} operations/s; 0 is none)",
            bandwidth, iops
        );
        let version = ffi::os_version().map_err(|e| {
            ContainerError::message(format!("cannot read the Windows version for the {}: {}", limit, e))
        })?;
        if let Some(refusal) = io_rate_control_refusal(&limit, version) {
            return Err(ContainerError::message(refusal));
        }
        ffi::set_io_rate_control(&self.handle, bandwidth, iops).map_err(|e| limit_error(&limit, e, IO_WAY_OUT))
    }

    /// DAMON_NET_MAX_BANDWIDTH: the job's network rate control (Windows 10 1607 / Server 2016),
    /// on the bytes its processes send.
    fn limit_network(&self, max_bytes_per_second: Option<u64>) -> Result<(), ContainerError> {
        let bytes = match max_bytes_per_second {
            Some(bytes) => bytes,
            None => return Ok(()),
        };
        let info = JOBOBJECT_NET_RATE_CONTROL_INFORMATION {
            MaxBandwidth: bytes,
            ControlFlags: JOB_OBJECT_NET_RATE_CONTROL_ENABLE | JOB_OBJECT_NET_RATE_CONTROL_MAX_BANDWIDTH,
            DscpTag: 0,
        };
        ffi::set_job_information(&self.handle, JobObjectNetRateControlInformation, &info).map_err(|e| {
            limit_error(
                &format!("network rate control (JOBOBJECT_NET_RATE_CONTROL_INFORMATION: {} bytes/s)", bytes),
                e,
                "unset DAMON_NET_MAX_BANDWIDTH to run without it",
            )
        })
    }

    /// Pins every process of the job to `cores`: the job's affinity on a host with one processor
    /// group (at most 64 logical processors), the affinity of each group otherwise. Set in a
    /// call of its own, so that a refusal names the pin; `extended` is the limit information
    /// just set, whose flags (KILL_ON_JOB_CLOSE and the limits) are kept.
    fn pin(&self, cores: &Cores, extended: &mut JOBOBJECT_EXTENDED_LIMIT_INFORMATION) -> Result<(), ContainerError> {
        let mut groups = ffi::processor_groups();
        if groups.iter().all(|&size| size == 0) {
            groups = vec![ffi::logical_processors()];
        }
        let masks = group_masks(&cores.cores, &groups).map_err(|(beyond, total)| {
            let (noun, verb) = if beyond.count() == 1 { ("core", "is") } else { ("cores", "are") };
            ContainerError::message(format!(
                "invalid value {:?} for {}: {} {} {} not on this host (logical processors: {})",
                cores.cores.to_string(),
                cores.source,
                noun,
                beyond,
                verb,
                CpuCores::from_cores(0..total)
            ))
        })?;
        if groups.len() == 1 {
            // The affinity must be a subset of the system's: it is, every core being below the count.
            extended.BasicLimitInformation.LimitFlags |= JOB_OBJECT_LIMIT_AFFINITY;
            extended.BasicLimitInformation.Affinity = masks.first().map_or(0, |&(_, mask)| mask);
            ffi::set_job_information(&self.handle, JobObjectExtendedLimitInformation, &*extended).map_err(|e| {
                limit_error(&format!("pin to cores {} (JOB_OBJECT_LIMIT_AFFINITY)", cores.cores), e, &unpin(cores))
            })
        } else {
            let affinities: Vec<GROUP_AFFINITY> = masks
                .iter()
                .map(|&(group, mask)| GROUP_AFFINITY { Mask: mask, Group: group, Reserved: [0; 3] })
                .collect();
            ffi::set_job_information_list(&self.handle, JobObjectGroupInformationEx, &affinities).map_err(|e| {
                limit_error(&format!("pin to cores {} (JobObjectGroupInformationEx)", cores.cores), e, &unpin(cores))
            })
        }
    }

    /// Sends the job's notifications to `port`, tagged with `key`.
    pub fn notify_port(&self, port: &OwnedHandle, key: usize) -> io::Result<()> {
        let info = JOBOBJECT_ASSOCIATE_COMPLETION_PORT {
            CompletionKey: key as *mut _,
            CompletionPort: ffi::handle_value(port),
        };
        ffi::set_job_information(&self.handle, JobObjectAssociateCompletionPortInformation, &info)
    }

    pub fn assign(&self, process: &OwnedHandle) -> io::Result<()> {
        ffi::assign_to_job(&self.handle, process)
    }

    pub fn contains(&self, process: &OwnedHandle) -> io::Result<bool> {
        ffi::is_in_job(process, &self.handle)
    }

    pub fn terminate(&self, exit_code: u32) -> io::Result<()> {
        ffi::terminate_job(&self.handle, exit_code)
    }

    pub fn accounting(&self) -> io::Result<Accounting> {
        let info: JOBOBJECT_BASIC_AND_IO_ACCOUNTING_INFORMATION =
            ffi::query_job_information(&self.handle, JobObjectBasicAndIoAccountingInformation)?;
        let (basic, io) = (info.BasicInfo, info.IoInfo);
        Ok(Accounting {
            user: from_100ns(basic.TotalUserTime),
            kernel: from_100ns(basic.TotalKernelTime),
            page_faults: u64::from(basic.TotalPageFaultCount),
            active_processes: u64::from(basic.ActiveProcesses),
            read_operations: io.ReadOperationCount,
            write_operations: io.WriteOperationCount,
            other_operations: io.OtherOperationCount,
            read_bytes: io.ReadTransferCount,
            write_bytes: io.WriteTransferCount,
            other_bytes: io.OtherTransferCount,
        })
    }

    pub fn peak_memory_bytes(&self) -> io::Result<u64> {
        let info: JOBOBJECT_EXTENDED_LIMIT_INFORMATION =
            ffi::query_job_information(&self.handle, JobObjectExtendedLimitInformation)?;
        Ok(info.PeakJobMemoryUsed as u64)
    }

    /// Which notification limits were exceeded, for a JOB_OBJECT_MSG_NOTIFICATION_LIMIT.
    pub fn violated_limits(&self) -> io::Result<JOB_OBJECT_LIMIT> {
        let info: JOBOBJECT_LIMIT_VIOLATION_INFORMATION =
            ffi::query_job_information(&self.handle, JobObjectLimitViolationInformation)?;
        Ok(info.ViolationLimitFlags)
    }

    pub fn process_ids(&self) -> io::Result<Vec<usize>> {
        ffi::job_process_ids(&self.handle)
    }
}

/// For `damon --check`: the job damon.exe runs in, if any, and what it limits. damon's own job
/// nests inside it (Windows 8 and Server 2012 on): both jobs' limits hold for the workload, and
/// the enclosing job's kill (Nomad 1.9+'s executor holds one with KILL_ON_JOB_CLOSE) ends
/// damon.exe and the whole tree.
pub fn describe_enclosing_job() -> String {
    use windows_sys::Win32::System::JobObjects::{
        JOB_OBJECT_LIMIT_BREAKAWAY_OK, JOB_OBJECT_LIMIT_DIE_ON_UNHANDLED_EXCEPTION, JOB_OBJECT_LIMIT_JOB_TIME,
        JOB_OBJECT_LIMIT_PRIORITY_CLASS, JOB_OBJECT_LIMIT_PROCESS_MEMORY, JOB_OBJECT_LIMIT_PROCESS_TIME,
        JOB_OBJECT_LIMIT_SILENT_BREAKAWAY_OK, JOB_OBJECT_LIMIT_WORKINGSET,
    };
    let info = match ffi::enclosing_job_limits() {
        Ok(None) => return "none".to_string(),
        Ok(Some(info)) => info,
        Err(e) => return format!("unknown: {}", e),
    };
    let flags = info.BasicLimitInformation.LimitFlags;
    let mut limits = Vec::new();
    let mib = |bytes: usize| bytes / (1024 * 1024);
    let named: [(JOB_OBJECT_LIMIT, &str); 6] = [
        (JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE, "KILL_ON_JOB_CLOSE (closing it ends damon.exe and the workload)"),
        (JOB_OBJECT_LIMIT_BREAKAWAY_OK, "BREAKAWAY_OK"),
        (JOB_OBJECT_LIMIT_SILENT_BREAKAWAY_OK, "SILENT_BREAKAWAY_OK"),
        (JOB_OBJECT_LIMIT_DIE_ON_UNHANDLED_EXCEPTION, "DIE_ON_UNHANDLED_EXCEPTION"),
        (JOB_OBJECT_LIMIT_PRIORITY_CLASS, "PRIORITY_CLASS"),
        (JOB_OBJECT_LIMIT_WORKINGSET, "WORKINGSET"),
    ];
    limits.extend(named.iter().filter(|(flag, _)| flags & flag != 0).map(|(_, name)| name.to_string()));
    if flags & JOB_OBJECT_LIMIT_JOB_MEMORY != 0 {
        limits.push(format!("job memory {} MiB", mib(info.JobMemoryLimit)));
    }
    if flags & JOB_OBJECT_LIMIT_PROCESS_MEMORY != 0 {
        limits.push(format!("process memory {} MiB", mib(info.ProcessMemoryLimit)));
    }
    if flags & JOB_OBJECT_LIMIT_ACTIVE_PROCESS != 0 {
        limits.push(format!("{} processes", info.BasicLimitInformation.ActiveProcessLimit));
    }
    if flags & JOB_OBJECT_LIMIT_AFFINITY != 0 {
        limits.push(format!("affinity {:#x}", info.BasicLimitInformation.Affinity));
    }
    if flags & (JOB_OBJECT_LIMIT_JOB_TIME | JOB_OBJECT_LIMIT_PROCESS_TIME) != 0 {
        limits.push("CPU time".to_string());
    }
    let limits = if limits.is_empty() { "no limit".to_string() } else { limits.join(", ") };
    format!("damon.exe runs inside another job ({}); damon's job nests inside it, and both jobs' limits hold", limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cores(list: &str) -> CpuCores {
        CpuCores::from_kernel_list(list).unwrap()
    }

    #[test]
    fn cores_map_to_the_affinity_of_their_processor_group() {
        assert_eq!(group_masks(&cores("0-1"), &[2]), Ok(vec![(0, 0b11)]));
        assert_eq!(group_masks(&cores("0,3"), &[4]), Ok(vec![(0, 0b1001)]));
        // Groups of different sizes: 0-39 in group 0, 40-103 in group 1, 104-111 in group 2.
        assert_eq!(group_masks(&cores("39-40,104,111"), &[40, 64, 8]), Ok(vec![(0, 1 << 39), (1, 1), (2, 1 | 1 << 7)]));
        assert_eq!(group_masks(&cores("103"), &[40, 64, 8]), Ok(vec![(1, 1 << 63)]));
        assert_eq!(group_masks(&cores("1,7-8"), &[2]), Err((cores("7-8"), 2)));
    }

    #[test]
    fn the_io_rate_control_is_refused_from_windows_10_1607_on() {
        let version = |major, minor, build| ffi::WindowsVersion { major, minor, build };
        let limit =
            "IO rate control (JOBOBJECT_IO_RATE_CONTROL_INFORMATION: 4194304 bytes/s, 0 operations/s; 0 is none)";
        // Windows 10 1511 and 8.1: called, Windows has the last word.
        assert_eq!(io_rate_control_refusal(limit, version(10, 0, 10586)), None);
        assert_eq!(io_rate_control_refusal(limit, version(6, 3, 9600)), None);
        // Windows 10 1607 / Server 2016, Server 2022: refused, naming this host's version.
        assert!(io_rate_control_refusal(limit, version(10, 0, 14393)).is_some());
        assert_eq!(
            io_rate_control_refusal(limit, version(10, 0, 20348)).as_deref(),
            Some(
                "the IO rate control (JOBOBJECT_IO_RATE_CONTROL_INFORMATION: 4194304 bytes/s, 0 operations/s; 0 is \
                 none) is refused on this Windows version: Microsoft documents it as unsupported from Windows 10 \
                 1607 / Windows Server 2016 on (build 14393; this host: 10.0.20348); unset DAMON_IO_READ_BANDWIDTH, \
                 DAMON_IO_WRITE_BANDWIDTH, DAMON_IO_READ_IOPS and DAMON_IO_WRITE_IOPS to run without it"
            )
        );
    }

    #[test]
    fn this_hosts_version_is_read() {
        // Windows 10 / Server 2016 and later report 10.0 (Wine too, by default).
        let version = ffi::os_version().unwrap();
        assert!(version.major >= 6 && version.build > 0, "{:?}", version);
    }
}
