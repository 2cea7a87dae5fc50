//! The syntax of one setting's value: numbers, booleans, durations, addresses and paths.
//!
//! Each parser takes the value as written (already trimmed of surrounding white space and
//! known not to be empty) and returns what it means, or what would have been accepted; the
//! caller adds the variable or flag and the value. Every rule here is the same on Linux and
//! Windows, so a job spec is accepted or refused alike on both.
//!
//! The bounds keep every product downstream within 64 bits: CPU MHz x 10^6 (the CPU limit in
//! hertz of the metrics), MiB x 2^20 (limits and the log size in bytes), and the kill timeout
//! added to a clock reading; core numbers stay below [`MAX_CPU_CORES`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

const BYTES_PER_MIB: u64 = 1 << 20;
const HZ_PER_MHZ: u64 = 1_000_000;
/// The largest CPU limit whose value in hertz fits in 64 bits.
pub const MAX_CPU_MHZ: u64 = u64::MAX / HZ_PER_MHZ;
/// The largest size in MiB whose value in bytes fits in 64 bits.
pub const MAX_MIB: u64 = u64::MAX / BYTES_PER_MIB;
/// Linux's PID_MAX_LIMIT: no system holds more processes, and pids.max refuses more.
pub const MAX_PROCESSES: u64 = 1 << 22;
/// More operations per second than any device performs (a fast NVMe disk: a few million).
pub const MAX_IOPS: u64 = 1_000_000_000;
/// A kill timeout longer than a day is a slip (30d for 30s), and keeps deadlines far from
/// the clock's range.
pub const MAX_KILL_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);
/// The longest file or cgroup name Linux accepts (NAME_MAX).
const MAX_NAME_BYTES: usize = 255;
/// Core numbers are below this: Linux's largest NR_CPUS (CONFIG_NR_CPUS is at most 8192, so
/// no kernel numbers a CPU 8192), and more than Windows has (64 processor groups of at most 64
/// logical processors). A larger number is a slip, not a core of some bigger machine.
pub const MAX_CPU_CORES: u32 = 8192;

/// A whole decimal number of `unit` from `min` to `max`. Only the ASCII digits 0-9: a sign,
/// a fraction, an exponent, a hexadecimal prefix, other scripts' digits ("٣", "５") and
/// white space inside the number are refused rather than guessed at.
pub fn whole_number(text: &str, unit: &str, min: u64, max: u64) -> Result<u64, String> {
    let expected = || {
        if max == u64::MAX {
            format!("a whole number of {}, at least {}", unit, min)
        } else {
            format!("a whole number of {} from {} to {}", unit, min, max)
        }
    };
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{} (digits 0-9 only)", expected()));
    }
    match text.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(expected()),
    }
}

/// A CPU limit in MHz; 0 means none.
pub fn cpu_mhz(text: &str) -> Result<u64, String> {
    whole_number(text, "MHz", 0, MAX_CPU_MHZ)
}

/// A memory limit in MiB; 0 means none.
pub fn memory_mib(text: &str) -> Result<u64, String> {
    whole_number(text, "MiB", 0, MAX_MIB)
}

/// The hard memory limit: MiB, or -1 for none (what Nomad 2.0 sets for `memory_max = -1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryMax {
    Mib(u64),
    Unlimited,
}

pub fn memory_max_mib(text: &str) -> Result<MemoryMax, String> {
    if text == "-1" {
        return Ok(MemoryMax::Unlimited);
    }
    memory_mib(text).map(MemoryMax::Mib).map_err(|e| format!("{}, or -1 for no hard limit", e))
}

pub fn process_limit(text: &str) -> Result<u64, String> {
    whole_number(text, "processes", 1, MAX_PROCESSES)
}

pub fn log_size_mib(text: &str) -> Result<u64, String> {
    whole_number(text, "MiB", 1, MAX_MIB)
}

pub fn log_files(text: &str) -> Result<usize, String> {
    let max = u64::try_from(usize::MAX).unwrap_or(u64::MAX);
    whole_number(text, "files", 0, max).map(|n| usize::try_from(n).unwrap_or(usize::MAX))
}

/// An IO bandwidth limit in bytes per second: digits, then optionally K, M, G or T (powers of
/// 1024, as systemd's IOReadBandwidthMax= and docker's --device-read-bps take them; `Ki`,
/// `KiB` and `KB` mean the same), e.g. 10M, 512K, 1G; 0 means none.
pub fn bytes_per_second(text: &str) -> Result<u64, String> {
    const EXPECTED: &str = "bytes per second: a whole number, optionally followed by K, M, G or T \
                            (powers of 1024), e.g. 10M, 512K, 1G; 0 means none";
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, suffix) = text.split_at(digits);
    let unit = suffix.trim_end_matches(['B', 'b']);
    let unit = unit.strip_suffix(['i', 'I']).unwrap_or(unit);
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(EXPECTED.to_string()),
    };
    if number.is_empty() || suffix.len() > 3 {
        return Err(EXPECTED.to_string());
    }
    let n: u64 = number.parse().map_err(|_| EXPECTED.to_string())?;
    n.checked_mul(1 << shift).ok_or_else(|| format!("{} (at most {} bytes per second)", EXPECTED, u64::MAX))
}

