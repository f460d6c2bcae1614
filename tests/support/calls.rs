//! Calls mode's state (docs/policy.md, "Media by call") as the reference
//! models take it, and as the tests write it into a loaded program.
//!
//! The models get the pinholes, the reader's heartbeat and the time as
//! plain inputs ([`Calls`]); what counts as live and as "reader down" is
//! written here from the contract, each model placing the row itself.
//! [`KernelCalls`] puts the same state into a program's maps: live
//! pinholes through `MediaMaps` (as `sipwall run` opens them), pinholes
//! last seen long ago or ahead of the clock, and stale heartbeats, by
//! writing the slots directly (the kernel's clock cannot be moved).
use std::{collections::BTreeSet, net::IpAddr};

use anyhow::{Context as _, Result};
use aya::maps::{Array, Map, MapData};
use filter_common::media::{
    maps as names, pinhole_slot, MediaState, Pinhole as RawPinhole, PINHOLE_ADDR, PINHOLE_ANY,
    PINHOLE_EMPTY, PINHOLE_WAYS,
};
use filter_kernel::{
    maps::monotonic_ns,
    media::{remote_words, MediaMaps},
    runner::Runner,
};
use filter_policy::ruleset::Ruleset;

/// No heartbeat for longer than this: the reader is down ("Unattended").
/// Written out rather than taken from filter-common.
pub const READER_TIMEOUT_NS: i128 = 5_000_000_000;

const SEC: i64 = 1_000_000_000;

/// One pinhole: media from `remote` (`None`: any source) to the local
/// `port`, live while the last packet (or the opening) is less than
/// `call_idle` ago.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pinhole {
    pub port: u16,
    pub remote: Option<IpAddr>,
    /// CLOCK_MONOTONIC ns.
    pub last_seen_ns: u64,
}

/// Everything calls mode decides by besides the packet and the ruleset.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Calls {
    pub pinholes: Vec<Pinhole>,
    /// The reader's last heartbeat (CLOCK_MONOTONIC ns; 0: never).
    pub heartbeat_ns: u64,
    /// What the clock reads when the packet arrives.
    pub now_ns: u64,
}

impl Calls {
    /// No pinhole and no reader ever, at `now_ns` (a program nobody
    /// opened anything in).
    pub fn none_at(now_ns: u64) -> Calls {
        Calls {
            pinholes: Vec::new(),
            heartbeat_ns: 0,
            now_ns,
        }
    }

    /// No heartbeat for more than 5 s. Signed: a heartbeat written a
    /// little ahead of the clock the packet reads is a fresh one.
    pub fn reader_down(&self) -> bool {
        i128::from(self.now_ns) - i128::from(self.heartbeat_ns) > READER_TIMEOUT_NS
    }

    /// Whether `p` is live: last seen (or opened) less than `idle_ns` ago.
    pub fn live(&self, p: &Pinhole, idle_ns: u64) -> bool {
        i128::from(self.now_ns) - i128::from(p.last_seen_ns) < i128::from(idle_ns)
    }

    /// Whether a live pinhole of the local `port` takes `remote`: one open
    /// to that address, or one open to any source.
    pub fn pinhole_takes(&self, port: u16, remote: IpAddr, idle_ns: u64) -> bool {
        self.pinholes.iter().any(|p| {
            p.port == port && p.remote.is_none_or(|r| r == remote) && self.live(p, idle_ns)
        })
    }
}

/// How a planned pinhole is put into the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Age {
    /// Opened now through `MediaMaps::open_pinhole`.
    Opened,
    /// Written directly, last seen this many seconds from now (negative:
    /// in the past).
    Seen(i64),
}

/// A pinhole the test wants in the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Planned {
    pub port: u16,
    pub remote: Option<IpAddr>,
    pub age: Age,
}

/// The reader's heartbeat the test wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reader {
    /// Written now.
    Fresh,
    /// 10 s ago: down.
    Stale,
    /// Never written (0): down.
    Never,
}

