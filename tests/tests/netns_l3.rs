//! A real TUN device (an interface without a link header) in the lab's
//! PBX namespace: frames written to its file descriptor are what the
//! kernel receives on it. sipwall attached there, in guard and in strict
//! mode, keeps a stranger's SIP from a socket on :5060 and lets the
//! provider's through; a link type it cannot read is refused. And PPPoE
//! frames sent over the lab's wire to the filtered Ethernet interface are
//! judged by the IP packet inside. Needs root.
use std::{
    fs::File,
    io::Write as _,
    net::{Ipv4Addr, Ipv6Addr, UdpSocket},
    os::fd::{AsRawFd as _, FromRawFd as _},
    time::Duration,
};

use serde_json::Value;
use sipwall_lab::Host;
use sipwall_tests::{
    netns::{TestLab, PBX_IFACE},
    packet::{Frame, ETHERTYPE_PPPOE_DISCOVERY, PPP_LCP, TPID_8021Q},
};

const TUN: &str = "swtun0";
const TUN_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const TUN_ADDR6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x77, 0, 0, 0, 0, 1);
const STRANGER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);
const STRANGER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xbad, 0, 0, 0, 0, 9);
const PROVIDER: Ipv4Addr = Ipv4Addr::new(44, 229, 228, 186);
const PROVIDER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 5, 0, 0, 0, 0, 9);
const SIP: &[u8] = b"OPTIONS sip:pbx SIP/2.0\r\nVia: SIP/2.0/UDP 203.0.113.9\r\n\r\n";

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETLINK: libc::c_ulong = 0x4004_54cd;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;

/// Opens a new TUN device `name` in this thread's network namespace; with
/// `link_type`, gives it that link type (TUNSETLINK, before it is up).
fn open_tun(name: &str, link_type: Option<libc::c_int>) -> File {
    // SAFETY: open(2) of a constant path; the result is checked.
    let fd = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    assert!(
        fd >= 0,
        "opening /dev/net/tun: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: a descriptor just opened, owned by the File from here on.
    let file = unsafe { File::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; zeroes are valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = IFF_TUN | IFF_NO_PI;
    // SAFETY: TUNSETIFF reads the name and flags from `req`, which outlives
    // the call.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, &mut req) };
    assert!(
        rc == 0,
        "TUNSETIFF {name}: {}",
        std::io::Error::last_os_error()
    );
    if let Some(link_type) = link_type {
        // SAFETY: TUNSETLINK takes the link type as its argument.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETLINK, link_type as libc::c_ulong) };
        assert!(
            rc == 0,
            "TUNSETLINK {name}: {}",
            std::io::Error::last_os_error()
        );
    }
    file
}

/// The one's-complement sum of `data` folded to 16 bits.
fn fold(mut sum: u32, data: &[u8]) -> u32 {
    for pair in data.chunks(2) {
        let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum
}

/// A UDP datagram to :5060 as an L3 device receives it (no link header),
/// with a valid UDP checksum (IPv6 requires one).
fn sip_datagram(src: std::net::IpAddr, dst: std::net::IpAddr) -> Vec<u8> {
    let mut frame = match (src, dst) {
        (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) => Frame::ipv4(s, d),
        (std::net::IpAddr::V6(s), std::net::IpAddr::V6(d)) => Frame::ipv6(s, d),
        _ => panic!("mixed families"),
    }
    .udp(40123, 5060)
    .payload(SIP)
    .l3()
    .build();
    let (l4, pseudo) = match (src, dst) {
        (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) => {
            let udp_len = frame.len() - 20;
            let mut p = [s.octets(), d.octets()].concat();
            p.extend_from_slice(&[0, 17]);
            p.extend_from_slice(&(udp_len as u16).to_be_bytes());
            (20, p)
        }
        (std::net::IpAddr::V6(s), std::net::IpAddr::V6(d)) => {
            let udp_len = frame.len() - 40;
            let mut p = [s.octets(), d.octets()].concat();
            p.extend_from_slice(&(udp_len as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, 17]);
            (40, p)
        }
        _ => unreachable!(),
    };
    frame[l4 + 6] = 0;
    frame[l4 + 7] = 0;
    let sum = !(fold(fold(0, &pseudo), &frame[l4..]) as u16);
    let sum = if sum == 0 { 0xffff } else { sum };
    frame[l4 + 6..l4 + 8].copy_from_slice(&sum.to_be_bytes());
    frame
}

/// Whether `socket` receives a datagram within a second.
fn received(socket: &UdpSocket) -> Option<Vec<u8>> {
    socket
        .set_read_timeout(Some(Duration::from_secs(1)))
        .expect("read timeout");
    let mut buf = [0u8; 2048];
    match socket.recv_from(&mut buf) {
        Ok((n, _)) => Some(buf[..n].to_vec()),
        Err(_) => None,
    }
}

fn drain(socket: &UdpSocket) {
    socket.set_nonblocking(true).expect("nonblocking");
    let mut buf = [0u8; 2048];
    while socket.recv_from(&mut buf).is_ok() {}
    socket.set_nonblocking(false).expect("blocking");
}

fn counter(lab: &TestLab, name: &str) -> u64 {
    let text = lab.sipwall_ok(&["stats", "-i", TUN, "--json"]);
    let json: Value = serde_json::from_str(&text).expect("stats --json");
    json["interfaces"][0]["counters"][name]["packets"]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name}: {text}"))
}

/// `doctor --json`'s checks by name: (status, summary).
fn doctor(lab: &TestLab) -> std::collections::BTreeMap<String, (String, String)> {
    let out = lab.sipwall(&["doctor", "--json"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let json: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "doctor --json ({e}): {text}{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    json["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("no checks: {text}"))
        .iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
            (s("name"), (s("status"), s("summary")))
        })
        .collect()
}

/// Detaches from the TUN device when the test ends, also on failure.
struct Detach<'a>(&'a TestLab);

