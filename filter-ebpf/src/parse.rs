//! Header parsing: Ethernet, VLAN tags, PPPoE sessions, or no link header
//! at all (L3 devices), then IPv4/IPv6 (with options and extension headers)
//! and the ports of UDP, TCP and SCTP.
//!
//! Fields are read in place, each with one load of its own width through
//! [`Packet::ptr_at`], the one bounds check. The common case, an untagged
//! IPv4 packet without options, takes [`plain_ipv4`]: one bounds check,
//! then loads at fixed offsets; guard mode also reads untagged IPv6 with
//! ports right after its fixed header through [`plain_ipv6_ports`].
//! Everything else takes the general walk ([`parse_general`]), which never
//! assumes a 14-byte Ethernet or a 20-byte IPv4 header, and decides the same
//! for the packets the fast paths take.
use filter_common::{
    FLAG_L3, FLAG_UNUSED_SHIFT, MAX_IPV4_AH_HEADERS, MAX_IPV6_EXT_HEADERS, MAX_VLAN_TAGS,
};

const ETH_HLEN: usize = 14;
const IPV4_HLEN: usize = 20;
const IPV6_HLEN: usize = 40;
const TCP_HLEN: usize = 20;

const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;
/// PPPoE session stage (RFC 2516); its discovery stage (0x8863) is not IP.
const ETH_P_PPPOE_SESSION: u16 = 0x8864;
/// The PPPoE session header before the PPP protocol field.
const PPPOE_HLEN: usize = 6;
/// PPP protocol numbers of IPv4 and IPv6.
const PPP_IPV4: u16 = 0x0021;
const PPP_IPV6: u16 = 0x0057;

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const IPPROTO_SCTP: u8 = 132;
const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_AH: u8 = 51;
const IPPROTO_DSTOPTS: u8 = 60;

/// IPv4's flags and fragment offset field: the offset's 13 bits.
const IPV4_FRAG_OFFSET: u16 = 0x1fff;

/// Farthest offset the IPv6 walk may reach; keeps offsets bounded for the
/// verifier (8 headers of at most 2 KiB each stay below it).
const MAX_L4_OFFSET: usize = 0x5000;

/// Bytes the IPv4 fast path checks at once: Ethernet, an IPv4 header
/// without options and a TCP header without options (the longest of the
/// three transport headers it reads). Shorter frames take the general walk.
const PLAIN_IPV4_BYTES: usize = ETH_HLEN + IPV4_HLEN + TCP_HLEN;

/// What the parser learnt about a packet: small and register-sized.
pub enum Parsed {
    /// Not IPv4 or IPv6.
    NonIp,
    /// A header is cut short or invalid.
    Malformed,
    /// A non-first fragment: no transport header to read. The source (as
    /// in `Ports`) is there for the ban set.
    Fragment { v6: bool, src: [u64; 2] },
    /// Any other IP packet (ICMP, ESP, ...).
    OtherProto {
        v6: bool,
        proto: u8,
        /// As in `Ports`.
        src: [u64; 2],
        /// Offset of the IP header (strict mode reads the destination).
        l3: usize,
        /// ICMP's header as strict mode needs it (see [`icmp_head`]); 0
        /// for other protocols. Read here, where the header's offset is
        /// known, so that the decision does not carry offsets that differ
        /// with every header chain (each would be verified on its own).
        icmp: u32,
    },
    /// A UDP, TCP or SCTP packet (or first fragment).
    Ports {
        v6: bool,
        proto: u8,
        /// Source then destination port as one load from the packet (see
        /// [`sport`] and [`dport`]).
        ports: u32,
        /// The source as the denied-sources key holds it (IPv4 as
        /// `::ffff:a.b.c.d`), its 16 bytes as two native words: see
        /// [`v4_key`].
        src: [u64; 2],
        /// UDP whose payload could be RTP or RTCP: at least 12 bytes,
        /// version 2 in the first byte's top bits.
        rtp_like: bool,
        /// Offset of the IP header (strict mode reads the destination).
        l3: usize,
    },
}

