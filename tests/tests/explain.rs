//! `sipwall explain`: every row of docs/policy.md's three decision tables
//! reached through the real binary with a described packet, the row and
//! key it names taken from `filter_policy::rows` (which a unit test holds equal
//! to docs/policy.md); the same packets replayed by `check --pcap` get the
//! same verdict and counter; bad descriptions exit 2 with the expected
//! form; `-i` reads the live policy, without the ban set. Needs root
//! (CAP_BPF) and `cargo build -p filter-user`.
use std::{
    fs::File,
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicUsize, Ordering},
};

use filter_policy::rows::{Table, ROWS};
use pcap_file::{
    pcap::{PcapHeader, PcapPacket, PcapWriter},
    DataLink,
};
use serde_json::Value;
use sipwall::ops::describe;
use sipwall_tests::{netns::TestLab, skip_unless_root};

/// A directory of its own for one test, removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "sipwall-explain-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        TempDir(path)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sipwall(args: &[&str]) -> std::process::Output {
    Command::new(sipwall_tests::netns::sipwall_bin())
        .args(args)
        .output()
        .expect("running sipwall")
}

fn text(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

const STRICT: &str = r#"
[policy]
mode = "strict"
[media]
rtp_ports = "10000-20000"
check_rtp = true
[[strict.allow]]
proto = "tcp"
ports = [22]
from = ["198.51.100.0/24"]
"#;

const CHECK_RTP: &str = "[media]\ncheck_rtp = true\n";

const EGRESS: &str = r#"
[media]
rtp_ports = "10000-20000"
[[strict.allow]]
proto = "tcp"
ports = [22]
from = ["198.51.100.0/24"]
[egress]
mode = "strict"
dns = ["203.0.113.53"]
[[egress.allow]]
proto = "tcp"
ports = [443]
to = ["203.0.113.0/24"]
"#;

/// (table, row, counter, configuration, packet description).
/// Calls mode with no reader and no pinhole (explain's private maps hold
/// none): `unattended = "closed"` leaves media nothing to pass through.
const CALLS: &str = "[media]\nmode = \"calls\"\nunattended = \"closed\"\n";

const STRICT_CALLS: &str = r#"
[policy]
mode = "strict"
[media]
rtp_ports = "10000-20000"
mode = "calls"
unattended = "closed"
"#;

const EGRESS_CALLS: &str = r#"
[media]
rtp_ports = "10000-20000"
mode = "calls"
unattended = "closed"
[egress]
mode = "strict"
"#;

type Case = (
    Table,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

#[rustfmt::skip]
const CASES: &[Case] = &[
    (Table::Guard, "3", "sip_allowed", "", "udp 44.229.228.186:5060 > 192.0.2.10:5060"),
    (Table::Guard, "3", "sip_allowed", "", "vlan 12 tcp 44.238.177.138:40000 > 192.0.2.10:5061 flags S"),
    (Table::Guard, "4", "sip_denied", "", "udp 203.0.113.9:5060 > 192.0.2.10:5060"),
    (Table::Guard, "4", "sip_denied", "", "tcp [2001:db8::9]:33000 > [2001:db8::10]:5061 flags SA"),
    (Table::Guard, "4", "sip_denied", "", "sctp 203.0.113.9:5060 > 192.0.2.10:5060"),
    (Table::Guard, "5", "rtp_allowed", "", "udp 203.0.113.9:1234 > 192.0.2.10:41000"),
    (Table::Guard, "5a", "rtp_invalid", CHECK_RTP, "udp 203.0.113.9:1234 > 192.0.2.10:41000 payload 0"),
    (Table::Guard, "5c", "rtp_allowed", "", "udp 203.0.113.9:41000 > 192.0.2.10:1234"),
    (Table::Guard, "5u", "rtp_unsolicited", CALLS, "udp 203.0.113.9:1234 > 192.0.2.10:41000"),
    (Table::Guard, "5v", "other", CALLS, "udp 203.0.113.9:41000 > 192.0.2.10:1234"),
    (Table::Guard, "6", "fragment", "", "udp 203.0.113.9:5060 > 192.0.2.10:5060 fragment"),
    (Table::Guard, "7", "other", "", "tcp 203.0.113.9:33000 > 192.0.2.10:22"),
    (Table::Guard, "7", "other", "", "icmp 2001:db8::9 > 2001:db8::10"),
    (Table::Strict, "3", "sip_allowed", STRICT, "udp 44.229.228.186:5060 > 192.0.2.10:5060"),
    (Table::Strict, "3", "sip_denied", STRICT, "tcp 203.0.113.9:33000 > 192.0.2.10:5060"),
    (Table::Strict, "4", "rtp_allowed", STRICT, "udp 203.0.113.9:41000 > 192.0.2.10:10000"),
    (Table::Strict, "4", "rtp_invalid", STRICT, "udp 203.0.113.9:41000 > 192.0.2.10:10000 payload 4"),
    (Table::Strict, "4u", "rtp_unsolicited", STRICT_CALLS, "udp 203.0.113.9:41000 > 192.0.2.10:10000"),
    (Table::Strict, "5", "essential", STRICT, "icmp 203.0.113.9 > 192.0.2.10 type 3 code 4"),
    (Table::Strict, "5", "essential", STRICT, "icmp 2001:db8::9 > 2001:db8::10 type 135"),
    (Table::Strict, "7", "rule_allowed", STRICT, "tcp 198.51.100.7:50000 > 192.0.2.10:22"),
    (Table::Strict, "8", "fragment", STRICT, "tcp 203.0.113.9:50000 > 192.0.2.10:22 fragment"),
    (Table::Strict, "9", "rtp_outside", STRICT, "udp 203.0.113.9:41000 > 192.0.2.10:30000"),
    (Table::Strict, "10", "denied", STRICT, "tcp 203.0.113.9:50000 > 192.0.2.10:22"),
    (Table::Egress, "2", "out_sip_allowed", EGRESS, "udp 192.0.2.10:5060 > 44.229.228.186:5060"),
    (Table::Egress, "2", "out_sip_denied", EGRESS, "udp 192.0.2.10:5060 > 198.51.100.9:5060"),
    (Table::Egress, "2u", "out_denied", EGRESS_CALLS, "udp 192.0.2.10:10000 > 198.51.100.9:41000"),
    (Table::Egress, "3", "out_rtp_allowed", EGRESS, "udp 192.0.2.10:33333 > 198.51.100.9:41000"),
    (Table::Egress, "4", "out_reply", EGRESS, "tcp 192.0.2.10:22 > 198.51.100.7:50000 flags SA"),
    (Table::Egress, "5", "out_essential", EGRESS, "udp 192.0.2.10:33333 > 203.0.113.53:53"),
    (Table::Egress, "6", "out_rule_allowed", EGRESS, "tcp 192.0.2.10:50000 > 203.0.113.80:443"),
    (Table::Egress, "7", "out_fragment", EGRESS, "tcp 192.0.2.10:50000 > 198.51.100.9:80 fragment"),
    (Table::Egress, "8", "out_denied", EGRESS, "tcp 192.0.2.10:50000 > 198.51.100.9:80"),
];

/// Rows no description reaches, and why; the packet table's frames reach
/// them (packet_table.rs, `explain_agrees_with_check_on_every_frame`).
const NOT_DESCRIBABLE: &[(Table, &str, &str)] = &[
    (Table::Guard, "non_ip", "a description is always IP"),
    (
        Table::Guard,
        "malformed",
        "a description builds valid headers",
    ),
    (Table::Guard, "banned", "explain leaves the ban set out"),
    (
        Table::Guard,
        "sip_ratelimited",
        "explain starts with full buckets",
    ),
    (
        Table::Guard,
        "rtp_ratelimited",
        "explain starts with full buckets",
    ),
    (Table::Strict, "non_ip", "a description is always IP"),
    (
        Table::Strict,
        "malformed",
        "a description builds valid headers",
    ),
    (Table::Strict, "banned", "explain leaves the ban set out"),
    (
        Table::Strict,
        "sip_ratelimited",
        "explain starts with full buckets",
    ),
    (
        Table::Strict,
        "rtp_ratelimited",
        "explain starts with full buckets",
    ),
    (Table::Strict, "reply", "explain knows no flows of the host"),
    (Table::Egress, "out_non_ip", "a description is always IP"),
];

/// Rows a described packet cannot reach, where the counter has other rows
/// that it can.
const NOT_DESCRIBABLE_ROWS: &[(Table, &str, &str, &str)] = &[(
    Table::Egress,
    "2u",
    "out_rtp_allowed",
    "explain's private maps hold no pinhole",
)];

/// `explain --json` of one case, checked for exit 0 and parsed.
fn explain_json(config: Option<&Path>, direction: &str, description: &str) -> Value {
    let mut args = vec!["explain", "--json", "--direction", direction];
    if let Some(c) = config {
        args.extend(["-c", text(c)]);
    }
    args.push(description);
    let out = sipwall(&args);
    assert!(
        out.status.success(),
        "sipwall {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn direction(table: Table) -> &'static str {
    if table == Table::Egress {
        "out"
    } else {
        "in"
    }
}

#[test]
fn every_row_of_the_policy_tables_through_explain() {
    skip_unless_root!();
    let dir = TempDir::new();
    for row in ROWS {
        let cased = CASES
            .iter()
            .any(|c| c.0 == row.table && c.1 == row.id && c.2 == row.counter);
        let excused = NOT_DESCRIBABLE
            .iter()
            .any(|n| n.0 == row.table && n.1 == row.counter)
            || NOT_DESCRIBABLE_ROWS
                .iter()
                .any(|n| n.0 == row.table && n.1 == row.id && n.2 == row.counter);
        assert!(
            cased != excused,
            "{:?} row {} ({}): needs exactly one of a case or a reason it cannot be described",
            row.table,
            row.id,
            row.counter
        );
    }
    for (n, &(table, id, counter, config, description)) in CASES.iter().enumerate() {
        let config = (!config.is_empty()).then(|| dir.write(&format!("{n}.toml"), config));
        let got = explain_json(config.as_deref(), direction(table), description);
        let row = ROWS
            .iter()
            .find(|r| r.table == table && r.id == id && r.counter == counter)
            .expect("the case's row");
        let verdict = if counter.contains("denied")
            || counter.contains("invalid")
            || counter == "rtp_outside"
            || counter == "rtp_unsolicited"
        {
            "drop"
        } else {
            "pass"
        };
        assert_eq!(got["verdict"], verdict, "{description}: {got}");
        assert_eq!(got["reason"], counter, "{description}: {got}");
        assert_eq!(got["row"], id, "{description}: {got}");
        assert_eq!(got["table"], table.name(), "{description}: {got}");
        assert_eq!(
            got["key"],
            serde_json::to_value(row.key).unwrap(),
            "{description}: {got}"
        );
        let text = got["text"].as_str().expect("text");
        assert!(text.starts_with(row.text), "{description}: {got}");
    }
}

#[test]
fn text_names_the_verdict_counter_row_and_key() {
    skip_unless_root!();
    let out = sipwall(&["explain", "udp 203.0.113.9:5060 > 192.0.2.1:5060"]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with(
            "drop sip_denied — row 4: a signalling port, source not in [signalling] allow (2 prefixes)\n"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("key: [signalling] allow\n"), "{stdout}");
    assert!(stdout.contains("policy: the defaults"), "{stdout}");
    // Several words are one description.
    let out = sipwall(&[
        "explain",
        "--json",
        "udp",
        "44.229.228.186:5060",
        ">",
        "192.0.2.1:5060",
    ]);
    let got: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(got["reason"], "sip_allowed", "{got}");
}

#[test]
fn dry_run_and_open_egress_say_what_they_are() {
    skip_unless_root!();
    let dir = TempDir::new();
    let dry = dir.write("dry.toml", "[policy]\ndry_run = true\n");
    let got = explain_json(Some(&dry), "in", "udp 203.0.113.9:5060 > 192.0.2.1:5060");
    assert_eq!(
        (&got["verdict"], &got["reason"], &got["dry_run"]),
        (&"pass".into(), &"sip_denied".into(), &true.into()),
        "{got}"
    );
    let got = explain_json(None, "out", "udp 192.0.2.1:5060 > 198.51.100.9:5060");
    assert_eq!(got["verdict"], "pass", "{got}");
    assert_eq!(got["reason"], Value::Null, "{got}");
    assert_eq!(got["key"], "[egress] mode", "{got}");
}

#[test]
fn a_description_that_does_not_parse_exits_2_with_the_form() {
    skip_unless_root!();
    for bad in [
        "udp 203.0.113.9:5060 192.0.2.1:5060",
        "gre 203.0.113.9 > 192.0.2.1",
        "udp 203.0.113.9:5060 > [2001:db8::1]:5060",
        "tcp 203.0.113.9:1 > 192.0.2.1:22 flags Q",
        "vlan 5000 udp 203.0.113.9:5060 > 192.0.2.1:5060",
        "udp 203.0.113.9:5060 > 192.0.2.1:5060 bogus",
    ] {
        let out = sipwall(&["explain", bad]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {err}");
        assert!(
            err.contains("expected: [vlan N] tcp|udp|sctp"),
            "{bad}: {err}"
        );
        assert!(out.stdout.is_empty(), "{bad}: printed {:?}", out.stdout);
    }
    let out = sipwall(&[
        "explain",
        "-i",
        "eth0",
        "-c",
        "/dev/null",
        "udp 1.2.3.4:1 > 1.2.3.5:2",
    ]);
    assert_eq!(out.status.code(), Some(2), "-i with -c: {out:?}");
}

/// The described packets, replayed by `check --pcap`, get what `explain`
/// said: the same verdict and counter.
#[test]
fn check_pcap_agrees_with_explain_on_the_described_packets() {
    skip_unless_root!();
    let dir = TempDir::new();
    for config in [
        "",
        CHECK_RTP,
        STRICT,
        EGRESS,
        CALLS,
        STRICT_CALLS,
        EGRESS_CALLS,
    ] {
        let cases: Vec<&Case> = CASES.iter().filter(|c| c.3 == config).collect();
        let out = direction(cases[0].0);
        let path = dir.write("policy.toml", &format!("# the defaults but for:\n{config}"));
        let pcap = dir.0.join("described.pcap");
        let file = File::create(&pcap).expect("pcap file");
        let header = PcapHeader {
            datalink: DataLink::ETHERNET,
            ..Default::default()
        };
        let mut writer = PcapWriter::with_header(file, header).expect("pcap writer");
        for c in &cases {
            let frame = describe::frame(&describe::parse(c.4).expect(c.4));
            let packet = PcapPacket::new(Default::default(), frame.len() as u32, &frame);
            writer.write_packet(&packet).expect("pcap packet");
        }
        drop(writer);
        let run = sipwall(&[
            "check",
            "--pcap",
            text(&pcap),
            "-c",
            text(&path),
            "--json",
            "--direction",
            out,
        ]);
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let checked: Value = serde_json::from_slice(&run.stdout).expect("check --json");
        for (i, c) in cases.iter().enumerate() {
            let explained = explain_json(Some(&path), out, c.4);
            let p = &checked["packets"][i];
            assert_eq!(
                (&p["verdict"], &p["reason"]),
                (&explained["verdict"], &explained["reason"]),
                "{}: check {p}, explain {explained}",
                c.4
            );
        }
    }
}

/// `-i`: the live policy, read from the attachment's maps (an allowlist
/// changed live included), but not its ban set.
#[test]
fn explain_i_judges_by_the_live_policy_without_bans() {
    skip_unless_root!();
    let lab = TestLab::new();
    lab.attach(&[]);
    let iface = sipwall_tests::netns::PBX_IFACE;
    let packet = "udp 203.0.113.9:5060 > 192.0.2.1:5060";
    let json = |args: &[&str]| -> Value {
        let out = lab.sipwall_ok(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    };
    let before = json(&["explain", "-i", iface, "--json", packet]);
    assert_eq!(before["reason"], "sip_denied", "{before}");
    lab.sipwall_ok(&["allow", "add", "-i", iface, "203.0.113.9"]);
    lab.sipwall_ok(&["ban", "add", "-i", iface, "198.51.100.77"]);
    let after = json(&["explain", "-i", iface, "--json", packet]);
    assert_eq!(
        (&after["verdict"], &after["reason"], &after["row"]),
        (&"pass".into(), &"sip_allowed".into(), &"3".into()),
        "{after}"
    );
    assert!(
        after["text"].as_str().unwrap().ends_with("(3 prefixes)"),
        "{after}"
    );
    assert!(after["policy"].as_str().unwrap().contains(iface), "{after}");
    assert!(after["notes"].to_string().contains("ban set"), "{after}");
    // A banned source is judged by the rows after the ban set.
    let banned = json(&[
        "explain",
        "-i",
        iface,
        "--json",
        "udp 198.51.100.77:5060 > 192.0.2.1:5060",
    ]);
    assert_eq!(banned["reason"], "sip_denied", "{banned}");
    // The live counters did not move: explain runs on private maps.
    assert_eq!(lab.counters()["sip_allowed"].packets, 0);
}
