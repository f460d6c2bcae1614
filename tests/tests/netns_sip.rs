//! Real traffic between network namespaces through the filter attached
//! natively to the PBX's veth: sipp calls from the provider and from an
//! outsider, exact UDP datagram counts against the counters, live allowlist
//! changes under load, the filter outliving the tool, re-attach and detach
//! (the `run` service has its own file, service.rs). Each test builds its
//! own lab (see `sipwall_lab`).
use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use serde_json::Value;
use sipwall_tests::{
    netns::{
        delta, traffic, traffic::Sink, traffic::Stream, Count, Host, TestLab, OUTSIDER, OUTSIDER6,
        PBX, PBX6, PBX_IFACE, PROVIDER,
    },
    sipp::{self, expect_answered, expect_unanswered, Transport},
};

const POLICED: [&str; 3] = ["sip_allowed", "sip_denied", "rtp_allowed"];
const IDLE: Duration = Duration::from_millis(400);

fn v4(a: Ipv4Addr) -> IpAddr {
    IpAddr::V4(a)
}

fn get(d: &BTreeMap<String, Count>, reason: &str) -> Count {
    *d.get(reason)
        .unwrap_or_else(|| panic!("no `{reason}` counter in stats --json: {d:?}"))
}

/// Asserts that of the policed counters only `reason` moved, and by exactly
/// `packets` when given (else by at least one).
fn assert_only(case: &str, d: &BTreeMap<String, Count>, reason: &str, packets: Option<u64>) {
    for r in POLICED {
        let moved = get(d, r).packets;
        if r != reason {
            assert_eq!(
                moved, 0,
                "{case}: {r} moved by {moved}, expected only {reason}: {d:?}"
            );
        } else if let Some(want) = packets {
            assert_eq!(
                moved, want,
                "{case}: {r} moved by {moved}, expected {want}: {d:?}"
            );
        } else {
            assert!(moved > 0, "{case}: {r} did not move: {d:?}");
        }
    }
}

/// Sends `n` datagrams from `host`/`src` to `dst` and returns how many a
/// socket on the PBX received.
fn send_and_count(
    lab: &TestLab,
    host: Host,
    src: IpAddr,
    dst: SocketAddr,
    n: u64,
    payload: usize,
) -> u64 {
    let rx = lab.udp(Host::Pbx, dst.ip(), dst.port());
    // A fixed source port outside the provider's media ports (40000-60000,
    // counted as media whatever the destination) and the ephemeral range.
    let tx = lab.udp(host, src, 30123);
    traffic::send(&tx, dst, n, payload).unwrap_or_else(|e| panic!("{e:#}"));
    traffic::count(&rx, IDLE).unwrap_or_else(|e| panic!("{e:#}"))
}

/// One packet each way first, so neighbour resolution is done before the
/// counted traffic (packets queued behind ARP/ND could be dropped).
fn warm_up(lab: &TestLab) {
    for (host, src, dst) in [
        (Host::Provider, v4(PROVIDER[0]), v4(PBX)),
        (Host::Outsider, v4(OUTSIDER), v4(PBX)),
        (Host::Outsider, IpAddr::V6(OUTSIDER6), IpAddr::V6(PBX6)),
    ] {
        let got = send_and_count(lab, host, src, SocketAddr::new(dst, 9), 1, 8);
        assert_eq!(got, 1, "warm-up datagram {src} -> {dst}:9 did not arrive");
    }
}

