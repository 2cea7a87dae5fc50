//! A directory damon works in as SYSTEM although the workload may write there too (Nomad's
//! `alloc\logs`), and the files damon keeps in it.
//!
//! The directory is reached once, component by component from the root (the drive or the UNC
//! share), each opened with FILE_FLAG_OPEN_REPARSE_POINT and looked at
//! (GetFileInformationByHandle) before the next is opened. No reparse point (a symbolic link, a
//! junction, a mount point) is followed anywhere on the way: Windows has no cheap test like
//! Linux's "only root may write this directory" that tells one an administrator made from one
//! the workload planted, so every one is refused, and the error says to point DAMON_LOG_DIR at
//! the directory it leads to. Each directory stays open, shared for reading and writing but
//! not FILE_SHARE_DELETE: while damon holds it nobody can rename or delete it (both need
//! DELETE access, which that share mode refuses to every later open), so a path through the
//! held directories keeps leading to them and later operations may name the file by its path.
//!
//! A file is opened with FILE_FLAG_OPEN_REPARSE_POINT (a link at its name is opened as itself,
//! never followed), created with CREATE_NEW, and checked on the handle: not a reparse point, not
//! a directory, one link. Anything else (a symbolic link, a junction, a directory, a hard link
//! to a file damon did not make) is left alone: [`PathError::Planted`] says what. A rename never
//! replaces (MoveFileExW without MOVEFILE_REPLACE_EXISTING), and a delete goes through a handle
//! checked first, so it deletes what was checked, whatever took the name meanwhile.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::windows::fs::OpenOptionsExt;
use std::os::windows::io::OwnedHandle;
use std::path::{Component, Path, PathBuf};

use windows_sys::Win32::Foundation::{ERROR_FILE_NOT_FOUND, ERROR_PATH_NOT_FOUND};
use windows_sys::Win32::Storage::FileSystem::{
    DELETE, FILE_ATTRIBUTE_DIRECTORY, FILE_ATTRIBUTE_REPARSE_POINT, FILE_FLAG_BACKUP_SEMANTICS,
    FILE_FLAG_OPEN_REPARSE_POINT, FILE_LIST_DIRECTORY, FILE_READ_ATTRIBUTES, FILE_SHARE_DELETE, FILE_SHARE_READ,
    FILE_SHARE_WRITE, FILE_TRAVERSE,
};

use super::ffi::{self, FileInformation};
use crate::platform::PathError;

/// A file's identity: volume serial number and file index.
pub type FileId = (u64, u64);

/// Opens what stands at a name as itself: a reparse point is not followed, and a directory can
/// be opened at all (BACKUP_SEMANTICS).
const NOT_FOLLOWED: u32 = FILE_FLAG_BACKUP_SEMANTICS | FILE_FLAG_OPEN_REPARSE_POINT;

/// For a look or a delete: others keep every kind of access (std's default for files too, so
/// that damon's own log can be renamed while a reader has it open).
const SHARE_ALL: u32 = FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE;

/// A held directory: without FILE_SHARE_DELETE nobody can rename or delete it meanwhile.
const HELD_SHARE: u32 = FILE_SHARE_READ | FILE_SHARE_WRITE;

/// A held directory's access. Windows applies a handle's share mode only when the handle has
/// read, write or delete access itself (FILE_READ_ATTRIBUTES alone counts as none), so the
/// handle asks to list and traverse, the directory's read access.
const HELD_ACCESS: u32 = FILE_LIST_DIRECTORY | FILE_TRAVERSE | FILE_READ_ATTRIBUTES;

const REPARSE_POINT: &str = "a reparse point (a symbolic link, junction or mount point)";

/// The same in a directory on the way, with the way out when an administrator made it.
const REPARSE_POINT_ON_THE_WAY: &str = "a reparse point (a symbolic link, junction or mount point, which damon \
     follows nowhere on the way to its log: set DAMON_LOG_DIR to the directory it leads to)";

fn id(info: &FileInformation) -> FileId {
    (u64::from(info.volume_serial_number), info.file_index)
}

