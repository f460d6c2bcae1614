//! Where an attachment lives on bpffs: `<root>/netns-<INODE>/<iface>/` holds
//! the XDP link (`link`), every map of the program and the `INFO` map. An
//! attachment belongs to a network namespace and an interface in it: the
//! namespace's folder keeps same-named interfaces of different namespaces
//! (every pod's `eth0`) apart, and every command sees only its own
//! namespace's attachments (others are listed by `status`). Pins of layout
//! 3 (`<root>/<iface>/`) are adopted by the namespace whose interface runs
//! their program ([`PinRoot::adopt_legacy`]).
//!
//! The root is mounted as bpffs when it is not, and locked while a command
//! changes it, so two sipwall commands never interleave their updates.
use std::{
    fs::File,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context as _, Result};
use filter_common::{AttachInfo, ATTACH_MAGIC, PIN_LAYOUT_VERSION};
use filter_policy::error::UsageError;

use crate::{maps, netns::NetnsId};

/// The layout of layout-3 pins once moved to their namespace's folder: the
/// maps unchanged, only the place (see [`PinRoot::adopt_legacy`]).
const MOVED_LAYOUT_VERSION: u32 = 4;

const BPF_FS_MAGIC: i64 = 0xcafe4a11;
pub const LINK_PIN: &str = "link";
/// The TCX link of the TC egress program (strict mode's flow learning).
pub const EGRESS_LINK_PIN: &str = "egress_link";
pub const INFO_PIN: &str = "INFO";

/// The pin root as one network namespace sees it.
pub struct PinRoot {
    root: PathBuf,
    netns: NetnsId,
}

/// An attachment of another network namespace, seen from this one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elsewhere {
    pub netns: NetnsId,
    pub iface: String,
}

impl PinRoot {
    /// The pin root `root` for the namespace the calling thread is in.
    pub fn new(root: &Path) -> PinRoot {
        // Without /proc there is no telling namespaces apart; such a
        // system has one that matters (every command fails anyway when
        // it needs /proc for more).
        let netns = NetnsId::current().unwrap_or(NetnsId(0));
        PinRoot::for_netns(root, netns)
    }

