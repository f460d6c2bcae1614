//! Attaching, upgrading and detaching the filter on an interface.
//!
//! The XDP program is attached through a bpf_link that is pinned with the
//! maps, so it outlives the process. Attaching over sipwall's own link
//! swaps the program in place (bpf_link_update: no detach gap, no NIC reset)
//! and keeps maps, allowlist and counters. Another XDP program on the
//! interface is never replaced.
//!
//! [`attach`] works in three steps: [`plan`] looks at what is there and
//! decides (refusing before anything changes), [`install`] loads the program
//! with its pinned maps and installs the ruleset, [`link`] puts it on the
//! interface. A fresh attachment that fails half-way leaves nothing behind
//! (see [`NewPinsGuard`]).
use std::{
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, Context as _, Result};
use aya::{
    programs::{
        links::{FdLink, LinkOrder, PinnedLink},
        tc::{SchedClassifierLink, TcAttachOptions},
        xdp::XdpLink,
        TcAttachType,
    },
    Ebpf,
};
use filter_common::{maps as map_names, AttachInfo, XdpMode, ATTACH_MAGIC, PIN_LAYOUT_VERSION};

use filter_policy::{error::UsageError, ruleset::Ruleset};

use crate::{
    iface::{foreign_program, if_index, iface_xdp, link_header, IfaceXdp, LinkHeader},
    links::open_link,
    maps::Maps,
    pins::{self, PinRoot, EGRESS_LINK_PIN, INFO_PIN, LINK_PIN},
    program,
};

/// A running attachment, as this process holds it.
pub struct Attached {
    /// The loaded object (the `run` service drains its log records).
    pub ebpf: Ebpf,
    pub maps: Maps,
    pub mode: XdpMode,
    pub program_id: u32,
    /// Whether an existing sipwall attachment was upgraded in place.
    pub replaced: bool,
    /// Whether the allowlist was kept from the pinned maps (rather than
    /// taken from the ruleset given).
    pub kept_allowlist: bool,
}

/// Attaches (or upgrades) the filter on `iface` and installs `ruleset`.
/// `mode` `None` tries native, then falls back to skb. With
/// `keep_allowlist`, an existing attachment's allowlist is kept and
/// `ruleset.allow` ignored.
pub fn attach(
    root: &PinRoot,
    iface: &str,
    ruleset: &Ruleset,
    mode: Option<XdpMode>,
    keep_allowlist: bool,
) -> Result<Attached> {
    attach_object(
        program::PROGRAM_OBJECT,
        root,
        iface,
        ruleset,
        mode,
        keep_allowlist,
    )
}

/// [`attach`] with another build of the program's object (the bench's
/// `--candidate`): it must have the maps this build pins.
pub fn attach_object(
    object: &[u8],
    root: &PinRoot,
    iface: &str,
    ruleset: &Ruleset,
    mode: Option<XdpMode>,
    keep_allowlist: bool,
) -> Result<Attached> {
    // Before the lock: adopting takes it itself.
    root.adopt_legacy();
    let _lock = root.lock()?;
    let mut plan = plan(root, iface, mode, keep_allowlist)?;
    let guard = NewPinsGuard::new(&plan);
    let (mut ebpf, maps) = install(object, &plan, ruleset)?;
    let (mode, link) = link(&mut plan, &mut ebpf, mode)?;
    let program_id = link.info().context("reading the XDP link")?.program_id();
    if let Err(e) = link_egress(&mut ebpf, &plan.iface, &plan.dir) {
        if ruleset.egress.strict() {
            return Err(
                e.context("strict egress runs in the TC egress program (TCX: Linux 6.6 or later)")
            );
        }
        if ruleset.strict() {
            return Err(e.context(
                "strict mode needs the TC egress program to learn the host's own flows (TCX: Linux 6.6 or later)",
            ));
        }
        if ruleset.media.calls() {
            return Err(e.context(
                "[media] mode = \"calls\" needs the TC egress program to copy the host's own signalling (TCX: Linux 6.6 or later)",
            ));
        }
        log::warn!("the TC egress program is not attached ({e:#}); guard mode with open egress does not need it, strict modes will");
    }
    record_info(&plan, mode)?;
    guard.disarm();
    Ok(Attached {
        ebpf,
        maps,
        mode,
        program_id,
        replaced: plan.upgrade.is_some(),
        kept_allowlist: plan.keep_allowlist,
    })
}

