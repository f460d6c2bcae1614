//! One counter family as the operator sees it (`Reason` of the XDP
//! program, `OutReason` of the TC egress program): the JSON object of
//! `stats --json`, the rows of the `stats` table and the Prometheus
//! series. Written once over [`CounterFamily`], so the two families cannot
//! drift apart.
use std::{collections::BTreeMap, fmt::Write as _};

use filter_common::{Counter, CounterFamily};
use serde::{
    de::Error as _, ser::SerializeMap as _, Deserialize, Deserializer, Serialize, Serializer,
};

/// The counters of one family as JSON: `{"name": {"packets", "bytes"}}`,
/// every member and nothing else (reading refuses a missing or unknown
/// name).
#[derive(Clone, Copy, Debug)]
pub struct Counters<F: CounterFamily>(pub F::Set);

impl<F: CounterFamily> Serialize for Counters<F> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(F::MEMBERS.len()))?;
        for &r in F::MEMBERS {
            map.serialize_entry(r.name(), &Count::from(slot(&self.0, r)))?;
        }
        map.end()
    }
}

impl<'de, F: CounterFamily> Deserialize<'de> for Counters<F> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let named = BTreeMap::<String, Count>::deserialize(deserializer)?;
        let mut set = F::Set::default();
        for (name, count) in &named {
            let r = F::from_name(name)
                .ok_or_else(|| D::Error::custom(format!("unknown counter `{name}`")))?;
            set.as_mut()[r.index() as usize] = Counter {
                packets: count.packets,
                bytes: count.bytes,
            };
        }
        if let Some(r) = F::MEMBERS.iter().find(|r| !named.contains_key(r.name())) {
            return Err(D::Error::custom(format!("missing counter `{}`", r.name())));
        }
        Ok(Counters(set))
    }
}

/// One counter as JSON.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Count {
    pub packets: u64,
    pub bytes: u64,
}

impl From<Counter> for Count {
    fn from(c: Counter) -> Count {
        Count {
            packets: c.packets,
            bytes: c.bytes,
        }
    }
}

/// A member's counter in a set of its family.
pub fn slot<F: CounterFamily>(set: &F::Set, reason: F) -> Counter {
    set.as_ref()[reason.index() as usize]
}

/// The `stats` table's rows of one family; with `before` (the previous
/// reading and seconds elapsed), per-second rates too.
pub fn rows<F: CounterFamily>(
    out: &mut String,
    now: &F::Set,
    before: Option<(F::Set, f64)>,
    dry_run: bool,
) {
    for &r in F::MEMBERS {
        let c = slot(now, r);
        let verdict = if r.drops() && !dry_run {
            "drop"
        } else {
            "pass"
        };
        let _ = write!(
            out,
            "  {:<16} {:>7} {:>14} {:>16}",
            r.name(),
            verdict,
            c.packets,
            c.bytes
        );
        if let Some((prev, secs)) = &before {
            let p = slot(prev, r);
            let rate = |now: u64, before: u64| now.saturating_sub(before) as f64 / secs.max(1e-9);
            let _ = write!(
                out,
                " {:>12.1} {:>14.1}",
                rate(c.packets, p.packets),
                rate(c.bytes, p.bytes)
            );
        }
        out.push('\n');
    }
}

/// One Prometheus series a member:
/// `metric{iface="…",direction="…",reason="…"} N`, where `pick` chooses
/// packets or bytes.
pub fn series<F: CounterFamily>(
    out: &mut String,
    metric: &str,
    iface: &str,
    direction: &str,
    set: &F::Set,
    pick: fn(Counter) -> u64,
) {
    for &r in F::MEMBERS {
        let _ = writeln!(
            out,
            "{metric}{{iface=\"{iface}\",direction=\"{direction}\",reason=\"{}\"}} {}",
            r.name(),
            pick(slot(set, r))
        );
    }
}
