//! A directory damon works in as root although the workload may write there too (Nomad makes
//! `alloc/logs` mode 0777), and the files damon keeps in it.
//!
//! The directory is reached once, component by component from `/`, each opened with
//! `O_PATH | O_NOFOLLOW` and looked at (`fstat`) before the next is looked up in it. A symbolic
//! link is followed only where root alone could have put it: in a directory owned by root (or
//! damon's user) that no group or other user may write, or, in a sticky directory such as
//! /tmp, a link owned by root; and never in or below a directory the workload may write
//! whatever its mode says (the sandbox's write rules, [`AnchoredDir::open`]'s
//! `workload_dirs`). Anywhere else a link is something the workload may have planted, and
//! nothing is reached through it. Not `openat2(RESOLVE_NO_SYMLINKS)`: it refuses every link,
//! those root made in /opt or /var included, and cannot tell the two kinds apart; the walk
//! must look at each directory anyway, and runs once per launch (about 2 µs a component).
//!
//! Every later operation is relative to the descriptors held (`openat`, `renameat2`,
//! `unlinkat` on names without a slash), never by path. A file is opened with `O_NOFOLLOW |
//! O_NONBLOCK` (a FIFO cannot stall damon), only after `fstatat` without following found a
//! regular file, and checked again on the descriptor: a regular file with one link, owned by
//! damon. Anything else (a link, a FIFO, a device, a directory, a hard link to a file damon
//! did not make, a file of another user) is left alone: [`PathError::Planted`] says what.
//!
//! Each component stays open, so that [`AnchoredDir::in_place`] can tell, with one `fstatat`
//! for the directory and one for each component the workload could change, that the path
//! still leads to the directory damon holds: a directory removed, moved, swapped for a link or
//! hidden by a mount is noticed, and the path walked again.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::io;
use std::os::unix::io::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Component, Path, PathBuf};

use nix::dir::{Dir, Type};
use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, OFlag};
use nix::libc;
use nix::sys::stat::{fstat, fstatat, mkdirat, FileStat, Mode, SFlag};
use nix::unistd::{geteuid, unlinkat, UnlinkatFlags};
use nix::NixPath;

use crate::platform::PathError;

/// Links followed in one walk before it gives up, as the kernel's own limit (ELOOP).
const MAX_LINKS_FOLLOWED: u32 = 40;

/// Directories damon makes on the way (the log's): searchable and readable by all, written
/// by damon alone.
const NEW_DIR_MODE: u32 = 0o755;

/// Files damon makes: readable by all (Nomad's log shippers), written by damon alone, whatever
/// the umask, so that the workload cannot rewrite damon's lines.
const NEW_FILE_MODE: u32 = 0o644;

/// A file's identity: device and inode.
pub type FileId = (u64, u64);

// st_dev and st_ino are not u64 on every target.
#[allow(clippy::unnecessary_cast)]
fn id(stat: &FileStat) -> FileId {
    (stat.st_dev as u64, stat.st_ino as u64)
}

/// One directory of the walked path, held open.
struct Step {
    fd: OwnedFd,
    /// Its name in the step before (empty for the first).
    name: OsString,
    id: FileId,
    /// Whether a link found in it may be followed (see the module's doc).
    root_only: bool,
    sticky: bool,
    /// It is, or is below, a directory the workload may write whatever its mode.
    workload_writes: bool,
}

/// A directory reached without following anything the workload could have planted.
pub struct AnchoredDir {
    /// As asked for (for messages).
    path: PathBuf,
    /// From `/` to the directory, as walked (links resolved).
    steps: Vec<Step>,
}

/// What stands at a name in the directory.
pub struct Entry {
    pub id: FileId,
    /// `None`: a regular file of damon's with one link, which damon may write.
    pub planted: Option<String>,
}

