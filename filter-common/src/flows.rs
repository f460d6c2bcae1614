//! The host's flows, shared by both programs: their keys and idle times,
//! the XDP program's reply cache and the flow gate in front of the maps.

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
