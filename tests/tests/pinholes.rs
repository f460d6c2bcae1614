//! Calls mode's pinholes opened and closed by hand (`sipwall pinhole`),
//! with real peers between network namespaces: media from the pinhole's
//! address passes as `rtp_allowed`, from any other as `rtp_unsolicited`,
//! and the same packets are dropped once the pinhole is closed; what the
//! commands refuse (a port outside rtp_ports, an address that is not
//! unicast, range mode) exits 2 and changes nothing. No call reader runs
//! here: `unattended = "closed"` so that only pinholes pass media.
use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use serde_json::Value;
use sipwall_tests::{
    netns::{delta, traffic, Count, Host, TestLab, OUTSIDER, PBX, PBX_IFACE, PROVIDER},
    operate::{sipwall, status_json},
    service::{get as http_get, sample, Service},
};

const IDLE: Duration = Duration::from_millis(400);

const CALLS: &str =
    "[media]\nrtp_ports = \"10000-10100\"\nmode = \"calls\"\nunattended = \"closed\"\n";
const RANGE: &str = "[media]\nrtp_ports = \"10000-10100\"\n";

fn config(lab: &TestLab, name: &str, text: &str) -> PathBuf {
    let path = lab.dir().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn get(d: &BTreeMap<String, Count>, reason: &str) -> u64 {
    d.get(reason)
        .unwrap_or_else(|| panic!("no `{reason}` counter: {d:?}"))
        .packets
}

/// Sends `n` RTP-looking datagrams from `host`/`src` to the PBX's `port`;
/// returns how many a socket there received.
fn send(lab: &TestLab, host: Host, src: IpAddr, port: u16, n: u64) -> u64 {
    let dst = SocketAddr::new(IpAddr::V4(PBX), port);
    let rx = lab.udp(Host::Pbx, dst.ip(), port);
    let tx = lab.udp(host, src, 0);
    let mut rtp = vec![0x80, 0x08, 0, 1, 0, 0, 0, 160, 0x12, 0x34, 0x56, 0x78];
    rtp.extend([0xd5; 160]);
    for _ in 0..n {
        tx.send_to(&rtp, dst).unwrap();
    }
    traffic::count(&rx, IDLE).unwrap()
}

/// `pinhole list -i IF --json`.
fn pinholes(lab: &TestLab) -> Vec<Value> {
    let text = lab.sipwall_ok(&["pinhole", "list", "-i", PBX_IFACE, "--json"]);
    let doc: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    doc.as_array()
        .unwrap_or_else(|| panic!("pinhole list --json is not an array: {text}"))
        .clone()
}

#[test]
fn a_pinhole_added_by_hand_passes_its_media_and_no_other() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    let calls = config(&lab, "calls.toml", CALLS);
    lab.attach(&["-c", calls.to_str().unwrap()]);
    let provider = PROVIDER[0].to_string();
    let port = "10010";

    // Refused, nothing changed: a port outside rtp_ports, an address media
    // cannot come from, a --for out of bounds.
    sipwall(
        &lab,
        &[
            "pinhole", "add", "-i", PBX_IFACE, "--port", "10200", "--from", &provider,
        ],
    )
    .expect(
        2,
        &["--port 10200", "10000-10100"],
        "a port outside rtp_ports",
    );
    for (from, why) in [
        ("0.0.0.0", "unspecified"),
        ("224.0.0.5", "multicast"),
        ("127.0.0.1", "loopback"),
        ("provider.example", "not an IP address"),
    ] {
        sipwall(
            &lab,
            &[
                "pinhole", "add", "-i", PBX_IFACE, "--port", port, "--from", from,
            ],
        )
        .expect(2, &[why], "--from that is not unicast");
    }
    sipwall(
        &lab,
        &[
            "pinhole", "add", "-i", PBX_IFACE, "--port", port, "--from", &provider, "--for", "2d",
        ],
    )
    .expect(2, &["24 h"], "--for beyond a day");
    assert_eq!(
        pinholes(&lab),
        Vec::<Value>::new(),
        "a refusal opened a pinhole"
    );

    // Nothing open: the provider's media is unsolicited.
    let before = lab.counters();
    let got = send(&lab, Host::Provider, IpAddr::V4(PROVIDER[0]), 10010, 20);
    let d = delta(&before, &lab.counters());
    assert_eq!(got, 0, "media passed without a pinhole");
    assert_eq!(get(&d, "rtp_unsolicited"), 20, "{d:?}");

    // Opened: listed, and its media passes; another source's does not.
    sipwall(
        &lab,
        &[
            "pinhole", "add", "-i", PBX_IFACE, "--port", port, "--from", &provider,
        ],
    )
    .ok("pinhole add in range");
    let listed = pinholes(&lab);
    assert_eq!(listed.len(), 1, "{listed:?}");
    let p = &listed[0];
    assert_eq!(p["iface"], PBX_IFACE);
    assert_eq!(p["port"], 10010);
    assert_eq!(p["remote"], provider.as_str());
    assert_eq!(p["call_id"], Value::Null);
    assert_eq!(p["live"], true);
    assert_eq!(p["packets"], 0);

    let before = lab.counters();
    let from_provider = send(&lab, Host::Provider, IpAddr::V4(PROVIDER[0]), 10010, 20);
    let from_outsider = send(&lab, Host::Outsider, IpAddr::V4(OUTSIDER), 10010, 30);
    let d = delta(&before, &lab.counters());
    assert_eq!((from_provider, from_outsider), (20, 0));
    assert_eq!(
        (get(&d, "rtp_allowed"), get(&d, "rtp_unsolicited")),
        (20, 30),
        "{d:?}"
    );
    assert_eq!(pinholes(&lab)[0]["packets"], 20);

    // The dropped source is named by top, and status tells calls mode.
    let top = lab.sipwall_ok(&[
        "top",
        "-i",
        PBX_IFACE,
        "--reason",
        "rtp_unsolicited",
        "--json",
    ]);
    assert!(top.contains(&OUTSIDER.to_string()), "{top}");
    let status = status_json(&lab);
    let iface = &status["interfaces"][0];
    assert_eq!(iface["media_mode"], "calls", "{status}");
    assert_eq!(iface["media_reader_up"], false, "{status}");
    assert_eq!(iface["pinholes_active"], 1, "{status}");
    assert_eq!(iface["signalling_copies_lost"], 0, "{status}");
    let text = lab.sipwall_ok(&["status", "-i", PBX_IFACE]);
    assert!(text.contains("media: calls, reader DOWN"), "{text}");
    // No reader and unattended = "closed": doctor fails media_reader.
    assert_eq!(doctor_media_reader(&lab), "fail");

    // Open to any source, ahead of time with --for: listed as `any`.
    sipwall(
        &lab,
        &[
            "pinhole", "add", "-i", PBX_IFACE, "--port", "10020", "--from", "any", "--for", "1h",
        ],
    )
    .ok("pinhole add --from any --for 1h");
    let any = pinholes(&lab)
        .into_iter()
        .find(|p| p["port"] == 10020)
        .expect("the pinhole open to any source is listed");
    assert_eq!(any["remote"], Value::Null);
    assert_eq!(any["live"], true, "{any}");
    // No media yet: idle since it was opened, though written as seen
    // ahead of now.
    assert!(any["idle_seconds"].as_u64().unwrap() <= 2, "{any}");
    assert_eq!(
        send(&lab, Host::Outsider, IpAddr::V4(OUTSIDER), 10020, 5),
        5
    );

    // --for shorter than call_idle: without media it closes by itself.
    let outsider = OUTSIDER.to_string();
    sipwall(
        &lab,
        &[
            "pinhole", "add", "-i", PBX_IFACE, "--port", "10030", "--from", &outsider, "--for", "1",
        ],
    )
    .ok("pinhole add --for 1");
    std::thread::sleep(Duration::from_millis(1500));
    let short = pinholes(&lab)
        .into_iter()
        .find(|p| p["port"] == 10030)
        .expect("the expired pinhole is still listed");
    assert_eq!(short["live"], false, "{short}");
    let before = lab.counters();
    assert_eq!(
        send(&lab, Host::Outsider, IpAddr::V4(OUTSIDER), 10030, 5),
        0
    );
    let d = delta(&before, &lab.counters());
    assert_eq!(get(&d, "rtp_unsolicited"), 5, "{d:?}");

    // Closed: the same packets are unsolicited again; closing it twice is
    // refused like `ban del` of what is not banned, unless --missing-ok.
    let del = [
        "pinhole", "del", "-i", PBX_IFACE, "--port", port, "--from", &provider,
    ];
    sipwall(&lab, &del).ok("pinhole del");
    let before = lab.counters();
    let got = send(&lab, Host::Provider, IpAddr::V4(PROVIDER[0]), 10010, 20);
    let d = delta(&before, &lab.counters());
    assert_eq!(got, 0, "media passed through a closed pinhole");
    assert_eq!(
        (get(&d, "rtp_allowed"), get(&d, "rtp_unsolicited")),
        (0, 20),
        "{d:?}"
    );
    sipwall(&lab, &del).expect(2, &["no pinhole", "port 10010"], "a second del");
    let mut missing_ok = del.to_vec();
    missing_ok.push("--missing-ok");
    sipwall(&lab, &missing_ok).ok("del --missing-ok of a closed pinhole");
    assert!(
        pinholes(&lab).iter().all(|p| p["port"] != 10010),
        "the closed pinhole is still listed"
    );

    // Range mode: no pinhole can be added, and status says so.
    let range = config(&lab, "range.toml", RANGE);
    lab.attach(&["-c", range.to_str().unwrap()]);
    sipwall(
        &lab,
        &[
            "pinhole", "add", "-i", PBX_IFACE, "--port", port, "--from", &provider,
        ],
    )
    .expect(2, &["range mode", "[media] mode = \"calls\""], "range mode");
    let status = status_json(&lab);
    let iface = &status["interfaces"][0];
    assert_eq!(iface["media_mode"], "range", "{status}");
    assert_eq!(iface["media_reader_up"], Value::Null, "{status}");
    assert_eq!(iface["pinholes_active"], 0, "{status}");
    assert_eq!(doctor_media_reader(&lab), "skip");
}

