//! Types and constants the XDP program and the `sipwall` tool must agree on:
//! the reasons a packet is counted under, map names, map value layouts and
//! the limits of each map. Everything here is `no_std` and `repr(C)` without
//! padding, so both sides read the same bytes.
#![no_std]

pub mod capture;

/// A family of counters: the reasons one program counts under, each the
/// index of its slot in that program's counters map. [`Reason`] (the XDP
/// program) and [`OutReason`] (the TC egress program) are the two, both
/// declared by `counter_family!`; what reads, diffs, renders or exports
/// counters is written once, over this trait.
pub trait CounterFamily: Copy + PartialEq + core::fmt::Debug + 'static {
    /// Every member, in slot order: the order JSON, metrics and tables list
    /// them.
    const MEMBERS: &'static [Self];
    /// One counter a member, summed over CPUs, indexed by `index()`.
    type Set: Copy + Default + AsRef<[Counter]> + AsMut<[Counter]>;

    /// The counter's name as it appears in JSON, metrics and tests.
    fn name(self) -> &'static str;
    /// Whether packets counted under it are dropped (unless in dry run).
    fn drops(self) -> bool;
    /// Its slot in the counters map (and in `Set`).
    fn index(self) -> u32;

    fn from_name(name: &str) -> Option<Self> {
        Self::MEMBERS.iter().copied().find(|r| r.name() == name)
    }
}

/// Declares a counter family from one table: the enum (its members' slots
/// as discriminants), the number of slots, and for each member its name
/// (after the family's prefix, if it has one) and whether it drops (`pass`
/// or `drop`). The inherent `ALL`, `name` and
/// `drops` are `const` for the eBPF side; [`CounterFamily`] is the same,
/// for code generic over the two families.
macro_rules! counter_family {
    (
        $(#[$meta:meta])*
        pub enum $family:ident, count $count:ident, names prefixed $prefix:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $slot:literal => $name:literal, $verdict:ident, )*
        }
    ) => {
        $(#[$meta])*
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $family {
            $( $(#[$vmeta])* $variant = $slot, )*
        }

        #[doc = concat!("Number of [`", stringify!($family), "`] members, the size of its counters map.")]
        pub const $count: u32 = 0 $( + { let _ = $slot; 1 } )*;

        impl $family {
            /// Every member, in slot order: the order JSON, metrics and
            /// tables list them (docs/json.md).
            pub const ALL: [$family; $count as usize] = [ $( $family::$variant ),* ];

            /// The counter's name as it appears in JSON, metrics and tests.
            pub const fn name(self) -> &'static str {
                match self {
                    $( $family::$variant => concat!($prefix, $name), )*
                }
            }

            /// Whether packets counted under it are dropped (unless in dry
            /// run).
            pub const fn drops(self) -> bool {
                match self {
                    $( $family::$variant => counter_family!(@drops $verdict), )*
                }
            }
        }

        // The slots are 0, 1, 2...: `ALL[i]`'s slot is `i`, which is what
        // indexing a counter set by `reason as usize` relies on.
        const _: () = {
            let mut i = 0;
            while i < $family::ALL.len() {
                assert!($family::ALL[i] as usize == i);
                i += 1;
            }
        };

        impl CounterFamily for $family {
            const MEMBERS: &'static [Self] = &$family::ALL;
            type Set = [Counter; $count as usize];

            fn name(self) -> &'static str {
                $family::name(self)
            }
            fn drops(self) -> bool {
                $family::drops(self)
            }
            fn index(self) -> u32 {
                self as u32
            }
        }
    };
    (@drops drop) => { true };
    (@drops pass) => { false };
    // A family whose names have no prefix.
    (
        $(#[$meta:meta])*
        pub enum $family:ident, count $count:ident { $($members:tt)* }
    ) => {
        counter_family! {
            $(#[$meta])*
            pub enum $family, count $count, names prefixed "" { $($members)* }
        }
    };
}

counter_family! {
    /// Why a packet got its verdict; the index of its slot in the counters map.
    ///
    /// The kernel side only ever writes these as constants: a reason is never
    /// built from packet bytes.
    pub enum Reason, count REASON_COUNT {
        SipAllowed = 0 => "sip_allowed", pass,
        SipDenied = 1 => "sip_denied", drop,
        RtpAllowed = 2 => "rtp_allowed", pass,
        Fragment = 3 => "fragment", pass,
        Other = 4 => "other", pass,
        NonIp = 5 => "non_ip", pass,
        Malformed = 6 => "malformed", drop,
        /// The source is in the ban set (docs/policy.md, abuse controls).
        Banned = 7 => "banned", drop,
        /// An allowed signalling packet over its source's rate limit.
        SipRatelimited = 8 => "sip_ratelimited", drop,
        /// A media packet over its source's rate limit.
        RtpRatelimited = 9 => "rtp_ratelimited", drop,
        /// UDP into the media range that is not RTP/RTCP (`check_rtp`).
        RtpInvalid = 10 => "rtp_invalid", drop,
        /// Strict mode: ICMP errors, neighbour discovery, DHCP replies, pings.
        Essential = 11 => "essential", pass,
        /// Strict mode: a packet of a flow this host has sent on.
        Reply = 12 => "reply", pass,
        /// Strict mode: matched a `[[strict.allow]]` rule.
        RuleAllowed = 13 => "rule_allowed", pass,
        /// Strict mode: UDP from the provider's media ports to a port outside
        /// `rtp_ports` (dropped: one-way audio).
        RtpOutside = 14 => "rtp_outside", drop,
        /// Strict mode: nothing allowed it.
        Denied = 15 => "denied", drop,
    }
}

counter_family! {
    /// Why the TC egress program passed or dropped an outgoing packet (strict
    /// egress, docs/policy.md "Egress"); the index of its slot in the egress
    /// counters map. Kept apart from [`Reason`]: the two programs count into
    /// maps of their own.
    pub enum OutReason, count OUT_REASON_COUNT, names prefixed "out_" {
        /// Not IPv4/IPv6.
        NonIp = 0 => "non_ip", pass,
        /// To a signalling port at an allowlisted address.
        SipAllowed = 1 => "sip_allowed", pass,
        /// To a signalling port elsewhere (dropped).
        SipDenied = 2 => "sip_denied", drop,
        /// UDP to the provider's media ports.
        RtpAllowed = 3 => "rtp_allowed", pass,
        /// An answer to what ingress lets in: from a signalling port to an
        /// allowlisted address, from `rtp_ports`, from a `[[strict.allow]]`
        /// rule's ports back to its `from`, echo replies when ping is on.
        Reply = 4 => "reply", pass,
        /// ICMP errors, neighbour discovery, DHCP client, DNS to the
        /// configured resolvers.
        Essential = 5 => "essential", pass,
        /// Matched an `[[egress.allow]]` rule.
        RuleAllowed = 6 => "rule_allowed", pass,
        /// A non-first fragment (its first fragment was judged by its ports).
        Fragment = 7 => "fragment", pass,
        /// Nothing allowed it (dropped); malformed packets too.
        Denied = 8 => "denied", drop,
    }
}

/// Packets and bytes (frame length) counted under one reason, on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

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
/// `Policy::flags` bits from here up are never set. The parser adds them
/// (zero) to the IP header's offset: the verifier cannot know they are
/// zero, so it checks the many ways to the IP header (Ethernet with 0-2
/// VLAN tags, PPPoE, none) as one, with the offset a number in a range.
pub const FLAG_UNUSED_SHIFT: u32 = 27;
const _: () = assert!(
    (FLAG_DRY_RUN | FLAG_LOG_DENIED | FLAG_CHECK_RTP | FLAG_STRICT | FLAG_PING | FLAG_L3)
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
    /// The ports `rules` and `dns` cover, coarsely (see [`RulePorts`]).
    pub rule_ports: RulePorts,
    pub dns_ports: RulePorts,
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
            rule_ports: [0; RULE_PORT_WORDS],
            dns_ports: [0; RULE_PORT_WORDS],
        }
    }
}

