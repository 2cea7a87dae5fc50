//! damon's HTTP server for the metrics endpoint: GET and HEAD of one path, keep-alive and gzip
//! as Prometheus uses them, and bounded in memory, threads and time whatever clients do.
//!
//! One thread runs one event loop over non-blocking sockets (poll(2) on Linux, WSAPoll on
//! Windows, through `platform::SocketPoller`). Each connection is a small state machine:
//! reading a request head, writing an answer, or closing. The bounds:
//! - At most [`Bounds::max_connections`] connections. A new one beyond that takes the place
//!   of the least useful: one closing, else the oldest that never completed a request (an
//!   idle or slowloris client), else the oldest answer the client is not taking, else the
//!   least recently used keep-alive connection. A new connection is never refused. One that
//!   has not completed a request is read once more before it goes, and is not given up in the
//!   burst of accepts that took it in (the newest is then held beyond the limit, one more at
//!   most, until the loop's next turn): a scrape whose request is on its way keeps its place.
//! - On Linux the kernel hands a connection over only once its first bytes have come, or
//!   after [`Bounds::defer_accept`] (TCP_DEFER_ACCEPT): a scrape arrives with its request and
//!   is answered at once, and clients that connect and say nothing stay with the kernel.
//! - A request head of at most [`http::MAX_HEAD_BYTES`], complete within
//!   [`Bounds::head_timeout`] of the accept (or of its first byte, on a kept connection).
//! - An answer is written without blocking, and must be taken within
//!   [`Bounds::write_timeout`]; while it is out, nothing more is read from that client, so a
//!   connection holds at most one answer, and answers share one copy of the exposition.
//! - A kept connection idle for [`Bounds::idle_timeout`] is closed.
//!
//! Those deadlines are the loop's only timer, and exist only while a connection is open: with
//! none, the thread sleeps in poll without a timeout and uses no CPU. The exposition is
//! rendered only for a complete request of the endpoint, and gzipped once per rendering.
//! Nothing here touches the supervisor's thread.

mod http;

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flate2::write::GzEncoder;
use flate2::Compression;

use self::http::{Body, ConnectionHeader, Method, Parsed, Request, Status, MAX_HEAD_BYTES};
use super::exposition::{Family, Kind};
use crate::config::ListenAddr;
use crate::platform::{self, defer_accept, widen_backlog, SocketPoller, SocketReady};

pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// How much the server holds, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Connections held at once.
    pub max_connections: usize,
    /// From a connection's accept, or from the first byte of a later request, to the end of
    /// the request head.
    pub head_timeout: Duration,
    /// For the client to take a whole answer.
    pub write_timeout: Duration,
    /// A kept connection between requests. Prometheus keeps idle connections 5 minutes, and
    /// scrapes every minute by default: this keeps its connection from scrape to scrape.
    pub idle_timeout: Duration,
    /// How long the kernel holds a new connection that has sent nothing before handing it to
    /// the server (`platform::defer_accept`; Linux only); zero hands every one over at once.
    pub defer_accept: Duration,
}

impl Bounds {
    /// 64 connections: a few scrapers need a few; with 8 KiB heads the worst a full house of
    /// hostile clients can make damon hold is 512 KiB of request bytes.
    pub const DEFAULT: Bounds = Bounds {
        max_connections: 64,
        head_timeout: Duration::from_secs(10),
        write_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(300),
        defer_accept: Duration::from_secs(10),
    };
}

/// Bytes read from a socket at a time.
const READ_CHUNK_BYTES: usize = 4096;
/// A request body up to this size is read and dropped, and the connection kept; after a
/// larger one, or one of unknown length, the connection is closed after the answer.
const MAX_DISCARDED_BODY_BYTES: u64 = 64 * 1024;
/// After a last answer, the sending side is shut and what the client still sends is read and
/// dropped for this long: closing a socket with unread bytes resets the connection, which
/// can destroy the answer before the client has read it.
const LINGER: Duration = Duration::from_secs(2);
/// Connections accepted per wake-up before the others get their turn.
const ACCEPTS_PER_WAKEUP: usize = 64;
/// The eviction rank of a connection that has not completed a request (idle, slowloris, or
/// still sending a body): given up first after those closing.
const NO_REQUEST_YET: u8 = 1;
/// Connections the kernel may queue before damon accepts them (see `widen_backlog`).
const BACKLOG: usize = 1024;
/// How long accepting waits when it fails for want of descriptors or memory and no
/// connection can make room; without a pause the listener stays readable and the loop spins.
const ACCEPT_PAUSE: Duration = Duration::from_secs(1);
/// The most often a kind of warning is logged: under attack, a line a minute.
const WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// What the server did, for the damon_http_* families. Atomics: written by the server's
/// thread, read wherever the exposition is rendered.
#[derive(Debug, Default)]
pub struct HttpCounters {
    accepted: AtomicU64,
    requests: AtomicU64,
    dropped_at_limit: AtomicU64,
    timed_out: AtomicU64,
    open: AtomicU64,
}

