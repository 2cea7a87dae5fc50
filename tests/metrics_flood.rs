//! The metrics endpoint under hostile clients (issue 10). While 1000 idle connections, 1000
//! slowloris clients and a client that never reads hold on (alone and all at once), every
//! one of 100 scrapes is answered, damon's resident memory stays within 1 MiB of its idle
//! figure, its threads do not grow, and it holds no more connections than its limit. A real
//! Prometheus keeps scraping through a flood on the connection it keeps. With nobody
//! connected damon uses no CPU, before and after a flood, and with a kept connection idle.
//! Out of file descriptors, damon still answers and does not spin.
//!
//! Scrape latencies are printed (`cargo test --test metrics_flood -- --nocapture`, or the
//! VM's console), never asserted: these machines are shared. Every test name says "flood",
//! so `scripts/vm-test flood` runs them all on cgroup v2.

#![cfg(target_os = "linux")]

mod common;
#[path = "common/flood.rs"]
mod flood;
#[path = "common/prometheus.rs"]
mod prometheus;

use common::*;
use nix::sys::signal::Signal;
use prometheus::Prometheus;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Floods run one at a time: they share the machine's CPUs and ports.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Where the figures come from, for the printed report.
fn place() -> &'static str {
    if cgroup_version() == "v2" {
        "VM, cgroup v2"
    } else {
        "host, cgroup v1"
    }
}

struct Damon {
    child: Child,
    dir: TestDir,
    addr: SocketAddr,
}

