//! Calls mode's copies of signalling (docs/policy.md, "Copies of
//! signalling, and the reader"), through the real programs: every
//! signalling packet passed is copied whole with its time and direction;
//! when the ring is full the copies are lost and counted, never silently;
//! range mode copies nothing.
use std::net::Ipv4Addr;

use filter_kernel::runner::Runner;
use filter_policy::ruleset::{MediaCalls, MediaMode, Ruleset};
use sipwall_tests::packet::Frame;

const HOST: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const PROVIDER: Ipv4Addr = Ipv4Addr::new(44, 229, 228, 186);
const STRANGER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);

fn calls() -> Ruleset {
    Ruleset {
        media: MediaCalls {
            mode: MediaMode::Calls,
            ..MediaCalls::default()
        },
        ..Ruleset::default()
    }
}

fn sip(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> Vec<u8> {
    Frame::ipv4(src, dst)
        .udp(sport, dport)
        .payload(b"OPTIONS sip:h@192.0.2.10 SIP/2.0\r\nContent-Length: 0\r\n\r\n")
        .build()
}

#[test]
fn what_is_copied_and_what_is_not() {
    sipwall_tests::skip_unless_root!();
    let mut runner = Runner::new(&calls()).expect("loading the program");
    let mut ring = runner.copy_ring().expect("the copies ring");
    let maps = runner.media_maps().expect("the media maps");
    let allowed = sip(PROVIDER, HOST, 5060, 5060);
    // The provider's answer on a TCP connection this host opened: from
    // its signalling port to an ephemeral one.
    let answer = Frame::ipv4(PROVIDER, HOST)
        .tcp(5061, 40123)
        .payload(b"SIP/2.0 200 OK\r\n\r\n")
        .build();
    let denied = sip(STRANGER, HOST, 5060, 5060);
    let strangers_answer = Frame::ipv4(STRANGER, HOST).tcp(5060, 40123).build();
    let media = Frame::ipv4(PROVIDER, HOST).udp(40000, 40010).build();
    let sent = sip(HOST, PROVIDER, 5060, 5060);
    for frame in [&allowed, &answer, &denied, &strangers_answer, &media] {
        runner.run(frame).expect("running a frame");
    }
    runner.run_out(&sent).expect("running a frame out");
    let copies: Vec<_> = std::iter::from_fn(|| ring.next_copy()).collect();
    assert_eq!(
        copies.len(),
        3,
        "the allowed packet, the answer and the host's: {copies:?}"
    );
    assert_eq!(copies[0].data, allowed);
    assert_eq!(copies[1].data, answer);
    assert_eq!(copies[2].data, sent);
    assert!(!copies[0].outbound && !copies[1].outbound && copies[2].outbound);
    assert!(copies
        .iter()
        .all(|c| c.len as usize == c.data.len() && c.ts_ns > 0));
    let stats = maps.stats().expect("the copy counts");
    assert_eq!((stats.copies, stats.lost), (3, 0));

    // Range mode: nothing.
    let mut range = Runner::new(&Ruleset::default()).expect("loading the program");
    let mut ring = range.copy_ring().expect("the copies ring");
    range.run(&allowed).expect("running a frame");
    range.run_out(&sent).expect("running a frame out");
    assert!(ring.next_copy().is_none(), "range mode copied signalling");
}

#[test]
fn a_full_ring_loses_copies_and_counts_them() {
    sipwall_tests::skip_unless_root!();
    let mut runner = Runner::new(&calls()).expect("loading the program");
    let mut ring = runner.copy_ring().expect("the copies ring");
    let maps = runner.media_maps().expect("the media maps");
    let allowed = sip(PROVIDER, HOST, 5060, 5060);
    // Nobody drains: 3,000 copies do not fit in 8 MiB of 4 KiB copies.
    runner.time(&allowed, 3_000).expect("running a frame");
    let stats = maps.stats().expect("the copy counts");
    assert_eq!(stats.copies + stats.lost, 3_000, "{stats:?}");
    assert!(stats.lost > 0 && stats.copies > 1_000, "{stats:?}");
    let drained = std::iter::from_fn(|| ring.next_copy()).count() as u64;
    assert_eq!(drained, stats.copies, "the ring holds what was counted");
    // Drained, it takes copies again.
    runner.run(&allowed).expect("running a frame");
    assert!(ring.next_copy().is_some());
    assert_eq!(maps.stats().expect("the copy counts").lost, stats.lost);
}
