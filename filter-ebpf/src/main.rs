//! sipwall's XDP program: parse, decide, count, and return the verdict.
// The BPF target has no std and no main. The host build exists only so
// that `cargo clippy --workspace` checks this crate too: there it is a
// plain binary with an empty main.
#![cfg_attr(target_arch = "bpf", no_std, no_main)]

mod maps;
mod parse;
mod policy;

use aya_ebpf::{
    bindings::xdp_action, helpers::bpf_ktime_get_ns, macros::xdp, programs::XdpContext,
};
use filter_common::{
    Counter, Policy, Reason, SourceKey, DENIED_CACHE_SLOTS, FLAG_DRY_RUN, FLAG_LOG_DENIED,
    LOG_RATE_PER_SEC,
};

use crate::{
    maps::{ACTIVE, COUNTERS, DENIED, DENIED_CACHE, LOG_BUCKET, POLICY},
    parse::{Parsed, Source},
};

#[xdp]
pub fn sipwall(ctx: XdpContext) -> u32 {
    let generation = match ACTIVE.get(0) {
        Some(g) => *g & 1,
        None => 0,
    };
    // Array lookups with an index below max_entries always succeed; the
    // branch only satisfies the verifier.
    let Some(policy) = POLICY.get(generation) else {
        return xdp_action::XDP_PASS;
    };
    let parsed = parse::parse(&ctx);
    let reason = policy::decide(&parsed, policy, generation);
    record(&ctx, policy, &parsed, reason)
}

/// The one exit: count the decision, remember denied sources, and turn the
/// reason into a verdict (a DROP passes in dry-run).
#[inline(always)]
fn record(ctx: &XdpContext, policy: &Policy, parsed: &Parsed, reason: Reason) -> u32 {
    let bytes = (ctx.data_end() - ctx.data()) as u64;
    if let Some(c) = COUNTERS.get_ptr_mut(reason as u32) {
        // SAFETY: a valid element of a per-CPU array: no other CPU writes
        // it, and XDP runs are not preempted on a CPU, so no atomics needed.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += bytes;
        }
    }
    if reason == Reason::SipDenied {
        if let Parsed::Ports { src, .. } = parsed {
            count_denied(ctx, policy, src, bytes);
        }
    }
    if reason.drops() && policy.flags & FLAG_DRY_RUN == 0 {
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_PASS
    }
}

#[inline(always)]
fn count_denied(ctx: &XdpContext, policy: &Policy, src: &Source, bytes: u64) {
    let key = SourceKey {
        addr: match src {
            Source::V4(a) => [
                0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a[0], a[1], a[2], a[3],
            ],
            Source::V6(a) => *a,
        },
    };
    // A source that keeps sending stays in its cache slot and costs an
    // array access; a new one pushes the slot's old source into DENIED.
    let word = |i: usize| {
        u32::from_ne_bytes([
            key.addr[i],
            key.addr[i + 1],
            key.addr[i + 2],
            key.addr[i + 3],
        ])
    };
    let hash = (word(0) ^ word(4) ^ word(8) ^ word(12)).wrapping_mul(0x9e37_79b9);
    let slot = hash >> (32 - DENIED_CACHE_SLOTS.trailing_zeros());
    match DENIED_CACHE.get_ptr_mut(slot) {
        Some(s) => {
            // SAFETY: per-CPU slot, no other CPU writes it.
            let s = unsafe { &mut *s };
            if s.packets != 0 && s.addr == key.addr {
                s.packets += 1;
                s.bytes += bytes;
            } else {
                if s.packets != 0 {
                    add_denied(&SourceKey { addr: s.addr }, s.packets, s.bytes);
                }
                s.addr = key.addr;
                s.packets = 1;
                s.bytes = bytes;
            }
        }
        None => add_denied(&key, 1, bytes),
    }
    if policy.flags & FLAG_LOG_DENIED != 0 && take_log_token() {
        match src {
            Source::V4(a) => {
                aya_log_ebpf::info!(ctx, "denied signalling from {:i}", u32::from_be_bytes(*a))
            }
            Source::V6(a) => aya_log_ebpf::info!(ctx, "denied signalling from {:i}", *a),
        }
    }
}

/// Adds to a source's counters in the LRU map of denied sources.
#[inline(always)]
fn add_denied(key: &SourceKey, packets: u64, bytes: u64) {
    match DENIED.get_ptr_mut(key) {
        // SAFETY: a valid value of a per-CPU map, written by this CPU only.
        Some(c) => unsafe {
            (*c).packets += packets;
            (*c).bytes += bytes;
        },
        None => {
            let first = Counter { packets, bytes };
            let _ = DENIED.insert(key, first, 0);
        }
    }
}

/// Token bucket per CPU: at most `LOG_RATE_PER_SEC` records a second, so a
/// flood of denied packets cannot become a flood of log records.
#[inline(always)]
fn take_log_token() -> bool {
    let Some(b) = LOG_BUCKET.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: a helper call without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    // SAFETY: a valid element of a per-CPU array, written by this CPU only.
    unsafe {
        if now.wrapping_sub((*b).refilled_ns) >= 1_000_000_000 {
            (*b).refilled_ns = now;
            (*b).tokens = LOG_RATE_PER_SEC;
        }
        if (*b).tokens == 0 {
            return false;
        }
        (*b).tokens -= 1;
    }
    true
}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

#[cfg(not(target_arch = "bpf"))]
fn main() {}
