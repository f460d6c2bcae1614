//! Questions about an interface that the kernel answers: does it exist, and
//! which XDP program runs on it, in which mode.
use std::process::Command;

use anyhow::{bail, Context as _, Result};
use filter_common::XdpMode;

use filter_policy::error::UsageError;

use crate::{links, pins};

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

/// What `ip -details -json link show dev IFACE` says of the interface.
fn link_details(iface: &str) -> Result<serde_json::Value> {
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
    Ok(links[0].clone())
}

/// The XDP program the kernel has on `iface`, from `ip -details -json link`.
pub fn iface_xdp(iface: &str) -> Result<Option<IfaceXdp>> {
    let link = link_details(iface)?;
    let xdp = &link["xdp"];
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
    if name.as_deref() == Some(crate::program::PROGRAM_NAME) {
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

/// What an interface's frames start with, as the programs read them: an
/// Ethernet header, or (on an L3 device) the IP header itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkHeader {
    Ethernet,
    /// No link header: tun, WireGuard, PPP, raw IP, IP-in-IP, SIT, ip6tnl.
    Ip,
}

impl LinkHeader {
    /// The name in `status --json` (`link`).
    pub fn name(self) -> &'static str {
        match self {
            LinkHeader::Ethernet => "ethernet",
            LinkHeader::Ip => "ip",
        }
    }

    /// The name in `status`'s text.
    pub fn describe(self) -> &'static str {
        match self {
            LinkHeader::Ethernet => "ethernet",
            LinkHeader::Ip => "ip (no link header)",
        }
    }
}

/// Link types (`/sys/class/net/IF/type`, the kernel's `ARPHRD_*`) sipwall
/// knows by number.
pub const ARPHRD_ETHER: u16 = 1;
pub const ARPHRD_PPP: u16 = 512;
pub const ARPHRD_RAWIP: u16 = 519;
pub const ARPHRD_TUNNEL: u16 = 768;
pub const ARPHRD_TUNNEL6: u16 = 769;
pub const ARPHRD_LOOPBACK: u16 = 772;
pub const ARPHRD_SIT: u16 = 776;
pub const ARPHRD_IPGRE: u16 = 778;
pub const ARPHRD_IP6GRE: u16 = 823;
pub const ARPHRD_NONE: u16 = 65534;

/// An interface's link type and, for virtual devices, its kind (`ip -d
/// link`'s `tun`, `wireguard`, `ipip`, `vti`, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub arphrd: u16,
    pub kind: Option<String>,
    /// For a tun device, its mode (`tun` or `tap`): the frames' real shape,
    /// which its owner's TUNSETLINK may belie in the link type.
    pub tun_mode: Option<String>,
}

impl Link {
    /// "link type 778, kind gre" for messages.
    pub fn describe(&self) -> String {
        match &self.kind {
            Some(kind) => format!("link type {}, kind {kind}", self.arphrd),
            None => format!("link type {}", self.arphrd),
        }
    }

    /// Whether the device is a tunnel or another L3 device (what `doctor`'s
    /// `tunnels` check looks for), supported or not.
    pub fn is_l3_or_tunnel(&self) -> bool {
        self.arphrd != ARPHRD_ETHER && self.arphrd != ARPHRD_LOOPBACK
    }

