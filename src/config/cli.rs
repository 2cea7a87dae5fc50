//! The settings table and the command line built from it: one definition that `--help`, the
//! parser in [`super`] and the man page (examples/man.rs, which includes this file) all read.
//! It depends on clap and std alone so that the man page generator can include it.

use std::ffi::OsString;

use clap::{Arg, ArgAction, Command};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The commit damon was built from (set by build.rs; "unknown" outside a git checkout).
pub const BUILD_COMMIT: &str = env!("DAMON_BUILD_COMMIT");
/// What `damon` and `damon --version` print after the name: the version, the target and the
/// commit (set by build.rs).
pub const LONG_VERSION: &str =
    concat!(env!("CARGO_PKG_VERSION"), " (", env!("DAMON_BUILD_TARGET"), ", commit ", env!("DAMON_BUILD_COMMIT"), ")");

/// One setting: spelled here and nowhere else.
pub struct Setting {
    /// Long flag name without the leading dashes; also the clap id.
    pub flag: &'static str,
    pub var: &'static str,
    /// The Nomad variable used when `var` is unset.
    pub nomad_var: Option<&'static str>,
    pub value_name: &'static str,
    pub help: &'static str,
}

macro_rules! settings {
    ($($name:ident: $flag:literal, $var:literal, $nomad:expr, $value:literal, $help:literal;)*) => {
        $(pub const $name: Setting = Setting {
            flag: $flag, var: $var, nomad_var: $nomad, value_name: $value, help: $help,
        };)*
        /// Every setting, in the order `--help` and `--check` show them.
        pub const SETTINGS: &[Setting] = &[$($name),*];
    };
}

