//! An independent userspace model of strict egress (docs/policy.md,
//! "Egress"), written from the contract, not from the kernel code: the
//! egress differential test runs random outgoing frames through it and
//! through the TC egress program and requires the same verdict and
//! reason.
//!
//! It walks the headers with its own slice arithmetic (the parsing
//! decisions are those of the ingress model, restated here so neither
//! model leans on the other) and decides by the ruleset as the operator
//! wrote it: CIDRs, port ranges, protocol names.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use filter_common::OutReason;
use filter_kernel::runner::Verdict;
use filter_policy::ruleset::{AllowRule, MediaMode, RuleProto, Ruleset, Unattended};

use crate::calls::Calls;

/// The model's answer for one outgoing frame; `None` when the egress
/// program judges nothing (open egress).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpectedOut {
    pub verdict: Verdict,
    pub reason: Option<OutReason>,
}

/// Verdict and reason for an outgoing `frame` under `rules`.
pub fn judge(frame: &[u8], rules: &Ruleset) -> ExpectedOut {
    judge_link(frame, false, rules)
}

/// The same for an interface without a link header (`l3`), whose frames
/// are the IP packet.
pub fn judge_link(frame: &[u8], l3: bool, rules: &Ruleset) -> ExpectedOut {
    judge_with(frame, l3, rules, None)
}

/// [`judge_link`] in calls mode: the pinholes, the reader's heartbeat and
/// the time as inputs.
pub fn judge_calls(frame: &[u8], l3: bool, rules: &Ruleset, calls: &Calls) -> ExpectedOut {
    judge_with(frame, l3, rules, Some(calls))
}

fn judge_with(frame: &[u8], l3: bool, rules: &Ruleset, calls: Option<&Calls>) -> ExpectedOut {
    if !rules.egress.strict() {
        return ExpectedOut {
            verdict: Verdict::Pass,
            reason: None,
        };
    }
    let walked = if l3 { walk_l3(frame) } else { walk(frame) };
    let reason = classify_walked(walked, rules, calls);
    let verdict = if reason.drops() && !rules.dry_run {
        Verdict::Drop
    } else {
        Verdict::Pass
    };
    ExpectedOut {
        verdict,
        reason: Some(reason),
    }
}

/// What the walk found.
enum Walked<'a> {
    NonIp,
    Broken,
    LaterFragment,
    /// Protocol, destination, and the bytes from the transport header to
    /// the end of the IP payload.
    Ip(u8, IpAddr, &'a [u8]),
}

/// The egress counter `frame` is recorded under (strict egress).
pub fn classify(frame: &[u8], rules: &Ruleset) -> OutReason {
    classify_walked(walk(frame), rules, None)
}

fn classify_walked(walked: Walked, rules: &Ruleset, calls: Option<&Calls>) -> OutReason {
    match walked {
        Walked::NonIp => OutReason::NonIp,
        Walked::Broken => OutReason::Denied,
        Walked::LaterFragment => OutReason::Fragment,
        Walked::Ip(proto, dst, l4) => decide(proto, dst, l4, rules, calls),
    }
}

fn get(b: &[u8], at: usize, len: usize) -> Option<&[u8]> {
    b.get(at..at.checked_add(len)?)
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    get(b, at, 2).map(|x| u16::from_be_bytes([x[0], x[1]]))
}

fn walk(frame: &[u8]) -> Walked<'_> {
    let Some(mut ethertype) = u16_at(frame, 12) else {
        return Walked::Broken;
    };
    let mut at = 14;
    for tag in 0..=2 {
        if ethertype != 0x8100 && ethertype != 0x88a8 {
            break;
        }
        if tag == 2 {
            return Walked::Broken;
        }
        let Some(inner) = u16_at(frame, at + 2) else {
            return Walked::Broken;
        };
        ethertype = inner;
        at += 4;
    }
    if ethertype == 0x8864 {
        // A PPPoE session: its 6-byte header, then the PPP protocol; IPv4
        // (0x0021) and IPv6 (0x0057) are judged, the rest is not IP.
        let Some(ppp) = u16_at(frame, at + 6) else {
            return Walked::Broken;
        };
        let ip = &frame[(at + 8).min(frame.len())..];
        return match ppp {
            0x0021 => walk_v4(ip),
            0x0057 => walk_v6(ip),
            _ => Walked::NonIp,
        };
    }
    let ip = &frame[at.min(frame.len())..];
    match ethertype {
        0x0800 => walk_v4(ip),
        0x86dd => walk_v6(ip),
        _ => Walked::NonIp,
    }
}

