//! Calls mode (docs/policy.md, "Media by call"): the pinhole row both
//! programs ask, the reader's heartbeat, and the copies of signalling for
//! the reader. Nothing here runs in range mode: every caller asks
//! [`calls_mode`] first.
use aya_ebpf::{
    bindings::{__sk_buff, xdp_md},
    helpers::{
        bpf_ktime_get_ns,
        generated::{bpf_skb_load_bytes, bpf_xdp_load_bytes},
    },
    maps::ring_buf::RingBufEntry,
    programs::{TcContext, XdpContext},
};
use filter_common::{
    media::{
        pinhole_slot, SignallingCopy, COPY_L3, COPY_MAX, COPY_OUT, PINHOLE_ADDR, PINHOLE_ANY,
        PINHOLE_REFRESH_NS, READER_TIMEOUT_NS,
    },
    Policy, FLAG_L3, FLAG_MEDIA_CALLS, FLAG_UNATTENDED_CLOSED,
};

use crate::{
    clock,
    maps::{
        ACTIVE, MEDIA_STATE, MEDIA_STATS, PINHOLES, PINHOLE_PACKETS, POLICY, SIGNALLING_COPIES,
    },
    parse::{sport, Parsed, IPPROTO_TCP, IPPROTO_UDP},
    policy::allowlisted,
};

/// Whether the policy is in calls mode. Always false in a build without
/// the `calls` feature: the bench's cut of the program, which times range
/// mode against a program with none of calls mode's code.
#[inline(always)]
pub fn calls_mode(policy: &Policy) -> bool {
    cfg!(feature = "calls") && policy.flags & FLAG_MEDIA_CALLS != 0
}

/// Whether UDP from `remote` (as the parser holds a source) to the local
/// `port` may pass in calls mode: it matches a live pinhole, or the
/// reader is down and `[media] unattended = "range"`.
#[inline(always)]
pub fn admitted(port: u16, remote: [u64; 2], policy: &Policy) -> bool {
    let now = clock::now_ns();
    pinhole(port, remote, policy.media_idle_ns, now, true) || unattended_range(policy, now)
}

/// The egress side: whether the host may send UDP from its media `port`
/// to `remote` (strict egress in calls mode).
#[inline(always)]
pub fn admitted_out(port: u16, remote: [u64; 2], policy: &Policy) -> bool {
    let now = clock::now_ns();
    pinhole(port, remote, policy.media_idle_ns, now, false) || unattended_range(policy, now)
}

/// Whether media passes by range because the reader is down: no
/// heartbeat for `READER_TIMEOUT_NS`, and `unattended` is `"range"`.
#[inline(always)]
pub fn unattended_range(policy: &Policy, now: u64) -> bool {
    if policy.flags & FLAG_UNATTENDED_CLOSED != 0 {
        return false;
    }
    match MEDIA_STATE.get(0) {
        // Signed: a heartbeat a little ahead of the coarse clock is fresh.
        Some(state) => now.wrapping_sub(state.heartbeat_ns) as i64 > READER_TIMEOUT_NS as i64,
        None => true,
    }
}

/// Whether one of `port`'s ways holds a live pinhole for `remote`; if so
/// its time is refreshed (a store at most once a second) and, for media
/// arriving (`count`), its packet counted on this CPU.
#[inline(always)]
fn pinhole(port: u16, remote: [u64; 2], idle_ns: u64, now: u64, count: bool) -> bool {
    way(pinhole_slot(port, 0), remote, idle_ns, now, count)
        || way(pinhole_slot(port, 1), remote, idle_ns, now, count)
}

#[inline(always)]
fn way(slot: u32, remote: [u64; 2], idle_ns: u64, now: u64, count: bool) -> bool {
    let Some(p) = PINHOLES.get_ptr_mut(slot) else {
        return false;
    };
    // SAFETY: a slot of an array map, valid while the program runs.
    // Userspace rewrites it whole and other CPUs may store `last_seen_ns`
    // at the same time: a torn read can only make one packet miss (or,
    // for a slot being replaced, match the old remote once).
    let p = unsafe { &mut *p };
    let kind = p.kind;
    if !(kind == PINHOLE_ANY || (kind == PINHOLE_ADDR && p.remote == remote)) {
        return false;
    }
    // Signed: a time a little ahead of this CPU's coarse clock is fresh.
    let idle = now.wrapping_sub(p.last_seen_ns) as i64;
    if idle >= idle_ns as i64 {
        return false;
    }
    if idle > PINHOLE_REFRESH_NS as i64 {
        p.last_seen_ns = now;
    }
    if count {
        if let Some(c) = PINHOLE_PACKETS.get_ptr_mut(slot) {
            // SAFETY: a per-CPU slot, written by this CPU only.
            unsafe { *c += 1 };
        }
    }
    true
}

/// Copies a signalling packet the XDP program passes (`sip_allowed`), for
/// the reader.
#[inline(always)]
pub fn copy_in(ctx: &XdpContext, policy: &Policy) {
    sipwall_copy_in(ctx.ctx, l3_flag(policy));
}

/// Copies UDP or TCP from a signalling port that passed for another reason
/// (`other`, `reply`) when its source is allowlisted: the answers on a TCP
/// connection this host opened arrive at an ephemeral port.
#[inline(always)]
pub fn copy_from_peer(ctx: &XdpContext, policy: &Policy, parsed: &Parsed) {
    if let Parsed::Ports {
        v6,
        proto,
        ports,
        src,
        ..
    } = *parsed
    {
        if (proto == IPPROTO_TCP || proto == IPPROTO_UDP) && policy.is_sig_port(sport(ports)) {
            sipwall_copy_from_peer(ctx.ctx, l3_flag(policy), u32::from(v6), src[0], src[1]);
        }
    }
}

