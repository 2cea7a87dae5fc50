//! A workload for damon's tests: a program that does one thing a real service might do,
//! chosen by its first argument. Not part of damon; built by `cargo test` with the tests.
//!
//! On Unix and Windows:
//!   exit N              exit with code N
//!   sleep SECS          sleep, then exit 0
//!   alloc MIB [SECS]    allocate and touch MIB MiB, hold it SECS (default: forever)
//!   burn SECS           busy-loop for SECS of wall time, then print "cpu_seconds=X wall_seconds=Y"
//!   env                 print the environment, one VAR=value per line
//!   affinity            print "Cpus_allowed_list:\tLIST": the cores this process may run on, as
//!                       a cpuset list (Linux: from /proc/self/status; Windows: its affinity mask,
//!                       as GetProcessAffinityMask gives it)
//!
//! On Unix (Linux):
//!   wait-signals        print "ready", then the name of every SIGINT, SIGTERM, SIGHUP, SIGUSR1,
//!                       SIGUSR2 received; exit 0 after SIGINT or SIGTERM
//!   ignore-stop DIR     ignore stop signals and SIGUSR1/2, start a grandchild that calls setsid(); write
//!                       DIR/child.pid and DIR/grandchild.pid, then sleep forever
//!   daemon FILE         (the grandchild) setsid(), ignore stop signals, write FILE, sleep forever
//!   obedient-swarm DIR  as swarm, but this process itself dies of the first stop signal
//!   swarm DIR [MS]      ignore stop signals and start everything a careless service might: a
//!                       setsid() daemon, a double-forked orphan, and a spawner that keeps starting
//!                       processes; write DIR/child.pid once all are started; then exit 3 after MS
//!                       milliseconds, or sleep forever without MS
//!   orphan FILE         start `hold FILE` and exit at once (the second fork of a double fork)
//!   hold FILE           ignore stop signals, write FILE, sleep forever
//!   spawner FILE        ignore stop signals, write FILE, then start a sleeping process every
//!                       millisecond, forever, whether or not the start succeeds
//!   fork-bomb           start copies of itself, forever: every copy does the same
//!   drain MS DIR        start a setsid() daemon (DIR/daemon.pid), write DIR/child.pid, wait for
//!                       SIGINT or SIGTERM, then drain: sleep MS milliseconds, write DIR/drained
//!                       and exit 0 (a service that needs time to stop)
//!   recorder STEM [setsid]  (setsid() first with "setsid"), write STEM.pid, wait for SIGINT or
//!                       SIGTERM, count further ones for 300 ms, write "SIGNAL COUNT" to STEM.got,
//!                       exit 0
//!   recorded-tree DIR   start recorders DIR/plain, DIR/setsid (setsid) and DIR/orphan (through a
//!                       parent that exits at once), write DIR/child.pid once all are up, then
//!                       record as a recorder does, to DIR/child.got, and exit 3
//!   child-first MS DIR  start a setsid() drainer (DIR/drainer.pid) that, on SIGINT or SIGTERM,
//!                       sleeps MS milliseconds, writes DIR/drainer.drained and exits 0; write
//!                       DIR/child.pid, and on SIGINT or SIGTERM exit 3 at once (a launcher that
//!                       leaves before the service it started)
//!   drainer MS DIR      (the drainer of child-first)
//!   ride-out MS         block SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 first thing,
//!                       sleep MS milliseconds, exit 7
//!   whoami              print the Uid, Gid, Groups, Cap* and NoNewPrivs lines of /proc/self/status
//!   try-write           read "PATH VALUE" lines from stdin until it ends, try to write each VALUE
//!                       to its PATH, print "PATH: written" or "PATH: refused: ERROR" for each, then
//!                       "cgroup: LINE" for each line of /proc/self/cgroup
//!   udp-send ADDR SECS  send 1,400-byte UDP datagrams to ADDR for SECS seconds as fast as the
//!                       socket takes them; print bytes_sent=N seconds=S
//!   tcp-send ADDR BYTES  connect to ADDR, send BYTES zero bytes, shut the sending side and read
//!                       until the peer closes; print "sent=BYTES payload_sent=N" (N: the data
//!                       bytes TCP sent, retransmissions included, from TCP_INFO), then sleep
//!                       forever
//!   tcp-serve ADDR      listen on ADDR, print "listening on PORT", accept and close connections
//!                       forever
//!   cgroups             first thing, read /proc/self/cgroup and the parent's (damon's); print
//!                       "self: LINE" and "parent: LINE" for each of their lines
//!
//! On Windows:
//!   wait-signals        print "ready", then the name of every console control event received
//!                       (CTRL_C_EVENT, CTRL_BREAK_EVENT, CTRL_CLOSE_EVENT, ...); exit 0 after
//!                       CTRL_C_EVENT or CTRL_BREAK_EVENT
//!   jvm-like            as a JVM takes console events: print "ready"; on CTRL_BREAK_EVENT print
//!                       "thread dump" and go on; on CTRL_C_EVENT print it and exit 0
//!   record-events FILE  print "ready"; append the name of each console control event received
//!                       to FILE (a launcher's grandchild, which shares no pipe with the test);
//!                       exit 0 after CTRL_C_EVENT or CTRL_BREAK_EVENT
//!   ignore-stop DIR     ignore console control events, start a grandchild in a new process group;
//!                       write DIR\child.pid and DIR\grandchild.pid (the Linux pid under Wine, else
//!                       the Windows pid) and DIR\child.winpid and DIR\grandchild.winpid (the
//!                       Windows pid), then sleep forever
//!   daemon FILE         (the grandchild) ignore console control events, write FILE and FILE with
//!                       the extension "winpid" as above, sleep forever
//!   job                 print "in_job=true|false" (is this process in a Job Object?), run itself
//!                       as `job-child` and exit with its exit code
//!   job-child           print "child_in_job=true|false"
//!   sandbox-probe P...  Linux: try each probe P and print "P: allowed" or "P: denied: ERROR":
//!                       escape:FILE (write own pid to a cgroup.procs), mount:DIR (tmpfs),
//!                       unshare-mount, init-module, ptrace-parent (damon), signal-parent (signal 0
//!                       to damon), connect-abstract:NAME (an abstract Unix socket), write:FILE,
//!                       tcp:ADDR (a TCP connection), udp:ADDR (a datagram sent), bind:ADDR and
//!                       bind-udp:ADDR (a TCP listener or UDP socket bound there), bpf-detach (every
//!                       cgroup BPF program off its own group in the cgroup2 hierarchy),
//!                       read:FILE,
//!                       exec:FILE
//!
//! Under Wine on Linux the .pid files hold the Linux pid, which the Linux side of the tests checks
//! in /proc (Wine's /proc/self is wineserver, so it comes from a getpid system call); the .winpid
//! files hold the pid Windows APIs know.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or_else(|| usage());
    let number = |i: usize| arg(i).parse::<u64>().unwrap_or_else(|_| usage());
    match arg(0) {
        "exit" => std::process::exit(arg(1).parse().unwrap_or_else(|_| usage())),
        "sleep" => std::thread::sleep(Duration::from_secs(number(1))),
        "alloc" => alloc(number(1), args.get(2).and_then(|s| s.parse().ok())),
        "burn" => burn(Duration::from_secs(number(1))),
        "env" => {
            for (k, v) in std::env::vars_os() {
                println!("{}={}", k.to_string_lossy(), v.to_string_lossy());
            }
        }
        "affinity" => println!("Cpus_allowed_list:\t{}", cpus_allowed_list()),
        #[cfg(unix)]
        "wait-signals" => unix::wait_signals(),
        #[cfg(unix)]
        "ignore-stop" => unix::ignore_stop(Path::new(arg(1))),
        #[cfg(unix)]
        "daemon" => unix::daemon(Path::new(arg(1))),
        #[cfg(unix)]
        "swarm" => unix::swarm(Path::new(arg(1)), args.get(2).and_then(|s| s.parse().ok()), false),
        #[cfg(unix)]
        "obedient-swarm" => unix::swarm(Path::new(arg(1)), None, true),
        #[cfg(unix)]
        "orphan" => unix::orphan(Path::new(arg(1))),
        #[cfg(unix)]
        "hold" => unix::hold(Path::new(arg(1))),
        #[cfg(unix)]
        "spawner" => unix::spawner(Path::new(arg(1))),
        #[cfg(unix)]
        "fork-bomb" => unix::fork_bomb(),
        #[cfg(unix)]
        "ride-out" => unix::ride_out(number(1)),
        #[cfg(unix)]
        "recorder" => unix::recorder(Path::new(arg(1)), args.get(2).map(String::as_str) == Some("setsid")),
        #[cfg(unix)]
        "orphan-recorder" => unix::orphan_recorder(Path::new(arg(1))),
        #[cfg(unix)]
        "recorded-tree" => unix::recorded_tree(Path::new(arg(1))),
        #[cfg(unix)]
        "child-first" => unix::child_first(number(1), Path::new(arg(2))),
        #[cfg(unix)]
        "drainer" => unix::drainer(number(1), Path::new(arg(2))),
        #[cfg(unix)]
        "drain" => unix::drain(number(1), Path::new(arg(2))),
        #[cfg(unix)]
        "whoami" => privilege::whoami(),
        #[cfg(unix)]
        "try-write" => privilege::try_write(),
        #[cfg(unix)]
        "cgroups" => unix::cgroups(),
        #[cfg(target_os = "linux")]
        "sandbox-probe" => sandbox_probe::run(&args[1..]),
        "udp-send" => udp_send(arg(1), Duration::from_secs(number(2))),
        #[cfg(target_os = "linux")]
        "tcp-send" => tcp_send(arg(1), number(2)),
        "tcp-serve" => tcp_serve(arg(1)),
        #[cfg(any(target_os = "linux", windows))]
        "direct-io" => direct_io::run(arg(1), Path::new(arg(2)), number(3), number(4)),
        #[cfg(windows)]
        "wait-signals" => windows::wait_signals(),
        #[cfg(windows)]
        "jvm-like" => windows::jvm_like(),
        #[cfg(windows)]
        "record-events" => windows::record_events(Path::new(arg(1))),
        #[cfg(windows)]
        "ignore-stop" => windows::ignore_stop(Path::new(arg(1))),
        #[cfg(windows)]
        "daemon" => windows::daemon(Path::new(arg(1))),
        #[cfg(windows)]
        "job" => windows::job(),
        #[cfg(windows)]
        "job-child" => windows::job_child(),
        #[cfg(windows)]
        "in-job" => windows::in_job_then_close(Path::new(arg(1)), &args[2..]),
        #[cfg(windows)]
        "ui-probe" => windows::ui_probe(),
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: workload exit N | sleep SECS | alloc MIB [SECS] | burn SECS | env | affinity | wait-signals | ignore-stop DIR{}",
        if cfg!(windows) {
            " | job | ui-probe | direct-io read|write|buffered-write PATH MIB BLOCK_KIB | udp-send HOST:PORT SECS"
        } else {
            " | direct-io read|write|buffered-write PATH MIB BLOCK_KIB | udp-send HOST:PORT SECS"
        }
    );
    std::process::exit(2)
}

