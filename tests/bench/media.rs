//! Tier 1, media by call (docs/policy.md, "Media by call"): what calls
//! mode costs a media packet against range mode (the same program, the
//! same frame, the policy of one or the other: interleaved samples,
//! medians of each sample's own difference), what its signalling copy
//! costs, and how long a pinhole takes to be written after the kernel saw
//! the SDP that asks for it (the reader of `sipwall run`, driven here in
//! this process: copy made by the real program, read from its ring,
//! parsed, pinhole written; the epoll wake-up of `run`'s loop is not in
//! it).
use std::net::Ipv4Addr;

use anyhow::{ensure, Result};
use filter_kernel::{maps::monotonic_ns, runner::Runner};
use filter_policy::ruleset::{MediaCalls, MediaMode, Ruleset};
use serde_json::{json, Value};
use sipwall::ops::reader::CallReader;
use sipwall_tests::packet::Frame;

use crate::{
    progress,
    report::{differences, median, middle_mean, verdict, Report},
    Scale, LOADS,
};

const HOST: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const PROVIDER: Ipv4Addr = Ipv4Addr::new(44, 229, 228, 186);
const STRANGER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);
const RTP_PORT: u16 = 10_000;
/// Calls-mode RTP through a live pinhole may cost this much more than
/// range mode's.
const CALLS_TARGET_NS: f64 = 10.0;
/// Range mode may cost this much more than in the program built without
/// calls mode's code.
const RANGE_TARGET_NS: f64 = 1.0;
/// p99 of the pinhole install time, in seconds.
const INSTALL_P99_TARGET: f64 = 0.001;
/// Calls whose install time is measured.
const INSTALL_CALLS: usize = 1_000;
/// Signalling copies one timed run may make: below the ring's room
/// (8 MiB of 4,120-byte copies).
const COPY_REPEAT: u32 = 1_500;

struct Row {
    class: &'static str,
    range: Vec<f64>,
    calls: Vec<f64>,
    /// The target over range mode, if the row has one.
    target: Option<f64>,
}

impl Row {
    fn over(&self) -> f64 {
        median(&differences(&self.calls, &self.range))
    }
}

/// One class in range mode, through the program with calls mode's code
/// and through the same program built without it.
struct RangeRow {
    class: &'static str,
    without: Vec<f64>,
    with: Vec<f64>,
}

impl RangeRow {
    /// The mean of the middle half of each sample's own difference: the
    /// target is one ns, the kernel's figures whole ns.
    fn over(&self) -> f64 {
        middle_mean(&differences(&self.with, &self.without))
    }
}

pub struct MediaTier1 {
    rows: Vec<Row>,
    /// Range mode against the program without calls mode (empty when this
    /// build embeds no such program: a debug build).
    range_rows: Vec<RangeRow>,
    /// Install times in seconds, sorted.
    installs: Vec<f64>,
}

fn rulesets() -> (Ruleset, Ruleset) {
    let range = Ruleset {
        rtp: (10_000, 20_000),
        ..Ruleset::default()
    };
    let calls = Ruleset {
        media: MediaCalls {
            mode: MediaMode::Calls,
            ..MediaCalls::default()
        },
        ..range.clone()
    };
    (range, calls)
}