/// An IO operations limit per second; 0 means none.
pub fn iops(text: &str) -> Result<u64, String> {
    whole_number(text, "operations per second", 0, MAX_IOPS)
}

/// A block device named in DAMON_IO_DEVICES.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IoDevice {
    /// A device node, e.g. /dev/sda or /dev/nvme0n1p2 (a partition stands for its disk).
    Path(PathBuf),
    /// MAJ:MIN, as /proc/partitions and `lsblk` show them.
    Number { major: u32, minor: u32 },
}

impl fmt::Display for IoDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IoDevice::Path(path) => write!(f, "{}", path.display()),
            IoDevice::Number { major, minor } => write!(f, "{}:{}", major, minor),
        }
    }
}

/// DAMON_IO_DEVICES: device paths or MAJ:MIN numbers, separated by commas.
pub fn io_devices(text: &str) -> Result<Vec<IoDevice>, String> {
    const EXPECTED: &str = "block devices separated by commas, each a path such as /dev/sda or MAJ:MIN such as 8:0";
    let mut devices = Vec::new();
    for item in text.split(',') {
        let item = item.trim();
        let device = if item.starts_with('/') {
            IoDevice::Path(PathBuf::from(item))
        } else {
            let number =
                |t: &str| if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) { t.parse().ok() } else { None };
            match item.split_once(':').map(|(a, b)| (number(a), number(b))) {
                Some((Some(major), Some(minor))) => IoDevice::Number { major, minor },
                _ => return Err(format!("{}: {:?} is neither", EXPECTED, item)),
            }
        };
        if !devices.contains(&device) {
            devices.push(device);
        }
    }
    Ok(devices)
}

/// DAMON_STOP_SIGNAL_SCOPE.
pub fn stop_scope(text: &str) -> Result<super::StopScope, String> {
    match text.to_ascii_lowercase().as_str() {
        "child" => Ok(super::StopScope::Child),
        "tree" => Ok(super::StopScope::Tree),
        _ => Err("child or tree".to_string()),
    }
}

/// The signals a stop may become (DAMON_STOP_SIGNAL), as Nomad's `kill_signal` names them.
#[cfg(unix)]
const STOP_SIGNALS: &str = "a signal's name: SIGTERM, SIGINT (or CTRL_C), SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, \
                            SIGWINCH, SIGKILL, ...";

/// DAMON_STOP_SIGNAL on Linux: the signal's number; `SIG` may be left out, and CTRL_C is
/// SIGINT (what it means on Windows). A signal that stops or resumes a process, or that no
/// process dies of, is refused.
#[cfg(unix)]
pub fn stop_signal(text: &str) -> Result<Option<i32>, String> {
    use nix::sys::signal::Signal;
    let upper = text.to_ascii_uppercase();
    let name = match upper.as_str() {
        "CTRL_C" => "SIGINT".to_string(),
        "CTRL_BREAK" | "SIGBREAK" => {
            return Err(format!("{} (Ctrl+Break is a Windows console event; Linux has no such signal)", STOP_SIGNALS))
        }
        name if name.starts_with("SIG") => name.to_string(),
        name => format!("SIG{}", name),
    };
    match name.parse::<Signal>() {
        Ok(
            Signal::SIGSTOP | Signal::SIGTSTP | Signal::SIGTTIN | Signal::SIGTTOU | Signal::SIGCONT | Signal::SIGCHLD,
        ) => Err(format!("{} ({} stops, resumes or tells of a child: it ends no process)", STOP_SIGNALS, name)),
        Ok(signal) => Ok(Some(signal as i32)),
        Err(_) => Err(STOP_SIGNALS.to_string()),
    }
}

/// DAMON_STOP_SIGNAL on Windows: the console event damon.exe sends, by number (wincon.h):
/// Ctrl+Break (or SIGBREAK), as Nomad's executor sends it, or Ctrl+C (or SIGINT), which a
/// Python program takes as KeyboardInterrupt and a JVM as the end, where Ctrl+Break only makes
/// it print its threads.
#[cfg(windows)]
pub fn stop_signal(text: &str) -> Result<Option<i32>, String> {
    match text.to_ascii_uppercase().as_str() {
        "CTRL_BREAK" | "SIGBREAK" => Ok(Some(CTRL_BREAK_EVENT)),
        "CTRL_C" | "SIGINT" => Ok(Some(CTRL_C_EVENT)),
        _ => Err("CTRL_BREAK (or SIGBREAK) or CTRL_C (or SIGINT)".to_string()),
    }
}

/// wincon.h's CTRL_C_EVENT and CTRL_BREAK_EVENT.
#[cfg(windows)]
const CTRL_C_EVENT: i32 = 0;
#[cfg(windows)]
const CTRL_BREAK_EVENT: i32 = 1;

