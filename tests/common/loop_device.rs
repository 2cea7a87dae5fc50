//! A loop device on a file, made with the kernel's ioctls (no losetup: the VM has busybox's,
//! which cannot name the device it takes). Dropped, it is detached.
#![allow(dead_code)]

use std::fs::{File, OpenOptions};
use std::os::unix::io::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::TestDir;

/// linux/loop.h
const LOOP_SET_FD: u64 = 0x4C00;
const LOOP_CLR_FD: u64 = 0x4C01;
const LOOP_CTL_GET_FREE: u64 = 0x4C82;

pub struct LoopDevice {
    pub number: u32,
    _device: File,
    _dir: TestDir,
}

impl LoopDevice {
    /// A device of `mib` MiB, its blocks holding 7s.
    pub fn new(mib: usize) -> LoopDevice {
        // A directory per device: the tests of one executable run at once.
        static MADE: AtomicUsize = AtomicUsize::new(0);
        let dir = TestDir::new(&format!("loop-device-{}", MADE.fetch_add(1, Ordering::SeqCst)));
        let backing_path = dir.path("backing");
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
                return LoopDevice { number: number as u32, _device: device, _dir: dir };
            }
            let error = std::io::Error::last_os_error();
            assert_eq!(error.raw_os_error(), Some(nix::libc::EBUSY), "LOOP_SET_FD on {}: {}", path, error);
        }
        panic!("no free loop device could be bound");
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/dev/loop{}", self.number))
    }

    /// MAJ:MIN, as io.max and blkio.throttle.* name it.
    pub fn device_number(&self) -> String {
        std::fs::read_to_string(format!("/sys/block/loop{}/dev", self.number)).unwrap().trim().to_string()
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        // SAFETY: LOOP_CLR_FD takes no argument; the device is open.
        unsafe { nix::libc::ioctl(self._device.as_raw_fd(), LOOP_CLR_FD as _, 0) };
    }
}