fn sleep_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn alloc(mib: u64, hold_secs: Option<u64>) {
    let mut chunks = Vec::new();
    for _ in 0..mib {
        // Touch every page so the memory is really used, not only reserved.
        chunks.push(vec![1u8; 1 << 20]);
    }
    println!("allocated {} MiB", chunks.len());
    let _ = std::io::stdout().flush();
    match hold_secs {
        Some(secs) => std::thread::sleep(Duration::from_secs(secs)),
        None => sleep_forever(),
    }
}

fn burn(wall: Duration) {
    let start = Instant::now();
    let mut x: u64 = 0;
    while start.elapsed() < wall {
        for i in 0..100_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
    }
    println!("cpu_seconds={:.3} wall_seconds={:.3} ({})", cpu_seconds(), start.elapsed().as_secs_f64(), x % 2);
}

#[cfg(unix)]
fn cpus_allowed_list() -> String {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
        .map(|list| list.trim().to_string())
        .expect("Cpus_allowed_list in /proc/self/status")
}

#[cfg(windows)]
fn cpus_allowed_list() -> String {
    windows::cpus_allowed_list()
}

#[cfg(not(any(unix, windows)))]
fn cpus_allowed_list() -> String {
    String::new()
}

#[cfg(unix)]
fn cpu_seconds() -> f64 {
    use nix::sys::resource::{getrusage, UsageWho};
    let usage = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let seconds = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    seconds(usage.user_time()) + seconds(usage.system_time())
}

#[cfg(windows)]
fn cpu_seconds() -> f64 {
    windows::cpu_seconds()
}

#[cfg(not(any(unix, windows)))]
fn cpu_seconds() -> f64 {
    0.0
}

#[cfg(unix)]
mod unix {
    use std::io::Write;
    use std::path::Path;
    use std::process::Command;

    use nix::sys::signal::{SigSet, SigmaskHow, Signal};
    use nix::sys::signalfd::SignalFd;

