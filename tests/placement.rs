//! Where the group goes: under damon's own cgroup by default (on v2 with damon moved into a
//! leaf beside it, and the parent restored afterwards), or under DAMON_CGROUP_PARENT; and what
//! happens without the right to create cgroups.

#![cfg(target_os = "linux")]

mod common;

use common::*;
use nix::sys::signal::Signal;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

const NOBODY: u32 = 65534;

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir).unwrap().flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect()
}

/// A new cgroup v2 directory beside the test's own cgroup.
fn new_cgroup_beside_this_test(name: &str) -> PathBuf {
    let own = fs::read_to_string("/proc/self/cgroup").unwrap();
    let own = own.lines().find_map(|l| l.strip_prefix("0::")).unwrap().trim_start_matches('/').to_string();
    let path = Path::new("/sys/fs/cgroup").join(own).join(format!("damon-test-{}-{}", name, std::process::id()));
    fs::create_dir(&path).unwrap();
    path
}

/// damon started inside `cgroup` (through a shell that moves itself there and execs damon).
fn damon_in_cgroup(cgroup: &Path, dir: &TestDir) -> std::process::Command {
    let mut cmd = std::process::Command::new("sh");
    in_clean_environment(&mut cmd, dir);
    let script = format!("echo $$ > {}/cgroup.procs && exec \"$0\" \"$@\"", cgroup.display());
    cmd.args(["-c", &script, DAMON]);
    cmd
}

/// The hierarchy roots damon makes its group in without a process limit (v1 joins pids only
/// with one, and blkio only where blk-throttle counts on some device).
fn hierarchy_roots() -> Vec<PathBuf> {
    if cgroup_version() == "v2" {
        vec![PathBuf::from("/sys/fs/cgroup")]
    } else {
        ["memory", "cpu", "cpuacct", "freezer", "blkio"]
            .iter()
            .filter(|c| **c != "blkio" || blk_throttle_counts_somewhere())
            .map(|c| Path::new("/sys/fs/cgroup").join(c))
            .filter(|p| p.is_dir())
            .collect()
    }
}

