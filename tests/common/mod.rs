//! Shared helpers for the integration tests: run the real damon binary on the real workload
//! program, read its log, find its cgroups, and wait with deadlines instead of bare sleeps.
//! Every failed assertion prints the command, its status, stdout, stderr and damon's log.
#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub const DAMON: &str = env!("CARGO_BIN_EXE_damon");

/// The test workload (examples/workload.rs), built by cargo beside the test executables.
pub fn workload() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let path = exe.parent().and_then(Path::parent).expect("target dir").join("examples").join("workload");
    assert!(path.exists(), "{} is missing: build it with cargo test", path.display());
    path
}

/// A directory for one test, removed when dropped.
pub struct TestDir(pub PathBuf);

impl TestDir {
    pub fn new(name: &str) -> TestDir {
        let dir = std::env::temp_dir().join(format!("damon-test-{}-{}", name, std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create test dir");
        TestDir(dir)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    /// damon's log in this directory (DAMON_LOG_DIR points here).
    pub fn log(&self) -> String {
        fs::read_to_string(self.path("damon.log")).unwrap_or_default()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// damon with a clean environment (no DAMON_* or NOMAD_* from the caller) logging into `dir`.
pub fn damon(dir: &TestDir) -> Command {
    let mut cmd = Command::new(DAMON);
    in_clean_environment(&mut cmd, dir);
    cmd
}

/// Removes the caller's DAMON_* and NOMAD_* variables, and points damon's log at `dir`.
pub fn in_clean_environment(cmd: &mut Command, dir: &TestDir) {
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("DAMON_") || key.starts_with("NOMAD_") {
            cmd.env_remove(&*key);
        }
    }
    cmd.env("DAMON_LOG_DIR", &dir.0).current_dir(&dir.0);
}

/// A finished run, with everything needed to explain a failure.
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub log: String,
    pub command: String,
}

impl Run {
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }
    pub fn explain(&self) -> String {
        format!(
            "command: {}\nstatus: {}\n--- stdout\n{}--- stderr\n{}--- damon log\n{}",
            self.command, self.status, self.stdout, self.stderr, self.log
        )
    }
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code(), code, "unexpected exit code\n{}", self.explain());
        self
    }
    /// A `key=number` figure the workload printed (`cpu_seconds=`).
    pub fn printed_figure(&self, key: &str) -> f64 {
        self.stdout
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {} in the output\n{}", key, self.explain()))
    }
    pub fn assert_log_contains(&self, needle: &str) -> &Self {
        assert!(self.log.contains(needle), "damon's log lacks {:?}\n{}", needle, self.explain());
        self
    }
}

pub fn run(mut cmd: Command, dir: &TestDir) -> Run {
    let command = format!("{:?}", cmd);
    let Output { status, stdout, stderr } = cmd.stdin(Stdio::null()).output().expect("run damon");
    Run {
        status,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        log: dir.log(),
        command,
    }
}

/// Waits for `condition` until `timeout`, checking every 20 ms; panics with `what` if it never holds.
pub fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out after {:?} waiting for {}", timeout, what);
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for a spawned damon to exit and collects what it printed.
pub fn finish(mut child: Child, dir: &TestDir, command: &str, timeout: Duration) -> Run {
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("damon did not exit within {:?}: {}\n--- log\n{}", timeout, command, dir.log());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |r: Option<&mut dyn std::io::Read>| {
        let mut s = String::new();
        if let Some(r) = r {
            let _ = r.read_to_string(&mut s);
        }
        s
    };
    let stdout = read(child.stdout.as_mut().map(|s| s as &mut dyn std::io::Read));
    let stderr = read(child.stderr.as_mut().map(|s| s as &mut dyn std::io::Read));
    Run { status, stdout, stderr, log: dir.log(), command: command.to_string() }
}

/// Reads lines of a child's stdout until one equals `line`.
pub fn read_until(reader: &mut BufReader<std::process::ChildStdout>, line: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let mut buf = String::new();
        let n = reader.read_line(&mut buf).expect("read stdout");
        assert!(n > 0, "stdout ended before {:?}; saw {:?}", line, seen);
        let got = buf.trim_end().to_string();
        seen.push(got.clone());
        if got == line {
            return seen;
        }
    }
}

/// Sends `signal` to `pid`.
pub fn signal(pid: u32, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal).expect("kill");
}

