//! Tier 4: what the abuse controls cost per packet (BPF_PROG_TEST_RUN),
//! each against the same packet through the same program with the control
//! idle: rate limits and the RTP check off versus on (a limit too high to
//! drop anything), and the ban set empty versus 1 and 100,000 entries, for
//! a source outside every banned /24 (the gate answers), a neighbour of a
//! ban in its /24 (the trie answers, the packet passes) and a banned source
//! (dropped); and for IPv6, a source that is not banned and a banned one. Samples of all configurations are interleaved; medians are
//! reported. Every frame is run once first and must get the reason its row
//! is named after.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{ensure, Result};
use filter_common::{Reason, BAN_PERMANENT};
use filter_kernel::{bans::Ban, runner::Runner};
use filter_policy::ruleset::{RateLimit, Ruleset};
use ipnet::IpNet;
use serde_json::{json, Value};
use sipwall_lab::{OUTSIDER, OUTSIDER6, PBX, PBX6, PROVIDER};
use sipwall_tests::{generator::Rng, packet::Frame};

use crate::{
    progress,
    report::{differences, median, verdict, Report},
    testbed::check_stop,
    Scale,
};

/// Cost allowed over the same packet with the control idle.
pub const TARGET_NS: f64 = 10.0;
/// Ban-set sizes the lookups are timed at (besides the empty set).
pub const BAN_SIZES: [usize; 2] = [1, 100_000];

/// The banned source, and a neighbour in its /24 that is not banned.
const BANNED: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 66);
const NEIGHBOUR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 67);
/// The banned IPv6 source.
const BANNED6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x66, 0, 0, 0, 0, 0x66);

/// One configuration of the program: a ruleset and a ban set.
struct Setup {
    name: String,
    runner: Runner,
}

/// One timed row: a frame under a configuration, and the one it is
/// compared with.
struct Row {
    name: String,
    setup: usize,
    baseline_setup: usize,
    frame: Vec<u8>,
    reason: Reason,
    samples: Vec<f64>,
    baseline: Vec<f64>,
}

pub struct Tier4 {
    rows: Vec<Row>,
    /// (bans, seconds) to write each ban set through `Maps::set_bans`
    /// (the code path of `sipwall ban add --file`).
    writes: Vec<(usize, f64)>,
}

/// `n` /32 bans spread over the IPv4 space outside the ranges the rows
/// send from, the banned source among them, and as many /128 bans in
/// 2001:db8:8000::/33 (away from the lab's IPv6 hosts), the banned IPv6
/// source among them.
fn ban_set(n: usize) -> Vec<Ban> {
    let mut rng = Rng::new(0xba5e_ba11);
    let avoid: [IpNet; 3] =
        ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"].map(|s| s.parse().unwrap());
    let mut nets = std::collections::BTreeSet::new();
    nets.insert(IpNet::new(IpAddr::V4(BANNED), 32).unwrap());
    while nets.len() < n {
        let addr = IpAddr::V4(Ipv4Addr::from(rng.next_u64() as u32));
        if avoid.iter().any(|a| a.contains(&addr)) {
            continue;
        }
        nets.insert(IpNet::new(addr, 32).unwrap());
    }
    nets.insert(IpNet::new(IpAddr::V6(BANNED6), 128).unwrap());
    while nets.len() < 2 * n {
        let low = u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64());
        let addr = u128::from(Ipv6Addr::new(0x2001, 0xdb8, 0x8000, 0, 0, 0, 0, 0)) | low >> 33;
        nets.insert(IpNet::new(IpAddr::V6(Ipv6Addr::from(addr)), 128).unwrap());
    }
    nets.into_iter()
        .map(|net| Ban {
            net,
            expires_ns: BAN_PERMANENT,
        })
        .collect()
}

