//! The journal of damon's changes to the cgroup hierarchy, and the guard that undoes them if
//! damon dies without doing it itself.
//!
//! A SIGKILL gives damon no chance to clean up, and a parent-death signal would reach only
//! the direct child. So before damon creates the first directory or writes the first cgroup
//! file, it forks the guard: a small process in a process group of its own (a kill of damon's
//! group, as Nomad sends one after every task, must not take it along) that holds one end of
//! a SOCK_SEQPACKET pair and sleeps until damon's end closes. Every change goes through
//! [`Journal::apply`], which sends it to the guard *before* making it (write-ahead). A message
//! sent is in the guard's receive queue even if damon is killed the next instant, so the guard
//! always knows every change that may have been made; it reads them once damon's end has
//! closed (the guard asks to be woken for that alone: a message does not wake it) and undoes
//! them, newest first, exactly as damon would at its end: the same code, in [`undo`]. Every
//! step of the undo is idempotent (a group already removed, a controller already off), so the
//! guard may safely repeat what damon had undone before it was killed. When damon has undone
//! everything itself, it kills the guard, which then runs no instruction more.
//!
//! damon waits for nothing of the guard's: damon itself puts the guard in that process group
//! and, where it is asked to, in its home cgroup, so that a launch costs the guard's fork and
//! nothing more (docs/cost.md).
//!
//! If the guard itself dies, damon notices (the socket hangs up), says so, and still undoes
//! everything at its own end.
//!
//! When a stop begins damon tells the guard when (the monotonic clock, which both share): under
//! Nomad damon has no kill timeout of its own, so a stop the workload does not obey ends with
//! Nomad's SIGKILL of damon at the job's kill_timeout, and the guard's report then says how long
//! after the stop signal it ended the tree and how many processes it killed.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::libc;
use nix::poll::{poll, PollFd, PollFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::socket::{recv, send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::time::{clock_gettime, ClockId};
use nix::unistd::{fork, getpid, setpgid, ForkResult, Pid};

use super::super::own_limits::OwnLimits;
use super::file::{self, CgroupIoError};
use super::teardown;

/// One change damon makes to the hierarchy, as the journal records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A missing ancestor of the group (DAMON_CGROUP_PARENT) created: removed if unused.
    Parent(PathBuf),
    /// The workload's group (one per hierarchy on v1): its processes are killed, it is removed.
    Group(PathBuf),
    /// damon's own leaf beside the group (v2): stray processes are killed, it is removed.
    Leaf(PathBuf),
    /// damon and its guard moved from `parent` into the leaf `leaf`: they move back.
    Joined { parent: PathBuf, leaf: PathBuf },
    /// Controllers turned on in `dir`'s cgroup.subtree_control, in one write: they are turned
    /// off, in one write too. Each write changes the controllers of every process below `dir`,
    /// which waits for an RCU grace period (tens of milliseconds on a busy host): one write for
    /// all of them waits once.
    Controllers { dir: PathBuf, controllers: Vec<String> },
}

const PROCS_FILE: &str = "cgroup.procs";
const SUBTREE_CONTROL_FILE: &str = "cgroup.subtree_control";

/// Tags of the messages on the guard's socket.
const TAG_PARENT: u8 = b'P';
const TAG_GROUP: u8 = b'G';
const TAG_LEAF: u8 = b'L';
const TAG_JOINED: u8 = b'J';
const TAG_CONTROLLER: u8 = b'C';
/// damon → guard: the change last sent was not made.
const TAG_CANCEL: u8 = b'x';
/// damon → guard: damon moved the guard to its home, out of damon's cgroups.
const TAG_AWAY: u8 = b'a';
/// damon → guard: the stop began; the monotonic time in nanoseconds and the signal follow.
const TAG_STOP: u8 = b's';
/// Paths are at most PATH_MAX (4096) bytes; a message holds two and a tag.
const MAX_MESSAGE_BYTES: usize = 3 * 4096;

impl Change {
    fn encode(&self) -> Vec<u8> {
        let (tag, first, second): (u8, &Path, Vec<u8>) = match self {
            Change::Parent(dir) => (TAG_PARENT, dir, Vec::new()),
            Change::Group(dir) => (TAG_GROUP, dir, Vec::new()),
            Change::Leaf(dir) => (TAG_LEAF, dir, Vec::new()),
            Change::Joined { parent, leaf } => (TAG_JOINED, parent, leaf.as_os_str().as_bytes().to_vec()),
            Change::Controllers { dir, controllers } => (TAG_CONTROLLER, dir, controllers.join(" ").into_bytes()),
        };
        let mut message = Vec::with_capacity(2 + first.as_os_str().len() + second.len());
        message.push(tag);
        message.extend_from_slice(first.as_os_str().as_bytes());
        // Paths never hold NUL, so it separates the two fields.
        message.push(0);
        message.extend_from_slice(&second);
        message
    }

    fn decode(message: &[u8]) -> Option<Change> {
        let (&tag, rest) = message.split_first()?;
        let mut fields = rest.splitn(2, |&b| b == 0);
        let first = PathBuf::from(OsStr::from_bytes(fields.next()?));
        let second = fields.next().unwrap_or_default();
        Some(match tag {
            TAG_PARENT => Change::Parent(first),
            TAG_GROUP => Change::Group(first),
            TAG_LEAF => Change::Leaf(first),
            TAG_JOINED => Change::Joined { parent: first, leaf: PathBuf::from(OsStr::from_bytes(second)) },
            TAG_CONTROLLER => Change::Controllers {
                dir: first,
                controllers: String::from_utf8_lossy(second).split_whitespace().map(str::to_string).collect(),
            },
            _ => return None,
        })
    }

    /// Makes the change. `Ok(false)`: nothing needed making (a parent that already exists).
    /// `guard`: the guard, when it shares damon's cgroup and must move with damon.
    fn make(&self, guard: Option<Pid>) -> Result<bool, CgroupIoError> {
        match self {
            Change::Parent(dir) => match file::create_dir(dir) {
                Err(e) if e.source.kind() == io::ErrorKind::AlreadyExists => Ok(false),
                other => other.map(|()| true),
            },
            Change::Group(dir) | Change::Leaf(dir) => match file::create_dir(dir) {
                // A group of this name outlived an earlier damon that had this pid (its guard
                // killed as well, or the host stopped): empty, it is removed and made anew;
                // holding processes, it is not damon's to touch, and the start fails.
                Err(e) if e.source.kind() == io::ErrorKind::AlreadyExists && file::remove_dir(dir).is_ok() => {
                    file::create_dir(dir).map(|()| true)
                }
                other => other.map(|()| true),
            },
            Change::Joined { leaf, .. } => {
                let procs = leaf.join(PROCS_FILE);
                // The guard first: it must not stay behind in a parent that is to pass controllers down.
                if let Some(guard) = guard {
                    file::write(&procs, &guard.to_string())?;
                }
                // "0" is the writing process, with all its threads.
                file::write(&procs, "0").map(|()| true)
            }
            Change::Controllers { dir, controllers } => {
                file::write(&dir.join(SUBTREE_CONTROL_FILE), &subtree_control_value('+', controllers)).map(|()| true)
            }
        }
    }

    /// Whether a failed [`make`](Self::make) left nothing to undo: one system call that failed.
    fn failure_changes_nothing(&self) -> bool {
        !matches!(self, Change::Joined { .. })
    }
}

/// What [`undo`] did.
pub struct Undone {
    /// Processes of the workload still in its groups, killed by the undo.
    pub processes_killed: usize,
    pub errors: Vec<CgroupIoError>,
}

/// Undoes `changes`, newest first, after stopping the workload: what damon does at its end
/// and what the guard does when damon died. `in_leaf` are the processes that moved into damon's
/// leaf and move back: damon (and the guard, if it shares damon's cgroup) when damon undoes;
/// the guard alone (if it moved) when the guard does: it never moves damon, whose pid may have
/// been reused once damon is dead.
pub fn undo(changes: &[Change], in_leaf: &[Pid]) -> Undone {
    let mut errors = Vec::new();
    // The usual end first: the workload has exited, so its groups are empty and go at once.
    // Only a group that still holds processes needs the kill below. (An error here is met
    // again, and reported, when the group's removal is tried below.)
    let busy: Vec<&Path> = changes
        .iter()
        .rev()
        .filter_map(|change| match change {
            Change::Group(dir) if !teardown::remove_if_empty(dir).unwrap_or(false) => Some(dir.as_path()),
            _ => None,
        })
        .collect();
    // Counted before the kill (one list per group; on v1 every hierarchy lists the same processes).
    let mut listed: Vec<i32> = busy.iter().flat_map(|dir| file::pids(dir).unwrap_or_default()).collect();
    listed.sort_unstable();
    listed.dedup();
    // On v1, stop the tree first where the freezer can hold it, so nothing forks past the kill.
    for dir in &busy {
        if dir.join("freezer.state").exists() {
            errors.extend(teardown::kill_group(dir).err());
        }
    }
    let spared: Vec<i32> = Some(getpid()).iter().chain(in_leaf).map(|p| p.as_raw()).collect();
    for change in changes.iter().rev() {
        let result = match change {
            Change::Group(dir) if !busy.contains(&dir.as_path()) => Ok(()),
            Change::Group(dir) => teardown::remove_group(dir),
            Change::Leaf(dir) => teardown::remove_leaf(dir, &spared),
            Change::Parent(dir) => teardown::remove_unused_parent(dir),
            // Another group below (another damon's, under a shared DAMON_CGROUP_PARENT) may
            // rely on the controllers since: turning them off would take its limits away.
            Change::Controllers { dir, .. } if has_foreign_child(dir, changes) => Ok(()),
            Change::Controllers { dir, controllers } => disable_controllers(dir, controllers),
            Change::Joined { parent, .. } => {
                let procs = parent.join(PROCS_FILE);
                let mut result = Ok(());
                for pid in in_leaf {
                    match file::write(&procs, &pid.to_string()) {
                        Err(e) if teardown::is_gone(&e.source) => {}
                        other => result = result.and(other),
                    }
                }
                result
            }
        };
        errors.extend(result.err());
    }
    Undone { processes_killed: listed.len(), errors }
}

/// "+memory +cpu" for `sign` '+' and ["memory", "cpu"]: one write for every controller.
fn subtree_control_value(sign: char, controllers: &[String]) -> String {
    controllers.iter().map(|c| format!("{}{}", sign, c)).collect::<Vec<_>>().join(" ")
}

/// Turns `controllers` off in `dir`, in one write; if the kernel refuses it (the write is all or
/// nothing), one at a time, so that each that can go goes and each refusal is reported.
fn disable_controllers(dir: &Path, controllers: &[String]) -> Result<(), CgroupIoError> {
    let path = dir.join(SUBTREE_CONTROL_FILE);
    let disable_one = |controller: &String| match file::write(&path, &format!("-{}", controller)) {
        Err(e) if teardown::is_gone(&e.source) => Ok(()),
        // A child still passes it down (one kept on by its own undo): it stays on here too.
        Err(e) if e.source.raw_os_error() == Some(nix::libc::EBUSY) => Ok(()),
        other => other,
    };
    match file::write(&path, &subtree_control_value('-', controllers)) {
        Err(e) if teardown::is_gone(&e.source) => Ok(()),
        // Newest first, as they would have been undone one by one.
        Err(_) => controllers.iter().rev().map(disable_one).fold(Ok(()), Result::and),
        Ok(()) => Ok(()),
    }
}

/// Whether `dir` has a child cgroup that is not on the way to one of damon's own directories.
fn has_foreign_child(dir: &Path, changes: &[Change]) -> bool {
    let own: Vec<&Path> = changes
        .iter()
        .filter_map(|c| match c {
            Change::Group(d) | Change::Leaf(d) | Change::Parent(d) => Some(d.as_path()),
            _ => None,
        })
        .collect();
    std::fs::read_dir(dir).map_or(false, |entries| {
        entries
            .flatten()
            .filter(|e| e.file_type().map_or(false, |t| t.is_dir()))
            .any(|e| !own.iter().any(|d| d.starts_with(e.path())))
    })
}

/// The changes made so far, each known to the guard before it was made.
pub struct Journal {
    changes: Vec<Change>,
    guard: Option<Guard>,
}

impl Journal {
    /// Forks the guard, in a process group of its own and, given `home` (a `cgroup.procs`
    /// file), in that cgroup: best effort. Must be called while damon has a single thread,
    /// before any change is made. `own_limits`: the limits the guard raises back when its
    /// cleanup begins.
    pub fn start(home: Option<&Path>, own_limits: OwnLimits) -> io::Result<Journal> {
        Ok(Journal { changes: Vec::new(), guard: Some(Guard::start(home, own_limits)?) })
    }

    /// Records `change` with the guard, then makes it.
    pub fn apply(&mut self, change: Change) -> Result<(), CgroupIoError> {
        self.send(&change.encode());
        let guard = self.guard.as_ref().filter(|g| !g.away).map(|g| g.pid);
        match change.make(guard) {
            Ok(true) => {
                self.changes.push(change);
                Ok(())
            }
            Ok(false) => {
                self.send(&[TAG_CANCEL]);
                Ok(())
            }
            Err(e) => {
                if change.failure_changes_nothing() {
                    self.send(&[TAG_CANCEL]);
                } else {
                    self.changes.push(change);
                }
                Err(e)
            }
        }
    }

    /// Tells the guard that the stop began now, with `signal`.
    pub fn stop_began(&mut self, signal: i32) {
        self.send(&StopBegan { at_ns: monotonic_ns(), signal }.encode());
    }

    fn send(&mut self, message: &[u8]) {
        if let Some(guard) = &self.guard {
            // MSG_NOSIGNAL: a dead guard must not take damon with it through SIGPIPE.
            if send(guard.socket.as_raw_fd(), message, MsgFlags::MSG_NOSIGNAL).is_err() {
                self.guard_lost();
            }
        }
    }

    /// The descriptor that becomes readable (end-of-file) if the guard dies.
    pub fn guard_socket(&self) -> Option<RawFd> {
        self.guard.as_ref().map(|g| g.socket.as_raw_fd())
    }

    /// The guard died: reaps it and says so. damon still undoes everything at its end.
    pub fn guard_lost(&mut self) {
        if let Some(guard) = self.guard.take() {
            let status = match waitpid(guard.pid, None) {
                Ok(WaitStatus::Signaled(_, signal, _)) => format!("killed by {}", signal.as_str()),
                Ok(WaitStatus::Exited(_, code)) => format!("exited with {}", code),
                Ok(other) => format!("{:?}", other),
                Err(e) => e.to_string(),
            };
            tracing::error!(
                guard_pid = guard.pid.as_raw(),
                status = %status,
                "damon's guard process ended: damon still cleans up at its end, but if damon is killed now the workload and its cgroup are left behind"
            );
        }
    }

    /// Undoes every change, newest first, then dismisses the guard. Best effort: each failure
    /// is returned, the rest still attempted.
    pub fn undo(mut self) -> Vec<CgroupIoError> {
        let guard = self.guard.as_ref().filter(|g| !g.away).map(|g| g.pid);
        let in_leaf: Vec<Pid> = Some(getpid()).into_iter().chain(guard).collect();
        let errors = undo(&self.changes, &in_leaf).errors;
        self.changes.clear();
        if let Some(guard) = self.guard.take() {
            guard.dismiss();
        }
        errors
    }
}

/// damon's end of the guard.
struct Guard {
    pid: Pid,
    socket: OwnedFd,
    /// The guard moved to its home, out of damon's cgroups: it does not follow damon into its leaf.
    away: bool,
}

impl Guard {
    fn start(home: Option<&Path>, own_limits: OwnLimits) -> io::Result<Guard> {
        let flags = SockFlag::SOCK_CLOEXEC;
        let (damon_end, guard_end) =
            socketpair(AddressFamily::Unix, SockType::SeqPacket, None, flags).map_err(io::Error::from)?;
        // SAFETY: socketpair(2) just returned these two descriptors; nothing else owns them.
        let (damon_end, guard_end) = unsafe { (OwnedFd::from_raw_fd(damon_end), OwnedFd::from_raw_fd(guard_end)) };
        // SAFETY: damon has one thread here (threads start after the container exists), so the
        // child's copy of the heap and of every lock is consistent and it may run any code.
        match unsafe { fork() }.map_err(io::Error::from)? {
            ForkResult::Parent { child } => {
                drop(guard_end);
                // Out of damon's process group before the first change: a kill of that group
                // must not take the guard. (The guard, freshly forked, has not exec'd, so this
                // cannot fail but for a guard already dead, which damon hears of on the socket.)
                if let Err(e) = setpgid(child, child) {
                    tracing::debug!(guard_pid = child.as_raw(), error = %e, "cannot put the guard in a process group of its own");
                }
                // Where it cannot move (no right to), it stays in damon's cgroups and follows damon.
                let away = home.map_or(false, |home| file::write(home, &child.to_string()).is_ok())
                    && send(damon_end.as_raw_fd(), &[TAG_AWAY], MsgFlags::MSG_NOSIGNAL).is_ok();
                Ok(Guard { pid: child, socket: damon_end, away })
            }
            ForkResult::Child => {
                drop(damon_end);
                guard_main(guard_end, own_limits);
                // SAFETY: _exit ends the process without running damon's atexit handlers or
                // flushing stdio buffers copied from damon, which would write their content twice.
                unsafe { libc::_exit(0) }
            }
        }
    }

    /// damon undid everything itself: the guard is killed, without a word, and reaped.
    fn dismiss(self) {
        let _ = kill(self.pid, Signal::SIGKILL);
        let _ = waitpid(self.pid, None);
    }
}

fn guard_main(socket: OwnedFd, mut own_limits: OwnLimits) {
    // The signals damon handles stay blocked (the mask is inherited), so a stop sent to the
    // guard does nothing. Asleep until damon's end closes (POLLHUP, which poll reports unasked):
    // damon died (a damon that ends normally kills the guard instead). The kernel wakes a
    // poller only for the events it waits for, so the messages queue up meanwhile without
    // waking it (a wake-up per change would cost damon's start a context switch each).
    loop {
        let mut fds = [PollFd::new(socket.as_raw_fd(), PollFlags::empty())];
        match poll(&mut fds, -1) {
            Err(Errno::EINTR) => continue,
            _ => break,
        }
    }
    // The cleanup begins: what the workload lowered of the guard's limits, which it needs
    // (descriptors, memory, file size for its report), is raised back first.
    own_limits.restore("the guard's");
    let mut changes: Vec<Change> = Vec::new();
    let mut away = false;
    let mut stop = None;
    let mut message = vec![0u8; MAX_MESSAGE_BYTES];
    loop {
        match recv(socket.as_raw_fd(), &mut message, MsgFlags::empty()) {
            // End-of-file: every message is read.
            Ok(0) => break,
            Ok(_) if message[0] == TAG_CANCEL => {
                changes.pop();
            }
            Ok(_) if message[0] == TAG_AWAY => away = true,
            Ok(n) if message[0] == TAG_STOP => stop = StopBegan::decode(&message[..n]).or(stop),
            Ok(n) => changes.extend(Change::decode(&message[..n])),
            Err(Errno::EINTR) => continue,
            Err(_) => break,
        }
    }
    if changes.is_empty() {
        return;
    }
    let in_leaf: Vec<Pid> = if away { Vec::new() } else { vec![getpid()] };
    // Damon's end is now: how long the stop lasted is measured before the undo's own time.
    let since_stop_ms = stop.map(|s| monotonic_ns().saturating_sub(s.at_ns) / 1_000_000);
    let stop_signal = stop.and_then(|s| Signal::try_from(s.signal).ok()).map(Signal::as_str);
    let undone = undo(&changes, &in_leaf);
    let groups: Vec<String> = changes
        .iter()
        .filter_map(|c| match c {
            Change::Group(dir) => Some(dir.display().to_string()),
            _ => None,
        })
        .collect();
    let cgroup = groups.join(" ");
    let when = match since_stop_ms {
        Some(ms) => format!("{} ms after the stop signal", ms),
        None => "before any stop signal".to_string(),
    };
    let processes_killed = undone.processes_killed;
    if undone.errors.is_empty() {
        tracing::warn!(
            cgroup = %cgroup,
            processes_killed,
            since_stop_ms,
            stop_signal,
            "damon ended without cleaning up ({}): its guard killed the workload ({} processes) and removed the cgroup",
            when,
            processes_killed
        );
    } else {
        let errors: Vec<String> = undone.errors.iter().map(ToString::to_string).collect();
        tracing::error!(
            cgroup = %cgroup,
            processes_killed,
            since_stop_ms,
            stop_signal,
            errors = %errors.join("; "),
            "damon ended without cleaning up ({}): its guard could not remove everything",
            when
        );
    }
}

/// The stop's beginning, as damon told the guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StopBegan {
    /// CLOCK_MONOTONIC, which damon and the guard share.
    at_ns: u64,
    signal: i32,
}

