//! Built packets through the real XDP program (BPF_PROG_TEST_RUN via
//! `filter_kernel::runner::Runner`), one table row per case of docs/policy.md and of the
//! parsing decisions. Each row asserts the verdict, that exactly its reason's
//! counter moved by one packet and by the frame's length in bytes (no other
//! counter moved), and that the denied-sources map counted the source for
//! `sip_denied` and nothing otherwise. Needs root (CAP_BPF).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use filter_common::{
    Counter,
    Reason::{self, *},
};
use filter_kernel::iface::LinkHeader;
use filter_kernel::runner::{Runner, Verdict};
use filter_policy::{
    config,
    ruleset::{MediaCalls, MediaMode, Mode, Ruleset, Unattended},
};
use ipnet::IpNet;
use sipwall_tests::calls::{Age, KernelCalls, Planned, Reader};
use sipwall_tests::packet::{
    Ext, Frame, Link, Net, ETHERTYPE_PPPOE_DISCOVERY, ETHERTYPE_PPPOE_SESSION, L4, PPP_IPV4,
    PPP_LCP, PROTO_ESP, PROTO_TCP, PROTO_UDP, TPID_8021AD, TPID_8021Q,
};

const PASS: Verdict = Verdict::Pass;
const DROP: Verdict = Verdict::Drop;

/// The provider's signalling addresses (docs/policy.md) and their neighbours.
const PROVIDER_A: Ipv4Addr = Ipv4Addr::new(44, 229, 228, 186);
const PROVIDER_B: Ipv4Addr = Ipv4Addr::new(44, 238, 177, 138);
const BELOW_A: Ipv4Addr = Ipv4Addr::new(44, 229, 228, 185);
const ABOVE_A: Ipv4Addr = Ipv4Addr::new(44, 229, 228, 187);
const BELOW_B: Ipv4Addr = Ipv4Addr::new(44, 238, 177, 137);
const ABOVE_B: Ipv4Addr = Ipv4Addr::new(44, 238, 177, 139);
const STRANGER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);
/// The protected host.
const HOST: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);

fn v6(s: &str) -> Ipv6Addr {
    s.parse().expect("test IPv6 address")
}

fn host6() -> Ipv6Addr {
    v6("2001:db8::10")
}

fn stranger6() -> Ipv6Addr {
    v6("2001:db8:bad::9")
}

/// An IPv4 packet to the host.
fn ip4(src: Ipv4Addr) -> Frame {
    Frame::ipv4(src, HOST)
}

/// An IPv6 packet to the host.
fn ip6(src: Ipv6Addr) -> Frame {
    Frame::ipv6(src, host6())
}

/// IPsec AH's protocol number.
const PROTO_AH: u8 = 51;

/// A whole UDP header, ports 5060 -> 5060.
const UDP_5060: [u8; 8] = [0x13, 0xc4, 0x13, 0xc4, 0, 8, 0, 0];

/// `n` AH headers of 12 bytes each, chained, then `inner` (UDP).
fn behind_ah(n: usize, inner: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        let next = if i + 1 == n { PROTO_UDP } else { PROTO_AH };
        // next header, length (in 4-byte words, minus 2), reserved, SPI, sequence
        out.extend_from_slice(&[next, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]);
    }
    out.extend_from_slice(inner);
    out
}

/// The first four bytes of a UDP header (ports 5060 -> 5060).
const UDP_PORTS_ONLY: [u8; 4] = [0x13, 0xc4, 0x13, 0xc4];

struct Case {
    why: &'static str,
    verdict: Verdict,
    reason: Reason,
    frame: Frame,
}

fn case(verdict: Verdict, reason: Reason, why: &'static str, frame: Frame) -> Case {
    Case {
        why,
        verdict,
        reason,
        frame,
    }
}

/// Eight extension headers of every walked kind (the most the parser walks).
fn eight_ext(f: Frame) -> Frame {
    f.ext(Ext::HopByHop { len: 0 })
        .ext(Ext::DestOpts { len: 1 })
        .ext(Ext::Routing { len: 0 })
        .ext(Ext::Fragment {
            offset: 0,
            more: false,
        })
        .ext(Ext::Ah { len: 4 })
        .ext(Ext::DestOpts { len: 0 })
        .ext(Ext::Routing { len: 2 })
        .ext(Ext::DestOpts { len: 0 })
}

/// Hop-by-hop, destination options, routing and a first fragment header.
fn common_chain(f: Frame) -> Frame {
    f.ext(Ext::HopByHop { len: 0 })
        .ext(Ext::DestOpts { len: 0 })
        .ext(Ext::Routing { len: 2 })
        .ext(Ext::Fragment {
            offset: 0,
            more: true,
        })
}