#[test]
fn sip_calls_pass_from_the_provider_only() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    lab.attach(&[]);
    let _udp = sipp::uas(&lab, Transport::Udp);
    let _tcp = sipp::uas(&lab, Transport::Tcp);
    #[rustfmt::skip]
    let rows = [
        ("provider's first address over UDP: allowlisted", Host::Provider, v4(PROVIDER[0]), Transport::Udp, true),
        ("provider's second address over UDP: either may carry any call", Host::Provider, v4(PROVIDER[1]), Transport::Udp, true),
        ("provider over TCP: 5060/tcp is policed the same way", Host::Provider, v4(PROVIDER[0]), Transport::Tcp, true),
        ("provider's second address over TCP", Host::Provider, v4(PROVIDER[1]), Transport::Tcp, true),
        ("outsider over UDP: not allowlisted, its INVITEs are dropped", Host::Outsider, v4(OUTSIDER), Transport::Udp, false),
        ("outsider over TCP: its SYNs to 5060 are dropped", Host::Outsider, v4(OUTSIDER), Transport::Tcp, false),
    ];
    let mut denied_total = 0;
    for (case, host, src, transport, answered) in rows {
        let before = lab.counters();
        let calls = sipp::call(&lab, case, host, src, transport, 3);
        let d = delta(&before, &lab.counters());
        let reason = if answered {
            "sip_allowed"
        } else {
            "sip_denied"
        };
        if answered {
            expect_answered(case, &calls);
        } else {
            expect_unanswered(case, &calls);
        }
        // Over UDP a SIP message is a datagram, so sipp's own count of what
        // it sent (retransmissions included) is exactly what the filter saw.
        // TCP segments don't map to messages: there, only "moved" is known.
        let exact = (transport == Transport::Udp).then_some(calls.messages_sent);
        assert_only(case, &d, reason, exact);
        denied_total += get(&d, "sip_denied").packets;
    }

    let top: Value = serde_json::from_str(&lab.sipwall_ok(&["top", "-i", PBX_IFACE, "--json"]))
        .expect("top --json");
    let sources = top["sources"].as_array().expect("top --json has sources");
    assert_eq!(sources.len(), 1, "only the outsider was denied: {top}");
    assert_eq!(
        sources[0]["addr"],
        OUTSIDER.to_string(),
        "top names the outsider: {top}"
    );
    assert_eq!(
        sources[0]["packets"], denied_total,
        "top counts every denied packet: {top}"
    );
}

#[test]
fn datagrams_are_counted_exactly_by_reason() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    lab.attach(&[]);
    warm_up(&lab);
    let (pbx, pbx6, out6) = (v4(PBX), IpAddr::V6(PBX6), IpAddr::V6(OUTSIDER6));
    #[rustfmt::skip]
    let rows = [
        ("RTP from an arbitrary address, bottom of the range", Host::Outsider, v4(OUTSIDER), pbx, 40000, 100, "rtp_allowed", true),
        ("RTP at the top of the range", Host::Outsider, v4(OUTSIDER), pbx, 60000, 50, "rtp_allowed", true),
        ("RTP from the provider is RTP too", Host::Provider, v4(PROVIDER[0]), pbx, 51234, 20, "rtp_allowed", true),
        ("RTP over IPv6 from an arbitrary address", Host::Outsider, out6, pbx6, 50000, 50, "rtp_allowed", true),
        ("SIP/UDP from the provider's second address", Host::Provider, v4(PROVIDER[1]), pbx, 5060, 40, "sip_allowed", true),
        ("SIP/UDP to 5061 from the provider", Host::Provider, v4(PROVIDER[0]), pbx, 5061, 40, "sip_allowed", true),
        ("SIP/UDP from the outsider", Host::Outsider, v4(OUTSIDER), pbx, 5060, 30, "sip_denied", false),
        ("SIP/UDP to 5061 from the outsider", Host::Outsider, v4(OUTSIDER), pbx, 5061, 30, "sip_denied", false),
        ("SIP/UDP over IPv6: the default allowlist holds no IPv6", Host::Outsider, out6, pbx6, 5060, 30, "sip_denied", false),
        ("the provider host's other address is not allowlisted", Host::Provider, v4(Ipv4Addr::new(198, 51, 100, 2)), pbx, 5060, 10, "sip_denied", false),
        ("UDP just below the RTP range is neither SIP nor RTP", Host::Outsider, v4(OUTSIDER), pbx, 39999, 20, "other", true),
        ("UDP just above the RTP range", Host::Outsider, v4(OUTSIDER), pbx, 60001, 20, "other", true),
    ];
    const PAYLOAD: usize = 172;
    for (case, host, src, dst, port, n, reason, arrives) in rows {
        let dst = SocketAddr::new(dst, port);
        let before = lab.counters();
        let got = send_and_count(&lab, host, src, dst, n, PAYLOAD);
        let d = delta(&before, &lab.counters());
        assert_eq!(
            got,
            if arrives { n } else { 0 },
            "{case}: {got} of {n} datagrams arrived"
        );
        if reason == "other" {
            // Neighbour discovery and the like count as `other` too.
            assert_only(case, &d, reason, Some(0));
            assert!(
                get(&d, "other").packets >= n,
                "{case}: other moved less than {n}: {d:?}"
            );
        } else {
            assert_only(case, &d, reason, Some(n));
            let bytes = n * traffic::udp_frame_len(dst, PAYLOAD);
            assert_eq!(
                get(&d, reason).bytes,
                bytes,
                "{case}: {reason} bytes: {d:?}"
            );
        }
    }
}

