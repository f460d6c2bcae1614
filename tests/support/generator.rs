//! Structure-aware random frames for the differential test: Ethernet with
//! 0-4 VLAN tags, IPv4 with options and fragments, IPv6 with extension-header
//! chains, UDP/TCP/SCTP/ICMP and other protocols, with ports and sources
//! biased towards the edges of a ruleset, then mutated (wrong lengths and
//! versions, flipped bytes, truncation, link padding).
//!
//! Every frame comes from its own seed ([`Generator::frame`]), so one frame
//! of a long run can be rebuilt from the seed and index printed on failure.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use filter_kernel::runner::{MAX_FRAME, MIN_FRAME};
use filter_policy::ruleset::Ruleset;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::reference::Flow;

/// splitmix64: small, fast, good enough to spread seeds and draw fields.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (the modulo bias is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    pub fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// Index of a weighted choice.
    pub fn weighted(&mut self, weights: &[u64]) -> usize {
        let mut x = self.below(weights.iter().sum());
        for (i, &w) in weights.iter().enumerate() {
            if x < w {
                return i;
            }
            x -= w;
        }
        unreachable!("x is below the sum of the weights")
    }

    pub fn u8(&mut self) -> u8 {
        self.next_u64() as u8
    }

    pub fn u16(&mut self) -> u16 {
        self.next_u64() as u16
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.u8()).collect()
    }
}

/// The seed of frame `index` of the stream `seed`.
pub fn frame_seed(seed: u64, index: u64) -> u64 {
    Rng::new(seed ^ index.wrapping_mul(0xd1b5_4a32_d192_ed03)).next_u64()
}

/// Networks probed in every configuration, whatever its allowlist holds: the
/// provider's addresses, documentation ranges the custom configurations use,
/// and an IPv4-mapped IPv6 form of a provider address (must never match the
/// IPv4 entry).
const EXTRA_V4: [&str; 4] = [
    "44.229.228.186/32",
    "44.238.177.138/32",
    "198.51.100.0/24",
    "203.0.113.128/25",
];
const EXTRA_V6: [&str; 3] = [
    "2001:db8:1::/48",
    "2001:db8:2:3::1/128",
    "::ffff:44.229.228.186/128",
];
/// Ports probed in every configuration.
const EXTRA_PORTS: [u16; 10] = [5060, 5061, 5080, 40000, 60000, 22, 53, 443, 3478, 6060];

/// What the frames aim at: the ruleset's ports and networks and their edges.
#[derive(Clone, Debug)]
pub struct Generator {
    sig_ports: Vec<u16>,
    rtp: (u16, u16),
    provider_rtp: (u16, u16),
    /// Edges of the strict rules' port ranges.
    rule_ports: Vec<u16>,
    v4: Vec<Ipv4Net>,
    v6: Vec<Ipv6Net>,
    /// The host's flows: some frames answer one, exactly or nearly.
    flows: Vec<Flow>,
    /// Frames the host sends (the egress program's): addresses and ports
    /// are aimed at the destination instead of the source.
    outbound: bool,
    /// Calls mode's pinholes (local port, remote or any): half the frames
    /// are UDP aimed at one, exactly or nearly.
    pinholes: Vec<(u16, Option<IpAddr>)>,
}

impl Generator {
    pub fn new(rules: &Ruleset) -> Generator {
        let mut v4: Vec<Ipv4Net> = EXTRA_V4.iter().map(|s| s.parse().unwrap()).collect();
        let mut v6: Vec<Ipv6Net> = EXTRA_V6.iter().map(|s| s.parse().unwrap()).collect();
        let rule_nets = rules.rules.iter().flat_map(|r| r.from.iter());
        for net in rules.allow.iter().chain(rule_nets) {
            match net {
                IpNet::V4(n) => v4.push(*n),
                IpNet::V6(n) => v6.push(*n),
            }
        }
        let mut rule_ports: Vec<u16> = rules
            .rules
            .iter()
            .flat_map(|r| r.ports.iter())
            .flat_map(|&(a, b)| [a.wrapping_sub(1), a, b, b.wrapping_add(1)])
            .collect();
        rule_ports.extend([67, 68, 546, 547]);
        Generator {
            sig_ports: rules.sig_ports.clone(),
            rtp: rules.rtp,
            provider_rtp: rules.provider_rtp,
            rule_ports,
            v4,
            v6,
            flows: Vec::new(),
            outbound: false,
            pinholes: Vec::new(),
        }
    }