fn count(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl HttpCounters {
    pub fn families(&self) -> Vec<Family> {
        let get = |counter: &AtomicU64| Some(counter.load(Ordering::Relaxed) as f64);
        vec![
            Family::single(
                "damon_http_connections_accepted_total",
                Kind::Counter,
                "Connections accepted by damon's metrics endpoint.",
                get(&self.accepted),
            ),
            Family::new(
                "damon_http_connections_dropped_total",
                Kind::Counter,
                "Connections of the metrics endpoint closed by damon: at its connection limit, to make room for a new one (limit), or at a deadline (timeout).",
            )
            .with(vec![("reason", "limit".to_string())], self.dropped_at_limit.load(Ordering::Relaxed) as f64)
            .with(vec![("reason", "timeout".to_string())], self.timed_out.load(Ordering::Relaxed) as f64),
            Family::single(
                "damon_http_requests_total",
                Kind::Counter,
                "Requests answered by the metrics endpoint, whatever the status.",
                get(&self.requests),
            ),
            Family::single(
                "damon_http_connections",
                Kind::Gauge,
                "Connections the metrics endpoint holds now.",
                get(&self.open),
            ),
        ]
    }
}

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

/// Binds `addr` and serves `render()` at `endpoint` from a thread of its own.
pub fn start(
    addr: &ListenAddr,
    endpoint: String,
    render: Render,
    counters: Arc<HttpCounters>,
) -> io::Result<SocketAddr> {
    let mut bounds = Bounds::DEFAULT;
    // Clients get at most half the file descriptors left (Linux' RLIMIT_NOFILE; Windows has
    // no such limit): the supervisor needs some to end the run (cgroup files, pidfds).
    let own = platform::own_process();
    if let (Some(max), Some(open)) = (own.max_fds, own.open_fds) {
        let half_left = (max.saturating_sub(open) / 2).max(1);
        if half_left < bounds.max_connections as u64 {
            bounds.max_connections = half_left as usize;
            tracing::info!(
                max_connections = bounds.max_connections,
                max_fds = max,
                "metrics: fewer connections than usual, for want of file descriptors"
            );
        }
    }
    start_with(addr, endpoint, render, counters, bounds)
}

fn start_with(
    addr: &ListenAddr,
    endpoint: String,
    render: Render,
    counters: Arc<HttpCounters>,
    bounds: Bounds,
) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(resolve(addr)?)?;
    listener.set_nonblocking(true)?;
    if let Err(e) = widen_backlog(&listener, BACKLOG) {
        tracing::debug!(error = %e, "metrics: the listen backlog stays std's");
    }
    if bounds.defer_accept > Duration::ZERO {
        if let Err(e) = defer_accept(&listener, bounds.defer_accept) {
            tracing::debug!(error = %e, "metrics: connections are accepted before their first bytes");
        }
    }
    let local = listener.local_addr()?;
    std::thread::Builder::new()
        .name("metrics".to_string())
        .spawn(move || Server::new(listener, endpoint, render, counters, bounds).run())?;
    Ok(local)
}

struct Server {
    listener: TcpListener,
    connections: Vec<Connection>,
    poller: SocketPoller,
    shared: Shared,
    accepted: u64,
    /// Accepting waits until then (out of descriptors or memory).
    accept_paused_until: Option<Instant>,
    limit_warned: Option<Instant>,
    accept_warned: Option<Instant>,
}

/// What every connection's work needs: how to answer, and a buffer to read into.
struct Shared {
    endpoint: String,
    render: Render,
    counters: Arc<HttpCounters>,
    bounds: Bounds,
    /// The last exposition rendered and its gzip (made when first asked for), shared by every
    /// answer made of them while the text stays the same.
    plain: Option<Rc<[u8]>>,
    gzipped: Option<Rc<[u8]>>,
    scratch: Box<[u8]>,
}

struct Connection {
    stream: TcpStream,
    /// Accept order, to break ties.
    id: u64,
    accepted: Instant,
    state: State,
    /// Bytes of requests received and not answered yet.
    received: Vec<u8>,
    /// `received` holds no whole request head: wait for more bytes.
    incomplete: bool,
    /// Bytes of the last request's body still to be read and dropped.
    discard: u64,
    /// Requests answered on this connection.
    answered: u64,
    /// When the last answer was out.
    last_answer: Instant,
    /// When the current state must be over; the connection is closed then.
    deadline: Instant,
    /// The client has shut its sending side: answer what has come, then close.
    peer_done: bool,
}

enum State {
    /// Waiting for a request head: the first, or the next on a kept connection.
    Reading,
    /// Sending an answer; nothing more is read until it is out.
    Writing(Answer),
    /// The last answer is out and the sending side shut; dropping what the client still sends.
    Closing,
}

struct Answer {
    head: Vec<u8>,
    body: Option<Rc<[u8]>>,
    written: usize,
    /// Close the connection once it is out.
    last: bool,
}

impl Server {
    fn new(
        listener: TcpListener,
        endpoint: String,
        render: Render,
        counters: Arc<HttpCounters>,
        bounds: Bounds,
    ) -> Self {
        Server {
            listener,
            connections: Vec::new(),
            poller: SocketPoller::new(),
            shared: Shared {
                endpoint,
                render,
                counters,
                bounds,
                plain: None,
                gzipped: None,
                scratch: vec![0; READ_CHUNK_BYTES].into_boxed_slice(),
            },
            accepted: 0,
            accept_paused_until: None,
            limit_warned: None,
            accept_warned: None,
        }
    }