/// The status of doctor's `media_reader` check.
fn doctor_media_reader(lab: &TestLab) -> String {
    let run = sipwall(lab, &["doctor", "-i", PBX_IFACE, "--json"]);
    let doc: Value =
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("doctor --json: {e}\n{run}"));
    let check = doc["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("doctor --json without checks\n{run}"))
        .iter()
        .find(|c| c["name"] == "media_reader")
        .unwrap_or_else(|| panic!("no media_reader check\n{run}"))
        .clone();
    check["status"].as_str().unwrap().to_string()
}

/// `sipwall run` in calls mode serves the media series: the mode in
/// sipwall_policy_info, the live pinholes, the copies lost, the reader's
/// state (whether this build's `run` has a reader or not: present, 0 or 1).
#[test]
fn run_serves_the_media_metrics_in_calls_mode() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    let calls = config(&lab, "calls.toml", CALLS);
    let service = Service::start(&lab, &calls);
    let provider = PROVIDER[0].to_string();
    sipwall(
        &lab,
        &[
            "pinhole", "add", "-i", PBX_IFACE, "--port", "10010", "--from", &provider,
        ],
    )
    .ok("pinhole add under run");
    let (code, body) = http_get(&lab, "/metrics");
    assert_eq!(code, 200, "{body}");
    let iface = [("iface", PBX_IFACE)];
    assert_eq!(
        sample(
            &body,
            "sipwall_policy_info",
            &[("iface", PBX_IFACE), ("media_mode", "calls")]
        ),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, "sipwall_pinholes_active", &iface),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, "sipwall_signalling_copies_lost_total", &iface),
        Some(0.0),
        "{body}"
    );
    let up = sample(&body, "sipwall_media_reader_up", &iface);
    assert!(matches!(up, Some(v) if v == 0.0 || v == 1.0), "{body}");
    for family in ["sipwall_calls_active", "sipwall_pinhole_install_seconds"] {
        assert!(
            body.contains(&format!("# TYPE {family} ")),
            "{family}: {body}"
        );
    }
    drop(service);
}