impl Drop for Detach<'_> {
    fn drop(&mut self) {
        let _ = self.0.sipwall(&["detach", "-i", TUN]);
    }
}

#[test]
fn a_strangers_sip_through_a_tun_device_never_reaches_the_socket() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    let mut tun = lab
        .in_ns(Host::Pbx, || open_tun(TUN, None))
        .expect("entering the PBX");
    for argv in [
        vec!["ip", "link", "set", TUN, "up"],
        vec!["ip", "addr", "add", "198.51.100.1/24", "dev", TUN],
        vec![
            "ip",
            "-6",
            "addr",
            "add",
            "2001:db8:77::1/64",
            "dev",
            TUN,
            "nodad",
        ],
        // The provider's address arrives through the tunnel here, not
        // through the lab's uplink: no reverse-path check.
        vec!["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0"],
        vec!["sysctl", "-qw", &format!("net.ipv4.conf.{TUN}.rp_filter=0")],
    ] {
        lab.exec(Host::Pbx, &argv)
            .expect("setting up the TUN device");
    }
    let (sock4, sock6) = lab
        .in_ns(Host::Pbx, || {
            (
                UdpSocket::bind((TUN_ADDR, 5060)).expect("binding 198.51.100.1:5060"),
                UdpSocket::bind((TUN_ADDR6, 5060)).expect("binding [2001:db8:77::1]:5060"),
            )
        })
        .expect("entering the PBX");
    let guard_toml = lab.dir().join("l3-guard.toml");
    let strict_toml = lab.dir().join("l3-strict.toml");
    let allow = r#"[signalling]
