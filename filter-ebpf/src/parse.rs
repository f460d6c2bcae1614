//! Header parsing: Ethernet, VLAN tags, IPv4/IPv6 (with options and extension
//! headers) and the ports of UDP, TCP and SCTP. Every read is bounds-checked
//! against the packet's end; nothing assumes a fixed header length.
use aya_ebpf::programs::XdpContext;
use filter_common::{MAX_IPV4_AH_HEADERS, MAX_IPV6_EXT_HEADERS, MAX_VLAN_TAGS};

const ETH_HLEN: usize = 14;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;

pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_SCTP: u8 = 132;
const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_AH: u8 = 51;
const IPPROTO_DSTOPTS: u8 = 60;

/// Farthest offset the IPv6 walk may reach; keeps offsets bounded for the
/// verifier (8 headers of at most 2 KiB each stay below it).
const MAX_L4_OFFSET: usize = 0x5000;

/// A source address as found in the packet, network byte order.
#[derive(Clone, Copy)]
pub enum Source {
    V4([u8; 4]),
    V6([u8; 16]),
}

/// What the parser learnt about a packet.
pub enum Parsed {
    /// Not IPv4 or IPv6.
    NonIp,
    /// A header is cut short or invalid.
    Malformed,
    /// A non-first fragment: no transport header to read.
    Fragment,
    /// A UDP, TCP or SCTP packet (or first fragment) with its ports.
    Ports { proto: u8, src: Source, dport: u16 },
    /// Any other IP packet (ICMP, ESP, ...).
    OtherProto,
}

/// The packet's bytes and its length. Offsets are from the frame's start.
struct Packet<'a> {
    ctx: &'a XdpContext,
    len: usize,
}

impl Packet<'_> {
    /// Pointer to a `T` at `off`, or `None` when it would run past the end.
    #[inline(always)]
    fn ptr_at<T>(&self, off: usize) -> Option<*const T> {
        let start = self.ctx.data();
        if start + off + core::mem::size_of::<T>() > self.ctx.data_end() {
            return None;
        }
        Some((start + off) as *const T)
    }

    #[inline(always)]
    fn u16_at(&self, off: usize) -> Option<u16> {
        // SAFETY: `ptr_at` checked that the two bytes lie within the packet.
        self.ptr_at::<[u8; 2]>(off)
            .map(|p| u16::from_be_bytes(unsafe { *p }))
    }

    #[inline(always)]
    fn bytes_at<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        // SAFETY: `ptr_at` checked that the N bytes lie within the packet.
        self.ptr_at::<[u8; N]>(off).map(|p| unsafe { *p })
    }
}

#[inline(always)]
pub fn parse(ctx: &XdpContext) -> Parsed {
    let pkt = Packet {
        ctx,
        len: ctx.data_end() - ctx.data(),
    };
    let Some(mut ethertype) = pkt.u16_at(ETH_HLEN - 2) else {
        return Parsed::Malformed;
    };
    let mut off = ETH_HLEN;
    for _ in 0..MAX_VLAN_TAGS {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        // A tag is 2 bytes of TCI, then the inner ethertype.
        let Some(inner) = pkt.u16_at(off + 2) else {
            return Parsed::Malformed;
        };
        ethertype = inner;
        off += 4;
    }
    match ethertype {
        ETH_P_IPV4 => parse_ipv4(&pkt, off),
        ETH_P_IPV6 => parse_ipv6(&pkt, off),
        // More tags than we walk: the stack could still unwrap them, so the
        // frame must not pass as "not IP".
        ETH_P_8021Q | ETH_P_8021AD => Parsed::Malformed,
        _ => Parsed::NonIp,
    }
}

