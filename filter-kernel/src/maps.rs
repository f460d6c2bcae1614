//! Handles on the program's maps, and the operations that give them
//! meaning: installing a ruleset atomically, reading it back, and reading
//! the counters. This is the one door to the maps: the handles are private,
//! so nothing else can write `ACTIVE` or `POLICY` out of turn.
//!
//! Atomic swap: the policy record, the allowlist tries and one half of each
//! direct table (see `direct.rs`) exist once per generation. A packet reads
//! the active generation once and is judged by that copy only. `install`
//! brings the inactive copy to the new ruleset, flips the active generation
//! with one 4-byte array write, and waits for the packets already running
//! on the old copy to finish (an RCU grace period), so a packet sees the
//! old ruleset or the new one, never a mix, and the old copy is free to be
//! rewritten next time.
//!
//! Updates cost what they change: `install` compares the inactive copy
//! with the new ruleset and writes only the difference — the prefixes that
//! differ in its tries (in batches, a few system calls for thousands) and
//! the /24s those touch in its halves of the direct tables. What the
//! inactive copy holds is either known (after a small change the old copy
//! is brought level once the grace period is over, and its policy record
//! then is an exact copy of the active one) or read back from its tries.
//! A generation's record is marked as being written (`installed_ns` 0)
//! before any of it changes, so whatever an interrupted install leaves
//! behind is compared against or rewritten whole, never trusted.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
};

use anyhow::{anyhow, Context as _, Result};
use aya::{
    maps::{
        lpm_trie::Key, Array, HashMap, LpmTrie, Map, MapData, PerCpuArray, PerCpuHashMap,
        PerCpuValues,
    },
    Ebpf,
};
use filter_common::{
    maps as names, AttachInfo, BanEntry, Counter, CounterFamily, DeniedBlock, DropKey,
    EgressPolicy, FlowKey, FlowKeyV4, FlowSeen, OutReason, Policy, RateSlot, RateState, Reason,
    ReplySlot, SourceKey, BAN_GATE_LEN, BAN_SLOT_LEN, BAN_SLOT_LEN_V6, DIRECT_WORDS, FLAG_L3,
    FLAG_STRICT, FLOW_GATE_ALWAYS, INLINE_NONE, REPLY_CACHE_SLOTS, V4_HOST_SLOTS,
};
use filter_policy::ruleset::Ruleset;
use ipnet::IpNet;

use crate::{
    bans::{self, Ban},
    direct::{self, V4Table},
    flows::{FlowMapKey, FlowTuple},
    iface::LinkHeader,
    syscall::{bpf, MapElem, BPF_MAP_LOOKUP_ELEM, BPF_MAP_UPDATE_ELEM},
};

type Trie<const N: usize> = LpmTrie<MapData, [u8; N], u8>;

/// The maps of one loaded or pinned program.
pub struct Maps {
    counters: PerCpuArray<MapData, Counter>,
    active: Array<MapData, u32>,
    policy: Array<MapData, Policy>,
    allow_v4: [Trie<4>; 2],
    allow_v6: [Trie<16>; 2],
    denied: PerCpuHashMap<MapData, DropKey, Counter>,
    denied_cache: PerCpuArray<MapData, DeniedBlock>,
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
    ban_slots_v4: MapData,
    ban_slots_v6: MapData,
    /// The host's flows (strict mode's replies), IPv4 and IPv6.
    flows_v4: HashMap<MapData, FlowKeyV4, FlowSeen>,
    flows_v6: HashMap<MapData, FlowKey, FlowSeen>,
    /// The XDP program's per-CPU cache of flows found in those.
    reply_cache: PerCpuArray<MapData, ReplySlot>,
    /// The flow gate in front of the flow maps: every flow entered here
    /// opens its slot.
    flow_gate: Array<MapData, u32>,
    /// The egress program's per-CPU cache of flows it learnt lately.
    learnt_cache: PerCpuArray<MapData, ReplySlot>,
    /// A `--confirm` in progress (tokens).
    confirm: Array<MapData, u64>,
    /// The egress program's counters, by `OutReason`.
    out_counters: PerCpuArray<MapData, Counter>,
    /// Strict egress's rules, one record per generation.
    egress_policy: Array<MapData, EgressPolicy>,
    /// `installed_ns` of the last flip this handle waited out.
    settled_ns: u64,
    /// The link header the next install tells the programs to expect;
    /// `None` keeps the active policy's (see [`Maps::set_link`]).
    link: Option<LinkHeader>,
    /// The allowlist of a generation as this handle last read or wrote it.
    known: std::sync::Mutex<Option<Known>>,
}

/// An allowlist and the policy record it went with.
struct Known {
    generation: u32,
    installed_ns: u64,
    allow: Vec<IpNet>,
}

/// Changes of at most this many prefixes are made to both generations at
/// once (see `install`).
const LEVEL_MAX: usize = 256;

/// What the old generation's record says once the grace period after a
/// flip is over: a copy of the active record when the old generation was
/// brought level, else its own record with `installed_ns` set to the
/// active one's plus `SETTLED` (1 ns; not a copy, so never taken for
/// level). Either tells the next install, in another process, that it need
/// not wait for a grace period of its own.
const SETTLED: u64 = 1;

