//! `sipwall check --pcap`: replay a capture through the real program.
use std::{net::IpAddr, path::Path};

use anyhow::Result;
use filter_kernel::privileges::require_root;
use filter_policy::config;

use crate::ops::{
    check::{self, Direction, Local},
    json,
};

pub fn run(
    pcap: &Path,
    config_path: Option<&Path>,
    json: bool,
    local: &[IpAddr],
    local_ifaces: &[String],
    direction: Direction,
) -> Result<()> {
    // Configuration and capture errors are usage errors: report them
    // before asking for privileges.
    let ruleset = config::load(config_path)?;
    if direction == Direction::Out && !ruleset.egress.strict() {
        return Err(crate::error::UsageError(check::OPEN_EGRESS_NOTE.into()).into());
    }
    let frames = check::read_frames(pcap)?;
    let local = Local::gather(local, local_ifaces)?;
    require_root()?;
    let results = check::check(&frames, &ruleset, &local, direction)?;
    let note = (direction == Direction::In && ruleset.strict()).then_some(check::STRICT_NOTE);
    if json {
        println!("{}", json::line(&check::to_json(&results, note)));
    } else {
        print!("{}", check::to_text(&results));
        if let Some(note) = note {
            println!("note: {note}");
        }
    }
    Ok(())
}