/// What a stop becomes when DAMON_STOP_SIGNAL is unset: on Linux the signal received, on
/// Windows Ctrl+Break, whatever console event damon.exe received (as the original did).
#[cfg(unix)]
pub const DEFAULT_STOP_SIGNAL: Option<i32> = None;
#[cfg(windows)]
pub const DEFAULT_STOP_SIGNAL: Option<i32> = Some(CTRL_BREAK_EVENT);

/// The original's booleans: y, yes, true, 1 and n, no, false, 0, in any case.
pub fn boolean(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "y" | "yes" | "true" | "1" => Ok(true),
        "n" | "no" | "false" | "0" => Ok(false),
        _ => Err("Y or N (also yes/no, true/false, 1/0)".to_string()),
    }
}

/// Plain seconds ("30") or a duration such as "500ms", "2m" or "1m 30s" (humantime's syntax),
/// at most [`MAX_KILL_TIMEOUT`].
pub fn kill_timeout(text: &str) -> Result<Duration, String> {
    let expected = format!(
        "a duration such as 500ms, 30s, 2m or 1m 30s, or plain seconds, at most {}",
        humantime::format_duration(MAX_KILL_TIMEOUT)
    );
    // humantime reads "5 0s" as 50s: white space may only part a unit from the next number.
    let chars: Vec<char> = text.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        if c.is_whitespace() {
            let before = chars[..i].iter().rev().find(|c| !c.is_whitespace());
            let after = chars[i..].iter().find(|c| !c.is_whitespace());
            if !(before.map_or(false, |c| c.is_ascii_alphabetic()) && after.map_or(false, |c| c.is_ascii_digit())) {
                return Err(expected);
            }
        }
    }
    let duration = if text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse().ok().map(Duration::from_secs)
    } else {
        humantime::parse_duration(text).ok()
    };
    duration.filter(|d| *d <= MAX_KILL_TIMEOUT).ok_or(expected)
}

/// Where the metrics server listens: an IP literal, or a host name resolved when it binds
/// (a name that does not resolve is then a warning, as is an address that cannot be bound).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Ip(SocketAddr),
    Name { host: String, port: u16 },
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Ip(addr) => write!(f, "{}", addr),
            ListenAddr::Name { host, port } => write!(f, "{}:{}", host, port),
        }
    }
}

/// `HOST:PORT` where HOST is an IPv4 address, a host name or `localhost`; `[IPv6]:PORT`;
/// or `:PORT` for every IPv4 interface (as the original's Go listener read it).
pub fn listen_addr(text: &str) -> Result<ListenAddr, String> {
    let refuse = |why: &str| {
        Err(format!("HOST:PORT, [IPv6]:PORT or :PORT with a port from 0 to 65535, e.g. 127.0.0.1:9000 ({})", why))
    };
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return refuse("no white space");
    }
    if text.starts_with('[') {
        return match text.parse::<SocketAddr>() {
            Ok(addr) => Ok(ListenAddr::Ip(addr)),
            Err(_) => refuse("not a bracketed IPv6 address and port"),
        };
    }
    let (host, port) = match text.rsplit_once(':') {
        Some(parts) => parts,
        None => return refuse("the port is missing"),
    };
    if host.contains(':') {
        return refuse("an IPv6 address needs brackets, as in [::1]:9000");
    }
    if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return refuse("the port is not a number");
    }
    let port = match port.parse::<u16>() {
        Ok(port) => port,
        Err(_) => return refuse("the port is out of range"),
    };
    if host.is_empty() {
        return Ok(ListenAddr::Ip(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)));
    }
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok(ListenAddr::Ip(SocketAddr::new(IpAddr::V4(ip), port)));
    }
    // A name whose last label is a number would be read by some resolvers as an IPv4
    // address in an old form ("1.2.3" is 1.2.0.3): only the dotted quad is an address.
    let last_label = host.trim_end_matches('.').rsplit('.').next().unwrap_or("");
    if !last_label.is_empty() && last_label.bytes().all(|b| b.is_ascii_digit()) {
        return refuse("not an IPv4 address");
    }
    if !is_host_name(host) {
        return refuse("not a host name");
    }
    Ok(ListenAddr::Name { host: host.to_string(), port })
}