/// The pinholes have several writers (the reader of `run`, `pinhole
/// add`/`del`), each picking a free way of a port and writing it: a writer
/// holds the pin directory's lock from the pick to the write, so that two
/// cannot take the same way. Held here by hand, it keeps an add waiting;
/// released, the add goes through, and the other writer's pinhole on the
/// same port is still there.
#[test]
fn pinhole_writers_take_turns() {
    sipwall_tests::skip_unless_root!();
    use std::os::fd::AsRawFd as _;
    let lab = TestLab::new();
    let calls = config(&lab, "calls.toml", CALLS);
    lab.attach(&["-c", calls.to_str().unwrap()]);
    let dir = lab.pin_dir(PBX_IFACE);
    let idle = 60_000_000_000;
    let mut first = filter_kernel::media::MediaMaps::open(&dir).unwrap();
    first
        .open_pinhole(10020, Some(IpAddr::V4(PROVIDER[0])), None, idle)
        .unwrap();

    let held = std::fs::File::open(&dir).unwrap();
    // SAFETY: flock on a descriptor this test owns.
    assert_eq!(unsafe { libc::flock(held.as_raw_fd(), libc::LOCK_EX) }, 0);
    let (tx, rx) = std::sync::mpsc::channel();
    let second_dir = dir.clone();
    let adder = std::thread::spawn(move || {
        let mut second = filter_kernel::media::MediaMaps::open(&second_dir).unwrap();
        let result = second.open_pinhole(10020, Some(IpAddr::V4(PROVIDER[1])), None, idle);
        tx.send(result.is_ok()).unwrap();
    });
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "an add went through while another writer held the lock"
    );
    // SAFETY: as above.
    unsafe { libc::flock(held.as_raw_fd(), libc::LOCK_UN) };
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(true));
    adder.join().unwrap();

    let remotes: Vec<String> = pinholes(&lab)
        .iter()
        .filter(|p| p["port"] == 10020)
        .map(|p| p["remote"].as_str().unwrap_or("").to_string())
        .collect();
    let mut want = vec![PROVIDER[0].to_string(), PROVIDER[1].to_string()];
    want.sort();
    let mut got = remotes;
    got.sort();
    assert_eq!(got, want, "both writers' pinholes on the port");
}