/// A group of damon's name (its pid in it) left by an earlier damon that had the same pid and
/// whose guard died with it. Empty, it is replaced and damon runs; holding a process, damon
/// refuses to start (125, naming the group) and leaves the group and its process alone.
#[test]
fn a_stale_group_of_damons_name_is_replaced_when_empty_and_left_alone_when_busy() {
    let parent = format!("/damon-test-stale-{}", std::process::id());
    let parents: Vec<PathBuf> = hierarchy_roots().iter().map(|r| r.join(parent.trim_start_matches('/'))).collect();
    let stale = |pid_var: &str| -> Vec<String> {
        parents.iter().map(|p| format!("{}/damon-{}", p.display(), pid_var)).collect()
    };
    // A shell makes the stale groups with its own pid, then execs damon, which keeps that pid.
    let damon_after = |dir: &TestDir, prelude: String| {
        let mut cmd = std::process::Command::new("sh");
        in_clean_environment(&mut cmd, dir);
        cmd.args(["-c", &format!("{} && exec \"$0\" \"$@\"", prelude), DAMON, "sh", "-c", "cat /proc/self/cgroup"])
            .env("DAMON_CGROUP_PARENT", &parent)
            .env("DAMON_MEMORY_LIMIT", "64");
        cmd
    };
    let mkdirs = stale("$$").iter().map(|d| format!("mkdir -p {}", d)).collect::<Vec<_>>().join(" && ");

    let dir = TestDir::new("stale-empty");
    let run_empty = run(damon_after(&dir, mkdirs.clone()), &dir);
    run_empty.assert_code(0);
    let key = if cgroup_version() == "v2" { "0::" } else { ":memory:" };
    let line = run_empty.stdout.lines().find(|l| l.contains(key)).unwrap_or_else(|| panic!("{}", run_empty.explain()));
    assert!(line.contains(&format!("{}/damon-", parent)), "{}", run_empty.explain());
    for p in &parents {
        assert!(subdirs(p).is_empty(), "left behind in {}: {:?}\n{}", p.display(), subdirs(p), run_empty.explain());
    }

    // The same, with a process in the stale group of the memory hierarchy (v1) or the group (v2).
    let dir = TestDir::new("stale-busy");
    let holder = dir.path("holder.pid");
    let busy = stale("$$").into_iter().find(|d| cgroup_version() == "v2" || d.contains("/memory/")).unwrap();
    let damon_pid = dir.path("damon.pid");
    let prelude = format!(
        "{} && {{ sleep 60 </dev/null >/dev/null 2>&1 & }} && echo $! > {} && echo $! > {}/cgroup.procs && echo $$ > {}",
        mkdirs,
        holder.display(),
        busy,
        damon_pid.display()
    );
    let run_busy = run(damon_after(&dir, prelude), &dir);
    let holder_pid = read_pid(&holder).unwrap_or_else(|| panic!("no holder\n{}", run_busy.explain()));
    let pid = read_pid(&damon_pid).unwrap_or_else(|| panic!("no pid\n{}", run_busy.explain()));
    let busy_dir = PathBuf::from(busy.replace("$$", &pid.to_string()));
    let holder_alive = alive(holder_pid);
    let held = fs::read_to_string(busy_dir.join("cgroup.procs")).unwrap_or_default();
    signal(holder_pid, Signal::SIGKILL);
    run_busy.assert_code(125);
    assert!(run_busy.stderr.contains(&busy_dir.display().to_string()), "{}", run_busy.explain());
    assert!(
        holder_alive && held.lines().any(|l| l.trim() == holder_pid.to_string()),
        "{:?}\n{}",
        held,
        run_busy.explain()
    );
    assert!(!run_busy.stdout.contains(key), "the command ran\n{}", run_busy.explain());
    wait_for("the holder to exit", Duration::from_secs(10), || !alive(holder_pid));
    for p in &parents {
        for d in subdirs(p) {
            fs::remove_dir(&d).unwrap_or_else(|e| panic!("rmdir {}: {}", d.display(), e));
        }
        fs::remove_dir(p).unwrap();
    }
}

#[test]
fn the_group_goes_under_damon_cgroup_parent() {
    let dir = TestDir::new("parent");
    let parent = format!("/damon-test-parent-{}", std::process::id());
    let mut cmd = damon(&dir);
    cmd.env("DAMON_CGROUP_PARENT", &parent).env("DAMON_MEMORY_LIMIT", "64").args(["sh", "-c", "cat /proc/self/cgroup"]);
    let run = run(cmd, &dir);
    run.assert_code(0);
    let key = if cgroup_version() == "v2" { "0::" } else { ":memory:" };
    let line = run.stdout.lines().find(|l| l.contains(key)).unwrap_or_else(|| panic!("{}", run.explain()));
    assert!(line.contains(&format!("{}/damon-", parent)), "{}", run.explain());
    // The parent stays (it is the operator's); damon's group in it is gone.
    for root in hierarchy_roots() {
        let p = root.join(parent.trim_start_matches('/'));
        if p.exists() {
            assert!(subdirs(&p).is_empty(), "left behind in {}: {:?}", p.display(), subdirs(&p));
            fs::remove_dir(&p).unwrap();
        }
    }
}

