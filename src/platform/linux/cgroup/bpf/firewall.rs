//! The programs on the workload's group: one cgroup skb program per direction that judges each
//! packet by DAMON_IP_ALLOW and DAMON_IP_DENY and counts what passes (either part may be
//! absent), connect programs that refuse a refused address at the call, and bind programs for
//! DAMON_BIND_PORTS ([`attach_bind_ports`]).
//!
//! The lists have systemd's semantics (IPAddressAllow=, IPAddressDeny=; its
//! src/core/bpf-firewall.c): a packet to or from an allowed address passes, else one to or
//! from a denied address is dropped, else it passes. Each list is a set per IP version (made
//! only for a version the list has), which the programs look the address up in: a hash set
//! looked up once per prefix length the list has, where it has few ([`MAX_HASHED_LENGTHS`]),
//! else an LPM trie as systemd's. A trie's entries are allocated one by one as they are added,
//! which made a list of 100 prefixes cost a launch 0.13 ms more than a preallocated hash set.
//! (Compiling the prefixes into the programs instead, with no map, was tried: the verifier's
//! and the JIT's work on 100 prefixes cost a launch more than the tries' updates, and the
//! per-packet scan cost loopback throughput 9%.)
//!
//! Refusing:
//! - the skb programs drop what the lists refuse, whatever the socket (TCP, UDP, ICMP, raw):
//!   a UDP send then fails with EPERM, as the kernel returns a cgroup's egress drop to the
//!   sender; a TCP SYN would be retried until its timeout, so
//! - connect programs (IPv4, IPv6 with IPv4-mapped addresses judged as IPv4) refuse a
//!   connect() to a refused address with EPERM at once.
//!
//! Once attached, the programs (and through them the sets) are held by the group: they go
//! when it is removed, by damon at its end or by its guard, and nothing of damon's needs to
//! keep them but the counters' map, which damon reads.

use std::net::IpAddr;
use std::path::Path;

use super::{
    count_packet, open_group, AttachType, BpfError, Insn, Map, NetworkAccounting, Program, BPF_FUNC_MAP_LOOKUP_ELEM,
    BPF_FUNC_SKB_LOAD_BYTES, BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_LPM_TRIE, BPF_PROG_TYPE_CGROUP_SKB,
    BPF_PROG_TYPE_CGROUP_SOCK_ADDR, EGRESS_KEY, INGRESS_KEY, PASS, R0, R1, R10, R2, R3, R4, R5, R6, R7,
};
use crate::config::{IpPrefix, IpRules, PortRange};

/// What a program returns to drop a packet, or to refuse a connect() or bind() with EPERM.
const REFUSE: i32 = 0;

/// `struct __sk_buff`'s `protocol`: the packet's EtherType, in network order.
const SKB_PROTOCOL: i16 = 16;
/// `struct bpf_sock_addr`'s `user_ip4` and `user_ip6[4]`: the address connect() was given, in
/// network order; `user_port`: the port bind() was given, network order in the low 16 bits.
const SOCK_ADDR_USER_IP4: i16 = 4;
const SOCK_ADDR_USER_IP6: i16 = 8;
const SOCK_ADDR_USER_PORT: i16 = 24;
/// The key of an LPM trie, on the program's stack: `prefixlen` (u32), then the address in
/// network order (16 bytes for IPv6). The whole address is kept here.
const KEY: i16 = -24;
const KEY_ADDRESS: i16 = KEY + 4;
/// A hash set's key, laid out alike: the address cut to one of the set's lengths.
const CUT_KEY: i16 = KEY - 24;
const CUT_KEY_ADDRESS: i16 = CUT_KEY + 4;
/// The value of a set's entry: it says nothing.
const PRESENT: [u8; 1] = [1];

/// The IP versions, with where their addresses are in a packet's header.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Version {
    V4,
    V6,
}

impl Version {
    fn bits(self) -> i32 {
        32 * self.words() as i32
    }

    fn words(self) -> usize {
        match self {
            Version::V4 => 1,
            Version::V6 => 4,
        }
    }

    /// EtherType as `__sk_buff.protocol` holds it (network order in a native u32).
    fn ether_type(self) -> i32 {
        i32::from(
            match self {
                Version::V4 => 0x0800u16,
                Version::V6 => 0x86ddu16,
            }
            .to_be(),
        )
    }

    /// Offset in the IP header of the source (ingress) or destination (egress) address.
    fn address_offset(self, direction: Direction) -> i32 {
        match (self, direction) {
            (Version::V4, Direction::Ingress) => 12,
            (Version::V4, Direction::Egress) => 16,
            (Version::V6, Direction::Ingress) => 8,
            (Version::V6, Direction::Egress) => 24,
        }
    }

