//! What the operator reads, byte for byte: `stats` (table, rates and
//! JSON), `status --json`, `top --json`, `check` (table and JSON),
//! `doctor --json` and the Prometheus exposition, rendered from fixed
//! inputs and compared with the files in `golden/`. A change to any of these outputs shows here as
//! a diff; when the change is meant, `SIPWALL_BLESS=1 cargo test -p
//! sipwall-tests --test rendering` rewrites the files (review the diff; a
//! new file must exist, empty, before the first run).
//! Needs no root: nothing is loaded.
use std::{net::IpAddr, path::Path};

use filter_common::{
    media::{MediaState, MediaStats},
    Counter, OutReason, Reason, OUT_REASON_COUNT,
};
use filter_kernel::{
    iface::LinkHeader,
    netns::NetnsId,
    pins::{Elsewhere, PinRoot},
    runner::Verdict,
};
use filter_policy::config;
use sipwall::ops::{
    check::{self, Checked, Judged},
    media_metrics, metrics,
    snapshot::{MediaSnapshot, Snapshot},
    stats, status,
};

const GUARD: &str = "[media]\nrtp_ports = \"10000-20000\"\n";

/// Strict, in dry run, with strict egress, media by call.
const STRICT_EGRESS: &str = concat!(
    "[media]\nrtp_ports = \"16384-32768\"\nmode = \"calls\"\nunattended = \"closed\"\n",
    "[policy]\nmode = \"strict\"\ndry_run = true\n",
    "[[strict.allow]]\nproto = \"tcp\"\nports = [22]\nfrom = [\"198.51.100.0/24\"]\n",
    "[egress]\nmode = \"strict\"\ndns = [\"203.0.113.53\"]\n",
    "[[egress.allow]]\nproto = \"tcp\"\nports = [443]\nto = [\"203.0.113.50/32\"]\n",
);

/// Counters that differ in every slot and between readings (`seed`).
fn counters<const N: usize>(seed: u64) -> [Counter; N] {
    std::array::from_fn(|i| Counter {
        packets: seed * 1000 + i as u64 * 7,
        bytes: seed * 100_000 + i as u64 * 611,
    })
}

/// A guard-mode interface, a strict one in dry run with strict egress
/// (both with rtp_outside counts: a hint), and one whose maps could not be
/// read.
fn snapshots(seed: u64) -> Vec<Snapshot> {
    let parse = |toml| config::parse(toml, "golden.toml").unwrap_or_else(|e| panic!("{e}"));
    vec![
        Snapshot {
            iface: "eth0".into(),
            attached: true,
            mode: "native",
            program_id: Some(42),
            link: Some(LinkHeader::Ethernet),
            ruleset: Some(parse(GUARD)),
            counters: Some(counters(seed)),
            out_counters: Some([Counter::default(); OUT_REASON_COUNT as usize]),
            bans: Some(Vec::new()),
            // Range mode: the media maps read, nothing to report but zeros.
            media: Some(MediaSnapshot {
                calls: false,
                reader: MediaState::default(),
                stats: MediaStats::default(),
                pinholes_active: 0,
                now_ns: 0,
            }),
            unreadable: None,
            problems: Vec::new(),
        },
        Snapshot {
            iface: "ens5".into(),
            attached: true,
            mode: "skb",
            program_id: Some(7),
            link: Some(LinkHeader::Ip),
            ruleset: Some(parse(STRICT_EGRESS)),
            counters: Some(counters(seed + 2)),
            out_counters: Some(counters(seed + 3)),
            bans: None,
            // Calls mode, its reader's heartbeat a second old.
            media: Some(MediaSnapshot {
                calls: true,
                reader: MediaState {
                    heartbeat_ns: 1_000_000_000,
                    reader_pid: 4242,
                    reserved: 0,
                },
                stats: MediaStats {
                    copies: 900,
                    lost: 3,
                },
                pinholes_active: 12,
                now_ns: 2_000_000_000,
            }),
            unreadable: None,
            problems: Vec::new(),
        },
        Snapshot {
            iface: "eth1".into(),
            attached: false,
            mode: "unknown",
            program_id: None,
            link: None,
            ruleset: None,
            counters: None,
            out_counters: None,
            bans: None,
            media: None,
            unreadable: None,
            problems: vec!["the maps could not be read".into()],
        },
    ]
}

