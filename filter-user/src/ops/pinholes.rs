//! `sipwall pinhole`: calls mode's pinholes of an attachment, listed, and
//! opened or closed by hand for a PBX integration (docs/cli.md). Every
//! refusal is checked against the running policy, read back from the
//! maps, before anything is written.
use std::{net::IpAddr, time::Duration};

use anyhow::{Context as _, Result};
use filter_kernel::{
    attachment::Attachment,
    maps::monotonic_ns,
    media::{MediaMaps, PinholeEntry},
    pins::PinRoot,
};
use filter_policy::ruleset::Ruleset;

use super::snapshot::{warn_if_stale, Snapshot};
use crate::error::UsageError;

/// `--for`'s bounds: those of `[media] call_idle` at most, so a pinhole
/// added by hand never outlives what a configuration could ask.
pub const FOR_MIN: Duration = Duration::from_secs(1);
pub const FOR_MAX: Duration = Duration::from_secs(86_400);

/// `--from`: one remote address, or any source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Remote {
    Any,
    Addr(IpAddr),
}

impl Remote {
    fn addr(self) -> Option<IpAddr> {
        match self {
            Remote::Any => None,
            Remote::Addr(a) => Some(a),
        }
    }
}

impl std::fmt::Display for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Remote::Any => f.write_str("any source"),
            Remote::Addr(a) => write!(f, "{a}"),
        }
    }
}

/// Parses `--from`: `any`, or a unicast address. What the call reader
/// never opens a pinhole for is refused here too (docs/policy.md).
pub fn parse_remote(text: &str) -> Result<Remote, UsageError> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("any") {
        return Ok(Remote::Any);
    }
    let addr: IpAddr = t.parse().map_err(|_| {
        UsageError(format!(
            "--from {text:?}: not an IP address; write an IPv4 or IPv6 address (no prefix, port or host name), or `any` for any source"
        ))
    })?;
    let bad = |what: &str| {
        Err(UsageError(format!(
            "--from {addr}: {what}, not a unicast address media can come from"
        )))
    };
    match addr {
        IpAddr::V4(a) if a.is_unspecified() => bad("the unspecified address"),
        IpAddr::V4(a) if a.is_multicast() => bad("a multicast address"),
        IpAddr::V4(a) if a.is_loopback() => bad("a loopback address"),
        IpAddr::V4(a) if a.is_broadcast() => bad("the broadcast address"),
        IpAddr::V6(a) if a.is_unspecified() => bad("the unspecified address"),
        IpAddr::V6(a) if a.is_multicast() => bad("a multicast address"),
        IpAddr::V6(a) if a.is_loopback() => bad("a loopback address"),
        IpAddr::V6(a) if a.to_ipv4_mapped().is_some() => Err(UsageError(format!(
            "--from {addr}: an IPv4-mapped IPv6 address; write it as IPv4 ({})",
            a.to_ipv4_mapped()
                .map(|v4| v4.to_string())
                .unwrap_or_default()
        ))),
        _ => Ok(Remote::Addr(addr)),
    }
}

/// Reads `--for`: the units of `ban add --for` (banlist.rs), with a
/// message of its own (a ban's mentions permanent bans and fail2ban).
pub fn parse_for(text: &str) -> Result<Duration, UsageError> {
    let d = filter_policy::banlist::parse_duration(text).map_err(|_| {
        UsageError(format!(
            "--for {text:?}: not a duration; write seconds (30) or a duration like 90s, 10m, 1h, from 1 s to 24 h"
        ))
    })?;
    check_for(d)
}

/// Checks `--for` against its bounds.
pub fn check_for(d: Duration) -> Result<Duration, UsageError> {
    if d < FOR_MIN || d > FOR_MAX {
        return Err(UsageError(format!(
            "--for {}s: a pinhole is added for 1 s to 24 h (86400 s)",
            d.as_secs_f64()
        )));
    }
    Ok(d)
}

/// Refuses a change the running policy would not honour: not calls mode,
/// or a port outside `rtp_ports`.
pub fn check_policy(iface: &str, ruleset: &Ruleset, port: u16) -> Result<(), UsageError> {
    if !ruleset.media.calls() {
        return Err(UsageError(format!(
            "{iface} is in range mode: media passes by range and no pinhole is used; set [media] mode = \"calls\" in its configuration to pass media by call (nothing changed)"
        )));
    }
    let (lo, hi) = ruleset.rtp;
    if !(lo..=hi).contains(&port) {
        return Err(UsageError(format!(
            "--port {port}: outside {iface}'s rtp_ports {lo}-{hi}; a pinhole opens a port of the media range (nothing changed)"
        )));
    }
    Ok(())
}

