//! Tier 2: packets per second on the kernel path. Live frames leave the
//! router's veth and arrive, through native veth XDP, on the PBX's `wan0`,
//! where each receiver in turn judges them. Receivers are interleaved round
//! by round, the median of the rounds is reported, and every run checks
//! that the receiver counted exactly the frames sent.
//!
//! The generator and the receiver share a CPU (veth processes redirected
//! frames in NAPI on the sending CPU), so a rate is 1 / (generator cost +
//! receiver cost): the generator's constant share narrows every ratio, and
//! a ratio measured here understates the gap between receivers. Rates are
//! by the kernel's clock of the run (time the thread was rescheduled to let
//! other processes run does not count); the wall clock is kept in the JSON.
use std::{collections::BTreeMap, net::Ipv6Addr};

use anyhow::{ensure, Result};
use serde_json::{json, Value};
use sipwall_lab::PROVIDER;

use crate::{
    progress,
    progs::{GEN_FLOOD, GEN_FLOOD6, GEN_FLOOD6_TWICE, GEN_MIX},
    receivers::{self, Receiver, Seen},
    report::{median, verdict, Report},
    testbed::{check_stop, Testbed},
    Scale,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mix {
    /// UDP to 5060 from 482 non-allowlisted sources, 60-byte frames.
    Flood,
    /// 15/16 RTP from 482 sources to even ports of 40000-59998, 1/16 SIP
    /// from the provider; 214-byte frames (G.711, 20 ms).
    Trunk,
    /// UDP over IPv6 to 5060 from 65,536 non-allowlisted sources in turn,
    /// 78-byte frames: every packet misses the per-CPU cache of denied
    /// sources and goes on to the LRU map.
    Flood6,
    /// The same with each source sending two packets in a row: each one
    /// is flushed from the cache into the LRU map, within the insert
    /// budget.
    Flood6Twice,
}

impl Mix {
    const ALL: [Mix; 4] = [Mix::Flood, Mix::Trunk, Mix::Flood6, Mix::Flood6Twice];

    fn name(self) -> &'static str {
        match self {
            Mix::Flood => "SIP flood (482 denied sources, 60 B)",
            Mix::Trunk => "trunk mix (15/16 RTP, 1/16 allowed SIP, 214 B)",
            Mix::Flood6 => "IPv6 SIP flood (65,536 denied sources, 78 B)",
            Mix::Flood6Twice => "IPv6 SIP flood (65,536 denied sources, each twice in a row, 78 B)",
        }
    }

    /// Short column heading.
    fn heading(self) -> &'static str {
        match self {
            Mix::Flood => "SIP flood",
            Mix::Trunk => "trunk mix",
            Mix::Flood6 => "IPv6 flood, 65,536 sources",
            Mix::Flood6Twice => "same, each source twice",
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            Mix::Flood => "sip_flood",
            Mix::Trunk => "trunk_mix",
            Mix::Flood6 => "sip_flood_v6_many_sources",
            Mix::Flood6Twice => "sip_flood_v6_many_sources_twice",
        }
    }

    fn generator(self) -> &'static str {
        match self {
            Mix::Flood => GEN_FLOOD,
            Mix::Trunk => GEN_MIX,
            Mix::Flood6 => GEN_FLOOD6,
            Mix::Flood6Twice => GEN_FLOOD6_TWICE,
        }
    }

    fn frame_len(self) -> usize {
        match self {
            Mix::Flood => 60,
            Mix::Trunk => 214,
            Mix::Flood6 | Mix::Flood6Twice => 78,
        }
    }

    /// The template the generator rewrites.
    pub fn frame(self, bed: &Testbed) -> Vec<u8> {
        match self {
            Mix::Flood6 | Mix::Flood6Twice => bed.sip_frame6(
                Ipv6Addr::new(0x2001, 0xdb8, 7, 0, 0, 0, 0, 1),
                self.frame_len(),
            ),
            _ => bed.sip_frame(PROVIDER[0], self.frame_len()),
        }
    }

    /// Whether the receiver can judge this mix (the references know IPv4
    /// only).
    fn suits(self, r: Receiver) -> bool {
        !matches!(r, Receiver::Reference | Receiver::ReferenceSources)
            || matches!(self, Mix::Flood | Mix::Trunk)
    }

    /// Whether the ratio to XDP_DROP compares the same work (XDP_DROP
    /// drops the trunk's RTP, which the filters pass up the stack).
    fn drops_everything(self) -> bool {
        self != Mix::Trunk
    }

    /// Checks a filter's counters against what this mix is made of.
    fn check(self, r: Receiver, seen: &Seen, sent: u64) -> Result<()> {
        if !r.counts() {
            return Ok(());
        }
        match self {
            Mix::Flood | Mix::Flood6 | Mix::Flood6Twice => ensure!(
                seen.get("sip_denied") == sent,
                "{}: a flood of {sent} denied SIP packets, but {:?} counted",
                r.name(),
                seen.judged
            ),
            Mix::Trunk => {
                let sip = seen.get("sip_allowed");
                ensure!(
                    seen.get("sip_denied") == 0
                        && sip * 16 + 16 >= sent
                        && sip * 16 <= sent + 16
                        && seen.get("rtp_allowed") + sip == sent,
                    "{}: {sent} packets of the trunk mix (1/16 allowed SIP, the rest RTP), but {:?} counted",
                    r.name(),
                    seen.judged
                );
            }
        }
        Ok(())
    }
}

