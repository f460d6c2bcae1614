//! Call flows over UDP, through the public API.

mod common;

use common::*;
use sipwall_calls::{Action, Direction, Settings};

const OUR_IP: &str = "192.0.2.10";

/// Provider calls us: INVITE with SDP, our 200 OK with SDP, ACK, BYE.
#[test]
fn inbound_call() {
    let mut h = Harness::new();
    let call = Call::new("in-1@203.0.113.5", PEER, HOST);
    let offer = sdp(PEER_MEDIA, 30000, "");
    let answer = sdp(OUR_IP, 10000, "");
    assert!(h
        .inbound(&call.request("INVITE", 1, false, Some(&offer)))
        .is_empty());
    assert!(h
        .outbound(&call.response(100, "Trying", 1, "INVITE", None))
        .is_empty());
    assert!(h
        .outbound(&call.response(180, "Ringing", 1, "INVITE", None))
        .is_empty());
    let a = h.outbound(&call.response(200, "OK", 1, "INVITE", Some(&answer)));
    let want = set(&[ph(10000, PEER_MEDIA), ph(10001, PEER_MEDIA)]);
    assert_eq!(opened(&a), want);
    let t = h.now;
    assert!(a.iter().all(|x| matches!(x,
        Action::Open { call_id, sdp_time_ns, .. } if call_id == "in-1@203.0.113.5" && *sdp_time_ns == t)));
    assert!(h.inbound(&call.request("ACK", 1, true, None)).is_empty());
    assert_eq!(h.open(), want);
    assert_eq!(h.tracker.calls_active(), 1);
    let a = h.inbound(&call.request("BYE", 2, true, None));
    assert_eq!(closed(&a), want);
    assert!(h.open().is_empty());
    assert_eq!(h.tracker.calls_active(), 0);
    let s = h.tracker.stats();
    assert_eq!(s.messages, 6);
    assert_eq!(s.parse_errors, 0);
}

/// We call out: our offer opens to any source, the answer narrows it.
#[test]
fn outbound_call_offer_window_then_exact() {
    let mut h = Harness::new();
    let call = Call::new("out-1@192.0.2.10", HOST, PEER);
    let offer = sdp(OUR_IP, 12000, "");
    let a = h.outbound(&call.request("INVITE", 1, false, Some(&offer)));
    assert_eq!(opened(&a), set(&[ph(12000, "any"), ph(12001, "any")]));
    let a = h.inbound(&call.response(200, "OK", 1, "INVITE", Some(&sdp(PEER_MEDIA, 40000, ""))));
    assert_eq!(closed(&a), set(&[ph(12000, "any"), ph(12001, "any")]));
    assert_eq!(
        opened(&a),
        set(&[ph(12000, PEER_MEDIA), ph(12001, PEER_MEDIA)])
    );
    h.outbound(&call.request("ACK", 1, true, None));
    // The window's end changes nothing once the answer is known.
    assert!(h.tick(h.now + 40 * SEC).is_empty());
    let a = h.outbound(&call.request("BYE", 2, true, None));
    assert_eq!(
        closed(&a),
        set(&[ph(12000, PEER_MEDIA), ph(12001, PEER_MEDIA)])
    );
    assert!(h.open().is_empty());
}

/// 183 with early media opens; 200 OK with another address replaces it.
#[test]
fn early_media_then_answer() {
    let mut h = Harness::new();
    let call = Call::new("early@192.0.2.10", HOST, PEER);
    h.outbound(&call.request("INVITE", 1, false, Some(&sdp(OUR_IP, 14000, ""))));
    let a = h.inbound(&call.response(
        183,
        "Session Progress",
        1,
        "INVITE",
        Some(&sdp("198.51.100.30", 5000, "")),
    ));
    assert_eq!(
        opened(&a),
        set(&[ph(14000, "198.51.100.30"), ph(14001, "198.51.100.30")])
    );
    assert_eq!(closed(&a), set(&[ph(14000, "any"), ph(14001, "any")]));
    let a = h.inbound(&call.response(
        200,
        "OK",
        1,
        "INVITE",
        Some(&sdp("198.51.100.31", 5000, "")),
    ));
    assert_eq!(
        closed(&a),
        set(&[ph(14000, "198.51.100.30"), ph(14001, "198.51.100.30")])
    );
    assert_eq!(
        h.open(),
        set(&[ph(14000, "198.51.100.31"), ph(14001, "198.51.100.31")])
    );
}