/// A directory reached without following anything the workload could have planted.
pub struct AnchoredDir {
    /// As asked for (for messages).
    path: PathBuf,
    /// The directory's path as walked (`..` resolved), which leads through the held directories.
    walked: PathBuf,
    /// From the root to the directory, each open without FILE_SHARE_DELETE; only held.
    _held: Vec<OwnedHandle>,
}

/// What stands at a name in the directory.
pub struct Entry {
    pub id: FileId,
    /// `None`: a regular file with one link, which damon may write.
    pub planted: Option<String>,
}

impl AnchoredDir {
    /// Walks to `path` (absolute; a relative one starts at the working directory), making the
    /// directories that are missing. `workload_dirs` (where Linux follows no link at all) is
    /// not needed here: no reparse point is followed anywhere.
    pub fn open(path: &Path, _workload_dirs: &[PathBuf]) -> Result<AnchoredDir, PathError> {
        let mut start = PathBuf::new();
        let mut rooted = false;
        // `None` is `..`.
        let mut names = Vec::new();
        for component in path.components() {
            match component {
                Component::Prefix(_) => start.push(component.as_os_str()),
                Component::RootDir => {
                    start.push(component.as_os_str());
                    rooted = true;
                }
                Component::CurDir => {}
                Component::ParentDir => names.push(None),
                Component::Normal(name) => names.push(Some(name)),
            }
        }
        if !rooted {
            // The working directory (of the drive, after a bare `C:`).
            start.push(".");
        }
        let mut held = vec![open_dir(&start)?];
        let mut walked = start;
        for name in names {
            let name = match name {
                // Back the way the walk came, to the directory still held; Windows resolves `..`
                // by the name too. Above the start (a relative path) `..` is opened as a name.
                None if held.len() > 1 && walked.file_name().is_some() => {
                    held.pop();
                    walked.pop();
                    continue;
                }
                None => std::ffi::OsStr::new(".."),
                Some(name) => name,
            };
            let at = walked.join(name);
            let dir = match open_dir(&at) {
                Err(PathError::Io { source, .. }) if not_found(&source) => {
                    match std::fs::create_dir(&at) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                        Err(source) => return Err(PathError::Io { action: "create the directory", path: at, source }),
                    }
                    open_dir(&at)?
                }
                other => other?,
            };
            held.push(dir);
            walked = at;
        }
        Ok(AnchoredDir { path: path.to_path_buf(), walked, _held: held })
    }

    /// Whether the path still leads to this directory. Always: no held directory can be renamed
    /// or deleted while damon holds it (no FILE_SHARE_DELETE), so nothing can take its place.
    pub fn in_place(&self) -> bool {
        true
    }

    /// What stands at `name` now, not followed; `None` when nothing does.
    pub fn entry(&self, name: &str) -> Result<Option<Entry>, PathError> {
        Ok(self.look(name, FILE_READ_ATTRIBUTES)?.map(|(_, entry)| entry))
    }

    /// Opens what stands at `name` as itself, with `access`, and says what it is.
    fn look(&self, name: &str, access: u32) -> Result<Option<(OwnedHandle, Entry)>, PathError> {
        let at = self.at(name)?;
        let handle = match ffi::open_existing(&at, access, SHARE_ALL, NOT_FOLLOWED) {
            Ok(handle) => handle,
            Err(e) if not_found(&e) => return Ok(None),
            Err(e) => return Err(self.error("look at", name, e)),
        };
        let info = ffi::file_information(&handle).map_err(|e| self.error("look at", name, e))?;
        Ok(Some((handle, Entry { id: id(&info), planted: planted(&info) })))
    }

    /// Opens `name` for appending: the regular file with one link that is there, or a new one
    /// (CREATE_NEW). Anything else at the name is [`PathError::Planted`].
    pub fn open_append(&self, name: &str) -> Result<(File, FileId), PathError> {
        let at = self.at(name)?;
        let mut options = OpenOptions::new();
        // A link at the name is opened as itself (and then refused), never followed.
        options.append(true).share_mode(SHARE_ALL).custom_flags(FILE_FLAG_OPEN_REPARSE_POINT);
        // Twice at most: something may appear or go between the look and the open.
        for _ in 0..2 {
            let found = match self.entry(name)? {
                Some(entry) => entry,
                None => match options.clone().create_new(true).open(&at) {
                    Ok(file) => return self.checked(name, file, None),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(self.error("create", name, e)),
                },
            };
            if let Some(planted) = found.planted {
                return Err(PathError::Planted { path: self.path.join(name), found: planted });
            }
            match options.open(&at) {
                Ok(file) => return self.checked(name, file, Some(found.id)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.error("open", name, e)),
            }
        }
        let source = io::Error::new(io::ErrorKind::Other, "what stands there keeps changing");
        Err(PathError::Io { action: "open", path: self.path.join(name), source })
    }

    /// The opened file, if it is what was looked at and damon may write it.
    fn checked(&self, name: &str, file: File, expected: Option<FileId>) -> Result<(File, FileId), PathError> {
        let info = ffi::file_information(&file).map_err(|e| self.error("look at", name, e))?;
        if let Some(planted) = planted(&info) {
            return Err(PathError::Planted { path: self.path.join(name), found: planted });
        }
        if expected.map_or(false, |expected| expected != id(&info)) {
            let source = io::Error::new(io::ErrorKind::Other, "another file took its place while it was opened");
            return Err(PathError::Io { action: "open", path: self.path.join(name), source });
        }
        Ok((file, id(&info)))
    }

    /// Renames `from` to `to` in the directory, never replacing what is at `to`. A missing
    /// `from` is an error of kind NotFound.
    pub fn rename_no_replace(&self, from: &str, to: &str) -> Result<(), PathError> {
        ffi::move_file_no_replace(&self.at(from)?, &self.at(to)?).map_err(|e| self.error("rename", from, e))
    }

    /// Removes `name` if it is a file of damon's (see [`Entry::planted`]); leaves anything else.
    /// `Ok(false)`: something damon did not make stands there, and stays.
    pub fn remove_own_file(&self, name: &str) -> Result<bool, PathError> {
        // Looked at first without DELETE access, which something planted need not grant.
        match self.entry(name)? {
            None => return Ok(true),
            Some(Entry { planted: Some(_), .. }) => return Ok(false),
            Some(Entry { planted: None, .. }) => {}
        }
        match self.look(name, DELETE | FILE_READ_ATTRIBUTES)? {
            None => Ok(true),
            Some((_, Entry { planted: Some(_), .. })) => Ok(false),
            Some((handle, Entry { planted: None, .. })) => {
                ffi::delete_on_close(&handle).map_err(|e| self.error("delete", name, e))?;
                Ok(true)
            }
        }
    }

    /// The names (those in UTF-8) of the files of damon's in the directory: not a reparse point
    /// or a directory, one link ([`Entry::planted`] is `None`).
    pub fn own_file_names(&self) -> Result<Vec<String>, PathError> {
        let entries = std::fs::read_dir(&self.walked).map_err(|e| self.error("list", "", e))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| self.error("list", "", e))?;
            let name = match entry.file_name().into_string() {
                Ok(name) => name,
                Err(_) => continue,
            };
            if entry.file_type().map_or(true, |kind| kind.is_file())
                && matches!(self.entry(&name), Ok(Some(Entry { planted: None, .. })))
            {
                names.push(name);
            }
        }
        Ok(names)
    }

    /// The path of `name` in the directory, through the held directories. Only a plain name: a
    /// separator would leave the directory, and a colon names a stream of another file.
    fn at(&self, name: &str) -> Result<PathBuf, PathError> {
        if name.is_empty() || name == "." || name == ".." || name.contains(&['\\', '/', ':', '\0'][..]) {
            let source = io::Error::new(io::ErrorKind::InvalidInput, "not a plain file name");
            return Err(PathError::Io { action: "use", path: self.path.join(name), source });
        }
        Ok(self.walked.join(name))
    }

    fn error(&self, action: &'static str, name: &str, source: io::Error) -> PathError {
        PathError::Io { action, path: self.path.join(name), source }
    }
}

