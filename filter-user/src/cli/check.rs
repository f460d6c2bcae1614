//! `sipwall check --pcap`: replay a capture through the real program.
use anyhow::Result;
use filter_kernel::privileges::require_root;
use filter_policy::config;

use super::args::CheckArgs;
use crate::ops::{
    check::{self, Direction, Local},
    json,
};

pub fn run(args: &CheckArgs) -> Result<()> {
    let direction = Direction::from(args.direction);
    // Configuration and capture errors are usage errors: report them
    // before asking for privileges.
    let ruleset = config::load(args.config.as_deref())?;
    if direction == Direction::Out && !ruleset.egress.strict() {
        return Err(crate::error::UsageError(check::OPEN_EGRESS_NOTE.into()).into());
    }
    let frames = check::read_frames(&args.pcap)?;
    let local = Local::gather(&args.local, &args.local_iface)?;
    require_root()?;
    let results = check::check(&frames, &ruleset, &local, direction)?;
    let notes: Vec<&str> = [
        (direction == Direction::In && ruleset.strict()).then_some(check::STRICT_NOTE),
        (direction == Direction::In && ruleset.media.calls() && local.addrs.is_empty())
            .then_some(check::CALLS_NOTE),
    ]
    .into_iter()
    .flatten()
    .collect();
    let joined = notes.join("; ");
    let note = (!notes.is_empty()).then_some(joined.as_str());
    if args.output.json {
        println!("{}", json::line(&check::to_json(&results, note)));
    } else {
        print!("{}", check::to_text(&results));
        if let Some(note) = note {
            println!("note: {note}");
        }
    }
    Ok(())
}