/// The default ruleset's table: the provider's values (docs/policy.md).
#[rustfmt::skip]
fn default_table() -> Vec<Case> {
    let sip = b"OPTIONS sip:host SIP/2.0\r\n\r\n";
    vec![
        // --- policy row 1: not IP -> non_ip ---
        case(PASS, NonIp, "ARP request", Frame::arp(STRANGER, HOST)),
        case(PASS, NonIp, "LLDP announcement", Frame::lldp()),
        case(PASS, NonIp, "ARP inside an 802.1Q tag", Frame::arp(STRANGER, HOST).vlan(TPID_8021Q, 5)),
        case(PASS, NonIp, "unknown ethertype 0x88B5", Frame::ethertype(0x88b5, vec![0; 46])),
        case(PASS, NonIp, "802.3 length field instead of an ethertype (LLC)", Frame::ethertype(46, vec![0x42; 46])),
        // --- policy row 3: signalling from the allowlist -> sip_allowed ---
        case(PASS, SipAllowed, "provider A, UDP 5060", ip4(PROVIDER_A).udp(5060, 5060).payload(sip)),
        case(PASS, SipAllowed, "provider B, UDP 5060", ip4(PROVIDER_B).udp(5060, 5060).payload(sip)),
        case(PASS, SipAllowed, "provider A, UDP 5061", ip4(PROVIDER_A).udp(5061, 5061)),
        case(PASS, SipAllowed, "provider B, UDP 5061", ip4(PROVIDER_B).udp(40123, 5061)),
        case(PASS, SipAllowed, "provider A, TCP 5060", ip4(PROVIDER_A).tcp(40000, 5060)),
        case(PASS, SipAllowed, "provider B, TCP 5061 (TLS)", ip4(PROVIDER_B).tcp(40001, 5061)),
        case(PASS, SipAllowed, "provider A, SCTP 5060", ip4(PROVIDER_A).sctp(5060, 5060)),
        case(PASS, SipAllowed, "provider B, SCTP 5061", ip4(PROVIDER_B).sctp(5061, 5061)),
        case(PASS, SipAllowed, "provider, minimal UDP padded to 60 bytes: bytes count the padding", ip4(PROVIDER_A).udp(5060, 5060).pad_to(60)),
        case(PASS, SipAllowed, "provider, total length beyond the frame but UDP header complete: judged by ports", ip4(PROVIDER_A).udp(5060, 5060).ip4(|h| h.total_len = Some(1500))),
        // --- policy row 4: signalling from anyone else -> sip_denied ---
        case(DROP, SipDenied, "stranger, UDP 5060", ip4(STRANGER).udp(5060, 5060).payload(sip)),
        case(DROP, SipDenied, "stranger, UDP 5061", ip4(STRANGER).udp(5061, 5061)),
        case(DROP, SipDenied, "stranger, TCP 5060", ip4(STRANGER).tcp(33000, 5060)),
        case(DROP, SipDenied, "stranger, TCP 5061", ip4(STRANGER).tcp(33000, 5061)),
        case(DROP, SipDenied, "stranger, SCTP 5060", ip4(STRANGER).sctp(5060, 5060)),
        case(DROP, SipDenied, "stranger, SCTP 5061", ip4(STRANGER).sctp(5061, 5061)),
        case(DROP, SipDenied, ".185, one below provider A: /32 only", ip4(BELOW_A).udp(5060, 5060)),
        case(DROP, SipDenied, ".187, one above provider A: /32 only", ip4(ABOVE_A).udp(5060, 5060)),
        case(DROP, SipDenied, ".137, one below provider B: /32 only", ip4(BELOW_B).tcp(5060, 5061)),
        case(DROP, SipDenied, ".139, one above provider B: /32 only", ip4(ABOVE_B).sctp(5060, 5060)),
        case(DROP, SipDenied, "provider address as destination, stranger as source: source decides", Frame::ipv4(STRANGER, PROVIDER_A).udp(5060, 5060)),
        case(DROP, SipDenied, "stranger with DF set, offset 0: not a fragment", ip4(STRANGER).udp(5060, 5060).ip4(|h| h.dont_fragment = true)),
        // --- policy row 5: RTP range (UDP only) ---
        case(PASS, Other, "UDP 39999, one below the RTP range, from a port outside the provider's", ip4(STRANGER).udp(33000, 39999)),
        case(PASS, RtpAllowed, "UDP from provider media port 40000 to this host's 16384 (media correction)", ip4(STRANGER).udp(40000, 16384)),
        case(PASS, RtpAllowed, "UDP from provider media port 60000 to 10000", ip4(STRANGER).udp(60000, 10000)),
        case(PASS, Other, "UDP from port 39999, one below the provider's media ports", ip4(STRANGER).udp(39999, 16384)),
        case(PASS, Other, "UDP from port 60001, one above the provider's media ports", ip4(STRANGER).udp(60001, 16384)),
        case(PASS, Other, "TCP from a provider media port: media is UDP only", ip4(STRANGER).tcp(40000, 16384)),
        case(PASS, RtpAllowed, "UDP 40000, first RTP port, any source", ip4(STRANGER).udp(50000, 40000)),
        case(PASS, RtpAllowed, "UDP 50000, inside the RTP range", ip4(STRANGER).udp(50000, 50000).payload(&[0x80; 172])),
        case(PASS, RtpAllowed, "UDP 60000, last RTP port", ip4(STRANGER).udp(50000, 60000)),
        case(PASS, Other, "UDP 60001, one above the RTP range", ip4(STRANGER).udp(33000, 60001)),
        case(PASS, Other, "TCP to an RTP port: RTP is UDP only", ip4(STRANGER).tcp(50000, 40000)),
        case(PASS, Other, "SCTP to an RTP port: RTP is UDP only", ip4(STRANGER).sctp(50000, 50000)),
        // --- policy row 7: everything else -> other ---
        case(PASS, Other, "UDP 5059: not a signalling port", ip4(STRANGER).udp(5060, 5059)),
        case(PASS, Other, "UDP 5062: not a signalling port", ip4(STRANGER).udp(5060, 5062)),
        case(PASS, Other, "source port 5060 to an ephemeral port: only the destination port counts", ip4(STRANGER).udp(5060, 33333)),
        case(PASS, Other, "SSH", ip4(STRANGER).tcp(33000, 22)),
        case(PASS, Other, "DNS reply", ip4(STRANGER).udp(53, 33333).payload(&[0; 40])),
        case(PASS, Other, "ICMP echo request", ip4(STRANGER).icmp_echo()),
        case(PASS, Other, "ESP: no ports to read", ip4(STRANGER).raw(PROTO_ESP, &[0; 24])),
        case(PASS, Other, "IPv4 with nothing after the header (protocol 59)", ip4(STRANGER)),
        // --- VLAN tags ---
        case(PASS, SipAllowed, "one 802.1Q tag, provider", ip4(PROVIDER_A).vlan(TPID_8021Q, 10).udp(5060, 5060)),
        case(DROP, SipDenied, "one 802.1Q tag, stranger", ip4(STRANGER).vlan(TPID_8021Q, 10).udp(5060, 5060)),
        case(PASS, SipAllowed, "one 802.1ad tag, provider", ip4(PROVIDER_B).vlan(TPID_8021AD, 10).tcp(1024, 5061)),
        case(DROP, SipDenied, "one 802.1ad tag, stranger", ip4(STRANGER).vlan(TPID_8021AD, 10).tcp(1024, 5061)),
        case(PASS, SipAllowed, "QinQ 802.1ad + 802.1Q, provider", ip4(PROVIDER_A).vlan(TPID_8021AD, 100).vlan(TPID_8021Q, 10).sctp(5060, 5060)),
        case(DROP, SipDenied, "QinQ 802.1ad + 802.1Q, stranger", ip4(STRANGER).vlan(TPID_8021AD, 100).vlan(TPID_8021Q, 10).udp(5060, 5060)),
        case(DROP, SipDenied, "two 802.1Q tags, stranger", ip4(STRANGER).vlan(TPID_8021Q, 100).vlan(TPID_8021Q, 10).udp(5060, 5061)),
        case(PASS, RtpAllowed, "mixed order 802.1Q + 802.1ad, RTP", ip4(STRANGER).vlan(TPID_8021Q, 100).vlan(TPID_8021AD, 10).udp(50000, 40000)),
        case(DROP, SipDenied, "two tags around IPv6", ip6(stranger6()).vlan(TPID_8021AD, 100).vlan(TPID_8021Q, 10).udp(5060, 5060)),
        case(DROP, Malformed, "a third tag, even around provider traffic: more than the parser walks", ip4(PROVIDER_A).vlan(TPID_8021AD, 1).vlan(TPID_8021Q, 2).vlan(TPID_8021Q, 3).udp(5060, 5060)),
        case(DROP, Malformed, "a third tag around RTP", ip4(STRANGER).vlan(TPID_8021Q, 1).vlan(TPID_8021Q, 2).vlan(TPID_8021AD, 3).udp(50000, 50000)),
        case(DROP, Malformed, "802.1Q tag cut after its TCI (16-byte frame)", Frame::ethertype(TPID_8021Q, vec![0, 10])),
        case(DROP, Malformed, "second tag cut after its TCI", Frame::ethertype(TPID_8021Q, vec![0, 20]).vlan(TPID_8021AD, 10)),
        case(DROP, Malformed, "802.1Q tag then IPv4 ethertype and nothing else", ip4(PROVIDER_A).vlan(TPID_8021Q, 10).udp(5060, 5060).cut_to(18)),
        // --- PPPoE: session frames are judged by the IP packet inside ---
        case(PASS, SipAllowed, "PPPoE session, provider SIP over IPv4", ip4(PROVIDER_A).pppoe().udp(5060, 5060).payload(sip)),
        case(DROP, SipDenied, "PPPoE session, stranger SIP over IPv4", ip4(STRANGER).pppoe().udp(5060, 5060).payload(sip)),
        case(DROP, SipDenied, "PPPoE session, stranger SIP over IPv6", ip6(stranger6()).pppoe().tcp(33000, 5061)),
        case(DROP, SipDenied, "PPPoE session inside an 802.1Q tag, stranger", ip4(STRANGER).vlan(TPID_8021Q, 7).pppoe().udp(5060, 5060)),
        case(DROP, SipDenied, "PPPoE session inside QinQ, stranger over IPv6", ip6(stranger6()).vlan(TPID_8021AD, 100).vlan(TPID_8021Q, 7).pppoe().udp(5060, 5060)),
        case(PASS, RtpAllowed, "PPPoE session, RTP", ip4(STRANGER).pppoe().udp(50000, 40000)),
        case(PASS, Other, "PPPoE session, SSH", ip4(STRANGER).pppoe().tcp(33000, 22)),
        case(PASS, NonIp, "PPPoE session carrying LCP (PPP 0xc021): pppd's, not IP", ip4(STRANGER).pppoe_proto(PPP_LCP).udp(5060, 5060)),
        case(PASS, NonIp, "PPPoE discovery (PADI)", Frame::ethertype(ETHERTYPE_PPPOE_DISCOVERY, vec![0x11, 0x09, 0, 0, 0, 4, 1, 1, 0, 0])),
        case(DROP, Malformed, "PPPoE session cut before the PPP protocol", Frame::ethertype(ETHERTYPE_PPPOE_SESSION, vec![0x11, 0, 0x12, 0x34, 0, 2])),
        case(DROP, Malformed, "PPPoE session, PPP says IPv4 but an IPv6 packet follows", ip6(stranger6()).pppoe_proto(PPP_IPV4).udp(5060, 5060)),
        case(DROP, Malformed, "PPPoE session, IPv4 with IHL 4", ip4(PROVIDER_A).pppoe().udp(5060, 5060).ip4(|h| h.ihl = Some(4))),
        case(DROP, Malformed, "PPPoE session, UDP header cut short", ip4(STRANGER).pppoe().udp(5060, 5060).cut_to(14 + 8 + 20 + 4)),
        // --- IPv4 header length and options ---
        case(PASS, SipAllowed, "IHL 6 (4 option bytes), provider", ip4(PROVIDER_A).ipv4_options(4).udp(5060, 5060)),
        case(DROP, SipDenied, "IHL 6 (4 option bytes), stranger", ip4(STRANGER).ipv4_options(4).udp(5060, 5060)),
        case(PASS, SipAllowed, "IHL 15 (40 option bytes), provider over TCP", ip4(PROVIDER_B).ipv4_options(40).tcp(1024, 5060)),
        case(DROP, SipDenied, "IHL 15 (40 option bytes), stranger: ports read after the options", ip4(STRANGER).ipv4_options(40).udp(5060, 5060)),
        case(PASS, RtpAllowed, "IHL 15, RTP", ip4(STRANGER).ipv4_options(40).udp(50000, 40000)),
        case(DROP, Malformed, "IHL 4, even from the provider", ip4(PROVIDER_A).udp(5060, 5060).ip4(|h| h.ihl = Some(4))),
        case(DROP, Malformed, "IHL 0", ip4(STRANGER).udp(50000, 50000).ip4(|h| h.ihl = Some(0))),
        case(DROP, Malformed, "IHL 15 but only 28 bytes of IP in the frame: header beyond the packet", ip4(PROVIDER_A).udp(5060, 5060).ip4(|h| { h.ihl = Some(15); h.total_len = Some(68) })),
        case(DROP, Malformed, "IHL 6, frame ends after 22 header bytes", ip4(PROVIDER_A).ipv4_options(4).udp(5060, 5060).cut_to(14 + 22)),
        case(DROP, Malformed, "IPv4 header cut at 19 bytes", ip4(PROVIDER_A).udp(5060, 5060).cut_to(14 + 19)),
        case(DROP, Malformed, "14-byte frame: Ethernet header naming IPv4, nothing else", ip4(PROVIDER_A).cut_to(14)),
        case(DROP, Malformed, "version nibble 6 under the IPv4 ethertype", ip4(PROVIDER_A).udp(5060, 5060).ip4(|h| h.version = 6)),
        case(DROP, Malformed, "version nibble 0 under the IPv4 ethertype", ip4(STRANGER).udp(50000, 50000).ip4(|h| h.version = 0)),
        case(DROP, Malformed, "total length 19, shorter than the header", ip4(PROVIDER_A).udp(5060, 5060).ip4(|h| h.total_len = Some(19))),
        case(DROP, Malformed, "total length 0", ip4(STRANGER).udp(50000, 50000).ip4(|h| h.total_len = Some(0))),
        case(DROP, Malformed, "IHL 6, total length 20: shorter than the 24-byte header", ip4(PROVIDER_A).ipv4_options(4).udp(5060, 5060).ip4(|h| h.total_len = Some(20))),
        // --- transport headers cut short or invalid ---
        case(DROP, Malformed, "UDP header cut at 7 bytes", ip4(PROVIDER_A).udp(5060, 5060).cut_to(14 + 20 + 7)),
        case(DROP, Malformed, "TCP header cut at 19 bytes", ip4(PROVIDER_A).tcp(5060, 5060).cut_to(14 + 20 + 19)),
        case(DROP, Malformed, "SCTP header cut at 11 bytes", ip4(PROVIDER_A).sctp(5060, 5060).cut_to(14 + 20 + 11)),
        case(DROP, Malformed, "UDP to RTP cut at 4 bytes: malformed whatever the port", ip4(STRANGER).udp(50000, 50000).cut_to(14 + 20 + 4)),
        case(DROP, Malformed, "total length leaves 4 UDP bytes, Ethernet padding follows: padding is not header", ip4(PROVIDER_A).udp(5060, 5060).ip4(|h| h.total_len = Some(24)).pad_to(60)),
        case(DROP, Malformed, "total length leaves 16 TCP bytes, Ethernet padding follows", ip4(PROVIDER_A).tcp(5060, 5060).ip4(|h| h.total_len = Some(36)).pad_to(64)),
        case(DROP, Malformed, "total length leaves 8 SCTP bytes, Ethernet padding follows", ip4(PROVIDER_A).sctp(5060, 5060).ip4(|h| h.total_len = Some(28)).pad_to(60)),
        case(DROP, Malformed, "TCP data offset 4 (< 5)", ip4(PROVIDER_A).tcp(1024, 5060).l4(|l| set_doff(l, 4))),
        case(DROP, Malformed, "TCP data offset 0, to a non-signalling port", ip4(STRANGER).tcp(1024, 22).l4(|l| set_doff(l, 0))),
        case(DROP, Malformed, "TCP data offset 15, header beyond the packet", ip4(PROVIDER_A).tcp(1024, 5060).l4(|l| set_doff(l, 15))),
        case(DROP, Malformed, "TCP data offset 8, options would be link padding", ip4(PROVIDER_A).tcp(1024, 5060).l4(|l| set_doff(l, 8)).pad_to(80)),
        case(PASS, SipAllowed, "TCP data offset 6 with an MSS option, provider", ip4(PROVIDER_A).tcp(1024, 5061).l4(|l| set_tcp_options(l, &[2, 4, 0x05, 0xb4]))),
        case(DROP, SipDenied, "TCP data offset 6 with an MSS option, stranger", ip4(STRANGER).tcp(1024, 5061).l4(|l| set_tcp_options(l, &[2, 4, 0x05, 0xb4]))),
        // --- IPv4 fragments ---
        case(PASS, SipAllowed, "first fragment (MF, offset 0) from the provider: judged by ports", ip4(PROVIDER_A).udp(5060, 5060).payload(sip).fragment(0, true)),
        case(DROP, SipDenied, "first fragment from a stranger to 5060", ip4(STRANGER).udp(5060, 5060).payload(sip).fragment(0, true)),
        case(DROP, SipDenied, "first fragment from a stranger to TCP 5061", ip4(STRANGER).tcp(1024, 5061).fragment(0, true)),
        case(PASS, RtpAllowed, "first fragment to RTP", ip4(STRANGER).udp(50000, 50000).payload(&[0x80; 64]).fragment(0, true)),
        case(DROP, Malformed, "first fragment with only 4 bytes of UDP", ip4(PROVIDER_A).raw(PROTO_UDP, &UDP_PORTS_ONLY).fragment(0, true)),
        case(DROP, Malformed, "first fragment with only 12 bytes of TCP", ip4(PROVIDER_A).raw(PROTO_TCP, &[0x13, 0xc4, 0x13, 0xc4, 0, 0, 0, 1, 0, 0, 0, 0]).fragment(0, true)),
        case(PASS, Fragment, "non-first fragment (offset 185, MF) 'to' 5060 from a stranger: no L4 header to read", ip4(STRANGER).udp(5060, 5060).payload(sip).fragment(185, true)),
        case(PASS, Fragment, "last fragment (offset 370, no MF)", ip4(STRANGER).raw(PROTO_UDP, b"rest of an INVITE").fragment(370, false)),
        case(PASS, Fragment, "non-first fragment of one byte: no L4 header expected", ip4(STRANGER).raw(PROTO_UDP, &[0x42]).fragment(1, false)),
        case(DROP, Malformed, "non-first fragment with IHL 4: the IP header is checked first", ip4(STRANGER).raw(PROTO_UDP, &[0; 16]).fragment(185, true).ip4(|h| h.ihl = Some(4))),
        // --- IPv6 ---
        case(DROP, SipDenied, "IPv6 UDP 5060: the default allowlist has no IPv6", ip6(stranger6()).udp(5060, 5060).payload(sip)),
        case(DROP, SipDenied, "IPv6 TCP 5061", ip6(stranger6()).tcp(1024, 5061)),
        case(DROP, SipDenied, "IPv6 SCTP 5060", ip6(stranger6()).sctp(5060, 5060)),
        case(PASS, RtpAllowed, "IPv6 UDP 40000", ip6(stranger6()).udp(50000, 40000)),
        case(PASS, RtpAllowed, "IPv6 UDP 60000", ip6(stranger6()).udp(50000, 60000)),
        case(PASS, Other, "IPv6 UDP 60001", ip6(stranger6()).udp(33000, 60001)),
        case(PASS, RtpAllowed, "IPv6 UDP from provider media port 50000 to 20000", ip6(stranger6()).udp(50000, 20000)),
        case(PASS, Other, "IPv6 TCP to an RTP port", ip6(stranger6()).tcp(50000, 50000)),
        case(PASS, Other, "ICMPv6 echo request", ip6(stranger6()).icmp_echo()),
        case(PASS, Other, "IPv6 no next header (59)", ip6(stranger6())),
        case(DROP, SipDenied, "hop-by-hop + dest opts + routing + first fragment, then UDP 5060", common_chain(ip6(stranger6())).udp(5060, 5060).payload(sip)),
        case(PASS, RtpAllowed, "hop-by-hop + dest opts + routing + first fragment, then UDP RTP", common_chain(ip6(stranger6())).udp(50000, 50000)),
        case(DROP, SipDenied, "IPv4 AH before UDP 5060 from a stranger: the ports behind AH are judged", ip4(STRANGER).raw(PROTO_AH, &behind_ah(1, &UDP_5060))),
        case(PASS, SipAllowed, "IPv4 AH before UDP 5060 from the provider", ip4(PROVIDER_A).raw(PROTO_AH, &behind_ah(1, &UDP_5060))),
        case(DROP, SipDenied, "IPv4 two AH headers before UDP 5060 from a stranger", ip4(STRANGER).raw(PROTO_AH, &behind_ah(2, &UDP_5060))),
        case(DROP, Malformed, "IPv4 three AH headers: more than the parser walks", ip4(STRANGER).raw(PROTO_AH, &behind_ah(3, &UDP_5060))),
        case(DROP, Malformed, "IPv4 AH header cut short (says 12 bytes, has 4)", ip4(STRANGER).raw(PROTO_AH, &[PROTO_UDP, 1, 0, 0])),
        case(PASS, RtpAllowed, "IPv4 AH before UDP RTP from anywhere", ip4(STRANGER).raw(PROTO_AH, &behind_ah(1, &[0xc3, 0x50, 0x9c, 0x40, 0, 8, 0, 0]))),
        case(DROP, SipDenied, "AH before UDP 5060", ip6(stranger6()).ext(Ext::Ah { len: 4 }).udp(5060, 5060)),
        case(PASS, RtpAllowed, "AH before UDP RTP", ip6(stranger6()).ext(Ext::Ah { len: 4 }).udp(50000, 40000)),
        case(DROP, SipDenied, "exactly 8 extension headers, then UDP 5060: parsed to the ports", eight_ext(ip6(stranger6())).udp(5060, 5060)),
        case(PASS, RtpAllowed, "exactly 8 extension headers, then UDP RTP", eight_ext(ip6(stranger6())).udp(50000, 50000)),
        case(DROP, Malformed, "9 extension headers, even to RTP: longer than the parser walks", eight_ext(ip6(stranger6())).ext(Ext::DestOpts { len: 0 }).udp(50000, 50000)),
        case(PASS, Fragment, "IPv6 non-first fragment 'to' 5060 from a stranger", ip6(stranger6()).ext(Ext::Fragment { offset: 185, more: true }).udp(5060, 5060)),
        case(PASS, Fragment, "IPv6 last fragment after hop-by-hop", ip6(stranger6()).ext(Ext::HopByHop { len: 0 }).ext(Ext::Fragment { offset: 370, more: false }).raw(PROTO_UDP, b"rest")),
        case(DROP, SipDenied, "IPv6 atomic fragment (offset 0, no M): judged by ports", ip6(stranger6()).ext(Ext::Fragment { offset: 0, more: false }).udp(5060, 5060)),
        case(DROP, Malformed, "IPv6 first fragment with only 4 bytes of UDP", ip6(stranger6()).ext(Ext::Fragment { offset: 0, more: true }).raw(PROTO_UDP, &UDP_PORTS_ONLY)),
        case(DROP, Malformed, "hop-by-hop of 16 bytes, frame ends after 8 of them", ip6(stranger6()).ext(Ext::HopByHop { len: 1 }).udp(50000, 50000).cut_to(14 + 40 + 8)),
        case(DROP, Malformed, "hop-by-hop of 16 bytes past a payload length of 8 (padding follows)", ip6(stranger6()).ext(Ext::HopByHop { len: 1 }).udp(50000, 50000).ip6(|h| h.payload_len = Some(8))),
        case(DROP, Malformed, "non-first fragment header cut to 4 bytes", ip6(stranger6()).ext(Ext::Fragment { offset: 185, more: true }).cut_to(14 + 40 + 4)),
        case(DROP, Malformed, "non-first fragment header past the payload length", ip6(stranger6()).ext(Ext::Fragment { offset: 185, more: true }).raw(PROTO_UDP, &[0; 16]).ip6(|h| h.payload_len = Some(4))),
        case(DROP, Malformed, "UDP header beyond a payload length of 4, padding follows", ip6(stranger6()).udp(50000, 50000).ip6(|h| h.payload_len = Some(4)).pad_to(80)),
        case(DROP, Malformed, "IPv6 TCP data offset 3", ip6(stranger6()).tcp(1024, 5060).l4(|l| set_doff(l, 3))),
        case(DROP, Malformed, "IPv6 header cut at 39 bytes", ip6(stranger6()).udp(5060, 5060).cut_to(14 + 39)),
        case(DROP, Malformed, "14-byte frame naming IPv6", ip6(stranger6()).cut_to(14)),
        case(DROP, Malformed, "version nibble 4 under the IPv6 ethertype", ip6(stranger6()).udp(50000, 50000).ip6(|h| h.version = 4)),
    ]
}

