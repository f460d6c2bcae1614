//! `explain`'s packet descriptions: a small grammar, parsed strictly, and
//! the Ethernet frame a description stands for.
//!
//! ```text
//! [vlan N] tcp|udp|sctp SRC:PORT > DST:PORT [flags S|SA|A|F|R|P|U...] [fragment] [payload N]
//! [vlan N] icmp SRC > DST [type N] [code N] [fragment] [payload N]
//! ```
//! IPv6 addresses with a port are written in brackets (`[2001:db8::1]:5060`);
//! source and destination are of one family; `icmp` is ICMPv6 in IPv6.
use std::net::IpAddr;

use crate::error::UsageError;

/// The expected form, for errors and `--help`.
pub const FORM: &str = "[vlan N] tcp|udp|sctp SRC:PORT > DST:PORT [flags S|A|F|R|P|U...] [fragment] [payload N]  or  [vlan N] icmp SRC > DST [type N] [code N] [fragment] [payload N]  (IPv6 with a port: [2001:db8::1]:5060)";

pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_SCTP: u8 = 132;
const PROTO_ICMP: u8 = 1;
const PROTO_ICMPV6: u8 = 58;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
    Icmp,
}

/// One packet, as described.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    pub vlan: Option<u16>,
    pub proto: Proto,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// Source and destination ports (0 for ICMP).
    pub sport: u16,
    pub dport: u16,
    /// TCP flags byte (FIN 0x01 ... URG 0x20); a SYN unless given.
    pub tcp_flags: u8,
    /// ICMP type and code; an echo request unless given.
    pub icmp: (u8, u8),
    /// A non-first fragment (no transport header to read).
    pub fragment: bool,
    /// Bytes after the transport header; `None`: a 12-byte RTP header
    /// for UDP (media as it arrives), nothing otherwise.
    pub payload: Option<usize>,
}

impl Packet {
    /// The IP protocol number.
    pub fn ip_proto(&self) -> u8 {
        match (self.proto, self.src) {
            (Proto::Tcp, _) => PROTO_TCP,
            (Proto::Udp, _) => PROTO_UDP,
            (Proto::Sctp, _) => PROTO_SCTP,
            (Proto::Icmp, IpAddr::V4(_)) => PROTO_ICMP,
            (Proto::Icmp, IpAddr::V6(_)) => PROTO_ICMPV6,
        }
    }
}

/// Largest `payload N`: the frame must fit a page for BPF_PROG_TEST_RUN.
const MAX_PAYLOAD: usize = 1400;

fn bad(what: impl std::fmt::Display) -> UsageError {
    UsageError(format!("{what}; expected: {FORM}"))
}

fn number<T: std::str::FromStr>(word: Option<&str>, what: &str) -> Result<T, UsageError> {
    let word = word.ok_or_else(|| bad(format!("{what} needs a number")))?;
    word.parse()
        .map_err(|_| bad(format!("{what} {word:?}: not a number in range")))
}

/// `ADDR:PORT` (`[V6]:PORT`), or a bare address for ICMP.
fn endpoint(word: &str, with_port: bool) -> Result<(IpAddr, u16), UsageError> {
    if !with_port {
        let addr = word
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| bad(format!("{word:?}: not an IP address (icmp takes no port)")))?;
        return Ok((addr, 0));
    }
    let (addr, port) = if let Some(rest) = word.strip_prefix('[') {
        rest.split_once("]:")
            .ok_or_else(|| bad(format!("{word:?}: an IPv6 address and port is [ADDR]:PORT")))?
    } else {
        word.rsplit_once(':')
            .filter(|(a, _)| !a.contains(':'))
            .ok_or_else(|| {
                bad(format!(
                    "{word:?}: expected ADDR:PORT ([ADDR]:PORT for IPv6)"
                ))
            })?
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| bad(format!("{word:?}: {addr:?} is not an IP address")))?;
    let port = port
        .parse()
        .map_err(|_| bad(format!("{word:?}: port {port:?} is not 0-65535")))?;
    Ok((addr, port))
}

