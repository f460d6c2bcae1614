//! The configuration file (docs/configuration.md): TOML, every field defaulted to the
//! provider's published values, validated strictly. Every error names the
//! line and the problem; nothing is applied from a file with any error.
use std::path::Path;

use anyhow::Result;
use ipnet::IpNet;
use serde::{de::Error as _, Deserialize, Deserializer};

use crate::{
    cidr::parse_cidr,
    error::UsageError,
    input,
    ruleset::{
        AllowRule, Egress, EgressMode, MediaCalls, MediaMode, Mode as RulesetMode, RateLimit,
        RuleProto, Ruleset, Unattended, CALL_IDLE_MAX_SECS, CALL_IDLE_MIN_SECS,
        DEFAULT_CALL_IDLE_SECS, DEFAULT_PROVIDER_RTP, DEFAULT_RTP, DEFAULT_SIG_PORTS,
    },
};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct ConfigFile {
    signalling: Signalling,
    media: Media,
    policy: PolicySection,
    strict: StrictSection,
    egress: EgressSection,
}

/// `[egress]` (docs/configuration.md): outbound rules.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct EgressSection {
    mode: EgressModeName,
    allow: Vec<RuleFile>,
    /// The resolvers DNS may go to (addresses or prefixes).
    dns: Vec<Cidr>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "lowercase")]
enum EgressModeName {
    #[default]
    Open,
    Strict,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct StrictSection {
    ping: bool,
    allow: Vec<RuleFile>,
}

impl Default for StrictSection {
    fn default() -> Self {
        StrictSection {
            ping: true,
            allow: Vec::new(),
        }
    }
}

/// A `[[strict.allow]]` or `[[egress.allow]]` table as written: the one
/// names the sources (`from`), the other the destinations (`to`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    proto: ProtoName,
    #[serde(default)]
    ports: Option<Vec<PortOrRange>>,
    /// Absent means any source; present, it must name at least one.
    #[serde(default)]
    from: Option<Vec<Cidr>>,
    #[serde(default)]
    to: Option<Vec<Cidr>>,
}

/// Which kind of rule a [`RuleFile`] is.
#[derive(Clone, Copy)]
enum RuleKind {
    /// `[[strict.allow]]`: inbound, `from` the remote end.
    Inbound,
    /// `[[egress.allow]]`: outbound, `to` the remote end.
    Outbound,
}

impl RuleKind {
    fn table(self) -> &'static str {
        match self {
            RuleKind::Inbound => "[[strict.allow]]",
            RuleKind::Outbound => "[[egress.allow]]",
        }
    }
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum ProtoName {
    Tcp,
    Udp,
    Sctp,
    Icmp,
    Any,
}

/// `22` or `"8000-8080"`.
struct PortOrRange(u16, u16);

impl<'de> Deserialize<'de> for PortOrRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(i64),
            Text(String),
        }
        match Raw::deserialize(d).map_err(|_| {
            D::Error::custom("a port is a number (22) or a range string (\"8000-8080\")")
        })? {
            Raw::Number(n) => port_number(n)
                .map(|p| PortOrRange(p, p))
                .map_err(D::Error::custom),
            Raw::Text(t) => parse_port_range(&t)
                .map(|r| PortOrRange(r.0, r.1))
                .map_err(D::Error::custom),
        }
    }
}

