//! The TC egress program's work: learn the host's own flows for strict
//! mode's replies. Every outgoing TCP, UDP or SCTP packet, and every ICMP
//! echo request, enters or refreshes its flow in `FLOWS`, keyed the way the
//! XDP program keys the answer (remote end first). Nothing is dropped here:
//! the program learns only what strict egress (`egress_policy`) lets out.
use aya_ebpf::helpers::bpf_ktime_get_coarse_ns;
use filter_common::{FlowKey, FlowSeen, FLOW_REFRESH_NS};

use crate::{
    egress_policy::{Outbound, CLASS_OTHER, CLASS_PORTS},
    maps::FLOWS,
    parse::{icmp_id, ICMP_FULL},
};

const ICMP_ECHO_REQUEST: u32 = 8;
const ICMPV6_ECHO_REQUEST: u32 = 128;

/// The flow of an outgoing packet, if it has one: TCP, UDP and SCTP, and
/// ICMP echo requests (keyed by their identifier).
#[inline(always)]
pub fn flow_of(out: &Outbound) -> Option<FlowKey> {
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
            return None;
        }
        // The identifier's two bytes as the local port.
        u32::from(icmp_id(out.icmp)) << 16
    };
    Some(FlowKey {
        remote: out.dst,
        local: out.src,
        ports,
        proto: out.proto,
    })
}

/// Enters or refreshes a flow the host sent on.
#[inline(always)]
pub fn remember(key: &FlowKey) {
    // SAFETY: a helper without preconditions.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    match FLOWS.get_ptr_mut(key) {
        // A flow that sends a lot costs a lookup, and a write once a second.
        Some(seen) => {
            // SAFETY: the value of a hash map; a racing write from another
            // CPU stores a time just as recent.
            unsafe {
                if now.wrapping_sub((*seen).last_out_ns) >= FLOW_REFRESH_NS {
                    (*seen).last_out_ns = now;
                }
            }
        }
        None => {
            let _ = FLOWS.insert(key, FlowSeen { last_out_ns: now }, 0);
        }
    }
}
