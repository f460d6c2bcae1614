//! `sipwall check --pcap`: every frame of a capture through the real program
//! (BPF_PROG_TEST_RUN, nothing attached), with the verdict it returned and
//! the reason read from the counter it moved.
use filter_kernel::runner::{Runner, Verdict, MAX_FRAME, MIN_FRAME};
use filter_policy::{input, ruleset::Ruleset};
use std::{net::IpAddr, path::Path};

use crate::{
    error::UsageError,
    ops::{json, reader::CallReader},
};
use anyhow::{Context as _, Result};
use filter_common::{CounterFamily, OutReason, Reason};
use filter_kernel::{
    maps::monotonic_ns,
    media::{Copied, CopyRing},
};
use pcap_file::{
    pcap::PcapReader,
    pcapng::{blocks::interface_description::InterfaceDescriptionOption, Block, PcapNgReader},
    DataLink, TsResolution,
};
use std::time::{Duration, Instant};

/// One frame of a capture: the bytes captured, and the frame's length on
/// the wire (more than the bytes when the capture's snap length cut it).
#[derive(Debug)]
pub struct Frame {
    pub data: Vec<u8>,
    pub orig_len: usize,
    /// When it was captured, in nanoseconds since the epoch (`None`: a
    /// pcapng simple packet, which carries no time).
    pub ts_ns: Option<u128>,
}

impl Frame {
    /// Cut short by the capture's snap length (`tcpdump -s`).
    pub fn truncated(&self) -> bool {
        self.data.len() < self.orig_len
    }
}

/// What happened to one frame of the capture.
#[derive(Debug)]
pub struct Checked {
    pub index: usize,
    pub len: usize,
    /// The frame's length on the wire, when the capture cut it shorter
    /// (it was judged on the bytes captured).
    pub truncated_from: Option<usize>,
    pub result: Judged,
}

#[derive(Debug)]
pub enum Judged {
    /// Run through the program: its verdict and the counter it moved.
    Ran(Verdict, Reason),
    /// Run through the TC egress program (`--direction out`).
    RanOut(Verdict, OutReason),
    /// Sent by this host (its source is a local address): the ingress
    /// program never sees it, so it is not judged.
    Outbound,
    /// With `--direction out`, not sent by this host (its source is none
    /// of the local addresses given): the egress program never sees it.
    Inbound,
    /// The kernel cannot run it (why).
    NotRun(String),
}

/// What `check` treats as this host: packets from these addresses are
/// outbound.
#[derive(Debug, Default)]
pub struct Local {
    pub addrs: Vec<IpAddr>,
}

