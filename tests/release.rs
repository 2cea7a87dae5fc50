//! What an operator checks on a release binary: that it names its version, target and commit,
//! and that the static Linux build needs no dynamic loader, so it runs on any distribution.
//!
//! The static check runs where the tests are built with `-C target-feature=+crt-static`: in the
//! cgroup v2 VM (scripts/vm-test), and with the musl target scripts/release uses. In an ordinary
//! dynamic build the same ELF reader must find the loader the binary asks for, which shows the
//! reader itself works.

#![cfg(target_os = "linux")]

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

/// elf.h: program header types: a loaded segment, the dynamic section, the loader's path.
const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
/// elf.h: dynamic entries: the list's end, a shared library the binary needs (an offset into
/// the string table), the string table's address.
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;

#[test]
fn version_names_the_version_the_target_and_the_commit() {
    let dir = TestDir::new("release-version");
    let mut cmd = damon(&dir);
    cmd.arg("--version");
    let flag = run(cmd, &dir);
    flag.assert_code(0);
    let alone = run(damon(&dir), &dir);
    alone.assert_code(0);
    assert_eq!(alone.stdout, flag.stdout, "`damon` alone and `damon --version` differ\n{}", alone.explain());

    // damon 0.1.0 (x86_64-unknown-linux-musl, commit 1a2b3c4)
    let line = flag.stdout.trim();
    let inside = line
        .strip_prefix(&format!("damon {} (", env!("CARGO_PKG_VERSION")))
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not `damon VERSION (TARGET, commit COMMIT)`: {:?}\n{}", line, flag.explain()));
    let (target, commit) = inside
        .split_once(", commit ")
        .unwrap_or_else(|| panic!("no target and commit in {:?}\n{}", line, flag.explain()));
    let arch = std::env::consts::ARCH;
    assert!(
        target.starts_with(arch) && target.contains(std::env::consts::OS),
        "target {:?} is not a {} {} triple\n{}",
        target,
        arch,
        std::env::consts::OS,
        flag.explain()
    );
    match expected_commit() {
        Some(expected) => assert_eq!(commit, expected, "the commit is not the checkout's HEAD\n{}", flag.explain()),
        None => assert!(
            commit == "unknown" || (commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit())),
            "commit {:?} is neither a short hash nor \"unknown\"\n{}",
            commit,
            flag.explain()
        ),
    }
}

#[test]
fn a_static_build_needs_no_dynamic_loader() {
    let binary = Path::new(DAMON);
    let elf = std::fs::read(binary).unwrap_or_else(|e| panic!("cannot read {}: {}", binary.display(), e));
    let found = dynamic_needs(&elf).unwrap_or_else(|e| panic!("{}: {}", binary.display(), e));
    if cfg!(target_feature = "crt-static") {
        assert_eq!(found.interpreter, None, "{} is static but asks for a dynamic loader", binary.display());
        assert!(found.libraries.is_empty(), "{} is static but needs {:?}", binary.display(), found.libraries);
    } else {
        // A dynamic build: the reader must see what `readelf -l` calls "Requesting program
        // interpreter" (ld-linux-*.so.*), or it would pass a static build for nothing.
        let interpreter = found.interpreter.unwrap_or_else(|| {
            panic!("no PT_INTERP found in {}, a dynamic build: the ELF reader is wrong", binary.display())
        });
        assert!(interpreter.contains("ld-"), "unexpected loader {:?} in {}", interpreter, binary.display());
        assert!(found.libraries.iter().any(|l| l.starts_with("libc.")), "no libc in {:?}", found.libraries);
    }
}

/// The commit the binary must name: DAMON_BUILD_COMMIT when the tests were started with it,
/// else the checkout's HEAD when git can tell (not in the VM, which has neither git nor the
/// repository).
fn expected_commit() -> Option<String> {
    if let Ok(commit) = std::env::var("DAMON_BUILD_COMMIT") {
        return Some(commit.trim().to_string());
    }
    let package = Path::new(env!("CARGO_MANIFEST_DIR"));
    if !package.join(".git").exists() {
        return None;
    }
    let output = Command::new("git").args(["rev-parse", "--short", "HEAD"]).current_dir(package).output().ok()?;
    let commit = String::from_utf8(output.stdout).ok()?.trim().to_string();
    if output.status.success() && !commit.is_empty() {
        Some(commit)
    } else {
        None
    }
}

/// What an ELF executable asks of the dynamic loader.
struct DynamicNeeds {
    /// PT_INTERP's path, e.g. /lib64/ld-linux-x86-64.so.2.
    interpreter: Option<String>,
    /// DT_NEEDED names (a static-pie binary has a dynamic section for its own relocations, but
    /// needs no library).
    libraries: Vec<String>,
}

