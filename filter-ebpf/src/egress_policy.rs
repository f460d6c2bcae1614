//! Strict egress's decision table (docs/policy.md, "Egress"): what the host
//! may send. The provider's outbound rules (signalling to the allowlist,
//! media to its media ports), answers to what ingress lets in, what a host
//! needs to keep working, and the operator's `[[egress.allow]]` rules.
//! First match wins; the caller counts and drops.
use filter_common::{
    EgressPolicy, OutReason, Policy, Reason, StrictRule, FLAG_PING, RULE_ANY_PROTO,
};

use crate::{
    parse::{destination, dport, sport, Packet, Parsed, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_UDP},
    policy::signalling,
};

const ICMP_ECHO_REPLY: u8 = 0;
const ICMPV6_ECHO_REPLY: u8 = 129;

#[inline(always)]
pub fn decide(
    pkt: Packet,
    parsed: &Parsed,
    policy: &Policy,
    egress: &EgressPolicy,
    generation: u32,
) -> OutReason {
    match *parsed {
        Parsed::NonIp => OutReason::NonIp,
        // The host's own stack does not build these; a raw socket might.
        Parsed::Malformed => OutReason::Denied,
        Parsed::Fragment => OutReason::Fragment,
        Parsed::Ports {
            v6,
            proto,
            ports,
            l3,
            ..
        } => {
            let Some(dst) = destination(pkt, v6, l3) else {
                return OutReason::Denied;
            };
            let (sport, dport) = (sport(ports), dport(ports));
            if policy.is_sig_port(dport) {
                return match signalling(v6, dst, policy, generation) {
                    Reason::SipAllowed => OutReason::SipAllowed,
                    _ => OutReason::SipDenied,
                };
            }
            let udp = proto == IPPROTO_UDP;
            if udp && policy.is_provider_rtp_port(dport) {
                return OutReason::RtpAllowed;
            }
            // Answers: from a signalling port back to the allowlist, media
            // from this host's RTP ports, and from a ruled port back to
            // the rule's sources.
            if (policy.is_sig_port(sport)
                && signalling(v6, dst, policy, generation) == Reason::SipAllowed)
                || (udp && policy.is_rtp_port(sport))
                || matches(&policy.rules, policy.rule_count, proto as u32, sport, dst)
            {
                return OutReason::Reply;
            }
            // DNS to the configured resolvers; the DHCP client, v4 and v6.
            if matches(&egress.dns, egress.dns_count, proto as u32, dport, dst)
                || (udp && ((sport == 68 && dport == 67) || (sport == 546 && dport == 547)))
            {
                return OutReason::Essential;
            }
            if matches(&egress.rules, egress.rule_count, proto as u32, dport, dst) {
                return OutReason::RuleAllowed;
            }
            OutReason::Denied
        }
        Parsed::OtherProto {
            v6,
            proto,
            l3,
            l4,
            end,
            ..
        } => {
            let Some(dst) = destination(pkt, v6, l3) else {
                return OutReason::Denied;
            };
            let icmp = if v6 {
                proto == IPPROTO_ICMPV6
            } else {
                proto == IPPROTO_ICMP
            };
            // ICMP's type, when its 4-byte head is within the IP packet.
            let kind = match pkt.load::<u32>(l4) {
                Some(head) if icmp && l4 + 4 <= end => Some(head as u8),
                _ => None,
            };
            let echo_reply = if v6 {
                ICMPV6_ECHO_REPLY
            } else {
                ICMP_ECHO_REPLY
            };
            if kind == Some(echo_reply) && policy.flags & FLAG_PING != 0 {
                return OutReason::Reply;
            }
            if matches(&policy.rules, policy.rule_count, proto as u32, 0, dst) {
                return OutReason::Reply;
            }
            if let Some(kind) = kind {
                if essential_icmp(v6, kind) {
                    return OutReason::Essential;
                }
            }
            if matches(&egress.rules, egress.rule_count, proto as u32, 0, dst) {
                return OutReason::RuleAllowed;
            }
            OutReason::Denied
        }
    }
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

/// Whether one of the first `count` entries matches: protocol, port (0 for
/// protocols without ports) and the remote address (`addr & mask == net`,
/// word by word). Serves the `[[strict.allow]]` rules turned around (the
/// local port is the rule's, the destination its source), the resolvers
/// and the `[[egress.allow]]` rules.
#[inline(always)]
fn matches<const N: usize>(
    entries: &[StrictRule; N],
    count: u32,
    proto: u32,
    port: u16,
    addr: [u64; 2],
) -> bool {
    let n = count as usize;
    for i in 0..N {
        if i >= n {
            break;
        }
        let r = &entries[i];
        if (r.proto == RULE_ANY_PROTO || r.proto == proto)
            && port >= r.port_first
            && port <= r.port_last
            && addr[0] & r.mask[0] == r.net[0]
            && addr[1] & r.mask[1] == r.net[1]
        {
            return true;
        }
    }
    false
}
