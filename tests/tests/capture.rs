//! `sipwall capture` in the namespace lab, with tshark reading what it
//! wrote: filtered by reason and by verdict, to a pipe, ended by
//! `--duration`, outbound packets marked so, a flood held to `--rate`
//! while the counters count every packet, one capture per interface, and
//! sampling a killed capture left on cleared by the next. Needs root,
//! tshark and `cargo build -p filter-user`.
use std::{
    io::{BufRead, BufReader, Read},
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use filter_kernel::runner::Runner;
use sipwall_tests::{
    netns::{traffic, Host, TestLab, OUTSIDER, PBX, PBX_IFACE, PROVIDER},
    skip_unless_root,
};

/// A running capture; killed when the test ends, also on failure.
struct Capture {
    child: Child,
    stderr: mpsc::Receiver<String>,
    said: Vec<String>,
}

impl Capture {
    /// Starts `sipwall capture -i wan0 ARGS` in the PBX and waits until it
    /// says it is capturing (sampling is on from then).
    fn start(lab: &TestLab, args: &[&str], stdout: Stdio) -> Capture {
        let mut all = vec!["capture", "-i", PBX_IFACE];
        all.extend_from_slice(args);
        let mut cmd = lab.sipwall_command(&all);
        cmd.stdout(stdout).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawning sipwall capture");
        let (tx, rx) = mpsc::channel();
        let err = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut capture = Capture {
            child,
            stderr: rx,
            said: Vec::new(),
        };
        loop {
            let line = capture
                .stderr
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("capture never started: {:?}", capture.said));
            capture.said.push(line.clone());
            if line.starts_with("sipwall: capturing on") {
                return capture;
            }
        }
    }

    /// Waits for the capture to end by itself (at most 60 s); returns its
    /// exit code and stderr.
    fn finish(mut self) -> (Option<i32>, String) {
        let status = sipwall_lab::wait_child(&mut self.child, Duration::from_secs(60))
            .expect("waiting for the capture")
            .unwrap_or_else(|| panic!("the capture did not end: {:?}", self.said));
        self.said.extend(self.stderr.try_iter());
        // The reader thread may still hold the last lines.
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_millis(200)) {
            self.said.push(line);
        }
        (status.code(), self.said.join("\n"))
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A file of the test's own, removed at the end.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str) -> TempFile {
        TempFile(std::env::temp_dir().join(format!(
            "sipwall-capture-{}-{name}.pcapng",
            std::process::id()
        )))
    }

    fn arg(&self) -> &str {
        self.0.to_str().expect("UTF-8 temp path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// One packet as tshark reads it: IP source, comment, direction flags.
#[derive(Debug)]
struct Read_ {
    src: String,
    comment: String,
    direction: String,
}

/// Every packet of a pcapng, read by tshark.
fn tshark(file: &Path) -> Vec<Read_> {
    let out = Command::new("tshark")
        .args(["-r"])
        .arg(file)
        .args([
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "ip.src",
            "-e",
            "frame.comment",
            "-e",
            "frame.packet_flags_direction",
        ])
        .output()
        .expect("running tshark (package tshark)");
    assert!(
        out.status.success(),
        "tshark could not read {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    parse_fields(&String::from_utf8_lossy(&out.stdout))
}

fn parse_fields(text: &str) -> Vec<Read_> {
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            Read_ {
                src: f.first().unwrap_or(&"").to_string(),
                comment: f.get(1).unwrap_or(&"").to_string(),
                direction: f.get(2).unwrap_or(&"").to_string(),
            }
        })
        .collect()
}

/// One datagram each way first, so that neighbour resolution does not
/// hold the counted packets back.
fn warm_up(lab: &TestLab) {
    for (host, src) in [(Host::Provider, PROVIDER[0]), (Host::Outsider, OUTSIDER)] {
        let rx = lab.udp(Host::Pbx, IpAddr::V4(PBX), 9);
        let tx = lab.udp(host, IpAddr::V4(src), 30123);
        traffic::send(&tx, SocketAddr::new(IpAddr::V4(PBX), 9), 1, 8).unwrap();
        traffic::count(&rx, Duration::from_millis(500)).unwrap();
    }
}

/// `n` SIP-sized datagrams to the PBX's 5060 from `host`'s `src`.
fn sip(lab: &TestLab, host: Host, src: Ipv4Addr, n: u64) {
    let tx = lab.udp(host, IpAddr::V4(src), 30123);
    traffic::send(&tx, SocketAddr::new(IpAddr::V4(PBX), 5060), n, 200).unwrap();
}

#[test]
fn a_capture_by_reason_holds_the_outsiders_sip_each_packet_commented() {
    skip_unless_root!();
    let lab = TestLab::new();
    lab.attach(&[]);
    warm_up(&lab);
    let file = TempFile::new("reason");
    let capture = Capture::start(
        &lab,
        &[
            "--reason",
            "sip_denied",
            "--count",
            "5",
            "--duration",
            "60",
            "-w",
            file.arg(),
        ],
        Stdio::null(),
    );
    sip(&lab, Host::Provider, PROVIDER[0], 5);
    sip(&lab, Host::Outsider, OUTSIDER, 20);
    let (code, said) = capture.finish();
    assert_eq!(code, Some(0), "{said}");
    let packets = tshark(&file.0);
    assert_eq!(packets.len(), 5, "{packets:?}");
    for p in &packets {
        assert_eq!(p.src, OUTSIDER.to_string(), "{packets:?}");
        assert_eq!(p.comment, "sipwall: drop sip_denied", "{packets:?}");
        assert_eq!(p.direction, "0x00000001", "inbound: {packets:?}");
    }
    assert!(said.contains("written"), "{said}");

    // The samples past --count stay in the ring; the next capture (of
    // nothing) starts without them.
    let next = TempFile::new("after-reason");
    let capture = Capture::start(
        &lab,
        &["--reason", "banned", "--duration", "0.5", "-w", next.arg()],
        Stdio::null(),
    );
    let (code, said) = capture.finish();
    assert_eq!(code, Some(0), "{said}");
    let left = tshark(&next.0);
    assert!(left.is_empty(), "an earlier capture's samples: {left:?}");
}

#[test]
fn verdict_pass_holds_only_the_providers() {
    skip_unless_root!();
    let lab = TestLab::new();
    lab.attach(&[]);
    warm_up(&lab);
    let file = TempFile::new("pass");
    let capture = Capture::start(
        &lab,
        &[
            "--verdict",
            "pass",
            "--reason",
            "sip_allowed",
            "--reason",
            "sip_denied",
            "--count",
            "4",
            "-w",
            file.arg(),
        ],
        Stdio::null(),
    );
    sip(&lab, Host::Outsider, OUTSIDER, 6);
    sip(&lab, Host::Provider, PROVIDER[0], 6);
    let (code, said) = capture.finish();
    assert_eq!(code, Some(0), "{said}");
    let packets = tshark(&file.0);
    assert_eq!(packets.len(), 4, "{packets:?}");
    for p in &packets {
        assert_eq!(p.src, PROVIDER[0].to_string(), "{packets:?}");
        assert_eq!(p.comment, "sipwall: pass sip_allowed", "{packets:?}");
    }
}

#[test]
fn standard_output_piped_to_tshark() {
    skip_unless_root!();
    let lab = TestLab::new();
    lab.attach(&[]);
    warm_up(&lab);
    let mut capture = Capture::start(
        &lab,
        &["--reason", "sip_denied", "--count", "3", "-w", "-"],
        Stdio::piped(),
    );
    let pipe = capture.child.stdout.take().expect("capture's stdout");
    let mut reader = Command::new("tshark")
        .args(["-r", "-", "-T", "fields", "-E", "separator=|"])
        .args([
            "-e",
            "ip.src",
            "-e",
            "frame.comment",
            "-e",
            "frame.packet_flags_direction",
        ])
        .stdin(Stdio::from(pipe))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running tshark");
    sip(&lab, Host::Outsider, OUTSIDER, 5);
    let (code, said) = capture.finish();
    assert_eq!(code, Some(0), "{said}");
    let mut text = String::new();
    reader
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    let status = reader.wait().expect("tshark");
    assert!(status.success(), "tshark failed reading the pipe");
    let packets = parse_fields(&text);
    assert_eq!(packets.len(), 3, "{text}");
    assert!(
        packets
            .iter()
            .all(|p| p.comment == "sipwall: drop sip_denied"),
        "{text}"
    );
}

#[test]
fn duration_ends_with_nothing_matching_and_a_valid_file() {
    skip_unless_root!();
    let lab = TestLab::new();
    lab.attach(&[]);
    let file = TempFile::new("duration");
    let capture = Capture::start(
        &lab,
        &["--reason", "banned", "--duration", "1", "-w", file.arg()],
        Stdio::null(),
    );
    let (code, said) = capture.finish();
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains("0 matched, 0 written, 0 skipped by the rate cap, 0 lost"),
        "{said}"
    );
    assert!(tshark(&file.0).is_empty());
}

