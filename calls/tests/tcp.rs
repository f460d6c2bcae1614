//! SIP over TCP: reassembly and framing, through the public API.

mod common;

use std::net::SocketAddr;

use common::*;
use sipwall_calls::{Direction, Segment, Settings, Transport};

const OUR_IP: &str = "192.0.2.10";

fn addrs() -> (SocketAddr, SocketAddr) {
    (
        "203.0.113.5:40123".parse().unwrap(),
        "192.0.2.10:5060".parse().unwrap(),
    )
}

fn invite(id: &str) -> (Call, String) {
    let call = Call::new(id, PEER, HOST);
    let text = call.request("INVITE", 1, false, Some(&sdp(PEER_MEDIA, 30000, "")));
    (call, text)
}

/// Answers the call over UDP so a pinhole shows the INVITE was understood.
fn answer(h: &mut Harness, call: &Call, port: u16) -> usize {
    let a = h.outbound(&call.response(200, "OK", 1, "INVITE", Some(&sdp(OUR_IP, port, ""))));
    opened(&a).len()
}

#[test]
fn one_message_in_three_segments() {
    let mut h = Harness::new();
    let (peer, host) = addrs();
    let (call, text) = invite("tcp-split");
    let b = text.as_bytes();
    // Cut inside the headers and inside the body.
    let (c1, c2) = (100, b.len() - 40);
    let base = 1_000_000u32;
    h.tcp(Direction::Inbound, peer, host, base, &b[..c1]);
    h.tcp(Direction::Inbound, peer, host, base + c1 as u32, &b[c1..c2]);
    assert_eq!(h.tracker.stats().messages, 0, "not whole yet");
    h.tcp(Direction::Inbound, peer, host, base + c2 as u32, &b[c2..]);
    assert_eq!(h.tracker.stats().messages, 1);
    assert_eq!(h.tracker.calls_active(), 1);
    assert_eq!(answer(&mut h, &call, 10000), 2);
}

#[test]
fn two_messages_in_one_segment_with_keepalives() {
    let mut h = Harness::new();
    let (peer, host) = addrs();
    let (c1, t1) = invite("tcp-a");
    let (c2, t2) = invite("tcp-b");
    let seg = format!("\r\n\r\n{t1}\r\n\r\n{t2}");
    h.tcp(Direction::Inbound, peer, host, 7, seg.as_bytes());
    assert_eq!(h.tracker.stats().messages, 2);
    assert_eq!(h.tracker.stats().parse_errors, 0);
    assert_eq!(answer(&mut h, &c1, 10000), 2);
    assert_eq!(answer(&mut h, &c2, 10002), 2);
}

#[test]
fn retransmitted_segment_is_dropped() {
    let mut h = Harness::new();
    let (peer, host) = addrs();
    let (_, t1) = invite("tcp-r1");
    let (_, t2) = invite("tcp-r2");
    let b1 = t1.as_bytes();
    let half = b1.len() / 2;
    let seq = u32::MAX - 50; // and across the sequence wrap
    h.tcp(Direction::Inbound, peer, host, seq, &b1[..half]);
    h.tcp(Direction::Inbound, peer, host, seq, &b1[..half]); // retransmitted
    h.tcp(
        Direction::Inbound,
        peer,
        host,
        seq.wrapping_add(half as u32),
        &b1[half..],
    );
    assert_eq!(h.tracker.stats().messages, 1);
    // A whole retransmission of the first message, then an overlapping one
    // that carries the old tail and the next message.
    h.tcp(Direction::Inbound, peer, host, seq, b1);
    let mut overlap = b1[half..].to_vec();
    overlap.extend_from_slice(t2.as_bytes());
    h.tcp(
        Direction::Inbound,
        peer,
        host,
        seq.wrapping_add(half as u32),
        &overlap,
    );
    let s = h.tracker.stats();
    assert_eq!(s.messages, 2);
    assert_eq!(s.parse_errors, 0);
    assert_eq!(h.tracker.calls_active(), 2);
}

/// Bytes that never come: the segment after the gap waits for them, then
/// (a tick `GAP_WAIT` later) is taken as it is, resynchronising at the
/// next message.
#[test]
fn gap_then_resync() {
    let mut h = Harness::new();
    let (peer, host) = addrs();
    let (_, t1) = invite("tcp-g1");
    let (c2, t2) = invite("tcp-g2");
    let b1 = t1.as_bytes();
    h.tcp(Direction::Inbound, peer, host, 5000, &b1[..60]);
    // 20 bytes lost; the rest of message 1 and all of message 2 arrive.
    let mut rest = b1[80..].to_vec();
    rest.extend_from_slice(t2.as_bytes());
    h.tcp(Direction::Inbound, peer, host, 5080, &rest);
    assert_eq!(h.tracker.stats().messages, 0, "waiting for the gap");
    assert!(h.tick(h.now + SEC / 2).is_empty());
    assert_eq!(h.tracker.stats().messages, 0, "still waiting");
    h.tick(h.now + SEC);
    assert_eq!(h.tracker.calls_active(), 1, "only the whole second message");
    assert_eq!(h.tracker.stats().messages, 1);
    assert_eq!(answer(&mut h, &c2, 10000), 2);
}

