//! The ban set (docs/policy.md, abuse controls): is a source banned now?
//!
//! One word of the gate answers "no" for every source outside the /24s a
//! ban touches, whatever the size of the set; one bit of its host bitmap
//! answers "no" for a neighbour of a banned address. Behind a set bit,
//! single banned addresses are one hash lookup, shorter prefixes a trie
//! lookup. Both checks stay in this function's caller: a call costs a
//! return, which this CPU's mitigations make dear. Expiry is a comparison
//! with the kernel's coarse clock, so a ban ends on time (to a tick) with
//! nothing in userspace running.
use aya_ebpf::maps::{lpm_trie::Key, LpmTrie};
use filter_common::{
    ban_host_bit_v4, ban_host_bit_v6, BanEntry, BAN_GATE_HOSTS, BAN_GATE_PREFIXES, BAN_GATE_WORDS,
    BAN_PERMANENT,
};

use crate::{
    clock,
    maps::{BAN_GATE, BAN_HOSTS_V4, BAN_HOSTS_V6, BAN_V4, BAN_V6},
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
        let gate = hosts_filtered(gate, ban_host_bit_v6(hi, lo));
        gate != 0 && banned_v6(gate, src[0], src[1])
    } else {
        let addr = v4_of_key(src);
        let gate = gate(0, addr >> 8);
        if gate == 0 {
            return false;
        }
        let gate = hosts_filtered(gate, ban_host_bit_v4(addr));
        // The address's 4 bytes in packet order (see `parse::v4_key`).
        gate != 0 && banned_v4(gate, (src[1] >> 32) as u32)
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

/// The rare path, behind a set gate bit; the address comes in registers.
#[inline(never)]
fn banned_v4(gate: u64, addr: u32) -> bool {
    if gate & BAN_GATE_HOSTS != 0 {
        if let Some(entry) = BAN_HOSTS_V4.get_ptr(addr) {
            // SAFETY: a value of the map, valid during this program run;
            // userspace replaces entries whole.
            return live(unsafe { &*entry });
        }
    }
    if gate & BAN_GATE_PREFIXES == 0 {
        return false;
    }
    let key = V4Key {
        prefix_len: 32,
        data: addr,
    };
    // SAFETY: `Key<[u8; 4]>` is a packed u32 and 4 bytes, the layout of
    // `V4Key`'s first 8 bytes.
    let key = unsafe { &*(&key as *const V4Key).cast::<Key<[u8; 4]>>() };
    in_trie(&BAN_V4, key)
}

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
    if entry.effective_ns == BAN_PERMANENT {
        return true;
    }
    clock::now_ns() < entry.effective_ns
}
