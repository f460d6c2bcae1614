//! `sipwall capture`: a sample of a judged packet to the ring buffer, only
//! while a capture runs. The hot path is [`ingress`]/[`egress`]: one load
//! of the flag; the rest lives out of line.
use aya_ebpf::{
    bindings::{__sk_buff, xdp_md},
    helpers::{
        bpf_ktime_get_ns,
        generated::{bpf_skb_load_bytes, bpf_xdp_load_bytes},
    },
    programs::{TcContext, XdpContext},
};
use filter_common::capture::{
    CaptureFilter, Sample, CAPTURE_DROP, CAPTURE_IN, CAPTURE_OUT, CAPTURE_PASS, MAX_SNAPLEN,
    SAMPLE_DROP, SAMPLE_OUT,
};

use crate::maps::{CAPTURE, CAPTURE_RING, CAPTURE_STATS};

/// Whether a capture runs: the load every judged packet pays.
#[inline(always)]
fn running() -> bool {
    // An array lookup with a constant index: the verifier inlines it.
    CAPTURE.get(0).is_some_and(|f| f.on != 0)
}

/// After the XDP program's decision.
#[inline(always)]
pub fn ingress(ctx: &XdpContext, reason: u32, dropped: bool) {
    if running() {
        sipwall_capture_in(ctx.ctx, reason, u32::from(dropped));
    }
}

/// After the egress program's decision.
#[inline(always)]
pub fn egress(ctx: &TcContext, reason: u32, dropped: bool) {
    if running() {
        sipwall_capture_out(ctx.skb.skb, reason, u32::from(dropped));
    }
}

/// The sampling behind [`ingress`]. A global function: the verifier checks
/// it once, not on every path that reaches the XDP program's exit.
#[no_mangle]
#[inline(never)]
pub extern "C" fn sipwall_capture_in(ctx: *mut xdp_md, reason: u32, dropped: u32) -> u32 {
    sample_ingress(&XdpContext::new(ctx), reason, dropped != 0);
    0
}

/// The sampling behind [`egress`], a global function like
/// [`sipwall_capture_in`].
#[no_mangle]
#[inline(never)]
pub extern "C" fn sipwall_capture_out(skb: *mut __sk_buff, reason: u32, dropped: u32) -> u32 {
    sample_egress(&TcContext::new(skb), reason, dropped != 0);
    0
}

#[inline(always)]
fn sample_ingress(ctx: &XdpContext, reason: u32, dropped: bool) {
    let Some(f) = CAPTURE.get(0) else { return };
    let len = (ctx.data_end() - ctx.data()) as u32;
    if !wanted(f, CAPTURE_IN, f.reasons, reason, dropped) {
        return;
    }
    let Some(mut entry) = reserve() else { return };
    let caplen = fill(&mut entry, f, len, reason, dropped, 0);
    if caplen == 0 || caplen > MAX_SNAPLEN {
        finish(entry, false);
        return;
    }
    let sample = entry.as_mut_ptr();
    // SAFETY: `sample` is the reserved entry, `data` holds MAX_SNAPLEN
    // bytes and 1 <= caplen <= MAX_SNAPLEN (checked above); the helper
    // copies within the packet or fails.
    let copied =
        unsafe { bpf_xdp_load_bytes(ctx.ctx, 0, (*sample).data.as_mut_ptr().cast(), caplen) };
    finish(entry, copied == 0);
}

#[inline(always)]
fn sample_egress(ctx: &TcContext, reason: u32, dropped: bool) {
    let Some(f) = CAPTURE.get(0) else { return };
    let len = ctx.len();
    if !wanted(f, CAPTURE_OUT, f.out_reasons, reason, dropped) {
        return;
    }
    let Some(mut entry) = reserve() else { return };
    let caplen = fill(&mut entry, f, len, reason, dropped, SAMPLE_OUT);
    if caplen == 0 || caplen > MAX_SNAPLEN {
        finish(entry, false);
        return;
    }
    let sample = entry.as_mut_ptr();
    // SAFETY: as in `sample_ingress`, with the skb's bytes.
    let copied = unsafe {
        bpf_skb_load_bytes(
            ctx.skb.skb as *const _,
            0,
            (*sample).data.as_mut_ptr().cast(),
            caplen,
        )
    };
    finish(entry, copied == 0);
}

/// Whether the filter takes the packet; counts it as matched if so.
#[inline(always)]
fn wanted(f: &CaptureFilter, direction: u32, reasons: u32, reason: u32, dropped: bool) -> bool {
    let verdict = if dropped { CAPTURE_DROP } else { CAPTURE_PASS };
    if f.directions & direction == 0
        || f.verdicts & verdict == 0
        || reason >= 32
        || reasons & (1 << reason) == 0
    {
        return false;
    }
    if let Some(s) = CAPTURE_STATS.get_ptr_mut(0) {
        // SAFETY: a per-CPU slot, written by this CPU only.
        unsafe { (*s).matched += 1 };
    }
    true
}

/// A ring-buffer entry, if this CPU's budget for the second allows one and
/// the ring has room; counts the packet as skipped or lost otherwise.
#[inline(always)]
fn reserve() -> Option<aya_ebpf::maps::ring_buf::RingBufEntry<Sample>> {
    let f = CAPTURE.get(0)?;
    let s = CAPTURE_STATS.get_ptr_mut(0)?;
    // SAFETY: a per-CPU slot, written by this CPU only.
    let s = unsafe { &mut *s };
    // The coarse clock (a tick is precise enough for a one-second
    // window): a packet over the cap pays a load, not a helper call.
    let now = crate::clock::now_ns();
    if now.wrapping_sub(s.window_ns) >= 1_000_000_000 {
        s.window_ns = now;
        s.left = u64::from(f.per_cpu_rate);
    }
    if s.left == 0 {
        s.skipped += 1;
        return None;
    }
    match CAPTURE_RING.reserve::<Sample>(0) {
        Some(entry) => {
            s.left -= 1;
            Some(entry)
        }
        None => {
            s.lost += 1;
            None
        }
    }
}

/// Writes the sample's header; returns the bytes to copy.
#[inline(always)]
fn fill(
    entry: &mut aya_ebpf::maps::ring_buf::RingBufEntry<Sample>,
    f: &CaptureFilter,
    len: u32,
    reason: u32,
    dropped: bool,
    flags: u32,
) -> u32 {
    let mut caplen = if len < f.snaplen { len } else { f.snaplen };
    if caplen > MAX_SNAPLEN {
        caplen = MAX_SNAPLEN;
    }
    if caplen == 0 {
        caplen = 1;
    }
    let sample = entry.as_mut_ptr();
    // SAFETY: the reserved entry, written before it is submitted.
    unsafe {
        (*sample).ts_ns = bpf_ktime_get_ns();
        (*sample).len = len;
        (*sample).caplen = caplen;
        (*sample).reason = reason;
        (*sample).flags = flags | if dropped { SAMPLE_DROP } else { 0 };
    }
    caplen
}

/// Submits the sample when its bytes were copied, else discards it.
#[inline(always)]
fn finish(entry: aya_ebpf::maps::ring_buf::RingBufEntry<Sample>, copied: bool) {
    let Some(s) = CAPTURE_STATS.get_ptr_mut(0) else {
        entry.discard(0);
        return;
    };
    // SAFETY: a per-CPU slot, written by this CPU only.
    let s = unsafe { &mut *s };
    if copied {
        entry.submit(0);
        s.written += 1;
    } else {
        entry.discard(0);
        s.lost += 1;
    }
}
