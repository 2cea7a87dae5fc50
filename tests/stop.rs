//! Stopping, as Nomad does it: a stop signal is passed on, the child gets the kill timeout to
//! end, then every process of the group is killed, including one that called setsid().
//! When damon itself is SIGKILLed, its guard kills the workload and removes the group.

#![cfg(target_os = "linux")]

mod common;

use common::*;
use nix::sys::signal::Signal;
use std::io::BufReader;
use std::process::{Child, Stdio};
use std::time::Duration;

fn spawn_damon(dir: &TestDir, env: &[(&str, &str)], args: &[&str]) -> Child {
    let mut cmd = damon(dir);
    cmd.envs(env.iter().copied()).arg(workload()).args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.spawn().expect("spawn damon")
}

/// Starts `workload ignore-stop` and returns damon, the child's pid and the grandchild's.
fn start_stubborn_tree(dir: &TestDir, env: &[(&str, &str)]) -> (Child, u32, u32) {
    let child = spawn_damon(dir, env, &["ignore-stop", dir.0.to_str().unwrap()]);
    let (child_file, grandchild_file) = (dir.path("child.pid"), dir.path("grandchild.pid"));
    wait_for("the workload's pid files", Duration::from_secs(10), || {
        read_pid(&child_file).is_some() && read_pid(&grandchild_file).is_some()
    });
    let (child_pid, grandchild_pid) = (read_pid(&child_file).unwrap(), read_pid(&grandchild_file).unwrap());
    assert!(alive(child_pid) && alive(grandchild_pid));
    (child, child_pid, grandchild_pid)
}

#[test]
fn a_stop_is_passed_on_and_a_child_that_exits_gives_its_code() {
    let dir = TestDir::new("graceful");
    let mut damon = spawn_damon(&dir, &[], &["wait-signals"]);
    let mut stdout = BufReader::new(damon.stdout.take().unwrap());
    read_until(&mut stdout, "ready");
    signal(damon.id(), Signal::SIGUSR1);
    read_until(&mut stdout, "SIGUSR1");
    signal(damon.id(), Signal::SIGUSR2);
    read_until(&mut stdout, "SIGUSR2");
    // Nomad's default kill_signal.
    signal(damon.id(), Signal::SIGINT);
    read_until(&mut stdout, "SIGINT");
    let pid = damon.id();
    let run = finish(damon, &dir, "damon workload wait-signals", Duration::from_secs(20));
    run.assert_code(0)
        .assert_log_contains("stopping: signal passed on to the child")
        .assert_log_contains("\"signal\":\"SIGINT\"");
    assert_no_groups_left(pid);
}

/// DAMON_STOP_SIGNAL: Nomad's SIGTERM reaches the child as the signal named (SIGINT, also
/// written CTRL_C), and the signals damon passes on without stopping are left as they are. The
/// log says what was received and what was passed on. Control: unset, the child gets SIGTERM.
#[test]
fn a_stop_reaches_the_child_as_damon_stop_signal_names_it() {
    for (setting, expected) in [(None, "SIGTERM"), (Some("SIGINT"), "SIGINT"), (Some("ctrl_c"), "SIGINT")] {
        let dir = TestDir::new("stop-signal");
        let env: Vec<(&str, &str)> = setting.map(|value| ("DAMON_STOP_SIGNAL", value)).into_iter().collect();
        let mut damon = spawn_damon(&dir, &env, &["wait-signals"]);
        let mut stdout = BufReader::new(damon.stdout.take().unwrap());
        read_until(&mut stdout, "ready");
        signal(damon.id(), Signal::SIGUSR1);
        read_until(&mut stdout, "SIGUSR1");
        signal(damon.id(), Signal::SIGTERM);
        let received = read_until(&mut stdout, expected);
        let run = finish(damon, &dir, "damon workload wait-signals", Duration::from_secs(20));
        run.assert_code(0).assert_log_contains("\"signal\":\"SIGTERM\"");
        if setting.is_some() {
            run.assert_log_contains(&format!("\"passed_on\":\"{}\"", expected));
            assert!(!received.iter().any(|l| l == "SIGTERM"), "the child got SIGTERM too: {:?}", received);
        } else {
            assert!(!dir.log().contains("passed_on"), "{}", dir.log());
        }
    }
}