/// TCP flags as letters: S SYN, A ACK, F FIN, R RST, P PSH, U URG.
fn tcp_flags(word: Option<&str>) -> Result<u8, UsageError> {
    let word = word.ok_or_else(|| bad("flags needs letters (S, A, F, R, P, U)"))?;
    let mut flags = 0u8;
    for c in word.chars() {
        let bit = match c {
            'F' => 0x01,
            'S' => 0x02,
            'R' => 0x04,
            'P' => 0x08,
            'A' => 0x10,
            'U' => 0x20,
            _ => {
                return Err(bad(format!(
                    "flags {word:?}: {c:?} is not one of S, A, F, R, P, U"
                )))
            }
        };
        if flags & bit != 0 {
            return Err(bad(format!("flags {word:?}: {c:?} twice")));
        }
        flags |= bit;
    }
    Ok(flags)
}

/// Parses a description (one string, or several words joined by spaces).
pub fn parse(text: &str) -> Result<Packet, UsageError> {
    let mut words = text.split_whitespace().peekable();
    let mut vlan = None;
    if words.peek() == Some(&"vlan") {
        words.next();
        let id: u16 = number(words.next(), "vlan")?;
        if !(1..=4094).contains(&id) {
            return Err(bad(format!("vlan {id}: a VLAN id is 1-4094")));
        }
        vlan = Some(id);
    }
    let proto = match words.next() {
        Some("tcp") => Proto::Tcp,
        Some("udp") => Proto::Udp,
        Some("sctp") => Proto::Sctp,
        Some("icmp") => Proto::Icmp,
        Some(other) => {
            return Err(bad(format!(
                "{other:?}: the protocol is tcp, udp, sctp or icmp"
            )))
        }
        None => return Err(bad("an empty description")),
    };
    let with_port = proto != Proto::Icmp;
    let (src, sport) = endpoint(words.next().ok_or_else(|| bad("no source"))?, with_port)?;
    if words.next() != Some(">") {
        return Err(bad("the source and destination are separated by \" > \""));
    }
    let (dst, dport) = endpoint(
        words.next().ok_or_else(|| bad("no destination"))?,
        with_port,
    )?;
    if src.is_ipv4() != dst.is_ipv4() {
        return Err(bad(format!(
            "{src} > {dst}: the source and destination must be of one family (both IPv4 or both IPv6)"
        )));
    }
    let mut packet = Packet {
        vlan,
        proto,
        src,
        dst,
        sport,
        dport,
        tcp_flags: 0x02,
        icmp: (if src.is_ipv4() { 8 } else { 128 }, 0),
        fragment: false,
        payload: None,
    };
    let mut seen: Vec<&str> = Vec::new();
    while let Some(word) = words.next() {
        if seen.contains(&word) {
            return Err(bad(format!("{word:?} given twice")));
        }
        seen.push(word);
        match word {
            "flags" if proto == Proto::Tcp => packet.tcp_flags = tcp_flags(words.next())?,
            "type" if proto == Proto::Icmp => packet.icmp.0 = number(words.next(), "type")?,
            "code" if proto == Proto::Icmp => packet.icmp.1 = number(words.next(), "code")?,
            "fragment" => packet.fragment = true,
            "payload" => {
                let n: usize = number(words.next(), "payload")?;
                if n > MAX_PAYLOAD {
                    return Err(bad(format!("payload {n}: at most {MAX_PAYLOAD} bytes")));
                }
                packet.payload = Some(n);
            }
            "flags" | "type" | "code" => {
                return Err(bad(format!(
                    "{word:?} does not go with {}",
                    text.split_whitespace()
                        .find(|w| ["tcp", "udp", "sctp", "icmp"].contains(w))
                        .unwrap_or("this protocol")
                )))
            }
            other => return Err(bad(format!("{other:?}: unexpected"))),
        }
    }
    Ok(packet)
}

