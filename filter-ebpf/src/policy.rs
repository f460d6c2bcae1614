//! The decision table of docs/policy.md: what a parsed packet is counted as.
use filter_common::{
    host_buckets, Policy, Reason, DIRECT_FULL, DIRECT_NONE, DIRECT_PARTIAL, DIRECT_WORDS,
    FLAG_CHECK_RTP, HOST_BUCKET_SLOTS, INLINE_PREFIXES, V4_HOST_SLOTS,
};

use crate::{
    bans::banned,
    clock,
    limits::over_limit,
    maps::{
        ALLOW_V6_0, ALLOW_V6_1, RTP_RATE, RTP_RATE_CACHE, SIP_RATE, SIP_RATE_CACHE, V4_DIRECT,
        V4_HOSTS, V6_DIRECT,
    },
    media::{self, admitted, unattended_range},
    parse::{dport, sport, v4_of_key, Parsed, IPPROTO_UDP},
};
use aya_ebpf::maps::{lpm_trie::Key, Array};

/// Row 2a of both modes, right after `malformed`: whether the packet's
/// source is in the ban set. Packets without a source (not IP, malformed)
/// are not.
#[inline(always)]
pub fn source_banned(parsed: &Parsed) -> bool {
    match *parsed {
        Parsed::Fragment { v6, src }
        | Parsed::OtherProto { v6, src, .. }
        | Parsed::Ports { v6, src, .. } => banned(v6, src),
        Parsed::NonIp | Parsed::Malformed => false,
    }
}

/// Guard mode's table for a source that is not banned. `bytes` (the
/// frame's length) is counted against a source that goes over its rate
/// limit.
#[inline(always)]
pub fn decide(parsed: &Parsed, policy: &Policy, generation: u32, bytes: u64) -> Reason {
    match *parsed {
        Parsed::NonIp => Reason::NonIp,
        Parsed::Malformed => Reason::Malformed,
        Parsed::Fragment { .. } => Reason::Fragment,
        Parsed::OtherProto { .. } => Reason::Other,
        Parsed::Ports {
            v6,
            proto,
            ports,
            src,
            rtp_like,
            ..
        } => {
            let dport = dport(ports);
            if policy.is_sig_port(dport) {
                signalling(v6, src, policy, generation, bytes)
            } else if proto != IPPROTO_UDP {
                Reason::Other
            } else if policy.is_rtp_port(dport) {
                if media::calls_mode(policy) && !admitted(dport, src, policy) {
                    Reason::RtpUnsolicited
                } else {
                    media(src, rtp_like, policy, bytes)
                }
            } else if policy.is_provider_rtp_port(sport(ports)) {
                // Media by its source port only: counted as media, but the
                // RTP check and the media limit guard `rtp_ports` (the
                // ephemeral ports of other UDP fall in 40000-60000 too).
                // In calls mode media goes to pinholes, all in `rtp_ports`:
                // this is not media (row 5v), and guard mode does not police
                // it (a VPN client's ephemeral port falls here too).
                if media::calls_mode(policy) && !unattended_range(policy, clock::now_ns()) {
                    Reason::Other
                } else {
                    Reason::RtpAllowed
                }
            } else {
                Reason::Other
            }
        }
    }
}

/// A packet to a signalling port, by its source: not allowlisted, over
/// its rate limit, or allowed.
#[inline(always)]
pub fn signalling(v6: bool, src: [u64; 2], policy: &Policy, generation: u32, bytes: u64) -> Reason {
    let allowed = if v6 {
        allowlisted_v6(src, policy, generation)
    } else {
        allowlisted_v4(v4_of_key(src), policy, generation)
    };
    if !allowed {
        Reason::SipDenied
    } else if policy.sip_interval_ns != 0
        && over_limit(
            (&SIP_RATE_CACHE, &SIP_RATE),
            src,
            policy.sip_interval_ns,
            policy.sip_window_ns,
            bytes,
        )
    {
        Reason::SipRatelimited
    } else {
        Reason::SipAllowed
    }
}

