//! The log file, rotated by size: damon's own writer, which never panics. Every failure is an
//! error the caller counts and reports, and the next line tries again.
//!
//! damon used the file-rotate crate (0.7) until a logging problem could kill the workload:
//! with `panic = "abort"` any panic in it ended damon, and damon's guard (Linux) or
//! KILL_ON_JOB_CLOSE (Windows) then ended the workload. Reading file-rotate 0.7.6, it panics
//! - on every rotation when the log directory is gone and cannot be made again
//!   (`create_dir_all(..).expect("create dir")` in `ensure_log_directory_exists`) or cannot be
//!   listed (`read_dir(..).unwrap()` in `scan_suffixes`), and in `new` for the same reasons;
//! - when the clock stepped back to a second for which a rotated file already exists: the new
//!   name collides, file-rotate tries to move the older file on and hits
//!   `assert!(suffix.is_none())` in `AppendTimestamp::rotate_file` (a plain `assert!`, so in
//!   release builds too);
//! - when the file to rotate is gone or the new name exists without being in its list
//!   (`assert!(old_path.exists())`, `assert!(!new_path.exists())`: a vanished file that could
//!   not be created again, a second writer);
//! - on a relative path when the working directory is gone (`current_dir().unwrap()`).
//!
//! It also drops every line without an error while its file cannot be opened, and lists the
//! whole directory at every start. Wrapping it could not catch the panics (abort), so this
//! module replaces it, keeping its layout: `<name>.<%Y-%m-%dT%H-%M-%S>` in UTC, then `.1`,
//! `.2`, ... for more rotations within one second, exactly as its `AppendTimestamp` named them.
//!
//! damon is root and the workload may write the log's directory (Nomad makes `alloc/logs`
//! mode 0777), so every file operation goes through [`AnchoredDir`]: the directory is reached
//! without following what the workload could have planted, and the file is opened, created,
//! renamed and deleted relative to it, never by path. A link, FIFO, hard link or anything else
//! damon did not make at the log's name is [`PathError::Planted`]: the caller stops writing
//! the file. At a rotated name it only makes that name taken; a rotation never replaces
//! anything (`RENAME_NOREPLACE`), and only damon's own files are deleted.
//!
//! Which rotated files are the oldest, when more than `max_files` exist: the ones this writer
//! rotated itself are the newest, in the order it made them, whatever their names say (a
//! clock stepped back makes a newer file look older); files it found are older than those,
//! ordered among themselves by the time in their names (their modification times come from
//! the same clock, so they are no better, and would cost a stat per file). A name is never
//! reused or overwritten: a taken one gets the next free number.
//!
//! The directory is listed only when a rotation deletes old files (`max_files > 0`), never at
//! open. Before each line the path is checked (one `fstatat` per component) to still lead to
//! the open file: when the file or its directory was removed, moved, replaced or hidden by a
//! mount, a new file is started (the path walked again, the directory made again) instead of
//! writing into a file that is no longer at the log's path.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::time::{is_rotated_suffix, rotated_suffix};
use crate::platform::{AnchoredDir, FileId, PathError};

/// Numbers tried after a rotated name that is taken, within one second.
const MAX_NUMBER_IN_SECOND: u64 = 100_000;

/// Something the log's reader should know, found while preparing a write.
#[derive(Debug)]
pub enum Note {
    /// The file had vanished from its path (removed, or its directory); a new one was started.
    Restarted,
    /// The file has passed its size but cannot be rotated; lines go on into it.
    /// Reported once until a rotation succeeds.
    CannotRotate(PathError),
    /// An old rotated file that should go could not be deleted (or the directory not listed).
    CannotDelete(PathError),
    /// Something damon did not make stands at a rotated name: left there, the name skipped.
    /// Said once per name.
    Skipped(PathError),
}

/// The open file, and what damon knows of it.
struct Open {
    file: File,
    /// The file's size as damon wrote it; rotation happens once it passes the limit.
    size_bytes: u64,
    /// To notice another file at its path.
    id: FileId,
    /// A failed write left part of a line that could not be cut off: the next line starts
    /// on a new line.
    broken_line: bool,
}

