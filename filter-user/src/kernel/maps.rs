//! Handles on the program's maps, and the operations that give them
//! meaning: installing a ruleset atomically, reading it back, and reading
//! the counters. This is the one door to the maps: the handles are private,
//! so nothing else can write `ACTIVE` or `POLICY` out of turn.
//!
//! Atomic swap: the policy record, the allowlist tries and one half of each
//! direct table (see `direct.rs`) exist once per generation. A packet reads
//! the active generation once and is judged by that copy only. `install`
//! rewrites the inactive copy completely, flips the active generation with
//! one 4-byte array write, and waits for the packets already running on the
//! old copy to finish (an RCU grace period), so a packet sees the old
//! ruleset or the new one, never a mix, and the old copy is free to be
//! rewritten next time. An interrupted install leaves only the inactive
//! copy half-written, and the next install rewrites it from scratch.
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
};

use anyhow::{anyhow, Context as _, Result};
use aya::{
    maps::{lpm_trie::Key, Array, HashMap, LpmTrie, Map, MapData, PerCpuArray, PerCpuHashMap},
    Ebpf,
};
use filter_common::{
    maps as names, BanEntry, Counter, DeniedSlot, Policy, RateSlot, RateState, Reason, SourceKey,
    BAN_GATE_WORDS, DIRECT_WORDS, INLINE_NONE, REASON_COUNT, V4_HOST_SLOTS,
};
use ipnet::IpNet;

use crate::{
    kernel::{
        bans::{self, Ban},
        direct::{self, V4Table},
    },
    policy::ruleset::Ruleset,
};

type Trie<const N: usize> = LpmTrie<MapData, [u8; N], u8>;

/// The maps of one loaded or pinned program.
pub struct Maps {
    counters: PerCpuArray<MapData, Counter>,
    active: Array<MapData, u32>,
    policy: Array<MapData, Policy>,
    allow_v4: [Trie<4>; 2],
    allow_v6: [Trie<16>; 2],
    denied: PerCpuHashMap<MapData, SourceKey, Counter>,
    denied_cache: PerCpuArray<MapData, DeniedSlot>,
    /// The direct table, written through a memory mapping.
    v4_direct: MapData,
    /// The host slots, written the same way.
    v4_hosts: MapData,
    v6_direct: MapData,
    sip_rate: HashMap<MapData, SourceKey, RateState>,
    rtp_rate: HashMap<MapData, SourceKey, RateState>,
    sip_rate_cache: Array<MapData, RateSlot>,
    rtp_rate_cache: Array<MapData, RateSlot>,
    ban_v4: LpmTrie<MapData, [u8; 4], BanEntry>,
    ban_v6: LpmTrie<MapData, [u8; 16], BanEntry>,
    ban_hosts_v4: HashMap<MapData, [u8; 4], BanEntry>,
    ban_hosts_v6: HashMap<MapData, [u8; 16], BanEntry>,
    /// The ban gate, written through a memory mapping.
    ban_gate: MapData,
    /// `installed_ns` of the last flip this handle waited out.
    settled_ns: u64,
}

/// Counters of every reason, summed over CPUs, indexed by `Reason as usize`.
pub type CounterSet = [Counter; REASON_COUNT as usize];

impl Maps {
    /// Takes the maps out of a loaded object (the program keeps using them).
    pub fn take(ebpf: &mut Ebpf) -> Result<Maps> {
        Maps::build(|name| {
            ebpf.take_map(name)
                .ok_or_else(|| anyhow!("the program has no map {name}"))
        })
    }

    /// Opens the maps pinned in `dir` by a running attachment.
    pub fn open_pinned(dir: &Path) -> Result<Maps> {
        Maps::build(|name| {
            let path = dir.join(name);
            let data = MapData::from_pin(&path)
                .with_context(|| {
                    format!(
                        "opening the pinned map {} (sipwall's pins are damaged: attaching again recreates them)",
                        path.display()
                    )
                })?;
            Map::from_map_data(data)
                .with_context(|| format!("{} is not a map sipwall knows", path.display()))
        })
    }

