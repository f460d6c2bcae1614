//! Media by call (`[media] mode = "calls"`, docs/policy.md "Media by
//! call"): the pinholes the programs pass media through, the copies of
//! signalling they hand to the reader in `sipwall run`, and the reader's
//! heartbeat.

/// Map names (pinned with the rest, listed in `maps::ALL`).
pub mod maps {
    /// Array of [`super::Pinhole`], [`super::PINHOLE_WAYS`] slots per
    /// local port (slot `port * WAYS + way`). Written by userspace, read
    /// by both programs; the XDP program refreshes `last_seen_ns`.
    pub const PINHOLES: &str = "PINHOLES";
    /// Per-CPU array of u64, one per `PINHOLES` slot: media packets that
    /// matched it. Zeroed by userspace when it fills the slot.
    pub const PINHOLE_PACKETS: &str = "PINHOLE_PACKETS";
    /// Ring buffer of [`super::SignallingCopy`].
    pub const SIGNALLING_COPIES: &str = "SIGNALLING_COPIES";
    /// Array of one [`super::MediaState`]: the reader's heartbeat.
    pub const MEDIA_STATE: &str = "MEDIA_STATE";
    /// Per-CPU array of one [`super::MediaStats`].
    pub const MEDIA_STATS: &str = "MEDIA_STATS";
    /// Hash of u32 (a pinhole's `call`) to [`super::CallId`]: the Call-ID
    /// of the call each pinhole belongs to, so that a restarted reader
    /// knows its calls. Userspace only.
    pub const CALL_IDS: &str = "CALL_IDS";
}

/// Pinholes each local port holds.
pub const PINHOLE_WAYS: u32 = 2;
/// Slots of `PINHOLES`: every UDP port's ways.
pub const PINHOLE_SLOTS: u32 = 65_536 * PINHOLE_WAYS;

/// The `PINHOLES` slot of `port`'s `way`.
#[inline(always)]
pub const fn pinhole_slot(port: u16, way: u32) -> u32 {
    port as u32 * PINHOLE_WAYS + way
}

/// `Pinhole::kind`: the slot is free.
pub const PINHOLE_EMPTY: u32 = 0;
/// `Pinhole::kind`: open to `remote` only.
pub const PINHOLE_ADDR: u32 = 1;
/// `Pinhole::kind`: open to any source (an outbound offer not answered yet).
pub const PINHOLE_ANY: u32 = 2;

/// A matching packet writes `last_seen_ns` only when it is older than
/// this: a store a second per pinhole, not one per packet.
pub const PINHOLE_REFRESH_NS: u64 = 1_000_000_000;
/// No heartbeat for this long: the reader is down and the kernel follows
/// `[media] unattended`.
pub const READER_TIMEOUT_NS: u64 = 5_000_000_000;

/// One pinhole: media from `remote` (or anyone, by `kind`) to the slot's
/// local port passes while it is live.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pinhole {
    /// The remote address as the parser holds a source: 16 bytes, IPv4 as
    /// `::ffff:a.b.c.d`, as two native words in memory order.
    pub remote: [u64; 2],
    /// CLOCK_MONOTONIC(_COARSE) ns of the last matching packet (refreshed
    /// at most every [`PINHOLE_REFRESH_NS`]), or of the opening. The
    /// pinhole is live while `now - last_seen_ns < Policy::media_idle_ns`.
    pub last_seen_ns: u64,
    /// When userspace opened it (CLOCK_MONOTONIC ns); the programs never
    /// read it.
    pub opened_ns: u64,
    /// `PINHOLE_*`.
    pub kind: u32,
    /// Its call's key in `CALL_IDS` (0: none, e.g. `pinhole add` without
    /// a Call-ID).
    pub call: u32,
}

/// The reader's heartbeat.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MediaState {
    /// CLOCK_MONOTONIC ns of the reader's last drain of the copies.
    pub heartbeat_ns: u64,
    /// The reader's pid (for `status`), 0 when none ever ran.
    pub reader_pid: u32,
    pub reserved: u32,
}

/// Per CPU: signalling copies written and lost.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MediaStats {
    pub copies: u64,
    /// Copies the ring had no room for.
    pub lost: u64,
}

/// The most bytes of a signalling packet a copy holds.
pub const COPY_MAX: u32 = 4096;
/// The copies ring's size: about 2,000 copies of full size.
pub const COPY_RING_BYTES: u32 = 8 << 20;

/// `SignallingCopy::flags`: sent by the host (the TC egress program).
pub const COPY_OUT: u32 = 1;
/// `SignallingCopy::flags`: the frame starts with the IP header (an L3
/// device).
pub const COPY_L3: u32 = 2;

/// One signalling packet, copied for the reader.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SignallingCopy {
    /// When the program saw it (CLOCK_MONOTONIC ns).
    pub ts_ns: u64,
    /// Its length on the wire.
    pub len: u32,
    /// Bytes of it in `data` (the packet from its link header, cut at
    /// [`COPY_MAX`]).
    pub caplen: u32,
    /// `COPY_*`.
    pub flags: u32,
    pub reserved: u32,
    pub data: [u8; COPY_MAX as usize],
}

/// Bytes before `SignallingCopy::data`.
pub const COPY_HEADER: usize = 24;

/// The longest Call-ID kept in `CALL_IDS`; longer ones are cut.
pub const CALL_ID_MAX: usize = 120;
/// Entries `CALL_IDS` holds.
pub const CALL_IDS_MAX: u32 = 65_536;

/// A Call-ID as `CALL_IDS` holds it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallId {
    pub len: u32,
    pub reserved: u32,
    pub bytes: [u8; CALL_ID_MAX],
}

const _: () = assert!(core::mem::size_of::<Pinhole>() == 40);
const _: () = assert!(core::mem::size_of::<MediaState>() == 16);
const _: () = assert!(core::mem::size_of::<MediaStats>() == 16);
const _: () = assert!(core::mem::size_of::<CallId>() == 128);
const _: () = assert!(core::mem::size_of::<SignallingCopy>() == COPY_HEADER + COPY_MAX as usize);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: repr(C), no padding (sizes asserted above), valid for any
    // bit pattern.
    unsafe impl aya::Pod for super::Pinhole {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::MediaState {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::MediaStats {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::CallId {}
}