/// A size-rotated log file, appended to one whole line at a time.
pub struct RotatingFile {
    /// Absolute where the working directory could be read.
    path: PathBuf,
    dir_path: PathBuf,
    name: String,
    /// Directories the workload may write whatever their mode (see [`AnchoredDir::open`]).
    workload_dirs: Vec<PathBuf>,
    /// `<name>.`, which every rotated file's name starts with.
    rotated_prefix: String,
    max_size_bytes: u64,
    /// Rotated files kept; 0 keeps all.
    max_files: usize,
    dir: Option<AnchoredDir>,
    file: Option<Open>,
    /// The open file was found gone; say so once a new one is open.
    vanished: bool,
    /// A rotation failed and was reported; cleared when one succeeds.
    rotation_failing: bool,
    /// The names this writer rotated to that still exist, oldest first (only with max_files).
    rotated_here: Vec<String>,
    /// The last name this writer rotated to: suffix and number.
    last_rotated: Option<(String, u64)>,
    /// Rotated names found taken by something damon did not make, said once each.
    skipped: Vec<String>,
}

impl RotatingFile {
    /// Opens (appending: a restarted task keeps its earlier lines) the file, creating it and
    /// its directory when missing. Lists nothing.
    pub fn open(
        path: &Path,
        max_size_bytes: u64,
        max_files: usize,
        workload_dirs: &[PathBuf],
    ) -> Result<RotatingFile, PathError> {
        let path = if path.is_relative() {
            // A working directory removed later must not matter; if it is gone already, the
            // relative path is all there is.
            std::env::current_dir().map(|cwd| cwd.join(path)).unwrap_or_else(|_| path.to_path_buf())
        } else {
            path.to_path_buf()
        };
        let (dir_path, name) = match (path.parent(), path.file_name().and_then(|n| n.to_str())) {
            (Some(dir), Some(name)) => (dir.to_path_buf(), name.to_string()),
            _ => {
                let source = io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name in UTF-8");
                return Err(PathError::Io { action: "use the log path", path, source });
            }
        };
        let rotated_prefix = format!("{}.", name);
        let mut rotating = RotatingFile {
            dir_path,
            name,
            workload_dirs: workload_dirs.to_vec(),
            rotated_prefix,
            path,
            max_size_bytes,
            max_files,
            dir: None,
            file: None,
            vanished: false,
            rotation_failing: false,
            rotated_here: Vec::new(),
            last_rotated: None,
            skipped: Vec::new(),
        };
        rotating.file = Some(rotating.open_file()?);
        Ok(rotating)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory as held, or walked again when the path no longer leads to it.
    fn anchored_dir(&mut self) -> Result<&AnchoredDir, PathError> {
        let dir = match self.dir.take() {
            Some(dir) if dir.in_place() => dir,
            _ => AnchoredDir::open(&self.dir_path, &self.workload_dirs)?,
        };
        Ok(self.dir.insert(dir))
    }

    fn open_file(&mut self) -> Result<Open, PathError> {
        let name = self.name.clone();
        let (file, id) = self.anchored_dir()?.open_append(&name)?;
        let metadata = file.metadata().map_err(|source| PathError::Io {
            action: "read the size of",
            path: self.path.clone(),
            source,
        })?;
        Ok(Open { size_bytes: metadata.len(), id, file, broken_line: false })
    }

    /// Whether the log's path still leads to the open file.
    fn still_there(&self, open: &Open) -> bool {
        match &self.dir {
            Some(dir) => dir.in_place() && matches!(dir.entry(&self.name), Ok(Some(entry)) if entry.id == open.id),
            None => false,
        }
    }

    /// Makes the file ready for the next line at `now`: still the one at the path, open,
    /// rotated if it has passed its size. An error means the line cannot be written now;
    /// [`PathError::Planted`] that something damon did not make stands at the log's path.
    pub fn prepare(&mut self, now: SystemTime) -> Result<Vec<Note>, PathError> {
        let mut notes = Vec::new();
        if let Some(open) = &self.file {
            if !self.still_there(open) {
                self.file = None;
                self.vanished = true;
            }
        }
        if self.file.is_none() {
            self.file = Some(self.open_file()?);
            if std::mem::take(&mut self.vanished) {
                notes.push(Note::Restarted);
            }
        }
        if self.file.as_ref().map_or(false, |open| open.size_bytes > self.max_size_bytes) {
            match self.rotate(now) {
                Ok(more) => {
                    self.rotation_failing = false;
                    notes.extend(more);
                }
                Err((more, e)) => {
                    notes.extend(more);
                    if !std::mem::replace(&mut self.rotation_failing, true) {
                        notes.push(Note::CannotRotate(e));
                    }
                }
            }
            if self.file.is_none() {
                self.file = Some(self.open_file()?);
            }
        }
        Ok(notes)
    }

    /// Appends one whole line (after [`prepare`](Self::prepare)). On failure no part of the
    /// line stays in the file where that can be undone.
    pub fn append(&mut self, line: &[u8]) -> Result<(), PathError> {
        let open = match self.file.as_mut() {
            Some(open) => open,
            None => {
                let source = io::Error::new(io::ErrorKind::NotFound, "the file is not open");
                return Err(PathError::Io { action: "write to", path: self.path.clone(), source });
            }
        };
        let result = if open.broken_line {
            let mut whole = Vec::with_capacity(line.len() + 1);
            whole.push(b'\n');
            whole.extend_from_slice(line);
            open.file.write_all(&whole).map(|()| whole.len())
        } else {
            open.file.write_all(line).map(|()| line.len())
        };
        match result {
            Ok(written) => {
                open.size_bytes += written as u64;
                open.broken_line = false;
                Ok(())
            }
            Err(source) => {
                // A full disk can take part of a line: cut it off, or the next line would be
                // glued to it. Where that fails too, the next line starts on a new line.
                let length = open.file.metadata().map(|m| m.len());
                if length.as_ref().map_or(true, |&length| length != open.size_bytes)
                    && open.file.set_len(open.size_bytes).is_err()
                {
                    open.broken_line = true;
                    if let Ok(length) = length {
                        open.size_bytes = length;
                    }
                }
                Err(PathError::Io { action: "write to", path: self.path.clone(), source })
            }
        }
    }

    /// Renames the file to a free rotated name (the file is closed and must be opened again,
    /// whether this succeeds or not), then deletes what exceeds `max_files`. The notes come
    /// with the error too.
    fn rotate(&mut self, now: SystemTime) -> Result<Vec<Note>, (Vec<Note>, PathError)> {
        let mut notes = Vec::new();
        let (suffix, number) = match self.free_rotated_name(now, &mut notes) {
            Ok(free) => free,
            Err(e) => return Err((notes, e)),
        };
        let name = rotated_name(&self.rotated_prefix, &suffix, number);
        // Closed first: Windows may refuse to rename an open file.
        self.file = None;
        let renamed = match &self.dir {
            Some(dir) => dir.rename_no_replace(&self.name, &name),
            None => return Ok(notes),
        };
        match renamed {
            Ok(()) => {}
            // Gone meanwhile: there is nothing to rotate; the new file starts empty.
            Err(PathError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => return Ok(notes),
            Err(e) => return Err((notes, e)),
        }
        self.last_rotated = Some((suffix, number));
        if self.max_files == 0 {
            return Ok(notes);
        }
        self.rotated_here.push(name);
        notes.extend(self.delete_old());
        Ok(notes)
    }

    /// The first name for `now` that nothing has and this writer has not used (a deleted
    /// rotated file's name is not taken again: it would sort as older than it is).
    fn free_rotated_name(&mut self, now: SystemTime, notes: &mut Vec<Note>) -> Result<(String, u64), PathError> {
        let suffix = rotated_suffix(now);
        let used_here = self
            .rotated_here
            .iter()
            .filter_map(|name| parse_rotated(name.strip_prefix(&self.rotated_prefix)?))
            .chain(self.last_rotated.clone())
            .filter(|(s, _)| *s == suffix)
            .map(|(_, number)| number.saturating_add(1))
            .max()
            .unwrap_or(0);
        let dir = match &self.dir {
            Some(dir) => dir,
            None => {
                let source = io::Error::new(io::ErrorKind::NotFound, "the directory is not open");
                return Err(PathError::Io { action: "rotate the log in", path: self.dir_path.clone(), source });
            }
        };
        for number in used_here..used_here.saturating_add(MAX_NUMBER_IN_SECOND) {
            let candidate = rotated_name(&self.rotated_prefix, &suffix, number);
            match dir.entry(&candidate)? {
                None => return Ok((suffix, number)),
                Some(entry) => {
                    if let Some(found) = entry.planted {
                        if !self.skipped.contains(&candidate) {
                            notes.push(Note::Skipped(PathError::Planted {
                                path: self.dir_path.join(&candidate),
                                found,
                            }));
                            self.skipped.push(candidate);
                        }
                    }
                }
            }
        }
        let source = io::Error::new(io::ErrorKind::AlreadyExists, "every rotated name for this second is taken");
        let path = self.dir_path.join(rotated_name(&self.rotated_prefix, &suffix, 0));
        Err(PathError::Io { action: "rotate the log to", path, source })
    }

    /// Deletes the oldest rotated files of damon's beyond `max_files` (see the module's doc
    /// for "oldest"); what damon did not make is neither counted nor deleted.
    fn delete_old(&mut self) -> Vec<Note> {
        let dir = match &self.dir {
            Some(dir) => dir,
            None => return Vec::new(),
        };
        let names = match dir.own_file_names() {
            Ok(names) => names,
            Err(e) => return vec![Note::CannotDelete(e)],
        };
        let mut found: Vec<((String, u64), String)> = Vec::new();
        let mut here_present = vec![false; self.rotated_here.len()];
        for name in names {
            let key = match name.strip_prefix(&self.rotated_prefix).and_then(parse_rotated) {
                Some(key) => key,
                None => continue,
            };
            match self.rotated_here.iter().position(|here| *here == name) {
                Some(i) => here_present[i] = true,
                None => found.push((key, name)),
            }
        }
        found.sort();
        let mut present = here_present.into_iter();
        self.rotated_here.retain(|_| present.next().unwrap_or(false));
        let excess = (found.len() + self.rotated_here.len()).saturating_sub(self.max_files);
        let oldest_first: Vec<String> =
            found.into_iter().map(|(_, name)| name).chain(self.rotated_here.iter().cloned()).take(excess).collect();
        let mut notes = Vec::new();
        for name in oldest_first {
            if let Err(e) = dir.remove_own_file(&name) {
                notes.push(Note::CannotDelete(e));
            }
            self.rotated_here.retain(|here| *here != name);
        }
        notes
    }
}

fn rotated_name(prefix: &str, suffix: &str, number: u64) -> String {
    match number {
        0 => format!("{}{}", prefix, suffix),
        n => format!("{}{}.{}", prefix, suffix, n),
    }
}

/// `2024-05-01T10-00-00` or `2024-05-01T10-00-00.3` (what follows `<name>.`): the suffix and
/// the number, 0 for none. Anything else is not a rotated file of this log.
fn parse_rotated(rest: &str) -> Option<(String, u64)> {
    let (suffix, number) = match rest.split_once('.') {
        Some((suffix, number)) if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) => {
            (suffix, number.parse().ok()?)
        }
        Some(_) => return None,
        None => (rest, 0),
    };
    if is_rotated_suffix(suffix) {
        Some((suffix.to_string(), number))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::time::{Duration, UNIX_EPOCH};

    fn fresh_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("damon-rotate-{}-{}", std::process::id(), name));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// The rotated files' names, sorted.
    fn rotated(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("damon.log."))
            .collect();
        names.sort();
        names
    }

