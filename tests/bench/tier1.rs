//! Tier 1: what the program costs per packet, by packet class, measured
//! with BPF_PROG_TEST_RUN (the syscall behind `bpftool prog run`) against
//! the floor (an empty XDP program run on the same frame) and the
//! reference (a minimal hand-written program of the same policy for plain
//! IPv4, in Rust and, when clang is there, in C), interleaved sample by
//! sample, at three allowlist sizes. Before it is timed, each frame is run
//! once and must get the verdict and reason its class is named after (and
//! the reference's verdict), so every row measures the path it claims to.
//! The program's size figures (xlated and JIT size, verified
//! instructions, byte stores) are reported beside, before and after.
use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::{ensure, Context as _, Result};
use filter_common::Reason;
use filter_kernel::runner::{Runner, Verdict};
use serde_json::{json, Value};
use sipwall_lab::{OUTSIDER, OUTSIDER6, PBX, PBX6, PROVIDER};
use sipwall_tests::packet::Frame;

use crate::{
    allowlists::{allowlist, ruleset},
    progress,
    progs::{self, BenchProgs, ReferenceC, PASS, REFERENCE},
    report::{differences, median, verdict, Report},
    size::{self, Sizes},
    testbed::check_stop,
    Scale,
};

/// Allowlist sizes the program is timed with.
pub const SIZES: [usize; 3] = [2, 1_000, 100_000];
/// The targets: sipwall's own cost (over the floor) may exceed the
/// reference's own cost on the same class by this much on plain IPv4...
pub const TARGET_PLAIN_NS: f64 = 10.0;
/// ... by this much on SIP denied (its per-source accounting) ...
pub const TARGET_DENIED_NS: f64 = 15.0;
/// ... and IPv6, VLAN-tagged and first-fragment classes may exceed the
/// reference's own cost on their plain-IPv4 counterpart by this much.
pub const TARGET_OTHER_NS: f64 = 20.0;
/// Largest growth from the smallest to the largest allowlist called "a few
/// ns".
pub const SCALE_TARGET_NS: f64 = 5.0;

struct Class {
    name: &'static str,
    key: &'static str,
    frame: Vec<u8>,
    reason: Reason,
    /// The plain-IPv4 class the reference is timed on for this one (itself
    /// when the reference handles the frame) and how much more than the
    /// reference's own cost sipwall may spend.
    yardstick: Yardstick,
}

