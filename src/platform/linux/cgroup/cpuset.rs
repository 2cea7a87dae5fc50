//! The cores the workload runs on: the cpuset its group inherits, and what damon does with the
//! cores DAMON_CPU_CORES or NOMAD_CPU_CORES ask for.
//!
//! Nomad writes cpuset.cpus on a task's cgroup itself when the task reserves cores (v2: the
//! scope under reserve.slice; v1: /nomad/reserve/<alloc>.<task> of the cpuset hierarchy), so
//! under Nomad the cores are usually in force before damon starts. Run anywhere else, damon's
//! cgroup has every online CPU, and damon writes the cores into its group's cpuset itself.
//!
//! The decision ([`Cpuset::plan`]): a core that is not online on this host is a configuration
//! error (125). The cores already in effect need no write. Fewer cores than are in effect are
//! applied in the group, nested (harmless, and what an operator narrowing a task expects).
//! Cores the inherited cpuset does not hold cannot be had: the inherited set wins, with a
//! warning (under Nomad the other cores are another task's).

use std::fs;
use std::path::{Path, PathBuf};

use super::file::{self, CgroupIoError};
use crate::config::{Cores, CpuCores};

/// The kernel's list of online CPUs: every core a cpuset could hold.
const ONLINE: &str = "/sys/devices/system/cpu/online";
/// cgroup v2: the cpus a group may use, after every ancestor's restriction.
const V2_EFFECTIVE: &str = "cpuset.cpus.effective";
/// cgroup v2: the cpus asked of a group (empty: its parent's).
const V2_CPUS: &str = "cpuset.cpus";
/// cgroup v1: the effective cpus (Linux 4.17 and later), else the configured ones.
const V1_EFFECTIVE: [&str; 2] = ["cpuset.effective_cpus", "cpuset.cpus"];
const V1_CPUS: &str = "cpuset.cpus";
const V1_MEMS: &str = "cpuset.mems";

/// The cpuset a new group under some directory inherits, and the host's online CPUs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cpuset {
    pub effective: CpuCores,
    /// The file it was read from; the list of online CPUs when no cgroup file has one.
    pub source: PathBuf,
    pub online: CpuCores,
}

/// What damon does with the cores asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// None asked for: the workload runs on the cpuset it inherits.
    Inherit,
    /// The cpuset inherited is exactly the cores asked for: nothing to write.
    AlreadyInEffect,
    /// Fewer cores than are in effect, or no restriction yet: written into the group.
    Apply(CpuCores),
    /// Some cores asked for are online but not in the inherited cpuset: it wins.
    EffectiveWins,
}

impl Cpuset {
    /// The cpuset inherited under `start` (a directory of the hierarchy mounted at
    /// `mount_point`, which may not exist yet): the nearest existing directory's effective
    /// cpus. `v2` names the files. Without a cpuset hierarchy (`None`), or where no directory
    /// has the files (the controller not enabled on the way), nothing restricts the cores.
    pub fn read(hierarchy: Option<(&Path, &Path)>, v2: bool) -> Result<Cpuset, String> {
        let online = fs::read_to_string(ONLINE)
            .map_err(|e| format!("cannot read {}: {}", ONLINE, e))
            .and_then(|text| CpuCores::from_kernel_list(&text).map_err(|e| format!("{}: {}", ONLINE, e)))?;
        let names: &[&str] = if v2 { &[V2_EFFECTIVE] } else { &V1_EFFECTIVE };
        if let Some((mount_point, start)) = hierarchy {
            for dir in start.ancestors().take_while(|d| d.starts_with(mount_point)) {
                for name in names {
                    let path = dir.join(name);
                    // Absent: the controller is not enabled here. Empty: a v1 group not set up.
                    let text = match fs::read_to_string(&path) {
                        Ok(text) if !text.trim().is_empty() => text,
                        _ => continue,
                    };
                    let effective =
                        CpuCores::from_kernel_list(&text).map_err(|e| format!("{}: {}", path.display(), e))?;
                    return Ok(Cpuset { effective, source: path, online });
                }
            }
        }
        Ok(Cpuset { effective: online.clone(), source: PathBuf::from(ONLINE), online })
    }

    /// Whether a cgroup already restricts the cores: fewer than every online CPU.
    pub fn restricted(&self) -> bool {
        self.effective != self.online
    }

