//! A root workload cannot take from damon what damon's stop and cleanup need. damon runs as
//! root, and without DAMON_SANDBOX so does the workload, which may lower damon's resource
//! limits with prlimit(2): seen was RLIMIT_NOFILE lowered to 3, after which damon's cleanup
//! failed with EMFILE, a setsid() process of the workload outlived damon and every group was
//! left. damon and its guard record their limits before the child exists and raise them back
//! where the stop and the cleanup begin. Each test checks that the attack took hold (the
//! lowered limits, read back from /proc) and that the cleanup still reached everything.
//!
//! A hard limit rises again only with CAP_SYS_RESOURCE, which some containers withhold from
//! root: there the workload lowers the soft limits alone (what damon can answer), and says so.

#![cfg(target_os = "linux")]

mod common;

use common::*;
use nix::sys::resource::{getrlimit, Resource, RLIM_INFINITY};
use nix::sys::signal::Signal;
use std::fs;
use std::process::{Child, Stdio};
use std::time::Duration;

/// The workload's part, run by `sh -c ATTACK sh DIR THEN LIMITS...`: starts a process in a
/// session of its own (only damon's kill of the whole tree reaches it), lowers LIMITS
/// (prlimit's options) of damon (its parent) and of damon's guard (damon's other child),
/// writes down what /proc then shows of them, and exits 3 (THEN `exit`) or waits (`wait`).
const ATTACK: &str = r#"
dir=$1 then=$2
shift 2
setsid sleep 1000 </dev/null >/dev/null 2>&1 &
echo $! > "$dir/grandchild.pid"
damon=$PPID
guard=$(grep -l "^PPid:[[:space:]]*$damon\$" /proc/[0-9]*/status 2>/dev/null | grep -v "^/proc/$$/" | cut -d/ -f3)
[ -n "$guard" ] || { echo "no guard among damon's children" >&2; exit 99; }
echo "$guard" > "$dir/guard.pid"
prlimit --pid "$guard" "$@" || exit 98
prlimit --pid "$damon" "$@" || exit 97
cat "/proc/$damon/limits" > "$dir/damon.limits"
cat "/proc/$guard/limits" > "$dir/guard.limits"
echo lowered > "$dir/lowered"
[ "$then" = exit ] && exit 3
sleep 1000
"#;

/// What damon and its guard log when they found their limits lowered and raised them back.
const RAISED_BACK: &str = "raised back to what they were at its start";

/// CAP_SYS_RESOURCE, by its bit in /proc/PID/status's capability sets.
const CAP_SYS_RESOURCE: u32 = 24;

/// One limit the workload lowers: prlimit's option, /proc/PID/limits's name and unit, and
/// the soft limit it sets.
struct Lowered {
    option: &'static str,
    resource: Resource,
    proc_name: &'static str,
    unit: &'static str,
    to: u64,
}

const OPEN_FILES: Lowered = Lowered {
    option: "--nofile",
    resource: Resource::RLIMIT_NOFILE,
    proc_name: "Max open files",
    unit: "files",
    to: 3,
};
const FILE_SIZE: Lowered =
    Lowered { option: "--fsize", resource: Resource::RLIMIT_FSIZE, proc_name: "Max file size", unit: "bytes", to: 0 };
const ADDRESS_SPACE: Lowered =
    Lowered { option: "--as", resource: Resource::RLIMIT_AS, proc_name: "Max address space", unit: "bytes", to: 1 };
const DATA_SIZE: Lowered =
    Lowered { option: "--data", resource: Resource::RLIMIT_DATA, proc_name: "Max data size", unit: "bytes", to: 1 };

/// Whether damon, which has this process's capabilities, may raise a hard limit.
fn can_raise_hard_limits() -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective = status.lines().find_map(|l| l.strip_prefix("CapEff:")).map(str::trim).unwrap_or("0");
    u64::from_str_radix(effective, 16).map_or(false, |caps| caps & (1 << CAP_SYS_RESOURCE) != 0)
}

/// The hard limit the attack sets: the soft one where damon can raise a hard limit back,
/// else the one damon inherits from this process.
fn hard_limit(lowered: &Lowered) -> u64 {
    if can_raise_hard_limits() {
        lowered.to
    } else {
        getrlimit(lowered.resource).expect("getrlimit").1
    }
}

fn shown(limit: u64) -> String {
    if limit == RLIM_INFINITY {
        "unlimited".to_string()
    } else {
        limit.to_string()
    }
}

/// damon, in `task`, running ATTACK with `limits`, then `then`.
fn attacked_damon(task: &TaskCgroup, dir: &TestDir, limits: &[&Lowered], then: &str) -> Child {
    if !can_raise_hard_limits() {
        eprintln!("note: no CAP_SYS_RESOURCE here: the workload lowers damon's soft limits only");
    }
    let options: Vec<String> =
        limits.iter().map(|l| format!("{}={}:{}", l.option, l.to, shown(hard_limit(l)))).collect();
    let mut cmd = task.damon(dir);
    cmd.env("DAMON_MEMORY_LIMIT", "64")
        .env("DAMON_KILL_TIMEOUT", "2s")
        .args(["sh", "-c", ATTACK, "sh", dir.0.to_str().unwrap(), then])
        .args(&options)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn().expect("spawn damon")
}