/// Bytes of an RTP header without CSRCs: the shortest RTP (or RTCP, as
/// RFC 3550 compounds it) payload `check_rtp` passes.
const RTP_MIN: usize = 12;
/// The first byte's top two bits of RTP and RTCP version 2.
const RTP_VERSION_2: u8 = 0x80;

/// Whether a UDP payload starting with `first` and `len` bytes long could
/// be RTP or RTCP (RFC 7983 puts 128-191 there; SRTP keeps it in clear).
#[inline(always)]
fn rtp_like(first: u8, len: usize) -> bool {
    len >= RTP_MIN && first & 0xc0 == RTP_VERSION_2
}

/// `Parsed::OtherProto::icmp`: the type, code and checksum (4 bytes) lie
/// within the IP packet.
pub const ICMP_HEAD: u32 = 1 << 31;
/// ... and so does the rest of the 8-byte header (an echo's identifier).
pub const ICMP_FULL: u32 = 1 << 30;

/// The ICMP (v4) or ICMPv6 (v6) header at `l4`, for a packet of IP
/// protocol `proto` ending at `end`: [`ICMP_HEAD`] and the type in the low
/// byte when 4 bytes are there, plus [`ICMP_FULL`] and the identifier (as
/// loaded, bytes 4-5) in bits 8-23 when 8 are. 0 when it is not ICMP of
/// the packet's family or is cut shorter.
#[inline(always)]
fn icmp_head(pkt: Packet, v6: bool, proto: u8, l4: usize, end: usize) -> u32 {
    let icmp = if v6 { IPPROTO_ICMPV6 } else { IPPROTO_ICMP };
    if proto != icmp || l4 + 4 > end {
        return 0;
    }
    // The 4-byte head in one load: a 1-byte load's bounds check comes out
    // in a form the verifier cannot follow. The type is its first byte.
    let Some(first4) = pkt.load::<u32>(l4) else {
        return 0;
    };
    let head = ICMP_HEAD | (first4 & 0xff);
    if l4 + 8 > end {
        return head;
    }
    match pkt.load::<u16>(l4 + 4) {
        Some(id) => head | ICMP_FULL | (u32::from(id) << 8),
        None => head,
    }
}

/// The echo identifier (as loaded) of an `icmp` with [`ICMP_FULL`].
#[inline(always)]
pub fn icmp_id(icmp: u32) -> u16 {
    (icmp >> 8) as u16
}

/// The source port (host byte order) of `Parsed::Ports::ports`.
#[inline(always)]
pub fn sport(ports: u32) -> u16 {
    u16::from_be(ports as u16)
}

/// The destination port (host byte order) of `Parsed::Ports::ports`.
#[inline(always)]
pub fn dport(ports: u32) -> u16 {
    u16::from_be((ports >> 16) as u16)
}

/// The key words of an IPv4 source as loaded from the packet (a b c d in
/// memory order): bytes 8..16 of the key are 00 00 ff ff a b c d, the
/// second little-endian word. Built in registers: no byte stores that a
/// wider load would read back.
#[inline(always)]
pub fn v4_key(src: u32) -> [u64; 2] {
    [0, 0xffff_0000 | (u64::from(src) << 32)]
}

/// The IPv4 address of a key built by [`v4_key`] as the packet holds it:
/// its 4 bytes in memory order, as a native u32.
#[inline(always)]
pub fn v4_address(key: [u64; 2]) -> u32 {
    (key[1] >> 32) as u32
}

/// The IPv4 source (host byte order) of a key built by [`v4_key`].
#[inline(always)]
pub fn v4_of_key(key: [u64; 2]) -> u32 {
    u32::from_be(v4_address(key))
}

// The key words assume the little-endian BPF target (bpfel).
#[cfg(not(target_endian = "little"))]
compile_error!("v4_key assumes a little-endian BPF target (bpfel)");

