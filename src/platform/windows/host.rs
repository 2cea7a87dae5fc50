//! What the host offers a CPU limit, read where the original Damon read it: MHz of one core
//! from the registry value `~MHz` of CentralProcessor\0, and the logical processor count.

use super::ffi;
use crate::config::CpuLimit;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostCpu {
    pub logical_processors: u32,
    pub mhz_per_core: u32,
}

/// JOBOBJECT_CPU_RATE_CONTROL_INFORMATION counts in hundredths of a percent of the machine.
const FULL_MACHINE_RATE: u64 = 10_000;

impl HostCpu {
    pub fn read() -> Result<HostCpu, String> {
        let mhz_per_core = ffi::registry_mhz()
            .map_err(|e| format!("cannot read HKLM\\HARDWARE\\DESCRIPTION\\System\\CentralProcessor\\0 ~MHz: {}", e))?;
        Ok(HostCpu { logical_processors: ffi::logical_processors().max(1), mhz_per_core: mhz_per_core.max(1) })
    }

    /// The original's rate: limit / (cores x MHz per core) x 10000, clamped to 1..=10000.
    pub fn cpu_rate(&self, limit: CpuLimit) -> u32 {
        let machine_mhz = u64::from(self.logical_processors) * u64::from(self.mhz_per_core);
        (limit.mhz.saturating_mul(FULL_MACHINE_RATE) / machine_mhz).clamp(1, FULL_MACHINE_RATE) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_is_the_share_of_the_whole_machine() {
        let host = HostCpu { logical_processors: 4, mhz_per_core: 2500 };
        assert_eq!(host.cpu_rate(CpuLimit { mhz: 1000 }), 1000);
        assert_eq!(host.cpu_rate(CpuLimit { mhz: 100_000 }), 10_000);
        assert_eq!(host.cpu_rate(CpuLimit { mhz: 0 }), 1);
    }
}
