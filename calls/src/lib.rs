//! sipwall's call reader: follows SIP dialogs in copies of signalling packets
//! and says which UDP media pinholes — (local port, remote address) pairs —
//! the kernel side should open and close.
//!
//! Pure: no I/O, no threads, no clock (every time is passed in), and every
//! table is capped, so hostile signalling costs bounded memory.
//!
//! Parsers (none written here; only TCP framing is done by hand):
//! - SIP: [`ezk_sip_types`]. Maintained (part of the ezk SIP/RTP stack) and
//!   thorough where trunks need it: IPv6 references in URIs, compact header
//!   names (`i:`, `f:`, `t:`, `l:`, `c:`), folded lines, typed From/To tags
//!   and CSeq. `rsip` was tried first; version 0.4 rejects any message whose
//!   Request-URI holds an IPv6 address, so SIP over IPv6 could not be followed.
//! - SDP: [`sdp_types`]. Small (bstr, thiserror, hex, fallible-iterator), and
//!   lenient in the ways real trunks need: any line order after `v=`, missing
//!   `o=`/`s=`/`t=`, unknown attributes kept as strings, and addresses left as
//!   text until asked. `webrtc-sdp` was the alternative; it targets WebRTC's
//!   JSEP, pulls in `url`, and is stricter about what it accepts.

mod dialog;
mod holes;
mod sdp;
mod sip;
mod tcp;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;

use dialog::{Dialog, Dialogs, Side};
use holes::Holes;
use sip::{Kind, Method, Msg};
use tcp::Streams;

/// What the tracker is allowed to do.
#[derive(Clone, Debug)]
pub struct Settings {
    /// This host's media ports; no pinhole is ever opened outside them.
    pub rtp_ports: Vec<RangeInclusive<u16>>,
    /// Signalling peers that are believed; SIP from or to anyone else is ignored.
    pub allowlist: Vec<ipnet::IpNet>,
    /// How long an outbound offer's ports stay open to any source.
    pub offer_window_ns: u64,
    /// How long an INVITE without any response is remembered.
    pub invite_timeout_ns: u64,
    /// Most dialogs kept; the least recently active is evicted.
    pub max_dialogs: usize,
    /// Most TCP reassembly buffers kept; the least recently active is evicted.
    pub max_streams: usize,
    /// A message bigger than this is discarded.
    pub max_message_bytes: usize,
}

const SECOND: u64 = 1_000_000_000;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            rtp_ports: vec![10000..=20000],
            allowlist: Vec::new(),
            offer_window_ns: 32 * SECOND,
            invite_timeout_ns: 32 * SECOND,
            max_dialogs: 65536,
            max_streams: 4096,
            max_message_bytes: 65536,
        }
    }
}

/// Which way a packet went.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Direction {
    /// Peer to this host.
    Inbound,
    /// This host to peer.
    Outbound,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Transport {
    Udp,
    Tcp,
}

/// A copy of one signalling packet.
#[derive(Clone, Debug)]
pub struct Segment<'a> {
    /// Kernel monotonic timestamp of the packet.
    pub time_ns: u64,
    pub direction: Direction,
    pub transport: Transport,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// TCP sequence number of `payload[0]`; `None` for UDP.
    pub tcp_seq: Option<u32>,
    /// L4 payload (UDP datagram or TCP segment payload).
    pub payload: &'a [u8],
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum Remote {
    Any,
    Addr(IpAddr),
}

/// UDP media to `local_port` from `remote` is let in.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct Pinhole {
    pub local_port: u16,
    pub remote: Remote,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Action {
    /// `sdp_time_ns` is the time of the segment that completed the SDP.
    Open {
        pinhole: Pinhole,
        call_id: String,
        sdp_time_ns: u64,
    },
    Close {
        pinhole: Pinhole,
        call_id: String,
    },
}

