//! Finding the cgroup hierarchies and damon's place in them, from `/proc/self/cgroup` and the
//! mounts rather than fixed paths: hosts mount cgroups in different places, and inside a cgroup
//! namespace or a container the mount's root is not the hierarchy's root.
//!
//! `/proc/self/mountinfo` says where every hierarchy is mounted and from which root, but it has a
//! line for every mount of the host, which the kernel formats at each read: on a Nomad client,
//! with a secrets tmpfs per task, hundreds. So damon first looks where systemd and the
//! distributions mount them (`/sys/fs/cgroup/<controllers>`, `/sys/fs/cgroup/unified`,
//! `/sys/fs/cgroup`) and takes those only when the kernel confirms each one is the whole
//! hierarchy, seen from the initial cgroup namespace; anything else is read from mountinfo.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::super::mountinfo::Mount;
use super::file::{self, CgroupIoError};

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

/// Where systemd and the distributions mount the hierarchies.
const STANDARD_MOUNTS: &str = "/sys/fs/cgroup";
/// The inode number of the initial cgroup namespace (the kernel's `PROC_CGROUP_INIT_INO`).
const INITIAL_CGROUP_NAMESPACE_INO: u64 = 0xEFFF_FFFB;

/// A hierarchy where the standard layout puts it, before the kernel has confirmed it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expected {
    mount_point: PathBuf,
    /// Empty for cgroup2.
    controllers: Vec<String>,
    /// damon's cgroup path in it, from `/proc/self/cgroup`.
    own_path: String,
}

impl Hierarchies {
    pub fn read() -> Result<Self, CgroupIoError> {
        let own = file::read(Path::new("/proc/self/cgroup"))?;
        if let Some(found) = Self::at_standard_mounts(&own) {
            return Ok(found);
        }
        let mountinfo = file::read(Path::new("/proc/self/mountinfo"))?;
        Ok(Self::parse(&mountinfo, &own))
    }

    /// The hierarchies at their standard mount points, if every one of them is there whole and
    /// damon is in the initial cgroup namespace, where `/proc/self/cgroup` gives paths from the
    /// hierarchies' roots. `None` sends the caller to mountinfo.
    fn at_standard_mounts(proc_self_cgroup: &str) -> Option<Self> {
        match std::fs::metadata("/proc/self/ns/cgroup") {
            Ok(ns) if ns.ino() == INITIAL_CGROUP_NAMESPACE_INO => {}
            // Before Linux 4.6 there are no cgroup namespaces.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            _ => return None,
        }
        let expected = standard_layout(proc_self_cgroup, Path::new(STANDARD_MOUNTS))?;
        let mut found = Hierarchies { v2: None, v1: Vec::new() };
        for hierarchy in expected {
            if !is_whole_hierarchy(&hierarchy.mount_point, hierarchy.controllers.is_empty()) {
                return None;
            }
            let own_dir = own_dir(&hierarchy.mount_point, "/", Some(hierarchy.own_path));
            let hierarchy =
                Hierarchy { mount_point: hierarchy.mount_point, controllers: hierarchy.controllers, own_dir };
            if hierarchy.controllers.is_empty() {
                found.v2 = Some(hierarchy);
            } else {
                found.v1.push(hierarchy);
            }
        }
        Some(found)
    }

