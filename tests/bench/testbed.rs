//! The kernel path the throughput and update benchmarks run on: sipwall's
//! lab (network namespaces, removed on drop, even after a panic or Ctrl-C),
//! of which two hosts are used. The generators run in the router's
//! namespace and send live frames out of its veth towards the PBX (or,
//! where the kernel refuses live frames, the same frames through an
//! AF_PACKET socket: `packet_gen`); the receiver under test sits on the
//! PBX's end, `wan0`.
//!
//! ```text
//!  router ns: live frames -> veth "pbx" ====> veth "wan0" (receiver) pbx ns
//! ```
use std::{
    net::{Ipv4Addr, Ipv6Addr},
    path::PathBuf,
    time::Duration,
};

use anyhow::{bail, Context as _, Result};
use sipwall_lab::{self as lab, Host, Lab, PBX, PBX6, PBX_IFACE};
use sipwall_tests::packet::Frame;

use crate::{
    packet_gen,
    progs::{self, BenchProgs, LiveRun, GEN_SAME},
};

/// The router's end of the veth pair towards the PBX.
const ROUTER_IFACE: &str = "pbx";

pub struct Testbed {
    pub lab: Lab,
    pub gen: BenchProgs,
    /// Why live frames cannot be used here, if they cannot.
    pub live: Result<(), String>,
    /// Whether the AF_PACKET generator sends instead (live frames refused,
    /// AF_PACKET frames seen to arrive); else why neither works.
    pub packet: Result<bool, String>,
    router_ifindex: u32,
    router_mac: [u8; 6],
    pbx_mac: [u8; 6],
}

impl Testbed {
    /// `af_packet`: send through AF_PACKET even where live frames work
    /// (to compare the two generators).
    pub fn new(af_packet: bool) -> Result<Testbed> {
        crate::progress("building the lab (network namespaces, veth)");
        let lab = Lab::new("swbench")?;
        let mut gen = BenchProgs::load()?;
        let ifindex = lab.in_ns(Host::Router, || {
            filter_kernel::iface::if_index(ROUTER_IFACE)
        })??;
        gen.set_target(ifindex)?;
        let router_mac = mac(&lab, Host::Router, ROUTER_IFACE)?;
        let pbx_mac = mac(&lab, Host::Pbx, PBX_IFACE)?;
        let mut bed = Testbed {
            lab,
            gen,
            live: Ok(()),
            packet: Ok(false),
            router_ifindex: ifindex,
            router_mac,
            pbx_mac,
        };
        // A veth receives redirected frames only when it runs NAPI: with
        // an XDP program attached, or with GRO on. GRO stays on for every
        // receiver and either generator, so all see the same interface.
        bed.live = bed.gro_on().and_then(|()| {
            if af_packet {
                Err("--af-packet given".to_string())
            } else {
                bed.one_frame_arrives("XDP live frames")
            }
        });
        if bed.live.is_err() {
            bed.packet = bed.one_frame_arrives("AF_PACKET").map(|()| true);
        }
        Ok(bed)
    }

