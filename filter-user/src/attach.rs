//! Attaching, upgrading and detaching the filter on an interface.
//!
//! The XDP program is attached through a bpf_link that is pinned with the
//! maps, so it outlives the process. Attaching over sipwall's own link
//! swaps the program in place (bpf_link_update: no detach gap, no NIC reset)
//! and keeps maps, allowlist and counters. Another XDP program on the
//! interface is never replaced.
use std::{
    path::Path,
    process::Command,
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, Context as _, Result};
use aya::{
    programs::{links::FdLink, links::PinnedLink, xdp::XdpLink, XdpMode},
    Ebpf,
};
use filter_common::{maps as map_names, AttachInfo, ATTACH_MAGIC, PIN_LAYOUT_VERSION};

use crate::{
    cli::AttachMode,
    error::UsageError,
    maps::Maps,
    pins::{self, PinRoot, INFO_PIN, LINK_PIN},
    program,
    ruleset::Ruleset,
};

pub const MODE_NATIVE: u32 = 1;
pub const MODE_SKB: u32 = 2;
pub const MODE_HW: u32 = 3;

pub fn mode_name(mode: u32) -> &'static str {
    match mode {
        MODE_NATIVE => "native",
        MODE_SKB => "skb",
        MODE_HW => "hw",
        _ => "unknown",
    }
}

/// A running attachment, as this process holds it.
pub struct Attached {
    /// The loaded object (the `run` service drains its log records).
    pub ebpf: Ebpf,
    pub maps: Maps,
    pub mode: u32,
    pub program_id: u32,
    /// Whether an existing sipwall attachment was upgraded in place.
    pub replaced: bool,
    /// Whether the allowlist was kept from the pinned maps (rather than
    /// taken from the ruleset given).
    pub kept_allowlist: bool,
}

/// What the interface has attached now, according to the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfaceXdp {
    pub program_id: u32,
    pub mode: u32,
}

/// Attaches (or upgrades) the filter on `iface` and installs `ruleset`.
/// With `keep_allowlist`, an existing attachment's allowlist is kept and
/// `ruleset.allow` ignored.
pub fn attach(
    root: &PinRoot,
    iface: &str,
    ruleset: &Ruleset,
    mode: AttachMode,
    keep_allowlist: bool,
) -> Result<Attached> {
    let ifindex = if_index(iface)?;
    let _lock = root.lock()?;
    let dir = root.iface_dir(iface);
    // An empty folder is no attachment.
    let existed = std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some());
    let had_pins = dir.join(INFO_PIN).exists();
    if had_pins {
        pins::read_info(&dir)?;
    }
    let on_iface = iface_xdp(iface)?;
    let our_link = open_link(&dir.join(LINK_PIN));
    let upgrade = match (on_iface, &our_link) {
        (Some(now), Some((_, prog))) if now.program_id == *prog => Some(now),
        (Some(now), _) => bail!(
            "{iface} already has an XDP program that is not sipwall's ({}); sipwall will not replace it. Remove it first (e.g. `ip link set dev {iface} xdp off`) if it should go",
            describe_program(now)
        ),
        (None, _) => None,
    };
    if let Some(now) = upgrade {
        let wanted = requested_mode(mode);
        if wanted.is_some_and(|w| w != now.mode) {
            return Err(UsageError(format!(
                "sipwall is attached to {iface} in {} mode; `sipwall detach -i {iface}` first to change the mode",
                mode_name(now.mode)
            ))
            .into());
        }
    } else if our_link.is_some() {
        // The interface lost the program (deleted and created again):
        // the old link is defunct.
        let _ = std::fs::remove_file(dir.join(LINK_PIN));
    }

    // Maps whose pins were removed by hand are created afresh by the load
    // below: what they held is gone, so an allowlist read back from them
    // would be empty or stale.
    let missing: Vec<&str> = if existed {
        program::MAP_NAMES
            .into_iter()
            .filter(|name| !dir.join(name).exists())
            .collect()
    } else {
        Vec::new()
    };
    let policy_maps_intact = !missing.iter().any(|name| {
        [map_names::ACTIVE, map_names::POLICY].contains(name)
            || map_names::ALLOW_V4.contains(name)
            || map_names::ALLOW_V6.contains(name)
    });
    let keep = keep_allowlist && existed && policy_maps_intact;
    if !missing.is_empty() {
        eprintln!(
            "sipwall: the pins of {iface} were incomplete (missing {}): recreated them{}",
            missing.join(", "),
            if keep_allowlist && !keep {
                "; the allowlist could not be kept, the configuration's is installed"
            } else {
                ""
            }
        );
    }

    let result = (|| {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut ebpf = program::load(Some(&dir))?;
        let mut maps = Maps::take(&mut ebpf)?;
        let mut ruleset = ruleset.clone();
        if keep {
            ruleset.allow = maps.read_ruleset()?.allow;
        }
        maps.install(&ruleset)?;
        let (mode, link) = match (upgrade, our_link) {
            (Some(now), Some((link, _))) => (now.mode, replace_program(&mut ebpf, link)?),
            _ => attach_new(&mut ebpf, iface, mode, &dir)?,
        };
        let program_id = link_program_id(&link)?;
        let attached_at = if had_pins {
            pins::read_info(&dir)
                .map(|i| i.attached_at)
                .unwrap_or_else(|_| now_secs())
        } else {
            now_secs()
        };
        pins::write_info(
            &dir,
            &AttachInfo {
                magic: ATTACH_MAGIC,
                layout_version: PIN_LAYOUT_VERSION,
                ifindex,
                mode,
                attached_at,
            },
        )?;
        Ok(Attached {
            ebpf,
            maps,
            mode,
            program_id,
            replaced: upgrade.is_some(),
            kept_allowlist: keep,
        })
    })();
    if result.is_err() && !existed {
        // Leave nothing half-made behind.
        let _ = pins::remove_dir(&dir);
    }
    result
}

