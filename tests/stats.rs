//! The workload's totals, read from the group's own files, reported in "damon exiting": the
//! sample the metrics are built on.

#![cfg(target_os = "linux")]

mod common;

use common::*;

/// A number field of the "damon exiting" line.
fn exiting_field(run: &Run, key: &str) -> f64 {
    let line = run
        .log
        .lines()
        .find(|l| l.contains("\"msg\":\"damon exiting\""))
        .unwrap_or_else(|| panic!("{}", run.explain()));
    let pattern = format!("\"{}\":", key);
    line.split(&pattern)
        .nth(1)
        .and_then(|rest| rest.split([',', '}']).next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no number {} in {}", key, line))
}

#[test]
fn memory_peak_covers_what_the_workload_touched() {
    let dir = TestDir::new("stats-memory");
    let mut cmd = damon(&dir);
    cmd.env("DAMON_MEMORY_LIMIT", "512").args([workload().to_str().unwrap(), "alloc", "64", "0"]);
    let run = run(cmd, &dir);
    run.assert_code(0);
    let peak_mib = exiting_field(&run, "memory_peak_bytes") / (1u64 << 20) as f64;
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
    let counted = exiting_field(&run, "cpu_user_seconds") + exiting_field(&run, "cpu_system_seconds");
    // The group's accounting includes the workload's start-up; ticks are 10 ms on v1.
    assert!(
        (counted - reported).abs() < 0.25,
        "group counted {:.3} s, the workload used {:.3} s\n{}",
        counted,
        reported,
        run.explain()
    );
    assert!(
        exiting_field(&run, "cpu_throttled_periods") > 0.0,
        "a capped busy loop was never throttled\n{}",
        run.explain()
    );
}
