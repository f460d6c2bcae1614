//! The container image, built by podman from deploy/container/Containerfile
//! and run as the DaemonSet runs it: only CAP_BPF, CAP_NET_ADMIN and
//! CAP_PERFMON, a read-only root, no privilege escalation, a seccomp filter,
//! a bpffs from outside, and the network namespace of a lab host. It filters
//! the lab's PBX interface (a stranger's SIP dropped and counted), answers
//! `/readyz` on the loopback only (the image's default CMD), serves metrics
//! that `promtool check metrics` accepts, and `podman stop` (SIGTERM) leaves
//! the filter attached and enforcing.
//!
//! No image registry is reachable here, so the base image is a Debian 12
//! root made with mmdebstrap from Debian's packages (cached under
//! ~/.cache/sipwall/podman-base) and imported under the name the
//! Containerfile's FROM uses, unless an image of that name exists; and the
//! `build` stage (Rust images, rustup, crates.io) is replaced by the binary
//! this test suite runs, given as `SIPWALL_BUILD`. The runtime stage, the
//! build context (.containerignore), the entrypoint, the default CMD and the
//! image's labels are the file's own. Containers, images tagged here and the
//! lab are removed at the end, also on failure; the cached base stays.
use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use sipwall_tests::{
    commands::{output, run_ok},
    netns::{traffic, Host, TestLab, OUTSIDER, PBX, PBX_IFACE, PROVIDER},
};

const METRICS: &str = "127.0.0.1:9464";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn home() -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
}

/// podman, as this machine needs it. Debian 12's crun refuses a host with
/// both cgroup hierarchies ("cgroups in hybrid mode not supported"), which
/// runc handles; and podman's default rlimits (nofile, nproc) are above
/// what a sandbox without CAP_SYS_RESOURCE may set, so the test asks for
/// lower ones. Neither changes what the container may do to the host.
fn podman(args: &[&str]) -> Command {
    let mut cmd = Command::new("podman");
    cmd.args(["--runtime", "runc"]).args(args);
    cmd
}

const LIMITS: [&str; 4] = [
    "--ulimit",
    "nofile=4096:4096",
    "--ulimit",
    "nproc=4096:4096",
];

/// The image the Containerfile's last stage starts FROM.
fn base_image(containerfile: &str) -> String {
    containerfile
        .lines()
        .filter_map(|l| l.strip_prefix("FROM "))
        .next_back()
        .expect("the Containerfile has a FROM")
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Makes `name` exist: an image of that name is used as it is; else the
/// cached Debian 12 root (made once with mmdebstrap) is imported as it.
fn ensure_base(name: &str) {
    let exists = output(podman(&["image", "exists", name]).stdout(std::process::Stdio::null()));
    if exists.status.success() {
        return;
    }
    let cache = home().join(".cache/sipwall/podman-base");
    let tarball = cache.join("debian-bookworm.tar");
    if !tarball.is_file() {
        std::fs::create_dir_all(&cache).unwrap();
        let partial = cache.join("debian-bookworm.partial.tar");
        // The `apt` variant: Debian's essential packages and apt, as in
        // Debian's slim images.
        run_ok(
            Command::new("mmdebstrap")
                .args(["--variant=apt", "--mode=root", "--quiet", "bookworm"])
                .arg(&partial),
        );
        std::fs::rename(&partial, &tarball).unwrap();
    }
    run_ok(podman(&["import", "--quiet"]).arg(&tarball).arg(name));
}

/// Container images tagged by this test, removed when dropped.
struct Images(Vec<String>);

impl Drop for Images {
    fn drop(&mut self) {
        for image in &self.0 {
            let _ = podman(&["rmi", "--force", image]).output();
        }
    }
}

/// A container started by this test, removed when dropped.
struct Container(String);

impl Container {
    fn logs(&self) -> String {
        let out = output(&mut podman(&["logs", &self.0]));
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    fn inspect(&self, format: &str) -> String {
        run_ok(&mut podman(&["inspect", "--format", format, &self.0]))
            .trim()
            .to_string()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&["rm", "--force", "--time", "5", &self.0]).output();
    }
}

/// An image holding only /usr/local/bin/sipwall: the binary the tests run,
/// standing in for the Containerfile's `build` stage.
fn binary_image(lab: &TestLab, name: &str) {
    let root = lab.dir().join("binary-image");
    std::fs::create_dir_all(root.join("usr/local/bin")).unwrap();
    std::fs::copy(&lab.bin, root.join("usr/local/bin/sipwall")).unwrap();
    let tarball = lab.dir().join("binary-image.tar");
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&tarball)
            .arg("usr"),
    );
    run_ok(podman(&["import", "--quiet"]).arg(&tarball).arg(name));
}

