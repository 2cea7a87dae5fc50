//! The workload never borrows damon's root through the log (issue 24). Nomad makes
//! `alloc/logs` mode 0777 for every task of the allocation, and damon, as root, writes its log
//! there. A workload running as `nobody` (DAMON_RESTRICTED_TOKEN=Y) and a root workload under
//! DAMON_SANDBOX=Y plant, at the log's path and at the names a rotation will take, each of: a
//! symbolic link to a canary file outside the log directory, a link to a path that does not
//! exist, a hard link to the canary, a FIFO and a directory; before damon starts (what an
//! earlier run of the task left) and while it runs. They also swap the `logs` directory for a
//! link to another directory. After each run: the canary's content, size and mode are
//! unchanged, nothing appeared outside the log directory, damon did not block, the child's
//! exit status came back, and damon said what it found and where.
//!
//! The allocation is laid out as Nomad lays it out (alloc/ and alloc/logs/ 0777) for the
//! `nobody` workload. For the root workload both are 0755 and owned by root, so that only the
//! sandbox's write rule on NOMAD_ALLOC_DIR tells damon that the workload may change them.

#![cfg(target_os = "linux")]

mod common;

use common::*;
use nix::sys::signal::Signal;
use std::fs;
use std::io::{BufReader, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

const CANARY: &str = "canary\n";
const CANARY_MODE: u32 = 0o666;
/// DAMON_LOG_MAX_SIZE's least value, 1 MiB.
const MAX_SIZE_BYTES: u64 = 1024 * 1024;

#[derive(Clone, Copy, Debug)]
enum Workload {
    /// DAMON_RESTRICTED_TOKEN=Y: the child runs as nobody.
    Nobody,
    /// DAMON_SANDBOX=Y: the child stays root, confined by the sandbox.
    ConfinedRoot,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Plant {
    LinkToCanary,
    LinkToNowhere,
    HardLinkToCanary,
    Fifo,
    Directory,
}

const PLANTS: [Plant; 5] =
    [Plant::LinkToCanary, Plant::LinkToNowhere, Plant::HardLinkToCanary, Plant::Fifo, Plant::Directory];

#[derive(Clone, Copy, Debug, PartialEq)]
enum When {
    /// By the test before damon starts: what an earlier run of the task left.
    BeforeStart,
    /// By the workload while damon runs.
    WhileRunning,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Place {
    /// The log file's own name.
    LogPath,
    /// The names the next rotation may take (this second's and the next ones', numbered 0 and 1).
    RotatedNames,
    /// The `logs` directory itself, swapped for a link to another directory.
    LogsDirectory,
}

/// One allocation: the test's directory, laid out as Nomad's.
struct Alloc {
    dir: TestDir,
    workload: Workload,
}

impl Alloc {
    fn new(name: &str, workload: Workload) -> Alloc {
        let dir = TestDir::new(name);
        let shared_mode = match workload {
            Workload::Nobody => 0o777,
            Workload::ConfinedRoot => 0o755,
        };
        for (sub, mode) in [("alloc", shared_mode), ("alloc/logs", shared_mode), ("task", 0o777), ("task/local", 0o777)]
        {
            fs::create_dir_all(dir.path(sub)).unwrap();
            fs::set_permissions(dir.path(sub), fs::Permissions::from_mode(mode)).unwrap();
        }
        // Where a followed link would land: it must stay empty.
        fs::create_dir(dir.path("escape")).unwrap();
        fs::set_permissions(dir.path("escape"), fs::Permissions::from_mode(0o777)).unwrap();
        let alloc = Alloc { dir, workload };
        // Readable and writable by all, so that protected_hardlinks lets nobody link it.
        fs::write(alloc.canary(), CANARY).unwrap();
        fs::set_permissions(alloc.canary(), fs::Permissions::from_mode(CANARY_MODE)).unwrap();
        alloc
    }

    fn log(&self) -> PathBuf {
        self.dir.path("alloc/logs/web.damon.log")
    }
    /// In the allocation directory for the sandboxed workload: in its mount namespace each
    /// writable directory is a mount of its own, and a hard link across two is refused (EXDEV).
    fn canary(&self) -> PathBuf {
        match self.workload {
            Workload::Nobody => self.dir.path("task/local/canary"),
            Workload::ConfinedRoot => self.dir.path("alloc/canary"),
        }
    }
    fn nowhere(&self) -> PathBuf {
        self.dir.path("nowhere")
    }

    /// A shell command that plants `plant` at each of `paths`.
    fn plant_command(&self, plant: Plant, paths: &[PathBuf]) -> String {
        paths
            .iter()
            .map(|path| {
                let at = path.display();
                let what = match plant {
                    Plant::LinkToCanary => format!("ln -s '{}' '{}'", self.canary().display(), at),
                    Plant::LinkToNowhere => format!("ln -s '{}' '{}'", self.nowhere().display(), at),
                    Plant::HardLinkToCanary => format!("ln '{}' '{}'", self.canary().display(), at),
                    Plant::Fifo => format!("mkfifo '{}'", at),
                    Plant::Directory => format!("mkdir '{}'", at),
                };
                format!("rm -f '{}' && {}", at, what)
            })
            .collect::<Vec<_>>()
            .join(" && ")
    }

    /// What damon must say it found.
    fn found(&self, plant: Plant) -> String {
        match plant {
            Plant::LinkToCanary => format!("found a symbolic link to {}", self.canary().display()),
            Plant::LinkToNowhere => format!("found a symbolic link to {}", self.nowhere().display()),
            // With the number of its names: 2, or more where it was planted at many names.
            Plant::HardLinkToCanary => "found a hard link (a file with ".to_string(),
            Plant::Fifo => "found a FIFO".to_string(),
            Plant::Directory => "found a directory".to_string(),
        }
    }

    /// damon under Nomad's variables, with the workload as asked.
    fn damon(&self, script: &str) -> Command {
        let mut cmd = damon(&self.dir);
        cmd.env_remove("DAMON_LOG_DIR")
            .env("NOMAD_ALLOC_DIR", self.dir.path("alloc"))
            .env("NOMAD_TASK_DIR", self.dir.path("task/local"))
            .env("NOMAD_TASK_NAME", "web")
            .env("DAMON_LOG_MAX_SIZE", "1")
            .env("DAMON_LOG_MAX_FILES", "0")
            .env("DAMON_KILL_TIMEOUT", "10s");
        match self.workload {
            Workload::Nobody => cmd.env("DAMON_RESTRICTED_TOKEN", "Y"),
            Workload::ConfinedRoot => cmd.env("DAMON_SANDBOX", "Y"),
        };
        cmd.args(["sh", "-c", script]);
        cmd
    }

    /// Every path of the test's directory outside the log directory, with what it is.
    fn outside_the_logs(&self) -> Vec<String> {
        fn walk(dir: &Path, skip: &[PathBuf], out: &mut Vec<String>) {
            for entry in fs::read_dir(dir).unwrap().flatten() {
                let path = entry.path();
                if skip.contains(&path) {
                    continue;
                }
                let meta = fs::symlink_metadata(&path).unwrap();
                // A directory's size is the file system's business (tmpfs counts its entries).
                let size = if meta.is_dir() { 0 } else { meta.len() };
                out.push(format!("{} {:o} {}", path.display(), meta.mode(), size));
                if meta.is_dir() {
                    walk(&path, skip, out);
                }
            }
        }
        let mut out = Vec::new();
        let skip = [self.dir.path("alloc/logs"), self.dir.path("alloc/logs.old")];
        walk(&self.dir.0, &skip, &mut out);
        out.sort();
        out
    }
}

/// The rotated names damon may take from now for a while: `<name>.<UTC second>` and `.1`.
fn rotated_names(log: &Path, seconds: u64) -> Vec<PathBuf> {
    let now = SystemTime::now();
    let mut names = Vec::new();
    for s in 0..seconds {
        let stamp =
            humantime::format_rfc3339_seconds(now - Duration::from_secs(2) + Duration::from_secs(s)).to_string();
        let stamp = stamp.trim_end_matches('Z').replace(':', "-");
        let base = format!("{}.{}", log.display(), stamp);
        names.push(PathBuf::from(&base));
        names.push(PathBuf::from(format!("{}.1", base)));
    }
    names
}

/// An earlier run's log, `bytes` long in whole lines, owned by root as damon left it.
fn earlier_log(path: &Path, bytes: u64) {
    let line = format!("{{\"message\":\"an earlier line\",\"pad\":\"{}\"}}\n", "x".repeat(200));
    let mut content = line.repeat((bytes / line.len() as u64) as usize + 1);
    content.truncate(bytes as usize);
    content.push('\n');
    fs::write(path, content).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
}

fn rotated_regular_files(alloc: &Alloc) -> usize {
    fs::read_dir(alloc.dir.path("alloc/logs"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("web.damon.log."))
        .filter(|e| fs::symlink_metadata(e.path()).map_or(false, |m| m.file_type().is_file() && m.nlink() == 1))
        .count()
}

/// One run: plants `plant` at `place` `when`, makes damon log while it is there, stops damon,
/// and checks everything the issue asks.
fn plant_and_check(workload: Workload, plant: Plant, place: Place, when: When) {
    let name = format!("loglinks-{:?}-{:?}-{:?}-{:?}", workload, plant, place, when).to_lowercase();
    let alloc = Alloc::new(&name, workload);
    let targets: Vec<PathBuf> = match place {
        Place::LogPath => vec![alloc.log()],
        Place::RotatedNames => rotated_names(&alloc.log(), 40),
        Place::LogsDirectory => vec![alloc.dir.path("alloc/logs")],
    };
    let command = match place {
        Place::LogsDirectory => format!(
            "mv '{0}' '{0}.old' && ln -s '{1}' '{0}'",
            alloc.dir.path("alloc/logs").display(),
            alloc.dir.path("escape").display()
        ),
        _ => alloc.plant_command(plant, &targets),
    };
    match place {
        // Before start: the first line rotates. While running: a few more lines do.
        Place::RotatedNames if when == When::BeforeStart => earlier_log(&alloc.log(), MAX_SIZE_BYTES + 1),
        Place::RotatedNames => earlier_log(&alloc.log(), MAX_SIZE_BYTES - 4096),
        _ => {}
    }
    let script = match when {
        When::BeforeStart => {
            let out = Command::new("sh").args(["-c", &command]).output().unwrap();
            assert!(out.status.success(), "{}: {}", command, String::from_utf8_lossy(&out.stderr));
            "trap 'echo usr1' USR1; trap 'exit 3' TERM; echo planted; while :; do sleep 0.05 & wait $!; done"
                .to_string()
        }
        When::WhileRunning => {
            // From a file: in damon's argv it would be on its first log lines, tens of KiB.
            // Once damon has logged that the child started: a plant before that line would
            // race with damon making the log again, and the plant's own mkdir or ln fail.
            let after_start = format!(
                "until grep -qs '\"message\":\"child started\"' '{}'; do sleep 0.01; done; {}",
                alloc.log().display(),
                command
            );
            fs::write(alloc.dir.path("task/local/plant.sh"), after_start).unwrap();
            format!(
                "trap 'echo usr1' USR1; trap 'exit 3' TERM; sh '{}' || exit 99; echo planted; while :; do sleep 0.05 & wait $!; done",
                alloc.dir.path("task/local/plant.sh").display()
            )
        }
    };
    let before = alloc.outside_the_logs();
    let mut cmd = alloc.damon(&script);
    let shown = format!("{:?}", cmd);
    let mut damon = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdout = BufReader::new(damon.stdout.take().unwrap());
    let mut stderr_pipe = damon.stderr.take().unwrap();
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr_pipe.read_to_string(&mut text);
        text
    });
    read_until(&mut stdout, "planted");
    if place == Place::RotatedNames && when == When::WhileRunning {
        assert_eq!(rotated_regular_files(&alloc), 0, "a rotation before the plant: {}", shown);
    }
    // damon logs a line for each SIGUSR1 before it passes it on; the workload's "usr1" says
    // that line's attempt is over. While running at the rotated names, until one rotation.
    let rounds = if place == Place::RotatedNames && when == When::WhileRunning { 200 } else { 2 };
    for _ in 0..rounds {
        signal(damon.id(), Signal::SIGUSR1);
        read_until(&mut stdout, "usr1");
        if place == Place::RotatedNames && rotated_regular_files(&alloc) > 0 {
            break;
        }
    }
    signal(damon.id(), Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = damon.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = damon.kill();
            panic!("damon blocked: {}", shown);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = stderr_reader.join().unwrap();
    // Not through what was planted: a FIFO would block the test.
    let log_is_a_file = fs::symlink_metadata(alloc.log()).map_or(false, |m| m.file_type().is_file());
    let log = if log_is_a_file { fs::read_to_string(alloc.log()).unwrap_or_default() } else { String::new() };
    let explain = format!("{}\nstatus: {}\n--- stderr\n{}--- log at the path\n{}", shown, status, stderr, log);

    assert_eq!(status.code(), Some(3), "the child's exit status did not come back\n{}", explain);
    let canary = fs::symlink_metadata(alloc.canary()).unwrap();
    assert_eq!(fs::read_to_string(alloc.canary()).unwrap(), CANARY, "the canary was written\n{}", explain);
    assert_eq!((canary.len(), canary.mode() & 0o7777), (CANARY.len() as u64, CANARY_MODE), "{}", explain);
    assert!(!alloc.nowhere().exists(), "a link to nowhere was followed\n{}", explain);
    assert_eq!(alloc.outside_the_logs(), before, "something appeared outside the log directory\n{}", explain);

    let said: Vec<&str> = stderr.lines().filter(|l| l.starts_with("damon: found ")).collect();
    match place {
        Place::LogPath => {
            let (found, at) = (alloc.found(plant), format!(" at {},", alloc.log().display()));
            let told = said.iter().any(|l| l.contains(&found) && l.contains(&at));
            assert!(told, "damon did not say {:?} ... {:?}\n{}", found, at, explain);
            // The log went on, on stderr.
            assert!(stderr.contains("\"message\":\"damon exiting\""), "{}", explain);
            let kind = fs::symlink_metadata(alloc.log()).unwrap().file_type();
            assert!(!kind.is_file() || plant == Plant::HardLinkToCanary, "the plant was replaced\n{}", explain);
            if when == When::WhileRunning {
                assert_eq!(said.len(), 1, "said more than once\n{}", explain);
            }
        }
        Place::RotatedNames => {
            let (found, at) = (alloc.found(plant), format!(" at {}.", alloc.log().display()));
            let told = said.iter().any(|l| l.contains(&found) && l.contains(&at));
            assert!(told, "damon did not say {:?} ... {:?}\n{}", found, at, explain);
            assert!(rotated_regular_files(&alloc) >= 1, "no rotation happened\n{}", explain);
            for target in &targets {
                let kind = fs::symlink_metadata(target).unwrap().file_type();
                assert!(
                    !kind.is_file() || plant == Plant::HardLinkToCanary,
                    "{} was replaced\n{}",
                    target.display(),
                    explain
                );
            }
            // The log itself stays in its file.
            assert!(log.contains("\"message\":\"damon exiting\""), "{}", explain);
        }
        Place::LogsDirectory => {
            let found = format!(
                "found a symbolic link to {} at {}",
                alloc.dir.path("escape").display(),
                alloc.dir.path("alloc/logs").display()
            );
            assert!(stderr.contains(&found), "damon did not say {:?}\n{}", found, explain);
            assert!(stderr.contains("\"message\":\"damon exiting\""), "{}", explain);
        }
    }
    assert_eq!(
        fs::read_dir(alloc.dir.path("escape")).unwrap().count(),
        0,
        "a file appeared through the link\n{}",
        explain
    );
    println!("{:?} {:?} at {:?} {:?}: refused, said, exit status 3", workload, plant, place, when);
}

fn every_plant(workload: Workload, place: Place) {
    for when in [When::BeforeStart, When::WhileRunning] {
        for plant in PLANTS {
            plant_and_check(workload, plant, place, when);
        }
    }
}

#[test]
fn a_nobody_workload_plants_at_the_log_path() {
    every_plant(Workload::Nobody, Place::LogPath);
}

#[test]
fn a_nobody_workload_plants_at_the_rotated_names() {
    every_plant(Workload::Nobody, Place::RotatedNames);
}

#[test]
fn a_confined_root_workload_plants_at_the_log_path() {
    every_plant(Workload::ConfinedRoot, Place::LogPath);
}

#[test]
fn a_confined_root_workload_plants_at_the_rotated_names() {
    every_plant(Workload::ConfinedRoot, Place::RotatedNames);
}

#[test]
fn the_logs_directory_swapped_for_a_link_is_not_followed() {
    for workload in [Workload::Nobody, Workload::ConfinedRoot] {
        for when in [When::BeforeStart, When::WhileRunning] {
            plant_and_check(workload, Plant::LinkToCanary, Place::LogsDirectory, when);
        }
    }
}
