//! Tier 1, strict egress: what the TC egress program costs per outbound
//! packet, by class (BPF_PROG_TEST_RUN on TC), against the same program
//! with egress open (it reads the policy and hands the packet on) on the
//! same frame. Runs interleaved, medians. The last row enforces and learns
//! at once (strict ingress and egress).
use std::net::Ipv4Addr;

use std::os::fd::AsFd as _;

use anyhow::{ensure, Result};
use filter_common::OutReason;
use filter_kernel::runner::Runner;
use filter_policy::{
    config,
    ruleset::{Mode, Ruleset},
};
use serde_json::{json, Value};
use sipwall_tests::packet::Frame;

use crate::{
    progress,
    report::{differences, median, verdict, Report},
    size::{self, COMPLEXITY_GATE},
    Scale, LOADS,
};

const HOST: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const PROVIDER: Ipv4Addr = Ipv4Addr::new(44, 229, 228, 186);
const STRANGER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);
const WEB: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 50);

/// A strict egress configuration of realistic size: an SSH rule inbound,
/// two resolvers, a few outbound rules (the web server's is the last).
const CONFIG: &str = r#"
[media]
rtp_ports = "10000-20000"

[[strict.allow]]
proto = "tcp"
ports = [22]
from = ["198.51.100.0/24"]

[egress]
mode = "strict"
dns = ["203.0.113.53", "203.0.113.54"]

[[egress.allow]]
proto = "udp"
ports = [123]
to = ["192.0.2.123"]

[[egress.allow]]
proto = "tcp"
ports = [80, 443]
to = ["198.51.100.80/32", "203.0.113.50/32"]
"#;

/// Strict egress's target over open egress on the same frame, every row.
const TARGET_NS: f64 = 15.0;

/// A DNS query's size (header, a name of 13 bytes, type and class): the
/// frames carry payloads of their real size, so that the egress program
/// takes the path real packets take (frames shorter than Ethernet, IPv4
/// and a TCP header's 54 bytes take the general parse).
const DNS_QUERY: [u8; 29] = [0; 29];

struct Row {
    class: &'static str,
    open: f64,
    strict: f64,
    /// Median of each sample's own strict - open.
    over: f64,
    /// `--candidate`'s build in strict egress, minus this build: the
    /// median of each sample's own difference.
    candidate: Option<f64>,
}

pub struct EgressTier1 {
    rows: Vec<Row>,
    /// Instructions the verifier processed for the TC egress program.
    verified_insns: u32,
}

fn timed(runner: &Runner, frame: &[u8], action: i32, repeat: u32) -> Result<f64> {
    let (got, ns) = runner.egress(frame, repeat)?;
    ensure!(
        got == action,
        "bench frame got TC action {got}, not {action}"
    );
    Ok(ns)
}