/// A DNS host name: dot-separated labels of letters, digits, '-' and '_' (not starting or
/// ending with '-'), 1 to 63 characters each, 253 in all, with an optional final dot.
fn is_host_name(host: &str) -> bool {
    let name = host.strip_suffix('.').unwrap_or(host);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// The path of the metrics endpoint, as it appears in a request: '/' and printable ASCII,
/// without white space, '?' (a query, which the server ignores) or '#'.
pub fn endpoint(text: &str) -> Result<String, String> {
    let valid = text.starts_with('/') && text.bytes().all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#');
    if valid {
        Ok(text.to_string())
    } else {
        Err("a path starting with / such as /metrics (printable ASCII, no white space, ? or #)".to_string())
    }
}

/// A cgroup path from the hierarchy's root ("nomad.slice/damon" is "/nomad.slice/damon").
/// '/' parts it on every platform; ".." could escape the hierarchy; a control character or
/// a name longer than 255 bytes the kernel would refuse.
pub fn cgroup_path(text: &str) -> Result<PathBuf, String> {
    let expected =
        "a cgroup path such as /nomad.slice/damon: names of at most 255 bytes, without .. or control characters";
    if text.chars().any(char::is_control) {
        return Err(expected.to_string());
    }
    let mut clean = String::new();
    for part in text.split('/').filter(|p| !p.is_empty() && *p != ".") {
        if part == ".." || part.len() > MAX_NAME_BYTES {
            return Err(expected.to_string());
        }
        clean.push('/');
        clean.push_str(part);
    }
    // Joined with '/' here, not by PathBuf::push, whose separator is '\\' on Windows.
    Ok(PathBuf::from(if clean.is_empty() { "/".to_string() } else { clean }))
}

/// A directory for the log. It need not exist (damon creates it, or falls back to stderr).
pub fn log_dir(text: &str) -> Result<PathBuf, String> {
    if text.chars().any(char::is_control) {
        return Err("a directory path without control characters".to_string());
    }
    // On Windows `\\server` alone is no directory: the log's name after it would be taken
    // for a share's, and the log would have no file name.
    if Path::new(text).join("damon.log").file_name().is_none() {
        return Err(
            "a directory a file can be created in (a server alone, \\\\server, is not: name its share)".to_string()
        );
    }
    Ok(PathBuf::from(text))
}

/// A file name for the log: one name, not a path.
pub fn log_name(text: &str) -> Result<String, String> {
    let valid = text != "."
        && text != ".."
        && text.len() <= MAX_NAME_BYTES
        && !text.chars().any(|c| c == '/' || c == '\\' || c.is_control());
    if valid {
        Ok(text.to_string())
    } else {
        Err("a file name such as damon.log: at most 255 bytes, not . or .., without / \\ or control characters"
            .to_string())
    }
}

/// What follows the task's name in the log's file name.
pub fn log_suffix(text: &str) -> Result<String, String> {
    if text.len() <= MAX_NAME_BYTES && !text.chars().any(|c| c == '/' || c == '\\' || c.is_control()) {
        Ok(text.to_string())
    } else {
        Err("a file name suffix such as .damon.log: at most 255 bytes, without / \\ or control characters".to_string())
    }
}

/// CPU cores by number, as a cpuset list names them ("0-1,4"): sorted, without duplicates,
/// kept as ranges of consecutive cores. Shown in the kernel's own notation (consecutive cores
/// as a range: "0-1,4"), which is also what Nomad writes into NOMAD_CPU_CORES.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CpuCores {
    /// Disjoint, not adjacent, in order: (first, last), first <= last.
    ranges: Vec<(u32, u32)>,
}

impl CpuCores {
    /// The cores of `ranges` (any order, overlaps allowed).
    fn from_ranges(mut ranges: Vec<(u32, u32)>) -> CpuCores {
        ranges.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
        for (first, last) in ranges {
            match merged.last_mut() {
                // Overlapping or adjacent ("0-1,2"): one range.
                Some(previous) if first <= previous.1.saturating_add(1) => previous.1 = previous.1.max(last),
                _ => merged.push((first, last)),
            }
        }
        CpuCores { ranges: merged }
    }

    /// The cores named, in any order.
    pub fn from_cores(cores: impl IntoIterator<Item = u32>) -> CpuCores {
        CpuCores::from_ranges(cores.into_iter().map(|core| (core, core)).collect())
    }

    /// A list the kernel wrote (cpuset.cpus.effective, /sys/devices/system/cpu/online): the same
    /// notation, and empty (no cpus) is an empty set.
    #[cfg_attr(windows, allow(dead_code))]
    pub fn from_kernel_list(text: &str) -> Result<CpuCores, String> {
        let text = text.trim();
        if text.is_empty() {
            Ok(CpuCores::default())
        } else {
            cpu_cores(text)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// How many cores.
    pub fn count(&self) -> u32 {
        self.ranges.iter().map(|(first, last)| last - first + 1).sum()
    }

    /// Every core, in order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.ranges.iter().flat_map(|&(first, last)| first..=last)
    }

    pub fn contains(&self, core: u32) -> bool {
        self.ranges.iter().any(|&(first, last)| (first..=last).contains(&core))
    }

    /// Whether every core of `self` is one of `other`'s.
    #[cfg_attr(windows, allow(dead_code))]
    pub fn is_subset_of(&self, other: &CpuCores) -> bool {
        // `other`'s ranges are maximal: a run of consecutive cores lies within one of them.
        self.ranges.iter().all(|&(first, last)| other.ranges.iter().any(|&(f, l)| f <= first && last <= l))
    }

    /// The cores of `self` that are not in `other`.
    pub fn without(&self, other: &CpuCores) -> CpuCores {
        CpuCores::from_cores(self.iter().filter(|&core| !other.contains(core)))
    }
}

impl fmt::Display for CpuCores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &(first, last)) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if first == last {
                write!(f, "{}", first)?;
            } else {
                write!(f, "{}-{}", first, last)?;
            }
        }
        Ok(())
    }
}