impl StopBegan {
    fn encode(&self) -> Vec<u8> {
        let mut message = vec![TAG_STOP];
        message.extend_from_slice(&self.at_ns.to_le_bytes());
        message.extend_from_slice(&self.signal.to_le_bytes());
        message
    }

    fn decode(message: &[u8]) -> Option<StopBegan> {
        let at: [u8; 8] = message.get(1..9)?.try_into().ok()?;
        let signal: [u8; 4] = message.get(9..13)?.try_into().ok()?;
        Some(StopBegan { at_ns: u64::from_le_bytes(at), signal: i32::from_le_bytes(signal) })
    }
}

/// Now on the monotonic clock, in nanoseconds (0 should the clock fail, which it cannot here).
fn monotonic_ns() -> u64 {
    clock_gettime(ClockId::CLOCK_MONOTONIC)
        .map_or(0, |t| (t.tv_sec() as u64).saturating_mul(1_000_000_000).saturating_add(t.tv_nsec() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_survive_the_wire() {
        let changes = [
            Change::Parent(PathBuf::from("/sys/fs/cgroup/a b")),
            Change::Group(PathBuf::from("/sys/fs/cgroup/memory/damon-web-1")),
            Change::Leaf(PathBuf::from("/x/damon-1.supervisor")),
            Change::Joined { parent: PathBuf::from("/x"), leaf: PathBuf::from("/x/damon-1.supervisor") },
            Change::Controllers { dir: PathBuf::from("/x"), controllers: vec!["memory".to_string()] },
            Change::Controllers {
                dir: PathBuf::from("/x"),
                controllers: vec!["memory".to_string(), "cpu".to_string()],
            },
        ];
        for change in changes {
            assert_eq!(Change::decode(&change.encode()), Some(change));
        }
        assert_eq!(Change::decode(b""), None);
        assert_eq!(Change::decode(b"?abc"), None);
    }

    #[test]
    fn the_stop_survives_the_wire() {
        let stop = StopBegan { at_ns: 123_456_789_000, signal: 2 };
        assert_eq!(StopBegan::decode(&stop.encode()), Some(stop));
        assert_eq!(StopBegan::decode(&stop.encode()[..5]), None);
    }
}
