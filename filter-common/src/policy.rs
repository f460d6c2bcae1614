//! The policy record each generation holds: flags, ports, strict mode's
//! rules and strict egress's tables.

use crate::{INLINE_NONE, INLINE_PREFIXES};

/// Number of 64-bit words in the signalling-port bitmap (one bit per port).
pub const PORT_WORDS: usize = 65536 / 64;

/// `Policy::flags`: count DROP decisions but pass the packet.
pub const FLAG_DRY_RUN: u32 = 1;
/// `Policy::flags`: log denied sources through aya-log, rate limited.
pub const FLAG_LOG_DENIED: u32 = 2;
/// `Policy::flags`: UDP into the media range must look like RTP/RTCP.
pub const FLAG_CHECK_RTP: u32 = 4;
/// `Policy::flags`: strict mode (docs/policy.md): default deny.
pub const FLAG_STRICT: u32 = 8;
/// `Policy::flags`: strict mode passes ICMP/ICMPv6 echo requests.
pub const FLAG_PING: u32 = 16;
/// `Policy::flags`: the interface has no link header (tun, WireGuard,
/// PPP, IP-in-IP, SIT, ip6tnl): frames start with the IP header, and its
/// version nibble says which. Set by userspace from the interface's link
/// type when it attaches, never from the configuration.
pub const FLAG_L3: u32 = 32;
/// `Policy::flags`: `[media] mode = "calls"`: media only through live
/// pinholes (docs/policy.md, "Media by call"), and signalling copied to
/// the reader.
pub const FLAG_MEDIA_CALLS: u32 = 64;
/// `Policy::flags`: `[media] unattended = "closed"`: while the reader is
/// down, only live pinholes pass (else media passes by range).
pub const FLAG_UNATTENDED_CLOSED: u32 = 128;
/// `Policy::flags` bits from here up are never set. The parser adds them
/// (zero) to the IP header's offset: the verifier cannot know they are
/// zero, so it checks the many ways to the IP header (Ethernet with 0-2
/// VLAN tags, PPPoE, none) as one, with the offset a number in a range.
pub const FLAG_UNUSED_SHIFT: u32 = 27;
const _: () = assert!(
    (FLAG_DRY_RUN
        | FLAG_LOG_DENIED
        | FLAG_CHECK_RTP
        | FLAG_STRICT
        | FLAG_PING
        | FLAG_L3
        | FLAG_MEDIA_CALLS
        | FLAG_UNATTENDED_CLOSED)
        >> FLAG_UNUSED_SHIFT
        == 0
);

/// Compiled `[[strict.allow]]` entries a policy holds: each rule gives
/// one entry per port range and source prefix (an `icmp` rule two per
/// prefix, ICMP and ICMPv6). More are refused by the configuration.
pub const MAX_STRICT_RULES: usize = 32;
/// `StrictRule::proto` that matches every IP protocol.
pub const RULE_ANY_PROTO: u32 = 256;
/// `StrictRule::proto`'s low bits: the protocol (or [`RULE_ANY_PROTO`]).
pub const RULE_PROTO_MASK: u32 = 0xffff;
/// `StrictRule::proto`'s family bits: the entry applies to IPv4 packets,
/// to IPv6 packets (an entry without a prefix has both). A prefix alone
/// cannot say it: `::/0` would cover IPv4 sources too (they are compared
/// as `::ffff:a.b.c.d`), and an IPv4 prefix an IPv6 packet from an
/// IPv4-mapped address.
pub const RULE_V4: u32 = 1 << 16;
pub const RULE_V6: u32 = 1 << 17;

/// Whether an entry's `proto` (protocol and family bits) takes a packet of
/// IP protocol `proto` and family `v6`.
#[inline(always)]
pub fn rule_takes(entry_proto: u32, proto: u32, v6: bool) -> bool {
    let family = if v6 { RULE_V6 } else { RULE_V4 };
    let wanted = entry_proto & RULE_PROTO_MASK;
    (wanted == RULE_ANY_PROTO || wanted == proto) && entry_proto & family != 0
}

/// Words of a [`RulePorts`] bitmap.
pub const RULE_PORT_WORDS: usize = 16;

/// Which ports a table of [`StrictRule`]s covers, by blocks of 64: bit
/// `port >> 6` is set when some entry's port range reaches into that
/// block. A clear bit lets the programs skip the table's walk (no entry
/// can match that port); a set one walks it as before. Written beside
/// the entries by [`rule_ports`], in the same record.
pub type RulePorts = [u64; RULE_PORT_WORDS];