/// Counters of every reason, summed over CPUs, indexed by `Reason as usize`.
pub type CounterSet = <Reason as CounterFamily>::Set;
/// The egress program's counters, summed over CPUs, indexed by
/// `OutReason as usize`.
pub type OutCounterSet = <OutReason as CounterFamily>::Set;

/// A program's counters map read whole: each member's slot, summed over
/// CPUs.
fn sum_over_cpus<F: CounterFamily>(map: &PerCpuArray<MapData, Counter>) -> Result<F::Set> {
    let mut out = F::Set::default();
    for &reason in F::MEMBERS {
        let per_cpu = map
            .get(&reason.index(), 0)
            .with_context(|| format!("reading the {} counter", reason.name()))?;
        let slot = &mut out.as_mut()[reason.index() as usize];
        for c in per_cpu.iter() {
            slot.packets += c.packets;
            slot.bytes += c.bytes;
        }
    }
    Ok(out)
}

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
            ban_slots_v4: array_data(one(names::BAN_SLOTS_V4)?, names::BAN_SLOTS_V4)?,
            ban_slots_v6: array_data(one(names::BAN_SLOTS_V6)?, names::BAN_SLOTS_V6)?,
            flows_v4: typed(one(names::FLOWS_V4)?, names::FLOWS_V4)?,
            flows_v6: typed(one(names::FLOWS_V6)?, names::FLOWS_V6)?,
            reply_cache: typed(one(names::REPLY_CACHE)?, names::REPLY_CACHE)?,
            flow_gate: typed(one(names::FLOW_GATE)?, names::FLOW_GATE)?,
            learnt_cache: typed(one(names::LEARNT_CACHE)?, names::LEARNT_CACHE)?,
            confirm: typed(one(names::CONFIRM)?, names::CONFIRM)?,
            out_counters: typed(one(names::OUT_COUNTERS)?, names::OUT_COUNTERS)?,
            egress_policy: typed(one(names::EGRESS_POLICY)?, names::EGRESS_POLICY)?,
            settled_ns: 0,
            link: None,
            known: Default::default(),
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
        let egress = self
            .egress_policy
            .get(&g, 0)
            .context("reading the egress policy")?;
        let allow = self.read_allowlist(g)?;
        // Under the pin-root lock (as `allow` holds it), an install that
        // follows can start from this instead of reading it again.
        if self.active_generation()? == g
            && self.policy.get(&g, 0).context("reading the policy")? == policy
        {
            self.remember(g, policy.installed_ns, allow.clone());
        }
        let mut ruleset = Ruleset::from_parts(&policy, allow);
        ruleset.egress = filter_policy::ruleset::Egress::from_policy(&egress);
        Ok(ruleset)
    }

    /// The allowlist of generation `g`, sorted.
    pub fn read_allowlist(&self, g: u32) -> Result<Vec<IpNet>> {
        let mut nets = Vec::new();
        for (data, len) in
            trie_prefixes(&self.allow_v4[g as usize]).context("reading the IPv4 allowlist")?
        {
            nets.push(net(IpAddr::V4(Ipv4Addr::from(data)), len)?);
        }
        for (data, len) in
            trie_prefixes(&self.allow_v6[g as usize]).context("reading the IPv6 allowlist")?
        {
            nets.push(net(IpAddr::V6(Ipv6Addr::from(data)), len)?);
        }
        nets.sort();
        Ok(nets)
    }

    /// Makes installs from now on tell the programs that frames start with
    /// `link` (attaching knows the interface; every other install keeps
    /// what the active policy says).
    pub fn set_link(&mut self, link: LinkHeader) {
        self.link = Some(link);
    }

    /// The link header the active policy tells the programs to expect.
    pub fn link_header(&self) -> Result<LinkHeader> {
        let g = self.active_generation()?;
        let policy = self.policy.get(&g, 0).context("reading the policy")?;
        Ok(if policy.flags & FLAG_L3 != 0 {
            LinkHeader::Ip
        } else {
            LinkHeader::Ethernet
        })
    }

    /// Makes `ruleset` the one packets are judged by, atomically (see the
    /// module comment). Returns the new active generation.
    pub fn install(&mut self, ruleset: &Ruleset) -> Result<u32> {
        let active = self.active_generation()?;
        let next = 1 - active;
        let active_policy = self.policy.get(&active, 0).context("reading the policy")?;
        let next_policy = self.policy.get(&next, 0).context("reading the policy")?;
        // The link header is the interface's, not the configuration's.
        let link_flag = match self.link {
            Some(LinkHeader::Ip) => FLAG_L3,
            Some(LinkHeader::Ethernet) => 0,
            None => active_policy.flags & FLAG_L3,
        };
        // A packet that read the active word just before the last flip may
        // still be judged by the generation about to be rewritten. The
        // install that flipped waited for such packets to finish; if it was
        // killed before it could, and that was less than a second ago, wait
        // here. The record it left in the old generation once its wait was
        // over says whether it did (see `SETTLED`).
        let previous = active_policy.installed_ns;
        // Entering strict mode: the flows already open (the operator's SSH
        // session above all) must not lose their answers. The egress
        // program learns from now on; the socket table gives the rest.
        if ruleset.strict() && active_policy.flags & FLAG_STRICT == 0 {
            let open = crate::flows::open_flows()?;
            self.add_flows(&open)
                .context("entering the open connections in the flow map")?;
        }
        let settled = previous != 0
            && (next_policy.installed_ns == previous
                || next_policy.installed_ns == previous + SETTLED);
        if previous != self.settled_ns
            && !settled
            && monotonic_ns().saturating_sub(previous) < 1_000_000_000
        {
            wait_for_packets_in_flight();
        }
        // What the active generation holds, when this handle read it (the
        // caller usually has, to compute the new ruleset) and it has not
        // changed since.
        let active_list = self.known_list(active, &active_policy);
        // What the inactive generation holds: the same as the active one
        // when the last install levelled it (its policy record is then an
        // exact copy), else whatever its tries say.
        let level = next_policy == active_policy && next_policy.installed_ns != 0;
        let base = match (&active_list, level) {
            (Some(list), true) => list.clone(),
            _ => self.read_allowlist(next)?,
        };
        let new: Vec<IpNet> = ruleset
            .allow
            .iter()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut policy = self
            .write_generation(next, &next_policy, &base, &new, ruleset, link_flag)
            .context("writing the inactive generation")?;
        policy.installed_ns = monotonic_ns();
        let egress = ruleset.egress.policy();
        self.egress_policy
            .set(next, egress, 0)
            .context("writing the egress policy")?;
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
        self.remember(next, policy.installed_ns, new.clone());
        // A small change is also made to the old generation now, so that
        // the next small change does not have to read the whole list back
        // from the kernel. A large one is left for the next install, which
        // compares against what the old generation holds anyway.
        let old_list = if level { Some(base) } else { active_list };
        let small = old_list
            .as_ref()
            .filter(|old| symmetric_difference(old, &new).len() <= LEVEL_MAX);
        let old_record = match small {
            Some(old_list) => {
                let mut copy = self
                    .write_generation(active, &active_policy, old_list, &new, ruleset, link_flag)
                    .context("levelling the old generation")?;
                copy.installed_ns = policy.installed_ns;
                Some(copy)
            }
            // Left as it is, its tables still those of its record; the
            // stamp tells the next install that the grace period is over.
            None if active_policy.installed_ns != 0 => {
                let mut stamped = active_policy;
                stamped.installed_ns = policy.installed_ns + SETTLED;
                Some(stamped)
            }
            None => None,
        };
        if let Some(record) = old_record {
            self.policy
                .set(active, record, 0)
                .context("writing the policy")?;
        }
        // The old generation's egress record is no longer read by any
        // packet: level it, so both halves agree until the next install.
        self.egress_policy
            .set(active, egress, 0)
            .context("writing the egress policy")?;
        Ok(next)
    }

    /// Enters flows of this host as if they had just sent a packet out
    /// (seeding from the socket table; tests). Returns how many.
    pub fn add_flows(&mut self, flows: &[FlowTuple]) -> Result<usize> {
        self.add_flows_idle(flows, std::time::Duration::ZERO)
    }

    /// Enters flows of this host as if they had last sent a packet out
    /// `idle` ago (tests of the idle times).
    pub fn add_flows_idle(
        &mut self,
        flows: &[FlowTuple],
        idle: std::time::Duration,
    ) -> Result<usize> {
        // The programs' clock: bpf_ktime_get_coarse_ns.
        let last_out_ns = monotonic_coarse_ns().saturating_sub(idle.as_nanos() as u64);
        let seen = FlowSeen { last_out_ns };
        for flow in flows {
            // The gate first: a flow in the map behind a closed slot would
            // lose its replies.
            let gate = match flow.key() {
                FlowMapKey::V4(key) => key.gate_slot(),
                FlowMapKey::V6(key) => key.gate_slot(),
            };
            self.flow_gate
                .set(gate, FLOW_GATE_ALWAYS, 0)
                .with_context(|| format!("opening the flow gate for {flow:?}"))?;
            match flow.key() {
                FlowMapKey::V4(key) => self.flows_v4.insert(key, seen, 0),
                FlowMapKey::V6(key) => self.flows_v6.insert(key, seen, 0),
            }
            .with_context(|| format!("entering the flow {flow:?}"))?;
        }
        Ok(flows.len())
    }

    /// How many flows the map holds (expired ones included).
    pub fn flow_count(&self) -> usize {
        self.flows_v4.keys().filter(|k| k.is_ok()).count()
            + self.flows_v6.keys().filter(|k| k.is_ok()).count()
    }

    /// Whether `flow` is in the map.
    pub fn has_flow(&self, flow: &FlowTuple) -> bool {
        match flow.key() {
            FlowMapKey::V4(key) => self.flows_v4.get(&key, 0).is_ok(),
            FlowMapKey::V6(key) => self.flows_v6.get(&key, 0).is_ok(),
        }
    }

    /// Forgets every flow, also in the XDP program's reply cache (a cached
    /// flow would pass its answers until its slot's time is up) and the
    /// egress program's cache of learnt flows (a cached flow would not be
    /// entered again until its slot's time is up).
    pub fn clear_flows(&mut self) -> Result<()> {
        let keys: Vec<FlowKeyV4> = self.flows_v4.keys().filter_map(|k| k.ok()).collect();
        for key in keys {
            let _ = self.flows_v4.remove(&key);
        }
        let keys: Vec<FlowKey> = self.flows_v6.keys().filter_map(|k| k.ok()).collect();
        for key in keys {
            let _ = self.flows_v6.remove(&key);
        }
        let cpus = aya::util::nr_cpus()
            .map_err(|(_, e)| e)
            .context("counting the possible CPUs")?;
        for slot in 0..REPLY_CACHE_SLOTS {
            let empty = PerCpuValues::try_from(vec![ReplySlot::default(); cpus])
                .context("building an empty reply cache slot")?;
            self.reply_cache
                .set(slot, empty, 0)
                .context("emptying the reply cache")?;
            let empty = PerCpuValues::try_from(vec![ReplySlot::default(); cpus])
                .context("building an empty learnt-flow cache slot")?;
            self.learnt_cache
                .set(slot, empty, 0)
                .context("emptying the egress program's cache of learnt flows")?;
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

    /// The allowlist of generation `g` as this handle last read or wrote
    /// it, if its policy record is still the one it read or wrote then.
    fn known_list(&self, g: u32, policy: &Policy) -> Option<Vec<IpNet>> {
        let known = self.known.lock().ok()?;
        match &*known {
            Some(k)
                if k.generation == g
                    && k.installed_ns == policy.installed_ns
                    && policy.installed_ns != 0 =>
            {
                Some(k.allow.clone())
            }
            _ => None,
        }
    }

    fn remember(&self, generation: u32, installed_ns: u64, allow: Vec<IpNet>) {
        if let Ok(mut known) = self.known.lock() {
            *known = Some(Known {
                generation,
                installed_ns,
                allow,
            });
        }
    }

    /// Brings inactive generation `g`, whose policy record is `before` and
    /// whose tries hold `base`, to the allowlist `new` of `ruleset`:
    /// changes only the prefixes that differ in the tries and, where the
    /// direct tables are in use and were kept for `base`, only the /24s
    /// those touch; anything else is rewritten whole. Returns the policy
    /// record to write for it (without `installed_ns`).
    fn write_generation(
        &mut self,
        g: u32,
        before: &Policy,
        base: &[IpNet],
        new: &[IpNet],
        ruleset: &Ruleset,
        link_flag: u32,
    ) -> Result<Policy> {
        // Marked as being written first: an install interrupted from here
        // on leaves a record that says the direct tables cannot be trusted.
        let mut dirty = *before;
        dirty.installed_ns = 0;
        self.policy.set(g, dirty, 0).context("writing the policy")?;
        let kept = before.installed_ns != 0;
        let changed = symmetric_difference(base, new);
        let (gone, added): (Vec<IpNet>, Vec<IpNet>) =
            changed.iter().partition(|n| base.binary_search(n).is_ok());
        let n = g as usize;
        batch::delete(&mut self.allow_v4[n], &v4_keys(&gone))
            .context("removing prefixes from the IPv4 allowlist")?;
        batch::delete(&mut self.allow_v6[n], &v6_keys(&gone))
            .context("removing prefixes from the IPv6 allowlist")?;
        batch::insert(&mut self.allow_v4[n], &v4_keys(&added))
            .context("adding prefixes to the IPv4 allowlist")?;
        batch::insert(&mut self.allow_v6[n], &v6_keys(&added))
            .context("adding prefixes to the IPv6 allowlist")?;
        let mut policy = ruleset.policy();
        policy.flags |= link_flag;
        // The program reads a family's direct table only when its list is
        // too long to be inline in the policy (`v4_inline_len` and
        // `v6_inline_len` say which): short lists leave it alone.
        if policy.v4_inline_len == INLINE_NONE {
            let new_v4: Vec<(Ipv4Addr, u8)> = ruleset.v4().collect();
            let changed_v4: Vec<(Ipv4Addr, u8)> = changed
                .iter()
                .filter_map(|n| match n {
                    IpNet::V4(n) => Some((n.network(), n.prefix_len())),
                    IpNet::V6(_) => None,
                })
                .collect();
            let in_place = kept
                && before.v4_inline_len == INLINE_NONE
                && direct::update_v4_in_place(
                    &mut Elements::new(&self.v4_direct, DIRECT_WORDS, g),
                    &mut Elements::new(&self.v4_hosts, V4_HOST_SLOTS, g),
                    before.v4_seeds,
                    &new_v4,
                    &changed_v4,
                )
                .context("updating the IPv4 direct table")?;
            if in_place {
                policy.v4_seeds = before.v4_seeds;
            } else {
                let table = V4Table::build(new_v4.into_iter())?;
                sync_half(&self.v4_direct, DIRECT_WORDS, g, &table.words)
                    .context("writing the IPv4 direct table")?;
                sync_half(&self.v4_hosts, V4_HOST_SLOTS, g, &table.slots)
                    .context("writing the IPv4 host slots")?;
                policy.v4_seeds = table.seeds;
            }
        }
        if policy.v6_inline_len == INLINE_NONE {
            let new_v6: Vec<(Ipv6Addr, u8)> = ruleset.v6().collect();
            let changed_v6: Vec<(Ipv6Addr, u8)> = changed
                .iter()
                .filter_map(|n| match n {
                    IpNet::V6(n) => Some((n.network(), n.prefix_len())),
                    IpNet::V4(_) => None,
                })
                .collect();
            let in_place = kept
                && before.v6_inline_len == INLINE_NONE
                && direct::update_v6_in_place(
                    &mut Elements::new(&self.v6_direct, DIRECT_WORDS, g),
                    &new_v6,
                    &changed_v6,
                )
                .context("updating the IPv6 direct table")?;
            if !in_place {
                let words = direct::v6_direct(new_v6.into_iter());
                sync_half(&self.v6_direct, DIRECT_WORDS, g, &words)
                    .context("writing the IPv6 direct table")?;
            }
        }
        Ok(policy)
    }

    /// Counters per reason, summed over CPUs.
    pub fn counters(&self) -> Result<CounterSet> {
        sum_over_cpus::<Reason>(&self.counters)
    }

    /// The egress program's counters, summed over CPUs.
    pub fn out_counters(&self) -> Result<OutCounterSet> {
        sum_over_cpus::<OutReason>(&self.out_counters)
    }

    /// Denied signalling sources with their counters summed over CPUs,
    /// most packets first.
    pub fn denied_sources(&self) -> Result<Vec<(IpAddr, Counter)>> {
        self.drop_sources(Reason::SipDenied)
    }

    /// The sources of packets dropped as `reason`, counters summed over
    /// CPUs, most packets first. Sources over a rate limit are counted in
    /// their buckets, every other drop reason's in the dropped-sources map.
    pub fn drop_sources(&self, reason: Reason) -> Result<Vec<(IpAddr, Counter)>> {
        if matches!(reason, Reason::SipRatelimited | Reason::RtpRatelimited) {
            return self.ratelimited_sources(reason);
        }
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
        for block in 0..filter_common::DENIED_CACHE_BLOCKS {
            let per_cpu = self
                .denied_cache
                .get(&block, 0)
                .context("reading the denied-sources cache")?;
            for s in per_cpu
                .iter()
                .flat_map(|b| b.slots.iter())
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
            .map(|(addr, c)| (source_addr(addr), c))
            .collect();
        out.sort_by(|a, b| b.1.packets.cmp(&a.1.packets).then(a.0.cmp(&b.0)));
        Ok(out)
    }
}

impl Maps {
    /// The sources dropped over a rate limit (`Reason::SipRatelimited` or
    /// `Reason::RtpRatelimited`) with their dropped packets and bytes,
    /// most packets first.
    fn ratelimited_sources(&self, reason: Reason) -> Result<Vec<(IpAddr, Counter)>> {
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
    /// packet sees it: the gate bits of the new entries are set first (a
    /// bit without its entry only costs a lookup), so an entry `ban list`
    /// shows is already enforced; then the new and changed entries go in,
    /// then the entries that leave are removed, and only then do gate bits
    /// clear. Entries that stay as they are are not rewritten.
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
        // The gate is taken to hold the bits of the entries there are: bits
        // are set before their entries and cleared after, so a change cut
        // short leaves only bits to spare (a lookup each, never a miss).
        let old_gate = bans::gate(&old_list);
        let new_gate = bans::gate(new);
        let both = bans::gate_union(&old_gate, &new_gate);
        // While the slots are rewritten an address may be between two of
        // them: the overflow words send every miss on to the hashes, which
        // hold each ban of the old or the new set throughout.
        self.set_slots_overflow([true, true])?;
        write_words(
            &self.ban_gate,
            BAN_GATE_LEN,
            &bans::gate_changes(&old_gate, &both),
        )
        .context("writing the ban gate")?;
        let entries = bans::entries(new);
        for (ban, entry) in new.iter().zip(&entries) {
            if old.get(&ban.net) != Some(entry) {
                self.write_ban(ban.net, *entry)
                    .with_context(|| format!("adding {} to the ban set (is it full?)", ban.net))?;
            }
        }
        let (slots_v4, overflow_v4) = bans::slots_v4(new, &entries);
        let (slots_v6, overflow_v6) = bans::slots_v6(new, &entries);
        let [(v4, v4_len), (v6, v6_len)] = self.slot_arrays();
        write_words(
            v4,
            v4_len,
            &bans::slot_changes(&read_words(v4, v4_len)?, &slots_v4),
        )
        .context("writing the IPv4 ban slots")?;
        write_words(
            v6,
            v6_len,
            &bans::slot_changes_v6(&read_words(v6, v6_len)?, &slots_v6),
        )
        .context("writing the IPv6 ban slots")?;
        for net in old.keys().filter(|n| !staying.contains(n)) {
            self.remove_ban(*net)
                .with_context(|| format!("removing {net} from the ban set"))?;
        }
        write_words(
            &self.ban_gate,
            BAN_GATE_LEN,
            &bans::gate_changes(&both, &new_gate),
        )
        .context("writing the ban gate")?;
        self.set_slots_overflow([overflow_v4, overflow_v6])?;
        Ok(())
    }

    /// The ban slot arrays, IPv4 then IPv6, with their lengths in words.
    fn slot_arrays(&self) -> [(&MapData, u32); 2] {
        [
            (&self.ban_slots_v4, BAN_SLOT_LEN * bans::BUCKET_WORDS),
            (&self.ban_slots_v6, BAN_SLOT_LEN_V6 * bans::BUCKET_WORDS_V6),
        ]
    }

    /// Sets or clears each slot array's overflow word (IPv4, IPv6): set,
    /// a miss in the slots asks the hash.
    fn set_slots_overflow(&self, overflow: [bool; 2]) -> Result<()> {
        let words = [bans::OVERFLOW_WORD, bans::OVERFLOW_WORD_V6];
        for (((map, len), word), on) in self.slot_arrays().into_iter().zip(words).zip(overflow) {
            write_words(map, len, &[(word, u64::from(on))]).context("writing the ban slots")?;
        }
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

/// A shared mapping of a memory-mappable BPF array of u64 words, unmapped
/// when dropped.
struct Words {
    base: *mut u64,
    len: u32,
}

impl Words {
    /// Maps the whole array (`len` words), writable or not.
    fn map(map: &MapData, len: u32, writable: bool) -> Result<Words> {
        use std::os::fd::{AsFd as _, AsRawFd as _};
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: a fresh shared mapping of the whole array; the kernel
        // refuses a length beyond the map.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len as usize * 8,
                prot,
                libc::MAP_SHARED,
                map.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error()).context("mapping the array");
        }
        Ok(Words {
            base: ptr.cast(),
            len,
        })
    }

    /// Word `i`, read whole (the programs write it concurrently).
    fn get(&self, i: u32) -> u64 {
        assert!(i < self.len);
        // SAFETY: `i` is within the mapping; one volatile access of the
        // word's own width.
        unsafe { self.base.add(i as usize).read_volatile() }
    }

    /// Writes word `i` whole (a packet reads it old or new). The mapping
    /// must be writable.
    fn set(&self, i: u32, value: u64) {
        assert!(i < self.len);
        // SAFETY: as in `get`.
        unsafe { self.base.add(i as usize).write_volatile(value) };
    }
}

impl Drop for Words {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, no longer used.
        unsafe { libc::munmap(self.base.cast(), self.len as usize * 8) };
    }
}

/// The words of a memory-mappable BPF array of `len` u64 that are not
/// zero, by index.
fn read_words(map: &MapData, len: u32) -> Result<BTreeMap<u32, u64>> {
    let words = Words::map(map, len, false)?;
    Ok((0..len)
        .map(|i| (i, words.get(i)))
        .filter(|&(_, w)| w != 0)
        .collect())
}

/// Writes `words` (index, value) into a memory-mappable BPF array of `len`
/// u64 through a mapping of it, one aligned word store each (a packet
/// reads a word whole, old or new); only the pages written are touched.
fn write_words(map: &MapData, len: u32, words: &[(u32, u64)]) -> Result<()> {
    if words.is_empty() {
        return Ok(());
    }
    anyhow::ensure!(
        words.iter().all(|&(i, _)| i < len),
        "a word beyond the array's {len}"
    );
    let mapped = Words::map(map, len, true)?;
    for &(i, v) in words {
        mapped.set(i, v);
    }
    Ok(())
}

fn net(addr: IpAddr, prefix_len: u32) -> Result<IpNet> {
    IpNet::new(addr, prefix_len as u8)
        .with_context(|| format!("bad prefix {addr}/{prefix_len} in the allowlist map"))
}

/// Every prefix in a trie, read in batches.
fn trie_prefixes<const N: usize>(trie: &Trie<N>) -> Result<Vec<([u8; N], u32)>> {
    let keys = batch::keys(trie)?;
    Ok(keys
        .into_iter()
        .map(|k| (k.data(), k.prefix_len()))
        .collect())
}

/// The prefixes in one sorted list and not the other.
fn symmetric_difference(a: &[IpNet], b: &[IpNet]) -> Vec<IpNet> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x == y => {
                i += 1;
                j += 1;
            }
            (Some(x), Some(y)) if x < y => {
                out.push(*x);
                i += 1;
            }
            (Some(_), Some(y)) => {
                out.push(*y);
                j += 1;
            }
            (Some(x), None) => {
                out.push(*x);
                i += 1;
            }
            (None, Some(y)) => {
                out.push(*y);
                j += 1;
            }
            (None, None) => break,
        }
    }
    out
}