settings! {
    CPU_LIMIT: "cpu-limit", "DAMON_CPU_LIMIT", Some("NOMAD_CPU_LIMIT"), "MHZ",
        "CPU limit in MHz; 0 means none";
    ENFORCE_CPU_LIMIT: "enforce-cpu-limit", "DAMON_ENFORCE_CPU_LIMIT", None, "Y|N",
        "Enforce the CPU limit as a hard cap [default: Y]";
    CPU_CORES: "cpu-cores", "DAMON_CPU_CORES", Some("NOMAD_CPU_CORES"), "LIST",
        "CPU cores to run on, as a cpuset list such as 0-1,4: Linux: the group's cpuset, unless damon's cgroup already has it; Windows: the job's affinity [default: every core damon may use]";
    MEMORY_LIMIT: "memory-limit", "DAMON_MEMORY_LIMIT", Some("NOMAD_MEMORY_LIMIT"), "MIB",
        "Memory limit in MiB; 0 means none";
    MEMORY_MAX_LIMIT: "memory-max-limit", "DAMON_MEMORY_MAX_LIMIT", Some("NOMAD_MEMORY_MAX_LIMIT"), "MIB",
        "Hard memory limit in MiB when larger than the memory limit, which then becomes the soft limit";
    ENFORCE_MEMORY_LIMIT: "enforce-memory-limit", "DAMON_ENFORCE_MEMORY_LIMIT", None, "Y|N",
        "Enforce the memory limit [default: Y]";
    PROCESS_LIMIT: "process-limit", "DAMON_PROCESS_LIMIT", None, "N",
        "Most processes and threads the workload may hold [default: no limit]";
    IO_READ_BANDWIDTH: "io-read-bandwidth", "DAMON_IO_READ_BANDWIDTH", None, "BYTES/S",
        "Most bytes per second the workload may read from each device of --io-devices: a number, optionally with K, M, G or T (powers of 1024), e.g. 10M; 0 means none. Linux: io.max (v2), blkio.throttle (v1); Windows: the job's IO rate control, read and write together [default: none]";
    IO_WRITE_BANDWIDTH: "io-write-bandwidth", "DAMON_IO_WRITE_BANDWIDTH", None, "BYTES/S",
        "Most bytes per second the workload may write to each device of --io-devices, as --io-read-bandwidth [default: none]";
    IO_READ_IOPS: "io-read-iops", "DAMON_IO_READ_IOPS", None, "N",
        "Most read operations per second on each device of --io-devices; 0 means none [default: none]";
    IO_WRITE_IOPS: "io-write-iops", "DAMON_IO_WRITE_IOPS", None, "N",
        "Most write operations per second on each device of --io-devices; 0 means none [default: none]";
    IO_DEVICES: "io-devices", "DAMON_IO_DEVICES", None, "DEVICE,...",
        "Linux: the block devices the IO limits apply to, as paths (/dev/sda; a partition stands for its disk) or MAJ:MIN (8:0) [default: the disks that hold the task's directories: NOMAD_ALLOC_DIR and NOMAD_TASK_DIR, else the working directory]";
    NET_MAX_BANDWIDTH: "net-max-bandwidth", "DAMON_NET_MAX_BANDWIDTH", None, "BYTES/S",
        "Windows: most bytes per second the workload may send, the job's network rate control (Windows 10 1607 / Server 2016), as --io-read-bandwidth; 0 means none. Linux: refused, no cgroup controller limits the network [default: none]";
    NETWORK_ACCOUNTING: "network-accounting", "DAMON_NETWORK_ACCOUNTING", None, "Y|N",
        "Linux: count the bytes and packets the workload's sockets receive and send (cgroup BPF; where the host cannot, the run goes on uncounted) [default: Y]";
    IP_ALLOW: "ip-allow", "DAMON_IP_ALLOW", None, "PREFIX,...",
        "Linux: addresses the workload may always exchange packets with, as systemd's IPAddressAllow=: IPv4 and IPv6 addresses and prefixes (10.0.0.0/8, fd00::/8) and the keywords any, localhost, link-local and multicast; overrides --ip-deny [default: none]";
    IP_DENY: "ip-deny", "DAMON_IP_DENY", None, "PREFIX,...",
        "Linux: addresses the workload may not exchange packets with, as --ip-allow (e.g. 169.254.169.254 for the cloud's metadata service, or any with an allow list): packets are dropped and a connect() or UDP send to them fails with EPERM [default: none]";
    BIND_PORTS: "bind-ports", "DAMON_BIND_PORTS", None, "PORTS",
        "Linux: the only ports the workload may bind, TCP and UDP: nomad (the ports Nomad allocated to the task, from its NOMAD_PORT_* variables), port numbers and ranges (8080,9000-9100), or both (nomad,9100); any other bind() fails with EPERM, while a bind to port 0 and the ephemeral ports of outgoing connections stay allowed [default: any port]";
    KILL_TIMEOUT: "kill-timeout", "DAMON_KILL_TIMEOUT", None, "DURATION",
        "Time between passing a stop signal on and killing the whole tree, e.g. 500ms, 30s, 2m or plain seconds, at most 24h [default: under Nomad (NOMAD_ALLOC_ID set), none of damon's own: the job's kill_timeout ends the stop; elsewhere 30s, and a second stop signal kills the tree at once]";
    STOP_SIGNAL_SCOPE: "stop-signal-scope", "DAMON_STOP_SIGNAL_SCOPE", None, "child|tree",
        "Where a stop signal goes: child (the child alone, as Nomad does) or tree (every process of the workload, setsid and double-forked ones too, once each; on Windows the console event reaches every console process of the job in either scope, and tree also waits for all of them to end) [default: child]";
    STOP_SIGNAL: "stop-signal", "DAMON_STOP_SIGNAL", None, "SIGNAL",
        "The signal damon passes on when it is stopped, in place of the one it received: Linux: a signal's name (SIGINT, SIGQUIT, SIGUSR1...; CTRL_C is SIGINT); Windows: the console event, CTRL_BREAK (or SIGBREAK) or CTRL_C (or SIGINT), sent on the workload's own console [default: Linux: the signal received; Windows: CTRL_BREAK]";
    CGROUP_PARENT: "cgroup-parent", "DAMON_CGROUP_PARENT", None, "PATH",
        "cgroup under which damon creates its group [default: damon's own cgroup]";
    RESTRICTED_TOKEN: "restricted-token", "DAMON_RESTRICTED_TOKEN", None, "Y|N",
        "Run the child with its privileges dropped: Windows: a restricted token; Linux: no_new_privs, no capabilities, and as DAMON_USER when damon is root [default: N]";
    USER: "user", "DAMON_USER", None, "NAME|UID[:GID]",
        "Linux: run the child as this user, with its groups (needs root) [default: damon's own; nobody with --restricted-token as root]";
    SANDBOX: "sandbox", "DAMON_SANDBOX", None, "Y|N|STRICT",
        "Confine the workload, even as root: Linux: only the paths of --sandbox-paths (Landlock), no mount, module, namespace, clock, bpf or perf call and no ptrace outside its tree (seccomp), no way out of its cgroup; Windows: no desktop, atoms, USER handles, system parameters or exit-Windows, no breakaway from the job. Y does what the host allows and logs what it does not; strict refuses to start without all of it [default: N]";
    SANDBOX_PATHS: "sandbox-paths", "DAMON_SANDBOX_PATHS", None, "MODE:PATH,...",
        "Linux: where a sandboxed workload may go, as exec2's unveil: MODE is r (read), w (write), x (execute), c (create), e.g. rx:/usr,r:/etc,rwc:/data; commas or colons between rules; `defaults` adds the defaults [default: rwxc the Nomad task, alloc and secrets directories; rx /usr, /bin, /sbin, /lib*; r /etc, /proc, /sys; rw /dev/null, /dev/zero, /dev/full; r /dev/random, /dev/urandom]";
    SANDBOX_CAPABILITIES: "sandbox-capabilities", "DAMON_SANDBOX_CAPABILITIES", None, "CAP,...",
        "Linux: capabilities a sandboxed workload keeps beyond the sandbox's own set (Docker's default without NET_RAW: CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP, NET_BIND_SERVICE, SYS_CHROOT, MKNOD, AUDIT_WRITE, SETFCAP), e.g. NET_RAW,SYS_PTRACE; Windows: refused [default: none]";
    ADDR: "addr", "DAMON_ADDR", Some("NOMAD_ADDR_damon"), "HOST:PORT",
        "Serve Prometheus metrics on this address: HOST:PORT, [IPv6]:PORT or :PORT [default: no metrics server]";
    METRICS_ENDPOINT: "metrics-endpoint", "DAMON_METRICS_ENDPOINT", None, "PATH",
        "Path of the metrics endpoint [default: /metrics]";
    LOG_DIR: "log-dir", "DAMON_LOG_DIR", None, "DIR",
        "Directory of damon's log [default: $NOMAD_ALLOC_DIR/logs, else the working directory]";
    LOG_NAME: "log-name", "DAMON_LOG_NAME", None, "NAME",
        "File name of damon's log [default: $NOMAD_TASK_NAME<suffix>, else damon.log]";
    NOMAD_LOG_SUFFIX: "nomad-log-suffix", "DAMON_NOMAD_LOG_SUFFIX", None, "SUFFIX",
        "Suffix appended to the task name to name the log [default: .damon.log]";
    LOG_MAX_SIZE: "log-max-size", "DAMON_LOG_MAX_SIZE", None, "MIB",
        "Size in MiB at which the log rotates [default: 10]";
    LOG_MAX_FILES: "log-max-files", "DAMON_LOG_MAX_FILES", None, "N",
        "Rotated log files kept [default: 5]";
}

