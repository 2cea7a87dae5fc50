//! Privilege drop on Linux: DAMON_RESTRICTED_TOKEN=Y and DAMON_USER. The real binary starts a
//! real child in a real cgroup; the child reports what it holds (/proc/self/status) and tries
//! what a hostile workload would: read root's files, gain root through a setuid binary, move
//! itself out of its cgroup, raise its own limits. Each refusal is checked against a control
//! run in which the same attempt succeeds, so that no test passes for the wrong reason.

#![cfg(target_os = "linux")]

mod common;

/// A module, so that every test name holds "privilege" (`scripts/vm-test privilege`).
mod privilege {
    use std::collections::BTreeSet;
    use std::ffi::CString;
    use std::fs;
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};
    use std::time::Duration;

    use crate::common::*;
    use nix::unistd::{Gid, Uid, User};

    fn user(name: &str) -> User {
        User::from_name(name).expect("read the user database").unwrap_or_else(|| panic!("no user {} here", name))
    }

    /// The groups the user database gives `user`, as /proc/PID/status lists them (sorted).
    fn groups_of_user(user: &User) -> BTreeSet<u32> {
        let name = CString::new(user.name.as_bytes()).unwrap();
        nix::unistd::getgrouplist(&name, user.gid).expect("getgrouplist").into_iter().map(Gid::as_raw).collect()
    }

    /// The value of a /proc/self/status line the workload printed (`CapEff`, `Uid`, ...).
    fn field<'a>(run: &'a Run, name: &str) -> &'a str {
        let prefix = format!("{}:", name);
        run.stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {} line in the output\n{}", name, run.explain()))
    }

    fn ids(run: &Run, name: &str) -> Vec<u32> {
        field(run, name).split_whitespace().map(|v| v.parse().unwrap()).collect()
    }

    fn assert_holds_nothing(run: &Run) {
        for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            assert_eq!(field(run, set), "0000000000000000", "{} is not empty\n{}", set, run.explain());
        }
        assert_eq!(field(run, "NoNewPrivs"), "1", "{}", run.explain());
    }

    /// damon with limits (so that a group exists) and the given privilege settings.
    fn damon_with(dir: &TestDir, env: &[(&str, &str)]) -> Command {
        let mut cmd = damon(dir);
        cmd.env("DAMON_MEMORY_LIMIT", "128").env("DAMON_PROCESS_LIMIT", "64");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    fn whoami(name: &str, env: &[(&str, &str)]) -> Run {
        let dir = TestDir::new(name);
        let mut cmd = damon_with(&dir, env);
        cmd.arg(workload()).arg("whoami");
        run(cmd, &dir)
    }

    const RESTRICTED: (&str, &str) = ("DAMON_RESTRICTED_TOKEN", "Y");

    #[test]
    fn a_restricted_child_runs_as_nobody_with_nothing_to_gain() {
        let nobody = user("nobody");
        let run = whoami("restricted", &[RESTRICTED]);
        run.assert_code(0);
        assert_eq!(ids(&run, "Uid"), vec![nobody.uid.as_raw(); 4], "real, effective, saved, fs\n{}", run.explain());
        assert_eq!(ids(&run, "Gid"), vec![nobody.gid.as_raw(); 4], "{}", run.explain());
        assert_eq!(
            ids(&run, "Groups").into_iter().collect::<BTreeSet<_>>(),
            groups_of_user(&nobody),
            "{}",
            run.explain()
        );
        assert_holds_nothing(&run);
        run.assert_log_contains(&format!("\"user\":\"nobody (uid {})", nobody.uid))
            .assert_log_contains("\"privileges\":\"no_new_privs, every capability set empty\"");
    }

    #[test]
    fn a_restricted_child_gets_the_named_users_supplementary_groups() {
        // A user with a supplementary group: the first member listed in /etc/group (the VM of
        // scripts/vm-test has damon-test in damon-extra).
        let group_file = fs::read_to_string("/etc/group").unwrap();
        let member = group_file
            .lines()
            .filter_map(|l| l.split(':').nth(3))
            .flat_map(|members| members.split(','))
            .map(str::trim)
            .find(|m| !m.is_empty() && *m != "root" && User::from_name(m).ok().flatten().is_some())
            .expect("a user with a supplementary group in /etc/group")
            .to_string();
        let member_user = user(&member);
        let expected = groups_of_user(&member_user);
        assert!(expected.len() > 1, "{} has no supplementary group: {:?}", member, expected);
        let run = whoami("groups", &[RESTRICTED, ("DAMON_USER", &member)]);
        run.assert_code(0);
        assert_eq!(ids(&run, "Uid"), vec![member_user.uid.as_raw(); 4], "{}", run.explain());
        assert_eq!(ids(&run, "Groups").into_iter().collect::<BTreeSet<_>>(), expected, "{}", run.explain());
        assert_holds_nothing(&run);
    }

    /// A uid that the user database does not know.
    fn free_uid() -> u32 {
        (40_000..60_000).find(|&u| User::from_uid(Uid::from_raw(u)).ok().flatten().is_none()).expect("a free uid")
    }

    #[test]
    fn a_user_given_as_uid_and_gid_needs_no_database_entry() {
        let uid = free_uid();
        let gid = uid + 1;
        let run = whoami("uid-gid", &[RESTRICTED, ("DAMON_USER", &format!("{}:{}", uid, gid))]);
        run.assert_code(0);
        assert_eq!(ids(&run, "Uid"), vec![uid; 4], "{}", run.explain());
        assert_eq!(ids(&run, "Gid"), vec![gid; 4], "{}", run.explain());
        assert_eq!(ids(&run, "Groups"), vec![gid], "{}", run.explain());
        assert_holds_nothing(&run);
        run.assert_log_contains(&format!("\"user\":\"uid {}, gid {}, groups {}\"", uid, gid, gid));
    }

    #[test]
    fn damon_user_alone_switches_the_user_and_nothing_else() {
        let nobody = user("nobody");
        let run = whoami("user-alone", &[("DAMON_USER", "nobody")]);
        run.assert_code(0);
        assert_eq!(ids(&run, "Uid"), vec![nobody.uid.as_raw(); 4], "{}", run.explain());
        // Leaving uid 0 clears these (capabilities(7)); no_new_privs is not set.
        for set in ["CapPrm", "CapEff", "CapAmb"] {
            assert_eq!(field(&run, set), "0000000000000000", "{}\n{}", set, run.explain());
        }
        assert_eq!(field(&run, "NoNewPrivs"), "0", "{}", run.explain());
        run.assert_log_contains("\"privileges\":\"unchanged\"");
    }

    #[test]
    fn a_restricted_child_cannot_read_a_root_only_file() {
        let dir = TestDir::new("root-only");
        fs::write(dir.path("secret"), "the secret\n").unwrap();
        fs::set_permissions(dir.path("secret"), fs::Permissions::from_mode(0o600)).unwrap();

        // Control: damon's own child (root) reads it.
        let mut cmd = damon_with(&dir, &[]);
        cmd.args(["cat", "secret"]);
        let control = run(cmd, &dir);
        control.assert_code(0);
        assert_eq!(control.stdout, "the secret\n", "{}", control.explain());

        let mut cmd = damon_with(&dir, &[RESTRICTED]);
        cmd.args(["cat", "secret"]);
        let run = run(cmd, &dir);
        run.assert_code(1);
        assert!(!run.stdout.contains("secret"), "{}", run.explain());
        assert!(run.stderr.contains("ermission denied"), "{}", run.explain());
    }

    #[test]
    fn a_restricted_child_gains_nothing_from_a_setuid_root_binary() {
        let dir = TestDir::new("setuid");
        let suid = dir.path("suid-workload");
        fs::copy(workload(), &suid).unwrap();
        fs::set_permissions(&suid, fs::Permissions::from_mode(0o4755)).unwrap();
        let euid = |env: &[(&str, &str)]| {
            let mut cmd = damon_with(&dir, env);
            cmd.arg(&suid).arg("whoami");
            let run = run(cmd, &dir);
            run.assert_code(0);
            (ids(&run, "Uid")[1], run)
        };
        // Control: without no_new_privs the setuid bit makes nobody's child root, so this file
        // system honours it (it is not mounted nosuid) and the next assertion means something.
        let (control, control_run) = euid(&[("DAMON_USER", "nobody")]);
        assert_eq!(control, 0, "the setuid bit is not honoured here\n{}", control_run.explain());

        let (restricted, run) = euid(&[RESTRICTED]);
        assert_eq!(restricted, user("nobody").uid.as_raw(), "setuid root worked\n{}", run.explain());
        assert_holds_nothing(&run);
    }

    /// The cgroup files that hold the group's limits.
    const LIMIT_FILES: [&str; 9] = [
        "memory.memsw.limit_in_bytes",
        "memory.limit_in_bytes",
        "memory.soft_limit_in_bytes",
        "memory.max",
        "memory.high",
        "memory.swap.max",
        "pids.max",
        "cpu.max",
        "cpu.cfs_quota_us",
    ];

    /// What each limit file takes to mean "no limit": v1 files take -1, v2 files "max".
    fn unlimited(file: &str) -> &'static str {
        if file.ends_with("_in_bytes") || file.ends_with("_us") {
            "-1"
        } else {
            "max"
        }
    }

    /// The root of the hierarchy `dir` is in: the highest ancestor that is still a cgroup.
    fn hierarchy_root(dir: &Path) -> PathBuf {
        let mut root = dir.to_path_buf();
        while let Some(parent) = root.parent().filter(|p| p.join("cgroup.procs").exists()) {
            root = parent.to_path_buf();
        }
        root
    }

    /// What a workload may try against its own group: raise every limit to "none", then move
    /// itself to its parent group and to the hierarchy's root.
    fn escape_attempts(dirs: &[PathBuf]) -> Vec<(PathBuf, &'static str)> {
        let mut attempts = Vec::new();
        for dir in dirs {
            for file in LIMIT_FILES {
                let path = dir.join(file);
                if path.exists() {
                    attempts.push((path, unlimited(file)));
                }
            }
        }
        for dir in dirs {
            for target in [dir.parent().unwrap().to_path_buf(), hierarchy_root(dir)] {
                let procs = target.join("cgroup.procs");
                if !attempts.iter().any(|(p, _)| *p == procs) {
                    attempts.push((procs, "0"));
                }
            }
        }
        attempts
    }

    /// What came of the escape attempts.
    struct Escape {
        /// Each file tried, with "written" or "refused: ERROR".
        outcomes: Vec<(PathBuf, String)>,
        /// Each limit file, as read before the attempts and after them, while the workload ran.
        limits: Vec<(PathBuf, String, String)>,
        run: Run,
    }

    /// Runs `workload try-write` under damon with `env` and feeds it the escape attempts once its
    /// group exists.
    fn try_to_escape(name: &str, env: &[(&str, &str)]) -> Escape {
        let dir = TestDir::new(name);
        let mut cmd = damon_with(&dir, env);
        cmd.env("DAMON_CPU_LIMIT", "500").arg(workload()).arg("try-write");
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let command = format!("{:?}", cmd);
        let mut child = cmd.spawn().expect("start damon");
        let dirs = container_dirs(&dir);
        let attempts = escape_attempts(&dirs);
        let limits_before: Vec<(PathBuf, String)> = attempts
            .iter()
            .filter(|(p, _)| !p.ends_with("cgroup.procs"))
            .map(|(p, _)| (p.clone(), read_trimmed(p)))
            .collect();
        let mut stdin = child.stdin.take().unwrap();
        for (path, value) in &attempts {
            writeln!(stdin, "{} {}", path.display(), value).unwrap();
        }
        stdin.flush().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut outcomes = Vec::new();
        for (path, _) in &attempts {
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            let expected = format!("{}: ", path.display());
            let outcome = line.trim_end().strip_prefix(expected.as_str()).unwrap_or_else(|| {
                panic!("unexpected output {:?} for {}; damon log:\n{}", line, path.display(), dir.log())
            });
            outcomes.push((path.clone(), outcome.to_string()));
        }
        let limits: Vec<(PathBuf, String, String)> =
            limits_before.into_iter().map(|(p, before)| (p.clone(), before, read_trimmed(&p))).collect();
        drop(stdin);
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
        let mut run = finish(child, &dir, &command, Duration::from_secs(30));
        run.stdout = rest;
        Escape { outcomes, limits, run }
    }

    #[test]
    fn a_restricted_child_cannot_leave_its_cgroup_nor_raise_its_limits() {
        let Escape { outcomes, limits, run } = try_to_escape("escape", &[RESTRICTED]);
        run.assert_code(0);
        assert!(outcomes.iter().any(|(p, _)| p.ends_with("cgroup.procs")), "nothing tried: {:?}", outcomes);
        assert!(outcomes.iter().any(|(p, _)| p.ends_with("memory.max") || p.ends_with("memory.limit_in_bytes")));
        for (path, outcome) in &outcomes {
            assert!(outcome.starts_with("refused"), "{}: {}\n{}", path.display(), outcome, run.explain());
        }
        for (path, before, after) in &limits {
            assert_eq!(before, after, "{} changed\n{}", path.display(), run.explain());
        }
        // Still in its group in every hierarchy when it ended.
        let dirs: Vec<PathBuf> = run
            .log
            .lines()
            .find(|l| l.contains("\"message\":\"child started\""))
            .and_then(|l| l.split("\"container\":\"").nth(1))
            .and_then(|rest| rest.split('"').next())
            .map(|v| v.split(' ').map(PathBuf::from).collect())
            .unwrap_or_else(|| panic!("{}", run.explain()));
        for dir in dirs {
            let inside = dir.strip_prefix(hierarchy_root(&dir)).unwrap().display().to_string();
            assert!(
                run.stdout.lines().any(|l| l.starts_with("cgroup: ") && l.ends_with(&format!(":/{}", inside))),
                "the child left {}\n{}",
                dir.display(),
                run.explain()
            );
        }
    }

    /// docs/linux.md's warning, shown: a workload that keeps root moves itself out and raises its
    /// limits. (The root of a hierarchy takes any process; on v2 an inner group with controllers
    /// does not, so only the root's cgroup.procs is asserted.)
    #[test]
    fn a_workload_that_keeps_root_can_leave_its_cgroup_and_raise_its_limits() {
        let Escape { outcomes, run, .. } = try_to_escape("escape-root", &[]);
        run.assert_code(0);
        let outcome = |pred: &dyn Fn(&Path) -> bool| {
            outcomes.iter().filter(|(p, _)| pred(p)).map(|(_, o)| o.as_str()).collect::<Vec<_>>()
        };
        let memory = outcome(&|p| p.ends_with("memory.max") || p.ends_with("memory.limit_in_bytes"));
        assert!(!memory.is_empty() && memory.iter().all(|o| *o == "written"), "{:?}\n{}", outcomes, run.explain());
        let roots: Vec<PathBuf> = outcomes
            .iter()
            .filter(|(p, _)| {
                p.ends_with("cgroup.procs") && !p.parent().unwrap().parent().unwrap().join("cgroup.procs").exists()
            })
            .map(|(p, _)| p.clone())
            .collect();
        assert!(!roots.is_empty());
        for root in roots {
            assert_eq!(outcome(&|p| p == root), vec!["written"], "{:?}\n{}", outcomes, run.explain());
        }
    }

    #[test]
    fn a_program_the_user_may_not_execute_is_126_naming_the_user() {
        let dir = TestDir::new("not-for-nobody");
        let private = dir.path("private");
        fs::create_dir(&private).unwrap();
        fs::copy(workload(), private.join("workload")).unwrap();
        fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).unwrap();
        let mut cmd = damon_with(&dir, &[RESTRICTED]);
        cmd.arg(private.join("workload")).args(["exit", "0"]);
        let run = run(cmd, &dir);
        run.assert_code(126);
        assert!(run.stderr.contains("nobody (uid ") && run.stderr.contains("may not execute it"), "{}", run.explain());
    }

    #[test]
    fn a_user_that_does_not_exist_is_a_configuration_error() {
        let dir = TestDir::new("no-such-user");
        let marker = dir.path("started");
        let free = free_uid().to_string();
        let cases: [(&str, &str, &str); 5] = [
            ("DAMON_USER", "no-such-user-damon", "no such user"),
            ("--user", "no-such-user-damon", "no such user"),
            ("DAMON_USER", &free, "give its group as well"),
            ("DAMON_USER", "root", "never runs the child as root"),
            ("DAMON_USER", "no such", "a user name, or a uid"),
        ];
        for (source, value, reason) in cases {
            let mut cmd = damon_with(&dir, &[RESTRICTED]);
            if source == "--user" {
                cmd.args(["--user", value]);
            } else {
                cmd.env(source, value);
            }
            cmd.arg("touch").arg(&marker);
            let run = run(cmd, &dir);
            run.assert_code(125).assert_log_contains("invalid configuration: nothing started");
            let named = format!("invalid value {:?} for {}", value, source);
            assert!(run.stderr.contains(&named) && run.stderr.contains(reason), "{}", run.explain());
            assert!(!run.log.contains("child started") && !marker.exists(), "the command started\n{}", run.explain());
            fs::remove_file(dir.path("damon.log")).unwrap();
        }
    }

    fn as_nobody(dir: &TestDir) -> Command {
        fs::set_permissions(&dir.0, fs::Permissions::from_mode(0o777)).unwrap();
        let nobody = user("nobody");
        let mut cmd = damon(dir);
        cmd.uid(nobody.uid.as_raw()).gid(nobody.gid.as_raw());
        // Not root, damon cannot create a group: nothing is enforced, so it runs uncontained.
        cmd.env("DAMON_ENFORCE_MEMORY_LIMIT", "N").env("DAMON_ENFORCE_CPU_LIMIT", "N");
        cmd
    }

    #[test]
    fn a_damon_that_is_not_root_cannot_start_the_child_as_another_user() {
        let dir = TestDir::new("not-root-user");
        let mut cmd = as_nobody(&dir);
        cmd.env("DAMON_USER", "root").arg("true");
        let run = run(cmd, &dir);
        run.assert_code(125);
        assert!(
            run.stderr.contains("invalid value \"root\" for DAMON_USER") && run.stderr.contains("not as root"),
            "{}",
            run.explain()
        );
        // Naming itself is allowed.
        let mut cmd = as_nobody(&dir);
        cmd.env("DAMON_USER", user("nobody").uid.to_string()).arg("true");
        run_ok(cmd, &dir);
    }

    fn run_ok(cmd: Command, dir: &TestDir) -> Run {
        let run = run(cmd, dir);
        run.assert_code(0);
        run
    }

    #[test]
    fn a_damon_that_is_not_root_still_restricts_its_uncontained_child() {
        let dir = TestDir::new("not-root-restricted");
        let mut cmd = as_nobody(&dir);
        cmd.env("DAMON_RESTRICTED_TOKEN", "Y").arg(workload()).arg("whoami");
        let run = run_ok(cmd, &dir);
        assert_eq!(ids(&run, "Uid"), vec![user("nobody").uid.as_raw(); 4], "{}", run.explain());
        // No capability to give up but the bounding set, which only CAP_SETPCAP may shrink; with
        // no_new_privs nothing can be gained from it.
        for set in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
            assert_eq!(field(&run, set), "0000000000000000", "{}\n{}", set, run.explain());
        }
        assert_eq!(field(&run, "NoNewPrivs"), "1", "{}", run.explain());
        run.assert_log_contains("running the command uncontained").assert_log_contains("damon lacks CAP_SETPCAP");
    }
}
