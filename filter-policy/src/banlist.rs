//! Bans as the operator gives them (docs/cli.md): ban files, `--for`
//! durations, changes to the set, and the allowlist they must not cut. All
//! of it is validated before `sipwall`'s `ops::banlist` writes a set.
use std::{path::Path, time::Duration};

use ipnet::IpNet;

use crate::{
    cidr::{parse_cidr, parse_lines},
    error::UsageError,
    input,
};

/// Reads a ban list: one address or CIDR a line with `#` comments (as
/// APIBAN's clients and most blocklists write them), or APIBAN's JSON
/// answer, `{"ipaddress": ["203.0.113.9", ...], ...}`.
/// `-` reads standard input, as `allow replace --file -` does.
pub fn read_file(path: &Path) -> Result<Vec<IpNet>, UsageError> {
    let (name, text) = input::read_list_text(path, "ban list")?;
    if text.trim_start().starts_with('{') {
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| UsageError(format!("{name}: not valid JSON: {e}")))?;
        let list = value
            .get("ipaddress")
            .and_then(|v| v.as_array())
            .ok_or_else(|| {
                UsageError(format!(
                    "{name}: JSON without an \"ipaddress\" array (APIBAN's format); or give one address a line"
                ))
            })?;
        return list
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let text = v
                    .as_str()
                    .ok_or_else(|| UsageError(format!("{name}: ipaddress[{i}] is not a string")))?;
                parse_cidr(text).map_err(|e| UsageError(format!("{name}: ipaddress[{i}]: {e}")))
            })
            .collect();
    }
    parse_lines(&name, &text)
}

/// Parses `--for`: seconds (`3600`, as fail2ban's `<bantime>` gives it) or
/// a sum of numbers with units s, m, h, d, w (`90s`, `10m`, `1h30m`, `7d`),
/// each unit at most once and larger units first (`1h1h` or `30m1h` is
/// more likely a typing slip than a meant sum).
pub fn parse_duration(text: &str) -> Result<Duration, UsageError> {
    const TOO_LARGE: &str = "too large: at most ten years (leave --for out for a permanent ban)";
    let bad = |why: &str| {
        UsageError(format!(
            "--for {text:?}: {why}; write seconds (3600) or a duration like 90s, 10m, 1h30m, 7d"
        ))
    };
    let t = text.trim();
    if t.is_empty() {
        return Err(bad("empty"));
    }
    if t.starts_with('-') {
        return Err(bad(
            "a negative time (fail2ban's bantime -1 means permanent: leave --for out)",
        ));
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    let mut saw_unit = false;
    let mut last_unit = u64::MAX;
    for c in t.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return Err(bad(&format!("{c:?} is not a unit"))),
        };
        if number.is_empty() {
            return Err(bad("a unit without a number"));
        }
        if unit >= last_unit {
            return Err(bad(&format!(
                "{c:?} repeated or after a smaller unit (write larger units first, each once)"
            )));
        }
        last_unit = unit;
        // Digits only: a parse can only fail by overflow.
        let n: u64 = number.parse().map_err(|_| bad(TOO_LARGE))?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| bad(TOO_LARGE))?;
        number.clear();
        saw_unit = true;
    }
    if !number.is_empty() {
        if saw_unit {
            return Err(bad("a number without a unit after another part"));
        }
        total = number.parse().map_err(|_| bad(TOO_LARGE))?;
    }
    if total == 0 {
        return Err(bad("a ban of no time bans nothing"));
    }
    // Ten years: longer is a permanent ban (leave --for out).
    if total > 10 * 365 * 86_400 {
        return Err(bad(TOO_LARGE));
    }
    Ok(Duration::from_secs(total))
}

/// Which change to make.
pub enum Change {
    /// Ban these for the duration (`None`: permanently); an entry already
    /// there takes the new expiry. Unless `force`, an entry overlapping
    /// the allowlist refuses the whole change.
    Add {
        nets: Vec<IpNet>,
        duration: Option<Duration>,
        force: bool,
    },
    /// Lift these bans; with `missing_ok`, entries not in the set are
    /// skipped instead of refused.
    Del(Vec<IpNet>, bool),
}

