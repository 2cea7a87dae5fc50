//! The metrics endpoint, as Prometheus and an operator see it: promtool finds no problem
//! outside the original Damon's names, a real Prometheus server scrapes damon and sees the
//! child's CPU seconds rise, values agree with the group's own files, the Grafana dashboard
//! asks only for families a scrape contains, and metrics survive a run without containment
//! and a port that is taken.

#![cfg(target_os = "linux")]

mod common;
#[path = "common/loop_device.rs"]
mod loop_device;
#[path = "common/prometheus.rs"]
mod prometheus;

use common::metric_value as value;
use common::*;
use loop_device::LoopDevice;
use nix::sys::signal::Signal;
use prometheus::Prometheus;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

fn scrape(port: u16) -> String {
    let mut text = None;
    wait_for("damon's metrics endpoint", Duration::from_secs(10), || {
        text = http_get(port, "/metrics");
        text.is_some()
    });
    text.unwrap()
}

fn spawn_damon(dir: &TestDir, port: u16, args: &[&str]) -> Child {
    let mut cmd = damon(dir);
    cmd.env("DAMON_ADDR", format!("127.0.0.1:{}", port))
        .env("NOMAD_JOB_NAME", "shop")
        .env("NOMAD_TASK_NAME", "web")
        .arg(workload())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd.spawn().expect("spawn damon")
}

fn stop(child: Child, dir: &TestDir) -> Run {
    signal(child.id(), Signal::SIGTERM);
    finish(child, dir, "damon with metrics", Duration::from_secs(20))
}

#[test]
fn promtool_finds_no_problem_outside_the_original_names() {
    let dir = TestDir::new("promtool");
    let port = free_port();
    let damon = spawn_damon(&dir, port, &["alloc", "16", "60"]);
    let text = scrape(port);
    stop(damon, &dir);
    let problems = promtool_problems(&text);
    assert!(problems.is_empty(), "promtool: {:?}\n{}", problems, text);
    // Every family carries the task's labels, and the original's families are all there
    // except those Linux cannot measure (other IO, IO notifications; on v1 all IO where
    // blk-throttle counts nothing).
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        assert!(line.contains("nomad_job_name=\"shop\",nomad_task_name=\"web\""), "unlabelled: {}", line);
    }
    let measured =
        |n: &str| !n.contains("other") && !n.contains("io_notifications") && (io_is_measured() || !n.contains("_io_"));
    for (name, kind, _) in ORIGINAL_FAMILIES.iter().filter(|(n, _, _)| measured(n)) {
        assert!(text.contains(&format!("# TYPE {} {}", name, kind)), "missing {} ({})\n{}", name, kind, text);
    }
}

