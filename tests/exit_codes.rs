//! damon's exit status: the child's own, 128+N for a signal, 126 and 127 as a shell, and the
//! same in the log's "damon exiting" line. No cgroup is left behind in any case.

#![cfg(target_os = "linux")]

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;

fn run_workload(name: &str, args: &[&str]) -> (Run, TestDir) {
    let dir = TestDir::new(name);
    let mut cmd = damon(&dir);
    cmd.env("DAMON_MEMORY_LIMIT", "256").args(args);
    let run = run(cmd, &dir);
    (run, dir)
}

fn damon_pid(run: &Run) -> u32 {
    // The group name ends in damon's pid; the log's "child started" line names it.
    let line = run.log.lines().find(|l| l.contains("child started")).unwrap_or_else(|| panic!("{}", run.explain()));
    let container = line.split("\"container\":\"").nth(1).unwrap().split('"').next().unwrap();
    let first = container.split(' ').next().unwrap();
    first.rsplit('-').next().unwrap().parse().unwrap_or_else(|_| panic!("no pid in {}", container))
}

#[test]
fn the_childs_exit_code_is_damons() {
    for code in [0, 3, 255] {
        let (run, _dir) = run_workload("exit", &[workload().to_str().unwrap(), "exit", &code.to_string()]);
        run.assert_code(code).assert_log_contains(&format!("\"exit_status\":{},\"ending\":\"exited\"", code));
        assert_no_groups_left(damon_pid(&run));
    }
}

#[test]
fn a_child_killed_by_a_signal_gives_128_plus_n() {
    let (run, _dir) = run_workload("signal", &["sh", "-c", "kill -TERM $$"]);
    run.assert_code(143).assert_log_contains("\"ending\":\"killed by a signal\",\"signal\":\"SIGTERM\"");
    assert_no_groups_left(damon_pid(&run));
}

#[test]
fn a_command_that_is_not_found_gives_127() {
    let (run, _dir) = run_workload("notfound", &["no-such-command-anywhere"]);
    run.assert_code(127).assert_log_contains("command not found: no-such-command-anywhere");
    assert!(run.stderr.contains("command not found"), "{}", run.explain());
    let (run, _dir) = run_workload("notfound2", &["/no/such/path"]);
    run.assert_code(127);
}

#[test]
fn a_command_that_cannot_be_executed_gives_126() {
    let dir = TestDir::new("noexec");
    let file = dir.path("not-a-program");
    std::fs::write(&file, "data").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut cmd = damon(&dir);
    cmd.arg(&file);
    let run = run(cmd, &dir);
    run.assert_code(126).assert_log_contains("cannot execute");
    let mut cmd = damon(&dir);
    cmd.arg(&dir.0);
    common::run(cmd, &dir).assert_code(126);
}