/// Frames sent to calibrate each receiver before its first sample.
pub const WARMUP: u32 = 20_000;

pub struct Tier2 {
    /// Mpps samples per (mix, receiver), by the kernel's clock.
    samples: BTreeMap<(Mix, usize), Vec<f64>>,
    /// The same runs by the wall clock.
    wall: BTreeMap<(Mix, usize), Vec<f64>>,
    frames: u64,
    /// Samples taken again because the veth lost frames.
    retaken: usize,
    /// What sent the frames.
    generator: &'static str,
}

pub fn run(bed: &Testbed, scale: Scale, generator: &'static str) -> Result<Tier2> {
    let mut t = Tier2 {
        samples: BTreeMap::new(),
        wall: BTreeMap::new(),
        frames: 0,
        retaken: 0,
        generator,
    };
    let mut counts: BTreeMap<(Mix, usize), u32> = BTreeMap::new();
    let n = Receiver::ALL.len();
    for round in 0..scale.rounds {
        // Rotate the order so that no receiver always runs first.
        for i in 0..n {
            let ri = (i + round) % n;
            let r = Receiver::ALL[ri];
            check_stop()?;
            let installed = receivers::install(bed, r)?;
            for mix in Mix::ALL.into_iter().filter(|m| m.suits(r)) {
                let frame = mix.frame(bed);
                let count = match counts.get(&(mix, ri)) {
                    Some(c) => *c,
                    None => {
                        let ((rate, _), _) = measure(bed, &installed, r, mix, &frame, WARMUP)?;
                        let c = (rate * 1e6 * scale.seconds).clamp(1e5, 5e7) as u32;
                        counts.insert((mix, ri), c);
                        c
                    }
                };
                let ((rate, wall), retaken) = measure(bed, &installed, r, mix, &frame, count)?;
                t.frames += u64::from(count);
                t.retaken += retaken;
                progress(format!(
                    "tier 2 round {}/{}: {:<26} {:<10} {:>6.2} Mpps ({:.2} by the wall clock, {count} frames)",
                    round + 1,
                    scale.rounds,
                    r.name(),
                    mix.key(),
                    rate,
                    wall
                ));
                t.samples.entry((mix, ri)).or_default().push(rate);
                t.wall.entry((mix, ri)).or_default().push(wall);
            }
            installed.remove(bed)?;
        }
    }
    Ok(t)
}

/// Attempts at a sample before the bench gives up.
const ATTEMPTS: usize = 4;

/// [`measure_once`] until no frame is lost on the way; returns the rates
/// and how many attempts were retaken.
pub fn measure(
    bed: &Testbed,
    installed: &receivers::Installed,
    r: Receiver,
    mix: Mix,
    frame: &[u8],
    count: u32,
) -> Result<((f64, f64), usize)> {
    for attempt in 0..ATTEMPTS {
        match measure_once(bed, installed, r, mix, frame, count)? {
            Ok(rates) => return Ok((rates, attempt)),
            Err(lost) => progress(format!(
                "tier 2: {}: the veth dropped {lost} of {count} frames before the receiver (its NAPI fell behind, e.g. deferred to ksoftirqd); retaking the sample",
                r.name()
            )),
        }
        check_stop()?;
    }
    anyhow::bail!(
        "tier 2: {}: frames were lost on the veth in {ATTEMPTS} attempts in a row; the machine is too busy to measure",
        r.name()
    )
}

