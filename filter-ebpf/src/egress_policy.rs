//! Strict egress's decision table (docs/policy.md, "Egress"): what the host
//! may send. The provider's outbound rules (signalling to the allowlist,
//! media to its media ports), answers to what ingress lets in, what a host
//! needs to keep working, and the operator's `[[egress.allow]]` rules.
//! First match wins; the caller counts and drops.
use filter_common::{rule_candidates, rule_port, EgressPolicy, OutReason, Policy, FLAG_PING};

use aya_ebpf::{bindings::__sk_buff, programs::TcContext};

use crate::{
    maps::{EGRESS_POLICY, EGRESS_SCRATCH, POLICY},
    media::{self, admitted_out},
    parse::{
        destination, dport, parse, sport, Packet, Parsed, ICMP_HEAD, IPPROTO_TCP, IPPROTO_UDP,
    },
    policy::allowlisted,
    rules::{covers, matches, matches_among},
};

const ICMP_ECHO_REPLY: u8 = 0;
/// `[egress] dns`'s port: its entries are UDP and TCP to it.
const DNS_PORT: u16 = 53;
const ICMPV6_ECHO_REPLY: u8 = 129;

/// What the egress program needs of an outgoing packet, as plain scalars
/// taken from the parser's result in one place: the decision and the flow
/// learning work from this alone, without touching the packet again.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Outbound {
    /// `CLASS_*`.
    pub class: u32,
    /// 1 for IPv6.
    pub v6: u32,
    /// IP protocol.
    pub proto: u32,
    /// Source then destination port as loaded (see `parse::sport`).
    pub ports: u32,
    /// Source and destination, as `Parsed::Ports::src` holds a source.
    pub src: [u64; 2],
    pub dst: [u64; 2],
    /// ICMP's header as the parser hands it over (`Parsed::OtherProto::icmp`:
    /// `parse::ICMP_HEAD` and the type, `parse::ICMP_FULL` and the echo
    /// identifier); 0 otherwise.
    pub icmp: u32,
    pub reserved: u32,
}

/// The parser's result as the egress program's parse function hands it
/// over (see [`sipwall_egress_parse`]): plain numbers, the offsets
/// included.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Headers {
    /// `CLASS_*`.
    class: u32,
    v6: u32,
    proto: u32,
    ports: u32,
    src: [u64; 2],
    /// Offset of the IP header.
    l3: u32,
    /// As `Parsed::OtherProto::icmp`.
    icmp: u32,
}

/// Parses the packet of `skb` into this CPU's `EGRESS_SCRATCH` slot, by
/// the policy's `flags` (from the IP header on an L3 device, whose packets
/// have no link header); returns 1 when its headers are malformed (maybe only beyond the
/// linear part of the skb), else 0. A global function: the verifier checks it
/// once, with nothing known of the packet, rather than as part of every
/// path through the program; and the parser's many ways through the
/// headers end here, in a handful of stores.
#[no_mangle]
#[inline(never)]
pub extern "C" fn sipwall_egress_parse(skb: *mut __sk_buff, flags: u32) -> u32 {
    let Some(slot) = EGRESS_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    let ctx = TcContext::new(skb);
    let parsed = parse(Packet::new(ctx.data(), ctx.data_end()), flags);
    let (class, v6, proto, ports, src, l3, icmp) = match parsed {
        Parsed::NonIp => (CLASS_NON_IP, false, 0, 0, [0; 2], 0, 0),
        Parsed::Malformed => (CLASS_DENIED, false, 0, 0, [0; 2], 0, 0),
        Parsed::Fragment { .. } => (CLASS_FRAGMENT, false, 0, 0, [0; 2], 0, 0),
        Parsed::Ports {
            v6,
            proto,
            ports,
            src,
            l3,
            ..
        } => (CLASS_PORTS, v6, proto, ports, src, l3, 0),
        Parsed::OtherProto {
            v6,
            proto,
            src,
            l3,
            icmp,
        } => (CLASS_OTHER, v6, proto, 0, src, l3, icmp),
    };
    // SAFETY: this CPU's slot of a per-CPU array; the program does not
    // run twice at once on one CPU.
    unsafe {
        *slot = Headers {
            class,
            v6: u32::from(v6),
            proto: u32::from(proto),
            ports,
            src,
            l3: l3 as u32,
            icmp,
        }
    };
    u32::from(class == CLASS_DENIED)
}