pub fn run(scale: Scale) -> Result<MediaTier1> {
    progress("tier 1 media by call: calls mode against range mode, and the pinhole install time");
    let (range_rules, calls_rules) = rulesets();
    let range = Runner::new(&range_rules)?;
    let mut calls = Runner::new(&calls_rules)?;
    let mut maps = calls.media_maps()?;
    let mut ring = calls.copy_ring()?;
    maps.heartbeat()?;
    // Two pinholes on the port, the provider's in the second way: a
    // packet pays the first way's compare too, as a shared port would.
    maps.open_pinhole(
        RTP_PORT,
        Some(Ipv4Addr::new(198, 51, 100, 7).into()),
        None,
        u64::MAX / 2,
    )?;
    maps.open_pinhole(RTP_PORT, Some(PROVIDER.into()), None, u64::MAX / 2)?;
    let rtp = |src| {
        Frame::ipv4(src, HOST)
            .udp(40_000, RTP_PORT)
            .payload(&[0x80; 172])
            .build()
    };
    let sip = Frame::ipv4(PROVIDER, HOST)
        .udp(5060, 5060)
        .payload(&[b'x'; 900])
        .build();
    let mut rows = vec![
        Row {
            class: "RTP through a live pinhole (provider, second way)",
            range: Vec::new(),
            calls: Vec::new(),
            target: Some(CALLS_TARGET_NS),
        },
        Row {
            class: "RTP matching no pinhole (stranger: rtp_unsolicited)",
            range: Vec::new(),
            calls: Vec::new(),
            target: None,
        },
        Row {
            class: "signalling copied to the reader (provider, UDP 5060, 900 bytes)",
            range: Vec::new(),
            calls: Vec::new(),
            target: None,
        },
    ];
    let frames = [rtp(PROVIDER), rtp(STRANGER), sip];
    for _ in 0..scale.samples {
        maps.heartbeat()?;
        for (row, frame) in rows.iter_mut().zip(&frames) {
            let repeat = if row.class.starts_with("signalling") {
                scale.repeat.min(COPY_REPEAT)
            } else {
                scale.repeat
            };
            row.range.push(range.time(frame, repeat)?.1);
            row.calls.push(calls.time(frame, repeat)?.1);
            while ring.next_copy().is_some() {}
        }
    }
    let (pass, unsolicited) = (calls.run(&frames[0])?, calls.run(&frames[1])?);
    ensure!(
        pass.reason() == Some(filter_common::Reason::RtpAllowed)
            && unsolicited.reason() == Some(filter_common::Reason::RtpUnsolicited),
        "calls mode judged the bench's frames {:?} / {:?}",
        pass.reason(),
        unsolicited.reason()
    );
    let range_rows = range_unchanged(&range_rules, scale)?;
    let installs = install_times(&calls_rules)?;
    Ok(MediaTier1 {
        rows,
        range_rows,
        installs,
    })
}

