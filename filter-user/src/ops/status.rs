//! `status`: what is attached where, told truthfully (see
//! [`Snapshot::gather`]), for people and for programs.
use filter_common::Reason;
use serde_json::{json, Value};

use super::snapshot::Snapshot;

/// What the counters say the operator should change, one line each.
pub fn hints(s: &Snapshot) -> Vec<String> {
    let (Some(r), Some(c)) = (&s.ruleset, &s.counters) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let outside = c[Reason::RtpOutside as usize].packets;
    if outside > 0 {
        out.push(format!(
            "rtp_outside: {outside} packets of provider media (UDP from ports {}-{}) went to ports outside rtp_ports {}-{} and were dropped: calls have one-way audio. Set [media] rtp_ports to the RTP port range your PBX advertises in its SDP (e.g. \"10000-20000\" for Asterisk, \"16384-32768\" for FreeSWITCH)",
            r.provider_rtp.0, r.provider_rtp.1, r.rtp.0, r.rtp.1
        ));
    }
    out
}

pub fn to_json(all: &[Snapshot]) -> Value {
    let list: Vec<Value> = all
        .iter()
        .map(|s| {
            let r = s.ruleset.as_ref();
            json!({
                "iface": s.iface,
                "attached": s.attached,
                "mode": s.mode,
                "program_id": s.program_id,
                "dry_run": r.map(|r| r.dry_run),
                "allowlist_entries": r.map(|r| r.allow.len()),
                "signalling_ports": r.map(|r| r.sig_ports.clone()),
                "rtp_ports": r.map(|r| format!("{}-{}", r.rtp.0, r.rtp.1)),
                "provider_rtp_ports": r.map(|r| format!("{}-{}", r.provider_rtp.0, r.provider_rtp.1)),
                "policy_mode": r.map(|r| r.mode.name()),
                "strict_rules": r.map(|r| r.rules.len()),
                "hints": hints(s),
                "policy": r.map(|r| r.summary()),
                "problems": s.problems,
            })
        })
        .collect();
    json!({ "interfaces": list })
}

pub fn to_text(all: &[Snapshot]) -> String {
    if all.is_empty() {
        return "sipwall is not attached to any interface\n".into();
    }
    let mut out = String::new();
    for s in all {
        let state = if s.attached {
            "filtering"
        } else {
            "NOT FILTERING"
        };
        out += &format!("{}: {state}, {} mode", s.iface, s.mode);
        if let Some(id) = s.program_id {
            out += &format!(", program id {id}");
        }
        out.push('\n');
        if let Some(r) = &s.ruleset {
            out += &format!("  {}\n", r.summary());
        }
        for p in &s.problems {
            out += &format!("  problem: {p}\n");
        }
        for h in hints(s) {
            out += &format!("  hint: {h}\n");
        }
    }
    out
}
