//! Per-task network control with cgroup BPF: programs written here instruction by instruction,
//! loaded with bpf(2) and attached to the workload's group in the cgroup2 hierarchy (on a v1
//! host, a group in the cgroup2 hierarchy mounted beside v1, systemd's hybrid layout at
//! /sys/fs/cgroup/unified). Here: the system call, maps, programs, the instruction encoder and
//! the counting of the group's traffic ([`NetworkAccounting`]); firewall.rs has the network
//! rules (DAMON_IP_ALLOW, DAMON_IP_DENY, DAMON_BIND_PORTS).
//!
//! Written by hand with the kernel's interface (`union bpf_attr`, `struct bpf_insn`) rather
//! than through a crate: none that builds with Rust 1.63 does it well, and a handful of
//! instructions need no compiler. `unsafe` stays in the system call wrappers below.
//!
//! Maps and programs are file descriptors: they live as long as their descriptors and, once
//! attached, as long as the group (BPF_PROG_ATTACH, not a bpf link, so the kernel 4.15 that
//! BPF_F_ALLOW_MULTI needs is enough).

use std::fmt;
use std::fs::File;
use std::io;
use std::mem;
use std::os::unix::io::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::libc;

use super::hierarchy::Hierarchies;
use crate::config::CpuCores;
use crate::stats::NetworkTraffic;

mod firewall;
pub use self::firewall::{attach_bind_ports, attach_network};

// bpf(2) commands (include/uapi/linux/bpf.h, enum bpf_cmd).
const BPF_MAP_CREATE: libc::c_int = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_int = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_int = 2;
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
#[cfg_attr(not(test), allow(dead_code))] // the tests query what is attached
const BPF_OBJ_GET_INFO_BY_FD: libc::c_int = 15;
#[cfg_attr(not(test), allow(dead_code))] // the tests query what is attached
const BPF_PROG_QUERY: libc::c_int = 16;
const BPF_MAP_UPDATE_BATCH: libc::c_int = 26;

const BPF_MAP_TYPE_HASH: u32 = 1;
const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_MAP_TYPE_PERCPU_ARRAY: u32 = 6;
const BPF_MAP_TYPE_LPM_TRIE: u32 = 11;
const BPF_PROG_TYPE_CGROUP_SKB: u32 = 8;
const BPF_PROG_TYPE_CGROUP_SOCK_ADDR: u32 = 18;
/// An LPM trie must be created with it: its entries are allocated as they are added.
const BPF_F_NO_PREALLOC: u32 = 1;

/// Where a program is attached (enum bpf_attach_type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum AttachType {
    InetIngress = 0,
    InetEgress = 1,
    Inet4Connect = 10,
    Inet6Connect = 11,
    Inet4Bind = 8,
    Inet6Bind = 9,
}

/// Other tools' programs on the same group (systemd's IP accounting, a Nomad plugin's) and
/// ours run side by side, and a group below may add its own.
const BPF_F_ALLOW_MULTI: u32 = 2;

/// The helpers bpf_map_lookup_elem and bpf_skb_load_bytes (enum bpf_func_id).
const BPF_FUNC_MAP_LOOKUP_ELEM: i32 = 1;
const BPF_FUNC_SKB_LOAD_BYTES: i32 = 26;

/// The verifier's log when a load fails: enough for the few instructions of these programs.
const VERIFIER_LOG_BYTES: usize = 64 * 1024;
/// log_level 1: the instructions the verifier walked and why it stopped.
const VERIFIER_LOG_LEVEL: u32 = 1;

// ---------------------------------------------------------------------------------------------
// The system call

/// The bpf(2) command, for errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// Not bpf(2): opening the group's directory to attach to.
    OpenGroup,
    /// Not bpf(2): reading how many CPUs a per-CPU value has copies for.
    PossibleCpus,
    MapCreate,
    MapLookupElem,
    MapUpdateElem,
    ProgLoad,
    ProgAttach,
    ProgDetach,
    ProgQuery,
    ObjGetInfoByFd,
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Call::OpenGroup => "open of the cgroup directory",
            Call::PossibleCpus => "read of /sys/devices/system/cpu/possible",
            Call::MapCreate => "BPF_MAP_CREATE",
            Call::MapLookupElem => "BPF_MAP_LOOKUP_ELEM",
            Call::MapUpdateElem => "BPF_MAP_UPDATE_ELEM",
            Call::ProgLoad => "BPF_PROG_LOAD",
            Call::ProgAttach => "BPF_PROG_ATTACH",
            Call::ProgDetach => "BPF_PROG_DETACH",
            Call::ProgQuery => "BPF_PROG_QUERY",
            Call::ObjGetInfoByFd => "BPF_OBJ_GET_INFO_BY_FD",
        })
    }
}

/// A failed bpf(2) call: which, on what, the errno, and the verifier's log for a program it
/// rejected.
#[derive(Debug)]
pub struct BpfError {
    pub call: Call,
    /// The program's (or map's) name.
    pub object: Option<&'static str>,
    /// The group attached to, detached from or queried.
    pub group: Option<PathBuf>,
    pub source: io::Error,
    pub verifier_log: Option<String>,
}

