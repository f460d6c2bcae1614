//! Types and constants the XDP program and the `sipwall` tool must agree on:
//! the reasons a packet is counted under, map names, map value layouts and
//! the limits of each map. Everything here is `no_std` and `repr(C)` without
//! padding, so both sides read the same bytes.
#![no_std]

mod allowlist;
mod bans;
pub mod capture;
mod flows;
mod limits;
pub mod maps;
pub mod media;
mod pins;
mod policy;
mod reasons;
mod sources;

pub use allowlist::*;
pub use bans::*;
pub use flows::*;
pub use limits::*;
pub use pins::*;
pub use policy::*;
pub use reasons::*;
pub use sources::*;

/// Asserts at compile time that a map value type has exactly the size of
/// its fields (no padding the two sides could read differently) and is a
/// multiple of 8 bytes (the kernel rounds map values up to 8).
macro_rules! assert_pod_size {
    ($ty:ty, $size:expr) => {
        const _: () = assert!(core::mem::size_of::<$ty>() == $size);
        const _: () = assert!(core::mem::size_of::<$ty>().is_multiple_of(8));
    };
}
assert_pod_size!(Counter, 16);
assert_pod_size!(
    Policy,
    4 + 4
        + 4
        + 4
        + 8
        + 4 * 8
        + 8
        + INLINE_PREFIXES * 8
        + INLINE_PREFIXES * 32
        + PORT_WORDS * 8
        + 8
        + MAX_STRICT_RULES * 40
        + RULE_PORT_WORDS * 8
        + 8
);
assert_pod_size!(StrictRule, 40);
assert_pod_size!(
    EgressPolicy,
    16 + MAX_EGRESS_RULES * 40 + MAX_DNS_ENTRIES * 40 + RULE_BLOCKS * 4
);
assert_pod_size!(FlowKey, 40);
assert_pod_size!(FlowKeyV4, 16);
assert_pod_size!(FlowSeen, 8);
assert_pod_size!(ReplySlot, 48);
assert_pod_size!(HostSlot, 4 + 4 + 32);
assert_pod_size!(DeniedSlot, 16 + 8 + 8 + 8);
assert_pod_size!(DeniedBlock, DENIED_BLOCK_SLOTS as usize * 40);
const _: () = assert!(DENIED_CACHE_SLOTS.is_multiple_of(DENIED_BLOCK_SLOTS));
const _: () = assert!(core::mem::size_of::<DeniedBlock>() <= 32 * 1024);
assert_pod_size!(LogBucket, 16);
assert_pod_size!(RateState, 24);
assert_pod_size!(RateSlot, 40);
assert_pod_size!(BanEntry, 16);
assert_pod_size!(CoarseClock, 24);
assert_pod_size!(InsertBudget, 16);
assert_pod_size!(AttachInfo, 4 * 4 + 8);
// Keys, not values: no padding, no rounding needed.
const _: () = assert!(core::mem::size_of::<SourceKey>() == 16);
const _: () = assert!(core::mem::size_of::<DropKey>() == 24);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all are repr(C), without padding (sizes asserted above), and
    // valid for any bit pattern.
    unsafe impl aya::Pod for super::Counter {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Policy {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SourceKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::DropKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::LogBucket {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::DeniedSlot {}
    // SAFETY: as above (an array of `DeniedSlot`).
    unsafe impl aya::Pod for super::DeniedBlock {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::HostSlot {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::AttachInfo {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::RateState {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::BanEntry {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::RateSlot {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::StrictRule {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::EgressPolicy {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FlowKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FlowKeyV4 {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FlowSeen {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ReplySlot {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flow gate never closes before its flow's idle time is up, with
    /// any HZ Linux has, and never reads a slot never written as open.
    #[test]
    fn a_flow_gate_slot_outlasts_its_flow() {
        for hz in [100u64, 250, 300, 1000] {
            let tick_ns = 1_000_000_000 / hz;
            for proto in [6u32, 17, 132, 1, 58] {
                // Jiffies start 5 minutes before the 32-bit wrap.
                for start in [0u64, (1 << 32) - 300 * hz, 1 << 40] {
                    let until = flow_gate_until(start, proto);
                    let idle_ticks = flow_idle_ns(proto).div_ceil(tick_ns);
                    assert!(flow_gate_open(until, start));
                    assert!(flow_gate_open(until, start + idle_ticks));
                    assert!(!flow_gate_open(0, start + idle_ticks));
                }
            }
        }
    }

    #[test]
    fn a_closed_flow_gate_slot_reads_closed() {
        let until = flow_gate_until(1_000, 17);
        assert!(!flow_gate_open(until, 1_000 + (1 << 20)));
        assert!(flow_gate_open(FLOW_GATE_ALWAYS, 12_345));
    }

    #[test]
    fn the_flow_gate_slot_is_the_same_from_both_keys() {
        let v4 = FlowKeyV4 {
            remote: 0x0a00_0001,
            local: 0x0a00_0002,
            ports: 0x01bb_9c41,
            proto: 6,
        };
        assert_eq!(
            v4.gate_slot(),
            flow_gate_slot(0x0a00_0001, 0x0a00_0002, 0x01bb_9c41, 6)
        );
        assert!(v4.gate_slot() < FLOW_GATE_SLOTS);
        let v6 = FlowKey {
            remote: [1, 2],
            local: [3, 4],
            ports: 7,
            proto: 17,
        };
        assert_eq!(v6.gate_slot(), flow_gate_slot(1 ^ 2, 3 ^ 4, 7, 17));
        assert!(v6.gate_slot() < FLOW_GATE_SLOTS);
    }

    /// A TCP entry for any source on ports `first..=last`.
    fn entry(first: u16, last: u16) -> StrictRule {
        StrictRule {
            proto: 6,
            port_first: first,
            port_last: last,
            net: [0; 2],
            mask: [0; 2],
        }
    }

    /// Every port an entry covers has its bit; the bitmap may say yes to
    /// more ports, never no to one of them.
    #[test]
    fn rule_port_bits_cover_every_ruled_port() {
        let entries = [entry(22, 22), entry(8000, 8100), entry(65535, 65535)];
        let bits = rule_ports(&entries);
        for e in &entries {
            for port in e.port_first..=e.port_last {
                assert!(rule_port(&bits, port), "port {port}");
            }
        }
        assert!(!rule_port(&bits, 443));
        assert!(!rule_port(&bits, 40000));
        let all = rule_ports(&[entry(0, 65535)]);
        assert!((0..=65535u16).all(|p| rule_port(&all, p)));
        assert!(!rule_port(&rule_ports(&[]), 22));
    }

    /// Every entry that may take a port has its bit in the port's word.
    #[test]
    fn rule_index_names_every_entry_that_may_take_a_port() {
        let entries = [
            entry(80, 80),
            entry(443, 443),
            entry(8000, 8100),
            entry(0, 65535),
        ];
        let index = rule_index(&entries);
        for (i, e) in entries.iter().enumerate() {
            for port in e.port_first..=e.port_last {
                assert!(
                    rule_candidates(&index, port) & (1 << i) != 0,
                    "entry {i}, port {port}"
                );
            }
        }
        // Only the entry for every port, and the block's neighbours.
        assert_eq!(rule_candidates(&index, 40000), 0b1000);
        assert_eq!(rule_candidates(&index, 443), 0b1010);
        assert_eq!(rule_candidates(&index, 65), 0b1001);
        assert_eq!(rule_candidates(&rule_index(&[]), 22), 0);
        // Entries past the 32 a word holds are not indexed.
        let many = [entry(22, 22); 40];
        assert_eq!(rule_candidates(&rule_index(&many), 22), u32::MAX);
    }
}
