//! The ban set as the program reads it (see `filter_common::BanEntry`,
//! `BAN_GATE_WORDS` and `BAN_HOST_WORDS`): the value each trie entry holds
//! and the gate bits.
//! Pure computations; `maps.rs` writes them.
use std::collections::HashMap;

use filter_common::{
    ban_host_bit_v4, ban_host_bit_v6, BanEntry, BAN_GATE_HOSTS, BAN_GATE_LEN, BAN_GATE_PREFIXES,
    BAN_GATE_WORDS, BAN_PERMANENT,
};
use ipnet::IpNet;

/// One ban: a prefix and when it ends (CLOCK_MONOTONIC nanoseconds, or
/// [`BAN_PERMANENT`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ban {
    pub net: IpNet,
    pub expires_ns: u64,
}

impl Ban {
    pub fn is_permanent(&self) -> bool {
        self.expires_ns == BAN_PERMANENT
    }
}

/// Whether a prefix is a single address (kept in the host hashes rather
/// than the tries).
pub fn is_host(net: &IpNet) -> bool {
    net.prefix_len() == net.max_prefix_len()
}

/// The trie values of `bans` (one prefix each): the trie answers with the
/// longest matching prefix only, so each entry carries the latest expiry of
/// itself and every shorter ban that covers it. A source is then banned
/// exactly as long as some ban covering it lasts.
pub fn entries(bans: &[Ban]) -> Vec<BanEntry> {
    let by_net: HashMap<IpNet, u64> = bans.iter().map(|b| (b.net, b.expires_ns)).collect();
    bans.iter()
        .map(|b| {
            let effective = (0..b.net.prefix_len())
                .filter_map(|len| {
                    let outer = IpNet::new(b.net.network(), len).ok()?.trunc();
                    by_net.get(&outer).copied()
                })
                .fold(b.expires_ns, u64::max);
            BanEntry {
                effective_ns: effective,
                expires_ns: b.expires_ns,
            }
        })
        .collect()
}

/// The gate: IPv4 half then IPv6 half, two bits per first 24 bits of an
/// address (single banned addresses in it, or a ban prefix covering some
/// of it), then the host bitmap: one bit per single banned address.
pub fn gate(bans: &[Ban]) -> Vec<u64> {
    let mut words = vec![0u64; BAN_GATE_LEN as usize];
    for ban in bans {
        let (half, top24, len) = match ban.net {
            IpNet::V4(n) => (0, u32::from(n.network()) >> 8, n.prefix_len()),
            IpNet::V6(n) => (
                BAN_GATE_WORDS as usize,
                (u128::from(n.network()) >> 104) as u32,
                n.prefix_len(),
            ),
        };
        let bit = if is_host(&ban.net) {
            let (word, bit) = host_bit(&ban.net);
            words[word as usize] |= 1 << bit;
            BAN_GATE_HOSTS
        } else {
            BAN_GATE_PREFIXES
        };
        let count = if len >= 24 { 1 } else { 1u32 << (24 - len) };
        for t in top24..top24 + count {
            words[half + (t >> 5) as usize] |= bit << ((t & 31) * 2);
        }
    }
    words
}

/// Where a single address's bit is in the gate's host bitmap.
fn host_bit(net: &IpNet) -> (u32, u32) {
    match net {
        IpNet::V4(n) => ban_host_bit_v4(u32::from(n.addr())),
        IpNet::V6(n) => {
            let a = u128::from(n.addr());
            ban_host_bit_v6((a >> 64) as u64, a as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ban(net: &str, expires_ns: u64) -> Ban {
        Ban {
            net: net.parse().unwrap(),
            expires_ns,
        }
    }

    #[test]
    fn a_longer_ban_lasts_as_long_as_a_shorter_one_covering_it() {
        let bans = [
            ban("203.0.113.0/24", 500),
            ban("203.0.113.9/32", 100),
            ban("203.0.113.64/26", 900),
            ban("2001:db8::/32", BAN_PERMANENT),
            ban("2001:db8::1/128", 7),
        ];
        let e = entries(&bans);
        let eff: Vec<u64> = e.iter().map(|e| e.effective_ns).collect();
        assert_eq!(eff, [500, 500, 900, BAN_PERMANENT, BAN_PERMANENT]);
        assert_eq!(e[1].expires_ns, 100);
    }

    #[test]
    fn gate_bits_cover_every_banned_24() {
        let g = gate(&[
            ban("198.51.100.7/32", 1),
            ban("10.0.0.0/22", 1),
            ban("2001:db8::/127", 1),
        ]);
        let bits = |half: usize, top: u32| g[half + (top >> 5) as usize] >> ((top & 31) * 2) & 3;
        assert_eq!(
            bits(0, u32::from_be_bytes([0, 198, 51, 100])),
            BAN_GATE_HOSTS
        );
        for third in 0..4 {
            assert_eq!(
                bits(0, u32::from_be_bytes([0, 10, 0, third])),
                BAN_GATE_PREFIXES
            );
        }
        assert_eq!(bits(0, u32::from_be_bytes([0, 10, 0, 4])), 0);
        assert_eq!(bits(BAN_GATE_WORDS as usize, 0x20_01_0d), BAN_GATE_PREFIXES);
        let halves = 2 * BAN_GATE_WORDS as usize;
        assert_eq!(g[..halves].iter().map(|w| w.count_ones()).sum::<u32>(), 6);
        // The single address has its bit in the host bitmap; prefixes none.
        let (word, bit) = ban_host_bit_v4(u32::from_be_bytes([198, 51, 100, 7]));
        assert_eq!(g[word as usize], 1 << bit);
        assert_eq!(g[halves..].iter().map(|w| w.count_ones()).sum::<u32>(), 1);
    }

    #[test]
    fn a_banned_hosts_neighbours_have_their_own_bits() {
        let host = |last: u8| u32::from_be_bytes([198, 51, 100, last]);
        let (word, bit) = ban_host_bit_v4(host(66));
        assert!((2 * BAN_GATE_WORDS..BAN_GATE_LEN).contains(&word));
        for last in (0..=255).filter(|&l| l != 66) {
            assert_ne!(ban_host_bit_v4(host(last)), (word, bit), "{last}");
        }
        let v6 = |last: u64| ban_host_bit_v6(0x2001_0db8_0000_0001, 0x42 << 8 | last);
        let (word6, bit6) = v6(1);
        assert!((2 * BAN_GATE_WORDS..BAN_GATE_LEN).contains(&word6));
        for last in 2..=255 {
            assert_ne!(v6(last), (word6, bit6), "{last}");
        }
    }
}
