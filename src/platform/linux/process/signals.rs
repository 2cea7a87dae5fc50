//! The signals damon acts on, received through a signalfd so that the supervisor blocks in
//! one `poll` until a signal arrives or a deadline passes: no handler, no polling loop.

use std::os::unix::io::{AsRawFd, RawFd};
use std::time::Instant;

use nix::poll::{poll, PollFd, PollFlags};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

/// Stop requests: Nomad's kill_signal (SIGINT by default, or what the job sets), a terminal's hangup.
pub const STOP_SIGNALS: [Signal; 4] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT];
/// Passed on to the child without stopping it.
pub const PASS_ON_SIGNALS: [Signal; 2] = [Signal::SIGUSR1, Signal::SIGUSR2];

pub struct SignalWaiter {
    fd: SignalFd,
}

/// Every signal damon reads through its signalfd.
pub const HANDLED_SIGNALS: [Signal; 7] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGCHLD,
];

fn handled() -> SigSet {
    let mut set = SigSet::empty();
    for s in HANDLED_SIGNALS {
        set.add(s);
    }
    set
}

/// Blocks the handled signals: they stay pending until the signalfd reads them.
pub fn block_handled() -> nix::Result<()> {
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&handled()), None)
}

impl SignalWaiter {
    /// Blocks the handled signals (so they queue for the signalfd) and opens the signalfd.
    /// Call before any thread or child starts: both inherit the mask (std resets it in the
    /// child before exec).
    pub fn install() -> nix::Result<Self> {
        block_handled()?;
        let set = handled();
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)?;
        Ok(SignalWaiter { fd })
    }

    /// Waits for the next signal, for one of `extras` to become ready, or for `deadline`.
    pub fn next(&mut self, deadline: Option<Instant>, extras: &[Option<(RawFd, PollFlags)>]) -> nix::Result<Wake> {
        loop {
            if let Some(info) = self.fd.read_signal()? {
                if let Ok(signal) = Signal::try_from(info.ssi_signo as i32) {
                    return Ok(Wake::Signal(signal));
                }
                continue;
            }
            let timeout_ms = match deadline {
                None => -1,
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Ok(Wake::Deadline);
                    }
                    // Round up, or we would wake just before the deadline and spin.
                    let remaining = deadline - now;
                    (remaining.as_millis() as u64 + 1).min(i32::MAX as u64) as i32
                }
            };
            let mut fds = vec![PollFd::new(self.fd.as_raw_fd(), PollFlags::POLLIN)];
            // (index in `extras`, position in `fds`)
            let mut positions = Vec::with_capacity(extras.len());
            for (index, (fd, flags)) in extras.iter().enumerate().filter_map(|(i, e)| e.map(|e| (i, e))) {
                positions.push(index);
                fds.push(PollFd::new(fd, flags));
            }
            match poll(&mut fds, timeout_ms) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e),
            }
            for (index, fd) in positions.iter().zip(&fds[1..]) {
                if fd.revents().map_or(false, |r| !r.is_empty()) {
                    return Ok(Wake::Extra(*index));
                }
            }
        }
    }
}

/// Why [`SignalWaiter::next`] returned.
pub enum Wake {
    Signal(Signal),
    /// The extra descriptor at this index in the list given is ready.
    Extra(usize),
    Deadline,
}
