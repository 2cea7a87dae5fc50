//! damon's own log: placed as the original placed it, JSON lines with the nomad_* fields on
//! every line, rotated by size, and on stderr (saying why) when the file cannot be opened.
//! The child's stdout and stderr are never touched.

#![cfg(target_os = "linux")]

mod common;

use common::*;
use std::fs;

const NOMAD_ENV: [(&str, &str); 7] = [
    ("NOMAD_DC", "dc1"),
    ("NOMAD_REGION", "global"),
    ("NOMAD_JOB_NAME", "shop"),
    ("NOMAD_GROUP_NAME", "web"),
    ("NOMAD_TASK_NAME", "frontend"),
    ("NOMAD_ALLOC_ID", "5b3c1a2e-0000-4000-8000-000000000001"),
    ("NOMAD_ALLOC_INDEX", "0"),
];

#[test]
fn the_log_lands_at_the_nomad_path_with_nomad_fields_on_every_line() {
    let dir = TestDir::new("nomadlog");
    let mut cmd = damon(&dir);
    cmd.env_remove("DAMON_LOG_DIR")
        .env("NOMAD_ALLOC_DIR", &dir.0)
        .envs(NOMAD_ENV.iter().copied())
        .env("NOMAD_MEMORY_LIMIT", "128")
        .env("NOMAD_CPU_LIMIT", "500")
        .args(["sh", "-c", "echo out; echo err >&2; exit 7"]);
    let run = run(cmd, &dir);
    run.assert_code(7);
    assert_eq!((run.stdout.as_str(), run.stderr.as_str()), ("out\n", "err\n"), "the child's output was touched");
    let log = fs::read_to_string(dir.path("logs/frontend.damon.log"))
        .expect("log at ${NOMAD_ALLOC_DIR}/logs/${NOMAD_TASK_NAME}.damon.log");
    let lines: Vec<&str> = log.lines().collect();
    assert!(lines.len() >= 3, "{}", log);
    for line in &lines {
        assert!(line.starts_with("{\"time\":\"") && line.ends_with('}'), "not a JSON object line: {}", line);
        for (var, value) in NOMAD_ENV {
            let field = format!("\"{}\":\"{}\"", var.to_lowercase(), value);
            assert!(line.contains(&field), "line lacks {}: {}", field, line);
        }
    }
    let starting = lines.iter().find(|l| l.contains("\"msg\":\"damon starting\"")).expect("damon starting");
    for field in [
        format!("\"version\":\"{}\"", env!("CARGO_PKG_VERSION")),
        "\"command\":\"sh -c echo out; echo err >&2; exit 7\"".to_string(),
        "\"memory_limit_mib\":128".to_string(),
        "\"cpu_limit_mhz\":500".to_string(),
    ] {
        assert!(starting.contains(&field), "starting line lacks {}: {}", field, starting);
    }
    let exiting = lines.last().unwrap();
    assert!(exiting.contains("\"msg\":\"damon exiting\""), "{}", exiting);
    for field in ["\"start\":\"", "\"end\":\"", "\"run_time_seconds\":", "\"exit_status\":7", "\"ending\":\"exited\""] {
        assert!(exiting.contains(field), "exiting line lacks {}: {}", field, exiting);
    }
}

#[test]
fn the_log_rotates_by_size_and_keeps_max_files() {
    let dir = TestDir::new("rotate");
    let log = dir.path("damon.log");
    // A log already past 1 MiB: damon's first line goes to a fresh file.
    let old_line = "{\"msg\":\"an old line\"}\n";
    fs::write(&log, old_line.repeat((1 << 20) / old_line.len() + 10)).unwrap();
    // An older rotated file: with DAMON_LOG_MAX_FILES=1 it must go.
    let oldest = dir.path("damon.log.2020-01-01T00-00-00");
    fs::write(&oldest, old_line).unwrap();
    for _ in 0..2 {
        let mut cmd = damon(&dir);
        cmd.env("DAMON_LOG_MAX_SIZE", "1").env("DAMON_LOG_MAX_FILES", "1").arg("true");
        run(cmd, &dir).assert_code(0);
    }
    let current = fs::read_to_string(&log).unwrap();
    assert!(
        !current.contains("an old line") && current.contains("damon exiting"),
        "{}",
        &current[..current.len().min(500)]
    );
    let rotated: Vec<String> = fs::read_dir(&dir.0)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("damon.log.") && !n.ends_with(".tmp"))
        .collect();
    assert_eq!(rotated.len(), 1, "rotated files: {:?}", rotated);
    assert!(!oldest.exists(), "the oldest rotated file was kept: {:?}", rotated);
    assert!(rotated[0].as_bytes()[10].is_ascii_digit(), "rotated name carries a timestamp: {}", rotated[0]);
}

#[test]
fn an_unopenable_log_goes_to_stderr_and_says_why() {
    let dir = TestDir::new("nolog");
    let blocker = dir.path("not-a-dir");
    fs::write(&blocker, "").unwrap();
    let mut cmd = damon(&dir);
    cmd.env("DAMON_LOG_DIR", &blocker).args(["sh", "-c", "echo child-output"]);
    let run = run(cmd, &dir);
    run.assert_code(0);
    assert_eq!(run.stdout, "child-output\n", "{}", run.explain());
    assert!(run.stderr.contains("cannot open log file, logging to stderr"), "{}", run.explain());
    assert!(run.stderr.contains("damon starting") && run.stderr.contains("damon exiting"), "{}", run.explain());
}