fn set_doff(l4: &mut L4, words: u8) {
    match l4 {
        L4::Tcp { data_offset, .. } => *data_offset = Some(words),
        other => panic!("set_doff on {other:?}"),
    }
}

fn set_tcp_options(l4: &mut L4, bytes: &[u8]) {
    match l4 {
        L4::Tcp { options, .. } => *options = bytes.to_vec(),
        other => panic!("set_tcp_options on {other:?}"),
    }
}

// --- a custom ruleset: other prefixes, ports and RTP range ---

const CUSTOM_TOML: &str = r#"
[signalling]
allow = ["198.51.100.64/26", "192.0.2.77/32", "2001:db8:1:2::/64"]
ports = [5080]

[media]
rtp_ports = "10000-10999"
"#;

fn custom_ruleset() -> Ruleset {
    Ruleset {
        allow: ["198.51.100.64/26", "192.0.2.77/32", "2001:db8:1:2::/64"]
            .iter()
            .map(|s| s.parse::<IpNet>().unwrap())
            .collect(),
        sig_ports: vec![5080],
        rtp: (10000, 10999),
        dry_run: false,
        log_denied: false,
        ..Ruleset::default()
    }
    .normalise()
    .expect("custom ruleset")
}

#[rustfmt::skip]
fn custom_table() -> Vec<Case> {
    let v4 = |a, b, c, d| ip4(Ipv4Addr::new(a, b, c, d));
    let first6 = v6("2001:db8:1:2::");
    let last6 = v6("2001:db8:1:2:ffff:ffff:ffff:ffff");
    vec![
        case(PASS, SipAllowed, "198.51.100.64, first address of the /26", v4(198, 51, 100, 64).udp(5080, 5080)),
        case(PASS, SipAllowed, "198.51.100.127, last address of the /26, TCP", v4(198, 51, 100, 127).tcp(1024, 5080)),
        case(DROP, SipDenied, "198.51.100.63, one below the /26", v4(198, 51, 100, 63).udp(5080, 5080)),
        case(DROP, SipDenied, "198.51.100.128, one above the /26", v4(198, 51, 100, 128).sctp(5080, 5080)),
        case(PASS, SipAllowed, "192.0.2.77, the /32, SCTP", v4(192, 0, 2, 77).sctp(5080, 5080)),
        case(DROP, SipDenied, "192.0.2.76, one below the /32", v4(192, 0, 2, 76).udp(5080, 5080)),
        case(DROP, SipDenied, "192.0.2.78, one above the /32", v4(192, 0, 2, 78).udp(5080, 5080)),
        case(DROP, SipDenied, "provider A is not in this allowlist", ip4(PROVIDER_A).udp(5080, 5080)),
        case(PASS, Other, "UDP 5060 is not policed here, even from a stranger", ip4(STRANGER).udp(5060, 5060)),
        case(PASS, Other, "TCP 5061 is not policed here", ip4(STRANGER).tcp(1024, 5061)),
        case(PASS, Other, "UDP 5081: not a signalling port", ip4(STRANGER).udp(5080, 5081)),
        case(PASS, Other, "UDP 9999, one below this RTP range", ip4(STRANGER).udp(1, 9999)),
        case(PASS, RtpAllowed, "UDP 10000, first RTP port", ip4(STRANGER).udp(1, 10000)),
        case(PASS, RtpAllowed, "UDP 10999, last RTP port", ip4(STRANGER).udp(1, 10999)),
        case(PASS, Other, "UDP 11000, one above this RTP range", ip4(STRANGER).udp(1, 11000)),
        case(PASS, Other, "UDP 40000: the default RTP range no longer applies", ip4(STRANGER).udp(1, 40000)),
        case(PASS, SipAllowed, "2001:db8:1:2::, first address of the /64", ip6(first6).udp(5080, 5080)),
        case(PASS, SipAllowed, "2001:db8:1:2:ffff:ffff:ffff:ffff, last address of the /64", ip6(last6).tcp(1024, 5080)),
        case(DROP, SipDenied, "2001:db8:1:1:ffff:ffff:ffff:ffff, one below the /64", ip6(v6("2001:db8:1:1:ffff:ffff:ffff:ffff")).udp(5080, 5080)),
        case(DROP, SipDenied, "2001:db8:1:3::, one above the /64", ip6(v6("2001:db8:1:3::")).sctp(5080, 5080)),
        case(PASS, SipAllowed, "allowlisted IPv6 behind hop-by-hop + dest opts + routing + fragment", common_chain(ip6(first6)).udp(5080, 5080)),
        case(DROP, SipDenied, "stranger IPv6 behind the same chain", common_chain(ip6(stranger6())).udp(5080, 5080)),
        case(PASS, SipAllowed, "allowlisted IPv6 behind AH", ip6(last6).ext(Ext::Ah { len: 4 }).udp(5080, 5080)),
        case(PASS, SipAllowed, "allowlisted IPv6 behind 8 extension headers", eight_ext(ip6(last6)).udp(5080, 5080)),
        case(PASS, SipAllowed, "allowlisted IPv4 with IHL 15 in QinQ", v4(198, 51, 100, 100).ipv4_options(40).vlan(TPID_8021AD, 1).vlan(TPID_8021Q, 2).udp(5080, 5080)),
        case(PASS, Fragment, "non-first fragment 'to' 5080 from a stranger", ip4(STRANGER).udp(5080, 5080).fragment(10, true)),
        case(DROP, Malformed, "malformed stays malformed: UDP cut short from an allowlisted source", v4(198, 51, 100, 64).udp(5080, 5080).cut_to(14 + 20 + 6)),
    ]
}

// --- running rows ---

/// The frame's source address, for the denied-sources map.
fn source(frame: &Frame) -> Option<IpAddr> {
    match &frame.net {
        Net::V4(h) => Some(h.src.into()),
        Net::V6(h) => Some(h.src.into()),
        Net::Other { .. } => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The drop reasons whose sources are recorded (`top --reason`).
const SOURCED: [Reason; 4] = [SipDenied, Denied, RtpOutside, RtpUnsolicited];

/// Every recorded source of a dropped packet: (reason, address, counter).
fn drop_sources(runner: &Runner) -> Result<Vec<(Reason, IpAddr, Counter)>, String> {
    let mut out = Vec::new();
    for reason in SOURCED {
        let list = runner
            .maps
            .drop_sources(reason)
            .map_err(|e| format!("{e:#}"))?;
        out.extend(list.into_iter().map(|(a, c)| (reason, a, c)));
    }
    Ok(out)
}

/// Runs one frame and checks verdict, counters and the dropped-sources map.
fn check(runner: &Runner, c: &Case, verdict: Verdict) -> Result<(), String> {
    let frame = c.frame.build();
    let len = frame.len() as u64;
    let denied_before = drop_sources(runner)?;
    let out = runner.run(&frame).map_err(|e| format!("{e:#}"))?;
    let denied_after = drop_sources(runner)?;
    let want = vec![(
        c.reason,
        Counter {
            packets: 1,
            bytes: len,
        },
    )];
    if out.verdict != verdict || out.moved != want {
        return Err(format!(
            "got {:?} with counters {:?}, want {verdict:?} with {want:?}; frame {}",
            out.verdict,
            out.moved,
            hex(&frame)
        ));
    }
    let before_of = |r: Reason, addr: &IpAddr| {
        denied_before
            .iter()
            .find(|(br, a, _)| *br == r && a == addr)
            .map_or(Counter::default(), |(_, _, c)| *c)
    };
    let denied_moved: Vec<_> = denied_after
        .iter()
        .filter(|(r, addr, after)| before_of(*r, addr) != *after)
        .map(|(r, addr, after)| {
            let before = before_of(*r, addr);
            (
                *r,
                *addr,
                Counter {
                    packets: after.packets - before.packets,
                    bytes: after.bytes - before.bytes,
                },
            )
        })
        .collect();
    let want_denied = match source(&c.frame) {
        Some(src) if SOURCED.contains(&c.reason) => vec![(
            c.reason,
            src,
            Counter {
                packets: 1,
                bytes: len,
            },
        )],
        _ => vec![],
    };
    if denied_moved != want_denied {
        return Err(format!(
            "dropped sources moved {denied_moved:?}, want {want_denied:?}"
        ));
    }
    Ok(())
}

/// Runs every row, then fails naming every row that did not hold.
fn run_table(label: &str, runner: &Runner, table: &[Case], verdict: impl Fn(&Case) -> Verdict) {
    let failures: Vec<String> = table
        .iter()
        .filter_map(|c| {
            check(runner, c, verdict(c))
                .err()
                .map(|e| format!("[{label}] {}: {e}", c.why))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        table.len(),
        failures.join("\n")
    );
}

fn runner(ruleset: &Ruleset) -> Runner {
    Runner::new(ruleset).unwrap_or_else(|e| panic!("loading the program (run as root): {e:#}"))
}

#[test]
fn default_ruleset_table() {
    sipwall_tests::skip_unless_root!();
    let table = default_table();
    // Every reason of guard mode appears, with both verdicts; the abuse
    // controls, off by default, strict mode and calls mode have their own
    // tables below.
    let strict_only = [
        Essential,
        Reply,
        RuleAllowed,
        RtpOutside,
        Denied,
        RtpUnsolicited,
    ];
    for reason in Reason::ALL
        .into_iter()
        .filter(|r| !ABUSE.contains(r) && !strict_only.contains(r) && *r != RtpUnsolicited)
    {
        assert!(
            table.iter().any(|c| c.reason == reason),
            "no row for {}",
            reason.name()
        );
    }
    run_table("default", &runner(&Ruleset::default()), &table, |c| {
        c.verdict
    });
}

#[test]
fn custom_ruleset_table_built_directly_and_from_toml() {
    sipwall_tests::skip_unless_root!();
    let direct = custom_ruleset();
    let parsed = config::parse(CUSTOM_TOML, "custom.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        parsed, direct,
        "the TOML text and the direct ruleset differ"
    );
    let table = custom_table();
    run_table("custom, direct", &runner(&direct), &table, |c| c.verdict);
    run_table("custom, from TOML", &runner(&parsed), &table, |c| c.verdict);
}

/// `ruleset` with unrelated prefixes added until each family is too long to
/// be matched inline in the policy, so the direct tables decide.
fn with_filler(ruleset: &Ruleset) -> Ruleset {
    let mut r = ruleset.clone();
    for n in 0..=filter_common::INLINE_PREFIXES as u8 {
        r.allow.push(format!("100.64.{n}.0/24").parse().unwrap());
        r.allow
            .push(format!("2001:db8:ff:{n}::/64").parse().unwrap());
    }
    r.normalise().expect("ruleset with filler")
}

#[test]
fn long_allowlists_are_matched_by_the_direct_tables() {
    sipwall_tests::skip_unless_root!();
    let default_long = with_filler(&Ruleset::default());
    assert!(default_long.v4().count() > filter_common::INLINE_PREFIXES);
    assert!(default_long.v6().count() > filter_common::INLINE_PREFIXES);
    run_table(
        "default + filler",
        &runner(&default_long),
        &default_table(),
        |c| c.verdict,
    );
    run_table(
        "custom + filler",
        &runner(&with_filler(&custom_ruleset())),
        &custom_table(),
        |c| c.verdict,
    );
}

#[test]
fn dry_run_passes_every_drop_with_the_same_counters() {
    sipwall_tests::skip_unless_root!();
    let table = default_table();
    assert!(table.iter().any(|c| c.verdict == DROP));
    let dry = Ruleset {
        dry_run: true,
        ..Ruleset::default()
    };
    let from_toml =
        config::parse("[policy]\ndry_run = true\n", "dry.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(from_toml, dry);
    run_table("dry run", &runner(&dry), &table, |_| PASS);
}

#[test]
fn installing_a_ruleset_swaps_the_verdict_on_the_same_runner() {
    sipwall_tests::skip_unless_root!();
    let mut runner = runner(&Ruleset::default());
    let guest = Ipv4Addr::new(198, 51, 100, 7);
    let from_guest = || ip4(guest).udp(5060, 5060);
    let from_provider = || ip4(PROVIDER_A).udp(5060, 5060);
    let guest_only = Ruleset {
        allow: vec!["198.51.100.7/32".parse().unwrap()],
        ..Ruleset::default()
    };
    let ports_5080 = Ruleset {
        sig_ports: vec![5080],
        ..Ruleset::default()
    };
    let dry = Ruleset {
        dry_run: true,
        ..Ruleset::default()
    };
    let defaults = Ruleset::default();
    // (ruleset installed before the step, frame, verdict, reason, why)
    #[rustfmt::skip]
    let steps: Vec<(Option<&Ruleset>, Frame, Verdict, Reason, &str)> = vec![
        (None, from_guest(), DROP, SipDenied, "defaults: guest is a stranger"),
        (None, from_provider(), PASS, SipAllowed, "defaults: provider allowed"),
        (Some(&guest_only), from_guest(), PASS, SipAllowed, "guest-only allowlist: guest allowed"),
        (None, from_provider(), DROP, SipDenied, "guest-only allowlist: provider now denied"),
        (Some(&ports_5080), from_guest(), PASS, Other, "signalling on 5080 only: 5060 not policed"),
        (None, ip4(guest).udp(5060, 5080), DROP, SipDenied, "signalling on 5080 only: guest denied there"),
        (Some(&dry), from_guest(), PASS, SipDenied, "dry run: counted as denied, passed"),
        (Some(&defaults), from_guest(), DROP, SipDenied, "defaults again: dropped"),
        (None, from_provider(), PASS, SipAllowed, "defaults again: provider allowed"),
    ];
    let mut generation = runner.maps.active_generation().unwrap();
    for (install, frame, verdict, reason, why) in steps {
        if let Some(ruleset) = install {
            runner
                .install(ruleset)
                .unwrap_or_else(|e| panic!("{why}: {e:#}"));
            let now = runner.maps.active_generation().unwrap();
            assert_ne!(now, generation, "{why}: install must flip the generation");
            assert_eq!(&runner.maps.read_ruleset().unwrap(), ruleset, "{why}");
            generation = now;
        }
        let c = case(verdict, reason, why, frame);
        check(&runner, &c, verdict).unwrap_or_else(|e| panic!("{why}: {e}"));
    }
}

#[test]
fn frames_shorter_than_ethernet_are_refused_by_the_kernel() {
    sipwall_tests::skip_unless_root!();
    // BPF_PROG_TEST_RUN refuses XDP input shorter than ETH_HLEN with EINVAL,
    // so such frames never reach the program (and a NIC never delivers
    // them). The Runner returns the error; no counter moves.
    let runner = runner(&Ruleset::default());
    let before = runner.maps.counters().unwrap();
    for len in [0, 1, 13] {
        let frame = ip4(PROVIDER_A).udp(5060, 5060).cut_to(len).build();
        assert_eq!(frame.len(), len);
        assert!(
            runner.run(&frame).is_err(),
            "a {len}-byte frame was run by the kernel"
        );
    }
    assert_eq!(runner.maps.counters().unwrap(), before, "counters moved");
    // Fourteen bytes is the smallest frame that runs: malformed, dropped.
    let c = case(DROP, Malformed, "14 bytes", ip4(PROVIDER_A).cut_to(14));
    check(&runner, &c, DROP).unwrap_or_else(|e| panic!("14 bytes: {e}"));
}

/// The IPv4 host maps of partly allowed /24s sit in one of four slots (two
/// buckets of two, placed by cuckoo hashing): the program must find them
/// in each. Enough partial /24s that every position is taken by some.
#[test]
fn host_maps_are_found_in_every_slot_of_both_buckets() {
    sipwall_tests::skip_unless_root!();
    use filter_common::{host_buckets, HOST_BUCKET_SLOTS};
    use filter_kernel::direct::V4Table;
    use std::collections::BTreeMap;

    let nets: Vec<u32> = (0..60_000u32).map(|i| (11 << 16) | i).collect();
    let ruleset = Ruleset {
        allow: nets
            .iter()
            .map(|n| {
                format!("{}/32", Ipv4Addr::from(n << 8 | 9))
                    .parse()
                    .unwrap()
            })
            .collect(),
        ..Ruleset::default()
    }
    .normalise()
    .unwrap();
    // The same deterministic placement the install below makes.
    let table = V4Table::build(ruleset.v4()).unwrap();
    let mut by_position: BTreeMap<(usize, u32), Vec<u32>> = BTreeMap::new();
    for &net in &nets {
        let slot = table.slot_of(net).expect("every network placed") as u32;
        let buckets = host_buckets(net, table.seeds);
        let bucket = buckets
            .iter()
            .position(|&b| (b..b + HOST_BUCKET_SLOTS).contains(&slot))
            .unwrap();
        by_position
            .entry((bucket, slot - buckets[bucket]))
            .or_default()
            .push(net);
    }
    assert_eq!(
        by_position.len(),
        4,
        "not every slot position is used: {:?}",
        by_position.keys()
    );

    let runner = runner(&ruleset);
    let mut table_rows = Vec::new();
    for ((bucket, slot), nets) in &by_position {
        for &net in nets.iter().take(3) {
            let why: &'static str = Box::leak(
                format!("host map in bucket {bucket}, slot {slot}: the listed host")
                    .into_boxed_str(),
            );
            table_rows.push(case(
                PASS,
                SipAllowed,
                why,
                ip4(Ipv4Addr::from(net << 8 | 9)).udp(5060, 5060),
            ));
            let why: &'static str = Box::leak(
                format!("host map in bucket {bucket}, slot {slot}: its neighbour").into_boxed_str(),
            );
            table_rows.push(case(
                DROP,
                SipDenied,
                why,
                ip4(Ipv4Addr::from(net << 8 | 10)).udp(5060, 5060),
            ));
        }
    }
    run_table("host map positions", &runner, &table_rows, |c| c.verdict);
}

// --- abuse controls (docs/policy.md: ban set, rate limits, RTP check) ---

/// The reasons only the abuse controls give.
const ABUSE: [Reason; 4] = [Banned, SipRatelimited, RtpRatelimited, RtpInvalid];

/// A source banned for an hour in the abuse table, and its neighbour.
const BANNED: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 66);
const BANNED_NEIGHBOUR: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 67);
/// Banned once, expired since.
const EXPIRED: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
/// Its own /32 ban expired, but the live /28 around it still bans it.
const COVERED: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 5);

