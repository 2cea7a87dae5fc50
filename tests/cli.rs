//! Invocation and configuration: what a user types and what damon answers.

#![cfg(target_os = "linux")]

mod common;

use common::*;
use std::io::Write;
use std::process::Stdio;

#[test]
fn no_arguments_prints_the_version_and_exits_0() {
    let dir = TestDir::new("noargs");
    let run = run(damon(&dir), &dir);
    run.assert_code(0);
    // The whole line (target and commit too) is checked in tests/release.rs.
    assert!(run.stdout.starts_with(&format!("damon {} (", env!("CARGO_PKG_VERSION"))), "{}", run.explain());
}

#[test]
fn help_names_every_variable_and_version_prints_it() {
    let dir = TestDir::new("help");
    let mut cmd = damon(&dir);
    cmd.arg("--help");
    let help = run(cmd, &dir);
    help.assert_code(0);
    for var in
        ["DAMON_MEMORY_LIMIT", "NOMAD_MEMORY_LIMIT", "DAMON_KILL_TIMEOUT", "DAMON_CGROUP_PARENT", "DAMON_PROCESS_LIMIT"]
    {
        assert!(help.stdout.contains(var), "--help lacks {}\n{}", var, help.explain());
    }
    let mut cmd = damon(&dir);
    cmd.arg("--version");
    let version = run(cmd, &dir);
    version.assert_code(0);
    assert!(version.stdout.contains(env!("CARGO_PKG_VERSION")), "{}", version.explain());
}

#[test]
fn arguments_of_the_command_are_passed_untouched() {
    let dir = TestDir::new("args");
    let mut cmd = damon(&dir);
    cmd.args(["--memory-limit", "256", "--", "sh", "-c", "echo \"$@\"", "sh", "-la", "--memory-limit", "5", "--help"]);
    let run = run(cmd, &dir);
    run.assert_code(0);
    assert_eq!(run.stdout.trim(), "-la --memory-limit 5 --help", "{}", run.explain());
    // Without "--" too: everything after the command belongs to it.
    let mut cmd = damon(&dir);
    cmd.args(["echo", "-n", "--version"]);
    let run = common::run(cmd, &dir);
    run.assert_code(0);
    assert_eq!(run.stdout, "--version", "{}", run.explain());
}

#[test]
fn the_child_inherits_stdin_stdout_stderr_directory_and_environment() {
    let dir = TestDir::new("inherit");
    let mut cmd = damon(&dir);
    cmd.args(["sh", "-c", "pwd; echo \"$DAMON_TEST_VALUE\"; cat; echo to-stderr >&2"])
        .env("DAMON_TEST_VALUE", "inherited value")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn damon");
    child.stdin.take().unwrap().write_all(b"from stdin\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let expected_dir = dir.0.canonicalize().unwrap();
    assert_eq!(stdout, format!("{}\ninherited value\nfrom stdin\n", expected_dir.display()));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "to-stderr\n");
}

#[test]
fn each_bad_value_names_itself_exits_125_and_starts_nothing() {
    let cases: &[(&str, &str)] = &[
        ("DAMON_MEMORY_LIMIT", "lots"),
        ("NOMAD_MEMORY_LIMIT", "-5"),
        ("DAMON_MEMORY_MAX_LIMIT", "1.5"),
        ("DAMON_CPU_LIMIT", "99999999999999999999999"),
        ("NOMAD_CPU_LIMIT", "50"),
        ("DAMON_ENFORCE_CPU_LIMIT", "perhaps"),
        ("DAMON_ENFORCE_MEMORY_LIMIT", "2"),
        ("DAMON_RESTRICTED_TOKEN", "si"),
        ("DAMON_PROCESS_LIMIT", "0"),
        ("DAMON_KILL_TIMEOUT", "soon"),
        ("DAMON_KILL_TIMEOUT", "-1"),
        ("DAMON_LOG_MAX_SIZE", "0"),
        ("DAMON_LOG_MAX_FILES", "x"),
        ("DAMON_CGROUP_PARENT", "/../escape"),
        ("DAMON_METRICS_ENDPOINT", "metrics"),
    ];
    let dir = TestDir::new("badvalues");
    for (var, value) in cases {
        let marker = dir.path("started");
        let mut cmd = damon(&dir);
        cmd.env(var, value).env("DAMON_ADDR", "127.0.0.1:0").arg("touch").arg(&marker);
        let run = run(cmd, &dir);
        run.assert_code(125);
        assert!(
            run.stderr.contains(var) && run.stderr.contains(value),
            "stderr must name {}={}\n{}",
            var,
            value,
            run.explain()
        );
        assert_eq!(run.stderr.lines().count(), 1, "one line on stderr\n{}", run.explain());
        assert!(!marker.exists(), "the command ran despite {}={}", var, value);
        // The log says so too, in the place the run would have logged.
        let refusal = run.log.lines().rev().nth(1).unwrap_or("");
        assert!(
            refusal.contains("invalid configuration: nothing started") && refusal.contains(var),
            "{}",
            run.explain()
        );
    }
    // The same for a flag, which names the flag.
    let mut cmd = damon(&dir);
    cmd.args(["--memory-limit", "12abc", "true"]);
    let run = run(cmd, &dir);
    run.assert_code(125);
    assert!(run.stderr.contains("--memory-limit") && run.stderr.contains("12abc"), "{}", run.explain());
}