fn requested_mode(mode: AttachMode) -> Option<u32> {
    match mode {
        AttachMode::Auto => None,
        AttachMode::Native => Some(MODE_NATIVE),
        AttachMode::Skb => Some(MODE_SKB),
        AttachMode::Hw => Some(MODE_HW),
    }
}

/// Swaps the program behind sipwall's pinned link for the new one.
fn replace_program(ebpf: &mut Ebpf, link: FdLink) -> Result<FdLink> {
    let xdp = program::program_mut(ebpf)?;
    let id = xdp
        .attach_to_link(
            XdpLink::try_from(link).context("sipwall's pinned link is not an XDP link")?,
        )
        .context("replacing the program behind sipwall's XDP link (bpf_link_update)")?;
    let link = xdp.take_link(id)?;
    Ok(FdLink::try_from(link)?)
}

/// Attaches through a new link, pinned in `dir`.
fn attach_new(ebpf: &mut Ebpf, iface: &str, mode: AttachMode, dir: &Path) -> Result<(u32, FdLink)> {
    let xdp = program::program_mut(ebpf)?;
    let (id, mode) = match mode {
        AttachMode::Native => (attach_in(xdp, iface, XdpMode::Driver)?, MODE_NATIVE),
        AttachMode::Skb => (attach_in(xdp, iface, XdpMode::Skb)?, MODE_SKB),
        AttachMode::Hw => (attach_in(xdp, iface, XdpMode::Hardware)?, MODE_HW),
        AttachMode::Auto => match xdp.attach(iface, XdpMode::Driver) {
            Ok(id) => (id, MODE_NATIVE),
            Err(native_err) => {
                let id = attach_in(xdp, iface, XdpMode::Skb)?;
                eprintln!(
                    "sipwall: {iface}'s driver refused native XDP ({native_err}); attached in skb (generic) mode instead"
                );
                (id, MODE_SKB)
            }
        },
    };
    let link = FdLink::try_from(xdp.take_link(id)?).context(
        "the kernel attached without a bpf_link (netlink fallback); sipwall needs Linux 5.9 or later to pin the attachment",
    )?;
    // Pin a second handle: dropping the PinnedLink would only close its fd.
    let path = dir.join(LINK_PIN);
    let pinned: PinnedLink = link
        .pin(&path)
        .with_context(|| format!("pinning the XDP link at {}", path.display()))?;
    Ok((mode, FdLink::from(pinned)))
}