/// Podman's default seccomp profile (containers-common's), with what
/// containerd's and Docker's defaults have and Debian 12's containers-common
/// (0.50) lacks: bpf(2) for a container with CAP_BPF (it allows it with
/// CAP_SYS_ADMIN only) and perf_event_open(2) with CAP_PERFMON. Every other
/// rule is the default's.
fn seccomp_profile(lab: &TestLab) -> PathBuf {
    let default = Path::new("/usr/share/containers/seccomp.json");
    let mut profile: serde_json::Value = serde_json::from_str(&read(default)).unwrap();
    let rules = profile["syscalls"].as_array_mut().unwrap();
    for rule in rules.iter_mut() {
        let names = rule["names"].as_array().unwrap();
        let has = |name: &str| names.iter().any(|n| n == name);
        let extra = if has("bpf") {
            "CAP_BPF"
        } else if has("perf_event_open") {
            "CAP_PERFMON"
        } else {
            continue;
        };
        // The refusals that apply without CAP_SYS_ADMIN apply without
        // the narrower capability as well.
        if let Some(caps) = rule["excludes"]["caps"].as_array_mut() {
            caps.push(extra.into());
        }
    }
    for (call, cap) in [("bpf", "CAP_BPF"), ("perf_event_open", "CAP_PERFMON")] {
        rules.push(serde_json::json!({
            "names": [call],
            "action": "SCMP_ACT_ALLOW",
            "includes": {"caps": [cap]},
        }));
    }
    let path = lab.dir().join("seccomp.json");
    std::fs::write(&path, profile.to_string()).unwrap();
    path
}

/// The capabilities the DaemonSet adds (`add: [...]`), as podman names
/// them.
fn daemonset_capabilities() -> Vec<String> {
    let text = read(&repo().join("deploy/kubernetes/daemonset.yaml"));
    let line = text
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("add: ["))
        .expect("daemonset.yaml has `add: [...]` capabilities");
    line.trim_end_matches(']')
        .split(',')
        .map(|c| c.trim().trim_matches('"').to_string())
        .collect()
}

fn curl(lab: &TestLab, url: &str) -> Result<String, String> {
    lab.exec(Host::Pbx, &["curl", "-sf", "--max-time", "5", url])
        .map_err(|e| format!("{e:#}"))
}

/// Sends `n` datagrams from `host`/`src` to the PBX's 5060; returns how many
/// arrived.
fn sip(lab: &TestLab, host: Host, src: IpAddr, n: u64) -> u64 {
    let rx = lab.udp(Host::Pbx, PBX.into(), 5060);
    let tx = lab.udp(host, src, 0);
    traffic::send(&tx, SocketAddr::new(PBX.into(), 5060), n, 64).unwrap();
    traffic::count(&rx, Duration::from_millis(500)).unwrap()
}

