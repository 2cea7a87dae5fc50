//! A small, bounded HTTP server for the metrics endpoint: GET and HEAD, one path, nothing else.
//!
//! Written here rather than taken from tiny_http, which starts a thread for every connection
//! and sets no socket timeouts, so that a client that connects and stalls costs damon a
//! thread forever. This one has a fixed number of handler threads fed through a bounded
//! queue, and a read and write timeout on every connection: a slow or stuck client delays at
//! most one handler by the timeout, other scrapes go to the other handler, and a burst
//! beyond the queue is refused at once. Nothing here touches the supervisor's thread.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::ListenAddr;

const HANDLER_THREADS: usize = 2;
const QUEUED_CONNECTIONS: usize = 8;
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);
/// A scrape request is one short line and a few headers.
const MAX_REQUEST_BYTES: usize = 8 * 1024;

pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// Resolves the configured address; its syntax was checked with the configuration, so what
/// fails here (a name that does not resolve) is the environment's, and only a warning.
fn resolve(addr: &ListenAddr) -> io::Result<SocketAddr> {
    match addr {
        ListenAddr::Ip(addr) => Ok(*addr),
        ListenAddr::Name { host, port } => (host.as_str(), *port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{} resolves to no address", addr))),
    }
}

/// Binds `addr` and serves `render()` at `endpoint` from background threads.
pub fn start(addr: &ListenAddr, endpoint: String, render: Render) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(resolve(addr)?)?;
    let local = listener.local_addr()?;
    let (queue, connections) = sync_channel::<TcpStream>(QUEUED_CONNECTIONS);
    let connections = Arc::new(Mutex::new(connections));
    let endpoint = Arc::new(endpoint);
    for i in 0..HANDLER_THREADS {
        let (connections, endpoint, render) = (Arc::clone(&connections), Arc::clone(&endpoint), Arc::clone(&render));
        std::thread::Builder::new()
            .name(format!("metrics-{}", i))
            .spawn(move || handle_connections(&connections, &endpoint, &render))?;
    }
    std::thread::Builder::new().name("metrics-accept".to_string()).spawn(move || accept(listener, queue))?;
    Ok(local)
}

fn accept(listener: TcpListener, queue: SyncSender<TcpStream>) {
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => match queue.try_send(stream) {
                Ok(()) => {}
                // Too many waiting already: refusing is better than queueing without bound.
                Err(TrySendError::Full(stream)) => drop(stream),
                Err(TrySendError::Disconnected(_)) => return,
            },
            Err(e) => tracing::debug!(error = %e, "metrics: accept failed"),
        }
    }
}

fn handle_connections(connections: &Mutex<Receiver<TcpStream>>, endpoint: &str, render: &Render) {
    loop {
        let stream = match connections.lock().map(|queue| queue.recv()) {
            Ok(Ok(stream)) => stream,
            _ => return,
        };
        if let Err(e) = respond(stream, endpoint, render) {
            tracing::debug!(error = %e, "metrics: a client went away");
        }
    }
}

/// Reads the request head, up to the blank line or the size limit.
fn read_head(stream: &mut TcpStream) -> io::Result<String> {
    let mut head = Vec::with_capacity(512);
    let mut buffer = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST_BYTES {
        let n = stream.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buffer[..n]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

fn respond(mut stream: TcpStream, endpoint: &str, render: &Render) -> io::Result<()> {
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let head = read_head(&mut stream)?;
    let mut request_line = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (request_line.next().unwrap_or(""), request_line.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, content_type, body) = match method {
        "GET" | "HEAD" if path == endpoint => ("200 OK", "text/plain; version=0.0.4; charset=utf-8", render()),
        "GET" | "HEAD" => {
            ("404 Not Found", "text/plain; charset=utf-8", format!("not found; metrics are at {}\n", endpoint))
        }
        _ => ("405 Method Not Allowed", "text/plain; charset=utf-8", "only GET and HEAD\n".to_string()),
    };
    let mut response = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        status,
        content_type,
        body.len()
    );
    if status.starts_with("405") {
        response.push_str("Allow: GET, HEAD\r\n");
    }
    response.push_str("\r\n");
    if method != "HEAD" {
        response.push_str(&body);
    }
    stream.write_all(response.as_bytes())?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn get(addr: SocketAddr, request: &str) -> String {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    }

    #[test]
    fn serves_get_and_head_on_the_endpoint_only_and_survives_a_stuck_client() {
        let any_port = ListenAddr::Ip("127.0.0.1:0".parse().unwrap());
        let addr = start(&any_port, "/metrics".to_string(), Arc::new(|| "up 1\n".to_string())).unwrap();
        // A client that connects and sends nothing holds one handler until its timeout.
        let _stuck = TcpStream::connect(addr).unwrap();
        let ok = get(addr, "GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n") && ok.ends_with("\r\n\r\nup 1\n"), "{}", ok);
        let head = get(addr, "HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(
            head.starts_with("HTTP/1.1 200 OK\r\n")
                && head.contains("Content-Length: 5\r\n")
                && head.ends_with("\r\n\r\n")
        );
        assert!(get(addr, "GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        let post = get(addr, "POST /metrics HTTP/1.1\r\n\r\n");
        assert!(post.starts_with("HTTP/1.1 405") && post.contains("Allow: GET, HEAD"), "{}", post);
    }

    #[test]
    fn a_name_that_does_not_resolve_is_an_error() {
        let unknown = ListenAddr::Name { host: "no-such-host.invalid".to_string(), port: 80 };
        assert!(start(&unknown, "/m".to_string(), Arc::new(String::new)).is_err());
    }
}
