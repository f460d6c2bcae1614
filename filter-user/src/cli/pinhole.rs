//! `sipwall pinhole list|add|del`: calls mode's pinholes.
use anyhow::Result;
use filter_kernel::{pins::PinRoot, privileges::require_root};

use super::args::{PinholeAction, PinholeTarget, ShowArgs};
use crate::ops::{
    json,
    pinholes::{self, Change, Done, Remote},
};

pub fn run(root: &PinRoot, action: PinholeAction) -> Result<()> {
    // Usage errors first: they exit 2 even without root.
    let (target, change) = match action {
        PinholeAction::List(args) => return list(root, &args),
        PinholeAction::Add(args) => {
            let life = args
                .duration
                .as_deref()
                .map(pinholes::parse_for)
                .transpose()?;
            (args.target, Change::Add { life })
        }
        PinholeAction::Del(args) => (
            args.target,
            Change::Del {
                missing_ok: args.missing_ok,
            },
        ),
    };
    let PinholeTarget { iface, port, from } = target;
    let remote = pinholes::parse_remote(&from)?;
    require_root()?;
    let iface = root.resolve(iface.as_deref())?;
    let done = pinholes::apply(root, &iface, port, remote, change)?;
    let from = match remote {
        Remote::Any => "any source".to_string(),
        Remote::Addr(a) => a.to_string(),
    };
    match done {
        Done::Opened { life } => println!(
            "{iface}: pinhole open: UDP port {port} from {from}; it closes after {}s without media",
            life.as_secs()
        ),
        Done::Closed => println!("{iface}: pinhole closed: UDP port {port} from {from}"),
        Done::Missing => eprintln!("{iface}: no pinhole for UDP port {port} from {from}"),
    }
    Ok(())
}

fn list(root: &PinRoot, args: &ShowArgs) -> Result<()> {
    require_root()?;
    let ifaces = match args.attached.iface.as_deref() {
        Some(i) => vec![root.resolve(Some(i))?],
        None => {
            let all = root.attached()?;
            if all.is_empty() {
                root.resolve(None)?;
            }
            all
        }
    };
    let all = ifaces
        .iter()
        .map(|i| pinholes::list(root, i))
        .collect::<Result<Vec<_>>>()?;
    for l in all.iter().filter(|l| !l.calls) {
        eprintln!(
            "sipwall: {} is in range mode: media passes by range, through no pinhole",
            l.iface
        );
    }
    if args.output.json {
        let doc: Vec<json::Pinhole> = all
            .iter()
            .flat_map(|l| {
                l.pinholes
                    .iter()
                    .map(|p| pinholes::to_json(&l.iface, p, l.now_ns))
            })
            .collect();
        println!("{}", json::line(&doc));
    } else {
        print!("{}", pinholes::to_text(&all));
    }
    Ok(())
}
