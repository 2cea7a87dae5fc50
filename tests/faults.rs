//! damon killed at any instant leaves nothing behind: hundreds of starts, each SIGKILLed at a
//! random moment (in its first milliseconds, and around the child's start), inside a task
//! cgroup as Nomad gives one; after each, the task cgroup must be exactly as it was made: no
//! group, no leaf, the same controllers passed down, no process. The same with damon's whole
//! process group SIGKILLed, as Nomad kills it after every task: damon puts its guard in a group
//! of its own before the first change, and a kill a moment earlier finds nothing to undo. And
//! the guard itself killed while damon runs: damon says so and still cleans up at its end. And
//! under DAMON_SANDBOX=Y, killed while the child makes the workload's namespaces (or, with a
//! PID namespace, while its init does): the same, and no mount reaches the host's namespace.
//!
//! DAMON_FAULT_TRIALS sets the number of starts (default 500 on the host, 200 in the cgroup v2
//! VM, where a start is far slower); DAMON_FAULT_SEED replays a sequence of moments.

#![cfg(target_os = "linux")]

mod common;

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::fs;
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A small xorshift generator: the moments only need to spread, and a seed must replay them.
struct Moments(u64);

impl Moments {
    fn next_below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound.max(1)
    }
}

/// damon in the task cgroup; with `own_group`, as the leader of a new process group, as Nomad
/// starts a task.
fn start_contained(task: &TaskCgroup, dir: &TestDir, own_group: bool, sandboxed: bool) -> Child {
    let mut cmd = task.damon(dir);
    if sandboxed {
        let rules = format!("defaults,rx:{},rwc:{}", workload().parent().unwrap().display(), dir.0.display());
        cmd.env("DAMON_SANDBOX", "Y").env("DAMON_SANDBOX_PATHS", rules);
    }
    if own_group {
        // SAFETY: setpgid(2) only, between fork and exec.
        unsafe {
            cmd.pre_exec(|| nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0)).map_err(std::io::Error::from));
        }
    }
    cmd.env("DAMON_MEMORY_LIMIT", "64")
        .env("DAMON_CPU_LIMIT", "1000")
        .env("DAMON_PROCESS_LIMIT", "100")
        .env("DAMON_KILL_TIMEOUT", "1s")
        .args([workload().to_str().unwrap(), "ignore-stop", dir.0.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd.spawn().expect("spawn damon")
}

/// Waits until the shell started by [`start_contained`] has become damon (exec changes the
/// command name), and returns that moment. Checked without pause: the moment must be exact.
fn exec_of_damon(damon: &Child) -> Instant {
    let comm = format!("/proc/{}/comm", damon.id());
    let deadline = Instant::now() + Duration::from_secs(30);
    while fs::read_to_string(&comm).map_or(false, |c| c.trim() != "damon") && Instant::now() < deadline {}
    Instant::now()
}

/// How long damon takes from its exec until the workload's child runs, in an unharmed start.
fn time_to_child(task: &TaskCgroup, dir: &TestDir, sandboxed: bool) -> Duration {
    let mut damon = start_contained(task, dir, false, sandboxed);
    let exec = exec_of_damon(&damon);
    wait_for("the workload's child", Duration::from_secs(30), || read_pid(&dir.path("child.pid")).is_some());
    let elapsed = exec.elapsed();
    signal(damon.id(), Signal::SIGTERM);
    let _ = damon.wait();
    let left = task.settle(Duration::from_secs(10));
    assert!(left.is_empty(), "an unharmed run left: {:#?}\n--- log\n{}", left, dir.log());
    elapsed
}

/// Who the SIGKILL at each random moment reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Killed {
    Damon,
    /// damon's process group (damon leads it), as Nomad's killProcessTree sends it.
    ProcessGroup,
}

#[test]
fn damon_sigkilled_at_random_moments_leaves_the_task_cgroup_as_it_found_it() {
    let default_trials = if cgroup_version() == "v2" { 200 } else { 500 };
    sigkilled_at_random_moments("faults", Killed::Damon, default_trials, false);
}

#[test]
fn damon_sigkilled_at_random_moments_while_it_makes_the_sandbox_leaves_nothing() {
    let default_trials = if cgroup_version() == "v2" { 60 } else { 150 };
    sigkilled_at_random_moments("faults-sandbox", Killed::Damon, default_trials, true);
}

#[test]
fn damons_process_group_sigkilled_at_random_moments_leaves_the_task_cgroup_as_it_found_it() {
    let default_trials = if cgroup_version() == "v2" { 100 } else { 250 };
    sigkilled_at_random_moments("faults-group", Killed::ProcessGroup, default_trials, false);
}

