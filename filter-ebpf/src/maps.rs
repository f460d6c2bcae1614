//! Every map the program uses. Userspace finds them by these names (see
//! `filter_common::maps`) and pins them, so counters and allowlists outlive
//! both the tool and a program upgrade.
use aya_ebpf::{
    bindings::{BPF_F_MMAPABLE, BPF_F_NO_PREALLOC},
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, LruPerCpuHashMap, PerCpuArray},
};
use filter_common::{
    maps::{ALLOW_V4_MAX, ALLOW_V6_MAX, BAN_MAX, DENIED_MAX, FLOWS_MAX, RATE_MAX},
    BanEntry, CoarseClock, Counter, DeniedBlock, DropKey, EgressPolicy, FlowKey, FlowKeyV4,
    FlowSeen, HostSlot, InsertBudget, LogBucket, Policy, RateSlot, RateState, ReplySlot, SourceKey,
    BAN_GATE_LEN, DENIED_CACHE_BLOCKS, DIRECT_WORDS, FLOW_GATE_SLOTS, OUT_REASON_COUNT,
    RATE_CACHE_SLOTS, REASON_COUNT, REPLY_CACHE_SLOTS, V4_HOST_SLOTS,
};

/// Packets and bytes per reason, per CPU.
#[map]
pub static COUNTERS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(REASON_COUNT, 0);

/// The active generation (0 or 1): which `POLICY` entry and which pair of
/// allowlist tries packets are judged by. Userspace fills the other
/// generation, then flips this one word.
#[map]
pub static ACTIVE: Array<u32> = Array::with_max_entries(1, 0);

/// Ports, RTP range and flags of each generation.
#[map]
pub static POLICY: Array<Policy> = Array::with_max_entries(2, 0);

/// IPv4 allowlist as the program reads it when it is too long to be inline:
/// two bits per /24 network, one half per generation (see
/// `filter_common::DIRECT_WORDS`). Userspace maps it and writes the
/// inactive half in one go.
#[map]
pub static V4_DIRECT: Array<u64> = Array::with_max_entries(2 * DIRECT_WORDS, BPF_F_MMAPABLE);

/// IPv6 allowlist by the first 24 bits of the source, laid out like
/// `V4_DIRECT`: a partial entry sends the lookup on to the trie.
#[map]
pub static V6_DIRECT: Array<u64> = Array::with_max_entries(2 * DIRECT_WORDS, BPF_F_MMAPABLE);

/// Allowed hosts of the /24 networks the direct table marks partial, one
/// half per generation, placed by userspace (see `filter_common::HostSlot`).
#[map]
pub static V4_HOSTS: Array<HostSlot> = Array::with_max_entries(2 * V4_HOST_SLOTS, BPF_F_MMAPABLE);

/// IPv4 signalling allowlist of generation 0, as userspace wrote it (the
/// record `allow list` reads back; packets are judged by `V4_DIRECT`).
#[map]
pub static ALLOW_V4_0: LpmTrie<[u8; 4], u8> = LpmTrie::with_max_entries(ALLOW_V4_MAX, 0);
/// IPv4 signalling allowlist of generation 1, as userspace wrote it.
#[map]
pub static ALLOW_V4_1: LpmTrie<[u8; 4], u8> = LpmTrie::with_max_entries(ALLOW_V4_MAX, 0);
/// IPv6 signalling allowlist of generation 0.
#[map]
pub static ALLOW_V6_0: LpmTrie<[u8; 16], u8> = LpmTrie::with_max_entries(ALLOW_V6_MAX, 0);
/// IPv6 signalling allowlist of generation 1.
#[map]
pub static ALLOW_V6_1: LpmTrie<[u8; 16], u8> = LpmTrie::with_max_entries(ALLOW_V6_MAX, 0);

/// Sources of dropped packets, per address and drop reason, least
/// recently seen evicted.
#[map]
pub static DENIED: LruPerCpuHashMap<DropKey, Counter> =
    LruPerCpuHashMap::with_max_entries(DENIED_MAX, 2);

/// Token bucket that limits how many denied sources each CPU logs.
#[map]
pub static LOG_BUCKET: PerCpuArray<LogBucket> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU direct-mapped cache in front of `DENIED`: a denied packet from a
/// source in its slot costs an array access instead of a hash lookup. A
/// source that takes the slot of another flushes that one into `DENIED`.
/// Userspace adds both when it reports denied sources.
#[map]
pub static DENIED_CACHE: PerCpuArray<DeniedBlock> =
    PerCpuArray::with_max_entries(DENIED_CACHE_BLOCKS, 0);

/// Each CPU's budget of new sources for `DENIED` in the current tick
/// (see `filter_common::DENIED_INSERTS_PER_TICK`).
#[map]
pub static DENIED_BUDGET: PerCpuArray<InsertBudget> = PerCpuArray::with_max_entries(1, 0);

