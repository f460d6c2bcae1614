//! How the allowlist is laid out for the program: inline prefixes, the
//! direct table of /24s and the host maps behind it.

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
