//! The time as the abuse controls read it: the kernel's coarse monotonic
//! clock (`bpf_ktime_get_coarse_ns`), read at most about once a tick per
//! CPU. The helper is two calls, and on this machine's CPUs each return
//! costs a few nanoseconds (the SRSO "safe RET" mitigation); the tick
//! count is one load, which the verifier inlines. The coarse clock only
//! moves at a tick, so its reading holds until the tick count moves on.
//!
//! The kernel advances the tick count before the clock, so a reading
//! taken just after a tick may be the previous tick's. A reading is
//! trusted for jiffy `j` only when it differs from the one before, taken
//! at `j` (the clock moved during `j`: this is `j`'s value) or at `j - 1`
//! (the clock moved since `j - 1`'s value). Until then every packet reads
//! the clock, as without this cache; after an idle spell that is the
//! packets of one tick. A reading can only be stale if the last one of
//! an untrusted tick and the first of the next both fell in the few
//! hundred nanoseconds between a tick's two updates; it is then a tick
//! behind for one tick on one CPU.
use aya_ebpf::helpers::{bpf_jiffies64, bpf_ktime_get_coarse_ns};
use filter_common::CoarseClock;

use crate::maps::CLOCK;

/// CLOCK_MONOTONIC_COARSE in nanoseconds.
#[inline(always)]
pub fn now_ns() -> u64 {
    // SAFETY: a helper without preconditions (inlined as a load of
    // `jiffies_64` by the verifier on 64-bit kernels).
    let jiffy = unsafe { bpf_jiffies64() };
    let Some(clock) = CLOCK.get_ptr_mut(0) else {
        // SAFETY: a helper without preconditions.
        return unsafe { bpf_ktime_get_coarse_ns() };
    };
    // SAFETY: a per-CPU slot, no other CPU writes it, and the program
    // does not run twice at once on one CPU.
    let clock = unsafe { &mut *clock };
    if clock.trusted_jiffy == jiffy {
        return clock.ns;
    }
    read(clock, jiffy)
}

/// The rare path: read the clock and decide whether to trust it for the
/// rest of `jiffy`.
#[inline(never)]
fn read(clock: &mut CoarseClock, jiffy: u64) -> u64 {
    // SAFETY: a helper without preconditions.
    let ns = unsafe { bpf_ktime_get_coarse_ns() };
    if ns != clock.ns && (clock.read_jiffy == jiffy || clock.read_jiffy.wrapping_add(1) == jiffy) {
        clock.trusted_jiffy = jiffy;
    }
    clock.ns = ns;
    clock.read_jiffy = jiffy;
    ns
}