impl Local {
    /// The addresses given plus those of the interfaces named, as the
    /// kernel reports them now (`ip -json addr`).
    pub fn gather(addrs: &[IpAddr], ifaces: &[String]) -> Result<Local> {
        let mut all = addrs.to_vec();
        for iface in ifaces {
            filter_kernel::pins::check_iface_name(iface)?;
            let out = std::process::Command::new("ip")
                .args(["-json", "addr", "show", "dev", iface])
                .output()
                .context("running `ip addr` (package iproute2)")?;
            if !out.status.success() {
                return Err(UsageError(format!(
                    "--local-iface {iface}: {} (`ip link` lists the interfaces)",
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
                .into());
            }
            let links: serde_json::Value =
                serde_json::from_slice(&out.stdout).context("parsing `ip -json addr`")?;
            let found: Vec<IpAddr> = links[0]["addr_info"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a["local"].as_str()?.parse().ok())
                .collect();
            if found.is_empty() {
                return Err(UsageError(format!(
                    "--local-iface {iface}: the interface has no address; name the host's addresses with --local"
                ))
                .into());
            }
            all.extend(found);
        }
        all.sort();
        all.dedup();
        Ok(Local { addrs: all })
    }

    fn sent(&self, frame: &[u8]) -> bool {
        !self.addrs.is_empty() && source_addr(frame).is_some_and(|a| self.addrs.contains(&a))
    }
}

/// The IP source address of an Ethernet frame (behind up to two VLAN
/// tags, as the program parses them), if it is IPv4 or IPv6.
fn source_addr(frame: &[u8]) -> Option<IpAddr> {
    let be16 = |at: usize| -> Option<u16> {
        Some(u16::from_be_bytes(frame.get(at..at + 2)?.try_into().ok()?))
    };
    let mut at = 12;
    let mut ethertype = be16(at)?;
    for _ in 0..2 {
        if ethertype == 0x8100 || ethertype == 0x88a8 {
            at += 4;
            ethertype = be16(at)?;
        }
    }
    let ip = at + 2;
    match ethertype {
        0x0800 => {
            let src: [u8; 4] = frame.get(ip + 12..ip + 16)?.try_into().ok()?;
            Some(IpAddr::from(src))
        }
        0x86dd => {
            let src: [u8; 16] = frame.get(ip + 8..ip + 24)?.try_into().ok()?;
            Some(IpAddr::from(src))
        }
        _ => None,
    }
}

const PCAP_MAGICS: [[u8; 4]; 4] = [
    [0xd4, 0xc3, 0xb2, 0xa1],
    [0xa1, 0xb2, 0xc3, 0xd4],
    [0x4d, 0x3c, 0xb2, 0xa1],
    [0xa1, 0xb2, 0x3c, 0x4d],
];
const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

/// What a replay in calls mode needs.
pub const CALLS_NOTE: &str = "calls mode: the call reader follows the calls in the capture, but without --local or --local-iface it cannot tell this host's messages from the peer's, so no call's pinholes open and its media is judged rtp_unsolicited";

/// What a replay cannot know in strict mode.
pub const STRICT_NOTE: &str = "strict mode: replies cannot be known from a capture (the host's own flows are learnt live by the egress program), so answers to the host's connections are judged as unsolicited here (denied, unless a rule or another row takes them)";

/// Reads every frame of a pcap or pcapng file with an Ethernet link type.
/// A frame cut by the capture's snap length is kept, with its length on
/// the wire: pcap records are read raw, since pcap-file 2.0's checked
/// reader refuses every record longer on the wire than the file's snap
/// length (courvoif/pcap-file#36), which is each one `tcpdump -s` cut.
pub fn read_frames(path: &Path) -> Result<Vec<Frame>> {
    let name = path.display();
    let bad = |what: String| UsageError(format!("{name}: {what}"));
    let bytes = input::read_regular(path, "capture", input::PCAP_CAP)?;
    let magic: [u8; 4] = bytes
        .get(..4)
        .and_then(|m| m.try_into().ok())
        .ok_or_else(|| bad("too short to be a capture file".into()))?;
    let file = bytes.as_slice();
    let mut frames = Vec::new();
    if PCAP_MAGICS.contains(&magic) {
        let mut reader =
            PcapReader::new(file).map_err(|e| bad(format!("not a valid pcap file: {e}")))?;
        let link = reader.header().datalink;
        let frac_ns: u128 = match reader.header().ts_resolution {
            TsResolution::MicroSecond => 1_000,
            TsResolution::NanoSecond => 1,
        };
        if link != DataLink::ETHERNET {
            return Err(bad(format!(
                "link type {link:?} is not supported: only Ethernet captures can be replayed"
            ))
            .into());
        }
        while let Some(packet) = reader.next_raw_packet() {
            let packet = packet.map_err(|e| {
                bad(format!(
                    "packet {} is cut short or corrupt: {e}",
                    frames.len()
                ))
            })?;
            frames.push(Frame {
                orig_len: packet.orig_len as usize,
                ts_ns: Some(
                    u128::from(packet.ts_sec) * 1_000_000_000
                        + u128::from(packet.ts_frac) * frac_ns,
                ),
                data: packet.data.into_owned(),
            });
        }
    } else if magic == PCAPNG_MAGIC {
        let mut reader =
            PcapNgReader::new(file).map_err(|e| bad(format!("not a valid pcapng file: {e}")))?;
        // Each interface's link type and timestamp unit (ns per unit).
        let mut links: Vec<(DataLink, u128)> = Vec::new();
        while let Some(block) = reader.next_block() {
            let block = block.map_err(|e| {
                bad(format!(
                    "block after packet {} is cut short or corrupt: {e}",
                    frames.len()
                ))
            })?;
            match block {
                Block::SectionHeader(_) => links.clear(),
                Block::InterfaceDescription(idb) => {
                    let resol = idb.options.iter().find_map(|o| match o {
                        InterfaceDescriptionOption::IfTsResol(r) => Some(*r),
                        _ => None,
                    });
                    links.push((idb.linktype, ns_per_unit(resol)));
                }
                Block::EnhancedPacket(epb) => {
                    let link = links.get(epb.interface_id as usize).copied();
                    ensure_ethernet(link.map(|l| l.0), frames.len()).map_err(bad)?;
                    // pcap-file reads the raw count of the interface's
                    // units as nanoseconds; scale it by the real unit.
                    let unit = link.map_or(1_000, |l| l.1);
                    frames.push(Frame {
                        orig_len: epb.original_len as usize,
                        ts_ns: Some(epb.timestamp.as_nanos().saturating_mul(unit)),
                        data: epb.data.into_owned(),
                    });
                }
                Block::SimplePacket(spb) => {
                    ensure_ethernet(links.first().map(|l| l.0), frames.len()).map_err(bad)?;
                    frames.push(Frame {
                        orig_len: spb.original_len as usize,
                        ts_ns: None,
                        data: spb.data.into_owned(),
                    });
                }
                _ => {}
            }
        }
    } else {
        return Err(bad("not a pcap or pcapng file (unknown magic number)".into()).into());
    }
    Ok(frames)
}

/// Nanoseconds per timestamp unit of a pcapng interface's `if_tsresol`:
/// 10^-n s, or 2^-n s with the high bit set; microseconds when absent.
/// Units finer than a nanosecond count as one (a replay needs no finer).
fn ns_per_unit(tsresol: Option<u8>) -> u128 {
    let Some(r) = tsresol else { return 1_000 };
    let n = u32::from(r & 0x7f);
    let per_second = if r & 0x80 == 0 {
        10u128.checked_pow(n)
    } else {
        2u128.checked_pow(n)
    };
    match per_second {
        Some(p) if p != 0 => (1_000_000_000 / p).max(1),
        _ => 1,
    }
}

fn ensure_ethernet(link: Option<DataLink>, index: usize) -> Result<(), String> {
    match link {
        Some(DataLink::ETHERNET) => Ok(()),
        Some(other) => Err(format!(
            "packet {index}: link type {other:?} is not supported: only Ethernet captures can be replayed"
        )),
        None => Err(format!("packet {index} names an interface the file does not describe")),
    }
}

/// Which of the two programs `check` runs the frames through.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Direction {
    /// The XDP program: packets arriving at the host.
    #[default]
    In,
    /// The TC egress program: packets the host sends.
    Out,
}

/// Why `--direction out` refuses a configuration whose egress is open.
pub const OPEN_EGRESS_NOTE: &str = "--direction out: egress is open in this configuration ([egress] mode = \"open\", the default): the egress program judges nothing. Replay with the strict egress configuration you mean to roll out (dry_run = true is fine)";

/// Calls mode's side of a replay: the reader, fed the copies the program
/// makes as it runs the frames (as `run`'s is), on the capture's clock.
struct Replay {
    reader: CallReader,
    ring: CopyRing,
    /// The kernel-clock time the capture's first frame is mapped to.
    base_ns: u64,
    first_ts: Option<u128>,
    /// The capture time of the latest frame, mapped (never going back).
    now_ns: u64,
    /// When the tracker is next ticked, in capture time.
    next_tick_ns: u64,
    /// When the heartbeat was last written, on the wall clock.
    heartbeat: Instant,
}

const SECOND_NS: u64 = 1_000_000_000;

impl Replay {
    fn new(runner: &mut Runner, ruleset: &Ruleset) -> Result<Replay> {
        let mut reader = CallReader::new(runner.media_maps()?, ruleset, None)?;
        let ring = runner.copy_ring()?;
        let base_ns = monotonic_ns();
        reader.tick_at(base_ns)?;
        Ok(Replay {
            reader,
            ring,
            base_ns,
            first_ts: None,
            now_ns: base_ns,
            next_tick_ns: base_ns + SECOND_NS,
            heartbeat: Instant::now(),
        })
    }

