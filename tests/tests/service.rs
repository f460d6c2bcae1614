//! The `run` service and the live views, with real traffic in a lab:
//! SIGHUP reloads (a changed file changes the policy, a broken one keeps
//! it), metrics scraped with curl parse as Prometheus text and equal
//! `stats`, the kernel's denied-source log is opt-in and rate limited, and
//! `stats --watch` redraws in place with per-second rates.
use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use filter_common::LOG_RATE_PER_SEC;
use sipwall_tests::{
    netns::{
        traffic::{self, Sink, Stream},
        Host, TestLab, OUTSIDER, PBX, PBX_IFACE, PROVIDER,
    },
    service::{outsider_sip, parse_sample, sample, write_config, Service, METRICS_PORT},
};

fn allowlist_config(lab: &TestLab, name: &str, allow: &[&str], log_denied: bool) -> PathBuf {
    let path = lab.dir().join(format!("{name}.toml"));
    let list: Vec<String> = allow.iter().map(|a| format!("{a:?}")).collect();
    write_config(
        &path,
        &format!(
            "[signalling]\nallow = [{}]\n\n[policy]\nlog_denied = {log_denied}\n",
            list.join(", ")
        ),
    );
    path
}

#[test]
fn sighup_applies_a_changed_file_and_refuses_a_broken_one() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    let provider = format!("{}/32", PROVIDER[0]);
    let config = allowlist_config(&lab, "sipwall", &[&provider], false);
    let service = Service::start(&lab, &config);
    assert_eq!(lab.allowlist(), std::slice::from_ref(&provider));
    assert_eq!(outsider_sip(&lab, 5), 0, "the outsider is denied at first");

    // A changed, valid file: the outsider's prefix is allowed at once.
    let both = ["198.51.100.0/24", &provider, "203.0.113.0/24"];
    write_config(&config, &format!("[signalling]\nallow = {both:?}\n"));
    let outcome = service.reload();
    assert!(outcome.contains("reloaded"), "{outcome}");
    assert_eq!(
        lab.allowlist(),
        ["44.229.228.186/32", "198.51.100.0/24", "203.0.113.0/24"]
    );
    assert_eq!(
        outsider_sip(&lab, 5),
        5,
        "after the reload the outsider is allowed"
    );

    // Broken files of every kind: the running policy stays.
    let allowed_now = lab.allowlist();
    for (why, text) in [
        ("a bad CIDR", "[signalling]\nallow = [\"203.0.113.0/33\"]\n"),
        ("an unknown key", "[signalling]\nallow = []\nextra = 1\n"),
        ("an empty file (caught while being written)", ""),
        ("a file cut mid-line", "[signalling]\nallow = [\"203.0.1"),
        (
            "an empty allowlist without --force",
            "[signalling]\nallow = []\n",
        ),
    ] {
        std::fs::write(&config, text).unwrap();
        let outcome = service.reload();
        assert!(
            outcome.contains("kept the running policy"),
            "{why}: {outcome}"
        );
        assert_eq!(lab.allowlist(), allowed_now, "{why}: the allowlist changed");
        assert_eq!(outsider_sip(&lab, 3), 3, "{why}: the policy changed");
    }
    let (status, log) = service.stop();
    assert!(status.success(), "sipwall run exited {status}: {log}");
    assert_eq!(lab.xdp_prog_id(), None, "SIGTERM left the program attached");
}

