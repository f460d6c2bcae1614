//! An attachment made earlier, opened from its pins: what every command but
//! `attach`, `check` and `demo` starts with.
use std::path::PathBuf;

use anyhow::Result;
use filter_common::{AttachInfo, XdpMode};

use crate::{maps::Maps, pins, pins::PinRoot};

/// The pinned attachment of one interface: its `INFO` record and its maps.
pub struct Attachment {
    pub iface: String,
    pub dir: PathBuf,
    pub info: AttachInfo,
    pub maps: Maps,
}

impl Attachment {
    /// Opens the attachment of `iface`, or of the only interface attached
    /// when `iface` is `None`: checks that its pins are sipwall's and of
    /// this version, then opens its maps.
    pub fn open(root: &PinRoot, iface: Option<&str>) -> Result<Attachment> {
        let iface = root.resolve(iface)?;
        Attachment::open_resolved(root, iface)
    }

    /// Like [`Attachment::open`] for an interface known to have pins.
    pub fn open_resolved(root: &PinRoot, iface: String) -> Result<Attachment> {
        let dir = root.iface_dir(&iface);
        let info = pins::read_info(&dir)?;
        let maps = Maps::open_pinned(&dir)?;
        Ok(Attachment {
            iface,
            dir,
            info,
            maps,
        })
    }

    /// The mode recorded at attach time.
    pub fn mode_name(&self) -> &'static str {
        XdpMode::name_of(self.info.mode)
    }
}