/// DAMON_CPU_CORES and NOMAD_CPU_CORES: a cpuset list such as "0-1,4": core numbers and
/// ranges A-B (A <= B) separated by commas, ASCII digits only, no white space, no empty
/// element, every core below [`MAX_CPU_CORES`]. The order does not matter and a core named
/// twice counts once, as for the kernel.
pub fn cpu_cores(text: &str) -> Result<CpuCores, String> {
    let expected = || {
        format!(
            "a cpuset list of core numbers from 0 to {} such as 0-1,4: numbers and ranges A-B with A <= B, separated by commas, digits 0-9 only, no white space",
            MAX_CPU_CORES - 1
        )
    };
    let core = |digits: &str| -> Result<u32, String> {
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(expected());
        }
        match digits.parse::<u32>() {
            Ok(n) if n < MAX_CPU_CORES => Ok(n),
            _ => Err(format!("{} (core {} is beyond any machine)", expected(), digits)),
        }
    };
    let mut ranges = Vec::new();
    for element in text.split(',') {
        let range = match element.split_once('-') {
            Some((first, last)) => (core(first)?, core(last)?),
            None => (core(element)?, core(element)?),
        };
        if range.0 > range.1 {
            return Err(format!("{} ({} runs backwards)", expected(), element));
        }
        ranges.push(range);
    }
    Ok(CpuCores::from_ranges(ranges))
}

/// A user as DAMON_USER names it: a name, or numeric ids (which need no entry in the user
/// database when the group is given too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserSpec {
    Name(String),
    Id { uid: u32, gid: Option<u32> },
}

impl fmt::Display for UserSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserSpec::Name(name) => f.write_str(name),
            UserSpec::Id { uid, gid: None } => write!(f, "{}", uid),
            UserSpec::Id { uid, gid: Some(gid) } => write!(f, "{}:{}", uid, gid),
        }
    }
}

/// DAMON_USER: a user name, or `uid[:gid]`.
pub fn user(text: &str) -> Result<UserSpec, String> {
    let expected = "a user name, or a uid with an optional gid (uid[:gid]), such as nobody or 1000:1000";
    let id = |digits: &str| -> Result<u32, String> {
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(expected.to_string());
        }
        // (uid_t)-1 means "leave unchanged" to setresuid(2): it is no one's id.
        match digits.parse::<u32>() {
            Ok(id) if id != u32::MAX => Ok(id),
            _ => Err(format!("{} (an id is at most {})", expected, u32::MAX - 1)),
        }
    };
    match text.split_once(':') {
        Some((uid, gid)) => Ok(UserSpec::Id { uid: id(uid)?, gid: Some(id(gid)?) }),
        None if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(UserSpec::Id { uid: id(text)?, gid: None })
        }
        None if is_user_name(text) => Ok(UserSpec::Name(text.to_string())),
        None => Err(expected.to_string()),
    }
}