/// An RTP header (version 2, PCMA), then `payload_len` bytes.
fn rtp(payload_len: usize) -> Vec<u8> {
    let mut p = vec![
        0x80, 0x08, 0x12, 0x34, 0, 0, 0x01, 0x40, 0xde, 0xad, 0xbe, 0xef,
    ];
    p.extend(std::iter::repeat_n(0xd5, payload_len));
    p
}

fn abuse_ruleset() -> Ruleset {
    use filter_policy::ruleset::RateLimit;
    Ruleset {
        // Two packets at once, then one a second: the rows below run in
        // well under a second.
        sip_limit: Some(RateLimit {
            per_sec: 1,
            burst: 2,
        }),
        rtp_limit: Some(RateLimit {
            per_sec: 1,
            burst: 1,
        }),
        check_rtp: true,
        ..Ruleset::default()
    }
}

/// The ban set of the abuse table, written through the kernel layer with
/// expiries relative to now.
fn install_bans(runner: &mut Runner) {
    use filter_kernel::{bans::Ban, maps::monotonic_ns};
    let now = monotonic_ns();
    let hour = 3_600_000_000_000;
    // Expired a second ago: the program reads the coarse clock, which runs
    // up to a tick behind CLOCK_MONOTONIC, so a ban that ended a
    // nanosecond ago still holds for the rest of the tick.
    let ago = 1_000_000_000;
    let ban = |net: &str, expires_ns| Ban {
        net: net.parse().unwrap(),
        expires_ns,
    };
    runner
        .maps
        .set_bans(&[
            ban("203.0.113.66/32", now + hour),
            ban("44.238.177.138/32", filter_common::BAN_PERMANENT),
            ban("198.51.100.7/32", now - ago),
            ban("192.0.2.0/28", now + hour),
            ban("192.0.2.5/32", now - ago),
            ban("2001:db8:bad::/48", now + hour),
            ban("2001:db8:bad::5/128", now - ago),
            ban("2001:db8:c0de::7/128", now + hour),
            ban("2001:db8:c0de::/128", now + hour),
        ])
        .expect("writing the ban set");
}

