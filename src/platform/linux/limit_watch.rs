//! Noticing limits hit as they happen, not only when the run ends: descriptors that become
//! ready when the group hits its memory limit (the OOM killer may act) or its process limit
//! (the kernel refuses a fork), polled beside the signalfd.
//!
//! cgroup v2 signals a change of `memory.events` and `pids.events` as POLLPRI on an open
//! descriptor of them; cgroup v1 needs an eventfd registered for `memory.oom_control` in
//! `cgroup.event_control`, and has no notification for `pids.events` at all (its refusals are
//! reported when the run ends, and counted in the metrics whenever they are scraped).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::io::{AsRawFd, FromRawFd, RawFd};
use std::path::Path;

use nix::poll::PollFlags;
use nix::sys::eventfd::{eventfd, EfdFlags};

use super::cgroup_file::{self as file, CgroupIoError};

pub enum OomWatch {
    /// `memory.events`, re-read after each notification to re-arm it.
    V2 { events: File },
    /// The registered eventfd; `memory.oom_control` stays open while it is registered.
    V1 { eventfd: File, _oom_control: File },
}

fn open_error(path: &Path, e: io::Error) -> CgroupIoError {
    CgroupIoError { operation: "open", path: path.to_path_buf(), value: None, source: e }
}

impl OomWatch {
    pub fn v2(group: &Path) -> Result<OomWatch, CgroupIoError> {
        let path = group.join("memory.events");
        let mut events = File::open(&path).map_err(|e| open_error(&path, e))?;
        // The first read arms the notification.
        let _ = events.read_to_string(&mut String::new());
        Ok(OomWatch::V2 { events })
    }

    pub fn v1(group: &Path) -> Result<OomWatch, CgroupIoError> {
        let path = group.join("memory.oom_control");
        let oom_control = File::open(&path).map_err(|e| open_error(&path, e))?;
        let raw = eventfd(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
            .map_err(|e| open_error(Path::new("eventfd"), io::Error::from_raw_os_error(e as i32)))?;
        // SAFETY: eventfd(2) just returned this descriptor; nothing else owns or closes it.
        let eventfd = unsafe { File::from_raw_fd(raw) };
        let registration = format!("{} {}", eventfd.as_raw_fd(), oom_control.as_raw_fd());
        file::write(&group.join("cgroup.event_control"), &registration)?;
        Ok(OomWatch::V1 { eventfd, _oom_control: oom_control })
    }

    /// The descriptor to poll and the events that mean "the limit was hit".
    pub fn poll_target(&self) -> (RawFd, PollFlags) {
        match self {
            OomWatch::V2 { events } => (events.as_raw_fd(), PollFlags::POLLPRI),
            OomWatch::V1 { eventfd, .. } => (eventfd.as_raw_fd(), PollFlags::POLLIN),
        }
    }

    /// Consumes a notification so that the next poll waits for a new one.
    pub fn acknowledge(&mut self) {
        match self {
            OomWatch::V2 { events } => {
                let _ = events.seek(SeekFrom::Start(0));
                let _ = events.read_to_string(&mut String::new());
            }
            OomWatch::V1 { eventfd, .. } => {
                let _ = eventfd.read(&mut [0u8; 8]);
            }
        }
    }
}

/// A watch on the process limit (cgroup v2 `pids.events`). It fires once: a fork bomb would
/// otherwise wake damon for every refused fork; the total is read when the run ends.
pub struct ProcessLimitWatch {
    events: File,
}

impl ProcessLimitWatch {
    pub fn v2(group: &Path) -> Result<ProcessLimitWatch, CgroupIoError> {
        let path = group.join("pids.events");
        let mut events = File::open(&path).map_err(|e| open_error(&path, e))?;
        // The first read arms the notification.
        let _ = events.read_to_string(&mut String::new());
        Ok(ProcessLimitWatch { events })
    }

    pub fn poll_target(&self) -> (RawFd, PollFlags) {
        (self.events.as_raw_fd(), PollFlags::POLLPRI)
    }
}
