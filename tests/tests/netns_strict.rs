//! Strict mode with real peers between network namespaces (issue 10): the
//! provider's calls pass and everything unasked-for is dropped, the host's
//! own connections get their answers, the essential ICMP keeps the network
//! working (path MTU, neighbour discovery past the cache's lifetime), a
//! session opened before strict mode survives it, and the lockout guards
//! (SSH guard, `--confirm` rollback, also without a terminal) hold.
//!
//! One lab, steps in order; each step asserts what the peers saw and which
//! counter moved.
use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    process::Stdio,
    time::{Duration, Instant},
};

use sipwall_tests::{
    netns::{
        delta, Count, Host, Running, TestLab, OUTSIDER, OUTSIDER6, PBX, PBX6, PBX_IFACE, PROVIDER,
    },
    sipp::{self, expect_answered, expect_unanswered, Transport},
};

/// The management network: the provider host's own link (198.51.100.2).
const MGMT_HOST: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);

const STRICT: &str = r#"
[media]
rtp_ports = "10000-20000"

[policy]
mode = "strict"

[[strict.allow]]
proto = "tcp"
ports = [22]
from = ["198.51.100.0/24"]
"#;

/// Source port for datagrams outside both media ranges.
const PLAIN_PORT: u16 = 30123;
const WAIT: Duration = Duration::from_millis(400);

fn get(d: &BTreeMap<String, Count>, reason: &str) -> u64 {
    d.get(reason)
        .unwrap_or_else(|| panic!("no `{reason}` counter: {d:?}"))
        .packets
}

fn write_config(lab: &TestLab, name: &str, text: &str) -> String {
    let path = lab.dir().join(name);
    std::fs::write(&path, text).expect("writing a config");
    path.to_string_lossy().into_owned()
}

/// Sends `n` datagrams from `host` (`src`:`sport`) to `dst` and returns
/// how many a socket bound there on the PBX received.
fn datagrams(lab: &TestLab, host: Host, src: SocketAddr, dst: SocketAddr, n: u64) -> u64 {
    let rx = lab.udp(Host::Pbx, dst.ip(), dst.port());
    let tx = lab.udp(host, src.ip(), src.port());
    sipwall_lab::traffic::send(&tx, dst, n, 100).unwrap_or_else(|e| panic!("{e:#}"));
    sipwall_lab::traffic::count(&rx, WAIT).unwrap_or_else(|e| panic!("{e:#}"))
}

/// A TCP listener in `host` on `addr`.
fn listen(lab: &TestLab, host: Host, addr: SocketAddr) -> TcpListener {
    lab.in_ns(host, || TcpListener::bind(addr))
        .unwrap()
        .unwrap_or_else(|e| panic!("listening on {addr}: {e}"))
}

/// A TCP connection from `host` (bound to `src`) to `dst`, within 2 s.
fn connect(lab: &TestLab, host: Host, src: Option<IpAddr>, dst: SocketAddr) -> Option<TcpStream> {
    lab.in_ns(host, || {
        // SAFETY: a plain socket call; the fd is owned below.
        let fd = unsafe {
            libc::socket(
                if dst.is_ipv4() {
                    libc::AF_INET
                } else {
                    libc::AF_INET6
                },
                libc::SOCK_STREAM,
                0,
            )
        };
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        // SAFETY: fd is a fresh socket this closure owns.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        if let Some(src) = src {
            let (sa, len) = sockaddr(SocketAddr::new(src, 0));
            // SAFETY: sa is a valid sockaddr of `len` bytes.
            let rc = unsafe { libc::bind(owned.as_raw_fd(), sa.as_ptr().cast(), len) };
            assert_eq!(rc, 0, "bind {src}: {}", std::io::Error::last_os_error());
        }
        let stream = TcpStream::from(owned);
        stream.set_nonblocking(true).unwrap();
        let (sa, len) = sockaddr(dst);
        // SAFETY: as above.
        unsafe { libc::connect(stream.as_raw_fd(), sa.as_ptr().cast(), len) };
        let end = Instant::now() + Duration::from_secs(2);
        while Instant::now() < end {
            if stream.peer_addr().is_ok() {
                stream.set_nonblocking(false).unwrap();
                return Some(stream);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    })
    .unwrap()
}

/// A sockaddr_in or sockaddr_in6 as bytes.
fn sockaddr(addr: SocketAddr) -> (Vec<u8>, libc::socklen_t) {
    match addr {
        SocketAddr::V4(a) => {
            let sa = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: reading a plain C struct as bytes.
            let bytes = unsafe {
                std::slice::from_raw_parts((&sa as *const libc::sockaddr_in).cast::<u8>(), 16)
            };
            (bytes.to_vec(), 16)
        }
        SocketAddr::V6(a) => {
            let sa = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: 0,
            };
            let len = std::mem::size_of::<libc::sockaddr_in6>();
            // SAFETY: as above.
            let bytes = unsafe {
                std::slice::from_raw_parts((&sa as *const libc::sockaddr_in6).cast::<u8>(), len)
            };
            (bytes.to_vec(), len as libc::socklen_t)
        }
    }
}

