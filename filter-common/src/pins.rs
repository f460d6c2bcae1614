//! What userspace records in an attachment's own maps: the `INFO` record
//! with the pin layout version and XDP mode, and a pending `--confirm`.

/// What userspace records about an attachment, in the pinned `INFO` map
/// (bpffs holds no plain files). Never read by the XDP program.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AttachInfo {
    /// [`ATTACH_MAGIC`]: these pins are sipwall's.
    pub magic: u32,
    /// [`PIN_LAYOUT_VERSION`] of the sipwall that made the pins.
    pub layout_version: u32,
    pub ifindex: u32,
    /// The [`XdpMode`] attached in, as its `u32`.
    pub mode: u32,
    /// Seconds since the epoch of the first attach.
    pub attached_at: u64,
}

pub const ATTACH_MAGIC: u32 = 0x5349_5057; // "SIPW"
/// Bumped whenever a map's layout or where pins live changes; pins of
/// another version are refused rather than misread. 4: pins moved from
/// `<root>/<iface>/` to `<root>/netns-<INODE>/<iface>/` (maps unchanged, so
/// layout-3 pins are adopted by moving them). 5: the abuse controls' maps
/// (ban set, rate-limit buckets) and the rate limits in [`Policy`]. 6:
/// strict mode (the policy holds rules and provider media ports; FLOWS and
/// CONFIRM maps; dropped sources keyed by reason): older pins are refused.
/// 7: FLOWS split into FLOWS_V4 (16-byte keys) and FLOWS_V6, with the
/// reply cache (`REPLY_CACHE`) in front of them. 8: strict egress
/// (OUT_COUNTERS, EGRESS_POLICY, EGRESS_SCRATCH maps). 9: the ban gate's
/// host bitmap (`BAN_GATE` grew), the `CLOCK` and `DENIED_BUDGET` maps.
/// 10: `DENIED_CACHE` holds blocks of slots ([`DeniedBlock`]). 11:
/// [`FLAG_L3`] in the policy (which every install must keep: an older
/// sipwall would drop it and the programs would misread an L3 device's
/// frames), the reply cache's keys carry the address family. 12: the
/// capture's maps (`capture::maps`). 13: the flow gate (`FLOW_GATE`),
/// which must know every flow of the flow maps; the rules' port bitmaps
/// in [`Policy`] and [`EgressPolicy`]; the egress program's cache of
/// flows it learnt (`LEARNT_CACHE`). 14: media by call (`media::maps`,
/// `Policy::media_idle_ns`). 15: the single IPv4 bans' slot array
/// (`BAN_SLOTS_V4`). 16: [`EgressPolicy`] indexes its rules by port
/// (`rule_index`) in place of the ports bitmaps. 17: the single IPv6 bans'
/// slot array (`BAN_SLOTS_V6`).
pub const PIN_LAYOUT_VERSION: u32 = 17;

/// How the XDP program is attached to its interface. Kept in [`AttachInfo`]
/// as its `u32` value (map values hold no enums).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum XdpMode {
    /// In the driver, before an skb is allocated.
    Native = 1,
    /// Generic XDP, after the skb is built: works everywhere, slower.
    Skb = 2,
    /// Offloaded to the NIC.
    Hw = 3,
}

impl XdpMode {
    /// The mode's name in output, JSON and metrics labels.
    pub const fn name(self) -> &'static str {
        match self {
            XdpMode::Native => "native",
            XdpMode::Skb => "skb",
            XdpMode::Hw => "hw",
        }
    }

    /// The mode stored as `value`, if it is one.
    pub const fn from_u32(value: u32) -> Option<XdpMode> {
        match value {
            1 => Some(XdpMode::Native),
            2 => Some(XdpMode::Skb),
            3 => Some(XdpMode::Hw),
            _ => None,
        }
    }

    /// Name of a stored mode value; "unknown" when it is none.
    pub const fn name_of(value: u32) -> &'static str {
        match XdpMode::from_u32(value) {
            Some(mode) => mode.name(),
            None => "unknown",
        }
    }
}

/// `CONFIRM` slot holding the token of the process waiting for a
/// confirmation (0: nothing waits).
pub const CONFIRM_PENDING: u32 = 0;
/// `CONFIRM` slot `sipwall confirm` writes that token into.
pub const CONFIRM_GIVEN: u32 = 1;