/// The [`RulePorts`] of `entries`.
pub fn rule_ports(entries: &[StrictRule]) -> RulePorts {
    let mut bits = [0; RULE_PORT_WORDS];
    for e in entries {
        for block in (e.port_first >> 6)..=(e.port_last >> 6) {
            bits[usize::from(block >> 6)] |= 1 << (block & 63);
        }
    }
    bits
}

/// 64-port blocks of the port space: the words of a [`RuleIndex`].
pub const RULE_BLOCKS: usize = 65536 / 64;

/// Which of a table's (up to 32) [`StrictRule`]s may take each port, by
/// blocks of 64: bit `i` of word `port >> 6` is set when entry `i`'s port
/// range reaches into that block. The program walks only those entries, so
/// a table's entries for other ports cost a packet a shift each, not a
/// compare of their prefix; a zero word skips the walk. Written beside the
/// entries by [`rule_index`], in the same record.
pub type RuleIndex = [u32; RULE_BLOCKS];

/// The [`RuleIndex`] of `entries` (at most 32: more are not indexed).
pub fn rule_index(entries: &[StrictRule]) -> RuleIndex {
    let mut index = [0; RULE_BLOCKS];
    for (i, e) in entries.iter().enumerate().take(32) {
        for block in (e.port_first >> 6)..=(e.port_last >> 6) {
            index[usize::from(block)] |= 1 << i;
        }
    }
    index
}

/// The entries of `index` that may take `port`.
#[inline(always)]
pub fn rule_candidates(index: &RuleIndex, port: u16) -> u32 {
    index[usize::from(port >> 6)]
}

/// Whether `bits` (a [`RulePorts`]) may hold `port`.
#[inline(always)]
pub fn rule_port(bits: &RulePorts, port: u16) -> bool {
    let block = port >> 6;
    bits[usize::from(block >> 6)] >> (block & 63) & 1 != 0
}

/// One compiled `[[strict.allow]]` entry: protocol, destination port
/// range and source prefix. Sources are compared as the parser hands them
/// on (16 bytes, IPv4 as `::ffff:a.b.c.d`, two native words in memory
/// order): `src & mask == net` word by word.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StrictRule {
    /// IP protocol number (6, 17, 132, 1, 58) or [`RULE_ANY_PROTO`], with
    /// [`RULE_V4`] and/or [`RULE_V6`] (see [`rule_takes`]).
    pub proto: u32,
    /// Destination ports, inclusive; 0-65535 where ports do not apply.
    pub port_first: u16,
    pub port_last: u16,
    pub net: [u64; 2],
    pub mask: [u64; 2],
}

/// Everything the program decides by, apart from the allowlists.
///
/// Two of these live in the policy map, one per generation; the active
/// generation (see [`maps::ACTIVE`]) names which one and which pair of
/// allowlist tries a packet uses, so a whole new policy is swapped in with a
/// single 4-byte write.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// First and last UDP port of the RTP range, inclusive.
    pub rtp_first: u16,
    pub rtp_last: u16,
    /// `FLAG_*` bits.
    pub flags: u32,
    /// Prefixes used in `v4_inline`, or [`INLINE_NONE`] when the IPv4
    /// allowlist is too long to be inline and the direct table decides.
    pub v4_inline_len: u32,
    /// Same for `v6_inline`.
    pub v6_inline_len: u32,
    /// CLOCK_MONOTONIC time at which userspace made this generation active
    /// (see `filter-user`'s `maps::install`). Not read by the program.
    pub installed_ns: u64,
    /// Rate limit of allowed signalling per source: one packet every
    /// `sip_interval_ns` on average, at most `sip_window_ns /
    /// sip_interval_ns` (the burst) at once. 0: no limit. See
    /// [`RateState`].
    pub sip_interval_ns: u64,
    pub sip_window_ns: u64,
    /// The same for UDP into the media range.
    pub rtp_interval_ns: u64,
    pub rtp_window_ns: u64,
    /// Seeds of [`host_slots`] for this generation's `V4_HOSTS` half.
    pub v4_seeds: [u32; 2],
    /// Short IPv4 allowlist: (network, mask) as host-order u32.
    pub v4_inline: [[u32; 2]; INLINE_PREFIXES],
    /// Short IPv6 allowlist: (network high, network low, mask high, mask
    /// low) as host-order u64.
    pub v6_inline: [[u64; 4]; INLINE_PREFIXES],
    /// Bit `p % 64` of word `p / 64` is set when port `p` is a signalling port.
    pub sig_ports: [u64; PORT_WORDS],
    /// The provider's media ports (UDP source), inclusive.
    pub provider_rtp_first: u16,
    pub provider_rtp_last: u16,
    /// Entries of `rules` in use (strict mode).
    pub rule_count: u32,
    pub rules: [StrictRule; MAX_STRICT_RULES],
    /// The ports `rules` cover, coarsely (see [`RulePorts`]).
    pub rule_ports: RulePorts,
    /// Calls mode: a pinhole without media for this long is closed
    /// (`[media] call_idle`).
    pub media_idle_ns: u64,
}

