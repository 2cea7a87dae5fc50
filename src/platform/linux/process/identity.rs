//! Who the child runs as and what it may gain: DAMON_USER and DAMON_RESTRICTED_TOKEN.
//!
//! Everything is decided before fork: the user database is read (NSS may allocate, lock and
//! open files, none of which is allowed between fork and exec), the ids and groups land in
//! plain buffers, and what the kernel offers (the highest capability, whether damon may shrink
//! the bounding set) is read from /proc. Between fork and exec, [`Identity::apply`] makes only
//! system calls on that data: no allocation, no lock.
//!
//! The user database is read in a short-lived process of its own (see [`look_up_apart`]): the
//! NSS modules a lookup loads would otherwise stay mapped in damon for as long as the workload
//! runs.
//!
//! - DAMON_USER alone: the child is an ordinary process of that user. Going from root to
//!   another uid, the kernel clears its permitted, effective and ambient capabilities; setuid
//!   programs work for it as they would for a login of that user.
//! - DAMON_RESTRICTED_TOKEN=Y: the child also gets no_new_privs (exec can never add a
//!   privilege: setuid bits and file capabilities are ignored) and every capability set empty,
//!   bounding set included; and when damon is root, it runs as DAMON_USER, `nobody` by default.
//!   It never runs as root then: uid 0 owns the cgroup files, so even without a capability it
//!   could move itself out of its group and rewrite its own limits.

use std::ffi::CString;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;

use nix::libc;
use nix::sys::wait::waitpid;
use nix::unistd::{fork, getegid, geteuid, ForkResult, Gid, Uid, User};

use crate::config::{UserSetting, UserSpec};
use crate::platform::IdentityError;

/// The user DAMON_RESTRICTED_TOKEN=Y runs the child as when DAMON_USER is unset.
const DEFAULT_RESTRICTED_USER: &str = "nobody";
const USER_VAR: &str = "DAMON_USER";
/// linux/capability.h: shrinking the bounding set needs this capability.
const CAP_SETPCAP: u32 = 8;
/// linux/capability.h: version 3 of capset's header, with 64 capability bits in two words.
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
/// The highest capability number the bounding set's loop tries: capget's two 32-bit words.
/// The loop ends sooner, at the first number this kernel calls invalid (EINVAL): asking
/// costs one prctl, where reading /proc/sys/kernel/cap_last_cap cost a launch 8 to 20 µs.
const MAX_CAP: u32 = 63;

/// The ids the child takes, and the groups it gets when damon may set them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ids {
    /// The user's name, for the log; `None` for an id with no entry in the user database.
    name: Option<String>,
    uid: Uid,
    gid: Gid,
    /// The supplementary groups; `None` leaves damon's own (only root may change them).
    groups: Option<Vec<Gid>>,
}

/// What a restricted child gives up, with what the kernel offers, read before fork.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Restriction {
    /// Whether damon holds CAP_SETPCAP. Without it the bounding set stays as it is; with
    /// no_new_privs and no permitted capability, nothing can be gained from it.
    drop_bounding_set: bool,
}

/// Who the child runs as; made by [`Identity::resolve`] before anything starts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    /// `None`: damon's own ids and groups.
    ids: Option<Ids>,
    /// The supplementary groups as setgroups(2) takes them, made before fork: `apply` may not
    /// allocate. `None` leaves them as they are.
    raw_groups: Option<Vec<libc::gid_t>>,
    restriction: Option<Restriction>,
}

impl Identity {
    /// The child runs as damon does (the trial group of `--check` starts no child).
    pub fn unchanged() -> Identity {
        Identity::default()
    }