/// The attack took hold: damon's and its guard's /proc/PID/limits, as the workload saved them
/// after lowering, show each of `limits`.
fn assert_lowered(dir: &TestDir, limits: &[&Lowered], explain: &dyn Fn() -> String) {
    for file in ["damon.limits", "guard.limits"] {
        let saved = fs::read_to_string(dir.path(file)).unwrap_or_default();
        let lines: Vec<String> = saved.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
        for limit in limits {
            let line = format!("{} {} {} {}", limit.proc_name, limit.to, shown(hard_limit(limit)), limit.unit);
            assert!(
                lines.contains(&line),
                "the attack did not take hold: {:?} not in {}:\n{}\n{}",
                line,
                file,
                saved,
                explain()
            );
        }
    }
}

/// Nothing of the workload is left: its setsid() grandchild is gone, no group of damon's is
/// left, and the task cgroup holds no process and no group.
fn assert_nothing_left(task: &TaskCgroup, dir: &TestDir, damon_pid: u32, explain: &dyn Fn() -> String) {
    let grandchild =
        read_pid(&dir.path("grandchild.pid")).unwrap_or_else(|| panic!("no grandchild pid\n{}", explain()));
    assert!(!alive(grandchild), "the setsid grandchild {} outlived damon\n{}", grandchild, explain());
    assert_no_groups_left(damon_pid);
    let left = task.settle(Duration::from_secs(5));
    assert!(left.is_empty(), "left in the task cgroup: {:#?}\n{}", left, explain());
}

/// damon's own run: the attack against damon and its guard, then the child exits 3.
fn child_exits_after(name: &str, limits: &[&Lowered]) -> (Run, TestDir, TaskCgroup, u32) {
    let task = TaskCgroup::new(name);
    let dir = TestDir::new(name);
    let child = attacked_damon(&task, &dir, limits, "exit");
    let damon_pid = child.id();
    let run = finish(child, &dir, &format!("damon sh -c ATTACK ({})", name), Duration::from_secs(30));
    (run, dir, task, damon_pid)
}

#[test]
fn a_workload_that_lowers_damons_open_files_to_3_and_exits_leaves_nothing() {
    let (run, dir, task, damon_pid) = child_exits_after("own-limits-nofile", &[&OPEN_FILES]);
    let explain = || run.explain();
    assert_lowered(&dir, &[&OPEN_FILES], &explain);
    run.assert_code(3);
    assert_nothing_left(&task, &dir, damon_pid, &explain);
    assert!(!run.log.contains("cannot remove the container"), "damon's cleanup failed\n{}", explain());
    run.assert_log_contains(RAISED_BACK);
}

#[test]
fn a_workload_that_lowers_every_limit_the_cleanup_needs_leaves_nothing() {
    // Open files for the cgroup files, file size for the log (past it, SIGXFSZ kills the
    // writer), address space and data for what the cleanup allocates.
    let limits = [&OPEN_FILES, &FILE_SIZE, &ADDRESS_SPACE, &DATA_SIZE];
    let (run, dir, task, damon_pid) = child_exits_after("own-limits-every", &limits);
    let explain = || run.explain();
    assert_lowered(&dir, &limits, &explain);
    run.assert_code(3);
    assert_nothing_left(&task, &dir, damon_pid, &explain);
    run.assert_log_contains(RAISED_BACK).assert_log_contains("damon exiting");
}

#[test]
fn when_damon_is_killed_after_the_attack_its_guard_raises_its_own_limits_back_and_cleans_up() {
    let limits = [&OPEN_FILES, &FILE_SIZE];
    let task = TaskCgroup::new("own-limits-guard");
    let dir = TestDir::new("own-limits-guard");
    let mut child = attacked_damon(&task, &dir, &limits, "wait");
    let damon_pid = child.id();
    let explain = || format!("--- damon log\n{}", dir.log());
    wait_for("the workload to lower the limits", Duration::from_secs(30), || dir.path("lowered").exists());
    assert_lowered(&dir, &limits, &explain);
    let guard = read_pid(&dir.path("guard.pid")).expect("the guard's pid");
    signal(damon_pid, Signal::SIGKILL);
    let _ = child.wait();
    wait_for("the guard to end", Duration::from_secs(20), || !alive(guard));
    assert_nothing_left(&task, &dir, damon_pid, &explain);
    let log = dir.log();
    assert!(log.contains("its guard killed the workload"), "the guard did not clean up\n{}", explain());
    assert!(log.contains(RAISED_BACK), "the guard did not say it raised its limits back\n{}", explain());
}