/// The portable user name characters (POSIX), `@` (directory users) and a trailing `$`
/// (Samba machine accounts); a leading `-` would read as an option to other tools.
fn is_user_name(name: &str) -> bool {
    let body = name.strip_suffix('$').unwrap_or(name);
    !body.is_empty()
        && body.len() <= MAX_NAME_BYTES
        && !body.starts_with('-')
        && body.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'@'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `\\1` as DAMON_LOG_DIR made the log `\\1\damon.log` on Windows, a share with no file
    /// (found by the configuration's fuzzing under Wine).
    #[test]
    #[cfg(windows)]
    fn a_server_alone_is_no_log_directory_on_windows() {
        assert!(log_dir("\\\\1").is_err());
        assert!(log_dir("\\\\server\\share").is_ok());
        assert!(log_dir("C:\\logs").is_ok());
    }

    #[test]
    fn stop_scope_is_child_or_tree() {
        assert_eq!(stop_scope("child"), Ok(super::super::StopScope::Child));
        assert_eq!(stop_scope("Tree"), Ok(super::super::StopScope::Tree));
        assert!(stop_scope("all").unwrap_err().contains("child"));
    }

    #[cfg(unix)]
    #[test]
    fn stop_signals_are_named_as_nomad_names_them() {
        assert_eq!(stop_signal("SIGINT"), Ok(Some(2)));
        assert_eq!(stop_signal("int"), Ok(Some(2)));
        assert_eq!(stop_signal("CTRL_C"), Ok(Some(2)));
        assert_eq!(stop_signal("SIGQUIT"), Ok(Some(3)));
        assert_eq!(stop_signal("SIGKILL"), Ok(Some(9)));
        for refused in ["SIGSTOP", "TSTP", "SIGCONT", "SIGCHLD", "CTRL_BREAK", "SIGBREAK", "15", "SIGNOPE", ""] {
            let e = stop_signal(refused).unwrap_err();
            assert!(e.starts_with("a signal's name: SIGTERM"), "{}: {}", refused, e);
        }
        assert!(stop_signal("CTRL_BREAK").unwrap_err().contains("Windows"));
    }

    #[test]
    fn numbers_are_ascii_digits_within_bounds() {
        assert_eq!(memory_mib("0512"), Ok(512));
        assert_eq!(memory_mib(&MAX_MIB.to_string()), Ok(MAX_MIB));
        assert_eq!(cpu_mhz(&MAX_CPU_MHZ.to_string()), Ok(MAX_CPU_MHZ));
        for bad in ["+5", "-1", "1e3", "0x10", "1.5", "1_000", "1,000", "٣", "５", "1 0", "5\t0", "NaN", "inf"] {
            assert!(memory_mib(bad).unwrap_err().contains("digits 0-9 only"), "{:?}", bad);
        }
        let too_large = (MAX_MIB + 1).to_string();
        assert_eq!(memory_mib(&too_large), Err(format!("a whole number of MiB from 0 to {}", MAX_MIB)));
        assert!(cpu_mhz(&(MAX_CPU_MHZ + 1).to_string()).is_err());
        assert!(cpu_mhz("99999999999999999999999").is_err());
        assert!(process_limit("0").is_err() && process_limit("4194305").is_err());
        assert_eq!(process_limit("4194304"), Ok(MAX_PROCESSES));
        assert!(log_size_mib("0").is_err());
    }

    #[test]
    fn the_bounds_keep_products_in_64_bits() {
        assert!(MAX_CPU_MHZ.checked_mul(HZ_PER_MHZ).is_some());
        assert!((MAX_CPU_MHZ + 1).checked_mul(HZ_PER_MHZ).is_none());
        assert!(MAX_MIB.checked_mul(BYTES_PER_MIB).is_some());
        assert!((MAX_MIB + 1).checked_mul(BYTES_PER_MIB).is_none());
        // The Linux CFS quota (x 100000 us) and the Windows CPU rate (x 10000) fit too.
        assert!(MAX_CPU_MHZ.checked_mul(100_000).is_some());
    }

    #[test]
    fn durations_refuse_white_space_inside_a_number() {
        assert_eq!(kill_timeout("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(kill_timeout("45"), Ok(Duration::from_secs(45)));
        assert_eq!(kill_timeout("24h"), Ok(MAX_KILL_TIMEOUT));
        for bad in ["5 0s", "5\t0s", "3 0", "5 s", "25h", "1y", "-3s", "NaN", "٣s", "３s", "99999999999999999999"] {
            assert!(kill_timeout(bad).is_err(), "{:?}", bad);
        }
    }

    #[test]
    fn addresses_are_checked_before_any_bind() {
        let ip = |s: &str| Ok(ListenAddr::Ip(s.parse().unwrap()));
        assert_eq!(listen_addr("127.0.0.1:9000"), ip("127.0.0.1:9000"));
        assert_eq!(listen_addr(":9000"), ip("0.0.0.0:9000"));
        assert_eq!(listen_addr("[::1]:9000"), ip("[::1]:9000"));
        assert_eq!(listen_addr("localhost:80"), Ok(ListenAddr::Name { host: "localhost".to_string(), port: 80 }));
        assert_eq!(
            listen_addr("node-1.dc1.consul.:80").map(|a| a.to_string()),
            Ok("node-1.dc1.consul.:80".to_string())
        );
        for bad in [
            "localhost",
            "1.2.3.4:",
            ":notaport",
            "[::1",
            "[::1]",
            "host:99999",
            "host:-1",
            "::1:80",
            "1.2.3:80",
            "256.1.1.1:80",
            "a b:80",
            "127.0.0.1: 80",
            "-host:80",
            "*:80",
            "höst:80",
            "127.0.0.1:٨٠",
        ] {
            assert!(listen_addr(bad).is_err(), "{:?}", bad);
        }
    }

    #[test]
    fn paths_and_names() {
        assert_eq!(endpoint("/metrics"), Ok("/metrics".to_string()));
        for bad in ["metrics", "/a b", "/m?x", "/m#x", "/m\u{1}", "/métriques"] {
            assert!(endpoint(bad).is_err(), "{:?}", bad);
        }
        assert_eq!(cgroup_path("nomad.slice//./x/"), Ok(PathBuf::from("/nomad.slice/x")));
        assert_eq!(cgroup_path("/"), Ok(PathBuf::from("/")));
        for bad in ["/a/../b", "..", "a\nb", "a\u{7f}"] {
            assert!(cgroup_path(bad).is_err(), "{:?}", bad);
        }
        assert!(cgroup_path(&"x".repeat(256)).is_err());
        for bad in [".", "..", "a/b", "a\\b", "a\nb", "/"] {
            assert!(log_name(bad).is_err(), "{:?}", bad);
        }
        assert!(log_suffix("/x").is_err() && log_dir("/tmp/\u{1b}[31m").is_err());
    }

    #[test]
    fn cpu_core_lists_are_strict_and_read_back_in_canonical_form() {
        let cores = |text: &str| cpu_cores(text).map(|c| c.to_string());
        assert_eq!(cores("0-1,4"), Ok("0-1,4".to_string()));
        assert_eq!(cores("4,1,0"), Ok("0-1,4".to_string()));
        assert_eq!(cores("0,1,2,2,1-3,7"), Ok("0-3,7".to_string()));
        assert_eq!(cores("00,8191"), Ok("0,8191".to_string()));
        assert_eq!(cores("3-3"), Ok("3".to_string()));
        assert_eq!(cpu_cores("0-8191").unwrap().count(), 8192);
        for bad in [
            "",
            ",",
            "0,",
            ",0",
            "0,,1",
            "-",
            "0-",
            "-1",
            "1-0",
            "0-1-2",
            "+1",
            "0x1",
            "1.5",
            "1e3",
            "NaN",
            "a",
            "8192",
            "0-8192",
            "4294967296",
            "99999999999999999999",
            "\u{663}",
            "\u{ff11}",
            "0, 1",
            " 0",
            "0 -1",
            "1\t2",
        ] {
            assert!(cpu_cores(bad).is_err(), "{:?}", bad);
        }
        assert!(cpu_cores("3-1").unwrap_err().contains("3-1 runs backwards"));
        assert!(cpu_cores("9000").unwrap_err().contains("core 9000 is beyond any machine"));
    }

    #[test]
    fn cpu_core_sets() {
        let set = |text: &str| CpuCores::from_kernel_list(text).unwrap();
        assert!(set("0").is_subset_of(&set("0-1\n")));
        assert!(set("1-2").is_subset_of(&set("0-3,8")));
        assert!(!set("1-4").is_subset_of(&set("0-3,5")));
        assert!(!set("7").is_subset_of(&set("0-1")));
        assert!(set("").is_empty() && set("").is_subset_of(&set("0")));
        assert_eq!(set("0-7").without(&set("2-3,6")).to_string(), "0-1,4-5,7");
        assert_eq!(set("0-3,8").iter().collect::<Vec<_>>(), vec![0, 1, 2, 3, 8]);
        assert!(CpuCores::from_kernel_list("0-1 x").is_err());
    }

    #[test]
    fn bandwidths_take_binary_suffixes() {
        assert_eq!(bytes_per_second("0"), Ok(0));
        assert_eq!(bytes_per_second("1048576"), Ok(1 << 20));
        for (text, bytes) in [("512K", 512 << 10), ("10M", 10 << 20), ("10m", 10 << 20), ("10MiB", 10 << 20)] {
            assert_eq!(bytes_per_second(text), Ok(bytes), "{}", text);
        }
        assert_eq!(bytes_per_second("1G"), Ok(1 << 30));
        assert_eq!(bytes_per_second("2T"), Ok(2 << 40));
        for bad in ["", "M", "10X", "1.5M", "-1", "10 M", "10MiBs", "17179869184T"] {
            assert!(bytes_per_second(bad).is_err(), "{:?} accepted", bad);
        }
    }

    #[test]
    fn io_devices_are_paths_or_numbers() {
        assert_eq!(
            io_devices("/dev/sda,8:16,/dev/sda"),
            Ok(vec![IoDevice::Path(PathBuf::from("/dev/sda")), IoDevice::Number { major: 8, minor: 16 }])
        );
        for bad in ["sda", "8:", ":0", "8:0:1", "8:0,", "-8:0", "4294967296:0"] {
            assert!(io_devices(bad).is_err(), "{:?} accepted", bad);
        }
    }
}

/// An IPv4 or IPv6 prefix of DAMON_IP_ALLOW or DAMON_IP_DENY, its host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpPrefix {
    pub addr: IpAddr,
    pub len: u8,
}

impl std::fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl IpPrefix {
    fn new(addr: IpAddr, len: u8) -> IpPrefix {
        let addr = match addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).into())
            }
        };
        IpPrefix { addr, len }
    }
}