#[test]
fn outbound_packets_are_marked_outbound() {
    skip_unless_root!();
    let lab = TestLab::new();
    let config = TempFile::new("egress-config");
    std::fs::write(
        &config.0,
        "[media]\nrtp_ports = \"10000-20000\"\n[egress]\nmode = \"strict\"\n",
    )
    .unwrap();
    lab.attach(&["-c", config.arg()]);
    warm_up(&lab);
    let file = TempFile::new("outbound");
    let capture = Capture::start(
        &lab,
        &["--direction", "out", "--count", "3", "-w", file.arg()],
        Stdio::null(),
    );
    let tx = lab.udp(Host::Pbx, IpAddr::V4(PBX), 5060);
    traffic::send(&tx, SocketAddr::new(IpAddr::V4(PROVIDER[0]), 5060), 5, 200).unwrap();
    let (code, said) = capture.finish();
    assert_eq!(code, Some(0), "{said}");
    let packets = tshark(&file.0);
    assert_eq!(packets.len(), 3, "{packets:?}");
    for p in &packets {
        assert_eq!(p.src, PBX.to_string(), "{packets:?}");
        assert_eq!(p.comment, "sipwall: pass out_sip_allowed", "{packets:?}");
        assert_eq!(p.direction, "0x00000002", "outbound: {packets:?}");
    }
}

