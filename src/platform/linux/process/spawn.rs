//! Starting the child inside its cgroup.
//!
//! On cgroup v2 the child is born in its group: clone3 with CLONE_INTO_CGROUP (see clone.rs),
//! so nothing is moved and no move waits for an RCU grace period. Where that is refused (a
//! kernel before 5.7, a seccomp filter that does not know clone3) and on cgroup v1, the child
//! writes itself into each `cgroup.procs` (v1: `tasks`, whose move of the writing thread takes
//! no grace period either) between its clone and its exec. Either way it runs no
//! instruction of the command outside the group, and everything it starts is inside too. Only
//! then does it take on its [`Identity`] (another user, no privileges): a child that is no
//! longer root could not write itself into a group that root owns.

use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::io::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};

use nix::sys::signal::{sigprocmask, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::super::sandbox::Prepared;
use super::clone::{self, CloneError, Destination};
use super::identity::Identity;
use super::signals::HANDLED_SIGNALS;
use crate::platform::SpawnError;

/// How the child came into its group, for the "child started" line.
pub const BORN_IN_GROUP: &str = "clone3 into its cgroup";
pub const JOINED_GROUP: &str = "joined its cgroup before exec";

/// Where the child is to run.
pub struct Placement<'a> {
    /// cgroup v2: the group's directory, for clone3.
    pub v2_group: Option<&'a Path>,
    /// The `cgroup.procs` (v1: `tasks`) files the child writes itself into when it is not born in
    /// its group.
    pub join_files: &'a [PathBuf],
}

/// The started child, reaped with waitpid: a child started with clone(2) is no std `Child`.
#[derive(Debug)]
pub struct ChildProcess {
    pid: Pid,
    /// In the sandbox's namespaces `pid` is their init: the command's own wait status comes
    /// on this pipe.
    status_pipe: Option<File>,
    /// The stack the sandbox's init runs on in damon's memory; `None` once the init is reaped.
    init_stack: Option<Vec<u8>>,
    /// How it came into its group: [`BORN_IN_GROUP`] or [`JOINED_GROUP`], with the reason
    /// clone3 was refused where it was tried.
    pub start: String,
}

/// How the child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Code(i32),
    Signal(i32),
}

impl ChildProcess {
    pub fn id(&self) -> u32 {
        self.pid.as_raw() as u32
    }

    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// The child's end if it has ended, reaping it.
    pub fn try_wait(&mut self) -> nix::Result<Option<Ended>> {
        let status = waitpid(self.pid, Some(WaitPidFlag::WNOHANG))?;
        Ok(self.ended(status))
    }

    /// Waits for the child's end and reaps it.
    pub fn wait(&mut self) -> nix::Result<Option<Ended>> {
        loop {
            match waitpid(self.pid, None) {
                Err(nix::errno::Errno::EINTR) => continue,
                other => return Ok(self.ended(other?)),
            }
        }
    }

    fn ended(&mut self, status: WaitStatus) -> Option<Ended> {
        let ended = match status {
            WaitStatus::Exited(_, code) => Ended::Code(code),
            WaitStatus::Signaled(_, signal, _) => Ended::Signal(signal as i32),
            _ => return None,
        };
        // Reaped: nothing runs on it any more.
        self.init_stack = None;
        // The init has ended: the command's status is on the pipe, unless the init was killed
        // before the command ended (then the init's own end stands).
        Some(self.command_status().unwrap_or(ended))
    }

