//! A loop device on a file, made with the kernel's ioctls (no losetup: the VM has busybox's,
//! which cannot name the device it takes). Dropped, it is detached, and removed and made again:
//! a throttle rule on a device switches v1's blk-throttle counting on for it for good, and only
//! a new device leaves the kernel as it was (nothing else switches it off).
//! Standalone (no other test helper), so that the benchmark uses it too.
#![allow(dead_code)]

use std::fs::{File, OpenOptions};
use std::os::unix::io::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// linux/loop.h
const LOOP_SET_FD: u64 = 0x4C00;
const LOOP_CLR_FD: u64 = 0x4C01;
const LOOP_CTL_ADD: u64 = 0x4C80;
const LOOP_CTL_REMOVE: u64 = 0x4C81;
const LOOP_CTL_GET_FREE: u64 = 0x4C82;

pub struct LoopDevice {
    pub number: u32,
    device: Option<File>,
    /// A group of the test's own holding a rule for the device ([`Self::switch_blk_throttle_on`]).
    rule: Option<PathBuf>,
    /// Where the backing file is; removed with the device.
    dir: PathBuf,
}

impl LoopDevice {
    /// A device of `mib` MiB, its blocks holding 7s.
    pub fn new(mib: usize) -> LoopDevice {
        // A directory per device: the tests of one executable run at once.
        static MADE: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "damon-loop-device-{}-{}",
            std::process::id(),
            MADE.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let backing_path = dir.join("backing");
        std::fs::write(&backing_path, vec![7u8; mib << 20]).unwrap();
        let backing = OpenOptions::new().read(true).write(true).open(&backing_path).unwrap();
        let control = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/loop-control")
            .expect("/dev/loop-control (the loop driver: modprobe loop; the VM loads it at boot)");
        // The free device is taken by binding it: another test (or process) may bind it between
        // the two calls, and the binding then fails with EBUSY; the next free one is tried.
        for _ in 0..20 {
            // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number.
            let number = unsafe { nix::libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE as _) };
            assert!(number >= 0, "LOOP_CTL_GET_FREE: {}", std::io::Error::last_os_error());
            let path = format!("/dev/loop{}", number);
            let device =
                OpenOptions::new().read(true).write(true).open(&path).unwrap_or_else(|e| panic!("{}: {}", path, e));
            // SAFETY: LOOP_SET_FD takes the backing file's descriptor, open for the call.
            if unsafe { nix::libc::ioctl(device.as_raw_fd(), LOOP_SET_FD as _, backing.as_raw_fd()) } == 0 {
                return LoopDevice { number: number as u32, device: Some(device), rule: None, dir };
            }
            let error = std::io::Error::last_os_error();
            assert_eq!(error.raw_os_error(), Some(nix::libc::EBUSY), "LOOP_SET_FD on {}: {}", path, error);
        }
        panic!("no free loop device could be bound");
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/dev/loop{}", self.number))
    }

    /// A rule that never throttles, in a group of its own: blk-throttle (v1) comes on for the
    /// device. The group goes when the device does.
    pub fn switch_blk_throttle_on(&mut self) {
        let group = PathBuf::from("/sys/fs/cgroup/blkio").join(format!("damon-test-rule-{}", std::process::id()));
        std::fs::create_dir(&group).unwrap();
        std::fs::write(group.join("blkio.throttle.read_bps_device"), format!("{} 1000000000000", self.device_number()))
            .unwrap();
        self.rule = Some(group);
    }

    /// MAJ:MIN, as io.max and blkio.throttle.* name it.
    pub fn device_number(&self) -> String {
        std::fs::read_to_string(format!("/sys/block/loop{}/dev", self.number)).unwrap().trim().to_string()
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        if let Some(group) = &self.rule {
            let _ = std::fs::remove_dir(group);
        }
        if let Some(device) = self.device.take() {
            // SAFETY: LOOP_CLR_FD takes no argument; the device is open for the call.
            unsafe { nix::libc::ioctl(device.as_raw_fd(), LOOP_CLR_FD as _, 0) };
        }
        if let Ok(control) = OpenOptions::new().read(true).write(true).open("/dev/loop-control") {
            for request in [LOOP_CTL_REMOVE, LOOP_CTL_ADD] {
                // SAFETY: both requests take the device number as their argument and touch no
                // memory of this process; `control` is open for the duration of the call.
                unsafe { nix::libc::ioctl(control.as_raw_fd(), request as _, self.number as nix::libc::c_ulong) };
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
