//! The ban set as the program reads it (see `filter_common::BanEntry`,
//! `BAN_GATE_WORDS` and `BAN_HOST_WORDS`): the value each trie entry holds
//! and the gate bits.
//! Pure computations; `maps.rs` writes them.
use std::collections::{BTreeMap, BTreeSet, HashMap};

use filter_common::{
    ban_buckets_v4, ban_buckets_v6, ban_host_bit_v4, ban_host_bit_v6, ban_slot_tag, BanEntry,
    BAN_GATE_HOSTS, BAN_GATE_PREFIXES, BAN_GATE_WORDS, BAN_PERMANENT, BAN_SLOT_BUCKETS,
    BAN_SLOT_BUCKETS_V6, BAN_SLOT_WAYS, BAN_SLOT_WAYS_V6,
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
/// of it), then the host bitmap: one bit per single banned address. Only
/// the words that are not zero, by index: a change writes the words it
/// changes, not the whole 10 MiB.
pub fn gate(bans: &[Ban]) -> BTreeMap<u32, u64> {
    let mut words = BTreeMap::new();
    for ban in bans {
        let (half, top24, len) = match ban.net {
            IpNet::V4(n) => (0, u32::from(n.network()) >> 8, n.prefix_len()),
            IpNet::V6(n) => (
                BAN_GATE_WORDS,
                (u128::from(n.network()) >> 104) as u32,
                n.prefix_len(),
            ),
        };
        let bit = if is_host(&ban.net) {
            let (word, bit) = host_bit(&ban.net);
            *words.entry(word).or_insert(0) |= 1 << bit;
            BAN_GATE_HOSTS
        } else {
            BAN_GATE_PREFIXES
        };
        let count = if len >= 24 { 1 } else { 1u32 << (24 - len) };
        for t in top24..top24 + count {
            *words.entry(half + (t >> 5)).or_insert(0) |= bit << ((t & 31) * 2);
        }
    }
    words
}

/// The gate words to write to go from gate `from` to gate `to` (index and
/// new value).
pub fn gate_changes(from: &BTreeMap<u32, u64>, to: &BTreeMap<u32, u64>) -> Vec<(u32, u64)> {
    let value = |g: &BTreeMap<u32, u64>, i: &u32| g.get(i).copied().unwrap_or(0);
    let indices: std::collections::BTreeSet<u32> = from.keys().chain(to.keys()).copied().collect();
    indices
        .into_iter()
        .filter(|i| value(from, i) != value(to, i))
        .map(|i| (i, value(to, &i)))
        .collect()
}

/// Both gates' bits: what is set while a change is under way.
pub fn gate_union(a: &BTreeMap<u32, u64>, b: &BTreeMap<u32, u64>) -> BTreeMap<u32, u64> {
    let mut out = a.clone();
    for (i, w) in b {
        *out.entry(*i).or_insert(0) |= w;
    }
    out
}

/// u64 words of one bucket of `BAN_SLOTS_V4`.
pub const BUCKET_WORDS: u32 = 2 * BAN_SLOT_WAYS as u32;
/// The word of `BAN_SLOTS_V4` that says some address found no slot (the
/// overflow bucket's first).
pub const OVERFLOW_WORD: u32 = BAN_SLOT_BUCKETS * BUCKET_WORDS;
/// u64 words of one bucket of `BAN_SLOTS_V6`, and of one of its ways
/// (the address's two words, its expiry, a zero word).
pub const BUCKET_WORDS_V6: u32 = 4 * BAN_SLOT_WAYS_V6 as u32;
const WAY_WORDS_V6: u32 = 4;
/// The word of `BAN_SLOTS_V6` that says some address found no slot.
pub const OVERFLOW_WORD_V6: u32 = BAN_SLOT_BUCKETS_V6 * BUCKET_WORDS_V6;

/// Each single address (`key`, with its effective expiry; `hosts` in
/// address order) in the first of its two buckets with a free way, so that
/// the same set always gives the same array: (bucket, way, key, expiry) of
/// each placed, and whether some address found no room.
fn place<K: Copy>(
    hosts: Vec<(K, u64)>,
    buckets: impl Fn(K) -> (u32, u32),
    ways: usize,
) -> (Vec<(u32, u32, K, u64)>, bool) {
    let mut used: HashMap<u32, usize> = HashMap::new();
    let mut placed = Vec::with_capacity(hosts.len());
    let mut overflow = false;
    for (key, effective_ns) in hosts {
        let (first, second) = buckets(key);
        let Some(bucket) = [first, second]
            .into_iter()
            .find(|b| used.get(b).copied().unwrap_or(0) < ways)
        else {
            overflow = true;
            continue;
        };
        let way = used.entry(bucket).or_insert(0);
        placed.push((bucket, *way as u32, key, effective_ns));
        *way += 1;
    }
    (placed, overflow)
}

/// The single addresses of one family among `bans` (those `key` takes),
/// in address order, with their effective expiries (`entries`, as
/// [`entries`] gives them for `bans`).
fn hosts_of<K>(
    bans: &[Ban],
    entries: &[BanEntry],
    key: impl Fn(&IpNet) -> Option<K>,
) -> Vec<(K, u64)> {
    let mut hosts: Vec<(IpNet, K, u64)> = bans
        .iter()
        .zip(entries)
        .filter(|(b, _)| is_host(&b.net))
        .filter_map(|(b, e)| key(&b.net).map(|k| (b.net, k, e.effective_ns)))
        .collect();
    hosts.sort_by_key(|&(net, _, _)| net);
    hosts.into_iter().map(|(_, k, e)| (k, e)).collect()
}

/// The slot array of the single banned IPv4 addresses among `bans`, as
/// its words that are not zero (by index; the overflow word left out),
/// and whether some address found no room. `entries` are [`entries`] of
/// `bans`.
pub fn slots_v4(bans: &[Ban], entries: &[BanEntry]) -> (BTreeMap<u32, u64>, bool) {
    // The program's view: the 4 bytes in packet order, as a native u32.
    let hosts = hosts_of(bans, entries, |net| match net {
        IpNet::V4(n) => Some(u32::from_ne_bytes(n.addr().octets())),
        IpNet::V6(_) => None,
    });
    let (placed, overflow) = place(hosts, ban_buckets_v4, BAN_SLOT_WAYS);
    let mut words = BTreeMap::new();
    for (bucket, way, key, effective_ns) in placed {
        let at = bucket * BUCKET_WORDS + 2 * way;
        words.insert(at, ban_slot_tag(key));
        words.insert(at + 1, effective_ns);
    }
    (words, overflow)
}

/// The same for the single banned IPv6 addresses, in `BAN_SLOTS_V6`.
pub fn slots_v6(bans: &[Ban], entries: &[BanEntry]) -> (BTreeMap<u32, u64>, bool) {
    // The program's view: the 16 bytes in packet order, as two native
    // u64 words.
    let hosts = hosts_of(bans, entries, |net| match net {
        IpNet::V6(n) => {
            let o = n.addr().octets();
            let word = |i: usize| u64::from_ne_bytes(o[i..i + 8].try_into().expect("8 bytes"));
            Some((word(0), word(8)))
        }
        IpNet::V4(_) => None,
    });
    let (placed, overflow) = place(hosts, |(w0, w1)| ban_buckets_v6(w0, w1), BAN_SLOT_WAYS_V6);
    let mut words = BTreeMap::new();
    for (bucket, way, (w0, w1), effective_ns) in placed {
        let at = bucket * BUCKET_WORDS_V6 + WAY_WORDS_V6 * way;
        for (i, w) in [w0, w1, effective_ns].into_iter().enumerate() {
            if w != 0 {
                words.insert(at + i as u32, w);
            }
        }
    }
    (words, overflow)
}

/// The slot words to write to go from `from` (as read, the overflow word
/// among them) to `to`, in three steps, so that a packet never takes one
/// address's way for another's (the program takes a way whose expiry is
/// 0 for empty, and asks the hash while the overflow word is set):
/// 1. every way whose address changes gets expiry 0;
/// 2. the address words change;
/// 3. the expiries take their new values.
///
/// A way whose address stays changes its expiry in one word. The overflow
/// word is left to the caller.
pub fn slot_changes(from: &BTreeMap<u32, u64>, to: &BTreeMap<u32, u64>) -> Vec<(u32, u64)> {
    slot_writes(from, to, OVERFLOW_WORD, 2, 1)
}

/// [`slot_changes`] for `BAN_SLOTS_V6`.
pub fn slot_changes_v6(from: &BTreeMap<u32, u64>, to: &BTreeMap<u32, u64>) -> Vec<(u32, u64)> {
    slot_writes(from, to, OVERFLOW_WORD_V6, WAY_WORDS_V6, 2)
}

/// [`slot_changes`] for an array of ways of `way_words` words, word
/// `expiry_word` of each its expiry.
fn slot_writes(
    from: &BTreeMap<u32, u64>,
    to: &BTreeMap<u32, u64>,
    overflow_word: u32,
    way_words: u32,
    expiry_word: u32,
) -> Vec<(u32, u64)> {
    let value = |m: &BTreeMap<u32, u64>, i: u32| m.get(&i).copied().unwrap_or(0);
    let changes: Vec<(u32, u64)> = gate_changes(from, to)
        .into_iter()
        .filter(|&(i, _)| i != overflow_word)
        .collect();
    let is_expiry = |i: u32| i % way_words == expiry_word;
    let expiry_of = |i: u32| i - i % way_words + expiry_word;
    // The ways whose address changes, by their expiry word.
    let moved: BTreeSet<u32> = changes
        .iter()
        .filter(|&&(i, _)| !is_expiry(i))
        .map(|&(i, _)| expiry_of(i))
        .collect();
    let mut writes: Vec<(u32, u64)> = moved
        .iter()
        .filter(|&&e| value(from, e) != 0)
        .map(|&e| (e, 0))
        .collect();
    writes.extend(changes.iter().filter(|&&(i, _)| !is_expiry(i)));
    let expiries: BTreeSet<u32> = changes
        .iter()
        .map(|&(i, _)| i)
        .filter(|&i| is_expiry(i))
        .chain(moved.iter().copied())
        .collect();
    for e in expiries {
        let now = if moved.contains(&e) {
            0
        } else {
            value(from, e)
        };
        if now != value(to, e) {
            writes.push((e, value(to, e)));
        }
    }
    writes
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
    use filter_common::BAN_GATE_LEN;
    use std::net::{Ipv4Addr, Ipv6Addr};

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
        let word = |i: u32| g.get(&i).copied().unwrap_or(0);
        let bits = |half: u32, top: u32| word(half + (top >> 5)) >> ((top & 31) * 2) & 3;
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
        assert_eq!(bits(BAN_GATE_WORDS, 0x20_01_0d), BAN_GATE_PREFIXES);
        let halves = 2 * BAN_GATE_WORDS;
        let ones = |r: std::ops::Range<u32>| g.range(r).map(|(_, w)| w.count_ones()).sum::<u32>();
        assert_eq!(ones(0..halves), 6);
        // The single address has its bit in the host bitmap; prefixes none.
        let (host_word, bit) = ban_host_bit_v4(u32::from_be_bytes([198, 51, 100, 7]));
        assert_eq!(word(host_word), 1 << bit);
        assert_eq!(ones(halves..BAN_GATE_LEN), 1);
        assert!(g.keys().all(|&i| i < BAN_GATE_LEN));
    }

    #[test]
    fn a_change_writes_the_words_it_changes() {
        let old = gate(&[ban("198.51.100.7/32", 1), ban("10.0.0.0/24", 1)]);
        let new = gate(&[ban("198.51.100.8/32", 1), ban("10.0.0.0/24", 1)]);
        let both = gate_union(&old, &new);
        // Setting up: only the new address's bit is added (its /24's gate
        // word is already set).
        let up = gate_changes(&old, &both);
        let (w8, b8) = ban_host_bit_v4(u32::from_be_bytes([198, 51, 100, 8]));
        let (w7, b7) = ban_host_bit_v4(u32::from_be_bytes([198, 51, 100, 7]));
        assert!(up.contains(&(w8, both[&w8])), "{up:?}");
        assert!(both[&w8] & (1 << b8) != 0 && both[&w7] & (1 << b7) != 0);
        assert!(up.len() <= 2, "{up:?}");
        // Tearing down: the old address's bit goes, nothing else changes.
        let down = gate_changes(&both, &new);
        assert_eq!(down.len(), 1, "{down:?}");
        assert_eq!(down[0].0, w7);
        assert_eq!(down[0].1 & (1 << b7), 0);
        assert!(gate_changes(&new, &new).is_empty());
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

    /// Every single IPv4 ban has a slot in one of its two buckets, with
    /// its effective expiry; prefixes and IPv6 addresses have none; a
    /// bucket's fifth address overflows.
    #[test]
    fn single_ipv4_bans_in_their_buckets() {
        let bans: Vec<Ban> = (0..100_000u32)
            .map(|i| Ban {
                net: IpNet::from(ipnet::Ipv4Net::from(Ipv4Addr::from(0x0a00_0000 + i * 7))),
                expires_ns: 1000 + u64::from(i),
            })
            .chain([ban("10.0.0.0/8", 5000), ban("2001:db8::1/128", 9)])
            .collect();
        let (words, overflow) = slots_v4(&bans, &entries(&bans));
        assert!(!overflow);
        assert_eq!(words.len(), 2 * 100_000);
        for i in [0u32, 1, 4242, 99_999] {
            let addr = Ipv4Addr::from(0x0a00_0000 + i * 7);
            let key = u32::from_ne_bytes(addr.octets());
            let (first, second) = ban_buckets_v4(key);
            let found: Vec<u64> = [first, second]
                .iter()
                .flat_map(|b| (0..BAN_SLOT_WAYS as u32).map(move |w| b * BUCKET_WORDS + 2 * w))
                .filter(|at| words.get(at) == Some(&ban_slot_tag(key)))
                .map(|at| words[&(at + 1)])
                .collect();
            // The later of its own expiry and the /8's covering it.
            assert_eq!(found, vec![(1000 + u64::from(i)).max(5000)], "{addr}");
        }
        assert!(words.keys().all(|&i| i < OVERFLOW_WORD));

        // An address whose two buckets are full has no room: four others
        // fill its first bucket, four more its second, all before it in
        // address order.
        let buckets = |a: u32| ban_buckets_v4(u32::from_ne_bytes(Ipv4Addr::from(a).octets()));
        let last = (0..=u32::MAX)
            .rev()
            .find(|&a| buckets(a).0 == 0 && buckets(a).1 != 0)
            .unwrap();
        let second = buckets(last).1;
        let fill = |bucket: u32| (0..last).filter(move |&a| buckets(a).0 == bucket).take(4);
        let full: Vec<Ban> = fill(0)
            .chain(fill(second))
            .chain([last])
            .map(|a| Ban {
                net: IpNet::from(ipnet::Ipv4Net::from(Ipv4Addr::from(a))),
                expires_ns: BAN_PERMANENT,
            })
            .collect();
        assert_eq!(full.len(), 9);
        let (words, overflow) = slots_v4(&full, &entries(&full));
        assert!(overflow);
        assert_eq!(words.len(), 2 * 8);
    }

    /// Every single IPv6 ban has a way in one of its two buckets, with its
    /// effective expiry; IPv4 addresses and prefixes have none; a bucket's
    /// third address overflows.
    #[test]
    fn single_ipv6_bans_in_their_buckets() {
        let addr =
            |i: u32| Ipv6Addr::new(0x2001, 0xdb8, 0x8000, 0, 0, 7, (i >> 16) as u16, i as u16);
        let bans: Vec<Ban> = (0..10_000u32)
            .map(|i| Ban {
                net: IpNet::from(ipnet::Ipv6Net::from(addr(i))),
                expires_ns: 1000 + u64::from(i),
            })
            .chain([ban("2001:db8:8000::/48", 5000), ban("192.0.2.1/32", 9)])
            .collect();
        let (words, overflow) = slots_v6(&bans, &entries(&bans));
        assert!(!overflow);
        let words_of = |a: Ipv6Addr| {
            let o = a.octets();
            (
                u64::from_ne_bytes(o[..8].try_into().unwrap()),
                u64::from_ne_bytes(o[8..].try_into().unwrap()),
            )
        };
        for i in [0u32, 1, 4242, 9_999] {
            let (w0, w1) = words_of(addr(i));
            let (first, second) = ban_buckets_v6(w0, w1);
            let found: Vec<u64> = [first, second]
                .iter()
                .flat_map(|b| {
                    (0..BAN_SLOT_WAYS_V6 as u32).map(move |w| b * BUCKET_WORDS_V6 + 4 * w)
                })
                .filter(|at| words.get(at) == Some(&w0) && words.get(&(at + 1)) == Some(&w1))
                .map(|at| words[&(at + 2)])
                .collect();
            // The later of its own expiry and the /48's covering it.
            assert_eq!(found, vec![(1000 + u64::from(i)).max(5000)], "{}", addr(i));
        }
        assert!(words.keys().all(|&i| i < OVERFLOW_WORD_V6));

        // An address whose two buckets are full has no room: two others
        // fill its first bucket, two more its second, all before it in
        // address order.
        let buckets = |i: u32| {
            let (w0, w1) = words_of(addr(i));
            ban_buckets_v6(w0, w1)
        };
        let last = (0..=u32::MAX)
            .rev()
            .find(|&i| buckets(i).0 == 0 && buckets(i).1 != 0)
            .unwrap();
        let second = buckets(last).1;
        let fill = |bucket: u32| (0..last).filter(move |&i| buckets(i).0 == bucket).take(2);
        let full: Vec<Ban> = fill(0)
            .chain(fill(second))
            .chain([last])
            .map(|i| Ban {
                net: IpNet::from(ipnet::Ipv6Net::from(addr(i))),
                expires_ns: BAN_PERMANENT,
            })
            .collect();
        assert_eq!(full.len(), 5);
        let (words, overflow) = slots_v6(&full, &entries(&full));
        assert!(overflow);
        assert_eq!(words.len(), 3 * 4, "two ways of three words, twice");
    }

    /// Applies `writes` to `from` one at a time and checks, after each,
    /// that every way with a non-zero expiry holds all its words as in
    /// `from` or all as in `to` (a packet finds an address with its own
    /// expiry, or nothing), that the overflow word is never written, and
    /// that the end is `to`.
    fn check_writes(
        from: &BTreeMap<u32, u64>,
        to: &BTreeMap<u32, u64>,
        writes: &[(u32, u64)],
        overflow_word: u32,
        way_words: u32,
        expiry_word: u32,
    ) {
        let value = |m: &BTreeMap<u32, u64>, i: u32| m.get(&i).copied().unwrap_or(0);
        let way = |m: &BTreeMap<u32, u64>, w: u32| -> Vec<u64> {
            (0..way_words)
                .map(|k| value(m, w * way_words + k))
                .collect()
        };
        assert!(writes.iter().all(|&(i, _)| i != overflow_word));
        let mut now = from.clone();
        for &(i, v) in writes {
            now.insert(i, v);
            let w = i / way_words;
            if value(&now, w * way_words + expiry_word) != 0 {
                let seen = way(&now, w);
                assert!(
                    seen == way(from, w) || seen == way(to, w),
                    "way {w} reads {seen:?} after writing word {i}: {writes:?}"
                );
            }
        }
        now.retain(|&i, v| *v != 0 && i != overflow_word);
        let mut want = to.clone();
        want.retain(|_, v| *v != 0);
        assert_eq!(now, want);
    }

    /// An address moving to another way, an address leaving, one arriving
    /// and an expiry changing, in one change of the IPv4 slots; then the
    /// same for real sets.
    #[test]
    fn slot_changes_never_show_an_address_with_another_expiry() {
        // Ways 0-3 of bucket 0: (tag, expiry).
        let words = |ways: &[(u32, u64, u64)]| -> BTreeMap<u32, u64> {
            ways.iter()
                .flat_map(|&(w, tag, e)| [(2 * w, tag), (2 * w + 1, e)])
                .collect()
        };
        let from = words(&[(0, 0xa, 10), (1, 0xb, 20), (2, 0xc, 30)]);
        let to = words(&[(0, 0xb, 20), (2, 0xc, 35), (3, 0xd, 40)]);
        let writes = slot_changes(&from, &to);
        check_writes(&from, &to, &writes, OVERFLOW_WORD, 2, 1);
        // Way 2 keeps its address: its expiry is one write.
        assert_eq!(writes.iter().filter(|&&(i, _)| i / 2 == 2).count(), 1);

        let a = [ban("192.0.2.1/32", 10), ban("192.0.2.2/32", 20)];
        let b = [ban("192.0.2.2/32", 30), ban("192.0.2.3/32", 40)];
        let (mut from, _) = slots_v4(&a, &entries(&a));
        from.insert(OVERFLOW_WORD, 1);
        let (to, _) = slots_v4(&b, &entries(&b));
        check_writes(&from, &to, &slot_changes(&from, &to), OVERFLOW_WORD, 2, 1);
    }

    /// The same for the IPv6 slots, whose addresses take two words.
    #[test]
    fn slot_changes_v6_never_show_an_address_with_another_expiry() {
        // Ways 0-1 of buckets 0 and 1: (w0, w1, expiry).
        let words = |ways: &[(u32, u64, u64, u64)]| -> BTreeMap<u32, u64> {
            ways.iter()
                .flat_map(|&(w, w0, w1, e)| [(4 * w, w0), (4 * w + 1, w1), (4 * w + 2, e)])
                .filter(|&(_, v)| v != 0)
                .collect()
        };
        let from = words(&[(0, 1, 2, 10), (1, 3, 4, 20), (2, 5, 0, 30)]);
        let to = words(&[(0, 3, 4, 20), (2, 5, 0, 35), (3, 6, 7, 40)]);
        check_writes(
            &from,
            &to,
            &slot_changes_v6(&from, &to),
            OVERFLOW_WORD_V6,
            4,
            2,
        );

        let a = [ban("2001:db8::1/128", 10), ban("2001:db8::2/128", 20)];
        let b = [ban("2001:db8::2/128", 30), ban("2001:db8::3/128", 40)];
        let (mut from, _) = slots_v6(&a, &entries(&a));
        from.insert(OVERFLOW_WORD_V6, 1);
        let (to, _) = slots_v6(&b, &entries(&b));
        check_writes(
            &from,
            &to,
            &slot_changes_v6(&from, &to),
            OVERFLOW_WORD_V6,
            4,
            2,
        );
    }
}
