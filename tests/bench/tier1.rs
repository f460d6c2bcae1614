//! Tier 1: what the program costs per packet, by packet class, measured
//! with BPF_PROG_TEST_RUN against the floor (an empty XDP program run on
//! the same frame, interleaved sample by sample), at three allowlist sizes.
//! Before it is timed, each frame is run once and must get the verdict and
//! reason its class is named after, so every row measures the path it
//! claims to.
use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::{ensure, Context as _, Result};
use filter_common::Reason;
use serde_json::{json, Value};
use sipwall::{
    kernel::runner::{Runner, Verdict},
    lab::{OUTSIDER, OUTSIDER6, PBX, PBX6, PROVIDER},
};
use sipwall_tests::packet::Frame;

use crate::{
    allowlists::{allowlist, ruleset},
    progress,
    progs::{self, BenchProgs, PASS},
    report::{median, verdict, Report},
    testbed::check_stop,
    Scale,
};

/// Allowlist sizes the program is timed with.
pub const SIZES: [usize; 3] = [2, 1_000, 100_000];
/// The target: the program's own cost per class, over the floor.
pub const TARGET_NS: f64 = 15.0;
/// Largest growth from the smallest to the largest allowlist called "a few
/// ns".
pub const SCALE_TARGET_NS: f64 = 5.0;

struct Class {
    name: &'static str,
    key: &'static str,
    frame: Vec<u8>,
    reason: Reason,
}

fn classes() -> Vec<Class> {
    let provider = PROVIDER[0];
    // 20 ms of G.711 behind an RTP header.
    let rtp_payload = [0u8; 172];
    let sip = b"OPTIONS sip:pbx SIP/2.0\r\n";
    let v4 = |src: Ipv4Addr| Frame::ipv4(src, PBX);
    let v6 = |src: Ipv6Addr| Frame::ipv6(src, PBX6);
    let class = |name, key, frame: Frame, reason| Class {
        name,
        key,
        frame: frame.build(),
        reason,
    };
    vec![
        class(
            "RTP",
            "rtp",
            v4(OUTSIDER).udp(40002, 40000).payload(&rtp_payload),
            Reason::RtpAllowed,
        ),
        class(
            "SIP allowed, UDP",
            "sip_allowed_udp",
            v4(provider).udp(5060, 5060).payload(sip),
            Reason::SipAllowed,
        ),
        class(
            "SIP allowed, TCP",
            "sip_allowed_tcp",
            v4(provider).tcp(40123, 5060).payload(sip),
            Reason::SipAllowed,
        ),
        class(
            "SIP denied, UDP",
            "sip_denied_udp",
            v4(OUTSIDER).udp(5060, 5060).payload(sip),
            Reason::SipDenied,
        ),
        class(
            "SIP denied, TCP",
            "sip_denied_tcp",
            v4(OUTSIDER).tcp(40123, 5061).payload(sip),
            Reason::SipDenied,
        ),
        class(
            "other (ICMP echo)",
            "other",
            v4(OUTSIDER).icmp_echo().payload(&[0; 56]),
            Reason::Other,
        ),
        class(
            "non-IP (ARP)",
            "non_ip",
            Frame::arp(OUTSIDER, PBX),
            Reason::NonIp,
        ),
        class(
            "malformed (UDP header cut)",
            "malformed",
            v4(OUTSIDER).udp(5060, 5060).cut_to(38),
            Reason::Malformed,
        ),
        class(
            "VLAN-tagged SIP allowed",
            "vlan_sip",
            v4(provider).vlan(0x8100, 10).udp(5060, 5060).payload(sip),
            Reason::SipAllowed,
        ),
        class(
            "IPv6 SIP denied",
            "ipv6_sip",
            v6(OUTSIDER6).udp(5060, 5060).payload(sip),
            Reason::SipDenied,
        ),
        class(
            "first fragment, SIP allowed",
            "first_fragment",
            v4(provider).udp(5060, 5060).payload(sip).fragment(0, true),
            Reason::SipAllowed,
        ),
        class(
            "non-first fragment",
            "non_first_fragment",
            v4(OUTSIDER).raw(17, &[0; 64]).fragment(185, false),
            Reason::Fragment,
        ),
    ]
}

/// Medians in ns per packet of one class at one allowlist size.
#[derive(Clone, Copy)]
struct Figure {
    prog: f64,
    floor: f64,
}

impl Figure {
    fn own(self) -> f64 {
        self.prog - self.floor
    }
}

pub struct Tier1 {
    classes: Vec<Class>,
    /// figures[size index][class index]
    figures: Vec<Vec<Figure>>,
    repeat: u32,
    samples: usize,
}

