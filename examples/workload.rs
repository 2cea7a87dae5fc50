//! A workload for damon's tests: a program that does one thing a real service might do,
//! chosen by its first argument. Not part of damon; built by `cargo test` with the tests.
//!
//!   exit N              exit with code N
//!   sleep SECS          sleep, then exit 0
//!   alloc MIB [SECS]    allocate and touch MIB MiB, hold it SECS (default: forever)
//!   burn SECS           busy-loop for SECS of wall time, then print "cpu_seconds=X wall_seconds=Y"
//!   env                 print the environment, one VAR=value per line
//!   wait-signals        print "ready", then the name of every SIGINT, SIGTERM, SIGHUP, SIGUSR1,
//!                       SIGUSR2 received; exit 0 after SIGINT or SIGTERM
//!   ignore-stop DIR     ignore stop signals, start a grandchild that calls setsid(); write
//!                       DIR/child.pid and DIR/grandchild.pid, then sleep forever
//!   daemon FILE         (the grandchild) setsid(), ignore stop signals, write FILE, sleep forever

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
        #[cfg(unix)]
        "wait-signals" => unix::wait_signals(),
        #[cfg(unix)]
        "ignore-stop" => unix::ignore_stop(Path::new(arg(1))),
        #[cfg(unix)]
        "daemon" => unix::daemon(Path::new(arg(1))),
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: workload exit N | sleep SECS | alloc MIB [SECS] | burn SECS | env | wait-signals | ignore-stop DIR"
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
fn cpu_seconds() -> f64 {
    use nix::sys::resource::{getrusage, UsageWho};
    let usage = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let seconds = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    seconds(usage.user_time()) + seconds(usage.system_time())
}

#[cfg(not(unix))]
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
        block(&STOP);
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
}
