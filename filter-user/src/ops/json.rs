//! Every `--json` document of `sipwall`, one type each: the contract of
//! docs/json.md, which a test reads back into these types. A document is
//! printed on one line with its keys sorted (serde_json's map order), as
//! it always has been.
use std::{collections::BTreeMap, path::PathBuf};

use filter_common::{CounterFamily, OutReason, Reason};
use serde::{
    de::Error as _, ser::SerializeMap as _, Deserialize, Deserializer, Serialize, Serializer,
};

use super::counters::Counters;

/// A document as `sipwall` prints it: one line, keys sorted.
pub fn line<T: Serialize>(doc: &T) -> String {
    // Through `Value`, whose objects keep their keys sorted: the order
    // every document has had since the first release.
    serde_json::to_value(doc)
        .expect("a JSON document's types all serialize")
        .to_string()
}

/// `stats --json`.
#[derive(Serialize, Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Stats {
    pub interfaces: Vec<StatsInterface>,
}

#[derive(Serialize, Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct StatsInterface {
    pub iface: String,
    pub mode: String,
    pub dry_run: bool,
    pub counters: Counters<Reason>,
    pub egress: EgressCounters,
}

#[derive(Serialize, Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct EgressCounters {
    pub mode: String,
    pub counters: Counters<OutReason>,
}

/// `check --json`.
#[derive(Serialize, Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Check {
    pub packets: Vec<CheckedPacket>,
    pub summary: CheckSummary,
    /// Strict mode: replies cannot be known from a capture.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Serialize, Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct CheckedPacket {
    pub index: usize,
    pub verdict: String,
    pub reason: Option<String>,
    pub len: usize,
    /// Why the kernel could not run it (verdict `error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Cut short by the capture's snap length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated: Option<bool>,
    /// Its length on the wire, when truncated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wire_len: Option<usize>,
}

/// `check`'s closing counts. Not `deny_unknown_fields` (serde cannot
/// combine it with `flatten`): `reasons` refuses every key that is not a
/// counter's name instead.
#[derive(Serialize, Deserialize, Debug)]
pub struct CheckSummary {
    pub total: usize,
    pub pass: usize,
    pub drop: usize,
    pub error: usize,
    pub outbound: usize,
    pub truncated: usize,
    /// With `--direction out`, when some frames were not the host's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbound: Option<usize>,
    #[serde(flatten)]
    pub reasons: ReasonTally,
}

/// Packets per reason: every XDP reason, and every egress reason when a
/// packet ran through the egress program.
#[derive(Debug, Default)]
pub struct ReasonTally {
    pub ingress: Vec<(Reason, usize)>,
    pub egress: Option<Vec<(OutReason, usize)>>,
}

impl Serialize for ReasonTally {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (r, n) in &self.ingress {
            map.serialize_entry(r.name(), n)?;
        }
        for (r, n) in self.egress.iter().flatten() {
            map.serialize_entry(r.name(), n)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for ReasonTally {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut named = BTreeMap::<String, usize>::deserialize(deserializer)?;
        let ingress = take_family::<Reason, D::Error>(&mut named)?
            .ok_or_else(|| D::Error::custom("the summary lacks the reasons' counts"))?;
        let egress = take_family::<OutReason, D::Error>(&mut named)?;
        if let Some(name) = named.keys().next() {
            return Err(D::Error::custom(format!("unknown field `{name}`")));
        }
        Ok(ReasonTally { ingress, egress })
    }
}

/// Every member of a family out of `named`: `None` when none is there,
/// an error when only some are.
fn take_family<F: CounterFamily, E: serde::de::Error>(
    named: &mut BTreeMap<String, usize>,
) -> Result<Option<Vec<(F, usize)>>, E> {
    let found: Vec<(F, Option<usize>)> = F::MEMBERS
        .iter()
        .map(|&r| (r, named.remove(r.name())))
        .collect();
    if found.iter().all(|(_, n)| n.is_none()) {
        return Ok(None);
    }
    found
        .into_iter()
        .map(|(r, n)| {
            n.map(|n| (r, n))
                .ok_or_else(|| E::custom(format!("missing field `{}`", r.name())))
        })
        .collect::<Result<_, E>>()
        .map(Some)
}

/// `top --json`.
#[derive(Serialize, Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Top {
    pub sources: Vec<TopSource>,
    pub reason: String,
}