impl AnchoredDir {
    /// Walks to `path` (absolute; a relative one starts at the working directory, trusted for
    /// nothing), making the directories that are missing. `workload_dirs`: directories the
    /// workload may write whatever their mode says; no link is followed in or below them.
    pub fn open(path: &Path, workload_dirs: &[PathBuf]) -> Result<AnchoredDir, PathError> {
        let walked = walk(path, workload_dirs, Walk::MakingDirectories)?;
        Ok(AnchoredDir { path: path.to_path_buf(), steps: walked.steps })
    }

    fn fd(&self) -> RawFd {
        self.steps.last().expect("the walk always holds its first directory").fd.as_raw_fd()
    }

    /// Whether the path still leads to this directory (not removed, moved, replaced or mounted
    /// over). Looked at: the directory itself, and each component whose parent someone but
    /// root may change (the workload's doing); one in a directory only root changes stays.
    pub fn in_place(&self) -> bool {
        let last = self.steps.len().saturating_sub(2);
        self.steps.windows(2).enumerate().all(|(i, pair)| {
            let parent = &pair[0];
            if i != last && parent.root_only && !parent.workload_writes {
                return true;
            }
            fstatat(parent.fd.as_raw_fd(), pair[1].name.as_os_str(), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
                .map_or(false, |stat| id(&stat) == pair[1].id)
        })
    }

    /// What stands at `name` now, not followed; `None` when nothing does.
    pub fn entry(&self, name: &str) -> Result<Option<Entry>, PathError> {
        match fstatat(self.fd(), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(Entry { id: id(&stat), planted: self.planted(name, &stat) })),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(self.error("look at", name, e)),
        }
    }

    /// What makes `stat` (of `name`) something damon must not write, if anything.
    fn planted(&self, name: &str, stat: &FileStat) -> Option<String> {
        if let Some(kind) = describe(stat) {
            return Some(match kind {
                "a symbolic link" => found_link(readlinkat(self.fd(), name).ok().as_deref()),
                other => other.to_string(),
            });
        }
        if stat.st_nlink != 1 {
            return Some(format!("a hard link (a file with {} names)", stat.st_nlink));
        }
        if !owned_by_damon(stat) {
            return Some(format!("a file of user {}, not damon's", stat.st_uid));
        }
        None
    }

    /// Opens `name` for appending: the regular file of damon's that is there, or a new one
    /// (`O_EXCL`). Anything else at the name is [`PathError::Planted`].
    pub fn open_append(&self, name: &str) -> Result<(std::fs::File, FileId), PathError> {
        let common = OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        // Twice at most: something may appear or go between the look and the open.
        for _ in 0..2 {
            let found = match self.entry(name)? {
                Some(entry) => entry,
                None => match openat(
                    self.fd(),
                    name,
                    common | OFlag::O_CREAT | OFlag::O_EXCL,
                    Mode::from_bits_truncate(NEW_FILE_MODE),
                ) {
                    Ok(fd) => return self.checked(name, fd, None),
                    Err(Errno::EEXIST) => continue,
                    Err(e) => return Err(self.error("create", name, e)),
                },
            };
            if let Some(planted) = found.planted {
                return Err(PathError::Planted { path: self.path.join(name), found: planted });
            }
            match openat(self.fd(), name, common, Mode::empty()) {
                Ok(fd) => return self.checked(name, fd, Some(found.id)),
                // A link (ELOOP), a FIFO without a reader (ENXIO) or nothing now: look again.
                Err(Errno::ELOOP) | Err(Errno::ENXIO) | Err(Errno::ENOENT) => continue,
                Err(e) => return Err(self.error("open", name, e)),
            }
        }
        let source = io::Error::new(io::ErrorKind::Other, "what stands there keeps changing");
        Err(PathError::Io { action: "open", path: self.path.join(name), source })
    }

