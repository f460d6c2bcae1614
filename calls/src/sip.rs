//! The few facts of a SIP message that dialog following needs, taken from
//! `ezk-sip-types`' parse: its line splitter, start-line and header parsers,
//! and typed Call-ID, From/To, CSeq and Content-Type headers.

use std::panic::AssertUnwindSafe;

use bytes::Bytes;
use ezk_sip_types::header::typed::{CSeq, CallID, ContentType, FromTo};
use ezk_sip_types::msg::{Line, MessageLine, PullParser};
use ezk_sip_types::parse::Parse;
use ezk_sip_types::{Headers, Name};

use crate::sdp::{self, Sdp};

/// Call-IDs and tags longer than this are refused: they are kept per dialog,
/// so their size bounds the table's memory.
const MAX_ID_BYTES: usize = 256;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Update,
    Prack,
    Other,
}

impl From<&ezk_sip_types::Method> for Method {
    fn from(m: &ezk_sip_types::Method) -> Self {
        use ezk_sip_types::Method as M;
        match m {
            m if *m == M::INVITE => Method::Invite,
            m if *m == M::ACK => Method::Ack,
            m if *m == M::BYE => Method::Bye,
            m if *m == M::CANCEL => Method::Cancel,
            m if *m == M::UPDATE => Method::Update,
            m if *m == M::PRACK => Method::Prack,
            _ => Method::Other,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    Request(Method),
    Response(u16),
}

#[derive(Debug)]
pub(crate) struct Msg {
    pub kind: Kind,
    pub call_id: String,
    pub from_tag: Option<String>,
    pub to_tag: Option<String>,
    /// The method the CSeq names: what a response answers.
    pub cseq_method: Method,
    /// The body's media, when it is SDP.
    pub sdp: Option<Sdp>,
    /// The body claimed to be SDP but did not parse.
    pub bad_sdp: bool,
}

/// Parses one whole message; `None` when it is not usable SIP.
pub(crate) fn parse(bytes: &[u8]) -> Option<Msg> {
    // Hostile bytes go into a third-party parser: contain a panic there.
    std::panic::catch_unwind(AssertUnwindSafe(|| parse_inner(bytes))).ok()?
}

fn parse_inner(bytes: &[u8]) -> Option<Msg> {
    let src = Bytes::copy_from_slice(bytes);
    let mut lines = PullParser::new(&src, 0);
    let first = std::str::from_utf8(lines.next()?.ok()?).ok()?;
    let (_, start) = MessageLine::parse(&src)(first).ok()?;
    let mut headers = Headers::new();
    for line in &mut lines {
        // `Err` means no empty line ends the head: not a whole message.
        let line = std::str::from_utf8(line.ok()?).ok()?;
        let (_, line) = Line::parse(&src, line).ok()?;
        headers.insert(line.name, line.value);
    }
    let body = &src[lines.head_end().min(src.len())..];

    let kind = match &start {
        MessageLine::Request(r) => Kind::Request(Method::from(&r.method)),
        MessageLine::Response(r) => Kind::Response(r.code.into_u16()),
    };
    let call_id = headers.get_named::<CallID>().ok()?.0;
    let call_id = call_id.trim();
    if call_id.is_empty() || call_id.len() > MAX_ID_BYTES {
        return None;
    }
    let from_tag = tag(headers.get::<FromTo>(Name::FROM).ok()?)?;
    let to_tag = tag(headers.get::<FromTo>(Name::TO).ok()?)?;
    let cseq_method = Method::from(&headers.get_named::<CSeq>().ok()?.method);

    let mut body = body;
    if let Some(Ok(n)) = headers
        .get_raw(&Name::CONTENT_LENGTH)
        .next()
        .map(|v| v.trim().parse::<usize>())
    {
        body = &body[..n.min(body.len())];
    }
    let claims_sdp = match headers.try_get_named::<ContentType>() {
        None => true,
        Some(Ok(t)) => {
            t.0.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/sdp"))
        }
        Some(Err(_)) => false,
    };
    let (sdp, bad_sdp) = if claims_sdp && !body.iter().all(u8::is_ascii_whitespace) {
        match sdp::parse(body) {
            Some(s) => (Some(s), false),
            None => (None, true),
        }
    } else {
        (None, false)
    };
    Some(Msg {
        kind,
        call_id: call_id.to_string(),
        from_tag,
        to_tag,
        cseq_method,
        sdp,
        bad_sdp,
    })
}

/// A tag as kept: `Some(None)` for no tag, `None` for one too long to keep.
fn tag(h: FromTo) -> Option<Option<String>> {
    match h.tag {
        None => Some(None),
        Some(t) => (t.len() <= MAX_ID_BYTES).then(|| Some(t.to_string())),
    }
}
