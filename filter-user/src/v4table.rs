//! Builds the IPv4 direct table the program judges long allowlists by:
//! two bits per /24 network (none, full, partial) plus a 256-bit host map
//! for each partial /24. See `filter_common::V4_DIRECT_WORDS`.
use std::{collections::BTreeMap, net::Ipv4Addr};

use filter_common::{HostBits, V4_DIRECT_WORDS, V4_FULL, V4_PARTIAL};

/// One generation's half of the direct table and its partial networks.
pub struct V4Table {
    /// `V4_DIRECT_WORDS` words, 32 networks each.
    pub words: Vec<u64>,
    /// Host maps of the networks marked partial, by /24 (address >> 8).
    pub hosts: BTreeMap<u32, HostBits>,
}

/// Every 2-bit slot of a word set to `V4_FULL`.
const ALL_FULL: u64 = 0x5555_5555_5555_5555;

impl V4Table {
    pub fn build(prefixes: impl Iterator<Item = (Ipv4Addr, u8)>) -> V4Table {
        let mut words = vec![0u64; V4_DIRECT_WORDS as usize];
        let mut hosts: BTreeMap<u32, HostBits> = BTreeMap::new();
        for (addr, len) in prefixes {
            let addr = u32::from(addr);
            if len <= 24 {
                let first = (addr >> 8) as usize;
                let count = 1usize << (24 - len);
                if count >= 32 {
                    // Whole words: `first` is a multiple of 32 here.
                    words[first / 32..(first + count) / 32].fill(ALL_FULL);
                } else {
                    for net in first..first + count {
                        set(&mut words, net as u32, V4_FULL);
                    }
                }
            } else {
                let first = addr & 255;
                let bits = &mut hosts.entry(addr >> 8).or_default().bits;
                for host in first..first + (1u32 << (32 - len)) {
                    bits[(host / 64) as usize] |= 1 << (host % 64);
                }
            }
        }
        // A network covered whole needs no host map.
        hosts.retain(|&net, _| state(&words, net) != V4_FULL);
        for &net in hosts.keys() {
            set(&mut words, net, V4_PARTIAL);
        }
        V4Table { words, hosts }
    }

    /// Whether `addr` is allowed, read the way the XDP program reads it.
    pub fn allows(&self, addr: Ipv4Addr) -> bool {
        let addr = u32::from(addr);
        match state(&self.words, addr >> 8) {
            V4_FULL => true,
            V4_PARTIAL => self.hosts.get(&(addr >> 8)).is_some_and(|h| {
                let host = addr & 255;
                h.bits[(host / 64) as usize] >> (host % 64) & 1 != 0
            }),
            _ => false,
        }
    }
}

fn state(words: &[u64], net: u32) -> u64 {
    (words[(net / 32) as usize] >> ((net % 32) * 2)) & 3
}

fn set(words: &mut [u64], net: u32, value: u64) {
    let shift = (net % 32) * 2;
    let w = &mut words[(net / 32) as usize];
    *w = (*w & !(3 << shift)) | (value << shift);
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipnet::Ipv4Net;

    fn table(cidrs: &[&str]) -> V4Table {
        V4Table::build(cidrs.iter().map(|c| {
            let n: Ipv4Net = c.parse().unwrap();
            (n.network(), n.prefix_len())
        }))
    }

    fn allowed(t: &V4Table, a: &str) -> bool {
        t.allows(a.parse().unwrap())
    }

    #[test]
    fn prefixes_of_every_length_match_exactly_their_addresses() {
        let t = table(&[
            "44.229.228.186/32",
            "198.51.100.64/26",
            "192.0.2.0/24",
            "10.0.0.0/8",
            "203.0.112.0/23",
            "172.16.0.0/20",
        ]);
        for (addr, want) in [
            ("44.229.228.186", true),
            ("44.229.228.185", false),
            ("44.229.228.187", false),
            ("198.51.100.63", false),
            ("198.51.100.64", true),
            ("198.51.100.127", true),
            ("198.51.100.128", false),
            ("192.0.1.255", false),
            ("192.0.2.0", true),
            ("192.0.2.255", true),
            ("192.0.3.0", false),
            ("9.255.255.255", false),
            ("10.0.0.0", true),
            ("10.255.255.255", true),
            ("11.0.0.0", false),
            ("203.0.111.255", false),
            ("203.0.112.0", true),
            ("203.0.113.255", true),
            ("203.0.114.0", false),
            ("172.16.15.255", true),
            ("172.16.16.0", false),
        ] {
            assert_eq!(allowed(&t, addr), want, "{addr}");
        }
        // Only the /32 and the /26 need host maps.
        assert_eq!(t.hosts.len(), 2);
    }

    #[test]
    fn a_host_inside_a_covered_network_needs_no_host_map() {
        let t = table(&["192.0.2.0/24", "192.0.2.7/32", "0.0.0.0/0"]);
        assert!(t.hosts.is_empty());
        assert!(allowed(&t, "1.2.3.4") && allowed(&t, "255.255.255.255"));
        assert!(t.words.iter().all(|&w| w == ALL_FULL));
    }

    #[test]
    fn empty_allows_nothing() {
        let t = table(&[]);
        assert!(!allowed(&t, "44.229.228.186"));
        assert!(t.words.iter().all(|&w| w == 0));
    }
}
