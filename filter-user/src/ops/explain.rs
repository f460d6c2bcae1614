//! `sipwall explain`: one described packet through the real program
//! (BPF_PROG_TEST_RUN on private maps holding the policy), and the row of
//! docs/policy.md that decided it, with its configuration key.
use anyhow::{bail, Context as _, Result};
use filter_kernel::{
    attachment::Attachment,
    pins::PinRoot,
    runner::{Runner, Verdict},
};
use filter_policy::{
    rows::{self, Row, Table},
    ruleset::Ruleset,
};

use super::{
    check::{Direction, STRICT_NOTE},
    describe::{self, Packet, PROTO_UDP},
    json,
};

/// What `explain` says about one packet (as JSON: [`json::Explain`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    /// `pass` or `drop`: what the program returned.
    pub verdict: String,
    /// The counter it moved; `null` when nothing judged it (open egress).
    pub reason: Option<&'static str>,
    /// The row of docs/policy.md ("4", "5c").
    pub row: Option<&'static str>,
    /// Which table of docs/policy.md: `guard`, `strict` or `egress`.
    pub table: Option<&'static str>,
    /// The row in a line, with what its key holds ("(2 prefixes)").
    pub text: Option<String>,
    /// The configuration key behind the row.
    pub key: Option<&'static str>,
    /// Dry run: counted as `reason`, passed all the same.
    pub dry_run: bool,
    /// What a single packet on fresh state cannot show.
    pub notes: Vec<&'static str>,
}

/// Why nothing judged an outgoing packet.
pub const OPEN_EGRESS: &str = "egress is open ([egress] mode = \"open\", the default): the egress program judges nothing and every packet goes out";

/// Why a policy read from a live attachment may decide differently from
/// the attachment itself.
pub const LIVE_NOTE: &str =
    "judged on the live policy without the ban set, rate-limit buckets and learnt flows";

/// The policy of the attachment of `iface`, read from its maps (see
/// [`LIVE_NOTE`] for what that leaves out), and where it came from.
pub fn live_policy(root: &PinRoot, iface: Option<&str>) -> Result<(Ruleset, String)> {
    let att = Attachment::open(root, iface)?;
    let ruleset = att
        .maps
        .read_ruleset()
        .with_context(|| format!("reading the policy of {}", att.iface))?;
    Ok((ruleset, format!("live policy of {}", att.iface)))
}

/// `packet` built and run through the program on private maps holding
/// `ruleset`.
pub fn explain_packet(
    ruleset: &Ruleset,
    direction: Direction,
    packet: &Packet,
) -> Result<Explanation> {
    let runner = Runner::new(ruleset)?;
    explain_frame(
        &runner,
        ruleset,
        direction,
        &describe::frame(packet),
        Some(packet),
    )
}

/// Runs one frame through `runner` (loaded with `ruleset`) in `direction`
/// and names the row that decided it. `packet` is the description behind
/// the frame, when there is one: it tells guard rows 5 and 5c apart.
pub fn explain_frame(
    runner: &Runner,
    ruleset: &Ruleset,
    direction: Direction,
    frame: &[u8],
    packet: Option<&Packet>,
) -> Result<Explanation> {
    let mut notes = Vec::new();
    let (verdict, reason, table) = match direction {
        Direction::In => {
            let outcome = runner.run(frame)?;
            let Some(reason) = outcome.reason() else {
                bail!("counters moved unexpectedly: {:?}", outcome.moved);
            };
            if ruleset.strict() {
                notes.push(STRICT_NOTE);
            }
            let table = if ruleset.strict() {
                Table::Strict
            } else {
                Table::Guard
            };
            (outcome.verdict, reason.name(), table)
        }
        Direction::Out => {
            let outcome = runner.run_out(frame)?;
            match outcome.reason() {
                Some(reason) => (outcome.verdict, reason.name(), Table::Egress),
                None if outcome.moved.is_empty() && !ruleset.egress.strict() => {
                    return Ok(Explanation {
                        verdict: outcome.verdict.name(),
                        reason: None,
                        row: None,
                        table: None,
                        text: Some(OPEN_EGRESS.into()),
                        key: Some("[egress] mode"),
                        dry_run: ruleset.dry_run,
                        notes: Vec::new(),
                    });
                }
                None => bail!("counters moved unexpectedly: {:?}", outcome.moved),
            }
        }
    };
    let row = choose_row(table, reason, ruleset, frame_ports(frame, packet))?;
    let text = match row.key.and_then(|k| rows::key_detail(k, ruleset)) {
        Some(detail) => format!("{} {detail}", row.text),
        None => row.text.to_string(),
    };
    Ok(Explanation {
        verdict: verdict.name(),
        reason: Some(reason),
        row: Some(row.id),
        table: Some(table.name()),
        text: Some(text),
        key: row.key,
        dry_run: ruleset.dry_run && verdict == Verdict::Pass,
        notes,
    })
}

