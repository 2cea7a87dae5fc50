//! damon run exactly as Nomad's raw_exec runs it, Nomad's part played step for step as its
//! source does it (hashicorp/nomad 1.7 to 2.0: client/lib/cgroupslib, client/lib/proclib,
//! drivers/shared/executor; the steps are in the comments of [`NomadTask`]):
//!
//! - the task cgroup Nomad makes, with the limits the executor writes, damon started alone in
//!   it in a new process group;
//! - every order of Nomad's stop: the child obeys the kill signal; it ignores it and damon's
//!   timeout is shorter than Nomad's; it ignores it and Nomad's SIGKILL comes first (with
//!   Nomad's defaults); and Nomad's final kill of the cgroup at once after that SIGKILL,
//!   before damon's guard has finished;
//! - after each: no process of the workload left (a setsid() daemon, a double-forked orphan and
//!   a process that keeps spawning included), no group of damon's anywhere, and Nomad's own
//!   removal of the task cgroup succeeds as Nomad does it (v2: once, no retry; v1: retried
//!   at 0, 1, 3, 7 and 15 s).
//!
//! DAMON_NOMAD_RUNS sets the repetitions of each sequence (default 50, on the host and in the
//! cgroup v2 VM).

#![cfg(target_os = "linux")]

mod common;

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const MOUNT: &str = "/sys/fs/cgroup";
/// What the workload's processes write, to be found again wherever they are.
const PID_FILES: [&str; 5] = ["child.pid", "daemon.pid", "orphan.pid", "spawner.pid", "drainer.pid"];

/// One task of one allocation, as the Nomad client lays it out before the task starts.
struct NomadTask {
    /// v2: the scope. v1: the freezer, cpu and memory groups (freezer first), then the cpuset one.
    dirs: Vec<PathBuf>,
    v2: bool,
}

/// Writes an interface file as Nomad does: errors are ignored (the executor only logs them).
fn nomad_write(path: &Path, value: &str) {
    let _ = fs::write(path, value);
}

impl NomadTask {
    /// cgroupslib.Init (agent start) and the procisolation hook (task start), then the values
    /// the executor writes for resources { cpu = 500, memory = 256, memory_max = 512 }.
    fn new(name: &str) -> NomadTask {
        let alloc = format!("5b3c1a2e-{:04x}-4e7a-9f00-{:012x}", std::process::id() % 0xffff, name.len());
        let scope_name = format!("{}.{}", alloc, name);
        if cgroup_version() == "v2" {
            let controllers = "+cpuset +cpu +io +memory +pids";
            let root = Path::new(MOUNT);
            let share = root.join("nomad.slice/share.slice");
            fs::create_dir_all(&share).expect("mkdir nomad.slice/share.slice");
            for dir in [root.to_path_buf(), root.join("nomad.slice"), share.clone()] {
                nomad_write(&dir.join("cgroup.subtree_control"), controllers);
            }
            let scope = share.join(format!("{}.scope", scope_name));
            fs::create_dir_all(&scope).expect("mkdir the task's scope");
            nomad_write(&scope.join("memory.max"), &(512u64 << 20).to_string());
            nomad_write(&scope.join("memory.low"), &(256u64 << 20).to_string());
            nomad_write(&scope.join("cpu.weight"), "58");
            nomad_write(&scope.join("cpuset.cpus"), "");
            NomadTask { dirs: vec![scope], v2: true }
        } else {
            let mut dirs = Vec::new();
            for controller in ["freezer", "cpu", "memory"] {
                let dir = Path::new(MOUNT).join(controller).join("nomad").join(&scope_name);
                fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {}", dir.display(), e));
                dirs.push(dir);
            }
            nomad_write(&dirs[1].join("cpu.shares"), "500");
            nomad_write(&dirs[2].join("memory.limit_in_bytes"), &(512u64 << 20).to_string());
            nomad_write(&dirs[2].join("memory.soft_limit_in_bytes"), &(256u64 << 20).to_string());
            // Without reserved cores every task shares cpuset/nomad/share.
            let cpuset = Path::new(MOUNT).join("cpuset");
            let share = cpuset.join("nomad/share");
            fs::create_dir_all(&share).expect("mkdir cpuset/nomad/share");
            for dir in [cpuset.join("nomad"), share.clone()] {
                for file in ["cpuset.mems", "cpuset.cpus"] {
                    if fs::read_to_string(dir.join(file)).map_or(true, |v| v.trim().is_empty()) {
                        let parent = fs::read_to_string(dir.parent().unwrap().join(file)).unwrap_or_default();
                        nomad_write(&dir.join(file), parent.trim());
                    }
                }
            }
            dirs.push(share);
            NomadTask { dirs, v2: false }
        }
    }