    /// Reads the user database for DAMON_USER (or its default) and decides what the child
    /// gives up. A user that does not exist, or that damon cannot become, is an error naming
    /// the setting and its value.
    pub fn resolve(user: Option<&UserSetting>, restricted: bool) -> Result<Identity, IdentityError> {
        let (euid, egid) = (geteuid(), getegid());
        let wanted = match user {
            Some(setting) => Some(look_up_apart(&setting.spec).map_err(|reason| IdentityError {
                source: setting.source.clone(),
                value: setting.spec.to_string(),
                reason,
            })?),
            None if restricted && euid.is_root() => {
                Some(look_up_apart(&UserSpec::Name(DEFAULT_RESTRICTED_USER.to_string())).map_err(|reason| {
                    IdentityError {
                        source: format!("{} (unset: its default with DAMON_RESTRICTED_TOKEN=Y)", USER_VAR),
                        value: DEFAULT_RESTRICTED_USER.to_string(),
                        reason: format!("{}; set {} to the user the child should run as", reason, USER_VAR),
                    }
                })?)
            }
            None => None,
        };
        let invalid = |reason: String| {
            let (source, value) = match user {
                Some(setting) => (setting.source.clone(), setting.spec.to_string()),
                None => (USER_VAR.to_string(), DEFAULT_RESTRICTED_USER.to_string()),
            };
            IdentityError { source, value, reason }
        };
        let ids = match wanted {
            Some(ids) if restricted && ids.uid.is_root() => {
                return Err(invalid(
                    "DAMON_RESTRICTED_TOKEN=Y never runs the child as root: uid 0 owns the cgroup files, so even \
                     without capabilities it could leave its cgroup and change its limits"
                        .to_string(),
                ))
            }
            Some(ids) if euid.is_root() => Some(ids),
            // Not root: the only user damon can start the child as is its own.
            Some(ids) if ids.uid == euid && ids.gid == egid => Some(Ids { groups: None, ..ids }),
            Some(ids) => {
                return Err(invalid(format!(
                    "damon runs as uid {} gid {}, not as root, and cannot start the child as uid {} gid {}",
                    euid, egid, ids.uid, ids.gid
                )))
            }
            // Not root and restricted: every id of the child becomes the effective one, so no
            // real or saved id (a setuid caller's root) is left to switch back to.
            None if restricted => Some(Ids { name: None, uid: euid, gid: egid, groups: None }),
            None => None,
        };
        let restriction =
            if restricted { Some(Restriction { drop_bounding_set: holds_capability(CAP_SETPCAP) }) } else { None };
        let raw_groups =
            ids.as_ref().and_then(|ids| ids.groups.as_ref()).map(|g| g.iter().map(|g| g.as_raw()).collect());
        Ok(Identity { ids, raw_groups, restriction })
    }

    /// The user whose ids the child takes, if it takes any: an exec refused with EACCES is
    /// then that user's lack of access.
    pub fn switched_user(&self) -> Option<String> {
        self.ids.as_ref().map(Ids::describe)
    }

    /// Whether the child runs as uid 0, which owns the cgroup files.
    pub fn runs_as_root(&self) -> bool {
        self.ids.as_ref().map_or_else(|| geteuid().is_root(), |ids| ids.uid.is_root())
    }

    /// The user, for the "damon starting" line and `--check`.
    pub fn describe_user(&self) -> String {
        match &self.ids {
            Some(ids) => {
                let groups = match &ids.groups {
                    Some(groups) => groups.iter().map(|g| g.to_string()).collect::<Vec<_>>().join(","),
                    None => "damon's".to_string(),
                };
                format!("{}, gid {}, groups {}", ids.describe(), ids.gid, groups)
            }
            None => format!("damon's own (uid {})", geteuid()),
        }
    }

    /// What the child may gain, for the "damon starting" line and `--check`.
    pub fn describe_privileges(&self) -> &'static str {
        match self.restriction {
            None => "unchanged",
            Some(Restriction { drop_bounding_set: true, .. }) => "no_new_privs, every capability set empty",
            Some(Restriction { drop_bounding_set: false, .. }) => {
                "no_new_privs, every capability set empty but the bounding set (damon lacks CAP_SETPCAP)"
            }
        }
    }

    /// Takes on this identity. Runs between the child's clone and its exec, once the child is in
    /// its cgroup (afterwards it could no longer join it): only system calls on data prepared
    /// before the clone, no allocation, no lock.
    ///
    /// The ids change through the system calls themselves, not libc's wrappers: glibc and musl
    /// apply a uid change to every thread they know of by signalling it, and in a child started
    /// with clone, which they know nothing of, those are damon's threads. The system call
    /// changes the calling thread, which is the whole child.
    pub fn apply(&self) -> io::Result<()> {
        let check = |result: libc::c_long| if result == -1 { Err(io::Error::last_os_error()) } else { Ok(()) };
        // First, while the child still holds CAP_SETPCAP: changing uid clears it.
        if let Some(Restriction { drop_bounding_set: true }) = self.restriction {
            drop_from_bounding_set(0)?;
        }
        if let Some(ids) = &self.ids {
            // Groups first: setgroups needs CAP_SETGID, which the uid change takes away.
            if let Some(groups) = &self.raw_groups {
                // SAFETY: setgroups(2) reads `groups.len()` gids from a live slice it does not keep.
                check(unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) })?;
            }
            let (uid, gid) = (ids.uid.as_raw(), ids.gid.as_raw());
            // SAFETY: setresgid(2) and setresuid(2) take integers only.
            check(unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) })?;
            // SAFETY: as above.
            check(unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) })?;
        }
        if self.restriction.is_some() {
            // SAFETY: prctl(2) with integer arguments only.
            if unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0, 0, 0) }
                == -1
            {
                let e = io::Error::last_os_error();
                // Kernels before 4.3 have no ambient set: nothing to clear.
                if e.raw_os_error() != Some(libc::EINVAL) {
                    return Err(e);
                }
            }
            clear_capabilities()?;
            // SAFETY: prctl(2) with integer arguments only.
            if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) } == -1 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

