//! An independent userspace model of the ingress policy (docs/policy.md), written
//! from the contract and the parsing decisions the project settled on, not
//! from the kernel code. The differential test runs random frames through
//! both and requires the same verdict and reason.
//!
//! It works on byte slices with plain index arithmetic: every header is
//! taken as a sub-slice, and a slice that is too short is the "truncated"
//! case. The limits below are written out here on purpose rather than taken
//! from filter-common, so a change there shows up as a disagreement.
use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use filter_common::Reason;
use filter_kernel::runner::Verdict;
use filter_policy::ruleset::{MediaMode, Mode, RuleProto, Ruleset, Unattended};
use ipnet::IpNet;

use crate::calls::Calls;

/// The model's own table of the host's flows (strict mode's replies),
/// filled by the test: a packet from `remote`:`remote_port` to
/// `local`:`local_port` over `proto` is a reply. ICMP echo flows have
/// protocol 1 or 58, remote port 0 and the echo identifier as local port.
#[derive(Clone, Debug, Default)]
pub struct Flows(pub HashSet<Flow>);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Flow {
    pub proto: u8,
    pub remote: IpAddr,
    pub remote_port: u16,
    pub local: IpAddr,
    pub local_port: u16,
}

/// VLAN tags walked before the IP header; a further tag is malformed.
pub const VLAN_TAGS: usize = 2;
/// IPv6 extension headers walked; a further one is malformed.
pub const IPV6_EXT_HEADERS: usize = 8;

const ETH_HEADER: usize = 14;
const TPID_8021Q: u16 = 0x8100;
const TPID_8021AD: u16 = 0x88A8;
const ETHERTYPE_PPPOE_SESSION: u16 = 0x8864;
const PPP_IPV4: u16 = 0x0021;
const PPP_IPV6: u16 = 0x0057;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86DD;

const PROTO_HOP_BY_HOP: u8 = 0;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const PROTO_ROUTING: u8 = 43;
const PROTO_FRAGMENT: u8 = 44;
const PROTO_AH: u8 = 51;
const PROTO_DEST_OPTS: u8 = 60;
const PROTO_SCTP: u8 = 132;

/// The model's answer for one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expected {
    pub verdict: Verdict,
    pub reason: Reason,
}

/// What the abuse controls remember between packets: the ban set (each
/// prefix with the time it ends, `u64::MAX` for never) and one token
/// bucket per source and kind. Time is an input: the caller says what the
/// clock reads for each packet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Abuse {
    pub bans: Vec<(IpNet, u64)>,
    sip: HashMap<IpAddr, Bucket>,
    rtp: HashMap<IpAddr, Bucket>,
}

/// A classic token bucket: `credit` as of `at_ns`, in billionths of a
/// token, so that refills are exact integers (a float drifts by a rounding
/// error, and the kernel's coarse clock lands on exact refill boundaries
/// often enough for that to show).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Bucket {
    credit: u128,
    at_ns: u64,
}

/// One token in a [`Bucket`]'s `credit`.
const TOKEN: u128 = 1_000_000_000;

impl Abuse {
    /// No bucket yet, and these bans.
    pub fn with_bans(bans: Vec<(IpNet, u64)>) -> Abuse {
        Abuse {
            bans,
            ..Abuse::default()
        }
    }

    /// Banned at `now_ns`: some ban covering `src` has not ended yet.
    fn banned(&self, src: IpAddr, now_ns: u64) -> bool {
        self.bans
            .iter()
            .any(|(net, ends)| net.contains(&src) && now_ns < *ends)
    }