/// Allowlists of at most this many prefixes per family are kept in the
/// policy itself and matched by comparison, without a trie lookup.
pub const INLINE_PREFIXES: usize = 8;
/// `Policy::v4_inline_len` when the allowlist is not inline.
pub const INLINE_NONE: u32 = u32::MAX;

/// The direct tables: two bits for each value of an address's first 24
/// bits (an IPv4 /24 network; an IPv6 /24), [`DIRECT_NONE`], [`DIRECT_FULL`]
/// (a prefix of /24 or shorter covers it) or [`DIRECT_PARTIAL`] (longer
/// prefixes cover part of it: for IPv4 its host map decides, see
/// [`HostSlot`]; for IPv6 the trie), 32 a word. Each generation has its own
/// half of the map. IPv4 lookups cost the same whatever the allowlist's
/// size; IPv6 sources outside every allowed /24 are denied at the same
/// cost.
pub const DIRECT_WORDS: u32 = 1 << 19;
pub const DIRECT_NONE: u64 = 0;
pub const DIRECT_FULL: u64 = 1;
pub const DIRECT_PARTIAL: u64 = 2;

/// The allowed hosts of a partially allowed /24 network, in a slot of the
/// `V4_HOSTS` array. Each network has two candidate buckets of
/// [`HOST_BUCKET_SLOTS`] slots ([`host_buckets`]); userspace places every
/// network in a free slot of one of them (cuckoo hashing) with seeds it
/// keeps in the generation's [`Policy`], so the program finds it in at most
/// four array reads.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostSlot {
    /// The /24 network (address >> 8) plus one; 0 marks an empty slot.
    pub net24_plus_one: u32,
    pub reserved: u32,
    /// Bit `h % 64` of word `h / 64` is set when host byte `h` is allowed.
    pub bits: [u64; 4],
}

/// Slots of `V4_HOSTS` per generation: twice the most partial networks an
/// allowlist can have. With two buckets of two slots per network, cuckoo
/// placement works up to about 90% full; half full leaves a wide margin.
pub const V4_HOST_SLOTS: u32 = 1 << 18;
/// Slots per bucket.
pub const HOST_BUCKET_SLOTS: u32 = 2;

// Userspace writes `V4_HOSTS` through a memory mapping: its elements must
// be laid out back to back, as the kernel lays out 8-byte-rounded values
// (asserted with the other sizes below).

/// The two candidate buckets of a /24 network within one generation, as
/// indices of their first slot. The seeds pass through a full mixer, so
/// other seeds give other placements even for evenly spaced networks.
#[inline(always)]
pub fn host_buckets(net24: u32, seeds: [u32; 2]) -> [u32; 2] {
    let buckets_log2 = (V4_HOST_SLOTS / HOST_BUCKET_SLOTS).trailing_zeros();
    let bucket = |seed: u32| (mix32(net24 ^ seed) >> (32 - buckets_log2)) * HOST_BUCKET_SLOTS;
    [bucket(seeds[0]), bucket(seeds[1])]
}

/// MurmurHash3's finaliser: every input bit affects every output bit.
#[inline(always)]
fn mix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// One slot of the per-CPU cache of dropped sources in front of `DENIED`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeniedSlot {
    pub addr: [u8; 16],
    /// The drop [`Reason`] as its `u32`.
    pub reason: u32,
    pub reserved: u32,
    pub packets: u64,
    pub bytes: u64,
}

/// Slots of the denied-source cache (a power of two).
pub const DENIED_CACHE_SLOTS: u32 = 4096;

/// Slots per value of the denied-source cache's map. The cache is a
/// per-CPU array of a few blocks of slots rather than one value per slot:
/// a per-CPU value is found through a table of pointers, one per entry,
/// and in a flood from hundreds of sources a table of 4,096 entries
/// missed the CPU's cache on nearly every packet; one of
/// [`DENIED_CACHE_BLOCKS`] stays in it. (A per-CPU value may hold at most
/// 32 KiB.)
pub const DENIED_BLOCK_SLOTS: u32 = 512;

