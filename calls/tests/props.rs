//! Random and mutated signalling over UDP and TCP; the tracker's promises
//! are checked after every step.

mod common;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use common::*;
use proptest::prelude::*;
use sipwall_calls::{Action, Direction, Pinhole, Remote, Segment, Settings, Tracker, Transport};

const MAX_DIALOGS: usize = 6;
const MAX_STREAMS: usize = 3;

#[derive(Clone, Debug)]
enum Mutation {
    None,
    Truncate(usize),
    Flip(Vec<(usize, u8)>),
    Random(Vec<u8>),
}

#[derive(Clone, Debug)]
struct Msg {
    call: usize,
    random_call_id: Option<u32>,
    kind: usize,
    by_caller: bool,
    sdp: Option<(String, u16, usize)>,
    mutation: Mutation,
    /// `None`: the direction the message would really travel in.
    dir: Option<Direction>,
}

#[derive(Clone, Debug)]
enum Op {
    Udp {
        stranger: bool,
        msg: Msg,
    },
    Tcp {
        conn: u16,
        jump: i8,
        cuts: Vec<usize>,
        msg: Msg,
    },
    Tick(u64),
    Close(usize),
}

const CALLS: usize = 6;

const ADDRS: &[&str] = &[
    "198.51.100.20",
    "198.51.100.21",
    "2001:db8::7",
    "0.0.0.0",
    "224.0.0.9",
    "127.0.0.1",
    "255.255.255.255",
    "::",
    "::1",
    "ff02::1",
    "media.example.net",
    "1.2.3",
    "",
];
const EXTRAS: &[&str] = &[
    "",
    "",
    "a=rtcp-mux\r\n",
    "a=rtcp:10100\r\n",
    "a=rtcp:9\r\n",
    "a=inactive\r\n",
    "a=sendonly\r\n",
];

fn msg() -> impl Strategy<Value = Msg> {
    let addr = prop_oneof![
        8 => (0usize..3).prop_map(|i| ADDRS[i]),
        2 => prop::sample::select(ADDRS),
    ];
    let port = prop_oneof![
        8 => (0u16..8).prop_map(|i| 10000 + 2 * i),
        1 => 19995u16..=20005,
        1 => any::<u16>(),
    ];
    let sdp = prop_oneof![
        1 => Just(None),
        3 => (addr, port, 0..EXTRAS.len()).prop_map(|(a, p, e)| Some((a.to_string(), p, e))),
    ];
    let mutation = prop_oneof![
        20 => Just(Mutation::None),
        1 => (0usize..2000).prop_map(Mutation::Truncate),
        1 => prop::collection::vec((0usize..2000, any::<u8>()), 1..4).prop_map(Mutation::Flip),
        1 => prop::collection::vec(any::<u8>(), 0..300).prop_map(Mutation::Random),
    ];
    // INVITEs and their answers are the common case; the rest end calls.
    let kind = prop_oneof![
        4 => Just(0usize),
        4 => Just(3usize),
        2 => Just(2usize),
        1 => 0usize..12,
    ];
    let dir = prop_oneof![
        8 => Just(None),
        1 => Just(Some(Direction::Inbound)),
        1 => Just(Some(Direction::Outbound)),
    ];
    (
        0usize..CALLS,
        prop::option::weighted(0.05, any::<u32>()),
        kind,
        any::<bool>(),
        sdp,
        mutation,
        dir,
    )
        .prop_map(
            |(call, random_call_id, kind, by_caller, sdp, mutation, dir)| Msg {
                call,
                random_call_id,
                kind,
                by_caller,
                sdp,
                mutation,
                dir,
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (prop::bool::weighted(0.05), msg()).prop_map(|(stranger, msg)| Op::Udp { stranger, msg }),
        6 => (0u16..5, prop_oneof![8 => Just(0i8), 1 => -40i8..-1, 1 => 1i8..40], prop::collection::vec(0usize..1500, 0..3), msg())
            .prop_map(|(conn, jump, cuts, msg)| Op::Tcp { conn, jump, cuts, msg }),
        1 => (0u64..40).prop_map(|s| Op::Tick(s * SEC)),
        1 => (0usize..CALLS).prop_map(Op::Close),
    ]
}

/// Calls below this are placed by the peer, the rest by this host.
const PEER_CALLS: usize = CALLS / 2;

/// The direction a message travels: its own, or the one it would really have.
fn direction(m: &Msg) -> Direction {
    if let Some(d) = m.dir {
        return d;
    }
    let sent_by_caller = match m.kind {
        0 | 4 | 6 => true,
        5 | 8 | 10 => m.by_caller,
        9 | 11 => !m.by_caller,
        _ => false, // responses to the initial INVITE come from the callee
    };
    let peer_is_caller = m.call < PEER_CALLS;
    if sent_by_caller == peer_is_caller {
        Direction::Inbound
    } else {
        Direction::Outbound
    }
}

fn render(m: &Msg) -> Vec<u8> {
    let id = match m.random_call_id {
        Some(r) => format!("rnd-{r}"),
        None => format!("call-{}", m.call),
    };
    let call = if m.call < PEER_CALLS {
        Call::new(&id, PEER, HOST)
    } else {
        Call::new(&id, HOST, PEER)
    };
    let body = m.sdp.as_ref().map(|(a, p, e)| sdp(a, *p, EXTRAS[*e]));
    let body = body.as_deref();
    let text = match m.kind {
        0 => call.request("INVITE", 1, false, body),
        1 => call.response(100, "Trying", 1, "INVITE", None),
        2 => call.response(183, "Session Progress", 1, "INVITE", body),
        3 => call.response(200, "OK", 1, "INVITE", body),
        4 => call.request("ACK", 1, true, body),
        5 => call.request_by(m.by_caller, "BYE", 5, true, None),
        6 => call.request("CANCEL", 1, false, None),
        7 => call.response(486, "Busy Here", 1, "INVITE", None),
        8 => call.request_by(m.by_caller, "INVITE", 3, true, body),
        9 => call.response(488, "Not Acceptable Here", 3, "INVITE", None),
        10 => call.request_by(m.by_caller, "UPDATE", 4, true, body),
        _ => call.response(200, "OK", 3, "INVITE", body),
    };
    let mut b = text.into_bytes();
    match &m.mutation {
        Mutation::None => {}
        Mutation::Truncate(n) => b.truncate(*n),
        Mutation::Flip(flips) => {
            for (i, x) in flips {
                if !b.is_empty() {
                    let n = b.len();
                    b[i % n] ^= x;
                }
            }
        }
        Mutation::Random(r) => b = r.clone(),
    }
    b
}

fn usable(ip: IpAddr) -> bool {
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || ip == IpAddr::from([255, 255, 255, 255]))
}

