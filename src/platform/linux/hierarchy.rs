//! Finding the cgroup hierarchies and damon's place in them, from `/proc/self/mountinfo` and
//! `/proc/self/cgroup` rather than fixed paths: hosts mount cgroups in different places, and
//! inside a cgroup namespace or a container the mount's root is not the hierarchy's root.

use std::path::{Path, PathBuf};

use super::cgroup_file::{self, CgroupIoError};

/// The v1 controllers; a mount's other options (`rw`, `xattr`, `name=systemd`) are not.
const V1_CONTROLLERS: [&str; 14] = [
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "blkio",
    "perf_event",
    "net_prio",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
];

/// A mounted cgroup hierarchy and damon's own cgroup in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub mount_point: PathBuf,
    /// The v1 controllers attached to it (`memory`, `cpu`, ...); empty for cgroup2.
    pub controllers: Vec<String>,
    /// damon's own cgroup, as a directory under `mount_point`.
    pub own_dir: PathBuf,
}

impl Hierarchy {
    /// The directory of `cgroup_path` (a path from the hierarchy's root, like `/nomad.slice`).
    pub fn dir_of(&self, cgroup_path: &Path) -> PathBuf {
        self.mount_point.join(cgroup_path.strip_prefix("/").unwrap_or(cgroup_path))
    }
}

/// The cgroup hierarchies of this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchies {
    pub v2: Option<Hierarchy>,
    pub v1: Vec<Hierarchy>,
}

impl Hierarchies {
    pub fn read() -> Result<Self, CgroupIoError> {
        let mountinfo = cgroup_file::read(Path::new("/proc/self/mountinfo"))?;
        let own = cgroup_file::read(Path::new("/proc/self/cgroup"))?;
        Ok(Self::parse(&mountinfo, &own))
    }

    pub fn parse(mountinfo: &str, proc_self_cgroup: &str) -> Self {
        let mut found = Hierarchies { v2: None, v1: Vec::new() };
        for line in mountinfo.lines() {
            // "36 35 0:30 ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS"
            let (left, right) = match line.split_once(" - ") {
                Some(parts) => parts,
                None => continue,
            };
            let left: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            if left.len() < 5 || right.len() < 3 {
                continue;
            }
            let (root, mount_point) = (unescape(left[3]), PathBuf::from(unescape(left[4])));
            match right[0] {
                "cgroup2" if found.v2.is_none() => {
                    let own = own_path(proc_self_cgroup, |controllers| controllers.is_empty(), "0");
                    found.v2 = Some(Hierarchy {
                        own_dir: own_dir(&mount_point, &root, own),
                        mount_point,
                        controllers: Vec::new(),
                    });
                }
                "cgroup" => {
                    let controllers: Vec<String> =
                        right[2].split(',').filter(|o| V1_CONTROLLERS.contains(o)).map(str::to_string).collect();
                    if controllers.is_empty() || found.v1.iter().any(|h| h.controllers == controllers) {
                        continue;
                    }
                    let own = own_path(proc_self_cgroup, |c| same_set(c, &controllers), "");
                    found.v1.push(Hierarchy { own_dir: own_dir(&mount_point, &root, own), mount_point, controllers });
                }
                _ => {}
            }
        }
        found
    }

    /// The v1 hierarchy a controller is attached to.
    pub fn v1_with(&self, controller: &str) -> Option<&Hierarchy> {
        self.v1.iter().find(|h| h.controllers.iter().any(|c| c == controller))
    }
}

fn same_set(a: &[&str], b: &[String]) -> bool {
    a.len() == b.len() && a.iter().all(|c| b.iter().any(|d| d == c))
}

/// damon's cgroup path in the hierarchy whose `/proc/self/cgroup` line matches.
fn own_path(proc_self_cgroup: &str, matches: impl Fn(&[&str]) -> bool, id: &str) -> Option<String> {
    proc_self_cgroup.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (hid, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let controllers: Vec<&str> = controllers.split(',').filter(|c| !c.is_empty()).collect();
        if (id.is_empty() || hid == id) && matches(&controllers) {
            Some(path.to_string())
        } else {
            None
        }
    })
}

/// Maps a cgroup path to its directory: the mount shows the hierarchy from `root` down.
/// A path outside the mount (another cgroup namespace) falls back to the mount point.
fn own_dir(mount_point: &Path, root: &str, own: Option<String>) -> PathBuf {
    let own = match own {
        Some(own) => own,
        None => return mount_point.to_path_buf(),
    };
    match Path::new(&own).strip_prefix(root) {
        Ok(rel) if rel.as_os_str().is_empty() => mount_point.to_path_buf(),
        Ok(rel) => mount_point.join(rel),
        Err(_) => mount_point.to_path_buf(),
    }
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let bytes = field.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            let code = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(code as char);
            i += 4;
        } else {
            out.push(bytes[i] as char);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const HYBRID_CGROUP: &str = "9:name=systemd:/\n4:memory:/process_api/c05\n2:cpuacct:/\n1:cpu:/\n0::/\n";

    #[test]
    fn hybrid_host_has_v1_controllers_and_an_empty_v2() {
        let h = Hierarchies::parse(HYBRID_MOUNTINFO, HYBRID_CGROUP);
        assert_eq!(h.v1.len(), 3, "{:?}", h.v1);
        let memory = h.v1_with("memory").unwrap();
        assert_eq!(memory.own_dir, Path::new("/sys/fs/cgroup/memory/process_api/c05"));
        assert_eq!(h.v1_with("cpu").unwrap().own_dir, Path::new("/sys/fs/cgroup/cpu"));
        assert_eq!(h.v2.unwrap().own_dir, Path::new("/sys/fs/cgroup/unified"));
    }

    #[test]
    fn pure_v2_with_a_namespaced_root() {
        let mountinfo = "30 25 0:26 /nomad.slice /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        let h = Hierarchies::parse(mountinfo, "0::/nomad.slice/task.scope\n");
        let v2 = h.v2.unwrap();
        assert_eq!(v2.own_dir, Path::new("/sys/fs/cgroup/task.scope"));
        assert!(h.v1.is_empty());
    }

    #[test]
    fn comounted_v1_controllers_form_one_hierarchy() {
        let mountinfo = "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n";
        let h = Hierarchies::parse(mountinfo, "3:cpu,cpuacct:/a\n");
        assert_eq!(h.v1_with("cpuacct").unwrap().own_dir, Path::new("/sys/fs/cgroup/cpu,cpuacct/a"));
    }

    #[test]
    fn escaped_mount_points() {
        assert_eq!(unescape("/a\\040b"), "/a b");
    }
}
