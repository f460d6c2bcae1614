//! The decision table of SPEC §2: what a parsed packet is counted as.
use filter_common::{Policy, Reason, INLINE_PREFIXES};

use crate::{
    maps::{ALLOW_V4_0, ALLOW_V4_1, ALLOW_V6_0, ALLOW_V6_1},
    parse::{Parsed, Source, IPPROTO_UDP},
};
use aya_ebpf::maps::lpm_trie::Key;

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
                if i < n && a & policy.v4_inline[i][1] == policy.v4_inline[i][0] {
                    return true;
                }
            }
            false
        }
        Source::V6(addr) if policy.v6_inline_len as usize <= INLINE_PREFIXES => {
            let b = *addr;
            let hi = u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
            let lo = u64::from_be_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]);
            let n = policy.v6_inline_len as usize;
            for i in 0..INLINE_PREFIXES {
                let p = &policy.v6_inline[i];
                if i < n && hi & p[2] == p[0] && lo & p[3] == p[1] {
                    return true;
                }
            }
            false
        }
        Source::V4(addr) => {
            let key = Key::new(32, *addr);
            let trie = if generation == 0 {
                &ALLOW_V4_0
            } else {
                &ALLOW_V4_1
            };
            trie.get(&key).is_some()
        }
        Source::V6(addr) => {
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