fn v4_keys(nets: &[IpNet]) -> Vec<Key<[u8; 4]>> {
    nets.iter()
        .filter_map(|n| match n {
            IpNet::V4(n) => Some(Key::new(n.prefix_len().into(), n.network().octets())),
            IpNet::V6(_) => None,
        })
        .collect()
}

fn v6_keys(nets: &[IpNet]) -> Vec<Key<[u8; 16]>> {
    nets.iter()
        .filter_map(|n| match n {
            IpNet::V6(n) => Some(Key::new(n.prefix_len().into(), n.network().octets())),
            IpNet::V4(_) => None,
        })
        .collect()
}

/// Waits for every XDP program run in progress to finish (an RCU grace
/// period, see `rcu.rs`); where the kernel will not do that, waits 10 ms,
/// a thousand times what a packet takes.
fn wait_for_packets_in_flight() {
    if let Err(e) = crate::rcu::wait_for_running_programs() {
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| {
            log::warn!("cannot wait for an RCU grace period ({e}); waiting 10 ms instead")
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

/// Generation `g`'s half of a BPF array of `2 * half` elements of `T`,
/// read and written an element at a time by system call: for the few
/// elements a small change touches, cheaper than mapping the array.
struct Elements<'a, T> {
    map: &'a MapData,
    first: u32,
    half: u32,
    _values: std::marker::PhantomData<T>,
}

impl<'a, T> Elements<'a, T> {
    fn new(map: &'a MapData, half: u32, g: u32) -> Self {
        Elements {
            map,
            first: g * half,
            half,
            _values: std::marker::PhantomData,
        }
    }

    fn key(&self, index: usize) -> Result<u32> {
        anyhow::ensure!(index < self.half as usize, "element {index} beyond a half");
        Ok(self.first + index as u32)
    }
}

impl<T: Copy + Default> direct::Cells<T> for Elements<'_, T> {
    fn get(&mut self, index: usize) -> Result<T> {
        let key = self.key(index)?;
        let mut value = T::default();
        elem(
            self.map,
            BPF_MAP_LOOKUP_ELEM,
            &key,
            &mut value as *mut T as u64,
        )
        .with_context(|| format!("reading element {key}"))?;
        Ok(value)
    }

    fn set(&mut self, index: usize, value: T) -> Result<()> {
        let key = self.key(index)?;
        elem(
            self.map,
            BPF_MAP_UPDATE_ELEM,
            &key,
            &value as *const T as u64,
        )
        .with_context(|| format!("writing element {key}"))
    }
}

/// The record in the `INFO` map pinned at `path` (the pins' own map, not
/// the program's: see pins.rs).
pub(crate) fn read_info(path: &Path) -> Result<AttachInfo> {
    let data = MapData::from_pin(path).with_context(|| {
        format!(
            "opening {} (sipwall's pins are damaged: attaching again recreates them, `sipwall detach` removes them)",
            path.display()
        )
    })?;
    let map: Array<MapData, AttachInfo> = Array::try_from(Map::Array(data)).with_context(|| {
        format!(
            "{} is not sipwall's: pins from an incompatible version? `sipwall detach` removes them",
            path.display()
        )
    })?;
    map.get(&0, 0)
        .with_context(|| format!("reading {}", path.display()))
}

/// Writes the record of the `INFO` map pinned at `path`, creating and
/// pinning the map where there is none.
pub(crate) fn write_info(path: &Path, info: &AttachInfo) -> Result<()> {
    let context = || format!("writing {}", path.display());
    match MapData::from_pin(path) {
        Ok(data) => {
            let mut map: Array<MapData, AttachInfo> = Array::try_from(Map::Array(data))?;
            map.set(0, info, 0).with_context(context)
        }
        Err(_) => {
            let mut map =
                Array::<MapData, AttachInfo>::create(1, 0).context("creating the INFO map")?;
            map.set(0, info, 0).with_context(context)?;
            map.pin(path).with_context(context)
        }
    }
}

/// BPF_MAP_LOOKUP_ELEM or BPF_MAP_UPDATE_ELEM of an array element; `value`
/// points to a value of the map's value size.
fn elem(map: &MapData, cmd: libc::c_long, key: &u32, value: u64) -> Result<()> {
    use std::os::fd::AsFd as _;
    let mut attr = MapElem::new(map.fd().as_fd(), key as *const u32 as u64, value);
    // SAFETY: the key and value `attr` points to outlive the call, and the
    // value is of the map's value size (the caller's `T`).
    unsafe { bpf(cmd, &mut attr) }?;
    Ok(())
}

/// Runs `f` on generation `g`'s half of a memory-mappable BPF array of
/// `2 * half` elements of `T`, mapped into this process (that half only:
/// each half is a whole number of pages).
fn with_half<T: Copy, R>(
    map: &MapData,
    half: u32,
    g: u32,
    f: impl FnOnce(&mut [T]) -> Result<R>,
) -> Result<R> {
    use std::os::fd::{AsFd as _, AsRawFd as _};
    let half = half as usize;
    let len = half * std::mem::size_of::<T>();
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as usize;
    anyhow::ensure!(
        len.is_multiple_of(page),
        "a half of {len} bytes is not whole pages"
    );
    // SAFETY: a fresh shared mapping of one half of the array; the kernel
    // refuses a range beyond the map.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            map.fd().as_fd().as_raw_fd(),
            (g as usize * len) as libc::off_t,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error()).context("mapping the array");
    }
    // SAFETY: the mapping holds `half` elements of T (repr(C), no padding,
    // valid for any bytes), and the program does not read them while they
    // are written (they are the inactive generation's). The slice does not
    // outlive the mapping.
    let result = unsafe { f(std::slice::from_raw_parts_mut(ptr.cast::<T>(), half)) };
    // SAFETY: the mapping made above, no longer referenced.
    unsafe { libc::munmap(ptr, len) };
    result
}