    pub fn parse(mountinfo: &str, proc_self_cgroup: &str) -> Self {
        let mut found = Hierarchies { v2: None, v1: Vec::new() };
        for mount in mountinfo.lines().filter_map(Mount::parse) {
            let (root, mount_point) = (mount.root, mount.point);
            // A later mount at or above a hierarchy's mount point hides it (a tmpfs over
            // /sys/fs/cgroup/pids): it is no longer there to use.
            found.v1.retain(|h| !h.mount_point.starts_with(&mount_point));
            if found.v2.as_ref().map_or(false, |h| h.mount_point.starts_with(&mount_point)) {
                found.v2 = None;
            }
            // The first mount of a hierarchy is used, unless a later one is mounted over it:
            // mountinfo lists mounts in the order they were made, so the last at a mount point
            // is the one visible there.
            let usable = |known: Option<&Hierarchy>| known.map_or(true, |h| h.mount_point == mount_point);
            match mount.fs_type.as_str() {
                "cgroup2" if usable(found.v2.as_ref()) => {
                    let own = own_path(proc_self_cgroup, |controllers| controllers.is_empty(), "0");
                    found.v2 = Some(Hierarchy {
                        own_dir: own_dir(&mount_point, &root, own),
                        mount_point,
                        controllers: Vec::new(),
                    });
                }
                "cgroup" => {
                    let controllers: Vec<String> = mount
                        .super_options
                        .split(',')
                        .filter(|o| V1_CONTROLLERS.contains(o))
                        .map(str::to_string)
                        .collect();
                    let known = found.v1.iter().position(|h| h.controllers == controllers);
                    if controllers.is_empty() || !usable(known.map(|i| &found.v1[i])) {
                        continue;
                    }
                    let own = own_path(proc_self_cgroup, |c| same_set(c, &controllers), "");
                    let hierarchy = Hierarchy { own_dir: own_dir(&mount_point, &root, own), mount_point, controllers };
                    match known {
                        Some(i) => found.v1[i] = hierarchy,
                        None => found.v1.push(hierarchy),
                    }
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

/// Where the standard layout mounts each hierarchy of `/proc/self/cgroup`: a v1 hierarchy at
/// `root/<its controllers>` (`cpu,cpuacct` when co-mounted), cgroup2 at `root` alone or, beside
/// v1 hierarchies, at `root/unified`. `None` for a hierarchy it does not name, such as one
/// mounted with a `name=` as well as controllers.
fn standard_layout(proc_self_cgroup: &str, root: &Path) -> Option<Vec<Expected>> {
    let mut v2_path = None;
    let mut expected = Vec::new();
    for line in proc_self_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        if id == "0" && controllers.is_empty() {
            v2_path = Some(path);
            continue;
        }
        let listed: Vec<&str> = controllers.split(',').filter(|c| !c.is_empty()).collect();
        if !listed.iter().any(|c| V1_CONTROLLERS.contains(c)) {
            // name=systemd and the like: no controller damon uses, as mountinfo's reading skips.
            continue;
        }
        if !listed.iter().all(|c| V1_CONTROLLERS.contains(c)) {
            return None;
        }
        expected.push(Expected {
            mount_point: root.join(controllers),
            controllers: listed.iter().map(|c| c.to_string()).collect(),
            own_path: path.to_string(),
        });
    }
    if let Some(path) = v2_path {
        let mount_point = if expected.is_empty() { root.to_path_buf() } else { root.join("unified") };
        expected.push(Expected { mount_point, controllers: Vec::new(), own_path: path.to_string() });
    }
    Some(expected)
}

/// Whether `dir` is the root of a whole hierarchy: files the kernel gives the root cgroup
/// alone (`cgroup.sane_behavior` on v1), or all but the root (`cgroup.type` on cgroup2).
fn is_whole_hierarchy(dir: &Path, cgroup2: bool) -> bool {
    let exists = |name: &str| std::fs::symlink_metadata(dir.join(name)).is_ok();
    if cgroup2 {
        exists("cgroup.controllers") && !exists("cgroup.type")
    } else {
        exists("cgroup.sane_behavior")
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
    fn the_standard_layout_names_each_hierarchy_by_its_controllers() {
        let root = Path::new("/sys/fs/cgroup");
        let expected = standard_layout("9:name=systemd:/\n3:cpu,cpuacct:/a\n4:memory:/b/c\n0::/\n", root).unwrap();
        let mounts: Vec<(&Path, &str)> =
            expected.iter().map(|e| (e.mount_point.as_path(), e.own_path.as_str())).collect();
        assert_eq!(
            mounts,
            [
                (Path::new("/sys/fs/cgroup/cpu,cpuacct"), "/a"),
                (Path::new("/sys/fs/cgroup/memory"), "/b/c"),
                (Path::new("/sys/fs/cgroup/unified"), "/"),
            ]
        );
        assert_eq!(expected[0].controllers, ["cpu", "cpuacct"]);
        assert!(expected[2].controllers.is_empty());
    }

    #[test]
    fn cgroup2_alone_is_at_the_root_of_the_layout() {
        let expected = standard_layout("0::/nomad.slice/a.scope\n", Path::new("/sys/fs/cgroup")).unwrap();
        assert_eq!(expected.len(), 1);
        assert_eq!(expected[0].mount_point, Path::new("/sys/fs/cgroup"));
        assert_eq!(expected[0].own_path, "/nomad.slice/a.scope");
    }

    #[test]
    fn a_hierarchy_with_a_name_and_controllers_is_left_to_mountinfo() {
        assert_eq!(standard_layout("5:cpu,name=mine:/\n0::/\n", Path::new("/sys/fs/cgroup")), None);
    }

    /// On the machine the tests run on, whatever the standard layout confirms is what
    /// mountinfo says: the same mounts, the same controllers, damon's cgroup in each.
    #[test]
    fn the_standard_mounts_confirmed_here_agree_with_mountinfo() {
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let from_mountinfo = Hierarchies::parse(&mountinfo, &own);
        let fast = match Hierarchies::at_standard_mounts(&own) {
            Some(fast) => fast,
            None => return eprintln!("not the standard layout here; mountinfo is read"),
        };
        assert_eq!(fast.v2, from_mountinfo.v2);
        let sorted = |mut v: Vec<Hierarchy>| {
            v.sort_by(|a, b| a.mount_point.cmp(&b.mount_point));
            v
        };
        assert_eq!(sorted(fast.v1), sorted(from_mountinfo.v1));
    }

    #[test]
    fn a_mount_over_a_hierarchy_hides_the_one_below() {
        let mountinfo = "\
35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
90 35 0:32 /a/part /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
91 41 0:38 /b /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
92 31 0:32 / /elsewhere rw - cgroup cgroup rw,memory
";
        let h = Hierarchies::parse(mountinfo, "4:memory:/a/part/x\n0::/b\n");
        assert_eq!(h.v1.len(), 1);
        assert_eq!(h.v1[0].own_dir, Path::new("/sys/fs/cgroup/memory/x"));
        assert_eq!(h.v2.unwrap().own_dir, Path::new("/sys/fs/cgroup/unified"));
    }

    #[test]
    fn a_mount_of_another_file_system_over_a_hierarchy_or_its_parent_hides_it() {
        let over_pids = format!("{}42 31 0:39 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n90 42 0:50 / /sys/fs/cgroup/pids rw - tmpfs none rw\n", HYBRID_MOUNTINFO);
        let h = Hierarchies::parse(&over_pids, HYBRID_CGROUP);
        assert!(h.v1_with("pids").is_none(), "{:?}", h.v1);
        assert!(h.v1_with("memory").is_some() && h.v2.is_some());
        let over_all = format!("{}90 23 0:50 / /sys/fs/cgroup rw - tmpfs none rw\n", HYBRID_MOUNTINFO);
        let h = Hierarchies::parse(&over_all, HYBRID_CGROUP);
        assert!(h.v1.is_empty() && h.v2.is_none(), "{:?}", h.v1);
    }

    #[test]
    fn an_escaped_mount_point_is_found() {
        let mountinfo = "30 25 0:26 / /sys/fs/c\\040group rw - cgroup2 cgroup2 rw\n";
        let h = Hierarchies::parse(mountinfo, "0::/\n");
        assert_eq!(h.v2.map(|h| h.mount_point), Some(PathBuf::from("/sys/fs/c group")));
    }
}