/// systemd's keywords of IPAddressAllow= and IPAddressDeny= (systemd.resource-control(5)).
const IP_KEYWORDS: [(&str, &[&str]); 4] = [
    ("any", &["0.0.0.0/0", "::/0"]),
    ("localhost", &["127.0.0.0/8", "::1/128"]),
    ("link-local", &["169.254.0.0/16", "fe80::/64"]),
    ("multicast", &["224.0.0.0/4", "ff00::/8"]),
];

/// A list of addresses and prefixes, with systemd's keywords, separated by commas.
pub fn ip_prefixes(text: &str) -> Result<Vec<IpPrefix>, String> {
    const EXPECTED: &str = "comma-separated IPv4 or IPv6 addresses or prefixes (192.0.2.1, 10.0.0.0/8, \
                            fd00::/8) or the keywords any, localhost, link-local and multicast";
    let mut prefixes = Vec::new();
    for item in text.split(',') {
        if item.is_empty() {
            return Err(format!("an empty element: expected {}", EXPECTED));
        }
        if let Some((_, expansion)) = IP_KEYWORDS.iter().find(|(k, _)| k.eq_ignore_ascii_case(item)) {
            prefixes.extend(expansion.iter().map(|p| ip_prefix(p).expect("the keywords' prefixes are valid")));
            continue;
        }
        prefixes.push(ip_prefix(item).map_err(|why| format!("{:?} {}: expected {}", item, why, EXPECTED))?);
    }
    Ok(prefixes)
}