    /// The same for frames the host sends: destinations drawn from the
    /// allowlist, the rules' prefixes, `[[egress.allow]]`'s `to` and the
    /// resolvers; destination ports from the provider's media ports, the
    /// egress rules and DNS, source ports from the signalling ports, the
    /// RTP range and the inbound rules (answers).
    pub fn outbound(mut self, rules: &Ruleset) -> Generator {
        let nets = rules
            .egress
            .rules
            .iter()
            .flat_map(|r| r.from.iter())
            .chain(rules.egress.dns.iter());
        for net in nets {
            match net {
                IpNet::V4(n) => self.v4.push(*n),
                IpNet::V6(n) => self.v6.push(*n),
            }
        }
        let egress_ports = rules
            .egress
            .rules
            .iter()
            .flat_map(|r| r.ports.iter())
            .flat_map(|&(a, b)| [a.wrapping_sub(1), a, b, b.wrapping_add(1)]);
        self.rule_ports.extend(egress_ports);
        self.outbound = true;
        self
    }

    /// Also aims sources at `nets` (a ban set, say) and their edges.
    pub fn probing(mut self, nets: &[IpNet]) -> Generator {
        for net in nets {
            match net {
                IpNet::V4(n) => self.v4.push(*n),
                IpNet::V6(n) => self.v6.push(*n),
            }
        }
        self
    }

    /// The same, with some frames aimed at answering `flows` (strict
    /// mode's replies), exactly or with one field off.
    pub fn with_flows(mut self, flows: &[Flow]) -> Generator {
        self.flows = flows.to_vec();
        self
    }

    /// The same, with half the frames UDP to (or, outbound, from) one of
    /// `pinholes`' local ports and from (to) its remote address, exactly
    /// or with the address or the port off by one; a pinhole open to any
    /// source gets a drawn address.
    pub fn with_pinholes(mut self, pinholes: &[(u16, Option<IpAddr>)]) -> Generator {
        self.pinholes = pinholes.to_vec();
        self
    }

    /// The frame for `seed`: between MIN_FRAME and MAX_FRAME bytes.
    pub fn frame(&self, seed: u64) -> Vec<u8> {
        self.build(seed).frame()
    }

    /// The same for an L3 device (no link header): the IP packet for
    /// `seed`, between MIN_FRAME and MAX_FRAME bytes.
    pub fn l3_frame(&self, seed: u64) -> Vec<u8> {
        self.build(seed).l3_frame()
    }

    /// The builder for `seed`, aimed at one of the flows now and then.
    fn build(&self, seed: u64) -> Build<'_> {
        let mut b = Build {
            rng: Rng::new(seed),
            g: self,
            answer: None,
        };
        if !self.flows.is_empty() && b.rng.percent(20) {
            let flow = b.rng.pick(&self.flows);
            b.answer = Some(b.near(flow));
        } else if !self.pinholes.is_empty() && b.rng.percent(50) {
            let pinhole = b.rng.pick(&self.pinholes);
            b.answer = Some(b.at_pinhole(pinhole));
        }
        b
    }
}

struct Build<'a> {
    rng: Rng,
    g: &'a Generator,
    /// The tuple this frame carries, when it is aimed at a flow.
    answer: Option<Flow>,
}

