//! `sipwall check --pcap`: the real binary replaying captures through the
//! real program. Captures are written here (pcap-file), by scapy, and
//! converted by editcap, to show the reader takes what other tools write;
//! broken captures and configurations must fail with a clear message and
//! exit status 2. Needs root (CAP_BPF) and `cargo build -p filter-user`.
use std::{
    borrow::Cow,
    fs::File,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use pcap_file::{
    pcap::{PcapHeader, PcapPacket, PcapWriter},
    pcapng::{
        blocks::{
            enhanced_packet::EnhancedPacketBlock,
            interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption},
        },
        PcapNgWriter,
    },
    DataLink,
};
use serde_json::Value;
use sipwall_tests::packet::{Frame, PROTO_UDP};

const PROVIDER_A: Ipv4Addr = Ipv4Addr::new(44, 229, 228, 186);
const STRANGER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);
const HOST: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);

/// A directory of its own for one test, removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "sipwall-check-pcap-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        TempDir(path)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sipwall_bin() -> PathBuf {
    let bin = match std::env::var_os("SIPWALL_BIN") {
        Some(p) => PathBuf::from(p),
        None => {
            let exe = std::env::current_exe().expect("test executable path");
            // target/<profile>/deps/check_pcap-HASH -> target/<profile>/sipwall
            exe.parent()
                .and_then(Path::parent)
                .expect("target dir")
                .join("sipwall")
        }
    };
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p filter-user` first or set SIPWALL_BIN",
        bin.display()
    );
    bin
}

struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

fn sipwall(args: &[&str]) -> Run {
    let out = Command::new(sipwall_bin())
        .args(args)
        .output()
        .expect("running sipwall");
    Run {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

/// `check --json`: (verdict, reason, len) per packet, indexes checked.
fn check_json(pcap: &Path, config: Option<&Path>) -> Vec<(String, String, u64)> {
    let mut args = vec!["check", "--pcap", path_str(pcap), "--json"];
    if let Some(c) = config {
        args.extend(["-c", path_str(c)]);
    }
    let run = sipwall(&args);
    assert_eq!(run.status, 0, "sipwall {args:?} failed: {}", run.stderr);
    let json: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("check --json printed invalid JSON ({e}): {}", run.stdout));
    let packets = json["packets"].as_array().expect("a packets array");
    packets
        .iter()
        .enumerate()
        .map(|(i, p)| {
            assert_eq!(p["index"], i, "packet {i} has index {}", p["index"]);
            (
                p["verdict"].as_str().expect("verdict").to_string(),
                p["reason"].as_str().unwrap_or("null").to_string(),
                p["len"].as_u64().expect("len"),
            )
        })
        .collect()
}

fn write_pcap(path: &Path, frames: &[Vec<u8>], datalink: DataLink) {
    let file = File::create(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let header = PcapHeader {
        datalink,
        ..PcapHeader::default()
    };
    let mut w = PcapWriter::with_header(file, header).expect("pcap header");
    for (i, f) in frames.iter().enumerate() {
        let ts = Duration::from_millis(1_700_000_000_000 + i as u64);
        w.write_packet(&PcapPacket::new(ts, f.len() as u32, f))
            .expect("pcap packet");
    }
}

fn write_pcapng(path: &Path, frames: &[Vec<u8>], linktype: DataLink) {
    let file = File::create(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut w = PcapNgWriter::new(file).expect("pcapng section");
    w.write_pcapng_block(InterfaceDescriptionBlock {
        linktype,
        snaplen: 0xffff,
        options: vec![],
    })
    .expect("pcapng interface");
    for (i, f) in frames.iter().enumerate() {
        w.write_pcapng_block(EnhancedPacketBlock {
            interface_id: 0,
            timestamp: Duration::from_millis(1_700_000_000_000 + i as u64),
            original_len: f.len() as u32,
            data: Cow::Borrowed(f),
            options: vec![],
        })
        .expect("pcapng packet");
    }
}

/// One frame per outcome; (frame, verdict, reason) with the reason `null`
/// for a frame the kernel cannot run.
#[rustfmt::skip]
fn sample() -> Vec<(Vec<u8>, &'static str, &'static str)> {
    let to_host = |src| Frame::ipv4(src, HOST);
    vec![
        (to_host(PROVIDER_A).udp(5060, 5060).payload(b"OPTIONS sip:host SIP/2.0\r\n\r\n").build(), "pass", "sip_allowed"),
        (to_host(STRANGER).udp(5060, 5060).build(), "drop", "sip_denied"),
        (to_host(STRANGER).udp(50000, 40000).payload(&[0x80; 172]).build(), "pass", "rtp_allowed"),
        (to_host(STRANGER).raw(PROTO_UDP, &[0; 32]).fragment(185, false).build(), "pass", "fragment"),
        (to_host(STRANGER).icmp_echo().build(), "pass", "other"),
        (Frame::arp(STRANGER, HOST).build(), "pass", "non_ip"),
        (to_host(PROVIDER_A).udp(5060, 5060).cut_to(14 + 20 + 5).build(), "drop", "malformed"),
        // Shorter than an Ethernet header: BPF_PROG_TEST_RUN refuses it.
        (vec![0xff; 10], "error", "null"),
    ]
}

/// The human summary line `check` prints for [`sample`].
const SAMPLE_SUMMARY: &str = "8 packets: 5 pass, 2 drop, 1 not run (sip_allowed 1, sip_denied 1, rtp_allowed 1, fragment 1, other 1, non_ip 1, malformed 1)";

fn sample_frames() -> Vec<Vec<u8>> {
    sample().into_iter().map(|(f, _, _)| f).collect()
}

/// Asserts `check --json` of a capture of [`sample`] gives the expected
/// verdict, reason and length per packet.
fn assert_sample(label: &str, pcap: &Path) {
    let got = check_json(pcap, None);
    let want: Vec<(String, String, u64)> = sample()
        .into_iter()
        .map(|(f, v, r)| (v.to_string(), r.to_string(), f.len() as u64))
        .collect();
    assert_eq!(got, want, "{label}: per-packet verdict, reason, length");
}

#[test]
fn json_and_text_for_a_pcap_written_here() {
    sipwall_tests::skip_unless_root!();
    let dir = TempDir::new();
    let pcap = dir.join("sample.pcap");
    write_pcap(&pcap, &sample_frames(), DataLink::ETHERNET);
    assert_sample("pcap-file pcap", &pcap);

    // The raw JSON keeps the shape of docs/json.md.
    let run = sipwall(&["check", "--pcap", path_str(&pcap), "--json"]);
    let json: Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(json["packets"][0]["index"], 0);
    assert_eq!(json["packets"][0]["verdict"], "pass");
    assert_eq!(json["packets"][0]["reason"], "sip_allowed");
    assert_eq!(json["packets"][1]["verdict"], "drop");
    assert_eq!(json["packets"][1]["reason"], "sip_denied");
    assert!(json["packets"][7]["reason"].is_null());

    let run = sipwall(&["check", "--pcap", path_str(&pcap)]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    for (i, (frame, verdict, reason)) in sample().iter().enumerate() {
        let line = lines
            .iter()
            .find(|l| l.split_whitespace().next() == Some(&i.to_string()))
            .unwrap_or_else(|| panic!("no line for packet {i}:\n{}", run.stdout));
        let words: Vec<&str> = line.split_whitespace().collect();
        if *verdict == "error" {
            assert_eq!(words[1], "error", "{line}");
            assert!(line.contains("shorter than an Ethernet header"), "{line}");
        } else {
            assert_eq!(
                words[1..4],
                [*verdict, *reason, &frame.len().to_string()],
                "{line}"
            );
        }
    }
    assert_eq!(
        lines.last().copied(),
        Some(SAMPLE_SUMMARY),
        "{}",
        run.stdout
    );
}

#[test]
fn a_configuration_changes_the_verdicts() {
    sipwall_tests::skip_unless_root!();
    let dir = TempDir::new();
    let pcap = dir.join("sample.pcap");
    write_pcap(&pcap, &sample_frames(), DataLink::ETHERNET);
    let config = dir.join("sipwall.toml");
    // The stranger becomes the allowlisted source; provider A does not.
    std::fs::write(
        &config,
        "[signalling]\nallow = [\"203.0.113.9/32\"]\n\n[media]\nrtp_ports = \"40001-40002\"\nprovider_rtp_ports = \"40001-40002\"\n",
    )
    .unwrap();
    let got: Vec<(String, String)> = check_json(&pcap, Some(&config))
        .into_iter()
        .map(|(v, r, _)| (v, r))
        .collect();
    let want = [
        ("drop", "sip_denied"),  // provider A, no longer allowlisted
        ("pass", "sip_allowed"), // the stranger, now allowlisted
        ("pass", "other"),       // 40000 is outside both new media ranges
        ("pass", "fragment"),
        ("pass", "other"),
        ("pass", "non_ip"),
        ("drop", "malformed"),
        ("error", "null"),
    ]
    .map(|(v, r)| (v.to_string(), r.to_string()));
    assert_eq!(got, want);
}

#[test]
fn pcapng_written_here() {
    sipwall_tests::skip_unless_root!();
    let dir = TempDir::new();
    let pcapng = dir.join("sample.pcapng");
    write_pcapng(&pcapng, &sample_frames(), DataLink::ETHERNET);
    assert_sample("pcap-file pcapng", &pcapng);
}

#[test]
fn captures_converted_by_editcap() {
    sipwall_tests::skip_unless_root!();
    if Command::new("editcap").arg("-h").output().is_err() {
        eprintln!("SKIPPED: editcap (wireshark-common) is not installed");
        return;
    }
    let dir = TempDir::new();
    let pcap = dir.join("sample.pcap");
    write_pcap(&pcap, &sample_frames(), DataLink::ETHERNET);
    for format in ["pcapng", "nsecpcap", "pcap"] {
        let out = dir.join(&format!("converted.{format}"));
        let run = Command::new("editcap")
            .args(["-F", format, path_str(&pcap), path_str(&out)])
            .output()
            .expect("running editcap");
        assert!(
            run.status.success(),
            "editcap -F {format}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        assert_sample(&format!("editcap -F {format}"), &out);
    }
}

/// Packets built by scapy, with the verdict and reason each must get.
#[rustfmt::skip]
const SCAPY_PACKETS: &[(&str, &str, &str)] = &[
    ("IP(src=A, dst=H)/UDP(sport=5060, dport=5060)/Raw(b'OPTIONS sip:h SIP/2.0')", "pass", "sip_allowed"),
    ("Dot1AD(vlan=1)/Dot1Q(vlan=2)/IP(src=S, dst=H)/UDP(sport=5060, dport=5060)", "drop", "sip_denied"),
    ("Dot1Q(vlan=10)/IP(src=B, dst=H)/TCP(dport=5061, flags='S')", "pass", "sip_allowed"),
    ("IP(src=S, dst=H, options=[IPOption_RR()])/UDP(dport=5060)", "drop", "sip_denied"),
    ("IP(src=S, dst=H, ihl=4)/UDP(dport=5060)", "drop", "malformed"),
    ("IPv6(src=S6, dst=H6)/IPv6ExtHdrHopByHop()/IPv6ExtHdrFragment(offset=100, m=1)/UDP(dport=5060)", "pass", "fragment"),
    ("IPv6(src=S6, dst=H6)/IPv6ExtHdrRouting()/IPv6ExtHdrDestOpt()/UDP(dport=40000)", "pass", "rtp_allowed"),
    ("IPv6(src=S6, dst=H6)/SCTP(dport=5061)", "drop", "sip_denied"),
    ("ARP(psrc=S, pdst=H)", "pass", "non_ip"),
    ("IP(src=S, dst=H)/ICMP()", "pass", "other"),
    ("IP(src=S, dst=H, frag=185, proto=17)/Raw(b'x' * 16)", "pass", "fragment"),
];

#[test]
fn captures_written_by_scapy() {
    sipwall_tests::skip_unless_root!();
    // Debian's scapy lives in the system python, not in a pyenv one.
    let python = "/usr/bin/python3";
    let dir = TempDir::new();
    let pcap = dir.join("scapy.pcap");
    let pcapng = dir.join("scapy.pcapng");
    let packets: Vec<String> = SCAPY_PACKETS
        .iter()
        .map(|(p, _, _)| format!("E/{p}"))
        .collect();
    let script = format!(
        "import sys\n\
         from scapy.all import *\n\
         E = Ether(dst='02:00:00:00:00:01', src='02:00:00:00:00:02')\n\
         A, B, S, H = '44.229.228.186', '44.238.177.138', '203.0.113.9', '192.0.2.10'\n\
         S6, H6 = '2001:db8::9', '2001:db8::10'\n\
         pkts = [{}]\n\
         wrpcap(sys.argv[1], pkts)\n\
         wrpcapng(sys.argv[2], pkts)\n",
        packets.join(", ")
    );
    let run = Command::new(python)
        .args(["-c", &script, path_str(&pcap), path_str(&pcapng)])
        .output()
        .unwrap_or_else(|e| panic!("{python}: {e} (install python3-scapy: cargo xtask setup)"));
    assert!(
        run.status.success(),
        "scapy failed (install python3-scapy: cargo xtask setup): {}",
        String::from_utf8_lossy(&run.stderr)
    );
    for file in [&pcap, &pcapng] {
        let got = check_json(file, None);
        assert_eq!(got.len(), SCAPY_PACKETS.len(), "{}", file.display());
        for ((packet, verdict, reason), (gv, gr, _)) in SCAPY_PACKETS.iter().zip(&got) {
            assert_eq!(
                (gv.as_str(), gr.as_str()),
                (*verdict, *reason),
                "{}: {packet}",
                file.display()
            );
        }
    }
}

/// Runs `check` expecting failure: exit 2, nothing on stdout, and a message
/// on stderr that contains every one of `says`. Returns the message.
fn assert_refused(label: &str, args: &[&str], says: &[&str]) -> String {
    let run = sipwall(args);
    assert_eq!(
        run.status, 2,
        "{label}: exit status; stderr: {}",
        run.stderr
    );
    assert!(run.stdout.is_empty(), "{label}: printed {}", run.stdout);
    assert!(
        run.stderr.starts_with("sipwall: "),
        "{label}: {}",
        run.stderr
    );
    for s in says {
        assert!(
            run.stderr.contains(s),
            "{label}: {s:?} not in {}",
            run.stderr
        );
    }
    run.stderr
}

#[test]
fn broken_captures_are_refused_with_exit_2() {
    let dir = TempDir::new();
    let frames = sample_frames();
    let good = dir.join("good.pcap");
    write_pcap(&good, &frames, DataLink::ETHERNET);
    let bytes = std::fs::read(&good).unwrap();

    let truncated = dir.join("truncated.pcap");
    std::fs::write(&truncated, &bytes[..bytes.len() - 3]).unwrap();
    let header_only_half = dir.join("half-header.pcap");
    std::fs::write(&header_only_half, &bytes[..12]).unwrap();
    let text = dir.join("notes.txt");
    std::fs::write(&text, "INVITE sip:bob@example.com SIP/2.0\r\n").unwrap();
    let empty = dir.join("empty.pcap");
    std::fs::write(&empty, b"").unwrap();
    let raw_ip = dir.join("raw-ip.pcap");
    // LINKTYPE_RAW (101): packets start with the IP header.
    write_pcap(&raw_ip, &[frames[0][14..].to_vec()], DataLink::RAW);
    let raw_ipng = dir.join("raw-ip.pcapng");
    write_pcapng(&raw_ipng, &[frames[0][14..].to_vec()], DataLink::RAW);
    let missing = dir.join("missing.pcap");

    #[rustfmt::skip]
    let cases: &[(&str, &Path, &[&str])] = &[
        ("truncated pcap", &truncated, &["packet 7", "cut short or corrupt"]),
        ("pcap header cut in half", &header_only_half, &["not a valid pcap file"]),
        ("text file", &text, &["not a pcap or pcapng file"]),
        ("empty file", &empty, &["too short to be a capture file"]),
        ("LINKTYPE_RAW pcap", &raw_ip, &["link type", "RAW", "only Ethernet"]),
        ("LINKTYPE_RAW pcapng", &raw_ipng, &["link type", "RAW", "only Ethernet"]),
        ("missing file", &missing, &["cannot read"]),
    ];
    for (label, file, says) in cases {
        let name = path_str(file);
        let mut says = says.to_vec();
        says.push(name);
        for json in [false, true] {
            let mut args = vec!["check", "--pcap", name];
            args.extend(json.then_some("--json"));
            let msg = assert_refused(label, &args, &says);
            assert_eq!(msg.lines().count(), 1, "{label}: one line: {msg}");
        }
    }
}

#[test]
fn a_bad_configuration_is_refused_with_exit_2_naming_the_line() {
    let dir = TempDir::new();
    let pcap = dir.join("sample.pcap");
    write_pcap(&pcap, &sample_frames(), DataLink::ETHERNET);
    #[rustfmt::skip]
    let cases: &[(&str, &str, &[&str])] = &[
        ("port 0", "[signalling]\nallow = [\"192.0.2.1/32\"]\nports = [5060, 0]\n", &["line 3", "port 0"]),
        ("bad CIDR", "# sipwall\n[signalling]\nallow = [\"192.0.2.300/32\"]\n", &["line 3", "192.0.2.300"]),
        ("reversed RTP range", "[media]\nrtp_ports = \"60000-40000\"\n", &["line 2", "starts after it ends"]),
        ("unknown key", "[policy]\ndry_run = true\nmode = \"guard\"\nverbose = true\n", &["line 4", "unknown field"]),
    ];
    for (label, text, says) in cases {
        let config = dir.join("bad.toml");
        std::fs::write(&config, text).unwrap();
        let mut says = says.to_vec();
        says.push(path_str(&config));
        assert_refused(
            label,
            &["check", "--pcap", path_str(&pcap), "-c", path_str(&config)],
            &says,
        );
    }
}

#[test]
fn strict_configuration_says_replies_cannot_be_known() {
    sipwall_tests::skip_unless_root!();
    let dir = TempDir::new();
    let pcap = dir.join("sample.pcap");
    write_pcap(&pcap, &sample_frames(), DataLink::ETHERNET);
    let config = dir.join("strict.toml");
    std::fs::write(&config, "[policy]\nmode = \"strict\"\n").unwrap();
    let got: Vec<(String, String)> = check_json(&pcap, Some(&config))
        .into_iter()
        .map(|(v, r, _)| (v, r))
        .collect();
    let want = [
        ("pass", "sip_allowed"),
        ("drop", "sip_denied"),
        ("pass", "rtp_allowed"),
        ("pass", "fragment"),
        ("pass", "essential"), // ping = true
        ("pass", "non_ip"),
        ("drop", "malformed"),
        ("error", "null"),
    ]
    .map(|(v, r)| (v.to_string(), r.to_string()));
    assert_eq!(got, want);
    let args = ["check", "--pcap", path_str(&pcap), "-c", path_str(&config)];
    let run = sipwall(&args);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("replies cannot be known"),
        "strict check says what it cannot know: {}",
        run.stdout
    );
    let mut json_args = args.to_vec();
    json_args.push("--json");
    let run = sipwall(&json_args);
    let json: Value = serde_json::from_str(&run.stdout).unwrap();
    assert!(
        json["note"].as_str().is_some_and(|n| n.contains("replies")),
        "{json}"
    );
}

/// Finding 8: in a two-way capture taken on the host, the host's own
/// replies were judged as if they arrived (`drop sip_denied`). With
/// `--local` (or `--local-iface`) they are reported as outbound and not run.
#[test]
fn packets_the_host_sent_are_outbound() {
    sipwall_tests::skip_unless_root!();
    let dir = TempDir::new();
    let pcap = dir.join("two-way.pcap");
    let loopback = Ipv4Addr::LOCALHOST;
    let frames = vec![
        Frame::ipv4(PROVIDER_A, HOST).udp(5060, 5060).build(),
        Frame::ipv4(HOST, PROVIDER_A).udp(5060, 5060).build(),
        Frame::ipv4(HOST, PROVIDER_A)
            .udp(5060, 5060)
            .vlan(0x8100, 7)
            .build(),
        Frame::ipv4(STRANGER, HOST).udp(5060, 5060).build(),
        Frame::ipv4(loopback, STRANGER).udp(5060, 5060).build(),
    ];
    write_pcap(&pcap, &frames, DataLink::ETHERNET);
    let verdicts = |extra: &[&str]| -> Vec<(String, String)> {
        let mut args = vec!["check", "--pcap", path_str(&pcap), "--json"];
        args.extend_from_slice(extra);
        let run = sipwall(&args);
        assert_eq!(run.status, 0, "{args:?}: {}", run.stderr);
        let json: Value = serde_json::from_str(&run.stdout).expect("JSON");
        json["packets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["verdict"].as_str().unwrap().to_string(),
                    p["reason"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let pair = |v: &str, r: &str| (v.to_string(), r.to_string());
    let inbound = pair("pass", "sip_allowed");
    let denied = pair("drop", "sip_denied");
    let outbound = pair("outbound", "outbound");
    // Without knowing the host, every packet is judged as arriving.
    assert_eq!(
        verdicts(&[]),
        [
            inbound.clone(),
            denied.clone(),
            denied.clone(),
            denied.clone(),
            denied.clone()
        ]
    );
    assert_eq!(
        verdicts(&["--local", "192.0.2.10"]),
        [
            inbound.clone(),
            outbound.clone(),
            outbound.clone(),
            denied.clone(),
            denied.clone()
        ]
    );
    assert_eq!(
        verdicts(&["--local", "192.0.2.10,2001:db8::10", "--local-iface", "lo"]),
        [
            inbound.clone(),
            outbound.clone(),
            outbound.clone(),
            denied.clone(),
            outbound.clone()
        ]
    );
    // Text: the reason column and the summary say so.
    let run = sipwall(&["check", "--pcap", path_str(&pcap), "--local", "192.0.2.10"]);
    assert!(
        run.stdout
            .contains("2 outbound (sent by this host, not judged)"),
        "{}",
        run.stdout
    );
    // A bad --local or --local-iface is a usage error.
    for (args, says) in [
        (&["--local", "192.0.2"][..], "invalid value"),
        (&["--local-iface", "nosuch0"], "nosuch0"),
        (&["--local-iface", "a/b"], "not a valid interface name"),
    ] {
        let mut all = vec!["check", "--pcap", path_str(&pcap)];
        all.extend_from_slice(args);
        let run = sipwall(&all);
        assert_eq!(run.status, 2, "{all:?}: {}", run.stderr);
        assert!(run.stderr.contains(says), "{all:?}: {}", run.stderr);
    }
}

/// `check --direction out` runs the frames through the TC egress program:
/// with strict egress each gets its out_* reason (and the summary counts
/// them); with `--local`, frames from other addresses are inbound and not
/// run; open egress judges nothing and says so; a bad direction is a usage
/// error.
#[test]
fn direction_out_runs_the_egress_program() {
    sipwall_tests::skip_unless_root!();
    let dir = TempDir::new();
    let pcap = dir.join("outgoing.pcap");
    let frames = vec![
        Frame::ipv4(HOST, PROVIDER_A).udp(5060, 5060).build(),
        Frame::ipv4(HOST, STRANGER).udp(5060, 5060).build(),
        Frame::ipv4(HOST, STRANGER).udp(10000, 40000).build(),
        Frame::ipv4(HOST, STRANGER).tcp(40000, 443).build(),
        Frame::ipv4(STRANGER, HOST).udp(5060, 5060).build(),
    ];
    write_pcap(&pcap, &frames, DataLink::ETHERNET);
    let config = dir.join("egress.toml");
    std::fs::write(
        &config,
        "[egress]\nmode = \"strict\"\n\n[[egress.allow]]\nproto = \"tcp\"\nports = [443]\nto = [\"203.0.113.0/24\"]\n",
    )
    .unwrap();
    let out = |extra: &[&str], cfg: &Path| -> Value {
        let mut args = vec![
            "check",
            "--pcap",
            path_str(&pcap),
            "--json",
            "--direction",
            "out",
            "-c",
            path_str(cfg),
        ];
        args.extend_from_slice(extra);
        let run = sipwall(&args);
        assert_eq!(run.status, 0, "{args:?}: {}", run.stderr);
        serde_json::from_str(&run.stdout).expect("JSON")
    };
    let pairs = |json: &Value| -> Vec<(String, String)> {
        json["packets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["verdict"].as_str().unwrap().to_string(),
                    p["reason"].as_str().unwrap_or("null").to_string(),
                )
            })
            .collect()
    };
    let pair = |v: &str, r: &str| (v.to_string(), r.to_string());
    let json = out(&[], &config);
    assert_eq!(
        pairs(&json),
        [
            pair("pass", "out_sip_allowed"),
            pair("drop", "out_sip_denied"),
            pair("pass", "out_rtp_allowed"),
            pair("pass", "out_rule_allowed"),
            // Without --local every frame is taken as sent: an inbound
            // SIP packet is "SIP to 192.0.2.10", not allowlisted.
            pair("drop", "out_sip_denied"),
        ]
    );
    assert_eq!(json["summary"]["out_sip_denied"], 2, "{json}");
    let json = out(&["--local", "192.0.2.10"], &config);
    assert_eq!(pairs(&json)[4], pair("inbound", "inbound"), "{json}");
    assert_eq!(json["summary"]["inbound"], 1, "{json}");
    // Text names the reasons too.
    let run = sipwall(&[
        "check",
        "--pcap",
        path_str(&pcap),
        "--direction",
        "out",
        "-c",
        path_str(&config),
    ]);
    assert!(run.stdout.contains("out_sip_denied"), "{}", run.stdout);
    // Open egress judges nothing: a usage error that says so (the
    // defaults included).
    let open = dir.join("open.toml");
    std::fs::write(&open, "[egress]\nmode = \"open\"\n").unwrap();
    for cfg in [vec!["-c", path_str(&open)], vec![]] {
        let mut args = vec!["check", "--pcap", path_str(&pcap), "--direction", "out"];
        args.extend(cfg);
        let run = sipwall(&args);
        assert_eq!(run.status, 2, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains("egress is open"), "{}", run.stderr);
    }
    let run = sipwall(&[
        "check",
        "--pcap",
        path_str(&pcap),
        "--direction",
        "sideways",
    ]);
    assert_eq!(run.status, 2, "{}", run.stderr);
    assert!(run.stderr.contains("sideways"), "{}", run.stderr);
}

/// A real snap-length capture: `tcpdump -s 96` on the PBX's interface
/// while the provider and a stranger send SIP larger than 96 bytes. Each
/// cut packet is judged on the bytes captured (the UDP header is whole, so
/// its port and source decide), marked truncated, and the run goes on.
#[test]
fn snap_length_captures_are_judged_on_the_bytes_captured() {
    use sipwall_tests::netns::{Host, Running, TestLab, OUTSIDER, PBX, PBX_IFACE, PROVIDER};
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    let pcap = lab.dir().join("snap96.pcap");
    let stderr = lab.dir().join("tcpdump.stderr");
    let mut tcpdump = Running(
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", lab.ns(Host::Pbx)))
            .args([
                "tcpdump", "-i", PBX_IFACE, "-s", "96", "-U", "-n", "-Z", "root", "-w",
            ])
            .arg(&pcap)
            .args(["udp", "port", "5060"])
            .stdout(std::process::Stdio::null())
            .stderr(File::create(&stderr).unwrap())
            .spawn()
            .expect("starting tcpdump (cargo xtask setup installs it)"),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&stderr)
        .unwrap_or_default()
        .contains("listening on")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "tcpdump did not start: {}",
            std::fs::read_to_string(&stderr).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let invite = format!(
        "INVITE sip:bob@{PBX} SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.1;branch=z9hG4bK-{}\r\n\r\n",
        "x".repeat(300)
    );
    let to = std::net::SocketAddr::new(PBX.into(), 5060);
    for (host, src) in [(Host::Provider, PROVIDER[0]), (Host::Outsider, OUTSIDER)] {
        let sock = lab.udp(host, src.into(), 0);
        for _ in 0..3 {
            sock.send_to(invite.as_bytes(), to).unwrap();
        }
    }
    // -U writes each packet as it comes; wait for all six.
    let wire = 14 + 20 + 8 + invite.len();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::fs::metadata(&pcap).map(|m| m.len()).unwrap_or(0) < 24 + 6 * (16 + 96) {
        assert!(
            std::time::Instant::now() < deadline,
            "tcpdump wrote too little"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: kill(2) on our own child; SIGINT lets tcpdump flush and exit.
    unsafe { libc::kill(tcpdump.0.id() as libc::pid_t, libc::SIGINT) };
    let _ = tcpdump.0.wait();

    let run = sipwall(&["check", "--pcap", path_str(&pcap), "--json"]);
    assert_eq!(
        run.status, 0,
        "check refused tcpdump -s 96 output: {}",
        run.stderr
    );
    let json: Value = serde_json::from_str(&run.stdout).expect("JSON");
    let packets: Vec<(String, u64, bool, u64)> = json["packets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["reason"].as_str().unwrap_or("null").to_string(),
                p["len"].as_u64().unwrap(),
                p["truncated"] == true,
                p["wire_len"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let cut = |reason: &str| (reason.to_string(), 96, true, wire as u64);
    assert_eq!(
        packets,
        [
            cut("sip_allowed"),
            cut("sip_allowed"),
            cut("sip_allowed"),
            cut("sip_denied"),
            cut("sip_denied"),
            cut("sip_denied")
        ],
        "{}",
        run.stdout
    );
    assert_eq!(json["summary"]["truncated"], 6, "{}", run.stdout);
    let text = sipwall(&["check", "--pcap", path_str(&pcap)]);
    assert_eq!(text.status, 0, "{}", text.stderr);
    assert!(
        text.stdout
            .contains(&format!("truncated (96 of {wire} bytes captured)"))
            && text.stdout.contains("6 truncated"),
        "{}",
        text.stdout
    );
}

/// A SIP message with an SDP body naming `media` at `port`.
fn sip_with_sdp(
    first_line: &str,
    call_id: &str,
    cseq: &str,
    from_tag: &str,
    to_tag: &str,
    media: Ipv4Addr,
    port: u16,
) -> Vec<u8> {
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 {media}\r\ns=-\r\nc=IN IP4 {media}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    );
    sip(first_line, call_id, cseq, from_tag, to_tag, &sdp)
}

fn sip(
    first_line: &str,
    call_id: &str,
    cseq: &str,
    from_tag: &str,
    to_tag: &str,
    body: &str,
) -> Vec<u8> {
    let to_tag = if to_tag.is_empty() {
        String::new()
    } else {
        format!(";tag={to_tag}")
    };
    let content_type = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "{first_line}\r\nVia: SIP/2.0/UDP {PROVIDER_A}:5060;branch=z9hG4bK-{cseq_n}\r\nFrom: <sip:p@{PROVIDER_A}>;tag={from_tag}\r\nTo: <sip:h@{HOST}>{to_tag}\r\nCall-ID: {call_id}\r\nCSeq: {cseq}\r\nContact: <sip:p@{PROVIDER_A}:5060>\r\nMax-Forwards: 70\r\n{content_type}Content-Length: {}\r\n\r\n{body}",
        body.len(),
        cseq_n = cseq.split(' ').next().unwrap_or("1"),
    )
    .into_bytes()
}

/// In calls mode the reader follows the capture's call: the provider's
/// media to the port this host's answer names passes while the call is
/// up, an outsider's does not, and after BYE neither does the provider's.
/// Without --local the reader cannot tell the host's answer from the
/// peer's, and says so.
#[test]
fn calls_mode_replays_the_calls_in_the_capture() {
    sipwall_tests::skip_unless_root!();
    let dir = TempDir::new();
    let config = dir.join("calls.toml");
    std::fs::write(
        &config,
        "[media]\nmode = \"calls\"\nrtp_ports = \"10000-10999\"\n",
    )
    .unwrap();
    let call = "replay-1@44.229.228.186";
    let to_host = |payload: Vec<u8>| {
        Frame::ipv4(PROVIDER_A, HOST)
            .udp(5060, 5060)
            .payload(&payload)
            .build()
    };
    let from_host = |payload: Vec<u8>| {
        Frame::ipv4(HOST, PROVIDER_A)
            .udp(5060, 5060)
            .payload(&payload)
            .build()
    };
    let media = |src: Ipv4Addr, port: u16| {
        Frame::ipv4(src, HOST)
            .udp(40000, port)
            .payload(&[0x80; 172])
            .build()
    };
    let frames = vec![
        to_host(sip_with_sdp(
            &format!("INVITE sip:h@{HOST} SIP/2.0"),
            call,
            "1 INVITE",
            "pt",
            "",
            PROVIDER_A,
            40000,
        )),
        from_host(sip_with_sdp(
            "SIP/2.0 200 OK",
            call,
            "1 INVITE",
            "pt",
            "ht",
            HOST,
            10020,
        )),
        to_host(sip(
            &format!("ACK sip:h@{HOST} SIP/2.0"),
            call,
            "1 ACK",
            "pt",
            "ht",
            "",
        )),
        media(PROVIDER_A, 10020),
        media(STRANGER, 10020),
        media(PROVIDER_A, 10030),
        to_host(sip(
            &format!("BYE sip:h@{HOST} SIP/2.0"),
            call,
            "2 BYE",
            "pt",
            "ht",
            "",
        )),
        media(PROVIDER_A, 10020),
    ];
    let pcap = dir.join("call.pcap");
    write_pcap(&pcap, &frames, DataLink::ETHERNET);
    let run = sipwall(&[
        "check",
        "--pcap",
        path_str(&pcap),
        "-c",
        path_str(&config),
        "--local",
        &HOST.to_string(),
        "--json",
    ]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let json: Value = serde_json::from_str(&run.stdout).expect("JSON");
    let reasons: Vec<&str> = json["packets"]
        .as_array()
        .expect("packets")
        .iter()
        .map(|p| p["reason"].as_str().unwrap_or("null"))
        .collect();
    assert_eq!(
        reasons,
        [
            "sip_allowed",
            "outbound",
            "sip_allowed",
            "rtp_allowed",
            "rtp_unsolicited",
            "rtp_unsolicited",
            "sip_allowed",
            "rtp_unsolicited"
        ],
        "{}",
        run.stdout
    );
    // Without --local: nothing opens, and the note says why.
    let run = sipwall(&[
        "check",
        "--pcap",
        path_str(&pcap),
        "-c",
        path_str(&config),
        "--json",
    ]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let json: Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(
        json["packets"][3]["reason"], "rtp_unsolicited",
        "{}",
        run.stdout
    );
    assert!(
        json["note"].as_str().unwrap_or("").contains("--local"),
        "{}",
        run.stdout
    );
}

/// A pcap whose frames carry the capture times given.
fn write_pcap_timed(path: &Path, frames: &[(Duration, Vec<u8>)]) {
    let file = File::create(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut w = PcapWriter::new(file).expect("pcap header");
    for (ts, f) in frames {
        w.write_packet(&PcapPacket::new(*ts, f.len() as u32, f))
            .expect("pcap packet");
    }
}

fn sip_to_host(payload: Vec<u8>) -> Vec<u8> {
    Frame::ipv4(PROVIDER_A, HOST)
        .udp(5060, 5060)
        .payload(&payload)
        .build()
}

fn sip_from_host(payload: Vec<u8>) -> Vec<u8> {
    Frame::ipv4(HOST, PROVIDER_A)
        .udp(5060, 5060)
        .payload(&payload)
        .build()
}

fn rtp_to_host(src: Ipv4Addr, port: u16) -> Vec<u8> {
    Frame::ipv4(src, HOST)
        .udp(40000, port)
        .payload(&[0x80; 172])
        .build()
}

/// `check --pcap --local HOST --json` with `config`: each packet's reason.
fn replay_reasons(dir: &TempDir, config: &str, pcap: &Path) -> Vec<String> {
    let path = dir.join("replay.toml");
    std::fs::write(&path, config).unwrap();
    let run = sipwall(&[
        "check",
        "--pcap",
        path_str(pcap),
        "-c",
        path_str(&path),
        "--local",
        &HOST.to_string(),
        "--json",
    ]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let json: Value = serde_json::from_str(&run.stdout).expect("JSON");
    json["packets"]
        .as_array()
        .expect("packets")
        .iter()
        .map(|p| p["reason"].as_str().unwrap_or("null").to_string())
        .collect()
}

/// The reader runs on the capture's clock: this host's offer opens its
/// port to any source for 32 s of capture time, not of replay time.
#[test]
fn calls_mode_offer_window_follows_capture_time() {
    sipwall_tests::skip_unless_root!();
    let dir = TempDir::new();
    let call = "window-1@192.0.2.10";
    let at = |secs: u64| Duration::from_secs(1_700_000_000 + secs);
    let frames = vec![
        (
            at(0),
            sip_from_host(sip_with_sdp(
                &format!("INVITE sip:p@{PROVIDER_A} SIP/2.0"),
                call,
                "1 INVITE",
                "ht",
                "",
                HOST,
                10040,
            )),
        ),
        (at(1), rtp_to_host(STRANGER, 10040)),
        (at(20), rtp_to_host(STRANGER, 10040)),
        // 40 s after the offer: its window closed at 32 s.
        (at(40), rtp_to_host(STRANGER, 10040)),
    ];
    let pcap = dir.join("window.pcap");
    write_pcap_timed(&pcap, &frames);
    let config = "[media]\nmode = \"calls\"\nrtp_ports = \"10000-10999\"\ncall_idle = \"600s\"\n";
    assert_eq!(
        replay_reasons(&dir, config, &pcap),
        ["outbound", "rtp_allowed", "rtp_allowed", "rtp_unsolicited"]
    );
}

/// Signalling the program drops never reaches the reader, as live (where
/// only what passes is copied): an allowlisted peer's INVITE over its
/// signalling rate limit opens nothing, though this host's answer is seen.
#[test]
fn calls_mode_reader_sees_only_passed_signalling() {
    sipwall_tests::skip_unless_root!();
    let dir = TempDir::new();
    let call = "limited-1@44.229.228.186";
    let invite = sip_with_sdp(
        &format!("INVITE sip:h@{HOST} SIP/2.0"),
        call,
        "1 INVITE",
        "pt",
        "",
        PROVIDER_A,
        40000,
    );
    let frames: Vec<Vec<u8>> = vec![
        // Takes the one packet the limit lets through.
        sip_to_host(sip(
            &format!("OPTIONS sip:h@{HOST} SIP/2.0"),
            "ping-1",
            "1 OPTIONS",
            "po",
            "",
            "",
        )),
        sip_to_host(invite),
        sip_from_host(sip_with_sdp(
            "SIP/2.0 200 OK",
            call,
            "1 INVITE",
            "pt",
            "ht",
            HOST,
            10020,
        )),
        rtp_to_host(PROVIDER_A, 10020),
    ];
    let pcap = dir.join("limited.pcap");
    write_pcap(&pcap, &frames, DataLink::ETHERNET);
    let config = "[signalling]\nrate_limit = \"1/s\"\nburst = 1\n\n[media]\nmode = \"calls\"\nrtp_ports = \"10000-10999\"\n";
    assert_eq!(
        replay_reasons(&dir, config, &pcap),
        [
            "sip_allowed",
            "sip_ratelimited",
            "outbound",
            "rtp_unsolicited"
        ]
    );
}

/// An answered call pushed out of the dialog table (65,536 calls) by a
/// flood of INVITEs from the allowlisted peer: its media no longer passes
/// after the flood, nor after its BYE. The replay of the flood takes
/// longer than the kernel's reader timeout (5 s): the reader's heartbeat
/// must keep up, or the kernel falls back to `unattended = "range"` and
/// passes every call's media by range.
#[test]
fn calls_mode_evicted_call_closes_in_a_long_replay() {
    sipwall_tests::skip_unless_root!();
    let dir = TempDir::new();
    let call = "evicted-1@44.229.228.186";
    let mut frames: Vec<Vec<u8>> = vec![
        sip_to_host(sip_with_sdp(
            &format!("INVITE sip:h@{HOST} SIP/2.0"),
            call,
            "1 INVITE",
            "pt",
            "",
            PROVIDER_A,
            40000,
        )),
        sip_from_host(sip_with_sdp(
            "SIP/2.0 200 OK",
            call,
            "1 INVITE",
            "pt",
            "ht",
            HOST,
            10020,
        )),
        sip_to_host(sip(
            &format!("ACK sip:h@{HOST} SIP/2.0"),
            call,
            "1 ACK",
            "pt",
            "ht",
            "",
        )),
        rtp_to_host(PROVIDER_A, 10020),
    ];
    const FLOOD: usize = 66_000;
    for n in 0..FLOOD {
        frames.push(sip_to_host(sip(
            &format!("INVITE sip:h@{HOST} SIP/2.0"),
            &format!("flood-{n}"),
            "1 INVITE",
            &format!("f{n}"),
            "",
            "",
        )));
    }
    frames.push(rtp_to_host(PROVIDER_A, 10020));
    frames.push(sip_to_host(sip(
        &format!("BYE sip:h@{HOST} SIP/2.0"),
        call,
        "2 BYE",
        "pt",
        "ht",
        "",
    )));
    frames.push(rtp_to_host(PROVIDER_A, 10020));
    // All within one second of capture time: no unanswered INVITE times
    // out, and no capture second passes to tick the reader in the replay.
    let timed: Vec<(Duration, Vec<u8>)> = frames
        .into_iter()
        .enumerate()
        .map(|(i, f)| {
            (
                Duration::from_micros(1_700_000_000_000_000 + 10 * i as u64),
                f,
            )
        })
        .collect();
    let pcap = dir.join("flood.pcap");
    write_pcap_timed(&pcap, &timed);
    let config = "[media]\nmode = \"calls\"\nrtp_ports = \"10000-10999\"\n";
    let reasons = replay_reasons(&dir, config, &pcap);
    assert_eq!(reasons.len(), FLOOD + 7);
    assert_eq!(reasons[3], "rtp_allowed");
    assert!(reasons[4..4 + FLOOD].iter().all(|r| r == "sip_allowed"));
    assert_eq!(
        reasons[4 + FLOOD..],
        ["rtp_unsolicited", "sip_allowed", "rtp_unsolicited"]
    );
}

/// pcapng times are counted in the interface's `if_tsresol` units
/// (microseconds when absent), which pcap-file leaves to its user: the
/// offer window closes 32 s into the capture either way.
#[test]
fn calls_mode_pcapng_times_follow_if_tsresol() {
    sipwall_tests::skip_unless_root!();
    let dir = TempDir::new();
    let frames = [
        sip_from_host(sip_with_sdp(
            &format!("INVITE sip:p@{PROVIDER_A} SIP/2.0"),
            "window-ng@192.0.2.10",
            "1 INVITE",
            "ht",
            "",
            HOST,
            10040,
        )),
        rtp_to_host(STRANGER, 10040),
        rtp_to_host(STRANGER, 10040),
    ];
    let secs = [0u64, 20, 40];
    // (if_tsresol, units per second)
    for (resol, per_second) in [(None, 1_000_000u64), (Some(9u8), 1_000_000_000)] {
        let pcap = dir.join("window.pcapng");
        let file = File::create(&pcap).unwrap();
        let mut w = PcapNgWriter::new(file).expect("pcapng section");
        w.write_pcapng_block(InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen: 0xffff,
            options: resol
                .map(InterfaceDescriptionOption::IfTsResol)
                .into_iter()
                .collect(),
        })
        .expect("pcapng interface");
        for (f, s) in frames.iter().zip(secs) {
            // pcap-file writes the count of units it is given as nanoseconds.
            let units = (1_700_000_000 + s) * per_second;
            w.write_pcapng_block(EnhancedPacketBlock {
                interface_id: 0,
                timestamp: Duration::from_nanos(units),
                original_len: f.len() as u32,
                data: Cow::Borrowed(f),
                options: vec![],
            })
            .expect("pcapng packet");
        }
        drop(w);
        let config =
            "[media]\nmode = \"calls\"\nrtp_ports = \"10000-10999\"\ncall_idle = \"600s\"\n";
        assert_eq!(
            replay_reasons(&dir, config, &pcap),
            ["outbound", "rtp_allowed", "rtp_unsolicited"],
            "if_tsresol {resol:?}"
        );
    }
}
