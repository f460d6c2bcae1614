//! Counters for people and programs: the `stats` table and JSON, per-second
//! rates for `--watch`, and the denied sources of `top`.
use std::{fmt::Write as _, net::IpAddr};

use filter_common::{Counter, OutReason, Reason};
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
            let out_now = i.out_counters.unwrap_or_default();
            let mut out_counters = serde_json::Map::new();
            for r in OutReason::ALL {
                let c = out_now[r as usize];
                out_counters.insert(
                    r.name().into(),
                    json!({"packets": c.packets, "bytes": c.bytes}),
                );
            }
            json!({"iface": i.iface, "mode": i.mode, "dry_run": dry_run, "counters": counters,
                   "egress": {"mode": egress_mode(i), "counters": out_counters}})
        })
        .collect();
    json!({ "interfaces": interfaces })
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
        for r in Reason::ALL {
            let before = prev.map(|(p, secs)| {
                let c = p.map(|p| readings(p).0[r as usize]).unwrap_or_default();
                (c, secs)
            });
            row(
                &mut out,
                r.name(),
                r.drops() && !dry_run,
                now[r as usize],
                before,
            );
        }
        // The egress program's table, when it judges (strict egress) or
        // has judged since the counters began.
        let out_now = i.out_counters.unwrap_or_default();
        if egress_mode(i) == "strict" || out_now.iter().any(|c| c.packets != 0) {
            let _ = writeln!(out, "  outgoing ({} egress)", egress_mode(i));
            for r in OutReason::ALL {
                let before = prev.map(|(p, secs)| {
                    let c = p
                        .and_then(|p| p.out_counters)
                        .map(|o| o[r as usize])
                        .unwrap_or_default();
                    (c, secs)
                });
                row(
                    &mut out,
                    r.name(),
                    r.drops() && !dry_run,
                    out_now[r as usize],
                    before,
                );
            }
        }
    }
    out
}

/// One counter's line; with `before` (the previous reading and seconds
/// elapsed), its per-second rates too.
fn row(out: &mut String, name: &str, drops: bool, c: Counter, before: Option<(Counter, f64)>) {
    let verdict = if drops { "drop" } else { "pass" };
    let _ = write!(
        out,
        "  {:<16} {:>7} {:>14} {:>16}",
        name, verdict, c.packets, c.bytes
    );
    if let Some((p, secs)) = before {
        let rate = |now: u64, before: u64| now.saturating_sub(before) as f64 / secs.max(1e-9);
        let _ = write!(
            out,
            " {:>12.1} {:>14.1}",
            rate(c.packets, p.packets),
            rate(c.bytes, p.bytes)
        );
    }
    out.push('\n');
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