/// Refuses (exit 2) bans that overlap the allowlist `allow`: a ban is
/// judged before the allowlist, so one covering an allowlisted address, or
/// lying inside an allowlisted prefix, cuts the provider off. UDP
/// signalling can carry a spoofed provider address, and a PBX then logs
/// failed registrations "from" the provider for fail2ban to act on.
pub fn check_allowlist(nets: &[IpNet], allow: &[IpNet]) -> Result<(), UsageError> {
    let overlaps: Vec<String> = nets
        .iter()
        .flat_map(|ban| {
            allow
                .iter()
                .filter(move |a| a.contains(ban) || ban.contains(*a))
                .map(move |a| format!("{ban} overlaps allowlisted {a}"))
        })
        .collect();
    if overlaps.is_empty() {
        return Ok(());
    }
    Err(UsageError(format!(
        "ban add: {}: a ban is judged before the allowlist, so the allowlisted sources it covers (the provider's signalling) would be dropped; nothing changed (--force to ban them anyway)",
        overlaps.join(", ")
    )))
}

/// Seconds as "1h02m03s" for people.
pub fn human_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d{h:02}h{m:02}m")
    } else if h > 0 {
        format!("{h}h{m:02}m{s:02}s")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok = |t: &str| parse_duration(t).unwrap().as_secs();
        assert_eq!(ok("3600"), 3600);
        assert_eq!(ok("90s"), 90);
        assert_eq!(ok("10m"), 600);
        assert_eq!(ok("1h30m"), 5400);
        assert_eq!(ok("7d"), 604_800);
        assert_eq!(ok("1w"), 604_800);
        for large in [
            "99999999999999999999999s",
            "99999999999999999999",
            "20000d",
            "1h99999999999999999999m",
        ] {
            let e = parse_duration(large).unwrap_err().0;
            assert!(e.contains("too large"), "{large}: {e}");
        }
        for bad in [
            "",
            "0",
            "-1",
            "1x",
            "h",
            "1h30",
            "1.5h",
            "1h1h",
            "30m1h",
            "99999999999999999999",
            "20000d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn ban_files() {
        let dir = std::env::temp_dir().join(format!("sipwall-banfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let lines = dir.join("list.txt");
        std::fs::write(
            &lines,
            "# APIBAN\n203.0.113.9\n\n198.51.100.0/24 # a network\n",
        )
        .unwrap();
        let got: Vec<String> = read_file(&lines)
            .unwrap()
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(got, ["203.0.113.9/32", "198.51.100.0/24"]);
        let json = dir.join("list.json");
        std::fs::write(
            &json,
            r#"{"ipaddress":["203.0.113.7","2001:db8::9"],"ID":"1234"}"#,
        )
        .unwrap();
        let got: Vec<String> = read_file(&json)
            .unwrap()
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(got, ["203.0.113.7/32", "2001:db8::9/128"]);
        let bad = dir.join("bad.txt");
        std::fs::write(&bad, "203.0.113.9\nnot-an-ip\n").unwrap();
        let e = read_file(&bad).unwrap_err().0;
        assert!(e.contains("line 2"), "{e}");
        std::fs::write(&bad, r#"{"ips":[]}"#).unwrap();
        assert!(read_file(&bad).unwrap_err().0.contains("ipaddress"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bans_overlapping_the_allowlist_in_either_direction() {
        let nets =
            |list: &[&str]| -> Vec<IpNet> { list.iter().map(|t| t.parse().unwrap()).collect() };
        let allow = nets(&["44.229.228.186/32", "198.51.100.0/24", "2001:db8:5::/48"]);
        for refused in [
            "44.229.228.186/32",
            "44.229.0.0/16",
            "198.51.100.7/32",
            "198.51.100.0/25",
            "2001:db8::/32",
            "2001:db8:5:1::/64",
        ] {
            let e = check_allowlist(&nets(&["203.0.113.9/32", refused]), &allow).unwrap_err();
            assert!(
                e.0.contains(refused) && e.0.contains("--force"),
                "{refused}: {e}"
            );
        }
        for fine in [
            "44.229.228.187/32",
            "198.51.101.0/24",
            "2001:db8:6::/48",
            "203.0.113.0/24",
        ] {
            assert!(check_allowlist(&nets(&[fine]), &allow).is_ok(), "{fine}");
        }
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_duration(59), "59s");
        assert_eq!(human_duration(3599), "59m59s");
        assert_eq!(human_duration(3600), "1h00m00s");
        assert_eq!(human_duration(90_000), "1d01h00m");
    }
}