    /// The masks that cut an address of this version to `length` bits, one per 32-bit word as
    /// the address's bytes (network order) read into a native u32.
    fn masks(self, length: u8) -> impl Iterator<Item = u32> {
        (0..self.words() as u32).map(move |word| {
            let kept = u32::from(length).saturating_sub(32 * word).min(32);
            let mask = if kept == 0 { 0 } else { u32::MAX << (32 - kept) };
            u32::from_ne_bytes(mask.to_be_bytes())
        })
    }

    fn of(prefix: &IpPrefix) -> Version {
        if prefix.addr.is_ipv4() {
            Version::V4
        } else {
            Version::V6
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Ingress,
    Egress,
}

/// A place in a program that jumps name before it is known.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Label {
    Pass,
    Refuse,
    V6,
    Local(usize),
}

/// A program being written: instructions, and jumps to labels resolved by [`Assembler::finish`].
/// Every jump goes forward. The verifier refuses a program with an instruction no path
/// reaches, so what follows an unconditional jump or an exit is left out until a label that
/// some jump goes to (the refusing end of a program that never refuses: counting alone, or
/// an allow list without a deny list).
struct Assembler {
    insns: Vec<Insn>,
    /// (index of a jump, where it goes)
    jumps: Vec<(usize, Label)>,
    labels: Vec<(Label, usize)>,
    locals: usize,
    reachable: bool,
}

impl Default for Assembler {
    fn default() -> Assembler {
        Assembler { insns: Vec::new(), jumps: Vec::new(), labels: Vec::new(), locals: 0, reachable: true }
    }
}

impl Assembler {
    fn push(&mut self, insns: &[Insn]) {
        for insn in insns {
            if !self.reachable {
                return;
            }
            self.insns.push(*insn);
            self.reachable = !insn.ends_a_path();
        }
    }

    fn local(&mut self) -> Label {
        self.locals += 1;
        Label::Local(self.locals)
    }

    fn label(&mut self, label: Label) {
        self.reachable |= self.jumps.iter().any(|(_, to)| *to == label);
        self.labels.push((label, self.insns.len()));
    }

    /// `jump` (written with offset 0) gets its offset once `to` is placed.
    fn jump(&mut self, jump: Insn, to: Label) {
        if self.reachable {
            self.jumps.push((self.insns.len(), to));
        }
        self.push(&[jump]);
    }

    fn finish(mut self) -> Vec<Insn> {
        for (at, to) in &self.jumps {
            let target = self.labels.iter().find(|(l, _)| l == to).map(|(_, i)| *i).expect("every label is placed");
            // An offset counts from the instruction after the jump.
            self.insns[*at].off = (target as isize - *at as isize - 1) as i16;
        }
        self.insns
    }

    /// The lists' verdict on the address in the key on the stack, of `version`: allowed
    /// passes, denied is refused, neither passes. r0-r5 are clobbered.
    fn judge(&mut self, lists: &Lists, version: Version) {
        let (allow, deny) = lists.of(version);
        for (set, found) in [(allow, Label::Pass), (deny, Label::Refuse)] {
            match set {
                None => {}
                Some(PrefixSet::Trie(trie)) => {
                    // The longest prefix of the address: its whole length.
                    self.push(&[Insn::st_w(R10, KEY, version.bits())]);
                    self.look_up(trie, KEY, found);
                }
                Some(PrefixSet::ByLength { map, lengths }) => {
                    // The address cut to each length the set has, with that length, in a
                    // second key (the first keeps the whole address).
                    for &length in lengths {
                        self.push(&[Insn::st_w(R10, CUT_KEY, i32::from(length))]);
                        for (word, mask) in version.masks(length).enumerate() {
                            let offset = 4 * word as i16;
                            self.push(&[
                                Insn::ldx_w(R3, R10, KEY_ADDRESS + offset),
                                Insn::and32_imm(R3, mask),
                                Insn::stx_w(R10, R3, CUT_KEY_ADDRESS + offset),
                            ]);
                        }
                        self.look_up(map, CUT_KEY, found);
                    }
                }
            }
        }
        self.jump(Insn::ja(0), Label::Pass);
    }

