//! `sipwall ban add|del|list`: the live ban set.
use anyhow::Result;

use filter_kernel::{pins::PinRoot, privileges::require_root};
use filter_policy::{banlist, cidr};

use super::BanAction;
use crate::ops::{self, banlist::Change, json, lockout};

pub fn run(root: &PinRoot, action: BanAction) -> Result<()> {
    let (iface, change) = match action {
        BanAction::List { iface, json } => return list(root, iface.as_deref(), json),
        BanAction::Add {
            iface,
            cidrs,
            file,
            duration,
            force,
        } => {
            let duration = duration
                .as_deref()
                .map(banlist::parse_duration)
                .transpose()?;
            let mut nets = cidr::parse_all(&cidrs)?;
            if let Some(file) = file {
                nets.extend(banlist::read_file(&file)?);
            }
            if !force {
                lockout::check_bans(&nets)?;
            }
            (
                iface,
                Change::Add {
                    nets,
                    duration,
                    force,
                },
            )
        }
        BanAction::Del {
            iface,
            cidrs,
            missing_ok,
        } => (iface, Change::Del(cidr::parse_all(&cidrs)?, missing_ok)),
    };
    require_root()?;
    let iface = root.resolve(iface.as_deref())?;
    let bans = ops::banlist::apply(root, &iface, change)?;
    println!("{iface}: {} entries banned", bans.len());
    Ok(())
}

fn list(root: &PinRoot, iface: Option<&str>, json: bool) -> Result<()> {
    require_root()?;
    let (_, bans) = ops::banlist::list(root, iface)?;
    if json {
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