#[test]
fn on_v2_damon_moves_into_a_leaf_beside_the_group_and_restores_its_cgroup() {
    if cgroup_version() != "v2" {
        return skip_elsewhere("the no-internal-processes rule exists on cgroup v2 only (runs in the VM)");
    }
    let task_cgroup = new_cgroup_beside_this_test("task");
    let dir = TestDir::new("leaf");
    // As Nomad does for a raw_exec task: damon starts alone in a cgroup of its own.
    let mut cmd = damon_in_cgroup(&task_cgroup, &dir);
    cmd.env("DAMON_MEMORY_LIMIT", "64")
        .args([workload().to_str().unwrap(), "sleep", "60"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    let damon_pid = child.id();
    let dirs = container_dirs(&dir);
    assert_eq!(dirs, vec![task_cgroup.join(format!("damon-{}", damon_pid))]);
    let damon_cgroup = fs::read_to_string(format!("/proc/{}/cgroup", damon_pid)).unwrap();
    assert!(
        damon_cgroup.trim_end().ends_with(&format!(
            "damon-test-task-{}/damon-{}.supervisor",
            std::process::id(),
            damon_pid
        )),
        "{}",
        damon_cgroup
    );
    assert!(read_trimmed(&task_cgroup.join("cgroup.subtree_control")).contains("memory"));
    signal(damon_pid, Signal::SIGTERM);
    finish(child, &dir, "damon workload sleep 60", Duration::from_secs(20)).assert_code(143);
    assert!(subdirs(&task_cgroup).is_empty(), "left behind: {:?}", subdirs(&task_cgroup));
    assert_eq!(read_trimmed(&task_cgroup.join("cgroup.subtree_control")), "", "controllers not turned off again");
    fs::remove_dir(&task_cgroup).unwrap();
}

#[test]
fn on_v2_a_cgroup_shared_with_other_processes_is_refused_clearly_and_left_as_found() {
    if cgroup_version() != "v2" {
        return skip_elsewhere("the no-internal-processes rule exists on cgroup v2 only (runs in the VM)");
    }
    let shared = new_cgroup_beside_this_test("shared");
    let dir = TestDir::new("shared");
    let mut neighbour = std::process::Command::new("sleep").arg("30").spawn().unwrap();
    fs::write(shared.join("cgroup.procs"), neighbour.id().to_string()).unwrap();
    let mut cmd = damon_in_cgroup(&shared, &dir);
    cmd.env("DAMON_MEMORY_LIMIT", "64").args(["touch", "started"]);
    let run = run(cmd, &dir);
    let _ = neighbour.kill();
    let _ = neighbour.wait();
    run.assert_code(125);
    assert!(run.stderr.contains("other processes live in that cgroup: set DAMON_CGROUP_PARENT"), "{}", run.explain());
    assert!(!dir.path("started").exists(), "the command ran");
    assert!(subdirs(&shared).is_empty(), "left behind: {:?}", subdirs(&shared));
    assert_eq!(read_trimmed(&shared.join("cgroup.subtree_control")), "");
    fs::remove_dir(&shared).unwrap();
}

#[test]
fn on_v2_when_damon_is_sigkilled_its_guard_restores_the_task_cgroup() {
    if cgroup_version() != "v2" {
        return skip_elsewhere("the supervisor leaf exists on cgroup v2 only (runs in the VM)");
    }
    let task_cgroup = new_cgroup_beside_this_test("killed");
    let dir = TestDir::new("leaf-killed");
    let mut cmd = damon_in_cgroup(&task_cgroup, &dir);
    cmd.env("DAMON_MEMORY_LIMIT", "64").args([workload().to_str().unwrap(), "ignore-stop", dir.0.to_str().unwrap()]);
    let mut damon = cmd.stdout(Stdio::null()).spawn().unwrap();
    wait_for("the workload's pid files", Duration::from_secs(10), || read_pid(&dir.path("grandchild.pid")).is_some());
    let grandchild = read_pid(&dir.path("grandchild.pid")).unwrap();
    signal(damon.id(), Signal::SIGKILL);
    let _ = damon.wait();
    wait_for("the guard to restore the task cgroup", Duration::from_secs(10), || {
        subdirs(&task_cgroup).is_empty()
            && fs::read_to_string(task_cgroup.join("cgroup.procs")).unwrap().trim().is_empty()
    });
    assert!(!alive(grandchild), "the setsid grandchild outlived damon");
    assert_eq!(read_trimmed(&task_cgroup.join("cgroup.subtree_control")), "");
    fs::remove_dir(&task_cgroup).unwrap();
}

fn as_nobody(dir: &TestDir) -> std::process::Command {
    fs::set_permissions(&dir.0, fs::Permissions::from_mode(0o777)).unwrap();
    let mut cmd = damon(dir);
    cmd.uid(NOBODY).gid(NOBODY);
    cmd
}

#[test]
fn without_the_right_to_create_cgroups_enforced_limits_fail_with_125() {
    let dir = TestDir::new("nobody");
    let marker = dir.path("started");
    let mut cmd = as_nobody(&dir);
    cmd.env("DAMON_MEMORY_LIMIT", "64").arg("touch").arg(&marker);
    let run = run(cmd, &dir);
    run.assert_code(125).assert_log_contains("cannot create the container");
    assert!(
        run.stderr.contains("cannot create the container")
            && run.stderr.contains("ermission denied")
            && run.stderr.contains("damon runs as uid 65534")
            && run.stderr.contains("with DAMON_USER"),
        "{}",
        run.explain()
    );
    assert!(!marker.exists(), "the command ran uncontained");
}

#[test]
fn without_the_right_to_create_cgroups_and_nothing_enforced_the_command_runs_uncontained() {
    let dir = TestDir::new("nobody-uncontained");
    let mut cmd = as_nobody(&dir);
    cmd.env("DAMON_MEMORY_LIMIT", "64")
        .env("DAMON_ENFORCE_MEMORY_LIMIT", "N")
        .env("DAMON_ENFORCE_CPU_LIMIT", "n")
        .args(["sh", "-c", "echo ran; exit 4"]);
    let run = run(cmd, &dir);
    run.assert_code(4)
        .assert_log_contains("running the command uncontained")
        .assert_log_contains("\"container\":\"none\"");
    assert_eq!(run.stdout, "ran\n");
}

#[test]
fn damons_sharing_a_cgroup_parent_keep_each_others_controllers() {
    // Two damons under one DAMON_CGROUP_PARENT, an operator's: the first turns the memory
    // controller on in it (v2); when the first ends while the second runs, the second's group
    // must keep its limit (the controller stays on: the second did not turn it on, and cannot
    // tell it from one the operator turned on, so it stays after both). Nothing else is left.
    let parent = format!("/damon-test-shared-{}", std::process::id());
    // On v1 also in the cgroup2 hierarchy beside it, where the groups' twins for the network
    // accounting go: there too the parent is the operator's, and nothing of damon's stays.
    let unified = Path::new(UNIFIED);
    let twins = (cgroup_version() == "v1" && unified.join("cgroup.procs").exists()).then(|| unified.to_path_buf());
    let parents: Vec<PathBuf> =
        hierarchy_roots().iter().chain(&twins).map(|r| r.join(parent.trim_start_matches('/'))).collect();
    for p in &parents {
        fs::create_dir(p).unwrap();
    }
    let controllers_before = |p: &Path| fs::read_to_string(p.join("cgroup.subtree_control")).unwrap_or_default();
    let found: Vec<String> = parents.iter().map(|p| controllers_before(p)).collect();
    let (dir_a, dir_b) = (TestDir::new("shared-a"), TestDir::new("shared-b"));
    let start = |dir: &TestDir| {
        let mut cmd = damon(dir);
        cmd.env("DAMON_CGROUP_PARENT", &parent).env("DAMON_MEMORY_LIMIT", "64").args([
            workload().to_str().unwrap(),
            "sleep",
            "60",
        ]);
        cmd.stdout(Stdio::null()).spawn().unwrap()
    };
    let a = start(&dir_a);
    container_dirs(&dir_a);
    let b = start(&dir_b);
    let b_dirs = container_dirs(&dir_b);
    let limit_file = if cgroup_version() == "v2" { "memory.max" } else { "memory.limit_in_bytes" };
    let b_limit = group_file(&b_dirs, limit_file);
    signal(a.id(), Signal::SIGTERM);
    finish(a, &dir_a, "damon workload sleep 60", Duration::from_secs(30)).assert_code(143);
    assert!(b_limit.exists(), "the second damon's group lost its memory limit when the first ended");
    assert_eq!(read_trimmed(&b_limit), (64u64 << 20).to_string());
    signal(b.id(), Signal::SIGTERM);
    finish(b, &dir_b, "damon workload sleep 60", Duration::from_secs(30)).assert_code(143);
    for (p, found) in parents.iter().zip(found) {
        assert!(subdirs(p).is_empty(), "left in {}: {:?}", p.display(), subdirs(p));
        let now = controllers_before(p);
        assert!(
            found.split_whitespace().all(|c| now.split_whitespace().any(|n| n == c)),
            "{}: controllers were {:?}, now {:?}",
            p.display(),
            found,
            now
        );
        fs::remove_dir(p).unwrap();
    }
}

/// Whether every hierarchy of this process is mounted whole where systemd mounts it
/// (`/sys/fs/cgroup/<controllers>`, cgroup2 at `/sys/fs/cgroup` or beside v1 at `unified`) and
/// this process is in the initial cgroup namespace: read from mountinfo by the test itself.
fn standard_layout_here() -> bool {
    let ns = fs::read_link("/proc/self/ns/cgroup").map(|l| l.to_string_lossy().into_owned()).unwrap_or_default();
    if ns != "cgroup:[4026531835]" {
        return false;
    }
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let whole_mounts: Vec<&str> = mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fields: Vec<&str> = left.split(' ').collect();
            let cgroup = right.starts_with("cgroup ") || right.starts_with("cgroup2 ");
            (cgroup && fields.get(3) == Some(&"/")).then(|| fields[4])
        })
        .collect();
    let own = fs::read_to_string("/proc/self/cgroup").unwrap();
    let has_v1 = own.lines().any(|l| !l.starts_with("0::") && !l.contains("name="));
    own.lines().all(|line| {
        let controllers = line.split(':').nth(1).unwrap_or("");
        let expected = if line.starts_with("0::") {
            if has_v1 { "/sys/fs/cgroup/unified" } else { "/sys/fs/cgroup" }.to_string()
        } else if controllers.contains("name=") {
            return true;
        } else {
            format!("/sys/fs/cgroup/{}", controllers)
        };
        whole_mounts.contains(&expected.as_str())
    })
}

