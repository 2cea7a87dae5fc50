//! /proc/self/mountinfo (proc(5)), one parser for every reader: where the cgroup hierarchies
//! are mounted (cgroup/hierarchy.rs), which disk holds a directory (cgroup/block_device.rs), and the
//! cgroup mounts a sandbox rule must not write (sandbox.rs). The kernel writes a space, tab,
//! newline or backslash of a field as an octal escape ("\\040"); every field is decoded here.

use std::path::PathBuf;

pub const PATH: &str = "/proc/self/mountinfo";

/// A line of /proc/self/mountinfo (proc(5)), its fields decoded:
/// "36 25 0:32 / /data rw,relatime shared:1 - btrfs /dev/sda2 rw,space_cache".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The file system's device number, "MAJOR:MINOR".
    pub number: String,
    /// The directory of the file system mounted there.
    pub root: String,
    pub point: PathBuf,
    pub fs_type: String,
    pub source: String,
    pub super_options: String,
}

impl Mount {
    pub fn parse(line: &str) -> Option<Mount> {
        let (mine, theirs) = line.split_once(" - ")?;
        let mut fields = mine.split(' ');
        let number = fields.nth(2)?.to_string();
        let root = unescape(fields.next()?);
        let point = PathBuf::from(unescape(fields.next()?));
        let mut fields = theirs.split(' ');
        let fs_type = fields.next()?.to_string();
        let source = unescape(fields.next()?);
        let super_options = fields.next().unwrap_or_default().to_string();
        Some(Mount { number, root, point, fs_type, source, super_options })
    }

    /// An overlay's upper and lower directories, from its options (`upperdir=`, `lowerdir=`
    /// with its layers separated by ':', and the new mount API's `lowerdir+=`). The kernel
    /// writes a comma, space or backslash of a path as an octal escape, and overlay a ':' of one
    /// as "\:".
    /// The upper first: its disk is the one the task's writes go to.
    pub fn overlay_dirs(&self) -> Vec<PathBuf> {
        let (mut upper, mut dirs) = (Vec::new(), Vec::new());
        for option in self.super_options.split(',') {
            let (key, value) = match option.split_once('=') {
                Some(pair) => pair,
                None => continue,
            };
            match key {
                "upperdir" => upper.push(PathBuf::from(unescape(value))),
                "lowerdir+" => dirs.push(PathBuf::from(unescape(value))),
                "lowerdir" => {
                    let value = unescape(value);
                    let mut layer = String::new();
                    let mut chars = value.chars();
                    while let Some(c) = chars.next() {
                        match c {
                            '\\' => layer.extend(chars.next()),
                            ':' => dirs.push(PathBuf::from(std::mem::take(&mut layer))),
                            c => layer.push(c),
                        }
                    }
                    dirs.push(PathBuf::from(layer));
                }
                _ => {}
            }
        }
        upper.extend(dirs);
        upper.retain(|d| d.is_absolute());
        upper
    }
}

/// Undoes the kernel's octal escapes of mountinfo ("\040" for a space).
pub fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal =
            bytes.get(i + 1..i + 4).filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn a_mountinfo_line_gives_its_number_point_type_and_source() {
        let line = "36 25 0:32 / /da\\040ta rw,relatime shared:1 - btrfs /dev/sda2 rw,space_cache";
        let mount = Mount::parse(line).unwrap();
        assert_eq!(
            (mount.number.as_str(), mount.point.as_path(), mount.fs_type.as_str(), mount.source.as_str()),
            ("0:32", Path::new("/da ta"), "btrfs", "/dev/sda2")
        );
        assert!(Mount::parse("36 25 0:32 / /data rw").is_none());
        // Bytes beyond ASCII pass as they are; an escape is a backslash and three octal digits.
        assert_eq!(unescape("/caf\u{e9}\\134x\\09"), "/caf\u{e9}\\x\\09");
    }

    #[test]
    fn an_overlay_names_its_upper_and_lower_directories() {
        // The options of "lowerdir=/l1:/l\:2:/l,3" as the kernel writes them (octal escapes).
        let line = "90 25 0:50 / /merged rw - overlay overlay \
                    rw,lowerdir=/l1:/l\\134:2:/l\\0543,upperdir=/up,workdir=/work,uuid=on";
        let mount = Mount::parse(line).unwrap();
        let dirs: Vec<PathBuf> = ["/up", "/l1", "/l:2", "/l,3"].iter().map(PathBuf::from).collect();
        assert_eq!(mount.overlay_dirs(), dirs);
    }
}
