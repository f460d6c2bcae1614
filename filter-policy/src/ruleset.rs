//! The policy in the form the program enforces: allowlist, signalling ports,
//! RTP range and flags, validated and normalised.
use std::net::{Ipv4Addr, Ipv6Addr};

use filter_common::{
    maps::ALLOW_V4_MAX, maps::ALLOW_V6_MAX, rule_index, rule_ports, EgressPolicy, Policy,
    StrictRule, EGRESS_STRICT, FLAG_CHECK_RTP, FLAG_DRY_RUN, FLAG_LOG_DENIED, FLAG_MEDIA_CALLS,
    FLAG_PING, FLAG_STRICT, FLAG_UNATTENDED_CLOSED, MAX_DNS_ENTRIES, MAX_EGRESS_RULES,
    MAX_STRICT_RULES, RULE_ANY_PROTO, RULE_PROTO_MASK, RULE_V4, RULE_V6,
};
use ipnet::{IpNet, Ipv6Net};

use crate::error::UsageError;

/// The provider's two signalling addresses (docs/policy.md).
pub const PROVIDER_SIGNALLING: [&str; 2] = ["44.229.228.186/32", "44.238.177.138/32"];
pub const DEFAULT_SIG_PORTS: [u16; 2] = [5060, 5061];
pub const DEFAULT_RTP: (u16, u16) = (40000, 60000);
/// The provider's media ports: it sends media from these (UDP source).
pub const DEFAULT_PROVIDER_RTP: (u16, u16) = (40000, 60000);

/// `[policy] mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Guard the signalling ports, pass everything else (docs/policy.md).
    #[default]
    Guard,
    /// Default deny (docs/policy.md, "Strict mode").
    Strict,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Guard => "guard",
            Mode::Strict => "strict",
        }
    }
}

/// The protocol of a `[[strict.allow]]` rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RuleProto {
    Tcp,
    Udp,
    Sctp,
    /// ICMP and ICMPv6.
    Icmp,
    Any,
}

impl RuleProto {
    pub fn name(self) -> &'static str {
        match self {
            RuleProto::Tcp => "tcp",
            RuleProto::Udp => "udp",
            RuleProto::Sctp => "sctp",
            RuleProto::Icmp => "icmp",
            RuleProto::Any => "any",
        }
    }

    /// Whether the rule names ports (tcp, udp, sctp).
    pub fn has_ports(self) -> bool {
        matches!(self, RuleProto::Tcp | RuleProto::Udp | RuleProto::Sctp)
    }

    /// Whether a packet of IP protocol `proto` is this rule's.
    pub fn matches(self, proto: u8) -> bool {
        match self {
            RuleProto::Tcp => proto == 6,
            RuleProto::Udp => proto == 17,
            RuleProto::Sctp => proto == 132,
            RuleProto::Icmp => proto == 1 || proto == 58,
            RuleProto::Any => true,
        }
    }
}

/// One `[[strict.allow]]` rule: `proto`, destination `ports` (inclusive
/// ranges; empty for icmp and any) and source prefixes (`from`, empty for
/// any source). An `[[egress.allow]]` rule has the same shape, its `from`
/// holding the destination prefixes the file calls `to`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AllowRule {
    pub proto: RuleProto,
    pub ports: Vec<(u16, u16)>,
    pub from: Vec<IpNet>,
}

impl AllowRule {
    /// Whether a new packet of `proto` from `src` to `dport` matches.
    pub fn allows(&self, proto: u8, src: std::net::IpAddr, dport: u16) -> bool {
        self.proto.matches(proto)
            && (self.ports.is_empty() || self.ports.iter().any(|&(a, b)| a <= dport && dport <= b))
            && (self.from.is_empty() || self.from.iter().any(|n| n.contains(&src)))
    }