/// `candidate`: another build of the XDP object, timed beside this one in
/// every sample.
pub fn run(scale: Scale, candidate: Option<&[u8]>) -> Result<EgressTier1> {
    progress("tier 1 egress: strict egress per outbound packet against open egress");
    let strict_rules = config::parse(CONFIG, "bench egress").map_err(|e| anyhow::anyhow!("{e}"))?;
    let open_rules = Ruleset {
        egress: Default::default(),
        ..strict_rules.clone()
    };
    let both_rules = Ruleset {
        mode: Mode::Strict,
        ..strict_rules.clone()
    };
    // Every program loaded `LOADS` times, the samples taking the copies in
    // turn (see `LOADS`).
    let loads = |rules: &Ruleset| -> Result<Vec<Runner>> {
        (0..LOADS).map(|_| Runner::new(rules)).collect()
    };
    let open = loads(&open_rules)?;
    let strict = loads(&strict_rules)?;
    let both = loads(&both_rules)?;
    let candidates = match candidate {
        Some(object) => {
            let loads = |rules: &Ruleset| -> Result<Vec<Runner>> {
                (0..LOADS)
                    .map(|_| Runner::with_object(object, rules))
                    .collect()
            };
            Some((loads(&strict_rules)?, loads(&both_rules)?))
        }
        None => None,
    };
    let rtp = Frame::ipv4(HOST, STRANGER)
        .udp(10000, 40000)
        .payload(&[0x80; 172])
        .build();
    // Each row's runner: strict egress alone, or with strict ingress.
    let classes: Vec<(&'static str, bool, Vec<u8>, OutReason)> = vec![
        (
            "out_sip_allowed (INVITE to the provider)",
            false,
            Frame::ipv4(HOST, PROVIDER)
                .udp(5060, 5060)
                .payload(&[b'x'; 900])
                .build(),
            OutReason::SipAllowed,
        ),
        (
            "out_sip_denied (SIP elsewhere)",
            false,
            Frame::ipv4(HOST, STRANGER)
                .udp(5060, 5060)
                .payload(&[b'x'; 900])
                .build(),
            OutReason::SipDenied,
        ),
        (
            "out_rtp_allowed (RTP, 172 bytes)",
            false,
            rtp.clone(),
            OutReason::RtpAllowed,
        ),
        (
            "out_reply (SSH answer: inbound rule turned around)",
            false,
            Frame::ipv4(HOST, Ipv4Addr::new(198, 51, 100, 7))
                .tcp(22, 50000)
                .build(),
            OutReason::Reply,
        ),
        (
            "out_essential (DNS to the second resolver)",
            false,
            Frame::ipv4(HOST, Ipv4Addr::new(203, 0, 113, 54))
                .udp(33333, 53)
                .payload(&DNS_QUERY)
                .build(),
            OutReason::Essential,
        ),
        (
            "out_rule_allowed (HTTPS, the last rule)",
            false,
            Frame::ipv4(HOST, WEB).tcp(40000, 443).build(),
            OutReason::RuleAllowed,
        ),
        (
            "out_denied (every table walked)",
            false,
            Frame::ipv4(HOST, STRANGER).tcp(40000, 8443).build(),
            OutReason::Denied,
        ),
        (
            "out_rtp_allowed, strict ingress too (learns the flow)",
            true,
            rtp,
            OutReason::RtpAllowed,
        ),
    ];
    let mut rows = Vec::new();
    for (class, learning, frame, reason) in classes {
        let runners = if learning { &both } else { &strict };
        let candidate = candidates
            .as_ref()
            .map(|(strict, both)| if learning { both } else { strict });
        let got = runners[0].run_out(&frame)?;
        ensure!(
            got.reason() == Some(reason),
            "{class}: counted {:?}",
            got.moved
        );
        let action = if reason.drops() { 2 } else { -1 };
        let (mut o, mut s, mut c) = (Vec::new(), Vec::new(), Vec::new());
        // Interleaved: the VM's fast and slow phases hit both alike.
        for sample in 0..scale.samples * scale.rounds {
            let copy = sample % LOADS;
            o.push(timed(&open[copy], &frame, -1, scale.repeat)?);
            s.push(timed(&runners[copy], &frame, action, scale.repeat)?);
            if let Some(candidate) = candidate {
                c.push(timed(&candidate[copy], &frame, action, scale.repeat)?);
            }
        }
        rows.push(Row {
            class,
            open: median(&o),
            strict: median(&s),
            over: median(&differences(&s, &o)),
            candidate: candidate.map(|_| median(&differences(&c, &s))),
        });
    }
    let verified_insns = {
        let ebpf = filter_kernel::program::load(None)?;
        let prog = filter_kernel::program::egress(&ebpf)?;
        size::verified_insns(prog.fd()?.as_fd())?
    };
    Ok(EgressTier1 {
        rows,
        verified_insns,
    })
}

impl EgressTier1 {
    pub fn print(&self, out: &mut Report) {
        out.line("\nTier 1, strict egress (TC, BPF_PROG_TEST_RUN): ns per outbound packet, open and strict egress on the same frame (medians of interleaved runs; strict - open: median of each sample's own difference)");
        let rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| {
                let mut row = vec![
                    r.class.into(),
                    format!("{:.1}", r.open),
                    format!("{:.1}", r.strict),
                    format!("{:+.1}", r.over),
                    format!("<= +{TARGET_NS} ns: {}", verdict(r.over <= TARGET_NS)),
                ];
                row.extend(r.candidate.map(|c| format!("{c:+.1}")));
                row
            })
            .collect();
        let mut header = vec![
            "outbound packet",
            "open",
            "strict",
            "strict - open",
            "target",
        ];
        if self.rows.iter().any(|r| r.candidate.is_some()) {
            header.push("candidate - strict");
        }
        out.table(&header, &rows);
        out.line(format!(
            "(the TC egress program: {} instructions processed by the verifier; complexity gate < {COMPLEXITY_GATE}: {})",
            self.verified_insns,
            verdict(self.verified_insns < COMPLEXITY_GATE)
        ));
    }

    pub fn to_json(&self) -> Value {
        json!({
            "rows": self.rows.iter().map(|r| json!({
                "class": r.class, "open_ns": r.open, "strict_ns": r.strict,
                "over_open_ns": r.over, "candidate_over_strict_ns": r.candidate,
            })).collect::<Vec<_>>(),
            "target_over_open_ns": TARGET_NS,
            "verified_insns": self.verified_insns,
        })
    }
}