allow = ["44.229.228.186/32", "44.238.177.138/32", "2001:db8:5::/48"]
"#;
    std::fs::write(&guard_toml, allow).unwrap();
    std::fs::write(
        &strict_toml,
        format!("{allow}\n[policy]\nmode = \"strict\"\n"),
    )
    .unwrap();

    // Before sipwall, the stranger's SIP arrives: the device works.
    tun.write_all(&sip_datagram(STRANGER.into(), TUN_ADDR.into()))
        .unwrap();
    assert!(
        received(&sock4).is_some(),
        "the TUN device delivers nothing"
    );

    // Up, addressed and not filtered: doctor names it and the command.
    let (status, summary) = doctor(&lab)["tunnels"].clone();
    assert_eq!(status, "warn", "{summary}");
    assert!(
        summary.contains(&format!("`sipwall attach -i {TUN}`"))
            && summary.contains("link type 65534"),
        "{summary}"
    );

    let _detach = Detach(&lab);
    for (mode, config) in [("guard", &guard_toml), ("strict", &strict_toml)] {
        lab.sipwall_ok(&["attach", "-i", TUN, "-c", config.to_str().unwrap()]);
        let status: Value =
            serde_json::from_str(&lab.sipwall_ok(&["status", "--json"])).expect("status --json");
        assert_eq!(status["interfaces"][0]["link"], "ip", "[{mode}] {status}");
        let text = lab.sipwall_ok(&["status"]);
        assert!(
            text.contains("link: ip (no link header)"),
            "[{mode}] {text}"
        );
        // doctor: generic mode is the device's one, the L3 attachment is
        // fine, and no tunnel is left unfiltered.
        let checks = doctor(&lab);
        for (check, words) in [
            ("xdp_attached", "skb (generic) mode"),
            ("l3_iface", "L3 device"),
            ("tunnels", "left unfiltered"),
        ] {
            let (status, summary) = &checks[check];
            assert_eq!(status, "ok", "[{mode}] {check}: {summary}");
            assert!(summary.contains(words), "[{mode}] {check}: {summary}");
        }
        drain(&sock4);
        drain(&sock6);
        for (label, datagram, socket) in [
            (
                "IPv4",
                sip_datagram(STRANGER.into(), TUN_ADDR.into()),
                &sock4,
            ),
            (
                "IPv6",
                sip_datagram(STRANGER6.into(), TUN_ADDR6.into()),
                &sock6,
            ),
        ] {
            let denied = counter(&lab, "sip_denied");
            tun.write_all(&datagram).unwrap();
            assert_eq!(
                received(socket),
                None,
                "[{mode}] a stranger's {label} SIP reached :5060 through {TUN}"
            );
            assert_eq!(counter(&lab, "sip_denied"), denied + 1, "[{mode}] {label}");
        }
        for (label, datagram, socket) in [
            (
                "IPv4",
                sip_datagram(PROVIDER.into(), TUN_ADDR.into()),
                &sock4,
            ),
            (
                "IPv6",
                sip_datagram(PROVIDER6.into(), TUN_ADDR6.into()),
                &sock6,
            ),
        ] {
            let allowed = counter(&lab, "sip_allowed");
            tun.write_all(&datagram).unwrap();
            let got = received(socket);
            assert_eq!(
                got.as_deref(),
                Some(SIP),
                "[{mode}] the provider's {label} SIP did not arrive"
            );
            assert_eq!(
                counter(&lab, "sip_allowed"),
                allowed + 1,
                "[{mode}] {label}"
            );
        }
    }

    // Strict egress reads the packets the host sends through the device
    // from their IP header too: SIP to a stranger never leaves, SIP to
    // the provider does.
    let egress_toml = lab.dir().join("l3-egress.toml");
    std::fs::write(
        &egress_toml,
        format!("{allow}\n[policy]\nmode = \"strict\"\n\n[egress]\nmode = \"strict\"\n"),
    )
    .unwrap();
    // Strict egress is refused while rtp_ports holds unreserved ephemeral
    // ports (configuration.md, "What is refused"): reserve them first.
    lab.sysctl(Host::Pbx, "net.ipv4.ip_local_reserved_ports=40000-60000");
    lab.sipwall_ok(&["attach", "-i", TUN, "-c", egress_toml.to_str().unwrap()]);
    for route in ["203.0.113.9/32", "44.229.228.186/32"] {
        lab.exec(Host::Pbx, &["ip", "route", "replace", route, "dev", TUN])
            .expect("routing through the TUN device");
    }
    set_nonblocking(&tun);
    let _ = read_all(&mut tun);
    let out_before = out_counters(&lab);
    lab.in_ns(Host::Pbx, || {
        let s = UdpSocket::bind((TUN_ADDR, 0)).expect("binding a sender");
        s.send_to(SIP, (STRANGER, 5060))
            .expect("sending to the stranger");
        s.send_to(SIP, (PROVIDER, 5060))
            .expect("sending to the provider");
    })
    .expect("entering the PBX");
    let mut seen = Vec::new();
    for _ in 0..50 {
        seen.extend(read_all(&mut tun));
        if seen.iter().any(|p| to(p, PROVIDER)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        seen.iter().any(|p| to(p, PROVIDER)),
        "SIP to the provider did not leave through {TUN}"
    );
    assert!(
        !seen.iter().any(|p| to(p, STRANGER)),
        "SIP to a stranger left through {TUN} under strict egress"
    );
    let out_after = out_counters(&lab);
    let delta = |name: &str| {
        out_after[name]["packets"].as_u64().unwrap() - out_before[name]["packets"].as_u64().unwrap()
    };
    assert_eq!(delta("out_sip_denied"), 1, "{out_after}");
    assert_eq!(delta("out_sip_allowed"), 1, "{out_after}");
    drop((sock4, sock6, tun));
}