    /// The rule as the configuration file writes it.
    pub fn to_toml(&self) -> String {
        let mut out = format!("[[strict.allow]]\nproto = \"{}\"\n", self.proto.name());
        if !self.ports.is_empty() {
            let ports: Vec<String> = self
                .ports
                .iter()
                .map(|&(a, b)| {
                    if a == b {
                        a.to_string()
                    } else {
                        format!("\"{a}-{b}\"")
                    }
                })
                .collect();
            out += &format!("ports = [{}]\n", ports.join(", "));
        }
        if !self.from.is_empty() {
            let from: Vec<String> = self.from.iter().map(|n| format!("\"{n}\"")).collect();
            out += &format!("from = [{}]\n", from.join(", "));
        }
        out
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ruleset {
    /// Sorted, without duplicates.
    pub allow: Vec<IpNet>,
    /// Sorted, without duplicates, never empty, never 0.
    pub sig_ports: Vec<u16>,
    /// Inclusive RTP port range, first <= last.
    pub rtp: (u16, u16),
    /// The provider's media ports (UDP source), inclusive.
    pub provider_rtp: (u16, u16),
    pub dry_run: bool,
    pub log_denied: bool,
    /// Per-source limit of allowed signalling (`[signalling] rate_limit`).
    pub sip_limit: Option<RateLimit>,
    /// Per-source limit of media (`[media] rate_limit`).
    pub rtp_limit: Option<RateLimit>,
    /// UDP into the media range must look like RTP/RTCP.
    pub check_rtp: bool,
    pub mode: Mode,
    /// Strict mode passes echo requests.
    pub ping: bool,
    /// Strict mode's `[[strict.allow]]` rules, in file order.
    pub rules: Vec<AllowRule>,
    /// `[egress]`: what the host may send (docs/policy.md, "Egress").
    pub egress: Egress,
    /// `[media] mode`, `call_idle`, `unattended` (docs/policy.md, "Media
    /// by call").
    pub media: MediaCalls,
}

/// `[media] mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MediaMode {
    /// The media range is open to any source.
    #[default]
    Range,
    /// Media only through the live calls' pinholes.
    Calls,
}

/// `[media] unattended`: what calls mode does while no reader runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Unattended {
    /// Media passes by range.
    #[default]
    Range,
    /// Only live pinholes pass.
    Closed,
}

/// Calls mode's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MediaCalls {
    pub mode: MediaMode,
    /// `call_idle` in seconds.
    pub call_idle_secs: u64,
    pub unattended: Unattended,
}

/// `[media] call_idle`'s default, in seconds.
pub const DEFAULT_CALL_IDLE_SECS: u64 = 60;
/// `call_idle`'s bounds, in seconds.
pub const CALL_IDLE_MIN_SECS: u64 = 5;
pub const CALL_IDLE_MAX_SECS: u64 = 86_400;

impl Default for MediaCalls {
    fn default() -> Self {
        MediaCalls {
            mode: MediaMode::Range,
            call_idle_secs: DEFAULT_CALL_IDLE_SECS,
            unattended: Unattended::Range,
        }
    }
}

impl MediaCalls {
    pub fn calls(&self) -> bool {
        self.mode == MediaMode::Calls
    }
}

impl MediaMode {
    pub fn name(self) -> &'static str {
        match self {
            MediaMode::Range => "range",
            MediaMode::Calls => "calls",
        }
    }
}

impl Unattended {
    pub fn name(self) -> &'static str {
        match self {
            Unattended::Range => "range",
            Unattended::Closed => "closed",
        }
    }
}

/// `[egress] mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EgressMode {
    /// Outgoing packets are not judged.
    #[default]
    Open,
    /// Default deny outbound (docs/policy.md, "Egress").
    Strict,
}

impl EgressMode {
    pub fn name(self) -> &'static str {
        match self {
            EgressMode::Open => "open",
            EgressMode::Strict => "strict",
        }
    }
}

/// The `[egress]` section: its mode, `[[egress.allow]]` rules (each
/// rule's `from` holds its `to` prefixes) and the DNS resolvers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Egress {
    pub mode: EgressMode,
    /// In file order.
    pub rules: Vec<AllowRule>,
    /// Resolvers (host prefixes, or networks of resolvers), sorted.
    pub dns: Vec<IpNet>,
}