    /// Takes a token from `src`'s bucket (full when first seen); false
    /// when there is none.
    fn take(
        buckets: &mut HashMap<IpAddr, Bucket>,
        src: IpAddr,
        per_sec: u32,
        burst: u32,
        now_ns: u64,
    ) -> bool {
        let full = Bucket {
            credit: u128::from(burst) * TOKEN,
            at_ns: now_ns,
        };
        // Buckets are per address in its IPv6 form (an IPv4 address is
        // ::ffff:a.b.c.d, as docs/policy.md says): an IPv6 packet from the
        // IPv4-mapped form of an address shares that address's bucket.
        let src = match src {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(src, IpAddr::V4),
            v4 => v4,
        };
        let b = buckets.entry(src).or_insert(full);
        // `per_sec` tokens a second: per_sec billionths a nanosecond.
        let elapsed = u128::from(now_ns.saturating_sub(b.at_ns));
        b.credit = (b.credit + elapsed * u128::from(per_sec)).min(u128::from(burst) * TOKEN);
        b.at_ns = b.at_ns.max(now_ns);
        if b.credit >= TOKEN {
            b.credit -= TOKEN;
            true
        } else {
            false
        }
    }
}

/// Verdict and reason for `frame` under `rules`, with no ban, fresh rate
/// limits and no flows of the host.
pub fn judge(frame: &[u8], rules: &Ruleset) -> Expected {
    judge_at(frame, rules, &mut Abuse::default(), 0)
}

/// Verdict and reason for `frame` under `rules`, the host's flows being
/// `flows` (no ban, fresh rate limits).
pub fn judge_with_flows(frame: &[u8], rules: &Ruleset, flows: &Flows) -> Expected {
    judge_full(frame, rules, &mut Abuse::default(), 0, flows)
}

/// Verdict and reason for `frame` under `rules` arriving at `now_ns`
/// (CLOCK_MONOTONIC), given and updating what the abuse controls hold.
pub fn judge_at(frame: &[u8], rules: &Ruleset, abuse: &mut Abuse, now_ns: u64) -> Expected {
    judge_full(frame, rules, abuse, now_ns, &Flows::default())
}

/// Everything at once: the abuse controls' state at `now_ns`, and the
/// host's flows.
pub fn judge_full(
    frame: &[u8],
    rules: &Ruleset,
    abuse: &mut Abuse,
    now_ns: u64,
    flows: &Flows,
) -> Expected {
    judge_link(frame, false, rules, abuse, now_ns, flows)
}

/// [`judge_full`] for a frame of an interface without a link header
/// (`l3`: tun, WireGuard, PPP, ...), whose frames are the IP packet.
pub fn judge_link(
    frame: &[u8],
    l3: bool,
    rules: &Ruleset,
    abuse: &mut Abuse,
    now_ns: u64,
    flows: &Flows,
) -> Expected {
    judge_env(
        frame,
        l3,
        Env {
            rules,
            abuse,
            now_ns,
            flows,
            calls: None,
        },
    )
}

/// [`judge_link`] in calls mode (`[media] mode = "calls"`): the pinholes,
/// the reader's heartbeat and the time (`calls.now_ns`, which the abuse
/// controls read too) as inputs.
pub fn judge_calls(
    frame: &[u8],
    l3: bool,
    rules: &Ruleset,
    abuse: &mut Abuse,
    flows: &Flows,
    calls: &Calls,
) -> Expected {
    judge_env(
        frame,
        l3,
        Env {
            rules,
            abuse,
            now_ns: calls.now_ns,
            flows,
            calls: Some(calls),
        },
    )
}

fn judge_env(frame: &[u8], l3: bool, mut env: Env) -> Expected {
    let rules = env.rules;
    let walked = if l3 {
        classify_l3(frame, &mut env)
    } else {
        classify_inner(frame, &mut env)
    };
    let reason = match walked {
        Ok(reason) | Err(reason) => reason,
    };
    let verdict = if reason.drops() && !rules.dry_run {
        Verdict::Drop
    } else {
        Verdict::Pass
    };
    Expected { verdict, reason }
}

/// The counter `frame` is recorded under (no ban, fresh rate limits).
pub fn classify(frame: &[u8], rules: &Ruleset) -> Reason {
    judge(frame, rules).reason
}

/// The counter `frame` is recorded under, the host's flows being `flows`.
pub fn classify_with_flows(frame: &[u8], rules: &Ruleset, flows: &Flows) -> Reason {
    judge_with_flows(frame, rules, flows).reason
}

