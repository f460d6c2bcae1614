//! The ban set (docs/policy.md, abuse controls): is a source banned now?
//!
//! One word of the gate answers "no" for every source outside the /24s a
//! ban touches, whatever the size of the set; only a set bit costs a trie
//! lookup and a clock read. Expiry is a comparison with
//! `bpf_ktime_get_ns`, so a ban ends on time with nothing in userspace
//! running.
use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    maps::{lpm_trie::Key, LpmTrie},
};
use filter_common::{BanEntry, BAN_GATE_WORDS};

use crate::{
    maps::{BAN_GATE, BAN_V4, BAN_V6},
    parse::v4_of_key,
};

/// Whether the source (key words as the parser hands them) is banned.
#[inline(always)]
pub fn banned(v6: bool, src: [u64; 2]) -> bool {
    if v6 {
        let top24 = (u64::from_be(src[0]) >> 40) as u32;
        gate_open(BAN_GATE_WORDS, top24) && banned_v6(src[0], src[1])
    } else {
        // The address's 4 bytes in packet order (see `parse::v4_key`).
        gate_open(0, v4_of_key(src) >> 8) && banned_v4((src[1] >> 32) as u32)
    }
}

/// The gate bit of `top24` in the half starting at word `half`.
#[inline(always)]
fn gate_open(half: u32, top24: u32) -> bool {
    match BAN_GATE.get(half + (top24 >> 6)) {
        Some(word) => *word >> (top24 & 63) & 1 != 0,
        None => false,
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
fn banned_v4(addr: u32) -> bool {
    let key = V4Key {
        prefix_len: 32,
        data: addr,
    };
    // SAFETY: `Key<[u8; 4]>` is a packed u32 and 4 bytes, the layout of
    // `V4Key`'s first 8 bytes.
    let key = unsafe { &*(&key as *const V4Key).cast::<Key<[u8; 4]>>() };
    live(&BAN_V4, key)
}

#[inline(never)]
fn banned_v6(w0: u64, w1: u64) -> bool {
    let key = V6Key {
        prefix_len: 128,
        data: [w0 as u32, (w0 >> 32) as u32, w1 as u32, (w1 >> 32) as u32],
    };
    // SAFETY: `Key<[u8; 16]>` is a packed u32 and 16 bytes, the layout of
    // `V6Key`'s first 20 bytes.
    let key = unsafe { &*(&key as *const V6Key).cast::<Key<[u8; 16]>>() };
    live(&BAN_V6, key)
}

/// Whether the longest ban prefix matching `key` has not expired yet.
#[inline(always)]
fn live<K>(trie: &LpmTrie<K, BanEntry>, key: &Key<K>) -> bool {
    match trie.get(key) {
        Some(entry) => {
            // SAFETY: a helper without preconditions.
            let now = unsafe { bpf_ktime_get_ns() };
            now < entry.effective_ns
        }
        None => false,
    }
}