/// What [`attach`] found and decided before changing anything.
struct Plan {
    iface: String,
    ifindex: u32,
    dir: PathBuf,
    /// The folder had pins before (an attachment, maybe damaged).
    existed: bool,
    /// The `attached_at` to record: the first attach's, when there was one.
    attached_at: u64,
    /// sipwall's own program on the interface, to replace in place.
    upgrade: Option<IfaceXdp>,
    /// The pinned link that program runs through (taken by [`link`]).
    upgrade_link: Option<FdLink>,
    /// Keep the live allowlist instead of the ruleset's.
    keep_allowlist: bool,
    /// What the interface's frames start with.
    link: LinkHeader,
}

fn plan(root: &PinRoot, iface: &str, mode: Option<XdpMode>, keep_allowlist: bool) -> Result<Plan> {
    let ifindex = if_index(iface)?;
    // A link the programs cannot read is refused before anything changes.
    let link = link_header(iface)?;
    let dir = root.iface_dir(iface);
    // An empty folder is no attachment.
    let existed = std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some());
    let attached_at = if dir.join(INFO_PIN).exists() {
        pins::read_info(&dir)?.attached_at
    } else {
        now_secs()
    };
    let on_iface = iface_xdp(iface)?;
    let our_link = open_link(&dir.join(LINK_PIN));
    let (upgrade, upgrade_link) = match (on_iface, our_link) {
        (Some(now), Some((link, prog))) if now.program_id == prog => (Some(now), Some(link)),
        (Some(now), _) => bail!(
            "{}. sipwall will not replace it",
            foreign_program(iface, now, root.path())
        ),
        (None, Some(_)) => {
            // The interface lost the program (deleted and created again):
            // the old link is defunct.
            let _ = std::fs::remove_file(dir.join(LINK_PIN));
            (None, None)
        }
        (None, None) => (None, None),
    };
    if let (Some(now), Some(wanted)) = (upgrade, mode) {
        if now.mode != Some(wanted) {
            return Err(UsageError(format!(
                "sipwall is attached to {iface} in {} mode; `sipwall detach -i {iface}` first to change the mode",
                now.mode_name()
            ))
            .into());
        }
    }

    // Maps whose pins were removed by hand are created afresh by the load:
    // what they held is gone, so an allowlist read back from them would be
    // empty or stale.
    let missing: Vec<String> = if existed {
        program::object_map_names()?
            .into_iter()
            .filter(|name| !dir.join(name).exists())
            .collect()
    } else {
        Vec::new()
    };
    let policy_maps_intact = !missing.iter().any(|name| {
        [map_names::ACTIVE, map_names::POLICY].contains(&name.as_str())
            || map_names::ALLOW_V4.contains(&name.as_str())
            || map_names::ALLOW_V6.contains(&name.as_str())
    });
    let keep = keep_allowlist && existed && policy_maps_intact;
    if !missing.is_empty() {
        log::warn!(
            "the pins of {iface} were incomplete (missing {}): recreated them{}",
            missing.join(", "),
            if keep_allowlist && !keep {
                "; the allowlist could not be kept, the configuration's is installed"
            } else {
                ""
            }
        );
    }
    Ok(Plan {
        iface: iface.to_string(),
        ifindex,
        dir,
        existed,
        attached_at,
        upgrade,
        upgrade_link,
        keep_allowlist: keep,
        link,
    })
}

/// Loads the program with its maps pinned in the plan's folder and makes
/// `ruleset` (or, when the plan keeps it, the live allowlist with the rest
/// of `ruleset`) the active generation.
fn install(object: &[u8], plan: &Plan, ruleset: &Ruleset) -> Result<(Ebpf, Maps)> {
    std::fs::create_dir_all(&plan.dir)
        .with_context(|| format!("creating {}", plan.dir.display()))?;
    let mut ebpf = program::load_object(object, Some(&plan.dir))?;
    let mut maps = Maps::take(&mut ebpf)?;
    let mut ruleset = ruleset.clone();
    if plan.keep_allowlist {
        ruleset.allow = maps.read_ruleset()?.allow;
    }
    maps.set_link(plan.link);
    maps.install(&ruleset)?;
    Ok((ebpf, maps))
}

