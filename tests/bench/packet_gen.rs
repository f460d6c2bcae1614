//! Tier 2's generator where the kernel refuses XDP live frames: the frames
//! the live-frames generators of bench-progs make (`bench_gen_*`: the same
//! sources, ports and rotation), built here and sent through an AF_PACKET
//! socket out of the router's veth, a batch per `sendmmsg`. The veth hands
//! each frame to the PBX's end in the sending thread's softirq, where the
//! receiver under test runs, as with live frames; the socket and the skb
//! cost the generator more, so rates are lower and every ratio narrower,
//! but the time inside each receiver's program is measured the same way.
use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::Instant,
};

use anyhow::{bail, Context as _, Result};

use crate::progs::{LiveRun, GEN_FLOOD, GEN_FLOOD6, GEN_FLOOD6_TWICE, GEN_MIX, GEN_SAME};

/// Frames handed to the kernel per `sendmmsg`.
const BATCH: usize = 64;

/// One cycle of generator `gen`'s frames, made from `template` as the
/// XDP generator of that name rewrites it for its 1st, 2nd, ... frame.
pub fn cycle(gen: &str, template: &[u8]) -> Result<Vec<Vec<u8>>> {
    let frames = |n: u32, f: &dyn Fn(u32, &mut Vec<u8>)| {
        (1..=n)
            .map(|seq| {
                let mut frame = template.to_vec();
                f(seq, &mut frame);
                frame
            })
            .collect::<Vec<_>>()
    };
    Ok(match gen {
        GEN_SAME => vec![template.to_vec()],
        // 482 sources: hosts .10 to .250, the two /24s in turn.
        GEN_FLOOD => frames(482, &|seq, f| rewrite_v4(f, flood_source(seq), 5060)),
        GEN_FLOOD6 => frames(65_536, &|seq, f| rewrite_v6_low(f, seq as u16)),
        GEN_FLOOD6_TWICE => frames(131_072, &|seq, f| rewrite_v6_low(f, (seq >> 1) as u16)),
        // 1/16 SIP from the provider, the rest RTP to even ports (the live
        // generator's ports run through 10,000; one cycle here 7,712).
        GEN_MIX => frames(16 * 482, &|seq, f| {
            if seq & 15 == 0 {
                let src = if seq & 16 == 0 {
                    [44, 229, 228, 186]
                } else {
                    [44, 238, 177, 138]
                };
                rewrite_v4(f, src, 5060);
            } else {
                rewrite_v4(f, flood_source(seq), 40000 + 2 * (seq % 10000) as u16);
            }
        }),
        other => bail!("no AF_PACKET twin for generator {other}"),
    })
}

fn flood_source(seq: u32) -> [u8; 4] {
    let host = 10 + (seq % 241) as u8;
    if seq & 1 == 0 {
        [198, 51, 100, host]
    } else {
        [203, 0, 113, host]
    }
}

const IP: usize = 14;
const UDP: usize = IP + 20;

/// Source address and destination port of an IPv4 UDP frame, the header
/// checksum recomputed, the UDP checksum left out (0).
fn rewrite_v4(f: &mut [u8], src: [u8; 4], dport: u16) {
    if f.len() < UDP + 8 {
        return;
    }
    f[IP + 12..IP + 16].copy_from_slice(&src);
    f[IP + 10..IP + 12].copy_from_slice(&[0, 0]);
    let mut sum: u32 = f[IP..IP + 20]
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    f[IP + 10..IP + 12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    f[UDP + 2..UDP + 4].copy_from_slice(&dport.to_be_bytes());
    f[UDP + 6..UDP + 8].copy_from_slice(&[0, 0]);
}

/// The last two bytes of an IPv6 frame's source address.
fn rewrite_v6_low(f: &mut [u8], low: u16) {
    const SRC_LOW: usize = IP + 8 + 14;
    if f.len() >= SRC_LOW + 2 {
        f[SRC_LOW..SRC_LOW + 2].copy_from_slice(&low.to_be_bytes());
    }
}

/// Sends `count` frames, going round `frames`, out of interface `ifindex`
/// of the calling thread's network namespace. The run's time is the wall
/// clock's (there is no kernel clock of the run here).
pub fn send(ifindex: u32, frames: &[Vec<u8>], count: u32) -> Result<LiveRun> {
    // SAFETY: a plain socket(2) call; the descriptor is owned below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error()).context("socket(AF_PACKET, SOCK_RAW)");
    }
    // SAFETY: a descriptor just returned by socket(2), owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_ifindex = ifindex as i32;
    // Protocol 0: the socket sends only, it receives nothing.
    // SAFETY: `addr` is a valid sockaddr_ll of the size given.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error()).context("binding the AF_PACKET socket");
    }
    if frames.is_empty() {
        bail!("no frames to send");
    }
    let mut iovs: Vec<libc::iovec> = Vec::with_capacity(BATCH);
    // SAFETY: mmsghdr is plain data; all zeroes is a valid value.
    let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; BATCH];
    let mut next = 0usize;
    let mut sent = 0u32;
    let started = Instant::now();
    while sent < count {
        let n = BATCH.min((count - sent) as usize);
        iovs.clear();
        for _ in 0..n {
            let f = &frames[next % frames.len()];
            next += 1;
            iovs.push(libc::iovec {
                iov_base: f.as_ptr() as *mut libc::c_void,
                iov_len: f.len(),
            });
        }
        for (m, iov) in msgs.iter_mut().zip(iovs.iter_mut()) {
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: `msgs[..n]` point at `iovs[..n]`, which point at frames
        // that outlive the call; the socket is bound to an interface.
        let done = unsafe { libc::sendmmsg(fd.as_raw_fd(), msgs.as_mut_ptr(), n as u32, 0) };
        if done < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENOBUFS) || e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e).context("sendmmsg on the AF_PACKET socket");
        }
        // Frames not taken are sent again from where the kernel stopped.
        let done = done as usize;
        next -= n - done;
        sent += done as u32;
    }
    let wall = started.elapsed();
    Ok(LiveRun {
        wall,
        kernel_ns: wall.as_nanos() as f64 / f64::from(count.max(1)),
    })
}