/// The next segment of a stream after the wait gives the gap up too.
#[test]
fn gap_given_up_by_a_later_segment() {
    let mut h = Harness::new();
    let (peer, host) = addrs();
    let (_, t1) = invite("tcp-w1");
    let (_, t2) = invite("tcp-w2");
    let (_, t3) = invite("tcp-w3");
    let b1 = t1.as_bytes();
    h.tcp(Direction::Inbound, peer, host, 5000, &b1[..60]);
    let mut rest = b1[80..].to_vec();
    rest.extend_from_slice(t2.as_bytes());
    let next = 5080 + rest.len() as u32;
    h.tcp(Direction::Inbound, peer, host, 5080, &rest);
    h.now += 2 * SEC;
    h.tcp(Direction::Inbound, peer, host, next, t3.as_bytes());
    assert_eq!(h.tracker.stats().messages, 2);
    assert_eq!(h.tracker.calls_active(), 2);
}

/// An INVITE in three segments arriving 1, 3, 2: the third is held until
/// the second fills the gap, and the INVITE is read whole.
#[test]
fn out_of_order_segments_filled_in() {
    let mut h = Harness::new();
    let (peer, host) = addrs();
    let (call, text) = invite("tcp-ooo");
    let b = text.as_bytes();
    let (c1, c2) = (100, b.len() - 40);
    let base = u32::MAX - 120; // across the sequence wrap
    let at = |n: usize| base.wrapping_add(n as u32);
    h.tcp(Direction::Inbound, peer, host, at(0), &b[..c1]);
    h.tcp(Direction::Inbound, peer, host, at(c2), &b[c2..]);
    // The held segment again (a retransmission), and one overlapping it.
    h.tcp(Direction::Inbound, peer, host, at(c2), &b[c2..]);
    h.tcp(Direction::Inbound, peer, host, at(c2 - 10), &b[c2 - 10..]);
    assert_eq!(h.tracker.stats().messages, 0, "not whole yet");
    // The gap fills, overlapping the held bytes on both sides.
    h.tcp(
        Direction::Inbound,
        peer,
        host,
        at(c1 - 5),
        &b[c1 - 5..c2 + 5],
    );
    let s = h.tracker.stats();
    assert_eq!(s.messages, 1);
    assert_eq!(s.parse_errors, 0);
    assert_eq!(h.tracker.calls_active(), 1);
    assert_eq!(answer(&mut h, &call, 10000), 2);
    // Nothing is held any more: the next message is read at once.
    let (_, t2) = invite("tcp-ooo-2");
    h.tcp(Direction::Inbound, peer, host, at(b.len()), t2.as_bytes());
    assert_eq!(h.tracker.calls_active(), 2);
}

/// More than 8 segments after a gap: the cap is hit, the gap is taken as
/// lost at once and the stream resynchronises (no waiting, bounded memory).
#[test]
fn held_segments_capped() {
    let mut h = Harness::new();
    let (peer, host) = addrs();
    let (_, t1) = invite("tcp-c1");
    let (c2, t2) = invite("tcp-c2");
    let b1 = t1.as_bytes();
    h.tcp(Direction::Inbound, peer, host, 5000, &b1[..60]);
    let mut rest = b1[80..].to_vec();
    rest.extend_from_slice(t2.as_bytes());
    let piece = rest.len().div_ceil(9);
    let mut seq = 5080u32;
    for (n, chunk) in rest.chunks(piece).enumerate() {
        assert_eq!(h.tracker.stats().messages, 0, "held, segment {n}");
        h.tcp(Direction::Inbound, peer, host, seq, chunk);
        seq += chunk.len() as u32;
    }
    assert_eq!(rest.chunks(piece).count(), 9);
    assert_eq!(h.tracker.stats().messages, 1);
    assert_eq!(h.tracker.calls_active(), 1);
    assert_eq!(answer(&mut h, &c2, 10000), 2);
    // One segment further ahead than the bytes cap is not held either.
    let (_, t3) = invite("tcp-c3");
    h.tcp(Direction::Inbound, peer, host, seq + 70_000, t3.as_bytes());
    assert_eq!(h.tracker.calls_active(), 2);
}

