//! Reserved cores: DAMON_CPU_CORES and NOMAD_CPU_CORES pin the workload to cores. Outside
//! Nomad damon writes them into its group's cpuset (v2: cpuset.cpus with the controller
//! enabled on the way; v1: a group in the cpuset hierarchy); inside a cgroup that already has
//! a cpuset (as Nomad makes one for a task that reserves cores) damon writes nothing, and the
//! workload runs on that cpuset. The workload reports what the kernel lets it use
//! (Cpus_allowed_list of /proc/self/status), and nothing is left behind.
//!
//! Every test name contains "cores": `scripts/vm-test cores` runs them on cgroup v2.

#![cfg(target_os = "linux")]

mod common;

use common::*;
use nix::sys::signal::Signal;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The online CPUs, as the kernel lists them ("0-1").
fn online() -> String {
    read_trimmed(Path::new("/sys/devices/system/cpu/online"))
}

/// The highest online CPU.
fn last_online_cpu() -> u32 {
    let online = online();
    let last = online.rsplit(',').next().unwrap_or("0");
    last.rsplit('-').next().unwrap_or("0").parse().unwrap_or_else(|_| panic!("online CPUs: {:?}", online))
}

/// damon running `workload affinity` with `env`; returns the run and what the workload printed.
fn affinity_under_damon(name: &str, env: &[(&str, &str)]) -> (Run, String) {
    let dir = TestDir::new(name);
    let mut cmd = damon(&dir);
    cmd.envs(env.iter().copied()).arg(workload()).arg("affinity");
    let run = run(cmd, &dir);
    run.assert_code(0);
    let allowed = allowed_in(&run.stdout).unwrap_or_else(|| panic!("no Cpus_allowed_list\n{}", run.explain()));
    (run, allowed)
}

fn allowed_in(stdout: &str) -> Option<String> {
    stdout.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).map(|v| v.trim().to_string())
}