/// DNS resolvers `[egress] dns` may name (two kernel entries each).
pub const MAX_RESOLVERS: usize = MAX_DNS_ENTRIES / 2;

impl Egress {
    pub fn strict(&self) -> bool {
        self.mode == EgressMode::Strict
    }

    /// The rules DNS to the resolvers compiles to: UDP and TCP to port 53.
    fn dns_rules(&self) -> Vec<AllowRule> {
        if self.dns.is_empty() {
            return Vec::new();
        }
        [RuleProto::Udp, RuleProto::Tcp]
            .into_iter()
            .map(|proto| AllowRule {
                proto,
                ports: vec![(53, 53)],
                from: self.dns.clone(),
            })
            .collect()
    }

    /// The kernel-side form (the egress program's own map).
    pub fn policy(&self) -> EgressPolicy {
        let mut p = EgressPolicy::empty();
        if self.strict() {
            p.flags |= EGRESS_STRICT;
        }
        let rules = compile_rules(&self.rules);
        p.rule_count = rules.len().min(MAX_EGRESS_RULES) as u32;
        for (slot, entry) in p.rules.iter_mut().zip(rules) {
            *slot = entry;
        }
        p.rule_index = rule_index(&p.rules[..p.rule_count as usize]);
        let dns = compile_rules(&self.dns_rules());
        p.dns_count = dns.len().min(MAX_DNS_ENTRIES) as u32;
        for (slot, entry) in p.dns.iter_mut().zip(dns) {
            *slot = entry;
        }
        p
    }

    /// Rebuilds the section from what the egress program holds.
    pub fn from_policy(p: &EgressPolicy) -> Egress {
        let rules = p.rules[..(p.rule_count as usize).min(MAX_EGRESS_RULES)]
            .iter()
            .map(decompile_rule)
            .collect();
        let mut dns: Vec<IpNet> = p.dns[..(p.dns_count as usize).min(MAX_DNS_ENTRIES)]
            .iter()
            .flat_map(|e| decompile_rule(e).from)
            .collect();
        dns.sort();
        dns.dedup();
        Egress {
            mode: if p.flags & EGRESS_STRICT != 0 {
                EgressMode::Strict
            } else {
                EgressMode::Open
            },
            rules,
            dns,
        }
    }

    /// Refuses what the egress map cannot hold.
    fn check_fits(&self) -> Result<(), UsageError> {
        let entries = compile_rules(&self.rules).len();
        if entries > MAX_EGRESS_RULES {
            return Err(UsageError(format!(
                "the [[egress.allow]] rules need {entries} entries (one per port range and destination prefix, ICMP counts twice); at most {MAX_EGRESS_RULES} fit: merge ports into ranges or prefixes into shorter ones"
            )));
        }
        if self.dns.len() > MAX_RESOLVERS {
            return Err(UsageError(format!(
                "[egress] dns names {} resolvers; at most {MAX_RESOLVERS} fit",
                self.dns.len()
            )));
        }
        Ok(())
    }
}

/// A per-source token bucket: `per_sec` packets a second on average,
/// `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// 1 to [`RateLimit::MAX_RATE`].
    pub per_sec: u32,
    /// 1 to [`RateLimit::MAX_BURST`].
    pub burst: u32,
}

impl RateLimit {
    pub const MAX_RATE: u32 = 10_000_000;
    pub const MAX_BURST: u32 = 10_000_000;

    /// The kernel's form: (interval, window) in nanoseconds.
    pub fn to_kernel(self) -> (u64, u64) {
        let interval = 1_000_000_000 / u64::from(self.per_sec);
        (interval, interval * u64::from(self.burst))
    }

    /// Back from the kernel's form; `None` for "no limit".
    pub fn from_kernel(interval_ns: u64, window_ns: u64) -> Option<RateLimit> {
        if interval_ns == 0 {
            return None;
        }
        let per_sec = (1_000_000_000 + interval_ns / 2) / interval_ns;
        Some(RateLimit {
            per_sec: per_sec.max(1) as u32,
            burst: (window_ns / interval_ns).max(1) as u32,
        })
    }
}

