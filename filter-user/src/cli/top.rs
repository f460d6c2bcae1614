//! `sipwall top`: the sources of dropped packets with the most packets,
//! for one drop reason (`--reason`, default sip_denied).
use anyhow::Result;
use filter_common::{CounterFamily as _, Reason};

use crate::{
    error::UsageError,
    kernel::{attachment::Attachment, pins::PinRoot, privileges::require_root},
    ops::{
        json,
        snapshot::{warn_if_stale, Snapshot},
        stats,
    },
};

pub fn run(root: &PinRoot, iface: Option<&str>, n: usize, json: bool, reason: &str) -> Result<()> {
    if n == 0 {
        return Err(UsageError("-n 0: nothing to show; give at least 1".into()).into());
    }
    let reason = match Reason::from_name(reason) {
        Some(r) if r.drops() && r != Reason::Malformed => r,
        Some(Reason::Malformed) => return Err(UsageError(
            "--reason malformed: a malformed packet's source is not trusted, so none is recorded"
                .into(),
        )
        .into()),
        _ => {
            let drops: Vec<&str> = Reason::ALL
                .into_iter()
                .filter(|r| r.drops() && *r != Reason::Malformed)
                .map(Reason::name)
                .collect();
            return Err(UsageError(format!(
                "--reason {reason}: not a drop reason; sources are recorded for {}",
                drops.join(", ")
            ))
            .into());
        }
    };
    require_root()?;
    let att = Attachment::open(root, iface)?;
    warn_if_stale(&Snapshot::liveness(root, &att.iface));
    let mut sources = att.maps.drop_sources(reason)?;
    sources.truncate(n);
    if json {
        println!("{}", json::line(&stats::top_json(reason, &sources)));
    } else {
        print!("{}", stats::top_text(&att.iface, reason, &sources));
    }
    Ok(())
}