impl BpfError {
    fn new(call: Call, object: Option<&'static str>, source: io::Error) -> BpfError {
        BpfError { call, object, group: None, source, verifier_log: None }
    }

    fn on(mut self, group: &Path) -> BpfError {
        self.group = Some(group.to_path_buf());
        self
    }
}

impl fmt::Display for BpfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.call)?;
        if let Some(object) = self.object {
            write!(f, " of {}", object)?;
        }
        if let Some(group) = &self.group {
            write!(f, " on {}", group.display())?;
        }
        write!(f, " failed: {}", self.source)?;
        match self.source.raw_os_error() {
            // A root damon that loaded its programs has the rights: a group above holds a
            // program of this kind attached alone, which allows none below it.
            Some(libc::EPERM) if self.call == Call::ProgAttach => f.write_str(
                " (a group above holds a program of this kind attached alone, without BPF_F_ALLOW_MULTI, which no group \
                 below may add to: another tool's, which `bpftool cgroup tree` shows; set DAMON_CGROUP_PARENT to a \
                 group outside it; or attaching needs CAP_NET_ADMIN or CAP_SYS_ADMIN, and no seccomp filter refusing \
                 bpf(2))",
            )?,
            Some(libc::EPERM) => f.write_str(
                " (loading and attaching cgroup programs needs CAP_BPF and CAP_NET_ADMIN, or CAP_SYS_ADMIN, and no \
                 seccomp filter refusing bpf(2), as container runtimes' default ones do)",
            )?,
            // cgroup_get_from_fd: the directory is a v1 group, or no group at all.
            Some(libc::EBADF) if self.group.is_some() => {
                f.write_str(" (not a directory of the cgroup2 hierarchy)")?;
            }
            _ => {}
        }
        if let Some(log) = &self.verifier_log {
            write!(f, "; the verifier's log:\n{}", log.trim_end())?;
        }
        Ok(())
    }
}

impl std::error::Error for BpfError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// bpf(2) with one of the `#[repr(C)]` attribute structs below, which the kernel reads (and
/// for some commands writes) `size_of::<A>()` bytes of. A struct shorter than the kernel's
/// `union bpf_attr` is fine: the kernel takes the rest as zero.
///
/// # Safety
/// `attr` must be the struct of command `cmd`, and every address in it must point to live
/// memory of the size the struct gives, writable where the kernel writes.
unsafe fn sys_bpf<A>(cmd: libc::c_int, attr: &mut A) -> io::Result<libc::c_long> {
    // SAFETY: the caller's contract; the kernel reads and writes within size_of::<A>() bytes
    // of `attr`, which is a live, exclusive borrow.
    let result = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut A, mem::size_of::<A>()) };
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

/// A descriptor bpf(2) returned, owned from here on.
fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: `fd` was just returned by the kernel as a new descriptor (maps and programs are
    // created with O_CLOEXEC), and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
}

/// The address of a buffer, as `union bpf_attr` carries it (`__aligned_u64`).
fn address<T>(p: *const T) -> u64 {
    p as usize as u64
}

/// `union bpf_attr` for BPF_MAP_CREATE, up to `map_name` (4.15).
#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

/// `union bpf_attr` for BPF_MAP_LOOKUP_ELEM.
#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// `union bpf_attr` for BPF_MAP_UPDATE_BATCH (5.6).
#[repr(C)]
#[derive(Default)]
struct MapBatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// `union bpf_attr` for BPF_PROG_LOAD, up to `expected_attach_type` (4.17).
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `union bpf_attr` for BPF_PROG_ATTACH and BPF_PROG_DETACH.
#[repr(C)]
#[derive(Default)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

#[cfg_attr(not(test), allow(dead_code))] // the tests query what is attached
/// `union bpf_attr` for BPF_PROG_QUERY, up to `prog_cnt`.
#[repr(C)]
#[derive(Default)]
struct ProgQueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

#[cfg_attr(not(test), allow(dead_code))] // the tests query what is attached
/// `union bpf_attr` for BPF_OBJ_GET_INFO_BY_FD.
#[repr(C)]
#[derive(Default)]
struct ObjInfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

#[cfg_attr(not(test), allow(dead_code))] // the tests query what is attached
/// The start of `struct bpf_prog_info`: the kernel fills no more than `info_len` asks for.
#[repr(C)]
#[derive(Default)]
struct ProgInfoHead {
    prog_type: u32,
    id: u32,
}

/// A name for `bpftool prog` and `bpftool map`: at most 15 bytes and a NUL.
fn object_name(name: &str) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    for (to, from) in bytes.iter_mut().zip(name.bytes().take(15)) {
        *to = from;
    }
    bytes
}

/// A map (`name` for `bpftool map` and errors).
pub struct Map {
    fd: OwnedFd,
    value_size: u32,
    per_cpu: bool,
}

