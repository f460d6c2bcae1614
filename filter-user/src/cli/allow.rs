//! `sipwall allow list|add|del|replace`: the live allowlist.
use anyhow::Result;
use filter_kernel::{pins::PinRoot, privileges::require_root};
use filter_policy::{allowlist::read_file, cidr};

use super::args::{AllowAction, ShowArgs};
use crate::{
    error::UsageError,
    ops::{
        allowlist::{self, Change},
        json,
        snapshot::{warn_if_stale, Snapshot},
    },
};

pub fn run(root: &PinRoot, action: AllowAction) -> Result<()> {
    let (iface, change, force) = match action {
        AllowAction::List(args) => return list(root, &args),
        AllowAction::Add(args) => (
            args.attached,
            Change::Add(cidr::parse_all(&args.cidrs)?),
            args.force,
        ),
        AllowAction::Del(args) => (
            args.attached,
            Change::Del(cidr::parse_all(&args.cidrs)?),
            args.force,
        ),
        AllowAction::Replace(args) => (
            args.attached,
            Change::Replace(read_file(&args.file)?),
            args.force,
        ),
    };
    require_root()?;
    let iface = root.resolve(iface.iface.as_deref())?;
    // A change to an attachment that filters nothing reaches no packet:
    // most likely the wrong interface, or one that is gone.
    let snap = Snapshot::liveness(root, &iface);
    if !snap.attached {
        if !force {
            return Err(UsageError(format!(
                "{iface}: sipwall is NOT filtering ({}); the change would reach no packet. Attach again (`sipwall attach -i {iface}`), or add --force to change the pinned allowlist anyway (nothing changed)",
                snap.problems.join("; ")
            ))
            .into());
        }
        warn_if_stale(&snap);
    }
    let applied = allowlist::apply(root, &iface, change, force)?;
    for net in &applied.already {
        eprintln!("{net} is already present in the allowlist of {iface}");
    }
    if applied.changed {
        println!(
            "{iface}: the allowlist now has {} entries",
            applied.allow.len()
        );
    } else {
        println!(
            "{iface}: nothing changed; the allowlist has {} entries",
            applied.allow.len()
        );
    }
    Ok(())
}

fn list(root: &PinRoot, args: &ShowArgs) -> Result<()> {
    require_root()?;
    let (iface, allow) = allowlist::list(root, args.attached.iface.as_deref())?;
    if args.output.json {
        let doc = json::AllowList {
            allow: allow.iter().map(|n| n.to_string()).collect(),
        };
        println!("{}", json::line(&doc));
    } else if allow.is_empty() {
        println!("the allowlist of {iface} is empty: all signalling is denied");
    } else {
        for n in &allow {
            println!("{n}");
        }
    }
    Ok(())
}
