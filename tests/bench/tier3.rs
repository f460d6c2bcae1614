//! Tier 3: the allowlist as it changes, on a filter attached in the lab
//! the way `sipwall attach` does it. Updates go through
//! `sipwall::ops::allowlist::apply`, the code behind `sipwall allow add|del|replace`
//! (lock, open the pins, read, install a new generation): the latency an
//! operator sees, less process start-up and file parsing.
//!
//! Then the swap is put under load: while live frames flood the PBX with
//! SIP from an allowlisted source, the allowlist is replaced again and
//! again with two sets that both allow that source (by different
//! prefixes). Not one packet of the flood may be denied.
use std::{
    net::{IpAddr, Ipv4Addr},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{ensure, Context as _, Result};
use filter_common::Reason;
use filter_kernel::pins::PinRoot;
use ipnet::IpNet;
use serde_json::{json, Value};
use sipwall::ops::allowlist::{self as allow, Change};
use sipwall_lab::{PBX_IFACE, PROVIDER};

use crate::{
    allowlists::allowlist,
    progress,
    progs::GEN_SAME,
    receivers::{self, Installed, Receiver},
    report::{median, verdict, Report},
    testbed::{check_stop, Testbed},
    Scale,
};

/// Entries of the big replace.
const BIG: usize = 10_000;
/// Entries of each of the two sets swapped under the flood.
const FLOOD_SET: usize = 1_000;
/// Samples of each latency.
const SAMPLES: usize = 7;
/// Frames per live-frames call of the flood.
const CHUNK: u32 = 100_000;

/// One latency figure: milliseconds per operation.
struct Latency {
    name: String,
    key: &'static str,
    samples_ms: Vec<f64>,
}

struct Flood {
    replaces: usize,
    frames: u64,
    /// Frames the veth dropped before sipwall saw them.
    lost: u64,
    allowed: u64,
    denied: u64,
    replace_ms: Vec<f64>,
    seconds: f64,
}

pub struct Tier3 {
    latencies: Vec<Latency>,
    flood: Result<Flood, String>,
}

pub fn run(bed: &Testbed, scale: Scale) -> Result<Tier3> {
    check_stop()?;
    progress("tier 3: attaching sipwall (native) in the lab");
    let installed = receivers::install(bed, Receiver::SipwallNative)?;
    let root = PinRoot::new(&bed.bpffs());
    let apply = |change: Change| -> Result<Duration> {
        let started = Instant::now();
        allow::apply(&root, PBX_IFACE, change, false).context("changing the allowlist")?;
        Ok(started.elapsed())
    };
    let extra = IpNet::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)), 32)?;
    let mut latencies = Vec::new();

    // What every change waits for at least: one RCU grace period (see
    // sipwall's rcu.rs), measured alone on the same machine and load.
    progress("tier 3: the RCU grace period alone");
    let mut grace = Vec::new();
    for _ in 0..SAMPLES {
        let started = Instant::now();
        filter_kernel::rcu::wait_for_running_programs()
            .context("waiting for an RCU grace period")?;
        grace.push(ms(started.elapsed()));
    }
    latencies.push(Latency {
        name: "RCU grace period alone (every change waits one)".into(),
        key: "rcu_grace_period",
        samples_ms: grace,
    });

    progress("tier 3: add/del of one entry, list of 2");
    let (add, del) = add_del(&apply, extra)?;
    latencies.push(Latency {
        name: "add one entry (list of 2)".into(),
        key: "add_one_of_2",
        samples_ms: add,
    });
    latencies.push(Latency {
        name: "del one entry (list of 2)".into(),
        key: "del_one_of_2",
        samples_ms: del,
    });

    progress(format!("tier 3: replace of {BIG} entries"));
    let sets = [allowlist(BIG, 31), allowlist(BIG, 32)];
    let mut replace = Vec::new();
    apply(Change::Replace(sets[1].clone()))?;
    for i in 0..SAMPLES {
        check_stop()?;
        replace.push(ms(apply(Change::Replace(sets[i % 2].clone()))?));
    }
    latencies.push(Latency {
        name: format!("replace, {BIG} entries"),
        key: "replace_10000",
        samples_ms: replace,
    });

    progress(format!("tier 3: add/del of one entry, list of {BIG}"));
    let (add, del) = add_del(&apply, extra)?;
    latencies.push(Latency {
        name: format!("add one entry (list of {BIG})"),
        key: "add_one_of_10000",
        samples_ms: add,
    });
    latencies.push(Latency {
        name: format!("del one entry (list of {BIG})"),
        key: "del_one_of_10000",
        samples_ms: del,
    });

    let flood = match bed.generator() {
        Ok(_) => Ok(flood(bed, &installed, &apply, scale.replaces)?),
        Err(why) => {
            progress(format!("tier 3: flood under replaces skipped: {why}"));
            Err(why)
        }
    };
    installed.remove(bed)?;
    Ok(Tier3 { latencies, flood })
}