/// Entries of the denied-source cache's map.
pub const DENIED_CACHE_BLOCKS: u32 = DENIED_CACHE_SLOTS / DENIED_BLOCK_SLOTS;

/// One entry of the denied-source cache's map: slot `i` of the cache is
/// slot `i % DENIED_BLOCK_SLOTS` of entry `i / DENIED_BLOCK_SLOTS`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DeniedBlock {
    pub slots: [DeniedSlot; DENIED_BLOCK_SLOTS as usize],
}

/// Writes each CPU may make per tick of the kernel (1-10 ms; 250 a second
/// on Debian's kernels: 16,000 a second per CPU) to the map of dropped
/// sources for sources pushed out of the cache: every new entry, and every
/// write of a source pushed out with fewer than [`DENIED_HEAVY_PACKETS`].
/// An insert into that LRU map costs about 0.5 µs and a lookup a tenth of
/// that, against some 0.15 µs per packet at line rate, so a flood of
/// spoofed sources that each send twice would otherwise make every other
/// packet one of each. Past the budget such a source is not written:
/// the map (what `top` lists) is a sample of it, while its packets are
/// still counted under their reason, and a source that sent many (the
/// ones `top` is for) is always added to its entry when it has one.
pub const DENIED_BUDGET_PER_TICK: u64 = 64;

/// Packets from which a source pushed out of the cache is always written
/// to its entry in the map of denied sources (a new entry still needs the
/// budget).
pub const DENIED_HEAVY_PACKETS: u64 = 8;

/// Per-CPU state of that budget.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct InsertBudget {
    /// The tick (`bpf_jiffies64`) the budget was last filled at.
    pub jiffy: u64,
    /// Inserts left in that tick.
    pub left: u64,
}

/// A source address as the rate-limit maps key it: an IPv6 address, IPv4
/// as `::ffff:a.b.c.d`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SourceKey {
    pub addr: [u8; 16],
}

/// Key of the dropped-sources map (`DENIED`): the source as in
/// [`SourceKey`] and the drop [`Reason`] (as its `u32`) its packets were
/// counted under, so `top --reason R` shows any drop reason's sources.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DropKey {
    pub addr: [u8; 16],
    pub reason: u32,
    pub reserved: u32,
}

/// Per-CPU state of the kernel's log rate limiter (token bucket).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct LogBucket {
    /// Time of the last refill, `bpf_ktime_get_ns`.
    pub refilled_ns: u64,
    /// Log records that may still be sent before the next refill.
    pub tokens: u64,
}

/// Per-CPU copy of the kernel's coarse clock (CLOCK_MONOTONIC_COARSE, as
/// `bpf_ktime_get_coarse_ns` reads it), kept by jiffy: the clock only
/// moves at a tick, and the tick count (`bpf_jiffies64`) is one load
/// where the helper is two calls. Written by the program only.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CoarseClock {
    /// The jiffy for which `ns` is known to be the clock's value (see
    /// filter-ebpf's `clock.rs`); any other jiffy reads the clock.
    pub trusted_jiffy: u64,
    /// The clock's last reading.
    pub ns: u64,
    /// The jiffy at which `ns` was read.
    pub read_jiffy: u64,
}

/// Log records each CPU may send per second when `FLAG_LOG_DENIED` is set.
pub const LOG_RATE_PER_SEC: u64 = 10;

/// One source's token bucket, kept as its theoretical arrival time (GCRA,
/// the token bucket in one number): a packet at `now` conforms when
/// `max(tat_ns, now) + interval - now <= window`, and then moves `tat_ns`
/// on by one interval; a packet that does not conform leaves it alone. A
/// source sends `window / interval` packets at once, then one per
/// interval. Shared by all CPUs: concurrent updates may lose one, which
/// lets a packet more through, never one less.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateState {
    /// `bpf_ktime_get_coarse_ns` (CLOCK_MONOTONIC_COARSE) time.
    pub tat_ns: u64,
    /// Packets and bytes dropped over the limit (for `top --reason`).
    pub dropped_packets: u64,
    pub dropped_bytes: u64,
}

/// A slot of the direct-mapped cache in front of a rate-limit map: the
/// bucket of the source that last hashed here. A source in its slot costs
/// an array read; one that takes the slot of another writes that one's
/// bucket back to the LRU map and takes its own from there.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateSlot {
    /// The source, as [`SourceKey`] holds it.
    pub addr: [u8; 16],
    /// Its bucket; `tat_ns == 0` marks an empty slot.
    pub state: RateState,
}

/// Slots of each rate-limit cache (a power of two).
pub const RATE_CACHE_SLOTS: u32 = 1 << 14;

/// The slot of a source (its key words as the parser hands them) in a
/// rate-limit cache.
#[inline(always)]
pub fn rate_slot(words: [u64; 2]) -> u32 {
    let folded = words[0] ^ words[1];
    let hash = ((folded as u32) ^ ((folded >> 32) as u32)).wrapping_mul(0x9e37_79b9);
    hash >> (32 - RATE_CACHE_SLOTS.trailing_zeros())
}

/// One entry of the ban set (the value of the ban tries).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BanEntry {
    /// CLOCK_MONOTONIC time (as the kernel's coarse clock reads it) up to which a source this entry matches is
    /// banned: the latest expiry among this entry and every shorter ban
    /// prefix that covers it (the lookup answers with the most specific
    /// entry only), [`BAN_PERMANENT`] for no expiry. The program reads only this.
    pub effective_ns: u64,
    /// This entry's own expiry, as `ban add` set it (for `ban list`).
    pub expires_ns: u64,
}

/// `BanEntry` expiry of a ban without end.
pub const BAN_PERMANENT: u64 = u64::MAX;