/// Everything a decision depends on besides the frame.
struct Env<'a> {
    rules: &'a Ruleset,
    abuse: &'a mut Abuse,
    now_ns: u64,
    flows: &'a Flows,
    /// Calls mode's state; `None`: no pinhole, no reader ever.
    calls: Option<&'a Calls>,
}

impl Env<'_> {
    fn calls_mode(&self) -> bool {
        self.rules.media.mode == MediaMode::Calls
    }

    /// Calls mode with the reader down and `unattended = "range"`: media
    /// passes by range, as in range mode.
    fn unattended_by_range(&self) -> bool {
        self.rules.media.unattended == Unattended::Range
            && self.calls.is_none_or(Calls::reader_down)
    }

    /// Whether calls mode lets UDP from `src` to the media `port` on to
    /// rows 5/4 (the RTP check and the media limit): a live pinhole of
    /// the port takes `src`, or media passes by range unattended.
    fn admitted(&self, port: u16, src: IpAddr) -> bool {
        let idle_ns = self.rules.media.call_idle_secs * 1_000_000_000;
        self.unattended_by_range()
            || self
                .calls
                .is_some_and(|c| c.pinhole_takes(port, src, idle_ns))
    }

    /// `reason`, unless the source is banned: the ban comes first.
    fn unless_banned(&self, src: IpAddr, reason: Reason) -> Reason {
        if self.abuse.banned(src, self.now_ns) {
            Reason::Banned
        } else {
            reason
        }
    }
}

/// `Err` carries an early decision (malformed, fragment); `Ok` the one
/// reached after the whole walk.
fn classify_inner(frame: &[u8], env: &mut Env) -> Result<Reason, Reason> {
    if frame.len() < ETH_HEADER {
        return Err(Reason::Malformed);
    }
    let mut ethertype = be16(frame, 12)?;
    let mut at = ETH_HEADER;
    let mut tags = 0;
    while ethertype == TPID_8021Q || ethertype == TPID_8021AD {
        if tags == VLAN_TAGS {
            // A third tag: skipping it could hide IP behind a stack the
            // walk never reaches, so it is refused rather than passed.
            return Err(Reason::Malformed);
        }
        // The tag is the TCI (2 bytes) and the inner ethertype (2 bytes).
        ethertype = be16(frame, at + 2)?;
        at += 4;
        tags += 1;
    }
    if ethertype == ETHERTYPE_PPPOE_SESSION {
        // RFC 2516's session header (6 bytes), then the PPP protocol: IPv4
        // and IPv6 go to the host's ppp device, the rest (LCP, IPCP, ...)
        // to pppd.
        let ppp_proto = be16(frame, at + 6)?;
        let ip = &frame[at + 8..];
        return match ppp_proto {
            PPP_IPV4 => ipv4(ip, env),
            PPP_IPV6 => ipv6(ip, env),
            _ => Ok(Reason::NonIp),
        };
    }
    let l3 = &frame[at..];
    match ethertype {
        ETHERTYPE_IPV4 => ipv4(l3, env),
        ETHERTYPE_IPV6 => ipv6(l3, env),
        _ => Ok(Reason::NonIp),
    }
}

/// An L3 device's frame: the IP packet, its version nibble saying which.
/// Such a device carries only IP, so anything else is malformed.
fn classify_l3(frame: &[u8], env: &mut Env) -> Result<Reason, Reason> {
    match frame.first().map(|b| b >> 4) {
        Some(4) => ipv4(frame, env),
        Some(6) => ipv6(frame, env),
        _ => Err(Reason::Malformed),
    }
}

