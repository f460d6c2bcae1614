//! sipwall's XDP program: parse, decide, count, and return the verdict.
// The BPF target has no std and no main. The host build exists only so
// that `cargo clippy --workspace` checks this crate too: there it is a
// plain binary with an empty main.
#![cfg_attr(target_arch = "bpf", no_std, no_main)]

mod bans;
mod capture;
mod clock;
mod egress;
mod egress_policy;
mod limits;
mod maps;
mod media;
mod parse;
mod policy;
mod rules;
mod strict;

use aya_ebpf::{
    bindings::{xdp_action, TC_ACT_SHOT, TC_ACT_UNSPEC},
    helpers::{bpf_jiffies64, bpf_ktime_get_ns},
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use filter_common::{
    Counter, DropKey, OutReason, Policy, Reason, SourceKey, DENIED_BLOCK_SLOTS,
    DENIED_BUDGET_PER_TICK, DENIED_CACHE_SLOTS, DENIED_HEAVY_PACKETS, EGRESS_STRICT, FLAG_DRY_RUN,
    FLAG_L3, FLAG_LOG_DENIED, FLAG_STRICT, LOG_RATE_PER_SEC,
};

use crate::{
    maps::{
        ACTIVE, COUNTERS, DENIED, DENIED_BUDGET, DENIED_CACHE, EGRESS_POLICY, EGRESS_SCRATCH,
        LOG_BUCKET, OUT_COUNTERS, POLICY,
    },
    parse::{Packet, Parsed},
};

// `#[xdp]` wraps this function in the program's entry point; inlined, it
// saves every packet a call and its return, which this CPU's return-stack
// mitigations make dear (LLVM stopped inlining it once strict mode made
// the body large: +8 ns on every class).
#[xdp]
#[inline(always)]
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
    let pkt = Packet::new(ctx.data(), ctx.data_end());
    let bytes = (ctx.data_end() - ctx.data()) as u64;
    let guard = policy.flags & FLAG_STRICT == 0;
    // An L3 device's frames start with the IP header: the fast paths,
    // which read Ethernet's ethertype, are not for them.
    let l3 = policy.flags & FLAG_L3 != 0;
    // Guard mode's common packet, plain IPv4 or IPv6 with ports, is
    // decided on a path of its own: its parse result never meets the
    // general walk's other variants, so it stays in registers (2-6 ns a
    // packet here).
    let plain = if l3 { None } else { parse::plain_ipv4(pkt) };
    if guard && !l3 {
        // One path per family: a path that took both would carry the
        // family as data, and the verifier would walk it as many times
        // again as the separate paths together.
        if let Some(plain) = &plain {
            if let Some(parsed) = plain.ports(pkt) {
                let reason = guard_reason(&parsed, policy, generation, bytes);
                return record(&ctx, policy, &parsed, reason);
            }
        } else if let Some(parsed) = parse::plain_ipv6_ports(pkt) {
            let reason = guard_reason(&parsed, policy, generation, bytes);
            return record(&ctx, policy, &parsed, reason);
        }
    }
    // What the packet is: the IPv4 fields already read, or the general walk.
    let parsed = match plain {
        Some(plain) => plain.parsed(pkt),
        None => parse::parse_general(pkt, policy.flags),
    };
    let reason = if guard {
        guard_reason(&parsed, policy, generation, bytes)
    } else if policy::source_banned(&parsed) {
        Reason::Banned
    } else {
        strict::decide(pkt, &parsed, policy, generation, bytes)
    };
    record(&ctx, policy, &parsed, reason)
}

/// Guard mode's table, bans first.
#[inline(always)]
fn guard_reason(parsed: &Parsed, policy: &Policy, generation: u32, bytes: u64) -> Reason {
    if policy::source_banned(parsed) {
        Reason::Banned
    } else {
        policy::decide(parsed, policy, generation, bytes)
    }
}