#[test]
fn a_child_ignoring_the_stop_and_its_setsid_grandchild_are_killed_after_the_timeout() {
    let dir = TestDir::new("stubborn");
    let (damon, child_pid, grandchild_pid) = start_stubborn_tree(&dir, &[("DAMON_KILL_TIMEOUT", "2s")]);
    let damon_pid = damon.id();
    signal(damon_pid, Signal::SIGTERM);
    // Still there within the timeout: the stop was passed on, not enforced at once.
    std::thread::sleep(Duration::from_millis(300));
    assert!(alive(child_pid), "the child was killed before the kill timeout");
    let run = finish(damon, &dir, "damon workload ignore-stop", Duration::from_secs(20));
    run.assert_code(137)
        .assert_log_contains("the child did not stop in time")
        .assert_log_contains("\"ending\":\"killed after the kill timeout\"");
    assert!(!alive(child_pid), "child {} outlived damon", child_pid);
    assert!(!alive(grandchild_pid), "setsid grandchild {} outlived damon", grandchild_pid);
    assert_no_groups_left(damon_pid);
}

/// Outside Nomad, without DAMON_KILL_TIMEOUT, a stop the child ignores waits the original's
/// 30 s (still waiting past damon's old default of 4 s), and a second stop signal kills the
/// tree at once, as a second Ctrl+C at a terminal.
#[test]
fn outside_nomad_a_second_stop_signal_kills_the_tree_at_once() {
    let dir = TestDir::new("second-stop");
    let (damon, child_pid, grandchild_pid) = start_stubborn_tree(&dir, &[]);
    let damon_pid = damon.id();
    signal(damon_pid, Signal::SIGINT);
    wait_for("damon to pass the stop on", Duration::from_secs(10), || {
        dir.log().contains("stopping: signal passed on to the child")
    });
    std::thread::sleep(Duration::from_millis(4500));
    assert!(alive(child_pid), "the child was killed within 4.5 s of the stop, not after 30 s\n{}", dir.log());
    signal(damon_pid, Signal::SIGINT);
    let run = finish(damon, &dir, "damon workload ignore-stop", Duration::from_secs(20));
    run.assert_code(137)
        .assert_log_contains("a second stop signal: killing every process of the workload now")
        .assert_log_contains("\"ending\":\"killed on a second stop signal\"");
    assert!(!alive(child_pid) && !alive(grandchild_pid), "the tree outlived damon\n{}", run.explain());
    assert_no_groups_left(damon_pid);
}

/// Under Nomad, without DAMON_KILL_TIMEOUT, damon never kills the tree itself: a second stop
/// signal is passed on, and the child that ignores both runs on until Nomad's SIGKILL of damon
/// at the job's kill_timeout, after which the guard ends the tree.
#[test]
fn under_nomad_damon_waits_until_nomad_kills_it() {
    let dir = TestDir::new("nomad-waits");
    let (mut damon, child_pid, grandchild_pid) = start_stubborn_tree(&dir, &[("NOMAD_ALLOC_ID", "a1")]);
    let damon_pid = damon.id();
    signal(damon_pid, Signal::SIGINT);
    wait_for("damon to pass the stop on", Duration::from_secs(10), || {
        dir.log().contains("stopping: signal passed on to the child")
    });
    signal(damon_pid, Signal::SIGINT);
    std::thread::sleep(Duration::from_millis(4500));
    assert!(alive(child_pid) && alive(damon_pid), "damon ended the stop itself under Nomad\n{}", dir.log());
    signal(damon_pid, Signal::SIGKILL);
    let _ = damon.wait();
    wait_for("the guard to end the tree", Duration::from_secs(10), || !alive(child_pid) && !alive(grandchild_pid));
    wait_for("the guard's log line", Duration::from_secs(10), || {
        dir.log().contains("ms after the stop signal): its guard killed the workload")
    });
    assert!(!dir.log().contains("damon exiting"), "a line damon could not write was made up\n{}", dir.log());
}

