//! Built outgoing packets through the real TC egress program
//! (BPF_PROG_TEST_RUN on the sched_cls program via
//! `filter_kernel::runner::Runner::run_out`), one row per case of
//! docs/policy.md's egress table. Each row asserts the verdict and that
//! exactly its reason's egress counter moved, by one packet and the frame's
//! length. Needs root (CAP_BPF).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use filter_common::OutReason::{self, *};
use filter_kernel::runner::{Runner, Verdict};
use filter_policy::{
    config,
    ruleset::{compile_rules, EgressMode, MediaCalls, MediaMode, Mode, Ruleset, Unattended},
};
use sipwall_tests::{
    calls::{Age, KernelCalls, Planned, Reader},
    packet::{Frame, TPID_8021Q},
};

const PASS: Verdict = Verdict::Pass;
const DROP: Verdict = Verdict::Drop;

const PROVIDER_A: Ipv4Addr = Ipv4Addr::new(44, 229, 228, 186);
const PROVIDER_B: Ipv4Addr = Ipv4Addr::new(44, 238, 177, 138);
const ABOVE_A: Ipv4Addr = Ipv4Addr::new(44, 229, 228, 187);
const STRANGER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);
/// The protected host: every frame here leaves it.
const HOST: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const MGMT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const WEB: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 50);
const RESOLVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 53);
const PINGED: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 60);
const NTP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 123);

fn v6(s: &str) -> Ipv6Addr {
    s.parse().expect("test IPv6 address")
}

fn out4(dst: Ipv4Addr) -> Frame {
    Frame::ipv4(HOST, dst)
}

fn out6(dst: &str) -> Frame {
    Frame::ipv6(v6("2001:db8::10"), v6(dst))
}

const EGRESS_TOML: &str = r#"
[media]
rtp_ports = "10000-20000"

[policy]
mode = "strict"

[[strict.allow]]
proto = "tcp"
ports = [22]
from = ["198.51.100.0/24", "2001:db8:a::/48"]

[[strict.allow]]
proto = "icmp"
from = ["198.51.100.0/24"]

[egress]
mode = "strict"
dns = ["203.0.113.53", "2001:db8:53::53"]

[[egress.allow]]
proto = "tcp"
ports = [443]
to = ["203.0.113.50/32", "2001:db8:443::/48"]

[[egress.allow]]
proto = "udp"
ports = [123]
to = ["192.0.2.123"]

[[egress.allow]]
proto = "icmp"
to = ["203.0.113.60/32"]
"#;

fn egress_ruleset() -> Ruleset {
    config::parse(EGRESS_TOML, "egress.toml").unwrap_or_else(|e| panic!("{e}"))
}

struct Case {
    verdict: Verdict,
    reason: OutReason,
    why: &'static str,
    frame: Frame,
}

fn case(verdict: Verdict, reason: OutReason, why: &'static str, frame: Frame) -> Case {
    Case {
        verdict,
        reason,
        why,
        frame,
    }
}

