//! The ban set: its entries and the gate in front of them.

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

/// The single banned IPv4 addresses again, as the program looks them up:
/// an array of buckets of one cache line each, [`BAN_SLOT_WAYS`] (address,
/// expiry) pairs, every address in one of two buckets ([`ban_buckets_v4`]).
/// Two array reads and a few compares, where the hash `BAN_HOSTS_V4` costs
/// a hash of the key and a walk of its chain (about 5 ns a banned packet,
/// more with 100,000 bans). The hash stays the record (`ban list`), and
/// the answer when an address found no room here: then the overflow
/// bucket's first word is set, and a miss here asks the hash.
pub const BAN_SLOT_BUCKETS: u32 = 1 << 16;
pub const BAN_SLOT_WAYS: usize = 4;
/// Entries of the slot array: the buckets, then the overflow bucket.
pub const BAN_SLOT_LEN: u32 = BAN_SLOT_BUCKETS + 1;
/// A bucket: word `2i` the address's tag ([`ban_slot_tag`]; 0 empty), word
/// `2i + 1` its `BanEntry::effective_ns` (0 while the way is rewritten:
/// the program takes it for a miss).
pub type BanBucket = [u64; 2 * BAN_SLOT_WAYS];

/// The single banned IPv6 addresses again, as [`BAN_SLOT_BUCKETS`] holds
/// the IPv4 ones: buckets of one cache line, each of [`BAN_SLOT_WAYS_V6`]
/// ways of four words (the address as the program holds it, two native
/// words of its bytes in packet order; its `BanEntry::effective_ns`, never
/// 0 in a used way; a zero word), every address in one of two buckets
/// ([`ban_buckets_v6`]). The hash `BAN_HOSTS_V6` stays the record and the
/// answer for an address that found no room (the overflow bucket's first
/// word set), as for IPv4.
pub const BAN_SLOT_BUCKETS_V6: u32 = 1 << 16;
pub const BAN_SLOT_WAYS_V6: usize = 2;
/// Entries of the IPv6 slot array: the buckets, then the overflow bucket.
pub const BAN_SLOT_LEN_V6: u32 = BAN_SLOT_BUCKETS_V6 + 1;
/// A bucket of the IPv6 slot array: way `i` at words `4i..4i + 4`.
pub type BanBucketV6 = [u64; 4 * BAN_SLOT_WAYS_V6];

/// The two buckets an IPv6 address (its 16 bytes in packet order, read as
/// two native u64 words, as the program holds it) may sit in.
#[inline(always)]
pub fn ban_buckets_v6(w0: u64, w1: u64) -> (u32, u32) {
    // A full 64-bit mix (MurmurHash3's finalizer): addresses that differ
    // in a few low bits, as a prefix's hosts do, land far apart, and the
    // two buckets come from different bits of it.
    let mut h = w0 ^ w1.rotate_left(32);
    h = (h ^ (h >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    h = (h ^ (h >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    let bits = BAN_SLOT_BUCKETS_V6.trailing_zeros();
    ((h >> (64 - bits)) as u32, (h as u32) >> (32 - bits))
}

/// The two buckets an IPv4 address (its 4 bytes in packet order, read as
/// a native u32, as the program holds it) may sit in.
#[inline(always)]
pub fn ban_buckets_v4(addr: u32) -> (u32, u32) {
    let shift = 32 - BAN_SLOT_BUCKETS.trailing_zeros();
    (
        addr.wrapping_mul(0x9e37_79b9) >> shift,
        (addr ^ 0x5bd1_e995).wrapping_mul(0x85eb_ca6b) >> shift,
    )
}

/// An address's tag in its slot: never 0, so that 0.0.0.0 is not an
/// empty slot.
#[inline(always)]
pub fn ban_slot_tag(addr: u32) -> u64 {
    u64::from(addr) | 1 << 32
}

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
