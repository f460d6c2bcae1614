//! The dialog table: one entry per Call-ID, capped, least recently active
//! evicted first; and what pinholes one dialog wants.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::sdp::{self, Rtcp, Sdp};
use crate::{Pinhole, Remote, Settings, Stats};

/// Which end of the call an SDP belongs to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Side {
    /// This host (sent in Outbound messages).
    Ours,
    /// The signalling peer (sent in Inbound messages).
    Peer,
}

#[derive(Default, Debug)]
pub(crate) struct Dialog {
    /// From-tag of the initial INVITE: every message of the dialog carries it.
    pub caller_tag: Option<String>,
    /// To-tag of the 2xx (or latest 1xx) to the initial INVITE.
    pub callee_tag: Option<String>,
    /// A 2xx to the initial INVITE was seen.
    pub confirmed: bool,
    pub ours: Option<Sdp>,
    pub peer: Option<Sdp>,
    /// An offer made inside the confirmed dialog, applied when answered so
    /// that a failed re-INVITE leaves the call as it was.
    pub pending: Option<(Side, Sdp)>,
    /// A re-INVITE without SDP is outstanding: its 2xx carries the offer.
    pub late_offer: bool,
    /// While set and no peer SDP is known, our offer's ports take any source.
    pub offer_deadline: Option<u64>,
    /// Set until the initial INVITE gets any response.
    pub invite_deadline: Option<u64>,
    /// What this dialog holds open now.
    pub pinholes: BTreeSet<Pinhole>,
    /// Taken over from a reader before this one (its pinholes were found
    /// pinned, its SDP is unknown): until this host's SDP is seen again,
    /// it wants what it holds.
    pub adopted: bool,
    /// Its place in the table's least-recently-active order.
    pub(crate) stamp: u64,
}

impl Dialog {
    /// Whether a message's tags fit this dialog (a different dialog, or a
    /// forged message, sharing the Call-ID does not). Once the dialog is
    /// confirmed, a request within it (`in_dialog`: BYE, UPDATE, ...) must
    /// carry both tags; only the initial INVITE's transaction (its
    /// retransmissions, CANCEL, a late 100) may lack the callee's.
    pub fn tags_fit(&self, from: Option<&str>, to: Option<&str>, in_dialog: bool) -> bool {
        let Some(caller) = self.caller_tag.as_deref() else {
            return true;
        };
        let other = if from == Some(caller) {
            to
        } else if to == Some(caller) {
            from
        } else {
            return false;
        };
        match (self.confirmed, self.callee_tag.as_deref(), other) {
            (true, Some(callee), Some(o)) => o == callee,
            (true, Some(_), None) => !in_dialog,
            _ => true,
        }
    }

    /// Takes one side's SDP. In a confirmed dialog an offer waits in
    /// `pending` for its answer, so that a refused re-INVITE changes nothing.
    pub fn take_sdp(&mut self, side: Side, sdp: Sdp, is_offer: bool) {
        if !self.confirmed {
            self.set(side, sdp);
            return;
        }
        match self.pending.take() {
            Some((offerer, offer)) if offerer != side => {
                // The answer: both sides change together.
                self.set(offerer, offer);
                self.set(side, sdp);
            }
            // A retransmitted or revised offer.
            Some(_) => self.pending = Some((side, sdp)),
            None if is_offer => self.pending = Some((side, sdp)),
            // An answer to an offer not seen, or a retransmitted answer.
            None => self.set(side, sdp),
        }
    }

    fn set(&mut self, side: Side, sdp: Sdp) {
        match side {
            Side::Ours => self.ours = Some(sdp),
            Side::Peer => {
                self.peer = Some(sdp);
                self.offer_deadline = None;
            }
        }
    }