/// `default_trials` starts (DAMON_FAULT_TRIALS), each SIGKILLed (`killed`) at a random moment;
/// the task cgroup must be as it was made after each, and the host's mounts as they were.
fn sigkilled_at_random_moments(name: &str, killed: Killed, default_trials: u64, sandboxed: bool) {
    let trials: u64 = std::env::var("DAMON_FAULT_TRIALS").ok().and_then(|v| v.parse().ok()).unwrap_or(default_trials);
    let seed = std::env::var("DAMON_FAULT_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 | 1);
    let mut moments = Moments(seed);
    let task = TaskCgroup::new(name);
    let dir = TestDir::new(name);
    let mounts = || fs::read_to_string("/proc/self/mountinfo").unwrap().lines().count();
    let mounts_before = mounts();
    let child_start = time_to_child(&task, &dir, sandboxed);

    let (mut with_child, mut groups_left, mut processes_left) = (0, 0, 0);
    let mut reports = Vec::new();
    for trial in 0..trials {
        for file in ["child.pid", "grandchild.pid"] {
            let _ = fs::remove_file(dir.path(file));
        }
        // Half in damon's first 10 ms after its exec, half around the moment the child starts.
        let delay_us = if trial % 2 == 0 {
            moments.next_below(10_000)
        } else {
            let around = child_start.as_micros() as u64;
            around / 2 + moments.next_below(around)
        };
        let mut damon = start_contained(&task, &dir, killed == Killed::ProcessGroup, sandboxed);
        let at = exec_of_damon(&damon) + Duration::from_micros(delay_us);
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        match killed {
            Killed::Damon => signal(damon.id(), Signal::SIGKILL),
            Killed::ProcessGroup => {
                let _ = kill(Pid::from_raw(-(damon.id() as i32)), Signal::SIGKILL);
            }
        }
        let _ = damon.wait();
        if read_pid(&dir.path("child.pid")).is_some() {
            with_child += 1;
        }
        let left = task.left_behind(&dir, &["child.pid", "grandchild.pid"]);
        groups_left += left.groups;
        processes_left += left.processes;
        if !left.details.is_empty() {
            reports.push(format!(
                "trial {} (killed {} µs after damon's exec): {:#?}\n--- log\n{}",
                trial,
                delay_us,
                left.details,
                dir.log()
            ));
        }
    }
    println!(
        "faults: {} starts SIGKILLed ({:?}{}; seed {}, child started {:?} after exec; {} of them with the workload running): {} groups left, {} processes left",
        trials, killed, if sandboxed { ", sandboxed" } else { "" }, seed, child_start, with_child, groups_left, processes_left
    );
    assert_eq!(mounts(), mounts_before, "the host's mount table changed");
    assert!(
        reports.is_empty(),
        "{} of {} starts left something behind:\n{}",
        reports.len(),
        trials,
        reports.join("\n")
    );
}

#[test]
fn when_the_guard_is_killed_damon_says_so_and_still_cleans_up() {
    let task = TaskCgroup::new("guard-killed");
    let dir = TestDir::new("guard-killed");
    let mut damon = start_contained(&task, &dir, false, false);
    damon.stderr = None;
    wait_for("the workload's pid files", Duration::from_secs(30), || {
        read_pid(&dir.path("child.pid")).is_some() && read_pid(&dir.path("grandchild.pid")).is_some()
    });
    let (child, grandchild) =
        (read_pid(&dir.path("child.pid")).unwrap(), read_pid(&dir.path("grandchild.pid")).unwrap());
    let guards: Vec<u32> = children_of(damon.id()).into_iter().filter(|&pid| pid != child).collect();
    assert_eq!(guards.len(), 1, "damon's children besides the workload: {:?}", guards);
    signal(guards[0], Signal::SIGKILL);
    wait_for("damon to report its guard's end", Duration::from_secs(10), || {
        dir.log().contains("damon's guard process ended")
    });
    assert!(alive(child) && alive(grandchild), "the workload must run on without the guard");
    signal(damon.id(), Signal::SIGTERM);
    let run = finish(damon, &dir, "damon workload ignore-stop", Duration::from_secs(30));
    run.assert_code(137).assert_log_contains("killed by SIGKILL");
    let left = task.settle(Duration::from_secs(10));
    assert!(left.is_empty(), "left behind: {:#?}\n{}", left, run.explain());
    assert!(!alive(grandchild), "the setsid grandchild outlived damon\n{}", run.explain());
}
