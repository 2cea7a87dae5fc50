//! damon.exe on a real Windows host (the workflow in .github/workflows/windows.yml runs these):
//! what Wine cannot show. The memory limit refuses an allocation, the CPU rate caps a busy
//! loop, the job's affinity pins the child to the cores asked for, Ctrl+Break and Ctrl+C reach
//! the workload on its own console (a JVM-like child, a launcher's grandchild) and no process
//! outside the job, the tree ends with damon.exe, DAMON_SANDBOX's UI restrictions deny
//! what they name, and the job's IO and network rate control are in force or refused as this
//! host's Windows build decides (`cmd /c ver`): from build 14393 (Windows 10 1607 / Server 2016)
//! on, damon.exe refuses the IO rate control, which Microsoft documents as unsupported there,
//! and sets the network rate control; before, it holds the IO limit and refuses the network cap.
//! Nothing here sends traffic off the host unless the operator names a sink of their own in
//! DAMON_TEST_UDP_SINK (an address:port reached through a network adapter); without it the
//! network test says it is skipped and passes.
//! Written for Windows 10 / Server 2016 and later; they cannot run on the Linux machines this
//! project is developed on, where tests/windows_wine.rs covers what Wine can show.

#![cfg(windows)]

use std::io::{BufRead, BufReader};
use std::os::windows::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use windows_sys::Win32::Foundation::{CloseHandle, FALSE, STILL_ACTIVE};
use windows_sys::Win32::System::Console::{GenerateConsoleCtrlEvent, CTRL_BREAK_EVENT};
use windows_sys::Win32::System::Threading::{
    GetExitCodeProcess, OpenProcess, TerminateProcess, CREATE_NEW_PROCESS_GROUP, PROCESS_QUERY_LIMITED_INFORMATION,
    PROCESS_TERMINATE,
};

const DAMON: &str = env!("CARGO_BIN_EXE_damon");

fn workload() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().join("examples").join("workload.exe")
}

struct TestDir(PathBuf);

