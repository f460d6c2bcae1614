//! Differential test of the kernel program: random, structure-aware frames go
//! through the real XDP program (BPF_PROG_TEST_RUN) and through the
//! independent reference model of the policy (docs/policy.md), under several rulesets installed
//! one after the other on the same program (the live atomic swap). Verdict
//! and reason must agree on every frame, exactly one counter must move by one
//! packet and the frame's length, and no run may end in XDP_ABORTED.
//!
//! Runs 84,000 frames in all by default: half from a fixed seed, half from a
//! random one that is printed for replay. `SIPWALL_FUZZ_PACKETS` sets the
//! frames per configuration and `SIPWALL_FUZZ_SEED` the random seed
//! (`cargo xtask fuzz`). Needs root.
use std::{
    collections::BTreeMap,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use filter_common::{Reason, BAN_PERMANENT, REASON_COUNT};
use filter_kernel::{
    bans::Ban,
    flows::FlowTuple,
    maps::monotonic_ns,
    runner::{Outcome, Runner},
};
use filter_policy::ruleset::{
    AllowRule, MediaCalls, MediaMode, Mode, RateLimit, RuleProto, Ruleset, Unattended,
};
use sipwall_tests::{
    calls::{pinhole_plan, Calls, KernelCalls, Reader},
    generator::{frame_seed, Generator},
    reference::{self, Abuse, Expected, Flow, Flows},
};

const FIXED_SEED: u64 = 0x5195_a11e_d1ff_0001;
const DEFAULT_TOTAL: u64 = 84_000;
/// Each reason must be reached this often per configuration, so a generator
/// that degrades (say, every frame malformed) fails the test.
const MIN_PER_REASON: u64 = 10;
/// States the model keeps for the instants the kernel may have read its
/// clock at (see `Tally::check`).
const MAX_MODEL_STATES: usize = 4;
/// Disagreements printed in full; the rest are only counted.
const SHOWN: u64 = 20;
/// In calls mode with the reader up (or `unattended = "closed"`), media
/// through a pinhole (on to `rtp_allowed`, `rtp_invalid` or
/// `rtp_ratelimited`) and media outside every live one
/// (`rtp_unsolicited`) must each be reached this often per configuration.
const MIN_CALLS: u64 = 100;
/// How often calls mode's state is written again: live pinholes and a
/// fresh heartbeat stay at least a few seconds from going stale.
const CALLS_REFRESH: std::time::Duration = std::time::Duration::from_secs(2);

/// Frames worth keeping whatever the generator does: (why, frame as hex).
/// Each runs under every configuration and must agree with the model.
const REGRESSIONS: &[(&str, &str)] = &[
    (
        "IPv4 UDP to 5060 behind two VLAN tags, link padding past the total length",
        concat!(
            "ffffffffffff 020000000001 88a8 0001 8100 0002 0800",
            " 4500 0024 0000 0000 4011 0000 2ce5e4ba c0000201",
            " 13c4 13c4 0010 0000 0000000000000000",
            " 00000000000000000000",
        ),
    ),
    (
        "IPv6, hop-by-hop and 7 destination options (8 walked), then UDP to 5060",
        concat!(
            "ffffffffffff 020000000001 86dd",
            " 60000000 0048 00 40 20010db8000100000000000000000001",
            " 20010db8000000000000000000000002",
            " 3c00000000000000 3c00000000000000 3c00000000000000 3c00000000000000",
            " 3c00000000000000 3c00000000000000 3c00000000000000 1100000000000000",
            " 13c4 13c4 0008 0000",
        ),
    ),
    // Found by this test against filter-ebpf as of a4ef2b5 (since fixed in
    // 9cfd8c1): an IPv6 fragment header with a non-zero offset that does not
    // fit within the L4 end (payload length 0 here, or the frame ending 4
    // bytes into it) came back PASS/fragment. It is a truncated IP header:
    // Policy row 2 (malformed, DROP) matches before row 6 (fragment), and an
    // extension header that does not fit within the L4 end is malformed. The
    // kernel behaved as if it read the offset before checking that the whole
    // 8-byte header fits.
    (
        "IPv6 fragment header (offset 8 bytes) past a payload length of 0",
        concat!(
            "ffffffffffff 020000000001 86dd",
            " 60000000 0000 2c 40 20010db8000100000000000000000001",
            " 20010db8000000000000000000000002",
            " 11000008 01020304",
        ),
    ),
    (
        "IPv6 fragment header (offset 8 bytes) cut after 4 bytes by the end of the frame",
        concat!(
            "ffffffffffff 020000000001 86dd",
            " 60000000 0008 2c 40 20010db8000100000000000000000001",
            " 20010db8000000000000000000000002",
            " 11000008",
        ),
    ),
    (
        "PPPoE session inside QinQ: IPv4 UDP from a stranger to 5060",
        concat!(
            "ffffffffffff 020000000001 88a8 0064 8100 0007 8864",
            " 1100 1234 001e 0021",
            " 4500 001c 0000 0000 4011 0000 cb007109 c0000201",
            " 9c4b 13c4 0008 0000",
        ),
    ),
    (
        "PPPoE session whose PPP protocol says IPv4 over an IPv6 packet",
        concat!(
            "ffffffffffff 020000000001 8864",
            " 1100 1234 0032 0021",
            " 60000000 0008 11 40 20010db8000100000000000000000001",
            " 20010db8000000000000000000000002",
            " 13c4 13c4 0008 0000",
        ),
    ),
    (
        "PPPoE session carrying LCP (not IP), padded",
        concat!(
            "ffffffffffff 020000000001 8864",
            " 1100 1234 000a c021 0101 0008 0104 05d4",
            " 000000000000000000000000000000000000000000000000",
        ),
    ),
    (
        "PPPoE session cut inside its PPP protocol field",
        "ffffffffffff 020000000001 8864 1100 1234 0002 00",
    ),
    (
        "PPPoE discovery (PADI): not IP",
        concat!(
            "ffffffffffff 020000000001 8863",
            " 1109 0000 0004 0101 0000",
        ),
    ),
];

/// Frames of L3 devices (no link header) every run of the L3 comparison
/// checks first.
const L3_REGRESSIONS: &[(&str, &str)] = &[
    (
        "IPv4 UDP to 5060 whose source address holds 0x0800 where Ethernet's ethertype would be",
        "4500 001c 0000 0000 4011 0000 0800 4500 c0000201 9c4b 13c4 0008 0000",
    ),
    (
        "IPv6 UDP to 5060 from a stranger",
        concat!(
            "60000000 0008 11 40 20010db80bad00000000000000000009",
            " 20010db8000000000000000000000002",
            " 9c4b 13c4 0008 0000",
        ),
    ),
    (
        "version nibble 5 over an IPv4 header",
        "5500 001c 0000 0000 4011 0000 cb007109 c0000201 9c4b 13c4 0008 0000",
    ),
    (
        "an Ethernet frame where the IP packet should be",
        "ffffffffffff 020000000001 0800 4500 001c 0000 0000 4011 0000 cb007109 c0000201 9c4b 13c4 0008 0000",
    ),
];

/// Single sources the rate-limited configurations send from again and
/// again.
const HOT_SOURCES: [&str; 3] = ["192.0.2.200/32", "203.0.113.5/32", "2001:db8:99::1/128"];

struct Config {
    name: &'static str,
    rules: Ruleset,
    /// The ban set, as (prefix, nanoseconds from the configuration's start
    /// to its end): negative for already over, `None` for permanent.
    bans: Vec<(&'static str, Option<i64>)>,
    /// The host's flows: the model's own table, entered in the kernel's
    /// flow map too (strict configurations only).
    flows: Flows,
    /// Calls mode: the reader's heartbeat (the pinholes follow from the
    /// ruleset, `pinhole_plan`).
    reader: Option<Reader>,
}

/// The host's flows in strict configurations, both families and every
/// protocol the egress program learns.
fn host_flows() -> Vec<Flow> {
    let flow = |proto, remote: &str, remote_port, local: &str, local_port| Flow {
        proto,
        remote: remote.parse().unwrap(),
        remote_port,
        local: local.parse().unwrap(),
        local_port,
    };
    vec![
        flow(6, "203.0.113.50", 443, "192.0.2.10", 40001),
        flow(6, "198.51.100.9", 22, "192.0.2.10", 50022),
        flow(17, "203.0.113.53", 53, "192.0.2.10", 33333),
        flow(17, "44.229.228.186", 45000, "192.0.2.10", 30000),
        flow(132, "203.0.113.50", 2905, "192.0.2.10", 2905),
        flow(1, "203.0.113.60", 0, "192.0.2.10", 7),
        flow(6, "2001:db8:bad::9", 443, "2001:db8::10", 40002),
        flow(17, "2001:db8:bad::53", 53, "2001:db8::10", 33334),
        flow(58, "2001:db8:bad::60", 0, "2001:db8::10", 9),
    ]
}

impl Config {
    /// The model's flows as the kernel's flow map takes them.
    fn flow_tuples(&self) -> Vec<FlowTuple> {
        self.flows
            .0
            .iter()
            .map(|f| FlowTuple {
                proto: f.proto,
                remote: f.remote,
                remote_port: f.remote_port,
                local: f.local,
                local_port: f.local_port,
            })
            .collect()
    }

    /// Whether the rate limiter keeps state across frames: such a
    /// configuration gets a program of its own, so the kernel's buckets
    /// start as empty as the model's.
    fn stateful(&self) -> bool {
        self.rules.sip_limit.is_some() || self.rules.rtp_limit.is_some()
    }

    /// Calls mode where only pinholes pass media: the reader is up, or
    /// `unattended = "closed"`.
    fn pinholes_only(&self) -> bool {
        match self.reader {
            None => false,
            Some(Reader::Fresh) => true,
            Some(_) => self.rules.media.unattended == Unattended::Closed,
        }
    }

    /// The reasons this configuration can give.
    fn reachable(&self, reason: Reason) -> bool {
        match reason {
            Reason::Banned => !self.bans.is_empty(),
            Reason::SipRatelimited => self.rules.sip_limit.is_some(),
            Reason::RtpRatelimited => self.rules.rtp_limit.is_some(),
            Reason::RtpInvalid => self.rules.check_rtp,
            Reason::RtpUnsolicited => self.pinholes_only(),
            // Guard's last row; strict mode's own rows instead.
            Reason::Other => !self.rules.strict(),
            Reason::Essential
            | Reason::Reply
            | Reason::RuleAllowed
            | Reason::RtpOutside
            | Reason::Denied => self.rules.strict(),
            _ => true,
        }
    }

    /// The ban set with absolute expiries, for the kernel and the model.
    fn bans_from(&self, start_ns: u64) -> Vec<Ban> {
        self.bans
            .iter()
            .map(|(net, ends)| Ban {
                net: net.parse().expect("ban CIDR"),
                expires_ns: match ends {
                    None => BAN_PERMANENT,
                    Some(d) => start_ns.saturating_add_signed(*d),
                },
            })
            .collect()
    }
}

/// The abuse configurations' bans: nested prefixes of both families, an
/// allowlisted address, entries already over, one that ends while the
/// configuration runs (the kernel's clock and the test's agree on when),
/// and single IPv6 addresses (their buckets), one with a zero word.
const BANS: &[(&str, Option<i64>)] = &[
    ("203.0.113.128/26", None),
    ("44.238.177.138/32", Some(3_600_000_000_000)),
    ("198.51.100.0/24", Some(400_000_000)),
    ("198.51.100.7/32", Some(-1)),
    ("198.51.100.130/32", Some(3_600_000_000_000)),
    ("192.0.2.64/26", Some(-1_000_000_000)),
    ("2001:db8:1::/48", None),
    ("2001:db8:2:3::1/128", Some(-1)),
    ("2001:db8:1:2::/64", Some(3_600_000_000_000)),
    ("2001:db8:2:3::2/128", Some(3_600_000_000_000)),
    ("2001:db8:5::/128", None),
];

fn nets(cidrs: &[&str]) -> Vec<ipnet::IpNet> {
    cidrs.iter().map(|c| c.parse().expect(c)).collect()
}

fn configs() -> Vec<Config> {
    let custom = Ruleset {
        // Nested prefixes and both families, so longest-prefix match is
        // exercised at several lengths.
        allow: nets(&[
            "44.229.228.186/32",
            "198.51.100.0/24",
            "203.0.113.128/25",
            "203.0.113.130/32",
            "10.0.0.0/8",
            "192.0.2.64/26",
            "2001:db8:1::/48",
            "2001:db8:1:2::/64",
            "2001:db8:2:3::1/128",
            "2001:db8:ff00::/40",
        ]),
        // Bit-map edges (1, 65535) beside real-world alternatives.
        sig_ports: vec![1, 5060, 5080, 6060, 65535],
        rtp: (10000, 20000),
        dry_run: false,
        log_denied: false,
        ..Ruleset::default()
    };
    let moved = Ruleset {
        allow: nets(&[
            "44.238.177.138/32",
            "198.51.100.128/25",
            "2001:db8:2:3::1/128",
        ]),
        // The RTP range overlaps the signalling ports: signalling wins.
        sig_ports: vec![5061, 5080],
        rtp: (5000, 5100),
        ..custom.clone()
    };
    // More prefixes per family than the policy holds inline: the direct
    // tables (and for IPv6 the trie behind them) decide. Nested at several lengths, both families.
    let mut long_allow = custom.allow.clone();
    for n in 0..24u8 {
        long_allow.push(
            format!("198.18.{n}.0/{}", 24 + n % 9)
                .parse()
                .expect("filler v4"),
        );
        long_allow.push(
            format!("2001:db8:7:{n:x}00::/{}", 56 + n % 9)
                .parse()
                .expect("filler v6"),
        );
    }
    // Prefixes of /24 and shorter fill whole entries of the direct tables.
    long_allow.extend(nets(&[
        "100.64.0.0/10",
        "192.0.2.0/24",
        "2c0f:f000::/20",
        "3f00::/8",
    ]));
    let long = Ruleset {
        allow: long_allow,
        ..custom.clone()
    };
    let dry_run = Ruleset {
        allow: nets(&["44.229.228.186/32", "44.238.177.138/32", "2001:db8::/32"]),
        dry_run: true,
        ..Ruleset::default()
    };
    // Rates that divide a second exactly (the kernel keeps whole
    // nanoseconds between packets); bursts small enough to be reached.
    let mut hot_allow = custom.allow.clone();
    hot_allow.extend(nets(&["192.0.2.200/32", "2001:db8:99::1/128"]));
    let abuse = Ruleset {
        allow: hot_allow,
        sip_limit: Some(RateLimit {
            per_sec: 2,
            burst: 3,
        }),
        // A wide media range and a burst of one: enough media frames from
        // the hot sources reach the media limit.
        rtp: (10000, 40000),
        rtp_limit: Some(RateLimit {
            per_sec: 1,
            burst: 1,
        }),
        check_rtp: true,
        ..custom.clone()
    };
    let abuse_dry = Ruleset {
        dry_run: true,
        ..abuse.clone()
    };
    let check_only = Ruleset {
        check_rtp: true,
        ..long.clone()
    };
    let strict = Ruleset {
        mode: Mode::Strict,
        rtp: (10000, 20000),
        rules: vec![
            AllowRule {
                proto: RuleProto::Tcp,
                ports: vec![(22, 22), (8000, 8080)],
                from: nets(&["198.51.100.0/24", "2001:db8:1::/48"]),
            },
            // Every IPv6 source, and no IPv4 one.
            AllowRule {
                proto: RuleProto::Tcp,
                ports: vec![(2222, 2222)],
                from: nets(&["::/0"]),
            },
            AllowRule {
                proto: RuleProto::Udp,
                ports: vec![(7000, 7010)],
                from: vec![],
            },
            AllowRule {
                proto: RuleProto::Sctp,
                ports: vec![(2905, 2905)],
                from: nets(&["203.0.113.128/25"]),
            },
            AllowRule {
                proto: RuleProto::Icmp,
                ports: vec![],
                from: nets(&["192.0.2.64/26"]),
            },
            AllowRule {
                proto: RuleProto::Any,
                ports: vec![],
                from: nets(&["203.0.113.130/32", "2001:db8:2:3::1/128"]),
            },
        ],
        ..custom.clone()
    };
    let strict_no_ping = Ruleset {
        ping: false,
        provider_rtp: (30000, 30100),
        allow: long.allow.clone(),
        ..strict.clone()
    };
    let strict_dry = Ruleset {
        dry_run: true,
        ..strict.clone()
    };
    // Strict mode with every abuse control: bans before the strict rows,
    // rate limits and the RTP check on its signalling and media.
    let strict_abuse = Ruleset {
        mode: Mode::Strict,
        rules: strict.rules.clone(),
        ..abuse.clone()
    };
    let calls = |unattended, call_idle_secs| MediaCalls {
        mode: MediaMode::Calls,
        call_idle_secs,
        unattended,
    };
    let guard_calls = Ruleset {
        media: calls(Unattended::Range, 60),
        ..custom.clone()
    };
    let guard_calls_closed = Ruleset {
        media: calls(Unattended::Closed, 30),
        check_rtp: true,
        ..custom.clone()
    };
    let guard_calls_dry = Ruleset {
        dry_run: true,
        ..guard_calls.clone()
    };
    let strict_calls = Ruleset {
        media: calls(Unattended::Range, 60),
        ..strict.clone()
    };
    let strict_calls_closed = Ruleset {
        media: calls(Unattended::Closed, 3600),
        ..strict.clone()
    };
    let abuse_calls = Ruleset {
        media: calls(Unattended::Closed, 60),
        ..abuse.clone()
    };
    let no_bans: &[(&str, Option<i64>)] = &[];
    let calls_configs = [
        ("guard, calls", guard_calls.clone(), no_bans, Reader::Fresh),
        (
            "guard, calls, reader down (unattended range)",
            guard_calls,
            no_bans,
            Reader::Stale,
        ),
        (
            "guard, calls, no reader ever, unattended closed, RTP check",
            guard_calls_closed,
            no_bans,
            Reader::Never,
        ),
        (
            "guard, calls, dry run",
            guard_calls_dry,
            no_bans,
            Reader::Fresh,
        ),
        (
            "strict, calls",
            strict_calls.clone(),
            no_bans,
            Reader::Fresh,
        ),
        (
            "strict, calls, reader down, unattended closed",
            strict_calls_closed,
            no_bans,
            Reader::Stale,
        ),
        (
            "strict, calls, no reader ever (unattended range)",
            strict_calls,
            no_bans,
            Reader::Never,
        ),
        (
            "calls, unattended closed, bans, rate limits, RTP check",
            abuse_calls,
            BANS,
            Reader::Fresh,
        ),
    ]
    .map(|(name, rules, bans, reader)| (name, rules, bans, Some(reader)));
    [
        ("defaults", Ruleset::default(), no_bans),
        ("custom", custom, no_bans),
        ("custom, RTP range moved", moved, no_bans),
        ("custom, allowlists too long to be inline", long, no_bans),
        ("dry run", dry_run, no_bans),
        ("abuse: bans, rate limits, RTP check", abuse, BANS),
        ("abuse, dry run", abuse_dry, BANS),
        ("bans and RTP check, long allowlists", check_only, BANS),
        ("strict", strict, no_bans),
        ("strict, no ping, long allowlist", strict_no_ping, no_bans),
        ("strict, dry run", strict_dry, no_bans),
        (
            "strict with bans, rate limits, RTP check",
            strict_abuse,
            BANS,
        ),
    ]
    .map(|(name, rules, bans)| (name, rules, bans, None))
    .into_iter()
    .chain(calls_configs)
    .map(|(name, rules, bans, reader)| Config {
        name,
        reader,
        flows: if rules.strict() {
            Flows(host_flows().into_iter().collect())
        } else {
            Flows::default()
        },
        rules: rules.normalise().expect("a valid ruleset"),
        bans: bans.to_vec(),
    })
    .collect()
}

/// CLOCK_MONOTONIC_COARSE, the clock of `bpf_ktime_get_coarse_ns`.
/// The coarse clock's step: one kernel tick.
fn coarse_tick_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer.
    unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn monotonic_coarse_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    let parsed = match value.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => value.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={value} is not a number")))
}

fn random_seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as u64;
    frame_seed(nanos, u64::from(std::process::id()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(
        digits.len().is_multiple_of(2),
        "odd number of hex digits in {text}"
    );
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).expect("hex"))
        .collect()
}