/// Where the transport header starts and the IP packet ends.
struct L4 {
    proto: u8,
    off: usize,
    end: usize,
}

/// The frame's bounds. Offsets are from the frame's start.
#[derive(Clone, Copy)]
pub struct Packet {
    start: usize,
    end: usize,
}

impl Packet {
    #[inline(always)]
    pub fn new(start: usize, end: usize) -> Packet {
        Packet { start, end }
    }

    /// Pointer to a `T` at `off`, or `None` when it would run past the end:
    /// the one bounds check every read goes through.
    #[inline(always)]
    fn ptr_at<T>(self, off: usize) -> Option<*const T> {
        if self.start + off + core::mem::size_of::<T>() > self.end {
            return None;
        }
        Some((self.start + off) as *const T)
    }

    /// One load of a field's own width (`u8`, `u16`, `u32` or `[u64; 2]`),
    /// in network byte order.
    #[inline(always)]
    pub fn load<T: Copy>(self, off: usize) -> Option<T> {
        // SAFETY: `ptr_at` checked that the `T` lies within the frame. The
        // kernel allows packet loads at any alignment (no
        // BPF_F_STRICT_ALIGNMENT), and the BPF backend emits one load of
        // the width of `T` for it, where an unaligned read would be split
        // into byte loads.
        self.ptr_at::<T>(off).map(|p| unsafe { p.read() })
    }

    fn len(self) -> usize {
        self.end - self.start
    }

    /// The part of the frame from `off` on.
    #[inline(always)]
    fn at(self, off: usize) -> Packet {
        Packet {
            start: self.start + off,
            end: self.end,
        }
    }
}

/// Reads a `T` at `off` from a block `ptr_at` has already checked.
///
/// # Safety
/// `off + size_of::<T>()` must lie within the checked block.
#[inline(always)]
unsafe fn field<T: Copy>(block: *const u8, off: usize) -> T {
    // SAFETY: in bounds by the caller's contract; alignment as in
    // `Packet::load`.
    unsafe { block.add(off).cast::<T>().read() }
}

/// The destination address of a packet whose IP header is at `l3`, as
/// [`Parsed::Ports::src`] holds a source.
#[inline(always)]
pub fn destination(pkt: Packet, v6: bool, l3: usize) -> Option<[u64; 2]> {
    if v6 {
        pkt.load::<[u64; 2]>(l3 + 24)
    } else {
        pkt.load::<u32>(l3 + 16).map(v4_key)
    }
}

/// What the packet is, by the policy's `flags`: on Ethernet, the IPv4
/// fast path's fields for an untagged IPv4 packet without options
/// ([`plain_ipv4`]), the general walk for everything else; on an L3 device
/// ([`FLAG_L3`]), the general walk (the egress program's parser; the XDP
/// program does the same with the fields it has already read).
#[inline(always)]
pub fn parse(pkt: Packet, flags: u32) -> Parsed {
    let l3 = flags & FLAG_L3 != 0;
    match if l3 { None } else { plain_ipv4(pkt) } {
        Some(plain) => plain.parsed(pkt),
        None => parse_general(pkt, flags),
    }
}

/// The length of a UDP, TCP (its data offset, options included) or SCTP
/// header, for the fast paths; `None` for other protocols.
#[inline(always)]
fn transport_len(proto: u8, tcp_doff: u8) -> Option<usize> {
    match proto {
        IPPROTO_UDP => Some(8),
        IPPROTO_TCP => Some((tcp_doff >> 4) as usize * 4),
        IPPROTO_SCTP => Some(12),
        _ => None,
    }
}

/// Whether a transport header of `hdr_len` bytes at `l4` lies within the
/// IP packet ending at `end` (and TCP's is at least its fixed part): what
/// the general walk's `ports` demands before it reads ports.
#[inline(always)]
fn ports_fit(proto: u8, hdr_len: usize, l4: usize, end: usize) -> bool {
    l4 + hdr_len <= end && (proto != IPPROTO_TCP || hdr_len >= TCP_HLEN)
}