impl std::fmt::Display for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/s burst {}", self.per_sec, self.burst)
    }
}

impl Default for Ruleset {
    fn default() -> Self {
        Ruleset {
            allow: PROVIDER_SIGNALLING
                .iter()
                .map(|c| c.parse().expect("built-in CIDR"))
                .collect(),
            sig_ports: DEFAULT_SIG_PORTS.to_vec(),
            rtp: DEFAULT_RTP,
            provider_rtp: DEFAULT_PROVIDER_RTP,
            dry_run: false,
            log_denied: false,
            sip_limit: None,
            rtp_limit: None,
            check_rtp: false,
            mode: Mode::Guard,
            ping: true,
            rules: Vec::new(),
            egress: Egress::default(),
            media: MediaCalls::default(),
        }
    }
}

impl Ruleset {
    /// Sorts and de-duplicates, and refuses what the maps cannot hold.
    pub fn normalise(mut self) -> Result<Ruleset, UsageError> {
        self.allow.sort();
        self.allow.dedup();
        self.sig_ports.sort();
        self.sig_ports.dedup();
        self.egress.dns.sort();
        self.egress.dns.dedup();
        check_allow_fits(&self.allow)?;
        self.egress.check_fits()?;
        let entries = compile_rules(&self.rules).len();
        if entries > MAX_STRICT_RULES {
            return Err(UsageError(format!(
                "the [[strict.allow]] rules need {entries} entries (one per port range and source prefix, ICMP counts twice); at most {MAX_STRICT_RULES} fit: merge ports into ranges or prefixes into shorter ones"
            )));
        }
        Ok(self)
    }

    pub fn strict(&self) -> bool {
        self.mode == Mode::Strict
    }

