//! `sipwall top`'s reading: the sources of packets one attachment dropped
//! for one reason, read again as often as `--watch` asks.
use std::net::IpAddr;

use anyhow::Result;
use filter_common::{Counter, Reason};
use filter_kernel::{attachment::Attachment, pins::PinRoot};

use super::snapshot::{warn_if_stale, Snapshot};

pub struct DropSources {
    att: Attachment,
    reason: Reason,
}

impl DropSources {
    /// Opens the attachment of `iface`; warns on stderr when the filter
    /// there is not running.
    pub fn open(root: &PinRoot, iface: Option<&str>, reason: Reason) -> Result<DropSources> {
        let att = Attachment::open(root, iface)?;
        warn_if_stale(&Snapshot::liveness(root, &att.iface));
        Ok(DropSources { att, reason })
    }

    pub fn iface(&self) -> &str {
        &self.att.iface
    }

    /// Every source recorded now, with its packets and bytes.
    pub fn read(&self) -> Result<Vec<(IpAddr, Counter)>> {
        self.att.maps.drop_sources(self.reason)
    }
}