fn checked() -> Vec<Checked> {
    let one = |index, result| Checked {
        index,
        len: 60 + index,
        truncated_from: (index == 3).then_some(1500),
        result,
    };
    vec![
        one(0, Judged::Ran(Verdict::Pass, Reason::SipAllowed)),
        one(1, Judged::Ran(Verdict::Drop, Reason::SipDenied)),
        one(2, Judged::Ran(Verdict::Drop, Reason::SipDenied)),
        one(3, Judged::RanOut(Verdict::Drop, OutReason::Denied)),
        one(4, Judged::Outbound),
        one(5, Judged::Inbound),
        one(6, Judged::NotRun("too short".into())),
        one(7, Judged::Ran(Verdict::Drop, Reason::RtpUnsolicited)),
    ]
}

/// Compares `got` with `golden/NAME` (built into the test, so that it
/// runs from anywhere, as `nobody` too); `SIPWALL_BLESS=1` rewrites it.
macro_rules! golden {
    ($name:literal, $got:expr $(,)?) => {
        compare($name, include_str!(concat!("golden/", $name)), $got)
    };
}

fn compare(name: &str, want: &str, got: &str) {
    if std::env::var_os("SIPWALL_BLESS").is_some() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden")
            .join(name);
        std::fs::write(&path, got).unwrap();
        return;
    }
    assert!(
        want == got,
        "golden/{name} differs:\n--- want\n{want}\n--- got\n{got}"
    );
}

/// A document as the command prints it (with its newline).
macro_rules! printed {
    ($doc:expr) => {
        sipwall::ops::json::line($doc) + "\n"
    };
}

#[test]
fn stats_table_rates_and_json() {
    let now = snapshots(5);
    let before = snapshots(3);
    golden!("stats.txt", &stats::to_text(&now, None));
    golden!(
        "stats-watch.txt",
        &stats::to_text(&now, Some((&before, 2.0))),
    );
    golden!("stats.json", &printed!(&stats::to_json(&now)));
}

#[test]
fn metrics_exposition() {
    // The call reader of this process follows ens5's calls.
    let reader = media_metrics::for_iface("ens5");
    reader.set_calls_active(6);
    for secs in [0.0003, 0.0003, 0.02, 2.0] {
        reader.observe_install(secs);
    }
    golden!("metrics.txt", &metrics::render(&snapshots(5)));
}

#[test]
fn status_json() {
    let root = PinRoot::new(Path::new("/sys/fs/bpf/sipwall-golden"));
    let elsewhere = [Elsewhere {
        // Not an nsfs inode (those start at 0xF0000000): no name under /run/netns.
        netns: NetnsId(12345),
        iface: "veth9".into(),
    }];
    golden!(
        "status.json",
        &printed!(&status::to_json(&snapshots(5), &[], &root, &[])),
    );
    golden!(
        "status-elsewhere.json",
        &printed!(&status::to_json(
            &snapshots(5),
            &elsewhere,
            &root,
            &["eth9".to_string()],
        )),
    );
}

#[test]
fn top_json() {
    let sources: Vec<(IpAddr, Counter)> = vec![
        (
            "203.0.113.9".parse().unwrap(),
            Counter {
                packets: 90,
                bytes: 9000,
            },
        ),
        (
            "2001:db8::9".parse().unwrap(),
            Counter {
                packets: 3,
                bytes: 300,
            },
        ),
    ];
    golden!(
        "top.json",
        &printed!(&stats::top_json(Reason::SipDenied, &sources)),
    );
}

#[test]
fn check_table_and_json() {
    let text = check::to_text(&checked());
    golden!("check.txt", &text);
    // Every judged row's bytes end where the header's do, the longest
    // reason (`rtp_unsolicited`) included.
    let lines: Vec<&str> = text.lines().collect();
    let end = lines[0].find("bytes").unwrap() + "bytes".len();
    for line in lines[1..].iter().take_while(|l| !l.is_empty()) {
        if line.contains("error") {
            continue;
        }
        let number_end = line[..end].trim_end().len();
        assert_eq!(number_end, end, "misaligned: {line:?}\n{text}");
        assert!(
            line[end..].is_empty() || line[end..].starts_with("  "),
            "{line:?}"
        );
    }
    golden!("check.json", &printed!(&check::to_json(&checked(), None)));
    golden!(
        "check-note.json",
        &printed!(&check::to_json(&checked(), Some(check::STRICT_NOTE))),
    );
}

#[test]
fn doctor_json() {
    use sipwall::ops::doctor::{self, Check, Level};
    let checks = [
        Check {
            name: "kernel",
            level: Level::Ok,
            summary: "Linux 6.18".into(),
            action: None,
        },
        Check {
            name: "ephemeral ports",
            level: Level::Warn,
            summary: "overlap rtp_ports".into(),
            action: Some("narrow ip_local_port_range".into()),
        },
        Check {
            name: "dns",
            level: Level::Skip,
            summary: "no resolver".into(),
            action: None,
        },
    ];
    golden!("doctor.json", &printed!(&doctor::to_json(&checks)));
}