    /// Moves the reader's clock to the frame's capture time: the tracker
    /// is ticked whenever a capture second has passed (its offer windows
    /// and unanswered INVITEs expire as they would have live); the
    /// heartbeat follows the wall clock, which is the kernel's, so that a
    /// replay longer than the reader timeout is not taken as unattended.
    fn advance(&mut self, ts: Option<u128>) -> Result<()> {
        if let Some(ts) = ts {
            let first = *self.first_ts.get_or_insert(ts);
            let since = u64::try_from(ts.saturating_sub(first)).unwrap_or(u64::MAX);
            self.now_ns = self.now_ns.max(self.base_ns.saturating_add(since));
        }
        if self.now_ns >= self.next_tick_ns {
            self.reader.tick_at(self.now_ns)?;
            self.next_tick_ns = self.now_ns.saturating_add(SECOND_NS);
            self.heartbeat = Instant::now();
        } else if self.heartbeat.elapsed() >= Duration::from_secs(1) {
            self.reader.heartbeat()?;
            self.heartbeat = Instant::now();
        }
        Ok(())
    }

    /// Feeds the reader the copies the program made of the frame just run
    /// (it copies only signalling it passes, as live). Without a local
    /// address every frame is run out with `--direction out`: the copies
    /// are then taken as the peer's, as before, so that no pinhole opens
    /// on a guess (CALLS_NOTE).
    fn take_copies(&mut self, captured: &Frame, local_known: bool) {
        // The program saw the bytes captured; what the snap length cut
        // is missing from its copy as from one the ring cut.
        let cut = captured.orig_len.saturating_sub(captured.data.len()) as u32;
        while let Some(mut copy) = self.ring.next_copy() {
            copy.ts_ns = self.now_ns;
            copy.len = copy.len.saturating_add(cut);
            copy.outbound &= local_known;
            self.reader.take(&copy);
        }
    }