/// What `pinhole add` or `del` does.
#[derive(Clone, Copy, Debug)]
pub enum Change {
    /// Open (or renew); `life`: `--for`.
    Add { life: Option<Duration> },
    /// Close; `missing_ok`: a pinhole that is not there is no error.
    Del { missing_ok: bool },
}

/// What the change did, for the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Done {
    /// Opened or renewed; it closes after this long without media.
    Opened {
        life: Duration,
    },
    Closed,
    /// `del --missing-ok` of a pinhole that was not there.
    Missing,
}

/// Applies `change` to the pinhole of `port` from `remote` on `iface`,
/// under the pin-root lock.
pub fn apply(
    root: &PinRoot,
    iface: &str,
    port: u16,
    remote: Remote,
    change: Change,
) -> Result<Done> {
    let _lock = root.lock()?;
    let att = Attachment::open_resolved(root, iface.to_string())?;
    warn_if_stale(&Snapshot::liveness(root, iface));
    let ruleset = att.maps.read_ruleset()?;
    check_policy(iface, &ruleset, port)?;
    let mut media = MediaMaps::open(&att.dir)?;
    let idle = Duration::from_secs(ruleset.media.call_idle_secs);
    match change {
        Change::Add { life } => {
            let life = life.unwrap_or(idle);
            media
                .open_pinhole_for(
                    port,
                    remote.addr(),
                    None,
                    idle.as_nanos() as u64,
                    life.as_nanos() as u64,
                )
                .with_context(|| format!("opening the pinhole of port {port} on {iface}"))?;
            Ok(Done::Opened { life })
        }
        Change::Del { missing_ok } => {
            if media.close_pinhole(port, remote.addr()) {
                Ok(Done::Closed)
            } else if missing_ok {
                Ok(Done::Missing)
            } else {
                Err(UsageError(format!(
                    "no pinhole on {iface} for port {port} from {remote} (nothing changed)"
                ))
                .into())
            }
        }
    }
}

/// One attachment's pinholes, with its media mode.
pub struct Listed {
    pub iface: String,
    pub calls: bool,
    pub pinholes: Vec<PinholeEntry>,
    /// CLOCK_MONOTONIC when they were read.
    pub now_ns: u64,
}

/// The pinholes of `iface`'s attachment, by port.
pub fn list(root: &PinRoot, iface: &str) -> Result<Listed> {
    let att = Attachment::open_resolved(root, iface.to_string())?;
    let ruleset = att.maps.read_ruleset()?;
    let media = MediaMaps::open(&att.dir)?;
    let pinholes = media.list(ruleset.media.call_idle_secs * 1_000_000_000)?;
    Ok(Listed {
        iface: iface.to_string(),
        calls: ruleset.media.calls(),
        pinholes,
        now_ns: monotonic_ns(),
    })
}

/// Whole seconds from `then` to `now` (0 for a time ahead, as a pinhole
/// added `--for` longer than `call_idle` has).
pub fn secs_since(now: u64, then: u64) -> u64 {
    now.saturating_sub(then) / 1_000_000_000
}

/// Whole seconds since media last refreshed `p`, or since it was opened
/// when no media has since: a pinhole added `--for` is written as last
/// seen at a time that says nothing about its media (before its opening,
/// or ahead of now), and no refresh happens while that time is ahead.
pub fn idle_secs(now: u64, p: &PinholeEntry) -> u64 {
    let since = if p.last_seen_ns > now {
        p.opened_ns
    } else {
        p.last_seen_ns.max(p.opened_ns)
    };
    secs_since(now, since)
}

/// The `pinhole list --json` object of one pinhole.
pub fn to_json(iface: &str, p: &PinholeEntry, now: u64) -> super::json::Pinhole {
    super::json::Pinhole {
        iface: iface.to_string(),
        port: p.port,
        remote: p.remote.map(|a| a.to_string()),
        call_id: p.call_id.clone(),
        age_seconds: secs_since(now, p.opened_ns),
        idle_seconds: idle_secs(now, p),
        packets: p.packets,
        live: p.live,
    }
}

/// The text table of `pinhole list`.
pub fn to_text(all: &[Listed]) -> String {
    let mut out = String::new();
    let rows: usize = all.iter().map(|l| l.pinholes.len()).sum();
    if rows > 0 {
        out += &format!(
            "{:<12} {:>5}  {:<39} {:<30} {:>8} {:>8} {:>12}  {}\n",
            "IFACE", "PORT", "REMOTE", "CALL-ID", "AGE", "IDLE", "PACKETS", "STATE"
        );
    }
    for l in all {
        for p in &l.pinholes {
            out += &format!(
                "{:<12} {:>5}  {:<39} {:<30} {:>8} {:>8} {:>12}  {}\n",
                l.iface,
                p.port,
                p.remote.map_or("any".to_string(), |a| a.to_string()),
                p.call_id.as_deref().unwrap_or("-"),
                human(secs_since(l.now_ns, p.opened_ns)),
                human(idle_secs(l.now_ns, p)),
                p.packets,
                if p.live { "live" } else { "expired" }
            );
        }
        if l.pinholes.is_empty() {
            out += &format!("{}: no pinholes\n", l.iface);
        }
    }
    out
}

