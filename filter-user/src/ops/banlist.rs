//! `sipwall ban`: the live ban set of an attached filter (docs/cli.md).
//! Entries, durations and ban files are validated completely first
//! (`filter_policy::banlist`); then the whole new set is written under the
//! pin-root lock (see `Maps::set_bans`). Entries whose time is up are
//! dropped from the maps by the next change (the program already ignores
//! them).
use std::collections::BTreeMap;

use anyhow::{Context as _, Result};
use filter_common::{maps::BAN_MAX, BAN_PERMANENT};
use filter_kernel::{attachment::Attachment, bans::Ban, maps::monotonic_ns, pins::PinRoot};
use filter_policy::banlist::check_allowlist;
pub use filter_policy::banlist::Change;
use ipnet::IpNet;

use crate::error::UsageError;

/// Applies `change` to the ban set of `iface`; returns the entries in
/// force afterwards.
pub fn apply(root: &PinRoot, iface: &str, change: Change) -> Result<Vec<Ban>> {
    let _lock = root.lock()?;
    let mut att = Attachment::open_resolved(root, iface.to_string())?;
    let now = monotonic_ns();
    // Live entries only: expired ones leave the maps with this change.
    let mut set: BTreeMap<IpNet, u64> = att
        .maps
        .bans()?
        .into_iter()
        .filter(|b| b.expires_ns > now)
        .map(|b| (b.net, b.expires_ns))
        .collect();
    match change {
        Change::Add {
            nets,
            duration,
            force,
        } => {
            if !force {
                check_allowlist(&nets, &att.maps.read_ruleset()?.allow)?;
            }
            let expires = match duration {
                Some(d) => now + d.as_nanos() as u64,
                None => BAN_PERMANENT,
            };
            for net in nets {
                set.insert(net.trunc(), expires);
            }
        }
        Change::Del(nets, missing_ok) => {
            let missing: Vec<String> = nets
                .iter()
                .filter(|n| !set.contains_key(n))
                .map(IpNet::to_string)
                .collect();
            if !missing.is_empty() && !missing_ok {
                return Err(UsageError(format!(
                    "not banned on {iface}: {} (nothing changed)",
                    missing.join(", ")
                ))
                .into());
            }
            for net in &nets {
                set.remove(net);
            }
        }
    }
    let bans: Vec<Ban> = set
        .into_iter()
        .map(|(net, expires_ns)| Ban { net, expires_ns })
        .collect();
    check_fits(&bans)?;
    att.maps
        .set_bans(&bans)
        .with_context(|| format!("updating the ban set of {iface}"))?;
    Ok(bans)
}

/// A ban in force and its whole seconds left (`None`: permanent).
pub type Listed = (IpNet, Option<u64>);

/// The bans in force on the interface (named in the result).
pub fn list(root: &PinRoot, iface: Option<&str>) -> Result<(String, Vec<Listed>)> {
    let att = Attachment::open(root, iface)?;
    let now = monotonic_ns();
    let bans = att
        .maps
        .bans()?
        .into_iter()
        .filter(|b| b.expires_ns > now)
        .map(|b| {
            let left = (!b.is_permanent()).then(|| (b.expires_ns - now) / 1_000_000_000);
            (b.net, left)
        })
        .collect();
    Ok((att.iface, bans))
}

/// Refuses more entries than the tries hold, before anything is written.
fn check_fits(bans: &[Ban]) -> Result<(), UsageError> {
    let v4 = bans
        .iter()
        .filter(|b| matches!(b.net, IpNet::V4(_)))
        .count();
    let v6 = bans.len() - v4;
    if v4 > BAN_MAX as usize || v6 > BAN_MAX as usize {
        return Err(UsageError(format!(
            "the ban set would have {v4} IPv4 and {v6} IPv6 entries; at most {BAN_MAX} of each fit (nothing changed)"
        )));
    }
    Ok(())
}
