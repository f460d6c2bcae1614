//! The abuse controls with real peers between network namespaces: a flood
//! from a spoofed provider address held to its rate limit while a sipp call
//! from the real one goes on; RTP played by sipp from its bundled
//! g711a.pcap passing the RTP check while junk into the media range is
//! dropped; a ban ending by itself; and the ban commands' validation. The
//! fail2ban wiring has its own file (fail2ban.rs).
use std::{
    collections::BTreeMap,
    fs::File,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use sipwall_tests::{
    netns::{delta, traffic, Count, Host, TestLab, OUTSIDER, PBX, PBX_IFACE, PROVIDER},
    operate::sipwall,
    service::{write_config, Service},
    sipp::{self, expect_answered, Transport},
};

const IDLE: Duration = Duration::from_millis(400);

fn get(d: &BTreeMap<String, Count>, reason: &str) -> u64 {
    d.get(reason)
        .unwrap_or_else(|| panic!("no `{reason}` counter: {d:?}"))
        .packets
}

fn config(lab: &TestLab, name: &str, text: &str) -> PathBuf {
    let path = lab.dir().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Sends `n` datagrams of `payload` from `host`/`src` to the PBX's `port`;
/// returns how many a socket there received.
fn send(lab: &TestLab, host: Host, src: IpAddr, port: u16, payload: &[u8], n: u64) -> u64 {
    let dst = SocketAddr::new(IpAddr::V4(PBX), port);
    let rx = lab.udp(Host::Pbx, dst.ip(), port);
    let tx = lab.udp(host, src, 0);
    for _ in 0..n {
        tx.send_to(payload, dst).unwrap();
    }
    traffic::count(&rx, IDLE).unwrap()
}

/// `top --reason R --json` as (address, packets).
fn top(lab: &TestLab, reason: &str) -> Vec<(String, u64)> {
    let text = lab.sipwall_ok(&["top", "-i", PBX_IFACE, "--reason", reason, "--json"]);
    let json: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    json["sources"]
        .as_array()
        .unwrap_or_else(|| panic!("top --json without sources: {text}"))
        .iter()
        .map(|s| {
            (
                s["addr"].as_str().unwrap().to_owned(),
                s["packets"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_spoofed_provider_flood_is_held_to_the_rate_while_a_call_goes_on() {
    sipwall_tests::skip_unless_root!();
    const RATE: f64 = 200.0;
    const BURST: f64 = 20.0;
    const FLOOD_PPS: u32 = 2_000;
    let lab = TestLab::new();
    let conf = config(
        &lab,
        "limited.toml",
        "[signalling]\nrate_limit = \"200/s\"\nburst = 20\n",
    );
    lab.attach(&["-c", conf.to_str().unwrap()]);
    let provider = IpAddr::V4(PROVIDER[0]);
    let spoofed = IpAddr::V4(PROVIDER[1]);
    assert_eq!(send(&lab, Host::Provider, spoofed, 9, b"warm-up!", 1), 1);
    let _uas = sipp::uas(&lab, Transport::Udp);

    // The flood: the provider's second address, UDP to 5061 (a signalling
    // port nothing listens on, so the call on 5060 is not disturbed by
    // junk), ten times the limit, counted where it lands.
    let sink = traffic::Sink::start(lab.udp(Host::Pbx, IpAddr::V4(PBX), 5061)).unwrap();
    let started = Instant::now();
    let flood = traffic::Stream::start(
        lab.udp(Host::Provider, spoofed, 0),
        SocketAddr::new(IpAddr::V4(PBX), 5061),
        FLOOD_PPS,
    );
    let calls = sipp::call(
        &lab,
        "call during the flood",
        Host::Provider,
        provider,
        Transport::Udp,
        5,
    );
    // At least three seconds of flood, so the burst is a small part.
    if let Some(rest) = Duration::from_secs(3).checked_sub(started.elapsed()) {
        std::thread::sleep(rest);
    }
    let sent = flood.stop().unwrap();
    let seconds = started.elapsed().as_secs_f64();
    std::thread::sleep(IDLE);
    let received = sink.received();
    expect_answered(
        "call from the real provider address during the flood",
        &calls,
    );

    let limited = top(&lab, "sip_ratelimited");
    let dropped = limited
        .iter()
        .find(|(a, _)| *a == spoofed.to_string())
        .map_or(0, |(_, p)| *p);
    assert!(
        limited.iter().all(|(a, _)| *a == spoofed.to_string()),
        "only the flooding address may be limited: {limited:?}"
    );
    let passed = sent - dropped;
    let expected = BURST + RATE * seconds;
    println!(
        "flood: {sent} sent in {seconds:.2} s, {passed} passed (expected {expected:.0}), {received} received; call: {} messages",
        calls.messages_sent
    );
    assert!(
        (passed as f64 - expected).abs() <= expected * 0.10,
        "{passed} flood packets passed in {seconds:.2} s; the limit allows {expected:.0} (±10%)"
    );
    assert_eq!(received, passed, "what passed the filter is what arrived");
    let counters = lab.counters();
    assert_eq!(counters["sip_ratelimited"].packets, dropped);
}

/// sipp's UAS on the PBX, announcing media on `media_port` (in the RTP
/// range) in its SDP answer. Killed on drop.
struct MediaUas(Child);

impl Drop for MediaUas {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sipp_dir(lab: &TestLab, name: &str) -> PathBuf {
    let dir = lab.dir().join(name);
    std::fs::create_dir_all(dir.join("pcap")).unwrap();
    dir
}

fn spawn_sipp(lab: &TestLab, host: Host, dir: &Path, args: &[&str]) -> Child {
    lab.command(host, "sipp")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(File::create(dir.join("stdout")).unwrap())
        .stderr(File::create(dir.join("stderr")).unwrap())
        .spawn()
        .expect("starting sipp")
}

/// The pcap files sipp's built-in `uac_pcap` scenario plays, from
/// Debian's sip-tester (the scenario names them `pcap/<file>`).
fn played_pcaps() -> Vec<PathBuf> {
    let out = std::process::Command::new("sipp")
        .args(["-sd", "uac_pcap"])
        .output()
        .expect("running sipp -sd");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split("play_pcap_audio=\"pcap/")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(|name| Path::new("/usr/share/sip-tester").join(name))
        .collect()
}

/// The packets of one of sipp's bundled pcaps (every one is RTP).
fn pcap_packets(path: &Path) -> u64 {
    let file = File::open(path).unwrap();
    let mut reader = pcap_file::pcap::PcapReader::new(file).unwrap();
    let mut n = 0;
    while let Some(packet) = reader.next_packet() {
        packet.unwrap();
        n += 1;
    }
    n
}

#[test]
fn rtp_from_sipp_passes_the_rtp_check_and_junk_is_dropped() {
    sipwall_tests::skip_unless_root!();
    const MEDIA_PORT: &str = "40000";
    let pcap = Path::new("/usr/share/sip-tester/g711a.pcap");
    assert!(
        pcap.is_file(),
        "{} missing (Debian's sip-tester)",
        pcap.display()
    );
    let lab = TestLab::new();
    // check_rtp needs the media range out of the host's ephemeral ports.
    lab.exec(
        Host::Pbx,
        &[
            "sysctl",
            "-w",
            "net.ipv4.ip_local_reserved_ports=40000-60000",
        ],
    )
    .unwrap();
    let conf = config(&lab, "check.toml", "[media]\ncheck_rtp = true\n");
    lab.attach(&["-c", conf.to_str().unwrap()]);
    let provider = IpAddr::V4(PROVIDER[0]);
    assert_eq!(send(&lab, Host::Provider, provider, 9, b"warm-up!", 1), 1);
    assert_eq!(
        send(
            &lab,
            Host::Outsider,
            IpAddr::V4(OUTSIDER),
            9,
            b"warm-up!",
            1
        ),
        1
    );

    let uas_dir = sipp_dir(&lab, "media-uas");
    let pbx = PBX.to_string();
    let _uas = MediaUas(spawn_sipp(
        &lab,
        Host::Pbx,
        &uas_dir,
        &[
            "-sn", "uas", "-i", &pbx, "-p", "5060", "-mp", MEDIA_PORT, "-nostdin",
        ],
    ));
    lab.wait_bound(Host::Pbx, "udp", 5060, Duration::from_secs(5))
        .unwrap();

    // sipp's own pcap-playing caller: INVITE, then g711a.pcap and an RFC
    // 2833 DTMF event to the media port of the answer's SDP, then BYE. It
    // reads the files its scenario names from ./pcap/.
    let uac_dir = sipp_dir(&lab, "media-uac");
    let played = played_pcaps();
    assert!(
        played.iter().any(|p| p == pcap),
        "uac_pcap no longer plays {}: {played:?}",
        pcap.display()
    );
    for p in &played {
        std::os::unix::fs::symlink(p, uac_dir.join("pcap").join(p.file_name().unwrap())).unwrap();
    }
    let before = lab.counters();
    let target = format!("{PBX}:5060");
    let src = provider.to_string();
    let mut uac = spawn_sipp(
        &lab,
        Host::Provider,
        &uac_dir,
        &[
            "-sn",
            "uac_pcap",
            &target,
            "-i",
            &src,
            "-m",
            "1",
            "-nostdin",
            "-timeout",
            "30s",
            "-timeout_error",
        ],
    );
    let status = sipwall_lab::wait_child(&mut uac, Duration::from_secs(40))
        .unwrap()
        .expect("sipp's pcap call did not end in 40 s");
    let log = |dir: &Path| {
        std::fs::read_to_string(dir.join("stderr")).unwrap_or_default()
            + &std::fs::read_to_string(dir.join("stdout")).unwrap_or_default()
    };
    assert!(
        status.success(),
        "sipp uac_pcap failed ({status}):\n{}",
        log(&uac_dir)
    );
    std::thread::sleep(IDLE);
    let d = delta(&before, &lab.counters());
    let played: u64 = played.iter().map(|p| pcap_packets(p)).sum();
    assert!(played > 200, "{played} RTP packets played");
    assert_eq!(
        (get(&d, "rtp_allowed"), get(&d, "rtp_invalid")),
        (played, 0),
        "every RTP packet of the pcap passes the check: {d:?}"
    );

    // Junk into the media range is dropped; real RTP headers still pass.
    let before = lab.counters();
    let outsider = IpAddr::V4(OUTSIDER);
    let mut rtp = vec![0x80, 0x08, 0, 1, 0, 0, 0, 160, 0x12, 0x34, 0x56, 0x78];
    rtp.extend([0xd5; 160]);
    let junk_received = send(&lab, Host::Outsider, outsider, 45000, &[0u8; 200], 50)
        + send(&lab, Host::Outsider, outsider, 45000, b"short", 50)
        + send(
            &lab,
            Host::Outsider,
            outsider,
            45000,
            &[
                0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ],
            50,
        );
    let rtp_received = send(&lab, Host::Outsider, outsider, 45000, &rtp, 50);
    let d = delta(&before, &lab.counters());
    assert_eq!(junk_received, 0, "junk reached the PBX");
    assert_eq!(rtp_received, 50, "RTP from anywhere still arrives");
    assert_eq!(
        (get(&d, "rtp_invalid"), get(&d, "rtp_allowed")),
        (150, 50),
        "{d:?}"
    );
}

#[test]
fn a_ban_ends_by_itself() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    lab.attach(&[]);
    let outsider = IpAddr::V4(OUTSIDER);
    assert_eq!(send(&lab, Host::Outsider, outsider, 9, b"warm-up!", 1), 1);
    lab.sipwall_ok(&[
        "ban",
        "add",
        "-i",
        PBX_IFACE,
        "203.0.113.0/28",
        "--for",
        "2s",
    ]);
    let listed = lab.sipwall_ok(&["ban", "list", "-i", PBX_IFACE, "--json"]);
    let json: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(json["bans"][0]["cidr"], "203.0.113.0/28", "{listed}");
    assert!(
        json["bans"][0]["expires_in"].as_u64().unwrap() <= 2,
        "{listed}"
    );
    let before = lab.counters();
    assert_eq!(
        send(&lab, Host::Outsider, outsider, 40000, &[0x80; 40], 10),
        0
    );
    let d = delta(&before, &lab.counters());
    assert_eq!(get(&d, "banned"), 10, "{d:?}");
    // No sipwall command runs from here on: the kernel ends the ban.
    std::thread::sleep(Duration::from_millis(2_500));
    let before = lab.counters();
    assert_eq!(
        send(&lab, Host::Outsider, outsider, 40000, &[0x80; 40], 10),
        10
    );
    let d = delta(&before, &lab.counters());
    assert_eq!(
        (get(&d, "banned"), get(&d, "rtp_allowed")),
        (0, 10),
        "{d:?}"
    );
    let listed = lab.sipwall_ok(&["ban", "list", "-i", PBX_IFACE, "--json"]);
    assert_eq!(listed.trim(), r#"{"bans":[]}"#);
}

#[test]
fn ban_commands_refuse_bad_input_and_change_nothing() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    lab.attach(&[]);
    lab.sipwall_ok(&["ban", "add", "-i", PBX_IFACE, "198.51.100.9"]);
    let banlist = lab.dir().join("bans.txt");
    std::fs::write(&banlist, "# APIBAN\n203.0.113.7\nnot-an-address\n").unwrap();
    let banlist = banlist.to_str().unwrap();
    let snapshot = || lab.sipwall_ok(&["ban", "list", "-i", PBX_IFACE, "--json"]);
    let before = snapshot();
    #[rustfmt::skip]
    let cases: &[(&[&str], &[&str])] = &[
        (&["ban", "add", "-i", PBX_IFACE, "203.0.113.5", "nonsense"], &["not an IP address"]),
        (&["ban", "add", "-i", PBX_IFACE, "203.0.113.5/33"], &["longer than 32"]),
        (&["ban", "add", "-i", PBX_IFACE, "203.0.113.5/24"], &["host bits"]),
        (&["ban", "add", "-i", PBX_IFACE, "203.0.113.5", "--for", "0"], &["--for", "no time"]),
        (&["ban", "add", "-i", PBX_IFACE, "203.0.113.5", "--for", "1x"], &["--for", "unit"]),
        (&["ban", "add", "-i", PBX_IFACE, "203.0.113.5", "--for", "99999999999999999999999s"], &["--for", "too large"]),
        (&["ban", "add", "-i", PBX_IFACE, "203.0.113.5", "--for", "99999999999999999999999"], &["--for", "too large"]),
        (&["ban", "add", "-i", PBX_IFACE, "--file", banlist], &["line 3", "not an IP address"]),
        (&["ban", "add", "-i", PBX_IFACE, "--file", "/nonexistent/bans"], &["cannot read"]),
        (&["ban", "add", "-i", PBX_IFACE], &["required"]),
        (&["ban", "del", "-i", PBX_IFACE, "203.0.113.5"], &["not banned", "nothing changed"]),
        (&["ban", "add", "-i", PBX_IFACE, "0.0.0.0/0"], &["every IPv4 source", "--force"]),
        (&["ban", "add", "-i", PBX_IFACE, "203.0.113.5", "::/0"], &["every IPv6 source", "--force"]),
        (&["top", "-i", PBX_IFACE, "--reason", "malformed"], &["--reason malformed", "not trusted"]),
        (&["top", "-i", PBX_IFACE, "--reason", "non_ip"], &["not a drop reason", "sip_ratelimited"]),
        (&["top", "-i", PBX_IFACE, "--reason", "nonsense"], &["--reason"]),
    ];
    for (args, words) in cases {
        sipwall(&lab, args).expect(2, words, &format!("{args:?}"));
        assert_eq!(snapshot(), before, "{args:?} changed the ban set");
    }
    // From an SSH session, a ban covering the operator's own client is
    // refused unless --force.
    let from_ssh = |extra: &[&str]| {
        let mut args = vec!["ban", "add", "-i", PBX_IFACE, "198.51.100.0/24"];
        args.extend_from_slice(extra);
        lab.sipwall_command(&args)
            .env("SSH_CONNECTION", "198.51.100.7 50022 192.0.2.1 22")
            .output()
            .expect("running sipwall")
    };
    let refused = from_ssh(&[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("your own SSH client 198.51.100.7") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(snapshot(), before, "the refused ban changed the ban set");
    let forced = from_ssh(&["--force"]);
    assert!(forced.status.success(), "{forced:?}");
    assert!(snapshot().contains("198.51.100.0/24"));
    lab.sipwall_ok(&["ban", "del", "-i", PBX_IFACE, "198.51.100.0/24"]);
    // A good file (one a line, or APIBAN's JSON) goes in whole.
    let json = lab.dir().join("apiban.json");
    std::fs::write(
        &json,
        r#"{"ipaddress":["203.0.113.7","2001:db8:3::2"],"ID":"100"}"#,
    )
    .unwrap();
    lab.sipwall_ok(&[
        "ban",
        "add",
        "-i",
        PBX_IFACE,
        "--file",
        json.to_str().unwrap(),
        "--for",
        "1h",
    ]);
    let text = lab.sipwall_ok(&["ban", "list", "-i", PBX_IFACE]);
    for want in [
        "198.51.100.9/32\tpermanent",
        "203.0.113.7/32\texpires in 59m5",
        "2001:db8:3::2/128\texpires in 59m5",
    ] {
        assert!(text.contains(want), "ban list lacks {want:?}:\n{text}");
    }
    // Bans belong to the attachment: an upgrade in place keeps them.
    lab.attach(&[]);
    let again = lab.sipwall_ok(&["ban", "list", "-i", PBX_IFACE]);
    assert_eq!(again.lines().count(), 3, "re-attach lost bans:\n{again}");
    assert!(again.contains("198.51.100.9/32\tpermanent"), "{again}");
    lab.sipwall_ok(&[
        "ban",
        "del",
        "-i",
        PBX_IFACE,
        "203.0.113.7",
        "2001:db8:3::2",
    ]);
    lab.sipwall_ok(&[
        "ban",
        "del",
        "-i",
        PBX_IFACE,
        "--missing-ok",
        "203.0.113.7",
        "198.51.100.9",
    ]);
    assert_eq!(snapshot().trim(), r#"{"bans":[]}"#);
}

/// A ban is judged before the allowlist: one that overlaps it (covering an
/// allowlisted address, or inside an allowlisted prefix) is refused unless
/// --force, given by hand or in a file (the whole file refused), and the
/// provider's signalling keeps arriving.
#[test]
fn a_ban_overlapping_the_allowlist_needs_force() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    lab.attach(&[]);
    lab.sipwall_ok(&["allow", "add", "-i", PBX_IFACE, "198.51.100.0/24"]);
    let provider = IpAddr::V4(PROVIDER[0]);
    assert_eq!(send(&lab, Host::Provider, provider, 9, b"warm-up!", 1), 1);
    let file = config(
        &lab,
        "bans.txt",
        "# fail2ban's findings\n203.0.113.7\n44.229.228.186\n",
    );
    let file = file.to_str().unwrap();
    let snapshot = || lab.sipwall_ok(&["ban", "list", "-i", PBX_IFACE, "--json"]);
    let before = snapshot();
    #[rustfmt::skip]
    let cases: &[(&[&str], &[&str])] = &[
        (&["ban", "add", "-i", PBX_IFACE, "44.229.228.186"], &["44.229.228.186/32 overlaps allowlisted 44.229.228.186/32", "--force"]),
        (&["ban", "add", "-i", PBX_IFACE, "203.0.113.9", "44.238.177.138", "--for", "1h"], &["44.238.177.138/32 overlaps", "nothing changed"]),
        (&["ban", "add", "-i", PBX_IFACE, "44.0.0.0/8"], &["44.0.0.0/8 overlaps allowlisted 44.229.228.186/32", "44.238.177.138/32"]),
        (&["ban", "add", "-i", PBX_IFACE, "198.51.100.77"], &["198.51.100.77/32 overlaps allowlisted 198.51.100.0/24"]),
        (&["ban", "add", "-i", PBX_IFACE, "198.51.100.128/25"], &["overlaps allowlisted 198.51.100.0/24"]),
        (&["ban", "add", "-i", PBX_IFACE, "--file", file], &["44.229.228.186/32 overlaps", "--force"]),
    ];
    for (args, words) in cases {
        sipwall(&lab, args).expect(2, words, &format!("{args:?}"));
        assert_eq!(snapshot(), before, "{args:?} changed the ban set");
    }
    // The provider still gets through, as signalling and as anything else.
    let before_counters = lab.counters();
    assert_eq!(send(&lab, Host::Provider, provider, 5060, b"OPTIONS", 5), 5);
    let d = delta(&before_counters, &lab.counters());
    assert_eq!((get(&d, "sip_allowed"), get(&d, "banned")), (5, 0), "{d:?}");
    // Next to the allowlist is fine; --force bans even the provider.
    lab.sipwall_ok(&[
        "ban",
        "add",
        "-i",
        PBX_IFACE,
        "44.229.228.187",
        "198.51.101.0/24",
    ]);
    lab.sipwall_ok(&["ban", "add", "-i", PBX_IFACE, "--file", file, "--force"]);
    let listed = snapshot();
    for cidr in ["203.0.113.7/32", "44.229.228.186/32", "44.229.228.187/32"] {
        assert!(listed.contains(cidr), "{cidr} not banned: {listed}");
    }
    assert_eq!(send(&lab, Host::Provider, provider, 5060, b"OPTIONS", 5), 0);
}

/// `check_rtp`, a media rate limit and strict egress go wrong where
/// `rtp_ports` holds the host's ephemeral ports: `attach` and `run` refuse
/// them (naming both sysctls and the value to set) unless the range is
/// reserved in the interface's namespace or --force is given; a reload to
/// such a file keeps the running policy.
#[test]
fn media_settings_among_the_ephemeral_ports_are_refused() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    let sysctl = |setting: &str| lab.sysctl(Host::Pbx, setting);
    // The PBX's namespace has its own sysctls: Linux's defaults, set
    // explicitly so that the host's own values cannot leak in.
    sysctl("net.ipv4.ip_local_port_range=32768 60999");
    sysctl("net.ipv4.ip_local_reserved_ports=");
    let checked = config(&lab, "check.toml", "[media]\ncheck_rtp = true\n");
    let limited = config(&lab, "limit.toml", "[media]\nrate_limit = \"5000/s\"\n");
    let egress = config(
        &lab,
        "egress.toml",
        "[egress]\nmode = \"strict\"\ndns = [\"203.0.113.53\"]\n",
    );
    for (file, says) in [
        (&checked, "rtp_invalid"),
        (&limited, "media rate limit"),
        (&egress, "out_reply"),
    ] {
        let args = [
            "attach",
            "-i",
            PBX_IFACE,
            "--mode",
            "native",
            "-c",
            file.to_str().unwrap(),
        ];
        sipwall(&lab, &args).expect(
            2,
            &[
                "rtp_ports 40000-60000 holds 20001",
                "net.ipv4.ip_local_port_range = 32768 60999",
                "sysctl -w net.ipv4.ip_local_reserved_ports=40000-60000",
                "ip_local_port_range=\"32768 39999\"",
                says,
                "--force",
            ],
            &format!("{}", file.display()),
        );
        assert_eq!(lab.xdp_prog_id(), None, "the refusal attached something");
    }
    // Dry run drops nothing: not refused. --force applies anyway.
    lab.attach(&["-c", checked.to_str().unwrap(), "--dry-run"]);
    lab.sipwall_ok(&["detach", "-i", PBX_IFACE]);
    lab.attach(&["-c", egress.to_str().unwrap(), "--force"]);
    lab.sipwall_ok(&["detach", "-i", PBX_IFACE]);

    // `run`: a file without the check starts; a reload to check_rtp is
    // refused while the range is not reserved, applied once it is.
    let file = lab.dir().join("run.toml");
    write_config(&file, "[media]\ncheck_rtp = false\n");
    let service = Service::start(&lab, &file);
    let junk = || {
        send(
            &lab,
            Host::Outsider,
            IpAddr::V4(OUTSIDER),
            45000,
            &[0u8; 40],
            5,
        )
    };
    assert_eq!(junk(), 5, "junk to the media range without check_rtp");
    write_config(&file, "[media]\ncheck_rtp = true\n");
    let line = service.reload();
    assert!(line.contains("kept the running policy"), "{line}");
    assert!(
        service
            .log()
            .contains("net.ipv4.ip_local_reserved_ports=40000-60000"),
        "{}",
        service.log()
    );
    assert_eq!(junk(), 5, "the refused reload turned check_rtp on");
    sysctl("net.ipv4.ip_local_reserved_ports=40000-60000");
    let line = service.reload();
    assert!(line.contains("configuration reloaded"), "{line}");
    assert_eq!(junk(), 0, "check_rtp after the reservation");
    let (status, log) = service.stop();
    assert!(status.success(), "{status}: {log}");
}
