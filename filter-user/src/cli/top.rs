//! `sipwall top`: the denied sources with the most packets.
use anyhow::Result;

use crate::{
    error::UsageError,
    kernel::{attachment::Attachment, pins::PinRoot, privileges::require_root},
    ops::stats,
};

pub fn run(root: &PinRoot, iface: Option<&str>, n: usize, json: bool) -> Result<()> {
    if n == 0 {
        return Err(UsageError("-n 0: nothing to show; give at least 1".into()).into());
    }
    require_root()?;
    let att = Attachment::open(root, iface)?;
    let mut sources = att.maps.denied_sources()?;
    sources.truncate(n);
    if json {
        println!("{}", stats::top_json(&sources));
    } else {
        print!("{}", stats::top_text(&att.iface, &sources));
    }
    Ok(())
}
