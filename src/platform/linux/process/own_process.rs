//! damon's own resource use, from /proc/self, for the process_* metrics every Prometheus
//! client library exports.

use std::fs;

use crate::platform::OwnProcess;

/// USER_HZ: the unit of /proc's CPU times and start time on every Linux damon builds for.
const TICKS_PER_SECOND: f64 = 100.0;
const PAGE_SIZE_BYTES: u64 = 4096;

pub fn read() -> OwnProcess {
    let stat = fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may contain spaces.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    // Numbered as in proc(5), counting the state as field 3.
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let boot_time = fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("btime ").and_then(|v| v.trim().parse::<u64>().ok())))
        .unwrap_or(0);
    let open_fds = fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as u64);
    let max_fds = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).ok().map(|(soft, _)| soft);
    OwnProcess {
        cpu_seconds: (field(14) + field(15)) as f64 / TICKS_PER_SECOND,
        resident_bytes: field(24) * PAGE_SIZE_BYTES,
        virtual_bytes: field(23),
        start_time_seconds: boot_time as f64 + field(22) as f64 / TICKS_PER_SECOND,
        open_fds,
        max_fds,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn own_figures_are_plausible() {
        let me = super::read();
        assert!(me.resident_bytes > 100_000 && me.virtual_bytes > me.resident_bytes, "{:?}", me);
        assert!(me.start_time_seconds > 1_600_000_000.0, "{:?}", me);
        assert!(me.open_fds.unwrap() >= 3, "{:?}", me);
    }
}