/// The Ethernet frame of a packet: VLAN tag, IP header (IPv4 with its
/// checksum; IPv6 with a fragment header when a fragment), transport header,
/// payload.
pub fn frame(p: &Packet) -> Vec<u8> {
    // What follows the transport header: `payload N` zeros, else an RTP
    // header for UDP (media as it arrives), else nothing.
    let body = match (p.payload, p.proto) {
        (Some(n), _) => vec![0; n],
        // Version 2, payload type 0, sequence 1, timestamp 0, SSRC 1.
        (None, Proto::Udp) => vec![0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1],
        (None, _) => Vec::new(),
    };
    let mut l4 = Vec::new();
    match p.proto {
        Proto::Udp => {
            l4.extend(p.sport.to_be_bytes());
            l4.extend(p.dport.to_be_bytes());
            l4.extend(((8 + body.len()) as u16).to_be_bytes());
            l4.extend([0, 0]);
        }
        Proto::Tcp => {
            l4.extend(p.sport.to_be_bytes());
            l4.extend(p.dport.to_be_bytes());
            l4.extend(1u32.to_be_bytes());
            let ack: u32 = if p.tcp_flags & 0x10 != 0 { 1 } else { 0 };
            l4.extend(ack.to_be_bytes());
            l4.extend([5 << 4, p.tcp_flags, 0xff, 0xff, 0, 0, 0, 0]);
        }
        Proto::Sctp => {
            l4.extend(p.sport.to_be_bytes());
            l4.extend(p.dport.to_be_bytes());
            l4.extend([0; 8]);
        }
        Proto::Icmp => l4.extend([p.icmp.0, p.icmp.1, 0, 0, 0, 1, 0, 1]),
    }
    l4.extend(body);

    let mut out = vec![0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02];
    if let Some(id) = p.vlan {
        out.extend(0x8100u16.to_be_bytes());
        out.extend(id.to_be_bytes());
    }
    match (p.src, p.dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            out.extend(0x0800u16.to_be_bytes());
            // A non-first fragment at offset 1480 bytes (185 units of 8).
            let frag: u16 = if p.fragment { 185 } else { 0 };
            let mut ip = vec![0x45, 0];
            ip.extend(((20 + l4.len()) as u16).to_be_bytes());
            ip.extend([0, 1]);
            ip.extend(frag.to_be_bytes());
            ip.extend([64, p.ip_proto(), 0, 0]);
            ip.extend(src.octets());
            ip.extend(dst.octets());
            let sum = checksum(&ip);
            ip[10..12].copy_from_slice(&sum.to_be_bytes());
            out.extend(ip);
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            out.extend(0x86ddu16.to_be_bytes());
            let ext = if p.fragment { 8 } else { 0 };
            out.extend([0x60, 0, 0, 0]);
            out.extend(((ext + l4.len()) as u16).to_be_bytes());
            out.extend([if p.fragment { 44 } else { p.ip_proto() }, 64]);
            out.extend(src.octets());
            out.extend(dst.octets());
            if p.fragment {
                // Next header, reserved, offset 1480 (185 << 3), no more
                // fragments, identification.
                out.extend([p.ip_proto(), 0]);
                out.extend((185u16 << 3).to_be_bytes());
                out.extend([0, 0, 0, 1]);
            }
        }
        _ => unreachable!("parse refuses mixed families"),
    }
    out.extend(l4);
    // Ethernet's minimum frame (without FCS), as a NIC hands it over.
    if out.len() < 60 {
        out.resize(60, 0);
    }
    out
}

/// The UDP destination port of an Ethernet frame (behind up to two VLAN
/// tags, IPv4 options and IPv6 extension headers), unless it is a
/// fragment or something else: what tells a frame's guard row 5 from 5c.
pub fn udp_dport(frame: &[u8]) -> Option<u16> {
    udp_ports(frame).map(|(_, dport)| dport)
}

