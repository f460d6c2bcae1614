//! `sipwall check --pcap`: replay a capture through the real program.
use std::path::Path;

use anyhow::Result;

use crate::{kernel::privileges::require_root, ops::check, policy::config};

pub fn run(pcap: &Path, config_path: Option<&Path>, json: bool) -> Result<()> {
    // Configuration and capture errors are usage errors: report them
    // before asking for privileges.
    let ruleset = config::load(config_path)?;
    let frames = check::read_frames(pcap)?;
    require_root()?;
    let results = check::check(&frames, &ruleset)?;
    if json {
        println!("{}", check::to_json(&results));
    } else {
        print!("{}", check::to_text(&results));
    }
    Ok(())
}