#[derive(Clone, Copy)]
enum Yardstick {
    /// Plain IPv4: the reference runs the same frame.
    Same(f64),
    /// VLAN, IPv6: the reference runs the named class's frame.
    Counterpart(&'static str, f64),
}

impl Yardstick {
    fn allowance(self) -> f64 {
        match self {
            Yardstick::Same(ns) | Yardstick::Counterpart(_, ns) => ns,
        }
    }
}

fn classes() -> Vec<Class> {
    let provider = PROVIDER[0];
    // 20 ms of G.711 behind an RTP header.
    let rtp_payload = [0u8; 172];
    let sip = b"OPTIONS sip:pbx SIP/2.0\r\n";
    let v4 = |src: Ipv4Addr| Frame::ipv4(src, PBX);
    let v6 = |src: Ipv6Addr| Frame::ipv6(src, PBX6);
    let plain = Yardstick::Same(TARGET_PLAIN_NS);
    let denied = Yardstick::Same(TARGET_DENIED_NS);
    let class = |name, key, frame: Frame, reason, yardstick| Class {
        name,
        key,
        frame: frame.build(),
        reason,
        yardstick,
    };
    vec![
        class(
            "RTP",
            "rtp",
            v4(OUTSIDER).udp(40002, 40000).payload(&rtp_payload),
            Reason::RtpAllowed,
            plain,
        ),
        class(
            "SIP allowed, UDP",
            "sip_allowed_udp",
            v4(provider).udp(5060, 5060).payload(sip),
            Reason::SipAllowed,
            plain,
        ),
        class(
            "SIP allowed, TCP",
            "sip_allowed_tcp",
            v4(provider).tcp(40123, 5060).payload(sip),
            Reason::SipAllowed,
            plain,
        ),
        class(
            "SIP denied, UDP",
            "sip_denied_udp",
            v4(OUTSIDER).udp(5060, 5060).payload(sip),
            Reason::SipDenied,
            denied,
        ),
        class(
            "SIP denied, TCP",
            "sip_denied_tcp",
            v4(OUTSIDER).tcp(40123, 5061).payload(sip),
            Reason::SipDenied,
            denied,
        ),
        class(
            "other (ICMP echo)",
            "other",
            v4(OUTSIDER).icmp_echo().payload(&[0; 56]),
            Reason::Other,
            plain,
        ),
        class(
            "other (SSH)",
            "other_ssh",
            v4(OUTSIDER)
                .tcp(40123, 22)
                .payload(b"SSH-2.0-OpenSSH_9.2\r\n"),
            Reason::Other,
            plain,
        ),
        class(
            "non-IP (ARP)",
            "non_ip",
            Frame::arp(OUTSIDER, PBX),
            Reason::NonIp,
            plain,
        ),
        class(
            "malformed (UDP header cut)",
            "malformed",
            v4(OUTSIDER).udp(5060, 5060).cut_to(38),
            Reason::Malformed,
            plain,
        ),
        class(
            "VLAN-tagged SIP allowed",
            "vlan_sip",
            v4(provider).vlan(0x8100, 10).udp(5060, 5060).payload(sip),
            Reason::SipAllowed,
            Yardstick::Counterpart("sip_allowed_udp", TARGET_OTHER_NS),
        ),
        class(
            "IPv6 SIP denied",
            "ipv6_sip",
            v6(OUTSIDER6).udp(5060, 5060).payload(sip),
            Reason::SipDenied,
            Yardstick::Counterpart("sip_denied_udp", TARGET_OTHER_NS),
        ),
        class(
            "first fragment, SIP allowed",
            "first_fragment",
            v4(provider).udp(5060, 5060).payload(sip).fragment(0, true),
            Reason::SipAllowed,
            Yardstick::Same(TARGET_OTHER_NS),
        ),
        class(
            "non-first fragment",
            "non_first_fragment",
            v4(OUTSIDER).raw(17, &[0; 64]).fragment(185, false),
            Reason::Fragment,
            plain,
        ),
    ]
}

/// Medians in ns per packet of one class at one allowlist size. The
/// differences are medians of each sample's own difference (its programs
/// timed back to back), which a phase change of the VM between samples
/// moves far less than a difference of medians.
#[derive(Clone, Copy)]
struct Figure {
    prog: f64,
    floor: f64,
    /// The Rust reference on the yardstick's frame.
    reference: f64,
    /// The floor on the yardstick's frame.
    reference_floor: f64,
    /// The C reference on the yardstick's frame, when clang was there.
    reference_c: Option<f64>,
    /// Median of sipwall − floor.
    own: f64,
    /// Median of reference − its floor (NaN without references).
    reference_own: f64,
    /// Median of (sipwall − floor) − (reference − its floor).
    over_reference: f64,
}

impl Figure {
    /// sipwall's own cost: over the floor.
    fn own(self) -> f64 {
        self.own
    }

    /// The reference's own cost on the yardstick's frame.
    fn reference_own(self) -> f64 {
        self.reference_own
    }

    /// What sipwall costs beyond the reference.
    fn over_reference(self) -> f64 {
        self.over_reference
    }