/// Bytes the IPv6 fast path checks at once: Ethernet, the fixed IPv6
/// header and a TCP header without options.
const PLAIN_IPV6_BYTES: usize = ETH_HLEN + IPV6_HLEN + TCP_HLEN;

/// The IPv6 fast path: an untagged IPv6 packet whose fixed header is
/// followed directly by well-formed UDP, TCP or SCTP, as the general walk
/// would give it (always `Parsed::Ports`), or `None` for every other frame
/// (extension headers, other protocols, anything cut short, shorter
/// frames), which the general walk decides.
#[inline(always)]
pub fn plain_ipv6_ports(pkt: Packet) -> Option<Parsed> {
    const IP: usize = ETH_HLEN;
    const L4: usize = ETH_HLEN + IPV6_HLEN;
    let block = pkt.ptr_at::<[u8; PLAIN_IPV6_BYTES]>(0)?.cast::<u8>();
    // SAFETY: every offset lies within the PLAIN_IPV6_BYTES checked.
    let (ethertype, version, payload_len, proto, src, ports, tcp_doff, udp_first) = unsafe {
        (
            field::<u16>(block, 12),
            field::<u8>(block, IP),
            u16::from_be(field(block, IP + 4)) as usize,
            field::<u8>(block, IP + 6),
            field::<[u64; 2]>(block, IP + 8),
            field::<u32>(block, L4),
            field::<u8>(block, L4 + 12),
            field::<u8>(block, L4 + 8),
        )
    };
    if ethertype != ETH_P_IPV6.to_be() || version >> 4 != 6 {
        return None;
    }
    let end = min(pkt.len(), L4 + payload_len);
    if !ports_fit(proto, transport_len(proto, tcp_doff)?, L4, end) {
        return None;
    }
    let payload = L4 + 8;
    Some(Parsed::Ports {
        v6: true,
        proto,
        ports,
        src,
        // UDP's 8 bytes fit (`ports_fit`), so `payload <= end`.
        rtp_like: proto == IPPROTO_UDP && rtp_like(udp_first, end - payload),
        l3: IP,
    })
}

/// The fields of an untagged IPv4 packet without options, read at fixed
/// offsets from the first `PLAIN_IPV4_BYTES` of the frame.
pub struct PlainIpv4 {
    total_len: usize,
    frag: u16,
    proto: u8,
    src: u32,
    ports: u32,
    tcp_doff: u8,
    udp_first: u8,
}

const PLAIN_IP: usize = ETH_HLEN;
const PLAIN_L4: usize = ETH_HLEN + IPV4_HLEN;

/// The fast path's check: one bounds check for `PLAIN_IPV4_BYTES`, then
/// loads at fixed offsets; `None` when the frame is not such a packet
/// (tagged, IPv6, IPv4 with options, or shorter).
#[inline(always)]
pub fn plain_ipv4(pkt: Packet) -> Option<PlainIpv4> {
    let block = pkt.ptr_at::<[u8; PLAIN_IPV4_BYTES]>(0)?.cast::<u8>();
    // SAFETY: every offset lies within the PLAIN_IPV4_BYTES checked.
    unsafe {
        if field::<u16>(block, 12) != ETH_P_IPV4.to_be() || field::<u8>(block, ETH_HLEN) != 0x45 {
            return None;
        }
        Some(PlainIpv4 {
            total_len: u16::from_be(field(block, PLAIN_IP + 2)) as usize,
            frag: u16::from_be(field(block, PLAIN_IP + 6)),
            proto: field::<u8>(block, PLAIN_IP + 9),
            src: field::<u32>(block, PLAIN_IP + 12),
            ports: field::<u32>(block, PLAIN_L4),
            tcp_doff: field::<u8>(block, PLAIN_L4 + 12),
            udp_first: field::<u8>(block, PLAIN_L4 + 8),
        })
    }
}

