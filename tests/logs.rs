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
    let starting = lines.iter().find(|l| l.contains("\"message\":\"damon starting\"")).expect("damon starting");
    for field in [
        format!("\"Number\":\"{}\"", env!("CARGO_PKG_VERSION")),
        "\"command\":\"sh -c echo out; echo err >&2; exit 7\"".to_string(),
        "\"memory_limit_mib\":128".to_string(),
        "\"cpu_limit_mhz\":500".to_string(),
    ] {
        assert!(starting.contains(&field), "starting line lacks {}: {}", field, starting);
    }
    let exiting = lines.last().unwrap();
    assert!(exiting.contains("\"message\":\"damon exiting\""), "{}", exiting);
    for field in ["\"start\":\"", "\"end\":\"", "\"run_time_seconds\":", "\"exit_status\":7", "\"ending\":\"exited\""] {
        assert!(exiting.contains(field), "exiting line lacks {}: {}", field, exiting);
    }
}

/// The keys of the original Damon's log lines and what each holds, from its source (jet/damon
/// main.go, log/log.go; zerolog's defaults: message under `message`, times RFC 3339, a duration
/// a number of milliseconds): the line ("" for every line), the key, the kind of value.
const ORIGINAL_LOG_KEYS: [(&str, &str, &str); 17] = [
    ("", "level", "string"),
    ("", "time", "rfc3339"),
    ("", "message", "string"),
    ("", "nomad_dc", "string"),
    ("", "nomad_region", "string"),
    ("", "nomad_job_name", "string"),
    ("", "nomad_group_name", "string"),
    ("", "nomad_task_name", "string"),
    ("", "nomad_alloc_id", "string"),
    ("", "nomad_alloc_index", "string"),
    ("damon starting", "cmdline", "argv"),
    ("damon starting", "version", "version.Info"),
    ("damon starting", "revision", "string"),
    ("damon exiting", "start", "rfc3339"),
    ("damon exiting", "end", "rfc3339"),
    ("damon exiting", "run_time", "milliseconds"),
    ("damon exiting", "exit_status", "integer"),
];

/// The raw JSON text of `key`'s value in a flat line: a string with its quotes, a number, or an
/// array or object (to its closing bracket, strings inside skipped).
fn json_value<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(&format!("\"{}\":", key))? + key.len() + 3;
    let rest = &line[start..];
    let (mut depth, mut in_string, mut escaped) = (0i32, false, false);
    for (i, c) in rest.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_string => escaped = true,
            '"' => {
                in_string = !in_string;
                if !in_string && depth == 0 {
                    return Some(&rest[..=i]);
                }
            }
            '[' | '{' if !in_string => depth += 1,
            ']' | '}' if !in_string => {
                depth -= 1;
                if depth == 0 {
                    return Some(&rest[..=i]);
                }
                if depth < 0 {
                    return Some(&rest[..i]);
                }
            }
            ',' if !in_string && depth == 0 => return Some(&rest[..i]),
            _ => {}
        }
    }
    None
}

/// `2026-12-03T10:23:58Z` or with a fraction of a second, in quotes.
fn is_rfc3339_utc(value: &str) -> bool {
    let v = value.trim_matches('"');
    let b = v.as_bytes();
    v.len() >= 20
        && v.ends_with('Z')
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && v[..4].parse::<u32>().is_ok()
}

/// A pipeline that parses the original's log (a rule on `message`, an alert on `run_time` in
/// milliseconds) works unchanged on damon's: every key of the table is on its line with a value
/// of its kind, and the values are right (damon's own argv, its version, a run time of the
/// child's 300 ms in milliseconds, the child's exit status).
#[test]
fn the_log_lines_carry_the_original_keys_in_its_units() {
    let dir = TestDir::new("original-keys");
    let mut cmd = damon(&dir);
    cmd.envs(NOMAD_ENV.iter().copied()).args(["sh", "-c", "sleep 0.3; exit 3"]);
    let began = std::time::Instant::now();
    let run = run(cmd, &dir);
    let wall_ms = began.elapsed().as_secs_f64() * 1000.0;
    run.assert_code(3);
    // DAMON_LOG_DIR, and under Nomad's task name.
    let log = fs::read_to_string(dir.path("frontend.damon.log")).expect("the log");
    let argv = format!("[{:?},\"sh\",\"-c\",\"sleep 0.3; exit 3\"]", DAMON);
    let line_of = |message: &str| {
        log.lines()
            .find(|l| json_value(l, "message") == Some(&format!("\"{}\"", message)))
            .unwrap_or_else(|| panic!("no {:?} line\n{}", message, log))
            .to_string()
    };
    let lines: Vec<String> = log.lines().map(str::to_string).collect();
    for (on, key, kind) in ORIGINAL_LOG_KEYS {
        let checked: Vec<String> = match on {
            "" => lines.clone(),
            // The original wrote cmdline, version and revision on both lines.
            _ if ["cmdline", "version", "revision"].contains(&key) => {
                vec![line_of("damon starting"), line_of("damon exiting")]
            }
            message => vec![line_of(message)],
        };
        for line in &checked {
            let value = json_value(line, key).unwrap_or_else(|| panic!("no {} in {}", key, line));
            let right = match kind {
                "string" => value.starts_with('"'),
                "rfc3339" => is_rfc3339_utc(value),
                "argv" => value == argv,
                "version.Info" => {
                    value.starts_with('{')
                        && value.contains(&format!("\"Number\":\"{}\"", env!("CARGO_PKG_VERSION")))
                        && ["Revision", "PreRelease", "BuildMetadata"]
                            .iter()
                            .all(|k| value.contains(&format!("\"{}\":\"", k)))
                }
                // Milliseconds: at least the child's 300 ms, at most what the test waited.
                "milliseconds" => value.parse::<f64>().map_or(false, |ms| (300.0..=wall_ms).contains(&ms)),
                "integer" => value == "3",
                _ => unreachable!("kind {}", kind),
            };
            assert!(right, "{} is not {} ({}) in {}\nargv {}", key, kind, value, line, argv);
        }
    }
}

#[test]
fn the_log_rotates_by_size_and_keeps_max_files() {
    let dir = TestDir::new("rotate");
    let log = dir.path("damon.log");
    // A log already past 1 MiB: damon's first line goes to a fresh file.
    let old_line = "{\"message\":\"an old line\"}\n";
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