impl Policy {
    pub const fn empty() -> Policy {
        Policy {
            rtp_first: 0,
            rtp_last: 0,
            flags: 0,
            v4_inline_len: INLINE_NONE,
            v6_inline_len: INLINE_NONE,
            installed_ns: 0,
            sip_interval_ns: 0,
            sip_window_ns: 0,
            rtp_interval_ns: 0,
            rtp_window_ns: 0,
            v4_seeds: [0; 2],
            v4_inline: [[0; 2]; INLINE_PREFIXES],
            v6_inline: [[0; 4]; INLINE_PREFIXES],
            sig_ports: [0; PORT_WORDS],
            provider_rtp_first: 0,
            provider_rtp_last: 0,
            rule_count: 0,
            rules: [StrictRule {
                proto: 0,
                port_first: 0,
                port_last: 0,
                net: [0; 2],
                mask: [0; 2],
            }; MAX_STRICT_RULES],
            rule_ports: [0; RULE_PORT_WORDS],
            media_idle_ns: 0,
        }
    }

    pub fn set_sig_port(&mut self, port: u16) {
        self.sig_ports[(port >> 6) as usize] |= 1 << (port & 63);
    }

    #[inline(always)]
    pub fn is_sig_port(&self, port: u16) -> bool {
        self.sig_ports[(port >> 6) as usize] & (1 << (port & 63)) != 0
    }

    #[inline(always)]
    pub fn is_rtp_port(&self, port: u16) -> bool {
        port >= self.rtp_first && port <= self.rtp_last
    }

    #[inline(always)]
    pub fn is_provider_rtp_port(&self, port: u16) -> bool {
        port >= self.provider_rtp_first && port <= self.provider_rtp_last
    }
}

/// `EgressPolicy::flags`: strict egress (default deny outbound).
pub const EGRESS_STRICT: u32 = 1;
/// Compiled `[[egress.allow]]` entries an egress policy holds (as
/// [`MAX_STRICT_RULES`]: one per rule, port range and destination prefix).
pub const MAX_EGRESS_RULES: usize = 32;
/// Compiled `[egress] dns` entries: two (UDP and TCP port 53) per resolver.
pub const MAX_DNS_ENTRIES: usize = 16;

/// What the TC egress program decides outgoing packets by, beside the
/// [`Policy`] of the same generation (signalling ports, allowlist, media
/// ports, `[[strict.allow]]` rules, dry run). One per generation in its own
/// map, switched by the same [`maps::ACTIVE`] word.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EgressPolicy {
    /// `EGRESS_*` bits.
    pub flags: u32,
    /// Entries of `rules` in use.
    pub rule_count: u32,
    /// Entries of `dns` in use.
    pub dns_count: u32,
    pub reserved: u32,
    /// `[[egress.allow]]`: protocol, destination ports, destination prefix
    /// (`net`/`mask` compared with the destination address).
    pub rules: [StrictRule; MAX_EGRESS_RULES],
    /// `[egress] dns`: UDP and TCP to port 53 of each resolver.
    pub dns: [StrictRule; MAX_DNS_ENTRIES],
    /// Which of `rules` may take each destination port (see [`RuleIndex`]).
    /// The resolvers need none: the program tests DNS's port itself.
    pub rule_index: RuleIndex,
}

impl EgressPolicy {
    pub const fn empty() -> EgressPolicy {
        const NONE: StrictRule = StrictRule {
            proto: 0,
            port_first: 0,
            port_last: 0,
            net: [0; 2],
            mask: [0; 2],
        };
        EgressPolicy {
            flags: 0,
            rule_count: 0,
            dns_count: 0,
            reserved: 0,
            rules: [NONE; MAX_EGRESS_RULES],
            dns: [NONE; MAX_DNS_ENTRIES],
            rule_index: [0; RULE_BLOCKS],
        }
    }
}