    /// The opened descriptor, if it is what was looked at and damon may write it.
    fn checked(&self, name: &str, fd: RawFd, expected: Option<FileId>) -> Result<(std::fs::File, FileId), PathError> {
        // SAFETY: openat(2) just returned this descriptor, and nothing else owns it.
        let file = unsafe { std::fs::File::from_raw_fd(fd) };
        let stat = fstat(file.as_raw_fd()).map_err(|e| self.error("look at", name, e))?;
        if let Some(planted) = self.planted(name, &stat) {
            return Err(PathError::Planted { path: self.path.join(name), found: planted });
        }
        if expected.map_or(false, |expected| expected != id(&stat)) {
            let source = io::Error::new(io::ErrorKind::Other, "another file took its place while it was opened");
            return Err(PathError::Io { action: "open", path: self.path.join(name), source });
        }
        Ok((file, id(&stat)))
    }

    /// Renames `from` to `to` in the directory, never replacing what is at `to`
    /// (`RENAME_NOREPLACE`; where the file system lacks it, a new link and the old one removed).
    pub fn rename_no_replace(&self, from: &str, to: &str) -> Result<(), PathError> {
        let (from_c, to_c) = match (CString::new(from), CString::new(to)) {
            (Ok(f), Ok(t)) => (f, t),
            _ => return Err(self.error("rename", from, Errno::EINVAL)),
        };
        // SAFETY: renameat2(2) reads the two NUL-terminated names, alive for the call, and the
        // held directory descriptor; nix 0.26 offers it on glibc only, and the release is musl.
        let result = unsafe {
            libc::syscall(
                libc::SYS_renameat2,
                self.fd(),
                from_c.as_ptr(),
                self.fd(),
                to_c.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        };
        match Errno::result(result) {
            Ok(_) => Ok(()),
            Err(Errno::EINVAL) => {
                nix::unistd::linkat(
                    Some(self.fd()),
                    from,
                    Some(self.fd()),
                    to,
                    nix::unistd::LinkatFlags::NoSymlinkFollow,
                )
                .map_err(|e| self.error("rename", from, e))?;
                unlinkat(Some(self.fd()), from, UnlinkatFlags::NoRemoveDir).map_err(|e| self.error("rename", from, e))
            }
            Err(e) => Err(self.error("rename", from, e)),
        }
    }

    /// Removes `name` if it is a file of damon's (see [`Entry::planted`]); leaves anything else.
    /// `Ok(false)`: something damon did not make stands there, and stays.
    pub fn remove_own_file(&self, name: &str) -> Result<bool, PathError> {
        match self.entry(name)? {
            None => Ok(true),
            Some(Entry { planted: Some(_), .. }) => Ok(false),
            Some(Entry { planted: None, .. }) => match unlinkat(Some(self.fd()), name, UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => Ok(true),
                Err(e) => Err(self.error("delete", name, e)),
            },
        }
    }

    /// The names (those in UTF-8) of the files of damon's in the directory: regular, one link,
    /// damon's owner ([`Entry::planted`] is `None`).
    pub fn own_file_names(&self) -> Result<Vec<String>, PathError> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW;
        let mut dir = Dir::openat(self.fd(), ".", flags, Mode::empty()).map_err(|e| self.error("list", "", e))?;
        let mut names = Vec::new();
        for entry in dir.iter() {
            let entry = entry.map_err(|e| self.error("list", "", e))?;
            let name = match entry.file_name().to_str() {
                Ok(name) => name,
                Err(_) => continue,
            };
            if entry.file_type().map_or(true, |kind| kind == Type::File)
                && matches!(self.entry(name), Ok(Some(Entry { planted: None, .. })))
            {
                names.push(name.to_string());
            }
        }
        Ok(names)
    }

    fn error(&self, action: &'static str, name: &str, e: Errno) -> PathError {
        PathError::Io { action, path: self.path.join(name), source: io::Error::from(e) }
    }
}

/// How far [`walk`] goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Walk {
    /// To a directory, making those missing on the way.
    MakingDirectories,
    /// To what exists, a file or a directory; making nothing.
    ToExisting,
}

/// Where a walk ended: the directories, and the file at the end if it is not one.
struct Walked {
    steps: Vec<Step>,
    file: Option<OwnedFd>,
}