#[test]
fn metrics_scraped_with_curl_are_prometheus_text_equal_to_stats() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    let config = allowlist_config(
        &lab,
        "sipwall",
        &["44.229.228.186/32", "44.238.177.138/32", "2001:db8:9::/48"],
        false,
    );
    let service = Service::start(&lab, &config);
    assert_eq!(outsider_sip(&lab, 7), 0);
    let rtp_rx = lab.udp(Host::Pbx, IpAddr::V4(PBX), 40002);
    let rtp_tx = lab.udp(Host::Outsider, IpAddr::V4(OUTSIDER), 0);
    traffic::send(&rtp_tx, SocketAddr::new(IpAddr::V4(PBX), 40002), 11, 100).unwrap();
    assert_eq!(
        traffic::count(&rtp_rx, Duration::from_millis(400)).unwrap(),
        11
    );

    let curl = |path: &str| {
        lab.exec(
            Host::Pbx,
            &[
                "curl",
                "-sS",
                "--max-time",
                "5",
                "-w",
                "\n%{http_code} %{content_type}",
                &format!("http://127.0.0.1:{METRICS_PORT}{path}"),
            ],
        )
        .unwrap_or_else(|e| panic!("curl {path}: {e:#}"))
    };
    // Stable counters (sip and rtp) must match exactly; the others may
    // move between the two reads with neighbour discovery.
    let stats = lab.counters();
    let out = curl("/metrics");
    let (body, status) = out.trim_end().rsplit_once('\n').unwrap();
    assert!(
        status.starts_with("200 text/plain; version=0.0.4"),
        "status line: {status}"
    );

    let mut types = BTreeMap::new();
    for line in body.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            types.insert(name.to_string(), kind.to_string());
        } else if line.starts_with("# HELP ") {
            continue;
        } else {
            assert!(!line.starts_with('#'), "unknown comment {line:?}");
            let (name, _, _) = parse_sample(line);
            // A histogram's samples are its name with a suffix.
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| {
                    name.strip_suffix(suffix)
                        .filter(|base| types.get(*base).is_some_and(|k| k == "histogram"))
                })
                .unwrap_or(&name);
            assert!(
                types.contains_key(family),
                "sample before its # TYPE: {line}"
            );
        }
    }
    assert_eq!(types["sipwall_packets_total"], "counter");
    assert_eq!(types["sipwall_bytes_total"], "counter");
    assert_eq!(types["sipwall_allowlist_entries"], "gauge");
    assert_eq!(types["sipwall_attached"], "gauge");
    let find = |name: &str, want: &[(&str, &str)]| -> f64 {
        sample(body, name, want).unwrap_or_else(|| panic!("no {name} {want:?} in\n{body}"))
    };
    for reason in [
        "sip_allowed",
        "sip_denied",
        "rtp_allowed",
        "fragment",
        "other",
        "non_ip",
        "malformed",
    ] {
        let labels = [("iface", PBX_IFACE), ("reason", reason)];
        let (p, b) = (
            find("sipwall_packets_total", &labels),
            find("sipwall_bytes_total", &labels),
        );
        if [
            "sip_allowed",
            "sip_denied",
            "rtp_allowed",
            "malformed",
            "fragment",
        ]
        .contains(&reason)
        {
            assert_eq!(
                p as u64, stats[reason].packets,
                "{reason} packets: metrics vs stats"
            );
            assert_eq!(
                b as u64, stats[reason].bytes,
                "{reason} bytes: metrics vs stats"
            );
        } else {
            assert!(
                p as u64 >= stats[reason].packets,
                "{reason}: metrics behind stats"
            );
        }
    }
    assert_eq!(stats["sip_denied"].packets, 7);
    assert_eq!(stats["rtp_allowed"].packets, 11);
    assert_eq!(
        find(
            "sipwall_allowlist_entries",
            &[("iface", PBX_IFACE), ("family", "ipv4")]
        ),
        2.0
    );
    assert_eq!(
        find(
            "sipwall_allowlist_entries",
            &[("iface", PBX_IFACE), ("family", "ipv6")]
        ),
        1.0
    );
    assert_eq!(
        find(
            "sipwall_attached",
            &[("iface", PBX_IFACE), ("mode", "native")]
        ),
        1.0
    );

    // Every XDP series says it is inbound; the egress ones outbound.
    for line in body.lines().filter(|l| {
        l.starts_with("sipwall_packets_total{") || l.starts_with("sipwall_bytes_total{")
    }) {
        let (_, labels, _) = parse_sample(line);
        let out = labels["reason"].starts_with("out_");
        assert_eq!(
            labels.get("direction").map(String::as_str),
            Some(if out { "out" } else { "in" }),
            "{line}"
        );
    }
    assert_eq!(types["sipwall_policy_info"], "gauge");
    assert_eq!(
        find(
            "sipwall_policy_info",
            &[
                ("iface", PBX_IFACE),
                ("mode", "guard"),
                ("dry_run", "false"),
                ("egress", "open"),
                ("media", "any"),
            ]
        ),
        1.0
    );
    // The binary's own version, and the commit of this checkout it was
    // built from (HEAD then: a commit since may have moved HEAD on), or
    // "unknown" outside a git checkout.
    let build = body
        .lines()
        .filter(|l| l.starts_with("sipwall_build_info{"))
        .map(parse_sample)
        .collect::<Vec<_>>();
    let [(_, labels, value)] = build.as_slice() else {
        panic!("not one sipwall_build_info in\n{body}")
    };
    assert_eq!(*value, 1.0);
    assert_eq!(labels["version"], env!("CARGO_PKG_VERSION"));
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let revision = &labels["revision"];
    if git(&["rev-parse", "--git-dir"]) {
        assert!(
            revision.len() == 12
                && git(&[
                    "rev-parse",
                    "--verify",
                    "--quiet",
                    &format!("{revision}^{{commit}}")
                ]),
            "sipwall_build_info's revision {revision:?} is no commit of this checkout"
        );
    } else {
        assert_eq!(revision, "unknown");
    }
    // The process figures are this service's, from /proc.
    let pid = service.pid();
    let started = find("process_start_time_seconds", &[]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    // procps' own reading of the same process: seconds since it started.
    let elapsed: f64 = String::from_utf8_lossy(
        &std::process::Command::new("ps")
            .args(["-o", "etimes=", "-p", &pid.to_string()])
            .output()
            .unwrap()
            .stdout,
    )
    .trim()
    .parse()
    .unwrap();
    assert!(
        started <= now && (now - elapsed - started).abs() < 3.0,
        "process_start_time_seconds {started}, ps says {elapsed} s ago (now {now})"
    );
    let rss = find("process_resident_memory_bytes", &[]);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let vm_rss_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        rss > 1_000_000.0 && (rss / 1024.0 - vm_rss_kib).abs() < vm_rss_kib / 2.0,
        "process_resident_memory_bytes {rss}, VmRSS {vm_rss_kib} kB"
    );
    assert!(find("process_open_fds", &[]) >= 3.0);

    // Bans in force, by family: an address banned for an hour and one
    // whose ban ends in a second (then no longer counted).
    let bans = |family: &str| {
        let out = curl("/metrics");
        let (out, _status) = out.trim_end().rsplit_once('\n').unwrap();
        sample(
            out,
            "sipwall_ban_entries",
            &[("iface", PBX_IFACE), ("family", family)],
        )
        .unwrap_or_else(|| panic!("no sipwall_ban_entries {family} in\n{out}"))
    };
    assert_eq!((bans("ipv4"), bans("ipv6")), (0.0, 0.0));
    lab.sipwall_ok(&["ban", "add", "-i", PBX_IFACE, "203.0.113.9", "--for", "1h"]);
    lab.sipwall_ok(&[
        "ban",
        "add",
        "-i",
        PBX_IFACE,
        "2001:db8:5::/48",
        "--for",
        "1s",
    ]);
    assert_eq!((bans("ipv4"), bans("ipv6")), (1.0, 1.0));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!((bans("ipv4"), bans("ipv6")), (1.0, 0.0));

    let other = curl("/nothing-here");
    assert!(other.contains("\n404 text/plain"), "{other}");
    let (status, log) = service.stop();
    assert!(status.success(), "{log}");
}

