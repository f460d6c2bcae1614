//! One function per command: parse what the command line gave, call the
//! module that does the work, print the result.
use anyhow::Result;

use crate::{
    check,
    cli::{Cli, Command},
    config, privileges,
};

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Check { pcap, config, json } => {
            // Configuration and capture errors are usage errors: report them
            // before asking for privileges.
            let ruleset = config::load(config.as_deref())?;
            let frames = check::read_frames(&pcap)?;
            privileges::require_root()?;
            let results = check::check(&frames, &ruleset)?;
            if json {
                println!("{}", check::to_json(&results));
            } else {
                print!("{}", check::to_text(&results));
            }
            Ok(())
        }
        _ => anyhow::bail!("not implemented yet"),
    }
}