    /// In the sandbox's namespaces: the pipe that becomes readable when the init has written
    /// the command's wait status, or has ended without (its end of file).
    pub fn status_pipe(&self) -> Option<RawFd> {
        self.status_pipe.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// The command's end, from the status pipe once it is readable; `None` if the init ended
    /// without writing it (killed: its own end then stands, through [`ChildProcess::try_wait`]).
    /// The pipe is read once.
    pub fn command_status(&mut self) -> Option<Ended> {
        let mut raw = [0u8; 4];
        // The init writes the four bytes at once (a pipe keeps a write of up to PIPE_BUF whole).
        match self.status_pipe.take().map(|mut pipe| std::io::Read::read(&mut pipe, &mut raw)) {
            Some(Ok(4)) => {
                let status = i32::from_ne_bytes(raw);
                Some(if nix::libc::WIFEXITED(status) {
                    Ended::Code(nix::libc::WEXITSTATUS(status))
                } else {
                    Ended::Signal(nix::libc::WTERMSIG(status))
                })
            }
            _ => None,
        }
    }
}

impl Drop for ChildProcess {
    /// An init that was not reaped (damon ends in an error) may still run on its stack: that
    /// memory is never handed back.
    fn drop(&mut self) {
        if let Some(stack) = self.init_stack.take() {
            std::mem::forget(stack);
        }
    }
}

/// Gives the command the signal dispositions and mask it would have without damon: damon
/// blocks the signals it handles (for its signalfd), and may have been started with them
/// ignored (a background job of a script ignores SIGINT), which exec keeps; Rust ignores
/// SIGPIPE. Runs between the clone and the exec: sigaction(2) and sigprocmask(2) only.
fn reset_signals() -> io::Result<()> {
    let to_io = |e: nix::errno::Errno| io::Error::from_raw_os_error(e as i32);
    for signal in HANDLED_SIGNALS.iter().chain(&[Signal::SIGPIPE]) {
        // SAFETY: SIG_DFL installs no handler, so no Rust code can run in signal context.
        unsafe { nix::sys::signal::signal(*signal, SigHandler::SigDfl) }.map_err(to_io)?;
    }
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None).map_err(to_io)
}

/// Finds the program as execvp would, so that "not found" (127) and "not executable" (126)
/// are decided before anything is started.
pub fn resolve(program: &OsStr, path_var: Option<&OsStr>) -> Result<PathBuf, SpawnError> {
    let not_found = || SpawnError::NotFound(program.to_os_string());
    if program.is_empty() {
        return Err(not_found());
    }
    let candidate = Path::new(program);
    if program.to_string_lossy().contains('/') {
        return match candidate.metadata() {
            Ok(m) if m.is_dir() => {
                Err(SpawnError::NotExecutable(program.to_os_string(), io::Error::from_raw_os_error(nix::libc::EISDIR)))
            }
            Ok(m) if m.permissions().mode() & 0o111 == 0 => {
                Err(SpawnError::NotExecutable(program.to_os_string(), io::Error::from_raw_os_error(nix::libc::EACCES)))
            }
            Ok(_) => Ok(candidate.to_path_buf()),
            Err(_) => Err(not_found()),
        };
    }
    let path_var = path_var.map_or_else(|| OsString::from("/usr/local/bin:/usr/bin:/bin"), OsStr::to_os_string);
    let mut not_executable = None;
    for dir in std::env::split_paths(&path_var) {
        let full = dir.join(program);
        match full.metadata() {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => return Ok(full),
            Ok(m) if m.is_file() => not_executable = Some(full),
            _ => {}
        }
    }
    match not_executable {
        Some(path) => {
            Err(SpawnError::NotExecutable(path.into_os_string(), io::Error::from_raw_os_error(nix::libc::EACCES)))
        }
        None => Err(not_found()),
    }
}

