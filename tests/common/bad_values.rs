//! Bad values for every setting of damon, by class, shared by tests/bad_input.rs (the Linux
//! binary) and tests/windows_wine.rs (damon.exe under Wine). `every_setting_is_covered` in
//! tests/bad_input.rs checks SETTINGS against `damon --help`.
#![allow(dead_code)]

#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Mhz,
    Mib,
    /// MiB, or -1 for no hard limit.
    MaxMib,
    LogMib,
    Processes,
    Files,
    Boolean,
    Duration,
    Address,
    Endpoint,
    CgroupPath,
    LogDir,
    LogName,
    LogSuffix,
    User,
    Cores,
    StopScope,
    StopSignal,
    Sandbox,
    SandboxPaths,
    SandboxCapabilities,
    /// Bytes per second, with K, M, G or T.
    Bandwidth,
    Iops,
    IoDevices,
    /// Addresses and prefixes, IPv4 and IPv6, and systemd's keywords.
    IpPrefixes,
    /// `nomad`, ports and port ranges.
    BindPorts,
}

/// Every setting: flag, variable, Nomad variable, kind. `every_setting_is_covered` checks it
/// against `damon --help`.
pub const SETTINGS: &[(&str, &str, Option<&str>, Kind)] = &[
    ("--cpu-limit", "DAMON_CPU_LIMIT", Some("NOMAD_CPU_LIMIT"), Kind::Mhz),
    ("--enforce-cpu-limit", "DAMON_ENFORCE_CPU_LIMIT", None, Kind::Boolean),
    ("--cpu-cores", "DAMON_CPU_CORES", Some("NOMAD_CPU_CORES"), Kind::Cores),
    ("--memory-limit", "DAMON_MEMORY_LIMIT", Some("NOMAD_MEMORY_LIMIT"), Kind::Mib),
    ("--memory-max-limit", "DAMON_MEMORY_MAX_LIMIT", Some("NOMAD_MEMORY_MAX_LIMIT"), Kind::MaxMib),
    ("--enforce-memory-limit", "DAMON_ENFORCE_MEMORY_LIMIT", None, Kind::Boolean),
    ("--process-limit", "DAMON_PROCESS_LIMIT", None, Kind::Processes),
    ("--io-read-bandwidth", "DAMON_IO_READ_BANDWIDTH", None, Kind::Bandwidth),
    ("--io-write-bandwidth", "DAMON_IO_WRITE_BANDWIDTH", None, Kind::Bandwidth),
    ("--io-read-iops", "DAMON_IO_READ_IOPS", None, Kind::Iops),
    ("--io-write-iops", "DAMON_IO_WRITE_IOPS", None, Kind::Iops),
    ("--io-devices", "DAMON_IO_DEVICES", None, Kind::IoDevices),
    ("--net-max-bandwidth", "DAMON_NET_MAX_BANDWIDTH", None, Kind::Bandwidth),
    ("--network-accounting", "DAMON_NETWORK_ACCOUNTING", None, Kind::Boolean),
    ("--ip-allow", "DAMON_IP_ALLOW", None, Kind::IpPrefixes),
    ("--ip-deny", "DAMON_IP_DENY", None, Kind::IpPrefixes),
    ("--bind-ports", "DAMON_BIND_PORTS", None, Kind::BindPorts),
    ("--kill-timeout", "DAMON_KILL_TIMEOUT", None, Kind::Duration),
    ("--stop-signal-scope", "DAMON_STOP_SIGNAL_SCOPE", None, Kind::StopScope),
    ("--stop-signal", "DAMON_STOP_SIGNAL", None, Kind::StopSignal),
    ("--cgroup-parent", "DAMON_CGROUP_PARENT", None, Kind::CgroupPath),
    ("--restricted-token", "DAMON_RESTRICTED_TOKEN", None, Kind::Boolean),
    ("--user", "DAMON_USER", None, Kind::User),
    ("--sandbox", "DAMON_SANDBOX", None, Kind::Sandbox),
    ("--sandbox-paths", "DAMON_SANDBOX_PATHS", None, Kind::SandboxPaths),
    ("--sandbox-capabilities", "DAMON_SANDBOX_CAPABILITIES", None, Kind::SandboxCapabilities),
    ("--addr", "DAMON_ADDR", Some("NOMAD_ADDR_damon"), Kind::Address),
    ("--metrics-endpoint", "DAMON_METRICS_ENDPOINT", None, Kind::Endpoint),
    ("--log-dir", "DAMON_LOG_DIR", None, Kind::LogDir),
    ("--log-name", "DAMON_LOG_NAME", None, Kind::LogName),
    ("--nomad-log-suffix", "DAMON_NOMAD_LOG_SUFFIX", None, Kind::LogSuffix),
    ("--log-max-size", "DAMON_LOG_MAX_SIZE", None, Kind::LogMib),
    ("--log-max-files", "DAMON_LOG_MAX_FILES", None, Kind::Files),
];