fn set_nonblocking(file: &File) {
    // SAFETY: fcntl on a descriptor the File owns.
    let flags = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETFL) };
    // SAFETY: as above.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) };
    assert!(rc == 0, "O_NONBLOCK: {}", std::io::Error::last_os_error());
}

/// Every packet the kernel has sent out of the TUN device so far.
fn read_all(tun: &mut File) -> Vec<Vec<u8>> {
    use std::io::Read as _;
    let mut packets = Vec::new();
    let mut buf = [0u8; 2048];
    while let Ok(n) = tun.read(&mut buf) {
        packets.push(buf[..n].to_vec());
    }
    packets
}

/// Whether `packet` is IPv4 UDP to `dst` port 5060.
fn to(packet: &[u8], dst: Ipv4Addr) -> bool {
    packet.len() >= 28
        && packet[0] >> 4 == 4
        && packet[9] == 17
        && packet[16..20] == dst.octets()
        && packet[22..24] == 5060u16.to_be_bytes()
}

/// The egress program's counters of `stats --json` on the TUN device.
fn out_counters(lab: &TestLab) -> Value {
    let text = lab.sipwall_ok(&["stats", "-i", TUN, "--json"]);
    let json: Value = serde_json::from_str(&text).expect("stats --json");
    json["interfaces"][0]["egress"]["counters"].clone()
}

