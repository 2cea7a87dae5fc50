//! Emptying and removing cgroups: killing every process in a group, waiting until the kernel
//! says it is empty, and removing it. Used when the kill timeout passes and by the undo of
//! damon's changes (at its end, or by its guard after damon died). Also the stop signal to
//! every process of a group (DAMON_STOP_SIGNAL_SCOPE=tree), which holds the group frozen as
//! the kill does.
//!
//! A process can join a group while it is being emptied: a child that damon forked and that
//! writes itself into the group between fork and exec. So removal kills, waits and removes in
//! rounds until the directory is gone, rather than killing once.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::io::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::libc;
use nix::poll::{poll, PollFd, PollFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::file::{self, CgroupIoError};

/// How long emptying and removing one group may take before damon reports it as left behind.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the v1 freezer may take to stop every task before damon kills them anyway.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(1);
/// v1 gives no notification when a group empties or its last task is released: the short
/// pause between checks there, where no pidfd tells of the exits either. (v2 waits on
/// cgroup.events instead.)
const V1_RECHECK: Duration = Duration::from_millis(2);
/// Rounds of listing and killing before giving up on a group whose tasks keep appearing.
const MAX_KILL_ROUNDS: usize = 200;

const KILL_FILE: &str = "cgroup.kill";
const FREEZE_FILE: &str = "cgroup.freeze";
const EVENTS_FILE: &str = "cgroup.events";
const FREEZER_STATE_FILE: &str = "freezer.state";

fn is_errno(e: &CgroupIoError, errno: i32) -> bool {
    e.source.raw_os_error() == Some(errno)
}

/// Kills every process in the group `dir` (not in its descendants, which damon never makes).
/// The group being gone already is no error.
pub fn kill_group(dir: &Path) -> Result<(), CgroupIoError> {
    let result = kill_group_once(dir);
    match result {
        Err(e) if is_errno(&e, libc::ENOENT) || is_errno(&e, libc::ENODEV) => Ok(()),
        other => other,
    }
}

fn kill_group_once(dir: &Path) -> Result<(), CgroupIoError> {
    lift_cpu_cap(dir);
    let kill_file = dir.join(KILL_FILE);
    // cgroup v2 since Linux 5.14: one write kills everything, forks included.
    if kill_file.exists() {
        return file::write(&kill_file, "1");
    }
    let state = dir.join(FREEZER_STATE_FILE);
    if !state.exists() {
        return kill_listed_processes(dir, &[], || Ok(()));
    }
    // v1 freezer: stop the tree so nothing forks past the kill; frozen tasks die once thawed.
    freeze_v1(&state)?;
    kill_listed_processes(dir, &[], || file::write(&state, "THAWED"))
}

/// Freezes a v1 freezer group and waits (v1 gives no notification) until it says FROZEN, or
/// FREEZE_TIMEOUT: `Ok(false)` then, with the freeze still asked for.
fn freeze_v1(state: &Path) -> Result<bool, CgroupIoError> {
    file::write(state, "FROZEN")?;
    let deadline = Instant::now() + FREEZE_TIMEOUT;
    loop {
        if file::read(state)?.trim() == "FROZEN" {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// How a group was held still for [`signal_group`].
enum Hold {
    /// cgroup v2's cgroup.freeze (Linux 5.2).
    Freeze,
    /// v1's freezer.state.
    Freezer,
    /// Neither: the processes are listed in rounds instead.
    Running,
}

/// Sends `signal` to every process in the group `dir`, once each, and returns how many it
/// reached. The group is frozen meanwhile (v2's cgroup.freeze, v1's freezer), so that no
/// process forks past the listing and each gets the signal once, when thawed; where it cannot
/// be frozen, the group is listed again until a listing holds no process not yet signalled.
pub fn signal_group(dir: &Path, signal: Signal) -> Result<usize, CgroupIoError> {
    let hold = hold_still(dir)?;
    let signalled = signal_listed_processes(dir, signal, !matches!(hold, Hold::Running));
    let thawed = match hold {
        Hold::Freeze => file::write(&dir.join(FREEZE_FILE), "0"),
        Hold::Freezer => file::write(&dir.join(FREEZER_STATE_FILE), "THAWED"),
        Hold::Running => Ok(()),
    };
    let signalled = signalled?;
    thawed.map(|()| signalled)
}

/// Freezes the group where the kernel can, waiting until it is frozen (v2: the kernel says so
/// in cgroup.events). A freeze that does not complete in time is undone: the caller lists in rounds.
fn hold_still(dir: &Path) -> Result<Hold, CgroupIoError> {
    let freeze = dir.join(FREEZE_FILE);
    if freeze.exists() {
        file::write(&freeze, "1")?;
        if wait_for_event(dir, "frozen", 1, Instant::now() + FREEZE_TIMEOUT) {
            return Ok(Hold::Freeze);
        }
        file::write(&freeze, "0")?;
        return Ok(Hold::Running);
    }
    let state = dir.join(FREEZER_STATE_FILE);
    if state.exists() {
        if freeze_v1(&state)? {
            return Ok(Hold::Freezer);
        }
        file::write(&state, "THAWED")?;
    }
    Ok(Hold::Running)
}

/// Signals each process listed in the group once: pinned by a pidfd and signalled only if
/// still listed once pinned (as [`kill_listed_processes`] does), so that no signal reaches a
/// process outside the group. `frozen`: one listing is the whole group; otherwise rounds.
fn signal_listed_processes(dir: &Path, signal: Signal, frozen: bool) -> Result<usize, CgroupIoError> {
    let mut signalled = BTreeSet::new();
    for _ in 0..MAX_KILL_ROUNDS {
        let pids: Vec<i32> = file::pids(dir)?.into_iter().filter(|p| !signalled.contains(p)).collect();
        if pids.is_empty() {
            break;
        }
        let pinned: Vec<Option<OwnedFd>> = pids.iter().map(|&pid| pidfd_open(pid)).collect();
        let still_listed: BTreeSet<i32> = file::pids(dir)?.into_iter().collect();
        for (pid, pidfd) in pids.iter().zip(pinned) {
            match pidfd {
                Some(pidfd) if still_listed.contains(pid) => pidfd_signal(&pidfd, signal),
                Some(_) => {}
                None => {
                    let _ = kill(Pid::from_raw(*pid), signal);
                }
            }
            signalled.insert(*pid);
        }
        if frozen {
            break;
        }
    }
    Ok(signalled.len())
}

/// Lifts the group's CPU cap before its processes are killed: a killed process still needs the
/// CPU to exit, and a capped group that has spent its quota (a fork bomb) would let its tasks
/// die only a slice per period. Best effort: the group is about to go.
fn lift_cpu_cap(dir: &Path) {
    for (file, uncapped) in [("cpu.max", "max"), ("cpu.cfs_quota_us", "-1")] {
        let path = dir.join(file);
        if path.exists() {
            let _ = file::write(&path, uncapped);
        }
    }
}

/// Kills every process listed in `dir`'s cgroup.procs but those in `spared`, round after
/// round until none is left (a fork racing the kill is caught in the next round);
/// `after_round` runs between rounds.
///
/// A pid read from cgroup.procs may belong to a process that exits and whose pid is reused
/// before the signal is sent. Where the kernel has pidfds (5.3), each listed process is
/// pinned by a pidfd first and signalled only if it is still listed once pinned, so no signal
/// ever reaches a process outside the group; and a round ends when the kernel says, on those
/// pidfds, that the processes it killed have exited, rather than after a pause.
pub fn kill_listed_processes(
    dir: &Path,
    spared: &[i32],
    mut after_round: impl FnMut() -> Result<(), CgroupIoError>,
) -> Result<(), CgroupIoError> {
    let deadline = Instant::now() + REMOVE_TIMEOUT;
    for _ in 0..MAX_KILL_ROUNDS {
        let pids: Vec<i32> = file::pids(dir)?.into_iter().filter(|p| !spared.contains(p)).collect();
        if pids.is_empty() {
            break;
        }
        let pinned: Vec<Option<OwnedFd>> = pids.iter().map(|&pid| pidfd_open(pid)).collect();
        let mut still_listed = if pinned.iter().any(Option::is_some) { file::pids(dir)? } else { Vec::new() };
        still_listed.sort_unstable();
        let mut killed = Vec::with_capacity(pinned.len());
        let mut unpinned = false;
        for (pid, pidfd) in pids.iter().zip(pinned) {
            match pidfd {
                Some(pidfd) if still_listed.binary_search(pid).is_ok() => {
                    pidfd_signal(&pidfd, Signal::SIGKILL);
                    killed.push(pidfd);
                }
                Some(_) => {}
                None => {
                    let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
                    unpinned = true;
                }
            }
        }
        // (On v1 the killed processes die once thawed, here.)
        after_round()?;
        wait_for_exits(&killed, deadline);
        // A process killed by pid (no pidfd: before Linux 5.3, or no descriptor left) gives no
        // notice of its exit: a short pause before the next listing.
        if unpinned || killed.is_empty() {
            std::thread::sleep(V1_RECHECK);
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    Ok(())
}

/// Waits until each process behind `pidfds` has exited (its pidfd becomes readable then), or
/// until `deadline`: a process in uninterruptible sleep dies only when that ends.
fn wait_for_exits(pidfds: &[OwnedFd], deadline: Instant) {
    for pidfd in pidfds {
        loop {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            let timeout_ms = ((deadline - now).as_millis() as u64 + 1).min(i32::MAX as u64) as i32;
            let mut fds = [PollFd::new(pidfd.as_raw_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, timeout_ms) {
                Err(Errno::EINTR) => continue,
                // Ready (it has exited), an error, or the deadline: on to the next.
                _ => break,
            }
        }
    }
}

/// A pidfd for `pid`, or `None` where the kernel has none (before 5.3) or the process is gone.
pub fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new descriptor or -1; it
    // touches no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel just returned this descriptor; nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Whether `pid` names a process (a zombie included).
pub fn is_alive(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).map_or_else(|e| e == Errno::EPERM, |_| true)
}

fn pidfd_signal(pidfd: &OwnedFd, signal: Signal) {
    // SAFETY: pidfd_send_signal(2) with a valid pidfd, a valid signal number, no siginfo (NULL)
    // and no flags; the descriptor is borrowed for the call only.
    let _ = unsafe {
        libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), signal as libc::c_int, std::ptr::null::<u8>(), 0)
    };
}

/// Waits until the group holds no process, or `deadline`. On v2 this blocks on the kernel's
/// notification of `cgroup.events` ("populated 0"); v1 has none, so it re-reads the list.
fn wait_until_empty(dir: &Path, deadline: Instant) {
    if !dir.join(EVENTS_FILE).exists() {
        while file::pids(dir).map_or(false, |pids| !pids.is_empty()) && Instant::now() < deadline {
            std::thread::sleep(V1_RECHECK);
        }
        return;
    }
    wait_for_event(dir, "populated", 0, deadline);
}

/// Waits until `cgroup.events` (v2) says `key value`, blocking on the kernel's notification of
/// each change; whether it did before `deadline` (false too if the file cannot be read, or the
/// group is gone).
fn wait_for_event(dir: &Path, key: &str, value: u64, deadline: Instant) -> bool {
    let mut events = match File::open(dir.join(EVENTS_FILE)) {
        Ok(events) => events,
        Err(_) => return false,
    };
    let mut content = String::new();
    loop {
        content.clear();
        if events.seek(SeekFrom::Start(0)).and_then(|_| events.read_to_string(&mut content)).is_err() {
            return false;
        }
        match file::keyed_value(&content, key) {
            Some(v) if v == value => return true,
            None => return false,
            Some(_) => {}
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        let timeout_ms = ((deadline - now).as_millis() as u64 + 1).min(i32::MAX as u64) as i32;
        let mut fds = [PollFd::new(events.as_raw_fd(), PollFlags::POLLPRI)];
        match poll(&mut fds, timeout_ms) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return false,
        }
    }
}

/// Removes the group if it holds no process: `Ok(true)` when it is gone (or was already),
/// `Ok(false)` when processes keep it busy. This is the usual end: the workload has exited,
/// and there is nothing to list, freeze or kill.
pub fn remove_if_empty(dir: &Path) -> Result<bool, CgroupIoError> {
    match file::remove_dir(dir) {
        Ok(()) => Ok(true),
        Err(e) if is_errno(&e, libc::ENOENT) => Ok(true),
        Err(e) if is_errno(&e, libc::EBUSY) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Kills what is in the group, waits until it is empty and removes it. A group already gone
/// is no error.
pub fn remove_group(dir: &Path) -> Result<(), CgroupIoError> {
    if remove_if_empty(dir)? {
        return Ok(());
    }
    let deadline = Instant::now() + REMOVE_TIMEOUT;
    loop {
        kill_group(dir)?;
        wait_until_empty(dir, deadline);
        match file::remove_dir(dir) {
            Err(e) if is_errno(&e, libc::ENOENT) => return Ok(()),
            // A task still exiting, or one that joined since the kill: another round.
            Err(e) if is_errno(&e, libc::EBUSY) && Instant::now() < deadline => std::thread::sleep(V1_RECHECK),
            other => return other,
        }
    }
}

/// Removes damon's own leaf (cgroup v2): the only processes that may be left in it besides
/// damon and its guard (`spared`, which leave it first) are children caught between fork and
/// joining the workload's group; they are killed.
pub fn remove_leaf(dir: &Path, spared: &[i32]) -> Result<(), CgroupIoError> {
    let deadline = Instant::now() + REMOVE_TIMEOUT;
    loop {
        match kill_listed_processes(dir, spared, || Ok(())) {
            Err(e) if is_errno(&e, libc::ENOENT) => return Ok(()),
            Err(e) => return Err(e),
            Ok(()) => {}
        }
        match file::remove_dir(dir) {
            Err(e) if is_errno(&e, libc::ENOENT) => return Ok(()),
            Err(e) if is_errno(&e, libc::EBUSY) && Instant::now() < deadline => std::thread::sleep(V1_RECHECK),
            other => return other,
        }
    }
}

/// Removes a parent directory damon created for DAMON_CGROUP_PARENT, unless another group or
/// process uses it by now (other damons may share the parent): then it stays, silently.
pub fn remove_unused_parent(dir: &Path) -> Result<(), CgroupIoError> {
    match file::remove_dir(dir) {
        Err(e) if [libc::ENOENT, libc::EBUSY, libc::ENOTEMPTY].iter().any(|&n| is_errno(&e, n)) => Ok(()),
        other => other,
    }
}

/// Whether an I/O error says the object is gone.
pub fn is_gone(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ESRCH) | Some(libc::ENODEV))
}