    /// Whether tier 2 can send at all, and how; else why not.
    pub fn generator(&self) -> Result<&'static str, String> {
        match (&self.live, &self.packet) {
            (Ok(()), _) => Ok("XDP live frames"),
            (Err(_), Ok(true)) => Ok("AF_PACKET (XDP live frames refused or not asked for)"),
            (Err(live), Ok(false)) => Err(live.clone()),
            (Err(live), Err(packet)) => Err(format!("{live}; {packet}")),
        }
    }

    fn gro_on(&self) -> Result<(), String> {
        let out = self
            .lab
            .output(Host::Pbx, &["ethtool", "-K", PBX_IFACE, "gro", "on"])
            .map_err(|e| format!("{e:#}"))?;
        if !out.status.success() {
            return Err(format!(
                "`ethtool -K {PBX_IFACE} gro on` failed ({}); `cargo xtask setup` installs ethtool",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(())
    }

    /// Sends one frame through the generator `send` picks now (`what`
    /// names it) and checks that it arrived: whether the kernel lets that
    /// generator send at all.
    fn one_frame_arrives(&self, what: &str) -> Result<(), String> {
        let frame = self.sip_frame(lab::PROVIDER[0], 60);
        let before = self.rx_packets().map_err(|e| format!("{e:#}"))?;
        self.send(GEN_SAME, &frame, 1)
            .map_err(|e| format!("this kernel has no usable {what} ({e:#})"))?;
        std::thread::sleep(Duration::from_millis(50));
        let after = self.rx_packets().map_err(|e| format!("{e:#}"))?;
        if after < before + 1 {
            return Err(format!(
                "a frame sent by {what} out of the router's veth did not arrive on {PBX_IFACE}"
            ));
        }
        Ok(())
    }

    /// A UDP frame from `src` to the PBX's port 5060, addressed to `wan0`,
    /// `len` bytes long (at least 42).
    pub fn sip_frame(&self, src: Ipv4Addr, len: usize) -> Vec<u8> {
        let mut f = Frame::ipv4(src, PBX)
            .udp(5060, 5060)
            .payload(&vec![b'x'; len.saturating_sub(42)]);
        f.src_mac = self.router_mac;
        f.dst_mac = self.pbx_mac;
        f.build()
    }

    /// The IPv6 twin of [`Testbed::sip_frame`].
    pub fn sip_frame6(&self, src: Ipv6Addr, len: usize) -> Vec<u8> {
        let mut f = Frame::ipv6(src, PBX6)
            .udp(5060, 5060)
            .payload(&vec![b'x'; len.saturating_sub(62)]);
        f.src_mac = self.router_mac;
        f.dst_mac = self.pbx_mac;
        f.build()
    }

    /// Sends `count` frames made from `frame` by generator `prog`: live
    /// frames, or their AF_PACKET twins where live frames are refused.
    pub fn send(&self, prog: &str, frame: &[u8], count: u32) -> Result<LiveRun> {
        if self.live.is_err() {
            let frames = packet_gen::cycle(prog, frame)?;
            let ifindex = self.router_ifindex;
            return self
                .lab
                .in_ns(Host::Router, || packet_gen::send(ifindex, &frames, count))?;
        }
        let xdp = self.gen.xdp(prog)?;
        self.lab
            .in_ns(Host::Router, || progs::live(xdp, frame, count))?
    }

    /// Packets `wan0` has received (the veth counts every frame it takes in,
    /// whatever XDP then does with it).
    pub fn rx_packets(&self) -> Result<u64> {
        let table = self
            .lab
            .in_ns(Host::Pbx, || {
                std::fs::read_to_string("/proc/thread-self/net/dev")
            })?
            .context("reading /proc/net/dev of the PBX")?;
        for line in table.lines() {
            if let Some((name, rest)) = line.split_once(':') {
                if name.trim() == PBX_IFACE {
                    let fields: Vec<&str> = rest.split_whitespace().collect();
                    return fields
                        .get(1)
                        .and_then(|p| p.parse().ok())
                        .context("bad line in /proc/net/dev");
                }
            }
        }
        bail!("{PBX_IFACE} is not in the PBX's /proc/net/dev")
    }

    /// The lab's private bpffs, where sipwall pins its attachment.
    pub fn bpffs(&self) -> PathBuf {
        self.lab.bpffs()
    }
}

fn mac(lab: &Lab, host: Host, iface: &str) -> Result<[u8; 6]> {
    let out = lab.exec(host, &["ip", "-json", "link", "show", "dev", iface])?;
    let links: serde_json::Value = serde_json::from_str(&out).context("parsing `ip -json link`")?;
    let text = links[0]["address"]
        .as_str()
        .with_context(|| format!("{iface} has no MAC address"))?;
    let mut mac = [0u8; 6];
    for (i, part) in text.split(':').enumerate().take(6) {
        mac[i] = u8::from_str_radix(part, 16).with_context(|| format!("bad MAC {text}"))?;
    }
    Ok(mac)
}

/// Fails when Ctrl-C was pressed; called between measurements.
pub fn check_stop() -> Result<()> {
    lab::check_stop()
}
