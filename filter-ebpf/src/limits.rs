//! Per-source rate limits (docs/policy.md, abuse controls): a token bucket
//! per source address, kept as one theoretical arrival time (see
//! `filter_common::RateState`), by the kernel's coarse monotonic clock
//! (`clock.rs`).
//! The buckets live in an LRU map with a direct-mapped cache in front
//! (`filter_common::RateSlot`), so a source that keeps sending costs an
//! array read.
use aya_ebpf::maps::{Array, LruHashMap};
use filter_common::{rate_slot, RateSlot, RateState, SourceKey};

use crate::{as_source_key, clock};

/// Whether a packet of `bytes` from `src` is over the limit of one packet
/// per `interval_ns` with bursts up to `window_ns / interval_ns`. Takes a
/// token when it is not; counts the packet against the source when it is.
#[inline(always)]
pub fn over_limit(
    (cache, map): (&Array<RateSlot>, &LruHashMap<SourceKey, RateState>),
    src: [u64; 2],
    interval_ns: u64,
    window_ns: u64,
    bytes: u64,
) -> bool {
    let Some(slot) = cache.get_ptr_mut(rate_slot(src)) else {
        return false;
    };
    // SAFETY: a slot of the array, shared by all CPUs: concurrent updates
    // may lose one (a packet more gets through), never corrupt memory.
    // `addr` is the first field of an 8-byte-aligned value, so it can be
    // read and written as two u64 words.
    let (slot, addr) = unsafe {
        (
            &mut *slot,
            &mut *(*slot).addr.as_mut_ptr().cast::<[u64; 2]>(),
        )
    };
    if *addr != src || slot.state.tat_ns == 0 {
        swap_in(slot, addr, map, src);
    }
    // The coarse clock (a tick's resolution) is a load or two where the
    // precise one reads the TSC; a bucket only needs the average rate, and
    // a tick's worth of tokens arrives at once.
    let now = clock::now_ns();
    let state = &mut slot.state;
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

/// The rare path: the slot holds another source (or none). Its bucket goes
/// back to the map, and `src`'s comes from there (a full one when it is
/// new: `tat_ns` 0 is "long ago").
#[inline(never)]
fn swap_in(
    slot: &mut RateSlot,
    addr: &mut [u64; 2],
    map: &LruHashMap<SourceKey, RateState>,
    src: [u64; 2],
) {
    if slot.state.tat_ns != 0 {
        let _ = map.insert(as_source_key(addr), slot.state, 0);
    }
    slot.state = match map.get_ptr(as_source_key(&src)) {
        // SAFETY: a value of the map, read whole while this program runs.
        Some(state) => unsafe { *state },
        None => RateState::default(),
    };
    *addr = src;
}
