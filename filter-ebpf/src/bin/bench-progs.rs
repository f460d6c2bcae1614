//! Helper programs for `cargo xtask bench`, kept apart from the filter:
//! the floor (an empty program), a plain XDP_DROP to compare against, the
//! reference (a minimal hand-written program of sipwall's default policy
//! for plain IPv4), and traffic generators for BPF_PROG_TEST_RUN's live-frames mode, which send
//! every frame they see out of the interface named in `GEN_TARGET`.
//!
//! Two flood fronts do for BPF_PROG_TEST_RUN what the generators do for
//! the veth: each run writes the next source into the frame, then tail-calls
//! the program under test (set in `FLOOD_NEXT` by the bench), so that a
//! timed run of one frame is a flood from many sources.
//!
//! The generators expect Ethernet + IPv4 (no options) + UDP, at least 42
//! bytes, and rewrite the source address, the destination port and the
//! checksums of each frame, so that one template becomes a stream of
//! different packets. Live frames may come back from a recycled page as the
//! previous run left them, so every field is written in full each time.
// The BPF target has no std and no main. The host build exists only so
// that `cargo clippy --workspace` checks this crate too: there it is a
// plain binary with an empty main.
#![cfg_attr(target_arch = "bpf", no_std, no_main)]

use aya_ebpf::{
    bindings::xdp_action,
    helpers::bpf_redirect,
    macros::{map, xdp},
    maps::{Array, PerCpuArray, ProgramArray},
    programs::XdpContext,
};

/// Interface index the generators redirect to.
#[map]
static GEN_TARGET: Array<u32> = Array::with_max_entries(1, 0);

/// Frames generated on each CPU: picks the next source and port.
#[map]
static GEN_SEQ: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

/// The floor: the cost of running any XDP program at all.
#[xdp]
pub fn bench_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// A stand-in for sipwall's capture flag (`filter_common::capture`).
#[map]
static BENCH_CAPTURE: Array<filter_common::capture::CaptureFilter> = Array::with_max_entries(1, 0);

/// The floor plus what every packet pays while no capture runs: the
/// capture flag's load and its branch, as in sipwall's `capture::running`.
#[xdp]
pub fn bench_capture_flag(_ctx: XdpContext) -> u32 {
    if BENCH_CAPTURE.get(0).is_some_and(|f| f.on != 0) {
        return xdp_action::XDP_ABORTED;
    }
    xdp_action::XDP_PASS
}

/// The fastest an XDP filter can drop a packet.
#[xdp]
pub fn bench_drop(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_DROP
}

/// Packets and bytes per reason (sipwall's `Reason` indices), per CPU, of
/// `bench_reference`.
#[map]
static REF_COUNTERS: PerCpuArray<[u64; 2]> = PerCpuArray::with_max_entries(7, 0);

// sipwall's reason indices (filter_common::Reason).
const SIP_ALLOWED: u32 = 0;
const SIP_DENIED: u32 = 1;
const RTP_ALLOWED: u32 = 2;
const FRAGMENT: u32 = 3;
const OTHER: u32 = 4;
const NON_IP: u32 = 5;
const MALFORMED: u32 = 6;

/// The provider's two signalling addresses as a native load of the packet
/// reads them (network byte order on a little-endian target).
const PROVIDER_A: u32 = u32::from_ne_bytes([44, 229, 228, 186]);
const PROVIDER_B: u32 = u32::from_ne_bytes([44, 238, 177, 138]);

/// The reference: what a hand-written XDP program of sipwall's default
/// policy costs, for plain IPv4 only (no VLAN tags, no IPv4 options, no
/// IPv6: those are malformed or non-IP here). It reads the headers in
/// place, matches the provider's two addresses inline, polices 5060/5061
/// and passes UDP to 40000-60000, and counts per reason and CPU. It keeps no
/// per-source accounting of denied packets.
#[xdp]
pub fn bench_reference(ctx: XdpContext) -> u32 {
    reference::<false>(ctx)
}

