//! The workload's network rules as cgroup BPF programs on its group: DAMON_BIND_PORTS
//! ([`attach_bind_ports`]), and DAMON_IP_ALLOW and DAMON_IP_DENY with systemd's semantics
//! (IPAddressAllow=, IPAddressDeny=; its src/core/bpf-firewall.c): a packet to or from an
//! allowed address passes, else one to or from a denied address is dropped, else it passes.
//!
//! Each list is a pair of LPM tries (IPv4, IPv6) that the programs look the address up in:
//! - cgroup skb programs on ingress (the source address) and egress (the destination), which
//!   drop what the lists refuse, whatever the socket (TCP, UDP, ICMP, raw);
//! - cgroup sock_addr programs on connect() and on a UDP send to an address, which refuse it
//!   with EPERM, so that a program fails at once instead of waiting for a timeout.
//!
//! Once attached, the programs (and through them the tries) are held by the group: they go
//! when it is removed, by damon at its end or by its guard, and nothing of damon's needs to
//! keep them.

use std::net::IpAddr;
use std::path::Path;

use super::{
    open_group, AttachType, BpfError, Insn, Map, Program, BPF_FUNC_MAP_LOOKUP_ELEM, BPF_FUNC_SKB_LOAD_BYTES,
    BPF_MAP_TYPE_LPM_TRIE, BPF_PROG_TYPE_CGROUP_SKB, BPF_PROG_TYPE_CGROUP_SOCK_ADDR, PASS, R0, R1, R10, R2, R3, R4, R6,
};
use crate::config::{IpPrefix, IpRules, PortRange};

/// The value of an entry: the tries are sets, the value says nothing.
const PRESENT: [u8; 1] = [1];
/// What a program returns to drop a packet, or to refuse a connect() or send with EPERM.
const REFUSE: i32 = 0;

/// The key of an LPM trie, on the program's stack: `prefixlen` (u32), then the address in
/// network order. 24 bytes below the frame pointer, room for an IPv6 key (20 bytes).
const KEY: i16 = -24;
const KEY_ADDRESS: i16 = KEY + 4;

/// `struct __sk_buff`'s `protocol`: the packet's EtherType, in network order.
const SKB_PROTOCOL: i16 = 16;
/// `struct bpf_sock_addr`'s `user_ip4` and `user_ip6[4]`: the address connect() or sendmsg()
/// was given, in network order.
const SOCK_ADDR_USER_IP4: i16 = 4;
const SOCK_ADDR_USER_IP6: i16 = 8;
/// `struct bpf_sock_addr`'s `user_port`: the port bind() was given, network order in the low
/// 16 bits.
const SOCK_ADDR_USER_PORT: i16 = 24;

/// One IP version's side: its tries, key, EtherType and where the addresses are in its header.
struct Family {
    allow: Map,
    deny: Map,
    /// Bits of an address.
    bits: u32,
    /// EtherType as `__sk_buff.protocol` holds it (network order in a native u32).
    ether_type: i32,
    /// Offsets in the IP header: of the source, of the destination.
    source: i32,
    destination: i32,
}

impl Family {
    fn address_bytes(&self) -> i32 {
        (self.bits / 8) as i32
    }
}

