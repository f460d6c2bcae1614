//! A small frame builder for tests: Ethernet, VLAN tags, IPv4 (options,
//! fragments) or IPv6 (extension-header chains), then UDP, TCP, SCTP, ICMP
//! or raw bytes; ARP and LLDP for the non-IP cases.
//!
//! Lengths, protocol numbers, next-header chains and the IPv4 header
//! checksum are computed when the frame is built. Every computed field is an
//! `Option` a test may set to make the frame invalid on purpose, and
//! [`Frame::pad_to`] / [`Frame::cut_to`] add link padding or truncate the
//! finished frame. Transport checksums are left zero: the filter does not
//! read them.
//!
//! ```ignore
//! let frame = Frame::ipv4(src, dst).vlan(0x8100, 10).udp(5555, 5060).build();
//! let bad = Frame::ipv4(src, dst).udp(5555, 5060).ip4(|h| h.ihl = Some(4)).build();
//! ```
use std::net::{Ipv4Addr, Ipv6Addr};

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_IPV6: u16 = 0x86DD;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_LLDP: u16 = 0x88CC;
pub const TPID_8021Q: u16 = 0x8100;
pub const TPID_8021AD: u16 = 0x88A8;
pub const ETHERTYPE_PPPOE_DISCOVERY: u16 = 0x8863;
pub const ETHERTYPE_PPPOE_SESSION: u16 = 0x8864;
pub const PPP_IPV4: u16 = 0x0021;
pub const PPP_IPV6: u16 = 0x0057;
pub const PPP_LCP: u16 = 0xc021;

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ESP: u8 = 50;
pub const PROTO_ICMPV6: u8 = 58;
pub const PROTO_NO_NEXT: u8 = 59;
pub const PROTO_SCTP: u8 = 132;

/// A whole Ethernet frame, described field by field.
#[derive(Clone, Debug)]
pub struct Frame {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    /// VLAN tags, outermost first: (TPID, TCI).
    pub tags: Vec<(u16, u16)>,
    pub net: Net,
    pub l4: L4,
    /// Bytes after the transport header.
    pub payload: Vec<u8>,
    /// Zero bytes appended until the frame is this long (link padding, not
    /// counted in any IP length).
    pub pad_to: usize,
    /// Truncate the finished frame to this many bytes.
    pub cut_to: Option<usize>,
    /// What carries the network layer.
    pub link: Link,
}

/// The link layer around the network packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// Ethernet (with the frame's tags).
    Ethernet,
    /// Ethernet, the tags, then a PPPoE session header (RFC 2516) and the
    /// PPP protocol: `ppp_proto` `None` takes IPv4's or IPv6's from the
    /// packet.
    Pppoe { ppp_proto: Option<u16> },
    /// No link header: the frame is the IP packet (an L3 device's).
    None,
}

/// What follows the Ethernet header (and tags).
#[derive(Clone, Debug)]
pub enum Net {
    V4(Ipv4),
    V6(Ipv6),
    /// Any other ethertype with its bytes as they are (ARP, LLDP, ...).
    Other {
        ethertype: u16,
        body: Vec<u8>,
    },
}

#[derive(Clone, Debug)]
pub struct Ipv4 {
    /// The version nibble; 4 unless a test wants it wrong.
    pub version: u8,
    /// Header length in 32-bit words; computed from `options` when `None`.
    pub ihl: Option<u8>,
    /// Computed as header + transport + payload when `None`.
    pub total_len: Option<u16>,
    pub id: u16,
    pub dont_fragment: bool,
    pub more_fragments: bool,
    /// Fragment offset in 8-byte units.
    pub frag_offset: u16,
    pub ttl: u8,
    /// Taken from the transport layer when `None`.
    pub proto: Option<u8>,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// Option bytes, padded with zeros (end of options) to 4 bytes.
    pub options: Vec<u8>,
}