    fn build(mut get: impl FnMut(&str) -> Result<Map>) -> Result<Maps> {
        fn typed<T: TryFrom<Map, Error = aya::maps::MapError>>(map: Map, name: &str) -> Result<T> {
            T::try_from(map).with_context(|| format!("map {name} has an unexpected type or layout"))
        }
        let mut one = |name: &str| -> Result<Map> { get(name) };
        Ok(Maps {
            counters: typed(one(names::COUNTERS)?, names::COUNTERS)?,
            active: typed(one(names::ACTIVE)?, names::ACTIVE)?,
            policy: typed(one(names::POLICY)?, names::POLICY)?,
            allow_v4: [
                typed(one(names::ALLOW_V4[0])?, names::ALLOW_V4[0])?,
                typed(one(names::ALLOW_V4[1])?, names::ALLOW_V4[1])?,
            ],
            allow_v6: [
                typed(one(names::ALLOW_V6[0])?, names::ALLOW_V6[0])?,
                typed(one(names::ALLOW_V6[1])?, names::ALLOW_V6[1])?,
            ],
            denied: typed(one(names::DENIED)?, names::DENIED)?,
            denied_cache: typed(one(names::DENIED_CACHE)?, names::DENIED_CACHE)?,
            v4_direct: array_data(one(names::V4_DIRECT)?, names::V4_DIRECT)?,
            v4_hosts: array_data(one(names::V4_HOSTS)?, names::V4_HOSTS)?,
            v6_direct: array_data(one(names::V6_DIRECT)?, names::V6_DIRECT)?,
            sip_rate: typed(one(names::SIP_RATE)?, names::SIP_RATE)?,
            rtp_rate: typed(one(names::RTP_RATE)?, names::RTP_RATE)?,
            sip_rate_cache: typed(one(names::SIP_RATE_CACHE)?, names::SIP_RATE_CACHE)?,
            rtp_rate_cache: typed(one(names::RTP_RATE_CACHE)?, names::RTP_RATE_CACHE)?,
            ban_v4: typed(one(names::BAN_V4)?, names::BAN_V4)?,
            ban_v6: typed(one(names::BAN_V6)?, names::BAN_V6)?,
            ban_hosts_v4: typed(one(names::BAN_HOSTS_V4)?, names::BAN_HOSTS_V4)?,
            ban_hosts_v6: typed(one(names::BAN_HOSTS_V6)?, names::BAN_HOSTS_V6)?,
            ban_gate: array_data(one(names::BAN_GATE)?, names::BAN_GATE)?,
            settled_ns: 0,
        })
    }

    /// The generation packets are judged by now (0 or 1).
    pub fn active_generation(&self) -> Result<u32> {
        Ok(self
            .active
            .get(&0, 0)
            .context("reading the active generation")?
            & 1)
    }

    /// The ruleset packets are judged by now.
    pub fn read_ruleset(&self) -> Result<Ruleset> {
        let g = self.active_generation()?;
        let policy = self.policy.get(&g, 0).context("reading the policy")?;
        Ok(Ruleset::from_parts(&policy, self.read_allowlist(g)?))
    }

    /// The allowlist of generation `g`, sorted.
    pub fn read_allowlist(&self, g: u32) -> Result<Vec<IpNet>> {
        let mut nets = Vec::new();
        for key in self.allow_v4[g as usize].keys() {
            let key = key.context("reading the IPv4 allowlist")?;
            nets.push(net(
                IpAddr::V4(Ipv4Addr::from(key.data())),
                key.prefix_len(),
            )?);
        }
        for key in self.allow_v6[g as usize].keys() {
            let key = key.context("reading the IPv6 allowlist")?;
            nets.push(net(
                IpAddr::V6(Ipv6Addr::from(key.data())),
                key.prefix_len(),
            )?);
        }
        nets.sort();
        Ok(nets)
    }