/// Opens the directory at `path` to hold it (see the module's doc), and checks that it is one.
fn open_dir(path: &Path) -> Result<OwnedHandle, PathError> {
    let io_error = |action, source| PathError::Io { action, path: path.to_path_buf(), source };
    let handle = ffi::open_existing(path, HELD_ACCESS, HELD_SHARE, NOT_FOLLOWED).map_err(|e| io_error("open", e))?;
    let info = ffi::file_information(&handle).map_err(|e| io_error("look at", e))?;
    if info.attributes & FILE_ATTRIBUTE_REPARSE_POINT != 0 {
        return Err(PathError::Planted { path: path.to_path_buf(), found: REPARSE_POINT_ON_THE_WAY.to_string() });
    }
    if info.attributes & FILE_ATTRIBUTE_DIRECTORY == 0 {
        let source = io::Error::new(io::ErrorKind::Other, "a regular file stands there, not a directory");
        return Err(io_error("use the directory", source));
    }
    Ok(handle)
}

/// What makes `info` something damon must not write, if anything.
fn planted(info: &FileInformation) -> Option<String> {
    if info.attributes & FILE_ATTRIBUTE_REPARSE_POINT != 0 {
        Some(REPARSE_POINT.to_string())
    } else if info.attributes & FILE_ATTRIBUTE_DIRECTORY != 0 {
        Some("a directory".to_string())
    } else if info.links != 1 {
        Some(format!("a hard link (a file with {} names)", info.links))
    } else {
        None
    }
}