/// Whether a process exists and is not a zombie (a zombie has ended; only its parent's
/// bookkeeping is left).
pub fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{}/stat", pid)) {
        Ok(stat) => stat.rsplit(')').next().map_or(false, |rest| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

pub fn read_pid(file: &Path) -> Option<u32> {
    fs::read_to_string(file).ok().and_then(|s| s.trim().parse().ok())
}

/// "v1" or "v2": what damon should use on this machine. The VM harness sets DAMON_TEST_CGROUP.
pub fn cgroup_version() -> &'static str {
    if std::env::var("DAMON_TEST_CGROUP").as_deref() == Ok("v2") {
        return "v2";
    }
    let controllers = fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").unwrap_or_default();
    if controllers.split_whitespace().any(|c| c == "memory") {
        "v2"
    } else {
        "v1"
    }
}

/// Every cgroup directory damon with this pid created (`damon-...-PID`, `...-PID.supervisor`).
pub fn groups_of(damon_pid: u32) -> Vec<PathBuf> {
    fn walk(dir: &Path, depth: usize, suffixes: &[String], found: &mut Vec<PathBuf>) {
        if depth == 0 {
            return;
        }
        if let Ok(entries) = fs::read_dir(dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                if !entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    continue;
                }
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with("damon-") && suffixes.iter().any(|s| name.ends_with(s.as_str())) {
                    found.push(path.clone());
                }
                walk(&path, depth - 1, suffixes, found);
            }
        }
    }
    let suffixes = [format!("-{}", damon_pid), format!("-{}.supervisor", damon_pid)];
    let mut found = Vec::new();
    walk(Path::new("/sys/fs/cgroup"), 6, &suffixes, &mut found);
    found
}

pub fn assert_no_groups_left(damon_pid: u32) {
    let left = groups_of(damon_pid);
    assert!(left.is_empty(), "damon (pid {}) left cgroups behind: {:?}", damon_pid, left);
}

/// The workload's cgroup directories, from damon's "child started" log line.
pub fn container_dirs(dir: &TestDir) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    wait_for("damon's \"child started\" line", Duration::from_secs(10), || {
        let log = dir.log();
        if let Some(line) = log.lines().find(|l| l.contains("\"msg\":\"child started\"")) {
            let value = line.split("\"container\":\"").nth(1).and_then(|rest| rest.split('"').next()).unwrap_or("");
            dirs = value.split(' ').filter(|d| !d.is_empty()).map(PathBuf::from).collect();
            true
        } else {
            false
        }
    });
    dirs
}

/// The group directory that holds `file` (v1 has one directory per controller).
pub fn group_file(dirs: &[PathBuf], file: &str) -> PathBuf {
    dirs.iter().map(|d| d.join(file)).find(|p| p.exists()).unwrap_or_else(|| panic!("no {} in {:?}", file, dirs))
}

pub fn read_trimmed(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {}", path.display(), e)).trim().to_string()
}

/// MHz per core as damon sees it, from `damon --check`.
pub fn mhz_per_core() -> u64 {
    let out = Command::new(DAMON).arg("--check").output().expect("damon --check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("MHz per core:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no MHz per core in damon --check:\n{}", stdout))
}

// ---- metrics

/// The original Damon's families: promtool's naming lints may flag these, and only these.
pub const ORIGINAL_NAMES: [&str; 23] = [
    "damon_cpu_user_seconds",
    "damon_cpu_kernel_seconds",
    "damon_cpu_user_percent",
    "damon_cpu_kernel_percent",
    "damon_cpu_user_hz",
    "damon_cpu_kernel_hz",
    "damon_cpu_limit_hz",
    "damon_cpu_limit_percent",
    "damon_cpu_notifications_total",
    "damon_memory_working_set_bytes",
    "damon_memory_commit_charge_bytes",
    "damon_memory_page_fault_total",
    "damon_memory_limit_bytes",
    "damon_memory_notifications_total",
    "damon_io_read_bytes",
    "damon_io_write_bytes",
    "damon_io_other_bytes",
    "damon_io_total_bytes",
    "damon_io_read_operations_total",
    "damon_io_write_operations_total",
    "damon_io_other_operations_total",
    "damon_io_operations_total",
    "damon_io_notifications_total",
];

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(stream, "GET {} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", path).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    if head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200") {
        Some(body.to_string())
    } else {
        None
    }
}

/// Lint problems promtool reports for names other than the original Damon's.
pub fn promtool_problems(scrape: &str) -> Vec<String> {
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; scripts/test installs it)");
    promtool.stdin.take().unwrap().write_all(scrape.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    report
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !ORIGINAL_NAMES.iter().any(|name| l.starts_with(&format!("{} ", name))))
        .map(str::to_string)
        .collect()
}
