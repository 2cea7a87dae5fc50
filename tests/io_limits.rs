//! DAMON_IO_*: disk IO limits on a real block device (a loop device on a file), on v1
//! (blkio.throttle.*) and v2 (io.max). A workload reads and writes with O_DIRECT, so that the
//! page cache neither serves nor absorbs its IO, and times itself: with a limit it runs at the
//! limit, without one (the control, on the same device) much faster. No rule is left on the
//! device when damon ends, also when it is SIGKILLed. DAMON_NET_MAX_BANDWIDTH, which Linux
//! cannot enforce, is refused. Every test name holds "io_limit" (`scripts/vm-test io_limit`).

#![cfg(target_os = "linux")]

mod common;
#[path = "common/loop_device.rs"]
mod loop_device;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use loop_device::LoopDevice;
use nix::sys::signal::Signal;

const MIB: f64 = 1048576.0;

/// The workload's `direct-io` run under damon with `env`: its figures, and the run.
fn direct_io(dir: &TestDir, env: &[(&str, String)], direction: &str, path: &Path, mib: u64, block_kib: u64) -> Run {
    let mut cmd = damon(dir);
    cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .arg(workload())
        .args(["direct-io", direction])
        .arg(path)
        .args([mib.to_string(), block_kib.to_string()]);
    let run = run(cmd, dir);
    run.assert_code(0);
    run
}

/// Asserts that `rate` is at `limit`: not above it (beyond blk-throttle's first slice, a few
/// percent), and not far below it (the device does far more, as the control shows).
fn assert_at_limit(what: &str, rate: f64, limit: f64, free: f64, run: &Run) {
    println!(
        "io_limit ({}): {}: {:.0} with a limit of {:.0} ({:+.1}%), {:.0} without",
        cgroup_version(),
        what,
        rate,
        limit,
        (rate / limit - 1.0) * 100.0,
        free
    );
    assert!(rate <= limit * 1.10, "{}: {:.0} over a limit of {:.0}\n{}", what, rate, limit, run.explain());
    assert!(rate >= limit * 0.5, "{}: {:.0}, far below the limit of {:.0}\n{}", what, rate, limit, run.explain());
    assert!(
        free >= limit * 2.0,
        "{}: {:.0} without a limit: the device is too slow to show one of {:.0}",
        what,
        free,
        limit
    );
}

/// Every rule on the device `number` in the whole hierarchy: the lines of io.max (v2) or of
/// the blkio.throttle.*_device files (v1) that name it, with their files.
fn rules_on(number: &str) -> Vec<String> {
    fn walk(dir: &Path, number: &str, found: &mut Vec<String>) {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(_) => return,
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                walk(&path, number, found);
            } else if name == "io.max" || (name.starts_with("blkio.throttle.") && name.ends_with("_device")) {
                let content = std::fs::read_to_string(&path).unwrap_or_default();
                for line in content.lines().filter(|l| l.starts_with(&format!("{} ", number))) {
                    found.push(format!("{}: {}", path.display(), line));
                }
            }
        }
    }
    let root = if cgroup_version() == "v2" { "/sys/fs/cgroup" } else { "/sys/fs/cgroup/blkio" };
    let mut found = Vec::new();
    walk(Path::new(root), number, &mut found);
    found
}