    /// Makes `ruleset` the one packets are judged by, atomically (see the
    /// module comment). Returns the new active generation.
    pub fn install(&mut self, ruleset: &Ruleset) -> Result<u32> {
        let active = self.active_generation()?;
        let next = 1 - active;
        // A packet that read the active word just before the last flip may
        // still be judged by the generation about to be rewritten. The
        // install that flipped waited for such packets to finish; if it was
        // killed before it could, and that was less than a second ago, wait
        // here.
        let previous = self
            .policy
            .get(&active, 0)
            .context("reading the policy")?
            .installed_ns;
        if previous != self.settled_ns && monotonic_ns().saturating_sub(previous) < 1_000_000_000 {
            wait_for_packets_in_flight();
        }
        let n = next as usize;
        clear(&mut self.allow_v4[n]).context("clearing the inactive IPv4 allowlist")?;
        clear(&mut self.allow_v6[n]).context("clearing the inactive IPv6 allowlist")?;
        for (addr, len) in ruleset.v4() {
            self.allow_v4[n]
                .insert(&Key::new(len.into(), addr.octets()), 1, 0)
                .with_context(|| format!("adding {addr}/{len} to the IPv4 allowlist"))?;
        }
        for (addr, len) in ruleset.v6() {
            self.allow_v6[n]
                .insert(&Key::new(len.into(), addr.octets()), 1, 0)
                .with_context(|| format!("adding {addr}/{len} to the IPv6 allowlist"))?;
        }
        let mut policy = ruleset.policy();
        // The program reads a family's direct table only when its list is
        // too long to be inline in the policy (`v4_inline_len` and
        // `v6_inline_len` say which): short lists skip writing megabytes.
        if policy.v4_inline_len == INLINE_NONE {
            let table = V4Table::build(ruleset.v4())?;
            write_half(&self.v4_direct, DIRECT_WORDS, next, &table.words)
                .context("writing the IPv4 direct table")?;
            write_half(&self.v4_hosts, V4_HOST_SLOTS, next, &table.slots)
                .context("writing the IPv4 host slots")?;
            policy.v4_seeds = table.seeds;
        }
        if policy.v6_inline_len == INLINE_NONE {
            let words = direct::v6_direct(ruleset.v6());
            write_half(&self.v6_direct, DIRECT_WORDS, next, &words)
                .context("writing the IPv6 direct table")?;
        }
        policy.installed_ns = monotonic_ns();
        self.policy
            .set(next, policy, 0)
            .context("writing the policy")?;
        self.active
            .set(0, next, 0)
            .context("switching to the new generation")?;
        // From here on no packet starts on the old generation; once those
        // already running finish, it is free to be rewritten, and the new
        // ruleset is the only one in force when this returns.
        wait_for_packets_in_flight();
        self.settled_ns = policy.installed_ns;
        Ok(next)
    }

    /// Counters per reason, summed over CPUs.
    pub fn counters(&self) -> Result<CounterSet> {
        let mut out = CounterSet::default();
        for reason in Reason::ALL {
            let per_cpu = self
                .counters
                .get(&(reason as u32), 0)
                .with_context(|| format!("reading the {} counter", reason.name()))?;
            for c in per_cpu.iter() {
                out[reason as usize].packets += c.packets;
                out[reason as usize].bytes += c.bytes;
            }
        }
        Ok(out)
    }