/// Starts `program` with `argv` in its cgroup (`placement`), as `identity`.
pub fn spawn_in(
    program: &Path,
    argv: &[OsString],
    placement: &Placement,
    identity: &Identity,
    sandbox: &Prepared,
) -> Result<ChildProcess, SpawnError> {
    let mut refused = None;
    if let Some(group) = placement.v2_group {
        match clone::spawn(Destination::Group(group), program, argv, reset_signals, identity, sandbox) {
            Ok(started) => {
                return Ok(ChildProcess {
                    pid: started.pid,
                    status_pipe: started.status_pipe,
                    init_stack: started.init_stack,
                    start: BORN_IN_GROUP.to_string(),
                })
            }
            // Joining, below.
            Err(CloneError::Refused(e)) => refused = Some(e),
            Err(e) => return Err(clone_error(e, argv, identity)),
        }
    }
    // Opened before the clone: the child makes system calls only.
    let procs: Vec<File> = placement
        .join_files
        .iter()
        .map(|path| {
            OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| SpawnError::Other(format!("cannot open {}", path.display()), e))
        })
        .collect::<Result<_, _>>()?;
    let fds: Vec<i32> = procs.iter().map(|f| f.as_raw_fd()).collect();
    let started = clone::spawn(Destination::Join(&fds), program, argv, reset_signals, identity, sandbox)
        .map_err(|e| clone_error(e, argv, identity))?;
    let start = match refused {
        Some(e) => format!("{} (clone3 into the cgroup refused: {})", JOINED_GROUP, e),
        None => JOINED_GROUP.to_string(),
    };
    Ok(ChildProcess { pid: started.pid, status_pipe: started.status_pipe, init_stack: started.init_stack, start })
}

fn clone_error(e: CloneError, argv: &[OsString], identity: &Identity) -> SpawnError {
    match e {
        CloneError::Child(e) => spawn_error(e, argv, identity),
        CloneError::Prepare(context, e) | CloneError::Namespace(context, e) => SpawnError::Other(context, e),
        // Only a clone3 is refused, and spawn_in then joins instead.
        CloneError::Refused(e) => SpawnError::Other(format!("cannot start {:?}", argv[0]), e),
    }
}

/// The error of a start that failed in the child (its exec, or a step before it).
fn spawn_error(e: io::Error, argv: &[OsString], identity: &Identity) -> SpawnError {
    match e.raw_os_error() {
        Some(nix::libc::ENOENT) => SpawnError::NotFound(argv[0].clone()),
        // damon (root) found the program executable; the user the child became may not.
        Some(nix::libc::EACCES) if identity.switched_user().is_some() => SpawnError::NotExecutable(
            argv[0].clone(),
            io::Error::new(
                e.kind(),
                format!(
                    "{} may not execute it, or search a directory on its path or the working directory ({})",
                    identity.switched_user().unwrap_or_default(),
                    e
                ),
            ),
        ),
        Some(
            nix::libc::EACCES
            | nix::libc::ENOEXEC
            | nix::libc::EISDIR
            | nix::libc::ETXTBSY
            | nix::libc::ENOTDIR
            | nix::libc::ELOOP,
        ) => SpawnError::NotExecutable(argv[0].clone(), e),
        _ if identity.switched_user().is_some() => SpawnError::Other(
            format!(
                "cannot start {:?} in its cgroup as {} ({})",
                argv[0],
                identity.switched_user().unwrap_or_default(),
                identity.describe_privileges()
            ),
            e,
        ),
        _ => SpawnError::Other(format!("cannot start {:?} in its cgroup", argv[0]), e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolution_tells_not_found_from_not_executable() {
        assert!(resolve(OsStr::new("sh"), None).is_ok());
        assert!(matches!(resolve(OsStr::new("no-such-program-here"), None), Err(SpawnError::NotFound(_))));
        assert!(matches!(resolve(OsStr::new("/no/such/file"), None), Err(SpawnError::NotFound(_))));
        let plain_file = std::env::temp_dir().join(format!("damon-spawn-test-{}", std::process::id()));
        std::fs::write(&plain_file, "not a program").unwrap();
        std::fs::set_permissions(&plain_file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let result = resolve(plain_file.as_os_str(), None);
        std::fs::remove_file(&plain_file).unwrap();
        assert!(matches!(result, Err(SpawnError::NotExecutable(..))), "{:?}", result);
        assert!(matches!(resolve(OsStr::new("/tmp"), None), Err(SpawnError::NotExecutable(..))));
    }
}