    /// The header the programs must expect on this link, or why sipwall
    /// cannot filter it.
    ///
    /// Ethernet and loopback (whose frames carry a zeroed Ethernet header)
    /// are read as Ethernet. The devices whose receive path resets the link
    /// header to the IP header before XDP runs (tun, WireGuard and other
    /// `none` devices, PPP, raw IP, IP-in-IP, SIT, ip6tnl; the egress
    /// program sees them the same way) are read from the IP header. GRE
    /// devices hand XDP programs the outer IP and GRE headers in front of
    /// the packet, and vti and XFRM interfaces a rebuilt link header: those,
    /// and every other link type, are refused rather than misread.
    pub fn header(&self) -> std::result::Result<LinkHeader, String> {
        let kind = self.kind.as_deref();
        // vti and XFRM interfaces receive what IPsec decapsulated, with the
        // outer packet's link header rebuilt in front of it.
        if let Some(ipsec @ ("vti" | "vti6" | "xfrm")) = kind {
            return Err(format!(
                "an IPsec {ipsec} device ({}): XDP programs on it see the outer packet's link header rebuilt in front of each packet, so sipwall does not read it; filter SIP inside the tunnel with nftables",
                self.describe()
            ));
        }
        let by_type = match self.arphrd {
            ARPHRD_ETHER | ARPHRD_LOOPBACK => Ok(LinkHeader::Ethernet),
            ARPHRD_NONE | ARPHRD_PPP | ARPHRD_RAWIP => Ok(LinkHeader::Ip),
            ARPHRD_TUNNEL | ARPHRD_TUNNEL6 | ARPHRD_SIT => Ok(LinkHeader::Ip),
            ARPHRD_IPGRE | ARPHRD_IP6GRE => Err(format!(
                "a GRE device ({}): XDP programs on it see the outer IP and GRE headers in front of each packet, so sipwall cannot judge the packets inside; filter SIP that arrives through it with nftables, or carry it outside the tunnel",
                self.describe()
            )),
            _ => Err(format!(
                "a device whose link type sipwall does not read ({}): sipwall reads Ethernet (1), loopback (772) and devices without a link header (none 65534: tun, WireGuard; ppp 512; rawip 519; ipip 768; ip6tnl 769; sit 776)",
                self.describe()
            )),
        };
        // A tun device's owner may set any link type (TUNSETLINK), but its
        // mode fixes the frames' shape: in tun mode no packet carries a link
        // header, in tap mode every frame is Ethernet. So a readable type
        // that belies the mode is read by the mode (a tun device set to
        // Ethernet would otherwise pass its IP as non_ip); a type sipwall
        // refuses stays refused.
        match (self.tun_mode.as_deref(), by_type) {
            (Some("tun"), Ok(_)) => Ok(LinkHeader::Ip),
            (Some("tap"), Ok(_)) => Ok(LinkHeader::Ethernet),
            (_, by_type) => by_type,
        }
    }
}

/// The interface's link type (from the kernel, in this process's network
/// namespace: sysfs may show another one's) and kind.
pub fn link_of(iface: &str) -> Result<Link> {
    pins::check_iface_name(iface)?;
    let details = link_details(iface)?;
    Ok(Link {
        arphrd: link_type(iface)?,
        kind: info_str(&details["linkinfo"]["info_kind"]),
        tun_mode: tun_mode(&details["linkinfo"]),
    })
}

/// The header the programs must expect on `iface`; a usage error naming
/// the link type when sipwall cannot filter it.
pub fn link_header(iface: &str) -> Result<LinkHeader> {
    let link = link_of(iface)?;
    link.header()
        .map_err(|why| UsageError(format!("sipwall cannot filter {iface}: it is {why}")).into())
}

/// `ARPHRD_*` of `iface` through SIOCGIFHWADDR, which answers for the
/// namespace the socket belongs to (this process's).
fn link_type(iface: &str) -> Result<u16> {
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error())
            .context("opening a socket to ask for a link type");
    }
    // SAFETY: `fd` was just opened and is owned here alone.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(iface.bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: SIOCGIFHWADDR reads the NUL-terminated name (the name was
    // checked to be shorter than IFNAMSIZ) and writes the hardware address
    // into `req`, which outlives the call.
    let rc = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            libc::SIOCGIFHWADDR,
            &mut req,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("reading the link type of {iface}"));
    }
    // SAFETY: SIOCGIFHWADDR filled the hardware address member.
    Ok(unsafe { req.ifr_ifru.ifru_hwaddr.sa_family })
}

/// A string of `ip -details -json`'s output, if there.
fn info_str(value: &serde_json::Value) -> Option<String> {
    value.as_str().map(str::to_string)
}