/// Adds `net`, then deletes it, `SAMPLES` times; the latencies of each.
fn add_del(
    apply: &impl Fn(Change) -> Result<Duration>,
    net: IpNet,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let (mut add, mut del) = (Vec::new(), Vec::new());
    for _ in 0..SAMPLES {
        check_stop()?;
        add.push(ms(apply(Change::Add(vec![net]))?));
        del.push(ms(apply(Change::Del(vec![net]))?));
    }
    Ok((add, del))
}

fn flood(
    bed: &Testbed,
    installed: &Installed,
    apply: &(impl Fn(Change) -> Result<Duration> + Sync),
    replaces: usize,
) -> Result<Flood> {
    let source = PROVIDER[0];
    // Two sets that allow the source by different prefixes (/32 and /24),
    // so each swap also changes how the lookup finds it.
    let a = allowlist(FLOOD_SET, 41);
    let by_24 = IpNet::new(IpAddr::V4(source), 24)?.trunc();
    let by_32 = IpNet::new(IpAddr::V4(source), 32)?;
    let mut b: Vec<IpNet> = allowlist(FLOOD_SET, 42)
        .into_iter()
        .filter(|n| *n != by_32)
        .collect();
    b.push(by_24);
    apply(Change::Replace(a.clone()))?;
    let frame = bed.sip_frame(source, 60);
    progress(format!(
        "tier 3: flood of allowlisted SIP from {source} while the allowlist is replaced {replaces} times ({FLOOD_SET} entries each)"
    ));
    let before = installed.snapshot(bed)?;
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let (sent, replace_ms) = std::thread::scope(|s| -> Result<(u64, Vec<f64>)> {
        let sender = s.spawn(|| -> Result<u64> {
            let mut sent = 0u64;
            while !stop.load(Ordering::SeqCst) {
                bed.send(GEN_SAME, &frame, CHUNK)?;
                sent += u64::from(CHUNK);
            }
            Ok(sent)
        });
        let swaps = (|| -> Result<Vec<f64>> {
            let mut times = Vec::with_capacity(replaces);
            for i in 0..replaces {
                if i % 100 == 0 {
                    check_stop()?;
                }
                let set = if i % 2 == 0 { &b } else { &a };
                times.push(ms(apply(Change::Replace(set.clone()))?));
            }
            Ok(times)
        })();
        stop.store(true, Ordering::SeqCst);
        let sent = sender
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))?;
        Ok((sent, swaps?))
    })?;
    let seconds = started.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(20));
    let after = installed.snapshot(bed)?;
    let seen = receivers::seen(&before, &after);
    let allowed = seen.get(Reason::SipAllowed.name());
    let denied = seen.get(Reason::SipDenied.name());
    // What else arrived (ARP, neighbour discovery) is counted under other
    // reasons; every flood frame that arrived must be counted as SIP.
    let arrived = seen.rx - (seen.judged_total() - allowed - denied);
    ensure!(
        seen.judged_total() == seen.rx && allowed + denied == arrived && arrived <= sent,
        "flood under replaces: {sent} SIP frames sent, {} frames arrived, sipwall counted {:?}",
        seen.rx,
        seen.judged
    );
    Ok(Flood {
        replaces,
        frames: sent,
        lost: sent - arrived,
        allowed,
        denied,
        replace_ms,
        seconds,
    })
}