    fn run(mut self) {
        loop {
            let now = Instant::now();
            self.drop_expired(now);
            // A connection held beyond the limit (see `accept`) goes now that the loop looked at it.
            self.keep_at_most(self.shared.bounds.max_connections, now);
            self.shared.counters.open.store(self.connections.len() as u64, Ordering::Relaxed);
            let accepting = self.accept_paused_until.map_or(true, |until| now >= until);
            if accepting {
                self.accept_paused_until = None;
            }
            self.poller.clear();
            if accepting {
                self.poller.add(&self.listener, true, false);
            }
            for connection in &self.connections {
                let (read, write) = connection.interest();
                self.poller.add(&connection.stream, read, write);
            }
            // The earliest deadline is the only timeout; none while nobody is connected.
            let next = self.connections.iter().map(|c| c.deadline).chain(self.accept_paused_until).min();
            if let Err(e) = self.poller.wait(next.map(|deadline| deadline.saturating_duration_since(now))) {
                tracing::error!(error = %e, "metrics: waiting for clients failed; trying again in a second");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
            let now = Instant::now();
            let mut index = accepting as usize;
            let (poller, shared) = (&self.poller, &mut self.shared);
            self.connections.retain_mut(|connection| {
                let ready = poller.ready(index);
                index += 1;
                ready == SocketReady::default() || connection.progress(shared, now)
            });
            if accepting && self.poller.ready(0) != SocketReady::default() {
                self.accept(now);
            }
        }
    }

    fn drop_expired(&mut self, now: Instant) {
        let counters = &self.shared.counters;
        self.connections.retain(|connection| {
            if connection.deadline > now {
                return true;
            }
            if !matches!(connection.state, State::Closing) {
                count(&counters.timed_out);
            }
            false
        });
    }

    fn accept(&mut self, now: Instant) {
        let mut just_made_room = false;
        for _ in 0..ACCEPTS_PER_WAKEUP {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    just_made_room = false;
                    // At the limit the new connection takes the place of the least useful. If
                    // only connections of this burst could go, it is held beyond the limit for
                    // now (one more at most) and accepting waits for the next wake-up.
                    let limit = self.shared.bounds.max_connections;
                    if self.connections.len() >= limit {
                        self.warn_at_limit(now);
                    }
                    let room = self.keep_at_most(limit.saturating_sub(1), now);
                    self.admit(stream, now);
                    if !room {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
                    ) => {}
                Err(e) => {
                    // Out of descriptors (EMFILE, WSAEMFILE) or memory: give up a connection
                    // and try again; if there is none, or that did not help, pause accepting.
                    if !just_made_room {
                        match self.make_room(now) {
                            Room::Made => {
                                just_made_room = true;
                                continue;
                            }
                            Room::NotYet => return,
                            Room::None => {}
                        }
                    }
                    self.accept_paused_until = Some(now + ACCEPT_PAUSE);
                    if self.accept_warned.map_or(true, |at| now.duration_since(at) >= WARNING_INTERVAL) {
                        self.accept_warned = Some(now);
                        tracing::warn!(error = %e, "metrics: cannot accept connections; pausing for a second");
                    }
                    return;
                }
            }
        }
    }

    /// Gives up the least useful connections until at most `most` are held; false if only
    /// connections of this burst of accepts were left to give up (see `make_room`).
    fn keep_at_most(&mut self, most: usize, now: Instant) -> bool {
        while self.connections.len() > most {
            if !matches!(self.make_room(now), Room::Made) {
                return false;
            }
        }
        true
    }

    fn warn_at_limit(&mut self, now: Instant) {
        if self.limit_warned.map_or(true, |at| now.duration_since(at) >= WARNING_INTERVAL) {
            self.limit_warned = Some(now);
            tracing::warn!(
                limit = self.shared.bounds.max_connections,
                dropped_so_far = self.shared.counters.dropped_at_limit.load(Ordering::Relaxed),
                "metrics: connection limit reached; the oldest idle connections make room for new ones"
            );
        }
    }

    fn admit(&mut self, stream: TcpStream, now: Instant) {
        // A blocking socket would stall the loop: such a connection is dropped.
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        count(&self.shared.counters.accepted);
        self.accepted += 1;
        self.shared.counters.open.store(self.connections.len() as u64 + 1, Ordering::Relaxed);
        let mut connection = Connection::new(stream, self.accepted, now, &self.shared.bounds);
        // The request often comes with the connection: answered at once, the connection is no
        // longer one that never completed a request, the kind given up first at the limit.
        if connection.progress(&mut self.shared, now) {
            self.connections.push(connection);
        }
    }

