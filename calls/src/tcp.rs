//! SIP over TCP: per-connection reassembly and Content-Length framing.
//!
//! Only the framing is done here (end of headers, Content-Length); the
//! message itself is parsed by `ezk-sip-types` once it is whole.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use crate::Direction;

/// A connection as seen from one direction.
pub(crate) type StreamKey = (SocketAddr, SocketAddr, Direction);

/// What one segment gave: whole messages and how many were thrown away.
#[derive(Default)]
pub(crate) struct Framed {
    pub messages: Vec<Vec<u8>>,
    pub oversized: u64,
    pub parse_errors: u64,
}

#[derive(Default)]
struct Stream {
    /// Sequence number of the byte after the last one taken in.
    next_seq: u32,
    buf: Vec<u8>,
    /// Looking for the start of a message after a gap or at a stream's start.
    syncing: bool,
    /// Bytes still to throw away of an oversized message.
    skip: usize,
    /// How much of `buf` was already searched for the end of the head, so a
    /// message trickling in byte by byte is not searched again from the start.
    scanned: usize,
    /// The length of the message at the front of `buf`, once its head is read.
    total: Option<usize>,
    /// Segments that arrived ahead of `next_seq` (a gap before them), kept
    /// until the gap fills: `(sequence number, payload)`, in arrival order.
    held: Vec<(u32, Vec<u8>)>,
    /// Bytes in `held`.
    held_bytes: usize,
    /// When the oldest held segment arrived.
    held_since: u64,
    stamp: u64,
}

impl Stream {
    /// Drops `n` bytes from the front; what was learnt about them goes too.
    fn consume(&mut self, n: usize) {
        self.buf.drain(..n.min(self.buf.len()));
        self.scanned = 0;
        self.total = None;
    }
}

/// Most out-of-order segments kept per stream, and their bytes in all: a
/// reordered segment or two is common, more means a copy is lost.
pub(crate) const HELD_SEGMENTS: usize = 8;
pub(crate) const HELD_BYTES: usize = 64 * 1024;
/// How long a gap may stay open before the segments after it are taken
/// as they are (resynchronising): TCP retransmits a lost segment within
/// about a second (RTO), and a copy the ring lost or cut is never resent.
pub(crate) const GAP_WAIT_NS: u64 = 1_000_000_000;

/// All reassembly buffers, capped in number (LRU) and in size per buffer.
pub(crate) struct Streams {
    max_streams: usize,
    max_message: usize,
    map: HashMap<StreamKey, Stream>,
    lru: BTreeMap<u64, StreamKey>,
    next_stamp: u64,
    pub evicted: u64,
}