fn ipv4(ip: &[u8], env: &mut Env) -> Result<Reason, Reason> {
    let fixed = take(ip, 0, 20)?;
    if fixed[0] >> 4 != 4 {
        return Err(Reason::Malformed);
    }
    let header_len = usize::from(fixed[0] & 0x0f) * 4;
    if header_len < 20 || header_len > ip.len() {
        return Err(Reason::Malformed);
    }
    let total_len = usize::from(be16(fixed, 2)?);
    if total_len < header_len {
        return Err(Reason::Malformed);
    }
    let src = IpAddr::V4(Ipv4Addr::new(fixed[12], fixed[13], fixed[14], fixed[15]));
    if be16(fixed, 6)? & 0x1fff != 0 {
        return Err(env.unless_banned(src, Reason::Fragment));
    }
    let dst = IpAddr::V4(Ipv4Addr::new(fixed[16], fixed[17], fixed[18], fixed[19]));
    // Bytes past the total length are link padding, not L4.
    let mut l4 = &ip[header_len..total_len.min(ip.len())];
    // Up to two IPsec AH headers (README: parsing) come before the ports.
    let mut proto = fixed[9];
    let mut walked = 0;
    while proto == PROTO_AH {
        if walked == 2 {
            return Err(Reason::Malformed);
        }
        let ah = take(l4, 0, 2)?;
        let len = (usize::from(ah[1]) + 2) * 4;
        take(l4, 0, len)?;
        proto = ah[0];
        l4 = &l4[len..];
        walked += 1;
    }
    transport(proto, l4, src, dst, env)
}

fn ipv6(ip: &[u8], env: &mut Env) -> Result<Reason, Reason> {
    let fixed = take(ip, 0, 40)?;
    if fixed[0] >> 4 != 6 {
        return Err(Reason::Malformed);
    }
    let payload_len = usize::from(be16(fixed, 4)?);
    let end = (40 + payload_len).min(ip.len());
    // Everything from here on must lie within the payload length.
    let payload = &ip[..end];
    let src: [u8; 16] = fixed[8..24].try_into().expect("16 bytes");
    let src = IpAddr::V6(Ipv6Addr::from(src));
    let dst: [u8; 16] = fixed[24..40].try_into().expect("16 bytes");
    let dst = IpAddr::V6(Ipv6Addr::from(dst));

    let mut next = fixed[6];
    let mut at = 40;
    for _ in 0..IPV6_EXT_HEADERS {
        let len = match next {
            PROTO_HOP_BY_HOP | PROTO_ROUTING | PROTO_DEST_OPTS => {
                (usize::from(take(payload, at, 2)?[1]) + 1) * 8
            }
            PROTO_AH => (usize::from(take(payload, at, 2)?[1]) + 2) * 4,
            PROTO_FRAGMENT => 8,
            _ => break,
        };
        let header = take(payload, at, len)?;
        if next == PROTO_FRAGMENT && be16(header, 2)? & 0xfff8 != 0 {
            return Err(env.unless_banned(src, Reason::Fragment));
        }
        next = header[0];
        at += len;
    }
    if is_extension_header(next) {
        return Err(Reason::Malformed);
    }
    transport(next, &payload[at..], src, dst, env)
}

fn is_extension_header(proto: u8) -> bool {
    matches!(
        proto,
        PROTO_HOP_BY_HOP | PROTO_ROUTING | PROTO_FRAGMENT | PROTO_AH | PROTO_DEST_OPTS
    )
}

