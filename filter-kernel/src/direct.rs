//! Builds the direct tables the program judges long allowlists by (see
//! `filter_common::DIRECT_WORDS`): two bits per /24 (none, full, partial);
//! for IPv4 a 256-bit host map for each partial /24, placed in one of its
//! two buckets by cuckoo hashing (`filter_common::HostSlot`); for IPv6 a
//! partial /24 leaves the decision to the trie.
use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    net::{Ipv4Addr, Ipv6Addr},
};

use anyhow::{bail, Result};
use filter_common::{
    host_buckets, HostSlot, DIRECT_FULL, DIRECT_NONE, DIRECT_PARTIAL, DIRECT_WORDS,
    HOST_BUCKET_SLOTS, V4_HOST_SLOTS,
};

/// One generation's half of the direct table and of the host slots.
pub struct V4Table {
    /// `DIRECT_WORDS` words, 32 networks each.
    pub words: Vec<u64>,
    /// `V4_HOST_SLOTS` slots holding the host maps of the partial networks.
    pub slots: Vec<HostSlot>,
    /// The seeds the slots were placed with (they go in the policy).
    pub seeds: [u32; 2],
    /// How many networks are partial.
    pub partial: usize,
}

/// Every 2-bit slot of a word set to `DIRECT_FULL`.
const ALL_FULL: u64 = 0x5555_5555_5555_5555;

impl V4Table {
    pub fn build(prefixes: impl Iterator<Item = (Ipv4Addr, u8)>) -> Result<V4Table> {
        let mut words = vec![0u64; DIRECT_WORDS as usize];
        let mut hosts: BTreeMap<u32, [u64; 4]> = BTreeMap::new();
        for (addr, len) in prefixes {
            let addr = u32::from(addr);
            if len <= 24 {
                mark_full(&mut words, addr >> 8, len);
            } else {
                let first = addr & 255;
                let bits = hosts.entry(addr >> 8).or_default();
                for host in first..first + (1u32 << (32 - len)) {
                    bits[(host / 64) as usize] |= 1 << (host % 64);
                }
            }
        }
        // A network covered whole needs no host map.
        hosts.retain(|&net, _| state(&words, net) != DIRECT_FULL);
        for &net in hosts.keys() {
            set(&mut words, net, DIRECT_PARTIAL);
        }
        let (seeds, slots) = place(&hosts)?;
        Ok(V4Table {
            words,
            slots,
            seeds,
            partial: hosts.len(),
        })
    }

    /// The slot network `net24`'s host map is in, found the way the XDP
    /// program finds it.
    pub fn slot_of(&self, net24: u32) -> Option<usize> {
        host_buckets(net24, self.seeds)
            .into_iter()
            .flat_map(|b| b..b + HOST_BUCKET_SLOTS)
            .map(|i| i as usize)
            .find(|&i| self.slots[i].net24_plus_one == net24 + 1)
    }

    /// Whether `addr` is allowed, read the way the XDP program reads it.
    pub fn allows(&self, addr: Ipv4Addr) -> bool {
        let addr = u32::from(addr);
        match state(&self.words, addr >> 8) {
            DIRECT_FULL => true,
            DIRECT_PARTIAL => {
                let net24 = addr >> 8;
                self.slot_of(net24)
                    .map(|i| &self.slots[i])
                    .is_some_and(|s| {
                        let host = addr & 255;
                        s.bits[(host / 64) as usize] >> (host % 64) & 1 != 0
                    })
            }
            _ => false,
        }
    }
}

/// The IPv6 direct table, by the first 24 bits of the address.
pub fn v6_direct(prefixes: impl Iterator<Item = (Ipv6Addr, u8)>) -> Vec<u64> {
    let mut words = vec![0u64; DIRECT_WORDS as usize];
    let mut partial = Vec::new();
    for (addr, len) in prefixes {
        let top = (u128::from(addr) >> 104) as u32;
        if len <= 24 {
            mark_full(&mut words, top, len);
        } else {
            partial.push(top);
        }
    }
    for top in partial {
        if state(&words, top) != DIRECT_FULL {
            set(&mut words, top, DIRECT_PARTIAL);
        }
    }
    words
}