/// Whether `addr` (held as `Parsed::Ports::src` holds a source) is in the
/// active generation's allowlist: `signalling`'s lookup without its rate
/// limit, for the egress program's destinations.
#[inline(always)]
pub fn allowlisted(v6: bool, addr: [u64; 2], policy: &Policy, generation: u32) -> bool {
    if v6 {
        allowlisted_v6(addr, policy, generation)
    } else {
        allowlisted_v4(v4_of_key(addr), policy, generation)
    }
}

/// A media packet (UDP the media rules let in), by its payload and its
/// source's rate: not RTP while `check_rtp` is on, over the rate limit, or
/// allowed.
#[inline(always)]
pub fn media(src: [u64; 2], rtp_like: bool, policy: &Policy, bytes: u64) -> Reason {
    if policy.flags & FLAG_CHECK_RTP != 0 && !rtp_like {
        Reason::RtpInvalid
    } else if policy.rtp_interval_ns != 0
        && over_limit(
            (&RTP_RATE_CACHE, &RTP_RATE),
            src,
            policy.rtp_interval_ns,
            policy.rtp_window_ns,
            bytes,
        )
    {
        Reason::RtpRatelimited
    } else {
        Reason::RtpAllowed
    }
}

/// Longest-prefix match of an IPv4 source (host byte order) in the active
/// generation's allowlist.
#[inline(always)]
fn allowlisted_v4(addr: u32, policy: &Policy, generation: u32) -> bool {
    let n = policy.v4_inline_len as usize;
    if n > INLINE_PREFIXES {
        return direct_v4(addr, policy, generation);
    }
    for i in 0..INLINE_PREFIXES {
        if i >= n {
            break;
        }
        let [net, mask] = policy.v4_inline[i];
        if addr & mask == net {
            return true;
        }
    }
    false
}

/// The same for an IPv6 source, as the packet holds it (two native words
/// in network byte order).
#[inline(always)]
fn allowlisted_v6(src: [u64; 2], policy: &Policy, generation: u32) -> bool {
    let n = policy.v6_inline_len as usize;
    if n == 0 {
        // The usual case: no IPv6 allowlist at all.
        return false;
    }
    let (hi, lo) = (u64::from_be(src[0]), u64::from_be(src[1]));
    if n <= INLINE_PREFIXES {
        for i in 0..INLINE_PREFIXES {
            if i >= n {
                break;
            }
            let [net_hi, net_lo, mask_hi, mask_lo] = policy.v6_inline[i];
            if hi & mask_hi == net_hi && lo & mask_lo == net_lo {
                return true;
            }
        }
        return false;
    }
    match direct_state(&V6_DIRECT, (hi >> 40) as u32, generation) {
        DIRECT_FULL => return true,
        DIRECT_PARTIAL => {}
        _ => return false,
    }
    // The trie's key, built from 4-byte words at 4-byte-aligned offsets of
    // an 8-byte-aligned buffer: no byte stores, no misaligned stack access.
    #[repr(C, align(8))]
    struct V6Key {
        prefix_len: u32,
        data: [u32; 4],
    }
    let key = V6Key {
        prefix_len: 128,
        data: [
            src[0] as u32,
            (src[0] >> 32) as u32,
            src[1] as u32,
            (src[1] >> 32) as u32,
        ],
    };
    // SAFETY: `Key<[u8; 16]>` is a packed u32 and 16 bytes, the layout of
    // the first 20 bytes of `V6Key` (and u32 words keep the bytes in
    // memory order).
    let key = unsafe { &*(&key as *const V6Key).cast::<Key<[u8; 16]>>() };
    let trie = if generation == 0 {
        &ALLOW_V6_0
    } else {
        &ALLOW_V6_1
    };
    trie.get(key).is_some()
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