/// Makes generation `g`'s half of a memory-mappable BPF array of
/// `2 * half` elements of `T` hold `values`, writing only the elements that
/// differ (most of a half stays the same from one ruleset to the next).
fn sync_half<T: Copy + PartialEq>(map: &MapData, half: u32, g: u32, values: &[T]) -> Result<()> {
    anyhow::ensure!(
        values.len() == half as usize,
        "{} values for a half of {half}",
        values.len()
    );
    with_half(map, half, g, |elems: &mut [T]| {
        for (slot, value) in elems.iter_mut().zip(values) {
            if *slot != *value {
                *slot = *value;
            }
        }
        Ok(())
    })
}

/// Batched map operations (BPF_MAP_*_BATCH): one system call for many
/// keys, where aya offers one per key. The LPM tries support them through
/// the kernel's generic batch code; where a kernel refuses, each falls back
/// to one call per key.
mod batch {
    use std::{
        io,
        os::fd::{AsFd as _, AsRawFd as _},
    };

    use anyhow::{Context as _, Result};
    use aya::maps::{lpm_trie::Key, IterableMap as _, MapData};

    use super::Trie;
    use crate::syscall::{bpf, BPF_MAP_DELETE_BATCH, BPF_MAP_LOOKUP_BATCH, BPF_MAP_UPDATE_BATCH};