impl Map {
    fn create(
        name: &'static str,
        map_type: u32,
        key_size: u32,
        value_size: u32,
        entries: u32,
    ) -> Result<Map, BpfError> {
        let map_flags = if map_type == BPF_MAP_TYPE_LPM_TRIE { BPF_F_NO_PREALLOC } else { 0 };
        let mut attr = MapCreateAttr {
            map_type,
            key_size,
            value_size,
            max_entries: entries,
            map_flags,
            map_name: object_name(name),
            ..MapCreateAttr::default()
        };
        // SAFETY: MapCreateAttr is BPF_MAP_CREATE's struct and carries no addresses.
        let fd =
            unsafe { sys_bpf(BPF_MAP_CREATE, &mut attr) }.map_err(|e| BpfError::new(Call::MapCreate, Some(name), e))?;
        Ok(Map { fd: owned(fd), value_size, per_cpu: map_type == BPF_MAP_TYPE_PERCPU_ARRAY })
    }

    /// The value at array index `key`, as u64s: for a per-CPU array one value per possible
    /// CPU, each rounded up to 8 bytes, as the kernel copies them out.
    fn lookup(&self, key: u32, possible_cpus: usize) -> Result<Vec<u64>, BpfError> {
        let words_per_value = (self.value_size as usize + 7) / 8;
        let copies = if self.per_cpu { possible_cpus } else { 1 };
        let mut value = vec![0u64; words_per_value * copies];
        let mut attr = MapElemAttr {
            map_fd: self.fd.as_raw_fd() as u32,
            key: address(&key),
            value: address(value.as_mut_ptr()),
            ..MapElemAttr::default()
        };
        // SAFETY: MapElemAttr is BPF_MAP_LOOKUP_ELEM's struct; `key` is the map's 4-byte key
        // and `value` has room for every copy the kernel writes (round_up(value_size, 8) per
        // possible CPU, `possible_cpus` being at least their number), both live until the call
        // returns.
        unsafe { sys_bpf(BPF_MAP_LOOKUP_ELEM, &mut attr) }.map_err(|e| BpfError::new(Call::MapLookupElem, None, e))?;
        Ok(value)
    }
}

impl Map {
    /// Sets `value` at each of `keys` (`name` for errors), each key as many bytes as the map's:
    /// in one call where the kernel has BPF_MAP_UPDATE_BATCH for the map, else one by one.
    fn update_all(&self, name: &'static str, keys: &[Vec<u8>], value: &[u8]) -> Result<(), BpfError> {
        assert_eq!(value.len(), self.value_size as usize, "a value of the map's size");
        let flat_keys: Vec<u8> = keys.concat();
        let values: Vec<u8> = value.repeat(keys.len());
        let mut attr = MapBatchAttr {
            keys: address(flat_keys.as_ptr()),
            values: address(values.as_ptr()),
            count: keys.len() as u32,
            map_fd: self.fd.as_raw_fd() as u32,
            ..MapBatchAttr::default()
        };
        // SAFETY: MapBatchAttr is BPF_MAP_UPDATE_BATCH's struct; `keys` and `values` point to
        // `count` keys and values of the map's sizes, laid end to end, live until the call
        // returns; the kernel writes back only `count`.
        match unsafe { sys_bpf(BPF_MAP_UPDATE_BATCH, &mut attr) } {
            Ok(_) => Ok(()),
            // Before 5.6, or a kernel without batches for this map type: one by one (also
            // whatever a failed batch left undone: an update sets, so repeating one is harmless).
            Err(_) => keys.iter().try_for_each(|key| self.update(name, key, value)),
        }
    }

    /// Sets the value at `key` (`name` for errors): each as many bytes as the map was made for.
    fn update(&self, name: &'static str, key: &[u8], value: &[u8]) -> Result<(), BpfError> {
        assert_eq!(value.len(), self.value_size as usize, "a value of the map's size");
        let mut attr = MapElemAttr {
            map_fd: self.fd.as_raw_fd() as u32,
            key: address(key.as_ptr()),
            value: address(value.as_ptr()),
            ..MapElemAttr::default()
        };
        // SAFETY: MapElemAttr is BPF_MAP_UPDATE_ELEM's struct; `key` and `value` point to as
        // many bytes as the map's key and value have (the caller's keys are built for the map,
        // the value's length is checked above) and live until the call returns.
        unsafe { sys_bpf(BPF_MAP_UPDATE_ELEM, &mut attr) }
            .map(drop)
            .map_err(|e| BpfError::new(Call::MapUpdateElem, Some(name), e))
    }
}

/// A loaded program.
pub struct Program {
    fd: OwnedFd,
    name: &'static str,
}

impl Program {
    /// Loads `insns` as a program of `prog_type`. The first try asks for no log (the verifier
    /// is faster without one); when it fails, the second asks for the log the error carries.
    fn load(name: &'static str, prog_type: u32, insns: &[Insn]) -> Result<Program, BpfError> {
        Program::load_for(name, prog_type, None, insns)
    }

    /// As [`Program::load`], for a program type that must name where it will be attached
    /// (cgroup sock_addr programs: connect, sendmsg).
    fn load_for(
        name: &'static str,
        prog_type: u32,
        attach_type: Option<AttachType>,
        insns: &[Insn],
    ) -> Result<Program, BpfError> {
        let quiet = Program::try_load(name, prog_type, attach_type, insns, None);
        let error = match quiet {
            Ok(fd) => return Ok(Program { fd, name }),
            Err(e) => e,
        };
        let mut log = vec![0u8; VERIFIER_LOG_BYTES];
        match Program::try_load(name, prog_type, attach_type, insns, Some(&mut log)) {
            // Loaded the second time (a transient failure, ENOMEM): take it.
            Ok(fd) => Ok(Program { fd, name }),
            Err(_) => {
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                let text = String::from_utf8_lossy(&log[..end]).into_owned();
                let mut error = BpfError::new(Call::ProgLoad, Some(name), error);
                error.verifier_log = Some(text).filter(|t| !t.trim().is_empty());
                Err(error)
            }
        }
    }