    /// The executor's launch: on v2 the task is born in its scope (clone3 with
    /// CLONE_INTO_CGROUP) and the executor never joins it; on v1 the executor writes its own
    /// pid into the freezer, cpu, memory and cpuset groups, forks the task and moves back. The
    /// task is the leader of a new process group. A shell that moves itself and then execs
    /// damon through setsid (a new process group, pgid = its pid) does the same for damon.
    fn start(&self, dir: &TestDir, env: &[(&str, &str)], args: &[&str]) -> Child {
        let mut cmd = Command::new("sh");
        in_clean_environment(&mut cmd, dir);
        let moves: Vec<String> = self.dirs.iter().map(|d| format!("echo $$ > {}/cgroup.procs", d.display())).collect();
        let script = format!("{} && exec setsid \"$0\" \"$@\"", moves.join(" && "));
        cmd.args(["-c", &script, DAMON])
            .args(args)
            .env("NOMAD_ALLOC_ID", "5b3c1a2e")
            .env("NOMAD_TASK_NAME", "web")
            .env("NOMAD_CPU_LIMIT", "500")
            .env("NOMAD_MEMORY_LIMIT", "256")
            .env("NOMAD_MEMORY_MAX_LIMIT", "512")
            .env("NOMAD_CPU_CORES", " ")
            // Where TestDir reads it (by default it would be web.damon.log, after the task).
            .env("DAMON_LOG_NAME", "damon.log")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd.spawn().expect("start damon as Nomad's executor does")
    }

