//! Counters for people and programs: the `stats` table and JSON, per-second
//! rates for `--watch`, and the denied sources of `top`.
use std::{fmt::Write as _, net::IpAddr};

use filter_common::{Counter, OutReason, Reason};
use filter_kernel::maps::CounterSet;

use super::{
    counters::{self, Counters},
    json,
    snapshot::Snapshot,
};

/// What `stats` shows of a snapshot: its counters, and whether it drops.
fn readings(s: &Snapshot) -> (CounterSet, bool) {
    (
        s.counters.unwrap_or_default(),
        s.ruleset.as_ref().is_some_and(|r| r.dry_run),
    )
}

pub fn to_json(all: &[Snapshot]) -> json::Stats {
    let interfaces = all
        .iter()
        .map(|i| {
            let (now, dry_run) = readings(i);
            json::StatsInterface {
                iface: i.iface.clone(),
                mode: i.mode.into(),
                dry_run,
                counters: Counters(now),
                egress: json::EgressCounters {
                    mode: egress_mode(i).into(),
                    counters: Counters(i.out_counters.unwrap_or_default()),
                },
            }
        })
        .collect();
    json::Stats { interfaces }
}

/// `[egress] mode` of a snapshot ("open" when it could not be read).
fn egress_mode(s: &Snapshot) -> &'static str {
    s.ruleset.as_ref().map_or("open", |r| r.egress.mode.name())
}

/// The human table; with `rates` (previous counters and seconds elapsed),
/// per-second columns too.
pub fn to_text(all: &[Snapshot], rates: Option<(&[Snapshot], f64)>) -> String {
    let mut out = String::new();
    for (n, i) in all.iter().enumerate() {
        let (now, dry_run) = readings(i);
        let _ = writeln!(
            out,
            "{} ({} mode{})",
            i.iface,
            i.mode,
            if dry_run {
                ", DRY RUN: nothing is dropped"
            } else {
                ""
            }
        );
        let _ = write!(
            out,
            "  {:<16} {:>7} {:>14} {:>16}",
            "reason", "verdict", "packets", "bytes"
        );
        if rates.is_some() {
            let _ = write!(out, " {:>12} {:>14}", "packets/s", "bytes/s");
        }
        out.push('\n');
        let prev = rates.map(|(prev, secs)| (prev.get(n), secs));
        let before = prev.map(|(p, secs)| (p.map(|p| readings(p).0).unwrap_or_default(), secs));
        counters::rows::<Reason>(&mut out, &now, before, dry_run);
        // The egress program's table, when it judges (strict egress) or
        // has judged since the counters began.
        let out_now = i.out_counters.unwrap_or_default();
        if egress_mode(i) == "strict" || out_now.iter().any(|c| c.packets != 0) {
            let _ = writeln!(out, "  outgoing ({} egress)", egress_mode(i));
            let before =
                prev.map(|(p, secs)| (p.and_then(|p| p.out_counters).unwrap_or_default(), secs));
            counters::rows::<OutReason>(&mut out, &out_now, before, dry_run);
        }
    }
    out
}

/// `top --json`: the sources of `reason`'s drops.
pub fn top_json(reason: Reason, sources: &[(IpAddr, Counter)]) -> json::Top {
    json::Top {
        sources: sources
            .iter()
            .map(|(a, c)| json::TopSource {
                addr: a.to_string(),
                packets: c.packets,
                bytes: c.bytes,
                packets_per_s: None,
                bytes_per_s: None,
            })
            .collect(),
        reason: reason.name().into(),
    }
}

/// A source of `top --watch`: its counters and its per-second rates
/// (packets, bytes) since the previous reading.
pub type SourceRate = (IpAddr, Counter, f64, f64);

/// Each source's rates since `prev` (read `secs` ago; a source not in it
/// counts from zero), fastest first, then most packets.
pub fn top_rates(
    now: &[(IpAddr, Counter)],
    prev: &[(IpAddr, Counter)],
    secs: f64,
) -> Vec<SourceRate> {
    let before: std::collections::HashMap<IpAddr, Counter> = prev.iter().copied().collect();
    let per_s = |now: u64, then: u64| now.saturating_sub(then) as f64 / secs.max(1e-9);
    let mut out: Vec<SourceRate> = now
        .iter()
        .map(|&(a, c)| {
            let b = before.get(&a).copied().unwrap_or_default();
            (a, c, per_s(c.packets, b.packets), per_s(c.bytes, b.bytes))
        })
        .collect();
    out.sort_by(|x, y| {
        y.2.total_cmp(&x.2)
            .then(y.1.packets.cmp(&x.1.packets))
            .then(x.0.cmp(&y.0))
    });
    out
}

pub fn top_rates_json(reason: Reason, sources: &[SourceRate]) -> json::Top {
    json::Top {
        sources: sources
            .iter()
            .map(|(a, c, pps, bps)| json::TopSource {
                addr: a.to_string(),
                packets: c.packets,
                bytes: c.bytes,
                packets_per_s: Some(*pps),
                bytes_per_s: Some(*bps),
            })
            .collect(),
        reason: reason.name().into(),
    }
}

pub fn top_rates_text(iface: &str, reason: Reason, sources: &[SourceRate]) -> String {
    let mut out = format!(
        "{iface}: sources of {} drops, fastest first\n",
        reason.name()
    );
    let _ = writeln!(
        out,
        "  {:<40} {:>12} {:>14} {:>12} {:>14}",
        "source", "packets", "bytes", "packets/s", "bytes/s"
    );
    for (a, c, pps, bps) in sources {
        let _ = writeln!(
            out,
            "  {:<40} {:>12} {:>14} {:>12.1} {:>14.1}",
            a.to_string(),
            c.packets,
            c.bytes,
            pps,
            bps
        );
    }
    out
}

pub fn top_text(iface: &str, reason: Reason, sources: &[(IpAddr, Counter)]) -> String {
    let what = match reason {
        Reason::SipDenied => "denied signalling sources".to_string(),
        Reason::SipRatelimited => "signalling sources over the rate limit".to_string(),
        Reason::RtpRatelimited => "media sources over the rate limit".to_string(),
        r => format!("sources of {} drops", r.name()),
    };
    if sources.is_empty() {
        return format!("{iface}: no {what} seen\n");
    }
    let mut out = format!("{iface}: {what}, most packets first\n");
    let _ = writeln!(out, "  {:<40} {:>12} {:>14}", "source", "packets", "bytes");
    for (a, c) in sources {
        let _ = writeln!(
            out,
            "  {:<40} {:>12} {:>14}",
            a.to_string(),
            c.packets,
            c.bytes
        );
    }
    out
}
