//! Tier 1, a flood of denied sources: SIP denied timed as tier 1 times it
//! (BPF_PROG_TEST_RUN, programs interleaved sample by sample), but each run
//! comes from the next of many sources. A flood front
//! (`bench_flood_front`, `bench_flood_front6`) writes the source, then
//! tail-calls the program under test: the empty program (the floor), the
//! reference, the reference with the least per-source accounting there is,
//! or sipwall. One repeating source keeps one slot of sipwall's per-source
//! counts hot; a flood spreads over hundreds or thousands of slots. (In
//! this loop little else runs between two packets, so the slots mostly
//! stay in the CPU's caches; on the veth path of tier 2 they do not, which
//! `in_program` measures.)
use std::net::{IpAddr, Ipv6Addr};

use anyhow::{ensure, Context as _, Result};
use aya::programs::ProgramFd;
use filter_common::Reason;
use filter_kernel::runner::Runner;
use serde_json::{json, Value};
use sipwall_lab::{OUTSIDER, PBX, PBX6};
use sipwall_tests::packet::Frame;

use crate::{
    allowlists::{allowlist, ruleset},
    progress,
    progs::{self, BenchProgs, FLOOD_FRONT, FLOOD_FRONT6, PASS, REFERENCE, REFERENCE_SOURCES},
    report::{differences, median, verdict, Report},
    testbed::check_stop,
    tier1::{TARGET_DENIED_NS, TARGET_OTHER_NS},
    Scale,
};

/// The IPv6 flood's template source: the front rewrites its last two
/// bytes, so the sources are 2001:db8:7::/112 (as tier 2's IPv6 flood).
const FLOOD6_TEMPLATE: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 7, 0, 0, 0, 0, 1);

/// XDP_DROP and XDP_PASS as the kernel returns them.
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

struct FloodClass {
    name: &'static str,
    key: &'static str,
    front: &'static str,
    sources: u32,
    frame: Vec<u8>,
    /// Whether the reference judges this frame (IPv4 only); otherwise the
    /// IPv4 flood's reference is the yardstick.
    reference: bool,
    allowance: f64,
}

fn classes() -> Vec<FloodClass> {
    let sip = b"OPTIONS sip:pbx SIP/2.0\r\n";
    vec![
        FloodClass {
            name: "SIP denied, UDP, 723 sources in turn",
            key: "sip_denied_udp_flood",
            front: FLOOD_FRONT,
            sources: 723,
            frame: Frame::ipv4(OUTSIDER, PBX)
                .udp(5060, 5060)
                .payload(sip)
                .build(),
            reference: true,
            allowance: TARGET_DENIED_NS,
        },
        FloodClass {
            name: "IPv6 SIP denied, 65,536 sources in turn",
            key: "ipv6_sip_denied_flood",
            front: FLOOD_FRONT6,
            sources: 65_536,
            frame: Frame::ipv6(FLOOD6_TEMPLATE, PBX6)
                .udp(5060, 5060)
                .payload(sip)
                .build(),
            reference: false,
            allowance: TARGET_OTHER_NS,
        },
    ]
}

/// Medians, ns per packet; the differences are medians of each sample's
/// own difference, as in tier 1.
struct Figure {
    floor: f64,
    reference: f64,
    prog: f64,
    own: f64,
    reference_own: f64,
    over_reference: f64,
    /// The reference with per-source counts, over its floor.
    reference_sources_own: f64,
}

pub struct Flood {
    classes: Vec<FloodClass>,
    figures: Vec<Figure>,
    /// Packets sipwall counted as `sip_denied`, all of them checked.
    counted: u64,
}

/// Distinct sources of each family `top` must list after the floods.
const MIN_DISTINCT_SOURCES: usize = 100;

/// One timed run of `repeat` packets: `what` behind the class's front;
/// checks the action.
fn timed(
    progs: &mut BenchProgs,
    c: &FloodClass,
    what: &ProgramFd,
    want: u32,
    repeat: u32,
) -> Result<f64> {
    progs.set_flood_target(what)?;
    let (action, ns) = progs::time(progs.xdp(c.front)?, &c.frame, repeat)?;
    ensure!(
        action == want,
        "tier 1 flood {:?}: action {action}, expected {want} (did the tail call fail?)",
        c.name
    );
    Ok(ns)
}

