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
/// device (a tmpfs), damon refuses and names the way out.
#[test]
fn io_limits_default_to_the_disk_of_the_task_directory() {
    let dir = TestDir::new("io-limit-default");
    let tmpfs = Mounted::new(&["-t", "tmpfs", "tmpfs"], dir.path("tmpfs"));
    let mut cmd = damon(&dir);
    cmd.current_dir(&tmpfs.point).env("DAMON_IO_WRITE_BANDWIDTH", "4M").arg("true");
    let refused = run(cmd, &dir);
    drop(tmpfs);
    refused.assert_code(125);
    assert!(
        refused.stderr.contains("is on no block device") && refused.stderr.contains("name it with DAMON_IO_DEVICES"),
        "{}",
        refused.explain()
    );
    let mkfs = match ["/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"].iter().find(|p| Path::new(p).exists()) {
        Some(mkfs) => *mkfs,
        None => return skip_missing("no mkfs.ext4 (e2fsprogs) to put a file system on the loop device"),
    };
    let device = LoopDevice::new(64);
    format(mkfs, &["-q", "-F"], &device);
    let ext4 = Mounted::new(&["-t", "ext4", device.path().to_str().unwrap()], dir.path("mnt"));
    let free = direct_write_in(&dir, &ext4.point, &[]).printed_figure("bytes_per_second=");
    let run = direct_write_in(&dir, &ext4.point, &[("DAMON_IO_WRITE_BANDWIDTH", "4M".to_string())]);
    run.assert_log_contains(&format!("\"message\":\"IO limits set\",\"disks\":\"{}\"", device.device_number()));
    assert_at_limit("write bytes/s to a file", run.printed_figure("bytes_per_second="), 4.0 * MIB, free, &run);
    drop(ext4);
}

/// The workload's O_DIRECT write of 8 MiB to `written` in `task_dir`, its working directory,
/// under damon with `env`.
fn direct_write_in(dir: &TestDir, task_dir: &Path, env: &[(&str, String)]) -> Run {
    let mut cmd = damon(dir);
    cmd.current_dir(task_dir).envs(env.iter().map(|(k, v)| (*k, v.as_str()))).arg(workload()).args([
        "direct-io",
        "write",
        "written",
        "8",
        "64",
    ]);
    let run = run(cmd, dir);
    run.assert_code(0);
    run
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

/// A file system mounted on a loop device for one test, unmounted (lazily, in case a process
/// still holds it) when dropped, before the device goes.
struct Mounted {
    point: std::path::PathBuf,
}

impl Mounted {
    fn new(args: &[&str], point: std::path::PathBuf) -> Mounted {
        std::fs::create_dir_all(&point).unwrap();
        let out = Command::new("mount").args(args).arg(&point).output().unwrap();
        assert!(out.status.success(), "mount {:?}: {}", args, String::from_utf8_lossy(&out.stderr));
        Mounted { point }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.point).status();
    }
}

fn format(mkfs: &str, args: &[&str], device: &LoopDevice) {
    let out = Command::new(mkfs).args(args).arg(device.path()).output().unwrap();
    assert!(out.status.success(), "{}: {}", mkfs, String::from_utf8_lossy(&out.stderr));
}