impl Ids {
    fn describe(&self) -> String {
        match &self.name {
            Some(name) => format!("{} (uid {})", name, self.uid),
            None => format!("uid {}", self.uid),
        }
    }
}

/// musl, the static release build, reads /etc/passwd itself and asks nscd if one runs: it loads
/// no NSS module, so a user that only LDAP, SSSD or systemd-homed knows is not found.
#[cfg(target_env = "musl")]
const NO_SUCH_USER: &str = "no such user in /etc/passwd or nscd (this static build loads no NSS module: a user only \
                            LDAP, SSSD or systemd-homed knows needs nscd running): create it, or give its uid:gid";
#[cfg(not(target_env = "musl"))]
const NO_SUCH_USER: &str = "no such user: create it, or give its uid:gid";

/// Ids and groups of a user, from the user database. The error is the reason, for an
/// [`IdentityError`].
fn look_up(spec: &UserSpec) -> Result<Ids, String> {
    let database = |e: nix::errno::Errno| format!("cannot read the user database: {}", e);
    let user = match spec {
        UserSpec::Name(name) => Some(User::from_name(name).map_err(database)?.ok_or_else(|| NO_SUCH_USER.to_string())?),
        UserSpec::Id { uid, .. } => User::from_uid(Uid::from_raw(*uid)).map_err(database)?,
    };
    match (user, spec) {
        (Some(user), _) => {
            let gid = match spec {
                UserSpec::Id { gid: Some(gid), .. } => Gid::from_raw(*gid),
                _ => user.gid,
            };
            let c_name =
                CString::new(user.name.as_bytes()).map_err(|_| "the user's name holds a NUL byte".to_string())?;
            // The primary group is in the list (getgrouplist puts it there).
            let groups = nix::unistd::getgrouplist(&c_name, gid)
                .map_err(|e| format!("cannot read the groups of {}: {}", user.name, e))?;
            Ok(Ids { name: Some(user.name), uid: user.uid, gid, groups: Some(groups) })
        }
        (None, UserSpec::Id { uid, gid: Some(gid) }) => Ok(Ids {
            name: None,
            uid: Uid::from_raw(*uid),
            gid: Gid::from_raw(*gid),
            groups: Some(vec![Gid::from_raw(*gid)]),
        }),
        (None, _) => {
            Err("no such uid in the user database; give its group as well (uid:gid) to use it anyway".to_string())
        }
    }
}

/// [`look_up`] in a child process, when damon has a single thread (as when it starts; else in
/// damon itself). The NSS modules a lookup loads stay mapped for the life of the process that
/// loaded them: here `group: files systemd` maps libnss_systemd with libcap and libm, 0.7 MiB
/// of damon's 4 MiB; an LDAP module would bring several MiB more.
fn look_up_apart(spec: &UserSpec) -> Result<Ids, String> {
    if !single_threaded() {
        return look_up(spec);
    }
    let (mut ours, theirs) = match UnixStream::pair() {
        Ok(pair) => pair,
        Err(_) => return look_up(spec),
    };
    // SAFETY: damon has one thread (checked above), so no lock can be held by a thread that
    // does not exist in the child: the child may allocate and read the user database like the
    // parent. It never returns from this function: it ends in _exit, whatever happens.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            drop(ours);
            let answer = std::panic::catch_unwind(|| encode(&look_up(spec))).unwrap_or_default();
            let _ = (&theirs).write_all(answer.as_bytes());
            // SAFETY: _exit ends the child at once, without running the parent's exit handlers
            // or flushing its buffers a second time.
            unsafe { libc::_exit(0) }
        }
        Ok(ForkResult::Parent { child }) => {
            drop(theirs);
            let mut answer = String::new();
            let read = ours.read_to_string(&mut answer);
            let _ = waitpid(child, None);
            match read {
                Ok(_) => decode(&answer),
                Err(e) => Err(format!("cannot read the user database: the lookup's answer was lost: {}", e)),
            }
        }
        Err(_) => look_up(spec),
    }
}