impl Streams {
    pub fn new(max_streams: usize, max_message: usize) -> Self {
        Streams {
            max_streams: max_streams.max(1),
            max_message: max_message.max(1),
            map: HashMap::new(),
            lru: BTreeMap::new(),
            next_stamp: 0,
            evicted: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Takes in one segment and returns the messages it completed.
    pub fn feed(&mut self, key: StreamKey, seq: u32, payload: &[u8], now: u64) -> Framed {
        let mut out = Framed::default();
        if payload.is_empty() {
            // A SYN, bare ACK or FIN says nothing about the bytes, and a
            // SYN's sequence number is one before the first byte's: a
            // stream starts at its first data.
            return out;
        }
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        if !self.map.contains_key(&key) {
            if self.map.len() >= self.max_streams {
                if let Some((_, old)) = self.lru.pop_first() {
                    self.map.remove(&old);
                    self.evicted += 1;
                }
            }
            // A stream first seen mid-way may start inside a message.
            let s = Stream {
                next_seq: seq,
                syncing: true,
                stamp,
                ..Stream::default()
            };
            self.map.insert(key, s);
        } else if let Some(s) = self.map.get_mut(&key) {
            self.lru.remove(&s.stamp);
            s.stamp = stamp;
        }
        self.lru.insert(stamp, key);
        let Some(s) = self.map.get_mut(&key) else {
            return out;
        };
        let max = self.max_message;
        if !s.held.is_empty() && now.saturating_sub(s.held_since) >= GAP_WAIT_NS {
            give_up_gap(s, max, &mut out);
        }
        let ahead = seq.wrapping_sub(s.next_seq) as i32;
        if ahead > 0 {
            // Ahead of a gap: keep it for when the gap fills, within bounds.
            let reach = ahead as usize + payload.len();
            if reach <= HELD_BYTES
                && s.held.len() < HELD_SEGMENTS
                && s.held_bytes + payload.len() <= HELD_BYTES
            {
                if s.held.is_empty() {
                    s.held_since = now;
                }
                s.held_bytes += payload.len();
                s.held.push((seq, payload.to_vec()));
                return out;
            }
            // No room: the gap is taken as lost.
            s.held_bytes += payload.len();
            s.held.push((seq, payload.to_vec()));
            give_up_gap(s, max, &mut out);
            return out;
        }
        take_in(s, seq, payload, max, &mut out);
        fill_held(s, max, now, &mut out);
        out
    }

    /// The stream's bytes before `end` are lost (the copy of their segment
    /// was cut): resynchronise after them at once rather than wait.
    pub fn lost_until(&mut self, key: StreamKey, end: u32, now: u64) -> Framed {
        let mut out = Framed::default();
        let max = self.max_message;
        let Some(s) = self.map.get_mut(&key) else {
            return out;
        };
        if end.wrapping_sub(s.next_seq) as i32 > 0 {
            take_in(s, end, &[], max, &mut out);
            fill_held(s, max, now, &mut out);
        }
        out
    }

    /// Gives up the gaps of streams that waited `GAP_WAIT_NS` for them:
    /// the messages the held segments complete, by stream.
    pub fn expire(&mut self, now: u64) -> Vec<(StreamKey, Framed)> {
        let max = self.max_message;
        self.map
            .iter_mut()
            .filter(|(_, s)| !s.held.is_empty() && now.saturating_sub(s.held_since) >= GAP_WAIT_NS)
            .map(|(key, s)| {
                let mut out = Framed::default();
                give_up_gap(s, max, &mut out);
                (*key, out)
            })
            .collect()
    }
}

/// Takes in the held segments the stream's bytes now reach.
fn fill_held(s: &mut Stream, max: usize, now: u64, out: &mut Framed) {
    let before = s.held.len();
    while let Some(i) = s
        .held
        .iter()
        .position(|(q, _)| q.wrapping_sub(s.next_seq) as i32 <= 0)
    {
        let (q, bytes) = s.held.swap_remove(i);
        s.held_bytes -= bytes.len();
        take_in(s, q, &bytes, max, out);
    }
    if s.held.len() < before && !s.held.is_empty() {
        s.held_since = now;
    }
}

/// Takes the held segments in sequence order, each gap before one lost
/// (resynchronising there).
fn give_up_gap(s: &mut Stream, max: usize, out: &mut Framed) {
    let mut held = std::mem::take(&mut s.held);
    s.held_bytes = 0;
    let base = s.next_seq;
    held.sort_by_key(|(q, _)| q.wrapping_sub(base) as i32);
    for (q, bytes) in held {
        take_in(s, q, &bytes, max, out);
    }
}

/// Takes in one segment in order, or after a gap it gives up (bytes lost:
/// what is buffered cannot be completed); frames what it completes.
fn take_in(s: &mut Stream, seq: u32, payload: &[u8], max: usize, out: &mut Framed) {
    // Place the payload against what was already taken in.
    let end = seq.wrapping_add(payload.len() as u32);
    let ahead = seq.wrapping_sub(s.next_seq) as i32;
    let payload = if ahead < 0 {
        // A retransmission or overlap: keep only the new bytes.
        let old = ahead.unsigned_abs() as usize;
        if old >= payload.len() {
            return;
        }
        &payload[old..]
    } else {
        if ahead > 0 {
            s.consume(usize::MAX);
            s.skip = 0;
            s.syncing = true;
        }
        payload
    };
    s.next_seq = end;

    let payload = if s.skip > 0 {
        let n = s.skip.min(payload.len());
        s.skip -= n;
        &payload[n..]
    } else {
        payload
    };
    s.buf.extend_from_slice(payload);
    let framed = frame(s, max);
    out.messages.extend(framed.messages);
    out.oversized += framed.oversized;
    out.parse_errors += framed.parse_errors;
}

/// Cuts whole messages off the front of the buffer.
fn frame(s: &mut Stream, max: usize) -> Framed {
    let mut out = Framed::default();
    loop {
        if s.syncing {
            match resync_point(&s.buf) {
                Some(at) => {
                    s.consume(at);
                    s.syncing = false;
                }
                None => {
                    // Keep only a possible partial first line.
                    let line_start = s.buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                    s.consume(line_start);
                    if s.buf.len() > max {
                        s.consume(usize::MAX);
                    }
                    return out;
                }
            }
        }
        // CRLF keep-alives (RFC 5626) between messages.
        let lead = s
            .buf
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
        if lead > 0 {
            s.consume(lead);
        }
        if s.buf.is_empty() {
            return out;
        }
        let total = match s.total {
            Some(total) => total,
            None => {
                let from = s.scanned.saturating_sub(3);
                let Some(head_end) = find(&s.buf[from..], b"\r\n\r\n").map(|i| from + i + 4) else {
                    s.scanned = s.buf.len();
                    if s.buf.len() > max {
                        out.oversized += 1;
                        s.consume(usize::MAX);
                        s.syncing = true;
                    }
                    return out;
                };
                let Some(body_len) = content_length(&s.buf[..head_end]) else {
                    out.parse_errors += 1;
                    s.consume(head_end);
                    s.syncing = true;
                    continue;
                };
                let total = head_end.saturating_add(body_len);
                if total > max {
                    // Too big to keep: throw it away as it passes, and stay
                    // in step with the stream for the next message.
                    out.oversized += 1;
                    s.skip = total.saturating_sub(s.buf.len());
                    s.consume(total);
                    continue;
                }
                s.total = Some(total);
                total
            }
        };
        if s.buf.len() < total {
            return out;
        }
        out.messages.push(s.buf[..total].to_vec());
        s.consume(total);
    }
}

/// The first line start where a SIP request or status line begins.
fn resync_point(buf: &[u8]) -> Option<usize> {
    let starts = std::iter::once(0).chain(
        buf.iter()
            .enumerate()
            .filter(|(_, &b)| b == b'\n')
            .map(|(i, _)| i + 1),
    );
    for at in starts {
        if looks_like_start(&buf[at..]) {
            return Some(at);
        }
    }
    None
}

const METHODS: [&[u8]; 14] = [
    b"INVITE ",
    b"ACK ",
    b"BYE ",
    b"CANCEL ",
    b"OPTIONS ",
    b"REGISTER ",
    b"PRACK ",
    b"UPDATE ",
    b"INFO ",
    b"MESSAGE ",
    b"NOTIFY ",
    b"SUBSCRIBE ",
    b"REFER ",
    b"PUBLISH ",
];

fn looks_like_start(line: &[u8]) -> bool {
    line.starts_with(b"SIP/2.0 ") || METHODS.iter().any(|m| line.starts_with(m))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Content-Length (or compact `l`) of a header block; 0 when absent (RFC
/// 3261 requires it over TCP, so a missing one means an empty body), `None`
/// when present but not a number.
pub(crate) fn content_length(head: &[u8]) -> Option<usize> {
    for line in head.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l") {
            let value = std::str::from_utf8(line[colon + 1..].trim_ascii()).ok()?;
            return value.parse().ok();
        }
    }
    Some(0)
}
