//! Differential test of the TC egress program: random, structure-aware
//! outgoing frames go through the real program (BPF_PROG_TEST_RUN on TC)
//! and through the independent egress reference model
//! (`sipwall_tests::reference_egress`), under several configurations
//! installed one after the other on the same program. Verdict and reason
//! must agree on every frame, exactly one egress counter must move by one
//! packet and the frame's length (none with open egress), and no run may
//! end in another action than pass (TC_ACT_UNSPEC) or drop (TC_ACT_SHOT).
//!
//! 20,000 frames in all by default, half from a fixed seed, half from a
//! random one printed for replay; `SIPWALL_FUZZ_PACKETS` sets the frames
//! per configuration and `SIPWALL_FUZZ_SEED` the random seed (`cargo xtask
//! fuzz` runs this with the ingress differential test). Needs root.
use std::{
    collections::BTreeMap,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use filter_common::{OutReason, OUT_REASON_COUNT};
use filter_kernel::runner::{OutOutcome, Runner, Verdict};
use filter_policy::ruleset::{AllowRule, Egress, EgressMode, Mode, RuleProto, Ruleset};
use sipwall_tests::{
    generator::{frame_seed, Generator},
    reference_egress::{self, ExpectedOut},
};

const FIXED_SEED: u64 = 0x5195_a11e_e6e5_0001;
const DEFAULT_TOTAL: u64 = 20_000;
/// Each reason a configuration can reach must be reached this often, so
/// a generator that degrades fails the test.
const MIN_PER_REASON: u64 = 5;
const SHOWN: u64 = 20;

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

fn configs() -> Vec<(&'static str, Ruleset)> {
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
    [
        ("strict in, strict out", strict),
        ("guard in, strict out, long allowlist", guard_long),
        ("strict out, ports moved, no ping", moved),
        ("strict out, dry run", dry),
        ("open egress", open),
    ]
    .into_iter()
    .map(|(name, r)| (name, r.normalise().expect("a valid ruleset")))
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
    let (mut packets, mut disagreements, mut refused) = (0u64, 0u64, 0u64);
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    let started = Instant::now();
    for (ci, (name, rules)) in configs.iter().enumerate() {
        runner.install(rules).expect("installing the ruleset");
        let generator = Generator::new(rules).outbound(rules);
        let mut reached = [0u64; OUT_REASON_COUNT as usize];
        for (base, count) in [
            (FIXED_SEED, per_config / 2),
            (seed, per_config - per_config / 2),
        ] {
            let stream = base.wrapping_add(ci as u64);
            for index in 0..count {
                let frame = generator.frame(frame_seed(stream, index));
                let want = reference_egress::judge(&frame, rules);
                let Some(got) = run_out(&runner, &frame) else {
                    refused += 1;
                    continue;
                };
                packets += 1;
                if let Some(r) = want.reason {
                    reached[r as usize] += 1;
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
        println!("  {name:<40} {}", summary.join(" "));
        if rules.egress.strict() && per_config >= 2_000 {
            for r in OutReason::ALL {
                // Moved ports and no ping still reach every reason; only
                // the counts differ.
                assert!(
                    reached[r as usize] >= MIN_PER_REASON,
                    "configuration \"{name}\" reached {} only {} times: the generator no longer covers it",
                    r.name(),
                    reached[r as usize]
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
    assert_eq!(
        disagreements, 0,
        "the egress program and the reference model disagree (see DISAGREEMENT lines; seed {seed:#x})"
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
    for (ci, (name, rules)) in configs().iter().enumerate() {
        if !rules.egress.strict() {
            continue;
        }
        let runner = Runner::on_link(rules, filter_kernel::iface::LinkHeader::Ip)
            .expect("loading the program (needs root)");
        let generator = Generator::new(rules).outbound(rules);
        let stream = seed.wrapping_add(ci as u64);
        for index in 0..per_config {
            let frame = generator.l3_frame(frame_seed(stream, index));
            let want = reference_egress::judge_link(&frame, true, rules);
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
    assert_eq!(disagreements, 0, "seed {seed:#x}");
}