/// `l4` holds the bytes from the transport header to the end of the IP
/// payload (or of the frame, when that comes first).
fn transport(
    proto: u8,
    l4: &[u8],
    src: IpAddr,
    dst: IpAddr,
    env: &mut Env,
) -> Result<Reason, Reason> {
    let rules = env.rules;
    match proto {
        PROTO_UDP => {
            take(l4, 0, 8)?;
        }
        PROTO_TCP => {
            let header = take(l4, 0, 20)?;
            let data_offset = usize::from(header[12] >> 4) * 4;
            if data_offset < 20 {
                return Err(Reason::Malformed);
            }
            take(l4, 0, data_offset)?;
        }
        PROTO_SCTP => {
            take(l4, 0, 12)?;
        }
        _ if env.abuse.banned(src, env.now_ns) => return Ok(Reason::Banned),
        _ if rules.mode == Mode::Strict => {
            return Ok(strict_other(proto, l4, src, dst, env.flows, rules))
        }
        _ => return Ok(Reason::Other),
    }
    if env.abuse.banned(src, env.now_ns) {
        return Ok(Reason::Banned);
    }
    // UDP, TCP and SCTP all start with source port, destination port.
    let sport = be16(l4, 0)?;
    let dport = be16(l4, 2)?;
    if rules.sig_ports.contains(&dport) {
        let allowed = rules.allow.iter().any(|net| net.contains(&src));
        if !allowed {
            return Ok(Reason::SipDenied);
        }
        if let Some(limit) = rules.sip_limit {
            let now = env.now_ns;
            if !Abuse::take(&mut env.abuse.sip, src, limit.per_sec, limit.burst, now) {
                return Ok(Reason::SipRatelimited);
            }
        }
        return Ok(Reason::SipAllowed);
    }
    let udp = proto == PROTO_UDP;
    let to_our_media = udp && rules.rtp.0 <= dport && dport <= rules.rtp.1;
    let from_provider_media = udp && rules.provider_rtp.0 <= sport && sport <= rules.provider_rtp.1;
    // Media into this host's RTP ports is checked and rate limited in
    // both modes; guard mode also counts UDP from the provider's media
    // ports as media, unchecked. Strict mode's rows 4-10 follow.
    if to_our_media {
        // Rows 5u/4u: in calls mode only a live pinhole's media goes on
        // to the RTP check and the media limit (a dropped packet takes no
        // token).
        if env.calls_mode() && !env.admitted(dport, src) {
            return Ok(Reason::RtpUnsolicited);
        }
        // RTP and RTCP: a 12-byte header at least, version 2 in the top
        // two bits of the first byte.
        let payload = &l4[8..];
        let looks_rtp = payload.len() >= 12 && payload[0] >> 6 == 2;
        if rules.check_rtp && !looks_rtp {
            return Ok(Reason::RtpInvalid);
        }
        if let Some(limit) = rules.rtp_limit {
            let now = env.now_ns;
            if !Abuse::take(&mut env.abuse.rtp, src, limit.per_sec, limit.burst, now) {
                return Ok(Reason::RtpRatelimited);
            }
        }
        return Ok(Reason::RtpAllowed);
    }
    if rules.mode == Mode::Guard {
        return Ok(if from_provider_media {
            // Row 5v: a pinhole's port is in `rtp_ports`, so UDP from the
            // provider's media ports to any other port is no call's media;
            // guard mode passes it as other traffic (unless media passes
            // by range, unattended).
            if env.calls_mode() && !env.unattended_by_range() {
                Reason::Other
            } else {
                Reason::RtpAllowed
            }
        } else {
            Reason::Other
        });
    }
    let dhcp = (sport, dport) == (67, 68) || (sport, dport) == (547, 546);
    if udp && dhcp {
        return Ok(Reason::Essential);
    }
    let flow = Flow {
        proto,
        remote: src,
        remote_port: sport,
        local: dst,
        local_port: dport,
    };
    if env.flows.0.contains(&flow) {
        return Ok(Reason::Reply);
    }
    if rule_matches(rules, proto, src, Some(dport)) {
        return Ok(Reason::RuleAllowed);
    }
    if from_provider_media {
        return Ok(Reason::RtpOutside);
    }
    Ok(Reason::Denied)
}

/// Strict mode for protocols without ports: ICMP's essential types and
/// echo replies, then the rules.
fn strict_other(
    proto: u8,
    l4: &[u8],
    src: IpAddr,
    dst: IpAddr,
    flows: &Flows,
    rules: &Ruleset,
) -> Reason {
    let v6 = src.is_ipv6();
    let icmp = if v6 { proto == 58 } else { proto == 1 };
    // The type is read when ICMP's 4-byte head is there; an echo's
    // identifier when its 8-byte header is.
    if icmp && l4.len() >= 4 {
        let kind = l4[0];
        let error_or_nd = if v6 {
            matches!(
                kind,
                1 | 2 | 3 | 4 | 130 | 131 | 132 | 133 | 134 | 135 | 136 | 137 | 143
            )
        } else {
            matches!(kind, 3 | 11 | 12)
        };
        let echo_request = if v6 { kind == 128 } else { kind == 8 };
        if error_or_nd || (rules.ping && echo_request) {
            return Reason::Essential;
        }
        let echo_reply = if v6 { kind == 129 } else { kind == 0 };
        if echo_reply && l4.len() >= 8 {
            let flow = Flow {
                proto,
                remote: src,
                remote_port: 0,
                local: dst,
                local_port: u16::from_be_bytes([l4[4], l4[5]]),
            };
            if flows.0.contains(&flow) {
                return Reason::Reply;
            }
        }
    }
    if rule_matches(rules, proto, src, None) {
        return Reason::RuleAllowed;
    }
    Reason::Denied
}

