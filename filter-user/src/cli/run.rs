//! `sipwall run`: the foreground service (see [`crate::ops::service`]).
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use anyhow::Result;

use super::AttachMode;
use crate::{kernel::privileges::require_root, ops::service::Service};

pub fn run(
    bpffs: &Path,
    iface: String,
    config: Option<PathBuf>,
    mode: AttachMode,
    metrics: Option<SocketAddr>,
    force: bool,
) -> Result<()> {
    let service = Service {
        root: bpffs.to_path_buf(),
        iface,
        config,
        mode: mode.requested(),
        metrics,
        force,
    };
    // Refuse a bad file before anything else.
    service.load_config()?;
    require_root()?;
    service.run()
}
