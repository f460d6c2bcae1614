//! The few facts of a SIP message that dialog following needs, taken from
//! `rsip`'s parse. Compact header forms (RFC 3261 §7.3.3), which `rsip`
//! leaves as unknown headers, are mapped here.

use rsip::headers::{untyped::UntypedHeader, Header};
use rsip::message::{HasHeaders, HeadersExt};
use rsip::SipMessage;

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

impl From<&rsip::Method> for Method {
    fn from(m: &rsip::Method) -> Self {
        match m {
            rsip::Method::Invite => Method::Invite,
            rsip::Method::Ack => Method::Ack,
            rsip::Method::Bye => Method::Bye,
            rsip::Method::Cancel => Method::Cancel,
            rsip::Method::Update => Method::Update,
            rsip::Method::PRack => Method::Prack,
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
    let msg = std::panic::catch_unwind(|| SipMessage::try_from(bytes))
        .ok()?
        .ok()?;
    let kind = match &msg {
        SipMessage::Request(r) => Kind::Request(Method::from(r.method())),
        SipMessage::Response(r) => Kind::Response(r.status_code().code()),
    };

    let mut call_id = None;
    let mut from = None;
    let mut to = None;
    let mut content_type = None;
    let mut content_length = None;
    for h in msg.headers().iter() {
        match h {
            Header::CallId(v) => call_id = call_id.or(Some(v.value())),
            Header::From(v) => from = from.or(Some(v.value())),
            Header::To(v) => to = to.or(Some(v.value())),
            Header::ContentType(v) => content_type = content_type.or(Some(v.value())),
            Header::ContentLength(v) => content_length = content_length.or(Some(v.value())),
            Header::Other(name, v) => match name.to_ascii_lowercase().as_str() {
                "i" => call_id = call_id.or(Some(v.as_str())),
                "f" => from = from.or(Some(v.as_str())),
                "t" => to = to.or(Some(v.as_str())),
                "c" => content_type = content_type.or(Some(v.as_str())),
                "l" => content_length = content_length.or(Some(v.as_str())),
                _ => {}
            },
            _ => {}
        }
    }
    let call_id = call_id?.trim();
    if call_id.is_empty() || call_id.len() > MAX_ID_BYTES {
        return None;
    }
    let from_tag = tag(rsip::headers::From::new(from?).tag().ok()?)?;
    let to_tag = tag(rsip::headers::To::new(to?).tag().ok()?)?;
    let cseq_method = Method::from(&msg.cseq_header().ok()?.method().ok()?);

    let mut body = msg.body().as_slice();
    if let Some(n) = content_length.and_then(|v| v.trim().parse::<usize>().ok()) {
        body = &body[..n.min(body.len())];
    }
    let claims_sdp = content_type.is_none_or(|t| {
        t.trim()
            .split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/sdp"))
    });
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
fn tag(t: Option<rsip::param::Tag>) -> Option<Option<String>> {
    match t {
        None => Some(None),
        Some(t) => {
            let s = t.to_string();
            (s.len() <= MAX_ID_BYTES).then_some(Some(s))
        }
    }
}