/// Words of each family's half of the ban gate: two bits per first 24 bits
/// of an address (an IPv4 /24), 32 a word: [`BAN_GATE_HOSTS`] when single
/// addresses (/32, /128) in it are banned, [`BAN_GATE_PREFIXES`] when a
/// shorter ban prefix covers some of it. A packet whose bits are clear is
/// not banned, at the cost of one array read whatever the size of the ban
/// set; a set bit sends it on to the host hash or the prefix trie.
pub const BAN_GATE_WORDS: u32 = 1 << 19;
pub const BAN_GATE_HOSTS: u64 = 1;
pub const BAN_GATE_PREFIXES: u64 = 2;

/// Words of the ban gate's second level, after the two halves: one bit
/// per single banned address (/32, /128), so that a source in a /24 with
/// banned hosts but not banned itself costs one more array read rather
/// than a hash lookup. An address's 256 neighbours (all bytes but the
/// last alike) share a block of four words placed by a hash of what they
/// have in common, and the last byte picks the bit: a neighbour of a ban
/// finds its own bit clear, and only blocks two prefixes share can give a
/// false "maybe" (then the host hash answers, as it would without the
/// bitmap). 2^24 bits: at 100,000 bans about one neighbour in 170.
pub const BAN_HOST_WORDS: u32 = 1 << 18;
/// Words of the whole ban gate map: IPv4 half, IPv6 half, host bitmap.
pub const BAN_GATE_LEN: u32 = 2 * BAN_GATE_WORDS + BAN_HOST_WORDS;

/// The word (index into the whole gate map) and bit of an IPv4 address
/// (host byte order) in the gate's host bitmap.
#[inline(always)]
pub fn ban_host_bit_v4(addr: u32) -> (u32, u32) {
    ban_host_bit((addr >> 8).wrapping_mul(0x9e37_79b9), addr & 255)
}

/// The same for an IPv6 address, as its two big-endian halves.
#[inline(always)]
pub fn ban_host_bit_v6(hi: u64, lo: u64) -> (u32, u32) {
    let folded = hi ^ (lo >> 8).rotate_left(29);
    let hash = ((folded as u32) ^ ((folded >> 32) as u32) ^ 0x6a09_e667).wrapping_mul(0x9e37_79b9);
    ban_host_bit(hash, lo as u32 & 255)
}

#[inline(always)]
fn ban_host_bit(hash: u32, last_byte: u32) -> (u32, u32) {
    let blocks_log2 = (BAN_HOST_WORDS / 4).trailing_zeros();
    let block = hash >> (32 - blocks_log2);
    (
        2 * BAN_GATE_WORDS + block * 4 + (last_byte >> 6),
        last_byte & 63,
    )
}

/// Map names (as the ELF object names them) and their sizes. The
/// `#[map]` statics of filter-ebpf carry these names; the loader pins every
/// map the object has, and a test fails when a name here and the object
/// disagree.
pub mod maps {
    /// Per-CPU array of [`crate::Counter`], indexed by [`crate::Reason`].
    pub const COUNTERS: &str = "COUNTERS";
    /// Array of one u32: the active generation, 0 or 1.
    pub const ACTIVE: &str = "ACTIVE";
    /// Array of two [`crate::Policy`], one per generation.
    pub const POLICY: &str = "POLICY";
    /// IPv4 allowlist tries of generation 0 and 1.
    pub const ALLOW_V4: [&str; 2] = ["ALLOW_V4_0", "ALLOW_V4_1"];
    /// IPv6 allowlist tries of generation 0 and 1.
    pub const ALLOW_V6: [&str; 2] = ["ALLOW_V6_0", "ALLOW_V6_1"];
    /// Per-CPU LRU hash of [`crate::DropKey`] → [`crate::Counter`]: the
    /// sources of dropped packets, by drop reason.
    pub const DENIED: &str = "DENIED";
    /// Per-CPU array of one [`crate::LogBucket`].
    pub const LOG_BUCKET: &str = "LOG_BUCKET";
    /// Array of u64, two halves of [`crate::DIRECT_WORDS`] (one per
    /// generation), memory-mappable so userspace writes a half at once.
    pub const V4_DIRECT: &str = "V4_DIRECT";
    /// The IPv6 direct table, laid out like `V4_DIRECT`.
    pub const V6_DIRECT: &str = "V6_DIRECT";
    /// Array of [`crate::HostSlot`], two halves of
    /// [`crate::V4_HOST_SLOTS`], memory-mappable like `V4_DIRECT`.
    pub const V4_HOSTS: &str = "V4_HOSTS";
    /// Per-CPU array of [`crate::DeniedBlock`].
    pub const DENIED_CACHE: &str = "DENIED_CACHE";
    /// Per-CPU array of one [`crate::CoarseClock`].
    pub const CLOCK: &str = "CLOCK";
    /// Per-CPU array of one [`crate::InsertBudget`].
    pub const DENIED_BUDGET: &str = "DENIED_BUDGET";
    /// LRU hash of [`crate::SourceKey`] → [`crate::RateState`] for allowed
    /// signalling.
    pub const SIP_RATE: &str = "SIP_RATE";
    /// The same for media.
    pub const RTP_RATE: &str = "RTP_RATE";
    /// Arrays of [`crate::RateSlot`] in front of `SIP_RATE` and `RTP_RATE`.
    pub const SIP_RATE_CACHE: &str = "SIP_RATE_CACHE";
    pub const RTP_RATE_CACHE: &str = "RTP_RATE_CACHE";
    /// Ban tries (longest-prefix match) of [`crate::BanEntry`]: the
    /// prefixes shorter than one address.
    pub const BAN_V4: &str = "BAN_V4";
    pub const BAN_V6: &str = "BAN_V6";
    /// Hashes of single banned addresses (4 and 16 bytes, in packet
    /// order) to [`crate::BanEntry`]: where fail2ban and APIBAN lists go.
    pub const BAN_HOSTS_V4: &str = "BAN_HOSTS_V4";
    pub const BAN_HOSTS_V6: &str = "BAN_HOSTS_V6";
    /// Array of u64: the IPv4 half then the IPv6 half of the ban gate
    /// ([`crate::BAN_GATE_WORDS`] each), then its host bitmap
    /// ([`crate::BAN_HOST_WORDS`]), memory-mappable.
    pub const BAN_GATE: &str = "BAN_GATE";
    /// LRU hash of [`crate::FlowKeyV4`] → [`crate::FlowSeen`]: the host's
    /// own IPv4 flows, learnt by the TC egress program (strict mode's
    /// replies).
    pub const FLOWS_V4: &str = "FLOWS_V4";
    /// LRU hash of [`crate::FlowKey`] → [`crate::FlowSeen`]: the host's
    /// own IPv6 flows.
    pub const FLOWS_V6: &str = "FLOWS_V6";
    /// Per-CPU array of [`crate::ReplySlot`]: the XDP program's cache of
    /// flows it found in `FLOWS_V4` and `FLOWS_V6` (strict mode's replies).
    pub const REPLY_CACHE: &str = "REPLY_CACHE";
    /// Array of u32, [`crate::FLOW_GATE_SLOTS`] entries: the flow gate in
    /// front of `FLOWS_V4` and `FLOWS_V6` (see [`crate::flow_gate_slot`]).
    pub const FLOW_GATE: &str = "FLOW_GATE";
    /// Per-CPU array of [`crate::ReplySlot`]: the egress program's cache
    /// of flows whose time in the flow maps is less than
    /// [`crate::FLOW_REFRESH_NS`] old, each until that time is due to be
    /// rewritten (counted in ticks of [`crate::TICK_MAX_NS`]).
    pub const LEARNT_CACHE: &str = "LEARNT_CACHE";
    /// Array of two u64: a policy applied with `--confirm` waiting for
    /// `sipwall confirm` (see [`crate::CONFIRM_PENDING`]). Never read by
    /// the programs; pinned with the rest so `confirm` finds it.
    pub const CONFIRM: &str = "CONFIRM";
    /// Per-CPU array of [`crate::Counter`], indexed by
    /// [`crate::OutReason`]: the TC egress program's decisions.
    pub const OUT_COUNTERS: &str = "OUT_COUNTERS";
    /// Array of two [`crate::EgressPolicy`], one per generation.
    pub const EGRESS_POLICY: &str = "EGRESS_POLICY";
    /// Per-CPU scratch slot of the egress program (its parse result); no
    /// state, pinned only because every map is.
    pub const EGRESS_SCRATCH: &str = "EGRESS_SCRATCH";