/// The most /24s an in-place update recomputes; a change that covers more
/// (a short prefix) rewrites the whole half instead.
const MAX_IN_PLACE: usize = 4096;

/// Elements of one generation's half of a table, read and written one at
/// a time: through system calls on the map for a few (see `maps.rs`), or
/// in memory.
pub trait Cells<T> {
    fn get(&mut self, index: usize) -> Result<T>;
    fn set(&mut self, index: usize, value: T) -> Result<()>;
}

impl<T: Copy> Cells<T> for [T] {
    fn get(&mut self, index: usize) -> Result<T> {
        Ok(self[index])
    }

    fn set(&mut self, index: usize, value: T) -> Result<()> {
        self[index] = value;
        Ok(())
    }
}

/// Sets the 2-bit state of /24 `net` through `words`.
fn set_cell(words: &mut (impl Cells<u64> + ?Sized), net: u32, value: u64) -> Result<()> {
    let index = (net / 32) as usize;
    let shift = (net % 32) * 2;
    let w = words.get(index)?;
    let updated = (w & !(3 << shift)) | (value << shift);
    if updated != w {
        words.set(index, updated)?;
    }
    Ok(())
}

/// The /24 numbers (first 24 bits) a change of these prefixes can affect,
/// or `None` when there are more than `MAX_IN_PLACE`.
fn touched(changed: impl Iterator<Item = (u32, u8)>) -> Option<BTreeSet<u32>> {
    let mut nets = BTreeSet::new();
    for (top24, len) in changed {
        if len <= 24 {
            let count = 1usize << (24 - len);
            if nets.len() + count > MAX_IN_PLACE {
                return None;
            }
            let first = top24 & !(count as u32 - 1);
            nets.extend(first..first + count as u32);
        } else {
            nets.insert(top24);
        }
    }
    Some(nets)
}

/// Whether one of `short` (first /24, length of prefixes of at most 24
/// bits) covers /24 number `net`.
fn covered(short: &HashSet<(u32, u8)>, net: u32) -> bool {
    (0..=24u8).any(|len| {
        let mask = if len == 0 {
            0
        } else {
            u32::MAX << (24 - len) & 0xff_ffff
        };
        short.contains(&(net & mask, len))
    })
}

/// Updates a generation's half of the IPv4 direct table and host slots in
/// place from what they hold for some list to what they must hold for
/// `new`, given the prefixes in one list and not the other (`changed`).
/// Only the /24s those touch are recomputed; the host slots keep their
/// placement (`seeds`). Returns false when it cannot (a change too wide,
/// or no free slot without moving others): the half is then partly
/// written and must be rewritten whole.
pub fn update_v4_in_place(
    words: &mut (impl Cells<u64> + ?Sized),
    slots: &mut (impl Cells<HostSlot> + ?Sized),
    seeds: [u32; 2],
    new: &[(Ipv4Addr, u8)],
    changed: &[(Ipv4Addr, u8)],
) -> Result<bool> {
    let Some(nets) = touched(changed.iter().map(|(a, len)| (u32::from(*a) >> 8, *len))) else {
        return Ok(false);
    };
    if nets.is_empty() {
        return Ok(true);
    }
    let short: HashSet<(u32, u8)> = new
        .iter()
        .filter(|(_, len)| *len <= 24)
        .map(|(a, len)| (u32::from(*a) >> 8, *len))
        .collect();
    let mut hosts: BTreeMap<u32, [u64; 4]> = BTreeMap::new();
    for (addr, len) in new.iter().filter(|(_, len)| *len > 24) {
        let addr = u32::from(*addr);
        if nets.contains(&(addr >> 8)) {
            let bits = hosts.entry(addr >> 8).or_default();
            let first = addr & 255;
            for host in first..first + (1u32 << (32 - len)) {
                bits[(host / 64) as usize] |= 1 << (host % 64);
            }
        }
    }
    for net in nets {
        let bits = hosts.get(&net).copied().unwrap_or_default();
        let value = if covered(&short, net) {
            DIRECT_FULL
        } else if bits != [0; 4] {
            DIRECT_PARTIAL
        } else {
            DIRECT_NONE
        };
        set_cell(words, net, value)?;
        let candidates: Vec<usize> = host_buckets(net, seeds)
            .into_iter()
            .flat_map(|b| b..b + HOST_BUCKET_SLOTS)
            .map(|i| i as usize)
            .collect();
        let (mut found, mut free) = (None, None);
        for &i in &candidates {
            match slots.get(i)?.net24_plus_one {
                n if n == net + 1 => found = found.or(Some(i)),
                0 => free = free.or(Some(i)),
                _ => {}
            }
        }
        if value == DIRECT_PARTIAL {
            let Some(i) = found.or(free) else {
                return Ok(false);
            };
            slots.set(
                i,
                HostSlot {
                    net24_plus_one: net + 1,
                    reserved: 0,
                    bits,
                },
            )?;
        } else if let Some(i) = found {
            slots.set(i, HostSlot::default())?;
        }
    }
    Ok(true)
}