/// One byte each way over `a` (client) and `b` (server side).
fn exchange(a: &mut TcpStream, b: &mut TcpStream) -> bool {
    for s in [&*a, &*b] {
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    }
    let mut buf = [0u8; 1];
    a.write_all(b"x").is_ok()
        && b.read_exact(&mut buf).is_ok()
        && b.write_all(b"y").is_ok()
        && a.read_exact(&mut buf).is_ok()
}

/// Internet checksum.
fn checksum(bytes: &[u8]) -> u16 {
    let mut sum = 0u32;
    for pair in bytes.chunks(2) {
        let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Sends an ICMP(v6) echo request from `host` to `dst` over a raw socket
/// and waits up to 1 s for its reply.
fn ping(lab: &TestLab, host: Host, dst: IpAddr, id: u16) -> bool {
    lab.in_ns(host, move || {
        let (family, proto, request, reply) = match dst {
            IpAddr::V4(_) => (libc::AF_INET, libc::IPPROTO_ICMP, 8u8, 0u8),
            IpAddr::V6(_) => (libc::AF_INET6, libc::IPPROTO_ICMPV6, 128, 129),
        };
        // SAFETY: a plain socket call; the fd is owned below.
        let fd = unsafe { libc::socket(family, libc::SOCK_RAW, proto) };
        assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
        // SAFETY: fd is fresh and owned from here on.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 200_000,
        };
        // SAFETY: a valid timeval for SO_RCVTIMEO.
        unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        let mut msg = vec![request, 0, 0, 0];
        msg.extend_from_slice(&id.to_be_bytes());
        msg.extend_from_slice(&[0, 1]);
        msg.extend_from_slice(b"sipwall strict test");
        if dst.is_ipv4() {
            let c = checksum(&msg);
            msg[2..4].copy_from_slice(&c.to_be_bytes());
        } // ICMPv6: the kernel computes the checksum of raw ICMPv6 sockets.
        let (sa, len) = sockaddr(SocketAddr::new(dst, 0));
        // SAFETY: msg and sa are valid for their lengths.
        let sent = unsafe {
            libc::sendto(
                sock.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                sa.as_ptr().cast(),
                len,
            )
        };
        assert!(
            sent > 0,
            "sending the echo: {}",
            std::io::Error::last_os_error()
        );
        let end = Instant::now() + Duration::from_secs(1);
        let mut buf = [0u8; 1500];
        while Instant::now() < end {
            // SAFETY: buf is valid for its length.
            let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n <= 0 {
                continue;
            }
            // IPv4 raw sockets hand over the IP header too.
            let icmp = if dst.is_ipv4() {
                &buf[usize::from(buf[0] & 0x0f) * 4..n as usize]
            } else {
                &buf[..n as usize]
            };
            if icmp.len() >= 6 && icmp[0] == reply && icmp[4..6] == id.to_be_bytes() {
                return true;
            }
        }
        false
    })
    .unwrap()
}

/// Sends a bare TCP segment with `flags` (e.g. ACK) from the outsider to
/// the PBX over a raw IP socket: no connection stands behind it.
fn bare_tcp(lab: &TestLab, sport: u16, dport: u16, flags: u8) {
    lab.in_ns(Host::Outsider, move || {
        let (src, dst) = (OUTSIDER.octets(), PBX.octets());
        let mut tcp = Vec::new();
        tcp.extend_from_slice(&sport.to_be_bytes());
        tcp.extend_from_slice(&dport.to_be_bytes());
        tcp.extend_from_slice(&0x1234_5678u32.to_be_bytes()); // sequence
        tcp.extend_from_slice(&0x0bad_beefu32.to_be_bytes()); // acknowledgement
        tcp.extend_from_slice(&[5 << 4, flags, 0xff, 0xff, 0, 0, 0, 0]);
        let mut pseudo = src.to_vec();
        pseudo.extend_from_slice(&dst);
        pseudo.extend_from_slice(&[0, 6, 0, tcp.len() as u8]);
        pseudo.extend_from_slice(&tcp);
        let c = checksum(&pseudo);
        tcp[16..18].copy_from_slice(&c.to_be_bytes());
        // SAFETY: a plain socket call; the fd is owned below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_TCP) };
        assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
        // SAFETY: fresh fd.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        let (sa, len) = sockaddr(SocketAddr::new(IpAddr::V4(PBX), 0));
        // SAFETY: tcp and sa valid for their lengths.
        let sent = unsafe {
            libc::sendto(
                sock.as_raw_fd(),
                tcp.as_ptr().cast(),
                tcp.len(),
                0,
                sa.as_ptr().cast(),
                len,
            )
        };
        assert!(
            sent > 0,
            "sending a bare segment: {}",
            std::io::Error::last_os_error()
        );
    })
    .unwrap();
}

/// Whether the PBX's interface runs an XDP program (as `ip link`
/// reports it) and sipwall's TCX egress program (as the kernel lists the
/// interface's TCX programs): independent of sipwall's own view.
fn programs_on_iface(lab: &TestLab) -> (bool, bool) {
    use aya::programs::{tc::SchedClassifier, TcAttachType};
    let egress = lab
        .in_ns(Host::Pbx, || {
            SchedClassifier::query_tcx(PBX_IFACE, TcAttachType::Egress)
        })
        .unwrap()
        .unwrap_or_else(|e| panic!("querying the TCX egress programs: {e}"))
        .1
        .iter()
        .any(|p| p.name_as_str() == Some("sipwall_egress"));
    (lab.xdp_prog_id().is_some(), egress)
}

#[test]
fn strict_mode_with_real_peers() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    let strict = write_config(&lab, "strict.toml", STRICT);
    let pbx = IpAddr::V4(PBX);

    // A long-lived session from an address no rule will cover, opened
    // before strict mode: it must survive entering it.
    let before_listener = listen(&lab, Host::Pbx, SocketAddr::new(pbx, 2222));
    let mut old_client = connect(&lab, Host::Outsider, None, SocketAddr::new(pbx, 2222))
        .expect("session before strict");
    let (mut old_server, _) = before_listener.accept().unwrap();
    assert!(
        exchange(&mut old_client, &mut old_server),
        "the session works before strict mode"
    );

    // The SSH guard: from the outsider's address, no rule lets a new login
    // in: refused, exit 2, the rule named, nothing attached.
    let refused = lab
        .sipwall_command(&["attach", "-i", PBX_IFACE, "--mode", "native", "-c", &strict])
        .env("SSH_CONNECTION", format!("{OUTSIDER} 50022 {PBX} 22"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "SSH guard: {stderr}");
    assert!(
        stderr.contains("[[strict.allow]]")
            && stderr.contains(&format!("{OUTSIDER}/32"))
            && stderr.contains("ports = [22]"),
        "the refusal names the rule to add: {stderr}"
    );
    assert_eq!(
        lab.xdp_prog_id(),
        None,
        "the SSH guard's refusal attached something"
    );
    // From the management network the rule lets the next login in.
    let out = lab
        .sipwall_command(&["attach", "-i", PBX_IFACE, "--mode", "native", "-c", &strict])
        .env("SSH_CONNECTION", format!("{MGMT_HOST} 50022 {PBX} 22"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "attach strict: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        programs_on_iface(&lab),
        (true, true),
        "XDP and the TCX egress program are attached"
    );

    // The session from before survives; a new one from there does not.
    assert!(
        exchange(&mut old_client, &mut old_server),
        "the session opened before strict mode was cut"
    );
    let before = lab.counters();
    assert!(
        connect(&lab, Host::Outsider, None, SocketAddr::new(pbx, 2222)).is_none(),
        "a new connection to an unruled port got through"
    );
    let d = delta(&before, &lab.counters());
    assert!(
        get(&d, "denied") >= 1,
        "outsider SYN to an unruled port: {d:?}"
    );

    // Provider SIP and a sipp call pass; the outsider's are dropped.
    let _uas = sipp::uas(&lab, Transport::Udp);
    let before = lab.counters();
    let calls = sipp::call(
        &lab,
        "provider",
        Host::Provider,
        IpAddr::V4(PROVIDER[0]),
        Transport::Udp,
        2,
    );
    expect_answered("provider call in strict mode", &calls);
    let calls = sipp::call(
        &lab,
        "outsider",
        Host::Outsider,
        IpAddr::V4(OUTSIDER),
        Transport::Udp,
        1,
    );
    expect_unanswered("outsider call in strict mode", &calls);
    let d = delta(&before, &lab.counters());
    assert!(
        get(&d, "sip_allowed") > 0 && get(&d, "sip_denied") > 0,
        "{d:?}"
    );
    // A live allowlist change keeps strict mode and its rules: the
    // outsider's call passes once allowed, SSH stays ruled, and it is
    // denied again once removed.
    lab.sipwall_ok(&["allow", "add", "-i", PBX_IFACE, &format!("{OUTSIDER}/32")]);
    let status = lab.sipwall_ok(&["status", "-i", PBX_IFACE]);
    assert!(
        status.contains("STRICT") && status.contains("1 [[strict.allow]] entry,"),
        "{status}"
    );
    let calls = sipp::call(
        &lab,
        "outsider allowed",
        Host::Outsider,
        IpAddr::V4(OUTSIDER),
        Transport::Udp,
        1,
    );
    expect_answered("outsider call once allowlisted, strict mode", &calls);
    lab.sipwall_ok(&["allow", "del", "-i", PBX_IFACE, &format!("{OUTSIDER}/32")]);

    // An unsolicited ACK and SYN-ACK, and an unsolicited UDP "reply" from
    // port 53: denied.
    let _web = listen(&lab, Host::Pbx, SocketAddr::new(pbx, 8080));
    let before = lab.counters();
    bare_tcp(&lab, 443, 8080, 0x10); // ACK
    bare_tcp(&lab, 443, 40123, 0x12); // SYN-ACK
    let got = datagrams(
        &lab,
        Host::Outsider,
        SocketAddr::new(IpAddr::V4(OUTSIDER), 53),
        SocketAddr::new(pbx, 33333),
        3,
    );
    assert_eq!(got, 0, "an unsolicited DNS 'reply' arrived");
    std::thread::sleep(WAIT);
    let d = delta(&before, &lab.counters());
    assert_eq!(
        get(&d, "denied"),
        2 + 3,
        "unsolicited ACK, SYN-ACK, 3 UDP from port 53: {d:?}"
    );
    // `top --reason denied` names where they came from.
    let top = lab.sipwall_ok(&["top", "-i", PBX_IFACE, "--reason", "denied", "--json"]);
    let top: serde_json::Value = serde_json::from_str(&top).unwrap();
    assert!(
        top["sources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["addr"] == OUTSIDER.to_string() && s["packets"].as_u64().unwrap() >= 5),
        "top --reason denied names the outsider: {top}"
    );
    assert_eq!(top["reason"], "denied");
    let bad = lab.sipwall(&["top", "-i", PBX_IFACE, "--reason", "reply"]);
    assert_eq!(
        bad.status.code(),
        Some(2),
        "top --reason of a pass reason is a usage error"
    );

    // Media into rtp_ports passes; provider media outside it is counted.
    let before = lab.counters();
    let media = datagrams(
        &lab,
        Host::Outsider,
        SocketAddr::new(IpAddr::V4(OUTSIDER), 40002),
        SocketAddr::new(pbx, 10000),
        20,
    );
    let outside = datagrams(
        &lab,
        Host::Outsider,
        SocketAddr::new(IpAddr::V4(OUTSIDER), 40004),
        SocketAddr::new(pbx, 30000),
        15,
    );
    let d = delta(&before, &lab.counters());
    assert_eq!((media, outside), (20, 0), "media in / outside rtp_ports");
    assert_eq!(get(&d, "rtp_allowed"), 20, "{d:?}");
    assert_eq!(get(&d, "rtp_outside"), 15, "{d:?}");
    let status = lab.sipwall_ok(&["status", "-i", PBX_IFACE]);
    assert!(
        status.contains("rtp_outside") && status.contains("rtp_ports"),
        "status says what to set: {status}"
    );
    // So does doctor (an address as the provider's host: no DNS wait).
    let doctor = lab.sipwall(&[
        "doctor",
        "-i",
        PBX_IFACE,
        "--provider-host",
        "44.229.228.186",
        "--json",
    ]);
    let doctor: serde_json::Value = serde_json::from_slice(&doctor.stdout).unwrap();
    let near = doctor["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "near_provider")
        .unwrap_or_else(|| panic!("no near_provider check: {doctor}"));
    assert_eq!(near["status"], "warn", "{near}");
    assert!(
        near["summary"].as_str().unwrap().contains("15 packets")
            && near["action"].as_str().unwrap().contains("rtp_ports"),
        "doctor names the one-way audio and what to set: {near}"
    );

    // SSH-like TCP from the management network passes, from elsewhere not.
    let ssh = listen(&lab, Host::Pbx, SocketAddr::new(pbx, 22));
    let mut mgmt = connect(
        &lab,
        Host::Provider,
        Some(IpAddr::V4(MGMT_HOST)),
        SocketAddr::new(pbx, 22),
    )
    .expect("SSH from the management network");
    let (mut served, _) = ssh.accept().unwrap();
    assert!(
        exchange(&mut mgmt, &mut served),
        "SSH session from the management network"
    );
    assert!(
        connect(&lab, Host::Outsider, None, SocketAddr::new(pbx, 22)).is_none(),
        "SSH from outside the management network got through"
    );

    // The host's own outbound TCP connection and DNS-like query get answers.
    let remote = listen(
        &lab,
        Host::Outsider,
        SocketAddr::new(IpAddr::V4(OUTSIDER), 8443),
    );
    let before = lab.counters();
    let mut own = connect(
        &lab,
        Host::Pbx,
        None,
        SocketAddr::new(IpAddr::V4(OUTSIDER), 8443),
    )
    .expect("the host's own connection");
    let (mut far, _) = remote.accept().unwrap();
    assert!(exchange(&mut own, &mut far), "the host's own connection");
    let resolver = lab.udp(Host::Outsider, IpAddr::V4(OUTSIDER), 53);
    let query = lab.udp(Host::Pbx, pbx, 0);
    query
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    resolver
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    query
        .send_to(b"query", SocketAddr::new(IpAddr::V4(OUTSIDER), 53))
        .unwrap();
    let mut buf = [0u8; 64];
    let (_, asker) = resolver
        .recv_from(&mut buf)
        .expect("the query reached the resolver");
    resolver.send_to(b"answer", asker).unwrap();
    let (n, _) = query
        .recv_from(&mut buf)
        .expect("the DNS-like answer came back");
    assert_eq!(&buf[..n], b"answer");
    let d = delta(&before, &lab.counters());
    assert!(
        get(&d, "reply") >= 3,
        "SYN-ACK, data and the answer count as reply: {d:?}"
    );

    // Ping passes both ways (echo requests are essential, the host's own
    // pings' replies are replies); path-MTU ICMP passes and is used.
    let before = lab.counters();
    assert!(ping(&lab, Host::Outsider, pbx, 0x5157), "ping to the PBX");
    assert!(
        ping(&lab, Host::Outsider, IpAddr::V6(PBX6), 0x5158),
        "ping6 to the PBX"
    );
    assert!(
        ping(&lab, Host::Pbx, IpAddr::V4(OUTSIDER), 0x5159),
        "the PBX's own ping"
    );
    let d = delta(&before, &lab.counters());
    assert!(get(&d, "essential") >= 2 && get(&d, "reply") >= 1, "{d:?}");
    lab.exec(
        Host::Router,
        &["ip", "link", "set", "outsider", "mtu", "1300"],
    )
    .unwrap();
    let before = lab.counters();
    let big = lab.udp(Host::Pbx, pbx, 0);
    lab.in_ns(Host::Pbx, || {
        let on: libc::c_int = libc::IP_PMTUDISC_DO;
        // SAFETY: a valid int option.
        unsafe {
            libc::setsockopt(
                big.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                (&on as *const libc::c_int).cast(),
                4,
            )
        };
    })
    .unwrap();
    let _ = big.send_to(&[0u8; 1400], SocketAddr::new(IpAddr::V4(OUTSIDER), 9));
    std::thread::sleep(WAIT);
    let route = lab
        .exec(Host::Pbx, &["ip", "route", "get", &OUTSIDER.to_string()])
        .unwrap();
    assert!(
        route.contains("mtu 1300"),
        "the PBX learnt the path MTU from the router's ICMP: {route}"
    );
    let d = delta(&before, &lab.counters());
    assert!(
        get(&d, "essential") >= 1,
        "fragmentation needed counts as essential: {d:?}"
    );

    // IPv6 neighbour discovery keeps working past the neighbour cache's
    // lifetime, forced short on both ends of the link.
    for (host, dev) in [(Host::Pbx, PBX_IFACE), (Host::Router, "pbx")] {
        for (key, value) in [
            ("base_reachable_time_ms", "500"),
            ("delay_first_probe_time", "1"),
            ("gc_stale_time", "1"),
        ] {
            lab.exec(
                host,
                &[
                    "sysctl",
                    "-qw",
                    &format!("net.ipv6.neigh.{dev}.{key}={value}"),
                ],
            )
            .unwrap();
        }
    }
    let before = lab.counters();
    let rx = lab.udp(Host::Pbx, IpAddr::V6(PBX6), 10006);
    rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let tx = lab.udp(Host::Outsider, IpAddr::V6(OUTSIDER6), PLAIN_PORT);
    let end = Instant::now() + Duration::from_secs(8);
    let mut rounds = 0;
    tx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    while Instant::now() < end {
        // Both ways: the router resolves the PBX, the PBX the router.
        tx.send_to(b"media", SocketAddr::new(IpAddr::V6(PBX6), 10006))
            .unwrap();
        let (_, from) = rx
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("IPv6 datagram {rounds} lost after neighbour expiry: {e}"));
        rx.send_to(b"back", from).unwrap();
        tx.recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("IPv6 answer {rounds} lost after neighbour expiry: {e}"));
        rounds += 1;
        std::thread::sleep(Duration::from_millis(700));
    }
    let d = delta(&before, &lab.counters());
    assert!(
        get(&d, "essential") >= 2,
        "neighbour solicitations and advertisements passed as essential: {d:?}"
    );
    let neigh = lab
        .exec(Host::Pbx, &["ip", "-6", "neigh", "show", "dev", PBX_IFACE])
        .unwrap();
    assert!(
        !neigh.contains("FAILED"),
        "a neighbour entry failed: {neigh}"
    );

    // --confirm without a confirmation, terminal gone (setsid, SIGHUP):
    // the previous policy (strict) comes back.
    let guard = write_config(&lab, "guard.toml", "[policy]\nmode = \"guard\"\n");
    let mut waiter = lab
        .sipwall_command(&["attach", "-i", PBX_IFACE, "-c", &guard, "--confirm", "5"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let hup_waiter = waiter.id();
    // Wait for the prompt: the new policy is in force from then on.
    let mut lines = std::io::BufReader::new(waiter.stdout.take().unwrap());
    let mut output = String::new();
    while !output.contains("keep this policy") {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut lines, &mut line).unwrap() == 0 {
            panic!("the waiter ended before its prompt: {output}");
        }
        output += &line;
    }
    assert!(
        connect(&lab, Host::Outsider, None, SocketAddr::new(pbx, 2222)).is_some(),
        "guard mode applied during the confirmation window"
    );
    // The terminal going away: SIGHUP to the waiting process.
    // SAFETY: signalling our own child.
    unsafe { libc::kill(hup_waiter as libc::pid_t, libc::SIGHUP) };
    // Its terminal is gone too: nobody reads its output any more.
    drop(lines);
    let status = waiter.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(1),
        "an unconfirmed attach fails after rolling back ({:?}): {output}",
        std::os::unix::process::ExitStatusExt::signal(&status)
    );
    let summary = lab.sipwall_ok(&["status", "-i", PBX_IFACE]);
    assert!(summary.contains("STRICT"), "strict mode is back: {summary}");
    assert!(
        connect(&lab, Host::Outsider, None, SocketAddr::new(pbx, 2222)).is_none(),
        "after the rollback a new connection to an unruled port is denied again"
    );

    // The same under setsid (no controlling terminal at all), confirmed
    // with `sipwall confirm`: the policy stays.
    let mut args = vec![lab.bin.to_string_lossy().into_owned(), "--bpffs".into()];
    args.push(lab.bpffs().to_string_lossy().into_owned());
    args.extend(["attach", "-i", PBX_IFACE, "-c", &guard, "--confirm", "20"].map(String::from));
    let mut cmd = lab.command(Host::Pbx, "setsid");
    let mut waiter = cmd
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    let confirmed = loop {
        let out = lab.sipwall(&["confirm", "-i", PBX_IFACE]);
        if out.status.success() {
            break true;
        }
        if Instant::now() > end {
            break false;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(confirmed, "sipwall confirm reached the waiting process");
    assert!(
        waiter.wait().unwrap().success(),
        "a confirmed attach exits 0"
    );
    let summary = lab.sipwall_ok(&["status", "-i", PBX_IFACE]);
    assert!(
        !summary.contains("STRICT"),
        "the confirmed guard policy stays: {summary}"
    );

    // Detach removes both programs and every pin; --confirm with nothing
    // attached before rolls back to nothing.
    lab.sipwall_ok(&["detach", "-i", PBX_IFACE]);
    assert_eq!(
        programs_on_iface(&lab),
        (false, false),
        "detach left a program behind"
    );
    let out = lab
        .sipwall_command(&[
            "attach",
            "-i",
            PBX_IFACE,
            "-c",
            &strict,
            "--force",
            "--confirm",
            "1",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        programs_on_iface(&lab),
        (false, false),
        "the unconfirmed first attach was not undone"
    );
    assert!(
        !lab.pin_dir(PBX_IFACE).exists(),
        "the rollback left pins behind"
    );
    drop((old_client, old_server, mgmt, served, own, far));
}

/// `run --confirm`: without a confirmation the service rolls back (here:
/// nothing was attached, so it detaches and exits 1); with `sipwall
/// confirm` it keeps running with its policy.
#[test]
fn run_with_confirm_rolls_back_or_keeps_running() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    let strict = write_config(&lab, "strict.toml", STRICT);
    let run = |secs: &str| {
        lab.sipwall_command(&[
            "run",
            "-i",
            PBX_IFACE,
            "--mode",
            "native",
            "-c",
            &strict,
            "--force",
            "--confirm",
            secs,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
    };
    let mut unconfirmed = run("2");
    let end = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = unconfirmed.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < end,
            "run --confirm 2 still running after 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut log = String::new();
    unconfirmed
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert_eq!(status.code(), Some(1), "unconfirmed run exits 1: {log}");
    assert!(log.contains("no confirmation in time"), "{log}");
    assert_eq!(
        programs_on_iface(&lab),
        (false, false),
        "the unconfirmed service detached"
    );

    let mut confirmed = run("20");
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        if lab.sipwall(&["confirm", "-i", PBX_IFACE]).status.success() {
            break;
        }
        assert!(
            Instant::now() < end,
            "sipwall confirm never reached the service"
        );
        assert!(
            confirmed.try_wait().unwrap().is_none(),
            "the service ended early"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        confirmed.try_wait().unwrap().is_none(),
        "the confirmed service keeps running"
    );
    assert_eq!(programs_on_iface(&lab), (true, true));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(confirmed.id() as libc::pid_t, libc::SIGTERM) };
    let status = confirmed.wait().unwrap();
    assert!(
        status.success(),
        "SIGTERM stops the service cleanly: {status}"
    );

    // Stopped while the confirmation is awaited, over a filter that was
    // there before (which the service leaves attached): the unconfirmed
    // strict policy must not stay behind.
    lab.sipwall_ok(&["attach", "-i", PBX_IFACE, "--mode", "native"]);
    // The policy's mode, read with `status` (which may exit 1 while `run`
    // replaces the program in place: the new program runs before its
    // pins are written).
    let mode = || {
        let status = lab.sipwall(&["status", "-i", PBX_IFACE, "--json"]);
        let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
        status["interfaces"][0]["policy_mode"]
            .as_str()
            .unwrap_or("unreadable")
            .to_owned()
    };
    assert_eq!(mode(), "guard");
    let mut stopped = run("60");
    let end = Instant::now() + Duration::from_secs(20);
    while mode() != "strict" {
        assert!(
            Instant::now() < end,
            "run --confirm never applied strict mode"
        );
        assert!(
            stopped.try_wait().unwrap().is_none(),
            "the service ended early"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(stopped.id() as libc::pid_t, libc::SIGTERM) };
    let status = stopped.wait().unwrap();
    let mut log = String::new();
    stopped
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert_eq!(status.code(), Some(1), "stopped unconfirmed exits 1: {log}");
    assert!(log.contains("stopped before a confirmation"), "{log}");
    assert_eq!(mode(), "guard", "the previous policy is back: {log}");
    assert_eq!(
        programs_on_iface(&lab),
        (true, true),
        "the filter that was there before stays attached"
    );
}

/// `--confirm` over pins whose policy cannot be read refuses, rather than
/// take "nothing was attached" as the state to return to (its rollback
/// would then detach the filter in force).
#[test]
fn confirm_over_unreadable_pins_refuses_and_keeps_the_filter() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    lab.attach(&[]);
    std::fs::remove_file(lab.pin_dir(PBX_IFACE).join("POLICY")).expect("removing the POLICY pin");
    let out = lab
        .sipwall_command(&["attach", "-i", PBX_IFACE, "--confirm", "5"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--confirm needs the policy in force"),
        "{stderr}"
    );
    assert!(programs_on_iface(&lab).0, "the filter in force was removed");
    lab.sipwall_ok(&["detach", "-i", PBX_IFACE]);
}

/// A second `--confirm` while one waits is refused: each would otherwise
/// roll back to the other's unconfirmed policy.
#[test]
fn a_second_confirm_while_one_waits_is_refused() {
    use std::io::BufRead as _;
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    lab.attach(&[]);
    let mut first = lab
        .sipwall_command(&["attach", "-i", PBX_IFACE, "--confirm", "60"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The countdown's first line comes once its token is in the map.
    let mut lines = std::io::BufReader::new(first.stdout.take().unwrap()).lines();
    let waiting = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains("keep this policy"));
    assert!(waiting, "the first --confirm never asked");
    let out = lab
        .sipwall_command(&["attach", "-i", PBX_IFACE, "--confirm", "5"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("another --confirm"), "{stderr}");
    lab.sipwall_ok(&["confirm", "-i", PBX_IFACE]);
    drop(lines);
    assert!(
        first.wait().unwrap().success(),
        "the first attach, confirmed"
    );
    lab.sipwall_ok(&["detach", "-i", PBX_IFACE]);
}

/// `program ARGS` in `host`'s network namespace (nsenter: the mount
/// namespace stays the test's).
fn in_netns(lab: &TestLab, host: Host, program: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new("nsenter");
    cmd.arg(format!("--net=/run/netns/{}", lab.ns(host)))
        .arg(program);
    cmd
}

/// An ssh client in the outsider's namespace running `command` on the PBX
/// with the throw-away key; its stdout piped.
fn ssh(lab: &TestLab, key: &std::path::Path, command: &str) -> std::process::Command {
    let mut cmd = in_netns(lab, Host::Outsider, "ssh");
    cmd.args(["-F", "/dev/null", "-i"])
        .arg(key)
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=5",
        ])
        .arg(format!("root@{PBX}"))
        .arg(command)
        .stdin(Stdio::null());
    cmd
}

/// The SSH guard without `SSH_CONNECTION` (as under sudo's env_reset): with
/// no session to find, the strict policy is applied with a warning; with a
/// real sshd in the PBX's namespace and a logged-in ssh client from the
/// outsider, a strict policy that would deny the outsider's next login is
/// refused, naming the rule; with that rule, it is applied and the next
/// login works through the filter.
#[test]
fn the_ssh_guard_finds_sessions_itself() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    let strict = write_config(&lab, "strict.toml", STRICT);
    let attach = |config: &str| {
        lab.sipwall_command(&["attach", "-i", PBX_IFACE, "--mode", "native", "-c", config])
            .env_remove("SSH_CONNECTION")
            .output()
            .unwrap()
    };

    // Neither an sshd session nor SSH_CONNECTION: said, then applied.
    let out = attach(&strict);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("no SSH session found") && stderr.contains("--confirm"),
        "{stderr}"
    );
    lab.sipwall_ok(&["detach", "-i", PBX_IFACE]);

    // A real sshd on the PBX, a throw-away host key and client key.
    let dir = lab.dir().join("sshd");
    std::fs::create_dir_all(&dir).unwrap();
    for key in ["host_key", "client_key"] {
        let out = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(dir.join(key))
            .output()
            .expect("ssh-keygen (cargo xtask setup installs openssh-client)");
        assert!(out.status.success(), "ssh-keygen: {out:?}");
    }
    std::fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys")).unwrap();
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "ListenAddress {PBX}\nPort 22\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\nPidFile {d}/sshd.pid\nStrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n",
            d = dir.display()
        ),
    )
    .unwrap();
    // sshd's privilege separation directory (Debian's service makes it).
    std::fs::create_dir_all("/run/sshd").unwrap();
    let log = dir.join("sshd.log");
    let _sshd = Running(
        in_netns(&lab, Host::Pbx, "/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting sshd (cargo xtask setup installs openssh-server)"),
    );
    lab.wait_bound(Host::Pbx, "tcp", 22, Duration::from_secs(10))
        .unwrap_or_else(|e| {
            panic!(
                "{e:#}: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });

    // The operator logs in from the outsider's address and stays.
    let key = dir.join("client_key");
    let mut session = Running(
        ssh(&lab, &key, "echo logged-in; sleep 300")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(session.0.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(
        line.trim(),
        "logged-in",
        "ssh login: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    // No rule covers the outsider: refused, the rule named, nothing attached.
    let out = attach(&strict);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "a new SSH connection from {OUTSIDER} to TCP port 22"
        )) && stderr.contains("an established connection to sshd")
            && stderr.contains(&format!("from = [\"{OUTSIDER}/32\"]")),
        "{stderr}"
    );
    assert_eq!(lab.xdp_prog_id(), None, "the refusal attached something");

    // With the rule: applied without a warning, and the next login works.
    let ruled = write_config(
        &lab,
        "ruled.toml",
        &format!("{STRICT}\n[[strict.allow]]\nproto = \"tcp\"\nports = [22]\nfrom = [\"{OUTSIDER}/32\"]\n"),
    );
    let out = attach(&ruled);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("no SSH session found"), "{stderr}");
    let next = ssh(&lab, &key, "echo again").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&next.stdout).trim(),
        "again",
        "the next login through strict mode: {next:?}"
    );

    // Guard mode polices only the signalling ports, but a configuration
    // that lists the SSH port among them would cut the session: refused.
    let ssh_port = write_config(&lab, "ssh-port.toml", "[signalling]\nports = [22, 5060]\n");
    let out = attach(&ssh_port);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("the SSH session of {OUTSIDER}"))
            && stderr.contains("which [signalling] ports lists")
            && stderr.contains("--force"),
        "{stderr}"
    );

    // The same sessions guard the ban set, without SSH_CONNECTION (sudo):
    // banning the logged-in client's network is refused, nothing banned.
    let ban = lab
        .sipwall_command(&["ban", "add", "-i", PBX_IFACE, &format!("{OUTSIDER}/32")])
        .env_remove("SSH_CONNECTION")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&ban.stderr);
    assert_eq!(ban.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("your own SSH client {OUTSIDER}"))
            && stderr.contains("an established connection to sshd")
            && stderr.contains("--force"),
        "{stderr}"
    );
    // A session /proc cannot show (an inetd-style sshd runs under another
    // name) still counts when SSH_CONNECTION names it, beside the ones
    // /proc shows.
    let inetd_client = "203.0.113.77";
    let ban = lab
        .sipwall_command(&["ban", "add", "-i", PBX_IFACE, inetd_client])
        .env("SSH_CONNECTION", format!("{inetd_client} 50000 {PBX} 2224"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&ban.stderr);
    assert_eq!(ban.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "your own SSH client {inetd_client} (SSH_CONNECTION)"
        )),
        "{stderr}"
    );
    let bans = lab.sipwall_ok(&["ban", "list", "-i", PBX_IFACE, "--json"]);
    assert!(
        !bans.contains(&OUTSIDER.to_string()) && !bans.contains(inetd_client),
        "a refused ban went in: {bans}"
    );
    drop(session);
}
