//! The TC egress program's work: learn the host's own flows for strict
//! mode's replies. Every outgoing TCP, UDP or SCTP packet, and every ICMP
//! echo request, enters or refreshes its flow in `FLOWS`, keyed the way the
//! XDP program keys the answer (remote end first). Nothing is dropped here.
use aya_ebpf::helpers::bpf_ktime_get_coarse_ns;
use filter_common::{FlowKey, FlowSeen, FLOW_REFRESH_NS};

use crate::{
    maps::FLOWS,
    parse::{destination, Packet, Parsed, IPPROTO_ICMP, IPPROTO_ICMPV6},
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
            l4,
            end,
        } => {
            let echo = if v6 {
                ICMPV6_ECHO_REQUEST
            } else {
                ICMP_ECHO_REQUEST
            };
            let icmp = if v6 { IPPROTO_ICMPV6 } else { IPPROTO_ICMP };
            if proto != icmp || l4 + 8 > end || pkt.load::<u8>(l4) != Some(echo) {
                return;
            }
            let (Some(id), Some(dst)) = (pkt.load::<u16>(l4 + 4), destination(pkt, v6, l3)) else {
                return;
            };
            FlowKey {
                remote: dst,
                local: src,
                ports: u32::from(id) << 16,
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
