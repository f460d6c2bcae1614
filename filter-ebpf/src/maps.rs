//! Every map the program uses. Userspace finds them by these names (see
//! `filter_common::maps`) and pins them, so counters and allowlists outlive
//! both the tool and a program upgrade.
use aya_ebpf::{
    bindings::BPF_F_MMAPABLE,
    macros::map,
    maps::{Array, LpmTrie, LruHashMap, LruPerCpuHashMap, PerCpuArray},
};
use filter_common::{
    maps::{ALLOW_V4_MAX, ALLOW_V6_MAX, DENIED_MAX, FLOWS_MAX},
    Counter, DeniedSlot, FlowKey, FlowKeyV4, FlowSeen, HostSlot, LogBucket, Policy, ReplySlot,
    SourceKey, DENIED_CACHE_SLOTS, DIRECT_WORDS, REASON_COUNT, REPLY_CACHE_SLOTS, V4_HOST_SLOTS,
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

/// Denied signalling sources, per address, least recently seen evicted.
#[map]
pub static DENIED: LruPerCpuHashMap<SourceKey, Counter> =
    LruPerCpuHashMap::with_max_entries(DENIED_MAX, 2);

/// Token bucket that limits how many denied sources each CPU logs.
#[map]
pub static LOG_BUCKET: PerCpuArray<LogBucket> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU direct-mapped cache in front of `DENIED`: a denied packet from a
/// source in its slot costs an array access instead of a hash lookup. A
/// source that takes the slot of another flushes that one into `DENIED`.
/// Userspace adds both when it reports denied sources.
#[map]
pub static DENIED_CACHE: PerCpuArray<DeniedSlot> =
    PerCpuArray::with_max_entries(DENIED_CACHE_SLOTS, 0);

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

/// Per-CPU direct-mapped cache in front of the flow maps for the XDP program: a
/// reply of a flow in its slot costs an array read and a compare instead
/// of a hash lookup and a clock helper (see `filter_common::ReplySlot`).
/// Per CPU, so no slot is ever written by two CPUs at once.
#[map]
pub static REPLY_CACHE: PerCpuArray<ReplySlot> =
    PerCpuArray::with_max_entries(REPLY_CACHE_SLOTS, 0);
