//! Tier 2, time inside the program: the SIP flood again, with the kernel's
//! run-time statistics on (`BPF_ENABLE_STATS`), so that each XDP receiver's
//! own time per packet is read off the kernel rather than inferred from a
//! rate. A rate moves with the VM's phases and with everything else on the
//! path; the time inside a program, measured around every run, moves far
//! less. The statistics cost each run the same two clock reads, so these
//! rounds come after tier 2's and their rates are not reported. What a
//! receiver spends over XDP_DROP here is what stands between its flood rate
//! and XDP_DROP's.
use anyhow::{ensure, Context as _, Result};
use aya::sys::{enable_stats, Stats};
use serde_json::{json, Value};

use crate::{
    progress,
    receivers::{self, Receiver},
    report::{differences, median, verdict, Report},
    testbed::{check_stop, Testbed},
    tier2::{measure, Mix, Tier2, WARMUP},
    Scale,
};

/// The flood's target: sipwall's time inside its program at most this
/// much over the reference with the least per-source accounting.
const SOURCES_TARGET_NS: f64 = 5.0;

/// The receivers timed: the filters that run as one XDP program.
const RECEIVERS: [Receiver; 4] = [
    Receiver::SipwallNative,
    Receiver::Reference,
    Receiver::ReferenceSources,
    Receiver::XdpDrop,
];

pub struct InProgram {
    /// ns inside the program per packet, per round, by `RECEIVERS` index.
    ns: Vec<Vec<f64>>,
    /// The same for `--candidate`'s build, when given.
    candidate: Vec<f64>,
    /// XDP_DROP's whole path per packet in tier 2 (the kernel's clock of
    /// the run, statistics off).
    drop_path_ns: f64,
}

/// `tier2`: tier 2's rates (the flood's length follows XDP_DROP's), when
/// that table ran. `candidate`: another build of the XDP object, timed in
/// every round beside this one.
pub fn run(
    bed: &Testbed,
    scale: Scale,
    tier2: Option<&Tier2>,
    candidate: Option<&[u8]>,
) -> Result<InProgram> {
    let mix = Mix::Flood;
    let frame = mix.frame(bed);
    // About `scale.seconds` of frames at the rate XDP_DROP reached in
    // tier 2 with this generator (4-7 Mpps with live frames, a tenth of
    // that through AF_PACKET).
    let drop_mpps = tier2.map_or(f64::NAN, |t| t.mpps(mix, Receiver::XdpDrop));
    let rate = if drop_mpps.is_finite() {
        drop_mpps
    } else {
        5.0
    };
    let count = (scale.seconds * rate * 1e6).clamp(1e5, 5e6) as u32;
    let rounds = scale.rounds;
    // The receivers in turn, the candidate last; `None` is the candidate.
    let timed: Vec<Option<Receiver>> = RECEIVERS
        .iter()
        .copied()
        .map(Some)
        .chain(candidate.map(|_| None))
        .collect();
    let mut ns = vec![Vec::new(); timed.len()];
    for round in 0..rounds {
        for i in 0..timed.len() {
            let ti = (i + round) % timed.len();
            check_stop()?;
            let (r, installed) = match (timed[ti], candidate) {
                (Some(r), _) => (r, receivers::install(bed, r)?),
                (None, Some(object)) => (
                    Receiver::SipwallNative,
                    receivers::install_candidate(bed, object)?,
                ),
                (None, None) => unreachable!("a candidate is timed only when given"),
            };
            let name = if timed[ti].is_some() {
                r.name()
            } else {
                "sipwall candidate"
            };
            measure(bed, &installed, r, mix, &frame, WARMUP)?;
            let stats = enable_stats(Stats::RunTime).context("BPF_ENABLE_STATS")?;
            let info = || -> Result<_> {
                installed
                    .program_info()?
                    .context("an XDP receiver without a program")
            };
            let before = info()?;
            measure(bed, &installed, r, mix, &frame, count)?;
            let after = info()?;
            drop(stats);
            let runs = after.run_count() - before.run_count();
            ensure!(
                runs >= u64::from(count),
                "{name}: the kernel counted {runs} runs for {count} frames"
            );
            let per_run = (after.run_time() - before.run_time()).as_nanos() as f64 / runs as f64;
            progress(format!(
                "tier 2, time inside the program, round {}/{rounds}: {name:<30} {per_run:.1} ns per packet",
                round + 1,
            ));
            ns[ti].push(per_run);
            installed.remove(bed)?;
        }
    }
    let candidate = if candidate.is_some() {
        ns.pop().unwrap_or_default()
    } else {
        Vec::new()
    };
    Ok(InProgram {
        ns,
        candidate,
        drop_path_ns: 1e3 / drop_mpps,
    })
}