/// Bad numbers by class; also the unit tests of src/config.rs use them.
pub const NUMBER: &[(&str, &str)] = &[
    ("garbage", "lots"),
    ("garbage", "12abc"),
    ("garbage", "0x10"),
    ("garbage", "1e3"),
    ("garbage", "1.5"),
    ("garbage", "+5"),
    ("negative", "-1"),
    ("overflow", "18446744073709551616"),
    ("overflow", "99999999999999999999999"),
    ("NaN", "NaN"),
    ("NaN", "inf"),
    ("non-ASCII digits", "٣"),
    ("non-ASCII digits", "５１２"),
    ("non-ASCII digits", "৫"),
    ("white space", "1 0"),
    ("white space", "5\t0"),
    ("white space", "1\n0"),
];

/// Bad booleans by class.
pub const BOOLEAN: &[(&str, &str)] = &[
    ("garbage", "maybe"),
    ("garbage", "yess"),
    ("negative", "-1"),
    ("overflow", "99999999999999999999"),
    ("overflow", "2"),
    ("NaN", "NaN"),
    ("non-ASCII digits", "١"),
    ("non-ASCII digits", "１"),
    ("white space", "y es"),
    ("white space", "1\t0"),
];

/// Bad values of a kind, by class; the classes that do not apply to a kind (a log directory
/// named "NaN") are left out. Empty is an error for a flag, unset for a variable.
pub fn bad_values(kind: Kind) -> Vec<(&'static str, String)> {
    let mut bad: Vec<(&str, &str)> = vec![("empty", ""), ("empty", " ")];
    match kind {
        Kind::Mhz => {
            bad.extend(NUMBER);
            bad.extend([("product overflow", "18446744073710"), ("range", "50")]);
            // x 10^6 Hz; < 100 MHz
        }
        Kind::Mib | Kind::LogMib => {
            bad.extend(NUMBER);
            bad.push(("product overflow", "17592186044416")); // x 2^20 bytes
        }
        Kind::MaxMib => {
            bad.extend(NUMBER.iter().filter(|(_, v)| *v != "-1"));
            bad.extend([("product overflow", "17592186044416"), ("negative", "-2")]);
        }
        Kind::Processes => {
            bad.extend(NUMBER);
            bad.extend([("range", "0"), ("overflow", "4194305")]);
        }
        Kind::Files => bad.extend(NUMBER),
        Kind::Boolean => bad.extend(BOOLEAN),
        Kind::Duration => bad.extend([
            ("garbage", "soon"),
            ("negative", "-3s"),
            ("overflow", "99999999999999999999"),
            ("product overflow", "25h"),
            ("product overflow", "18446744073709551615"),
            ("NaN", "NaN"),
            ("NaN", "inf"),
            ("non-ASCII digits", "٣s"),
            ("non-ASCII digits", "３０"),
            ("white space", "3 0"),
            ("white space", "5\t0s"),
        ]),
        Kind::Address => bad.extend([
            ("garbage", "localhost"),
            ("garbage", "1.2.3.4:"),
            ("garbage", ":notaport"),
            ("garbage", "[::1"),
            ("garbage", "::1:9000"),
            ("negative", "127.0.0.1:-1"),
            ("overflow", "host:99999"),
            ("overflow", "256.0.0.1:80"),
            ("NaN", "127.0.0.1:NaN"),
            ("non-ASCII digits", "127.0.0.1:٨٠"),
            ("white space", "127.0.0.1: 80"),
            ("white space", "local host:80"),
        ]),
        Kind::Endpoint => bad.extend([
            ("garbage", "metrics"),
            ("garbage", "/m?x=1"),
            ("garbage", "/m#x"),
            ("garbage", "/m\u{1}"),
            ("negative", "-1"),
            ("NaN", "NaN"),
            ("non-ASCII", "/métriques"),
            ("white space", "/met rics"),
        ]),
        Kind::CgroupPath => {
            bad.extend([("garbage", "/a/../b"), ("garbage", ".."), ("garbage", "a\u{1}b"), ("garbage", "a\nb")])
        }
        Kind::LogDir => bad.extend([("garbage", "/tmp/a\u{1}b"), ("garbage", "a\nb")]),
        Kind::LogName => bad.extend([
            ("garbage", "."),
            ("garbage", ".."),
            ("garbage", "a/b"),
            ("garbage", "a\\b"),
            ("garbage", "a\nb"),
        ]),
        Kind::LogSuffix => bad.extend([("garbage", "/x"), ("garbage", "a\nb")]),
        Kind::Sandbox => bad.extend(BOOLEAN.iter().copied().chain([("garbage", "strictly"), ("garbage", "strict!")])),
        Kind::SandboxPaths => bad.extend([
            ("garbage", "/etc"),
            ("garbage", "r:etc"),
            ("garbage", "q:/etc"),
            ("garbage", "r:/etc,"),
            ("garbage", "rx"),
            ("garbage", "r:/no/such/path"),
            ("negative", "-1"),
            ("NaN", "NaN"),
            ("white space", "r:/etc, rx:/usr"),
            ("non-ASCII", "\u{159}:/etc"),
        ]),
        Kind::SandboxCapabilities => bad.extend([
            ("garbage", "NET RAW"),
            ("garbage", "CAP_"),
            ("garbage", "net_raw,"),
            ("garbage", "all"),
            ("negative", "-1"),
            ("NaN", "NaN"),
            ("non-ASCII", "n\u{e9}t_raw"),
        ]),
        Kind::StopScope => bad.extend([("garbage", "all"), ("garbage", "children"), ("white space", "tr ee")]),
        Kind::StopSignal => bad.extend([("garbage", "SIGNOPE"), ("number", "15"), ("white space", "SIG TERM")]),
        Kind::User => bad.extend([
            ("garbage", "-x"),
            ("garbage", "1:2:3"),
            ("negative", "-1"),
            ("overflow", "4294967295"),
            ("non-ASCII digits", "\u{661}"),
            ("white space", "a b"),
        ]),
        Kind::Bandwidth => {
            bad.extend(NUMBER);
            bad.extend([
                ("garbage", "10X"),
                ("garbage", "10MiBs"),
                ("garbage", "M"),
                ("white space", "10 M"),
                ("product overflow", "17179869184T"), // x 2^40 bytes
            ]);
        }
        Kind::Iops => {
            bad.extend(NUMBER);
            bad.push(("overflow", "1000000001"));
        }
        Kind::IoDevices => bad.extend([
            ("garbage", "sda"),
            ("garbage", "8:"),
            ("garbage", "8:0:1"),
            ("garbage", "8:0,,9:0"),
            ("garbage", "/no/such/device"),
            ("negative", "-8:0"),
            ("overflow", "4294967296:0"),
            ("non-ASCII digits", "٨:٠"),
            ("white space", "8 :0"),
        ]),
        Kind::IpPrefixes => bad.extend([
            ("garbage", "example.com"),
            ("garbage", "10.0.0.0/8/8"),
            ("garbage", "10.0.0.0/"),
            ("garbage", "localhost,nowhere"),
            ("garbage", ","),
            ("negative", "10.0.0.0/-8"),
            ("overflow", "10.0.0.0/33"),
            ("overflow", "256.0.0.1"),
            ("overflow", "::1/129"),
            ("non-ASCII digits", "١٠.0.0.1"),
            ("white space", "10.0.0. 1"),
        ]),
        Kind::BindPorts => bad.extend([
            ("garbage", "http"),
            ("garbage", "80-70"),
            ("garbage", "nomad,"),
            ("garbage", "80,,81"),
            ("garbage", "1-2-3"),
            ("negative", "-80"),
            ("overflow", "65536"),
            ("overflow", "0"),
            ("non-ASCII digits", "٨٠"),
            ("white space", "80 ,81"),
        ]),
        Kind::Cores => bad.extend([
            ("garbage", "lots"),
            ("garbage", "0,"),
            ("garbage", "0,,1"),
            ("garbage", "0-1-2"),
            ("garbage", "0x1"),
            ("negative", "-1"),
            ("range", "3-1"),
            ("overflow", "8192"),
            ("overflow", "18446744073709551616"),
            ("NaN", "NaN"),
            ("non-ASCII digits", "٣"),
            ("white space", "0, 1"),
            ("white space", "1\t2"),
        ]),
    }
    let mut bad: Vec<(&str, String)> = bad.into_iter().map(|(class, value)| (class, value.to_string())).collect();
    if matches!(kind, Kind::CgroupPath | Kind::LogName | Kind::LogSuffix) {
        bad.push(("overflow", "x".repeat(256))); // a name of more than NAME_MAX bytes
    }
    bad
}

/// The value as damon's message quotes it: trimmed, escaped as Rust's {:?} does, and cut
/// after 100 characters.
pub fn shown(value: &str) -> String {
    let value = value.trim_matches(|c: char| c.is_ascii_whitespace());
    match value.char_indices().nth(100) {
        None => format!("{:?}", value),
        Some((cut, _)) => format!("{:?}... ({} bytes in all)", &value[..cut], value.len()),
    }
}