    /// Closes the connection that matters least to make room.
    ///
    /// A connection that has not completed a request is given up only once the loop has
    /// looked at it after its accept (`now` is the time of the current burst of accepts), and
    /// is read once more first: a scrape accepted just before a burst of hostile connections
    /// may have sent its request meanwhile, and it is answered rather than given up for a
    /// newer connection. Without that, under a flood, a scrape could lose its place before its
    /// request arrives.
    fn make_room(&mut self, now: Instant) -> Room {
        loop {
            let victim = self.connections.iter().enumerate().min_by_key(|(_, c)| c.eviction_rank()).map(|(i, _)| i);
            let i = match victim {
                Some(i) => i,
                None => return Room::None,
            };
            let connection = &mut self.connections[i];
            if connection.eviction_rank().0 == NO_REQUEST_YET {
                if connection.accepted >= now {
                    return Room::NotYet;
                }
                if !connection.progress(&mut self.shared, now) {
                    // Over of itself (the client left): that made the room.
                    self.connections.swap_remove(i);
                    return Room::Made;
                }
                // A request read and under way: the connection ranks higher now; choose again.
                // Each pass either returns or takes one connection out of this rank.
                if connection.eviction_rank().0 != NO_REQUEST_YET {
                    continue;
                }
            }
            self.connections.swap_remove(i);
            count(&self.shared.counters.dropped_at_limit);
            return Room::Made;
        }
    }
}

/// What making room for a new connection came to.
enum Room {
    Made,
    /// Only connections accepted in this burst could go: accept again after the loop has read them.
    NotYet,
    /// No connection to give up.
    None,
}

impl Shared {
    /// The answer to a request (`None`: a refused head), its head and body ready to write.
    fn answer(
        &mut self,
        status: Status,
        request: Option<&Request>,
        connection: ConnectionHeader,
        last: bool,
    ) -> Answer {
        let head_only = request.map_or(false, |r| r.method == Method::Head);
        if status == Status::Ok {
            let (body, gzipped) = self.exposition(request.map_or(false, |r| r.gzip));
            let head = http::response_head(status, body.len(), gzipped, connection);
            Answer { head, body: if head_only { None } else { Some(body) }, written: 0, last }
        } else {
            let text = http::error_body(status, &self.endpoint);
            let mut head = http::response_head(status, text.len(), false, connection);
            if !head_only {
                head.extend_from_slice(text.as_bytes());
            }
            Answer { head, body: None, written: 0, last }
        }
    }

    /// The exposition as it is now, gzipped when asked for (and possible).
    fn exposition(&mut self, gzip: bool) -> (Rc<[u8]>, bool) {
        let text = (self.render)();
        let plain = match &self.plain {
            Some(plain) if **plain == *text.as_bytes() => Rc::clone(plain),
            _ => {
                let plain: Rc<[u8]> = Rc::from(text.into_bytes());
                self.plain = Some(Rc::clone(&plain));
                self.gzipped = None;
                plain
            }
        };
        if !gzip {
            return (plain, false);
        }
        if self.gzipped.is_none() {
            self.gzipped = gzip_of(&plain).map(Rc::from);
        }
        match &self.gzipped {
            Some(gzipped) => (Rc::clone(gzipped), true),
            None => (plain, false),
        }
    }
}

fn gzip_of(data: &[u8]) -> Option<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(data.len() / 4 + 64), Compression::default());
    encoder.write_all(data).ok()?;
    encoder.finish().ok()
}

impl Connection {
    fn new(stream: TcpStream, id: u64, now: Instant, bounds: &Bounds) -> Connection {
        Connection {
            stream,
            id,
            accepted: now,
            state: State::Reading,
            received: Vec::new(),
            incomplete: false,
            discard: 0,
            answered: 0,
            last_answer: now,
            deadline: now + bounds.head_timeout,
            peer_done: false,
        }
    }

    /// What to wait for: bytes of a request, room for the answer, or the client's end.
    fn interest(&self) -> (bool, bool) {
        match self.state {
            State::Writing(_) => (false, true),
            State::Closing => (true, false),
            // A whole request already received (pipelined) is answered at the next wake-up,
            // which the socket's room for writing brings at once.
            State::Reading => (!self.peer_done, !self.received.is_empty() && !self.incomplete),
        }
    }

    /// The order in which connections make room for a new one, least useful first: closing;
    /// never completed a request (idle, slowloris) or still sending a body, oldest first; answers not taken (a
    /// client that does not read), oldest first; kept between requests, least recently used
    /// first. A new scrape is the newest connection, and its request comes with it.
    fn eviction_rank(&self) -> (u8, Instant, u64) {
        match self.state {
            State::Closing => (0, self.deadline, self.id),
            State::Reading if self.answered == 0 || self.discard > 0 => (NO_REQUEST_YET, self.accepted, self.id),
            State::Writing(_) => (2, self.deadline, self.id),
            State::Reading if !self.received.is_empty() && !self.incomplete => (2, self.deadline, self.id),
            State::Reading => (3, self.last_answer, self.id),
        }
    }

    /// Moves the connection on as far as its socket allows without blocking, reading at most
    /// once and answering at most one request, so that no client holds the loop; false when
    /// the connection is over.
    fn progress(&mut self, shared: &mut Shared, now: Instant) -> bool {
        let (mut read, mut answered) = (false, false);
        loop {
            match &mut self.state {
                State::Writing(answer) => match answer.write_to(&mut self.stream) {
                    Err(_) => return false,
                    Ok(false) => return true,
                    Ok(true) => self.answer_sent(shared, now),
                },
                State::Closing => return self.drain(shared),
                State::Reading if answered => return true,
                State::Reading => {
                    if self.received.is_empty() || self.incomplete {
                        if read {
                            return true;
                        }
                        read = true;
                        if !self.read(shared, now) {
                            return false;
                        }
                    }
                    if !self.start_answer(shared, now) {
                        return !self.peer_done;
                    }
                    answered = true;
                }
            }
        }
    }