    /// What to do with the cores asked for; an error (a configuration error: 125) names the
    /// setting, the value and the CPUs this host has.
    pub fn plan(&self, wanted: Option<&Cores>) -> Result<Plan, String> {
        let wanted = match wanted {
            None => return Ok(Plan::Inherit),
            Some(wanted) => wanted,
        };
        let offline = wanted.cores.without(&self.online);
        if !offline.is_empty() {
            let (noun, verb) = if offline.count() == 1 { ("core", "is") } else { ("cores", "are") };
            return Err(format!(
                "invalid value {:?} for {}: {} {} {} not online on this host (online CPUs: {})",
                wanted.cores.to_string(),
                wanted.source,
                noun,
                offline,
                verb,
                self.online
            ));
        }
        Ok(if wanted.cores == self.effective {
            Plan::AlreadyInEffect
        } else if wanted.cores.is_subset_of(&self.effective) {
            Plan::Apply(wanted.cores.clone())
        } else {
            Plan::EffectiveWins
        })
    }

    /// "1 (from /sys/fs/cgroup/task/cpuset.cpus.effective)", or "0-1 (from ...; every online
    /// CPU)" where nothing restricts the cores.
    pub fn describe(&self) -> String {
        let all = if self.restricted() { "" } else { "; every online CPU" };
        format!("{} (from {}{})", self.effective, self.source.display(), all)
    }
}

impl Plan {
    /// The cores to write into the group, if any.
    pub fn to_apply(&self) -> Option<&CpuCores> {
        match self {
            Plan::Apply(cores) => Some(cores),
            _ => None,
        }
    }

    /// The workload's cpuset under this plan.
    pub fn workload_cpus<'a>(&'a self, cpuset: &'a Cpuset) -> &'a CpuCores {
        self.to_apply().unwrap_or(&cpuset.effective)
    }

    /// Says in damon's log what became of the cores asked for.
    pub fn log(&self, cpuset: &Cpuset, wanted: Option<&Cores>) {
        let wanted = match wanted {
            Some(wanted) => wanted,
            None => return,
        };
        match self {
            Plan::Inherit => {}
            Plan::AlreadyInEffect => tracing::info!(
                cores = %wanted.cores,
                source = %wanted.source,
                cpuset = %cpuset.describe(),
                "pinned to cores {}: the cgroup damon runs in already has that cpuset, nothing written",
                wanted.cores
            ),
            Plan::Apply(cores) => tracing::info!(
                cores = %cores,
                source = %wanted.source,
                inherited_cpuset = %cpuset.describe(),
                "pinned to cores {}: written into the group's cpuset",
                cores
            ),
            Plan::EffectiveWins => tracing::warn!(
                cores = %wanted.cores,
                source = %wanted.source,
                cpuset = %cpuset.describe(),
                "{}={} asks for cores outside the cpuset damon's cgroup already has ({}, set by whoever made that cgroup, e.g. Nomad): that cpuset wins, the workload runs on cores {}",
                wanted.source,
                wanted.cores,
                cpuset.effective,
                cpuset.effective
            ),
        }
    }

    /// For `damon --check`.
    pub fn describe(&self, cpuset: &Cpuset) -> String {
        match self {
            Plan::Inherit => format!("{} (inherited, no cores asked for)", cpuset.effective),
            Plan::AlreadyInEffect => {
                format!("{} (already the cpuset damon's cgroup has: nothing written)", cpuset.effective)
            }
            Plan::Apply(cores) => format!("{} (written into the group's cpuset)", cores),
            Plan::EffectiveWins => {
                format!("{} (the cores asked for are not all in it: the inherited cpuset wins)", cpuset.effective)
            }
        }
    }
}

/// cgroup v2: the group's cpus (the cpuset controller is enabled in its parent). An empty
/// cpuset.mems means the parent's, so only the cpus are written.
pub fn write_v2(group: &Path, cores: &CpuCores) -> Result<(), CgroupIoError> {
    file::write(&group.join(V2_CPUS), &cores.to_string())
}

