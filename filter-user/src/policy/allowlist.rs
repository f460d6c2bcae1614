//! `sipwall allow`: the live allowlist of an attached filter. Every change
//! is validated completely first, then installed as a whole new generation
//! (see `kernel/maps.rs`), under the pin-root lock.
use std::path::Path;

use anyhow::{Context as _, Result};
use ipnet::IpNet;

use crate::{
    error::UsageError,
    kernel::{attachment::Attachment, pins::PinRoot},
    policy::{cidr::parse_lines, input},
};

/// Reads an allowlist file: one CIDR a line, `#` starts a comment; `-`
/// is standard input.
pub fn read_file(path: &Path) -> Result<Vec<IpNet>> {
    let (name, text) = input::read_list_text(path, "allowlist")?;
    Ok(parse_lines(&name, &text)?)
}

/// Which change to make.
pub enum Change {
    Add(Vec<IpNet>),
    Del(Vec<IpNet>),
    Replace(Vec<IpNet>),
}

/// What a change did.
pub struct Applied {
    /// The allowlist now.
    pub allow: Vec<IpNet>,
    /// Entries of an `Add` that were there already.
    pub already: Vec<IpNet>,
    /// Whether anything was written (an `Add` of entries all present
    /// already writes nothing).
    pub changed: bool,
}

/// The families (`0.0.0.0/0`, `::/0`) that `allow`'s entries cover whole.
fn whole_families(allow: &[IpNet]) -> Vec<IpNet> {
    IpNet::aggregate(&allow.to_vec())
        .into_iter()
        .filter(|n| n.prefix_len() == 0)
        .collect()
}

/// Applies `change` to the filter attached to `iface`. An empty result,
/// and a prefix of length 0 added (or entries that together make one),
/// need `force`.
pub fn apply(root: &PinRoot, iface: &str, change: Change, force: bool) -> Result<Applied> {
    if let Change::Add(nets) | Change::Replace(nets) = &change {
        if let Some(net) = nets.iter().find(|n| n.prefix_len() == 0).filter(|_| !force) {
            return Err(UsageError(format!(
                "{net} allows every {} source to send signalling, which is no allowlist at all; nothing changed (--force if that is what you want)",
                if net.addr().is_ipv4() { "IPv4" } else { "IPv6" }
            ))
            .into());
        }
    }
    let _lock = root.lock()?;
    let mut att = Attachment::open_resolved(root, iface.to_string())?;
    let mut ruleset = att.maps.read_ruleset()?;
    let covered_before = whole_families(&ruleset.allow);
    let mut already = Vec::new();
    match change {
        Change::Add(nets) => {
            let before = ruleset.allow.len();
            for net in nets {
                if ruleset.allow.contains(&net) {
                    if !already.contains(&net) {
                        already.push(net);
                    }
                } else {
                    ruleset.allow.push(net);
                }
            }
            if ruleset.allow.len() == before {
                return Ok(Applied {
                    allow: ruleset.allow,
                    already,
                    changed: false,
                });
            }
        }
        Change::Del(nets) => {
            let missing: Vec<String> = nets
                .iter()
                .filter(|n| !ruleset.allow.contains(n))
                .map(IpNet::to_string)
                .collect();
            if !missing.is_empty() {
                return Err(UsageError(format!(
                    "not in the allowlist of {iface}: {} (nothing changed)",
                    missing.join(", ")
                ))
                .into());
            }
            ruleset.allow.retain(|n| !nets.contains(n));
        }
        Change::Replace(nets) => ruleset.allow = nets,
    }
    let ruleset = ruleset.normalise()?;
    // Prefixes that together cover a whole family (0.0.0.0/1 and
    // 128.0.0.0/1) are as open as a /0.
    if let Some(net) = whole_families(&ruleset.allow)
        .into_iter()
        .find(|n| !force && !covered_before.contains(n))
    {
        return Err(UsageError(format!(
            "together the allowlist's entries would cover {net}: every {} source could send signalling, which is no allowlist at all; nothing changed (--force if that is what you want)",
            if net.addr().is_ipv4() { "IPv4" } else { "IPv6" }
        ))
        .into());
    }
    if ruleset.allow.is_empty() && !force {
        return Err(UsageError(
            "that would leave the allowlist empty, which denies all signalling; add --force if that is what you want (nothing changed)".into(),
        )
        .into());
    }
    att.maps
        .install(&ruleset)
        .with_context(|| format!("updating the allowlist of {iface}"))?;
    Ok(Applied {
        allow: ruleset.allow,
        already,
        changed: true,
    })
}