/// Writes an allowlist file in the lab's folder.
fn allow_file(lab: &TestLab, name: &str, cidrs: &[&str]) -> String {
    let path = lab.dir().join(name);
    std::fs::write(&path, format!("# {name}\n{}\n", cidrs.join("\n")))
        .expect("writing allowlist file");
    path.to_string_lossy().into_owned()
}

#[test]
fn allowlist_changes_live_under_traffic() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    lab.attach(&[]);
    warm_up(&lab);
    let _uas = sipp::uas(&lab, Transport::Udp);
    let prog = lab.xdp_prog_id().expect("XDP attached");
    let provider = [format!("{}/32", PROVIDER[0]), format!("{}/32", PROVIDER[1])];
    let with_outsiders = allow_file(
        &lab,
        "with-outsiders",
        &[&provider[0], &provider[1], "203.0.113.0/24"],
    );
    let provider_only = allow_file(&lab, "provider-only", &[&provider[0], &provider[1]]);

    // The provider signals all along (to 5061/udp, beside the calls on 5060):
    // no change below may cost it a single datagram.
    let sink = Sink::start(lab.udp(Host::Pbx, v4(PBX), 5061)).expect("sink");
    let before = lab.counters();
    let stream = Stream::start(
        lab.udp(Host::Provider, v4(PROVIDER[0]), 0),
        SocketAddr::new(v4(PBX), 5061),
        500,
    );

    #[rustfmt::skip]
    let steps: [(&str, Vec<&str>, &[&str], bool); 5] = [
        ("default allowlist: the outsider is refused", vec![], &[&provider[0], &provider[1]], false),
        ("allow add: the outsider's calls are answered", vec!["add", "203.0.113.2/32"], &[&provider[0], &provider[1], "203.0.113.2/32"], true),
        ("allow del: refused again", vec!["del", "203.0.113.2/32"], &[&provider[0], &provider[1]], false),
        ("allow replace with the outsiders' /24 added", vec!["replace", "--file", &with_outsiders], &[&provider[0], &provider[1], "203.0.113.0/24"], true),
        ("allow replace back to the provider only", vec!["replace", "--file", &provider_only], &[&provider[0], &provider[1]], false),
    ];
    let (mut outsider_allowed, mut outsider_denied) = (0, 0);
    for (case, change, list, answered) in steps {
        if !change.is_empty() {
            let mut args = vec!["allow"];
            args.extend_from_slice(&change);
            args.extend_from_slice(&["-i", PBX_IFACE]);
            lab.sipwall_ok(&args);
        }
        let mut got = lab.allowlist();
        got.sort();
        let mut want: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(got, want, "{case}: allow list");
        let calls = sipp::call(&lab, case, Host::Outsider, v4(OUTSIDER), Transport::Udp, 2);
        if answered {
            expect_answered(case, &calls);
            outsider_allowed += calls.messages_sent;
        } else {
            expect_unanswered(case, &calls);
            outsider_denied += calls.messages_sent;
        }
        assert_eq!(
            lab.xdp_prog_id(),
            Some(prog),
            "{case}: the program was replaced; changes must not re-attach"
        );
    }
    // Swap whole sets back and forth while the provider streams: a packet
    // sees the old set or the new, never a mix or an empty one.
    for i in 0..40 {
        let file = if i % 2 == 0 {
            &with_outsiders
        } else {
            &provider_only
        };
        lab.sipwall_ok(&["allow", "replace", "-i", PBX_IFACE, "--file", file]);
    }
    let sent = stream.stop().expect("provider stream");
    let received = sink.wait_for(sent, Duration::from_secs(3));
    assert_eq!(
        received, sent,
        "provider datagrams lost while the allowlist changed"
    );
    let d = delta(&before, &lab.counters());
    assert_eq!(
        get(&d, "sip_allowed").packets,
        sent + outsider_allowed,
        "sip_allowed = provider stream + answered outsider calls: {d:?}"
    );
    assert_eq!(
        get(&d, "sip_denied").packets,
        outsider_denied,
        "sip_denied = refused outsider calls: {d:?}"
    );

    // A set without the provider refuses the provider.
    let outsiders_only = allow_file(&lab, "outsiders-only", &["203.0.113.0/24"]);
    lab.sipwall_ok(&[
        "allow",
        "replace",
        "-i",
        PBX_IFACE,
        "--file",
        &outsiders_only,
    ]);
    let case = "replaced by the outsiders' /24 alone";
    expect_unanswered(
        case,
        &sipp::call(
            &lab,
            case,
            Host::Provider,
            v4(PROVIDER[0]),
            Transport::Udp,
            1,
        ),
    );
    expect_answered(
        case,
        &sipp::call(&lab, case, Host::Outsider, v4(OUTSIDER), Transport::Udp, 1),
    );
}