impl RuleFile {
    /// The rule, or why it is refused (`n` counts rules from 1). An
    /// outbound rule's `to` becomes the rule's remote prefixes (`from`).
    fn rule(self, n: usize, kind: RuleKind) -> Result<AllowRule, String> {
        let table = kind.table();
        // An empty list would read as "any" (as if the key were absent): a
        // template whose list came out empty must not open the port to
        // everyone.
        let key = match kind {
            RuleKind::Inbound => "from",
            RuleKind::Outbound => "to",
        };
        let remote = match (kind, self.from, self.to) {
            (RuleKind::Inbound, Some(list), None) | (RuleKind::Outbound, None, Some(list))
                if list.is_empty() =>
            {
                return Err(format!(
                    "{table} rule {n}: {key} is empty; list the prefixes, or remove `{key}` to allow any address"
                ))
            }
            (RuleKind::Inbound, from, None) => from.unwrap_or_default(),
            (RuleKind::Outbound, None, to) => to.unwrap_or_default(),
            (RuleKind::Inbound, _, Some(_)) => {
                return Err(format!(
                    "{table} rule {n}: `to` is for [[egress.allow]]; an inbound rule names its sources with `from`"
                ))
            }
            (RuleKind::Outbound, Some(_), _) => {
                return Err(format!(
                    "{table} rule {n}: `from` is for [[strict.allow]]; an outbound rule names its destinations with `to`"
                ))
            }
        };
        let proto = match self.proto {
            ProtoName::Tcp => RuleProto::Tcp,
            ProtoName::Udp => RuleProto::Udp,
            ProtoName::Sctp => RuleProto::Sctp,
            ProtoName::Icmp => RuleProto::Icmp,
            ProtoName::Any => RuleProto::Any,
        };
        let name = proto.name();
        let ports = match (proto.has_ports(), self.ports) {
            (true, None) => {
                return Err(format!(
                    "{table} rule {n} (proto {name}) has no ports: list them (\"1-65535\" for all)"
                ))
            }
            (true, Some(p)) if p.is_empty() => {
                return Err(format!("{table} rule {n} (proto {name}): ports is empty"))
            }
            (true, Some(p)) => p.into_iter().map(|r| (r.0, r.1)).collect(),
            (false, Some(_)) => {
                return Err(format!(
                    "{table} rule {n}: proto {name} has no ports; remove `ports` or use tcp, udp or sctp"
                ))
            }
            (false, None) => Vec::new(),
        };
        let mut ports: Vec<(u16, u16)> = ports;
        ports.sort();
        ports.dedup();
        let mut from: Vec<IpNet> = remote.into_iter().map(|c| c.0).collect();
        from.sort();
        from.dedup();
        Ok(AllowRule { proto, ports, from })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Signalling {
    allow: Vec<Cidr>,
    ports: SigPorts,
    /// Per-source limit of allowed signalling, "N/s"; off when absent.
    rate_limit: Option<Rate>,
    /// Packets a source may send at once; default: one second's worth.
    burst: Option<Burst>,
}

impl Default for Signalling {
    fn default() -> Self {
        Signalling {
            allow: Ruleset::default().allow.into_iter().map(Cidr).collect(),
            ports: SigPorts(DEFAULT_SIG_PORTS.to_vec()),
            rate_limit: None,
            burst: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Media {
    rtp_ports: PortRange,
    rate_limit: Option<Rate>,
    burst: Option<Burst>,
    /// UDP into the media range must look like RTP/RTCP.
    check_rtp: bool,
    provider_rtp_ports: PortRange,
    /// "range" or "calls" (docs/policy.md, "Media by call").
    mode: MediaModeName,
    /// Calls mode only: a duration, 5 s to 24 h.
    call_idle: Option<CallIdle>,
    /// Calls mode only: "range" or "closed".
    unattended: Option<UnattendedName>,
}

#[derive(Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum MediaModeName {
    #[default]
    Range,
    Calls,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum UnattendedName {
    Range,
    Closed,
}

/// `[media] call_idle`: a duration such as "60s" or "2m", in seconds.
struct CallIdle(u64);

impl<'de> Deserialize<'de> for CallIdle {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let secs = crate::banlist::parse_duration(&text)
            .map_err(|_| {
                D::Error::custom(format!(
                    "call_idle {text:?} is not a duration: write it as \"60s\", \"2m\" or \"1h\""
                ))
            })?
            .as_secs();
        if !(CALL_IDLE_MIN_SECS..=CALL_IDLE_MAX_SECS).contains(&secs) {
            return Err(D::Error::custom(format!(
                "call_idle {text:?} is out of range: from 5s to 24h"
            )));
        }
        Ok(CallIdle(secs))
    }
}

impl Default for Media {
    fn default() -> Self {
        Media {
            rtp_ports: PortRange(DEFAULT_RTP.0, DEFAULT_RTP.1),
            rate_limit: None,
            burst: None,
            check_rtp: false,
            provider_rtp_ports: PortRange(DEFAULT_PROVIDER_RTP.0, DEFAULT_PROVIDER_RTP.1),
            mode: MediaModeName::Range,
            call_idle: None,
            unattended: None,
        }
    }
}

/// `"N/s"`: packets a second, 1 to `RateLimit::MAX_RATE`.
struct Rate(u32);

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_rate(&text).map(Rate).map_err(D::Error::custom)
    }
}

/// Parses a rate limit such as `"200/s"`.
pub fn parse_rate(text: &str) -> Result<u32, String> {
    let Some(number) = text.trim().strip_suffix("/s") else {
        return Err(format!(
            "rate_limit {text:?} is not packets a second: write it as \"N/s\", e.g. \"200/s\""
        ));
    };
    match number.trim().parse::<u64>() {
        Ok(n) if (1..=u64::from(RateLimit::MAX_RATE)).contains(&n) => Ok(n as u32),
        Ok(n) => Err(format!(
            "rate_limit {n}/s is out of range (1-{}/s)",
            RateLimit::MAX_RATE
        )),
        Err(_) => Err(format!("rate_limit {text:?}: {number:?} is not a number")),
    }
}

/// A burst size: 1 to `RateLimit::MAX_BURST` packets.
struct Burst(u32);

impl<'de> Deserialize<'de> for Burst {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        match u32::try_from(n) {
            Ok(b) if (1..=RateLimit::MAX_BURST).contains(&b) => Ok(Burst(b)),
            _ => Err(D::Error::custom(format!(
                "burst {n} is out of range (1-{})",
                RateLimit::MAX_BURST
            ))),
        }
    }
}

/// The limit of a section, refusing a burst without a rate.
fn rate_limit(
    section: &str,
    rate: Option<Rate>,
    burst: Option<Burst>,
) -> Result<Option<RateLimit>, String> {
    match (rate, burst) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(format!(
            "[{section}] burst is set without rate_limit: set rate_limit = \"N/s\" too, or remove burst"
        )),
        (Some(Rate(per_sec)), burst) => Ok(Some(RateLimit {
            per_sec,
            burst: burst.map_or(per_sec, |b| b.0),
        })),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct PolicySection {
    mode: Mode,
    dry_run: bool,
    /// Log denied sources from the kernel (rate limited); opt-in.
    log_denied: bool,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "lowercase")]
enum Mode {
    #[default]
    Guard,
    Strict,
}

struct Cidr(IpNet);

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_cidr(&text).map(Cidr).map_err(D::Error::custom)
    }
}

