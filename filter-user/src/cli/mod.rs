//! The command line: [`args`] is what clap parses; each subcommand has its
//! own module, whose `run` takes the parsed arguments, calls the layers
//! below and prints the result. [`run`] only dispatches.
pub mod allow;
pub mod args;
pub mod attach;
pub mod ban;
pub mod capture;
pub mod check;
pub mod detach;
pub mod doctor;
pub mod explain;
pub mod pinhole;
pub mod run;
pub mod stats;
pub mod status;
pub mod top;

use anyhow::Result;

use args::ExplainArgs;
pub use args::{AllowAction, AttachMode, BanAction, Cli, Command, PinholeAction};
use filter_kernel::pins::PinRoot;

pub fn run(cli: Cli) -> Result<()> {
    // First: interfaces, pins and `ip` all answer for the namespace this
    // (still only) thread is in.
    if let Some(netns) = &cli.netns {
        filter_kernel::netns::enter(netns)?;
    }
    let root = PinRoot::new(&cli.bpffs);
    if !matches!(
        cli.command,
        Command::Check(_) | Command::Explain(ExplainArgs { iface: None, .. })
    ) {
        root.check_usable()?;
    }
    match cli.command {
        Command::Attach(args) => attach::run(&root, &args),
        Command::Confirm(args) => {
            filter_kernel::privileges::require_root()?;
            let iface = crate::ops::confirm::confirm(&root, args.iface.as_deref())?;
            println!("confirmed: the policy on {iface} stays");
            Ok(())
        }
        Command::Detach(args) => detach::run(&root, args.iface.as_deref()),
        Command::Status(args) => status::run(&root, &args),
        Command::Allow(action) => allow::run(&root, action),
        Command::Stats(args) => stats::run(&root, &args),
        Command::Top(args) => top::run(&root, &args),
        Command::Ban(action) => ban::run(&root, action),
        Command::Pinhole(action) => pinhole::run(&root, action),
        Command::Check(args) => check::run(&args),
        Command::Capture(args) => capture::run(&root, args),
        Command::Explain(args) => explain::run(&root, &args),
        Command::Run(args) => run::run(&cli.bpffs, args),
        Command::Doctor(args) => doctor::run(&cli.bpffs, args),
    }
}