fn established_inbound(h: &mut Harness, id: &str, port: u16) -> Call {
    let call = Call::new(id, PEER, HOST);
    h.inbound(&call.request("INVITE", 1, false, Some(&sdp(PEER_MEDIA, 30000, ""))));
    h.outbound(&call.response(200, "OK", 1, "INVITE", Some(&sdp(OUR_IP, port, ""))));
    h.inbound(&call.request("ACK", 1, true, None));
    call
}

/// We re-INVITE with a new port: the old one closes when the peer answers.
#[test]
fn reinvite_changes_our_port() {
    let mut h = Harness::new();
    let call = established_inbound(&mut h, "re-1", 10000);
    // The callee (us) sends the re-INVITE.
    let a = h.outbound(&call.request_by(false, "INVITE", 1, true, Some(&sdp(OUR_IP, 10100, ""))));
    assert!(a.is_empty(), "an offer changes nothing until answered");
    let resp = call
        .response(200, "OK", 1, "INVITE", Some(&sdp(PEER_MEDIA, 30000, "")))
        .replace(&format!("tag={}", call.from_tag), "tag=XX")
        .replace(
            &format!("tag={}", call.to_tag),
            &format!("tag={}", call.from_tag),
        )
        .replace("tag=XX", &format!("tag={}", call.to_tag));
    let a = h.inbound(&resp);
    assert_eq!(
        closed(&a),
        set(&[ph(10000, PEER_MEDIA), ph(10001, PEER_MEDIA)])
    );
    assert_eq!(
        opened(&a),
        set(&[ph(10100, PEER_MEDIA), ph(10101, PEER_MEDIA)])
    );
}

/// The peer puts us on hold with c=0.0.0.0: our pinholes close.
#[test]
fn hold_closes() {
    let mut h = Harness::new();
    let call = established_inbound(&mut h, "hold-1", 10000);
    h.inbound(&call.request(
        "INVITE",
        2,
        true,
        Some(&sdp("0.0.0.0", 30000, "a=sendonly\r\n")),
    ));
    let a = h.outbound(&call.response(
        200,
        "OK",
        2,
        "INVITE",
        Some(&sdp(OUR_IP, 10000, "a=recvonly\r\n")),
    ));
    assert_eq!(
        closed(&a),
        set(&[ph(10000, PEER_MEDIA), ph(10001, PEER_MEDIA)])
    );
    assert!(h.open().is_empty());
    assert!(h.tracker.stats().refused_unusable_address > 0);
    // Off hold again.
    h.inbound(&call.request("INVITE", 3, true, Some(&sdp(PEER_MEDIA, 30000, ""))));
    let a = h.outbound(&call.response(200, "OK", 3, "INVITE", Some(&sdp(OUR_IP, 10000, ""))));
    assert_eq!(
        opened(&a),
        set(&[ph(10000, PEER_MEDIA), ph(10001, PEER_MEDIA)])
    );
}

#[test]
fn rtcp_mux_and_rtcp_attribute() {
    let mut h = Harness::new();
    let call = Call::new("mux", PEER, HOST);
    h.inbound(&call.request(
        "INVITE",
        1,
        false,
        Some(&sdp(PEER_MEDIA, 30000, "a=rtcp-mux\r\n")),
    ));
    let a = h.outbound(&call.response(200, "OK", 1, "INVITE", Some(&sdp(OUR_IP, 10000, ""))));
    assert_eq!(
        opened(&a),
        set(&[ph(10000, PEER_MEDIA)]),
        "mux on the peer's line: no RTCP port"
    );

    let call = Call::new("rtcp-attr", PEER, HOST);
    h.inbound(&call.request("INVITE", 1, false, Some(&sdp(PEER_MEDIA, 30002, ""))));
    let a = h.outbound(&call.response(
        200,
        "OK",
        1,
        "INVITE",
        Some(&sdp(OUR_IP, 10010, "a=rtcp:10055\r\n")),
    ));
    assert_eq!(
        opened(&a),
        set(&[ph(10010, PEER_MEDIA), ph(10055, PEER_MEDIA)])
    );
}

