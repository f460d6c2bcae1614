//! Counters for people and programs: the `stats` table and JSON, per-second
//! rates for `--watch`, and the denied sources of `top`.
use std::{fmt::Write as _, net::IpAddr};

use filter_common::{Counter, Reason};
use serde_json::{json, Value};

use super::snapshot::Snapshot;
use crate::kernel::maps::CounterSet;

/// What `stats` shows of a snapshot: its counters, and whether it drops.
fn readings(s: &Snapshot) -> (CounterSet, bool) {
    (
        s.counters.unwrap_or_default(),
        s.ruleset.as_ref().is_some_and(|r| r.dry_run),
    )
}

pub fn to_json(all: &[Snapshot]) -> Value {
    let interfaces: Vec<Value> = all
        .iter()
        .map(|i| {
            let (now, dry_run) = readings(i);
            let mut counters = serde_json::Map::new();
            for r in Reason::ALL {
                let c = now[r as usize];
                counters.insert(
                    r.name().into(),
                    json!({"packets": c.packets, "bytes": c.bytes}),
                );
            }
            json!({"iface": i.iface, "mode": i.mode, "dry_run": dry_run, "counters": counters})
        })
        .collect();
    json!({ "interfaces": interfaces })
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
            "  {:<12} {:>7} {:>14} {:>16}",
            "reason", "verdict", "packets", "bytes"
        );
        if rates.is_some() {
            let _ = write!(out, " {:>12} {:>14}", "packets/s", "bytes/s");
        }
        out.push('\n');
        for r in Reason::ALL {
            let c = now[r as usize];
            let verdict = if r.drops() && !dry_run {
                "drop"
            } else {
                "pass"
            };
            let _ = write!(
                out,
                "  {:<12} {:>7} {:>14} {:>16}",
                r.name(),
                verdict,
                c.packets,
                c.bytes
            );
            if let Some((prev, secs)) = rates {
                let p = prev
                    .get(n)
                    .map(|p| readings(p).0[r as usize])
                    .unwrap_or_default();
                let rate =
                    |now: u64, before: u64| now.saturating_sub(before) as f64 / secs.max(1e-9);
                let _ = write!(
                    out,
                    " {:>12.1} {:>14.1}",
                    rate(c.packets, p.packets),
                    rate(c.bytes, p.bytes)
                );
            }
            out.push('\n');
        }
    }
    out
}

pub fn top_json(sources: &[(IpAddr, Counter)]) -> Value {
    let list: Vec<Value> = sources
        .iter()
        .map(|(a, c)| json!({"addr": a.to_string(), "packets": c.packets, "bytes": c.bytes}))
        .collect();
    json!({ "sources": list })
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