    pub fn for_netns(root: &Path, netns: NetnsId) -> PinRoot {
        PinRoot {
            root: root.to_path_buf(),
            netns,
        }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn netns(&self) -> NetnsId {
        self.netns
    }

    /// This namespace's folder under the root.
    pub fn netns_dir(&self) -> PathBuf {
        self.root.join(self.netns.dir_name())
    }

    pub fn iface_dir(&self, iface: &str) -> PathBuf {
        self.netns_dir().join(iface)
    }

    /// Refuses a root that cannot be a folder of pins: a regular file, a
    /// pin (a BPF object on bpffs), a path through a file. Checked before
    /// any command uses the root, so the mistake is named instead of
    /// surfacing as "File exists" or "Not a directory" later.
    pub fn check_usable(&self) -> Result<(), UsageError> {
        let shown = self.root.display();
        match std::fs::metadata(&self.root) {
            Ok(meta) if meta.is_dir() => Ok(()),
            Ok(_) if self.root.parent().is_some_and(is_bpffs) => Err(UsageError(format!(
                "--bpffs {shown} is a pin (a BPF object on bpffs), not a folder: --bpffs names the folder sipwall keeps its pins in (default /sys/fs/bpf/sipwall)"
            ))),
            Ok(_) => Err(UsageError(format!(
                "--bpffs {shown} is a file, not a folder: --bpffs names the folder sipwall keeps its pins in (default /sys/fs/bpf/sipwall)"
            ))),
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => Err(UsageError(format!(
                "--bpffs {shown}: a part of this path is a file, not a folder"
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Created (and mounted) when first needed; but a missing
                // part under an existing file is the mistake above.
                let mut up = self.root.parent();
                while let Some(dir) = up {
                    if let Ok(meta) = std::fs::metadata(dir) {
                        if !meta.is_dir() {
                            return Err(UsageError(format!(
                                "--bpffs {shown}: {} is a file, not a folder",
                                dir.display()
                            )));
                        }
                        break;
                    }
                    up = dir.parent();
                }
                Ok(())
            }
            // Permission denied and the like: the privilege check that
            // follows says what is wrong better.
            Err(_) => Ok(()),
        }
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

    /// Interfaces of this namespace with sipwall pins, sorted.
    pub fn attached(&self) -> Result<Vec<String>> {
        self.adopt_legacy();
        let mut out: Vec<String> = list_dir(&self.netns_dir())?
            .into_iter()
            .filter(|name| self.has_pins(name))
            .collect();
        out.sort();
        Ok(out)
    }

    /// Attachments of other namespaces under this root, sorted.
    pub fn elsewhere(&self) -> Result<Vec<Elsewhere>> {
        let mut out = Vec::new();
        for name in list_dir(&self.root)? {
            let Some(netns) = NetnsId::from_dir_name(&name) else {
                continue;
            };
            if netns == self.netns {
                continue;
            }
            let other = PinRoot::for_netns(&self.root, netns);
            for iface in list_dir(&other.netns_dir())? {
                if other.has_pins(&iface) {
                    out.push(Elsewhere { netns, iface });
                }
            }
        }
        out.sort_by(|a, b| (a.netns, &a.iface).cmp(&(b.netns, &b.iface)));
        Ok(out)
    }

    /// Folders of layout 3 (`<root>/<iface>/`) still waiting to be adopted
    /// by the namespace they belong to.
    pub fn legacy(&self) -> Vec<String> {
        let mut out: Vec<String> = list_dir(&self.root)
            .unwrap_or_default()
            .into_iter()
            .filter(|name| NetnsId::from_dir_name(name).is_none())
            .filter(|name| {
                let dir = self.root.join(name);
                dir.join(INFO_PIN).exists() || dir.join(LINK_PIN).exists()
            })
            .collect();
        out.sort();
        out
    }

    /// Adopts pins of layout 3 that belong to this namespace: a folder
    /// `<root>/<iface>/` whose pinned link runs the program this
    /// namespace's `<iface>` runs (or, when that link is defunct, whose
    /// recorded interface index is this namespace's `<iface>`'s) is moved
    /// to `<root>/netns-<INODE>/<iface>/` and its INFO record upgraded;
    /// the maps keep their layout, so nothing else changes and the filter
    /// keeps running. Others are left for their own namespace (`status`
    /// lists them). Best effort: a failure is logged as a warning.
    pub fn adopt_legacy(&self) {
        for iface in self.legacy() {
            if let Err(e) = self.adopt_one(&iface) {
                log::warn!("could not adopt the layout-3 pins of {iface}: {e:#}");
            }
        }
    }

    fn adopt_one(&self, iface: &str) -> Result<()> {
        if check_iface_name(iface).is_err() || self.has_pins(iface) {
            return Ok(());
        }
        let old = self.root.join(iface);
        if !self.belongs_here(iface, &old) {
            return Ok(());
        }
        let _lock = self.lock()?;
        if !old.exists() || self.has_pins(iface) {
            return Ok(()); // another command adopted it meanwhile
        }
        let mut info = read_info_unchecked(&old)?;
        if info.magic != ATTACH_MAGIC || info.layout_version != 3 {
            return Ok(());
        }
        // Layout 3 only moved the folder; the maps must be this sipwall's
        // (a sipwall before the abuse controls had fewer maps and a shorter
        // policy): those are left, and `status` lists them.
        if let Err(e) = crate::maps::Maps::open_pinned(&old) {
            log::warn!(
                "the layout-3 pins of {iface} hold maps of an older sipwall ({e:#}); not adopted: `rm -r {}` detaches them, then attach again",
                old.display()
            );
            return Ok(());
        }
        create_dir(&self.netns_dir())?;
        let new = self.iface_dir(iface);
        std::fs::rename(&old, &new)
            .with_context(|| format!("moving {} to {}", old.display(), new.display()))?;
        // Moved, but their maps are still layout 3's: recorded as layout 4
        // (the move), so that a sipwall whose maps changed since refuses
        // them (`detach` removes them) rather than misreading them.
        info.layout_version = MOVED_LAYOUT_VERSION.min(PIN_LAYOUT_VERSION);
        write_info(&new, &info)?;
        log::info!(
            "adopted the pins of {iface} from sipwall's previous layout: moved {} to {}",
            old.display(),
            new.display()
        );
        Ok(())
    }

    /// Whether the layout-3 folder `old` of `iface` is this namespace's.
    fn belongs_here(&self, iface: &str, old: &Path) -> bool {
        use crate::{
            iface as kiface,
            links::{link_is_live, open_link},
        };
        let Ok(index) = kiface::if_index(iface) else {
            return false;
        };
        let running = kiface::iface_xdp(iface).ok().flatten();
        match (open_link(&old.join(LINK_PIN)), running) {
            (Some((_, prog)), Some(now)) => prog == now.program_id,
            // A link that runs nowhere: the interface was deleted; adopt
            // by the index recorded, as layout 3 did.
            (Some(_), None) => {
                !link_is_live(&old.join(LINK_PIN))
                    && read_info_unchecked(old).is_ok_and(|info| info.ifindex == index)
            }
            (None, _) => read_info_unchecked(old).is_ok_and(|info| info.ifindex == index),
        }
    }

    /// The interface a command is about: the one given, or the only one
    /// attached.
    pub fn resolve(&self, given: Option<&str>) -> Result<String> {
        if let Some(iface) = given {
            check_iface_name(iface)?;
            self.adopt_legacy();
            if !self.has_pins(iface) {
                bail!(
                    "the filter is not attached to {iface} in this network namespace, {} (no pins in {}); attach it with `sipwall attach -i {iface}`{}",
                    self.netns.describe(),
                    self.iface_dir(iface).display(),
                    self.elsewhere_hint(Some(iface))
                );
            }
            return Ok(iface.to_string());
        }
        let attached = self.attached()?;
        match attached.as_slice() {
            [one] => Ok(one.clone()),
            [] => bail!(
                "the filter is not attached to any interface in this network namespace, {} (no pins under {}); attach it with `sipwall attach -i IFACE`{}",
                self.netns.describe(),
                self.netns_dir().display(),
                self.elsewhere_hint(None)
            ),
            many => Err(UsageError(format!(
                "attached to several interfaces in this network namespace ({}): name one with -i",
                many.join(", ")
            ))
            .into()),
        }
    }

    /// "; in other network namespaces: …" naming the attachments of other
    /// namespaces (of `iface`, when given) and how to reach them.
    fn elsewhere_hint(&self, iface: Option<&str>) -> String {
        let others: Vec<String> = self
            .elsewhere()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| iface.is_none_or(|i| i == e.iface))
            .map(|e| format!("{} in {}", e.iface, e.netns.describe()))
            .collect();
        if others.is_empty() {
            return String::new();
        }
        format!(
            ". Attached in other network namespaces: {}; run sipwall there (`sipwall --netns NAME|PATH ...`) to act on them",
            others.join(", ")
        )
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
            log::info!("waiting for another sipwall command to finish...");
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

/// Whether `path` is on a bpffs.
pub fn is_bpffs(path: &Path) -> bool {
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

/// The names in folder `dir`; none when it does not exist.
fn list_dir(dir: &Path) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    Ok(entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect())
}

/// Reads the `INFO` map of an attachment and checks that it is sipwall's
/// and of this version.
pub fn read_info(dir: &Path) -> Result<AttachInfo> {
    let info = read_info_unchecked(dir)?;
    check_info(&info, dir)?;
    Ok(info)
}

/// Reads the `INFO` map of an attachment, whatever its version.
fn read_info_unchecked(dir: &Path) -> Result<AttachInfo> {
    maps::read_info(&dir.join(INFO_PIN))
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
    maps::write_info(&dir.join(INFO_PIN), info)
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
