//! The real Prometheus server (Debian's `prometheus`, started by the test in
//! the lab's PBX namespace with its own data folder, stopped after) scrapes
//! `sipwall run` and evaluates the shipped alert rules
//! (deploy/prometheus/sipwall-alerts.yml, unchanged). Through its HTTP API:
//! the series exist with the right labels and the values of known traffic,
//! and SipwallFilterNotAttached goes pending, then fires for real, once the
//! filter is taken off the interface.
use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use sipwall_tests::{
    netns::{traffic, Host, TestLab, OUTSIDER, PBX, PBX_IFACE, PROVIDER},
    service::{write_config, Service, METRICS_PORT},
};

/// Where the test's Prometheus listens, inside the PBX's namespace (so it
/// never meets a Prometheus of the machine).
const PROMETHEUS: &str = "127.0.0.1:9090";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A Prometheus server in the lab's PBX, killed when dropped; its data
/// folder is inside the lab's folder, removed with the lab.
struct Prometheus<'a> {
    lab: &'a TestLab,
    child: Child,
    log: PathBuf,
}

impl<'a> Prometheus<'a> {
    fn start(lab: &'a TestLab) -> Prometheus<'a> {
        let dir = lab.dir().join("prometheus");
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let config = dir.join("prometheus.yml");
        // Short intervals so the test sees scrapes and rule evaluations in
        // seconds; the rules themselves are the shipped file.
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: sipwall\n    static_configs:\n      - targets: ['127.0.0.1:{METRICS_PORT}']\n",
                repo().join("deploy/prometheus/sipwall-alerts.yml").display()
            ),
        )
        .unwrap();
        let log = dir.join("prometheus.log");
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", lab.ns(Host::Pbx)))
            .arg("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={PROMETHEUS}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting prometheus (cargo xtask setup installs it)");
        let mut prom = Prometheus { lab, child, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = prom.child.try_wait().unwrap() {
                panic!("prometheus exited ({status}): {}", prom.log());
            }
            if prom.get("/-/ready").is_some_and(|b| b.contains("Ready")) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready in 30 s: {}",
                prom.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        prom
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn get(&self, path: &str) -> Option<String> {
        self.lab
            .exec(
                Host::Pbx,
                &[
                    "curl",
                    "-sf",
                    "--max-time",
                    "5",
                    &format!("http://{PROMETHEUS}{path}"),
                ],
            )
            .ok()
    }

    fn api(&self, path: &str) -> Value {
        let body = self
            .get(path)
            .unwrap_or_else(|| panic!("GET {path} failed: {}", self.log()));
        let json: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["status"], "success", "{path}: {body}");
        json["data"].clone()
    }