    fn try_load(
        name: &'static str,
        prog_type: u32,
        attach_type: Option<AttachType>,
        insns: &[Insn],
        log: Option<&mut [u8]>,
    ) -> Result<OwnedFd, io::Error> {
        // The kernel's licence check: only GPL-compatible programs may call the GPL-only
        // helpers, which these do not; damon is MIT.
        const LICENSE: &[u8] = b"MIT\0";
        let (log_level, log_size, log_buf) = match log {
            Some(buf) => (VERIFIER_LOG_LEVEL, buf.len() as u32, address(buf.as_mut_ptr())),
            None => (0, 0, 0),
        };
        let mut attr = ProgLoadAttr {
            prog_type,
            insn_cnt: insns.len() as u32,
            insns: address(insns.as_ptr()),
            license: address(LICENSE.as_ptr()),
            log_level,
            log_size,
            log_buf,
            prog_name: object_name(name),
            expected_attach_type: attach_type.map_or(0, |t| t as u32),
            ..ProgLoadAttr::default()
        };
        // SAFETY: ProgLoadAttr is BPF_PROG_LOAD's struct; `insns` points to `insn_cnt`
        // instructions of the kernel's 8-byte layout (Insn is #[repr(C)] of it), `license` to a
        // NUL-terminated string and `log_buf` (when set) to `log_size` writable bytes, all
        // borrowed for the duration of the call.
        unsafe { sys_bpf(BPF_PROG_LOAD, &mut attr) }.map(owned)
    }

    #[cfg_attr(not(test), allow(dead_code))] // the tests query what is attached
    /// The kernel's id of the program (what BPF_PROG_QUERY lists, and `bpftool prog` shows).
    pub fn id(&self) -> Result<u32, BpfError> {
        let mut info = ProgInfoHead::default();
        let mut attr = ObjInfoAttr {
            bpf_fd: self.fd.as_raw_fd() as u32,
            info_len: mem::size_of::<ProgInfoHead>() as u32,
            // A pointer from a mutable borrow: the kernel writes there.
            info: address(std::ptr::addr_of_mut!(info)),
        };
        // SAFETY: ObjInfoAttr is BPF_OBJ_GET_INFO_BY_FD's struct; `info` points to `info_len`
        // writable bytes, the start of struct bpf_prog_info, live until the call returns.
        unsafe { sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr) }
            .map_err(|e| BpfError::new(Call::ObjGetInfoByFd, Some(self.name), e))?;
        Ok(info.id)
    }

    /// Attaches the program to the group open as `group_fd` (`group` for errors), beside any
    /// other program there.
    fn attach(&self, group_fd: &OwnedFd, group: &Path, attach_type: AttachType) -> Result<(), BpfError> {
        let mut attr = ProgAttachAttr {
            target_fd: group_fd.as_raw_fd() as u32,
            attach_bpf_fd: self.fd.as_raw_fd() as u32,
            attach_type: attach_type as u32,
            attach_flags: BPF_F_ALLOW_MULTI,
        };
        // SAFETY: ProgAttachAttr is BPF_PROG_ATTACH's struct and carries no addresses.
        unsafe { sys_bpf(BPF_PROG_ATTACH, &mut attr) }
            .map(drop)
            .map_err(|e| BpfError::new(Call::ProgAttach, Some(self.name), e).on(group))
    }

    /// Detaches the program from the group: with BPF_F_ALLOW_MULTI the kernel needs to be told
    /// which program.
    fn detach(&self, group_fd: &OwnedFd, group: &Path, attach_type: AttachType) -> Result<(), BpfError> {
        let mut attr = ProgAttachAttr {
            target_fd: group_fd.as_raw_fd() as u32,
            attach_bpf_fd: self.fd.as_raw_fd() as u32,
            attach_type: attach_type as u32,
            attach_flags: 0,
        };
        // SAFETY: ProgAttachAttr is BPF_PROG_DETACH's struct and carries no addresses.
        unsafe { sys_bpf(BPF_PROG_DETACH, &mut attr) }
            .map(drop)
            .map_err(|e| BpfError::new(Call::ProgDetach, Some(self.name), e).on(group))
    }
}