/// The walk of the module's doc.
fn walk(path: &Path, workload_dirs: &[PathBuf], walk_mode: Walk) -> Result<Walked, PathError> {
    let io_error = |action: &'static str, at: &Path, e: Errno| PathError::Io {
        action,
        path: at.to_path_buf(),
        source: io::Error::from(e),
    };
    let workload_ids: Vec<FileId> =
        workload_dirs.iter().filter_map(|dir| nix::sys::stat::stat(dir).ok()).map(|s| id(&s)).collect();
    let start = if path.is_absolute() { Path::new("/") } else { Path::new(".") };
    let first = open_path(libc::AT_FDCWD, start.as_os_str()).map_err(|e| io_error("open", start, e))?;
    let first_stat = fstat(first.as_raw_fd()).map_err(|e| io_error("look at", start, e))?;
    let root = Step {
        name: OsString::new(),
        id: id(&first_stat),
        root_only: path.is_absolute() && root_only(&first_stat),
        sticky: false,
        workload_writes: !path.is_absolute() || workload_ids.contains(&id(&first_stat)),
        fd: first,
    };
    let mut steps = vec![root];
    // What is left to walk, first component first, and the path walked so far (for messages).
    let mut left: Vec<OsString> = components(path);
    left.reverse();
    let mut walked = start.to_path_buf();
    let mut links_followed = 0;
    while let Some(name) = left.pop() {
        if name == ".." {
            // The held parent, not a lookup of "..": the walk goes back the way it came.
            if steps.len() > 1 {
                steps.pop();
            }
            walked.pop();
            continue;
        }
        let at = walked.join(&name);
        let parent = steps.last().expect("the walk always holds its first directory");
        let fd = match open_path(parent.fd.as_raw_fd(), &name) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) if walk_mode == Walk::MakingDirectories => {
                match mkdirat(parent.fd.as_raw_fd(), name.as_os_str(), Mode::from_bits_truncate(NEW_DIR_MODE)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(io_error("create the directory", &at, e)),
                }
                open_path(parent.fd.as_raw_fd(), &name).map_err(|e| io_error("open", &at, e))?
            }
            Err(e) => return Err(io_error("open", &at, e)),
        };
        let stat = fstat(fd.as_raw_fd()).map_err(|e| io_error("look at", &at, e))?;
        match SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT {
            SFlag::S_IFDIR => {
                let workload_writes = parent.workload_writes || workload_ids.contains(&id(&stat));
                steps.push(Step {
                    fd,
                    name,
                    id: id(&stat),
                    root_only: root_only(&stat),
                    sticky: stat.st_mode & libc::S_ISVTX != 0,
                    workload_writes,
                });
                walked = at;
            }
            SFlag::S_IFLNK => {
                let target = readlinkat(parent.fd.as_raw_fd(), name.as_os_str()).ok();
                let placed_by_root = parent.root_only || (parent.sticky && owned_by_damon(&stat));
                if parent.workload_writes || !placed_by_root {
                    return Err(PathError::Planted { path: at, found: found_link(target.as_deref()) });
                }
                let target = target.ok_or_else(|| io_error("read the link", &at, Errno::EINVAL))?;
                links_followed += 1;
                if links_followed > MAX_LINKS_FOLLOWED {
                    return Err(io_error("follow the links of", path, Errno::ELOOP));
                }
                let target = Path::new(&target);
                if target.is_absolute() {
                    steps.truncate(1);
                    walked = PathBuf::from("/");
                }
                left.extend(components(target).into_iter().rev());
            }
            // The place asked for may be a file.
            _ if walk_mode == Walk::ToExisting && left.is_empty() => return Ok(Walked { steps, file: Some(fd) }),
            _ => {
                let source = io::Error::new(
                    io::ErrorKind::Other,
                    format!("{} stands there, not a directory", describe(&stat).unwrap_or("a regular file")),
                );
                return Err(PathError::Io { action: "use the directory", path: at, source });
            }
        }
    }
    Ok(Walked { steps, file: None })
}