/// The reference with the least per-source accounting of denied packets
/// there is: a per-CPU table of IPv4 sources placed by hash, a source's
/// packets and bytes added in its slot, a new source overwriting whoever
/// held it. What sipwall's accounting adds to the reference should not be
/// less than what this adds.
#[xdp]
pub fn bench_reference_sources(ctx: XdpContext) -> u32 {
    reference::<true>(ctx)
}

/// One source's counts in `REF_SOURCES`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RefSourceSlot {
    /// The address as the packet holds it.
    addr: u32,
    packets: u32,
    bytes: u64,
}

/// Slots of `REF_SOURCES`: as many as fit in one per-CPU value (32 KiB).
const REF_SOURCE_SLOTS: usize = 2048;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct RefSourceTable {
    slots: [RefSourceSlot; REF_SOURCE_SLOTS],
}

/// `bench_reference_sources`'s counts per source, per CPU.
#[map]
static REF_SOURCES: PerCpuArray<RefSourceTable> = PerCpuArray::with_max_entries(1, 0);

/// Counts a denied packet from `src` in its slot.
#[inline(always)]
fn count_source(src: u32, bytes: u64) {
    let slot = (src.wrapping_mul(0x9e37_79b9) >> (32 - REF_SOURCE_SLOTS.trailing_zeros())) as usize;
    if let Some(table) = REF_SOURCES.get_ptr_mut(0) {
        // SAFETY: a per-CPU value, written by this CPU only; the index is
        // below REF_SOURCE_SLOTS.
        let s = unsafe { &mut (*table).slots[slot] };
        if s.addr == src {
            s.packets += 1;
            s.bytes += bytes;
        } else {
            s.addr = src;
            s.packets = 1;
            s.bytes = bytes;
        }
    }
}

/// The references' one body; `PER_SOURCE` adds the per-source counts.
#[inline(always)]
fn reference<const PER_SOURCE: bool>(ctx: XdpContext) -> u32 {
    let start = ctx.data();
    let end = ctx.data_end();
    let bytes = (end - start) as u64;
    if start + 14 > end {
        return count::<MALFORMED>(bytes, xdp_action::XDP_DROP);
    }
    // SAFETY: within the 14 bytes checked.
    let ethertype = unsafe { ((start + 12) as *const u16).read() };
    if ethertype != 0x0800u16.to_be() {
        return count::<NON_IP>(bytes, xdp_action::XDP_PASS);
    }
    if start + 34 > end {
        return count::<MALFORMED>(bytes, xdp_action::XDP_DROP);
    }
    // SAFETY: within the 34 bytes checked (Ethernet and a 20-byte IPv4
    // header); packet loads may be unaligned.
    let (version_ihl, frag, proto, src) = unsafe {
        (
            ((start + 14) as *const u8).read(),
            ((start + 20) as *const u16).read(),
            ((start + 23) as *const u8).read(),
            ((start + 26) as *const u32).read(),
        )
    };
    if version_ihl != 0x45 {
        return count::<MALFORMED>(bytes, xdp_action::XDP_DROP);
    }
    if u16::from_be(frag) & 0x1fff != 0 {
        return count::<FRAGMENT>(bytes, xdp_action::XDP_PASS);
    }
    let l4_len = match proto {
        17 => 8,
        6 => 20,
        _ => return count::<OTHER>(bytes, xdp_action::XDP_PASS),
    };
    if start + 34 + l4_len > end {
        return count::<MALFORMED>(bytes, xdp_action::XDP_DROP);
    }
    // SAFETY: within the transport header checked.
    let dport = u16::from_be(unsafe { ((start + 36) as *const u16).read() });
    if dport == 5060 || dport == 5061 {
        if src == PROVIDER_A || src == PROVIDER_B {
            return count::<SIP_ALLOWED>(bytes, xdp_action::XDP_PASS);
        }
        if PER_SOURCE {
            count_source(src, bytes);
        }
        return count::<SIP_DENIED>(bytes, xdp_action::XDP_DROP);
    }
    if proto == 17 && (40000..=60000).contains(&dport) {
        return count::<RTP_ALLOWED>(bytes, xdp_action::XDP_PASS);
    }
    count::<OTHER>(bytes, xdp_action::XDP_PASS)
}