/// Whether this process has one thread (/proc/self/status).
fn single_threaded() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().any(|line| line.strip_prefix("Threads:").map_or(false, |n| n.trim() == "1"))
}

/// A lookup's answer as text: "ok", uid, gid, the groups separated by commas, then the name
/// ("-" for none; last, as it is the only free-form field); or "error" and the reason.
fn encode(result: &Result<Ids, String>) -> String {
    match result {
        Ok(ids) => {
            let groups = ids.groups.iter().flatten().map(|g| g.to_string()).collect::<Vec<_>>().join(",");
            format!("ok\n{}\n{}\n{}\n{}", ids.uid, ids.gid, groups, ids.name.as_deref().unwrap_or("-"))
        }
        Err(reason) => format!("error\n{}", reason),
    }
}

fn decode(answer: &str) -> Result<Ids, String> {
    let lost = || "cannot read the user database: the lookup ended without an answer".to_string();
    let mut lines = answer.splitn(5, '\n');
    match lines.next() {
        Some("ok") => {
            let mut id = || lines.next().and_then(|v| v.parse::<u32>().ok()).ok_or_else(lost);
            let (uid, gid) = (Uid::from_raw(id()?), Gid::from_raw(id()?));
            let groups = lines
                .next()
                .ok_or_else(lost)?
                .split(',')
                .filter(|g| !g.is_empty())
                .map(|g| g.parse().map(Gid::from_raw).map_err(|_| lost()))
                .collect::<Result<Vec<_>, _>>()?;
            let name = match lines.next().ok_or_else(lost)? {
                "-" => None,
                name => Some(name.to_string()),
            };
            Ok(Ids { name, uid, gid, groups: Some(groups) })
        }
        Some("error") => Err(answer["error\n".len()..].to_string()),
        _ => Err(lost()),
    }
}

/// Drops from the calling thread's bounding set every capability of this kernel that `keep`
/// (a bit per number) does not hold. Needs CAP_SETPCAP. System calls only: runs in the child.
fn drop_from_bounding_set(keep: u64) -> io::Result<()> {
    for cap in (0..=MAX_CAP).filter(|&cap| keep & (1 << cap) == 0) {
        // SAFETY: prctl(2) with integer arguments only; it touches no memory of ours.
        let result = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
        if result == -1 {
            match io::Error::last_os_error() {
                // Beyond the kernel's last capability.
                e if e.raw_os_error() == Some(libc::EINVAL) && cap > 0 => break,
                e => return Err(e),
            }
        }
    }
    Ok(())
}

