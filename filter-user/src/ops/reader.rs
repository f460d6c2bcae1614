//! The call reader in `sipwall run` (docs/policy.md, "Media by call"): drains
//! the copies of signalling the programs make in calls mode, follows the
//! calls (`sipwall_calls`) and opens and closes their pinholes; writes the
//! heartbeat that tells the kernel a reader runs.
use std::{collections::BTreeMap, path::Path, sync::Arc, time::Duration};

use anyhow::{Context as _, Result};
use filter_kernel::{
    maps::monotonic_ns,
    media::{Copied, CopyRing, MediaMaps},
};
use filter_policy::ruleset::Ruleset;
use sipwall_calls::{Action, Direction, Pinhole, Remote, Segment, Settings, Tracker, Transport};
use tokio::{io::unix::AsyncFd, sync::watch};

use super::{
    frames::{transported, transported_cut},
    media_metrics::MediaMetrics,
};

/// Follows calls and keeps their pinholes in the kernel.
pub struct CallReader {
    tracker: Tracker,
    maps: MediaMaps,
    idle_ns: u64,
    /// Where `run` shows the calls and install times (`None`: a replay).
    metrics: Option<Arc<MediaMetrics>>,
    /// Pinholes the kernel refused (both ways of a port taken).
    pub refused: u64,
}

/// The tracker's settings for `ruleset`: its media ports and allowlist.
fn settings(ruleset: &Ruleset) -> Settings {
    Settings {
        rtp_ports: vec![ruleset.rtp.0..=ruleset.rtp.1],
        allowlist: ruleset.allow.clone(),
        ..Settings::default()
    }
}

fn idle_ns(ruleset: &Ruleset) -> u64 {
    ruleset.media.call_idle_secs * 1_000_000_000
}

impl CallReader {
    /// A reader writing to `maps`, taking back the live calls a reader
    /// before it left pinned (their Call-IDs are pinned beside them).
    pub fn new(
        maps: MediaMaps,
        ruleset: &Ruleset,
        metrics: Option<Arc<MediaMetrics>>,
    ) -> Result<CallReader> {
        let mut reader = CallReader {
            tracker: Tracker::new(settings(ruleset)),
            maps,
            idle_ns: idle_ns(ruleset),
            metrics,
            refused: 0,
        };
        reader.adopt()?;
        Ok(reader)
    }

    /// Takes over the live pinholes found in the map, by call.
    fn adopt(&mut self) -> Result<usize> {
        let mut calls: BTreeMap<String, Vec<Pinhole>> = BTreeMap::new();
        for entry in self.maps.list(self.idle_ns)? {
            let (Some(call_id), true) = (entry.call_id, entry.live) else {
                continue;
            };
            calls.entry(call_id).or_default().push(Pinhole {
                local_port: entry.port,
                remote: entry.remote.map_or(Remote::Any, Remote::Addr),
            });
        }
        for (call_id, pinholes) in &calls {
            let actions = self.tracker.adopt(call_id, pinholes);
            self.apply(actions);
        }
        Ok(calls.len())
    }

    /// A new policy (a reload): its media ports, allowlist and idle time.
    pub fn set_ruleset(&mut self, ruleset: &Ruleset) {
        self.tracker.set_settings(settings(ruleset));
        self.idle_ns = idle_ns(ruleset);
    }

    /// One copy: fed to the tracker, its actions applied.
    pub fn take(&mut self, copy: &Copied) {
        // A copy cut at the ring's limit holds only the start of its
        // packet: over TCP the start is read and the rest taken as lost
        // (the stream resynchronises after it); a cut datagram is counted
        // as a parse error, not read.
        let missing = (copy.len as usize).saturating_sub(copy.data.len());
        let t = if missing > 0 {
            transported_cut(&copy.data, copy.l3)
        } else {
            transported(&copy.data, copy.l3)
        };
        let Some(t) = t else {
            return;
        };
        let segment = Segment {
            time_ns: copy.ts_ns,
            direction: if copy.outbound {
                Direction::Outbound
            } else {
                Direction::Inbound
            },
            transport: if t.tcp {
                Transport::Tcp
            } else {
                Transport::Udp
            },
            src: t.src,
            dst: t.dst,
            tcp_seq: t.tcp_seq,
            payload: t.payload,
        };
        let actions = self.tracker.feed_cut(&segment, missing);
        self.apply(actions);
    }

