//! Network-namespace labs for tests. The lab itself is the product's
//! ([`sipwall::lab`], which `sipwall demo` runs on); this adds what tests
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
pub use sipwall::lab::{traffic, Host, Lab, OUTSIDER, OUTSIDER6, PBX, PBX6, PBX_IFACE, PROVIDER};

/// The sipwall binary: `SIPWALL_BIN`, else the one cargo built beside the
/// test binary (target/<profile>/deps/<test> -> target/<profile>/sipwall).
pub fn sipwall_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("SIPWALL_BIN") {
        return bin.into();
    }
    let exe = std::env::current_exe().expect("current_exe");
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary in target/<profile>/deps")
        .join("sipwall");
    assert!(
        bin.is_file(),
        "{} missing: run `cargo build -p filter-user` first or set SIPWALL_BIN",
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

    /// A UDP socket in `host` bound to `addr` (port 0: any).
    pub fn udp(&self, host: Host, addr: IpAddr, port: u16) -> UdpSocket {
        traffic::udp_socket(&self.lab, host, SocketAddr::new(addr, port))
            .unwrap_or_else(|e| panic!("{e:#}"))
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
