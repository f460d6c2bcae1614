//! Per-source rate limits (docs/policy.md, abuse controls): a token bucket
//! per source address, kept as one theoretical arrival time (see
//! `filter_common::RateState`), by the kernel's coarse monotonic clock.
use aya_ebpf::{helpers::bpf_ktime_get_coarse_ns, maps::LruHashMap};
use filter_common::{RateState, SourceKey};

/// Whether a packet of `bytes` from `src` is over the limit of one packet
/// per `interval_ns` with bursts up to `window_ns / interval_ns`. Takes a
/// token when it is not; counts the packet against the source when it is.
#[inline(always)]
pub fn over_limit(
    map: &LruHashMap<SourceKey, RateState>,
    src: &[u64; 2],
    interval_ns: u64,
    window_ns: u64,
    bytes: u64,
) -> bool {
    // The coarse clock (a tick's resolution) costs a memory read where the
    // precise one reads the TSC; a bucket only needs the average rate, and
    // a tick's worth of tokens arrives at once.
    // SAFETY: a helper without preconditions.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    let key = crate::as_source_key(src);
    let Some(state) = map.get_ptr_mut(key) else {
        // A source seen for the first time has a full bucket.
        let first = RateState {
            tat_ns: now + interval_ns,
            dropped_packets: 0,
            dropped_bytes: 0,
        };
        let _ = map.insert(key, &first, 0);
        return false;
    };
    // SAFETY: a value of the map; other CPUs may update it at the same
    // time, which at worst loses an update (see `RateState`).
    let state = unsafe { &mut *state };
    let start = if state.tat_ns > now {
        state.tat_ns
    } else {
        now
    };
    let next = start + interval_ns;
    if next - now > window_ns {
        state.dropped_packets += 1;
        state.dropped_bytes += bytes;
        return true;
    }
    state.tat_ns = next;
    false
}
