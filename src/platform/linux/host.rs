//! What the host offers a CPU limit: online CPUs and the MHz of one core.
//!
//! MHz per core is taken where Nomad's CPU fingerprint (client/lib/numalib, Nomad 1.7 on) takes
//! it, in its order, so that a task's `cpu` in MHz means the same share to damon as to Nomad's
//! scheduler: the core's base frequency (ACPI CPPC's nominal frequency under the acpi-cpufreq
//! driver, else cpufreq's `base_frequency`), cpufreq's `cpuinfo_max_freq`, the SMBIOS
//! processor's Current Speed (Nomad runs dmidecode; damon reads the table the kernel exports),
//! and last the first "cpu MHz" of /proc/cpuinfo. Virtual machines often have no cpufreq, and
//! arm64 machines (AWS Graviton among them) no "cpu MHz": there SMBIOS is what gives it.

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

const CPUFREQ_DRIVER: &str = "/sys/devices/system/cpu/cpu0/cpufreq/scaling_driver";
const CPPC_NOMINAL_MHZ: &str = "/sys/devices/system/cpu/cpu0/acpi_cppc/nominal_freq";
const CPUFREQ_BASE_KHZ: &str = "/sys/devices/system/cpu/cpu0/cpufreq/base_frequency";
const CPUFREQ_MAX_KHZ: &str = "/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq";
const SMBIOS_TABLE: &str = "/sys/firmware/dmi/tables/DMI";
const CPUINFO: &str = "/proc/cpuinfo";

impl HostCpu {
    pub fn read() -> Result<HostCpu, String> {
        let online_cpus = fs::read_to_string("/sys/devices/system/cpu/online")
            .ok()
            .and_then(|s| count_cpu_list(&s))
            .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get() as u64))
            .unwrap_or(1);
        let (mhz_per_core, mhz_source) = mhz_per_core()?;
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

/// The MHz of one core and the file it came from, in Nomad's order (see the module's comment).
fn mhz_per_core() -> Result<(u64, &'static str), String> {
    let number = |path: &str| fs::read_to_string(path).ok().and_then(|s| s.trim().parse::<u64>().ok());
    // No cpufreq (most virtual machines): none of its files is there, and none is tried.
    if let Ok(driver) = fs::read_to_string(CPUFREQ_DRIVER) {
        let base = if driver.trim() == "acpi-cpufreq" {
            number(CPPC_NOMINAL_MHZ).map(|mhz| (mhz, CPPC_NOMINAL_MHZ))
        } else {
            number(CPUFREQ_BASE_KHZ).map(|khz| (khz / 1000, CPUFREQ_BASE_KHZ))
        };
        let max = || number(CPUFREQ_MAX_KHZ).map(|khz| (khz / 1000, CPUFREQ_MAX_KHZ));
        if let Some(found) = base.filter(|(mhz, _)| *mhz > 0).or_else(|| max().filter(|(mhz, _)| *mhz > 0)) {
            return Ok(found);
        }
    }
    // Readable by root only, as damon runs; an unprivileged --check goes on to /proc/cpuinfo.
    if let Some(mhz) = fs::read(SMBIOS_TABLE).ok().and_then(|table| smbios_processor_mhz(&table)) {
        return Ok((mhz, SMBIOS_TABLE));
    }
    let cpuinfo = cpuinfo_head().map_err(|e| format!("cannot read {}: {}", CPUINFO, e))?;
    cpuinfo_mhz(&cpuinfo).map(|mhz| (mhz, CPUINFO)).ok_or_else(|| {
        format!(
            "no frequency of the CPU: no cpufreq for cpu0, no processor speed in the SMBIOS table ({}), \
             no \"cpu MHz\" in {}",
            SMBIOS_TABLE, CPUINFO
        )
    })
}

/// The highest Current Speed of the SMBIOS Processor Information structures (type 4) in the
/// kernel's copy of the structure table, as Nomad takes it from `dmidecode -t 4`; None where
/// no processor states one (0 means unknown).
fn smbios_processor_mhz(table: &[u8]) -> Option<u64> {
    // DSP0134: each structure is a header (type, length of the formatted part, handle), the
    // formatted part, then its strings, each ended by a NUL, the set by one more (two NULs when
    // it has none). Type 127 ends the table. Current Speed: a WORD at offset 0x16 (SMBIOS 2.0).
    const PROCESSOR: u8 = 4;
    const END_OF_TABLE: u8 = 127;
    const CURRENT_SPEED: usize = 0x16;
    let mut best = None;
    let mut at = 0;
    while at + 4 <= table.len() {
        let (kind, length) = (table[at], usize::from(table[at + 1]));
        let formatted = table.get(at..at + length).filter(|_| length >= 4)?;
        if kind == END_OF_TABLE {
            break;
        }
        if kind == PROCESSOR && length >= CURRENT_SPEED + 2 {
            let mhz = u64::from(u16::from_le_bytes([formatted[CURRENT_SPEED], formatted[CURRENT_SPEED + 1]]));
            if mhz > 0 {
                best = best.max(Some(mhz));
            }
        }
        let strings = &table[at + length..];
        at += length + strings.windows(2).position(|pair| pair == [0, 0])? + 2;
    }
    best
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

    /// A table as firmware lays it out: BIOS information (type 0) with strings, two processors
    /// (the second at a higher speed), one with no strings, then the end.
    #[test]
    fn smbios_gives_the_highest_processor_current_speed() {
        let processor = |mhz: u16, strings: &[u8]| {
            let mut s = vec![4u8, 0x1a, 0x04, 0x00];
            s.resize(0x1a, 0);
            s[CURRENT_SPEED_AT..CURRENT_SPEED_AT + 2].copy_from_slice(&mhz.to_le_bytes());
            s.extend_from_slice(strings);
            s
        };
        const CURRENT_SPEED_AT: usize = 0x16;
        let mut table = vec![0u8, 0x12, 0x00, 0x00];
        table.resize(0x12, 1);
        table.extend_from_slice(b"EDK II\0v1.0\0\0");
        table.extend(processor(2100, b"CPU 0\0\0"));
        table.extend(processor(2500, b"\0\0"));
        table.extend_from_slice(&[127, 4, 0, 0, 0, 0]);
        assert_eq!(smbios_processor_mhz(&table), Some(2500));
        // A speed of 0 is unknown; a table cut short is not trusted at all.
        assert_eq!(smbios_processor_mhz(&processor(0, b"\0\0")), None);
        assert_eq!(smbios_processor_mhz(&table[..table.len() - 30]), None);
        assert_eq!(smbios_processor_mhz(&[]), None);
        // The host's own table, where damon may read it: a speed, or none; never a panic.
        if let Ok(host) = fs::read(SMBIOS_TABLE) {
            let _ = smbios_processor_mhz(&host);
        }
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
