//! The workload's totals, read from the group's own files, reported in "damon exiting": the
//! sample the metrics are built on.

#![cfg(target_os = "linux")]

mod common;
#[path = "common/loop_device.rs"]
mod loop_device;

use common::*;
use loop_device::LoopDevice;

#[test]
fn memory_peak_covers_what_the_workload_touched() {
    let dir = TestDir::new("stats-memory");
    let mut cmd = damon(&dir);
    cmd.env("DAMON_MEMORY_LIMIT", "512").args([workload().to_str().unwrap(), "alloc", "64", "0"]);
    let run = run(cmd, &dir);
    run.assert_code(0);
    let peak_mib = run.exiting_figure("memory_peak_bytes") / (1u64 << 20) as f64;
    assert!((64.0..128.0).contains(&peak_mib), "peak {:.1} MiB for 64 MiB touched\n{}", peak_mib, run.explain());
}

#[test]
fn cpu_time_and_throttling_are_counted() {
    let dir = TestDir::new("stats-cpu");
    let mut cmd = damon(&dir);
    cmd.env("DAMON_CPU_LIMIT", (mhz_per_core() / 2).to_string()).args([workload().to_str().unwrap(), "burn", "2"]);
    let run = run(cmd, &dir);
    run.assert_code(0);
    let reported = run.printed_figure("cpu_seconds=");
    let counted = run.exiting_figure("cpu_user_seconds") + run.exiting_figure("cpu_system_seconds");
    // The group's accounting includes the workload's start-up; ticks are 10 ms on v1.
    assert!(
        (counted - reported).abs() < 0.25,
        "group counted {:.3} s, the workload used {:.3} s\n{}",
        counted,
        reported,
        run.explain()
    );
    assert!(
        run.exiting_figure("cpu_throttled_periods") > 0.0,
        "a capped busy loop was never throttled\n{}",
        run.explain()
    );
}

/// On v1, IO figures come from blk-throttle, which counts only on devices where it is switched
/// on (on this host's kernel, where some group has a throttle rule). damon joins blkio exactly
/// where it counts somewhere, and then counts a task's reads; elsewhere the figures are left
/// out, not reported as 0.
#[test]
fn on_v1_blkio_is_joined_where_blk_throttle_counts_and_counts_a_tasks_reads() {
    if cgroup_version() != "v1" {
        return skip_elsewhere("blk-throttle's counts of cgroup v1 (the host's stage runs it)");
    }
    if !std::path::Path::new(BLKIO_ROOT_BYTES).exists() {
        return skip_missing(&format!("no {}: this v1 host mounts no blkio hierarchy", BLKIO_ROOT_BYTES));
    }
    let mut device = LoopDevice::new(4);
    let read_1_mib = |name: &str, device: &LoopDevice| {
        let dir = TestDir::new(name);
        let mut cmd = damon(&dir);
        let dd = format!("dd if={} of=/dev/null bs=4096 count=256 iflag=direct", device.path().display());
        cmd.args(["sh", "-c", &dd]);
        let run = run(cmd, &dir);
        run.assert_code(0);
        let joined = container_dirs(&dir).iter().any(|d| d.starts_with("/sys/fs/cgroup/blkio"));
        (run, joined)
    };
    // As the host is.
    let counts = blk_throttle_counts_somewhere();
    let (run, joined) = read_1_mib("io-as-is", &device);
    assert_eq!(joined, counts, "blk-throttle counts somewhere: {}\n{}", counts, run.explain());
    assert_eq!(run.log.contains("\"io_read_bytes\""), counts, "{}", run.explain());
    // With blk-throttle on for the device the task reads.
    device.switch_blk_throttle_on();
    assert!(blk_throttle_counts_somewhere(), "a throttle rule did not switch blk-throttle on");
    let (run, joined) = read_1_mib("io-counted", &device);
    assert!(joined, "blkio not joined\n{}", run.explain());
    let read = run.exiting_figure("io_read_bytes");
    assert!(read >= (1 << 20) as f64, "{} bytes read counted for 1 MiB read\n{}", read, run.explain());
}
