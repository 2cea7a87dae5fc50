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

/// damon as [`damon`] gives it, in a network namespace of its own whose only interface (lo) is
/// down (util-linux's `unshare --net`): a name it looks up reaches no resolver, so a test of an
/// unresolvable name sends nothing off the machine (this one's resolver is another host).
pub fn damon_without_network(dir: &TestDir) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.args(["--net", "--", DAMON]);
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
    /// A number field of the "damon exiting" line.
    pub fn exiting_figure(&self, key: &str) -> f64 {
        let line = self
            .log
            .lines()
            .find(|l| l.contains("\"message\":\"damon exiting\""))
            .unwrap_or_else(|| panic!("{}", self.explain()));
        let pattern = format!("\"{}\":", key);
        line.split(&pattern)
            .nth(1)
            .and_then(|rest| rest.split([',', '}']).next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no number {} in {}", key, line))
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

/// Where a process is, from one reading of /proc/PID/stat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Gone, or a zombie.
    Ended,
    /// The kernel is taking it down (PF_EXITING in its flags): it was killed or exited, and
    /// never runs its own code again.
    Exiting,
    Running,
}

pub fn liveness(pid: u32) -> Liveness {
    const PF_EXITING: u64 = 0x4;
    let stat = match fs::read_to_string(format!("/proc/{}/stat", pid)) {
        Ok(stat) => stat,
        Err(_) => return Liveness::Ended,
    };
    // After the command's closing parenthesis: state, ppid, pgrp, session, tty_nr, tpgid, flags.
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let flags: u64 = fields.get(6).and_then(|f| f.parse().ok()).unwrap_or(0);
    match fields.first() {
        None | Some(&"Z") | Some(&"X") => Liveness::Ended,
        Some(_) if flags & PF_EXITING != 0 => Liveness::Exiting,
        Some(_) => Liveness::Running,
    }
}

/// The process's state, flags and where it waits in the kernel, for a report.
pub fn process_state(pid: u32) -> String {
    let stat = fs::read_to_string(format!("/proc/{}/stat", pid)).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let wchan = fs::read_to_string(format!("/proc/{}/wchan", pid)).unwrap_or_default();
    let stack = fs::read_to_string(format!("/proc/{}/stack", pid)).unwrap_or_default();
    let stack: Vec<&str> = stack.lines().map(str::trim).take(6).collect();
    format!(
        "state {}, flags {}, wchan {}, stack [{}]",
        fields.first().unwrap_or(&"?"),
        fields.get(6).unwrap_or(&"?"),
        if wchan.is_empty() { "?" } else { &wchan },
        stack.join(" < ")
    )
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

/// The blkio hierarchy's root statistics on v1: where they list a device, blk-throttle counts there.
pub const BLKIO_ROOT_BYTES: &str = "/sys/fs/cgroup/blkio/blkio.throttle.io_service_bytes";

/// Whether blk-throttle, which keeps v1's IO figures, counts on any device.
pub fn blk_throttle_counts_somewhere() -> bool {
    let stats = fs::read_to_string(BLKIO_ROOT_BYTES).unwrap_or_default();
    stats.lines().any(|l| !l.is_empty() && !l.starts_with("Total "))
}

/// Whether damon reports IO figures here: on v2 always (io.stat), on v1 where blk-throttle
/// counts on some device (elsewhere they are left out).
pub fn io_is_measured() -> bool {
    cgroup_version() == "v2" || blk_throttle_counts_somewhere()
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

/// The directories named `cgroup_path` (e.g. a DAMON_CGROUP_PARENT) under the cgroup2 root and
/// under each hierarchy mounted below /sys/fs/cgroup that exist, removed (a test's cleanup, which
/// it asserts on afterwards).
pub fn remove_cgroup_dirs(cgroup_path: &str) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let hierarchies = fs::read_dir(root).unwrap().flatten().map(|e| e.path());
    let found: Vec<PathBuf> = std::iter::once(root.to_path_buf())
        .chain(hierarchies)
        .map(|hierarchy| hierarchy.join(cgroup_path.trim_start_matches('/')))
        .filter(|dir| dir.exists())
        .collect();
    for dir in &found {
        let _ = fs::remove_dir(dir);
    }
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
        if let Some(line) = log.lines().find(|l| l.contains("\"message\":\"child started\"")) {
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

// ---- skips

/// A test that does not run on this kind of host because another stage of scripts/test runs
/// it (a cgroup v2 test on the v1 host runs in the VM): says so, in the one form scripts/test
/// counts, and passes.
pub fn skip_elsewhere(reason: &str) {
    record_skip(reason);
}

/// A test that cannot run because the machine lacks something CI's machine has (a second CPU,
/// a block device, a tool scripts/test installs): said and counted as [`skip_elsewhere`], and
/// under CI=true a failure, so that a lost prerequisite cannot turn a suite quietly green.
pub fn skip_missing(reason: &str) {
    record_skip(reason);
    assert!(std::env::var_os("CI").map_or(true, |ci| ci != "true"), "CI=true and this test cannot run: {}", reason);
}

/// "damon-test skipped: SUITE::TEST: REASON" on stderr (which the VM's console shows) and, where
/// scripts/test names a file in DAMON_TEST_SKIPS, as a line of it, for the count at its end.
fn record_skip(reason: &str) {
    let suite = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|stem| stem.rsplit_once('-').map_or(stem.clone(), |(name, _hash)| name.to_string()))
        .unwrap_or_default();
    let test = std::thread::current().name().unwrap_or("?").to_string();
    let line = format!("damon-test skipped: {}::{}: {}", suite, test, reason);
    eprintln!("{}", line);
    if let Some(path) = std::env::var_os("DAMON_TEST_SKIPS") {
        let stage = std::env::var("DAMON_TEST_STAGE").unwrap_or_default();
        if let Ok(mut file) = fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(file, "{}\t{}::{}: {}", stage, suite, test, reason);
        }
    }
}

// ---- metrics

/// The original Damon's families as its source declares them (jet/damon metrics/metrics.go,
/// namespace "damon"): the name, the type (`prometheus.NewGauge`, `prometheus.NewCounter`), and
/// the unit its name and help text give. Copied here so that the compatibility is checked, not
/// claimed: a scrape of damon must serve each under this name and type.
pub const ORIGINAL_FAMILIES: [(&str, &str, &str); 23] = [
    ("damon_cpu_kernel_seconds", "gauge", "seconds"),
    ("damon_cpu_user_seconds", "gauge", "seconds"),
    ("damon_cpu_kernel_percent", "gauge", "percent of the machine"),
    ("damon_cpu_user_percent", "gauge", "percent of the machine"),
    ("damon_cpu_kernel_hz", "gauge", "hertz"),
    ("damon_cpu_user_hz", "gauge", "hertz"),
    ("damon_cpu_limit_hz", "gauge", "hertz"),
    ("damon_cpu_limit_percent", "gauge", "percent of the machine"),
    ("damon_cpu_notifications_total", "counter", "notifications"),
    ("damon_memory_working_set_bytes", "gauge", "bytes"),
    ("damon_memory_commit_charge_bytes", "gauge", "bytes"),
    ("damon_memory_page_fault_total", "gauge", "page faults"),
    ("damon_memory_limit_bytes", "gauge", "bytes"),
    ("damon_memory_notifications_total", "counter", "notifications"),
    ("damon_io_read_operations_total", "gauge", "operations"),
    ("damon_io_write_operations_total", "gauge", "operations"),
    ("damon_io_other_operations_total", "gauge", "operations"),
    ("damon_io_operations_total", "gauge", "operations"),
    ("damon_io_read_bytes", "gauge", "bytes"),
    ("damon_io_write_bytes", "gauge", "bytes"),
    ("damon_io_other_bytes", "gauge", "bytes"),
    ("damon_io_total_bytes", "gauge", "bytes"),
    ("damon_io_notifications_total", "counter", "notifications"),
];

/// The original's families a scrape serves under another type than the original's, as
/// "NAME: TYPE, the original's TYPE"; a family absent from the scrape is not reported.
pub fn original_type_mismatches(scrape: &str) -> Vec<String> {
    ORIGINAL_FAMILIES
        .iter()
        .filter_map(|(name, kind, _)| {
            let served = scrape.lines().find_map(|l| l.strip_prefix(&format!("# TYPE {} ", name)))?;
            (served != *kind).then(|| format!("{}: {}, the original's {}", name, served, kind))
        })
        .collect()
}

/// The value of the first sample of `family` in a scrape whose line contains `filter`.
pub fn metric_value(scrape: &str, family: &str, filter: &str) -> Option<f64> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            (l.starts_with(&format!("{}{{", family)) || l.starts_with(&format!("{} ", family))) && l.contains(filter)
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

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

/// Lint problems promtool reports, but for the original Damon's gauges whose names end in
/// `_total` (the names are kept for its dashboards; its counters must pass).
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
        .filter(|l| {
            !ORIGINAL_FAMILIES.iter().any(|(name, kind, _)| *kind == "gauge" && l.starts_with(&format!("{} ", name)))
        })
        .map(str::to_string)
        .collect()
}

// ---- a task cgroup, as Nomad gives each raw_exec task one

/// A cgroup made for one test, in which damon is started, as Nomad starts a task in its
/// scope: on v2 one directory beside the test's own cgroup, on v1 one in each hierarchy damon
/// uses. It can tell whether everything in it is as it was made (no subdirectory, no
/// process, the same controllers passed down), and on drop kills what is left and removes it.
pub struct TaskCgroup {
    pub dirs: Vec<PathBuf>,
    /// The subtree_control of the directory and its ancestors when made (v2).
    found: String,
}

/// Where systemd's hybrid layout mounts the cgroup2 hierarchy beside v1.
pub const UNIFIED: &str = "/sys/fs/cgroup/unified";

/// The v1 hierarchies damon uses.
const V1_HIERARCHIES: [&str; 6] = ["memory", "cpu", "cpuacct", "pids", "freezer", "blkio"];

impl TaskCgroup {
    pub fn new(name: &str) -> TaskCgroup {
        let own = fs::read_to_string("/proc/self/cgroup").expect("/proc/self/cgroup");
        let leaf = format!("damon-task-{}-{}", name, std::process::id());
        let mut dirs = Vec::new();
        for line in own.lines() {
            let mut parts = line.splitn(3, ':');
            let (_, controllers, path) = (parts.next(), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let path = path.trim_start_matches('/');
            let mount = if cgroup_version() == "v2" {
                if !controllers.is_empty() {
                    continue;
                }
                PathBuf::from("/sys/fs/cgroup")
            } else if V1_HIERARCHIES.contains(&controllers) {
                Path::new("/sys/fs/cgroup").join(controllers)
            } else if controllers.is_empty() && Path::new(UNIFIED).join("cgroup.procs").exists() {
                // The cgroup2 hierarchy beside v1, where damon counts the workload's traffic.
                PathBuf::from(UNIFIED)
            } else {
                continue;
            };
            let dir = mount.join(path).join(&leaf);
            fs::create_dir(&dir).unwrap_or_else(|e| panic!("create {}: {}", dir.display(), e));
            dirs.push(dir);
        }
        assert!(!dirs.is_empty(), "no cgroup hierarchy found in /proc/self/cgroup:\n{}", own);
        let mut cgroup = TaskCgroup { dirs, found: String::new() };
        cgroup.found = cgroup.controllers_passed_down();
        cgroup
    }

    /// damon started inside the task cgroup, through a shell that moves itself there and
    /// execs damon, with a clean environment logging into `dir`.
    pub fn damon(&self, dir: &TestDir) -> Command {
        let mut cmd = Command::new("sh");
        in_clean_environment(&mut cmd, dir);
        let moves: Vec<String> = self.dirs.iter().map(|d| format!("echo $$ > {}/cgroup.procs", d.display())).collect();
        let script = format!("{} && exec \"$0\" \"$@\"", moves.join(" && "));
        cmd.args(["-c", &script, DAMON]);
        cmd
    }

    /// subtree_control of each directory and its ancestors (v2; empty on v1).
    fn controllers_passed_down(&self) -> String {
        let mut out = String::new();
        for dir in &self.dirs {
            for d in dir.ancestors().take_while(|d| d.starts_with("/sys/fs/cgroup") && *d != Path::new("/sys/fs")) {
                if let Ok(content) = fs::read_to_string(d.join("cgroup.subtree_control")) {
                    out.push_str(&format!("{}: {}\n", d.display(), content.trim()));
                }
            }
        }
        out
    }

    /// Every directory below the task cgroup.
    pub fn subgroups(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
            for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
                if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    found.push(entry.path());
                    walk(&entry.path(), found);
                }
            }
        }
        let mut found = Vec::new();
        for dir in &self.dirs {
            walk(dir, &mut found);
        }
        found
    }

    /// Every process in the task cgroup or below it, in any hierarchy (each pid once).
    pub fn processes(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self
            .dirs
            .iter()
            .cloned()
            .chain(self.subgroups())
            .flat_map(|d| {
                fs::read_to_string(d.join("cgroup.procs"))
                    .unwrap_or_default()
                    .lines()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .filter_map(|l| l.trim().parse().ok())
            .filter(|&pid| alive(pid))
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// What differs from the task cgroup as it was made: subgroups, processes, controllers.
    pub fn differences(&self) -> Vec<String> {
        let mut differences: Vec<String> =
            self.subgroups().iter().map(|d| format!("group left: {}", d.display())).collect();
        differences.extend(self.processes().iter().map(|pid| format!("process left: {} ({})", pid, command_of(*pid))));
        let now = self.controllers_passed_down();
        if now != self.found {
            differences.push(format!("controllers changed:\nwas:\n{}now:\n{}", self.found, now));
        }
        differences
    }

    /// Waits until the task cgroup is as made, or `timeout`; returns what still differs.
    pub fn settle(&self, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let differences = self.differences();
            if differences.is_empty() || Instant::now() > deadline {
                return differences;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// What a run left behind: waits up to 10 s for the task cgroup to be as made, and checks
    /// that the processes named in `pid_files` (in `dir`) are gone, wherever they are. Whatever
    /// is left is then killed and removed, so that the next run starts clean.
    pub fn left_behind(&self, dir: &TestDir, pid_files: &[&str]) -> Leftovers {
        let differences = self.settle(Duration::from_secs(10));
        let inside = self.processes();
        // A pid file holds the pid the workload saw, which in the sandbox's PID namespace names
        // another process of the host: only a process whose command line names the test's
        // directory is the workload's, and every such process counts, pid file or not.
        // damon's guard (damon's command line too) may still be on its way out after its
        // cleanup: what counts is what is still there 10 s later.
        let named = || {
            let mut pids: Vec<u32> =
                pid_files.iter().filter_map(|f| read_pid(&dir.path(f))).chain(processes_naming(&dir.0)).collect();
            pids.sort_unstable();
            pids.dedup();
            pids.retain(|&pid| {
                alive(pid) && !inside.contains(&pid) && command_of(pid).contains(&*dir.0.to_string_lossy())
            });
            pids
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut outside = named();
        while !outside.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            outside = named();
        }
        let left = Leftovers {
            groups: differences.iter().filter(|d| d.starts_with("group left")).count(),
            processes: differences.iter().filter(|d| d.starts_with("process left")).count() + outside.len(),
            details: differences
                .into_iter()
                .chain(
                    outside
                        .iter()
                        .map(|pid| format!("process left outside the task cgroup: {} ({})", pid, command_of(*pid))),
                )
                .collect(),
        };
        if !left.details.is_empty() {
            for pid in outside {
                let _ =
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
            }
            self.clear();
        }
        left
    }

    /// Kills everything below the task cgroup and removes the subgroups (deepest first).
    pub fn clear(&self) {
        for _ in 0..100 {
            let pids = self.processes();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                let _ =
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        for dir in &self.dirs {
            let freezer = dir.join("freezer.state");
            if freezer.exists() {
                let _ = fs::write(freezer, "THAWED");
            }
        }
        let mut groups = self.subgroups();
        groups.sort_by_key(|g| std::cmp::Reverse(g.components().count()));
        for group in groups {
            for _ in 0..100 {
                if fs::remove_dir(&group).is_ok() || !group.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

impl Drop for TaskCgroup {
    fn drop(&mut self) {
        self.clear();
        for dir in &self.dirs {
            let _ = fs::remove_dir(dir);
        }
    }
}

/// What a run left behind in and around a task cgroup.
#[derive(Debug, Default)]
pub struct Leftovers {
    pub groups: usize,
    pub processes: usize,
    /// One line per thing left, for the report of a failure.
    pub details: Vec<String>,
}

/// The command line of a process, for reports.
pub fn command_of(pid: u32) -> String {
    fs::read(format!("/proc/{}/cmdline", pid))
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " ").trim().to_string())
        .unwrap_or_default()
}

/// The pids of the processes whose command line contains `path` (the test's directory).
pub fn processes_naming(path: &Path) -> Vec<u32> {
    let path = path.to_string_lossy();
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_string_lossy().parse().ok())
        .filter(|&pid: &u32| pid != std::process::id() && command_of(pid).contains(&*path))
        .collect()
}

/// The pids of the processes whose parent is `parent`.
pub fn children_of(parent: u32) -> Vec<u32> {
    let mut children = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let pid: u32 = match entry.file_name().to_string_lossy().parse() {
            Ok(pid) => pid,
            Err(_) => continue,
        };
        let stat = fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // "pid (comm) state ppid ...": comm may hold spaces, so split after its ')'.
        let ppid = stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().nth(1)).and_then(|p| p.parse().ok());
        if ppid == Some(parent) {
            children.push(pid);
        }
    }
    children
}

/// Writes every process on the machine that is not a kernel thread to `out`, a line each as
/// it is read (a read that blocks on a stuck process shows which): pid, parent, state, kernel
/// wait channel, cgroup and command; and the kernel stack of each one in uninterruptible sleep
/// (state D), which is what a hang in the kernel looks like.
pub fn process_report(out: &mut dyn std::io::Write) {
    let mut pids: Vec<u32> = fs::read_dir("/proc")
        .map(|es| es.flatten().filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok())).collect())
        .unwrap_or_default();
    pids.sort_unstable();
    for pid in pids {
        let stat = fs::read_to_string(format!("/proc/{}/stat", pid)).unwrap_or_default();
        let name = stat.split(&['(', ')'][..]).nth(1).unwrap_or("?").to_string();
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
        let (state, ppid) = (fields.first().copied().unwrap_or("?"), fields.get(1).copied().unwrap_or("?"));
        if ppid == "2" || pid == 2 {
            continue; // a kernel thread
        }
        let wchan = fs::read_to_string(format!("/proc/{}/wchan", pid)).unwrap_or_default();
        let cgroup = fs::read_to_string(format!("/proc/{}/cgroup", pid)).unwrap_or_default().replace('\n', " ");
        let _ = writeln!(out, "{} ({}) ppid {} {} wchan {} cgroup {}", pid, name, ppid, state, wchan, cgroup.trim());
        if state == "D" {
            for task in fs::read_dir(format!("/proc/{}/task", pid)).into_iter().flatten().flatten() {
                let stack = fs::read_to_string(task.path().join("stack")).unwrap_or_default();
                let _ = writeln!(out, "  thread {:?} stack:\n{}", task.file_name(), stack);
            }
        }
    }
}

/// A thread that reports on the machine when `pet` has not been called for `patience`: the
/// kernel's list of blocked tasks (sysrq w, on the console), every process (`process_report`)
/// and the log of the work at hand, on stderr past the test harness's capture, so that it shows
/// while the test still hangs.
pub struct Watchdog {
    pet: std::sync::mpsc::Sender<(String, PathBuf)>,
}

impl Watchdog {
    pub fn new(patience: Duration) -> Watchdog {
        let (pet, petted) = std::sync::mpsc::channel::<(String, PathBuf)>();
        std::thread::spawn(move || {
            let (mut doing, mut log) = (String::new(), PathBuf::new());
            loop {
                match petted.recv_timeout(patience) {
                    Ok(now) => (doing, log) = now,
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                        let mut err = std::io::stderr();
                        let _ = writeln!(err, "watchdog: {} for over {:?}; blocked tasks (sysrq w):", doing, patience);
                        let _ = fs::write("/proc/sysrq-trigger", "w");
                        let _ = writeln!(err, "watchdog: processes:");
                        process_report(&mut err);
                        let _ =
                            writeln!(err, "--- {}\n{}", log.display(), fs::read_to_string(&log).unwrap_or_default());
                    }
                }
            }
        });
        Watchdog { pet }
    }

    /// Says what the test does now, and which log tells of it; the patience starts again.
    pub fn pet(&self, doing: String, log: PathBuf) {
        let _ = self.pet.send((doing, log));
    }
}
