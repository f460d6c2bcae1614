//! `sipwall stats`: counters per reason, once or redrawn with rates.
use std::time::Duration;

use anyhow::Result;
use filter_kernel::{pins::PinRoot, privileges::require_root};

use super::args::StatsArgs;
use crate::{
    error::UsageError,
    ops::{
        json,
        snapshot::{warn_if_stale, Snapshot},
        stats,
    },
};

pub fn run(root: &PinRoot, args: &StatsArgs) -> Result<()> {
    let watch = args.redraw.watch.map(watch_interval).transpose()?;
    let json = args.output.json;
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
    let read = || -> Result<Vec<Snapshot>> {
        ifaces
            .iter()
            .map(|iface| {
                let mut snap = Snapshot::gather(root, iface);
                snap.check_readable()?;
                Ok(snap)
            })
            .collect()
    };
    let first = read()?;
    first.iter().for_each(warn_if_stale);
    let Some(interval) = watch else {
        let now = first;
        if json {
            println!("{}", json::line(&stats::to_json(&now)));
        } else {
            print!("{}", stats::to_text(&now, None));
        }
        return Ok(());
    };
    let mut prev = first;
    let mut last = std::time::Instant::now();
    loop {
        std::thread::sleep(interval);
        let now = read()?;
        let elapsed = last.elapsed().as_secs_f64();
        last = std::time::Instant::now();
        if json {
            // One JSON document per line.
            println!("{}", json::line(&stats::to_json(&now)));
        } else {
            // Redraw in place: home the cursor and clear the screen.
            print!(
                "\x1b[H\x1b[2J{}",
                stats::to_text(&now, Some((&prev, elapsed)))
            );
            println!("\nevery {}s; Ctrl-C to stop", interval.as_secs_f64());
        }
        prev = now;
    }
}

/// `--watch SECS`, refused unless it is a sane interval (a zero sleep
/// would spin; a huge one does not fit a Duration).
pub(crate) fn watch_interval(secs: f64) -> Result<Duration, UsageError> {
    const MIN: f64 = 0.01;
    const MAX: f64 = 86_400.0;
    if !(MIN..=MAX).contains(&secs) {
        return Err(UsageError(format!(
            "--watch {secs}: the interval must be a number of seconds from {MIN} to {MAX}"
        )));
    }
    Ok(Duration::from_secs_f64(secs))
}
