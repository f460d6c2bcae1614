//! `cargo xtask bench`: what sipwall costs, measured side by side in one run.
//!
//! - Tier 1: the program's own cost per packet class (BPF_PROG_TEST_RUN)
//!   against an empty XDP program, at three allowlist sizes; SIP denied
//!   again as a flood from many sources; strict mode
//!   against guard; the TC egress program per outbound packet, strict
//!   egress against open; the capture flag while no capture runs, and a
//!   running capture's cost.
//! - Tier 2: packets per second through network namespaces and a veth, with
//!   traffic from XDP live frames (or AF_PACKET where those are refused),
//!   against no filter, nftables and XDP_DROP;
//!   then the time each XDP receiver spends per packet inside its program
//!   in the SIP flood, by the kernel's run-time statistics.
//! - Tier 3: allowlist update latency, and replaces under a flood.
//! - Tier 4: the abuse controls' cost per packet (rate limits, RTP check,
//!   ban lookups at 1 and 100,000 bans) against the same packet with the
//!   control idle.
//!
//! Prints a table (figures beside their targets) and writes JSON. Not a
//! test: nothing fails on time, but counters that disagree with the packets
//! sent abort the run, since the figure would be meaningless.
//!
//! Usage: `bench [--tiers 1,2,3,4] [--tables main,flood,...] [--quick] [--json PATH]
//! [--before OBJECT] [--candidate OBJECT] [--af-packet]` (`--tables`: only
//! these of tiers 1 and 2's tables, see [`TABLES`]; `--candidate`: another
//! build of the XDP object, timed beside this one in tier 1's strict egress
//! table and tier 2's time inside the program, interleaved: the bench's
//! A/B of a change; `--before`: another build of the XDP object, whose size
//! figures tier 1 reports as "before" instead of the recorded ones;
//! `--af-packet`: tiers 2 and 3 send through AF_PACKET, as they do by
//! themselves where the kernel refuses XDP live frames).
mod abuse;
mod allowlists;
mod capture;
mod egress;
mod flood;
mod in_program;
mod media;
mod packet_gen;
mod progs;
mod receivers;
mod report;
mod size;
mod strict;
mod testbed;
mod tier1;
mod tier2;
mod tier3;