/// Token bucket of each allowed signalling source (see
/// `filter_common::RateState`), shared by all CPUs, least recently seen
/// evicted. Only read when `[signalling] rate_limit` is set.
#[map]
pub static SIP_RATE: LruHashMap<SourceKey, RateState> = LruHashMap::with_max_entries(RATE_MAX, 0);

/// Token bucket of each media source, when `[media] rate_limit` is set.
#[map]
pub static RTP_RATE: LruHashMap<SourceKey, RateState> = LruHashMap::with_max_entries(RATE_MAX, 0);

/// Direct-mapped cache in front of `SIP_RATE`, shared by all CPUs: a
/// source in its slot costs an array read instead of a hash lookup (see
/// `filter_common::RateSlot`).
#[map]
pub static SIP_RATE_CACHE: Array<RateSlot> = Array::with_max_entries(RATE_CACHE_SLOTS, 0);

/// The same in front of `RTP_RATE`.
#[map]
pub static RTP_RATE_CACHE: Array<RateSlot> = Array::with_max_entries(RATE_CACHE_SLOTS, 0);

/// The IPv4 ban prefixes shorter than /32, with each entry's expiry.
/// Written live by `sipwall ban`, not per generation; outlives re-attach
/// like the rest.
#[map]
pub static BAN_V4: LpmTrie<[u8; 4], BanEntry> = LpmTrie::with_max_entries(BAN_MAX, 0);

/// The IPv6 ban prefixes shorter than /128.
#[map]
pub static BAN_V6: LpmTrie<[u8; 16], BanEntry> = LpmTrie::with_max_entries(BAN_MAX, 0);

/// Banned IPv4 addresses (/32), keyed by the address as the packet holds
/// it: the record of them (`ban list`), which the program asks only for
/// an address `BAN_SLOTS_V4` had no room for. Allocated as filled.
#[map]
pub static BAN_HOSTS_V4: HashMap<u32, BanEntry> =
    HashMap::with_max_entries(BAN_MAX, BPF_F_NO_PREALLOC);

/// Banned IPv6 addresses (/128), keyed by the parser's two words: the
/// record, asked only for an address `BAN_SLOTS_V6` had no room for.
#[map]
pub static BAN_HOSTS_V6: HashMap<[u64; 2], BanEntry> =
    HashMap::with_max_entries(BAN_MAX, BPF_F_NO_PREALLOC);

/// Two bits per first 24 bits of an address, IPv4 half then IPv6 half
/// (`filter_common::BAN_GATE_WORDS` words each): where single addresses
/// and where prefixes are banned, so that every other source costs one
/// array read; then one bit per banned single address
/// (`filter_common::BAN_HOST_WORDS`), so that its neighbours cost one more.
#[map]
pub static BAN_GATE: Array<u64> = Array::with_max_entries(BAN_GATE_LEN, BPF_F_MMAPABLE);

/// The single banned IPv4 addresses in buckets of one cache line
/// (`filter_common::BAN_SLOT_BUCKETS`), then the overflow bucket: what
/// the program looks a banned-looking IPv4 source up in first.
#[map]
pub static BAN_SLOTS_V4: Array<filter_common::BanBucket> =
    Array::with_max_entries(filter_common::BAN_SLOT_LEN, BPF_F_MMAPABLE);

/// The same for the single banned IPv6 addresses
/// (`filter_common::BAN_SLOT_BUCKETS_V6`), then the overflow bucket.
#[map]
pub static BAN_SLOTS_V6: Array<filter_common::BanBucketV6> =
    Array::with_max_entries(filter_common::BAN_SLOT_LEN_V6, BPF_F_MMAPABLE);

/// Each CPU's copy of the coarse clock, by jiffy (see `clock.rs`).
#[map]
pub static CLOCK: PerCpuArray<CoarseClock> = PerCpuArray::with_max_entries(1, 0);

/// A policy applied with `--confirm` waiting for `sipwall confirm`: the
/// waiting process's token and the one `confirm` writes back. Userspace
/// only; pinned with the rest so that `confirm` finds it.
#[map]
pub static CONFIRM: Array<u64> = Array::with_max_entries(2, 0);

/// The host's own IPv4 flows, entered by the TC egress program from
/// outgoing packets and looked up by the XDP program for strict mode's
/// `reply` (and seeded by userspace from the socket table when strict mode
/// starts). Shared by all CPUs: a flow's packets leave on one CPU and its
/// answers arrive on another. Least recently used entries are evicted.
#[map]
pub static FLOWS_V4: LruHashMap<FlowKeyV4, FlowSeen> = LruHashMap::with_max_entries(FLOWS_MAX, 0);

/// The host's own IPv6 flows, as `FLOWS_V4`.
#[map]
pub static FLOWS_V6: LruHashMap<FlowKey, FlowSeen> = LruHashMap::with_max_entries(FLOWS_MAX, 0);