/// damon's pid, from the name of its group (damon-PID) in the "child started" line.
fn damon_pid_of(run: &Run) -> u32 {
    let line = run.log.lines().find(|l| l.contains("\"message\":\"child started\"")).expect("a child started line");
    let container = line.split("\"container\":\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or("");
    let first = container.split(' ').next().unwrap_or("");
    first.rsplit('-').next().and_then(|pid| pid.parse().ok()).unwrap_or_else(|| panic!("{}", run.explain()))
}

#[test]
fn damon_cpu_cores_pin_the_workload_to_those_cores() {
    let (run, allowed) = affinity_under_damon("cores-damon", &[("DAMON_CPU_CORES", "0")]);
    assert_eq!(allowed, "0", "{}", run.explain());
    run.assert_log_contains("pinned to cores 0: written into the group's cpuset")
        .assert_log_contains("\"cpuset\":\"0\"")
        .assert_log_contains("\"cpu_cores\":\"0\"");
    assert_no_groups_left(damon_pid_of(&run));
}

#[test]
fn nomad_cpu_cores_pin_the_workload_outside_nomad() {
    let last = last_online_cpu().to_string();
    let (run, allowed) = affinity_under_damon("cores-nomad", &[("NOMAD_CPU_CORES", &last)]);
    assert_eq!(allowed, last, "{}", run.explain());
    run.assert_log_contains(&format!("\"cpuset\":\"{}\"", last));
    assert_no_groups_left(damon_pid_of(&run));
}

#[test]
fn damon_cpu_cores_win_over_nomad_cpu_cores() {
    let last = last_online_cpu().to_string();
    let (run, allowed) = affinity_under_damon("cores-both", &[("DAMON_CPU_CORES", "0"), ("NOMAD_CPU_CORES", &last)]);
    assert_eq!(allowed, "0", "{}", run.explain());
    assert_no_groups_left(damon_pid_of(&run));
    // And the flag over both.
    let dir = TestDir::new("cores-flag");
    let mut cmd = damon(&dir);
    cmd.env("DAMON_CPU_CORES", "0").arg("--cpu-cores").arg(&last).arg(workload()).arg("affinity");
    let run = common::run(cmd, &dir);
    run.assert_code(0);
    assert_eq!(allowed_in(&run.stdout).as_deref(), Some(last.as_str()), "{}", run.explain());
}

#[test]
fn without_cores_the_workload_keeps_every_cpu_and_the_log_says_which() {
    let (run, allowed) = affinity_under_damon("cores-none", &[]);
    assert_eq!(allowed, online(), "{}", run.explain());
    run.assert_log_contains(&format!("\"cpuset\":\"{}\"", online()));
    assert!(!run.log.contains("pinned to cores"), "{}", run.explain());
}

#[test]
fn cores_the_host_does_not_have_are_125_naming_the_setting_value_and_cpus() {
    let beyond = (last_online_cpu() + 1).to_string();
    let dir = TestDir::new("cores-beyond");
    let marker = dir.path("started");
    for (source, value) in [("DAMON_CPU_CORES", format!("0,{}", beyond)), ("NOMAD_CPU_CORES", beyond.clone())] {
        let mut cmd = damon(&dir);
        cmd.env(source, &value).arg("touch").arg(&marker);
        let run = run(cmd, &dir);
        run.assert_code(125);
        let expected = format!(
            "invalid value \"{}\" for {}: core {} is not online on this host (online CPUs: {})",
            value,
            source,
            beyond,
            online()
        );
        assert!(run.stderr.contains(&expected), "{:?}\n{}", expected, run.explain());
        run.assert_log_contains(&expected.replace('"', "\\\""));
        assert!(!marker.exists(), "the command ran\n{}", run.explain());
    }
}

#[test]
fn check_shows_the_effective_cpuset_and_what_becomes_of_the_cores() {
    let check = |env: &[(&str, &str)]| {
        let out = Command::new(DAMON).arg("--check").envs(env.iter().copied()).output().expect("damon --check");
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (code, stdout) = check(&[]);
    assert_eq!(code, Some(0), "{}", stdout);
    let line = stdout.lines().find(|l| l.starts_with("effective cpuset:")).unwrap_or_else(|| panic!("{}", stdout));
    assert!(line.contains(&format!(" {} (from /", online())) && line.ends_with("; every online CPU)"), "{}", line);
    let (code, stdout) = check(&[("DAMON_CPU_CORES", "0")]);
    assert_eq!(code, Some(0), "{}", stdout);
    assert!(stdout.contains("workload cpuset:             0 (written into the group's cpuset)"), "{}", stdout);
    assert!(stdout.contains("DAMON_CPU_CORES:             0 (from DAMON_CPU_CORES)"), "{}", stdout);
    let beyond = (last_online_cpu() + 1).to_string();
    let (code, stdout) = check(&[("NOMAD_CPU_CORES", &beyond)]);
    assert_eq!(code, Some(125), "{}", stdout);
    assert!(stdout.contains(&format!("not ok: invalid value \"{}\" for NOMAD_CPU_CORES", beyond)), "{}", stdout);
}

/// A cgroup beside the test's own that holds a cpuset of one CPU, as Nomad makes one for a
/// task with reserved cores: v2 with +cpuset passed down to it, v1 in the cpuset hierarchy
/// with its memory nodes copied from the parent. Removed (and the parent's controllers
/// restored) when dropped.
struct CpusetCgroup {
    dir: PathBuf,
    /// v2: the parent's subtree_control had no cpuset: it is turned off again.
    enabled_cpuset_in: Option<PathBuf>,
}

impl CpusetCgroup {
    fn new(name: &str, cpus: &str) -> CpusetCgroup {
        let own = fs::read_to_string("/proc/self/cgroup").unwrap();
        let leaf = format!("damon-test-{}-{}", name, std::process::id());
        let (parent, v2) = if cgroup_version() == "v2" {
            let path = own.lines().find_map(|l| l.strip_prefix("0::")).expect("a cgroup v2 line");
            (Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/')), true)
        } else {
            let path = own
                .lines()
                .find_map(|l| l.splitn(3, ':').nth(2).filter(|_| l.split(':').nth(1) == Some("cpuset")))
                .expect("a cpuset line in /proc/self/cgroup");
            (Path::new("/sys/fs/cgroup/cpuset").join(path.trim_start_matches('/')), false)
        };
        let mut cgroup = CpusetCgroup { dir: parent.join(leaf), enabled_cpuset_in: None };
        if v2 {
            let control = parent.join("cgroup.subtree_control");
            if !fs::read_to_string(&control).unwrap().split_whitespace().any(|c| c == "cpuset") {
                fs::write(&control, "+cpuset").unwrap_or_else(|e| panic!("+cpuset in {}: {}", control.display(), e));
                cgroup.enabled_cpuset_in = Some(parent.clone());
            }
        }
        fs::create_dir(&cgroup.dir).unwrap();
        fs::write(cgroup.dir.join("cpuset.cpus"), cpus).unwrap();
        if !v2 {
            fs::write(cgroup.dir.join("cpuset.mems"), read_trimmed(&parent.join("cpuset.mems"))).unwrap();
        }
        cgroup
    }

    fn subdirs(&self) -> Vec<PathBuf> {
        fs::read_dir(&self.dir).unwrap().flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect()
    }

    /// damon started inside this cgroup, through a shell that moves itself there and execs it.
    fn damon(&self, dir: &TestDir) -> Command {
        let mut cmd = Command::new("sh");
        in_clean_environment(&mut cmd, dir);
        let script = format!("echo $$ > {}/cgroup.procs && exec \"$0\" \"$@\"", self.dir.display());
        cmd.args(["-c", &script, DAMON]);
        cmd
    }
}

impl Drop for CpusetCgroup {
    fn drop(&mut self) {
        for _ in 0..100 {
            if fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Some(parent) = &self.enabled_cpuset_in {
            let _ = fs::write(parent.join("cgroup.subtree_control"), "-cpuset");
        }
    }
}

#[test]
fn under_a_cpuset_already_in_force_damon_writes_no_cores_and_the_workload_has_that_cpuset() {
    let last = last_online_cpu();
    if last == 0 {
        return skip_missing("one CPU, no cpuset can restrict it");
    }
    let cpus = last.to_string();
    let task = CpusetCgroup::new("cores-task", &cpus);
    // The same cores as in force (what Nomad sets), and cores outside it: nothing is written
    // either way, and the cpuset in force wins.
    for (env, warned) in [("NOMAD_CPU_CORES", cpus.clone()), ("DAMON_CPU_CORES", "0".to_string())]
        .iter()
        .map(|(k, v)| ((*k, v.clone()), *k == "DAMON_CPU_CORES"))
    {
        let dir = TestDir::new("cores-task-run");
        let mut cmd = task.damon(&dir);
        cmd.env(env.0, &env.1)
            .env("DAMON_MEMORY_LIMIT", "64")
            .args(["sh", "-c", "\"$0\" affinity && exec \"$0\" sleep 60"])
            .arg(workload())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let damon_pid = child.id();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let groups = container_dirs(&dir);
        // While it runs: no group of damon's in the cpuset hierarchy (v1), no cpuset passed
        // down to damon's group (v2).
        let cpuset_files: Vec<PathBuf> = groups.iter().map(|g| g.join("cpuset.cpus")).filter(|f| f.exists()).collect();
        let control = fs::read_to_string(task.dir.join("cgroup.subtree_control")).unwrap_or_default();
        signal(damon_pid, Signal::SIGTERM);
        let run = finish(child, &dir, "damon in a cpuset cgroup", Duration::from_secs(20));
        let what = format!("{}={}", env.0, env.1);
        assert_eq!(allowed_in(&line).as_deref(), Some(cpus.as_str()), "{}: {:?}\n{}", what, line, run.explain());
        assert!(cpuset_files.is_empty(), "{}: damon wrote a cpuset: {:?}\n{}", what, cpuset_files, run.explain());
        assert!(!control.contains("cpuset"), "{}: cpuset passed down: {}\n{}", what, control, run.explain());
        run.assert_code(143).assert_log_contains(&format!("\"cpuset\":\"{}\"", cpus));
        if warned {
            run.assert_log_contains("asks for cores outside the cpuset damon's cgroup already has")
                .assert_log_contains(&format!("that cpuset wins, the workload runs on cores {}", cpus));
        } else {
            run.assert_log_contains(&format!(
                "pinned to cores {}: the cgroup damon runs in already has that cpuset",
                cpus
            ));
        }
        assert!(task.subdirs().is_empty(), "{}: left behind: {:?}", what, task.subdirs());
        assert_no_groups_left(damon_pid);
    }
    // --check inside it shows that cpuset.
    let dir = TestDir::new("cores-task-check");
    let mut check = task.damon(&dir);
    check.arg("--check");
    let out = check.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let expected = format!("effective cpuset:            {} (from {}/cpuset.", cpus, task.dir.display());
    assert!(stdout.contains(&expected), "{:?}\n{}", expected, stdout);
}

#[test]
fn cores_under_a_cgroup_parent_damon_makes() {
    let dir = TestDir::new("cores-parent");
    let parent = format!("/damon-test-cores-parent-{}", std::process::id());
    let mut cmd = damon(&dir);
    cmd.env("DAMON_CGROUP_PARENT", &parent).env("DAMON_CPU_CORES", "0").arg(workload()).arg("affinity");
    let run = run(cmd, &dir);
    run.assert_code(0);
    assert_eq!(allowed_in(&run.stdout).as_deref(), Some("0"), "{}", run.explain());
    assert!(run.log.contains(&format!("/sys/fs/cgroup/cpuset{}/damon-", parent)) || cgroup_version() == "v2");
    assert_no_groups_left(damon_pid_of(&run));
    // The parent damon made (and, on v1, filled with its parent's cpus and memory nodes) is
    // removed with the group, in every hierarchy.
    let left = remove_cgroup_dirs(&parent);
    assert!(left.is_empty(), "left behind: {:?}\n{}", left, run.explain());
}