/// Calls mode's pinholes for `rules`: live ones (opened now, last seen
/// well within `call_idle`, last seen ahead of the clock), expired ones,
/// both kinds (an address, any source), both families, two on one port,
/// and one outside `rtp_ports` (never a pinhole by the contract). Remote
/// addresses lie outside every probed network, so that no IPv4-mapped
/// IPv6 source is drawn for them (docs/policy.md does not say whether
/// `::ffff:a.b.c.d` matches a pinhole of `a.b.c.d`).
pub fn pinhole_plan(rules: &Ruleset) -> Vec<Planned> {
    let idle = rules.media.call_idle_secs as i64;
    let (lo, hi) = rules.rtp;
    let mid = lo + (hi - lo) / 2;
    let at = |port: u16, remote: Option<&str>, age| Planned {
        port,
        remote: remote.map(|r| r.parse().expect("an address")),
        age,
    };
    let mut plan = vec![
        at(lo, Some("100.66.7.1"), Age::Opened),
        at(lo, Some("2001:db8:77::1"), Age::Seen(-idle - 5)),
        at(lo + 2, None, Age::Opened),
        at(lo + 4, None, Age::Seen(-idle - 5)),
        at(mid, Some("100.66.7.2"), Age::Seen(15 - idle)),
        at(mid, Some("100.66.7.3"), Age::Seen(2)),
        at(hi, Some("2001:db8:77::2"), Age::Opened),
        at(hi - 1, Some("100.66.7.4"), Age::Seen(-idle - 1000)),
        at(hi.wrapping_add(1), Some("100.66.7.5"), Age::Seen(0)),
    ];
    if rules.rtp_limit.is_some() {
        // A hot source's own pinhole, so that media through one runs
        // into the media limit.
        plan.push(at(mid + 2, Some("203.0.113.5"), Age::Opened));
    }
    plan
}

/// Calls mode's maps of a loaded program, as the tests write them.
pub struct KernelCalls {
    media: MediaMaps,
    raw: Array<MapData, RawPinhole>,
    state: Array<MapData, MediaState>,
    /// Ports whose ways this has filled, emptied by the next install.
    used: BTreeSet<u16>,
}

impl KernelCalls {
    /// Takes `runner`'s media maps (once per runner).
    pub fn new(runner: &mut Runner) -> Result<KernelCalls> {
        let raw = Array::try_from(Map::Array(runner.array_handle(names::PINHOLES)?))
            .context("PINHOLES as an array of pinholes")?;
        let state = Array::try_from(Map::Array(runner.array_handle(names::MEDIA_STATE)?))
            .context("MEDIA_STATE as an array")?;
        let media = runner.media_maps()?;
        Ok(KernelCalls {
            media,
            raw,
            state,
            used: BTreeSet::new(),
        })
    }

    /// Empties every slot filled before, then writes `plan` (at most
    /// two pinholes a port) and the heartbeat; returns the state as the
    /// models take it, its `now_ns` being when it was written (the
    /// caller sets it for each packet).
    pub fn install(&mut self, plan: &[Planned], reader: Reader, idle_ns: u64) -> Result<Calls> {
        for port in std::mem::take(&mut self.used) {
            for way in 0..PINHOLE_WAYS {
                self.raw
                    .set(pinhole_slot(port, way), RawPinhole::default(), 0)
                    .context("emptying a pinhole slot")?;
            }
        }
        let now = monotonic_ns();
        // Through MediaMaps first: it takes the first free way, which a
        // pinhole written directly could otherwise be.
        for p in plan.iter().filter(|p| p.age == Age::Opened) {
            self.used.insert(p.port);
            self.media
                .open_pinhole(p.port, p.remote, None, idle_ns)
                .with_context(|| format!("opening {p:?}"))?;
        }
        for p in plan {
            let Age::Seen(secs) = p.age else { continue };
            self.used.insert(p.port);
            let way = (0..PINHOLE_WAYS)
                .find(|&w| self.slot(p.port, w).is_ok_and(|s| s.kind == PINHOLE_EMPTY))
                .with_context(|| format!("port {} has no free way for {p:?}", p.port))?;
            let (kind, remote) = match p.remote {
                Some(addr) => (PINHOLE_ADDR, remote_words(addr)),
                None => (PINHOLE_ANY, [0; 2]),
            };
            let raw = RawPinhole {
                remote,
                last_seen_ns: now.saturating_add_signed(secs * SEC),
                opened_ns: now,
                kind,
                call: 0,
            };
            self.raw
                .set(pinhole_slot(p.port, way), raw, 0)
                .context("writing a pinhole slot")?;
        }
        // The model's pinholes as the slots hold them (MediaMaps reads
        // the clock itself).
        let mut pinholes = Vec::new();
        for &port in &self.used {
            for way in 0..PINHOLE_WAYS {
                let s = self.slot(port, way)?;
                if s.kind == PINHOLE_EMPTY {
                    continue;
                }
                pinholes.push(Pinhole {
                    port,
                    remote: (s.kind == PINHOLE_ADDR).then(|| words_addr(s.remote)),
                    last_seen_ns: s.last_seen_ns,
                });
            }
        }
        match reader {
            Reader::Fresh => self.media.heartbeat()?,
            Reader::Never => self.media.clear_heartbeat()?,
            Reader::Stale => self
                .state
                .set(
                    0,
                    MediaState {
                        heartbeat_ns: now.saturating_sub(10 * SEC as u64),
                        reader_pid: 1,
                        reserved: 0,
                    },
                    0,
                )
                .context("writing a stale heartbeat")?,
        }
        let heartbeat_ns = self.media.reader()?.heartbeat_ns;
        Ok(Calls {
            pinholes,
            heartbeat_ns,
            now_ns: now,
        })
    }

