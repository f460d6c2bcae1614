//! Strict egress with real peers between network namespaces (issue 11):
//! the PBX's own sipp calls the provider and gets through, calls an
//! outsider's SIP server and is stopped; RTP to the provider's media
//! ports leaves, other UDP does not; curl to an outsider's web server is
//! dropped until an `[[egress.allow]]` rule lets it; DNS reaches the
//! configured resolver only; the answers to the provider's inbound calls
//! get out. It also pins down what an application sees when its packet is
//! dropped on the way out (docs/policy.md, "What the application sees").
//!
//! One lab, steps in order; each asserts what the peers saw and which
//! egress counter moved.
use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket},
    os::fd::AsRawFd,
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use serde_json::Value;
use sipwall_tests::{
    netns::{Host, Running, TestLab, OUTSIDER, PBX, PBX_IFACE, PROVIDER},
    sipp::{self, expect_answered, Transport},
};

/// The provider host's own address: a DNS server nobody configured.
const OTHER_DNS: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const HTTP_PORT: u16 = 8080;
const WAIT: Duration = Duration::from_millis(400);

fn config(http_rule: bool) -> String {
    let mut text = format!(
        r#"
[media]
rtp_ports = "10000-20000"

[egress]
mode = "strict"
dns = ["{OUTSIDER}"]
"#
    );
    if http_rule {
        text += &format!("\n[[egress.allow]]\nproto = \"tcp\"\nports = [{HTTP_PORT}]\nto = [\"{OUTSIDER}/32\"]\n");
    }
    text
}

fn run_dir(lab: &TestLab, name: &str) -> PathBuf {
    let dir = lab.dir().join(name);
    std::fs::create_dir_all(&dir).expect("creating a run folder");
    dir
}

/// A sipp UAS in `host` answering on `addr`:5060.
fn uas(lab: &TestLab, host: Host, addr: Ipv4Addr, transport: Transport) -> Running {
    let dir = run_dir(lab, &format!("uas-{}-{}", host.name(), transport.name()));
    let t = if transport == Transport::Udp {
        "u1"
    } else {
        "t1"
    };
    let child = lab
        .command(host, sipwall_lab::sipp::find().expect("sipp"))
        .args([
            "-sn",
            "uas",
            "-i",
            &addr.to_string(),
            "-p",
            "5060",
            "-t",
            t,
            "-nostdin",
        ])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting sipp UAS");
    let uas = Running(child);
    lab.wait_bound(host, transport.name(), 5060, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("sipp UAS in {}: {e:#}", host.name()));
    uas
}

/// One call from the PBX's own sipp (UAC) to `to`:5060 over UDP; whether
/// it was answered (sipp exits 0 only then).
fn pbx_calls(lab: &TestLab, to: Ipv4Addr) -> bool {
    let dir = run_dir(lab, &format!("uac-pbx-{to}"));
    let mut child = lab
        .command(Host::Pbx, sipwall_lab::sipp::find().expect("sipp"))
        .args([
            &format!("{to}:5060"),
            "-sn",
            "uac",
            "-i",
            &PBX.to_string(),
            "-m",
            "1",
            "-nostdin",
            "-nd",
            "-recv_timeout",
            "2000",
            "-timeout",
            "8s",
            "-timeout_error",
        ])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting sipp UAC");
    let status =
        sipwall_lab::wait_child(&mut child, Duration::from_secs(15)).expect("waiting for sipp");
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    status.is_some_and(|s| s.success())
}

/// The egress counters of `stats --json`, by name.
fn out_counters(lab: &TestLab) -> BTreeMap<String, u64> {
    let text = lab.sipwall_ok(&["stats", "-i", PBX_IFACE, "--json"]);
    let json: Value = serde_json::from_str(&text).expect("stats --json is JSON");
    assert_eq!(json["interfaces"][0]["egress"]["mode"], "strict", "{text}");
    json["interfaces"][0]["egress"]["counters"]
        .as_object()
        .unwrap_or_else(|| panic!("no egress counters: {text}"))
        .iter()
        .map(|(k, v)| (k.clone(), v["packets"].as_u64().expect("packets")))
        .collect()
}