impl TestDir {
    fn new(name: &str) -> TestDir {
        let dir = std::env::temp_dir().join(format!("damon-native-{}-{}", name, std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TestDir(dir)
    }
    fn log(&self) -> String {
        std::fs::read_to_string(self.0.join("damon.log")).unwrap_or_default()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn damon(dir: &TestDir) -> Command {
    let mut cmd = Command::new(DAMON);
    cmd.env("DAMON_LOG_DIR", &dir.0).current_dir(&dir.0);
    cmd
}

fn explain(out: &Output, dir: &TestDir) -> String {
    format!(
        "status: {}\n--- stdout\n{}--- stderr\n{}--- log\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        dir.log()
    )
}

fn alive(pid: u32) -> bool {
    // SAFETY: plain values; the handle is closed below.
    let handle = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, FALSE, pid) };
    if handle.is_null() {
        return false;
    }
    let mut code = 0u32;
    // SAFETY: the handle is open; `code` is writable.
    let ok = unsafe { GetExitCodeProcess(handle, &mut code) };
    // SAFETY: the handle came from OpenProcess above.
    unsafe { CloseHandle(handle) };
    ok != FALSE && code == STILL_ACTIVE as u32
}

fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {}", what);
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn read_pid(file: &Path) -> Option<u32> {
    std::fs::read_to_string(file).ok().and_then(|s| s.trim().parse().ok())
}

/// damon.exe in a process group of its own, so the test can send it Ctrl+Break as Nomad does.
fn spawn_in_own_group(mut cmd: Command) -> Child {
    cmd.creation_flags(CREATE_NEW_PROCESS_GROUP).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.spawn().unwrap()
}

/// damon.exe started as [`spawn_in_own_group`], once its workload has printed "ready": it, and
/// the workload's output from there on.
fn spawn_until_ready(cmd: Command) -> (Child, BufReader<std::process::ChildStdout>) {
    let mut damon = spawn_in_own_group(cmd);
    let mut stdout = BufReader::new(damon.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    (damon, stdout)
}

fn ctrl_break(group: u32) {
    // SAFETY: plain values.
    assert_ne!(unsafe { GenerateConsoleCtrlEvent(CTRL_BREAK_EVENT, group) }, FALSE, "GenerateConsoleCtrlEvent");
}

#[test]
fn exit_codes() {
    let dir = TestDir::new("exit");
    for code in [0, 3, 255] {
        let out = damon(&dir).arg(workload()).args(["exit", &code.to_string()]).output().unwrap();
        assert_eq!(out.status.code(), Some(code), "{}", explain(&out, &dir));
    }
    let out = damon(&dir).arg("no-such-program.exe").output().unwrap();
    assert_eq!(out.status.code(), Some(127), "{}", explain(&out, &dir));
}

#[test]
fn cores_pin_the_child_and_a_core_beyond_the_host_is_125() {
    let dir = TestDir::new("cores");
    let processors = std::thread::available_parallelism().map_or(1, |n| n.get());
    let last = (processors - 1).to_string();
    let affinity = |env: &[(&str, &str)]| {
        let out = damon(&dir).envs(env.iter().copied()).arg(workload()).arg("affinity").output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", explain(&out, &dir));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        stdout.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).map(|v| v.trim().to_string())
    };
    // GetProcessAffinityMask of the child: the job's affinity.
    assert_eq!(affinity(&[("DAMON_CPU_CORES", "0")]).as_deref(), Some("0"));
    assert_eq!(affinity(&[("NOMAD_CPU_CORES", &last)]).as_deref(), Some(last.as_str()));
    assert_eq!(affinity(&[("DAMON_CPU_CORES", &last), ("NOMAD_CPU_CORES", "0")]).as_deref(), Some(last.as_str()));
    // Windows has at most 64 processor groups of 64: core 4096 is beyond any host.
    let beyond = "4096".to_string();
    let out = damon(&dir).env("DAMON_CPU_CORES", &beyond).arg(workload()).arg("affinity").output().unwrap();
    assert_eq!(out.status.code(), Some(125), "{}", explain(&out, &dir));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "invalid value \"{}\" for DAMON_CPU_CORES: core {} is not on this host",
            beyond, beyond
        )),
        "{}",
        explain(&out, &dir)
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("Cpus_allowed_list"), "the command ran");
}

#[test]
fn the_tree_is_in_the_job() {
    let dir = TestDir::new("job");
    let out = damon(&dir).arg(workload()).arg("job").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("in_job=true") && stdout.contains("child_in_job=true"), "{}", explain(&out, &dir));
}

#[test]
fn the_process_limit_refuses_a_process_and_is_reported_and_counted() {
    let dir = TestDir::new("processes");
    // `workload job` starts itself once more: the job's limit of one process refuses it.
    let out = damon(&dir).args(["--process-limit", "1"]).arg(workload()).arg("job").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("child_in_job"), "a second process ran under a limit of 1\n{}", explain(&out, &dir));
    let log = dir.log();
    assert!(log.contains("process limit of 1 reached"), "{}", explain(&out, &dir));
    assert!(log.contains("\"process_limit_refusals\":"), "{}", explain(&out, &dir));
}

#[test]
fn the_memory_limit_refuses_an_allocation_beyond_it() {
    let dir = TestDir::new("memory");
    let out = damon(&dir).args(["--memory-limit", "64"]).arg(workload()).args(["alloc", "256", "0"]).output().unwrap();
    assert_ne!(out.status.code(), Some(0), "256 MiB allocated under a 64 MiB limit\n{}", explain(&out, &dir));
    assert!(dir.log().contains("memory limit of 64 MiB exceeded"), "{}", explain(&out, &dir));
}

