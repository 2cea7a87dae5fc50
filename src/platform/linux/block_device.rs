//! The disks that DAMON_IO_* limits apply to: DAMON_IO_DEVICES resolved to whole disks, or,
//! without it, the disks that hold the task's directories. io.max refuses a partition and
//! blk-throttle counts a partition's IO on its disk, so a partition stands for its disk.
//!
//! Everything here is read before any cgroup is touched: a device that does not exist is a
//! refusal (125) naming the setting and the value, and nothing starts.

use std::fmt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::config::{IoDevice, IoLimits};

/// Where the kernel lists block devices by number (sysfs).
const SYS_DEV_BLOCK: &str = "/sys/dev/block";
const DEVICES_VAR: &str = "DAMON_IO_DEVICES";

/// A whole disk, by its device number, as io.max and blkio.throttle.* take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disk {
    pub major: u64,
    pub minor: u64,
}

impl fmt::Display for Disk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

impl Disk {
    fn of_number(dev: u64) -> Disk {
        Disk { major: nix::sys::stat::major(dev), minor: nix::sys::stat::minor(dev) }
    }

    fn sys_dir(&self) -> PathBuf {
        Path::new(SYS_DEV_BLOCK).join(self.to_string())
    }

    /// The disk this block device is on: itself, or the disk of a partition (whose sysfs
    /// directory has a `partition` file and sits inside its disk's).
    fn whole(self) -> Result<Disk, String> {
        let dir = self.sys_dir();
        if !dir.exists() {
            return Err(format!("no block device {} on this host ({})", self, SYS_DEV_BLOCK));
        }
        if !dir.join("partition").exists() {
            return Ok(self);
        }
        let disk_dir = std::fs::canonicalize(&dir)
            .ok()
            .and_then(|d| d.parent().map(Path::to_path_buf))
            .ok_or_else(|| format!("cannot find the disk of partition {} ({})", self, dir.display()))?;
        let dev = std::fs::read_to_string(disk_dir.join("dev"))
            .map_err(|e| format!("cannot read the disk of partition {}: {}: {}", self, disk_dir.display(), e))?;
        parse_number(dev.trim()).ok_or_else(|| format!("{}: unexpected {:?}", disk_dir.join("dev").display(), dev))
    }
}

fn parse_number(text: &str) -> Option<Disk> {
    let (major, minor) = text.split_once(':')?;
    Some(Disk { major: major.parse().ok()?, minor: minor.parse().ok()? })
}

/// The disks to limit, once each; empty when no IO limit is set.
pub fn limited_disks(io: &IoLimits) -> Result<Vec<Disk>, String> {
    if !io.any() {
        return Ok(Vec::new());
    }
    let mut disks: Vec<Disk> = Vec::new();
    match &io.devices {
        Some((devices, source)) => {
            for device in devices {
                let refuse = |why: String| format!("invalid value \"{}\" for {}: {}", device, source, why);
                let disk = match device {
                    IoDevice::Path(path) => {
                        let meta = std::fs::metadata(path).map_err(|e| refuse(e.to_string()))?;
                        if !meta.file_type().is_block_device() {
                            return Err(refuse("not a block device".to_string()));
                        }
                        Disk::of_number(meta.rdev())
                    }
                    IoDevice::Number { major, minor } => Disk { major: u64::from(*major), minor: u64::from(*minor) },
                };
                let disk = disk.whole().map_err(refuse)?;
                if !disks.contains(&disk) {
                    disks.push(disk);
                }
            }
        }
        None => {
            for dir in &io.dirs {
                let disk = disk_of_dir(dir).map_err(|why| {
                    format!(
                        "cannot find the disk to limit IO on: {}; name it with {} (e.g. {}=/dev/sda or 8:0)",
                        why, DEVICES_VAR, DEVICES_VAR
                    )
                })?;
                if !disks.contains(&disk) {
                    disks.push(disk);
                }
            }
        }
    }
    Ok(disks)
}

/// The disk holding `dir`'s file system: its device number, or, where that is not a block
/// device's (btrfs and overlay give an anonymous one), the device its mount names.
fn disk_of_dir(dir: &Path) -> Result<Disk, String> {
    let meta = std::fs::metadata(dir).map_err(|e| format!("{}: {}", dir.display(), e))?;
    let on = Disk::of_number(meta.dev());
    if on.major != 0 {
        return on.whole();
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let source = mountinfo.lines().find_map(|line| mount_source(line, &on.to_string()));
    match source {
        Some(source) => {
            let device = std::fs::metadata(&source)
                .ok()
                .filter(|m| m.file_type().is_block_device())
                .ok_or_else(|| format!("{} is on {}, which is not a block device", dir.display(), source.display()))?;
            Disk::of_number(device.rdev()).whole()
        }
        None => Err(format!("{} is on no block device (device {})", dir.display(), on)),
    }
}

/// The source of a /proc/self/mountinfo line whose device number is `number`, when it names a
/// device node: "36 25 0:32 / /data rw - btrfs /dev/sda2 rw" gives /dev/sda2 for 0:32.
fn mount_source(line: &str, number: &str) -> Option<PathBuf> {
    let mut fields = line.split(' ');
    if fields.nth(2)? != number {
        return None;
    }
    let after = line.split(" - ").nth(1)?;
    let source = after.split(' ').nth(1)?;
    source.starts_with("/dev/").then(|| PathBuf::from(source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mount_source_is_found_by_its_device_number() {
        let line = "36 25 0:32 / /data rw,relatime shared:1 - btrfs /dev/sda2 rw,space_cache";
        assert_eq!(mount_source(line, "0:32"), Some(PathBuf::from("/dev/sda2")));
        assert_eq!(mount_source(line, "0:33"), None);
        assert_eq!(mount_source("40 25 0:45 / /run rw - tmpfs tmpfs rw", "0:45"), None);
    }

    #[test]
    fn numbers_read_as_sysfs_writes_them() {
        assert_eq!(parse_number("259:0"), Some(Disk { major: 259, minor: 0 }));
        assert_eq!(parse_number("8"), None);
    }
}
