//! The rows of docs/policy.md's three decision tables, as `explain` names
//! them: each row's number, the counter it moves, a one-line reading of it
//! and the configuration key behind it. A test reads docs/policy.md and
//! fails when a row here and the row there disagree.
use crate::ruleset::Ruleset;

/// Which of docs/policy.md's decision tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    /// "Ingress decision (XDP), guard mode".
    Guard,
    /// "Ingress decision (XDP), strict mode".
    Strict,
    /// "Egress decision (TC), strict egress".
    Egress,
}

impl Table {
    pub const ALL: [Table; 3] = [Table::Guard, Table::Strict, Table::Egress];

    /// The heading of the table's section in docs/policy.md.
    pub fn heading(self) -> &'static str {
        match self {
            Table::Guard => "## Ingress decision (XDP), guard mode",
            Table::Strict => "## Ingress decision (XDP), strict mode",
            Table::Egress => "## Egress decision (TC), strict egress",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Table::Guard => "guard",
            Table::Strict => "strict",
            Table::Egress => "egress",
        }
    }

    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// One row of a table, for one of the counters it moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row {
    pub table: Table,
    /// The row's number in docs/policy.md ("4", "5c").
    pub id: &'static str,
    /// The counter it moves (`Reason::name` or `OutReason::name`).
    pub counter: &'static str,
    /// What the row says, in a line.
    pub text: &'static str,
    /// The configuration key that decides what the row takes; `None` for
    /// rows no key changes (the parser's, fragments).
    pub key: Option<&'static str>,
}

const fn row(
    table: Table,
    id: &'static str,
    counter: &'static str,
    text: &'static str,
    key: Option<&'static str>,
) -> Row {
    Row {
        table,
        id,
        counter,
        text,
        key,
    }
}

use Table::{Egress, Guard, Strict};

const SIG_ALLOW: Option<&str> = Some("[signalling] allow");
const RTP_PORTS: Option<&str> = Some("[media] rtp_ports");
const PROVIDER_RTP: Option<&str> = Some("[media] provider_rtp_ports");
const SIG_LIMIT: Option<&str> = Some("[signalling] rate_limit");
const RTP_LIMIT: Option<&str> = Some("[media] rate_limit");
const CHECK_RTP: Option<&str> = Some("[media] check_rtp");
const BAN_SET: Option<&str> = Some("the ban set (sipwall ban)");
const MEDIA_MODE: Option<&str> = Some("[media] mode");