    /// If the key at `key` on the stack is in `map`, on to `found`. r0-r5 are clobbered.
    fn look_up(&mut self, map: &Map, key: i16, found: Label) {
        self.push(&Insn::ld_map_fd(R1, map));
        self.push(&[
            Insn::mov64_reg(R2, R10),
            Insn::add64_imm(R2, i32::from(key)),
            Insn::call(BPF_FUNC_MAP_LOOKUP_ELEM),
        ]);
        self.jump(Insn::jne_imm(R0, 0, 0), found);
    }
}

/// The most distinct prefix lengths a list of one IP version may have to be kept as a hash set,
/// looked up once per length; more and it is an LPM trie, looked up once. Filling a trie costs
/// a launch about 1.3 µs per prefix (each entry allocated as it is added), a preallocated hash
/// set 0.15 µs. A packet's lookup costs about 7 ns per length in the hash set, and 4 (a miss
/// near the root) to 50 ns (a hit) in a trie of 100 prefixes (BPF_PROG_TEST_RUN on the host's
/// 6.18): at this bound the two cost a packet about the same.
const MAX_HASHED_LENGTHS: usize = 4;

/// A list's prefixes of one IP version, as the programs look an address up in them.
enum PrefixSet {
    /// The prefixes, host bits cleared, in a hash map, and the lengths they have.
    ByLength { map: Map, lengths: Vec<u8> },
    /// The prefixes in an LPM trie.
    Trie(Map),
}

impl PrefixSet {
    /// The set of `list`'s prefixes of `version`, or `None` if it has none.
    fn new(name: &'static str, list: &[IpPrefix], version: Version) -> Result<Option<PrefixSet>, BpfError> {
        let prefixes: Vec<&IpPrefix> = list.iter().filter(|p| Version::of(p) == version).collect();
        // struct bpf_lpm_trie_key, which the hash set's keys share: the prefix length in host
        // order, then the address (its host bits cleared by the configuration).
        let mut keys: Vec<Vec<u8>> = prefixes
            .iter()
            .map(|prefix| {
                let mut key = u32::from(prefix.len).to_ne_bytes().to_vec();
                match prefix.addr {
                    IpAddr::V4(a) => key.extend_from_slice(&a.octets()),
                    IpAddr::V6(a) => key.extend_from_slice(&a.octets()),
                }
                key
            })
            .collect();
        if keys.is_empty() {
            return Ok(None);
        }
        keys.sort_unstable();
        keys.dedup();
        let mut lengths: Vec<u8> = prefixes.iter().map(|p| p.len).collect();
        lengths.sort_unstable();
        lengths.dedup();
        let key_size = 4 + version.bits() as u32 / 8;
        let hashed = lengths.len() <= MAX_HASHED_LENGTHS;
        let map_type = if hashed { BPF_MAP_TYPE_HASH } else { BPF_MAP_TYPE_LPM_TRIE };
        let map = Map::create(name, map_type, key_size, PRESENT.len() as u32, keys.len() as u32)?;
        map.update_all(name, &keys, &PRESENT)?;
        Ok(Some(if hashed { PrefixSet::ByLength { map, lengths } } else { PrefixSet::Trie(map) }))
    }
}

/// The lists' sets, one per list and IP version that has a prefix.
struct Lists {
    allow4: Option<PrefixSet>,
    deny4: Option<PrefixSet>,
    allow6: Option<PrefixSet>,
    deny6: Option<PrefixSet>,
}

impl Lists {
    fn new(rules: &IpRules) -> Result<Lists, BpfError> {
        Ok(Lists {
            allow4: PrefixSet::new("damon_allow4", &rules.allow, Version::V4)?,
            deny4: PrefixSet::new("damon_deny4", &rules.deny, Version::V4)?,
            allow6: PrefixSet::new("damon_allow6", &rules.allow, Version::V6)?,
            deny6: PrefixSet::new("damon_deny6", &rules.deny, Version::V6)?,
        })
    }

    fn of(&self, version: Version) -> (Option<&PrefixSet>, Option<&PrefixSet>) {
        match version {
            Version::V4 => (self.allow4.as_ref(), self.deny4.as_ref()),
            Version::V6 => (self.allow6.as_ref(), self.deny6.as_ref()),
        }
    }

