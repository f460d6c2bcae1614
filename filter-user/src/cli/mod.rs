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
pub mod run;
pub mod stats;
pub mod status;
pub mod top;

use anyhow::Result;

pub use args::{AllowAction, AttachMode, BanAction, Cli, Command};
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
        Command::Check { .. } | Command::Explain { iface: None, .. }
    ) {
        root.check_usable()?;
    }
    match cli.command {
        Command::Attach {
            iface,
            config,
            mode,
            dry_run,
            force,
            confirm,
        } => attach::run(
            &root,
            &iface,
            config.as_deref(),
            mode,
            dry_run,
            force,
            confirm,
        ),
        Command::Confirm { iface } => {
            filter_kernel::privileges::require_root()?;
            let iface = crate::ops::confirm::confirm(&root, iface.as_deref())?;
            println!("confirmed: the policy on {iface} stays");
            Ok(())
        }
        Command::Detach { iface } => detach::run(&root, iface.as_deref()),
        Command::Status { iface, json } => status::run(&root, iface.as_deref(), json),
        Command::Allow { action } => allow::run(&root, action),
        Command::Stats { iface, json, watch } => stats::run(&root, iface.as_deref(), json, watch),
        Command::Top {
            iface,
            n,
            json,
            reason,
            watch,
        } => top::run(&root, iface.as_deref(), n, json, &reason, watch),
        Command::Ban { action } => ban::run(&root, action),
        Command::Check {
            pcap,
            config,
            json,
            local,
            local_iface,
            direction,
        } => check::run(
            &pcap,
            config.as_deref(),
            json,
            &local,
            &local_iface,
            direction.into(),
        ),
        Command::Capture {
            iface,
            reasons,
            verdict,
            direction,
            count,
            duration,
            snaplen,
            rate,
            write,
        } => capture::run(
            &root,
            capture::Args {
                iface,
                reasons,
                verdict,
                direction,
                count,
                duration,
                snaplen,
                rate,
                write,
            },
        ),
        Command::Explain {
            iface,
            config,
            direction,
            json,
            packet,
        } => explain::run(
            &root,
            iface.as_deref(),
            config.as_deref(),
            direction.into(),
            json,
            &packet.join(" "),
        ),
        Command::Run {
            iface,
            config,
            mode,
            metrics,
            force,
            keep_attached,
            confirm,
        } => run::run(
            &cli.bpffs,
            run::Options {
                iface,
                config,
                mode,
                metrics,
                force,
                keep_attached,
                confirm,
            },
        ),
        Command::Doctor {
            iface,
            config,
            provider_host,
            json,
        } => doctor::run(&cli.bpffs, iface, config, provider_host, json),
    }
}