#[test]
fn cancel_closes_offer() {
    let mut h = Harness::new();
    let call = Call::new("cancel-1", HOST, PEER);
    let a = h.outbound(&call.request("INVITE", 1, false, Some(&sdp(OUR_IP, 16000, ""))));
    assert_eq!(opened(&a).len(), 2);
    h.inbound(&call.response(180, "Ringing", 1, "INVITE", None));
    let a = h.outbound(&call.request("CANCEL", 1, false, None));
    assert_eq!(closed(&a), set(&[ph(16000, "any"), ph(16001, "any")]));
    assert_eq!(h.tracker.calls_active(), 0);
    // The 487 that follows finds nothing to do.
    assert!(h
        .inbound(&call.response(487, "Request Terminated", 1, "INVITE", None))
        .is_empty());
}

#[test]
fn busy_to_initial_invite_closes() {
    let mut h = Harness::new();
    let call = Call::new("busy-1", HOST, PEER);
    h.outbound(&call.request("INVITE", 1, false, Some(&sdp(OUR_IP, 16000, ""))));
    let a = h.inbound(&call.response(486, "Busy Here", 1, "INVITE", None));
    assert_eq!(closed(&a), set(&[ph(16000, "any"), ph(16001, "any")]));
    assert!(h.open().is_empty());
    assert_eq!(h.tracker.calls_active(), 0);
}

#[test]
fn failed_reinvite_keeps_pinholes() {
    let mut h = Harness::new();
    let call = established_inbound(&mut h, "re-fail", 10000);
    let before = h.open();
    h.inbound(&call.request("INVITE", 2, true, Some(&sdp("198.51.100.99", 30000, ""))));
    let a = h.outbound(&call.response(488, "Not Acceptable Here", 2, "INVITE", None));
    assert!(a.is_empty());
    assert_eq!(h.open(), before);
    assert_eq!(h.tracker.calls_active(), 1);
}

#[test]
fn offer_window_expires() {
    let mut h = Harness::new();
    let call = Call::new("window", HOST, PEER);
    h.outbound(&call.request("INVITE", 1, false, Some(&sdp(OUR_IP, 18000, ""))));
    let sent = h.now;
    h.inbound(&call.response(180, "Ringing", 1, "INVITE", None));
    assert!(h.tick(sent + 31 * SEC).is_empty());
    let a = h.tick(sent + 32 * SEC);
    assert_eq!(closed(&a), set(&[ph(18000, "any"), ph(18001, "any")]));
    // Still ringing, so the dialog is kept and a late answer opens exactly.
    assert_eq!(h.tracker.calls_active(), 1);
    let a = h.inbound(&call.response(200, "OK", 1, "INVITE", Some(&sdp(PEER_MEDIA, 40000, ""))));
    assert_eq!(
        opened(&a),
        set(&[ph(18000, PEER_MEDIA), ph(18001, PEER_MEDIA)])
    );
}

#[test]
fn unanswered_invite_forgotten() {
    let mut h = Harness::new();
    let call = Call::new("lost", PEER, HOST);
    h.inbound(&call.request("INVITE", 1, false, Some(&sdp(PEER_MEDIA, 30000, ""))));
    let sent = h.now;
    h.tick(sent + 31 * SEC);
    assert_eq!(h.tracker.calls_active(), 1);
    h.tick(sent + 32 * SEC);
    assert_eq!(h.tracker.calls_active(), 0);

    // An outbound one loses its Any pinholes with it.
    let call = Call::new("lost-out", HOST, PEER);
    h.outbound(&call.request("INVITE", 1, false, Some(&sdp(OUR_IP, 18000, ""))));
    let a = h.tick(h.now + 33 * SEC);
    assert_eq!(closed(&a).len(), 2);
    assert_eq!(h.tracker.calls_active(), 0);
}