/// What sits above the (possibly tagged) Ethernet header.
enum Network {
    V4,
    V6,
    Other(u16),
}

impl Build<'_> {
    /// `flow`'s answer, or now and then one with a field off by one.
    fn near(&mut self, flow: Flow) -> Flow {
        let mut a = flow;
        let r = &mut self.rng;
        match r.weighted(&[70, 6, 6, 6, 6, 6]) {
            0 => {}
            1 => a.remote_port = a.remote_port.wrapping_add(1),
            2 => a.local_port = a.local_port.wrapping_add(1),
            3 => a.proto = r.pick(&[6, 17, 132]),
            4 => {
                a.remote = match a.remote {
                    IpAddr::V4(v) => IpAddr::V4(Ipv4Addr::from(u32::from(v) ^ 1)),
                    IpAddr::V6(v) => IpAddr::V6(Ipv6Addr::from(u128::from(v) ^ 1)),
                }
            }
            _ => {
                a.local = match a.local {
                    IpAddr::V4(v) => IpAddr::V4(Ipv4Addr::from(u32::from(v) ^ 256)),
                    IpAddr::V6(v) => IpAddr::V6(Ipv6Addr::from(u128::from(v) ^ 256)),
                }
            }
        }
        if (a.proto == 1 || a.proto == 58) != (flow.proto == 1 || flow.proto == 58) {
            a.proto = flow.proto;
        }
        a
    }

    /// UDP between `pinhole`'s port and its remote (or a drawn address),
    /// now and then with one of them off by one.
    fn at_pinhole(&mut self, (port, remote): (u16, Option<IpAddr>)) -> Flow {
        let remote = match remote {
            Some(addr) => addr,
            None if self.rng.percent(50) => IpAddr::V4(self.v4_source()),
            None => IpAddr::V6(self.v6_source()),
        };
        let g = self.g;
        let r = &mut self.rng;
        // The remote's port: the provider's media ports most often.
        let remote_port = match r.weighted(&[50, 30, 10, 10]) {
            0 => r.range(g.provider_rtp.0.into(), g.provider_rtp.1.into()) as u16,
            1 => r.u16(),
            2 => r.pick(&g.sig_ports),
            _ => r.pick(&[53, 123, 443]),
        };
        let mut a = Flow {
            proto: 17,
            remote,
            remote_port,
            local: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
            local_port: port,
        };
        if remote.is_ipv6() {
            a.local = "2001:db8::10".parse().expect("an address");
        }
        match r.weighted(&[70, 15, 10, 5]) {
            0 => {}
            1 => {
                a.remote = match a.remote {
                    IpAddr::V4(v) => IpAddr::V4(Ipv4Addr::from(u32::from(v) ^ 1)),
                    IpAddr::V6(v) => IpAddr::V6(Ipv6Addr::from(u128::from(v) ^ 1)),
                }
            }
            2 => a.local_port = port.wrapping_add(r.pick(&[1, u16::MAX])),
            _ => a.proto = r.pick(&[6, 132]),
        }
        a
    }

    fn frame(&mut self) -> Vec<u8> {
        let r = &mut self.rng;
        let mut f = r.bytes(12); // destination and source MAC
        let tags = r.weighted(&[55, 20, 15, 6, 4]);
        for _ in 0..tags {
            let tpid: u16 = match r.weighted(&[48, 48, 4]) {
                0 => 0x8100,
                1 => 0x88a8,
                _ => 0x9100, // old QinQ TPID: not walked, so non_ip
            };
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&r.u16().to_be_bytes()); // TCI
        }
        let network = match (self.answer, r.weighted(&[45, 40, 15])) {
            (Some(a), _) if a.remote.is_ipv4() => Network::V4,
            (Some(_), _) => Network::V6,
            (None, 0) => Network::V4,
            (None, 1) => Network::V6,
            _ => Network::Other(r.pick(&[0x0806, 0x88cc, 0x8847, 0x88e5, 0x0842, 0x86dc, 0x0801])),
        };
        let (ethertype, payload) = match network {
            Network::V4 => (0x0800u16, self.ipv4()),
            Network::V6 => (0x86dd, self.ipv6()),
            Network::Other(t) => {
                let t = if self.rng.percent(80) {
                    t
                } else {
                    self.rng.u16()
                };
                let n = self.rng.range(0, 80) as usize;
                (t, self.rng.bytes(n))
            }
        };
        let r = &mut self.rng;
        // Now and then the ethertype disagrees with what follows.
        let ethertype = if r.percent(2) {
            r.pick(&[0x0800, 0x86dd])
        } else {
            ethertype
        };
        // Now and then the IP packet rides in a PPPoE session, whose PPP
        // protocol mostly says what follows.
        let (ethertype, payload) = if ethertype != 0x0800 && ethertype != 0x86dd || !r.percent(10) {
            (ethertype, payload)
        } else {
            let own: u16 = if ethertype == 0x0800 { 0x0021 } else { 0x0057 };
            let ppp: u16 = match r.weighted(&[85, 5, 5, 5]) {
                0 => own,
                1 => 0xc021,       // LCP
                2 => 0x8021,       // IPCP
                _ => own ^ 0x0076, // the other IP version's
            };
            let mut session = vec![0x11, 0x00];
            session.extend_from_slice(&r.u16().to_be_bytes());
            session.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
            session.extend_from_slice(&ppp.to_be_bytes());
            session.extend_from_slice(&payload);
            (0x8864, session)
        };
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(&payload);
        self.mutate(&mut f);
        f
    }

    /// An L3 device's frame: the IP packet alone (now and then neither
    /// IPv4 nor IPv6 by its first nibble), mutated like a frame.
    fn l3_frame(&mut self) -> Vec<u8> {
        let v4 = match self.answer {
            Some(a) => a.remote.is_ipv4(),
            None => self.rng.percent(55),
        };
        let mut f = if v4 { self.ipv4() } else { self.ipv6() };
        if self.rng.percent(2) {
            f[0] = (f[0] & 0x0f) | (self.rng.u8() & 0xf0);
        }
        self.mutate(&mut f);
        f
    }

    /// Padding, flipped bytes and truncation, then the test_run limits.
    fn mutate(&mut self, f: &mut Vec<u8>) {
        let r = &mut self.rng;
        if r.percent(10) && f.len() < 60 {
            f.resize(60, 0); // minimum Ethernet frame
        }
        if r.percent(12) {
            let n = r.range(1, 64) as usize;
            let zeros = r.percent(50);
            f.extend((0..n).map(|_| if zeros { 0 } else { r.u8() }));
        }
        if r.percent(5) {
            for _ in 0..r.range(1, 4) {
                let at = r.below(f.len() as u64) as usize;
                f[at] ^= 1 << r.below(8);
            }
        }
        if r.percent(12) {
            let len = r.range(MIN_FRAME as u64, f.len() as u64) as usize;
            f.truncate(len);
        }
        f.truncate(MAX_FRAME);
        if f.len() < MIN_FRAME {
            f.resize(MIN_FRAME, 0);
        }
    }

    fn ipv4(&mut self) -> Vec<u8> {
        let proto = self.proto(1);
        let l4 = self.transport(proto);
        // Sometimes IPsec AH headers (one to three) before the transport.
        let (proto, l4) = if self.rng.percent(8) {
            self.behind_ipv4_ah(proto, l4)
        } else {
            (proto, l4)
        };
        let r = &mut self.rng;
        let options = if r.percent(75) {
            0
        } else {
            r.range(1, 10) as usize * 4
        };
        let header_len = 20 + options;
        let mut ihl = (header_len / 4) as u8;
        if r.percent(3) {
            ihl = r.range(0, 15) as u8; // often below 5 or past the options
        }
        let version = if r.percent(97) {
            4
        } else {
            r.range(0, 15) as u8
        };
        let mut total = (header_len + l4.len()).min(0xffff) as u16;
        if r.percent(10) {
            total = match r.weighted(&[2, 3, 2, 4, 4, 1, 2]) {
                0 => 0,
                1 => r.below(header_len as u64) as u16,
                2 => header_len as u16,
                3 => total.saturating_sub(r.range(1, 8) as u16),
                4 => total.saturating_add(r.range(1, 100) as u16),
                5 => 0xffff,
                _ => r.u16(),
            };
        }
        // Flags (reserved, DF, MF) and the 13-bit offset in 8-byte units.
        let fragment: u16 = match r.weighted(&[75, 10, 15]) {
            0 => r.pick(&[0, 0x4000]),
            1 => 0x2000, // first fragment: offset 0, more fragments
            _ => {
                let offset = if r.percent(10) {
                    r.pick(&[1, 0x1fff])
                } else {
                    r.range(1, 0x1fff) as u16
                };
                offset | r.pick(&[0, 0x2000, 0x8000])
            }
        };
        let src = match self.answer.map(|a| a.remote) {
            Some(IpAddr::V4(a)) => a,
            _ => self.v4_source(),
        };
        let dst = match self.answer.map(|a| a.local) {
            Some(IpAddr::V4(a)) => a.octets(),
            _ => [
                self.rng.pick(&[192, 198, 203]),
                self.rng.u8(),
                self.rng.u8(),
                self.rng.u8(),
            ],
        };
        let (src, dst) = if self.g.outbound {
            (Ipv4Addr::from(dst), src.octets())
        } else {
            (src, dst)
        };
        let r = &mut self.rng;
        let mut ip = vec![version << 4 | ihl, r.u8()];
        ip.extend_from_slice(&total.to_be_bytes());
        ip.extend_from_slice(&r.u16().to_be_bytes()); // identification
        ip.extend_from_slice(&fragment.to_be_bytes());
        ip.extend_from_slice(&[r.u8(), proto]);
        ip.extend_from_slice(&r.u16().to_be_bytes()); // checksum, not checked
        ip.extend_from_slice(&src.octets());
        ip.extend_from_slice(&dst);
        let option_bytes = r.bytes(options);
        ip.extend_from_slice(&option_bytes);
        ip.extend_from_slice(&l4);
        ip
    }

    fn ipv6(&mut self) -> Vec<u8> {
        let r = &mut self.rng;
        let count = match r.weighted(&[50, 30, 12, 8]) {
            0 => 0,
            1 => r.range(1, 3),
            2 => r.range(4, 8),
            _ => r.range(9, 10),
        };
        let kinds: Vec<u8> = (0..count)
            .map(|_| {
                if r.percent(95) {
                    r.pick(&[0, 43, 44, 51, 60])
                } else {
                    // Not walked: no next header, mobility, HIP, shim6.
                    r.pick(&[59, 135, 139, 140])
                }
            })
            .collect();
        let proto = self.proto(58);
        let l4 = self.transport(proto);
        let mut chain = Vec::new();
        for (i, &kind) in kinds.iter().enumerate() {
            let next = kinds.get(i + 1).copied().unwrap_or(proto);
            let header = self.extension(kind, next);
            chain.extend_from_slice(&header);
        }
        let first = kinds.first().copied().unwrap_or(proto);
        let src = match self.answer.map(|a| a.remote) {
            Some(IpAddr::V6(a)) => a,
            _ => self.v6_source(),
        };
        let dst = match self.answer.map(|a| a.local) {
            Some(IpAddr::V6(a)) => u128::from(a),
            _ => 0x2001_0db8_u128 << 96 | u128::from(self.rng.next_u64()),
        };
        let (src, dst) = if self.g.outbound {
            (Ipv6Addr::from(dst), u128::from(src))
        } else {
            (src, dst)
        };
        let r = &mut self.rng;
        let payload = chain.len() + l4.len();
        let mut payload_len = payload.min(0xffff) as u16;
        if r.percent(10) {
            payload_len = match r.weighted(&[2, 4, 4, 1, 2]) {
                0 => 0,
                1 => payload_len.saturating_sub(r.range(1, 16) as u16),
                2 => payload_len.saturating_add(r.range(1, 100) as u16),
                3 => 0xffff,
                _ => r.below(payload as u64 + 1) as u16,
            };
        }
        let version: u32 = if r.percent(97) {
            6
        } else {
            r.range(0, 15) as u32
        };
        let word = version << 28 | (r.next_u64() as u32 & 0x0fff_ffff);
        let mut ip = word.to_be_bytes().to_vec();
        ip.extend_from_slice(&payload_len.to_be_bytes());
        ip.extend_from_slice(&[first, r.u8()]);
        ip.extend_from_slice(&src.octets());
        ip.extend_from_slice(&dst.to_be_bytes());
        ip.extend_from_slice(&chain);
        ip.extend_from_slice(&l4);
        ip
    }

    /// One IPv6 extension header of type `kind` followed by `next`.
    fn extension(&mut self, kind: u8, next: u8) -> Vec<u8> {
        let r = &mut self.rng;
        match kind {
            44 => {
                let offset: u16 = if r.percent(55) {
                    0
                } else if r.percent(10) {
                    r.pick(&[1, 0x1fff])
                } else {
                    r.range(1, 0x1fff) as u16
                };
                // Offset in the top 13 bits, then 2 reserved bits and M.
                let field = offset << 3 | (r.u16() & 0x7);
                let mut h = vec![next, r.u8()];
                h.extend_from_slice(&field.to_be_bytes());
                h.extend_from_slice(&r.bytes(4)); // identification
                h
            }
            51 => {
                // AH: length in 4-byte units, minus 2.
                let n = match r.weighted(&[10, 75, 13, 2]) {
                    0 => 0,
                    1 => r.range(1, 6),
                    2 => r.range(7, 40),
                    _ => r.range(200, 255),
                } as u8;
                let mut h = vec![next, n];
                h.extend_from_slice(&r.bytes((usize::from(n) + 2) * 4 - 2));
                h
            }
            0 | 43 | 60 => {
                // Length in 8-byte units, minus 1.
                let n = match r.weighted(&[50, 35, 13, 2]) {
                    0 => 0,
                    1 => r.range(1, 3),
                    2 => r.range(4, 40),
                    _ => r.range(200, 255),
                } as u8;
                let mut h = vec![next, n];
                h.extend_from_slice(&r.bytes((usize::from(n) + 1) * 8 - 2));
                h
            }
            _ => {
                // Headers the parser does not walk: any length will do.
                let n = r.range(0, 3) as u8;
                let mut h = vec![next, n];
                h.extend_from_slice(&r.bytes((usize::from(n) + 1) * 8 - 2));
                h
            }
        }
    }

    /// A transport protocol number; `icmp` is ICMP's number for the family.
    fn proto(&mut self, icmp: u8) -> u8 {
        if let Some(a) = self.answer {
            return a.proto;
        }
        let r = &mut self.rng;
        match r.weighted(&[40, 25, 12, 8, 15]) {
            0 => 17,
            1 => 6,
            2 => 132,
            3 => icmp,
            _ => {
                if r.percent(50) {
                    r.pick(&[1, 2, 4, 41, 47, 50, 58, 59, 103, 136])
                } else {
                    r.u8()
                }
            }
        }
    }

    /// Transport header and payload; sometimes the header is cut short.
    /// Wraps `l4` of protocol `proto` in 1-3 AH headers of random length.
    fn behind_ipv4_ah(&mut self, proto: u8, l4: Vec<u8>) -> (u8, Vec<u8>) {
        let count = self.rng.range(1, 3);
        let mut out = Vec::new();
        for i in 0..count {
            let next = if i + 1 == count { proto } else { 51 };
            let len_field = self.rng.range(1, 4) as u8;
            let mut ah = vec![0u8; (usize::from(len_field) + 2) * 4];
            ah[0] = next;
            ah[1] = len_field;
            for b in &mut ah[2..] {
                *b = self.rng.u16() as u8;
            }
            out.extend_from_slice(&ah);
        }
        out.extend_from_slice(&l4);
        (51, out)
    }

    fn transport(&mut self, proto: u8) -> Vec<u8> {
        let (sport, dport) = match self.answer {
            Some(a) if a.proto == 1 || a.proto == 58 => {
                // An echo reply (or, now and then, another type) carrying
                // the flow's identifier.
                let reply = if a.proto == 1 { 0 } else { 129 };
                let kind = if self.rng.percent(85) {
                    reply
                } else {
                    self.rng.u8()
                };
                (u16::from(kind) << 8, a.local_port)
            }
            // Outgoing, from the host's port to the remote's.
            Some(a) if self.g.outbound => (a.local_port, a.remote_port),
            Some(a) => (a.remote_port, a.local_port),
            // Outgoing: the port this host answers from, the port it
            // sends to.
            None if self.g.outbound => {
                let sport = self.destination_port();
                let dport = if self.rng.percent(50) {
                    self.source_port()
                } else {
                    self.destination_port()
                };
                (sport, dport)
            }
            None => (self.source_port(), self.destination_port()),
        };
        let proto = match self.answer {
            // ICMP's "ports" are the type and code, then the checksum.
            Some(a) if a.proto == 1 || a.proto == 58 => {
                let mut h = sport.to_be_bytes().to_vec();
                h.extend_from_slice(&self.rng.bytes(2));
                h.extend_from_slice(&dport.to_be_bytes());
                h.extend_from_slice(&self.rng.bytes(2));
                if self.rng.percent(6) {
                    h.truncate(self.rng.below(h.len() as u64) as usize);
                }
                return h;
            }
            _ => proto,
        };
        let r = &mut self.rng;
        let payload_len = match r.weighted(&[20, 60, 18, 2]) {
            0 => 0,
            1 => r.range(1, 200),
            2 => r.range(200, 1500),
            _ => r.range(1500, 3400),
        } as usize;
        let mut payload = r.bytes(payload_len);
        // Often an RTP or RTCP version in the first byte, so that a media
        // range checked for RTP sees both kinds.
        if proto == 17 && !payload.is_empty() && r.percent(40) {
            payload[0] = 0x80 | (payload[0] & 0x3f);
        }
        let mut h = Vec::with_capacity(64);
        h.extend_from_slice(&sport.to_be_bytes());
        h.extend_from_slice(&dport.to_be_bytes());
        match proto {
            17 => {
                let mut len = (8 + payload_len) as u16;
                if r.percent(10) {
                    len = r.u16(); // the UDP length is not the parser's business
                }
                h.extend_from_slice(&len.to_be_bytes());
                h.extend_from_slice(&r.bytes(2));
            }
            6 => {
                h.extend_from_slice(&r.bytes(8)); // sequence, acknowledgement
                let data_offset = match r.weighted(&[70, 25, 5]) {
                    0 => 5,
                    1 => r.range(6, 15),
                    _ => r.range(0, 4),
                } as u8;
                h.push(data_offset << 4 | (r.u8() & 0x0f));
                h.extend_from_slice(&r.bytes(7)); // flags, window, checksum, urgent
                if data_offset > 5 {
                    let options = r.bytes((usize::from(data_offset) - 5) * 4);
                    h.extend_from_slice(&options);
                }
            }
            132 => h.extend_from_slice(&r.bytes(8)), // verification tag, checksum
            1 | 58 if r.percent(60) => {
                // ICMP: type and code (essential ones often), checksum,
                // identifier and sequence.
                let kind = r.pick(&[
                    0, 1, 2, 3, 4, 5, 8, 11, 12, 13, 128, 129, 130, 133, 134, 135, 136, 137, 138,
                    143, 200,
                ]);
                h = vec![kind, r.u8()];
                h.extend_from_slice(&r.bytes(6));
            }
            _ => {
                // The rest: ports mean nothing, keep 4 more bytes.
                h.extend_from_slice(&r.bytes(4));
            }
        }
        if r.percent(6) {
            h.truncate(r.below(h.len() as u64) as usize);
            return h;
        }
        h.extend_from_slice(&payload);
        h
    }

    fn destination_port(&mut self) -> u16 {
        let g = self.g;
        let r = &mut self.rng;
        match r.weighted(&[25, 5, 10, 8, 14, 5, 8, 25, 10]) {
            8 if !g.rule_ports.is_empty() => r.pick(&g.rule_ports),
            0 => r.pick(&g.sig_ports),
            1 => r.pick(&g.sig_ports).wrapping_add(r.pick(&[1, u16::MAX])),
            2 => r.pick(&EXTRA_PORTS),
            3 => {
                let (first, last) = g.rtp;
                r.pick(&[first.wrapping_sub(1), first, last, last.wrapping_add(1)])
            }
            4 => r.range(g.rtp.0.into(), g.rtp.1.into()) as u16,
            5 => r.pick(&[0, 1, u16::MAX]),
            6 => r.pick(&[5059, 5062, 5070, 5090, 16384, 32767, 39999, 60001]),
            _ => r.u16(),
        }
    }

    fn source_port(&mut self) -> u16 {
        let g = self.g;
        let r = &mut self.rng;
        match r.weighted(&[50, 20, 30, 15, 5]) {
            0 => r.u16(),
            1 => r.pick(&g.sig_ports),
            2 => r.range(g.rtp.0.into(), g.rtp.1.into()) as u16,
            3 => {
                let (first, last) = g.provider_rtp;
                let inside = r.range(first.into(), last.into()) as u16;
                r.pick(&[
                    first.wrapping_sub(1),
                    first,
                    inside,
                    last,
                    last.wrapping_add(1),
                ])
            }
            _ => r.pick(&[53, 67, 547, 443]),
        }
    }

    fn v4_source(&mut self) -> Ipv4Addr {
        let net = self.rng.pick(&self.g.v4);
        let (lo, hi) = (u32::from(net.network()), u32::from(net.broadcast()));
        let r = &mut self.rng;
        Ipv4Addr::from(match r.weighted(&[15, 10, 10, 10, 10, 20, 25]) {
            0 => lo,
            1 => hi,
            2 => lo | (r.next_u64() as u32 & !u32::from(net.netmask())),
            3 => lo.wrapping_sub(1),
            4 => hi.wrapping_add(1),
            5 => u32::from_be_bytes([r.pick(&[192, 198, 203]), r.u8(), r.u8(), r.u8()]),
            _ => r.next_u64() as u32,
        })
    }

    fn v6_source(&mut self) -> Ipv6Addr {
        let net = self.rng.pick(&self.g.v6);
        let (lo, hi) = (u128::from(net.network()), u128::from(net.broadcast()));
        let r = &mut self.rng;
        let random = u128::from(r.next_u64()) << 64 | u128::from(r.next_u64());
        Ipv6Addr::from(match r.weighted(&[15, 10, 10, 10, 10, 20, 25]) {
            0 => lo,
            1 => hi,
            2 => lo | (random & !u128::from(net.netmask())),
            3 => lo.wrapping_sub(1),
            4 => hi.wrapping_add(1),
            5 => 0x2001_0db8_u128 << 96 | (random >> 32),
            _ => random,
        })
    }
}