impl Damon {
    /// damon serving metrics with a workload that sleeps, started with the usual soft
    /// limit of 1024 open files (the test itself raises its own).
    fn start(name: &str) -> Damon {
        let dir = TestDir::new(name);
        let port = free_port();
        let mut cmd = Command::new("sh");
        in_clean_environment(&mut cmd, &dir);
        cmd.args(["-c", "ulimit -S -n 1024 && exec \"$0\" \"$@\"", DAMON])
            .env("DAMON_ADDR", format!("127.0.0.1:{}", port))
            .env("DAMON_MEMORY_LIMIT", "64")
            .env("NOMAD_JOB_NAME", "shop")
            .arg(workload())
            .args(["sleep", "300"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let child = cmd.spawn().expect("spawn damon");
        wait_for("damon's metrics endpoint", Duration::from_secs(10), || http_get(port, "/metrics").is_some());
        Damon { child, dir, addr: SocketAddr::from(([127, 0, 0, 1], port)) }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops damon as Nomad would; the workload must have run on untouched to the end.
    fn stop(self) -> Run {
        assert!(alive(self.pid()), "damon died during the flood\n{}", self.dir.log());
        signal(self.pid(), Signal::SIGTERM);
        let run = finish(self.child, &self.dir, "damon with metrics", Duration::from_secs(20));
        run.assert_log_contains("\"message\":\"damon exiting\"");
        assert!(!run.log.contains("panicked") && !run.stderr.contains("panicked"), "{}", run.explain());
        run
    }
}

/// The TCP connections to clients that `pid` holds: its sockets that /proc/net/tcp lists in
/// a state other than LISTEN.
fn connections_held(pid: u32) -> usize {
    let inodes: HashSet<String> = std::fs::read_dir(format!("/proc/{}/fd", pid))
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter_map(|l| l.to_string_lossy().strip_prefix("socket:[")?.strip_suffix(']').map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    // Distinct inodes: a table read in pieces while connections come and go may list one
    // socket twice.
    let mut held = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() > 9 && fields[3] != "0A" && inodes.contains(fields[9]) {
                held.insert(fields[9].to_string());
            }
        }
    }
    held.len()
}

/// damon neither runs nor wakes over two seconds: no thread of it is switched to (the context
/// switches of /proc/PID/task/*/status) and its CPU time (clock ticks of /proc/PID/stat) does
/// not move. Measured once the last answer's own switches have settled: a thread that wrote
/// an answer the test has read may not yet have gone back to its wait.
fn assert_no_cpu_used(pid: u32, when: &str) {
    let mut settled = flood::wakeups(pid);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = flood::wakeups(pid);
        if now == settled || Instant::now() > deadline {
            break;
        }
        settled = now;
    }
    let (ticks, wakeups) = (flood::cpu_ticks(pid), flood::wakeups(pid));
    std::thread::sleep(Duration::from_secs(2));
    let (ticks, wakeups) = (flood::cpu_ticks(pid) - ticks, flood::wakeups(pid) - wakeups);
    println!("flood figures ({}), idle CPU {}: {} ticks and {} wakeups in 2 s", place(), when, ticks, wakeups);
    assert_eq!((ticks, wakeups), (0, 0), "damon ran in 2 s {} (CPU ticks, wakeups)", when);
}

fn flood_against_damon(hostiles: flood::Hostiles) {
    let _one = one_at_a_time();
    flood::raise_fd_limit();
    let damon = Damon::start("flood");
    let pid = damon.pid();
    let mut max_held = 0;
    let figures = {
        // Watch the connections damon holds while the flood runs.
        let watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let watcher = {
            let watching = std::sync::Arc::clone(&watching);
            std::thread::spawn(move || {
                let mut most = 0;
                while watching.load(std::sync::atomic::Ordering::SeqCst) {
                    most = most.max(connections_held(pid));
                    std::thread::sleep(Duration::from_millis(50));
                }
                most
            })
        };
        let figures = flood::flood(damon.addr, pid, hostiles, || connections_held(pid) == 0);
        watching.store(false, std::sync::atomic::Ordering::SeqCst);
        max_held = max_held.max(watcher.join().unwrap());
        figures
    };
    println!("{}; connections held at most {}", figures.report(place()), max_held);
    figures.assert_answered_and_bounded("damon");
    // The limit, and the one just accepted that takes the place of another.
    assert!(max_held <= flood::DAMON_MAX_CONNECTIONS + 1, "damon held {} connections", max_held);
    // The hostile clients are gone: damon closes what it held and is idle again.
    wait_for("damon to hold no connection", Duration::from_secs(15), || connections_held(pid) == 0);
    assert_no_cpu_used(pid, &format!("after {}", figures.hostiles.name));
    let run = damon.stop();
    run.assert_log_contains("metrics: connection limit reached").assert_log_contains("serving metrics");
}

#[test]
fn flood_of_idle_connections_every_scrape_answered_memory_and_threads_bounded() {
    flood_against_damon(flood::IDLE);
}

#[test]
fn flood_of_slowloris_clients_every_scrape_answered_memory_and_threads_bounded() {
    flood_against_damon(flood::SLOWLORIS);
}

#[test]
fn flood_of_all_three_at_once_every_scrape_answered_memory_and_threads_bounded() {
    flood_against_damon(flood::ALL);
}

#[test]
fn flood_by_a_client_that_never_reads_holds_no_scrape_up() {
    let _one = one_at_a_time();
    let damon = Damon::start("flood-unread");
    let pid = damon.pid();
    let figures = flood::flood(damon.addr, pid, flood::NEVER_READS, || connections_held(pid) == 0);
    println!("{}", figures.report(place()));
    assert!(figures.failures.is_empty(), "{} scrapes failed: {:?}", figures.failures.len(), figures.failures);
    assert!(figures.max_rss_kib <= figures.idle_rss_kib + flood::RSS_MARGIN_KIB, "{:?}", figures);
    assert!(figures.max_threads <= figures.idle_threads, "{:?}", figures);
    assert!(figures.counts.unread_requests.load(std::sync::atomic::Ordering::SeqCst) > 0);
    wait_for("damon to hold no connection", Duration::from_secs(15), || connections_held(pid) == 0);
    damon.stop();
}

/// Reads one answer to a GET off a kept connection (by its Content-Length).
fn read_answer(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut byte = [0u8];
    while !received.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "closed: {}", String::from_utf8_lossy(&received));
        received.push(byte[0]);
    }
    let head = String::from_utf8(received).unwrap();
    let length: usize = head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).unwrap().parse().unwrap();
    let mut body = vec![0; length];
    stream.read_exact(&mut body).unwrap();
    format!("{}{}", head, String::from_utf8_lossy(&body))
}

#[test]
fn flood_aside_no_cpu_while_nobody_is_connected_nor_while_a_kept_connection_idles() {
    let _one = one_at_a_time();
    let damon = Damon::start("flood-idle-cpu");
    let pid = damon.pid();
    let _ = flood::scrape(damon.addr).unwrap();
    wait_for("damon to hold no connection", Duration::from_secs(10), || connections_held(pid) == 0);
    assert_no_cpu_used(pid, "with nobody connected");
    // A scraper's kept connection between scrapes: damon waits on it without a timer
    // (its idle deadline is minutes away).
    let mut kept = TcpStream::connect(damon.addr).unwrap();
    kept.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    for _ in 0..2 {
        kept.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert!(read_answer(&mut kept).starts_with("HTTP/1.1 200 OK\r\n"));
    }
    assert_no_cpu_used(pid, "with a kept connection idle");
    kept.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let third = read_answer(&mut kept);
    // Three requests on one connection: the counters say so.
    assert!(third.contains("\ndamon_http_requests_total{nomad_job_name=\"shop\"} "), "{}", third);
    drop(kept);
    damon.stop();
}