    /// Every map of the program, each pinned under its name.
    pub const ALL: [&str; 36] = [
        COUNTERS,
        ACTIVE,
        POLICY,
        ALLOW_V4[0],
        ALLOW_V4[1],
        ALLOW_V6[0],
        ALLOW_V6[1],
        DENIED,
        LOG_BUCKET,
        DENIED_CACHE,
        V4_DIRECT,
        V4_HOSTS,
        V6_DIRECT,
        SIP_RATE,
        RTP_RATE,
        SIP_RATE_CACHE,
        RTP_RATE_CACHE,
        BAN_V4,
        BAN_V6,
        BAN_HOSTS_V4,
        BAN_HOSTS_V6,
        BAN_GATE,
        FLOWS_V4,
        FLOWS_V6,
        REPLY_CACHE,
        FLOW_GATE,
        LEARNT_CACHE,
        CONFIRM,
        OUT_COUNTERS,
        EGRESS_POLICY,
        EGRESS_SCRATCH,
        CLOCK,
        DENIED_BUDGET,
        crate::capture::maps::CAPTURE,
        crate::capture::maps::CAPTURE_STATS,
        crate::capture::maps::CAPTURE_RING,
    ];

    /// Flows remembered for strict mode's replies, per address family
    /// (least recently used are evicted first).
    pub const FLOWS_MAX: u32 = 262_144;

    /// Entries each IPv4 allowlist trie can hold.
    pub const ALLOW_V4_MAX: u32 = 131_072;
    /// Entries each IPv6 allowlist trie can hold.
    pub const ALLOW_V6_MAX: u32 = 131_072;
    /// Denied sources remembered (least recently seen are evicted).
    pub const DENIED_MAX: u32 = 16_384;
    /// Sources each rate-limit map tracks (least recently seen evicted).
    pub const RATE_MAX: u32 = 65_536;
    /// Entries each ban trie can hold (an APIBAN list is a few thousand).
    pub const BAN_MAX: u32 = 262_144;
}

/// A flow of this host as both programs key it: the remote end, the local
/// end, their ports and the protocol. The XDP program builds it from an
/// incoming packet's source and destination, the TC egress program from an
/// outgoing packet's destination and source, so a reply finds the flow its
/// host opened. Addresses are 16 bytes in memory order (IPv4 as
/// `::ffff:a.b.c.d`, in the reply cache) held as native words; `ports`
/// holds the remote port's two bytes then the local port's, in network
/// order (an ICMP echo: 0 and its identifier); `proto` is the IP protocol
/// (1 and 58 for echo). The key of `FLOWS_V6`; IPv4 flows are keyed by the
/// shorter [`FlowKeyV4`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub remote: [u64; 2],
    pub local: [u64; 2],
    pub ports: u32,
    pub proto: u32,
}

/// An IPv4 flow as `FLOWS_V4` keys it: [`FlowKey`]'s fields with the
/// addresses as their 4 bytes in memory order, held as native u32. 16
/// bytes: the kernel hashes (jhash) and compares a third of what an IPv6
/// key costs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKeyV4 {
    pub remote: u32,
    pub local: u32,
    pub ports: u32,
    pub proto: u32,
}