impl InProgram {
    fn samples(&self, r: Receiver) -> &[f64] {
        RECEIVERS
            .iter()
            .position(|x| *x == r)
            .map_or(&[], |i| &self.ns[i])
    }

    fn median_of(&self, r: Receiver) -> f64 {
        median(self.samples(r))
    }

    /// The median of each round's own difference from XDP_DROP.
    fn over_drop(&self, r: Receiver) -> f64 {
        median(&differences(
            self.samples(r),
            self.samples(Receiver::XdpDrop),
        ))
    }

    /// sipwall's time over the reference with per-source accounting: the
    /// median of each round's own difference.
    fn over_sources(&self) -> f64 {
        median(&differences(
            self.samples(Receiver::SipwallNative),
            self.samples(Receiver::ReferenceSources),
        ))
    }

    /// What 0.95x XDP_DROP's rate leaves a filter per packet over XDP_DROP.
    fn budget_ns(&self) -> f64 {
        self.drop_path_ns / 0.95 - self.drop_path_ns
    }

    pub fn print(&self, out: &mut Report) {
        out.line("");
        out.line(format!(
            "Tier 2, time inside the program — SIP flood, the kernel's run-time statistics on, ns per packet, median of {} rounds",
            self.ns.first().map_or(0, Vec::len)
        ));
        let rows: Vec<Vec<String>> = RECEIVERS
            .iter()
            .map(|&r| {
                vec![
                    r.name().to_string(),
                    format!("{:.1}", self.median_of(r)),
                    format!("{:+.1}", self.over_drop(r)),
                ]
            })
            .collect();
        out.table(&["receiver", "in the program", "over XDP_DROP"], &rows);
        let over = self.over_sources();
        out.line(format!(
            "sipwall native over the reference + per-source counts: {over:+.1} ns (median of each round's own difference); target <= +{SOURCES_TARGET_NS} ns: {}",
            verdict(over <= SOURCES_TARGET_NS)
        ));
        if !self.candidate.is_empty() {
            out.line(format!(
                "the candidate build over this one: {:+.1} ns (median of each round's own difference); over the reference + per-source counts: {:+.1} ns",
                median(&differences(&self.candidate, self.samples(Receiver::SipwallNative))),
                median(&differences(&self.candidate, self.samples(Receiver::ReferenceSources))),
            ));
        }
        if self.drop_path_ns.is_finite() {
            out.line(format!(
                "(over XDP_DROP: the median of each round's own difference; the statistics' own clock reads, most of XDP_DROP's figure, are in every figure alike; XDP_DROP's whole path takes {:.0} ns per packet in tier 2, so a flood rate of 0.95x XDP_DROP's leaves a filter {:.1} ns per packet over XDP_DROP)",
                self.drop_path_ns,
                self.budget_ns()
            ));
        }
    }

    pub fn to_json(&self) -> Value {
        let receivers: serde_json::Map<String, Value> = RECEIVERS
            .iter()
            .enumerate()
            .map(|(i, &r)| {
                (
                    r.key().to_string(),
                    json!({
                        "ns_per_packet": median(&self.ns[i]),
                        "over_xdp_drop_ns": self.over_drop(r),
                        "samples_ns": self.ns[i],
                    }),
                )
            })
            .collect();
        json!({
            "mix": Mix::Flood.key(),
            "unit": "ns inside the XDP program per packet, from the kernel's run-time statistics (BPF_ENABLE_STATS), median of rounds",
            "receivers": receivers,
            "xdp_drop_path_ns": self.drop_path_ns.is_finite().then_some(self.drop_path_ns),
            "budget_for_0_95_ns": self.drop_path_ns.is_finite().then(|| self.budget_ns()),
            "candidate_samples_ns": (!self.candidate.is_empty()).then_some(&self.candidate),
            "over_reference_sources_ns": self.over_sources(),
            "target_over_reference_sources_ns": SOURCES_TARGET_NS,
        })
    }
}