#[derive(Clone, Debug)]
pub struct Ipv6 {
    pub version: u8,
    /// Computed as extension headers + transport + payload when `None`.
    pub payload_len: Option<u16>,
    /// Taken from the first extension header or the transport when `None`.
    pub next_header: Option<u8>,
    pub hop_limit: u8,
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    /// Extension headers in order; each one's next header is computed.
    pub ext: Vec<Ext>,
}

/// An IPv6 extension header. The `len` fields are the on-wire length byte.
#[derive(Clone, Copy, Debug)]
pub enum Ext {
    /// (len + 1) * 8 bytes.
    HopByHop { len: u8 },
    /// (len + 1) * 8 bytes.
    Routing { len: u8 },
    /// (len + 1) * 8 bytes.
    DestOpts { len: u8 },
    /// 8 bytes. `offset` in 8-byte units.
    Fragment { offset: u16, more: bool },
    /// Authentication header: (len + 2) * 4 bytes.
    Ah { len: u8 },
}

impl Ext {
    pub fn proto(self) -> u8 {
        match self {
            Ext::HopByHop { .. } => 0,
            Ext::Routing { .. } => 43,
            Ext::Fragment { .. } => 44,
            Ext::Ah { .. } => 51,
            Ext::DestOpts { .. } => 60,
        }
    }

    fn bytes(self, next: u8) -> Vec<u8> {
        let (len_byte, size) = match self {
            Ext::HopByHop { len } | Ext::Routing { len } | Ext::DestOpts { len } => {
                (len, (usize::from(len) + 1) * 8)
            }
            Ext::Ah { len } => (len, (usize::from(len) + 2) * 4),
            Ext::Fragment { .. } => (0, 8),
        };
        let mut b = vec![0u8; size];
        b[0] = next;
        b[1] = len_byte;
        match self {
            Ext::HopByHop { .. } | Ext::DestOpts { .. } => {
                // PadN option filling the rest of the header.
                if size > 2 {
                    b[2] = 1;
                    b[3] = (size - 4) as u8;
                }
            }
            Ext::Fragment { offset, more } => {
                let field = (offset << 3) | u16::from(more);
                b[2..4].copy_from_slice(&field.to_be_bytes());
                b[4..8].copy_from_slice(&0x5eed_u32.to_be_bytes());
            }
            Ext::Ah { .. } => b[4..8].copy_from_slice(&0x100_u32.to_be_bytes()), // SPI
            Ext::Routing { .. } => {}
        }
        b
    }
}

/// The transport layer.
#[derive(Clone, Debug)]
pub enum L4 {
    /// Nothing after the IP header (or the `Net::Other` body).
    None,
    Udp {
        sport: u16,
        dport: u16,
        /// Computed as 8 + payload when `None`.
        len: Option<u16>,
    },
    Tcp {
        sport: u16,
        dport: u16,
        /// In 32-bit words; computed from `options` when `None`.
        data_offset: Option<u8>,
        options: Vec<u8>,
    },
    Sctp {
        sport: u16,
        dport: u16,
    },
    /// ICMP in IPv4, ICMPv6 in IPv6: type and code.
    Icmp {
        kind: u8,
        code: u8,
    },
    /// Arbitrary bytes under the given protocol number (e.g. the first four
    /// bytes of a UDP header only).
    Raw {
        proto: u8,
        bytes: Vec<u8>,
    },
}

impl L4 {
    fn proto(&self, v6: bool) -> u8 {
        match self {
            L4::None => PROTO_NO_NEXT,
            L4::Udp { .. } => PROTO_UDP,
            L4::Tcp { .. } => PROTO_TCP,
            L4::Sctp { .. } => PROTO_SCTP,
            L4::Icmp { .. } if v6 => PROTO_ICMPV6,
            L4::Icmp { .. } => PROTO_ICMP,
            L4::Raw { proto, .. } => *proto,
        }
    }

