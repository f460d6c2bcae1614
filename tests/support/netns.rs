//! Network-namespace labs for tests. The lab itself is [`sipwall_lab`]'s
//! (which the demo runs on, too); this adds what tests
//! want around it: the sipwall binary under test, helpers that panic with a
//! message naming what failed, and the counters read back as numbers.
use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr, UdpSocket},
    ops::Deref,
    path::PathBuf,
    process::{Command, Output},
};

use serde_json::Value;
pub use sipwall_lab::{traffic, Host, Lab, OUTSIDER, OUTSIDER6, PBX, PBX6, PBX_IFACE, PROVIDER};

/// The sipwall binary: `SIPWALL_BIN`, else the one cargo built beside the
/// test binary.
pub fn sipwall_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("SIPWALL_BIN") {
        return bin.into();
    }
    built_bin("sipwall", "filter-user")
}

/// The demo, `sipwall-demo`, which runs the sipwall built beside it.
pub fn demo_bin() -> PathBuf {
    built_bin("sipwall-demo", "sipwall-lab")
}

/// The binary `name` of `package`, which cargo built beside the test
/// binary (target/<profile>/deps/<test> -> target/<profile>/<name>).
fn built_bin(name: &str, package: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary in target/<profile>/deps")
        .join(name);
    assert!(
        bin.is_file(),
        "{} missing: run `cargo build -p {package}` first",
        bin.display()
    );
    bin
}

/// Namespaces of the tests' labs start with this.
pub const PREFIX: &str = "sipwall-test";

/// Packets and bytes of one counter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Count {
    pub packets: u64,
    pub bytes: u64,
}

/// A lab and the sipwall binary to drive it with.
pub struct TestLab {
    lab: Lab,
    pub bin: PathBuf,
}

impl Deref for TestLab {
    type Target = Lab;
    fn deref(&self) -> &Lab {
        &self.lab
    }
}

impl Default for TestLab {
    fn default() -> Self {
        TestLab::new()
    }
}

impl TestLab {
    pub fn new() -> TestLab {
        let bin = sipwall_bin();
        let lab = Lab::new(PREFIX).unwrap_or_else(|e| panic!("building the lab: {e:#}"));
        TestLab { lab, bin }
    }

    /// The command `sipwall --bpffs <lab's> ARGS` in the PBX, to spawn.
    pub fn sipwall_command(&self, args: &[&str]) -> Command {
        self.lab.sipwall(&self.bin, args)
    }

    /// `sipwall --bpffs <lab's> ARGS` in the PBX, whatever its exit status.
    pub fn sipwall(&self, args: &[&str]) -> Output {
        self.sipwall_command(args)
            .output()
            .unwrap_or_else(|e| panic!("running sipwall {args:?}: {e}"))
    }

    /// Like [`TestLab::sipwall`], panicking unless it exits 0; returns stdout.
    pub fn sipwall_ok(&self, args: &[&str]) -> String {
        let out = self.sipwall(args);
        assert!(
            out.status.success(),
            "sipwall {args:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `sipwall attach` on the PBX's interface in native mode, plus `extra`.
    pub fn attach(&self, extra: &[&str]) -> String {
        let mut args = vec!["attach", "-i", PBX_IFACE, "--mode", "native"];
        args.extend_from_slice(extra);
        self.sipwall_ok(&args)
    }

    /// The counters of `stats --json`, by reason name.
    pub fn counters(&self) -> BTreeMap<String, Count> {
        let text = self.sipwall_ok(&["stats", "-i", PBX_IFACE, "--json"]);
        let json: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("stats --json is not JSON ({e}): {text}"));
        let counters = json["interfaces"][0]["counters"]
            .as_object()
            .unwrap_or_else(|| panic!("stats --json without interfaces[0].counters: {text}"));
        counters
            .iter()
            .map(|(name, c)| {
                let n = |k: &str| {
                    c[k].as_u64()
                        .unwrap_or_else(|| panic!("counter {name}.{k} not a number: {text}"))
                };
                (
                    name.clone(),
                    Count {
                        packets: n("packets"),
                        bytes: n("bytes"),
                    },
                )
            })
            .collect()
    }

    /// The allowlist of `allow list --json`.
    pub fn allowlist(&self) -> Vec<String> {
        let text = self.sipwall_ok(&["allow", "list", "-i", PBX_IFACE, "--json"]);
        let json: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("allow list --json is not JSON ({e}): {text}"));
        json["allow"]
            .as_array()
            .unwrap_or_else(|| panic!("allow list --json without allow: {text}"))
            .iter()
            .map(|v| v.as_str().expect("CIDR string").to_owned())
            .collect()
    }