    fn over_reference_c(self) -> Option<f64> {
        self.reference_c
            .map(|c| self.own() - (c - self.reference_floor))
    }
}

pub struct Tier1 {
    classes: Vec<Class>,
    /// figures[size index][class index]
    figures: Vec<Vec<Figure>>,
    /// Per class: growth with the allowlist (see [`Tier1::growth`]).
    growth: Vec<f64>,
    repeat: u32,
    samples: usize,
    /// Why the C reference was left out, when it was.
    c_skipped: Option<String>,
    sizes: Sizes,
    before: (Sizes, String),
}

/// Index of the class whose frame the reference runs for class `ci`.
fn yardstick_index(classes: &[Class], ci: usize) -> Result<usize> {
    match classes[ci].yardstick {
        Yardstick::Same(_) => Ok(ci),
        Yardstick::Counterpart(key, _) => classes
            .iter()
            .position(|c| c.key == key)
            .with_context(|| format!("no class {key}")),
    }
}

fn want_verdict(reason: Reason) -> Verdict {
    if reason.drops() {
        Verdict::Drop
    } else {
        Verdict::Pass
    }
}

/// XDP action of a verdict.
fn action(v: Verdict) -> u32 {
    match v {
        Verdict::Drop => 1,
        Verdict::Pass => 2,
        Verdict::Other(n) => n,
    }
}

pub fn run(scale: Scale, before_object: Option<&std::path::Path>) -> Result<Tier1> {
    let classes = classes();
    let progs = BenchProgs::load()?;
    let floor = progs.xdp(PASS)?;
    let reference = progs.xdp(REFERENCE)?;
    let (reference_c, c_skipped) = match ReferenceC::load()? {
        Ok(c) => (Some(c), None),
        Err(why) => {
            progress(format!("tier 1: the reference in C is left out: {why}"));
            (None, Some(why))
        }
    };
    let reference_c = match &reference_c {
        Some(c) => Some(c.xdp()?),
        None => None,
    };
    let yardsticks: Vec<usize> = (0..classes.len())
        .map(|ci| yardstick_index(&classes, ci))
        .collect::<Result<_>>()?;
    // The references must judge their frames as sipwall does.
    for &yi in &yardsticks {
        let c = &classes[yi];
        let want = action(want_verdict(c.reason));
        for (name, prog) in [("reference", Some(reference)), ("C reference", reference_c)] {
            if let Some(prog) = prog {
                let (got, _) = progs::time(prog, &c.frame, 1)?;
                ensure!(
                    got == want,
                    "tier 1 class {:?}: the {name} returned action {got}, expected {want}",
                    c.name
                );
            }
        }
    }
    let sizes = {
        // The same program, loaded once more to read its figures.
        let ebpf = filter_kernel::program::load(None)?;
        size::of(filter_kernel::program::program(&ebpf)?)?
    };
    let before = match before_object {
        Some(path) => (
            size::of_object(path)?,
            format!("measured now from {}", path.display()),
        ),
        None => (
            size::BEFORE_MAIN_E6B8ADD,
            "the program before its fast paths, recorded on kernel 6.18 (x86-64 JIT)".to_string(),
        ),
    };
    // One program per allowlist size, all timed within each sample, so
    // that the VM's phases hit every size alike and growth is each
    // sample's own difference.
    let mut runners = Vec::new();
    for size in SIZES {
        check_stop()?;
        progress(format!("tier 1: allowlist of {size} prefixes"));
        let runner = Runner::new(&ruleset(allowlist(size, 1)))
            .with_context(|| format!("installing an allowlist of {size}"))?;
        for c in &classes {
            let out = runner.run(&c.frame)?;
            let want = want_verdict(c.reason);
            ensure!(
                out.reason() == Some(c.reason) && out.verdict == want,
                "tier 1 class {:?} at size {size}: expected {} ({want:?}), the program said {:?}",
                c.name,
                c.reason.name(),
                out
            );
        }
        runners.push(runner);
    }
    let n = classes.len();
    // [size][class]
    let (mut prog_ns, mut floor_ns) = (
        vec![vec![Vec::new(); n]; SIZES.len()],
        vec![vec![Vec::new(); n]; SIZES.len()],
    );
    // The references do not depend on the allowlist: timed once a sample.
    let (mut ref_ns, mut ref_floor_ns, mut ref_c_ns) = (
        vec![Vec::new(); n],
        vec![Vec::new(); n],
        vec![Vec::new(); n],
    );
    for _ in 0..scale.samples {
        check_stop()?;
        for (i, c) in classes.iter().enumerate() {
            for (si, runner) in runners.iter().enumerate() {
                floor_ns[si][i].push(progs::time(floor, &c.frame, scale.repeat)?.1);
                prog_ns[si][i].push(runner.time(&c.frame, scale.repeat)?.1);
            }
            let frame = &classes[yardsticks[i]].frame;
            if yardsticks[i] != i {
                ref_floor_ns[i].push(progs::time(floor, frame, scale.repeat)?.1);
            }
            ref_ns[i].push(progs::time(reference, frame, scale.repeat)?.1);
            if let Some(c) = reference_c {
                ref_c_ns[i].push(progs::time(c, frame, scale.repeat)?.1);
            }
        }
    }
    let mut figures = Vec::new();
    for si in 0..SIZES.len() {
        let row: Vec<Figure> = (0..n)
            .map(|i| {
                let floor = median(&floor_ns[si][i]);
                // The reference's floor is the class's own floor sample
                // (at the smallest size) unless the yardstick is another
                // class's frame.
                let ref_floor = if ref_floor_ns[i].is_empty() {
                    &floor_ns[0][i]
                } else {
                    &ref_floor_ns[i]
                };
                let own = differences(&prog_ns[si][i], &floor_ns[si][i]);
                let ref_own = differences(&ref_ns[i], ref_floor);
                let over = differences(&own, &ref_own);
                Figure {
                    prog: median(&prog_ns[si][i]),
                    floor,
                    reference: median(&ref_ns[i]),
                    reference_floor: median(ref_floor),
                    reference_c: (!ref_c_ns[i].is_empty()).then(|| median(&ref_c_ns[i])),
                    own: median(&own),
                    reference_own: median(&ref_own),
                    over_reference: median(&over),
                }
            })
            .collect();
        let worst = row.iter().map(|f| f.own()).fold(f64::MIN, f64::max);
        progress(format!(
            "tier 1: allowlist of {}: floor {:.1} ns, worst class {worst:.1} ns over it",
            SIZES[si],
            median(&row.iter().map(|f| f.floor).collect::<Vec<_>>())
        ));
        figures.push(row);
    }
    // Growth: each sample's own difference between a larger allowlist
    // and the smallest, the largest median over the larger sizes.
    let growth: Vec<f64> = (0..n)
        .map(|i| {
            (1..SIZES.len())
                .map(|si| median(&differences(&prog_ns[si][i], &prog_ns[0][i])))
                .fold(f64::MIN, f64::max)
        })
        .collect();
    Ok(Tier1 {
        classes,
        figures,
        growth,
        repeat: scale.repeat,
        samples: scale.samples,
        c_skipped,
        sizes,
        before,
    })
}

impl Tier1 {
    /// Growth of a class's cost from the smallest to any larger allowlist:
    /// the median of each sample's own difference (the sizes are timed
    /// within each sample), the largest over the larger sizes.
    fn growth(&self, ci: usize) -> f64 {
        self.growth[ci]
    }

