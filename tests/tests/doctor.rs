//! `sipwall doctor` on a lab, each check in its ok state and in its
//! warn/fail state, through the real binary. The provider's name is
//! resolved through the system's resolver: the doctor runs in the PBX's
//! network namespace and in a mount namespace of its own whose
//! /etc/resolv.conf (bind-mounted) names a dnsmasq the test runs on the
//! lab's router, answering `sip.vapi.ai` as the test says. No query leaves
//! the lab.
use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use sipwall_tests::{
    netns::{traffic, Host, TestLab, PBX, PBX_IFACE},
    service::write_config,
};

/// The router's address on the PBX's link, where the lab's resolver listens.
const RESOLVER: &str = "192.0.2.254";
/// The third address the lab's DNS gives for sip.vapi.ai.
const THIRD: &str = "198.51.100.77";

/// dnsmasq in the lab's router, answering `sip.vapi.ai` with `addrs` and
/// nothing else; killed when dropped.
struct Resolver {
    child: Child,
}

impl Resolver {
    fn start(lab: &TestLab, addrs: &[&str]) -> Resolver {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", lab.ns(Host::Router)))
            .arg("dnsmasq")
            .args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--conf-file=/dev/null",
                "--bind-interfaces",
                "--port=53",
                "--user=root",
                "--group=root",
            ])
            .arg(format!("--listen-address={RESOLVER}"))
            .arg(format!(
                "--pid-file={}",
                lab.dir().join("dnsmasq.pid").display()
            ));
        for a in addrs {
            cmd.arg(format!("--host-record=sip.vapi.ai,{a}"));
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting dnsmasq (cargo xtask setup installs dnsmasq-base)");
        let resolver = Resolver { child };
        lab.wait_bound(Host::Router, "udp", 53, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("dnsmasq did not start: {e:#}"));
        resolver
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One run of `sipwall doctor --json`: its exit status and checks by name
/// (status, summary, action).
struct Report {
    code: i32,
    checks: BTreeMap<String, (String, String, String)>,
    worst: String,
    raw: String,
}

impl Report {
    fn status(&self, check: &str) -> &str {
        &self.get(check).0
    }

    fn get(&self, check: &str) -> &(String, String, String) {
        self.checks
            .get(check)
            .unwrap_or_else(|| panic!("no check {check} in {}", self.raw))
    }

    /// Panics unless `check` has `status` and its summary and action
    /// together mention every one of `words`.
    fn expect(&self, check: &str, status: &str, words: &[&str]) {
        let (s, summary, action) = self.get(check);
        assert_eq!(s, status, "{check}: {summary} / {action}\n{}", self.raw);
        for w in words {
            assert!(
                summary.contains(w) || action.contains(w),
                "{check} should mention {w:?}: {summary} / {action}"
            );
        }
    }
}

/// `sipwall doctor --json ARGS` in the PBX's network namespace with
/// `nameserver` as its resolver, under `wrap` (e.g. `prlimit ...`) and
/// after `setup` shell commands in its own mount namespace.
fn doctor_with(
    lab: &TestLab,
    nameserver: &str,
    setup: &str,
    wrap: &[&str],
    args: &[&str],
) -> Report {
    let resolv = lab.dir().join("resolv.conf");
    std::fs::write(
        &resolv,
        format!("nameserver {nameserver}\noptions timeout:1 attempts:1\n"),
    )
    .unwrap();
    let script = format!("mount --bind \"$0\" /etc/resolv.conf && {setup} exec \"$@\"");
    let started = Instant::now();
    let out = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", lab.ns(Host::Pbx)))
        .args([
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
        ])
        .arg(&resolv)
        .args(wrap)
        .arg(&lab.bin)
        .arg("--bpffs")
        .arg(lab.bpffs())
        .arg("doctor")
        .arg("--json")
        .args(args)
        .output()
        .expect("running sipwall doctor");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "doctor took {:?}",
        started.elapsed()
    );
    let raw = String::from_utf8_lossy(&out.stdout).into_owned();
    let json: Value = serde_json::from_str(&raw).unwrap_or_else(|e| {
        panic!(
            "doctor --json is not JSON ({e}): {raw}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let checks = json["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("no checks: {raw}"))
        .iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
            (s("name"), (s("status"), s("summary"), s("action")))
        })
        .collect();
    let report = Report {
        code: out.status.code().expect("doctor exited by a signal"),
        checks,
        worst: json["worst"].as_str().unwrap_or_default().to_string(),
        raw,
    };
    // The exit status is the worst result's: 0 ok/skip, 1 warn, 2 fail.
    let worst = report
        .checks
        .values()
        .map(|(s, _, _)| match s.as_str() {
            "ok" | "skip" => 0,
            "warn" => 1,
            "fail" => 2,
            other => panic!("unknown status {other}: {}", report.raw),
        })
        .max()
        .unwrap_or(0);
    assert_eq!(
        report.code, worst,
        "exit status vs the worst check: {}",
        report.raw
    );
    let expected_worst: &[&str] = match worst {
        0 => &["ok", "skip"],
        1 => &["warn"],
        _ => &["fail"],
    };
    assert!(
        expected_worst.contains(&report.worst.as_str()),
        "worst: {}",
        report.raw
    );
    report
}