/// Rows in order: the rate-limit rows count on the ones before them.
#[rustfmt::skip]
fn abuse_table() -> Vec<Case> {
    let stun = [0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
    let rtcp_rr = [0x81, 0xc9, 0x00, 0x07, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    vec![
        // --- banned: right after malformed, before every other rule ---
        case(DROP, Banned, "banned source, UDP 5060", ip4(BANNED).udp(5060, 5060)),
        case(DROP, Banned, "banned source, RTP", ip4(BANNED).udp(50000, 40000).payload(&rtp(160))),
        case(DROP, Banned, "banned source, SSH", ip4(BANNED).tcp(33000, 22)),
        case(DROP, Banned, "banned source, ICMP", ip4(BANNED).icmp_echo()),
        case(DROP, Banned, "banned source, non-first fragment", ip4(BANNED).udp(5060, 5060).fragment(10, true)),
        case(DROP, Banned, "banned source behind IPv4 options and a VLAN tag", ip4(BANNED).ipv4_options(8).vlan(TPID_8021Q, 7).udp(5060, 5060)),
        case(DROP, Banned, "an allowlisted address banned: the ban wins", ip4(PROVIDER_B).udp(5060, 5060)),
        case(DROP, Banned, "own /32 ban expired, the live /28 around it still bans", ip4(COVERED).udp(50000, 40000).payload(&rtp(20))),
        case(DROP, Banned, "banned IPv6 /48", ip6(stranger6()).udp(5060, 5060)),
        case(DROP, Banned, "banned IPv6 /48 behind extension headers", common_chain(ip6(stranger6())).tcp(1, 22)),
        case(DROP, Banned, "banned IPv6 /128 (its bucket)", ip6(v6("2001:db8:c0de::7")).tcp(1, 22)),
        case(DROP, Banned, "banned IPv6 /128 whose second word is 0", ip6(v6("2001:db8:c0de::")).udp(5060, 5060)),
        case(DROP, Banned, "own /128 ban expired, the live /48 around it still bans", ip6(v6("2001:db8:bad::5")).tcp(1, 22)),
        case(DROP, Malformed, "malformed from a banned source stays malformed", ip4(BANNED).udp(5060, 5060).cut_to(14 + 20 + 6)),
        case(PASS, NonIp, "ARP from a banned address is not IP", Frame::arp(BANNED, HOST)),
        case(DROP, SipDenied, "neighbour of a banned /32 (same /24): not banned", ip4(BANNED_NEIGHBOUR).udp(5060, 5060)),
        case(DROP, SipDenied, "expired ban: back to the other rules", ip4(EXPIRED).udp(5060, 5060)),
        case(PASS, Other, "192.0.2.16, just outside the banned /28", ip4(Ipv4Addr::new(192, 0, 2, 16)).tcp(1, 22)),
        case(PASS, Other, "IPv6 next to the banned /48", ip6(v6("2001:db8:bae::9")).tcp(1, 22)),
        case(PASS, Other, "IPv6 next to a banned /128: not banned", ip6(v6("2001:db8:c0de::8")).tcp(1, 22)),
        // --- sip_ratelimited: two at once, then one a second, per source ---
        case(PASS, SipAllowed, "provider A, first packet", ip4(PROVIDER_A).udp(5060, 5060)),
        case(PASS, SipAllowed, "provider A, second packet: the burst", ip4(PROVIDER_A).tcp(1, 5061)),
        case(DROP, SipRatelimited, "provider A, third packet at once: over the limit", ip4(PROVIDER_A).udp(5060, 5060)),
        case(DROP, SipRatelimited, "provider A, fourth", ip4(PROVIDER_A).sctp(5060, 5060)),
        case(DROP, SipDenied, "a stranger is denied, not limited (and takes no bucket)", ip4(STRANGER).udp(5060, 5060)),
        // --- rtp_invalid, then rtp_ratelimited: one at once per source ---
        case(PASS, RtpAllowed, "RTP, 12-byte header and 160 bytes of PCMA", ip4(Ipv4Addr::new(198, 51, 100, 20)).udp(40000, 40000).payload(&rtp(160))),
        case(DROP, RtpRatelimited, "the same source again at once: over the limit", ip4(Ipv4Addr::new(198, 51, 100, 20)).udp(40000, 40000).payload(&rtp(160))),
        case(PASS, RtpAllowed, "RTCP receiver report (version 2, 32 bytes)", ip4(Ipv4Addr::new(198, 51, 100, 21)).udp(40001, 40001).payload(&rtcp_rr)),
        case(PASS, RtpAllowed, "RTP header only, 12 bytes", ip4(Ipv4Addr::new(198, 51, 100, 22)).udp(40000, 40000).payload(&rtp(0))),
        case(PASS, RtpAllowed, "SRTP: clear header, ciphertext and a 10-byte tag", ip4(Ipv4Addr::new(198, 51, 100, 23)).udp(40000, 50000).payload(&{ let mut p = rtp(0); p.extend([0x5a; 170]); p })),
        case(PASS, RtpAllowed, "RTP over IPv6", ip6(v6("2001:db8:5::1")).udp(40000, 40000).payload(&rtp(160))),
        case(PASS, RtpAllowed, "RTP behind IPv4 options (the general walk)", ip4(Ipv4Addr::new(198, 51, 100, 24)).ipv4_options(4).udp(40000, 40000).payload(&rtp(20))),
        case(DROP, RtpInvalid, "11 bytes of payload: shorter than an RTP header", ip4(STRANGER).udp(40000, 40000).payload(&rtp(0)[..11])),
        case(DROP, RtpInvalid, "no payload at all", ip4(STRANGER).udp(40000, 40000)),
        case(DROP, RtpInvalid, "version 0: a STUN binding request", ip4(STRANGER).udp(40000, 40000).payload(&stun)),
        case(DROP, RtpInvalid, "version 1", ip4(STRANGER).udp(40000, 40000).payload(&[0x40; 40])),
        case(DROP, RtpInvalid, "version 3", ip4(STRANGER).udp(40000, 40000).payload(&[0xc0; 40])),
        case(DROP, RtpInvalid, "zeros, a typical flood payload", ip4(STRANGER).udp(40000, 40000).payload(&[0; 100])),
        case(DROP, RtpInvalid, "junk over IPv6", ip6(v6("2001:db8:5::2")).udp(40000, 40000).payload(&[0; 100])),
        case(DROP, RtpInvalid, "junk behind IPv4 options", ip4(STRANGER).ipv4_options(4).udp(40000, 40000).payload(&[0x17; 30])),
        case(DROP, RtpInvalid, "RTP header cut by the IP total length, frame padded", ip4(STRANGER).udp(40000, 40000).payload(&rtp(0)).ip4(|h| h.total_len = Some(20 + 8 + 11))),
        case(PASS, Other, "junk outside the media ports, both ways, is not checked", ip4(STRANGER).udp(30000, 39999).payload(&[0; 100])),
        case(PASS, RtpAllowed, "junk from a provider media port to a port outside rtp_ports: media by its source, not checked", ip4(STRANGER).udp(40000, 39999).payload(&[0; 100])),
        case(PASS, Other, "TCP into the media range is not RTP's business", ip4(STRANGER).tcp(1, 40000)),
    ]
}

#[test]
fn abuse_controls_table() {
    sipwall_tests::skip_unless_root!();
    let table = abuse_table();
    for reason in ABUSE {
        assert!(
            table.iter().any(|c| c.reason == reason),
            "no row for {}",
            reason.name()
        );
    }
    let mut live = runner(&abuse_ruleset());
    install_bans(&mut live);
    run_table("abuse controls", &live, &table, |c| c.verdict);
    // `top --reason sip_ratelimited` names provider A with its two drops.
    let limited = live.maps.drop_sources(SipRatelimited).unwrap();
    let a = IpAddr::V4(PROVIDER_A);
    assert_eq!(limited.len(), 1, "{limited:?}");
    assert_eq!((limited[0].0, limited[0].1.packets), (a, 2), "{limited:?}");
    let rtp_limited = live.maps.drop_sources(RtpRatelimited).unwrap();
    assert_eq!(rtp_limited.len(), 1, "{rtp_limited:?}");
    // Dry run: the same rows and counters, nothing dropped.
    let mut dry = runner(&Ruleset {
        dry_run: true,
        ..abuse_ruleset()
    });
    install_bans(&mut dry);
    run_table("abuse controls, dry run", &dry, &table, |_| PASS);
}

#[test]
fn a_ban_expires_by_itself_in_the_kernel() {
    sipwall_tests::skip_unless_root!();
    use filter_kernel::{bans::Ban, maps::monotonic_ns};
    let mut runner = runner(&Ruleset::default());
    // Long enough that a loaded machine still runs the first packet before
    // the end (300 ms was not, with the suite beside other builds).
    let ban = Ban {
        net: "203.0.113.66/32".parse().unwrap(),
        expires_ns: monotonic_ns() + 2_000_000_000,
    };
    runner.maps.set_bans(&[ban]).unwrap();
    let frame = || ip4(BANNED).tcp(33000, 22);
    check(
        &runner,
        &case(DROP, Banned, "banned for 2 s", frame()),
        DROP,
    )
    .unwrap();
    // Past the end by more than the coarse clock's tick.
    while monotonic_ns() < ban.expires_ns + 100_000_000 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Nothing in userspace touched the maps: the kernel's clock ended it.
    check(&runner, &case(PASS, Other, "after the end", frame()), PASS).unwrap();
    assert_eq!(
        runner.maps.bans().unwrap(),
        [ban],
        "the entry is still there"
    );
}

/// Bans each of `addrs` (single addresses, for good) and checks that each
/// drops, and runs `also` (further checks under that set); then makes the
/// ban set `kept` alone and checks that the others pass again, `kept`
/// still drop, and runs `also` again.
fn ban_then_keep(runner: &mut Runner, addrs: &[IpAddr], kept: &[IpAddr], also: impl Fn(&Runner)) {
    use filter_common::BAN_PERMANENT;
    use filter_kernel::bans::Ban;
    let bans = |addrs: &[IpAddr]| -> Vec<Ban> {
        addrs
            .iter()
            .map(|&a| Ban {
                net: IpNet::from(a),
                expires_ns: BAN_PERMANENT,
            })
            .collect()
    };
    let ssh = |a: IpAddr| match a {
        IpAddr::V4(a) => ip4(a).tcp(33000, 22),
        IpAddr::V6(a) => ip6(a).tcp(33000, 22),
    };
    runner.maps.set_bans(&bans(addrs)).unwrap();
    for &a in addrs {
        check(runner, &case(DROP, Banned, "banned", ssh(a)), DROP).unwrap();
    }
    also(runner);
    runner.maps.set_bans(&bans(kept)).unwrap();
    for &a in addrs {
        let c = if kept.contains(&a) {
            case(DROP, Banned, "still banned", ssh(a))
        } else {
            case(PASS, Other, "no longer banned", ssh(a))
        };
        check(runner, &c, c.verdict).unwrap();
    }
    also(runner);
}

/// Single IPv4 bans live in buckets of an array (`BAN_SLOTS_V4`), each
/// address in one of two: an address whose two buckets are full is still
/// banned (the hash behind them answers), and a smaller set written after
/// it leaves the removed addresses free and the rest banned.
#[test]
fn single_bans_beyond_their_buckets_still_drop() {
    sipwall_tests::skip_unless_root!();
    use filter_common::ban_buckets_v4;
    let buckets = |a: u32| ban_buckets_v4(u32::from_ne_bytes(Ipv4Addr::from(a).octets()));
    // Four addresses fill bucket 0, four more the second bucket of the
    // last one, which comes after them all in address order: no room.
    let last = (0..=u32::MAX)
        .rev()
        .find(|&a| buckets(a).0 == 0 && buckets(a).1 != 0)
        .unwrap();
    let fill = |bucket: u32| (0..last).filter(move |&a| buckets(a).0 == bucket).take(4);
    let addrs: Vec<IpAddr> = fill(0)
        .chain(fill(buckets(last).1))
        .chain([last])
        .map(|a| IpAddr::V4(Ipv4Addr::from(a)))
        .collect();
    // Keep the first and the last: the others pass again, these two drop.
    ban_then_keep(
        &mut runner(&Ruleset::default()),
        &addrs,
        &[addrs[0], addrs[8]],
        |_| {},
    );
}

/// Single IPv6 bans live in buckets of their own array (`BAN_SLOTS_V6`),
/// two addresses a bucket, each address in one of two: an address whose
/// two buckets are full is still banned (the hash behind them answers), a
/// smaller set written after it leaves the removed addresses free and the
/// rest banned, and a source next to them that is not banned passes.
#[test]
fn single_ipv6_bans_beyond_their_buckets_still_drop() {
    sipwall_tests::skip_unless_root!();
    use filter_common::{ban_buckets_v6, ban_host_bit_v6};
    let addr = |i: u32| Ipv6Addr::new(0x2001, 0xdb8, 0x8000, 0, 0, 0, (i >> 16) as u16, i as u16);
    let buckets = |i: u32| {
        let o = addr(i).octets();
        ban_buckets_v6(
            u64::from_ne_bytes(o[..8].try_into().unwrap()),
            u64::from_ne_bytes(o[8..].try_into().unwrap()),
        )
    };
    // Two addresses fill the first bucket of the last one, two more its
    // second, all before it in address order: no room for it.
    let last = (1u32 << 22..)
        .find(|&i| buckets(i).0 != buckets(i).1)
        .unwrap();
    let (first, second) = buckets(last);
    let fill = |bucket: u32| (0..last).filter(move |&i| buckets(i).0 == bucket).take(2);
    let addrs: Vec<IpAddr> = fill(first)
        .chain(fill(second))
        .chain([last])
        .map(|i| IpAddr::V6(addr(i)))
        .collect();
    assert_eq!(addrs.len(), 5);
    // A source that is not banned but shares the last one's bit in the
    // gate's host bitmap: it gets past the gate to the buckets (and, while
    // some address has no room, to the hash), and passes.
    let bit = |a: Ipv6Addr| {
        let v = u128::from(a);
        ban_host_bit_v6((v >> 64) as u64, v as u64)
    };
    let neighbour = (0..1u32 << 24)
        .map(|j| addr(j << 8 | (last & 255)))
        .find(|&a| bit(a) == bit(addr(last)) && !addrs.contains(&IpAddr::V6(a)))
        .unwrap();
    let passes = |runner: &Runner| {
        let c = case(
            PASS,
            Other,
            "not banned, its host bit set",
            ip6(neighbour).tcp(33000, 22),
        );
        check(runner, &c, PASS).unwrap();
    };
    // Keep the first and the last: the others pass again, these two drop.
    ban_then_keep(
        &mut runner(&Ruleset::default()),
        &addrs,
        &[addrs[0], addrs[4]],
        passes,
    );
}

/// A flood of spoofed sources that send one packet each is counted whole,
/// but does not fill the map of denied sources: a source pushed out of its
/// per-CPU cache slot after a single packet is forgotten (an LRU insert per
/// packet would cut the rate to a third), while one that sent more is kept
/// (docs/cli.md, `top`).
#[test]
fn single_packet_sources_pushed_out_of_the_cache_are_not_remembered() {
    sipwall_tests::skip_unless_root!();
    // One CPU, so that one per-CPU cache sees every packet.
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET and
    // sched_setaffinity get valid pointers to it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
            0,
            "pinning the test to CPU 0"
        );
    }
    let runner = Runner::new(&Ruleset::default()).unwrap();
    let sip_from = |src: Ipv6Addr| ip6(src).udp(5060, 5060).build();
    let keeper = v6("2001:db8:1:2::3");
    for _ in 0..2 {
        assert_eq!(runner.run(&sip_from(keeper)).unwrap().verdict, DROP);
    }
    const SOURCES: u32 = 40_000;
    for i in 0..SOURCES {
        let src = Ipv6Addr::new(0x2001, 0xdb8, 7, 0, 0, 0, (i >> 16) as u16, i as u16);
        assert_eq!(runner.run(&sip_from(src)).unwrap().verdict, DROP);
    }
    let counted = runner.maps.counters().unwrap()[SipDenied as usize].packets;
    assert_eq!(counted, u64::from(SOURCES) + 2, "every packet is counted");
    let denied = runner.maps.denied_sources().unwrap();
    let kept = denied.iter().find(|(a, _)| *a == IpAddr::V6(keeper));
    assert_eq!(
        kept.map(|(_, c)| c.packets),
        Some(2),
        "the source that sent two packets is listed with both"
    );
    let singles = denied.iter().filter(|(_, c)| c.packets == 1).count();
    assert!(
        singles <= filter_common::DENIED_CACHE_SLOTS as usize,
        "{singles} one-packet sources remembered: more than the cache holds, so pushed-out ones went to the LRU map"
    );
}

// --- strict mode (docs/policy.md, "Strict mode") ---

const STRICT_TOML: &str = r#"
[media]
rtp_ports = "10000-20000"

[policy]
mode = "strict"

[[strict.allow]]
proto = "tcp"
ports = [22]
from = ["198.51.100.0/24", "2001:db8:a::/48"]

[[strict.allow]]
proto = "udp"
ports = ["7000-7010"]

[[strict.allow]]
proto = "any"
from = ["203.0.113.200/32"]
"#;

const MGMT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const WEB: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 50);
const RESOLVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 53);
const PINGED: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 60);
const TRUSTED: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 200);

fn strict_ruleset() -> Ruleset {
    config::parse(STRICT_TOML, "strict.toml").unwrap_or_else(|e| panic!("{e}"))
}

/// The flows the strict table's host has open (entered in the program's
/// flow map as the egress program or the socket-table seeding would).
fn strict_flows() -> Vec<filter_kernel::flows::FlowTuple> {
    use filter_kernel::flows::FlowTuple;
    let flow = |proto, remote: IpAddr, remote_port, local: IpAddr, local_port| FlowTuple {
        proto,
        remote,
        remote_port,
        local,
        local_port,
    };
    vec![
        flow(6, WEB.into(), 443, HOST.into(), 40001),
        flow(17, RESOLVER.into(), 53, HOST.into(), 33333),
        flow(1, PINGED.into(), 0, HOST.into(), 1),
        flow(6, stranger6().into(), 443, host6().into(), 40002),
        flow(58, stranger6().into(), 0, host6().into(), 1),
        flow(132, WEB.into(), 2905, HOST.into(), 2905),
    ]
}