#[test]
fn flood_with_no_file_descriptor_left_pauses_accepting_and_recovers() {
    let _one = one_at_a_time();
    if Command::new("prlimit").arg("--version").output().is_err() {
        println!("flood figures ({}): no prlimit here; the descriptor test needs it", place());
        return;
    }
    let damon = Damon::start("flood-emfile");
    let pid = damon.pid();
    let prlimit = |limit: &str| {
        let status = Command::new("prlimit").args(["--pid", &pid.to_string(), &format!("--nofile={}", limit)]).status();
        assert!(status.map_or(false, |s| s.success()), "prlimit --nofile={}", limit);
    };
    // RLIMIT_NOFILE bounds descriptor numbers: a limit of the nth free number leaves n.
    let limit_leaving = |n: usize| {
        let used: HashSet<usize> = std::fs::read_dir(format!("/proc/{}/fd", pid))
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        let free = (0..).filter(|fd| !used.contains(fd)).nth(n).unwrap();
        format!("{}:1024", free)
    };
    wait_for("damon to hold no connection", Duration::from_secs(10), || connections_held(pid) == 0);
    // Not one descriptor left: every accept fails (EMFILE) and no connection can make room.
    prlimit(&limit_leaving(0));
    let mut waiting = TcpStream::connect(damon.addr).unwrap();
    waiting.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    // Without the pause, the listener stays readable and the loop spins: 200 ticks in 2 s.
    let before = flood::cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(2));
    let used = flood::cpu_ticks(pid) - before;
    println!("flood figures ({}), out of descriptors: {} CPU ticks in 2 s", place(), used);
    assert!(used <= 10, "damon used {} CPU ticks in 2 s while it could not accept", used);
    // Descriptors again: the waiting client is answered at the next try.
    prlimit("1024:1024");
    waiting.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert!(read_answer(&mut waiting).starts_with("HTTP/1.1 200 OK\r\n"));
    // A few descriptors left: under a flood of idle connections accepting runs out of them,
    // gives up the oldest idle connection for each new one, and every scrape is answered.
    flood::raise_fd_limit();
    drop(waiting);
    wait_for("damon to hold no connection", Duration::from_secs(10), || connections_held(pid) == 0);
    prlimit(&limit_leaving(4));
    let figures = flood::flood(damon.addr, pid, flood::IDLE, || connections_held(pid) == 0);
    println!("{} (4 descriptors left)", figures.report(place()));
    assert!(figures.failures.is_empty(), "{} scrapes failed: {:?}", figures.failures.len(), figures.failures);
    prlimit("1024:1024");
    let run = damon.stop();
    run.assert_log_contains("metrics: cannot accept connections; pausing for a second");
}

#[test]
fn flood_while_a_real_prometheus_scrapes_on_its_kept_connection() {
    let _one = one_at_a_time();
    flood::raise_fd_limit();
    let damon = Damon::start("flood-prometheus");
    let dir = TestDir::new("flood-prometheus-server");
    let prometheus = Prometheus::start(&dir, damon.addr.port());
    let scrapes = || prometheus.query("count_over_time(up{job=\"damon\"}[1h])").unwrap_or(0.0);
    wait_for("Prometheus to scrape damon three times", Duration::from_secs(60), || scrapes() >= 3.0);
    let before = scrapes();
    let flood = flood::Flood::start(damon.addr, flood::ALL);
    wait_for("ten scrapes by Prometheus during the flood", Duration::from_secs(60), || scrapes() >= before + 10.0);
    let counts = flood.stop();
    let during = scrapes() - before;
    // Every scrape succeeded (up is 0 for one that failed or took longer than its 1 s
    // timeout), all on the connection Prometheus opened first: damon gave up thousands of
    // hostile connections around it, never that one.
    let lowest_up = prometheus.query("min_over_time(up{job=\"damon\"}[1h])");
    let opened = prometheus.connections_to_damon();
    let slowest = prometheus.query("max_over_time(scrape_duration_seconds{job=\"damon\"}[30s])");
    let dropped = prometheus.query("max_over_time(damon_http_connections_dropped_total{reason=\"limit\"}[1h])");
    println!(
        "flood figures ({}), a real Prometheus during all three at once: {} scrapes, up at least {:?}, slowest {:.2} ms, \
         connections opened by Prometheus {:?}, hostile connections made {}, dropped by damon at its limit {:?}",
        place(),
        during,
        lowest_up,
        slowest.unwrap_or(f64::NAN) * 1000.0,
        opened,
        counts.connects.load(std::sync::atomic::Ordering::Relaxed),
        dropped
    );
    drop(prometheus);
    damon.stop();
    assert_eq!(lowest_up, Some(1.0), "a scrape by Prometheus failed during the flood");
    assert_eq!(opened, Some(1.0), "Prometheus had to open another connection");
    assert!(dropped.unwrap_or(0.0) > 0.0, "the flood never reached damon's limit");
}
