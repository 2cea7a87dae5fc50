//! A property test of [`parse`]: random command lines and environments, built from the
//! settings themselves (their flags and variables, valid values, the bad values of the
//! matrix, mutations of both, random Unicode, very long and non-UTF-8 values).
//!
//! The generator is written here, on a seeded PRNG, rather than taken from proptest or
//! quickcheck: no dependency joins Cargo.lock (the Windows build and the Rust 1.63 build use
//! a vendored copy of it), a case is reproduced from the seed and its number alone, and the
//! generator knows which value goes with which setting, which a generic one would have to be
//! taught anyway. cargo-fuzz needs a nightly toolchain, which this project cannot use.
//!
//! Properties, for every case: no panic; the result is a configuration whose limits keep
//! every product downstream in 64 bits and whose values pass their own parsers again, or an
//! error whose one-line message names a flag or variable the case did set; an empty
//! variable means the same as an unset one.
//!
//! A short run (20 000 cases) is part of `cargo test`; `scripts/fuzz-config [SECONDS]` runs
//! [`for_a_while`] (DAMON_FUZZ_SECONDS, DAMON_FUZZ_SEED) and prints the executions.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use super::tests::{accepted, bad_values, FakeEnv};
use super::values::{self, MAX_CPU_CORES, MAX_CPU_MHZ, MAX_KILL_TIMEOUT, MAX_MIB, MAX_PROCESSES};
use super::*;

/// splitmix64: tiny, fast, and good enough to pick test inputs.
struct Rng(u64);