/// When a flow last sent a packet out (`bpf_ktime_get_coarse_ns`: the
/// coarse clock is a few ms behind and far cheaper, and idle times are
/// seconds to days).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowSeen {
    pub last_out_ns: u64,
}

/// How long a flow stays open without an outgoing packet (docs/policy.md,
/// "Replies"): TCP like conntrack's established timeout, since an idle SSH
/// session must survive; SCTP sends heartbeats every 30 s; UDP and ICMP
/// echo answer within seconds.
pub const FLOW_IDLE_TCP_NS: u64 = 5 * 24 * 3600 * 1_000_000_000;
pub const FLOW_IDLE_SCTP_NS: u64 = 3600 * 1_000_000_000;
pub const FLOW_IDLE_UDP_NS: u64 = 180 * 1_000_000_000;
pub const FLOW_IDLE_ICMP_NS: u64 = 30 * 1_000_000_000;
/// The egress program rewrites a flow's timestamp at most this often.
pub const FLOW_REFRESH_NS: u64 = 1_000_000_000;

/// The idle time of a flow of IP protocol `proto`.
#[inline(always)]
pub const fn flow_idle_ns(proto: u32) -> u64 {
    match proto {
        6 => FLOW_IDLE_TCP_NS,
        132 => FLOW_IDLE_SCTP_NS,
        17 => FLOW_IDLE_UDP_NS,
        _ => FLOW_IDLE_ICMP_NS,
    }
}

/// One slot of the XDP program's per-CPU reply cache in front of the flow
/// maps:
/// a flow found there, and until when its answers may pass without asking
/// the map again, in jiffies (`bpf_jiffies64`, read without a helper call;
/// the map's times are read through one). A flow is cached with the time
/// it had left in its map, counted in ticks of [`TICK_MAX_NS`], never more
/// than the map would allow, and only ever less (the egress program moves
/// the map's time on, not the cache's): when the slot's time is up, the
/// map decides again. Userspace empties the cache when it removes flows.
///
/// The key's `proto` carries the address family beside the IP protocol
/// ([`REPLY_FAMILY_V4`] or [`REPLY_FAMILY_V6`]): an IPv4 flow and an IPv6
/// packet between the IPv4-mapped forms of its addresses have the same
/// address words, and must not share a slot's answer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplySlot {
    pub key: FlowKey,
    pub until_jiffies: u64,
}

/// [`ReplySlot`]'s key: `proto | REPLY_FAMILY_V4` for an IPv4 flow,
/// `proto | REPLY_FAMILY_V6` for an IPv6 one (above every IP protocol
/// number; an empty slot's 0 is neither).
pub const REPLY_FAMILY_V4: u32 = 1 << 8;
pub const REPLY_FAMILY_V6: u32 = 2 << 8;

/// Slots of the reply cache, per CPU (a power of two).
pub const REPLY_CACHE_SLOTS: u32 = 4096;

/// The longest a jiffy lasts: 10 ms (Linux's HZ is at least 100). A cached
/// flow's time left is counted in jiffies of this length, so that with
/// shorter ones (HZ 250: 4 ms) it runs out sooner than the flow's, never
/// later.
pub const TICK_MAX_NS: u64 = 10_000_000;

/// The reply cache slot of a flow, from its key's words as the XDP program
/// holds them.
#[inline(always)]
pub fn reply_slot(remote: [u64; 2], local: [u64; 2], ports: u32) -> u32 {
    let folded = remote[0] ^ remote[1] ^ local[0] ^ local[1].rotate_left(16) ^ u64::from(ports);
    let hash = ((folded as u32) ^ ((folded >> 32) as u32)).wrapping_mul(0x9e37_79b9);
    hash >> (32 - REPLY_CACHE_SLOTS.trailing_zeros())
}

/// Slots of the flow gate (a power of two; u32 each, 4 MiB): for each
/// slot, until when a flow hashed there may be fresh. The egress program
/// opens a flow's slot whenever it enters or refreshes the flow, until
/// later than the flow's own idle time can run, and the XDP program asks
/// the flow maps only behind an open slot: a stranger's packet (nearly
/// always a closed slot) skips the hash lookup. A slot only ever opens
/// too much (a colliding flow's time, [`FLOW_GATE_ALWAYS`]), which costs
/// a lookup, never a reply. The slots are split by idle time (TCP, UDP,
/// SCTP, the rest), so flows sharing a slot write the same span and a
/// write racing another on a second CPU cannot shorten it by more than
/// [`FLOW_GATE_SLACK_JIFFIES`].
pub const FLOW_GATE_SLOTS: u32 = 1 << 20;
/// A slot that never closes: the flows userspace enters (the socket table
/// at start, tests), whose time it cannot write in jiffies. The egress
/// program leaves such a slot as it is.
pub const FLOW_GATE_ALWAYS: u32 = u32::MAX;
/// Jiffies a slot stays open beyond its flow's idle time.
pub const FLOW_GATE_SLACK_JIFFIES: u64 = 1024;
/// The shortest a jiffy lasts: 1 ms (HZ is at most 1000); a slot's span
/// counted in jiffies of this length lasts at least as long as the flow.
pub const TICK_MIN_NS: u64 = 1_000_000;

/// The flow gate's slot of a flow, from its addresses folded to 64 bits
/// (an IPv4 address as is, an IPv6 key's two words XORed), its ports as
/// the flow maps key them and its protocol.
#[inline(always)]
pub fn flow_gate_slot(remote: u64, local: u64, ports: u32, proto: u32) -> u32 {
    let mut h = ((remote as u32) ^ ((remote >> 32) as u32)).wrapping_mul(0x9e37_79b9);
    h = (h ^ ports).wrapping_mul(0x85eb_ca6b);
    h = (h ^ (local as u32) ^ ((local >> 32) as u32)).wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    let class: u32 = match proto {
        6 => 0,
        17 => 1,
        132 => 2,
        _ => 3,
    };
    let bits = FLOW_GATE_SLOTS.trailing_zeros() - 2;
    (class << bits) | (h & ((1 << bits) - 1))
}

