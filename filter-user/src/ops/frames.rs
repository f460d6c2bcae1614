//! What a copied (or captured) frame carries for the call reader: its
//! addresses, ports, TCP sequence number and payload. The link layer the
//! XDP program reads (Ethernet, up to two VLAN tags, a PPPoE session, or
//! none on an L3 device) is stepped over here; IP, UDP and TCP are read by
//! `etherparse`.
use std::net::{IpAddr, SocketAddr};

use etherparse::{LaxNetSlice, LaxSlicedPacket, NetSlice, SlicedPacket, TransportSlice};

/// The transport facts of one frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transported<'a> {
    pub tcp: bool,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// TCP's sequence number of `payload[0]`.
    pub tcp_seq: Option<u32>,
    pub payload: &'a [u8],
}

const ETH_HEADER: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const ETHERTYPE_PPPOE_SESSION: u16 = 0x8864;
const PPP_IPV4: u16 = 0x0021;
const PPP_IPV6: u16 = 0x0057;

/// The frame's UDP or TCP packet; `None` for anything else (or a frame
/// cut before its transport header).
pub fn transported(frame: &[u8], l3: bool) -> Option<Transported<'_>> {
    let ip = if l3 { frame } else { after_link(frame)? };
    let sliced = SlicedPacket::from_ip(ip).ok()?;
    let (src, dst): (IpAddr, IpAddr) = match sliced.net.as_ref()? {
        NetSlice::Ipv4(v4) => (
            v4.header().source_addr().into(),
            v4.header().destination_addr().into(),
        ),
        NetSlice::Ipv6(v6) => (
            v6.header().source_addr().into(),
            v6.header().destination_addr().into(),
        ),
        NetSlice::Arp(_) => return None,
    };
    with_ports(src, dst, sliced.transport?)
}

/// [`transported`] for a frame cut short (a copy at the ring's limit):
/// its headers and the start of its payload; `None` when cut before the
/// transport header.
pub fn transported_cut(frame: &[u8], l3: bool) -> Option<Transported<'_>> {
    let ip = if l3 { frame } else { after_link(frame)? };
    // Lax: the IP header's length says more than the copy holds.
    let sliced = LaxSlicedPacket::from_ip(ip).ok()?;
    let (src, dst): (IpAddr, IpAddr) = match sliced.net.as_ref()? {
        LaxNetSlice::Ipv4(v4) => (
            v4.header().source_addr().into(),
            v4.header().destination_addr().into(),
        ),
        LaxNetSlice::Ipv6(v6) => (
            v6.header().source_addr().into(),
            v6.header().destination_addr().into(),
        ),
        LaxNetSlice::Arp(_) => return None,
    };
    with_ports(src, dst, sliced.transport?)
}

/// The UDP or TCP part of a packet between `src` and `dst`.
fn with_ports(src: IpAddr, dst: IpAddr, transport: TransportSlice<'_>) -> Option<Transported<'_>> {
    match transport {
        TransportSlice::Udp(udp) => Some(Transported {
            tcp: false,
            src: SocketAddr::new(src, udp.source_port()),
            dst: SocketAddr::new(dst, udp.destination_port()),
            tcp_seq: None,
            payload: udp.payload(),
        }),
        TransportSlice::Tcp(tcp) => Some(Transported {
            tcp: true,
            src: SocketAddr::new(src, tcp.source_port()),
            dst: SocketAddr::new(dst, tcp.destination_port()),
            tcp_seq: Some(tcp.sequence_number()),
            payload: tcp.payload(),
        }),
        _ => None,
    }
}

/// The IP packet after Ethernet, up to two VLAN tags and a PPPoE session
/// header, as the XDP program walks them.
fn after_link(frame: &[u8]) -> Option<&[u8]> {
    let word = |at: usize| -> Option<u16> {
        Some(u16::from_be_bytes(frame.get(at..at + 2)?.try_into().ok()?))
    };
    let mut at = ETH_HEADER - 2;
    let mut ethertype = word(at)?;
    for _ in 0..2 {
        if ethertype != ETHERTYPE_VLAN && ethertype != ETHERTYPE_QINQ {
            break;
        }
        at += 4;
        ethertype = word(at)?;
    }
    at += 2;
    match ethertype {
        ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => frame.get(at..),
        ETHERTYPE_PPPOE_SESSION => match word(at + 6)? {
            PPP_IPV4 | PPP_IPV6 => frame.get(at + 8..),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn udp_frame(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4([44, 229, 228, 186], [192, 0, 2, 1], 64)
            .udp(5060, 5060);
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    #[test]
    fn reads_ethernet_vlan_pppoe_and_l3() {
        let plain = udp_frame(b"INVITE");
        let t = transported(&plain, false).unwrap();
        assert_eq!(t.src, "44.229.228.186:5060".parse().unwrap());
        assert_eq!(t.payload, b"INVITE");
        assert!(!t.tcp);
        // The same packet with two VLAN tags.
        let mut tagged = plain[..12].to_vec();
        tagged.extend_from_slice(&[0x88, 0xa8, 0, 1, 0x81, 0x00, 0, 2]);
        tagged.extend_from_slice(&plain[12..]);
        assert_eq!(transported(&tagged, false).unwrap().payload, b"INVITE");
        // In a PPPoE session.
        let mut pppoe = plain[..12].to_vec();
        pppoe.extend_from_slice(&[0x88, 0x64, 0x11, 0, 0, 1]);
        let ip = &plain[14..];
        pppoe.extend_from_slice(&((ip.len() + 2) as u16).to_be_bytes());
        pppoe.extend_from_slice(&[0x00, 0x21]);
        pppoe.extend_from_slice(ip);
        assert_eq!(transported(&pppoe, false).unwrap().payload, b"INVITE");
        // From the IP header (an L3 device).
        assert_eq!(transported(ip, true).unwrap().payload, b"INVITE");
        // Not IP, or cut short: nothing.
        assert!(transported(&plain[..20], false).is_none());
        let mut arp = plain.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert!(transported(&arp, false).is_none());
    }

    #[test]
    fn reads_the_start_of_a_cut_segment() {
        let b = PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4([44, 229, 228, 186], [192, 0, 2, 1], 64)
            .tcp(5060, 40000, 777, 1000);
        let mut whole = Vec::new();
        b.write(&mut whole, &[b'x'; 200]).unwrap();
        let cut = &whole[..whole.len() - 150];
        assert!(transported(cut, false).is_none(), "strict: cut is refused");
        let t = transported_cut(cut, false).unwrap();
        assert_eq!(t.tcp_seq, Some(777));
        assert_eq!(t.payload, &[b'x'; 50]);
        assert_eq!(t.dst, "192.0.2.1:40000".parse().unwrap());
        // A cut UDP datagram, likewise (the tracker will not read it).
        let udp = udp_frame(&[b'y'; 200]);
        let t = transported_cut(&udp[..udp.len() - 150], false).unwrap();
        assert!(!t.tcp);
        assert_eq!(t.payload, &[b'y'; 50]);
        // Cut inside the TCP header: nothing.
        assert!(transported_cut(&whole[..14 + 20 + 10], false).is_none());
    }
}