pub fn run(scale: Scale) -> Result<Tier4> {
    let never = RateLimit {
        per_sec: RateLimit::MAX_RATE,
        burst: RateLimit::MAX_BURST,
    };
    let limited = Ruleset {
        sip_limit: Some(never),
        rtp_limit: Some(never),
        ..Ruleset::default()
    };
    let checked = Ruleset {
        check_rtp: true,
        ..Ruleset::default()
    };
    let mut setups = vec![
        (
            "idle (no ban, no limit, no check)".to_string(),
            Ruleset::default(),
            0,
        ),
        ("rate limits on".to_string(), limited, 0),
        ("RTP check on".to_string(), checked, 0),
    ];
    for n in BAN_SIZES {
        setups.push((format!("{n} bans"), Ruleset::default(), n));
    }
    let mut writes = Vec::new();
    let setups: Vec<Setup> = setups
        .into_iter()
        .map(|(name, rules, bans)| {
            progress(format!("tier 4: loading \"{name}\""));
            let mut runner = Runner::new(&rules)?;
            if bans > 0 {
                let set = ban_set(bans);
                let started = std::time::Instant::now();
                runner.maps.set_bans(&set)?;
                writes.push((bans, started.elapsed().as_secs_f64()));
            }
            Ok(Setup { name, runner })
        })
        .collect::<Result<_>>()?;
    let (idle, limits, check, one, many) = (0, 1, 2, 3, 4);

    let mut payload = vec![0x80, 0x08, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4];
    payload.extend([0xd5; 160]);
    let rtp = |src: Ipv4Addr| {
        Frame::ipv4(src, PBX)
            .udp(40002, 40000)
            .payload(&payload)
            .build()
    };
    let rtp6 = |src: Ipv6Addr| {
        Frame::ipv6(src, PBX6)
            .udp(40002, 40000)
            .payload(&payload)
            .build()
    };
    let sip = Frame::ipv4(PROVIDER[0], PBX)
        .udp(5060, 5060)
        .payload(b"OPTIONS sip:pbx SIP/2.0\r\n")
        .build();
    let row = |name: &str, setup, baseline_setup, frame: &Vec<u8>, reason| Row {
        name: name.to_string(),
        setup,
        baseline_setup,
        frame: frame.clone(),
        reason,
        samples: Vec::new(),
        baseline: Vec::new(),
    };
    let mut rows = vec![
        row(
            "SIP allowed, signalling limit on",
            limits,
            idle,
            &sip,
            Reason::SipAllowed,
        ),
        row(
            "RTP, media limit on",
            limits,
            idle,
            &rtp(OUTSIDER),
            Reason::RtpAllowed,
        ),
        row(
            "RTP, check_rtp on",
            check,
            idle,
            &rtp(OUTSIDER),
            Reason::RtpAllowed,
        ),
    ];
    for (setup, n) in [(one, BAN_SIZES[0]), (many, BAN_SIZES[1])] {
        rows.push(row(
            &(format!("RTP from outside every banned /24, {n} bans")),
            setup,
            idle,
            &rtp(OUTSIDER),
            Reason::RtpAllowed,
        ));
        rows.push(row(
            &(format!("RTP from a banned source's /24 neighbour, {n} bans")),
            setup,
            idle,
            &rtp(NEIGHBOUR),
            Reason::RtpAllowed,
        ));
        rows.push(row(
            &(format!("RTP from a banned source (dropped), {n} bans")),
            setup,
            idle,
            &rtp(BANNED),
            Reason::Banned,
        ));
        rows.push(row(
            &(format!("IPv6 RTP from a source not banned, {n} bans")),
            setup,
            idle,
            &rtp6(OUTSIDER6),
            Reason::RtpAllowed,
        ));
        rows.push(row(
            &(format!("IPv6 RTP from a banned source (dropped), {n} bans")),
            setup,
            idle,
            &rtp6(BANNED6),
            Reason::Banned,
        ));
    }
    for r in &rows {
        let got = setups[r.setup].runner.run(&r.frame)?;
        ensure!(
            got.reason() == Some(r.reason),
            "tier 4 row \"{}\" under \"{}\" was counted as {:?}, not {}",
            r.name,
            setups[r.setup].name,
            got.moved,
            r.reason.name()
        );
    }
    progress(format!(
        "tier 4: {} rows, {} samples of {} runs each, interleaved",
        rows.len(),
        scale.samples,
        scale.repeat
    ));
    for _ in 0..scale.samples {
        for r in rows.iter_mut() {
            check_stop()?;
            let (_, ns) = setups[r.setup].runner.time(&r.frame, scale.repeat)?;
            r.samples.push(ns);
            let (_, ns) = setups[r.baseline_setup]
                .runner
                .time(&r.frame, scale.repeat)?;
            r.baseline.push(ns);
        }
    }
    Ok(Tier4 { rows, writes })
}

impl Row {
    /// The median of each sample's own difference to its baseline sample,
    /// taken right after it.
    fn over(&self) -> f64 {
        median(&differences(&self.samples, &self.baseline))
    }
}

impl Tier4 {
    pub fn print(&self, out: &mut Report) {
        out.line(format!(
            "\nTier 4 — abuse controls, ns per packet (BPF_PROG_TEST_RUN medians); \"over\" is against the same packet with the control idle (no ban, no limit, no check), the median of each sample's own difference; target ≤ {TARGET_NS} ns"
        ));
        let rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| {
                // A banned source's drop is held to the same target over
                // the same packet unbanned.
                let target = verdict(r.over() <= TARGET_NS).to_string();
                vec![
                    r.name.clone(),
                    format!("{:.1}", median(&r.baseline)),
                    format!("{:.1}", median(&r.samples)),
                    format!("{:+.1}", r.over()),
                    target,
                ]
            })
            .collect();
        out.table(&["row", "idle", "with", "over", "target"], &rows);
        let flat = |kind: &str| {
            let at = |n: usize| {
                self.rows
                    .iter()
                    .find(|r| r.name.starts_with(kind) && r.name.ends_with(&format!(", {n} bans")))
                    .map(|r| median(&r.samples))
            };
            match (at(BAN_SIZES[0]), at(BAN_SIZES[1])) {
                (Some(a), Some(b)) => format!("{:+.1} ns", b - a),
                _ => "?".into(),
            }
        };
        for (n, secs) in &self.writes {
            out.line(format!(
                "writing {n} IPv4 and {n} IPv6 bans into an empty set: {:.0} ms",
                secs * 1e3
            ));
        }
        out.line(format!(
            "ban-set size 1 -> 100,000: {} outside the banned /24s, {} for a neighbour, {} for a banned source",
            flat("RTP from outside"),
            flat("RTP from a banned source's"),
            flat("RTP from a banned source (")
        ));
    }

    pub fn to_json(&self) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                json!({
                    "row": r.name,
                    "idle_ns": median(&r.baseline),
                    "with_ns": median(&r.samples),
                    "over_ns": r.over(),
                    "samples_ns": r.samples,
                    "idle_samples_ns": r.baseline,
                })
            })
            .collect();
        let writes: Vec<Value> = self
            .writes
            .iter()
            .map(|(n, s)| json!({ "bans": n, "seconds": s }))
            .collect();
        json!({ "target_over_ns": TARGET_NS, "rows": rows, "ban_writes": writes })
    }
}