#[test]
fn io_limits_hold_direct_reads_and_writes_at_the_limit() {
    let device = LoopDevice::new(32);
    let dir = TestDir::new("io-limit-rates");
    let devices = ("DAMON_IO_DEVICES", device.path().display().to_string());
    let limit = 4.0 * MIB;
    for (direction, var) in [("read", "DAMON_IO_READ_BANDWIDTH"), ("write", "DAMON_IO_WRITE_BANDWIDTH")] {
        let free = direct_io(&dir, &[], direction, &device.path(), 8, 64).printed_figure("bytes_per_second=");
        let run = direct_io(&dir, &[(var, "4M".to_string()), devices.clone()], direction, &device.path(), 8, 64);
        assert_at_limit(&format!("{} bytes/s", direction), run.printed_figure("bytes_per_second="), limit, free, &run);
        run.assert_log_contains(&format!("\"message\":\"IO limits set\",\"disks\":\"{}\"", device.device_number()));
        // The IO is counted too (on v1 the rule turns blk-throttle's counting on for the device).
        let exiting = run.log.lines().rev().find(|l| l.contains("\"message\":\"damon exiting\"")).unwrap_or_default();
        let key = format!("\"io_{}_bytes\":", direction);
        let counted: f64 = exiting
            .split(&key)
            .nth(1)
            .and_then(|r| r.split([',', '}']).next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        assert!(counted >= 8.0 * MIB, "{} counted {} bytes of 8 MiB: {}", direction, counted, exiting);
    }
    for (direction, var) in [("read", "DAMON_IO_READ_IOPS"), ("write", "DAMON_IO_WRITE_IOPS")] {
        let free = direct_io(&dir, &[], direction, &device.path(), 1, 4).printed_figure("operations_per_second=");
        // 256 operations of 4 KiB at 100 a second.
        let run = direct_io(&dir, &[(var, "100".to_string()), devices.clone()], direction, &device.path(), 1, 4);
        assert_at_limit(
            &format!("{} operations/s", direction),
            run.printed_figure("operations_per_second="),
            100.0,
            free,
            &run,
        );
    }
    assert!(rules_on(&device.device_number()).is_empty(), "rules left: {:?}", rules_on(&device.device_number()));
}

/// The limits are gauges of the metrics while the workload runs; SIGKILLed mid-run, damon
/// leaves no rule on the device: its guard removes the group, and the rules with it.
#[test]
fn io_limits_are_reported_and_leave_no_rule_behind_when_damon_is_killed() {
    let device = LoopDevice::new(16);
    let number = device.device_number();
    let dir = TestDir::new("io-limit-killed");
    let port = free_port();
    let mut cmd = damon(&dir);
    cmd.env("DAMON_IO_READ_BANDWIDTH", "1M")
        .env("DAMON_IO_WRITE_IOPS", "50")
        .env("DAMON_IO_DEVICES", &number)
        .env("DAMON_ADDR", format!("127.0.0.1:{}", port))
        .arg(workload())
        .args(["direct-io", "read"])
        .arg(device.path())
        .args(["16", "64"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut damon = cmd.spawn().unwrap();
    let damon_pid = damon.id();
    container_dirs(&dir);
    let rules = rules_on(&number);
    assert!(!rules.is_empty(), "no rule on {} while damon runs\n{}", number, dir.log());
    let mut scrape = None;
    wait_for("damon's metrics", Duration::from_secs(10), || {
        scrape = http_get(port, "/metrics");
        scrape.is_some()
    });
    let scrape = scrape.unwrap();
    for (family, value) in
        [("damon_io_read_bandwidth_limit_bytes_per_second", "1048576"), ("damon_io_write_iops_limit", "50")]
    {
        assert!(
            scrape.lines().any(|l| l.starts_with(family)
                && l[family.len()..].starts_with([' ', '{'])
                && l.ends_with(&format!(" {}", value))),
            "no {} {} in\n{}",
            family,
            value,
            scrape
        );
    }
    assert!(!scrape.contains("\ndamon_io_write_bandwidth_limit_bytes_per_second"), "an unset limit is reported");
    signal(damon_pid, Signal::SIGKILL);
    let _ = damon.wait();
    wait_for("the guard to remove damon's groups", Duration::from_secs(20), || groups_of(damon_pid).is_empty());
    let left = rules_on(&number);
    assert!(left.is_empty(), "rules left on {} after damon was killed: {:?}", number, left);
    println!("io_limit ({}): while damon ran: {:?}; after its SIGKILL: none", cgroup_version(), rules);
}

/// Without DAMON_IO_DEVICES the limits apply to the disk that holds the working directory
/// (outside Nomad; the task's directories under it). Where that directory is on no block
/// device (the VM's tmpfs), damon refuses and names the way out.
#[test]
fn io_limits_default_to_the_disk_of_the_task_directory() {
    let dir = TestDir::new("io-limit-default");
    let mkfs = ["/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"].iter().find(|p| Path::new(p).exists());
    let on_block_device = std::fs::metadata(&dir.0)
        .map(|m| nix::sys::stat::major(std::os::unix::fs::MetadataExt::dev(&m)) != 0)
        .unwrap_or(false);
    let mkfs = match (mkfs, on_block_device) {
        (Some(mkfs), _) => *mkfs,
        (None, false) => {
            // The VM: /tmp is a tmpfs and there is no mkfs.
            let mut cmd = damon(&dir);
            cmd.env("DAMON_IO_WRITE_BANDWIDTH", "4M").arg("true");
            let run = run(cmd, &dir);
            run.assert_code(125);
            assert!(
                run.stderr.contains("is on no block device") && run.stderr.contains("name it with DAMON_IO_DEVICES"),
                "{}",
                run.explain()
            );
            println!(
                "io_limit ({}): the working directory is on no block device: refused, naming DAMON_IO_DEVICES",
                cgroup_version()
            );
            return;
        }
        (None, true) => panic!("mkfs.ext4 (e2fsprogs) is needed to put a file system on the loop device"),
    };
    let device = LoopDevice::new(64);
    let out = Command::new(mkfs).args(["-q", "-F"]).arg(device.path()).output().unwrap();
    assert!(out.status.success(), "mkfs: {}", String::from_utf8_lossy(&out.stderr));
    let mnt = dir.path("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let out = Command::new("mount").arg(device.path()).arg(&mnt).output().unwrap();
    assert!(out.status.success(), "mount: {}", String::from_utf8_lossy(&out.stderr));
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(self.0).status();
        }
    }
    let _unmount = Unmount(&mnt);
    let file = mnt.join("written");
    let free = direct_io(&dir, &[], "write", &file, 8, 64).printed_figure("bytes_per_second=");
    let mut cmd = damon(&dir);
    cmd.current_dir(&mnt).env("DAMON_IO_WRITE_BANDWIDTH", "4M").arg(workload()).args([
        "direct-io",
        "write",
        "written",
        "8",
        "64",
    ]);
    let run = run(cmd, &dir);
    run.assert_code(0);
    run.assert_log_contains(&format!("\"message\":\"IO limits set\",\"disks\":\"{}\"", device.device_number()));
    assert_at_limit("write bytes/s to a file", run.printed_figure("bytes_per_second="), 4.0 * MIB, free, &run);
}

/// A device that is not a block device, or a number no device has, is refused before
/// anything starts.
#[test]
fn io_limits_refuse_what_is_not_a_block_device() {
    let dir = TestDir::new("io-limit-refused");
    for device in ["/dev/null", "250:250"] {
        let marker = dir.path("MARKER");
        let mut cmd = damon(&dir);
        cmd.env("DAMON_IO_READ_BANDWIDTH", "1M").env("DAMON_IO_DEVICES", device).arg("touch").arg(&marker);
        let run = run(cmd, &dir);
        run.assert_code(125);
        assert!(
            run.stderr.contains(&format!("invalid value \"{}\" for DAMON_IO_DEVICES", device)),
            "{}",
            run.explain()
        );
        assert!(!marker.exists(), "{}: the command ran", device);
    }
}

/// No cgroup controller limits the network: the setting is refused with the reason and the way
/// out, and nothing starts.
#[test]
fn io_limits_beside_them_a_network_cap_is_refused_on_linux() {
    let dir = TestDir::new("io-limit-net");
    let marker = dir.path("MARKER");
    let mut cmd = damon(&dir);
    cmd.env("DAMON_NET_MAX_BANDWIDTH", "1M").arg("touch").arg(&marker);
    let run = run(cmd, &dir);
    run.assert_code(125);
    assert!(
        run.stderr.contains("invalid value \"1048576\" for DAMON_NET_MAX_BANDWIDTH")
            && run.stderr.contains("no cgroup controller that limits the network")
            && run.stderr.contains("unset it"),
        "{}",
        run.explain()
    );
    assert!(!marker.exists(), "the command ran");
}