/// Loads the lists' tries and programs and attaches them to `cgroup_dir` (a directory of the
/// cgroup2 hierarchy). Everything the group's processes send or receive from now on is judged.
pub fn attach_ip_rules(cgroup_dir: &Path, rules: &IpRules) -> Result<(), BpfError> {
    let v4 = Family {
        allow: trie("damon_allow4", 32, &rules.allow, false)?,
        deny: trie("damon_deny4", 32, &rules.deny, false)?,
        bits: 32,
        ether_type: i32::from(0x0800u16.to_be()),
        source: 12,
        destination: 16,
    };
    let v6 = Family {
        allow: trie("damon_allow6", 128, &rules.allow, true)?,
        deny: trie("damon_deny6", 128, &rules.deny, true)?,
        bits: 128,
        ether_type: i32::from(0x86ddu16.to_be()),
        source: 8,
        destination: 24,
    };
    let programs = [
        (
            Program::load("damon_ip_in", BPF_PROG_TYPE_CGROUP_SKB, &packet_filter(&v4, &v6, Direction::Ingress))?,
            AttachType::InetIngress,
        ),
        (
            Program::load("damon_ip_out", BPF_PROG_TYPE_CGROUP_SKB, &packet_filter(&v4, &v6, Direction::Egress))?,
            AttachType::InetEgress,
        ),
        sock_addr("damon_connect4", AttachType::Inet4Connect, &v4)?,
        sock_addr("damon_connect6", AttachType::Inet6Connect, &v6)?,
        sock_addr("damon_sendmsg4", AttachType::Udp4Sendmsg, &v4)?,
        sock_addr("damon_sendmsg6", AttachType::Udp6Sendmsg, &v6)?,
    ];
    attach_all(cgroup_dir, &programs)
}

/// The trie of a list's prefixes of one IP version (`bits`). IPv4 prefixes are also put in the
/// IPv6 trie as IPv4-mapped addresses (::ffff:a.b.c.d), which an IPv6 socket connects to an
/// IPv4 address with.
fn trie(name: &'static str, bits: u32, list: &[IpPrefix], v6: bool) -> Result<Map, BpfError> {
    let keys: Vec<Vec<u8>> = list
        .iter()
        .filter_map(|prefix| match (prefix.addr, v6) {
            (IpAddr::V4(a), false) => Some(key(u32::from(prefix.len), &a.octets())),
            (IpAddr::V4(a), true) => Some(key(96 + u32::from(prefix.len), &a.to_ipv6_mapped().octets())),
            (IpAddr::V6(a), true) => Some(key(u32::from(prefix.len), &a.octets())),
            (IpAddr::V6(_), false) => None,
        })
        .collect();
    // An empty list is an empty trie: a map has at least one entry's room.
    let map = Map::create(name, BPF_MAP_TYPE_LPM_TRIE, 4 + bits / 8, PRESENT.len() as u32, keys.len().max(1) as u32)?;
    for key in &keys {
        map.update(name, key, &PRESENT)?;
    }
    Ok(map)
}

/// An LPM trie's key: `struct bpf_lpm_trie_key`, the prefix length in host order, then the
/// address.
fn key(prefix_len: u32, address: &[u8]) -> Vec<u8> {
    let mut key = prefix_len.to_ne_bytes().to_vec();
    key.extend_from_slice(address);
    key
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Ingress,
    Egress,
}

/// A place in a program that jumps name before it is known.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Label {
    V4,
    V6,
    Pass,
    Refuse,
}

/// A program being written: instructions, and jumps to labels resolved by [`Assembler::finish`].
#[derive(Default)]
struct Assembler {
    insns: Vec<Insn>,
    /// (index of a jump, where it goes)
    jumps: Vec<(usize, Label)>,
    labels: Vec<(Label, usize)>,
}

impl Assembler {
    fn push(&mut self, insns: &[Insn]) {
        self.insns.extend_from_slice(insns);
    }

    fn label(&mut self, label: Label) {
        self.labels.push((label, self.insns.len()));
    }

    /// `jump` (written with offset 0) gets its offset once `to` is placed.
    fn jump(&mut self, jump: Insn, to: Label) {
        self.jumps.push((self.insns.len(), to));
        self.insns.push(jump);
    }

    fn finish(mut self) -> Vec<Insn> {
        for (at, to) in &self.jumps {
            let target = self.labels.iter().find(|(l, _)| l == to).map(|(_, i)| *i).expect("every label is placed");
            // An offset counts from the instruction after the jump.
            self.insns[*at].off = (target as isize - *at as isize - 1) as i16;
        }
        self.insns
    }

