//! Map names (as the ELF object names them) and their sizes. The
//! `#[map]` statics of filter-ebpf carry these names; the loader pins every
//! map the object has, and a test fails when a name here and the object
//! disagree.

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
/// Array of [`crate::BanBucket`]: the single banned IPv4 addresses in
/// buckets the program reads in one cache line
/// ([`crate::BAN_SLOT_BUCKETS`]), memory-mappable.
pub const BAN_SLOTS_V4: &str = "BAN_SLOTS_V4";
/// Array of [`crate::BanBucketV6`]: the single banned IPv6 addresses in
/// buckets the program reads in one cache line
/// ([`crate::BAN_SLOT_BUCKETS_V6`]), memory-mappable.
pub const BAN_SLOTS_V6: &str = "BAN_SLOTS_V6";
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
pub const ALL: [&str; 44] = [
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
    BAN_SLOTS_V4,
    BAN_SLOTS_V6,
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
    crate::media::maps::PINHOLES,
    crate::media::maps::PINHOLE_PACKETS,
    crate::media::maps::SIGNALLING_COPIES,
    crate::media::maps::MEDIA_STATE,
    crate::media::maps::MEDIA_STATS,
    crate::media::maps::CALL_IDS,
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
