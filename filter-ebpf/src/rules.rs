//! The rule entries both programs match (`[[strict.allow]]`,
//! `[[egress.allow]]`, the egress resolvers), compiled by userspace into
//! `filter_common::StrictRule`s.
use filter_common::{rule_takes, StrictRule, RULE_V4, RULE_V6};

/// Whether one of the first `count` entries matches: protocol, port (0 for
/// protocols without ports) and the remote address (`addr & mask == net`,
/// word by word). Serves the `[[strict.allow]]` rules turned around (the
/// local port is the rule's, the destination its source), the resolvers
/// and the `[[egress.allow]]` rules.
// An index loop bounded by a constant: the form the verifier follows.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
pub fn matches<const N: usize>(
    entries: &[StrictRule; N],
    count: u32,
    v6: bool,
    proto: u32,
    port: u16,
    addr: [u64; 2],
) -> bool {
    let n = count as usize;
    for i in 0..N {
        if i >= n {
            break;
        }
        let r = &entries[i];
        // The address first: it tells most entries apart (the resolvers
        // share their port and protocols), so a miss costs two compares.
        if addr[1] & r.mask[1] == r.net[1]
            && addr[0] & r.mask[0] == r.net[0]
            && rule_takes(r.proto, proto, v6)
            && port >= r.port_first
            && port <= r.port_last
        {
            return true;
        }
    }
    false
}

/// [`matches`] over the entries of `candidates` (bit `i` for entry `i`,
/// from `filter_common::rule_candidates`): an entry for other ports costs a
/// shift, not a compare of its prefix, and the walk ends past the last
/// candidate. The entry's test is `matches`'s written out again: shared
/// as a function, it changed how LLVM compiled the XDP program's walk of
/// the strict rules, whose cost the bench reads to the nanosecond.
// An index loop bounded by a constant: the form the verifier follows.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
pub fn matches_among<const N: usize>(
    entries: &[StrictRule; N],
    candidates: u32,
    v6: bool,
    proto: u32,
    port: u16,
    addr: [u64; 2],
) -> bool {
    for i in 0..N {
        let left = candidates >> i;
        if left == 0 {
            break;
        }
        if left & 1 == 0 {
            continue;
        }
        let r = &entries[i];
        if addr[1] & r.mask[1] == r.net[1]
            && addr[0] & r.mask[0] == r.net[0]
            && rule_takes(r.proto, proto, v6)
            && port >= r.port_first
            && port <= r.port_last
        {
            return true;
        }
    }
    false
}

/// Whether `addr` lies in the prefix of one of the first `count` entries
/// that take the packet's family, whatever their protocol and ports: the
/// resolvers' walk, whose caller tests DNS's protocol and port itself. A
/// resolver's UDP and TCP entries share its prefix, so the walk stops at
/// the first of them: half the entries of [`matches`], which would walk on
/// past a TCP entry to a UDP query's.
// An index loop bounded by a constant: the form the verifier follows.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
pub fn covers<const N: usize>(
    entries: &[StrictRule; N],
    count: u32,
    v6: bool,
    addr: [u64; 2],
) -> bool {
    let family = if v6 { RULE_V6 } else { RULE_V4 };
    let n = count as usize;
    for i in 0..N {
        if i >= n {
            break;
        }
        let r = &entries[i];
        if addr[1] & r.mask[1] == r.net[1]
            && addr[0] & r.mask[0] == r.net[0]
            && r.proto & family != 0
        {
            return true;
        }
    }
    false
}