    const STOP: [Signal; 4] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT];

    /// Blocked signals are never delivered: the process ignores them, and SIGKILL still works.
    fn block(signals: &[Signal]) -> SigSet {
        let mut set = SigSet::empty();
        for s in signals {
            set.add(*s);
        }
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None).expect("sigprocmask");
        set
    }

    fn write_pid(file: &Path) {
        let tmp = file.with_extension("tmp");
        std::fs::write(&tmp, std::process::id().to_string()).expect("write pid file");
        std::fs::rename(&tmp, file).expect("rename pid file");
    }

    pub fn wait_signals() {
        let set = block(&[Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGUSR1, Signal::SIGUSR2]);
        let mut fd = SignalFd::new(&set).expect("signalfd");
        println!("ready");
        let _ = std::io::stdout().flush();
        loop {
            if let Ok(Some(info)) = fd.read_signal() {
                let signal = Signal::try_from(info.ssi_signo as i32).expect("known signal");
                println!("{}", signal.as_str());
                let _ = std::io::stdout().flush();
                if matches!(signal, Signal::SIGINT | Signal::SIGTERM) {
                    return;
                }
            }
        }
    }

    pub fn ignore_stop(dir: &Path) {
        block(&[STOP[0], STOP[1], STOP[2], STOP[3], Signal::SIGUSR1, Signal::SIGUSR2]);
        let me = std::env::current_exe().expect("current_exe");
        // Never waited for: it is meant to outlive this process, as a daemon would.
        #[allow(clippy::zombie_processes)]
        let _grandchild =
            Command::new(me).arg("daemon").arg(dir.join("grandchild.pid")).spawn().expect("spawn grandchild");
        write_pid(&dir.join("child.pid"));
        super::sleep_forever()
    }

    pub fn daemon(file: &Path) {
        nix::unistd::setsid().expect("setsid");
        block(&STOP);
        write_pid(file);
        super::sleep_forever()
    }

    /// Starts `workload ARGS` and leaves it running: it is never waited for.
    fn start(args: &[&std::ffi::OsStr]) -> std::io::Result<()> {
        #[allow(clippy::zombie_processes)]
        let _never_waited_for = Command::new(std::env::current_exe()?).args(args).spawn()?;
        Ok(())
    }

    /// Waits until `file` exists, which the process started to write it has done.
    fn wait_for_file(file: &Path) {
        while !file.exists() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    pub fn swarm(dir: &Path, exit_after_ms: Option<u64>, obedient: bool) {
        if !obedient {
            block(&STOP);
        }
        for (kind, file) in [("daemon", "daemon.pid"), ("orphan", "orphan.pid"), ("spawner", "spawner.pid")] {
            let file = dir.join(file);
            start(&[kind.as_ref(), file.as_os_str()]).expect("start a process of the swarm");
            wait_for_file(&file);
        }
        write_pid(&dir.join("child.pid"));
        match exit_after_ms {
            Some(ms) => {
                std::thread::sleep(std::time::Duration::from_millis(ms));
                std::process::exit(3)
            }
            None => super::sleep_forever(),
        }
    }

    pub fn orphan(file: &Path) {
        start(&["hold".as_ref(), file.as_os_str()]).expect("start hold");
    }

    pub fn hold(file: &Path) {
        block(&STOP);
        write_pid(file);
        super::sleep_forever()
    }

    pub fn spawner(file: &Path) {
        block(&STOP);
        write_pid(file);
        loop {
            // Refused starts (a process limit) are tried again: this process does not give up.
            let _ = start(&["sleep".as_ref(), "600".as_ref()]);
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    pub fn cgroups() {
        // Both read before anything else: where this process runs from its first instructions
        // on, and where its parent runs at that moment.
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let parent = std::fs::read_to_string(format!("/proc/{}/cgroup", nix::unistd::getppid())).unwrap_or_default();
        for line in own.lines() {
            println!("self: {}", line);
        }
        for line in parent.lines() {
            println!("parent: {}", line);
        }
    }

    pub fn drain(ms: u64, dir: &Path) {
        let set = block(&[Signal::SIGINT, Signal::SIGTERM]);
        let daemon = dir.join("daemon.pid");
        start(&["daemon".as_ref(), daemon.as_os_str()]).expect("start the daemon");
        wait_for_file(&daemon);
        write_pid(&dir.join("child.pid"));
        wait_for_stop(&set);
        drain_and_exit(ms, &dir.join("drained"))
    }

    /// Blocks until a signal of `set` arrives (blocked before, so that none is lost).
    fn wait_for_stop(set: &SigSet) {
        let mut fd = SignalFd::new(set).expect("signalfd");
        while !matches!(fd.read_signal(), Ok(Some(_))) {}
    }

    /// A service's stop: `ms` milliseconds of draining, then `done` written and exit 0.
    fn drain_and_exit(ms: u64, done: &Path) -> ! {
        std::thread::sleep(std::time::Duration::from_millis(ms));
        std::fs::write(done, "").unwrap_or_else(|e| panic!("write {}: {}", done.display(), e));
        std::process::exit(0)
    }

    pub fn child_first(ms: u64, dir: &Path) {
        let set = block(&[Signal::SIGINT, Signal::SIGTERM]);
        let drainer = dir.join("drainer.pid");
        start(&["drainer".as_ref(), ms.to_string().as_ref(), dir.as_os_str()]).expect("start the drainer");
        wait_for_file(&drainer);
        write_pid(&dir.join("child.pid"));
        wait_for_stop(&set);
        std::process::exit(3)
    }

    pub fn drainer(ms: u64, dir: &Path) {
        nix::unistd::setsid().expect("setsid");
        let set = block(&[Signal::SIGINT, Signal::SIGTERM]);
        write_pid(&dir.join("drainer.pid"));
        wait_for_stop(&set);
        drain_and_exit(ms, &dir.join("drainer.drained"))
    }

    pub fn recorder(stem: &Path, setsid: bool) {
        if setsid {
            nix::unistd::setsid().expect("setsid");
        }
        record_stop(stem);
        std::process::exit(0)
    }

    /// Writes STEM.pid, waits for a stop, counts the stops of the next 300 ms and writes STEM.got.
    fn record_stop(stem: &Path) {
        let set = block(&[Signal::SIGINT, Signal::SIGTERM]);
        write_pid(&stem.with_extension("pid"));
        let mut fd = SignalFd::new(&set).expect("signalfd");
        let first = loop {
            if let Ok(Some(info)) = fd.read_signal() {
                break Signal::try_from(info.ssi_signo as i32).expect("known signal");
            }
        };
        let mut fd = SignalFd::with_flags(&set, nix::sys::signalfd::SfdFlags::SFD_NONBLOCK).expect("signalfd");
        let mut count = 1;
        let until = std::time::Instant::now() + std::time::Duration::from_millis(300);
        while std::time::Instant::now() < until {
            match fd.read_signal() {
                Ok(Some(_)) => count += 1,
                _ => std::thread::sleep(std::time::Duration::from_millis(5)),
            }
        }
        std::fs::write(stem.with_extension("got"), format!("{} {}", first.as_str(), count)).expect("write STEM.got");
    }

    pub fn orphan_recorder(stem: &Path) {
        start(&["recorder".as_ref(), stem.as_os_str()]).expect("start the orphan's recorder");
    }

    pub fn recorded_tree(dir: &Path) {
        let recorders: [(&str, &[&str]); 3] =
            [("plain", &["recorder"]), ("setsid", &["recorder", "setsid"]), ("orphan", &["orphan-recorder"])];
        for (name, how) in recorders {
            let stem = dir.join(name);
            let mut args: Vec<&std::ffi::OsStr> = vec![how[0].as_ref(), stem.as_os_str()];
            args.extend(how[1..].iter().map(|a| a.as_ref() as &std::ffi::OsStr));
            start(&args).expect("start a recorder");
            wait_for_file(&stem.with_extension("pid"));
        }
        record_stop(&dir.join("child"));
        std::process::exit(3)
    }

    pub fn ride_out(ms: u64) {
        block(&[STOP[0], STOP[1], STOP[2], STOP[3], Signal::SIGUSR1, Signal::SIGUSR2]);
        std::thread::sleep(std::time::Duration::from_millis(ms));
        std::process::exit(7)
    }

    pub fn fork_bomb() {
        loop {
            let _ = start(&["fork-bomb".as_ref()]);
        }
    }
}

/// What a workload holds and what it can do to its own containment (tests/privilege.rs).
#[cfg(unix)]
mod privilege {
    use std::io::BufRead;

    pub fn whoami() {
        let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
        for line in status.lines() {
            if ["Uid:", "Gid:", "Groups:", "Cap", "NoNewPrivs:"].iter().any(|p| line.starts_with(p)) {
                println!("{}", line);
            }
        }
    }

    pub fn try_write() {
        for line in std::io::stdin().lock().lines() {
            let line = line.expect("read stdin");
            let (path, value) = match line.split_once(' ') {
                Some(pair) => pair,
                None => continue,
            };
            // One write(2) of the whole value, as a cgroup file expects.
            match std::fs::OpenOptions::new().write(true).open(path).and_then(|mut f| {
                use std::io::Write;
                f.write_all(value.as_bytes())
            }) {
                Ok(()) => println!("{}: written", path),
                Err(e) => println!("{}: refused: {}", path, e),
            }
        }
        let cgroups = std::fs::read_to_string("/proc/self/cgroup").expect("read /proc/self/cgroup");
        for line in cgroups.lines() {
            println!("cgroup: {}", line);
        }
    }
}

#[cfg(windows)]
mod windows {
    use std::io::Write;
    use std::os::windows::process::CommandExt;
    use std::path::Path;
    use std::process::Command;

    use windows_sys::Win32::Foundation::{BOOL, FALSE, FILETIME, TRUE};
    use windows_sys::Win32::System::Console::{
        SetConsoleCtrlHandler, CTRL_BREAK_EVENT, CTRL_CLOSE_EVENT, CTRL_C_EVENT, CTRL_LOGOFF_EVENT, CTRL_SHUTDOWN_EVENT,
    };
    use windows_sys::Win32::System::JobObjects::IsProcessInJob;
    use windows_sys::Win32::System::Threading::{
        GetCurrentProcess, GetProcessAffinityMask, GetProcessTimes, CREATE_NEW_PROCESS_GROUP,
    };

    /// Prints what failed with the last Win32 error, and exits 1.
    fn fail(what: &str) -> ! {
        eprintln!("workload: {} failed: {}", what, std::io::Error::last_os_error());
        std::process::exit(1)
    }

    fn event_name(event: u32) -> String {
        match event {
            CTRL_C_EVENT => "CTRL_C_EVENT".to_string(),
            CTRL_BREAK_EVENT => "CTRL_BREAK_EVENT".to_string(),
            CTRL_CLOSE_EVENT => "CTRL_CLOSE_EVENT".to_string(),
            CTRL_LOGOFF_EVENT => "CTRL_LOGOFF_EVENT".to_string(),
            CTRL_SHUTDOWN_EVENT => "CTRL_SHUTDOWN_EVENT".to_string(),
            other => format!("console event {}", other),
        }
    }

    /// Runs on a thread the system starts for each event. Writes with `let _ =` rather than
    /// println!, so that it cannot panic: unwinding out of an extern "system" fn is not allowed.
    extern "system" fn report_event(event: u32) -> BOOL {
        let mut out = std::io::stdout();
        let _ = writeln!(out, "{}", event_name(event));
        let _ = out.flush();
        if event == CTRL_C_EVENT || event == CTRL_BREAK_EVENT {
            std::process::exit(0);
        }
        // Handled. For CTRL_CLOSE_EVENT the system ends the process anyway once this returns.
        TRUE
    }

    extern "system" fn ignore_event(_event: u32) -> BOOL {
        TRUE
    }

    /// As the JVM's handlers: Ctrl+Break prints the threads, Ctrl+C ends the program.
    extern "system" fn jvm_event(event: u32) -> BOOL {
        let mut out = std::io::stdout();
        if event == CTRL_BREAK_EVENT {
            let _ = writeln!(out, "thread dump");
            let _ = out.flush();
            return TRUE;
        }
        let _ = writeln!(out, "{}", event_name(event));
        let _ = out.flush();
        if event == CTRL_C_EVENT {
            std::process::exit(0);
        }
        TRUE
    }

    pub fn jvm_like() {
        set_handler(jvm_event);
        println!("ready");
        let _ = std::io::stdout().flush();
        super::sleep_forever()
    }

    /// The file [`record_event`] appends to, set once before the handler.
    static RECORD: std::sync::Mutex<Option<std::path::PathBuf>> = std::sync::Mutex::new(None);

    extern "system" fn record_event(event: u32) -> BOOL {
        if let Ok(guard) = RECORD.lock() {
            if let Some(path) = guard.as_ref() {
                if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
                    let _ = writeln!(file, "{}", event_name(event));
                }
            }
        }
        if event == CTRL_C_EVENT || event == CTRL_BREAK_EVENT {
            std::process::exit(0);
        }
        TRUE
    }

    pub fn record_events(file: &Path) {
        // As in wait_signals: Ctrl+C back on, should this process lead a group of its own.
        // SAFETY: a NULL handler with FALSE only clears this process's ignore-Ctrl+C flag.
        if unsafe { SetConsoleCtrlHandler(None, FALSE) } == FALSE {
            fail("SetConsoleCtrlHandler(NULL, FALSE)");
        }
        if let Ok(mut guard) = RECORD.lock() {
            *guard = Some(file.to_path_buf());
        }
        set_handler(record_event);
        println!("ready");
        let _ = std::io::stdout().flush();
        super::sleep_forever()
    }

    fn set_handler(handler: extern "system" fn(u32) -> BOOL) {
        // SAFETY: the handler is a plain function with the signature PHANDLER_ROUTINE requires,
        // lives for the whole program, and does not unwind; the call only registers it.
        if unsafe { SetConsoleCtrlHandler(Some(handler), TRUE) } == FALSE {
            fail("SetConsoleCtrlHandler");
        }
    }

    pub fn wait_signals() {
        // A process started with CREATE_NEW_PROCESS_GROUP begins with Ctrl+C ignored; turn
        // Ctrl+C back on so that CTRL_C_EVENT reaches the handler too.
        // SAFETY: a NULL handler with FALSE only clears this process's ignore-Ctrl+C flag.
        if unsafe { SetConsoleCtrlHandler(None, FALSE) } == FALSE {
            fail("SetConsoleCtrlHandler(NULL, FALSE)");
        }
        set_handler(report_event);
        println!("ready");
        let _ = std::io::stdout().flush();
        super::sleep_forever()
    }

    /// The Linux pid of this process under Wine on Linux, None elsewhere.
    ///
    /// Wine maps drive Z: to the Linux root, so /proc/self/stat is readable as Z:\proc\self\stat
    /// there (and nowhere else). But its pid is not ours: Wine opens files in wineserver, so
    /// "self" is wineserver. Wine has no API for the Linux pid, so once /proc says this is Linux,
    /// ask the Linux kernel directly with a raw getpid system call.
    fn linux_pid() -> Option<u32> {
        // The root of the Linux file system, if this is Wine on Linux.
        let root = ["Z:", ""].iter().find(|root| {
            std::fs::read_to_string(format!(r"{}\proc\self\stat", root))
                .map_or(false, |stat| stat.split_whitespace().next().map_or(false, is_number))
        })?;
        let pid = linux_getpid()?;
        // A pid that /proc does not know would be no use to the tests: fall back instead.
        if Path::new(&format!(r"{}\proc\{}\stat", root, pid)).exists() {
            Some(pid)
        } else {
            None
        }
    }

    fn is_number(s: &str) -> bool {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
    }

    #[cfg(target_arch = "x86_64")]
    fn linux_getpid() -> Option<u32> {
        const SYS_GETPID: i64 = 39;
        let pid: i64;
        // SAFETY: only called once /proc/self/stat has shown that this is Wine on Linux, where
        // Windows code runs in an ordinary Linux process and `syscall` enters the Linux kernel.
        // getpid takes no arguments, touches no memory and cannot fail; the kernel clobbers only
        // rcx and r11 (declared) and returns in rax.
        unsafe {
            std::arch::asm!(
                "syscall",
                inlateout("rax") SYS_GETPID => pid,
                out("rcx") _,
                out("r11") _,
                options(nostack),
            );
        }
        u32::try_from(pid).ok().filter(|&pid| pid > 0)
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn linux_getpid() -> Option<u32> {
        None
    }

    fn write_atomically(file: &Path, pid: u32) {
        let mut tmp = file.as_os_str().to_owned();
        tmp.push(".tmp");
        if let Err(e) = std::fs::write(&tmp, pid.to_string()) {
            eprintln!("workload: writing {}: {}", Path::new(&tmp).display(), e);
            std::process::exit(1);
        }
        if let Err(e) = std::fs::rename(&tmp, file) {
            eprintln!("workload: renaming {} to {}: {}", Path::new(&tmp).display(), file.display(), e);
            std::process::exit(1);
        }
    }

    /// Writes FILE.winpid (the Windows pid), then FILE (the Linux pid under Wine): whoever sees
    /// FILE can read both.
    fn write_pids(file: &Path) {
        let windows_pid = std::process::id();
        write_atomically(&file.with_extension("winpid"), windows_pid);
        write_atomically(file, linux_pid().unwrap_or(windows_pid));
    }

    pub fn ignore_stop(dir: &Path) {
        set_handler(ignore_event);
        let me = std::env::current_exe().unwrap_or_else(|e| {
            eprintln!("workload: current_exe: {}", e);
            std::process::exit(1)
        });
        // Never waited for: it is meant to outlive this process, as a daemon would. A new
        // process group is the nearest Windows has to setsid().
        let grandchild = Command::new(me)
            .arg("daemon")
            .arg(dir.join("grandchild.pid"))
            .creation_flags(CREATE_NEW_PROCESS_GROUP)
            .spawn()
            .unwrap_or_else(|e| {
                eprintln!("workload: starting the grandchild: {}", e);
                std::process::exit(1)
            });
        std::mem::forget(grandchild);
        write_pids(&dir.join("child.pid"));
        super::sleep_forever()
    }

    pub fn daemon(file: &Path) {
        set_handler(ignore_event);
        write_pids(file);
        super::sleep_forever()
    }

    fn in_job() -> bool {
        let mut result: BOOL = FALSE;
        // SAFETY: GetCurrentProcess returns a pseudo handle that needs no closing; a NULL job
        // asks about any job; `result` is a valid BOOL for the call to write.
        if unsafe { IsProcessInJob(GetCurrentProcess(), std::ptr::null_mut(), &mut result) } == FALSE {
            fail("IsProcessInJob");
        }
        result != FALSE
    }

    pub fn job() {
        println!("in_job={}", in_job());
        let _ = std::io::stdout().flush();
        let me = std::env::current_exe().unwrap_or_else(|e| {
            eprintln!("workload: current_exe: {}", e);
            std::process::exit(1)
        });
        let status = Command::new(me).arg("job-child").status().unwrap_or_else(|e| {
            eprintln!("workload: running job-child: {}", e);
            std::process::exit(1)
        });
        std::process::exit(status.code().unwrap_or(1))
    }

    /// As Nomad 1.9+'s Windows executor: puts itself in a job with KILL_ON_JOB_CLOSE (nothing
    /// else), runs COMMAND in it, and once `ready` exists closes the job, which ends every
    /// process in it, this one too. If COMMAND ends first, exits with its code.
    pub fn in_job_then_close(ready: &Path, command: &[String]) {
        use std::ffi::c_void;
        use windows_sys::Win32::Foundation::CloseHandle;
        use windows_sys::Win32::System::JobObjects::{
            AssignProcessToJobObject, CreateJobObjectW, JobObjectExtendedLimitInformation, SetInformationJobObject,
            JOBOBJECT_EXTENDED_LIMIT_INFORMATION, JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
        };

        // SAFETY: no security attributes and no name: an unnamed job with default rights.
        let job = unsafe { CreateJobObjectW(std::ptr::null(), std::ptr::null()) };
        if job.is_null() {
            fail("CreateJobObjectW");
        }
        // SAFETY: the structure is plain data for which all-zero bytes are valid.
        let mut limits: JOBOBJECT_EXTENDED_LIMIT_INFORMATION = unsafe { std::mem::zeroed() };
        limits.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
        // SAFETY: `job` is open; `limits` is alive for the call and its size is given.
        let set = unsafe {
            SetInformationJobObject(
                job,
                JobObjectExtendedLimitInformation,
                &limits as *const JOBOBJECT_EXTENDED_LIMIT_INFORMATION as *const c_void,
                std::mem::size_of::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>() as u32,
            )
        };
        if set == FALSE {
            fail("SetInformationJobObject(KILL_ON_JOB_CLOSE)");
        }
        // SAFETY: `job` is open; GetCurrentProcess is a pseudo-handle for this process.
        if unsafe { AssignProcessToJobObject(job, GetCurrentProcess()) } == FALSE {
            fail("AssignProcessToJobObject(self)");
        }
        let mut child = Command::new(&command[0]).args(&command[1..]).spawn().unwrap_or_else(|e| {
            eprintln!("workload: starting {:?}: {}", command, e);
            std::process::exit(1)
        });
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                std::process::exit(status.code().unwrap_or(1));
            }
            if ready.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        println!("closing the job");
        let _ = std::io::stdout().flush();
        // SAFETY: `job` is open and this is its only handle: closing it kills the job's processes.
        unsafe { CloseHandle(job) };
        // Not reached where the kill took this process too.
        std::thread::sleep(std::time::Duration::from_secs(30));
        std::process::exit(3)
    }

    pub fn job_child() {
        println!("child_in_job={}", in_job());
        let _ = std::io::stdout().flush();
    }

    /// What DAMON_SANDBOX's job denies, as the workload meets it: the UI restrictions its own
    /// job holds (`ui_restrictions=0x..`), whether it may change a system parameter (it sets
    /// the beep to what it is, so that nothing changes when allowed), and whether a child may
    /// break away from the job.
    pub fn ui_probe() {
        use std::ffi::c_void;
        use windows_sys::Win32::System::JobObjects::{
            JobObjectBasicUIRestrictions, QueryInformationJobObject, JOBOBJECT_BASIC_UI_RESTRICTIONS,
        };
        use windows_sys::Win32::System::Threading::CREATE_BREAKAWAY_FROM_JOB;
        use windows_sys::Win32::UI::WindowsAndMessaging::{SystemParametersInfoW, SPI_GETBEEP, SPI_SETBEEP};

        let mut ui = JOBOBJECT_BASIC_UI_RESTRICTIONS { UIRestrictionsClass: 0 };
        // SAFETY: a null job handle names the caller's own job; the buffer is `ui`, alive for the
        // call, and its size is given; no length is asked back.
        let queried = unsafe {
            QueryInformationJobObject(
                std::ptr::null_mut(),
                JobObjectBasicUIRestrictions,
                &mut ui as *mut JOBOBJECT_BASIC_UI_RESTRICTIONS as *mut c_void,
                std::mem::size_of::<JOBOBJECT_BASIC_UI_RESTRICTIONS>() as u32,
                std::ptr::null_mut(),
            )
        };
        match queried {
            FALSE => println!("ui_restrictions: unknown: {}", std::io::Error::last_os_error()),
            _ => println!("ui_restrictions=0x{:x}", ui.UIRestrictionsClass),
        }
        let mut beep: BOOL = FALSE;
        // SAFETY: SPI_GETBEEP writes one BOOL through the pointer, which points at `beep`.
        let got = unsafe { SystemParametersInfoW(SPI_GETBEEP, 0, &mut beep as *mut BOOL as *mut c_void, 0) };
        // SAFETY: SPI_SETBEEP takes its value in uiParam and no pointer; flags 0: neither written
        // to the user's profile nor broadcast.
        let set = got != FALSE
            && unsafe { SystemParametersInfoW(SPI_SETBEEP, beep as u32, std::ptr::null_mut(), 0) } != FALSE;
        match set {
            true => println!("system_parameters: allowed"),
            false => println!("system_parameters: denied: {}", std::io::Error::last_os_error()),
        }
        let me = std::env::current_exe().unwrap_or_else(|_| fail("current_exe"));
        match Command::new(me).args(["exit", "0"]).creation_flags(CREATE_BREAKAWAY_FROM_JOB).status() {
            Ok(_) => println!("breakaway: allowed"),
            Err(e) => println!("breakaway: denied: {}", e),
        }
        let _ = std::io::stdout().flush();
    }

    /// The process's affinity mask (its processor group's) as a list in the kernel's notation,
    /// consecutive processors as ranges: "0-1,4".
    pub fn cpus_allowed_list() -> String {
        let (mut process_mask, mut system_mask) = (0usize, 0usize);
        // SAFETY: the pseudo handle of the current process is always valid; both masks are
        // writable usizes that live across the call.
        if unsafe { GetProcessAffinityMask(GetCurrentProcess(), &mut process_mask, &mut system_mask) } == FALSE {
            fail("GetProcessAffinityMask");
        }
        let bits: Vec<u32> = (0..usize::BITS).filter(|bit| process_mask & (1usize << bit) != 0).collect();
        let mut ranges: Vec<(u32, u32)> = Vec::new();
        for bit in bits {
            match ranges.last_mut() {
                Some(range) if range.1 + 1 == bit => range.1 = bit,
                _ => ranges.push((bit, bit)),
            }
        }
        let parts: Vec<String> = ranges
            .iter()
            .map(|&(first, last)| if first == last { first.to_string() } else { format!("{}-{}", first, last) })
            .collect();
        parts.join(",")
    }

    pub fn cpu_seconds() -> f64 {
        let zero = FILETIME { dwLowDateTime: 0, dwHighDateTime: 0 };
        let (mut creation, mut exit, mut kernel, mut user) = (zero, zero, zero, zero);
        // SAFETY: the pseudo handle of the current process is always valid, and the four
        // pointers are to distinct FILETIMEs that live across the call.
        let ok = unsafe { GetProcessTimes(GetCurrentProcess(), &mut creation, &mut exit, &mut kernel, &mut user) };
        if ok == FALSE {
            fail("GetProcessTimes");
        }
        // FILETIME durations count 100-ns units.
        let ticks = |t: FILETIME| (u64::from(t.dwHighDateTime) << 32 | u64::from(t.dwLowDateTime)) as f64;
        (ticks(kernel) + ticks(user)) / 1e7
    }
}

/// `udp-send HOST:PORT SECS`: sends 1,400-byte datagrams to HOST:PORT as fast as the socket
/// takes them for SECS seconds, then prints `bytes_sent=N seconds=S`. What left the host is the
/// adapter's count, which tests/windows_native.rs reads: a network cap may drop what it does
/// not let through rather than slow the sender.
fn udp_send(target: &str, duration: Duration) {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").expect("bind a UDP socket");
    socket.connect(target).unwrap_or_else(|e| panic!("connect to {}: {}", target, e));
    let datagram = [0x5au8; 1400];
    let (start, mut sent) = (Instant::now(), 0u64);
    while start.elapsed() < duration {
        // A full queue or an unreachable network is not the end of the measure.
        if let Ok(n) = socket.send(&datagram) {
            sent += n as u64;
        }
    }
    println!("bytes_sent={} seconds={:.3}", sent, start.elapsed().as_secs_f64());
}

fn tcp_serve(address: &str) {
    let listener = std::net::TcpListener::bind(address).unwrap_or_else(|e| panic!("listen on {}: {}", address, e));
    println!("listening on {}", listener.local_addr().expect("the listener's address").port());
    for connection in listener.incoming() {
        drop(connection);
    }
}

#[cfg(target_os = "linux")]
fn tcp_send(target: &str, bytes: u64) {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(target).unwrap_or_else(|e| panic!("connect to {}: {}", target, e));
    std::io::copy(&mut std::io::repeat(0).take(bytes), &mut stream).expect("send");
    stream.shutdown(std::net::Shutdown::Write).expect("shut the sending side");
    let _ = stream.read_to_end(&mut Vec::new());
    println!("sent={} payload_sent={}", bytes, tcp_bytes_sent(&stream));
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// struct tcp_info's tcpi_bytes_sent (Linux 4.19): the data bytes sent, retransmissions
/// included. Read by its offset: the libc crate's tcp_info for glibc stops before it.
#[cfg(target_os = "linux")]
fn tcp_bytes_sent(stream: &std::net::TcpStream) -> u64 {
    use nix::libc;
    use std::os::unix::io::AsRawFd;
    const BYTES_SENT_OFFSET: usize = 200;
    let mut info = [0u8; 256];
    let mut len = info.len() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `info`, which is that long.
    let result = unsafe {
        libc::getsockopt(stream.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_INFO, info.as_mut_ptr().cast(), &mut len)
    };
    assert!(result == 0 && len as usize >= BYTES_SENT_OFFSET + 8, "TCP_INFO without tcpi_bytes_sent");
    let mut field = [0u8; 8];
    field.copy_from_slice(&info[BYTES_SENT_OFFSET..BYTES_SENT_OFFSET + 8]);
    u64::from_ne_bytes(field)
}

/// `direct-io read|write PATH MIB BLOCK_KIB`: reads or writes MIB of PATH (a block device or
/// a file) in blocks of BLOCK_KIB with O_DIRECT (Windows: FILE_FLAG_NO_BUFFERING and
/// WRITE_THROUGH), so that the page cache neither serves nor absorbs it and every block
/// reaches the device while it is timed. `buffered-write` writes through the page cache and
/// then fsyncs, inside the timing: the writeback reaches the device as the kernel's flusher
/// does it. Prints `bytes=N operations=N seconds=S bytes_per_second=R operations_per_second=R`.
#[cfg(any(target_os = "linux", windows))]
mod direct_io {
    use std::alloc::{alloc_zeroed, Layout};
    use std::fs::OpenOptions;
    use std::io::{Read, Write};
    use std::path::Path;
    use std::time::Instant;

    #[cfg(target_os = "linux")]
    fn uncached(options: &mut OpenOptions) -> &mut OpenOptions {
        std::os::unix::fs::OpenOptionsExt::custom_flags(options, nix::libc::O_DIRECT)
    }

    #[cfg(windows)]
    fn uncached(options: &mut OpenOptions) -> &mut OpenOptions {
        use windows_sys::Win32::Storage::FileSystem::{FILE_FLAG_NO_BUFFERING, FILE_FLAG_WRITE_THROUGH};
        std::os::windows::fs::OpenOptionsExt::custom_flags(options, FILE_FLAG_NO_BUFFERING | FILE_FLAG_WRITE_THROUGH)
    }

    /// O_DIRECT wants the buffer, the offset and the length aligned to the logical block size;
    /// 4096 covers every device.
    const ALIGN: usize = 4096;

    pub fn run(direction: &str, path: &Path, mib: u64, block_kib: u64) {
        let block = (block_kib as usize * 1024).max(ALIGN);
        let total = mib as usize * 1024 * 1024;
        let layout = Layout::from_size_align(block, ALIGN).expect("block size");
        // SAFETY: the layout has a non-zero size; the memory lives until the process exits.
        let buffer = unsafe { std::slice::from_raw_parts_mut(alloc_zeroed(layout), block) };
        buffer.iter_mut().enumerate().for_each(|(i, b)| *b = i as u8);
        let mut options = OpenOptions::new();
        match direction {
            "read" => options.read(true),
            "write" | "buffered-write" => options.write(true).create(true),
            _ => super::usage(),
        };
        let buffered = direction == "buffered-write";
        if !buffered {
            uncached(&mut options);
        }
        let mut file = options.open(path).unwrap_or_else(|e| {
            eprintln!("workload: cannot open {} (buffered: {}): {}", path.display(), buffered, e);
            std::process::exit(1)
        });
        let (mut done, mut operations) = (0usize, 0u64);
        let started = Instant::now();
        while done < total {
            let result = match direction {
                "read" => file.read(buffer),
                _ => file.write(buffer),
            };
            match result {
                Ok(0) => break,
                Ok(n) => {
                    done += n;
                    operations += 1;
                }
                Err(e) => {
                    eprintln!("workload: {} {}: {}", direction, path.display(), e);
                    std::process::exit(1)
                }
            }
        }
        if buffered {
            if let Err(e) = file.sync_all() {
                eprintln!("workload: fsync {}: {}", path.display(), e);
                std::process::exit(1)
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "bytes={} operations={} seconds={:.3} bytes_per_second={:.0} operations_per_second={:.1}",
            done,
            operations,
            seconds,
            done as f64 / seconds,
            operations as f64 / seconds
        );
    }
}

/// What a sandboxed root workload tries, each probe reported on its own line.
#[cfg(target_os = "linux")]
mod sandbox_probe {
    use nix::libc;
    use std::io;

    /// BPF_PROG_QUERY, BPF_PROG_GET_FD_BY_ID and BPF_PROG_DETACH of every program attached to
    /// the group at `dir` where damon's network programs go (ingress, egress, connect, UDP
    /// send). `union bpf_attr` is written as u32 words: each command's fields are u32s but
    /// the query's array address, a u64 at word 4.
    /// This process's group in the cgroup2 hierarchy: at /sys/fs/cgroup/unified beside v1, else
    /// at /sys/fs/cgroup.
    fn own_cgroup2_dir() -> io::Result<String> {
        let own = std::fs::read_to_string("/proc/self/cgroup")?;
        let path = own.lines().find_map(|l| l.strip_prefix("0::")).unwrap_or("/");
        let mount = if std::path::Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists() {
            "/sys/fs/cgroup/unified"
        } else {
            "/sys/fs/cgroup"
        };
        Ok(format!("{}{}", mount, path))
    }

    fn bpf_detach(dir: &str) -> io::Result<()> {
        use std::os::unix::io::AsRawFd;
        const PROG_DETACH: libc::c_long = 9;
        const PROG_GET_FD_BY_ID: libc::c_long = 13;
        const PROG_QUERY: libc::c_long = 16;
        let bpf = |command: libc::c_long, attr: &mut [u32; 16]| {
            // SAFETY: bpf(2) with an attribute block of 64 bytes, large enough for these
            // commands, live for the call; the query's array address points into `ids` below.
            let fd = unsafe { libc::syscall(libc::SYS_bpf, command, attr.as_mut_ptr(), 64usize) };
            result(fd).map(|()| fd as i32)
        };
        let group = std::fs::File::open(dir)?;
        let mut detached = 0;
        for attach_type in [0u32, 1, 10, 11, 14, 15] {
            let mut ids = [0u32; 64];
            let mut attr = [0u32; 16];
            attr[0] = group.as_raw_fd() as u32;
            attr[1] = attach_type;
            let address = ids.as_mut_ptr() as u64;
            attr[4] = address as u32;
            attr[5] = (address >> 32) as u32;
            attr[6] = ids.len() as u32;
            bpf(PROG_QUERY, &mut attr)?;
            for &id in &ids[..attr[6] as usize] {
                let mut attr = [0u32; 16];
                attr[0] = id;
                let program = bpf(PROG_GET_FD_BY_ID, &mut attr)?;
                let mut attr = [0u32; 16];
                attr[0] = group.as_raw_fd() as u32;
                attr[1] = program as u32;
                attr[2] = attach_type;
                let detach = bpf(PROG_DETACH, &mut attr);
                let _ = nix::unistd::close(program);
                detach?;
                detached += 1;
            }
        }
        if detached == 0 {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no program attached"));
        }
        Ok(())
    }

    fn result(code: libc::c_long) -> io::Result<()> {
        if code == -1 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    fn probe(spec: &str) -> io::Result<()> {
        let (name, path) = spec.split_once(':').unwrap_or((spec, ""));
        let c_path = std::ffi::CString::new(path).expect("a path without NUL");
        match name {
            "escape" => std::fs::write(path, std::process::id().to_string()),
            "mount" => {
                // SAFETY: mount(2) with NUL-terminated strings alive for the call.
                result(
                    unsafe {
                        libc::mount(
                            b"none\0".as_ptr().cast(),
                            c_path.as_ptr(),
                            b"tmpfs\0".as_ptr().cast(),
                            0,
                            std::ptr::null(),
                        )
                    }
                    .into(),
                )?;
                // SAFETY: as above; undoes what a failing sandbox let through.
                unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH) };
                Ok(())
            }
            // SAFETY: unshare(2) with a flag; it changes only this process.
            "unshare-mount" => result(unsafe { libc::unshare(libc::CLONE_NEWNS) }.into()),
            // SAFETY: init_module(2) of an empty image: the kernel reads 0 bytes and refuses it,
            // unless the filter refuses the call first (EPERM).
            "init-module" => {
                result(unsafe { libc::syscall(libc::SYS_init_module, b"\0".as_ptr(), 0usize, b"\0".as_ptr()) })
            }
            "ptrace-parent" => {
                let parent = nix::unistd::getppid().as_raw();
                // SAFETY: ptrace(2) requests with integer arguments only.
                result(unsafe { libc::ptrace(libc::PTRACE_ATTACH, parent, 0usize, 0usize) })?;
                // SAFETY: as above; lets damon go on if a failing sandbox let the attach through.
                unsafe { libc::ptrace(libc::PTRACE_DETACH, parent, 0usize, 0usize) };
                Ok(())
            }
            // Signal 0 goes through the kernel's permission checks and delivers nothing.
            "signal-parent" => nix::sys::signal::kill(nix::unistd::getppid(), None).map_err(io::Error::from),
            // Signal 0 to the process with this pid (as the host numbers it: damon's, say).
            "signal" => {
                let pid = path.parse().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).map_err(io::Error::from)
            }
            // The file's metadata set to what it is: its mode, its owner, its times.
            "chmod" => {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(path)?.permissions().mode();
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            }
            "chown" => {
                use std::os::unix::fs::MetadataExt;
                let meta = std::fs::metadata(path)?;
                // SAFETY: chown(2) reads the NUL-terminated path alive for the call.
                result(unsafe { libc::chown(c_path.as_ptr(), meta.uid(), meta.gid()) }.into())
            }
            // SAFETY: utimensat(2) with no times sets both to now; it reads the path only.
            "utime" => result(unsafe { libc::utimensat(libc::AT_FDCWD, c_path.as_ptr(), std::ptr::null(), 0) }.into()),
            // Address randomization off (ADDR_NO_RANDOMIZE), then back to Linux's own.
            "personality-no-aslr" => {
                // SAFETY: personality(2) with an integer only.
                result(unsafe { libc::personality(0x0040000) }.into())?;
                // SAFETY: as above.
                unsafe { libc::personality(0) };
                Ok(())
            }
            // Reads the local descriptor table (x86_64: modify_ldt's function 0).
            #[cfg(target_arch = "x86_64")]
            "modify-ldt" => {
                let mut table = [0u8; 16];
                // SAFETY: modify_ldt(2) writes at most `table.len()` bytes into it.
                result(unsafe { libc::syscall(libc::SYS_modify_ldt, 0, table.as_mut_ptr(), table.len()) })
            }
            // A stream connection to the Unix socket at PATH (a root service's docker.sock, say).
            "connect" => std::os::unix::net::UnixStream::connect(path).map(drop),
            // A stream connection to the abstract Unix socket named PATH (no file: a root
            // service's D-Bus or containerd address, say).
            "connect-abstract" => {
                use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
                let address = UnixAddr::new_abstract(path.as_bytes()).map_err(io::Error::from)?;
                let fd = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)
                    .map_err(io::Error::from)?;
                let connected = connect(fd, &address).map_err(io::Error::from);
                let _ = nix::unistd::close(fd);
                connected
            }
            // A TCP connection to ADDR (2 s at most).
            "tcp" => {
                let address: std::net::SocketAddr = path.parse().expect("an IP address and port");
                std::net::TcpStream::connect_timeout(&address, std::time::Duration::from_secs(2)).map(drop)
            }
            // A UDP datagram to ADDR from an unconnected socket (sendto).
            "udp" => {
                let address: std::net::SocketAddr = path.parse().expect("an IP address and port");
                let any = if address.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
                std::net::UdpSocket::bind(any)?.send_to(b"probe", address).map(drop)
            }
            // A TCP listener, or a UDP socket, bound to ADDR.
            "bind" => std::net::TcpListener::bind(path).map(drop),
            "bind-udp" => std::net::UdpSocket::bind(path).map(drop),
            // Takes every cgroup BPF program off the workload's own group in the cgroup2
            // hierarchy, as a root workload would to lift its network rules.
            "bpf-detach" => bpf_detach(&own_cgroup2_dir()?),
            // Reads the parent's (damon's) open-file limit: prlimit64 on another process.
            "prlimit-parent" => prlimit(nix::unistd::getppid().as_raw()),
            "prlimit-self" => prlimit(0),
            // Sets the parent's (or its own) nice value to what it is: harmless, if allowed.
            "renice-parent" => renice(nix::unistd::getppid().as_raw() as libc::id_t),
            "renice-self" => renice(0),
            // Sets the parent's scheduling policy to what it is.
            "sched-parent" => {
                let parent = nix::unistd::getppid().as_raw();
                let mut param = sched_param(0);
                // The system calls themselves: musl's wrappers of these return ENOSYS.
                // SAFETY: sched_getscheduler(2), sched_getparam(2) and sched_setscheduler(2) on a
                // live sched_param of this frame.
                let policy = unsafe { libc::syscall(libc::SYS_sched_getscheduler, parent) };
                result(policy)?;
                // SAFETY: as above; the kernel writes one sched_param into `param`.
                result(unsafe { libc::syscall(libc::SYS_sched_getparam, parent, &mut param) })?;
                // SAFETY: as above; the kernel reads `param`.
                result(unsafe { libc::syscall(libc::SYS_sched_setscheduler, parent, policy, &param) })
            }
            // A real-time policy for itself, then back to the ordinary one.
            "realtime" => {
                let param = sched_param(1);
                // SAFETY: as above, on this process.
                result(unsafe { libc::syscall(libc::SYS_sched_setscheduler, 0, libc::SCHED_FIFO, &param) })?;
                let param = sched_param(0);
                // SAFETY: as above.
                result(unsafe { libc::syscall(libc::SYS_sched_setscheduler, 0, libc::SCHED_OTHER, &param) })
            }
            "packet-socket" => socket(libc::AF_PACKET, libc::SOCK_RAW),
            "inet-socket" => socket(libc::AF_INET, libc::SOCK_STREAM),
            // Sets the host's name to what it is.
            "sethostname" => {
                let mut name = [0u8; 65];
                // SAFETY: gethostname(2) writes at most 64 bytes and a NUL into `name`;
                // sethostname(2) reads `len` bytes of it.
                result(unsafe { libc::gethostname(name.as_mut_ptr().cast(), 64) }.into())?;
                let len = name.iter().position(|&b| b == 0).unwrap_or(64);
                // SAFETY: as above: `len` bytes of `name`, within it.
                result(unsafe { libc::sethostname(name.as_ptr().cast(), len as _) }.into())
            }
            // The id of the user keyring (root's: where its keys live).
            "keyring" => {
                // SAFETY: keyctl(2) KEYCTL_GET_KEYRING_ID (0) of KEY_SPEC_USER_KEYRING (-4),
                // integers only.
                result(unsafe { libc::syscall(libc::SYS_keyctl, 0, -4 as libc::c_long, 0) })
            }
            // SAFETY: userfaultfd(2) with a flag; the descriptor is closed at once.
            "userfaultfd" => descriptor(unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC) }),
            "io-uring" => {
                let mut params = [0u8; 120];
                // SAFETY: io_uring_setup(2) of one entry writes its 120-byte io_uring_params here.
                descriptor(unsafe { libc::syscall(libc::SYS_io_uring_setup, 1, params.as_mut_ptr()) })
            }
            // The size of the kernel's log buffer (syslog(2)'s SYSLOG_ACTION_SIZE_BUFFER).
            // SAFETY: klogctl with no buffer.
            "syslog" => result(unsafe { libc::klogctl(10, std::ptr::null_mut(), 0) }.into()),
            // Pushes a byte into stdin's terminal (the tests' stdin is /dev/null: ENOTTY when
            // the call itself is allowed).
            "tiocsti" => {
                let byte = b'x';
                // SAFETY: ioctl(2) TIOCSTI reads one byte of this frame.
                result(unsafe { libc::ioctl(0, libc::TIOCSTI as _, &byte) }.into())
            }
            // Whether it holds CAP_SYS_ADMIN, and runs without no_new_privs.
            "cap-sys-admin" => {
                status_says("CapEff:", |v| u64::from_str_radix(v, 16).map_or(false, |m| m & (1 << 21) != 0))
            }
            "no-new-privs-off" => status_says("NoNewPrivs:", |v| v == "0"),
            "write" => std::fs::write(path, "written by the workload"),
            "read" => std::fs::read(path).map(drop),
            "exec" => std::process::Command::new(path).arg("-c").arg("true").status().and_then(|s| match s.success() {
                true => Ok(()),
                false => Err(io::Error::new(io::ErrorKind::Other, format!("exited {}", s))),
            }),
            other => panic!("no probe {}", other),
        }
    }

    fn prlimit(pid: libc::pid_t) -> io::Result<()> {
        let mut old = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: prlimit64(2) reads no new limit (null) and writes the old one here.
        result(unsafe {
            libc::syscall(libc::SYS_prlimit64, pid, libc::RLIMIT_NOFILE, std::ptr::null::<libc::rlimit>(), &mut old)
        })
    }

    fn renice(who: libc::id_t) -> io::Result<()> {
        // SAFETY: getpriority(2) and setpriority(2), integers only; -1 may be a nice value, so
        // errno says whether the first failed.
        unsafe {
            *libc::__errno_location() = 0;
            let nice = libc::getpriority(libc::PRIO_PROCESS as _, who);
            if nice == -1 && *libc::__errno_location() != 0 {
                return Err(io::Error::last_os_error());
            }
            result(libc::setpriority(libc::PRIO_PROCESS as _, who, nice).into())
        }
    }

    /// A sched_param with this priority (musl's has more fields than glibc's, all 0 here).
    fn sched_param(priority: libc::c_int) -> libc::sched_param {
        // SAFETY: sched_param is plain integers, for which zero bytes are a valid value.
        let mut param: libc::sched_param = unsafe { std::mem::zeroed() };
        param.sched_priority = priority;
        param
    }

    fn socket(family: libc::c_int, kind: libc::c_int) -> io::Result<()> {
        // SAFETY: socket(2), integers only; the descriptor is closed at once.
        descriptor(unsafe { libc::socket(family, kind | libc::SOCK_CLOEXEC, 0) }.into())
    }

    fn descriptor(fd: libc::c_long) -> io::Result<()> {
        result(fd)?;
        let _ = nix::unistd::close(fd as libc::c_int);
        Ok(())
    }

    /// Ok if the line of /proc/self/status that starts with `key` satisfies `holds`.
    fn status_says(key: &str, holds: impl Fn(&str) -> bool) -> io::Result<()> {
        let status = std::fs::read_to_string("/proc/self/status")?;
        let value = status.lines().find_map(|l| l.strip_prefix(key)).unwrap_or_default().trim();
        if holds(value) {
            Ok(())
        } else {
            Err(io::Error::new(io::ErrorKind::Other, format!("{} {}", key, value)))
        }
    }

    pub fn run(probes: &[String]) {
        for spec in probes {
            match probe(spec) {
                Ok(()) => println!("{}: allowed", spec),
                Err(e) => println!("{}: denied: {}", spec, e),
            }
        }
    }
}