/// A path opened as a place, and whether no link was on the way.
pub struct Place {
    pub fd: OwnedFd,
    /// Opened by one `openat2(RESOLVE_NO_SYMLINKS)`: the path leads where it says.
    pub without_links: bool,
}

/// Opens `path` as a place (`O_PATH`: no read or write), a file or a directory, without
/// following anything the workload could have planted on the way or at its end (see the
/// module's doc). Makes nothing. One `openat2(RESOLVE_NO_SYMLINKS)` where no link is on the
/// way (most paths: nothing can then redirect it); the walk where one is, or where the kernel
/// has no openat2 (before 5.6).
pub fn open_place(path: &Path, workload_dirs: &[PathBuf]) -> Result<Place, PathError> {
    match open_without_links(path, LinkAtEnd::Refused) {
        Ok(fd) => return Ok(Place { fd, without_links: true }),
        Err(e) if link_or_no_openat2(e) => {}
        Err(e) => return Err(PathError::Io { action: "open", path: path.to_path_buf(), source: io::Error::from(e) }),
    }
    let walked = walk(path, workload_dirs, Walk::ToExisting)?;
    let fd = match walked.file {
        Some(file) => file,
        None => walked.steps.into_iter().last().expect("the walk always holds its first directory").fd,
    };
    Ok(Place { fd, without_links: false })
}

/// Whether [`open_without_links`] failed for a link on the way (ELOOP), or because there is no
/// openat2 here (ENOSYS before 5.6; EPERM, EINVAL or E2BIG from a container's filter or an
/// older interface): another way to open the path decides.
pub fn link_or_no_openat2(e: Errno) -> bool {
    matches!(e, Errno::ELOOP | Errno::ENOSYS | Errno::EPERM | Errno::EINVAL | Errno::E2BIG)
}

/// What [`open_without_links`] does with a link at the path's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkAtEnd {
    /// ELOOP, as for one on the way.
    Refused,
    /// The link itself is opened (`O_NOFOLLOW`).
    Opened,
}

/// openat2(2)'s `struct open_how` (libc's is non-exhaustive: it cannot be made outside it).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// `path` opened as a place, if no link is on the way (else ELOOP).
pub fn open_without_links(path: &Path, at_end: LinkAtEnd) -> Result<OwnedFd, Errno> {
    // On the stack, not a CString: a sandboxed launch opens about 20 paths so.
    path.with_nix_path(|path| openat2_without_links(path, at_end))?
}

fn openat2_without_links(path: &CStr, at_end: LinkAtEnd) -> Result<OwnedFd, Errno> {
    // With O_PATH, O_NOFOLLOW opens a link at the end as itself; without it,
    // RESOLVE_NO_SYMLINKS refuses that link too (ELOOP).
    let no_follow = if at_end == LinkAtEnd::Opened { libc::O_NOFOLLOW } else { 0 };
    let how = OpenHow {
        flags: (libc::O_PATH | libc::O_CLOEXEC | no_follow) as u64,
        mode: 0,
        resolve: libc::RESOLVE_NO_SYMLINKS,
    };
    // SAFETY: openat2(2) reads the NUL-terminated path and `how`, both alive for the call, and
    // is told the size of `how`; nix 0.26 does not offer it.
    let fd = Errno::result(unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            path.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    })?;
    // SAFETY: openat2(2) just returned this descriptor, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Opens `name` in `dir` as a place, without following it if it is a link: no read or write,