    /// The pinholes this dialog wants now, counting what it refuses.
    pub fn wanted(&self, settings: &Settings, stats: &mut Stats) -> BTreeSet<Pinhole> {
        let mut out = BTreeSet::new();
        let Some(ours) = &self.ours else {
            if self.adopted {
                return self.pinholes.clone();
            }
            return out;
        };
        let mut add = |port: u16, remote: Remote, stats: &mut Stats| {
            if settings.rtp_ports.iter().any(|r| r.contains(&port)) {
                out.insert(Pinhole {
                    local_port: port,
                    remote,
                });
            } else {
                stats.refused_outside_range += 1;
            }
        };
        for (i, line) in ours.lines.iter().enumerate() {
            // Our port 0, our hold address or inactive: we take nothing there.
            if line.port == 0 || line.inactive || is_hold(line.addr) {
                continue;
            }
            let (remote, peer_mux) = match &self.peer {
                None if self.offer_deadline.is_some() => (Remote::Any, false),
                None => continue,
                Some(peer) => {
                    let Some(theirs) = peer.lines.get(i) else {
                        continue;
                    };
                    if theirs.port == 0 || theirs.inactive {
                        continue;
                    }
                    let Some(ip) = sdp::usable(theirs.addr) else {
                        stats.refused_unusable_address += 1;
                        continue;
                    };
                    (Remote::Addr(ip), theirs.rtcp == Rtcp::Mux)
                }
            };
            add(line.port, remote, stats);
            let rtcp = match line.rtcp {
                _ if peer_mux => None,
                Rtcp::Mux => None,
                Rtcp::Port(p) => Some(p),
                Rtcp::Next => line.port.checked_add(1),
            };
            if let Some(p) = rtcp.filter(|&p| p != line.port && p != 0) {
                add(p, remote, stats);
            }
        }
        out
    }
}

fn is_hold(addr: sdp::Addr) -> bool {
    matches!(addr, sdp::Addr::Ip(ip) if ip.is_unspecified())
}

/// Dialogs by Call-ID, with an LRU order for eviction.
pub(crate) struct Dialogs {
    max: usize,
    map: HashMap<String, Dialog>,
    lru: BTreeMap<u64, String>,
    next_stamp: u64,
}

impl Dialogs {
    pub fn new(max: usize) -> Self {
        Dialogs {
            max: max.max(1),
            map: HashMap::new(),
            lru: BTreeMap::new(),
            next_stamp: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// The dialog, marked as just active.
    pub fn touch(&mut self, call_id: &str) -> Option<&mut Dialog> {
        let d = self.map.get_mut(call_id)?;
        self.lru.remove(&d.stamp);
        d.stamp = self.next_stamp;
        self.next_stamp += 1;
        self.lru.insert(d.stamp, call_id.to_string());
        Some(d)
    }

    /// The least recently active dialog, when the table is full.
    pub fn evict_if_full(&mut self) -> Option<(String, Dialog)> {
        if self.map.len() < self.max {
            return None;
        }
        let (_, call_id) = self.lru.pop_first()?;
        let d = self.map.remove(&call_id)?;
        Some((call_id, d))
    }

    /// Inserts a new dialog (the caller made room first).
    pub fn insert(&mut self, call_id: &str, mut d: Dialog) -> &mut Dialog {
        d.stamp = self.next_stamp;
        self.next_stamp += 1;
        self.lru.insert(d.stamp, call_id.to_string());
        self.map.entry(call_id.to_string()).or_insert(d)
    }

    pub fn remove(&mut self, call_id: &str) -> Option<Dialog> {
        let d = self.map.remove(call_id)?;
        self.lru.remove(&d.stamp);
        Some(d)
    }

    pub fn get_mut(&mut self, call_id: &str) -> Option<&mut Dialog> {
        self.map.get_mut(call_id)
    }

    /// Call-IDs with a deadline at or before `now`, and whether it is the
    /// unanswered INVITE's (forget) or only the offer window's (narrow).
    pub fn due(&self, now: u64) -> Vec<(String, bool)> {
        self.map
            .iter()
            .filter_map(|(id, d)| {
                if d.invite_deadline.is_some_and(|t| t <= now) {
                    Some((id.clone(), true))
                } else if d.offer_deadline.is_some_and(|t| t <= now) {
                    Some((id.clone(), false))
                } else {
                    None
                }
            })
            .collect()
    }
}