/// Farthest IP header offset [`Outbound::of`] reads at (bounds an offset
/// read back from a map for the verifier; two VLAN tags put it at 22).
const MAX_HEADER_OFFSET: usize = 0x6000;

pub const CLASS_NON_IP: u32 = 0;
pub const CLASS_DENIED: u32 = 1;
pub const CLASS_FRAGMENT: u32 = 2;
pub const CLASS_PORTS: u32 = 3;
pub const CLASS_OTHER: u32 = 4;
const NO_ICMP_TYPE: u32 = 256;

impl Outbound {
    /// The packet's outbound facts from its parsed headers.
    #[inline(always)]
    pub fn of(pkt: Packet, h: &Headers) -> Outbound {
        let Headers {
            class,
            v6,
            proto,
            ports,
            src,
            l3,
            icmp,
        } = *h;
        let l3 = l3 as usize;
        if (class != CLASS_PORTS && class != CLASS_OTHER) || l3 > MAX_HEADER_OFFSET {
            return Outbound::only(class);
        }
        let v6 = v6 != 0;
        let Some(dst) = destination(pkt, v6, l3) else {
            return Outbound::only(CLASS_DENIED);
        };
        Outbound {
            class,
            v6: u32::from(v6),
            proto,
            ports,
            src,
            dst,
            icmp,
            reserved: 0,
        }
    }

    /// The outbound facts of a packet the fast paths read
    /// (`Parsed::Ports`); `None` for anything else.
    #[inline(always)]
    pub fn of_ports(pkt: Packet, parsed: &Parsed) -> Option<Outbound> {
        let Parsed::Ports {
            v6,
            proto,
            ports,
            src,
            l3,
            ..
        } = *parsed
        else {
            return None;
        };
        Some(Outbound {
            class: CLASS_PORTS,
            v6: u32::from(v6),
            proto: u32::from(proto),
            ports,
            src,
            dst: destination(pkt, v6, l3)?,
            icmp: 0,
            reserved: 0,
        })
    }

    /// Whether it is UDP or TCP to or from a signalling port: what calls
    /// mode copies for the reader.
    #[inline(always)]
    pub fn is_signalling(&self, policy: &Policy) -> bool {
        self.class == CLASS_PORTS
            && (self.proto == IPPROTO_UDP as u32 || self.proto == IPPROTO_TCP as u32)
            && (policy.is_sig_port(sport(self.ports)) || policy.is_sig_port(dport(self.ports)))
    }

    #[inline(always)]
    fn only(class: u32) -> Outbound {
        Outbound {
            class,
            v6: 0,
            proto: 0,
            ports: 0,
            src: [0; 2],
            dst: [0; 2],
            icmp: 0,
            reserved: 0,
        }
    }
}

impl Outbound {
    /// Judges the packet: see [`sipwall_egress_decide`].
    #[inline(always)]
    pub fn decide(&self, generation: u32) -> u32 {
        let icmp_type = if self.icmp & ICMP_HEAD != 0 {
            self.icmp & 0xff
        } else {
            NO_ICMP_TYPE
        };
        let head = u64::from(self.class)
            | u64::from(self.v6 & 1) << 8
            | u64::from(self.proto) << 16
            | u64::from(icmp_type) << 32;
        // Volatile reads: every argument a defined scalar on every path, as
        // the verifier requires of a global function's arguments.
        // SAFETY: reads of this struct's own fields.
        let (dst_hi, dst_lo) = unsafe {
            (
                core::ptr::read_volatile(&self.dst[0]),
                core::ptr::read_volatile(&self.dst[1]),
            )
        };
        sipwall_egress_decide(head, u64::from(self.ports), dst_hi, dst_lo, generation)
    }
}

impl Outbound {
    /// Judges a packet of the fast paths (`CLASS_PORTS`) in place, with
    /// the policy records the caller holds: as [`Outbound::decide`]
    /// without the call.
    #[inline(always)]
    pub fn decide_ports(&self, policy: &Policy, egress: &EgressPolicy, generation: u32) -> u32 {
        decide(
            CLASS_PORTS,
            self.v6 != 0,
            self.proto,
            self.ports,
            self.dst,
            NO_ICMP_TYPE,
            policy,
            egress,
            generation & 1,
        ) as u32
    }
}

