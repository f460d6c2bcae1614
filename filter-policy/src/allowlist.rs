//! Allowlist entries and changes to them, judged against the ruleset in
//! force: every change is validated completely before `sipwall`'s
//! `ops::allowlist` installs the result on a running filter.
use std::path::Path;

use anyhow::Result;
use ipnet::IpNet;

use crate::{cidr::parse_lines, error::UsageError, input, ruleset::Ruleset};

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

/// A change judged against the ruleset in force.
pub struct Edited {
    /// The ruleset with the change made (normalised when `changed`).
    pub ruleset: Ruleset,
    /// Entries of an `Add` that were there already.
    pub already: Vec<IpNet>,
    /// Whether there is anything to write (an `Add` of entries all present
    /// already changes nothing).
    pub changed: bool,
}

/// The families (`0.0.0.0/0`, `::/0`) that `allow`'s entries cover whole.
fn whole_families(allow: &[IpNet]) -> Vec<IpNet> {
    IpNet::aggregate(&allow.to_vec())
        .into_iter()
        .filter(|n| n.prefix_len() == 0)
        .collect()
}

/// Refuses (without `force`) an allowlist whose entries together cover a
/// whole family, as a configuration file gives it: every source of that
/// family could send signalling.
pub fn refuse_open(allow: &[IpNet], force: bool) -> Result<(), UsageError> {
    match whole_families(allow).into_iter().find(|_| !force) {
        Some(net) => Err(UsageError(format!(
            "the allowlist covers {net}: every {} source could send signalling, which is no allowlist at all (--force if that is what you want)",
            if net.addr().is_ipv4() { "IPv4" } else { "IPv6" }
        ))),
        None => Ok(()),
    }
}

/// Refuses a prefix of length 0 added without `force`: judged before the
/// filter is even opened.
pub fn refuse_whole_family(change: &Change, force: bool) -> Result<(), UsageError> {
    if let Change::Add(nets) | Change::Replace(nets) = change {
        if let Some(net) = nets.iter().find(|n| n.prefix_len() == 0).filter(|_| !force) {
            return Err(UsageError(format!(
                "{net} allows every {} source to send signalling, which is no allowlist at all; nothing changed (--force if that is what you want)",
                if net.addr().is_ipv4() { "IPv4" } else { "IPv6" }
            )));
        }
    }
    Ok(())
}

/// Makes `change` to `ruleset`, the one in force on `iface`. An empty
/// allowlist, and entries that together cover a family they did not cover
/// before, need `force`.
pub fn edit(mut ruleset: Ruleset, iface: &str, change: Change, force: bool) -> Result<Edited> {
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
                return Ok(Edited {
                    ruleset,
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
    Ok(Edited {
        ruleset,
        already,
        changed: true,
    })
}