/// The signalling ports: at least one, each 1-65535.
struct SigPorts(Vec<u16>);

impl<'de> Deserialize<'de> for SigPorts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let numbers = Vec::<i64>::deserialize(d)?;
        if numbers.is_empty() {
            return Err(D::Error::custom(
                "ports is empty: at least one signalling port is needed",
            ));
        }
        numbers
            .into_iter()
            .map(port_number)
            .collect::<Result<_, _>>()
            .map(SigPorts)
            .map_err(D::Error::custom)
    }
}

fn port_number(n: i64) -> Result<u16, String> {
    match u16::try_from(n) {
        Ok(0) => Err("port 0 is not a port".into()),
        Ok(p) => Ok(p),
        Err(_) => Err(format!("port {n} is out of range (1-65535)")),
    }
}

/// `"40000-60000"`, or `"5004"` for a single port.
struct PortRange(u16, u16);

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_port_range(&text).map_err(D::Error::custom)
    }
}

fn parse_port_range(text: &str) -> Result<PortRange, String> {
    let one = |s: &str| -> Result<u16, String> {
        let s = s.trim();
        let n: i64 = s
            .parse()
            .map_err(|_| format!("{s:?} in port range {text:?} is not a number"))?;
        port_number(n)
    };
    let (first, last) = match text.split_once('-') {
        Some((a, b)) => (one(a)?, one(b)?),
        None => {
            let p = one(text)?;
            (p, p)
        }
    };
    if first > last {
        return Err(format!(
            "port range {text:?} starts after it ends ({first} > {last})"
        ));
    }
    Ok(PortRange(first, last))
}