/// Issue 9's targets, ms: a change costs what it changes.
fn target_ms(key: &str) -> Option<f64> {
    match key {
        "add_one_of_10000" | "del_one_of_10000" => Some(30.0),
        "replace_10000" => Some(50.0),
        _ => None,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl Tier3 {
    pub fn print(&self, out: &mut Report) {
        out.line("");
        out.line(format!(
            "Tier 3 — the allowlist as it changes (sipwall::ops::allowlist::apply, the path of `sipwall allow`), ms, median of {SAMPLES}"
        ));
        let mut rows: Vec<Vec<String>> = self
            .latencies
            .iter()
            .map(|l| {
                let m = median(&l.samples_ms);
                match target_ms(l.key) {
                    Some(t) => vec![
                        l.name.clone(),
                        format!("{m:.2}"),
                        format!("<= {t:.0}"),
                        verdict(m <= t).to_string(),
                    ],
                    None => vec![
                        l.name.clone(),
                        format!("{m:.2}"),
                        String::new(),
                        String::new(),
                    ],
                }
            })
            .collect();
        if let Ok(f) = &self.flood {
            rows.push(vec![
                format!(
                    "replace, {FLOOD_SET} entries (under the flood, median of {})",
                    f.replaces
                ),
                format!("{:.2}", median(&f.replace_ms)),
                String::new(),
                String::new(),
            ]);
        }
        out.table(&["operation", "ms", "target", ""], &rows);
        match &self.flood {
            Ok(f) => {
                out.line("");
                out.table(
                    &["flood under replaces", "figure", "target", ""],
                    &[
                        vec![
                            format!(
                                "{} replaces in {:.1} s, SIP frames from an allowlisted source",
                                f.replaces, f.seconds
                            ),
                            f.frames.to_string(),
                            String::new(),
                            String::new(),
                        ],
                        vec![
                            "lost on the veth before sipwall".into(),
                            f.lost.to_string(),
                            String::new(),
                            String::new(),
                        ],
                        vec![
                            "counted sip_allowed".into(),
                            f.allowed.to_string(),
                            (f.frames - f.lost).to_string(),
                            verdict(f.allowed == f.frames - f.lost).into(),
                        ],
                        vec![
                            "counted sip_denied".into(),
                            f.denied.to_string(),
                            "0".into(),
                            verdict(f.denied == 0).into(),
                        ],
                    ],
                );
            }
            Err(why) => out.line(format!("flood under replaces skipped: {why}")),
        }
    }

    pub fn to_json(&self) -> Value {
        let mut lat = serde_json::Map::new();
        for l in &self.latencies {
            lat.insert(
                l.key.into(),
                json!({ "description": l.name, "median_ms": median(&l.samples_ms), "samples_ms": l.samples_ms, "target_ms": target_ms(l.key) }),
            );
        }
        let flood = match &self.flood {
            Ok(f) => json!({
                "replaces": f.replaces,
                "set_entries": FLOOD_SET,
                "seconds": f.seconds,
                "frames": f.frames,
                "lost_on_veth": f.lost,
                "sip_allowed": f.allowed,
                "sip_denied": f.denied,
                "target_sip_denied": 0,
                "replace_median_ms": median(&f.replace_ms),
            }),
            Err(why) => json!({ "skipped": why }),
        };
        json!({ "latency": lat, "flood_under_replaces": flood })
    }
}
