//! `sipwall capture`: what the programs sample while a capture runs, and
//! what they hand to the reader (docs/cli.md, docs/pins.md).

/// Map names (pinned with the rest, listed in `maps::ALL`).
pub mod maps {
    /// Array of one [`super::CaptureFilter`]: off (`on == 0`) unless a
    /// capture runs. The programs load `on` for every packet they judge.
    pub const CAPTURE: &str = "CAPTURE";
    /// Per-CPU array of one [`super::CaptureStats`].
    pub const CAPTURE_STATS: &str = "CAPTURE_STATS";
    /// Ring buffer of [`super::Sample`]s, read by the capture.
    pub const CAPTURE_RING: &str = "CAPTURE_RING";
}

/// `CaptureFilter::directions`: packets arriving (XDP).
pub const CAPTURE_IN: u32 = 1;
/// `CaptureFilter::directions`: packets the host sends (TC egress).
pub const CAPTURE_OUT: u32 = 2;
/// `CaptureFilter::verdicts`: dropped packets.
pub const CAPTURE_DROP: u32 = 1;
/// `CaptureFilter::verdicts`: passed packets.
pub const CAPTURE_PASS: u32 = 2;
/// The most bytes of a packet a sample holds.
pub const MAX_SNAPLEN: u32 = 1536;
/// The ring buffer's size in bytes: about 2,700 samples.
pub const RING_BYTES: u32 = 4 << 20;

/// `Sample::flags`: sent by the host (the egress program).
pub const SAMPLE_OUT: u32 = 1;
/// `Sample::flags`: the program dropped it.
pub const SAMPLE_DROP: u32 = 2;

/// The capture running on an interface, and its filter.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureFilter {
    /// 1 while a capture runs; 0 costs a packet this one load.
    pub on: u32,
    /// `CAPTURE_IN` | `CAPTURE_OUT`.
    pub directions: u32,
    /// One bit per `Reason` (bit `Reason as u32`).
    pub reasons: u32,
    /// One bit per `OutReason`.
    pub out_reasons: u32,
    /// `CAPTURE_DROP` | `CAPTURE_PASS`.
    pub verdicts: u32,
    /// Bytes of each packet to keep, 1 to `MAX_SNAPLEN`.
    pub snaplen: u32,
    /// Samples each CPU may write per second (the `--rate` shared out).
    pub per_cpu_rate: u32,
    /// The reading process, so that a capture killed without cleaning up
    /// is known as dead: its pid and its start time (clock ticks after
    /// boot, /proc/PID/stat field 22).
    pub reader_pid: u32,
    pub reader_start: u64,
}

/// Per CPU: the rate cap's window and what the capture has seen.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Start of the current one-second window (monotonic ns).
    pub window_ns: u64,
    /// Samples left in the window.
    pub left: u64,
    /// Packets that matched the filter.
    pub matched: u64,
    /// Samples handed to the ring buffer.
    pub written: u64,
    /// Matched packets over the rate cap.
    pub skipped: u64,
    /// Matched packets the ring buffer had no room for.
    pub lost: u64,
}

/// One sampled packet, as the ring buffer carries it.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Sample {
    /// When (monotonic ns).
    pub ts_ns: u64,
    /// The packet's length on the wire.
    pub len: u32,
    /// Bytes of it in `data`.
    pub caplen: u32,
    /// `Reason` or `OutReason` (by `SAMPLE_OUT`).
    pub reason: u32,
    /// `SAMPLE_OUT`, `SAMPLE_DROP`.
    pub flags: u32,
    pub data: [u8; MAX_SNAPLEN as usize],
}

/// Bytes before `Sample::data`.
pub const SAMPLE_HEADER: usize = 24;

const _: () = assert!(core::mem::size_of::<CaptureFilter>() == 40);
const _: () = assert!(core::mem::size_of::<CaptureStats>() == 48);
const _: () = assert!(core::mem::size_of::<Sample>() == SAMPLE_HEADER + MAX_SNAPLEN as usize);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: repr(C), no padding (sizes asserted above), valid for any
    // bit pattern.
    unsafe impl aya::Pod for super::CaptureFilter {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::CaptureStats {}
}
