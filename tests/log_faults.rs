//! A logging problem never touches the workload: with the log directory on a full disk,
//! removed, read-only or hidden, and with damon's stderr a pipe nobody reads, the workload
//! runs on, its stdout and stderr (inherited, never damon's) lose nothing, its exit status
//! comes back, damon says once on stderr that log lines are being lost, counts them in
//! damon_log_lines_lost_total, and writes its log again when it can.
//!
//! The faults are real: tmpfs mounts (as root; `mount` is util-linux on the host, busybox in
//! the VM), `rm -rf`, read-only mounts over the log directory. damon logs one line
//! ("signal passed on to the child") for each SIGUSR1 the test sends it, and the workload
//! prints one for each it receives, so the test knows exactly how many lines damon tried to
//! log and checks that each one is either in the file or counted as lost.
//! Each test prints its figures (`cargo test --test log_faults -- --nocapture`).

#![cfg(target_os = "linux")]

mod common;

use common::*;
use nix::sys::signal::Signal;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Prints a tick on stdout and stderr every 50 ms, and `usr1 N` on both for the Nth SIGUSR1;
/// exits 7 on SIGTERM.
const WORKLOAD: &str = r#"n=0; i=0
trap 'n=$((n+1)); echo "usr1 $n"; echo "usr1 $n" >&2' USR1
trap 'echo term; exit 7' TERM
echo ready
while :; do i=$((i+1)); echo "tick $i"; echo "tick $i" >&2; sleep 0.05 & wait $!; done"#;

const SIGNAL_LINE: &str = "\"message\":\"signal passed on to the child\"";
const LOSS_NOTICE: &str = "its log lines are lost until it can write again";

/// Runs a setup command (mount, umount) and insists that it worked.
fn setup(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{}: {}", program, e));
    assert!(out.status.success(), "{} {:?}: {}", program, args, String::from_utf8_lossy(&out.stderr));
}

/// A tmpfs mounted for one test (over `at`, which is created), unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, options: &str) -> Tmpfs {
        fs::create_dir_all(at).unwrap();
        setup("mount", &["-t", "tmpfs", "-o", options, "tmpfs", &at.display().to_string()]);
        Tmpfs(at.to_path_buf())
    }
    fn remount(&self, options: &str) {
        setup("mount", &["-o", &format!("remount,{}", options), &self.0.display().to_string()]);
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes zeros into `file` until the file system is full.
fn fill(file: &Path) {
    let mut filler = fs::File::create(file).expect("create the filler");
    let block = [0u8; 4096];
    for _ in 0..100_000 {
        if filler.write_all(&block).is_err() {
            return;
        }
    }
    panic!("{} never filled up", file.display());
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

fn count(text: &str, needle: &str) -> usize {
    text.lines().filter(|l| l.contains(needle)).count()
}

/// Every line of the log is one whole JSON object: no line cut by a full disk.
fn assert_whole_lines(log: &str) {
    for line in log.lines() {
        assert!(line.starts_with("{\"time\":\"") && line.ends_with('}'), "a broken log line: {:?}\n{}", line, log);
    }
}

/// Waits until damon_log_lines_lost_total reads `expected` (a scrape may be up to a second old).
fn wait_for_lines_lost(port: u16, expected: u64) {
    let mut seen = None;
    wait_for(&format!("damon_log_lines_lost_total {}", expected), Duration::from_secs(10), || {
        seen = Some(lines_lost_metric(port));
        seen == Some(expected)
    });
}

/// damon_log_lines_lost_total from a scrape.
fn lines_lost_metric(port: u16) -> u64 {
    let text = http_get(port, "/metrics").expect("a scrape of damon's metrics");
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix("damon_log_lines_lost_total "))
        .unwrap_or_else(|| panic!("no damon_log_lines_lost_total in\n{}", text));
    value.trim().parse::<f64>().expect("a number") as u64
}

/// Lines a pipe delivered, and whether it has ended.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<String>>>, Arc<AtomicBool>);

impl Lines {
    fn read_from(stream: impl Read + Send + 'static) -> Lines {
        let lines = Lines::default();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                match line {
                    Ok(line) => sink.0.lock().unwrap().push(line),
                    Err(_) => break,
                }
            }
            sink.1.store(true, Ordering::SeqCst);
        });
        lines
    }
    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
    fn has(&self, line: &str) -> bool {
        self.0.lock().unwrap().iter().any(|l| l == line)
    }
    fn ended(&self) -> bool {
        self.1.load(Ordering::SeqCst)
    }
}