/// Every row of the three tables; a row that moves several counters
/// (strict row 3: `sip_allowed` / `sip_denied`) is here once per counter.
#[rustfmt::skip]
pub const ROWS: &[Row] = &[
    row(Guard, "1", "non_ip", "not IPv4 or IPv6", None),
    row(Guard, "2", "malformed", "IP or transport header truncated or invalid", None),
    row(Guard, "2a", "banned", "source in the ban set", BAN_SET),
    row(Guard, "3", "sip_allowed", "a signalling port, source in [signalling] allow", SIG_ALLOW),
    row(Guard, "3a", "sip_ratelimited", "a signalling port, source allowed but over [signalling] rate_limit", SIG_LIMIT),
    row(Guard, "4", "sip_denied", "a signalling port, source not in [signalling] allow", SIG_ALLOW),
    row(Guard, "5", "rtp_allowed", "UDP to a port of [media] rtp_ports", RTP_PORTS),
    row(Guard, "5a", "rtp_invalid", "UDP to a port of [media] rtp_ports, not RTP/RTCP", CHECK_RTP),
    row(Guard, "5b", "rtp_ratelimited", "UDP to a port of [media] rtp_ports, over [media] rate_limit", RTP_LIMIT),
    row(Guard, "5c", "rtp_allowed", "UDP from a port of [media] provider_rtp_ports", PROVIDER_RTP),
    row(Guard, "5u", "rtp_unsolicited", "calls mode: UDP to [media] rtp_ports that matches no live pinhole", MEDIA_MODE),
    row(Guard, "5v", "other", "calls mode: UDP from [media] provider_rtp_ports to a port outside rtp_ports: not media, passed as other traffic", MEDIA_MODE),
    row(Guard, "6", "fragment", "a non-first IP fragment", None),
    row(Guard, "7", "other", "anything else: guard mode passes it", Some("[policy] mode")),

    row(Strict, "1", "non_ip", "not IPv4 or IPv6", None),
    row(Strict, "2", "malformed", "IP or transport header truncated or invalid", None),
    row(Strict, "2a", "banned", "source in the ban set", BAN_SET),
    row(Strict, "3", "sip_allowed", "a signalling port, source in [signalling] allow", SIG_ALLOW),
    row(Strict, "3", "sip_denied", "a signalling port, source not in [signalling] allow", SIG_ALLOW),
    row(Strict, "3", "sip_ratelimited", "a signalling port, source allowed but over [signalling] rate_limit", SIG_LIMIT),
    row(Strict, "4", "rtp_allowed", "UDP to a port of [media] rtp_ports", RTP_PORTS),
    row(Strict, "4", "rtp_invalid", "UDP to a port of [media] rtp_ports, not RTP/RTCP", CHECK_RTP),
    row(Strict, "4", "rtp_ratelimited", "UDP to a port of [media] rtp_ports, over [media] rate_limit", RTP_LIMIT),
    row(Strict, "4u", "rtp_unsolicited", "calls mode: UDP to [media] rtp_ports that matches no live pinhole", MEDIA_MODE),
    row(Strict, "5", "essential", "essential: ICMP errors, neighbour discovery, DHCP answers, echo requests with [strict] ping", Some("[strict] ping")),
    row(Strict, "6", "reply", "a reply to a flow this host sent on", None),
    row(Strict, "7", "rule_allowed", "matches a [[strict.allow]] rule", Some("[[strict.allow]]")),
    row(Strict, "8", "fragment", "a non-first IP fragment", None),
    row(Strict, "9", "rtp_outside", "UDP from [media] provider_rtp_ports to a port outside [media] rtp_ports", RTP_PORTS),
    row(Strict, "10", "denied", "anything else: strict mode denies what no rule allows", Some("[[strict.allow]]")),

    row(Egress, "1", "out_non_ip", "not IPv4 or IPv6", None),
    row(Egress, "2", "out_sip_allowed", "to a signalling port, destination in [signalling] allow", SIG_ALLOW),
    row(Egress, "2", "out_sip_denied", "to a signalling port, destination not in [signalling] allow", SIG_ALLOW),
    row(Egress, "2u", "out_rtp_allowed", "calls mode: UDP from [media] rtp_ports to a live pinhole's remote address", MEDIA_MODE),
    row(Egress, "2u", "out_denied", "calls mode: UDP from [media] rtp_ports to an address no live pinhole names", MEDIA_MODE),
    row(Egress, "3", "out_rtp_allowed", "UDP to a port of [media] provider_rtp_ports", PROVIDER_RTP),
    row(Egress, "4", "out_reply", "an answer: from a signalling port to [signalling] allow, from [media] rtp_ports, from a [[strict.allow]] rule's ports", Some("[media] rtp_ports, [[strict.allow]]")),
    row(Egress, "5", "out_essential", "essential: ICMP errors, neighbour discovery, DHCP, DNS to an [egress] dns resolver", Some("[egress] dns")),
    row(Egress, "6", "out_rule_allowed", "matches an [[egress.allow]] rule", Some("[[egress.allow]]")),
    row(Egress, "7", "out_fragment", "a non-first IP fragment", None),
    row(Egress, "8", "out_denied", "anything else: strict egress denies what no rule allows", Some("[[egress.allow]]")),
];

/// The rows of `table` that move `counter` (one, or guard's rows 5 and 5c
/// for `rtp_allowed`).
pub fn rows_for(table: Table, counter: &str) -> Vec<&'static Row> {
    ROWS.iter()
        .filter(|r| r.table == table && r.counter == counter)
        .collect()
}