    /// Reads what the socket has, within the head's size limit; false if the connection failed.
    fn read(&mut self, shared: &mut Shared, now: Instant) -> bool {
        // `received` holds less than a whole head here, so less than MAX_HEAD_BYTES.
        let room = READ_CHUNK_BYTES.min(MAX_HEAD_BYTES.saturating_sub(self.received.len()).max(1));
        let n = match self.stream.read(&mut shared.scratch[..room]) {
            Ok(0) => {
                self.peer_done = true;
                return true;
            }
            Ok(n) => n,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => return true,
            Err(_) => return false,
        };
        let mut data = &shared.scratch[..n];
        let skipped = self.discard.min(n as u64) as usize;
        self.discard -= skipped as u64;
        data = &data[skipped..];
        if !data.is_empty() {
            if self.received.is_empty() && self.answered > 0 {
                // A new request on a kept connection: its head has head_timeout to arrive.
                self.deadline = now + shared.bounds.head_timeout;
            }
            self.received.extend_from_slice(data);
            self.incomplete = false;
        }
        true
    }

    /// Answers the request at the start of `received`, if it is whole; false if there is none.
    fn start_answer(&mut self, shared: &mut Shared, now: Instant) -> bool {
        let (status, request) = match http::parse(&self.received, &shared.endpoint) {
            Parsed::Incomplete => {
                self.incomplete = true;
                return false;
            }
            Parsed::Refused(status) => {
                self.received = Vec::new();
                (status, None)
            }
            Parsed::Request(request, used) => {
                self.received.drain(..used);
                (http::status_for(&request), Some(request))
            }
        };
        let keep = match &request {
            Some(request) if request.keep_alive && !self.peer_done => match request.body {
                Body::None => true,
                Body::Length(length) if length <= MAX_DISCARDED_BODY_BYTES => {
                    let here = (length.min(self.received.len() as u64)) as usize;
                    self.received.drain(..here);
                    self.discard = length - here as u64;
                    true
                }
                _ => false,
            },
            _ => false,
        };
        if self.received.is_empty() {
            self.received = Vec::new();
        }
        let connection = match &request {
            _ if !keep => ConnectionHeader::Close,
            Some(request) if request.http10 => ConnectionHeader::KeepAlive,
            _ => ConnectionHeader::None,
        };
        if self.answered == 0 {
            // Answers are written whole; Nagle's algorithm would only hold their last segment
            // back, until the client's delayed acknowledgement. Set at the first request, not
            // at the accept: most hostile connections never make one.
            let _ = self.stream.set_nodelay(true);
        }
        count(&shared.counters.requests);
        self.answered += 1;
        self.state = State::Writing(shared.answer(status, request.as_ref(), connection, !keep));
        self.deadline = now + shared.bounds.write_timeout;
        true
    }

    fn answer_sent(&mut self, shared: &Shared, now: Instant) {
        let last = matches!(&self.state, State::Writing(answer) if answer.last);
        self.last_answer = now;
        if last {
            let _ = self.stream.shutdown(Shutdown::Write);
            self.state = State::Closing;
            self.deadline = now + LINGER;
            self.received = Vec::new();
        } else {
            self.state = State::Reading;
            // Requests already received are answered as the client takes the answers: the
            // time to take them is the write timeout's, whether they are whole or not. The
            // rest of a body has as long to come as a head.
            let timeout = if !self.received.is_empty() {
                shared.bounds.write_timeout
            } else if self.discard > 0 {
                shared.bounds.head_timeout
            } else {
                shared.bounds.idle_timeout
            };
            self.deadline = now + timeout;
        }
    }

    /// Reads and drops what a closing client still sends; false once it has closed too.
    fn drain(&mut self, shared: &mut Shared) -> bool {
        match self.stream.read(&mut shared.scratch) {
            Ok(0) => false,
            Ok(_) => true,
            Err(e) => matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted),
        }
    }
}

