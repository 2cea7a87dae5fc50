//! Hostile clients of damon's metrics endpoint, shared by tests/metrics_flood.rs (damon on
//! Linux) and tests/windows_wine.rs (damon.exe under Wine): idle connections, slowloris
//! clients (a byte of a request head a second, never its end), a client that never reads its
//! answers, and scrapes timed while they hold on. A hostile client that damon disconnects
//! connects again at its next round, as real ones do, so the flood never thins out.
//!
//! Latencies are printed, never asserted (these machines are shared and noisy); what is
//! asserted is that every scrape is answered, and damon's memory, threads and sockets.
#![allow(dead_code)]

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A scrape must be answered within this (Prometheus' default scrape timeout is 10 s).
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Hostile clients act once a round.
const ROUND: Duration = Duration::from_secs(1);
/// damon's connection limit (src/metrics/server.rs, Bounds::DEFAULT).
pub const DAMON_MAX_CONNECTIONS: usize = 64;
/// The most damon's resident memory may grow under a flood.
pub const RSS_MARGIN_KIB: u64 = 1024;

/// Which hostile clients a flood has.
#[derive(Debug, Clone, Copy)]
pub struct Hostiles {
    pub name: &'static str,
    pub idle: usize,
    pub slowloris: usize,
    pub never_reads: bool,
}

pub const IDLE: Hostiles = Hostiles { name: "1000 idle connections", idle: 1000, slowloris: 0, never_reads: false };
pub const SLOWLORIS: Hostiles =
    Hostiles { name: "1000 slowloris clients", idle: 0, slowloris: 1000, never_reads: false };
pub const NEVER_READS: Hostiles =
    Hostiles { name: "a client that never reads", idle: 0, slowloris: 0, never_reads: true };
pub const ALL: Hostiles = Hostiles { name: "all three at once", idle: 1000, slowloris: 1000, never_reads: true };

/// What the hostile clients did.
#[derive(Debug, Default)]
pub struct Counts {
    /// Connections made, reconnections included.
    pub connects: AtomicU64,
    pub connect_failures: AtomicU64,
    /// Connections damon closed under a hostile client (seen at its next round).
    pub closed_by_damon: AtomicU64,
    /// Of those, connections of idle clients.
    pub idle_closed_by_damon: AtomicU64,
    /// Header bytes the slowloris clients sent.
    pub slow_bytes: AtomicU64,
    /// Requests the client that never reads sent.
    pub unread_requests: AtomicU64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// The hostile clients, each kind on a thread of its own, until stopped.
pub struct Flood {
    stop: Arc<AtomicBool>,
    pub counts: Arc<Counts>,
    threads: Vec<JoinHandle<()>>,
}

impl Flood {
    /// Starts the clients; returns once every one of them has connected.
    pub fn start(addr: SocketAddr, hostiles: Hostiles) -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Counts::default());
        let (ready, connected) = mpsc::channel::<()>();
        let mut threads = Vec::new();
        let mut kinds = 0;
        let mut spawn = |kind: fn(SocketAddr, usize, &AtomicBool, &Counts, mpsc::Sender<()>), n: usize| {
            let (stop, counts, ready) = (Arc::clone(&stop), Arc::clone(&counts), ready.clone());
            threads.push(std::thread::spawn(move || kind(addr, n, &stop, &counts, ready)));
            kinds += 1;
        };
        if hostiles.idle > 0 {
            spawn(idle_clients, hostiles.idle);
        }
        if hostiles.slowloris > 0 {
            spawn(slowloris_clients, hostiles.slowloris);
        }
        if hostiles.never_reads {
            spawn(never_reading_client, 1);
        }
        for _ in 0..kinds {
            connected.recv_timeout(Duration::from_secs(120)).expect("the hostile clients to connect");
        }
        Flood { stop, counts, threads }
    }

    /// Waits until damon has had the idle clients' connections, and returns how long that
    /// took. On Linux the kernel holds a connection that sends nothing for a while before
    /// damon sees it (TCP_DEFER_ACCEPT, src/platform/linux/sockets.rs): the scrapes are made
    /// once the held connections have come through, not while the kernel keeps them away.
    /// Seen when damon first closes one of them; at once where accepts are not deferred.
    pub fn until_idle_clients_reach_damon(&self, hostiles: Hostiles) -> Option<Duration> {
        if hostiles.idle == 0 {
            return None;
        }
        let (started, patience) = (Instant::now(), Duration::from_secs(90));
        while self.counts.idle_closed_by_damon.load(Ordering::Relaxed) == 0 {
            assert!(started.elapsed() < patience, "damon never had the idle connections in {:?}", patience);
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(started.elapsed())
    }

    pub fn stop(self) -> Arc<Counts> {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads {
            thread.join().expect("a hostile client thread panicked");
        }
        self.counts
    }
}

fn connect(addr: SocketAddr, counts: &Counts) -> Option<TcpStream> {
    match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
        Ok(stream) => {
            stream.set_nonblocking(true).expect("set_nonblocking");
            add(&counts.connects, 1);
            Some(stream)
        }
        Err(_) => {
            add(&counts.connect_failures, 1);
            None
        }
    }
}