pub fn run(scale: Scale) -> Result<Flood> {
    let classes = classes();
    let mut progs = BenchProgs::load()?;
    let runner = Runner::new(&ruleset(allowlist(2, 1)))?;
    let floor = progs.xdp(PASS)?.fd()?.try_clone()?;
    let reference = progs.xdp(REFERENCE)?.fd()?.try_clone()?;
    let reference_sources = progs.xdp(REFERENCE_SOURCES)?.fd()?.try_clone()?;
    let sipwall = runner.program()?.fd()?.try_clone()?;
    let denied =
        |r: &Runner| -> Result<u64> { Ok(r.maps.counters()?[Reason::SipDenied as usize].packets) };
    let start = denied(&runner)?;
    let mut sent = 0u64;
    // Every source once before the samples, as a flood that has run a while.
    for c in &classes {
        timed(&mut progs, c, &sipwall, XDP_DROP, c.sources)?;
        sent += u64::from(c.sources);
    }
    progress("tier 1: a flood of denied sources");
    let n = classes.len();
    let (mut floor_ns, mut ref_ns, mut ref_sources_ns, mut prog_ns) = (
        vec![Vec::new(); n],
        vec![Vec::new(); n],
        vec![Vec::new(); n],
        vec![Vec::new(); n],
    );
    for _ in 0..scale.samples {
        check_stop()?;
        for (i, c) in classes.iter().enumerate() {
            floor_ns[i].push(timed(&mut progs, c, &floor, XDP_PASS, scale.repeat)?);
            if c.reference {
                ref_ns[i].push(timed(&mut progs, c, &reference, XDP_DROP, scale.repeat)?);
                ref_sources_ns[i].push(timed(
                    &mut progs,
                    c,
                    &reference_sources,
                    XDP_DROP,
                    scale.repeat,
                )?);
            }
            prog_ns[i].push(timed(&mut progs, c, &sipwall, XDP_DROP, scale.repeat)?);
            sent += u64::from(scale.repeat);
        }
    }
    let counted = denied(&runner)? - start;
    ensure!(
        counted == sent,
        "tier 1 flood: sipwall ran {sent} denied SIP packets but counted {counted}"
    );
    // The sources did change from run to run: `top` knows many of each
    // family (not all: its map is a sample past the insert budget).
    let sources = runner.maps.denied_sources()?;
    for (family, v6) in [("IPv4", false), ("IPv6", true)] {
        let distinct = sources
            .iter()
            .filter(|(addr, _)| matches!(addr, IpAddr::V6(_)) == v6)
            .count();
        ensure!(
            distinct >= MIN_DISTINCT_SOURCES,
            "tier 1 flood: sipwall remembers only {distinct} denied {family} sources, not a flood's"
        );
    }
    // The yardstick: the reference's own cost on the IPv4 flood, sample by
    // sample.
    let yard = classes
        .iter()
        .position(|c| c.reference)
        .context("no IPv4 flood")?;
    let ref_own = differences(&ref_ns[yard], &floor_ns[yard]);
    let ref_sources_own = differences(&ref_sources_ns[yard], &floor_ns[yard]);
    let figures = (0..n)
        .map(|i| {
            let own = differences(&prog_ns[i], &floor_ns[i]);
            let over = differences(&own, &ref_own);
            Figure {
                floor: median(&floor_ns[i]),
                reference: median(&ref_ns[yard]),
                prog: median(&prog_ns[i]),
                own: median(&own),
                reference_own: median(&ref_own),
                over_reference: median(&over),
                reference_sources_own: median(&ref_sources_own),
            }
        })
        .collect();
    Ok(Flood {
        classes,
        figures,
        counted,
    })
}

impl Flood {
    fn met(&self, i: usize) -> bool {
        self.figures[i].over_reference <= self.classes[i].allowance
    }

    pub fn print(&self, out: &mut Report) {
        out.line("");
        out.line("Tier 1, a flood — SIP denied, each run from the next source (a front program writes the source, then tail-calls the program timed), ns");
        let header = [
            "class",
            "floor",
            "reference",
            "sipwall",
            "own",
            "ref. own",
            "over ref.",
            "target",
            "",
            "ref. + sources own",
        ];
        let rows: Vec<Vec<String>> = self
            .classes
            .iter()
            .zip(&self.figures)
            .enumerate()
            .map(|(i, (c, f))| {
                let star = if c.reference { "" } else { "*" };
                vec![
                    c.name.to_string(),
                    format!("{:.1}", f.floor),
                    format!("{:.1}{star}", f.reference),
                    format!("{:.1}", f.prog),
                    format!("{:.1}", f.own),
                    format!("{:.1}", f.reference_own),
                    format!("{:+.1}", f.over_reference),
                    format!("<= {:.0}", c.allowance),
                    verdict(self.met(i)).to_string(),
                    format!("{:.1}{star}", f.reference_sources_own),
                ]
            })
            .collect();
        out.table(&header, &rows);
        out.line(format!(
            "(floor: the front and an empty program; own and ref. own: over that floor; * the reference on the IPv4 flood, which it can judge; ref. + sources: the reference with the least per-source accounting there is (a per-CPU table of sources by hash, a new source overwriting the slot's); sources: hosts .10-.250 of 192.0.2.0/24, 198.51.100.0/24 and 203.0.113.0/24, and 2001:db8:7::/112; every one of the {} packets sipwall judged was counted as sip_denied)",
            self.counted
        ));
    }

    pub fn to_json(&self) -> Value {
        let classes: Vec<Value> = self
            .classes
            .iter()
            .zip(&self.figures)
            .enumerate()
            .map(|(i, (c, f))| {
                json!({
                    "class": c.key,
                    "description": c.name,
                    "sources": c.sources,
                    "frame_bytes": c.frame.len(),
                    "floor_ns": f.floor,
                    "reference_ns": f.reference,
                    "reference_frame": if c.reference { c.key } else { "sip_denied_udp_flood" },
                    "ns": f.prog,
                    "own_ns": f.own,
                    "reference_own_ns": f.reference_own,
                    "sipwall_over_reference_ns": f.over_reference,
                    "reference_per_source_own_ns": f.reference_sources_own,
                    "target_over_reference_ns": c.allowance,
                    "met": self.met(i),
                })
            })
            .collect();
        json!({ "classes": classes, "sip_denied_counted": self.counted })
    }
}
