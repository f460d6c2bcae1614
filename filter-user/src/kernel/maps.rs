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
    maps as names, Counter, DeniedSlot, FlowKey, FlowSeen, Policy, Reason, SourceKey, DIRECT_WORDS,
    FLAG_STRICT, INLINE_NONE, REASON_COUNT, V4_HOST_SLOTS,
};
use ipnet::IpNet;

use crate::{
    kernel::{
        direct::{self, V4Table},
        flows::FlowTuple,
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
    /// The host's flows (strict mode's replies).
    flows: HashMap<MapData, FlowKey, FlowSeen>,
    /// A `--confirm` in progress (tokens).
    confirm: Array<MapData, u64>,
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
            flows: typed(one(names::FLOWS)?, names::FLOWS)?,
            confirm: typed(one(names::CONFIRM)?, names::CONFIRM)?,
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
        let current = self.policy.get(&active, 0).context("reading the policy")?;
        let previous = current.installed_ns;
        // Entering strict mode: the flows already open (the operator's SSH
        // session above all) must not lose their answers. The egress
        // program learns from now on; the socket table gives the rest.
        if ruleset.strict() && current.flags & FLAG_STRICT == 0 {
            let open = crate::kernel::flows::open_flows()?;
            self.add_flows(&open)
                .context("entering the open connections in the flow map")?;
        }
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

    /// Enters flows of this host as if they had just sent a packet out
    /// (seeding from the socket table; tests). Returns how many.
    pub fn add_flows(&mut self, flows: &[FlowTuple]) -> Result<usize> {
        // The programs' clock: bpf_ktime_get_coarse_ns.
        let now = monotonic_coarse_ns();
        for flow in flows {
            self.flows
                .insert(flow.key(), FlowSeen { last_out_ns: now }, 0)
                .with_context(|| format!("entering the flow {flow:?}"))?;
        }
        Ok(flows.len())
    }

    /// How many flows the map holds (expired ones included).
    pub fn flow_count(&self) -> usize {
        self.flows.keys().filter(|k| k.is_ok()).count()
    }

    /// Whether `flow` is in the map.
    pub fn has_flow(&self, flow: &FlowTuple) -> bool {
        self.flows.get(&flow.key(), 0).is_ok()
    }

    /// Forgets every flow.
    pub fn clear_flows(&mut self) -> Result<()> {
        let keys: Vec<FlowKey> = self.flows.keys().filter_map(|k| k.ok()).collect();
        for key in keys {
            let _ = self.flows.remove(&key);
        }
        Ok(())
    }

    /// Marks a confirmation as awaited by `token` (non-zero), or none (0).
    pub fn set_confirm_pending(&mut self, token: u64) -> Result<()> {
        self.confirm
            .set(filter_common::CONFIRM_GIVEN, 0, 0)
            .and_then(|()| self.confirm.set(filter_common::CONFIRM_PENDING, token, 0))
            .context("writing the confirmation map")
    }

    /// The token of the process waiting for a confirmation, if one waits.
    pub fn confirm_pending(&self) -> Result<Option<u64>> {
        let token = self
            .confirm
            .get(&filter_common::CONFIRM_PENDING, 0)
            .context("reading the confirmation map")?;
        Ok((token != 0).then_some(token))
    }

    /// Confirms the policy `token` waits on.
    pub fn give_confirmation(&mut self, token: u64) -> Result<()> {
        self.confirm
            .set(filter_common::CONFIRM_GIVEN, token, 0)
            .context("writing the confirmation map")
    }

    /// Whether the confirmation `token` waits for has been given.
    pub fn confirmed(&self, token: u64) -> Result<bool> {
        Ok(self
            .confirm
            .get(&filter_common::CONFIRM_GIVEN, 0)
            .context("reading the confirmation map")?
            == token)
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

    /// Denied signalling sources with their counters summed over CPUs,
    /// most packets first.
    pub fn denied_sources(&self) -> Result<Vec<(IpAddr, Counter)>> {
        self.drop_sources(Reason::SipDenied)
    }

    /// The sources of packets dropped as `reason`, counters summed over
    /// CPUs, most packets first.
    pub fn drop_sources(&self, reason: Reason) -> Result<Vec<(IpAddr, Counter)>> {
        let wanted = reason as u32;
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
            if key.reason == wanted {
                per_cpu.iter().for_each(|c| add(key.addr, c));
            }
        }
        for slot in 0..filter_common::DENIED_CACHE_SLOTS {
            let per_cpu = self
                .denied_cache
                .get(&slot, 0)
                .context("reading the denied-sources cache")?;
            for s in per_cpu
                .iter()
                .filter(|s| s.packets != 0 && s.reason == wanted)
            {
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

/// CLOCK_MONOTONIC_COARSE in nanoseconds (the clock of
/// `bpf_ktime_get_coarse_ns`, which the flow map's times are in).
fn monotonic_coarse_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CLOCK_MONOTONIC in nanoseconds (the clock of `bpf_ktime_get_ns`).
fn monotonic_ns() -> u64 {
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