impl Rng {
    /// The generator of case `case` of a run seeded with `seed`: a case is reproduced alone.
    fn for_case(seed: u64, case: u64) -> Rng {
        let mut rng = Rng(seed ^ case.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        rng.next();
        rng
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn one_in(&mut self, n: u64) -> bool {
        self.next() % n == 0
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Characters worth trying: separators and signs the parsers look at, white space of every
/// kind, control characters, other scripts' digits, combining marks, and emoji.
const INTERESTING: &[char] = &[
    '0',
    '1',
    '5',
    '9',
    ':',
    '/',
    '.',
    '[',
    ']',
    '-',
    '+',
    '%',
    '?',
    '#',
    '\\',
    '=',
    '_',
    'e',
    'x',
    'h',
    'm',
    's',
    'y',
    'n',
    ' ',
    '\t',
    '\n',
    '\r',
    '\u{b}',
    '\u{c}',
    '\u{0}',
    '\u{1}',
    '\u{1b}',
    '\u{7f}',
    '\u{85}',
    '\u{a0}',
    '\u{2003}',
    '\u{2028}',
    '\u{3000}',
    '\u{feff}',
    '\u{660}',
    '\u{663}',
    '\u{6f3}',
    '\u{966}',
    '\u{ff10}',
    '\u{ff15}',
    '\u{1d7ce}',
    '\u{301}',
    '\u{200d}',
    '\u{1f600}',
    'é',
    'ß',
    'ı',
    'K',
];

/// Numbers at the edges of what the parsers accept, and beyond.
const EDGES: &[&str] = &[
    "0",
    "1",
    "99",
    "100",
    "255",
    "256",
    "65535",
    "65536",
    "86400",
    "86401",
    "4194304",
    "4194305",
    "2147483647",
    "2147483648",
    "4294967295",
    "4294967296",
    "17592186044415",
    "17592186044416",
    "18446744073709",
    "18446744073710",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "340282366920938463463374607431768211456",
];

fn random_char(rng: &mut Rng) -> char {
    match rng.below(4) {
        0 => (b' ' + rng.below(95) as u8) as char,
        1 => char::from_u32(rng.below(0x11_0000) as u32).unwrap_or('\u{fffd}'),
        _ => *rng.pick(INTERESTING),
    }
}

fn random_string(rng: &mut Rng, max_chars: usize) -> String {
    (0..rng.below(max_chars + 1)).map(|_| random_char(rng)).collect()
}

/// A few edits of `text`: insert, delete, replace, duplicate, cut, or add an edge number.
fn mutate(rng: &mut Rng, text: &str) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for _ in 0..1 + rng.below(3) {
        let at = rng.below(chars.len() + 1);
        match rng.below(6) {
            0 => chars.insert(at, random_char(rng)),
            1 if at < chars.len() => {
                chars.remove(at);
            }
            2 if at < chars.len() => chars[at] = random_char(rng),
            3 => {
                let piece: Vec<char> = chars[at..].iter().take(1 + rng.below(8)).copied().collect();
                chars.splice(at..at, piece);
            }
            4 => chars.truncate(at),
            _ => {
                let edge = rng.pick(EDGES);
                chars.splice(at..at, edge.chars());
            }
        }
    }
    chars.into_iter().collect()
}

/// Something that is not text: invalid UTF-8 on Unix, an unpaired surrogate on Windows.
fn not_text(rng: &mut Rng) -> OsString {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStringExt;
        let mut bytes = random_string(rng, 8).into_bytes();
        bytes.insert(rng.below(bytes.len() + 1), 0x80 + rng.below(0x80) as u8);
        OsString::from_vec(bytes)
    }
    #[cfg(windows)]
    {
        use std::os::windows::ffi::OsStringExt;
        let mut wide: Vec<u16> = random_string(rng, 8).encode_utf16().collect();
        wide.insert(rng.below(wide.len() + 1), 0xd800 + rng.below(0x800) as u16);
        OsString::from_wide(&wide)
    }
}

/// A value for `setting` (or for any variable when `None`).
fn value(rng: &mut Rng, setting: Option<&Setting>) -> OsString {
    let sample = |rng: &mut Rng| -> String {
        match setting {
            Some(s) if rng.one_in(2) => rng.pick(&accepted(s)).to_string(),
            Some(s) => rng.pick(&bad_values(s)).1.clone(),
            None => rng.pick(EDGES).to_string(),
        }
    };
    let text = match rng.below(100) {
        0..=34 => sample(rng),
        35..=69 => {
            let text = sample(rng);
            mutate(rng, &text)
        }
        70..=82 => random_string(rng, 24),
        83..=90 => rng.pick(EDGES).to_string() + ["", "s", "ms", "h", "y", ":80", ".5"][rng.below(7)],
        91 => {
            // Very long: up to 200 000 bytes.
            let piece = sample(rng) + &random_string(rng, 4);
            piece.repeat(1 + rng.below(200_000 / piece.len().max(1)))
        }
        92 | 93 => return not_text(rng),
        _ => {
            let (pad, text) = (rng.pick(&[" ", "\t", "\n", "\u{a0}", ""]).to_string(), sample(rng));
            format!("{}{}{}", pad, text, pad)
        }
    };
    OsString::from(text)
}

/// Variables damon reads besides its settings.
const OTHER_VARS: &[&str] = &[
    "NOMAD_ALLOC_DIR",
    "NOMAD_TASK_NAME",
    "NOMAD_ALLOC_ID",
    "NOMAD_JOB_NAME",
    "NOMAD_DC",
    "NOMAD_ALLOC_INDEX",
    "PATH",
    "DAMON_",
    "damon_memory_limit",
];

/// One case: a command line (with damon's name first) and an environment.
struct Case {
    args: Vec<OsString>,
    env: HashMap<String, OsString>,
}

fn case(rng: &mut Rng) -> Case {
    let mut args = vec![OsString::from("damon")];
    if !rng.one_in(50) {
        if rng.one_in(8) {
            args.push("--check".into());
        }
        for _ in 0..rng.below(4) {
            let s = rng.pick(SETTINGS);
            match rng.below(12) {
                0 => args.push(format!("--{}", s.flag).into()),
                1 => args.push(rng.pick(&["--bogus", "-x", "--", "--help", "--check=1", "-"]).into()),
                2 | 3 => {
                    let mut arg = OsString::from(format!("--{}=", s.flag));
                    arg.push(value(rng, Some(s)));
                    args.push(arg);
                }
                _ => {
                    args.push(format!("--{}", s.flag).into());
                    args.push(value(rng, Some(s)));
                }
            }
        }
        if rng.one_in(3) {
            args.push("--".into());
        }
        for _ in 0..rng.below(4) {
            args.push(if rng.one_in(2) { OsString::from("prog") } else { value(rng, None) });
        }
    }
    let mut env = HashMap::new();
    for _ in 0..rng.below(9) {
        let s = rng.pick(SETTINGS);
        let (name, setting) = match rng.below(6) {
            0 => (rng.pick(OTHER_VARS).to_string(), None),
            1 if s.nomad_var.is_some() => (s.nomad_var.unwrap_or_default().to_string(), Some(s)),
            _ => (s.var.to_string(), Some(s)),
        };
        let value = if rng.one_in(10) { OsString::new() } else { value(rng, setting) };
        env.insert(name, value);
    }
    Case { args, env }
}

/// A long text cut for a failure message.
fn shorten(text: String) -> String {
    match text.char_indices().nth(1000) {
        Some((cut, _)) => format!("{}... ({} bytes)", &text[..cut], text.len()),
        None => text,
    }
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let env: BTreeMap<_, _> = self.env.iter().map(|(k, v)| (k, shorten(format!("{:?}", v)))).collect();
        let args: Vec<_> = self.args.iter().map(|a| shorten(format!("{:?}", a))).collect();
        write!(f, "args {:?}\nenv {:?}", args, env)
    }
}

/// What a case gave, for the summary.
#[derive(Default)]
struct Tally {
    executions: u64,
    configs: u64,
    usage_errors: u64,
    /// Refusals by the flag or variable named.
    refused: BTreeMap<String, u64>,
}

fn parse_case(case: &Case) -> Result<Invocation, ConfigError> {
    parse(case.args.clone(), &FakeEnv(case.env.clone()))
}

/// Checks one case's properties; the error says which one failed.
fn check(case: &Case, tally: &mut Tally) -> Result<(), String> {
    let result = catch_unwind(AssertUnwindSafe(|| parse_case(case))).map_err(|_| "parse panicked".to_string())?;
    tally.executions += 1;
    match &result {
        Ok(Invocation::Version) if case.args.len() <= 1 => {}
        Ok(Invocation::Version) => return Err("the version instead of a run".to_string()),
        Ok(Invocation::Run(config)) | Ok(Invocation::Check(config)) => {
            tally.configs += 1;
            check_config(config)?;
            if matches!(result, Ok(Invocation::Run(_))) && config.command.is_empty() {
                return Err("a run without a command".to_string());
            }
        }
        Err(ConfigError::Usage(e)) => {
            tally.usage_errors += 1;
            if e.to_string().trim().is_empty() {
                return Err("an empty usage error".to_string());
            }
        }
        Err(ConfigError::InvalidLogged(inner, log)) => {
            let message = inner.to_string();
            let source = match &**inner {
                ConfigError::Invalid { source, .. } => source,
                other => return Err(format!("an unexpected error inside: {:?}", other)),
            };
            *tally.refused.entry(source.clone()).or_default() += 1;
            let given = match source.strip_prefix("--") {
                Some(flag) => case.args.iter().any(|a| {
                    let a = a.to_string_lossy();
                    a == format!("--{}", flag) || a.starts_with(&format!("--{}=", flag))
                }),
                None => case.env.contains_key(source),
            };
            if !given {
                return Err(format!("the error names {}, which the case did not set: {}", source, message));
            }
            if !message.contains(&format!(" for {}: ", source)) || message.contains('\n') {
                return Err(format!("not a one-line message naming {}: {:?}", source, message));
            }
            if log.path.file_name().is_none() {
                return Err(format!("no log file to report in: {:?}", log.path));
            }
        }
        Err(other) => return Err(format!("an error not wrapped with its log: {:?}", other)),
    }
    // An empty variable is an unset one.
    let unset: HashMap<String, OsString> = case
        .env
        .iter()
        .filter(|(name, value)| {
            let setting = SETTINGS.iter().any(|s| s.var == *name || s.nomad_var == Some(name.as_str()));
            !(value.is_empty() || setting && value.to_str().map_or(false, |v| trimmed(v).is_empty()))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if unset.len() != case.env.len() {
        let again = parse_case(&Case { args: case.args.clone(), env: unset });
        if format!("{:?}", again) != format!("{:?}", result) {
            return Err(format!("an empty variable is not the same as an unset one: {:?}\nvs {:?}", result, again));
        }
    }
    Ok(())
}

/// A configuration keeps the products of its limits in 64 bits, and its values pass their
/// own parsers again.
fn check_config(c: &Config) -> Result<(), String> {
    let fail = |what: &str| Err(format!("{}: {:?}", what, c));
    let limits = &c.limits;
    if let Some(cpu) = limits.cpu {
        if cpu.mhz == 0 || cpu.mhz > MAX_CPU_MHZ || cpu.mhz.checked_mul(1_000_000).is_none() {
            return fail("a CPU limit out of range");
        }
        if limits.enforce_cpu && cpu.mhz < MIN_ENFORCED_CPU_MHZ {
            return fail("an enforced CPU limit below the minimum");
        }
    }
    if let Some(m) = &limits.memory {
        if m.max_mib == 0 || m.max_mib > MAX_MIB || m.max_mib.checked_mul(BYTES_PER_MIB).is_none() {
            return fail("a memory limit out of range");
        }
        if m.soft_mib.map_or(false, |soft| soft == 0 || soft >= m.max_mib) {
            return fail("a soft memory limit not below the hard one");
        }
    }
    if limits.process_limit.map_or(false, |n| n == 0 || n > MAX_PROCESSES) {
        return fail("a process limit out of range");
    }
    if let Some(cores) = &limits.cores {
        if cores.cores.is_empty() || cores.cores.iter().any(|core| core >= MAX_CPU_CORES) {
            return fail("cores out of range");
        }
        if values::cpu_cores(&cores.cores.to_string()).as_ref() != Ok(&cores.cores) {
            return fail("cores that do not read back");
        }
    }
    let kill_timeout = c.kill_timeout.after_stop().unwrap_or_default();
    if kill_timeout > MAX_KILL_TIMEOUT || Instant::now().checked_add(kill_timeout).is_none() {
        return fail("a kill timeout out of range");
    }
    if let Some(parent) = &c.cgroup_parent {
        let text = parent.to_string_lossy();
        if !text.starts_with('/') || values::cgroup_path(&text).as_ref() != Ok(parent) {
            return fail("a cgroup parent that does not read back");
        }
    }
    if let Some(m) = &c.metrics {
        if values::listen_addr(&m.addr.to_string()).as_ref() != Ok(&m.addr) {
            return fail("an address that does not read back");
        }
        if values::endpoint(&m.endpoint).is_err() {
            return fail("an invalid endpoint");
        }
    }
    if c.log.path.file_name().is_none() {
        return fail("a log path without a file name");
    }
    if c.log.max_size_bytes < BYTES_PER_MIB || c.log.max_size_bytes % BYTES_PER_MIB != 0 {
        return fail("a log size that is not whole MiB");
    }
    let _ = c.describe();
    Ok(())
}

/// Runs cases from `seed` until `enough` says stop; panics with the first failing case.
fn run(seed: u64, mut enough: impl FnMut(u64) -> bool) -> Tally {
    let mut tally = Tally::default();
    let mut n = 0;
    while !enough(n) {
        let case = case(&mut Rng::for_case(seed, n));
        if let Err(problem) = check(&case, &mut tally) {
            let problem = shorten(problem);
            panic!("config fuzz: case {} of seed {} (DAMON_FUZZ_SEED={}): {}\n{:?}", n, seed, seed, problem, case);
        }
        n += 1;
    }
    tally
}

fn report(tally: &Tally, seed: u64, elapsed: Duration) {
    let seconds = elapsed.as_secs_f64();
    eprintln!(
        "config fuzz: {} executions in {:.1} s ({:.0}/s), seed {}: {} configurations, {} usage errors, {} refusals, no failure",
        tally.executions,
        seconds,
        tally.executions as f64 / seconds.max(1e-9),
        seed,
        tally.configs,
        tally.usage_errors,
        tally.refused.values().sum::<u64>()
    );
    eprintln!("config fuzz: refusals by source: {:?}", tally.refused);
}

fn seed_from_env(default: u64) -> u64 {
    std::env::var("DAMON_FUZZ_SEED").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(default)
}

#[test]
fn twenty_thousand_random_inputs_hold_the_properties() {
    let seed = seed_from_env(1);
    let started = Instant::now();
    let tally = run(seed, |n| n >= 20_000);
    report(&tally, seed, started.elapsed());
    // The generator reaches every setting, through a flag and through a variable.
    for s in SETTINGS {
        for source in [format!("--{}", s.flag), s.var.to_string()] {
            assert!(tally.refused.contains_key(&source), "no case refused {}: {:?}", source, tally.refused);
        }
    }
    assert!(tally.configs > 1000 && tally.usage_errors > 100, "configs {} usage {}", tally.configs, tally.usage_errors);
}

/// The long run: `scripts/fuzz-config [SECONDS]`.
#[test]
#[ignore = "minutes long: scripts/fuzz-config"]
fn for_a_while() {
    let seconds = std::env::var("DAMON_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(180);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let seed = seed_from_env(now.as_nanos() as u64);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    // Check the clock every 256 cases, not every one.
    let tally = run(seed, |n| n % 256 == 0 && n > 0 && Instant::now() >= deadline);
    report(&tally, seed, started.elapsed());
}