#[test]
fn filter_outlives_the_tool_survives_reattach_and_detaches() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    lab.attach(&[]);
    warm_up(&lab);
    let running = std::process::Command::new("ip")
        .args(["netns", "pids", &lab.ns(Host::Pbx)])
        .output()
        .expect("ip netns pids");
    assert!(
        running.stdout.is_empty(),
        "nothing of sipwall may still run after attach: {running:?}"
    );
    let sip = SocketAddr::new(v4(PBX), 5060);

    // Enforcing with no sipwall process: the pinned link holds the program.
    let before = lab.counters();
    let rows = [
        (
            "outsider refused after attach exited",
            Host::Outsider,
            v4(OUTSIDER),
            0,
            "sip_denied",
        ),
        (
            "provider passes after attach exited",
            Host::Provider,
            v4(PROVIDER[0]),
            20,
            "sip_allowed",
        ),
    ];
    for (case, host, src, want, reason) in rows {
        let before = lab.counters();
        assert_eq!(send_and_count(&lab, host, src, sip, 20, 64), want, "{case}");
        assert_only(case, &delta(&before, &lab.counters()), reason, Some(20));
    }
    lab.sipwall_ok(&["allow", "add", "-i", PBX_IFACE, "198.51.100.0/24"]);

    // Attaching again replaces the program in place and keeps the state.
    let kept = lab.counters();
    lab.attach(&[]);
    assert!(
        lab.xdp_prog_id().is_some(),
        "re-attach left the interface without a program"
    );
    let after = lab.counters();
    for r in POLICED {
        assert_eq!(
            get(&after, r),
            get(&kept, r),
            "re-attach changed the {r} counter"
        );
    }
    assert!(
        lab.allowlist().contains(&"198.51.100.0/24".to_string()),
        "re-attach lost the added entry"
    );
    assert!(get(&after, "sip_denied").packets >= get(&before, "sip_denied").packets + 20);
    let case = "counting goes on in the same counters after re-attach";
    let b = lab.counters();
    assert_eq!(
        send_and_count(&lab, Host::Outsider, v4(OUTSIDER), sip, 10, 64),
        0,
        "{case}"
    );
    assert_only(case, &delta(&b, &lab.counters()), "sip_denied", Some(10));
    // -i may be left out with exactly one interface attached.
    let json: Value =
        serde_json::from_str(&lab.sipwall_ok(&["stats", "--json"])).expect("stats --json");
    assert_eq!(
        json["interfaces"][0]["iface"], PBX_IFACE,
        "stats without -i: {json}"
    );

    lab.sipwall_ok(&["detach", "-i", PBX_IFACE]);
    assert_eq!(
        lab.xdp_prog_id(),
        None,
        "detach left a program on {PBX_IFACE}"
    );
    assert!(!lab.pin_dir(PBX_IFACE).exists(), "detach left pins behind");
    let got = send_and_count(&lab, Host::Outsider, v4(OUTSIDER), sip, 10, 64);
    assert_eq!(got, 10, "after detach nothing is filtered");
}
