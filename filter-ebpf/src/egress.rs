//! The TC egress program's work: learn the host's own flows for strict
//! mode's replies. Every outgoing TCP, UDP or SCTP packet, and every ICMP
//! echo request, enters or refreshes its flow in `FLOWS_V4` or `FLOWS_V6`,
//! keyed the way the XDP program keys the answer (remote end first).
//! Nothing is dropped here: the program learns only what strict egress
//! (`egress_policy`) lets out.
use aya_ebpf::{helpers::bpf_jiffies64, maps::LruHashMap};
use filter_common::{
    flow_gate_until, reply_slot, FlowKey, FlowKeyV4, FlowSeen, FLOW_GATE_ALWAYS, FLOW_REFRESH_NS,
    REPLY_FAMILY_V4, REPLY_FAMILY_V6, TICK_MAX_NS,
};

use crate::{
    clock,
    egress_policy::{Outbound, CLASS_OTHER, CLASS_PORTS},
    maps::{FLOWS_V4, FLOWS_V6, FLOW_GATE, LEARNT_CACHE},
    parse::{icmp_id, v4_address, ICMP_FULL},
};

const ICMP_ECHO_REQUEST: u32 = 8;
const ICMPV6_ECHO_REQUEST: u32 = 128;

/// Learns the flow of an outgoing packet, if it has one: TCP, UDP and
/// SCTP, and ICMP echo requests (keyed by their identifier).
#[inline(always)]
pub fn learn(out: &Outbound) {
    let ports = if out.class == CLASS_PORTS {
        // Outgoing, the local port comes first: swap the halves.
        out.ports.rotate_left(16)
    } else {
        let echo = if out.v6 != 0 {
            ICMPV6_ECHO_REQUEST
        } else {
            ICMP_ECHO_REQUEST
        };
        if out.class != CLASS_OTHER || out.icmp & ICMP_FULL == 0 || out.icmp & 0xff != echo {
            return;
        }
        // The identifier's two bytes as the local port.
        u32::from(icmp_id(out.icmp)) << 16
    };
    // A flow this CPU found or wrote in the map lately, whose time there
    // is not due to be rewritten yet: not looked up again.
    let key = FlowKey {
        remote: out.dst,
        local: out.src,
        ports,
        proto: out.proto,
    };
    // The family goes into the cached key, as in the reply cache: the
    // address words of an IPv4 flow and of an IPv6 flow between
    // IPv4-mapped addresses are equal.
    let family = if out.v6 != 0 {
        REPLY_FAMILY_V6
    } else {
        REPLY_FAMILY_V4
    };
    let cached = FlowKey {
        proto: out.proto | family,
        ..key
    };
    let Some(slot) = LEARNT_CACHE.get_ptr_mut(reply_slot(out.dst, out.src, ports)) else {
        return;
    };
    // SAFETY: a per-CPU slot of the array: no other CPU writes it, and the
    // program does not run twice at once on one CPU.
    let slot = unsafe { &mut *slot };
    // SAFETY: a helper without preconditions (a load of jiffies_64).
    let now_jiffies = unsafe { bpf_jiffies64() };
    if slot.key == cached && (slot.until_jiffies.wrapping_sub(now_jiffies) as i64) > 0 {
        return;
    }
    let fresh_for = if out.v6 != 0 {
        touch(&FLOWS_V6, &key, key.gate_slot(), out.proto)
    } else {
        let key = FlowKeyV4 {
            remote: v4_address(out.dst),
            local: v4_address(out.src),
            ports,
            proto: out.proto,
        };
        touch(&FLOWS_V4, &key, key.gate_slot(), out.proto)
    };
    // Until the map's time is due to be rewritten, counted in the longest
    // jiffies (so the slot runs out first).
    let ticks = fresh_for / TICK_MAX_NS;
    if ticks > 0 {
        slot.key = cached;
        slot.until_jiffies = now_jiffies + ticks;
    }
}

/// Enters a flow, or refreshes its time when it is older than
/// `FLOW_REFRESH_NS`; either way opens its slot `gate` of the flow gate
/// for longer than the new time lets the flow live. Returns how long
/// (ns) the flow's time in the map stays too recent to be rewritten.
#[inline(always)]
fn touch<K>(map: &LruHashMap<K, FlowSeen>, key: &K, gate: u32, proto: u32) -> u64 {
    // The coarse clock as the abuse controls read it: a load while this
    // CPU's tick holds (see `clock`), not a helper call per packet.
    let now = clock::now_ns();
    match map.get_ptr_mut(key) {
        // A flow that sends a lot costs a lookup, and a write once a second.
        Some(seen) => {
            // SAFETY: the value of a hash map; a racing write from another
            // CPU stores a time just as recent.
            unsafe {
                let age = now.wrapping_sub((*seen).last_out_ns);
                if age < FLOW_REFRESH_NS {
                    return FLOW_REFRESH_NS - age;
                }
                (*seen).last_out_ns = now;
            }
        }
        None => {
            let _ = map.insert(key, FlowSeen { last_out_ns: now }, 0);
        }
    }
    open_gate(gate, proto);
    FLOW_REFRESH_NS
}

/// Opens a flow gate slot from now on for a flow of `proto`'s idle time
/// (see `filter_common::flow_gate_slot`). Every writer of a slot writes
/// the same span from its own now: a store racing another can only
/// shorten it by the jiffies between the two reads, which the span's
/// slack covers. A slot userspace opened for good stays so.
#[inline(always)]
fn open_gate(gate: u32, proto: u32) {
    if let Some(slot) = FLOW_GATE.get_ptr_mut(gate) {
        // SAFETY: a helper without preconditions (a load of jiffies_64).
        let now_jiffies = unsafe { bpf_jiffies64() };
        // SAFETY: an element of an array map; a concurrent write from
        // another CPU stores a value of the same span (see above).
        unsafe {
            if *slot != FLOW_GATE_ALWAYS {
                *slot = flow_gate_until(now_jiffies, proto);
            }
        }
    }
}
