//! `sipwall capture`: turns the programs' sampling on for one interface,
//! writes what they sample as pcapng (each packet commented with its
//! verdict and reason, its direction in the EPB flags) and turns sampling
//! off again however it ends.
use std::{
    borrow::Cow,
    io::Write,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result};
use filter_common::{
    capture::{
        CaptureFilter, CaptureStats, CAPTURE_DROP, CAPTURE_IN, CAPTURE_OUT, CAPTURE_PASS,
        MAX_SNAPLEN,
    },
    CounterFamily as _, OutReason, Reason,
};
use pcap_file::{
    pcapng::{
        blocks::{
            enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption},
            interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption},
            interface_statistics::{InterfaceStatisticsBlock, InterfaceStatisticsOption},
            section_header::{SectionHeaderBlock, SectionHeaderOption},
        },
        PcapNgWriter,
    },
    DataLink,
};

use filter_kernel::{
    attachment::Attachment,
    capture::{self as maps, CaptureMaps, Sampled},
    maps::monotonic_ns,
    pins::PinRoot,
};

use crate::error::UsageError;

/// What to capture and when to stop (the command line, checked).
#[derive(Clone, Debug)]
pub struct Options {
    pub iface: Option<String>,
    /// Ingress reasons to keep (bits), egress reasons to keep (bits).
    pub reasons: u32,
    pub out_reasons: u32,
    pub verdicts: u32,
    pub directions: u32,
    pub count: Option<u64>,
    pub duration: Option<Duration>,
    pub snaplen: u32,
    pub rate: u32,
}

pub const DEFAULT_SNAPLEN: u32 = 256;
pub const DEFAULT_RATE: u32 = 1000;

/// The reasons named by `--reason` (every one of the directions asked for
/// when none is), as the filter's two bitmasks.
pub fn reason_masks(names: &[String], directions: u32) -> Result<(u32, u32), UsageError> {
    let all_in: u32 = Reason::ALL.iter().fold(0, |m, r| m | 1 << (*r as u32));
    let all_out: u32 = OutReason::ALL.iter().fold(0, |m, r| m | 1 << (*r as u32));
    if names.is_empty() {
        return Ok((all_in, all_out));
    }
    let (mut ins, mut outs) = (0, 0);
    for name in names {
        if let Some(r) = Reason::from_name(name) {
            if directions & CAPTURE_IN == 0 {
                return Err(UsageError(format!(
                    "--reason {name} is counted on packets arriving; --direction out captures none"
                )));
            }
            ins |= 1 << (r as u32);
        } else if let Some(r) = OutReason::from_name(name) {
            if directions & CAPTURE_OUT == 0 {
                return Err(UsageError(format!(
                    "--reason {name} is counted on packets the host sends; --direction in captures none"
                )));
            }
            outs |= 1 << (r as u32);
        } else {
            let known: Vec<&str> = Reason::ALL
                .iter()
                .map(|r| r.name())
                .chain(OutReason::ALL.iter().map(|r| r.name()))
                .collect();
            return Err(UsageError(format!(
                "--reason {name}: not a counter; one of {}",
                known.join(", ")
            )));
        }
    }
    Ok((ins, outs))
}

/// `--duration`: seconds, or a number with `s`, `m` or `h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?}: write seconds (30, 2.5) or 90s, 10m, 1h (at most 24h)");
    let (number, unit) = match text.char_indices().last() {
        Some((at, 's')) => (&text[..at], 1.0),
        Some((at, 'm')) => (&text[..at], 60.0),
        Some((at, 'h')) => (&text[..at], 3600.0),
        _ => (text, 1.0),
    };
    let secs = number.parse::<f64>().map_err(|_| bad())? * unit;
    if !(0.001..=86_400.0).contains(&secs) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

static STOP: AtomicBool = AtomicBool::new(false);

/// Ctrl-C, SIGTERM and SIGHUP end the capture at its next step, which
/// turns sampling off and closes the file properly.
fn stop_on_signals() {
    extern "C" fn on_signal(_: libc::c_int) {
        STOP.store(true, Ordering::SeqCst);
    }
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic.
        unsafe {
            libc::signal(
                sig,
                on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            )
        };
    }
}

/// What a capture saw, for the closing report.
#[derive(Clone, Copy, Debug, Default)]
pub struct Report {
    /// Packets that matched the filter (the programs' count).
    pub matched: u64,
    /// Packets written to the file.
    pub written: u64,
    /// Matched packets over the rate cap.
    pub skipped: u64,
    /// Matched packets lost: no room in the ring buffer, or sampled but
    /// not written (the capture stopped first).
    pub lost: u64,
}

impl Report {
    fn of(stats: &CaptureStats, written: u64) -> Report {
        Report {
            matched: stats.matched,
            written,
            skipped: stats.skipped,
            lost: stats.lost + stats.written.saturating_sub(written),
        }
    }

    pub fn line(&self) -> String {
        format!(
            "sipwall: {} matched, {} written, {} skipped by the rate cap, {} lost",
            self.matched, self.written, self.skipped, self.lost
        )
    }
}