/// A short duration: `42s`, `3m05s`, `2h04m`.
fn human(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> String {
        parse_remote(text).unwrap_err().0
    }

    #[test]
    fn from_takes_any_and_unicast_addresses() {
        assert_eq!(parse_remote("any").unwrap(), Remote::Any);
        assert_eq!(parse_remote("ANY").unwrap(), Remote::Any);
        assert_eq!(
            parse_remote("203.0.113.7").unwrap(),
            Remote::Addr("203.0.113.7".parse().unwrap())
        );
        assert_eq!(
            parse_remote("2001:db8::7").unwrap(),
            Remote::Addr("2001:db8::7".parse().unwrap())
        );
    }

    #[test]
    fn from_refuses_what_media_cannot_come_from() {
        for (text, why) in [
            ("0.0.0.0", "unspecified"),
            ("::", "unspecified"),
            ("224.0.0.1", "multicast"),
            ("ff02::1", "multicast"),
            ("127.0.0.1", "loopback"),
            ("::1", "loopback"),
            ("255.255.255.255", "broadcast"),
            ("::ffff:192.0.2.1", "write it as IPv4 (192.0.2.1)"),
            ("192.0.2.0/24", "not an IP address"),
            ("pbx.example", "not an IP address"),
            ("192.0.2.1:4000", "not an IP address"),
            ("", "not an IP address"),
        ] {
            let msg = refused(text);
            assert!(msg.contains(why), "{text}: {msg}");
        }
    }

    #[test]
    fn for_reads_durations_and_says_what_to_write() {
        assert_eq!(parse_for("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_for("1h").unwrap(), Duration::from_secs(3600));
        for bad in ["-5", "", "soon", "1y"] {
            let msg = parse_for(bad).unwrap_err().0;
            assert!(msg.contains("1 s to 24 h"), "{bad}: {msg}");
            assert!(!msg.contains("ban"), "{bad}: {msg}");
        }
        assert!(parse_for("0").is_err());
        assert!(parse_for("2d").is_err());
    }

    #[test]
    fn for_is_bounded() {
        assert!(check_for(Duration::from_secs(1)).is_ok());
        assert!(check_for(Duration::from_secs(86_400)).is_ok());
        assert!(check_for(Duration::from_millis(500)).is_err());
        assert!(check_for(Duration::from_secs(86_401)).is_err());
    }

    #[test]
    fn the_policy_must_be_calls_mode_and_the_port_in_range() {
        let parse = |toml: &str| filter_policy::config::parse(toml, "t.toml").unwrap();
        let calls = parse("[media]\nrtp_ports = \"10000-10100\"\nmode = \"calls\"\n");
        assert!(check_policy("eth0", &calls, 10000).is_ok());
        assert!(check_policy("eth0", &calls, 10100).is_ok());
        let out = check_policy("eth0", &calls, 10101).unwrap_err().0;
        assert!(out.contains("10000-10100"), "{out}");
        let range = parse("[media]\nrtp_ports = \"10000-10100\"\n");
        let out = check_policy("eth0", &range, 10000).unwrap_err().0;
        assert!(out.contains("[media] mode = \"calls\""), "{out}");
    }

    #[test]
    fn idle_counts_from_the_opening_when_for_set_the_time() {
        let s = 1_000_000_000;
        let p = |opened_ns, last_seen_ns| PinholeEntry {
            port: 10000,
            remote: None,
            call_id: None,
            opened_ns,
            last_seen_ns,
            packets: 0,
            live: true,
        };
        // Refreshed by media 3 s ago, opened 10 s ago.
        assert_eq!(idle_secs(100 * s, &p(90 * s, 97 * s)), 3);
        // --for shorter than call_idle: written as seen before its opening.
        assert_eq!(idle_secs(100 * s, &p(98 * s, 43 * s)), 2);
        // --for longer than call_idle: written as seen ahead of now.
        assert_eq!(idle_secs(100 * s, &p(95 * s, 3000 * s)), 5);
    }

    #[test]
    fn times_ahead_read_as_zero() {
        assert_eq!(secs_since(10_000_000_000, 4_000_000_000), 6);
        assert_eq!(secs_since(1_000_000_000, 9_000_000_000), 0);
        assert_eq!(human(42), "42s");
        assert_eq!(human(185), "3m05s");
        assert_eq!(human(7440), "2h04m");
    }
}
