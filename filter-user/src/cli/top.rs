//! `sipwall top`: the sources with the most packets dropped for a reason
//! (denied signalling by default, or over a rate limit).
use anyhow::Result;
use filter_common::Reason;

use crate::{
    error::UsageError,
    kernel::{attachment::Attachment, pins::PinRoot, privileges::require_root},
    ops::{
        snapshot::{warn_if_stale, Snapshot},
        stats,
    },
};

/// The reasons whose sources are counted one by one.
const PER_SOURCE: [Reason; 3] = [
    Reason::SipDenied,
    Reason::SipRatelimited,
    Reason::RtpRatelimited,
];

pub fn run(root: &PinRoot, iface: Option<&str>, n: usize, json: bool, reason: &str) -> Result<()> {
    if n == 0 {
        return Err(UsageError("-n 0: nothing to show; give at least 1".into()).into());
    }
    let reason = match Reason::from_name(reason) {
        Some(r) if PER_SOURCE.contains(&r) => r,
        _ => {
            let names: Vec<&str> = PER_SOURCE.iter().map(|r| r.name()).collect();
            return Err(UsageError(format!(
                "--reason {reason:?}: sources are counted for {} only",
                names.join(", ")
            ))
            .into());
        }
    };
    require_root()?;
    let att = Attachment::open(root, iface)?;
    warn_if_stale(&Snapshot::liveness(root, &att.iface));
    let mut sources = match reason {
        Reason::SipDenied => att.maps.denied_sources()?,
        r => att.maps.ratelimited_sources(r)?,
    };
    sources.truncate(n);
    if json {
        println!("{}", stats::top_json(&sources));
    } else {
        let what = match reason {
            Reason::SipDenied => "denied signalling sources",
            Reason::SipRatelimited => "signalling sources over the rate limit",
            _ => "media sources over the rate limit",
        };
        print!("{}", stats::top_text(&att.iface, what, &sources));
    }
    Ok(())
}