    /// The slot of `port`'s `way` as the kernel holds it.
    pub fn slot(&self, port: u16, way: u32) -> Result<RawPinhole> {
        self.raw
            .get(&pinhole_slot(port, way), 0)
            .context("reading a pinhole slot")
    }
}

/// The address a slot's remote words hold (IPv4 as `::ffff:a.b.c.d`).
fn words_addr(words: [u64; 2]) -> IpAddr {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&words[0].to_ne_bytes());
    bytes[8..].copy_from_slice(&words[1].to_ne_bytes());
    let v6 = std::net::Ipv6Addr::from(bytes);
    v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
}

#[cfg(test)]
mod tests {
    //! The liveness and heartbeat rules at their edges, away from the
    //! kernel.
    use super::*;

    const S: u64 = 1_000_000_000;

    fn at(now_s: u64, heartbeat_s: u64, pinholes: Vec<Pinhole>) -> Calls {
        Calls {
            pinholes,
            heartbeat_ns: heartbeat_s * S,
            now_ns: now_s * S,
        }
    }

    #[test]
    fn live_is_less_than_call_idle_ago_or_ahead() {
        let remote: IpAddr = "198.51.100.20".parse().unwrap();
        let p = |last_s: u64| Pinhole {
            port: 10000,
            remote: Some(remote),
            last_seen_ns: last_s * S,
        };
        let c = at(100, 100, vec![]);
        assert!(c.live(&p(41), 60 * S));
        assert!(!c.live(&p(40), 60 * S), "exactly call_idle ago: closed");
        assert!(c.live(&p(105), 60 * S), "ahead of the clock: live");
        let c = at(100, 100, vec![p(90)]);
        assert!(c.pinhole_takes(10000, remote, 60 * S));
        assert!(!c.pinhole_takes(10001, remote, 60 * S), "another port");
        let other: IpAddr = "198.51.100.21".parse().unwrap();
        assert!(!c.pinhole_takes(10000, other, 60 * S), "another remote");
        assert!(
            !c.pinhole_takes(10000, remote, 5 * S),
            "idle past call_idle"
        );
        let any = Pinhole {
            remote: None,
            ..p(90)
        };
        assert!(at(100, 100, vec![any]).pinhole_takes(10000, other, 60 * S));
    }

    #[test]
    fn the_reader_is_down_after_5_s_without_a_heartbeat() {
        assert!(!at(100, 95, vec![]).reader_down(), "5 s exactly: still up");
        assert!(at(100, 94, vec![]).reader_down());
        assert!(at(100, 0, vec![]).reader_down(), "never");
        assert!(!at(100, 101, vec![]).reader_down(), "ahead of the clock");
    }
}
