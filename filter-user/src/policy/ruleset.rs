//! The policy in the form the program enforces: allowlist, signalling ports,
//! RTP range and flags, validated and normalised.
use std::net::{Ipv4Addr, Ipv6Addr};

use filter_common::{
    maps::ALLOW_V4_MAX, maps::ALLOW_V6_MAX, Policy, FLAG_CHECK_RTP, FLAG_DRY_RUN, FLAG_LOG_DENIED,
};
use ipnet::IpNet;

use crate::error::UsageError;

/// The provider's two signalling addresses (docs/policy.md).
pub const PROVIDER_SIGNALLING: [&str; 2] = ["44.229.228.186/32", "44.238.177.138/32"];
pub const DEFAULT_SIG_PORTS: [u16; 2] = [5060, 5061];
pub const DEFAULT_RTP: (u16, u16) = (40000, 60000);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ruleset {
    /// Sorted, without duplicates.
    pub allow: Vec<IpNet>,
    /// Sorted, without duplicates, never empty, never 0.
    pub sig_ports: Vec<u16>,
    /// Inclusive RTP port range, first <= last.
    pub rtp: (u16, u16),
    pub dry_run: bool,
    pub log_denied: bool,
    /// Per-source limit of allowed signalling (`[signalling] rate_limit`).
    pub sip_limit: Option<RateLimit>,
    /// Per-source limit of media (`[media] rate_limit`).
    pub rtp_limit: Option<RateLimit>,
    /// UDP into the media range must look like RTP/RTCP.
    pub check_rtp: bool,
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
            dry_run: false,
            log_denied: false,
            sip_limit: None,
            rtp_limit: None,
            check_rtp: false,
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
        check_allow_fits(&self.allow)?;
        Ok(self)
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
        if self.dry_run {
            p.flags |= FLAG_DRY_RUN;
        }
        if self.log_denied {
            p.flags |= FLAG_LOG_DENIED;
        }
        if self.check_rtp {
            p.flags |= FLAG_CHECK_RTP;
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
        Ruleset {
            allow,
            sig_ports,
            rtp: (policy.rtp_first, policy.rtp_last),
            dry_run: policy.flags & FLAG_DRY_RUN != 0,
            log_denied: policy.flags & FLAG_LOG_DENIED != 0,
            sip_limit: RateLimit::from_kernel(policy.sip_interval_ns, policy.sip_window_ns),
            rtp_limit: RateLimit::from_kernel(policy.rtp_interval_ns, policy.rtp_window_ns),
            check_rtp: policy.flags & FLAG_CHECK_RTP != 0,
        }
    }

    /// One line for humans: ports, RTP range, allowlist size, dry-run.
    pub fn summary(&self) -> String {
        let ports: Vec<String> = self.sig_ports.iter().map(u16::to_string).collect();
        format!(
            "signalling ports {} from {} allowlisted prefixes ({} IPv4, {} IPv6); RTP UDP {}-{}{}{}",
            ports.join(","),
            self.allow.len(),
            self.v4().count(),
            self.v6().count(),
            self.rtp.0,
            self.rtp.1,
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