#[test]
fn a_link_type_sipwall_cannot_read_is_refused_naming_it() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    // A TUN device posing as GRE (link type 778): XDP would see what GRE
    // devices hand it, so sipwall must refuse it.
    let tun = lab
        .in_ns(Host::Pbx, || open_tun("swgre0", Some(778)))
        .expect("entering the PBX");
    lab.exec(Host::Pbx, &["ip", "link", "set", "swgre0", "up"])
        .expect("setting the device up");
    let out = lab.sipwall(&["attach", "-i", "swgre0"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("link type 778"), "{stderr}");
    assert!(stderr.contains("swgre0"), "{stderr}");
    // `run` refuses it the same way.
    let config = lab.dir().join("gre.toml");
    std::fs::write(&config, "[signalling]\nallow = [\"44.229.228.186/32\"]\n").unwrap();
    let out = lab.sipwall(&["run", "-i", "swgre0", "-c", config.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "run: {stderr}");
    assert!(stderr.contains("link type 778"), "run: {stderr}");
    // Nothing was left behind.
    let status = lab.sipwall(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(!text.contains("swgre0"), "{text}");
    drop(tun);
}

#[test]
fn a_tun_device_posing_as_ethernet_is_still_read_from_the_ip_header() {
    sipwall_tests::skip_unless_root!();
    // Its owner may give a TUN device any link type (TUNSETLINK), but in
    // tun mode no packet carries a link header: read by the link type, a
    // TUN set to Ethernet (1) or loopback (772) would pass a stranger's SIP
    // as non_ip.
    for (name, link_type) in [("swfake1", 1), ("swfake772", 772)] {
        let lab = TestLab::new();
        let mut tun = lab
            .in_ns(Host::Pbx, || open_tun(name, Some(link_type)))
            .expect("entering the PBX");
        for argv in [
            vec!["ip", "link", "set", name, "up"],
            vec!["ip", "addr", "add", "198.51.100.1/24", "dev", name],
            vec!["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0"],
        ] {
            lab.exec(Host::Pbx, &argv)
                .expect("setting up the TUN device");
        }
        let sock = lab
            .in_ns(Host::Pbx, || {
                UdpSocket::bind((TUN_ADDR, 5060)).expect("binding 198.51.100.1:5060")
            })
            .expect("entering the PBX");
        lab.sipwall_ok(&["attach", "-i", name]);
        let status = lab.sipwall_ok(&["status", "-i", name, "--json"]);
        let status: Value = serde_json::from_str(&status).unwrap();
        assert_eq!(
            status["interfaces"][0]["link"], "ip",
            "type {link_type}: {status}"
        );
        tun.write_all(&sip_datagram(STRANGER.into(), TUN_ADDR.into()))
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(
            received(&sock).is_none(),
            "a stranger's SIP through a TUN device of link type {link_type} reached :5060"
        );
        let stats: Value =
            serde_json::from_str(&lab.sipwall_ok(&["stats", "-i", name, "--json"])).unwrap();
        assert_eq!(
            stats["interfaces"][0]["counters"]["sip_denied"]["packets"], 1,
            "link type {link_type}: {stats}"
        );
        lab.sipwall_ok(&["detach", "-i", name]);
        drop(tun);
    }
}

/// Sends raw Ethernet frames out of `iface` of this thread's namespace.
fn send_raw(iface: &str, frames: &[Vec<u8>]) {
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    assert!(
        fd >= 0,
        "AF_PACKET socket: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: a descriptor just opened, owned by the File from here on.
    let sock = unsafe { File::from_raw_fd(fd) };
    let name = std::ffi::CString::new(iface).unwrap();
    // SAFETY: a valid NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    assert!(index != 0, "no interface {iface}");
    // SAFETY: sockaddr_ll is plain data; zeroes are valid.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_ifindex = index as i32;
    addr.sll_halen = 6;
    for frame in frames {
        // SAFETY: `frame` and `addr` outlive the call, with the lengths
        // given.
        let sent = unsafe {
            libc::sendto(
                sock.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(
            sent,
            frame.len() as isize,
            "sending a frame: {}",
            std::io::Error::last_os_error()
        );
    }
}

fn counters(lab: &TestLab) -> Value {
    let text = lab.sipwall_ok(&["stats", "-i", PBX_IFACE, "--json"]);
    let json: Value = serde_json::from_str(&text).expect("stats --json");
    json["interfaces"][0]["counters"].clone()
}

#[test]
fn pppoe_session_frames_on_the_wire_are_judged_by_their_ip_packet() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    lab.attach(&[]);
    let pbx = Ipv4Addr::new(192, 0, 2, 1);
    let pbx6: Ipv6Addr = "2001:db8:1::1".parse().unwrap();
    let denied = [
        Frame::ipv4(STRANGER, pbx)
            .pppoe()
            .udp(40123, 5060)
            .payload(SIP),
        Frame::ipv6(STRANGER6, pbx6).pppoe().tcp(40123, 5061),
        Frame::ipv4(STRANGER, pbx)
            .vlan(TPID_8021Q, 7)
            .pppoe()
            .udp(40123, 5060)
            .payload(SIP),
    ];
    let allowed = [Frame::ipv4(PROVIDER, pbx)
        .pppoe()
        .udp(5060, 5060)
        .payload(SIP)];
    let not_ip = [
        Frame::ipv4(STRANGER, pbx)
            .pppoe_proto(PPP_LCP)
            .udp(40123, 5060),
        Frame::ethertype(
            ETHERTYPE_PPPOE_DISCOVERY,
            vec![0x11, 0x09, 0, 0, 0, 4, 1, 1, 0, 0],
        ),
    ];
    let count =
        |c: &Value, name: &str| c[name]["packets"].as_u64().unwrap_or_else(|| panic!("{c}"));
    let before = counters(&lab);
    let frames: Vec<Vec<u8>> = denied
        .iter()
        .chain(&allowed)
        .chain(&not_ip)
        .map(Frame::build)
        .collect();
    lab.in_ns(Host::Router, || send_raw("pbx", &frames))
        .expect("entering the router");
    // The frames are on the wire when sendto returns; the counters are
    // read after the XDP program ran on each.
    let mut after = counters(&lab);
    for _ in 0..50 {
        if count(&after, "sip_denied") >= count(&before, "sip_denied") + 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        after = counters(&lab);
    }
    assert_eq!(
        count(&after, "sip_denied") - count(&before, "sip_denied"),
        denied.len() as u64,
        "before {before}\nafter {after}"
    );
    assert_eq!(
        count(&after, "sip_allowed") - count(&before, "sip_allowed"),
        allowed.len() as u64,
        "before {before}\nafter {after}"
    );
    assert!(
        count(&after, "non_ip") - count(&before, "non_ip") >= not_ip.len() as u64,
        "before {before}\nafter {after}"
    );
}