/// The original's families in its units, each checked against what it must equal or bound:
/// seconds of a one-second burn, the limits as set (hertz, bytes, percent of the machine from
/// --check's MHz and CPUs), page faults of 32 MiB touched. And its counters only grow.
#[test]
fn the_original_families_keep_their_names_types_and_units() {
    let dir = TestDir::new("original-units");
    let port = free_port();
    let script = format!("{w} burn 1 >/dev/null; exec {w} alloc 32 60", w = workload().display());
    let mut cmd = damon(&dir);
    cmd.env("DAMON_ADDR", format!("127.0.0.1:{}", port))
        .env("DAMON_MEMORY_LIMIT", "256")
        .env("DAMON_CPU_LIMIT", "1000")
        .args(["sh", "-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let damon = cmd.spawn().unwrap();
    wait_for("the workload to hold its memory", Duration::from_secs(30), || {
        value(&scrape(port), "damon_memory_usage_bytes", "").unwrap_or(0.0) > 32.0 * 1048576.0
    });
    let first = scrape(port);
    std::thread::sleep(Duration::from_millis(1100));
    let text = scrape(port);
    stop(damon, &dir);
    assert!(original_type_mismatches(&text).is_empty(), "{:?}\n{}", original_type_mismatches(&text), text);
    let v = |family: &str| value(&text, family, "").unwrap_or_else(|| panic!("no {}\n{}", family, text));
    let (mhz, cpus) = (
        mhz_per_core() as f64,
        nix::unistd::sysconf(nix::unistd::SysconfVar::_NPROCESSORS_ONLN).unwrap().unwrap() as f64,
    );
    // seconds: a one-second burn (not milliseconds, not ticks), as the conventional family says.
    let cpu = v("damon_cpu_user_seconds") + v("damon_cpu_kernel_seconds");
    assert!((0.2..5.0).contains(&cpu), "{} s of CPU for a 1 s burn", cpu);
    let total = value(&text, "damon_cpu_seconds_total", "mode=\"user\"").unwrap()
        + value(&text, "damon_cpu_seconds_total", "mode=\"system\"").unwrap();
    assert!((cpu - total).abs() < 1e-6, "{} against damon_cpu_seconds_total {}", cpu, total);
    // hertz and percent of the machine: the limit as set.
    assert_eq!(v("damon_cpu_limit_hz"), 1000e6);
    let percent = 1000.0 / (mhz * cpus) * 100.0;
    assert!(
        (v("damon_cpu_limit_percent") - percent).abs() < 1e-6,
        "{} %, expected {}",
        v("damon_cpu_limit_percent"),
        percent
    );
    for family in ["damon_cpu_user_percent", "damon_cpu_kernel_percent"] {
        assert!((0.0..=100.0).contains(&v(family)), "{} {}", family, v(family));
    }
    for (hz, percent) in
        [("damon_cpu_user_hz", "damon_cpu_user_percent"), ("damon_cpu_kernel_hz", "damon_cpu_kernel_percent")]
    {
        let expected = v(percent) / 100.0 * cpus * mhz * 1e6;
        assert!((v(hz) - expected).abs() <= expected * 1e-9 + 1e-6, "{} {}, expected {}", hz, v(hz), expected);
    }
    // bytes: the limit as set, and the 32 MiB held within it.
    assert_eq!(v("damon_memory_limit_bytes"), 256.0 * 1048576.0);
    for family in ["damon_memory_working_set_bytes", "damon_memory_commit_charge_bytes"] {
        assert!((32.0 * 1048576.0..256.0 * 1048576.0).contains(&v(family)), "{} {}", family, v(family));
    }
    // page faults: at least one for each 4 KiB page of the 32 MiB touched.
    assert!(v("damon_memory_page_fault_total") >= 8192.0, "{}", v("damon_memory_page_fault_total"));
    // The counters: whole numbers, never lower than a scrape before.
    for (name, _, _) in ORIGINAL_FAMILIES.iter().filter(|(_, kind, _)| *kind == "counter") {
        if let (Some(before), Some(after)) = (value(&first, name, ""), value(&text, name, "")) {
            assert!(after >= before && after.fract() == 0.0, "{}: {} then {}", name, before, after);
        }
    }
    assert!(
        value(&text, "damon_cpu_notifications_total", "").is_some()
            && value(&text, "damon_memory_notifications_total", "").is_some(),
        "{}",
        text
    );
}

#[test]
fn values_agree_with_the_groups_own_files() {
    let dir = TestDir::new("agree");
    let port = free_port();
    // Burn a second, then hold 32 MiB and stay idle: the figures then stand still.
    let script = format!("{w} burn 1 >/dev/null; exec {w} alloc 32 60", w = workload().display());
    let mut cmd = damon(&dir);
    cmd.env("DAMON_ADDR", format!("127.0.0.1:{}", port))
        .env("DAMON_MEMORY_LIMIT", "256")
        .args(["sh", "-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let damon = cmd.spawn().unwrap();
    let dirs = container_dirs(&dir);
    wait_for("the workload to hold its memory", Duration::from_secs(20), || {
        value(&scrape(port), "damon_memory_usage_bytes", "").unwrap_or(0.0) > 32.0 * 1048576.0
    });
    std::thread::sleep(Duration::from_millis(1100));
    let text = scrape(port);
    let cpu = value(&text, "damon_cpu_seconds_total", "mode=\"user\"").unwrap()
        + value(&text, "damon_cpu_seconds_total", "mode=\"system\"").unwrap();
    let usage = value(&text, "damon_memory_usage_bytes", "").unwrap();
    let (file_cpu, file_usage) = if cgroup_version() == "v2" {
        let stat = read_trimmed(&group_file(&dirs, "cpu.stat"));
        let usec: f64 = stat.lines().find_map(|l| l.strip_prefix("usage_usec ")).unwrap().parse().unwrap();
        (usec / 1e6, read_trimmed(&group_file(&dirs, "memory.current")).parse::<f64>().unwrap())
    } else {
        let stat = read_trimmed(&group_file(&dirs, "cpuacct.stat"));
        let ticks: f64 = stat.lines().map(|l| l.split_whitespace().nth(1).unwrap().parse::<f64>().unwrap()).sum();
        (ticks / 100.0, read_trimmed(&group_file(&dirs, "memory.usage_in_bytes")).parse::<f64>().unwrap())
    };
    stop(damon, &dir);
    // Tolerances: CPU within 20 ms (v1 counts 10 ms ticks); memory within 5% (the kernel
    // charges a little as pages come and go between the two reads).
    assert!((cpu - file_cpu).abs() <= 0.02, "scrape {} s, files {} s\n{}", cpu, file_cpu, text);
    assert!((usage - file_usage).abs() <= file_usage * 0.05, "scrape {} B, files {} B", usage, file_usage);
    // Only that the comparison is not of two zeros: how much CPU the burn got depends on the load.
    assert!(cpu > 0.2, "the burn used {} s", cpu);
}

#[test]
fn a_burst_of_scrapes_reads_the_group_at_most_once_a_second() {
    let dir = TestDir::new("fresh");
    let port = free_port();
    let damon = spawn_damon(&dir, port, &["burn", "30"]);
    let _ = scrape(port);
    let started = Instant::now();
    let (first, second) = (scrape(port), scrape(port));
    let elapsed = started.elapsed();
    stop(damon, &dir);
    let cpu = |text: &str| value(text, "damon_cpu_seconds_total", "mode=\"user\"");
    // A busy child's CPU time changes constantly: equal figures mean one sample served both.
    if elapsed < Duration::from_secs(1) {
        assert_eq!(cpu(&first), cpu(&second), "two scrapes within a second read the group twice");
    }
}

#[test]
fn metrics_work_when_the_child_runs_uncontained() {
    let dir = TestDir::new("uncontained-metrics");
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o777)).unwrap();
    let port = free_port();
    let mut cmd = damon(&dir);
    cmd.uid(65534)
        .gid(65534)
        .env("DAMON_ADDR", format!("127.0.0.1:{}", port))
        .env("DAMON_ENFORCE_MEMORY_LIMIT", "N")
        .env("DAMON_ENFORCE_CPU_LIMIT", "N")
        .arg(workload())
        .args(["sleep", "60"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let damon = cmd.spawn().unwrap();
    // The endpoint opens just before the child starts: wait for the child.
    let mut text = String::new();
    wait_for("damon_up 1", Duration::from_secs(10), || {
        text = scrape(port);
        value(&text, "damon_up", "") == Some(1.0)
    });
    let run = stop(damon, &dir);
    run.assert_log_contains("running the command uncontained");
    assert!(value(&text, "process_resident_memory_bytes", "").unwrap() > 0.0, "{}", text);
    assert!(value(&text, "damon_start_time_seconds", "").is_some(), "{}", text);
    assert!(promtool_problems(&text).is_empty(), "{}", text);
}

#[test]
fn a_port_that_is_taken_loses_the_metrics_not_the_service() {
    let dir = TestDir::new("taken");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut cmd = damon(&dir);
    cmd.env("DAMON_ADDR", format!("127.0.0.1:{}", port)).args(["sh", "-c", "echo served; exit 6"]);
    let run = run(cmd, &dir);
    run.assert_code(6).assert_log_contains("cannot serve metrics; the workload runs without them");
    assert_eq!(run.stdout, "served\n");
    // Well-formed but unresolvable: a warning too (a malformed address is a configuration
    // error, tests/bad_input.rs).
    let mut cmd = damon_without_network(&dir);
    cmd.env("DAMON_ADDR", "no-such-host.invalid:9000").args(["true"]);
    common::run(cmd, &dir).assert_code(0).assert_log_contains("cannot serve metrics");
}

/// The metric names in a dashboard's queries.
fn dashboard_families(dashboard: &str) -> Vec<String> {
    let mut names = Vec::new();
    for rest in dashboard.split("\"expr\": \"").skip(1) {
        // The query runs to the first quote that JSON does not escape.
        let mut expr = String::new();
        let mut escaped = false;
        for c in rest.chars() {
            match (c, escaped) {
                ('"', false) => break,
                ('\\', false) => escaped = true,
                _ => {
                    expr.push(c);
                    escaped = false;
                }
            }
        }
        let mut word = String::new();
        for c in expr.chars().chain(std::iter::once(' ')) {
            if c.is_ascii_alphanumeric() || c == '_' {
                word.push(c);
            } else {
                if (word.starts_with("damon_") || word.starts_with("process_")) && !names.contains(&word) {
                    names.push(word.clone());
                }
                word.clear();
            }
        }
    }
    names
}

#[test]
fn the_dashboard_asks_only_for_families_a_scrape_contains() {
    // Built in, so that the test also runs where the source tree is not (the VM).
    let families = dashboard_families(include_str!("../dashboards/damon.json"));
    assert!(families.len() >= 10, "the dashboard's queries name only {:?}", families);
    let dir = TestDir::new("dashboard");
    let port = free_port();
    // IO limits, for the panel that shows them: on a device of the test's own.
    let device = LoopDevice::new(4);
    let mut cmd = damon(&dir);
    cmd.env("DAMON_ADDR", format!("127.0.0.1:{}", port))
        .env("DAMON_IO_READ_BANDWIDTH", "1G")
        .env("DAMON_IO_WRITE_BANDWIDTH", "1G")
        .env("DAMON_IO_DEVICES", device.path())
        .env("NOMAD_JOB_NAME", "shop")
        .env("NOMAD_MEMORY_LIMIT", "64")
        .env("NOMAD_MEMORY_MAX_LIMIT", "128")
        .env("NOMAD_CPU_LIMIT", "500")
        .arg(workload())
        .args(["sleep", "60"])
        .stdout(Stdio::null());
    let damon = cmd.spawn().unwrap();
    let text = scrape(port);
    stop(damon, &dir);
    // With an IO limit blk-throttle counts on v1 too: every family is there.
    for family in families {
        assert!(
            text.contains(&format!("\n{}{{", family)) || text.contains(&format!("\n{} ", family)),
            "the dashboard asks for {}, which no scrape has\n{}",
            family,
            text
        );
    }
}

#[test]
fn a_real_prometheus_scrapes_damon_and_sees_the_cpu_seconds_rise() {
    let dir = TestDir::new("prometheus");
    let port = free_port();
    let damon = spawn_damon(&dir, port, &["burn", "60"]);
    let prometheus = Prometheus::start(&dir, port);
    wait_for("Prometheus to report the target up", Duration::from_secs(60), || {
        prometheus.api("/api/v1/targets").contains("\"health\":\"up\"")
    });
    let query = "damon_cpu_seconds_total{mode=\"user\",nomad_job_name=\"shop\"}";
    let mut first = None;
    wait_for("a first stored sample", Duration::from_secs(30), || {
        first = prometheus.query(query);
        first.is_some()
    });
    let mut later = None;
    wait_for("the stored CPU seconds to rise", Duration::from_secs(30), || {
        later = prometheus.query(query);
        later.map_or(false, |v| v > first.unwrap())
    });
    assert_eq!(prometheus.query("damon_up{nomad_task_name=\"web\"}"), Some(1.0));
    // Keep-alive: Prometheus scrapes on the one connection it keeps, as damon's counters
    // (stored by Prometheus) and Prometheus' own count of the connections it opened say.
    let mut requests = None;
    wait_for("five scrapes answered", Duration::from_secs(30), || {
        requests = prometheus.query("damon_http_requests_total");
        requests.map_or(false, |r| r >= 5.0)
    });
    let accepted = prometheus.query("max_over_time(damon_http_connections_accepted_total[1m])");
    let opened = prometheus.connections_to_damon();
    drop(prometheus);
    stop(damon, &dir);
    eprintln!(
        "Prometheus saw {} then {} CPU seconds; {:?} requests on {:?} connections (Prometheus opened {:?})",
        first.unwrap(),
        later.unwrap(),
        requests,
        accepted,
        opened
    );
    assert_eq!(accepted, Some(1.0), "damon accepted more than one connection for {:?} scrapes", requests);
    assert_eq!(opened, Some(1.0), "Prometheus opened more than one connection");
}