/// cgroup v1: a new group in the cpuset hierarchy has no cpus and no memory nodes, and no task
/// may join it until both are set: `cores` (else the parent's cpus) and the parent's nodes.
pub fn fill_v1(group: &Path, cores: Option<&CpuCores>) -> Result<(), CgroupIoError> {
    let parent = group.parent().unwrap_or(group);
    let cpus = match cores {
        Some(cores) => cores.to_string(),
        None => file::read(&parent.join(V1_CPUS))?.trim().to_string(),
    };
    file::write(&group.join(V1_CPUS), &cpus)?;
    let mems = file::read(&parent.join(V1_MEMS))?.trim().to_string();
    file::write(&group.join(V1_MEMS), &mems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cores(text: &str) -> CpuCores {
        CpuCores::from_kernel_list(text).unwrap()
    }

    fn cpuset(effective: &str, online: &str) -> Cpuset {
        Cpuset { effective: cores(effective), source: PathBuf::from("/x"), online: cores(online) }
    }

    fn wanted(list: &str, source: &str) -> Cores {
        Cores { cores: cores(list), source: source.to_string() }
    }

    #[test]
    fn outside_nomad_the_cores_are_applied() {
        let host = cpuset("0-1", "0-1");
        assert!(!host.restricted());
        assert_eq!(host.plan(None), Ok(Plan::Inherit));
        assert_eq!(host.plan(Some(&wanted("0", "DAMON_CPU_CORES"))), Ok(Plan::Apply(cores("0"))));
        assert_eq!(host.plan(Some(&wanted("1", "NOMAD_CPU_CORES"))), Ok(Plan::Apply(cores("1"))));
        assert_eq!(host.plan(Some(&wanted("0-1", "DAMON_CPU_CORES"))), Ok(Plan::AlreadyInEffect));
    }

    #[test]
    fn a_core_the_host_does_not_have_is_refused_naming_setting_value_and_cpus() {
        for host in [cpuset("0-1", "0-1"), cpuset("1", "0-1")] {
            let error = host.plan(Some(&wanted("1,7", "DAMON_CPU_CORES"))).unwrap_err();
            assert_eq!(
                error,
                "invalid value \"1,7\" for DAMON_CPU_CORES: core 7 is not online on this host (online CPUs: 0-1)"
            );
        }
        let error = cpuset("0-1", "0-1").plan(Some(&wanted("2-3", "--cpu-cores"))).unwrap_err();
        assert!(error.contains("for --cpu-cores: cores 2-3 are not online"), "{}", error);
    }

    #[test]
    fn under_a_cpuset_already_in_force_damon_writes_only_to_narrow_it() {
        // Nomad reserved cores 2-3 of 0-7 for the task.
        let task = cpuset("2-3", "0-7");
        assert!(task.restricted());
        assert_eq!(task.plan(Some(&wanted("2-3", "NOMAD_CPU_CORES"))), Ok(Plan::AlreadyInEffect));
        assert_eq!(task.plan(Some(&wanted("3", "DAMON_CPU_CORES"))), Ok(Plan::Apply(cores("3"))));
        assert_eq!(task.plan(Some(&wanted("0-1", "DAMON_CPU_CORES"))), Ok(Plan::EffectiveWins));
        assert_eq!(task.plan(Some(&wanted("1-2", "DAMON_CPU_CORES"))), Ok(Plan::EffectiveWins));
        assert_eq!(Plan::EffectiveWins.workload_cpus(&task), &cores("2-3"));
        assert_eq!(Plan::Apply(cores("3")).workload_cpus(&task), &cores("3"));
    }

    #[test]
    fn the_nearest_directory_with_an_effective_cpuset_is_read() {
        let root = std::env::temp_dir().join(format!("damon-cpuset-{}", std::process::id()));
        let deep = root.join("a/b");
        fs::create_dir_all(&deep).unwrap();
        fs::write(root.join(V2_EFFECTIVE), "0\n").unwrap();
        // Not yet made: the nearest existing ancestor counts.
        let found = Cpuset::read(Some((&root, &deep.join("c"))), true).unwrap();
        assert_eq!((found.effective.to_string(), found.source.clone()), ("0".to_string(), root.join(V2_EFFECTIVE)));
        // v1: an empty cpuset.effective_cpus (a group not set up) is passed over.
        fs::write(deep.join("cpuset.effective_cpus"), "\n").unwrap();
        fs::write(root.join("a/cpuset.cpus"), "1\n").unwrap();
        let found = Cpuset::read(Some((&root, &deep)), false).unwrap();
        assert_eq!(found.source, root.join("a/cpuset.cpus"));
        // No file anywhere: the online CPUs.
        let none = Cpuset::read(Some((&root.join("a"), &deep)), true).unwrap();
        assert_eq!((none.source, none.effective), (PathBuf::from(ONLINE), none.online));
        fs::remove_dir_all(&root).unwrap();
    }
}