/// A tun device's mode (`tun` or `tap`) from its `linkinfo`; `None` for
/// every other kind.
fn tun_mode(linkinfo: &serde_json::Value) -> Option<String> {
    (linkinfo["info_kind"] == "tun")
        .then(|| info_str(&linkinfo["info_data"]["type"]))
        .flatten()
}

/// Every interface of this namespace with its link, whether it is up, and
/// whether it has an address (for `doctor`'s `tunnels`).
pub fn all_links() -> Result<Vec<(String, Link, bool, bool)>> {
    let out = Command::new("ip")
        .args(["-details", "-json", "address", "show"])
        .output()
        .context("running `ip address` (package iproute2)")?;
    if !out.status.success() {
        bail!(
            "`ip address` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let list: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("parsing `ip -json address`")?;
    let mut links = Vec::new();
    for entry in list.as_array().into_iter().flatten() {
        let Some(name) = entry["ifname"].as_str() else {
            continue;
        };
        let up = entry["flags"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f == "UP"));
        let addressed = entry["addr_info"].as_array().is_some_and(|a| !a.is_empty());
        let Ok(arphrd) = link_type(name) else {
            continue;
        };
        let link = Link {
            arphrd,
            kind: info_str(&entry["linkinfo"]["info_kind"]),
            tun_mode: tun_mode(&entry["linkinfo"]),
        };
        links.push((name.to_string(), link, up, addressed));
    }
    Ok(links)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(arphrd: u16, kind: Option<&str>) -> std::result::Result<LinkHeader, String> {
        Link {
            arphrd,
            kind: kind.map(str::to_string),
            tun_mode: None,
        }
        .header()
    }

    fn tun(arphrd: u16, mode: &str) -> std::result::Result<LinkHeader, String> {
        Link {
            arphrd,
            kind: Some("tun".into()),
            tun_mode: Some(mode.into()),
        }
        .header()
    }

    #[test]
    fn a_tun_devices_mode_outweighs_the_link_type_its_owner_set() {
        for arphrd in [ARPHRD_ETHER, ARPHRD_LOOPBACK, ARPHRD_NONE, ARPHRD_PPP] {
            assert_eq!(tun(arphrd, "tun"), Ok(LinkHeader::Ip), "{arphrd}");
            assert_eq!(tun(arphrd, "tap"), Ok(LinkHeader::Ethernet), "{arphrd}");
        }
        assert!(tun(ARPHRD_IPGRE, "tun").is_err());
    }

    #[test]
    fn each_link_type_is_read_as_its_frames_start_or_refused_by_name() {
        assert_eq!(header(ARPHRD_ETHER, Some("veth")), Ok(LinkHeader::Ethernet));
        assert_eq!(
            header(ARPHRD_ETHER, Some("vxlan")),
            Ok(LinkHeader::Ethernet)
        );
        assert_eq!(header(ARPHRD_LOOPBACK, None), Ok(LinkHeader::Ethernet));
        for (arphrd, kind) in [
            (ARPHRD_NONE, Some("tun")),
            (ARPHRD_NONE, Some("wireguard")),
            (ARPHRD_PPP, None),
            (ARPHRD_RAWIP, None),
            (ARPHRD_TUNNEL, Some("ipip")),
            (ARPHRD_TUNNEL6, Some("ip6tnl")),
            (ARPHRD_SIT, Some("sit")),
        ] {
            assert_eq!(
                header(arphrd, kind),
                Ok(LinkHeader::Ip),
                "{arphrd} {kind:?}"
            );
        }
        for (arphrd, kind, named) in [
            (ARPHRD_IPGRE, Some("gre"), "link type 778, kind gre"),
            (ARPHRD_IP6GRE, Some("ip6gre"), "link type 823"),
            (ARPHRD_TUNNEL, Some("vti"), "IPsec vti"),
            (ARPHRD_TUNNEL6, Some("vti6"), "IPsec vti6"),
            (ARPHRD_NONE, Some("xfrm"), "IPsec xfrm"),
            (280, Some("can"), "link type 280"),
            (32, None, "link type 32"),
        ] {
            let why = header(arphrd, kind).expect_err("refused");
            assert!(why.contains(named), "{why}");
        }
    }
}