    /// Denied sources with their counters summed over CPUs, most packets
    /// first.
    pub fn denied_sources(&self) -> Result<Vec<(IpAddr, Counter)>> {
        // The LRU map and the per-CPU cache in front of it (a source's
        // counts may be in both), summed by address.
        let mut sums: std::collections::HashMap<[u8; 16], Counter> = Default::default();
        let mut add = |addr: [u8; 16], c: &Counter| {
            let sum = sums.entry(addr).or_default();
            sum.packets += c.packets;
            sum.bytes += c.bytes;
        };
        for item in self.denied.iter() {
            let (key, per_cpu) = item.context("reading the denied-sources map")?;
            per_cpu.iter().for_each(|c| add(key.addr, c));
        }
        for slot in 0..filter_common::DENIED_CACHE_SLOTS {
            let per_cpu = self
                .denied_cache
                .get(&slot, 0)
                .context("reading the denied-sources cache")?;
            for s in per_cpu.iter().filter(|s| s.packets != 0) {
                add(
                    s.addr,
                    &Counter {
                        packets: s.packets,
                        bytes: s.bytes,
                    },
                );
            }
        }
        let mut out: Vec<(IpAddr, Counter)> = sums
            .into_iter()
            .map(|(addr, c)| {
                let v6 = Ipv6Addr::from(addr);
                let addr = match v6.to_ipv4_mapped() {
                    Some(v4) => IpAddr::V4(v4),
                    None => IpAddr::V6(v6),
                };
                (addr, c)
            })
            .collect();
        out.sort_by(|a, b| b.1.packets.cmp(&a.1.packets).then(a.0.cmp(&b.0)));
        Ok(out)
    }
}

impl Maps {
    /// The sources dropped over a rate limit (`Reason::SipRatelimited` or
    /// `Reason::RtpRatelimited`) with their dropped packets and bytes,
    /// most packets first.
    pub fn ratelimited_sources(&self, reason: Reason) -> Result<Vec<(IpAddr, Counter)>> {
        let (cache, map) = match reason {
            Reason::SipRatelimited => (&self.sip_rate_cache, &self.sip_rate),
            Reason::RtpRatelimited => (&self.rtp_rate_cache, &self.rtp_rate),
            _ => anyhow::bail!("no per-source rate counts for {}", reason.name()),
        };
        // A source's bucket in the cache is the current one; the map may
        // hold an older copy of it.
        let mut states: std::collections::HashMap<[u8; 16], RateState> = Default::default();
        for index in 0..cache.len() {
            let slot = cache
                .get(&index, 0)
                .context("reading the rate-limit cache")?;
            if slot.state.tat_ns != 0 {
                states.insert(slot.addr, slot.state);
            }
        }
        for item in map.iter() {
            let (key, state) = item.context("reading the rate-limit map")?;
            states.entry(key.addr).or_insert(state);
        }
        let mut out: Vec<(IpAddr, Counter)> = states
            .into_iter()
            .filter(|(_, s)| s.dropped_packets != 0)
            .map(|(addr, s)| {
                let counter = Counter {
                    packets: s.dropped_packets,
                    bytes: s.dropped_bytes,
                };
                (source_addr(addr), counter)
            })
            .collect();
        out.sort_by(|a, b| b.1.packets.cmp(&a.1.packets).then(a.0.cmp(&b.0)));
        Ok(out)
    }

    /// Every entry of the ban set, expired ones included (the program
    /// ignores those), sorted by prefix.
    pub fn bans(&self) -> Result<Vec<Ban>> {
        let mut out: Vec<Ban> = self
            .ban_entries()?
            .into_iter()
            .map(|(net, e)| Ban {
                net,
                expires_ns: e.expires_ns,
            })
            .collect();
        out.sort_by_key(|b| b.net);
        Ok(out)
    }