/// A UDP packet's source and destination ports, from the description or
/// the frame.
fn frame_ports(frame: &[u8], packet: Option<&Packet>) -> Option<(u16, u16)> {
    if let Some(p) = packet {
        return (p.ip_proto() == PROTO_UDP).then_some((p.sport, p.dport));
    }
    super::describe::udp_ports(frame)
}

/// The row of `table` that moves `counter`. Guard mode counts two rows as
/// `rtp_allowed`: 5 (to `rtp_ports`) and 5c (from `provider_rtp_ports`),
/// told apart by the destination port, which row 5 takes first. Egress
/// counts `out_rtp_allowed` and `out_denied` in two rows each: calls mode's
/// 2u (UDP from `rtp_ports`) and 3 or 8, told apart by the source port;
/// guard mode counts `other` in calls mode's 5v and in 7.
fn choose_row(
    table: Table,
    counter: &str,
    ruleset: &Ruleset,
    udp_ports: Option<(u16, u16)>,
) -> Result<&'static Row> {
    let candidates = rows::rows_for(table, counter);
    let (lo, hi) = ruleset.rtp;
    let in_rtp = |p: u16| lo <= p && p <= hi;
    match candidates.as_slice() {
        [one] => Ok(one),
        [a, b] if table == Table::Egress => {
            let (calls, other) = if a.id == "2u" { (a, b) } else { (b, a) };
            let from_rtp = udp_ports.is_some_and(|(sport, _)| in_rtp(sport));
            Ok(if ruleset.media.calls() && from_rtp {
                calls
            } else {
                other
            })
        }
        // Calls mode's 5v (UDP from `provider_rtp_ports`, not media) and 7.
        [not_media, anything] if counter == "other" => {
            let (plo, phi) = ruleset.provider_rtp;
            let from_provider = udp_ports.is_some_and(|(sport, _)| plo <= sport && sport <= phi);
            Ok(if ruleset.media.calls() && from_provider {
                not_media
            } else {
                anything
            })
        }
        [to_rtp, from_provider] => Ok(if udp_ports.is_some_and(|(_, dport)| in_rtp(dport)) {
            to_rtp
        } else {
            from_provider
        }),
        _ => bail!("no row of the {} table counts {counter}", table.name()),
    }
}

impl Explanation {
    /// The `--json` document; `policy` says where the policy came from.
    pub fn to_json(&self, policy: String) -> json::Explain {
        let owned = |s: Option<&str>| s.map(str::to_string);
        json::Explain {
            verdict: self.verdict.clone(),
            reason: owned(self.reason),
            row: owned(self.row),
            table: owned(self.table),
            text: self.text.clone(),
            key: owned(self.key),
            dry_run: self.dry_run,
            notes: self.notes.iter().map(|n| n.to_string()).collect(),
            policy,
        }
    }
}

/// The explanation for people: one line, then the key and the notes.
pub fn to_text(e: &Explanation) -> String {
    let verdict = if e.dry_run && e.reason.is_some_and(drops) {
        "pass (dry run: counted as a drop, passed)".to_string()
    } else {
        e.verdict.clone()
    };
    let mut out = match (e.reason, e.row, &e.text) {
        (Some(reason), Some(row), Some(text)) => {
            format!("{verdict} {reason} — row {row}: {text}\n")
        }
        (_, _, text) => format!("{verdict} — {}\n", text.as_deref().unwrap_or("not judged")),
    };
    if let Some(table) = e.table.and_then(Table::from_name) {
        out += &format!(
            "table: docs/policy.md, \"{}\"\n",
            table.heading().trim_start_matches("## ")
        );
    }
    out += &format!(
        "key: {}\n",
        e.key.unwrap_or("none (the parser's or a fixed row)")
    );
    for note in &e.notes {
        out += &format!("note: {note}\n");
    }
    out
}

/// Whether a counter is a drop reason (in or out).
fn drops(name: &str) -> bool {
    <filter_common::Reason as filter_common::CounterFamily>::from_name(name)
        .is_some_and(|r| r.drops())
        || filter_common::OutReason::ALL
            .iter()
            .any(|r| r.name() == name && r.drops())
}