/// Sends `count` frames of `mix` to the installed receiver, checks that it
/// judged all of them as the mix demands, and returns the rate in Mpps by
/// the kernel's clock and by the wall clock. When the veth dropped frames
/// before the receiver saw them (its queue of 256 overflows when NAPI is
/// deferred), the sample is void and the number lost is returned instead:
/// frames dropped there cost nothing and would inflate the rate.
fn measure_once(
    bed: &Testbed,
    installed: &receivers::Installed,
    r: Receiver,
    mix: Mix,
    frame: &[u8],
    count: u32,
) -> Result<Result<(f64, f64), u64>> {
    let before = installed.snapshot(bed)?;
    let run = bed.send(mix.generator(), frame, count)?;
    // Let NAPI finish what is still queued before the counters are read.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let after = installed.snapshot(bed)?;
    let seen = receivers::seen(&before, &after);
    if seen.rx < u64::from(count) {
        return Ok(Err(u64::from(count) - seen.rx));
    }
    receivers::check_all_seen(r, &seen, u64::from(count))?;
    mix.check(r, &seen, u64::from(count))?;
    Ok(Ok((
        1e3 / run.kernel_ns,
        f64::from(count) / run.wall.as_secs_f64() / 1e6,
    )))
}

impl Tier2 {
    pub fn mpps(&self, mix: Mix, r: Receiver) -> f64 {
        let ri = Receiver::ALL.iter().position(|x| *x == r).unwrap_or(0);
        self.samples
            .get(&(mix, ri))
            .map(|s| median(s))
            .unwrap_or(f64::NAN)
    }

    /// The median of the rounds' own ratios of `a` to `b`: each round
    /// measures every receiver within seconds, so a ratio within a round
    /// is less moved by the VM's slow and fast phases than the medians'.
    fn paired_ratio(&self, mix: Mix, a: Receiver, b: Receiver) -> f64 {
        let at = |r: Receiver| {
            let ri = Receiver::ALL.iter().position(|x| *x == r).unwrap_or(0);
            self.samples.get(&(mix, ri)).cloned().unwrap_or_default()
        };
        let ratios: Vec<f64> = at(a).iter().zip(at(b)).map(|(x, y)| x / y).collect();
        median(&ratios)
    }

    /// Whether the frames came from XDP live frames (the generator the
    /// rate targets were set with).
    fn live_frames(&self) -> bool {
        self.generator.starts_with("XDP live frames")
    }

    /// The range of the samples, to show how much the rounds disagree.
    fn spread(&self, mix: Mix, r: Receiver) -> String {
        let ri = Receiver::ALL.iter().position(|x| *x == r).unwrap_or(0);
        let s = self.samples.get(&(mix, ri)).cloned().unwrap_or_default();
        let min = s.iter().copied().fold(f64::INFINITY, f64::min);
        let max = s.iter().copied().fold(0.0, f64::max);
        format!("({min:.2}-{max:.2})")
    }

    pub fn print(&self, out: &mut Report) {
        out.line("");
        out.line(format!("Tier 2 — throughput on the kernel path (veth, native XDP; frames from {}, generated on the receiver's CPU), Mpps, median of rounds", self.generator));
        let mut header = vec!["receiver"];
        for mix in Mix::ALL {
            header.extend([mix.heading(), "(min-max)"]);
        }
        let rows: Vec<Vec<String>> = Receiver::ALL
            .iter()
            .map(|&r| {
                let mut row = vec![r.name().to_string()];
                for mix in Mix::ALL {
                    if mix.suits(r) {
                        row.push(format!("{:.2}", self.mpps(mix, r)));
                        row.push(self.spread(mix, r));
                    } else {
                        row.extend(["n/a".to_string(), String::new()]);
                    }
                }
                row
            })
            .collect();
        out.table(&header, &rows);
        out.line("");
        let mut header = vec!["ratio"];
        header.extend(Mix::ALL.map(Mix::heading));
        header.extend(["target (floods)", ""]);
        let mut rows = Vec::new();
        // (row, numerator, denominator, target on the floods, whether the
        // figure is the median of the rounds' own ratios)
        for (name, a, b, target, paired) in [
            (
                "sipwall native / nftables",
                Receiver::SipwallNative,
                Receiver::Nftables,
                Some(2.5),
                false,
            ),
            (
                "sipwall native / XDP_DROP",
                Receiver::SipwallNative,
                Receiver::XdpDrop,
                None,
                false,
            ),
            (
                "  the same, median of the rounds' ratios",
                Receiver::SipwallNative,
                Receiver::XdpDrop,
                None,
                true,
            ),
            (
                "reference / XDP_DROP",
                Receiver::Reference,
                Receiver::XdpDrop,
                None,
                false,
            ),
            (
                "reference + per-source counts / XDP_DROP",
                Receiver::ReferenceSources,
                Receiver::XdpDrop,
                None,
                false,
            ),
            (
                "sipwall native / reference",
                Receiver::SipwallNative,
                Receiver::Reference,
                None,
                false,
            ),
            (
                "sipwall native / reference + per-source counts",
                Receiver::SipwallNative,
                Receiver::ReferenceSources,
                None,
                false,
            ),
            (
                "sipwall skb / nftables",
                Receiver::SipwallSkb,
                Receiver::Nftables,
                None,
                false,
            ),
            (
                "sipwall native / no filter",
                Receiver::SipwallNative,
                Receiver::NoFilter,
                None,
                false,
            ),
            (
                "strict / guard (sipwall native)",
                Receiver::SipwallStrict,
                Receiver::SipwallNative,
                Some(0.9),
                false,
            ),
        ] {
            let ratio = |mix: Mix| {
                if paired {
                    self.paired_ratio(mix, a, b)
                } else {
                    self.mpps(mix, a) / self.mpps(mix, b)
                }
            };
            let mut row = vec![name.to_string()];
            for mix in Mix::ALL {
                let r = ratio(mix);
                row.push(
                    if (b == Receiver::XdpDrop && !mix.drops_everything()) || r.is_nan() {
                        "n/a".to_string()
                    } else {
                        format!("{r:.2}x")
                    },
                );
            }
            match target {
                // The AF_PACKET generator's own cost per frame dwarfs the
                // receivers' differences: its ratios are information.
                Some(t) if !self.live_frames() => {
                    row.extend([format!(">= {t:.2}"), "n/a (AF_PACKET)".to_string()]);
                }
                Some(t) => {
                    let met = [Mix::Flood, Mix::Flood6, Mix::Flood6Twice]
                        .iter()
                        .all(|&m| ratio(m) >= t);
                    row.extend([format!(">= {t:.2}"), verdict(met).to_string()]);
                }
                None => row.extend([String::new(), String::new()]),
            }
            rows.push(row);
        }
        out.table(&header, &rows);
        out.line("(sipwall / XDP_DROP is information: the flood's target is the time inside the program, below)");
        out.line(format!(
            "({} frames sent; every sample checked: each frame arrived and each filter counted it under the expected reason; {} samples retaken because the veth dropped frames)",
            self.frames, self.retaken
        ));
    }

