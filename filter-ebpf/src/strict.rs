//! Strict mode's decision table (docs/policy.md, "Strict mode"): the
//! provider's rules plus what a host needs to stay reachable, and nothing
//! else. Rows 1-4 are guard's; this adds essential traffic, replies to the
//! host's own flows, the operator's rules, and the two drop reasons.
use aya_ebpf::helpers::{bpf_jiffies64, bpf_ktime_get_coarse_ns};
use filter_common::{
    flow_gate_open, flow_gate_slot, flow_idle_ns, reply_slot, rule_port, FlowKey, FlowKeyV4,
    Policy, Reason, ReplySlot, FLAG_PING, REPLY_FAMILY_V4, REPLY_FAMILY_V6, TICK_MAX_NS,
};

use crate::{
    maps::{FLOWS_V4, FLOWS_V6, FLOW_GATE, REPLY_CACHE},
    media::{self, admitted},
    parse::{
        destination, dport, icmp_id, sport, v4_address, Packet, Parsed, ICMP_FULL, ICMP_HEAD,
        IPPROTO_UDP,
    },
    policy::{media, signalling},
    rules::matches,
};

const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_ECHO_REQUEST: u8 = 8;
const ICMPV6_ECHO_REQUEST: u8 = 128;
const ICMPV6_ECHO_REPLY: u8 = 129;

/// `bytes` (the frame's length) is counted against a source that goes
/// over its rate limit. The caller has ruled out a banned source
/// ([`crate::policy::source_banned`]), as in guard mode.
#[inline(always)]
pub fn decide(
    pkt: Packet,
    parsed: &Parsed,
    policy: &Policy,
    generation: u32,
    bytes: u64,
) -> Reason {
    match *parsed {
        Parsed::NonIp => Reason::NonIp,
        Parsed::Malformed => Reason::Malformed,
        Parsed::Fragment { .. } => Reason::Fragment,
        Parsed::Ports {
            v6,
            proto,
            ports,
            src,
            rtp_like,
            l3,
        } => {
            let dport = dport(ports);
            if policy.is_sig_port(dport) {
                return signalling(v6, src, policy, generation, bytes);
            }
            let udp = proto == IPPROTO_UDP;
            if udp && policy.is_rtp_port(dport) {
                if media::calls_mode(policy) && !admitted(dport, src, policy) {
                    return Reason::RtpUnsolicited;
                }
                return media(src, rtp_like, policy, bytes);
            }
            let sport = sport(ports);
            // DHCP's server-to-client direction, v4 and v6.
            if udp && ((sport == 67 && dport == 68) || (sport == 547 && dport == 546)) {
                return Reason::Essential;
            }
            if let Some(dst) = destination(pkt, v6, l3) {
                if is_reply(v6, src, dst, ports, proto as u32) {
                    return Reason::Reply;
                }
            }
            if rule_port(&policy.rule_ports, dport)
                && rule_allows(policy, v6, proto as u32, dport, src)
            {
                return Reason::RuleAllowed;
            }
            if udp && policy.is_provider_rtp_port(sport) {
                return Reason::RtpOutside;
            }
            Reason::Denied
        }
        Parsed::OtherProto {
            v6,
            proto,
            src,
            l3,
            icmp,
        } => {
            // The parser read ICMP's type when its 4-byte head (type, code,
            // checksum) is within the IP packet, an echo's identifier when
            // its 8-byte header is.
            if icmp & ICMP_HEAD != 0 {
                let kind = icmp as u8;
                if essential_icmp(v6, kind, policy) {
                    return Reason::Essential;
                }
                let echo_reply = if v6 {
                    kind == ICMPV6_ECHO_REPLY
                } else {
                    kind == ICMP_ECHO_REPLY
                };
                if echo_reply && icmp & ICMP_FULL != 0 {
                    if let Some(dst) = destination(pkt, v6, l3) {
                        let ports = u32::from(icmp_id(icmp)) << 16;
                        if is_reply(v6, src, dst, ports, proto as u32) {
                            return Reason::Reply;
                        }
                    }
                }
            }
            if rule_allows(policy, v6, proto as u32, 0, src) {
                return Reason::RuleAllowed;
            }
            Reason::Denied
        }
    }
}

/// ICMP errors (path MTU discovery), neighbour discovery, router
/// messages and MLD, and echo requests when pings are allowed.
#[inline(always)]
fn essential_icmp(v6: bool, kind: u8, policy: &Policy) -> bool {
    let ping = policy.flags & FLAG_PING != 0;
    if v6 {
        matches!(kind, 1..=4 | 130..=137 | 143) || (ping && kind == ICMPV6_ECHO_REQUEST)
    } else {
        matches!(kind, 3 | 11 | 12) || (ping && kind == ICMP_ECHO_REQUEST)
    }
}