/// The IPv6 direct table's counterpart of [`update_v4_in_place`].
pub fn update_v6_in_place(
    words: &mut (impl Cells<u64> + ?Sized),
    new: &[(Ipv6Addr, u8)],
    changed: &[(Ipv6Addr, u8)],
) -> Result<bool> {
    let top = |a: &Ipv6Addr| (u128::from(*a) >> 104) as u32;
    let Some(tops) = touched(changed.iter().map(|(a, len)| (top(a), *len))) else {
        return Ok(false);
    };
    if tops.is_empty() {
        return Ok(true);
    }
    let short: HashSet<(u32, u8)> = new
        .iter()
        .filter(|(_, len)| *len <= 24)
        .map(|(a, len)| (top(a), *len))
        .collect();
    let long: HashSet<u32> = new
        .iter()
        .filter(|(_, len)| *len > 24)
        .map(|(a, _)| top(a))
        .collect();
    for t in tops {
        let value = if covered(&short, t) {
            DIRECT_FULL
        } else if long.contains(&t) {
            DIRECT_PARTIAL
        } else {
            DIRECT_NONE
        };
        set_cell(words, t, value)?;
    }
    Ok(true)
}

/// Marks the /24s a prefix of `len` bits (at most 24) starting at /24
/// number `first` covers as full.
fn mark_full(words: &mut [u64], first: u32, len: u8) {
    let (first, count) = (first as usize, 1usize << (24 - len));
    if count >= 32 {
        // Whole words: `first` is a multiple of 32 here.
        words[first / 32..(first + count) / 32].fill(ALL_FULL);
    } else {
        for top in first..first + count {
            set(words, top as u32, DIRECT_FULL);
        }
    }
}

/// Cuckoo placement: every network goes in a free slot of one of its two
/// buckets; when all four are taken, it takes one and the network pushed
/// out moves to its other bucket, and so on. At most half the slots are
/// ever used, far below where this fails; should it fail, other seeds are
/// tried.
fn place(hosts: &BTreeMap<u32, [u64; 4]>) -> Result<([u32; 2], Vec<HostSlot>)> {
    if hosts.len() > V4_HOST_SLOTS as usize / 2 {
        bail!(
            "the IPv4 allowlist has {} partially allowed /24 networks; at most {} fit",
            hosts.len(),
            V4_HOST_SLOTS / 2
        );
    }
    let mut state = 0x5157_5741_4c4c_u64; // a fixed start: placement is reproducible
    for _ in 0..16 {
        let seeds = [splitmix(&mut state) as u32, splitmix(&mut state) as u32];
        let mut slots = vec![HostSlot::default(); V4_HOST_SLOTS as usize];
        let placed = hosts.iter().all(|(&net24, bits)| {
            let item = HostSlot {
                net24_plus_one: net24 + 1,
                reserved: 0,
                bits: *bits,
            };
            insert(&mut slots, seeds, item, &mut state)
        });
        if placed {
            return Ok((seeds, slots));
        }
    }
    bail!("could not place the IPv4 host maps (cuckoo hashing failed with 16 seed pairs)")
}