/// Counts a packet of `bytes` under reason `R` and returns `action`.
#[inline(always)]
fn count<const R: u32>(bytes: u64, action: u32) -> u32 {
    if let Some(c) = REF_COUNTERS.get_ptr_mut(R) {
        // SAFETY: a per-CPU slot, written by this CPU only.
        unsafe {
            (*c)[0] += 1;
            (*c)[1] += bytes;
        }
    }
    action
}

/// Sends the template as it is.
#[xdp]
pub fn bench_gen_same(_ctx: XdpContext) -> u32 {
    redirect()
}

/// A SIP flood: UDP to port 5060 from 482 addresses of 198.51.100.0/24 and
/// 203.0.113.0/24 (none of them allowlisted).
#[xdp]
pub fn bench_gen_flood(ctx: XdpContext) -> u32 {
    let seq = next_seq();
    let host = 10 + (seq % 241) as u8;
    let net = if seq & 1 == 0 {
        [198, 51, 100]
    } else {
        [203, 0, 113]
    };
    rewrite(&ctx, [net[0], net[1], net[2], host], 5060)
}

/// A SIP flood over IPv6 from 65,536 sources of 2001:db8:7::/112, none
/// allowlisted, each in turn: far more than the per-CPU cache of denied
/// sources holds (4,096 slots), so nearly every packet evicts a source from
/// the cache into the LRU map, which itself holds 16,384: the costliest
/// case of the per-source accounting.
#[xdp]
pub fn bench_gen_flood6(ctx: XdpContext) -> u32 {
    let seq = next_seq();
    rewrite_v6_source(&ctx, seq as u16)
}

/// The same flood with each source sending twice in a row: enough to be
/// flushed from the cache into the LRU map of denied sources under the
/// single-packet rule, so that, without a budget on those inserts, every
/// other packet would cost one.
#[xdp]
pub fn bench_gen_flood6_twice(ctx: XdpContext) -> u32 {
    let seq = next_seq();
    rewrite_v6_source(&ctx, (seq >> 1) as u16)
}

/// A trunk's traffic: 15 of 16 frames RTP from 482 media sources to even
/// ports of 40000-59998, one of 16 SIP from the provider's two addresses.
#[xdp]
pub fn bench_gen_mix(ctx: XdpContext) -> u32 {
    let seq = next_seq();
    if seq & 15 == 0 {
        let src = if seq & 16 == 0 {
            [44, 229, 228, 186]
        } else {
            [44, 238, 177, 138]
        };
        return rewrite(&ctx, src, 5060);
    }
    let host = 10 + (seq % 241) as u8;
    let net = if seq & 1 == 0 {
        [198, 51, 100]
    } else {
        [203, 0, 113]
    };
    let port = 40000 + 2 * (seq % 10000) as u16;
    rewrite(&ctx, [net[0], net[1], net[2], host], port)
}

#[inline(always)]
fn next_seq() -> u32 {
    match GEN_SEQ.get_ptr_mut(0) {
        // SAFETY: a per-CPU slot, written by this CPU only.
        Some(p) => unsafe {
            *p = (*p).wrapping_add(1);
            *p
        },
        None => 0,
    }
}

#[inline(always)]
fn redirect() -> u32 {
    match GEN_TARGET.get(0) {
        // SAFETY: a helper without memory arguments.
        Some(ifindex) => unsafe { bpf_redirect(*ifindex, 0) as u32 },
        None => xdp_action::XDP_ABORTED,
    }
}

const IP: usize = 14;
const UDP: usize = IP + 20;