fn moved(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

/// Runs `f` and returns the egress counters that moved meanwhile.
fn during(lab: &TestLab, f: impl FnOnce()) -> BTreeMap<String, u64> {
    let before = out_counters(lab);
    f();
    moved(&before, &out_counters(lab))
}

/// Sends one datagram from the PBX (`sport`) to `to` and waits for what a
/// socket bound there in `host` receives.
fn datagram_arrives(lab: &TestLab, host: Host, sport: u16, to: SocketAddr) -> bool {
    let rx = lab.udp(host, to.ip(), to.port());
    let tx = lab.udp(Host::Pbx, IpAddr::V4(PBX), sport);
    sipwall_lab::traffic::send(&tx, to, 1, 100).unwrap_or_else(|e| panic!("{e:#}"));
    sipwall_lab::traffic::count(&rx, WAIT).unwrap_or_else(|e| panic!("{e:#}")) == 1
}

/// A DNS-like exchange: a query from the PBX to `server`:53, answered by a
/// responder bound there in `host`. Whether the answer came back.
fn dns_answered(lab: &TestLab, host: Host, server: Ipv4Addr) -> bool {
    let responder = lab.udp(host, IpAddr::V4(server), 53);
    responder.set_read_timeout(Some(WAIT)).unwrap();
    let client = lab.udp(Host::Pbx, IpAddr::V4(PBX), 0);
    client.set_read_timeout(Some(WAIT)).unwrap();
    let query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03sip\x04vapi\x02ai\x00\x00\x01\x00\x01";
    client
        .send_to(query, SocketAddr::new(IpAddr::V4(server), 53))
        .expect("sending the query");
    let mut buf = [0u8; 512];
    let Ok((n, from)) = responder.recv_from(&mut buf) else {
        return false;
    };
    responder.send_to(&buf[..n], from).expect("answering");
    client.recv_from(&mut buf).is_ok()
}

/// curl from the PBX to the outsider's web server, 3 s at most.
fn curl_ok(lab: &TestLab) -> bool {
    lab.command(Host::Pbx, "curl")
        .args([
            "-sf",
            "--max-time",
            "3",
            "-o",
            "/dev/null",
            &format!("http://{OUTSIDER}:{HTTP_PORT}/"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("running curl")
        .success()
}

fn write_config(lab: &TestLab, name: &str, text: &str) -> String {
    let path = lab.dir().join(name);
    std::fs::write(&path, text).expect("writing a config");
    path.to_string_lossy().into_owned()
}

#[test]
fn strict_egress_with_real_peers() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    let provider_uas = uas(&lab, Host::Provider, PROVIDER[0], Transport::Udp);
    let outsider_uas = uas(&lab, Host::Outsider, OUTSIDER, Transport::Udp);
    let web_dir = run_dir(&lab, "web");
    std::fs::write(web_dir.join("index.html"), "sipwall egress test\n").unwrap();
    let _web = Running(
        lab.command(Host::Outsider, "/usr/bin/python3")
            .args([
                "-m",
                "http.server",
                &HTTP_PORT.to_string(),
                "--bind",
                &OUTSIDER.to_string(),
            ])
            .current_dir(&web_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting python3 -m http.server"),
    );
    lab.wait_bound(Host::Outsider, "tcp", HTTP_PORT, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("the outsider's web server: {e:#}"));

    // Without the filter every peer answers: what fails later fails
    // because of it.
    assert!(
        pbx_calls(&lab, OUTSIDER),
        "a call to the outsider before egress rules"
    );
    assert!(curl_ok(&lab), "curl to the outsider before egress rules");

    let strict = write_config(&lab, "egress.toml", &config(false));
    // The SSH guard: strict egress would drop the answers of an SSH
    // session from the outsider (guard ingress lets it in): refused,
    // naming the rule that lets them out; nothing attached.
    let refused = lab
        .sipwall_command(&["attach", "-i", PBX_IFACE, "--mode", "native", "-c", &strict])
        .env("SSH_CONNECTION", format!("{OUTSIDER} 50022 {PBX} 22"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "SSH guard: {stderr}");
    assert!(
        stderr.contains("strict egress would lock you out")
            && stderr.contains("[[strict.allow]]")
            && stderr.contains(&format!("{OUTSIDER}/32")),
        "{stderr}"
    );
    assert_eq!(lab.xdp_prog_id(), None, "the refusal attached something");
    let ssh_ruled = write_config(
        &lab,
        "egress-ssh.toml",
        &format!(
            "{}\n[[strict.allow]]\nproto = \"tcp\"\nports = [22]\nfrom = [\"{OUTSIDER}/32\"]\n",
            config(false)
        ),
    );
    let out = lab
        .sipwall_command(&[
            "attach", "-i", PBX_IFACE, "--mode", "native", "-c", &ssh_ruled,
        ])
        .env("SSH_CONNECTION", format!("{OUTSIDER} 50022 {PBX} 22"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "with the rule: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    lab.attach(&["-c", &strict]);
    let status = lab.sipwall_ok(&["status", "-i", PBX_IFACE, "--json"]);
    assert!(status.contains("\"egress_mode\":\"strict\""), "{status}");

    // The provider's outbound rules: signalling to its addresses...
    let d = during(&lab, || {
        assert!(
            pbx_calls(&lab, PROVIDER[0]),
            "the PBX's call to the provider"
        );
    });
    assert!(d.get("out_sip_allowed").is_some_and(|&n| n > 0), "{d:?}");
    assert!(
        !d.contains_key("out_sip_denied") && !d.contains_key("out_denied"),
        "{d:?}"
    );

    // ...and nowhere else.
    let d = during(&lab, || {
        assert!(
            !pbx_calls(&lab, OUTSIDER),
            "a call to the outsider's SIP server must fail"
        );
    });
    assert!(d.get("out_sip_denied").is_some_and(|&n| n > 0), "{d:?}");
    assert!(!d.contains_key("out_sip_allowed"), "{d:?}");

    // RTP to the provider's media ports, at any address; other UDP not.
    let d = during(&lab, || {
        let to = SocketAddr::new(IpAddr::V4(OUTSIDER), 40000);
        assert!(
            datagram_arrives(&lab, Host::Outsider, 30123, to),
            "RTP to a provider media port"
        );
    });
    assert_eq!(d.get("out_rtp_allowed"), Some(&1), "{d:?}");
    let d = during(&lab, || {
        let to = SocketAddr::new(IpAddr::V4(OUTSIDER), 30000);
        assert!(
            !datagram_arrives(&lab, Host::Outsider, 30123, to),
            "UDP to a port outside the media range"
        );
    });
    assert_eq!(d.get("out_denied"), Some(&1), "{d:?}");

    // DNS to the configured resolver only.
    let d = during(&lab, || {
        assert!(
            dns_answered(&lab, Host::Outsider, OUTSIDER),
            "DNS to the configured resolver"
        );
    });
    assert_eq!(d.get("out_essential"), Some(&1), "{d:?}");
    let d = during(&lab, || {
        assert!(
            !dns_answered(&lab, Host::Provider, OTHER_DNS),
            "DNS to another server"
        );
    });
    assert_eq!(d.get("out_denied"), Some(&1), "{d:?}");

    // curl is dropped until a rule lets it out.
    let d = during(&lab, || assert!(!curl_ok(&lab), "curl without a rule"));
    assert!(d.get("out_denied").is_some_and(|&n| n > 0), "{d:?}");
    let ruled = write_config(&lab, "egress-http.toml", &config(true));
    lab.attach(&["-c", &ruled]);
    let d = during(&lab, || {
        assert!(curl_ok(&lab), "curl with an [[egress.allow]] rule")
    });
    assert!(d.get("out_rule_allowed").is_some_and(|&n| n > 0), "{d:?}");
    assert!(!d.contains_key("out_denied"), "{d:?}");

    // The answers to the provider's calls get out: over TCP the PBX
    // answers from 5060 to the provider's own port (out_reply).
    drop(provider_uas);
    drop(outsider_uas);
    let pbx_uas = sipp::uas(&lab, Transport::Tcp);
    let d = during(&lab, || {
        let calls = sipp::call(
            &lab,
            "provider calls in",
            Host::Provider,
            IpAddr::V4(PROVIDER[1]),
            Transport::Tcp,
            2,
        );
        expect_answered("provider calls in over TCP", &calls);
    });
    assert!(d.get("out_reply").is_some_and(|&n| n > 0), "{d:?}");
    assert!(
        !d.contains_key("out_denied") && !d.contains_key("out_sip_denied"),
        "{d:?}"
    );
    drop(pbx_uas);

    // Strict ingress with strict egress: the host's own connections get
    // their answers (the flow is learnt from what egress lets out).
    let both = write_config(
        &lab,
        "both.toml",
        &format!("{}\n[policy]\nmode = \"strict\"\n", config(true)),
    );
    lab.attach(&["-c", &both]);
    assert!(curl_ok(&lab), "curl with strict ingress and egress");
    assert!(
        dns_answered(&lab, Host::Outsider, OUTSIDER),
        "DNS with strict ingress and egress"
    );
    assert!(!curl_ok_after_rule_removed(&lab), "the rule removed again");

    lab.sipwall_ok(&["detach", "-i", PBX_IFACE]);
    assert!(curl_ok(&lab), "after detach nothing is filtered");
}

/// Re-attaches with strict ingress and egress but no HTTP rule; curl's
/// result.
fn curl_ok_after_rule_removed(lab: &TestLab) -> bool {
    let text = format!("{}\n[policy]\nmode = \"strict\"\n", config(false));
    let path = write_config(lab, "both-no-http.toml", &text);
    lab.attach(&["-c", &path]);
    curl_ok(lab)
}

/// What an application sees when strict egress drops its packets: a UDP
/// send succeeds (the datagram is lost, as on any network) unless the
/// socket asked for errors with IP_RECVERR, which gets ENOBUFS; a TCP
/// connect gets no answer and fails with ETIMEDOUT after the SYN retries
/// (set to 1 here: 3 s). Nothing blocks beyond the application's own
/// timeouts, and sipwall is not involved at all.
#[test]
fn what_an_application_sees_when_egress_drops() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    let strict = write_config(&lab, "egress.toml", &config(false));
    lab.attach(&["-c", &strict]);
    lab.exec(
        Host::Pbx,
        &["sysctl", "-q", "-w", "net.ipv4.tcp_syn_retries=1"],
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    let to = SocketAddr::new(IpAddr::V4(OUTSIDER), 9999);

    let plain = lab.udp(Host::Pbx, IpAddr::V4(PBX), 0);
    let sent = plain.send_to(b"dropped on the way out", to);
    assert_eq!(
        sent.as_ref().ok(),
        Some(&22),
        "UDP send without IP_RECVERR: {sent:?}"
    );

    let recverr = lab.udp(Host::Pbx, IpAddr::V4(PBX), 0);
    set_recverr(&recverr);
    let sent = recverr.send_to(b"dropped on the way out", to);
    let err = sent.expect_err("UDP send with IP_RECVERR reports the drop");
    assert_eq!(err.raw_os_error(), Some(libc::ENOBUFS), "{err}");

    let started = Instant::now();
    let result = lab
        .in_ns(Host::Pbx, || {
            std::net::TcpStream::connect_timeout(
                &SocketAddr::new(IpAddr::V4(OUTSIDER), HTTP_PORT),
                Duration::from_secs(10),
            )
        })
        .unwrap();
    let took = started.elapsed();
    let err = result.expect_err("a TCP connect dropped on the way out");
    assert!(
        err.kind() == std::io::ErrorKind::TimedOut || err.raw_os_error() == Some(libc::ETIMEDOUT),
        "TCP connect: {err} after {took:?}"
    );
    assert!(
        took < Duration::from_secs(9),
        "the SYN retries end it (3 s), not the caller's 10 s: {took:?}"
    );
    let counters = out_counters(&lab);
    assert!(
        counters["out_denied"] >= 3,
        "a datagram each and the SYNs: {counters:?}"
    );
    lab.sipwall_ok(&["detach", "-i", PBX_IFACE]);
}

fn set_recverr(sock: &UdpSocket) {
    let on: libc::c_int = 1;
    // SAFETY: a valid int option for a socket this process owns.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_RECVERR,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "IP_RECVERR: {}", std::io::Error::last_os_error());
}