/// The TC egress program (TCX). In strict egress it judges every outgoing
/// packet (`egress_policy`), counts it and drops what the table drops; in
/// strict ingress it learns the host's own flows from what it lets out, so
/// that their answers pass as `reply`. Otherwise it does nothing. A packet
/// it passes is handed on to whatever runs next.
#[classifier]
pub fn sipwall_egress(ctx: TcContext) -> i32 {
    let generation = match ACTIVE.get(0) {
        Some(g) => *g & 1,
        None => 0,
    };
    // Array lookups with an index below max_entries always succeed.
    let (Some(policy), Some(egress)) = (POLICY.get(generation), EGRESS_POLICY.get(generation))
    else {
        return TC_ACT_UNSPEC;
    };
    let learn = policy.flags & FLAG_STRICT != 0;
    let enforce = egress.flags & EGRESS_STRICT != 0;
    let calls = media::calls_mode(policy);
    if !learn && !enforce && !calls {
        return TC_ACT_UNSPEC;
    }
    // The common packet, untagged IPv4 without options or IPv6 without
    // extension headers, with ports, is read in place at fixed offsets:
    // no call to the parser, no hand-over through the scratch slot. An L3
    // device's frames start with the IP header: not for the fast paths.
    let pkt = Packet::new(ctx.data(), ctx.data_end());
    let fast = if policy.flags & FLAG_L3 != 0 {
        None
    } else {
        match parse::plain_ipv4(pkt) {
            Some(plain) => plain.ports(pkt),
            None => parse::plain_ipv6_ports(pkt),
        }
    };
    let fast = fast.and_then(|p| egress_policy::Outbound::of_ports(pkt, &p));
    let in_place = fast.is_some();
    let outbound = match fast {
        Some(outbound) => outbound,
        None => {
            if egress_policy::sipwall_egress_parse(ctx.skb.skb, policy.flags) != 0 {
                // Headers beyond the linear part of the skb: pull them in
                // and look again.
                if ctx.pull_data(PULL_BYTES).is_ok() {
                    egress_policy::sipwall_egress_parse(ctx.skb.skb, policy.flags);
                }
            }
            let Some(headers) = EGRESS_SCRATCH.get(0) else {
                return TC_ACT_UNSPEC;
            };
            egress_policy::Outbound::of(Packet::new(ctx.data(), ctx.data_end()), headers)
        }
    };
    if enforce {
        // The fast path's packet is decided here, without a call: its
        // class is known, which keeps the verifier's walk of the table
        // short; the general walk's goes through the global function.
        let reason = if in_place {
            outbound.decide_ports(policy, egress, generation)
        } else {
            outbound.decide(generation)
        };
        let dropped = record_out(reason, ctx.len() as u64) && policy.flags & FLAG_DRY_RUN == 0;
        capture::egress(&ctx, reason, dropped);
        if dropped {
            return TC_ACT_SHOT;
        }
    }
    if calls && outbound.is_signalling(policy) {
        media::copy_out(&ctx, policy);
    }
    if learn {
        egress::learn(&outbound);
    }
    TC_ACT_UNSPEC
}

/// Counts an egress decision (an [`OutReason`]'s `u32`); returns whether
/// the reason drops. Indexed by the reason itself rather than a constant
/// per reason: one path instead of one per reason keeps the verifier's
/// walk of the egress program within its budget.
#[inline(always)]
fn record_out(reason: u32, bytes: u64) -> bool {
    if let Some(c) = OUT_COUNTERS.get_ptr_mut(reason) {
        // SAFETY: a per-CPU slot of the map: no other CPU writes it, and
        // the program does not run twice at once on one CPU.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += bytes;
        }
    }
    reason == OutReason::SipDenied as u32 || reason == OutReason::Denied as u32
}

/// Headers the egress program pulls into the linear part when they are
/// not there: Ethernet, two tags, IPv6 with extension headers, TCP.
const PULL_BYTES: u32 = 256;