/// Puts `item` in a free slot of one of its buckets, pushing others on to
/// their other bucket when needed; false when that goes on too long.
fn insert(slots: &mut [HostSlot], seeds: [u32; 2], mut item: HostSlot, rng: &mut u64) -> bool {
    let mut from = None;
    for _ in 0..1000 {
        let buckets = host_buckets(item.net24_plus_one - 1, seeds);
        let free = buckets
            .into_iter()
            .flat_map(|b| b..b + HOST_BUCKET_SLOTS)
            .find(|&i| slots[i as usize].net24_plus_one == 0);
        if let Some(i) = free {
            slots[i as usize] = item;
            return true;
        }
        // Evict from the bucket the item did not just come from.
        let bucket = match from {
            Some(b) if b == buckets[0] => buckets[1],
            Some(_) => buckets[0],
            None => buckets[(splitmix(rng) & 1) as usize],
        };
        let victim = bucket + (splitmix(rng) as u32 % HOST_BUCKET_SLOTS);
        std::mem::swap(&mut slots[victim as usize], &mut item);
        from = Some(bucket);
    }
    false
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
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
    use filter_common::DIRECT_NONE;
    use ipnet::Ipv4Net;

    fn table(cidrs: &[&str]) -> V4Table {
        V4Table::build(cidrs.iter().map(|c| {
            let n: Ipv4Net = c.parse().unwrap();
            (n.network(), n.prefix_len())
        }))
        .unwrap()
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
        assert_eq!(t.partial, 2);
    }

    #[test]
    fn a_host_inside_a_covered_network_needs_no_host_map() {
        let t = table(&["192.0.2.0/24", "192.0.2.7/32", "0.0.0.0/0"]);
        assert_eq!(t.partial, 0);
        assert!(allowed(&t, "1.2.3.4") && allowed(&t, "255.255.255.255"));
        assert!(t.words.iter().all(|&w| w == ALL_FULL));
    }

    #[test]
    fn the_most_partial_networks_allowed_are_all_placed() {
        // Every /24 of 10.0.0.0/15 minus its first host: 512 partial
        // networks here; and the limit itself, 131,072 /32s in distinct /24s.
        for count in [512u32, filter_common::V4_HOST_SLOTS / 2] {
            let prefixes = (0..count).map(|i| (Ipv4Addr::from((10u32 << 24) + (i << 8) + 7), 32));
            let t = V4Table::build(prefixes).unwrap();
            assert_eq!(t.partial, count as usize);
            for i in (0..count).step_by(97) {
                let net = (10u32 << 24) + (i << 8);
                assert!(t.allows(Ipv4Addr::from(net + 7)), "10.x /24 #{i}: host 7");
                assert!(!t.allows(Ipv4Addr::from(net + 8)), "10.x /24 #{i}: host 8");
            }
        }
    }

    #[test]
    fn v6_table_is_full_partial_or_none_by_the_first_24_bits() {
        let prefixes = ["2001:db8::/32", "2a00::/16", "2c0f:f000::/20"].map(|c| {
            let n: ipnet::Ipv6Net = c.parse().unwrap();
            (n.network(), n.prefix_len())
        });
        let words = v6_direct(prefixes.into_iter());
        let top = |a: &str| (u128::from(a.parse::<Ipv6Addr>().unwrap()) >> 104) as u32;
        assert_eq!(state(&words, top("2001:db8::1")), DIRECT_PARTIAL);
        assert_eq!(
            state(&words, top("2001:db9::1")),
            DIRECT_PARTIAL,
            "same first 24 bits"
        );
        assert_eq!(state(&words, top("2001:e00::1")), DIRECT_NONE);
        assert_eq!(state(&words, top("2a00:ffff::1")), DIRECT_FULL);
        assert_eq!(state(&words, top("2a01::1")), DIRECT_NONE);
        assert_eq!(state(&words, top("2c0f:ffff::1")), DIRECT_FULL);
        assert_eq!(state(&words, top("2c0f:efff::1")), DIRECT_NONE);
    }

    #[test]
    fn evenly_spaced_networks_are_placed_too() {
        // /32s 128 /24s apart, up to the limit: a weak hash put these in
        // the same few slots whatever the seeds.
        for (stride, count) in [(128u32, 131_072u32), (3, 120_000), (96, 100_000)] {
            let prefixes =
                (0..count).map(|i| (Ipv4Addr::from(i.wrapping_mul(stride) << 8 | 1), 32));
            let t = V4Table::build(prefixes).unwrap_or_else(|e| panic!("stride {stride}: {e}"));
            assert_eq!(t.partial, count as usize);
            for i in (0..count).step_by(1013) {
                let net = i.wrapping_mul(stride) << 8;
                assert!(t.allows(Ipv4Addr::from(net | 1)), "stride {stride}, #{i}");
                assert!(!t.allows(Ipv4Addr::from(net | 2)), "stride {stride}, #{i}");
            }
        }
    }

    /// In-place updates end where a fresh build of the new list ends.
    #[test]
    fn in_place_updates_match_a_fresh_build() {
        let parse = |cidrs: &[&str]| -> Vec<(Ipv4Addr, u8)> {
            cidrs
                .iter()
                .map(|c| {
                    let n: Ipv4Net = c.parse().unwrap();
                    (n.network(), n.prefix_len())
                })
                .collect()
        };
        let old = parse(&[
            "44.229.228.186/32",
            "198.51.100.64/26",
            "10.0.0.0/16",
            "192.0.2.0/24",
        ]);
        let new = parse(&[
            "44.229.228.186/32",
            "44.229.228.187/32",
            "10.0.0.0/16",
            "10.0.5.1/32",
            "203.0.113.0/25",
            "172.16.0.0/20",
        ]);
        let changed: Vec<_> = old
            .iter()
            .filter(|p| !new.contains(p))
            .chain(new.iter().filter(|p| !old.contains(p)))
            .copied()
            .collect();
        let mut t = V4Table::build(old.iter().copied()).unwrap();
        let seeds = t.seeds;
        assert!(update_v4_in_place(
            t.words.as_mut_slice(),
            t.slots.as_mut_slice(),
            seeds,
            &new,
            &changed
        )
        .unwrap());
        let fresh = V4Table::build(new.iter().copied()).unwrap();
        assert_eq!(t.words, fresh.words);
        for a in [
            "44.229.228.186",
            "44.229.228.187",
            "44.229.228.188",
            "198.51.100.65",
            "10.0.5.1",
            "10.0.255.1",
            "10.1.0.1",
            "203.0.113.1",
            "203.0.113.200",
            "192.0.2.1",
            "172.16.15.1",
        ] {
            assert_eq!(allowed(&t, a), allowed(&fresh, a), "{a}");
        }
        let v6 = |cidrs: &[&str]| -> Vec<(Ipv6Addr, u8)> {
            cidrs
                .iter()
                .map(|c| {
                    let n: ipnet::Ipv6Net = c.parse().unwrap();
                    (n.network(), n.prefix_len())
                })
                .collect()
        };
        let old6 = v6(&["2001:db8::/32", "2a00::/16"]);
        let new6 = v6(&["2a00::/16", "2c0f:f000::/20", "2001:db8:1::/48"]);
        let changed6: Vec<_> = old6
            .iter()
            .filter(|p| !new6.contains(p))
            .chain(new6.iter().filter(|p| !old6.contains(p)))
            .copied()
            .collect();
        let mut words = v6_direct(old6.iter().copied());
        assert!(update_v6_in_place(words.as_mut_slice(), &new6, &changed6).unwrap());
        assert!(words == v6_direct(new6.iter().copied()));
    }

    #[test]
    fn empty_allows_nothing() {
        let t = table(&[]);
        assert!(!allowed(&t, "44.229.228.186"));
        assert!(t.words.iter().all(|&w| w == 0));
    }
}