    /// Keys per call.
    const CHUNK: usize = 4096;

    /// The part of `union bpf_attr` the batch commands read.
    #[repr(C)]
    struct BatchAttr {
        in_batch: u64,
        out_batch: u64,
        keys: u64,
        values: u64,
        count: u32,
        map_fd: u32,
        elem_flags: u64,
        flags: u64,
    }

    /// Runs a batch command; returns how many elements it did and the
    /// error, if any.
    fn call(cmd: libc::c_long, attr: &mut BatchAttr) -> (usize, Option<io::Error>) {
        // SAFETY: every buffer `attr` points to is valid for `count`
        // elements of the map's key and value sizes and outlives the call.
        let err = unsafe { bpf(cmd, attr) }.err();
        (attr.count as usize, err)
    }

    /// The kernel's ENOTSUPP, which leaks to userspace for map types
    /// without batch operations.
    const ENOTSUPP: i32 = 524;

    fn unsupported(e: &io::Error) -> bool {
        matches!(
            e.raw_os_error(),
            Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) | Some(ENOTSUPP)
        )
    }

    fn attr(map: &MapData, keys: u64, values: u64, count: usize) -> BatchAttr {
        BatchAttr {
            in_batch: 0,
            out_batch: 0,
            keys,
            values,
            count: count as u32,
            map_fd: map.fd().as_fd().as_raw_fd() as u32,
            elem_flags: 0,
            flags: 0,
        }
    }

    /// Every key of an LPM trie of u8 values.
    pub fn keys<const N: usize>(trie: &Trie<N>) -> Result<Vec<Key<[u8; N]>>> {
        let map = trie.map();
        let mut out: Vec<Key<[u8; N]>> = Vec::new();
        let mut keys: Vec<Key<[u8; N]>> = vec![Key::new(0, [0; N]); CHUNK];
        let mut values = vec![0u8; CHUNK];
        // The generic batch code resumes after the key in `in_batch` and
        // puts the last key it returned in `out_batch`.
        let mut cursor = Key::new(0, [0u8; N]);
        let mut next = Key::new(0, [0u8; N]);
        let mut first = true;
        loop {
            let mut a = attr(
                map,
                keys.as_mut_ptr() as u64,
                values.as_mut_ptr() as u64,
                CHUNK,
            );
            if !first {
                a.in_batch = &cursor as *const Key<[u8; N]> as u64;
            }
            a.out_batch = &mut next as *mut Key<[u8; N]> as u64;
            let (n, err) = call(BPF_MAP_LOOKUP_BATCH, &mut a);
            match err {
                Some(e) if first && unsupported(&e) => {
                    return Ok(trie.keys().collect::<Result<_, _>>()?)
                }
                Some(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    out.extend_from_slice(&keys[..n.min(CHUNK)]);
                    return Ok(out);
                }
                Some(e) => return Err(e).context("BPF_MAP_LOOKUP_BATCH"),
                None => {
                    out.extend_from_slice(&keys[..n.min(CHUNK)]);
                    if n == 0 {
                        return Ok(out);
                    }
                    cursor = next;
                    first = false;
                }
            }
        }
    }

    /// Inserts `keys` with value 1.
    pub fn insert<const N: usize>(trie: &mut Trie<N>, keys: &[Key<[u8; N]>]) -> Result<()> {
        let values = vec![1u8; CHUNK.min(keys.len())];
        for chunk in keys.chunks(CHUNK) {
            let mut a = attr(
                trie.map(),
                chunk.as_ptr() as u64,
                values.as_ptr() as u64,
                chunk.len(),
            );
            match call(BPF_MAP_UPDATE_BATCH, &mut a) {
                (_, None) => {}
                (0, Some(e)) if unsupported(&e) => {
                    for key in chunk {
                        trie.insert(key, 1, 0)
                            .with_context(|| format!("adding {}", describe(key)))?;
                    }
                }
                (done, Some(e)) => {
                    let key = chunk.get(done).map(describe).unwrap_or_default();
                    return Err(e).with_context(|| format!("adding {key}"));
                }
            }
        }
        Ok(())
    }

    /// Deletes `keys`.
    pub fn delete<const N: usize>(trie: &mut Trie<N>, keys: &[Key<[u8; N]>]) -> Result<()> {
        for chunk in keys.chunks(CHUNK) {
            let mut a = attr(trie.map(), chunk.as_ptr() as u64, 0, chunk.len());
            match call(BPF_MAP_DELETE_BATCH, &mut a) {
                (_, None) => {}
                (0, Some(e)) if unsupported(&e) => {
                    for key in chunk {
                        trie.remove(key)
                            .with_context(|| format!("removing {}", describe(key)))?;
                    }
                }
                (done, Some(e)) => {
                    let key = chunk.get(done).map(describe).unwrap_or_default();
                    return Err(e).with_context(|| format!("removing {key}"));
                }
            }
        }
        Ok(())
    }

    fn describe<const N: usize>(key: &Key<[u8; N]>) -> String {
        format!("{:02x?}/{}", key.data(), key.prefix_len())
    }
}