pub fn run(scale: Scale) -> Result<Tier1> {
    let classes = classes();
    let progs = BenchProgs::load()?;
    let floor = progs.xdp(PASS)?;
    let mut runner = Runner::new(&ruleset(allowlist(SIZES[0], 1)))?;
    let mut figures = Vec::new();
    for size in SIZES {
        check_stop()?;
        progress(format!("tier 1: allowlist of {size} prefixes"));
        runner
            .install(&ruleset(allowlist(size, 1)))
            .with_context(|| format!("installing an allowlist of {size}"))?;
        for c in &classes {
            let out = runner.run(&c.frame)?;
            let want = if c.reason.drops() {
                Verdict::Drop
            } else {
                Verdict::Pass
            };
            ensure!(
                out.reason() == Some(c.reason) && out.verdict == want,
                "tier 1 class {:?} at size {size}: expected {} ({want:?}), the program said {:?}",
                c.name,
                c.reason.name(),
                out
            );
        }
        let mut prog_ns = vec![Vec::new(); classes.len()];
        let mut floor_ns = vec![Vec::new(); classes.len()];
        for _ in 0..scale.samples {
            check_stop()?;
            for (i, c) in classes.iter().enumerate() {
                floor_ns[i].push(progs::time(floor, &c.frame, scale.repeat)?.1);
                prog_ns[i].push(runner.time(&c.frame, scale.repeat)?.1);
            }
        }
        let row: Vec<Figure> = (0..classes.len())
            .map(|i| Figure {
                prog: median(&prog_ns[i]),
                floor: median(&floor_ns[i]),
            })
            .collect();
        let worst = row.iter().map(|f| f.own()).fold(f64::MIN, f64::max);
        progress(format!(
            "tier 1: allowlist of {size}: floor {:.1} ns, worst class {worst:.1} ns over it",
            median(&row.iter().map(|f| f.floor).collect::<Vec<_>>())
        ));
        figures.push(row);
    }
    Ok(Tier1 {
        classes,
        figures,
        repeat: scale.repeat,
        samples: scale.samples,
    })
}

impl Tier1 {
    /// Growth of a class's cost from the smallest to any larger allowlist.
    fn growth(&self, ci: usize) -> f64 {
        let base = self.figures[0][ci].prog;
        self.figures[1..]
            .iter()
            .map(|row| row[ci].prog - base)
            .fold(f64::MIN, f64::max)
    }

    pub fn print(&self, out: &mut Report) {
        out.line("");
        out.line(format!(
            "Tier 1 — cost per packet (BPF_PROG_TEST_RUN, repeat {}, median of {}), ns",
            self.repeat, self.samples
        ));
        let header = [
            "class",
            "floor",
            "sipwall",
            "own",
            "ratio",
            "target own",
            "",
            "1,000",
            "100,000",
            "growth",
            "",
        ];
        let rows: Vec<Vec<String>> = self
            .classes
            .iter()
            .enumerate()
            .map(|(ci, c)| {
                let f = self.figures[0][ci];
                let growth = self.growth(ci);
                vec![
                    c.name.to_string(),
                    format!("{:.1}", f.floor),
                    format!("{:.1}", f.prog),
                    format!("{:.1}", f.own()),
                    format!("{:.2}x", f.prog / f.floor),
                    format!("<= {TARGET_NS:.0}"),
                    verdict(f.own() <= TARGET_NS).to_string(),
                    format!("{:.1}", self.figures[1][ci].prog),
                    format!("{:.1}", self.figures[2][ci].prog),
                    format!("{growth:+.1}"),
                    verdict(growth <= SCALE_TARGET_NS).to_string(),
                ]
            })
            .collect();
        out.table(&header, &rows);
        out.line(format!(
            "(the kernel reports whole ns per run; floor: an empty XDP program on the same frame; own = sipwall - floor; floor..ratio with the provider's 2 prefixes; 1,000 and 100,000: sipwall's ns with that many prefixes, IPv4 and IPv6 of mixed lengths; growth target <= {SCALE_TARGET_NS:.0} ns)"
        ));
    }

    pub fn to_json(&self) -> Value {
        let classes: Vec<Value> = self
            .classes
            .iter()
            .enumerate()
            .map(|(ci, c)| {
                let sizes: serde_json::Map<String, Value> = SIZES
                    .iter()
                    .enumerate()
                    .map(|(si, size)| {
                        let f = self.figures[si][ci];
                        (
                            size.to_string(),
                            json!({
                                "ns": f.prog,
                                "floor_ns": f.floor,
                                "own_ns": f.own(),
                                "ratio": f.prog / f.floor,
                            }),
                        )
                    })
                    .collect();
                json!({
                    "class": c.key,
                    "description": c.name,
                    "reason": c.reason.name(),
                    "frame_bytes": c.frame.len(),
                    "by_allowlist_size": sizes,
                    "growth_ns": self.growth(ci),
                })
            })
            .collect();
        json!({
            "repeat": self.repeat,
            "samples": self.samples,
            "allowlist_sizes": SIZES,
            "target_own_ns": TARGET_NS,
            "target_growth_ns": SCALE_TARGET_NS,
            "classes": classes,
        })
    }
}