    fn header(&self, payload_len: usize) -> Vec<u8> {
        match self {
            L4::None => Vec::new(),
            L4::Udp { sport, dport, len } => {
                let len = len.unwrap_or((8 + payload_len) as u16);
                [
                    sport.to_be_bytes(),
                    dport.to_be_bytes(),
                    len.to_be_bytes(),
                    [0, 0],
                ]
                .concat()
            }
            L4::Tcp {
                sport,
                dport,
                data_offset,
                options,
            } => {
                let mut opts = options.clone();
                opts.resize(opts.len().next_multiple_of(4), 0);
                let doff = data_offset.unwrap_or((5 + opts.len() / 4) as u8);
                let mut h = [sport.to_be_bytes(), dport.to_be_bytes()].concat();
                h.extend_from_slice(&1u32.to_be_bytes()); // sequence
                h.extend_from_slice(&0u32.to_be_bytes()); // acknowledgement
                h.push(doff << 4);
                h.push(0x02); // SYN
                h.extend_from_slice(&64240u16.to_be_bytes()); // window
                h.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
                h.extend_from_slice(&opts);
                h
            }
            L4::Sctp { sport, dport } => {
                let mut h = [sport.to_be_bytes(), dport.to_be_bytes()].concat();
                h.extend_from_slice(&0u32.to_be_bytes()); // verification tag
                h.extend_from_slice(&0u32.to_be_bytes()); // checksum
                h
            }
            L4::Icmp { kind, code } => vec![*kind, *code, 0, 0, 0, 1, 0, 1],
            L4::Raw { bytes, .. } => bytes.clone(),
        }
    }
}

impl Frame {
    fn new(net: Net) -> Frame {
        Frame {
            dst_mac: [0x02, 0, 0, 0, 0, 0x01],
            src_mac: [0x02, 0, 0, 0, 0, 0x02],
            tags: Vec::new(),
            net,
            l4: L4::None,
            payload: Vec::new(),
            pad_to: 0,
            cut_to: None,
            link: Link::Ethernet,
        }
    }

    pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr) -> Frame {
        Frame::new(Net::V4(Ipv4 {
            version: 4,
            ihl: None,
            total_len: None,
            id: 0x1234,
            dont_fragment: false,
            more_fragments: false,
            frag_offset: 0,
            ttl: 64,
            proto: None,
            src,
            dst,
            options: Vec::new(),
        }))
    }

    pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr) -> Frame {
        Frame::new(Net::V6(Ipv6 {
            version: 6,
            payload_len: None,
            next_header: None,
            hop_limit: 64,
            src,
            dst,
            ext: Vec::new(),
        }))
    }

    /// A frame of another ethertype carrying `body` as it is.
    pub fn ethertype(ethertype: u16, body: Vec<u8>) -> Frame {
        Frame::new(Net::Other { ethertype, body })
    }

    /// An ARP request: who has `target`? tell `sender`.
    pub fn arp(sender: Ipv4Addr, target: Ipv4Addr) -> Frame {
        let mut body = vec![0, 1, 0x08, 0, 6, 4, 0, 1]; // Ethernet, IPv4, request
        body.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
        body.extend_from_slice(&sender.octets());
        body.extend_from_slice(&[0; 6]);
        body.extend_from_slice(&target.octets());
        let mut f = Frame::ethertype(ETHERTYPE_ARP, body);
        f.dst_mac = [0xff; 6];
        f
    }

    /// An LLDP frame with chassis id, port id, TTL and end TLVs.
    pub fn lldp() -> Frame {
        let tlv = |kind: u16, value: &[u8]| {
            let head = (kind << 9) | value.len() as u16;
            [&head.to_be_bytes()[..], value].concat()
        };
        let body = [
            tlv(1, &[4, 0x02, 0, 0, 0, 0, 0x02]), // chassis id: MAC
            tlv(2, &[5, b'e', b't', b'h', b'0']), // port id: interface name
            tlv(3, &120u16.to_be_bytes()),        // TTL
            tlv(0, &[]),                          // end
        ]
        .concat();
        let mut f = Frame::ethertype(ETHERTYPE_LLDP, body);
        f.dst_mac = [0x01, 0x80, 0xc2, 0, 0, 0x0e];
        f
    }

    /// Carries the packet in a PPPoE session (inside the tags).
    pub fn pppoe(mut self) -> Frame {
        self.link = Link::Pppoe { ppp_proto: None };
        self
    }

    /// The same with another PPP protocol than the packet's own.
    pub fn pppoe_proto(mut self, ppp_proto: u16) -> Frame {
        self.link = Link::Pppoe {
            ppp_proto: Some(ppp_proto),
        };
        self
    }

    /// The packet alone, without a link header: an L3 device's frame.
    pub fn l3(mut self) -> Frame {
        self.link = Link::None;
        self
    }

    /// Adds a VLAN tag inside the ones already there.
    pub fn vlan(mut self, tpid: u16, vid: u16) -> Frame {
        self.tags.push((tpid, vid & 0x0fff));
        self
    }

    pub fn udp(mut self, sport: u16, dport: u16) -> Frame {
        self.l4 = L4::Udp {
            sport,
            dport,
            len: None,
        };
        self
    }

    pub fn tcp(mut self, sport: u16, dport: u16) -> Frame {
        self.l4 = L4::Tcp {
            sport,
            dport,
            data_offset: None,
            options: Vec::new(),
        };
        self
    }

    pub fn sctp(mut self, sport: u16, dport: u16) -> Frame {
        self.l4 = L4::Sctp { sport, dport };
        self
    }

    /// ICMP echo request (ICMPv6 in an IPv6 frame).
    pub fn icmp_echo(mut self) -> Frame {
        let kind = if matches!(self.net, Net::V6(_)) {
            128
        } else {
            8
        };
        self.l4 = L4::Icmp { kind, code: 0 };
        self
    }

    /// An ICMP (ICMPv6 in an IPv6 frame) message of `kind` and `code`, with
    /// identifier 1 and sequence 1 in its second word.
    pub fn icmp(mut self, kind: u8, code: u8) -> Frame {
        self.l4 = L4::Icmp { kind, code };
        self
    }

    /// Raw transport bytes under protocol `proto`.
    pub fn raw(mut self, proto: u8, bytes: &[u8]) -> Frame {
        self.l4 = L4::Raw {
            proto,
            bytes: bytes.to_vec(),
        };
        self
    }

    pub fn payload(mut self, bytes: &[u8]) -> Frame {
        self.payload = bytes.to_vec();
        self
    }

    /// Appends an IPv6 extension header after the ones already there.
    pub fn ext(self, ext: Ext) -> Frame {
        self.ip6(|h| h.ext.push(ext))
    }

    /// `n` bytes of IPv4 options (NOPs, then end of options), so IHL = 5 + n/4.
    pub fn ipv4_options(self, n: usize) -> Frame {
        assert!(
            n.is_multiple_of(4) && n <= 40,
            "IPv4 options are 0-40 bytes in words"
        );
        self.ip4(|h| {
            h.options = vec![1; n];
            if n > 0 {
                h.options[n - 1] = 0;
            }
        })
    }

    /// IPv4 fragment fields: offset in 8-byte units and the MF flag.
    pub fn fragment(self, offset: u16, more: bool) -> Frame {
        self.ip4(|h| {
            h.frag_offset = offset;
            h.more_fragments = more;
        })
    }

    /// Changes IPv4 header fields; panics on a frame that is not IPv4.
    pub fn ip4(mut self, f: impl FnOnce(&mut Ipv4)) -> Frame {
        match &mut self.net {
            Net::V4(h) => f(h),
            other => panic!("ip4() on a frame that is not IPv4: {other:?}"),
        }
        self
    }

    /// Changes IPv6 header fields; panics on a frame that is not IPv6.
    pub fn ip6(mut self, f: impl FnOnce(&mut Ipv6)) -> Frame {
        match &mut self.net {
            Net::V6(h) => f(h),
            other => panic!("ip6() on a frame that is not IPv6: {other:?}"),
        }
        self
    }

    /// Changes transport fields (e.g. the UDP length or TCP data offset).
    pub fn l4(mut self, f: impl FnOnce(&mut L4)) -> Frame {
        f(&mut self.l4);
        self
    }

    pub fn pad_to(mut self, len: usize) -> Frame {
        self.pad_to = len;
        self
    }

    pub fn cut_to(mut self, len: usize) -> Frame {
        self.cut_to = Some(len);
        self
    }

    /// Length of the link headers (Ethernet with its tags, PPPoE): where
    /// the network header starts.
    pub fn l2_len(&self) -> usize {
        match self.link {
            Link::Ethernet => 14 + 4 * self.tags.len(),
            Link::Pppoe { .. } => 14 + 4 * self.tags.len() + 8,
            Link::None => 0,
        }
    }

    /// The frame's bytes.
    pub fn build(&self) -> Vec<u8> {
        let (ethertype, net) = match &self.net {
            Net::V4(h) => (ETHERTYPE_IPV4, self.build_ipv4(h)),
            Net::V6(h) => (ETHERTYPE_IPV6, self.build_ipv6(h)),
            Net::Other { ethertype, body } => {
                let mut b = body.clone();
                b.extend(self.l4.header(self.payload.len()));
                b.extend_from_slice(&self.payload);
                (*ethertype, b)
            }
        };
        let mut out = Vec::with_capacity(self.l2_len() + net.len());
        if self.link != Link::None {
            out.extend_from_slice(&self.dst_mac);
            out.extend_from_slice(&self.src_mac);
            // Each tag's TPID sits where the ethertype would be; the real
            // ethertype follows the last tag.
            for (tpid, tci) in &self.tags {
                out.extend_from_slice(&tpid.to_be_bytes());
                out.extend_from_slice(&tci.to_be_bytes());
            }
        }
        match self.link {
            Link::Ethernet => out.extend_from_slice(&ethertype.to_be_bytes()),
            Link::Pppoe { ppp_proto } => {
                let ppp_proto = ppp_proto.unwrap_or(match ethertype {
                    ETHERTYPE_IPV6 => PPP_IPV6,
                    _ => PPP_IPV4,
                });
                out.extend_from_slice(&ETHERTYPE_PPPOE_SESSION.to_be_bytes());
                // Version 1, type 1, code 0 (session data), session id, and
                // the length of the PPP protocol field and the packet.
                out.extend_from_slice(&[0x11, 0x00, 0x12, 0x34]);
                out.extend_from_slice(&((net.len() + 2) as u16).to_be_bytes());
                out.extend_from_slice(&ppp_proto.to_be_bytes());
            }
            Link::None => {}
        }
        out.extend(net);
        if out.len() < self.pad_to {
            out.resize(self.pad_to, 0);
        }
        if let Some(n) = self.cut_to {
            out.truncate(n);
        }
        out
    }

    fn transport(&self) -> Vec<u8> {
        let mut b = self.l4.header(self.payload.len());
        b.extend_from_slice(&self.payload);
        b
    }

    fn build_ipv4(&self, h: &Ipv4) -> Vec<u8> {
        let mut options = h.options.clone();
        options.resize(options.len().next_multiple_of(4), 0);
        let ihl = h.ihl.unwrap_or((5 + options.len() / 4) as u8);
        let body = self.transport();
        let total = h
            .total_len
            .unwrap_or((20 + options.len() + body.len()) as u16);
        let flags = (u16::from(h.dont_fragment) << 14) | (u16::from(h.more_fragments) << 13);
        let mut b = vec![(h.version << 4) | (ihl & 0x0f), 0];
        b.extend_from_slice(&total.to_be_bytes());
        b.extend_from_slice(&h.id.to_be_bytes());
        b.extend_from_slice(&(flags | (h.frag_offset & 0x1fff)).to_be_bytes());
        b.push(h.ttl);
        b.push(h.proto.unwrap_or(self.l4.proto(false)));
        b.extend_from_slice(&[0, 0]); // checksum, filled below
        b.extend_from_slice(&h.src.octets());
        b.extend_from_slice(&h.dst.octets());
        b.extend_from_slice(&options);
        let sum = checksum(&b);
        b[10..12].copy_from_slice(&sum.to_be_bytes());
        b.extend(body);
        b
    }

    fn build_ipv6(&self, h: &Ipv6) -> Vec<u8> {
        let l4_proto = self.l4.proto(true);
        let mut chain = Vec::new();
        for (i, ext) in h.ext.iter().enumerate() {
            let next = h.ext.get(i + 1).map_or(l4_proto, |e| e.proto());
            chain.extend(ext.bytes(next));
        }
        chain.extend(self.transport());
        let first = h.ext.first().map_or(l4_proto, |e| e.proto());
        let mut b = vec![h.version << 4, 0, 0, 0];
        b.extend_from_slice(&h.payload_len.unwrap_or(chain.len() as u16).to_be_bytes());
        b.push(h.next_header.unwrap_or(first));
        b.push(h.hop_limit);
        b.extend_from_slice(&h.src.octets());
        b.extend_from_slice(&h.dst.octets());
        b.extend(chain);
        b
    }
}