fn ip_prefix(item: &str) -> Result<IpPrefix, String> {
    let (addr, len) = match item.split_once('/') {
        Some((addr, len)) => (addr, Some(len)),
        None => (item, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| "is not an IP address".to_string())?;
    let max: u8 = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => max,
        Some(len) => match len.parse::<u8>() {
            Ok(len) if len <= max => len,
            _ => return Err(format!("has a prefix length that is not 0 to {}", max)),
        },
    };
    Ok(IpPrefix::new(addr, len))
}

#[cfg(test)]
mod bind_ports_tests {
    use super::*;

    #[test]
    fn nomad_ports_and_ranges_are_read() {
        let spec = bind_ports("nomad,8080,9000-9100").unwrap();
        assert!(spec.nomad);
        let shown: Vec<String> = spec.ranges.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["8080", "9000-9100"]);
        assert!(!bind_ports("443").unwrap().nomad);
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in ["", ",", "0", "65536", "80-70", "http", "nomad,", "80,,81", "-80", "80-", "80 ,81", "1-2-3"] {
            assert!(bind_ports(bad).is_err(), "{:?} accepted", bad);
        }
    }
}

#[cfg(test)]
mod ip_prefix_tests {
    use super::*;

    fn shown(text: &str) -> Result<Vec<String>, String> {
        ip_prefixes(text).map(|list| list.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn addresses_prefixes_and_keywords_are_read_with_their_host_bits_cleared() {
        assert_eq!(shown("192.0.2.1").unwrap(), ["192.0.2.1/32"]);
        assert_eq!(shown("10.1.2.3/8,fd00::1/8").unwrap(), ["10.0.0.0/8", "fd00::/8"]);
        assert_eq!(shown("::1").unwrap(), ["::1/128"]);
        assert_eq!(shown("0.0.0.0/0").unwrap(), ["0.0.0.0/0"]);
        assert_eq!(shown("localhost").unwrap(), ["127.0.0.0/8", "::1/128"]);
        assert_eq!(shown("Link-Local,multicast").unwrap(), ["169.254.0.0/16", "fe80::/64", "224.0.0.0/4", "ff00::/8"]);
        assert_eq!(shown("any").unwrap(), ["0.0.0.0/0", "::/0"]);
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in ["", ",", "10.0.0.1,", "example.com", "10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/-1", "1.2.3"] {
            assert!(ip_prefixes(bad).is_err(), "{:?} accepted", bad);
        }
        assert!(ip_prefixes("10.0.0. 1").is_err());
        assert!(ip_prefixes(" 10.0.0.1").is_err());
    }
}

/// DAMON_BIND_PORTS as written: `nomad` (the task's NOMAD_PORT_* ports) and port ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindPortsSpec {
    pub nomad: bool,
    pub ranges: Vec<PortRange>,
}

/// Ports `first` to `last`, both included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// A port of 1 to 65535, digits only.
pub fn port(text: &str) -> Result<u16, String> {
    whole_number(text, "port", 1, 65535)
        .map(|p| p as u16)
        .map_err(|_| "a port from 1 to 65535 (digits 0-9 only)".to_string())
}

/// `nomad`, ports and ranges `A-B` (A <= B), separated by commas.
pub fn bind_ports(text: &str) -> Result<BindPortsSpec, String> {
    const EXPECTED: &str = "nomad (the ports Nomad allocated to the task), ports from 1 to 65535 and ranges A-B, \
                            separated by commas, e.g. nomad,9000-9100";
    let mut spec = BindPortsSpec { nomad: false, ranges: Vec::new() };
    for item in text.split(',') {
        if item.eq_ignore_ascii_case("nomad") {
            spec.nomad = true;
            continue;
        }
        let (first, last) = item.split_once('-').unwrap_or((item, item));
        match (port(first), port(last)) {
            (Ok(first), Ok(last)) if first <= last => spec.ranges.push(PortRange { first, last }),
            _ => return Err(format!("{:?} is not a port or range: expected {}", item, EXPECTED)),
        }
    }
    Ok(spec)
}
