//! The host's ephemeral UDP ports against `rtp_ports` (docs/configuration.md,
//! "Abuse controls: which values"). The kernel gives the host's own UDP
//! sockets (DNS, NTP) a source port from `net.ipv4.ip_local_port_range`,
//! minus `net.ipv4.ip_local_reserved_ports`; where those fall in
//! `rtp_ports`, three settings go wrong: `check_rtp` drops the answers as
//! `rtp_invalid`, a media rate limit counts them as media, and strict
//! egress lets the host's UDP from those ports out to anywhere as
//! `out_reply`. Both sysctls belong to the network namespace: they are read
//! from /proc/sys of the namespace sipwall runs in (or `--netns`'s).
use filter_policy::ruleset::Ruleset;

use crate::error::UsageError;

const PORT_RANGE: &str = "/proc/sys/net/ipv4/ip_local_port_range";
const RESERVED: &str = "/proc/sys/net/ipv4/ip_local_reserved_ports";

/// The ephemeral port range of a network namespace and its reserved ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ephemeral {
    pub low: u16,
    pub high: u16,
    pub reserved: Vec<(u16, u16)>,
}

impl Ephemeral {
    /// This network namespace's, `None` when /proc/sys cannot be read.
    pub fn of_this_netns() -> Option<Ephemeral> {
        Ephemeral::parse(
            &std::fs::read_to_string(PORT_RANGE).ok()?,
            &std::fs::read_to_string(RESERVED).ok()?,
        )
    }

    /// From the sysctls' text: `port_range` "32768\t60999", `reserved`
    /// "10000-20000,30000" (empty: none).
    pub fn parse(port_range: &str, reserved: &str) -> Option<Ephemeral> {
        let mut bounds = port_range.split_whitespace().map(str::parse::<u16>);
        let (Some(Ok(low)), Some(Ok(high))) = (bounds.next(), bounds.next()) else {
            return None;
        };
        let reserved = reserved
            .trim()
            .split(',')
            .filter_map(|part| {
                let (a, b) = part.split_once('-').unwrap_or((part, part));
                Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
            })
            .collect();
        Some(Ephemeral {
            low,
            high,
            reserved,
        })
    }

    /// How many ports of `rtp` the kernel may pick for the host's own
    /// sockets.
    pub fn exposed(&self, (first, last): (u16, u16)) -> usize {
        (first.max(self.low)..=last.min(self.high))
            .filter(|p| !self.reserved.iter().any(|&(a, b)| a <= *p && *p <= b))
            .count()
    }

    /// `ip_local_reserved_ports` with `rtp` added: the value to set.
    pub fn reserved_with(&self, (first, last): (u16, u16)) -> String {
        let mut parts: Vec<String> = self
            .reserved
            .iter()
            .map(|&(a, b)| {
                if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                }
            })
            .collect();
        parts.push(format!("{first}-{last}"));
        parts.join(",")
    }

    /// The larger part of the ephemeral range outside `rtp`, as
    /// `ip_local_port_range` takes it ("32768 39999"); `None` when `rtp`
    /// leaves too little of it.
    pub fn range_without(&self, (first, last): (u16, u16)) -> Option<String> {
        let below = (first > self.low).then(|| (self.low, (first - 1).min(self.high)));
        let above = (last < self.high).then(|| ((last + 1).max(self.low), self.high));
        [below, above]
            .into_iter()
            .flatten()
            .filter(|(a, b)| b >= a && b - a >= 1023)
            .max_by_key(|(a, b)| b - a)
            .map(|(a, b)| format!("{a} {b}"))
    }
}

/// What goes wrong in `ruleset` when `rtp_ports` holds ephemeral ports:
/// one phrase per setting, empty when none of them is on.
pub fn consequences(ruleset: &Ruleset) -> Vec<&'static str> {
    let mut what = Vec::new();
    if ruleset.check_rtp {
        what.push("check_rtp drops the answers to the host's own UDP (DNS, NTP) that land there as rtp_invalid");
    }
    if ruleset.rtp_limit.is_some() {
        what.push("the media rate limit counts those answers as media and drops them over the limit (rtp_ratelimited)");
    }
    if ruleset.egress.strict() {
        what.push("strict egress lets the host's UDP from those ports out to any address as out_reply (DNS to any resolver, anything to anyone)");
    }
    what
}

