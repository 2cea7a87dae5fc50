//! Reading and writing cgroup interface files, with errors that carry the path and the value.
//!
//! Files are opened without `O_CREAT`: a misspelt name must fail, not create a regular file in
//! a cgroup directory (which the kernel refuses anyway, with a less helpful error).

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// A failed operation on a cgroup file or directory.
#[derive(Debug)]
pub struct CgroupIoError {
    pub operation: &'static str,
    pub path: PathBuf,
    pub value: Option<String>,
    pub source: io::Error,
}

impl fmt::Display for CgroupIoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(value) => {
                write!(f, "cannot {} {:?} to {}: {}", self.operation, value, self.path.display(), self.source)
            }
            None => write!(f, "cannot {} {}: {}", self.operation, self.path.display(), self.source),
        }
    }
}

impl std::error::Error for CgroupIoError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

fn error(operation: &'static str, path: &Path, value: Option<&str>, source: io::Error) -> CgroupIoError {
    CgroupIoError { operation, path: path.to_path_buf(), value: value.map(str::to_string), source }
}

/// Writes `value` to an existing interface file in one `write` call, as the kernel expects.
pub fn write(path: &Path, value: &str) -> Result<(), CgroupIoError> {
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|e| error("write", path, Some(value), e))
}

/// What one read asks for: the kernel formats these files a page at a time.
const READ_CHUNK_BYTES: usize = 4096;

/// Reads a whole interface file (or a /proc file): one open, then reads of a page until the
/// end, usually two. Not `fs::read_to_string`: these files report a size of 0, so it would
/// ask for their size first and then read them 32 bytes at a time, growing its buffer.
pub fn read(path: &Path) -> Result<String, CgroupIoError> {
    read_whole(path).map_err(|e| error("read", path, None, e))
}

fn read_whole(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut content = Vec::new();
    let mut chunk = [0u8; READ_CHUNK_BYTES];
    loop {
        match file.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => content.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    String::from_utf8(content).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

pub fn create_dir(path: &Path) -> Result<(), CgroupIoError> {
    fs::create_dir(path).map_err(|e| error("create cgroup", path, None, e))
}

pub fn remove_dir(path: &Path) -> Result<(), CgroupIoError> {
    fs::remove_dir(path).map_err(|e| error("remove cgroup", path, None, e))
}

/// Reads a single number (`memory.current`); `max` reads as `None`.
pub fn read_u64(path: &Path) -> Option<u64> {
    read(path).ok().and_then(|s| s.trim().parse().ok())
}

/// Looks up `key` in a flat-keyed file (`cpu.stat`, `memory.events`, `memory.stat`).
pub fn keyed_value(content: &str, key: &str) -> Option<u64> {
    content.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        if words.next() == Some(key) {
            words.next().and_then(|v| v.parse().ok())
        } else {
            None
        }
    })
}

/// Reads `key` from a flat-keyed file.
pub fn read_keyed(path: &Path, key: &str) -> Option<u64> {
    read(path).ok().and_then(|content| keyed_value(&content, key))
}

/// The pids listed in `cgroup.procs`.
pub fn pids(dir: &Path) -> Result<Vec<i32>, CgroupIoError> {
    Ok(read(&dir.join("cgroup.procs"))?.lines().filter_map(|l| l.trim().parse().ok()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_values_are_found_by_whole_key() {
        let content = "usage_usec 10\nuser_usec 7\nnr_throttled 3\n";
        assert_eq!(keyed_value(content, "user_usec"), Some(7));
        assert_eq!(keyed_value(content, "usage"), None);
        assert_eq!(keyed_value(content, "nr_throttled"), Some(3));
    }

    #[test]
    fn a_file_longer_than_a_read_is_read_whole() {
        let path = std::env::temp_dir().join(format!("damon-cgroup-read-{}", std::process::id()));
        let content: String = (0..3 * READ_CHUNK_BYTES).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        fs::write(&path, &content).unwrap();
        let read_back = read(&path);
        fs::remove_file(&path).unwrap();
        assert_eq!(read_back.unwrap(), content);
        let missing = read(Path::new("/no/such/cgroup/file")).unwrap_err();
        assert!(missing.to_string().contains("/no/such/cgroup/file"), "{}", missing);
    }

    #[test]
    fn writing_a_missing_file_fails_instead_of_creating_it() {
        let dir = std::env::temp_dir().join(format!("damon-cgroup-file-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let err = write(&dir.join("memory.mxa"), "5").unwrap_err();
        assert!(!dir.join("memory.mxa").exists());
        assert!(err.to_string().contains("memory.mxa"), "{}", err);
        assert!(err.to_string().contains("\"5\""), "{}", err);
        fs::remove_dir_all(&dir).unwrap();
    }
}
