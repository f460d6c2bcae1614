//! `sipwall allow list|add|del|replace`: the live allowlist.
use anyhow::Result;

use super::AllowAction;
use crate::{
    kernel::{attachment::Attachment, pins::PinRoot, privileges::require_root},
    policy::allowlist::{self, Change},
};

pub fn run(root: &PinRoot, action: AllowAction) -> Result<()> {
    let (iface, change, force) = match action {
        AllowAction::List { iface, json } => return list(root, iface.as_deref(), json),
        AllowAction::Add { iface, cidrs } => {
            (iface, Change::Add(allowlist::parse_all(&cidrs)?), false)
        }
        AllowAction::Del {
            iface,
            cidrs,
            force,
        } => (iface, Change::Del(allowlist::parse_all(&cidrs)?), force),
        AllowAction::Replace { iface, file, force } => {
            (iface, Change::Replace(allowlist::read_file(&file)?), force)
        }
    };
    require_root()?;
    let iface = root.resolve(iface.as_deref())?;
    let allow = allowlist::apply(root, &iface, change, force)?;
    println!("{iface}: the allowlist now has {} entries", allow.len());
    Ok(())
}

fn list(root: &PinRoot, iface: Option<&str>, json: bool) -> Result<()> {
    require_root()?;
    let allow = Attachment::open(root, iface)?.maps.read_ruleset()?.allow;
    if json {
        let list: Vec<String> = allow.iter().map(|n| n.to_string()).collect();
        println!("{}", serde_json::json!({ "allow": list }));
    } else {
        for n in &allow {
            println!("{n}");
        }
    }
    Ok(())
}
