//! damon's own resource limits, which the workload may take from it. damon runs as root, and
//! a root workload (no DAMON_USER, no sandbox) may lower them with prlimit(2) on damon's pid or
//! on its guard's: with RLIMIT_NOFILE at 3, the cleanup could open no cgroup file, and a
//! setsid() process of the workload outlived damon in groups left behind. So damon records
//! them before the child exists and, where a stop or the end of the run begins (and the guard
//! where its cleanup begins), raises back each one found lower: a hard limit only with
//! CAP_SYS_RESOURCE (root's under Nomad), a soft one up to the hard one always. Nothing is
//! done while damon waits: a few getrlimit(2) calls per stop step or end.

use std::fmt::Write;

use nix::sys::resource::{getrlimit, rlim_t, setrlimit, Resource, RLIM_INFINITY};

/// The limits the stop and the cleanup need, with their names for the log. Left out:
/// RLIMIT_NPROC (neither forks nor starts a thread, and the kernel does not hold root to it),
/// RLIMIT_CORE, and those that only bound what damon never uses (locks, locked memory, message
/// queues, priorities, real-time CPU).
const NEEDED: [(Resource, &str); 6] = [
    // Every cgroup file, directory and pidfd the stop and the cleanup open.
    (Resource::RLIMIT_NOFILE, "open files"),
    // The log: a write past it is refused with SIGXFSZ, which ends the writer.
    (Resource::RLIMIT_FSIZE, "file size"),
    // What the cleanup allocates: a refused allocation aborts damon.
    (Resource::RLIMIT_AS, "address space"),
    (Resource::RLIMIT_DATA, "data size"),
    // The main thread's stack may need to grow further than it has so far.
    (Resource::RLIMIT_STACK, "stack size"),
    // Past it SIGXCPU, then SIGKILL, as soon as damon runs again.
    (Resource::RLIMIT_CPU, "CPU time"),
];

/// The limits of [`NEEDED`] as they were at damon's start.
#[derive(Debug, Clone, Copy)]
pub struct OwnLimits {
    /// Soft and hard limit of each; `None` where it could not be read.
    recorded: [Option<(rlim_t, rlim_t)>; NEEDED.len()],
    /// A refusal to raise one back was logged: it is said once.
    refusal_told: bool,
}

impl OwnLimits {
    /// Records this process's limits; before the child exists, so that none is the workload's.
    pub fn record() -> OwnLimits {
        let mut recorded = [None; NEEDED.len()];
        for (slot, (resource, _)) in recorded.iter_mut().zip(NEEDED) {
            *slot = getrlimit(resource).ok();
        }
        OwnLimits { recorded, refusal_told: false }
    }

    /// Raises back each limit found lower than recorded (one raised meanwhile is left as it is),
    /// and says so; `whose` ("damon's", "the guard's") names the process in the log.
    pub fn restore(&mut self, whose: &str) {
        let mut raised = String::new();
        for ((resource, name), recorded) in NEEDED.iter().zip(self.recorded) {
            let (soft, hard) = match recorded {
                Some(limits) => limits,
                None => continue,
            };
            // Unread, it is set anyway: the recorded values are what the cleanup needs.
            let now = getrlimit(*resource).unwrap_or((0, 0));
            let wanted = (now.0.max(soft), now.1.max(hard));
            if wanted == now {
                continue;
            }
            let (reached, refused) = match setrlimit(*resource, wanted.0, wanted.1) {
                Ok(()) => (wanted, None),
                // Without CAP_SYS_RESOURCE no hard limit rises: the soft one still may, up to it.
                Err(e) => {
                    let within = (wanted.0.min(now.1), now.1);
                    let raised_within = within != now && setrlimit(*resource, within.0, within.1).is_ok();
                    (if raised_within { within } else { now }, Some(e))
                }
            };
            if reached != now {
                let separator = if raised.is_empty() { "" } else { ", " };
                let _ = write!(raised, "{}{} {} to {}", separator, name, shown(now), shown(reached));
            }
            if let (Some(e), false) = (refused, self.refusal_told) {
                self.refusal_told = true;
                tracing::error!(
                    limit = %name,
                    found = %shown(reached),
                    error = %e,
                    "cannot raise {} own {} limit back to {} (a hard limit rises only with CAP_SYS_RESOURCE): the stop and the cleanup may fail for want of it",
                    whose,
                    name,
                    shown(wanted)
                );
            }
        }
        if !raised.is_empty() {
            tracing::warn!(
                limits = %raised,
                "{} own resource limits had been lowered by another process: raised back to what they were at its start",
                whose
            );
        }
    }
}

/// "soft/hard", as prlimit(1) takes them.
fn shown((soft, hard): (rlim_t, rlim_t)) -> String {
    let one = |limit: rlim_t| if limit == RLIM_INFINITY { "unlimited".to_string() } else { limit.to_string() };
    format!("{}/{}", one(soft), one(hard))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lowered_soft_limit_is_raised_back_and_a_raised_one_left() {
        // Only the soft limit, which any process may move up to its hard limit; by one, as
        // the other tests run in this process meanwhile.
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        let mut limits = OwnLimits::record();
        setrlimit(Resource::RLIMIT_NOFILE, soft - 1, hard).unwrap();
        limits.restore("the test's");
        assert_eq!(getrlimit(Resource::RLIMIT_NOFILE).unwrap(), (soft, hard));
        // Nothing lower than recorded: nothing changes, not even back down.
        let nofile = NEEDED.iter().position(|(r, _)| *r == Resource::RLIMIT_NOFILE).unwrap();
        limits.recorded[nofile] = Some((soft - 1, hard));
        limits.restore("the test's");
        assert_eq!(getrlimit(Resource::RLIMIT_NOFILE).unwrap(), (soft, hard));
    }

    #[test]
    fn limits_are_shown_as_prlimit_takes_them() {
        assert_eq!(shown((3, 3)), "3/3");
        assert_eq!(shown((1024, RLIM_INFINITY)), "1024/unlimited");
    }
}
