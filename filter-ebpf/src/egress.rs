//! The TC egress program's work: learn the host's own flows for strict
//! mode's replies. Every outgoing TCP, UDP or SCTP packet, and every ICMP
//! echo request, enters or refreshes its flow in `FLOWS_V4` or `FLOWS_V6`,
//! keyed the way the XDP program keys the answer (remote end first).
//! Nothing is dropped here.
use aya_ebpf::{helpers::bpf_ktime_get_coarse_ns, maps::LruHashMap};
use filter_common::{FlowKey, FlowKeyV4, FlowSeen, FLOW_REFRESH_NS};

use crate::{
    maps::{FLOWS_V4, FLOWS_V6},
    parse::{destination, icmp_id, v4_address, Packet, Parsed, ICMP_FULL},
};

const ICMP_ECHO_REQUEST: u8 = 8;
const ICMPV6_ECHO_REQUEST: u8 = 128;

/// Learns the flow of an outgoing packet, if it has one.
#[inline(always)]
pub fn learn(pkt: Packet, parsed: &Parsed) {
    let (v6, key) = match *parsed {
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
            let key = FlowKey {
                remote: dst,
                local: src,
                // Outgoing, the local port comes first: swap the halves.
                ports: ports.rotate_left(16),
                proto: proto as u32,
            };
            (v6, key)
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
            let key = FlowKey {
                remote: dst,
                local: src,
                ports: u32::from(icmp_id(icmp)) << 16,
                proto: proto as u32,
            };
            (v6, key)
        }
        _ => return,
    };
    if v6 {
        touch(&FLOWS_V6, &key);
    } else {
        let v4 = FlowKeyV4 {
            remote: v4_address(key.remote),
            local: v4_address(key.local),
            ports: key.ports,
            proto: key.proto,
        };
        touch(&FLOWS_V4, &v4);
    }
}

/// Enters a flow, or refreshes its time when it is older than
/// `FLOW_REFRESH_NS`.
#[inline(always)]
fn touch<K>(map: &LruHashMap<K, FlowSeen>, key: &K) {
    // SAFETY: a helper without preconditions.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    match map.get_ptr_mut(key) {
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
            let _ = map.insert(key, FlowSeen { last_out_ns: now }, 0);
        }
    }
}
