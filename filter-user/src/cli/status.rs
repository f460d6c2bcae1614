//! `sipwall status`: every attachment (or the one named), checked against
//! what the kernel runs.
use anyhow::Result;

use crate::{
    kernel::{pins::PinRoot, privileges::require_root},
    ops::{snapshot::Snapshot, status},
};

pub fn run(root: &PinRoot, iface: Option<&str>, json: bool) -> Result<()> {
    require_root()?;
    let ifaces = match iface {
        Some(i) => vec![root.resolve(Some(i))?],
        None => root.attached()?,
    };
    let all: Vec<Snapshot> = ifaces.iter().map(|i| Snapshot::gather(root, i)).collect();
    if json {
        println!("{}", status::to_json(&all));
    } else {
        print!("{}", status::to_text(&all));
    }
    Ok(())
}
