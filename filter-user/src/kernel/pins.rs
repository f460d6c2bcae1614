//! Where an attachment lives on bpffs: `<root>/<iface>/` holds the XDP link
//! (`link`), every map of the program and the `INFO` map. The root is
//! mounted as bpffs when it is not, and locked while a command changes it,
//! so two sipwall commands never interleave their updates.
use std::{
    fs::File,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context as _, Result};
use aya::maps::{Array, MapData};
use filter_common::{AttachInfo, ATTACH_MAGIC, PIN_LAYOUT_VERSION};

use crate::error::UsageError;

const BPF_FS_MAGIC: i64 = 0xcafe4a11;
pub const LINK_PIN: &str = "link";
pub const INFO_PIN: &str = "INFO";

pub struct PinRoot {
    root: PathBuf,
}

impl PinRoot {
    pub fn new(root: &Path) -> PinRoot {
        PinRoot {
            root: root.to_path_buf(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn iface_dir(&self, iface: &str) -> PathBuf {
        self.root.join(iface)
    }

    /// Whether `iface` has pins here: its `INFO` map or its link (a folder
    /// missing one of them is damaged, not absent).
    fn has_pins(&self, iface: &str) -> bool {
        let dir = self.iface_dir(iface);
        dir.join(INFO_PIN).exists() || dir.join(LINK_PIN).exists()
    }

    /// Makes sure the root exists on a bpffs, mounting one if needed: on
    /// `/sys/fs/bpf` when the root is below that unmounted standard place,
    /// else on the root itself.
    pub fn ensure_mounted(&self) -> Result<()> {
        if is_bpffs(&self.root) {
            return Ok(());
        }
        if let Some(parent) = self.root.parent() {
            if is_bpffs(parent) {
                return create_dir(&self.root);
            }
            if parent == Path::new("/sys/fs/bpf") {
                mount_bpffs(parent)?;
                return create_dir(&self.root);
            }
        }
        // Never hide files: a mistyped --bpffs must not mount over them.
        if std::fs::read_dir(&self.root).is_ok_and(|mut d| d.next().is_some()) {
            return Err(UsageError(format!(
                "{} is not on bpffs and is not empty: sipwall will not mount bpffs over it (check --bpffs / SIPWALL_BPFFS)",
                self.root.display()
            ))
            .into());
        }
        create_dir(&self.root)?;
        mount_bpffs(&self.root)
    }

    /// Interfaces with sipwall pins, sorted.
    pub fn attached(&self) -> Result<Vec<String>> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("listing {}", self.root.display())),
        };
        let mut out: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| self.has_pins(name))
            .collect();
        out.sort();
        Ok(out)
    }

    /// The interface a command is about: the one given, or the only one
    /// attached.
    pub fn resolve(&self, given: Option<&str>) -> Result<String> {
        if let Some(iface) = given {
            check_iface_name(iface)?;
            if !self.has_pins(iface) {
                bail!(
                    "the filter is not attached to {iface} (no pins in {}); attach it with `sipwall attach -i {iface}`",
                    self.iface_dir(iface).display()
                );
            }
            return Ok(iface.to_string());
        }
        let attached = self.attached()?;
        match attached.as_slice() {
            [one] => Ok(one.clone()),
            [] => bail!(
                "the filter is not attached to any interface (no pins under {}); attach it with `sipwall attach -i IFACE`",
                self.root.display()
            ),
            many => Err(UsageError(format!(
                "sipwall is attached to several interfaces ({}): name one with -i",
                many.join(", ")
            ))
            .into()),
        }
    }

    /// Serialises commands that change pins or maps: an exclusive flock on
    /// the root directory, held until the guard is dropped.
    pub fn lock(&self) -> Result<RootLock> {
        self.ensure_mounted()?;
        let dir = File::open(&self.root)
            .with_context(|| format!("opening {} to lock it", self.root.display()))?;
        let fd = dir.as_raw_fd();
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            eprintln!("sipwall: waiting for another sipwall command to finish...");
            // SAFETY: as above.
            if unsafe { libc::flock(fd, libc::LOCK_EX) } != 0 {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("locking {}", self.root.display()));
            }
        }
        Ok(RootLock { _dir: dir })
    }
}