#[derive(Serialize, Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct TopSource {
    pub addr: String,
    pub packets: u64,
    pub bytes: u64,
    /// `--watch`: packets a second since the previous reading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packets_per_s: Option<f64>,
    /// `--watch`: bytes a second since the previous reading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_per_s: Option<f64>,
}

/// `explain --json`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Explain {
    /// `pass` or `drop`: what the program returned.
    pub verdict: String,
    /// The counter it moved; `null` when nothing judged it (open egress).
    pub reason: Option<String>,
    /// The row of docs/policy.md ("4", "5c").
    pub row: Option<String>,
    /// Which table of docs/policy.md: `guard`, `strict` or `egress`.
    pub table: Option<String>,
    /// The row in a line, with what its key holds ("(2 prefixes)").
    pub text: Option<String>,
    /// The configuration key behind the row.
    pub key: Option<String>,
    /// Dry run: counted as `reason`, passed all the same.
    pub dry_run: bool,
    /// What a single packet on fresh state cannot show.
    pub notes: Vec<String>,
    /// Where the policy came from.
    pub policy: String,
}

/// `ban list --json`.
#[derive(Serialize, Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct BanList {
    pub bans: Vec<Ban>,
}

#[derive(Serialize, Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Ban {
    pub cidr: String,
    /// Whole seconds left; `None` for a permanent ban.
    pub expires_in: Option<u64>,
}

/// `allow list --json`.
#[derive(Serialize, Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct AllowList {
    pub allow: Vec<String>,
}

/// One object of `pinhole list --json` (the document is an array of them).
#[derive(Serialize, Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Pinhole {
    pub iface: String,
    pub port: u16,
    /// `None`: open to any source.
    pub remote: Option<String>,
    /// `None`: added by `pinhole add`.
    pub call_id: Option<String>,
    pub age_seconds: u64,
    pub idle_seconds: u64,
    pub packets: u64,
    pub live: bool,
}

/// `status --json`.
#[derive(Serialize, Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Status {
    pub interfaces: Vec<StatusInterface>,
    /// Attachments of other network namespaces (only when there are some).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_netns: Vec<OtherNetns>,
    /// Pins of the previous layout no namespace adopted (only when some).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub legacy_pins: Vec<LegacyPins>,
}

/// One interface; what comes from the maps is `None` when they could not
/// be read.
#[derive(Serialize, Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct StatusInterface {
    pub iface: String,
    pub attached: bool,
    pub mode: String,
    pub program_id: Option<u32>,
    /// The header the programs expect: `ethernet`, or `ip` on an L3 device.
    pub link: Option<String>,
    pub dry_run: Option<bool>,
    pub allowlist_entries: Option<usize>,
    pub signalling_ports: Option<Vec<u16>>,
    pub rtp_ports: Option<String>,
    pub provider_rtp_ports: Option<String>,
    pub policy_mode: Option<String>,
    pub strict_rules: Option<usize>,
    pub egress_mode: Option<String>,
    pub egress_rules: Option<usize>,
    pub egress_dns: Option<Vec<String>>,
    /// `[media] mode`: `range` or `calls`.
    pub media_mode: Option<String>,
    /// Calls mode: the call reader's heartbeat is fresh (`None` in range
    /// mode).
    pub media_reader_up: Option<bool>,
    /// Calls mode: the last reader's pid, if one ever ran.
    pub media_reader_pid: Option<u32>,
    pub pinholes_active: Option<usize>,
    pub signalling_copies_lost: Option<u64>,
    pub hints: Vec<String>,
    pub policy: Option<String>,
    pub problems: Vec<String>,
    /// The capture sampling on the interface, if any.
    pub capture: Option<StatusCapture>,
}

/// `status --json`'s `capture`: the capture's process, and whether it runs.
#[derive(Serialize, Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct StatusCapture {
    pub pid: u32,
    pub alive: bool,
}

#[derive(Serialize, Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct OtherNetns {
    pub iface: String,
    pub netns: u64,
    pub netns_name: Option<String>,
}

#[derive(Serialize, Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct LegacyPins {
    pub iface: String,
    pub dir: PathBuf,
}

/// `doctor --json`.
#[derive(Serialize, Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Doctor {
    pub checks: Vec<DoctorCheck>,
    pub worst: String,
}

#[derive(Serialize, Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct DoctorCheck {
    pub name: String,
    pub status: String,
    pub summary: String,
    pub action: Option<String>,
}