impl Answer {
    /// Writes as much as the socket takes; true once all of it is out.
    fn write_to(&mut self, stream: &mut TcpStream) -> io::Result<bool> {
        loop {
            let head = self.head.get(self.written..).unwrap_or(&[]);
            let body_start = self.written.saturating_sub(self.head.len());
            let body = self.body.as_deref().map_or(&[][..], |body| &body[body_start..]);
            if head.is_empty() && body.is_empty() {
                return Ok(true);
            }
            match stream.write_vectored(&[IoSlice::new(head), IoSlice::new(body)]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    const TEXT: &str = "# TYPE up gauge\nup 1\n";

    /// A server on a free port with `bounds`, serving `text`; counts its renderings. Most
    /// tests look at connections that send nothing for a while, which a deferred accept would
    /// keep from the server: they get none unless they ask with `serve_deferred`.
    fn serve(bounds: Bounds, text: String) -> (SocketAddr, Arc<HttpCounters>, Arc<AtomicUsize>) {
        serve_deferred(Bounds { defer_accept: Duration::ZERO, ..bounds }, text)
    }

    fn serve_deferred(bounds: Bounds, text: String) -> (SocketAddr, Arc<HttpCounters>, Arc<AtomicUsize>) {
        let renders = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&renders);
        let counters = Arc::new(HttpCounters::default());
        let any_port = ListenAddr::Ip("127.0.0.1:0".parse().unwrap());
        let render: Render = Arc::new(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            text.clone()
        });
        let addr = start_with(&any_port, "/metrics".to_string(), render, Arc::clone(&counters), bounds).unwrap();
        (addr, counters, renders)
    }

    fn connect(addr: SocketAddr) -> TcpStream {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream
    }

    struct Reply {
        status: u16,
        head: String,
        body: Vec<u8>,
    }

    impl Reply {
        fn header(&self, name: &str) -> Option<&str> {
            self.head.lines().skip(1).find_map(|line| {
                let (n, v) = line.split_once(':')?;
                if n.eq_ignore_ascii_case(name) {
                    Some(v.trim())
                } else {
                    None
                }
            })
        }
    }

    /// Reads one answer; `head_only` for a HEAD request (no body follows).
    fn reply(stream: &mut TcpStream, head_only: bool) -> Reply {
        let mut head = Vec::new();
        let mut byte = [0u8];
        while !head.ends_with(b"\r\n\r\n") {
            let n = stream.read(&mut byte).unwrap();
            assert_eq!(n, 1, "closed within an answer's head: {:?}", String::from_utf8_lossy(&head));
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        let status = head[9..12].parse().unwrap();
        let mut reply = Reply { status, head, body: Vec::new() };
        let length: usize = reply.header("Content-Length").expect("Content-Length").parse().unwrap();
        if !head_only {
            reply.body = vec![0; length];
            stream.read_exact(&mut reply.body).unwrap();
        }
        reply
    }

    fn ask(stream: &mut TcpStream, request: &str) -> Reply {
        stream.write_all(request.as_bytes()).unwrap();
        reply(stream, request.starts_with("HEAD"))
    }

    /// Whether the server closes the connection (within 10 s), reading what comes before.
    fn closed_by_server(stream: &mut TcpStream) -> bool {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) => return matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted),
            }
        }
    }

    /// Whether the connection is still open: no end of stream within a short read.
    fn still_open(stream: &mut TcpStream) -> bool {
        stream.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let mut buffer = [0u8; 16];
        let open = matches!(stream.read(&mut buffer), Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut));
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        open
    }

    fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !condition() {
            assert!(Instant::now() < deadline, "timed out waiting for {}", what);
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::SeqCst)
    }

    #[test]
    fn a_kept_connection_serves_get_and_head_one_after_another() {
        let (addr, counters, _) = serve(Bounds::DEFAULT, TEXT.to_string());
        let mut stream = connect(addr);
        let first = ask(&mut stream, "GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!((first.status, first.body.as_slice()), (200, TEXT.as_bytes()), "{}", first.head);
        assert_eq!(first.header("Content-Type"), Some("text/plain; version=0.0.4; charset=utf-8"));
        assert_eq!(first.header("Connection"), None);
        let head = ask(&mut stream, "HEAD /metrics HTTP/1.1\r\n\r\n");
        assert_eq!((head.status, head.header("Content-Length")), (200, Some("21")));
        // Had HEAD sent a body, this answer would start inside it.
        let second = ask(&mut stream, "GET /metrics HTTP/1.1\r\n\r\n");
        assert_eq!(second.body, TEXT.as_bytes());
        assert_eq!((get(&counters.accepted), get(&counters.requests)), (1, 3));
    }

    #[test]
    fn gzip_when_the_client_accepts_it() {
        let text = TEXT.repeat(100);
        let (addr, _, renders) = serve(Bounds::DEFAULT, text.clone());
        let mut stream = connect(addr);
        let zipped = ask(&mut stream, "GET /metrics HTTP/1.1\r\nAccept-Encoding: gzip\r\n\r\n");
        assert_eq!(zipped.header("Content-Encoding"), Some("gzip"), "{}", zipped.head);
        assert_eq!(zipped.header("Vary"), Some("Accept-Encoding"));
        assert!(zipped.body.len() < text.len() / 10, "{} bytes", zipped.body.len());
        let mut unzipped = String::new();
        flate2::read::GzDecoder::new(zipped.body.as_slice()).read_to_string(&mut unzipped).unwrap();
        assert_eq!(unzipped, text);
        let head = ask(&mut stream, "HEAD /metrics HTTP/1.1\r\nAccept-Encoding: gzip\r\n\r\n");
        assert_eq!(head.header("Content-Length"), Some(zipped.body.len().to_string().as_str()));
        let plain = ask(&mut stream, "GET /metrics HTTP/1.1\r\nAccept-Encoding: gzip;q=0, br\r\n\r\n");
        assert_eq!((plain.header("Content-Encoding"), plain.body.as_slice()), (None, text.as_bytes()));
        assert_eq!(renders.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn connection_close_and_http_1_0_close_after_the_answer() {
        let (addr, _, _) = serve(Bounds::DEFAULT, TEXT.to_string());
        for request in ["GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n", "GET /metrics HTTP/1.0\r\n\r\n"] {
            let mut stream = connect(addr);
            let reply = ask(&mut stream, request);
            assert_eq!((reply.status, reply.header("Connection")), (200, Some("close")), "{}", request);
            assert!(closed_by_server(&mut stream), "{}", request);
        }
        let mut stream = connect(addr);
        for _ in 0..2 {
            let reply = ask(&mut stream, "GET /metrics HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
            assert_eq!((reply.status, reply.header("Connection")), (200, Some("keep-alive")));
        }
    }

    #[test]
    fn errors_404_and_405_keep_the_connection_400_431_and_505_close_it() {
        let (addr, _, renders) = serve(Bounds::DEFAULT, TEXT.to_string());
        let mut stream = connect(addr);
        let not_found = ask(&mut stream, "GET / HTTP/1.1\r\n\r\n");
        assert_eq!(not_found.status, 404);
        assert_eq!(not_found.body, b"not found; metrics are at /metrics\n");
        let not_allowed = ask(&mut stream, "POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!((not_allowed.status, not_allowed.header("Allow")), (405, Some("GET, HEAD")));
        // The body was read and dropped: the next request is understood.
        assert_eq!(ask(&mut stream, "GET /metrics HTTP/1.1\r\n\r\n").status, 200);
        assert_eq!(renders.load(Ordering::SeqCst), 1, "only the scrape renders");

        let mut long = "GET /metrics HTTP/1.1\r\n".to_string();
        while long.len() <= MAX_HEAD_BYTES {
            long.push_str("X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        for (request, status) in [
            ("GET /metrics\r\n\r\n", 400),
            ("\x16\x03\x01\x00\x25\x01\x00\x00\x21\x03\x03\r\n", 400),
            (long.as_str(), 431),
            ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
            ("POST /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 405),
        ] {
            let mut stream = connect(addr);
            let reply = ask(&mut stream, request);
            assert_eq!((reply.status, reply.header("Connection")), (status, Some("close")), "{:?}", request);
            assert!(closed_by_server(&mut stream), "{:?}", request);
        }
    }

    #[test]
    fn pipelined_requests_are_answered_in_order() {
        let (addr, _, _) = serve(Bounds::DEFAULT, TEXT.to_string());
        let mut stream = connect(addr);
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\n\r\nGET /other HTTP/1.1\r\n\r\nHEAD /metrics HTTP/1.1\r\n\r\nGET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap();
        assert_eq!(reply(&mut stream, false).status, 200);
        assert_eq!(reply(&mut stream, false).status, 404);
        assert_eq!(reply(&mut stream, true).body, b"");
        let last = reply(&mut stream, false);
        assert_eq!((last.body.as_slice(), last.header("Connection")), (TEXT.as_bytes(), Some("close")));
        assert!(closed_by_server(&mut stream));
    }

    #[test]
    fn a_client_that_shuts_its_side_after_the_request_gets_the_answer() {
        let (addr, _, _) = serve(Bounds::DEFAULT, TEXT.to_string());
        let mut stream = connect(addr);
        stream.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        assert_eq!(reply(&mut stream, false).body, TEXT.as_bytes());
        assert!(closed_by_server(&mut stream));
    }

    #[test]
    fn at_the_limit_the_oldest_idle_connection_makes_room_and_kept_ones_stay() {
        let bounds = Bounds { max_connections: 4, ..Bounds::DEFAULT };
        let (addr, counters, renders) = serve(bounds, TEXT.to_string());
        let mut kept = connect(addr);
        assert_eq!(ask(&mut kept, "GET /metrics HTTP/1.1\r\n\r\n").status, 200);
        let mut idle: Vec<TcpStream> = Vec::new();
        for _ in 0..3 {
            idle.push(connect(addr));
            wait_for("the idle connection to be accepted", || get(&counters.accepted) == idle.len() as u64 + 1);
        }
        // Full: each new scrape is answered, and the oldest connection that never sent a
        // request is the one closed, never a kept one.
        let mut scrapes = Vec::new();
        for round in 0..3 {
            let mut scrape = connect(addr);
            assert_eq!(ask(&mut scrape, "GET /metrics HTTP/1.1\r\n\r\n").status, 200);
            assert!(closed_by_server(&mut idle[round]), "idle connection {} still open", round);
            for later in &mut idle[round + 1..] {
                assert!(still_open(later));
            }
            scrapes.push(scrape);
        }
        assert_eq!(get(&counters.dropped_at_limit), 3, "{:?}", counters);
        // Then the least recently used kept connection.
        let mut scrape = connect(addr);
        assert_eq!(ask(&mut scrape, "GET /metrics HTTP/1.1\r\n\r\n").status, 200);
        assert!(closed_by_server(&mut kept));
        for scrape in &mut scrapes {
            assert_eq!(ask(scrape, "GET /metrics HTTP/1.1\r\n\r\n").status, 200);
        }
        // Idle connections never made the server render.
        assert_eq!(renders.load(Ordering::SeqCst), 8);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_connection_that_sends_nothing_never_reaches_the_server_and_takes_no_place() {
        let bounds = Bounds { max_connections: 2, defer_accept: Duration::from_secs(3), ..Bounds::DEFAULT };
        let (addr, counters, _) = serve_deferred(bounds, TEXT.to_string());
        let silent: Vec<TcpStream> = (0..4).map(|_| connect(addr)).collect();
        // More silent connections than the server holds, and not one of them is handed over,
        // so none is pushed out or pushes a scrape out: each scrape comes with its request.
        for _ in 0..3 {
            let mut scrape = connect(addr);
            assert_eq!(ask(&mut scrape, "GET /metrics HTTP/1.1\r\n\r\n").status, 200);
        }
        assert_eq!(get(&counters.accepted), 3, "{:?}", counters);
        assert_eq!(get(&counters.dropped_at_limit), 0, "{:?}", counters);
        // A silent connection that speaks at last is handed over and answered.
        let mut late = silent.into_iter().next().unwrap();
        assert_eq!(ask(&mut late, "GET /metrics HTTP/1.1\r\n\r\n").status, 200);
    }

    #[test]
    fn a_scrape_whose_request_comes_during_a_burst_of_accepts_is_answered_not_given_up() {
        // The server's steps are taken by hand, so that the request arrives exactly between
        // two accepts of one burst, as it can under a flood.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let counters = Arc::new(HttpCounters::default());
        let render: Render = Arc::new(|| TEXT.to_string());
        let bounds = Bounds { max_connections: 2, ..Bounds::DEFAULT };
        let mut server = Server::new(listener, "/metrics".to_string(), render, Arc::clone(&counters), bounds);
        let mut scrape = connect(addr);
        server.accept(Instant::now());
        assert_eq!(server.connections.len(), 1, "the scrape's connection accepted");
        scrape.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
        let mut idle: Vec<TcpStream> = (0..2).map(|_| connect(addr)).collect();
        // The next burst: the first idle connection fills the server; for the second, the
        // oldest connection that has not completed a request is the scrape, which is read once
        // more and answered. The first idle one, accepted in this same burst, is not given up
        // before the loop has looked at it: the second is held beyond the limit for now.
        server.accept(Instant::now());
        assert_eq!(reply(&mut scrape, false).status, 200);
        assert_eq!(get(&counters.dropped_at_limit), 0, "{:?}", counters);
        assert_eq!(get(&counters.accepted), 3, "{:?}", counters);
        assert_eq!(server.connections.len(), 3);
        // At the loop's next turn, the first idle connection makes room.
        server.keep_at_most(2, Instant::now());
        assert_eq!(get(&counters.dropped_at_limit), 1, "{:?}", counters);
        assert_eq!(server.connections.len(), 2);
        assert!(closed_by_server(&mut idle[0]));
        assert!(still_open(&mut idle[1]));
    }

    #[test]
    fn slow_and_idle_clients_are_closed_at_their_deadline() {
        let bounds = Bounds {
            head_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_millis(600),
            ..Bounds::DEFAULT
        };
        let (addr, counters, renders) = serve(bounds, TEXT.to_string());
        let mut silent = connect(addr);
        let mut slow = connect(addr);
        let mut slow_body = connect(addr);
        assert_eq!(ask(&mut slow_body, "POST /metrics HTTP/1.1\r\nContent-Length: 1000\r\n\r\nab").status, 405);
        let mut kept = connect(addr);
        assert_eq!(ask(&mut kept, "GET /metrics HTTP/1.1\r\n\r\n").status, 200);
        // A slowloris client: a byte every 50 ms, never the end of the head.
        let writer = {
            let mut slow = slow.try_clone().unwrap();
            std::thread::spawn(move || {
                for byte in b"GET /metrics HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                    .iter()
                    .cycle()
                    .take(400)
                {
                    if slow.write_all(&[*byte]).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        assert!(closed_by_server(&mut silent));
        assert!(closed_by_server(&mut slow));
        assert!(closed_by_server(&mut slow_body));
        assert!(closed_by_server(&mut kept));
        writer.join().unwrap();
        assert_eq!(get(&counters.timed_out), 4);
        assert_eq!(renders.load(Ordering::SeqCst), 1);
        wait_for("no connection left", || get(&counters.open) == 0);
    }

    #[test]
    fn a_client_that_never_reads_holds_no_one_up() {
        // Large answers, so that the sockets' buffers fill and the server has to wait.
        let text = "x".repeat(512 * 1024);
        let bounds = Bounds { write_timeout: Duration::from_millis(500), ..Bounds::DEFAULT };
        let (addr, counters, _) = serve(bounds, text.clone());
        let mut never_reads = connect(addr);
        never_reads.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        never_reads.write_all("GET /metrics HTTP/1.1\r\n\r\n".repeat(100).as_bytes()).unwrap();
        for _ in 0..5 {
            let mut scrape = connect(addr);
            let reply = ask(&mut scrape, "GET /metrics HTTP/1.1\r\n\r\n");
            assert_eq!((reply.status, reply.body.len()), (200, text.len()));
        }
        wait_for("the client that never reads to be dropped", || get(&counters.timed_out) >= 1);
        assert!(closed_by_server(&mut never_reads));
    }

    // A name that does not resolve: tests/bad_input.rs and tests/metrics.rs, where damon looks
    // it up in a network namespace of its own, so that the lookup reaches no resolver off this
    // machine.
}
