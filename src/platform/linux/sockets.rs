//! Readiness of the metrics server's sockets: poll(2) over the listener and the few client
//! connections the server holds (at most a few dozen, so poll's walk of the whole list costs
//! less than keeping an epoll set in step with connections that come and go every second).

use std::io;
use std::net::TcpListener;
use std::os::unix::io::AsRawFd;
use std::time::Duration;

use nix::errno::Errno;
use nix::libc;
use nix::poll::{poll, PollFd, PollFlags};

use crate::platform::SocketReady;

/// One wait over a list of sockets, refilled before every wait.
pub struct SocketPoller {
    fds: Vec<PollFd>,
}

impl SocketPoller {
    pub fn new() -> SocketPoller {
        SocketPoller { fds: Vec::new() }
    }

    pub fn clear(&mut self) {
        self.fds.clear();
    }

    /// Adds a socket to the next wait; its index is the number added before it. The socket
    /// must stay open until the wait returns (the list holds its descriptor number only).
    pub fn add(&mut self, socket: &impl AsRawFd, read: bool, write: bool) {
        let mut events = PollFlags::empty();
        if read {
            events |= PollFlags::POLLIN;
        }
        if write {
            events |= PollFlags::POLLOUT;
        }
        self.fds.push(PollFd::new(socket.as_raw_fd(), events));
    }

    /// Blocks until a socket is ready or `timeout` passes; `None` waits as long as it takes,
    /// which costs nothing while nobody connects. A signal cutting the wait short is a
    /// normal return: the caller looks at the clock and waits again.
    pub fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let timeout_ms = timeout.map_or(-1, |t| {
            // Rounded up: a wait that ends just before a deadline would only wait again.
            let ms = (t.as_nanos() + 999_999) / 1_000_000;
            ms.min(i32::MAX as u128) as i32
        });
        match poll(&mut self.fds, timeout_ms) {
            Ok(_) | Err(Errno::EINTR) => Ok(()),
            Err(e) => Err(io::Error::new(io::Error::from(e).kind(), format!("poll: {}", e))),
        }
    }

    /// What the socket added as `index` is ready for after the last wait.
    pub fn ready(&self, index: usize) -> SocketReady {
        let revents = self.fds.get(index).and_then(|fd| fd.revents()).unwrap_or_else(PollFlags::empty);
        SocketReady {
            read: revents.contains(PollFlags::POLLIN),
            write: revents.contains(PollFlags::POLLOUT),
            closed: revents.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL),
        }
    }
}

/// Lets the kernel queue up to `backlog` connections the server has not accepted yet (std
/// listens with 128; the kernel caps the figure at net.core.somaxconn). A burst of hostile
/// connections then cannot fill the queue and delay a scrape's connection by a SYN
/// retransmission (a second). Listening again on a listening socket only changes its backlog.
pub fn widen_backlog(listener: &TcpListener, backlog: usize) -> io::Result<()> {
    nix::sys::socket::listen(listener.as_raw_fd(), backlog)
        .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("listen: {}", e)))
}

/// Has the kernel hold a new connection until its first bytes arrive, for up to `wait`
/// (TCP_DEFER_ACCEPT), before it is handed to accept. A scrape sends its request with its
/// connection, so it arrives with it and is answered at once; a client that connects and says
/// nothing (a scanner, an idle flood) takes no place among the server's connections meanwhile,
/// and none it could push out. Past `wait` the kernel hands the connection over anyway, and the
/// server's own head timeout applies. nix has no wrapper for this option.
pub fn defer_accept(listener: &TcpListener, wait: Duration) -> io::Result<()> {
    let seconds = wait.as_secs().clamp(1, i32::MAX as u64) as libc::c_int;
    // SAFETY: the descriptor is the listener's, open for the borrow; the option value is a
    // c_int that lives across the call, and its size is passed with it.
    let result = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&seconds as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        let e = io::Error::last_os_error();
        Err(io::Error::new(e.kind(), format!("setsockopt TCP_DEFER_ACCEPT: {}", e)))
    }
}