    /// The ban maps' entries as they are.
    fn ban_entries(&self) -> Result<std::collections::HashMap<IpNet, BanEntry>> {
        let mut out = std::collections::HashMap::new();
        for item in self.ban_v4.iter() {
            let (key, entry) = item.context("reading the IPv4 ban prefixes")?;
            let addr = IpAddr::V4(Ipv4Addr::from(key.data()));
            out.insert(ban_net(addr, key.prefix_len())?, entry);
        }
        for item in self.ban_v6.iter() {
            let (key, entry) = item.context("reading the IPv6 ban prefixes")?;
            let addr = IpAddr::V6(Ipv6Addr::from(key.data()));
            out.insert(ban_net(addr, key.prefix_len())?, entry);
        }
        for item in self.ban_hosts_v4.iter() {
            let (key, entry) = item.context("reading the banned IPv4 addresses")?;
            out.insert(ban_net(IpAddr::V4(Ipv4Addr::from(key)), 32)?, entry);
        }
        for item in self.ban_hosts_v6.iter() {
            let (key, entry) = item.context("reading the banned IPv6 addresses")?;
            out.insert(ban_net(IpAddr::V6(Ipv6Addr::from(key)), 128)?, entry);
        }
        Ok(out)
    }

    /// Makes the ban set exactly `new` (one entry per prefix), live. Every
    /// step leaves each ban of the old or the new set in force, as a
    /// packet sees it: the new and changed entries and their gate bits go
    /// in before the entries that leave are removed, and only then do gate
    /// bits clear. Entries that stay as they are are not rewritten.
    pub fn set_bans(&mut self, new: &[Ban]) -> Result<()> {
        let old = self.ban_entries()?;
        let old_list: Vec<Ban> = old
            .iter()
            .map(|(net, e)| Ban {
                net: *net,
                expires_ns: e.expires_ns,
            })
            .collect();
        let staying: std::collections::HashSet<IpNet> = new.iter().map(|b| b.net).collect();
        let old_gate = bans::gate(&old_list);
        let new_gate = bans::gate(new);
        anyhow::ensure!(new_gate.len() == 2 * BAN_GATE_WORDS as usize);
        for (ban, entry) in new.iter().zip(bans::entries(new)) {
            if old.get(&ban.net) != Some(&entry) {
                self.write_ban(ban.net, entry)
                    .with_context(|| format!("adding {} to the ban set (is it full?)", ban.net))?;
            }
        }
        let both: Vec<u64> = old_gate.iter().zip(&new_gate).map(|(a, b)| a | b).collect();
        write_changed(&self.ban_gate, &both).context("writing the ban gate")?;
        for net in old.keys().filter(|n| !staying.contains(n)) {
            self.remove_ban(*net)
                .with_context(|| format!("removing {net} from the ban set"))?;
        }
        write_changed(&self.ban_gate, &new_gate).context("writing the ban gate")?;
        Ok(())
    }

    fn write_ban(&mut self, net: IpNet, entry: BanEntry) -> Result<(), aya::maps::MapError> {
        match net {
            IpNet::V4(n) if n.prefix_len() == 32 => {
                self.ban_hosts_v4.insert(n.addr().octets(), entry, 0)
            }
            IpNet::V6(n) if n.prefix_len() == 128 => {
                self.ban_hosts_v6.insert(n.addr().octets(), entry, 0)
            }
            IpNet::V4(n) => self.ban_v4.insert(
                &Key::new(n.prefix_len().into(), n.network().octets()),
                entry,
                0,
            ),
            IpNet::V6(n) => self.ban_v6.insert(
                &Key::new(n.prefix_len().into(), n.network().octets()),
                entry,
                0,
            ),
        }
    }

    fn remove_ban(&mut self, net: IpNet) -> Result<(), aya::maps::MapError> {
        match net {
            IpNet::V4(n) if n.prefix_len() == 32 => self.ban_hosts_v4.remove(&n.addr().octets()),
            IpNet::V6(n) if n.prefix_len() == 128 => self.ban_hosts_v6.remove(&n.addr().octets()),
            IpNet::V4(n) => self
                .ban_v4
                .remove(&Key::new(n.prefix_len().into(), n.network().octets())),
            IpNet::V6(n) => self
                .ban_v6
                .remove(&Key::new(n.prefix_len().into(), n.network().octets())),
        }
    }
}