#[cfg_attr(not(test), allow(dead_code))] // the tests query what is attached
/// The ids of the programs attached to the group itself (not those it inherits) at
/// `attach_type`.
pub fn attached_program_ids(group: &Path, attach_type: AttachType) -> Result<Vec<u32>, BpfError> {
    let group_fd = open_group(group)?;
    // Enough for any group in practice; the kernel says ENOSPC, with the count, if not.
    let mut ids = vec![0u32; 64];
    let mut attr = ProgQueryAttr {
        target_fd: group_fd.as_raw_fd() as u32,
        attach_type: attach_type as u32,
        prog_ids: address(ids.as_mut_ptr()),
        prog_cnt: ids.len() as u32,
        ..ProgQueryAttr::default()
    };
    // SAFETY: ProgQueryAttr is BPF_PROG_QUERY's struct; `prog_ids` points to `prog_cnt`
    // writable u32s, live until the call returns.
    unsafe { sys_bpf(BPF_PROG_QUERY, &mut attr) }.map_err(|e| BpfError::new(Call::ProgQuery, None, e).on(group))?;
    ids.truncate(attr.prog_cnt as usize);
    Ok(ids)
}

fn open_group(group: &Path) -> Result<OwnedFd, BpfError> {
    // A directory opens read-only; std adds O_CLOEXEC.
    File::open(group).map(OwnedFd::from).map_err(|e| BpfError::new(Call::OpenGroup, None, e).on(group))
}

// ---------------------------------------------------------------------------------------------
// Instructions

// Instruction classes, sizes, modes and operations (include/uapi/linux/bpf_common.h, bpf.h).
const BPF_LD: u8 = 0x00;
const BPF_LDX: u8 = 0x01;
const BPF_ST: u8 = 0x02;
const BPF_STX: u8 = 0x03;
const BPF_JMP: u8 = 0x05;
const BPF_ALU64: u8 = 0x07;
const BPF_W: u8 = 0x00;
const BPF_DW: u8 = 0x18;
const BPF_IMM: u8 = 0x00;
const BPF_MEM: u8 = 0x60;
/// BPF_XADD before 5.12: the same encoding, which BPF_ADD as `imm` keeps meaning.
const BPF_ATOMIC: u8 = 0xc0;
const BPF_K: u8 = 0x00;
const BPF_X: u8 = 0x08;
const BPF_ADD: u8 = 0x00;
const BPF_AND: u8 = 0x50;
const BPF_XOR: u8 = 0xa0;
const BPF_MOV: u8 = 0xb0;
const BPF_JEQ: u8 = 0x10;
const BPF_JNE: u8 = 0x50;
const BPF_JA: u8 = 0x00;
const BPF_JGT: u8 = 0x20;
const BPF_JGE: u8 = 0x30;
const BPF_ALU: u8 = 0x04;
const BPF_END: u8 = 0xd0;
const BPF_TO_BE: u8 = 0x08;
const BPF_CALL: u8 = 0x80;
const BPF_EXIT: u8 = 0x90;
/// In the source register of a 64-bit immediate load: `imm` is a map's descriptor, which the
/// kernel replaces with the map's address.
const BPF_PSEUDO_MAP_FD: u8 = 1;

/// A register: r0 the return value and the helpers' result, r1-r5 the arguments (the program
/// starts with its context in r1), r6-r9 kept across calls, r10 the frame pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reg(u8);

pub const R0: Reg = Reg(0);
pub const R1: Reg = Reg(1);
pub const R2: Reg = Reg(2);
pub const R3: Reg = Reg(3);
pub const R4: Reg = Reg(4);
pub const R5: Reg = Reg(5);
pub const R6: Reg = Reg(6);
pub const R7: Reg = Reg(7);
pub const R10: Reg = Reg(10);

/// `struct bpf_insn`: the opcode, the destination register in the low nibble and the source
/// in the high one (little-endian hosts, where the kernel's bit fields land so), an offset
/// and an immediate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

impl Insn {
    fn new(code: u8, dst: Reg, src: Reg, off: i16, imm: i32) -> Insn {
        #[cfg(target_endian = "little")]
        let regs = (src.0 << 4) | (dst.0 & 0x0f);
        #[cfg(target_endian = "big")]
        let regs = (dst.0 << 4) | (src.0 & 0x0f);
        Insn { code, regs, off, imm }
    }

    /// dst = src
    pub fn mov64_reg(dst: Reg, src: Reg) -> Insn {
        Insn::new(BPF_ALU64 | BPF_MOV | BPF_X, dst, src, 0, 0)
    }

    /// dst = imm (sign-extended)
    pub fn mov64_imm(dst: Reg, imm: i32) -> Insn {
        Insn::new(BPF_ALU64 | BPF_MOV | BPF_K, dst, R0, 0, imm)
    }

    /// *(u32 *)(dst + off) = src
    pub fn stx_w(dst: Reg, src: Reg, off: i16) -> Insn {
        Insn::new(BPF_STX | BPF_MEM | BPF_W, dst, src, off, 0)
    }

    /// (u32) dst = (u32) src, the upper half cleared
    pub fn mov32_reg(dst: Reg, src: Reg) -> Insn {
        Insn::new(BPF_ALU | BPF_MOV | BPF_X, dst, src, 0, 0)
    }

    /// (u32) dst ^= imm, the upper half cleared
    pub fn xor32_imm(dst: Reg, imm: u32) -> Insn {
        Insn::new(BPF_ALU | BPF_XOR | BPF_K, dst, R0, 0, imm as i32)
    }

    /// (u32) dst &= imm, the upper half cleared
    pub fn and32_imm(dst: Reg, imm: u32) -> Insn {
        Insn::new(BPF_ALU | BPF_AND | BPF_K, dst, R0, 0, imm as i32)
    }

