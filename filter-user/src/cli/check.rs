//! `sipwall check --pcap`: replay a capture through the real program.
use std::{net::IpAddr, path::Path};

use anyhow::Result;

use crate::{
    kernel::privileges::require_root,
    ops::check::{self, Local},
    policy::config,
};

pub fn run(
    pcap: &Path,
    config_path: Option<&Path>,
    json: bool,
    local: &[IpAddr],
    local_ifaces: &[String],
) -> Result<()> {
    // Configuration and capture errors are usage errors: report them
    // before asking for privileges.
    let ruleset = config::load(config_path)?;
    let frames = check::read_frames(pcap)?;
    let local = Local::gather(local, local_ifaces)?;
    require_root()?;
    let results = check::check(&frames, &ruleset, &local)?;
    if json {
        let mut out = check::to_json(&results);
        if ruleset.strict() {
            out["note"] = check::STRICT_NOTE.into();
        }
        println!("{out}");
    } else {
        print!("{}", check::to_text(&results));
        if ruleset.strict() {
            println!("note: {}", check::STRICT_NOTE);
        }
    }
    Ok(())
}