/// Refuses what cannot be a Linux interface name (the kernel's rules:
/// 1 to 15 bytes, not `.` or `..`, no `/`, `:` or white space). The name
/// becomes a folder under the pin root, so this also keeps paths inside it.
pub fn check_iface_name(name: &str) -> Result<(), UsageError> {
    let bad = name.is_empty()
        || name.len() > 15
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if bad {
        return Err(UsageError(format!(
            "{name:?} is not a valid interface name (1-15 characters, no '/', ':' or spaces; `ip link` lists the interfaces)"
        )));
    }
    Ok(())
}

/// Holds the lock on the pin root; closing the file releases it.
pub struct RootLock {
    _dir: File,
}

fn is_bpffs(path: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statfs is plain old data, valid when zeroed.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out-pointer.
    unsafe { libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == BPF_FS_MAGIC }
}

fn create_dir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))
}

/// Mounts a new bpffs instance on `path` (created if missing).
pub fn mount_bpffs(path: &Path) -> Result<()> {
    create_dir(path)?;
    let target = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())?;
    // SAFETY: valid C strings; no data argument.
    let rc = unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            target.as_ptr(),
            c"bpf".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("mounting bpffs on {}", path.display()));
    }
    Ok(())
}

/// Reads the `INFO` map of an attachment and checks that it is sipwall's
/// and of this version.
pub fn read_info(dir: &Path) -> Result<AttachInfo> {
    let path = dir.join(INFO_PIN);
    let data = MapData::from_pin(&path).with_context(|| {
        format!(
            "opening {} (sipwall's pins are damaged: attaching again recreates them, `sipwall detach` removes them)",
            path.display()
        )
    })?;
    let map: Array<MapData, AttachInfo> = Array::try_from(aya::maps::Map::Array(data))
        .with_context(|| {
            format!(
            "{} is not sipwall's: pins from an incompatible version? `sipwall detach` removes them",
            path.display()
        )
        })?;
    let info = map
        .get(&0, 0)
        .with_context(|| format!("reading {}", path.display()))?;
    check_info(&info, dir)?;
    Ok(info)
}

fn check_info(info: &AttachInfo, dir: &Path) -> Result<()> {
    if info.magic != ATTACH_MAGIC {
        bail!("{} holds pins that are not sipwall's", dir.display());
    }
    if info.layout_version != PIN_LAYOUT_VERSION {
        bail!(
            "the pins in {} are from an incompatible sipwall version (layout {}, this sipwall uses {}); `sipwall detach` removes them, then attach again",
            dir.display(),
            info.layout_version,
            PIN_LAYOUT_VERSION
        );
    }
    Ok(())
}

/// Creates (or overwrites) the `INFO` map pinned in `dir`.
pub fn write_info(dir: &Path, info: &AttachInfo) -> Result<()> {
    let path = dir.join(INFO_PIN);
    let context = || format!("writing {}", path.display());
    match MapData::from_pin(&path) {
        Ok(data) => {
            let mut map: Array<MapData, AttachInfo> = Array::try_from(aya::maps::Map::Array(data))?;
            map.set(0, info, 0).with_context(context)
        }
        Err(_) => {
            let mut map =
                Array::<MapData, AttachInfo>::create(1, 0).context("creating the INFO map")?;
            map.set(0, info, 0).with_context(context)?;
            map.pin(&path).with_context(context)
        }
    }
}

/// Removes every pin in `dir`, then `dir`.
pub fn remove_dir(dir: &Path) -> Result<()> {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            std::fs::remove_file(entry.path())
                .with_context(|| format!("removing {}", entry.path().display()))?;
        }
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", dir.display()))
        }
        _ => Ok(()),
    }
}