    fn write(log: &mut RotatingFile, line: &str, now: SystemTime) {
        let notes = log.prepare(now).unwrap();
        assert!(notes.is_empty(), "{:?}", notes);
        log.append(line.as_bytes()).unwrap();
    }

    /// 2024-05-01T10:00:00Z plus `secs`.
    fn t(secs: i64) -> SystemTime {
        let base = UNIX_EPOCH + Duration::from_secs(1_714_557_600);
        if secs >= 0 {
            base + Duration::from_secs(secs as u64)
        } else {
            base - Duration::from_secs(secs.unsigned_abs())
        }
    }

    #[test]
    fn names_as_file_rotate_did() {
        assert_eq!(parse_rotated("2024-05-01T10-00-00"), Some(("2024-05-01T10-00-00".to_string(), 0)));
        assert_eq!(parse_rotated("2024-05-01T10-00-00.12"), Some(("2024-05-01T10-00-00".to_string(), 12)));
        for other in ["2024-05-01T10-00-00.", "2024-05-01T10-00-00.x", "2024-05-01T10-00-00.gz", "old", "1.2"] {
            assert_eq!(parse_rotated(other), None, "{}", other);
        }
        let dir = fresh_dir("names");
        let mut log = RotatingFile::open(&dir.join("damon.log"), 10, 0, &[]).unwrap();
        // Each line passes the limit, so each next line rotates first.
        for (i, now) in [t(0), t(0), t(0), t(0), t(1)].iter().enumerate() {
            write(&mut log, &format!("{:020}\n", i), *now);
        }
        write(&mut log, "last\n", t(1));
        assert_eq!(
            rotated(&dir),
            [
                "damon.log.2024-05-01T10-00-00",
                "damon.log.2024-05-01T10-00-00.1",
                "damon.log.2024-05-01T10-00-00.2",
                "damon.log.2024-05-01T10-00-01",
                "damon.log.2024-05-01T10-00-01.1"
            ]
        );
        assert_eq!(fs::read_to_string(dir.join("damon.log")).unwrap(), "last\n");
        let _ = fs::remove_dir_all(&dir);
    }