    /// dst += imm (sign-extended)
    pub fn add64_imm(dst: Reg, imm: i32) -> Insn {
        Insn::new(BPF_ALU64 | BPF_ADD | BPF_K, dst, R0, 0, imm)
    }

    /// dst = map (the two slots of a 64-bit immediate load, the map's descriptor in the first)
    pub fn ld_map_fd(dst: Reg, map: &Map) -> [Insn; 2] {
        [
            Insn::new(BPF_LD | BPF_DW | BPF_IMM, dst, Reg(BPF_PSEUDO_MAP_FD), 0, map.fd.as_raw_fd()),
            Insn::new(0, R0, R0, 0, 0),
        ]
    }

    /// dst = *(u32 *)(src + off), zero-extended: a field of the context, or of memory
    pub fn ldx_w(dst: Reg, src: Reg, off: i16) -> Insn {
        Insn::new(BPF_LDX | BPF_MEM | BPF_W, dst, src, off, 0)
    }

    /// *(u32 *)(dst + off) = imm
    pub fn st_w(dst: Reg, off: i16, imm: i32) -> Insn {
        Insn::new(BPF_ST | BPF_MEM | BPF_W, dst, R0, off, imm)
    }

    /// if dst != imm skip `off` instructions
    pub fn jne_imm(dst: Reg, imm: i32, off: i16) -> Insn {
        Insn::new(BPF_JMP | BPF_JNE | BPF_K, dst, R0, off, imm)
    }

    /// if dst > imm (unsigned) skip `off` instructions
    pub fn jgt_imm(dst: Reg, imm: i32, off: i16) -> Insn {
        Insn::new(BPF_JMP | BPF_JGT | BPF_K, dst, R0, off, imm)
    }

    /// if dst >= imm (unsigned) skip `off` instructions
    pub fn jge_imm(dst: Reg, imm: i32, off: i16) -> Insn {
        Insn::new(BPF_JMP | BPF_JGE | BPF_K, dst, R0, off, imm)
    }

    /// dst = the low 16 bits of dst read as big-endian (network order to the host's)
    pub fn be16(dst: Reg) -> Insn {
        Insn::new(BPF_ALU | BPF_END | BPF_TO_BE, dst, R0, 0, 16)
    }

    /// skip `off` instructions
    pub fn ja(off: i16) -> Insn {
        Insn::new(BPF_JMP | BPF_JA, R0, R0, off, 0)
    }

    /// lock *(u64 *)(dst + off) += src
    pub fn atomic_add_dw(dst: Reg, src: Reg, off: i16) -> Insn {
        Insn::new(BPF_STX | BPF_ATOMIC | BPF_DW, dst, src, off, BPF_ADD as i32)
    }

    /// r0 = helper(r1, ..., r5)
    pub fn call(helper: i32) -> Insn {
        Insn::new(BPF_JMP | BPF_CALL, R0, R0, 0, helper)
    }

    /// if dst == imm skip `off` instructions
    pub fn jeq_imm(dst: Reg, imm: i32, off: i16) -> Insn {
        Insn::new(BPF_JMP | BPF_JEQ | BPF_K, dst, R0, off, imm)
    }

    /// Whether no path goes on to the next instruction: an exit or an unconditional jump.
    pub fn ends_a_path(&self) -> bool {
        self.code == BPF_JMP | BPF_EXIT || self.code == BPF_JMP | BPF_JA
    }

    /// return r0
    pub fn exit() -> Insn {
        Insn::new(BPF_JMP | BPF_EXIT, R0, R0, 0, 0)
    }
}

// ---------------------------------------------------------------------------------------------
// Network accounting

/// The counters' map: one entry per direction, each a [`Counter`].
///
/// A per-CPU array: every CPU adds to its own copy, so a busy workload's packets on different
/// CPUs do not fight over one cache line (systemd's IP accounting, a plain array, does); the
/// copies are summed when read. The adds are still atomic (`lock xadd` on a line the CPU owns,
/// uncontended): an egress program in a task can be interrupted on its CPU by a softirq that
/// sends for the same group (an ACK, a retransmission), whose add a plain load and store would
/// lose.
const ACCOUNTING_MAP: &str = "damon_net";
const INGRESS_KEY: u32 = 0;
const EGRESS_KEY: u32 = 1;
/// Bytes, then packets.
const COUNTER_BYTES: u32 = 16;
const COUNTER_PACKETS_OFFSET: i16 = 8;
/// `struct __sk_buff`'s `len`, the packet's length from its IP header on.
const SKB_LEN_OFFSET: i16 = 0;
/// What a cgroup skb program returns to let the packet through.
const PASS: i32 = 1;