/// Reads the program headers (and the dynamic section, for its DT_NEEDED entries) of a 32- or
/// 64-bit ELF file of either byte order. Offsets are from elf.h's Elf32/Elf64 structs.
fn dynamic_needs(elf: &[u8]) -> Result<DynamicNeeds, String> {
    if elf.len() < 64 || elf[..4] != *b"\x7fELF" {
        return Err("not an ELF file".to_string());
    }
    let wide = match elf[4] {
        1 => false,
        2 => true,
        class => return Err(format!("unknown ELF class {}", class)),
    };
    let little = match elf[5] {
        1 => true,
        2 => false,
        data => return Err(format!("unknown ELF byte order {}", data)),
    };
    let uint = |offset: u64, size: usize| -> Result<u64, String> {
        let start = usize::try_from(offset).map_err(|_| "offset out of range".to_string())?;
        let bytes = elf.get(start..start + size).ok_or_else(|| format!("truncated at offset {}", offset))?;
        let fold = |value: u64, byte: &u8| value << 8 | u64::from(*byte);
        Ok(if little { bytes.iter().rev().fold(0, fold) } else { bytes.iter().fold(0, fold) })
    };
    // Address-sized fields: 8 bytes in ELF64, 4 in ELF32.
    let word = if wide { 8 } else { 4 };
    let (phoff, phentsize, phnum) = if wide {
        (uint(0x20, 8)?, uint(0x36, 2)?, uint(0x38, 2)?)
    } else {
        (uint(0x1c, 4)?, uint(0x2a, 2)?, uint(0x2c, 2)?)
    };
    let mut needs = DynamicNeeds { interpreter: None, libraries: Vec::new() };
    let mut dynamic = None;
    let mut strtab_address = None;
    let mut loads = Vec::new();
    for index in 0..phnum {
        let header = phoff + index * phentsize;
        let p_type = uint(header, 4)? as u32;
        // Elf64_Phdr: type, flags, offset, vaddr, paddr, filesz; Elf32_Phdr: type, offset,
        // vaddr, paddr, filesz.
        let (offset, vaddr, filesz) = if wide {
            (uint(header + 8, 8)?, uint(header + 16, 8)?, uint(header + 32, 8)?)
        } else {
            (uint(header + 4, 4)?, uint(header + 8, 4)?, uint(header + 16, 4)?)
        };
        match p_type {
            PT_INTERP => {
                let bytes = slice(elf, offset, filesz)?;
                let path = bytes.split(|b| *b == 0).next().unwrap_or_default();
                needs.interpreter = Some(String::from_utf8_lossy(path).into_owned());
            }
            PT_DYNAMIC => dynamic = Some((offset, filesz)),
            // To turn DT_STRTAB's address into a file offset.
            PT_LOAD => loads.push((vaddr, offset, filesz)),
            _ => {}
        }
    }
    let (dyn_offset, dyn_size) = match dynamic {
        Some(section) => section,
        None => return Ok(needs),
    };
    let mut needed_offsets = Vec::new();
    let mut entry = dyn_offset;
    while entry + 2 * word <= dyn_offset + dyn_size {
        let tag = uint(entry, word as usize)?;
        let value = uint(entry + word, word as usize)?;
        match tag {
            DT_NULL => break,
            DT_NEEDED => needed_offsets.push(value),
            DT_STRTAB => strtab_address = Some(value),
            _ => {}
        }
        entry += 2 * word;
    }
    if needed_offsets.is_empty() {
        return Ok(needs);
    }
    let strtab_address = strtab_address.ok_or("DT_NEEDED without DT_STRTAB")?;
    let strtab = loads
        .iter()
        .find(|(vaddr, _, filesz)| (*vaddr..vaddr + filesz).contains(&strtab_address))
        .map(|(vaddr, offset, _)| strtab_address - vaddr + offset)
        .ok_or("DT_STRTAB outside every loaded segment")?;
    for name in needed_offsets {
        let start = usize::try_from(strtab + name).map_err(|_| "name out of range".to_string())?;
        let rest = elf.get(start..).ok_or("DT_NEEDED name out of the file")?;
        let name = rest.split(|b| *b == 0).next().unwrap_or_default();
        needs.libraries.push(String::from_utf8_lossy(name).into_owned());
    }
    Ok(needs)
}

fn slice(elf: &[u8], offset: u64, size: u64) -> Result<&[u8], String> {
    let start = usize::try_from(offset).map_err(|_| "offset out of range".to_string())?;
    let end = usize::try_from(offset + size).map_err(|_| "size out of range".to_string())?;
    elf.get(start..end).ok_or_else(|| format!("segment at {} of {} bytes is past the file's end", offset, size))
}
