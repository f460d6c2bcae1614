//! Tier 1, strict mode: what strict mode adds per packet over guard mode on
//! the same frame (BPF_PROG_TEST_RUN, runs interleaved, medians), with the
//! flow table holding 1 and 100,000 entries; and what the TC egress
//! program costs per outbound packet (BPF_PROG_TEST_RUN on TC).
use std::net::{IpAddr, Ipv4Addr};

use anyhow::{ensure, Result};
use filter_common::Reason;
use filter_kernel::{
    flows::FlowTuple,
    runner::{Runner, Verdict},
};
use filter_policy::ruleset::{Mode, Ruleset};
use serde_json::{json, Value};
use sipwall_tests::packet::Frame;

use crate::{
    progress,
    report::{differences, median, verdict, Report},
    Scale,
};

const HOST: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const WEB: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 50);
const STRANGER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);
/// Targets over guard mode on the same frame: a reply (its lookup) and a
/// stranger's denied packet (the flood path of strict mode).
const REPLY_TARGET_NS: f64 = 15.0;
const DENIED_TARGET_NS: f64 = 10.0;

struct Row {
    class: &'static str,
    flows: usize,
    guard: f64,
    strict: f64,
    /// Median of each sample's own strict - guard.
    over: f64,
}

pub struct StrictTier1 {
    rows: Vec<Row>,
    /// (class, ns per outbound packet)
    egress: Vec<(&'static str, f64)>,
}

/// `n` flows of the host other than the one timed.
fn filler(n: usize) -> Vec<FlowTuple> {
    (0..n as u32)
        .map(|i| FlowTuple {
            proto: 6,
            remote: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | i)),
            remote_port: 443,
            local: IpAddr::V4(HOST),
            local_port: 10_000 + (i % 50_000) as u16,
        })
        .collect()
}

fn timed(runner: &Runner, frame: &[u8], want: Verdict, repeat: u32) -> Result<f64> {
    let (action, ns) = runner.time(frame, repeat)?;
    let want_action = if want == Verdict::Drop { 1 } else { 2 };
    ensure!(action == want_action, "bench frame got action {action}");
    Ok(ns)
}

pub fn run(scale: Scale) -> Result<StrictTier1> {
    progress("tier 1 strict: reply and denied against guard, egress cost");
    let strict_rules = Ruleset {
        mode: Mode::Strict,
        ..Ruleset::default()
    };
    let mut guard = Runner::new(&Ruleset::default())?;
    let mut strict = Runner::new(&strict_rules)?;
    let reply = Frame::ipv4(WEB, HOST).tcp(443, 40001).build();
    let denied = Frame::ipv4(STRANGER, HOST).tcp(50000, 80).build();
    let the_flow = FlowTuple {
        proto: 6,
        remote: IpAddr::V4(WEB),
        remote_port: 443,
        local: IpAddr::V4(HOST),
        local_port: 40001,
    };
    // The reasons first, so the figures are of the named classes.
    strict.maps.add_flows(&[the_flow])?;
    ensure!(
        strict.run(&reply)?.reason() == Some(Reason::Reply),
        "reply frame"
    );
    ensure!(
        strict.run(&denied)?.reason() == Some(Reason::Denied),
        "denied frame"
    );
    ensure!(
        guard.run(&reply)?.reason() == Some(Reason::Other),
        "guard frame"
    );
    let mut rows = Vec::new();
    for flows in [1usize, 100_000] {
        strict.maps.clear_flows()?;
        strict.maps.add_flows(&filler(flows - 1))?;
        strict.maps.add_flows(&[the_flow])?;
        ensure!(strict.maps.flow_count() == flows, "flow table of {flows}");
        for (class, frame, strict_verdict) in [
            ("reply", &reply, Verdict::Pass),
            ("denied", &denied, Verdict::Drop),
        ] {
            let (mut g, mut s) = (Vec::new(), Vec::new());
            // Interleaved: the VM's fast and slow phases hit both alike.
            for _ in 0..scale.samples * scale.rounds {
                g.push(timed(&guard, frame, Verdict::Pass, scale.repeat)?);
                s.push(timed(&strict, frame, strict_verdict, scale.repeat)?);
            }
            rows.push(Row {
                class,
                flows,
                guard: median(&g),
                strict: median(&s),
                over: median(&differences(&s, &g)),
            });
        }
    }
    // The egress program: guard mode (one array read), strict mode on a
    // known flow (lookup, rare timestamp write), and a frame with no flow
    // (ARP: parse only).
    let out_frame = Frame::ipv4(HOST, WEB).tcp(40001, 443).build();
    let arp = Frame::arp(HOST, WEB).build();
    let mut egress = Vec::new();
    guard.install(&Ruleset::default())?;
    for (class, runner, frame) in [
        ("guard mode (not learning)", &guard, &out_frame),
        ("strict, TCP of a known flow", &strict, &out_frame),
        ("strict, ARP (nothing to learn)", &strict, &arp),
    ] {
        let mut samples = Vec::new();
        for _ in 0..scale.samples * scale.rounds {
            let (action, ns) = runner.egress(frame, scale.repeat)?;
            ensure!(action == -1, "egress action {action}");
            samples.push(ns);
        }
        egress.push((class, median(&samples)));
    }
    Ok(StrictTier1 { rows, egress })
}

impl StrictTier1 {
    pub fn print(&self, out: &mut Report) {
        out.line("\nTier 1, strict mode: ns per packet, guard and strict on the same frame (medians of interleaved runs; strict - guard: median of each sample's own difference)");
        let rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| {
                let over = r.over;
                let limit = if r.class == "reply" {
                    REPLY_TARGET_NS
                } else {
                    DENIED_TARGET_NS
                };
                let target = format!("<= +{limit} ns: {}", verdict(over <= limit));
                vec![
                    r.class.into(),
                    r.flows.to_string(),
                    format!("{:.1}", r.guard),
                    format!("{:.1}", r.strict),
                    format!("{over:+.1}"),
                    target,
                ]
            })
            .collect();
        out.table(
            &[
                "class",
                "flows",
                "guard",
                "strict",
                "strict - guard",
                "target",
            ],
            &rows,
        );
        out.line("(reply: BPF_PROG_TEST_RUN repeats one frame, so after the first run its flow is in the CPU's reply cache, as the next packets of a flow are; a cache miss adds a FLOWS_V4 lookup)");
        out.line("Egress program (TC, BPF_PROG_TEST_RUN): ns per outbound packet");
        let rows: Vec<Vec<String>> = self
            .egress
            .iter()
            .map(|(c, ns)| vec![c.to_string(), format!("{ns:.1}")])
            .collect();
        out.table(&["outbound packet", "ns"], &rows);
    }

    pub fn to_json(&self) -> Value {
        json!({
            "rows": self.rows.iter().map(|r| json!({
                "class": r.class, "flows": r.flows, "guard_ns": r.guard,
                "strict_ns": r.strict, "over_guard_ns": r.over,
            })).collect::<Vec<_>>(),
            "egress": self.egress.iter().map(|(c, ns)| json!({"class": c, "ns": ns})).collect::<Vec<_>>(),
        })
    }
}