impl PlainIpv4 {
    /// Where the IP packet ends: bytes past its total length are link
    /// padding, not transport header.
    #[inline(always)]
    fn end(&self, pkt: Packet) -> usize {
        min(pkt.len(), PLAIN_IP + self.total_len)
    }

    /// The transport header's length for the protocols with ports (TCP's
    /// data offset counts its options).
    #[inline(always)]
    fn transport_len(&self) -> Option<usize> {
        transport_len(self.proto, self.tcp_doff)
    }

    /// What [`PlainIpv4::parsed`] gives when that is `Parsed::Ports`
    /// (well-formed UDP, TCP or SCTP, not a non-first fragment), else
    /// `None`. Its caller can decide such a packet without the other
    /// variants in the way, which keeps the fields in registers.
    #[inline(always)]
    pub fn ports(&self, pkt: Packet) -> Option<Parsed> {
        if self.total_len < IPV4_HLEN || self.frag & IPV4_FRAG_OFFSET != 0 {
            return None;
        }
        let hdr_len = self.transport_len()?;
        self.ports_parsed(self.end(pkt), hdr_len)
    }

    /// `Parsed::Ports` when the transport header of `hdr_len` bytes lies
    /// within the packet, `None` when it is cut short or (TCP) shorter
    /// than its fixed part: malformed.
    #[inline(always)]
    fn ports_parsed(&self, end: usize, hdr_len: usize) -> Option<Parsed> {
        if !ports_fit(self.proto, hdr_len, PLAIN_L4, end) {
            return None;
        }
        Some(Parsed::Ports {
            v6: false,
            proto: self.proto,
            ports: self.ports,
            src: v4_key(self.src),
            rtp_like: rtp_like(self.udp_first, end.saturating_sub(PLAIN_L4 + 8)),
            l3: PLAIN_IP,
        })
    }

    /// What the general walk would make of the packet; IPsec AH is handed
    /// on to it.
    #[inline(always)]
    pub fn parsed(&self, pkt: Packet) -> Parsed {
        if self.total_len < IPV4_HLEN {
            return Parsed::Malformed;
        }
        if self.frag & IPV4_FRAG_OFFSET != 0 {
            return Parsed::Fragment {
                v6: false,
                src: v4_key(self.src),
            };
        }
        let end = self.end(pkt);
        if self.proto == IPPROTO_AH {
            return parse_general(pkt, 0);
        }
        let Some(hdr_len) = self.transport_len() else {
            return Parsed::OtherProto {
                v6: false,
                proto: self.proto,
                src: v4_key(self.src),
                l3: PLAIN_IP,
                icmp: icmp_head(pkt, false, self.proto, PLAIN_L4, end),
            };
        };
        self.ports_parsed(end, hdr_len).unwrap_or(Parsed::Malformed)
    }
}

/// The general walk, by the policy's `flags`: from the link header
/// (Ethernet with up to two VLAN tags and PPPoE, or none on an L3 device:
/// [`FLAG_L3`]) to the IP header, then IPv4 with options and AH, IPv6 with
/// extension headers.
#[inline(always)]
pub fn parse_general(pkt: Packet, flags: u32) -> Parsed {
    let start = if flags & FLAG_L3 != 0 {
        ip_start_l3(pkt)
    } else {
        ip_start_ethernet(pkt)
    };
    let (v6, off) = match start {
        IpStart::V4(off) => (false, off),
        IpStart::V6(off) => (true, off),
        IpStart::NonIp => return Parsed::NonIp,
        IpStart::Malformed => return Parsed::Malformed,
    };
    // The flags' unused bits are zero, which the verifier cannot know: to
    // it the offset becomes any number below 32, the same on every way
    // here, and those ways are checked as one (see `FLAG_UNUSED_SHIFT`).
    let zero = (flags >> FLAG_UNUSED_SHIFT) as usize;
    let off = (off + zero) & IP_OFFSET_MASK;
    // The verifier keeps that bound; the compiler must not use it to drop
    // the header's own bounds check (see `unproven`).
    let off = unproven(off);
    if v6 {
        parse_ipv6(pkt, off)
    } else {
        parse_ipv4(pkt, off)
    }
}

