//! What sits on the PBX's `wan0` while traffic arrives: nothing, an
//! nftables ruleset enforcing sipwall's policy, sipwall itself (native or
//! skb mode, attached the way `sipwall attach` does it), or a plain
//! XDP_DROP. Each one counts what it saw, so the bench can check that every
//! packet sent was judged.
use std::collections::BTreeMap;

use anyhow::{bail, ensure, Context as _, Result};
use aya::programs::{ProgramInfo, XdpMode};
use filter_common::{Counter, Reason};
use filter_kernel::{
    attach::{self, Attached},
    maps::CounterSet,
    pins::PinRoot,
};
use filter_policy::ruleset::Ruleset;
use sipwall_lab::{Host, PBX_IFACE};

use crate::{progs::BenchProgs, testbed::Testbed};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Receiver {
    NoFilter,
    Nftables,
    SipwallNative,
    SipwallSkb,
    /// sipwall native in strict mode (default deny).
    SipwallStrict,
    /// The tier-1 reference (`bench_reference`): a minimal hand-written
    /// program of the default policy for plain IPv4, with per-reason
    /// counters and no per-source accounting. IPv4 mixes only.
    Reference,
    /// The reference with the least per-source accounting of denied
    /// packets (`bench_reference_sources`). IPv4 mixes only.
    ReferenceSources,
    XdpDrop,
}

impl Receiver {
    /// Whether the receiver counts what it judges (the bench checks it).
    pub fn counts(self) -> bool {
        !matches!(self, Receiver::NoFilter | Receiver::XdpDrop)
    }

    pub const ALL: [Receiver; 8] = [
        Receiver::NoFilter,
        Receiver::Nftables,
        Receiver::SipwallNative,
        Receiver::SipwallSkb,
        Receiver::SipwallStrict,
        Receiver::Reference,
        Receiver::ReferenceSources,
        Receiver::XdpDrop,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Receiver::NoFilter => "no filter",
            Receiver::Nftables => "nftables (netdev ingress)",
            Receiver::SipwallNative => "sipwall native",
            Receiver::SipwallSkb => "sipwall skb",
            Receiver::SipwallStrict => "sipwall native strict",
            Receiver::Reference => "reference (minimal IPv4)",
            Receiver::ReferenceSources => "reference + per-source counts",
            Receiver::XdpDrop => "XDP_DROP",
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            Receiver::NoFilter => "no_filter",
            Receiver::Nftables => "nftables",
            Receiver::SipwallNative => "sipwall_native",
            Receiver::SipwallSkb => "sipwall_skb",
            Receiver::SipwallStrict => "sipwall_native_strict",
            Receiver::Reference => "reference",
            Receiver::ReferenceSources => "reference_per_source",
            Receiver::XdpDrop => "xdp_drop",
        }
    }
}

/// An installed receiver.
pub enum Installed {
    NoFilter,
    Nftables,
    Sipwall(Box<Attached>),
    /// XDP_DROP or a reference (the program's name), attached from the
    /// bench programs.
    BenchProg(BenchProgs, &'static str),
}

/// Counts a receiver keeps, read before and after a run.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Frames `wan0` took in.
    pub rx: u64,
    /// sipwall's counters per reason.
    pub sipwall: Option<CounterSet>,
    /// nftables' named counters, or the reference's per reason.
    pub nft: BTreeMap<String, u64>,
}

/// What a receiver judged during a run, by category: the reason names for
/// sipwall, the counter names for nftables.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    pub rx: u64,
    pub judged: BTreeMap<String, u64>,
}

impl Seen {
    pub fn judged_total(&self) -> u64 {
        self.judged.values().sum()
    }

    pub fn get(&self, name: &str) -> u64 {
        self.judged.get(name).copied().unwrap_or(0)
    }
}

const NFT_TABLE: &str = "sipwall_bench";

