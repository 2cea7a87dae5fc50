//! No orphans, whatever the workload does: a workload that ignores stop signals, starts a
//! setsid() daemon and a double-forked orphan and keeps spawning while it is stopped, ended by
//! SIGTERM, SIGINT, SIGKILL of damon, or its own exit. After each run nothing of it is left,
//! and the task cgroup damon ran in is as it was made.
//!
//! DAMON_ORPHAN_RUNS sets the number of runs (default 100, a quarter for each ending).

#![cfg(target_os = "linux")]

mod common;

use common::*;
use nix::sys::signal::Signal;
use std::fs;
use std::process::Stdio;
use std::time::Duration;

#[derive(Debug, Clone, Copy)]
enum Ending {
    Term,
    Int,
    Kill,
    ChildExit,
}

const ENDINGS: [Ending; 4] = [Ending::Term, Ending::Int, Ending::Kill, Ending::ChildExit];
const PID_FILES: [&str; 4] = ["child.pid", "daemon.pid", "orphan.pid", "spawner.pid"];

#[test]
fn a_swarm_that_forks_setsids_and_keeps_spawning_leaves_nothing_whatever_ends_it() {
    let runs: usize = std::env::var("DAMON_ORPHAN_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    let task = TaskCgroup::new("orphans");
    let dir = TestDir::new("orphans");
    // (runs, processes left, groups left) by ending
    let mut tally = [(0usize, 0usize, 0usize); 4];
    let mut reports = Vec::new();
    for run in 0..runs {
        let ending = ENDINGS[run % ENDINGS.len()];
        for file in PID_FILES {
            let _ = fs::remove_file(dir.path(file));
        }
        let mut cmd = task.damon(&dir);
        cmd.env("DAMON_KILL_TIMEOUT", "300ms")
            .env("DAMON_PROCESS_LIMIT", "500")
            .env("DAMON_MEMORY_LIMIT", "256")
            .args([workload().to_str().unwrap(), "swarm", dir.0.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Ending::ChildExit = ending {
            cmd.arg("300");
        }
        let mut damon = cmd.spawn().expect("spawn damon");
        wait_for("the swarm to start", Duration::from_secs(30), || read_pid(&dir.path("child.pid")).is_some());
        match ending {
            Ending::Term => signal(damon.id(), Signal::SIGTERM),
            Ending::Int => signal(damon.id(), Signal::SIGINT),
            Ending::Kill => signal(damon.id(), Signal::SIGKILL),
            Ending::ChildExit => {}
        }
        let status = damon.wait().expect("wait for damon");
        let expected = match ending {
            Ending::Term | Ending::Int => Some(137),
            Ending::ChildExit => Some(3),
            Ending::Kill => None,
        };
        let left = task.left_behind(&dir, &PID_FILES);
        let entry = &mut tally[run % ENDINGS.len()];
        entry.0 += 1;
        entry.1 += left.processes;
        entry.2 += left.groups;
        if status.code() != expected || !left.details.is_empty() {
            reports.push(format!(
                "run {} ({:?}): status {}, expected {:?}; left {:#?}\n--- log\n{}",
                run,
                ending,
                status,
                expected,
                left.details,
                dir.log()
            ));
        }
        let _ = fs::remove_file(dir.path("damon.log"));
    }
    for (ending, (runs, processes, groups)) in ENDINGS.iter().zip(tally) {
        println!("orphans: {:?}: {} runs, {} processes left, {} groups left", ending, runs, processes, groups);
    }
    assert!(reports.is_empty(), "{} of {} runs went wrong:\n{}", reports.len(), runs, reports.join("\n"));
}