/// Writes source address and destination port, zeroes the UDP checksum
/// (optional in IPv4) and recomputes the IPv4 header checksum.
#[inline(always)]
fn rewrite(ctx: &XdpContext, src: [u8; 4], dport: u16) -> u32 {
    let start = ctx.data();
    if start + UDP + 8 > ctx.data_end() {
        return xdp_action::XDP_ABORTED;
    }
    let ip = (start + IP) as *mut [u8; 20];
    let udp = (start + UDP) as *mut [u8; 8];
    // SAFETY: both headers lie within the bounds checked above.
    unsafe {
        let h = &mut *ip;
        h[10] = 0;
        h[11] = 0;
        h[12..16].copy_from_slice(&src);
        let mut sum = 0u32;
        let mut i = 0;
        while i < 20 {
            sum += u32::from(u16::from_be_bytes([h[i], h[i + 1]]));
            i += 2;
        }
        sum = (sum & 0xffff) + (sum >> 16);
        sum = (sum & 0xffff) + (sum >> 16);
        let csum = !(sum as u16);
        h[10..12].copy_from_slice(&csum.to_be_bytes());
        let u = &mut *udp;
        u[2..4].copy_from_slice(&dport.to_be_bytes());
        u[6] = 0;
        u[7] = 0;
    }
    redirect()
}

const IP6_SRC_LOW: usize = IP + 8 + 14;
const UDP6: usize = IP + 40;

/// Writes the last two bytes of the IPv6 source address. The UDP checksum
/// goes stale: XDP receivers never read it, and the stack of the "no
/// filter" receiver drops the frame after the work being compared.
#[inline(always)]
fn rewrite_v6_source(ctx: &XdpContext, low: u16) -> u32 {
    let start = ctx.data();
    if start + UDP6 + 8 > ctx.data_end() {
        return xdp_action::XDP_ABORTED;
    }
    let src_low = (start + IP6_SRC_LOW) as *mut [u8; 2];
    // SAFETY: the two bytes lie within the bounds checked above.
    unsafe { *src_low = low.to_be_bytes() };
    redirect()
}

/// The program a flood front hands each frame to (index 0).
#[map]
static FLOOD_NEXT: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// Sources of [`bench_flood_front`]: hosts 10-250 of the three IPv4
/// documentation networks, in turn, as tier 2's generator picks them: none
/// is a lab host (the PBX is 192.0.2.1).
const FLOOD_SOURCES_V4: u32 = 3 * 241;

/// A flood front for IPv4 frames (Ethernet, IPv4 without options): the
/// source becomes the next of [`FLOOD_SOURCES_V4`] addresses. The header
/// checksum goes stale; no program timed behind it reads it.
#[xdp]
pub fn bench_flood_front(ctx: XdpContext) -> u32 {
    let start = ctx.data();
    if start + UDP > ctx.data_end() {
        return xdp_action::XDP_ABORTED;
    }
    let i = next_seq() % FLOOD_SOURCES_V4;
    let net = match i / 241 {
        0 => [192, 0, 2],
        1 => [198, 51, 100],
        _ => [203, 0, 113],
    };
    let src = (start + IP + 12) as *mut [u8; 4];
    // SAFETY: the four bytes lie within the bounds checked above.
    unsafe { *src = [net[0], net[1], net[2], 10 + (i % 241) as u8] };
    flood_next(&ctx)
}

/// A flood front for IPv6 frames (Ethernet, IPv6): the last two bytes of
/// the source count up, 65,536 sources in turn.
#[xdp]
pub fn bench_flood_front6(ctx: XdpContext) -> u32 {
    let start = ctx.data();
    if start + IP6_SRC_LOW + 2 > ctx.data_end() {
        return xdp_action::XDP_ABORTED;
    }
    let src_low = (start + IP6_SRC_LOW) as *mut [u8; 2];
    // SAFETY: the two bytes lie within the bounds checked above.
    unsafe { *src_low = (next_seq() as u16).to_be_bytes() };
    flood_next(&ctx)
}

/// Tail-calls the program under test; XDP_ABORTED if none is set.
#[inline(always)]
fn flood_next(ctx: &XdpContext) -> u32 {
    // SAFETY: the context is this program's own; a tail call that fails
    // (no program at index 0) returns here.
    unsafe { FLOOD_NEXT.tail_call(ctx, 0) };
    xdp_action::XDP_ABORTED
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
