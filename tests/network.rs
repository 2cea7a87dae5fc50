//! The workload's network, as cgroup BPF programs on its group see it (issue 28): the bytes and
//! packets its sockets send and receive, in the metrics and the "damon exiting" line; on a v1
//! host through the group's twin in the cgroup2 hierarchy mounted beside v1. All traffic stays
//! on loopback, with the test's own end outside the workload's group.

#![cfg(target_os = "linux")]

mod common;

use common::*;
use nix::sys::signal::Signal;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::process::Stdio;
use std::time::Duration;

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