/// Plain counters since the tracker was made.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    /// Whole SIP messages taken from believed peers.
    pub messages: u64,
    /// Messages (or their SDP) that did not parse, and bad TCP framing.
    pub parse_errors: u64,
    /// Messages bigger than `max_message_bytes`, discarded.
    pub oversized: u64,
    pub dialogs_evicted: u64,
    pub streams_evicted: u64,
    /// Pinholes not opened because the local port is outside `rtp_ports`.
    pub refused_outside_range: u64,
    /// Segments ignored because the peer is not in `allowlist`.
    pub refused_not_allowlisted: u64,
    /// Media lines not opened because the peer's address is hold, multicast,
    /// loopback or not an IP literal.
    pub refused_unusable_address: u64,
    /// Messages whose tags do not fit the dialog of their Call-ID.
    pub tag_mismatches: u64,
}

/// Follows dialogs and turns them into pinhole actions.
pub struct Tracker {
    settings: Settings,
    dialogs: Dialogs,
    holes: Holes,
    streams: Streams,
    stats: Stats,
}

impl Tracker {
    pub fn new(settings: Settings) -> Tracker {
        Tracker {
            dialogs: Dialogs::new(settings.max_dialogs),
            streams: Streams::new(settings.max_streams, settings.max_message_bytes),
            holes: Holes::default(),
            stats: Stats::default(),
            settings,
        }
    }

    /// Takes one signalling packet whose copy was cut short: `missing`
    /// more bytes of its payload went on the wire. Over TCP they are taken
    /// as lost at once, the stream resynchronising after them, rather than
    /// waited for as a gap; a cut UDP datagram is not read (a parse error).
    pub fn feed_cut(&mut self, seg: &Segment, missing: usize) -> Vec<Action> {
        if missing == 0 {
            return self.feed(seg);
        }
        let (Transport::Tcp, Some(seq)) = (seg.transport, seg.tcp_seq) else {
            if self.believed(seg) {
                self.stats.parse_errors += 1;
            }
            return Vec::new();
        };
        let mut actions = self.feed(seg);
        if self.believed_quietly(seg) {
            let end = seq.wrapping_add(seg.payload.len().saturating_add(missing) as u32);
            let key = (seg.src, seg.dst, seg.direction);
            let framed = self.streams.lost_until(key, end, seg.time_ns);
            self.framed(seg, framed, &mut actions);
        }
        actions
    }

    /// Whether the segment's peer is allowlisted; counts it if not.
    fn believed(&mut self, seg: &Segment) -> bool {
        let ok = self.believed_quietly(seg);
        if !ok {
            self.stats.refused_not_allowlisted += 1;
        }
        ok
    }

    fn believed_quietly(&self, seg: &Segment) -> bool {
        let peer = match seg.direction {
            Direction::Inbound => seg.src.ip(),
            Direction::Outbound => seg.dst.ip(),
        };
        self.settings.allowlist.iter().any(|n| n.contains(&peer))
    }

    /// Takes one signalling packet; never panics, whatever the bytes.
    pub fn feed(&mut self, seg: &Segment) -> Vec<Action> {
        if !self.believed(seg) {
            return Vec::new();
        }
        let mut actions = Vec::new();
        match (seg.transport, seg.tcp_seq) {
            (Transport::Tcp, Some(seq)) => {
                let key = (seg.src, seg.dst, seg.direction);
                let framed = self.streams.feed(key, seq, seg.payload, seg.time_ns);
                self.stats.streams_evicted = self.streams.evicted;
                self.framed(seg, framed, &mut actions);
            }
            // UDP, or TCP without a sequence number (taken as one datagram).
            _ => {
                // RFC 3261 7.5: CRLFs before the start line are ignored.
                let lead = seg
                    .payload
                    .iter()
                    .take_while(|&&b| b == b'\r' || b == b'\n')
                    .count();
                let message = &seg.payload[lead..];
                if seg.payload.len() > self.settings.max_message_bytes {
                    self.stats.oversized += 1;
                } else if !message.is_empty() {
                    // (Empty: a CRLF keep-alive, RFC 5626, or nothing.)
                    self.message(seg, message, &mut actions);
                }
            }
        }
        actions
    }

