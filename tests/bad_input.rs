//! Bad input never gets past the door: every setting, through its flag, its variable and its
//! Nomad variable, against every class of bad value (empty, garbage, negative, overflow, NaN,
//! other scripts' digits, white space inside, products that overflow 64 bits, not UTF-8).
//! The real binary must exit 125 with one line on stderr naming the source and the value,
//! say the same in its log, and never start the command (`touch MARKER`: MARKER must not
//! exist). An empty variable is unset: the command runs.

#![cfg(unix)]

#[path = "common/bad_values.rs"]
mod bad_values;
mod common;

use bad_values::{bad_values, shown, SETTINGS};
use common::{damon, damon_without_network, run, TestDir};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

/// Runs damon with `value` for `source` and `touch MARKER` as the command.
fn attempt(dir: &TestDir, source: &str, value: &OsStr) -> common::Run {
    let marker = dir.path("MARKER");
    let mut cmd = damon(dir);
    if source.starts_with("--") {
        cmd.arg(source).arg(value).arg("--");
    } else {
        cmd.env(source, value);
    }
    cmd.arg("touch").arg(&marker);
    run(cmd, dir)
}

#[test]
fn every_setting_and_source_refuses_every_bad_value_and_starts_nothing() {
    let dir = TestDir::new("bad-input");
    let marker = dir.path("MARKER");
    let mut cases = 0;
    let mut refuse = |source: &str, class: &str, value: &OsStr, expected_in_message: &str| {
        let _ = std::fs::remove_file(dir.path("damon.log"));
        let run = attempt(&dir, source, value);
        let what = format!("{} {:?} ({})", source, value, class);
        assert_eq!(run.code(), 125, "{}\n{}", what, run.explain());
        assert!(!marker.exists(), "{}: the command ran\n{}", what, run.explain());
        let lines: Vec<&str> = run.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{}: not one line on stderr\n{}", what, run.explain());
        let needle = format!("invalid value {} for {}: ", expected_in_message, source);
        assert!(
            lines[0].starts_with("damon: ") && lines[0].contains(&needle),
            "{}: {:?}\n{}",
            what,
            needle,
            run.explain()
        );
        assert!(run.log.contains("nothing started") && run.log.contains(source), "{}: log\n{}", what, run.explain());
        cases += 1;
    };
    for (flag, var, nomad, kind) in SETTINGS {
        let sources: Vec<&str> = [Some(*flag), Some(*var), *nomad].iter().flatten().copied().collect();
        for source in sources {
            for (class, value) in bad_values(*kind) {
                if class == "empty" && !source.starts_with("--") {
                    continue; // unset: below
                }
                refuse(source, class, OsStr::new(&value), &shown(&value));
            }
            let not_utf8 = OsStr::from_bytes(b"12\xff");
            refuse(source, "not UTF-8", not_utf8, "\"12\u{fffd}\"");
        }
    }
    eprintln!("bad input: {} cases", cases);
}

#[test]
fn an_empty_variable_is_unset_and_the_command_runs() {
    let dir = TestDir::new("bad-input-empty");
    let marker = dir.path("MARKER");
    for (_, var, nomad, _) in SETTINGS {
        for name in [Some(*var), *nomad].iter().flatten() {
            for empty in ["", " \t"] {
                let _ = std::fs::remove_file(&marker);
                let run = attempt(&dir, name, &OsString::from(empty));
                run.assert_code(0);
                assert!(marker.exists(), "{}={:?}: the command did not run\n{}", name, empty, run.explain());
            }
        }
    }
}

#[test]
fn a_well_formed_address_that_cannot_be_bound_is_only_a_warning() {
    let dir = TestDir::new("bad-input-bind");
    let marker = dir.path("MARKER");
    // Taken by this test; an address of no interface (in a network namespace with none up);
    // a name that does not resolve (looked up there: no resolver is reached).
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    for (addr, isolated) in [(taken.as_str(), false), ("10.0.0.1:9000", true), ("no-such-host.invalid:9000", true)] {
        let _ = std::fs::remove_file(&marker);
        let mut cmd = if isolated { damon_without_network(&dir) } else { damon(&dir) };
        cmd.env("DAMON_ADDR", addr).arg("touch").arg(&marker);
        let run = run(cmd, &dir);
        run.assert_code(0).assert_log_contains("cannot serve metrics; the workload runs without them");
        assert!(marker.exists(), "DAMON_ADDR={}: the command did not run\n{}", addr, run.explain());
    }
}

#[test]
fn every_setting_is_covered() {
    let help = std::process::Command::new(common::DAMON).arg("--help").output().expect("damon --help");
    let help = String::from_utf8_lossy(&help.stdout);
    let mut listed = Vec::new();
    for line in help.lines().filter(|l| l.contains("[env: ")) {
        let flag = line.split_whitespace().find(|w| w.starts_with("--")).expect("a flag");
        let env = &line[line.find("[env: ").unwrap() + 6..];
        let env = &env[..env.find(']').unwrap()];
        let vars: Vec<&str> = env.split(", then ").collect();
        listed.push((flag.to_string(), vars.iter().map(|v| v.to_string()).collect::<Vec<_>>()));
    }
    let covered: Vec<(String, Vec<String>)> = SETTINGS
        .iter()
        .map(|(flag, var, nomad, _)| {
            (flag.to_string(), [Some(*var), *nomad].iter().flatten().map(|v| v.to_string()).collect())
        })
        .collect();
    assert_eq!(covered, listed, "the settings of tests/bad_input.rs differ from damon --help");
}
