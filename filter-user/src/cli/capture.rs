//! `sipwall capture`: the packets the filter judges, to pcapng.
use std::io::Write;

use anyhow::{Context as _, Result};
use filter_common::capture::{CAPTURE_DROP, CAPTURE_IN, CAPTURE_OUT, CAPTURE_PASS};
use filter_kernel::{pins::PinRoot, privileges::require_root};

use super::args::{CaptureArgs, CaptureVerdict, CheckDirection};
use crate::ops::capture::{self, Options};

pub fn run(root: &PinRoot, args: CaptureArgs) -> Result<()> {
    let directions = match args.direction {
        Some(CheckDirection::In) => CAPTURE_IN,
        Some(CheckDirection::Out) => CAPTURE_OUT,
        None => CAPTURE_IN | CAPTURE_OUT,
    };
    let verdicts = match args.verdict {
        Some(CaptureVerdict::Drop) => CAPTURE_DROP,
        Some(CaptureVerdict::Pass) => CAPTURE_PASS,
        None => CAPTURE_DROP | CAPTURE_PASS,
    };
    let (reasons, out_reasons) = capture::reason_masks(&args.reasons, directions)?;
    let opts = Options {
        iface: args.attached.iface,
        reasons,
        out_reasons,
        verdicts,
        directions,
        count: args.count,
        duration: args.duration,
        snaplen: args.snaplen,
        rate: args.rate,
    };
    require_root()?;
    let path = args.write;
    let open = move || -> Result<Box<dyn Write>> {
        if path.as_os_str() == "-" {
            return Ok(Box::new(std::io::BufWriter::new(std::io::stdout().lock())));
        }
        let file =
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Box::new(std::io::BufWriter::new(file)))
    };
    capture::run(root, &opts, open)?;
    Ok(())
}
