//! Questions about an interface that the kernel answers: does it exist, and
//! which XDP program runs on it, in which mode.
use std::process::Command;

use anyhow::{bail, Context as _, Result};
use filter_common::XdpMode;

use crate::{
    error::UsageError,
    kernel::{links, pins},
};

/// What the interface has attached now, according to the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfaceXdp {
    pub program_id: u32,
    /// `None` when iproute2 reports a mode sipwall does not know.
    pub mode: Option<XdpMode>,
}

impl IfaceXdp {
    pub fn mode_name(&self) -> &'static str {
        self.mode.map_or("unknown", XdpMode::name)
    }
}

/// The interface's index; an error naming the interface when there is none.
pub fn if_index(iface: &str) -> Result<u32> {
    pins::check_iface_name(iface)?;
    let c = std::ffi::CString::new(iface)
        .map_err(|_| UsageError(format!("bad interface name {iface:?}")))?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
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
        Some(1) => Some(XdpMode::Native),
        Some(2) => Some(XdpMode::Skb),
        Some(3) => Some(XdpMode::Hw),
        _ => None,
    };
    Ok(Some(IfaceXdp {
        program_id: program_id as u32,
        mode,
    }))
}

/// "program id N named "x", M mode", for messages about a foreign program.
pub fn describe_program(x: IfaceXdp) -> String {
    format!(
        "program id {} named {:?}, {} mode",
        x.program_id,
        program_name(x.program_id).unwrap_or_else(|| "?".into()),
        x.mode_name()
    )
}

fn program_name(id: u32) -> Option<String> {
    aya::programs::loaded_programs()
        .filter_map(|p| p.ok())
        .find(|p| p.id() == id)
        .and_then(|p| p.name_as_str().map(str::to_string))
}

/// What an XDP program on `iface` that is not this pin root's attachment
/// is, and how to remove it, for `root` (the pin root in use):
/// - a sipwall program whose link is pinned under another pin root is
///   named as such, with that root;
/// - otherwise the `ip link` command for the mode it runs in (`xdpgeneric`
///   for skb mode: `xdp off` alone only removes a driver-mode program), or
///   `bpftool link detach` when it is held by a bpf_link (which `ip link`
///   cannot remove).
pub fn foreign_program(iface: &str, x: IfaceXdp, root: &std::path::Path) -> String {
    let name = program_name(x.program_id);
    if name.as_deref() == Some(crate::kernel::program::PROGRAM_NAME) {
        if let Some(other) =
            links::find_link_pin(x.program_id).and_then(|p| links::root_of_link_pin(&p))
        {
            if other != root {
                return format!(
                    "{iface} runs sipwall attached under another pin root, {} (program id {}, {} mode): use `sipwall --bpffs {} ...` for it (`sipwall --bpffs {} detach -i {iface}` removes it)",
                    other.display(),
                    x.program_id,
                    x.mode_name(),
                    other.display(),
                    other.display()
                );
            }
        }
        return format!(
            "{iface} runs a sipwall program ({}) whose pins are not under {} (another --bpffs? its pins removed by hand?); {}",
            describe_program(x),
            root.display(),
            removal_hint(iface, x)
        );
    }
    format!(
        "{iface} already has an XDP program that is not sipwall's ({}); {}",
        describe_program(x),
        removal_hint(iface, x)
    )
}

/// How to remove the program `x` from `iface`.
fn removal_hint(iface: &str, x: IfaceXdp) -> String {
    let link = aya::programs::loaded_links()
        .filter_map(|l| l.ok())
        .find(|l| l.program_id() == x.program_id);
    if let Some(link) = link {
        return format!(
            "it is held by bpf_link id {}: if it should go, stop its owner or run `bpftool link detach id {}`",
            link.id(),
            link.id()
        );
    }
    let keyword = match x.mode {
        Some(XdpMode::Native) => "xdpdrv",
        Some(XdpMode::Skb) => "xdpgeneric",
        Some(XdpMode::Hw) => "xdpoffload",
        None => "xdp",
    };
    format!("if it should go, remove it first: `ip link set dev {iface} {keyword} off`")
}