impl FlowKeyV4 {
    /// This flow's slot of the flow gate.
    #[inline(always)]
    pub fn gate_slot(&self) -> u32 {
        flow_gate_slot(
            u64::from(self.remote),
            u64::from(self.local),
            self.ports,
            self.proto,
        )
    }
}

impl FlowKey {
    /// This flow's slot of the flow gate.
    #[inline(always)]
    pub fn gate_slot(&self) -> u32 {
        flow_gate_slot(
            self.remote[0] ^ self.remote[1],
            self.local[0] ^ self.local[1],
            self.ports,
            self.proto,
        )
    }
}

/// The slot value the egress program writes for a flow of `proto` entered
/// or refreshed at `now_jiffies`: open for longer than the flow's idle
/// time with any HZ, never 0 (a slot never written) nor
/// [`FLOW_GATE_ALWAYS`].
#[inline(always)]
pub fn flow_gate_until(now_jiffies: u64, proto: u32) -> u32 {
    let until = now_jiffies + flow_idle_ns(proto) / TICK_MIN_NS + 1 + FLOW_GATE_SLACK_JIFFIES;
    match until as u32 {
        0 | FLOW_GATE_ALWAYS => 1,
        u => u,
    }
}

/// Whether a flow gate slot holding `value` is open at `now_jiffies`. A
/// value left behind by more than 2^31 jiffies reads as open again: a
/// lookup, never a lost reply.
#[inline(always)]
pub fn flow_gate_open(value: u32, now_jiffies: u64) -> bool {
    value != 0 && (value == FLOW_GATE_ALWAYS || value.wrapping_sub(now_jiffies as u32) as i32 > 0)
}

/// `CONFIRM` slot holding the token of the process waiting for a
/// confirmation (0: nothing waits).
pub const CONFIRM_PENDING: u32 = 0;
/// `CONFIRM` slot `sipwall confirm` writes that token into.
pub const CONFIRM_GIVEN: u32 = 1;

/// How many IPv6 extension headers the parser walks before it gives up and
/// counts the packet as malformed.
pub const MAX_IPV6_EXT_HEADERS: u32 = 8;
/// How many IPsec AH headers the parser walks after an IPv4 header; a
/// packet with more is malformed.
pub const MAX_IPV4_AH_HEADERS: u32 = 2;
/// How many VLAN tags the parser walks; a frame with more is malformed.
pub const MAX_VLAN_TAGS: u32 = 2;

