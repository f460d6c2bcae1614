//! Tier 1, capture: what `sipwall capture` costs per packet. While no
//! capture runs, every judged packet pays the flag's load and branch: timed
//! alone as a helper program against the floor (an empty program). While
//! one runs, three tier-1 classes through the real program with sampling
//! off, on but not taken by the filter, taken but over the rate cap, and
//! sampled into the ring buffer (drained between runs). Interleaved runs,
//! medians.
use std::net::Ipv4Addr;

use anyhow::{ensure, Result};
use filter_common::capture::{CaptureFilter, CAPTURE_DROP, CAPTURE_IN, CAPTURE_OUT, CAPTURE_PASS};
use filter_kernel::runner::Runner;
use filter_policy::ruleset::Ruleset;
use serde_json::{json, Value};
use sipwall_tests::packet::Frame;

use crate::{
    progress,
    progs::{self, BenchProgs, CAPTURE_FLAG, PASS},
    report::{differences, median, Report},
    Scale,
};

const HOST: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const PROVIDER: Ipv4Addr = Ipv4Addr::new(44, 229, 228, 186);
const STRANGER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);

/// Samples a run may write: below the ring buffer's room (about 2,700).
const SAMPLED_REPEAT: u32 = 2_000;

struct Row {
    class: &'static str,
    off: f64,
    not_taken: f64,
    over_cap: f64,
    sampled: f64,
}

pub struct CaptureTier1 {
    /// The flag's check alone: helper program minus the floor.
    flag_ns: f64,
    rows: Vec<Row>,
}

fn filter(reasons: u32, per_cpu_rate: u32) -> CaptureFilter {
    CaptureFilter {
        on: 1,
        directions: CAPTURE_IN | CAPTURE_OUT,
        reasons,
        out_reasons: 0,
        verdicts: CAPTURE_DROP | CAPTURE_PASS,
        snaplen: 256,
        per_cpu_rate,
        reader_pid: 0,
        reader_start: 0,
    }
}

pub fn run(scale: Scale) -> Result<CaptureTier1> {
    progress("tier 1 capture: the flag while no capture runs, and a running capture's cost");
    let progs = BenchProgs::load()?;
    let (floor, flag) = (progs.xdp(PASS)?, progs.xdp(CAPTURE_FLAG)?);
    let probe = Frame::ipv4(STRANGER, HOST).udp(5060, 5060).build();
    let (mut floor_ns, mut flag_ns) = (Vec::new(), Vec::new());
    for _ in 0..scale.samples * 2 {
        floor_ns.push(progs::time(floor, &probe, scale.repeat)?.1);
        flag_ns.push(progs::time(flag, &probe, scale.repeat)?.1);
    }
    let flag_ns = median(&differences(&flag_ns, &floor_ns));

    let mut runner = Runner::new(&Ruleset::default())?;
    let mut capture = runner.capture_maps()?;
    let classes = [
        (
            "sip_allowed (provider, UDP 5060, 900 bytes)",
            Frame::ipv4(PROVIDER, HOST)
                .udp(5060, 5060)
                .payload(&[b'x'; 900])
                .build(),
        ),
        (
            "sip_denied (stranger, UDP 5060)",
            Frame::ipv4(STRANGER, HOST).udp(5060, 5060).build(),
        ),
        (
            "other (TCP to port 22)",
            Frame::ipv4(STRANGER, HOST).tcp(40000, 22).build(),
        ),
    ];
    let mut rows = Vec::new();
    for (class, frame) in classes {
        let (mut off, mut not_taken, mut over_cap, mut sampled) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..scale.samples {
            capture.set_filter(&CaptureFilter::default())?;
            off.push(runner.time(&frame, scale.repeat)?.1);
            capture.set_filter(&filter(0, u32::MAX))?;
            not_taken.push(runner.time(&frame, scale.repeat)?.1);
            capture.set_filter(&filter(u32::MAX, 0))?;
            capture.reset_stats()?;
            over_cap.push(runner.time(&frame, scale.repeat)?.1);
            capture.set_filter(&filter(u32::MAX, u32::MAX))?;
            capture.reset_stats()?;
            while capture.next_sample().is_some() {}
            sampled.push(runner.time(&frame, SAMPLED_REPEAT)?.1);
            let stats = capture.stats()?;
            ensure!(
                stats.written == u64::from(SAMPLED_REPEAT) && stats.lost == 0,
                "{class}: sampling wrote {} of {SAMPLED_REPEAT} ({} lost)",
                stats.written,
                stats.lost
            );
        }
        capture.set_filter(&CaptureFilter::default())?;
        while capture.next_sample().is_some() {}
        rows.push(Row {
            class,
            off: median(&off),
            not_taken: median(&not_taken),
            over_cap: median(&over_cap),
            sampled: median(&sampled),
        });
    }
    Ok(CaptureTier1 { flag_ns, rows })
}

impl CaptureTier1 {
    pub fn print(&self, out: &mut Report) {
        out.line(format!(
            "\nTier 1, capture: while no capture runs a packet pays the flag's load and branch: {:.2} ns (helper program against the floor; target <= 1 ns: {})",
            self.flag_ns,
            crate::report::verdict(self.flag_ns <= 1.0)
        ));
        out.line("While a capture runs (ns per packet, medians; sampled: 256 bytes into the ring buffer):");
        let rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| {
                vec![
                    r.class.into(),
                    format!("{:.1}", r.off),
                    format!("{:+.1}", r.not_taken - r.off),
                    format!("{:+.1}", r.over_cap - r.off),
                    format!("{:+.1}", r.sampled - r.off),
                ]
            })
            .collect();
        out.table(
            &["packet", "off", "not taken", "over the cap", "sampled"],
            &rows,
        );
    }

    pub fn to_json(&self) -> Value {
        json!({
            "flag_ns": self.flag_ns,
            "rows": self.rows.iter().map(|r| json!({
                "class": r.class, "off_ns": r.off, "not_taken_ns": r.not_taken,
                "over_cap_ns": r.over_cap, "sampled_ns": r.sampled,
            })).collect::<Vec<_>>(),
        })
    }
}