    fn met(&self, ci: usize) -> bool {
        self.figures[0][ci].over_reference() <= self.classes[ci].yardstick.allowance()
    }

    pub fn print(&self, out: &mut Report) {
        out.line("");
        out.line(format!(
            "Tier 1 — cost per packet (BPF_PROG_TEST_RUN, repeat {}, median of {}, interleaved), ns",
            self.repeat, self.samples
        ));
        let mut header = vec!["class", "floor", "reference"];
        if self.c_skipped.is_none() {
            header.push("ref. C");
        }
        header.extend([
            "sipwall",
            "own",
            "ref. own",
            "over ref.",
            "target",
            "",
            "ratio",
            "1,000",
            "100,000",
            "growth",
            "",
        ]);
        let rows: Vec<Vec<String>> = self
            .classes
            .iter()
            .enumerate()
            .map(|(ci, c)| {
                let f = self.figures[0][ci];
                let growth = self.growth(ci);
                let counterpart = match c.yardstick {
                    Yardstick::Same(_) => "",
                    Yardstick::Counterpart(..) => "*",
                };
                let mut row = vec![
                    c.name.to_string(),
                    format!("{:.1}", f.floor),
                    format!("{:.1}{counterpart}", f.reference),
                ];
                if self.c_skipped.is_none() {
                    row.push(match f.reference_c {
                        Some(ns) => format!("{ns:.1}{counterpart}"),
                        None => "-".into(),
                    });
                }
                row.extend([
                    format!("{:.1}", f.prog),
                    format!("{:.1}", f.own()),
                    format!("{:.1}", f.reference_own()),
                    format!("{:+.1}", f.over_reference()),
                    format!("<= {:.0}", c.yardstick.allowance()),
                    verdict(self.met(ci)).to_string(),
                    format!("{:.2}x", f.prog / f.floor),
                    format!("{:.1}", self.figures[1][ci].prog),
                    format!("{:.1}", self.figures[2][ci].prog),
                    format!("{growth:+.1}"),
                    verdict(growth <= SCALE_TARGET_NS).to_string(),
                ]);
                row
            })
            .collect();
        out.table(&header, &rows);
        out.line(format!(
            "(the kernel reports whole ns per run; floor: an empty XDP program on the same frame; reference: a minimal hand-written Rust program of the default policy for plain IPv4 (* on the plain-IPv4 counterpart's frame); own, ref. own and over ref.: medians of each sample's own difference (sipwall - floor, reference - floor, and the one less the other), the programs of a sample timed back to back; ratio = sipwall / floor; floor..ratio with the provider's 2 prefixes; 1,000 and 100,000: sipwall's ns with that many prefixes, IPv4 and IPv6 of mixed lengths; growth: median of each sample's own difference to the 2-prefix program (the sizes timed within each sample), the larger of the two sizes, target <= {SCALE_TARGET_NS:.0} ns)"
        ));
        match &self.c_skipped {
            None => out.line(
                "(ref. C: the same reference written in C (tests/bench/c/reference.c), built with clang -O2)",
            ),
            Some(why) => out.line(format!("(the reference in C was left out: {why})")),
        }
        out.line("");
        out.line("Program size (the kernel's program info, as `bpftool prog show` reports it)");
        let (before, how) = &self.before;
        let row = |name: &str, f: fn(&Sizes) -> u32| {
            vec![
                name.to_string(),
                f(before).to_string(),
                f(&self.sizes).to_string(),
            ]
        };
        out.table(
            &["figure", "before", "now"],
            &[
                row("xlated instructions", |s| s.xlated_insns),
                row("  of them in the main function", |s| s.main_insns),
                row("JIT-compiled bytes", |s| s.jited_bytes),
                row("instructions the verifier processed", |s| s.verified_insns),
                row("byte stores (BPF_ST/STX size B)", |s| s.byte_stores),
                row("  of them in the main function", |s| s.byte_stores_main),
            ],
        );
        out.line(format!(
            "(before: {how}; the byte stores outside the main function are the log record of a denied source, sent at most {} times a second per CPU when logging is on)",
            filter_common::LOG_RATE_PER_SEC
        ));
    }

