//! How the child comes into its group. On cgroup v2 it is born there (clone3 with
//! CLONE_INTO_CGROUP): no process is moved, damon included. Where clone3 is refused, as a
//! container runtime's seccomp profile that predates it refuses it, and on cgroup v1, the child
//! joins its group between its clone and its exec. Either way the workload runs no instruction
//! outside it. And either way it shares damon's memory until its exec, as posix_spawn's child
//! does, rather than getting a copy.

#![cfg(target_os = "linux")]

mod common;

use common::*;
use nix::libc;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// damon's "start" field of its "child started" line.
fn start_method(log: &str) -> String {
    log.lines()
        .find(|l| l.contains("\"message\":\"child started\""))
        .and_then(|l| l.split("\"start\":\"").nth(1))
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_string()
}

/// The workload's "self: ..." or "parent: ..." lines, as printed first thing.
fn lines_of<'a>(stdout: &'a str, who: &str) -> Vec<&'a str> {
    stdout.lines().filter_map(|l| l.strip_prefix(who)).collect()
}

/// Runs the `cgroups` workload under damon with a memory limit; `before_exec` runs in the
/// process that becomes damon, before its exec.
fn run_cgroups(dir: &TestDir, before_exec: Option<fn() -> io::Result<()>>) -> Run {
    let mut cmd = damon(dir);
    cmd.env("DAMON_MEMORY_LIMIT", "64").arg(workload()).arg("cgroups");
    if let Some(before_exec) = before_exec {
        // SAFETY: the closure makes only prctl(2) and seccomp(2) calls on data on its own stack.
        unsafe {
            cmd.pre_exec(before_exec);
        }
    }
    run(cmd, dir)
}

/// Checks that the workload ran in damon's group from its start, and returns the start method.
fn assert_in_group_from_the_start(run: &Run, dir: &TestDir) -> String {
    run.assert_code(0);
    let dirs = container_dirs(dir);
    let own = lines_of(&run.stdout, "self: ");
    // Each of the group's directories (one per hierarchy on v1) is where the workload was.
    for group in &dirs {
        let name = group.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            own.iter().any(|l| l.ends_with(&format!("/{}", name))),
            "not in {}: {:?}\n{}",
            name,
            own,
            run.explain()
        );
    }
    start_method(&run.log)
}

#[test]
fn the_workload_runs_in_its_group_from_its_start_and_damon_stays_where_it_was() {
    let dir = TestDir::new("born-in-group");
    let run = run_cgroups(&dir, None);
    let start = assert_in_group_from_the_start(&run, &dir);
    if cgroup_version() == "v2" {
        assert_eq!(start, "clone3 into its cgroup", "{}", run.explain());
    } else {
        assert_eq!(start, "joined its cgroup before exec", "{}", run.explain());
    }
    // damon (the workload's parent) was, when the workload started, where this test put it.
    let test_v2_line = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let test_v2_line = test_v2_line.lines().find(|l| l.starts_with("0::")).unwrap();
    let damon_v2_line = lines_of(&run.stdout, "parent: ").into_iter().find(|l| l.starts_with("0::"));
    assert_eq!(damon_v2_line, Some(test_v2_line), "damon was moved\n{}", run.explain());
}

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xc000_00b7;

/// Installs a seccomp filter that makes clone3 fail with `errno` (and allows everything else),
/// as container runtimes did before they knew clone3. Inherited by damon across its exec.
fn refuse_clone3(errno: u32) -> io::Result<()> {
    let statement = |code: u32, k: u32| libc::sock_filter { code: code as u16, jt: 0, jf: 0, k };
    let jump_if = |k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    };
    // struct seccomp_data: nr at offset 0, arch at offset 4.
    let load = |offset: u32| statement(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, offset);
    let allow = statement(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW);
    let program = [
        load(4),
        jump_if(AUDIT_ARCH, 0, 3),
        load(0),
        jump_if(libc::SYS_clone3 as u32, 0, 1),
        statement(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ERRNO | errno),
        allow,
    ];
    let fprog = libc::sock_fprog { len: program.len() as u16, filter: program.as_ptr() as *mut libc::sock_filter };
    // SAFETY: prctl(2) with integer arguments; seccomp(2) reads the program through a pointer to
    // a live sock_fprog that points to a live array, for the length of the call only.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1
            || libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, &fprog as *const libc::sock_fprog)
                == -1
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn refuse_clone3_enosys() -> io::Result<()> {
    refuse_clone3(libc::ENOSYS as u32)
}

fn refuse_clone3_eperm() -> io::Result<()> {
    refuse_clone3(libc::EPERM as u32)
}

