//! `sipwall run`: the foreground service (see [`crate::ops::service`]).
use std::path::Path;

use anyhow::Result;
use filter_kernel::privileges::require_root;

use super::args::RunArgs;
use crate::ops::service::Service;

pub fn run(bpffs: &Path, args: RunArgs) -> Result<()> {
    let service = Service {
        root: bpffs.to_path_buf(),
        iface: args.target.iface,
        config: args.target.config,
        mode: args.target.mode.requested(),
        metrics: args.metrics,
        force: args.policy.force,
        keep_attached: args.keep_attached,
        confirm: args.confirm,
    };
    // Refuse a bad file before anything else.
    service.load_config()?;
    require_root()?;
    service.run()
}
