//! Many distinct Call-IDs: the dialog table stays at its cap and counts
//! what it evicts.

mod common;

use common::*;
use sipwall_calls::{Direction, Segment, Settings, Tracker, Transport};

/// How many INVITEs: a million with `--release`; in a debug build parsing
/// costs ~150 µs a message, so 50,000 keeps the test near 8 s.
const CALLS: usize = FLOOD_CALLS;
#[cfg(debug_assertions)]
const FLOOD_CALLS: usize = 50_000;
#[cfg(not(debug_assertions))]
const FLOOD_CALLS: usize = 1_000_000;

#[test]
fn distinct_call_ids_stay_capped() {
    let mut t = Tracker::new(Settings {
        max_dialogs: 1000,
        ..settings()
    });
    let body = sdp(PEER_MEDIA, 30000, "");
    let template = Call::new("flood-XXXXXXXX", PEER, HOST).request("INVITE", 1, false, Some(&body));
    let mut bytes = template.into_bytes();
    let at: Vec<usize> = bytes
        .windows(8)
        .enumerate()
        .filter(|(_, w)| w == b"XXXXXXXX")
        .map(|(i, _)| i)
        .collect();
    let (src, dst) = (PEER.parse().unwrap(), HOST.parse().unwrap());
    for n in 0..CALLS {
        let id = format!("{n:08x}");
        for &i in &at {
            bytes[i..i + 8].copy_from_slice(id.as_bytes());
        }
        let seg = Segment {
            time_ns: n as u64,
            direction: Direction::Inbound,
            transport: Transport::Udp,
            src,
            dst,
            tcp_seq: None,
            payload: &bytes,
        };
        t.feed(&seg);
        assert!(t.calls_active() <= 1000);
    }
    let s = t.stats();
    assert_eq!(t.calls_active(), 1000);
    assert_eq!(s.messages, CALLS as u64);
    assert_eq!(s.parse_errors, 0);
    assert_eq!(s.dialogs_evicted, (CALLS - 1000) as u64);
}
