//! Differential test of the TC egress program: random, structure-aware
//! outgoing frames go through the real program (BPF_PROG_TEST_RUN on TC)
//! and through the independent egress reference model
//! (`sipwall_tests::reference_egress`), under several configurations
//! installed one after the other on the same program. Verdict and reason
//! must agree on every frame, exactly one egress counter must move by one
//! packet and the frame's length (none with open egress), and no run may
//! end in another action than pass (TC_ACT_UNSPEC) or drop (TC_ACT_SHOT).
//!
//! 80,000 frames in all by default, half from a fixed seed, half from a
//! random one printed for replay; `SIPWALL_FUZZ_PACKETS` sets the frames
//! per configuration and `SIPWALL_FUZZ_SEED` the random seed (`cargo xtask
//! fuzz` runs this with the ingress differential test). Needs root.
use std::{
    collections::BTreeMap,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use filter_common::{OutReason, OUT_REASON_COUNT};
use filter_kernel::{
    maps::monotonic_ns,
    runner::{OutOutcome, Runner, Verdict},
};
use filter_policy::ruleset::{
    AllowRule, Egress, EgressMode, MediaCalls, MediaMode, Mode, RuleProto, Ruleset, Unattended,
};
use sipwall_tests::{
    calls::{pinhole_plan, Calls, KernelCalls, Reader},
    generator::{frame_seed, Generator},
    reference_egress::{self, ExpectedOut},
};

const FIXED_SEED: u64 = 0x5195_a11e_e6e5_0001;
const DEFAULT_TOTAL: u64 = 80_000;
/// Each reason a configuration can reach must be reached this often, so
/// a generator that degrades fails the test.
const MIN_PER_REASON: u64 = 5;
const SHOWN: u64 = 20;
/// In calls mode with the reader up (or `unattended = "closed"`), media
/// the host sends through a pinhole (`out_rtp_allowed` from a port of
/// `rtp_ports`) and outside every live one (`out_denied`) must each be
/// reached this often per configuration.
const MIN_CALLS: u64 = 50;
/// How often calls mode's state is written again (see differential.rs).
const CALLS_REFRESH: std::time::Duration = std::time::Duration::from_secs(2);

fn nets(cidrs: &[&str]) -> Vec<ipnet::IpNet> {
    cidrs.iter().map(|c| c.parse().expect(c)).collect()
}

fn rule(proto: RuleProto, ports: &[(u16, u16)], remote: &[&str]) -> AllowRule {
    AllowRule {
        proto,
        ports: ports.to_vec(),
        from: nets(remote),
    }
}

/// A configuration, and in calls mode the reader's heartbeat.
type Config = (&'static str, Ruleset, Option<Reader>);

fn configs() -> Vec<Config> {
    let egress = Egress {
        mode: EgressMode::Strict,
        rules: vec![
            rule(
                RuleProto::Tcp,
                &[(443, 443), (8000, 8080)],
                &["203.0.113.0/25", "2001:db8:443::/48"],
            ),
            rule(RuleProto::Udp, &[(123, 123)], &["192.0.2.123/32"]),
            rule(RuleProto::Sctp, &[(2905, 2905)], &[]),
            rule(
                RuleProto::Icmp,
                &[],
                &["203.0.113.60/32", "2001:db8:bad::/48"],
            ),
            rule(RuleProto::Any, &[], &["198.51.100.200/32"]),
        ],
        dns: nets(&["203.0.113.53/32", "2001:db8:53::53/128"]),
    };
    let strict = Ruleset {
        mode: Mode::Strict,
        rtp: (10000, 20000),
        rules: vec![
            rule(
                RuleProto::Tcp,
                &[(22, 22)],
                &["198.51.100.0/24", "2001:db8:1::/48"],
            ),
            rule(RuleProto::Udp, &[(7000, 7010)], &[]),
            rule(RuleProto::Icmp, &[], &["192.0.2.64/26"]),
        ],
        allow: nets(&[
            "44.229.228.186/32",
            "44.238.177.138/32",
            "2001:db8:2:3::1/128",
        ]),
        egress: egress.clone(),
        ..Ruleset::default()
    };
    // Guard ingress, strict egress, a long allowlist: signalling
    // destinations are looked up in the direct tables.
    let mut long_allow = strict.allow.clone();
    for n in 0..24u8 {
        long_allow.push(format!("198.18.{n}.0/{}", 24 + n % 9).parse().unwrap());
        long_allow.push(
            format!("2001:db8:7:{n:x}00::/{}", 56 + n % 9)
                .parse()
                .unwrap(),
        );
    }
    long_allow.extend(nets(&["44.229.228.0/24", "192.0.2.0/24"]));
    let guard_long = Ruleset {
        mode: Mode::Guard,
        allow: long_allow,
        ..strict.clone()
    };
    let moved = Ruleset {
        sig_ports: vec![5080, 6060],
        rtp: (16384, 32768),
        provider_rtp: (30000, 30100),
        ping: false,
        egress: Egress {
            dns: nets(&["192.0.2.0/28"]),
            ..egress.clone()
        },
        ..strict.clone()
    };
    let dry = Ruleset {
        dry_run: true,
        ..strict.clone()
    };
    let open = Ruleset {
        egress: Egress {
            mode: EgressMode::Open,
            ..egress
        },
        ..strict.clone()
    };
    let calls = |unattended| MediaCalls {
        mode: MediaMode::Calls,
        call_idle_secs: 60,
        unattended,
    };
    let strict_calls = Ruleset {
        media: calls(Unattended::Range),
        ..strict.clone()
    };
    let guard_calls_closed = Ruleset {
        media: calls(Unattended::Closed),
        ..guard_long.clone()
    };
    // `rtp_ports` overlaps `provider_rtp_ports`: media from a port of
    // the one to a port of the other.
    let moved_calls = Ruleset {
        media: calls(Unattended::Range),
        ..moved.clone()
    };
    let open_calls = Ruleset {
        media: calls(Unattended::Closed),
        ..open.clone()
    };
    [
        ("strict in, strict out", strict, None),
        ("guard in, strict out, long allowlist", guard_long, None),
        ("strict out, ports moved, no ping", moved, None),
        ("strict out, dry run", dry, None),
        ("open egress", open, None),
        (
            "strict in, strict out, calls",
            strict_calls.clone(),
            Some(Reader::Fresh),
        ),
        (
            "strict out, calls, reader down (unattended range)",
            strict_calls,
            Some(Reader::Stale),
        ),
        (
            "guard in, strict out, calls, no reader ever, unattended closed",
            guard_calls_closed,
            Some(Reader::Never),
        ),
        (
            "strict out, ports moved, calls",
            moved_calls,
            Some(Reader::Fresh),
        ),
        ("open egress, calls", open_calls, Some(Reader::Fresh)),
    ]
    .into_iter()
    .map(|(name, r, reader)| (name, r.normalise().expect("a valid ruleset"), reader))
    .collect()
}

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    let parsed = match value.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => value.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={value} is not a number")))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The egress program's outcome for `frame`; `None` when the kernel
/// refuses to build an skb of it (an IP header cut short by the frame's
/// end): the stack never sends those.
fn run_out(runner: &Runner, frame: &[u8]) -> Option<OutOutcome> {
    match runner.run_out(frame) {
        Ok(got) => Some(got),
        Err(e) if format!("{e:#}").contains("Invalid argument") => None,
        Err(e) => panic!("BPF_PROG_TEST_RUN on TC, {}: {e:#}", hex(frame)),
    }
}

/// Whether `frame` is plain UDP (Ethernet, IPv4 without options or IPv6
/// without extension headers) from a port of `rtp_ports`: for counting
/// calls mode's egress media only, not a decision.
fn from_rtp_port(frame: &[u8], rules: &Ruleset) -> bool {
    let sport_at = match frame.get(12..14) {
        Some([0x08, 0x00]) if frame.get(14) == Some(&0x45) && frame.get(23) == Some(&17) => 34,
        Some([0x86, 0xdd]) if frame.get(20) == Some(&17) => 54,
        _ => return false,
    };
    frame
        .get(sport_at..sport_at + 2)
        .map(|p| u16::from_be_bytes([p[0], p[1]]))
        .is_some_and(|p| (rules.rtp.0..=rules.rtp.1).contains(&p))
}

/// No disagreement at all between the program and the model.
fn assert_no_disagreement(disagreements: u64, seed: u64) {
    assert_eq!(
        disagreements, 0,
        "the egress program and the reference model disagree (see DISAGREEMENT lines; seed {seed:#x})"
    );
}

fn agrees(want: &ExpectedOut, got: &OutOutcome, len: usize) -> bool {
    match want.reason {
        None => got.verdict == Verdict::Pass && got.moved.is_empty(),
        Some(reason) => {
            got.verdict == want.verdict
                && got.reason() == Some(reason)
                && got.moved[0].1.bytes == len as u64
        }
    }
}

#[test]
fn egress_program_agrees_with_the_reference_model() {
    sipwall_tests::skip_unless_root!();
    let configs = configs();
    let per_config =
        env_u64("SIPWALL_FUZZ_PACKETS").unwrap_or(DEFAULT_TOTAL / configs.len() as u64);
    let seed = env_u64("SIPWALL_FUZZ_SEED").unwrap_or_else(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_nanos() as u64;
        frame_seed(nanos, u64::from(std::process::id()))
    });
    println!(
        "egress differential: {per_config} frames per configuration, fixed seed {FIXED_SEED:#x} and seed {seed:#x} \
         (replay with SIPWALL_FUZZ_SEED={seed:#x})"
    );
    let mut runner = Runner::new(&configs[0].1).expect("loading the program (needs root)");
    let mut kernel_calls = KernelCalls::new(&mut runner).expect("taking the media maps");
    let (mut packets, mut disagreements, mut refused) = (0u64, 0u64, 0u64);
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    let started = Instant::now();
    // Calls configurations whose media from `rtp_ports` fell short.
    let mut short: Vec<String> = Vec::new();
    for (ci, (name, rules, reader)) in configs.iter().enumerate() {
        runner.install(rules).expect("installing the ruleset");
        let plan = match reader {
            Some(_) => pinhole_plan(rules),
            None => Vec::new(),
        };
        let idle_ns = rules.media.call_idle_secs * 1_000_000_000;
        let mut install_calls = || {
            reader.map(|reader| {
                kernel_calls
                    .install(&plan, reader, idle_ns)
                    .expect("writing the pinholes and the heartbeat")
            })
        };
        let mut calls = install_calls();
        let mut calls_refreshed = Instant::now();
        let aimed: Vec<_> = plan.iter().map(|p| (p.port, p.remote)).collect();
        let generator = Generator::new(rules).outbound(rules).with_pinholes(&aimed);
        let mut reached = [0u64; OUT_REASON_COUNT as usize];
        // The same for the fixed seed's frames alone: the coverage the
        // generator must give, the same in every run (the other seed's
        // frames vary from run to run, and so would a count of them).
        let mut reached_fixed = [0u64; OUT_REASON_COUNT as usize];
        // Media from `rtp_ports` (calls mode's row 2u): passed, dropped.
        let mut media_out = [0u64; 2];
        for (base, count) in [(FIXED_SEED, per_config), (seed, per_config / 2)] {
            let stream = base.wrapping_add(ci as u64);
            for index in 0..count {
                if calls_refreshed.elapsed() >= CALLS_REFRESH {
                    calls = install_calls();
                    calls_refreshed = Instant::now();
                }
                let frame = generator.frame(frame_seed(stream, index));
                // The clock the program reads, just before it runs; live
                // and expired pinholes are seconds from their edges.
                let calls = calls.as_ref().map(|c| Calls {
                    now_ns: monotonic_ns(),
                    ..c.clone()
                });
                let want = match &calls {
                    Some(c) => reference_egress::judge_calls(&frame, false, rules, c),
                    None => reference_egress::judge(&frame, rules),
                };
                let Some(got) = run_out(&runner, &frame) else {
                    refused += 1;
                    continue;
                };
                packets += 1;
                if let Some(r) = want.reason {
                    reached[r as usize] += 1;
                    if base == FIXED_SEED {
                        reached_fixed[r as usize] += 1;
                    }
                    if calls.is_some() && from_rtp_port(&frame, rules) {
                        match r {
                            OutReason::RtpAllowed => media_out[0] += 1,
                            OutReason::Denied => media_out[1] += 1,
                            _ => {}
                        }
                    }
                }
                if agrees(&want, &got, frame.len()) {
                    continue;
                }
                disagreements += 1;
                let kind = format!(
                    "{} {:?} -> {} {:?}",
                    want.verdict.name(),
                    want.reason.map(OutReason::name),
                    got.verdict.name(),
                    got.moved.iter().map(|(r, _)| r.name()).collect::<Vec<_>>()
                );
                *kinds.entry(kind.clone()).or_default() += 1;
                if disagreements <= SHOWN {
                    println!(
                        "DISAGREEMENT in \"{name}\" ({}), seed {stream:#x} packet {index}\n  frame ({} bytes): {}\n  model -> kernel: {kind}",
                        rules.summary(),
                        frame.len(),
                        hex(&frame)
                    );
                }
            }
        }
        let summary: Vec<String> = OutReason::ALL
            .iter()
            .map(|r| format!("{}={}", r.name(), reached[*r as usize]))
            .collect();
        let fewest = OutReason::ALL
            .iter()
            .min_by_key(|r| reached_fixed[**r as usize])
            .map(|r| format!("{}={}", r.name(), reached_fixed[*r as usize]))
            .unwrap_or_default();
        println!(
            "  {name:<40} {} (fixed seed's fewest: {fewest})",
            summary.join(" ")
        );
        let pinholes_only = match reader {
            Some(Reader::Fresh) => true,
            Some(_) => rules.media.unattended == Unattended::Closed,
            None => false,
        };
        if pinholes_only && rules.egress.strict() {
            println!(
                "    media from rtp_ports: {} passed, {} dropped",
                media_out[0], media_out[1]
            );
            if per_config >= 2_000 && media_out.iter().any(|&n| n < MIN_CALLS) {
                short.push(format!(
                    "configuration \"{name}\": media from rtp_ports passed {} and dropped {} times",
                    media_out[0], media_out[1]
                ));
            }
        }
        if rules.egress.strict() && per_config >= 2_000 {
            for r in OutReason::ALL {
                // Moved ports and no ping still reach every reason; only
                // the counts differ.
                assert!(
                    reached_fixed[r as usize] >= MIN_PER_REASON,
                    "configuration \"{name}\" reached {} only {} times with the fixed seed: the generator no longer covers it",
                    r.name(),
                    reached_fixed[r as usize]
                );
            }
        }
    }
    println!(
        "egress differential summary: {packets} packets, {} configurations, {disagreements} disagreements, {refused} frames the kernel would not run, {:.1} s",
        configs.len(),
        started.elapsed().as_secs_f64()
    );
    for (kind, n) in &kinds {
        println!("  disagreements (model -> kernel) {kind}: {n}");
    }
    assert!(
        refused * 20 < packets,
        "the kernel refused {refused} frames of {packets}: the generator's frames no longer fit a TC test run"
    );
    assert_no_disagreement(disagreements, seed);
    assert!(
        short.is_empty(),
        "the generator no longer aims at the pinholes: {short:?}"
    );
}

/// The same comparison for an L3 device's outgoing packets (no link
/// header: the egress program reads them from the IP header).
#[test]
fn egress_program_agrees_with_the_reference_model_on_l3_devices() {
    sipwall_tests::skip_unless_root!();
    let per_config = env_u64("SIPWALL_FUZZ_PACKETS").unwrap_or(3_000);
    let seed = env_u64("SIPWALL_FUZZ_SEED").unwrap_or(FIXED_SEED);
    println!("egress differential (L3): {per_config} frames per configuration, seed {seed:#x}");
    let (mut packets, mut disagreements, mut refused) = (0u64, 0u64, 0u64);
    for (ci, (name, rules, reader)) in configs().iter().enumerate() {
        if !rules.egress.strict() {
            continue;
        }
        let runner = Runner::on_link(rules, filter_kernel::iface::LinkHeader::Ip)
            .expect("loading the program (needs root)");
        let generator = Generator::new(rules).outbound(rules);
        let stream = seed.wrapping_add(ci as u64);
        for index in 0..per_config {
            let frame = generator.l3_frame(frame_seed(stream, index));
            // A program of its own: no pinhole, no reader ever.
            let calls = reader.map(|_| Calls::none_at(monotonic_ns()));
            let want = match &calls {
                Some(c) => reference_egress::judge_calls(&frame, true, rules, c),
                None => reference_egress::judge_link(&frame, true, rules),
            };
            let Some(got) = run_out(&runner, &frame) else {
                refused += 1;
                continue;
            };
            packets += 1;
            if !agrees(&want, &got, frame.len()) {
                disagreements += 1;
                if disagreements <= SHOWN {
                    println!(
                        "DISAGREEMENT (L3) in \"{name}\": model {want:?}, kernel {:?}: {}",
                        got.moved,
                        hex(&frame)
                    );
                }
            }
        }
    }
    println!(
        "egress differential (L3) summary: {packets} packets, {disagreements} disagreements, {refused} refused"
    );
    assert!(
        refused * 20 < packets,
        "the kernel refused {refused} of {packets}"
    );
    assert_no_disagreement(disagreements, seed);
}
