//! The ban set (docs/policy.md, abuse controls): is a source banned now?
//!
//! One word of the gate answers "no" for every source outside the /24s a
//! ban touches, whatever the size of the set; one bit of its host bitmap
//! answers "no" for a neighbour of a banned address. Behind a set bit,
//! a single banned address is found in one of two buckets of an array
//! (`filter_common::BAN_SLOT_BUCKETS`, `BAN_SLOT_BUCKETS_V6`), or by a
//! hash lookup when it found no room there; shorter prefixes by a trie
//! lookup. The gate's checks and the buckets' stay in this function's
//! caller: a call costs a return, which the AMD CPUs' mitigations make
//! dear. Expiry is a comparison with the kernel's coarse clock, so a ban
//! ends on time (to a tick) with nothing in userspace running.
use aya_ebpf::maps::{lpm_trie::Key, LpmTrie};
use filter_common::{
    ban_buckets_v4, ban_buckets_v6, ban_host_bit_v4, ban_host_bit_v6, ban_slot_tag, BanEntry,
    BAN_GATE_HOSTS, BAN_GATE_PREFIXES, BAN_GATE_WORDS, BAN_PERMANENT, BAN_SLOT_BUCKETS,
    BAN_SLOT_BUCKETS_V6, BAN_SLOT_WAYS, BAN_SLOT_WAYS_V6,
};

use crate::{
    clock,
    maps::{BAN_GATE, BAN_HOSTS_V4, BAN_HOSTS_V6, BAN_SLOTS_V4, BAN_SLOTS_V6, BAN_V4, BAN_V6},
    parse::v4_of_key,
};

/// Whether the source (key words as the parser hands them) is banned.
#[inline(always)]
pub fn banned(v6: bool, src: [u64; 2]) -> bool {
    if v6 {
        let (hi, lo) = (u64::from_be(src[0]), u64::from_be(src[1]));
        let gate = gate(BAN_GATE_WORDS, (hi >> 40) as u32);
        if gate == 0 {
            return false;
        }
        let mut gate = hosts_filtered(gate, ban_host_bit_v6(hi, lo));
        // A single banned address in its two buckets, as for IPv4; the
        // hash behind them only when some address found no room.
        if gate & BAN_GATE_HOSTS != 0 {
            match host_slot_v6(src[0], src[1]) {
                Some(effective_ns) => return live_until(effective_ns),
                None if overflowed_v6() => {}
                None => gate &= !BAN_GATE_HOSTS,
            }
        }
        gate != 0 && banned_v6(gate, src[0], src[1])
    } else {
        let addr = v4_of_key(src);
        let gate = gate(0, addr >> 8);
        if gate == 0 {
            return false;
        }
        let gate = hosts_filtered(gate, ban_host_bit_v4(addr));
        if gate == 0 {
            return false;
        }
        // The address's 4 bytes in packet order (see `parse::v4_key`).
        let key = (src[1] >> 32) as u32;
        // A single banned address, the common ban, is looked up here, in
        // its two buckets: a call to the rare path would cost its return.
        if gate & BAN_GATE_HOSTS != 0 {
            match host_slot_v4(key) {
                Some(effective_ns) => return live_until(effective_ns),
                None if overflowed() => {
                    if let Some(entry) = BAN_HOSTS_V4.get_ptr(key) {
                        // SAFETY: a value of the map, valid during this
                        // program run; userspace replaces entries whole.
                        return live(unsafe { &*entry });
                    }
                }
                None => {}
            }
        }
        gate & BAN_GATE_PREFIXES != 0 && banned_v4_prefix(key)
    }
}

/// The expiry of a single banned IPv4 address (`addr` in packet order)
/// from its slot, if it has one.
#[inline(always)]
fn host_slot_v4(addr: u32) -> Option<u64> {
    let (first, second) = ban_buckets_v4(addr);
    let tag = ban_slot_tag(addr);
    in_bucket(first, tag).or_else(|| in_bucket(second, tag))
}

// An index loop bounded by a constant: the form the verifier follows.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
fn in_bucket(bucket: u32, tag: u64) -> Option<u64> {
    let b = BAN_SLOTS_V4.get(bucket)?;
    for i in 0..BAN_SLOT_WAYS {
        // Expiry 0 is a way being rewritten: a miss, which the overflow
        // word, set meanwhile, sends on to the hash.
        if b[2 * i] == tag && b[2 * i + 1] != 0 {
            return Some(b[2 * i + 1]);
        }
    }
    None
}

/// The expiry of a single banned IPv6 address (the parser's two words)
/// from its slot, if it has one.
#[inline(always)]
fn host_slot_v6(w0: u64, w1: u64) -> Option<u64> {
    let (first, second) = ban_buckets_v6(w0, w1);
    in_bucket_v6(first, w0, w1).or_else(|| in_bucket_v6(second, w0, w1))
}

