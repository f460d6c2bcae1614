//! `sipwall ban add|del|list`: the live ban set.
use anyhow::Result;

use filter_kernel::{pins::PinRoot, privileges::require_root};
use filter_policy::{banlist, cidr};

use super::args::{BanAction, ShowArgs};
use crate::ops::{self, banlist::Change, json, lockout};

pub fn run(root: &PinRoot, action: BanAction) -> Result<()> {
    let (iface, change) = match action {
        BanAction::List(args) => return list(root, &args),
        BanAction::Add(args) => {
            let duration = args
                .duration
                .as_deref()
                .map(banlist::parse_duration)
                .transpose()?;
            let mut nets = cidr::parse_all(&args.cidrs)?;
            if let Some(file) = &args.file {
                nets.extend(banlist::read_file(file)?);
            }
            if !args.force {
                lockout::check_bans(&nets)?;
            }
            (
                args.attached,
                Change::Add {
                    nets,
                    duration,
                    force: args.force,
                },
            )
        }
        BanAction::Del(args) => (
            args.attached,
            Change::Del(cidr::parse_all(&args.cidrs)?, args.missing_ok),
        ),
    };
    require_root()?;
    let iface = root.resolve(iface.iface.as_deref())?;
    let bans = ops::banlist::apply(root, &iface, change)?;
    println!(
        "{iface}: {} banned",
        match bans.len() {
            1 => "1 entry".to_string(),
            n => format!("{n} entries"),
        }
    );
    Ok(())
}

fn list(root: &PinRoot, args: &ShowArgs) -> Result<()> {
    require_root()?;
    let (_, bans) = ops::banlist::list(root, args.attached.iface.as_deref())?;
    if args.output.json {
        let doc = json::BanList {
            bans: bans
                .iter()
                .map(|(net, left)| json::Ban {
                    cidr: net.to_string(),
                    expires_in: *left,
                })
                .collect(),
        };
        println!("{}", json::line(&doc));
    } else {
        for (net, left) in &bans {
            match left {
                Some(secs) => println!("{net}\texpires in {}", banlist::human_duration(*secs)),
                None => println!("{net}\tpermanent"),
            }
        }
    }
    Ok(())
}
