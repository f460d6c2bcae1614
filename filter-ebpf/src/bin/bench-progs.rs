//! Helper programs for `cargo xtask bench`, kept apart from the filter:
//! the floor (an empty program), a plain XDP_DROP to compare against, and
//! traffic generators for BPF_PROG_TEST_RUN's live-frames mode, which send
//! every frame they see out of the interface named in `GEN_TARGET`.
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
    maps::{Array, PerCpuArray},
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

/// The fastest an XDP filter can drop a packet.
#[xdp]
pub fn bench_drop(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_DROP
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
        // SAFETY: a valid element of a per-CPU array: only this CPU
        // touches it, and XDP programs do not preempt each other on a CPU.
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
        // SAFETY: a helper call with plain integer arguments.
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
    // SAFETY: both headers lie within [data, data_end), checked above, and
    // the program is the packet's only writer.
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