/// Every offset the IP header can start at (at most Ethernet, two tags
/// and PPPoE: 30 bytes) is below this plus one.
const IP_OFFSET_MASK: usize = 31;
const _: () = assert!(ETH_HLEN + 8 + PPPOE_HLEN + 2 <= IP_OFFSET_MASK);

/// `x`, as a value the compiler knows nothing of (the verifier still
/// knows what it knew). The IP header's offset and the IP packet's end are
/// passed through this: from what it knows of them the compiler would drop
/// frame-bounds checks that earlier checks imply, and the verifier, which
/// knows the IP header's start only as a range, needs those checks.
#[inline(always)]
fn unproven(x: usize) -> usize {
    // SAFETY: a read of a local just written.
    unsafe { core::ptr::read_volatile(&x) }
}

/// Where the IP header starts, and which IP it is.
enum IpStart {
    V4(usize),
    V6(usize),
    NonIp,
    Malformed,
}

/// An L3 device's frame is the IP packet itself: its version nibble says
/// which. Such a device carries nothing but IP, so any other first nibble
/// (or no first byte) is malformed, never "not IP".
#[inline(always)]
fn ip_start_l3(pkt: Packet) -> IpStart {
    // A 2-byte load: a 1-byte one's bounds check comes out in a form the
    // verifier cannot follow. The first byte is the low one (bpfel).
    match pkt.load::<u16>(0).map(|first| (first as u8) >> 4) {
        Some(4) => IpStart::V4(0),
        Some(6) => IpStart::V6(0),
        _ => IpStart::Malformed,
    }
}

/// Ethernet, up to two VLAN tags, and a PPPoE session header whose PPP
/// protocol is IPv4 or IPv6.
#[inline(always)]
fn ip_start_ethernet(pkt: Packet) -> IpStart {
    let Some(mut ethertype) = pkt.load::<u16>(ETH_HLEN - 2) else {
        return IpStart::Malformed;
    };
    let mut off = ETH_HLEN;
    for _ in 0..MAX_VLAN_TAGS {
        if ethertype != ETH_P_8021Q.to_be() && ethertype != ETH_P_8021AD.to_be() {
            break;
        }
        // A tag is 2 bytes of TCI, then the inner ethertype.
        let Some(inner) = pkt.load::<u16>(off + 2) else {
            return IpStart::Malformed;
        };
        ethertype = inner;
        off += 4;
    }
    if ethertype == ETH_P_IPV4.to_be() {
        IpStart::V4(off)
    } else if ethertype == ETH_P_IPV6.to_be() {
        IpStart::V6(off)
    } else if ethertype == ETH_P_PPPOE_SESSION.to_be() {
        // Version/type, code, session id and length, then the PPP
        // protocol: the kernel's PPPoE hands IPv4 and IPv6 to ppp0, so
        // those are judged like any IP packet; LCP, IPCP and the rest stay
        // with pppd.
        let Some(ppp_proto) = pkt.load::<u16>(off + PPPOE_HLEN) else {
            return IpStart::Malformed;
        };
        let inner = off + PPPOE_HLEN + 2;
        if ppp_proto == PPP_IPV4.to_be() {
            IpStart::V4(inner)
        } else if ppp_proto == PPP_IPV6.to_be() {
            IpStart::V6(inner)
        } else {
            IpStart::NonIp
        }
    } else if ethertype == ETH_P_8021Q.to_be() || ethertype == ETH_P_8021AD.to_be() {
        // More tags than we walk: the stack could still unwrap them, so the
        // frame must not pass as "not IP".
        IpStart::Malformed
    } else {
        IpStart::NonIp
    }
}

