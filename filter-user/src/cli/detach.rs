//! `sipwall detach`: remove the attachment and its pins.
use anyhow::Result;

use filter_kernel::{attach, pins::PinRoot, privileges::require_root};

pub fn run(root: &PinRoot, iface: Option<&str>) -> Result<()> {
    require_root()?;
    let iface = root.resolve(iface)?;
    attach::detach(root, &iface)?;
    println!("detached sipwall from {iface} and removed its pins");
    Ok(())
}