#[test]
fn non_allowlisted_peer_ignored() {
    let mut h = Harness::new();
    let call = Call::new("stranger", STRANGER, HOST);
    h.udp(
        Direction::Inbound,
        STRANGER,
        HOST,
        &call.request("INVITE", 1, false, Some(&sdp(PEER_MEDIA, 30000, ""))),
    );
    let a = h.udp(
        Direction::Outbound,
        HOST,
        STRANGER,
        &call.response(200, "OK", 1, "INVITE", Some(&sdp(OUR_IP, 10000, ""))),
    );
    assert!(a.is_empty());
    // Our own offer to a stranger opens nothing either.
    let call = Call::new("to-stranger", HOST, STRANGER);
    let a = h.udp(
        Direction::Outbound,
        HOST,
        STRANGER,
        &call.request("INVITE", 1, false, Some(&sdp(OUR_IP, 10000, ""))),
    );
    assert!(a.is_empty());
    assert!(h.open().is_empty());
    assert_eq!(h.tracker.calls_active(), 0);
    let s = h.tracker.stats();
    assert_eq!(s.refused_not_allowlisted, 3);
    assert_eq!(s.messages, 0);
}

#[test]
fn port_outside_range_refused() {
    let mut h = Harness::new();
    let call = Call::new("range", PEER, HOST);
    h.inbound(&call.request("INVITE", 1, false, Some(&sdp(PEER_MEDIA, 30000, ""))));
    let a = h.outbound(&call.response(200, "OK", 1, "INVITE", Some(&sdp(OUR_IP, 22, ""))));
    assert!(a.is_empty());
    // 20000 is the range's last port: RTP opens, RTCP on 20001 does not.
    let call = Call::new("edge", PEER, HOST);
    h.inbound(&call.request("INVITE", 1, false, Some(&sdp(PEER_MEDIA, 30000, ""))));
    let a = h.outbound(&call.response(200, "OK", 1, "INVITE", Some(&sdp(OUR_IP, 20000, ""))));
    assert_eq!(opened(&a), set(&[ph(20000, PEER_MEDIA)]));
    assert_eq!(h.tracker.stats().refused_outside_range, 3);
}

#[test]
fn ipv6_connection_address() {
    let mut h = Harness::with(Settings {
        allowlist: vec!["2001:db8:5::/48".parse().unwrap()],
        ..settings()
    });
    let call = Call::new("v6", "[2001:db8:5::5]:5060", "[2001:db8:1::10]:5060");
    let peer = "[2001:db8:5::5]:5060";
    let host = "[2001:db8:1::10]:5060";
    h.udp(
        Direction::Inbound,
        peer,
        host,
        &call.request("INVITE", 1, false, Some(&sdp("2001:db8:7::20", 30000, ""))),
    );
    let a = h.udp(
        Direction::Outbound,
        host,
        peer,
        &call.response(
            200,
            "OK",
            1,
            "INVITE",
            Some(&sdp("2001:db8:1::10", 10000, "")),
        ),
    );
    assert_eq!(
        opened(&a),
        set(&[ph(10000, "2001:db8:7::20"), ph(10001, "2001:db8:7::20")])
    );
}

#[test]
fn shared_pinhole_is_refcounted() {
    let mut h = Harness::new();
    let a1 = established_inbound(&mut h, "share-a", 10000);
    let opens_before = opened(&h.log).len();
    let b = established_inbound(&mut h, "share-b", 10000);
    assert_eq!(
        opened(&h.log).len(),
        opens_before,
        "the second call opens nothing new"
    );
    assert_eq!(h.open().len(), 2);
    let a = h.inbound(&a1.request("BYE", 2, true, None));
    assert!(a.is_empty(), "still wanted by the other call");
    assert_eq!(h.open().len(), 2);
    let a = h.inbound(&b.request("BYE", 2, true, None));
    assert_eq!(closed(&a).len(), 2);
    assert!(h.open().is_empty());
}