/// The numbers of the closing report line.
fn report(said: &str) -> [u64; 4] {
    let line = said
        .lines()
        .find(|l| l.contains(" matched, "))
        .unwrap_or_else(|| panic!("no report: {said}"));
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    numbers
        .try_into()
        .unwrap_or_else(|_| panic!("report: {line}"))
}

#[test]
fn a_flood_is_sampled_at_the_rate_cap_and_counted_whole() {
    skip_unless_root!();
    const FLOOD: u32 = 200_000;
    let lab = TestLab::new();
    lab.attach(&[]);
    let before = lab.counters()["sip_denied"].packets;
    let file = TempFile::new("flood");
    // The flood: one frame run 200,000 times through a second copy of the
    // program on the attachment's own maps (BPF_PROG_TEST_RUN).
    let runner = Runner::from_pins(&lab.pin_dir(PBX_IFACE)).expect("the program on the pins");
    let frame = sipwall::ops::describe::frame(
        &sipwall::ops::describe::parse("udp 203.0.113.9:5060 > 192.0.2.1:5060").unwrap(),
    );
    let capture = Capture::start(
        &lab,
        &["--reason", "sip_denied", "--rate", "100", "-w", file.arg()],
        Stdio::null(),
    );
    let (action, _) = runner.time(&frame, FLOOD).expect("the flood");
    assert_eq!(action, 1, "XDP_DROP");
    // Ctrl-C ends it, with its report and a valid file.
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(capture.child.id() as i32, libc::SIGINT) };
    let (code, said) = capture.finish();
    assert_eq!(code, Some(0), "{said}");
    let counted = lab.counters()["sip_denied"].packets - before;
    let [matched, written, skipped, lost] = report(&said);
    assert_eq!(counted, u64::from(FLOOD), "the counters count every packet");
    assert_eq!(matched, u64::from(FLOOD), "{said}");
    assert_eq!(written + skipped + lost, matched, "{said}");
    // 100 a second, shared out over the CPUs; the flood runs on one CPU in
    // well under a second, but may straddle two of its windows.
    assert!((1..=200).contains(&written), "{said}");
    assert!(skipped >= u64::from(FLOOD) - 200, "{said}");
    assert_eq!(tshark(&file.0).len() as u64, written);
}

#[test]
fn one_capture_per_interface_and_a_killed_one_is_cleared_by_the_next() {
    skip_unless_root!();
    let lab = TestLab::new();
    lab.attach(&[]);
    let (first, second, third) = (
        TempFile::new("first"),
        TempFile::new("second"),
        TempFile::new("third"),
    );
    let mut running = Capture::start(&lab, &["-w", first.arg()], Stdio::null());
    let refused = lab.sipwall(&["capture", "-i", PBX_IFACE, "-w", second.arg()]);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("a capture already runs"), "{err}");
    assert!(!second.0.exists(), "a refused capture writes no file");
    let status = lab.sipwall_ok(&["status", "-i", PBX_IFACE]);
    assert!(status.contains("capture running"), "{status}");

    // SIGKILL: no cleanup; status says so, and the next capture clears it.
    running.child.kill().expect("SIGKILL");
    running.child.wait().unwrap();
    let status = lab.sipwall_ok(&["status", "-i", PBX_IFACE]);
    assert!(
        status.contains("left on by a capture that is gone"),
        "{status}"
    );
    let next = Capture::start(
        &lab,
        &["--duration", "0.5", "-w", third.arg()],
        Stdio::null(),
    );
    let (code, said) = next.finish();
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("left on by a capture that is gone"), "{said}");
    let status = lab.sipwall_ok(&["status", "-i", PBX_IFACE]);
    assert!(
        !status.contains("capture"),
        "sampling is off again: {status}"
    );
}

#[test]
fn run_clears_sampling_a_killed_capture_left_on() {
    skip_unless_root!();
    let lab = TestLab::new();
    lab.attach(&[]);
    let file = TempFile::new("killed");
    let mut killed = Capture::start(&lab, &["-w", file.arg()], Stdio::null());
    killed.child.kill().expect("SIGKILL");
    killed.child.wait().unwrap();
    let status = lab.sipwall_ok(&["status", "-i", PBX_IFACE, "--json"]);
    assert!(status.contains(r#""alive":false"#), "{status}");

    let config = TempFile::new("run-config");
    std::fs::write(&config.0, "# the defaults\n").unwrap();
    let service = sipwall_tests::service::Service::start(&lab, &config.0);
    service.wait_log(
        "left on by a capture that is gone",
        0,
        Duration::from_secs(10),
    );
    let status = lab.sipwall_ok(&["status", "-i", PBX_IFACE, "--json"]);
    assert!(status.contains(r#""capture":null"#), "{status}");
    let (exit, log) = service.stop();
    assert!(exit.success(), "{log}");
}