/// The Internet checksum (RFC 1071).
fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
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

    const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const B: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);

    #[test]
    fn udp_over_ipv4_has_computed_lengths_and_checksum() {
        let f = Frame::ipv4(A, B)
            .udp(1234, 5060)
            .payload(b"OPTIONS")
            .build();
        assert_eq!(f.len(), 14 + 20 + 8 + 7);
        assert_eq!(&f[12..14], &[0x08, 0x00]);
        assert_eq!(f[14], 0x45);
        assert_eq!(u16::from_be_bytes([f[16], f[17]]), 35);
        assert_eq!(f[23], PROTO_UDP);
        assert_eq!(checksum(&f[14..34]), 0, "header checksum verifies");
        assert_eq!(&f[34..38], &[0x04, 0xd2, 0x13, 0xc4]);
        assert_eq!(u16::from_be_bytes([f[38], f[39]]), 15);
    }

    #[test]
    fn tags_options_and_overrides() {
        let f = Frame::ipv4(A, B)
            .vlan(TPID_8021AD, 100)
            .vlan(TPID_8021Q, 200)
            .ipv4_options(4)
            .tcp(1, 5061)
            .ip4(|h| h.total_len = Some(3))
            .build();
        assert_eq!(&f[12..14], &[0x88, 0xa8]);
        assert_eq!(&f[16..18], &[0x81, 0x00]);
        assert_eq!(&f[20..22], &[0x08, 0x00]);
        assert_eq!(f[22], 0x46);
        assert_eq!(u16::from_be_bytes([f[24], f[25]]), 3);
        assert_eq!(f.len(), 22 + 24 + 20);
        assert_eq!(f[22 + 24 + 12] >> 4, 5);
    }

    #[test]
    fn ipv6_chain_links_next_headers() {
        let a: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let f = Frame::ipv6(a, a)
            .ext(Ext::HopByHop { len: 0 })
            .ext(Ext::Fragment {
                offset: 0,
                more: true,
            })
            .ext(Ext::Ah { len: 4 })
            .udp(1, 2)
            .build();
        let ip = &f[14..];
        assert_eq!(ip[6], 0);
        assert_eq!(u16::from_be_bytes([ip[4], ip[5]]) as usize, 8 + 8 + 24 + 8);
        assert_eq!(ip[40], 44);
        assert_eq!(ip[48], 51);
        assert_eq!(&ip[50..52], &[0, 1], "fragment offset 0, M set");
        assert_eq!(ip[56], PROTO_UDP);
        assert_eq!(ip.len(), 40 + 48);
    }

    #[test]
    fn padding_and_cutting() {
        let f = Frame::ipv4(A, B).udp(1, 2).pad_to(60).build();
        assert_eq!(f.len(), 60);
        assert_eq!(u16::from_be_bytes([f[16], f[17]]), 28);
        assert_eq!(Frame::ipv4(A, B).udp(1, 2).cut_to(14).build().len(), 14);
    }
}