/// The flow gate in front of `FLOWS_V4` and `FLOWS_V6` (see
/// `filter_common::flow_gate_slot`): the egress program opens a flow's
/// slot when it enters or refreshes the flow, userspace when it enters
/// one; the XDP program looks a flow up only behind an open slot. Shared
/// by all CPUs, as the flow maps.
#[map]
pub static FLOW_GATE: Array<u32> = Array::with_max_entries(FLOW_GATE_SLOTS, 0);

/// Per-CPU direct-mapped cache of the flows the egress program found or
/// wrote in the flow maps lately, each until its time there is due to be
/// rewritten: a flow found there is not looked up again. Slots as
/// `REPLY_CACHE`'s.
#[map]
pub static LEARNT_CACHE: PerCpuArray<ReplySlot> =
    PerCpuArray::with_max_entries(REPLY_CACHE_SLOTS, 0);

/// Per-CPU direct-mapped cache in front of the flow maps for the XDP program: a
/// reply of a flow in its slot costs an array read and a compare instead
/// of a hash lookup and a clock helper (see `filter_common::ReplySlot`).
/// Per CPU, so no slot is ever written by two CPUs at once.
#[map]
pub static REPLY_CACHE: PerCpuArray<ReplySlot> =
    PerCpuArray::with_max_entries(REPLY_CACHE_SLOTS, 0);

/// Packets and bytes per egress reason (`OutReason`), per CPU: what the TC
/// egress program decided about outgoing packets in strict egress.
#[map]
pub static OUT_COUNTERS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(OUT_REASON_COUNT, 0);

/// Strict egress's own rules of each generation (`[[egress.allow]]`,
/// `[egress] dns`, the mode), beside `POLICY` and switched by the same
/// `ACTIVE` word.
#[map]
pub static EGRESS_POLICY: Array<EgressPolicy> = Array::with_max_entries(2, 0);

/// One `egress_policy::Headers` per CPU: what the egress program's
/// parsing (a global function, see `sipwall_egress_parse`) hands back to
/// it. Scratch space, rewritten for every packet.
#[map]
pub static EGRESS_SCRATCH: PerCpuArray<crate::egress_policy::Headers> =
    PerCpuArray::with_max_entries(1, 0);

/// The capture running on this interface and its filter (one entry; `on`
/// is 0 while none runs).
#[map]
pub static CAPTURE: Array<filter_common::capture::CaptureFilter> = Array::with_max_entries(1, 0);

/// Per CPU: the capture's rate-cap window and its counts.
#[map]
pub static CAPTURE_STATS: PerCpuArray<filter_common::capture::CaptureStats> =
    PerCpuArray::with_max_entries(1, 0);

/// The samples of a running capture, read by `sipwall capture`.
#[map]
pub static CAPTURE_RING: aya_ebpf::maps::RingBuf =
    aya_ebpf::maps::RingBuf::with_byte_size(filter_common::capture::RING_BYTES, 0);

/// Calls mode's pinholes, `filter_common::media::PINHOLE_WAYS` slots per
/// local UDP port: an array, so the lookup is an index (inlined by the
/// verifier) and a compare, not a hash. Shared by all CPUs; written by
/// userspace, refreshed by the XDP program (see `media.rs`).
#[map]
pub static PINHOLES: Array<filter_common::media::Pinhole> =
    Array::with_max_entries(filter_common::media::PINHOLE_SLOTS, BPF_F_MMAPABLE);

/// Media packets per `PINHOLES` slot, per CPU (for `pinhole list`).
#[map]
pub static PINHOLE_PACKETS: PerCpuArray<u64> =
    PerCpuArray::with_max_entries(filter_common::media::PINHOLE_SLOTS, 0);

/// Copies of signalling for the reader in `sipwall run` (calls mode).
#[map]
pub static SIGNALLING_COPIES: aya_ebpf::maps::RingBuf =
    aya_ebpf::maps::RingBuf::with_byte_size(filter_common::media::COPY_RING_BYTES, 0);

/// The reader's heartbeat (one entry).
#[map]
pub static MEDIA_STATE: Array<filter_common::media::MediaState> = Array::with_max_entries(1, 0);

/// Per CPU: signalling copies written and lost.
#[map]
pub static MEDIA_STATS: PerCpuArray<filter_common::media::MediaStats> =
    PerCpuArray::with_max_entries(1, 0);

/// The Call-ID of each call that has pinholes, by the pinholes' `call`.
/// Userspace only; pinned with the rest so that a restarted reader finds
/// its calls.
#[map]
pub static CALL_IDS: HashMap<u32, filter_common::media::CallId> =
    HashMap::with_max_entries(filter_common::media::CALL_IDS_MAX, BPF_F_NO_PREALLOC);