#[rustfmt::skip]
fn table() -> Vec<Case> {
    let invite = b"INVITE sip:+15550100@44.229.228.186 SIP/2.0\r\n\r\n";
    vec![
        // not IP
        case(PASS, NonIp, "ARP is never filtered", Frame::arp(HOST, STRANGER)),
        // malformed: nothing the host's stack builds
        case(DROP, Denied, "IHL 4", out4(STRANGER).udp(5060, 5060).ip4(|h| h.ihl = Some(4))),
        // signalling
        case(PASS, SipAllowed, "INVITE to the provider", out4(PROVIDER_A).udp(5060, 5060).payload(invite)),
        case(PASS, SipAllowed, "TLS to the provider's other address", out4(PROVIDER_B).tcp(40123, 5061)),
        case(PASS, SipAllowed, "behind a VLAN tag", out4(PROVIDER_A).udp(5060, 5060).vlan(TPID_8021Q, 7)),
        case(DROP, SipDenied, "INVITE to an outsider's SIP server", out4(STRANGER).udp(5060, 5060).payload(invite)),
        case(DROP, SipDenied, "the address next to the provider's", out4(ABOVE_A).tcp(40123, 5061)),
        case(DROP, SipDenied, "IPv6 SIP: no IPv6 in the allowlist", out6("2001:db8:bad::9").udp(5060, 5060)),
        case(DROP, SipDenied, "SIP to the management network: signalling comes before the rules", out4(MGMT).udp(5060, 5060)),
        // media to the provider's media ports, any address
        case(PASS, RtpAllowed, "RTP to the provider's first media port", out4(STRANGER).udp(10000, 40000)),
        case(PASS, RtpAllowed, "RTP to its last", out4(STRANGER).udp(30000, 60000)),
        case(PASS, RtpAllowed, "IPv6 RTP", out6("2001:db8:bad::9").udp(10002, 50000)),
        case(DROP, Denied, "TCP to a media port is not media", out4(STRANGER).tcp(30000, 40000)),
        // answers to what ingress lets in
        case(PASS, Reply, "SIP over TCP answered from 5061 to the provider's port", out4(PROVIDER_A).tcp(5061, 33000)),
        case(DROP, Denied, "from 5061 to an outsider's port", out4(STRANGER).tcp(5061, 33000)),
        case(PASS, Reply, "media from rtp_ports to anywhere", out4(STRANGER).udp(10000, 1234)),
        case(PASS, Reply, "media from the last of rtp_ports", out4(STRANGER).udp(20000, 1234)),
        case(DROP, Denied, "UDP from just past rtp_ports", out4(STRANGER).udp(20001, 1234)),
        case(PASS, Reply, "SSH answers to the management network", out4(MGMT).tcp(22, 50000)),
        case(PASS, Reply, "IPv6 SSH answers to the management network", out6("2001:db8:a::7").tcp(22, 50000)),
        case(DROP, Denied, "SSH answers to an outsider", out4(STRANGER).tcp(22, 50000)),
        case(PASS, Reply, "echo reply (ping on)", out4(STRANGER).icmp(0, 0)),
        case(PASS, Reply, "IPv6 echo reply", out6("2001:db8:bad::9").icmp(129, 0)),
        case(PASS, Reply, "ICMP to the management network: its icmp rule turned around", out4(MGMT).icmp_echo()),
        // essential
        case(PASS, Essential, "DNS to the resolver", out4(RESOLVER).udp(33333, 53)),
        case(PASS, Essential, "DNS over TCP to the resolver", out4(RESOLVER).tcp(33334, 53)),
        case(PASS, Essential, "IPv6 DNS to the IPv6 resolver", out6("2001:db8:53::53").udp(33335, 53)),
        case(DROP, Denied, "DNS to another server", out4(STRANGER).udp(33333, 53)),
        case(DROP, Denied, "the resolver on another port", out4(RESOLVER).udp(33333, 853)),
        case(DROP, Denied, "SCTP to the resolver's port 53", out4(RESOLVER).sctp(33333, 53)),
        case(DROP, Denied, "IPv6 to the IPv4 resolver's mapped address: a resolver is of its own family", out6("::ffff:203.0.113.53").udp(33333, 53)),
        case(PASS, Essential, "DHCP client", Frame::ipv4(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST).udp(68, 67)),
        case(PASS, Essential, "DHCPv6 client", out6("ff02::1:2").udp(546, 547)),
        case(DROP, Denied, "DHCP the wrong way round", Frame::ipv4(HOST, Ipv4Addr::BROADCAST).udp(67, 68)),
        case(PASS, Essential, "ICMP port unreachable", out4(STRANGER).icmp(3, 3)),
        case(PASS, Essential, "ICMP time exceeded", out4(STRANGER).icmp(11, 0)),
        case(PASS, Essential, "ICMPv6 packet too big", out6("2001:db8:bad::9").icmp(2, 0)),
        case(PASS, Essential, "neighbour solicitation", out6("ff02::1:ff00:9").icmp(135, 0)),
        case(PASS, Essential, "MLDv2 report", out6("ff02::16").icmp(143, 0)),
        case(DROP, Denied, "ping an outsider", out4(STRANGER).icmp_echo()),
        case(DROP, Denied, "ICMP redirect", out4(STRANGER).icmp(5, 0)),
        // the operator's rules
        case(PASS, RuleAllowed, "HTTPS to the ruled web server", out4(WEB).tcp(40000, 443)),
        case(PASS, RuleAllowed, "IPv6 HTTPS to the ruled network", out6("2001:db8:443::1").tcp(40000, 443)),
        case(DROP, Denied, "HTTP to the ruled web server", out4(WEB).tcp(40000, 80)),
        case(DROP, Denied, "HTTPS to an outsider", out4(STRANGER).tcp(40000, 443)),
        case(PASS, RuleAllowed, "NTP to the ruled server", out4(NTP).udp(123, 123)),
        case(DROP, Denied, "NTP over TCP", out4(NTP).tcp(40000, 123)),
        case(PASS, RuleAllowed, "ping the ruled address", out4(PINGED).icmp_echo()),
        case(DROP, Denied, "SCTP to an outsider", out4(STRANGER).sctp(2905, 2905)),
        case(DROP, Denied, "ESP to an outsider", out4(STRANGER).raw(50, &[0; 8])),
        // fragments
        case(PASS, Fragment, "a later fragment: its first was judged", out4(STRANGER).udp(9999, 9999).fragment(185, false)),
        case(DROP, Denied, "a first fragment by its ports", out4(STRANGER).udp(9999, 9999).fragment(0, true)),
        case(PASS, SipAllowed, "a first fragment of an INVITE to the provider", out4(PROVIDER_A).udp(5060, 5060).fragment(0, true)),
    ]
}