fn not_found(error: &io::Error) -> bool {
    matches!(ffi::error_code(error), Some(ERROR_FILE_NOT_FOUND | ERROR_PATH_NOT_FOUND))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::anchored_dir_tests::{fresh_dir, refused_as_planted};
    use std::fs;
    use std::io::Write;
    use std::os::windows::fs::{symlink_dir, symlink_file};

    /// Whether a link was made at `at`. Not everywhere: Windows refuses a symbolic link to a
    /// user without the privilege (or developer mode), and Wine 8's CreateSymbolicLinkW
    /// reports success and makes nothing (Wine shows a Unix link as what it leads to, so no
    /// reparse point can be seen under Wine at all). Where none is made, that case is skipped.
    fn made(result: io::Result<()>, at: &Path) -> bool {
        let made = result.as_ref().is_ok() && fs::symlink_metadata(at).is_ok();
        if !made {
            println!("no link could be made at {} ({:?}): that case is not tested here", at.display(), result);
        }
        made
    }

    /// A junction at `at` to `target`, made by cmd's mklink (Wine's mklink makes none).
    fn junction(target: &Path, at: &Path) -> bool {
        let output = std::process::Command::new("cmd").arg("/C").arg("mklink").arg("/J").arg(at).arg(target).output();
        let result = match output {
            Ok(output) if output.status.success() => Ok(()),
            Ok(output) => Err(io::Error::new(io::ErrorKind::Other, format!("mklink /J: {}", output.status))),
            Err(e) => Err(e),
        };
        made(result, at)
    }

    #[test]
    fn makes_the_missing_directories_and_holds_them_in_place() {
        let dir = fresh_dir("walk");
        let anchored = AnchoredDir::open(&dir.join("a").join("..").join("b").join("c"), &[]).unwrap();
        assert!(dir.join("b").join("c").is_dir());
        assert!(anchored.in_place());
        // Held without FILE_SHARE_DELETE: neither the directory nor one on the way can be
        // renamed or removed, so the path keeps leading to it.
        assert!(fs::rename(dir.join("b"), dir.join("moved")).is_err());
        assert!(fs::rename(dir.join("b").join("c"), dir.join("moved")).is_err());
        assert!(fs::remove_dir(dir.join("b").join("c")).is_err());
        // Several holders at once: the tasks of an allocation share its logs directory.
        let other = AnchoredDir::open(&dir.join("b").join("c"), &[]).unwrap();
        other.open_append("other.log").unwrap();
        drop((anchored, other));
        fs::rename(dir.join("b"), dir.join("moved")).unwrap();

        fs::write(dir.join("file"), "").unwrap();
        match AnchoredDir::open(&dir.join("file").join("logs"), &[]) {
            Err(PathError::Io { action: "use the directory", path, .. }) => assert_eq!(path, dir.join("file")),
            Err(other) => panic!("a file on the way: {}", other),
            Ok(_) => panic!("a file on the way was taken for a directory"),
        }
        // No reparse point is followed on the way, and the error says the way out.
        let link = dir.join("link");
        if made(symlink_dir(dir.join("moved"), &link), &link) {
            let (at, found) = refused_as_planted(AnchoredDir::open(&link.join("c"), &[]));
            assert_eq!(at, link);
            assert!(found.starts_with("a reparse point") && found.contains("DAMON_LOG_DIR"), "{}", found);
        }
        let junction_at = dir.join("junction");
        if junction(&dir.join("moved"), &junction_at) {
            let (at, _) = refused_as_planted(AnchoredDir::open(&junction_at.join("c"), &[]));
            assert_eq!(at, junction_at);
        }
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn opens_only_regular_files_with_one_link() {
        let dir = fresh_dir("files");
        let anchored = AnchoredDir::open(&dir, &[]).unwrap();
        let canary = dir.join("canary");
        fs::write(&canary, "canary\n").unwrap();
        fs::hard_link(&canary, dir.join("hard")).unwrap();
        fs::create_dir(dir.join("dir")).unwrap();
        let mut cases = vec![("hard", "a hard link (a file with 2 names)"), ("dir", "a directory")];
        for (name, link) in [
            ("link", symlink_file(&canary, dir.join("link"))),
            ("dangling", symlink_file(dir.join("nowhere"), dir.join("dangling"))),
            ("dir-link", symlink_dir(dir.join("dir"), dir.join("dir-link"))),
        ] {
            if made(link, &dir.join(name)) {
                cases.push((name, REPARSE_POINT));
            }
        }
        if junction(&dir.join("dir"), &dir.join("junction")) {
            cases.push(("junction", REPARSE_POINT));
        }
        for (name, found) in cases {
            assert_eq!(refused_as_planted(anchored.open_append(name)), (dir.join(name), found.to_string()));
            assert!(!anchored.remove_own_file(name).unwrap(), "{} removed", name);
            assert!(fs::symlink_metadata(dir.join(name)).is_ok(), "{} is gone", name);
        }
        assert!(fs::symlink_metadata(dir.join("nowhere")).is_err());
        assert_eq!(fs::read_to_string(&canary).unwrap(), "canary\n");

        // A new file, then the same file again.
        let (mut file, first) = anchored.open_append("damon.log").unwrap();
        file.write_all(b"one\n").unwrap();
        drop(file);
        let (mut file, again) = anchored.open_append("damon.log").unwrap();
        assert_eq!(first, again);
        file.write_all(b"two\n").unwrap();
        assert_eq!(fs::read_to_string(dir.join("damon.log")).unwrap(), "one\ntwo\n");
        // Renamed without replacing anything, even while open (FILE_SHARE_DELETE).
        for taken in ["hard", "dir", "canary"] {
            match anchored.rename_no_replace("damon.log", taken) {
                Err(PathError::Io { source, .. }) => {
                    assert_eq!(source.kind(), io::ErrorKind::AlreadyExists, "{}", taken)
                }
                other => panic!("renamed over {}: {:?}", taken, other.map_err(|e| e.to_string())),
            }
        }
        assert_eq!(fs::read_to_string(&canary).unwrap(), "canary\n");
        anchored.rename_no_replace("damon.log", "damon.log.1").unwrap();
        drop(file);
        match anchored.rename_no_replace("damon.log", "damon.log.2") {
            Err(PathError::Io { source, .. }) => assert_eq!(source.kind(), io::ErrorKind::NotFound),
            other => panic!("renamed what is not there: {:?}", other.map_err(|e| e.to_string())),
        }
        assert_eq!(anchored.own_file_names().unwrap(), ["damon.log.1"]);
        assert!(anchored.remove_own_file("damon.log.1").unwrap());
        assert!(fs::symlink_metadata(dir.join("damon.log.1")).is_err());
        assert!(anchored.remove_own_file("never-there").unwrap());
        for bad in ["", "..", "a\\b", "a/b", "damon.log:stream"] {
            assert!(matches!(anchored.open_append(bad), Err(PathError::Io { .. })), "{:?} taken", bad);
        }
        drop(anchored);
        let _ = fs::remove_dir_all(&dir);
    }
}
