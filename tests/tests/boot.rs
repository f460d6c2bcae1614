//! The Debian package on a real systemd boot: a Debian 12 root (built once
//! with mmdebstrap from Debian's packages, cached under ~/.cache/sipwall)
//! booted with systemd-nspawn, systemd as PID 1, in the network namespace
//! of a lab's PBX (so the lab's provider and outsider send it real traffic)
//! with the capabilities and system calls XDP needs and a bpffs of its own.
//!
//! In it: `dpkg -i` the package, two instances (one interface named with a
//! dash, each with its own metrics port from /etc/sipwall/IFACE.env), the
//! unit's `systemd-analyze security` score while it filters; a reboot under
//! a flood that shows, from systemd's record of when each unit became
//! active, from the journal and from the packets a probe ordered after
//! network-pre.target receives, that the filter is in place before
//! network-pre.target; `systemctl restart` and an upgrade to a
//! second package under a flood with nothing passing and no counter lost;
//! fail2ban banning through the packaged action and jail example; and
//! `apt-get remove`, which stops the services and leaves the filter
//! enforcing (deploy/README.md). Container, bpffs, cgroups and lab are
//! removed at the end, also on failure.
//!
//! Without a container: the notifications `sipwall run` sends systemd
//! (`Type=notify`) on a socket of the test's, READY=1 once the filter is
//! attached and STOPPING=1 on SIGTERM.
use std::{
    net::{IpAddr, SocketAddr},
    os::unix::net::UnixDatagram,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use sipwall_tests::debian::{build_package, run, run_ok};
use sipwall_tests::netns::{
    traffic::{self, Sink, Stream},
    Host, TestLab, OUTSIDER, PBX, PBX_IFACE, PROVIDER,
};

/// Debian's packages in the cached root, besides the minimal base.
const ROOT_PACKAGES: &str = "systemd,systemd-sysv,dbus,iproute2,fail2ban,python3";

/// The second interface: a dash in its name, escaped in the unit's name.
const SECOND_IFACE: &str = "wan-b";

fn within(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < end, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The Debian 12 root, built on first use (about a minute) and reused: a
/// stamp inside names the packages it was built with.
fn debian_root() -> PathBuf {
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    let cache = Path::new(&home).join(".cache/sipwall");
    let root = cache.join("nspawn-bookworm");
    let stamp = root.join("etc/sipwall-test-root");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == ROOT_PACKAGES) {
        return root;
    }
    let building = cache.join("nspawn-bookworm.building");
    let _ = std::fs::remove_dir_all(&building);
    std::fs::create_dir_all(&cache).unwrap();
    eprintln!(
        "building a Debian 12 root for systemd-nspawn in {} (once)",
        root.display()
    );
    run_ok(
        Command::new("mmdebstrap")
            .args(["--variant=minbase", "--quiet"])
            .arg(format!("--include={ROOT_PACKAGES}"))
            .arg("bookworm")
            .arg(&building),
    );
    std::fs::write(building.join("etc/sipwall-test-root"), ROOT_PACKAGES).unwrap();
    let _ = std::fs::remove_dir_all(&root);
    std::fs::rename(&building, &root).unwrap();
    root
}

/// Two packages from `cargo xtask deb`: Cargo's version, and the same with
/// the Debian revision bumped (the upgrade).
fn build_packages(out: &Path) -> (PathBuf, PathBuf) {
    let first = build_package(out, &[]);
    let version = format!("{}-2", env!("CARGO_PKG_VERSION"));
    let second = build_package(out, &["--deb-version", &version]);
    assert_ne!(first, second);
    (first, second)
}

/// A booted container: the cached root under an overlay (the cache stays
/// as it is), the lab PBX's network namespace, a bpffs of its own at
/// /sys/fs/bpf, and cgroups of its own. Everything goes when dropped.
struct Machine {
    dir: PathBuf,
    root: PathBuf,
    bpffs: PathBuf,
    netns: String,
    cgroups: Vec<PathBuf>,
    nspawn: Option<Child>,
    leader: u32,
    boots: u32,
}

impl Machine {
    fn new(lab: &TestLab, lower: &Path) -> Machine {
        let dir = std::env::temp_dir().join(format!("sipwall-boot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut machine = Machine {
            root: dir.join("root"),
            bpffs: dir.join("bpffs"),
            dir,
            netns: format!("/run/netns/{}", lab.ns(Host::Pbx)),
            cgroups: Vec::new(),
            nspawn: None,
            leader: 0,
            boots: 0,
        };
        for sub in ["root", "upper", "work", "bpffs"] {
            std::fs::create_dir_all(machine.dir.join(sub)).unwrap();
        }
        run_ok(
            Command::new("mount")
                .args(["-t", "overlay", "overlay", "-o"])
                .arg(format!(
                    "lowerdir={},upperdir={},workdir={}",
                    lower.display(),
                    machine.dir.join("upper").display(),
                    machine.dir.join("work").display()
                ))
                .arg(&machine.root),
        );
        machine.mount_bpffs();
        // Cgroups of its own in every hierarchy systemd uses, so that
        // nspawn's payload/supervisor groups land there and go with it.
        for hierarchy in [
            "/sys/fs/cgroup/systemd",
            "/sys/fs/cgroup/unified",
            "/sys/fs/cgroup",
        ] {
            let hierarchy = Path::new(hierarchy);
            if hierarchy.join("cgroup.procs").exists() {
                let group = hierarchy.join(format!("sipwall-boot-{}", std::process::id()));
                std::fs::create_dir_all(&group).unwrap();
                machine.cgroups.push(group);
            }
        }
        machine
    }

    /// A file in the container's root.
    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel.trim_start_matches('/'))
    }

    fn write(&self, rel: &str, text: &str) {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }

    /// A fresh bpffs, as after a power cycle: no pins, so nothing of an
    /// earlier boot's filter survives.
    fn mount_bpffs(&self) {
        run_ok(
            Command::new("mount")
                .args(["-t", "bpf", "bpf"])
                .arg(&self.bpffs),
        );
    }

    fn unmount(path: &Path) {
        let _ = Command::new("umount").arg("--lazy").arg(path).output();
    }

    /// Boots the container and waits until systemd has finished starting
    /// it; returns the state `systemctl is-system-running` reports.
    fn boot(&mut self) -> String {
        self.boots += 1;
        let log =
            std::fs::File::create(self.dir.join(format!("nspawn-{}.log", self.boots))).unwrap();
        let mut script = String::from("set -e\n");
        for group in &self.cgroups {
            script += &format!("echo $$ > '{}/cgroup.procs'\n", group.display());
        }
        script += "exec systemd-nspawn \"$@\"\n";
        let child = Command::new("sh")
            .args(["-c", &script, "sh"])
            .arg("--directory")
            .arg(&self.root)
            .args([
                "--boot",
                "--register=no",
                "--keep-unit",
                "--console=passive",
            ])
            .arg(format!("--machine=sipwall-boot-{}", std::process::id()))
            .arg(format!("--network-namespace-path={}", self.netns))
            .arg("--capability=CAP_BPF,CAP_PERFMON,CAP_NET_ADMIN")
            .arg("--system-call-filter=bpf perf_event_open")
            .arg(format!("--bind={}:/sys/fs/bpf", self.bpffs.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting systemd-nspawn");
        let nspawn = child.id();
        self.nspawn = Some(child);
        // The container's PID 1 is nspawn's child.
        let mut leader = 0;
        within(Duration::from_secs(30), "the container's systemd", || {
            let children =
                std::fs::read_to_string(format!("/proc/{nspawn}/task/{nspawn}/children"))
                    .unwrap_or_default();
            leader = children
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .find(|p: &u32| {
                    std::fs::read_to_string(format!("/proc/{p}/comm"))
                        .is_ok_and(|c| c.trim() == "systemd")
                })
                .unwrap_or(0);
            if leader == 0 {
                if let Some(status) = self.nspawn.as_mut().unwrap().try_wait().unwrap() {
                    panic!("systemd-nspawn exited ({status}): {}", self.nspawn_log());
                }
            }
            leader != 0
        });
        self.leader = leader;
        // Wait for the manager's socket, then for the boot to finish.
        within(Duration::from_secs(30), "systemctl answering", || {
            self.exec(&["systemctl", "show", "-p", "Version"])
                .status
                .success()
        });
        let state = self.exec(&["timeout", "120", "systemctl", "is-system-running", "--wait"]);
        String::from_utf8_lossy(&state.stdout).trim().to_string()
    }

    fn nspawn_log(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("nspawn-{}.log", self.boots)))
            .unwrap_or_default()
    }

    /// A command run inside the container (all its namespaces).
    fn command(&self, argv: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--target={}", self.leader))
            .args(["--mount", "--uts", "--ipc", "--net", "--pid", "--"])
            .args(argv)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LANG", "C.UTF-8");
        cmd
    }

    fn exec(&self, argv: &[&str]) -> Output {
        run(&mut self.command(argv))
    }

    fn exec_ok(&self, argv: &[&str]) -> String {
        let out = self.exec(argv);
        assert!(
            out.status.success(),
            "{argv:?} in the container failed ({}):\n{}{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.journal_tail()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn journal_tail(&self) -> String {
        let out = self.exec(&["journalctl", "-b", "--no-pager", "-n", "60"]);
        format!(
            "journal (last lines):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    }

    /// `systemctl show -p PROP --value UNIT`.
    fn unit_property(&self, unit: &str, prop: &str) -> String {
        self.exec_ok(&["systemctl", "show", "-p", prop, "--value", unit])
            .trim()
            .to_string()
    }

    /// Reboots from inside (`systemctl reboot`), as an operator does; the
    /// kernel state a real reboot loses (the bpffs pins, so the filter) is
    /// dropped while the container is down, then it boots again.
    fn reboot(&mut self) -> String {
        let _ = self.exec(&["systemctl", "reboot"]);
        let mut nspawn = self.nspawn.take().unwrap();
        let end = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = nspawn.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < end,
                "the container did not shut down within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        // systemd-nspawn exits 133 when the container asked for a reboot.
        assert_eq!(status.code(), Some(133), "{}", self.nspawn_log());
        Machine::unmount(&self.bpffs);
        self.mount_bpffs();
        self.boot()
    }

    /// Stops the container, hard: PID 1's death ends its PID namespace.
    fn kill(&mut self) {
        if let Some(mut nspawn) = self.nspawn.take() {
            if self.leader != 0 {
                // SAFETY: plain kill(2).
                unsafe { libc::kill(self.leader as libc::pid_t, libc::SIGKILL) };
            }
            let end = Instant::now() + Duration::from_secs(10);
            while nspawn.try_wait().ok().flatten().is_none() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = nspawn.kill();
            let _ = nspawn.wait();
        }
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        self.kill();
        Machine::unmount(&self.bpffs);
        Machine::unmount(&self.root);
        for group in &self.cgroups {
            remove_cgroup(group);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Removes a cgroup and those under it (empty once their processes died).
fn remove_cgroup(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup(&entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// The `sip_denied`-style counters of `sipwall stats --json` run inside.
fn counters(machine: &Machine, iface: &str) -> Value {
    let text = machine.exec_ok(&["sipwall", "stats", "-i", iface, "--json"]);
    let json: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    json["interfaces"][0]["counters"].clone()
}

fn packets(counters: &Value, reason: &str) -> u64 {
    counters[reason]["packets"]
        .as_u64()
        .unwrap_or_else(|| panic!("no {reason} in {counters}"))
}

/// Datagrams from `host`/`src` to the PBX's `port`; how many arrived.
fn datagrams(lab: &TestLab, host: Host, src: IpAddr, port: u16, n: u64) -> u64 {
    let rx = lab.udp(Host::Pbx, PBX.into(), port);
    let tx = lab.udp(host, src, 0);
    traffic::send(&tx, SocketAddr::new(PBX.into(), port), n, 64).unwrap();
    traffic::count(&rx, Duration::from_millis(400)).unwrap()
}

fn xdp_prog(lab: &TestLab, iface: &str) -> Option<u64> {
    let out = lab
        .exec(Host::Pbx, &["ip", "-d", "-j", "link", "show", "dev", iface])
        .unwrap_or_else(|e| panic!("{e:#}"));
    let json: Value = serde_json::from_str(&out).unwrap();
    json[0]["xdp"]["prog"]["id"].as_u64()
}

/// While `action` runs, an outsider floods the PBX's SIP port, where a
/// socket listens: nothing may arrive, and the counters of the filter must
/// account for every datagram (none lost, none reset).
fn under_flood(lab: &TestLab, machine: &Machine, what: &str, action: impl FnOnce()) {
    let sink = Sink::start(lab.udp(Host::Pbx, PBX.into(), 5060)).unwrap();
    let before = packets(&counters(machine, PBX_IFACE), "sip_denied");
    let flood = Stream::start(
        lab.udp(Host::Outsider, OUTSIDER.into(), 0),
        SocketAddr::new(PBX.into(), 5060),
        1000,
    );
    std::thread::sleep(Duration::from_millis(300));
    action();
    std::thread::sleep(Duration::from_millis(300));
    let sent = flood.stop().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(sink.received(), 0, "{what}: the outsider's SIP got through");
    let after = packets(&counters(machine, PBX_IFACE), "sip_denied");
    assert_eq!(
        after - before,
        sent,
        "{what}: the filter judged {} of the {sent} datagrams sent",
        after - before
    );
    eprintln!("{what}: {sent} datagrams of a SIP flood, all denied and counted");
}

/// Runs just after network-pre.target: what arrives on the SIP port for
/// two seconds, by source, and the XDP program on the interface.
const PROBE: &str = r#"import json, socket, subprocess, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 5060))
s.settimeout(0.1)
seen = {}
end = time.monotonic() + 2
while time.monotonic() < end:
    try:
        _, (addr, _) = s.recvfrom(2048)
        seen[addr] = seen.get(addr, 0) + 1
    except socket.timeout:
        pass
link = json.loads(subprocess.run(["ip", "-j", "-d", "link", "show", "wan0"],
                                 capture_output=True, check=True).stdout)[0]
print("boot-probe " + json.dumps({"xdp_prog": link.get("xdp", {}).get("prog", {}).get("id"),
                                  "received": seen}), flush=True)
"#;

const PROBE_UNIT: &str = "[Unit]
Description=Boot test probe: what arrives right after network-pre.target
DefaultDependencies=no
Wants=network-pre.target
After=network-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/bin/python3 /usr/local/lib/sipwall-test/boot-probe.py

[Install]
WantedBy=multi-user.target
";

/// When `unit` last became active (a `Type=notify` service: when it sent
/// READY=1), on the monotonic clock, from systemd's own record. PID 1's
/// journal lines would not do: in a container there is no /dev/kmsg, so what
/// PID 1 logs before journald runs goes to the console only, and whether
/// the filters' start comes before journald's is a race.
fn active_since(machine: &Machine, unit: &str) -> u64 {
    let value = machine.unit_property(unit, "ActiveEnterTimestampMonotonic");
    let at: u64 = value
        .parse()
        .unwrap_or_else(|e| panic!("{unit}'s ActiveEnterTimestampMonotonic {value:?}: {e}"));
    assert!(at > 0, "{unit} never became active in this boot");
    at
}

#[test]
fn the_package_on_a_systemd_boot_filters_before_the_network_and_never_lets_go() {
    sipwall_tests::skip_unless_root!();
    let lower = debian_root();
    let debs = std::env::temp_dir().join(format!("sipwall-boot-debs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&debs);
    std::fs::create_dir_all(&debs).unwrap();
    let debs_guard = RemoveDir(debs.clone());
    let (first, second) = build_packages(&debs);

    let lab = TestLab::new();
    run_ok(
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", lab.ns(Host::Pbx)))
            .args([
                "ip",
                "link",
                "add",
                SECOND_IFACE,
                "type",
                "veth",
                "peer",
                "name",
                "wan-b-peer",
            ]),
    );
    for link in [SECOND_IFACE, "wan-b-peer"] {
        lab.exec(Host::Pbx, &["ip", "link", "set", link, "up"])
            .unwrap();
    }

    let mut machine = Machine::new(&lab, &lower);
    // No sshd here: Debian's default jail would stop fail2ban from starting.
    machine.write(
        "/etc/fail2ban/jail.d/defaults-debian.conf",
        "[sshd]\nenabled = false\n",
    );
    for deb in [&first, &second] {
        std::fs::copy(deb, machine.path("/root").join(deb.file_name().unwrap())).unwrap();
    }
    let state = machine.boot();
    assert!(
        ["running", "degraded"].contains(&state.as_str()),
        "the container's boot: {state}\n{}",
        machine.journal_tail()
    );

    // ---- Install, enable two instances --------------------------------
    let in_root = |deb: &Path| format!("/root/{}", deb.file_name().unwrap().to_str().unwrap());
    machine.exec_ok(&["dpkg", "-i", &in_root(&first)]);
    machine.exec_ok(&[
        "systemctl",
        "enable",
        "--now",
        &format!("sipwall@{PBX_IFACE}.service"),
    ]);
    // Type=notify: `enable --now` returns once the filter is attached.
    assert!(
        xdp_prog(&lab, PBX_IFACE).is_some(),
        "no XDP program on {PBX_IFACE} once started"
    );
    assert_eq!(
        datagrams(&lab, Host::Provider, PROVIDER[0].into(), 5060, 5),
        5
    );
    assert_eq!(datagrams(&lab, Host::Outsider, OUTSIDER.into(), 5060, 5), 0);

    machine.write(
        &format!("/etc/sipwall/{SECOND_IFACE}.env"),
        "SIPWALL_ARGS=\"--metrics 127.0.0.1:9465\"\n",
    );
    let second_unit = machine
        .exec_ok(&[
            "systemd-escape",
            "--template=sipwall@.service",
            SECOND_IFACE,
        ])
        .trim()
        .to_string();
    assert_eq!(second_unit, "sipwall@wan\\x2db.service");
    machine.exec_ok(&["systemctl", "enable", "--now", &second_unit]);
    assert!(
        xdp_prog(&lab, SECOND_IFACE).is_some(),
        "no XDP program on {SECOND_IFACE}"
    );
    for (port, iface) in [(9464, PBX_IFACE), (9465, SECOND_IFACE)] {
        let ready = lab
            .exec(
                Host::Pbx,
                &["curl", "-sf", &format!("http://127.0.0.1:{port}/readyz")],
            )
            .unwrap_or_else(|e| panic!("/readyz on {port}: {e:#}"));
        assert_eq!(ready.trim(), format!("ready: filtering {iface}"));
    }

    // The hardening, rated by systemd on the running unit, which filters.
    let security = machine.exec_ok(&[
        "systemd-analyze",
        "security",
        "--no-pager",
        "sipwall@wan0.service",
    ]);
    let score: f64 = security
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for sipwall@wan0.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no overall exposure in:\n{security}"));
    assert!(
        score <= 3.0,
        "systemd-analyze security rates the unit {score}:\n{security}"
    );

    // ---- Reboot under a flood -----------------------------------------
    machine.write("/usr/local/lib/sipwall-test/boot-probe.py", PROBE);
    machine.write("/etc/systemd/system/sipwall-boot-probe.service", PROBE_UNIT);
    machine.exec_ok(&["systemctl", "enable", "sipwall-boot-probe.service"]);
    let outsider_flood = Stream::start(
        lab.udp(Host::Outsider, OUTSIDER.into(), 0),
        SocketAddr::new(PBX.into(), 5060),
        500,
    );
    let provider_calls = Stream::start(
        lab.udp(Host::Provider, PROVIDER[0].into(), 0),
        SocketAddr::new(PBX.into(), 5060),
        200,
    );
    machine.reboot();
    outsider_flood.stop().unwrap();
    provider_calls.stop().unwrap();

    let network_pre = active_since(&machine, "network-pre.target");
    for unit in ["sipwall@wan0.service", second_unit.as_str()] {
        let ready = active_since(&machine, unit);
        assert!(
            ready < network_pre,
            "{unit} was ready at {ready} us, after network-pre.target ({network_pre} us)"
        );
    }
    // The journal of this boot: each instance attached its filter (the
    // services' own output reaches journald through its socket, which
    // holds it until journald reads it, so none of it is lost).
    for (unit, iface) in [
        ("sipwall@wan0.service", PBX_IFACE),
        (second_unit.as_str(), SECOND_IFACE),
    ] {
        let log = machine.exec_ok(&["journalctl", "-b", "-o", "cat", "-u", unit]);
        assert!(
            log.contains(&format!("sipwall: filtering {iface} in ")),
            "{unit} did not attach on this boot: {log}"
        );
    }
    let probe = machine.exec_ok(&[
        "journalctl",
        "-b",
        "-o",
        "cat",
        "-u",
        "sipwall-boot-probe.service",
    ]);
    let line = probe
        .lines()
        .find_map(|l| l.strip_prefix("boot-probe "))
        .unwrap_or_else(|| panic!("the probe wrote nothing: {probe}"));
    let seen: Value = serde_json::from_str(line).unwrap();
    assert!(
        seen["xdp_prog"].is_u64(),
        "no filter right after network-pre.target: {seen}"
    );
    assert!(
        seen["received"][OUTSIDER.to_string()].is_null(),
        "the outsider's SIP arrived after network-pre.target: {seen}"
    );
    assert!(
        seen["received"][PROVIDER[0].to_string()].as_u64() > Some(0),
        "the provider's SIP did not arrive after network-pre.target: {seen}"
    );
    eprintln!("after the reboot, right after network-pre.target: {seen}");

    // ---- Restart and upgrade under a flood -----------------------------
    let main_pid = |m: &Machine| m.unit_property("sipwall@wan0.service", "MainPID");
    let pid = main_pid(&machine);
    under_flood(&lab, &machine, "systemctl restart", || {
        machine.exec_ok(&["systemctl", "restart", "sipwall@wan0.service"]);
    });
    assert_ne!(main_pid(&machine), pid, "the restart did not restart");
    let pid = main_pid(&machine);
    under_flood(&lab, &machine, "the upgrade", || {
        machine.exec_ok(&["dpkg", "-i", &in_root(&second)]);
    });
    assert_eq!(
        machine.exec_ok(&["dpkg-query", "-W", "-f=${Version}", "sipwall"]),
        format!("{}-2", env!("CARGO_PKG_VERSION"))
    );
    assert_ne!(
        main_pid(&machine),
        pid,
        "the upgrade did not restart the running instance"
    );
    assert_eq!(
        machine.unit_property("sipwall@wan0.service", "ActiveState"),
        "active"
    );

    // ---- fail2ban, with the packaged action and jail example ----------
    machine.exec_ok(&[
        "cp",
        "/usr/share/doc/sipwall/examples/fail2ban/jail.d/sipwall.conf",
        "/etc/fail2ban/jail.d/sipwall.conf",
    ]);
    // The example's jail names no interface: with two attached, name one.
    let jail = std::fs::read_to_string(machine.path("/etc/fail2ban/jail.d/sipwall.conf")).unwrap();
    machine.write(
        "/etc/fail2ban/jail.d/sipwall.conf",
        &jail.replace(
            "action   = sipwall\n",
            &format!("action   = sipwall[sipwall_opts=\"-i {PBX_IFACE}\"]\n"),
        ),
    );
    machine.write("/var/log/asterisk/messages", "");
    machine.exec_ok(&["systemctl", "restart", "fail2ban.service"]);
    within(Duration::from_secs(30), "fail2ban's asterisk jail", || {
        machine
            .exec(&["fail2ban-client", "status", "asterisk"])
            .status
            .success()
    });
    let now = machine.exec_ok(&["date", "+%Y-%m-%d %H:%M:%S"]);
    let mut lines = std::fs::read_to_string(machine.path("/var/log/asterisk/messages")).unwrap();
    for _ in 0..5 {
        lines += &format!(
            "[{}] NOTICE[1638] chan_sip.c: Registration from '<sip:301@example.com>' failed for '{OUTSIDER}' - Wrong password\n",
            now.trim()
        );
    }
    machine.write("/var/log/asterisk/messages", &lines);
    within(Duration::from_secs(30), "fail2ban's ban in sipwall", || {
        machine
            .exec_ok(&["sipwall", "ban", "list", "-i", PBX_IFACE, "--json"])
            .contains(&format!("\"{OUTSIDER}/32\""))
    });
    // Media from the outsider is allowed in guard mode, unless banned.
    let banned_before = packets(&counters(&machine, PBX_IFACE), "banned");
    assert_eq!(
        datagrams(&lab, Host::Outsider, OUTSIDER.into(), 40010, 5),
        0
    );
    assert_eq!(
        packets(&counters(&machine, PBX_IFACE), "banned") - banned_before,
        5
    );

    // ---- apt-get remove: services stopped, the filter stays ------------
    machine.exec_ok(&["apt-get", "remove", "-y", "-q", "sipwall"]);
    assert!(!machine.path("/usr/sbin/sipwall").exists());
    for unit in ["sipwall@wan0.service", second_unit.as_str()] {
        assert_ne!(
            machine
                .exec_ok(&["systemctl", "show", "-p", "ActiveState", "--value", unit])
                .trim(),
            "active",
            "{unit} still runs after the package's removal"
        );
    }
    assert!(
        xdp_prog(&lab, PBX_IFACE).is_some(),
        "the removal detached the filter"
    );
    assert_eq!(
        datagrams(&lab, Host::Outsider, OUTSIDER.into(), 5060, 5),
        0,
        "the outsider's SIP got through after the package's removal"
    );
    assert_eq!(
        datagrams(&lab, Host::Provider, PROVIDER[0].into(), 5060, 5),
        5
    );

    drop(machine);
    drop(lab);
    drop(debs_guard);
}

struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn run_tells_systemd_it_is_ready_once_attached_and_when_it_stops() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    let path = lab.dir().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let config = sipwall_tests::debian::repo().join("dist/sipwall.toml");
    let mut run = lab
        .sipwall_command(&[
            "run",
            "-i",
            PBX_IFACE,
            "--mode",
            "native",
            "-c",
            config.to_str().unwrap(),
            "--keep-attached",
        ])
        .env("NOTIFY_SOCKET", &path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 512];
    let receive = |buf: &mut [u8]| {
        let n = socket.recv(buf).expect("a notification within 20 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let ready = receive(&mut buf);
    // Checked at once: READY=1 must not come before the filter is there.
    let attached = lab.xdp_prog_id();
    assert_eq!(ready, format!("READY=1\nSTATUS=filtering {PBX_IFACE}\n"));
    assert!(attached.is_some(), "READY=1 before the filter was attached");
    assert_eq!(datagrams(&lab, Host::Outsider, OUTSIDER.into(), 5060, 3), 0);

    // SAFETY: plain kill(2) on our child.
    unsafe { libc::kill(run.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(receive(&mut buf), "STOPPING=1\n");
    assert!(run.wait().unwrap().success());
    assert_eq!(lab.xdp_prog_id(), attached, "--keep-attached let go");
    lab.sipwall_ok(&["detach", "-i", PBX_IFACE]);
}
