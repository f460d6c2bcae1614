//! Many distinct Call-IDs: the dialog table stays at its cap and counts
//! what it evicts.

mod common;

use common::*;
use sipwall_calls::{Action, Direction, Segment, Settings, Tracker, Transport};

/// How many INVITEs: a million with `--release`; in a debug build parsing
/// costs ~180 µs a message, so 25,000 keeps the test near 5 s (10 s on a
/// busy machine).
const CALLS: usize = FLOOD_CALLS;
#[cfg(debug_assertions)]
const FLOOD_CALLS: usize = 25_000;
#[cfg(not(debug_assertions))]
const FLOOD_CALLS: usize = 1_000_000;

/// A short INVITE of ours with a one-line SDP: each opens an Any pinhole
/// pair, so evictions must close them too.
fn invite(id: &str, port: u16) -> String {
    let body = format!("v=0\r\nc=IN IP4 192.0.2.10\r\nm=audio {port} RTP/AVP 0\r\n");
    format!(
        "INVITE sip:1@203.0.113.5 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK{id}\r\n\
         From: <sip:a@192.0.2.10>;tag={id}\r\n\
         To: <sip:1@203.0.113.5>\r\n\
         Call-ID: {id}\r\n\
         CSeq: 1 INVITE\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn distinct_call_ids_stay_capped() {
    let mut t = Tracker::new(Settings {
        max_dialogs: 1000,
        ..settings()
    });
    let (src, dst) = (HOST.parse().unwrap(), PEER.parse().unwrap());
    let mut open = 0i64;
    for n in 0..CALLS {
        let text = invite(&format!("{n:08x}"), 10000 + (n % 5000) as u16 * 2);
        let seg = Segment {
            time_ns: n as u64,
            direction: Direction::Outbound,
            transport: Transport::Udp,
            src,
            dst,
            tcp_seq: None,
            payload: text.as_bytes(),
        };
        for a in t.feed(&seg) {
            open += if matches!(a, Action::Open { .. }) {
                1
            } else {
                -1
            };
        }
        assert!(t.calls_active() <= 1000);
    }
    let s = t.stats();
    assert_eq!(t.calls_active(), 1000);
    assert_eq!(s.messages, CALLS as u64);
    assert_eq!(s.parse_errors, 0);
    assert_eq!(s.dialogs_evicted, (CALLS - 1000) as u64);
    // Only the kept dialogs' pinholes are open: two each.
    assert_eq!(t.open_pinholes().len(), 2000);
    assert_eq!(open, 2000);
}

/// An answered call pushed out of a small dialog table by a flood of
/// INVITEs from the allowlisted peer: its pinholes close by an action when
/// it is evicted, what the tracker lists always equals what its actions
/// opened, and its late BYE changes nothing.
#[test]
fn evicted_call_closes_its_pinholes() {
    let mut h = Harness::with(Settings {
        max_dialogs: 100,
        ..settings()
    });
    let call = Call::new("kept@203.0.113.5", PEER, HOST);
    h.inbound(&call.request("INVITE", 1, false, Some(&sdp(PEER_MEDIA, 30000, ""))));
    h.outbound(&call.response(200, "OK", 1, "INVITE", Some(&sdp("192.0.2.10", 10000, ""))));
    h.inbound(&call.request("ACK", 1, true, None));
    let model = |log: &[Action]| {
        let mut open = std::collections::BTreeSet::new();
        for a in log {
            match a {
                Action::Open { pinhole, .. } => assert!(open.insert(*pinhole)),
                Action::Close { pinhole, .. } => assert!(open.remove(pinhole)),
            }
        }
        open
    };
    let ours: std::collections::BTreeSet<_> = h.open();
    assert_eq!(ours.len(), 2);
    for n in 0..150 {
        let flood = Call::new(&format!("flood-{n}@203.0.113.5"), PEER, HOST);
        h.inbound(&flood.request("INVITE", 1, false, Some(&sdp(PEER_MEDIA, 30000, ""))));
        assert_eq!(h.open(), model(&h.log));
    }
    assert!(h.tracker.calls_active() <= 100);
    assert!(h.tracker.stats().dialogs_evicted >= 51);
    let closed: std::collections::BTreeSet<_> = h
        .log
        .iter()
        .filter_map(|a| match a {
            Action::Close { pinhole, call_id } if call_id == "kept@203.0.113.5" => Some(*pinhole),
            _ => None,
        })
        .collect();
    assert_eq!(closed, ours, "the eviction closed the call's pinholes");
    assert!(h.open().is_empty());
    assert!(h.inbound(&call.request("BYE", 2, true, None)).is_empty());
    assert!(h.open().is_empty());
    assert_eq!(h.open(), model(&h.log));
}