    /// The instant vector of `query`: each sample's labels and value.
    fn query(&self, query: &str) -> Vec<(Value, f64)> {
        let encoded: String = query
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let data = self.api(&format!("/api/v1/query?query={encoded}"));
        data["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let value: f64 = s["value"][1].as_str().unwrap().parse().unwrap();
                (s["metric"].clone(), value)
            })
            .collect()
    }

    /// Polls `query` until it has exactly one sample satisfying `want`;
    /// returns its labels.
    fn wait_for(&self, query: &str, timeout: Duration, want: impl Fn(f64) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let result = self.query(query);
            if let [(labels, v)] = result.as_slice() {
                if want(*v) {
                    return labels.clone();
                }
            }
            assert!(
                Instant::now() < deadline,
                "{query}: {result:?} after {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Polls until Prometheus has no pending or firing `alert`. An
    /// evaluation before the first scrape sees no `up` at all, which makes
    /// `SipwallAbsent` pending until the next evaluation; so the quiet state
    /// is waited for, not read once.
    fn wait_quiet(&self, alert: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while let Some(state) = self.alert_state(alert) {
            assert!(
                Instant::now() < deadline,
                "{alert} still {state:?} after {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The state of `alert` for `iface`, if Prometheus has it.
    fn alert_state(&self, alert: &str) -> Option<(String, Value)> {
        let data = self.api("/api/v1/alerts");
        data["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["labels"]["alertname"] == alert)
            .map(|a| {
                (
                    a["state"].as_str().unwrap().to_string(),
                    a["labels"].clone(),
                )
            })
    }
}

impl Drop for Prometheus<'_> {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sip(lab: &TestLab, host: Host, src: IpAddr, n: u64) -> u64 {
    let rx = lab.udp(Host::Pbx, IpAddr::V4(PBX), 5060);
    let tx = lab.udp(host, src, 0);
    traffic::send(&tx, SocketAddr::new(IpAddr::V4(PBX), 5060), n, 64).unwrap();
    traffic::count(&rx, Duration::from_millis(400)).unwrap()
}

#[test]
fn prometheus_scrapes_run_and_fires_the_not_attached_alert() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    let config = lab.dir().join("sipwall.toml");
    write_config(
        &config,
        "[signalling]\nallow = [\"44.229.228.186/32\", \"44.238.177.138/32\", \"2001:db8:9::/48\"]\n",
    );
    let service = Service::start(&lab, &config);
    let prom = Prometheus::start(&lab);

    // Known traffic: the provider's SIP passes, the outsider's is denied.
    sip(&lab, Host::Provider, PROVIDER[0].into(), 1); // neighbour resolution
    assert_eq!(sip(&lab, Host::Provider, PROVIDER[0].into(), 12), 12);
    assert_eq!(sip(&lab, Host::Outsider, OUTSIDER.into(), 7), 0);
    let counters = lab.counters();
    assert_eq!(counters["sip_denied"].packets, 7);
    let allowed = counters["sip_allowed"].packets as f64;
    assert!(allowed >= 12.0, "{counters:?}");

    let labels = prom.wait_for(
        "sipwall_packets_total{reason=\"sip_denied\"}",
        Duration::from_secs(15),
        |v| v == 7.0,
    );
    assert_eq!(labels["job"], "sipwall");
    assert_eq!(labels["instance"], format!("127.0.0.1:{METRICS_PORT}"));
    assert_eq!(labels["iface"], PBX_IFACE);
    prom.wait_for(
        "sipwall_packets_total{reason=\"sip_allowed\"}",
        Duration::from_secs(5),
        |v| v == allowed,
    );
    prom.wait_for(
        "sipwall_bytes_total{reason=\"sip_denied\"}",
        Duration::from_secs(5),
        |v| v == counters["sip_denied"].bytes as f64,
    );
    // Every reason is a series, zero or not; the egress program's carry
    // direction="out" (PromQL's `direction!="out"` keeps the others).
    let reasons = prom.query("sipwall_packets_total{direction!=\"out\"}");
    assert_eq!(
        reasons.len(),
        filter_common::Reason::ALL.len(),
        "{reasons:?}"
    );
    let out = prom.query("sipwall_packets_total{direction=\"out\"}");
    assert_eq!(out.len(), filter_common::OutReason::ALL.len(), "{out:?}");
    let v4 = prom.wait_for(
        "sipwall_allowlist_entries{family=\"ipv4\"}",
        Duration::from_secs(5),
        |v| v == 2.0,
    );
    assert_eq!(v4["iface"], PBX_IFACE);
    prom.wait_for(
        "sipwall_allowlist_entries{family=\"ipv6\"}",
        Duration::from_secs(5),
        |v| v == 1.0,
    );
    let attached = prom.wait_for("sipwall_attached", Duration::from_secs(5), |v| v == 1.0);
    assert_eq!(attached["mode"], "native");
    prom.wait_for(
        "sipwall_config_last_reload_successful",
        Duration::from_secs(5),
        |v| v == 1.0,
    );
    prom.wait_for(
        "sipwall_config_reloads_total{result=\"failure\"}",
        Duration::from_secs(5),
        |v| v == 0.0,
    );
    prom.wait_for("up{job=\"sipwall\"}", Duration::from_secs(5), |v| v == 1.0);
    // The XDP program's series say `in`; the policy, build and process
    // series reach Prometheus as the alerts and dashboards query them.
    let denied_in = prom.query("sipwall_packets_total{direction=\"in\",reason=\"sip_denied\"}");
    assert!(
        matches!(denied_in.as_slice(), [(_, v)] if *v == 7.0),
        "{denied_in:?}"
    );
    let policy = prom.wait_for(
        "sipwall_policy_info{dry_run=\"false\",mode=\"guard\",egress=\"open\"}",
        Duration::from_secs(5),
        |v| v == 1.0,
    );
    assert_eq!(policy["iface"], PBX_IFACE);
    prom.wait_for("sipwall_build_info", Duration::from_secs(5), |v| v == 1.0);
    prom.wait_for(
        "time() - process_start_time_seconds{job=\"sipwall\"}",
        Duration::from_secs(5),
        |v| v > 0.0,
    );
    assert_eq!(prom.alert_state("SipwallFilterNotAttached"), None);
    prom.wait_quiet("SipwallAbsent", Duration::from_secs(10));
    assert_eq!(prom.alert_state("SipwallDryRun"), None);

    // The filter taken off the interface by hand (its link pin removed) while
    // the service runs: sipwall_attached 0, the alert pending, then firing
    // after its `for: 1m`.
    std::fs::remove_file(lab.pin_dir(PBX_IFACE).join("link")).unwrap();
    prom.wait_for("sipwall_attached", Duration::from_secs(10), |v| v == 0.0);
    let deadline = Instant::now() + Duration::from_secs(100);
    let mut seen_pending = false;
    let labels = loop {
        match prom.alert_state("SipwallFilterNotAttached") {
            Some((state, labels)) if state == "firing" => break labels,
            Some((state, _)) if state == "pending" => seen_pending = true,
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "SipwallFilterNotAttached did not fire within 100 s: {:?}",
            prom.api("/api/v1/alerts")
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    assert!(seen_pending, "the alert fired without being pending first");
    assert_eq!(labels["iface"], PBX_IFACE);
    assert_eq!(labels["instance"], format!("127.0.0.1:{METRICS_PORT}"));
    assert_eq!(labels["severity"], "critical");
    assert_eq!(prom.alert_state("SipwallMetricsDown"), None);

    drop(prom);
    let (status, log) = service.stop();
    assert!(status.success(), "{log}");
}
