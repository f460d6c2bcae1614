//! Rate limits and the clock they read, the kernel log's limiter, and
//! how far the parser walks.

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

/// How many IPv6 extension headers the parser walks before it gives up and
/// counts the packet as malformed.
pub const MAX_IPV6_EXT_HEADERS: u32 = 8;
/// How many IPsec AH headers the parser walks after an IPv4 header; a
/// packet with more is malformed.
pub const MAX_IPV4_AH_HEADERS: u32 = 2;
/// How many VLAN tags the parser walks; a frame with more is malformed.
pub const MAX_VLAN_TAGS: u32 = 2;
