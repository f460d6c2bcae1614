//! `sipwall run`: the foreground service (see [`crate::ops::service`]).
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use anyhow::Result;
use filter_kernel::privileges::require_root;

use super::AttachMode;
use crate::ops::service::Service;

/// `run`'s flags.
pub struct Options {
    pub iface: String,
    pub config: Option<PathBuf>,
    pub mode: AttachMode,
    pub metrics: Option<SocketAddr>,
    pub force: bool,
    pub keep_attached: bool,
    /// Seconds to wait for `sipwall confirm` before rolling back.
    pub confirm: Option<u64>,
}

pub fn run(bpffs: &Path, options: Options) -> Result<()> {
    let service = Service {
        root: bpffs.to_path_buf(),
        iface: options.iface,
        config: options.config,
        mode: options.mode.requested(),
        metrics: options.metrics,
        force: options.force,
        keep_attached: options.keep_attached,
        confirm: options.confirm,
    };
    // Refuse a bad file before anything else.
    service.load_config()?;
    require_root()?;
    service.run()
}
