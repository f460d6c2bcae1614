//! `sipwall doctor`: production checks (see [`crate::ops::doctor`]); exit
//! status 0, 1 or 2 by the worst result (ok or skipped, warn, fail).
use std::path::Path;

use anyhow::Result;
use filter_kernel::{pins::check_iface_name, privileges::require_root};

use super::args::DoctorArgs;
use crate::{
    error::{UsageError, Verdict},
    ops::{
        doctor::{self, Options},
        json,
    },
};

pub fn run(bpffs: &Path, args: DoctorArgs) -> Result<()> {
    if let Some(i) = &args.attached.iface {
        check_iface_name(i)?;
    }
    if args.provider_host.trim().is_empty() {
        return Err(UsageError(
            "--provider-host is empty: give the provider's signalling hostname".into(),
        )
        .into());
    }
    require_root()?;
    let checks = doctor::run(&Options {
        root: bpffs.to_path_buf(),
        iface: args.attached.iface,
        config: args.config,
        provider_host: args.provider_host,
    });
    if args.output.json {
        println!("{}", json::line(&doctor::to_json(&checks)));
    } else {
        print!("{}", doctor::to_text(&checks));
    }
    match doctor::worst(&checks).exit_status() {
        0 => Ok(()),
        status => Err(Verdict(status).into()),
    }
}