/// Floods the PBX's signalling port from the outsider for about a second
/// while `run` is up; returns the service's log lines about denied sources.
fn flood_and_collect_logs(lab: &TestLab, log_denied: bool) -> (Vec<String>, u64, f64) {
    let config = allowlist_config(
        lab,
        if log_denied { "logged" } else { "quiet" },
        &["44.229.228.186/32"],
        log_denied,
    );
    let service = Service::start(lab, &config);
    let tx = lab.udp(Host::Outsider, IpAddr::V4(OUTSIDER), 0);
    let started = Instant::now();
    let flood = 3000;
    traffic::send(&tx, SocketAddr::new(IpAddr::V4(PBX), 5060), flood, 16).unwrap();
    let denied = lab.counters()["sip_denied"].packets;
    // Let the service drain what the kernel wrote.
    std::thread::sleep(Duration::from_millis(500));
    let (status, log) = service.stop();
    let elapsed = started.elapsed().as_secs_f64();
    assert!(status.success(), "{log}");
    let lines = log
        .lines()
        .filter(|l| l.contains("denied signalling from"))
        .map(String::from)
        .collect();
    assert_eq!(denied, flood, "every flood packet is denied");
    (lines, denied, elapsed)
}

#[test]
fn denied_source_log_is_opt_in_and_rate_limited_in_the_kernel() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    let (quiet, _, _) = flood_and_collect_logs(&lab, false);
    assert!(
        quiet.is_empty(),
        "log_denied = false must log nothing: {quiet:?}"
    );

    let (logged, denied, secs) = flood_and_collect_logs(&lab, true);
    assert!(
        !logged.is_empty(),
        "log_denied = true logged nothing for {denied} denied packets"
    );
    for line in &logged {
        assert!(
            line.contains(&OUTSIDER.to_string()),
            "the log names the source: {line}"
        );
    }
    // Each CPU may log LOG_RATE_PER_SEC records a second (its bucket starts
    // full), over the seconds the flood and the drain lasted.
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as u64;
    let bound = LOG_RATE_PER_SEC * cpus * (secs.ceil() as u64 + 1);
    assert!(
        (logged.len() as u64) <= bound,
        "{} log lines for {denied} denied packets in {secs:.1} s; the kernel limit allows at most {bound}",
        logged.len()
    );
    eprintln!(
        "{denied} denied packets gave {} log lines in {secs:.1} s (limit {bound})",
        logged.len()
    );
}

