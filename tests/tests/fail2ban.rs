//! The shipped fail2ban action (dist/fail2ban/action.d/sipwall.conf) driven
//! by the real fail2ban from Debian: a fail2ban-server of its own (socket,
//! pid file, database and configuration in the lab's scratch folder) runs
//! in the PBX's namespace with jails on Asterisk's log format; the test
//! writes failed registrations into their logs, fail2ban bans the source
//! through the action, the source's packets are then dropped as `banned`,
//! and fail2ban's unban lifts it. Failed registrations "from" the provider
//! (a spoofed address) ban nothing: the shipped jail ignores them, and
//! where a jail lacks that `ignoreip`, sipwall refuses the action's ban. The server is stopped and its files go
//! with the lab, also when the test fails.
use std::{
    io::Write as _,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use sipwall_tests::netns::{delta, traffic, Host, TestLab, OUTSIDER, PBX, PBX_IFACE, PROVIDER};

/// A source only named in the logs (never sends): banned for ever.
const FOREVER: &str = "198.51.100.99";
const WAIT: Duration = Duration::from_secs(30);

/// fail2ban-server in the foreground; killed (and reaped) when dropped.
struct Fail2ban {
    child: Child,
    socket: PathBuf,
}

impl Fail2ban {
    fn start(lab: &TestLab, conf: &Path, dir: &Path) -> Fail2ban {
        let socket = dir.join("f2b.sock");
        let log = std::fs::File::create(dir.join("server.out")).unwrap();
        let child = lab
            .command(Host::Pbx, "fail2ban-server")
            .args(["-f", "-x", "-c"])
            .arg(conf)
            .arg("-s")
            .arg(&socket)
            .arg("-p")
            .arg(dir.join("f2b.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("starting fail2ban-server (is fail2ban installed? `cargo xtask setup`): {e}")
            });
        Fail2ban { child, socket }
    }

    /// `fail2ban-client -s SOCKET ARGS`, whatever its exit status.
    fn client(&self, args: &[&str]) -> std::process::Output {
        Command::new("fail2ban-client")
            .arg("-s")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("running fail2ban-client")
    }
}

impl Drop for Fail2ban {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What fail2ban printed, for failure messages.
fn logs(dir: &Path) -> String {
    ["server.out", "fail2ban.log"]
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(dir.join(f)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            format!(
                "--- {f}:\n{}",
                lines[lines.len().saturating_sub(30)..].join("\n")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The configuration folder: fail2ban.conf, Debian's asterisk filter (and
/// common.conf, which it includes), the shipped action and the shipped
/// jail (`[asterisk]`, with the provider in `ignoreip`), whose log path and
/// binary `jail.local` points at the lab's; and a jail `asterisk-forever`
/// of the test's own, with no `ignoreip`: there only sipwall's own guard
/// stands between a spoofed failed registration and the provider's ban.
fn write_config(lab: &TestLab, dir: &Path) -> PathBuf {
    let conf = dir.join("conf");
    for sub in ["filter.d", "action.d", "jail.d"] {
        std::fs::create_dir_all(conf.join(sub)).unwrap();
    }
    for filter in ["asterisk.conf", "common.conf"] {
        std::fs::copy(
            Path::new("/etc/fail2ban/filter.d").join(filter),
            conf.join("filter.d").join(filter),
        )
        .unwrap_or_else(|e| panic!("copying Debian's filter {filter}: {e}"));
    }
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/fail2ban");
    for shipped in ["action.d/sipwall.conf", "jail.d/sipwall.conf"] {
        std::fs::copy(dist.join(shipped), conf.join(shipped))
            .unwrap_or_else(|e| panic!("copying the shipped {shipped}: {e}"));
    }
    std::fs::write(
        conf.join("fail2ban.conf"),
        format!(
            "[Definition]\nloglevel = INFO\nlogtarget = {}\nsocket = {}\npidfile = {}\ndbfile = {}\n",
            dir.join("fail2ban.log").display(),
            dir.join("f2b.sock").display(),
            dir.join("f2b.pid").display(),
            dir.join("f2b.sqlite3").display(),
        ),
    )
    .unwrap();
    // The action as a jail names it, with the binary under test on the
    // lab's bpffs instead of the installed one.
    let action = format!(
        "sipwall[sipwall=\"{} --bpffs {}\", sipwall_opts=\"-i {PBX_IFACE}\"]",
        lab.bin.display(),
        lab.bpffs().display()
    );
    let log = |name: &str| dir.join(format!("{name}.log")).display().to_string();
    std::fs::write(
        conf.join("jail.conf"),
        format!(
            "[DEFAULT]\nbackend = polling\n\n[asterisk-forever]\nenabled = true\nfilter = asterisk\nfindtime = 10m\nmaxretry = 3\nlogpath = {}\nbantime = -1\naction = {action}\n",
            log("asterisk-forever")
        ),
    )
    .unwrap();
    // Read after jail.d/*.conf: only the lab's paths change.
    std::fs::write(
        conf.join("jail.local"),
        format!(
            "[asterisk]\nlogpath = {}\naction = {action}\n",
            log("asterisk")
        ),
    )
    .unwrap();
    for name in ["asterisk", "asterisk-forever"] {
        std::fs::write(dir.join(format!("{name}.log")), "").unwrap();
    }
    conf
}

/// Appends `n` failed registrations from `addr` in Asterisk's format (the
/// line fail2ban's asterisk filter is tested with), stamped now.
fn fail_registrations(log: &Path, addr: &str, n: usize) {
    let out = Command::new("date")
        .arg("+%Y-%m-%d %H:%M:%S")
        .output()
        .unwrap();
    let now = String::from_utf8(out.stdout).unwrap();
    let mut f = std::fs::OpenOptions::new().append(true).open(log).unwrap();
    for _ in 0..n {
        writeln!(
            f,
            "[{}] NOTICE[1638] chan_sip.c: Registration from '<sip:301@example.com>' failed for '{addr}' - Wrong password",
            now.trim()
        )
        .unwrap();
    }
}

/// `ban list --json` as (cidr, expires_in).
fn bans(lab: &TestLab) -> Vec<(String, Option<u64>)> {
    let text = lab.sipwall_ok(&["ban", "list", "-i", PBX_IFACE, "--json"]);
    let json: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    json["bans"]
        .as_array()
        .unwrap_or_else(|| panic!("ban list --json without bans: {text}"))
        .iter()
        .map(|b| {
            (
                b["cidr"].as_str().unwrap().to_owned(),
                b["expires_in"].as_u64(),
            )
        })
        .collect()
}

fn wait_for(what: &str, dir: &Path, mut done: impl FnMut() -> bool) {
    let end = Instant::now() + WAIT;
    while !done() {
        assert!(
            Instant::now() < end,
            "timed out waiting for {what}\n{}",
            logs(dir)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Sends `n` datagrams from `host`'s address `src` to `port` on the PBX;
/// returns how many arrived.
fn deliver(lab: &TestLab, host: Host, src: IpAddr, port: u16, n: u64) -> u64 {
    let dst = SocketAddr::new(IpAddr::V4(PBX), port);
    let rx = lab.udp(Host::Pbx, dst.ip(), port);
    let tx = lab.udp(host, src, 0);
    traffic::send(&tx, dst, n, 64).unwrap();
    traffic::count(&rx, Duration::from_millis(400)).unwrap()
}

fn from_outsider(lab: &TestLab, port: u16, n: u64) -> u64 {
    deliver(lab, Host::Outsider, IpAddr::V4(OUTSIDER), port, n)
}

#[test]
fn fail2ban_bans_and_unbans_through_the_shipped_action() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    lab.attach(&[]);
    assert_eq!(from_outsider(&lab, 9, 1), 1, "warm-up datagram lost");
    let dir = lab.dir().join("fail2ban");
    std::fs::create_dir_all(&dir).unwrap();
    let conf = write_config(&lab, &dir);
    let f2b = Fail2ban::start(&lab, &conf, &dir);
    wait_for("fail2ban's jails to start", &dir, || {
        f2b.client(&["status", "asterisk"]).status.success()
            && f2b.client(&["status", "asterisk-forever"]).status.success()
    });

    // Three failed registrations (maxretry) in each jail's log.
    let outsider = OUTSIDER.to_string();
    fail_registrations(&dir.join("asterisk.log"), &outsider, 3);
    fail_registrations(&dir.join("asterisk-forever.log"), FOREVER, 3);
    // Failed registrations "from" the provider, as a datagram with its
    // address spoofed makes the PBX log them: the shipped jail ignores
    // them (ignoreip); the jail without ignoreip runs the action, and
    // sipwall refuses to ban an allowlisted address.
    let provider = PROVIDER[0].to_string();
    fail_registrations(&dir.join("asterisk.log"), &provider, 3);
    fail_registrations(&dir.join("asterisk-forever.log"), &provider, 3);
    let outsider_cidr = format!("{outsider}/32");
    let forever_cidr = format!("{FOREVER}/32");
    wait_for("fail2ban to ban both sources through sipwall", &dir, || {
        let b = bans(&lab);
        b.iter().any(|(c, _)| *c == outsider_cidr) && b.iter().any(|(c, _)| *c == forever_cidr)
    });
    let f2b_log = || std::fs::read_to_string(dir.join("fail2ban.log")).unwrap_or_default();
    wait_for("the shipped jail to ignore the provider", &dir, || {
        f2b_log().contains(&format!("[asterisk] Ignore {provider} by ip"))
    });
    wait_for("sipwall to refuse the provider's ban", &dir, || {
        f2b_log().contains(&format!("{provider}/32 overlaps allowlisted {provider}/32"))
    });
    assert!(
        !bans(&lab)
            .iter()
            .any(|(c, _)| *c == format!("{provider}/32")),
        "the provider was banned: {:?}\n{}",
        bans(&lab),
        logs(&dir)
    );
    let before = lab.counters();
    assert_eq!(
        deliver(&lab, Host::Provider, IpAddr::V4(PROVIDER[0]), 5060, 5),
        5,
        "the provider's signalling after its failed registrations"
    );
    let d = delta(&before, &lab.counters());
    assert_eq!(
        (d["sip_allowed"].packets, d["banned"].packets),
        (5, 0),
        "{d:?}"
    );
    let listed = bans(&lab);
    let left = |cidr: &str| listed.iter().find(|(c, _)| c == cidr).unwrap().1;
    let hour = left(&outsider_cidr).expect("bantime = 1h gives a ban with an end");
    assert!(
        (3500..=3600).contains(&hour),
        "1h ban has {hour} s left: {listed:?}"
    );
    assert_eq!(
        left(&forever_cidr),
        None,
        "bantime = -1 must be permanent: {listed:?}"
    );

    // The outsider's signalling and media are now dropped as banned.
    let before = lab.counters();
    assert_eq!(
        from_outsider(&lab, 5060, 20),
        0,
        "banned signalling arrived"
    );
    assert_eq!(from_outsider(&lab, 40000, 20), 0, "banned media arrived");
    let d = delta(&before, &lab.counters());
    assert_eq!(d["banned"].packets, 40, "{d:?}");
    assert_eq!(
        d["rtp_allowed"].packets + d["sip_denied"].packets,
        0,
        "{d:?}"
    );

    // fail2ban's unban runs the action's `ban del`.
    let out = f2b.client(&["set", "asterisk", "unbanip", &outsider]);
    assert!(
        out.status.success(),
        "unbanip failed: {out:?}\n{}",
        logs(&dir)
    );
    wait_for("the unban to reach sipwall", &dir, || {
        !bans(&lab).iter().any(|(c, _)| *c == outsider_cidr)
    });
    let before = lab.counters();
    assert_eq!(from_outsider(&lab, 40000, 20), 20, "media after the unban");
    assert_eq!(
        from_outsider(&lab, 5060, 20),
        0,
        "an outsider's signalling stays denied"
    );
    let d = delta(&before, &lab.counters());
    assert_eq!(
        (
            d["banned"].packets,
            d["rtp_allowed"].packets,
            d["sip_denied"].packets
        ),
        (0, 20, 20),
        "{d:?}"
    );

    // Stopping fail2ban unbans what it still holds, the permanent ban too.
    let out = f2b.client(&["stop"]);
    assert!(out.status.success(), "fail2ban-client stop: {out:?}");
    wait_for("fail2ban's stop to lift the permanent ban", &dir, || {
        bans(&lab).is_empty()
    });
}