/// The one exit: count the decision (handing it to a running capture),
/// remember denied sources, and turn the reason into a verdict (a DROP
/// passes in dry-run). Each arm counts under a constant index, so the
/// counter's address does not wait for the decision's data, only for the
/// branch.
#[inline(always)]
fn record(ctx: &XdpContext, policy: &Policy, parsed: &Parsed, reason: Reason) -> u32 {
    let bytes = (ctx.data_end() - ctx.data()) as u64;
    match reason {
        // Calls mode copies signalling for the reader: in the arms whose
        // reason is a constant, so that the verifier does not walk the
        // copy's branches once more for every reason.
        Reason::SipAllowed => {
            count(ctx, policy, Reason::SipAllowed, bytes);
            if media::calls_mode(policy) {
                media::copy_in(ctx, policy);
            }
        }
        Reason::RtpAllowed => count(ctx, policy, Reason::RtpAllowed, bytes),
        Reason::Fragment => count(ctx, policy, Reason::Fragment, bytes),
        // The copy's test comes before the count: the parser's fields it
        // reads need not live across the count (in range mode too).
        Reason::Other => {
            if media::calls_mode(policy) {
                media::copy_from_peer(ctx, policy, parsed);
            }
            count(ctx, policy, Reason::Other, bytes);
        }
        Reason::NonIp => count(ctx, policy, Reason::NonIp, bytes),
        Reason::Essential => count(ctx, policy, Reason::Essential, bytes),
        Reason::Reply => {
            if media::calls_mode(policy) {
                media::copy_from_peer(ctx, policy, parsed);
            }
            count(ctx, policy, Reason::Reply, bytes);
        }
        Reason::RuleAllowed => count(ctx, policy, Reason::RuleAllowed, bytes),
        Reason::RtpOutside => {
            count(ctx, policy, Reason::RtpOutside, bytes);
            count_source(Reason::RtpOutside, parsed, bytes);
            return drop_unless_dry_run(policy);
        }
        Reason::Denied => {
            count(ctx, policy, Reason::Denied, bytes);
            count_source(Reason::Denied, parsed, bytes);
            return drop_unless_dry_run(policy);
        }
        Reason::Malformed => {
            count(ctx, policy, Reason::Malformed, bytes);
            return drop_unless_dry_run(policy);
        }
        Reason::Banned => {
            count(ctx, policy, Reason::Banned, bytes);
            count_source(Reason::Banned, parsed, bytes);
            return drop_unless_dry_run(policy);
        }
        Reason::SipRatelimited => {
            count(ctx, policy, Reason::SipRatelimited, bytes);
            return drop_unless_dry_run(policy);
        }
        Reason::RtpRatelimited => {
            count(ctx, policy, Reason::RtpRatelimited, bytes);
            return drop_unless_dry_run(policy);
        }
        Reason::RtpUnsolicited => {
            count(ctx, policy, Reason::RtpUnsolicited, bytes);
            count_source(Reason::RtpUnsolicited, parsed, bytes);
            return drop_unless_dry_run(policy);
        }
        Reason::RtpInvalid => {
            count(ctx, policy, Reason::RtpInvalid, bytes);
            count_source(Reason::RtpInvalid, parsed, bytes);
            return drop_unless_dry_run(policy);
        }
        Reason::SipDenied => {
            count(ctx, policy, Reason::SipDenied, bytes);
            count_denied(ctx, policy, parsed, bytes);
            return drop_unless_dry_run(policy);
        }
    }
    xdp_action::XDP_PASS
}

/// Counts a packet under `reason` (a constant at each call), and hands it
/// to a running capture with its verdict: kept here, where the reason is a
/// constant, so that it is not carried through the arms (which would keep
/// the verifier from merging their paths).
#[inline(always)]
fn count(ctx: &XdpContext, policy: &Policy, reason: Reason, bytes: u64) {
    if let Some(c) = COUNTERS.get_ptr_mut(reason as u32) {
        // SAFETY: a per-CPU slot of the map: no other CPU writes it, and
        // the program does not run twice at once on one CPU.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += bytes;
        }
    }
    let dropped = reason.drops() && policy.flags & FLAG_DRY_RUN == 0;
    capture::ingress(ctx, reason as u32, dropped);
}

#[inline(always)]
fn drop_unless_dry_run(policy: &Policy) -> u32 {
    if policy.flags & FLAG_DRY_RUN == 0 {
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_PASS
    }
}

/// The key words seen as the rate-limit maps' key type.
#[inline(always)]
fn as_source_key(words: &[u64; 2]) -> &SourceKey {
    // SAFETY: SourceKey is repr(C) around 16 bytes of alignment 1; the
    // words are 16 bytes in the key's memory order.
    unsafe { &*(words as *const [u64; 2]).cast::<SourceKey>() }
}

/// Counts a dropped packet's source under its drop reason (a constant at
/// each call) for `top --reason`.
#[inline(always)]
fn count_source(reason: Reason, parsed: &Parsed, bytes: u64) -> Option<[u64; 2]> {
    let key = match *parsed {
        Parsed::Ports { src, .. }
        | Parsed::OtherProto { src, .. }
        | Parsed::Fragment { src, .. } => src,
        _ => return None,
    };
    // A source that keeps sending stays in its cache slot and costs an
    // array access; a new one pushes the slot's old source into DENIED,
    // unless that one sent a single packet: in a flood of spoofed sources
    // nearly every source is such, and remembering each would cost an LRU
    // insert per packet (a third of XDP_DROP's rate in the bench's
    // 65,536-source flood, nine tenths without). A source of a few packets
    // goes there within the CPU's budget per tick, and one of many always,
    // taking from the budget only for a new entry (see
    // `filter_common::DENIED_BUDGET_PER_TICK`).
    let folded = key[0] ^ key[1] ^ (reason as u64);
    let hash = ((folded as u32) ^ ((folded >> 32) as u32)).wrapping_mul(0x9e37_79b9);
    let slot = hash >> (32 - DENIED_CACHE_SLOTS.trailing_zeros());
    match DENIED_CACHE.get_ptr_mut(slot / DENIED_BLOCK_SLOTS) {
        Some(block) => {
            // SAFETY: a per-CPU block, no other CPU writes it; the index is
            // below DENIED_BLOCK_SLOTS. `addr` is the first field of a
            // slot, and slots (40 bytes) start 8-byte aligned in an
            // 8-byte-aligned map value, so it can be read and written as
            // two u64 words.
            let s = unsafe { &mut (*block).slots[(slot % DENIED_BLOCK_SLOTS) as usize] };
            // SAFETY: as above.
            let addr = unsafe { &mut *s.addr.as_mut_ptr().cast::<[u64; 2]>() };
            if s.packets != 0 && *addr == key && s.reason == reason as u32 {
                s.packets += 1;
                s.bytes += bytes;
            } else {
                if s.packets >= DENIED_HEAVY_PACKETS {
                    add_denied(*addr, s.reason, s.packets, s.bytes, false);
                } else if s.packets > 1 && take_budget() {
                    add_denied(*addr, s.reason, s.packets, s.bytes, true);
                }
                *addr = key;
                s.reason = reason as u32;
                s.packets = 1;
                s.bytes = bytes;
            }
        }
        None => add_denied(key, reason as u32, 1, bytes, false),
    }
    Some(key)
}