#[inline(always)]
fn parse_ipv4(frame: Packet, off: usize) -> Parsed {
    // Offsets from here on count from the IP header (`pkt`), whose start
    // the verifier knows only as a range: constant offsets from it are
    // what it follows. `off` is where the frame has it.
    let pkt = frame.at(off);
    // The fixed part of the header must be there before any of it is read.
    let Some(hdr) = pkt.ptr_at::<[u8; IPV4_HLEN]>(0) else {
        return Parsed::Malformed;
    };
    let hdr = hdr.cast::<u8>();
    // SAFETY: every offset lies within the IPV4_HLEN bytes checked.
    let (version_ihl, total_len, frag, proto, src) = unsafe {
        (
            field::<u8>(hdr, 0),
            field::<u16>(hdr, 2),
            field::<u16>(hdr, 6),
            field::<u8>(hdr, 9),
            field::<u32>(hdr, 12),
        )
    };
    let ihl = (version_ihl & 0x0f) as usize;
    if version_ihl >> 4 != 4 || ihl < 5 {
        return Parsed::Malformed;
    }
    let hdr_len = ihl * 4;
    let total_len = u16::from_be(total_len) as usize;
    if hdr_len > pkt.len() || total_len < hdr_len {
        return Parsed::Malformed;
    }
    if u16::from_be(frag) & IPV4_FRAG_OFFSET != 0 {
        return Parsed::Fragment {
            v6: false,
            src: v4_key(src),
        };
    }
    // Bytes past the IP total length are link padding, not transport header.
    let end = unproven(min(pkt.len(), total_len));
    let mut proto = proto;
    let mut cur = hdr_len;
    // IPsec AH (transport mode) sits between the IPv4 header and the
    // transport header: walk it as IPv6's chain walks it, so that ports
    // behind it are judged too.
    for _ in 0..MAX_IPV4_AH_HEADERS {
        if proto != IPPROTO_AH {
            break;
        }
        let Some((next, len)) = pkt.load::<u16>(cur).map(next_and_len) else {
            return Parsed::Malformed;
        };
        let len = (len as usize + 2) * 4;
        if cur + len > end {
            return Parsed::Malformed;
        }
        proto = next;
        cur += len;
    }
    if proto == IPPROTO_AH {
        return Parsed::Malformed;
    }
    match ports(
        pkt,
        L4 {
            proto,
            off: cur,
            end,
        },
    ) {
        Ports::Other => Parsed::OtherProto {
            v6: false,
            proto,
            src: v4_key(src),
            l3: off,
            icmp: icmp_head(pkt, false, proto, cur, end),
        },
        Ports::Malformed => Parsed::Malformed,
        Ports::Both(ports, rtp_like) => Parsed::Ports {
            v6: false,
            proto,
            ports,
            src: v4_key(src),
            rtp_like,
            l3: off,
        },
    }
}