/// damon running WORKLOAD, with its stdout and stderr read as they come.
struct Running {
    damon: Child,
    stdout: Lines,
    stderr: Lines,
    signals: u32,
    command: String,
}

impl Running {
    fn start(mut cmd: Command) -> Running {
        cmd.args(["sh", "-c", WORKLOAD]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let command = format!("{:?}", cmd);
        let mut damon = cmd.spawn().expect("start damon");
        let stdout = Lines::read_from(damon.stdout.take().unwrap());
        let stderr = Lines::read_from(damon.stderr.take().unwrap());
        let running = Running { damon, stdout, stderr, signals: 0, command };
        wait_for("the workload's \"ready\"", Duration::from_secs(10), || running.stdout.has("ready"));
        running
    }

    /// Sends SIGUSR1 to damon, which logs one line and passes it on; waits for the workload
    /// to print it on stdout and stderr, so that damon's attempt to log it is over and the
    /// shell's trap has ended (a signal during the trap would run it again with the same n).
    fn usr1(&mut self) {
        self.signals += 1;
        signal(self.damon.id(), Signal::SIGUSR1);
        let expected = format!("usr1 {}", self.signals);
        wait_for(&format!("{:?} from the workload", expected), Duration::from_secs(10), || {
            self.stdout.has(&expected) && self.stderr.has(&expected)
        });
    }

    /// damon's own lines on stderr (the rest is the workload's).
    fn damon_said(&self) -> Vec<String> {
        self.stderr.all().into_iter().filter(|l| l.starts_with("damon: ")).collect()
    }

    /// Stops damon with SIGTERM; checks the exit status (the workload's 7) and that the
    /// workload's stdout and stderr lost nothing.
    fn stop(mut self) -> Vec<String> {
        signal(self.damon.id(), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        let status: ExitStatus = loop {
            if let Some(status) = self.damon.try_wait().expect("try_wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "damon did not exit: {}", self.command);
            std::thread::sleep(Duration::from_millis(20));
        };
        wait_for("damon's stdout and stderr to end", Duration::from_secs(10), || {
            self.stdout.ended() && self.stderr.ended()
        });
        let (stdout, stderr) = (self.stdout.all(), self.stderr.all());
        let explain = format!("{}\n--- stdout\n{:?}\n--- stderr\n{:?}", self.command, stdout, stderr);
        assert_eq!(status.code(), Some(7), "damon did not return the workload's exit status\n{}", explain);
        assert_eq!(stdout.first().map(String::as_str), Some("ready"), "{}", explain);
        assert_eq!(stdout.last().map(String::as_str), Some("term"), "{}", explain);
        assert_complete(&stdout, self.signals, &explain);
        let workload_stderr: Vec<String> = stderr.iter().filter(|l| !l.starts_with("damon: ")).cloned().collect();
        assert_complete(&workload_stderr, self.signals, &explain);
        println!("workload: {} lines on stdout, {} on stderr, none lost", stdout.len(), workload_stderr.len());
        stderr.into_iter().filter(|l| l.starts_with("damon: ")).collect()
    }
}

/// A failed test must not leave damon and its workload running (damon's guard ends the workload).
impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.damon.try_wait() {
            let _ = self.damon.kill();
            let _ = self.damon.wait();
        }
    }
}

/// Ticks numbered 1, 2, 3, ... without a gap, and `usr1 1` to `usr1 signals`.
fn assert_complete(lines: &[String], signals: u32, explain: &str) {
    let numbers = |prefix: &str| -> Vec<u32> {
        lines.iter().filter_map(|l| l.strip_prefix(prefix)).map(|n| n.parse().expect("a number")).collect()
    };
    let ticks = numbers("tick ");
    assert!(!ticks.is_empty(), "no ticks\n{}", explain);
    assert_eq!(ticks, (1..=ticks.len() as u32).collect::<Vec<_>>(), "ticks lost\n{}", explain);
    assert_eq!(numbers("usr1 "), (1..=signals).collect::<Vec<_>>(), "signal lines lost\n{}", explain);
    let other: Vec<&String> = lines
        .iter()
        .filter(|l| !l.starts_with("tick ") && !l.starts_with("usr1 ") && *l != "ready" && *l != "term")
        .collect();
    assert!(other.is_empty(), "unexpected lines {:?}\n{}", other, explain);
}

fn damon_with_metrics(dir: &TestDir, log_dir: &Path) -> (Command, u16) {
    let port = free_port();
    let mut cmd = damon(dir);
    cmd.env("DAMON_LOG_DIR", log_dir).env("DAMON_ADDR", format!("127.0.0.1:{}", port));
    (cmd, port)
}

fn wait_for_metrics(port: u16) {
    wait_for("damon's metrics endpoint", Duration::from_secs(10), || http_get(port, "/metrics").is_some());
}

#[test]
fn a_full_disk_loses_log_lines_counted_and_said_once_then_logging_recovers() {
    let dir = TestDir::new("logfull");
    let disk = Tmpfs::mount(&dir.path("logs"), "size=64k");
    let log = disk.0.join("damon.log");
    let (cmd, port) = damon_with_metrics(&dir, &disk.0);
    let mut running = Running::start(cmd);
    wait_for_metrics(port);
    for _ in 0..5 {
        running.usr1();
    }
    assert_eq!(count(&read(&log), SIGNAL_LINE), 5, "{}", read(&log));
    assert_eq!(lines_lost_metric(port), 0);

    fill(&disk.0.join("filler"));
    // The log's last page may still take a few lines: log until the first one is lost.
    let mut tried_while_full = 0;
    while running.damon_said().is_empty() {
        running.usr1();
        tried_while_full += 1;
        assert!(tried_while_full < 200, "no line was lost on a full disk\n{}", read(&log));
    }
    for _ in 0..20 {
        running.usr1();
        tried_while_full += 1;
    }
    let said = running.damon_said();
    assert_eq!(said.len(), 1, "not said once: {:?}", said);
    assert!(said[0].contains(LOSS_NOTICE) && said[0].contains("No space left on device"), "{:?}", said);
    // Every line is either in the file or counted.
    let in_file = count(&read(&log), SIGNAL_LINE) as u64;
    let lost = u64::from(running.signals) - in_file;
    assert!(lost >= 21, "lost {}", lost);
    wait_for_lines_lost(port, lost);

    fs::remove_file(disk.0.join("filler")).unwrap();
    running.usr1();
    let content = read(&log);
    assert_whole_lines(&content);
    let recovered =
        format!("\"message\":\"log lines were lost: the log could not be written\",\"lines_lost\":{},", lost);
    assert_eq!(count(&content, &recovered), 1, "{}", content);
    assert_eq!(count(&content, SIGNAL_LINE) as u64, in_file + 1, "{}", content);
    let running_signals = running.signals;
    let said = running.stop();
    assert_eq!(said.len(), 2, "{:?}", said);
    assert!(said[1].contains(&format!("again; {} lines were lost since ", lost)), "{:?}", said);
    let content = read(&log);
    assert_whole_lines(&content);
    // Nothing lost after the recovery: the stop and the exit are in the file.
    assert_eq!(count(&content, SIGNAL_LINE) as u64 + lost, u64::from(running_signals));
    assert!(content.contains("\"message\":\"stopping: signal passed on to the child\""), "{}", content);
    assert!(content.lines().last().unwrap().contains("\"message\":\"damon exiting\""), "{}", content);
    println!(
        "full disk: {} lines damon tried to log on SIGUSR1 ({} while full), {} in the file, {} lost and counted, 1 outage said once, 1 recovery",
        count(&content, SIGNAL_LINE) as u64 + lost,
        tried_while_full,
        count(&content, SIGNAL_LINE),
        lost
    );
}

#[test]
fn a_removed_log_directory_is_made_again_and_nothing_is_lost() {
    let dir = TestDir::new("logrm");
    let log_dir = dir.path("alloc/logs");
    let log = log_dir.join("damon.log");
    let (cmd, port) = damon_with_metrics(&dir, &log_dir);
    let mut running = Running::start(cmd);
    wait_for_metrics(port);
    running.usr1();
    running.usr1();
    fs::remove_dir_all(dir.path("alloc")).unwrap();
    for _ in 0..3 {
        running.usr1();
    }
    let content = read(&log);
    assert_whole_lines(&content);
    let lines: Vec<&str> = content.lines().collect();
    assert_eq!(lines.len(), 4, "{}", content);
    assert!(lines[0].contains("\"message\":\"the log file had vanished from its path"), "{}", content);
    assert_eq!(count(&content, SIGNAL_LINE), 3, "{}", content);
    assert_eq!(lines_lost_metric(port), 0);
    // Removed again, then the end of the run: the exit line still lands.
    fs::remove_dir_all(dir.path("alloc")).unwrap();
    let said = running.stop();
    assert!(said.is_empty(), "{:?}", said);
    let content = read(&log);
    assert!(content.lines().last().unwrap().contains("\"message\":\"damon exiting\""), "{}", content);
    println!("removed directory: 2 removals, every line written to a directory made again, 0 lost");
}

#[test]
fn a_read_only_directory_over_the_log_loses_lines_counted_then_they_come_back() {
    let dir = TestDir::new("logro");
    let log_dir = dir.path("logs");
    let log = log_dir.join("damon.log");
    let (cmd, port) = damon_with_metrics(&dir, &log_dir);
    let mut running = Running::start(cmd);
    wait_for_metrics(port);
    running.usr1();
    running.usr1();
    // The log's directory turns into an empty read-only one: the file has vanished from its
    // path and no new one can be made.
    let hiding = Tmpfs::mount(&log_dir, "ro,size=64k");
    for _ in 0..10 {
        running.usr1();
    }
    let said = running.damon_said();
    assert_eq!(said.len(), 1, "{:?}", said);
    assert!(said[0].contains(LOSS_NOTICE) && said[0].contains("Read-only file system"), "{:?}", said);
    wait_for_lines_lost(port, 10);
    drop(hiding);
    running.usr1();
    let content = read(&log);
    assert_whole_lines(&content);
    assert_eq!(count(&content, SIGNAL_LINE), 3, "{}", content);
    assert_eq!(count(&content, "\"lines_lost\":10,"), 1, "{}", content);
    assert_eq!(count(&content, "\"message\":\"the log file had vanished from its path"), 1, "{}", content);
    let said = running.stop();
    assert_eq!(said.len(), 2, "{:?}", said);
    assert!(said[1].contains("again; 10 lines were lost since "), "{:?}", said);
    println!("read-only directory over the log: 13 lines, 3 in the file, 10 lost and counted, 1 recovery");
}

#[test]
fn a_read_only_log_from_the_start_goes_to_stderr_and_the_workload_runs() {
    let dir = TestDir::new("logrostart");
    let disk = Tmpfs::mount(&dir.path("logs"), "size=64k");
    // A read-only directory, and a read-only file system under an existing log file.
    let mut cases = vec![("read-only directory", disk.0.join("empty"))];
    fs::create_dir(&cases[0].1).unwrap();
    let with_file = disk.0.join("with-file");
    fs::create_dir(&with_file).unwrap();
    fs::write(with_file.join("damon.log"), "{\"message\":\"an earlier line\"}\n").unwrap();
    cases.push(("read-only log file", with_file));
    disk.remount("ro");
    for (case, log_dir) in cases {
        let mut cmd = damon(&dir);
        cmd.env("DAMON_LOG_DIR", &log_dir).args(["sh", "-c", "echo out; echo err >&2; exit 3"]);
        let run = run(cmd, &dir);
        run.assert_code(3);
        assert!(run.stdout == "out\n" && run.stderr.lines().any(|l| l == "err"), "{}: {}", case, run.explain());
        assert!(run.stderr.contains("cannot open log file, logging to stderr"), "{}: {}", case, run.explain());
        assert!(run.stderr.contains("Read-only file system"), "{}: {}", case, run.explain());
        assert!(run.stderr.contains("\"message\":\"damon exiting\""), "{}: {}", case, run.explain());
    }
}

/// The write end of a pipe whose reader has gone: every write fails with EPIPE.
fn broken_pipe() -> Stdio {
    let mut reader = Command::new("true").stdin(Stdio::piped()).spawn().expect("start true");
    let pipe = reader.stdin.take().unwrap();
    reader.wait().unwrap();
    Stdio::from(pipe)
}

#[test]
fn a_broken_or_closed_stderr_with_a_broken_log_still_returns_the_exit_status() {
    let dir = TestDir::new("logstderr");
    let blocker = dir.path("not-a-dir");
    fs::write(&blocker, "").unwrap();
    let full = Tmpfs::mount(&dir.path("full"), "size=64k");
    fill(&full.0.join("filler"));
    let runs = |stderr: &dyn Fn() -> Stdio, how: &str| {
        // The log falls back to stderr, which is broken too.
        let mut cmd = damon(&dir);
        cmd.env("DAMON_LOG_DIR", blocker.join("sub")).args(["sh", "-c", "echo out; exit 3"]);
        let out = cmd.stdin(Stdio::null()).stderr(stderr()).output().unwrap();
        assert_eq!((out.status.code(), out.stdout.as_slice()), (Some(3), &b"out\n"[..]), "{}: log to stderr", how);
        // A full disk: the loss notice cannot be said.
        let mut cmd = damon(&dir);
        cmd.env("DAMON_LOG_DIR", &full.0).args(["sh", "-c", "echo out; exit 3"]);
        let out = cmd.stdin(Stdio::null()).stderr(stderr()).output().unwrap();
        assert_eq!((out.status.code(), out.stdout.as_slice()), (Some(3), &b"out\n"[..]), "{}: full disk", how);
        // A command that cannot start: damon's own error line goes to stderr.
        let mut cmd = damon(&dir);
        cmd.env("DAMON_LOG_DIR", blocker.join("sub")).arg("no-such-command-anywhere");
        let out = cmd.stdin(Stdio::null()).stderr(stderr()).output().unwrap();
        assert_eq!(out.status.code(), Some(127), "{}: not found", how);
    };
    runs(&broken_pipe, "stderr a pipe nobody reads");
    // `2>&-`: the shell closes damon's stderr before exec.
    let mut wrapper = Command::new("sh");
    wrapper.args(["-c", "exec \"$@\" 2>&-", "sh", DAMON, "sh", "-c", "echo out; exit 3"]);
    in_clean_environment(&mut wrapper, &dir);
    wrapper.env("DAMON_LOG_DIR", blocker.join("sub"));
    let out = wrapper.stdin(Stdio::null()).output().unwrap();
    assert_eq!((out.status.code(), out.stdout.as_slice()), (Some(3), &b"out\n"[..]), "stderr closed");
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}