/// Refuses (exit 2) a policy with `check_rtp`, a media rate limit or strict
/// egress whose `rtp_ports` overlaps the unreserved ephemeral ports of this
/// network namespace, naming both sysctls and the values to set. Dry run
/// drops nothing and passes; `force` overrides; a namespace whose sysctls
/// cannot be read is not judged.
pub fn check(ruleset: &Ruleset, force: bool) -> Result<(), UsageError> {
    if force || ruleset.dry_run {
        return Ok(());
    }
    match Ephemeral::of_this_netns() {
        Some(eph) => check_against(ruleset, &eph),
        None => Ok(()),
    }
}

/// [`check`] against given sysctl values.
pub fn check_against(ruleset: &Ruleset, eph: &Ephemeral) -> Result<(), UsageError> {
    let what = consequences(ruleset);
    let exposed = eph.exposed(ruleset.rtp);
    if what.is_empty() || exposed == 0 {
        return Ok(());
    }
    let (first, last) = ruleset.rtp;
    Err(UsageError(format!(
        "rtp_ports {first}-{last} holds {exposed} of this host's ephemeral UDP ports (net.ipv4.ip_local_port_range = {} {}, not reserved in net.ipv4.ip_local_reserved_ports): {}. {}; nothing changed (--force to apply it anyway)",
        eph.low,
        eph.high,
        what.join("; "),
        remedy(ruleset.rtp, eph)
    )))
}

/// What to set: the reservation, or a port range clear of `rtp`, or
/// `rtp_ports` outside the ephemeral range.
pub fn remedy(rtp: (u16, u16), eph: &Ephemeral) -> String {
    let mut text = format!(
        "Reserve the range: sysctl -w net.ipv4.ip_local_reserved_ports={} (and the same in /etc/sysctl.d/)",
        eph.reserved_with(rtp)
    );
    if let Some(range) = eph.range_without(rtp) {
        text += &format!(
            ", or move the ephemeral range: sysctl -w net.ipv4.ip_local_port_range=\"{range}\""
        );
    }
    text += &format!(
        ", or set [media] rtp_ports to your PBX's RTP range outside {}-{}",
        eph.low, eph.high
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linux_default() -> Ephemeral {
        Ephemeral::parse("32768\t60999\n", "\n").unwrap()
    }

    #[test]
    fn exposed_ports_and_the_values_to_set() {
        let eph = linux_default();
        assert_eq!(eph.exposed((40000, 60000)), 20001);
        assert_eq!(eph.exposed((10000, 20000)), 0);
        assert_eq!(eph.exposed((16384, 32768)), 1);
        assert_eq!(eph.reserved_with((40000, 60000)), "40000-60000");
        assert_eq!(
            eph.range_without((40000, 60000)).as_deref(),
            Some("32768 39999")
        );
        assert_eq!(eph.range_without((32768, 60999)), None);
        let reserved = Ephemeral::parse("32768 60999", "8080,40000-50000\n").unwrap();
        assert_eq!(reserved.exposed((40000, 60000)), 10000);
        assert_eq!(
            reserved.reserved_with((50001, 60000)),
            "8080,40000-50000,50001-60000"
        );
        assert_eq!(Ephemeral::parse("garbage", ""), None);
    }

    #[test]
    fn refused_only_with_a_setting_that_suffers() {
        let eph = linux_default();
        assert!(check_against(&Ruleset::default(), &eph).is_ok());
        let checked = Ruleset {
            check_rtp: true,
            ..Ruleset::default()
        };
        let e = check_against(&checked, &eph).unwrap_err().0;
        for word in [
            "20001",
            "net.ipv4.ip_local_port_range = 32768 60999",
            "net.ipv4.ip_local_reserved_ports=40000-60000",
            "rtp_invalid",
            "--force",
        ] {
            assert!(e.contains(word), "{word:?} missing: {e}");
        }
        let asterisk = Ruleset {
            rtp: (10000, 20000),
            ..checked
        };
        assert!(check_against(&asterisk, &eph).is_ok());
    }
}