// An index loop bounded by a constant: the form the verifier follows.
#[inline(always)]
fn in_bucket_v6(bucket: u32, w0: u64, w1: u64) -> Option<u64> {
    let b = BAN_SLOTS_V6.get(bucket)?;
    for i in 0..BAN_SLOT_WAYS_V6 {
        // A used way's expiry is never 0: an empty way (all zeros) is not
        // taken for the address `::`, nor a way being rewritten for its
        // old address.
        if b[4 * i] == w0 && b[4 * i + 1] == w1 && b[4 * i + 2] != 0 {
            return Some(b[4 * i + 2]);
        }
    }
    None
}

/// Whether some single IPv6 ban found no slot, or the ban set is being
/// rewritten: then a miss in the slots asks the hash.
#[inline(always)]
fn overflowed_v6() -> bool {
    match BAN_SLOTS_V6.get(BAN_SLOT_BUCKETS_V6) {
        Some(b) => b[0] != 0,
        None => true,
    }
}

/// Whether some single IPv4 ban found no slot (then a miss in the slots
/// asks the hash), or the ban set is being rewritten.
#[inline(always)]
fn overflowed() -> bool {
    match BAN_SLOTS_V4.get(BAN_SLOT_BUCKETS) {
        Some(b) => b[0] != 0,
        None => true,
    }
}

/// The two gate bits of `top24` in the half starting at word `half`.
#[inline(always)]
fn gate(half: u32, top24: u32) -> u64 {
    match BAN_GATE.get(half + (top24 >> 5)) {
        Some(word) => (*word >> ((top24 & 31) * 2)) & 3,
        None => 0,
    }
}

/// `gate` without its hosts bit when the address's own bit in the host
/// bitmap is clear: no single ban names it.
#[inline(always)]
fn hosts_filtered(gate: u64, (word, bit): (u32, u32)) -> u64 {
    if gate & BAN_GATE_HOSTS == 0 {
        return gate;
    }
    match BAN_GATE.get(word) {
        Some(w) if (*w >> bit) & 1 != 0 => gate,
        _ => gate & !BAN_GATE_HOSTS,
    }
}

// The tries' keys, built from 4-byte words at 4-byte-aligned offsets of an
// 8-byte-aligned buffer, as the allowlist's IPv6 key is.
#[repr(C, align(8))]
struct V4Key {
    prefix_len: u32,
    data: u32,
}

#[repr(C, align(8))]
struct V6Key {
    prefix_len: u32,
    data: [u32; 4],
}

/// The rare path: a /24 some shorter ban prefix covers; the address
/// comes in a register.
#[inline(never)]
fn banned_v4_prefix(addr: u32) -> bool {
    let key = V4Key {
        prefix_len: 32,
        data: addr,
    };
    // SAFETY: `Key<[u8; 4]>` is a packed u32 and 4 bytes, the layout of
    // `V4Key`'s first 8 bytes.
    let key = unsafe { &*(&key as *const V4Key).cast::<Key<[u8; 4]>>() };
    in_trie(&BAN_V4, key)
}

/// The rare path of an IPv6 source: the host hash (when the slots had no
/// room for some address) and the prefix trie, as `gate` says.
#[inline(never)]
fn banned_v6(gate: u64, w0: u64, w1: u64) -> bool {
    if gate & BAN_GATE_HOSTS != 0 {
        if let Some(entry) = BAN_HOSTS_V6.get_ptr([w0, w1]) {
            // SAFETY: as in `banned_v4`.
            return live(unsafe { &*entry });
        }
    }
    if gate & BAN_GATE_PREFIXES == 0 {
        return false;
    }
    let key = V6Key {
        prefix_len: 128,
        data: [w0 as u32, (w0 >> 32) as u32, w1 as u32, (w1 >> 32) as u32],
    };
    // SAFETY: `Key<[u8; 16]>` is a packed u32 and 16 bytes, the layout of
    // `V6Key`'s first 20 bytes.
    let key = unsafe { &*(&key as *const V6Key).cast::<Key<[u8; 16]>>() };
    in_trie(&BAN_V6, key)
}

#[inline(always)]
fn in_trie<K>(trie: &LpmTrie<K, BanEntry>, key: &Key<K>) -> bool {
    match trie.get(key) {
        Some(entry) => live(entry),
        None => false,
    }
}

/// Whether a ban entry (the most specific matching one) has not ended.
#[inline(always)]
fn live(entry: &BanEntry) -> bool {
    live_until(entry.effective_ns)
}

#[inline(always)]
fn live_until(effective_ns: u64) -> bool {
    if effective_ns == BAN_PERMANENT {
        return true;
    }
    clock::now_ns() < effective_ns
}