fn runner(ruleset: &Ruleset) -> Runner {
    Runner::new(ruleset).expect("loading the program (needs root)")
}

/// Runs every row; `verdict` gives the verdict expected of a row (dry run
/// passes everything).
fn run_table(name: &str, runner: &Runner, rows: &[Case], verdict: impl Fn(&Case) -> Verdict) {
    let mut failures = Vec::new();
    for c in rows {
        let frame = c.frame.build();
        let got = runner
            .run_out(&frame)
            .unwrap_or_else(|e| panic!("{name}, {}: {e:#}", c.why));
        let want = verdict(c);
        let counted = got.reason() == Some(c.reason)
            && got.moved.first().map(|m| m.1.bytes) == Some(frame.len() as u64);
        if got.verdict != want || !counted {
            failures.push(format!(
                "{name}: {}: want {} {}, got {} {:?}",
                c.why,
                want.name(),
                c.reason.name(),
                got.verdict.name(),
                got.moved
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn strict_egress_table() {
    sipwall_tests::skip_unless_root!();
    let rules = egress_ruleset();
    run_table("strict in, strict out", &runner(&rules), &table(), |c| {
        c.verdict
    });
    // Egress alone: guard ingress, the same outbound table (the
    // [[strict.allow]] rules still say whose answers go out).
    let guard = Ruleset {
        mode: Mode::Guard,
        ..rules.clone()
    };
    run_table("guard in, strict out", &runner(&guard), &table(), |c| {
        c.verdict
    });
    // Dry run counts as above and drops nothing.
    let dry = Ruleset {
        dry_run: true,
        ..rules
    };
    run_table("strict out, dry run", &runner(&dry), &table(), |_| PASS);
}

/// Open egress judges nothing: every outgoing frame passes, no egress
/// counter moves, in guard and in strict ingress.
#[test]
fn open_egress_drops_nothing() {
    sipwall_tests::skip_unless_root!();
    for mode in [Mode::Guard, Mode::Strict] {
        let rules = Ruleset {
            mode,
            egress: filter_policy::ruleset::Egress {
                mode: EgressMode::Open,
                ..egress_ruleset().egress
            },
            ..egress_ruleset()
        };
        let runner = runner(&rules);
        for c in table() {
            let got = runner.run_out(&c.frame.build()).unwrap();
            assert_eq!(
                got.verdict, PASS,
                "{mode:?} ingress, open egress: {}",
                c.why
            );
            assert!(
                got.moved.is_empty(),
                "open egress counts nothing: {}: {:?}",
                c.why,
                got.moved
            );
        }
    }
}

/// A packet strict egress drops opens no flow: its answer stays denied at
/// ingress, while the answer of one it lets out is a reply.
#[test]
fn dropped_packets_open_no_flow() {
    sipwall_tests::skip_unless_root!();
    let runner = runner(&egress_ruleset());
    let allowed = out4(WEB).tcp(40500, 443).build();
    let dropped = out4(STRANGER).tcp(40501, 80).build();
    assert_eq!(runner.run_out(&allowed).unwrap().verdict, PASS);
    assert_eq!(runner.run_out(&dropped).unwrap().verdict, DROP);
    let answer = |src, sport, dport| Frame::ipv4(src, HOST).tcp(sport, dport).build();
    let got = runner.run(&answer(WEB, 443, 40500)).unwrap();
    assert_eq!(
        (got.verdict, got.reason().map(|r| r.name())),
        (PASS, Some("reply")),
        "the answer to a packet let out"
    );
    let got = runner.run(&answer(STRANGER, 80, 40501)).unwrap();
    assert_eq!(
        (got.verdict, got.reason().map(|r| r.name())),
        (DROP, Some("denied")),
        "the answer to a packet dropped on the way out"
    );
}

/// A live change of the egress rules takes effect at once (the same
/// generation switch as the ingress policy).
#[test]
fn egress_rules_change_live() {
    sipwall_tests::skip_unless_root!();
    let mut runner = runner(&egress_ruleset());
    let http = out4(STRANGER).tcp(40000, 80).build();
    assert_eq!(runner.run_out(&http).unwrap().reason(), Some(Denied));
    let mut wider = egress_ruleset();
    wider.egress.rules[0].ports = vec![(80, 80), (443, 443)];
    wider.egress.rules[0].from = vec!["203.0.113.0/24".parse().unwrap()];
    runner.install(&wider).unwrap();
    assert_eq!(runner.run_out(&http).unwrap().reason(), Some(RuleAllowed));
    let back = runner.maps.read_ruleset().unwrap();
    assert_eq!(
        compile_rules(&back.egress.rules),
        compile_rules(&wider.egress.rules),
        "the rules read back from the map"
    );
    assert_eq!(back.egress.dns, wider.egress.dns);
    assert!(back.egress.strict());
    runner.install(&Ruleset::default()).unwrap();
    let got = runner.run_out(&http).unwrap();
    assert!(got.verdict == PASS && got.moved.is_empty(), "{got:?}");
}

// --- calls mode: the host's media leaves only to its calls (row 2u) ---

/// Pinholes' remote addresses.
const CALLER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 20);
const CALLER_EXPIRED: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 21);
const CALLER_OLD: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 22);
const CALLER_AHEAD: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 23);
const CALLER6: &str = "2001:db8:5::20";

/// Local ports (in rtp_ports, 10000-20000) of the pinholes below.
const PORT_CALLER: u16 = 10000;
const PORT_ANY: u16 = 10002;
const PORT_EXPIRED: u16 = 10004;
const PORT_V6: u16 = 10006;
const PORT_OLD: u16 = 10008;
const PORT_AHEAD: u16 = 10010;
/// In rtp_ports, no pinhole.
const PORT_NONE: u16 = 15000;
/// A UDP port outside rtp_ports.
const PORT_OUTSIDE: u16 = 30000;

fn calls_ruleset(mode: Mode, unattended: Unattended) -> Ruleset {
    Ruleset {
        mode,
        media: MediaCalls {
            mode: MediaMode::Calls,
            call_idle_secs: 60,
            unattended,
        },
        ..egress_ruleset()
    }
}

/// A program with `ruleset`, one pinhole of each kind and age, and the
/// heartbeat `reader`.
fn calls_runner(ruleset: &Ruleset, reader: Reader) -> (Runner, KernelCalls) {
    let mut r = runner(ruleset);
    let mut calls = KernelCalls::new(&mut r).expect("taking the media maps");
    let idle = ruleset.media.call_idle_secs as i64;
    let at = |port, remote: Option<IpAddr>, age| Planned { port, remote, age };
    let plan = [
        at(PORT_CALLER, Some(CALLER.into()), Age::Opened),
        at(PORT_ANY, None, Age::Opened),
        at(
            PORT_EXPIRED,
            Some(CALLER_EXPIRED.into()),
            Age::Seen(-idle - 5),
        ),
        at(PORT_V6, Some(v6(CALLER6).into()), Age::Opened),
        at(PORT_OLD, Some(CALLER_OLD.into()), Age::Seen(15 - idle)),
        at(PORT_AHEAD, Some(CALLER_AHEAD.into()), Age::Seen(2)),
    ];
    calls
        .install(&plan, reader, idle as u64 * 1_000_000_000)
        .expect("writing the pinholes and the heartbeat");
    (r, calls)
}

/// The reader up: UDP from a port of rtp_ports leaves only to a live
/// pinhole's remote (or from a port open to any source).
#[rustfmt::skip]
fn calls_table() -> Vec<Case> {
    vec![
        case(PASS, RtpAllowed, "media to the pinhole's remote", out4(CALLER).udp(PORT_CALLER, 1234)),
        case(DROP, Denied, "media from the pinhole's port to another address", out4(STRANGER).udp(PORT_CALLER, 1234)),
        case(DROP, Denied, "media to the pinhole's remote from the next port", out4(CALLER).udp(PORT_CALLER + 1, 1234)),
        case(PASS, RtpAllowed, "a port open to any source: to a stranger", out4(STRANGER).udp(PORT_ANY, 1234)),
        case(PASS, RtpAllowed, "a port open to any source: to an IPv6 stranger", out6("2001:db8:bad::9").udp(PORT_ANY, 1234)),
        case(DROP, Denied, "an expired pinhole's remote", out4(CALLER_EXPIRED).udp(PORT_EXPIRED, 1234)),
        case(PASS, RtpAllowed, "an IPv6 pinhole's remote", out6(CALLER6).udp(PORT_V6, 1234)),
        case(DROP, Denied, "an IPv4 address from the IPv6 pinhole's port", out4(CALLER).udp(PORT_V6, 1234)),
        case(PASS, RtpAllowed, "a pinhole last seen 45 s ago (call_idle 60 s)", out4(CALLER_OLD).udp(PORT_OLD, 1234)),
        case(PASS, RtpAllowed, "a pinhole last seen ahead of the clock", out4(CALLER_AHEAD).udp(PORT_AHEAD, 1234)),
        case(DROP, Denied, "a port of rtp_ports without a pinhole", out4(STRANGER).udp(PORT_NONE, 1234)),
        case(DROP, Denied, "the last port of rtp_ports, no pinhole", out4(STRANGER).udp(20000, 1234)),
        case(DROP, Denied, "DNS to the resolver from a port of rtp_ports: 2u before essential", out4(RESOLVER).udp(PORT_NONE, 53)),
        // Unchanged rows around 2u.
        case(PASS, SipAllowed, "signalling first: from a pinhole's port to the provider's 5060", out4(PROVIDER_A).udp(PORT_ANY, 5060)),
        case(DROP, SipDenied, "signalling first: to an outsider's 5060", out4(STRANGER).udp(PORT_CALLER, 5060)),
        case(PASS, RtpAllowed, "to the provider's media ports from outside rtp_ports (row 3)", out4(STRANGER).udp(30000, 40000)),
        case(DROP, Denied, "UDP from just past rtp_ports", out4(STRANGER).udp(20001, 1234)),
        case(DROP, Denied, "TCP from a pinhole's port is not media", out4(CALLER).tcp(PORT_CALLER, 1234)),
        case(PASS, Reply, "SSH answers still go out", out4(MGMT).tcp(22, 50000)),
        case(PASS, Fragment, "a later fragment from a port without a pinhole", out4(STRANGER).udp(PORT_NONE, 1234).fragment(185, false)),
    ]
}

#[test]
fn calls_mode_egress_table() {
    sipwall_tests::skip_unless_root!();
    for mode in [Mode::Strict, Mode::Guard] {
        let rules = calls_ruleset(mode, Unattended::Range);
        let (runner, calls) = calls_runner(&rules, Reader::Fresh);
        let before = calls.slot(PORT_OLD, 0).expect("reading the slot");
        run_table(
            &format!("{mode:?} in, strict out, calls"),
            &runner,
            &calls_table(),
            |c| c.verdict,
        );
        // Media sent through a pinhole keeps it live.
        let after = calls.slot(PORT_OLD, 0).expect("reading the slot");
        assert!(
            after.last_seen_ns >= before.last_seen_ns + 40_000_000_000,
            "media sent did not refresh the pinhole: last seen {} before, {} after",
            before.last_seen_ns,
            after.last_seen_ns
        );
    }
    let dry = Ruleset {
        dry_run: true,
        ..calls_ruleset(Mode::Strict, Unattended::Closed)
    };
    let (runner, _calls) = calls_runner(&dry, Reader::Fresh);
    run_table(
        "strict out, calls, dry run",
        &runner,
        &calls_table(),
        |_| PASS,
    );
}

/// The reader down: `unattended = "range"` lets media out by range,
/// counted as media; `"closed"` only through live pinholes.
#[test]
#[rustfmt::skip]
fn calls_mode_egress_with_the_reader_down() {
    sipwall_tests::skip_unless_root!();
    for unattended in [Unattended::Range, Unattended::Closed] {
        for reader in [Reader::Stale, Reader::Never] {
            let rules = calls_ruleset(Mode::Strict, unattended);
            let (runner, _calls) = calls_runner(&rules, reader);
            let (v, r) = match unattended {
                Unattended::Range => (PASS, RtpAllowed),
                Unattended::Closed => (DROP, Denied),
            };
            let table = vec![
                case(PASS, RtpAllowed, "media to a live pinhole's remote", out4(CALLER).udp(PORT_CALLER, 1234)),
                case(PASS, RtpAllowed, "a port open to any source", out4(STRANGER).udp(PORT_ANY, 1234)),
                case(v, r, "media from a pinhole's port to another address", out4(STRANGER).udp(PORT_CALLER, 1234)),
                case(v, r, "an expired pinhole's remote", out4(CALLER_EXPIRED).udp(PORT_EXPIRED, 1234)),
                case(v, r, "a port without a pinhole, IPv6", out6("2001:db8:bad::9").udp(PORT_NONE, 1234)),
            ];
            run_table(&format!("strict out, calls, unattended {unattended:?}, reader {reader:?}"), &runner, &table, |c| c.verdict);
        }
    }
}

/// Open egress in calls mode still judges nothing.
#[test]
fn calls_mode_with_open_egress_drops_nothing() {
    sipwall_tests::skip_unless_root!();
    let mut rules = calls_ruleset(Mode::Strict, Unattended::Closed);
    rules.egress.mode = EgressMode::Open;
    let (runner, _calls) = calls_runner(&rules, Reader::Fresh);
    for c in calls_table() {
        let got = runner.run_out(&c.frame.build()).unwrap();
        assert!(
            got.verdict == PASS && got.moved.is_empty(),
            "open egress, calls: {}: {got:?}",
            c.why
        );
    }
}

/// Row 2u comes before row 3 (UDP to the provider's media ports, any
/// address) in docs/policy.md's egress table: in calls mode, media from a
/// port of rtp_ports leaves only to a call's remote, even to a provider
/// media port; a port of no call still sends to the provider's media
/// ports by row 3.
#[test]
#[rustfmt::skip]
fn calls_mode_media_to_the_providers_media_ports_is_row_2u_first() {
    sipwall_tests::skip_unless_root!();
    let rules = calls_ruleset(Mode::Strict, Unattended::Closed);
    let (runner, _calls) = calls_runner(&rules, Reader::Fresh);
    let table = vec![
        case(PASS, RtpAllowed, "to a pinhole's remote's media port", out4(CALLER).udp(PORT_CALLER, 40000)),
        case(DROP, Denied, "from a pinhole's port to another address's media port", out4(STRANGER).udp(PORT_CALLER, 40000)),
        case(PASS, RtpAllowed, "from a port outside rtp_ports to a provider media port", out4(STRANGER).udp(PORT_OUTSIDE, 60000)),
    ];
    run_table("strict out, calls, row 2u before 3", &runner, &table, |c| c.verdict);
}
