//! Strict parsing of allowlist entries: an address with an optional prefix
//! length. Anything ambiguous for a firewall is refused, with the reason.
use std::net::IpAddr;

use ipnet::IpNet;

use crate::error::UsageError;

/// Parses every entry, refusing the whole list if any is invalid.
pub fn parse_all(texts: &[String]) -> Result<Vec<IpNet>, UsageError> {
    texts
        .iter()
        .map(|t| parse_cidr(t).map_err(UsageError))
        .collect()
}

/// Parses a list file's text: one entry a line, `#` starts a comment,
/// blank lines skipped; an error names `name` and the line.
pub fn parse_lines(name: &str, text: &str) -> Result<Vec<IpNet>, UsageError> {
    let mut nets = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let entry = line.split('#').next().unwrap_or("").trim();
        if entry.is_empty() {
            continue;
        }
        nets.push(
            parse_cidr(entry).map_err(|e| UsageError(format!("{name}, line {}: {e}", i + 1)))?,
        );
    }
    Ok(nets)
}

/// Parses `text` as an allowlist entry. A bare address means a single host
/// (/32 or /128). Refused, each with a message saying why and what to write
/// instead: host bits set below the prefix, IPv4-mapped IPv6 addresses, zone
/// ids, hostnames and anything else that is not an address.
pub fn parse_cidr(text: &str) -> Result<IpNet, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("empty string is not a CIDR".into());
    }
    if trimmed.contains('%') {
        return Err(format!(
            "{trimmed:?}: zone ids (%...) have no meaning in a firewall rule; remove them"
        ));
    }
    let (addr_text, prefix_text) = match trimmed.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (trimmed, None),
    };
    let addr: IpAddr = addr_text.parse().map_err(|_| {
        let looks_like_name = !addr_text.contains(':')
            && addr_text.chars().any(|c| c.is_ascii_alphabetic());
        if looks_like_name {
            format!("{trimmed:?} is not an IP address (hostnames are not resolved: write the addresses)")
        } else {
            format!("{trimmed:?} is not an IP address")
        }
    })?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix_text {
        None => max,
        Some(p) => {
            if p.is_empty() || !p.chars().all(|c| c.is_ascii_digit()) || p.len() > 3 {
                return Err(format!("{trimmed:?}: prefix length {p:?} is not a number"));
            }
            let n: u8 = p
                .parse()
                .map_err(|_| format!("{trimmed:?}: prefix length {p:?} is not a number"))?;
            if p.len() > 1 && p.starts_with('0') {
                // Written as the canonical form's number would be (a
                // leading zero reads as octal to some tools).
                return Err(format!(
                    "{trimmed:?}: prefix length {p:?} is not in canonical form; write {addr_text}/{n}"
                ));
            }
            if n > max {
                return Err(format!(
                    "{trimmed:?}: prefix length {n} is longer than {max}"
                ));
            }
            n
        }
    };
    if let IpAddr::V6(v6) = addr {
        if let Some(v4) = v6.to_ipv4_mapped() {
            return Err(format!(
                "{trimmed:?} is an IPv4-mapped IPv6 address; write the IPv4 form ({v4}) instead"
            ));
        }
    }
    let net = IpNet::new(addr, prefix).map_err(|e| format!("{trimmed:?}: {e}"))?;
    if net.network() != addr {
        return Err(format!(
            "{trimmed:?} has host bits set below the /{prefix}; write {} (the network) or {addr}/{max} (the host)",
            net.trunc()
        ));
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::parse_cidr;

    #[test]
    fn accepts_networks_and_hosts() {
        for (text, want) in [
            ("44.229.228.186/32", "44.229.228.186/32"),
            ("44.229.228.186", "44.229.228.186/32"),
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("2001:db8::/32", "2001:db8::/32"),
            ("2001:db8::1", "2001:db8::1/128"),
            (" 192.0.2.0/24 ", "192.0.2.0/24"),
        ] {
            assert_eq!(parse_cidr(text).unwrap().to_string(), want, "{text}");
        }
    }

    #[test]
    fn refuses_with_a_reason() {
        for (text, says) in [
            ("44.229.228.186/24", "host bits"),
            ("44.229.228.0/33", "longer than 32"),
            ("2001:db8::/129", "longer than 128"),
            ("::ffff:192.0.2.1", "IPv4-mapped"),
            ("fe80::1%eth0", "zone ids"),
            ("sip.vapi.ai", "hostnames"),
            ("1.2.3", "not an IP address"),
            ("1.2.3.4/", "not a number"),
            ("1.2.3.4/x", "not a number"),
            ("1.2.3.4/-1", "not a number"),
            ("1.2.3.4/032", "canonical"),
            ("1.2.3.0/024", "canonical"),
            ("2001:db8::/032", "canonical"),
            ("", "empty"),
            ("256.1.1.1", "not an IP address"),
        ] {
            let err = parse_cidr(text).expect_err(text);
            assert!(err.contains(says), "{text}: {err}");
        }
    }
}