    fn any(&self, version: Version) -> bool {
        let (allow, deny) = self.of(version);
        allow.is_some() || deny.is_some()
    }
}

/// The cgroup skb program of one direction: the packet judged by the lists (by its source on
/// ingress, its destination on egress, read from its IP header with bpf_skb_load_bytes), then,
/// if it passes, counted at `counter`. A packet of neither IP version, or too short to hold
/// the address, passes.
fn packet_program(direction: Direction, lists: &Lists, counter: Option<(&Map, u32)>) -> Vec<Insn> {
    let mut program = Assembler::default();
    // The context into r6, which calls keep.
    program.push(&[Insn::mov64_reg(R6, R1)]);
    if lists.any(Version::V4) || lists.any(Version::V6) {
        program.push(&[Insn::ldx_w(R2, R6, SKB_PROTOCOL)]);
        program.jump(Insn::jeq_imm(R2, Version::V6.ether_type(), 0), Label::V6);
        program.jump(Insn::jne_imm(R2, Version::V4.ether_type(), 0), Label::Pass);
        for version in [Version::V4, Version::V6] {
            if version == Version::V6 {
                program.label(Label::V6);
            }
            if !lists.any(version) {
                program.jump(Insn::ja(0), Label::Pass);
                continue;
            }
            // The key's address: bpf_skb_load_bytes(skb, offset, the key's address part, its
            // length).
            program.push(&[
                Insn::mov64_reg(R1, R6),
                Insn::mov64_imm(R2, version.address_offset(direction)),
                Insn::mov64_reg(R3, R10),
                Insn::add64_imm(R3, i32::from(KEY_ADDRESS)),
                Insn::mov64_imm(R4, version.bits() / 8),
                Insn::call(BPF_FUNC_SKB_LOAD_BYTES),
            ]);
            program.jump(Insn::jne_imm(R0, 0, 0), Label::Pass);
            program.judge(lists, version);
        }
    }
    program.label(Label::Pass);
    if let Some((map, key)) = counter {
        program.push(&count_packet(map, key));
    }
    program.push(&[Insn::mov64_imm(R0, PASS), Insn::exit()]);
    program.label(Label::Refuse);
    program.push(&[Insn::mov64_imm(R0, REFUSE), Insn::exit()]);
    program.finish()
}

/// The cgroup connect program of one IP version: the address connect() was given, judged by
/// the lists; refused is EPERM for the caller. An IPv6 socket connecting to an IPv4-mapped
/// address (::ffff:a.b.c.d) reaches an IPv4 address, and is judged as one.
fn connect_program(version: Version, lists: &Lists) -> Vec<Insn> {
    let mut program = Assembler::default();
    let words = &[R2, R4, R5, R7][..version.words()];
    let field = if version == Version::V4 { SOCK_ADDR_USER_IP4 } else { SOCK_ADDR_USER_IP6 };
    // The context's address fields are read 4 bytes at a time, as the verifier allows, before
    // any call clobbers r1.
    for (i, word) in words.iter().enumerate() {
        program.push(&[Insn::ldx_w(*word, R1, field + 4 * i as i16)]);
    }
    if version == Version::V6 {
        let native = program.local();
        let mapped_prefix = [0u32, 0, u32::from_ne_bytes([0, 0, 0xff, 0xff])];
        for (word, expected) in words.iter().zip(mapped_prefix) {
            program.push(&[Insn::mov32_reg(R3, *word), Insn::xor32_imm(R3, expected)]);
            program.jump(Insn::jne_imm(R3, 0, 0), native);
        }
        program.push(&[Insn::stx_w(R10, R7, KEY_ADDRESS)]);
        program.judge(lists, Version::V4);
        program.label(native);
    }
    for (i, word) in words.iter().enumerate() {
        program.push(&[Insn::stx_w(R10, *word, KEY_ADDRESS + 4 * i as i16)]);
    }
    program.judge(lists, version);
    program.label(Label::Pass);
    program.push(&[Insn::mov64_imm(R0, PASS), Insn::exit()]);
    program.label(Label::Refuse);
    program.push(&[Insn::mov64_imm(R0, REFUSE), Insn::exit()]);
    program.finish()
}

/// Loads and attaches to `cgroup_dir` (a directory of the cgroup2 hierarchy) the packet
/// programs, judging by `rules` and counting if `counting`, and the connect programs where
/// `rules` has any prefix. Returns the counters, if counting.
pub fn attach_network(
    cgroup_dir: &Path,
    counting: bool,
    rules: &IpRules,
) -> Result<Option<NetworkAccounting>, BpfError> {
    let counters = if counting { Some(NetworkAccounting::counters()?) } else { None };
    let map = counters.as_ref().map(|(map, _)| map);
    let lists = Lists::new(rules)?;
    let ingress = Program::load(
        "damon_net_rx",
        BPF_PROG_TYPE_CGROUP_SKB,
        &packet_program(Direction::Ingress, &lists, map.map(|m| (m, INGRESS_KEY))),
    )?;
    let egress = Program::load(
        "damon_net_tx",
        BPF_PROG_TYPE_CGROUP_SKB,
        &packet_program(Direction::Egress, &lists, map.map(|m| (m, EGRESS_KEY))),
    )?;
    let mut programs = vec![(ingress, AttachType::InetIngress), (egress, AttachType::InetEgress)];
    if rules.any() {
        for (name, version, attach_type) in [
            ("damon_connect4", Version::V4, AttachType::Inet4Connect),
            ("damon_connect6", Version::V6, AttachType::Inet6Connect),
        ] {
            let insns = connect_program(version, &lists);
            programs.push((
                Program::load_for(name, BPF_PROG_TYPE_CGROUP_SOCK_ADDR, Some(attach_type), &insns)?,
                attach_type,
            ));
        }
    }
    let group_fd = attach_all(cgroup_dir, &programs)?;
    Ok(counters.map(|(map, possible_cpus)| {
        let mut programs = programs.into_iter().map(|(program, _)| program);
        let (ingress, egress) = (programs.next().expect("ingress"), programs.next().expect("egress"));
        NetworkAccounting { group: cgroup_dir.to_path_buf(), group_fd, map, ingress, egress, possible_cpus }
    }))
}

/// DAMON_BIND_PORTS on the group at `cgroup_dir`: a cgroup sock_addr program on bind() of each
/// IP version lets a bind to one of `ports`, or to port 0 (the kernel picks an ephemeral one,
/// as it does for an outgoing connection, which calls no bind hook), and refuses any other with
/// EPERM.
pub fn attach_bind_ports(cgroup_dir: &Path, ports: &[PortRange]) -> Result<(), BpfError> {
    let mut program = Assembler::default();
    program.push(&[Insn::ldx_w(R2, R1, SOCK_ADDR_USER_PORT), Insn::be16(R2)]);
    program.jump(Insn::jeq_imm(R2, 0, 0), Label::Pass);
    for range in ports {
        // Above the range: on to the next; else at or above its first port: allowed.
        program.push(&[Insn::jgt_imm(R2, i32::from(range.last), 1)]);
        program.jump(Insn::jge_imm(R2, i32::from(range.first), 0), Label::Pass);
    }
    program.jump(Insn::ja(0), Label::Refuse);
    program.label(Label::Pass);
    program.push(&[Insn::mov64_imm(R0, PASS), Insn::exit()]);
    program.label(Label::Refuse);
    program.push(&[Insn::mov64_imm(R0, REFUSE), Insn::exit()]);
    let insns = program.finish();
    let programs = [
        (
            Program::load_for("damon_bind4", BPF_PROG_TYPE_CGROUP_SOCK_ADDR, Some(AttachType::Inet4Bind), &insns)?,
            AttachType::Inet4Bind,
        ),
        (
            Program::load_for("damon_bind6", BPF_PROG_TYPE_CGROUP_SOCK_ADDR, Some(AttachType::Inet6Bind), &insns)?,
            AttachType::Inet6Bind,
        ),
    ];
    attach_all(cgroup_dir, &programs).map(drop)
}

/// Attaches each program at its place, or none of them; returns the group's descriptor.
fn attach_all(cgroup_dir: &Path, programs: &[(Program, AttachType)]) -> Result<std::os::unix::io::OwnedFd, BpfError> {
    let group_fd = open_group(cgroup_dir)?;
    for (i, (program, attach_type)) in programs.iter().enumerate() {
        if let Err(e) = program.attach(&group_fd, cgroup_dir, *attach_type) {
            // Half the rules would mislead: the ones attached come off again.
            for (attached, attached_type) in &programs[..i] {
                let _ = attached.detach(&group_fd, cgroup_dir, *attached_type);
            }
            return Err(e);
        }
    }
    Ok(group_fd)
}

#[cfg(test)]
mod tests {
    use super::Version;

    /// The masks as the address's bytes they keep.
    fn masks(version: Version, length: u8) -> Vec<[u8; 4]> {
        version.masks(length).map(u32::to_ne_bytes).collect()
    }

    #[test]
    fn a_mask_keeps_the_prefix_length_in_network_order() {
        assert_eq!(masks(Version::V4, 0), [[0, 0, 0, 0]]);
        assert_eq!(masks(Version::V4, 12), [[0xff, 0xf0, 0, 0]]);
        assert_eq!(masks(Version::V4, 31), [[0xff, 0xff, 0xff, 0xfe]]);
        assert_eq!(masks(Version::V4, 32), [[0xff; 4]]);
        assert_eq!(masks(Version::V6, 48), [[0xff; 4], [0xff, 0xff, 0, 0], [0; 4], [0; 4]]);
        assert_eq!(masks(Version::V6, 127), [[0xff; 4], [0xff; 4], [0xff; 4], [0xff, 0xff, 0xff, 0xfe]]);
    }
}