/// `[media] mode`, `call_idle` and `unattended`; the last two mean
/// nothing in range mode, so they are refused there.
fn media_calls(media: &Media) -> Result<MediaCalls, String> {
    if media.mode == MediaModeName::Range {
        for (key, set) in [
            ("call_idle", media.call_idle.is_some()),
            ("unattended", media.unattended.is_some()),
        ] {
            if set {
                return Err(format!(
                    "[media] {key} is set, but mode is \"range\": it only applies with mode = \"calls\""
                ));
            }
        }
        return Ok(MediaCalls::default());
    }
    Ok(MediaCalls {
        mode: MediaMode::Calls,
        call_idle_secs: media
            .call_idle
            .as_ref()
            .map_or(DEFAULT_CALL_IDLE_SECS, |c| c.0),
        unattended: match media.unattended {
            Some(UnattendedName::Closed) => Unattended::Closed,
            _ => Unattended::Range,
        },
    })
}

/// Parses configuration text; `origin` names it in error messages.
pub fn parse(text: &str, origin: &str) -> Result<Ruleset, UsageError> {
    if text.trim().is_empty() {
        // Most likely a file caught while being written: refusing it keeps
        // the running policy. No file at all means the defaults.
        return Err(UsageError(format!(
            "{origin}: the configuration file is empty (remove -c to use the defaults)"
        )));
    }
    // Syntax first, so that only a file that is not TOML is called so; a
    // wrong value in valid TOML is named as what it is.
    if let Err(e) = text.parse::<toml::Table>() {
        return Err(toml_error(&e, text, origin, "invalid TOML: "));
    }
    let file: ConfigFile = toml::from_str(text).map_err(|e| toml_error(&e, text, origin, ""))?;
    if let Some((name, line)) = empty_section(text) {
        let at = line.map(|n| format!(" line {n}:")).unwrap_or_default();
        return Err(UsageError(format!(
            "{origin}:{at} section [{name}] is empty (a file caught while being written?): set its keys or remove it"
        )));
    }
    let mode = match file.policy.mode {
        Mode::Guard => RulesetMode::Guard,
        Mode::Strict => RulesetMode::Strict,
    };
    let rules = file
        .strict
        .allow
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.rule(i + 1, RuleKind::Inbound))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| UsageError(format!("{origin}: {e}")))?;
    let egress_rules = file
        .egress
        .allow
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.rule(i + 1, RuleKind::Outbound))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| UsageError(format!("{origin}: {e}")))?;
    let egress = Egress {
        mode: match file.egress.mode {
            EgressModeName::Open => EgressMode::Open,
            EgressModeName::Strict => EgressMode::Strict,
        },
        rules: egress_rules,
        dns: file.egress.dns.into_iter().map(|c| c.0).collect(),
    };
    let sip_limit = rate_limit(
        "signalling",
        file.signalling.rate_limit,
        file.signalling.burst,
    )
    .map_err(|e| UsageError(format!("{origin}: {e}")))?;
    let media = media_calls(&file.media).map_err(|e| UsageError(format!("{origin}: {e}")))?;
    let rtp_limit = rate_limit("media", file.media.rate_limit, file.media.burst)
        .map_err(|e| UsageError(format!("{origin}: {e}")))?;
    Ruleset {
        allow: file.signalling.allow.into_iter().map(|c| c.0).collect(),
        sig_ports: file.signalling.ports.0,
        rtp: (file.media.rtp_ports.0, file.media.rtp_ports.1),
        provider_rtp: (
            file.media.provider_rtp_ports.0,
            file.media.provider_rtp_ports.1,
        ),
        dry_run: file.policy.dry_run,
        log_denied: file.policy.log_denied,
        sip_limit,
        rtp_limit,
        check_rtp: file.media.check_rtp,
        mode,
        ping: file.strict.ping,
        rules,
        egress,
        media,
    }
    .normalise()
    .map_err(|e| UsageError(format!("{origin}: {e}")))
}

