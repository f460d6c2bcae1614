//! The decision table of docs/policy.md: what a parsed packet is counted as.
use filter_common::{
    host_buckets, Policy, Reason, DIRECT_FULL, DIRECT_NONE, DIRECT_PARTIAL, DIRECT_WORDS,
    HOST_BUCKET_SLOTS, INLINE_PREFIXES, V4_HOST_SLOTS,
};

use crate::{
    maps::{ALLOW_V6_0, ALLOW_V6_1, V4_DIRECT, V4_HOSTS, V6_DIRECT},
    parse::{Parsed, Source, IPPROTO_UDP},
};
use aya_ebpf::maps::{lpm_trie::Key, Array};

#[inline(always)]
pub fn decide(parsed: &Parsed, policy: &Policy, generation: u32) -> Reason {
    match parsed {
        Parsed::NonIp => Reason::NonIp,
        Parsed::Malformed => Reason::Malformed,
        Parsed::Fragment => Reason::Fragment,
        Parsed::OtherProto => Reason::Other,
        Parsed::Ports { proto, src, dport } => {
            if policy.is_sig_port(*dport) {
                if allowlisted(src, policy, generation) {
                    Reason::SipAllowed
                } else {
                    Reason::SipDenied
                }
            } else if *proto == IPPROTO_UDP && policy.is_rtp_port(*dport) {
                Reason::RtpAllowed
            } else {
                Reason::Other
            }
        }
    }
}

/// Longest-prefix match of the source in the active generation's allowlist.
#[inline(always)]
fn allowlisted(src: &Source, policy: &Policy, generation: u32) -> bool {
    match src {
        Source::V4(addr) if policy.v4_inline_len as usize <= INLINE_PREFIXES => {
            let a = u32::from_be_bytes(*addr);
            let n = policy.v4_inline_len as usize;
            for i in 0..INLINE_PREFIXES {
                if i >= n {
                    break;
                }
                if a & policy.v4_inline[i][1] == policy.v4_inline[i][0] {
                    return true;
                }
            }
            false
        }
        Source::V6(addr) if policy.v6_inline_len as usize <= INLINE_PREFIXES => {
            if policy.v6_inline_len == 0 {
                // The usual case: no IPv6 allowlist at all.
                return false;
            }
            let b = *addr;
            let hi = u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
            let lo = u64::from_be_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]);
            let n = policy.v6_inline_len as usize;
            for i in 0..INLINE_PREFIXES {
                if i >= n {
                    break;
                }
                let p = &policy.v6_inline[i];
                if hi & p[2] == p[0] && lo & p[3] == p[1] {
                    return true;
                }
            }
            false
        }
        Source::V4(addr) => direct_v4(u32::from_be_bytes(*addr), policy, generation),
        Source::V6(addr) => {
            let top = u32::from_be_bytes([0, addr[0], addr[1], addr[2]]);
            match direct_state(&V6_DIRECT, top, generation) {
                DIRECT_FULL => return true,
                DIRECT_PARTIAL => {}
                _ => return false,
            }
            let key = Key::new(128, *addr);
            let trie = if generation == 0 {
                &ALLOW_V6_0
            } else {
                &ALLOW_V6_1
            };
            trie.get(&key).is_some()
        }
    }
}

/// IPv4 lookup in the direct table: one array word names the /24 as not,
/// fully or partly allowed; a partly allowed one is found in one of the
/// slots of its two host buckets. No hash map, no trie: the cost does not depend on the
/// allowlist's size.
#[inline(always)]
fn direct_v4(addr: u32, policy: &Policy, generation: u32) -> bool {
    let net24 = addr >> 8;
    match direct_state(&V4_DIRECT, net24, generation) {
        DIRECT_FULL => true,
        DIRECT_PARTIAL => {
            let host = addr & 255;
            for bucket in host_buckets(net24, policy.v4_seeds) {
                for j in 0..HOST_BUCKET_SLOTS {
                    let index = generation * V4_HOST_SLOTS + bucket + j;
                    if let Some(s) = V4_HOSTS.get(index) {
                        if s.net24_plus_one == net24 + 1 {
                            return s.bits[(host >> 6) as usize] >> (host & 63) & 1 != 0;
                        }
                    }
                }
            }
            false
        }
        _ => false,
    }
}

/// The 2-bit state of `top24` (an address's first 24 bits) in a direct
/// table's half of `generation`.
#[inline(always)]
fn direct_state(table: &Array<u64>, top24: u32, generation: u32) -> u64 {
    match table.get(generation * DIRECT_WORDS + (top24 >> 5)) {
        Some(word) => (*word >> ((top24 & 31) * 2)) & 3,
        None => DIRECT_NONE,
    }
}