/// An L3 device's outgoing packet (no link header): IPv4 or IPv6 by its
/// first nibble, anything else broken.
fn walk_l3(frame: &[u8]) -> Walked<'_> {
    match frame.first().map(|b| b >> 4) {
        Some(4) => walk_v4(frame),
        Some(6) => walk_v6(frame),
        _ => Walked::Broken,
    }
}

fn walk_v4(ip: &[u8]) -> Walked<'_> {
    let Some(h) = get(ip, 0, 20) else {
        return Walked::Broken;
    };
    let hlen = usize::from(h[0] & 15) * 4;
    let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
    if h[0] >> 4 != 4 || hlen < 20 || hlen > ip.len() || total < hlen {
        return Walked::Broken;
    }
    if u16::from_be_bytes([h[6], h[7]]) & 0x1fff != 0 {
        return Walked::LaterFragment;
    }
    let dst = IpAddr::V4(Ipv4Addr::new(h[16], h[17], h[18], h[19]));
    let payload = &ip[hlen..total.min(ip.len())];
    // Up to two AH headers before the transport header.
    let (mut proto, mut rest) = (h[9], payload);
    for _ in 0..2 {
        if proto != 51 {
            break;
        }
        let Some(ah) = get(rest, 0, 2) else {
            return Walked::Broken;
        };
        let len = (usize::from(ah[1]) + 2) * 4;
        if rest.len() < len {
            return Walked::Broken;
        }
        proto = ah[0];
        rest = &rest[len..];
    }
    if proto == 51 {
        return Walked::Broken;
    }
    transport(proto, dst, rest)
}

fn walk_v6(ip: &[u8]) -> Walked<'_> {
    let Some(h) = get(ip, 0, 40) else {
        return Walked::Broken;
    };
    if h[0] >> 4 != 6 {
        return Walked::Broken;
    }
    let end = (40 + usize::from(u16::from_be_bytes([h[4], h[5]]))).min(ip.len());
    let ip = &ip[..end];
    let dst: [u8; 16] = h[24..40].try_into().expect("16 bytes");
    let dst = IpAddr::V6(Ipv6Addr::from(dst));
    let (mut next, mut at) = (h[6], 40);
    for _ in 0..8 {
        let len = match next {
            0 | 43 | 60 => get(ip, at, 2).map(|x| (usize::from(x[1]) + 1) * 8),
            51 => get(ip, at, 2).map(|x| (usize::from(x[1]) + 2) * 4),
            44 => Some(8),
            _ => break,
        };
        let Some(header) = len.and_then(|len| get(ip, at, len)) else {
            return Walked::Broken;
        };
        if next == 44 && u16::from_be_bytes([header[2], header[3]]) & 0xfff8 != 0 {
            return Walked::LaterFragment;
        }
        next = header[0];
        at += header.len();
    }
    if matches!(next, 0 | 43 | 44 | 51 | 60) {
        return Walked::Broken;
    }
    transport(next, dst, &ip[at..])
}

/// Checks the transport header is whole (UDP 8, TCP its data offset of at
/// least 20, SCTP 12).
fn transport(proto: u8, dst: IpAddr, l4: &[u8]) -> Walked<'_> {
    let whole = match proto {
        17 => l4.len() >= 8,
        6 => {
            l4.len() >= 20 && {
                let doff = usize::from(l4[12] >> 4) * 4;
                doff >= 20 && l4.len() >= doff
            }
        }
        132 => l4.len() >= 12,
        _ => true,
    };
    if whole {
        Walked::Ip(proto, dst, l4)
    } else {
        Walked::Broken
    }
}