    pub fn v4(&self) -> impl Iterator<Item = (Ipv4Addr, u8)> + '_ {
        self.allow.iter().filter_map(|n| match n {
            IpNet::V4(n) => Some((n.network(), n.prefix_len())),
            IpNet::V6(_) => None,
        })
    }

    pub fn v6(&self) -> impl Iterator<Item = (Ipv6Addr, u8)> + '_ {
        self.allow.iter().filter_map(|n| match n {
            IpNet::V6(n) => Some((n.network(), n.prefix_len())),
            IpNet::V4(_) => None,
        })
    }

    /// The kernel-side form of everything but the allowlist.
    pub fn policy(&self) -> Policy {
        let mut p = Policy::empty();
        for &port in &self.sig_ports {
            p.set_sig_port(port);
        }
        p.rtp_first = self.rtp.0;
        p.rtp_last = self.rtp.1;
        p.provider_rtp_first = self.provider_rtp.0;
        p.provider_rtp_last = self.provider_rtp.1;
        if self.strict() {
            p.flags |= FLAG_STRICT;
        }
        if self.ping {
            p.flags |= FLAG_PING;
        }
        let entries = compile_rules(&self.rules);
        p.rule_count = entries.len().min(MAX_STRICT_RULES) as u32;
        for (slot, entry) in p.rules.iter_mut().zip(entries) {
            *slot = entry;
        }
        p.rule_ports = rule_ports(&p.rules[..p.rule_count as usize]);
        if self.dry_run {
            p.flags |= FLAG_DRY_RUN;
        }
        if self.log_denied {
            p.flags |= FLAG_LOG_DENIED;
        }
        if self.check_rtp {
            p.flags |= FLAG_CHECK_RTP;
        }
        if self.media.calls() {
            p.flags |= FLAG_MEDIA_CALLS;
            if self.media.unattended == Unattended::Closed {
                p.flags |= FLAG_UNATTENDED_CLOSED;
            }
            p.media_idle_ns = self.media.call_idle_secs * 1_000_000_000;
        }
        if let Some(limit) = self.sip_limit {
            (p.sip_interval_ns, p.sip_window_ns) = limit.to_kernel();
        }
        if let Some(limit) = self.rtp_limit {
            (p.rtp_interval_ns, p.rtp_window_ns) = limit.to_kernel();
        }
        let v4: Vec<_> = self.v4().collect();
        if v4.len() <= filter_common::INLINE_PREFIXES {
            p.v4_inline_len = v4.len() as u32;
            for (i, (a, len)) in v4.iter().enumerate() {
                let mask = if *len == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(*len))
                };
                p.v4_inline[i] = [u32::from(*a) & mask, mask];
            }
        }
        let v6: Vec<_> = self.v6().collect();
        if v6.len() <= filter_common::INLINE_PREFIXES {
            p.v6_inline_len = v6.len() as u32;
            for (i, (a, len)) in v6.iter().enumerate() {
                let mask: u128 = if *len == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(*len))
                };
                let net = u128::from(*a) & mask;
                p.v6_inline[i] = [
                    (net >> 64) as u64,
                    net as u64,
                    (mask >> 64) as u64,
                    mask as u64,
                ];
            }
        }
        p
    }

    /// Rebuilds a ruleset from what the program holds.
    pub fn from_parts(policy: &Policy, allow: Vec<IpNet>) -> Ruleset {
        let sig_ports = (0..=u16::MAX).filter(|&p| policy.is_sig_port(p)).collect();
        let n = (policy.rule_count as usize).min(MAX_STRICT_RULES);
        Ruleset {
            allow,
            sig_ports,
            rtp: (policy.rtp_first, policy.rtp_last),
            provider_rtp: (policy.provider_rtp_first, policy.provider_rtp_last),
            dry_run: policy.flags & FLAG_DRY_RUN != 0,
            log_denied: policy.flags & FLAG_LOG_DENIED != 0,
            sip_limit: RateLimit::from_kernel(policy.sip_interval_ns, policy.sip_window_ns),
            rtp_limit: RateLimit::from_kernel(policy.rtp_interval_ns, policy.rtp_window_ns),
            check_rtp: policy.flags & FLAG_CHECK_RTP != 0,
            mode: if policy.flags & FLAG_STRICT != 0 {
                Mode::Strict
            } else {
                Mode::Guard
            },
            ping: policy.flags & FLAG_PING != 0,
            rules: policy.rules[..n].iter().map(decompile_rule).collect(),
            egress: Egress::default(),
            media: if policy.flags & FLAG_MEDIA_CALLS != 0 {
                MediaCalls {
                    mode: MediaMode::Calls,
                    call_idle_secs: policy.media_idle_ns / 1_000_000_000,
                    unattended: if policy.flags & FLAG_UNATTENDED_CLOSED != 0 {
                        Unattended::Closed
                    } else {
                        Unattended::Range
                    },
                }
            } else {
                MediaCalls::default()
            },
        }
    }

    /// One line for humans: mode, ports, RTP range, allowlist size, dry-run.
    pub fn summary(&self) -> String {
        let ports: Vec<String> = self.sig_ports.iter().map(u16::to_string).collect();
        let strict = if self.strict() {
            // Counted as the kernel holds them (one per port range and
            // source prefix, ICMP twice), so that a file's rules and the
            // same policy read back from the kernel say the same.
            let entries = compile_rules(&self.rules).len();
            format!(
                "STRICT (default deny, {entries} [[strict.allow]] {}, ping {}); ",
                if entries == 1 { "entry" } else { "entries" },
                if self.ping { "on" } else { "off" }
            )
        } else {
            String::new()
        };
        let egress = if self.egress.strict() {
            format!(
                "; EGRESS STRICT ({} allow rules, {} DNS resolvers)",
                self.egress.rules.len(),
                self.egress.dns.len()
            )
        } else {
            String::new()
        };
        format!(
            "{strict}signalling ports {} from {} allowlisted prefixes ({} IPv4, {} IPv6); RTP UDP to {}-{}, from provider ports {}-{}{}{egress}{}",
            ports.join(","),
            self.allow.len(),
            self.v4().count(),
            self.v6().count(),
            self.rtp.0,
            self.rtp.1,
            self.provider_rtp.0,
            self.provider_rtp.1,
            self.abuse_summary(),
            if self.dry_run {
                "; DRY RUN (nothing dropped)"
            } else {
                ""
            }
        )
    }
}