#[test]
fn stats_watch_redraws_in_place_with_rates() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    lab.attach(&[]);
    let rx = lab.udp(Host::Pbx, IpAddr::V4(PBX), 41000);
    let sink = Sink::start(rx).unwrap();
    let stream = Stream::start(
        lab.udp(Host::Outsider, IpAddr::V4(OUTSIDER), 0),
        SocketAddr::new(IpAddr::V4(PBX), 41000),
        400,
    );
    let mut watch = lab
        .sipwall_command(&["stats", "-i", PBX_IFACE, "--watch", "0.3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1600));
    watch.kill().unwrap();
    let out = watch.wait_with_output().unwrap();
    let sent = stream.stop().unwrap();
    assert!(
        sink.wait_for(sent, Duration::from_secs(2)) == sent,
        "RTP lost"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let frames: Vec<&str> = text
        .split("\x1b[H\x1b[2J")
        .filter(|f| !f.is_empty())
        .collect();
    assert!(
        frames.len() >= 3,
        "expected at least 3 redraws in 1.6 s at 0.3 s: {text:?}"
    );
    let last = frames[frames.len() - 2];
    assert!(last.contains("packets/s"), "no rate column: {last}");
    let rtp = last
        .lines()
        .find(|l| l.trim_start().starts_with("rtp_allowed"))
        .expect("rtp_allowed row");
    let cols: Vec<&str> = rtp.split_whitespace().collect();
    let rate: f64 = cols[4]
        .parse()
        .unwrap_or_else(|_| panic!("rate column of {rtp:?}"));
    // 400 datagrams a second stream in; allow for a noisy machine.
    assert!(
        (100.0..=1200.0).contains(&rate),
        "rtp_allowed rate {rate}/s while streaming 400/s: {rtp}"
    );
}

/// A file switched to dry run shows in `sipwall_policy_info` (the policy
/// the kernel runs, read back from the maps), so that an alert can tell an
/// enforcing filter from one that only counts.
#[test]
fn policy_info_follows_the_running_policy_into_dry_run_and_strict() {
    sipwall_tests::skip_unless_root!();
    let lab = TestLab::new();
    let provider = format!("{}/32", PROVIDER[0]);
    let config = allowlist_config(&lab, "sipwall", &[&provider], false);
    let service = Service::start(&lab, &config);
    let info = || {
        let body = lab
            .exec(
                Host::Pbx,
                &[
                    "curl",
                    "-sf",
                    &format!("http://127.0.0.1:{METRICS_PORT}/metrics"),
                ],
            )
            .unwrap();
        let rows: Vec<_> = body
            .lines()
            .filter(|l| l.starts_with("sipwall_policy_info{"))
            .map(parse_sample)
            .collect();
        assert_eq!(rows.len(), 1, "{body}");
        let (_, labels, value) = rows.into_iter().next().unwrap();
        assert_eq!(value, 1.0);
        let get = |k: &str| labels[k].clone();
        [get("mode"), get("dry_run"), get("egress"), get("media")]
    };
    assert_eq!(info(), ["guard", "false", "open", "any"]);
    assert_eq!(outsider_sip(&lab, 3), 0);

    write_config(
        &config,
        &format!("[signalling]\nallow = [{provider:?}]\n\n[policy]\ndry_run = true\n\n[media]\ncheck_rtp = true\n"),
    );
    assert!(service.reload().contains("reloaded"));
    assert_eq!(info(), ["guard", "true", "open", "rtp"]);
    assert_eq!(outsider_sip(&lab, 3), 3, "dry run drops nothing");

    // Strict egress is refused while the media range holds ephemeral
    // ports; reserve them, as the refusal tells the operator to.
    lab.sysctl(Host::Pbx, "net.ipv4.ip_local_reserved_ports=40000-60000");
    write_config(
        &config,
        &format!("[signalling]\nallow = [{provider:?}]\n\n[policy]\nmode = \"strict\"\n\n[egress]\nmode = \"strict\"\n"),
    );
    assert!(service.reload().contains("reloaded"));
    assert_eq!(info(), ["strict", "false", "strict", "any"]);
    let (status, log) = service.stop();
    assert!(status.success(), "{log}");
}
