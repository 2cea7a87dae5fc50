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
        .find(|l| l.contains("\"message\":\"damon exiting\""))
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

/// A loop device on a file of 4 MiB; blk-throttle is switched on for it while `rule` holds a
/// throttle rule for it. Dropped, the device is detached and removed and made again, which
/// leaves the kernel as it was: nothing else switches blk-throttle off again for a device.
struct LoopDevice {
    number: u32,
    rule: Option<std::path::PathBuf>,
    _dir: TestDir,
}

impl LoopDevice {
    fn new() -> LoopDevice {
        let dir = TestDir::new("loop-device");
        let backing = dir.path("backing");
        std::fs::write(&backing, vec![7u8; 4 << 20]).unwrap();
        let out = std::process::Command::new("losetup").args(["-f", "--show"]).arg(&backing).output().unwrap();
        assert!(out.status.success(), "losetup: {}", String::from_utf8_lossy(&out.stderr));
        let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let number = path.trim_start_matches("/dev/loop").parse().unwrap_or_else(|_| panic!("losetup gave {}", path));
        LoopDevice { number, rule: None, _dir: dir }
    }

    fn path(&self) -> String {
        format!("/dev/loop{}", self.number)
    }

    /// A rule that never throttles, in a group of its own: blk-throttle comes on for the device.
    fn switch_blk_throttle_on(&mut self) {
        let group =
            std::path::Path::new("/sys/fs/cgroup/blkio").join(format!("damon-test-rule-{}", std::process::id()));
        std::fs::create_dir(&group).unwrap();
        let device = read_trimmed(&std::path::Path::new("/sys/block").join(format!("loop{}", self.number)).join("dev"));
        std::fs::write(group.join("blkio.throttle.read_bps_device"), format!("{} 1000000000000", device)).unwrap();
        self.rule = Some(group);
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        if let Some(group) = &self.rule {
            let _ = std::fs::remove_dir(group);
        }
        let _ = std::process::Command::new("losetup").args(["-d", &self.path()]).status();
        if let Ok(control) = std::fs::OpenOptions::new().write(true).open("/dev/loop-control") {
            use std::os::unix::io::AsRawFd;
            const LOOP_CTL_ADD: u64 = 0x4C80;
            const LOOP_CTL_REMOVE: u64 = 0x4C81;
            for request in [LOOP_CTL_REMOVE, LOOP_CTL_ADD] {
                // SAFETY: both requests take the device number as their argument and touch no
                // memory of this process; `control` is open for the duration of the call.
                unsafe { nix::libc::ioctl(control.as_raw_fd(), request as _, self.number as nix::libc::c_ulong) };
            }
        }
    }
}

/// On v1, IO figures come from blk-throttle, which counts only on devices where it is switched
/// on (on this host's kernel, where some group has a throttle rule). damon joins blkio exactly
/// where it counts somewhere, and then counts a task's reads; elsewhere the figures are left
/// out, not reported as 0.
#[test]
fn on_v1_blkio_is_joined_where_blk_throttle_counts_and_counts_a_tasks_reads() {
    if cgroup_version() != "v1" || !std::path::Path::new(BLKIO_ROOT_BYTES).exists() {
        eprintln!("skipped: cgroup v1 with blk-throttle only (the VM has no block device)");
        return;
    }
    let mut device = LoopDevice::new();
    let read_1_mib = |name: &str, device: &LoopDevice| {
        let dir = TestDir::new(name);
        let mut cmd = damon(&dir);
        let dd = format!("dd if={} of=/dev/null bs=4096 count=256 iflag=direct", device.path());
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
    let read = exiting_field(&run, "io_read_bytes");
    assert!(read >= (1 << 20) as f64, "{} bytes read counted for 1 MiB read\n{}", read, run.explain());
}