#[test]
fn when_the_child_exits_its_leftover_descendants_are_killed() {
    let dir = TestDir::new("leftover");
    let grandchild_file = dir.path("grandchild.pid");
    let mut cmd = damon(&dir);
    // The child starts a daemon and exits at once; the daemon must not outlive damon.
    cmd.args(["sh", "-c", &format!("{} daemon {} & sleep 0.5", workload().display(), grandchild_file.display())]);
    let run = run(cmd, &dir);
    run.assert_code(0);
    let grandchild = read_pid(&grandchild_file).unwrap_or_else(|| panic!("no grandchild\n{}", run.explain()));
    assert!(!alive(grandchild), "daemonized grandchild {} outlived damon", grandchild);
}

#[test]
fn when_damon_is_sigkilled_nothing_of_the_workload_is_left() {
    let dir = TestDir::new("sigkill");
    let (mut damon, child_pid, grandchild_pid) = start_stubborn_tree(&dir, &[]);
    let damon_pid = damon.id();
    signal(damon_pid, Signal::SIGKILL);
    let _ = damon.wait();
    wait_for("the child and the setsid grandchild to be killed", Duration::from_secs(10), || {
        !alive(child_pid) && !alive(grandchild_pid)
    });
    wait_for("the guard to remove damon's cgroups", Duration::from_secs(10), || groups_of(damon_pid).is_empty());
    // The guard logs once it has removed the groups.
    wait_for("the guard's log line", Duration::from_secs(10), || dir.log().contains("its guard killed the workload"));
}

#[test]
fn a_stop_reaches_the_child_even_when_damon_was_started_with_it_ignored() {
    // A background job of a script starts with SIGINT ignored, and exec keeps that; damon
    // must still deliver Nomad's SIGINT to its child with the default action.
    let dir = TestDir::new("ignored-int");
    let mut cmd = std::process::Command::new("sh");
    in_clean_environment(&mut cmd, &dir);
    cmd.args(["-c", "trap '' INT; exec \"$0\" \"$@\"", DAMON, workload().to_str().unwrap(), "sleep", "60"])
        .env("DAMON_KILL_TIMEOUT", "20s")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let damon = cmd.spawn().expect("spawn damon");
    container_dirs(&dir);
    let pid = damon.id();
    signal(pid, Signal::SIGINT);
    let run = finish(damon, &dir, "sh -c trap '' INT; exec damon workload sleep 60", Duration::from_secs(15));
    run.assert_code(128 + 2).assert_log_contains("\"signal\":\"SIGINT\"");
}

/// The processes of `workload recorded-tree`, and what each recorded of the stop ("SIGTERM 1":
/// the signal and how many it got), `None` for one that got none.
fn recorded_stops(dir: &TestDir) -> Vec<(&'static str, Option<String>)> {
    ["child", "plain", "setsid", "orphan"]
        .iter()
        .map(|name| (*name, std::fs::read_to_string(dir.path(&format!("{}.got", name))).ok()))
        .collect()
}

/// Starts `workload recorded-tree` under damon with DAMON_STOP_SIGNAL_SCOPE=`scope`, stops it
/// with SIGTERM and returns the run once the recorders have had their time to record.
fn stop_recorded_tree(name: &str, scope: &str) -> (TestDir, Run) {
    let dir = TestDir::new(name);
    // A kill would show in the log: the timeout is long, and the run must end without one.
    let env = [("DAMON_STOP_SIGNAL_SCOPE", scope), ("DAMON_KILL_TIMEOUT", "20s")];
    let damon = spawn_damon(&dir, &env, &["recorded-tree", dir.0.to_str().unwrap()]);
    wait_for("the tree to be up", Duration::from_secs(10), || read_pid(&dir.path("child.pid")).is_some());
    signal(damon.id(), Signal::SIGTERM);
    let run = finish(damon, &dir, &format!("damon (scope {}) workload recorded-tree", scope), Duration::from_secs(30));
    (dir, run)
}