#[test]
fn an_unknown_option_or_a_missing_command_is_a_usage_error() {
    let dir = TestDir::new("usage");
    let mut cmd = damon(&dir);
    cmd.args(["--memroy-limit", "5", "true"]);
    run(cmd, &dir).assert_code(125);
    let mut cmd = damon(&dir);
    cmd.args(["--memory-limit", "5"]);
    run(cmd, &dir).assert_code(125);
}

#[test]
fn check_reports_the_host_and_the_configuration() {
    let dir = TestDir::new("check");
    let mut cmd = damon(&dir);
    cmd.args(["--check", "--memory-limit", "64"]).env("NOMAD_CPU_LIMIT", "500");
    let run = run(cmd, &dir);
    run.assert_code(0);
    for needle in [
        format!("cgroup version used:         {}", cgroup_version()),
        "MHz per core:".to_string(),
        "online CPUs:".to_string(),
        "group would be created at:".to_string(),
        "DAMON_MEMORY_LIMIT:          64".to_string(),
        "DAMON_CPU_LIMIT:             500".to_string(),
        "ok: damon can run a contained child here".to_string(),
        "DAMON_KILL_TIMEOUT:          30s (a second stop signal kills at once)".to_string(),
    ] {
        assert!(run.stdout.contains(&needle), "--check lacks {:?}\n{}", needle, run.explain());
    }
    assert!(!dir.path("damon.log").exists(), "--check must not start a run");
}

/// The kill timeout an operator gets without setting DAMON_KILL_TIMEOUT: under Nomad none of
/// damon's own (the job's kill_timeout ends the stop), and a set value holds there too.
#[test]
fn check_shows_the_kill_timeout_under_nomad() {
    let dir = TestDir::new("check-nomad");
    for (env, expected) in [
        (&[("NOMAD_ALLOC_ID", "a1")][..], "none (under Nomad: the job's kill_timeout ends the stop)"),
        (&[("NOMAD_ALLOC_ID", "a1"), ("DAMON_KILL_TIMEOUT", "40s")][..], "40s"),
    ] {
        let mut cmd = damon(&dir);
        cmd.arg("--check").envs(env.iter().copied());
        let run = run(cmd, &dir);
        let line = run.stdout.lines().find(|l| l.starts_with("DAMON_KILL_TIMEOUT:")).unwrap_or_default();
        assert_eq!(line.trim_start_matches("DAMON_KILL_TIMEOUT:").trim(), expected, "{}", run.explain());
    }
}

#[test]
fn a_closed_stdout_never_makes_damon_panic() {
    // `damon --check | head -1` and `damon --version >&-`: the reader is gone or there is none.
    for args in [&["--check"][..], &["--version"][..], &[][..]] {
        let mut cmd = std::process::Command::new(DAMON);
        cmd.args(args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("spawn damon");
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait for damon");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "damon {:?} panicked: {}", args, stderr);
        assert!(out.status.code().is_some(), "damon {:?} died of a signal: {}", args, out.status);
    }
}