/// Limits the calling thread (the child, between its clone and its exec) to the capabilities
/// in `keep`: out of the bounding set, so that no exec gives them back (root's exec takes its
/// permitted set from it), and out of the permitted, effective and inheritable sets now; the
/// ambient set is emptied. System calls only.
pub fn limit_capabilities(keep: u64) -> io::Result<()> {
    drop_from_bounding_set(keep)?;
    // SAFETY: prctl(2) with integer arguments only.
    if unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0, 0, 0) } == -1 {
        let e = io::Error::last_os_error();
        // Kernels before 4.3 have no ambient set: nothing to clear.
        if e.raw_os_error() != Some(libc::EINVAL) {
            return Err(e);
        }
    }
    let header = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let mut data = [CapData { effective: 0, permitted: 0, inheritable: 0 }; 2];
    // SAFETY: both pointers are to live, properly laid out structs on this stack frame; with
    // version 3 the kernel writes exactly two CapData.
    if unsafe { libc::syscall(libc::SYS_capget, &header as *const CapHeader, data.as_mut_ptr()) } == -1 {
        return Err(io::Error::last_os_error());
    }
    for (word, half) in data.iter_mut().zip([keep as u32, (keep >> 32) as u32]) {
        word.effective &= half;
        word.permitted &= half;
        word.inheritable &= half;
    }
    // SAFETY: as above; capset only reads the two CapData.
    if unsafe { libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether damon's effective set holds capability `cap` (capget, version 3: two words of 32).
pub fn holds_capability(cap: u32) -> bool {
    let header = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let mut data = [CapData { effective: 0, permitted: 0, inheritable: 0 }; 2];
    // SAFETY: both pointers are to live, properly laid out structs on this stack frame; with
    // version 3 the kernel writes exactly two CapData.
    if unsafe { libc::syscall(libc::SYS_capget, &header as *const CapHeader, data.as_mut_ptr()) } == -1 {
        return false;
    }
    let effective = u64::from(data[0].effective) | u64::from(data[1].effective) << 32;
    cap < 64 && effective & (1 << cap) != 0
}

/// struct __user_cap_header_struct (linux/capability.h).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// struct __user_cap_data_struct (linux/capability.h); version 3 takes two of them.
#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Empties the effective, permitted and inheritable sets of the calling thread (the whole
/// child, which has one thread). libc has no wrapper for capset: the raw system call.
fn clear_capabilities() -> io::Result<()> {
    let header = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let data = [CapData { effective: 0, permitted: 0, inheritable: 0 }; 2];
    // SAFETY: both pointers are to live, properly laid out structs on this stack frame; with
    // version 3 the kernel reads exactly two CapData and writes nothing (capset only reads).
    if unsafe { libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting(spec: UserSpec) -> UserSetting {
        UserSetting { spec, source: "DAMON_USER".to_string() }
    }

    #[test]
    fn a_lookup_answer_survives_its_trip_between_processes() {
        let ids = Ids {
            name: Some("a-b.c".to_string()),
            uid: Uid::from_raw(7),
            gid: Gid::from_raw(8),
            groups: Some(vec![Gid::from_raw(8), Gid::from_raw(9)]),
        };
        assert_eq!(decode(&encode(&Ok(ids.clone()))), Ok(ids));
        let nameless = Ids { name: None, uid: Uid::from_raw(1), gid: Gid::from_raw(2), groups: Some(vec![]) };
        assert_eq!(decode(&encode(&Ok(nameless.clone()))), Ok(nameless));
        assert_eq!(decode(&encode(&Err("no such user".to_string()))), Err("no such user".to_string()));
        assert!(decode("").unwrap_err().contains("without an answer"));
        assert!(decode("ok\n1\n").unwrap_err().contains("without an answer"));
    }

    #[test]
    fn nothing_asked_changes_nothing() {
        assert_eq!(Identity::resolve(None, false).unwrap(), Identity::unchanged());
        assert_eq!(Identity::unchanged().describe_privileges(), "unchanged");
    }

    #[test]
    fn an_unknown_name_is_refused_with_its_setting() {
        let e = Identity::resolve(Some(&setting(UserSpec::Name("no-such-user-here".to_string()))), false).unwrap_err();
        assert_eq!(e.to_string(), format!("invalid value \"no-such-user-here\" for DAMON_USER: {}", NO_SUCH_USER));
    }

    #[test]
    fn an_unknown_uid_needs_its_gid() {
        // No database has every uid: find one that is free.
        let uid = (40_000..60_000).find(|&u| User::from_uid(Uid::from_raw(u)).ok().flatten().is_none()).unwrap();
        let e = Identity::resolve(Some(&setting(UserSpec::Id { uid, gid: None })), false).unwrap_err();
        assert!(e.to_string().contains("uid:gid"), "{}", e);
        if geteuid().is_root() {
            let id = Identity::resolve(Some(&setting(UserSpec::Id { uid, gid: Some(uid + 1) })), true).unwrap();
            assert_eq!(id.describe_user(), format!("uid {}, gid {}, groups {}", uid, uid + 1, uid + 1));
        }
    }

    #[test]
    fn root_is_never_the_restricted_user() {
        for spec in [UserSpec::Name("root".to_string()), UserSpec::Id { uid: 0, gid: Some(0) }] {
            let e = Identity::resolve(Some(&setting(spec)), true).unwrap_err();
            assert!(e.to_string().contains("never runs the child as root") || !geteuid().is_root(), "{}", e);
        }
    }

    #[test]
    fn restricted_root_defaults_to_nobody() {
        if !geteuid().is_root() {
            return;
        }
        let id = Identity::resolve(None, true).unwrap();
        assert!(id.describe_user().starts_with("nobody (uid "), "{}", id.describe_user());
        assert!(id.describe_privileges().starts_with("no_new_privs"));
    }
}