#[test]
fn image_builds_and_filters_with_the_daemonsets_security_settings() {
    sipwall_tests::skip_unless_root!();
    let containerfile_path = repo().join("deploy/container/Containerfile");
    let containerfile = read(&containerfile_path);
    ensure_base(&base_image(&containerfile));
    let lab = TestLab::new();
    let pid = std::process::id();
    let binary = format!("localhost/sipwall-test-binary:{pid}");
    let image = format!("localhost/sipwall-test:{pid}");
    let probe = format!("localhost/sipwall-test-context:{pid}");
    let _images = Images(vec![image.clone(), binary.clone(), probe.clone()]);

    // The build context is the repository without target/ and .git
    // (.containerignore), read the way the image's build reads it.
    let probe_file = lab.dir().join("Containerfile.context");
    std::fs::write(
        &probe_file,
        format!(
            "FROM {}\nCOPY . /context\nRUN test -f /context/Cargo.toml && test -f /context/deploy/container/entrypoint.sh && test ! -e /context/target && test ! -e /context/.git\n",
            base_image(&containerfile)
        ),
    )
    .unwrap();
    run_ok(
        podman(&["build", "--quiet", "--network", "none"])
            .args(LIMITS)
            .arg("-f")
            .arg(&probe_file)
            .args(["-t", &probe])
            .arg(repo()),
    );

    // The image, from the Containerfile as shipped.
    binary_image(&lab, &binary);
    let revision = "0123456789ab";
    // The host's network for the build's downloads: podman's default
    // bridge would leave CNI's nftables tables (ip nat, ip filter) behind.
    run_ok(
        podman(&["build", "--quiet", "--network", "host"])
            .args(LIMITS)
            .arg("-f")
            .arg(&containerfile_path)
            .args(["--build-arg", &format!("SIPWALL_BUILD={binary}")])
            .args(["--build-arg", &format!("SIPWALL_REVISION={revision}")])
            .args(["-t", &image])
            .arg(repo()),
    );
    let label = run_ok(&mut podman(&[
        "image",
        "inspect",
        "--format",
        "{{index .Labels \"org.opencontainers.image.revision\"}}",
        &image,
    ]));
    assert_eq!(label.trim(), revision);

    // Run as the DaemonSet's securityContext says, with no arguments: the
    // image's default CMD.
    let caps = daemonset_capabilities();
    let name = format!("sipwall-test-{pid}");
    let seccomp = seccomp_profile(&lab);
    run_ok(
        podman(&["run", "--detach", "--name", &name])
            .args(LIMITS)
            .args(["--cap-drop", "all", "--cap-add", &caps.join(",")])
            .arg("--read-only")
            .args(["--security-opt", "no-new-privileges"])
            .arg("--security-opt")
            .arg(format!("seccomp={}", seccomp.display()))
            .arg("--volume")
            .arg(format!("{}:/sys/fs/bpf", lab.bpffs().display()))
            .args(["--env", "SIPWALL_BPFFS=/sys/fs/bpf"])
            .arg("--network")
            .arg(format!("ns:/run/netns/{}", lab.ns(Host::Pbx)))
            .arg(&image),
    );
    let container = Container(name);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !container.logs().contains("serving metrics") {
        assert!(
            container.inspect("{{.State.Running}}") == "true" && Instant::now() < deadline,
            "the container did not serve metrics: {}",
            container.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = container.logs();
    assert!(
        log.contains(&format!(
            "filtering {PBX_IFACE}, the interface that routes to 44.229.228.186"
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!("serving metrics on http://{METRICS}/metrics")),
        "the default CMD does not serve metrics on the loopback: {log}"
    );

    // The process in the container: exactly the DaemonSet's capabilities,
    // no privilege escalation, a seccomp filter.
    let host_pid = container.inspect("{{.State.Pid}}");
    let status = read(Path::new(&format!("/proc/{host_pid}/status")));
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("{name} in /proc/{host_pid}/status"))
            .trim()
            .to_string()
    };
    const CAP_NET_ADMIN: u32 = 12;
    const CAP_PERFMON: u32 = 38;
    const CAP_BPF: u32 = 39;
    let eff = u64::from_str_radix(&field("CapEff:"), 16).unwrap();
    assert_eq!(
        eff,
        (1 << CAP_NET_ADMIN) | (1 << CAP_PERFMON) | (1 << CAP_BPF),
        "capabilities of sipwall in the container ({caps:?})"
    );
    assert_eq!(field("NoNewPrivs:"), "1");
    assert_eq!(field("Seccomp:"), "2", "no seccomp filter");
    let cmdline = read(Path::new(&format!("/proc/{host_pid}/cmdline")));
    assert!(
        cmdline.starts_with("sipwall\0run\0--keep-attached\0"),
        "PID 1 of the container is not `sipwall run --keep-attached`: {cmdline:?}"
    );
    // A read-only root.
    let write = output(&mut podman(&["exec", &container.0, "touch", "/written"]));
    assert!(
        !write.status.success()
            && String::from_utf8_lossy(&write.stderr).contains("Read-only file system"),
        "the root file system is writable: {write:?}"
    );

    // The probes, on the loopback only.
    assert!(curl(&lab, &format!("http://{METRICS}/readyz"))
        .unwrap()
        .contains(&format!("filtering {PBX_IFACE}")));
    assert!(
        curl(&lab, &format!("http://{PBX}:9464/readyz")).is_err(),
        "metrics answer on the PBX's interface address"
    );
    // The image's scrape, linted by promtool.
    let metrics = curl(&lab, &format!("http://{METRICS}/metrics")).unwrap();
    assert!(metrics.contains("sipwall_policy_info{"), "{metrics}");
    let scrape = lab.dir().join("metrics.txt");
    std::fs::write(&scrape, &metrics).unwrap();
    run_ok(
        Command::new("sh")
            .arg("-c")
            .arg("promtool check metrics < \"$1\"")
            .arg("sh")
            .arg(&scrape),
    );

    // The filter: the provider's SIP passes, a stranger's is dropped and
    // counted.
    sip(&lab, Host::Provider, PROVIDER[0].into(), 1); // neighbour resolution
    assert_eq!(sip(&lab, Host::Provider, PROVIDER[0].into(), 10), 10);
    sip(&lab, Host::Outsider, OUTSIDER.into(), 1);
    let before = lab.counters();
    assert_eq!(sip(&lab, Host::Outsider, OUTSIDER.into(), 10), 0);
    let after = lab.counters();
    assert_eq!(
        after["sip_denied"].packets - before["sip_denied"].packets,
        10,
        "{after:?}"
    );
    let program = lab.xdp_prog_id().expect("attached by the container");

    // `podman stop`: SIGTERM to sipwall, which leaves the filter in place.
    run_ok(&mut podman(&["stop", "--time", "10", &container.0]));
    assert_eq!(container.inspect("{{.State.ExitCode}}"), "0");
    let log = container.logs();
    assert!(
        log.contains(&format!(
            "the filter stays attached to {PBX_IFACE} with its pins (--keep-attached)"
        )),
        "{log}"
    );
    assert_eq!(lab.xdp_prog_id(), Some(program));
    assert_eq!(
        sip(&lab, Host::Outsider, OUTSIDER.into(), 10),
        0,
        "a stranger's SIP passed with the container stopped"
    );
    assert_eq!(sip(&lab, Host::Provider, PROVIDER[0].into(), 5), 5);

    lab.sipwall_ok(&["detach", "-i", PBX_IFACE]);
    assert_eq!(lab.xdp_prog_id(), None, "detach left a program behind");
}