    pub fn to_json(&self) -> Value {
        let mut mixes = serde_json::Map::new();
        for mix in Mix::ALL {
            let mut recv = serde_json::Map::new();
            for (ri, r) in Receiver::ALL.iter().enumerate() {
                recv.insert(
                    r.key().into(),
                    json!({
                        "mpps": self.mpps(mix, *r),
                        "samples_mpps": self.samples.get(&(mix, ri)).cloned().unwrap_or_default(),
                        "wall_clock_mpps": self.wall.get(&(mix, ri)).map(|s| median(s)),
                        "wall_clock_samples_mpps": self.wall.get(&(mix, ri)).cloned().unwrap_or_default(),
                    }),
                );
            }
            let ratio = |a, b| self.mpps(mix, a) / self.mpps(mix, b);
            mixes.insert(
                mix.key().into(),
                json!({
                    "description": mix.name(),
                    "frame_bytes": mix.frame_len(),
                    "receivers": recv,
                    "ratios": {
                        "sipwall_native_over_nftables": ratio(Receiver::SipwallNative, Receiver::Nftables),
                        "sipwall_native_over_xdp_drop": ratio(Receiver::SipwallNative, Receiver::XdpDrop),
                        "sipwall_native_over_xdp_drop_median_of_rounds": self.paired_ratio(mix, Receiver::SipwallNative, Receiver::XdpDrop),
                        "reference_over_xdp_drop": ratio(Receiver::Reference, Receiver::XdpDrop),
                        "reference_per_source_over_xdp_drop": ratio(Receiver::ReferenceSources, Receiver::XdpDrop),
                        "sipwall_native_over_reference_per_source": ratio(Receiver::SipwallNative, Receiver::ReferenceSources),
                        "sipwall_native_over_reference": ratio(Receiver::SipwallNative, Receiver::Reference),
                        "sipwall_skb_over_nftables": ratio(Receiver::SipwallSkb, Receiver::Nftables),
                        "sipwall_native_over_no_filter": ratio(Receiver::SipwallNative, Receiver::NoFilter),
                        "strict_over_guard": ratio(Receiver::SipwallStrict, Receiver::SipwallNative),
                    },
                }),
            );
        }
        json!({
            "unit": "Mpps, median of rounds, by the kernel's clock of the live-frames run (time the generating thread ran, the receiver's softirq work included; the wall clock with the AF_PACKET generator); wall_clock_* by the wall clock",
            "mixes": mixes,
            "frames_sent": self.frames,
            "samples_retaken": self.retaken,
            "generator": self.generator,
            "targets": { "sipwall_native_over_nftables_flood": 2.5 },
        })
    }
}