#[test]
fn where_a_seccomp_filter_refuses_clone3_the_workload_joins_its_group_before_exec() {
    // The filter works: clone3 fails as the filter says, in a process that has it.
    let mut probe = Command::new(workload());
    probe.args(["exit", "0"]);
    // SAFETY: as in run_cgroups.
    unsafe {
        probe.pre_exec(refuse_clone3_enosys);
    }
    assert!(probe.status().expect("start a process under the filter").success());

    for (errno, install) in [
        ("Function not implemented", refuse_clone3_enosys as fn() -> io::Result<()>),
        ("Operation not permitted", refuse_clone3_eperm),
    ] {
        let dir = TestDir::new("clone3-refused");
        let run = run_cgroups(&dir, Some(install));
        let start = assert_in_group_from_the_start(&run, &dir);
        if cgroup_version() == "v2" {
            assert!(
                start.starts_with("joined its cgroup before exec (clone3 into the cgroup refused"),
                "{}",
                run.explain()
            );
            assert!(start.contains(errno), "{}", run.explain());
        } else {
            assert_eq!(start, "joined its cgroup before exec", "{}", run.explain());
        }
    }
}

/// The pid in damon's "child started" line.
fn child_pid(log: &str) -> String {
    log.lines()
        .find(|l| l.contains("\"message\":\"child started\""))
        .and_then(|l| l.split("\"pid\":").nth(1))
        .map(|rest| rest.chars().take_while(char::is_ascii_digit).collect())
        .unwrap_or_default()
}

#[test]
fn the_child_shares_damons_memory_until_its_exec_instead_of_getting_a_copy() {
    // strace shows the flags of the clone that started the workload, and its pid.
    let dir = TestDir::new("vfork");
    let trace = dir.path("clones.strace");
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-qq", "-e", "trace=clone,clone3,fork,vfork", "-o"]).arg(&trace).arg(DAMON);
    in_clean_environment(&mut cmd, &dir);
    cmd.env("DAMON_MEMORY_LIMIT", "64").arg(workload()).args(["exit", "0"]);
    let run = run(cmd, &dir);
    run.assert_code(0);
    let trace = std::fs::read_to_string(&trace).expect("strace's output (is strace installed?)");
    let pid = child_pid(&run.log);
    assert!(!pid.is_empty(), "no child started\n{}", run.explain());
    // "1234 clone3({flags=CLONE_VM|CLONE_VFORK|CLONE_INTO_CGROUP, ...}, 88) = 1235"
    let start = trace
        .lines()
        .find(|l| l.trim_end().ends_with(&format!("= {}", pid)))
        .unwrap_or_else(|| panic!("no clone returned the child's pid {}:\n{}\n{}", pid, trace, run.explain()));
    assert!(start.contains("CLONE_VM") && start.contains("CLONE_VFORK"), "the child got a copy: {}", start);
    if cgroup_version() == "v2" {
        assert!(start.contains("clone3(") && start.contains("CLONE_INTO_CGROUP"), "not born in its group: {}", start);
    }
}

/// A descriptor damon inherited without close-on-exec (here one open for writing on the
/// hierarchy's root cgroup.procs, which would let the workload leave its group) does not reach
/// the workload, in any mode: it gets stdin, stdout and stderr only. Control: the same shell
/// started directly holds the descriptor and can use it.
#[test]
fn a_descriptor_damon_inherited_does_not_reach_the_child() {
    use std::os::unix::io::AsRawFd;
    let dir = TestDir::new("inherited-fd");
    let procs = match cgroup_version() {
        "v2" => "/sys/fs/cgroup/cgroup.procs",
        _ => "/sys/fs/cgroup/memory/cgroup.procs",
    };
    let file = std::fs::OpenOptions::new().write(true).open(procs).expect("open the root cgroup.procs");
    let fd = file.as_raw_fd();
    // Lists the shell's descriptors 0 to 31 with the shell's own `test`, which opens nothing
    // (a glob or `ls` would list its own directory descriptor, and a pipeline the shell's pipe
    // end while `ls` races the shell's close), then tries the inherited one: writing "0" there
    // would move the shell to the root group.
    let script = "n=0; while [ $n -lt 32 ]; do [ -e /proc/$$/fd/$n ] && printf '%s ' $n; n=$((n+1)); done; echo; \
                  if echo 0 >&7; then echo escaped; else echo closed; fi";
    let with_fd_7 = |cmd: &mut Command| {
        // SAFETY: dup2(2) only, on a descriptor this process holds; it clears close-on-exec on 7.
        unsafe {
            cmd.pre_exec(move || if libc::dup2(fd, 7) == 7 { Ok(()) } else { Err(io::Error::last_os_error()) });
        }
    };
    let mut control = Command::new("sh");
    control.args(["-c", "if [ -e /proc/$$/fd/7 ]; then echo open; else echo missing; fi"]);
    with_fd_7(&mut control);
    let out = control.output().expect("run sh");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "open\n", "the control shell did not get descriptor 7");
    for mode in [&[][..], &[("DAMON_RESTRICTED_TOKEN", "Y")][..], &[("DAMON_SANDBOX", "Y")][..]] {
        let mut cmd = damon(&dir);
        cmd.envs(mode.iter().copied()).env("DAMON_MEMORY_LIMIT", "64").args(["sh", "-c", script]);
        with_fd_7(&mut cmd);
        let run = run(cmd, &dir);
        run.assert_code(0);
        let mut lines = run.stdout.lines();
        let fds: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
        assert_eq!(fds, ["0", "1", "2"], "{:?}: descriptors beyond stderr reached the child\n{}", mode, run.explain());
        assert_eq!(lines.next(), Some("closed"), "{:?}\n{}", mode, run.explain());
    }
    drop(file);
}
