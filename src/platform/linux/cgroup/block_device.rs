//! The disks that DAMON_IO_* limits apply to: DAMON_IO_DEVICES resolved to whole disks, or,
//! without it, the disks that hold the task's directories. io.max refuses a partition and
//! blk-throttle counts a partition's IO on its disk, so a partition stands for its disk.
//!
//! Everything here is read before any cgroup is touched: a device that does not exist is a
//! refusal (125) naming the setting and the value, and nothing starts.

use std::fmt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::super::mountinfo::{self, Mount};
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
            let mountinfo = std::fs::read_to_string(mountinfo::PATH).unwrap_or_default();
            for dir in &io.dirs {
                let found = disks_of_dir(dir, &mountinfo, 0).map_err(|why| {
                    format!(
                        "cannot find the disk to limit IO on: {}; name it with {} (e.g. {}=/dev/sda or 8:0)",
                        why, DEVICES_VAR, DEVICES_VAR
                    )
                })?;
                for disk in found {
                    if !disks.contains(&disk) {
                        disks.push(disk);
                    }
                }
            }
        }
    }
    Ok(disks)
}

/// An overlay of overlays is followed this deep, no deeper.
const MOST_NESTED_OVERLAYS: usize = 4;

/// The disks holding `dir`'s file system: its device number where that is a block device's;
/// else (btrfs, overlay: an anonymous number) the mount's: the device node it names (btrfs),
/// or, for an overlay, the disks of its upper directory (where the task's writes go) and of its
/// lower ones (what it reads). The mount is found by number, or, where the number is a
/// subvolume's own (a btrfs subvolume other than the one mounted), by the deepest mount
/// point above `dir`.
fn disks_of_dir(dir: &Path, mountinfo: &str, depth: usize) -> Result<Vec<Disk>, String> {
    let meta = std::fs::metadata(dir).map_err(|e| format!("{}: {}", dir.display(), e))?;
    let on = Disk::of_number(meta.dev());
    if on.major != 0 {
        return Ok(vec![on.whole()?]);
    }
    // The last such line: a later mount over the same file system is the one that shows.
    let by_number = mountinfo.lines().rev().filter_map(Mount::parse).find(|m| m.number == on.to_string());
    let mount = match by_number {
        Some(mount) => Some(mount),
        None => {
            let dir = std::fs::canonicalize(dir).map_err(|e| format!("{}: {}", dir.display(), e))?;
            mountinfo.lines().filter_map(Mount::parse).filter(|m| dir.starts_with(&m.point)).fold(
                None,
                |deepest: Option<Mount>, m| match deepest {
                    Some(d) if d.point.components().count() > m.point.components().count() => Some(d),
                    _ => Some(m),
                },
            )
        }
    };
    let mount = mount.ok_or_else(|| format!("{} is on no block device (device {})", dir.display(), on))?;
    if mount.fs_type == "overlay" {
        let layers = mount.overlay_dirs();
        if layers.is_empty() || depth >= MOST_NESTED_OVERLAYS {
            return Err(format!("{} is on an overlay whose directories cannot be followed", dir.display()));
        }
        let mut disks = Vec::new();
        for layer in layers {
            for disk in disks_of_dir(&layer, mountinfo, depth + 1)
                .map_err(|why| format!("{} is on an overlay, and {}", dir.display(), why))?
            {
                if !disks.contains(&disk) {
                    disks.push(disk);
                }
            }
        }
        return Ok(disks);
    }
    match Path::new(&mount.source) {
        source if source.starts_with("/dev/") => {
            let device = std::fs::metadata(source)
                .ok()
                .filter(|m| m.file_type().is_block_device())
                .ok_or_else(|| format!("{} is on {}, which is not a block device", dir.display(), source.display()))?;
            Ok(vec![Disk::of_number(device.rdev()).whole()?])
        }
        _ => {
            Err(format!("{} is on no block device ({} {}, device {})", dir.display(), mount.fs_type, mount.source, on))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_sysfs_writes_them() {
        assert_eq!(parse_number("259:0"), Some(Disk { major: 259, minor: 0 }));
        assert_eq!(parse_number("8"), None);
    }
}