/// Whether damon has closed the connection: an end of stream or an error where nothing
/// should have come (idle and slowloris clients get no answer).
fn closed_by_damon(stream: &mut TcpStream) -> bool {
    let mut buffer = [0u8; 256];
    match stream.read(&mut buffer) {
        // An end of stream (0), or an answer where none was due: either way, not held.
        Ok(_received) => true,
        Err(e) => e.kind() != ErrorKind::WouldBlock,
    }
}

/// Sleeps until the next round, in short steps so that a stop is seen at once.
fn until_next_round(round_started: Instant, stop: &AtomicBool) {
    while round_started.elapsed() < ROUND && !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Connections that send nothing, ever.
fn idle_clients(addr: SocketAddr, n: usize, stop: &AtomicBool, counts: &Counts, ready: mpsc::Sender<()>) {
    let mut clients: Vec<Option<TcpStream>> = (0..n).map(|_| None).collect();
    let mut ready = Some(ready);
    while !stop.load(Ordering::SeqCst) {
        let round_started = Instant::now();
        for client in clients.iter_mut() {
            if let Some(stream) = client {
                if closed_by_damon(stream) {
                    add(&counts.closed_by_damon, 1);
                    add(&counts.idle_closed_by_damon, 1);
                    *client = None;
                }
            }
            if client.is_none() {
                *client = connect(addr, counts);
            }
        }
        if let Some(ready) = ready.take() {
            let _ = ready.send(());
        }
        until_next_round(round_started, stop);
    }
}

/// The endless request head of a slowloris client: a real request line, then one header
/// whose value never ends.
fn slow_byte(position: usize) -> u8 {
    const START: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: flood\r\nX-Slowloris: ";
    START.get(position).copied().unwrap_or(b'a')
}

/// Connections that send one byte of a request head a second.
fn slowloris_clients(addr: SocketAddr, n: usize, stop: &AtomicBool, counts: &Counts, ready: mpsc::Sender<()>) {
    let mut clients: Vec<Option<(TcpStream, usize)>> = (0..n).map(|_| None).collect();
    let mut ready = Some(ready);
    while !stop.load(Ordering::SeqCst) {
        let round_started = Instant::now();
        for client in clients.iter_mut() {
            if let Some((stream, _)) = client {
                if closed_by_damon(stream) {
                    add(&counts.closed_by_damon, 1);
                    *client = None;
                }
            }
            if client.is_none() {
                *client = connect(addr, counts).map(|stream| (stream, 0));
            }
            if let Some((stream, position)) = client {
                match stream.write(&[slow_byte(*position)]) {
                    Ok(_) => {
                        *position += 1;
                        add(&counts.slow_bytes, 1);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(_) => {
                        add(&counts.closed_by_damon, 1);
                        *client = None;
                    }
                }
            }
        }
        if let Some(ready) = ready.take() {
            let _ = ready.send(());
        }
        until_next_round(round_started, stop);
    }
}

/// A client that sends requests and never reads an answer: as many as damon reads at first,
/// then one more each round (which also shows when damon has closed it).
fn never_reading_client(addr: SocketAddr, _: usize, stop: &AtomicBool, counts: &Counts, ready: mpsc::Sender<()>) {
    const REQUEST: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: flood\r\n\r\n";
    let mut client: Option<TcpStream> = None;
    let mut ready = Some(ready);
    while !stop.load(Ordering::SeqCst) {
        let round_started = Instant::now();
        if client.is_none() {
            client = connect(addr, counts);
            // Fill everything between: damon's reads, then the socket buffers.
            while let Some(stream) = &mut client {
                match stream.write(REQUEST) {
                    Ok(n) if n == REQUEST.len() => add(&counts.unread_requests, 1),
                    _ => break,
                }
            }
        }
        if let Some(stream) = &mut client {
            match stream.write(REQUEST) {
                Ok(_) => add(&counts.unread_requests, 1),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => {
                    add(&counts.closed_by_damon, 1);
                    client = None;
                }
            }
        }
        if let Some(ready) = ready.take() {
            let _ = ready.send(());
        }
        until_next_round(round_started, stop);
    }
}

/// One scrape as Prometheus makes it (gzip accepted) on a new connection: the time until the
/// whole answer is in, and the exposition.
pub fn scrape(addr: SocketAddr) -> Result<(Duration, String), String> {
    let started = Instant::now();
    let mut stream = TcpStream::connect_timeout(&addr, SCRAPE_TIMEOUT).map_err(|e| format!("connect: {}", e))?;
    let deadline = started + SCRAPE_TIMEOUT;
    let left = || deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero());
    stream.set_write_timeout(left()).map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: scraper\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("send: {}", e))?;
    let mut received = Vec::new();
    let mut buffer = [0u8; 16384];
    let (head_end, length) = loop {
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&received[..end]).into_owned();
            if !head.starts_with("HTTP/1.1 200 ") || !head.contains("\r\nContent-Encoding: gzip\r\n") {
                return Err(format!("unexpected answer: {}", head));
            }
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| format!("no Content-Length: {}", head))?;
            break (end + 4, length);
        }
        stream.set_read_timeout(Some(left().ok_or("timed out")?)).map_err(|e| e.to_string())?;
        match stream.read(&mut buffer) {
            Ok(0) => return Err(format!("closed after {} bytes", received.len())),
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(e) => return Err(format!("receive: {}", e)),
        }
    };
    while received.len() < head_end + length {
        stream.set_read_timeout(Some(left().ok_or("timed out")?)).map_err(|e| e.to_string())?;
        match stream.read(&mut buffer) {
            Ok(0) => return Err(format!("closed within the body, {} of {} bytes", received.len() - head_end, length)),
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(e) => return Err(format!("receive: {}", e)),
        }
    }
    let elapsed = started.elapsed();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&received[head_end..head_end + length])
        .read_to_string(&mut text)
        .map_err(|e| format!("gunzip: {}", e))?;
    if !text.contains("\ndamon_up") {
        return Err(format!("no damon_up in the exposition:\n{}", text));
    }
    Ok((elapsed, text))
}

