//! What the host offers a CPU limit: online CPUs and the MHz of one core.
//!
//! MHz per core is taken where Nomad's CPU fingerprint takes it, so that a task's `cpu` in MHz
//! means the same share to damon as to Nomad's scheduler: cpufreq's `cpuinfo_max_freq` when
//! the kernel exposes it, else the first "cpu MHz" of /proc/cpuinfo (virtual machines often
//! have no cpufreq).

use std::fs;
use std::io::{self, Read};
use std::time::Duration;

use crate::config::CpuLimit;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostCpu {
    pub online_cpus: u64,
    pub mhz_per_core: u64,
    pub mhz_source: &'static str,
}

/// The CFS period used for the cap; the original and Nomad both use 100 ms.
pub const CPU_PERIOD: Duration = Duration::from_millis(100);
/// The kernel refuses a quota below 1 ms.
const MIN_QUOTA: Duration = Duration::from_millis(1);

const CPUFREQ_MAX: &str = "/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq";
const CPUINFO: &str = "/proc/cpuinfo";

impl HostCpu {
    pub fn read() -> Result<HostCpu, String> {
        let online_cpus = fs::read_to_string("/sys/devices/system/cpu/online")
            .ok()
            .and_then(|s| count_cpu_list(&s))
            .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get() as u64))
            .unwrap_or(1);
        let cpufreq_khz = fs::read_to_string(CPUFREQ_MAX).ok().and_then(|s| s.trim().parse::<u64>().ok());
        let (mhz_per_core, mhz_source) = match cpufreq_khz {
            Some(khz) if khz >= 1000 => (khz / 1000, CPUFREQ_MAX),
            _ => {
                let cpuinfo = cpuinfo_head().map_err(|e| format!("cannot read {}: {}", CPUINFO, e))?;
                let mhz = cpuinfo_mhz(&cpuinfo).ok_or_else(|| format!("no \"cpu MHz\" in {}", CPUINFO))?;
                (mhz, CPUINFO)
            }
        };
        Ok(HostCpu { online_cpus, mhz_per_core, mhz_source })
    }

    /// The CFS quota per [`CPU_PERIOD`] for a limit: limit_mhz / mhz_per_core of one core,
    /// at most every online CPU.
    pub fn quota(&self, limit: CpuLimit) -> Duration {
        let period_us = CPU_PERIOD.as_micros() as u64;
        let quota_us = limit.mhz.saturating_mul(period_us) / self.mhz_per_core.max(1);
        let quota = Duration::from_micros(quota_us.min(period_us * self.online_cpus));
        quota.max(MIN_QUOTA)
    }
}

/// Counts a kernel CPU list such as "0-3,8,10-11".
fn count_cpu_list(list: &str) -> Option<u64> {
    let mut count = 0;
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        count += match part.split_once('-') {
            Some((a, b)) => b.parse::<u64>().ok()?.checked_sub(a.parse().ok()?)? + 1,
            None => part.parse::<u64>().map(|_| 1).ok()?,
        };
    }
    Some(count).filter(|&c| c > 0)
}

/// /proc/cpuinfo up to its first "cpu MHz" line, not the whole file: the kernel formats a
/// processor's block as a read reaches it (on x86 measuring that CPU's frequency), so the
/// whole file costs as much as the host has CPUs, and the first block is all damon needs.
fn cpuinfo_head() -> io::Result<String> {
    let mut file = fs::File::open(CPUINFO)?;
    let mut content = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = match file.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        content.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&content);
        if text.find("cpu MHz").map_or(false, |at| text[at..].contains('\n')) {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&content).into_owned())
}

fn cpuinfo_mhz(cpuinfo: &str) -> Option<u64> {
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        if key.trim() == "cpu MHz" {
            value.trim().parse::<f64>().ok().map(|mhz| mhz.round() as u64)
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(count_cpu_list("0-1\n"), Some(2));
        assert_eq!(count_cpu_list("0-3,8,10-11"), Some(7));
        assert_eq!(count_cpu_list(""), None);
    }

    #[test]
    fn the_head_of_cpuinfo_holds_the_first_mhz_of_the_whole() {
        let whole = fs::read_to_string(CPUINFO).unwrap();
        let head = cpuinfo_head().unwrap();
        assert!(whole.starts_with(&head[..head.len().min(64)]), "{:?}", head);
        // The frequency may change between the two reads; that it is there may not.
        assert_eq!(cpuinfo_mhz(&head).is_some(), cpuinfo_mhz(&whole).is_some(), "{:?}", head);
    }

    #[test]
    fn cpuinfo_mhz_is_rounded() {
        assert_eq!(cpuinfo_mhz("processor\t: 0\ncpu MHz\t\t: 2599.998\n"), Some(2600));
    }

    #[test]
    fn quota_is_the_share_of_one_core_capped_at_all_cpus() {
        let host = HostCpu { online_cpus: 2, mhz_per_core: 2600, mhz_source: CPUINFO };
        assert_eq!(host.quota(CpuLimit { mhz: 1300 }), Duration::from_millis(50));
        assert_eq!(host.quota(CpuLimit { mhz: 5200 }), Duration::from_millis(200));
        assert_eq!(host.quota(CpuLimit { mhz: 100_000 }), Duration::from_millis(200));
        assert_eq!(host.quota(CpuLimit { mhz: 1 }), Duration::from_millis(1));
    }
}
