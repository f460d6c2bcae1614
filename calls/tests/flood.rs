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