/// so no FIFO or device is ever opened. Not with std's `OpenOptions`: musl counts `O_PATH` in
/// `O_ACCMODE` and std takes it out (see sandbox.rs).
fn open_path(dir: RawFd, name: &OsStr) -> Result<OwnedFd, Errno> {
    let fd = openat(dir, name, OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())?;
    // SAFETY: openat(2) just returned this descriptor, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The path's components as names to look up, `..` kept (the walk goes back the way it came).
fn components(path: &Path) -> Vec<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

fn owned_by_damon(stat: &FileStat) -> bool {
    stat.st_uid == 0 || stat.st_uid == geteuid().as_raw()
}

/// Only damon's user (or root) can change the directory's entries: its owner, and no group or
/// other write bit. (An ACL granting more is not looked at.)
fn root_only(stat: &FileStat) -> bool {
    owned_by_damon(stat) && stat.st_mode & (libc::S_IWGRP | libc::S_IWOTH) == 0
}

/// What a file that is not a regular one is, in words; `None` for a regular file.
fn describe(stat: &FileStat) -> Option<&'static str> {
    match SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT {
        SFlag::S_IFREG => None,
        SFlag::S_IFLNK => Some("a symbolic link"),
        SFlag::S_IFDIR => Some("a directory"),
        SFlag::S_IFIFO => Some("a FIFO"),
        SFlag::S_IFSOCK => Some("a socket"),
        SFlag::S_IFCHR => Some("a character device"),
        SFlag::S_IFBLK => Some("a block device"),
        _ => Some("a file of an unknown type"),
    }
}

