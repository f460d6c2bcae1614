//! What is attached where, told truthfully: each pinned attachment is
//! checked against what the kernel has on the interface now.
use std::path::Path;

use serde_json::{json, Value};

use crate::{
    attach::{if_index, iface_xdp, mode_name},
    maps::Maps,
    pins::{self, PinRoot, LINK_PIN},
    ruleset::Ruleset,
};

pub struct IfaceStatus {
    pub iface: String,
    /// The kernel runs sipwall's program on the interface.
    pub attached: bool,
    pub mode: &'static str,
    pub program_id: Option<u32>,
    pub ruleset: Option<Ruleset>,
    /// What is wrong, each with what to do about it.
    pub problems: Vec<String>,
}

pub fn gather(root: &PinRoot, iface: &str) -> IfaceStatus {
    let dir = root.iface_dir(iface);
    let mut st = IfaceStatus {
        iface: iface.to_string(),
        attached: false,
        mode: "unknown",
        program_id: None,
        ruleset: None,
        problems: Vec::new(),
    };
    // Without a readable INFO map the maps are not read (they may be of
    // another layout), but what the kernel runs is still told.
    let info = match pins::read_info(&dir) {
        Ok(info) => Some(info),
        Err(e) => {
            st.problems.push(format!("{e:#}"));
            None
        }
    };
    if let Some(info) = &info {
        st.mode = mode_name(info.mode);
        match Maps::open_pinned(&dir).and_then(|m| m.read_ruleset()) {
            Ok(r) => st.ruleset = Some(r),
            Err(e) => st.problems.push(format!(
                "{e:#}; `sipwall attach -i {iface}` recreates missing pins, `sipwall detach -i {iface}` removes damaged ones"
            )),
        }
    }
    let link_prog = link_program(&dir.join(LINK_PIN));
    st.program_id = link_prog;
    match if_index(iface) {
        Err(_) => st.problems.push(format!(
            "interface {iface} no longer exists; its pins remain: `sipwall detach -i {iface}` removes them, or attach again when it is back"
        )),
        Ok(index) => {
            if let Some(info) = info.filter(|i| i.ifindex != index) {
                st.problems.push(format!(
                    "{iface} was deleted and created again (index {} then, {index} now)",
                    info.ifindex
                ));
            }
            match (iface_xdp(iface), link_prog) {
                (Ok(Some(now)), Some(ours)) if now.program_id == ours => {
                    st.attached = true;
                    if info.is_none() {
                        st.mode = mode_name(now.mode);
                    }
                }
                (Ok(Some(now)), _) => st.problems.push(format!(
                    "{iface} runs another XDP program (id {}), not sipwall's",
                    now.program_id
                )),
                (Ok(None), _) => st.problems.push(format!(
                    "no XDP program on {iface}: sipwall is NOT filtering; `sipwall attach -i {iface}` attaches it again"
                )),
                (Err(e), _) => st.problems.push(format!("{e:#}")),
            }
        }
    }
    if link_prog.is_none() {
        st.problems.push(format!(
            "the pinned XDP link is missing or unreadable ({}); `sipwall attach -i {iface}` repairs it",
            dir.join(LINK_PIN).display()
        ));
    }
    st
}

fn link_program(path: &Path) -> Option<u32> {
    let link =
        aya::programs::links::FdLink::from(aya::programs::links::PinnedLink::from_pin(path).ok()?);
    Some(link.info().ok()?.program_id())
}

pub fn to_json(all: &[IfaceStatus]) -> Value {
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

pub fn to_text(all: &[IfaceStatus]) -> String {
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
