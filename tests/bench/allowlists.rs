//! Allowlists of a given size for the scale and update benchmarks: the
//! provider's two addresses plus prefixes drawn from a seeded PRNG, about
//! 60 % IPv4 and 40 % IPv6, of mixed lengths. None of them covers the
//! documentation ranges the bench sends from, so a denied source stays
//! denied at every size.
use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use filter_policy::ruleset::Ruleset;
use ipnet::IpNet;
use sipwall_lab::PROVIDER;
use sipwall_tests::generator::Rng;

const V4_LENGTHS: [u8; 9] = [8, 12, 16, 20, 22, 24, 28, 30, 32];
const V6_LENGTHS: [u8; 7] = [29, 32, 40, 48, 56, 64, 128];

/// The ranges traffic in the bench comes from (RFC 5737, RFC 3849).
fn test_nets() -> [IpNet; 4] {
    [
        "192.0.2.0/24",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "2001:db8::/32",
    ]
    .map(|n| n.parse().expect("valid CIDR"))
}

/// `size` prefixes (at least the provider's two), the same for the same
/// seed.
pub fn allowlist(size: usize, seed: u64) -> Vec<IpNet> {
    let mut rng = Rng::new(seed);
    let mut set: BTreeSet<IpNet> = PROVIDER
        .iter()
        .map(|a| IpNet::new(IpAddr::V4(*a), 32).expect("valid prefix"))
        .collect();
    let avoid = test_nets();
    while set.len() < size {
        let net = if rng.percent(60) {
            let addr = Ipv4Addr::from(rng.next_u64() as u32);
            IpNet::new(IpAddr::V4(addr), rng.pick(&V4_LENGTHS))
        } else {
            let addr =
                Ipv6Addr::from((u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64()));
            IpNet::new(IpAddr::V6(addr), rng.pick(&V6_LENGTHS))
        }
        .expect("valid prefix length")
        .trunc();
        if avoid
            .iter()
            .any(|t| t.contains(&net.network()) || net.contains(&t.network()))
        {
            continue;
        }
        set.insert(net);
    }
    set.into_iter().collect()
}

/// The default ruleset with the allowlist replaced.
pub fn ruleset(allow: Vec<IpNet>) -> Ruleset {
    Ruleset {
        allow,
        ..Ruleset::default()
    }
}