fn source_addr(addr: [u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(addr);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

fn ban_net(addr: IpAddr, prefix_len: u32) -> Result<IpNet> {
    IpNet::new(addr, prefix_len as u8)
        .with_context(|| format!("bad prefix {addr}/{prefix_len} in the ban map"))
}

/// Writes the words of `values` that differ over a memory-mappable BPF
/// array of exactly that many u64, one aligned word store each (a packet
/// reads a word whole, old or new).
fn write_changed(map: &MapData, values: &[u64]) -> Result<()> {
    use std::os::fd::{AsFd as _, AsRawFd as _};
    let len = std::mem::size_of_val(values);
    // SAFETY: a fresh shared mapping of the whole array; the kernel refuses
    // a length beyond the map.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            map.fd().as_fd().as_raw_fd(),
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error()).context("mapping the array");
    }
    let words = ptr.cast::<u64>();
    for (i, &v) in values.iter().enumerate() {
        // SAFETY: `i` is within the mapping of `values.len()` aligned
        // words; the program reads them concurrently, so each is read and
        // written with one volatile access of its own width.
        unsafe {
            let w = words.add(i);
            if w.read_volatile() != v {
                w.write_volatile(v);
            }
        }
    }
    // SAFETY: the mapping made above, no longer used.
    unsafe { libc::munmap(ptr, len) };
    Ok(())
}

fn net(addr: IpAddr, prefix_len: u32) -> Result<IpNet> {
    IpNet::new(addr, prefix_len as u8)
        .with_context(|| format!("bad prefix {addr}/{prefix_len} in the allowlist map"))
}

fn clear<const N: usize>(trie: &mut Trie<N>) -> Result<()> {
    let keys: Vec<Key<[u8; N]>> = trie.keys().collect::<Result<_, _>>()?;
    for key in keys {
        trie.remove(&key)?;
    }
    Ok(())
}

/// Waits for every XDP program run in progress to finish (an RCU grace
/// period, see `rcu.rs`); where the kernel will not do that, waits 10 ms,
/// a thousand times what a packet takes.
fn wait_for_packets_in_flight() {
    if let Err(e) = crate::kernel::rcu::wait_for_running_programs() {
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| {
            eprintln!("sipwall: cannot wait for an RCU grace period ({e}); waiting 10 ms instead")
        });
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// CLOCK_MONOTONIC in nanoseconds (the clock of `bpf_ktime_get_ns`).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The raw handle of an array map (the direct tables are written through
/// a memory mapping, not element by element).
fn array_data(map: Map, name: &str) -> Result<MapData> {
    match map {
        Map::Array(data) => Ok(data),
        _ => anyhow::bail!("map {name} is not an array"),
    }
}

/// Writes `values` over generation `g`'s half of a memory-mappable BPF
/// array of `2 * half` elements of `T`.
fn write_half<T: Copy>(map: &MapData, half: u32, g: u32, values: &[T]) -> Result<()> {
    use std::os::fd::{AsFd as _, AsRawFd as _};
    let (half, g) = (half as usize, g as usize);
    anyhow::ensure!(
        values.len() == half,
        "{} values for a half of {half}",
        values.len()
    );
    let len = 2 * half * std::mem::size_of::<T>();
    // SAFETY: a fresh shared mapping of the whole array; the kernel refuses
    // a length beyond the map.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            map.fd().as_fd().as_raw_fd(),
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error()).context("mapping the array");
    }
    // SAFETY: the mapping holds 2 * half elements of T (repr(C), no
    // padding); the half written is in bounds and not read concurrently by
    // the program (it is the inactive generation).
    unsafe {
        let elems = std::slice::from_raw_parts_mut(ptr.cast::<T>(), 2 * half);
        elems[g * half..(g + 1) * half].copy_from_slice(values);
        libc::munmap(ptr, len);
    }
    Ok(())
}