/// Whether the host has sent on this flow recently enough: an incoming
/// packet from `src` to `dst` whose ports (as loaded, source first) and
/// protocol are those of a flow the egress program learnt. The flow gate
/// answers first: a closed slot (a stranger's packet, nearly always)
/// means no fresh flow, with one array read. Behind an open slot, a flow
/// in this CPU's reply cache slot costs a compare and a jiffies read
/// (inlined, no helper call); otherwise the flow map of its family
/// decides and the slot takes the flow.
#[inline(always)]
fn is_reply(v6: bool, src: [u64; 2], dst: [u64; 2], ports: u32, proto: u32) -> bool {
    let gate = if v6 {
        flow_gate_slot(src[0] ^ src[1], dst[0] ^ dst[1], ports, proto)
    } else {
        flow_gate_slot(
            u64::from(v4_address(src)),
            u64::from(v4_address(dst)),
            ports,
            proto,
        )
    };
    // SAFETY: a helper without preconditions (the verifier inlines it as
    // a load of jiffies_64).
    let now_jiffies = unsafe { bpf_jiffies64() };
    if !gate_open(gate, now_jiffies) {
        return false;
    }
    let Some(slot) = REPLY_CACHE.get_ptr_mut(reply_slot(src, dst, ports)) else {
        return false;
    };
    // SAFETY: a per-CPU slot of the array: no other CPU writes it, and the
    // program does not run twice at once on one CPU.
    let slot = unsafe { &mut *slot };
    // The family goes into the cached key: the address words of an IPv4
    // flow and of an IPv6 packet between IPv4-mapped addresses are equal.
    let family = if v6 { REPLY_FAMILY_V6 } else { REPLY_FAMILY_V4 };
    let cached = &slot.key;
    if cached.remote == src
        && cached.local == dst
        && cached.ports == ports
        && cached.proto == proto | family
        // Signed: a slot whose time is up, or never set (0), is not used.
        && (slot.until_jiffies.wrapping_sub(now_jiffies) as i64) > 0
    {
        return true;
    }
    look_up_flow(slot, now_jiffies, v6, src, dst, ports, proto)
}

/// The cache missed: whether the flow map holds the flow, still fresh; if
/// so the cache slot takes it, for the time it has left counted in the
/// longest jiffies (so the slot runs out before the flow does).
#[inline(always)]
fn look_up_flow(
    slot: &mut ReplySlot,
    now_jiffies: u64,
    v6: bool,
    src: [u64; 2],
    dst: [u64; 2],
    ports: u32,
    proto: u32,
) -> bool {
    let seen = if v6 {
        let key = FlowKey {
            remote: src,
            local: dst,
            ports,
            proto,
        };
        // SAFETY: a lookup by a key of the map's own type.
        unsafe { FLOWS_V6.get(key) }
    } else {
        let key = FlowKeyV4 {
            remote: v4_address(src),
            local: v4_address(dst),
            ports,
            proto,
        };
        // SAFETY: as above.
        unsafe { FLOWS_V4.get(key) }
    };
    let Some(seen) = seen else {
        return false;
    };
    // SAFETY: a helper without preconditions.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    // Signed: a time a little ahead of this CPU's clock is fresh.
    let left = seen
        .last_out_ns
        .wrapping_add(flow_idle_ns(proto))
        .wrapping_sub(now) as i64;
    if left <= 0 {
        return false;
    }
    slot.key = FlowKey {
        remote: src,
        local: dst,
        ports,
        proto: proto | if v6 { REPLY_FAMILY_V6 } else { REPLY_FAMILY_V4 },
    };
    slot.until_jiffies = now_jiffies + left as u64 / TICK_MAX_NS;
    true
}

/// Whether the flow gate's slot `slot` is open (see
/// `filter_common::flow_gate_slot`).
#[inline(always)]
fn gate_open(slot: u32, now_jiffies: u64) -> bool {
    match FLOW_GATE.get(slot) {
        Some(value) => flow_gate_open(*value, now_jiffies),
        // Outside the array (never: the slot is masked): ask the map.
        None => true,
    }
}

/// Whether a `[[strict.allow]]` entry matches: protocol, destination port
/// (0 for protocols without ports, which only `icmp` and `any` entries
/// cover) and source prefix.
#[inline(always)]
fn rule_allows(policy: &Policy, v6: bool, proto: u32, dport: u16, src: [u64; 2]) -> bool {
    matches(&policy.rules, policy.rule_count, v6, proto, dport, src)
}
