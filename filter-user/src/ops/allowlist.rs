//! `sipwall allow`: the live allowlist of an attached filter. A change is
//! judged completely first (`filter_policy::allowlist`), then installed as a
//! whole new generation (see filter-kernel's `maps.rs`), under the pin-root
//! lock.
use anyhow::{Context as _, Result};
use filter_kernel::{attachment::Attachment, pins::PinRoot};
use filter_policy::allowlist;
pub use filter_policy::allowlist::Change;
use ipnet::IpNet;

use crate::ops::snapshot::{warn_if_stale, Snapshot};

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

/// Applies `change` to the filter attached to `iface`. An empty result,
/// and a prefix of length 0 added (or entries that together make one),
/// need `force`.
pub fn apply(root: &PinRoot, iface: &str, change: Change, force: bool) -> Result<Applied> {
    allowlist::refuse_whole_family(&change, force)?;
    let _lock = root.lock()?;
    let mut att = Attachment::open_resolved(root, iface.to_string())?;
    let edited = allowlist::edit(att.maps.read_ruleset()?, iface, change, force)?;
    if edited.changed {
        att.maps
            .install(&edited.ruleset)
            .with_context(|| format!("updating the allowlist of {iface}"))?;
    }
    Ok(Applied {
        allow: edited.ruleset.allow,
        already: edited.already,
        changed: edited.changed,
    })
}

/// The allowlist in force on the interface (named in the result); warns
/// on stderr first when the filter there is not running.
pub fn list(root: &PinRoot, iface: Option<&str>) -> Result<(String, Vec<IpNet>)> {
    let att = Attachment::open(root, iface)?;
    warn_if_stale(&Snapshot::liveness(root, &att.iface));
    let allow = att.maps.read_ruleset()?.allow;
    Ok((att.iface, allow))
}