/// DAMON_STOP_SIGNAL_SCOPE=tree: the stop reaches every process of the workload once, the
/// setsid() one and the double-forked orphan too; each exits on it, the run ends without a
/// kill, and damon's status is the child's.
#[test]
fn with_the_tree_scope_every_process_gets_the_stop_once() {
    let (dir, run) = stop_recorded_tree("scope-tree", "tree");
    run.assert_code(3)
        .assert_log_contains("stopping: signal passed on to every process of the workload")
        .assert_log_contains("\"ending\":\"exited\"");
    assert!(!run.log.contains("did not stop in time"), "the tree was killed\n{}", run.explain());
    for (name, got) in recorded_stops(&dir) {
        assert_eq!(got.as_deref(), Some("SIGTERM 1"), "{} got the stop {:?}\n{}", name, got, run.explain());
    }
}

/// Starts `workload child-first DRAIN_MS` under damon with the tree scope and `kill_timeout`,
/// stops it with SIGTERM: the child exits at once with 3, the setsid() drainer takes DRAIN_MS.
fn stop_child_first(name: &str, drain_ms: u64, kill_timeout: &str) -> (TestDir, Run, u32) {
    let dir = TestDir::new(name);
    let env = [("DAMON_STOP_SIGNAL_SCOPE", "tree"), ("DAMON_KILL_TIMEOUT", kill_timeout)];
    let damon = spawn_damon(&dir, &env, &["child-first", &drain_ms.to_string(), dir.0.to_str().unwrap()]);
    wait_for("the tree to be up", Duration::from_secs(10), || read_pid(&dir.path("child.pid")).is_some());
    let drainer = read_pid(&dir.path("drainer.pid")).expect("the drainer's pid");
    signal(damon.id(), Signal::SIGTERM);
    let run =
        finish(damon, &dir, &format!("damon (scope tree) workload child-first {}", drain_ms), Duration::from_secs(30));
    (dir, run, drainer)
}

/// With the tree scope every process got the stop, so every process gets its time: a child that
/// leaves first does not end the drain of the rest. damon waits for them, without a kill, and
/// returns the child's status.
#[test]
fn with_the_tree_scope_the_rest_of_the_workload_drains_after_the_child_has_exited() {
    let (dir, run, drainer) = stop_child_first("scope-tree-drain", 1500, "20s");
    run.assert_code(3)
        .assert_log_contains("the child exited: waiting for the rest of the workload to stop")
        .assert_log_contains("\"ending\":\"exited\"");
    assert!(dir.path("drainer.drained").exists(), "the drainer was not let drain\n{}", run.explain());
    assert!(!run.log.contains("did not stop in time"), "the workload was killed\n{}", run.explain());
    assert!(!alive(drainer), "the drainer {} is still alive", drainer);
}

/// The same with a drain longer than the kill timeout: the rest is killed at the timeout, the
/// log says so, and damon still returns the child's status.
#[test]
fn with_the_tree_scope_a_drain_past_the_kill_timeout_is_killed_at_it() {
    let (dir, run, drainer) = stop_child_first("scope-tree-late", 20_000, "1s");
    run.assert_code(3)
        .assert_log_contains("the child exited: waiting for the rest of the workload to stop")
        .assert_log_contains("the rest of the workload did not stop in time: killing every process of the workload");
    assert!(!dir.path("drainer.drained").exists(), "the drainer drained past the kill timeout\n{}", run.explain());
    assert!(!alive(drainer), "the drainer {} is still alive\n{}", drainer, run.explain());
}

/// DAMON_STOP_SIGNAL_SCOPE=child (the default, as Nomad and the original): the child alone.
#[test]
fn with_the_child_scope_only_the_child_gets_the_stop() {
    let (dir, run) = stop_recorded_tree("scope-child", "child");
    run.assert_code(3).assert_log_contains("stopping: signal passed on to the child");
    for (name, got) in recorded_stops(&dir) {
        let expected = if name == "child" { Some("SIGTERM 1") } else { None };
        assert_eq!(got.as_deref(), expected, "{} got the stop {:?}\n{}", name, got, run.explain());
    }
}
