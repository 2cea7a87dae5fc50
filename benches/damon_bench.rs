//! damon's benchmark driver: measures damon against what an operator would use instead, in the
//! same run on the same machine, and writes the figures, each beside its peer and its goal, as
//! a Markdown section. It is not a test: nothing passes or fails here. `scripts/bench` runs it on
//! the host and in the cgroup v2 VM (`scripts/bench-vm`) and writes BENCHMARKS.md.
//!
//!   damon_bench run --damon PATH --out FILE [--title TEXT] [--quick] [SECTION...]
//!       SECTION: launch, profile, stop, kill, density, cap, scrape, wine (default: all but wine)
//!       --wine-dir DIR: the directory holding damon.exe and workload.exe (section wine)
//!   damon_bench child MODE [ARGS]   a workload it starts, under damon or bare:
//!       ready               write "r" to stdout, then wait for a signal (SIGTERM ends it)
//!       tree N              ignore SIGTERM, become N processes, write "r", wait forever
//!       burn SECONDS N      spin N threads for SECONDS, print "cpu_seconds=C wall_seconds=W"
//!       run CMD [ARGS]      start CMD, wait for it, exit with its status: the least a supervisor does
//!       repeat N CMD [ARGS] run CMD N times, one after the other
//!       cgroup              print the first line of /proc/self/cgroup, read before anything else
//!
//! Every comparison runs its commands interleaved (one of each, round after round), so that the
//! load of a shared machine falls on all of them alike; figures are medians unless said.

#[cfg(target_os = "linux")]
fn main() {
    linux::main()
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("damon_bench runs on Linux only (Windows is measured under Wine from Linux)");
    std::process::exit(2);
}

/// A loop device for the IO-limited launch: a rule on the host's own disk would switch v1's
/// blk-throttle counting on there for good, and every later launch would join blkio.
#[cfg(target_os = "linux")]
#[path = "../tests/common/loop_device.rs"]
mod loop_device;

#[cfg(target_os = "linux")]
mod linux {
    use std::ffi::OsString;
    use std::fmt::Write as _;
    use std::fs::{self, File, OpenOptions};
    use std::io::{self, Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::os::unix::io::{AsRawFd, FromRawFd, RawFd};
    use std::os::unix::process::CommandExt;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use nix::sys::resource::{getrusage, UsageWho};
    use nix::sys::signal::{kill, signal, SigHandler, Signal};
    use nix::unistd::Pid;

    const MOUNT: &str = "/sys/fs/cgroup";

    pub fn main() {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let result = match args.first().map(String::as_str) {
            Some("child") => child(&args[1..]),
            Some("run") => Options::parse(&args[1..]).and_then(|o| run(&o)),
            _ => Err(usage()),
        };
        if let Err(e) = result {
            eprintln!("damon_bench: {}", e);
            std::process::exit(1);
        }
    }

    fn usage() -> String {
        "usage: damon_bench run --damon PATH --out FILE [--title TEXT] [--quick] [--emulated] [--wine-dir DIR] [SECTION...] \
         | damon_bench child MODE [ARGS]"
            .to_string()
    }

    type Result<T> = std::result::Result<T, String>;

    fn context<E: std::fmt::Display>(what: impl Fn() -> String) -> impl FnOnce(E) -> String {
        move |e| format!("{}: {}", what(), e)
    }

    // ---------------------------------------------------------------- the workloads

    fn child(args: &[String]) -> Result<()> {
        let number = |i: usize| -> Result<u64> {
            args.get(i).and_then(|s| s.parse().ok()).ok_or_else(|| format!("child {:?}: bad arguments", args))
        };
        match args.first().map(String::as_str) {
            Some("ready") => {
                ready();
                wait_forever()
            }
            // A tree of N processes waiting for a signal; "tree" ignores SIGTERM, so that only a
            // kill ends it, "obedient-tree" ends at it, as a service does.
            Some(mode @ ("tree" | "obedient-tree")) => {
                let n = number(1)?;
                if mode == "tree" {
                    // SAFETY: SIG_IGN installs no handler; inherited by every process forked below.
                    unsafe { signal(Signal::SIGTERM, SigHandler::SigIgn) }.map_err(|e| e.to_string())?;
                }
                for _ in 1..n {
                    // SAFETY: this process has one thread; the child only waits for a signal.
                    match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {}", e))? {
                        nix::unistd::ForkResult::Child => wait_forever(),
                        nix::unistd::ForkResult::Parent { .. } => {}
                    }
                }
                ready();
                wait_forever()
            }
            Some("burn") => {
                burn(Duration::from_secs(number(1)?), number(2)? as usize);
                Ok(())
            }
            Some("run") => {
                // A supervisor that does nothing: start the command, wait, pass its status on.
                let status = Command::new(args.get(1).ok_or("child run: no command")?)
                    .args(&args[2..])
                    .status()
                    .map_err(|e| format!("child run: {}", e))?;
                std::process::exit(status.code().unwrap_or(128));
            }
            Some("repeat") => {
                // Runs a command N times, for a profiler that follows one process tree.
                let times = number(1)?;
                for _ in 0..times {
                    Command::new(args.get(2).ok_or("child repeat: no command")?)
                        .args(&args[3..])
                        .stdout(Stdio::null())
                        .status()
                        .map_err(|e| format!("child repeat: {}", e))?;
                }
                Ok(())
            }
            Some("floor") => floor(&args[1..]),
            Some("time") => {
                // "time RUNS LOG_DIR CMD... [-- CMD...]": the commands timed as the launch section
                // times them, one line each: median wall time and mean CPU, in seconds.
                let runs = number(1)? as usize;
                let log_dir = Path::new(args.get(2).ok_or("child time: no log directory")?);
                let starts: Vec<Start> = args[3..]
                    .split(|a| a == "--")
                    .map(|argv| Start::Plain(argv.iter().map(OsString::from).collect()))
                    .collect();
                for t in time_runs(&starts, log_dir, 10, runs)? {
                    if let Some(failure) = t.failures.first() {
                        return Err(failure.clone());
                    }
                    println!("{} {}", median(&t.wall), mean(&t.cpu));
                }
                Ok(())
            }
            Some("send") => {
                // "send ADDR BYTES": connect, send BYTES zero bytes, close.
                let mut stream = TcpStream::connect(args.get(1).ok_or("child send: no address")?.as_str())
                    .map_err(|e| format!("child send: {}", e))?;
                let chunk = vec![0u8; 1 << 20];
                let mut left = number(2)? as usize;
                while left > 0 {
                    let n = left.min(chunk.len());
                    stream.write_all(&chunk[..n]).map_err(|e| format!("child send: {}", e))?;
                    left -= n;
                }
                Ok(())
            }
            Some("cgroup") => {
                // First thing: where the process runs from its first instruction on.
                let line = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
                println!("{}", line.lines().next().unwrap_or(""));
                Ok(())
            }
            _ => Err(format!("unknown child mode {:?}", args)),
        }
    }

    fn ready() {
        let mut out = io::stdout();
        let _ = out.write_all(b"r");
        let _ = out.flush();
    }

    fn wait_forever() -> ! {
        loop {
            nix::unistd::pause();
        }
    }

    fn burn(wall: Duration, threads: usize) {
        let start = Instant::now();
        let spin = move || {
            let mut x: u64 = 0;
            while start.elapsed() < wall {
                for i in 0..20_000u64 {
                    x = x.wrapping_mul(31).wrapping_add(i);
                }
            }
            x
        };
        let handles: Vec<_> = (0..threads).map(|_| std::thread::spawn(spin)).collect();
        let sum: u64 = handles.into_iter().map(|h| h.join().unwrap_or(0)).fold(0, u64::wrapping_add);
        let usage = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
        let cpu = seconds(usage.user_time()) + seconds(usage.system_time());
        println!("cpu_seconds={:.4} wall_seconds={:.4} ({})", cpu, start.elapsed().as_secs_f64(), sum % 2);
    }

    fn seconds(t: nix::sys::time::TimeVal) -> f64 {
        t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6
    }

    // ---------------------------------------------------------------- options and environment

    struct Options {
        damon: PathBuf,
        out: PathBuf,
        title: String,
        quick: bool,
        /// A machine of its own under QEMU's TCG (scripts/bench-vm), whose kernel settings the
        /// driver may change for a while.
        emulated: bool,
        wine_dir: Option<PathBuf>,
        sections: Vec<String>,
    }

    const SECTIONS: [&str; 9] = ["launch", "profile", "stop", "kill", "density", "cap", "scrape", "network", "wine"];

    impl Options {
        fn parse(args: &[String]) -> Result<Options> {
            let mut damon = None;
            let mut out = None;
            let mut title = String::from("this machine");
            let mut quick = false;
            let mut emulated = false;
            let mut wine_dir = None;
            let mut sections = Vec::new();
            let mut args = args.iter();
            while let Some(arg) = args.next() {
                let mut value = || args.next().cloned().ok_or_else(|| format!("{} needs a value", arg));
                match arg.as_str() {
                    "--damon" => damon = Some(PathBuf::from(value()?)),
                    "--out" => out = Some(PathBuf::from(value()?)),
                    "--title" => title = value()?,
                    "--wine-dir" => wine_dir = Some(PathBuf::from(value()?)),
                    "--quick" => quick = true,
                    "--emulated" => emulated = true,
                    s if SECTIONS.contains(&s) => sections.push(s.to_string()),
                    other => return Err(format!("unknown argument {:?}; {}", other, usage())),
                }
            }
            if sections.is_empty() {
                sections = SECTIONS.iter().filter(|s| **s != "wine").map(|s| s.to_string()).collect();
            }
            let damon = damon.ok_or_else(usage)?;
            let damon = fs::canonicalize(&damon).map_err(context(|| format!("--damon {}", damon.display())))?;
            Ok(Options { damon, out: out.ok_or_else(usage)?, title, quick, emulated, wine_dir, sections })
        }
    }

    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    enum Version {
        V1,
        V2,
    }

    /// What the run needs to know about where it runs.
    struct Env {
        damon: PathBuf,
        me: PathBuf,
        version: Version,
        cpus: u64,
        mhz_per_core: u64,
        work: PathBuf,
        quick: bool,
        emulated: bool,
    }

    impl Env {
        /// damon with a clean environment (no DAMON_* or NOMAD_* of the caller), logging into
        /// the work directory, its output discarded.
        fn damon(&self, args: &[&str]) -> Vec<OsString> {
            let mut argv = vec![self.damon.clone().into_os_string()];
            argv.extend(args.iter().map(OsString::from));
            argv
        }

        fn me(&self, args: &[&str]) -> Vec<OsString> {
            let mut argv = vec![self.me.clone().into_os_string(), OsString::from("child")];
            argv.extend(args.iter().map(OsString::from));
            argv
        }

        fn runs(&self, full: usize, quick: usize) -> usize {
            if self.quick {
                quick
            } else {
                full
            }
        }
    }