#[test]
fn close_call_forgets() {
    let mut h = Harness::new();
    established_inbound(&mut h, "idle", 10000);
    let a = h.close_call("idle");
    assert_eq!(closed(&a).len(), 2);
    assert_eq!(h.tracker.calls_active(), 0);
    assert!(h.close_call("idle").is_empty());
}

#[test]
fn peer_rejects_line_or_inactive() {
    let mut h = Harness::new();
    let call = Call::new("rejected", HOST, PEER);
    h.outbound(&call.request("INVITE", 1, false, Some(&sdp(OUR_IP, 10000, ""))));
    let a = h.inbound(&call.response(200, "OK", 1, "INVITE", Some(&sdp(PEER_MEDIA, 0, ""))));
    assert_eq!(closed(&a).len(), 2);
    assert!(h.open().is_empty());

    let call = Call::new("inactive", HOST, PEER);
    h.outbound(&call.request("INVITE", 1, false, Some(&sdp(OUR_IP, 10002, ""))));
    h.inbound(&call.response(
        200,
        "OK",
        1,
        "INVITE",
        Some(&sdp(PEER_MEDIA, 4000, "a=inactive\r\n")),
    ));
    assert!(h.open().is_empty());
}

#[test]
fn hostname_connection_refused() {
    let mut h = Harness::new();
    let call = Call::new("fqdn", HOST, PEER);
    h.outbound(&call.request("INVITE", 1, false, Some(&sdp(OUR_IP, 10000, ""))));
    h.inbound(&call.response(
        200,
        "OK",
        1,
        "INVITE",
        Some(&sdp("media.example.net", 4000, "")),
    ));
    assert!(h.open().is_empty());
    assert!(h.tracker.stats().refused_unusable_address > 0);
}

#[test]
fn foreign_tags_ignored() {
    let mut h = Harness::new();
    let call = established_inbound(&mut h, "tags", 10000);
    let mut other = call.clone();
    other.from_tag = "someone-else".into();
    other.to_tag = "nobody".into();
    assert!(h.inbound(&other.request("BYE", 2, true, None)).is_empty());
    assert_eq!(h.open().len(), 2);
    assert_eq!(h.tracker.stats().tag_mismatches, 1);
}

#[test]
fn late_offer_answered_in_ack() {
    let mut h = Harness::new();
    let call = Call::new("late", PEER, HOST);
    h.inbound(&call.request("INVITE", 1, false, None));
    let a = h.outbound(&call.response(200, "OK", 1, "INVITE", Some(&sdp(OUR_IP, 10000, ""))));
    assert!(a.is_empty(), "our offer to a caller: no Any window");
    let a = h.inbound(&call.request("ACK", 1, true, Some(&sdp(PEER_MEDIA, 30000, ""))));
    assert_eq!(
        opened(&a),
        set(&[ph(10000, PEER_MEDIA), ph(10001, PEER_MEDIA)])
    );
}

#[test]
fn garbage_counted() {
    let mut h = Harness::new();
    assert!(h.inbound("hello world\r\n\r\n").is_empty());
    assert!(
        h.inbound("\r\n\r\n").is_empty(),
        "a keep-alive is no message"
    );
    let call = Call::new("bad-sdp", PEER, HOST);
    h.inbound(&call.request("INVITE", 1, false, Some("this is not sdp")));
    let s = h.tracker.stats();
    assert_eq!(s.messages, 2);
    assert_eq!(s.parse_errors, 2);
}