/// sipwall's default policy as nftables rules in the netdev ingress hook
/// (the earliest nftables sees a packet), the allowlist as a set, every
/// path ending in a named counter.
fn nft_ruleset() -> String {
    let ruleset = Ruleset::default();
    let v4: Vec<String> = ruleset.v4().map(|(a, l)| format!("{a}/{l}")).collect();
    let ports: Vec<String> = ruleset.sig_ports.iter().map(u16::to_string).collect();
    let (rtp_first, rtp_last) = ruleset.rtp;
    format!(
        r#"table netdev {NFT_TABLE} {{
    counter sip_allowed {{ }}
    counter sip_denied {{ }}
    counter rtp_allowed {{ }}
    counter other {{ }}
    set allow4 {{ type ipv4_addr; flags interval; elements = {{ {v4} }} }}
    set allow6 {{ type ipv6_addr; flags interval; }}
    chain ingress {{
        type filter hook ingress device "{PBX_IFACE}" priority -500; policy accept;
        meta l4proto {{ tcp, udp, sctp }} th dport {{ {ports} }} jump signalling
        udp dport {rtp_first}-{rtp_last} counter name rtp_allowed accept
        counter name other accept
    }}
    chain signalling {{
        ip saddr @allow4 counter name sip_allowed accept
        ip6 saddr @allow6 counter name sip_allowed accept
        counter name sip_denied drop
    }}
}}
"#,
        v4 = v4.join(", "),
        ports = ports.join(", "),
    )
}

pub fn install(bed: &Testbed, r: Receiver) -> Result<Installed> {
    match r {
        Receiver::NoFilter => Ok(Installed::NoFilter),
        Receiver::Nftables => {
            let path = bed.lab.dir().join("bench.nft");
            std::fs::write(&path, nft_ruleset())?;
            let path = path.to_str().context("non-UTF-8 lab path")?;
            bed.lab.exec(Host::Pbx, &["nft", "-f", path])?;
            Ok(Installed::Nftables)
        }
        Receiver::SipwallNative | Receiver::SipwallSkb | Receiver::SipwallStrict => {
            let mode = if r == Receiver::SipwallSkb {
                Some(filter_common::XdpMode::Skb)
            } else {
                Some(filter_common::XdpMode::Native)
            };
            let ruleset = if r == Receiver::SipwallStrict {
                Ruleset {
                    mode: filter_policy::ruleset::Mode::Strict,
                    ..Ruleset::default()
                }
            } else {
                Ruleset::default()
            };
            let root = PinRoot::new(&bed.bpffs());
            let attached = bed.lab.in_ns(Host::Pbx, || {
                attach::attach(&root, PBX_IFACE, &ruleset, mode, false)
            })??;
            Ok(Installed::Sipwall(Box::new(attached)))
        }
        Receiver::Reference | Receiver::ReferenceSources | Receiver::XdpDrop => {
            let (name, what) = match r {
                Receiver::Reference => (crate::progs::REFERENCE, "the reference"),
                Receiver::ReferenceSources => (
                    crate::progs::REFERENCE_SOURCES,
                    "the reference with per-source counts",
                ),
                _ => (crate::progs::DROP, "XDP_DROP"),
            };
            let mut progs = BenchProgs::load()?;
            bed.lab.in_ns(Host::Pbx, || -> Result<()> {
                progs
                    .xdp_mut(name)?
                    .attach(PBX_IFACE, XdpMode::Driver)
                    .with_context(|| format!("attaching {what} in native mode"))?;
                Ok(())
            })??;
            Ok(Installed::BenchProg(progs, name))
        }
    }
}

/// Another build of sipwall's XDP object (the bench's `--candidate`) in
/// native mode with the default policy, as [`Receiver::SipwallNative`].
pub fn install_candidate(bed: &Testbed, object: &[u8]) -> Result<Installed> {
    let root = PinRoot::new(&bed.bpffs());
    let attached = bed.lab.in_ns(Host::Pbx, || {
        attach::attach_object(
            object,
            &root,
            PBX_IFACE,
            &Ruleset::default(),
            Some(filter_common::XdpMode::Native),
            false,
        )
    })??;
    Ok(Installed::Sipwall(Box::new(attached)))
}

