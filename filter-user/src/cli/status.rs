//! `sipwall status`: every attachment of this network namespace (or the one
//! named), checked against what the kernel runs, and those of other
//! namespaces, listed. Exits 1 when one of this namespace's is not
//! filtering.
use anyhow::{bail, Result};
use filter_kernel::{pins::PinRoot, privileges::require_root};

use super::args::ShowArgs;
use crate::ops::{json, snapshot::Snapshot, status};

pub fn run(root: &PinRoot, args: &ShowArgs) -> Result<()> {
    let iface = args.attached.iface.as_deref();
    require_root()?;
    let ifaces = match iface {
        Some(i) => vec![root.resolve(Some(i))?],
        None => root.attached()?,
    };
    let all: Vec<Snapshot> = ifaces.iter().map(|i| Snapshot::gather(root, i)).collect();
    // Other namespaces' attachments are listed, never judged: from here
    // their interface cannot be seen.
    let elsewhere = if iface.is_none() {
        root.elsewhere()?
    } else {
        Vec::new()
    };
    let legacy = root.legacy();
    if args.output.json {
        println!(
            "{}",
            json::line(&status::to_json(&all, &elsewhere, root, &legacy))
        );
    } else {
        print!("{}", status::to_text(&all, &elsewhere, root, &legacy));
    }
    let down: Vec<&str> = all
        .iter()
        .filter(|s| !s.attached)
        .map(|s| s.iface.as_str())
        .collect();
    if !down.is_empty() {
        bail!(
            "NOT filtering on {}; the problems above say what to do",
            down.join(", ")
        );
    }
    Ok(())
}