impl Ruleset {
    /// The abuse controls that are on, as "; ..." parts of the summary.
    fn abuse_summary(&self) -> String {
        let mut out = String::new();
        if let Some(l) = self.sip_limit {
            out += &format!("; signalling limited to {l} per source");
        }
        if let Some(l) = self.rtp_limit {
            out += &format!("; media limited to {l} per source");
        }
        if self.check_rtp {
            out += "; media must be RTP";
        }
        if self.media.calls() {
            out += &format!(
                "; media only for live calls (idle {}s, unattended {})",
                self.media.call_idle_secs,
                self.media.unattended.name()
            );
        }
        out
    }
}

/// Refuses allowlists larger than the maps hold, before anything is written.
pub fn check_allow_fits(allow: &[IpNet]) -> Result<(), UsageError> {
    let v4 = allow.iter().filter(|n| matches!(n, IpNet::V4(_))).count();
    let v6 = allow.len() - v4;
    if v4 > ALLOW_V4_MAX as usize {
        return Err(UsageError(format!(
            "the allowlist has {v4} IPv4 prefixes; at most {ALLOW_V4_MAX} fit"
        )));
    }
    if v6 > ALLOW_V6_MAX as usize {
        return Err(UsageError(format!(
            "the allowlist has {v6} IPv6 prefixes; at most {ALLOW_V6_MAX} fit"
        )));
    }
    Ok(())
}

/// The kernel's entries for `rules`: one per rule, port range and source
/// prefix, sorted and without duplicates. ICMP is two entries (ICMP,
/// ICMPv6) per prefix.
pub fn compile_rules(rules: &[AllowRule]) -> Vec<StrictRule> {
    let mut out = Vec::new();
    for rule in rules {
        let ports: Vec<(u16, u16)> = if rule.proto.has_ports() {
            rule.ports.clone()
        } else {
            vec![(0, u16::MAX)]
        };
        let from: Vec<Option<IpNet>> = if rule.from.is_empty() {
            vec![None]
        } else {
            rule.from.iter().copied().map(Some).collect()
        };
        for &(first, last) in &ports {
            for net in &from {
                // Each protocol with the families it exists in: ICMP is
                // protocol 1 in IPv4 and 58 in IPv6.
                const BOTH: u32 = RULE_V4 | RULE_V6;
                let protos: &[(u32, u32)] = match rule.proto {
                    RuleProto::Tcp => &[(6, BOTH)],
                    RuleProto::Udp => &[(17, BOTH)],
                    RuleProto::Sctp => &[(132, BOTH)],
                    RuleProto::Icmp => &[(1, RULE_V4), (58, RULE_V6)],
                    RuleProto::Any => &[(RULE_ANY_PROTO, BOTH)],
                };
                let (net_words, mask_words, families) = match net {
                    None => ([0; 2], [0; 2], BOTH),
                    Some(n) => {
                        let (net, mask) = source_words(n);
                        let family = match n {
                            IpNet::V4(_) => RULE_V4,
                            IpNet::V6(_) => RULE_V6,
                        };
                        (net, mask, family)
                    }
                };
                for &(proto, proto_families) in protos {
                    let families = families & proto_families;
                    if families == 0 {
                        // ICMPv4 from an IPv6 prefix, say: nothing to match.
                        continue;
                    }
                    out.push(StrictRule {
                        proto: proto | families,
                        port_first: first,
                        port_last: last,
                        net: net_words,
                        mask: mask_words,
                    });
                }
            }
        }
    }
    out.sort_by_key(|r| (r.proto, r.port_first, r.port_last, r.net, r.mask));
    out.dedup();
    out
}