/// "FILE: line L, column C: WHAT", then the line itself.
fn toml_error(e: &toml::de::Error, text: &str, origin: &str, kind: &str) -> UsageError {
    let message = e.message().trim_end();
    let Some(start) = e.span().map(|r| r.start.min(text.len())) else {
        return UsageError(format!("{origin}: {kind}{message}"));
    };
    let before = &text[..start];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    let shown = text.lines().nth(line - 1).unwrap_or("").trim_end();
    UsageError(format!(
        "{origin}: line {line}, column {column}: {kind}{message}\n  {line} | {shown}"
    ))
}

/// The first section with nothing in it, and the line of its header. It is
/// refused: a file cut right after a header (caught while being written)
/// looks like that, and would otherwise silently mean that section's
/// defaults.
fn empty_section(text: &str) -> Option<(String, Option<usize>)> {
    let table: toml::Table = text.parse().ok()?;
    let name = table
        .iter()
        .find(|(_, v)| v.as_table().is_some_and(|t| t.is_empty()))?
        .0
        .clone();
    let line = text.lines().position(|l| {
        let l = l.split('#').next().unwrap_or("").trim();
        l.strip_prefix('[')
            .and_then(|l| l.strip_suffix(']'))
            .map(str::trim)
            == Some(name.as_str())
    });
    Some((name, line.map(|i| i + 1)))
}

