//! `status`: what is attached where, told truthfully (see
//! [`Snapshot::gather`]), for people and for programs.
use serde_json::{json, Value};

use super::snapshot::Snapshot;

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
    }
    out
}