fn found_link(target: Option<&OsStr>) -> String {
    match target {
        Some(target) => format!("a symbolic link to {}", Path::new(target).display()),
        None => "a symbolic link".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::anchored_dir_tests::{fresh_dir, refused_as_planted};
    use std::fs;
    use std::os::unix::fs::{symlink, PermissionsExt};

    #[test]
    fn makes_the_missing_directories_and_follows_links_only_root_can_have_made() {
        let dir = fresh_dir("walk");
        let real = dir.join("real");
        fs::create_dir(&real).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        symlink(&real, dir.join("by-root")).unwrap();
        let anchored = AnchoredDir::open(&dir.join("by-root/a/b"), &[]).unwrap();
        assert!(real.join("a/b").is_dir());
        assert!(anchored.in_place());
        // The same link in a directory others may write is not followed.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        let (at, found) = refused_as_planted(AnchoredDir::open(&dir.join("by-root/a"), &[]));
        assert_eq!((at, found), (dir.join("by-root"), format!("a symbolic link to {}", real.display())));
        // Nor in a directory the workload may write whatever its mode.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        refused_as_planted(AnchoredDir::open(&dir.join("by-root/a"), std::slice::from_ref(&dir)));
        refused_as_planted(AnchoredDir::open(&dir.join("by-root/a"), &[dir.parent().unwrap().to_path_buf()]));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_place_is_opened_through_links_only_root_can_have_made() {
        let dir = fresh_dir("place");
        fs::create_dir(dir.join("real")).unwrap();
        fs::write(dir.join("real/file"), "x").unwrap();
        symlink("real", dir.join("link")).unwrap();
        let same = |path: &Path, expected: &Path, without_links: bool| {
            let place = open_place(path, &[]).unwrap_or_else(|e| panic!("{}: {}", path.display(), e));
            let (got, want) = (fstat(place.fd.as_raw_fd()).unwrap(), nix::sys::stat::stat(expected).unwrap());
            assert_eq!(id(&got), id(&want), "{}", path.display());
            assert_eq!(place.without_links, without_links, "{}", path.display());
        };
        // No link on the way (openat2), a link root made on the way and at the end (the walk).
        same(&dir.join("real/file"), &dir.join("real/file"), true);
        same(&dir.join("link/file"), &dir.join("real/file"), false);
        same(&dir.join("link"), &dir.join("real"), false);
        // With the link at the end kept, the link itself: no link on the way to it.
        let link = open_without_links(&dir.join("link"), LinkAtEnd::Opened).unwrap();
        assert!(fstat(link.as_raw_fd()).unwrap().st_mode & libc::S_IFMT == libc::S_IFLNK);
        assert_eq!(open_without_links(&dir.join("link"), LinkAtEnd::Refused).unwrap_err(), Errno::ELOOP);
        assert_eq!(open_without_links(&dir.join("link/file"), LinkAtEnd::Opened).unwrap_err(), Errno::ELOOP);
        assert!(matches!(open_place(&dir.join("real/missing"), &[]), Err(PathError::Io { .. })));
        // Others may write the directory holding the link, or the workload may.
        refused_as_planted(open_place(&dir.join("link"), std::slice::from_ref(&dir)));
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        refused_as_planted(open_place(&dir.join("link/file"), &[]));
        assert_eq!(refused_as_planted(open_place(&dir.join("link"), &[])).0, dir.join("link"));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn notices_a_directory_moved_swapped_or_removed() {
        let dir = fresh_dir("in-place");
        let anchored = AnchoredDir::open(&dir.join("logs"), &[]).unwrap();
        assert!(anchored.in_place());
        fs::rename(dir.join("logs"), dir.join("moved")).unwrap();
        assert!(!anchored.in_place());
        symlink(dir.join("moved"), dir.join("logs")).unwrap();
        assert!(!anchored.in_place(), "a link to the same directory is not the directory");
        fs::remove_file(dir.join("logs")).unwrap();
        fs::rename(dir.join("moved"), dir.join("logs")).unwrap();
        assert!(anchored.in_place());
        fs::remove_dir(dir.join("logs")).unwrap();
        assert!(!anchored.in_place());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn opens_only_regular_files_of_damons_with_one_link() {
        let dir = fresh_dir("files");
        let anchored = AnchoredDir::open(&dir, &[]).unwrap();
        let canary = dir.join("canary");
        fs::write(&canary, "canary\n").unwrap();
        symlink(&canary, dir.join("link")).unwrap();
        symlink(dir.join("nowhere"), dir.join("dangling")).unwrap();
        fs::hard_link(&canary, dir.join("hard")).unwrap();
        fs::create_dir(dir.join("dir")).unwrap();
        nix::unistd::mkfifo(&dir.join("fifo"), Mode::from_bits_truncate(0o666)).unwrap();
        fs::write(dir.join("theirs"), "").unwrap();
        nix::unistd::chown(&dir.join("theirs"), Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
        for (name, found) in [
            ("link", format!("a symbolic link to {}", canary.display())),
            ("dangling", format!("a symbolic link to {}", dir.join("nowhere").display())),
            ("hard", "a hard link (a file with 2 names)".to_string()),
            ("dir", "a directory".to_string()),
            ("fifo", "a FIFO".to_string()),
            ("theirs", "a file of user 65534, not damon's".to_string()),
        ] {
            assert_eq!(refused_as_planted(anchored.open_append(name)), (dir.join(name), found));
            assert!(!anchored.remove_own_file(name).unwrap(), "{} removed", name);
        }
        assert!(!dir.join("nowhere").exists());
        assert_eq!(fs::read_to_string(&canary).unwrap(), "canary\n");
        // A new file, then the same file again; renamed without replacing; removed.
        let (_, first) = anchored.open_append("damon.log").unwrap();
        let (_, again) = anchored.open_append("damon.log").unwrap();
        assert_eq!(first, again);
        assert_eq!(fs::metadata(dir.join("damon.log")).unwrap().permissions().mode() & 0o777, NEW_FILE_MODE);
        let refused = anchored.rename_no_replace("damon.log", "link");
        assert!(
            matches!(refused, Err(PathError::Io { ref source, .. }) if source.raw_os_error() == Some(libc::EEXIST))
        );
        anchored.rename_no_replace("damon.log", "damon.log.1").unwrap();
        let mut names = anchored.own_file_names().unwrap();
        names.sort();
        assert_eq!(names, ["damon.log.1"]);
        assert!(anchored.remove_own_file("damon.log.1").unwrap());
        assert!(!dir.join("damon.log.1").exists());
        let _ = fs::remove_dir_all(&dir);
    }
}