/// The decision, as an [`OutReason`]'s `u32`. A global function with
/// scalar arguments only: the verifier checks it once, on its own, rather
/// than once for every way the parser can reach it (which exceeds its
/// budget). `head` packs the class, IPv6, protocol and ICMP type.
#[no_mangle]
#[inline(never)]
pub extern "C" fn sipwall_egress_decide(
    head: u64,
    ports: u64,
    dst_hi: u64,
    dst_lo: u64,
    generation: u32,
) -> u32 {
    let generation = generation & 1;
    let (Some(policy), Some(egress)) = (POLICY.get(generation), EGRESS_POLICY.get(generation))
    else {
        return OutReason::NonIp as u32;
    };
    decide(
        head as u8 as u32,
        (head >> 8) & 1 != 0,
        (head >> 16) as u8 as u32,
        ports as u32,
        [dst_hi, dst_lo],
        (head >> 32) as u32 & 0x1ff,
        policy,
        egress,
        generation,
    ) as u32
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn decide(
    class: u32,
    v6: bool,
    proto: u32,
    ports: u32,
    dst: [u64; 2],
    icmp_type: u32,
    policy: &Policy,
    egress: &EgressPolicy,
    generation: u32,
) -> OutReason {
    if class == CLASS_NON_IP {
        return OutReason::NonIp;
    }
    if class == CLASS_FRAGMENT {
        return OutReason::Fragment;
    }
    if class == CLASS_PORTS {
        let (sport, dport) = (sport(ports), dport(ports));
        if policy.is_sig_port(dport) {
            return if allowlisted(v6, dst, policy, generation) {
                OutReason::SipAllowed
            } else {
                OutReason::SipDenied
            };
        }
        let udp = proto == IPPROTO_UDP as u32;
        // Calls mode: this host's media leaves only to its calls.
        if udp && media::calls_mode(policy) && policy.is_rtp_port(sport) {
            return if admitted_out(sport, dst, policy) {
                OutReason::RtpAllowed
            } else {
                OutReason::Denied
            };
        }
        if udp && policy.is_provider_rtp_port(dport) {
            return OutReason::RtpAllowed;
        }
        // Answers: from a signalling port back to the allowlist, media
        // from this host's RTP ports, and from a ruled port back to the
        // rule's sources.
        // Each table is walked only when its port bitmap holds the port.
        if (policy.is_sig_port(sport) && allowlisted(v6, dst, policy, generation))
            || (udp && policy.is_rtp_port(sport))
            || (rule_port(&policy.rule_ports, sport)
                && matches(&policy.rules, policy.rule_count, v6, proto, sport, dst))
        {
            return OutReason::Reply;
        }
        // DNS (UDP or TCP to port 53) to the configured resolvers; the
        // DHCP client, v4 and v6.
        if (dport == DNS_PORT
            && (udp || proto == IPPROTO_TCP as u32)
            && covers(&egress.dns, egress.dns_count, v6, dst))
            || (udp && ((sport == 68 && dport == 67) || (sport == 546 && dport == 547)))
        {
            return OutReason::Essential;
        }
        if matches_among(
            &egress.rules,
            rule_candidates(&egress.rule_index, dport),
            v6,
            proto,
            dport,
            dst,
        ) {
            return OutReason::RuleAllowed;
        }
        return OutReason::Denied;
    }
    if class != CLASS_OTHER {
        return OutReason::Denied;
    }
    let echo_reply = if v6 {
        ICMPV6_ECHO_REPLY
    } else {
        ICMP_ECHO_REPLY
    };
    if icmp_type == echo_reply as u32 && policy.flags & FLAG_PING != 0 {
        return OutReason::Reply;
    }
    if matches(&policy.rules, policy.rule_count, v6, proto, 0, dst) {
        return OutReason::Reply;
    }
    if icmp_type != NO_ICMP_TYPE && essential_icmp(v6, icmp_type as u8) {
        return OutReason::Essential;
    }
    if matches(&egress.rules, egress.rule_count, v6, proto, 0, dst) {
        return OutReason::RuleAllowed;
    }
    OutReason::Denied
}

/// ICMP errors (path MTU discovery), neighbour discovery, router messages
/// and MLD.
#[inline(always)]
fn essential_icmp(v6: bool, kind: u8) -> bool {
    if v6 {
        matches!(kind, 1..=4 | 130..=137 | 143)
    } else {
        matches!(kind, 3 | 11 | 12)
    }
}