    /// `sysctl -w SETTING` in `host`'s network namespace (its own
    /// `net.*` values), panicking on failure.
    pub fn sysctl(&self, host: Host, setting: &str) {
        self.lab
            .exec(host, &["sysctl", "-w", setting])
            .unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// A UDP socket in `host` bound to `addr` (port 0: any).
    pub fn udp(&self, host: Host, addr: IpAddr, port: u16) -> UdpSocket {
        traffic::udp_socket(&self.lab, host, SocketAddr::new(addr, port))
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// The folder of `iface`'s pins in the PBX's namespace:
    /// `<bpffs>/netns-<INODE>/<iface>` (docs/pins.md).
    pub fn pin_dir(&self, iface: &str) -> PathBuf {
        self.bpffs()
            .join(format!("netns-{}", netns_inode(&self.ns(Host::Pbx))))
            .join(iface)
    }

    /// The XDP program attached to the PBX's interface, if any, as
    /// `ip link` reports it (independent of sipwall's own view).
    pub fn xdp_prog_id(&self) -> Option<u64> {
        let out = self
            .lab
            .exec(
                Host::Pbx,
                &["ip", "-d", "-j", "link", "show", "dev", PBX_IFACE],
            )
            .unwrap_or_else(|e| panic!("{e:#}"));
        let json: Value = serde_json::from_str(&out).expect("ip -j output is JSON");
        json[0]["xdp"]["prog"]["id"]
            .as_u64()
            .or_else(|| json[0]["xdp"]["attached"][0]["prog"]["id"].as_u64())
    }
}

/// A process a test started (a server, a client, a capture), killed and
/// reaped when dropped, also when the test fails.
pub struct Running(pub std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `after - before` for every counter.
pub fn delta(
    before: &BTreeMap<String, Count>,
    after: &BTreeMap<String, Count>,
) -> BTreeMap<String, Count> {
    after
        .iter()
        .map(|(k, a)| {
            let b = before.get(k).copied().unwrap_or_default();
            (
                k.clone(),
                Count {
                    packets: a.packets - b.packets,
                    bytes: a.bytes - b.bytes,
                },
            )
        })
        .collect()
}

/// The inode that identifies the named network namespace (/run/netns/NAME).
pub fn netns_inode(name: &str) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(format!("/run/netns/{name}"))
        .unwrap_or_else(|e| panic!("/run/netns/{name}: {e}"))
        .ino()
}

/// A second PBX-like namespace beside a lab's, with an interface named like
/// the PBX's ([`PBX_IFACE`], a veth whose peer `<PBX_IFACE>p` is in the same
/// namespace): the same name in two namespaces, as every pod's `eth0` is.
/// Deleted (with its veth and any attachment) when dropped.
pub struct OtherNetns {
    pub name: String,
    bin: PathBuf,
    bpffs: PathBuf,
}

impl OtherNetns {
    pub fn new(lab: &TestLab) -> OtherNetns {
        // Named after the lab's namespaces, so a lab's stale sweep removes
        // it too when a test process dies without unwinding.
        let name = format!("{}2", lab.ns(Host::Pbx));
        let run = |args: &[&str]| {
            let out = Command::new("ip")
                .args(args)
                .output()
                .unwrap_or_else(|e| panic!("ip {args:?}: {e}"));
            assert!(
                out.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&["netns", "add", &name]);
        let other = OtherNetns {
            name: name.clone(),
            bin: lab.bin.clone(),
            bpffs: lab.bpffs(),
        };
        let peer = format!("{PBX_IFACE}p");
        run(&[
            "-n", &name, "link", "add", PBX_IFACE, "type", "veth", "peer", "name", &peer,
        ]);
        for dev in [PBX_IFACE, peer.as_str(), "lo"] {
            run(&["-n", &name, "link", "set", dev, "up"]);
        }
        other
    }

    /// `sipwall --bpffs <lab's> ARGS` inside this namespace (nsenter: the
    /// mount namespace, and with it the lab's bpffs, stays the same).
    pub fn sipwall(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.name))
            .arg(&self.bin)
            .arg("--bpffs")
            .arg(&self.bpffs)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("nsenter sipwall {args:?}: {e}"))
    }

    /// The XDP program on its [`PBX_IFACE`], as `ip link` reports it.
    pub fn xdp_prog_id(&self) -> Option<u64> {
        let out = Command::new("ip")
            .args([
                "-n", &self.name, "-d", "-j", "link", "show", "dev", PBX_IFACE,
            ])
            .output()
            .expect("ip link");
        let json: Value = serde_json::from_slice(&out.stdout).expect("ip -j output is JSON");
        json[0]["xdp"]["prog"]["id"].as_u64()
    }
}

impl Drop for OtherNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
            .map(|out| {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<libc::pid_t>() {
                        // SAFETY: kill has no memory effects; only processes
                        // of this test's own namespace are named.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                }
            });
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}
