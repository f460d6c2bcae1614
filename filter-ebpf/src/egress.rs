//! The TC egress program's work: learn the host's own flows for strict
//! mode's replies. Every outgoing TCP, UDP or SCTP packet, and every ICMP
//! echo request, enters or refreshes its flow in `FLOWS`, keyed the way the
//! XDP program keys the answer (remote end first). Nothing is dropped here.
use aya_ebpf::helpers::bpf_ktime_get_coarse_ns;
use filter_common::{FlowKey, FlowSeen, FLOW_REFRESH_NS};

use crate::{
    maps::FLOWS,
    parse::{destination, icmp_id, Packet, Parsed, ICMP_FULL},
};

const ICMP_ECHO_REQUEST: u8 = 8;
const ICMPV6_ECHO_REQUEST: u8 = 128;

/// Learns the flow of an outgoing packet, if it has one.
#[inline(always)]
pub fn learn(pkt: Packet, parsed: &Parsed) {
    let key = match *parsed {
        Parsed::Ports {
            v6,
            proto,
            ports,
            src,
            l3,
            ..
        } => {
            let Some(dst) = destination(pkt, v6, l3) else {
                return;
            };
            FlowKey {
                remote: dst,
                local: src,
                // Outgoing, the local port comes first: swap the halves.
                ports: ports.rotate_left(16),
                proto: proto as u32,
            }
        }
        Parsed::OtherProto {
            v6,
            proto,
            src,
            l3,
            icmp,
        } => {
            let echo = if v6 {
                ICMPV6_ECHO_REQUEST
            } else {
                ICMP_ECHO_REQUEST
            };
            if icmp & ICMP_FULL == 0 || icmp as u8 != echo {
                return;
            }
            let Some(dst) = destination(pkt, v6, l3) else {
                return;
            };
            FlowKey {
                remote: dst,
                local: src,
                ports: u32::from(icmp_id(icmp)) << 16,
                proto: proto as u32,
            }
        }
        _ => return,
    };
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
