//! `sipwall explain`: which row of the policy decides a described packet.
use anyhow::Result;
use filter_kernel::{pins::PinRoot, privileges::require_root};
use filter_policy::config;

use super::args::ExplainArgs;
use crate::ops::{
    check::Direction,
    describe,
    explain::{self, LIVE_NOTE},
    json,
};

pub fn run(root: &PinRoot, args: &ExplainArgs) -> Result<()> {
    let iface = args.iface.as_deref();
    let config_path = args.config.as_deref();
    let direction = Direction::from(args.direction);
    // The description and the file are usage errors: before privileges.
    let packet = describe::parse(&args.packet.join(" "))?;
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
    if args.output.json {
        println!("{}", json::line(&explanation.to_json(origin)));
    } else {
        print!("{}", explain::to_text(&explanation));
        println!("policy: {origin}");
    }
    Ok(())
}