fn attach_in(
    xdp: &mut aya::programs::Xdp,
    iface: &str,
    mode: XdpMode,
) -> Result<aya::programs::xdp::XdpLinkId> {
    xdp.attach(iface, mode).with_context(|| {
        let name = match mode {
            XdpMode::Driver => "native",
            XdpMode::Hardware => "hw",
            _ => "skb",
        };
        if mode == XdpMode::Skb {
            format!("attaching to {iface} in {name} mode")
        } else {
            format!("attaching to {iface} in {name} mode (the driver may not support it: try --mode skb)")
        }
    })
}

fn open_link(path: &Path) -> Option<(FdLink, u32)> {
    let link = FdLink::from(PinnedLink::from_pin(path).ok()?);
    let prog = link.info().ok()?.program_id();
    Some((link, prog))
}

fn link_program_id(link: &FdLink) -> Result<u32> {
    Ok(link.info().context("reading the XDP link")?.program_id())
}

/// Removes the attachment on `iface` and all its pins.
pub fn detach(root: &PinRoot, iface: &str) -> Result<()> {
    let _lock = root.lock()?;
    let dir = root.iface_dir(iface);
    if !dir.exists() {
        bail!(
            "the filter is not attached to {iface} (no pins in {})",
            dir.display()
        );
    }
    let ours = open_link(&dir.join(LINK_PIN)).map(|(_, prog)| prog);
    // Unpinning the link drops the last reference to it: the program
    // leaves the interface. The maps go with their pins.
    pins::remove_dir(&dir)?;
    // The kernel releases the link from a work queue: wait until the
    // interface no longer runs the program, so that "detached" is true
    // when this returns.
    if let Some(prog) = ours {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while iface_xdp(iface).is_ok_and(|x| x.is_some_and(|x| x.program_id == prog)) {
            if std::time::Instant::now() > deadline {
                bail!("removed the pins of {iface}, but after 5 s the kernel still runs program {prog} on it");
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
    Ok(())
}

pub fn if_index(iface: &str) -> Result<u32> {
    pins::check_iface_name(iface)?;
    let c = std::ffi::CString::new(iface)
        .map_err(|_| UsageError(format!("bad interface name {iface:?}")))?;
    // SAFETY: valid C string.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        bail!("interface {iface} does not exist (`ip link` lists the interfaces)");
    }
    Ok(index)
}

/// The XDP program the kernel has on `iface`, from `ip -details -json link`.
pub fn iface_xdp(iface: &str) -> Result<Option<IfaceXdp>> {
    let out = Command::new("ip")
        .args(["-details", "-json", "link", "show", "dev", iface])
        .output()
        .context("running `ip link` (package iproute2)")?;
    if !out.status.success() {
        bail!(
            "interface {iface} does not exist ({})",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let links: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("parsing `ip -json link`")?;
    let xdp = &links[0]["xdp"];
    let Some(program_id) = xdp["prog"]["id"].as_u64() else {
        return Ok(None);
    };
    // iproute2's modes: 1 driver, 2 generic, 3 offload.
    let mode = match xdp["mode"].as_u64() {
        Some(1) => MODE_NATIVE,
        Some(2) => MODE_SKB,
        Some(3) => MODE_HW,
        _ => 0,
    };
    Ok(Some(IfaceXdp {
        program_id: program_id as u32,
        mode,
    }))
}

fn describe_program(x: IfaceXdp) -> String {
    let name = aya::programs::loaded_programs()
        .filter_map(|p| p.ok())
        .find(|p| p.id() == x.program_id)
        .and_then(|p| p.name_as_str().map(str::to_string))
        .unwrap_or_else(|| "?".into());
    format!(
        "program id {} named {name:?}, {} mode",
        x.program_id,
        mode_name(x.mode)
    )
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