/// A source prefix as the kernel compares it: its network and mask as 16
/// bytes (IPv4 mapped into IPv6) in two native words of memory order.
fn source_words(net: &IpNet) -> ([u64; 2], [u64; 2]) {
    let v6 = match net {
        IpNet::V4(n) => Ipv6Net::new(n.network().to_ipv6_mapped(), 96 + n.prefix_len())
            .expect("a mapped prefix is at most /128"),
        IpNet::V6(n) => *n,
    };
    let words = |bytes: [u8; 16]| {
        [
            u64::from_ne_bytes(bytes[..8].try_into().expect("8 bytes")),
            u64::from_ne_bytes(bytes[8..].try_into().expect("8 bytes")),
        ]
    };
    (words(v6.network().octets()), words(v6.netmask().octets()))
}

/// The rule an entry of [`compile_rules`] came from (one port range, one
/// prefix): compiling it again gives the same entry.
fn decompile_rule(entry: &StrictRule) -> AllowRule {
    let proto = match entry.proto & RULE_PROTO_MASK {
        6 => RuleProto::Tcp,
        17 => RuleProto::Udp,
        132 => RuleProto::Sctp,
        1 | 58 => RuleProto::Icmp,
        _ => RuleProto::Any,
    };
    let bytes = |words: [u64; 2]| {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&words[0].to_ne_bytes());
        b[8..].copy_from_slice(&words[1].to_ne_bytes());
        b
    };
    let from = if entry.mask == [0; 2] && entry.proto & RULE_V4 != 0 {
        // No prefix: any source (of either family; an ICMP entry has the
        // one its protocol exists in).
        Vec::new()
    } else {
        let addr = Ipv6Addr::from(bytes(entry.net));
        let len = u128::from_be_bytes(bytes(entry.mask)).count_ones() as u8;
        let net = match addr.to_ipv4_mapped() {
            Some(v4) if len >= 96 => IpNet::new(v4.into(), len - 96),
            _ => IpNet::new(addr.into(), len),
        };
        vec![net.expect("a valid prefix length")]
    };
    let ports = if proto.has_ports() {
        vec![(entry.port_first, entry.port_last)]
    } else {
        Vec::new()
    };
    AllowRule { proto, ports, from }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_survive_the_round_trip_through_the_policy() {
        let rules = vec![
            AllowRule {
                proto: RuleProto::Tcp,
                ports: vec![(22, 22), (8000, 8080)],
                from: vec![
                    "198.51.100.0/24".parse().unwrap(),
                    "2001:db8::/32".parse().unwrap(),
                ],
            },
            AllowRule {
                proto: RuleProto::Icmp,
                ports: vec![],
                from: vec![],
            },
            AllowRule {
                proto: RuleProto::Any,
                ports: vec![],
                from: vec!["192.0.2.7/32".parse().unwrap()],
            },
        ];
        let ruleset = Ruleset {
            mode: Mode::Strict,
            rules,
            ..Ruleset::default()
        };
        let policy = ruleset.policy();
        assert_eq!(policy.rule_count, 4 + 2 + 1);
        assert!(ruleset.rules[0].allows(6, "198.51.100.9".parse().unwrap(), 8080));
        let back = Ruleset::from_parts(&policy, ruleset.allow.clone());
        assert_eq!(compile_rules(&back.rules), compile_rules(&ruleset.rules));
        assert_eq!(back.policy(), policy);
        assert!(back.strict() && back.ping);
    }

    #[test]
    fn too_many_entries_are_refused() {
        let rule = AllowRule {
            proto: RuleProto::Udp,
            ports: (1..=33).map(|p| (p, p)).collect(),
            from: vec![],
        };
        let e = Ruleset {
            mode: Mode::Strict,
            rules: vec![rule],
            ..Ruleset::default()
        }
        .normalise()
        .unwrap_err();
        assert!(
            e.0.contains("33 entries") && e.0.contains("at most 32"),
            "{e}"
        );
    }
}