/// Puts the loaded program on the interface: in place of sipwall's running
/// one, or through a new pinned link. Returns the mode it runs in and the
/// link.
fn link(plan: &mut Plan, ebpf: &mut Ebpf, mode: Option<XdpMode>) -> Result<(XdpMode, FdLink)> {
    match (plan.upgrade, plan.upgrade_link.take()) {
        (Some(now), Some(link)) => {
            let mode = now
                .mode
                .context("sipwall's link runs in an unknown XDP mode")?;
            Ok((mode, replace_program(ebpf, link)?))
        }
        _ => attach_new(ebpf, &plan.iface, mode, &plan.dir),
    }
}

fn record_info(plan: &Plan, mode: XdpMode) -> Result<()> {
    pins::write_info(
        &plan.dir,
        &AttachInfo {
            magic: ATTACH_MAGIC,
            layout_version: PIN_LAYOUT_VERSION,
            ifindex: plan.ifindex,
            mode: mode as u32,
            attached_at: plan.attached_at,
        },
    )
}

/// Removes the pins of a fresh attachment that failed half-way when
/// dropped, unless [`NewPinsGuard::disarm`]ed. An attachment that existed
/// before is left as it is.
struct NewPinsGuard {
    dir: Option<PathBuf>,
}

impl NewPinsGuard {
    fn new(plan: &Plan) -> NewPinsGuard {
        NewPinsGuard {
            dir: (!plan.existed).then(|| plan.dir.clone()),
        }
    }

    fn disarm(mut self) {
        self.dir = None;
    }
}

impl Drop for NewPinsGuard {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = pins::remove_dir(dir);
        }
    }
}

/// Puts the TC egress program on the interface (TCX): in place of the one
/// behind sipwall's pinned egress link, or through a new link pinned in
/// `dir`. It runs after other TCX programs (it sees the packet as it
/// leaves, after any rewriting) and hands every packet on.
fn link_egress(ebpf: &mut Ebpf, iface: &str, dir: &Path) -> Result<()> {
    let path = dir.join(EGRESS_LINK_PIN);
    let tc = program::egress_mut(ebpf)?;
    if let Some((link, _)) = open_link(&path) {
        let link = SchedClassifierLink::try_from(link)
            .context("sipwall's pinned egress link is not a TCX link")?;
        let id = tc
            .attach_to_link(link)
            .context("replacing the program behind sipwall's egress link (bpf_link_update)")?;
        drop(tc.take_link(id)?);
        return Ok(());
    }
    let id = tc
        .attach_with_options(
            iface,
            TcAttachType::Egress,
            TcAttachOptions::TcxOrder(LinkOrder::last()),
        )
        .with_context(|| format!("attaching the TC egress program to {iface} (TCX)"))?;
    let link = FdLink::try_from(tc.take_link(id)?)
        .context("the egress program was attached without a link")?;
    link.pin(&path)
        .with_context(|| format!("pinning the egress link at {}", path.display()))?;
    Ok(())
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
fn attach_new(
    ebpf: &mut Ebpf,
    iface: &str,
    mode: Option<XdpMode>,
    dir: &Path,
) -> Result<(XdpMode, FdLink)> {
    let xdp = program::program_mut(ebpf)?;
    let (id, mode) = match mode {
        Some(mode) => (attach_in(xdp, iface, mode)?, mode),
        None => match xdp.attach(iface, kernel_mode(XdpMode::Native)) {
            Ok(id) => (id, XdpMode::Native),
            Err(native_err) => {
                let id = attach_in(xdp, iface, XdpMode::Skb)?;
                log::warn!(
                    "{iface}'s driver refused native XDP ({native_err}); attached in skb (generic) mode instead"
                );
                (id, XdpMode::Skb)
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

fn kernel_mode(mode: XdpMode) -> aya::programs::XdpMode {
    match mode {
        XdpMode::Native => aya::programs::XdpMode::Driver,
        XdpMode::Skb => aya::programs::XdpMode::Skb,
        XdpMode::Hw => aya::programs::XdpMode::Hardware,
    }
}

fn attach_in(
    xdp: &mut aya::programs::Xdp,
    iface: &str,
    mode: XdpMode,
) -> Result<aya::programs::xdp::XdpLinkId> {
    xdp.attach(iface, kernel_mode(mode)).with_context(|| {
        let name = mode.name();
        if mode == XdpMode::Skb {
            format!("attaching to {iface} in {name} mode")
        } else {
            format!("attaching to {iface} in {name} mode (the driver may not support it: try --mode skb)")
        }
    })
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
    // The namespace's folder goes with its last attachment.
    let _ = std::fs::remove_dir(root.netns_dir());
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

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