/// /proc/self/mountinfo has a line for every mount of the host (a secrets tmpfs per task on a
/// Nomad client), formatted by the kernel at each read: where the hierarchies are where systemd
/// mounts them, damon confirms them there and does not read it.
#[test]
fn damon_reads_mountinfo_only_where_the_hierarchies_are_not_where_systemd_mounts_them() {
    let dir = TestDir::new("mountinfo");
    let trace = dir.path("opens.strace");
    let mut cmd = std::process::Command::new("strace");
    cmd.args(["-f", "-qq", "-e", "trace=open,openat", "-o"]).arg(&trace).arg(DAMON);
    in_clean_environment(&mut cmd, &dir);
    cmd.env("DAMON_MEMORY_LIMIT", "64").arg(workload()).args(["exit", "0"]);
    let run = run(cmd, &dir);
    run.assert_code(0);
    let trace = fs::read_to_string(&trace).expect("strace's output (is strace installed?)");
    let standard = standard_layout_here();
    assert_eq!(
        trace.contains("/proc/self/mountinfo"),
        !standard,
        "standard layout here: {}; damon's opens:\n{}",
        standard,
        trace
    );
}

/// A cgroup mount that shows only part of its hierarchy (as a container's bind mount does),
/// mounted over the standard one: damon must see that it is not the whole hierarchy, take the
/// mount's root from mountinfo, and make its group where it is in that part.
#[test]
fn over_a_mount_of_part_of_the_hierarchy_damon_makes_its_group_where_it_is_in_that_part() {
    let (part, mount_point, key) = if cgroup_version() == "v2" {
        (new_cgroup_beside_this_test("part"), PathBuf::from("/sys/fs/cgroup"), "0::")
    } else {
        let own = fs::read_to_string("/proc/self/cgroup").unwrap();
        let own = own.lines().find_map(|l| l.split_once(":memory:")).map(|(_, p)| p.to_string()).unwrap();
        let part = Path::new("/sys/fs/cgroup/memory")
            .join(own.trim_start_matches('/'))
            .join(format!("damon-test-part-{}", std::process::id()));
        fs::create_dir(&part).unwrap();
        (part, PathBuf::from("/sys/fs/cgroup/memory"), ":memory:")
    };
    // damon starts in a cgroup below the part's root, as a task below a container's: its guard
    // waits at the root of what it sees (on v2 only where no controller is passed down).
    fs::create_dir(part.join("task")).unwrap();
    let _removed_at_the_end = RemovedAtTheEnd(vec![part.join("task"), part.clone()]);
    let dir = TestDir::new("part");
    let mut cmd = std::process::Command::new("unshare");
    in_clean_environment(&mut cmd, &dir);
    // In a mount namespace of its own: the part mounted over the hierarchy, the shell moved
    // into its task cgroup (through that mount), then damon.
    let script = format!(
        "mount --make-rprivate / && mount --bind {part} {point} && echo $$ > {point}/task/cgroup.procs && \
         exec \"$0\" \"$@\"",
        part = part.display(),
        point = mount_point.display()
    );
    cmd.args(["-m", "sh", "-c", &script, DAMON, "sh", "-c", "cat /proc/self/cgroup"]);
    let run = run(cmd, &dir);
    run.assert_code(0);
    let line = run.stdout.lines().find(|l| l.contains(key)).unwrap_or_else(|| panic!("{}", run.explain()));
    // The child's cgroup is damon's group directly in the task's: "<part>/task/damon-<pid>".
    let task = Path::new("/").join(part.strip_prefix(&mount_point).unwrap()).join("task");
    let group = line.split_once(key).map(|(_, path)| path).unwrap_or_default();
    let name = group.strip_prefix(&format!("{}/", task.display())).unwrap_or_default();
    assert!(
        name.strip_prefix("damon-").map_or(false, |pid| !pid.is_empty() && pid.chars().all(|c| c.is_ascii_digit())),
        "the child ran in {}, not in a group of damon's directly in {}\n{}",
        group,
        task.display(),
        run.explain()
    );
    assert!(subdirs(&part.join("task")).is_empty(), "left behind: {:?}", subdirs(&part.join("task")));
}