    /// The clock steps back (to the same second, to an earlier second that already has a
    /// rotated file, to before the epoch): nothing panics, nothing is overwritten, and the
    /// files kept are the newest lines, whatever their names say.
    #[test]
    fn a_clock_stepping_back_overwrites_nothing_and_keeps_the_newest() {
        let dir = fresh_dir("clock");
        let path = dir.join("damon.log");
        // A file from an earlier run, named for a later time than any below.
        fs::write(dir.join("damon.log.2024-05-01T11-00-00"), "line from before\n").unwrap();
        let max_files = 3;
        let mut log = RotatingFile::open(&path, 10, max_files, &[]).unwrap();
        let clock =
            [t(5), t(5), t(4), t(5), t(4), t(-3600), t(5), t(0), UNIX_EPOCH - Duration::from_secs(10), t(5), t(4)];
        let mut written = Vec::new();
        for (i, now) in clock.iter().enumerate() {
            let line = format!("line {:012}\n", i); // each line passes the 10 bytes: one file per line
            write(&mut log, &line, *now);
            written.push(line);
            // Nothing overwritten: every file holds exactly one whole line written here.
            let names = rotated(&dir);
            assert!(names.len() <= max_files, "{:?}", names);
        }
        // Kept: the current file and the max_files before it, i.e. the newest lines.
        let current = fs::read_to_string(&path).unwrap();
        assert_eq!(current, written[written.len() - 1]);
        let mut kept: Vec<String> = rotated(&dir).iter().map(|n| fs::read_to_string(dir.join(n)).unwrap()).collect();
        kept.sort();
        let mut newest: Vec<String> = written[written.len() - 1 - max_files..written.len() - 1].to_vec();
        newest.sort();
        assert_eq!(kept, newest, "{:?}", rotated(&dir));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_existing_name_is_never_overwritten() {
        let dir = fresh_dir("taken");
        let path = dir.join("damon.log");
        // Someone else's files at the names a rotation at t(0) would take first.
        fs::write(dir.join("damon.log.2024-05-01T10-00-00"), "theirs 0\n").unwrap();
        fs::write(dir.join("damon.log.2024-05-01T10-00-00.1"), "theirs 1\n").unwrap();
        fs::write(&path, "0123456789 past the limit\n").unwrap();
        let mut log = RotatingFile::open(&path, 10, 0, &[]).unwrap();
        write(&mut log, "after\n", t(0));
        assert_eq!(fs::read_to_string(dir.join("damon.log.2024-05-01T10-00-00")).unwrap(), "theirs 0\n");
        assert_eq!(fs::read_to_string(dir.join("damon.log.2024-05-01T10-00-00.1")).unwrap(), "theirs 1\n");
        assert_eq!(
            fs::read_to_string(dir.join("damon.log.2024-05-01T10-00-00.2")).unwrap(),
            "0123456789 past the limit\n"
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), "after\n");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn found_files_go_oldest_name_first_and_strangers_stay() {
        let dir = fresh_dir("found");
        let path = dir.join("damon.log");
        for name in
            ["damon.log.2024-01-01T00-00-00.1", "damon.log.2024-01-01T00-00-00", "damon.log.2023-12-31T23-59-59"]
        {
            fs::write(dir.join(name), "old\n").unwrap();
        }
        for stranger in ["damon.log.keep", "damon.log.2020-01-01T00-00-00.gz", "other.log.2020-01-01T00-00-00"] {
            fs::write(dir.join(stranger), "not ours\n").unwrap();
        }
        fs::create_dir(dir.join("damon.log.2019-01-01T00-00-00")).unwrap();
        fs::write(&path, "0123456789 past the limit\n").unwrap();
        let mut log = RotatingFile::open(&path, 10, 2, &[]).unwrap();
        write(&mut log, "new\n", t(0));
        let left: Vec<String> =
            fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        for expected in [
            "damon.log",
            "damon.log.2024-05-01T10-00-00",
            "damon.log.2024-01-01T00-00-00.1",
            "damon.log.keep",
            "damon.log.2020-01-01T00-00-00.gz",
            "other.log.2020-01-01T00-00-00",
            "damon.log.2019-01-01T00-00-00",
        ] {
            assert!(left.iter().any(|n| n == expected), "{} was deleted: {:?}", expected, left);
        }
        assert_eq!(left.len(), 7, "{:?}", left);
        let _ = fs::remove_dir_all(&dir);
    }

    // Unix only, here and below: Windows keeps an open file's name until its last handle is
    // closed (delete pending), so the log's directory cannot be removed under damon as on Unix.
    #[cfg(unix)]
    #[test]
    fn a_removed_directory_is_made_again_and_said_so() {
        let dir = fresh_dir("removed");
        let path = dir.join("sub").join("damon.log");
        let mut log = RotatingFile::open(&path, 1000, 2, &[]).unwrap();
        write(&mut log, "one\n", t(0));
        fs::remove_dir_all(dir.join("sub")).unwrap();
        let notes = log.prepare(t(1)).unwrap();
        assert!(matches!(notes.as_slice(), [Note::Restarted]), "{:?}", notes);
        log.append(b"two\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "two\n");
        // Another file put at the path is written to from then on.
        fs::rename(&path, dir.join("moved")).unwrap();
        fs::write(&path, "theirs\n").unwrap();
        let notes = log.prepare(t(2)).unwrap();
        assert!(matches!(notes.as_slice(), [Note::Restarted]), "{:?}", notes);
        log.append(b"three\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "theirs\nthree\n");
        assert_eq!(fs::read_to_string(dir.join("moved")).unwrap(), "two\n");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_directory_that_cannot_be_made_is_an_error_not_a_panic() {
        let dir = fresh_dir("blocked");
        fs::write(dir.join("file"), "").unwrap();
        let under_a_file = dir.join("file").join("damon.log");
        let error = RotatingFile::open(&under_a_file, 1000, 2, &[]).err().expect("an error");
        assert!(error.to_string().starts_with("cannot use the directory "), "{}", error);
        assert!(error.to_string().ends_with(": a regular file stands there, not a directory"), "{}", error);
        let error = RotatingFile::open(&dir, 1000, 2, &[]).err().expect("a directory is no log file");
        assert!(error.to_string().contains(&dir.display().to_string()), "{}", error);
        let _ = fs::remove_dir_all(&dir);
    }

    #[cfg(unix)]
    #[test]
    fn a_directory_replaced_by_a_file_loses_lines_until_it_is_back() {
        let dir = fresh_dir("replaced");
        let path = dir.join("sub").join("damon.log");
        let mut log = RotatingFile::open(&path, 1000, 2, &[]).unwrap();
        fs::remove_dir_all(dir.join("sub")).unwrap();
        fs::write(dir.join("sub"), "a file where the directory was").unwrap();
        assert!(log.prepare(t(0)).is_err());
        assert!(log.append(b"lost\n").is_err());
        fs::remove_file(dir.join("sub")).unwrap();
        let notes = log.prepare(t(1)).unwrap();
        assert!(matches!(notes.as_slice(), [Note::Restarted]), "{:?}", notes);
        log.append(b"back\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "back\n");
        let _ = fs::remove_dir_all(&dir);
    }
}