struct World {
    t: Tracker,
    now: u64,
    model: BTreeSet<Pinhole>,
    seqs: std::collections::HashMap<(u16, bool), u32>,
}

impl World {
    fn apply(&mut self, actions: &[Action]) {
        for a in actions {
            match a {
                Action::Open { pinhole, .. } => {
                    assert!(self.model.insert(*pinhole), "opened twice: {pinhole:?}")
                }
                Action::Close { pinhole, .. } => {
                    assert!(self.model.remove(pinhole), "closed while shut: {pinhole:?}")
                }
            }
        }
    }

    fn check(&self) {
        let open: BTreeSet<Pinhole> = self.t.open_pinholes().into_iter().map(|(p, _)| p).collect();
        assert_eq!(open, self.model, "actions and open_pinholes() disagree");
        for p in &open {
            assert!(
                (10000..=20000).contains(&p.local_port),
                "outside rtp_ports: {p:?}"
            );
            if let Remote::Addr(ip) = p.remote {
                assert!(usable(ip), "unusable remote: {p:?}");
            }
        }
        assert!(self.t.calls_active() <= MAX_DIALOGS);
        assert!(self.t.streams_active() <= MAX_STREAMS);
    }

    fn step(&mut self, op: &Op) {
        self.now += SEC / 5;
        let host: SocketAddr = HOST.parse().unwrap();
        match op {
            Op::Udp { stranger, msg } => {
                let dir = &direction(msg);
                let peer: SocketAddr = if *stranger { STRANGER } else { PEER }.parse().unwrap();
                let (src, dst) = if *dir == Direction::Inbound {
                    (peer, host)
                } else {
                    (host, peer)
                };
                let bytes = render(msg);
                let seg = Segment {
                    time_ns: self.now,
                    direction: *dir,
                    transport: Transport::Udp,
                    src,
                    dst,
                    tcp_seq: None,
                    payload: &bytes,
                };
                let a = self.t.feed(&seg);
                if *stranger {
                    assert!(a.is_empty(), "a stranger's signalling changed pinholes");
                }
                self.apply(&a);
            }
            Op::Tcp {
                conn,
                jump,
                cuts,
                msg,
            } => {
                let dir = &direction(msg);
                let peer: SocketAddr = format!("203.0.113.5:{}", 40000 + conn).parse().unwrap();
                let (src, dst) = if *dir == Direction::Inbound {
                    (peer, host)
                } else {
                    (host, peer)
                };
                let bytes = render(msg);
                let key = (*conn, *dir == Direction::Inbound);
                let seq = self
                    .seqs
                    .get(&key)
                    .copied()
                    .unwrap_or(1_000)
                    .wrapping_add(*jump as i32 as u32);
                let mut at: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
                at.push(0);
                at.push(bytes.len());
                at.sort_unstable();
                for w in at.windows(2) {
                    let chunk = &bytes[w[0]..w[1]];
                    let seg = Segment {
                        time_ns: self.now,
                        direction: *dir,
                        transport: Transport::Tcp,
                        src,
                        dst,
                        tcp_seq: Some(seq.wrapping_add(w[0] as u32)),
                        payload: chunk,
                    };
                    let a = self.t.feed(&seg);
                    self.apply(&a);
                    self.check();
                }
                self.seqs.insert(key, seq.wrapping_add(bytes.len() as u32));
            }
            Op::Tick(d) => {
                self.now += d;
                let a = self.t.tick(self.now);
                self.apply(&a);
            }
            Op::Close(c) => {
                let a = self.t.close_call(&format!("call-{c}"));
                self.apply(&a);
            }
        }
        self.check();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn promises_hold_under_random_signalling(ops in prop::collection::vec(op(), 1..60)) {
        let settings = Settings { max_dialogs: MAX_DIALOGS, max_streams: MAX_STREAMS, max_message_bytes: 1200, ..settings() };
        let mut w = World { t: Tracker::new(settings), now: SEC, model: BTreeSet::new(), seqs: Default::default() };
        for op in &ops {
            w.step(op);
        }
        // Every call closed by the caller leaves nothing open.
        for c in 0..CALLS {
            let a = w.t.close_call(&format!("call-{c}"));
            w.apply(&a);
        }
        let a = w.t.tick(u64::MAX);
        w.apply(&a);
        w.check();
    }
}