#[test]
fn missing_content_length_means_empty_body() {
    let mut h = Harness::new();
    let (peer, host) = addrs();
    let call = Call::new("tcp-nolen", PEER, HOST);
    let text = call
        .request("INVITE", 1, false, None)
        .replace("Content-Length: 0\r\n", "");
    let (_, t2) = invite("tcp-after");
    h.tcp(
        Direction::Inbound,
        peer,
        host,
        1,
        format!("{text}{t2}").as_bytes(),
    );
    assert_eq!(h.tracker.stats().messages, 2);
    assert_eq!(h.tracker.calls_active(), 2);
}

#[test]
fn oversized_message_discarded_and_skipped() {
    let mut h = Harness::with(Settings {
        max_message_bytes: 2048,
        ..settings()
    });
    let (peer, host) = addrs();
    let call = Call::new("tcp-big", PEER, HOST);
    let big = call.request("INVITE", 1, false, Some(&"a=x\r\n".repeat(1000)));
    let (c2, t2) = invite("tcp-small");
    let mut stream = big.into_bytes();
    stream.extend_from_slice(t2.as_bytes());
    let mut seq = 100u32;
    for chunk in stream.chunks(700) {
        h.tcp(Direction::Inbound, peer, host, seq, chunk);
        seq += chunk.len() as u32;
    }
    let s = h.tracker.stats();
    assert_eq!(s.oversized, 1);
    assert_eq!(s.messages, 1);
    assert_eq!(answer(&mut h, &c2, 10000), 2);
}

#[test]
fn streams_capped() {
    let mut h = Harness::with(Settings {
        max_streams: 4,
        ..settings()
    });
    let host: SocketAddr = HOST.parse().unwrap();
    for port in 0..20u16 {
        let peer: SocketAddr = format!("203.0.113.5:{}", 40000 + port).parse().unwrap();
        h.tcp(
            Direction::Inbound,
            peer,
            host,
            1,
            b"INVITE sip:x@y SIP/2.0\r\nVia: partial",
        );
        assert!(h.tracker.streams_active() <= 4);
    }
    assert_eq!(h.tracker.stats().streams_evicted, 16);
}

/// A segment whose copy was cut (the ring keeps 4 KiB of a packet): the
/// bytes it lacks are taken as lost at once, so the next message is read
/// as it arrives instead of waiting for a gap that never fills.
#[test]
fn cut_copy_resyncs_at_once() {
    let mut h = Harness::new();
    let (peer, host) = addrs();
    let (_, t1) = invite("tcp-cut1");
    let (c2, t2) = invite("tcp-cut2");
    let b1 = t1.as_bytes();
    let kept = 300;
    h.now += SEC / 10;
    let seg = Segment {
        time_ns: h.now,
        direction: Direction::Inbound,
        transport: Transport::Tcp,
        src: peer,
        dst: host,
        tcp_seq: Some(9000),
        payload: &b1[..kept],
    };
    let a = h.tracker.feed_cut(&seg, b1.len() - kept);
    assert!(a.is_empty());
    // The next segment starts right after the cut one's real end.
    h.tcp(
        Direction::Inbound,
        peer,
        host,
        9000 + b1.len() as u32,
        t2.as_bytes(),
    );
    assert_eq!(h.tracker.stats().messages, 1, "read without waiting");
    assert_eq!(h.tracker.calls_active(), 1);
    assert_eq!(answer(&mut h, &c2, 10000), 2);
    // A cut UDP datagram is not read.
    let (_, t3) = invite("udp-cut");
    let seg = Segment {
        transport: Transport::Udp,
        tcp_seq: None,
        src: PEER.parse().unwrap(),
        payload: &t3.as_bytes()[..200],
        ..seg
    };
    let errors = h.tracker.stats().parse_errors;
    assert!(h.tracker.feed_cut(&seg, 100).is_empty());
    assert_eq!(h.tracker.calls_active(), 1);
    assert_eq!(h.tracker.stats().parse_errors, errors + 1);
}

/// A connection seen from its SYN (no payload, one sequence number before
/// the first byte): the first message is read at once, not held as if a
/// byte were missing before it.
#[test]
fn stream_seen_from_its_syn() {
    let mut h = Harness::new();
    let (peer, host) = addrs();
    let (c, t) = invite("tcp-syn");
    h.tcp(Direction::Inbound, peer, host, 4_000_000, b"");
    h.tcp(Direction::Inbound, peer, host, 4_000_001, t.as_bytes());
    assert_eq!(h.tracker.stats().messages, 1);
    assert_eq!(answer(&mut h, &c, 10000), 2);
}
