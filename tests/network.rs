//! The workload's network, as cgroup BPF programs on its group see it (issue 28): the bytes and
//! packets its sockets send and receive, in the metrics and the "damon exiting" line; the
//! addresses DAMON_IP_ALLOW and DAMON_IP_DENY let it reach, which a root workload under the
//! sandbox cannot lift. On a v1 host through the group's twin in the cgroup2 hierarchy mounted
//! beside v1. All traffic stays on loopback (the whole of 127.0.0.0/8 is this machine's), with
//! the test's own end outside the workload's group.

#![cfg(target_os = "linux")]

mod common;

use common::*;
use nix::sys::signal::Signal;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SENT_BYTES: u64 = 4 << 20;
/// A packet's IP and TCP headers: 40 bytes at the least, 52 on loopback (timestamps), up to
/// 120 with every option.
const HEADER_BYTES: std::ops::RangeInclusive<f64> = 40.0..=120.0;

#[test]
fn the_workloads_traffic_is_counted_in_the_metrics_and_the_report() {
    let dir = TestDir::new("network-counted");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let port = free_port();
    let mut damon = damon(&dir)
        .env("DAMON_ADDR", format!("127.0.0.1:{}", port))
        .arg(workload())
        .args(["tcp-send", &target, &SENT_BYTES.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn damon");
    // The test's end reads everything and closes; its own sockets are outside the group.
    listener.set_nonblocking(true).unwrap();
    let mut accepted = None;
    wait_for("the workload's connection", Duration::from_secs(30), || {
        accepted = listener.accept().ok();
        accepted.is_some() || !alive(damon.id())
    });
    let mut connection = match accepted {
        Some((connection, _)) => connection,
        None => panic!("damon ended before the workload connected\n{}", dir.log()),
    };
    connection.set_nonblocking(false).unwrap();
    connection.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut received = 0u64;
    let mut buffer = vec![0; 1 << 16];
    loop {
        match connection.read(&mut buffer).unwrap() {
            0 => break,
            n => received += n as u64,
        }
    }
    drop(connection);
    assert_eq!(received, SENT_BYTES);
    let mut stdout = BufReader::new(damon.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    // The data TCP sent, a retransmission included (loopback has them: a tail loss probe
    // fires when the reader is slow to acknowledge).
    let payload: f64 = line
        .trim()
        .strip_prefix(&format!("sent={} payload_sent=", SENT_BYTES))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the workload printed {:?}\n{}", line, dir.log()));
    assert!(payload >= SENT_BYTES as f64, "{}", line);

    let mut scrape = String::new();
    wait_for("damon's metrics", Duration::from_secs(10), || {
        scrape = http_get(port, "/metrics").unwrap_or_default();
        !scrape.is_empty()
    });
    let figure = |family: &str| {
        metric_value(&scrape, family, "").unwrap_or_else(|| panic!("no {} in the scrape:\n{}", family, scrape))
    };
    let (sent, sent_packets) =
        (figure("damon_network_transmit_bytes_total"), figure("damon_network_transmit_packets_total"));
    let (got, got_packets) =
        (figure("damon_network_receive_bytes_total"), figure("damon_network_receive_packets_total"));
    println!(
        "network figures: {} bytes sent ({} of data), counted {} in {} packets; received {} in {}",
        SENT_BYTES, payload, sent, sent_packets, got, got_packets
    );
    // The data and a header a packet, at least the SYN, one segment and the FIN.
    assert!(sent_packets >= 3.0, "{} packets sent", sent_packets);
    let sent_headers = (sent - payload) / sent_packets;
    assert!(
        HEADER_BYTES.contains(&sent_headers),
        "{} bytes counted for {} sent: {} a packet",
        sent,
        payload,
        sent_headers
    );
    // The test's end sent no data: the SYN-ACK, the ACKs and its FIN, headers only.
    assert!(got_packets >= 2.0, "{} packets received", got_packets);
    assert!(HEADER_BYTES.contains(&(got / got_packets)), "{} bytes received in {} packets", got, got_packets);

    signal(damon.id(), Signal::SIGTERM);
    let run = finish(damon, &dir, "damon tcp-send", Duration::from_secs(20));
    // Nothing more was sent or received after the scrape: the report has the same counts.
    for (key, scraped) in [
        ("network_sent_bytes", sent),
        ("network_sent_packets", sent_packets),
        ("network_received_bytes", got),
        ("network_received_packets", got_packets),
    ] {
        assert_eq!(run.exiting_figure(key), scraped, "{} in the report", key);
    }
}

#[test]
fn check_says_how_the_traffic_is_counted() {
    let dir = TestDir::new("network-check");
    let run = run(
        {
            let mut cmd = damon(&dir);
            cmd.arg("--check");
            cmd
        },
        &dir,
    );
    run.assert_code(0);
    let line = run.stdout.lines().find(|l| l.starts_with("network accounting:")).unwrap_or_else(|| {
        panic!("no network accounting line\n{}", run.explain());
    });
    assert!(line.contains("counted by cgroup BPF programs on the workload's group under /sys/fs/cgroup"), "{}", line);
}

/// Each probe's line of the workload's sandbox-probe, "allowed" or "denied: ERROR".
fn probe(mut cmd: Command, dir: &TestDir, probes: &[String]) -> Vec<String> {
    cmd.arg(workload()).arg("sandbox-probe").args(probes);
    let run = run(cmd, dir);
    run.assert_code(0);
    // In order: a probe may be made twice.
    let mut lines = run.stdout.lines();
    probes
        .iter()
        .map(|p| {
            let line = lines.by_ref().find_map(|l| l.strip_prefix(&format!("{}: ", p)));
            line.unwrap_or_else(|| panic!("no line for {}\n{}", p, run.explain())).to_string()
        })
        .collect()
}

const REFUSED: &str = "denied: Operation not permitted (os error 1)";

/// Listeners of the test's own on 127.0.0.1 and 127.0.0.2, and on ::1 where the host has
/// IPv6 on loopback.
struct Listeners {
    _held: Vec<TcpListener>,
    one: SocketAddr,
    two: SocketAddr,
    v6: Option<SocketAddr>,
}

impl Listeners {
    fn new() -> Listeners {
        let one = TcpListener::bind("127.0.0.1:0").unwrap();
        let two = TcpListener::bind("127.0.0.2:0").unwrap();
        let v6 = TcpListener::bind("[::1]:0").ok();
        let addr = |l: &TcpListener| l.local_addr().unwrap();
        let (one_addr, two_addr, v6_addr) = (addr(&one), addr(&two), v6.as_ref().map(addr));
        Listeners {
            _held: [Some(one), Some(two), v6].into_iter().flatten().collect(),
            one: one_addr,
            two: two_addr,
            v6: v6_addr,
        }
    }
}

#[test]
fn a_denied_address_is_refused_at_once_while_another_stays_reachable_and_allow_overrides_deny() {
    let listeners = Listeners::new();
    let mapped_two = format!("[::ffff:127.0.0.2]:{}", listeners.two.port());
    let mut probes = vec![
        format!("tcp:{}", listeners.one),
        format!("tcp:{}", listeners.two),
        format!("udp:{}", listeners.two),
        // An IPv6 socket to an IPv4-mapped address: IPv4 on the wire, judged as 127.0.0.2.
        format!("tcp:{}", mapped_two),
    ];
    probes.extend(listeners.v6.map(|v6| format!("tcp:{}", v6)));
    let dir = TestDir::new("network-deny");
    let lines = |settings: &[(&str, &str)]| {
        let mut cmd = damon(&dir);
        for (var, value) in settings {
            cmd.env(var, value);
        }
        probe(cmd, &dir, &probes)
    };
    // The control: everything is reachable.
    let open = lines(&[]);
    assert!(open.iter().all(|l| l == "allowed"), "without a setting: {:?}", open);

    // The same verdicts however damon keeps a list: a hash set of one prefix length; of
    // several, an address cut within a 32-bit word (127.0.0.2/31 holds 127.0.0.3 but not .1,
    // ::/127 holds ::1); an LPM trie, for more lengths than damon hashes (5 per IP version).
    for deny in [
        "127.0.0.2,::1",
        "127.0.0.2/31,::1/127,10.0.0.0/8",
        "127.0.0.2,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,198.51.100.0/24,\
         ::1,fd00::/8,2001:db8::/32,2001:db8:1::/48,fe80::/64",
    ] {
        let started = Instant::now();
        let denied = lines(&[("DAMON_IP_DENY", deny)]);
        let run_time = started.elapsed();
        assert_eq!(denied[0], "allowed", "127.0.0.1 with DAMON_IP_DENY={}: {:?}", deny, denied);
        for (probe, line) in probes.iter().zip(&denied).skip(1) {
            assert_eq!(line, REFUSED, "{} with DAMON_IP_DENY={}", probe, deny);
        }
        // Refused at the call, not after a connect timeout (the probe's is 2 s).
        println!("network figures: a run with {} probes, {} refused: {:?}", probes.len(), probes.len() - 1, run_time);
    }

    let allowed = lines(&[("DAMON_IP_DENY", "any"), ("DAMON_IP_ALLOW", "127.0.0.1")]);
    assert_eq!(allowed[0], "allowed", "127.0.0.1 allowed over any denied: {:?}", allowed);
    for (probe, line) in probes.iter().zip(&allowed).skip(1) {
        assert_eq!(line, REFUSED, "{} with DAMON_IP_DENY=any DAMON_IP_ALLOW=127.0.0.1", probe);
    }
}

/// damon (`cmd`) running the workload's `tcp-serve` on 127.0.0.1:`port` (0: one the kernel
/// picks), and the port it listens on once it says so.
fn serving(mut cmd: Command, dir: &TestDir, port: u16) -> (std::process::Child, u16) {
    let mut damon = cmd
        .arg(workload())
        .args(["tcp-serve", &format!("127.0.0.1:{}", port)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn damon");
    let mut line = String::new();
    BufReader::new(damon.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let listening = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("the workload printed {:?}\n{}", line, dir.log()));
    (damon, listening)
}

/// Whether a TCP connection from `source` (an address of 127.0.0.0/8) to `target` is made
/// within a second. By hand: std binds no source address before a connect.
fn connects_from(source: [u8; 4], target: SocketAddr) -> bool {
    use nix::libc;
    let address = |octets: [u8; 4], port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(octets) },
        sin_zero: [0; 8],
    };
    let target_octets = match target {
        SocketAddr::V4(v4) => v4.ip().octets(),
        SocketAddr::V6(_) => panic!("an IPv4 target"),
    };
    let (from, to) = (address(source, 0), address(target_octets, target.port()));
    let length = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // connect(2) waits no longer than the send timeout.
    let timeout = libc::timeval { tv_sec: 1, tv_usec: 0 };
    // SAFETY: socket(2), bind(2), setsockopt(2), connect(2) and close(2) on a socket of this
    // function, with addresses and a timeval of this frame and their true lengths.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        assert_eq!(libc::bind(fd, (&from as *const libc::sockaddr_in).cast(), length), 0, "bind the source");
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
        let connected = libc::connect(fd, (&to as *const libc::sockaddr_in).cast(), length) == 0;
        libc::close(fd);
        connected
    }
}

#[test]
fn packets_from_a_denied_address_are_dropped_before_the_workload_sees_them() {
    for deny in [None, Some("127.0.0.2")] {
        let dir = TestDir::new("network-ingress");
        let mut cmd = damon(&dir);
        if let Some(deny) = deny {
            cmd.env("DAMON_IP_DENY", deny);
        }
        let (damon, port) = serving(cmd, &dir, 0);
        let target = SocketAddr::from(([127, 0, 0, 1], port));
        assert!(connects_from([127, 0, 0, 1], target), "from 127.0.0.1 (DAMON_IP_DENY={:?})", deny);
        // The workload's listener is in its group: the SYN from a denied source is dropped on
        // ingress, and the connection never opens.
        assert_eq!(connects_from([127, 0, 0, 2], target), deny.is_none(), "from 127.0.0.2 (DAMON_IP_DENY={:?})", deny);
        signal(damon.id(), Signal::SIGTERM);
        finish(damon, &dir, "damon tcp-serve", Duration::from_secs(20));
    }
}

#[test]
fn a_root_workload_under_the_sandbox_cannot_take_the_rules_off() {
    let listeners = Listeners::new();
    let denied = format!("tcp:{}", listeners.two);
    let probes = [denied.clone(), "bpf-detach".to_string(), denied];
    let dir = TestDir::new("network-detach");
    // The control: a root workload without the sandbox takes them off, and reaches 127.0.0.2.
    let mut cmd = damon(&dir);
    cmd.env("DAMON_IP_DENY", "127.0.0.2");
    let lines = probe(cmd, &dir, &probes);
    assert_eq!(lines, [REFUSED, "allowed", "allowed"], "without the sandbox: {:?}", probes);

    let mut cmd = damon(&dir);
    let workload_dir = workload().parent().unwrap().display().to_string();
    cmd.env("DAMON_IP_DENY", "127.0.0.2")
        .env("DAMON_SANDBOX", "Y")
        .env("DAMON_SANDBOX_PATHS", format!("defaults,rx:{}", workload_dir));
    let lines = probe(cmd, &dir, &probes);
    assert_eq!(lines, [REFUSED, REFUSED, REFUSED], "under DAMON_SANDBOX=Y: {:?}", probes);
}

#[test]
fn bad_lists_are_refused_naming_the_variable_and_start_nothing() {
    let dir = TestDir::new("network-bad");
    let marker = dir.path("started");
    for (var, value) in [
        ("DAMON_IP_DENY", "300.1.1.1"),
        ("DAMON_IP_DENY", "10.0.0.0/33"),
        ("DAMON_IP_ALLOW", "::1/129"),
        ("DAMON_IP_ALLOW", "localhost,example.com"),
        ("DAMON_IP_DENY", "10.0.0.0/8;192.0.2.0/24"),
        ("DAMON_IP_DENY", ","),
    ] {
        let mut cmd = damon(&dir);
        cmd.env(var, value).arg("touch").arg(&marker);
        let run = run(cmd, &dir);
        run.assert_code(125);
        assert!(
            run.stderr.contains(&format!("invalid value {:?} for {}", value, var)),
            "{}={}: {}",
            var,
            value,
            run.explain()
        );
        assert!(!marker.exists(), "{}={} started the command", var, value);
    }
}

#[test]
fn only_the_ports_of_bind_ports_are_bound_and_outgoing_connections_still_work() {
    let listeners = Listeners::new();
    // Ports nobody here listens on: a free one for each of Nomad's labels and for the range.
    // The labels' ports lie outside the ports probed around the range (41000 is in the
    // kernel's ephemeral range: a label given 40999 or 41011 would make those bindable).
    let range_start = 41000;
    let outside_range = || loop {
        let port = free_port();
        if !(range_start - 1..=range_start + 11).contains(&port) {
            return port;
        }
    };
    let (http, admin) = (outside_range(), outside_range());
    let probes = vec![
        format!("bind:127.0.0.1:{}", http),
        format!("bind:[::1]:{}", admin),
        format!("bind-udp:0.0.0.0:{}", range_start + 5),
        format!("bind:127.0.0.1:{}", range_start + 11),
        format!("bind-udp:127.0.0.1:{}", range_start - 1),
        // Port 0: the kernel picks one, as for an outgoing connection.
        "bind:127.0.0.1:0".to_string(),
        format!("tcp:{}", listeners.one),
    ];
    let dir = TestDir::new("network-bind");
    let nomad = [("NOMAD_PORT_http", http.to_string()), ("NOMAD_PORT_admin", admin.to_string())];
    let lines = |bind_ports: Option<&str>| {
        let mut cmd = damon(&dir);
        cmd.envs(nomad.iter().map(|(k, v)| (*k, v.as_str())));
        if let Some(ports) = bind_ports {
            cmd.env("DAMON_BIND_PORTS", ports);
        }
        probe(cmd, &dir, &probes)
    };
    let open = lines(None);
    let ipv6 = listeners.v6.is_some();
    for (probe, line) in probes.iter().zip(&open) {
        if ipv6 || !probe.contains("::1") {
            assert_eq!(line, "allowed", "{} without DAMON_BIND_PORTS", probe);
        }
    }
    let limited = lines(Some(&format!("nomad,{}-{}", range_start, range_start + 10)));
    let expected = ["allowed", "allowed", "allowed", REFUSED, REFUSED, "allowed", "allowed"];
    for ((probe, line), expected) in probes.iter().zip(&limited).zip(expected) {
        if ipv6 || !probe.contains("::1") {
            assert_eq!(line, expected, "{} with DAMON_BIND_PORTS=nomad,{}-{}", probe, range_start, range_start + 10);
        }
    }
}

#[test]
fn a_nomad_port_that_is_not_a_port_is_refused_naming_its_variable() {
    let dir = TestDir::new("network-bad-port");
    let marker = dir.path("started");
    let mut cmd = damon(&dir);
    cmd.env("DAMON_BIND_PORTS", "nomad").env("NOMAD_PORT_http", "80x").arg("touch").arg(&marker);
    let run = run(cmd, &dir);
    run.assert_code(125);
    assert!(run.stderr.contains("invalid value \"80x\" for NOMAD_PORT_http"), "{}", run.explain());
    assert!(!marker.exists(), "the command ran");
}

#[test]
fn network_accounting_n_leaves_the_figures_out() {
    let dir = TestDir::new("network-off");
    for (setting, counted) in [(None, true), (Some("N"), false)] {
        let mut cmd = damon(&dir);
        if let Some(value) = setting {
            cmd.env("DAMON_NETWORK_ACCOUNTING", value);
        }
        cmd.arg(workload()).args(["exit", "0"]);
        let run = run(cmd, &dir);
        run.assert_code(0);
        let exiting = run.log.lines().rfind(|l| l.contains("\"message\":\"damon exiting\"")).unwrap_or("");
        assert_eq!(
            exiting.contains("\"network_sent_bytes\":"),
            counted,
            "DAMON_NETWORK_ACCOUNTING={:?}: {}",
            setting,
            exiting
        );
    }
}

/// bpf(2) with `command` and an attribute block (`union bpf_attr` as u32 words, the rest zero).
fn bpf(command: i64, attr: &mut [u32; 32]) -> std::io::Result<i64> {
    use nix::libc;
    // SAFETY: bpf(2) with an attribute block of 128 bytes, live for the call; the addresses in
    // it are the caller's, of buffers live for the call too.
    let result = unsafe { libc::syscall(libc::SYS_bpf, command, attr.as_mut_ptr(), std::mem::size_of_val(attr)) };
    if result < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(result)
}

/// A u64 field of `union bpf_attr` (an address), at word `at`.
fn set_u64(attr: &mut [u32; 32], at: usize, value: u64) {
    attr[at] = value as u32;
    attr[at + 1] = (value >> 32) as u32;
}

/// The ids of the cgroup BPF programs attached to the group at `dir` itself, at every place
/// damon's go (skb ingress and egress, bind, connect and UDP send of both versions).
fn attached_programs(dir: &std::path::Path) -> Vec<u32> {
    use std::os::unix::io::AsRawFd;
    let group = std::fs::File::open(dir).unwrap_or_else(|e| panic!("open {}: {}", dir.display(), e));
    let mut found = Vec::new();
    for attach_type in [0u32, 1, 8, 9, 10, 11, 14, 15] {
        let mut ids = [0u32; 64];
        // BPF_PROG_QUERY (16): target_fd, attach_type, query_flags, attach_flags, prog_ids
        // (u64, at word 4), prog_cnt.
        let mut attr = [0u32; 32];
        attr[0] = group.as_raw_fd() as u32;
        attr[1] = attach_type;
        set_u64(&mut attr, 4, ids.as_mut_ptr() as u64);
        attr[6] = ids.len() as u32;
        bpf(16, &mut attr).unwrap_or_else(|e| panic!("BPF_PROG_QUERY on {}: {}", dir.display(), e));
        found.extend_from_slice(&ids[..attr[6] as usize]);
    }
    found
}

/// Whether the kernel still has a program of this id.
fn program_exists(id: u32) -> bool {
    let mut attr = [0u32; 32];
    attr[0] = id;
    match bpf(13, &mut attr) {
        // BPF_PROG_GET_FD_BY_ID (13): a descriptor, closed here.
        Ok(fd) => drop(fd_of(fd)),
        Err(e) => return e.raw_os_error() != Some(nix::libc::ENOENT),
    }
    true
}

fn fd_of(fd: i64) -> std::os::unix::io::OwnedFd {
    use std::os::unix::io::FromRawFd;
    // SAFETY: a descriptor bpf(2) just returned, owned by no one else.
    unsafe { std::os::unix::io::OwnedFd::from_raw_fd(fd as i32) }
}

/// Attaches to the group at `dir`, alone (no BPF_F_ALLOW_MULTI nor OVERRIDE: no group below may
/// attach a program of its kind), a connect6 program that lets every connect() through.
fn attach_exclusive_connect6(dir: &std::path::Path) {
    use std::os::unix::io::AsRawFd;
    // r0 = 1 (pass); exit.
    let insns: [u64; 2] = [0xb7 | 1 << 32, 0x95];
    let license = b"GPL\0";
    // BPF_PROG_LOAD (5): prog_type (BPF_PROG_TYPE_CGROUP_SOCK_ADDR), insn_cnt, insns, license,
    // ..., expected_attach_type (BPF_CGROUP_INET6_CONNECT) at word 17.
    let mut attr = [0u32; 32];
    attr[0] = 18;
    attr[1] = insns.len() as u32;
    set_u64(&mut attr, 2, insns.as_ptr() as u64);
    set_u64(&mut attr, 4, license.as_ptr() as u64);
    attr[17] = 11;
    let program = fd_of(bpf(5, &mut attr).unwrap_or_else(|e| panic!("BPF_PROG_LOAD: {}", e)));
    let group = std::fs::File::open(dir).unwrap_or_else(|e| panic!("open {}: {}", dir.display(), e));
    // BPF_PROG_ATTACH (8): target_fd, attach_bpf_fd, attach_type, attach_flags (0).
    let mut attr = [0u32; 32];
    attr[0] = group.as_raw_fd() as u32;
    attr[1] = program.as_raw_fd() as u32;
    attr[2] = 11;
    bpf(8, &mut attr).unwrap_or_else(|e| panic!("BPF_PROG_ATTACH to {}: {}", dir.display(), e));
}

/// The worst moment of the set-up: the kernel refuses damon's connect6 program after its packet
/// and connect4 programs are on the group (a parent holds a connect6 program that allows none
/// below it). damon refuses to run (125) naming the setting and the way out, starts nothing,
/// and leaves nothing: no group, no parent it made, nothing attached beside the parent's own.
#[test]
fn an_attach_refused_midway_leaves_nothing_and_names_the_way_out() {
    let root = if cgroup_version() == "v2" { std::path::PathBuf::from("/sys/fs/cgroup") } else { UNIFIED.into() };
    if !root.join("cgroup.procs").exists() {
        skip_elsewhere("a cgroup2 hierarchy (v2, or beside v1 as the host's)");
        return;
    }
    let parent = format!("/damon-test-exclusive-{}", std::process::id());
    let parent_dir = root.join(parent.trim_start_matches('/'));
    std::fs::create_dir(&parent_dir).unwrap_or_else(|e| panic!("mkdir {}: {}", parent_dir.display(), e));
    attach_exclusive_connect6(&parent_dir);
    let own = attached_programs(&parent_dir);
    let dir = TestDir::new("network-refused-midway");
    let marker = dir.path("started");
    let mut cmd = damon(&dir);
    cmd.env("DAMON_CGROUP_PARENT", &parent).env("DAMON_IP_DENY", "127.0.0.2").arg("touch").arg(&marker);
    let run = run(cmd, &dir);
    let below: Vec<std::path::PathBuf> = std::fs::read_dir(&parent_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().map_or(false, |t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    let attached = attached_programs(&parent_dir);
    // Its programs go with it.
    let _ = std::fs::remove_dir(&parent_dir);
    // The parent damon made in each v1 hierarchy.
    let made = remove_cgroup_dirs(&parent);
    run.assert_code(125);
    assert!(
        run.stderr.contains("cannot put DAMON_IP_DENY on the workload's group")
            && run.stderr.contains("a group above holds a program of this kind attached alone")
            && run.stderr.contains("set DAMON_CGROUP_PARENT to a group outside it")
            && run.stderr.contains("or unset them"),
        "{}",
        run.explain()
    );
    assert!(!marker.exists(), "the command started\n{}", run.explain());
    assert!(below.is_empty(), "left in {}: {:?}\n{}", parent_dir.display(), below, run.explain());
    assert_eq!(attached, own, "programs on {}\n{}", parent_dir.display(), run.explain());
    assert!(made.is_empty(), "parents left: {:?}\n{}", made, run.explain());
}

#[test]
fn nothing_of_the_programs_outlives_a_sigkilled_damon() {
    let dir = TestDir::new("network-sigkill");
    let port = free_port();
    let mut cmd = damon(&dir);
    cmd.env("DAMON_IP_DENY", "127.0.0.2").env("DAMON_BIND_PORTS", port.to_string());
    let (mut damon, listening) = serving(cmd, &dir, port);
    assert_eq!(listening, port, "{}", dir.log());
    // The group in the cgroup2 hierarchy: the workload's own, or on v1 its twin.
    let group = container_dirs(&dir)
        .into_iter()
        .find(|d| cgroup_version() == "v2" || d.starts_with(UNIFIED))
        .unwrap_or_else(|| panic!("no group in the cgroup2 hierarchy\n{}", dir.log()));
    let programs = attached_programs(&group);
    // A packet program per direction (judging and counting), connect (2) and bind (2).
    assert_eq!(programs.len(), 6, "programs on {}: {:?}", group.display(), programs);
    signal(damon.id(), Signal::SIGKILL);
    let _ = damon.wait();
    wait_for("the guard to remove the group", Duration::from_secs(10), || !group.exists());
    // The kernel frees a group's programs once the group is released, after a grace period.
    wait_for("the kernel to free the programs", Duration::from_secs(10), || {
        !programs.iter().any(|&id| program_exists(id))
    });
}

/// damon in a mount namespace of its own from which the cgroup2 hierarchy beside v1 is
/// unmounted: a v1 host without it, as many older distributions are.
fn damon_without_cgroup2(dir: &TestDir) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.args([
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        &format!("umount {} && exec \"$0\" \"$@\"", UNIFIED),
        DAMON,
    ]);
    in_clean_environment(&mut cmd, dir);
    cmd
}

#[test]
fn without_a_cgroup2_hierarchy_the_rules_are_refused_and_the_run_goes_on_uncounted() {
    if cgroup_version() != "v1" || !std::path::Path::new(UNIFIED).join("cgroup.procs").exists() {
        // The VM's host has cgroup2 alone: without it there is no cgroup at all.
        skip_elsewhere("a v1 host with the cgroup2 hierarchy beside v1 (the host's layout)");
        return;
    }
    let dir = TestDir::new("network-no-cgroup2");
    let marker = dir.path("started");
    for (var, value) in [("DAMON_IP_DENY", "169.254.169.254"), ("DAMON_BIND_PORTS", "nomad")] {
        let mut cmd = damon_without_cgroup2(&dir);
        cmd.env(var, value).arg("touch").arg(&marker);
        let run = run(cmd, &dir);
        run.assert_code(125);
        assert!(
            run.stderr.contains(&format!("{} need cgroup BPF programs on a cgroup2 group", var))
                && run.stderr.contains(&format!("or unset {}", var)),
            "{}",
            run.explain()
        );
        assert!(!marker.exists(), "{}={} started the command", var, value);
    }
    // Without a rule the run goes on, its traffic uncounted, and --check says why.
    let mut cmd = damon_without_cgroup2(&dir);
    cmd.arg(workload()).args(["exit", "0"]);
    let uncounted = run(cmd, &dir);
    uncounted.assert_code(0);
    assert!(!uncounted.log.contains("\"network_sent_bytes\""), "{}", uncounted.explain());
    let mut cmd = damon_without_cgroup2(&dir);
    cmd.arg("--check");
    let check = run(cmd, &dir);
    check.assert_code(0);
    assert!(
        check.stdout.contains(
            "network accounting:          unavailable, the network_* figures are absent: no cgroup2 hierarchy"
        ),
        "{}",
        check.explain()
    );
}