#[inline(always)]
fn parse_ipv4(pkt: &Packet, off: usize) -> Parsed {
    // Fixed part of the header: version/IHL .. destination address.
    let Some(hdr) = pkt.bytes_at::<20>(off) else {
        return Parsed::Malformed;
    };
    let ihl = (hdr[0] & 0x0f) as usize;
    if hdr[0] >> 4 != 4 || ihl < 5 {
        return Parsed::Malformed;
    }
    let hdr_len = ihl * 4;
    let total_len = u16::from_be_bytes([hdr[2], hdr[3]]) as usize;
    if off + hdr_len > pkt.len || total_len < hdr_len {
        return Parsed::Malformed;
    }
    let frag = u16::from_be_bytes([hdr[6], hdr[7]]);
    if frag & 0x1fff != 0 {
        return Parsed::Fragment;
    }
    let src = Source::V4([hdr[12], hdr[13], hdr[14], hdr[15]]);
    // Bytes past the IP total length are link padding, not transport header.
    let end = min(pkt.len, off + total_len);
    let mut proto = hdr[9];
    let mut cur = off + hdr_len;
    // IPsec AH (transport mode) sits between the IPv4 header and the
    // transport header: walk it as IPv6's chain walks it, so that ports
    // behind it are judged too.
    for _ in 0..MAX_IPV4_AH_HEADERS {
        if proto != IPPROTO_AH {
            return parse_l4(pkt, proto, cur, end, src);
        }
        let Some(ah) = pkt.bytes_at::<2>(cur) else {
            return Parsed::Malformed;
        };
        let len = (ah[1] as usize + 2) * 4;
        if cur + len > end {
            return Parsed::Malformed;
        }
        proto = ah[0];
        cur += len;
    }
    if proto == IPPROTO_AH {
        return Parsed::Malformed;
    }
    parse_l4(pkt, proto, cur, end, src)
}

#[inline(always)]
fn parse_ipv6(pkt: &Packet, off: usize) -> Parsed {
    let Some(hdr) = pkt.bytes_at::<8>(off) else {
        return Parsed::Malformed;
    };
    let Some(src) = pkt.bytes_at::<16>(off + 8) else {
        return Parsed::Malformed;
    };
    if hdr[0] >> 4 != 6 || off + 40 > pkt.len {
        return Parsed::Malformed;
    }
    let payload_len = u16::from_be_bytes([hdr[4], hdr[5]]) as usize;
    let end = min(pkt.len, off + 40 + payload_len);
    let mut next = hdr[6];
    let mut cur = off + 40;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        // Every extension header starts with its next header and a length
        // byte; the fragment header also needs its offset field.
        let len = match next {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                let Some(h) = pkt.bytes_at::<2>(cur) else {
                    return Parsed::Malformed;
                };
                (h[1] as usize + 1) * 8
            }
            IPPROTO_AH => {
                let Some(h) = pkt.bytes_at::<2>(cur) else {
                    return Parsed::Malformed;
                };
                (h[1] as usize + 2) * 4
            }
            IPPROTO_FRAGMENT => 8,
            _ => return parse_l4(pkt, next, cur, end, Source::V6(src)),
        };
        // The whole header must fit before any of it is believed, the
        // fragment header's offset included.
        if cur + len > end {
            return Parsed::Malformed;
        }
        let Some(h) = pkt.bytes_at::<4>(cur) else {
            return Parsed::Malformed;
        };
        if next == IPPROTO_FRAGMENT && u16::from_be_bytes([h[2], h[3]]) & 0xfff8 != 0 {
            return Parsed::Fragment;
        }
        next = h[0];
        cur += len;
        if cur > MAX_L4_OFFSET {
            return Parsed::Malformed;
        }
    }
    // Still an extension header after as many as we walk.
    match next {
        IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_AH | IPPROTO_FRAGMENT => {
            Parsed::Malformed
        }
        _ => parse_l4(pkt, next, cur, end, Source::V6(src)),
    }
}

/// Reads the destination port of UDP, TCP and SCTP, whose headers must be
/// complete within `end` (the IP packet's end).
#[inline(always)]
fn parse_l4(pkt: &Packet, proto: u8, off: usize, end: usize, src: Source) -> Parsed {
    let min_len = match proto {
        IPPROTO_UDP => 8,
        IPPROTO_TCP => 20,
        IPPROTO_SCTP => 12,
        _ => return Parsed::OtherProto,
    };
    if off + min_len > end {
        return Parsed::Malformed;
    }
    let Some(ports) = pkt.bytes_at::<4>(off) else {
        return Parsed::Malformed;
    };
    if proto == IPPROTO_TCP {
        // The data offset counts the header with its options.
        let Some(doff) = pkt.bytes_at::<2>(off + 12) else {
            return Parsed::Malformed;
        };
        let hdr_len = (doff[0] >> 4) as usize * 4;
        if hdr_len < 20 || off + hdr_len > end {
            return Parsed::Malformed;
        }
    }
    Parsed::Ports {
        proto,
        src,
        dport: u16::from_be_bytes([ports[2], ports[3]]),
    }
}

#[inline(always)]
fn min(a: usize, b: usize) -> usize {
    if a < b {
        a
    } else {
        b
    }
}