/// Cgroup directories the test made, removed in order when it ends, passed or failed: a
/// leftover named after this test's pid would be taken for a later damon's of the same pid.
struct RemovedAtTheEnd(Vec<PathBuf>);

impl Drop for RemovedAtTheEnd {
    fn drop(&mut self) {
        for dir in &self.0 {
            let _ = fs::remove_dir(dir);
        }
    }
}

/// A limit whose controller the host lacks is refused before anything runs, naming the
/// controller and the way out. On v1 the pids hierarchy is hidden under a tmpfs in a mount
/// namespace of damon's own. On v2 damon would turn the controller on all the way down from the
/// root, so it runs in a cgroup namespace (util-linux's unshare) rooted at a group whose parent
/// passes down memory alone, with cgroup2 mounted there, as in a container; and once more where
/// the parent passes nothing down.
#[test]
fn a_limit_whose_controller_is_missing_is_refused_naming_the_way_out() {
    let refused = |mut cmd: std::process::Command, dir: &TestDir, expected: &str| {
        cmd.env("DAMON_PROCESS_LIMIT", "10").args(["touch", "started"]);
        let run = run(cmd, dir);
        run.assert_code(125);
        assert!(run.stderr.contains(expected), "expected {:?}\n{}", expected, run.explain());
        assert!(!dir.path("started").exists(), "the command ran");
    };
    let dir = TestDir::new("no-pids");
    if cgroup_version() != "v2" {
        let mut cmd = std::process::Command::new("unshare");
        in_clean_environment(&mut cmd, &dir);
        let script = "mount --make-rprivate / && mount -t tmpfs none /sys/fs/cgroup/pids && exec \"$0\" \"$@\"";
        cmd.args(["-m", "sh", "-c", script, DAMON]);
        let expected = "the cgroup v1 pids controller is not mounted: mount it, or unset DAMON_PROCESS_LIMIT to run \
                        without the process limit";
        return refused(cmd, &dir, expected);
    }
    for passed_down in ["+memory", ""] {
        let parent = new_cgroup_beside_this_test("no-pids");
        let cgroup = parent.join("task");
        fs::create_dir(&cgroup).unwrap();
        let _removed_at_the_end = RemovedAtTheEnd(vec![cgroup.clone(), parent.clone()]);
        if !passed_down.is_empty() {
            fs::write(parent.join("cgroup.subtree_control"), passed_down).unwrap();
        }
        let mut cmd = std::process::Command::new("sh");
        in_clean_environment(&mut cmd, &dir);
        // The namespace's own cgroup2 mount, in place of the host's (the same mount twice is EBUSY).
        let inner = "mount --make-rprivate / && umount -l /sys/fs/cgroup && mount -t cgroup2 none /sys/fs/cgroup && \
                     exec \"$0\" \"$@\"";
        let outer =
            format!("echo $$ > {}/cgroup.procs && exec /usr/bin/unshare -C -m sh -c \"$0\" \"$@\"", cgroup.display());
        cmd.args(["-c", &outer, inner, DAMON]);
        let expected = if passed_down.is_empty() {
            "cgroup v2 at /sys/fs/cgroup offers no memory controller (cgroup.controllers: \"\"): enable it in its \
             parent's cgroup.subtree_control"
        } else {
            "the cgroup v2 pids controller is not available in /sys/fs/cgroup (cgroup.controllers: \"memory\"): \
             enable it in the parents' cgroup.subtree_control, or choose a DAMON_CGROUP_PARENT that has it, or unset \
             DAMON_PROCESS_LIMIT to run without the process limit"
        };
        refused(cmd, &dir, expected);
    }
}

