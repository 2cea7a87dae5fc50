//! damon: runs a program contained, with the limits Nomad gave it, and stops its whole tree.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod config;
mod logging;
mod metrics;
mod platform;
mod stats;
mod supervisor;

use std::io::Write;

use config::{ConfigError, Environment, Invocation, LONG_VERSION};

/// The environment damon runs in: the process's variables, read once. damon looks up about a
/// hundred settings, and each `std::env::var_os` scans the whole environment (a quarter of a
/// launch's instructions with 40 variables; a Nomad task has more).
struct Host {
    /// Sorted by name, stably: of two with the same name the first, as getenv(3) finds it.
    #[cfg(unix)]
    vars: Vec<(std::ffi::OsString, std::ffi::OsString)>,
}

impl Host {
    #[cfg(unix)]
    fn read() -> Host {
        Host::of(std::env::vars_os())
    }

    #[cfg(unix)]
    fn of(vars: impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)>) -> Host {
        let mut vars: Vec<_> = vars.collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        Host { vars }
    }

    /// Windows compares names without case, as the system does: damon asks it each time.
    #[cfg(windows)]
    fn read() -> Host {
        Host {}
    }
}

impl Environment for Host {
    #[cfg(unix)]
    fn var_os(&self, name: &str) -> Option<std::ffi::OsString> {
        let name = std::ffi::OsStr::new(name);
        let first = self.vars.partition_point(|(n, _)| n.as_os_str() < name);
        self.vars.get(first).filter(|(n, _)| n == name).map(|(_, value)| value.clone())
    }
    #[cfg(windows)]
    fn var_os(&self, name: &str) -> Option<std::ffi::OsString> {
        std::env::var_os(name)
    }
    #[cfg(unix)]
    fn names(&self) -> Vec<String> {
        self.vars.iter().filter_map(|(name, _)| name.to_str().map(str::to_string)).collect()
    }
    #[cfg(windows)]
    fn names(&self) -> Vec<String> {
        std::env::vars_os().filter_map(|(name, _)| name.into_string().ok()).collect()
    }
}

fn main() {
    // First of all: a stop that arrives while damon starts must wait for the supervisor.
    platform::defer_signals();
    // Nothing damon inherited reaches the workload but stdin, stdout and stderr.
    platform::close_inherited_on_exec();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // damon.exe runs itself as a helper for what one process cannot do alone (Windows: a
    // console event on the workload's console).
    if let Some(code) = platform::helper(&args) {
        std::process::exit(code)
    }
    let code = match config::parse(args, &Host::read()) {
        Ok(Invocation::Version) => {
            // Not println!: it panics when stdout is closed or a pipe whose reader is gone.
            let _ = writeln!(std::io::stdout(), "damon {}", LONG_VERSION);
            0
        }
        Ok(Invocation::Check(config)) => supervisor::check(&config),
        Ok(Invocation::Run(config)) => supervisor::run(config),
        Err(ConfigError::Usage(e)) if !e.use_stderr() => {
            // --help and --version
            let _ = e.print();
            0
        }
        Err(ConfigError::InvalidLogged(e, log)) => supervisor::refuse(&log, &e),
        Err(e) => {
            logging::stderr_line(&e.to_string());
            supervisor::EXIT_DAMON_FAILED
        }
    };
    // exit(), not ExitCode: Windows exit codes are 32-bit. Everything to clean up is done.
    std::process::exit(code)
}

/// damon's allocator on Linux (why: in the module). The static (musl) build is what ships; the
/// others use it too, so that the tests run the allocator users get.
#[cfg(target_os = "linux")]
#[global_allocator]
static ALLOCATOR: platform::LockedDlmalloc = platform::LockedDlmalloc::new();

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn a_variable_is_found_by_its_exact_name_and_the_first_of_two_wins() {
        let vars = [("NOMAD_TASK_DIR", "/a"), ("DAMON_X", "1"), ("NOMAD_TASK_DIR", "/b"), ("NOMAD_TASK", "t")];
        let host = Host::of(vars.iter().map(|(name, value)| (name.into(), value.into())));
        assert_eq!(host.var_os("NOMAD_TASK_DIR"), Some("/a".into()));
        assert_eq!(host.var_os("NOMAD_TASK"), Some("t".into()));
        assert_eq!(host.var_os("DAMON_X"), Some("1".into()));
        assert_eq!(host.var_os("NOMAD"), None);
        assert_eq!(host.var_os("damon_x"), None);
        assert_eq!(host.var_os("ZZZ"), None);
        let mut names = host.names();
        names.dedup();
        assert_eq!(names, ["DAMON_X", "NOMAD_TASK", "NOMAD_TASK_DIR"]);
    }
}
