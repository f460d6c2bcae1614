//! Fixtures in the style of sipp's default uac/uas scenarios (with SDP), and
//! a harness that feeds them to a tracker.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::net::SocketAddr;

use sipwall_calls::{Action, Direction, Pinhole, Remote, Segment, Settings, Tracker, Transport};

pub const HOST: &str = "192.0.2.10:5060";
pub const PEER: &str = "203.0.113.5:5060";
pub const STRANGER: &str = "198.18.0.66:5060";
pub const PEER_MEDIA: &str = "198.51.100.20";
pub const SEC: u64 = 1_000_000_000;

pub fn settings() -> Settings {
    Settings {
        rtp_ports: vec![10000..=20000],
        allowlist: vec!["203.0.113.0/24".parse().unwrap()],
        ..Settings::default()
    }
}

pub fn sdp(ip: &str, port: u16, extra: &str) -> String {
    let family = if ip.contains(':') { "IP6" } else { "IP4" };
    format!(
        "v=0\r\n\
         o=user1 53655765 2353687637 IN {family} {ip}\r\n\
         s=-\r\n\
         c=IN {family} {ip}\r\n\
         t=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\n\
         a=rtpmap:0 PCMU/8000\r\n\
         {extra}"
    )
}

/// Who is the caller in a fixture: the From side of the dialog.
#[derive(Clone)]
pub struct Call {
    pub call_id: String,
    pub from_tag: String,
    pub to_tag: String,
    /// The caller's address (Via/Contact) and the callee's.
    pub caller: &'static str,
    pub callee: &'static str,
}

impl Call {
    pub fn new(call_id: &str, caller: &'static str, callee: &'static str) -> Call {
        // Tags are tokens: no '@' as a Call-ID may have.
        let tag = call_id.replace(['@', '.'], "-");
        Call {
            call_id: call_id.to_string(),
            from_tag: format!("{tag}-from"),
            to_tag: format!("{tag}-to"),
            caller,
            callee,
        }
    }

    /// A request sent by the caller (`by_caller`) or by the callee.
    pub fn request(
        &self,
        method: &str,
        cseq: u32,
        with_to_tag: bool,
        body: Option<&str>,
    ) -> String {
        self.request_by(true, method, cseq, with_to_tag, body)
    }

    pub fn request_by(
        &self,
        by_caller: bool,
        method: &str,
        cseq: u32,
        with_to_tag: bool,
        body: Option<&str>,
    ) -> String {
        let (me, other) = if by_caller {
            (self.caller, self.callee)
        } else {
            (self.callee, self.caller)
        };
        let (my_tag, other_tag) = if by_caller {
            (&self.from_tag, Some(&self.to_tag).filter(|_| with_to_tag))
        } else {
            (&self.to_tag, Some(&self.from_tag))
        };
        let to_tag = other_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
        let body = body.unwrap_or("");
        let ctype = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        format!(
            "{method} sip:service@{other} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {me};branch=z9hG4bK-{cseq}-{method}\r\n\
             From: sipp <sip:sipp@{me}>;tag={my_tag}\r\n\
             To: sut <sip:service@{other}>{to_tag}\r\n\
             Call-ID: {id}\r\n\
             CSeq: {cseq} {method}\r\n\
             Contact: sip:sipp@{me}\r\n\
             Max-Forwards: 70\r\n\
             Subject: Performance Test\r\n\
             {ctype}\
             Content-Length: {len}\r\n\
             \r\n\
             {body}",
            id = self.call_id,
            len = body.len(),
        )
    }