/// What the key holds in `ruleset`, for the explanation: "(2 prefixes)".
pub fn key_detail(key: &str, ruleset: &Ruleset) -> Option<String> {
    let plural =
        |n: usize, one: &str, many: &str| format!("({n} {})", if n == 1 { one } else { many });
    let range = |(a, b): (u16, u16)| format!("({a}-{b})");
    Some(match key {
        "[signalling] allow" => plural(ruleset.allow.len(), "prefix", "prefixes"),
        "[media] rtp_ports" | "[media] check_rtp" => range(ruleset.rtp),
        "[media] provider_rtp_ports" => range(ruleset.provider_rtp),
        "[signalling] rate_limit" => format!("({})", ruleset.sip_limit?),
        "[media] rate_limit" => format!("({})", ruleset.rtp_limit?),
        "[strict] ping" => format!("(ping {})", if ruleset.ping { "on" } else { "off" }),
        "[[strict.allow]]" => plural(ruleset.rules.len(), "rule", "rules"),
        "[[egress.allow]]" => plural(ruleset.egress.rules.len(), "rule", "rules"),
        "[egress] dns" => plural(ruleset.egress.dns.len(), "resolver", "resolvers"),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// Row number -> the counters (in backquotes) of docs/policy.md's
    /// table under `heading`.
    fn doc_table(doc: &str, heading: &str) -> BTreeMap<String, Vec<String>> {
        let section = doc
            .split_once(&format!("{heading}\n"))
            .unwrap_or_else(|| panic!("docs/policy.md has no section {heading:?}"))
            .1;
        let mut rows = BTreeMap::new();
        for line in section.lines().skip_while(|l| !l.starts_with('|')) {
            if !line.starts_with('|') {
                break;
            }
            let cells: Vec<&str> = line.trim_matches('|').split(" | ").collect();
            let id = cells[0].trim();
            if id == "#" || id.starts_with("---") {
                continue;
            }
            let counters = cells
                .last()
                .expect("a counter cell")
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect();
            rows.insert(id.to_string(), counters);
        }
        rows
    }

    #[test]
    fn every_row_agrees_with_docs_policy_md() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/policy.md");
        let doc = std::fs::read_to_string(path).expect("docs/policy.md");
        for table in Table::ALL {
            let docs = doc_table(&doc, table.heading());
            assert!(docs.len() >= 8, "{table:?}: too few rows read: {docs:?}");
            for r in ROWS.iter().filter(|r| r.table == table) {
                let counters = docs
                    .get(r.id)
                    .unwrap_or_else(|| panic!("{table:?} row {} is not in docs/policy.md", r.id));
                assert!(
                    counters.iter().any(|c| c == r.counter),
                    "{table:?} row {}: docs/policy.md counts {counters:?}, the table {}",
                    r.id,
                    r.counter
                );
            }
            for (id, counters) in &docs {
                for c in counters {
                    assert!(
                        ROWS.iter()
                            .any(|r| r.table == table && r.id == id && r.counter == c),
                        "docs/policy.md {table:?} row {id} counts `{c}`: not in filter_policy::rows"
                    );
                }
            }
        }
    }

    #[test]
    fn every_counter_has_a_row_in_its_tables() {
        for r in filter_common::Reason::ALL {
            for table in [Table::Guard, Table::Strict] {
                let strict_only = matches!(
                    r,
                    filter_common::Reason::Essential
                        | filter_common::Reason::Reply
                        | filter_common::Reason::RuleAllowed
                        | filter_common::Reason::RtpOutside
                        | filter_common::Reason::Denied
                );
                let guard_only = r == filter_common::Reason::Other;
                if (table == Table::Guard && strict_only) || (table == Table::Strict && guard_only)
                {
                    continue;
                }
                assert!(!rows_for(table, r.name()).is_empty(), "{table:?} {r:?}");
            }
        }
        for r in filter_common::OutReason::ALL {
            assert!(!rows_for(Table::Egress, r.name()).is_empty(), "{r:?}");
        }
    }
}