    /// The task without damon, as a plain raw_exec task: the workload itself in the scope.
    fn start_plain(&self, dir: &TestDir, args: &[&str]) -> Child {
        let mut cmd = Command::new("sh");
        in_clean_environment(&mut cmd, dir);
        let moves: Vec<String> = self.dirs.iter().map(|d| format!("echo $$ > {}/cgroup.procs", d.display())).collect();
        let script = format!("{} && exec setsid \"$0\" \"$@\"", moves.join(" && "));
        cmd.args(["-c", &script, args[0]])
            .args(&args[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd.spawn().expect("start the plain task")
    }

    /// The executor's Shutdown(kill_signal, kill_timeout): the signal (SIGINT by default) to
    /// the task's pid only; if it has not exited within the timeout, SIGKILL to the pid; then,
    /// whatever happened, SIGKILL to the task's process group.
    fn shutdown(&self, task: &mut Child, kill_timeout: Duration) -> ExitStatus {
        let pid = Pid::from_raw(task.id() as i32);
        let _ = kill(pid, Signal::SIGINT);
        let deadline = Instant::now() + kill_timeout;
        let mut status = None;
        while status.is_none() && Instant::now() < deadline {
            status = task.try_wait().expect("wait for the task");
            if status.is_none() {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        if status.is_none() {
            let _ = kill(pid, Signal::SIGKILL);
        }
        let _ = kill(Pid::from_raw(-pid.as_raw()), Signal::SIGKILL);
        match status {
            Some(status) => status,
            None => task.wait().expect("wait for the task"),
        }
    }

    /// The wrangler's Kill once the task is dead for good: v2 writes cgroup.kill on the scope;
    /// v1 freezes the scope's freezer group, SIGKILLs the processes listed in that group's own
    /// cgroup.procs (not its descendants'), and thaws it.
    fn final_kill(&self) {
        let dir = &self.dirs[0];
        if self.v2 {
            nomad_write(&dir.join("cgroup.kill"), "1");
            return;
        }
        if fs::write(dir.join("freezer.state"), "FROZEN").is_err() {
            return;
        }
        for pid in fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default().lines() {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        nomad_write(&dir.join("freezer.state"), "THAWED");
    }

    /// The wrangler's Cleanup: v2 removes the scope once (os.RemoveAll), no retry; v1 removes
    /// the freezer, cpu and memory groups (never the shared cpuset one) with os.RemoveAll,
    /// stopping at the first error, retried at about 0, 1, 3, 7 and 15 s. Returns whether the
    /// task's groups are gone, and after which attempt.
    fn cleanup(&self) -> Result<usize, String> {
        if self.v2 {
            return remove_all(&self.dirs[0]).map(|()| 1).map_err(|e| e.to_string());
        }
        let mut last = String::new();
        let start = Instant::now();
        for (attempt, at_s) in [0u64, 1, 3, 7, 15].iter().enumerate() {
            let at = start + Duration::from_secs(*at_s);
            std::thread::sleep(at.saturating_duration_since(Instant::now()));
            match self.dirs[..3].iter().try_for_each(|d| remove_all(d)) {
                Ok(()) => return Ok(attempt + 1),
                Err(e) => last = e.to_string(),
            }
        }
        Err(last)
    }
}

impl Drop for NomadTask {
    fn drop(&mut self) {
        // Whatever a failed test left, so that the next starts clean (not Nomad's doing).
        let dirs: Vec<PathBuf> = if self.v2 { self.dirs.clone() } else { self.dirs[..3].to_vec() };
        for dir in dirs {
            let _ = remove_all(&dir);
        }
    }
}

/// Go's os.RemoveAll on a cgroup directory: rmdir; failing that, unlink every entry (which
/// cgroupfs refuses for interface files), remove every subdirectory the same way, depth
/// first, and rmdir again. Success when the directory is gone.
fn remove_all(dir: &Path) -> io::Result<()> {
    match fs::remove_dir(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    for entry in fs::read_dir(dir)?.flatten() {
        let path = entry.path();
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            let _ = remove_all(&path);
        } else {
            let _ = fs::remove_file(&path);
        }
    }
    match fs::remove_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sequence {
    /// The child exits on the kill signal.
    ChildObeys,
    /// The child ignores it; damon's kill timeout (200 ms) ends it before Nomad's (2 s).
    DamonTimeoutFirst,
    /// The child ignores it; Nomad's SIGKILL (after 200 ms) comes before damon's timeout
    /// (10 s), and Nomad's final kill follows 100 ms later.
    NomadKillFirst,
    /// As above, with Nomad's final kill at once after the SIGKILL.
    FinalKillAtOnce,
    /// damon's defaults (no DAMON_KILL_TIMEOUT): the child drains for 5 s on the kill signal,
    /// within the job's kill_timeout of 8 s, and exits 0.
    DrainWithinKillTimeout,
    /// damon's defaults: the child would drain for 5 s, but the job's kill_timeout is 2 s:
    /// Nomad's SIGKILL ends damon, and its guard the tree.
    DrainCutByKillTimeout,
    /// damon's defaults and DAMON_STOP_SIGNAL_SCOPE=tree: the child exits 3 at once on the kill
    /// signal, a setsid() process it started drains for 5 s within the job's 8 s, and damon
    /// waits for it before it ends.
    TreeDrainWithinKillTimeout,
}

/// How long the drain sequences' child drains.
const DRAIN: Duration = Duration::from_secs(5);

/// What one pass of a sequence left.
#[derive(Default)]
struct Tally {
    runs: usize,
    processes_left: usize,
    groups_left: usize,
    /// Nomad's removal succeeded at this attempt (v1 retries), by attempt.
    removed_at: std::collections::BTreeMap<usize, usize>,
    /// v2: Nomad's single removal failed while processes its own cgroup.kill had just killed
    /// were still exiting; the scope then holds nothing but is left (Nomad's race, not damon's).
    raced_own_kill: usize,
    /// The drain sequences: milliseconds from Nomad's kill signal to damon's end.
    stop_ms: Vec<u128>,
    reports: Vec<String>,
}

/// What is wrong with a drain sequence's run, if anything: within the job's kill_timeout the
/// child drained its whole time; cut short, the guard ended the tree after Nomad's SIGKILL and
/// said so, with the processes it ended and how long after the stop signal.
fn drain_problem(sequence: Sequence, dir: &TestDir, stop_took: Duration, kill_timeout: Duration) -> Option<String> {
    let drained = dir.path("drained").exists() || dir.path("drainer.drained").exists();
    if matches!(sequence, Sequence::DrainWithinKillTimeout | Sequence::TreeDrainWithinKillTimeout) {
        return match drained && stop_took >= DRAIN {
            true => None,
            false => Some(format!("the workload did not drain its {:?} (stop took {:?})", DRAIN, stop_took)),
        };
    }
    if drained {
        return Some("the child drained although Nomad's kill_timeout is shorter".to_string());
    }
    let guard_line = |log: &str| log.lines().find(|l| l.contains("its guard killed the workload")).map(str::to_string);
    let mut line = None;
    wait_for("the guard's log line", Duration::from_secs(10), || {
        line = guard_line(&dir.log());
        line.is_some()
    });
    let line = line.unwrap_or_default();
    // The count may be 0: on v2 Nomad's cgroup.kill of the scope can end the workload first.
    let killed = log_number(&line, "processes_killed");
    let since_stop_ms = log_number(&line, "since_stop_ms").unwrap_or(0);
    // Nomad's SIGKILL comes at the kill_timeout, never before; the guard acts after it. damon
    // notes the stop when it handles the signal, which on a loaded machine is a few ms after
    // Nomad sent it, so the guard's figure may fall that much short of the kill_timeout.
    let noted_late = Duration::from_millis(100);
    if killed.is_none() || since_stop_ms + (noted_late.as_millis() as u64) < kill_timeout.as_millis() as u64 {
        return Some(format!("the guard's line lacks the processes it ended or the time since the stop: {}", line));
    }
    println!(
        "nomad ({}): the guard ended {} processes {} ms after the stop signal",
        cgroup_version(),
        killed.unwrap_or(0),
        since_stop_ms
    );
    None
}

/// The whole number `"key":N` of a JSON log line.
fn log_number(line: &str, key: &str) -> Option<u64> {
    let rest = &line[line.find(&format!("\"{}\":", key))? + key.len() + 3..];
    rest[..rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len())].parse().ok()
}

/// Waits up to 10 s for the SIGKILLed processes to finish exiting (on a slow VM hundreds of
/// them take a while), then returns those still alive: left behind for good. A process that the
/// kernel is still taking down (PF_EXITING: it was killed and never runs its own code again)
/// is not left running; it is named on stdout with where it waits. Once in some 450 runs under
/// QEMU without KVM one stayed so for over 10 s, its memory already gone.
fn survivors(dir: &TestDir) -> Vec<String> {
    let pids: Vec<u32> = PID_FILES.iter().filter_map(|f| read_pid(&dir.path(f))).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|&pid| liveness(pid) == Liveness::Running) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut left = Vec::new();
    for pid in pids {
        // The report first, then one reading that decides: a process may end in between.
        let (command, state) = (command_of(pid), process_state(pid));
        match liveness(pid) {
            Liveness::Ended => {}
            Liveness::Exiting => {
                println!("nomad ({}): process {} is still exiting, not running: {}", cgroup_version(), pid, state)
            }
            Liveness::Running => left.push(format!("{} ({}; {})", pid, command, state)),
        }
    }
    left
}

/// Whether the task's cgroups hold nothing at all: no subgroup, no process.
fn empty(task: &NomadTask) -> bool {
    task.dirs.iter().take(if task.v2 { 1 } else { 3 }).all(|d| {
        !d.exists()
            || (fs::read_dir(d).map_or(true, |es| es.flatten().all(|e| !e.path().is_dir()))
                && fs::read_to_string(d.join("cgroup.procs")).map_or(true, |p| p.trim().is_empty()))
    })
}

/// How long each phase of a run took, printed (live, on stderr) when a run is slow: the
/// Nomad suite is the longest in the VM, and a run that hangs shows where.
struct Phases {
    start: Instant,
    last: Instant,
    ends: Vec<(&'static str, Duration)>,
}

impl Phases {
    fn new() -> Phases {
        let now = Instant::now();
        Phases { start: now, last: now, ends: Vec::new() }
    }

    fn end(&mut self, phase: &'static str) {
        let now = Instant::now();
        self.ends.push((phase, now - self.last));
        self.last = now;
    }

    fn report_if_slow(&self, run: &str) {
        if self.last - self.start > Duration::from_secs(8) {
            let phases: Vec<String> = self.ends.iter().map(|(p, d)| format!("{} {:.1?}", p, d)).collect();
            eprintln!("nomad: slow run, {}: {}", run, phases.join(", "));
        }
    }
}

/// Runs `runs` tasks through `sequence`, under damon or (`with_damon` false, the control) as
/// the plain workload, as Nomad would run it without damon.
fn run_sequence(sequence: Sequence, runs: usize, with_damon: bool) -> Tally {
    let mut tally = Tally::default();
    // A run takes seconds; a minute without progress is a hang, and its report shows where.
    let watchdog = Watchdog::new(Duration::from_secs(60));
    for run in 0..runs {
        let task = NomadTask::new(&format!("{:?}-{}-{}", sequence, with_damon, run).to_lowercase());
        let dir = TestDir::new(&format!("nomad-{:?}", sequence).to_lowercase());
        watchdog.pet(format!("{:?} run {} (with damon: {})", sequence, run, with_damon), dir.path("damon.log"));
        let (damon_timeout, nomad_timeout, behaviour) = match sequence {
            Sequence::ChildObeys => (Some("4s"), Duration::from_secs(5), "obedient-swarm"),
            Sequence::DamonTimeoutFirst => (Some("200ms"), Duration::from_secs(2), "swarm"),
            Sequence::NomadKillFirst | Sequence::FinalKillAtOnce => (Some("10s"), Duration::from_millis(200), "swarm"),
            Sequence::DrainWithinKillTimeout => (None, Duration::from_secs(8), "drain"),
            Sequence::DrainCutByKillTimeout => (None, Duration::from_secs(2), "drain"),
            Sequence::TreeDrainWithinKillTimeout => (None, Duration::from_secs(8), "child-first"),
        };
        let drains = behaviour == "drain" || behaviour == "child-first";
        let mut env = vec![("DAMON_PROCESS_LIMIT", "500")];
        env.extend(damon_timeout.map(|timeout| ("DAMON_KILL_TIMEOUT", timeout)));
        if sequence == Sequence::TreeDrainWithinKillTimeout {
            env.push(("DAMON_STOP_SIGNAL_SCOPE", "tree"));
        }
        let program = workload();
        let drain_ms = DRAIN.as_millis().to_string();
        let mut args = vec![program.to_str().unwrap(), behaviour];
        if drains {
            args.push(&drain_ms);
        }
        args.push(dir.0.to_str().unwrap());
        let mut phases = Phases::new();
        let mut damon = if with_damon { task.start(&dir, &env, &args) } else { task.start_plain(&dir, &args) };
        let damon_pid = damon.id();
        wait_for("the workload to start", Duration::from_secs(30), || read_pid(&dir.path("child.pid")).is_some());
        phases.end("start");
        let stop = Instant::now();
        let status = task.shutdown(&mut damon, nomad_timeout);
        let stop_took = stop.elapsed();
        phases.end("shutdown");
        if sequence == Sequence::NomadKillFirst {
            // Nomad's executor plugin is killed and the task runner's stop hooks run: a moment.
            std::thread::sleep(Duration::from_millis(500));
        }
        task.final_kill();
        let cleanup = task.cleanup();
        phases.end("final kill and removal");
        let expected = match (sequence, with_damon) {
            (Sequence::ChildObeys, _) => Some(130),
            (Sequence::DamonTimeoutFirst, true) => Some(137),
            (Sequence::DrainWithinKillTimeout, _) => Some(0),
            (Sequence::TreeDrainWithinKillTimeout, true) => Some(3),
            _ => None,
        };
        let survivors = survivors(&dir);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !groups_of(damon_pid).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let groups = groups_of(damon_pid);
        phases.end("waits for survivors and groups");
        phases.report_if_slow(&format!("{:?} run {}", sequence, run));
        // v2's single removal cannot wait for the processes its cgroup.kill has just killed
        // (when Nomad's kill comes while the guard is still at work, and at once: also when
        // the kill_timeout cuts a drain short, where the guard starts at Nomad's SIGKILL).
        let nomad_killed =
            matches!(sequence, Sequence::NomadKillFirst | Sequence::FinalKillAtOnce | Sequence::DrainCutByKillTimeout);
        let raced = task.v2 && nomad_killed && cleanup.is_err() && empty(&task);
        tally.runs += 1;
        tally.processes_left += survivors.len();
        tally.groups_left += groups.len() + usize::from(cleanup.is_err() && !raced);
        tally.raced_own_kill += usize::from(raced);
        if let Ok(attempt) = cleanup {
            *tally.removed_at.entry(attempt).or_insert(0) += 1;
        }
        let status_wrong = with_damon && status.code() != expected;
        let drain_wrong = if drains { drain_problem(sequence, &dir, stop_took, nomad_timeout) } else { None };
        if drains {
            tally.stop_ms.push(stop_took.as_millis());
        }
        if status_wrong
            || drain_wrong.is_some()
            || (cleanup.is_err() && !raced)
            || !survivors.is_empty()
            || !groups.is_empty()
        {
            tally.reports.push(format!(
                "{:?} run {}: damon {} (expected {:?}); {}Nomad's removal: {:?}; processes left: {:?}; damon's groups left: {:?}\n--- log\n{}",
                sequence,
                run,
                status,
                expected,
                drain_wrong.map(|p| format!("{}; ", p)).unwrap_or_default(),
                cleanup,
                survivors,
                groups,
                dir.log()
            ));
            for pid in PID_FILES.iter().filter_map(|f| read_pid(&dir.path(f))).filter(|&pid| alive(pid)) {
                signal(pid, Signal::SIGKILL);
            }
        }
    }
    let mut notes = String::new();
    if tally.raced_own_kill > 0 {
        notes += &format!(
            ", Nomad's single removal raced its own cgroup.kill {} times (empty scope left)",
            tally.raced_own_kill
        );
    }
    if !tally.stop_ms.is_empty() {
        notes += &format!(", from the kill signal to damon's end (ms): {:?}", tally.stop_ms);
    }
    println!(
        "nomad ({}): {:?}{}: {} runs, {} processes left, {} groups left, removal succeeded at attempt {:?}{}",
        cgroup_version(),
        sequence,
        if with_damon { "" } else { " without damon (control)" },
        tally.runs,
        tally.processes_left,
        tally.groups_left,
        tally.removed_at,
        notes
    );
    tally
}

fn assert_clean(tally: Tally) {
    assert!(tally.reports.is_empty(), "{} runs left something:\n{}", tally.reports.len(), tally.reports.join("\n"));
}

fn runs() -> usize {
    // About a second a run in the VM: 50 of each order there cost CI about four minutes.
    std::env::var("DAMON_NOMAD_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(50)
}

#[test]
fn nomad_stop_with_a_child_that_obeys_leaves_nothing() {
    assert_clean(run_sequence(Sequence::ChildObeys, runs(), true));
}

#[test]
fn nomad_stop_with_damon_timeout_first_leaves_nothing() {
    assert_clean(run_sequence(Sequence::DamonTimeoutFirst, runs(), true));
}

#[test]
fn nomad_stop_with_nomad_sigkill_first_leaves_nothing() {
    assert_clean(run_sequence(Sequence::NomadKillFirst, runs(), true));
}

/// On v2 Nomad removes the scope once, at once after its asynchronous cgroup.kill (also in the
/// order above, when the guard is slower than Nomad's hooks, as on a loaded VM): when the
/// processes it killed are still exiting, the removal fails and Nomad leaves the (empty)
/// scope, with or without damon. The control run, the same workload as a plain raw_exec task,
/// shows how often Nomad's own race happens here; damon must leave nothing else.
#[test]
fn nomad_stop_with_the_final_kill_at_once_leaves_nothing() {
    let with_damon = run_sequence(Sequence::FinalKillAtOnce, runs(), true);
    if cgroup_version() == "v2" {
        run_sequence(Sequence::FinalKillAtOnce, (runs() / 5).max(1), false);
    }
    assert_clean(with_damon);
}

fn drain_runs() -> usize {
    // Each run waits out a drain or a kill_timeout of seconds.
    (runs() / 10).max(1)
}

/// damon's defaults under Nomad give the service the job's whole kill_timeout: with 8 s, a
/// child that drains for 5 s does so and exits 0 (with damon's old 4 s default it was killed).
#[test]
fn nomad_stop_with_defaults_gives_the_child_the_whole_kill_timeout() {
    assert_clean(run_sequence(Sequence::DrainWithinKillTimeout, drain_runs(), true));
}

/// With DAMON_STOP_SIGNAL_SCOPE=tree every process got the stop, so every process gets the
/// job's kill_timeout: a child that exits at once does not cut short the 5 s drain of the
/// setsid() process beside it; damon ends after it with the child's status, and nothing is left.
#[test]
fn nomad_stop_with_the_tree_scope_lets_the_rest_drain_after_the_child() {
    assert_clean(run_sequence(Sequence::TreeDrainWithinKillTimeout, drain_runs(), true));
}

/// With a kill_timeout of 2 s the same child is cut short by Nomad's SIGKILL of damon, and
/// damon's guard ends the tree: nothing left, and the guard's line says what it ended, when.
#[test]
fn nomad_stop_with_defaults_and_a_short_kill_timeout_ends_the_tree_through_the_guard() {
    assert_clean(run_sequence(Sequence::DrainCutByKillTimeout, drain_runs(), true));
}

/// raw_exec's `cgroup_v2_override` / `cgroup_v1_override` put the task in an operator's cgroup,
/// which other tasks may share. On v1 damon nests its groups there and leaves the neighbours
/// alone; on v2 a cgroup shared with other processes cannot pass controllers down (no internal
/// processes), so damon refuses it clearly (125, naming DAMON_CGROUP_PARENT) and leaves it as
/// it found it.
#[test]
fn nomad_cgroup_override_shared_with_another_task() {
    let name = format!("ops-shared-{}", std::process::id());
    let dirs: Vec<PathBuf> = if cgroup_version() == "v2" {
        vec![Path::new(MOUNT).join(&name)]
    } else {
        ["freezer", "cpu", "memory"].iter().map(|c| Path::new(MOUNT).join(c).join(&name)).collect()
    };
    for dir in &dirs {
        fs::create_dir_all(dir).unwrap();
    }
    let task = NomadTask { dirs: dirs.clone(), v2: cgroup_version() == "v2" };
    // Another task's process, already in the shared cgroup.
    let mut neighbour = Command::new("sh")
        .args([
            "-c",
            &format!(
                "{} && exec sleep 600",
                dirs.iter().map(|d| format!("echo $$ > {}/cgroup.procs", d.display())).collect::<Vec<_>>().join(" && ")
            ),
        ])
        .spawn()
        .unwrap();
    wait_for("the neighbour to join the shared cgroup", Duration::from_secs(10), || {
        fs::read_to_string(dirs[0].join("cgroup.procs")).unwrap_or_default().contains(&neighbour.id().to_string())
    });
    let dir = TestDir::new("nomad-override");
    let mut damon = task.start(
        &dir,
        &[("DAMON_MEMORY_LIMIT", "64")],
        &[workload().to_str().unwrap(), "obedient-swarm", dir.0.to_str().unwrap()],
    );
    let damon_pid = damon.id();
    if task.v2 {
        let status = damon.wait().unwrap();
        assert_eq!(status.code(), Some(125), "{}", dir.log());
        assert!(dir.log().contains("set DAMON_CGROUP_PARENT to a cgroup of its own"), "{}", dir.log());
        assert!(read_pid(&dir.path("child.pid")).is_none(), "the command ran");
    } else {
        wait_for("the workload to start", Duration::from_secs(30), || read_pid(&dir.path("child.pid")).is_some());
        let status = task.shutdown(&mut damon, Duration::from_secs(5));
        assert_eq!(status.code(), Some(130), "{}", dir.log());
    }
    assert!(alive(neighbour.id()), "the other task's process was killed");
    let subdirs: Vec<PathBuf> = dirs
        .iter()
        .flat_map(|d| fs::read_dir(d).unwrap().flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect::<Vec<_>>())
        .collect();
    assert!(subdirs.is_empty(), "left in the shared cgroup: {:?}", subdirs);
    if task.v2 {
        assert_eq!(fs::read_to_string(dirs[0].join("cgroup.subtree_control")).unwrap().trim(), "");
    }
    assert!(groups_of(damon_pid).is_empty(), "damon's groups left: {:?}", groups_of(damon_pid));
    let _ = neighbour.kill();
    let _ = neighbour.wait();
}

/// In Nomad's layout, with no DAMON_CGROUP_PARENT: damon's group is nested in the task's
/// cgroup with the limits Nomad's variables ask for, Nomad's own limits are untouched, the
/// metrics carry the task's labels and the log says where the workload ran.
#[test]
fn nomad_layout_nests_damon_limits_and_reports_them() {
    let task = NomadTask::new("layout");
    let dir = TestDir::new("nomad-layout");
    let port = free_port();
    let addr = format!("127.0.0.1:{}", port);
    let mut damon = task.start(
        &dir,
        &[("NOMAD_ADDR_damon", addr.as_str()), ("NOMAD_JOB_NAME", "shop")],
        &[workload().to_str().unwrap(), "wait-signals"],
    );
    let dirs = container_dirs(&dir);
    let scope_memory = if task.v2 { &task.dirs[0] } else { &task.dirs[2] };
    let memory_dir = dirs.iter().find(|d| d.starts_with(scope_memory)).unwrap_or_else(|| {
        panic!("no group of damon's inside the task's memory cgroup {}: {:?}", scope_memory.display(), dirs)
    });
    let (hard, soft) =
        if task.v2 { ("memory.max", "memory.high") } else { ("memory.limit_in_bytes", "memory.soft_limit_in_bytes") };
    assert_eq!(read_trimmed(&memory_dir.join(hard)), (512u64 << 20).to_string());
    assert_eq!(read_trimmed(&memory_dir.join(soft)), (256u64 << 20).to_string());
    // Nomad's own limit on the task's cgroup, as the executor wrote it.
    assert_eq!(read_trimmed(&scope_memory.join(hard)), (512u64 << 20).to_string());
    let mut scrape = String::new();
    wait_for("a scrape with the child up", Duration::from_secs(30), || {
        scrape = http_get(port, "/metrics").unwrap_or_default();
        scrape.lines().any(|l| l.starts_with("damon_up{") && l.ends_with(" 1"))
    });
    assert!(
        scrape.contains("nomad_job_name=\"shop\"") && scrape.contains("nomad_task_name=\"web\""),
        "the metrics lack the task's labels:\n{}",
        scrape
    );
    let status = task.shutdown(&mut damon, Duration::from_secs(5));
    // 0: the child read the SIGINT; 130: it came before the child had set up (a slow VM).
    assert!(matches!(status.code(), Some(0) | Some(130)), "{}\n{}", status, dir.log());
    task.final_kill();
    assert_eq!(task.cleanup(), Ok(1), "Nomad's removal\n{}", dir.log());
    let log = dir.log();
    assert!(log.contains("\"message\":\"damon exiting\"") && log.contains("\"nomad_task_name\":\"web\""), "{}", log);
}
