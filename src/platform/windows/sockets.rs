//! Readiness of the metrics server's sockets: WSAPoll, Winsock's poll(2), over the listener
//! and the few client connections the server holds, so that the server's event loop is the
//! same on Windows as on Linux.

use std::io;
use std::net::TcpListener;
use std::os::windows::io::AsRawSocket;
use std::time::Duration;

use windows_sys::Win32::Networking::WinSock::{POLLERR, POLLHUP, POLLNVAL, POLLRDNORM, POLLWRNORM, SOCKET, WSAPOLLFD};

use super::ffi;
use crate::platform::SocketReady;

/// One wait over a list of sockets, refilled before every wait.
pub struct SocketPoller {
    sockets: Vec<WSAPOLLFD>,
}

impl SocketPoller {
    pub fn new() -> SocketPoller {
        SocketPoller { sockets: Vec::new() }
    }

    pub fn clear(&mut self) {
        self.sockets.clear();
    }

    /// Adds a socket to the next wait; its index is the number added before it. The socket
    /// must stay open until the wait returns (the list holds its handle value only).
    pub fn add(&mut self, socket: &impl AsRawSocket, read: bool, write: bool) {
        // POLLRDNORM and POLLWRNORM only: WSAPoll refuses flags it does not support (POLLPRI).
        let mut events = 0;
        if read {
            events |= POLLRDNORM;
        }
        if write {
            events |= POLLWRNORM;
        }
        self.sockets.push(WSAPOLLFD { fd: socket.as_raw_socket() as SOCKET, events, revents: 0 });
    }

    /// Blocks until a socket is ready or `timeout` passes; `None` waits as long as it takes.
    pub fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let timeout_ms = timeout.map_or(-1, |t| {
            // Rounded up: a wait that ends just before a deadline would only wait again.
            let ms = (t.as_nanos() + 999_999) / 1_000_000;
            ms.min(i32::MAX as u128) as i32
        });
        if self.sockets.is_empty() {
            // WSAPoll refuses an empty list; the server has one only while accepting is
            // paused, and then always with a deadline.
            std::thread::sleep(timeout.unwrap_or(Duration::from_secs(1)));
            return Ok(());
        }
        ffi::wsa_poll(&mut self.sockets, timeout_ms).map(|_| ())
    }

    /// What the socket added as `index` is ready for after the last wait.
    pub fn ready(&self, index: usize) -> SocketReady {
        let revents = self.sockets.get(index).map_or(0, |s| s.revents);
        SocketReady {
            read: revents & POLLRDNORM != 0,
            write: revents & POLLWRNORM != 0,
            closed: revents & (POLLHUP | POLLERR | POLLNVAL) != 0,
        }
    }
}

/// Asks for a longer queue of connections not accepted yet than std's 128 (see the Linux
/// version). Windows keeps the backlog of a socket's first listen and returns success;
/// under Wine the Linux socket gets the new one.
pub fn widen_backlog(listener: &TcpListener, backlog: usize) -> io::Result<()> {
    ffi::listen_again(listener.as_raw_socket() as SOCKET, backlog.min(i32::MAX as usize) as i32)
}

/// Windows has no counterpart of Linux's TCP_DEFER_ACCEPT (see the Linux version): a
/// connection is accepted as soon as it is made.
pub fn defer_accept(_listener: &TcpListener, _wait: Duration) -> io::Result<()> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "Windows cannot defer an accept until data arrives"))
}