    /// A response to a request the caller sent.
    pub fn response(
        &self,
        code: u16,
        reason: &str,
        cseq: u32,
        method: &str,
        body: Option<&str>,
    ) -> String {
        let body = body.unwrap_or("");
        let ctype = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        let to_tag = if code > 100 {
            format!(";tag={}", self.to_tag)
        } else {
            String::new()
        };
        format!(
            "SIP/2.0 {code} {reason}\r\n\
             Via: SIP/2.0/UDP {caller};branch=z9hG4bK-{cseq}-{method}\r\n\
             From: sipp <sip:sipp@{caller}>;tag={from_tag}\r\n\
             To: sut <sip:service@{callee}>{to_tag}\r\n\
             Call-ID: {id}\r\n\
             CSeq: {cseq} {method}\r\n\
             Contact: <sip:{callee};transport=UDP>\r\n\
             {ctype}\
             Content-Length: {len}\r\n\
             \r\n\
             {body}",
            caller = self.caller,
            callee = self.callee,
            from_tag = self.from_tag,
            id = self.call_id,
            len = body.len(),
        )
    }
}

/// A tracker and a clock, with every action kept.
pub struct Harness {
    pub tracker: Tracker,
    pub now: u64,
    pub log: Vec<Action>,
}

impl Harness {
    pub fn new() -> Harness {
        Harness::with(settings())
    }

    pub fn with(s: Settings) -> Harness {
        Harness {
            tracker: Tracker::new(s),
            now: 1_000 * SEC,
            log: Vec::new(),
        }
    }

    /// Peer -> host over UDP.
    pub fn inbound(&mut self, text: &str) -> Vec<Action> {
        self.udp(Direction::Inbound, PEER, HOST, text)
    }

    /// Host -> peer over UDP.
    pub fn outbound(&mut self, text: &str) -> Vec<Action> {
        self.udp(Direction::Outbound, HOST, PEER, text)
    }

    pub fn udp(&mut self, direction: Direction, src: &str, dst: &str, text: &str) -> Vec<Action> {
        self.now += SEC / 10;
        let seg = Segment {
            time_ns: self.now,
            direction,
            transport: Transport::Udp,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            tcp_seq: None,
            payload: text.as_bytes(),
        };
        self.run(&seg)
    }

    pub fn tcp(
        &mut self,
        direction: Direction,
        src: SocketAddr,
        dst: SocketAddr,
        seq: u32,
        bytes: &[u8],
    ) -> Vec<Action> {
        self.now += SEC / 10;
        let seg = Segment {
            time_ns: self.now,
            direction,
            transport: Transport::Tcp,
            src,
            dst,
            tcp_seq: Some(seq),
            payload: bytes,
        };
        self.run(&seg)
    }

    pub fn run(&mut self, seg: &Segment) -> Vec<Action> {
        let a = self.tracker.feed(seg);
        self.log.extend(a.iter().cloned());
        a
    }

    pub fn tick(&mut self, now: u64) -> Vec<Action> {
        self.now = now;
        let a = self.tracker.tick(now);
        self.log.extend(a.iter().cloned());
        a
    }

    pub fn close_call(&mut self, id: &str) -> Vec<Action> {
        let a = self.tracker.close_call(id);
        self.log.extend(a.iter().cloned());
        a
    }

    /// The open pinholes as a set.
    pub fn open(&self) -> BTreeSet<Pinhole> {
        self.tracker
            .open_pinholes()
            .into_iter()
            .map(|(p, _)| p)
            .collect()
    }
}

pub fn ph(port: u16, remote: &str) -> Pinhole {
    let remote = if remote == "any" {
        Remote::Any
    } else {
        Remote::Addr(remote.parse().unwrap())
    };
    Pinhole {
        local_port: port,
        remote,
    }
}

pub fn set(items: &[Pinhole]) -> BTreeSet<Pinhole> {
    items.iter().copied().collect()
}

pub fn opened(actions: &[Action]) -> BTreeSet<Pinhole> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Open { pinhole, .. } => Some(*pinhole),
            _ => None,
        })
        .collect()
}

pub fn closed(actions: &[Action]) -> BTreeSet<Pinhole> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Close { pinhole, .. } => Some(*pinhole),
            _ => None,
        })
        .collect()
}