    fn command(argv: &[OsString], log_dir: &Path) -> Command {
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]);
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            if k.starts_with("DAMON_") || k.starts_with("NOMAD_") {
                cmd.env_remove(&key);
            }
        }
        cmd.env("DAMON_LOG_DIR", log_dir).current_dir(log_dir);
        cmd
    }

    fn read_trimmed(path: impl AsRef<Path>) -> String {
        fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_default()
    }

    fn loadavg() -> String {
        read_trimmed("/proc/loadavg").split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    }

    fn detect(options: &Options) -> Result<Env> {
        let mounts = fs::read_to_string("/proc/self/mounts").map_err(|e| e.to_string())?;
        let v2_memory = read_trimmed(Path::new(MOUNT).join("cgroup.controllers")).split(' ').any(|c| c == "memory");
        let version = if v2_memory && mounts.lines().any(|l| l.split(' ').nth(1) == Some(MOUNT)) {
            Version::V2
        } else {
            Version::V1
        };
        // The MHz damon itself uses for its CPU caps, from `damon --check`.
        let check = Command::new(&options.damon)
            .arg("--check")
            .output()
            .map_err(context(|| format!("{} --check", options.damon.display())))?;
        let text = String::from_utf8_lossy(&check.stdout);
        let fact = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l[name.len()..].split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        };
        let mhz_per_core =
            fact("MHz per core:").ok_or_else(|| format!("no MHz per core in damon --check:\n{}", text))?;
        let cpus = fact("online CPUs:").unwrap_or(1);
        let work = std::env::temp_dir().join(format!("damon-bench-{}", std::process::id()));
        fs::create_dir_all(&work).map_err(|e| e.to_string())?;
        Ok(Env {
            damon: options.damon.clone(),
            me: std::env::current_exe().map_err(|e| e.to_string())?,
            version,
            cpus,
            mhz_per_core,
            work,
            quick: options.quick,
            emulated: options.emulated,
        })
    }

    // ---------------------------------------------------------------- statistics and output

    fn median(values: &[f64]) -> f64 {
        percentile(values, 0.5)
    }

    fn percentile(values: &[f64], p: f64) -> f64 {
        if values.is_empty() {
            return f64::NAN;
        }
        let mut v = values.to_vec();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        let rank = p * (v.len() - 1) as f64;
        let (low, high) = (rank.floor() as usize, rank.ceil() as usize);
        v[low] + (v[high] - v[low]) * (rank - low as f64)
    }

    fn mean(values: &[f64]) -> f64 {
        values.iter().sum::<f64>() / values.len().max(1) as f64
    }

    fn ms(seconds: f64) -> String {
        if seconds.is_nan() {
            "n/a".to_string()
        } else if seconds >= 1.0 {
            format!("{:.2} s", seconds)
        } else if seconds >= 0.1 {
            format!("{:.0} ms", seconds * 1e3)
        } else {
            format!("{:.2} ms", seconds * 1e3)
        }
    }

    fn ratio(a: f64, b: f64) -> String {
        format!("{:.2}x", a / b)
    }

    fn verdict(met: bool) -> &'static str {
        if met {
            "**met**"
        } else {
            "not met"
        }
    }

    /// One environment's section of BENCHMARKS.md: details per measurement, then the goals.
    struct Report {
        body: String,
        goals: Vec<[String; 5]>,
    }

    impl Report {
        fn goal(&mut self, goal: &str, figure: String, peer: String, target: &str, met: Option<bool>) {
            let met = match met {
                Some(m) => verdict(m).to_string(),
                None => "(no goal: reported)".to_string(),
            };
            self.goals.push([goal.to_string(), figure, peer, target.to_string(), met]);
        }
        fn line(&mut self, text: impl AsRef<str>) {
            self.body.push_str(text.as_ref());
            self.body.push('\n');
        }
    }

    fn run(options: &Options) -> Result<()> {
        let env = detect(options)?;
        let started = Instant::now();
        let load_before = loadavg();
        let mut report = Report { body: String::new(), goals: Vec::new() };
        for section in &options.sections {
            eprintln!("damon_bench: {} ({})", section, options.title);
            let result = match section.as_str() {
                "launch" => launch(&env, &mut report),
                "profile" => profile(&env, &mut report),
                "stop" => stop(&env, &mut report),
                "kill" => kill_trees(&env, &mut report),
                "density" => density(&env, &mut report),
                "cap" => cap(&env, &mut report),
                "scrape" => scrape(&env, &mut report),
                "network" => network_throughput(&env, &mut report),
                "wine" => match &options.wine_dir {
                    Some(dir) => wine(&env, dir, &mut report),
                    None => Err("the wine section needs --wine-dir".to_string()),
                },
                _ => unreachable!("checked by Options::parse"),
            };
            if let Err(e) = result {
                report.line(format!("\n**{}: failed: {}**\n", section, e));
                eprintln!("damon_bench: {}: failed: {}", section, e);
            }
        }
        let _ = fs::remove_dir_all(&env.work);
        let mut out = String::new();
        let _ = writeln!(out, "## {}\n", options.title);
        let _ = writeln!(
            out,
            "Kernel {}, cgroup {}, {} CPUs, {} MHz per core (as damon reads it); load average {} at the start, {} at \
             the end ({:.0} s).\n",
            read_trimmed("/proc/sys/kernel/osrelease"),
            if env.version == Version::V2 { "v2" } else { "v1" },
            env.cpus,
            env.mhz_per_core,
            load_before,
            loadavg(),
            started.elapsed().as_secs_f64()
        );
        if !report.goals.is_empty() {
            out.push_str("| goal | damon | peer | target | |\n|---|---|---|---|---|\n");
            for [goal, figure, peer, target, met] in &report.goals {
                let _ = writeln!(out, "| {} | {} | {} | {} | {} |", goal, figure, peer, target, met);
            }
            out.push('\n');
        }
        out.push_str(&report.body);
        fs::write(&options.out, out).map_err(context(|| format!("write {}", options.out.display())))
    }

    // ---------------------------------------------------------------- starting commands

    /// How a measured command is started.
    #[derive(Clone)]
    enum Start {
        /// As a shell would (posix_spawn).
        Plain(Vec<OsString>),
        /// As Nomad's raw_exec starts a task: from its task directory, with the Nomad
        /// directories in the environment.
        InTask(Vec<(&'static str, PathBuf)>, PathBuf, Vec<OsString>),
        /// Forked, written into the groups whose cgroup.procs are given, then exec'd: what
        /// cgexec does, without cgexec's own start-up.
        Join(Vec<PathBuf>, Vec<OsString>),
    }

    impl Start {
        fn command(&self, log_dir: &Path) -> Result<(Command, Vec<File>)> {
            match self {
                Start::Plain(argv) => Ok((command(argv, log_dir), Vec::new())),
                Start::InTask(vars, task_dir, argv) => {
                    let mut cmd = command(argv, log_dir);
                    cmd.current_dir(task_dir).envs(vars.iter().map(|(k, v)| (k, v)));
                    Ok((cmd, Vec::new()))
                }
                Start::Join(procs, argv) => {
                    let files: Vec<File> = procs
                        .iter()
                        .map(|p| {
                            OpenOptions::new().write(true).open(p).map_err(context(|| format!("open {}", p.display())))
                        })
                        .collect::<Result<_>>()?;
                    let fds: Vec<RawFd> = files.iter().map(File::as_raw_fd).collect();
                    let mut cmd = command(argv, log_dir);
                    // SAFETY: between fork and exec the closure only calls write(2), which is
                    // async-signal-safe, on descriptors kept open by `files` until the spawn returns.
                    unsafe {
                        cmd.pre_exec(move || {
                            for fd in &fds {
                                nix::unistd::write(*fd, b"0").map_err(|e| io::Error::from_raw_os_error(e as i32))?;
                            }
                            Ok(())
                        });
                    }
                    Ok((cmd, files))
                }
            }
        }

        fn spawn(&self, log_dir: &Path, stdout: Stdio) -> Result<Child> {
            let (mut cmd, _files) = self.command(log_dir)?;
            cmd.stdin(Stdio::null()).stdout(stdout).stderr(Stdio::null());
            cmd.spawn().map_err(context(|| format!("start {}", self.describe())))
        }

        fn describe(&self) -> String {
            let argv = match self {
                Start::Plain(argv) | Start::Join(_, argv) | Start::InTask(_, _, argv) => argv,
            };
            argv.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ")
        }
    }

    /// A task's directories as a Nomad client lays them out under its data directory (the
    /// Linux packages' `/opt/nomad/data`, not under /tmp, which the sandbox hides): the task
    /// directory with `local`, `secrets` (a tmpfs, as Nomad mounts it) and `tmp` (its TMPDIR),
    /// and the allocation's shared `alloc`. Removed when dropped.
    struct NomadTask {
        data_dir: PathBuf,
        task_dir: PathBuf,
    }

    impl NomadTask {
        fn new() -> Result<NomadTask> {
            let data_dir = PathBuf::from(format!("/opt/damon-bench-{}", std::process::id()));
            let alloc = data_dir.join("data/alloc/5fc1a1d6-bench");
            let task_dir = alloc.join("web");
            for dir in
                [alloc.join("alloc/logs"), task_dir.join("local"), task_dir.join("secrets"), task_dir.join("tmp")]
            {
                fs::create_dir_all(&dir).map_err(context(|| format!("mkdir {}", dir.display())))?;
            }
            let task = NomadTask { data_dir, task_dir };
            let secrets = task.task_dir.join("secrets");
            let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"]).arg(&secrets).status();
            match mounted {
                Ok(status) if status.success() => Ok(task),
                other => Err(format!("mount a tmpfs on {}: {:?}", secrets.display(), other)),
            }
        }

        fn start(&self, argv: Vec<OsString>) -> Start {
            let alloc_dir = self.task_dir.parent().map(|a| a.join("alloc")).unwrap_or_default();
            let vars = vec![
                ("NOMAD_TASK_DIR", self.task_dir.join("local")),
                ("NOMAD_SECRETS_DIR", self.task_dir.join("secrets")),
                ("NOMAD_ALLOC_DIR", alloc_dir),
            ];
            Start::InTask(vars, self.task_dir.clone(), argv)
        }
    }

    impl Drop for NomadTask {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.task_dir.join("secrets")).status();
            let _ = fs::remove_dir_all(&self.data_dir);
        }
    }

    /// A group made beforehand, as an operator would with cgcreate, removed when dropped.
    struct ReadyGroup {
        dirs: Vec<PathBuf>,
    }

    impl ReadyGroup {
        fn new(env: &Env, name: &str) -> Result<ReadyGroup> {
            let dirs: Vec<PathBuf> = match env.version {
                Version::V2 => vec![Path::new(MOUNT).join(name)],
                Version::V1 => ["memory", "cpu"].iter().map(|c| Path::new(MOUNT).join(c).join(name)).collect(),
            };
            for dir in &dirs {
                let _ = fs::remove_dir(dir);
                fs::create_dir(dir).map_err(context(|| format!("mkdir {}", dir.display())))?;
            }
            Ok(ReadyGroup { dirs })
        }

        fn procs(&self) -> Vec<PathBuf> {
            self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
        }

        /// Caps the group at one core (100 ms of CPU per 100 ms period).
        fn cap_to_one_core(&self) -> Result<()> {
            for dir in &self.dirs {
                for (file, value) in [("cpu.max", "100000 100000"), ("cpu.cfs_quota_us", "100000")] {
                    let path = dir.join(file);
                    if path.exists() {
                        fs::write(&path, value).map_err(context(|| format!("write {}", path.display())))?;
                    }
                }
            }
            Ok(())
        }

        /// The cgexec argument naming this group.
        fn cgexec_spec(&self) -> String {
            let name = self.dirs[0].file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            format!("memory,cpu:{}", name)
        }
    }

    impl Drop for ReadyGroup {
        fn drop(&mut self) {
            for dir in &self.dirs {
                let deadline = Instant::now() + Duration::from_secs(5);
                while fs::remove_dir(dir).is_err() && dir.exists() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }

    fn has_cgexec() -> bool {
        Command::new("cgexec").arg("-h").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
    }

    /// CPU time (user + system) of every child reaped so far.
    fn children_cpu() -> f64 {
        getrusage(UsageWho::RUSAGE_CHILDREN).map_or(0.0, |u| seconds(u.user_time()) + seconds(u.system_time()))
    }

    struct Timing {
        wall: Vec<f64>,
        cpu: Vec<f64>,
        failures: Vec<String>,
    }

    /// Runs each command `runs` times, interleaved, after `warmup` rounds; wall and CPU time per run.
    fn time_runs(starts: &[Start], log_dir: &Path, warmup: usize, runs: usize) -> Result<Vec<Timing>> {
        let mut timings: Vec<Timing> =
            starts.iter().map(|_| Timing { wall: Vec::new(), cpu: Vec::new(), failures: Vec::new() }).collect();
        for round in 0..warmup + runs {
            for (start, timing) in starts.iter().zip(timings.iter_mut()) {
                let (mut cmd, files) = start.command(log_dir)?;
                cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
                let cpu_before = children_cpu();
                let t0 = Instant::now();
                let status = cmd.status().map_err(context(|| format!("run {}", start.describe())))?;
                let wall = t0.elapsed().as_secs_f64();
                let cpu = children_cpu() - cpu_before;
                drop(files);
                if !status.success() {
                    timing.failures.push(format!("{}: {}", start.describe(), status));
                } else if round >= warmup {
                    timing.wall.push(wall);
                    timing.cpu.push(cpu);
                }
            }
        }
        Ok(timings)
    }

    // ---------------------------------------------------------------- 1-3: launch

    /// The kernel's part of a launch with limits, and nothing else: a group of its own in each
    /// hierarchy under `parents` (the ones damon uses), damon's memory and CPU limits written,
    /// /bin/true started in them as damon starts its child (v1: forked, written into every
    /// group and exec'd; v2: born in its group by clone3), waited for, the groups removed. No
    /// guard, no log, no configuration: the floor that damon's launch is measured against.
    fn floor(parents: &[String]) -> Result<()> {
        let name = format!("damon-bench-floor-{}", std::process::id());
        let dirs: Vec<PathBuf> = parents.iter().map(|p| Path::new(p).join(&name)).collect();
        for dir in &dirs {
            fs::create_dir(dir).map_err(context(|| format!("mkdir {}", dir.display())))?;
            // 64 MiB and 500 MHz of a 2,600 MHz core, as the damon run is given.
            for (file, value) in [
                ("memory.max", "67108864"),
                ("cpu.max", "19230 100000"),
                ("memory.limit_in_bytes", "67108864"),
                ("cpu.cfs_quota_us", "19230"),
            ] {
                let path = dir.join(file);
                if path.exists() {
                    fs::write(&path, value).map_err(context(|| format!("write {}", path.display())))?;
                }
            }
        }
        let code = match dirs.as_slice() {
            // cgroup v2, as damon starts its child there: born in the group, no process moved.
            [group] if group.join("cgroup.type").exists() => born_in(group)?,
            _ => {
                let procs: Vec<PathBuf> = dirs.iter().map(|d| d.join("cgroup.procs")).collect();
                let (status, _files) = Start::Join(procs, vec![OsString::from("/bin/true")])
                    .command(Path::new("/"))
                    .and_then(|(mut cmd, files)| Ok((cmd.status().map_err(|e| e.to_string())?, files)))?;
                status.code().unwrap_or(128)
            }
        };
        for dir in &dirs {
            fs::remove_dir(dir).map_err(context(|| format!("rmdir {}", dir.display())))?;
        }
        std::process::exit(code);
    }

    /// Runs /bin/true born in the cgroup v2 group `dir`, with clone3 and CLONE_INTO_CGROUP as
    /// damon starts its child, and returns its exit code. The child gets a copy of this process
    /// (damon's shares its memory until the exec), which is no part of the kernel's cgroup work.
    fn born_in(dir: &Path) -> Result<i32> {
        const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
        let group = File::open(dir).map_err(context(|| format!("open {}", dir.display())))?;
        let program = std::ffi::CString::new("/bin/true").map_err(|e| e.to_string())?;
        let argv = [program.as_ptr(), std::ptr::null()];
        let envp = [std::ptr::null()];
        let mut args = nix::libc::clone_args {
            flags: CLONE_INTO_CGROUP,
            pidfd: 0,
            child_tid: 0,
            parent_tid: 0,
            exit_signal: nix::libc::SIGCHLD as u64,
            stack: 0,
            stack_size: 0,
            tls: 0,
            set_tid: 0,
            set_tid_size: 0,
            cgroup: group.as_raw_fd() as u64,
        };
        // SAFETY: clone3 reads a live struct clone_args of the size given. Without CLONE_VM the child
        // has its own copy of this single-threaded process, and calls only execve and _exit,
        // which are async-signal-safe, on data prepared before the clone.
        let pid = unsafe {
            let pid = nix::libc::syscall(
                nix::libc::SYS_clone3,
                &mut args as *mut nix::libc::clone_args,
                std::mem::size_of::<nix::libc::clone_args>(),
            );
            if pid == 0 {
                nix::libc::execve(program.as_ptr(), argv.as_ptr(), envp.as_ptr());
                nix::libc::_exit(127);
            }
            pid
        };
        if pid < 0 {
            return Err(format!("clone3 into {}: {}", dir.display(), io::Error::last_os_error()));
        }
        match nix::sys::wait::waitpid(Pid::from_raw(pid as i32), None) {
            Ok(nix::sys::wait::WaitStatus::Exited(_, code)) => Ok(code),
            other => Err(format!("/bin/true born in {}: {:?}", dir.display(), other)),
        }
    }

    /// The hierarchies damon makes a group in without a process limit, as in the launch runs:
    /// on v1 each mounted one of memory, cpu, cpuacct, freezer and blkio (co-mounted ones once;
    /// pids is joined only with a limit, blkio only where blk-throttle counts on some device,
    /// which its root's statistics show by a row per device); on v2 the root, where the
    /// controllers are on.
    fn damon_hierarchies(version: Version) -> Vec<String> {
        if version == Version::V2 {
            return vec![MOUNT.to_string()];
        }
        let root_stats = fs::read_to_string(Path::new(MOUNT).join("blkio/blkio.throttle.io_service_bytes"));
        let blk_throttle_counts =
            root_stats.unwrap_or_default().lines().any(|l| !l.is_empty() && !l.starts_with("Total "));
        let mut seen: Vec<PathBuf> = Vec::new();
        for controller in ["memory", "cpu", "cpuacct", "freezer", "blkio"] {
            if controller == "blkio" && !blk_throttle_counts {
                continue;
            }
            if let Ok(real) = fs::canonicalize(Path::new(MOUNT).join(controller)) {
                if !seen.contains(&real) {
                    seen.push(real);
                }
            }
        }
        seen.iter().map(|p| p.to_string_lossy().into_owned()).collect()
    }

    fn launch(env: &Env, report: &mut Report) -> Result<()> {
        let runs = env.runs(300, 30);
        let log_dir = env.work.join("launch");
        fs::create_dir_all(&log_dir).map_err(|e| e.to_string())?;
        let group = ReadyGroup::new(env, "damon-bench-ready")?;
        let truth = OsString::from("/bin/true");
        // damon with the memory and CPU limits of every damon row, and `settings`.
        let limited_argv = |settings: &[&str]| {
            let mut args = vec!["--memory-limit", "64", "--cpu-limit", "500"];
            args.extend_from_slice(settings);
            args.push("/bin/true");
            env.damon(&args)
        };
        let limited = |settings: &[&str]| Start::Plain(limited_argv(settings));
        let mut labels = vec!["bare `/bin/true`", "damon, memory and CPU limits"];
        let mut starts = vec![Start::Plain(vec![truth.clone()]), limited(&[])];
        let cgexec = env.version == Version::V1 && has_cgexec();
        if cgexec {
            labels.push("`cgexec -g memory,cpu:G` into a ready-made group");
            starts.push(Start::Plain(vec!["cgexec".into(), "-g".into(), group.cgexec_spec().into(), truth.clone()]));
        }
        labels.push("fork, join a ready-made group, exec (cgexec without its own start-up)");
        starts.push(Start::Join(group.procs(), vec![truth.clone()]));
        labels.push("a supervisor that does nothing: a static binary that starts `/bin/true` and waits");
        starts.push(Start::Plain(env.me(&["run", "/bin/true"])));
        let floor_row = labels.len();
        labels.push(
            "the kernel's part alone: damon's groups made and limited, `/bin/true` started in them as damon \
             starts its child (v1: joined before its exec; v2: born there) and run, the groups removed (no \
             guard, no log)",
        );
        let hierarchies = damon_hierarchies(env.version);
        let mut floor_args = vec!["floor"];
        floor_args.extend(hierarchies.iter().map(String::as_str));
        starts.push(Start::Plain(env.me(&floor_args)));
        // Last, so that the rows above keep their places.
        let sandbox_row = labels.len();
        labels.push(
            "damon, memory and CPU limits, `--sandbox Y` (Landlock domain, seccomp filter, capabilities, mount and \
             IPC namespaces; the default paths), from a working directory under /tmp (which the sandbox hides: it \
             is mounted back)",
        );
        starts.push(limited(&["--sandbox", "Y"]));
        let task = NomadTask::new()?;
        let task_row = labels.len();
        labels.push(
            "damon, memory and CPU limits, started as Nomad's raw_exec starts a task: from the task directory under \
             /opt/…/data/alloc, with NOMAD_TASK_DIR, NOMAD_ALLOC_DIR and NOMAD_SECRETS_DIR (a tmpfs)",
        );
        starts.push(task.start(limited_argv(&[])));
        labels
            .push("the same, `--sandbox Y` (its default paths write the three Nomad directories and the task's `tmp`)");
        starts.push(task.start(limited_argv(&["--sandbox", "Y"])));
        // Where the loop driver is (not in the benchmark's VM, which has no modules).
        let io_device =
            if Path::new("/dev/loop-control").exists() { Some(crate::loop_device::LoopDevice::new(4)) } else { None };
        let io_row = io_device.as_ref().map(|device| {
            labels
                .push("damon, memory and CPU limits, `--io-read-bandwidth 100M --io-write-iops 1000` on a loop device");
            let path = device.path().display().to_string();
            starts.push(limited(&["--io-read-bandwidth", "100M", "--io-write-iops", "1000", "--io-devices", &path]));
            labels.len() - 1
        });
        let accounting_off_row = labels.len();
        labels.push("damon, memory and CPU limits, `--network-accounting N` (no cgroup BPF)");
        starts.push(limited(&["--network-accounting", "N"]));
        let ip_row = labels.len();
        labels.push(
            "damon, memory and CPU limits, `--ip-deny` of 100 prefixes of one length (a hash set, connect programs)",
        );
        let hundred_prefixes = hundred_prefixes();
        starts.push(limited(&["--ip-deny", &hundred_prefixes]));
        let trie_row = labels.len();
        labels.push("damon, memory and CPU limits, `--ip-deny` of 100 prefixes of 20 lengths (an LPM trie)");
        let hundred_prefixes_of_many_lengths = hundred_prefixes_of_many_lengths();
        starts.push(limited(&["--ip-deny", &hundred_prefixes_of_many_lengths]));
        let timings = time_runs(&starts, &log_dir, 10, runs)?;
        drop(io_device);
        drop(task);

        report.line(format!(
            "\n### Launch: `/bin/true`, {} runs of each, interleaved\n\nWall time from spawn to exit as the \
             starting process sees it; CPU is user + system of the whole run (the command and everything it \
             started), from getrusage(RUSAGE_CHILDREN).\n",
            runs
        ));
        report.line("| run | median | mean | p90 | CPU per run (mean) | median vs bare |\n|---|---|---|---|---|---|");
        let bare = median(&timings[0].wall);
        for (label, t) in labels.iter().zip(&timings) {
            report.line(format!(
                "| {} | {} | {} | {} | {} | {} |",
                label,
                ms(median(&t.wall)),
                ms(mean(&t.wall)),
                ms(percentile(&t.wall, 0.9)),
                ms(mean(&t.cpu)),
                ratio(median(&t.wall), bare)
            ));
        }
        for t in &timings {
            if let Some(first) = t.failures.first() {
                report.line(format!("\n{} failed runs, e.g. {}", t.failures.len(), first));
            }
        }
        let damon = median(&timings[1].wall);
        let own_cpu = mean(&timings[1].cpu) - mean(&timings[0].cpu);
        let floor = &timings[floor_row];
        report.line(format!(
            "\nThe kernel's part ({} hierarch{}: {}) takes {} of wall time and {} of CPU per run: damon adds \
             {} and {} to it (its guard, its configuration and log, its reads of the host and of the \
             group's totals).",
            hierarchies.len(),
            if hierarchies.len() == 1 { "y" } else { "ies" },
            hierarchies.join(", "),
            ms(median(&floor.wall)),
            ms(mean(&floor.cpu)),
            ms(damon - median(&floor.wall)),
            ms(mean(&timings[1].cpu) - mean(&floor.cpu)),
        ));
        match env.version {
            Version::V2 => report.goal(
                "1. launch on cgroup v2 (median)",
                ms(damon),
                format!("bare {}", ms(bare)),
                "≤ 1.5x bare",
                Some(damon <= 1.5 * bare),
            ),
            Version::V1 if cgexec => {
                let peer = median(&timings[2].wall);
                report.goal(
                    "2. launch on cgroup v1 (median)",
                    format!("{} ({} bare)", ms(damon), ratio(damon, bare)),
                    format!("cgexec {} ({} bare)", ms(peer), ratio(peer, bare)),
                    "≤ cgexec",
                    Some(damon <= peer),
                )
            }
            Version::V1 => {}
        }
        report.goal(
            "3. damon's own CPU per launch (mean, damon run − bare run)",
            ms(own_cpu),
            format!("bare run {}", ms(mean(&timings[0].cpu))),
            "≤ 1 ms",
            Some(own_cpu <= 0.001),
        );
        let accounting = damon - median(&timings[accounting_off_row].wall);
        report.goal(
            "what network accounting adds to a launch (issue 28; median, damon run − `--network-accounting N` run)",
            ms(accounting),
            format!("without it {}", ms(median(&timings[accounting_off_row].wall))),
            "≤ 0.3 ms",
            (!env.emulated).then_some(accounting <= 0.0003),
        );
        // What `row` adds to the launch of `base` (median against median), against its goal in
        // seconds (none: reported); no verdict where the machine is emulated.
        let mut adds = |what: &str, row: usize, base: f64, goal_s: Option<f64>, target: &str| {
            let added = median(&timings[row].wall) - base;
            let verdict = goal_s.filter(|_| !env.emulated).map(|goal_s| added <= goal_s);
            report.goal(what, ms(added), format!("damon {}", ms(base)), target, verdict);
        };
        adds(
            "what `--ip-deny` of 100 prefixes of 20 lengths, kept as an LPM trie, adds to a launch (issue 28; median, IP-filtered run − damon run)",
            trie_row,
            damon,
            None,
            "(reported)",
        );
        // Issue 16 set 0.3 ms for the first sandbox; issue 26's (capabilities, the full filter,
        // the mount and IPC namespaces) is bounded at 0.5 ms, for a task as Nomad starts it.
        adds(
            "what the sandbox adds to a launch (issue 26; median, both started as Nomad starts a task: sandbox run − damon run)",
            task_row + 1,
            median(&timings[task_row].wall),
            Some(0.0005),
            "≤ 0.5 ms on the host",
        );
        adds(
            "what the sandbox adds started from a working directory under /tmp (median, sandbox run − damon run)",
            sandbox_row,
            damon,
            None,
            "(reported)",
        );
        adds(
            "what `--ip-deny` of 100 prefixes adds to a launch (issue 28; median, IP-filtered run − damon run)",
            ip_row,
            damon,
            Some(0.0003),
            "≤ 0.3 ms",
        );
        if let Some(row) = io_row {
            adds(
                "what IO limits add to a launch (issue 17; median, IO-limited run − damon run)",
                row,
                damon,
                Some(0.0002),
                "≤ 0.2 ms",
            );
        }
        if env.emulated {
            launch_without_address_randomization(
                env,
                report,
                &labels[..sandbox_row],
                &starts[..sandbox_row],
                floor_row,
            )?;
        }
        // bare, damon and cgexec (which needs the ready-made group until then).
        let peers = if cgexec { 3 } else { 2 };
        // And the sandbox, whose mount namespace copies the host's mounts and tears them down.
        let grown_labels: Vec<&str> = labels[..peers].iter().copied().chain([labels[sandbox_row]]).collect();
        let grown: Vec<&Start> = starts[..peers].iter().chain([&starts[sandbox_row]]).collect();
        launch_as_mounts_grow(env, report, &grown_labels, &grown)?;
        drop(group);
        if env.version == Version::V2 {
            launch_nomad_layout(env, report, runs)?;
        }
        Ok(())
    }

    /// Under QEMU's TCG, guest code runs as host code translated from it, and a translation is
    /// found again by the code's virtual address. A program mapped at a new random address at
    /// each exec (a position-independent executable, as damon and /bin/true are) has everything
    /// it runs translated again at each start, which a real CPU never does. The same launches
    /// with the kernel's address randomization off for a while show that part.
    fn launch_without_address_randomization(
        env: &Env,
        report: &mut Report,
        labels: &[&str],
        starts: &[Start],
        floor_row: usize,
    ) -> Result<()> {
        const SETTING: &str = "/proc/sys/kernel/randomize_va_space";
        let runs = env.runs(100, 10);
        let log_dir = env.work.join("launch-fixed-addresses");
        fs::create_dir_all(&log_dir).map_err(|e| e.to_string())?;
        // bare, damon, the do-nothing supervisor and the kernel's part.
        let rows: Vec<usize> = vec![0, 1, floor_row - 1, floor_row];
        let chosen: Vec<Start> = rows.iter().map(|&i| starts[i].clone()).collect();
        let before = fs::read_to_string(SETTING).map_err(context(|| format!("read {}", SETTING)))?;
        fs::write(SETTING, "0").map_err(context(|| format!("write {}", SETTING)))?;
        let timings = time_runs(&chosen, &log_dir, 10, runs);
        fs::write(SETTING, before.trim()).map_err(context(|| format!("restore {}", SETTING)))?;
        let timings = timings?;
        report.line(format!(
            "\n### Launch with the kernel's address randomization off ({} = 0 for these runs only): {} runs of \
             each, interleaved\n\nQEMU's TCG runs guest code as host code translated from it and finds a \
             translation again by the code's virtual address. damon and `/bin/true` are position-independent and \
             mapped at a new random address at each exec, so all the code each start runs is translated again: \
             a cost of the emulator that no real CPU (nor KVM) has. Here the same launches with fixed \
             addresses:\n",
            SETTING, runs
        ));
        report.line("| run | median | CPU per run (mean) | median vs bare |\n|---|---|---|---|");
        let bare = median(&timings[0].wall);
        for (&row, t) in rows.iter().zip(&timings) {
            if let Some(failure) = t.failures.first() {
                report.line(format!("| {} | failed: {} | | |", labels[row], failure));
                continue;
            }
            report.line(format!(
                "| {} | {} | {} | {} |",
                labels[row],
                ms(median(&t.wall)),
                ms(mean(&t.cpu)),
                ratio(median(&t.wall), bare)
            ));
        }
        Ok(())
    }

    /// Launches as the host's mounts grow: a Nomad client mounts a secrets tmpfs for each task,
    /// and /proc/self/mountinfo, which the kernel formats whole at every read, grows with them.
    /// Each count is made in a mount namespace of its own (`unshare -m`), where the commands run.
    fn launch_as_mounts_grow(env: &Env, report: &mut Report, labels: &[&str], starts: &[&Start]) -> Result<()> {
        let runs = env.runs(100, 10);
        let log_dir = env.work.join("launch-mounts");
        fs::create_dir_all(&log_dir).map_err(|e| e.to_string())?;
        let commands = starts
            .iter()
            .map(|start| match start {
                Start::Plain(argv) => Ok(argv),
                Start::Join(..) | Start::InTask(..) => {
                    Err(format!("{} cannot be timed in a mount namespace", start.describe()))
                }
            })
            .collect::<Result<Vec<_>>>()?;
        report.line(format!(
            "\n### Launch as the host's mounts grow: {} runs of each, interleaved\n\nA Nomad client mounts a \
             secrets tmpfs for each task, and `/proc/self/mountinfo`, which the kernel formats whole at each \
             read, grows with them. Each row is measured in a mount namespace of its own (`unshare -m`) with \
             that many tmpfs mounts added; median wall time.\n",
            runs
        ));
        report.line(format!("| mounts (mountinfo lines) | {} |", labels.join(" | ")));
        report.line(format!("|---|{}", "---|".repeat(labels.len())));
        for added in [0usize, 300, 1000] {
            let mounts_dir = log_dir.join(format!("mounts-{}", added));
            fs::create_dir_all(&mounts_dir).map_err(|e| e.to_string())?;
            let script = format!(
                "mount --make-rprivate / || exit 1; i=0; while [ $i -lt {added} ]; do mkdir -p {dir}/$i && \
                 mount -t tmpfs -o size=4k tmpfs {dir}/$i || exit 1; i=$((i+1)); done; \
                 wc -l < /proc/self/mountinfo; exec \"$0\" \"$@\"",
                added = added,
                dir = mounts_dir.display()
            );
            let mut cmd = Command::new("unshare");
            cmd.args(["-m", "sh", "-c", &script]).arg(&env.me).args(["child", "time", &runs.to_string()]).arg(&log_dir);
            for (i, argv) in commands.iter().enumerate() {
                if i > 0 {
                    cmd.arg("--");
                }
                cmd.args(argv.iter());
            }
            let out = cmd.stderr(Stdio::inherit()).output().map_err(context(|| "unshare -m".to_string()))?;
            let text = String::from_utf8_lossy(&out.stdout);
            let mut lines = text.lines();
            let mountinfo_lines = lines.next().unwrap_or("?").trim().to_string();
            let medians: Vec<String> = lines
                .map(|l| l.split(' ').next().and_then(|m| m.parse::<f64>().ok()).map_or("?".to_string(), ms))
                .collect();
            if !out.status.success() || medians.len() != labels.len() {
                report.line(format!("| {} | failed: {} |", added, out.status));
                continue;
            }
            report.line(format!("| {} more ({}) | {} |", added, mountinfo_lines, medians.join(" | ")));
        }
        Ok(())
    }

    /// cgroup v2 as Nomad lays it out: damon alone in the task's cgroup, which it must leave for
    /// a leaf of its own to pass controllers down. Each run is started as Nomad's executor starts
    /// a task: moved into the task cgroup between fork and exec.
    fn launch_nomad_layout(env: &Env, report: &mut Report, runs: usize) -> Result<()> {
        let log_dir = env.work.join("launch-nomad");
        fs::create_dir_all(&log_dir).map_err(|e| e.to_string())?;
        let task = ReadyGroup::new(env, "damon-bench-task.scope")?;
        let starts = vec![
            Start::Join(task.procs(), vec![OsString::from("/bin/true")]),
            Start::Join(task.procs(), env.damon(&["--memory-limit", "64", "--cpu-limit", "500", "/bin/true"])),
        ];
        let timings = time_runs(&starts, &log_dir, 5, runs)?;
        drop(task);
        let (bare, damon) = (median(&timings[0].wall), median(&timings[1].wall));
        report.line(format!(
            "\n### Launch in Nomad's layout (cgroup v2): started into a task cgroup, {} runs of each\n\n\
             damon is alone in the task's cgroup and moves itself into a leaf beside its group, so that the \
             task's cgroup may pass controllers down; at its end it moves back and removes both.\n",
            runs
        ));
        report.line("| run | median | mean | CPU per run (mean) | median vs bare |\n|---|---|---|---|---|");
        for (label, t) in ["`/bin/true` started into the task cgroup", "damon, memory and CPU limits, started there"]
            .iter()
            .zip(&timings)
        {
            report.line(format!(
                "| {} | {} | {} | {} | {} |",
                label,
                ms(median(&t.wall)),
                ms(mean(&t.wall)),
                ms(mean(&t.cpu)),
                ratio(median(&t.wall), bare)
            ));
        }
        for t in &timings {
            if let Some(first) = t.failures.first() {
                report.line(format!("\n{} failed runs, e.g. {}", t.failures.len(), first));
            }
        }
        report.goal(
            "1. launch on cgroup v2, Nomad's layout (median)",
            ms(damon),
            format!("`/bin/true` there {}", ms(bare)),
            "(1.5x, for the layout above)",
            None,
        );
        Ok(())
    }

    // ---------------------------------------------------------------- where a launch goes

    fn available(program: &str) -> bool {
        Command::new(program).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
    }

    /// Where one launch of damon spends its time: the system calls (strace -c, wall time per
    /// call) and, where perf runs, the CPU, page faults and context switches (perf stat).
    fn profile(env: &Env, report: &mut Report) -> Result<()> {
        let log_dir = env.work.join("profile");
        fs::create_dir_all(&log_dir).map_err(|e| e.to_string())?;
        let damon = env.damon(&["--memory-limit", "64", "--cpu-limit", "500", "/bin/true"]);
        let shown = damon.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ");
        report.line("\n### Where a launch goes\n");
        if available("strace") {
            let out = log_dir.join("strace.txt");
            // Left out: the calls that only wait for another process (the guard's recvfrom for
            // damon's messages, damon's poll for the child's exit, wait4), which span the run.
            let mut argv: Vec<OsString> = ["strace", "-f", "-w", "-c", "-e", "trace=!recvfrom,poll,wait4", "-o"]
                .iter()
                .map(OsString::from)
                .collect();
            argv.push(out.clone().into_os_string());
            argv.extend(damon.iter().cloned());
            // A few runs first, as the launch measurements had.
            for _ in 0..5 {
                let _ = command(&damon, &log_dir).stdout(Stdio::null()).stderr(Stdio::null()).status();
            }
            let status = command(&argv, &log_dir).stdout(Stdio::null()).stderr(Stdio::null()).status();
            let summary = fs::read_to_string(&out).unwrap_or_default();
            let lines: Vec<&str> = summary.lines().collect();
            // The header (2 lines), the 15 calls that took longest, the total.
            let mut shown_lines: Vec<&str> = lines.iter().take(17).cloned().collect();
            if lines.len() > 17 {
                shown_lines.push("...");
                shown_lines.extend(lines.iter().rev().take(2).rev().cloned());
            }
            report.line(format!(
                "`strace -f -w -c -e trace='!recvfrom,poll,wait4' {}` (one run, every process; wall time in each \
                 call, so a call that waits in the kernel shows its wait; the calls that wait for another \
                 process are left out; {}):\n\n```\n{}\n```\n",
                shown,
                status.map_or_else(|e| e.to_string(), |s| s.to_string()),
                shown_lines.join("\n")
            ));
        }
        // As many launches as take about five seconds (200 on the host; in the VM, without KVM,
        // a launch is a hundred times slower, and perf's sampling slower still).
        let mut walls = Vec::new();
        for _ in 0..3 {
            let t0 = Instant::now();
            let _ = command(&damon, &log_dir).stdout(Stdio::null()).stderr(Stdio::null()).status();
            walls.push(t0.elapsed().as_secs_f64());
        }
        let runs = if env.quick { 20 } else { ((5.0 / median(&walls)) as usize).clamp(20, 200) };
        if available("perf") {
            let runs = runs.to_string();
            for (label, argv) in [("bare /bin/true", vec![OsString::from("/bin/true")]), ("damon", damon.clone())] {
                let mut perf: Vec<OsString> =
                    ["perf", "stat", "-r", &runs, "-e", "task-clock,page-faults,context-switches,cpu-migrations"]
                        .iter()
                        .map(OsString::from)
                        .collect();
                perf.extend(argv);
                let output = command(&perf, &log_dir).stdout(Stdio::null()).output().map_err(|e| e.to_string())?;
                let text = String::from_utf8_lossy(&output.stderr);
                let counters: Vec<&str> =
                    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with("Performance")).collect();
                report.line(format!("`perf stat -r {}` of {}:\n\n```\n{}\n```\n", runs, label, counters.join("\n")));
            }
            perf_profile(report, &log_dir, &damon, &runs, &env.me(&["repeat", &runs]))?;
        }
        Ok(())
    }

    /// Samples the CPU of `runs` launches with `perf record` (every process, kernel included),
    /// and shows where it goes: by process and object, and by kernel entry (system call or page
    /// fault, with what it calls).
    fn perf_profile(
        report: &mut Report,
        log_dir: &Path,
        damon: &[OsString],
        runs: &str,
        repeat: &[OsString],
    ) -> Result<()> {
        let data = log_dir.join("perf.data");
        let mut record: Vec<OsString> =
            ["perf", "record", "-F", "10000", "-g", "-o"].iter().map(OsString::from).collect();
        record.push(data.clone().into_os_string());
        record.extend(repeat.iter().cloned());
        record.extend(damon.iter().cloned());
        let recorded = command(&record, log_dir).stdout(Stdio::null()).stderr(Stdio::null()).status();
        if !recorded.map_or(false, |s| s.success()) {
            report.line("`perf record` did not run here.\n");
            return Ok(());
        }
        let perf_report = |args: &[&str]| -> String {
            let mut argv: Vec<OsString> =
                ["perf", "report", "--stdio", "-g", "none", "-i"].iter().map(OsString::from).collect();
            argv.push(data.clone().into_os_string());
            argv.extend(args.iter().map(OsString::from));
            command(&argv, log_dir)
                .stderr(Stdio::null())
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
        };
        let rows = |text: &str, keep: &dyn Fn(&str) -> bool, most: usize| -> String {
            text.lines()
                .filter(|l| l.contains('%') && !l.starts_with('#') && keep(l))
                .take(most)
                .collect::<Vec<_>>()
                .join("\n")
        };
        let by_object = perf_report(&["--no-children", "--sort", "comm,dso"]);
        let samples = by_object.lines().find(|l| l.starts_with("# Samples:")).unwrap_or("").trim_start_matches("# ");
        let entries = perf_report(&["--children", "--sort", "sym", "--comm", "damon"]);
        let entry =
            |l: &str| ["__x64_sys_", "__do_sys_", "] exc_page_fault", "ret_from_fork"].iter().any(|e| l.contains(e));
        report.line(format!(
            "`perf record -F 10000 -g` of {} launches, every process ({}); share of the samples by command \
             and object:\n\n```\n{}\n```\n\ndamon's kernel entries (inclusive: each with what it calls):\n\n```\n{}\n```\n",
            runs,
            samples,
            rows(&by_object, &|_| true, 12),
            rows(&entries, &entry, 20)
        ));
        Ok(())
    }

    // ---------------------------------------------------------------- 5: stop

    /// Waits until `reader` yields `count` bytes; false on end of file.
    fn read_bytes(reader: &mut impl Read, count: usize) -> bool {
        let mut buffer = [0u8; 256];
        let mut seen = 0;
        while seen < count {
            match reader.read(&mut buffer) {
                Ok(0) => return false,
                Ok(n) => seen += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        true
    }

    /// Starts `start`, waits for its "ready" byte, sends SIGTERM and times until it is reaped.
    fn time_stop(start: &Start, log_dir: &Path) -> Result<(f64, std::process::ExitStatus)> {
        let mut child = start.spawn(log_dir, Stdio::piped())?;
        let mut out = child.stdout.take().ok_or("no stdout")?;
        if !read_bytes(&mut out, 1) {
            let status = child.wait().map_err(|e| e.to_string())?;
            return Err(format!("{} ended before it was ready: {}", start.describe(), status));
        }
        let t0 = Instant::now();
        kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).map_err(|e| e.to_string())?;
        let status = child.wait().map_err(|e| e.to_string())?;
        Ok((t0.elapsed().as_secs_f64(), status))
    }

    fn stop(env: &Env, report: &mut Report) -> Result<()> {
        let runs = env.runs(50, 10);
        let log_dir = env.work.join("stop");
        fs::create_dir_all(&log_dir).map_err(|e| e.to_string())?;
        let starts = [
            Start::Plain(env.me(&["ready"])),
            Start::Plain({
                let mut argv = env.damon(&["--memory-limit", "64", "--cpu-limit", "500"]);
                argv.extend(env.me(&["ready"]));
                argv
            }),
        ];
        let mut times = [Vec::new(), Vec::new()];
        for _ in 0..runs {
            for (start, times) in starts.iter().zip(times.iter_mut()) {
                times.push(time_stop(start, &log_dir)?.0);
            }
        }
        let (bare, damon) = (median(&times[0]), median(&times[1]));
        report.line(format!(
            "\n### Stop: SIGTERM to exit, {} runs of each, interleaved\n\nThe child exits of SIGTERM. Bare: \
             SIGTERM to the child itself; damon: SIGTERM to damon, which passes it on, waits for the child, \
             removes its groups and exits.\n",
            runs
        ));
        report.line("| run | median | p90 |\n|---|---|---|");
        report.line(format!("| child alone | {} | {} |", ms(bare), ms(percentile(&times[0], 0.9))));
        report.line(format!("| under damon | {} | {} |", ms(damon), ms(percentile(&times[1], 0.9))));
        report.goal(
            "5. stop latency beyond the child's own (median)",
            ms(damon - bare),
            format!("child alone {}", ms(bare)),
            "< 5 ms",
            Some(damon - bare < 0.005),
        );
        Ok(())
    }

    /// The kernel's own time to kill a tree: the same tree started into a ready-made group,
    /// killed as damon would without the supervision (v2: cgroup.kill; v1: SIGKILL to each
    /// listed process), until the group holds no process.
    fn kernel_kill(env: &Env, size: u64, log_dir: &Path) -> Result<f64> {
        let group = ReadyGroup::new(env, "damon-bench-kill")?;
        let mut child =
            Start::Join(group.procs(), env.me(&["tree", &size.to_string()])).spawn(log_dir, Stdio::piped())?;
        let mut out = child.stdout.take().ok_or("no stdout")?;
        if !read_bytes(&mut out, 1) {
            let _ = child.wait();
            return Err(format!("a tree of {} did not start", size));
        }
        let dir = &group.dirs[0];
        let listed = || -> Vec<i32> {
            read_trimmed(dir.join("cgroup.procs")).lines().filter_map(|l| l.trim().parse().ok()).collect()
        };
        let t0 = Instant::now();
        if env.version == Version::V2 {
            fs::write(dir.join("cgroup.kill"), "1").map_err(|e| format!("cgroup.kill: {}", e))?;
        } else {
            for pid in listed() {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let empty = match env.version {
                Version::V2 => read_trimmed(dir.join("cgroup.events")).lines().any(|l| l == "populated 0"),
                Version::V1 => listed().is_empty(),
            };
            if empty || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let elapsed = t0.elapsed().as_secs_f64();
        let _ = child.wait();
        Ok(elapsed)
    }

    fn kill_trees(env: &Env, report: &mut Report) -> Result<()> {
        let sizes: &[u64] = if env.quick { &[10, 100, 1000] } else { &[10, 100, 1000, 5000] };
        let runs = env.runs(3, 1);
        let timeout_ms = 200.0;
        let log_dir = env.work.join("kill");
        fs::create_dir_all(&log_dir).map_err(|e| e.to_string())?;
        report.line(format!(
            "\n### Kill after the timeout: trees that ignore SIGTERM, median of {} runs\n\nSIGTERM to damon \
             (kill timeout {} ms), to damon's exit, less the timeout: killing the tree, waiting until the kernel \
             says the group is empty, removing the groups. The kernel alone: the same tree in a ready-made \
             group, {}, until the group is empty (checked every 0.2 ms).\n",
            runs,
            timeout_ms,
            if env.version == Version::V2 { "killed with cgroup.kill" } else { "each listed process sent SIGKILL" }
        ));
        report.line(
            "| processes | damon's kill time | per process | the kernel alone | per process | tree-scope stop (issue 17) |\n\
             |---|---|---|---|---|---|",
        );
        let mut largest = (0, 0.0, 0.0);
        let mut tree_stop_of_1000 = None;
        for &size in sizes {
            let start = Start::Plain({
                let mut argv = env.damon(&["--memory-limit", "4096", "--kill-timeout", "200ms"]);
                argv.extend(env.me(&["tree", &size.to_string()]));
                argv
            });
            let mut times = Vec::new();
            let mut floors = Vec::new();
            for _ in 0..runs {
                let (elapsed, status) = time_stop(&start, &log_dir)?;
                if status.code() != Some(137) {
                    return Err(format!("a tree of {}: damon exited with {} instead of 137", size, status));
                }
                times.push(elapsed - timeout_ms / 1e3);
                floors.push(kernel_kill(env, size, &log_dir)?);
            }
            // The same tree, obedient, stopped with --stop-signal-scope tree: SIGTERM to damon until
            // damon's exit, every process having ended at its SIGTERM (no kill).
            let obedient = Start::Plain({
                let mut argv =
                    env.damon(&["--memory-limit", "4096", "--kill-timeout", "60s", "--stop-signal-scope", "tree"]);
                argv.extend(env.me(&["obedient-tree", &size.to_string()]));
                argv
            });
            let mut stops = Vec::new();
            for _ in 0..runs {
                let (elapsed, status) = time_stop(&obedient, &log_dir)?;
                if status.code() != Some(143) {
                    return Err(format!(
                        "a tree of {} stopped with scope tree: damon exited with {} instead of 143",
                        size, status
                    ));
                }
                stops.push(elapsed);
            }
            let (kill_time, floor, stop) = (median(&times), median(&floors), median(&stops));
            largest = (size, kill_time, floor);
            if size == 1000 {
                tree_stop_of_1000 = Some((stop, kill_time));
            }
            report.line(format!(
                "| {} | {} | {:.1} µs | {} | {:.1} µs | {} |",
                size,
                ms(kill_time),
                kill_time * 1e6 / size as f64,
                ms(floor),
                floor * 1e6 / size as f64,
                ms(stop)
            ));
        }
        if let Some((stop, kill_time)) = tree_stop_of_1000 {
            report.goal(
                "tree-scope stop of 1,000 processes (issue 17; SIGTERM to damon until its exit)",
                ms(stop),
                format!("the kill of the same tree {}", ms(kill_time)),
                "≤ the kill",
                Some(stop <= kill_time),
            );
        }
        report.goal(
            "5. kill time after the timeout, largest tree",
            format!("{} for {} processes", ms(largest.1), largest.0),
            format!("the kernel alone {}", ms(largest.2)),
            "< 1 s for 5,000, linear at worst",
            if largest.0 >= 5000 { Some(largest.1 < 1.0) } else { None },
        );
        Ok(())
    }

    // ---------------------------------------------------------------- 4: density

    /// The proportional set size of a process, in bytes.
    fn pss(pid: u32) -> u64 {
        let rollup = fs::read_to_string(format!("/proc/{}/smaps_rollup", pid)).unwrap_or_default();
        rollup
            .lines()
            .find(|l| l.starts_with("Pss:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    fn children_of(pid: u32) -> Vec<u32> {
        read_trimmed(format!("/proc/{}/task/{}/children", pid, pid))
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    struct Storm {
        start: f64,
        stop: f64,
        pss_per_task: Option<u64>,
    }

    /// Starts `count` copies of `start` at once, times until every workload said it runs, then
    /// stops them all at once and times until every started process is reaped.
    fn storm(start: &Start, count: usize, log_dir: &Path, damon: Option<&Path>) -> Result<Storm> {
        let (read_end, write_end) = nix::unistd::pipe().map_err(|e| e.to_string())?;
        // SAFETY: pipe(2) just returned these descriptors; nothing else owns them.
        let (mut reader, writer) = unsafe { (File::from_raw_fd(read_end), File::from_raw_fd(write_end)) };
        let t0 = Instant::now();
        let mut children = Vec::with_capacity(count);
        for _ in 0..count {
            let out = writer.try_clone().map_err(|e| e.to_string())?;
            match start.spawn(log_dir, Stdio::from(out)) {
                Ok(child) => children.push(child),
                Err(e) => {
                    stop_all(&mut children);
                    return Err(e);
                }
            }
        }
        drop(writer);
        let all_ready = read_bytes(&mut reader, count);
        let started = t0.elapsed().as_secs_f64();
        if !all_ready {
            stop_all(&mut children);
            return Err(format!("not every one of {} copies of {} started", count, start.describe()));
        }
        let pss_per_task = damon.map(|damon| {
            let total: u64 = children
                .iter()
                .map(|c| {
                    // damon and its guard (a fork of damon: the same executable); not the workload.
                    let guard: u64 = children_of(c.id())
                        .into_iter()
                        .filter(|p| fs::read_link(format!("/proc/{}/exe", p)).ok().as_deref() == Some(damon))
                        .map(pss)
                        .sum();
                    pss(c.id()) + guard
                })
                .sum();
            total / count as u64
        });
        let t1 = Instant::now();
        stop_all(&mut children);
        Ok(Storm { start: started, stop: t1.elapsed().as_secs_f64(), pss_per_task })
    }

    fn stop_all(children: &mut Vec<Child>) {
        for child in children.iter() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        }
        for mut child in children.drain(..) {
            let _ = child.wait();
        }
    }

    fn density(env: &Env, report: &mut Report) -> Result<()> {
        let count = env.runs(200, 50);
        let log_dir = env.work.join("density");
        fs::create_dir_all(&log_dir).map_err(|e| e.to_string())?;
        let group = ReadyGroup::new(env, "damon-bench-storm")?;
        let workload = env.me(&["ready"]);
        let mut damon_argv = env.damon(&["--memory-limit", "64", "--cpu-limit", "500"]);
        damon_argv.extend(workload.clone());
        let damon = storm(&Start::Plain(damon_argv), count, &log_dir, Some(&env.damon))?;
        let mut peers: Vec<(String, Storm)> = Vec::new();
        if env.version == Version::V1 && has_cgexec() {
            let mut argv: Vec<OsString> = vec!["cgexec".into(), "-g".into(), group.cgexec_spec().into()];
            argv.extend(workload.clone());
            peers.push((
                "`cgexec` into a ready-made group".to_string(),
                storm(&Start::Plain(argv), count, &log_dir, None)?,
            ));
        }
        peers.push((
            "fork, join a ready-made group, exec".to_string(),
            storm(&Start::Join(group.procs(), workload.clone()), count, &log_dir, None)?,
        ));
        peers.push(("the workload alone".to_string(), storm(&Start::Plain(workload), count, &log_dir, None)?));
        drop(group);
        report.line(format!(
            "\n### Density: {} started at once, then stopped at once\n\nStarted: from the first spawn until \
             every workload has written its byte. Stopped: SIGTERM to each, until every started process is \
             reaped (damon's groups are removed by then). Memory: proportional set size (PSS) of each damon and \
             its guard while the workloads run.\n",
            count
        ));
        report.line("| run | all started | all stopped | PSS per task |\n|---|---|---|---|");
        report.line(format!(
            "| damon, memory and CPU limits | {} | {} | {} |",
            ms(damon.start),
            ms(damon.stop),
            damon.pss_per_task.map_or("n/a".to_string(), |b| format!("{:.2} MiB", b as f64 / 1048576.0))
        ));
        for (label, storm) in &peers {
            report.line(format!("| {} | {} | {} | |", label, ms(storm.start), ms(storm.stop)));
        }
        let peer = &peers[0];
        report.goal(
            &format!("4. {} started at once, until all run", count),
            ms(damon.start),
            format!("{} {}", peer.0, ms(peer.1.start)),
            "(reported against the peer)",
            None,
        );
        report.goal(
            &format!("4. {} stopped at once, until all gone", count),
            ms(damon.stop),
            format!("{} {}", peer.0, ms(peer.1.stop)),
            "(reported against the peer)",
            None,
        );
        if let Some(bytes) = damon.pss_per_task {
            let mib = bytes as f64 / 1048576.0;
            report.goal(
                "4. memory per task: PSS of damon and its guard",
                format!("{:.2} MiB", mib),
                "".to_string(),
                "≤ 3 MiB",
                Some(mib <= 3.0),
            );
        }
        Ok(())
    }

    // ---------------------------------------------------------------- 6: cap accuracy

    /// Runs `burn` under `start` and returns the cores it got (CPU seconds per wall second).
    fn cores_used(start: &Start, log_dir: &Path) -> Result<f64> {
        let (mut cmd, _files) = start.command(log_dir)?;
        let output = cmd.stdin(Stdio::null()).stderr(Stdio::null()).output().map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&output.stdout);
        let value = |key: &str| {
            text.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .and_then(|v| v.parse::<f64>().ok())
                .ok_or_else(|| format!("{}: no {} in {:?} ({})", start.describe(), key, text, output.status))
        };
        Ok(value("cpu_seconds=")? / value("wall_seconds=")?)
    }

    fn cap(env: &Env, report: &mut Report) -> Result<()> {
        let seconds = if env.quick { "3" } else { "10" };
        let log_dir = env.work.join("cap");
        fs::create_dir_all(&log_dir).map_err(|e| e.to_string())?;
        report.line(format!(
            "\n### CPU cap accuracy: busy threads for {} s under a cap\n\nThe cap is given in MHz as Nomad does \
             (share × {} MHz per core); the share is the workload's own CPU time over its wall time, in cores. \
             Expected: the cap, or fewer cores where the threads cannot use it. Uncapped: what the machine gave \
             the same threads in this run.\n",
            seconds, env.mhz_per_core
        ));
        report.line(
            "| threads | cap (cores) | MHz | got (cores) | expected | off by (points) | uncapped got |\n\
             |---|---|---|---|---|---|---|",
        );
        // The worst deviation where the cap, not the machine's load, bounds the threads.
        let mut worst: Option<f64> = None;
        let mut unbound = 0;
        for threads in [1usize, 4] {
            let uncapped = cores_used(&Start::Plain(env.me(&["burn", seconds, &threads.to_string()])), &log_dir)?;
            for share in [0.25f64, 0.5, 1.5] {
                let mhz = (share * env.mhz_per_core as f64).round() as u64;
                let mut argv = env.damon(&["--cpu-limit", &mhz.to_string()]);
                argv.extend(env.me(&["burn", seconds, &threads.to_string()]));
                let got = cores_used(&Start::Plain(argv), &log_dir)?;
                let expected = share.min(threads as f64).min(env.cpus as f64);
                let off = (got - expected) * 100.0;
                // Uncapped, the threads got less than the cap plus a margin: the load bounds them.
                let binding = uncapped >= expected + 0.05;
                if binding {
                    worst = Some(worst.map_or(off, |w: f64| if off.abs() > w.abs() { off } else { w }));
                } else {
                    unbound += 1;
                }
                report.line(format!(
                    "| {} | {} | {} | {:.3} | {} | {:+.1}{} | {:.3} |",
                    threads,
                    share,
                    mhz,
                    got,
                    expected,
                    off,
                    if binding { "" } else { " (the machine gave less than the cap)" },
                    uncapped
                ));
            }
        }
        report.goal(
            "6. CPU cap accuracy, worst where the cap binds",
            match worst {
                Some(w) => format!("{:+.1} points ({} of 6 runs bound by the load instead)", w, unbound),
                None => "every run was bound by the load".to_string(),
            },
            "".to_string(),
            "within 3 points",
            worst.map(|w| w.abs() <= 3.0),
        );
        Ok(())
    }

    // ---------------------------------------------------------------- 7: scrapes

    fn free_port() -> Result<u16> {
        TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).map_err(|e| e.to_string())
    }

    fn http_get(port: u16) -> Option<usize> {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n").ok()?;
        let _ = stream.shutdown(Shutdown::Write);
        let mut body = Vec::new();
        stream.read_to_end(&mut body).ok()?;
        if body.starts_with(b"HTTP/1.1 200") {
            Some(body.len())
        } else {
            None
        }
    }

    /// CPU time of every thread of `pid` so far, from the scheduler's own accounting (ns).
    fn process_cpu(pid: u32) -> f64 {
        let tasks =
            fs::read_dir(format!("/proc/{}/task", pid)).map(|d| d.flatten().collect::<Vec<_>>()).unwrap_or_default();
        tasks
            .iter()
            .map(|t| {
                read_trimmed(t.path().join("schedstat"))
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or(0.0)
            })
            .sum::<f64>()
            / 1e9
    }

    fn rss_kib(pid: u32) -> u64 {
        read_trimmed(format!("/proc/{}/status", pid))
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// damon serving metrics on a free port, its workload `workload`, once the server answers.
    fn damon_serving(env: &Env, log_dir: &Path, limits: &[&str], workload: &[&str]) -> Result<(Child, u16)> {
        let port = free_port()?;
        let addr = format!("127.0.0.1:{}", port);
        let mut args = vec!["--addr", &addr];
        args.extend_from_slice(limits);
        let mut argv = env.damon(&args);
        argv.extend(env.me(workload));
        let mut child = Start::Plain(argv).spawn(log_dir, Stdio::piped())?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while http_get(port).is_none() {
            if Instant::now() > deadline || child.try_wait().map_err(|e| e.to_string())?.is_some() {
                let _ = child.kill();
                let _ = child.wait();
                return Err("damon's metrics server did not answer".to_string());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok((child, port))
    }

    /// 100 prefixes of the documentation and private ranges, none of them loopback's: a deny
    /// list that the traffic measured never matches, so that only its lookups cost.
    fn hundred_prefixes() -> String {
        (0..100).map(|i| format!("10.{}.{}.0/24", i / 10, i % 10)).collect::<Vec<_>>().join(",")
    }

    /// 100 distinct prefixes of 10.0.0.0/8, five of each length from /13 to /32: more lengths than
    /// damon keeps in a hash set, so the list becomes an LPM trie.
    fn hundred_prefixes_of_many_lengths() -> String {
        (0..100u32)
            .map(|i| {
                let length = 13 + i % 20;
                let address = (10u32 << 24) | ((i / 20 + 1) << (32 - length));
                format!("{}/{}", std::net::Ipv4Addr::from(address), length)
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Loopback throughput of a workload sending to the benchmark, with and without a deny list
    /// of 100 prefixes (and with the accounting off), interleaved: what the packet filter costs.
    fn network_throughput(env: &Env, report: &mut Report) -> Result<()> {
        let log_dir = env.work.join("network");
        fs::create_dir_all(&log_dir).map_err(|e| e.to_string())?;
        let bytes: u64 = if env.emulated { 256 << 20 } else { 2 << 30 };
        let rounds = env.runs(7, 2);
        let prefixes = hundred_prefixes();
        let settings: [(&str, Vec<&str>); 3] = [
            ("damon (network accounting on, the default)", vec![]),
            ("damon, `--ip-deny` of 100 prefixes", vec!["--ip-deny", prefixes.as_str()]),
            ("damon, `--network-accounting N`", vec!["--network-accounting", "N"]),
        ];
        let mut rates: Vec<Vec<f64>> = vec![Vec::new(); settings.len()];
        for _ in 0..rounds {
            for (i, (_, extra)) in settings.iter().enumerate() {
                let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
                let target = listener.local_addr().map_err(|e| e.to_string())?.to_string();
                let mut args = vec!["--memory-limit", "256", "--cpu-limit", "100000"];
                args.extend(extra.iter().copied());
                let mut argv = env.damon(&args);
                argv.extend(env.me(&["send", &target, &bytes.to_string()]));
                let mut child = Start::Plain(argv).spawn(&log_dir, Stdio::null())?;
                let (mut connection, _) = listener.accept().map_err(|e| e.to_string())?;
                let mut buffer = vec![0u8; 1 << 20];
                let (mut received, started) = (0u64, Instant::now());
                loop {
                    match connection.read(&mut buffer) {
                        Ok(0) => break,
                        Ok(n) => received += n as u64,
                        Err(e) => return Err(format!("receive: {}", e)),
                    }
                }
                let seconds = started.elapsed().as_secs_f64();
                let _ = child.wait();
                if received != bytes {
                    return Err(format!("received {} of {} bytes", received, bytes));
                }
                rates[i].push(bytes as f64 / seconds);
            }
        }
        report.line(format!(
            "\n### Network: a workload sends {} MiB over loopback to the benchmark, {} rounds, interleaved\n\n\
             Throughput from the first byte received to the end, median of the rounds.\n",
            bytes >> 20,
            rounds
        ));
        report.line("| run | median | vs damon |\n|---|---|---|");
        let base = median(&rates[0]);
        for ((label, _), r) in settings.iter().zip(&rates) {
            report.line(format!("| {} | {:.0} MiB/s | {:.3} |", label, median(r) / 1048576.0, median(r) / base));
        }
        let filtered = median(&rates[1]) / base;
        report.goal(
            "throughput through a deny list of 100 prefixes (issue 28; loopback, median, filtered / unfiltered)",
            format!("{:.3}", filtered),
            format!("unfiltered {:.0} MiB/s", base / 1048576.0),
            "≥ 0.95",
            Some(filtered >= 0.95),
        );
        Ok(())
    }

    fn scrape(env: &Env, report: &mut Report) -> Result<()> {
        let log_dir = env.work.join("scrape");
        fs::create_dir_all(&log_dir).map_err(|e| e.to_string())?;
        report.line("\n### Scrapes\n");
        let wrk = Command::new("wrk").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
        if wrk {
            scrape_under_load(env, report, &log_dir)?;
        } else {
            report.line("wrk is not installed here: the load test is left out.\n");
        }
        // The cost of one scrape as the workload grows.
        let scrapes = env.runs(200, 50);
        report.line(format!(
            "One scrape at a time, {} scrapes, as the workload grows: wall time per scrape (median, a new \
             connection each) and damon's CPU per scrape (all its threads, from /proc/PID/task/*/schedstat).\n",
            scrapes
        ));
        report.line("| workload processes | scrape (median) | damon CPU per scrape |\n|---|---|---|");
        let mut per_size = Vec::new();
        for size in [1u64, 100, 1000] {
            let size_arg = size.to_string();
            let (mut damon, port) = damon_serving(env, &log_dir, &[], &["tree", &size_arg])?;
            let mut out = damon.stdout.take().ok_or("no stdout")?;
            read_bytes(&mut out, 1);
            let cpu0 = process_cpu(damon.id());
            let mut walls = Vec::new();
            for _ in 0..scrapes {
                let t0 = Instant::now();
                http_get(port).ok_or("a scrape failed")?;
                walls.push(t0.elapsed().as_secs_f64());
            }
            let cpu = (process_cpu(damon.id()) - cpu0) / scrapes as f64;
            let _ = kill(Pid::from_raw(damon.id() as i32), Signal::SIGKILL);
            let _ = damon.wait();
            // SIGKILL leaves the cleanup to damon's guard; give it time before the next run.
            std::thread::sleep(Duration::from_millis(500));
            report.line(format!("| {} | {} | {} |", size, ms(median(&walls)), ms(cpu)));
            per_size.push((size, cpu));
        }
        report.goal(
            "7. damon's CPU per scrape, 1 → 1,000 processes",
            format!("{} → {}", ms(per_size[0].1), ms(per_size[per_size.len() - 1].1)),
            "".to_string(),
            "(reported)",
            None,
        );
        Ok(())
    }

    fn scrape_under_load(env: &Env, report: &mut Report, log_dir: &Path) -> Result<()> {
        let seconds = if env.quick { 3 } else { 10 };
        let half = (env.mhz_per_core / 2).to_string();
        // The scraper runs on another machine in a cluster; here it shares two CPUs with the
        // workload and damon, so it is held to one of them: otherwise wrk's two threads take both,
        // and the workload's share would measure the load generator, not damon's serving.
        let scraper = ReadyGroup::new(env, "damon-bench-scraper")?;
        scraper.cap_to_one_core()?;
        // The workload's share over `seconds`, without scrapes, then with wrk running beside it;
        // and damon's RSS before and after.
        let measure = |scraped: bool| -> Result<(f64, Option<String>, u64, u64)> {
            let (mut damon, port) = damon_serving(env, log_dir, &["--cpu-limit", &half], &["burn", "100000", "1"])?;
            // The metrics server answers before the workload starts: wait for it.
            let deadline = Instant::now() + Duration::from_secs(30);
            let workload = loop {
                let found = children_of(damon.id())
                    .into_iter()
                    .find(|p| fs::read_link(format!("/proc/{}/exe", p)).ok().as_deref() == Some(env.me.as_path()));
                if found.is_some() || Instant::now() > deadline {
                    break found;
                }
                std::thread::sleep(Duration::from_millis(10));
            };
            let result = (|| {
                let workload = workload.ok_or("the workload did not start")?;
                let rss_before = rss_kib(damon.id());
                let (cpu0, t0) = (process_cpu(workload), Instant::now());
                let wrk_output = if scraped {
                    let argv: Vec<OsString> = ["wrk", "-t2", "-c16", &format!("-d{}s", seconds), "--latency"]
                        .iter()
                        .map(OsString::from)
                        .chain(Some(OsString::from(format!("http://127.0.0.1:{}/metrics", port))))
                        .collect();
                    let (mut cmd, _files) = Start::Join(scraper.procs(), argv).command(log_dir)?;
                    let out = cmd.stderr(Stdio::null()).output().map_err(|e| format!("wrk: {}", e))?;
                    Some(String::from_utf8_lossy(&out.stdout).into_owned())
                } else {
                    std::thread::sleep(Duration::from_secs(seconds));
                    None
                };
                let share = (process_cpu(workload) - cpu0) / t0.elapsed().as_secs_f64();
                Ok((share, wrk_output, rss_before, rss_kib(damon.id())))
            })();
            let _ = kill(Pid::from_raw(damon.id() as i32), Signal::SIGTERM);
            let _ = damon.wait();
            result
        };
        let (quiet, _, _, _) = measure(false)?;
        let (loaded, wrk_output, rss_before, rss_after) = measure(true)?;
        let wrk_output = wrk_output.unwrap_or_default();
        let field = |prefix: &str| {
            wrk_output
                .lines()
                .map(str::trim)
                .find(|l| l.starts_with(prefix))
                .map(|l| l[prefix.len()..].trim().to_string())
                .unwrap_or_else(|| "none".to_string())
        };
        let rps = field("Requests/sec:");
        let p99 = field("99%");
        let errors = field("Socket errors:");
        let non2xx = field("Non-2xx or 3xx responses:");
        report.line(format!(
            "wrk -t2 -c16 -d{}s --latency against damon's endpoint while the workload spins one thread under a \
             cap of half a core; its share is its CPU time over the same {} s, from the scheduler's accounting. \
             wrk runs in a group capped at one core (in a cluster the scraper is on another machine).\n",
            seconds, seconds
        ));
        report.line("| figure | value |\n|---|---|");
        report.line(format!("| requests per second | {} |", rps));
        report.line(format!("| p99 latency | {} |", p99));
        report.line(format!("| socket errors | {} |", errors));
        report.line(format!("| non-2xx responses | {} |", non2xx));
        report.line(format!("| workload's share without / with scrapes | {:.3} / {:.3} cores |", quiet, loaded));
        report.line(format!("| damon's RSS before / after | {} / {} KiB |\n", rss_before, rss_after));
        report.line(format!("<details><summary>wrk's output</summary>\n\n```\n{}```\n</details>\n", wrk_output));
        let p99_ms = parse_wrk_duration(&p99);
        report.goal(
            "7. scrapes under wrk: p99 latency",
            p99.clone(),
            format!("{} requests/s", rps),
            "< 5 ms",
            p99_ms.map(|v| v < 5.0),
        );
        report.goal(
            "7. workload's share while scraped",
            format!("{:.3} cores", loaded),
            format!("unscraped {:.3}", quiet),
            "unchanged",
            Some((loaded - quiet).abs() <= 0.03),
        );
        report.goal(
            "7. damon's RSS while scraped",
            format!("{} KiB after", rss_after),
            format!("{} KiB before", rss_before),
            "unchanged",
            Some(rss_after <= rss_before + 64),
        );
        Ok(())
    }

    /// wrk's "1.23ms", "456.00us", "1.02s" in milliseconds.
    fn parse_wrk_duration(text: &str) -> Option<f64> {
        let text = text.trim();
        for (unit, factor) in [("us", 1e-3), ("ms", 1.0), ("s", 1e3), ("m", 60e3)] {
            if let Some(number) = text.strip_suffix(unit) {
                if let Ok(v) = number.parse::<f64>() {
                    return Some(v * factor);
                }
            }
        }
        None
    }

    // ---------------------------------------------------------------- 8: Windows under Wine

    fn wine(env: &Env, dir: &Path, report: &mut Report) -> Result<()> {
        let runs = env.runs(30, 5);
        let log_dir = env.work.join("wine");
        fs::create_dir_all(&log_dir).map_err(|e| e.to_string())?;
        let wine = OsString::from("/usr/lib/wine/wine64");
        let damon_exe = dir.join("damon.exe").into_os_string();
        let workload_exe = dir.join("workload.exe").into_os_string();
        let argv = |with_damon: bool, args: &[&str]| {
            let mut argv = vec![wine.clone()];
            if with_damon {
                argv.push(damon_exe.clone());
            }
            argv.push(workload_exe.clone());
            argv.extend(args.iter().map(OsString::from));
            argv
        };
        let starts = [Start::Plain(argv(false, &["exit", "0"])), Start::Plain(argv(true, &["exit", "0"]))];
        let timings = time_runs(&starts, &log_dir, 3, runs)?;
        // Peak resident memory of the Wine process that was started, read while its child sleeps.
        let peak = |with_damon: bool| -> Result<u64> {
            let mut child = Start::Plain(argv(with_damon, &["sleep", "2"])).spawn(&log_dir, Stdio::null())?;
            std::thread::sleep(Duration::from_millis(1500));
            let hwm = read_trimmed(format!("/proc/{}/status", child.id()))
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let _ = child.wait();
            Ok(hwm)
        };
        let (bare_hwm, damon_hwm) = (peak(false)?, peak(true)?);
        let (bare, damon) = (median(&timings[0].wall), median(&timings[1].wall));
        report.line(format!(
            "\n### Windows: damon.exe under Wine 8, {} runs of each, interleaved\n\nworkload.exe (the tests' \
             workload) run by `wine64` alone and under damon.exe; the peak RSS (VmHWM) is the started Wine \
             process's own (damon.exe's, or the workload's), read while the workload sleeps.\n",
            runs
        ));
        report.line("| run | median start to exit | peak RSS |\n|---|---|---|");
        report.line(format!("| `wine64 workload.exe exit 0` | {} | {} KiB |", ms(bare), bare_hwm));
        report.line(format!("| `wine64 damon.exe workload.exe exit 0` | {} | {} KiB |", ms(damon), damon_hwm));
        for t in &timings {
            if let Some(first) = t.failures.first() {
                report.line(format!("\n{} failed runs, e.g. {}", t.failures.len(), first));
            }
        }
        report.goal(
            "8. damon.exe start-up under Wine (median)",
            format!("{} (+{})", ms(damon), ms(damon - bare)),
            format!("workload.exe alone {}", ms(bare)),
            "(reported against the peer)",
            None,
        );
        report.goal(
            "8. peak RSS of damon.exe's Wine process",
            format!("{} KiB", damon_hwm),
            format!("workload.exe alone {} KiB", bare_hwm),
            "(reported against the peer)",
            None,
        );
        Ok(())
    }
}