#[test]
fn a_busy_loop_capped_at_half_a_core_uses_about_half() {
    let dir = TestDir::new("cpu");
    let check = String::from_utf8(Command::new(DAMON).arg("--check").output().unwrap().stdout).unwrap();
    let mhz: u64 = check
        .lines()
        .find_map(|l| l.strip_prefix("MHz per core:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("MHz per core in damon --check");
    let out =
        damon(&dir).args(["--cpu-limit", &(mhz / 2).to_string()]).arg(workload()).args(["burn", "3"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let figure = |key: &str| -> f64 {
        stdout.split_whitespace().find_map(|w| w.strip_prefix(key)).and_then(|v| v.parse().ok()).expect(key)
    };
    let share = figure("cpu_seconds=") / figure("wall_seconds=");
    assert!((0.25..=0.75).contains(&share), "share {:.2}\n{}", share, explain(&out, &dir));
}

#[test]
fn ctrl_break_reaches_the_child() {
    let dir = TestDir::new("break");
    let mut cmd = damon(&dir);
    cmd.arg(workload()).arg("wait-signals");
    let (mut damon, mut stdout) = spawn_until_ready(cmd);
    ctrl_break(damon.id());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "CTRL_BREAK_EVENT");
    assert_eq!(damon.wait().unwrap().code(), Some(0), "{}", dir.log());
}

/// Runs `workload jvm-like` under damon.exe with `stop_signal`, stops damon.exe with Ctrl+Break
/// as Nomad does, beside a process on the test's (and damon.exe's) console, outside the job,
/// that records every console event it gets. Returns damon.exe's exit code, what the workload
/// printed, and what the outsider recorded.
fn stop_jvm_like(stop_signal: Option<&str>) -> (Option<i32>, String, String) {
    let dir = TestDir::new(&format!("jvm-{}", stop_signal.unwrap_or("default")));
    let recorded = dir.0.join("outsider.txt");
    // Its own group, so that the test's Ctrl+Break to damon.exe's group passes it by; Ctrl+C,
    // which a new group starts without, the outsider turns back on.
    let mut outsider = Command::new(workload())
        .args(["record-events".as_ref(), recorded.as_os_str()])
        .creation_flags(CREATE_NEW_PROCESS_GROUP)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut outsider_out = BufReader::new(outsider.stdout.take().unwrap());
    let mut line = String::new();
    outsider_out.read_line(&mut line).unwrap();
    let mut cmd = damon(&dir);
    cmd.env("DAMON_KILL_TIMEOUT", "3s").arg(workload()).arg("jvm-like");
    if let Some(value) = stop_signal {
        cmd.env("DAMON_STOP_SIGNAL", value);
    }
    let (mut damon, mut stdout) = spawn_until_ready(cmd);
    ctrl_break(damon.id());
    let mut printed = String::new();
    let _ = std::io::Read::read_to_string(&mut stdout, &mut printed);
    let code = damon.wait().unwrap().code();
    std::thread::sleep(Duration::from_millis(500));
    let _ = outsider.kill();
    let _ = outsider.wait();
    (code, printed, std::fs::read_to_string(&recorded).unwrap_or_default())
}

/// As a JVM: Ctrl+Break (the default) only makes it print its threads, so the timeout ends
/// it (137); with DAMON_STOP_SIGNAL=CTRL_C it ends by itself (0). Neither event reaches a
/// process outside the job on damon.exe's console.
#[test]
fn ctrl_c_ends_a_jvm_like_child_and_ctrl_break_only_makes_it_print() {
    let (code, printed, outsider) = stop_jvm_like(Some("CTRL_C"));
    assert_eq!((code, printed.as_str(), outsider.as_str()), (Some(0), "CTRL_C_EVENT\n", ""));
    let (code, printed, outsider) = stop_jvm_like(None);
    assert_eq!((code, printed.as_str(), outsider.as_str()), (Some(137), "thread dump\n", ""));
}

/// A launcher (cmd.exe /c) passes no event on; on the workload's console its grandchild gets
/// the stop itself, with DAMON_STOP_SIGNAL_SCOPE=tree.
#[test]
fn a_launchers_grandchild_gets_ctrl_c_with_the_tree_scope() {
    let dir = TestDir::new("launcher");
    let recorded = dir.0.join("grandchild.txt");
    let mut cmd = damon(&dir);
    cmd.env("DAMON_STOP_SIGNAL", "CTRL_C")
        .env("DAMON_STOP_SIGNAL_SCOPE", "tree")
        .env("DAMON_KILL_TIMEOUT", "10s")
        .args([
            "cmd.exe".as_ref(),
            "/c".as_ref(),
            workload().as_os_str(),
            "record-events".as_ref(),
            recorded.as_os_str(),
        ]);
    let (mut damon, _stdout) = spawn_until_ready(cmd);
    ctrl_break(damon.id());
    let code = damon.wait().unwrap().code();
    assert_ne!(code, Some(137), "killed at the timeout\n{}", dir.log());
    assert_eq!(std::fs::read_to_string(&recorded).unwrap_or_default(), "CTRL_C_EVENT\n", "{}", dir.log());
}

#[test]
fn a_child_ignoring_ctrl_break_is_terminated_with_its_tree() {
    let dir = TestDir::new("timeout");
    let mut cmd = damon(&dir);
    cmd.env("DAMON_KILL_TIMEOUT", "1s").arg(workload()).arg("ignore-stop").arg(&dir.0);
    let mut damon = spawn_in_own_group(cmd);
    wait_for("pid files", Duration::from_secs(20), || read_pid(&dir.0.join("grandchild.pid")).is_some());
    let (child, grandchild) =
        (read_pid(&dir.0.join("child.pid")).unwrap(), read_pid(&dir.0.join("grandchild.pid")).unwrap());
    ctrl_break(damon.id());
    assert_eq!(damon.wait().unwrap().code(), Some(137), "{}", dir.log());
    wait_for("the tree to end", Duration::from_secs(10), || !alive(child) && !alive(grandchild));
}

#[test]
fn the_tree_ends_when_damon_is_killed() {
    let dir = TestDir::new("kill");
    let mut cmd = damon(&dir);
    cmd.arg(workload()).arg("ignore-stop").arg(&dir.0);
    let mut damon = spawn_in_own_group(cmd);
    wait_for("pid files", Duration::from_secs(20), || read_pid(&dir.0.join("grandchild.pid")).is_some());
    let (child, grandchild) =
        (read_pid(&dir.0.join("child.pid")).unwrap(), read_pid(&dir.0.join("grandchild.pid")).unwrap());
    // SAFETY: plain values; the handle is closed below.
    let handle = unsafe { OpenProcess(PROCESS_TERMINATE, FALSE, damon.id()) };
    assert!(!handle.is_null());
    // SAFETY: the handle is open with PROCESS_TERMINATE; closed right after.
    unsafe {
        TerminateProcess(handle, 1);
        CloseHandle(handle);
    }
    let _ = damon.wait();
    wait_for("KILL_ON_JOB_CLOSE to end the tree", Duration::from_secs(10), || !alive(child) && !alive(grandchild));
}

/// Nomad 1.9+'s Windows executor holds itself and the task in a job with KILL_ON_JOB_CLOSE and
/// kills the task by closing it (hashicorp/nomad #24214). damon.exe's job nests inside it: the
/// workload starts, `--check` names the enclosing job and its KILL_ON_JOB_CLOSE, and the close
/// ends damon.exe, the child and the grandchild. The launcher (workload `in-job`) puts itself
/// in such a job, starts damon.exe, and closes the job once the grandchild's pid file exists.
#[test]
fn nomads_job_closed_ends_damon_exe_and_the_whole_tree() {
    let dir = TestDir::new("nomad-job");
    let check = Command::new(workload())
        .arg("in-job")
        .arg(dir.0.join("never"))
        .arg(DAMON)
        .arg("--check")
        .env("DAMON_LOG_DIR", &dir.0)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&check.stdout).to_string();
    let line = said.lines().find(|l| l.starts_with("enclosing job:")).unwrap_or_default();
    assert!(
        line.contains("runs inside another job") && line.contains("KILL_ON_JOB_CLOSE"),
        "{}",
        explain(&check, &dir)
    );
    let grandchild_file = dir.0.join("grandchild.pid");
    let mut launcher = Command::new(workload());
    launcher.arg("in-job").arg(&grandchild_file).arg(DAMON).arg(workload()).arg("ignore-stop").arg(&dir.0);
    launcher.env("DAMON_LOG_DIR", &dir.0).current_dir(&dir.0);
    let mut launcher = spawn_in_own_group(launcher);
    wait_for("pid files", Duration::from_secs(20), || read_pid(&grandchild_file).is_some());
    let (child, grandchild) = (read_pid(&dir.0.join("child.pid")).unwrap(), read_pid(&grandchild_file).unwrap());
    let _ = launcher.wait();
    wait_for("the closed job to end the tree", Duration::from_secs(10), || !alive(child) && !alive(grandchild));
    assert!(dir.log().contains("\"child started\""), "{}", dir.log());
}

/// DAMON_SANDBOX=Y: the job holds every UI restriction, a system parameter cannot be changed
/// (SystemParametersInfo, which JOB_OBJECT_UILIMIT_SYSTEMPARAMETERS denies), and no child breaks
/// away from the job. Without the sandbox (the control) the job holds none and the parameter can
/// be set (to the value it has: nothing changes on the host).
#[test]
fn the_sandbox_denies_what_the_ui_restrictions_name() {
    let dir = TestDir::new("sandbox");
    let probe = |sandbox: &str| {
        let out = damon(&dir).env("DAMON_SANDBOX", sandbox).arg(workload()).arg("ui-probe").output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", explain(&out, &dir));
        (String::from_utf8_lossy(&out.stdout).into_owned(), explain(&out, &dir))
    };
    let (without, why) = probe("N");
    assert!(without.contains("ui_restrictions=0x0\n") || without.contains("ui_restrictions=0x0\r\n"), "{}", why);
    assert!(without.contains("system_parameters: allowed"), "{}", why);
    let (with, why) = probe("Y");
    // Desktop, display settings, exit Windows, global atoms, handles, both clipboards, system
    // parameters: JOB_OBJECT_UILIMIT_* 0x1 to 0x80.
    assert!(with.contains("ui_restrictions=0xff"), "{}", why);
    assert!(with.contains("system_parameters: denied"), "{}", why);
    assert!(with.contains("breakaway: denied"), "{}", why);
    assert!(dir.log().contains("\"sandbox\":\"UI restrictions (desktop"), "{}", why);
}

/// This host's Windows version (major, minor, build), as `cmd /c ver` prints it:
/// "Microsoft Windows [Version 10.0.20348.2849]" (the word "Version" may be translated, so
/// the version is the first word of dotted numbers).
fn windows_version() -> (u32, u32, u32) {
    let out = Command::new("cmd").args(["/c", "ver"]).output().expect("run cmd /c ver");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let version = text.split(|c: char| c.is_whitespace() || c == '[' || c == ']').find_map(|word| {
        let numbers: Vec<u32> = word.split('.').map(|n| n.parse().ok()).collect::<Option<_>>()?;
        match numbers[..] {
            [major, minor, build, ..] => Some((major, minor, build)),
            _ => None,
        }
    });
    version.unwrap_or_else(|| panic!("no Windows version in the output of cmd /c ver: {:?}", text))
}

/// Windows 10 1607 / Windows Server 2016: from this build on Microsoft documents the job's IO
/// rate control as unsupported, and the job's network rate control exists.
const BUILD_1607: u32 = 14393;

/// DAMON_IO_*: the job's IO rate control, decided by this host's build. From 14393 on, Microsoft
/// documents it as unsupported: damon.exe refuses to start with 125, naming the IO rate control,
/// that documentation, this host's version and the way out, and nothing runs. Before, it holds
/// unbuffered writes to the limit (not above it by more than a tenth; a free run, the control,
/// is far faster).
#[test]
fn io_limits_are_refused_from_build_14393_on_and_hold_writes_to_the_limit_before() {
    let dir = TestDir::new("io");
    let file = dir.0.join("written");
    let write = |limits: &[(&str, &str)]| {
        let mut cmd = damon(&dir);
        cmd.envs(limits.iter().copied()).arg(workload()).args(["direct-io", "write"]).arg(&file).args(["8", "64"]);
        cmd.output().unwrap()
    };
    let rate = |out: &Output| -> f64 {
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .find_map(|w| w.strip_prefix("bytes_per_second="))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no rate printed\n{}", explain(out, &dir)))
    };
    let (major, minor, build) = windows_version();
    let limits = [("DAMON_IO_READ_BANDWIDTH", "4M"), ("DAMON_IO_WRITE_BANDWIDTH", "4M")];
    if build >= BUILD_1607 {
        let limited = write(&limits);
        let stderr = String::from_utf8_lossy(&limited.stderr).into_owned();
        println!("IO rate control refused on {}.{}.{}: {}", major, minor, build, stderr.trim());
        assert_eq!(limited.status.code(), Some(125), "{}", explain(&limited, &dir));
        for part in [
            "IO rate control".to_string(),
            "Microsoft documents it as unsupported from Windows 10 1607 / Windows Server 2016 on".to_string(),
            format!("this host: {}.{}.{}", major, minor, build),
            "unset DAMON_IO_READ_BANDWIDTH, DAMON_IO_WRITE_BANDWIDTH, DAMON_IO_READ_IOPS and DAMON_IO_WRITE_IOPS \
             to run without it"
                .to_string(),
        ] {
            assert!(stderr.contains(&part), "no {:?} on stderr\n{}", part, explain(&limited, &dir));
        }
        assert!(String::from_utf8_lossy(&limited.stdout).is_empty(), "the command ran\n{}", explain(&limited, &dir));
        assert!(!dir.log().contains("child started"), "the command ran\n{}", explain(&limited, &dir));
        assert!(!file.exists(), "the command wrote {}", file.display());
        return;
    }
    let free = write(&[]);
    assert_eq!(free.status.code(), Some(0), "{}", explain(&free, &dir));
    let free = rate(&free);
    let limit = 4.0 * 1048576.0;
    let limited = write(&limits);
    assert_eq!(limited.status.code(), Some(0), "{}", explain(&limited, &dir));
    let rate = rate(&limited);
    println!(
        "IO rate control in force on {}.{}.{}: {:.0} bytes/s under a limit of {:.0}, {:.0} without",
        major, minor, build, rate, limit, free
    );
    assert!(rate <= limit * 1.1, "{:.0} over the limit\n{}", rate, explain(&limited, &dir));
    assert!(free >= limit * 2.0, "the disk is too slow ({:.0} bytes/s) to show a limit", free);
}

/// The bytes every network adapter of the host has sent (PowerShell's Get-NetAdapterStatistics).
fn adapter_sent_bytes() -> f64 {
    let out = Command::new("powershell")
        .args(["-NoProfile", "-Command", "(Get-NetAdapterStatistics | Measure-Object -Property SentBytes -Sum).Sum"])
        .output()
        .expect("run powershell");
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().parse().unwrap_or_else(|_| panic!("Get-NetAdapterStatistics printed {:?}", text))
}

/// What the adapters sent while the workload sent UDP datagrams to `sink` for 3 s under
/// `limits`, in bytes per second, and what the workload printed.
fn udp_rate(dir: &TestDir, sink: &str, limits: &[(&str, &str)]) -> (Output, f64) {
    let before = adapter_sent_bytes();
    let start = Instant::now();
    let out = damon(dir).envs(limits.iter().copied()).arg(workload()).args(["udp-send", sink, "3"]).output().unwrap();
    let seconds = start.elapsed().as_secs_f64();
    (out, (adapter_sent_bytes() - before) / seconds)
}

/// DAMON_NET_MAX_BANDWIDTH: the job's network rate control, decided by this host's build. It
/// floods UDP at DAMON_TEST_UDP_SINK, an address:port of the operator's own beyond this host
/// (loopback traffic passes no adapter's rate control); unset, the test is skipped (it says so
/// on stderr) and sends nothing. What left the host is the adapters' count, since a cap may drop
/// datagrams rather than slow the sender. The free run, the control, comes first and must
/// succeed. From build 14393 on the cap is set ("network limit set" in the log): capped at
/// 1 MiB/s the adapters send at most 1.5 MiB/s (the host's own traffic is in the count too),
/// while the free run sends far more. Before, Windows has no network rate control: damon.exe
/// refuses to start with 125 naming it and the way out, and nothing runs.
#[test]
fn a_network_cap_holds_what_the_workload_sends_from_build_14393_on_and_is_refused_before() {
    let test = "a_network_cap_holds_what_the_workload_sends_from_build_14393_on_and_is_refused_before";
    let sink = match std::env::var("DAMON_TEST_UDP_SINK") {
        Ok(sink) if !sink.trim().is_empty() => sink.trim().to_string(),
        _ => {
            eprintln!(
                "damon-test skipped: windows_native::{}: DAMON_TEST_UDP_SINK is unset (an address:port of your own \
                 beyond this host; loopback traffic passes no adapter's rate control)",
                test
            );
            return;
        }
    };
    if let Ok(address) = sink.parse::<std::net::SocketAddr>() {
        assert!(
            !address.ip().is_loopback() && !address.ip().is_unspecified(),
            "DAMON_TEST_UDP_SINK={}: loopback traffic passes no adapter's rate control; name a host beyond this one",
            sink
        );
    }
    let dir = TestDir::new("net");
    let cap = 1048576.0;
    let (free, free_rate) = udp_rate(&dir, &sink, &[]);
    assert_eq!(free.status.code(), Some(0), "{}", explain(&free, &dir));
    let (major, minor, build) = windows_version();
    let (capped, capped_rate) = udp_rate(&dir, &sink, &[("DAMON_NET_MAX_BANDWIDTH", "1M")]);
    if build >= BUILD_1607 {
        assert_eq!(capped.status.code(), Some(0), "{}", explain(&capped, &dir));
        assert!(dir.log().contains("network limit set"), "{}", explain(&capped, &dir));
        println!(
            "network rate control in force on {}.{}.{}: adapters sent {:.0} bytes/s to {} under a cap of {:.0}, \
             {:.0} without; the workload: {} capped, {} free",
            major,
            minor,
            build,
            capped_rate,
            sink,
            cap,
            free_rate,
            String::from_utf8_lossy(&capped.stdout).trim(),
            String::from_utf8_lossy(&free.stdout).trim()
        );
        assert!(free_rate >= cap * 3.0, "the free run sent only {:.0} bytes/s: no cap can show", free_rate);
        assert!(capped_rate <= cap * 1.5, "{:.0} bytes/s over the cap\n{}", capped_rate, explain(&capped, &dir));
    } else {
        let stderr = String::from_utf8_lossy(&capped.stderr);
        println!("network rate control refused on {}.{}.{}: {}", major, minor, build, stderr.trim());
        assert_eq!(capped.status.code(), Some(125), "{}", explain(&capped, &dir));
        assert!(stderr.contains("network rate control"), "{}", explain(&capped, &dir));
        assert!(stderr.contains("unset DAMON_NET_MAX_BANDWIDTH to run without it"), "{}", explain(&capped, &dir));
        assert!(String::from_utf8_lossy(&capped.stdout).is_empty(), "the command ran");
    }
}