/// The copy of a packet from a signalling port, made only when its source
/// is allowlisted. A global function with scalar arguments: the verifier
/// checks the allowlist's walk here once.
#[no_mangle]
#[inline(never)]
pub extern "C" fn sipwall_copy_from_peer(
    ctx: *mut xdp_md,
    flags: u32,
    v6: u32,
    src_hi: u64,
    src_lo: u64,
) -> u32 {
    let generation = match ACTIVE.get(0) {
        Some(g) => *g & 1,
        None => 0,
    };
    let Some(policy) = POLICY.get(generation) else {
        return 0;
    };
    if allowlisted(v6 != 0, [src_hi, src_lo], policy, generation) {
        sipwall_copy_in(ctx, flags);
    }
    0
}

/// Copies a signalling packet the host sends, for the reader.
#[inline(always)]
pub fn copy_out(ctx: &TcContext, policy: &Policy) {
    sipwall_copy_out(ctx.skb.skb, COPY_OUT | l3_flag(policy));
}

#[inline(always)]
fn l3_flag(policy: &Policy) -> u32 {
    if policy.flags & FLAG_L3 != 0 {
        COPY_L3
    } else {
        0
    }
}

/// The copy behind [`copy_in`]. A global function: the verifier checks it
/// once, not on every path that reaches it.
#[no_mangle]
#[inline(never)]
pub extern "C" fn sipwall_copy_in(ctx: *mut xdp_md, flags: u32) -> u32 {
    let ctx = XdpContext::new(ctx);
    // At most 64 KiB: the mask tells the verifier so.
    let len = ((ctx.data_end() - ctx.data()) & 0xffff) as u32;
    let Some(mut entry) = reserve() else { return 0 };
    let caplen = fill(&mut entry, len, flags);
    // Checked again here, where the helper is called, on the 64-bit value
    // it is handed: the verifier bounds the register the helper gets, and
    // a check of a 32-bit copy of it would not.
    let caplen = u64::from(caplen);
    if caplen == 0 || caplen > u64::from(COPY_MAX) {
        finish(entry, false);
        return 0;
    }
    let caplen = caplen as u32;
    let copy = entry.as_mut_ptr();
    // SAFETY: `copy` is the reserved entry, whose `data` holds COPY_MAX
    // bytes; 1 <= caplen <= COPY_MAX (checked above); the helper copies
    // from within the packet or fails.
    let copied =
        unsafe { bpf_xdp_load_bytes(ctx.ctx, 0, (*copy).data.as_mut_ptr().cast(), caplen) };
    finish(entry, copied == 0);
    0
}

/// The copy behind [`copy_out`], a global function like [`sipwall_copy_in`].
#[no_mangle]
#[inline(never)]
pub extern "C" fn sipwall_copy_out(skb: *mut __sk_buff, flags: u32) -> u32 {
    let ctx = TcContext::new(skb);
    let Some(mut entry) = reserve() else { return 0 };
    let caplen = u64::from(fill(&mut entry, ctx.len(), flags));
    if caplen == 0 || caplen > u64::from(COPY_MAX) {
        finish(entry, false);
        return 0;
    }
    let caplen = caplen as u32;
    let copy = entry.as_mut_ptr();
    // SAFETY: as in `sipwall_copy_in`, with the skb's bytes.
    let copied = unsafe {
        bpf_skb_load_bytes(
            ctx.skb.skb as *const _,
            0,
            (*copy).data.as_mut_ptr().cast(),
            caplen,
        )
    };
    finish(entry, copied == 0);
    0
}

/// A ring entry, or `None` (counted as lost) when the ring is full.
#[inline(always)]
fn reserve() -> Option<RingBufEntry<SignallingCopy>> {
    let entry = SIGNALLING_COPIES.reserve::<SignallingCopy>(0);
    if entry.is_none() {
        if let Some(s) = MEDIA_STATS.get_ptr_mut(0) {
            // SAFETY: a per-CPU slot, written by this CPU only.
            unsafe { (*s).lost += 1 };
        }
    }
    entry
}

/// Writes the copy's header; returns the bytes to copy, 1 to `COPY_MAX`.
#[inline(always)]
fn fill(entry: &mut RingBufEntry<SignallingCopy>, len: u32, flags: u32) -> u32 {
    let mut caplen = if len < COPY_MAX { len } else { COPY_MAX };
    if caplen == 0 {
        caplen = 1;
    }
    let copy = entry.as_mut_ptr();
    // SAFETY: the reserved entry, written before it is submitted.
    unsafe {
        (*copy).ts_ns = bpf_ktime_get_ns();
        (*copy).len = len;
        (*copy).caplen = caplen;
        (*copy).flags = flags;
        (*copy).reserved = 0;
    }
    caplen
}

/// Submits the copy when its bytes were read, else discards it; counts.
#[inline(always)]
fn finish(entry: RingBufEntry<SignallingCopy>, copied: bool) {
    let stats = MEDIA_STATS.get_ptr_mut(0);
    if copied {
        entry.submit(0);
    } else {
        entry.discard(0);
    }
    if let Some(s) = stats {
        // SAFETY: a per-CPU slot, written by this CPU only.
        unsafe {
            if copied {
                (*s).copies += 1;
            } else {
                (*s).lost += 1;
            }
        }
    }
}