#[rustfmt::skip]
fn strict_table() -> Vec<Case> {
    let sip = b"OPTIONS sip:host SIP/2.0\r\n\r\n";
    vec![
        // 1: not IP
        case(PASS, NonIp, "ARP is never filtered", Frame::arp(STRANGER, HOST)),
        // 2: malformed
        case(DROP, Malformed, "IHL 4", ip4(STRANGER).udp(5060, 5060).ip4(|h| h.ihl = Some(4))),
        // 3: signalling as guard
        case(PASS, SipAllowed, "provider SIP", ip4(PROVIDER_A).udp(5060, 5060).payload(sip)),
        case(DROP, SipDenied, "outsider SIP", ip4(STRANGER).udp(5060, 5060).payload(sip)),
        case(DROP, SipDenied, "outsider SIP from the management network: rules come after signalling", ip4(MGMT).tcp(40000, 5061)),
        // 4: UDP to rtp_ports
        case(PASS, RtpAllowed, "media into rtp_ports from the provider's media port", ip4(STRANGER).udp(40000, 10000)),
        case(PASS, RtpAllowed, "media into rtp_ports from any port", ip4(STRANGER).udp(1234, 20000)),
        case(PASS, RtpAllowed, "IPv6 media into rtp_ports", ip6(stranger6()).udp(50000, 15000)),
        // 5: essential
        case(PASS, Essential, "ICMP fragmentation needed (path MTU)", ip4(STRANGER).icmp(3, 4)),
        case(PASS, Essential, "ICMP time exceeded", ip4(STRANGER).icmp(11, 0)),
        case(PASS, Essential, "ICMP parameter problem", ip4(STRANGER).icmp(12, 0)),
        case(PASS, Essential, "ICMP echo request (ping = true)", ip4(STRANGER).icmp_echo()),
        case(PASS, Essential, "ICMPv6 packet too big", ip6(stranger6()).icmp(2, 0)),
        case(PASS, Essential, "ICMPv6 destination unreachable", ip6(stranger6()).icmp(1, 4)),
        case(PASS, Essential, "ICMPv6 neighbour solicitation", ip6(stranger6()).icmp(135, 0)),
        case(PASS, Essential, "ICMPv6 neighbour advertisement", ip6(stranger6()).icmp(136, 0)),
        case(PASS, Essential, "ICMPv6 router advertisement", ip6(stranger6()).icmp(134, 0)),
        case(PASS, Essential, "ICMPv6 MLD query", ip6(stranger6()).icmp(130, 0)),
        case(PASS, Essential, "ICMPv6 MLDv2 report", ip6(stranger6()).icmp(143, 0)),
        case(PASS, Essential, "ICMPv6 echo request (ping = true)", ip6(stranger6()).icmp_echo()),
        case(PASS, Essential, "DHCPv4 server to client", ip4(STRANGER).udp(67, 68)),
        case(PASS, Essential, "DHCPv6 server to client", ip6(stranger6()).udp(547, 546)),
        case(DROP, Denied, "DHCPv4 the other way (68 -> 67)", ip4(STRANGER).udp(68, 67)),
        case(DROP, Denied, "ICMP redirect: not essential", ip4(STRANGER).icmp(5, 0)),
        case(DROP, Denied, "ICMPv6 type 138 (router renumbering): not essential", ip6(stranger6()).icmp(138, 0)),
        case(DROP, Denied, "ICMP type cut short (2 bytes of ICMP)", ip4(STRANGER).raw(1, &[3, 4])),
        // 6: replies to the host's flows
        case(PASS, Reply, "TCP answer of the host's HTTPS connection", ip4(WEB).tcp(443, 40001)),
        case(PASS, Reply, "IPv6 TCP answer of the host's connection", ip6(stranger6()).tcp(443, 40002)),
        case(PASS, Reply, "DNS answer to the host's query", ip4(RESOLVER).udp(53, 33333).payload(&[0; 40])),
        case(PASS, Reply, "ICMP echo reply to the host's ping", ip4(PINGED).icmp(0, 0)),
        case(PASS, Reply, "ICMPv6 echo reply to the host's ping", ip6(stranger6()).icmp(129, 0)),
        case(PASS, Reply, "SCTP answer of the host's association", ip4(WEB).sctp(2905, 2905)),
        case(DROP, Denied, "unsolicited TCP ACK/SYN-ACK: the web server's port is right, the host's port is not", ip4(WEB).tcp(443, 40009)),
        case(DROP, Denied, "unsolicited TCP from another address to the host's open port", ip4(STRANGER).tcp(443, 40001)),
        case(DROP, Denied, "unsolicited UDP 'reply' from port 53", ip4(STRANGER).udp(53, 33333)),
        case(DROP, Denied, "DNS answer to a port the host did not ask from", ip4(RESOLVER).udp(53, 33334)),
        case(DROP, Denied, "UDP with the flow's ports but TCP's protocol swapped: UDP from 443", ip4(WEB).udp(443, 40001)),
        case(DROP, Denied, "ICMP echo reply nobody asked for", ip4(STRANGER).icmp(0, 0)),
        // 7: rules
        case(PASS, RuleAllowed, "SSH from the management network", ip4(MGMT).tcp(50123, 22)),
        case(PASS, RuleAllowed, "SSH from the IPv6 management network", ip6(v6("2001:db8:a::1")).tcp(50123, 22)),
        case(DROP, Denied, "SSH from elsewhere", ip4(STRANGER).tcp(50123, 22)),
        case(DROP, Denied, "SSH from just outside the management /24", ip4(Ipv4Addr::new(198, 51, 101, 7)).tcp(50123, 22)),
        case(DROP, Denied, "UDP 22 from the management network: the rule is TCP", ip4(MGMT).udp(33123, 22)),
        case(PASS, RuleAllowed, "UDP 7000, first port of a range rule, any source", ip4(STRANGER).udp(1000, 7000)),
        case(PASS, RuleAllowed, "UDP 7010, last port of the range", ip6(stranger6()).udp(1000, 7010)),
        case(DROP, Denied, "UDP 7011, one past the range", ip4(STRANGER).udp(1000, 7011)),
        case(PASS, RuleAllowed, "ESP from the 'any' rule's source", ip4(TRUSTED).raw(PROTO_ESP, &[0; 24])),
        case(PASS, RuleAllowed, "TCP 80 from the 'any' rule's source", ip4(TRUSTED).tcp(1000, 80)),
        // 8: non-first fragments
        case(PASS, Fragment, "non-first fragment", ip4(STRANGER).raw(PROTO_UDP, b"rest of a datagram").fragment(185, false)),
        case(PASS, Fragment, "IPv6 non-first fragment", ip6(stranger6()).ext(Ext::Fragment { offset: 185, more: true }).udp(5060, 5060)),
        // 9: provider media outside rtp_ports
        case(DROP, RtpOutside, "UDP from provider port 40000 to 30000: one-way audio", ip4(STRANGER).udp(40000, 30000)),
        case(DROP, RtpOutside, "UDP from provider port 60000 to 9999", ip6(stranger6()).udp(60000, 9999)),
        case(DROP, Denied, "UDP from port 39999 to 30000: not the provider's media port", ip4(STRANGER).udp(39999, 30000)),
        case(DROP, Denied, "TCP from provider port 50000: media is UDP", ip4(STRANGER).tcp(50000, 30000)),
        // 10: everything else
        case(DROP, Denied, "outsider TCP SYN to an unruled port", ip4(STRANGER).tcp(50000, 80)),
        case(DROP, Denied, "ESP from an outsider", ip4(STRANGER).raw(PROTO_ESP, &[0; 24])),
        case(DROP, Denied, "IPv4 with no transport (protocol 59)", ip4(STRANGER)),
        case(DROP, Denied, "IPv6 no next header", ip6(stranger6())),
    ]
}

fn strict_runner(ruleset: &Ruleset) -> Runner {
    let mut r = runner(ruleset);
    r.maps
        .add_flows(&strict_flows())
        .expect("entering the flows");
    r
}

/// Strict mode with the abuse controls: bans right after `malformed`,
/// before essential traffic, replies and rules; rate limits and the RTP
/// check on strict mode's signalling and media rows. Rows in order.
#[rustfmt::skip]
fn strict_abuse_table() -> Vec<Case> {
    let media_src = Ipv4Addr::new(198, 51, 100, 30);
    vec![
        case(DROP, Malformed, "malformed from a banned source stays malformed", ip4(BANNED).udp(5060, 5060).cut_to(14 + 20 + 6)),
        case(DROP, Banned, "banned source's path-MTU ICMP", ip4(BANNED).icmp(3, 4)),
        case(DROP, Banned, "banned source answering the host's own flow", ip6(stranger6()).tcp(443, 40002)),
        case(DROP, Banned, "banned allowlisted provider address", ip4(PROVIDER_B).udp(5060, 5060)),
        case(DROP, Banned, "banned source's non-first fragment", ip4(BANNED).raw(PROTO_UDP, b"rest").fragment(185, false)),
        case(PASS, NonIp, "ARP from a banned address", Frame::arp(BANNED, HOST)),
        case(PASS, RuleAllowed, "SSH from the management network (its /32 ban expired)", ip4(MGMT).tcp(50123, 22)),
        case(PASS, Reply, "the host's DNS answer (not banned)", ip4(RESOLVER).udp(53, 33333).payload(&[0; 40])),
        case(PASS, SipAllowed, "provider A, first", ip4(PROVIDER_A).udp(5060, 5060)),
        case(PASS, SipAllowed, "provider A, second: the burst", ip4(PROVIDER_A).tcp(1, 5061)),
        case(DROP, SipRatelimited, "provider A, third at once", ip4(PROVIDER_A).udp(5060, 5060)),
        case(PASS, RtpAllowed, "RTP into rtp_ports", ip4(media_src).udp(40000, 10000).payload(&rtp(160))),
        case(DROP, RtpRatelimited, "the same source again at once", ip4(media_src).udp(40000, 10000).payload(&rtp(160))),
        case(DROP, RtpInvalid, "junk into rtp_ports", ip4(STRANGER).udp(40000, 10000).payload(&[0; 100])),
        case(DROP, RtpOutside, "junk from a provider media port outside rtp_ports: not media in strict mode", ip4(STRANGER).udp(40000, 30000).payload(&[0; 100])),
        case(DROP, Denied, "outsider TCP SYN", ip4(STRANGER).tcp(50000, 80)),
    ]
}

#[test]
fn strict_mode_with_abuse_controls_table() {
    sipwall_tests::skip_unless_root!();
    let abuse = abuse_ruleset();
    let rules = Ruleset {
        sip_limit: abuse.sip_limit,
        rtp_limit: abuse.rtp_limit,
        check_rtp: true,
        ..strict_ruleset()
    };
    let table = strict_abuse_table();
    let mut live = strict_runner(&rules);
    install_bans(&mut live);
    run_table("strict with abuse controls", &live, &table, |c| c.verdict);
    // `top --reason banned` names the banned sources that sent packets.
    let banned = live.maps.drop_sources(Banned).unwrap();
    assert!(
        banned
            .iter()
            .any(|(a, c)| *a == IpAddr::V4(BANNED) && c.packets >= 2),
        "{banned:?}"
    );
    let mut dry = strict_runner(&Ruleset {
        dry_run: true,
        ..rules
    });
    install_bans(&mut dry);
    run_table("strict with abuse controls, dry run", &dry, &table, |_| {
        PASS
    });
}

#[test]
fn strict_ruleset_table() {
    sipwall_tests::skip_unless_root!();
    let table = strict_table();
    // Calls mode's rtp_unsolicited has its own table (calls_mode_tables).
    for reason in Reason::ALL
        .into_iter()
        .filter(|r| *r != Other && *r != RtpUnsolicited && !ABUSE.contains(r))
    {
        assert!(
            table.iter().any(|c| c.reason == reason),
            "no row for {}",
            reason.name()
        );
    }
    run_table("strict", &strict_runner(&strict_ruleset()), &table, |c| {
        c.verdict
    });
    // The audit stage: same counters, nothing dropped.
    let dry = Ruleset {
        dry_run: true,
        ..strict_ruleset()
    };
    run_table("strict dry run", &strict_runner(&dry), &table, |_| PASS);
}

#[test]
fn strict_without_ping_and_with_long_allowlists() {
    sipwall_tests::skip_unless_root!();
    let no_ping = Ruleset {
        ping: false,
        ..strict_ruleset()
    };
    let rows = vec![
        case(
            DROP,
            Denied,
            "echo request with ping = false",
            ip4(STRANGER).icmp_echo(),
        ),
        case(
            DROP,
            Denied,
            "ICMPv6 echo request with ping = false",
            ip6(stranger6()).icmp_echo(),
        ),
        case(
            PASS,
            Essential,
            "path MTU still passes",
            ip4(STRANGER).icmp(3, 4),
        ),
        case(
            PASS,
            Reply,
            "replies to the host's own ping still pass",
            ip4(PINGED).icmp(0, 0),
        ),
    ];
    run_table("strict, ping off", &strict_runner(&no_ping), &rows, |c| {
        c.verdict
    });
    run_table(
        "strict + filler",
        &strict_runner(&with_filler(&strict_ruleset())),
        &strict_table(),
        |c| c.verdict,
    );
}

/// The TC egress program learns the host's flows from outgoing frames
/// (BPF_PROG_TEST_RUN on TC): their answers pass as `reply`, other
/// packets to the same ports stay denied.
#[test]
fn egress_program_learns_the_hosts_flows() {
    sipwall_tests::skip_unless_root!();
    let runner = runner(&strict_ruleset());
    let out4 = |dst| Frame::ipv4(HOST, dst);
    let out6 = |dst| Frame::ipv6(host6(), dst);
    let answers = [
        (
            out4(WEB).tcp(40100, 443),
            ip4(WEB).tcp(443, 40100),
            "TCP SYN out, SYN-ACK back",
        ),
        (
            out4(RESOLVER).udp(33400, 53),
            ip4(RESOLVER).udp(53, 33400),
            "DNS query out, answer back",
        ),
        (
            out4(PINGED).icmp_echo(),
            ip4(PINGED).icmp(0, 0),
            "ping out, echo reply back",
        ),
        (
            out6(stranger6()).tcp(40101, 443),
            ip6(stranger6()).tcp(443, 40101),
            "IPv6 TCP",
        ),
        (
            out6(stranger6()).icmp_echo(),
            ip6(stranger6()).icmp(129, 0),
            "IPv6 ping",
        ),
        (
            out4(WEB).sctp(2906, 2906),
            ip4(WEB).sctp(2906, 2906),
            "SCTP",
        ),
    ];
    // Before: unsolicited.
    for (_, back, why) in &answers {
        let c = case(DROP, Denied, why, back.clone());
        check(&runner, &c, DROP).unwrap_or_else(|e| panic!("before egress, {why}: {e}"));
    }
    for (out, _, why) in &answers {
        let (action, _) = runner
            .egress(&out.build(), 1)
            .unwrap_or_else(|e| panic!("{why}: {e:#}"));
        assert_eq!(
            action, -1,
            "{why}: the egress program must hand the packet on (TC_ACT_UNSPEC)"
        );
    }
    for (_, back, why) in &answers {
        let c = case(PASS, Reply, why, back.clone());
        check(&runner, &c, PASS).unwrap_or_else(|e| panic!("after egress, {why}: {e}"));
    }
    // Still denied: another port, another address.
    let c = case(DROP, Denied, "other port", ip4(WEB).tcp(443, 40199));
    check(&runner, &c, DROP).unwrap_or_else(|e| panic!("{e}"));
    let c = case(DROP, Denied, "other address", ip4(STRANGER).udp(53, 33400));
    check(&runner, &c, DROP).unwrap_or_else(|e| panic!("{e}"));
    // Guard mode learns nothing (the egress program costs a map read).
    let mut guard = runner;
    guard.install(&Ruleset::default()).unwrap();
    guard.maps.clear_flows().unwrap();
    guard.egress(&out4(WEB).tcp(40300, 443).build(), 1).unwrap();
    assert_eq!(
        guard.maps.flow_count(),
        0,
        "guard mode must not learn flows"
    );
}