    /// Once a second: the heartbeat, the offer windows and abandoned
    /// INVITEs the tracker lets go, and the calls whose media went idle.
    pub fn tick(&mut self) -> Result<()> {
        self.tick_at(monotonic_ns())
    }

    /// [`CallReader::tick`] with the tracker's clock at `now_ns` (a
    /// replay's capture time). The heartbeat and the idle sweep stay on
    /// the kernel's clock: the kernel reads them by its own.
    pub fn tick_at(&mut self, now_ns: u64) -> Result<()> {
        self.maps.heartbeat()?;
        let actions = self.tracker.tick(now_ns);
        self.apply(actions);
        for call_id in self.maps.sweep(self.idle_ns)? {
            let actions = self.tracker.close_call(&call_id);
            self.apply(actions);
        }
        Ok(())
    }

    fn apply(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Open {
                    pinhole,
                    call_id,
                    sdp_time_ns,
                } => {
                    let remote = remote_of(pinhole.remote);
                    match self.maps.open_pinhole(
                        pinhole.local_port,
                        remote,
                        Some(&call_id),
                        self.idle_ns,
                    ) {
                        Ok(()) => {
                            if let Some(m) = &self.metrics {
                                m.observe_install_since(sdp_time_ns);
                            }
                        }
                        Err(e) => {
                            self.refused += 1;
                            eprintln!("sipwall: call {call_id:?}: pinhole not opened: {e:#}");
                        }
                    }
                }
                Action::Close { pinhole, .. } => {
                    self.maps
                        .close_pinhole(pinhole.local_port, remote_of(pinhole.remote));
                }
            }
        }
        if let Some(m) = &self.metrics {
            m.set_calls_active(self.tracker.calls_active() as u64);
        }
    }

    /// Writes the heartbeat alone (a replay between its ticks).
    pub fn heartbeat(&mut self) -> Result<()> {
        self.maps.heartbeat()
    }

    /// Calls followed now.
    pub fn calls_active(&self) -> usize {
        self.tracker.calls_active()
    }

    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }
}

fn remote_of(remote: Remote) -> Option<std::net::IpAddr> {
    match remote {
        Remote::Any => None,
        Remote::Addr(a) => Some(a),
    }
}

/// The reader task of `sipwall run`: drains the copies of the attachment
/// pinned in `dir` as they come, ticks once a second, and follows the
/// policy `rules` carries. Returns only on an error.
pub async fn serve(
    dir: &Path,
    mut rules: watch::Receiver<Ruleset>,
    metrics: Arc<MediaMetrics>,
) -> Result<()> {
    let ring = CopyRing::open(dir)?;
    let maps = MediaMaps::open(dir)?;
    let mut reader = CallReader::new(maps, &rules.borrow(), Some(metrics))?;
    reader.tick()?;
    // SAFETY: the AsyncFd owns the ring, so the fd it watches stays open
    // for as long as it is registered.
    let mut ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("watching the signalling copies: {e}"))?;
    let mut second = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard.context("waiting for signalling copies")?;
                while let Some(copy) = guard.get_inner_mut().next_copy() {
                    reader.take(&copy);
                }
                guard.clear_ready();
            }
            _ = second.tick() => {
                reader.tick()?;
            }
            changed = rules.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                let ruleset = rules.borrow().clone();
                reader.set_ruleset(&ruleset);
            }
        }
    }
}
