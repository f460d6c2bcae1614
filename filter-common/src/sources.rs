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

/// One slot of the per-CPU cache of dropped IPv4 sources (`DENIED_CACHE_V4`),
/// a quarter of a [`DeniedSlot`]'s 40 bytes that an IPv6 source needs: in a
/// flood from hundreds of sources each packet touches its source's slot,
/// and the smaller table stays in the CPU's cache (the 40-byte slots cost a
/// flood about 2 ns a packet more). `tag` holds the source, the reason and
/// the packets (see [`denied_v4_tag`]); an empty slot has no packets.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeniedSlotV4 {
    pub tag: u64,
    pub bytes: u64,
}

/// `DeniedSlotV4::tag`'s packets start at this bit: below them the address
/// (its 4 bytes in packet order as a native u32) and the reason's `u32`
/// (8 bits).
pub const DENIED_V4_PACKETS_SHIFT: u32 = 40;
/// One packet in a tag.
pub const DENIED_V4_PACKET: u64 = 1 << DENIED_V4_PACKETS_SHIFT;
/// The source and reason bits of a tag.
pub const DENIED_V4_ID_MASK: u64 = DENIED_V4_PACKET - 1;
/// The most packets a tag's 24 bits count.
pub const DENIED_V4_MAX_PACKETS: u64 = u64::MAX >> DENIED_V4_PACKETS_SHIFT;
/// A slot whose tag reaches this holds that many: its counts go to
/// `DENIED` and the slot starts again.
pub const DENIED_V4_FULL: u64 = DENIED_V4_MAX_PACKETS << DENIED_V4_PACKETS_SHIFT;

/// The source and reason of a [`DeniedSlotV4`] tag, without packets:
/// `addr` as the packet holds it (native u32 of its bytes in order).
#[inline(always)]
pub fn denied_v4_id(addr: u32, reason: u32) -> u64 {
    u64::from(addr) | u64::from(reason & 0xff) << 32
}

/// A slot's tag: source, reason and packets.
#[inline(always)]
pub fn denied_v4_tag(addr: u32, reason: u32, packets: u64) -> u64 {
    denied_v4_id(addr, reason) | packets << DENIED_V4_PACKETS_SHIFT
}

/// A tag's source (packet order), reason and packets.
#[inline(always)]
pub fn denied_v4_parts(tag: u64) -> (u32, u32, u64) {
    (
        tag as u32,
        (tag >> 32) as u32 & 0xff,
        tag >> DENIED_V4_PACKETS_SHIFT,
    )
}

/// Slots of the IPv4 cache (a power of two): 32 KiB, the most one per-CPU
/// value holds. One value, so that the program finds it at a constant
/// index, without waiting for the source's hash to pick a block.
pub const DENIED_V4_SLOTS: u32 = 2048;

/// The IPv4 cache: the one value of its map.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DeniedCacheV4 {
    pub slots: [DeniedSlotV4; DENIED_V4_SLOTS as usize],
}

/// The slot of the IPv4 cache for `addr` (packet order) dropped as `reason`.
#[inline(always)]
pub fn denied_v4_slot(addr: u32, reason: u32) -> u32 {
    (addr ^ reason).wrapping_mul(0x9e37_79b9) >> (32 - DENIED_V4_SLOTS.trailing_zeros())
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