/// The XDP program's reply cache (a per-CPU slot per flow it found in the
/// flow map) never lets more in than the map: a flow removed from the map
/// (with the cache emptied, as `clear_flows` does) or past its idle time
/// is denied again, whether its slot was filled or not.
#[test]
fn reply_cache_never_outlives_the_flow() {
    sipwall_tests::skip_unless_root!();
    use filter_kernel::flows::FlowTuple;
    use std::time::Duration;
    let mut runner = runner(&strict_ruleset());
    let dns = FlowTuple {
        proto: 17,
        remote: RESOLVER.into(),
        remote_port: 53,
        local: HOST.into(),
        local_port: 33500,
    };
    let answer = || case(PASS, Reply, "DNS answer", ip4(RESOLVER).udp(53, 33500));
    let unsolicited = || {
        case(
            DROP,
            Denied,
            "DNS answer to no flow",
            ip4(RESOLVER).udp(53, 33500),
        )
    };
    runner.maps.add_flows(&[dns]).unwrap();
    // The first answer fills the slot from the map, the rest come from it.
    for i in 0..3 {
        check(&runner, &answer(), PASS).unwrap_or_else(|e| panic!("answer {i}: {e}"));
    }
    runner.maps.clear_flows().unwrap();
    check(&runner, &unsolicited(), DROP).unwrap_or_else(|e| panic!("after clearing: {e}"));
    // UDP's idle time is 180 s: a flow quiet for 179.5 s is let in (and
    // cached), and a second later neither the map nor the slot lets it in.
    runner
        .maps
        .add_flows_idle(&[dns], Duration::from_millis(179_500))
        .unwrap();
    for i in 0..3 {
        check(&runner, &answer(), PASS).unwrap_or_else(|e| panic!("aged answer {i}: {e}"));
    }
    std::thread::sleep(Duration::from_millis(1_000));
    check(&runner, &unsolicited(), DROP).unwrap_or_else(|e| panic!("after the idle time: {e}"));
}

/// The rows of an Ethernet table that mean the same on an L3 device once
/// their Ethernet header is taken away: untagged IPv4 and IPv6, not cut
/// to a length counted with the Ethernet header.
fn as_l3(table: Vec<Case>) -> Vec<Case> {
    table
        .into_iter()
        .filter(|c| {
            matches!(c.frame.net, Net::V4(_) | Net::V6(_))
                && c.frame.tags.is_empty()
                && c.frame.link == Link::Ethernet
                && c.frame.cut_to.is_none()
        })
        .map(|c| Case {
            frame: c.frame.l3(),
            ..c
        })
        .collect()
}

/// What only an L3 device's frames can get wrong: the version nibble is
/// the only thing that says what the frame is.
#[rustfmt::skip]
fn l3_only_table() -> Vec<Case> {
    vec![
        case(DROP, Malformed, "version nibble 5: an L3 device carries only IP", ip4(STRANGER).udp(5060, 5060).ip4(|h| h.version = 5).l3()),
        case(DROP, Malformed, "version nibble 0", ip4(PROVIDER_A).udp(5060, 5060).ip4(|h| h.version = 0).l3()),
        case(DROP, Malformed, "IPv4 cut inside the UDP header", ip4(STRANGER).udp(5060, 5060).cut_to(24).l3()),
        case(DROP, Malformed, "IPv6 cut inside its fixed header", ip6(stranger6()).udp(5060, 5060).cut_to(30).l3()),
        case(DROP, SipDenied, "stranger SIP whose source address starts with what an ethertype would be", Frame::ipv4(Ipv4Addr::new(8, 0, 69, 0), HOST).udp(5060, 5060).l3()),
    ]
}

fn runner_on_l3(ruleset: &Ruleset) -> Runner {
    Runner::on_link(ruleset, LinkHeader::Ip)
        .unwrap_or_else(|e| panic!("loading the program (run as root): {e:#}"))
}

#[test]
fn l3_device_frames_are_judged_from_the_ip_header() {
    sipwall_tests::skip_unless_root!();
    let mut table = as_l3(default_table());
    assert!(table.len() > 60, "only {} rows carried over", table.len());
    table.extend(l3_only_table());
    run_table(
        "guard, L3",
        &runner_on_l3(&Ruleset::default()),
        &table,
        |c| c.verdict,
    );
    let mut strict = as_l3(strict_table());
    strict.extend(l3_only_table());
    let mut runner = runner_on_l3(&strict_ruleset());
    runner
        .maps
        .add_flows(&strict_flows())
        .expect("entering the flows");
    run_table("strict, L3", &runner, &strict, |c| c.verdict);
}

#[test]
fn the_ethernet_program_is_not_fooled_by_l3_frames_and_back() {
    sipwall_tests::skip_unless_root!();
    // A stranger's SIP as an L3 device delivers it: read as Ethernet, its
    // "ethertype" lies in the source address; read right, it is denied.
    let frame = ip4(STRANGER).udp(5060, 5060).l3().build();
    let on_l3 = runner_on_l3(&Ruleset::default()).run(&frame).unwrap();
    assert_eq!(on_l3.reason(), Some(SipDenied), "{on_l3:?}");
    assert_eq!(on_l3.verdict, DROP);
    // The flag belongs to the attachment: installing another ruleset on
    // the same maps keeps it.
    let mut runner = runner_on_l3(&Ruleset::default());
    runner.install(&strict_ruleset()).unwrap();
    assert_eq!(runner.maps.link_header().unwrap(), LinkHeader::Ip);
    assert_eq!(runner.run(&frame).unwrap().reason(), Some(SipDenied));
}

#[test]
fn the_reply_cache_tells_the_families_apart() {
    sipwall_tests::skip_unless_root!();
    use filter_kernel::flows::FlowTuple;
    let mut runner = strict_runner(&strict_ruleset());
    let dns = FlowTuple {
        proto: 17,
        remote: RESOLVER.into(),
        remote_port: 53,
        local: HOST.into(),
        local_port: 33600,
    };
    runner.maps.add_flows(&[dns]).unwrap();
    // The IPv4 answer puts the flow in this CPU's cache slot.
    let answer = case(PASS, Reply, "DNS answer", ip4(RESOLVER).udp(53, 33600));
    check(&runner, &answer, PASS).unwrap_or_else(|e| panic!("IPv4 answer: {e}"));
    // An IPv6 packet between the IPv4-mapped addresses, with the flow's
    // ports, has the cached key's address words: not a reply.
    let mapped = |a: Ipv4Addr| a.to_ipv6_mapped();
    let forged = Frame::ipv6(mapped(RESOLVER), mapped(HOST))
        .udp(53, 33600)
        .build();
    for i in 0..3 {
        let out = runner.run(&forged).unwrap();
        assert_eq!(
            (out.verdict, out.reason()),
            (DROP, Some(Denied)),
            "mapped IPv6 {i}: {out:?}"
        );
    }
    check(&runner, &answer, PASS).unwrap_or_else(|e| panic!("IPv4 answer again: {e}"));
}

/// `explain` and `check --pcap` judge every frame of the tables alike: the
/// same verdict and counter from each command's own path (explain's
/// `explain_frame`, check's `check`), and the row explain names counts
/// that counter in its table of docs/policy.md. Neither knows the host's
/// flows or bans, so strict replies and banned sources are judged by the
/// rows after them, by both.
#[test]
fn explain_agrees_with_check_on_every_frame() {
    use filter_kernel::runner::{MAX_FRAME, MIN_FRAME};
    use filter_policy::rows::{Table, ROWS};
    use sipwall::ops::{
        check::{self as replay, Direction, Judged, Local},
        explain,
    };
    sipwall_tests::skip_unless_root!();
    let tables = [
        ("default", Ruleset::default(), default_table()),
        ("custom", custom_ruleset(), custom_table()),
        // Without the rate limits, whose buckets refill with time.
        (
            "abuse",
            Ruleset {
                sip_limit: None,
                rtp_limit: None,
                ..abuse_ruleset()
            },
            abuse_table(),
        ),
        ("strict", strict_ruleset(), strict_table()),
    ];
    let mut compared = 0;
    for (label, ruleset, table) in tables {
        let frames: Vec<Vec<u8>> = table.iter().map(|c| c.frame.build()).collect();
        let captured: Vec<replay::Frame> = frames
            .iter()
            .map(|f| replay::Frame {
                data: f.clone(),
                orig_len: f.len(),
                ts_ns: None,
            })
            .collect();
        let checked = replay::check(&captured, &ruleset, &Local::default(), Direction::In)
            .unwrap_or_else(|e| panic!("[{label}] check: {e:#}"));
        let runner = runner(&ruleset);
        let policy_table = if ruleset.strict() {
            Table::Strict
        } else {
            Table::Guard
        };
        for ((c, frame), checked) in table.iter().zip(&frames).zip(&checked) {
            if !(MIN_FRAME..=MAX_FRAME).contains(&frame.len()) {
                assert!(
                    matches!(checked.result, Judged::NotRun(_)),
                    "[{label}] {}",
                    c.why
                );
                continue;
            }
            let Judged::Ran(verdict, reason) = checked.result else {
                panic!(
                    "[{label}] {}: check did not run it: {:?}",
                    c.why, checked.result
                );
            };
            let e = explain::explain_frame(&runner, &ruleset, Direction::In, frame, None)
                .unwrap_or_else(|e| panic!("[{label}] {}: explain: {e:#}", c.why));
            assert_eq!(
                (e.verdict.as_str(), e.reason),
                (verdict.name().as_str(), Some(reason.name())),
                "[{label}] {}",
                c.why
            );
            let row = e.row.expect("a row");
            assert!(
                ROWS.iter()
                    .any(|r| r.table == policy_table && r.id == row && r.counter == reason.name()),
                "[{label}] {}: row {row} does not count {}",
                c.why,
                reason.name()
            );
            compared += 1;
        }
    }
    assert!(compared > 200, "only {compared} frames compared");
}

// --- calls mode: media only through live pinholes (docs/policy.md, "Media by call") ---

/// Pinholes' remote addresses.
const CALLER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 20);
const CALLER_EXPIRED: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 21);
const CALLER_OLD: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 22);
const CALLER_AHEAD: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 23);
/// Next to CALLER, no pinhole.
const CALLER_NEIGHBOUR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 24);

fn caller6() -> Ipv6Addr {
    v6("2001:db8:5::20")
}

/// The local ports of the pinholes below.
const PORT_CALLER: u16 = 10000;
const PORT_ANY: u16 = 10002;
const PORT_EXPIRED: u16 = 10004;
const PORT_V6: u16 = 10006;
const PORT_OLD: u16 = 10008;
const PORT_AHEAD: u16 = 10010;
/// In `rtp_ports`, no pinhole.
const PORT_NONE: u16 = 10500;
/// The provider's media port (default `provider_rtp_ports`).
const PROVIDER_MEDIA: u16 = 40000;

/// The pinholes every calls table runs against: one per kind and age.
fn calls_plan(idle_secs: i64) -> Vec<Planned> {
    let at = |port, remote: Option<IpAddr>, age| Planned { port, remote, age };
    vec![
        at(PORT_CALLER, Some(CALLER.into()), Age::Opened),
        at(PORT_ANY, None, Age::Opened),
        at(
            PORT_EXPIRED,
            Some(CALLER_EXPIRED.into()),
            Age::Seen(-idle_secs - 5),
        ),
        at(PORT_V6, Some(caller6().into()), Age::Opened),
        // Live, but last seen long enough ago that a packet refreshes it.
        at(PORT_OLD, Some(CALLER_OLD.into()), Age::Seen(15 - idle_secs)),
        // Ahead of the clock the packet reads: live.
        at(PORT_AHEAD, Some(CALLER_AHEAD.into()), Age::Seen(2)),
    ]
}

/// The custom ruleset's ports (RTP 10000-10999) with the default
/// allowlist, in calls mode.
fn calls_ruleset(mode: Mode, unattended: Unattended) -> Ruleset {
    Ruleset {
        mode,
        rtp: (10000, 10999),
        media: MediaCalls {
            mode: MediaMode::Calls,
            call_idle_secs: 60,
            unattended,
        },
        ..Ruleset::default()
    }
    .normalise()
    .expect("calls ruleset")
}

/// A loaded program with `ruleset`, the pinholes of [`calls_plan`] and
/// the heartbeat `reader`; strict mode's flows entered as in its table.
fn calls_runner(ruleset: &Ruleset, reader: Reader) -> (Runner, KernelCalls) {
    let mut r = if ruleset.strict() {
        strict_runner(ruleset)
    } else {
        runner(ruleset)
    };
    let mut calls = KernelCalls::new(&mut r).expect("taking the media maps");
    let idle = ruleset.media.call_idle_secs;
    calls
        .install(&calls_plan(idle as i64), reader, idle * 1_000_000_000)
        .expect("writing the pinholes and the heartbeat");
    (r, calls)
}