/// Whether one of the `[[strict.allow]]` rules takes the packet; `dport`
/// is `None` for protocols without ports.
fn rule_matches(rules: &Ruleset, proto: u8, src: IpAddr, dport: Option<u16>) -> bool {
    rules.rules.iter().any(|rule| {
        let proto_ok = match rule.proto {
            RuleProto::Tcp => proto == PROTO_TCP,
            RuleProto::Udp => proto == PROTO_UDP,
            RuleProto::Sctp => proto == PROTO_SCTP,
            // ICMP of the packet's own family: protocol 58 inside IPv4 (or 1
            // inside IPv6) is no ICMP.
            RuleProto::Icmp => proto == if src.is_ipv6() { 58 } else { 1 },
            RuleProto::Any => true,
        };
        let port_ok = match dport {
            _ if rule.ports.is_empty() => true,
            Some(p) => rule.ports.iter().any(|&(a, b)| a <= p && p <= b),
            None => false,
        };
        let from_ok = rule.from.is_empty() || rule.from.iter().any(|n| n.contains(&src));
        proto_ok && port_ok && from_ok
    })
}

/// `len` bytes of `bytes` from `at`, or malformed when they are not all there.
fn take(bytes: &[u8], at: usize, len: usize) -> Result<&[u8], Reason> {
    bytes.get(at..at + len).ok_or(Reason::Malformed)
}

fn be16(bytes: &[u8], at: usize) -> Result<u16, Reason> {
    let b = take(bytes, at, 2)?;
    Ok(u16::from_be_bytes([b[0], b[1]]))
}

#[cfg(test)]
mod tests {
    //! A few hand-built frames, so the model is not only checked against
    //! the kernel it is meant to check.
    use super::*;

    fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn udp4(src: [u8; 4], dport: u16) -> Vec<u8> {
        let mut ip = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, PROTO_UDP, 0, 0];
        ip.extend_from_slice(&src);
        ip.extend_from_slice(&[192, 0, 2, 1]);
        ip.extend_from_slice(&[0x13, 0xc4]);
        ip.extend_from_slice(&dport.to_be_bytes());
        ip.extend_from_slice(&[0, 8, 0, 0]);
        ip
    }

    /// IPv6 from 2001:db8::1 with `payload_len` and `rest` after the
    /// fixed header, the first next header being `next`.
    fn ip6(payload_len: u16, next: u8, rest: &[u8]) -> Vec<u8> {
        let mut ip = vec![0x60, 0, 0, 0];
        ip.extend_from_slice(&payload_len.to_be_bytes());
        ip.extend_from_slice(&[next, 64]);
        ip.extend_from_slice(&Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).octets());
        ip.extend_from_slice(&Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2).octets());
        ip.extend_from_slice(rest);
        ip
    }

    #[test]
    fn table() {
        let rules = Ruleset::default();
        let provider = [44, 229, 228, 186];
        let stranger = [203, 0, 113, 9];
        let mut first_fragment = udp4(stranger, 5060);
        first_fragment[6] = 0x20; // more fragments, offset 0
        let mut later_fragment = udp4(stranger, 5060);
        later_fragment[7] = 1; // offset 8 bytes
        let mut short_total = udp4(provider, 5060);
        short_total[3] = 27; // UDP header cut by the total length
                             // Fragment header: next header UDP, offset 8 bytes.
        let later6 = [PROTO_UDP, 0, 0x00, 0x08, 1, 2, 3, 4];
        let cases: [(&str, Vec<u8>, Reason); 12] = [
            (
                "IPv6 later fragment",
                eth(0x86dd, &ip6(8, PROTO_FRAGMENT, &later6)),
                Reason::Fragment,
            ),
            (
                "IPv6 fragment header past the payload length",
                eth(0x86dd, &ip6(0, PROTO_FRAGMENT, &later6)),
                Reason::Malformed,
            ),
            (
                "IPv6 fragment header cut by the end of the frame",
                eth(0x86dd, &ip6(8, PROTO_FRAGMENT, &later6[..4])),
                Reason::Malformed,
            ),
            ("ARP", eth(0x0806, &[0; 28]), Reason::NonIp),
            (
                "SIP from the provider",
                eth(0x0800, &udp4(provider, 5060)),
                Reason::SipAllowed,
            ),
            (
                "SIP from elsewhere",
                eth(0x0800, &udp4(stranger, 5061)),
                Reason::SipDenied,
            ),
            (
                "RTP",
                eth(0x0800, &udp4(stranger, 40000)),
                Reason::RtpAllowed,
            ),
            ("DNS", eth(0x0800, &udp4(stranger, 53)), Reason::Other),
            (
                "first fragment by its ports",
                eth(0x0800, &first_fragment),
                Reason::SipDenied,
            ),
            (
                "later fragment",
                eth(0x0800, &later_fragment),
                Reason::Fragment,
            ),
            (
                "UDP header past the total length",
                eth(0x0800, &short_total),
                Reason::Malformed,
            ),
            (
                "three VLAN tags",
                eth(0x8100, &[0, 1, 0x81, 0, 0, 2, 0x81, 0, 0, 3, 8, 0]),
                Reason::Malformed,
            ),
        ];
        for (why, frame, want) in cases {
            assert_eq!(classify(&frame, &rules), want, "{why}");
        }
    }

    /// Calls mode: a pinhole from 203.0.113.9 on port 40000, the reader
    /// up or down, `unattended` range or closed.
    #[test]
    fn calls() {
        use crate::calls::{Calls, Pinhole};
        use filter_policy::ruleset::{MediaCalls, MediaMode, Unattended};
        let s = 1_000_000_000;
        let stranger = [203, 0, 113, 9];
        let other = [203, 0, 113, 10];
        let rules = |unattended| Ruleset {
            media: MediaCalls {
                mode: MediaMode::Calls,
                call_idle_secs: 60,
                unattended,
            },
            ..Ruleset::default()
        };
        let calls = |heartbeat_s: u64, last_seen_s: u64| Calls {
            pinholes: vec![Pinhole {
                port: 40000,
                remote: Some(IpAddr::V4(stranger.into())),
                last_seen_ns: last_seen_s * s,
            }],
            heartbeat_ns: heartbeat_s * s,
            now_ns: 1000 * s,
        };
        let judge = |src, dport, unattended, c: &Calls| {
            let frame = eth(0x0800, &udp4(src, dport));
            judge_calls(
                &frame,
                false,
                &rules(unattended),
                &mut Abuse::default(),
                &Flows::default(),
                c,
            )
            .reason
        };
        let (up, down) = (calls(999, 990), calls(900, 990));
        for unattended in [Unattended::Range, Unattended::Closed] {
            assert_eq!(judge(stranger, 40000, unattended, &up), Reason::RtpAllowed);
            assert_eq!(judge(other, 40000, unattended, &up), Reason::RtpUnsolicited);
            assert_eq!(
                judge(stranger, 40001, unattended, &up),
                Reason::RtpUnsolicited
            );
            let expired = calls(999, 940);
            assert_eq!(
                judge(stranger, 40000, unattended, &expired),
                Reason::RtpUnsolicited
            );
            assert_eq!(judge(stranger, 5060, unattended, &up), Reason::SipDenied);
        }
        assert_eq!(
            judge(other, 40000, Unattended::Range, &down),
            Reason::RtpAllowed
        );
        assert_eq!(
            judge(other, 40000, Unattended::Closed, &down),
            Reason::RtpUnsolicited
        );
        assert_eq!(
            judge(stranger, 40000, Unattended::Closed, &down),
            Reason::RtpAllowed
        );
    }
}