/// A capture that turned sampling on; dropping it turns it off again
/// (when the flag is still this process's).
struct Sampling {
    maps: CaptureMaps,
    pid: u32,
}

impl Drop for Sampling {
    fn drop(&mut self) {
        if self.maps.filter().is_ok_and(|f| f.reader_pid == self.pid) {
            let _ = self.maps.set_filter(&CaptureFilter::default());
        }
    }
}

/// Clears sampling left on by a capture whose process is gone; returns its
/// pid when there was one.
pub fn clear_dead(maps: &mut CaptureMaps) -> Result<Option<u32>> {
    let f = maps.filter()?;
    if f.on == 0 || maps::reader_alive(&f) {
        return Ok(None);
    }
    maps.set_filter(&CaptureFilter::default())?;
    Ok(Some(f.reader_pid))
}

/// Runs a capture on the attachment of `opts.iface`, writing pcapng to
/// `open_output`'s writer (opened once the capture is known to start), until `--count`, `--duration`, a signal or a write error (a
/// reader that went away). Returns the report, also written as the
/// file's last comment.
pub fn run(
    root: &PinRoot,
    opts: &Options,
    open_output: impl FnOnce() -> Result<Box<dyn Write>>,
) -> Result<Report> {
    let att = Attachment::open(root, opts.iface.as_deref())?;
    let mut maps = CaptureMaps::open(&att.dir)?;
    let pid = std::process::id();
    {
        let _lock = root.lock()?;
        if let Some(dead) = clear_dead(&mut maps)? {
            eprintln!("sipwall: sampling left on by a capture that is gone (pid {dead}): cleared");
        }
        let running = maps.filter()?;
        if running.on != 0 {
            return Err(UsageError(format!(
                "a capture already runs on {} (pid {}): one capture per interface; stop it first",
                att.iface, running.reader_pid
            ))
            .into());
        }
        let cpus = aya::util::nr_cpus()
            .map_err(|(_, e)| e)
            .context("counting the possible CPUs")? as u32;
        maps.reset_stats()?;
        // Samples an earlier capture left in the ring are not this one's.
        while maps.next_sample().is_some() {}
        maps.set_filter(&CaptureFilter {
            on: 1,
            directions: opts.directions,
            reasons: opts.reasons,
            out_reasons: opts.out_reasons,
            verdicts: opts.verdicts,
            snaplen: opts.snaplen.clamp(1, MAX_SNAPLEN),
            per_cpu_rate: opts.rate.div_ceil(cpus.max(1)),
            reader_pid: pid,
            reader_start: maps::process_start(pid).unwrap_or(0),
        })?;
    }
    let mut sampling = Sampling { maps, pid };
    stop_on_signals();

    let policy = att
        .maps
        .read_ruleset()
        .map(|r| r.summary())
        .unwrap_or_else(|e| format!("unreadable ({e})"));
    let description = format!(
        "sipwall capture on {} ({} mode): {}; policy: {policy}",
        att.iface,
        att.mode_name(),
        filter_text(opts)
    );
    // An interface without a link header (tun, WireGuard) hands the
    // programs IP packets: the file says so.
    let linktype = match att.maps.link_header() {
        Ok(filter_kernel::iface::LinkHeader::Ip) => DataLink::RAW,
        _ => DataLink::ETHERNET,
    };
    let mut writer = header(
        open_output()?,
        &att.iface,
        linktype,
        opts.snaplen,
        &description,
    )?;
    eprintln!("sipwall: capturing on {}: {}", att.iface, filter_text(opts));

    // Kernel timestamps are monotonic; the file's are wall-clock.
    let wall_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    let mono_ns = monotonic_ns();
    let started = Instant::now();
    let deadline = opts.duration.map(|d| started + d);
    let mut written = 0u64;
    let mut write_failed = None;
    'capture: while !STOP.load(Ordering::SeqCst) {
        while let Some(sample) = sampling.maps.next_sample() {
            if opts.count.is_some_and(|n| written >= n) {
                break 'capture;
            }
            let ts = wall_ns.saturating_add(sample.ts_ns.saturating_sub(mono_ns));
            if let Err(e) = write_sample(&mut writer, &sample, ts) {
                write_failed = Some(e);
                break 'capture;
            }
            written += 1;
        }
        if opts.count.is_some_and(|n| written >= n) {
            break;
        }
        if let Err(e) = writer.get_mut().flush() {
            write_failed = Some(e.into());
            break;
        }
        let wait = match deadline {
            Some(end) => match end.checked_duration_since(Instant::now()) {
                Some(left) => left.min(Duration::from_millis(100)),
                None => break,
            },
            None => Duration::from_millis(100),
        };
        wait_readable(sampling.maps.ring_fd(), wait);
    }
    // Off first, then count: nothing is matched after the report.
    let _ = sampling.maps.set_filter(&CaptureFilter::default());
    let stats = sampling.maps.stats()?;
    let report = Report::of(&stats, written);
    let end_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    if write_failed.is_none() {
        let closing = InterfaceStatisticsBlock {
            interface_id: 0,
            timestamp: end_ns,
            options: vec![
                InterfaceStatisticsOption::Comment(Cow::Owned(report.line())),
                InterfaceStatisticsOption::IsbStartTime(wall_ns),
                InterfaceStatisticsOption::IsbEndTime(end_ns),
                InterfaceStatisticsOption::IsbFilterAccept(report.matched),
                InterfaceStatisticsOption::IsbUsrDeliv(report.written),
                InterfaceStatisticsOption::IsbOsDrop(report.skipped + report.lost),
            ],
        };
        writer
            .write_pcapng_block(closing)
            .context("writing the closing statistics")?;
        writer.get_mut().flush().context("writing the capture")?;
    }
    drop(sampling);
    eprintln!("{}", report.line());
    if let Some(e) = write_failed {
        // A reader that went away (`| head`) ends the capture; anything
        // else is a failure to report.
        let broken_pipe = e
            .chain()
            .filter_map(|c| c.downcast_ref::<std::io::Error>())
            .any(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || e.to_string().contains("Broken pipe");
        if !broken_pipe {
            return Err(e.context("writing the capture"));
        }
    }
    Ok(report)
}