/// Instructions that add the packet (the context in r6) to the counters at `key`, and go on
/// after them; r0-r5 are clobbered.
fn count_packet(map: &Map, key: u32) -> Vec<Insn> {
    let mut insns = vec![
        // The key, on the stack, its address in r2.
        Insn::st_w(R10, -4, key as i32),
        Insn::mov64_reg(R2, R10),
        Insn::add64_imm(R2, -4),
    ];
    insns.extend_from_slice(&Insn::ld_map_fd(R1, map));
    insns.extend_from_slice(&[
        Insn::call(BPF_FUNC_MAP_LOOKUP_ELEM),
        // No entry (cannot happen with an array of two, but the verifier asks): uncounted.
        Insn::jeq_imm(R0, 0, 4),
        Insn::ldx_w(R1, R6, SKB_LEN_OFFSET),
        Insn::atomic_add_dw(R0, R1, 0),
        Insn::mov64_imm(R1, 1),
        Insn::atomic_add_dw(R0, R1, COUNTER_PACKETS_OFFSET),
    ]);
    insns
}

/// Counting the bytes and packets a group's sockets receive and send: a program per direction
/// attached to the group, adding to a map damon reads. Dropped without [`detach`], the
/// programs stay on the group, counting for no one, until the group is removed.
///
/// [`detach`]: NetworkAccounting::detach
pub struct NetworkAccounting {
    #[cfg_attr(not(test), allow(dead_code))] // for detach
    group: PathBuf,
    #[cfg_attr(not(test), allow(dead_code))]
    group_fd: OwnedFd,
    map: Map,
    ingress: Program,
    egress: Program,
    /// The highest possible CPU's number + 1: how many copies a per-CPU value has at most.
    possible_cpus: usize,
}

impl NetworkAccounting {
    /// Loads the programs and attaches them to `cgroup_dir`, a directory of the cgroup2
    /// hierarchy. Sockets the group's processes create from now on are counted. (The backend
    /// attaches them with its network rules, through [`attach_network`].)
    #[cfg(test)]
    pub fn attach(cgroup_dir: &Path) -> Result<NetworkAccounting, BpfError> {
        let counting = attach_network(cgroup_dir, true, &crate::config::IpRules::default())?;
        Ok(counting.expect("counting was asked for"))
    }

    /// A fresh map of counters for [`count_packet`], and how many copies its values have.
    fn counters() -> Result<(Map, usize), BpfError> {
        let possible_cpus = possible_cpus().map_err(|e| BpfError::new(Call::PossibleCpus, None, e))?;
        Ok((Map::create(ACCOUNTING_MAP, BPF_MAP_TYPE_PERCPU_ARRAY, 4, COUNTER_BYTES, 2)?, possible_cpus))
    }

    /// The counters now, summed over the CPUs.
    pub fn read(&self) -> Result<NetworkTraffic, BpfError> {
        let rx = self.direction(INGRESS_KEY)?;
        let tx = self.direction(EGRESS_KEY)?;
        Ok(NetworkTraffic { received_bytes: rx.0, received_packets: rx.1, sent_bytes: tx.0, sent_packets: tx.1 })
    }

    /// (bytes, packets) of one direction.
    fn direction(&self, key: u32) -> Result<(u64, u64), BpfError> {
        let copies = self.map.lookup(key, self.possible_cpus).map_err(|mut e| {
            e.object = Some(ACCOUNTING_MAP);
            e
        })?;
        Ok(copies.chunks(2).fold((0, 0), |(bytes, packets), c| (bytes + c[0], packets + c[1])))
    }

    /// The programs' ids, ingress then egress.
    #[cfg_attr(not(test), allow(dead_code))] // the tests query what is attached
    pub fn program_ids(&self) -> Result<(u32, u32), BpfError> {
        Ok((self.ingress.id()?, self.egress.id()?))
    }

    /// Takes both programs off the group; the counters stop. (A run leaves them to go with
    /// its group.)
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn detach(self) -> Result<(), BpfError> {
        let ingress = self.ingress.detach(&self.group_fd, &self.group, AttachType::InetIngress);
        let egress = self.egress.detach(&self.group_fd, &self.group, AttachType::InetEgress);
        ingress.and(egress)
    }
}

/// The number of copies of a per-CPU value the kernel copies out: one per possible CPU, the
/// highest number in /sys/devices/system/cpu/possible + 1 (as libbpf counts; more than the
/// kernel's count if the numbers had gaps, which only leaves zeros at the end).
fn possible_cpus() -> io::Result<usize> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/possible")?;
    let cores = CpuCores::from_kernel_list(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok(cores.iter().max().map_or(1, |last| last as usize + 1))
}

