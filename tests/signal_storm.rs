//! Signal storms: hundreds of SIGTERM, SIGINT, SIGHUP and SIGUSR1 sent to damon while its
//! child starts, runs and exits. damon never hangs, kills at most once, returns the status the
//! child really ended with, and no signal reaches a process outside the workload (a decoy
//! beside it counts what it receives).

#![cfg(target_os = "linux")]

mod common;

use common::*;
use nix::sys::signal::Signal;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const STORM: [Signal; 4] = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGUSR1];
const RUNS: usize = 20;

/// Sends the storm's signals to `pid`, in turn, until `calm` is set; returns how many it sent.
fn storm(pid: u32, calm: Arc<AtomicBool>, sent: Arc<AtomicUsize>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut i = 0;
        while !calm.load(Ordering::Relaxed) {
            // ESRCH once damon is gone (or a zombie): the storm simply stops counting.
            if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), STORM[i % STORM.len()]).is_ok() {
                sent.fetch_add(1, Ordering::Relaxed);
            }
            i += 1;
            std::thread::sleep(Duration::from_micros(200));
        }
    })
}

/// A process beside the workload that prints every signal it receives; killed when dropped,
/// so that a failed test leaves it behind neither.
struct Decoy(Child);

impl Drop for Decoy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn decoy() -> (Decoy, BufReader<std::process::ChildStdout>) {
    let mut decoy = std::process::Command::new(workload())
        .arg("wait-signals")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the decoy");
    let mut out = BufReader::new(decoy.stdout.take().unwrap());
    read_until(&mut out, "ready");
    (Decoy(decoy), out)
}

fn assert_decoy_untouched(decoy: Decoy, mut out: BufReader<std::process::ChildStdout>) {
    signal(decoy.0.id(), Signal::SIGTERM);
    let mut lines = String::new();
    let mut line = String::new();
    while out.read_line(&mut line).unwrap_or(0) > 0 {
        lines.push_str(&line);
        line.clear();
    }
    drop(decoy);
    assert_eq!(lines.trim(), "SIGTERM", "the decoy outside the workload received signals it was not sent");
}

/// The exit status the log's "damon exiting" line gives, and its ending.
fn ending_of(log: &str) -> (Option<i32>, String) {
    let line = log.lines().find(|l| l.contains("\"message\":\"damon exiting\"")).unwrap_or("");
    let field = |name: &str| line.split(&format!("\"{}\":", name)).nth(1).map(|rest| rest.to_string());
    let status = field("exit_status").and_then(|v| v.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok());
    let ending = field("ending").and_then(|v| v.split('"').nth(1).map(str::to_string)).unwrap_or_default();
    (status, ending)
}

#[test]
fn a_storm_while_the_child_starts_runs_and_exits_gives_the_childs_own_status() {
    let (decoy, decoy_out) = decoy();
    let mut total_sent = 0;
    let mut outcomes = std::collections::BTreeMap::new();
    for run in 0..RUNS {
        let dir = TestDir::new(&format!("storm-{}", run));
        let mut cmd = damon(&dir);
        // Under Nomad, whose default passes every stop on; at a terminal a second stop would
        // kill the tree at once (tests/stop.rs).
        cmd.env("DAMON_MEMORY_LIMIT", "64")
            .env("NOMAD_ALLOC_ID", "storm")
            .args([workload().to_str().unwrap(), "ride-out", "300"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let (calm, sent) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let damon = cmd.spawn().expect("spawn damon");
        let pid = damon.id();
        // From the first moments on: some signals arrive before the child blocks them.
        std::thread::sleep(Duration::from_millis(run as u64 % 10));
        let stormer = storm(pid, Arc::clone(&calm), Arc::clone(&sent));
        let result = finish(damon, &dir, "damon workload ride-out 300", Duration::from_secs(20));
        calm.store(true, Ordering::Relaxed);
        stormer.join().unwrap();
        total_sent += sent.load(Ordering::Relaxed);
        let code = result.code();
        *outcomes.entry(code).or_insert(0) += 1;
        // The child either rode the storm out (7) or died of a stop that came before it blocked
        // them; damon itself may die of one that came before it took over its signals.
        let (logged_status, ending) = ending_of(&result.log);
        match code {
            7 => assert_eq!(ending, "exited", "{}", result.explain()),
            129 | 130 | 138 | 143 => {
                if logged_status.is_some() {
                    assert_eq!(ending, "killed by a signal", "{}", result.explain());
                }
            }
            -1 => {
                let signal = result.status.to_string();
                assert!(
                    result.log.is_empty() || !result.log.contains("child started"),
                    "damon died of a signal after starting the child: {}\n{}",
                    signal,
                    result.explain()
                );
            }
            other => panic!("unexpected status {}\n{}", other, result.explain()),
        }
        if let Some(logged) = logged_status {
            assert_eq!(logged, code, "the log's status differs from damon's\n{}", result.explain());
        }
        assert!(
            !result.log.contains("did not stop in time"),
            "a kill after a stop the child never saw\n{}",
            result.explain()
        );
        assert_no_groups_left(pid);
    }
    println!("storm: {} runs, {} signals sent, outcomes {:?}", RUNS, total_sent, outcomes);
    assert_decoy_untouched(decoy, decoy_out);
}

#[test]
fn a_storm_on_a_child_that_ignores_it_kills_once_after_the_timeout() {
    let (decoy, decoy_out) = decoy();
    let mut total_sent = 0;
    for run in 0..RUNS / 2 {
        let dir = TestDir::new(&format!("storm-stubborn-{}", run));
        let mut cmd = damon(&dir);
        cmd.env("DAMON_KILL_TIMEOUT", "300ms")
            .args([workload().to_str().unwrap(), "ignore-stop", dir.0.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let damon = cmd.spawn().expect("spawn damon");
        let pid = damon.id();
        wait_for("the workload's pid files", Duration::from_secs(10), || {
            read_pid(&dir.path("child.pid")).is_some() && read_pid(&dir.path("grandchild.pid")).is_some()
        });
        let grandchild = read_pid(&dir.path("grandchild.pid")).unwrap();
        let (calm, sent) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let stormer = storm(pid, Arc::clone(&calm), Arc::clone(&sent));
        let result = finish(damon, &dir, "damon workload ignore-stop", Duration::from_secs(20));
        calm.store(true, Ordering::Relaxed);
        stormer.join().unwrap();
        total_sent += sent.load(Ordering::Relaxed);
        result.assert_code(137);
        assert_eq!(result.log.matches("did not stop in time").count(), 1, "one kill\n{}", result.explain());
        assert_eq!(result.log.matches("stopping: signal passed on").count(), 1, "one stop\n{}", result.explain());
        assert!(!alive(grandchild), "the setsid grandchild outlived the storm\n{}", result.explain());
        assert_no_groups_left(pid);
    }
    println!("storm: {} runs against a stubborn child, {} signals sent", RUNS / 2, total_sent);
    assert_decoy_untouched(decoy, decoy_out);
}