/// SIP over IPv6 (bracketed addresses in every URI) with compact headers.
#[test]
fn ipv6_signalling_with_compact_headers() {
    let mut h = Harness::with(Settings {
        allowlist: vec!["2001:db8:5::/48".parse().unwrap()],
        ..settings()
    });
    let peer = "[2001:db8:5::5]:5060";
    let host = "[2001:db8:1::10]:5060";
    let offer = sdp("2001:db8:7::20", 30000, "");
    let invite = format!(
        "INVITE sip:+4930123@[2001:db8:1::10]:5060;user=phone SIP/2.0\r\n\
         v: SIP/2.0/UDP [2001:db8:5::5]:5060;branch=z9hG4bK-v6\r\n\
         f: <sip:+4940999@[2001:db8:5::5]>;tag=v6a\r\n\
         t: <sip:+4930123@[2001:db8:1::10]>\r\n\
         i: v6-compact\r\n\
         CSeq: 1 INVITE\r\n\
         c: application/sdp\r\n\
         l: {}\r\n\r\n{offer}",
        offer.len()
    );
    h.udp(Direction::Inbound, peer, host, &invite);
    assert_eq!(h.tracker.calls_active(), 1);
    let call = Call {
        call_id: "v6-compact".into(),
        from_tag: "v6a".into(),
        to_tag: "v6b".into(),
        caller: "[2001:db8:5::5]:5060",
        callee: "[2001:db8:1::10]:5060",
    };
    let a = h.udp(
        Direction::Outbound,
        host,
        peer,
        &call.response(
            200,
            "OK",
            1,
            "INVITE",
            Some(&sdp("2001:db8:1::10", 10000, "")),
        ),
    );
    assert_eq!(
        opened(&a),
        set(&[ph(10000, "2001:db8:7::20"), ph(10001, "2001:db8:7::20")])
    );
}

/// A session refresh re-INVITE offers the same SDP; the answer moves our
/// port, and that must still be applied.
#[test]
fn refresh_reinvite_with_changed_answer() {
    let mut h = Harness::new();
    let call = established_inbound(&mut h, "refresh", 10000);
    h.inbound(&call.request("INVITE", 2, true, Some(&sdp(PEER_MEDIA, 30000, ""))));
    let a = h.outbound(&call.response(200, "OK", 2, "INVITE", Some(&sdp(OUR_IP, 10200, ""))));
    assert_eq!(
        closed(&a),
        set(&[ph(10000, PEER_MEDIA), ph(10001, PEER_MEDIA)])
    );
    assert_eq!(
        opened(&a),
        set(&[ph(10200, PEER_MEDIA), ph(10201, PEER_MEDIA)])
    );
}

/// A re-INVITE without SDP: our 2xx is the offer, the ACK the answer.
#[test]
fn reinvite_late_offer() {
    let mut h = Harness::new();
    let call = established_inbound(&mut h, "re-late", 10000);
    h.inbound(&call.request("INVITE", 2, true, None));
    let a = h.outbound(&call.response(200, "OK", 2, "INVITE", Some(&sdp(OUR_IP, 10300, ""))));
    assert!(a.is_empty(), "an offer changes nothing until answered");
    let a = h.inbound(&call.request("ACK", 2, true, Some(&sdp("198.51.100.40", 30000, ""))));
    assert_eq!(closed(&a).len(), 2);
    assert_eq!(
        opened(&a),
        set(&[ph(10300, "198.51.100.40"), ph(10301, "198.51.100.40")])
    );
}

/// A retransmitted 200 OK to the initial INVITE changes nothing.
#[test]
fn retransmitted_answer_is_harmless() {
    let mut h = Harness::new();
    let call = established_inbound(&mut h, "rtx", 10000);
    let before = h.open();
    let a = h.outbound(&call.response(200, "OK", 1, "INVITE", Some(&sdp(OUR_IP, 10000, ""))));
    assert!(a.is_empty());
    // And a later re-INVITE still works as offer then answer.
    h.inbound(&call.request("INVITE", 2, true, Some(&sdp("198.51.100.41", 30000, ""))));
    assert_eq!(h.open(), before);
    let a = h.outbound(&call.response(200, "OK", 2, "INVITE", Some(&sdp(OUR_IP, 10000, ""))));
    assert_eq!(
        opened(&a),
        set(&[ph(10000, "198.51.100.41"), ph(10001, "198.51.100.41")])
    );
}

