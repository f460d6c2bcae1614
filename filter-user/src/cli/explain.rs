//! `sipwall explain`: which row of the policy decides a described packet.
use std::path::Path;

use anyhow::Result;
use filter_kernel::{pins::PinRoot, privileges::require_root};
use filter_policy::config;

use crate::ops::{
    check::Direction,
    describe,
    explain::{self, LIVE_NOTE},
    json,
};

pub fn run(
    root: &PinRoot,
    iface: Option<&str>,
    config_path: Option<&Path>,
    direction: Direction,
    json: bool,
    description: &str,
) -> Result<()> {
    // The description and the file are usage errors: before privileges.
    let packet = describe::parse(description)?;
    let file = match iface {
        None => Some(config::load(config_path)?),
        Some(_) => None,
    };
    require_root()?;
    let (ruleset, origin) = match file {
        Some(ruleset) => {
            let origin = config_path.map_or("the defaults (no -i or -c)".to_string(), |p| {
                format!("file {}", p.display())
            });
            (ruleset, origin)
        }
        None => explain::live_policy(root, iface)?,
    };
    let mut explanation = explain::explain_packet(&ruleset, direction, &packet)?;
    if iface.is_some() {
        explanation.notes.push(LIVE_NOTE);
    }
    if json {
        println!("{}", json::line(&explanation.to_json(origin)));
    } else {
        print!("{}", explain::to_text(&explanation));
        println!("policy: {origin}");
    }
    Ok(())
}
