//! Media extraction from an SDP body: only what pinholes need, parsed by
//! `sdp-types` and reduced to one small record per `m=` line.

use std::net::IpAddr;

use sdp_types::{Rtcp as RtcpAttr, Session};

/// More `m=` lines than this are ignored: real calls have one to three, and a
/// dialog table full of huge SDPs would be unbounded memory.
pub(crate) const MAX_MEDIA_LINES: usize = 16;

/// Where a media line's connection address points.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Addr {
    /// An IP literal (may still be unusable: hold, multicast, loopback).
    Ip(IpAddr),
    /// No `c=` at all, a hostname, or something that does not parse.
    Unusable,
}

/// How the RTCP of a line travels.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Rtcp {
    /// The default: RTP port + 1.
    Next,
    /// `a=rtcp-mux`: on the RTP port itself.
    Mux,
    /// `a=rtcp:PORT`.
    Port(u16),
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct MediaLine {
    pub port: u16,
    pub addr: Addr,
    pub rtcp: Rtcp,
    pub inactive: bool,
}

/// One side's session description as far as pinholes care.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub(crate) struct Sdp {
    pub lines: Vec<MediaLine>,
}

/// Parses an SDP body; `None` if `sdp-types` rejects it.
pub(crate) fn parse(body: &[u8]) -> Option<Sdp> {
    // A third-party parser fed hostile bytes: a panic there must not take the
    // tracker down, so it is contained and counted as a parse error.
    let session = std::panic::catch_unwind(|| Session::parse(body))
        .ok()?
        .ok()?;
    let session_addr = session.connection.as_ref().map(conn_addr);
    let session_inactive = session.has_attribute("inactive");
    let lines = session
        .medias
        .iter()
        .take(MAX_MEDIA_LINES)
        .map(|m| {
            let addr = m
                .connections
                .first()
                .map(conn_addr)
                .or(session_addr)
                .unwrap_or(Addr::Unusable);
            let rtcp = if m.has_attribute("rtcp-mux") {
                Rtcp::Mux
            } else {
                match m.get_first_attribute_typed::<RtcpAttr>() {
                    Some(Ok(r)) => Rtcp::Port(r.port),
                    _ => Rtcp::Next,
                }
            };
            // A media-level direction overrides the session-level one.
            let media_dir = ["sendrecv", "sendonly", "recvonly", "inactive"]
                .into_iter()
                .find(|d| m.has_attribute(d));
            let inactive = match media_dir {
                Some(d) => d == "inactive",
                None => session_inactive,
            };
            MediaLine {
                port: m.port,
                addr,
                rtcp,
                inactive,
            }
        })
        .collect();
    Some(Sdp { lines })
}

fn conn_addr(c: &sdp_types::Connection) -> Addr {
    // `try_address` strips a multicast `/ttl` suffix; hostnames fail here.
    match c.try_address() {
        Ok(a) => Addr::Ip(a.ip),
        Err(_) => Addr::Unusable,
    }
}

/// Whether media from this address may be let in: a unicast IP literal that
/// is not the unspecified "hold" address, loopback or broadcast, nor an
/// IPv4-mapped IPv6 address (`::ffff:a.b.c.d`): no media arrives from one
/// on the wire, and the kernel's pinholes keep IPv4 remotes in that very
/// form, so it would open the IPv4 address the SDP did not name.
pub(crate) fn usable(addr: Addr) -> Option<IpAddr> {
    let Addr::Ip(ip) = addr else { return None };
    let bad = ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || matches!(ip, IpAddr::V4(v4) if v4.is_broadcast())
        || matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some());
    (!bad).then_some(ip)
}
