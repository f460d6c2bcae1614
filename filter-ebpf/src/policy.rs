//! The decision table of SPEC §2: what a parsed packet is counted as.
use filter_common::{Policy, Reason};

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
                if allowlisted(src, generation) {
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
fn allowlisted(src: &Source, generation: u32) -> bool {
    match src {
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