pub const CHECK_FLAG: &str = "check";
pub const COMMAND_ARG: &str = "command";

/// The command line: `--check`, a flag for every setting, then the command and its arguments.
pub fn cli() -> Command {
    let mut cmd = Command::new("damon")
        .version(LONG_VERSION)
        .about("Runs a program contained in a cgroup (Linux) or Job Object (Windows), enforces its CPU and memory limits, and stops its whole tree.")
        .override_usage("damon [OPTIONS] [--] COMMAND [ARGS]...")
        .after_help("Every option can also be set with the environment variable shown; the option wins.\nExit status: the command's own, 128+N if it died of signal N, 125 if damon failed,\n126 if the command cannot be run, 127 if it was not found.")
        .arg(
            Arg::new(CHECK_FLAG)
                .long(CHECK_FLAG)
                .action(ArgAction::SetTrue)
                .help("Report what damon can use on this host and the effective configuration, then exit"),
        );
    for s in SETTINGS {
        let mut help = format!("{} [env: {}", s.help, s.var);
        if let Some(nomad) = s.nomad_var {
            help.push_str(&format!(", then {}", nomad));
        }
        help.push(']');
        cmd = cmd.arg(
            Arg::new(s.flag)
                .long(s.flag)
                .value_name(s.value_name)
                .help(help)
                .action(ArgAction::Set)
                // "--memory-limit -1" is a bad value to name, not a flag "-1".
                .allow_hyphen_values(true)
                .value_parser(clap::value_parser!(OsString)),
        );
    }
    cmd.arg(
        Arg::new(COMMAND_ARG)
            .value_name("COMMAND")
            .num_args(1..)
            .trailing_var_arg(true)
            .value_parser(clap::value_parser!(OsString)),
    )
}