    /// Looks the key on the stack up in the family's lists: allowed passes, denied is
    /// refused, neither passes.
    fn judge(&mut self, family: &Family) {
        for (map, found) in [(&family.allow, Label::Pass), (&family.deny, Label::Refuse)] {
            self.push(&Insn::ld_map_fd(R1, map));
            self.push(&[
                Insn::mov64_reg(R2, R10),
                Insn::add64_imm(R2, i32::from(KEY)),
                Insn::call(BPF_FUNC_MAP_LOOKUP_ELEM),
            ]);
            self.jump(Insn::jne_imm(R0, 0, 0), found);
        }
        self.jump(Insn::ja(0), Label::Pass);
    }

    /// The two ends every program has.
    fn verdicts(&mut self) {
        self.label(Label::Pass);
        self.push(&[Insn::mov64_imm(R0, PASS), Insn::exit()]);
        self.label(Label::Refuse);
        self.push(&[Insn::mov64_imm(R0, REFUSE), Insn::exit()]);
    }
}

/// The cgroup skb program of one direction: the packet's source (ingress) or destination
/// (egress) address, read from its IP header with bpf_skb_load_bytes, judged by the lists.
/// A packet of neither IP version, or too short to hold the address, passes.
fn packet_filter(v4: &Family, v6: &Family, direction: Direction) -> Vec<Insn> {
    let mut program = Assembler::default();
    // The context into r6, which calls keep.
    program.push(&[Insn::mov64_reg(R6, R1), Insn::ldx_w(R2, R6, SKB_PROTOCOL)]);
    program.jump(Insn::jeq_imm(R2, v4.ether_type, 0), Label::V4);
    program.jump(Insn::jeq_imm(R2, v6.ether_type, 0), Label::V6);
    program.jump(Insn::ja(0), Label::Pass);
    for (family, label) in [(v4, Label::V4), (v6, Label::V6)] {
        let offset = if direction == Direction::Ingress { family.source } else { family.destination };
        program.label(label);
        program.push(&[
            Insn::st_w(R10, KEY, family.bits as i32),
            // bpf_skb_load_bytes(skb, offset, the key's address part, its length)
            Insn::mov64_reg(R1, R6),
            Insn::mov64_imm(R2, offset),
            Insn::mov64_reg(R3, R10),
            Insn::add64_imm(R3, i32::from(KEY_ADDRESS)),
            Insn::mov64_imm(R4, family.address_bytes()),
            Insn::call(BPF_FUNC_SKB_LOAD_BYTES),
        ]);
        program.jump(Insn::jne_imm(R0, 0, 0), Label::Pass);
        program.judge(family);
    }
    program.verdicts();
    program.finish()
}

/// The cgroup sock_addr program at `attach_type` (connect or UDP send of one IP version): the
/// address the call was given, judged by the lists; refused is EPERM for the caller.
fn sock_addr(name: &'static str, attach_type: AttachType, family: &Family) -> Result<(Program, AttachType), BpfError> {
    let mut program = Assembler::default();
    program.push(&[Insn::mov64_reg(R6, R1), Insn::st_w(R10, KEY, family.bits as i32)]);
    let (field, words) = if family.bits == 32 { (SOCK_ADDR_USER_IP4, 1) } else { (SOCK_ADDR_USER_IP6, 4) };
    // The context's address fields are read 4 bytes at a time, as the verifier allows.
    for word in 0..words {
        program.push(&[Insn::ldx_w(R2, R6, field + 4 * word), Insn::stx_w(R10, R2, KEY_ADDRESS + 4 * word)]);
    }
    program.judge(family);
    program.verdicts();
    let insns = program.finish();
    Ok((Program::load_for(name, BPF_PROG_TYPE_CGROUP_SOCK_ADDR, Some(attach_type), &insns)?, attach_type))
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
    program.verdicts();
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
    attach_all(cgroup_dir, &programs)
}

/// Attaches each program at its place, or none of them.
fn attach_all(cgroup_dir: &Path, programs: &[(Program, AttachType)]) -> Result<(), BpfError> {
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
    Ok(())
}