/// One figure of /proc/PID/status (`VmRSS`, in kB; `Threads`).
pub fn status_figure(pid: u32, field: &str) -> u64 {
    let status = fs::read_to_string(format!("/proc/{}/status", pid)).expect("/proc/PID/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {} in /proc/{}/status", field, pid))
}

/// USER_HZ, the unit of /proc's CPU times.
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU time the process used, user and system, in clock ticks (/proc/PID/stat).
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{}/stat", pid)).expect("/proc/PID/stat");
    // After the command name in parentheses: state is field 3, utime 14 and stime 15.
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// How often the threads of `pid` have been switched off a CPU (voluntary and not): a count
/// that moves whenever any thread of it ran.
pub fn wakeups(pid: u32) -> u64 {
    fs::read_dir(format!("/proc/{}/task", pid))
        .expect("/proc/PID/task")
        .flatten()
        .map(|task| {
            fs::read_to_string(task.path().join("status"))
                .unwrap_or_default()
                .lines()
                .filter(|l| l.starts_with("voluntary_ctxt_switches:") || l.starts_with("nonvoluntary_ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum()
}

/// Nearest-rank percentile of sorted latencies, in milliseconds.
pub fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1].as_secs_f64() * 1000.0
}

/// What a flood did to damon.
#[derive(Debug)]
pub struct Figures {
    pub hostiles: Hostiles,
    /// The median of 20 scrapes before the flood, in milliseconds.
    pub quiet_p50_ms: f64,
    pub latencies: Vec<Duration>,
    pub failures: Vec<String>,
    /// Before the flood, with no client connected.
    pub idle_rss_kib: u64,
    pub idle_threads: u64,
    /// The most seen during the flood.
    pub max_rss_kib: u64,
    pub max_threads: u64,
    /// damon's CPU time while the scrapes were made under the flood, and how long that took.
    pub cpu_ticks: u64,
    pub flood_seconds: f64,
    pub counts: Arc<Counts>,
    /// How long damon took to have the idle clients' connections, where the flood has some.
    pub idle_handover: Option<Duration>,
}

impl Figures {
    /// Every scrape was answered, and `who`'s resident memory and threads stayed within their
    /// idle figures (the memory within RSS_MARGIN_KIB).
    pub fn assert_answered_and_bounded(&self, who: &str) {
        assert!(self.failures.is_empty(), "{} scrapes failed: {:?}", self.failures.len(), self.failures);
        assert!(
            self.max_rss_kib <= self.idle_rss_kib + RSS_MARGIN_KIB,
            "{}'s resident memory grew from {} KiB to {} KiB",
            who,
            self.idle_rss_kib,
            self.max_rss_kib
        );
        assert!(
            self.max_threads <= self.idle_threads,
            "{}'s threads grew from {} to {}",
            who,
            self.idle_threads,
            self.max_threads
        );
    }

    pub fn report(&self, place: &str) -> String {
        let (p50, p99, max) = if self.latencies.is_empty() {
            (f64::NAN, f64::NAN, f64::NAN)
        } else {
            let mut sorted = self.latencies.clone();
            sorted.sort();
            (percentile_ms(&sorted, 50.0), percentile_ms(&sorted, 99.0), percentile_ms(&sorted, 100.0))
        };
        let c = &self.counts;
        format!(
            "flood figures ({}), {}: {} of {} scrapes answered, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms \
             (without a flood: p50 {:.2} ms); damon's CPU {:.0}% of a core; \
             RSS {} KiB idle, {} KiB at most; threads {} idle, {} at most; \
             hostile connections made {} ({} closed by damon, {} connect failures), slowloris bytes {}, unread requests {}{}",
            place,
            self.hostiles.name,
            self.latencies.len(),
            self.latencies.len() + self.failures.len(),
            p50,
            p99,
            max,
            self.quiet_p50_ms,
            self.cpu_ticks as f64 / TICKS_PER_SECOND / self.flood_seconds.max(0.001) * 100.0,
            self.idle_rss_kib,
            self.max_rss_kib,
            self.idle_threads,
            self.max_threads,
            c.connects.load(Ordering::Relaxed),
            c.closed_by_damon.load(Ordering::Relaxed),
            c.connect_failures.load(Ordering::Relaxed),
            c.slow_bytes.load(Ordering::Relaxed),
            c.unread_requests.load(Ordering::Relaxed),
            self.idle_handover.map_or(String::new(), |d| format!(
                "; scrapes began once damon had the idle connections, {:.1} s after they connected",
                d.as_secs_f64()
            )),
        )
    }
}

/// Scrapes damon `n` times, one every `spacing`, recording latencies and failures, and after
/// each scrape damon's memory, threads and sockets (`pid`: the process to watch).
fn scrape_and_watch(addr: SocketAddr, pid: u32, n: usize, spacing: Duration, figures: &mut Figures) {
    for _ in 0..n {
        let started = Instant::now();
        match scrape(addr) {
            Ok((latency, _)) => figures.latencies.push(latency),
            Err(e) => figures.failures.push(e),
        }
        figures.max_rss_kib = figures.max_rss_kib.max(status_figure(pid, "VmRSS"));
        figures.max_threads = figures.max_threads.max(status_figure(pid, "Threads"));
        if let Some(rest) = spacing.checked_sub(started.elapsed()) {
            std::thread::sleep(rest);
        }
    }
}

/// Measures damon (`pid`, serving at `addr`) idle, then floods it with `hostiles` while
/// making 100 scrapes, one every 30 ms; the hostile clients are gone when this returns.
/// `settled` says when damon has closed the connections of the scrapes made first.
pub fn flood(addr: SocketAddr, pid: u32, hostiles: Hostiles, settled: impl Fn() -> bool) -> Figures {
    // Scrapes without a flood first, for comparison; the answer's buffers and the gzip state
    // are then part of damon's idle figure, as when Prometheus scrapes it.
    let mut quiet = Vec::new();
    for _ in 0..20 {
        quiet.push(scrape(addr).unwrap_or_else(|e| panic!("a scrape before the flood failed: {}", e)).0);
        std::thread::sleep(Duration::from_millis(10));
    }
    quiet.sort();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !settled() {
        assert!(Instant::now() < deadline, "damon kept the first scrapes' connections open");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut figures = Figures {
        hostiles,
        quiet_p50_ms: percentile_ms(&quiet, 50.0),
        latencies: Vec::new(),
        failures: Vec::new(),
        idle_rss_kib: status_figure(pid, "VmRSS"),
        idle_threads: status_figure(pid, "Threads"),
        max_rss_kib: 0,
        max_threads: 0,
        cpu_ticks: 0,
        flood_seconds: 0.0,
        counts: Arc::default(),
        idle_handover: None,
    };
    let flood = Flood::start(addr, hostiles);
    figures.idle_handover = flood.until_idle_clients_reach_damon(hostiles);
    let (started, ticks) = (Instant::now(), cpu_ticks(pid));
    scrape_and_watch(addr, pid, 100, Duration::from_millis(30), &mut figures);
    figures.cpu_ticks = cpu_ticks(pid) - ticks;
    figures.flood_seconds = started.elapsed().as_secs_f64();
    figures.counts = flood.stop();
    figures
}

/// Raises this process's soft limit of open files to its hard limit: the flood holds more
/// than the usual soft 1024.
pub fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("setrlimit RLIMIT_NOFILE");
}