impl Installed {
    pub fn snapshot(&self, bed: &Testbed) -> Result<Snapshot> {
        let mut s = Snapshot {
            rx: bed.rx_packets()?,
            ..Snapshot::default()
        };
        match self {
            Installed::Sipwall(a) => s.sipwall = Some(a.maps.counters()?),
            Installed::Nftables => s.nft = nft_counters(bed)?,
            Installed::BenchProg(progs, _) => s.nft = progs.reference_counters()?,
            Installed::NoFilter => {}
        }
        Ok(s)
    }

    /// The kernel's information on the receiver's XDP program (its run
    /// time and count when statistics are on); `None` without one.
    pub fn program_info(&self) -> Result<Option<ProgramInfo>> {
        Ok(match self {
            Installed::Sipwall(a) => Some(filter_kernel::program::program(&a.ebpf)?.info()?),
            Installed::BenchProg(progs, name) => Some(progs.xdp(name)?.info()?),
            Installed::NoFilter | Installed::Nftables => None,
        })
    }

    /// Removes the receiver from `wan0`.
    pub fn remove(self, bed: &Testbed) -> Result<()> {
        match self {
            Installed::NoFilter => Ok(()),
            Installed::Nftables => {
                bed.lab
                    .exec(Host::Pbx, &["nft", "delete", "table", "netdev", NFT_TABLE])?;
                Ok(())
            }
            Installed::Sipwall(attached) => {
                attach::detach(&PinRoot::new(&bed.bpffs()), PBX_IFACE)?;
                drop(attached);
                Ok(())
            }
            // Dropping the programs detaches their link.
            Installed::BenchProg(progs, _) => {
                drop(progs);
                Ok(())
            }
        }
    }
}

/// What changed between two snapshots.
pub fn seen(before: &Snapshot, after: &Snapshot) -> Seen {
    let mut judged = BTreeMap::new();
    if let (Some(b), Some(a)) = (&before.sipwall, &after.sipwall) {
        for r in Reason::ALL {
            let d = delta(b[r as usize], a[r as usize]);
            if d > 0 {
                judged.insert(r.name().to_string(), d);
            }
        }
    }
    for (name, a) in &after.nft {
        let d = a - before.nft.get(name).copied().unwrap_or(0);
        if d > 0 {
            judged.insert(name.clone(), d);
        }
    }
    Seen {
        rx: after.rx - before.rx,
        judged,
    }
}

fn delta(b: Counter, a: Counter) -> u64 {
    a.packets - b.packets
}

fn nft_counters(bed: &Testbed) -> Result<BTreeMap<String, u64>> {
    let out = bed.lab.exec(
        Host::Pbx,
        &[
            "nft", "-j", "list", "counters", "table", "netdev", NFT_TABLE,
        ],
    )?;
    let v: serde_json::Value = serde_json::from_str(&out).context("parsing `nft -j`")?;
    let mut counters = BTreeMap::new();
    for item in v["nftables"]
        .as_array()
        .context("`nft -j` without nftables")?
    {
        if let Some(c) = item.get("counter") {
            let name = c["name"].as_str().context("counter without name")?;
            let packets = c["packets"].as_u64().context("counter without packets")?;
            counters.insert(name.to_string(), packets);
        }
    }
    if counters.is_empty() {
        bail!("nftables table {NFT_TABLE} has no counters");
    }
    Ok(counters)
}

/// Frames besides the generator's that may reach `wan0` during a run: ARP
/// and neighbour discovery between the PBX and the router.
pub const BACKGROUND: u64 = 32;

/// Checks that every frame sent arrived (give or take the background), and
/// that a filter judged every frame that arrived.
pub fn check_all_seen(r: Receiver, seen: &Seen, sent: u64) -> Result<()> {
    ensure!(
        seen.rx >= sent && seen.rx <= sent + BACKGROUND,
        "{}: {sent} frames sent but {} arrived on {PBX_IFACE}",
        r.name(),
        seen.rx
    );
    if r.counts() {
        ensure!(
            seen.judged_total() == seen.rx,
            "{}: {} frames arrived but its counters moved by {} ({:?})",
            r.name(),
            seen.rx,
            seen.judged_total(),
            seen.judged
        );
    }
    Ok(())
}