    /// Expires offer windows and INVITEs that never got a response, and
    /// gives up TCP gaps that waited too long for their bytes.
    pub fn tick(&mut self, now_ns: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        for ((src, dst, direction), framed) in self.streams.expire(now_ns) {
            let seg = Segment {
                time_ns: now_ns,
                direction,
                transport: Transport::Tcp,
                src,
                dst,
                tcp_seq: None,
                payload: &[],
            };
            self.framed(&seg, framed, &mut actions);
        }
        for (call_id, forget) in self.dialogs.due(now_ns) {
            if forget {
                self.drop_dialog(&call_id, &mut actions);
            } else if let Some(d) = self.dialogs.get_mut(&call_id) {
                d.offer_deadline = None;
                self.sync(&call_id, now_ns, &mut actions);
            }
        }
        actions
    }

    /// The caller saw the call's media idle: forget the call.
    pub fn close_call(&mut self, call_id: &str) -> Vec<Action> {
        let mut actions = Vec::new();
        self.drop_dialog(call_id, &mut actions);
        actions
    }

    /// New settings (a reload): media ports, allowlist, limits. Open
    /// pinholes stay until their calls next change.
    pub fn set_settings(&mut self, settings: Settings) {
        self.settings = settings;
    }

    /// Takes over a call whose pinholes a reader before this one opened
    /// (found pinned, with its Call-ID): its BYE, CANCEL or idle media
    /// closes them, and a re-INVITE replaces them, as for any call. Its
    /// tags are unknown, so any message of its Call-ID is taken as its.
    /// Returns the closes of a call evicted to make room: they must reach
    /// the kernel like any other, or its pinholes outlive it.
    #[must_use]
    pub fn adopt(&mut self, call_id: &str, pinholes: &[Pinhole]) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.dialogs.get_mut(call_id).is_some() {
            return actions;
        }
        if let Some((old_id, old)) = self.dialogs.evict_if_full() {
            self.stats.dialogs_evicted += 1;
            self.release_all(&old_id, old, &mut actions);
        }
        // Already open in the kernel: held, without an action.
        for &p in pinholes {
            self.holes.acquire(p, call_id);
        }
        let d = Dialog {
            confirmed: true,
            adopted: true,
            pinholes: pinholes.iter().copied().collect(),
            ..Dialog::default()
        };
        self.dialogs.insert(call_id, d);
        actions
    }

    /// What should be open now, each pinhole once with a call that wants it.
    pub fn open_pinholes(&self) -> Vec<(Pinhole, String)> {
        self.holes.list()
    }

    pub fn calls_active(&self) -> usize {
        self.dialogs.len()
    }

    /// TCP reassembly buffers held now.
    pub fn streams_active(&self) -> usize {
        self.streams.len()
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The messages (and the refusals) TCP framing gave for `seg`'s stream.
    fn framed(&mut self, seg: &Segment, framed: tcp::Framed, actions: &mut Vec<Action>) {
        self.stats.oversized += framed.oversized;
        self.stats.parse_errors += framed.parse_errors;
        for m in framed.messages {
            self.message(seg, &m, actions);
        }
    }

    /// One whole SIP message from a believed peer.
    fn message(&mut self, seg: &Segment, bytes: &[u8], actions: &mut Vec<Action>) {
        self.stats.messages += 1;
        let Some(msg) = sip::parse(bytes) else {
            self.stats.parse_errors += 1;
            return;
        };
        if msg.bad_sdp {
            self.stats.parse_errors += 1;
        }
        let side = match seg.direction {
            Direction::Inbound => Side::Peer,
            Direction::Outbound => Side::Ours,
        };
        let now = seg.time_ns;
        let id = msg.call_id.clone();

        if msg.kind == Kind::Request(Method::Invite)
            && msg.to_tag.is_none()
            && self.dialogs.get_mut(&id).is_none()
        {
            self.new_dialog(&msg, now, actions);
        }
        let Some(d) = self.dialogs.touch(&id) else {
            // Not a dialog we follow (OPTIONS, REGISTER, a stray BYE...).
            return;
        };
        let in_dialog =
            matches!(msg.kind, Kind::Request(m) if m != Method::Invite && m != Method::Cancel);
        if !d.tags_fit(msg.from_tag.as_deref(), msg.to_tag.as_deref(), in_dialog) {
            self.stats.tag_mismatches += 1;
            return;
        }
        match msg.kind {
            Kind::Request(Method::Bye) => return self.drop_dialog(&id, actions),
            Kind::Request(Method::Cancel) => {
                // CANCEL ends a call not yet answered; a CANCELled re-INVITE
                // leaves the call as it was.
                if !d.confirmed {
                    return self.drop_dialog(&id, actions);
                }
                d.pending = None;
            }
            Kind::Request(method) => {
                let reinvite = method == Method::Invite && d.confirmed;
                match msg.sdp {
                    Some(sdp) => {
                        if method == Method::Invite
                            && !d.confirmed
                            && side == Side::Ours
                            && d.peer.is_none()
                        {
                            // Our offer: open to anyone until the answer says who.
                            d.offer_deadline
                                .get_or_insert(now.saturating_add(self.settings.offer_window_ns));
                        }
                        let is_offer = matches!(method, Method::Invite | Method::Update);
                        d.take_sdp(side, sdp, is_offer);
                    }
                    None if reinvite => d.late_offer = true,
                    None => {}
                }
            }
            Kind::Response(code) => {
                d.invite_deadline = None;
                let to_invite = msg.cseq_method == Method::Invite;
                if code >= 300 {
                    if to_invite && !d.confirmed {
                        return self.drop_dialog(&id, actions);
                    }
                    // A refused re-INVITE or UPDATE: its offer never applied.
                    if matches!(msg.cseq_method, Method::Invite | Method::Update) {
                        d.pending = None;
                        d.late_offer = false;
                    }
                    return;
                }
                if to_invite && !d.confirmed && code > 100 {
                    // Early dialogs may fork; the latest response names it.
                    if let Some(t) = &msg.to_tag {
                        d.callee_tag = Some(t.clone());
                    }
                }
                if let Some(sdp) = msg.sdp {
                    // The 2xx to a re-INVITE that carried no SDP is an offer.
                    let is_offer = to_invite && code >= 200 && d.late_offer;
                    d.take_sdp(side, sdp, is_offer);
                }
                if to_invite && code >= 200 {
                    d.late_offer = false;
                }
                if to_invite && (200..300).contains(&code) {
                    d.confirmed = true;
                }
            }
        }
        self.sync(&id, now, actions);
    }

    /// Makes room for and adds the dialog of an initial INVITE.
    fn new_dialog(&mut self, msg: &Msg, now: u64, actions: &mut Vec<Action>) {
        if let Some((old_id, old)) = self.dialogs.evict_if_full() {
            self.stats.dialogs_evicted += 1;
            self.release_all(&old_id, old, actions);
        }
        let d = Dialog {
            caller_tag: msg.from_tag.clone(),
            invite_deadline: Some(now.saturating_add(self.settings.invite_timeout_ns)),
            ..Dialog::default()
        };
        self.dialogs.insert(&msg.call_id, d);
    }

    /// Brings the dialog's pinholes to what it wants now.
    fn sync(&mut self, call_id: &str, now: u64, actions: &mut Vec<Action>) {
        let Some(d) = self.dialogs.get_mut(call_id) else {
            return;
        };
        let wanted = d.wanted(&self.settings, &mut self.stats);
        if wanted == d.pinholes {
            return;
        }
        let old: BTreeSet<Pinhole> = std::mem::replace(&mut d.pinholes, wanted.clone());
        for &p in old.difference(&wanted) {
            if self.holes.release(p, call_id) {
                actions.push(Action::Close {
                    pinhole: p,
                    call_id: call_id.to_string(),
                });
            }
        }
        for &p in wanted.difference(&old) {
            if self.holes.acquire(p, call_id) {
                actions.push(Action::Open {
                    pinhole: p,
                    call_id: call_id.to_string(),
                    sdp_time_ns: now,
                });
            }
        }
    }

    fn drop_dialog(&mut self, call_id: &str, actions: &mut Vec<Action>) {
        if let Some(d) = self.dialogs.remove(call_id) {
            self.release_all(call_id, d, actions);
        }
    }

    fn release_all(&mut self, call_id: &str, d: Dialog, actions: &mut Vec<Action>) {
        for p in d.pinholes {
            if self.holes.release(p, call_id) {
                actions.push(Action::Close {
                    pinhole: p,
                    call_id: call_id.to_string(),
                });
            }
        }
    }
}