#[inline(always)]
fn count_denied(ctx: &XdpContext, policy: &Policy, parsed: &Parsed, bytes: u64) {
    let Some(key) = count_source(Reason::SipDenied, parsed, bytes) else {
        return;
    };
    if policy.flags & FLAG_LOG_DENIED != 0 && take_log_token() {
        log_denied(ctx, key[0], key[1]);
    }
}

/// Adds to a source's counters in the LRU map of dropped sources; a new
/// entry needs a unit of the budget, unless the caller `paid` one.
#[inline(always)]
fn add_denied(addr: [u64; 2], reason: u32, packets: u64, bytes: u64, paid: bool) {
    // The key's words in memory order, as the map stores them: no byte
    // stores read back as wider words.
    #[repr(C, align(8))]
    struct Key {
        addr: [u64; 2],
        reason: u32,
        reserved: u32,
    }
    let key = Key {
        addr,
        reason,
        reserved: 0,
    };
    // SAFETY: `DropKey` is repr(C): 16 address bytes then two u32, the
    // layout of `Key` (whose words keep the bytes in memory order).
    let key = unsafe { &*(&key as *const Key).cast::<DropKey>() };
    match DENIED.get_ptr_mut(key) {
        // SAFETY: a per-CPU value of the LRU map, written by this CPU only.
        Some(c) => unsafe {
            (*c).packets += packets;
            (*c).bytes += bytes;
        },
        None => {
            if paid || take_budget() {
                let first = Counter { packets, bytes };
                let _ = DENIED.insert(key, first, 0);
            }
        }
    }
}

/// Whether this CPU may still write to `DENIED` in this tick (see
/// `filter_common::DENIED_BUDGET_PER_TICK`); takes one unit if so.
#[inline(always)]
fn take_budget() -> bool {
    let Some(b) = DENIED_BUDGET.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: a helper without preconditions (a load of `jiffies_64`).
    let jiffy = unsafe { bpf_jiffies64() };
    // SAFETY: a per-CPU slot, written by this CPU only.
    let b = unsafe { &mut *b };
    if b.jiffy != jiffy {
        b.jiffy = jiffy;
        b.left = DENIED_BUDGET_PER_TICK;
    }
    if b.left == 0 {
        return false;
    }
    b.left -= 1;
    true
}

/// The rare path: a log record for a denied source, given as its key's
/// words (in registers: a pointer to the parser's result would keep that
/// in memory on the hot path too).
#[inline(never)]
fn log_denied(ctx: &XdpContext, w0: u64, w1: u64) {
    if w0 == 0 && w1 as u32 == 0xffff_0000 {
        let v4 = u32::from_be((w1 >> 32) as u32);
        aya_log_ebpf::info!(ctx, "denied signalling from {:i}", v4)
    } else {
        // SAFETY: any 16 bytes are a valid [u8; 16].
        let v6 = unsafe { core::mem::transmute::<[u64; 2], [u8; 16]>([w0, w1]) };
        aya_log_ebpf::info!(ctx, "denied signalling from {:i}", v6)
    }
}

/// Token bucket per CPU: at most `LOG_RATE_PER_SEC` records a second, so a
/// flood of denied packets cannot become a flood of log records.
#[inline(always)]
fn take_log_token() -> bool {
    let Some(b) = LOG_BUCKET.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: a helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    // SAFETY: a per-CPU slot, written by this CPU only.
    let b = unsafe { &mut *b };
    if now.wrapping_sub(b.refilled_ns) >= 1_000_000_000 {
        b.refilled_ns = now;
        b.tokens = LOG_RATE_PER_SEC;
    }
    if b.tokens == 0 {
        return false;
    }
    b.tokens -= 1;
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