/// A task directory on btrfs (in a subvolume, whose device number is its own, neither a disk's
/// nor its mount's) and on overlay (whose upper directory is on one disk and lower on another):
/// without DAMON_IO_DEVICES the limits go to the disks behind them, found through the mount
/// (btrfs: the device it names; overlay: the disks of its upper and lower directories), and
/// hold the task's O_DIRECT writes at the limit; naming the disk in DAMON_IO_DEVICES gives the
/// same. Runs where mkfs.btrfs (btrfs-progs) and mkfs.ext4 are: scripts/test installs them.
#[test]
fn io_limits_follow_a_btrfs_or_overlay_task_directory_to_its_disks() {
    let tools = ["/usr/sbin/mkfs.btrfs", "/usr/sbin/mkfs.ext4", "/usr/bin/btrfs"];
    if let Some(missing) = tools.iter().find(|tool| !Path::new(tool).exists()) {
        return if cgroup_version() == "v2" && Path::new("/vm").exists() {
            skip_elsewhere(&format!("no {} in the VM (the host's stage runs it)", missing))
        } else {
            skip_missing(&format!("no {}: install btrfs-progs and e2fsprogs (scripts/test does)", missing))
        };
    }
    let dir = TestDir::new("io-limit-fs");
    let (btrfs_disk, ext4_disk) = (LoopDevice::new(128), LoopDevice::new(64));
    format("/usr/sbin/mkfs.btrfs", &["-q", "-f"], &btrfs_disk);
    format("/usr/sbin/mkfs.ext4", &["-q", "-F"], &ext4_disk);
    let btrfs = Mounted::new(&["-t", "btrfs", btrfs_disk.path().to_str().unwrap()], dir.path("btrfs"));
    let ext4 = Mounted::new(&["-t", "ext4", ext4_disk.path().to_str().unwrap()], dir.path("ext4"));
    let subvolume = btrfs.point.join("task");
    let out = Command::new("/usr/bin/btrfs").args(["subvolume", "create"]).arg(&subvolume).output().unwrap();
    assert!(out.status.success(), "btrfs subvolume create: {}", String::from_utf8_lossy(&out.stderr));
    let lower = btrfs.point.join("lower");
    let (upper, work) = (ext4.point.join("upper"), ext4.point.join("work"));
    for made in [&lower, &upper, &work] {
        std::fs::create_dir(made).unwrap();
    }
    let options = format!("lowerdir={},upperdir={},workdir={}", lower.display(), upper.display(), work.display());
    let overlay = Mounted::new(&["-t", "overlay", "overlay", "-o", &options], dir.path("merged"));

    let (btrfs_number, ext4_number) = (btrfs_disk.device_number(), ext4_disk.device_number());
    let cases = [
        ("btrfs subvolume", &subvolume, btrfs_number.clone(), btrfs_disk.path()),
        ("overlay", &overlay.point, format!("{},{}", ext4_number, btrfs_number), ext4_disk.path()),
    ];
    for (what, task_dir, disks, disk_path) in cases.iter() {
        let write = |env: &[(&str, String)]| direct_write_in(&dir, task_dir, env);
        let free = write(&[]).printed_figure("bytes_per_second=");
        let limit = ("DAMON_IO_WRITE_BANDWIDTH", "4M".to_string());
        let found = write(std::slice::from_ref(&limit));
        found.assert_log_contains(&format!("\"message\":\"IO limits set\",\"disks\":\"{}\"", disks));
        let rate = found.printed_figure("bytes_per_second=");
        assert_at_limit(&format!("write bytes/s in a task directory on {}", what), rate, 4.0 * MIB, free, &found);
        let named = write(&[limit, ("DAMON_IO_DEVICES", disk_path.display().to_string())]);
        let number = disks.split(',').next().unwrap();
        named.assert_log_contains(&format!("\"message\":\"IO limits set\",\"disks\":\"{}\"", number));
        let rate = named.printed_figure("bytes_per_second=");
        assert_at_limit(&format!("write bytes/s on {} with DAMON_IO_DEVICES", what), rate, 4.0 * MIB, free, &named);
    }
    drop(overlay);
    drop(ext4);
    drop(btrfs);
}

/// Buffered writes (no O_DIRECT) to a file, flushed with fsync inside the timing, are held at
/// the limit on both versions: on v2 the file system charges the page cache's writeback to the
/// group that dirtied it (cgroup writeback: ext4, btrfs, xfs; a raw block device has none, and
/// there they pass); on v1 the fsync submits the writeback from the task itself, inside its
/// group. (What v1 does not hold, dirty pages the kernel's flusher writes back later, outside
/// the group, is in docs/linux.md.)
#[test]
fn io_limits_hold_buffered_writes_the_task_flushes() {
    let mkfs = match ["/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"].iter().find(|p| Path::new(p).exists()) {
        Some(mkfs) => *mkfs,
        None => return skip_missing("no mkfs.ext4 (e2fsprogs) to put a file system on the loop device"),
    };
    let device = LoopDevice::new(64);
    let dir = TestDir::new("io-limit-buffered");
    format(mkfs, &["-q", "-F"], &device);
    let ext4 = Mounted::new(&["-t", "ext4", device.path().to_str().unwrap()], dir.path("ext4"));
    // Two files: the kernel charges an inode's writeback to the group that first dirtied it
    // (the control's, here) until it sees another group write most of it.
    let (control, limited) = (ext4.point.join("control"), ext4.point.join("limited"));
    let free = direct_io(&dir, &[], "buffered-write", &control, 16, 64).printed_figure("bytes_per_second=");
    let limit = ("DAMON_IO_WRITE_BANDWIDTH", "4M".to_string());
    let devices = ("DAMON_IO_DEVICES", device.path().display().to_string());
    let run = direct_io(&dir, &[limit, devices], "buffered-write", &limited, 16, 64);
    let rate = run.printed_figure("bytes_per_second=");
    assert_at_limit("buffered write bytes/s to a file, fsynced", rate, 4.0 * MIB, free, &run);
    drop(ext4);
}