    pub fn to_json(&self) -> Value {
        let classes: Vec<Value> = self
            .classes
            .iter()
            .enumerate()
            .map(|(ci, c)| {
                let sizes: serde_json::Map<String, Value> = SIZES
                    .iter()
                    .enumerate()
                    .map(|(si, size)| {
                        let f = self.figures[si][ci];
                        (
                            size.to_string(),
                            json!({
                                "ns": f.prog,
                                "floor_ns": f.floor,
                                "own_ns": f.own(),
                                "ratio": f.prog / f.floor,
                            }),
                        )
                    })
                    .collect();
                let f = self.figures[0][ci];
                json!({
                    "class": c.key,
                    "description": c.name,
                    "reason": c.reason.name(),
                    "frame_bytes": c.frame.len(),
                    "by_allowlist_size": sizes,
                    "growth_ns": self.growth(ci),
                    "reference": {
                        "frame_of": match c.yardstick {
                            Yardstick::Same(_) => c.key,
                            Yardstick::Counterpart(key, _) => key,
                        },
                        "ns": f.reference,
                        "floor_ns": f.reference_floor,
                        "own_ns": f.reference_own(),
                        "c_ns": f.reference_c,
                        "sipwall_over_reference_ns": f.over_reference(),
                        "sipwall_over_reference_c_ns": f.over_reference_c(),
                        "target_over_reference_ns": c.yardstick.allowance(),
                        "met": self.met(ci),
                    },
                })
            })
            .collect();
        json!({
            "repeat": self.repeat,
            "samples": self.samples,
            "allowlist_sizes": SIZES,
            "target_growth_ns": SCALE_TARGET_NS,
            "reference_c": match &self.c_skipped {
                None => json!("tests/bench/c/reference.c, clang -O2"),
                Some(why) => json!({ "skipped": why }),
            },
            "classes": classes,
            "program_size": {
                "now": self.sizes.to_json(),
                "before": self.before.0.to_json(),
                "before_source": self.before.1,
            },
        })
    }
}