#[test]
fn oversized_datagram_discarded() {
    let mut h = Harness::with(Settings {
        max_message_bytes: 1024,
        ..settings()
    });
    let call = Call::new("big-udp", PEER, HOST);
    h.inbound(&call.request(
        "INVITE",
        1,
        false,
        Some(&sdp(PEER_MEDIA, 30000, &"a=x\r\n".repeat(300))),
    ));
    let s = h.tracker.stats();
    assert_eq!(s.oversized, 1);
    assert_eq!(s.messages, 0);
    assert_eq!(h.tracker.calls_active(), 0);
}

/// Real-world shaped SDP: no `o=`/`s=`, bandwidth and ptime lines, a video
/// line the peer rejects, and a media-level `c=` that overrides the session's.
#[test]
fn two_media_lines_media_level_connection() {
    let mut h = Harness::new();
    let call = Call::new("av", HOST, PEER);
    let ours = "v=0\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nb=AS:84\r\n\
                m=audio 10400 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=ptime:20\r\n\
                m=video 10500 RTP/AVP 96\r\na=rtcp-mux\r\n";
    let a = h.outbound(&call.request("INVITE", 1, false, Some(ours)));
    assert_eq!(
        opened(&a),
        set(&[ph(10400, "any"), ph(10401, "any"), ph(10500, "any")])
    );
    let theirs =
        "v=0\r\no=- 1 2 IN IP4 203.0.113.5\r\ns=SBC\r\nc=IN IP4 198.51.100.50\r\nt=0 0\r\n\
                  m=audio 20000 RTP/AVP 8\r\nc=IN IP4 198.51.100.51\r\na=sendrecv\r\n\
                  m=video 0 RTP/AVP 96\r\n";
    let a = h.inbound(&call.response(200, "OK", 1, "INVITE", Some(theirs)));
    assert_eq!(
        h.open(),
        set(&[ph(10400, "198.51.100.51"), ph(10401, "198.51.100.51")])
    );
    assert_eq!(closed(&a).len(), 3);
}

#[test]
fn overlong_call_id_refused() {
    let mut h = Harness::new();
    let call = Call::new(&"x".repeat(300), PEER, HOST);
    h.inbound(&call.request("INVITE", 1, false, Some(&sdp(PEER_MEDIA, 30000, ""))));
    assert_eq!(h.tracker.calls_active(), 0);
    assert_eq!(h.tracker.stats().parse_errors, 1);
}

/// A call taken over from a reader before this one (found pinned): an
/// in-dialog message without SDP keeps its pinholes, its BYE closes them,
/// and nothing is opened again for what the kernel already holds.
#[test]
fn adopted_call_keeps_its_pinholes_until_bye() {
    let mut h = Harness::new();
    let call = Call::new("adopted@203.0.113.5", PEER, HOST);
    let held = [ph(10000, PEER_MEDIA), ph(10001, PEER_MEDIA)];
    assert!(h.tracker.adopt("adopted@203.0.113.5", &held).is_empty());
    assert_eq!(h.tracker.calls_active(), 1);
    assert_eq!(h.open(), set(&held));
    // An OPTIONS-like in-dialog request without SDP (a session refresh):
    // nothing changes.
    assert!(h.inbound(&call.request("INFO", 5, true, None)).is_empty());
    assert_eq!(h.open(), set(&held));
    // Another call's BYE does not touch it.
    let other = Call::new("other@203.0.113.5", PEER, HOST);
    assert!(h.inbound(&other.request("BYE", 2, true, None)).is_empty());
    let a = h.inbound(&call.request("BYE", 6, true, None));
    assert_eq!(closed(&a), set(&held));
    assert!(h.open().is_empty());
    assert_eq!(h.tracker.calls_active(), 0);
}

