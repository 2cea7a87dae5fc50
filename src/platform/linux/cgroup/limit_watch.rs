//! Noticing limits hit as they happen, not only when the run ends: descriptors that become
//! ready when the group hits its memory limit (the OOM killer may act) or its process limit
//! (the kernel refuses a fork), polled beside the signalfd.
//!
//! cgroup v2 signals a change of `memory.events` and `pids.events` as POLLPRI on an open
//! descriptor of them; cgroup v1 needs an eventfd registered for `memory.oom_control` in
//! `cgroup.event_control`, and has no notification for `pids.events` at all (its refusals are
//! reported when the run ends, and counted in the metrics whenever they are scraped).
//!
//! Also the watch for the workload's group to empty ([`EmptyWatch`]), which a tree-scope stop
//! waits on once the child has exited: v2 notifies `cgroup.events`' "populated" the same way;
//! v1 has no notification, so a pidfd of one remaining process at a time stands in for it.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::io::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::poll::PollFlags;
use nix::sys::eventfd::{eventfd, EfdFlags};

use super::file::{self, CgroupIoError};

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

/// Whether the workload's group holds no process, and a descriptor that becomes ready when that
/// may have changed.
pub enum EmptyWatch {
    /// `cgroup.events`, re-read after each notification.
    V2 { events: File },
    /// The group's directory (its `cgroup.procs`), and a pidfd of one process still in it.
    V1 { dir: PathBuf, pidfd: Option<OwnedFd> },
}

impl EmptyWatch {
    /// Before Linux 5.3 (no pidfd), how often v1 reads the list again: the kernel gives no other
    /// notice there.
    pub const V1_RECHECK_WITHOUT_PIDFD: Duration = Duration::from_millis(100);

    pub fn v2(group: &Path) -> Result<EmptyWatch, CgroupIoError> {
        let path = group.join("cgroup.events");
        let events = File::open(&path).map_err(|e| open_error(&path, e))?;
        Ok(EmptyWatch::V2 { events })
    }

    pub fn v1(group: &Path) -> EmptyWatch {
        EmptyWatch::V1 { dir: group.to_path_buf(), pidfd: None }
    }

    /// Whether the group holds no process now. If it holds some, arms the watch: reading
    /// `cgroup.events` (v2), or opening a pidfd of one of them (v1). A group that cannot be read
    /// counts as empty: there is nothing left to wait for that damon could see.
    pub fn is_empty(&mut self) -> bool {
        match self {
            EmptyWatch::V2 { events } => {
                let mut content = String::new();
                let read = events.seek(SeekFrom::Start(0)).and_then(|_| events.read_to_string(&mut content));
                read.is_err() || file::keyed_value(&content, "populated") != Some(1)
            }
            EmptyWatch::V1 { dir, pidfd } => loop {
                let pids = match file::pids(dir) {
                    Ok(pids) => pids,
                    Err(_) => return true,
                };
                let first = match pids.first() {
                    Some(&pid) => pid,
                    None => return true,
                };
                *pidfd = super::teardown::pidfd_open(first);
                // No pidfd: that process has just exited (list again), or the kernel has no
                // pidfd_open (the caller re-checks after V1_RECHECK_WITHOUT_PIDFD).
                if pidfd.is_some() || super::teardown::is_alive(first) {
                    return false;
                }
            },
        }
    }

    /// The descriptor to poll, `None` where only a re-check after
    /// [`Self::V1_RECHECK_WITHOUT_PIDFD`] can tell.
    pub fn poll_target(&self) -> Option<(RawFd, PollFlags)> {
        match self {
            EmptyWatch::V2 { events } => Some((events.as_raw_fd(), PollFlags::POLLPRI)),
            EmptyWatch::V1 { pidfd, .. } => pidfd.as_ref().map(|fd| (fd.as_raw_fd(), PollFlags::POLLIN)),
        }
    }
}