/// Range mode through the program and through its build without calls
/// mode's code (filter-ebpf's `calls` feature off): what calls mode costs
/// a deployment that does not use it. The two are timed back to back in
/// each sample, in alternating order.
fn range_unchanged(rules: &Ruleset, scale: Scale) -> Result<Vec<RangeRow>> {
    // Each build loaded `LOADS` times, the samples taking the copies in
    // turn (see `LOADS`).
    let mut without = Vec::new();
    for _ in 0..LOADS {
        match Runner::range_only(rules) {
            Ok(r) => without.push(r),
            Err(e) => {
                progress(format!(
                    "tier 1 media by call: range mode unchanged: skipped ({e:#})"
                ));
                return Ok(Vec::new());
            }
        }
    }
    let with = (0..LOADS)
        .map(|_| Runner::new(rules))
        .collect::<Result<Vec<_>>>()?;
    let sip = b"OPTIONS sip:h SIP/2.0\r\n\r\n";
    let classes: [(&'static str, Vec<u8>); 5] = [
        (
            "RTP",
            Frame::ipv4(STRANGER, HOST)
                .udp(40_000, RTP_PORT)
                .payload(&[0x80; 172])
                .build(),
        ),
        (
            "SIP allowed, UDP",
            Frame::ipv4(PROVIDER, HOST)
                .udp(5060, 5060)
                .payload(sip)
                .build(),
        ),
        (
            "SIP denied, UDP",
            Frame::ipv4(STRANGER, HOST)
                .udp(5060, 5060)
                .payload(sip)
                .build(),
        ),
        (
            "first fragment, SIP allowed",
            Frame::ipv4(PROVIDER, HOST)
                .udp(5060, 5060)
                .payload(sip)
                .fragment(0, true)
                .build(),
        ),
        (
            "other (SSH)",
            Frame::ipv4(STRANGER, HOST).tcp(50_000, 22).build(),
        ),
    ];
    let mut rows: Vec<RangeRow> = classes
        .iter()
        .map(|(class, _)| RangeRow {
            class,
            without: Vec::new(),
            with: Vec::new(),
        })
        .collect();
    // Three times the samples of other rows: the kernel reports whole ns,
    // the target is one, and the difference is a mean of the samples'.
    for sample in 0..3 * scale.samples {
        let (without, with) = (&without[sample % LOADS], &with[sample % LOADS]);
        for (row, (_, frame)) in rows.iter_mut().zip(&classes) {
            if (sample / LOADS).is_multiple_of(2) {
                row.without.push(without.time(frame, scale.repeat)?.1);
                row.with.push(with.time(frame, scale.repeat)?.1);
            } else {
                row.with.push(with.time(frame, scale.repeat)?.1);
                row.without.push(without.time(frame, scale.repeat)?.1);
            }
        }
    }
    for (class, frame) in &classes {
        let (a, b) = (without[0].run(frame)?, with[0].run(frame)?);
        ensure!(
            a.reason() == b.reason() && a.verdict == b.verdict,
            "{class}: the program without calls mode judged {:?}, the program {:?}",
            a.reason(),
            b.reason()
        );
    }
    Ok(rows)
}

/// `INSTALL_CALLS` calls, each an INVITE from the provider (copied by the
/// XDP program) and this host's 200 OK (copied by the egress program),
/// read back from the ring and given to the reader, which writes the
/// pinholes: the time from the answer's copy to the pinhole written.
fn install_times(rules: &Ruleset) -> Result<Vec<f64>> {
    let mut runner = Runner::new(rules)?;
    let reader_maps = runner.media_maps()?;
    let mut copies = runner.copy_ring()?;
    let mut reader = CallReader::new(reader_maps, rules, None)?;
    reader.tick()?;
    let mut out = Vec::with_capacity(INSTALL_CALLS);
    for i in 0..INSTALL_CALLS {
        let port = 10_000 + 2 * (i as u16 % 4_000);
        let call = format!("bench-{i}@{PROVIDER}");
        let invite = Frame::ipv4(PROVIDER, HOST)
            .udp(5060, 5060)
            .payload(&sip_message(
                &format!("INVITE sip:h@{HOST} SIP/2.0"),
                &call,
                "1 INVITE",
                "",
                PROVIDER,
                40_000,
            ))
            .build();
        let answer = Frame::ipv4(HOST, PROVIDER)
            .udp(5060, 5060)
            .payload(&sip_message(
                "SIP/2.0 200 OK",
                &call,
                "1 INVITE",
                ";tag=h",
                HOST,
                port,
            ))
            .build();
        runner.run(&invite)?;
        runner.run_out(&answer)?;
        let mut answered_at = None;
        while let Some(copy) = copies.next_copy() {
            if copy.outbound {
                answered_at = Some(copy.ts_ns);
            }
            reader.take(&copy);
        }
        let Some(at) = answered_at else {
            anyhow::bail!("call {i}: the egress program made no copy of the answer");
        };
        let written = monotonic_ns();
        out.push(written.saturating_sub(at) as f64 / 1e9);
        let bye = Frame::ipv4(PROVIDER, HOST)
            .udp(5060, 5060)
            .payload(&sip_message(
                &format!("BYE sip:h@{HOST} SIP/2.0"),
                &call,
                "2 BYE",
                ";tag=h",
                PROVIDER,
                0,
            ))
            .build();
        runner.run(&bye)?;
        while let Some(copy) = copies.next_copy() {
            reader.take(&copy);
        }
    }
    ensure!(
        reader.tracker().stats().messages >= 3 * INSTALL_CALLS as u64,
        "the reader took {} messages of {}",
        reader.tracker().stats().messages,
        3 * INSTALL_CALLS
    );
    out.sort_by(f64::total_cmp);
    Ok(out)
}

/// A SIP message of the provider's call `call`, with SDP naming `media`
/// at `port` (none when 0).
fn sip_message(
    first: &str,
    call: &str,
    cseq: &str,
    to_tag: &str,
    media: Ipv4Addr,
    port: u16,
) -> Vec<u8> {
    let body = if port == 0 {
        String::new()
    } else {
        format!("v=0\r\no=- 1 1 IN IP4 {media}\r\ns=-\r\nc=IN IP4 {media}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\n")
    };
    let content_type = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "{first}\r\nVia: SIP/2.0/UDP {PROVIDER}:5060;branch=z9hG4bK-{call}\r\nFrom: <sip:p@{PROVIDER}>;tag=p\r\nTo: <sip:h@{HOST}>{to_tag}\r\nCall-ID: {call}\r\nCSeq: {cseq}\r\nMax-Forwards: 70\r\n{content_type}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

impl MediaTier1 {
    pub fn print(&self, out: &mut Report) {
        out.line("\nTier 1, media by call: calls mode against range mode, same program and frame (ns per packet, medians of each sample's difference)");
        let rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| {
                let over = r.over();
                vec![
                    r.class.into(),
                    format!("{:.1}", median(&r.range)),
                    format!("{:.1}", median(&r.calls)),
                    format!("{over:+.1}"),
                    match r.target {
                        Some(t) => format!("<= +{t:.0}: {}", verdict(over <= t)),
                        None => "(information)".into(),
                    },
                ]
            })
            .collect();
        out.table(
            &["packet", "range", "calls", "calls - range", "target"],
            &rows,
        );
        if !self.range_rows.is_empty() {
            out.line("\nTier 1, media by call: range mode through the program against its build without calls mode's code (ns per packet, medians; difference: the mean of the middle half of each sample's own difference, finer than whole ns)");
            let rows: Vec<Vec<String>> = self
                .range_rows
                .iter()
                .map(|r| {
                    let over = r.over();
                    vec![
                        r.class.into(),
                        format!("{:.1}", median(&r.without)),
                        format!("{:.1}", median(&r.with)),
                        format!("{over:+.1}"),
                        format!(
                            "<= +{RANGE_TARGET_NS:.0}: {}",
                            verdict(over <= RANGE_TARGET_NS)
                        ),
                    ]
                })
                .collect();
            out.table(
                &[
                    "packet (range mode)",
                    "without calls",
                    "with calls",
                    "difference",
                    "target",
                ],
                &rows,
            );
        }
        let (p50, p99) = (
            percentile(&self.installs, 0.5),
            percentile(&self.installs, 0.99),
        );
        out.line(format!(
            "Pinhole install time, from the kernel's copy of the SDP answer to the pinhole written ({} calls, this process; run's epoll wake-up not included): p50 {:.0} us, p99 {:.0} us (target p99 <= 1 ms: {})",
            self.installs.len(),
            p50 * 1e6,
            p99 * 1e6,
            verdict(p99 <= INSTALL_P99_TARGET)
        ));
    }

    pub fn to_json(&self) -> Value {
        json!({
            "rows": self.rows.iter().map(|r| json!({
                "class": r.class,
                "range_ns": median(&r.range),
                "calls_ns": median(&r.calls),
                "calls_over_range_ns": r.over(),
                "target_ns": r.target,
            })).collect::<Vec<_>>(),
            "range_unchanged": self.range_rows.iter().map(|r| json!({
                "class": r.class,
                "without_calls_ns": median(&r.without),
                "with_calls_ns": median(&r.with),
                "difference_ns": r.over(),
                "target_ns": RANGE_TARGET_NS,
            })).collect::<Vec<_>>(),
            "install_seconds": {
                "calls": self.installs.len(),
                "p50": percentile(&self.installs, 0.5),
                "p99": percentile(&self.installs, 0.99),
                "target_p99": INSTALL_P99_TARGET,
            },
        })
    }
}