    /// Feeds the reader a frame no program ran: one this host sent, with
    /// `--direction in` (the egress program copies what the host sends).
    fn take_unrun(&mut self, captured: &Frame, outbound: bool) {
        self.reader.take(&Copied {
            ts_ns: self.now_ns,
            len: captured.orig_len as u32,
            outbound,
            l3: false,
            data: captured.data.clone(),
        });
    }
}

/// Runs every frame through the program loaded with `ruleset`: inbound,
/// all but those `local` sent; outbound, those `local` sent (every frame
/// when no local address is given).
pub fn check(
    frames: &[Frame],
    ruleset: &Ruleset,
    local: &Local,
    direction: Direction,
) -> Result<Vec<Checked>> {
    let mut runner = Runner::new(ruleset)?;
    // Calls mode: the reader follows the capture's calls as `run`'s would,
    // frame by frame, into this copy's pinholes.
    let mut replay = if ruleset.media.calls() {
        Some(Replay::new(&mut runner, ruleset)?)
    } else {
        None
    };
    frames
        .iter()
        .enumerate()
        .map(|(index, captured)| {
            let frame = captured.data.as_slice();
            let sent = local.sent(frame);
            if let Some(replay) = replay.as_mut() {
                replay.advance(captured.ts_ns)?;
            }
            let result = if direction == Direction::In && sent {
                Judged::Outbound
            } else if direction == Direction::Out && !local.addrs.is_empty() && !sent {
                Judged::Inbound
            } else if frame.len() < MIN_FRAME {
                Judged::NotRun(format!(
                    "{} bytes: shorter than an Ethernet header, not run",
                    frame.len()
                ))
            } else if frame.len() > MAX_FRAME {
                Judged::NotRun(format!(
                    "{} bytes: larger than one page, not run",
                    frame.len()
                ))
            } else if direction == Direction::Out {
                let outcome = runner.run_out(frame).with_context(|| {
                    format!("running packet {index} through the egress program")
                })?;
                match (outcome.reason(), outcome.moved.is_empty()) {
                    (Some(reason), _) => Judged::RanOut(outcome.verdict, reason),
                    // Open egress: nothing judged, the packet goes out.
                    (None, true) if !ruleset.egress.strict() => {
                        Judged::NotRun("open egress: not judged, passes".into())
                    }
                    _ => {
                        Judged::NotRun(format!("counters moved unexpectedly: {:?}", outcome.moved))
                    }
                }
            } else {
                let outcome = runner
                    .run(frame)
                    .with_context(|| format!("running packet {index} through the program"))?;
                match outcome.reason() {
                    Some(reason) => Judged::Ran(outcome.verdict, reason),
                    None => {
                        Judged::NotRun(format!("counters moved unexpectedly: {:?}", outcome.moved))
                    }
                }
            };
            if let Some(replay) = replay.as_mut() {
                match &result {
                    // What the program passed and copied, as live.
                    Judged::Ran(..) | Judged::RanOut(..) | Judged::NotRun(_) => {
                        replay.take_copies(captured, !local.addrs.is_empty())
                    }
                    // No program ran it: the other side's, taken as is.
                    Judged::Outbound => replay.take_unrun(captured, true),
                    Judged::Inbound => replay.take_unrun(captured, false),
                }
            }
            Ok(Checked {
                index,
                len: frame.len(),
                truncated_from: captured.truncated().then_some(captured.orig_len),
                result,
            })
        })
        .collect()
}

/// `check --json`; `note` is strict mode's (`STRICT_NOTE`).
pub fn to_json(results: &[Checked], note: Option<&str>) -> json::Check {
    let packets = results
        .iter()
        .map(|c| {
            let (verdict, reason) = match &c.result {
                Judged::Ran(verdict, reason) => (verdict.name(), Some(reason.name())),
                Judged::RanOut(verdict, reason) => (verdict.name(), Some(reason.name())),
                Judged::Outbound => ("outbound".into(), Some("outbound")),
                Judged::Inbound => ("inbound".into(), Some("inbound")),
                Judged::NotRun(_) => ("error".into(), None),
            };
            json::CheckedPacket {
                index: c.index,
                verdict,
                reason: reason.map(String::from),
                len: c.len,
                error: match &c.result {
                    Judged::NotRun(e) => Some(e.clone()),
                    _ => None,
                },
                truncated: c.truncated_from.map(|_| true),
                wire_len: c.truncated_from,
            }
        })
        .collect();
    json::Check {
        packets,
        summary: summary_counts(results),
        note: note.map(String::from),
    }
}

/// Packets per verdict and per reason, for the closing summary.
fn summary_counts(results: &[Checked]) -> json::CheckSummary {
    let count = |pick: fn(&Checked) -> bool| results.iter().filter(|c| pick(c)).count();
    let verdict = |want: Verdict| {
        results
            .iter()
            .filter(|c| matches!(c.result, Judged::Ran(v, _) | Judged::RanOut(v, _) if v == want))
            .count()
    };
    let inbound = count(|c| matches!(c.result, Judged::Inbound));
    let ran_out = results
        .iter()
        .any(|c| matches!(c.result, Judged::RanOut(..)));
    json::CheckSummary {
        total: results.len(),
        pass: verdict(Verdict::Pass),
        drop: verdict(Verdict::Drop),
        error: count(|c| matches!(c.result, Judged::NotRun(_))),
        outbound: count(|c| matches!(c.result, Judged::Outbound)),
        truncated: count(|c| c.truncated_from.is_some()),
        inbound: (inbound > 0).then_some(inbound),
        reasons: json::ReasonTally {
            ingress: count_reasons::<Reason>(results, |j| match j {
                Judged::Ran(_, r) => Some(*r),
                _ => None,
            }),
            egress: ran_out.then(|| {
                count_reasons::<OutReason>(results, |j| match j {
                    Judged::RanOut(_, r) => Some(*r),
                    _ => None,
                })
            }),
        },
    }
}

/// How many packets each member of a counter family judged.
fn count_reasons<F: CounterFamily>(
    results: &[Checked],
    reason_of: fn(&Judged) -> Option<F>,
) -> Vec<(F, usize)> {
    F::MEMBERS
        .iter()
        .map(|&reason| {
            let n = results
                .iter()
                .filter(|c| reason_of(&c.result) == Some(reason))
                .count();
            (reason, n)
        })
        .collect()
}

pub fn to_text(results: &[Checked]) -> String {
    // As wide as the longest name that can appear, so that every row's
    // bytes line up whatever the capture holds.
    let width = Reason::MEMBERS
        .iter()
        .map(|r| r.name())
        .chain(OutReason::MEMBERS.iter().map(|r| r.name()))
        .chain(["reason", "outbound", "inbound"])
        .map(str::len)
        .max()
        .unwrap_or(0);
    let row = |index: usize, verdict: &str, reason: &str, len: usize| {
        format!("{index:>3}  {verdict:<7}  {reason:<width$} {len:>6}\n")
    };
    let mut out = format!(
        "{:>3}  {:<7}  {:<width$} {:>6}\n",
        "#", "verdict", "reason", "bytes"
    );
    for c in results {
        match &c.result {
            Judged::Ran(v, r) => out += &row(c.index, &v.name(), r.name(), c.len),
            Judged::RanOut(v, r) => out += &row(c.index, &v.name(), r.name(), c.len),
            Judged::Outbound => out += &row(c.index, "-", "outbound", c.len),
            Judged::Inbound => out += &row(c.index, "-", "inbound", c.len),
            Judged::NotRun(e) => out += &format!("{:>3}  error    {e}\n", c.index),
        }
        if let Some(wire) = c.truncated_from {
            out.pop();
            out += &format!("  truncated ({} of {wire} bytes captured)\n", c.len);
        }
    }
    let s = summary_counts(results);
    out += &format!(
        "\n{} packets: {} pass, {} drop, {} not run",
        s.total, s.pass, s.drop, s.error
    );
    if s.outbound != 0 {
        out += &format!(", {} outbound (sent by this host, not judged)", s.outbound);
    }
    if s.truncated != 0 {
        out += &format!(
            ", {} truncated (cut by the capture's snap length, judged on the bytes captured)",
            s.truncated
        );
    }
    if let Some(inbound) = s.inbound {
        out += &format!(", {inbound} inbound (not sent by this host, not judged)");
    }
    let ingress = s.reasons.ingress.iter().map(|(r, n)| (r.name(), *n));
    let egress = s
        .reasons
        .egress
        .iter()
        .flatten()
        .map(|(r, n)| (r.name(), *n));
    let by_reason: Vec<String> = ingress
        .chain(egress)
        .filter(|(_, n)| *n != 0)
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
    if !by_reason.is_empty() {
        out += &format!(" ({})", by_reason.join(", "));
    }
    out.push('\n');
    out
}