#[inline(always)]
fn parse_ipv6(frame: Packet, off: usize) -> Parsed {
    // Offsets count from the IP header, as in `parse_ipv4`.
    let pkt = frame.at(off);
    let Some(hdr) = pkt.ptr_at::<[u8; IPV6_HLEN]>(0) else {
        return Parsed::Malformed;
    };
    let hdr = hdr.cast::<u8>();
    // SAFETY: every offset lies within the IPV6_HLEN bytes checked.
    let (version, payload_len, next, src) = unsafe {
        (
            field::<u8>(hdr, 0),
            field::<u16>(hdr, 4),
            field::<u8>(hdr, 6),
            field::<[u64; 2]>(hdr, 8),
        )
    };
    if version >> 4 != 6 {
        return Parsed::Malformed;
    }
    let end = unproven(min(
        pkt.len(),
        IPV6_HLEN + u16::from_be(payload_len) as usize,
    ));
    let mut next = next;
    let mut cur = IPV6_HLEN;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        // Every extension header starts with its next header and a length
        // byte; the fragment header also needs its offset field.
        if !is_extension_header(next) {
            break;
        }
        let Some((after, len)) = pkt.load::<u16>(cur).map(next_and_len) else {
            return Parsed::Malformed;
        };
        let len = match next {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => (len as usize + 1) * 8,
            IPPROTO_AH => (len as usize + 2) * 4,
            _ => 8, // IPPROTO_FRAGMENT
        };
        // The whole header must fit before any of it is believed, the
        // fragment header's offset included.
        if cur + len > end {
            return Parsed::Malformed;
        }
        if next == IPPROTO_FRAGMENT {
            let Some(frag) = pkt.load::<u16>(cur + 2) else {
                return Parsed::Malformed;
            };
            if u16::from_be(frag) & 0xfff8 != 0 {
                return Parsed::Fragment { v6: true, src };
            }
        }
        next = after;
        cur += len;
        if cur > MAX_L4_OFFSET {
            return Parsed::Malformed;
        }
    }
    // Still an extension header after as many as we walk.
    if is_extension_header(next) {
        return Parsed::Malformed;
    }
    match ports(
        pkt,
        L4 {
            proto: next,
            off: cur,
            end,
        },
    ) {
        Ports::Other => Parsed::OtherProto {
            v6: true,
            proto: next,
            src,
            l3: off,
            icmp: icmp_head(pkt, true, next, cur, end),
        },
        Ports::Malformed => Parsed::Malformed,
        Ports::Both(ports, rtp_like) => Parsed::Ports {
            v6: true,
            proto: next,
            ports,
            src,
            rtp_like,
            l3: off,
        },
    }
}

enum Ports {
    /// Not UDP, TCP or SCTP.
    Other,
    /// The transport header is incomplete.
    Malformed,
    /// Source and destination port as loaded (see [`sport`], [`dport`]),
    /// and whether the payload could be RTP (UDP only).
    Both(u32, bool),
}

/// Reads the ports of UDP, TCP and SCTP, whose headers must be
/// complete within `l4.end` (the IP packet's end).
#[inline(always)]
fn ports(pkt: Packet, l4: L4) -> Ports {
    let L4 { proto, off, end } = l4;
    let min_len = match proto {
        IPPROTO_UDP => 8,
        IPPROTO_TCP => TCP_HLEN,
        IPPROTO_SCTP => 12,
        _ => return Ports::Other,
    };
    if off + min_len > end {
        return Ports::Malformed;
    }
    let Some(both) = pkt.load::<u32>(off) else {
        return Ports::Malformed;
    };
    if proto == IPPROTO_TCP {
        // The data offset counts the header with its options.
        let Some(doff) = pkt.load::<u8>(off + 12) else {
            return Ports::Malformed;
        };
        let hdr_len = (doff >> 4) as usize * 4;
        if hdr_len < TCP_HLEN || off + hdr_len > end {
            return Ports::Malformed;
        }
    }
    let payload = off + 8;
    let rtp = proto == IPPROTO_UDP
        && payload + RTP_MIN <= end
        && pkt
            .load::<u8>(payload)
            .is_some_and(|first| rtp_like(first, end - payload));
    Ports::Both(both, rtp)
}

/// The IPv6 extension headers the walk steps over.
#[inline(always)]
fn is_extension_header(next: u8) -> bool {
    matches!(
        next,
        IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_AH | IPPROTO_FRAGMENT
    )
}

/// The first two bytes of an extension header (IPv6's, or AH), loaded as
/// one u16: the next header and the length field. One 2-byte bounds check
/// instead of two 1-byte ones, which the compiler turns into a form the
/// verifier cannot follow.
#[inline(always)]
fn next_and_len(first_two: u16) -> (u8, u8) {
    let [next, len] = first_two.to_ne_bytes();
    (next, len)
}

#[inline(always)]
fn min(a: usize, b: usize) -> usize {
    if a < b {
        a
    } else {
        b
    }
}