/// Asserts at compile time that a map value type has exactly the size of
/// its fields (no padding the two sides could read differently) and is a
/// multiple of 8 bytes (the kernel rounds map values up to 8).
macro_rules! assert_pod_size {
    ($ty:ty, $size:expr) => {
        const _: () = assert!(core::mem::size_of::<$ty>() == $size);
        const _: () = assert!(core::mem::size_of::<$ty>().is_multiple_of(8));
    };
}
assert_pod_size!(Counter, 16);
assert_pod_size!(
    Policy,
    4 + 4
        + 4
        + 4
        + 8
        + 4 * 8
        + 8
        + INLINE_PREFIXES * 8
        + INLINE_PREFIXES * 32
        + PORT_WORDS * 8
        + 8
        + MAX_STRICT_RULES * 40
        + RULE_PORT_WORDS * 8
);
assert_pod_size!(StrictRule, 40);
assert_pod_size!(
    EgressPolicy,
    16 + MAX_EGRESS_RULES * 40 + MAX_DNS_ENTRIES * 40 + 2 * RULE_PORT_WORDS * 8
);
assert_pod_size!(FlowKey, 40);
assert_pod_size!(FlowKeyV4, 16);
assert_pod_size!(FlowSeen, 8);
assert_pod_size!(ReplySlot, 48);
assert_pod_size!(HostSlot, 4 + 4 + 32);
assert_pod_size!(DeniedSlot, 16 + 8 + 8 + 8);
assert_pod_size!(DeniedBlock, DENIED_BLOCK_SLOTS as usize * 40);
const _: () = assert!(DENIED_CACHE_SLOTS.is_multiple_of(DENIED_BLOCK_SLOTS));
const _: () = assert!(core::mem::size_of::<DeniedBlock>() <= 32 * 1024);
assert_pod_size!(LogBucket, 16);
assert_pod_size!(RateState, 24);
assert_pod_size!(RateSlot, 40);
assert_pod_size!(BanEntry, 16);
assert_pod_size!(CoarseClock, 24);
assert_pod_size!(InsertBudget, 16);
assert_pod_size!(AttachInfo, 4 * 4 + 8);
// Keys, not values: no padding, no rounding needed.
const _: () = assert!(core::mem::size_of::<SourceKey>() == 16);
const _: () = assert!(core::mem::size_of::<DropKey>() == 24);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all are repr(C), without padding (sizes asserted above), and
    // valid for any bit pattern.
    unsafe impl aya::Pod for super::Counter {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Policy {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SourceKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::DropKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::LogBucket {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::DeniedSlot {}
    // SAFETY: as above (an array of `DeniedSlot`).
    unsafe impl aya::Pod for super::DeniedBlock {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::HostSlot {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::AttachInfo {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::RateState {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::BanEntry {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::RateSlot {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::StrictRule {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::EgressPolicy {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FlowKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FlowKeyV4 {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FlowSeen {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ReplySlot {}
}

/// What userspace records about an attachment, in the pinned `INFO` map
/// (bpffs holds no plain files). Never read by the XDP program.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AttachInfo {
    /// [`ATTACH_MAGIC`]: these pins are sipwall's.
    pub magic: u32,
    /// [`PIN_LAYOUT_VERSION`] of the sipwall that made the pins.
    pub layout_version: u32,
    pub ifindex: u32,
    /// The [`XdpMode`] attached in, as its `u32`.
    pub mode: u32,
    /// Seconds since the epoch of the first attach.
    pub attached_at: u64,
}

pub const ATTACH_MAGIC: u32 = 0x5349_5057; // "SIPW"
/// Bumped whenever a map's layout or where pins live changes; pins of
/// another version are refused rather than misread. 4: pins moved from
/// `<root>/<iface>/` to `<root>/netns-<INODE>/<iface>/` (maps unchanged, so
/// layout-3 pins are adopted by moving them). 5: the abuse controls' maps
/// (ban set, rate-limit buckets) and the rate limits in [`Policy`]. 6:
/// strict mode (the policy holds rules and provider media ports; FLOWS and
/// CONFIRM maps; dropped sources keyed by reason): older pins are refused.
/// 7: FLOWS split into FLOWS_V4 (16-byte keys) and FLOWS_V6, with the
/// reply cache (`REPLY_CACHE`) in front of them. 8: strict egress
/// (OUT_COUNTERS, EGRESS_POLICY, EGRESS_SCRATCH maps). 9: the ban gate's
/// host bitmap (`BAN_GATE` grew), the `CLOCK` and `DENIED_BUDGET` maps.
/// 10: `DENIED_CACHE` holds blocks of slots ([`DeniedBlock`]). 11:
/// [`FLAG_L3`] in the policy (which every install must keep: an older
/// sipwall would drop it and the programs would misread an L3 device's
/// frames), the reply cache's keys carry the address family. 12: the
/// capture's maps (`capture::maps`). 13: the flow gate (`FLOW_GATE`),
/// which must know every flow of the flow maps; the rules' port bitmaps
/// in [`Policy`] and [`EgressPolicy`]; the egress program's cache of
/// flows it learnt (`LEARNT_CACHE`).
pub const PIN_LAYOUT_VERSION: u32 = 13;

/// How the XDP program is attached to its interface. Kept in [`AttachInfo`]
/// as its `u32` value (map values hold no enums).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum XdpMode {
    /// In the driver, before an skb is allocated.
    Native = 1,
    /// Generic XDP, after the skb is built: works everywhere, slower.
    Skb = 2,
    /// Offloaded to the NIC.
    Hw = 3,
}

impl XdpMode {
    /// The mode's name in output, JSON and metrics labels.
    pub const fn name(self) -> &'static str {
        match self {
            XdpMode::Native => "native",
            XdpMode::Skb => "skb",
            XdpMode::Hw => "hw",
        }
    }

    /// The mode stored as `value`, if it is one.
    pub const fn from_u32(value: u32) -> Option<XdpMode> {
        match value {
            1 => Some(XdpMode::Native),
            2 => Some(XdpMode::Skb),
            3 => Some(XdpMode::Hw),
            _ => None,
        }
    }

    /// Name of a stored mode value; "unknown" when it is none.
    pub const fn name_of(value: u32) -> &'static str {
        match XdpMode::from_u32(value) {
            Some(mode) => mode.name(),
            None => "unknown",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flow gate never closes before its flow's idle time is up, with
    /// any HZ Linux has, and never reads a slot never written as open.
    #[test]
    fn a_flow_gate_slot_outlasts_its_flow() {
        for hz in [100u64, 250, 300, 1000] {
            let tick_ns = 1_000_000_000 / hz;
            for proto in [6u32, 17, 132, 1, 58] {
                // Jiffies start 5 minutes before the 32-bit wrap.
                for start in [0u64, (1 << 32) - 300 * hz, 1 << 40] {
                    let until = flow_gate_until(start, proto);
                    let idle_ticks = flow_idle_ns(proto).div_ceil(tick_ns);
                    assert!(flow_gate_open(until, start));
                    assert!(flow_gate_open(until, start + idle_ticks));
                    assert!(!flow_gate_open(0, start + idle_ticks));
                }
            }
        }
    }

    #[test]
    fn a_closed_flow_gate_slot_reads_closed() {
        let until = flow_gate_until(1_000, 17);
        assert!(!flow_gate_open(until, 1_000 + (1 << 20)));
        assert!(flow_gate_open(FLOW_GATE_ALWAYS, 12_345));
    }

    #[test]
    fn the_flow_gate_slot_is_the_same_from_both_keys() {
        let v4 = FlowKeyV4 {
            remote: 0x0a00_0001,
            local: 0x0a00_0002,
            ports: 0x01bb_9c41,
            proto: 6,
        };
        assert_eq!(
            v4.gate_slot(),
            flow_gate_slot(0x0a00_0001, 0x0a00_0002, 0x01bb_9c41, 6)
        );
        assert!(v4.gate_slot() < FLOW_GATE_SLOTS);
        let v6 = FlowKey {
            remote: [1, 2],
            local: [3, 4],
            ports: 7,
            proto: 17,
        };
        assert_eq!(v6.gate_slot(), flow_gate_slot(1 ^ 2, 3 ^ 4, 7, 17));
        assert!(v6.gate_slot() < FLOW_GATE_SLOTS);
    }

    /// Every port an entry covers has its bit; the bitmap may say yes to
    /// more ports, never no to one of them.
    #[test]
    fn rule_port_bits_cover_every_ruled_port() {
        let entry = |first: u16, last: u16| StrictRule {
            proto: 6,
            port_first: first,
            port_last: last,
            net: [0; 2],
            mask: [0; 2],
        };
        let entries = [entry(22, 22), entry(8000, 8100), entry(65535, 65535)];
        let bits = rule_ports(&entries);
        for e in &entries {
            for port in e.port_first..=e.port_last {
                assert!(rule_port(&bits, port), "port {port}");
            }
        }
        assert!(!rule_port(&bits, 443));
        assert!(!rule_port(&bits, 40000));
        let all = rule_ports(&[entry(0, 65535)]);
        assert!((0..=65535u16).all(|p| rule_port(&all, p)));
        assert!(!rule_port(&rule_ports(&[]), 22));
    }
}