/// Why damon cannot attach cgroup programs here, or `None` if it can: no cgroup2 hierarchy, no
/// bpf(2) in the kernel, or not allowed. Tries a one-entry map and a two-instruction program
/// of the accounting's type, which go when their descriptors close.
pub fn unavailable() -> Option<String> {
    match Hierarchies::read() {
        Ok(h) if h.v2.is_some() => {}
        Ok(_) => {
            return Some(
                "no cgroup2 hierarchy is mounted (cgroup programs attach to a cgroup2 group; on a v1 host \
                 systemd mounts one at /sys/fs/cgroup/unified)"
                    .to_string(),
            )
        }
        Err(e) => return Some(e.to_string()),
    }
    let why = |e: BpfError| match e.source.raw_os_error() {
        Some(libc::ENOSYS) => "the kernel has no bpf(2) (CONFIG_BPF_SYSCALL)".to_string(),
        Some(libc::EINVAL) if e.call == Call::ProgLoad => {
            format!("{} (cgroup skb programs need CONFIG_CGROUP_BPF)", e)
        }
        _ => e.to_string(),
    };
    if let Err(e) = Map::create("damon_probe", BPF_MAP_TYPE_ARRAY, 4, 8, 1) {
        return Some(why(e));
    }
    // The map alone may be allowed unprivileged (kernel.unprivileged_bpf_disabled=0) where a
    // cgroup program is not.
    let pass = [Insn::mov64_imm(R0, PASS), Insn::exit()];
    Program::load("damon_probe", BPF_PROG_TYPE_CGROUP_SKB, &pass).err().map(why)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    // What the programs count is tested end to end in tests/network.rs (a loopback transfer
    // against TCP_INFO's bytes sent), on every architecture the VMs run.

    #[test]
    fn instructions_are_the_kernels_eight_bytes() {
        assert_eq!(mem::size_of::<Insn>(), 8);
        // lock *(u64 *)(r0 + 8) += r1, as the kernel's BPF_ATOMIC_OP(BPF_DW, BPF_ADD, ...) has it.
        let insn = Insn::atomic_add_dw(R0, R1, 8);
        assert_eq!((insn.code, insn.off, insn.imm), (0xdb, 8, 0));
        #[cfg(target_endian = "little")]
        assert_eq!(insn.regs, 0x10);
    }

    /// A group of its own under the cgroup2 mount, removed when dropped.
    struct TestGroup {
        dir: PathBuf,
    }

    impl TestGroup {
        /// `None` (the test prints why and passes) where there is no cgroup2 hierarchy.
        fn create() -> Option<TestGroup> {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let v2 = match Hierarchies::read().expect("read the cgroup hierarchies").v2 {
                Some(v2) => v2,
                None => {
                    eprintln!("skipped: no cgroup2 hierarchy is mounted");
                    return None;
                }
            };
            let name = format!("damon-bpf-test-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
            let dir = v2.mount_point.join(name);
            std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("create {}: {}", dir.display(), e));
            Some(TestGroup { dir })
        }
    }

    impl Drop for TestGroup {
        fn drop(&mut self) {
            if let Err(e) = std::fs::remove_dir(&self.dir) {
                eprintln!("cannot remove {}: {}", self.dir.display(), e);
            }
        }
    }

    #[test]
    fn bpf_is_available_here() {
        // The tests run as root on a kernel with cgroup BPF; elsewhere this names why not.
        if Hierarchies::read().expect("read the cgroup hierarchies").v2.is_none() {
            eprintln!("skipped: no cgroup2 hierarchy is mounted");
            return;
        }
        if let Some(why) = unavailable() {
            panic!("cgroup BPF unavailable: {}", why);
        }
    }

    #[test]
    fn a_rejected_program_carries_the_verifiers_log() {
        // r0 is never set: the verifier refuses to return it.
        let error = match Program::load("damon_bad", BPF_PROG_TYPE_CGROUP_SKB, &[Insn::exit()]) {
            Ok(_) => panic!("the verifier accepted a program returning an unset r0"),
            Err(e) => e,
        };
        assert_eq!(error.call, Call::ProgLoad);
        assert_eq!(error.source.raw_os_error(), Some(libc::EACCES), "{}", error);
        let text = error.to_string();
        assert!(text.starts_with("BPF_PROG_LOAD of damon_bad failed: "), "{}", text);
        assert!(text.contains("R0 !read_ok"), "no verifier log in: {}", text);
    }

    #[test]
    fn the_programs_are_attached_to_the_group_until_detached() {
        let group = match TestGroup::create() {
            Some(g) => g,
            None => return,
        };
        let accounting = NetworkAccounting::attach(&group.dir).unwrap_or_else(|e| panic!("{}", e));
        let (rx_id, tx_id) = accounting.program_ids().unwrap();
        assert_eq!(attached_program_ids(&group.dir, AttachType::InetIngress).unwrap(), vec![rx_id]);
        assert_eq!(attached_program_ids(&group.dir, AttachType::InetEgress).unwrap(), vec![tx_id]);
        accounting.detach().unwrap();
        assert_eq!(attached_program_ids(&group.dir, AttachType::InetIngress).unwrap(), Vec::<u32>::new());
        assert_eq!(attached_program_ids(&group.dir, AttachType::InetEgress).unwrap(), Vec::<u32>::new());
    }

    #[test]
    fn a_directory_outside_cgroup2_is_refused_naming_the_call() {
        let hierarchies = Hierarchies::read().expect("read the cgroup hierarchies");
        let v1 = hierarchies.v1.first().map(|h| h.mount_point.clone());
        for dir in Some(PathBuf::from("/proc")).into_iter().chain(v1) {
            let error = match NetworkAccounting::attach(&dir) {
                Ok(_) => panic!("attached to {}", dir.display()),
                Err(e) => e,
            };
            assert_eq!(error.call, Call::ProgAttach, "{}", error);
            let text = error.to_string();
            assert!(
                text.starts_with(&format!("BPF_PROG_ATTACH of damon_net_rx on {} failed", dir.display())),
                "{}",
                text
            );
            assert!(text.contains("not a directory of the cgroup2 hierarchy"), "{}", text);
        }
    }
}