/// Loads the ruleset from `path`, or the defaults when there is none.
pub fn load(path: Option<&Path>) -> Result<Ruleset> {
    let Some(path) = path else {
        return Ok(Ruleset::default());
    };
    let origin = path.display().to_string();
    let bytes = input::read_regular(path, "configuration file", input::TEXT_CAP)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| UsageError(format!("{origin}: not a text file (invalid UTF-8)")))?;
    Ok(parse(&text, &origin)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Ruleset {
        parse(text, "test.toml").unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    fn err(text: &str) -> String {
        match parse(text, "test.toml") {
            Ok(r) => panic!("{text:?} was accepted as {r:?}"),
            Err(e) => e.0,
        }
    }

    #[test]
    fn defaults_are_the_providers_values() {
        let r = ok("# nothing set\n");
        assert_eq!(r, Ruleset::default());
        assert_eq!(
            r.allow.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
            ["44.229.228.186/32", "44.238.177.138/32"]
        );
        assert_eq!(r.sig_ports, [5060, 5061]);
        assert_eq!(r.rtp, (40000, 60000));
        assert!(!r.dry_run && !r.log_denied);
    }

    #[test]
    fn full_file_is_read() {
        let r = ok(r#"
[signalling]
allow = ["198.51.100.0/24", "2001:db8:5::/48", "198.51.100.0/24", "192.0.2.7"]
ports = [5080, 5060, 5080]

[media]
rtp_ports = "10000-20000"

[policy]
mode = "guard"
dry_run = true
log_denied = true
"#);
        let allow: Vec<String> = r.allow.iter().map(|n| n.to_string()).collect();
        assert_eq!(
            allow,
            ["192.0.2.7/32", "198.51.100.0/24", "2001:db8:5::/48"]
        );
        assert_eq!(r.sig_ports, [5060, 5080]);
        assert_eq!(r.rtp, (10000, 20000));
        assert!(r.dry_run && r.log_denied);
    }

    #[test]
    fn media_by_call_is_read() {
        assert_eq!(
            ok("[media]\nrtp_ports = \"5004\"\n").media,
            MediaCalls::default()
        );
        let r = ok("[media]\nmode = \"calls\"\n");
        assert_eq!(
            r.media,
            MediaCalls {
                mode: MediaMode::Calls,
                call_idle_secs: 60,
                unattended: Unattended::Range
            }
        );
        let r = ok("[media]\nmode = \"calls\"\ncall_idle = \"2m\"\nunattended = \"closed\"\n");
        assert_eq!(r.media.call_idle_secs, 120);
        assert_eq!(r.media.unattended, Unattended::Closed);
        // The policy record carries it, and reads back the same.
        let p = r.policy();
        assert_eq!(p.media_idle_ns, 120_000_000_000);
        assert_eq!(Ruleset::from_parts(&p, r.allow.clone()).media, r.media);
    }

    #[test]
    fn abuse_controls_are_read() {
        let r = ok(r#"
[signalling]
rate_limit = "200/s"
burst = 400

[media]
rate_limit = "5000/s"
check_rtp = true
"#);
        assert_eq!(
            r.sip_limit,
            Some(RateLimit {
                per_sec: 200,
                burst: 400
            })
        );
        // Without a burst, one second's worth.
        assert_eq!(
            r.rtp_limit,
            Some(RateLimit {
                per_sec: 5000,
                burst: 5000
            })
        );
        assert!(r.check_rtp);
        // And they survive the trip through the kernel's form.
        let back = Ruleset::from_parts(&r.policy(), r.allow.clone());
        assert_eq!(back, r);
        let d = Ruleset::default();
        assert!(d.sip_limit.is_none() && d.rtp_limit.is_none() && !d.check_rtp);
    }

    #[test]
    fn strict_file_is_read() {
        let r = ok(r#"
[media]
rtp_ports = "10000-20000"
provider_rtp_ports = "30000-31000"

[policy]
mode = "strict"

[strict]
ping = false

[[strict.allow]]
proto = "tcp"
ports = [22, "8000-8080"]
from = ["198.51.100.0/24"]

[[strict.allow]]
proto = "icmp"
"#);
        assert!(r.strict() && !r.ping);
        assert_eq!(r.provider_rtp, (30000, 31000));
        assert_eq!(r.rules.len(), 2);
        assert_eq!(r.rules[0].ports, [(22, 22), (8000, 8080)]);
        assert_eq!(r.rules[0].from[0].to_string(), "198.51.100.0/24");
        assert!(r.rules[1].ports.is_empty() && r.rules[1].from.is_empty());
    }

    #[test]
    fn bad_strict_rules_are_refused() {
        let cases: &[(&str, &str)] = &[
            ("[[strict.allow]]\nproto = \"tcp\"\n", "has no ports"),
            (
                "[[strict.allow]]\nproto = \"icmp\"\nports = [1]\n",
                "has no ports; remove",
            ),
            ("[[strict.allow]]\nproto = \"gre\"\n", "unknown variant"),
            ("[[strict.allow]]\nproto = \"udp\"\nports = [0]\n", "port 0"),
            (
                "[[strict.allow]]\nproto = \"udp\"\nports = [\"9-1\"]\n",
                "starts after",
            ),
            (
                "[[strict.allow]]\nproto = \"udp\"\nports = [1]\nfrom = [\"x\"]\n",
                "not an IP",
            ),
            (
                "[[strict.allow]]\nproto = \"udp\"\nport = [1]\n",
                "unknown field",
            ),
            ("[strict]\npong = true\n", "unknown field"),
            (
                "[[strict.allow]]\nproto = \"tcp\"\nports = [22]\nfrom = []\n",
                "from is empty",
            ),
            (
                "[[strict.allow]]\nproto = \"any\"\nfrom = []\n",
                "from is empty",
            ),
        ];
        for (text, says) in cases {
            let msg = err(text);
            assert!(msg.contains(says), "{text:?}: {msg}");
        }
    }

    #[test]
    fn egress_section_is_read() {
        let r = ok(r#"
[egress]
mode = "strict"
dns = ["192.0.2.53", "2001:db8::53"]

[[egress.allow]]
proto = "tcp"
ports = [443]
to = ["203.0.113.0/24"]

[[egress.allow]]
proto = "icmp"
"#);
        assert!(r.egress.strict() && !r.strict());
        assert_eq!(r.egress.dns.len(), 2);
        assert_eq!(r.egress.rules[0].ports, [(443, 443)]);
        assert_eq!(r.egress.rules[0].from[0].to_string(), "203.0.113.0/24");
        assert!(r.egress.rules[1].from.is_empty());
        let ingress = Ruleset::from_parts(&r.policy(), r.allow.clone());
        let back = crate::ruleset::Egress::from_policy(&r.egress.policy());
        let compiled = crate::ruleset::compile_rules;
        assert_eq!(compiled(&back.rules), compiled(&r.egress.rules));
        assert_eq!((back.mode, &back.dns), (r.egress.mode, &r.egress.dns));
        assert!(
            !ingress.egress.strict(),
            "the ingress record holds no egress"
        );
        assert_eq!(
            ok("[egress]
mode = \"open\"
")
            .egress,
            Egress::default()
        );
    }

    #[test]
    fn bad_egress_sections_are_refused() {
        let cases: &[(&str, &str)] = &[
            ("[egress]
mode = \"closed\"
", "unknown variant"),
            ("[egress]
dns = [\"resolver\"]
", "not an IP"),
            ("[egress]
resolvers = []
", "unknown field"),
            (
                "[[egress.allow]]
proto = \"tcp\"
ports = [443]
from = [\"192.0.2.0/24\"]
",
                "[[egress.allow]] rule 1: `from` is for [[strict.allow]]",
            ),
            (
                "[[strict.allow]]
proto = \"tcp\"
ports = [22]
to = [\"192.0.2.0/24\"]
",
                "[[strict.allow]] rule 1: `to` is for [[egress.allow]]",
            ),
            ("[[egress.allow]]
proto = \"udp\"
", "[[egress.allow]] rule 1 (proto udp) has no ports"),
            ("[[egress.allow]]
proto = \"tcp\"
ports = [0]
", "port 0"),
            (
                "[egress]
dns = [\"192.0.2.1\", \"192.0.2.2\", \"192.0.2.3\", \"192.0.2.4\", \"192.0.2.5\", \"192.0.2.6\", \"192.0.2.7\", \"192.0.2.8\", \"192.0.2.9\"]
",
                "at most 8 fit",
            ),
        ];
        for (text, says) in cases {
            let msg = err(text);
            assert!(msg.contains(says), "{text:?}: {msg}");
        }
    }

    #[test]
    fn single_port_rtp_range() {
        assert_eq!(ok("[media]\nrtp_ports = \"5004\"\n").rtp, (5004, 5004));
    }

    #[test]
    fn invalid_files_name_line_and_problem() {
        // (file, the line the error must name, words the message must contain)
        let cases: &[(&str, usize, &str)] = &[
            (
                "[signalling]\nallow = [\"44.229.228.186/33\"]\n",
                2,
                "longer than 32",
            ),
            (
                "[signalling]\nallow = [\"not-an-ip\"]\n",
                2,
                "not an IP address",
            ),
            (
                "[signalling]\nallow = [\"44.229.228.186/24\"]\n",
                2,
                "host bits",
            ),
            (
                "[signalling]\nallow = [\"::ffff:1.2.3.4\"]\n",
                2,
                "IPv4-mapped",
            ),
            ("[signalling]\nports = [0]\n", 2, "port 0"),
            ("[signalling]\nports = [70000]\n", 2, "out of range"),
            ("[signalling]\nports = [-1]\n", 2, "out of range"),
            (
                "\n[signalling]\nports = []\n",
                3,
                "at least one signalling port",
            ),
            (
                "[media]\nrtp_ports = \"60000-40000\"\n",
                2,
                "starts after it ends",
            ),
            ("[media]\nrtp_ports = \"0-100\"\n", 2, "port 0"),
            ("[media]\nrtp_ports = \"a-b\"\n", 2, "not a number"),
            ("[media]\nrtp_ports = 40000\n", 2, "string"),
            ("[policy]\nmode = \"block\"\n", 2, "unknown variant"),
            ("[policy]\ndry_run = \"yes\"\n", 2, "boolean"),
            ("[policy]\ndryrun = true\n", 2, "unknown field"),
            ("[sigalling]\nallow = []\n", 1, "unknown field"),
            ("[signalling\n", 1, "invalid table header"),
            ("allow = [\"1.2.3.4\"]\n", 1, "unknown field"),
            ("[signalling]\n", 1, "section [signalling] is empty"),
            (
                "[signalling]\nports = [5060]\n\n[media] # cut here\n",
                4,
                "section [media] is empty",
            ),
            ("media = {}\n", 0, "section [media] is empty"),
            ("[signalling]\nrate_limit = \"200\"\n", 2, "N/s"),
            ("[signalling]\nrate_limit = \"0/s\"\n", 2, "out of range"),
            ("[signalling]\nrate_limit = \"x/s\"\n", 2, "not a number"),
            ("[signalling]\nrate_limit = 200\n", 2, "string"),
            ("[media]\nrate_limit = \"50/s\"\nburst = 0\n", 3, "burst 0"),
            ("[media]\nburst = 10\n", 0, "without rate_limit"),
            ("[media]\ncheck_rtp = \"yes\"\n", 2, "boolean"),
            ("[media]\nmode = \"call\"\n", 2, "unknown variant"),
            (
                "[media]\nmode = \"calls\"\ncall_idle = \"soon\"\n",
                3,
                "call_idle \"soon\" is not a duration",
            ),
            (
                "[media]\nmode = \"calls\"\ncall_idle = \"2s\"\n",
                3,
                "out of range",
            ),
            (
                "[media]\nmode = \"calls\"\ncall_idle = \"2d\"\n",
                3,
                "out of range",
            ),
            (
                "[media]\nmode = \"calls\"\nunattended = \"open\"\n",
                3,
                "unknown variant",
            ),
            (
                "[media]\ncall_idle = \"60s\"\n",
                0,
                "only applies with mode",
            ),
            (
                "[media]\nunattended = \"closed\"\n",
                0,
                "only applies with mode",
            ),
        ];
        for (text, line, says) in cases {
            let msg = err(text);
            assert!(msg.contains(says), "{text:?}: {msg}");
            assert!(msg.starts_with("test.toml"), "{text:?}: {msg}");
            if *line > 0 {
                assert!(
                    msg.contains(&format!("line {line}")),
                    "{text:?} should name line {line}: {msg}"
                );
            }
        }
    }

    #[test]
    fn empty_and_binary_files_are_refused() {
        assert!(err("").contains("empty"));
        assert!(err("  \n\n").contains("empty"));
        let dir = std::env::temp_dir().join(format!("sipwall-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bin = dir.join("binary.toml");
        std::fs::write(&bin, [0xff, 0xfe, 0x00, 0x80]).unwrap();
        let e = load(Some(&bin)).unwrap_err().to_string();
        assert!(e.contains("not a text file"), "{e}");
        let missing = dir.join("missing.toml");
        let e = load(Some(&missing)).unwrap_err().to_string();
        assert!(e.contains("cannot read"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn shipped_example_is_the_defaults() {
        assert_eq!(
            ok(include_str!("../../dist/sipwall.toml")),
            Ruleset::default()
        );
    }

    #[test]
    fn no_file_means_defaults() {
        assert_eq!(load(None).unwrap(), Ruleset::default());
    }
}