/// RFC 3261 7.5: CRLFs before the start line of a datagram are ignored,
/// so the INVITE behind them is read and its call followed.
#[test]
fn leading_crlf_before_start_line() {
    let mut h = Harness::new();
    let call = Call::new("crlf@203.0.113.5", PEER, HOST);
    let invite = call.request("INVITE", 1, false, Some(&sdp(PEER_MEDIA, 30000, "")));
    h.inbound(&format!("\r\n\r\n{invite}"));
    let a = h.outbound(&format!(
        "\r\n{}",
        call.response(200, "OK", 1, "INVITE", Some(&sdp(OUR_IP, 10000, "")))
    ));
    assert_eq!(
        opened(&a),
        set(&[ph(10000, PEER_MEDIA), ph(10001, PEER_MEDIA)])
    );
    assert_eq!(h.tracker.stats().parse_errors, 0);
    // A bare keep-alive is still nothing.
    assert!(h.inbound("\r\n\r\n").is_empty());
    assert_eq!(h.tracker.stats().messages, 2);
}

/// In a confirmed dialog a BYE must carry both tags: one without the
/// callee's To tag is not this dialog's and closes nothing.
#[test]
fn bye_without_to_tag_in_confirmed_dialog_ignored() {
    let mut h = Harness::new();
    let call = established_inbound(&mut h, "notag", 10000);
    assert!(h.inbound(&call.request("BYE", 2, false, None)).is_empty());
    assert_eq!(h.open().len(), 2);
    assert_eq!(h.tracker.stats().tag_mismatches, 1);
    // The real BYE, with both tags, still ends it.
    assert_eq!(
        closed(&h.inbound(&call.request("BYE", 3, true, None))).len(),
        2
    );
    assert!(h.open().is_empty());
}

/// A CANCEL or a retransmitted initial INVITE carries no To tag and is
/// still the dialog's: neither counts as a mismatch.
#[test]
fn initial_transaction_without_to_tag_still_fits() {
    let mut h = Harness::new();
    let call = established_inbound(&mut h, "retrans", 10000);
    h.inbound(&call.request("INVITE", 1, false, Some(&sdp(PEER_MEDIA, 30000, ""))));
    assert_eq!(h.tracker.stats().tag_mismatches, 0);
    assert_eq!(h.open().len(), 2);
}

/// `c=IN IP6 ::ffff:a.b.c.d` is refused as unusable: the kernel holds IPv4
/// remotes in that form, so it would open the IPv4 address instead.
#[test]
fn ipv4_mapped_ipv6_connection_refused() {
    let mut h = Harness::new();
    let call = Call::new("mapped", HOST, PEER);
    h.outbound(&call.request("INVITE", 1, false, Some(&sdp(OUR_IP, 10000, ""))));
    h.inbound(&call.response(
        200,
        "OK",
        1,
        "INVITE",
        Some(&sdp("::ffff:198.51.100.20", 4000, "")),
    ));
    assert!(h.open().is_empty(), "{:?}", h.open());
    assert!(h.tracker.stats().refused_unusable_address > 0);
}

/// More calls taken over than the table holds: the one evicted to make
/// room has its pinholes closed by actions, not dropped silently.
#[test]
fn adopting_past_the_cap_closes_the_evicted_call() {
    let mut h = Harness::with(Settings {
        max_dialogs: 2,
        ..settings()
    });
    let held = |port| [ph(port, PEER_MEDIA), ph(port + 1, PEER_MEDIA)];
    assert!(h.tracker.adopt("a", &held(10000)).is_empty());
    assert!(h.tracker.adopt("b", &held(10002)).is_empty());
    let a = h.tracker.adopt("c", &held(10004));
    assert_eq!(closed(&a), set(&held(10000)));
    assert!(a
        .iter()
        .all(|x| matches!(x, Action::Close { call_id, .. } if call_id == "a")));
    assert_eq!(h.tracker.calls_active(), 2);
    let mut want = set(&held(10002));
    want.extend(held(10004));
    assert_eq!(h.open(), want);
}