/// The filter in words, for the file's comment and stderr.
fn filter_text(opts: &Options) -> String {
    let names = |mask: u32, all: &mut dyn Iterator<Item = (u32, &'static str)>| -> Vec<&str> {
        all.filter(|(bit, _)| mask & (1 << bit) != 0)
            .map(|(_, n)| n)
            .collect()
    };
    let mut reasons = names(
        opts.reasons,
        &mut Reason::ALL.iter().map(|r| (*r as u32, r.name())),
    );
    reasons.extend(names(
        opts.out_reasons,
        &mut OutReason::ALL.iter().map(|r| (*r as u32, r.name())),
    ));
    let all = Reason::ALL.len() + OutReason::ALL.len();
    let verdict = match opts.verdicts {
        CAPTURE_DROP => "drop",
        CAPTURE_PASS => "pass",
        _ => "drop and pass",
    };
    let direction = match opts.directions {
        CAPTURE_IN => "in",
        CAPTURE_OUT => "out",
        _ => "in and out",
    };
    format!(
        "reasons {}, verdict {verdict}, direction {direction}, snaplen {}, at most {} packets/s",
        if reasons.len() == all {
            "all".to_string()
        } else {
            reasons.join(",")
        },
        opts.snaplen,
        opts.rate
    )
}

/// The section and interface blocks.
fn header(
    out: Box<dyn Write>,
    iface: &str,
    linktype: DataLink,
    snaplen: u32,
    description: &str,
) -> Result<PcapNgWriter<Box<dyn Write>>> {
    let section = SectionHeaderBlock {
        options: vec![
            SectionHeaderOption::Comment(Cow::Owned(description.to_string())),
            SectionHeaderOption::UserApplication(Cow::Owned(format!(
                "sipwall {}",
                env!("CARGO_PKG_VERSION")
            ))),
        ],
        ..Default::default()
    };
    let mut writer =
        PcapNgWriter::with_section_header(out, section).context("writing the capture header")?;
    let interface = InterfaceDescriptionBlock {
        linktype,
        snaplen,
        options: vec![
            InterfaceDescriptionOption::IfName(Cow::Owned(iface.to_string())),
            // pcap-file writes nanosecond timestamps.
            InterfaceDescriptionOption::IfTsResol(9),
            InterfaceDescriptionOption::Comment(Cow::Owned(description.to_string())),
        ],
    };
    writer
        .write_pcapng_block(interface)
        .context("writing the interface description")?;
    Ok(writer)
}

/// One packet: its bytes, the comment `sipwall: <verdict> <reason>` and
/// its direction in the EPB flags (1 inbound, 2 outbound).
fn write_sample(writer: &mut PcapNgWriter<Box<dyn Write>>, s: &Sampled, ts_ns: u64) -> Result<()> {
    let reason = if s.outbound {
        OutReason::ALL.get(s.reason as usize).map(|r| r.name())
    } else {
        Reason::ALL.get(s.reason as usize).map(|r| r.name())
    }
    .unwrap_or("unknown");
    let verdict = if s.dropped { "drop" } else { "pass" };
    let block = EnhancedPacketBlock {
        interface_id: 0,
        timestamp: Duration::from_nanos(ts_ns),
        original_len: s.len,
        data: Cow::Borrowed(&s.data),
        options: vec![
            EnhancedPacketOption::Comment(Cow::Owned(format!("sipwall: {verdict} {reason}"))),
            EnhancedPacketOption::Flags(if s.outbound { 2 } else { 1 }),
        ],
    };
    writer.write_pcapng_block(block)?;
    Ok(())
}

/// Waits until the ring buffer has samples, at most `timeout`.
fn wait_readable(fd: std::os::fd::RawFd, timeout: Duration) {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd; EINTR (a signal) just returns early.
    unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as libc::c_int) };
}
