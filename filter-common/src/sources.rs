//! The sources of dropped packets: the per-CPU cache in front of
//! `DENIED`, its insert budget, and the keys of the per-source maps.

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
