//! `sipwall top`: the sources of dropped packets with the most packets,
//! for one drop reason (`--reason`, default sip_denied).
use anyhow::Result;
use filter_common::{CounterFamily as _, Reason};
use filter_kernel::{pins::PinRoot, privileges::require_root};

use super::args::TopArgs;
use crate::{
    error::UsageError,
    ops::{json, stats, top::DropSources},
};

pub fn run(root: &PinRoot, args: &TopArgs) -> Result<()> {
    let watch = args
        .redraw
        .watch
        .map(super::stats::watch_interval)
        .transpose()?;
    let (n, json, reason) = (args.n, args.output.json, args.reason.as_str());
    if n == 0 {
        return Err(UsageError("-n 0: nothing to show; give at least 1".into()).into());
    }
    let reason = match Reason::from_name(reason) {
        Some(r) if r.drops() && r != Reason::Malformed => r,
        Some(Reason::Malformed) => return Err(UsageError(
            "--reason malformed: a malformed packet's source is not trusted, so none is recorded"
                .into(),
        )
        .into()),
        _ => {
            let drops: Vec<&str> = Reason::ALL
                .into_iter()
                .filter(|r| r.drops() && *r != Reason::Malformed)
                .map(Reason::name)
                .collect();
            return Err(UsageError(format!(
                "--reason {reason}: not a drop reason; sources are recorded for {}",
                drops.join(", ")
            ))
            .into());
        }
    };
    require_root()?;
    let drops = DropSources::open(root, args.attached.iface.as_deref(), reason)?;
    let mut sources = drops.read()?;
    if let Some(interval) = watch {
        return watch_sources(&drops, reason, n, json, interval, sources);
    }
    sources.truncate(n);
    if json {
        println!("{}", json::line(&stats::top_json(reason, &sources)));
    } else {
        print!("{}", stats::top_text(drops.iface(), reason, &sources));
    }
    Ok(())
}

/// `--watch`: redraws the `n` sources dropping fastest every `interval`,
/// with their rates since the previous reading, until interrupted.
fn watch_sources(
    drops: &DropSources,
    reason: Reason,
    n: usize,
    as_json: bool,
    interval: std::time::Duration,
    first: Vec<(std::net::IpAddr, filter_common::Counter)>,
) -> Result<()> {
    let mut prev = first;
    let mut last = std::time::Instant::now();
    loop {
        std::thread::sleep(interval);
        let now = drops.read()?;
        let secs = last.elapsed().as_secs_f64();
        last = std::time::Instant::now();
        let mut rates = stats::top_rates(&now, &prev, secs);
        rates.truncate(n);
        if as_json {
            // One JSON document per line.
            println!("{}", json::line(&stats::top_rates_json(reason, &rates)));
        } else {
            // Redraw in place: home the cursor and clear the screen.
            print!(
                "\x1b[H\x1b[2J{}",
                stats::top_rates_text(drops.iface(), reason, &rates)
            );
            println!("\nevery {}s; Ctrl-C to stop", interval.as_secs_f64());
        }
        prev = now;
    }
}