use std::{
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{bail, Context as _, Result};
use serde_json::json;

/// How much work each measurement does; `--quick` is for trying the bench
/// out, not for figures.
#[derive(Clone, Copy)]
pub struct Scale {
    /// BPF_PROG_TEST_RUN repeat of one tier-1 sample.
    pub repeat: u32,
    /// Samples per tier-1 figure (the median is reported).
    pub samples: usize,
    /// Rounds over all receivers in tier 2.
    pub rounds: usize,
    /// Seconds one tier-2 sample should last.
    pub seconds: f64,
    /// Replaces during the tier-3 flood.
    pub replaces: usize,
}

/// Loads of each program the tables with the tightest targets (strict
/// egress, range mode against its build without calls mode) take in turn,
/// sample by sample: where the kernel puts a program's compiled code moves
/// its time by 1-3 ns from one load to the next (one object read +0.5 and
/// +3.5 ns over another in two runs), as much as those targets' margins.
pub const LOADS: usize = 3;

const FULL: Scale = Scale {
    repeat: 1_000_000,
    samples: 7,
    rounds: 9,
    seconds: 0.6,
    replaces: 1_000,
};

const QUICK: Scale = Scale {
    repeat: 100_000,
    samples: 3,
    rounds: 1,
    seconds: 0.1,
    replaces: 100,
};

/// Prints a progress line on stderr.
pub fn progress(msg: impl std::fmt::Display) {
    eprintln!("bench: {msg}");
}

/// Tiers 1 and 2's tables, by the names `--tables` takes, in the order
/// they run (`rates` and `in-program` are tier 2's).
const TABLES: [&str; 8] = [
    "main",
    "flood",
    "strict",
    "egress",
    "capture",
    "media",
    "rates",
    "in-program",
];

struct Args {
    tiers: Vec<u8>,
    /// Tiers 1 and 2's tables to run (all by default).
    tables: Vec<String>,
    /// `--candidate`'s object.
    candidate: Option<Vec<u8>>,
    scale: Scale,
    json: PathBuf,
    before: Option<PathBuf>,
    af_packet: bool,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        tiers: vec![1, 2, 3, 4],
        tables: TABLES.iter().map(|t| t.to_string()).collect(),
        candidate: None,
        scale: FULL,
        // The workspace's target/, whatever CARGO_TARGET_DIR says.
        json: Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap_or(Path::new("."))
            .join("target/bench.json"),
        before: None,
        af_packet: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => args.scale = QUICK,
            "--tiers" => {
                let list = it.next().context("--tiers needs a list such as 1,3")?;
                args.tiers = list
                    .split(',')
                    .map(|t| t.trim().parse().with_context(|| format!("bad tier {t:?}")))
                    .collect::<Result<_>>()?;
            }
            "--tables" => {
                let list = it
                    .next()
                    .context("--tables needs a list such as egress,flood")?;
                args.tables = list.split(',').map(|t| t.trim().to_string()).collect();
                if let Some(bad) = args.tables.iter().find(|t| !TABLES.contains(&t.as_str())) {
                    bail!("unknown table {bad:?}: one of {}", TABLES.join(", "));
                }
            }
            "--json" => args.json = it.next().context("--json needs a path")?.into(),
            "--af-packet" => args.af_packet = true,
            "--candidate" => {
                let path = it.next().context("--candidate needs an object")?;
                args.candidate = Some(
                    std::fs::read(&path).with_context(|| format!("reading --candidate {path}"))?,
                );
            }
            "--before" => args.before = Some(it.next().context("--before needs an object")?.into()),
            "-h" | "--help" => {
                println!(
                    "usage: bench [--tiers 1,2,3,4] [--tables {}] [--quick] [--json PATH] [--before OBJECT] [--candidate OBJECT] [--af-packet]",
                    TABLES.join(",")
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    Ok(args)
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let root = sipwall_tests::is_root();
    sipwall_lab::stop_on_signals();
    let started = Instant::now();
    let mut out = report::Report::new();
    let env = environment();
    out.line(format!(
        "sipwall benchmarks — {} CPUs, kernel {}, {}",
        env["cpus"],
        env["kernel"].as_str().unwrap_or("?"),
        env["cpu"].as_str().unwrap_or("?")
    ));
    let mut json = serde_json::Map::new();
    json.insert("environment".into(), env);
    let wanted = |name: &str| args.tables.iter().any(|t| t == name);
    let table = |name: &str| args.tiers.contains(&1) && wanted(name);
    if table("main") {
        let t1 = tier1::run(args.scale, args.before.as_deref()).context(
            "tier 1 loads XDP programs, which needs CAP_BPF and CAP_NET_ADMIN: run the bench as root",
        )?;
        t1.print(&mut out);
        json.insert("tier1".into(), t1.to_json());
    }
    if table("flood") {
        let flood = flood::run(args.scale)?;
        flood.print(&mut out);
        json.insert("tier1_flood".into(), flood.to_json());
    }
    if table("strict") {
        let strict = strict::run(args.scale)?;
        strict.print(&mut out);
        json.insert("tier1_strict".into(), strict.to_json());
    }
    if table("egress") {
        let egress = egress::run(args.scale, args.candidate.as_deref())?;
        egress.print(&mut out);
        json.insert("tier1_egress".into(), egress.to_json());
    }
    if table("capture") {
        let capture = capture::run(args.scale)?;
        capture.print(&mut out);
        json.insert("tier1_capture".into(), capture.to_json());
    }
    if table("media") {
        let media = media::run(args.scale)?;
        media.print(&mut out);
        json.insert("tier1_media".into(), media.to_json());
    }
    if args.tiers.contains(&4) {
        let t4 = abuse::run(args.scale).context(
            "tier 4 loads XDP programs, which needs CAP_BPF and CAP_NET_ADMIN: run the bench as root",
        )?;
        t4.print(&mut out);
        json.insert("tier4".into(), t4.to_json());
    }
    let lab_tiers: Vec<u8> = [2, 3]
        .into_iter()
        .filter(|t| args.tiers.contains(t))
        .collect();
    if !lab_tiers.is_empty() && !root {
        for t in lab_tiers {
            let msg = format!("tier {t} skipped: it builds network namespaces, which needs root");
            progress(&msg);
            out.line(format!("\n{msg}"));
            json.insert(format!("tier{t}"), json!({ "skipped": msg }));
        }
    } else if !lab_tiers.is_empty() {
        let bench_lab = testbed::Testbed::new(args.af_packet)?;
        if args.tiers.contains(&2) {
            match bench_lab.generator() {
                Ok(how) => {
                    progress(format!("tier 2: frames from {how}"));
                    let t2 = if wanted("rates") {
                        Some(tier2::run(&bench_lab, args.scale, how)?)
                    } else {
                        None
                    };
                    if let Some(t2) = &t2 {
                        t2.print(&mut out);
                        json.insert("tier2".into(), t2.to_json());
                    }
                    if wanted("in-program") {
                        let inside = in_program::run(
                            &bench_lab,
                            args.scale,
                            t2.as_ref(),
                            args.candidate.as_deref(),
                        )?;
                        inside.print(&mut out);
                        json.insert("tier2_in_program".into(), inside.to_json());
                    }
                }
                Err(why) => {
                    let msg = format!("tier 2 skipped: {why}");
                    progress(&msg);
                    out.line(format!("\n{msg}"));
                    json.insert("tier2".into(), json!({ "skipped": why }));
                }
            }
        }
        if args.tiers.contains(&3) {
            let t3 = tier3::run(&bench_lab, args.scale)?;
            t3.print(&mut out);
            json.insert("tier3".into(), t3.to_json());
        }
    }
    let secs = started.elapsed().as_secs_f64();
    json.insert("seconds".into(), json!(secs));
    out.line(format!("\n(total {secs:.0} s)"));
    print!("{}", out.text());
    if let Some(dir) = args.json.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&args.json, serde_json::to_string_pretty(&json)? + "\n")
        .with_context(|| format!("writing {}", args.json.display()))?;
    progress(format!("figures written to {}", args.json.display()));
    Ok(())
}

/// What the figures were measured on.
fn environment() -> serde_json::Value {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    json!({ "kernel": kernel.trim(), "cpu": cpu, "cpus": cpus })
}