/// On v1 the child joins each hierarchy by writing itself into its `tasks`, which moves the
/// writing thread only: the whole workload must still be in every one of damon's groups, the
/// command and what it starts, before and after its exec.
#[test]
fn on_v1_the_workload_and_what_it_starts_are_in_every_one_of_damons_groups() {
    if cgroup_version() != "v1" {
        return skip_elsewhere("on v2 the child is born in its one group (the host's stage runs it)");
    }
    let dir = TestDir::new("every-group");
    let mut cmd = damon(&dir);
    cmd.env("DAMON_MEMORY_LIMIT", "64").env("DAMON_CPU_LIMIT", "500").env("DAMON_PROCESS_LIMIT", "100").args([
        "sh",
        "-c",
        "sleep 30 & cat /proc/self/cgroup /proc/$!/cgroup; kill $!",
    ]);
    let run = run(cmd, &dir);
    run.assert_code(0);
    let mut controllers: Vec<String> =
        hierarchy_roots().iter().map(|r| r.file_name().unwrap().to_string_lossy().into_owned()).collect();
    if Path::new("/sys/fs/cgroup/pids").is_dir() {
        controllers.push("pids".to_string());
    }
    for controller in &controllers {
        let lines: Vec<&str> = run
            .stdout
            .lines()
            .filter(|l| l.split(':').nth(1).map_or(false, |c| c.split(',').any(|c| c == controller)))
            .collect();
        assert_eq!(lines.len(), 2, "{}: {}", controller, run.explain());
        for line in lines {
            assert!(line.contains("/damon-"), "{} not in damon's group: {}\n{}", controller, line, run.explain());
        }
    }
}