/// The UDP source and destination ports of an Ethernet frame, as
/// [`udp_dport`] finds them: the source port tells calls mode's egress row
/// 2u from rows 3 and 8.
pub fn udp_ports(frame: &[u8]) -> Option<(u16, u16)> {
    let be16 = |at: usize| Some(u16::from_be_bytes(frame.get(at..at + 2)?.try_into().ok()?));
    let mut at = 12;
    for _ in 0..2 {
        if matches!(be16(at)?, 0x8100 | 0x88a8) {
            at += 4;
        }
    }
    let (mut proto, mut l4) = match be16(at)? {
        0x0800 => {
            let ip = at + 2;
            if be16(ip + 6)? & 0x3fff != 0 {
                return None;
            }
            (
                *frame.get(ip + 9)?,
                ip + usize::from(frame.get(ip)? & 0x0f) * 4,
            )
        }
        0x86dd => (*frame.get(at + 2 + 6)?, at + 2 + 40),
        _ => return None,
    };
    // IPv6 extension headers: hop-by-hop, routing, destination options.
    for _ in 0..8 {
        match proto {
            0 | 43 | 60 => {
                proto = *frame.get(l4)?;
                l4 += (usize::from(*frame.get(l4 + 1)?) + 1) * 8;
            }
            _ => break,
        }
    }
    (proto == PROTO_UDP).then_some(())?;
    Some((be16(l4)?, be16(l4 + 2)?))
}

/// The Internet checksum of an IPv4 header.
fn checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forms_parse() {
        let p = parse("udp 203.0.113.9:5060 > 192.0.2.1:5060").unwrap();
        assert_eq!(
            (p.proto, p.sport, p.dport, p.vlan),
            (Proto::Udp, 5060, 5060, None)
        );
        let p = parse("vlan 7 tcp [2001:db8::9]:40000 > [2001:db8::1]:5061 flags SA").unwrap();
        assert_eq!((p.vlan, p.tcp_flags, p.dport), (Some(7), 0x12, 5061));
        assert!(p.dst.is_ipv6());
        let p = parse("icmp 2001:db8::9 > 2001:db8::1 type 135").unwrap();
        assert_eq!((p.ip_proto(), p.icmp), (58, (135, 0)));
        let p = parse("sctp 198.51.100.1:5060 > 192.0.2.1:5060 fragment payload 0").unwrap();
        assert!(p.fragment && p.payload == Some(0));
    }

    #[test]
    fn anything_else_is_refused_with_the_form() {
        for bad in [
            "",
            "udp",
            "gre 1.2.3.4 > 5.6.7.8",
            "udp 203.0.113.9:5060 192.0.2.1:5060",
            "udp 203.0.113.9 > 192.0.2.1:5060",
            "udp 203.0.113.9:70000 > 192.0.2.1:5060",
            "udp 203.0.113.9:5060 > [2001:db8::1]:5060",
            "udp 2001:db8::9:5060 > 2001:db8::1:5060",
            "udp 203.0.113.9:5060 > 192.0.2.1:5060 flags S",
            "tcp 203.0.113.9:1 > 192.0.2.1:22 flags SX",
            "tcp 203.0.113.9:1 > 192.0.2.1:22 flags SS",
            "tcp 203.0.113.9:1 > 192.0.2.1:22 flags S flags A",
            "icmp 203.0.113.9:1 > 192.0.2.1",
            "icmp 203.0.113.9 > 192.0.2.1 type 300",
            "vlan 0 udp 203.0.113.9:5060 > 192.0.2.1:5060",
            "vlan 4095 udp 203.0.113.9:5060 > 192.0.2.1:5060",
            "udp 203.0.113.9:5060 > 192.0.2.1:5060 payload 99999",
            "udp 203.0.113.9:5060 > 192.0.2.1:5060 extra",
        ] {
            let e = parse(bad).expect_err(bad).0;
            assert!(e.contains("expected: "), "{bad}: {e}");
        }
    }

    #[test]
    fn frames_carry_what_was_described() {
        let f = frame(&parse("vlan 5 udp 203.0.113.9:5060 > 192.0.2.1:5062").unwrap());
        assert_eq!(&f[12..16], &[0x81, 0x00, 0, 5]);
        assert_eq!(&f[16..18], &[0x08, 0x00]);
        let ip = &f[18..];
        assert_eq!(checksum(&ip[..20]), 0, "a valid IPv4 header checksum");
        assert_eq!(&ip[12..16], &[203, 0, 113, 9]);
        assert_eq!(&ip[20..24], &[0x13, 0xc4, 0x13, 0xc6]);
        assert_eq!(ip[28], 0x80, "an RTP header by default");
        let f = frame(&parse("tcp [2001:db8::9]:1 > [2001:db8::1]:22 fragment").unwrap());
        assert_eq!((f[20], f[54]), (44, PROTO_TCP));
    }
}