/// The reader up: only live pinholes pass media.
#[rustfmt::skip]
fn calls_table(strict: bool) -> Vec<Case> {
    let media = rtp(160);
    let provider_to_other = if strict {
        // Strict mode's row 9, unchanged by calls mode.
        case(DROP, RtpOutside, "provider media to a port outside rtp_ports: strict row 9 (rtp_outside), no pinhole", ip4(STRANGER).udp(PROVIDER_MEDIA, 5000).payload(&media))
    } else {
        // 5v: no call's media goes there (every pinhole is in rtp_ports).
        case(PASS, Other, "provider media to a port outside rtp_ports is not media (5v)", ip4(STRANGER).udp(PROVIDER_MEDIA, 5000).payload(&media))
    };
    let caller_outside = if strict {
        case(DROP, RtpOutside, "a pinhole's remote, from a provider media port, to a port outside rtp_ports", ip4(CALLER).udp(PROVIDER_MEDIA, 11000).payload(&media))
    } else {
        case(PASS, Other, "a pinhole's remote, from a provider media port, to a port outside rtp_ports (5v)", ip4(CALLER).udp(PROVIDER_MEDIA, 11000).payload(&media))
    };
    vec![
        case(PASS, RtpAllowed, "the pinhole's remote to its port", ip4(CALLER).udp(PROVIDER_MEDIA, PORT_CALLER).payload(&media)),
        case(PASS, RtpAllowed, "the pinhole's remote from any source port", ip4(CALLER).udp(1234, PORT_CALLER).payload(&media)),
        case(DROP, RtpUnsolicited, "another source to the pinhole's port", ip4(CALLER_NEIGHBOUR).udp(PROVIDER_MEDIA, PORT_CALLER).payload(&media)),
        case(DROP, RtpUnsolicited, "the pinhole's remote to the next port", ip4(CALLER).udp(PROVIDER_MEDIA, PORT_CALLER + 1).payload(&media)),
        case(PASS, RtpAllowed, "a port open to any source: a stranger", ip4(STRANGER).udp(PROVIDER_MEDIA, PORT_ANY).payload(&media)),
        case(PASS, RtpAllowed, "a port open to any source: an IPv6 stranger", ip6(stranger6()).udp(PROVIDER_MEDIA, PORT_ANY).payload(&media)),
        case(DROP, RtpUnsolicited, "an expired pinhole's remote to its port", ip4(CALLER_EXPIRED).udp(PROVIDER_MEDIA, PORT_EXPIRED).payload(&media)),
        case(PASS, RtpAllowed, "an IPv6 pinhole's remote", ip6(caller6()).udp(PROVIDER_MEDIA, PORT_V6).payload(&media)),
        case(DROP, RtpUnsolicited, "an IPv4 source to the IPv6 pinhole's port", ip4(CALLER).udp(PROVIDER_MEDIA, PORT_V6).payload(&media)),
        case(PASS, RtpAllowed, "a pinhole last seen 45 s ago (call_idle 60 s)", ip4(CALLER_OLD).udp(PROVIDER_MEDIA, PORT_OLD).payload(&media)),
        case(PASS, RtpAllowed, "a pinhole last seen ahead of the clock", ip4(CALLER_AHEAD).udp(PROVIDER_MEDIA, PORT_AHEAD).payload(&media)),
        case(DROP, RtpUnsolicited, "a stranger to a port of rtp_ports without a pinhole", ip4(STRANGER).udp(PROVIDER_MEDIA, PORT_NONE).payload(&media)),
        case(DROP, RtpUnsolicited, "first port of rtp_ports, not the pinhole's remote", ip4(STRANGER).udp(PROVIDER_MEDIA, 10000).payload(&media)),
        case(DROP, RtpUnsolicited, "last port of rtp_ports, no pinhole", ip4(STRANGER).udp(PROVIDER_MEDIA, 10999).payload(&media)),
        provider_to_other,
        caller_outside,
        case(PASS, SipAllowed, "signalling is not media: the provider to 5060", ip4(PROVIDER_A).udp(5060, 5060)),
        case(PASS, Fragment, "a non-first fragment to a pinhole's port from a stranger", ip4(STRANGER).udp(PROVIDER_MEDIA, PORT_CALLER).fragment(10, true)),
    ]
}

/// The reader down: unattended "range" passes media by range (guard mode
/// also provider media to any port), "closed" only live pinholes.
#[rustfmt::skip]
fn unattended_table(unattended: Unattended, strict: bool) -> Vec<Case> {
    let media = rtp(160);
    let by_range = unattended == Unattended::Range;
    let (v, r) = if by_range { (PASS, RtpAllowed) } else { (DROP, RtpUnsolicited) };
    // Row 5c's traffic: media by range, or (5v) other traffic.
    let (v5c, r5c) = if by_range { (PASS, RtpAllowed) } else { (PASS, Other) };
    let mut table = vec![
        case(PASS, RtpAllowed, "a live pinhole's remote passes whatever the reader", ip4(CALLER).udp(PROVIDER_MEDIA, PORT_CALLER).payload(&media)),
        case(PASS, RtpAllowed, "a port open to any source passes whatever the reader", ip4(STRANGER).udp(PROVIDER_MEDIA, PORT_ANY).payload(&media)),
        case(v, r, "another source to a pinhole's port", ip4(CALLER_NEIGHBOUR).udp(PROVIDER_MEDIA, PORT_CALLER).payload(&media)),
        case(v, r, "an expired pinhole's remote", ip4(CALLER_EXPIRED).udp(PROVIDER_MEDIA, PORT_EXPIRED).payload(&media)),
        case(v, r, "a stranger to a port without a pinhole", ip4(STRANGER).udp(PROVIDER_MEDIA, PORT_NONE).payload(&media)),
        case(v, r, "an IPv6 stranger to a port without a pinhole", ip6(stranger6()).udp(1, PORT_NONE).payload(&media)),
    ];
    table.push(if strict {
        case(DROP, RtpOutside, "provider media to a port outside rtp_ports: strict row 9", ip4(STRANGER).udp(PROVIDER_MEDIA, 5000).payload(&media))
    } else {
        case(v5c, r5c, "provider media to a port outside rtp_ports (5c by range / 5v)", ip4(STRANGER).udp(PROVIDER_MEDIA, 5000).payload(&media))
    });
    table
}

#[test]
fn calls_mode_guard_table() {
    sipwall_tests::skip_unless_root!();
    let rules = calls_ruleset(Mode::Guard, Unattended::Range);
    let (runner, calls) = calls_runner(&rules, Reader::Fresh);
    let before = calls.slot(PORT_OLD, 0).expect("reading the slot");
    run_table("guard, calls", &runner, &calls_table(false), |c| c.verdict);
    // The pinhole matched 45 s after it was last seen: its time is now.
    let after = calls.slot(PORT_OLD, 0).expect("reading the slot");
    assert!(
        after.last_seen_ns >= before.last_seen_ns + 40_000_000_000,
        "a matching packet did not refresh the pinhole: last seen {} before, {} after",
        before.last_seen_ns,
        after.last_seen_ns
    );
    // The audit stage: same counters, nothing dropped.
    let dry = Ruleset {
        dry_run: true,
        ..rules
    };
    let (runner, _calls) = calls_runner(&dry, Reader::Fresh);
    run_table(
        "guard, calls, dry run",
        &runner,
        &calls_table(false),
        |_| PASS,
    );
}

#[test]
fn calls_mode_strict_table() {
    sipwall_tests::skip_unless_root!();
    let rules = calls_ruleset(Mode::Strict, Unattended::Range);
    let (runner, _calls) = calls_runner(&rules, Reader::Fresh);
    run_table("strict, calls", &runner, &calls_table(true), |c| c.verdict);
}

#[test]
fn calls_mode_with_the_reader_down() {
    sipwall_tests::skip_unless_root!();
    for mode in [Mode::Guard, Mode::Strict] {
        for unattended in [Unattended::Range, Unattended::Closed] {
            // A heartbeat 10 s old, and none ever: both are a reader down.
            for reader in [Reader::Stale, Reader::Never] {
                let rules = calls_ruleset(mode, unattended);
                let (runner, _calls) = calls_runner(&rules, reader);
                let label = format!("{mode:?}, unattended {unattended:?}, reader {reader:?}");
                let table = unattended_table(unattended, mode == Mode::Strict);
                run_table(&label, &runner, &table, |c| c.verdict);
            }
        }
    }
}

#[test]
#[rustfmt::skip]
fn calls_mode_keeps_the_rtp_check() {
    sipwall_tests::skip_unless_root!();
    let rules = Ruleset {
        check_rtp: true,
        ..calls_ruleset(Mode::Guard, Unattended::Closed)
    };
    let (runner, _calls) = calls_runner(&rules, Reader::Fresh);
    let table = vec![
        case(PASS, RtpAllowed, "RTP through a pinhole", ip4(CALLER).udp(PROVIDER_MEDIA, PORT_CALLER).payload(&rtp(160))),
        case(DROP, RtpInvalid, "not RTP through a pinhole: the RTP check still applies", ip4(CALLER).udp(PROVIDER_MEDIA, PORT_CALLER).payload(b"hello")),
        case(DROP, RtpUnsolicited, "not RTP and no pinhole: unsolicited first", ip4(STRANGER).udp(PROVIDER_MEDIA, PORT_NONE).payload(b"hello")),
    ];
    run_table("guard, calls, RTP check", &runner, &table, |c| c.verdict);
}

/// Range mode (the default) ignores pinholes and the reader.
#[test]
#[rustfmt::skip]
fn range_mode_ignores_pinholes() {
    sipwall_tests::skip_unless_root!();
    let media = rtp(160);
    let mut rules = calls_ruleset(Mode::Guard, Unattended::Closed);
    rules.media.mode = MediaMode::Range;
    let (runner, _calls) = calls_runner(&rules, Reader::Fresh);
    let table = vec![
        case(PASS, RtpAllowed, "a stranger to a port without a pinhole", ip4(STRANGER).udp(PROVIDER_MEDIA, PORT_NONE).payload(&media)),
        case(PASS, RtpAllowed, "another source to a pinhole's port", ip4(CALLER_NEIGHBOUR).udp(PROVIDER_MEDIA, PORT_CALLER).payload(&media)),
        case(PASS, RtpAllowed, "an expired pinhole's remote", ip4(CALLER_EXPIRED).udp(PROVIDER_MEDIA, PORT_EXPIRED).payload(&media)),
        case(PASS, RtpAllowed, "provider media to a port outside rtp_ports (5c)", ip4(STRANGER).udp(PROVIDER_MEDIA, 5000).payload(&media)),
    ];
    run_table("guard, range mode", &runner, &table, |c| c.verdict);
    let mut strict = calls_ruleset(Mode::Strict, Unattended::Closed);
    strict.media.mode = MediaMode::Range;
    let (runner, _calls) = calls_runner(&strict, Reader::Fresh);
    let table = vec![
        case(PASS, RtpAllowed, "a stranger to a port without a pinhole", ip4(STRANGER).udp(PROVIDER_MEDIA, PORT_NONE).payload(&media)),
        case(DROP, RtpOutside, "provider media to a port outside rtp_ports (row 9)", ip4(STRANGER).udp(PROVIDER_MEDIA, 5000).payload(&media)),
    ];
    run_table("strict, range mode", &runner, &table, |c| c.verdict);
}
// --- calls mode (docs/policy.md, "Media by call") ---

const CALLS_TOML: &str =
    "[media]\nrtp_ports = \"10000-20000\"\nmode = \"calls\"\nunattended = \"closed\"\n";

/// The source another pinhole's address is not.
const OTHER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 30);

/// A runner with `toml`'s policy and the calls tables' pinholes: port
/// 10000 from STRANGER, 10002 from `stranger6()`, 10004 from anyone. No
/// reader's heartbeat, and `unattended = "closed"`: only they pass media.
fn pinholes_runner(toml: &str) -> Runner {
    let ruleset = config::parse(toml, "calls.toml").unwrap_or_else(|e| panic!("{e}"));
    let mut runner = runner(&ruleset);
    let mut media = runner.media_maps().expect("the media maps");
    let idle = ruleset.media.call_idle_secs * 1_000_000_000;
    for (port, remote) in [
        (10000, Some(IpAddr::V4(STRANGER))),
        (10002, Some(IpAddr::V6(stranger6()))),
        (10004, None),
    ] {
        media
            .open_pinhole(port, remote, Some("table@calls"), idle)
            .expect("opening a pinhole");
    }
    runner
}

#[rustfmt::skip]
fn pinholes_table() -> Vec<Case> {
    let sip = b"OPTIONS sip:host SIP/2.0\r\n\r\n";
    vec![
        // 5 / 5u: media into rtp_ports through a live pinhole, or not at all.
        case(PASS, RtpAllowed, "media from the pinhole's address", ip4(STRANGER).udp(40000, 10000).payload(&rtp(160))),
        case(PASS, RtpAllowed, "from the pinhole's address, any source port", ip4(STRANGER).udp(1234, 10000)),
        case(DROP, RtpUnsolicited, "another address to the same port", ip4(OTHER).udp(40000, 10000).payload(&rtp(160))),
        case(PASS, RtpAllowed, "IPv6 media from the pinhole's address", ip6(stranger6()).udp(50000, 10002)),
        case(DROP, RtpUnsolicited, "IPv6 media from another address", ip6(v6("2001:db8:5::3")).udp(50000, 10002)),
        case(DROP, RtpUnsolicited, "the IPv6 pinhole's port from its address's IPv4 neighbour", ip4(STRANGER).udp(50000, 10002)),
        case(PASS, RtpAllowed, "a port open to any source (an offer not answered yet)", ip4(OTHER).udp(40000, 10004)),
        case(PASS, RtpAllowed, "a port open to any source, from IPv6", ip6(v6("2001:db8:5::4")).udp(40000, 10004)),
        case(DROP, RtpUnsolicited, "a port of rtp_ports without a pinhole", ip4(STRANGER).udp(40000, 10006)),
        // 5v: not media (a VPN client's ephemeral port, say): other traffic.
        case(PASS, Other, "guard mode: from provider_rtp_ports to a port outside rtp_ports", ip4(STRANGER).udp(40000, 30000)),
        // Everything else as in range mode.
        case(PASS, SipAllowed, "provider A, UDP 5060", ip4(PROVIDER_A).udp(5060, 5060).payload(sip)),
        case(DROP, SipDenied, "stranger, UDP 5060", ip4(STRANGER).udp(5060, 5060).payload(sip)),
        case(PASS, Other, "TCP into the media range", ip4(STRANGER).tcp(1, 10000)),
        case(PASS, Other, "UDP outside both ranges", ip4(STRANGER).udp(33000, 30000)),
    ]
}

#[rustfmt::skip]
fn strict_pinholes_table() -> Vec<Case> {
    vec![
        case(PASS, RtpAllowed, "strict 4: media from the pinhole's address", ip4(STRANGER).udp(40000, 10000)),
        case(DROP, RtpUnsolicited, "strict 4u: another address to the same port", ip4(OTHER).udp(40000, 10000)),
        case(PASS, RtpAllowed, "strict 4: a port open to any source", ip4(OTHER).udp(1234, 10004)),
        case(DROP, RtpUnsolicited, "strict 4u: a port of rtp_ports without a pinhole", ip4(OTHER).udp(1234, 10006)),
        case(DROP, RtpOutside, "strict 9, unchanged: provider media outside rtp_ports", ip4(STRANGER).udp(40000, 30000)),
    ]
}

#[test]
fn calls_mode_tables_from_a_configuration_file() {
    sipwall_tests::skip_unless_root!();
    let table = pinholes_table();
    run_table("calls", &pinholes_runner(CALLS_TOML), &table, |c| c.verdict);
    let strict = format!("[policy]\nmode = \"strict\"\n{CALLS_TOML}");
    run_table(
        "strict calls",
        &pinholes_runner(&strict),
        &strict_pinholes_table(),
        |c| c.verdict,
    );
}