fn doctor(lab: &TestLab, args: &[&str]) -> Report {
    doctor_with(lab, RESOLVER, "", &[], args)
}

fn config(lab: &TestLab, name: &str, allow: &[&str]) -> PathBuf {
    let path = lab.dir().join(format!("{name}.toml"));
    let list: Vec<String> = allow.iter().map(|a| format!("{a:?}")).collect();
    write_config(
        &path,
        &format!("[signalling]\nallow = [{}]\n", list.join(", ")),
    );
    path
}

const PROVIDER_ALLOW: [&str; 2] = ["44.229.228.186/32", "44.238.177.138/32"];

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_healthy_edge_then_every_check_in_its_warn_or_fail_state() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    let file = config(&lab, "sipwall", &PROVIDER_ALLOW);
    lab.attach(&["-c", path(&file)]);
    let honest_dns = Resolver::start(&lab, &["44.229.228.186", "44.238.177.138"]);

    // Healthy: everything that can be ok here is.
    let r = doctor(&lab, &["-i", PBX_IFACE, "-c", path(&file)]);
    r.expect("kernel_btf", "ok", &["/sys/kernel/btf/vmlinux"]);
    r.expect("kernel_xdp_link", "ok", &[]);
    r.expect("bpffs", "ok", &[]);
    r.expect("pins", "ok", &[]);
    r.expect("xdp_attached", "ok", &["native"]);
    r.expect("provider_allowlist", "ok", &[]);
    r.expect("provider_dns", "ok", &["44.229.228.186", "44.238.177.138"]);
    r.expect("config_in_sync", "ok", &[]);
    r.expect("near_provider", "ok", &[]);
    r.expect("rlimits", "ok", &[]);
    // This machine's clock may or may not be synchronised: either state is
    // told (both are covered by the unit tests of the verdict).
    assert!(["ok", "warn"].contains(&r.status("clock")), "{}", r.raw);
    // -i may be left out with one interface attached.
    assert_eq!(doctor(&lab, &[]).status("xdp_attached"), "ok");
    drop(honest_dns);

    // DNS gives a third address: a warning with the command, never applied.
    let third_dns = Resolver::start(&lab, &["44.229.228.186", "44.238.177.138", THIRD]);
    let before = lab.allowlist();
    let r = doctor(&lab, &[]);
    r.expect(
        "provider_dns",
        "warn",
        &[
            THIRD,
            &format!("sipwall allow add -i {PBX_IFACE} {THIRD}/32"),
        ],
    );
    assert!(r.code >= 1);
    assert_eq!(lab.allowlist(), before, "the doctor changed the allowlist");
    drop(third_dns);

    // DNS unreachable (nothing listens on the resolver's address): said and
    // skipped, quickly.
    let started = Instant::now();
    let r = doctor(&lab, &[]);
    r.expect(
        "provider_dns",
        "skip",
        &["could not be resolved", "Skipped"],
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    // One provider address missing from the running allowlist: a failure
    // naming it, exit 2.
    lab.sipwall_ok(&["allow", "del", "-i", PBX_IFACE, "44.238.177.138/32"]);
    let r = doctor(&lab, &["-c", path(&file)]);
    r.expect(
        "provider_allowlist",
        "fail",
        &[
            "44.238.177.138/32",
            "sipwall allow add -i wan0 44.238.177.138/32",
        ],
    );
    assert_eq!(r.code, 2);
    // ... which is also the file differing from what runs.
    r.expect(
        "config_in_sync",
        "warn",
        &["the file allows 44.238.177.138/32 (not running)"],
    );
    lab.sipwall_ok(&["allow", "add", "-i", PBX_IFACE, "44.238.177.138/32"]);
    assert_eq!(
        doctor(&lab, &["-c", path(&file)]).status("config_in_sync"),
        "ok"
    );

    // A file the service would refuse.
    let broken = lab.dir().join("broken.toml");
    std::fs::write(&broken, "[signalling]\nallow = [\"198.51.100.0/33\"]\n").unwrap();
    doctor(&lab, &["-c", path(&broken)]).expect("config_in_sync", "fail", &["refused"]);

    // Denied signalling from next to an allowed address: the provider's
    // host sends from its transit address 198.51.100.2, next to an
    // allowlisted 198.51.100.9.
    lab.sipwall_ok(&["allow", "add", "-i", PBX_IFACE, "198.51.100.9/32"]);
    let rx = lab.udp(Host::Pbx, IpAddr::V4(PBX), 5060);
    let tx = lab.udp(Host::Provider, "198.51.100.2".parse().unwrap(), 0);
    traffic::send(&tx, SocketAddr::new(IpAddr::V4(PBX), 5060), 6, 32).unwrap();
    assert_eq!(traffic::count(&rx, Duration::from_millis(400)).unwrap(), 0);
    doctor(&lab, &[]).expect(
        "near_provider",
        "warn",
        &[
            "198.51.100.2",
            "198.51.100.9",
            "sipwall allow add -i wan0 198.51.100.2/32",
        ],
    );

    // No BTF (hidden in the doctor's mount namespace).
    doctor_with(
        &lab,
        RESOLVER,
        "mount -t tmpfs none /sys/kernel/btf &&",
        &[],
        &[],
    )
    .expect("kernel_btf", "warn", &["CONFIG_DEBUG_INFO_BTF"]);

    // An old kernel, as the doctor sees it (the UNAME26 personality makes
    // uname(2) report 2.6): no XDP links, and RLIMIT_MEMLOCK applies to
    // BPF maps, so a small one is a warning.
    let r = doctor_with(
        &lab,
        RESOLVER,
        "",
        &[
            "prlimit",
            "--memlock=65536",
            "setarch",
            "x86_64",
            "--uname-2.6",
        ],
        &[],
    );
    r.expect("kernel_xdp_link", "fail", &["2.6.", "5.9"]);
    r.expect(
        "rlimits",
        "warn",
        &["RLIMIT_MEMLOCK", "LimitMEMLOCK=infinity"],
    );

    // Too few file descriptors.
    let nofile = format!("--nofile={}", sipwall::ops::doctor::fds_needed() - 1);
    doctor_with(&lab, RESOLVER, "", &["prlimit", &nofile], &[]).expect(
        "rlimits",
        "warn",
        &["RLIMIT_NOFILE", "LimitNOFILE"],
    );

    // A map's pin removed by hand.
    std::fs::remove_file(lab.pin_dir(PBX_IFACE).join("DENIED")).unwrap();
    doctor(&lab, &[]).expect(
        "pins",
        "fail",
        &["DENIED is not pinned", "sipwall attach -i wan0"],
    );
    lab.attach(&["-c", path(&file)]);
    assert_eq!(doctor(&lab, &[]).status("pins"), "ok");

    // The link's pin removed: nothing filters.
    std::fs::remove_file(lab.pin_dir(PBX_IFACE).join("link")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while lab.xdp_prog_id().is_some() {
        assert!(Instant::now() < deadline, "the program stayed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let r = doctor(&lab, &[]);
    r.expect("xdp_attached", "fail", &["NOT filtering"]);
    assert_eq!(r.code, 2);
    lab.sipwall_ok(&["detach", "-i", PBX_IFACE]);

    // Generic (skb) mode: a warning saying why it costs and what to try.
    lab.sipwall_ok(&[
        "attach",
        "-i",
        PBX_IFACE,
        "--mode",
        "skb",
        "-c",
        path(&file),
    ]);
    doctor(&lab, &[]).expect("xdp_attached", "warn", &["skb", "--mode native"]);
    lab.sipwall_ok(&["detach", "-i", PBX_IFACE]);

    // Nothing attached at all.
    doctor(&lab, &[]).expect("xdp_attached", "fail", &["not attached"]);

    // A pin root that is not on bpffs.
    let plain = lab.dir().join("not-bpffs");
    std::fs::create_dir_all(plain.join("x")).unwrap();
    let out = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", lab.ns(Host::Pbx)))
        .arg(&lab.bin)
        .arg("--bpffs")
        .arg(&plain)
        .args(["doctor", "--json", "--provider-host", "sip.invalid"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    let json: Value = serde_json::from_str(&text).unwrap();
    let bpffs = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "bpffs")
        .unwrap();
    assert_eq!(bpffs["status"], "fail", "{text}");
    assert!(
        bpffs["action"].as_str().unwrap().contains("mount -t bpf"),
        "{text}"
    );
}

#[test]
fn doctor_usage_errors_exit_2_and_text_output_lists_every_check() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    let out = lab.sipwall(&["doctor", "-i", "a/b"]);
    assert_eq!(out.status.code(), Some(2));
    let out = lab.sipwall(&["doctor", "--provider-host", " "]);
    assert_eq!(out.status.code(), Some(2));
    let file = config(&lab, "text", &PROVIDER_ALLOW);
    lab.attach(&["-c", path(&file)]);
    let _dns = Resolver::start(&lab, &["44.229.228.186", "44.238.177.138"]);
    let resolv = lab.dir().join("resolv.conf");
    std::fs::write(&resolv, format!("nameserver {RESOLVER}\n")).unwrap();
    let out = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", lab.ns(Host::Pbx)))
        .args(["unshare", "-m", "--propagation", "private", "sh", "-c"])
        .arg("mount --bind \"$0\" /etc/resolv.conf && exec \"$@\"")
        .arg(&resolv)
        .arg(&lab.bin)
        .arg("--bpffs")
        .arg(lab.bpffs())
        .arg("doctor")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for check in [
        "kernel_btf",
        "kernel_xdp_link",
        "bpffs",
        "pins",
        "xdp_attached",
        "provider_allowlist",
        "provider_dns",
        "config_in_sync",
        "near_provider",
        "clock",
        "rlimits",
    ] {
        assert!(text.contains(check), "{check} missing from:\n{text}");
    }
    assert!(text.contains("worst: "), "{text}");
    assert!(out.status.code().unwrap() <= 1, "{text}");
}

/// `rtp_ephemeral` is judged in every mode, strict egress included, from
/// the sysctls of the interface's namespace; `egress_dns` says that a
/// resolver strict egress drops still answers now and then while
/// `rtp_ports` holds ephemeral ports (queries from those leave as
/// `out_reply`), instead of "name resolution fails".
#[test]
fn rtp_ephemeral_in_every_mode() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    let sysctl = |setting: &str| lab.sysctl(Host::Pbx, setting);
    sysctl("net.ipv4.ip_local_port_range=32768 60999");
    sysctl("net.ipv4.ip_local_reserved_ports=");
    lab.attach(&[]);
    // Guard mode, no media control on: the overlap is told, harmlessly.
    doctor(&lab, &[]).expect(
        "rtp_ephemeral",
        "ok",
        &[
            "holds 20001",
            "harmless",
            "ip_local_reserved_ports=40000-60000",
        ],
    );
    // Strict egress (applied with --force over the refusal), DNS to a
    // resolver that is not the host's.
    let egress = lab.dir().join("egress.toml");
    write_config(
        &egress,
        "[egress]\nmode = \"strict\"\ndns = [\"203.0.113.53\"]\n",
    );
    lab.attach(&["-c", path(&egress), "--force"]);
    let r = doctor(&lab, &[]);
    r.expect(
        "rtp_ephemeral",
        "warn",
        &[
            "20001 ports of rtp_ports 40000-60000",
            "out_reply",
            "sysctl -w net.ipv4.ip_local_reserved_ports=40000-60000",
        ],
    );
    r.expect(
        "egress_dns",
        "warn",
        &[RESOLVER, "works by accident", "20001 of the 28232"],
    );
    // Reserved: the sieve is closed, and DNS to that resolver always fails.
    sysctl("net.ipv4.ip_local_reserved_ports=40000-60000");
    let r = doctor(&lab, &[]);
    r.expect("rtp_ephemeral", "ok", &["holds none"]);
    r.expect("egress_dns", "warn", &[RESOLVER, "name resolution fails"]);
    assert!(!r.raw.contains("works by accident"), "{}", r.raw);
}