/// Where a frame came from, for the report.
enum Origin<'a> {
    Seed(u64, u64),
    Regression(&'a str),
}

#[derive(Default)]
struct Tally {
    packets: u64,
    disagreements: u64,
    /// Frames per configuration and reason (the model's reason).
    reasons: Vec<[u64; REASON_COUNT as usize]>,
    /// The same for the fixed seed's frames alone: the coverage the
    /// generator must give, the same in every run (the other seed's
    /// frames vary from run to run, and so would a count of them).
    fixed_reasons: Vec<[u64; REASON_COUNT as usize]>,
    /// Disagreements by kind: "model answer -> kernel answer".
    kinds: BTreeMap<String, u64>,
    /// Frames whose answer changed while the kernel ran them (a refill or
    /// an expiry between the clock readings around the run).
    straddled: u64,
}

impl Tally {
    /// Runs `frame` through the kernel between readings of the clock and
    /// through the model at each reading, from each state the model may be
    /// in: the kernel read its coarse clock at an instant in between that
    /// the test cannot see, so every resulting state that agrees with the
    /// kernel is kept (they converge once a bucket refills or a ban ends).
    fn check(
        &mut self,
        runner: &Runner,
        (ci, config): (usize, &Config),
        model: &mut Vec<Abuse>,
        calls: Option<&Calls>,
        origin: Origin,
        frame: &[u8],
    ) {
        let before_ns = monotonic_coarse_ns();
        let got = runner
            .run(frame)
            .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN on {}: {e:#}", hex(frame)));
        // The coarse clock after the run, and the precise one (which the
        // coarse one lags by up to a tick) as the latest bound. The
        // program's per-CPU copy of the coarse clock may also be a tick
        // behind for a tick (filter-ebpf/src/clock.rs).
        let after = [monotonic_coarse_ns(), monotonic_ns()];
        let stale = before_ns.saturating_sub(coarse_tick_ns());
        let mut judged: Vec<(Expected, Abuse)> = Vec::new();
        for state in model.iter() {
            for now_ns in [before_ns, after[0], after[1], stale] {
                let mut next = state.clone();
                let want = match calls {
                    Some(calls) => {
                        let calls = Calls {
                            now_ns,
                            ..calls.clone()
                        };
                        let (rules, flows) = (&config.rules, &config.flows);
                        reference::judge_calls(frame, false, rules, &mut next, flows, &calls)
                    }
                    None => reference::judge_full(
                        frame,
                        &config.rules,
                        &mut next,
                        now_ns,
                        &config.flows,
                    ),
                };
                judged.push((want, next));
            }
        }
        let first = judged[0].0;
        if judged.iter().any(|(want, _)| *want != first) {
            self.straddled += 1;
        }
        let mut kept: Vec<Abuse> = Vec::new();
        let mut agreed = None;
        for (want, state) in judged.iter() {
            if agrees(want, &got, frame.len()) {
                agreed.get_or_insert(*want);
                if !kept.contains(state) {
                    kept.push(state.clone());
                }
            }
        }
        kept.truncate(MAX_MODEL_STATES);
        let want = match agreed {
            Some(want) => {
                *model = kept;
                want
            }
            None => {
                *model = vec![judged.swap_remove(0).1];
                first
            }
        };
        self.packets += 1;
        self.reasons[ci][want.reason as usize] += 1;
        if matches!(origin, Origin::Seed(stream, _) if stream == FIXED_SEED.wrapping_add(ci as u64))
        {
            self.fixed_reasons[ci][want.reason as usize] += 1;
        }
        if agrees(&want, &got, frame.len()) {
            return;
        }
        self.disagreements += 1;
        let reasons: Vec<&str> = got.moved.iter().map(|(r, _)| r.name()).collect();
        let kind = format!(
            "{} {} -> {} {}",
            want.verdict.name(),
            want.reason.name(),
            got.verdict.name(),
            reasons.join("+"),
        );
        *self.kinds.entry(kind).or_default() += 1;
        if self.disagreements > SHOWN {
            return;
        }
        let from = match origin {
            Origin::Seed(seed, index) => format!("seed {seed:#x} packet {index}"),
            Origin::Regression(why) => format!("regression case \"{why}\""),
        };
        println!(
            "DISAGREEMENT in configuration \"{}\" ({}), {from}\n  frame ({} bytes): {}\n  model:  {} {}\n  kernel: {} {}",
            config.name,
            config.rules.summary(),
            frame.len(),
            hex(frame),
            want.verdict.name(),
            want.reason.name(),
            got.verdict.name(),
            moved(&got),
        );
    }
}

/// Same verdict, and exactly one counter moved: the model's reason, by one
/// packet of the frame's length.
fn agrees(want: &Expected, got: &Outcome, len: usize) -> bool {
    got.verdict == want.verdict
        && got.reason() == Some(want.reason)
        && got.moved[0].1.bytes == len as u64
}

fn moved(got: &Outcome) -> String {
    if got.moved.is_empty() {
        return "(no counter moved)".into();
    }
    let parts: Vec<String> = got
        .moved
        .iter()
        .map(|(r, c)| format!("{}+{}/{}B", r.name(), c.packets, c.bytes))
        .collect();
    parts.join(", ")
}

/// How often the kernel's flows are refreshed: well within the shortest
/// idle time (ICMP echo, 30 s).
const FLOW_REFRESH: std::time::Duration = std::time::Duration::from_secs(5);

#[test]
fn kernel_program_agrees_with_the_reference_model() {
    sipwall_tests::skip_unless_root!();
    let configs = configs();
    let per_config =
        env_u64("SIPWALL_FUZZ_PACKETS").unwrap_or(DEFAULT_TOTAL / configs.len() as u64);
    let seed = env_u64("SIPWALL_FUZZ_SEED").unwrap_or_else(random_seed);
    println!(
        "differential: {per_config} frames per configuration, fixed seed {FIXED_SEED:#x} and seed {seed:#x} \
         (replay with SIPWALL_FUZZ_SEED={seed:#x})"
    );

    let mut shared = Runner::new(&configs[0].rules).expect("loading the program (needs root)");
    let mut shared_calls = KernelCalls::new(&mut shared).expect("taking the media maps");
    let mut tally = Tally {
        reasons: vec![[0; REASON_COUNT as usize]; configs.len()],
        fixed_reasons: vec![[0; REASON_COUNT as usize]; configs.len()],
        ..Tally::default()
    };
    let started = Instant::now();
    for (ci, config) in configs.iter().enumerate() {
        let (mut own, mut own_calls);
        let (runner, kernel_calls) = if config.stateful() {
            own = Runner::new(&config.rules).expect("loading the program");
            own_calls = KernelCalls::new(&mut own).expect("taking the media maps");
            (&mut own, &mut own_calls)
        } else {
            shared
                .install(&config.rules)
                .expect("installing the ruleset");
            (&mut shared, &mut shared_calls)
        };
        // Calls mode's pinholes and heartbeat, written again every
        // CALLS_REFRESH (the model's copy with them).
        let plan = match config.reader {
            Some(_) => pinhole_plan(&config.rules),
            None => Vec::new(),
        };
        let idle_ns = config.rules.media.call_idle_secs * 1_000_000_000;
        let mut install_calls = || {
            config.reader.map(|reader| {
                kernel_calls
                    .install(&plan, reader, idle_ns)
                    .expect("writing the pinholes and the heartbeat")
            })
        };
        let mut calls = install_calls();
        let bans = config.bans_from(monotonic_ns());
        runner.maps.set_bans(&bans).expect("writing the ban set");
        let mut abuse = vec![Abuse::with_bans(
            bans.iter().map(|b| (b.net, b.expires_ns)).collect(),
        )];
        runner.maps.clear_flows().expect("clearing the flows");
        let tuples = config.flow_tuples();
        runner.maps.add_flows(&tuples).expect("entering the flows");
        let at = (ci, config);
        for (why, text) in REGRESSIONS {
            let frame = unhex(text);
            let origin = Origin::Regression(why);
            tally.check(runner, at, &mut abuse, calls.as_ref(), origin, &frame);
        }
        let mut probed: Vec<ipnet::IpNet> = bans.iter().map(|b| b.net).collect();
        // IPv6 packets from the IPv4-mapped form of the rules' IPv4
        // sources: an IPv4 rule must not take them.
        for rule in &config.rules.rules {
            for net in &rule.from {
                if let ipnet::IpNet::V4(v4) = net {
                    let mapped = v4.network().to_ipv6_mapped();
                    probed.push(
                        ipnet::Ipv6Net::new(mapped, 96 + v4.prefix_len())
                            .unwrap()
                            .into(),
                    );
                }
            }
        }
        if config.stateful() {
            // Sources that come back often enough to run out of tokens.
            for _ in 0..24 {
                probed.extend(
                    HOT_SOURCES
                        .iter()
                        .map(|s| s.parse::<ipnet::IpNet>().unwrap()),
                );
            }
        }
        let flows: Vec<Flow> = config.flows.0.iter().copied().collect();
        let aimed: Vec<_> = plan.iter().map(|p| (p.port, p.remote)).collect();
        let generator = Generator::new(&config.rules)
            .probing(&probed)
            .with_flows(&flows)
            .with_pinholes(&aimed);
        // Each configuration draws its own stream from each seed.
        let halves = [(FIXED_SEED, per_config), (seed, per_config / 2)];
        let mut refreshed = Instant::now();
        let mut calls_refreshed = Instant::now();
        for (base, count) in halves {
            let stream = base.wrapping_add(ci as u64);
            for index in 0..count {
                // The host keeps its flows alive by sending on them (the
                // egress program refreshes them); the model's flows never
                // expire, so the kernel's are refreshed by the clock (a
                // count of frames ran past ICMP echo's 30 s on a loaded
                // machine).
                if refreshed.elapsed() >= FLOW_REFRESH {
                    runner
                        .maps
                        .add_flows(&tuples)
                        .expect("refreshing the flows");
                    refreshed = Instant::now();
                }
                if calls_refreshed.elapsed() >= CALLS_REFRESH {
                    calls = install_calls();
                    calls_refreshed = Instant::now();
                }
                let frame = generator.frame(frame_seed(stream, index));
                let origin = Origin::Seed(stream, index);
                tally.check(runner, at, &mut abuse, calls.as_ref(), origin, &frame);
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();

    let mut totals = [0u64; REASON_COUNT as usize];
    for (config, counts) in configs.iter().zip(&tally.reasons) {
        for (total, n) in totals.iter_mut().zip(counts) {
            *total += n;
        }
        println!("  {:<24} {}", config.name, per_reason(counts));
    }
    println!(
        "differential summary: {} packets, {} configurations, {} disagreements, {} straddled a refill or an expiry, {seconds:.1} s; {}",
        tally.packets,
        configs.len(),
        tally.disagreements,
        tally.straddled,
        per_reason(&totals)
    );
    for (kind, n) in &tally.kinds {
        println!("  disagreements (model -> kernel) {kind}: {n}");
    }

    assert_eq!(
        tally.disagreements, 0,
        "the kernel program and the reference model disagree (see DISAGREEMENT lines; seed {seed:#x})"
    );
    if per_config >= 2_000 {
        for (ci, (config, counts)) in configs.iter().zip(&tally.reasons).enumerate() {
            if config.pinholes_only() {
                // Here every frame on to the RTP check and the media limit
                // went through a pinhole.
                let through = [
                    Reason::RtpAllowed,
                    Reason::RtpInvalid,
                    Reason::RtpRatelimited,
                ]
                .map(|r| counts[r as usize])
                .iter()
                .sum::<u64>();
                let unsolicited = counts[Reason::RtpUnsolicited as usize];
                assert!(
                    through >= MIN_CALLS && unsolicited >= MIN_CALLS,
                    "configuration \"{}\": {through} frames through a pinhole, {unsolicited} rtp_unsolicited: the generator no longer aims at the pinholes",
                    config.name,
                );
            }
            let fixed = &tally.fixed_reasons[ci];
            for reason in Reason::ALL.into_iter().filter(|r| config.reachable(*r)) {
                assert!(
                    fixed[reason as usize] >= MIN_PER_REASON,
                    "configuration \"{}\" reached {} only {} times with the fixed seed: the generator no longer covers it",
                    config.name,
                    reason.name(),
                    fixed[reason as usize]
                );
            }
        }
    }
}

fn per_reason(counts: &[u64; REASON_COUNT as usize]) -> String {
    let parts: Vec<String> = Reason::ALL
        .iter()
        .map(|r| format!("{}={}", r.name(), counts[*r as usize]))
        .collect();
    parts.join(" ")
}

/// The same comparison for an L3 device's frames (no link header: the
/// program reads them from the IP header), for the configurations without
/// bans or rate limits.
#[test]
fn kernel_program_agrees_with_the_reference_model_on_l3_devices() {
    sipwall_tests::skip_unless_root!();
    let per_config = env_u64("SIPWALL_FUZZ_PACKETS").unwrap_or(3_000);
    let seed = env_u64("SIPWALL_FUZZ_SEED").unwrap_or_else(random_seed);
    println!("differential (L3): {per_config} frames per configuration, seed {seed:#x}");
    let mut disagreements = 0u64;
    let mut packets = 0u64;
    for (ci, config) in configs().iter().enumerate().filter(|(_, c)| !c.stateful()) {
        let mut runner = Runner::on_link(&config.rules, filter_kernel::iface::LinkHeader::Ip)
            .expect("loading the program (needs root)");
        runner.maps.clear_flows().expect("clearing the flows");
        let tuples = config.flow_tuples();
        runner.maps.add_flows(&tuples).expect("entering the flows");
        let flows: Vec<Flow> = config.flows.0.iter().copied().collect();
        let generator = Generator::new(&config.rules).with_flows(&flows);
        let stream = seed.wrapping_add(ci as u64);
        let regressions = L3_REGRESSIONS.iter().map(|(_, text)| unhex(text));
        let generated = (0..per_config).map(|index| generator.l3_frame(frame_seed(stream, index)));
        for frame in regressions.chain(generated) {
            let want = reference::judge_link(
                &frame,
                true,
                &config.rules,
                &mut Abuse::default(),
                0,
                &config.flows,
            );
            let got = runner
                .run(&frame)
                .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN on {}: {e:#}", hex(&frame)));
            packets += 1;
            if !agrees(&want, &got, frame.len()) {
                disagreements += 1;
                println!(
                    "DISAGREEMENT (L3) [{}] model {want:?}, kernel {}: {}",
                    config.name,
                    moved(&got),
                    hex(&frame)
                );
            }
        }
    }
    println!("differential (L3) summary: {packets} packets, {disagreements} disagreements");
    assert_eq!(disagreements, 0, "seed {seed:#x}");
}