/// Whether `rule` (its `from` being the remote end: a `[[strict.allow]]`
/// rule's sources, an `[[egress.allow]]` rule's `to`) takes a packet of
/// `proto` whose ruled port is `port` (`None` without ports) and whose
/// remote end is `remote`.
fn rule_takes(rule: &AllowRule, proto: u8, port: Option<u16>, remote: IpAddr) -> bool {
    let proto_ok = match rule.proto {
        RuleProto::Tcp => proto == 6,
        RuleProto::Udp => proto == 17,
        RuleProto::Sctp => proto == 132,
        // ICMP of the packet's own family: protocol 58 inside IPv4 (or 1
        // inside IPv6) is no ICMP.
        RuleProto::Icmp => proto == if remote.is_ipv6() { 58 } else { 1 },
        RuleProto::Any => true,
    };
    let port_ok = rule.ports.is_empty()
        || port.is_some_and(|p| rule.ports.iter().any(|&(a, b)| a <= p && p <= b));
    proto_ok && port_ok && (rule.from.is_empty() || rule.from.iter().any(|n| n.contains(&remote)))
}

fn decide(proto: u8, dst: IpAddr, l4: &[u8], rules: &Ruleset, calls: Option<&Calls>) -> OutReason {
    let allowlisted = rules.allow.iter().any(|n| n.contains(&dst));
    let ingress_rule = |port| rules.rules.iter().any(|r| rule_takes(r, proto, port, dst));
    let egress_rule = |port| {
        rules
            .egress
            .rules
            .iter()
            .any(|r| rule_takes(r, proto, port, dst))
    };
    if matches!(proto, 6 | 17 | 132) {
        let sport = u16::from_be_bytes([l4[0], l4[1]]);
        let dport = u16::from_be_bytes([l4[2], l4[3]]);
        let udp = proto == 17;
        if rules.sig_ports.contains(&dport) {
            return if allowlisted {
                OutReason::SipAllowed
            } else {
                OutReason::SipDenied
            };
        }
        // Row 2u, before row 3 (docs/policy.md: the provider's media
        // ports included): in calls mode this host's media leaves only
        // to a live pinhole's remote address, or from a port open to any
        // source; while the reader is down with `unattended = "range"`,
        // by range, counted as media.
        let row_2u = || {
            let calls_mode = rules.media.mode == MediaMode::Calls;
            if !(udp && calls_mode && (rules.rtp.0..=rules.rtp.1).contains(&sport)) {
                return None;
            }
            let idle_ns = rules.media.call_idle_secs * 1_000_000_000;
            let by_range =
                rules.media.unattended == Unattended::Range && calls.is_none_or(Calls::reader_down);
            let pinhole = calls.is_some_and(|c| c.pinhole_takes(sport, dst, idle_ns));
            Some(if by_range || pinhole {
                OutReason::RtpAllowed
            } else {
                OutReason::Denied
            })
        };
        if let Some(reason) = row_2u() {
            return reason;
        }
        if udp && (rules.provider_rtp.0..=rules.provider_rtp.1).contains(&dport) {
            return OutReason::RtpAllowed;
        }
        let answer = (rules.sig_ports.contains(&sport) && allowlisted)
            || (udp && (rules.rtp.0..=rules.rtp.1).contains(&sport))
            || ingress_rule(Some(sport));
        if answer {
            return OutReason::Reply;
        }
        let dns =
            (udp || proto == 6) && dport == 53 && rules.egress.dns.iter().any(|n| n.contains(&dst));
        let dhcp = udp && matches!((sport, dport), (68, 67) | (546, 547));
        if dns || dhcp {
            return OutReason::Essential;
        }
        if egress_rule(Some(dport)) {
            return OutReason::RuleAllowed;
        }
        return OutReason::Denied;
    }
    let v6 = dst.is_ipv6();
    let icmp = (!v6 && proto == 1) || (v6 && proto == 58);
    // ICMP's type counts when its 4-byte head is within the IP packet.
    let kind = (icmp && l4.len() >= 4).then(|| l4[0]);
    let echo_reply = if v6 { 129 } else { 0 };
    if rules.ping && kind == Some(echo_reply) {
        return OutReason::Reply;
    }
    if ingress_rule(None) {
        return OutReason::Reply;
    }
    let essential = match kind {
        Some(k) if v6 => matches!(k, 1..=4 | 130..=137 | 143),
        Some(k) => matches!(k, 3 | 11 | 12),
        None => false,
    };
    if essential {
        return OutReason::Essential;
    }
    if egress_rule(None) {
        return OutReason::RuleAllowed;
    }
    OutReason::Denied
}
